# A graceful restart writes the shared breaker table (the new
# configuration's keys) only under the breaker mutex, which the old
# generation's children still use: while the test holds that mutex (an
# flock mutex, so the test can take it), the restart cannot finish.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Fcntl qw(:flock);
use Time::HiRes ();
use BFFTest;

plan tests => 9;

my $user = svc_url('user');
my $dir = Apache::Test::vars('t_logs') . '/brkrestart';
my $h = start_httpd('brkrestart', <<"CONF");
Mutex flock:$dir bff-breaker
BFFBreaker on consecutive=3
<BFFEndpoint GET /b/{id:int}>
    BFFBackend user GET $user/users/{id} required
</BFFEndpoint>
CONF

sub resumed {
    open my $fh, '<', "$h->{dir}/error.log" or return 0;
    return scalar grep { /resuming normal operations/ } <$fh>;
}

ok t_cmp(http_get($h->{port}, '/b/1')->code, 200, 'served');
my @files = glob("$dir/bff-breaker*");
ok t_cmp(scalar @files, 1, 'the breaker mutex is a lock file') or diag "@files";
open my $lk, '<', $files[0] or die "$files[0]: $!";
ok flock($lk, LOCK_EX), 'the test holds the breaker mutex';
my $n = resumed();
ok t_cmp($n, 1, 'one generation so far');

open my $pf, '<', "$h->{dir}/httpd.pid" or die $!;
chomp(my $ppid = <$pf>);
ok kill('USR1', $ppid), 'graceful restart';
# the new generation's post_config waits for the mutex
ok !wait_for(sub { resumed() > $n }, 2), 'the restart waits for the breaker mutex';
flock($lk, LOCK_UN);
close $lk;
ok wait_for(sub { resumed() > $n }, 20), 'and goes on once it is free';
ok t_cmp(http_get($h->{port}, '/b/2')->code, 200, 'served after the restart');
open my $el, '<', "$h->{dir}/error.log" or die $!;
ok scalar(grep { /BFF208: breakers: kept the table/ } <$el>), 'the table was kept';
