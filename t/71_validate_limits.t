# Request bodies are read whole (chunked too), bounded and parsed before
# any backend is called: 413 over BFFRequestMaxSize (with or without a
# Content-Length), 400 when nested deeper than BFFRequestMaxDepth, when not
# JSON or when an object repeats a key, 415 for a Content-Type that is not
# JSON; BFFRequestMaxErrors caps the violations listed. None of these
# reaches the backend; valid chunked bodies do.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 45;

sub send_json {
    my ($method, $path, $body, @h) = @_;
    return bff_send($method, $path, $body, 'Content-Type' => 'application/json', @h);
}

svc_reset();
# --- size (BFFRequestMaxSize 256 on /t/v/small) -------------------------
my $big = '{"t_str":"' . ('a' x 300) . '"}';
my $res = send_json(PATCH => '/t/v/small/1', $big);
ok t_cmp($res->code, 413, 'over the size bound: 413');
like $res->header('Content-Type'), qr{^application/problem\+json};
like $res->{json}{detail}, qr/larger than 256 bytes/;
my ($code, $doc) = bff_chunked(PATCH => '/t/v/small/1', 'application/json',
                           ('{"t_str":"' . ('a' x 100)), ('a' x 100), ('a' x 100) . '"}');
ok t_cmp($code, 413, 'chunked over the size bound (no Content-Length): 413');
ok t_cmp($doc->{status}, 413);

# --- depth (BFFRequestMaxDepth 4) ---------------------------------------
$res = send_json(PATCH => '/t/v/small/1', '{"a":[[[{"b":1}]]]}');
ok t_cmp($res->code, 400, 'deeper than the bound: 400');
like $res->{json}{detail}, qr/nests deeper than 4 levels/;
$res = send_json(PATCH => '/t/v/small/1', '{"a":[[[1]]]}');
ok t_cmp($res->code, 200, 'at the bound: accepted');
$res = send_json(PATCH => '/t/v/small/1', ('[' x 100000) . (']' x 100000));
ok t_cmp($res->code, 413, 'a deep body larger than the size bound: 413 first');

# --- not JSON, duplicate keys -----------------------------------------
$res = send_json(POST => '/t/v/keywords', '{"t_type":1');
ok t_cmp($res->code, 400, 'truncated JSON: 400');
like $res->{json}{detail}, qr/^the body is not JSON: /;
$res = send_json(POST => '/t/v/keywords', '');
ok t_cmp($res->code, 400, 'empty body: 400');
$res = send_json(POST => '/t/v/keywords', '{"t_type":"x","t_type":1}');
ok t_cmp($res->code, 400, 'duplicate key: 400 (no bypass through the last value)');
like $res->{json}{detail}, qr/duplicate/;
$res = send_json(POST => '/t/v/keywords', "{\"t_str\":\"\xff\xfe\"}");
ok t_cmp($res->code, 400, 'invalid UTF-8: 400');

# --- Content-Type -----------------------------------------------------
$res = bff_send(POST => '/t/v/keywords', '{"t_type":1}', 'Content-Type' => 'text/plain');
ok t_cmp($res->code, 415, 'text/plain: 415');
like $res->header('Content-Type'), qr{^application/problem\+json};
$res = bff_send(POST => '/t/v/keywords', '{"t_type":1}');
ok t_cmp($res->code, 415, 'no Content-Type: 415');
$res = bff_send(POST => '/t/v/keywords', '{"t_type":1}',
                'Content-Type' => 'application/json; charset=iso-8859-1');
ok t_cmp($res->code, 415, 'a charset other than UTF-8: 415');
$res = bff_send(POST => '/t/v/keywords', '{"t_type":1}',
                'Content-Type' => 'application/json; charset=UTF-8');
ok t_cmp($res->code, 200, 'charset=UTF-8: accepted');
$res = bff_send(PATCH => '/t/v/small/2', '{"t_type":1}',
                'Content-Type' => 'application/merge-patch+json');
