# Retries (t/conf/resilience.conf.in): only retryable failures (502, 503,
# 504, transport errors), only idempotent methods unless unsafe=on, with
# backoff, within the retry budget and never past the endpoint deadline.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Time::HiRes ();
use BFFTest;

plan tests => 26;

sub calls {
    my ($role, $re) = @_;
    return scalar grep { $_->{uri} =~ $re } @{ svc_log($role) };
}

sub health_of {
    my $key = shift;
    my ($b) = grep { $_->{backend} eq $key } @{ bff_get('/t/health')->{json}{backends} };
    return $b;
}

# two 503s, then the real answer: two retries, a complete answer
svc_reset();
svc_fault('order', status => 503, count => 2);
my $res = bff_get('/t/retry/5');
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'retried until it worked');
ok json_is($res->{json}{orders}, orders_of(5)), 'the real orders';
my @log = grep { $_->{uri} =~ m{^/orders/user/5} } @{ svc_log('order') };
ok t_cmp(scalar @log, 3, 'three attempts reached the service');
ok t_cmp(join(',', map { $_->{status} } @log), '503,503,200');
# the backoff: at least 20 ms / 2 between attempts (equal jitter)
ok $log[1]{t_start} - $log[0]{t_end} >= 0.009, 'backoff before the first retry';

# three 503s: attempts=3 gives up, the answer is partial
svc_reset();
svc_fault('order', status => 503);
$res = bff_get('/t/retry/6');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'HTTP 503', 'gave up after 3 attempts');
ok t_cmp(calls('order', qr{^/orders/user/6}), 3, 'attempts=3 calls');

# a 500 is not in the retried statuses
svc_reset();
svc_fault('order', status => 500);
$res = bff_get('/t/retry/7');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'HTTP 500');
ok t_cmp(calls('order', qr{^/orders/user/7}), 1, 'no retry of a 500');

# a 404 is an answer, not a failure to retry
svc_reset();
svc_fault('order', status => 404);
bff_get('/t/retry/8');
ok t_cmp(calls('order', qr{^/orders/user/8}), 1, 'no retry of a 404');

# a dropped connection is retried
svc_reset();
svc_fault('order', fault => 'drop', count => 1);
$res = bff_get('/t/retry/9');
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'a dropped connection is retried');
ok t_cmp(calls('order', qr{^/orders/user/9}), 2);

# POST: not retried...
svc_reset();
svc_fault('product', status => 503, count => 1);
$res = bff_get('/t/retrypost/3');
ok t_cmp($res->{json}{_errors}{products}{reason}, 'HTTP 503', 'POST not retried');
ok t_cmp(calls('product', qr{^/products/batch}), 1, 'one POST');
# ... unless unsafe=on
svc_reset();
svc_fault('product', status => 503, count => 1);
$res = bff_get('/t/retryunsafe/3');
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'unsafe=on: POST retried');
ok t_cmp($res->{json}{products}[0]{id}, 3);
ok t_cmp(calls('product', qr{^/products/batch}), 2, 'two POSTs');

# the budget: a burst of 2 retries, then 10% of calls
svc_reset();
svc_fault('order', status => 503);
bff_get('/t/retrybudget/10');
ok t_cmp(calls('order', qr{^/orders/user/10}), 3, 'the burst allows 2 retries');
bff_get('/t/retrybudget/10');
ok t_cmp(calls('order', qr{^/orders/user/10}), 4, 'then the budget is exhausted: no retry');
my $b = health_of("$ENV{BFF_T_ORDER_URL} /t/retrybudget/{id:int} orders");
ok t_cmp($b->{counters}{retries}, 2, 'retries counted');
ok t_cmp($b->{counters}{budget_exhausted}, 1, 'exhausted budget counted');
# 10 calls deposit one token: the next failing call gets one retry again
svc_reset();
bff_get('/t/retrybudget/11') for 1 .. 9;
svc_fault('order', status => 503);
bff_get('/t/retrybudget/11');
ok t_cmp(calls('order', qr{^/orders/user/11}), 11, 'a token earned by 10 calls pays one retry');

# the deadline bounds the retries: 300 ms, each attempt times out at 100 ms
svc_reset();
svc_fault('order', delay_ms => 1000);
my $t0 = now();
$res = bff_get('/t/retrydeadline/12');
my $took = now() - $t0;
ok $took < 0.6, "answered within the deadline ($took s)";
ok t_cmp($res->code, 200, 'partial answer');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'timeout');
# the abandoned calls end after their 1 s delay: then they are logged
my $until = now() + 5;
Time::HiRes::sleep(0.05) while svc_stats('order')->{in_flight} && now() < $until;
my $n = calls('order', qr{^/orders/user/12});
ok $n >= 2 && $n <= 3, "retried within the deadline ($n attempts)";
svc_reset();
