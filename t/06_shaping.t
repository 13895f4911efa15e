# Shaping (allow and deny lists through arrays) and reply limits.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 11;

my $res = bff_get('/t/allow/8');
ok t_cmp($res->code, 200);
my ($u) = grep { $_->{id} == 8 } @{ users() };
ok json_is($res->{json}{user}, { name => $u->{name} }), 'allow, then deny user.email';
ok json_is($res->{json}{orders},
           [ map { { id => $_->{id}, total => $_->{total} } } @{ orders_of(8) } ]),
   'allow reaches through the array';
ok $res->content =~ /^\{"user":\{"name":/, 'answer order kept';

# the shipped profile denies fields inside every order
$res = bff_get('/api/profile/8');
ok !grep({ exists $_->{internal_note} } @{ $res->{json}{orders} }), 'orders[].internal_note denied';
ok !exists $res->{json}{user}{internal_note};
ok grep({ exists $_->{internal_note} } @{ orders_of(8) }) > 0, 'the fixture has it';

# BFFMaxJSONDepth 1: the user object passes, the array of orders does not
$res = bff_get('/t/depth/8');
ok t_cmp($res->code, 200);
ok t_cmp($res->{json}{_errors}{orders}{reason}, 'invalid JSON');
ok t_cmp($res->header('X-BFF-Completed'), 'false');

# a 2 MiB reply is over the default 1 MiB limit: skipped, default used
$res = bff_get('/t/nested/8');
ok json_is([$res->{json}{orders}, $res->{json}{_errors}{orders}{reason}],
           [{ note => 'none' }, 'response too large']);
