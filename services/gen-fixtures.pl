#!/usr/bin/perl
# gen-fixtures.pl - write the deterministic demo fixtures used by
# bff-demo-service: users.json, orders.json, products.json.
#
# Usage: perl services/gen-fixtures.pl [OUTDIR]
#   OUTDIR defaults to the "fixtures" directory next to this script.
#
# Everything is derived arithmetically from the record ids, so the output
# is byte-for-byte reproducible; the committed fixtures must equal what
# this script writes (check with: perl gen-fixtures.pl /tmp/x && diff -r).
#
# Shape guarantees relied on by tests:
#   - users 1..120; users 1..100 have 3..6 orders, users 101..120 none
#   - each user's orders reference distinct products, except users
#     7, 32, 57 and 82 whose last order repeats the product of their first
#   - order total = quantity * price, computed in integer cents
#   - some names contain non-ASCII UTF-8 (incl. a 4-byte emoji) and one
#     user and one product name contain a double quote and a backslash
use strict;
use warnings;
use utf8;
use File::Basename qw(dirname);
use File::Spec;
use POSIX qw(strftime);

my $NUM_USERS          = 120;
my $USERS_WITH_ORDERS  = 100;
my $NUM_PRODUCTS       = 60;

my $outdir = @ARGV ? $ARGV[0] : File::Spec->catdir(dirname($0), 'fixtures');
-d $outdir or mkdir($outdir) or die "cannot create $outdir: $!\n";

# --- minimal JSON encoding with a fixed key order ---------------------------
# JSON::PP could encode, but only with sorted (canonical) or random key
# order; the services promise a specific field order, so encode by hand.
sub jstr {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    $s =~ s/\n/\\n/g;
    $s =~ s/\t/\\t/g;
    $s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
    return qq("$s");
}

# Values are tagged: [s => "text"], [i => 42], [n => "12.50"] (raw number).
sub jobj {
    my @kv = @_;
    my @parts;
    while (@kv) {
        my ($k, $v) = splice(@kv, 0, 2);
        my ($type, $val) = @$v;
        my $enc = $type eq 's' ? jstr($val) : $val;
        push @parts, jstr($k) . ':' . $enc;
    }
    return '{' . join(',', @parts) . '}';
}

sub write_array {
    my ($name, @objs) = @_;
    my $path = File::Spec->catfile($outdir, $name);
    my $tmp  = "$path.tmp.$$";
    open(my $fh, '>:encoding(UTF-8)', $tmp) or die "cannot write $tmp: $!\n";
    print $fh "[\n", join(",\n", map { "  $_" } @objs), "\n]\n";
    close($fh) or die "cannot write $tmp: $!\n";
    rename($tmp, $path) or die "cannot rename $tmp to $path: $!\n";
}

sub money { my ($c) = @_; return sprintf('%d.%02d', int($c / 100), $c % 100); }

# Small deterministic pseudo-random stream (classic ANSI C LCG), seeded per
# record so that adding records never changes existing ones.
sub lcg_string {
    my ($seed, $len, $alphabet) = @_;
    my $x = $seed;
    my $out = '';
    for (1 .. $len) {
        $x = ($x * 1103515245 + 12345) % 2147483648;
        $out .= substr($alphabet, ($x >> 8) % length($alphabet), 1);
    }
    return $out;
}

# --- users -------------------------------------------------------------------
my @first = qw(Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy
               Mallory Niaj Olivia Peggy Rupert Sybil Trent Uma Victor Wendy);
my @last  = qw(Smith Jones Brown Taylor Wilson Davies Evans Thomas
               Johnson Roberts Walker Wright Robinson Thompson White Hughes);

# Names that exercise JSON escaping and UTF-8 handling end to end.
my %special_user = (
    5  => ['José Álvarez',                 'jose.alvarez'],
    12 => ['Zoë Ångström',                 'zoe.angstrom'],
    27 => ['Łukasz Żółć',                  'lukasz.zolc'],
    42 => ['Robert "Bobby" Tables\\Admin', 'bobby.tables'],
    64 => ['Emoji 😀 Fan',                 'emoji.fan'],
    77 => ['Søren Kierkegård',             'soren.kierkegard'],
    99 => ['李小龍',                       'li.xiaolong'],
);

