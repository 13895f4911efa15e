# Access-phase configuration errors: bad directives are refused by
# apache2 -t naming the directive; bad keys stop httpd at start-up with a
# message naming the file.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Temp qw(tempdir);
use IO::Socket::INET ();
use BFFServices ();
use BFFTest ();
use Time::HiRes qw(sleep);

my $K = $ENV{BFF_T_KEYS};
my @syntax = (
    [ "BFFJWTAlgorithms RS256 none", qr/BFFJWTAlgorithms: .*none/ ],
    [ "BFFJWTAlgorithms PS256", qr/BFFJWTAlgorithms: .*PS256/ ],
    [ "BFFJWTLeeway soon", qr/BFFJWTLeeway soon/ ],
    [ "BFFJWTMaxSize 10", qr/BFFJWTMaxSize 10: must be from 64/ ],
    [ "BFFJWTCache -1", qr/BFFJWTCache -1/ ],
    [ "<Location /x>\n BFFJWTCache 10\n</Location>", qr/BFFJWTCache not allowed in <Location> context/ ],
    [ "<Location /x>\n BFFAPIKeyFile /k\n</Location>", qr/BFFAPIKeyFile not allowed in <Location> context/ ],
    [ "BFFTokenSource url:x", qr/BFFTokenSource url:x: expected bearer/ ],
    [ "BFFAPIKeyHeader \"Bad Name\"", qr/BFFAPIKeyHeader Bad Name: not a header name/ ],
    [ "BFFIdentityHeader Host sub", qr/BFFIdentityHeader Host: this header cannot carry/ ],
    [ "BFFIdentityHeader X-A sub\nBFFIdentityHeader X-A iss", qr/BFFIdentityHeader X-A is already defined/ ],
    [ "BFFIdentityHeader X-A sub join=;", qr/unknown option 'join='/ ],
    [ "BFFRateLimit a", qr/BFFRateLimit takes a name, a rate/ ],
    [ "BFFRateLimit a 10/fortnight", qr/BFFRateLimit a 10\/fortnight:/ ],
    [ "BFFRateLimit a/b 10/1m", qr/BFFRateLimit a\/b: a name is/ ],
    [ "BFFRateLimit a 10/1m key=cookie", qr/BFFRateLimit a: key=: expected key=ip, key=user/ ],
    [ "BFFRateLimit a 10/1m burst=0", qr/BFFRateLimit a: burst=0: expected a number of at least 1/ ],
    [ "BFFRateLimit a 10/1m color=red", qr/unknown option 'color='/ ],
    [ "BFFRateLimit a 10/1m lease=0", qr/BFFRateLimit a: lease=0: expected a number/ ],
    [ "BFFRateLimit a 10/1m lease=x", qr/BFFRateLimit a: lease=x: expected a number/ ],
    [ "BFFRateLimit a 10/1m lease=11", qr/BFFRateLimit a: lease=11 is more than the capacity \(10 tokens\)/ ],
    [ "BFFRateLimit a 10/1m lease=5 lease-ttl=2m", qr/BFFRateLimit a: lease-ttl=2m: expected a duration from 1ms to 1m/ ],
    [ "BFFRateLimit a 10/1m lease=5 lease-ttl=soon", qr/BFFRateLimit a: lease-ttl=soon: invalid duration/ ],
    [ "BFFRateLimit a 10/1m lease-ttl=1s", qr/BFFRateLimit a: lease-ttl= needs lease=N with N >= 2/ ],
    [ "BFFRateLimit a 10/1m\nBFFRateLimit a 20/1m", qr/BFFRateLimit a is already defined/ ],
    [ "BFFRateLimitFallback maybe", qr/BFFRateLimitFallback maybe: expected shm, open or closed/ ],
    [ "BFFRateLimitRedis redis://", qr/BFFRateLimitRedis: Redis URL 'redis:\/\/': no host/ ],
    [ "BFFRateLimitRedis rediss://h:1", qr/BFFRateLimitRedis: .*TLS/ ],
    [ "BFFRateLimitRedis redis://h:99999", qr/BFFRateLimitRedis: .*port/ ],
    [ "BFFRateLimitRedis redis://h:1 timeout=x", qr/BFFRateLimitRedis: timeout=x/ ],
    [ "BFFRateLimitRedis redis://h:1 pool=3", qr/unknown option 'pool='/ ],
    [ "<VirtualHost 127.0.0.1:1>\nBFFRateLimitRedis redis://h:1\n</VirtualHost>", qr/BFFRateLimitRedis cannot occur within <VirtualHost>/ ],
    [ "BFFAPIKeyRedis maybe", qr/BFFAPIKeyRedis maybe: expected On or Off/ ],
    [ "BFFAPIKeyRedis On color=red", qr/BFFAPIKeyRedis: unknown option 'color='/ ],
    [ "BFFAPIKeyRedis On prefix=", qr/BFFAPIKeyRedis: prefix=: missing value/ ],
    [ "BFFAPIKeyRedis On prefix=" . ('x' x 65), qr/BFFAPIKeyRedis: prefix=: 1 to 64 printable/ ],
    [ "<Location /x>\n BFFAPIKeyRedis On\n</Location>", qr/BFFAPIKeyRedis not allowed in <Location> context/ ],
    [ "BFFRateLimitInstances 0", qr/BFFRateLimitInstances 0: expected a number/ ],
    [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/{id}\n BFFRateLimit a 1/1m\n</BFFEndpoint>",
      qr/BFFRateLimit is not allowed inside <BFFEndpoint>: put it in a <Location>/ ],
    [ "<Location /x>\n Require bff-scope\n</Location>", qr/Require bff-scope needs at least one scope/ ],
    [ "<Location /x>\n Require bff-claim role\n</Location>", qr/Require bff-claim needs a claim and at least one value/ ],
);
my @startup = (
    [ "BFFJWTSecretFile $K/short.key\nBFFJWTAlgorithms HS256", qr/BFF114: cannot load the JWT keys: .*\Q$K\E\/short\.key/ ],
    [ "BFFJWTKeyFile $K/nosuch.pub\nBFFJWTAlgorithms RS256", qr/BFF114: .*\Q$K\E\/nosuch\.pub/ ],
    [ "BFFJWTKeyFile $K/rsa.key\nBFFJWTAlgorithms RS256", qr/BFF114: .*\Q$K\E\/rsa\.key/ ],
    [ "BFFJWTKeyFile $K/rsa.pub\nBFFJWTAlgorithms ES256", qr/BFF114: .*\Q$K\E\/rsa\.pub/ ],
    [ "BFFJWKSFile $K/apikeys.txt\nBFFJWTAlgorithms RS256", qr/BFF114: .*\Q$K\E\/apikeys\.txt/ ],
    [ "BFFJWTKeyFile $K/rsa.pub", qr/BFF113: JWT keys without BFFJWTAlgorithms/ ],
    [ "BFFJWTIssuer https://x", qr/BFF112: BFFJWT\* settings without a key/ ],
    [ "BFFAPIKeyRedis On", qr/BFF124: BFFAPIKeyRedis On needs BFFRateLimitRedis in the main server/ ],
    [ "BFFAPIKeyFile $K/jwks.json", qr/BFF116: BFFAPIKeyFile: .*\Q$K\E\/jwks\.json/ ],
    [ "<VirtualHost 127.0.0.1:\@PORT\@>\nBFFJWTSecretFile $K/short.key\nBFFJWTAlgorithms HS512\n</VirtualHost>",
      qr/BFF114: .*\Q$K\E\/short\.key/ ],
);

