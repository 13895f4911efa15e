# BFFBackendTLS: an encrypted client key with key-pass-file= (the backend
# sees the certificate, the passphrase file readable by root only); CRLs
# with crl= (a revoked backend certificate fails with a BFF710 line
# naming the revocation, the same certificate passes without crl=, an
# unrevoked one passes with it); the client certificate and key files
# replaced on disk and a graceful restart: the new generation presents
# the new certificate; apache2 -t refuses a wrong passphrase, a missing
# one, a key of another certificate and a file that holds no CRL.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Copy qw(copy);
use Time::HiRes qw(sleep);
use BFFTest;
use BFFTLS ();
use BFFConfTest qw(refused);

plan tests => 21;

my $client = $ENV{BFF_T_CLIENT} // 'native';
my $K = BFFTLS::pki_dir('tls87');
sub run { BFFTLS::run(@_) }

# --- certificates ------------------------------------------------------
BFFTLS::ca($K, 'ca');
my $srv_ext = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth";
BFFTLS::leaf($K, 'server', '/CN=127.0.0.1', $srv_ext);
BFFTLS::leaf($K, 'revoked', '/CN=127.0.0.1', $srv_ext);
BFFTLS::leaf($K, $_, "/CN=bff-$_", "extendedKeyUsage=clientAuth") for 'gw1', 'gw2';

# the passphrase in a file only root reads, the key encrypted with it
BFFTLS::spew("$K/pass.txt", "correct horse battery\n");
chmod 0600, "$K/pass.txt";
BFFTLS::spew("$K/wrong-pass.txt", "incorrect horse\n");
run("openssl pkey -in '$K/gw1.key' -aes256 -passout 'file:$K/pass.txt' -out '$K/gw1-enc.key'");
ok t_cmp(slurp("$K/gw1-enc.key"), qr/^-----BEGIN ENCRYPTED PRIVATE KEY-----/, 'the key is encrypted');

# a CRL of the CA revoking revoked.pem (openssl ca's own database)
BFFTLS::spew("$K/index.txt", '');
BFFTLS::spew("$K/crlnumber", "01\n");
BFFTLS::spew("$K/ca.cnf", "[ca]\ndefault_ca=d\n[d]\ndatabase=$K/index.txt\ncrlnumber=$K/crlnumber\n"
                        . "default_md=sha256\ndefault_crl_days=2\n");
run("openssl ca -config '$K/ca.cnf' -keyfile '$K/ca.key' -cert '$K/ca.pem' -revoke '$K/revoked.pem'");
run("openssl ca -config '$K/ca.cnf' -keyfile '$K/ca.key' -cert '$K/ca.pem' -gencrl -out '$K/crl.pem'");

# the files the rotation replaces: gw1 first
copy("$K/gw1.pem", "$K/live.pem") or die $!;
copy("$K/gw1.key", "$K/live.key") or die $!;
chmod 0600, "$K/live.key";

# --- backends and gateway ----------------------------------------------
my $A = BFFTLS::server($K, cert => 'server');                # no client certificate needed
my $C = BFFTLS::server($K, cert => 'server', require => 1);  # client certificate required
my $R = BFFTLS::server($K, cert => 'revoked');               # a revoked certificate

my $CA = "ca=$K/ca.pem";
my $conf = <<"CONF";
BFFHTTPClient $client
BFFTimeout 3s
<BFFEndpoint GET /enc>
    BFFBackend a GET https://127.0.0.1:$C/a required
    BFFBackendTLS a $CA cert=$K/gw1.pem key=$K/gw1-enc.key key-pass-file=$K/pass.txt
</BFFEndpoint>
<BFFEndpoint GET /crl-good>
    BFFBackend a GET https://127.0.0.1:$A/a required
    BFFBackendTLS a $CA crl=$K/crl.pem
</BFFEndpoint>
<BFFEndpoint GET /crl-revoked>
    BFFBackend a GET https://127.0.0.1:$R/a required
    BFFBackendTLS a $CA crl=$K/crl.pem
</BFFEndpoint>
<BFFEndpoint GET /no-crl>
    BFFBackend a GET https://127.0.0.1:$R/a required
    BFFBackendTLS a $CA
</BFFEndpoint>
<BFFEndpoint GET /rotate>
    BFFBackend a GET https://127.0.0.1:$C/a required
    BFFBackendTLS a $CA cert=$K/live.pem key=$K/live.key
</BFFEndpoint>
CONF
my $h = start_httpd('tls87', $conf);
my $port = $h->{port};
my $log = "$h->{dir}/error.log";
sub get { http_get($port, $_[0]) }
sub log_has { BFFTLS::log_has($log, @_) }

