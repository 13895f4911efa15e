# The JSON access log (conf/bff-log.conf, LogFormat items %{NAME}J): one
# JSON object per request whatever the client sends, holding the request
# id the client got, the endpoint, cache status, backend timings, subject.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use IO::Socket::INET;
use JSON::PP ();
use BFFTest;
use BFFJWT qw(jwt);

plan tests => 60;

my $logfile = Apache::Test::vars('t_logs') . '/bff_json.log';
my $strict = JSON::PP->new->utf8(1);     # refuses anything that is not JSON

# Lines logged since the offset; each must be one JSON object.
sub lines_since {
    my $off = shift;
    # mod_log_config writes after the answer: give it a moment
    my @l;
    for (1 .. 50) {
        open my $fh, '<:raw', $logfile or die "$logfile: $!";
        seek $fh, $off, 0;
        @l = <$fh>;
        last if @l && $l[-1] =~ /\n\z/;
        Time::HiRes::sleep(0.05);
    }
    return @l;
}

sub entry_for {
    my ($off, $rid) = @_;
    for (1 .. 50) {
        for my $l (lines_since($off)) {
            my $e = eval { $strict->decode($l) };
            return $e if $e && ($e->{request_id} // '') eq $rid;
        }
        Time::HiRes::sleep(0.05);
    }
    return undef;
}

sub mark { -s $logfile // 0 }

# --- an aggregated answer: every field -------------------------------
my $off = mark();
my $res = bff_get('/api/profile/1?x=1', 'X-Request-ID' => 'log-profile-1',
                  'User-Agent' => 'bff-test/1.0');
ok t_cmp($res->code, 200);
my $e = entry_for($off, 'log-profile-1');
ok $e, 'the line holds the request id the client got';
ok t_cmp($res->header('X-Request-ID'), 'log-profile-1');
ok t_cmp($e->{method}, 'GET');
ok t_cmp($e->{path}, '/api/profile/1');
ok t_cmp($e->{query}, 'x=1');
ok t_cmp($e->{endpoint}, '/api/profile/{user_id:int}', 'endpoint is the route pattern');
ok t_cmp($e->{status}, 200);
ok !ref($e->{status}) && $e->{status} =~ /^\d+$/, 'status is a JSON number';
ok $e->{completed} && JSON::PP::is_bool($e->{completed}) && $e->{completed} == 1,
   'completed is JSON true';
ok t_cmp($e->{bytes}, length($res->content), 'bytes of the body');
ok $e->{duration_ms} =~ /^\d+(\.\d+)?$/ && $e->{duration_ms} > 0, "duration_ms $e->{duration_ms}";
ok $e->{aggregation_ms} > 0 && $e->{aggregation_ms} <= $e->{duration_ms}, 'aggregation within the request';
ok t_cmp(join(',', sort keys %{ $e->{backends} }), 'orders,products,user', 'one timing per backend');
ok !grep({ $e->{backends}{$_}{outcome} ne 'ok' || $e->{backends}{$_}{status} != 200 } keys %{ $e->{backends} }),
   'outcome and status of each';
ok !grep({ !($e->{backends}{$_}{ms} > 0) } keys %{ $e->{backends} }), 'each with its time';
ok $e->{backends}{products}{ms} <= $e->{aggregation_ms} + 1, 'backend time within the aggregation';
ok $e->{trace_id} =~ /^[0-9a-f]{32}$/, 'trace id';
ok $e->{span_id} =~ /^[0-9a-f]{16}$/, 'span id';
ok t_cmp($e->{client}, '127.0.0.1');
ok t_cmp($e->{user_agent}, 'bff-test/1.0');
ok $e->{time} =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "time $e->{time}";
ok !defined $e->{subject}, 'anonymous: subject null';

# --- a partial answer: the failed backend and its reason ---------------
svc_reset();
$off = mark();
$res = bff_get('/t/optstatus/503/1', 'X-Request-ID' => 'log-partial-1');
$e = entry_for($off, 'log-partial-1');
ok $e && JSON::PP::is_bool($e->{completed}) && !$e->{completed}, 'completed false';
ok t_cmp($e->{backends}{orders}{outcome}, 'failed');
ok t_cmp($e->{backends}{orders}{status}, 503);
ok t_cmp($e->{backends}{orders}{reason}, 'HTTP 503');
ok t_cmp($e->{backends}{user}{outcome}, 'ok');

# --- cache status -----------------------------------------------------
redis_cli('FLUSHALL');
$off = mark();
my $r1 = bff_get('/t/cached-strict/2', 'X-Request-ID' => 'log-cache-1');
my $r2 = bff_get('/t/cached-strict/2', 'X-Request-ID' => 'log-cache-2');
my $e1 = entry_for($off, 'log-cache-1');
my $e2 = entry_for($off, 'log-cache-2');
ok t_cmp($e1->{cache}, $r1->header('X-Cache-Status'), 'cache status of a miss');
ok t_cmp($e2->{cache}, 'HIT', 'then a hit');
ok t_cmp($r2->header('X-Cache-Status'), 'HIT');
ok !defined $e2->{backends}, 'a hit calls no backend: backends null';
ok $e2->{completed}, 'completed of the cached answer';

# --- subject of an authenticated request ------------------------------
$off = mark();
$res = bff_get('/t/auth/agg/1', 'X-Request-ID' => 'log-auth-1',
               Authorization => 'Bearer ' . jwt());
ok t_cmp($res->code, 200);
$e = entry_for($off, 'log-auth-1');
ok t_cmp($e->{subject}, 'alice', 'the JWT subject');
ok t_cmp($e->{auth}, 'jwt');

# --- a 401 problem carries the same request id as the header ----------
$off = mark();
$res = bff_get('/t/auth/agg/1', 'X-Request-ID' => 'log-401');
ok t_cmp($res->code, 401);
ok t_cmp($res->{json}{request_id}, 'log-401', 'problem request_id = X-Request-ID');
ok t_cmp($res->header('X-Request-ID'), 'log-401');
$e = entry_for($off, 'log-401');
ok t_cmp($e->{endpoint}, '/t/auth/agg/{id:int}', 'a refused request names its endpoint');
ok t_cmp($e->{status}, 401);

# --- requests mod_bff does not handle are logged too ------------------
$off = mark();
$res = bff_get('/t/no-such-file', 'X-Request-ID' => 'log-404');
ok t_cmp($res->code, 404);
ok t_cmp($res->header('X-Request-ID'), 'log-404', 'error pages carry the id');
$e = entry_for($off, 'log-404');
ok t_cmp($e->{status}, 404);
ok !defined $e->{endpoint} && !defined $e->{backends} && !defined $e->{completed},
   'no endpoint: nulls';
$off = mark();
$res = bff_get('/t/proxied/users/2');
my $rid = $res->header('X-Request-ID') // '';
ok $rid ne '', "a proxied request gets an id ($rid)";
$e = entry_for($off, $rid);
ok $e && t_cmp($e->{status}, 200), 'proxied request logged with it';

# --- hostile values: raw requests, bytes LWP would not send ----------
sub raw_request {
    my $req = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => Apache::Test::config()->{vars}{port},
                                  Timeout => 5) or die "connect: $!";
    $s->autoflush(1);
    print $s $req;
    local $/;
    my $ans = <$s> // '';
    close $s;
    return $ans;
}

$off = mark();
my $ua = qq{evil" ,"status":999,"x":"\\ \t\xff\xfe end};
my $ans = raw_request("GET /t/proxied/a%22b%0Ac%5C%ff%E2%82%AC?q=%22\"x\\y HTTP/1.1\r\n"
    . "Host: 127.0.0.1\r\nX-Request-ID: log-evil-1\r\nUser-Agent: $ua\r\n"
    . "Connection: close\r\n\r\n");
ok $ans =~ m{^HTTP/1\.1 \d{3}}, 'answered';
$e = entry_for($off, 'log-evil-1');
ok $e, 'the line of a hostile request is valid JSON';
ok t_cmp($e->{path}, "/t/proxied/a\"b\nc\\\x{fffd}\x{20ac}",
         'path: decoded, invalid UTF-8 as U+FFFD, the rest exact');
ok t_cmp($e->{user_agent}, "evil\" ,\"status\":999,\"x\":\"\\ \t\x{fffd}\x{fffd} end",
         'header: quotes and backslashes kept inside the string');
ok t_cmp($e->{status}, $ans =~ m{^HTTP/1\.1 (\d{3})} ? $1 : -1, 'status not overridden');
ok !exists $e->{x}, 'no field injected';

# an invalid client id is replaced, the replacement logged
$off = mark();
$ans = raw_request("GET /t/proxied/users/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    . "X-Request-ID: bad\"id\\x\r\nConnection: close\r\n\r\n");
my ($newid) = $ans =~ /^X-Request-ID: (\S+)\r$/mi;
ok $newid && $newid !~ /bad/, 'invalid id replaced';
ok entry_for($off, $newid // 'none'), 'and logged with the replacement';

# a request line httpd refuses is logged as valid JSON too
$off = mark();
$ans = raw_request("GET /bad\x01path\" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: log-bad-line\r\n\r\n");
ok $ans =~ m{^HTTP/1\.1 400}, 'bad request line refused';
my @new = lines_since($off);
ok scalar(@new) >= 1, 'logged';

# --- every line written during this file is one JSON object -----------
open my $fh, '<:raw', $logfile or die $!;
my ($n, $bad) = (0, 0);
while (my $l = <$fh>) {
    $n++;
    my $v = eval { $strict->decode($l) };
    if (!$v || ref $v ne 'HASH') {
        $bad++;
        diag("not JSON: $l");
    }
}
ok $n > 10, "$n lines";
ok t_cmp($bad, 0, 'every line parses as a JSON object');

ok 1, 'done';
