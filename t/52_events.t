# Analytics events (BFFEventsRedis): one "request" event per aggregated
# request and one "backend_error" event per failed backend, in a Redis
# stream, sent by a background thread per child; a stopped or a silent
# Redis neither slows nor fails a request.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFConfTest;
use IO::Socket::INET;
use JSON::PP ();
use BFFTest;
use BFFJWT qw(jwt keydir);

plan tests => 58, need_servers('redis-server');

my $U = $ENV{BFF_T_USER_URL};
my $O = $ENV{BFF_T_ORDER_URL};
my $stream = "bfft:events:$$";
my $endpoints = <<"CONF";
<BFFEndpoint GET /agg/{id:int}>
    BFFBackend user   GET $U/users/{id} required
    BFFBackend orders GET $O/orders/user/{id} default=[]
</BFFEndpoint>
<BFFEndpoint GET /fail/{id:int}>
    BFFBackend user   GET $U/users/{id} required
    BFFBackend orders GET $O/orders/user/{id}?status=503 default=[]
</BFFEndpoint>
CONF

sub errlog { my $h = shift; open my $fh, '<', "$h->{dir}/error.log" or return ''; local $/; <$fh> // '' }
# the error log once it matches re (children write their last lines as
# they exit; a loaded machine is slow at it), or as it is after 10 s
sub errlog_when {
    my ($h, $re) = @_;
    my $log = '';
    for (1 .. 100) {
        $log = errlog($h);
        last if $log =~ $re;
        Time::HiRes::sleep(0.1);
    }
    return $log;
}

# stream entries as hashes, oldest first (redis-cli prints one value per line)
sub entries {
    my ($count) = @_;
    my $out = redis_cli('XRANGE', $stream, '-', '+');
    my @l = split /\n/, $out;
    my (@e, $cur);
    while (@l) {
        my $x = shift @l;
        if ($x =~ /^\d+-\d+$/) { push @e, $cur = {}; next }
        my $v = shift @l;
        $cur->{$x} = $v if $cur;
    }
    return @e;
}

sub wait_entries {
    my ($pred, $secs) = @_;
    my $until = now() + ($secs // 10);
    my @e;
    while (now() < $until) {
        @e = grep { $pred->($_) } entries();
        return @e if @e;
        Time::HiRes::sleep(0.05);
    }
    return @e;
}

redis_cli('DEL', $stream);
my $keys = keydir();
my $h = start_httpd('events', <<"CONF");
LoadModule authn_core_module "$ENV{BFF_T_LIBEXECDIR}/mod_authn_core.so"
LoadModule authz_user_module "$ENV{BFF_T_LIBEXECDIR}/mod_authz_user.so"
BFFEventsRedis $ENV{BFF_T_REDIS_URL} stream=$stream maxlen=1000 connect-timeout=100ms timeout=200ms
BFFJWTKeyFile "$keys/rsa.pub"
BFFJWTAlgorithms RS256
$endpoints
<BFFEndpoint GET /jwt/{id:int}>
    BFFBackend user GET $U/users/{id} required
</BFFEndpoint>
<Location /jwt/>
    AuthType bff-jwt
    AuthName events
    Require valid-user
</Location>
CONF

# --- a request event ----------------------------------------------------
my $res = http_get($h->{port}, '/agg/1', 'X-Request-ID' => 'ev-1',
    traceparent => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
ok t_cmp($res->code, 200);
my ($e) = wait_entries(sub { ($_[0]{request_id} // '') eq 'ev-1' });
ok $e, 'event in the stream';
ok t_cmp($e->{type}, 'request');
ok t_cmp($e->{endpoint}, '/agg/{id:int}');
ok t_cmp($e->{method}, 'GET');
ok t_cmp($e->{path}, '/agg/1');
ok t_cmp($e->{status}, 200);
ok t_cmp($e->{completed}, 'true');
ok t_cmp($e->{errors}, 0);
ok t_cmp($e->{trace_id}, '4bf92f3577b34da6a3ce929d0e0e4736');
ok t_cmp($e->{bytes}, length $res->content);
ok $e->{duration_ms} =~ /^\d+\.\d{3}$/ && $e->{duration_ms} > 0, "duration_ms $e->{duration_ms}";
ok $e->{aggregation_ms} > 0 && $e->{aggregation_ms} <= $e->{duration_ms}, 'aggregation_ms';
ok abs($e->{ts} / 1000 - time) < 60, 'ts in ms since the epoch';
my $b = decode($e->{backends} // '');
ok $b && t_cmp(join(',', sort keys %$b), 'orders,user'), 'backends as JSON';
ok $b && $b->{user}{outcome} eq 'ok' && $b->{user}{ms} > 0;
ok !exists $e->{subject}, 'anonymous: no subject field';

# --- errors: the request event and a backend_error event ------------------
$res = http_get($h->{port}, '/fail/2', 'X-Request-ID' => 'ev-2');
ok t_cmp($res->header('X-BFF-Completed'), 'false');
my @ev = wait_entries(sub { ($_[0]{request_id} // '') eq 'ev-2' && $_[0]{type} eq 'backend_error' });
ok t_cmp(scalar @ev, 1, 'one backend_error event');
ok t_cmp($ev[0]{backend}, 'orders');
ok t_cmp($ev[0]{reason}, 'HTTP 503');
ok t_cmp($ev[0]{backend_status}, 503);
ok t_cmp($ev[0]{required}, 'false');
ok t_cmp($ev[0]{endpoint}, '/fail/{id:int}');
($e) = grep { $_->{request_id} eq 'ev-2' && $_->{type} eq 'request' } entries();
ok t_cmp($e->{completed}, 'false');
ok t_cmp($e->{errors}, 1);

# requests to an endpoint that the access phase refuses are events too,
# with the class of failure; an accepted one carries the subject
http_get($h->{port}, '/jwt/1', 'X-Request-ID' => 'ev-401',
         Authorization => 'Bearer ' . jwt(alg => 'RS256', kid => undef,
                                          claims => { sub => 'bob', exp => time - 100 }));
($e) = wait_entries(sub { ($_[0]{request_id} // '') eq 'ev-401' });
ok t_cmp($e->{status}, 401, 'refused request published');
ok t_cmp($e->{endpoint}, '/jwt/{id:int}');
ok t_cmp($e->{auth_error}, 'expired', 'with the failure class');
ok !exists $e->{backends}, 'no backend called';
http_get($h->{port}, '/jwt/1', 'X-Request-ID' => 'ev-jwt',
         Authorization => 'Bearer ' . jwt(alg => 'RS256', kid => undef));
($e) = wait_entries(sub { ($_[0]{request_id} // '') eq 'ev-jwt' });
ok t_cmp($e->{status}, 200);
ok t_cmp($e->{subject}, 'alice', 'the subject of the token');
ok !exists $e->{auth_error};

# only requests routed to endpoints publish
http_get($h->{port}, '/not/an/endpoint', 'X-Request-ID' => 'ev-404');
http_get($h->{port}, '/agg/1', 'X-Request-ID' => 'ev-after-404');
wait_entries(sub { ($_[0]{request_id} // '') eq 'ev-after-404' });
ok !grep({ $_->{request_id} eq 'ev-404' } entries()), 'no event for other requests';

# --- the stream is capped (MAXLEN ~) --------------------------------------
redis_cli('DEL', $stream);
my $h2 = start_httpd('events_cap', <<"CONF");
BFFEventsRedis $ENV{BFF_T_REDIS_URL} stream=$stream maxlen=10 batch=20
$endpoints
CONF
http_get($h2->{port}, '/agg/1') for 1 .. 250;
my $added = 0;
for (1 .. 100) {
    ($added) = redis_cli('XINFO', 'STREAM', $stream) =~ /^entries-added\n(\d+)$/m;
    last if ($added // 0) >= 250;
    Time::HiRes::sleep(0.05);
}
ok t_cmp($added, 250, 'every event published');
my $len = redis_cli('XLEN', $stream);
ok $len >= 10 && $len < 250, "trimmed to about maxlen ($len entries)";
stop_httpd($h2);

# --- Redis stopped: answers as fast, nothing fails, logged once -----------
sub timed_requests {
    my ($port, $n, $path) = @_;
    my ($worst, $fails) = (0, 0);
    for (1 .. $n) {
        my $t0 = now();
        my $r = http_get($port, $path);
        my $dt = now() - $t0;
        $worst = $dt if $dt > $worst;
        $fails++ unless $r->code == 200;
    }
    return ($worst, $fails);
}

my ($base) = timed_requests($h->{port}, 20, '/agg/1');
redis_stop();
my ($worst, $fails) = timed_requests($h->{port}, 40, '/agg/1');
ok t_cmp($fails, 0, 'Redis down: no request fails');
# generous for a loaded machine; a request that waited for Redis would
# take at least the 3 s timeouts of the silent case below
ok $worst < 1.5, sprintf('Redis down: slowest answer %.3fs (before: %.3fs)', $worst, $base);
# one line per child process for the whole outage, not one per event
sub per_pid {
    my ($log, $tag) = @_;
    my %n;
    $n{$1}++ while $log =~ /\[pid (\d+):[^\n]*$tag/g;
    return \%n;
}
my $down = per_pid(errlog($h), 'BFF352: analytics events: cannot publish');
ok scalar(keys %$down) >= 1, 'the outage is logged';
ok !grep({ $_ != 1 } values %$down), 'once per child for 40 events: ' . join(',', values %$down);
redis_start();
# publishing resumes without a restart (after the backoff)
my $ok = 0;
for (1 .. 60) {
    http_get($h->{port}, '/agg/1', 'X-Request-ID' => "ev-back-$_");
    if (grep { ($_->{request_id} // '') =~ /^ev-back-/ } entries()) { $ok = 1; last }
    Time::HiRes::sleep(0.2);
}
ok $ok, 'events flow again once Redis is back';
Time::HiRes::sleep(0.3);
like errlog($h), qr/BFF353: analytics events: publishing to stream \Q$stream\E again \(\d+ events lost/,
     'recovery logged with the count of lost events';

# child exit joins the publisher and reports its counts
my $t0 = now();
stop_httpd($h);
ok now() - $t0 < 10, 'stops promptly';
# Known: under the ASan runtime (SANITIZE=1, libasan preloaded) the
# children of these instances end without this line (killed by the parent
# after its shutdown timeout, cause not found yet); fine in normal builds.
my $asan = ($ENV{LD_PRELOAD} // '') =~ /asan/;
TODO: {
    local $TODO = $asan ? 'child exit line missing under ASan (see note above)' : undef;
like errlog_when($h, qr/BFF355/), qr/BFF355: analytics events: publisher stopped: \d+ published, \d+ lost/,
     'the publisher thread ended with its child';
}

# --- a silent Redis (accepts, never answers) and a tiny queue --------------
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 128, ReuseAddr => 1) or die $!;
my $sport = $silent->sockport;
my $h3 = start_httpd('events_silent', <<"CONF");
BFFEventsRedis redis://127.0.0.1:$sport stream=$stream queue=5 connect-timeout=3s timeout=3s
$endpoints
CONF
($worst, $fails) = timed_requests($h3->{port}, 40, '/agg/1');
ok t_cmp($fails, 0, 'silent Redis: no request fails');
ok $worst < 1.5, sprintf('silent Redis (3 s timeouts): slowest answer %.3fs', $worst);
# the thread is stuck in its first 3 s connect: the queue of 5 overflows
my $log = '';
for (1 .. 100) {
    $log = errlog($h3);
    last if $log =~ /BFF354/ && $log =~ /BFF352/;
    Time::HiRes::sleep(0.1);
}
like $log, qr/BFF354: analytics events: queue full \(5\): \d+ events dropped/, 'drops counted and logged';
like $log, qr/BFF352: .*timeout/, 'the silent Redis logged as a timeout';
ok !grep({ $_ != 1 } values %{ per_pid($log, 'BFF354') }),
   'queue-full logged at most every 10 s per child, not per event';
$t0 = now();
stop_httpd($h3);
ok now() - $t0 < 15, sprintf('a child stuck on a silent Redis still exits (%.1fs)', now() - $t0);
TODO: {
    local $TODO = $asan ? 'child exit line missing under ASan (see note above)' : undef;
like errlog_when($h3, qr/BFF355/), qr/BFF355: .*[1-9]\d* dropped \(queue full\)/, 'final count of drops';
}
close $silent;

# --- configuration errors -------------------------------------------------
for my $c (['BFFEventsRedis http://x', qr/BFFEventsRedis: .*redis/i],
           ['BFFEventsRedis redis://127.0.0.1 maxlen=0', qr/maxlen=0: expected a number from 1 to 1000000000/],
           ['BFFEventsRedis redis://127.0.0.1 queue=x', qr/queue=x/],
           ['BFFEventsRedis redis://127.0.0.1 colour=red', qr/unknown option/],
           ['BFFEventsRedis redis://127.0.0.1 timeout=0', qr/timeout=0: must be greater than 0/],
           ["<VirtualHost 127.0.0.1:1>\nBFFEventsRedis redis://127.0.0.1\n</VirtualHost>",
            qr/cannot occur within <VirtualHost>/]) {
    my ($rc, $out) = configtest($c->[0]);
    ok $rc != 0 && $out =~ $c->[1], "refused: $c->[0]" or diag $out;
}
my ($rc, $out) = configtest("BFFEventsRedis redis://127.0.0.1:6379/2 stream=a:b maxlen=5 queue=9 batch=3 connect-timeout=50ms timeout=1s\nBFFRequestID Off");
ok t_cmp($rc, 0, 'a full line is accepted') or diag $out;
