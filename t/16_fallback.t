# Redis unreachable (paused with SIGSTOP: connections hang, so the
# command timeout is exercised): each location's BFFRateLimitFallback
# applies: shm (shared memory, half the limit with
# BFFRateLimitInstances 2), open, closed. The outage is logged once per
# child, not per request, and requests do not each wait for Redis
# (backoff). Redis comes back: buckets are shared again.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth;
use Time::HiRes qw(sleep);

plan tests => 17, need_servers('redis-server');

sub codes { join ' ', map { $_->code } @_ }
sub get_n { my ($n, $path, @h) = @_; map { areq(GET => $path, @h) } 1 .. $n }

# the current Redis (an earlier test may have restarted it): its pid file
open my $pidfh, '<', BFFTest::redis_pidfile() or die "no Redis pid file: $!";
chomp(my $redis = <$pidfh>);
close $pidfh;
ok t_cmp(areq(GET => '/t/rl/fbclosed/users/1')->code, 200, 'Redis up: fail-closed location answers');

my $mark = log_mark();
kill 'STOP', $redis;
my $t0 = BFFTest::now();
my @r = get_n(5, '/t/rl/fbshm/users/1');
my $took = BFFTest::now() - $t0;
ok t_cmp(codes(@r), '200 200 200 429 429', 'shm fallback: 3 of 6 per minute (2 instances)');
ok t_cmp($r[0]->header('RateLimit-Policy'), '"rl-fbshm";q=3;w=60', 'the share in the headers');
ok is_problem($r[3], 429);
# each child pays one 250 ms timeout at most, then backs off for 1 s
ok $took < 5 * 0.25, "no timeout per request (5 requests in $took s)";

@r = get_n(3, '/t/rl/fbopen/users/1');
ok t_cmp(codes(@r), '200 200 200', 'fail open: not limited');
ok !defined $r[0]->header('RateLimit'), 'fail open: no rate limit headers';

@r = get_n(2, '/t/rl/fbclosed/users/1');
ok t_cmp(codes(@r), '503 503', 'fail closed: 503');
ok is_problem($r[0], 503);
ok t_cmp($r[0]->header('Retry-After'), 1);

my $log = log_since($mark);
my $n = () = $log =~ /BFF107: rate limit store unreachable: (?:connect to )?redis 127\.0\.0\.1:\d+ db 0: /g;
ok $n >= 1, "outage logged ($n)";
# 10 requests: at most one message per child process, not one per request
my %per_pid;
$per_pid{$1}++ while $log =~ /\[pid (\d+):tid \d+\][^\n]*BFF107/g;
ok !grep({ $_ > 1 } values %per_pid), 'logged once per child (' . join(',', map { "$_:$per_pid{$_}" } sort keys %per_pid) . ')';
like $log, qr/BFF107: .*unreachable: (?:redis \S+ db 0: )?(?:timeout|connect|read|write)[^;]*; using/, 'with the reason';

# a request more than 1 s later tries Redis again
sleep 1.1;
@r = get_n(1, '/t/rl/fbshm/users/1');
ok t_cmp(codes(@r), '429', 'still down: the shm bucket holds');

kill 'CONT', $redis;
sleep 1.2;
$mark = log_mark();
@r = get_n(6, '/t/rl/fbclosed/users/1');
ok t_cmp(codes(@r), '200 200 200 200 200 200', 'Redis back: fail-closed location answers again');
like log_since($mark), qr/BFF108: rate limit store redis 127\.0\.0\.1:\d+ db 0 reachable again/, 'recovery logged';
like redis_cli('--scan', '--pattern', 'bff:rl:rl-fbclosed:*'), qr/rl-fbclosed/, 'and the bucket is in Redis';
