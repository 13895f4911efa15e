# Prometheus metrics (SetHandler bff-metrics): `promtool check metrics`
# accepts the output; counts match the requests made, exactly, on the
# suite's server (deltas on an endpoint only this file calls) and on an
# instance of its own with several child processes (values summed over
# them); histogram buckets are cumulative with +Inf == _count; labels are
# endpoint patterns / Location paths, never raw URLs; the active gauge,
# access phase refusals, cache counters and Redis pools; and a graceful
# restart (with a changed configuration) keeps every counter.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Temp qw(tempfile);
use POSIX ();
use Time::HiRes qw(sleep);
use BFFTest;
use BFFJWT;

plan tests => 93, need_servers('redis-server');

my $promtool = "promtool";

# ------------------------------------------------------------ helpers --

sub scrape_port {
    my $port = shift;
    my $res = $port ? http_get($port, '/metrics') : bff_get('/t/metrics');
    die 'scrape: ' . $res->status_line unless $res->code == 200;
    return $res->content;
}

# name{labels} => value
sub parse {
    my %m;
    for (split /\n/, shift) {
        next if /^#/ || !/\S/;
        /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/ or die "bad line: $_";
        $m{$1} = $2;
    }
    return \%m;
}

# the key of a series; labels in the order the module writes them
sub k {
    my ($name, @l) = @_;
    return $name unless @l;
    my @p;
    while (my ($n, $v) = splice @l, 0, 2) {
        $v =~ s/(["\\])/\\$1/g;
        push @p, qq{$n="$v"};
    }
    return "$name\{" . join(',', @p) . '}';
}

sub v { my ($m, @k) = @_; $m->{ k(@k) } // 0 }
# the label sets of a scrape, one string each: a pattern matched against
# them cannot match a sample's value (a duration sum may hold any digits)
sub labels { my @l = $_[0] =~ /^[a-z_]+\{(.*)\}[ \t]+\S+[ \t]*$/mg; @l }

sub promtool_ok {
    my ($text, $name) = @_;
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh $text;
    close $fh;
    my $out = `'$promtool' check metrics < '$file' 2>&1`;
    is $? >> 8, 0, "promtool check metrics: $name" or diag $out;
}

# Every histogram series: buckets in le order, cumulative, +Inf last and
# equal to _count; the number of series checked.
sub histograms_ok {
    my $text = shift;
    my (%b, %count, $bad);
    for (split /\n/, $text) {
        if (/^(\w+)_bucket\{(.*?),?le="([^"]+)"\} (\d+)$/) {
            push @{ $b{"$1|$2"} }, [ $3, $4 ];
        }
        elsif (/^(\w+)_count(?:\{(.*)\})? (\d+)$/) {
            $count{ "$1|" . ($2 // '') } = $3;
        }
    }
    for my $s (keys %b) {
        my @l = @{ $b{$s} };
        for my $i (1 .. $#l) {
            $bad .= "$s: not cumulative at $l[$i][0]\n" if $l[$i][1] < $l[$i - 1][1];
            $bad .= "$s: le not increasing\n" if $l[$i][0] ne '+Inf' && $l[$i][0] <= $l[$i - 1][0];
        }
        $bad .= "$s: last bucket not +Inf\n" unless $l[-1][0] eq '+Inf';
        $bad .= "$s: +Inf $l[-1][1] != count " . ($count{$s} // 'none') . "\n"
            unless defined $count{$s} && $count{$s} == $l[-1][1];
    }
    diag $bad if $bad;
    return $bad ? -1 : scalar keys %b;
}

# ------------------------------------------- the suite's own server --

{
    my $res = bff_get('/t/metrics');
    ok t_cmp($res->code, 200, 'the scrape answers');
    like $res->header('Content-Type'), qr{^text/plain; version=0\.0\.4}, 'exposition format 0.0.4';
    ok t_cmp(bff_req(POST => '/t/metrics')->code, 405, 'POST refused');
    promtool_ok($res->content, 'the suite server after the other tests');
    ok histograms_ok($res->content) > 0, 'its histograms are consistent';

    my $ep = '/t/metered/{id:int}';
    my $before = parse(scrape_port());
    bff_get("/t/metered/$_") for 1, 2, 3;
    bff_get('/t/metered/abc');                      # 400: route matched, bad parameter
    bff_req(DELETE => '/t/metered/1');              # 405
    my $after = parse(scrape_port());
    my $d = sub { v($after, @_) - v($before, @_) };
    ok t_cmp($d->('bff_http_requests_total', endpoint => $ep, method => 'GET', status => 200), 3,
             '3 answers 200 counted');
    ok t_cmp($d->('bff_http_requests_total', endpoint => $ep, method => 'GET', status => 400), 1,
             'a bad parameter: 400 under the endpoint pattern');
    ok t_cmp($d->('bff_http_requests_total', endpoint => $ep, method => 'DELETE', status => 405), 1,
             'a wrong method: 405 under the endpoint pattern');
    ok t_cmp($d->('bff_http_request_duration_seconds_count', endpoint => $ep), 5, 'durations: 5');
    ok t_cmp($d->('bff_aggregation_duration_seconds_count', endpoint => $ep), 3, '3 engine runs');
    ok t_cmp($d->('bff_backend_requests_total', backend => 'metered_user', outcome => 'ok'), 3,
             'backend calls ok');
    ok t_cmp($d->('bff_backend_requests_total', backend => 'metered_orders', outcome => 'error'), 3,
             'backend calls failed');
    ok t_cmp($d->('bff_service_errors_total', backend => 'metered_orders', reason => 'http_5xx'), 3,
             'service errors by reason');
    ok t_cmp($d->('bff_backend_request_duration_seconds_count', backend => 'metered_orders'), 3,
             'backend durations');
    ok !grep(m{/t/metered/(?:\d|abc)}, labels(scrape_port())), 'no raw URL in any label';
}

# --------------------------------------- an instance with 3 children --

my $keys = keydir();
my $U = svc_url('user');
my $O = svc_url('order');
my $P = svc_url('product');
my $libexec = $ENV{BFF_T_LIBEXECDIR};
my $tag = "m$$";                 # Redis keys of this run only
my $redis = $ENV{BFF_T_REDIS_URL};

sub conf {
    my $extra = shift // '';
    return <<"CONF";
LoadModule proxy_module "$libexec/mod_proxy.so"
LoadModule proxy_http_module "$libexec/mod_proxy_http.so"
LoadModule authn_core_module "$libexec/mod_authn_core.so"
LoadModule authz_user_module "$libexec/mod_authz_user.so"
# three children of two threads each, all kept
StartServers 3
ServerLimit 3
ThreadsPerChild 2
MaxRequestWorkers 6
MinSpareThreads 1
MaxSpareThreads 6
# 4 clients at once on 6 workers: above the default caps of one endpoint
# and one backend (three quarters of the 5 left for aggregations)
BFFMaxInFlight endpoint=6 backend=6
CustomLog "pids.log" "%P %>s %U"
BFFJWTKeyFile "$keys/rsa.pub"
BFFJWTAlgorithms RS256
BFFCacheStore $redis
BFFCachePrefix "$tag:"
BFFRateLimitRedis $redis connect-timeout=200ms timeout=250ms
<Location /metrics>
    SetHandler bff-metrics
</Location>
<BFFEndpoint GET /m/agg/{id:int}>
    BFFBackend m_user   GET $U/users/{id}?delay_ms=50 required
    BFFBackend m_orders GET $O/orders/user/{id}
</BFFEndpoint>
<BFFEndpoint GET /m/slow/{id:int}>
    BFFBackend m_slow GET $U/users/{id}?delay_ms=1500 required
</BFFEndpoint>
<BFFEndpoint GET /m/timeout/{id:int}>
    BFFBackend m_user2 GET $U/users/{id} required
    BFFBackend m_late  GET $O/orders/user/{id}?delay_ms=2000 timeout=150ms
</BFFEndpoint>
<BFFEndpoint GET /m/dep/{id:int}>
    BFFBackend m_dep_user   GET $U/users/{id}?status=500 required
    BFFBackend m_dep_orders GET $O/orders/user/{m_dep_user.id}
</BFFEndpoint>
<BFFEndpoint GET /m/items/{id:int}>
    BFFBackend m_it_orders   GET $O/orders/user/{id} required
    BFFBackend m_it_products GET $P/products/{m_it_orders[].product_id} per-item
</BFFEndpoint>
<BFFEndpoint GET /m/brk/{id:int}>
    BFFBackend m_brk_user GET $U/users/{id} required
    BFFBackend m_brk      GET $O/orders/user/{id}?status=503
    BFFBreaker on consecutive=2 open=30s scope=backend
</BFFEndpoint>
<BFFEndpoint GET /m/retry/{id:int}>
    BFFBackend m_retry GET $O/orders/user/{id}?status=503
    BFFRetry attempts=3 backoff=10ms max-backoff=20ms
</BFFEndpoint>
<BFFEndpoint GET /m/cached/{id:int}>
    BFFBackend m_cached GET $U/users/{id} required
    BFFCacheTTL 30s
</BFFEndpoint>
ProxyPass /m/proxy/ $U/
<Location /m/proxy/>
    Require all granted
</Location>
<Location /m/auth/>
    AuthType bff-jwt
    Require valid-user
</Location>
<Location /m/scope/>
    AuthType bff-jwt
    AuthzSendForbiddenOnFailure On
    Require bff-scope admin:all
</Location>
ProxyPassMatch "^/m/(?:auth|scope|rl)/(.*)\$" "$U/\$1"
<Location /m/rl/>
    BFFRateLimit $tag 2/1m
</Location>
$extra
CONF
}

unlink Apache::Test::vars('t_logs') . '/metrics/pids.log';
my $h = start_httpd('metrics', conf());
my $port = $h->{port};
for (1 .. 100) { last if -s "$h->{dir}/httpd.pid"; sleep 0.05 }
open my $pf, '<', "$h->{dir}/httpd.pid" or die "no pid file: $!";
chomp(my $ppid = <$pf>);
close $pf;

my $m0 = parse(scrape_port($port));
ok t_cmp(v($m0, 'bff_http_requests_total', endpoint => '/m/agg/{id:int}', method => 'GET',
           status => 200), 0, 'a new instance starts from zero');

# 4 clients in parallel, 10 requests each: more than one child serves them
my @kids;
for my $c (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $ok = 0;
        for my $i (1 .. 10) {
            $ok++ if http_get($port, "/m/agg/" . (($c + $i) % 5 + 1))->code == 200;
        }
        POSIX::_exit($ok == 10 ? 0 : 1);
    }
    push @kids, $pid;
}
my $failed = 0;
for (@kids) { waitpid $_, 0; $failed++ if $? }
ok t_cmp($failed, 0, '40 aggregated requests answered 200');

my $text = scrape_port($port);
my $m = parse($text);
my %pids;
{
    open my $lf, '<', "$h->{dir}/pids.log" or die "pids.log: $!";
    while (<$lf>) { $pids{$1} = 1 if m{^(\d+) 200 /m/agg/} }
}
ok keys(%pids) >= 2, 'served by ' . keys(%pids) . ' child processes';
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => '/m/agg/{id:int}', method => 'GET',
           status => 200), 40, 'summed over the children: 40');
ok t_cmp(v($m, 'bff_http_request_duration_seconds_count', endpoint => '/m/agg/{id:int}'), 40,
         'request histogram count 40');
ok t_cmp(v($m, 'bff_http_request_duration_seconds_bucket', endpoint => '/m/agg/{id:int}', le => '+Inf'),
         40, '+Inf bucket 40');
ok t_cmp(v($m, 'bff_http_request_duration_seconds_bucket', endpoint => '/m/agg/{id:int}', le => '0.05'),
         0, 'none faster than the 50 ms the backend waits');
ok t_cmp(v($m, 'bff_aggregation_duration_seconds_count', endpoint => '/m/agg/{id:int}'), 40,
         'aggregation histogram count 40');
ok v($m, 'bff_aggregation_duration_seconds_sum', endpoint => '/m/agg/{id:int}') >= 40 * 0.05,
   'aggregation time sum at least 40 x 50 ms';
ok t_cmp(v($m, 'bff_backend_requests_total', backend => 'm_user', outcome => 'ok'), 40, 'm_user calls');
ok t_cmp(v($m, 'bff_backend_requests_total', backend => 'm_orders', outcome => 'ok'), 40, 'm_orders calls');
ok t_cmp(v($m, 'bff_backend_request_duration_seconds_bucket', backend => 'm_user', le => '0.025'), 0,
         'm_user: no call under 25 ms');
ok t_cmp(v($m, 'bff_backend_request_duration_seconds_count', backend => 'm_user'), 40, 'm_user durations');
ok histograms_ok($text) >= 4, 'histograms consistent';

# failures, other routes, methods
my @codes = map { http_get($port, "/m/timeout/$_")->code } 1, 2;
ok t_cmp("@codes", '200 200', 'a late optional backend: partial answers');
ok t_cmp(http_get($port, '/m/dep/1')->code, 502, 'a required backend fails');
ok t_cmp(http_get($port, '/m/proxy/users/1')->code, 200, 'a ProxyPass route');
http_get($port, '/m/proxy/users/2');
ok t_cmp(http_get($port, '/nowhere/4711')->code, 404, 'no route: 404');
BFFTest::bff_req_port($port, 'POST', '/m/agg/1');
$text = scrape_port($port);
$m = parse($text);
ok t_cmp(v($m, 'bff_service_errors_total', backend => 'm_late', reason => 'timeout'), 2, 'timeouts by backend');
ok t_cmp(v($m, 'bff_backend_requests_total', backend => 'm_late', outcome => 'error'), 2, 'failed calls');
ok t_cmp(v($m, 'bff_service_errors_total', backend => 'm_dep_user', reason => 'http_5xx'), 1,
         'the required backend\'s error');
ok !grep(/m_dep_orders/, keys %$m), 'a backend never called (its dependency failed): no series';
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => '/m/proxy/', method => 'GET', status => 200), 2,
         'a ProxyPass route: its <Location> path');
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => 'other', method => 'GET', status => 404), 1,
         'no Location: "other"');
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => '/m/agg/{id:int}', method => 'POST', status => 405), 1,
         'method label');
