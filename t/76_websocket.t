# WebSocket routes behind AuthType bff-jwt: mod_proxy_wstunnel (ws://) and
# mod_proxy_http (upgrade=websocket) in front of an echo backend this test
# runs (t/lib/BFFWebSocket.pm). The token is checked on the upgrade
# request, the identity header reaches the backend, the rate limit counts
# upgrades; tokens from a query parameter or a cookie where a location
# allows them, removed from what the backend receives and from every log
# (the request line included); refused where the location does not allow
# them; apache2 -t names each opt-in.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFJWT;
use BFFWebSocket ();
use BFFConfTest qw(configtest);

plan tests => 50;

my $libexec = $ENV{BFF_T_LIBEXECDIR};
my $keys = keydir();
my $dir = Apache::Test::vars('t_logs') . '/websocket';
mkdir $dir;
my $wslog = "$dir/ws-backend.log";
unlink $wslog;
my $be = BFFWebSocket::backend_start($wslog);
END { BFFWebSocket::backend_stop($be) if $be }
my $B = $be->{port};

my $jwt_conf = <<"CONF";
BFFJWTKeyFile "$keys/rsa.pub"
BFFJWTAlgorithms RS256
BFFJWTIssuer https://issuer.test
BFFJWTAudience bff-test
CONF

my $h = start_httpd('websocket', <<"CONF");
LoadModule authn_core_module "$libexec/mod_authn_core.so"
LoadModule authz_user_module "$libexec/mod_authz_user.so"
LoadModule headers_module "$libexec/mod_headers.so"
LoadModule proxy_module "$libexec/mod_proxy.so"
LoadModule proxy_http_module "$libexec/mod_proxy_http.so"
LoadModule proxy_wstunnel_module "$libexec/mod_proxy_wstunnel.so"
LoadModule status_module "$libexec/mod_status.so"
ExtendedStatus On
<Location /server-status>
    SetHandler server-status
</Location>
LogLevel info bff:debug proxy:notice
$jwt_conf
Include "$ENV{BFF_TOP}/conf/bff-log.conf"
CustomLog "$dir/access.json" bff_json
LogFormat "%h %u \\"%r\\" %>s %U%q" plain
CustomLog "$dir/access.log" plain
# ws:// goes to mod_proxy_wstunnel, not to mod_proxy_http
ProxyWebsocketFallbackToProxyHttp Off
<Location /ws/>
    AuthType bff-jwt
    Require valid-user
    BFFIdentityHeader X-User-ID sub
    # mod_proxy forwards Authorization as it came: the backend needs none
    RequestHeader unset Authorization
    ProxyPass ws://127.0.0.1:$B/echo/
</Location>
<Location /wsq/>
    AuthType bff-jwt
    Require valid-user
    BFFTokenSource query:access_token bearer
    BFFIdentityHeader X-User-ID sub
    ProxyPass ws://127.0.0.1:$B/echo/
</Location>
<Location /wsc/>
    AuthType bff-jwt
    Require valid-user
    BFFTokenSource cookie:bff_token
    BFFIdentityHeader X-User-ID sub
    ProxyPass ws://127.0.0.1:$B/echo/
</Location>
<Location /wsh/>
    AuthType bff-jwt
    Require valid-user
    BFFIdentityHeader X-User-ID sub
    ProxyPass http://127.0.0.1:$B/echo/ upgrade=websocket
</Location>
<Location /wsrl/>
    AuthType bff-jwt
    Require valid-user
    BFFRateLimit ws-upgrades 2/1m key=user
    ProxyPass ws://127.0.0.1:$B/echo/
</Location>
CONF
my $port = $h->{port};

sub heads { [BFFWebSocket::backend_heads($wslog)] }
sub ws { BFFWebSocket::connect($port, @_) }
sub bearer { (Authorization => "Bearer $_[0]") }

my $tok = jwt(claims => claims_ok(sub => 'alice'));

