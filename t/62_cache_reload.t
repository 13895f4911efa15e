# A configuration change between two graceful restarts never serves what
# the old definition stored: the <BFFEndpoint> section's fingerprint is
# part of every key. Redis keeps the entries across the restarts, so the
# old entry is still there; going back to the first definition finds its
# entries again.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Time::HiRes qw(sleep);
use BFFTest;

plan tests => 14;

my $U = BFFTest::svc_url('user');
my $O = BFFTest::svc_url('order');

sub conf {
    my $deny = shift;
    return <<"CONF";
BFFHTTPClient $ENV{BFF_T_CLIENT}
BFFCacheStore $ENV{BFF_T_REDIS_URL}
BFFCachePrefix p62-$$:
<BFFEndpoint GET /r/{id:int}>
    BFFBackend user GET $U/users/{id} required
    BFFDeny $deny
    BFFCacheTTL 60s
</BFFEndpoint>
CONF
}

my $h = start_httpd('p62', conf('user.email'));
my $port = $h->{port};
my $log = "$h->{dir}/error.log";
for (1 .. 100) { last if -s "$h->{dir}/httpd.pid"; sleep 0.05 }
open my $pf, '<', "$h->{dir}/httpd.pid" or die "no pid file: $!";
chomp(my $pid = <$pf>);
close $pf;

sub generations { my $n = () = slurp($log) =~ /resuming normal operations/g; $n }

# rewrites the configuration body of the instance, then SIGUSR1
sub graceful {
    my $deny = shift;
    my $conf = slurp("$h->{dir}/httpd.conf");
    $conf =~ s/BFFDeny \S+/BFFDeny $deny/ or die 'no BFFDeny in the config';
    open my $fh, '>', "$h->{dir}/httpd.conf" or die $!;
    print $fh $conf;
    close $fh;
    my $gen = generations();
    kill 'USR1', $pid or die "SIGUSR1: $!";
    my $until = BFFTest::now() + 15;
    sleep 0.1 while generations() <= $gen && BFFTest::now() < $until;
    # the old generation's children may still answer for a moment
    while (BFFTest::now() < $until) {
        my $r = http_get($port, '/r/9');
        last if $r->{json} && (exists $r->{json}{user}{email}) == ($deny ne 'user.email');
        sleep 0.1;
    }
    return generations() > $gen;
}

my $r = http_get($port, '/r/7');
ok t_cmp($r->header('X-Cache-Status'), 'MISS');
ok !exists $r->{json}{user}{email} && exists $r->{json}{user}{name}, 'email denied';
ok t_cmp(http_get($port, '/r/7')->header('X-Cache-Status'), 'HIT');

ok graceful('user.name'), 'graceful restart with another BFFDeny';
$r = http_get($port, '/r/7');
ok t_cmp($r->header('X-Cache-Status'), 'MISS', 'the old entry is not served');
ok exists $r->{json}{user}{email} && !exists $r->{json}{user}{name},
   'the answer follows the new definition';
ok t_cmp(http_get($port, '/r/7')->header('X-Cache-Status'), 'HIT', 'and is cached');

ok graceful('user.email'), 'graceful restart back to the first definition';
$r = http_get($port, '/r/7');
ok !exists $r->{json}{user}{email} && exists $r->{json}{user}{name},
   'the first definition again';
ok t_cmp($r->header('X-Cache-Status'), 'HIT', 'its entries are valid again');
ok kill(0, $pid), 'same parent throughout';

# the entries of both definitions are in Redis, under different keys
my @keys = grep { /^p62-$$:[0-9a-f]{64}$/ } split /\n/, redis_cli('--scan', '--pattern', "p62-$$:*");
ok @keys >= 2, 'one entry per definition (' . scalar(@keys) . ' keys)';
ok t_cmp(scalar(() = slurp($log) =~ /BFF3[14]:/g), 0, 'no unusable entries logged');
ok t_cmp(scalar(() = slurp($log) =~ /\[bff:(?:error|crit)\]/g), 0, 'no errors logged');
stop_httpd($h);
