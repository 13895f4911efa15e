# What is never stored: answers built from a backend reply with
# Set-Cookie, Cache-Control no-store or private, or Vary: * (per-item
# calls too); the client still gets them, with X-Cache-Status: BYPASS and
# Cache-Control: no-store. Every answer of a cached endpoint names the
# request headers it varies on (merged with the client profile's Vary);
# the admin's Cache-Control goes on complete 200s only. A store outage is
# logged once per child when it starts and once when it ends. With Redis
# and with shared memory, through the suite's HTTP client.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Time::HiRes qw(sleep);
use BFFTest;

my @cases = (['cookie', 'Set-Cookie:sid', 'Set-Cookie'],
             ['nostore', 'Cache-Control:no-store', 'Cache-Control: no-store'],
             ['private', 'Cache-Control:private', 'Cache-Control: private'],
             ['varystar', 'Vary:*', 'Vary: \*'],
             ['item', undef, 'Set-Cookie']);
plan tests => 2 * (@cases * 5 + 3 + 11) + 7;

my $U = BFFTest::svc_url('user');
my $O = BFFTest::svc_url('order');
my $P = BFFTest::svc_url('product');

sub conf {
    my ($store, $prefix) = @_;
    my $c = <<"CONF";
BFFHTTPClient $ENV{BFF_T_CLIENT}
BFFCacheStore $store
BFFCachePrefix $prefix
<BFFEndpoint GET /ns/plain/{id:int}>
    BFFBackend user GET $U/users/{id}?header=X-Note:fine required
    BFFCacheTTL 30s
</BFFEndpoint>
<BFFEndpoint GET /ns/item/{id:int}>
    BFFBackend orders   GET $O/orders/user/{id} required
    BFFBackend products GET $P/products/{orders[].product_id}?header=Set-Cookie:sid \\
                            per-item concurrency=2
    BFFCacheTTL 30s
</BFFEndpoint>
<BFFEndpoint GET /vary/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFForwardHeader Accept-Language
    BFFFields user
    BFFClientSelect header:X-Client
    BFFClientFields mobile user.name
    BFFCacheTTL 30s
</BFFEndpoint>
<BFFEndpoint GET /cc/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
    BFFCacheControl "public, max-age=60"
</BFFEndpoint>
<BFFEndpoint GET /cc-partial/{id:int}>
    BFFBackend user   GET $U/users/{id} required
    BFFBackend orders GET $O/orders/user/{id}?status=503
    BFFCacheTTL 30s
    BFFCachePartialTTL 30s
    BFFCacheControl "public, max-age=60"
</BFFEndpoint>
CONF
    for (grep { defined $_->[1] } @cases) {
        $c .= "<BFFEndpoint GET /ns/$_->[0]/{id:int}>\n"
            . "    BFFBackend user GET $U/users/{id}?header=$_->[1] required\n"
            . "    BFFCacheTTL 30s\n</BFFEndpoint>\n";
    }
    return $c;
}

