# The response cache on Redis: hit after miss, TTL, per-user keys, ETag and
# 304, Cache-Control, no-cache, partial answers, stale-if-error, request
# coalescing and purges.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use POSIX ();
use JSON::PP ();
use Time::HiRes qw(sleep);

plan tests => 57, need_servers('redis-server');

sub user_calls { scalar @{ svc_log('user') } }
sub purge { bff_req(PURGE => "/t/purge?$_[0]") }

purge('all=1');
svc_reset();

# miss, then hit: one backend round
my $r1 = bff_get('/t/cached/5');
ok t_cmp($r1->code, 200);
ok t_cmp($r1->header('X-Cache-Status'), 'MISS');
my $r2 = bff_get('/t/cached/5');
ok t_cmp($r2->header('X-Cache-Status'), 'HIT', 'second request is a hit');
ok t_cmp($r2->content, $r1->content, 'same body');
ok t_cmp(user_calls(), 1, 'one backend round');
ok t_cmp($r2->header('ETag'), $r1->header('ETag'), 'same ETag');
ok $r1->header('ETag') =~ /^"[0-9a-f]{32}"$/, 'strong ETag';
ok defined $r2->header('Age') && $r2->header('Age') =~ /^\d+$/, 'Age';
ok t_cmp($r2->header('Cache-Control'), 'private, max-age=2', 'Cache-Control from config');
ok t_cmp($r2->header('X-BFF-Completed'), 'true');
ok !exists $r2->{json}{user}{password_hash}, 'shaped before storing';
ok scalar(grep { /^bfft:/ } split /\n/, redis_cli('--scan', '--pattern', 'bfft:*')),
   'the entry is in Redis';

# If-None-Match: 304 from the cache, and for uncached endpoints too
my $res = bff_get('/t/cached/5', 'If-None-Match' => $r1->header('ETag'));
ok t_cmp($res->code, 304, '304 from the cache');
ok t_cmp($res->content, '');
$res = bff_get('/t/cached/5', 'If-None-Match' => 'W/"nope", ' . $r1->header('ETag'));
ok t_cmp($res->code, 304, 'weak comparison in a list');
my $p = bff_get('/api/profile/3');
ok $p->header('ETag'), 'ETag on an uncached endpoint';
ok t_cmp($p->header('X-Cache-Status'), 'BYPASS', 'not cached');
ok t_cmp(bff_get('/api/profile/3', 'If-None-Match' => $p->header('ETag'))->code, 304);
ok t_cmp(bff_get('/api/profile/3', 'If-None-Match' => '"other"')->code, 200);

# the query parameters a backend sees are part of the key
svc_reset();
ok t_cmp(bff_get('/t/cached/5?v=1')->header('X-Cache-Status'), 'MISS');
ok t_cmp(bff_get('/t/cached/5?v=1&ignored=x')->header('X-Cache-Status'), 'HIT',
         'other parameters ignored');
ok t_cmp(bff_get('/t/cached/5?v=2')->header('X-Cache-Status'), 'MISS', 'v is in the key');

# TTL (2 s): expired, then refreshed
sleep 2.2;
ok t_cmp(bff_get('/t/cached/5')->header('X-Cache-Status'), 'MISS', 'expired after the TTL');

# user A is never served user B's answer
svc_reset();
ok t_cmp(bff_get('/t/cached-vary/6', 'X-User' => 'alice')->header('X-Cache-Status'), 'MISS');
ok t_cmp(bff_get('/t/cached-vary/6', 'X-User' => 'bob')->header('X-Cache-Status'), 'MISS',
         "bob does not get alice's answer");
ok t_cmp(bff_get('/t/cached-vary/6')->header('X-Cache-Status'), 'MISS', 'nor does anonymous');
ok t_cmp(bff_get('/t/cached-vary/6', 'X-User' => 'alice')->header('X-Cache-Status'), 'HIT');
ok t_cmp(bff_get('/t/cached-vary/6', 'X-User' => 'bob')->header('X-Cache-Status'), 'HIT');
ok t_cmp(user_calls(), 3);

