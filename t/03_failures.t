# Failure semantics: optional backends give a partial answer marked
# X-BFF-Completed: false with _errors; required ones a problem+json error.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

my %opt_kind = (
    drop     => 'bad response',
    truncate => 'bad response',
    invalid  => 'invalid JSON',
    oversize => 'response too large',
    empty    => 'invalid JSON',
    notjson  => 'invalid JSON',
);
my %req_kind = (drop => 502, truncate => 502, invalid => 502, oversize => 502,
                empty => 502, notjson => 502);

plan tests => 6 * keys(%opt_kind) + 5 * 3 + 4 * keys(%req_kind) + 4 * 3 + 19;

my $user5 = (grep { $_->{id} == 5 } @{ users() })[0];

for my $kind (sort keys %opt_kind) {
    my $res = bff_get("/t/optfault/$kind/5");
    ok t_cmp($res->code, 200, "optional $kind: 200");
    ok t_cmp($res->header('X-BFF-Completed'), 'false', "optional $kind: partial");
    ok json_is($res->{json}{orders}, []), "optional $kind: default";
    ok t_cmp($res->{json}{_errors}{orders}{reason}, $opt_kind{$kind});
    ok json_is($res->{json}{user}, $user5);
    ok !exists $res->{json}{_errors}{user};
}

for my $code (500, 503, 404) {
    my $res = bff_get("/t/optstatus/$code/5");
    ok t_cmp($res->code, 200, "optional HTTP $code: 200");
    ok t_cmp($res->header('X-BFF-Completed'), 'false');
    ok t_cmp($res->{json}{_errors}{orders}{status}, $code);
    ok t_cmp($res->{json}{_errors}{orders}{reason}, "HTTP $code");
    ok exists $res->{json}{orders} && !defined $res->{json}{orders}, 'null without default';
}

for my $kind (sort keys %req_kind) {
    my $res = bff_get("/t/reqfault/$kind/5");
    ok t_cmp($res->code, $req_kind{$kind}, "required $kind");
    ok t_cmp($res->header('Content-Type'), 'application/problem+json');
    ok t_cmp($res->{json}{status}, $req_kind{$kind});
    ok $res->{json}{detail} =~ /'user'/, 'names the backend';
}

for ([500, 502], [503, 502], [404, 404]) {
    my ($code, $want) = @$_;
    my $res = bff_get("/t/reqstatus/$code/5");
    ok t_cmp($res->code, $want, "required HTTP $code");
    ok t_cmp($res->header('Content-Type'), 'application/problem+json');
    ok t_cmp($res->{json}{title}, $want == 404 ? 'Not Found' : 'Bad Gateway');
    ok t_cmp($res->header('X-BFF-Completed'), 'false');
}

# connect errors
my $res = bff_get('/t/down/5');
ok t_cmp($res->code, 200);
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'connect error');
ok exists $res->{json}{_errors}{orders}{status} && !defined $res->{json}{_errors}{orders}{status};
$res = bff_get('/t/reqdown/5');
ok t_cmp($res->code, 502);
ok t_cmp($res->{json}{detail}, "required backend 'user' failed: connect error");

# the endpoint deadline (300 ms): an optional backend that is too slow
my $t0 = now();
$res = bff_get('/t/slow/2000/5');
my $took = now() - $t0;
ok t_cmp($res->code, 200);
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'timeout');
ok json_is($res->{json}{orders}, []);
ok $took >= 0.29 && $took < 0.6, "deadline respected ($took s)";
$res = bff_get('/t/slow/10/5');
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'fast enough: complete');

# a required backend past the deadline: 504, at the deadline
$t0 = now();
$res = bff_get('/t/slowreq/2000/5');
$took = now() - $t0;
ok t_cmp($res->code, 504);
ok t_cmp($res->{json}{title}, 'Gateway Timeout');
ok $took < 0.6, "504 without waiting for the backend ($took s)";

# a per-backend timeout shorter than the deadline
$t0 = now();
$res = bff_get('/t/betimeout/5');
$took = now() - $t0;
ok t_cmp($res->code, 200);
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'timeout');
ok $took < 0.4, "backend timeout=100ms ($took s)";

# partial answers are logged with the reason, at info level
open my $fh, '<', Apache::Test::vars('t_logs') . '/error_log' or die $!;
my $log = do { local $/; <$fh> };
ok $log =~ /BFF10: GET \/t\/optfault\/\{kind:~\[a-z\]\+\}\/\{id:int\}: optional backend 'orders' failed: response too large/,
   'failure logged with its reason';

# an invalid reply from one request does not poison the next
$res = bff_get('/t/optfault/none/5');
ok t_cmp($res->header('X-BFF-Completed'), 'true');
ok json_is($res->{json}{orders}, orders_of(5));
