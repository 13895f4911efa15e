package BFFSecond;
# A second httpd with the suite's configuration (t/conf/httpd.conf) on
# other ports, its own pid file, logs and runtime directory, sharing the
# suite's Redis and demo services: two gateway instances. Stopped by PID.
use strict;
use warnings;

use File::Path qw(make_path);
use IO::Socket::INET ();
use Time::HiRes qw(sleep);
use Apache::Test ();
use BFFServices ();

sub start {
    my ($class, %a) = @_;
    my $t = Apache::Test::vars('t_dir');
    my $dir = "$t/logs/second";
    make_path("$dir/state");
    unlink "$dir/httpd.pid";
    my $read = sub { open my $in, '<', $_[0] or die "$_[0]: $!"; local $/; scalar <$in> };
    my $conf = $read->("$t/conf/httpd.conf");
    my $extra = $read->("$t/conf/extra.conf");
    # every port httpd listens on (main server and virtual hosts) moves
    my %map;
    for my $c ($conf, $extra) {
        $map{$1} //= BFFServices::free_port() while $c =~ /^\s*Listen\s+\S*?:?(\d+)\s*$/mg;
    }
    for my $c ($conf, $extra) {
        $c =~ s/:(\d+)\b/exists $map{$1} ? ":$map{$1}" : ":$1"/ge;
        $c =~ s/^(\s*Listen\s+)(\d+)\s*$/$1 . ($map{$2} \/\/ $2)/gme;
    }
    $conf =~ s/^(\s*PidFile\s+).*$/$1$dir\/httpd.pid/m;
    $conf =~ s/^(\s*ErrorLog\s+).*$/$1$dir\/error_log/m;
    $conf =~ s/^(\s*DefaultRunTimeDir\s+).*$/$1"$dir"/m;
    $conf =~ s/^(\s*DefaultStateDir\s+).*$/$1"$dir\/state"/m;
    $conf =~ s/^(\s*TransferLog\s+).*$/$1$dir\/access_log/m;
    $conf =~ s/^(\s*ScriptSock\s+).*$/$1$dir\/cgisock/m;
    $conf =~ s/^Include\s+"?\Q$t\E\/conf\/extra\.conf"?/Include "$dir\/extra.conf"/m
        or die "no Include of extra.conf in httpd.conf";
    for (["$dir/httpd.conf", $conf], ["$dir/extra.conf", $extra]) {
        open my $out, '>', $_->[0] or die $!;
        print $out $_->[1];
        close $out;
    }
    my $self = bless { dir => $dir, port => $map{Apache::Test::vars('port')} }, $class;
    my $httpd = Apache::Test::vars('httpd');
    system($httpd, '-d', $t, '-f', "$dir/httpd.conf", '-D', 'APACHE2', '-D', 'APACHE2_4',
           '-k', 'start') == 0 or die "second httpd did not start (see $dir/error_log)";
    for (1 .. 200) {
        last if -s "$dir/httpd.pid"
            && IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port});
        sleep 0.05;
    }
    open my $pf, '<', "$dir/httpd.pid" or die "second httpd: no pid file";
    chomp($self->{pid} = <$pf>);
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }

sub stop {
    my $self = shift;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    for (1 .. 200) {
        last unless kill 0, $pid;
        sleep 0.05;
    }
}

sub DESTROY { $_[0]->stop }

1;
