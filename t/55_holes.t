# Smaller holes: an empty path parameter is a 400 (never a slash-merged
# shorter path); a POST is never sent twice after its connection died;
# per-item replies and join copies are bounded in bytes; forwarded query
# parameters go to GET calls only. With the real demo services, for the
# client BFF_T_CLIENT names.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use LWP::UserAgent ();
use BFFTest;
use BFFConfTest;

plan tests => 36;

my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0);
sub calls { scalar @{ svc_log($_[0]) } }
sub uniq { my %s; grep { !$s{$_}++ } @_ }

# ---- empty path parameters: httpd merges "//" in r->uri; the routes see
# the path as sent
svc_reset();
my $res = bff_get('/t/two//1');
ok t_cmp($res->code, 400, '/t/two//1: an empty parameter is a bad request');
ok t_cmp($res->header('Content-Type'), 'application/problem+json');
ok $res->{json}{detail} =~ /'a'/, 'names the empty parameter';
$res = bff_get('/t/two/x/');
ok t_cmp($res->code, 400, '/t/two/x/: the last parameter is empty');
ok $res->{json}{detail} =~ /'b'/, 'names it';
# merged, this path would be /t/two/x/1 with a=x and b=1
$res = bff_get('/t/two//x/1');
ok t_cmp($res->code, 404, '/t/two//x/1 is not /t/two/x/1');
ok t_cmp(calls('user'), 0, 'no backend was called for any of them');
$res = bff_get('/t/two/x/1');
ok t_cmp($res->code, 200, 'the same endpoint without empty segments');
ok t_cmp(svc_log('user')->[0]{uri}, '/users/1?a=x', 'its backend call');

# ---- a POST is never re-sent once it was written: the service reads it
# and drops the connection without an answer
svc_reset();
$res = bff_get('/t/resend/3');
ok t_cmp($res->code, 200, 'an optional POST backend that got no answer');
ok t_cmp($res->header('X-BFF-Completed'), 'false');
ok t_cmp($res->{json}{_errors}{batch}{reason}, 'bad response');
my @log = @{ svc_log('product') };
my @posts = grep { $_->{method} eq 'POST' } @log;
my ($get) = grep { $_->{method} eq 'GET' } @log;
ok t_cmp(scalar @posts, 1, 'the POST reached the service once');
ok t_cmp($posts[0]{status}, 0, 'and was dropped');
if ($ENV{BFF_T_CLIENT} eq 'curl') {
    # libcurl would re-send it on a new connection had it reused one
    ok $posts[0]{peer_port} != $get->{peer_port}, 'curl: a fresh connection for the POST';
}
else {
    ok t_cmp($posts[0]{peer_port}, $get->{peer_port},
             'native: the POST went on the GET\'s kept-alive connection');
}
# the next request still works (the dead connection is gone)
svc_reset();
$res = bff_get('/t/resend/4');
ok t_cmp(scalar(grep { $_->{method} eq 'POST' } @{ svc_log('product') }), 1,
         'again once');

# ---- per-item replies are bounded together by max-size=300
my %size;
sub psize {
    my $id = shift;
    $size{$id} //= length $ua->get(svc_url('product') . "/products/$id")->content;
}
my ($big) = grep {
    my @p = uniq(map { $_->{product_id} } @{ orders_of($_) });
    my $sum = 0;
    $sum += psize($_) for @p;
    $sum > 400;
} 1 .. 100;
my @pids = uniq(map { $_->{product_id} } @{ orders_of($big) });
ok !grep({ psize($_) >= 300 } @pids), "fixture: each product reply of user $big is below 300 bytes";
svc_reset();
$res = bff_get("/t/itembytes/$big");
ok t_cmp($res->code, 200);
ok t_cmp($res->header('X-BFF-Completed'), 'false', 'the backend failed');
ok t_cmp($res->{json}{_errors}{products}{reason}, 'response too large',
         'replies of 300 bytes and more in total');
ok t_cmp($res->{json}{products}, undef, 'its replies are not in the answer');
# a user without orders: no items, nothing to bound
$res = bff_get('/t/itembytes/101');
ok t_cmp($res->header('X-BFF-Completed'), 'true', 'no items: complete');

# ---- join copies bounded by max-size=300 (user ${big}'s orders copy more)
my $copies = 0;
$copies += psize($_->{product_id}) for @{ orders_of($big) };
ok $copies > 400, "fixture: user ${big}'s join copies $copies bytes";
$res = bff_get("/t/joinbytes/$big");
ok t_cmp($res->code, 502, 'a join past its bound fails the answer');
ok t_cmp($res->header('Content-Type'), 'application/problem+json');
ok t_cmp($res->{json}{detail},
         'BFFJoin orders[].product: the copies it makes exceed 300 bytes (max-size)');
$res = bff_get("/t/joinfits/$big");
ok t_cmp($res->code, 200, 'the same join with the default bound');
my $p = products_by_id();
ok json_is([ map { $_->{product} } @{ $res->{json}{orders} } ],
           [ map { $p->{$_->{product_id}} } @{ orders_of($big) } ]), 'every order has its product';
$res = bff_get('/t/joinbytes/101');
ok t_cmp($res->code, 200, 'nothing to copy: within the bound');
my $elog = do {
    open my $fh, '<', Apache::Test::vars('t_logs') . '/error_log' or die $!;
    local $/;
    <$fh>;
};
ok $elog =~ /BFF402: GET \/t\/joinbytes\/\{id:int\}: BFFJoin orders\[\]\.product: the copies/,
   'the failure is logged';

# ---- forwarded query parameters go to GET calls only (README)
svc_reset();
$res = bff_get('/t/fwdquery/3?page=2&tenant=t1&x=1');
ok t_cmp($res->code, 200);
ok t_cmp(svc_log('user')->[0]{uri}, '/users/3?tenant=t1&page=2', 'the GET call gets them');
ok t_cmp(svc_log('product')->[0]{uri}, '/products/batch', 'the POST call does not');

# ---- the option is checked at start-up
my $E = "<BFFEndpoint GET /p/{id:int}>\n BFFBackend a GET http://127.0.0.1:1/{id}\n"
      . " BFFBackend b GET http://127.0.0.1:1/b/{id}\n";
my ($rc, $out) = configtest("$E BFFJoin a[].p b[].id=a[].pid size=1\n</BFFEndpoint>");
ok $rc != 0 && $out =~ /BFFJoin a\[\]\.p b\[\]\.id=a\[\]\.pid: unknown option 'size='/,
   'unknown option refused';
($rc, $out) = configtest("$E BFFJoin a[].p b[].id=a[].pid max-size=0\n</BFFEndpoint>");
ok $rc != 0 && $out =~ /max-size=0: must be greater than 0/, 'max-size=0 refused';
($rc, $out) = configtest("$E BFFJoin a[].p b[].id=a[].pid max-size=64k\n</BFFEndpoint>");
ok t_cmp($rc, 0, 'max-size=64k accepted') or diag $out;
