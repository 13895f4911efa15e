# The shipped profile endpoint (conf/bff-profile.conf) over the real demo
# services: the merged document equals the fixtures, shaped.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

my @ids = (1, 2, 7, 50, 99, 100, 101, 120);
plan tests => 8 * @ids + 19;

for my $id (@ids) {
    svc_reset();
    my $res = bff_get("/api/profile/$id");
    ok t_cmp($res->code, 200, "profile $id: 200");
    ok t_cmp($res->header('Content-Type'), 'application/json', "profile $id: JSON");
    ok t_cmp($res->header('X-BFF-Completed'), 'true', "profile $id: complete");
    ok json_is($res->{json}, expected_profile($id));
    ok !exists $res->{json}{user}{password_hash};
    # exactly one call per backend, in dependency order
    my ($u, $o, $p) = map { svc_log($_) } qw(user order product);
    ok t_cmp(scalar(@$u) . '/' . scalar(@$o) . '/' . scalar(@$p), '1/1/1',
             "profile $id: one call per backend");
    my %seen;
    my @want = grep { !$seen{$_}++ } map { $_->{product_id} } @{ orders_of($id) };
    ok json_is(decode($p->[0]{body}), { ids => \@want });
    ok $p->[0]{t_start} >= $o->[0]{t_end}, "products called after orders";
}

# keys appear in config order, never in arrival order: delay the user
svc_reset();
svc_fault('user', delay_ms => 150, count => 1);
my $res = bff_get('/api/profile/3');
ok t_cmp($res->code, 200);
ok $res->content =~ /^\{"user":\{.*\},"orders":\[.*\],"products":\[.*\]\}$/s,
   'config order';

# a repeated product id is asked for once
my ($dup_user) = grep {
    my %c; $c{$_->{product_id}}++ for @{ orders_of($_->{id}) }; grep { $_ > 1 } values %c
} @{ users() };
ok $dup_user, 'fixtures hold a user with a repeated product';
svc_reset();
$res = bff_get("/api/profile/$dup_user->{id}");
my $body = decode(svc_log('product')->[0]{body});
my %n; $n{$_}++ for @{ $body->{ids} };
ok !grep({ $_ > 1 } values %n), 'product ids are unique';
ok json_is($res->{json}, expected_profile($dup_user->{id}));

# unknown user: the user service's 404 is passed on as a problem
svc_reset();
$res = bff_get('/api/profile/999999');
ok t_cmp($res->code, 404);
ok t_cmp($res->header('Content-Type'), 'application/problem+json');
ok t_cmp($res->{json}{status}, 404);
t_debug($res->content);
ok $res->{json}{detail} =~ /'user'/;
ok t_cmp($res->{json}{instance}, '/api/profile/999999');
ok $res->{json}{request_id} && $res->{json}{request_id} eq $res->header('X-Request-ID');

# HEAD answers like GET without a body
$res = bff_req(HEAD => '/api/profile/1');
ok t_cmp($res->code, 200);
ok t_cmp($res->content, '');
ok $res->header('Content-Length') > 100;

# another method on the same path: 405 with Allow
$res = bff_req(POST => '/api/profile/1');
ok t_cmp($res->code, 405);
ok t_cmp($res->header('Allow'), 'GET, HEAD');
ok t_cmp($res->header('Content-Type'), 'application/problem+json');

# the answer is re-serialised JSON, never the backend's bytes
$res = bff_get('/api/profile/1');
ok $res->content !~ /\n/ && $res->content !~ /": /, 'compact re-serialised JSON';
ok t_cmp($res->header('Content-Length'), length($res->content));
