# Bad resilience configuration (BFFBreaker, BFFRetry, BFFUpstream,
# BFFHealthProbe, BFFBreakerSlots) is rejected by apache2 -t naming the
# file, the line and the problem; a full valid one passes.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFConfTest;

my $U = 'http://127.0.0.1:1';
my $EP = "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n";
my @cases = (
  [ "BFFBreaker maybe\n", 1, qr/BFFBreaker takes on or off/ ],
  [ "BFFBreaker on failure-rate=0\n", 1, qr/failure-rate=0: expected a number from 1 to 100/ ],
  [ "BFFBreaker on min-calls=30 window=20\n", 1, qr/min-calls=30 is larger than window=20/ ],
  [ "BFFBreaker on scope=vhost\n", 1, qr/scope=host or scope=backend/ ],
  [ "BFFBreaker on colour=red\n", 1, qr/unknown option 'colour='/ ],
  [ "BFFBreaker on open=soon\n", 1, qr/BFFBreaker: open=soon/ ],
  [ "${EP} BFFBreaker on half-open=0\n</BFFEndpoint>", 3, qr/half-open=0: expected a number from 1/ ],
  [ "BFFRetry\n", 1, qr/BFFRetry takes off or options/ ],
  [ "BFFRetry attempts=0\n", 1, qr/attempts=0: expected a number from 1 to 10/ ],
  [ "BFFRetry statuses=200\n", 1, qr/statuses=: '200' is not a status from 400 to 599/ ],
  [ "BFFRetry backoff=1s max-backoff=10ms\n", 1, qr/max-backoff is shorter than backoff/ ],
  [ "${EP} BFFRetry unsafe=maybe\n</BFFEndpoint>", 3, qr/unsafe=maybe: expected on or off/ ],
  [ "BFFUpstream users\n", 1, qr/BFFUpstream users: no instance/ ],
  [ "BFFUpstream users http://h:1/path\n", 1, qr/'http:\/\/h:1\/path' is not a base URL/ ],
  [ "BFFUpstream users ftp://h:1\n", 1, qr/is not a base URL/ ],
  [ "BFFUpstream users http://h:1 lb=random\n", 1, qr/lb=round-robin or lb=least-outstanding/ ],
  [ "BFFUpstream u http://h:1\nBFFUpstream u http://h:2\n", 2, qr/BFFUpstream u is defined twice/ ],
  [ "BFFUpstream a:b http://h:1\n", 1, qr/BFFUpstream takes a name/ ],
  [ "<VirtualHost 127.0.0.1:1>\n BFFUpstream u http://h:1\n</VirtualHost>", 2, qr/cannot occur within <VirtualHost>/ ],
  [ "BFFHealthProbe path=/x\n", 1, qr/needs interval=DURATION/ ],
  [ "BFFHealthProbe interval=soon\n", 1, qr/BFFHealthProbe: interval=soon: invalid duration/ ],
  [ "BFFHealthProbe every=1s\n", 1, qr/unknown option 'every='/ ],
  [ "BFFBreakerSlots 0\n", 1, qr/from 1 to 100000/ ],
);

plan tests => 3 * @cases + 2;

for my $c (@cases) {
    my ($body, $line, $re) = @$c;
    my ($rc, $out, $file) = configtest($body);
    my ($first) = grep { /\S/ && !/^<BFFEndpoint / && !/^ BFFBackend a / } split /\n/, $body;
    isnt $rc, 0, "rejected: $first";
    like $out, qr/line \Q$line\E of \Q$file\E/, "names the file and line $line" or diag $out;
    like $out, $re, 'names the problem' or diag $out;
}

my ($rc, $out) = configtest(<<"EOF");
BFFBreaker on failure-rate=40 min-calls=5 window=10 consecutive=5 slow=2s open=10s half-open=2 scope=host
BFFRetry attempts=3 backoff=50ms max-backoff=1s statuses=502,503,504,429 budget=20 budget-min=10
BFFUpstream users $U http://127.0.0.2:1 lb=least-outstanding
BFFHealthProbe interval=5s path=/healthz timeout=500ms
BFFBreakerSlots 512
<BFFEndpoint GET /p/{id:int}>
    BFFBackend a GET http://users/u/{id} required
    BFFBackend b POST $U/b body={"id":{id}}
    BFFBreaker off
    BFFRetry attempts=2 unsafe=on
</BFFEndpoint>
<BFFEndpoint GET /q/{id:int}>
    BFFBackend a GET $U/u/{id}
    BFFBreaker on consecutive=3 scope=backend
    BFFRetry off
</BFFEndpoint>
<Location /health>
    SetHandler bff-health
</Location>
EOF
ok t_cmp($rc, 0, 'a valid configuration passes') or diag $out;
like $out, qr/Syntax OK/;
