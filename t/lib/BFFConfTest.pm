package BFFConfTest;
# apache2 -t on a configuration body, with the module loaded from the build
# tree: for the tests of start-up errors.
use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempdir);
use Apache::Test ();
use Test::More ();

our @EXPORT = qw(configtest);
# on request, so a test with helpers of its own by these names is unaffected
our @EXPORT_OK = qw(configtest refused accepted endpoint_conf);

my $dir;

# Returns (exit code of apache2 -t, its output, the file holding body).
sub configtest {
    my ($body) = @_;
    $dir //= tempdir(CLEANUP => 1);
    my $httpd = Apache::Test::vars('httpd');
    my $libexec = $ENV{BFF_T_LIBEXECDIR};
    my $file = "$dir/bff-test.conf";
    open my $fh, '>', $file or die $!;
    print $fh $body, "\n";
    close $fh;
    my $main = "$dir/httpd.conf";
    open $fh, '>', $main or die $!;
    print $fh <<"EOF";
ServerRoot "$dir"
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error.log"
DefaultRuntimeDir "$dir"
Listen 127.0.0.1:1
LoadModule mpm_event_module "$libexec/mod_mpm_event.so"
LoadModule authz_core_module "$libexec/mod_authz_core.so"
LoadModule bff_module "$ENV{BFF_T_MODULE}"
Include "$file"
EOF
    close $fh;
    my $out = `'$httpd' -t -f '$main' 2>&1`;
    return ($? >> 8, $out, $file);
}

# An endpoint with the backends account and orders at $scheme://127.0.0.1:1
# and the directives @lines.
sub endpoint_conf {
    my ($scheme, @lines) = @_;
    return join "\n", '<BFFEndpoint GET /p/{id:int}>',
        " BFFBackend account GET $scheme://127.0.0.1:1/a/{id}",
        " BFFBackend orders GET $scheme://127.0.0.1:1/o/{id}",
        (map { " $_" } @lines), '</BFFEndpoint>';
}

# refused: rc != 0 and the message matches $re
sub refused {
    my ($conf, $re, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;   # failures name the caller's line
    my ($rc, $out) = configtest($conf);
    Test::More::ok($rc != 0 && $out =~ $re, $what) or Test::More::diag($out);
}

# accepted: rc 0, the output matches $re (a warning) or has no warning
sub accepted {
    my ($conf, $re, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;   # failures name the caller's line
    my ($rc, $out) = configtest($conf);
    Test::More::ok($rc == 0, "$what: Syntax OK") or Test::More::diag($out);
    if ($re) {
        Test::More::like($out, $re, "$what: warned");
    }
    else {
        Test::More::unlike($out, qr/BFF\d+|warn/i, "$what: no warning");
    }
}

1;
