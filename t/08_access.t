# Endpoints live inside httpd's request processing: <Location> access
# control applies to them, and they coexist with mod_proxy routes.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 9;

svc_reset();
my $res = bff_get('/t/denied/1');
ok t_cmp($res->code, 403, 'Require all denied applies to an endpoint');
ok t_cmp(scalar @{ svc_log('user') }, 0, 'and no backend is called');

# an endpoint under a ProxyPass prefix wins over the proxy
$res = bff_get('/t/proxied/agg/3');
ok t_cmp($res->code, 200);
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'served by mod_bff');
ok t_cmp($res->{json}{user}{id}, 3);

# other paths under the prefix are still proxied as before
svc_reset();
$res = bff_get('/t/proxied/users/3');
ok t_cmp($res->code, 200);
ok !defined $res->header('X-BFF-Completed'), 'served by mod_proxy';
ok t_cmp(svc_log('user')->[0]{uri}, '/users/3');

# the suite runs with the backend HTTP client it was asked for
open my $fh, '<', Apache::Test::vars('t_logs') . '/error_log' or die $!;
my $client = $ENV{BFF_T_CLIENT};
ok scalar(grep { /BFF4: backend HTTP client: \Q$client\E,/ } <$fh>), "client $client in use";