# ---------------------------------------------------------------- bearer --
my $c = ws('/ws/room1', bearer($tok));
ok t_cmp($c->{status}, 101, 'a valid token: 101 Switching Protocols');
ok t_cmp($c->{accept_ok}, 1, "the backend's Sec-WebSocket-Accept reaches the client");
BFFWebSocket::send_text($c, 'hello over the tunnel');
my $f = BFFWebSocket::recv_frame($c);
ok t_cmp($f && $f->[1], 'hello over the tunnel', 'the echo comes back through the tunnel');
BFFWebSocket::send_text($c, 'x' x 70000);
$f = BFFWebSocket::recv_frame($c);
ok t_cmp($f ? length $f->[1] : 0, 70000, 'a 70000 byte frame too');
BFFWebSocket::close_ws($c);
my $hd = heads();
ok t_cmp(scalar @$hd, 1, 'one upgrade reached the backend');
ok t_cmp($hd->[0] // '', qr{^GET /echo/room1 HTTP/1\.1\r$}m, 'at the proxied path');
ok t_cmp($hd->[0] // '', qr/^X-User-ID: alice\r$/m, 'with the identity header from the token');
ok !(($hd->[0] // '') =~ /Authorization|\Q$tok\E/), 'and no token';

my $n = @{ heads() };
$c = ws('/ws/room1', 'X-User-ID' => 'admin');
ok t_cmp($c->{status}, 401, 'no token: 401');
ok t_cmp($c->{head}, qr/^WWW-Authenticate: Bearer/m, 'with a Bearer challenge');
$c = ws('/ws/room1', bearer(jwt(claims => claims_ok(exp => time - 100))));
ok t_cmp($c->{status}, 401, 'an expired token: 401');
$c = ws('/ws/room1', bearer("$tok" . 'x'));
ok t_cmp($c->{status}, 401, 'a token with a broken signature: 401');
ok t_cmp(scalar @{ heads() }, $n, 'none of them reached the backend');

# mod_proxy_http's upgrade=websocket route
$c = ws('/wsh/room2', bearer($tok));
ok t_cmp($c->{status}, 101, 'ProxyPass http:// upgrade=websocket: 101');
BFFWebSocket::send_text($c, 'via mod_proxy_http');
$f = BFFWebSocket::recv_frame($c);
ok t_cmp($f && $f->[1], 'via mod_proxy_http', 'and the echo');
BFFWebSocket::close_ws($c);
ok t_cmp(heads()->[-1] // '', qr/^X-User-ID: alice\r$/m, 'the identity header there too');
$n = @{ heads() };
ok t_cmp(ws('/wsh/room2')->{status}, 401, 'no token there: 401');
ok t_cmp(scalar @{ heads() }, $n, 'not forwarded');

# ----------------------------------------------------------------- query --
my $qtok = jwt(claims => claims_ok(sub => 'bob'));
$c = ws("/wsq/room3?lang=en&access_token=$qtok&v=2");
ok t_cmp($c->{status}, 101, 'a token in the query where the location allows it: 101');
BFFWebSocket::send_text($c, 'query');
$f = BFFWebSocket::recv_frame($c);
ok t_cmp($f && $f->[1], 'query', 'echo');
BFFWebSocket::close_ws($c);
$hd = heads();
ok t_cmp($hd->[-1] // '', qr{^GET /echo/room3\?lang=en&v=2 HTTP/1\.1\r$}m,
         'the backend gets the query without the token');
ok t_cmp($hd->[-1] // '', qr/^X-User-ID: bob\r$/m, 'and the identity of the token');
ok !(($hd->[-1] // '') =~ /access_token|\Q$qtok\E/), 'no token anywhere in what it got';

$c = ws("/wsq/room3?access_token=$qtok");
ok t_cmp($c->{status}, 101, 'the token as the only parameter');
# mod_status shows the request line of the open tunnel, without the token
my $status = http_get($port, '/server-status')->content;
ok t_cmp($status, qr{GET /wsq/room3 HTTP/1\.1}, 'mod_status shows the open tunnel');
ok !($status =~ /access_token|\Q$qtok\E/), 'without the token';
BFFWebSocket::close_ws($c);
ok t_cmp(heads()->[-1] // '', qr{^GET /echo/room3 HTTP/1\.1\r$}m, 'forwarded without a query');
$c = ws("/wsq/room3", bearer($tok));
ok t_cmp($c->{status}, 101, 'bearer still works there (listed second)');
BFFWebSocket::close_ws($c);

# an invalid token in the query: refused, and not logged either
my $bad = 'eyJhbGciOiJSUzI1NiJ9.bm90LWEtdG9rZW4tbWFya2Vy.c2lnbmF0dXJl';
$n = @{ heads() };
ok t_cmp(ws("/wsq/room3?access_token=$bad")->{status}, 401, 'an invalid token in the query: 401');
# (where a location takes no token from it, access_token is a query
# parameter like any other, logged and forwarded as such)
my $elsewhere = jwt(claims => claims_ok(sub => 'bob2'));
ok t_cmp(ws("/ws/room1?access_token=$elsewhere")->{status}, 401,
         'a token in the query where the location does not allow it: 401');
ok t_cmp(ws("/wsc/room1?access_token=$elsewhere")->{status}, 401, 'nor in the cookie location');
ok t_cmp(scalar @{ heads() }, $n, 'none reached the backend');

# ---------------------------------------------------------------- cookie --
my $ctok = jwt(claims => claims_ok(sub => 'carol'));
$c = ws('/wsc/room4', Cookie => "theme=dark; bff_token=$ctok; lang=en");
ok t_cmp($c->{status}, 101, 'a token in the cookie where the location allows it: 101');
BFFWebSocket::send_text($c, 'cookie');
$f = BFFWebSocket::recv_frame($c);
ok t_cmp($f && $f->[1], 'cookie', 'echo');
BFFWebSocket::close_ws($c);
$hd = heads();
ok t_cmp($hd->[-1] // '', qr/^Cookie: theme=dark; lang=en\r$/m,
         'the backend gets the other cookies, without the token');
ok t_cmp($hd->[-1] // '', qr/^X-User-ID: carol\r$/m, 'and the identity');
ok !(($hd->[-1] // '') =~ /bff_token|\Q$ctok\E/), 'no token anywhere in what it got';
$n = @{ heads() };
ok t_cmp(ws('/ws/room1', Cookie => "bff_token=$ctok")->{status}, 401,
         'a token in a cookie where the location does not allow it: 401');
ok t_cmp(ws('/wsc/room1', bearer($ctok))->{status}, 401,
         'nor a bearer token where only the cookie is allowed');
ok t_cmp(scalar @{ heads() }, $n, 'neither reached the backend');

# ------------------------------------------------------------ rate limit --
my $rtok = jwt(claims => claims_ok(sub => 'dave'));
$n = @{ heads() };
my @st;
for (1 .. 3) {
    my $r = ws('/wsrl/room5', bearer($rtok));
    push @st, $r->{status};
    BFFWebSocket::close_ws($r) if $r->{status} == 101;
}
ok t_cmp("@st", '101 101 429', 'the rate limit counts upgrades: the third is 429');
ok t_cmp(scalar @{ heads() }, $n + 2, 'the refused upgrade never reached the backend');
ok t_cmp(ws('/wsrl/room5', bearer($tok))->{status}, 101, 'another user has a bucket of its own');

# ------------------------------------------------------------------ logs --
sleep 1;    # access log lines of the last connections
my $logs = join '', map { slurp("$dir/$_") } qw(access.json access.log error.log);
my $plain = slurp("$dir/access.log");
# (mod_proxy_wstunnel logs its tunnels as 200, mod_proxy_http as 101)
ok t_cmp($plain, qr{ bob "GET /wsq/room3\?lang=en&v=2 HTTP/1\.1" 200 /wsq/room3\?lang=en&v=2\n},
         'the access log has the request line and the query without the token');
ok t_cmp(slurp("$dir/access.json"), qr/"path":"\/wsq\/room3","query":"lang=en&v=2"/,
         "mod_bff's JSON log the query without the token");
ok !($logs =~ /\Q$qtok\E|\Q$bad\E|\Q$ctok\E|access_token=ey[^&" ]*&v=2/),
   'no token taken from a query or a cookie in any log (access, JSON, error at debug)';

# -------------------------------------------------------------- configtest --
my ($rc, $out) = configtest(<<"CONF");
LoadModule authn_core_module "$libexec/mod_authn_core.so"
LoadModule authz_user_module "$libexec/mod_authz_user.so"
$jwt_conf
<Location /events/>
    AuthType bff-jwt
    Require valid-user
    BFFTokenSource cookie:session bearer
</Location>
<Location /ws/>
    AuthType bff-jwt
    Require valid-user
    BFFTokenSource query:access_token
</Location>
<Location /api/>
    BFFTokenSource bearer header:X-Token
</Location>
CONF
ok t_cmp($rc, 0, 'apache2 -t accepts the opt-ins');
ok t_cmp($out, qr/BFF821: BFFTokenSource cookie:session in <Location \/events\/> at \S+:\d+: access tokens in a cookie/,
         'and reports the cookie (BFF821)');
ok t_cmp($out, qr/BFF820: BFFTokenSource query:access_token in <Location \/ws\/> at \S+:\d+: access tokens in the URL/,
         'and the query parameter (BFF820), with where they are');
ok t_cmp(scalar(() = $out =~ /BFF82[01]/g), 2, 'bearer and header sources are no opt-in');
