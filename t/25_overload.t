# Overload is answered, not queued: BFFMaxInFlight caps the aggregations in
# flight over every process (per endpoint, per backend origin, in total);
# beyond a cap the answer is an immediate 503 with Retry-After and
# problem+json, counted in bff_overload_rejected_total; other locations
# stay fast meanwhile; a crashed process takes its counts with it; the
# gateway recovers by itself; one consumer's cap leaves the others room.
# Configuration errors are refused.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use POSIX ();
use Time::HiRes qw(sleep time);
use BFFTest;
use BFFConfTest qw(configtest);
use BFFJWT ();

plan tests => 40;

my ($slow, $fast);
END { own_svc_stop($_) for grep { $_ } $slow, $fast }
$slow = own_svc_start('user');
$fast = own_svc_start('user');
my $S = "http://127.0.0.1:$slow->{port}";
my $F = "http://127.0.0.1:$fast->{port}";
own_svc_admin($slow, '/__admin/fault?delay_ms=1500');

my $h = start_httpd('overload', <<"CONF");
BFFMaxInFlight backend=5 retry-after=2s
BFFTimeout 5s
<BFFEndpoint GET /slow/{id:int}>
    BFFBackend user GET $S/users/{id} required
    BFFMaxInFlight endpoint=3
</BFFEndpoint>
<BFFEndpoint GET /a/{id:int}>
    BFFBackend user GET $S/users/{id} required
</BFFEndpoint>
<BFFEndpoint GET /b/{id:int}>
    BFFBackend user GET $S/users/{id} required
</BFFEndpoint>
<BFFEndpoint GET /fast/{id:int}>
    BFFBackend user GET $F/users/{id} required
</BFFEndpoint>
<Location /metrics>
    SetHandler bff-metrics
</Location>
CONF
my $port = $h->{port};

sub metric {
    my ($re) = @_;
    my $text = http_get($port, '/metrics')->content;
    my ($v) = $text =~ /^$re (\d+)/m;
    return $v // 0;
}

# --- an endpoint's cap: 3 in flight, the others answered at once
my $kid = fork // die;
if (!$kid) {
    # while the burst holds the workers, the fast endpoint stays fast
    sleep 0.5;
    my $t0 = time;
    my $r = http_get($port, '/fast/1');
    POSIX::_exit($r->code == 200 && time - $t0 < 0.5 ? 0 : 1);
}
my @r = burst($port, map { "/slow/$_" } 1 .. 8);
waitpid $kid, 0;
ok t_cmp($? >> 8, 0, 'another endpoint answered fast during the burst');
my @ok = grep { $_->[0] == 200 } @r;
my @over = grep { $_->[0] == 503 } @r;
ok t_cmp(scalar(@ok), 3, 'endpoint=3: three admitted');
ok t_cmp(scalar(@over), 5, 'five answered 503');
ok !(grep { $_->[1] > 1.0 } @over), 'the 503s came at once, not after the backend ('
    . join(' ', map { $_->[1] } @over) . ')';
ok !(grep { $_->[1] < 1.4 } @ok), 'the admitted ones waited for the slow backend';
ok !(grep { $_->[2] ne '2' } @over), 'Retry-After: 2 (retry-after=2s)';
ok !(grep { $_->[3] ne 'application/problem+json' } @over), 'problem+json';
like $over[0][4], qr/too many requests in flight \(endpoint: 3\)/, 'the detail names the cap';
ok t_cmp(metric(qr/bff_overload_rejected_total\{endpoint="\/slow\/\{id:int\}",limit="endpoint"\}/), 5,
         'counted in bff_overload_rejected_total');
ok t_cmp(metric(qr/bff_aggregations_in_flight/), 0, 'nothing left in flight');

# recovers by itself: the next request is admitted
my $res = http_get($port, '/slow/2');
ok t_cmp($res->code, 200, 'admitted again once the slow ones ended');

# --- a backend's cap: /a and /b call the same slow origin, 5 at most
@r = burst($port, (map { "/a/$_" } 1 .. 4), (map { "/b/$_" } 1 .. 4));
@ok = grep { $_->[0] == 200 } @r;
@over = grep { $_->[0] == 503 } @r;
ok t_cmp(scalar(@ok), 5, 'backend=5: five admitted over two endpoints');
ok t_cmp(scalar(@over), 3, 'three answered 503');
like $over[0][4], qr/\(backend \Q$S\E: 5\)/, 'the detail names the backend origin';
ok t_cmp(metric(qr/bff_overload_rejected_total\{endpoint="\/a\/\{id:int\}",limit="backend"\}/)
         + metric(qr/bff_overload_rejected_total\{endpoint="\/b\/\{id:int\}",limit="backend"\}/), 3,
         'counted with limit="backend"');
ok metric(qr/bff_workers_max/) > 0, 'bff_workers_max is exported';

