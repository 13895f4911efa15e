# Breaker state is shared by all children and survives a graceful restart
# (an httpd of its own, several small children that are recycled after 2
# connections, its own user service); /health reports backends and the
# cache store, 200 while serving and 503 when a required backend or the
# store is unusable.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Time::HiRes qw(sleep);
use BFFTest;

plan tests => 35;

my $svc = own_svc_start('user');
END { own_svc_stop($svc) if $svc }
my $S = "http://127.0.0.1:$svc->{port}";
my $C = "http://127.0.0.1:$ENV{BFF_T_CLOSED_PORT}";

my $h = start_httpd('shared', <<"CONF");
StartServers 3
ThreadsPerChild 2
MinSpareThreads 2
MaxSpareThreads 8
MaxRequestWorkers 8
MaxConnectionsPerChild 2
LogFormat "%P %r %>s" pidfmt
CustomLog "access.log" pidfmt
BFFBreaker on consecutive=3 open=60s
<BFFEndpoint GET /p/{id:int}>
    BFFBackend user   GET $S/users/{id} required
    BFFBackend extras GET $C/extras/{id}
</BFFEndpoint>
<Location /health>
    SetHandler bff-health
</Location>
CONF
my $port = $h->{port};
for (1 .. 100) { last if -s "$h->{dir}/httpd.pid"; sleep 0.05 }
open my $pf, '<', "$h->{dir}/httpd.pid" or die "no pid file: $!";
chomp(my $ppid = <$pf>);
close $pf;

sub svc_calls { scalar @{ own_svc_admin($svc, '/__admin/log') } }
sub health {
    my $res = http_get($port, '/health');
    my %b = map { ($_->{backend} => $_) } @{ $res->{json}{backends} // [] };
    return ($res, \%b);
}

# before any traffic: both hosts known (from the configuration), closed
my ($res, $b) = health();
ok t_cmp($res->code, 200, 'health: 200 while serving');
ok t_cmp($res->{json}{status}, 'ok');
ok t_cmp($b->{$S}{state}, 'closed', 'the user service is listed, closed');
ok t_cmp($b->{$S}{required} ? 1 : 0, 1, 'as required');
ok t_cmp($b->{$C}{required} ? 1 : 0, 0, 'the extras host as optional');
ok !exists $res->{json}{cache}, 'no cache store: not listed';
is $res->header('Cache-Control'), 'no-store', 'health is not cached';

# an optional backend that is down opens its breaker; health stays 200
http_get($port, '/p/1') for 1 .. 3;
($res, $b) = health();
ok t_cmp($b->{$C}{state}, 'open', 'the down optional host: open');
ok t_cmp($b->{$C}{last}{reason}, 'connect error', 'last reason');
ok t_cmp($res->code, 200, 'an optional backend does not make the gateway unhealthy');

# the required backend fails 3 times in a row: open for every child
own_svc_admin($svc, '/__admin/reset');
own_svc_admin($svc, '/__admin/fault?status=503');
my @codes = map { http_get($port, "/p/$_")->code } 1 .. 3;
ok t_cmp("@codes", '502 502 502', 'three failures');
ok t_cmp(svc_calls(), 3, 'three calls');
my $mark = -s "$h->{dir}/access.log";
my $t0 = now();
@codes = map { http_get($port, "/p/$_")->code } 1 .. 12;
ok t_cmp("@codes", join(' ', ('503') x 12), 'then 503 from every child');
ok now() - $t0 < 3, 'at once';
ok t_cmp(svc_calls(), 3, 'no call reached the service');
sleep 0.2;
my %pids;
for (split /\n/, substr(slurp("$h->{dir}/access.log"), $mark)) {
    $pids{$1}++ if m{^(\d+) GET /p/\d+ HTTP/1.1 503};
}
ok keys(%pids) >= 3, 'answered by ' . scalar(keys %pids) . ' different child processes';

($res, $b) = health();
ok t_cmp($res->code, 503, 'health: 503 while a required backend is open');
ok t_cmp($res->{json}{status}, 'unavailable');
ok t_cmp($b->{$S}{state}, 'open');
ok t_cmp($b->{$S}{counters}{opened}, 1, 'opened once (all children together)');
ok t_cmp($b->{$S}{counters}{refused}, 12, 'refusals summed over the children');
ok t_cmp($b->{$S}{counters}{failures}, 3);
ok $b->{$S}{open_until}, 'open_until given';
my $log = slurp("$h->{dir}/error.log");
my @opened = $log =~ /BFF201: circuit breaker \Q$S\E: closed -> open/g;
ok t_cmp(scalar @opened, 1, 'the transition is logged once');

# graceful restart: the breaker stays open, the counters stay
own_svc_admin($svc, '/__admin/reset');
sub generations { my $n = () = slurp("$h->{dir}/error.log") =~ /resuming normal operations/g; $n }
my $gen = generations();
ok kill('USR1', $ppid), 'graceful restart';
my $until = now() + 15;
sleep 0.1 while generations() <= $gen && now() < $until;
ok t_cmp(generations(), $gen + 1, 'a new generation');
sleep 0.5;
@codes = map { http_get($port, "/p/$_")->code } 1 .. 4;
ok t_cmp("@codes", '503 503 503 503', 'after the restart: still open');
ok t_cmp(svc_calls(), 0, 'the service is still not called');
($res, $b) = health();
ok t_cmp($b->{$S}{state}, 'open', 'health after the restart: open');
ok t_cmp($b->{$S}{counters}{opened}, 1, 'counters kept across the restart');
ok $b->{$S}{counters}{refused} >= 16, "refusals kept ($b->{$S}{counters}{refused})";
stop_httpd($h);
own_svc_stop($svc);

# the cache store: Redis unreachable without a fallback makes it unusable
my $R = "redis://127.0.0.1:$ENV{BFF_T_CLOSED_PORT}";
my $U = svc_url('user');
my $body = <<"CONF";
BFFCacheStore $R
BFFCacheConnectTimeout 50ms
<BFFEndpoint GET /c/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFCacheTTL 30s
</BFFEndpoint>
<Location /health>
    SetHandler bff-health
</Location>
CONF
my $h2 = start_httpd('health-nofb', "$body\nBFFCacheFallback off\n");
http_get($h2->{port}, '/c/1');
$res = http_get($h2->{port}, '/health');
ok t_cmp($res->code, 503, 'store down, no fallback: 503');
ok t_cmp($res->{json}{cache}{up} ? 1 : 0, 0, 'the store is down');
stop_httpd($h2);
my $h3 = start_httpd('health-fb', $body);
http_get($h3->{port}, '/c/1');
$res = http_get($h3->{port}, '/health');
ok t_cmp($res->code, 200, 'store down, shared memory fallback: 200');
ok t_cmp($res->{json}{cache}{fallback_in_use} ? 1 : 0, 1, 'fallback in use');
stop_httpd($h3);
