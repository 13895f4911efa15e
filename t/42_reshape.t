# Merge policies for keys written twice (never arrival order), lifting,
# renaming, wrapping.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest;

plan tests => 16;

my %u = map { ($_->{id} => $_) } @{ users() };
my ($a, $b) = ($u{1}, $u{2});

# user 1 and user 2 both lifted into the root: "name" collides
my $res = bff_get('/t/merge/first/1/2');
ok t_cmp($res->code, 200);
ok json_is($res->{json}, { id => 1, name => $a->{name}, email => $b->{email} }), 'first-wins';

$res = bff_get('/t/merge/last/1/2');
ok json_is($res->{json}, { id => 1, name => $b->{name}, email => $b->{email} }), 'last-wins';

$res = bff_get('/t/merge/namespace/1/2');
ok json_is($res->{json}, { id => 1, name => $a->{name}, other_name => $b->{name},
                           email => $b->{email} }), 'namespace: the later one under other_name';

$res = bff_get('/t/merge/error/1/2');
ok t_cmp($res->code, 502, 'error: a collision config could not rule out');
ok t_cmp($res->header('Content-Type'), 'application/problem+json');
ok t_cmp($res->{json}{detail}, "conflicting key 'name': 'other' writes a key that is already there "
         . '(BFFMergePolicy error)');
open my $fh, '<', Apache::Test::vars('t_logs') . '/error_log' or die $!;
ok scalar(grep { /BFF402: GET \/t\/merge\/error\/\{a:int\}\/\{b:int\}: conflicting key 'name'/ } <$fh>),
   'logged';
# equal values collide all the same: keys are compared, not values
$res = bff_get('/t/merge/error/1/1');
ok t_cmp($res->code, 502, "the same user twice writes \"name\" twice");

# config order, not arrival order: either backend may answer first
my @got;
for my $d ([0, 300], [300, 0]) {
    $res = bff_get("/t/merge/order/$d->[0]/$d->[1]");
    push @got, $res->{json}{name};
}
ok json_is(\@got, [ $b->{name}, $b->{name} ], 'last-wins is the last in config order both times');

# lift into another object, rename out of it, rename inside array
# elements, wrap the array
$res = bff_get('/t/reshape/8');
ok t_cmp($res->code, 200);
ok json_is($res->{json}, {
    profile => { id => 8, name => $u{8}{name} },
    contact => { email => $u{8}{email} },
    orders  => { items => [ map { { id => $_->{id}, state => $_->{status} } } @{ orders_of(8) } ] },
}), 'lift into profile, rename, wrap';
ok $res->content !~ /"user"|"status"/, 'the old names are gone';

# a user without orders: the wrap holds an empty list
$res = bff_get('/t/reshape/110');
ok json_is($res->{json}{orders}, { items => [] });
ok json_is($res->{json}{profile}, { id => 110, name => $u{110}{name} });
ok json_is($res->{json}{contact}, { email => $u{110}{email} });
