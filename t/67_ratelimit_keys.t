# Rate-limit buckets in Redis are named by a hash of what they count (the
# user, the header value, the client address: t/14 checks the last): no
# identity appears in Redis key names, which SCAN, MONITOR and slow logs
# show.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use BFFTest ();
use BFFAuth;
use BFFJWT;

plan tests => 5;

my $user = "rk-user-$$";
my $tenant = "rk-tenant-$$";
my $ku = 'bff:rl:rl-user:3/3/60000:' . sha256_hex($user);
my $kh = 'bff:rl:rl-hdr:2/2/60000:' . sha256_hex($tenant);

sub bucket_keys { split /\n/, BFFTest::redis_cli('--scan', '--pattern', 'bff:rl:*') }

# An earlier test may have restarted Redis: a child's first call on a
# pooled connection then fails and its limits use the shm fallback for
# retry=1s. Try again after that.
my (%have, @codes);
for my $try (1 .. 4) {
    push @codes, areq(GET => '/t/rl/user/users/1', bearer(jwt(claims => claims_ok(sub => $user))))->code,
                 areq(GET => '/t/rl/hdr/users/1', 'X-Tenant' => $tenant)->code;
    %have = map { $_ => 1 } bucket_keys();
    last if $have{$ku} && $have{$kh};
    sleep 1.2;
}
ok((grep { $_ == 200 } @codes) >= 2, 'requests under the limits') or diag "@codes";
ok $have{$ku}, 'the user bucket is keyed by SHA-256 of the user';
ok $have{$kh}, 'the header bucket by SHA-256 of the value';
my @keys = keys %have;
ok t_cmp([grep { /\Q$user\E|\Q$tenant\E/ } @keys], [], 'no user or tenant in any key name');
ok t_cmp([grep { /127\.0\.0\.1/ } @keys], [], 'no client address either');
