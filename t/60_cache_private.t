# Cached answers are private by default: an authenticated request (a JWT,
# httpd's own AuthType Basic) is answered from entries stored for its
# identity, never from another user's, unless the endpoint says
# BFFCacheShared on (which apache2 -t reports). Per-identity answers carry
# Cache-Control: private and Vary: Authorization; a purge can target one
# identity; per-request headers (X-Request-ID, traceparent) do not split
# the key. With Redis and with the shared memory store.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Digest::SHA qw(sha1_base64);
use BFFTest;
use BFFJWT;

plan tests => 2 * 27 + 3;

my $keys = keydir();
my $U = BFFTest::svc_url('user');
my $libexec = $ENV{BFF_T_LIBEXECDIR};
my $logs = Apache::Test::vars('t_logs');
my $htpasswd = "$logs/p60.htpasswd";
{
    open my $fh, '>', $htpasswd or die "$htpasswd: $!";
    for my $u (qw(carol dave)) {
        my $b = sha1_base64("pw-$u");
        $b .= '=' while length($b) % 4;
        print $fh "$u:{SHA}$b\n";
    }
}

sub tok { jwt(alg => 'RS256', kid => undef, key => "$keys/rsa.key",
              claims => claims_ok(sub => $_[0])) }
my %bearer = map { ($_ => 'Bearer ' . tok($_)) } qw(alice bob);
sub basic { 'Basic ' . MIME::Base64::encode_base64("$_[0]:pw-$_[0]", '') }
require MIME::Base64;

sub conf {
    my ($store, $prefix) = @_;
    return <<"CONF";
LoadModule authn_core_module "$libexec/mod_authn_core.so"
LoadModule authn_file_module "$libexec/mod_authn_file.so"
LoadModule auth_basic_module "$libexec/mod_auth_basic.so"
LoadModule authz_user_module "$libexec/mod_authz_user.so"
BFFHTTPClient $ENV{BFF_T_CLIENT}
BFFCacheStore $store
BFFCachePrefix $prefix
BFFJWTKeyFile "$keys/rsa.pub"
BFFJWTAlgorithms RS256
BFFJWTIssuer https://issuer.test
BFFJWTAudience bff-test
# the shortest config that works: no BFFCacheVary anywhere
<BFFEndpoint GET /jwt/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
</BFFEndpoint>
<Location /jwt/>
    AuthType bff-jwt
    Require valid-user
    BFFIdentityHeader X-User-ID sub
</Location>
<BFFEndpoint GET /jwt-noid/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
    BFFCacheControl "max-age=30"
</BFFEndpoint>
<Location /jwt-noid/>
    AuthType bff-jwt
    Require valid-user
</Location>
<BFFEndpoint GET /basic/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
</BFFEndpoint>
<Location /basic/>
    AuthType Basic
    AuthName p60
    AuthBasicProvider file
    AuthUserFile "$htpasswd"
    Require valid-user
</Location>
<BFFEndpoint GET /shared/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
    BFFCacheShared on
</BFFEndpoint>
<Location /shared/>
    AuthType bff-jwt
    Require valid-user
</Location>
<BFFEndpoint GET /anon/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
</BFFEndpoint>
<Location /purge>
    SetHandler bff-cache-purge
    Require ip 127.0.0.1
</Location>
CONF
}

sub calls { scalar @{ svc_log('user') } }

