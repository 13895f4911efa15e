package BFFTLS;
# Certificates (openssl CLI) and TLS backends (IO::Socket::SSL) for the
# tests of https:// backends (t/82_backend_tls.t, t/87_backend_tls_keys.t).
#
#   my $K = BFFTLS::pki_dir('tls87');          # a fresh directory
#   BFFTLS::ca($K, 'ca');                      # ca.key, ca.pem
#   BFFTLS::leaf($K, 'server', '/CN=127.0.0.1', "subjectAltName=...", 'ca');
#   my $port = BFFTLS::server($K, cert => 'server', require => 1);
#   BFFTLS::log_has($error_log, qr/BFF710: .../)    # waits up to 3 s
#
# A server answers every GET with {"conn":N,"path":...,"items":[{"id":1},
# {"id":2}],"client":SUBJECT|null}: N numbers its connections, client is
# the certificate the gateway presented on that connection. Servers are
# stopped (by PID) when the test ends.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use BFFTest ();
use IO::Socket::SSL ();
use POSIX ();
use Time::HiRes ();
use Apache::Test ();

sub run {
    my $cmd = shift;
    my $out = `$cmd 2>&1`;
    die "failed: $cmd\n$out" if $?;
    return $out;
}

sub spew { open my $fh, '>', $_[0] or die "$_[0]: $!"; print $fh $_[1]; close $fh }

# 1 when the file (an error log) matches $re within 3 seconds
sub log_has {
    my ($file, $re) = @_;
    my $until = Time::HiRes::time() + 3;
    while (Time::HiRes::time() < $until) {
        return 1 if BFFTest::slurp($file) =~ $re;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

sub pki_dir {
    my $K = Apache::Test::vars('t_logs') . "/$_[0]";
    remove_tree($K);
    make_path($K);
    chmod 0755, $K;
    return $K;
}

sub ca {
    my ($K, $ca) = @_;
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '$K/$ca.key'");
    run("openssl req -x509 -new -key '$K/$ca.key' -subj '/CN=BFF test $ca' -days 2 -out '$K/$ca.pem'");
}

sub leaf {
    my ($K, $name, $subj, $ext, $ca) = @_;
    $ca //= 'ca';
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '$K/$name.key'");
    run("openssl req -new -key '$K/$name.key' -subj '$subj' -out '$K/$name.csr'");
    spew("$K/$name.ext", "$ext\n");
    run("openssl x509 -req -in '$K/$name.csr' -CA '$K/$ca.pem' -CAkey '$K/$ca.key' "
        . "-CAcreateserial -days 2 -extfile '$K/$name.ext' -out '$K/$name.pem'");
}

# After refusing a handshake: with TLS 1.3 the client has already sent its
# request when the server's alert leaves, and closing with that request
# unread would reset the connection, which may destroy the alert before
# the client reads it. Drain, then close, as httpd's lingering close does.
sub linger {
    my $c = shift;
    shutdown $c, 1;
    my ($rin, $buf) = ('', '');
    vec($rin, fileno($c), 1) = 1;
    while (select(my $r = $rin, undef, undef, 2) > 0) {
        last unless sysread $c, $buf, 4096;
    }
    POSIX::_exit(0);
}

# server($K, cert => NAME, require => 1 (a client certificate),
#        version => 'TLSv1_2'): a TLS backend on a free port, one process
# per connection (BFFTest::fork_server), keep-alive. Returns the port.
sub server {
    my ($K, %o) = @_;
    return BFFTest::fork_server(sub {
        my ($c, $port, $n) = @_;
        IO::Socket::SSL->start_SSL($c, SSL_server => 1,
            SSL_cert_file => "$K/$o{cert}.pem", SSL_key_file => "$K/$o{cert}.key",
            SSL_ca_file => "$K/ca.pem",
            ($o{version} ? (SSL_version => $o{version}) : ()),
            SSL_verify_mode => $o{require} ? 0x03 : 0x01) or linger($c);
        my $who = $c->peer_certificate('subject');
        my $buf = '';
        while (1) {
            while ($buf !~ /\r\n\r\n/) {
                my $r = sysread($c, $buf, 4096, length $buf);
                POSIX::_exit(0) unless $r;
            }
            $buf =~ s/^(.*?)\r\n\r\n//s;
            my ($path) = $1 =~ /^GET (\S+)/;
            my $body = sprintf '{"conn":%d,"path":"%s","items":[{"id":1},{"id":2}],"client":%s}', $n, $path // '',
                defined $who ? "\"$who\"" : 'null';
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                . "Content-Length: " . length($body) . "\r\n\r\n$body";
        }
    });
}

1;
