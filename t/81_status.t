# mod_status: with ExtendedStatus On (t/conf/status.conf.in) the
# server-status page, ?auto and HTML, shows mod_bff's version and features,
# aggregations in flight (one measured while a slow request runs), the
# cache store and the rate-limit store (both Redis here) and their health,
# and the breaker of every backend key (one opened by the test); the
# bff_build_info metric names the same version and features.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Time::HiRes qw(sleep);
use BFFTest;
use POSIX ();

plan tests => 22, need_servers('redis-server');

# the version configure.ac gives
open my $fh, '<', "$ENV{BFF_TOP}/configure.ac" or die $!;
my ($version) = join('', <$fh>) =~ /AC_INIT\(\[mod_bff\], \[([^\]]+)\]/;
close $fh;

sub auto {
    my $res = bff_get('/t/server-status?auto');
    my %v;
    for (split /\n/, $res->content) {
        $v{$1} = $2 if /^([^:]+): (.*)$/;
    }
    return \%v;
}

# the stores as this child sees them: after an earlier test's Redis outage
# its pooled connections fail once, then it reconnects (retry=1s)
my $s;
for (1 .. 30) {
    $s = auto();
    last if ($s->{BFFCacheStoreUp} // 0) == 1 && ($s->{BFFRateLimitStoreUp} // 0) == 1;
    sleep 0.2;
}
ok t_cmp($s->{BFFVersion}, $version, 'version');
like $s->{BFFFeatures} // '', qr/(?:^| )curl(?: |$)/, 'features name libcurl (built with it)';
ok t_cmp($s->{BFFAggregationsInFlight}, 0, 'no aggregation in flight');
ok t_cmp($s->{BFFCacheStore}, 'redis', 'cache store');
ok t_cmp($s->{BFFCacheStoreUp}, 1, 'cache store up');
ok t_cmp($s->{BFFCacheFallbackInUse}, 0, 'fallback not in use');
ok t_cmp($s->{BFFRateLimitStore}, 'redis', 'rate-limit store');
ok t_cmp($s->{BFFRateLimitStoreUp}, 1, 'rate-limit store up');

# a slow aggregation in flight
my $pid = fork // die "fork: $!";
if (!$pid) {
    bff_get('/t/stslow/1');
    POSIX::_exit(0);
}
my $seen = 0;
for (1 .. 60) {
    $seen = auto()->{BFFAggregationsInFlight} // 0;
    last if $seen >= 1;
    sleep 0.02;
}
ok t_cmp($seen, 1, 'the slow aggregation is in flight');
waitpid $pid, 0;
my $after;
for (1 .. 50) {
    $after = auto()->{BFFAggregationsInFlight};
    last if defined $after && $after == 0;
    sleep 0.05;
}
ok t_cmp($after, 0, 'and no longer once answered');

# open a breaker: two failures of the backend on the closed port
bff_get('/t/stbrk/1') for 1 .. 2;
my $key = "http://127.0.0.1:$ENV{BFF_T_CLOSED_PORT} /t/stbrk/{id:int} gone";
$s = auto();
my ($i) = grep { ($s->{"BFFBackend[$_]Name"} // '') eq $key } 0 .. ($s->{BFFBackends} // 0) - 1;
ok defined $i, "the breaker key '$key' is listed";
$i //= -1;
ok t_cmp($s->{"BFFBackend[$i]Breaker"}, 'open', 'its breaker is open');
ok t_cmp($s->{"BFFBackend[$i]Last"}, 'connect error', 'its last call failed to connect');
ok t_cmp($s->{"BFFBackend[$i]InFlight"}, 0);
my ($u) = grep { ($s->{"BFFBackend[$_]Name"} // '') eq "$ENV{BFF_T_USER_URL} /t/stbrk/{id:int} user" }
    0 .. $s->{BFFBackends} - 1;
ok defined $u && $s->{"BFFBackend[$u]Breaker"} eq 'closed', 'the user backend: closed';

# the HTML page
my $html = bff_get('/t/server-status')->content;
like $html, qr{<h2>mod_bff</h2>}, 'HTML: a mod_bff section';
like $html, qr{<dt>Version: \Q$version\E; features: [^<]*curl}, 'HTML: version and features';
like $html, qr{<dt>Cache store: redis, up; fallback shmcb</dt>}, 'HTML: cache store';
like $html, qr{<dt>Rate-limit store: redis, up }, 'HTML: rate-limit store';
like $html, qr{<tr><td>\Q$key\E</td><td>open</td>}, 'HTML: the open breaker in the table';

# bff_build_info
my $m = bff_get('/t/metrics')->content;
my ($info) = $m =~ /^bff_build_info\{([^}]*)\} 1$/m;
ok t_cmp($info, qr/^version="\Q$version\E",features="[^"]*"$/, 'bff_build_info labels');
like $info // '', qr/features="[^"]*\bcurl\b/, 'bff_build_info names curl';
