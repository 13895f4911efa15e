# API keys (AuthType bff-apikey): keys looked up by hash in
# BFFAPIKeyFile, consumer as r->user, a configurable header.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth;
use BFFJWT;

plan tests => 21;

svc_reset('user');
my $res = areq(GET => '/t/auth/key/users/1', 'X-API-Key' => apikey('acme'));
ok t_cmp($res->code, 200, 'valid key');
ok t_cmp($res->{json}{id}, 1);
ok t_cmp(areq(GET => '/t/auth/key/users/1', 'X-API-Key' => apikey('globex'))->code, 200, 'key without plan');

my $mark = log_mark();
$res = areq(GET => '/t/auth/key/users/1', 'X-API-Key' => 'acme-key-2');
ok is_problem($res, 401), 'unknown key: 401 problem+json';
ok t_cmp($res->header('WWW-Authenticate'), 'APIKey realm="bff-test", header="X-API-Key"');
ok t_cmp($res->{json}{detail}, 'invalid API key');
my $log = log_since($mark);
like $log, qr/BFF105: unknown API key \(sha256 [0-9a-f]{8}\.\.\.\) in header X-API-Key/, 'logged by hash prefix';
unlike $log, qr/acme-key-2/, 'never the key';

$res = areq(GET => '/t/auth/key/users/1');
ok is_problem($res, 401), 'no key';
ok t_cmp($res->{json}{detail}, 'an API key is required in the X-API-Key header');
ok t_cmp(areq(GET => '/t/auth/key/users/1', 'X-API-Key' => '')->code, 401, 'empty key');
ok t_cmp(areq(GET => '/t/auth/key/users/1', 'X-API-Key' => 'x' x 2000)->code, 401, 'huge key');
ok t_cmp(areq(GET => '/t/auth/key/users/1', bearer(jwt()))->code, 401, 'a token is not a key');
ok t_cmp(areq(GET => '/t/auth/key/users/1', 'X-API-Key' => uc apikey('acme'))->code, 401,
         'keys are case-sensitive');

# another header
ok t_cmp(areq(GET => '/t/auth/keyhdr/users/1', 'X-Partner-Key' => apikey('acme'))->code, 200,
         'BFFAPIKeyHeader');
ok t_cmp(areq(GET => '/t/auth/keyhdr/users/1', 'X-API-Key' => apikey('acme'))->code, 401,
         'not the default header there');
like areq(GET => '/t/auth/keyhdr/users/1')->header('WWW-Authenticate'), qr/header="X-Partner-Key"/;

# Require user <consumer>
ok t_cmp(areq(GET => '/t/auth/keyacme/users/1', 'X-API-Key' => apikey('acme'))->code, 200,
         'Require user acme: acme');
ok t_cmp(areq(GET => '/t/auth/keyacme/users/1', 'X-API-Key' => apikey('globex'))->code, 403,
         'Require user acme: globex');

# notes for the access log
my $alog = do { open my $fh, '<', Apache::Test::vars('t_logs') . '/bff_auth.log' or die $!; local $/; <$fh> };
like $alog, qr{GET /t/auth/key/users/1 HTTP/1.1 200 user=acme auth=apikey sub=acme err=-}, 'notes';
like $alog, qr{GET /t/auth/key/users/1 HTTP/1.1 401 user=- auth=- sub=- err=invalid}, 'failure note';
