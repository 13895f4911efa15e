# https:// backends with BFFBackendTLS, against TLS backends of the test's
# own (IO::Socket::SSL, one process per connection, keep-alive), with a
# CA, server, wrong-host and client certificates made by the openssl CLI:
# a trusted backend answers; an untrusted certificate, a wrong host name
# a missing client certificate and a version under min-tls fail the call
# with a BFF710 line naming the backend and the TLS reason; verify=off
# accepts any certificate; the server's settings serve backends without
# their own, and an https upstream instance gets its backend's; a client key that only root may
# read serves children running as nobody (read once, at start-up);
# connections are never shared between different TLS settings; the
# health probe presents the client certificate too.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Time::HiRes qw(sleep);
use BFFTest;
use BFFTLS ();

plan tests => 43;

my $client = $ENV{BFF_T_CLIENT} // 'native';
my $K = BFFTLS::pki_dir('tls82');

# --- certificates ------------------------------------------------------
sub leaf { BFFTLS::leaf($K, @_) }
BFFTLS::ca($K, $_) for 'ca', 'other-ca';
leaf('server', '/CN=127.0.0.1', "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
leaf('wrong', '/CN=wrong.example', "subjectAltName=DNS:wrong.example\nextendedKeyUsage=serverAuth");
leaf('client', '/CN=bff-gateway', "extendedKeyUsage=clientAuth");
leaf('stranger', '/CN=stranger', "extendedKeyUsage=clientAuth", 'other-ca');
chmod 0600, "$K/client.key";

# --- TLS backends (t/lib/BFFTLS.pm) --------------------------------------
sub tls_server { BFFTLS::server($K, @_) }

my $A = tls_server(cert => 'server');                 # client certificate optional
my $B = tls_server(cert => 'wrong');                  # a certificate for wrong.example
my $C = tls_server(cert => 'server', require => 1);   # client certificate required
my $D = tls_server(cert => 'server', version => 'TLSv1_2');   # TLS 1.2 only

my $CA = "ca=$K/ca.pem";
my $MTLS = "$CA cert=$K/client.pem key=$K/client.key";
my $h = start_httpd('tls82', <<"CONF");
BFFHTTPClient $client
BFFTimeout 3s
BFFHealthProbe interval=200ms timeout=1s path=/health
BFFBackendTLS * $CA
BFFUpstream tlsup https://127.0.0.1:$C
<Location /health>
    SetHandler bff-health
</Location>
<BFFEndpoint GET /trusted>
    BFFBackend a GET https://127.0.0.1:$A/a required
    BFFBackendTLS a $CA
</BFFEndpoint>
<BFFEndpoint GET /untrusted>
    BFFBackend a GET https://127.0.0.1:$A/a required
    BFFBackendTLS a verify=on
</BFFEndpoint>
<BFFEndpoint GET /server-default>
    BFFBackend a GET https://127.0.0.1:$A/a required
</BFFEndpoint>
<BFFEndpoint GET /upstream>
    BFFBackend a GET http://tlsup/a required
    BFFBackendTLS a $MTLS
</BFFEndpoint>
<BFFEndpoint GET /other-ca>
    BFFBackend a GET https://127.0.0.1:$A/a required
    BFFBackendTLS a ca=$K/other-ca.pem
</BFFEndpoint>
<BFFEndpoint GET /wrong-host>
    BFFBackend a GET https://127.0.0.1:$B/a required
    BFFBackendTLS * $CA
</BFFEndpoint>
<BFFEndpoint GET /server-name>
    BFFBackend a GET https://127.0.0.1:$B/a required
    BFFBackendTLS a $CA server-name=wrong.example
</BFFEndpoint>
<BFFEndpoint GET /no-verify>
    BFFBackend a GET https://127.0.0.1:$B/a required
    BFFBackendTLS a verify=off
</BFFEndpoint>
<BFFEndpoint GET /tls12>
    BFFBackend a GET https://127.0.0.1:$D/a required
    BFFBackendTLS a $CA min-tls=1.2
</BFFEndpoint>
<BFFEndpoint GET /tls13>
    BFFBackend a GET https://127.0.0.1:$D/a required
    BFFBackendTLS a $CA min-tls=1.3
</BFFEndpoint>
<BFFEndpoint GET /mtls>
    BFFBackend a GET https://127.0.0.1:$C/a required
    BFFBackendTLS a $MTLS min-tls=1.2
</BFFEndpoint>
<BFFEndpoint GET /mtls-missing>
    BFFBackend a GET https://127.0.0.1:$C/a required
    BFFBackendTLS a $CA
</BFFEndpoint>
<BFFEndpoint GET /partial>
    BFFBackend good GET https://127.0.0.1:$A/good required
    BFFBackend bad  GET https://127.0.0.1:$C/bad default=[]
    BFFBackendTLS * $CA
</BFFEndpoint>
<BFFEndpoint GET /items>
    BFFBackend src   GET https://127.0.0.1:$A/src required
    BFFBackend items GET https://127.0.0.1:$C/i/{src.items[].id} per-item default=[]
</BFFEndpoint>
<BFFEndpoint GET /mix>
    BFFBackend first  GET https://127.0.0.1:$A/first required
    BFFBackend second GET https://127.0.0.1:$A/second/{first.conn} required
    BFFBackend third  GET https://127.0.0.1:$A/third/{second.conn} required
    BFFBackendTLS first $MTLS
    BFFBackendTLS second $CA
    BFFBackendTLS third $MTLS
</BFFEndpoint>
CONF
my $port = $h->{port};
my $log = "$h->{dir}/error.log";

sub get { http_get($port, $_[0]) }
sub log_has { BFFTLS::log_has($log, @_) }

# --- trusted ----------------------------------------------------------
my $r = get('/trusted');
ok t_cmp($r->code, 200, 'trusted: 200');
ok t_cmp($r->{json}{a}{path}, '/a', 'trusted: the backend\'s data');
ok !defined $r->{json}{a}{client}, 'trusted: no client certificate sent';

# the server's BFFBackendTLS * serves backends without their own
$r = get('/server-default');
ok t_cmp($r->code, 200, 'the server-level settings (its CA): 200');
# an upstream's https instance gets the backend's settings
$r = get('/upstream');
ok t_cmp($r->code, 200, 'an https upstream instance with a client certificate: 200');
like $r->{json}{a}{client} // '', qr/CN\s*=\s*bff-gateway/, 'the upstream instance saw the certificate';

# --- untrusted: the system CAs do not know the test CA ----------------
# (the backend's own settings replace the server's: no CA of the server's)
$r = get('/untrusted');
ok t_cmp($r->code, 502, 'untrusted: 502');
ok log_has(qr/BFF710: GET \/untrusted: backend 'a': TLS failure with https:\/\/127\.0\.0\.1:$A\/a: .*certificate/),
   'untrusted: BFF710 names the backend and the reason';
$r = get('/other-ca');
ok t_cmp($r->code, 502, 'a certificate of another CA: 502');
ok log_has(qr/BFF710: GET \/other-ca: backend 'a': TLS failure/), 'another CA: BFF710';

# --- host name ----------------------------------------------------------
$r = get('/wrong-host');
ok t_cmp($r->code, 502, 'wrong host name: 502');
ok log_has(qr/BFF710: GET \/wrong-host: backend 'a': TLS failure with [^:]+:[^:]+:$B\/a: .*(?:127\.0\.0\.1|wrong\.example|match)/i),
   'wrong host name: BFF710 with the reason';
$r = get('/server-name');
ok t_cmp($r->code, 200, 'server-name=wrong.example: 200');
ok t_cmp($r->{json}{a}{path}, '/a', 'server-name: the backend\'s data');

# verify=off: an unknown CA and another host name are accepted
$r = get('/no-verify');
ok t_cmp($r->code, 200, 'verify=off: 200 from a backend that would not verify');

# --- minimum version ------------------------------------------------------
$r = get('/tls12');
ok t_cmp($r->code, 200, 'min-tls=1.2 with a TLS 1.2 backend: 200');
$r = get('/tls13');
ok t_cmp($r->code, 502, 'min-tls=1.3 with a TLS 1.2 backend: 502');
ok log_has(qr/BFF710: GET \/tls13: backend 'a': TLS failure with https:\/\/127\.0\.0\.1:$D\/a: /),
   'min-tls=1.3: BFF710';

# --- client certificates -------------------------------------------------
$r = get('/mtls');
ok t_cmp($r->code, 200, 'client certificate required and given: 200');
like $r->{json}{a}{client} // '', qr/CN\s*=\s*bff-gateway/, 'the backend saw the gateway\'s certificate';
$r = get('/mtls-missing');
ok t_cmp($r->code, 502, 'client certificate required and missing: 502');
ok log_has(qr/BFF710: GET \/mtls-missing: backend 'a': TLS failure with https:\/\/127\.0\.0\.1:$C\/a: /),
   'missing client certificate: BFF710';
$r = get('/partial');
ok t_cmp($r->code, 200, 'an optional backend failing TLS: 200');
ok t_cmp($r->header('X-BFF-Completed'), 'false', 'partial answer');
ok t_cmp($r->{json}{bad}, [], 'its default');
ok t_cmp($r->{json}{_errors}{bad}{reason}, 'connect error', 'reason: connect error');
ok t_cmp($r->{json}{good}{path}, '/good', 'the other backend answered');

# per-item calls: each item's TLS failure has its line
$r = get('/items');
ok t_cmp($r->code, 200, 'per-item calls failing TLS: partial answer');
ok log_has(qr/BFF710: GET \/items: backend 'items': TLS failure with https:\/\/127\.0\.0\.1:$C\/i\/2: /),
   'per-item: BFF710 names the item\'s URL';

# --- the key only root may read ----------------------------------------
my @st = stat "$K/client.key";
ok $st[4] == 0 && ($st[2] & 0777) == 0600, 'client.key: owned by root, mode 0600'
    or diag sprintf 'uid %d mode %o', $st[4], $st[2] & 0777;
SKIP: {
    skip 'not root: children run as the same user', 1 unless $> == 0;
    my $rc = system('setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
                    'sh', '-c', "cat '$K/client.key' >/dev/null 2>&1");
    ok $rc != 0, 'the children\'s user (nobody) cannot read it';
}
# read at start-up only: gone from disk, still presented
rename "$K/client.key", "$K/client.key.away" or die $!;
$r = get('/mtls');
ok t_cmp($r->code, 200, 'key file gone: still 200 (the key is in memory)');
rename "$K/client.key.away", "$K/client.key";

# --- connections never mix TLS settings ----------------------------------
# first and third (same settings) may share a kept-alive connection;
# second (no client certificate) must never get one of theirs
my ($mixed, $reused) = (0, 0);
for (1 .. 5) {
    $r = get('/mix');
    my $j = $r->{json};
    $mixed++ if $r->code != 200 || defined $j->{second}{client}
        || $j->{second}{conn} == $j->{first}{conn};
    $reused++ if $r->code == 200 && $j->{third}{conn} == $j->{first}{conn}
        && defined $j->{third}{client};
}
ok t_cmp($mixed, 0, 'a call without a client certificate never took a connection that has one');
ok $reused > 0, "calls with equal settings do share connections ($reused of 5): the check above can fail";
ok t_cmp($r->{json}{first}{client} // '', qr/bff-gateway/, 'first: with the client certificate');
ok !defined $r->{json}{second}{client}, 'second: without';

# --- the health probe uses the backends' TLS settings --------------------
my $origin = "https://127.0.0.1:$C";
my $e = {};
my $until = Time::HiRes::time() + 4;
while (($e->{probe} // '') ne 'up' && Time::HiRes::time() < $until) {
    my $hr = http_get($port, '/health');
    ($e) = grep { $_->{backend} eq $origin } @{ $hr->{json}{backends} // [] };
    $e //= {};
    sleep 0.1;
}
ok t_cmp($e->{probe}, 'up', 'the probe presents the client certificate the backend requires');
# the untrusted origin is probed with the trusted endpoint's settings (the first backend's)
my ($ea) = grep { $_->{backend} eq "https://127.0.0.1:$A" } @{ http_get($port, '/health')->{json}{backends} // [] };
ok t_cmp(($ea // {})->{probe}, 'up', 'origin A probed with the CA of its first backend');

# the probe of the wrong-host origin (with /wrong-host's settings) says why
ok log_has(qr/BFF713: health probe https:\/\/127\.0\.0\.1:$B\/health: TLS failure: .*(?:match|name)/i),
   'the probe\'s TLS failure: BFF713 with the reason';

# --- every failure above named its backend ------------------------------
my $text = slurp($log);
my $n = () = $text =~ /BFF710:/g;
ok $n >= 6, "BFF710 lines: $n";
unlike $text, qr/BFF710: GET \/(?:trusted|server-default|upstream|server-name|no-verify|tls12|mtls|mix):/, 'no BFF710 for calls that succeeded';
ok $text !~ /BFF710: .*\/good:/, 'no BFF710 for the backend that answered';
stop_httpd($h);
ok 1, 'stopped';