# a client's no-cache is honoured only where the admin allows it
bff_get('/t/cached-nocache/7');
ok t_cmp(bff_get('/t/cached-nocache/7', 'Cache-Control' => 'no-cache')->header('X-Cache-Status'),
         'BYPASS', 'allowed: bypass');
bff_get('/t/cached-strict/7');
ok t_cmp(bff_get('/t/cached-strict/7', 'Cache-Control' => 'no-cache')->header('X-Cache-Status'),
         'HIT', 'not allowed: still a hit');

# partial answers are not stored, unless BFFCachePartialTTL says so
svc_reset();
$res = bff_get('/t/cached-partial/8');
ok t_cmp($res->header('X-BFF-Completed'), 'false');
ok t_cmp(bff_get('/t/cached-partial/8')->header('X-Cache-Status'), 'MISS', 'partial not cached');
bff_get('/t/cached-partialttl/8');
$res = bff_get('/t/cached-partialttl/8');
ok t_cmp($res->header('X-Cache-Status'), 'HIT', 'partial cached with BFFCachePartialTTL');
ok t_cmp($res->header('X-BFF-Completed'), 'false', 'and still marked partial');

# stale-if-error: the backends fail, an expired copy answers
purge('tag=user:9');
my $fresh = bff_get('/t/cached/9');
sleep 2.2;
svc_fault('user', status => 500);
$res = bff_get('/t/cached/9');
svc_reset('user');
ok t_cmp($res->code, 200, 'stale instead of 502');
ok t_cmp($res->header('X-Cache-Status'), 'STALE');
ok t_cmp($res->content, $fresh->content);

# no stampede: 10 concurrent misses for one key, one backend round
purge('tag=user:11');
svc_reset();
my @kids;
for my $k (1 .. 10) {
    my $pid = fork // die;
    if (!$pid) {
        my $r = bff_get('/t/cached-slow/11');
        POSIX::_exit($r->code == 200 && $r->{json}{user}{id} == 11 ? 0 : 1);
    }
    push @kids, $pid;
}
my $bad = 0;
for (@kids) { waitpid $_, 0; $bad += $? >> 8 }
ok t_cmp($bad, 0, '10 concurrent answers correct');
ok t_cmp(user_calls(), 1, 'one backend round for 10 concurrent misses');

# purges: by tag (surrogate key), by URL, by endpoint, everything
bff_get('/t/cached/12');
ok t_cmp(bff_get('/t/cached/12')->header('X-Cache-Status'), 'HIT');
my $order_id = orders_of(12)->[0]{id};
$res = purge("tag=order:$order_id");
ok t_cmp($res->code, 200);
ok $res->{json}{purged} >= 1, 'purged by a backend entity tag';
ok t_cmp(bff_get('/t/cached/12')->header('X-Cache-Status'), 'MISS');
$res = bff_req(DELETE => '/t/purge?url=/t/cached/12');
ok t_cmp($res->{json}{purged}, 1, 'DELETE by URL');
ok t_cmp(bff_get('/t/cached/12')->header('X-Cache-Status'), 'MISS');
$res = purge('endpoint=/t/cached/{id:int}');
ok $res->{json}{purged} >= 1, 'by endpoint';
ok t_cmp(bff_get('/t/cached/12')->header('X-Cache-Status'), 'MISS');
ok t_cmp(purge('all=1')->code, 200);
ok t_cmp(bff_get('/t/cached/12')->header('X-Cache-Status'), 'MISS', 'all purged');
ok t_cmp(bff_get('/t/purge?tag=x')->code, 405, 'GET on the purge location');
ok t_cmp(purge('nothing=1')->code, 400, 'purge without a target');

# the counters are the server's totals (all children, shared memory)
purge('tag=user:13');
my $before = bff_get('/t/cache-status')->{json};
bff_get('/t/cached/13') for 1 .. 4;
my $after = bff_get('/t/cache-status')->{json};
ok t_cmp($after->{hits} - $before->{hits}, 3, 'hits counted');
ok t_cmp($after->{misses} - $before->{misses}, 1, 'misses counted');
ok t_cmp($after->{stored} - $before->{stored}, 1, 'stores counted');
ok t_cmp($after->{store}{type}, 'redis');
ok t_cmp($after->{store}{up}, JSON::PP::true(), 'store up');
