# Validation configuration errors stop apache2 -t (configtest): a bad
# schema names its file and the JSON Pointer of the bad keyword; remote
# references, duplicate keys and unreadable files are refused; bad typed
# rules and limits name the directive.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Temp qw(tempdir);
use BFFConfTest;

my $U = 'http://127.0.0.1:1';
my $dir = tempdir(CLEANUP => 1);

sub schema_file {
    my ($name, $text) = @_;
    my $f = "$dir/$name";
    open my $fh, '>', $f or die $!;
    print $fh $text;
    close $fh;
    return $f;
}

my $bad_min = schema_file('bad-min.json',
    '{"type":"object","properties":{"qty":{"type":"integer","minimum":"1"}}}');
my $bad_re = schema_file('bad-re.json', '{"items":[{"pattern":"^(ab"}]}');
my $remote = schema_file('remote.json',
    '{"properties":{"a":{"$ref":"http://schemas.example/a.json"}}}');
my $dangling = schema_file('dangling.json', '{"$ref":"#/definitions/nothing"}');
my $dup = schema_file('dup.json', '{"type":"object","type":"array"}');
my $notjson = schema_file('notjson.json', "{\n  \"type\": \"object\",\n}");
my $loop = schema_file('loop.json',
    '{"definitions":{"a":{"$ref":"#/definitions/b"},"b":{"$ref":"#/definitions/a"}},"$ref":"#/definitions/a"}');
my $good = schema_file('good.json', '{"type":"object"}');

my $EP = "<BFFEndpoint POST /p>\n BFFBackend a POST $U/a body={body}";
my @cases = (
  [ "<Location /x>\n BFFRequestSchema $bad_min\n</Location>", 2,
    qr/BFFRequestSchema: \Q$bad_min\E: \/properties\/qty\/minimum: must be a number/ ],
  [ "$EP\n BFFRequestSchema $bad_re\n</BFFEndpoint>", 3,
    qr/\Q$bad_re\E: \/items\/0\/pattern: bad regular expression/ ],
  [ "<Location /x>\n BFFRequestSchema $remote\n</Location>", 2,
    qr/\Q$remote\E: \/properties\/a\/\$ref: .*refused/ ],
  [ "<Location /x>\n BFFRequestSchema $dangling\n</Location>", 2,
    qr/\Q$dangling\E: \/\$ref: '#\/definitions\/nothing' points to nothing/ ],
  [ "<Location /x>\n BFFRequestSchema $dup\n</Location>", 2, qr/\Q$dup\E: .*duplicate/ ],
  [ "<Location /x>\n BFFRequestSchema $notjson\n</Location>", 2, qr/\Q$notjson\E: line 3/ ],
  [ "<Location /x>\n BFFRequestSchema $loop\n</Location>", 2, qr/loops back to itself/ ],
  [ "<Location /x>\n BFFRequestSchema $dir/none.json\n</Location>", 2,
    qr/\Q$dir\E\/none\.json/ ],
  [ "<Location /x>\n BFFRequestSchema $good strict\n</Location>", 2,
    qr/unknown option 'strict' \(expected formats\)/ ],
  [ "<Location /x>\n BFFQueryRule limit float\n</Location>", 2,
    qr/BFFQueryRule limit: unknown type 'float'/ ],
  [ "<Location /x>\n BFFQueryRule limit integer pattern=^1\n</Location>", 2,
    qr/BFFQueryRule limit: unknown option 'pattern='/ ],
  [ "<Location /x>\n BFFHeaderRule X-V string pattern=(\n</Location>", 2,
    qr/BFFHeaderRule X-V: .*bad regular expression/ ],
  [ "<Location /x>\n BFFHeaderRule X-V string min=x\n</Location>", 2,
    qr/BFFHeaderRule X-V: min=: 'x' is not a number/ ],
  [ "<Location /x>\n BFFQueryRule limit\n</Location>", 2, qr/takes a name, a type/ ],
  [ "<Location /x>\n BFFRequestMaxSize 0\n</Location>", 2, qr/greater than 0/ ],
  [ "<Location /x>\n BFFRequestMaxErrors 0\n</Location>", 2, qr/from 1 to 1000/ ],
  [ "<Location /x>\n BFFRequestMaxDepth 1000\n</Location>", 2, qr/from 1 to 512/ ],
  [ "$EP\n BFFCacheTTL 10s\n</BFFEndpoint>", 1, qr/GET endpoints only, not POST/ ],
  [ "<BFFEndpoint PUT /p>\n BFFBackend body GET $U/a\n</BFFEndpoint>", 1,
    qr/backend 'body': the name refers to the request body/ ],
  [ "<BFFEndpoint PATCH /p/{body}>\n BFFBackend a GET $U/a\n</BFFEndpoint>", 1,
    qr/parameter 'body': the name refers to the request body/ ],
  [ "<BFFEndpoint GET /p>\n BFFBackend a GET $U/{body.id}\n</BFFEndpoint>", 1,
    qr/\{body\.id\} names neither a parameter of \/p nor a backend$/m ],
);

plan tests => 3 * @cases + 2;

for my $c (@cases) {
    my ($body, $line, $re) = @$c;
    my ($rc, $out, $file) = configtest($body);
    my ($first) = (split /\n/, $body)[$line - 1];
    isnt $rc, 0, "rejected: $first";
    like $out, qr/line \Q$line\E of \Q$file\E/, "names the file and line $line" or diag $out;
    like $out, $re, 'names the problem' or diag $out;
}

my ($rc, $out) = configtest(<<"EOF");
<BFFEndpoint POST /orders/{id:int}>
    BFFRequestSchema $good formats
    BFFRequestMaxSize 16k
    BFFRequestMaxDepth 10
    BFFRequestMaxErrors 5
    BFFQueryRule dry_run boolean
    BFFHeaderRule X-Client-Version string required pattern=^[0-9]+\\.[0-9]+\$ max=10
    BFFBackend user GET $U/users/{body.user_id} required
    BFFBackend order POST $U/orders body={"id":{id},"user":{user.id},"items":{body.items}}
</BFFEndpoint>
<Location /proxied/>
    BFFRequestSchema $good
    BFFQueryRule limit integer min=1 max=100
    BFFQueryRule sort string enum=asc|desc
    BFFHeaderRule X-Request-Date date-time
</Location>
EOF
is $rc, 0, 'a complete configuration is accepted' or diag $out;
like $out, qr/Syntax OK/;
