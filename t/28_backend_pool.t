# BFFBackendPool: a child's backend connections are one pool shared by
# its worker threads and bounded per backend origin. Requests of many
# threads go over the same few connections; a call beyond the bound waits
# within its timeout, then fails as "pool exhausted" (503 when the call is
# required, counted in bff_service_errors_total); with BFFBackendPool
# thread each thread has connections of its own. Configuration errors are
# refused and the unbounded opt-out is reported by apache2 -t. A child
# sizes its futex hash for its threads.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use POSIX ();
use Time::HiRes qw(sleep time);
use BFFTest;
use BFFConfTest qw(configtest);

plan tests => 22;

my $svc;
END { own_svc_stop($svc) if $svc }
$svc = own_svc_start('user');
my $U = "http://127.0.0.1:$svc->{port}";

my $endpoints = <<"CONF";
StartServers 1
ServerLimit 1
MaxRequestWorkers 16
BFFTimeout 5s
<BFFEndpoint GET /slow/{id:int}>
    BFFBackend user GET $U/users/{id}?delay_ms=150 required
</BFFEndpoint>
<BFFEndpoint GET /hold/{id:int}>
    BFFBackend user GET $U/users/{id}?delay_ms=700 required
</BFFEndpoint>
<BFFEndpoint GET /tight/{id:int}>
    BFFBackend user GET $U/users/{id} required timeout=200ms
</BFFEndpoint>
<Location /metrics>
    SetHandler bff-metrics
</Location>
CONF

sub stats { own_svc_admin($svc, '/__admin/stats') }

# --- one child, 16 threads, two connections to the backend's origin
my $h = start_httpd('pool-child', "BFFBackendPool child max-per-origin=2 idle-timeout=45s\n"
                                  . "BFFBackendConnections 4\n$endpoints");
my $port = $h->{port};
http_get($port, "/slow/1");     # the child is up and has its client
own_svc_admin($svc, '/__admin/reset');
my $t0 = time;
my @r = burst($port, map { "/slow/$_" } 1 .. 8);
my $took = time - $t0;
is scalar(grep { $_->[0] == 200 } @r), 8, 'eight requests of eight threads answered 200';
my $st = stats();
is $st->{requests}, 8, 'eight backend calls';
cmp_ok $st->{max_in_flight}, '<=', 2, "at most two at the backend at once ($st->{max_in_flight})";
cmp_ok $took, '>=', 0.5, sprintf('they took turns on the two connections (%.2fs)', $took);

# the child's log says which pool it runs
my $log = do { local $/; open my $fh, '<', "$h->{dir}/error.log" or die; <$fh> };
like $log, qr/BFF4: backend HTTP client: native, one pool per child shared by its threads, 4 idle connections kept \(closed after 45000 ms idle\), 2 connections per backend origin/,
    'the pool is logged at child start';

# the child's futex hash is sized for its 16 threads before they start
# (four buckets a thread, a power of two of at least 16); a kernel before
# Linux 6.16 has only the global hash, which the child says instead
if ($log =~ /BFF6: futex hash of this child: the kernel's global one/) {
    pass 'no process futex hash in this kernel: nothing to size';
}
else {
    like $log, qr/BFF5: futex hash of this child: 64 buckets for its 16 threads/,
        'the futex hash is sized for the threads at child start';
}

# --- beyond the bound a call waits within its timeout, then fails named:
# two slow calls hold both connections, two others wait 200 ms for one
own_svc_admin($svc, '/__admin/reset');
@r = burst($port, '/hold/1', '/hold/2', { path => '/tight/3', wait => 0.15 },
           { path => '/tight/4', wait => 0.15 });
is_deeply [ map { $_->[0] } @r ], [ 200, 200, 503, 503 ],
    'the slow ones answered, the waiting ones 503';
my @pool = grep { $_->[5] =~ /pool exhausted/ } @r[2, 3];
is scalar(@pool), 2, 'naming the pool ("pool exhausted")';
ok !(grep { $_->[1] > 0.6 } @r[2, 3]), 'after their 200 ms timeout, not the slow calls\' 700 ms ('
    . join(' ', map { $_->[1] } @r[2, 3]) . ')';
is stats()->{requests}, 2, 'the waiting calls never reached the backend';
my $m = http_get($port, '/metrics')->content;
my ($n) = $m =~ /^bff_service_errors_total\{[^}]*reason="pool_exhausted"[^}]*\} (\d+)/m;
is $n // 0, 2, 'bff_service_errors_total counts reason="pool_exhausted"';
my ($brk) = $m =~ /^bff_breaker_state\{[^}]*backend="user"[^}]*\} (\d+)/m;
ok !defined $brk || $brk == 0, 'the breaker does not count the pool against the backend';

# the pool recovers at once
sleep 0.5;
is http_get($port, '/slow/3')->code, 200, 'the next request is served';
stop_httpd($h);

# --- libcurl's own queue (BFFHTTPClient curl): the same bound and name
$h = start_httpd('pool-curl', "BFFHTTPClient curl\nBFFBackendPool child max-per-origin=2\n$endpoints");
$port = $h->{port};
http_get($port, "/slow/1");
own_svc_admin($svc, '/__admin/reset');
@r = burst($port, '/hold/1', '/hold/2', { path => '/tight/3', wait => 0.15 },
           { path => '/tight/4', wait => 0.15 });
is_deeply [ map { $_->[0] } @r ], [ 200, 200, 503, 503 ], 'curl: the waiting ones 503';
is scalar(grep { $_->[5] =~ /pool exhausted/ } @r[2, 3]), 2, 'curl: naming the pool';
is stats()->{requests}, 2, 'curl: the waiting calls never reached the backend';
stop_httpd($h);

# --- per-thread pools: every thread calls on its own connection
$h = start_httpd('pool-thread', "BFFBackendPool thread\n$endpoints");
$port = $h->{port};
http_get($port, "/slow/1");
own_svc_admin($svc, '/__admin/reset');
@r = burst($port, map { "/slow/$_" } 1 .. 6);
is scalar(grep { $_->[0] == 200 } @r), 6, 'per thread: six answered 200';
cmp_ok stats()->{max_in_flight}, '>', 2, 'and more than two at the backend at once ('
    . stats()->{max_in_flight} . ')';
stop_httpd($h);

# --- configuration
my $ep = "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/{id}\n</BFFEndpoint>";
my ($rc, $out) = configtest("BFFBackendPool shared\n$ep");
like $out, qr/BFFBackendPool: 'shared': expected child or thread/, 'an unknown pool is refused';
($rc, $out) = configtest("BFFBackendPool child max-per-origin=0\n$ep");
like $out, qr/max-per-origin=0: expected a number from 1 to 100000/, 'max-per-origin=0 is refused';
($rc, $out) = configtest("BFFBackendPool child idle-timeout=100ms\n$ep");
like $out, qr/BFFBackendPool: idle-timeout=100ms: expected a duration from 1s to 1h/, 'an idle timeout under 1s is refused';
($rc, $out) = configtest("BFFBackendPool child unbounded\n$ep");
like $out, qr/BFF160: BFFBackendPool unbounded/, 'unbounded is reported by apache2 -t';
