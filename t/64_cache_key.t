# The cache key covers everything the backends get: forwarded headers
# (endpoint and server level), identity headers of an API key consumer,
# the forwarded query, the client profile and ?fields; per-request values
# and parameters no backend sees stay out of it. Header values and
# identities are hashed, never in the key text.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFJWT;

plan tests => 24;

my $U = BFFTest::svc_url('user');
my $libexec = $ENV{BFF_T_LIBEXECDIR};
my $prefix = "p64-$$:";

my $h = start_httpd('p64', <<"CONF");
LoadModule authn_core_module "$libexec/mod_authn_core.so"
LoadModule authz_user_module "$libexec/mod_authz_user.so"
BFFHTTPClient $ENV{BFF_T_CLIENT}
BFFCacheStore $ENV{BFF_T_REDIS_URL}
BFFCachePrefix $prefix
BFFAPIKeyFile "$ENV{BFF_T_KEYS}/apikeys.txt"
BFFForwardHeader X-Region
<BFFEndpoint GET /k/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFForwardHeader X-Tenant
    BFFForwardQuery lang
    BFFFields user
    BFFClientSelect header:X-Client
    BFFClientFields mobile user.name
    BFFClientFields watch  user.id
    BFFCacheTTL 30s
</BFFEndpoint>
<BFFEndpoint GET /partner/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
    BFFCacheShared on
</BFFEndpoint>
<Location /partner/>
    AuthType bff-apikey
    Require valid-user
    BFFIdentityHeader X-Consumer sub
</Location>
CONF
my $port = $h->{port};
sub st { http_get($port, @_)->header('X-Cache-Status') // '' }

# forwarded headers, endpoint and server level
ok t_cmp(st('/k/1', 'X-Tenant' => 'tenant-a'), 'MISS');
ok t_cmp(st('/k/1', 'X-Tenant' => 'tenant-b'), 'MISS', 'another forwarded header value');
ok t_cmp(st('/k/1'), 'MISS', 'the header absent');
ok t_cmp(st('/k/1', 'x-tenant' => 'tenant-a'), 'HIT', 'names are case-insensitive');
ok t_cmp(st('/k/1', 'X-Tenant' => 'tenant-a', 'X-Region' => 'eu'), 'MISS',
         'a server-level BFFForwardHeader');
ok t_cmp(st('/k/1', 'X-Tenant' => 'tenant-a', 'X-Other' => 'x'), 'HIT',
         'a header no backend gets is ignored');
my $r = http_get($port, '/k/1', 'X-Tenant' => 'tenant-a');
ok +($r->header('Vary') // '') =~ /X-Tenant/ && $r->header('Vary') =~ /X-Region/,
   'Vary names the forwarded headers';

# the forwarded query
ok t_cmp(st('/k/2?lang=de'), 'MISS');
ok t_cmp(st('/k/2?lang=fr'), 'MISS', 'a forwarded query parameter');
ok t_cmp(st('/k/2?utm=1&lang=de'), 'HIT', 'one no backend gets is ignored');

# client profile and ?fields
ok t_cmp(st('/k/3', 'X-Client' => 'mobile'), 'MISS');
ok t_cmp(st('/k/3', 'X-Client' => 'watch'), 'MISS', 'another client profile');
my $w = http_get($port, '/k/3', 'X-Client' => 'watch');
ok t_cmp($w->header('X-Cache-Status'), 'HIT');
ok exists $w->{json}{user}{id} && !exists $w->{json}{user}{name}, "the watch's shape";
ok t_cmp(st('/k/3?fields=user.email'), 'MISS', '?fields');
ok t_cmp(st('/k/3?fields=user.email'), 'HIT');

# an API key consumer's identity header reaches the backend: in the key,
# even on a shared endpoint
svc_reset('user');
ok t_cmp(st('/partner/4', 'X-API-Key' => apikey('acme')), 'MISS');
ok t_cmp(st('/partner/4', 'X-API-Key' => apikey('globex')), 'MISS',
         'another consumer, another identity header');
ok t_cmp(st('/partner/4', 'X-API-Key' => apikey('acme')), 'HIT');
ok t_cmp(svc_log('user')->[1]{headers}{'x-consumer'}, 'globex');

# per-request values: still one entry
ok t_cmp(st('/k/5', 'X-Request-ID' => 'p64-1'), 'MISS');
ok t_cmp(st('/k/5', 'X-Request-ID' => 'p64-2',
            traceparent => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
         'HIT', 'X-Request-ID and traceparent are not in the key');

# nothing readable in the key text
my @keys = grep { /^\Q$prefix\E/ } split /\n/, redis_cli('--scan', '--pattern', "$prefix*");
ok scalar(grep { /^\Q$prefix\E[0-9a-f]{64}$/ } @keys) >= 8, 'keys are prefix + SHA-256';
ok !grep({ /tenant|acme|globex|mobile/ } @keys), 'no header value or identity in them';
stop_httpd($h);
