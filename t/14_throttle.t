# Throttling: token buckets in Redis with exact counts, the RateLimit and
# X-RateLimit-* headers, 429 problem+json with Retry-After, refill, keys
# (ip, user, header, plan), several limits and inherited ones; a refused
# request never reaches a backend.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth;
use BFFJWT;
use Time::HiRes qw(sleep);
use POSIX ();
use Digest::SHA qw(sha256_hex);

# bucket keys hold a hash of the client address, never the address
my $ip_h = sha256_hex('127.0.0.1');

plan tests => 54, need_servers('redis-server');

sub codes { join ' ', map { $_->code } @_ }
sub get_n { my ($n, $path, @h) = @_; map { areq(GET => $path, @h) } 1 .. $n }

# 5 per minute by client address
svc_reset('user');
my @r = get_n(6, '/t/rl/ip/users/1');
ok t_cmp(codes(@r), '200 200 200 200 200 429', 'exactly 5 of 6');
ok t_cmp(count_svc('user'), 5, 'the 429 never reached the backend');
ok t_cmp($r[0]->header('RateLimit-Policy'), '"rl-ip";q=5;w=60');
ok t_cmp($r[0]->header('RateLimit'), '"rl-ip";r=4;t=12');
ok t_cmp(join(',', map { $_->header('X-RateLimit-Remaining') } @r), '4,3,2,1,0,0');
ok t_cmp($r[0]->header('X-RateLimit-Limit'), 5);
ok t_cmp($r[4]->header('X-RateLimit-Reset'), 60, 'reset: until full');
ok is_problem($r[5], 429), '429 problem+json';
ok t_cmp($r[5]->{json}{detail}, "rate limit 'rl-ip' exceeded");
my $ra = $r[5]->header('Retry-After') // 0;
ok $ra >= 11 && $ra <= 12, "Retry-After $ra (a token every 12 s)";
ok t_cmp($r[5]->header('RateLimit'), '"rl-ip";r=0;t=60');
like redis_cli('--scan', '--pattern', 'bff:rl:rl-ip:*'), qr/^bff:rl:rl-ip:5\/5\/60000:$ip_h$/m,
     'the bucket lives in Redis';

# refill: 2 per second, one token every 500 ms
@r = get_n(3, '/t/rl/refill/users/1');
ok t_cmp(codes(@r), '200 200 429');
ok t_cmp($r[2]->header('Retry-After'), 1);
sleep 0.6;
@r = get_n(2, '/t/rl/refill/users/1');
ok t_cmp(codes(@r), '200 429', 'one token back after 600 ms');
sleep 1.1;
@r = get_n(3, '/t/rl/refill/users/1');
ok t_cmp(codes(@r), '200 200 429', 'full again after 1.1 s, never more than the capacity');

# burst: capacity 3, refill 1 per minute
@r = get_n(4, '/t/rl/burst/users/1');
ok t_cmp(codes(@r), '200 200 200 429');
ok t_cmp($r[0]->header('RateLimit-Policy'), '"rl-burst";q=3;w=180');

# key from a header; without the header the limit does not apply
@r = get_n(3, '/t/rl/hdr/users/1', 'X-Tenant' => 'a');
ok t_cmp(codes(@r), '200 200 429', 'tenant a');
@r = get_n(2, '/t/rl/hdr/users/1', 'X-Tenant' => 'b');
ok t_cmp(codes(@r), '200 200', 'tenant b has its own bucket');
@r = get_n(3, '/t/rl/hdr/users/1');
ok t_cmp(codes(@r), '200 200 200', 'no tenant header: not limited');
ok !defined $r[0]->header('RateLimit'), 'and no headers';
@r = get_n(1, '/t/rl/hdr/users/1', 'X-Tenant' => 'x' x 300);
ok t_cmp(codes(@r), '200', 'a long key value is hashed');

# two limits: 3/s and 4/min; the tightest is reported first
@r = get_n(4, '/t/rl/multi/users/1');
ok t_cmp(codes(@r), '200 200 200 429');
ok t_cmp($r[0]->header('RateLimit-Policy'), '"rl-multi-s";q=3;w=1, "rl-multi-m";q=4;w=60');
ok t_cmp($r[1]->header('RateLimit'), '"rl-multi-s";r=1;t=1, "rl-multi-m";r=2;t=30');
ok t_cmp($r[1]->header('X-RateLimit-Limit'), 3, 'X-RateLimit-* of the tightest bucket');
ok t_cmp($r[3]->{json}{detail}, "rate limit 'rl-multi-s' exceeded");
sleep 1.1;
@r = get_n(2, '/t/rl/multi/users/1');
ok t_cmp(codes(@r), '200 429', 'the per-minute bucket holds');
ok t_cmp($r[1]->{json}{detail}, "rate limit 'rl-multi-m' exceeded");
ok $r[1]->header('Retry-After') >= 14, 'Retry-After of the per-minute bucket';

