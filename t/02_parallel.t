# Concurrency: independent backends run at the same time; a dependent
# backend starts as soon as what it references is in.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use POSIX ();

plan tests => 14;

bff_get('/t/parallel/1');   # warm the keep-alive connections

# three backends delayed 200 ms each: well under 400 ms in all
svc_reset();
my $t0 = now();
my $res = bff_get('/t/parallel/5');
my $took = now() - $t0;
ok t_cmp($res->code, 200);
ok t_cmp($res->header('X-BFF-Completed'), 'true');
ok $took >= 0.2 && $took < 0.36, "3 x 200 ms backends took $took s";
my @logs = map { svc_log($_)->[0] } qw(user order product);
my ($first_end) = sort { $a <=> $b } map { $_->{t_end} } @logs;
ok !grep({ $_->{t_start} > $first_end } @logs), 'all three started before any finished';

# chain: user (100 ms) -> orders(user.id) -> products(orders[].product_id)
svc_reset();
$res = bff_get('/t/chain/7');
ok t_cmp($res->code, 200);
my ($u, $o, $p) = map { svc_log($_)->[0] } qw(user order product);
ok $o->{t_start} >= $u->{t_end}, 'orders waits for the user';
ok $p->{t_start} >= $o->{t_end}, 'products waits for the orders';
ok t_cmp($o->{uri}, '/orders/user/7');
ok json_is($res->{json}{orders}, orders_of(7));
ok !exists $res->{json}{user}{password_hash};

# keep-alive: sequential client requests reuse the backend connections
svc_reset();
bff_get('/api/profile/' . (1 + $_ % 5)) for 1 .. 30;
my $ulog = svc_log('user');
my %ports; $ports{$_->{peer_port}}++ for @$ulog;
ok t_cmp(scalar @$ulog, 30);
ok scalar(keys %ports) <= 10, '30 requests used ' . scalar(keys %ports) . ' backend connections';

# many clients at once, several children and threads: every answer correct
my %want = map { ($_ => BFFTest::canonical(expected_profile($_))) } 1 .. 20;
my @kids;
for my $k (1 .. 8) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $bad = 0;
        for my $i (1 .. 25) {
            my $id = 1 + ($k * 7 + $i) % 20;
            my $r = bff_get("/api/profile/$id");
            $bad++ unless $r->code == 200 && $r->{json}
                && BFFTest::canonical($r->{json}) eq $want{$id};
        }
        POSIX::_exit($bad > 255 ? 255 : $bad);
    }
    push @kids, $pid;
}
my $bad = 0;
for (@kids) { waitpid $_, 0; $bad += $? >> 8 }
ok t_cmp($bad, 0, '200 concurrent requests, all answers exact');
ok t_cmp(scalar @{ svc_log('user') }, 30 + 200, 'one user call per request');