# --- a process killed with requests in flight: its counts go with it
sub children { httpd_children($h) }
my @pids;
for (1 .. 3) {
    my $p = fork // die;
    if (!$p) { http_get($port, "/slow/$_"); POSIX::_exit(0) }
    push @pids, $p;
}
sleep 0.5;
my @before = children();
ok @before >= 1, 'httpd children found (' . scalar(@before) . ')';
kill 'KILL', @before;
waitpid $_, 0 for @pids;
# the parent clears the rows of the children it reaps and starts new ones
my $until = time + 10;
my %old = map { $_ => 1 } @before;
while (time < $until && !(grep { !$old{$_} } children())) { sleep 0.1 }
ok((grep { !$old{$_} } children()) > 0, 'new children started');
$until = time + 5;
$res = undef;
while (time < $until) { $res = http_get($port, '/fast/1'); last if $res->code == 200; sleep 0.1 }
ok t_cmp($res->code, 200, 'serving again');
@r = burst($port, map { "/slow/$_" } 1 .. 3);
ok t_cmp(scalar(grep { $_->[0] == 200 } @r), 3,
         'after the crash all three are admitted: the dead counts are gone')
    or diag join ' | ', map { join(',', @$_[0..4]) } @r;
stop_httpd($h);

# --- one consumer's cap: acme's third request is refused, globex passes
my $K = BFFJWT::keydir();
my $mods = $ENV{BFF_T_LIBEXECDIR};
$h = start_httpd('overload-consumer', <<"CONF");
LoadModule authn_core_module "$mods/mod_authn_core.so"
LoadModule authz_user_module "$mods/mod_authz_user.so"
BFFMaxInFlight consumer=2
BFFAPIKeyFile $K/apikeys.txt
BFFTimeout 5s
<Location /c/>
    AuthType bff-apikey
    Require valid-user
</Location>
<BFFEndpoint GET /c/slow/{id:int}>
    BFFBackend user GET $S/users/{id} required
</BFFEndpoint>
<Location /metrics>
    SetHandler bff-metrics
</Location>
CONF
$port = $h->{port};
my @acme = ('X-API-Key' => BFFJWT::apikey('acme'));
my @globex = ('X-API-Key' => BFFJWT::apikey('globex'));
@r = burst($port, (map { ["/c/slow/$_", @acme] } 1 .. 3), ['/c/slow/9', @globex]);
ok t_cmp(scalar(grep { $_->[0] == 200 } @r[0 .. 2]), 2, 'consumer=2: two of acme\'s three admitted');
my ($refused) = grep { $_->[0] == 503 } @r[0 .. 2];
ok $refused && $refused->[1] < 1.0, 'the third answered 503 at once';
like $refused ? $refused->[4] : '', qr/too many requests in flight \(consumer: 2\)/, 'the detail names the consumer cap';
ok t_cmp($r[3][0], 200, 'globex, another consumer, admitted meanwhile');
ok t_cmp(metric(qr/bff_overload_rejected_total\{endpoint="\/c\/slow\/\{id:int\}",limit="consumer"\}/), 1,
         'counted with limit="consumer"');
@r = burst($port, map { ["/c/slow/$_", @acme] } 1 .. 2);
ok t_cmp(scalar(grep { $_->[0] == 200 } @r), 2, 'acme\'s count went back down: two admitted again');
stop_httpd($h);

# --- configuration
for my $c (['BFFMaxInFlight total=0', qr/BFFMaxInFlight: total=: expected auto or a number from 1 to 1000000/],
           ['BFFMaxInFlight backend=x', qr/BFFMaxInFlight: backend=: expected auto or a number/],
           ['BFFMaxInFlight retry-after=10ms', qr/retry-after=10ms: expected a duration from 1s to 1h/],
           ['BFFMaxInFlight consumer=0', qr/BFFMaxInFlight: consumer=0: expected/],
           ['BFFMaxInFlight colour=red', qr/BFFMaxInFlight: unknown option 'colour='/],
           ['BFFMaxInFlight', qr/BFFMaxInFlight takes options/],
           ["BFFMaxInFlight total=5\nBFFMaxInFlight backend=5", qr/BFFMaxInFlight is given twice/],
           ["<VirtualHost 127.0.0.1:1>\nBFFMaxInFlight total=5\n</VirtualHost>", qr/cannot occur within <VirtualHost>/],
           ["<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/{id}\n BFFMaxInFlight total=3\n</BFFEndpoint>",
            qr/BFFMaxInFlight: unknown option 'total=' \(expected endpoint=\)/],
           ["<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/{id}\n BFFMaxInFlight\n</BFFEndpoint>",
            qr/inside <BFFEndpoint> takes endpoint=N/]) {
    my ($rc, $out) = configtest($c->[0]);
    ok $rc != 0 && $out =~ $c->[1], "refused: $c->[0]" or diag $out;
}
my ($rc, $out) = configtest("BFFMaxInFlight off\n<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/{id}\n</BFFEndpoint>");
ok t_cmp($rc, 0, 'off is accepted') or diag $out;
like $out, qr/BFF150: BFFMaxInFlight off: no cap on aggregations in flight/, 'and reported by apache2 -t';
($rc, $out) = configtest("BFFMaxInFlight total=auto endpoint=40 backend=auto retry-after=3s\n<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/{id}\n BFFMaxInFlight endpoint=5\n</BFFEndpoint>");
ok t_cmp($rc, 0, 'every option accepted') or diag $out;
unlike $out, qr/BFF150/, 'no report without off';