# per user (JWT subject)
my @alice = bearer(jwt());
my @bob = bearer(jwt(claims => claims_ok(sub => 'bob')));
ok t_cmp(codes(get_n(4, '/t/rl/user/users/1', @alice)), '200 200 200 429', 'alice: 3');
ok t_cmp(codes(get_n(4, '/t/rl/user/users/1', @bob)), '200 200 200 429', 'bob: 3 of his own');
ok t_cmp(areq(GET => '/t/rl/user/users/1')->code, 401, 'no token: 401 before any bucket');

# per plan (API keys): gold 4, no plan and silver 2
ok t_cmp(codes(get_n(5, '/t/rl/plan/users/1', 'X-API-Key' => apikey('acme'))),
         '200 200 200 200 429', 'gold plan: 4');
@r = get_n(3, '/t/rl/plan/users/1', 'X-API-Key' => apikey('globex'));
ok t_cmp(codes(@r), '200 200 429', 'no plan: 2');
ok t_cmp($r[0]->header('RateLimit-Policy'), '"rl-std";q=2;w=60', 'only the limit of its plan');
ok t_cmp(codes(get_n(3, '/t/rl/plan/users/1', 'X-API-Key' => apikey('initech'))),
         '200 200 429', 'silver: 2');

# a location inherits the outer limit and adds its own
# (the user service answers 404 for /inner/users/1: only the limits matter)
@r = get_n(3, '/t/rl/nest/inner/users/1');
ok t_cmp(codes(@r), '404 404 429');
like $r[0]->header('RateLimit-Policy'), qr/"rl-outer";q=6;w=60/, 'outer limit';
like $r[0]->header('RateLimit-Policy'), qr/"rl-inner";q=2;w=60/, 'inner limit';
@r = get_n(4, '/t/rl/nest/users/1');
ok t_cmp(codes(@r), '200 200 200 429',
         'one outer bucket: 3 tokens left (limits are taken in order: the request refused by the inner limit took an outer token)');

# an aggregated endpoint: 429 before any backend call
svc_reset();
@r = get_n(3, '/t/rl/agg/4');
ok t_cmp(codes(@r), '200 200 429');
ok t_cmp(count_svc('user'), 2, 'backend called twice');
ok is_problem($r[2], 429);
ok t_cmp($r[0]->header('RateLimit-Policy'), '"rl-agg";q=2;w=60', 'headers on the aggregated answer');
ok t_cmp($r[0]->header('X-BFF-Completed'), 'true');

# HEAD: 429 without a body
@r = (areq(HEAD => '/t/rl/agg/4'));
ok t_cmp($r[0]->code, 429);
ok t_cmp($r[0]->content, '');

# the notes and the log
my $mark = log_mark();
areq(GET => '/t/rl/agg/4');
like log_since($mark), qr/BFF111: rate limit rl-agg exceeded by 127\.0\.0\.1/, 'logged';
my $alog = do { open my $fh, '<', Apache::Test::vars('t_logs') . '/bff_auth.log' or die $!; local $/; <$fh> };
like $alog, qr{GET /t/rl/agg/4 HTTP/1.1 429 .*throttled=rl-agg}, 'note bff-throttled';

# the Redis key holds the conf: a changed limit starts afresh
like redis_cli('--scan', '--pattern', 'bff:rl:rl-multi-m:*'), qr{^bff:rl:rl-multi-m:4/4/60000:$ip_h$}m;

# buckets are shared by the children and threads: 20 concurrent requests
# on a fresh tenant bucket (2 per minute)
my @kids;
pipe my $rd, my $wr or die;
for my $k (1 .. 10) {
    my $pid = fork // die;
    if (!$pid) {
        close $rd;
        my @c = map { areq(GET => '/t/rl/hdr/users/1', 'X-Tenant' => 'par')->code } 1 .. 2;
        print $wr "@c\n";
        close $wr;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
close $wr;
my @all = map { split ' ' } <$rd>;
waitpid $_, 0 for @kids;
ok t_cmp(scalar(grep { $_ == 200 } @all), 2, '20 concurrent requests, exactly 2 allowed');
ok t_cmp(scalar(grep { $_ == 429 } @all), 18);
