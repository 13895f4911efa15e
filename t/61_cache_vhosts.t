# The same endpoint pattern in two virtual hosts: each keeps its own
# entries (whether the definitions differ or not), and a purge reaches the
# entries of the virtual host that receives it only, unless its location
# says BFFCachePurgeScope server. With Redis and with shared memory.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 2 * 16;

my $U = BFFTest::svc_url('user');
my $O = BFFTest::svc_url('order');

sub conf {
    my ($store, $prefix) = @_;
    my $purge = <<"P";
    <Location /purge>
        SetHandler bff-cache-purge
        Require ip 127.0.0.1
    </Location>
P
    return <<"CONF";
BFFHTTPClient $ENV{BFF_T_CLIENT}
BFFCacheStore $store
BFFCachePrefix $prefix
<VirtualHost *>
    ServerName a.test
    <BFFEndpoint GET /v/{id:int}>
        BFFBackend user GET $U/users/{id} required
        BFFCacheTTL 30s
        BFFCacheTag user:{id}
    </BFFEndpoint>
    <BFFEndpoint GET /same/{id:int}>
        BFFBackend user GET $U/users/{id} required
        BFFCacheTTL 30s
        BFFCacheTag user:{id}
    </BFFEndpoint>
$purge
    <Location /purge-everywhere>
        SetHandler bff-cache-purge
        BFFCachePurgeScope server
        Require ip 127.0.0.1
    </Location>
</VirtualHost>
<VirtualHost *>
    ServerName b.test
    <BFFEndpoint GET /v/{id:int}>
        BFFBackend user GET $O/orders/user/{id} required
        BFFCacheTTL 30s
        BFFCacheTag user:{id}
    </BFFEndpoint>
    <BFFEndpoint GET /same/{id:int}>
        BFFBackend user GET $U/users/{id} required
        BFFCacheTTL 30s
        BFFCacheTag user:{id}
    </BFFEndpoint>
$purge
</VirtualHost>
CONF
}

for my $store ($ENV{BFF_T_REDIS_URL}, 'shmcb') {
    my $kind = $store eq 'shmcb' ? 'shm' : 'redis';
    my $h = start_httpd("p61$kind", conf($store, "p61-$$-$kind:"));
    my $port = $h->{port};
    my $get = sub { my ($host, $path) = @_; http_get($port, $path, Host => $host) };
    my $st = sub { $get->(@_)->header('X-Cache-Status') // '' };
    my $purge = sub {
        my ($host, $path) = @_;
        BFFTest::bff_req_port($port, PURGE => $path, Host => $host);
    };

    # one pattern, two definitions
    my $a = $get->('a.test', '/v/1');
    ok t_cmp($a->header('X-Cache-Status'), 'MISS', "$kind: a");
    ok t_cmp(ref $a->{json}{user}, 'HASH', "$kind: a's answer is a user");
    my $b = $get->('b.test', '/v/1');
    ok t_cmp($b->header('X-Cache-Status'), 'MISS', "$kind: b does not get a's entry");
    ok t_cmp(ref $b->{json}{user}, 'ARRAY', "$kind: b's answer is b's (orders)");
    ok t_cmp(ref $get->('b.test', '/v/1')->{json}{user}, 'ARRAY', "$kind: and stays b's");

    # one pattern, the same definition: still one entry per virtual host
    ok t_cmp($st->('a.test', '/same/2'), 'MISS');
    ok t_cmp($st->('b.test', '/same/2'), 'MISS', "$kind: identical definitions, separate entries");
    ok t_cmp($st->('a.test', '/same/2'), 'HIT');
    ok t_cmp($st->('b.test', '/same/2'), 'HIT');

    # a purge in a leaves b's entries alone
    my $p = $purge->('a.test', '/purge?tag=user:2');
    ok t_cmp($p->{json}{scope}, 'vhost', "$kind: a vhost purge");
    ok t_cmp($st->('a.test', '/same/2'), 'MISS', "$kind: a's entry purged");
    ok t_cmp($st->('b.test', '/same/2'), 'HIT', "$kind: b's entry kept");
    $p = $purge->('b.test', '/purge?all=1');
    ok t_cmp($st->('a.test', '/same/2'), 'HIT', "$kind: all=1 in b leaves a's entries");

    # the explicit server-wide purge
    $st->('b.test', '/same/2');
    $p = $purge->('a.test', '/purge-everywhere?tag=user:2');
    ok t_cmp($p->{json}{scope}, 'server', "$kind: BFFCachePurgeScope server");
    ok t_cmp($st->('a.test', '/same/2'), 'MISS', "$kind: purged in a");
    ok t_cmp($st->('b.test', '/same/2'), 'MISS', "$kind: and in b");
    stop_httpd($h);
}
