# Server-sent events from Redis Streams (SetHandler bff-event-stream):
# an XADD reaches the identity's open stream within 100 ms, framed as
# id:/event:/data:; a reconnect with Last-Event-ID resumes without loss or
# duplicates; alice never sees bob's events; heartbeats; caps per
# identity and per server (503); the stream ends when the token expires,
# when the server restarts gracefully (the client resumes) and when Redis
# fails; mod_deflate with DEFLATE on the location compresses nothing.
# Streams are read on raw sockets, incrementally, with timeouts.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Digest::SHA qw(sha256_hex);
use IO::Select;
use IO::Socket::INET;
use IO::Uncompress::Gunzip qw(gunzip);
use Time::HiRes ();
use BFFTest;
use BFFJWT qw(jwt keydir claims_ok apikey);

plan tests => 73, need_servers('redis-server');

my $P = "bfft$$:";
my $keys = keydir();
my $lib = $ENV{BFF_T_LIBEXECDIR};
my $conf = <<"CONF";
LoadModule authn_core_module "$lib/mod_authn_core.so"
LoadModule authz_user_module "$lib/mod_authz_user.so"
LoadModule deflate_module "$lib/mod_deflate.so"
LoadModule http2_module "$lib/mod_http2.so"
Protocols h2c http/1.1
BFFEventStreamRedis $ENV{BFF_T_REDIS_URL} prefix=$P max-streams=6 retry-after=3s timeout=300ms
BFFJWTKeyFile "$keys/rsa.pub"
BFFJWTAlgorithms RS256
BFFAPIKeyFile "$keys/apikeys.txt"
<Location /keyed>
    SetHandler bff-event-stream
    AuthType bff-apikey
    AuthName keyed
    Require valid-user
</Location>
<Location /events>
    SetHandler bff-event-stream
    AuthType bff-jwt
    AuthName events
    Require valid-user
    BFFEventStream heartbeat=1s per-identity=2
    SetOutputFilter DEFLATE
</Location>
<Location /news>
    SetHandler bff-event-stream
    AuthType bff-jwt
    AuthName events
    Require valid-user
    BFFEventStream topic=news heartbeat=30s
</Location>
<Location /metrics>
    SetHandler bff-metrics
</Location>
<Location /noauth>
    SetHandler bff-event-stream
</Location>
CONF
my $h = start_httpd('sse', $conf);
my $port = $h->{port};

