# Shared memory and its mutex: a configured feature that cannot have them
# stops start-up with a message naming the directive that needs them
# (nothing runs silently without its limits or its cache).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFTest ();
use Time::HiRes ();

plan tests => 3;

my $svc = BFFTest::svc_url('user');

# The error log of an instance that must not start, when it did not:
# httpd detaches before the start-up that fails, and listens before its
# modules' post_config runs (so its port answers for a moment, as one
# that another process holds would), so its log is what tells: waited
# for until it says the start-up failed or the PID file says it did not.
sub start_fails {
    my ($name, $body) = @_;
    my $h = eval { BFFTest::start_httpd($name, $body) };
    my $dir = Apache::Test::vars('t_logs') . "/$name";
    my $log = '';
    for (1 .. 100) {
        if (open my $fh, '<', "$dir/error.log") {
            $log = do { local $/; <$fh> };
        }
        last if $log =~ /AH00020: Configuration Failed/ || -s "$dir/httpd.pid";
        Time::HiRes::sleep(0.05);
    }
    BFFTest::stop_httpd($h) if $h;
    return $log =~ /AH00020: Configuration Failed/ ? $log : '';
}

my $err = start_fails('shm-cache', <<"CONF");
BFFCacheStore shmcb:bff-cache(100)
<BFFEndpoint GET /p/{id:int}>
    BFFBackend user GET $svc/users/{id}
    BFFCacheTTL 10s
</BFFEndpoint>
CONF
like $err, qr/BFF361: the cache's shared memory store and fallback \(BFFCacheStore, BFFCacheFallback\): shared memory bff-cache\(100\): .*8192/,
     'a cache store whose shared memory cannot be made stops start-up, naming the directives';

# working settings start, and the shared memory is used
my $dir = Apache::Test::vars('t_logs');
my $h = BFFTest::start_httpd('shm-ok', <<"CONF");
BFFCacheStore shmcb:$dir/bff-cache-ok(1048576)
<BFFEndpoint GET /p/{id:int}>
    BFFBackend user GET $svc/users/{id}
    BFFCacheTTL 10s
</BFFEndpoint>
<Location /rl/>
    Require all granted
    BFFRateLimit rl-x 2/1m key=ip
</Location>
CONF
my @codes = map { BFFTest::http_get($h->{port}, '/rl/x')->code } 1 .. 3;
ok t_cmp("@codes", '404 404 429', 'shared-memory buckets limit');
ok t_cmp(BFFTest::http_get($h->{port}, '/p/1')->code, 200, 'the cached endpoint answers');
BFFTest::stop_httpd($h);
