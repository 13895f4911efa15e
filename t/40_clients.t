# The three shipped client endpoints (conf/bff-clients.conf): exact answers
# computed from the fixtures, what reached the backends, payload sizes.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

my @uids = (1, 7, 42, 64, 105);    # 7: a product twice; 42, 64: escaping,
                                    # emoji; 105: no orders
plan tests => 9 * @uids + 12;

my $p = products_by_id();


sub partner {
    my $uid = shift;
    my $u = user_of($uid);
    my @o = map { { order_id => $_->{id}, product_id => $_->{product_id}, qty => $_->{quantity},
                    amount => $_->{total}, state => $_->{status} } } @{ orders_of($uid) };
    return { customer => { id => $u->{id}, name => $u->{name}, since => $u->{created_at} },
             purchases => { data => \@o } };
}

sub uniq { my %s; grep { !$s{$_}++ } @_ }

for my $uid (@uids) {
    my @pids = uniq(map { $_->{product_id} } @{ orders_of($uid) });

    svc_reset();
    my $res = bff_get("/api/web/profile/$uid");
    ok t_cmp($res->code, 200, "web $uid");
    ok json_is($res->{json}, expected_web($uid)), "web $uid: the exact nested document";

    svc_reset();
    $res = bff_get("/api/mobile/profile/$uid");
    ok t_cmp($res->code, 200, "mobile $uid");
    ok json_is($res->{json}, expected_mobile($uid)), "mobile $uid: the exact flat document";
    # one GET /products/{id} per distinct product, in first-seen order
    my @calls = map { $_->{uri} } grep { $_->{method} eq 'GET' } @{ svc_log('product') };
    ok json_is([sort @calls], [sort map { "/products/$_" } @pids]),
       "mobile $uid: one call per distinct product";
    ok !grep({ $_->{uri} =~ /batch/ } @{ svc_log('product') }), 'no batch call';

    svc_reset();
    $res = bff_get("/api/partner/v1/customers/$uid");
    ok t_cmp($res->code, 200, "partner $uid");
    ok json_is($res->{json}, partner($uid)), "partner $uid: the stable names";
    ok $res->content !~ /password_hash|internal_note|email|"total"|"quantity"/,
       "partner $uid: nothing internal, no backend names";
}

# payload: the mobile answer is less than half the web one
my $web = bff_get('/api/web/profile/7');
my $mob = bff_get('/api/mobile/profile/7');
my ($lw, $lm) = (length $web->content, length $mob->content);
ok $lm * 2 < $lw, "mobile payload $lm bytes < half of web $lw bytes";
ok t_cmp($mob->header('Content-Length'), $lm);
t_debug("payload user 7: web $lw bytes, mobile $lm bytes");

# user 7 orders 5 distinct products: the mobile endpoint calls the product
# service at most 4 at a time (each call held 300 ms by the service)
svc_reset();
svc_fault('product', delay_ms => 300);
my $t0 = now();
my $res = bff_get("/api/mobile/profile/7");
my $took = now() - $t0;
my $st = svc_stats('product');
svc_reset();
ok t_cmp($res->code, 200);
ok json_is($res->{json}, expected_mobile(7)), 'same answer when slow';
ok t_cmp($st->{requests}, 5, 'five product calls');
ok t_cmp($st->{max_in_flight}, 4, 'never more than 4 at once (and 4 did overlap)');
ok $took >= 0.6, "two rounds of 300 ms: took ${took}s";

# the web endpoint makes one batch call for the same user
svc_reset();
bff_get('/api/web/profile/7');
my @log = @{ svc_log('product') };
ok t_cmp(scalar @log, 1, 'web: one call');
ok t_cmp($log[0]{uri}, '/products/batch');

# a product service outage: the joins give null, the answer says why
svc_reset();
svc_fault('product', status => 503);
$res = bff_get('/api/web/profile/1');
svc_reset();
ok json_is([ map { $_->{product} } @{ $res->{json}{orders} } ], [ (undef) x @{ orders_of(1) } ]),
   'unmatched joins are null';
ok json_is($res->{json}{_errors}, { products => { status => 503, reason => 'HTTP 503' } });
ok t_cmp($res->header('X-BFF-Completed'), 'false');