sub token { my %c = @_; jwt(alg => 'RS256', kid => undef, claims => claims_ok(%c)) }
sub key_of { my ($sub, $iss) = @_; $P . 'notifications:' . sha256_hex(($iss // 'https://issuer.test') . "\0" . $sub) }
sub xadd { my ($key, @kv) = @_; redis_cli('XADD', $key, '*', @kv) }
# XADD over a connection of the test's own: the time measured is Redis's
# and the gateway's, not a redis-cli process start
my $rc;
sub xadd_now {
    my ($key, @kv) = @_;
    $rc ||= IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{BFF_T_REDIS_PORT})
        or die "redis: $!";
    my @a = ('XADD', $key, '*', @kv);
    my $t = now();
    print $rc join '', '*', scalar(@a), "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @a;
    my $len = <$rc>;
    my $id = <$rc>;
    $id =~ s/\r\n//;
    return ($id, $t);
}
sub errlog { open my $fh, '<', "$h->{dir}/error.log" or return ''; local $/; <$fh> // '' }

# Opens a stream: { sock, status, head, raw, text } after the headers.
sub sse_open {
    my ($path, $tok, @hdr) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or die "connect: $!";
    my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            . "Accept-Encoding: gzip, deflate\r\n";
    $req .= "Authorization: Bearer $tok\r\n" if $tok;
    while (@hdr) { my ($k, $v) = splice @hdr, 0, 2; $req .= "$k: $v\r\n" }
    print $s "$req\r\n";
    my $st = { sock => $s, raw => '', text => '', body => '', eof => 0 };
    my $until = now() + 5;
    while ($st->{raw} !~ /\r\n\r\n/ && now() < $until) { fill($st, $until) or last }
    my ($head, $rest) = split /\r\n\r\n/, $st->{raw}, 2;
    $st->{head} = $head // '';
    ($st->{status}) = $st->{head} =~ m{^HTTP/1\.1 (\d+)};
    $st->{status} //= 0;
    $st->{chunked} = $st->{head} =~ /^Transfer-Encoding: chunked/mi;
    $st->{raw} = $rest // '';
    dechunk($st);
    return $st;
}

# 1 once bff_event_streams_open reads 0 (within 4 s)
sub streams_counted_out {
    for (1 .. 40) {
        return 1 if http_get($port, '/metrics')->content =~ /^bff_event_streams_open 0$/m;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

sub header { my ($st, $n) = @_; $st->{head} =~ /^\Q$n\E: *([^\r\n]*)/mi ? $1 : undef }

# reads what arrived before $until; 0 at EOF or timeout
sub fill {
    my ($st, $until) = @_;
    my $left = $until - now();
    return 0 if $left <= 0 || $st->{eof};
    return 0 unless IO::Select->new($st->{sock})->can_read($left);
    my $n = sysread $st->{sock}, my $buf, 65536;
    if (!$n) { $st->{eof} = 1; return 0 }
    $st->{raw} .= $buf;
    return 1;
}

sub dechunk {
    my $st = shift;
    if (!$st->{chunked}) { $st->{text} .= $st->{raw}; $st->{raw} = ''; return }
    while ($st->{raw} =~ /\A([0-9a-fA-F]+)\r\n/) {
        my $n = hex $1;
        my $hl = length($1) + 2;
        last if length($st->{raw}) < $hl + $n + 2;
        $st->{text} .= substr $st->{raw}, $hl, $n;
        substr($st->{raw}, 0, $hl + $n + 2) = '';
        $st->{done} = 1 if $n == 0;
    }
}

# the next complete block (up to a blank line) before timeout, or undef
sub next_block {
    my ($st, $secs) = @_;
    my $until = now() + $secs;
    for (;;) {
        if ($st->{text} =~ s/\A(.*?)\n\n//s) { return $1 }
        fill($st, $until) or return undef;
        dechunk($st);
    }
}

# the next event (a block with data:), skipping comments and heartbeats;
# { id, event, data } or undef
sub next_event {
    my ($st, $secs) = @_;
    my $until = now() + $secs;
    while ((my $left = $until - now()) > 0) {
        my $b = next_block($st, $left) // return undef;
        my %e;
        for my $l (split /\n/, $b) {
            next if $l =~ /^:/;
            my ($f, $v) = $l =~ /^([^:]*): ?(.*)$/ or next;
            if ($f eq 'data') { $e{data} = defined $e{data} ? "$e{data}\n$v" : $v }
            else { $e{$f} = $v }
        }
        return \%e if defined $e{data};
    }
    return undef;
}

# 1 when the stream ends (EOF or the last chunk) within secs
sub ends_within {
    my ($st, $secs) = @_;
    my $until = now() + $secs;
    while (!$st->{eof} && !$st->{done}) {
        fill($st, $until) or last;
        dechunk($st);
    }
    return $st->{eof} || $st->{done} ? 1 : 0;
}

sub wait_open { my $st = shift; next_block($st, 5) }   # the ": open" comment

my $alice = token();
my $bob = token(sub => 'bob');
redis_cli('DEL', key_of('alice'), key_of('bob'));

# --- access phase first, Last-Event-ID strictly ---------------------------
my $st = sse_open('/events');
ok t_cmp($st->{status}, 401, 'no token: 401');
$st = sse_open('/events', $alice, 'Last-Event-ID' => '12-x');
ok t_cmp($st->{status}, 400, 'bad Last-Event-ID: 400');
ok t_cmp(header($st, 'Content-Type'), 'application/problem+json');
$st = sse_open('/events', $alice, 'Last-Event-ID' => '01-1');
ok t_cmp($st->{status}, 400, 'leading zero: 400');
$st = sse_open('/noauth');
ok t_cmp($st->{status}, 500, 'a stream location without authentication: 500');
like errlog(), qr/BFF811: SetHandler bff-event-stream needs BFFEventStreamRedis .* and authentication/,
     'and says why';

# --- delivery ---------------------------------------------------------------
my $a1 = sse_open('/events', $alice);
ok t_cmp($a1->{status}, 200, 'alice streams');
like header($a1, 'Content-Type') // '', qr{^text/event-stream}, 'text/event-stream';
ok t_cmp(header($a1, 'Content-Encoding'), undef, 'DEFLATE on the location: not compressed');
ok t_cmp(header($a1, 'Cache-Control'), 'no-cache');
ok t_cmp(wait_open($a1), ': open', 'the stream opens with a comment');
my $b1 = sse_open('/events', $bob);
wait_open($b1);
my ($id1, $t0) = xadd_now(key_of('alice'), 'event', 'order', 'data', "line 1\nline 2", 'other', 'x');
my $e = next_event($a1, 5);
my $dt = now() - $t0;
ok $e, 'event delivered';
ok $dt < 0.1, sprintf('XADD to delivery %.1f ms (< 100 ms)', $dt * 1000);
ok t_cmp($e->{id}, $id1, 'id: is the stream id');
ok t_cmp($e->{event}, 'order', 'event: from the event field');
ok t_cmp($e->{data}, "line 1\nline 2", 'data: lines from the data field');
ok !exists $e->{other}, 'other fields are not sent';

# latency again, now that everything is warm
my @lat;
for my $i (1 .. 5) {
    (undef, $t0) = xadd_now(key_of('alice'), 'data', "n$i");
    my $x = next_event($a1, 5);
    push @lat, $x && $x->{data} eq "n$i" ? now() - $t0 : 9;
}
ok !grep({ $_ >= 0.1 } @lat), 'five more under 100 ms: ' . join(' ', map { sprintf '%.1f', $_ * 1000 } @lat);

# --- isolation ----------------------------------------------------------------
my $bid = xadd(key_of('bob'), 'data', 'for bob only');
$e = next_event($b1, 5);
ok $e && t_cmp($e->{data}, 'for bob only', 'bob gets his event');
$e = next_event($a1, 0.5);
ok !$e, 'alice never receives bob\'s event';
# same subject, another issuer: another identity
ok key_of('alice', 'https://other.test') ne key_of('alice'), 'the issuer is part of the key';

# --- heartbeat ------------------------------------------------------------------
my $hb = next_block($b1, 2.5);
ok t_cmp($hb, ': keep-alive', 'a heartbeat comment within the interval');

# --- resume with Last-Event-ID --------------------------------------------------
my $last = xadd(key_of('alice'), 'data', 'before drop');
$e = next_event($a1, 5);
ok t_cmp($e->{id}, $last);
close $a1->{sock};
my @missed = map { xadd(key_of('alice'), 'data', "missed $_") } 1 .. 3;
my $a2 = sse_open('/events', $alice, 'Last-Event-ID' => $last);
ok t_cmp($a2->{status}, 200, 'reconnect with Last-Event-ID');
my @got;
while (my $x = next_event($a2, 1)) { push @got, $x; last if @got == 3 }
ok t_cmp(join(',', map { $_->{id} } @got), join(',', @missed), 'the missed events, in order');
ok t_cmp(join(',', map { $_->{data} } @got), 'missed 1,missed 2,missed 3');
$e = next_event($a2, 0.3);
ok !$e, 'no duplicates';
my $live = xadd(key_of('alice'), 'data', 'live');
$e = next_event($a2, 2);
ok $e && t_cmp($e->{id}, $live, 'then live events');
# a fresh stream starts at the newest entry
my $a3 = sse_open('/events', $alice);
wait_open($a3);
$e = next_event($a3, 0.3);
ok !$e, 'without Last-Event-ID: no history';
my $after = xadd(key_of('alice'), 'data', 'after');
$e = next_event($a3, 2);
ok $e && t_cmp($e->{id}, $after, 'and everything after it');
$e = next_event($a2, 2);
ok $e && t_cmp($e->{id}, $after, 'both of alice\'s streams get it');

# --- caps: 2 per identity, 6 per server ---------------------------------------------
$st = sse_open('/events', $alice);
ok t_cmp($st->{status}, 503, 'a third stream of alice: 503');
ok t_cmp(header($st, 'Retry-After'), 3, 'with Retry-After');
ok t_cmp(header($st, 'Content-Type'), 'application/problem+json') or diag $st->{head};
ends_within($st, 2);
ok t_cmp(header($st, 'Content-Encoding'), 'gzip', 'mod_deflate compresses the other answers');
gunzip(\$st->{text} => \my $plain);
like $plain, qr/too many event streams for this identity \(2\)/, 'the detail names the cap';
# alice closes one: its place is free once the server notices (a heartbeat)
close $a3->{sock};
my $ok = 0;
for (1 .. 40) {
    my $x = sse_open('/events', $alice);
    if ($x->{status} == 200) { $a3 = $x; $ok = 1; last }
    close $x->{sock};
    Time::HiRes::sleep(0.1);
}
ok $ok, 'a closed stream frees its place';
my @others = map { sse_open('/events', token(sub => "user$_")) } 1 .. 3;
ok t_cmp(join(',', map { $_->{status} } @others), '200,200,200', 'four to six');
$st = sse_open('/events', token(sub => 'user4'));
ok t_cmp($st->{status}, 503, 'the seventh of the server: 503');
ends_within($st, 2);
gunzip(\$st->{text} => \my $plain6);
like $plain6, qr/too many event streams \(6\)/;
my $m = http_get($port, '/metrics')->content;
ok $m =~ /^bff_event_streams_open (\d+)$/m && $1 == 6, 'bff_event_streams_open 6';
ok $m =~ /^bff_event_stream_events_total (\d+)$/m && $1 >= 14, 'bff_event_stream_events_total';
close $_->{sock} for @others, $a2, $a3, $b1;
ok streams_counted_out(), 'closed streams are counted out';

# --- HTTP/2 (h2c, curl with prior knowledge): events are not held back -------
SKIP: {
    # curl hangs with the sanitized suite's libasan preloaded (as procps
    # does): it runs without it
    local $ENV{LD_PRELOAD};
    delete $ENV{LD_PRELOAD};
    skip 'curl without HTTP/2', 3 unless `curl -V 2>/dev/null` =~ /\bHTTP2\b/;
    my $pid = open my $cf, '-|', 'curl', '-sS', '-N', '-i', '--http2-prior-knowledge',
        '--max-time', '6', '-H', "Authorization: Bearer $bob", "http://127.0.0.1:$port/events";
    my $sel = IO::Select->new($cf);
    my ($out, $until) = ('', now() + 5);
    my $grab = sub {
        my $re = shift;
        while ($out !~ $re && (my $left = $until - now()) > 0) {
            last unless $sel->can_read($left);
            sysread($cf, my $buf, 4096) or last;
            $out .= $buf;
        }
        return $out =~ $re;
    };
    ok $grab->(qr/^: open\r?\n/m), 'HTTP/2: the stream opens' or diag $out;
    like $out, qr{^HTTP/2 200}m, 'over HTTP/2';
    my $hid = xadd(key_of('bob'), 'data', 'over h2');
    ok $grab->(qr/^id: \Q$hid\E\ndata: over h2\n/m), 'HTTP/2: the event arrives at once' or diag $out;
    kill 'TERM', $pid;
    close $cf;
}

# --- an API key's consumer has the issuer "apikey" ------------------------------
my $kk = $P . 'notifications:' . sha256_hex("apikey\0acme");
my $k1 = sse_open('/keyed', undef, 'X-API-Key' => apikey('acme'));
ok t_cmp(wait_open($k1), ': open', 'an API key streams');
my $kid = xadd($kk, 'data', 'for acme');
$e = next_event($k1, 2);
ok $e && t_cmp($e->{id}, $kid, 'the consumer\'s stream');
close $k1->{sock};
redis_cli('DEL', $kk);

# --- a topic stream -----------------------------------------------------------
redis_cli('DEL', "${P}topic:news");
my $n1 = sse_open('/news', $bob);
ok t_cmp(wait_open($n1), ': open');
my $nid = xadd("${P}topic:news", 'event', 'headline', 'data', 'hello');
$e = next_event($n1, 2);
ok $e && t_cmp($e->{id}, $nid, 'a topic stream');
close $n1->{sock};
# a closed connection frees its place without waiting for a heartbeat
# (30 s here): four of carol's streams, the fifth refused. The streams
# closed above count against max-streams=6 until their workers notice:
# that is waited for first
streams_counted_out();
my $carol = token(sub => 'carol');
my @c = map { sse_open('/news', $carol) } 1 .. 4;
ok t_cmp(join(',', map { $_->{status} } @c), '200,200,200,200', 'four of carol\'s');
$st = sse_open('/news', $carol);
ok t_cmp($st->{status}, 503, 'the fifth: 503 (per-identity=4 by default)');
close((shift @c)->{sock});
$ok = 0;
$t0 = now();
for (1 .. 20) {
    my $x = sse_open('/news', $carol);
    if ($x->{status} == 200) { push @c, $x; $ok = 1; last }
    Time::HiRes::sleep(0.1);
}
ok $ok && now() - $t0 < 2, sprintf('a closed stream is noticed at once (%.2fs)', now() - $t0);
close $_->{sock} for @c;

# --- the token expires ------------------------------------------------------------
$st = sse_open('/events', token(exp => time + 2));
ok t_cmp($st->{status}, 200);
wait_open($st);
$t0 = now();
ok ends_within($st, 5), 'the stream ends when the token expires';
ok now() - $t0 < 4, 'at exp';

# --- graceful restart: streams end, clients resume ----------------------------------
my $g = sse_open('/events', $alice);
wait_open($g);
my $before = xadd(key_of('alice'), 'data', 'before restart');
$e = next_event($g, 2);
ok $e && t_cmp($e->{id}, $before);
system(Apache::Test::vars('httpd'), '-f', "$h->{dir}/httpd.conf", '-k', 'graceful') == 0
    or die 'graceful failed';
ok ends_within($g, 5), 'a graceful restart ends the stream';
my $during = xadd(key_of('alice'), 'data', 'during restart');
my $g2;
for (1 .. 50) {
    $g2 = eval { sse_open('/events', $alice, 'Last-Event-ID' => $before) };
    last if $g2 && $g2->{status} == 200;
    Time::HiRes::sleep(0.1);
}
ok $g2 && t_cmp($g2->{status}, 200, 'reconnect after the restart');
$e = next_event($g2, 3);
ok $e && t_cmp($e->{id}, $during, 'resumes where it was');
close $g2->{sock};

# --- Redis fails --------------------------------------------------------------------
my $r1 = sse_open('/events', $bob);
wait_open($r1);
redis_stop();
ok ends_within($r1, 5), 'Redis stopped: the stream ends';
my $rs;
for (1 .. 20) {
    $rs = sse_open('/events', $bob);
    last if $rs->{status} == 503;
    Time::HiRes::sleep(0.1);
}
ok t_cmp($rs->{status}, 503, 'Redis down: 503');
ok t_cmp(header($rs, 'Retry-After'), 3);
my $log = errlog();
like $log, qr/BFF803: event streams: cannot read Redis/, 'the outage is logged';
redis_start();
my $back;
for (1 .. 60) {
    $back = sse_open('/events', $bob);
    last if $back->{status} == 200;
    close $back->{sock};
    Time::HiRes::sleep(0.1);
}
ok t_cmp($back->{status}, 200, 'Redis back: streams again');
wait_open($back);
my $bb = xadd(key_of('bob'), 'data', 'back');
$e = next_event($back, 2);
ok $e && t_cmp($e->{id}, $bb, 'and delivers');
close $back->{sock};
# the children whose reader saw the outage log its end at their next try
# (at most 2 s apart)
my $rec = '';
for (1 .. 50) { $rec = errlog(); last if $rec =~ /BFF804/; Time::HiRes::sleep(0.1) }
like $rec, qr/BFF804: event streams: reading Redis again/, 'the recovery is logged';
redis_cli('DEL', key_of('alice'), key_of('bob'), "${P}topic:news");
stop_httpd($h);
$log = errlog();
ok $log !~ /\[(?:crit|alert|emerg)\]|AH00052|Segmentation/, 'no crash' or diag $log;

# --- a stream holds a worker: it counts against BFFMaxInFlight's total
my $U = svc_url('user');
$h = start_httpd('sse-inflight', <<"CONF");
LoadModule authn_core_module "$lib/mod_authn_core.so"
LoadModule authz_user_module "$lib/mod_authz_user.so"
BFFEventStreamRedis $ENV{BFF_T_REDIS_URL} prefix=$P
BFFJWTKeyFile "$keys/rsa.pub"
BFFJWTAlgorithms RS256
BFFMaxInFlight total=2
<Location /events>
    SetHandler bff-event-stream
    AuthType bff-jwt
    AuthName events
    Require valid-user
</Location>
<BFFEndpoint GET /p/{id:int}>
    BFFBackend user GET $U/users/{id} required
</BFFEndpoint>
CONF
$port = $h->{port};
ok t_cmp(http_get($port, '/p/1')->code, 200, 'an aggregation while no stream is open');
my @two = map { sse_open('/events', token(sub => "s$_")) } 1 .. 2;
ok t_cmp(join(',', map { $_->{status} } @two), '200,200', 'two streams: total=2 reached');
my $agg = http_get($port, '/p/1');
ok t_cmp($agg->code, 503, 'an aggregation is refused while the streams hold the workers');
$st = sse_open('/events', token(sub => 's3'));
ok t_cmp($st->{status}, 503, 'and so is a third stream');
close $_->{sock} for @two;
my $code = 0;
for (1 .. 30) { $code = http_get($port, '/p/1')->code; last if $code == 200; Time::HiRes::sleep(0.1) }
ok t_cmp($code, 200, 'the streams closed: aggregations admitted again');
stop_httpd($h);
