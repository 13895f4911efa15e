# Token leases (BFFRateLimit ... lease=N): a child takes up to N tokens
# from the Redis bucket in one call and hands them out itself; extra
# tokens only come from the upper half of the bucket, so the limit stays
# exact near empty; unused tokens go back to Redis when the lease expires
# and when the child exits.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFAuth qw(count_svc is_problem);
use LWP::UserAgent;
use Time::HiRes qw(sleep);

plan tests => 17, need_servers('redis-server');

# one keep-alive connection: every request is served by the same child,
# which is what makes the counts below exact
my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 1);
my $base = 'http://127.0.0.1:' . Apache::Test::vars('port');
sub kget {
    my $res = $ua->get("$base$_[0]");
    $res->{json} = BFFTest::decode($res->content)
        if ($res->header('Content-Type') // '') =~ /json/;
    return $res;
}

sub evalsha_calls {
    my ($line) = grep { /^cmdstat_evalsha:/ } split /\r?\n/, redis_cli('INFO', 'commandstats');
    return $line && $line =~ /calls=(\d+)/ ? $1 : 0;
}
# whole tokens left in a bucket, as Redis keeps it (level in token * ms)
sub redis_tokens {
    my ($key, $rate_ms) = @_;
    my $l = redis_cli('HGET', $key, 'l');
    return $l eq '' ? undef : int($l / $rate_ms);
}
use Digest::SHA qw(sha256_hex);
my $ip = sha256_hex("127.0.0.1");   # bucket keys hold a hash of the client address

# 25 requests, a lease of 10: three Redis calls instead of 25
svc_reset('user');
my $calls0 = evalsha_calls();
my @r = map { kget('/t/rl/lease/users/1') } 1 .. 25;
ok t_cmp(join(' ', map { $_->code } @r), join(' ', ('200') x 25), 'all allowed');
ok t_cmp(evalsha_calls() - $calls0, 3, 'one Redis call per 10 requests');
ok t_cmp(count_svc('user'), 25, 'every allowed request reached the backend');
ok t_cmp(redis_tokens("bff:rl:rl-lease:1000/1000/3600000:$ip", 3600000), 970,
         'Redis gave out 30 tokens (3 leases)');
# the child counts the tokens it still holds as remaining
ok t_cmp(join(',', map { $_->header('X-RateLimit-Remaining') } @r[0, 9, 10, 24]),
         '999,990,989,975', 'remaining counts down one per request');
ok t_cmp($r[24]->header('RateLimit'), '"rl-lease";r=975;t=90',
         'RateLimit: 25 tokens used, 90 s (25 x 3.6 s) until full');

# near empty the bucket is exact: capacity 20, lease 5 -> 5, 5, then 1 by 1
svc_reset('user');
$calls0 = evalsha_calls();
@r = map { kget('/t/rl/leasex/users/1') } 1 .. 25;
ok t_cmp(join(' ', map { $_->code } @r),
         join(' ', ('200') x 20, ('429') x 5), 'exactly the capacity, then 429');
ok t_cmp(count_svc('user'), 20, 'refused requests never reached the backend');
ok t_cmp(evalsha_calls() - $calls0, 2 + 10 + 5,
         'two leases from the upper half, then a call per request');
ok is_problem($r[20], 429), '429 problem+json';
ok t_cmp($r[19]->header('X-RateLimit-Remaining'), 0);

# an expired lease gives its unused tokens back on the next call
my $k = "bff:rl:rl-leasettl:1000/1000/3600000:$ip";
@r = (kget('/t/rl/leasettl/users/1'));
ok t_cmp(redis_tokens($k, 3600000), 990, 'first request leased 10');
sleep 0.5;
push @r, kget('/t/rl/leasettl/users/1');
ok t_cmp(join(' ', map { $_->code } @r), '200 200');
ok t_cmp(redis_tokens($k, 3600000), 989,
         '9 unused tokens came back, 10 new ones leased: 2 used in all');

# a child that exits gives its live leases back
my $h = start_httpd('lease', <<"CONF");
BFFRateLimitRedis $ENV{BFF_T_REDIS_URL}
<Location /l/>
    Require all granted
    BFFRateLimit rl-exit 1000/1h key=ip lease=50
</Location>
CONF
my $ke = "bff:rl:rl-exit:1000/1000/3600000:$ip";
my $res = $ua->get("http://127.0.0.1:$h->{port}/l/x");
ok t_cmp($res->header('X-RateLimit-Remaining'), 999, 'a lease of 50 taken');
ok t_cmp(redis_tokens($ke, 3600000), 950, 'Redis holds 950');
stop_httpd($h);
ok t_cmp(redis_tokens($ke, 3600000), 999, 'the 49 unused tokens went back at exit');
