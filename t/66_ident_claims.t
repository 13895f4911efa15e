# A token whose identity claim cannot reach the backend intact is refused
# (401 invalid_token), never forwarded without the identity: control
# characters, leading or trailing spaces, objects, nested arrays, array
# elements holding the separator. Arrays of scalars
# joined with sep= still work. A claim the token lacks is a 401 unless the
# header is marked optional, and is logged with the claim's name (a typo
# such as "subject" for "sub" no longer fails silently).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth;
use BFFJWT;
use JSON::PP ();

plan tests => 66;

sub tok { bearer(jwt(claims => claims_ok(@_))) }

# A refusal: 401 problem+json, the Bearer invalid_token challenge, and no
# backend call.
sub refused {
    my ($path, $what, @claims) = @_;
    svc_reset();
    my $res = areq(GET => $path, tok(@claims));
    ok is_problem($res, 401), "$what: 401";
    like $res->header('WWW-Authenticate') // '', qr/^Bearer realm="bff-test", error="invalid_token"/,
         "$what: invalid_token";
    ok t_cmp(count_svc('user') + count_svc('order'), 0, "$what: no backend called");
}

# --- cannot be forwarded intact: ProxyPass route ------------------------

my $mark = log_mark();
refused('/t/auth/x/users/4', 'CR LF in sub', sub => "alice\r\nX-Evil: 1");
like log_since($mark), qr/BFF129: jwt token refused: claim "sub" cannot be forwarded intact in BFFIdentityHeader X-User-ID \(control character\)/,
     'logged with the claim and the reason';
refused('/t/auth/x/users/4', 'TAB in sub', sub => "ali\tce");
refused('/t/auth/x/users/4', 'DEL in sub', sub => "alice\x7f");
refused('/t/auth/x/users/4', 'trailing space in sub', sub => 'admin ');
refused('/t/auth/x/users/4', 'LF in a role', realm_access => { roles => ["a\nX-Evil: 1"] });
refused('/t/auth/x/users/4', 'roles as an object', realm_access => { roles => { admin => 1 } });
refused('/t/auth/x/users/4', 'nested array', realm_access => { roles => [['admin'], 'user'] });
refused('/t/auth/x/users/4', 'object in the array', realm_access => { roles => [{ r => 'admin' }] });
$mark = log_mark();
refused('/t/auth/x/users/4', 'a role holding the separator', realm_access => { roles => ['admin,root', 'user'] });
like log_since($mark), qr/BFF129: .*claim "realm_access\.roles" .*X-User-Roles \(array element containing the separator\)/,
     'separator logged';

# --- aggregated endpoint: refused before any backend call ----------------

refused('/t/auth/agg/5', 'aggregated: CR LF in sub', sub => "dave\r\nX-User-Roles: admin");
refused('/t/auth/agg/5', 'aggregated: object roles', realm_access => { roles => { admin => 1 } });

# --- what still works -----------------------------------------------------

svc_reset('user');
my $res = areq(GET => '/t/auth/x/users/4', tok(realm_access => { roles => ['a', 2, JSON::PP::true()] }));
ok t_cmp($res->code, 200, 'array of scalars');
ok t_cmp(svc_log('user')->[0]{headers}{'x-user-roles'}, 'a,2,true');

# sep=; lets an element hold a comma
svc_reset('user');
$res = areq(GET => '/t/auth/semi/users/4', tok(realm_access => { roles => ['Doe, John', 'x'] }));
ok t_cmp($res->code, 200, 'sep=; with a comma inside an element');
ok t_cmp(svc_log('user')->[0]{headers}{'x-user-roles'}, 'Doe, John;x');
svc_reset('user');
$res = areq(GET => '/t/auth/semi/users/4', tok(realm_access => { roles => ['a;b'] }));
ok is_problem($res, 401), 'sep=; and an element holding ";"';
ok t_cmp(count_svc('user'), 0);

# a space inside a value is fine
svc_reset('user');
$res = areq(GET => '/t/auth/x/users/4', tok(sub => 'Alice Doe'));
ok t_cmp($res->code, 200, 'inner space');
ok t_cmp(svc_log('user')->[0]{headers}{'x-user-id'}, 'Alice Doe');

# --- required and optional claims ------------------------------------------

# required by default: a token without the claim is refused, and logged
$mark = log_mark();
refused('/t/auth/tenant/users/4', 'required claim missing');
like log_since($mark), qr/BFF128: jwt token refused: no claim "tenant" for the required BFFIdentityHeader X-Tenant/,
     'the missing claim is named';
svc_reset('user');
$res = areq(GET => '/t/auth/tenant/users/4', tok(tenant => 'acme'));
ok t_cmp($res->code, 200, 'required claim present');
ok t_cmp(svc_log('user')->[0]{headers}{'x-tenant'}, 'acme');
svc_reset();
my $c = claims_ok();
$c->{tenant} = undef;     # JSON null
ok is_problem(areq(GET => '/t/auth/tenant/users/4', bearer(jwt(claims => $c))), 401),
   'required claim null: 401';
ok t_cmp(count_svc('user'), 0);

# a misspelled claim name: every token is refused, the log says which
$mark = log_mark();
refused('/t/auth/typo/users/4', 'BFFIdentityHeader X-Subject subject');
like log_since($mark), qr/BFF128: .*no claim "subject" for the required BFFIdentityHeader X-Subject/,
     'typo: the claim is named in the log';

# optional: no header, a log line at info naming the claim
svc_reset('user');
$mark = log_mark();
$res = areq(GET => '/t/auth/tenantopt/users/4', tok());
ok t_cmp($res->code, 200, 'optional claim missing: accepted');
ok !exists svc_log('user')->[0]{headers}{'x-tenant'}, 'and no header';
like log_since($mark), qr/BFF130: the token has no claim "tenant": BFFIdentityHeader X-Tenant not set \(optional\)/,
     'the missing optional claim is logged';
# optional does not cover a claim that is present but malformed
refused('/t/auth/tenantopt/users/4', 'optional claim with a control character', tenant => "a\rb");

# API keys: their claims are sub (the consumer) and plan
svc_reset('user');
$res = areq(GET => '/t/auth/keyplan/users/4', 'X-API-Key' => apikey('acme'));
ok t_cmp($res->code, 200, 'API key with a plan');
ok t_cmp(svc_log('user')->[0]{headers}{'x-plan'}, 'gold');
svc_reset('user');
$res = areq(GET => '/t/auth/keyplan/users/4', 'X-API-Key' => apikey('globex'));
ok is_problem($res, 401), 'API key without the required plan: 401';
like $res->header('WWW-Authenticate') // '', qr/^APIKey realm=/, 'with the API key challenge';
ok t_cmp(count_svc('user'), 0, 'no backend called');
