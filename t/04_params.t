# Path parameters: typed, validated before any backend is called, and
# percent-encoded when substituted, so a client cannot steer a backend
# request (host, path, query or headers).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

my @bad = ('abc', '-1', '1.5', '1e3', '0x10', '12345678901234567890', '%20', '+1');
my @inject = (
    # client path segment => what the backend must receive
    [ 'a%3Fb%3D1'          => 'a%3Fb%3D1' ],
    [ 'x%23frag'           => 'x%23frag' ],
    [ '%40evil.com'        => '%40evil%2Ecom' ],
    [ 'user%40evil.com%3A80' => 'user%40evil%2Ecom%3A80' ],
    [ '%2525'              => '%2525' ],
    [ '%252e%252e%252fadmin' => '%252e%252e%252fadmin' ],
    [ 'a%0D%0AHost%3A%20evil' => 'a%0D%0AHost%3A%20evil' ],
    [ '%C3%A9t%C3%A9'      => '%C3%A9t%C3%A9' ],
    [ '..a'                => '%2E%2Ea' ],
    [ 'a%20b'              => 'a%20b' ],
    [ "%5C..%5C"           => '%5C%2E%2E%5C' ],
);
my @blocked = ('..', '%2E%2E', 'a%2Fb', '%2F..%2Fadmin', '.', '1%00');

plan tests => 5 * @bad + 4 * @inject + 2 * @blocked + 13;

for my $v (@bad) {
    svc_reset();
    my $res = bff_get("/api/profile/$v");
    ok t_cmp($res->code, 400, "bad id '$v'");
    ok t_cmp($res->header('Content-Type'), 'application/problem+json');
    ok t_cmp($res->{json}{title}, 'Bad Request');
    ok $res->{json}{detail} =~ /'user_id'/, 'names the parameter';
    my $calls = @{ svc_log('user') } + @{ svc_log('order') } + @{ svc_log('product') };
    ok t_cmp($calls, 0, "no backend called for '$v'");
}

for my $case (@inject) {
    my ($in, $want) = @$case;
    svc_reset();
    my $res = bff_get("/t/echo/$in");
    my $log = svc_log('user');
    ok t_cmp(scalar @$log, 1, "one call for '$in'");
    my $uri = $log->[0]{uri} // '';
    ok t_cmp($uri, "/users/$want?q=$want", "encoded '$in'");
    ok $uri =~ m{^/users/[^/?#\s]+\?q=[^/?#&\s]+$}, 'one path segment, one query value';
    ok !grep({ /evil/i } keys %{ $log->[0]{headers} }), 'no injected header';
}

for my $v (@blocked) {
    svc_reset();
    my $res = bff_get("/t/echo/$v");
    isnt $res->code, 200, "'$v' is not answered";
    my $calls = @{ svc_log('user') };
    ok t_cmp($calls, 0, "'$v' never reaches a backend");
}

# not valid UTF-8: no JSON form, 400
svc_reset();
my $res = bff_get('/t/echo/%FF%FE');
ok t_cmp($res->code, 400);
ok t_cmp(scalar @{ svc_log('user') }, 0);

# uuid
$res = bff_get('/t/uuid/123e4567-e89b-12d3-A456-426614174000');
ok t_cmp($res->code, 200);
for my $v ('123', '123e4567-e89b-12d3-a456-42661417400', '123e4567e89b12d3a456426614174000',
           'g23e4567-e89b-12d3-a456-426614174000') {
    ok t_cmp(bff_get("/t/uuid/$v")->code, 400, "uuid '$v'");
}

# regex type {c:~[A-Z]{3}}
svc_reset();
$res = bff_get('/t/code/ABC/1');
ok t_cmp($res->code, 200);
ok t_cmp(svc_log('user')->[0]{uri}, '/users/1?c=ABC');
ok t_cmp(bff_get('/t/code/ABCD/1')->code, 400);
ok t_cmp(bff_get('/t/code/AB/1')->code, 400);
ok t_cmp(bff_get('/t/code/abc/1')->code, 400);

# a path with another shape is not an endpoint at all
ok t_cmp(bff_get('/api/profile/1/extra')->code, 404);
