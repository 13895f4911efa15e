# conf/gateway.conf, the gateway skeleton, started as it is shipped: its
# one endpoint answers (without the denied fields), every path it does not
# configure is refused (403), and its children run as its User.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 10;

my $h = start_httpd_conf('gateway', "$ENV{BFF_TOP}/conf/gateway.conf");
my $port = $h->{port};

my ($user) = grep { $_->{id} == 1 } @{ users() };
my %want = %$user;
delete @want{qw(password_hash internal_note)};

my $res = http_get($port, '/api/users/1');
ok t_cmp($res->code, 200, 'the endpoint answers');
ok json_is($res->{json}, { user => \%want }), 'the user without password_hash and internal_note';
ok t_cmp(http_get($port, '/api/users/abc')->code, 400, 'a bad parameter: 400');

# deny by default
ok t_cmp(http_get($port, '/')->code, 403, '/ is refused');
ok t_cmp(http_get($port, '/index.html')->code, 403, 'no file is served');
ok t_cmp(http_get($port, '/api/orders/1')->code, 403, 'a path no section grants is refused');
ok t_cmp(http_get($port, '/etc/passwd')->code, 403, '/etc/passwd is refused');
ok t_cmp(BFFTest::bff_req_port($port, 'POST', '/api/users/1')->code, 405,
         'another method on the endpoint: 405');

# the children run as User/Group (when started as root)
my @kids;
for my $pid (httpd_children($h)) {
    my $uid = (stat "/proc/$pid")[4];
    push @kids, scalar getpwuid($uid) if defined $uid;
}
my $want_user = $> == 0 ? 'nobody' : scalar getpwuid($>);
ok scalar(@kids) > 0, 'the server has children';
ok t_cmp(join(',', sort(uniq(@kids))), $want_user, "children run as $want_user");

sub uniq { my %s; grep { !$s{$_}++ } @_ }