ok !grep(m{4711|/m/proxy/users|/m/agg/\d}, labels($text)), 'no raw URL in any label';
ok scalar(labels($text)) > 20, 'the scrape has labelled series';
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => '/metrics', method => 'GET', status => 200), 2,
         'the scrapes count too (under their Location)');

# per-item calls: one per distinct product; a circuit breaker opening
my %pids_of = map { ($_->{product_id} => 1) } @{ orders_of(1) };
ok t_cmp(http_get($port, '/m/items/1')->code, 200, 'per-item fan-out');
@codes = map { http_get($port, '/m/brk/1')->header('X-BFF-Completed') } 1 .. 3;
ok t_cmp("@codes", 'false false false', 'a failing optional backend, 3 times');
$m = parse(scrape_port($port));
ok t_cmp(v($m, 'bff_backend_requests_total', backend => 'm_it_products', outcome => 'ok'),
         scalar(keys %pids_of), 'per-item: each item a call (' . keys(%pids_of) . ')');
ok t_cmp(v($m, 'bff_backend_requests_total', backend => 'm_brk', outcome => 'error'), 2,
         'two calls failed, then the breaker opened');
ok t_cmp(v($m, 'bff_service_errors_total', backend => 'm_brk', reason => 'http_5xx'), 2, '503s');
ok t_cmp(v($m, 'bff_service_errors_total', backend => 'm_brk', reason => 'circuit_open'), 1,
         'the third refused: circuit_open, no call');
