# Configuration errors of the client-specific directives are refused at
# start-up (apache2 -t) naming the file, line and problem; collisions the
# merge policy "error" can see are among them.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFConfTest;

my $U = 'http://127.0.0.1:1';
my $E = "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET $U/{id}\n BFFBackend b GET $U/b/{id}\n";
my @cases = (
  [ "$E BFFRename a.x y\n BFFRename b.z y\n</BFFEndpoint>", 1,
    qr/BFFRename a\.x y and BFFRename b\.z y write the same key \(BFFMergePolicy error\)/ ],
  [ "$E BFFRename a.x b\n</BFFEndpoint>", 1,
    qr/BFFRename a\.x b: 'b' is already the key of backend 'b'/ ],
  [ "$E BFFMergePolicy newest\n</BFFEndpoint>", 4, qr/unknown merge policy 'newest'/ ],
  [ "$E BFFJoin a.product b[].id=a[].pid\n</BFFEndpoint>", 4, qr/join target 'a\.product' must be a new field/ ],
  [ "$E BFFJoin a[].product b.id=a[].pid\n</BFFEndpoint>", 4, qr/join source 'b\.id' must be a field/ ],
  [ "$E BFFJoin a[].product b[].id=c[].pid\n</BFFEndpoint>", 4, qr/join key 'c\[\]\.pid' must be a field/ ],
  [ "$E BFFJoin a[].product b[].id\n</BFFEndpoint>", 4, qr/expected SOURCE\[\]\.KEY=LIST\[\]\.FIELD/ ],
  [ "$E BFFRename a[].x y\n</BFFEndpoint>", 4, qr/both paths must go through the same arrays/ ],
  [ "$E BFFRename a.x a.x\n</BFFEndpoint>", 4, qr/same path/ ],
  [ "$E BFFLift a[].x\n</BFFEndpoint>", 4, qr/lift path 'a\[\]\.x' cannot go through an array/ ],
  [ "$E BFFWrap a b.c\n</BFFEndpoint>", 4, qr/wrap key 'b\.c' must be one name/ ],
  [ "$E BFFDropEmpty maybe\n</BFFEndpoint>", 4, qr/BFFDropEmpty/ ],
  [ "$E BFFFields a..b\n</BFFEndpoint>", 4, qr/BFFFields a\.\.b: reference 'a\.\.b': empty segment/ ],
  [ "$E BFFClientSelect cookie:x\n</BFFEndpoint>", 4, qr/expected header:NAME or claim:PATH/ ],
  [ "$E BFFClientSelect header:X-Client\n</BFFEndpoint>", 1,
    qr/BFFClientSelect needs BFFClientFields/ ],
  [ "$E BFFClientFields mobile a.x\n</BFFEndpoint>", 1, qr/needs BFFClientSelect/ ],
  [ "$E BFFFields a\n BFFClientSelect header:X-C\n BFFClientFields m a.x b.y\n</BFFEndpoint>", 1,
    qr/BFFClientFields m: not in BFFFields or denied: b\.y/ ],
  [ "$E BFFFields a\n BFFDeny a.secret\n BFFClientSelect header:X-C\n BFFClientFields m a.secret\n</BFFEndpoint>", 1,
    qr/BFFClientFields m: not in BFFFields or denied: a\.secret/ ],
  [ "$E BFFClientSelect header:X-C\n BFFClientFields m a.x\n BFFClientFields m b.x\n</BFFEndpoint>", 6,
    qr/BFFClientFields m: already defined at .*:5/ ],
  [ "$E BFFBackend c GET $U/c/{a.x} per-item\n</BFFEndpoint>", 1,
    qr/backend 'c': per-item needs a reference through an array/ ],
  [ "$E BFFBackend c GET $U/c/{a[].x} per-item concurrency=0\n</BFFEndpoint>", 4,
    qr/concurrency=0: expected a number from 1 to 256/ ],
  [ "$E BFFBackend c GET $U/c/{a[].x} concurrency=2\n</BFFEndpoint>", 1,
    qr/concurrency= and max-items= need per-item/ ],
  [ "BFFLift a\n", 1, qr/only allowed inside <BFFEndpoint>/ ],
  [ "BFFFields a\n", 1, qr/only allowed inside <BFFEndpoint>/ ],
);

plan tests => 3 * @cases + 4;

for my $c (@cases) {
    my ($body, $line, $re) = @$c;
    my ($rc, $out, $file) = configtest($body);
    my @l = grep { /\S/ } split /\n/, $body;
    isnt $rc, 0, 'rejected: ' . $l[@l > 1 ? -2 : 0];
    like $out, qr/line \Q$line\E of \Q$file\E/, "names the file and line $line" or diag $out;
    like $out, $re, 'names the problem' or diag $out;
}

# the collisions above are fine with another policy
my ($rc, $out) = configtest("$E BFFRename a.x y\n BFFRename b.z y\n BFFRename a.q b\n"
                            . " BFFMergePolicy first-wins\n</BFFEndpoint>");
ok t_cmp($rc, 0, 'first-wins accepts them') or diag $out;

# every directive together
($rc, $out) = configtest(<<"CONF");
<BFFEndpoint GET /p/{id:int}>
    BFFBackend user     GET $U/users/{id} required
    BFFBackend orders   GET $U/orders/{id} default=[]
    BFFBackend products GET $U/products/{orders[].product_id} per-item concurrency=4 max-items=50 default=[]
    BFFJoin    orders[].product products[].id=orders[].product_id
    BFFDeny    products user.secret
    BFFLift    user
    BFFLift    orders meta
    BFFRename  orders[].product.name orders[].product_name
    BFFWrap    orders items
    BFFDropEmpty On
    BFFMergePolicy namespace
    BFFFields  name orders meta
    BFFClientSelect claim:client_type
    BFFClientFields mobile name orders.product_name
    BFFClientFields * name
</BFFEndpoint>
CONF
ok t_cmp($rc, 0, 'a valid configuration passes') or diag $out;
like $out, qr/Syntax OK/;
# renaming a backend's key away makes room for another rename
($rc, $out) = configtest("$E BFFRename b c\n BFFRename a.x b\n</BFFEndpoint>");
ok t_cmp($rc, 0, 'a key renamed away is free') or diag $out;
