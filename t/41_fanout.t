# Per-item fan-out (BFFBackend ... per-item): one call per distinct value,
# the concurrency cap as seen by the service, stable order, failed items
# named in _errors.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 24;

my $p = products_by_id();
sub uniq { my %s; grep { !$s{$_}++ } @_ }
sub pids { uniq(map { $_->{product_id} } @{ orders_of($_[0]) }) }

# user 7: six orders, five distinct products; each call held 150 ms,
# at most 2 at a time
my @pids = pids(7);
ok t_cmp(scalar @pids, 5, 'fixture: five distinct products');
svc_reset();
my $t0 = now();
my $res = bff_get('/t/fan/slow/7');
my $took = now() - $t0;
my $st = svc_stats('product');
ok t_cmp($res->code, 200);
ok json_is($res->{json}{products}, [ map { $p->{$_} } @pids ]), 'first-seen order';
ok t_cmp($st->{requests}, 5, 'one call per distinct product');
ok t_cmp($st->{max_in_flight}, 2, 'the cap of 2 is reached, never passed');
ok $took >= 0.45, "three rounds of 150 ms: ${took}s";
# the request log: no instant with three calls open
my @iv = map { [ $_->{t_start}, $_->{t_end} ] } @{ svc_log('product') };
my $max = 0;
for my $a (@iv) {
    my $n = grep { $_->[0] <= $a->[0] && $a->[0] < $_->[1] } @iv;
    $max = $n if $n > $max;
}
ok $max <= 2, "overlap in the request log: $max";

# a failed item: the others answer, _errors names it (one at a time, so
# the first call is the first product)
my @p1 = pids(1);
svc_reset();
svc_fault('product', status => 503, count => 1);
$res = bff_get('/t/fan/items/1');
ok t_cmp($res->code, 200);
ok t_cmp($res->header('X-BFF-Completed'), 'false');
ok json_is($res->{json}{products}, [ map { $p->{$_} } @p1[1 .. $#p1] ]), 'the items that answered';
ok json_is($res->{json}{_errors}, { products => {
    status => undef, reason => '1 of ' . @p1 . ' items failed',
    items => [ { item => $p1[0], status => 503, reason => 'HTTP 503' } ] } }), '_errors names the item';
open my $fh, '<', Apache::Test::vars('t_logs') . '/error_log' or die $!;
my @lines = grep { /BFF400: GET \/t\/fan\/items\/\{user_id:int\}: backend 'products' item 1 of 4 failed: HTTP 503 \(GET http:\/\/127\.0\.0\.1:\d+\/products\/$p1[0]\)/ } <$fh>;
ok scalar(@lines) >= 1, 'the error log names the call';

# every item failed: the default, and every item listed
svc_reset();
svc_fault('product', status => 404);
$res = bff_get('/t/fan/items/1');
svc_reset();
ok json_is($res->{json}{products}, [], 'default');
ok json_is($res->{json}{_errors}{products}{items},
           [ map { { item => $_, status => 404, reason => 'HTTP 404' } } @p1 ]);
ok t_cmp($res->{json}{_errors}{products}{reason}, 'HTTP 404');

# a required per-item backend: one failed item fails the answer (502,
# not the item's 404)
svc_fault('product', status => 404, count => 1);
$res = bff_get('/t/fan/required/1');
svc_reset();
ok t_cmp($res->code, 502);
ok t_cmp($res->header('Content-Type'), 'application/problem+json');
like $res->{json}{detail}, qr/^required backend 'products' failed: item \d+: HTTP 404$/;
$res = bff_get('/t/fan/required/1');
ok t_cmp($res->code, 200, 'fine when every item answers');

# more items than max-items=2: no call at all
svc_reset();
$res = bff_get('/t/fan/max/1');
ok json_is($res->{json}{_errors}, { products => { status => undef, reason => 'too many items' } });
ok !grep({ $_->{uri} =~ m{^/products/} } @{ svc_log('product') }), 'no product call';

# no orders: no items, no calls, a complete answer
svc_reset();
$res = bff_get('/t/fan/items/105');
ok json_is($res->{json}, { orders => [], products => [] });
ok t_cmp($res->header('X-BFF-Completed'), 'true');
ok t_cmp(scalar @{ svc_log('product') }, 0);