# --- an encrypted key --------------------------------------------------
my $r = get('/enc');
ok t_cmp($r->code, 200, 'an encrypted client key with key-pass-file=: 200');
ok t_cmp($r->{json}{a}{client} // '', qr/CN\s*=\s*bff-gw1/, 'the backend saw the client certificate');
ok !(slurp($log) =~ /correct horse/), 'the passphrase is not in the error log';

# --- CRLs ----------------------------------------------------------------
$r = get('/crl-good');
ok t_cmp($r->code, 200, 'crl= and a certificate it does not revoke: 200');
$r = get('/crl-revoked');
ok t_cmp($r->code, 502, 'crl= and a revoked backend certificate: 502');
ok log_has(qr/BFF710: GET \/crl-revoked: backend 'a': TLS failure with https:\/\/127\.0\.0\.1:$R\/a: .*certificate revoked/),
    'BFF710 names the revocation';
$r = get('/no-crl');
ok t_cmp($r->code, 200, 'the same certificate without crl=: 200 (the CRL refused it)');

# --- graceful restart with new key files --------------------------------
$r = get('/rotate');
ok t_cmp($r->{json}{a}{client} // '', qr/CN\s*=\s*bff-gw1/, 'before: the gw1 certificate');
copy("$K/gw2.pem", "$K/live.pem") or die $!;
copy("$K/gw2.key", "$K/live.key") or die $!;
$r = get('/rotate');
ok t_cmp($r->{json}{a}{client} // '', qr/CN\s*=\s*bff-gw1/,
         'files replaced, no restart: still gw1 (read at start-up only)');
my $gens = sub { my $n = () = slurp($log) =~ /resuming normal operations/g; $n };
my $gen = $gens->();
my $httpd = Apache::Test::vars('httpd');
ok t_cmp(system($httpd, '-f', "$h->{dir}/httpd.conf", '-k', 'graceful'), 0, 'graceful restart');
my $until = Time::HiRes::time() + 10;
sleep 0.1 while $gens->() <= $gen && Time::HiRes::time() < $until;
ok t_cmp($gens->(), $gen + 1, 'a new generation started');
# the old generation's children stop accepting: poll until gw2 shows
my $seen = '';
while (Time::HiRes::time() < $until) {
    $seen = get('/rotate')->{json}{a}{client} // '';
    last if $seen =~ /bff-gw2/;
    sleep 0.2;
}
ok t_cmp($seen, qr/CN\s*=\s*bff-gw2/, 'after: the backend sees the gw2 certificate');
my @after = map { get('/rotate')->{json}{a}{client} // '' } 1 .. 4;
ok t_cmp(scalar(grep { /bff-gw2/ } @after), 4, 'and only it');

# --- configtest ---------------------------------------------------------
sub ep { "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET https://127.0.0.1:1/a/{id}\n"
         . " BFFBackendTLS a $_[0]\n</BFFEndpoint>" }
refused(ep("$CA cert=$K/gw1.pem key=$K/gw1-enc.key key-pass-file=$K/wrong-pass.txt"),
        qr/BFFBackendTLS a: key \S+gw1-enc\.key: cannot decrypt the private key with the passphrase of key-pass-file=\S+wrong-pass\.txt \(wrong passphrase\?\)/,
        'a wrong passphrase');
refused(ep("$CA cert=$K/gw1.pem key=$K/gw1-enc.key"),
        qr/key \S+gw1-enc\.key: the private key is encrypted: give its passphrase .*key-pass-file=FILE/,
        'an encrypted key without key-pass-file=');
refused(ep("$CA cert=$K/gw1.pem key=$K/gw1.key key-pass-file=$K/pass.txt"),
        qr/key-pass-file=\S+pass\.txt: the private key \S+gw1\.key is not encrypted/,
        'key-pass-file= for a key that is not encrypted');
refused(ep("$CA cert=$K/gw1.pem key=$K/gw2.key"),
        qr/key \S+gw2\.key: not the private key of cert \S+gw1\.pem/,
        'a key of another certificate (a half-done rotation)');
refused(ep("$CA crl=$K/ca.pem"), qr/crl \S+ca\.pem: no PEM certificate revocation list in it/,
        'a crl= file without a CRL');
refused(ep("$CA crl=$K/none.pem"), qr/crl \S+none\.pem: cannot open/, 'a missing crl= file');
refused(ep("verify=off crl=$K/crl.pem"), qr/verify=off with ca=, ca-path= or crl=/,
        'crl= with verify=off');
