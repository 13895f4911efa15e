package BFFConfTest;
# apache2 -t on a configuration body, with the module loaded from the build
# tree: for the tests of start-up errors.
use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempdir);
use Apache::Test ();

our @EXPORT = qw(configtest);

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

1;