ok t_cmp($res->code, 200, 'application/merge-patch+json: accepted');

# --- the cap on listed violations (BFFRequestMaxErrors 3) ---------------
$res = send_json(PATCH => '/t/v/small/1',
                 '{"t_type":"a","t_enum":1,"t_const":1,"t_str":1,"t_num":"x"}');
ok t_cmp($res->code, 422);
ok t_cmp(scalar @{ $res->{json}{errors} }, 3, 'three violations listed');
ok t_cmp($res->{json}{errors_truncated}, JSON::PP::true(), 'errors_truncated');
like $res->{json}{detail}, qr/3 violations listed, more not/;
$res = send_json(PATCH => '/t/v/small/1', '{"t_type":"a","t_enum":1,"t_const":1}');
ok t_cmp(scalar @{ $res->{json}{errors} }, 3, 'exactly three: all listed');
ok !exists $res->{json}{errors_truncated}, 'and not marked truncated';
$res = send_json(POST => '/t/v/keywords',
                 '{"t_arr":["a","b","c"],"t_type":"a","t_enum":1,"t_const":1,"t_str":1,'
                 . '"t_num":"x","t_tuple":[1,"a",3],"t_any":[],"t_one":"x","t_all":-1,'
                 . '"t_not":null,"t_ref":-1,"t_false":0,"t_email":"x","t_obj":{"a":1,"b":2,"c":3,"d":4},'
                 . '"t_has":[],"t_if":{}}');
ok t_cmp(scalar @{ $res->{json}{errors} }, 20, 'the default cap: 20');
ok t_cmp($res->{json}{errors_truncated}, JSON::PP::true());

my $n = scalar @{ svc_log('order') };
ok t_cmp($n, 3, 'only the three accepted bodies reached the backend');

# --- chunked bodies that are valid reach the backend ------------------
svc_reset();
($code, $doc) = bff_chunked(POST => '/t/v/keywords', 'application/json',
                        '{"t_type"', ':7,"t_str":', '"abc"}');
ok t_cmp($code, 200, 'valid chunked body: 200');
my $log = svc_log('order');
ok t_cmp(scalar @$log, 1);
ok t_cmp(decode($log->[0]{body})->{order}{t_str}, 'abc', 'the whole chunked body got through');
($code, $doc) = bff_chunked(POST => '/t/v/keywords', 'application/json',
                        '{"t_type"', ':"7"}');
ok t_cmp($code, 422, 'invalid chunked body: 422');
ok t_cmp($doc->{errors}[0]{pointer}, '/t_type');
ok t_cmp(scalar @{ svc_log('order') }, 1, 'and it did not reach the backend');

# --- a body endpoint without a schema: JSON, bounded, templated ---------
svc_reset();
$res = send_json(PUT => '/t/v/noschema/9', '{"anything":["goes",1]}');
ok t_cmp($res->code, 200, 'no schema: any JSON');
$log = svc_log('order');
ok t_cmp(decode($log->[0]{body})->{id}, 9);
ok t_cmp(decode($log->[0]{body})->{order}{anything}[0], 'goes');
$res = send_json(PUT => '/t/v/noschema/9', 'not json');
ok t_cmp($res->code, 400, 'no schema: still JSON only');
$res = send_json(PUT => '/t/v/noschema/9', ('[' x 40) . (']' x 40));
ok t_cmp($res->code, 400, 'no schema: the default depth bound (32)');
$res = send_json(PUT => '/t/v/noschema/9', '"' . ('x' x (1024 * 1024)) . '"');
ok t_cmp($res->code, 413, 'no schema: the default size bound (1M)');
ok t_cmp(scalar @{ svc_log('order') }, 1, 'only the valid one reached the backend');

# --- the method of an endpoint with a body ----------------------------
$res = bff_get('/t/v/noschema/9');
ok t_cmp($res->code, 405, 'GET on a PUT endpoint: 405');
ok t_cmp($res->header('Allow'), 'PUT');
