# What reaches a backend: deny-by-default header and query forwarding,
# request id and W3C trace context propagation.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 32;

my $tp_re = qr/^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

svc_reset();
my $res = bff_get('/t/headers/3?lang=de&secret=1&lang2=x',
    'X-Test-Forward' => 'hello', 'Accept-Language' => 'fr',
    'Cookie' => 'session=s3cr3t', 'Authorization' => 'Bearer abc',
    'X-User-ID' => '666', 'X-Forwarded-Host' => 'evil', 'X-Request-ID' => 'req-42.a:b',
    'traceparent' => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
ok t_cmp($res->code, 200);
my $e = svc_log('user')->[0];
my $h = $e->{headers};
ok t_cmp($h->{'x-test-forward'}, 'hello', 'configured header forwarded');
ok t_cmp($h->{'accept-language'}, 'fr');
ok !exists $h->{cookie}, 'cookie not forwarded';
ok !exists $h->{authorization}, 'authorization not forwarded';
ok !exists $h->{'x-user-id'}, 'client identity header not forwarded';
ok !exists $h->{'x-forwarded-host'};
ok t_cmp($h->{host}, '127.0.0.1:' . $ENV{BFF_T_USER_PORT}, "the backend's own Host");
ok t_cmp($h->{accept}, 'application/json');
ok t_cmp($h->{'x-request-id'}, 'req-42.a:b', 'valid request id kept');
ok t_cmp($res->header('X-Request-ID'), 'req-42.a:b', 'and returned');
my @tp = ($h->{traceparent} // '') =~ $tp_re;
ok t_cmp($tp[0], '4bf92f3577b34da6a3ce929d0e0e4736', 'trace continued');
ok $tp[1] && $tp[1] ne '00f067aa0ba902b7', 'new span id for the call';
ok t_cmp($tp[2], '01');
ok t_cmp($e->{uri}, '/users/3?lang=de', 'only configured query parameters');

# server-level forwarding lists apply to every endpoint, with its own
svc_reset();
bff_get('/t/headers/3?tenant=t1&lang=en&x=1', 'X-Tenant' => 'acme', 'X-Test-Forward' => 'y');
$e = svc_log('user')->[0];
ok t_cmp($e->{headers}{'x-tenant'}, 'acme', 'server-level header');
ok t_cmp($e->{headers}{'x-test-forward'}, 'y', 'endpoint-level header');
ok t_cmp($e->{uri}, '/users/3?tenant=t1&lang=en', 'server-level then endpoint-level query');

# query values are re-encoded from their decoded form
svc_reset();
bff_get('/t/headers/3?lang=a%26b%3Dc+d');
ok t_cmp(svc_log('user')->[0]{uri}, '/users/3?lang=a%26b%3Dc%20d');

# an invalid request id or traceparent is replaced, never passed on
svc_reset();
$res = bff_get('/t/headers/3', 'X-Request-ID' => 'bad id "quoted"',
               'traceparent' => '00-00000000000000000000000000000000-00f067aa0ba902b7-01');
$h = svc_log('user')->[0]{headers};
my $rid = $res->header('X-Request-ID') // '';
ok $rid ne '' && $rid !~ /bad/, "new request id '$rid'";
ok t_cmp($h->{'x-request-id'}, $rid, 'the backend gets the same id');
@tp = ($h->{traceparent} // '') =~ $tp_re;
ok $tp[0] && $tp[0] ne '0' x 32, 'new trace started';
ok t_cmp($tp[2], '01');

# every backend call of one request: same trace, its own span
svc_reset();
$res = bff_get('/api/profile/4', 'traceparent' => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00');
my @calls = map { svc_log($_)->[0]{headers} } qw(user order product);
my @spans = map { (($_->{traceparent} // '') =~ $tp_re)[1] // '' } @calls;
my @traces = map { (($_->{traceparent} // '') =~ $tp_re)[0] // '' } @calls;
ok !grep({ $_ ne '0af7651916cd43dd8448eb211c80319c' } @traces), 'same trace id';
my %u; $u{$_}++ for @spans;
ok t_cmp(scalar keys %u, 3, 'three distinct span ids');
ok !grep({ ($_->{traceparent} // '') !~ /-00$/ } @calls), 'flags kept';
my %ids; $ids{$_->{'x-request-id'} // ''}++ for @calls;
ok t_cmp(join(',', keys %ids), $res->header('X-Request-ID'), 'one request id for all calls');
ok t_cmp($calls[2]{'content-type'}, 'application/json', 'POST body typed');
ok !exists $calls[2]{expect}, 'no Expect: 100-continue';
ok +($calls[0]{'user-agent'} // '') !~ /libwww/, 'client User-Agent not forwarded';

# the request id is in the access log note
open my $fh, '<', Apache::Test::vars('t_logs') . '/bff_access.log' or die $!;
my @lines = <$fh>;
my $want = $res->header('X-Request-ID');
ok scalar(grep { /id=\Q$want\E ep=\/api\/profile\/\{user_id:int\} completed=true/ } @lines),
   'request id, endpoint and completion logged';
ok t_cmp(scalar @{ svc_log('user') }, 1);
