# The docker/ dashboard and alert rules against the real metrics: a
# Prometheus (Debian's, the version of the compose file) scrapes the
# suite's server while requests run, then every query of
# docker/grafana/dashboards/mod_bff.json and every rule of
# docker/prometheus/alerts.yml is evaluated. The queries must be valid
# PromQL over the series bff-metrics really serves; the panels listed in %need
# must show data.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use JSON::PP ();
use LWP::UserAgent ();
use POSIX ();
use URI::Escape qw(uri_escape);
use BFFServices ();
use BFFTest;

my $prom_bin = `sh -c 'command -v prometheus' 2>/dev/null`;
chomp $prom_bin;
plan skip_all => 'prometheus not installed (scripts/deps.sh installs it)' unless $prom_bin;

my $dash = do {
    open my $fh, '<', "$ENV{BFF_TOP}/docker/grafana/dashboards/mod_bff.json" or die $!;
    local $/;
    JSON::PP->new->decode(<$fh>);
};
my @queries = map { my $p = $_; map { [ $p->{title}, $_->{expr} ] } @{ $p->{targets} } }
              @{ $dash->{panels} };
my %need = map { $_ => 1 } ('Request rate by endpoint', 'Answers by status', 'Latency percentiles',
                            'Aggregation p95 by endpoint', 'Cache hit ratio', 'Cache lookups',
                            'Backend errors', 'Backend calls by outcome', 'Backend latency p95',
                            'Active requests', 'Redis');
plan tests => @queries + scalar(grep { $need{ $_->[0] } } @queries) + 8;

my $cfg = Apache::Test::config();
my $target = "127.0.0.1:$cfg->{vars}{port}";
my $dir = Apache::Test::vars('t_logs') . '/prometheus';
remove_tree($dir);
make_path("$dir/data");
my $port = BFFServices::free_port();
open my $fh, '>', "$dir/prometheus.yml" or die $!;
print $fh <<"YML";
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ENV{BFF_TOP}/docker/prometheus/alerts.yml
scrape_configs:
  - job_name: mod_bff
    metrics_path: /t/metrics
    static_configs:
      - targets: ["$target"]
YML
close $fh;

my $pid = fork // die "fork: $!";
if (!$pid) {
    POSIX::setsid();
    open STDOUT, '>', "$dir/prometheus.out";
    open STDERR, '>&', \*STDOUT;
    { no warnings 'exec';
      exec $prom_bin, "--config.file=$dir/prometheus.yml", "--storage.tsdb.path=$dir/data",
          "--web.listen-address=127.0.0.1:$port", '--log.level=warn'; }
    POSIX::_exit(127);
}
END { if ($pid) { kill 'TERM', $pid; waitpid $pid, 0 } }

my $ua = LWP::UserAgent->new(timeout => 10);
sub api {
    my $res = $ua->get("http://127.0.0.1:$port/api/v1/$_[0]");
    return decode($res->content) // { status => 'error', error => $res->status_line };
}
sub query { api('query?query=' . uri_escape($_[0])) }

my $up = 0;
for (1 .. 200) {
    my $r = query('up{job="mod_bff"}');
    if (($r->{status} // '') eq 'success' && @{ $r->{data}{result} }) {
        $up = $r->{data}{result}[0]{value}[1];
        last if $up;
    }
    Time::HiRes::sleep(0.1);
}
ok t_cmp($up, 1, 'Prometheus scrapes the suite\'s bff-metrics location');

# traffic over several scrapes: answers, a failing backend, cache hits
redis_cli('FLUSHALL');
for my $round (1 .. 6) {
    bff_get('/api/profile/1');
    bff_get('/api/profile/2');
    bff_get('/t/optstatus/503/1');
    bff_get("/t/cached-strict/$_") for 1 .. 3;
    Time::HiRes::sleep(0.5);
}
my $samples = 0;
for (1 .. 100) {
    my $r = query('count_over_time(bff_http_requests_total{endpoint="/api/profile/{user_id:int}"}[1m])');
    $samples = @{ $r->{data}{result} // [] } ? $r->{data}{result}[0]{value}[1] : 0;
    last if $samples >= 5;
    Time::HiRes::sleep(0.2);
}
ok $samples >= 5, "$samples scrapes with traffic";

# as Grafana sends them: its variables replaced
for my $q (@queries) {
    my ($title, $expr) = @$q;
    (my $e = $expr) =~ s/\$__rate_interval/30s/g;
    $e =~ s/\$endpoint/.*/g;
    my $r = query($e);
    ok t_cmp($r->{status}, 'success', "valid PromQL: $title") or diag($r->{error} // '', " in $e");
    my @res = @{ $r->{data}{result} // [] };
    my @finite = grep { $_->{value}[1] !~ /NaN|Inf/ } @res;
    # (breaker series exist once breakers do; refusals once the
    # access phase refused something: only their syntax is checked)
    ok scalar(@finite) > 0, "$title shows data (" . scalar(@res) . " series)" if $need{$title};
}

# a few values that must agree with the traffic
my $r = query('sum(rate(bff_cache_hits_total[30s])) / clamp_min(sum(rate(bff_cache_hits_total[30s])) + sum(rate(bff_cache_misses_total[30s])), 1e-9)');
my $ratio = $r->{data}{result}[0]{value}[1] // -1;
ok $ratio > 0.5 && $ratio <= 1, "cache hit ratio $ratio (3 misses, then hits)";
$r = query('sum by (backend, reason) (rate(bff_service_errors_total[30s]))');
ok scalar(grep { ($_->{metric}{backend} // '') eq 'orders' && ($_->{metric}{reason} // '') eq 'http_5xx' }
          @{ $r->{data}{result} }), 'backend errors: orders, http_5xx';
$r = query('histogram_quantile(0.95, sum by (le) (rate(bff_http_request_duration_seconds_bucket[30s])))');
my $p95 = $r->{data}{result}[0]{value}[1] // -1;
ok $p95 > 0 && $p95 < 5, "p95 latency $p95 s";

# the alert rules load and evaluate without errors
my $rules;
for (1 .. 50) {
    $rules = api('rules');
    last if grep { ($_->{lastEvaluation} // '') !~ /^0001/ }
            map { @{ $_->{rules} } } @{ $rules->{data}{groups} // [] };
    Time::HiRes::sleep(0.2);
}
my @rules = map { @{ $_->{rules} } } @{ $rules->{data}{groups} // [] };
ok t_cmp(scalar @rules, 5, 'the five alert rules are loaded');
ok !grep({ ($_->{health} // '') ne 'ok' } @rules), 'and evaluate: '
   . join(', ', map { "$_->{name}=" . ($_->{health} // '?') . ($_->{lastError} ? " ($_->{lastError})" : '') } @rules);
my @firing = grep { ($_->{state} // '') eq 'firing' } @rules;
ok t_cmp(scalar @firing, 0, 'none fires on a healthy server');
