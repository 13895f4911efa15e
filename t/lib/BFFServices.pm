package BFFServices;
# Starts the demo services (user, order, product) on free loopback ports for
# the test suite and stops them by PID. Exports their base URLs in the
# environment (BFF_T_USER_URL, BFF_T_ORDER_URL, BFF_T_PRODUCT_URL) so that
# httpd's ${VAR} expansion and the .t files both find them.
use strict;
use warnings;

use Cwd ();
use File::Path qw(make_path);
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes qw(sleep);

our @ROLES = qw(user order product);

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub start {
    my ($class, %a) = @_;
    my $self = bless { pids => {}, owner => $$ }, $class;
    my $bin  = "$a{top}/services/bff-demo-service";
    die "demo services not built: $bin missing\n" unless -x $bin;
    make_path($a{logdir});
    for my $role (@ROLES) {
        my $port = free_port();
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            open STDOUT, '>>', "$a{logdir}/svc-$role.out";
            open STDERR, '>&', \*STDOUT;
            { no warnings 'exec'; exec $bin, '--role', $role, '--port', $port,
                 '--data', "$a{top}/services/fixtures",
                 '--log', "$a{logdir}/svc-$role.log"; }
            POSIX::_exit(127);
        }
        $self->{pids}{$role} = $pid;
        $ENV{'BFF_T_' . uc($role) . '_URL'} = "http://127.0.0.1:$port";
        $ENV{'BFF_T_' . uc($role) . '_PORT'} = $port;
    }
    # a port nothing listens on, for connect errors
    $ENV{BFF_T_CLOSED_PORT} = free_port();
    for my $role (@ROLES) {
        my $port = $ENV{'BFF_T_' . uc($role) . '_PORT'};
        my $ok;
        for (1 .. 100) {
            $ok = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                        Proto => 'tcp') and last;
            sleep 0.05;
        }
        unless ($ok) {
            $self->stop;
            die "demo service $role did not start on port $port "
              . "(see $a{logdir}/svc-$role.out)\n";
        }
    }
    return $self;
}

sub stop {
    my $self = shift;
    return unless $self->{owner} == $$;   # never from a forked child
    for my $role (keys %{ $self->{pids} }) {
        my $pid = delete $self->{pids}{$role};
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

1;