my $m_before_retry = $m;
ok t_cmp(http_get($port, '/m/retry/1')->header('X-BFF-Completed'), 'false', 'retried, then failed');
$m = parse(scrape_port($port));
sub family_sum {
    my ($mm, $name) = @_;
    my $sum = 0;
    $sum += $mm->{$_} for grep { /^\Q$name\E\{/ } keys %$mm;
    return $sum;
}
ok t_cmp(family_sum($m, 'bff_backend_retries_total')
         - family_sum($m_before_retry, 'bff_backend_retries_total'), 2,
         'bff_backend_retries_total: 3 attempts are 2 retries');
ok t_cmp(family_sum($m, 'bff_retry_budget_exhausted_total'), 0,
         'bff_retry_budget_exhausted_total: the budget held');
ok t_cmp(v($m, 'bff_backend_requests_total', backend => 'm_retry', outcome => 'error'), 3,
         'retries: 3 attempts, 3 calls');
ok t_cmp(v($m, 'bff_service_errors_total', backend => 'm_retry', reason => 'http_5xx'), 1,
         'one failed backend');
my ($bkey) = grep { m{^bff_breaker_state\{backend=".* /m/brk/\{id:int\} m_brk"\}$} } keys %$m;
ok $bkey, 'a breaker state series, labelled with the breaker key' or diag join "\n", grep /breaker/, keys %$m;
ok t_cmp($bkey ? $m->{$bkey} : -1, 2, 'bff_breaker_state 2: open');
(my $tkey = $bkey // '') =~ s/^bff_breaker_state\{(.*)\}$/bff_breaker_transitions_total{$1,to="open"}/;
ok t_cmp($m->{$tkey} // 0, 1, 'one transition to open');
(my $rkey = $bkey // '') =~ s/^bff_breaker_state\{/bff_breaker_calls_refused_total{/;
ok t_cmp($m->{$rkey} // -1, 1, 'bff_breaker_calls_refused_total: the third call refused');

# the active gauge: the scrape itself, plus a slow request in flight
ok t_cmp(v($m, 'bff_http_active_requests'), 1, 'active: the scrape only');
my $slow = fork // die;
if (!$slow) { http_get($port, '/m/slow/1'); POSIX::_exit(0) }
sleep 0.5;
$m = parse(scrape_port($port));
ok t_cmp(v($m, 'bff_http_active_requests'), 2, 'active: a slow request and the scrape');
waitpid $slow, 0;
$m = parse(scrape_port($port));
ok t_cmp(v($m, 'bff_http_active_requests'), 1, 'active: back to the scrape only');

# the access phase: reasons and limits
my $good = jwt(alg => 'RS256', kid => undef, key => "$keys/rsa.key");
my $expired = jwt(alg => 'RS256', kid => undef, key => "$keys/rsa.key",
                  claims => claims_ok(exp => time - 100));
my $forged = jwt(alg => 'RS256', kid => undef, key => "$keys/rsa-other.key");
@codes = map { http_get($port, '/m/auth/users/1', @$_)->code }
         [], [], [Authorization => "Bearer $expired"], [Authorization => "Bearer $forged"],
         [Authorization => "Bearer $good"];
ok t_cmp("@codes", '401 401 401 401 200', 'missing x2, expired, bad signature, good');
ok t_cmp(http_get($port, '/m/scope/users/1', Authorization => "Bearer $good")->code, 403,
         'a valid token without the scope');
@codes = map { http_get($port, '/m/rl/users/1')->code } 1 .. 3;
ok t_cmp("@codes", '200 200 429', 'a limit of 2');
$m = parse(scrape_port($port));
ok t_cmp(v($m, 'bff_auth_failures_total', reason => 'missing'), 2, 'auth failures: missing');
ok t_cmp(v($m, 'bff_auth_failures_total', reason => 'expired'), 1, 'auth failures: expired');
ok t_cmp(v($m, 'bff_auth_failures_total', reason => 'bad_signature'), 1, 'auth failures: bad_signature');
ok t_cmp(v($m, 'bff_auth_failures_total', reason => 'insufficient_scope'), 1,
         'auth failures: insufficient_scope');
ok t_cmp(v($m, 'bff_ratelimit_rejections_total', limit => $tag), 1, 'rate limit rejections by limit');
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => '/m/auth/', method => 'GET', status => 401), 4,
         'the 401s under their Location');

# cache: one miss, then hits; mod_bff_cache.c's counters as they are
@codes = map { http_get($port, '/m/cached/3')->header('X-Cache-Status') // '-' } 1 .. 3;
ok t_cmp("@codes", 'MISS HIT HIT', 'cache: a miss, then hits');
my $status = http_get($port, '/metrics');    # warm a Redis connection
$m = parse(scrape_port($port));
ok t_cmp(v($m, 'bff_cache_misses_total'), 1, 'cache misses');
ok t_cmp(v($m, 'bff_cache_hits_total'), 2, 'cache hits');
ok t_cmp(v($m, 'bff_cache_stale_total'), 0, 'cache stale');
ok t_cmp(v($m, 'bff_cache_fallback_total'), 0, 'cache fallbacks');
ok t_cmp(v($m, 'bff_redis_up', pool => 'cache'), 1, 'cache Redis up');
ok t_cmp(v($m, 'bff_redis_up', pool => 'ratelimit'), 1, 'rate limit Redis up');
ok v($m, 'bff_redis_pool_connections', pool => 'cache', state => 'idle') >= 1,
   'cache pool: idle connections kept';
ok v($m, 'bff_redis_pool_connections', pool => 'ratelimit', state => 'idle') >= 1,
   'rate limit pool: idle connections kept';
ok t_cmp(v($m, 'bff_redis_pool_connections', pool => 'cache', state => 'busy'), 0, 'none busy');
$text = scrape_port($port);
promtool_ok($text, 'the instance');
ok histograms_ok($text) >= 6, 'histograms consistent';

# ------------------------------------------- graceful restart, new conf --

my $before = parse($text);
sub generations { my $n = () = slurp("$h->{dir}/error.log") =~ /resuming normal operations/g; $n }
# the configuration changes: one more endpoint
{
    my $conf = slurp("$h->{dir}/httpd.conf");
    $conf =~ s{(<Location /metrics>)}{<BFFEndpoint GET /m/new/{id:int}>
    BFFBackend m_new GET $U/users/{id} required
</BFFEndpoint>
$1};
    open my $fh, '>', "$h->{dir}/httpd.conf" or die $!;
    print $fh $conf;
    close $fh;
}
my $gen = generations();
ok kill('USR1', $ppid), 'graceful restart';
my $until = BFFTest::now() + 15;
sleep 0.1 while generations() <= $gen && BFFTest::now() < $until;
ok t_cmp(generations(), $gen + 1, 'a new generation');
my $up;
while (BFFTest::now() < $until) { $up = http_get($port, '/m/new/1')->code == 200 and last; sleep 0.1 }
ok $up, 'the new generation serves the new endpoint';
like slurp("$h->{dir}/error.log"), qr/BFF303: metrics: kept the table/, 'the table was kept';
http_get($port, "/m/agg/$_") for 1, 2;
$m = parse(scrape_port($port));
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => '/m/agg/{id:int}', method => 'GET', status => 200),
         42, 'counters kept across the restart: 40 + 2');
ok t_cmp(v($m, 'bff_http_request_duration_seconds_count', endpoint => '/m/agg/{id:int}'), 43,
         'histogram kept (the 405 included)');
ok t_cmp(v($m, 'bff_backend_requests_total', backend => 'm_user', outcome => 'ok'), 42, 'backend calls kept');
ok t_cmp(v($m, 'bff_auth_failures_total', reason => 'missing'), 2, 'auth failures kept');
ok t_cmp(v($m, 'bff_cache_hits_total'), 2, 'cache counters kept');
ok t_cmp(v($m, 'bff_http_requests_total', endpoint => '/m/new/{id:int}', method => 'GET', status => 200),
         1, 'the new endpoint counted (its first 200)');
my $back = 0;
for my $k (keys %$before) {
    next unless $k =~ /_total\b|_count\b|_bucket\b|_sum\b/;
    $back++, diag("$k: $before->{$k} -> " . ($m->{$k} // 'gone'))
        if ($m->{$k} // -1) < $before->{$k};
}
ok t_cmp($back, 0, 'no counter went backwards');