for my $store ($ENV{BFF_T_REDIS_URL}, 'shmcb') {
    my $kind = $store eq 'shmcb' ? 'shm' : 'redis';
    my $h = start_httpd("p63$kind", conf($store, "p63-$$-$kind:"));
    my $port = $h->{port};

    for my $c (@cases) {
        my ($name, undef, $why) = @$c;
        svc_reset($_) for qw(user product);
        my $r1 = http_get($port, "/ns/$name/3");
        my $r2 = http_get($port, "/ns/$name/3");
        ok t_cmp($r2->code, 200, "$kind $name: the client gets the answer");
        ok t_cmp($r1->header('X-Cache-Status'), 'BYPASS', "$kind $name: BYPASS");
        ok t_cmp($r2->header('X-Cache-Status'), 'BYPASS', "$kind $name: never stored");
        ok t_cmp($r2->header('Cache-Control'), 'no-store', "$kind $name: no-store to the client");
        like slurp("$h->{dir}/error.log"),
             qr/BFF44: answer not cached: backend '(?:user|products)' answered with $why/,
             "$kind $name: the reason is logged";
    }
    # the control case: another header does not prevent storing
    ok t_cmp(http_get($port, '/ns/plain/3')->header('X-Cache-Status'), 'MISS');
    ok t_cmp(http_get($port, '/ns/plain/3')->header('X-Cache-Status'), 'HIT', "$kind: other headers: stored");
    ok t_cmp(http_get($port, '/ns/item/3')->{json}{products}[0]{id} =~ /^\d+$/ ? 1 : 0, 1,
             "$kind: per-item replies answered");

    # Vary on MISS, HIT and 304, merged with the client profile's
    my @v = ('Accept-Language' => 'de', 'X-Client' => 'mobile');
    my $m = http_get($port, '/vary/4', @v);
    my $hit = http_get($port, '/vary/4', @v);
    my $nm = http_get($port, '/vary/4', @v, 'If-None-Match' => $hit->header('ETag'));
    ok t_cmp($m->header('X-Cache-Status'), 'MISS');
    ok t_cmp($hit->header('X-Cache-Status'), 'HIT');
    ok t_cmp($nm->code, 304);
    for ([MISS => $m], [HIT => $hit], [304 => $nm]) {
        my $vary = join ',', $_->[1]->header('Vary');
        my %n;
        $n{lc $_}++ for split /\s*,\s*/, $vary;
        ok $n{'accept-language'} && $n{'x-client'} && !grep({ $_ > 1 } values %n),
           "$kind $_->[0]: Vary names Accept-Language and X-Client once ($vary)";
    }

    # the admin's Cache-Control: complete 200s only
    ok t_cmp(http_get($port, '/cc/5')->header('Cache-Control'), 'public, max-age=60');
    ok t_cmp(http_get($port, '/cc/5')->header('Cache-Control'), 'public, max-age=60', "$kind: on a hit");
    my $e = http_get($port, '/cc/99999');
    ok t_cmp($e->code, 404);
    ok !defined $e->header('Cache-Control'), "$kind: not on a problem+json error";
    my $p1 = http_get($port, '/cc-partial/5');
    my $p2 = http_get($port, '/cc-partial/5');
    ok !defined $p1->header('Cache-Control') && !defined $p2->header('Cache-Control')
       && $p2->header('X-Cache-Status') eq 'HIT' && $p2->header('X-BFF-Completed') eq 'false',
       "$kind: not on a partial answer, computed or stored";
    stop_httpd($h);
}

# a Redis outage: one line per child when it starts, one when it ends
my $h = start_httpd('p63outage', conf($ENV{BFF_T_REDIS_URL}, "p63-$$-o:")
                    . "BFFCacheTimeout 80ms\nBFFCacheConnectTimeout 80ms\n");
my $log = "$h->{dir}/error.log";
http_get($h->{port}, "/cc/$_") for 1 .. 4;
redis_stop();
my @codes = map { http_get($h->{port}, '/cc/' . (1 + $_ % 6))->code } 1 .. 30;
ok !grep({ $_ != 200 } @codes), 'answers go on while Redis is down';
my @down = slurp($log) =~ /\[pid (\d+):tid \d+\].*BFF42: cache store redis failed/g;
my %per;
$per{$_}++ for @down;
ok @down >= 1, 'the outage is logged (' . scalar(@down) . ' lines)';
ok !grep({ $_ > 1 } values %per), 'once per child, not per request';
redis_start();
sleep 6;   # the store probes again after its backoff (at most 5 s)
http_get($h->{port}, '/cc/' . (1 + $_ % 6)) for 1 .. 30;
my @up = slurp($log) =~ /\[pid (\d+):tid \d+\].*BFF43: cache store redis answers again/g;
ok @up >= 1, 'its end too';
my %seen;
ok !grep({ $seen{$_}++ } @up), 'once per child';
ok !grep({ !$per{$_} } @up), 'by the children that logged the outage';
unlike slurp($log), qr/BFF32/, 'no debug lines at the default level';
stop_httpd($h);
