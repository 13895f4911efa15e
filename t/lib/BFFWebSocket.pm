package BFFWebSocket;
# A WebSocket echo backend and a WebSocket client for the suite, on raw
# sockets (RFC 6455 by hand: the handshake's Sec-WebSocket-Accept is
# base64(sha1(key . GUID)); frames with 7, 16 and 64 bit lengths).
#
#   my $b = BFFWebSocket::backend_start($logfile);   # { pid, port }
#   my $c = BFFWebSocket::connect($port, '/ws/x', Authorization => ...);
#   $c->{status}, $c->{head}; BFFWebSocket::send_text($c, 'hi');
#   BFFWebSocket::recv_frame($c) -> [opcode, payload]
#   BFFWebSocket::backend_heads($logfile) -> the upgrade requests it got
#
# The backend forks a process per connection; each appends the request
# head it received to the log file before it answers.
use strict;
use warnings;

use Digest::SHA qw(sha1);
use IO::Socket::INET ();
use IO::Select ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use BFFServices ();

my $GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

sub accept_key { encode_base64(sha1($_[0] . $GUID), '') }

# Reads until the end of a request or response head; '' on EOF or timeout.
sub read_head {
    my ($sock, $timeout) = @_;
    my $buf = '';
    my $sel = IO::Select->new($sock);
    while ($buf !~ /\r\n\r\n/) {
        return $buf unless $sel->can_read($timeout // 5);
        my $n = sysread $sock, $buf, 4096, length $buf;
        return $buf unless $n;
    }
    return $buf;
}

sub read_exact {
    my ($sock, $n, $buf) = @_;
    my $sel = IO::Select->new($sock);
    $$buf //= '';
    while (length $$buf < $n) {
        return 0 unless $sel->can_read(5);
        my $r = sysread $sock, $$buf, $n - length $$buf, length $$buf;
        return 0 unless $r;
    }
    return 1;
}

# One frame: [opcode, payload], or undef on EOF. $pre: bytes already read
# after the head.
sub read_frame {
    my ($sock, $pre) = @_;
    my $b = '';
    if (defined $pre && length $$pre) { $b = $$pre; $$pre = '' }
    read_exact($sock, 2, \$b) or return undef;
    my ($b0, $b1) = unpack 'CC', substr($b, 0, 2, '');
    my $len = $b1 & 0x7f;
    if ($len == 126) { read_exact($sock, 2, \$b) or return undef; $len = unpack 'n', substr($b, 0, 2, '') }
    elsif ($len == 127) { read_exact($sock, 8, \$b) or return undef; $len = unpack 'Q>', substr($b, 0, 8, '') }
    my $mask = '';
    if ($b1 & 0x80) { read_exact($sock, 4, \$b) or return undef; $mask = substr($b, 0, 4, '') }
    read_exact($sock, $len, \$b) or return undef;
    my $data = substr($b, 0, $len);
    if (length $mask) {
        my $m = $mask x (int($len / 4) + 1);
        $data = $data ^ substr($m, 0, $len);
    }
    return [$b0 & 0x0f, $data];
}

sub frame {
    my ($op, $data, $masked) = @_;
    my $len = length $data;
    my $h = pack 'C', 0x80 | $op;
    my $mbit = $masked ? 0x80 : 0;
    if ($len < 126) { $h .= pack 'C', $mbit | $len }
    elsif ($len < 65536) { $h .= pack 'Cn', $mbit | 126, $len }
    else { $h .= pack 'CQ>', $mbit | 127, $len }
    return $h . $data unless $masked;
    my $mask = pack 'N', int rand 0xffffffff;
    my $m = $mask x (int($len / 4) + 1);
    return $h . $mask . ($data ^ substr($m, 0, $len));
}

# ------------------------------------------------------------ backend --

sub serve_one {
    my ($c, $log) = @_;
    my $head = read_head($c, 10);
    if (open my $fh, '>>', $log) { print $fh $head, "----\n"; close $fh }
    my ($key) = $head =~ /^Sec-WebSocket-Key:\s*(\S+)\r$/mi;
    unless ($head =~ /^Upgrade:\s*websocket\r$/mi && $key) {
        print $c "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return;
    }
    print $c "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
           . "Connection: Upgrade\r\nSec-WebSocket-Accept: " . accept_key($key) . "\r\n\r\n";
    while (my $f = read_frame($c)) {
        my ($op, $data) = @$f;
        if ($op == 8) { print $c frame(8, $data); last }
        if ($op == 9) { print $c frame(10, $data); next }
        print $c frame($op, $data);
    }
}

sub backend_start {
    my $log = shift;
    my $port = BFFServices::free_port();
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Listen => 16, ReuseAddr => 1, Proto => 'tcp')
        or die "websocket backend: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            my $c = $l->accept or next;
            my $kid = fork;
            if (defined $kid && !$kid) {
                close $l;
                $c->autoflush(1);
                serve_one($c, $log);
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    close $l;
    return { pid => $pid, port => $port };
}

sub backend_stop {
    my $b = shift;
    my $pid = delete $b->{pid} or return;
    local $?;
    kill 'KILL', -$pid;    # its process group: the connections' processes too
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# The request heads the backend received, in order.
sub backend_heads {
    my $log = shift;
    open my $fh, '<', $log or return ();
    local $/;
    my $all = <$fh>;
    return grep { /\S/ } split /----\n/, $all;
}

# ------------------------------------------------------------- client --

# Sends an upgrade request for $path to 127.0.0.1:$port; returns
# { sock, status, head, rest }.
sub connect {
    my ($port, $path, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or die "connect $port: $!";
    $s->autoflush(1);
    my $key = encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
    my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\n"
            . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n";
    while (my ($k, $v) = splice @headers, 0, 2) { $req .= "$k: $v\r\n" }
    print $s "$req\r\n";
    my $buf = read_head($s, 10);
    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
    my $c = { sock => $s, status => $status // 0, head => $head // '', rest => $rest // '' };
    $c->{accept_ok} = ($head // '') =~ /^Sec-WebSocket-Accept:\s*\Q${\ accept_key($key)}\E\r?$/mi ? 1 : 0;
    return $c;
}

sub send_text { my ($c, $text) = @_; print { $c->{sock} } frame(1, $text, 1) }

sub recv_frame { my $c = shift; read_frame($c->{sock}, \$c->{rest}) }

sub close_ws {
    my $c = shift;
    print { $c->{sock} } frame(8, pack('n', 1000), 1);
    read_frame($c->{sock}, \$c->{rest});
    close $c->{sock};
}

1;
