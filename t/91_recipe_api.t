# conf/recipe-api.conf started as it is shipped: an endpoint for signed-in
# users (JWT with the scope orders:read), cached per user and limited to
# 5 requests a minute per user.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFJWT;

plan tests => 22;

my $h = start_httpd_conf('recipe-api', "$ENV{BFF_TOP}/conf/recipe-api.conf",
                         BFF_JWT_KEY => keydir() . '/rsa.pub',
                         BFF_JWT_ISSUER => 'https://issuer.test',
                         BFF_JWT_AUDIENCE => 'bff-test');
my $port = $h->{port};
sub get { my ($path, $tok) = @_; http_get($port, $path, $tok ? (Authorization => "Bearer $tok") : ()) }

my ($user) = grep { $_->{id} == 1 } @{ users() };
my @orders = map { my %o = %$_; delete $o{internal_note}; \%o } @{ orders_of(1) };
my $want = { user => { id => 1, name => $user->{name} }, orders => \@orders };

svc_reset('user', 'order');
my $alice = jwt(claims => claims_ok(sub => 'alice'));

# refused before anything else: no backend call
ok t_cmp(get('/api/orders/1')->code, 401, 'no token: 401');
ok t_cmp(get('/api/orders/1', 'not.a.token')->code, 401, 'a broken token: 401');
ok t_cmp(get('/api/orders/1', jwt(claims => claims_ok(iss => 'https://evil.test')))->code, 401,
         'another issuer: 401');
ok t_cmp(get('/api/orders/1', jwt(claims => claims_ok(sub => 'bob', scope => 'profile:read')))->code,
         403, 'without the scope orders:read: 403');
ok t_cmp(scalar @{ svc_log('user') }, 0, 'no call reached the user service');

# cached per user
my $t0 = now();
my $res = get('/api/orders/1', $alice);
ok t_cmp($res->code, 200, 'alice: 200');
ok json_is($res->{json}, $want), 'the user name and the orders without internal notes';
ok t_cmp($res->header('X-Cache-Status'), 'MISS', 'first: MISS');
$res = get('/api/orders/1', $alice);
ok t_cmp($res->code, 200, 'alice again: 200');
ok t_cmp($res->header('X-Cache-Status'), 'HIT', 'then: HIT');
ok t_cmp($res->header('Cache-Control') // '', qr/private/, 'stored for alice only: private');
ok t_cmp(scalar @{ svc_log('user') }, 1, 'one call to the user service for the two answers');
my $carol = jwt(claims => claims_ok(sub => 'carol'));
$res = get('/api/orders/1', $carol);
ok t_cmp($res->code, 200, 'carol: 200');
ok t_cmp($res->header('X-Cache-Status'), 'MISS', "carol does not get alice's entry");

# 5 a minute per user: alice has used 2. The bucket refills one token
# every 12 s, so a slow machine may let one more through per 12 s spent.
my $passed = 2;
for (1 .. 10) {
    $res = get('/api/orders/1', $alice);
    last if $res->code != 200;
    $passed++;
}
my $refilled = int((now() - $t0) / 12);
ok $passed >= 5 && $passed <= 5 + $refilled,
   "alice: 5 requests pass in the minute ($passed passed, $refilled refilled)";
ok t_cmp($res->code, 429, 'alice: then 429');
ok t_cmp($res->header('Retry-After') // '', qr/^\d+$/, 'with Retry-After');
ok t_cmp($res->header('Content-Type') // '', qr{application/problem\+json}, 'as problem+json');
ok t_cmp(get('/api/orders/1', $carol)->code, 200, 'carol still passes: the limit is per user');

# the skeleton's rules still hold
ok t_cmp(get('/api/users/1')->code, 200, "the skeleton's endpoint still answers");
ok t_cmp(get('/api/other')->code, 403, 'an unconfigured path: 403');
ok t_cmp(get('/api/orders/abc', $carol)->code, 400, 'a bad parameter: 400');
