# Request id and W3C trace context on routes mod_bff does not aggregate
# (ProxyPass), on error pages, and the link between what backends get and
# what the JSON log says. (Aggregated endpoints: t/05_headers.t.)
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use JSON::PP ();
use BFFTest;

plan tests => 40;

my $tp_re = qr/^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
my $logfile = Apache::Test::vars('t_logs') . '/bff_json.log';

sub log_entry {
    my $rid = shift;
    for (1 .. 50) {
        open my $fh, '<:raw', $logfile or die $!;
        # the last one: the log survives earlier runs of the suite
        for my $l (reverse <$fh>) {
            my $e = eval { JSON::PP->new->utf8->decode($l) } or next;
            return $e if ($e->{request_id} // '') eq $rid;
        }
        Time::HiRes::sleep(0.05);
    }
    return undef;
}

# --- ProxyPass: the client's valid id and trace are continued ---------
svc_reset();
my $res = bff_get('/t/proxied/users/3', 'X-Request-ID' => 'trace-px-1',
    'traceparent' => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    'tracestate' => 'vendor=abc');
ok t_cmp($res->code, 200);
my $h = svc_log('user')->[0]{headers};
ok t_cmp($h->{'x-request-id'}, 'trace-px-1', 'the backend gets the id');
ok t_cmp($res->header('X-Request-ID'), 'trace-px-1', 'the client gets it back');
my @tp = ($h->{traceparent} // '') =~ $tp_re;
ok t_cmp($tp[0], '4bf92f3577b34da6a3ce929d0e0e4736', 'trace continued');
ok $tp[1] && $tp[1] ne '00f067aa0ba902b7', 'a span of the gateway, not the client\'s';
ok t_cmp($tp[2], '01', 'flags kept');
ok t_cmp($h->{tracestate}, 'vendor=abc', 'tracestate of a continued trace kept');
my $e = log_entry('trace-px-1');
ok t_cmp($e->{trace_id}, $tp[0], 'the log has the trace id');
ok t_cmp($e->{span_id}, $tp[1], 'and the span the backend saw as its parent');

# --- ProxyPass without any: new id (mod_unique_id), new trace ---------
svc_reset();
$res = bff_get('/t/proxied/users/3');
$h = svc_log('user')->[0]{headers};
my $rid = $res->header('X-Request-ID') // '';
ok $rid ne '', "id made ($rid)";
ok t_cmp($h->{'x-request-id'}, $rid, 'the backend gets the same one');
@tp = ($h->{traceparent} // '') =~ $tp_re;
ok $tp[0] && $tp[0] ne '0' x 32, 'new trace';
ok t_cmp($tp[2], '01', 'sampled');
$e = log_entry($rid);
ok t_cmp($e->{trace_id}, $tp[0], 'logged trace = sent trace');
my $rid2 = bff_get('/t/proxied/users/3')->header('X-Request-ID') // '';
ok $rid2 ne '' && $rid2 ne $rid, 'each request its own id';

# --- ProxyPass with invalid ones: replaced, tracestate dropped --------
svc_reset();
$res = bff_get('/t/proxied/users/3', 'X-Request-ID' => 'has space',
    'traceparent' => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7',
    'tracestate' => 'vendor=abc');
$h = svc_log('user')->[0]{headers};
$rid = $res->header('X-Request-ID') // '';
ok $rid ne '' && $rid ne 'has space', 'invalid id replaced';
ok t_cmp($h->{'x-request-id'}, $rid, 'the replacement reaches the backend');
@tp = ($h->{traceparent} // '') =~ $tp_re;
ok $tp[0] && $tp[0] ne '4bf92f3577b34da6a3ce929d0e0e4736', 'malformed traceparent: new trace';
ok !exists $h->{tracestate}, 'tracestate of an abandoned trace not passed on';
svc_reset();
$res = bff_get('/t/proxied/users/3', 'X-Request-ID' => 'x' x 129);
ok length($res->header('X-Request-ID') // '') < 129, 'too long an id replaced';
ok t_cmp(svc_log('user')->[0]{headers}{'x-request-id'}, $res->header('X-Request-ID'));

# --- an aggregated endpoint: one trace, one span per call, all logged --
svc_reset();
$res = bff_get('/api/profile/2', 'X-Request-ID' => 'trace-agg-1',
    'traceparent' => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
my @calls = map { svc_log($_)->[0]{headers} } qw(user order product);
my @tps = map { [ ($_->{traceparent} // '') =~ $tp_re ] } @calls;
ok !grep({ ($_->[0] // '') ne '0af7651916cd43dd8448eb211c80319c' } @tps), 'same trace at every backend';
my %spans = map { (($_->[1] // '') => 1) } @tps;
ok t_cmp(scalar keys %spans, 3, 'a span per backend call');
ok !exists $spans{b7ad6b7169203331}, 'none is the client\'s span';
ok !grep({ ($_->{'x-request-id'} // '') ne 'trace-agg-1' } @calls), 'the id at every backend';
$e = log_entry('trace-agg-1');
ok t_cmp($e->{trace_id}, '0af7651916cd43dd8448eb211c80319c', 'logged');
ok !exists $spans{ $e->{span_id} }, 'call spans differ from the gateway span';

# --- error answers carry the id ---------------------------------------
$res = bff_get('/t/reqstatus/500/1', 'X-Request-ID' => 'trace-err-1');
ok t_cmp($res->code, 502);
ok t_cmp($res->header('X-Request-ID'), 'trace-err-1', 'problem answer');
ok t_cmp($res->{json}{request_id}, 'trace-err-1', 'and in its body');
my @ids = $res->header('X-Request-ID');
ok t_cmp(scalar @ids, 1, 'sent once');
$res = bff_req(POST => '/api/profile/1', 'X-Request-ID' => 'trace-405');
ok t_cmp($res->code, 405);
ok t_cmp($res->header('X-Request-ID'), 'trace-405');
$res = bff_get('/nothing/here', 'X-Request-ID' => 'trace-404');
ok t_cmp($res->header('X-Request-ID'), 'trace-404', 'httpd\'s own 404');

# --- BFFRequestID Off: only aggregated endpoints get ids ------------
my $lib = $ENV{BFF_T_LIBEXECDIR};
my $srv = start_httpd('trace_off', <<"CONF");
LoadModule unique_id_module "$lib/mod_unique_id.so"
LoadModule proxy_module "$lib/mod_proxy.so"
LoadModule proxy_http_module "$lib/mod_proxy_http.so"
BFFRequestID Off
ProxyPass /px/ $ENV{BFF_T_USER_URL}/
<BFFEndpoint GET /agg/{id:int}>
    BFFBackend user GET $ENV{BFF_T_USER_URL}/users/{id} required
</BFFEndpoint>
CONF
svc_reset();
$res = http_get($srv->{port}, '/px/users/1');
ok t_cmp($res->code, 200);
ok !defined $res->header('X-Request-ID') && !exists svc_log('user')->[0]{headers}{'x-request-id'},
   'Off: a proxied request is left alone';
svc_reset();
$res = http_get($srv->{port}, '/agg/1', 'X-Request-ID' => 'off-agg');
ok t_cmp($res->header('X-Request-ID'), 'off-agg', 'Off: endpoints still have ids');
ok t_cmp(svc_log('user')->[0]{headers}{'x-request-id'}, 'off-agg');
stop_httpd($srv);

# --- the error log names the request (conf/bff-errorlog.conf) --------
my $elog = start_httpd('trace_errlog', <<"CONF");
Include "$ENV{BFF_TOP}/conf/bff-errorlog.conf"
<BFFEndpoint GET /partial/{id:int}>
    BFFBackend user   GET $ENV{BFF_T_USER_URL}/users/{id} required
    BFFBackend orders GET $ENV{BFF_T_ORDER_URL}/orders/user/{id}?status=503
</BFFEndpoint>
CONF
$res = http_get($elog->{port}, '/partial/1', 'X-Request-ID' => 'errlog-1');
ok t_cmp($res->header('X-BFF-Completed'), 'false');
my $text = '';
for (1 .. 50) {
    open my $fh, '<', "$elog->{dir}/error.log" or die $!;
    $text = do { local $/; <$fh> };
    last if $text =~ /BFF10:/;
    Time::HiRes::sleep(0.05);
}
like $text, qr/^\[[^\n]*\] \[bff:info\] \[pid \d+:tid \d+\] \[request_id errlog-1\] [^\n]*BFF10: GET \/partial/m,
     'the failure is logged with the request id';
stop_httpd($elog);
