package BFFAuth;
# Helpers for the access-phase tests (t/1x_*.t): requests to the main
# server or a named virtual host, the error log since a mark, Redis.
use strict;
use warnings;

use Exporter 'import';
use LWP::UserAgent ();
use HTTP::Request ();
use Apache::Test ();
use BFFTest ();

our @EXPORT = qw(areq vport bearer log_mark log_since count_svc
                 is_problem);

my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0);

sub vport {
    my $name = shift;
    my $cfg = Apache::Test::config();
    return $name ? $cfg->{vhosts}{$name}{port} // die "no vhost $name"
                 : $cfg->{vars}{port};
}

# areq([vhost =>] METHOD, PATH, HEADERS...): the HTTP::Response, with
# ->{json} when the body is JSON
sub areq {
    my $vhost = $_[0] =~ /^bff_/ ? shift : undef;
    my ($method, $path, @headers) = @_;
    my $url = 'http://127.0.0.1:' . vport($vhost) . $path;
    my $res = $ua->request(HTTP::Request->new($method => $url, [@headers]));
    $res->{json} = BFFTest::decode($res->content)
        if ($res->header('Content-Type') // '') =~ /json/;
    return $res;
}

sub bearer { (Authorization => "Bearer $_[0]") }

my $errlog = Apache::Test::vars('t_logs') . '/error_log';

sub log_mark { -s $errlog // 0 }

sub log_since {
    my $off = shift;
    open my $fh, '<', $errlog or die "$errlog: $!";
    seek $fh, $off, 0;
    local $/;
    return scalar <$fh> // '';
}

sub count_svc { scalar @{ BFFTest::svc_log($_[0] // 'user') } }

# 401/403/429/503 answers: problem+json with the status
sub is_problem {
    my ($res, $status) = @_;
    return $res->code == $status
        && ($res->header('Content-Type') // '') eq 'application/problem+json'
        && ref $res->{json} eq 'HASH' && ($res->{json}{status} // 0) == $status;
}

1;
