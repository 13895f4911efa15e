# BFFJWKSURL against a JWKS server of the test's own (https with a test
# CA, IO::Socket::SSL, one process per connection) whose key sets the
# test rewrites mid-run, counting the server's hits: keys fetched in the
# background; after a rotation tokens of the new key verify and tokens of
# the removed key are refused at once (also those verified and cached
# before); a provider that is down leaves the last good key set serving;
# cold start with the provider down answers 503 with Retry-After
# (cold-start=unavailable) or 401 (cold-start=deny) until a fetch
# succeeds; an unknown kid triggers one early refresh, not one per token;
# a token's jku / x5u are never fetched; an OpenID configuration leads to
# its jwks_uri; two <Location>s trust two key sets and issuers; fetches
# go through the egress proxy= (a CONNECT proxy of the test's own); the
# provider's Cache-Control: max-age sets the refresh; a graceful restart
# while the provider is down keeps the key sets, and a fetch still in
# flight in a stopping child delays no refresh; what is no usable key set
# (too large, not a JWKS, a discovery document naming an http:// jwks_uri,
# keys of another algorithm than the location's) is never used.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use IO::Socket::INET ();
use IO::Socket::SSL ();
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep);
use BFFTest;
use BFFJWT;

plan tests => 47;

my $K = Apache::Test::vars('t_logs') . '/jwks84';
remove_tree($K);
make_path($K);
chmod 0755, $K;
my $keys = keydir();

sub run {
    my $cmd = shift;
    my $out = `$cmd 2>&1`;
    die "failed: $cmd\n$out" if $?;
    return $out;
}
sub spew { open my $fh, '>', "$_[0].tmp" or die "$_[0]: $!"; print $fh $_[1]; close $fh; rename "$_[0].tmp", $_[0] }

