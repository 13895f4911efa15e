package BFFServices;
# Starts the demo services (user, order, product) and a redis-server on
# free loopback ports for the test suite and stops them by PID. Exports
# their base URLs in the environment (BFF_T_USER_URL, BFF_T_ORDER_URL,
# BFF_T_PRODUCT_URL, BFF_T_REDIS_URL; BFF_T_REDIS_PID for the tests that
# pause Redis) so that httpd's ${VAR} expansion and the .t files both find
# them.
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

    # Redis for the rate limits (t/1x_*.t): no persistence, loopback only
    my $rport = free_port();
    my $redis = $a{redis} // 'redis-server';
    my $rpid = fork;
    die "fork: $!" unless defined $rpid;
    if (!$rpid) {
        open STDOUT, '>>', "$a{logdir}/redis.out";
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec $redis, '--port', $rport, '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--daemonize', 'no'; }
        POSIX::_exit(127);
    }
    $self->{pids}{redis} = $rpid;
    $ENV{BFF_T_REDIS_PORT} = $rport;
    $ENV{BFF_T_REDIS_URL} = "redis://127.0.0.1:$rport";
    $ENV{BFF_T_REDIS_PID} = $rpid;
    for my $role (@ROLES, 'redis') {
        my $port = $ENV{'BFF_T_' . uc($role) . '_PORT'};
        my $ok;
        for (1 .. 100) {
            $ok = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                        Proto => 'tcp') and last;
            sleep 0.05;
        }
        unless ($ok) {
            $self->stop;
            die "$role did not start on port $port "
              . "(see $a{logdir}/" . ($role eq 'redis' ? 'redis' : "svc-$role") . ".out)\n";
        }
    }
    return $self;
}

sub stop {
    my $self = shift;
    return unless $self->{owner} == $$;   # never from a forked child
    for my $role (keys %{ $self->{pids} }) {
        my $pid = delete $self->{pids}{$role};
        kill 'CONT', $pid;   # a test may have paused Redis (SIGSTOP)
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

1;