plan tests => 2 * @syntax + 2 * @startup + 2;

my $httpd = Apache::Test::vars('httpd');
my $libexec = $ENV{BFF_T_LIBEXECDIR};
my $dir = tempdir(CLEANUP => 1);
my $cores = BFFTest::cores_dir();

sub write_conf {
    my ($body, $port) = @_;
    $body =~ s/\@PORT\@/$port/g;
    open my $fh, '>', "$dir/bff.conf" or die $!;
    print $fh $body, "\n";
    close $fh;
    open $fh, '>', "$dir/httpd.conf" or die $!;
    print $fh <<"CONF";
ServerRoot "$dir"
ServerName 127.0.0.1
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error.log"
CoreDumpDirectory "$cores"
DefaultRuntimeDir "$dir"
Listen 127.0.0.1:$port
LoadModule mpm_event_module "$libexec/mod_mpm_event.so"
LoadModule authz_core_module "$libexec/mod_authz_core.so"
LoadModule authn_core_module "$libexec/mod_authn_core.so"
LoadModule bff_module "$ENV{BFF_T_MODULE}"
Include "$dir/bff.conf"
CONF
    close $fh;
}

for my $c (@syntax) {
    my ($body, $re) = @$c;
    write_conf($body, 1);
    my $out = `'$httpd' -t -f '$dir/httpd.conf' 2>&1`;
    isnt $? >> 8, 0, "rejected: " . join(' | ', grep { !/^<|^ BFFBackend/ } split /\n/, $body);
    like $out, $re, 'names the problem' or diag $out;
}

# start-up: post_config loads the keys; httpd must refuse to start
sub try_start {
    my ($body) = @_;
    my $port = BFFServices::free_port();
    write_conf($body, $port);
    unlink "$dir/error.log", "$dir/httpd.pid";
    system($httpd, '-f', "$dir/httpd.conf", '-k', 'start');
    my $up;
    for (1 .. 20) {
        $up = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) and last;
        sleep 0.05;
    }
    # the pid file may come a moment after the socket
    for (1 .. 100) { last if !$up || -s "$dir/httpd.pid"; sleep 0.05 }
    if ($up && open my $pf, '<', "$dir/httpd.pid") {
        chomp(my $pid = <$pf>);
        kill 'TERM', $pid;    # started: stop it by PID
        sleep 0.1 while kill 0, $pid;
    }
    my $log = '';
    if (open my $fh, '<', "$dir/error.log") { local $/; $log = <$fh> }
    return ($up, $log);
}

for my $c (@startup) {
    my ($body, $re) = @$c;
    my ($up, $log) = try_start($body);
    ok !$up, 'refused to start: ' . join(' | ', split /\n/, $body);
    like $log, $re, 'names the file / the problem' or diag $log;
}

# and a good access configuration starts
my ($up, $log) = try_start("BFFJWKSFile $K/jwks.json\nBFFJWTAlgorithms RS256 ES256\n"
                           . "BFFAPIKeyFile $K/apikeys.txt\n");
ok $up, 'a valid access configuration starts' or diag $log;
unlike $log, qr/BFF11[2-6]/;
