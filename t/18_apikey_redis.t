# API keys kept in Redis (BFFAPIKeyRedis On, vhost bff_keyredis): hashes
# bfftest:apikey:<sha256hex> with fields consumer and plan, stored here
# with redis-cli. The keys file first, then Redis; a malformed entry is an
# unknown key (logged); Redis paused: a Redis-only key gets 503 (it cannot
# be verified), a key of the file still works.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use BFFTest;
use BFFAuth;
use BFFJWT;

plan tests => 51, need_servers('redis-server');

my $V = 'bff_keyredis';
my $tag = "$$-" . int(rand 1e6);      # fresh consumers (fresh buckets) per run
my %rkey = (gold => "rk-gold-$tag", std => "rk-std-$tag", silver => "rk-silver-$tag");

sub entry { "bfftest:apikey:" . sha256_hex($_[0]) }
sub rcli { BFFTest::redis_cli(@_) }
sub codes { join ' ', map { $_->code } @_ }
sub get_n { my ($n, $path, @h) = @_; map { areq($V => GET => $path, @h) } 1 .. $n }

my @stored;
sub store {
    my ($key, @fields) = @_;
    push @stored, entry($key);
    rcli('DEL', entry($key));
    return rcli('HSET', entry($key), @fields);
}
END { rcli('DEL', $_) for @stored }

store($rkey{gold}, consumer => "redis-gold-$tag", plan => 'gold');
store($rkey{std}, consumer => "redis-std-$tag");
store($rkey{silver}, consumer => "redis-silver-$tag", plan => 'silver');
ok t_cmp(rcli('HGET', entry($rkey{gold}), 'consumer'), "redis-gold-$tag", 'stored with redis-cli');

# a key in Redis authenticates; consumer and plan reach the backend
svc_reset('user');
my $res = areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => $rkey{gold});
ok t_cmp($res->code, 200, 'Redis key: 200');
ok t_cmp($res->{json}{id}, 1);
my $e = BFFTest::svc_log('user')->[-1];
ok t_cmp($e->{headers}{'x-consumer'}, "redis-gold-$tag", 'consumer from Redis');
ok t_cmp($e->{headers}{'x-plan'}, 'gold', 'plan from Redis');
ok !defined $e->{headers}{'x-api-key'}, 'the key is not forwarded';
$res = areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => $rkey{std});
ok t_cmp($res->code, 200, 'Redis key without plan');
$e = BFFTest::svc_log('user')->[-1];
ok !defined $e->{headers}{'x-plan'}, 'no plan';

# the file still works in that server (inherited BFFAPIKeyFile)
$res = areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => apikey('acme'));
ok t_cmp($res->code, 200, 'file key in the Redis-enabled server');
ok t_cmp(BFFTest::svc_log('user')->[-1]{headers}{'x-consumer'}, 'acme');
# Redis is off in the main server: a Redis key means nothing there
ok t_cmp(areq(GET => '/t/auth/key/users/1', 'X-API-Key' => $rkey{gold})->code, 401,
         'BFFAPIKeyRedis Off (main server): 401');
# the prefix is part of the lookup
store("rk-other-$tag", consumer => 'nobody');
rcli('RENAME', entry("rk-other-$tag"), 'bff:apikey:' . sha256_hex("rk-other-$tag"));
push @stored, 'bff:apikey:' . sha256_hex("rk-other-$tag");
ok t_cmp(areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => "rk-other-$tag")->code, 401,
         'entry under another prefix: unknown');

# the plan from Redis selects the plan's rate limits
my @r = get_n(4, '/t/kr/plan/users/1', 'X-API-Key' => $rkey{gold});
ok t_cmp(codes(@r), '200 200 200 429', 'gold plan (from Redis): 3 per minute');
ok t_cmp($r[0]->header('X-RateLimit-Limit'), 3);
ok is_problem($r[3], 429);
@r = get_n(2, '/t/kr/plan/users/1', 'X-API-Key' => $rkey{std});
ok t_cmp(codes(@r), '200 429', 'no plan: 1 per minute');
ok t_cmp($r[0]->header('X-RateLimit-Limit'), 1);
@r = get_n(2, '/t/kr/plan/users/1', 'X-API-Key' => $rkey{silver});
ok t_cmp(codes(@r), '200 429', 'silver plan: 1 per minute');

