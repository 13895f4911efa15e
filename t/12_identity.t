# Identity to backends: configured headers are built from the verified
# claims; whatever the client sent under those names is removed first,
# with or without a token, on ProxyPass routes and aggregated endpoints.
# Checked at the demo services' request logs. Also the shipped
# conf/bff-access.conf (vhost bff_access).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth;
use BFFJWT;

plan tests => 37;

my @spoof = ('X-User-ID' => 'admin', 'X-User-Roles' => 'admin,root', 'x-user-id' => 'root');

# ProxyPass route
svc_reset('user');
my $res = areq(GET => '/t/auth/x/users/4', bearer(jwt()), @spoof);
ok t_cmp($res->code, 200);
my $h = svc_log('user')->[0]{headers};
ok t_cmp($h->{'x-user-id'}, 'alice', 'ProxyPass: X-User-ID from sub, not the client');
ok t_cmp($h->{'x-user-roles'}, 'editor,viewer', 'ProxyPass: roles from realm_access.roles');

# a claim that is missing: the header is absent, the client's copy too
svc_reset('user');
areq(GET => '/t/auth/x/users/4', bearer(jwt(claims => claims_ok(realm_access => undef))), @spoof);
$h = svc_log('user')->[0]{headers};
ok t_cmp($h->{'x-user-id'}, 'alice');
ok !exists $h->{'x-user-roles'}, 'no claim, no header (and not the spoofed one)';

# a claim with CR/LF cannot split a header
svc_reset('user');
$res = areq(GET => '/t/auth/x/users/4',
            bearer(jwt(claims => claims_ok(realm_access => { roles => ["a\r\nX-Evil: 1"] }))));
$h = svc_log('user')->[0]{headers};
ok !exists $h->{'x-user-roles'}, 'control characters: header left out';
ok !exists $h->{'x-evil'}, 'no injected header';

# no authentication in this location: the client's copies still go
svc_reset('user');
$res = areq(GET => '/t/auth/open/users/4', @spoof);
ok t_cmp($res->code, 200);
$h = svc_log('user')->[0]{headers};
ok !exists $h->{'x-user-id'}, 'no token: spoofed X-User-ID removed';
ok !exists $h->{'x-user-roles'}, 'no token: spoofed X-User-Roles removed';

# aggregated endpoint: identity headers always reach every backend call
svc_reset();
$res = areq(GET => '/t/auth/agg/5', bearer(jwt(claims => claims_ok(sub => 'dave'))), @spoof);
ok t_cmp($res->code, 200);
for my $role (qw(user order)) {
    my $e = svc_log($role)->[0]{headers};
    ok t_cmp($e->{'x-user-id'}, 'dave', "aggregated: $role gets X-User-ID");
    ok t_cmp($e->{'x-user-roles'}, 'editor,viewer', "aggregated: $role gets X-User-Roles");
    ok !exists $e->{authorization}, "aggregated: $role never gets the token";
}

# an endpoint forwarding X-User-ID itself (BFFForwardHeader) in a location
# with that identity header and no authentication: the client's copy is
# removed before forwarding
svc_reset('user');
$res = areq(GET => '/t/auth/openagg/5', @spoof);
ok t_cmp($res->code, 200);
ok !exists svc_log('user')->[0]{headers}{'x-user-id'}, 'forwarded header name, spoofed value removed';

# API keys: the consumer and plan as identity, never the key itself
svc_reset('user');
$res = areq(GET => '/t/auth/key/users/6', 'X-API-Key' => apikey('acme'), @spoof,
            'X-Consumer' => 'evil', 'X-Plan' => 'platinum');
ok t_cmp($res->code, 200);
$h = svc_log('user')->[0]{headers};
ok t_cmp($h->{'x-consumer'}, 'acme');
ok t_cmp($h->{'x-plan'}, 'gold');
ok t_cmp($h->{'x-user-id'}, 'acme', 'sub of an API key is its consumer');
ok !exists $h->{'x-api-key'}, 'the key is not passed on';
ok !exists $h->{'x-user-roles'};

# the shipped conf/bff-access.conf: JWT on the aggregated profile endpoint
my $tok = jwt(claims => claims_ok(aud => 'bff-api', scope => 'profile:read'));
svc_reset();
$res = areq(bff_access => GET => '/api/profile/7', bearer($tok), @spoof);
ok t_cmp($res->code, 200, 'bff-access.conf: profile with a token');
ok json_is($res->{json}, expected_profile(7));
ok t_cmp(svc_log('user')->[0]{headers}{'x-user-id'}, 'alice');
ok t_cmp(svc_log('order')->[0]{headers}{'x-user-roles'}, 'editor,viewer');
like $res->header('RateLimit-Policy') // '', qr/"per-user-second";q=10;w=1/, 'location limit';
like $res->header('RateLimit-Policy') // '', qr/"per-ip";q=100;w=2/, 'and the server-wide one';
ok is_problem(areq(bff_access => GET => '/api/profile/7'), 401), 'bff-access.conf: no token';
ok is_problem(areq(bff_access => GET => '/api/profile/7',
              bearer(jwt(claims => claims_ok(aud => 'bff-api', scope => 'orders:read')))), 403), 'bff-access.conf: no scope';
ok is_problem(areq(bff_access => GET => '/api/profile/7', bearer(jwt())), 401),
   'bff-access.conf: another audience';

# ... and API keys on its ProxyPass route
svc_reset('user');
$res = areq(bff_access => GET => '/api/users/3', 'X-API-Key' => apikey('initech'));
ok t_cmp($res->code, 200, 'bff-access.conf: ProxyPass route with a key');
ok t_cmp(svc_log('user')->[0]{headers}{'x-consumer'}, 'initech');
ok is_problem(areq(bff_access => GET => '/api/users/3'), 401), 'bff-access.conf: no key';
