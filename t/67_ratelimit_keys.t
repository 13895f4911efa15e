# Rate-limit buckets in Redis are named by a hash of what they count (the
# user, the header value, the client address: t/14 checks the last): no identity appears in
# Redis key names, which SCAN, MONITOR and slow logs show.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Digest::SHA qw(sha256_hex);
use BFFTest ();
use BFFAuth;
use BFFJWT;

plan tests => 6;

my $user = "rk-user-$$";
my $tenant = "rk-tenant-$$";

ok t_cmp(areq(GET => '/t/rl/user/users/1', bearer(jwt(claims => claims_ok(sub => $user))))->code,
         200, 'a user bucket');
ok t_cmp(areq(GET => '/t/rl/hdr/users/1', 'X-Tenant' => $tenant)->code, 200, 'a header bucket');

my @keys = split /\n/, redis_cli('--scan', '--pattern', "'bff:rl:*'");
ok scalar(@keys) >= 2, 'buckets in Redis';
ok t_cmp([grep { /\Q$user\E|\Q$tenant\E|127\.0\.0\.1/ } @keys], [], 'no user, tenant or address in any key name');
my %have = map { $_ => 1 } @keys;
ok $have{'bff:rl:rl-user:3/3/60000:' . sha256_hex($user)}, 'the user bucket is keyed by SHA-256 of the user';
ok $have{'bff:rl:rl-hdr:2/2/60000:' . sha256_hex($tenant)}, 'the header bucket by SHA-256 of the value';
