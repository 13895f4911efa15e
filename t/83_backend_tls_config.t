# BFFBackendTLS at configtest: every bad option, a missing or wrong file,
# a key without its certificate, a name that is no backend, are errors
# naming the directive; verify=off is accepted with a warning (BFF711).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use BFFConfTest qw(configtest refused accepted endpoint_conf);

plan tests => 29;

my $K = Apache::Test::vars('t_logs') . '/tls83';
remove_tree($K);
make_path("$K/cas", "$K/nocas");

sub run {
    my $cmd = shift;
    my $out = `$cmd 2>&1`;
    die "failed: $cmd\n$out" if $?;
    return $out;
}
run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '$K/ca.key'");
run("openssl req -x509 -new -key '$K/ca.key' -subj '/CN=BFF test CA' -days 2 -out '$K/ca.pem'");
run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '$K/client.key'");
run("openssl req -x509 -new -key '$K/client.key' -subj '/CN=client' -days 2 -out '$K/client.pem'");
run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes128 -pass pass:secret -out '$K/enc.key'");
run("cp '$K/ca.pem' '$K/cas/ca.pem'");
open my $fh, '>', "$K/nocas/README" or die $!;
print $fh "nothing\n";
close $fh;

sub endpoint { endpoint_conf('https', @_) }

my $MTLS = "ca=$K/ca.pem cert=$K/client.pem key=$K/client.key";

accepted(endpoint("BFFBackendTLS account $MTLS min-tls=1.3 server-name=api.internal",
                  "BFFBackendTLS * ca-path=$K/cas"), undef, 'per backend and per endpoint');
accepted("BFFBackendTLS * ca=$K/ca.pem min-tls=1.2\n" . endpoint(), undef, 'server level');
accepted(endpoint('BFFBackendTLS orders verify=off'),
         qr/BFF711: BFFBackendTLS orders at \S+:4: verify=off: the backend's certificate and host name are not checked/,
         'verify=off');

refused(endpoint('BFFBackendTLS account ca=/nonexistent/ca.pem'),
        qr/BFFBackendTLS account: ca \/nonexistent\/ca\.pem: cannot open/, 'a missing CA file');
refused(endpoint("BFFBackendTLS account ca=$K/ca.pem cert=$K/client.pem key=/nonexistent/k.pem"),
        qr/BFFBackendTLS account: key \/nonexistent\/k\.pem: cannot open/, 'a missing key file');
refused(endpoint("BFFBackendTLS account key=$K/client.key"),
        qr/BFFBackendTLS account: key=\S+ without cert=/, 'a key without its certificate');
refused(endpoint("BFFBackendTLS account cert=$K/client.pem"),
        qr/BFFBackendTLS account: cert=\S+ without key=/, 'a certificate without its key');
refused(endpoint('BFFBackendTLS account min-tls=1.1'),
        qr/BFFBackendTLS account: min-tls=: expected min-tls=1\.2 or min-tls=1\.3/, 'min-tls=1.1');
refused(endpoint('BFFBackendTLS account cipher=NULL'),
        qr/BFFBackendTLS account: unknown option 'cipher='/, 'an unknown option');
refused(endpoint('BFFBackendTLS account verify=maybe'),
        qr/verify=maybe: expected on or off/, 'verify=maybe');
refused(endpoint('BFFBackendTLS account'), qr/BFFBackendTLS account: no option/, 'no option');
refused(endpoint("BFFBackendTLS acount ca=$K/ca.pem"),
        qr/BFFBackendTLS acount: not a backend of this endpoint/, 'a misspelt backend');
refused("BFFBackendTLS account ca=$K/ca.pem\n" . endpoint(),
        qr/BFFBackendTLS account: outside <BFFEndpoint> only \*/, 'a backend name at server level');
refused(endpoint("BFFBackendTLS account ca=$K/ca.pem", "BFFBackendTLS account ca=$K/ca.pem"),
        qr/BFFBackendTLS account: given twice/, 'given twice');
refused(endpoint("BFFBackendTLS account cert=$K/client.pem key=$K/enc.key"),
        qr/key \S+enc\.key: the private key is encrypted/, 'an encrypted key');
refused(endpoint("BFFBackendTLS account cert=$K/client.key key=$K/client.key"),
        qr/cert \S+client\.key: no PEM certificate in it/, 'a key given as the certificate');
refused(endpoint("BFFBackendTLS account ca=$K/client.key"),
        qr/ca \S+client\.key: no PEM certificate in it/, 'a key given as the CA');
refused(endpoint("BFFBackendTLS account ca-path=$K/nocas"),
        qr/ca-path \S+nocas: no PEM certificate in its files/, 'a CA directory without certificates');
refused(endpoint("BFFBackendTLS account verify=off ca=$K/ca.pem"),
        qr/verify=off with ca=/, 'verify=off with a CA');
refused(endpoint('BFFBackendTLS account server-name=a/b'),
        qr/server-name=: not a host name/, 'a bad server-name');
refused(endpoint_conf('http', "BFFBackendTLS account ca=$K/ca.pem"),
        qr/BFF712: BFFBackendTLS account in <BFFEndpoint GET \/p\/\{id:int\}> at \S+:1: the backend calls http:\/\/127\.0\.0\.1:1\/a\/\{id\}, without TLS/,
        'TLS settings for an http:// backend');
accepted("BFFUpstream up http://127.0.0.1:1 https://127.0.0.1:2\n"
         . "<BFFEndpoint GET /u/{id:int}>\n BFFBackend account GET http://up/a/{id}\n"
         . " BFFBackendTLS account ca=$K/ca.pem\n</BFFEndpoint>",
         undef, 'TLS settings for an upstream with an https instance');
accepted(endpoint_conf('http', "BFFBackendTLS * ca=$K/ca.pem"), undef,
         'BFFBackendTLS * over http:// backends (some of an endpoint may be https)');
my ($rc, $out) = configtest(endpoint('BFFBackendTLS account min-tls=1.0'));
like $out, qr/line 4 of /, 'the error points at the directive\'s line';
