# A backend killed and restarted during a run (no request waits past the
# deadline, answers recover), the active health probe (one process probes,
# a down backend opens its breaker, an up one lets trials through), and
# load balancing over the instances of an upstream (round robin, least
# outstanding, skipping an instance whose breaker is open).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use POSIX ();
use Time::HiRes qw(sleep);
use BFFTest;

plan tests => 29;

my ($svc, $ia, $ib);
END { own_svc_stop($_) for grep { $_ } $svc, $ia, $ib }
$svc = own_svc_start('user');
my $sport = $svc->{port};
my $S = "http://127.0.0.1:$sport";

my $h = start_httpd('failover', <<"CONF");
LogLevel info watchdog:debug
BFFBreaker on consecutive=2 open=1s half-open=1
BFFRetry attempts=2 backoff=20ms
BFFHealthProbe interval=200ms timeout=300ms path=/health
BFFTimeout 500ms
<BFFEndpoint GET /k/{id:int}>
    BFFBackend user GET $S/users/{id} required
</BFFEndpoint>
<Location /health>
    SetHandler bff-health
</Location>
CONF
my $port = $h->{port};

sub health {
    my $res = http_get($port, '/health');
    my ($e) = grep { $_->{backend} eq $S } @{ $res->{json}{backends} // [] };
    return ($res->code, $e // {});
}

# the probe marks the service up
my $until = now() + 3;
my ($code, $e) = health();
while (($e->{probe} // '') ne 'up' && now() < $until) { sleep 0.1; ($code, $e) = health() }
ok t_cmp($e->{probe}, 'up', 'the probe found the service up');
ok t_cmp($code, 200, 'health 200');

# one process probes per interval, not every child
own_svc_admin($svc, '/__admin/reset');
sleep 1;
my $probes = grep { $_->{uri} eq '/health' } @{ own_svc_admin($svc, '/__admin/log') };
ok $probes >= 3 && $probes <= 7, "about 5 probes in 1 s at 200 ms ($probes)";

# a run of requests: the service is killed after 1 s and back after 2.5 s,
# then hangs (SIGSTOP: connections accepted, no answer) from 3.5 s to 4.5 s
my (@runs, $killed, $back, $stopped, $cont);
my $t0 = now();
while (now() - $t0 < 7) {
    my $t = now() - $t0;
    if (!$killed && $t > 1) { own_svc_stop($svc); $killed = 1 }
    if (!$back && $t > 2.5) { $svc = own_svc_start('user', $sport); $back = 1 }
    if (!$stopped && $t > 3.5) { kill 'STOP', $svc->{pid}; $stopped = 1 }
    if (!$cont && $t > 4.5) { kill 'CONT', $svc->{pid}; $cont = 1 }
    my $s = now();
    my $res = http_get($port, '/k/' . (1 + @runs % 50));
    push @runs, [ $t, $res->code, now() - $s ];
    sleep 0.05;
}
my $dump = join ' ', map { sprintf '%.2f:%d:%.3f', @$_ } @runs;
my @before = grep { $_->[0] < 1 } @runs;
my @down = grep { $_->[0] > 1.05 && $_->[0] <= 2.5 } @runs;
my @hung = grep { $_->[0] > 3.5 && $_->[0] <= 4.5 } @runs;
my @end = grep { $_->[0] > 6 } @runs;
ok !grep({ $_->[1] != 200 } @before), 'before the kill: all 200';
ok(@down > 5 && !grep({ $_->[1] == 200 } @down), 'while down: errors (' . scalar(@down) . ')') or diag $dump;
ok !grep({ $_->[1] != 503 && $_->[1] != 502 && $_->[1] != 504 } @down, @hung), 'gateway errors only';
ok scalar(grep { $_->[1] == 503 } @down) >= @down / 2, 'mostly 503: the breaker answers at once';
ok(@hung >= 2 && !grep({ $_->[1] == 200 } @hung), 'while it hangs: errors') or diag $dump;
ok(scalar(grep { $_->[1] == 504 } @hung) >= 1, 'timeouts while it hangs') or diag $dump;
my ($slowest) = sort { $b->[2] <=> $a->[2] } @runs;
ok $slowest->[2] < 0.5 + 0.4, "no request waited past the 500 ms deadline (slowest $slowest->[2] s)";
ok(@end > 5 && !grep({ $_->[1] != 200 } @end), 'answers recovered') or diag $dump;

# the probe opens the breaker of a down backend, without any request
own_svc_stop($svc);
$until = now() + 3;
($code, $e) = health();
while (($e->{probe} // '') ne 'down' && now() < $until) { sleep 0.1; ($code, $e) = health() }
ok t_cmp($e->{probe}, 'down', 'the probe found it down');
ok t_cmp($e->{state}, 'open', 'and opened its breaker');
ok t_cmp($code, 503, 'health 503: a required backend is down');
my $s = now();
ok t_cmp(http_get($port, '/k/1')->code, 503, 'requests fail at once');
ok now() - $s < 0.3, 'without waiting for a connect';
# back: the probe lets trials through, the first call closes the breaker
$svc = own_svc_start('user', $sport);
$until = now() + 3;
($code, $e) = health();
while (($e->{probe} // '') ne 'up' && now() < $until) { sleep 0.1; ($code, $e) = health() }
ok t_cmp($e->{state}, 'half-open', 'probe up: half-open');
ok t_cmp(http_get($port, '/k/2')->code, 200, 'the trial call succeeds');
($code, $e) = health();
ok t_cmp($e->{state}, 'closed', 'closed again');
ok t_cmp($code, 200, 'health 200');
open my $lf, '<', "$h->{dir}/error.log" or die $!;
my @log = <$lf>;
close $lf;
my @l = grep { /BFF203: health probe \Q$S\E\/health: (up|down)/ } @log;
ok @l >= 4 && @l <= 8, 'probe state changes logged once each (' . scalar(@l) . ')';
stop_httpd($h);
# the probe runs on mod_watchdog: a child watchdog in every child (2 at
# start, more if the MPM added some)
my %wd = map { /\[pid (\d+)/ ? ($1 => 1) : () }
         grep { /Watchdog \(_bff_health_probe_\) running/ } @log;
ok keys(%wd) >= 2, 'the probe runs on mod_watchdog in each child ('
                   . scalar(keys %wd) . ')';

# ---- load balancing over two instances
$ia = own_svc_start('user');
$ib = own_svc_start('user');
my ($A, $B) = map { "http://127.0.0.1:$_->{port}" } $ia, $ib;
my $lb = start_httpd('lb', <<"CONF");
BFFUpstream users $A $B
BFFUpstream users2 $A $B lb=least-outstanding
BFFBreaker on consecutive=1 open=30s
<BFFEndpoint GET /rr/{id:int}>
    BFFBackend user GET http://users/users/{id} required
    BFFRetry attempts=2 backoff=1ms
</BFFEndpoint>
<BFFEndpoint GET /lo/{id:int}>
    BFFBackend user GET http://users2/users/{id} required
</BFFEndpoint>
CONF
$port = $lb->{port};
sub n_of { scalar grep { $_->{uri} =~ m{^/users/} } @{ own_svc_admin($_[0], '/__admin/log') } }

my @c = map { http_get($port, "/rr/$_")->code } 1 .. 10;
ok t_cmp("@c", join(' ', ('200') x 10), 'round robin: all answered');
ok n_of($ia) >= 2 && n_of($ib) >= 2, 'both instances used (' . n_of($ia) . '/' . n_of($ib) . ')';
ok t_cmp(http_get($port, '/rr/7')->{json}{user}{id}, 7, 'the real answer');

# least outstanding: A holds a slow call, so the next calls go to B
own_svc_admin($_, '/__admin/reset') for $ia, $ib;
own_svc_admin($ia, '/__admin/fault?delay_ms=1500');
my @kids;
for (1 .. 6) {
    my $pid = fork // die "fork: $!";
    if (!$pid) { http_get($port, '/lo/1'); POSIX::_exit(0) }
    push @kids, $pid;
    sleep 0.15;
    last if own_svc_admin($ia, '/__admin/stats')->{in_flight} >= 1;
}
ok own_svc_admin($ia, '/__admin/stats')->{in_flight} >= 1, 'a slow call is in flight on A';
my $na = n_of($ia) + own_svc_admin($ia, '/__admin/stats')->{in_flight};
my $nb = n_of($ib);
http_get($port, "/lo/$_") for 1 .. 4;
ok t_cmp(n_of($ib) - $nb, 4, 'least outstanding: all four went to B');
waitpid $_, 0 for @kids;
own_svc_admin($ia, '/__admin/reset');

# an instance goes away: its breaker opens, retries and later calls go to A
own_svc_stop($ib);
own_svc_admin($ia, '/__admin/reset');
@c = map { http_get($port, "/rr/$_")->code } 1 .. 8;
ok t_cmp("@c", join(' ', ('200') x 8), 'B down: still all answered (retried on A)');
ok t_cmp(n_of($ia), 8, 'A served every call');
stop_httpd($lb);
