# CORS: real preflights (allowed, disallowed, credentialed, pattern
# origins; refused methods and headers) answered before authentication
# under AuthType bff-jwt and AuthType Basic and never passed to a backend;
# CORS headers on 200, 401 and 429 answers; cached answers served to each
# origin with its own headers; configuration errors.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use MIME::Base64 ();
use BFFTest qw(svc_reset);
use BFFAuth;
use BFFJWT;
use BFFConfTest;

plan tests => 86;

my $app = 'https://app.example.com';
my @pre = ('Access-Control-Request-Method' => 'GET');
sub acao { $_[0]->header('Access-Control-Allow-Origin') }
sub vary_has {
    my ($res, $name) = @_;
    return scalar grep { lc $_ eq lc $name } map { split /\s*,\s*/ } $res->header('Vary');
}

# ---- preflight under AuthType bff-jwt: no token, answered, no backend
svc_reset('user', 'order');
my $r = areq(OPTIONS => '/t/cors/jwt/1', Origin => $app, @pre,
             'Access-Control-Request-Headers' => 'authorization,content-type');
ok t_cmp($r->code, 204, 'preflight without credentials: 204, not 401');
ok t_cmp(acao($r), $app, 'Access-Control-Allow-Origin echoes the origin');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), 'true');
ok t_cmp($r->header('Access-Control-Allow-Methods'), 'GET,POST');
ok t_cmp($r->header('Access-Control-Allow-Headers'), 'Authorization,Content-Type');
ok t_cmp($r->header('Access-Control-Max-Age'), 3600);
ok vary_has($r, 'Origin'), 'Vary: Origin';
ok $r->header('X-Request-ID'), 'X-Request-ID on the preflight answer';
ok t_cmp($r->content, '', 'no body');
ok t_cmp(count_svc('user') + count_svc('order'), 0, 'no backend reached');

# the pattern and a second exact origin; the default port is the same origin
$r = areq(OPTIONS => '/t/cors/jwt/1', Origin => 'https://pr-42.preview.example.com', @pre);
ok t_cmp($r->code, 204, 'pattern origin');
ok t_cmp(acao($r), 'https://pr-42.preview.example.com');
$r = areq(OPTIONS => '/t/cors/jwt/1', Origin => 'http://localhost:3000', @pre);
ok t_cmp(acao($r), 'http://localhost:3000', 'second origin');
$r = areq(OPTIONS => '/t/cors/jwt/1', Origin => 'HTTPS://App.Example.com:443', @pre);
ok t_cmp(acao($r), $app, 'an origin in another spelling is answered in its serialised form');

# disallowed origins: no CORS headers; processed as without CORS (401)
for my $o ('https://evil.example.com', 'https://app.example.com.evil.com',
           'https://pr-42.preview.example.com.evil.com', 'null',
           'http://app.example.com') {
    $r = areq(OPTIONS => '/t/cors/jwt/1', Origin => $o, @pre);
    ok t_cmp($r->code, 401, "preflight from $o: authenticated as usual");
    ok !defined acao($r) && !defined $r->header('Access-Control-Allow-Credentials'),
       "no CORS headers for $o";
}

# an allowed origin asking for a method or header not allowed: 403, no
# CORS headers (the browser refuses the request), no backend
$r = areq(OPTIONS => '/t/cors/jwt/1', Origin => $app,
          'Access-Control-Request-Method' => 'DELETE');
ok t_cmp($r->code, 403, 'method not allowed');
ok !defined acao($r), 'no Access-Control-Allow-Origin';
$r = areq(OPTIONS => '/t/cors/jwt/1', Origin => $app, @pre,
          'Access-Control-Request-Headers' => 'authorization,x-secret');
ok t_cmp($r->code, 403, 'request header not allowed');
ok !defined acao($r);
ok t_cmp(count_svc('user') + count_svc('order'), 0, 'still no backend reached');

# ---- actual requests under bff-jwt
my @tok = bearer(jwt());
$r = areq(GET => '/t/cors/jwt/1', Origin => $app, @tok);
ok t_cmp($r->code, 200, 'credentialed GET');
ok t_cmp(acao($r), $app);
ok t_cmp($r->header('Access-Control-Allow-Credentials'), 'true');
ok t_cmp($r->header('Access-Control-Expose-Headers'),
         'X-Request-ID,X-Cache-Status,X-BFF-Completed,RateLimit,RateLimit-Policy,Retry-After',
         'default exposed headers');
ok vary_has($r, 'Origin');
ok !defined $r->header('Access-Control-Allow-Methods'), 'preflight headers only on preflights';

# 401 from mod_bff's authentication carries them (err_headers_out)
$r = areq(GET => '/t/cors/jwt/1', Origin => $app);
ok is_problem($r, 401), '401 problem+json without a token';
ok t_cmp(acao($r), $app, 'CORS headers on the 401');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), 'true');
ok $r->header('Access-Control-Expose-Headers'), 'exposed headers on the 401';

# a disallowed origin with a valid token: served, without CORS headers
$r = areq(GET => '/t/cors/jwt/1', Origin => 'https://evil.example.com', @tok);
ok t_cmp($r->code, 200, 'disallowed origin, valid token: authenticated as usual');
ok !defined acao($r) && !defined $r->header('Access-Control-Expose-Headers');
ok vary_has($r, 'Origin'), 'Vary: Origin for a disallowed origin too';
$r = areq(GET => '/t/cors/jwt/1', Origin => 'https://evil.example.com');
ok t_cmp($r->code, 401, 'disallowed origin, no token: 401');
ok !defined acao($r);
# no Origin at all (not a browser's cross-origin request)
$r = areq(GET => '/t/cors/jwt/1', @tok);
ok t_cmp($r->code, 200);
ok !defined acao($r), 'no Origin, no CORS headers';

