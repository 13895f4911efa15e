# Cache stores and their failures: Redis stopped in the middle of a run
# (answers keep coming from shared memory, entries go back to Redis once it
# is back), a Redis that never answers, memcached, shared memory only, the
# near cache across two instances, and the entry size limit.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use IO::Socket::INET ();
use JSON::PP ();
use Time::HiRes qw(sleep);

plan tests => 31, need_servers('redis-server', 'memcached');

my $U = $ENV{BFF_T_USER_URL};
my $endpoint = <<"CONF";
<BFFEndpoint GET /c/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
    BFFCacheTag user:{id}
</BFFEndpoint>
<Location /purge>
    SetHandler bff-cache-purge
    Require ip 127.0.0.1
</Location>
CONF

sub redis_keys {
    my $prefix = shift;
    return scalar grep { /^\Q$prefix\E[0-9a-f]{64}$/ }
        split /\n/, redis_cli('--scan', '--pattern', "$prefix*");
}

sub errlog {
    my $h = shift;
    open my $fh, '<', "$h->{dir}/error.log" or die "$h->{dir}/error.log: $!";
    local $/;
    return <$fh>;
}

# -- Redis stopped during a run: no 5xx, shared memory takes over ----------
bff_req(PURGE => '/t/purge?all=1');
redis_stop();
my $t0 = now();
my $r = bff_get('/t/cached/20');
my $took = now() - $t0;
ok t_cmp($r->code, 200, 'Redis down: still 200');
ok t_cmp($r->header('X-Cache-Status'), 'MISS');
ok $took < 1, "no long wait on a dead Redis ($took s)";
$r = bff_get('/t/cached/20');
ok t_cmp($r->header('X-Cache-Status'), 'HIT', 'hit from shared memory');
my @codes = map { bff_get('/t/cached/' . (20 + $_ % 3))->code } 1 .. 20;
ok !grep({ $_ != 200 } @codes), 'no 5xx while Redis is down';
redis_start();
sleep 6;   # the store probes again after its backoff (at most 5 s)
bff_get("/t/cached/$_") for 23 .. 26;
ok redis_keys('bfft:') >= 1, 'new entries land in Redis again, without a restart';

# -- a Redis that accepts connections and never answers --------------------
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 64, ReuseAddr => 1) or die $!;
my $h = start_httpd('silent', "BFFCacheStore redis://127.0.0.1:" . $silent->sockport
                    . "/0\nBFFCacheTimeout 80ms\nBFFCacheConnectTimeout 80ms\n$endpoint");
$t0 = now();
$r = http_get($h->{port}, '/c/3');
$took = now() - $t0;
ok t_cmp($r->code, 200, 'silent Redis: answered');
ok $took < 0.6, "timeout respected ($took s)";
$r = http_get($h->{port}, '/c/3');
ok t_cmp($r->header('X-Cache-Status'), 'HIT', 'from the shared memory fallback');
stop_httpd($h);
close $silent;

# -- memcached ---------------------------------------------------------------
$h = start_httpd('memcache', "BFFCacheStore memcache://127.0.0.1:$ENV{BFF_T_MEMCACHE_PORT}\n"
                 . "BFFCachePrefix mc:\n$endpoint");
svc_reset('user');
ok t_cmp(http_get($h->{port}, '/c/4')->header('X-Cache-Status'), 'MISS');
ok t_cmp(http_get($h->{port}, '/c/4')->header('X-Cache-Status'), 'HIT', 'memcached hit');
my $p = BFFTest::bff_req_port($h->{port}, PURGE => '/purge?tag=user:4');
ok t_cmp($p->code, 200, 'memcached purge by tag');
ok t_cmp(http_get($h->{port}, '/c/4')->header('X-Cache-Status'), 'MISS', 'purged');
ok t_cmp(scalar @{ svc_log('user') }, 2);
ok errlog($h) =~ /BFF35: cache purge of user:4: -?\d+ in memcache/, 'purge logged';
stop_httpd($h);

