# Mistakes that would silently weaken a configuration fail `apache2 -t`
# with a message naming the directive (deny/allow paths that name no
# backend, modules the configuration needs), or are reported as warnings
# where another module may make them right (a cache vary note mod_bff
# never sets) or where the admin may mean it (JWT without issuer or
# audience).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFConfTest qw(configtest refused accepted endpoint_conf);

plan tests => 31;

my $K = $ENV{BFF_T_KEYS};
my $shmcb = "LoadModule socache_shmcb_module \"$ENV{BFF_T_LIBEXECDIR}/mod_socache_shmcb.so\"";

sub endpoint { endpoint_conf('http', @_) }

# --- deny / allow paths start with a backend's name ----------------------

refused(endpoint('BFFDeny acount.secret_note'),
        qr/BFFDeny acount\.secret_note: 'acount' is not a backend of this endpoint \(its backends: account orders\)/,
        'BFFDeny with a misspelt backend');
refused(endpoint('BFFDeny account.x orders[].note', 'BFFAllow account.name order[].id'),
        qr/BFFAllow order\[\]\.id: 'order' is not a backend/, 'BFFAllow with a misspelt backend');
refused(endpoint('BFFDeny secret_note'), qr/BFFDeny secret_note: 'secret_note' is not a backend/,
        'a one-segment path that is no backend');
my ($rc, $out) = configtest(endpoint('BFFDeny acount.secret_note'));
like $out, qr/line 4 of /, 'the error points at the directive\'s line';
accepted(endpoint('BFFDeny account.secret_note orders[].internal', 'BFFAllow account orders[].id'),
         undef, 'deny and allow paths on backends');

# --- BFFCacheVary note: a note mod_bff never sets is a warning -------------

accepted("$shmcb\n" . endpoint('BFFCacheTTL 30s', 'BFFCacheVary note:bff-subjet'),
         qr/BFF134: BFFCacheVary note:bff-subjet \(.*:\d+\): mod_bff never sets the note 'bff-subjet'/,
         'vary on an unknown note');
accepted("$shmcb\n" . endpoint('BFFCacheTTL 30s', 'BFFCacheVary note:bff-subject header:X-Tenant'),
         undef, 'vary on a note mod_bff sets');

# --- modules the configuration needs ---------------------------------------

refused(endpoint('BFFCacheTTL 30s'),
        qr/BFF135: BFFCacheStore shmcb \(the default\) needs mod_socache_shmcb/,
        'a cached endpoint without mod_socache_shmcb');
refused("BFFCacheStore redis://127.0.0.1:1\n" . endpoint('BFFCacheTTL 30s'),
        qr/BFF135: BFFCacheFallback shmcb \(the default\) needs mod_socache_shmcb/,
        'the shm fallback without mod_socache_shmcb');
accepted("BFFCacheStore redis://127.0.0.1:1\nBFFCacheFallback off\n" . endpoint('BFFCacheTTL 30s'),
         undef, 'Redis and no fallback: no shmcb needed');
accepted("$shmcb\n" . endpoint('BFFCacheTTL 30s'), undef, 'cache with mod_socache_shmcb');

refused("<Location /x>\n BFFRateLimit a 10/1m\n</Location>",
        qr/BFF131: BFFRateLimit without BFFRateLimitRedis .*LoadModule socache_shmcb_module/,
        'rate limits in shared memory without mod_socache_shmcb');
refused("BFFRateLimitRedis redis://127.0.0.1:1\n<Location /x>\n BFFRateLimit a 10/1m\n</Location>",
        qr/BFF132: BFFRateLimitFallback shm \(the default\) needs mod_socache_shmcb/,
        'the default shm fallback without mod_socache_shmcb');
refused("BFFRateLimitRedis redis://127.0.0.1:1\nBFFRateLimitFallback closed\n"
        . "<Location /x>\n BFFRateLimit a 10/1m\n BFFRateLimitFallback shm\n</Location>",
        qr/BFF132/, 'an explicit shm fallback in a location');
accepted("BFFRateLimitRedis redis://127.0.0.1:1\nBFFRateLimitFallback closed\n"
         . "<Location /x>\n BFFRateLimit a 10/1m\n</Location>", undef, 'Redis, fallback closed: no shmcb needed');
accepted("$shmcb\n<Location /x>\n BFFRateLimit a 10/1m\n</Location>", undef, 'rate limits with mod_socache_shmcb');

# --- JWT checking neither issuer nor audience -------------------------------

my $jwt = "BFFJWTKeyFile $K/rsa.pub\nBFFJWTAlgorithms RS256";
accepted($jwt, qr/BFF133: JWT settings of .* check neither the issuer nor the audience/,
         'JWT without issuer or audience');
accepted("$jwt\nBFFJWTIssuer https://issuer.test", undef, 'with an issuer');
accepted("$jwt\nBFFJWTAudience bff", undef, 'with an audience');
accepted("$jwt\nBFFJWTAudience bff\n<VirtualHost 127.0.0.1:1>\nBFFJWTKeyFile $K/rsa.pub\n"
         . "BFFJWTAlgorithms RS256\n</VirtualHost>", undef, 'a virtual host inherits the audience');
