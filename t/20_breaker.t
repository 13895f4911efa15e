# Circuit breakers (t/conf/resilience.conf.in): a failing backend opens its
# breaker and later requests do not reach it (the service's request log
# proves it); half-open trials close or reopen it; slow calls count as
# failures; the failure rate needs its minimum of calls; a required
# backend's open breaker answers 503, or the stale cached answer.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Time::HiRes qw(sleep);
use BFFTest;

plan tests => 49;

sub calls {
    my ($role, $re) = @_;
    return scalar grep { $_->{uri} =~ $re } @{ svc_log($role) };
}

sub health_of {
    my $key = shift;
    my $h = bff_get('/t/health')->{json};
    my ($b) = grep { $_->{backend} eq $key } @{ $h->{backends} };
    return $b;
}

my $order_key = "$ENV{BFF_T_ORDER_URL} /t/brk/{id:int} orders";

# ---- an optional backend opens after 3 failures in a row
svc_reset();
svc_fault('order', status => 503);
for my $i (1 .. 3) {
    my $res = bff_get('/t/brk/5');
    ok t_cmp($res->{json}{_errors}{orders}{reason}, 'HTTP 503', "failure $i is the backend's");
}
ok t_cmp(calls('order', qr{^/orders/user/5}), 3, 'three calls reached the service');
my $t0 = now();
my $res = bff_get('/t/brk/5');
ok t_cmp($res->code, 200, 'open breaker, optional backend: partial answer');
ok t_cmp($res->header('X-BFF-Completed'), 'false');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'circuit open', '_errors says circuit open');
ok json_is($res->{json}{orders}, []), 'the default stands in';
ok t_cmp(calls('order', qr{^/orders/user/5}), 3, 'the open breaker kept the call from the service');
my $b = health_of($order_key);
ok t_cmp($b->{state}, 'open', 'health shows the breaker open');
ok t_cmp($b->{counters}{opened}, 1, 'one transition to open counted');
ok t_cmp($b->{counters}{refused}, 1, 'one refused call counted');

# ---- half-open: one trial; it fails, the breaker opens again
sleep 1.1;
$res = bff_get('/t/brk/5');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'HTTP 503', 'after the wait a trial call is made');
ok t_cmp(calls('order', qr{^/orders/user/5}), 4, 'the trial reached the service');
$res = bff_get('/t/brk/5');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'circuit open', 'a failed trial opens it again');
ok t_cmp(calls('order', qr{^/orders/user/5}), 4);
$b = health_of($order_key);
ok t_cmp($b->{counters}{half_opened}, 1, 'one transition to half-open');
ok t_cmp($b->{counters}{opened}, 2, 'two transitions to open');

# ---- half-open: the backend recovered, the trial succeeds and closes it
svc_reset('order');
sleep 1.1;
$res = bff_get('/t/brk/5');
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'the trial succeeds');
ok json_is($res->{json}{orders}, orders_of(5)), 'with the real orders';
$res = bff_get('/t/brk/5');
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'closed again: calls go through');
ok t_cmp(calls('order', qr{^/orders/user/5}), 2, 'both reached the service');
$b = health_of($order_key);
ok t_cmp($b->{state}, 'closed', 'health shows it closed');
ok t_cmp($b->{counters}{closed}, 1, 'one transition to closed');
ok t_cmp($b->{last}{status}, 200, 'last call recorded');

# the metrics export the state and the transitions
my $m = bff_get('/t/metrics')->content;
like $m, qr/^bff_breaker_state\{backend="\Q$order_key\E"\} 0$/m, 'metrics: state closed';
like $m, qr/^bff_breaker_transitions_total\{backend="\Q$order_key\E",to="open"\} 2$/m,
    'metrics: two transitions to open';
like $m, qr/^bff_breaker_transitions_total\{backend="\Q$order_key\E",to="closed"\} 1$/m,
    'metrics: one to closed';

# the transitions were logged once each, with their number
my $log = Apache::Test::vars('t_logs') . '/error_log';
open my $fh, '<', $log or die "$log: $!";
my @lines = grep { /BFF201: circuit breaker \Q$order_key\E/ } <$fh>;
close $fh;
ok t_cmp(scalar(grep { /closed -> open/ } @lines), 1, 'closed -> open logged once');
ok t_cmp(scalar(grep { /half-open -> open/ } @lines), 1, 'half-open -> open logged once');
ok t_cmp(scalar(grep { /half-open -> closed/ } @lines), 1, 'half-open -> closed logged once');

# ---- a required backend: 503 problem+json at once, the service not called
svc_reset();
svc_fault('user', status => 500);
bff_get('/t/brkreq/6') for 1 .. 3;
ok t_cmp(calls('user', qr{^/users/6}), 3);
$t0 = now();
$res = bff_get('/t/brkreq/6');
ok t_cmp($res->code, 503, 'open breaker, required backend: 503');
like $res->header('Content-Type'), qr{^application/problem\+json}, 'problem+json';
ok t_cmp($res->{json}{detail}, "required backend 'user' failed: circuit open");
ok now() - $t0 < 0.5, 'answered at once';
ok t_cmp(calls('user', qr{^/users/6}), 3, 'the service was not called');

# ---- the failure rate needs min-calls: 2 of 4 failed = 50%
svc_reset();
bff_get('/t/brkrate/7') for 1 .. 2;
svc_fault('order', status => 503);
bff_get('/t/brkrate/7');
$res = bff_get('/t/brkrate/7');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'HTTP 503', 'the 4th call is made');
svc_reset('order');
$res = bff_get('/t/brkrate/7');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'circuit open', '50% of 4 calls opened it');
ok t_cmp(calls('order', qr{^/orders/user/7}), 0, 'no call after the reset');

# ---- slow calls: successes over 100 ms count as failures
svc_reset();
svc_fault('order', delay_ms => 400);
for (1 .. 2) {
    $res = bff_get('/t/brkslow/8');
    ok t_cmp($res->header('X-BFF-Completed'), 'true', 'a slow call still answers');
}
$t0 = now();
$res = bff_get('/t/brkslow/8');
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'circuit open', 'two slow calls opened it');
ok now() - $t0 < 0.3, 'and the answer does not wait for the slow backend';
$b = health_of("$ENV{BFF_T_ORDER_URL} /t/brkslow/{id:int} orders");
ok t_cmp($b->{counters}{slow}, 2, 'slow calls counted');

# ---- the whole endpoint fails on an open breaker: the stale copy answers
svc_reset();
$res = bff_get('/t/brkstale/9');
ok t_cmp($res->code, 200, 'cached');
sleep 1.2;                            # expired, stale-if-error 60 s
svc_fault('user', status => 503);
$res = bff_get('/t/brkstale/9');      # fails and opens the breaker
ok t_cmp($res->header('X-Cache-Status'), 'STALE', 'the failing call: stale copy');
my $n = calls('user', qr{^/users/9});
$res = bff_get('/t/brkstale/9');
ok t_cmp($res->header('X-Cache-Status'), 'STALE', 'circuit open: stale copy too');
ok t_cmp(calls('user', qr{^/users/9}), $n, 'without calling the service');
svc_reset();
