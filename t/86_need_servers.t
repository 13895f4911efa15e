# The suite's own rule for tests that need a server binary (Redis,
# memcached): skipped with the reason when it is not installed, a failure
# in strict mode (CI=true, or BFF_T_STRICT=1 as scripts/test.sh sets).
# Each case runs Apache::Test's plan in a perl of its own with a PATH
# that has no server binaries.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;

plan tests => 10;

my $lib = "$ENV{BFF_TOP}/t/lib";

# runs a test file's first lines under env: (exit code, output)
sub run_plan {
    my ($servers, %env) = @_;
    local %ENV = %ENV;
    delete @ENV{qw(CI BFF_T_STRICT)};
    @ENV{keys %env} = values %env;
    my $code = "use Apache::Test; use BFFTest; "
             . "plan tests => 1, need_servers(qw($servers)); ok 1;";
    my $out = `'$^X' -I'$lib' -e '$code' 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = run_plan('redis-server memcached');
ok t_cmp($rc, 0, 'installed: runs') or diag $out;
like $out, qr/^1\.\.1\n.*^ok 1\n/ms, 'the test ran';

($rc, $out) = run_plan('redis-server memcached', PATH => '/nonexistent');
ok t_cmp($rc, 0, 'missing, by hand: not a failure') or diag $out;
like $out, qr/^1\.\.0 # skipped: redis-server and memcached not installed \(scripts\/deps\.sh installs them\)/m,
     'skipped with the reason';

($rc, $out) = run_plan('redis-server', PATH => '/nonexistent', CI => 'true');
ok $rc != 0, 'missing under CI=true: fails';
like $out, qr/redis-server not installed .*a failure in strict mode/, 'naming the server and why';
unlike $out, qr/skipped/, 'not reported as a skip';

($rc, $out) = run_plan('memcached', PATH => '/nonexistent', BFF_T_STRICT => 1);
ok $rc != 0, 'missing with BFF_T_STRICT=1 (scripts/test.sh): fails';
like $out, qr/memcached not installed/;

($rc, $out) = run_plan('redis-server', PATH => '/nonexistent', CI => 'false');
ok t_cmp($rc, 0, 'CI=false is not CI: skipped') or diag $out;
