# Sparse fieldsets (?fields= within BFFFields), per-client defaults by
# header and by JWT claim (with Vary), and the cache key of a selection.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;
use BFFJWT;

plan tests => 53;

my %u = map { ($_->{id} => $_) } @{ users() };
sub pick { my ($h, @k) = @_; return { map { exists $h->{$_} ? ($_ => $h->{$_}) : () } @k } }
sub safe_user { my %x = %{ $u{ $_[0] } }; delete @x{qw(password_hash internal_note)}; \%x }

# ---- ?fields= on the web endpoint (BFFFields user orders)
my $res = bff_get('/api/web/profile/3?fields=user.name,orders.total');
ok t_cmp($res->code, 200);
my $want = { user => { name => $u{3}{name} },
             orders => [ map { { total => $_->{total} } } @{ orders_of(3) } ] };
ok json_is($res->{json}, $want), 'only the selected fields';
$res = bff_get('/api/web/profile/3?fields=orders[].total,%20user.name,user.name');
ok json_is($res->{json}, $want), '[] accepted, spaces and duplicates ignored';
$res = bff_get('/api/web/profile/3?fields=orders.product.name');
ok json_is($res->{json}, { orders => [ map { { product => { name => products_by_id()->{ $_->{product_id} }{name} } } }
                                       @{ orders_of(3) } ] }), 'a path through the join';

# refused: forbidden (denied) and unknown fields, listed; no backend call
svc_reset();
$res = bff_get('/api/web/profile/3?fields=user.password_hash,nope,user.name,a..b,orders.internal_note.x');
ok t_cmp($res->code, 400);
ok t_cmp($res->header('Content-Type'), 'application/problem+json');
ok json_is([ @{ $res->{json} }{qw(title status)} ], [ 'Bad Request', 400 ]);
ok json_is($res->{json}{forbidden_fields}, [ 'user.password_hash', 'orders.internal_note.x' ]);
ok json_is($res->{json}{unknown_fields}, [ 'nope', 'a..b' ]);
ok json_is($res->{json}{allowed_fields}, [ 'user', 'orders' ]);
ok t_cmp($res->{json}{detail},
         'fields: unknown or forbidden: nope,a..b,user.password_hash,orders.internal_note.x');
ok $res->{json}{request_id}, 'request id';
ok t_cmp(scalar(@{ svc_log('user') }) + scalar(@{ svc_log('order') }), 0, 'no backend call');

$res = bff_get('/api/web/profile/3?fields=');
ok t_cmp($res->code, 400);
ok t_cmp($res->{json}{detail}, 'fields: the field list is empty');
$res = bff_get('/api/web/profile/3?fields=' . join ',', ('user') x 65);
ok t_cmp($res->{json}{detail}, 'fields: more than 64 fields');
$res = bff_get('/api/web/profile/3?fields=user.name&fields=nope');
ok json_is($res->{json}{unknown_fields}, ['nope'], 'every fields= parameter counts');

# the other shipped endpoints, by their client names
$res = bff_get('/api/mobile/profile/3?fields=name');
ok json_is($res->{json}, { name => $u{3}{name} }, 'mobile');
$res = bff_get('/api/partner/v1/customers/3?fields=purchases.data.order_id');
ok json_is($res->{json}, { purchases => { data => [ map { { order_id => $_->{id} } } @{ orders_of(3) } ] } }),
   'partner';
$res = bff_get('/api/partner/v1/customers/3?fields=orders');
ok json_is($res->{json}{unknown_fields}, ['orders'], 'backend names are not client names');
# an endpoint without BFFFields ignores the parameter
$res = bff_get('/api/profile/3?fields=user.name');
ok json_is([ sort keys %{ $res->{json} } ], [qw(orders products user)], 'no BFFFields: no selection');

# ---- per-client defaults by header; the key is the effective selection
my $path = '/t/clients/header/4';
my $mob = { user => { name => $u{4}{name} },
            orders => [ map { { id => $_->{id}, total => $_->{total} } } @{ orders_of(4) } ] };
