# BFFJWKSURL and JWT settings in <Location> at configtest: an http://
# URL, user info, a missing CA file, unknown or bad options, bounds the
# wrong way round, a key file next to the URL, the directive inside
# <BFFEndpoint>, location settings without a key or algorithms are errors
# naming the directive; complete settings (with discovery, per location)
# pass, and location settings checking neither issuer nor audience draw
# BFF133.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use BFFConfTest qw(configtest refused accepted);

plan tests => 24;

my $K = Apache::Test::vars('t_logs') . '/jwks85';
remove_tree($K);
make_path($K);
my $out = `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '$K/ca.key' 2>&1`
    . `openssl req -x509 -new -key '$K/ca.key' -subj '/CN=BFF test CA' -days 2 -out '$K/ca.pem' 2>&1`;
die $out if $?;
my $jwks = "$ENV{BFF_T_KEYS}/jwks.json";

my $URL = 'https://idp.test/keys';
sub with { "BFFJWTAlgorithms RS256\nBFFJWTIssuer https://idp.test/\n" . join "\n", @_ }

accepted(with("BFFJWKSURL $URL ca=$K/ca.pem proxy=http://127.0.0.1:3128 refresh=10m "
              . "min-refresh=30s max-refresh=2h kid-refresh=5m timeout=2s cold-start=deny"),
         undef, 'every option');
accepted(with("BFFJWKSURL https://idp.test/realms/x/.well-known/openid-configuration"),
         undef, 'an OpenID configuration URL');
accepted(with("<Location /a>\n BFFJWKSURL $URL ca-path=$K\n</Location>",
              "<Location /b>\n BFFJWKSFile $jwks\n BFFJWTIssuer https://b.test/\n</Location>"),
         undef, 'two locations, two key sets, the common part at server level');
accepted("BFFJWTAlgorithms RS256\n<Location /a>\n BFFJWKSURL $URL\n</Location>",
         qr/BFF133: JWT settings of \S+ in a <Location> check neither the issuer nor the audience/,
         'location settings without issuer or audience');

refused(with("BFFJWKSURL http://idp.test/keys"),
        qr/BFFJWKSURL http:\/\/idp\.test\/keys: not an https:\/\/ URL/, 'an http:// URL');
refused(with("BFFJWKSURL https://user:pw\@idp.test/keys"),
        qr/BFFJWKSURL \S+: user info \(\@\) in the URL/, 'user info in the URL');
refused(with("BFFJWKSURL"), qr/BFFJWKSURL takes an https:\/\/ URL/, 'no URL');
refused(with("BFFJWKSURL $URL ca=/nonexistent/ca.pem"),
        qr/BFFJWKSURL https:\/\/idp\.test\/keys: ca \/nonexistent\/ca\.pem: cannot open/, 'a missing CA file');
refused(with("BFFJWKSURL $URL colour=blue"),
        qr/BFFJWKSURL https:\/\/idp\.test\/keys: unknown option 'colour='/, 'an unknown option');
refused(with("BFFJWKSURL $URL cold-start=maybe"),
        qr/cold-start=: expected unavailable \(503\) or deny \(401\)/, 'cold-start=maybe');
refused(with("BFFJWKSURL $URL refresh=0s"), qr/refresh=0s: expected a duration/, 'refresh=0s');
refused(with("BFFJWKSURL $URL min-refresh=2h max-refresh=1h"),
        qr/min-refresh is above max-refresh/, 'min-refresh above max-refresh');
refused(with("BFFJWKSURL $URL proxy=socks5://127.0.0.1:1080"),
        qr/proxy=: expected an http:\/\/ or https:\/\/ proxy URL/, 'a socks proxy');
refused(with("BFFJWKSURL $URL timeout=5m"), qr/timeout=5m: expected a duration/, 'timeout=5m');
refused(with("BFFJWKSURL $URL", "BFFJWTKeyFile $ENV{BFF_T_KEYS}/rsa.pub"),
        qr/BFF149: BFFJWKSURL https:\/\/idp\.test\/keys excludes BFFJWTKeyFile/, 'a key file and a URL');
refused(with("<Location /a>\n BFFJWKSFile $jwks\n BFFJWKSURL $URL\n</Location>"),
        qr/BFF149: BFFJWKSURL/, 'a JWKS file and a URL in one location');
refused(with("<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/a/{id}\n"
             . " BFFJWKSURL $URL\n</BFFEndpoint>"),
        qr/BFFJWKSURL is not allowed inside <BFFEndpoint>/, 'inside <BFFEndpoint>');
refused("<Location /a>\n BFFJWKSURL $URL\n</Location>",
        qr/BFF113: JWT keys without BFFJWTAlgorithms/, 'a location without algorithms anywhere');
refused("BFFJWTAlgorithms RS256\n<Location /a>\n BFFJWTIssuer https://a.test/\n</Location>",
        qr/BFF112: BFFJWT\* settings without a key/, 'a location without a key anywhere');
refused("<Location /a>\n BFFJWKSFile /nonexistent/jwks.json\n BFFJWTAlgorithms RS256\n</Location>",
        qr/BFF114: cannot load the JWT keys: JWKS file \/nonexistent\/jwks\.json/,
        'a location\'s JWKS file is loaded at configtest');