# -- shared memory only --------------------------------------------------------
$h = start_httpd('shm', "BFFCacheStore shmcb\n$endpoint");
ok t_cmp(http_get($h->{port}, '/c/5')->header('X-Cache-Status'), 'MISS');
ok t_cmp(http_get($h->{port}, '/c/5')->header('X-Cache-Status'), 'HIT', 'shmcb hit');
$p = BFFTest::bff_req_port($h->{port}, PURGE => '/purge?tag=user:5');
ok t_cmp($p->{json}{purged}, 1, 'shmcb purge');
stop_httpd($h);

# -- near cache on two instances sharing Redis: a purge reaches both ------------
# a near TTL of 3 s leaves room for the checks below on a slow machine
# (under ASan, with other suites running)
my $near = "BFFCacheStore $ENV{BFF_T_REDIS_URL}\nBFFCachePrefix near:\n"
         . "BFFCacheNearTTL 3s\n$endpoint";
my $a = start_httpd('nearA', $near);
my $b = start_httpd('nearB', $near);
sleep 0.5;   # the subscribers connect
svc_reset('user');
ok t_cmp(http_get($a->{port}, '/c/6')->header('X-Cache-Status'), 'MISS');
sleep 3.2;   # older than the near TTL: a near copy must still be fresh
ok t_cmp(http_get($b->{port}, '/c/6')->header('X-Cache-Status'), 'HIT', 'B hits what A stored');
ok t_cmp(http_get($b->{port}, '/c/6')->header('X-Cache-Status'), 'HIT');
redis_cli('DEL', grep { /^near:[0-9a-f]{64}$/ } split /\n/, redis_cli('--scan', '--pattern', 'near:*'));
ok t_cmp(http_get($b->{port}, '/c/6')->header('X-Cache-Status'), 'HIT',
         'near cache: a hit without a Redis round trip');
$p = BFFTest::bff_req_port($a->{port}, PURGE => '/purge?tag=user:6');
ok $p->{json} && $p->{json}{near_caches_notified}, 'purge published';
sleep 0.3;
ok t_cmp(http_get($b->{port}, '/c/6')->header('X-Cache-Status'), 'MISS',
         "a purge on A reaches B's near cache");
ok t_cmp(scalar @{ svc_log('user') }, 2);
# a graceful restart ends the old generation's children: each stops its
# subscriber thread before its pools go, and none dies of a signal
my @old = BFFTest::httpd_children($a);
open my $pf, '<', "$a->{dir}/httpd.pid" or die $!;
chomp(my $apid = <$pf> // '');
close $pf;
ok @old && kill('USR1', $apid), 'graceful restart of A';
my $until = time + 15;
sleep 0.1 while grep({ kill 0, $_ } @old) && time < $until;
sleep 1.2;   # the parent reaps (and logs) its children once a second
my $alog = do { local (@ARGV, $/) = ("$a->{dir}/error.log"); <> } // '';
ok !grep({ kill 0, $_ } @old) && $alog !~ /AH00052|exit signal/,
   'the old children ended without a signal' or diag $alog;
stop_httpd($a);
stop_httpd($b);

# -- entries over the size limit are skipped with a log line, never truncated --
$h = start_httpd('small', "BFFCacheStore shmcb\nBFFCacheMaxEntrySize 100\n$endpoint");
ok t_cmp(http_get($h->{port}, '/c/7')->header('X-Cache-Status'), 'MISS');
$r = http_get($h->{port}, '/c/7');
ok t_cmp($r->header('X-Cache-Status'), 'MISS', 'too large: not stored');
ok $r->{json} && $r->{json}{user}{id} == 7, 'the full answer';
ok errlog($h) =~ /BFF33: answer of \d+ bytes not cached: over BFFCacheMaxEntrySize 100/,
   'logged';
stop_httpd($h);
