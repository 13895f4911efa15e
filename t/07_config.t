# Bad configuration is rejected at start-up (apache2 -t, as apachectl
# configtest does) with a message naming the file, the line and the problem.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFConfTest;

my $U = 'http://127.0.0.1:1';
my @cases = (
  [ "<BFFEndpoint GET /p/{id:float}>\n BFFBackend a GET $U/{id}\n</BFFEndpoint>",
    1, qr/unknown type 'float'/ ],
  [ "<BFFEndpoint GET /p/x{id}>\n BFFBackend a GET $U/{id}\n</BFFEndpoint>",
    1, qr/whole|segment/i ],
  [ "<BFFEndpoint GET /p/{c:~[}>\n BFFBackend a GET $U/{c}\n</BFFEndpoint>",
    1, qr/regex|regular|unterminated/i ],
  [ "<BFFEndpoint GET /p/{id}/{id}>\n BFFBackend a GET $U/{id}\n</BFFEndpoint>",
    1, qr/twice|duplicate|unique/i ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://{id}/x\n</BFFEndpoint>",
    2, qr/BFFBackend a: .*(host|authority|path)/i ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:{id}/x\n</BFFEndpoint>",
    2, qr/BFFBackend a:/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET ftp://h/{id}\n</BFFEndpoint>",
    2, qr/http/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{nosuch.x}\n</BFFEndpoint>",
    1, qr/\{nosuch\.x\} names neither a parameter/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{b.x}\n BFFBackend b GET $U/{a.y}\n</BFFEndpoint>",
    1, qr/dependency cycle/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFBackend a GET $U/{id}\n</BFFEndpoint>",
    1, qr/'a' is defined twice/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id} default={oops\n</BFFEndpoint>",
    2, qr/default=: invalid JSON/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a POST $U/x body={\"ids\":{id}\n</BFFEndpoint>",
    2, qr/body=/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/x body={\"ids\":{id}}\n</BFFEndpoint>",
    1, qr/body= needs a method that takes a body/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id} retries=3\n</BFFEndpoint>",
    2, qr/unknown option 'retries='/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id} required default=[]\n</BFFEndpoint>",
    1, qr/default= has no use on a required backend/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a get $U/{id}\n</BFFEndpoint>",
    2, qr/not an HTTP method/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET\n</BFFEndpoint>",
    2, qr/takes a name, a method and a URL/ ],
  [ "BFFBackend a GET $U/x\n", 1, qr/only allowed inside <BFFEndpoint>/ ],
  [ "BFFDeny a.b\n", 1, qr/only allowed inside <BFFEndpoint>/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n Require all denied\n</BFFEndpoint>",
    3, qr/Require is not allowed inside <BFFEndpoint>/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n</BFFEndpoint>", 1, qr/no BFFBackend defined/ ],
  [ "<BFFEndpoint DELETE /p/{id:int}>\n BFFBackend a GET $U/{id}\n</BFFEndpoint>",
    1, qr/GET \(HEAD is answered too\), POST, PUT or PATCH expected/ ],
  [ "<BFFEndpoint GET>\n BFFBackend a GET $U/x\n</BFFEndpoint>", 1, qr/takes a method and a path/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n</BFFEndpoint>\n"
    . "<BFFEndpoint GET /p/{id:int}>\n BFFBackend b GET $U/{id}\n</BFFEndpoint>",
    4, qr/already defined at .*:1/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFTimeout soon\n</BFFEndpoint>",
    3, qr/BFFTimeout soon/ ],
  [ "BFFTimeout -1s\n", 1, qr/BFFTimeout/ ],
  [ "BFFMaxResponseSize 0\n", 1, qr/greater than 0/ ],
  [ "BFFMaxResponseSize 12q\n", 1, qr/BFFMaxResponseSize 12q/ ],
  [ "BFFMaxJSONDepth 0\n", 1, qr/from 1 to 1024/ ],
  [ "BFFForwardHeader Host\n", 1, qr/never forwarded/ ],
  [ "BFFForwardHeader X-Request-ID\n", 1, qr/never forwarded/ ],
  [ "BFFForwardHeader \"Bad Header\"\n", 1, qr/not a header name/ ],
  [ "BFFForwardQuery a&b\n", 1, qr/not a plain parameter name/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFMaxBackends 1\n BFFBackend a GET $U/{id}\n BFFBackend b GET $U/{id}\n</BFFEndpoint>",
    1, qr/more than the limit of 1/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFDeny a..b\n</BFFEndpoint>",
    3, qr/BFFDeny a\.\.b/ ],
  [ "<Location /x>\n BFFTimeout 2s\n</Location>", 2, qr/BFFTimeout not allowed in <Location> context/ ],
  [ "BFFCacheStore redis://h:99999/0\n", 1, qr/BFFCacheStore: .*port/i ],
  [ "BFFCacheStore mysql://h\n", 1, qr/expected redis:/ ],
  [ "BFFCacheStore memcache://\n", 1, qr/BFFCacheStore: / ],
  [ "BFFCacheFallback redis://h:1\n", 1, qr/expected shmcb/ ],
  [ "BFFCachePrefix 'a b'\n", 1, qr/BFFCachePrefix/ ],
  [ "BFFCacheTimeout 0\n", 1, qr/greater than 0/ ],
  [ "BFFCachePoolSize 0\n", 1, qr/1 to 4096/ ],
  [ "<VirtualHost 127.0.0.1:1>\n BFFCacheStore shmcb\n</VirtualHost>", 2, qr/cannot occur within <VirtualHost>/ ],
  [ "BFFCacheTTL 2s\n", 1, qr/only allowed inside <BFFEndpoint>/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFCacheVary header:X\n</BFFEndpoint>",
    1, qr/need BFFCacheTTL/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFCacheTTL 1s\n BFFCacheVary cookie:x\n</BFFEndpoint>",
    4, qr/unknown kind 'cookie'/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFCacheTTL 1s\n BFFCacheTag x:{nope.id}\n</BFFEndpoint>",
    1, qr/names neither a parameter nor a backend/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFCacheTTL 1s\n BFFCacheTag 'a b'\n</BFFEndpoint>",
    4, qr/BFFCacheTag/ ],
  [ "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFCacheTTL 1s\n BFFCacheClientNoCache maybe\n</BFFEndpoint>",
    4, qr/expected on or off/ ],
);

plan tests => 3 * @cases + 2;

for my $c (@cases) {
    my ($body, $line, $re) = @$c;
    my ($rc, $out, $file) = configtest($body);
    my ($first) = grep { /\S/ && !/^<BFFEndpoint GET \/p\/\{id:int\}>$/ } split /\n/, $body;
    isnt $rc, 0, "rejected: $first";
    like $out, qr/line \Q$line\E of \Q$file\E/, "names the file and line $line" or diag $out;
    like $out, $re, 'names the problem' or diag $out;
}

my ($rc, $out) = configtest(<<"EOF");
<BFFEndpoint GET /p/{id:int}/{code:~[A-Z]{3}}/{u:uuid}/{s}>
    BFFBackend a GET $U/a/{id}?c={code}&u={u} required
    BFFBackend b POST $U/b body={"ids":{a[].x},"s":{s},"n":{a.n}} default={"k":[1]} timeout=250ms max-size=2k
    BFFBackend c GET $U/c/{b.id}
    BFFDeny a.secret b[].secret
    BFFAllow a b c
    BFFTimeout 1.5s
    BFFConnectTimeout 100ms
    BFFMaxResponseSize 512k
    BFFMaxJSONDepth 32
    BFFForwardHeader Accept-Language
    BFFForwardQuery page
    BFFCacheTTL 30s
    BFFCacheStaleIfError 5m
    BFFCachePartialTTL 2s
    BFFCacheLockWait 500ms
    BFFCacheClientNoCache on
    BFFCacheControl "private, max-age=30"
    BFFCacheVary header:Accept-Language note:bff-subject
    BFFCacheKeyQuery lang
    BFFCacheTag user:{id} item:{b[].id} static-tag
</BFFEndpoint>
BFFTimeout 3s
BFFCacheStore redis://:secret\@127.0.0.1:6379/2
BFFCacheFallback shmcb
BFFCacheNearTTL 1s
BFFCacheMaxEntrySize 256k
BFFMaxBackends 8
BFFBackendConnections 32
EOF
ok t_cmp($rc, 0, 'a valid configuration passes') or diag $out;
like $out, qr/Syntax OK/;