$res = bff_get($path, 'X-Client' => 'mobile');
ok t_cmp($res->code, 200);
ok json_is($res->{json}, $mob), 'mobile defaults';
ok t_cmp($res->header('Vary'), qr/\bX-Client\b/, 'Vary: X-Client');
ok t_cmp($res->header('X-Cache-Status'), 'MISS');
$res = bff_get($path, 'X-Client' => 'MOBILE');
ok t_cmp($res->header('X-Cache-Status'), 'HIT', 'client names are case-insensitive');
ok json_is($res->{json}, $mob);
ok t_cmp($res->header('Vary'), qr/\bX-Client\b/, 'Vary on a hit too');
$res = bff_get("$path?fields=orders.total,user.name,orders[].id");
ok t_cmp($res->header('X-Cache-Status'), 'HIT', 'the same selection asked for explicitly: same entry');
ok json_is($res->{json}, $mob);

$res = bff_get($path, 'X-Client' => 'watch');
ok json_is($res->{json}, { user => { name => $u{4}{name} } }, 'watch defaults');
ok t_cmp($res->header('X-Cache-Status'), 'MISS', 'another selection, another entry');
$res = bff_get("$path?fields=user.name");
ok t_cmp($res->header('X-Cache-Status'), 'HIT', 'what watch gets is ?fields=user.name');

my $any = { user => safe_user(4), orders => [ map { { id => $_->{id} } } @{ orders_of(4) } ] };
$res = bff_get($path);
ok json_is($res->{json}, $any), 'no X-Client: the * defaults';
ok t_cmp($res->header('X-Cache-Status'), 'MISS');
$res = bff_get($path, 'X-Client' => 'fridge');
ok json_is($res->{json}, $any), 'an unknown client: the * defaults';
ok t_cmp($res->header('X-Cache-Status'), 'HIT');
$res = bff_get("$path?fields=user.email", 'X-Client' => 'mobile');
ok json_is($res->{json}, { user => { email => $u{4}{email} } }, '?fields= wins over the defaults');
$res = bff_get("$path?fields=user.email,user.internal_note", 'X-Client' => 'mobile');
ok t_cmp($res->code, 400);
ok json_is($res->{json}{forbidden_fields}, ['user.internal_note']);

# the cache key holds the normalised list: these are one entry
my @st;
for my $q ('user.created_at,orders.status', 'orders[].status, user.created_at',
           'user.created_at,orders.status,orders.status') {
    $res = bff_get("/t/clients/header/5?fields=$q");
    push @st, $res->header('X-Cache-Status');
}
ok json_is(\@st, [qw(MISS HIT HIT)], 'normalised field lists share an entry');
ok json_is($res->{json}, { user => { created_at => $u{5}{created_at} },
                           orders => [ map { { status => $_->{status} } } @{ orders_of(5) } ] });

# ---- per-client defaults by a verified claim
my $tok = sub { 'Bearer ' . jwt(claims => claims_ok(@_)) };
$res = bff_get('/t/clients/claim/6', Authorization => $tok->(client => 'mobile'));
ok t_cmp($res->code, 200);
ok json_is($res->{json}, { user => { name => $u{6}{name} } }, 'claim client=mobile');
ok t_cmp($res->header('Vary'), qr/\bAuthorization\b/, 'Vary: Authorization');
ok t_cmp($res->header('Vary') // '', qr/^(?!.*X-Client)/, 'not the header');
$res = bff_get('/t/clients/claim/6', Authorization => $tok->(client => 'partner'));
ok json_is($res->{json}, { user => { id => 6, created_at => $u{6}{created_at} } }, 'claim client=partner');
$res = bff_get('/t/clients/claim/6', Authorization => $tok->());
ok json_is($res->{json}, { user => safe_user(6) }, 'no claim: everything');
$res = bff_get('/t/clients/claim/6', Authorization => $tok->(client => ['mobile', 'x']));
ok json_is($res->{json}, { user => safe_user(6) }, 'a list is no client name');
$res = bff_get('/t/clients/claim/6', 'X-Client' => 'mobile');
ok t_cmp($res->code, 401, 'behind the token');

# the note for access logs
open my $fh, '<', Apache::Test::vars('t_logs') . '/bff_clients.log' or die $!;
my @l = <$fh>;
ok scalar(grep { m{^GET /t/clients/claim/6 HTTP/1.1 200 client=mobile fields=user.name$} } @l), 'notes bff-client, bff-fields';
ok scalar(grep { m{^GET /t/clients/header/4\?fields=user.email HTTP/1.1 200 client=mobile fields=user.email$} } @l);
ok scalar(grep { m{^GET /api/web/profile/3\?fields=orders%5B%5D\.total,%20user\.name,user\.name HTTP/1.1 200 client=- fields=orders.total,user.name$} } @l),
   'the note holds the normalised list';
