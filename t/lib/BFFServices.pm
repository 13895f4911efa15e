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
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes qw(sleep);

our @ROLES = qw(user order product);

# A port nothing listens on now. The services start asynchronously, so a
# port handed out a moment ago may still look free: this process never
# hands out the same port twice (two services on one port: the second
# exits, and a check of the port finds the first one).
my %handed_out;
sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or die "no free port: $!";
        my $port = $s->sockport;
        close $s;
        return $port unless $handed_out{$port}++;
    }
    die "no free port: the kernel kept handing out ports given before\n";
}

# 1 when an executable of that name is on PATH
sub have_bin {
    my $name = shift;
    return scalar grep { -x "$_/$name" } split /:/, $ENV{PATH} // '';
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

    # the cache stores: Redis and memcached, when installed (the ports
    # are set either way, for the configuration; the tests that need a
    # server skip without it: BFFTest::need_servers)
    $self->{logdir} = $a{logdir};
    $ENV{BFF_T_REDIS_PORT} = free_port();
    $ENV{BFF_T_REDIS_URL} = "redis://127.0.0.1:$ENV{BFF_T_REDIS_PORT}";
    $ENV{BFF_T_MEMCACHE_PORT} = free_port();
    if (have_bin('redis-server')) {
        $self->start_redis;
        wait_answer($ENV{BFF_T_REDIS_PORT}, "PING\r\n", qr/^\+PONG/)
            or die "redis-server did not start (see $a{logdir}/redis.out)\n";
    }
    if (have_bin('memcached')) {
        my $mpid = fork // die "fork: $!";
        if (!$mpid) {
            open STDOUT, '>>', "$a{logdir}/memcached.out";
            open STDERR, '>&', \*STDOUT;
            { no warnings 'exec'; exec 'memcached', '-l', '127.0.0.1', '-p',
                  $ENV{BFF_T_MEMCACHE_PORT}, '-U', '0', '-m', '64', '-u', 'nobody'; }
            POSIX::_exit(127);
        }
        $self->{pids}{memcached} = $mpid;
        wait_answer($ENV{BFF_T_MEMCACHE_PORT}, "version\r\n", qr/^VERSION /)
            or die "memcached did not start (see $a{logdir}/memcached.out)\n";
    }
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
            die "$role did not start on port $port "
              . "(see $a{logdir}/" . ($role eq 'redis' ? 'redis' : "svc-$role") . ".out)\n";
        }
    }
    return $self;
}

# the server on the port is the one expected: it answers $ask with a
# line matching $expect
sub wait_answer {
    my ($port, $ask, $expect) = @_;
    for (1 .. 100) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => 2);
        if ($c) {
            $c->autoflush(1);
            print $c $ask;
            my $line = '';
            if (IO::Select->new($c)->can_read(2)) {
                sysread $c, $line, 256;
            }
            return 1 if $line =~ $expect;
        }
        sleep 0.05;
    }
    return 0;
}

sub wait_port {
    my $port = shift;
    for (1 .. 100) {
        return 1 if IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $port, Proto => 'tcp');
        sleep 0.05;
    }
    return 0;
}

# Redis can be stopped and started again on the same port during the run
# (tests of the shared memory fallback): the PID goes to a file the tests
# read, t/logs/redis.pid.
sub start_redis {
    my $self = shift;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>>', "$self->{logdir}/redis.out";
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec 'redis-server', '--bind', '127.0.0.1',
              '--port', $ENV{BFF_T_REDIS_PORT}, '--save', '', '--appendonly', 'no'; }
        POSIX::_exit(127);
    }
    $self->{pids}{redis} = $pid;
    open my $fh, '>', "$self->{logdir}/redis.pid" or die $!;
    print $fh "$pid\n";
    close $fh;
    return $pid;
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
    # a Redis that a test restarted is not our child: its PID is in the file
    if ($self->{logdir} && open my $fh, '<', "$self->{logdir}/redis.pid") {
        my $pid = <$fh>;
        chomp $pid if defined $pid;
        kill 'TERM', $pid if $pid && $pid =~ /^\d+$/;
        unlink "$self->{logdir}/redis.pid";
    }
}

1;
