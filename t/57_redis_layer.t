# The rate limiter on the one Redis layer:
#  - a Redis restart leaves every child with pooled connections that Redis
#    closed; the next requests replace them without failing over to the
#    shared-memory fallback (no outage logged, the buckets are in the new
#    Redis at once);
#  - BFFRateLimitRedis takes the URLs BFFCacheStore takes: a password and
#    a database (the buckets land in that database); a wrong password is
#    an outage with the reason, and the fallback applies.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest ();
use BFFAuth qw(areq log_mark log_since);
use BFFServices;
use POSIX ();
use Time::HiRes qw(sleep);

plan tests => 10, BFFTest::need_servers('redis-server');

sub rcli { BFFTest::redis_cli(@_) }
sub codes { join ' ', map { $_->code } @_ }

# Many requests at once, so that each child opens several pooled
# connections to Redis.
sub burst {
    my ($n, $path) = @_;
    my @pids;
    for (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            areq(GET => $path) for 1 .. 3;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid $_, 0 for @pids;
}

burst(16, '/t/rl/shared/users/1');
my $key = (split /\n/, rcli('--scan', '--pattern', 'bff:rl:rl-shared:*'))[0] // '';
ok $key ne '', 'the global bucket is in Redis';

BFFTest::redis_stop();
BFFTest::redis_start();
ok t_cmp(rcli('EXISTS', $key), 0, 'a new, empty Redis');

my $mark = log_mark();
my @r = map { areq(GET => '/t/rl/shared/users/1') } 1 .. 12;
ok t_cmp(codes(@r), join(' ', ('200') x 12), 'requests keep being served');
my $log = log_since($mark);
ok $log !~ /BFF107/, 'no outage: stale pooled connections were replaced'
    or diag $log;
ok t_cmp(int((rcli('HGET', $key, 'l') || 0) / 60000), 88,
         'all 12 requests counted in the new Redis (100 - 12)');

# ------------------------------------------- password and database --

my $rport = BFFServices::free_port();
my $rpid = BFFTest::redis_spawn('redis-auth', $rport, '--requirepass', 's3cret');
END { kill 'TERM', $rpid if $rpid }
BFFServices::wait_port($rport) or die "password Redis did not start";
sub acli { `redis-cli -h 127.0.0.1 -p $rport -a s3cret --no-auth-warning @_ 2>/dev/null` }

sub limited_httpd {
    my ($name, $url) = @_;
    return BFFTest::start_httpd($name, <<"CONF");
BFFRateLimitRedis $url connect-timeout=500ms timeout=500ms retry=1s
<Location /rl/>
    Require all granted
    BFFRateLimit rl-auth 2/1m key=ip
</Location>
CONF
}

my $h = limited_httpd('rl-pass', "redis://:s3cret\@127.0.0.1:$rport/3");
@r = map { BFFTest::http_get($h->{port}, '/rl/x') } 1 .. 3;
ok t_cmp(codes(@r), '404 404 429', 'limited through the password-protected Redis');
my @keys = split /\n/, acli('-n 3 --scan --pattern "bff:rl:rl-auth:*"');
ok t_cmp(scalar @keys, 1, 'the bucket is in database 3');
ok t_cmp(acli('-n 0 --scan --pattern "bff:rl:*"'), '', 'and not in database 0');
BFFTest::stop_httpd($h);

$h = limited_httpd('rl-badpass', "redis://:wrong\@127.0.0.1:$rport/3");
@r = map { BFFTest::http_get($h->{port}, '/rl/y') } 1 .. 3;
ok t_cmp(codes(@r), '404 404 429', 'wrong password: the shared-memory fallback limits');
open my $fh, '<', "$h->{dir}/error.log" or die $!;
my $elog = do { local $/; <$fh> };
like $elog, qr/BFF107: rate limit store unreachable: connect to redis 127\.0\.0\.1:\d+ db 3: AUTH refused: WRONGPASS/,
     'the outage names the refused AUTH';
BFFTest::stop_httpd($h);