# unknown key
my $mark = log_mark();
$res = areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => "rk-nope-$tag");
ok is_problem($res, 401), 'unknown key: 401 problem+json';
ok t_cmp($res->header('WWW-Authenticate'), 'APIKey realm="bff-test", header="X-API-Key"');
ok t_cmp($res->{json}{detail}, 'invalid API key');
my $log = log_since($mark);
like $log, qr/BFF105: unknown API key \(sha256 [0-9a-f]{8}\.\.\.\)/, 'logged';
unlike $log, qr/rk-nope/, 'never the key';

# malformed entries: treated as unknown keys, and logged
my @bad = (
    [ 'consumer with a space', [consumer => 'bad name', plan => 'gold'], qr/consumer: a character outside/ ],
    [ 'consumer with a control character', [consumer => "evil\x01", plan => 'gold'], qr/consumer: a character outside/ ],
    [ 'consumer with a newline', [consumer => "evil\nX-Injected: 1"], qr/consumer: a character outside/ ],
    [ 'empty consumer', [consumer => '', plan => 'gold'], qr/consumer: empty/ ],
    [ 'no consumer field', [plan => 'gold'], qr/no consumer field/ ],
    [ 'plan with a control character', [consumer => 'fine', plan => "gold\x7f"], qr/plan: a character outside/ ],
    [ 'empty plan', [consumer => 'fine', plan => ''], qr/plan: empty/ ],
    [ 'consumer too long', [consumer => 'a' x 65], qr/consumer: longer than 64 bytes/ ],
);
my $i = 0;
for my $b (@bad) {
    my ($name, $fields, $why) = @$b;
    my $key = "rk-bad-" . $i++ . "-$tag";
    store($key, @$fields);
    $mark = log_mark();
    $res = areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => $key);
    ok is_problem($res, 401), "malformed ($name): 401";
    like log_since($mark), qr/BFF125: malformed API key entry in Redis \(sha256 [0-9a-f]{8}\.\.\.\): $why/,
        "malformed ($name): logged";
}
# not a hash at all
my $strkey = "rk-str-$tag";
push @stored, entry($strkey);
rcli('SET', entry($strkey), 'acme');
$mark = log_mark();
ok is_problem(areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => $strkey), 401), 'not a hash: 401';
like log_since($mark), qr/BFF125: malformed API key entry in Redis .*WRONGTYPE/, 'not a hash: logged';

# Redis paused (SIGSTOP: commands time out): a key only Redis knows cannot
# be verified (503, fail closed); a key of the file still works
open my $pidfh, '<', BFFTest::redis_pidfile() or die "no Redis pid file: $!";
chomp(my $redis = <$pidfh>);
close $pidfh;
$mark = log_mark();
kill 'STOP', $redis;
my @paused = eval {
    my @a = (areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => $rkey{gold}),
             areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => $rkey{std}),
             areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => apikey('acme')),
             areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => "rk-nope-$tag"));
    @a;
};
my $err = $@;
kill 'CONT', $redis;      # always, before anything can fail
die $err if $err;
ok is_problem($paused[0], 503), 'Redis down: Redis key refused with 503 problem+json';
ok t_cmp($paused[0]->{json}{detail}, 'the API key cannot be verified now');
ok t_cmp($paused[0]->header('Retry-After'), 1);
ok !defined $paused[0]->header('WWW-Authenticate'), 'no challenge: the key may be fine';
ok t_cmp($paused[1]->code, 503, 'Redis down: another Redis key, 503');
ok t_cmp($paused[2]->code, 200, 'Redis down: a key of the file still works');
ok t_cmp($paused[3]->code, 503, 'Redis down: an unknown key cannot be told from a Redis key: 503');
$log = log_since($mark);
like $log, qr/BFF126: cannot verify the API key \(sha256 [0-9a-f]{8}\.\.\.\) in header X-API-Key: Redis unavailable/,
    'logged';
unlike $log, qr/rk-(?:gold|std)-/, 'never the key';

# Redis back: after the back-off, Redis keys work again
sleep 1.2;
my $ok;
for (1 .. 20) {
    $ok = areq($V => GET => '/t/kr/a/users/1', 'X-API-Key' => $rkey{std})->code == 200 and last;
    sleep 0.25;
}
ok $ok, 'Redis back: the Redis key works again';
