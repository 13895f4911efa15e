# Request bodies validated against a JSON Schema before any backend is
# called: one invalid body per keyword family (each answered with one 422
# application/problem+json listing JSON Pointer + keyword, and none reaching
# the backend), several violations in one answer, and valid bodies that
# reach the backend and the templates ({body...}).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use JSON::PP ();
use BFFTest;

my $json = JSON::PP->new->canonical(1);

sub post {
    my ($path, $body, @h) = @_;
    return bff_send(POST => $path, $body, 'Content-Type' => 'application/json', @h);
}

# [ body, pointer, keyword ] : the one violation the body has
my @cases = (
  [ '{"t_type":"1"}',                          '/t_type',    'type' ],
  [ '{"t_enum":"c"}',                          '/t_enum',    'enum' ],
  [ '{"t_const":41}',                          '/t_const',   'const' ],
  [ '{"t_str":"a"}',                           '/t_str',     'minLength' ],
  [ '{"t_str":"abcde"}',                       '/t_str',     'maxLength' ],
  [ '{"t_str":"AB"}',                          '/t_str',     'pattern' ],
  [ '{"t_email":"nobody"}',                    '/t_email',   'format' ],
  [ '{"t_num":-1}',                            '/t_num',     'minimum' ],
  [ '{"t_num":10}',                            '/t_num',     'exclusiveMaximum' ],
  [ '{"t_num":2.25}',                          '/t_num',     'multipleOf' ],
  [ '{"t_arr":[]}',                            '/t_arr',     'minItems' ],
  [ '{"t_arr":[5,6,7,8]}',                     '/t_arr',     'maxItems' ],
  [ '{"t_arr":[5,5]}',                         '/t_arr',     'uniqueItems' ],
  [ '{"t_arr":[5,"x"]}',                       '/t_arr/1',   'type' ],
  [ '{"t_has":[1,2]}',                         '/t_has',     'contains' ],
  [ '{"t_tuple":["a",1,2]}',                   '/t_tuple/2', 'additionalItems' ],
  [ '{"t_tuple":[1,1]}',                       '/t_tuple/0', 'type' ],
  [ '{"t_obj":{"x-c":"s"}}',                   '/t_obj',     'required' ],
  [ '{"t_obj":{"id":1,"other":2}}',            '/t_obj/other', 'additionalProperties' ],
  [ '{"t_obj":{"id":1,"x-c":3}}',              '/t_obj/x-c', 'type' ],
  [ '{"t_obj":{"id":1,"x-verylong":"s"}}',     '/t_obj',     'propertyNames' ],
  [ '{"t_obj":{"id":1,"x-b":"s","x-c":"s","x-d":"s"}}', '/t_obj', 'maxProperties' ],
  [ '{"t_obj":{"id":1,"x-a":"s"}}',            '/t_obj',     'dependencies' ],
  [ '{"t_any":1.5}',                           '/t_any',     'anyOf' ],
  [ '{"t_one":5}',                             '/t_one',     'oneOf' ],
  [ '{"t_all":11}',                            '/t_all',     'maximum' ],
  [ '{"t_not":null}',                          '/t_not',     'not' ],
  [ '{"t_if":{"kind":"card"}}',                '/t_if',      'required' ],
  [ '{"t_if":{"kind":"wire"}}',                '/t_if',      'required' ],
  [ '{"t_ref":0}',                             '/t_ref',     'exclusiveMinimum' ],
  [ '{"t_false":1}',                           '/t_false',   'false' ],
  [ '[]',                                      '',           'type' ],
);

plan tests => 4 * @cases + 21;

svc_reset();
for my $c (@cases) {
    my ($body, $ptr, $kw) = @$c;
    my $res = post('/t/v/keywords', $body);
    ok t_cmp($res->code, 422, "$body: 422");
    like $res->header('Content-Type'), qr{^application/problem\+json}, "$body: problem+json";
    my $errs = $res->{json}{errors} // [];
    ok t_cmp(scalar @$errs, 1, "$body: one violation");
    ok t_cmp("$errs->[0]{pointer} $errs->[0]{keyword}", "$ptr $kw", "$body: pointer and keyword");
}
ok t_cmp(scalar @{ svc_log('order') }, 0, 'no invalid body reached the backend');

# several violations in one answer, in document order, with RFC 9457 members
my $res = post('/t/v/keywords', '{"t_type":"x","t_arr":[5,"y"],"t_obj":{"id":"z"}}');
ok t_cmp($res->code, 422);
my $pb = $res->{json};
ok t_cmp($pb->{status}, 422);
ok t_cmp($pb->{title}, 'Unprocessable Content');
like $pb->{detail}, qr/3 violations/;
ok t_cmp($pb->{instance}, '/t/v/keywords');
ok $pb->{request_id}, 'request_id';
ok t_cmp(join(' ', map { "$_->{pointer}:$_->{keyword}" } @{ $pb->{errors} }),
         '/t_type:type /t_arr/1:type /t_obj/id:type');
ok $pb->{errors}[0]{detail}, 'each violation says what is wrong';
ok !exists $pb->{errors_truncated}, 'not truncated';

# a valid body reaches the backend, inside the template
svc_reset();
$res = post('/t/v/keywords', '{"t_type":3,"t_arr":[1,7],"t_obj":{"id":1,"x-a":"s","x-b":"t"},"t_any":"s"}');
ok t_cmp($res->code, 200, 'valid body: 200');
my $log = svc_log('order');
ok t_cmp(scalar @$log, 1, 'one call');
my $sent = decode($log->[0]{body});
ok t_cmp($json->encode($sent->{order}),
         $json->encode({ t_type => 3, t_arr => [1, 7], t_any => 's',
                         t_obj => { id => 1, 'x-a' => 's', 'x-b' => 't' } }),
         'the backend got the body through {body}');

# the shipped order-create endpoint (conf/bff-orders.conf)
svc_reset();
my $order = { user_id => 1, items => [ { product_id => 12, quantity => 2 },
                                       { product_id => 3, quantity => 1, gift => JSON::PP::true } ],
              shipping => { name => 'Ada', street => '1 Main St', city => 'Paris',
                            postcode => '75001', country => 'FR' },
              email => 'ada@example.com' };
$res = post('/api/orders', $json->encode($order));
ok t_cmp($res->code, 200, 'order created');
ok t_cmp($res->{json}{order}{status}, 'created');
ok t_cmp($res->{json}{user}{id}, 1, 'the user was looked up from {body.user_id}');
$log = svc_log('order');
ok t_cmp(scalar @$log, 1);
$sent = decode($log->[0]{body});
ok t_cmp($json->encode([$sent->{user_id}, $sent->{items}, $sent->{shipping}]),
         $json->encode([1, $order->{items}, $order->{shipping}]), 'the order service got the order');
ok t_cmp(svc_log('user')->[0]{uri}, '/users/1');

svc_reset();
$order->{email} = 'not an email';
$order->{items}[1]{quantity} = 0;
$order->{shipping}{country} = 'XX';
$res = post('/api/orders', $json->encode($order));
ok t_cmp(join(' ', map { "$_->{pointer}:$_->{keyword}" } @{ $res->{json}{errors} // [] }),
         '/email:format /items/1/quantity:minimum /shipping/country:enum',
         'order-create: three violations, formats asserted');
ok t_cmp(scalar(@{ svc_log('user') }) + scalar(@{ svc_log('order') }), 0,
         'no backend was called');
