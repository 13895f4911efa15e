package BFFTest;
# Helpers for the mod_bff suite: requests to httpd, the demo services' admin
# API (faults, request log), and expected documents built from the fixtures.
use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use LWP::UserAgent ();
use Time::HiRes ();
use Apache::Test ();
use IO::Socket::INET ();
use Apache::TestRequest ();
use POSIX ();
use BFFServices ();

our @EXPORT = qw(bff_get bff_req bff_send bff_chunked decode svc_reset svc_log svc_fault svc_stats
                 svc_url fixture users orders_of products_by_id expected_profile
                 json_is now user_of expected_web expected_mobile redis_cli redis_stop redis_start start_httpd httpd_children
                 start_httpd_conf stop_httpd http_get own_svc_start own_svc_stop own_svc_admin
                 need_servers fork_server burst slurp wait_for);

my $json = JSON::PP->new->canonical(1)->allow_nonref(1);
my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0);
my %fixtures;

sub now { Time::HiRes::time() }

# For Apache::Test's plan: plan tests => N, need_servers('redis-server').
# A server binary that is not installed skips the file with the reason,
# for a developer running a subset by hand. In strict mode (CI=true, as
# CI services set it, or BFF_T_STRICT=1, which scripts/test.sh sets) it
# fails the file instead: a full run must never pass by skipping.
sub need_servers {
    my @missing = grep { !BFFServices::have_bin($_) } @_;
    return 1 unless @missing;
    my $why = join(' and ', @missing) . ' not installed (scripts/deps.sh installs '
            . (@missing > 1 ? 'them' : 'it') . ')';
    if (($ENV{CI} // '') eq 'true' || $ENV{BFF_T_STRICT}) {
        die "$why: a skip for a missing server is a failure in strict mode "
          . "(CI=true or BFF_T_STRICT=1)\n";
    }
    # Apache::Test's own skip: plan prints "1..0 # skipped: $why"
    return Apache::Test::need({ $why => 0 });
}

sub decode {
    my $s = shift;
    my $v = eval { $json->decode($s) };
    return $v;
}

# GET a path on the test httpd: returns the HTTP::Response, with ->{json}
# holding the decoded body when it is JSON.
sub bff_get {
    my ($path, @headers) = @_;
    return bff_req(GET => $path, @headers);
}

sub bff_req {
    my ($method, $path, @headers) = @_;
    my $cfg = Apache::Test::config();
    my $url = 'http://' . $cfg->{vars}{servername} . ':' . $cfg->{vars}{port} . $path;
    my $req = HTTP::Request->new($method => $url, [@headers]);
    my $res = $ua->request($req);
    $res->{json} = decode($res->content) if ($res->header('Content-Type') // '') =~ /json/;
    return $res;
}

# A request with a body: bff_send(POST => '/path', $body, @headers)
sub bff_send {
    my ($method, $path, $body, @headers) = @_;
    my $cfg = Apache::Test::config();
    my $url = 'http://' . $cfg->{vars}{servername} . ':' . $cfg->{vars}{port} . $path;
    my $res = $ua->request(HTTP::Request->new($method => $url, [@headers], $body));
    $res->{json} = decode($res->content) if ($res->header('Content-Type') // '') =~ /json/;
    return $res;
}

# A request whose body is sent chunked (one chunk per element of @chunks),
# over a raw socket: returns (status, decoded JSON body or {}).
sub bff_chunked {
    my ($method, $path, $ctype, @chunks) = @_;
    my $cfg = Apache::Test::config();
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cfg->{vars}{port},
                                  Timeout => 10) or die "connect: $!";
    my $req = "$method $path HTTP/1.1\r\nHost: $cfg->{vars}{servername}\r\n"
            . "Connection: close\r\nContent-Type: $ctype\r\nTransfer-Encoding: chunked\r\n\r\n";
    $req .= sprintf("%x\r\n%s\r\n", length $_, $_) for @chunks;
    $req .= "0\r\n\r\n";
    print $s $req;
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($code) = $resp =~ m{^HTTP/1\.1 (\d+)};
    my ($body) = $resp =~ m{\r\n\r\n(.*)\z}s;
    return ($code // 0, decode($body // '') // {});
}

sub svc_url {
    my $role = shift;
    return $ENV{'BFF_T_' . uc($role) . '_URL'} // die "service $role not started";
}

sub svc_admin {
    my ($role, $path) = @_;
    my $res = $ua->get(svc_url($role) . $path);
    die "admin $role $path: " . $res->status_line unless $res->is_success;
    return decode($res->content);
}

# Clears faults and request logs; first waits for calls still running
# (e.g. a slow backend call abandoned at an earlier deadline), so they do
# not show up in the next test's log.
sub svc_reset {
    for my $role (@_ ? @_ : qw(user order product)) {
        my $until = now() + 5;
        Time::HiRes::sleep(0.02) while svc_admin($role, '/__admin/stats')->{in_flight} && now() < $until;
        svc_admin($role, '/__admin/reset');
    }
}
sub svc_log   { svc_admin($_[0], '/__admin/log') }
sub svc_stats { svc_admin($_[0], '/__admin/stats') }

sub svc_fault {
    my ($role, %p) = @_;
    my $q = join '&', map { "$_=$p{$_}" } sort keys %p;
    return svc_admin($role, "/__admin/fault?$q");
}

sub fixture {
    my $name = shift;
    $fixtures{$name} //= do {
        my $file = "$ENV{BFF_TOP}/services/fixtures/$name.json";
        open my $fh, '<:raw', $file or die "$file: $!";
        local $/;
        $json->decode(<$fh>);
    };
}

sub users { fixture('users') }

sub orders_of {
    my $uid = shift;
    return [ grep { $_->{user_id} == $uid } @{ fixture('orders') } ];
}

sub products_by_id { return { map { ($_->{id} => $_) } @{ fixture('products') } } }

# The document conf/bff-profile.conf must produce for a user id.
sub expected_profile {
    my $uid = shift;
    my ($user) = grep { $_->{id} == $uid } @{ users() };
    die "no fixture user $uid" unless $user;
    my %u = %$user;
    delete @u{qw(password_hash internal_note)};
    my @orders = map { my %o = %$_; delete $o{internal_note}; \%o } @{ orders_of($uid) };
    my %seen;
    my @ids = grep { !$seen{$_}++ } map { $_->{product_id} } @orders;
    my $p = products_by_id();
    return { user => \%u, orders => \@orders, products => [ map { $p->{$_} } grep { $p->{$_} } @ids ] };
}

# The documents the shipped web and mobile client profiles answer for a
# user (conf/bff-clients.conf, conf/recipe-clients.conf), from the
# fixtures: the web one nested, with each order's product; the mobile one
# flat, without an empty order list.
sub user_of { my $id = shift; my ($u) = grep { $_->{id} == $id } @{ users() }; $u }

sub expected_web {
    my $uid = shift;
    my $p = products_by_id();
    my %u = %{ user_of($uid) };
    delete @u{qw(password_hash internal_note)};
    my @o = map { my %o = %$_; delete $o{internal_note};
                  $o{product} = $p->{ $o{product_id} } // undef; \%o } @{ orders_of($uid) };
    return { user => \%u, orders => \@o };
}

sub expected_mobile {
    my $uid = shift;
    my $p = products_by_id();
    my @o = map { { id => $_->{id}, total => $_->{total}, status => $_->{status},
                    product_name => $p->{ $_->{product_id} }{name} } } @{ orders_of($uid) };
    my %doc = (name => user_of($uid)->{name});
    $doc{orders} = \@o if @o;
    return \%doc;
}

sub canonical { $json->encode($_[0]) }

# a file's text ('' when it cannot be read: a log not written yet)
sub slurp { open my $fh, '<', $_[0] or return ''; local $/; scalar <$fh> }

# wait_for(sub { COND }, SECS): polls COND until it holds or SECS pass;
# COND's last value
sub wait_for {
    my ($cond, $secs) = @_;
    my $until = now() + $secs;
    Time::HiRes::sleep(0.05) until $cond->() || now() > $until;
    return $cond->();
}

# ------------------------------------------------------------- Redis --

sub redis_cli {
    my @args = @_;
    my $cmd = join ' ', 'redis-cli', '-h', '127.0.0.1', '-p', $ENV{BFF_T_REDIS_PORT},
              map { "'$_'" } @args;
    my $out = `$cmd 2>/dev/null`;
    chomp $out;
    return $out;
}

sub redis_pidfile { Apache::Test::vars('t_logs') . '/redis.pid' }

sub redis_stop {
    open my $fh, '<', redis_pidfile() or die "no redis pid file: $!";
    chomp(my $pid = <$fh>);
    kill 'TERM', $pid;
    # up to 20 s: a loaded machine or a sanitizer build stops slowly, and
    # callers read the error log the children write as they exit
    for (1 .. 400) { last unless kill 0, $pid; Time::HiRes::sleep(0.05) }
}

# Starts a redis-server on 127.0.0.1:port with extra arguments (e.g.
# --requirepass), output to t/logs/NAME.out; returns its PID.
sub redis_spawn {
    my ($name, $port, @args) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        open STDOUT, '>>', Apache::Test::vars('t_logs') . "/$name.out";
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec 'redis-server', '--bind', '127.0.0.1', '--port',
              $port, '--save', '', '--appendonly', 'no', @args; }
        POSIX::_exit(127);
    }
    return $pid;
}

sub redis_start {
    my $pid = redis_spawn('redis', $ENV{BFF_T_REDIS_PORT});
    open my $fh, '>', redis_pidfile() or die $!;
    print $fh "$pid\n";
    close $fh;
    for (1 .. 100) { last if redis_cli('PING') eq 'PONG'; Time::HiRes::sleep(0.05) }
    return $pid;
}

# ------------------------------------------- extra httpd instances --

# A server of the test's own on a free loopback port: each connection is
# handed, in a process of its own (alarm 20), to $on_conn with the port
# and the connection's number. Returns the port; the server is stopped
# (by PID) when the test ends.
my @forked;
sub fork_server {
    my $on_conn = shift;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 32, ReuseAddr => 1) or die $!;
    my $port = $l->sockport;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $SIG{CHLD} = 'IGNORE';
        my $n = 0;
        while (my $c = $l->accept) {
            $n++;
            my $kid = fork;
            if (defined $kid && !$kid) {
                close $l;
                alarm 20;
                $on_conn->($c, $port, $n);
                POSIX::_exit(0);
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    close $l;
    push @forked, $pid;
    return $port;
}
END { kill 'TERM', $_ for @forked }

# instances a test started are stopped even when it dies half way
my @started;

# Where every httpd the suite starts dumps core (CoreDumpDirectory);
# t/TEST.PL reports what it finds there after the run.
sub cores_dir { Apache::Test::vars('t_logs') . '/cores' }

# Writes t/logs/<name>/httpd.conf for an instance of its own around the
# configuration $body; returns { name, port, dir } without starting it.
sub write_httpd_conf {
    my ($name, $body) = @_;
    my $dir = Apache::Test::vars('t_logs') . "/$name";
    my $libexec = $ENV{BFF_T_LIBEXECDIR};
    my $port = BFFServices::free_port();
    mkdir $dir;
    # an instance left over by an aborted earlier run: stop it by its PID
    stop_httpd({ dir => $dir });
    unlink "$dir/error.log";
    my $user = $> == 0 ? "User nobody\nGroup nogroup\n" : '';
    open my $fh, '>', "$dir/httpd.conf" or die $!;
    print $fh <<"CONF";
ServerRoot "$dir"
ServerName 127.0.0.1
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir"
Mutex file:$dir default
ErrorLog "$dir/error.log"
CoreDumpDirectory "@{[cores_dir()]}"
LogLevel info
Listen 127.0.0.1:$port
$user
LoadModule mpm_event_module "$libexec/mod_mpm_event.so"
LoadModule authz_core_module "$libexec/mod_authz_core.so"
LoadModule authz_host_module "$libexec/mod_authz_host.so"
LoadModule socache_shmcb_module "$libexec/mod_socache_shmcb.so"
LoadModule slotmem_shm_module "$libexec/mod_slotmem_shm.so"
LoadModule bff_module "$ENV{BFF_T_MODULE}"
StartServers 2
ThreadsPerChild 16
MaxRequestWorkers 64
$body
CONF
    close $fh;
    return { name => $name, port => $port, dir => $dir };
}

# Starts another httpd with mod_bff and the given configuration body on a
# free loopback port (for settings that are per server: the cache store,
# the near cache, a second instance sharing Redis). Stopped by PID.
sub start_httpd {
    my ($name, $body) = @_;
    my $h = write_httpd_conf($name, $body);
    my ($dir, $port) = @$h{qw(dir port)};
    my $httpd = Apache::Test::vars('httpd');
    system($httpd, '-f', "$dir/httpd.conf", '-k', 'start') == 0
        or die "httpd $name did not start: " . `cat $dir/error.log`;
    push @started, $h;
    BFFServices::wait_port($port) or die "httpd $name not listening";
    return $h;
}

# Starts a shipped configuration (conf/gateway.conf, conf/recipe-*.conf)
# as it is, as an httpd of its own: the variables those files read come
# from the environment (the suite's modules, services and keys; %extra
# adds or overrides). Returns { name, port, dir } as start_httpd does.
sub start_httpd_conf {
    my ($name, $conf, %extra) = @_;
    my $dir = Apache::Test::vars('t_logs') . "/$name";
    my $port = BFFServices::free_port();
    mkdir $dir;
    stop_httpd({ dir => $dir });
    unlink "$dir/error.log";
    my ($user, $group) = $> == 0 ? ('nobody', 'nogroup')
                       : (scalar getpwuid($>), scalar getgrgid($) + 0));
    local %ENV = (%ENV,
        BFF_RUN_DIR => $dir, BFF_LISTEN => "127.0.0.1:$port",
        BFF_MODULES_DIR => $ENV{BFF_T_LIBEXECDIR}, BFF_MODULE => $ENV{BFF_T_MODULE},
        BFF_USER => $user, BFF_GROUP => $group, BFF_CONF_DIR => "$ENV{BFF_TOP}/conf",
        BFF_USER_SERVICE => $ENV{BFF_T_USER_URL}, BFF_ORDER_SERVICE => $ENV{BFF_T_ORDER_URL},
        BFF_PRODUCT_SERVICE => $ENV{BFF_T_PRODUCT_URL}, %extra);
    my $httpd = Apache::Test::vars('httpd');
    system($httpd, '-f', $conf, '-c', 'CoreDumpDirectory ' . cores_dir(), '-k', 'start') == 0
        or die "httpd $name ($conf) did not start: " . `cat $dir/error.log`;
    my $h = { name => $name, port => $port, dir => $dir };
    push @started, $h;
    BFFServices::wait_port($port) or die "httpd $name not listening";
    return $h;
}

END { stop_httpd($_) for @started }

# The PIDs of the children of an instance started with start_httpd, from
# /proc (not ps: the sanitized suite preloads libasan into every program
# it starts, and procps hangs under it).
sub httpd_children {
    my $h = shift;
    open my $fh, '<', "$h->{dir}/httpd.pid" or return ();
    chomp(my $ppid = <$fh> // '');
    my @c;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $s, '<', $stat or next;
        my $line = <$s> // next;
        my ($pid, $pp) = $line =~ /^(\d+) \(.*\) \S+ (\d+)/ or next;
        push @c, $pid if $pp == $ppid;
    }
    return @c;
}

sub stop_httpd {
    my $h = shift;
    open my $fh, '<', "$h->{dir}/httpd.pid" or return;
    chomp(my $pid = <$fh>);
    return unless $pid && $pid =~ /^\d+$/;
    kill 'TERM', $pid;
    for (1 .. 100) { last unless kill 0, $pid; Time::HiRes::sleep(0.05) }
}

sub bff_req_port {
    my ($port, $method, $path, @headers) = @_;
    my $res = $ua->request(HTTP::Request->new($method => "http://127.0.0.1:$port$path", [@headers]));
    $res->{json} = decode($res->content) if ($res->header('Content-Type') // '') =~ /json/;
    return $res;
}

sub http_get {
    my ($port, $path, @headers) = @_;
    my $res = $ua->request(HTTP::Request->new(GET => "http://127.0.0.1:$port$path", [@headers]));
    $res->{json} = decode($res->content) if ($res->header('Content-Type') // '') =~ /json/;
    return $res;
}


# GET requests at once, each in a process of its own, to 127.0.0.1:port:
# a request is a path, [path, header => value...] or { path =>, headers
# => [...], wait => seconds before it starts }. Per request, in order:
# [status, seconds, Retry-After, Content-Type, problem detail, body with
# its white space runs made single spaces].
sub burst {
    my ($port, @reqs) = @_;
    my $dir = Apache::Test::vars('t_logs') . "/burst-$$";
    mkdir $dir;
    my @kids;
    for my $i (0 .. $#reqs) {
        my $q = $reqs[$i];
        my ($path, $hdr, $wait) = ref $q eq 'HASH' ? ($q->{path}, $q->{headers} // [], $q->{wait} // 0)
                                : ref $q ? ($q->[0], [ @$q[1 .. $#$q] ], 0) : ($q, [], 0);
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            Time::HiRes::sleep($wait) if $wait;
            my $t0 = now();
            my $r = http_get($port, $path, @$hdr);
            my $body = $r->content // '';
            $body =~ s/\s+/ /g;
            open my $fh, '>', "$dir/$i" or POSIX::_exit(1);
            printf $fh "%d\t%.3f\t%s\t%s\t%s\t%s\n", $r->code, now() - $t0,
                $r->header('Retry-After') // '', $r->header('Content-Type') // '',
                ref $r->{json} eq 'HASH' ? ($r->{json}{detail} // '') : '', $body;
            close $fh;
            POSIX::_exit(0);
        }
        push @kids, $pid;
        Time::HiRes::sleep(0.02);
    }
    waitpid $_, 0 for @kids;
    my @out;
    for my $i (0 .. $#reqs) {
        open my $fh, '<', "$dir/$i" or die "$dir/$i: $!";
        chomp(my $l = <$fh>);
        push @out, [ split /\t/, $l, 6 ];
        unlink "$dir/$i";
    }
    rmdir $dir;
    return @out;
}

# ---------------------------- demo services a test owns --

# Starts one more demo service of role on port (0: a free one) that the
# test may kill and start again on the same port. Returns { pid, port }.
sub own_svc_start {
    my ($role, $port) = @_;
    $port ||= BFFServices::free_port();
    my $logs = Apache::Test::vars('t_logs');
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        open STDOUT, '>>', "$logs/own-svc-$port.out";
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec "$ENV{BFF_TOP}/services/bff-demo-service",
              '--role', $role, '--port', $port, '--data', "$ENV{BFF_TOP}/services/fixtures"; }
        POSIX::_exit(127);
    }
    BFFServices::wait_port($port) or die "own $role service did not start on $port";
    return { pid => $pid, port => $port, role => $role };
}

sub own_svc_stop {
    my $s = shift;
    my $pid = delete $s->{pid} or return;
    local $?;    # also called from END blocks: keep the exit status
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# The admin API of an own service: own_svc_admin($s, '/__admin/log')
sub own_svc_admin {
    my ($s, $path) = @_;
    my $res = $ua->get("http://127.0.0.1:$s->{port}$path");
    die "admin $s->{port} $path: " . $res->status_line unless $res->is_success;
    return decode($res->content);
}

# Compares two structures as canonical JSON.
sub json_is {
    my ($got, $want) = @_;
    my $g = $json->encode($got);
    my $w = $json->encode($want);
    return 1 if $g eq $w;
    Test::More::diag("got:  $g\nwant: $w");
    return 0;
}

1;
