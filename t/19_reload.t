# Keys are reloaded on graceful restart (a separate httpd with its own
# key files): JWT public key A -> B and API key K1 -> K2, SIGUSR1, and the
# new generation accepts only the new keys. A broken key file: `apache2
# -t` (what apache2ctl graceful runs first) fails naming the file, so the
# restart is not sent and the running generation keeps serving; a
# SIGUSR1 sent anyway makes httpd's parent exit (post_config failed
# during the restart: httpd's own behaviour), the log naming the file.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use IO::Socket::INET ();
use Time::HiRes qw(sleep);
use BFFTest;
use BFFJWT;

plan tests => 29;

my $keys = keydir();
my $dir = Apache::Test::vars('t_logs') . '/reload';
mkdir $dir;
my $httpd = Apache::Test::vars('httpd');
my $U = BFFTest::svc_url('user');
my $libexec = $ENV{BFF_T_LIBEXECDIR};

sub spew { my ($f, $s) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $s; close $fh }
sub keyline { "$_[0] " . sha256_hex($_[1]) . " $_[2]\n" }

# key A: the suite's rsa.key; key B: rsa-other.key and its public half
my $pub_b = "$dir/other.pub";
system('openssl', 'pkey', '-in', "$keys/rsa-other.key", '-pubout', '-out', $pub_b) == 0
    or die "openssl pkey failed";
my $tok_a = jwt(alg => 'RS256', kid => undef, key => "$keys/rsa.key");
my $tok_b = jwt(alg => 'RS256', kid => undef, key => "$keys/rsa-other.key");
my ($k1, $k2) = ("reload-k1-$$", "reload-k2-$$");

copy("$keys/rsa.pub", "$dir/jwt.pub") or die $!;
spew("$dir/apikeys.txt", keyline('partner1', $k1, 'gold'));

my $h = start_httpd('reload', <<"CONF");
LoadModule authn_core_module "$libexec/mod_authn_core.so"
LoadModule authz_user_module "$libexec/mod_authz_user.so"
BFFJWTKeyFile "$dir/jwt.pub"
BFFJWTAlgorithms RS256
BFFAPIKeyFile "$dir/apikeys.txt"
<BFFEndpoint GET /j/{id:int}>
    BFFBackend user GET $U/users/{id} required
</BFFEndpoint>
<BFFEndpoint GET /k/{id:int}>
    BFFBackend user GET $U/users/{id} required
</BFFEndpoint>
<Location /j/>
    AuthType bff-jwt
    Require valid-user
</Location>
<Location /k/>
    AuthType bff-apikey
    Require valid-user
</Location>
CONF
my $port = $h->{port};
my $log = "$h->{dir}/error.log";
# the pid file may come a moment after the socket
for (1 .. 100) { last if -s "$h->{dir}/httpd.pid"; sleep 0.05 }
open my $pf, '<', "$h->{dir}/httpd.pid" or die "no pid file: $!";
chomp(my $pid = <$pf>);
close $pf;

sub jget { http_get($port, '/j/1', Authorization => "Bearer $_[0]")->code }
sub kget { http_get($port, '/k/1', 'X-API-Key' => $_[0])->code }
sub codes4 { join ' ', jget($tok_a), jget($tok_b), kget($k1), kget($k2) }
sub generations { my $n = () = slurp($log) =~ /resuming normal operations/g; $n }

# generation 1: A and K1
ok t_cmp(codes4(), '200 401 200 401', 'before: token A and key K1 accepted, B and K2 not');
ok t_cmp(http_get($port, '/j/1', Authorization => "Bearer $tok_a")->{json}{user}{id}, 1, 'the backend answered');

# replace the key files, graceful restart
copy($pub_b, "$dir/jwt.pub") or die $!;
spew("$dir/apikeys.txt", keyline('partner2', $k2, 'silver'));
my $gen = generations();
ok kill('USR1', $pid), 'SIGUSR1 to the parent';
my $until = BFFTest::now() + 15;
sleep 0.1 while generations() <= $gen && BFFTest::now() < $until;
ok t_cmp(generations(), $gen + 1, 'a new generation started');
# the old generation's children stop accepting: poll until K2 is known
my $seen;
while (BFFTest::now() < $until) {
    $seen = kget($k2) == 200 and last;
    sleep 0.1;
}
ok $seen, 'the new generation answers';
ok kill(0, $pid), 'same parent (graceful)';
for my $round (1 .. 3) {
    ok t_cmp(jget($tok_a), 401, "after ($round): token signed with A refused");
    ok t_cmp(jget($tok_b), 200, "after ($round): token signed with B accepted");
    ok t_cmp(kget($k1), 401, "after ($round): K1 refused");
    ok t_cmp(kget($k2), 200, "after ($round): K2 accepted");
}
unlike slurp($log), qr/BFF11[46]/, 'no key errors';

# a broken API key file: the configuration test fails naming the file, so
# apache2ctl graceful (test, then signal) sends nothing
spew("$dir/apikeys.txt", "partner3 not-a-hash\n");
my $out = `'$httpd' -f '$h->{dir}/httpd.conf' -t 2>&1`;
isnt $? >> 8, 0, 'apache2 -t: broken API key file refused';
like $out, qr/BFF116: BFFAPIKeyFile: API keys file \Q$dir\E\/apikeys\.txt/, 'naming the file' or diag $out;
spew("$dir/apikeys.txt", keyline('partner2', $k2, 'silver'));
spew("$dir/jwt.pub", "-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n");
$out = `'$httpd' -f '$h->{dir}/httpd.conf' -t 2>&1`;
isnt $? >> 8, 0, 'apache2 -t: broken JWT key file refused';
like $out, qr/BFF114: cannot load the JWT keys: .*\Q$dir\E\/jwt\.pub/, 'naming the file' or diag $out;
copy($pub_b, "$dir/jwt.pub") or die $!;
$out = `'$httpd' -f '$h->{dir}/httpd.conf' -t 2>&1`;
is $? >> 8, 0, 'apache2 -t: the repaired files pass' or diag $out;
# the running generation kept serving throughout
ok t_cmp(codes4(), '401 200 401 200', 'still serving with the keys it loaded');
ok kill(0, $pid), 'same parent';

# SIGUSR1 anyway, with a broken file: httpd re-reads its configuration,
# post_config fails and the parent exits (httpd's behaviour for a failed
# restart); the log names the file
spew("$dir/apikeys.txt", "partner3 not-a-hash\n");
my $mark = -s $log;
kill 'USR1', $pid;
$until = BFFTest::now() + 15;
sleep 0.1 while kill(0, $pid) && BFFTest::now() < $until;
ok !kill(0, $pid), 'failed restart: the parent exited';
my $tail = substr slurp($log), $mark;
like $tail, qr/BFF116: BFFAPIKeyFile: API keys file \Q$dir\E\/apikeys\.txt line 1/, 'the error names the file and line';
# the old generation's children finish and go: nothing listens any more
my $gone;
while (BFFTest::now() < $until) {
    $gone = !IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) and last;
    sleep 0.1;
}
ok $gone, 'and the server is gone (restart with apache2ctl, which tests first)';
unlink "$h->{dir}/httpd.pid";   # stale: nothing to stop at the end