for my $store ($ENV{BFF_T_REDIS_URL}, 'shmcb') {
    my $kind = $store eq 'shmcb' ? 'shm' : 'redis';
    my $prefix = "p60-$$-$kind:";
    my $h = start_httpd("p60$kind", conf($store, $prefix));
    my $port = $h->{port};
    my $st = sub { http_get($port, @_)->header('X-Cache-Status') // '' };

    # two users, one URL, an identity header to the backend
    svc_reset('user');
    ok t_cmp($st->('/jwt/1', Authorization => $bearer{alice}), 'MISS', "$kind: alice");
    ok t_cmp($st->('/jwt/1', Authorization => $bearer{bob}), 'MISS',
             "$kind: bob does not get alice's answer");
    my $r = http_get($port, '/jwt/1', Authorization => $bearer{alice});
    ok t_cmp($r->header('X-Cache-Status'), 'HIT', "$kind: alice hits her own entry");
    ok t_cmp($st->('/jwt/1', Authorization => $bearer{bob}), 'HIT', "$kind: bob his");
    ok t_cmp(calls(), 2, "$kind: one backend call per user");
    ok t_cmp(svc_log('user')->[1]{headers}{'x-user-id'}, 'bob', "$kind: bob's call was bob's");
    ok t_cmp($r->header('Cache-Control'), 'private', "$kind: per-identity answers are private");
    ok +($r->header('Vary') // '') =~ /\bAuthorization\b/, "$kind: Vary: Authorization";
    ok t_cmp(http_get($port, '/jwt/1')->code, 401, "$kind: no token, no answer");

    # no identity header: the authenticated identity alone separates them
    svc_reset('user');
    ok t_cmp($st->('/jwt-noid/2', Authorization => $bearer{alice}), 'MISS');
    ok t_cmp($st->('/jwt-noid/2', Authorization => $bearer{bob}), 'MISS',
             "$kind: without identity headers, still per identity");
    $r = http_get($port, '/jwt-noid/2', Authorization => $bearer{alice});
    ok t_cmp($r->header('X-Cache-Status'), 'HIT');
    ok t_cmp($r->header('Cache-Control'), 'max-age=30', "$kind: the admin's Cache-Control wins");
    ok t_cmp(calls(), 2);

    # httpd's own authentication
    svc_reset('user');
    ok t_cmp($st->('/basic/3', Authorization => basic('carol')), 'MISS', "$kind: Basic carol");
    ok t_cmp($st->('/basic/3', Authorization => basic('dave')), 'MISS',
             "$kind: Basic dave does not get carol's answer");
    ok t_cmp($st->('/basic/3', Authorization => basic('carol')), 'HIT');
    ok t_cmp(calls(), 2);

    # the explicit opt-in: one answer for everybody
    svc_reset('user');
    ok t_cmp($st->('/shared/4', Authorization => $bearer{alice}), 'MISS');
    $r = http_get($port, '/shared/4', Authorization => $bearer{bob});
    ok t_cmp($r->header('X-Cache-Status'), 'HIT', "$kind: BFFCacheShared on: bob gets alice's entry");
    ok !defined $r->header('Cache-Control'), "$kind: and it is not marked private";

    # one identity's entries purged, the other's kept
    my $p = BFFTest::bff_req_port($port, PURGE => '/purge?identity=alice');
    ok t_cmp($p->code, 200, "$kind: purge by identity");
    ok $p->{json}{purged} + $p->{json}{purged_shared_memory} >= 2, "$kind: alice's entries";
    ok t_cmp($st->('/jwt/1', Authorization => $bearer{alice}), 'MISS', "$kind: alice purged");
    ok t_cmp($st->('/jwt/1', Authorization => $bearer{bob}), 'HIT', "$kind: bob kept");

    # per-request values stay out of the key
    svc_reset('user');
    http_get($port, '/anon/5', 'X-Request-ID' => 'p60-a',
             traceparent => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    ok t_cmp($st->('/anon/5', 'X-Request-ID' => 'p60-b',
                   traceparent => '00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01'),
             'HIT', "$kind: another X-Request-ID and traceparent: still a hit");
    ok t_cmp(svc_log('user')->[0]{headers}{'x-request-id'}, 'p60-a', 'the id reached the backend');
    stop_httpd($h);
}

# apache2 -t reports the opt-in
my $httpd = Apache::Test::vars('httpd');
my $out = `'$httpd' -f '$logs/p60redis/httpd.conf' -t 2>&1`;
is $? >> 8, 0, 'apache2 -t passes' or diag $out;
like $out, qr/BFF45: <BFFEndpoint GET \/shared\/\{id:int\}> at .*: BFFCacheShared on/,
     'and warns about the shared endpoint';
unlike $out, qr/BFF45: <BFFEndpoint GET \/jwt\//, 'only there';
