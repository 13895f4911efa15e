package BFFJWT;
# Keys and tokens for the access-phase tests (t/1x_*.t), made with the
# openssl CLI: no Perl crypto module needed.
#
#   BFFJWT::generate_keys($dir)   once, from t/TEST.PL (t/keys/, git-ignored)
#   jwt(alg => 'RS256', claims => {...}, kid => 'rs')
#   jwt_raw($header_hashref, $claims_hashref, $alg, $keyfile_or_secret)
use strict;
use warnings;

use Exporter 'import';
use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512 sha256_hex);
use File::Path qw(make_path);
use File::Temp qw(tempfile);
use JSON::PP ();
use MIME::Base64 qw(encode_base64url decode_base64);

our @EXPORT = qw(jwt jwt_raw b64u keydir claims_ok apikey);

my $json = JSON::PP->new->canonical(1);

sub keydir { $ENV{BFF_T_KEYS} // die "BFF_T_KEYS not set" }

sub b64u { encode_base64url($_[0]) }

sub run {
    my $cmd = shift;
    my $out = `$cmd 2>&1`;
    die "failed: $cmd\n$out" if $?;
    return $out;
}

sub slurp {
    my $f = shift;
    open my $fh, '<:raw', $f or die "$f: $!";
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($f, $s) = @_;
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $s;
    close $fh;
}

sub hex2b64u { b64u(pack 'H*', $_[0]) }

# x and y of an EC public key, from `openssl pkey -text`
sub ec_xy {
    my ($pub, $len) = @_;
    my $t = run("openssl pkey -pubin -in '$pub' -text -noout");
    my ($hex) = $t =~ /pub:\s*\n((?:\s+[0-9a-f:]+\n)+)/;
    $hex =~ s/[\s:]//g;
    die "no EC point in $pub" unless $hex =~ s/^04//;
    return (hex2b64u(substr($hex, 0, 2 * $len)), hex2b64u(substr($hex, 2 * $len)));
}

sub generate_keys {
    my $dir = shift;
    return if -f "$dir/.done";
    make_path($dir);
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '$dir/rsa.key'");
    run("openssl pkey -in '$dir/rsa.key' -pubout -out '$dir/rsa.pub'");
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '$dir/rsa-other.key'");
    for my $c ([256, 'P-256'], [384, 'P-384']) {
        run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:$c->[1] -out '$dir/ec$c->[0].key'");
        run("openssl pkey -in '$dir/ec$c->[0].key' -pubout -out '$dir/ec$c->[0].pub'");
    }
    # 64 printable bytes: long enough for HS512
    my $secret = substr(run("openssl rand -base64 64") =~ s/\s//gr, 0, 64);
    spew("$dir/hs.key", "$secret\n");
    spew("$dir/short.key", "tooshort\n");

    my ($mod) = run("openssl pkey -pubin -in '$dir/rsa.pub' -text -noout") =~ /Modulus:\s*\n((?:\s+[0-9a-f:]+\n)+)/;
    $mod =~ s/[\s:]//g;
    $mod =~ s/^00//;
    my @e256 = ec_xy("$dir/ec256.pub", 32);
    my @e384 = ec_xy("$dir/ec384.pub", 48);
    spew("$dir/jwks.json", $json->encode({ keys => [
        { kty => 'RSA', kid => 'rs', use => 'sig', n => hex2b64u($mod), e => 'AQAB' },
        { kty => 'EC', kid => 'es256', crv => 'P-256', x => $e256[0], y => $e256[1] },
        { kty => 'EC', kid => 'es384', crv => 'P-384', x => $e384[0], y => $e384[1] },
        { kty => 'oct', kid => 'hs', k => b64u($secret) },
    ] }));

    # API keys: consumer, sha256 of the key, plan
    spew("$dir/apikeys.txt", join '',
        "# consumer  sha256(key)  plan\n",
        "acme    " . sha256_hex('acme-key-1') . "  gold\n",
        "globex  " . sha256_hex('globex-key') . "\n",
        "initech " . sha256_hex('initech-key') . "  silver\n");
    spew("$dir/.done", '');
}

sub apikey { { acme => 'acme-key-1', globex => 'globex-key', initech => 'initech-key' }->{$_[0]} }

# DER ECDSA signature -> JOSE r||s
sub der2jose {
    my ($der, $len) = @_;
    my @b = unpack 'C*', $der;
    my $i = 2;
    $i++ if $b[1] & 0x80;
    my @parts;
    for (1 .. 2) {
        die 'bad DER' unless $b[$i++] == 0x02;
        my $l = $b[$i++];
        my $v = pack 'C*', @b[$i .. $i + $l - 1];
        $i += $l;
        $v =~ s/^\x00+//;
        push @parts, ("\x00" x ($len - length $v)) . $v;
    }
    return join '', @parts;
}

sub sign {
    my ($alg, $input, $key) = @_;
    my ($fam, $bits) = $alg =~ /^([HRE]S)(\d+)$/ or die "alg $alg";
    if ($fam eq 'HS') {
        my $f = { 256 => \&hmac_sha256, 384 => \&hmac_sha384, 512 => \&hmac_sha512 }->{$bits};
        return $f->($input, $key);
    }
    my ($fh, $tmp) = tempfile(UNLINK => 1);
    binmode $fh;
    print $fh $input;
    close $fh;
    my $sig = `openssl dgst -sha$bits -sign '$key' '$tmp'`;
    die "openssl dgst failed" if $?;
    return $fam eq 'ES' ? der2jose($sig, $bits == 256 ? 32 : 48) : $sig;
}

# A token from a header and claims, signed with $key (a secret for HS*,
# a private key file otherwise); $alg 'none' gives an empty signature.
sub jwt_raw {
    my ($hdr, $claims, $alg, $key) = @_;
    my $input = b64u(ref $hdr ? $json->encode($hdr) : $hdr) . '.'
              . b64u(ref $claims ? $json->encode($claims) : $claims);
    return "$input." . ($alg eq 'none' ? '' : b64u(sign($alg, $input, $key)));
}

my %kid_of = (HS => 'hs', RS => 'rs', ES256 => 'es256', ES384 => 'es384');

sub default_key {
    my $alg = shift;
    my $d = keydir();
    return slurp("$d/hs.key") =~ s/\n\z//r if $alg =~ /^HS/;
    return "$d/rsa.key" if $alg =~ /^RS/;
    return "$d/ec256.key" if $alg eq 'ES256';
    return "$d/ec384.key";
}

sub claims_ok {
    my %over = @_;
    my $now = time;
    my %c = (sub => 'alice', iss => 'https://issuer.test', aud => 'bff-test',
             iat => $now, exp => $now + 600, scope => 'orders:read profile:read',
             role => 'user', realm_access => { roles => ['editor', 'viewer'] });
    while (my ($k, $v) = each %over) {
        if (defined $v) { $c{$k} = $v } else { delete $c{$k} }
    }
    return \%c;
}

# jwt(alg => 'RS256', claims => {...} | undef (claims_ok()), kid => ...,
#     key => ..., header => {extra header fields})
sub jwt {
    my %a = @_;
    my $alg = $a{alg} // 'RS256';
    my $kid = exists $a{kid} ? $a{kid} : ($kid_of{$alg} // $kid_of{substr $alg, 0, 2});
    my %h = (alg => $alg, typ => 'JWT', %{ $a{header} // {} });
    $h{kid} = $kid if defined $kid;
    return jwt_raw(\%h, $a{claims} // claims_ok(), $alg, $a{key} // default_key($alg));
}

1;
