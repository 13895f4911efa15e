# Identity headers set by the gateway cannot be removed, shadowed or
# smuggled by the client: Connection options naming them (a proxy drops
# the headers listed there as hop-by-hop), and copies spelled so that a
# backend folds them into the same name (X-User_ID, x-user-id: CGI, WSGI
# and PHP read both as HTTP_X_USER_ID). On a ProxyPass route and on an
# aggregated endpoint; checked in the demo services' request logs, i.e.
# what the backend actually received.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use IO::Socket::INET;
use BFFTest;
use BFFAuth;
use BFFJWT;

plan tests => 31;

# A request written by hand: LWP manages Connection itself. Header lines
# are sent as given (repeated names, odd spellings).
sub raw_get {
    my ($path, @lines) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => vport(),
                                  Timeout => 10) or die "connect: $!";
    print $s "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n",
             map({ "$_\r\n" } @lines), "\r\n";
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($code) = $resp =~ m{^HTTP/1\.\d (\d{3})};
    return $code // 0;
}

# the names a backend may fold into x-user-id / x-user-roles
sub folded {
    my ($h, $name) = @_;
    (my $want = lc $name) =~ tr/_/-/;
    return grep { (my $k = lc $_) =~ tr/_/-/; $k eq $want } keys %$h;
}

my $tok = jwt(claims => claims_ok(sub => 'alice'));
my @auth = ("Authorization: Bearer $tok", 'Connection: close');

# --- ProxyPass route ---------------------------------------------------

# Connection: listing the identity headers must not strip them
svc_reset('user');
ok t_cmp(raw_get('/t/auth/x/users/4', "Authorization: Bearer $tok",
                 'Connection: close, X-User-ID, X-User-Roles'), 200);
my $h = svc_log('user')->[0]{headers};
ok t_cmp($h->{'x-user-id'}, 'alice', 'ProxyPass: Connection: X-User-ID does not strip it');
ok t_cmp($h->{'x-user-roles'}, 'editor,viewer', 'ProxyPass: nor X-User-Roles');

# the same in another spelling and on a second Connection line
svc_reset('user');
ok t_cmp(raw_get('/t/auth/x/users/4', "Authorization: Bearer $tok",
                 'Connection: x-user_id', 'Connection: close'), 200);
ok t_cmp(svc_log('user')->[0]{headers}{'x-user-id'}, 'alice',
         'ProxyPass: Connection: x-user_id on a second line');

# other Connection options keep working (the proxy still drops them)
svc_reset('user');
ok t_cmp(raw_get('/t/auth/x/users/4', "Authorization: Bearer $tok",
                 'Connection: close, X-Hop', 'X-Hop: 1'), 200);
$h = svc_log('user')->[0]{headers};
ok !exists $h->{'x-hop'}, 'a real hop-by-hop header is still not forwarded';
ok t_cmp($h->{'x-user-id'}, 'alice');

# client copies in every spelling are removed
svc_reset('user');
ok t_cmp(raw_get('/t/auth/x/users/4', @auth, 'X-User_ID: admin', 'x_user_roles: root',
                 'X-USER-ID: root', 'x-User_Id: boss'), 200);
$h = svc_log('user')->[0]{headers};
ok t_cmp([sort(folded($h, 'X-User-ID'))], ['x-user-id'], 'ProxyPass: one X-User-ID, no variant');
ok t_cmp($h->{'x-user-id'}, 'alice', 'ProxyPass: and it is the token\'s');
ok t_cmp([sort(folded($h, 'X-User-Roles'))], ['x-user-roles'], 'ProxyPass: one X-User-Roles');
ok t_cmp($h->{'x-user-roles'}, 'editor,viewer');

# without a token (no authentication here) the variants go all the same
svc_reset('user');
ok t_cmp(raw_get('/t/auth/open/users/4', 'Connection: close', 'X-User_ID: admin',
                 'x_user_roles: root'), 200);
$h = svc_log('user')->[0]{headers};
ok t_cmp([folded($h, 'X-User-ID'), folded($h, 'X-User-Roles')], [],
         'no token: no identity header in any spelling');

# --- aggregated endpoint -------------------------------------------------

svc_reset();
ok t_cmp(raw_get('/t/auth/agg/5', "Authorization: Bearer $tok",
                 'Connection: close, X-User-ID, X-User-Roles'), 200);
for my $role (qw(user order)) {
    my $e = svc_log($role)->[0]{headers};
    ok t_cmp($e->{'x-user-id'}, 'alice', "aggregated: $role still gets X-User-ID");
    ok t_cmp($e->{'x-user-roles'}, 'editor,viewer', "aggregated: $role still gets X-User-Roles");
}

svc_reset();
ok t_cmp(raw_get('/t/auth/agg/5', @auth, 'X-User_ID: admin', 'x_user_roles: root'), 200);
for my $role (qw(user order)) {
    my $e = svc_log($role)->[0]{headers};
    ok t_cmp([sort(folded($e, 'X-User-ID'))], ['x-user-id'], "aggregated: $role, no variant");
    ok t_cmp($e->{'x-user-id'}, 'alice');
}

# an endpoint that forwards a header spelled like an identity header
# (BFFForwardHeader X-User_ID): the client's copy never reaches it
svc_reset('user');
ok t_cmp(raw_get('/t/auth/aggfwd/5', @auth, 'X-User_ID: admin', 'X-Request-Tag: t1'), 200);
$h = svc_log('user')->[0]{headers};
ok t_cmp([sort(folded($h, 'X-User-ID'))], ['x-user-id'], 'forwarded variant: not sent');
ok t_cmp($h->{'x-user-id'}, 'alice', 'the identity is');
ok t_cmp($h->{'x-request-tag'}, 't1', 'other forwarded headers still are');

# --- configuration -------------------------------------------------------

use BFFConfTest;
my ($rc, $out) = configtest("BFFIdentityHeader X-User-ID sub\nBFFIdentityHeader X-User_Id iss");
ok $rc != 0 && $out =~ /BFFIdentityHeader X-User_Id is already defined here \(as X-User-ID/,
   'two identity headers a backend would fold together: refused';
($rc, $out) = configtest("BFFIdentityHeader X-A sub sep=");
ok $rc != 0 && $out =~ /BFFIdentityHeader X-A sub: sep=: missing value/, 'empty separator refused';
