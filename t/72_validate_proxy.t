# Validation on a plain ProxyPass route (a <Location> with
# BFFRequestSchema, BFFQueryRule, BFFHeaderRule): checked before mod_proxy
# connects, so the backend's request log never shows an invalid request;
# a valid body (chunked too) reaches the backend byte for byte. Typed query
# parameters and headers on an aggregated endpoint.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use JSON::PP ();
use BFFTest;

plan tests => 52;

my $json = JSON::PP->new->canonical(1);

sub send_json {
    my ($method, $path, $body, @h) = @_;
    return bff_send($method, $path, $body, 'Content-Type' => 'application/json', @h);
}

sub violations {
    my $res = shift;
    return join ' ', map { ($_->{pointer} // $_->{parameter} // "h:$_->{header}") . ":$_->{keyword}" }
                     @{ $res->{json}{errors} // [] };
}

my $order = $json->encode({ user_id => 2, items => [ { product_id => 5, quantity => 3 } ],
                            shipping => { name => 'Bo', street => 'Hauptstr. 1',
                                          city => 'Berlin', country => 'DE' } });

# --- ProxyPass /t/v/proxy/ -> the order service -------------------------
svc_reset();
my $res = send_json(POST => '/t/v/proxy/orders', '{"user_id":0,"items":[],"shipping":{}}');
ok t_cmp($res->code, 422, 'proxied: invalid body 422');
like $res->header('Content-Type'), qr{^application/problem\+json};
ok t_cmp(violations($res),
         '/user_id:minimum /items:minItems /shipping:required /shipping:required /shipping:required /shipping:required');
$res = send_json(POST => '/t/v/proxy/orders', '{"user_id":1,"user_id":2}');
ok t_cmp($res->code, 400, 'proxied: duplicate keys 400');
$res = bff_send(POST => '/t/v/proxy/orders', $order, 'Content-Type' => 'text/plain');
ok t_cmp($res->code, 415, 'proxied: text/plain 415');
$res = send_json(POST => '/t/v/proxy/orders', '{"note":"' . ('x' x 5000) . '"}');
ok t_cmp($res->code, 413, 'proxied: over 4k 413');
my ($code, $doc) = bff_chunked(POST => '/t/v/proxy/orders', 'application/json', '{"user_id":', '"2"}');
ok t_cmp($code, 422, 'proxied: invalid chunked body 422');
ok t_cmp(join(' ', map { "$_->{pointer}:$_->{keyword}" } @{ $doc->{errors} }),
         ':required :required /user_id:type');
$res = send_json(POST => '/t/v/proxy/orders?dry_run=maybe', $order);
ok t_cmp($res->code, 422, 'proxied: bad query parameter 422');
ok t_cmp(violations($res), 'dry_run:type');
$res = send_json(POST => '/t/v/proxy/orders', $order, 'X-Client-Version' => 'v2');
ok t_cmp($res->code, 422, 'proxied: bad header 422');
ok t_cmp(violations($res), 'h:X-Client-Version:pattern');
ok t_cmp(scalar @{ svc_log('order') }, 0, 'no invalid request reached the backend');

$res = send_json(POST => '/t/v/proxy/orders?dry_run=true', $order, 'X-Client-Version' => '2.1');
ok t_cmp($res->code, 201, 'proxied: valid body reaches the backend');
ok t_cmp($res->{json}{order}{user_id}, 2, 'and its answer comes back');
my $log = svc_log('order');
ok t_cmp(scalar @$log, 1);
ok t_cmp($log->[0]{body}, $order, 'byte for byte');
ok t_cmp($log->[0]{headers}{'content-length'}, length $order, 'with its length');
ok t_cmp($log->[0]{uri}, '/orders?dry_run=true');

svc_reset();
my @parts = ($order =~ /(.{1,20})/gs);
($code, $doc) = bff_chunked(POST => '/t/v/proxy/orders', 'application/json', @parts);
ok t_cmp($code, 201, 'proxied: valid chunked body reaches the backend');
$log = svc_log('order');
ok t_cmp(scalar @$log, 1);
ok t_cmp($log->[0]{body}, $order, 'the whole body');
ok t_cmp($log->[0]{headers}{'content-length'}, length $order, 'now with a Content-Length');
ok !exists $log->[0]{headers}{'transfer-encoding'}, 'not chunked any more';

svc_reset();
$res = bff_get('/t/v/proxy/orders/user/1');
ok t_cmp($res->code, 200, 'a GET without a body is not held to the body schema');
$res = bff_get('/t/v/proxy/orders/user/1?dry_run=1');
ok t_cmp($res->code, 422, 'but to the query rules');
ok t_cmp(scalar @{ svc_log('order') }, 1);

# --- typed query parameters and headers on an endpoint -------------------
svc_reset();
my @ok_h = ('X-Client-Version' => '3.0');
$res = bff_get('/t/v/rules/1?limit=10&sort=asc&since=2024-02-29', @ok_h, 'X-Trace-Sample' => '0.5');
ok t_cmp($res->code, 200, 'rules: valid');
$res = bff_get('/t/v/rules/1?limit=10', @ok_h);
ok t_cmp($res->code, 200, 'rules: optional ones may be absent');
my @bad = (
  [ '/t/v/rules/1', [@ok_h], 'limit:required' ],
  [ '/t/v/rules/1?limit=10', [], 'h:X-Client-Version:required' ],
  [ '/t/v/rules/1?limit=0', [@ok_h], 'limit:minimum' ],
  [ '/t/v/rules/1?limit=101', [@ok_h], 'limit:maximum' ],
  [ '/t/v/rules/1?limit=ten', [@ok_h], 'limit:type' ],
  [ '/t/v/rules/1?limit=1&limit=2', [@ok_h], 'limit:type' ],
  [ '/t/v/rules/1?limit=5&sort=up', [@ok_h], 'sort:enum' ],
  [ '/t/v/rules/1?limit=5&since=2023-02-29', [@ok_h], 'since:format' ],
  [ '/t/v/rules/1?limit=5', [@ok_h, 'X-Trace-Sample' => '1.5'], 'h:X-Trace-Sample:maximum' ],
  [ '/t/v/rules/1?limit=5', [@ok_h, 'X-Trace-Sample' => 'half'], 'h:X-Trace-Sample:type' ],
  [ '/t/v/rules/1?sort=x', ['X-Client-Version' => 'x'],
    'limit:required sort:enum h:X-Client-Version:pattern' ],
);
for my $b (@bad) {
    my ($path, $h, $want) = @$b;
    $res = bff_get($path, @$h);
    ok t_cmp($res->code, 422, "$path: 422");
    ok t_cmp(violations($res), $want, "$path: $want");
}
ok t_cmp(scalar @{ svc_log('user') }, 2, 'only the valid requests reached the backend');
