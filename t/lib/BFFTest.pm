package BFFTest;
# Helpers for the mod_bff suite: requests to httpd, the demo services' admin
# API (faults, request log), and expected documents built from the fixtures.
use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use LWP::UserAgent ();
use Time::HiRes ();
use Apache::TestRequest ();

our @EXPORT = qw(bff_get bff_req decode svc_reset svc_log svc_fault svc_stats
                 svc_url fixture users orders_of products_by_id expected_profile
                 json_is now);

my $json = JSON::PP->new->canonical(1)->allow_nonref(1);
my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0);
my %fixtures;

sub now { Time::HiRes::time() }

sub decode {
    my $s = shift;
    my $v = eval { $json->decode($s) };
    return $v;
}

# GET a path on the test httpd: returns the HTTP::Response, with ->{json}
# holding the decoded body when it is JSON.
sub bff_get {
    my ($path, @headers) = @_;
    return bff_req(GET => $path, @headers);
}

sub bff_req {
    my ($method, $path, @headers) = @_;
    my $cfg = Apache::Test::config();
    my $url = 'http://' . $cfg->{vars}{servername} . ':' . $cfg->{vars}{port} . $path;
    my $req = HTTP::Request->new($method => $url, [@headers]);
    my $res = $ua->request($req);
    $res->{json} = decode($res->content) if ($res->header('Content-Type') // '') =~ /json/;
    return $res;
}

sub svc_url {
    my $role = shift;
    return $ENV{'BFF_T_' . uc($role) . '_URL'} // die "service $role not started";
}

sub svc_admin {
    my ($role, $path) = @_;
    my $res = $ua->get(svc_url($role) . $path);
    die "admin $role $path: " . $res->status_line unless $res->is_success;
    return decode($res->content);
}

# Clears faults and request logs; first waits for calls still running
# (e.g. a slow backend call abandoned at an earlier deadline), so they do
# not show up in the next test's log.
sub svc_reset {
    for my $role (@_ ? @_ : qw(user order product)) {
        my $until = now() + 5;
        Time::HiRes::sleep(0.02) while svc_admin($role, '/__admin/stats')->{in_flight} && now() < $until;
        svc_admin($role, '/__admin/reset');
    }
}
sub svc_log   { svc_admin($_[0], '/__admin/log') }
sub svc_stats { svc_admin($_[0], '/__admin/stats') }

sub svc_fault {
    my ($role, %p) = @_;
    my $q = join '&', map { "$_=$p{$_}" } sort keys %p;
    return svc_admin($role, "/__admin/fault?$q");
}

sub fixture {
    my $name = shift;
    $fixtures{$name} //= do {
        my $file = "$ENV{BFF_TOP}/services/fixtures/$name.json";
        open my $fh, '<:raw', $file or die "$file: $!";
        local $/;
        $json->decode(<$fh>);
    };
}

sub users { fixture('users') }

sub orders_of {
    my $uid = shift;
    return [ grep { $_->{user_id} == $uid } @{ fixture('orders') } ];
}

sub products_by_id { return { map { ($_->{id} => $_) } @{ fixture('products') } } }

# The document conf/bff-profile.conf must produce for a user id.
sub expected_profile {
    my $uid = shift;
    my ($user) = grep { $_->{id} == $uid } @{ users() };
    die "no fixture user $uid" unless $user;
    my %u = %$user;
    delete @u{qw(password_hash internal_note)};
    my @orders = map { my %o = %$_; delete $o{internal_note}; \%o } @{ orders_of($uid) };
    my %seen;
    my @ids = grep { !$seen{$_}++ } map { $_->{product_id} } @orders;
    my $p = products_by_id();
    return { user => \%u, orders => \@orders, products => [ map { $p->{$_} } grep { $p->{$_} } @ids ] };
}

sub canonical { $json->encode($_[0]) }

# Compares two structures as canonical JSON.
sub json_is {
    my ($got, $want) = @_;
    my $g = $json->encode($got);
    my $w = $json->encode($want);
    return 1 if $g eq $w;
    Test::More::diag("got:  $g\nwant: $w");
    return 0;
}

1;
