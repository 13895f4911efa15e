# JWT authentication (AuthType bff-jwt): every algorithm accepted, every
# kind of bad token refused with 401, WWW-Authenticate (RFC 6750) and a
# problem document, and never a backend call.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth;
use BFFJWT;

my @algs = qw(HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384);
my $now = time;
my $keys = keydir();
my $pem = do { local $/; open my $fh, '<', "$keys/rsa.pub" or die; <$fh> };

my @bad = (
    # name, token, log reason
    [ 'alg none', jwt_raw({ alg => 'none', typ => 'JWT', kid => 'rs' }, claims_ok(), 'none'),
      'unsupported_alg' ],
    [ 'alg None', jwt_raw({ alg => 'None', kid => 'rs' }, claims_ok(), 'none'), 'unsupported_alg' ],
    [ 'HS256 with the RSA public key as secret (confusion)',
      jwt(alg => 'HS256', kid => 'rs', key => $pem), qr/unsupported_alg/ ],
    [ 'expired', jwt(claims => claims_ok(exp => $now - 100)), 'expired' ],
    [ 'not_yet_valid', jwt(claims => claims_ok(nbf => $now + 100)), 'not_yet_valid' ],
    [ 'missing_exp', jwt(claims => claims_ok(exp => undef)), 'missing_exp' ],
    [ 'wrong_issuer', jwt(claims => claims_ok(iss => 'https://evil.test')), 'wrong_issuer' ],
    [ 'no issuer', jwt(claims => claims_ok(iss => undef)), 'wrong_issuer' ],
    [ 'wrong_audience', jwt(claims => claims_ok(aud => 'other')), 'wrong_audience' ],
    [ 'exp as a string', jwt(claims => claims_ok(exp => "" . ($now + 600))), 'bad_claim' ],
    [ 'bad signature (another key, same kid)', jwt(key => "$keys/rsa-other.key"), 'bad_signature' ],
    [ 'tampered payload', do {
          my ($h, undef, $s) = split /\./, jwt();
          join '.', $h, b64u('{"sub":"admin","iss":"https://issuer.test","aud":"bff-test","exp":'
                             . ($now + 600) . '}'), $s }, 'bad_signature' ],
    [ 'unknown_kid', jwt(kid => 'nope'), 'unknown_kid' ],
    [ 'no kid', jwt(kid => undef), 'unknown_kid' ],
    [ 'ES256 token naming the RSA kid', jwt(alg => 'ES256', kid => 'rs'), qr/unknown_kid|unsupported_alg/ ],
    [ 'two parts', 'abc.def', 'malformed' ],
    [ 'garbage', 'not-a-token', 'malformed' ],
    [ 'bad base64', 'e30.e30.!!!', 'malformed' ],
    [ 'header not JSON', b64u('{"alg":') . '.' . b64u('{}') . '.sig', 'malformed' ],
    [ 'crit header', jwt(header => { crit => ['exp'] }), 'malformed' ],
    [ 'oversized (4k limit)', jwt(claims => claims_ok(pad => 'x' x 5000)), 'oversized' ],
    [ 'no sub', jwt(claims => claims_ok(sub => undef)), 'bad_claim' ],
);

plan tests => 3 * @algs + 7 * @bad + 32;

# every algorithm, through the ProxyPass route
svc_reset('user');
for my $alg (@algs) {
    my $res = areq(GET => '/t/auth/x/users/2', bearer(jwt(alg => $alg)));
    ok t_cmp($res->code, 200, "$alg accepted");
    ok t_cmp($res->{json}{id}, 2, "$alg: the backend answered");
    my $e = BFFTest::svc_log('user')->[-1];
    ok t_cmp($e->{headers}{'x-user-id'}, 'alice', "$alg: identity reached the backend");
}

# every rejection
for my $case (@bad) {
    my ($name, $token, $why) = @$case;
    svc_reset('user');
    my $mark = log_mark();
    my $res = areq(GET => '/t/auth/x/users/1', bearer($token));
    ok is_problem($res, 401), "$name: 401 problem+json" or diag $res->as_string;
    my $wa = $res->header('WWW-Authenticate') // '';
    like $wa, qr/^Bearer realm="bff-test", error="invalid_token"/, "$name: RFC 6750 challenge";
    ok t_cmp($res->{json}{title}, 'Unauthorized');
    unlike $res->content, qr/BEGIN|PRIVATE|$keys/, "$name: no key material";
    ok t_cmp(count_svc('user'), 0, "$name: no backend call");
    my $log = log_since($mark);
    my $re = ref $why ? $why : qr/\Q$why\E/;
    like $log, qr/BFF102: JWT rejected \((?:$re)\)/, "$name: reason logged" or diag $log;
    unlike $log, qr/\Q$token\E/, "$name: the token is not logged" if length $token > 20;
    pass "$name: short token" if length $token <= 20;
}

