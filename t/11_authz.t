# Authorization by claims through httpd's own Require machinery:
# Require bff-scope / bff-claim, alone and composed with Require ip and
# Require user in <RequireAll> / <RequireAny>.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth;
use BFFJWT;

plan tests => 42;

sub tok { bearer(jwt(claims => claims_ok(@_))) }

sub forbidden {
    my ($res, $name) = @_;
    ok is_problem($res, 403), "$name: 403 problem+json" or diag $res->as_string;
    like $res->header('WWW-Authenticate') // '', qr/^Bearer realm="bff-test", error="insufficient_scope"/,
         "$name: insufficient_scope";
}

# scopes: every listed scope is needed
svc_reset('user');
ok t_cmp(areq(GET => '/t/auth/scope/users/1', tok())->code, 200, 'scope present');
my $res = areq(GET => '/t/auth/scope/users/1', tok(scope => 'profile:read'));
forbidden($res, 'scope missing');
like $res->header('WWW-Authenticate'), qr/scope="orders:read"/, 'names the scope needed';
ok t_cmp($res->{json}{detail}, 'insufficient scope: scope orders:read');
ok t_cmp(count_svc('user'), 1, 'a refused request never reaches the backend');
ok t_cmp(areq(GET => '/t/auth/scope/users/1', tok(scope => undef, scp => ['orders:read']))->code, 200,
         'scp array');
ok t_cmp(areq(GET => '/t/auth/scope/users/1', tok(scope => 'orders:readx orders'))->code, 403,
         'whole scope tokens only');
ok t_cmp(areq(GET => '/t/auth/scopes/users/1', tok(scope => 'orders:read orders:write'))->code, 200,
         'both scopes');
forbidden(areq(GET => '/t/auth/scopes/users/1', tok()), 'one of two scopes');

# no token on a scope location: 401 first
$res = areq(GET => '/t/auth/scope/users/1');
ok is_problem($res, 401), 'no token: 401';
ok t_cmp($res->header('WWW-Authenticate'), 'Bearer realm="bff-test"');

# claims: one of the values
ok t_cmp(areq(GET => '/t/auth/claim/users/1', tok(role => 'admin'))->code, 200, 'role admin');
forbidden(areq(GET => '/t/auth/claim/users/1', tok()), 'role user');
ok t_cmp(areq(GET => '/t/auth/claim/users/1', tok(role => ['x', 'admin']))->code, 200,
         'array claim holding the value');
ok t_cmp(areq(GET => '/t/auth/roles/users/1', tok())->code, 200, 'nested roles: editor');
forbidden(areq(GET => '/t/auth/roles/users/1', tok(realm_access => { roles => ['viewer'] })),
          'nested roles: viewer only');
forbidden(areq(GET => '/t/auth/roles/users/1', tok(realm_access => 'admin')), 'not an object');
forbidden(areq(GET => '/t/auth/roles/users/1', tok(realm_access => { roles => [1, 'admin'] })),
          'array with a non-string');

# AuthzSendForbiddenOnFailure Off (httpd's default): 401, still insufficient_scope
$res = areq(GET => '/t/auth/scope401/users/1', tok());
ok is_problem($res, 401), 'default: 401';
like $res->header('WWW-Authenticate') // '', qr/error="insufficient_scope"/;

# composition with Require ip
ok t_cmp(areq(GET => '/t/auth/ipand/users/1', tok())->code, 200, 'RequireAll ip + scope');
forbidden(areq(GET => '/t/auth/ipand/users/1', tok(scope => 'x')), 'RequireAll: ip ok, scope missing');
ok t_cmp(areq(GET => '/t/auth/ipand/users/1')->code, 401, 'RequireAll: ip ok, no token');
$res = areq(GET => '/t/auth/ipdeny/users/1', tok());
ok t_cmp($res->code, 403, 'RequireAll: ip refused, valid token');
ok !defined $res->header('WWW-Authenticate'), 'refused by address: no token challenge';
ok t_cmp(areq(GET => '/t/auth/ipdeny/users/1')->code, 403, 'RequireAll: ip refused before any token');
ok t_cmp(areq(GET => '/t/auth/ipor/users/1', tok(role => 'admin'))->code, 200, 'RequireAny: claim');
forbidden(areq(GET => '/t/auth/ipor/users/1', tok()), 'RequireAny: neither');

# httpd's Require user sees the JWT subject
ok t_cmp(areq(GET => '/t/auth/user/users/1', tok(sub => 'bob'))->code, 200, 'Require user bob');
ok t_cmp(areq(GET => '/t/auth/user/users/1', tok())->code, 403, 'Require user bob: alice');

# the denial is logged
my $mark = log_mark();
areq(GET => '/t/auth/claim/users/1', tok(sub => 'carol'));
like log_since($mark), qr/BFF106: user 'carol' lacks claim role in \(admin\)/, 'denial logged';

# a backend's own 403 is passed on untouched (never rewritten)
svc_reset('user');
$res = areq(GET => '/t/auth/x/users/1?status=403', tok());
ok t_cmp($res->code, 403, "the backend's 403");
ok t_cmp($res->{json}{error}, 'injected', "the backend's body");
ok !defined $res->header('WWW-Authenticate'), 'no challenge added';