# --- the server's certificate, of a test CA ----------------------------
run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '$K/ca.key'");
run("openssl req -x509 -new -key '$K/ca.key' -subj '/CN=BFF test jwks CA' -days 2 -out '$K/ca.pem'");
run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '$K/server.key'");
run("openssl req -new -key '$K/server.key' -subj '/CN=127.0.0.1' -out '$K/server.csr'");
spew("$K/server.ext", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
run("openssl x509 -req -in '$K/server.csr' -CA '$K/ca.pem' -CAkey '$K/ca.key' "
    . "-CAcreateserial -days 2 -extfile '$K/server.ext' -out '$K/server.pem'");
chmod 0644, "$K/server.key";

# --- signing keys: k1 and k2 (RSA), k3 (RSA, added later) --------------
run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '$K/k3.key'");
my %priv = (k1 => "$keys/rsa.key", k2 => "$keys/rsa-other.key", k3 => "$K/k3.key");
sub jwk {
    my $kid = shift;
    my ($mod) = run("openssl pkey -in '$priv{$kid}' -pubout | openssl pkey -pubin -text -noout")
        =~ /Modulus:\s*\n((?:\s+[0-9a-f:]+\n)+)/;
    $mod =~ s/[\s:]//g;
    $mod =~ s/^00//;
    return { kty => 'RSA', kid => $kid, use => 'sig', alg => 'RS256',
             n => BFFJWT::hex2b64u($mod), e => 'AQAB' };
}
my %jwk = map { ($_ => jwk($_)) } qw(k1 k2 k3);
sub jwks { JSON::PP->new->canonical->encode({ keys => [ map { $jwk{$_} } @_ ] }) }
sub tok {
    my ($kid, %o) = @_;
    return jwt(alg => 'RS256', kid => $kid, key => $priv{$o{key} // $kid},
               header => $o{header}, claims => claims_ok(iss => $o{iss} // 'https://a.test'));
}

# --- the JWKS server ------------------------------------------------------
# GET /NAME answers $K/NAME.json with the status in $K/NAME.status (200
# without one); every request is logged in $K/hits.
# the request head of a connection
sub head_of {
    my $c = shift;
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        sysread($c, $buf, 4096, length $buf) or POSIX::_exit(0);
    }
    return $buf;
}
sub serve {
    my ($tls, $handler) = @_;
    return fork_server(sub {
        my ($c, $port) = @_;
        if ($tls) {
            IO::Socket::SSL->start_SSL($c, SSL_server => 1,
                SSL_cert_file => "$K/server.pem", SSL_key_file => "$K/server.key")
                or POSIX::_exit(0);
        }
        my ($path) = head_of($c) =~ /^GET (\S+)/;
        my ($status, $body, $extra) = $handler->($path // '', $port, $c);
        print $c "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n" . ($extra // '')
            . "Connection: close\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
        $c->close(SSL_fast_shutdown => 1) if $tls;
    });
}
my $J = serve(1, sub {
    my ($path, $port, $c) = @_;
    open my $fh, '>>', "$K/hits" or die $!;
    print $fh "$path\n";
    close $fh;
    if ($path eq '/disc/.well-known/openid-configuration') {
        return (200, qq({"issuer":"https://a.test","jwks_uri":"https://127.0.0.1:$port/d"}));
    }
    if ($path eq '/disc2/.well-known/openid-configuration') {
        return (200, qq({"issuer":"https://a.test","jwks_uri":"http://127.0.0.1:$port/d"}));
    }
    my ($name) = $path =~ m{^/(\w+)$} or return (404, '{}');
    if (-e "$K/$name.hang") {
        sleep 4;
        # the client closed the connection before the answer: it gave up
        my $rin = '';
        vec($rin, fileno($c), 1) = 1;
        if (select(my $rout = $rin, undef, undef, 0) > 0 && !sysread($c, my $x, 1)) {
            open my $g, '>>', "$K/gave-up" or die $!;
            print $g "$path\n";
            close $g;
        }
    }
    my $status = slurp("$K/$name.status") || 200;
    my $cc = slurp("$K/$name.cc");
    return ($status, slurp("$K/$name.json"), $cc ? "Cache-Control: $cc\r\n" : '');
});
# an egress proxy: CONNECT host:port, then bytes both ways; each CONNECT
# is logged in $K/proxy-hits
sub proxy {
    return fork_server(sub {
        my $c = shift;
        my ($to) = head_of($c) =~ /^CONNECT (\S+) / or return;
        open my $fh, '>>', "$K/proxy-hits" or die $!;
        print $fh "CONNECT $to\n";
        close $fh;
        my $u = IO::Socket::INET->new(PeerAddr => $to) or return;
        syswrite $c, "HTTP/1.1 200 Connection established\r\n\r\n";
        my $rin = '';
        vec($rin, fileno($_), 1) = 1 for $c, $u;
        while (select(my $r = $rin, undef, undef, 5) > 0) {
            for ([$c, $u], [$u, $c]) {
                my ($from, $dst) = @$_;
                next unless vec($r, fileno($from), 1);
                sysread($from, my $data, 16384) or return;
                syswrite $dst, $data;
            }
        }
    });
}
my $P = proxy();
# a port nothing listens on: a proxy that is down
my $closed = do { my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1); my $p = $s->sockport; close $s; $p };
# an attacker's key server: any connection to it is recorded
my $E = serve(0, sub {
    open my $fh, '>>', "$K/evil-hits" or die $!;
    print $fh "$_[0]\n";
    close $fh;
    return (200, jwks('k3'));
});
sub hits { scalar grep { $_ eq $_[0] } split /\n/, slurp("$K/hits") }

spew("$K/a.json", jwks('k1'));
spew("$K/b.json", jwks('k2'));
spew("$K/c.json", jwks('k1'));
spew("$K/c.status", 503);
spew("$K/d.json", jwks('k1'));
spew("$K/p.json", jwks('k1'));
spew("$K/e.json", jwks('k1'));
spew("$K/e.cc", 'public, max-age=1');
spew("$K/big.json", '{"keys":[],"pad":"' . ('x' x 70000) . '"}');
spew("$K/notjwks.json", '{"hello":"world"}');

my ($S, $CA) = ("https://127.0.0.1:$J", "ca=$K/ca.pem");
# a <Location> with a key set by URL; the issuer is the server's
# (https://a.test) unless @extra says otherwise
sub loc {
    my ($path, $url, @extra) = @_;
    return join "\n", "<Location $path>", "    BFFJWKSURL $url", (map { "    $_" } @extra),
        "</Location>\n";
}
my $h = start_httpd('jwks84', join '', <<"CONF",
LoadModule authn_core_module "$ENV{BFF_T_LIBEXECDIR}/mod_authn_core.so"
DocumentRoot "$K"
BFFJWTAlgorithms RS256
BFFJWTIssuer https://a.test
BFFJWTCache 100 5m
<Location />
    AuthType bff-jwt
    Require bff-scope orders:read
</Location>
CONF
    loc('/a', "$S/a $CA refresh=1s min-refresh=1s kid-refresh=1h"),
    loc('/b', "$S/b $CA refresh=1h kid-refresh=1h timeout=2s", "BFFJWTIssuer https://b.test"),
    loc('/c', "$S/c $CA min-refresh=1s"),
    loc('/cdeny', "$S/c $CA min-refresh=1s cold-start=deny"),
    loc('/disc', "$S/disc/.well-known/openid-configuration $CA"),
    loc('/proxied', "$S/p $CA proxy=http://127.0.0.1:$P"),
    loc('/proxy-down', "$S/p $CA proxy=http://127.0.0.1:$closed timeout=1s"),
    loc('/maxage', "$S/e $CA refresh=1h min-refresh=1s"),
    loc('/big', "$S/big $CA"),
    loc('/notjwks', "$S/notjwks $CA"),
    loc('/disc2', "$S/disc2/.well-known/openid-configuration $CA"),
    loc('/es', "$S/d $CA", "BFFJWTAlgorithms ES256"),
    loc('/untrusted', "$S/d min-refresh=1s"),
);
my $port = $h->{port};
my $log = "$h->{dir}/error.log";
for my $d (qw(a b c cdeny disc untrusted proxied proxy-down maxage big notjwks disc2 es)) {
    make_path("$K/$d");
    spew("$K/$d/ok", "ok\n");
}

sub get { http_get($port, $_[0], Authorization => "Bearer $_[1]") }
# the status of GET $path with $token once it is $want, within $secs
sub code_within {
    my ($path, $token, $want, $secs) = @_;
    my $until = Time::HiRes::time() + ($secs // 5);
    my $code;
    while (1) {
        $code = get($path, $token)->code;
        return $code if $code == $want || Time::HiRes::time() > $until;
        sleep 0.1;
    }
}

# --- the first fetch, in the background ------------------------------------
ok t_cmp(code_within('/a/ok', tok('k1'), 200), 200, 'k1 token verifies with the fetched key set');
ok t_cmp(code_within('/b/ok', tok('k2', iss => 'https://b.test'), 200), 200,
         'the second location verifies with its own key set');

# --- unknown kid: one early refresh, never a storm ----------------------------------
my $b0 = hits('/b');
ok t_cmp($b0, 1, '/b was fetched once (refresh=1h)');
spew("$K/b.json", jwks('k2', 'k3'));
ok t_cmp(get('/b/ok', tok('k3', iss => 'https://b.test'))->code, 401,
         'a kid not known yet: 401 (no fetch in the request)');
ok t_cmp(code_within('/b/ok', tok('k3', iss => 'https://b.test'), 200), 200,
         'after the early refresh the new kid verifies');
for my $i (1 .. 20) {
    get('/b/ok', jwt(alg => 'RS256', kid => "forged-$i", key => $priv{k1},
                     claims => claims_ok(iss => 'https://b.test')));
}

# --- key sets per location ------------------------------------------------------
ok t_cmp(get('/b/ok', tok('k1', iss => 'https://b.test'))->code, 401, "a's key is refused at /b");
ok t_cmp(get('/a/ok', tok('k2'))->code, 401, "b's key is refused at /a");
ok t_cmp(get('/b/ok', tok('k2'))->code, 401, "/b refuses a's issuer with its own key");

sleep 1;
ok t_cmp(hits('/b'), 2, '20 forged kids and a foreign one: no further fetch (kid-refresh=1h)');

# --- jku / x5u are never fetched --------------------------------------------------
my $evil = tok('k3', header => { jku => "http://127.0.0.1:$E/jwks", x5u => "http://127.0.0.1:$E/cert" });
ok t_cmp(get('/a/ok', $evil)->code, 401, 'a token naming its own jku: 401');
sleep 1.5;
ok t_cmp(slurp("$K/evil-hits"), '', 'the jku / x5u server saw no request');

# --- rotation -----------------------------------------------------------------------
my $old = tok('k1');
ok t_cmp(get('/a/ok', $old)->code, 200, 'k1 token verifies (and is cached)');
ok t_cmp(get('/a/ok', $old)->code, 200, 'k1 token again');
spew("$K/a.json", jwks('k2'));
ok t_cmp(code_within('/a/ok', tok('k2'), 200), 200, 'after the refresh: k2 token verifies');
ok t_cmp(get('/a/ok', $old)->code, 401, 'after the refresh: the removed key\'s cached token: 401');
ok t_cmp(get('/a/ok', tok('k1'))->code, 401, 'after the refresh: a new token of the removed key: 401');
like slurp($log), qr/BFF141: JWKS https:\/\/127\.0\.0\.1:$J\/a: new key set \(generation 2/,
     'BFF141 logs the new key set';

# --- provider down: the last good key set keeps serving ---------------------------
spew("$K/a.status", 500);
my $n = hits('/a');
sleep 2.5;
ok hits('/a') > $n, 'the refreshes go on while the provider is down';
ok t_cmp(get('/a/ok', tok('k2'))->code, 200, 'provider down: the last good key set keeps serving');
like slurp($log), qr/BFF140: JWKS https:\/\/127\.0\.0\.1:$J\/a: fetch failed \(\d+ in a row\): HTTP 500; the last good key set keeps serving/,
     'BFF140: the failure, and that the last good set serves';
# a graceful restart while the provider is down: the new children
# start with the key set the old ones fetched
system(Apache::Test::vars('httpd'), '-f', "$h->{dir}/httpd.conf", '-k', 'graceful') == 0
    or die 'graceful restart failed';
sleep 1.5;
ok t_cmp(join(',', map { get('/a/ok', tok('k2'))->code } 1 .. 6), '200,200,200,200,200,200',
         'after a graceful restart with the provider down: the key set kept');
# again with the sources in another order (the /a section moved last),
# while a fetch of /a hangs (4 s, under its 5 s timeout): each key set
# follows its URL to its new place in the table, the stopping child
# gives its fetch up at once, and the new children fetch /a at once
# rather than wait for it
spew("$K/a.hang", 1);
$n = hits('/a');
ok wait_for(sub { hits('/a') > $n }, 5), 'a fetch of /a is in flight (its provider hangs)';
my $conf = slurp("$h->{dir}/httpd.conf");
$conf =~ s{(<Location /a>\n.*?</Location>\n)}{}s or die 'no /a section';
spew("$h->{dir}/httpd.conf", $conf . $1);
system(Apache::Test::vars('httpd'), '-f', "$h->{dir}/httpd.conf", '-k', 'graceful') == 0
    or die 'graceful restart failed';
unlink "$K/a.hang";
$n = hits('/a');
ok wait_for(sub { hits('/a') > $n }, 5), 'after the restart the new children fetch /a within 5 s (its fetch in flight took no slot with it)';
wait_for(sub { slurp("$K/gave-up") ne '' }, 6);
ok t_cmp(slurp("$K/gave-up"), "/a\n", 'the stopping child closed its hanging fetch of /a before the answer');
ok t_cmp(join(',', map { get('/a/ok', tok('k2'))->code } 1 .. 4)
         . ';' . join(',', map { get('/b/ok', tok('k3', iss => 'https://b.test'))->code } 1 .. 4),
         '200,200,200,200;200,200,200,200',
         'after a restart that reorders the sources: each key set still serves its location');
unlink "$K/a.status";

# --- cold start with the provider down -----------------------------------------------
my $r = get('/c/ok', tok('k1'));
ok t_cmp($r->code, 503, 'cold start, provider down: 503 (cold-start=unavailable)');
ok(($r->header('Retry-After') // '') =~ /^\d+$/, 'with Retry-After');
ok t_cmp(get('/cdeny/ok', tok('k1'))->code, 401, 'cold start, provider down: 401 (cold-start=deny)');
like slurp($log), qr/BFF144: no JWKS from https:\/\/127\.0\.0\.1:$J\/c yet: 503 \(cold-start=unavailable\)/,
     'BFF144: the cold-start answer';
like slurp($log), qr/BFF140: JWKS https:\/\/127\.0\.0\.1:$J\/c: fetch failed \(\d+ in a row\): HTTP 503; no key set yet/,
     'BFF140: the failed first fetch';
unlink "$K/c.status";
ok t_cmp(code_within('/c/ok', tok('k1'), 200), 200, 'the provider is back: 200');
ok t_cmp(get('/cdeny/ok', tok('k1'))->code, 200, 'the same source serves the deny location');

# --- OpenID discovery ----------------------------------------------------------------------
ok t_cmp(code_within('/disc/ok', tok('k1'), 200), 200, 'discovery: the keys at its jwks_uri');

# --- the egress proxy ---------------------------------------------------------------
ok t_cmp(code_within('/proxied/ok', tok('k1'), 200), 200, 'proxy=: the keys came through the proxy');
like slurp("$K/proxy-hits"), qr/^CONNECT 127\.0\.0\.1:$J$/m, 'the proxy saw the CONNECT to the provider';
ok t_cmp(get('/proxy-down/ok', tok('k1'))->code, 503, 'proxy= down: no key set (503), no direct fetch');

# --- Cache-Control: max-age of the provider -------------------------------------------
my $e0 = hits('/e');
sleep 3;
ok hits('/e') >= $e0 + 2, 'max-age=1 refreshes about every second (refresh=1h without it)';

# --- an untrusted certificate: no key set, and why ------------------------------------------
ok t_cmp(get('/untrusted/ok', tok('k1'))->code, 503, 'a provider the CA does not vouch for: no keys (503)');
like slurp($log), qr/BFF140: JWKS https:\/\/127\.0\.0\.1:$J\/d: fetch failed .*certificate/i,
     'BFF140 names the TLS failure';

# --- what is no usable key set is never used --------------------------------------------
ok t_cmp(get('/big/ok', tok('k1'))->code, 503, 'a JWKS over 64k: no key set (503)');
like slurp($log), qr/BFF140: JWKS https:\/\/127\.0\.0\.1:$J\/big: fetch failed \(\d+ in a row\): response too large/,
     'BFF140: response too large';
ok t_cmp(get('/notjwks/ok', tok('k1'))->code, 503, 'a document without keys: no key set (503)');
like slurp($log), qr/BFF140: JWKS https:\/\/127\.0\.0\.1:$J\/notjwks: fetch failed \(\d+ in a row\): https:\/\/127\.0\.0\.1:$J\/notjwks: no "keys" array/,
     'BFF140: no "keys" array';
ok t_cmp(get('/disc2/ok', tok('k1'))->code, 503, 'a discovery document naming an http:// jwks_uri: no key set (503)');
like slurp($log), qr/BFF140: JWKS \S+\/disc2\/\.well-known\/openid-configuration: fetch failed \(\d+ in a row\): discovery document: jwks_uri: not an https:\/\/ URL/,
     'BFF140: the jwks_uri refused';
ok t_cmp(code_within('/es/ok', tok('k1'), 503), 503, 'RSA keys for a location that allows ES256 only: 503');
like slurp($log), qr/BFF143: JWKS of https:\/\/127\.0\.0\.1:$J\/d: no key usable with the allowed algorithms \(ES256\); no key set to verify tokens with/,
     'BFF143: the key set is of no use here';
