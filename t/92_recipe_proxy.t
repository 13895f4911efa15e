# conf/recipe-proxy.conf started as it is shipped: a ProxyPass location
# behind AuthType bff-jwt; the service sees only requests with a valid
# token and the scope, with X-User-ID from the token.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFJWT;

plan tests => 12;

my $h = start_httpd_conf('recipe-proxy', "$ENV{BFF_TOP}/conf/recipe-proxy.conf",
                         BFF_JWT_KEY => keydir() . '/rsa.pub',
                         BFF_JWT_ISSUER => 'https://issuer.test',
                         BFF_JWT_AUDIENCE => 'bff-test');
my $port = $h->{port};
sub get { my ($path, $tok, @hdr) = @_; http_get($port, $path, ($tok ? (Authorization => "Bearer $tok") : ()), @hdr) }

svc_reset('order');
ok t_cmp(get('/orders/user/1')->code, 401, 'no token: 401');
ok t_cmp(get('/orders/user/1')->header('WWW-Authenticate') // '', qr/^Bearer/, 'with a Bearer challenge');
ok t_cmp(get('/orders/user/1', jwt(claims => claims_ok(exp => time - 100)))->code, 401,
         'an expired token: 401');
ok t_cmp(get('/orders/user/1', jwt(claims => claims_ok(aud => 'other')))->code, 401,
         'another audience: 401');
ok t_cmp(get('/orders/user/1', jwt(claims => claims_ok(scope => 'profile:read')))->code, 403,
         'without the scope orders:read: 403');
ok t_cmp(scalar @{ svc_log('order') }, 0, 'none of them reached the service');

my $res = get('/orders/user/1', jwt(claims => claims_ok(sub => 'alice')), 'X-User-ID' => 'admin');
ok t_cmp($res->code, 200, 'a valid token: 200');
ok json_is($res->{json}, orders_of(1)), "the service's answer, as it is";
my $log = svc_log('order');
ok t_cmp(scalar @$log, 1, 'one request reached the service');
ok t_cmp($log->[0]{uri} // '', '/orders/user/1', 'at the proxied path');
ok t_cmp($log->[0]{headers}{'x-user-id'} // '', 'alice', "X-User-ID from the token, not the client's");

ok t_cmp(get('/orders', jwt())->code, 403, 'a path outside the location: 403 (deny by default)');