# leeway (30s): just expired, just not yet valid (the clock read now:
# under ASan on a loaded machine the cases above take more than 20 s)
ok t_cmp(areq(GET => '/t/auth/x/users/1', bearer(jwt(claims => claims_ok(exp => time - 10))))->code,
         200, 'expired 10s ago, within the leeway');
ok t_cmp(areq(GET => '/t/auth/x/users/1', bearer(jwt(claims => claims_ok(nbf => time + 10))))->code,
         200, 'valid in 10s, within the leeway');
# the second configured issuer, and aud as an array
ok t_cmp(areq(GET => '/t/auth/x/users/1', bearer(jwt(claims => claims_ok(iss => 'https://issuer2.test'))))->code, 200);
ok t_cmp(areq(GET => '/t/auth/x/users/1', bearer(jwt(claims => claims_ok(aud => ['x', 'bff-test']))))->code, 200);
# the same token twice (the second from the verified-token cache)
my $tok = jwt(alg => 'ES384');
ok t_cmp(areq(GET => '/t/auth/x/users/1', bearer($tok))->code, 200);
ok t_cmp(areq(GET => '/t/auth/x/users/1', bearer($tok))->code, 200, 'cached token');

# no token at all: a challenge without an error code (RFC 6750 3.1)
my $res = areq(GET => '/t/auth/x/users/1');
ok is_problem($res, 401);
ok t_cmp($res->header('WWW-Authenticate'), 'Bearer realm="bff-test"');
$res = areq(GET => '/t/auth/x/users/1', Authorization => 'Basic YWxpY2U6eA==');
ok t_cmp($res->code, 401, 'another scheme is no token');
$res = areq(HEAD => '/t/auth/x/users/1');
ok t_cmp($res->code, 401, 'HEAD: 401');
ok t_cmp($res->content, '', 'HEAD: no body');

# token sources
my $t = jwt();
ok t_cmp(areq(GET => '/t/auth/cookie/users/1', Cookie => "a=b; bff_token=$t")->code, 200, 'cookie');
ok t_cmp(areq(GET => '/t/auth/cookie/users/1', bearer($t))->code, 401, 'cookie location ignores bearer');
ok t_cmp(areq(GET => "/t/auth/query/users/1?x=1&access_token=$t")->code, 200, 'query when enabled');
ok t_cmp(areq(GET => '/t/auth/query/users/1', bearer($t))->code, 200, 'then bearer');
ok t_cmp(areq(GET => '/t/auth/hdr/users/1', 'X-Token' => $t)->code, 200, 'header');
ok t_cmp(areq(GET => "/t/auth/x/users/1?access_token=$t")->code, 401, 'never the query by default');
ok t_cmp(areq(GET => '/t/auth/x/users/1', Cookie => "bff_token=$t")->code, 401, 'nor a cookie');

# an aggregated endpoint
svc_reset();
$res = areq(GET => '/t/auth/agg/3', bearer($t));
ok t_cmp($res->code, 200, 'aggregated endpoint with a token');
ok t_cmp($res->{json}{user}{id}, 3);
svc_reset();
$res = areq(GET => '/t/auth/agg/3');
ok is_problem($res, 401), 'aggregated endpoint without a token';
ok t_cmp(count_svc('user') + count_svc('order'), 0, 'no backend called');
$res = areq(GET => '/t/auth/agg/3', bearer(jwt(claims => claims_ok(exp => $now - 100))));
ok is_problem($res, 401);
like $res->header('WWW-Authenticate'), qr/error="invalid_token", error_description="token expired"/;

# one PEM key (vhost bff_pem): RS256 only, exp optional there
ok t_cmp(areq(bff_pem => GET => '/t/pem/users/1', bearer(jwt(alg => 'RS256', kid => undef,
         claims => claims_ok(exp => undef))))->code, 200, 'PEM key, no exp allowed');
ok t_cmp(areq(bff_pem => GET => '/t/pem/users/1', bearer(jwt(alg => 'RS384', kid => undef)))->code,
         401, 'PEM vhost: RS384 not configured');
ok t_cmp(areq(bff_pem => GET => '/t/pem/users/1', bearer(jwt(alg => 'HS256', kid => undef, key => $pem)))->code,
         401, 'PEM vhost: HS256 signed with the public key (confusion)');
ok t_cmp(areq(bff_pem => GET => '/t/pem/users/1', bearer(jwt(alg => 'ES256', kid => undef)))->code,
         401, 'PEM vhost: ES256');

# notes and environment for logs
my $alog = eval { open my $fh, '<', Apache::Test::vars('t_logs') . '/bff_auth.log' or die $!; local $/; <$fh> } // '';
diag "reading bff_auth.log: $@" if $@;
like $alog, qr{GET /t/auth/x/users/2 HTTP/1.1 200 user=alice auth=jwt sub=alice err=- throttled=- env=alice},
     'user, notes and env in the access log';
like $alog, qr{ 401 user=- auth=- sub=- err=expired }, 'the failure reason as a note';
like $alog, qr{ 401 user=- auth=- sub=- err=missing };
like $alog, qr{ 401 user=- auth=- sub=- err=unsupported_alg };
