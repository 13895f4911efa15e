# A stop that finds a child still starting. The parent sends SIGTERM to
# every child when it stops; a child still dropping its privileges
# (mod_unixd: setgid, initgroups, setuid) holds the signal back and stops
# at the start of child_init, before any module sets anything up, instead
# of running httpd's exit path inside the signal handler while initgroups
# may be inside malloc (the child then dies of SIGABRT).
#
# gdb runs httpd in the foreground, follows its first child and stops it
# at setgid; the test reads the child's blocked signals there, sends it
# SIGTERM and lets it go on.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFServices ();
use BFFTest;

plan skip_all => 'needs root: httpd drops privileges only when started as root' if $> != 0;
plan skip_all => 'needs gdb' unless BFFServices::have_bin('gdb');

my $h = BFFTest::write_httpd_conf('p29', <<'CONF');
<BFFEndpoint GET /s/{id:int}>
    BFFBackend user GET http://127.0.0.1:9/users/{id} required
</BFFEndpoint>
CONF
my $dir = $h->{dir};
my $httpd = Apache::Test::vars('httpd');

open my $py, '>', "$dir/child.py" or die $!;
print $py <<'PY';
import os, signal, gdb
def run(c): gdb.execute(c, to_string=True)
try:
    run('set debuginfod enabled off')   # no network lookups of symbols
except gdb.error:
    pass
for c in ('set pagination off', 'set confirm off', 'set startup-with-shell off',
          'set breakpoint pending on', 'set follow-fork-mode child',
          'set detach-on-fork on', 'handle SIGTERM nostop noprint pass',
          'handle SIGPIPE nostop noprint pass', 'break setgid'):
    run(c)
preload = os.environ.get('BFF_T_PRELOAD')
if preload:
    run('set environment LD_PRELOAD=' + preload)
# httpd's output to /dev/null: the parent gdb lets go must not keep the
# pipe this test reads open
run('tty /dev/null')
run('run')
pid = gdb.selected_inferior().pid
with open('/proc/%d/status' % pid) as f:
    blocked = [l.split()[1] for l in f if l.startswith('SigBlk:')][0]
print('CHILD %d' % pid)
print('SIGBLK %s' % blocked)
os.kill(pid, signal.SIGTERM)
run('continue')
print('EXITCODE %s' % gdb.parse_and_eval('$_exitcode'))
print('EXITSIGNAL %s' % gdb.parse_and_eval('$_exitsignal'))
PY
close $py;

# gdb itself runs without the sanitized suite's preloaded libasan; the
# httpd it starts gets it back
my $preload = delete local $ENV{LD_PRELOAD};
local $ENV{BFF_T_PRELOAD} = $preload // '';
my $out = `timeout 60 gdb -batch -nx -x $dir/child.py --args $httpd -f $dir/httpd.conf -DFOREGROUND 2>&1`;
my ($child) = $out =~ /^CHILD (\d+)$/m;
my ($blk) = $out =~ /^SIGBLK ([0-9a-f]+)$/m;
# a machine that forbids ptrace (a container without it) cannot run this
plan skip_all => "gdb cannot trace httpd here: $1"
    if !$child && $out =~ /^(.*(?:ptrace|Operation not permitted).*)$/m;
plan tests => 6;
ok $child, 'gdb stopped the first child at setgid' or diag $out;
ok defined $blk && (hex(substr($blk, -8)) & (1 << 14)), 'SIGTERM is blocked while the privileges are dropped'
    or diag "SigBlk: " . ($blk // 'none');
ok t_cmp(($out =~ /^EXITCODE (\S+)$/m)[0], '0', 'the child exits with status 0 on the held SIGTERM')
    or diag $out;
ok t_cmp(($out =~ /^EXITSIGNAL (\S+)$/m)[0], 'void', 'not killed by a signal');

# the parent (detached by gdb, still running) and its other children
BFFTest::stop_httpd($h);
my $log = slurp("$dir/error.log");
ok $log !~ /\[pid $child:tid \d+\] BFF4:/, 'the child stopped before the modules set up (no BFF4 from it)'
    or diag $log;
ok t_cmp(scalar(() = $log =~ /AH0005[12]:/g), 0, 'no child killed by a signal');