# ---- httpd's AuthType Basic in front of a ProxyPass route
svc_reset('user');
$r = areq(OPTIONS => '/t/cors/basic/users/1', Origin => $app, @pre,
          'Access-Control-Request-Headers' => 'authorization');
ok t_cmp($r->code, 204, 'Basic: preflight answered without credentials');
ok t_cmp(acao($r), $app);
ok t_cmp($r->header('Access-Control-Allow-Methods'), 'GET,HEAD', 'default methods');
ok t_cmp($r->header('Access-Control-Allow-Headers'), 'Authorization');
ok t_cmp($r->header('Access-Control-Max-Age'), 600, 'default max-age');
ok t_cmp(count_svc('user'), 0, 'the preflight was not proxied');
$r = areq(GET => '/t/cors/basic/users/1', Origin => $app);
ok t_cmp($r->code, 401, 'Basic: 401 without credentials');
ok t_cmp(acao($r), $app, 'CORS headers on the Basic 401');
ok $r->header('WWW-Authenticate'), 'with the Basic challenge';
my $basic = 'Basic ' . MIME::Base64::encode_base64('alice:wonderland', '');
$r = areq(GET => '/t/cors/basic/users/1', Origin => $app, Authorization => $basic);
ok t_cmp($r->code, 200, 'Basic: authenticated GET');
ok t_cmp(acao($r), $app);
ok t_cmp(count_svc('user'), 1, 'only the authenticated GET reached the backend');
$r = areq(OPTIONS => '/t/cors/basic/users/1', Origin => 'https://evil.example.com', @pre);
ok t_cmp($r->code, 401, 'Basic: disallowed preflight is authenticated as usual');
ok !defined acao($r);

# ---- any origin, no credentials; 429 carries the headers
$r = areq(GET => '/t/cors/any/users/1', Origin => 'https://whoever.example');
ok t_cmp($r->code, 200);
ok t_cmp(acao($r), '*', '* without credentials');
ok !defined $r->header('Access-Control-Allow-Credentials');
ok t_cmp($r->header('Access-Control-Expose-Headers'), 'X-Request-ID,RateLimit,Retry-After',
         'the location\'s own exposed headers');
# (until the limit refuses: an earlier test's Redis outage may leave this
# child's first call to the store on its shared memory fallback)
for (1 .. 5) {
    $r = areq(GET => '/t/cors/any/users/1', Origin => 'https://whoever.example');
    last if $r->code == 429;
}
ok is_problem($r, 429), 'refused by the rate limit: 429';
ok t_cmp(acao($r), '*', 'CORS headers on the 429');
ok $r->header('Retry-After'), 'with Retry-After, which pages may read';

# ---- cache: stored once, every origin gets its own headers
my $id = 1 + int(rand(5));
$r = areq(GET => "/t/cors/cached/$id", Origin => $app);
ok t_cmp($r->header('X-Cache-Status'), 'MISS', 'first: computed');
ok t_cmp(acao($r), $app);
$r = areq(GET => "/t/cors/cached/$id", Origin => 'https://admin.example.com');
ok t_cmp($r->code, 200);
ok t_cmp(acao($r), 'https://admin.example.com', 'the second origin gets its own, not the stored one');
$r = areq(GET => "/t/cors/cached/$id");
ok t_cmp($r->header('X-Cache-Status'), 'HIT', 'no Origin: served from the cache');
ok !defined acao($r) && !defined $r->header('Access-Control-Allow-Credentials'),
   'no CORS headers were stored with the answer';
$r = areq(GET => "/t/cors/cached/$id", Origin => 'https://evil.example.com');
ok t_cmp($r->header('X-Cache-Status'), 'HIT');
ok !defined acao($r), 'a disallowed origin gets none from the cache either';
# BFFCORSOrigin off in an inner section
$r = areq(GET => '/t/cors/cached/9', Origin => $app);
ok !defined acao($r) && !vary_has($r, 'Origin'), 'BFFCORSOrigin off: no CORS';

# ---- configuration errors
my ($rc, $out);
for my $case (
    ["BFFCORSOrigin *\nBFFCORSCredentials On", qr/BFFCORSOrigin \* cannot be used with BFFCORSCredentials On/],
    ["BFFCORSCredentials On\nBFFCORSOrigin https://a.example *", qr/cannot be used with BFFCORSCredentials On/],
    ["BFFCORSOrigin null", qr/'null' is refused/],
    ["BFFCORSOrigin https://*.example.com", qr/wildcard/],
    ["BFFCORSOrigin https://a.example.com/", qr/not an origin/],
    ["BFFCORSOrigin ~https://(", qr/not a valid regular expression/],
    ["BFFCORSHeaders \"X Y\"", qr/not a header name/],
    ["BFFCORSMaxAge 2d", qr/BFFCORSMaxAge/],
    ["<BFFEndpoint GET /x>\nBFFBackend a GET http://127.0.0.1:1/x\nBFFCORSOrigin https://a.example\n</BFFEndpoint>",
     qr/BFFCORSOrigin belongs in a <Location>/],
) {
    my ($body, $want) = @$case;
    ($rc, $out) = configtest("<Location /x>\n$body\n</Location>")
        unless $body =~ /^<BFFEndpoint/;
    ($rc, $out) = configtest($body) if $body =~ /^<BFFEndpoint/;
    ok $rc != 0 && $out =~ $want, "refused: $body" or diag $out;
}
($rc, $out) = configtest("<Location /x>\nBFFCORSOrigin https://a.example ~^https://b\\.example\$\n"
                         . "BFFCORSCredentials On\nBFFCORSMethods GET PUT\n</Location>");
ok t_cmp($rc, 0, 'a valid policy passes') or diag $out;