my $bcrypt_alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
my $epoch_2023 = 1672531200;    # 2023-01-01T00:00:00Z

my @users;
for my $id (1 .. $NUM_USERS) {
    my ($name, $local);
    if ($special_user{$id}) {
        ($name, $local) = @{ $special_user{$id} };
    } else {
        my $f = $first[($id - 1) % @first];
        my $l = $last[($id * 7) % @last];
        $name  = "$f $l";
        $local = lc("$f.$l");
    }
    my $created = $epoch_2023 + $id * 3 * 86400 + ($id * 7919) % 86400;
    push @users, jobj(
        id            => [i => $id],
        name          => [s => $name],
        email         => [s => "$local$id\@example.com"],
        password_hash => [s => '$2b$12$' . lcg_string($id * 7 + 1, 53, $bcrypt_alphabet)],
        created_at    => [s => strftime('%Y-%m-%dT%H:%M:%SZ', gmtime($created))],
        internal_note => [s => sprintf('kyc level %d; fraud score %d; INTERNAL ONLY',
                                       $id % 3, ($id * 37) % 100)],
    );
}

# --- products ----------------------------------------------------------------
my @adjective = qw(Classic Compact Deluxe Eco Ergonomic Heavy-Duty Portable Smart Vintage Wireless);
my @noun      = qw(Lamp Backpack Kettle Keyboard Notebook Headphones Bottle Chair Blender Speaker Jacket Clock);
my @category  = qw(home outdoor kitchen electronics office apparel);

my %special_product = (
    7  => 'Café Crème Mug',
    13 => '12" Ruler \\ Metric',
    21 => 'Größe XL T-Shirt',
    33 => '日本茶 Sencha Tea',
    50 => 'Crème Brûlée Torch',
);

my @price_cents;    # index by product id
my @products;
for my $id (1 .. $NUM_PRODUCTS) {
    my $name = $special_product{$id}
        // $adjective[($id * 3) % @adjective] . ' ' . $noun[($id - 1) % @noun];
    $price_cents[$id] = 499 + ($id * 1237) % 19000;
    push @products, jobj(
        id       => [i => $id],
        name     => [s => $name],
        price    => [n => money($price_cents[$id])],
        category => [s => $category[$id % @category]],
        stock    => [i => ($id * 53) % 200],
    );
}

# --- orders ------------------------------------------------------------------
my @status = qw(pending paid shipped delivered cancelled);
my @orders;
my $oid = 0;
for my $uid (1 .. $USERS_WITH_ORDERS) {
    my $n = 3 + ($uid % 4);    # 3..6 orders
    my @pids;
    # 7*k mod 60 is distinct for k < 60/gcd(7,60), so products are distinct.
    for my $k (0 .. $n - 1) {
        push @pids, (($uid * 11 + $k * 7) % $NUM_PRODUCTS) + 1;
    }
    $pids[-1] = $pids[0] if $uid % 25 == 7;    # repeated product_id case
    for my $k (0 .. $n - 1) {
        $oid++;
        my $pid = $pids[$k];
        my $qty = 1 + ($uid + $k * 3) % 5;
        push @orders, jobj(
            id            => [i => $oid],
            user_id       => [i => $uid],
            product_id    => [i => $pid],
            quantity      => [i => $qty],
            total         => [n => money($qty * $price_cents[$pid])],
            status        => [s => $status[($uid + $k) % @status]],
            internal_note => [s => sprintf('supplier cost %s; picker %d',
                                           money(int($qty * $price_cents[$pid] * 6 / 10)),
                                           ($oid * 13) % 40 + 1)],
        );
    }
}

write_array('users.json',    @users);
write_array('products.json', @products);
write_array('orders.json',   @orders);
printf STDERR "wrote %d users, %d products, %d orders to %s\n",
    scalar @users, scalar @products, scalar @orders, $outdir;
