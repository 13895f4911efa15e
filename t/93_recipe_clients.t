# conf/recipe-clients.conf started as it is shipped: the web and mobile
# profiles over the same backends, against answers computed from the
# demo services' fixtures.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

my @uids = (1, 7, 105);     # 7: a product twice; 105: no orders
plan tests => 4 * @uids + 3;

my $h = start_httpd_conf('recipe-clients', "$ENV{BFF_TOP}/conf/recipe-clients.conf");
my $port = $h->{port};

my $smaller = 1;
for my $uid (@uids) {
    my $w = http_get($port, "/api/web/profile/$uid");
    ok t_cmp($w->code, 200, "web $uid: 200");
    ok json_is($w->{json}, expected_web($uid)), "web $uid: the user and orders with their products";
    my $m = http_get($port, "/api/mobile/profile/$uid");
    ok t_cmp($m->code, 200, "mobile $uid: 200");
    ok json_is($m->{json}, expected_mobile($uid)), "mobile $uid: flat, only what the screens show";
    $smaller &&= length($m->content) * 2 < length($w->content) if @{ orders_of($uid) };
}
ok $smaller, 'the mobile answer is less than half the web answer';
ok t_cmp(http_get($port, '/api/partner/v1/customers/1')->code, 403,
         'the partner profile is not configured here: 403');
ok t_cmp(http_get($port, '/api/users/1')->code, 200, "the skeleton's endpoint still answers");
