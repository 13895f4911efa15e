#!/usr/bin/perl
# README.md against the source:
# - the directive reference (the table under "## Directive reference",
#   columns directive, context, default, example, since) names every
#   directive of the command tables (AP_INIT_* in mod_*.c) and no other,
#   once each, with the context the table's flags give: "server",
#   "main server" and "endpoint" are RSRC_CONF (a virtual host or the main
#   server; the main server only, as the directive's handler checks;
#   inside <BFFEndpoint>), "location" is ACCESS_CONF, ".htaccess" one of
#   the OR_* flags; words in parentheses are notes. Each example starts
#   with its directive and "since" is a version no newer than configure's;
# - the "## Repository layout" section names exactly the source files of
#   the tree: lib/*.c, lib/*.h, lib/*.inc, lib/*.in, mod_*.c, mod_*.h,
#   scripts/*, and the directories of t/.
# Exit status 1 when anything differs, with one line per difference.
use strict;
use warnings;
use File::Basename qw(dirname);

my $top = dirname(dirname(__FILE__));
chdir $top or die "$top: $!\n";
my @fail;

sub slurp { open my $fh, '<', $_[0] or die "$_[0]: $!\n"; local $/; scalar <$fh> }

# ---- the command tables -------------------------------------------------
my %cmd;    # name -> { flags => { server|location|htaccess => 1 }, file }
for my $f (sort glob('mod_*.c')) {
    my $src = slurp($f);
    $src =~ s{/\*.*?\*/}{ }gs;
    while ($src =~ /\bAP_INIT_\w+\s*\(\s*"([^"]+)"\s*,\s*[^,]+,\s*[^,]+,\s*([^,]+),/g) {
        my ($name, $flags) = ($1, $2);
        my %ctx;
        $ctx{server} = 1   if $flags =~ /\bRSRC_CONF\b/;
        $ctx{location} = 1 if $flags =~ /\bACCESS_CONF\b/;
        $ctx{htaccess} = 1 if $flags =~ /\bOR_(?!NONE)\w+/;
        push @fail, "$f: $name is declared twice" if $cmd{$name};
        $cmd{$name} = { flags => \%ctx, file => $f };
    }
}
push @fail, 'no AP_INIT_* directives found in mod_*.c' unless %cmd;

# ---- the README's sections ---------------------------------------------
my $readme = slurp('README.md');
sub section {
    my ($title) = @_;
    $readme =~ /^## \Q$title\E\n(.*?)(?=^## |\z)/ms
        or do { push @fail, "README.md: no section \"## $title\""; return '' };
    return $1;
}
sub cells {
    my $row = shift;
    $row =~ s/^\|\s*//;
    $row =~ s/\s*\|\s*$//;
    return split /\s*(?<!\\)\|\s*/, $row, -1;
}
my ($version) = slurp('configure.ac') =~ /AC_INIT\(\[[^\]]*\],\s*\[([\d.]+)\]/;
sub vcmp { my @a = split /\./, $_[0]; my @b = split /\./, $_[1];
           for (0 .. 2) { my $c = ($a[$_] // 0) <=> ($b[$_] // 0); return $c if $c } 0 }

my %word = ('server' => 'server', 'main server' => 'server', 'endpoint' => 'server',
            'location' => 'location', '.htaccess' => 'htaccess');
my $ref = section('Directive reference');
my @lines = split /\n/, $ref;
my ($h) = grep { $lines[$_] =~ /^\|/ } 0 .. $#lines;
my %doc;
if (!defined $h) {
    push @fail, 'README.md: the directive reference has no table';
} else {
    my @head = map { lc } cells($lines[$h]);
    push @fail, "README.md: directive reference columns are \"@head\", not "
              . '"directive context default example since"'
        unless "@head" eq 'directive context default example since';
    my $i = $h + 2;
    for (; $i <= $#lines && $lines[$i] =~ /^\|/; $i++) {
        my @c = cells($lines[$i]);
        my ($name) = ($c[0] // '') =~ /^`(<?[A-Za-z]+)/;
        if (@c != 5 || !$name) {
            push @fail, "README.md: malformed directive row: $lines[$i]";
            next;
        }
        push @fail, "README.md: $name is listed twice" if $doc{$name};
        my (%ctx, @bad);
        for my $w (split /\s*,\s*/, $c[1] =~ s/\s*\([^)]*\)//gr) {
            if ($word{$w}) { $ctx{ $word{$w} } = 1 } else { push @bad, $w }
        }
        push @fail, "README.md: $name: unknown context \"@bad\" (server, main server, "
                  . 'endpoint, location, .htaccess)' if @bad;
        $doc{$name} = { ctx => \%ctx, ctxtext => $c[1], default => $c[2] };
        push @fail, "README.md: $name has no default" if $c[2] eq '';
        my $bare = $name =~ s/^<//r;
        push @fail, "README.md: $name: the example does not use it: $c[3]"
            unless $c[3] =~ /^`<?\Q$bare\E\b/;
        if ($c[4] !~ /^\d+\.\d+\.\d+$/) {
            push @fail, "README.md: $name: since \"$c[4]\" is not a version";
        } elsif ($version && vcmp($c[4], $version) > 0) {
            push @fail, "README.md: $name: since $c[4] is newer than this version, $version";
        }
    }
    # a table cut in two (a blank line, then more rows) loses its rows
    for (; $i <= $#lines; $i++) {
        push @fail, "README.md: a directive row after the end of the reference table: $lines[$i]"
            if $lines[$i] =~ /^\|\s*`<?BFF/;
    }
}
# the defaults: conf/bff.conf (installed as mods-available/bff.conf)
# lists every server-wide directive commented out at its default; the
# reference must give the same value
if (open my $bc, '<', 'conf/bff.conf') {
    while (my $l = <$bc>) {
        my ($name, $v) = $l =~ /^\s*#(BFF[A-Za-z]+)\s+(\S+)/ or next;
        next if $v =~ /[=*]/;       # options: the reference says it in words
        my $d = $doc{$name};
        if (!$d) {
            push @fail, "conf/bff.conf: $name is not in the directive reference";
            next;
        }
        (my $dflt = $d->{default}) =~ s/`//g;
        push @fail, "README.md: $name: the default \"$d->{default}\" is not conf/bff.conf's $v"
            unless $dflt =~ /(?:^|[\s(])\Q$v\E(?:$|[\s),])/i;
    }
} else {
    push @fail, "conf/bff.conf: $!";
}
for my $name (sort keys %cmd) {
    my $d = $doc{$name};
    if (!$d) {
        push @fail, "README.md: directive $name ($cmd{$name}{file}) is missing from the directive reference";
        next;
    }
    my $want = join ', ', sort keys %{ $cmd{$name}{flags} };
    my $have = join ', ', sort keys %{ $d->{ctx} };
    push @fail, "README.md: $name: context \"$d->{ctxtext}\" means $have, "
              . "the command table says $want" if $want ne $have;
}
for my $name (sort keys %doc) {
    push @fail, "README.md: $name is in the directive reference but in no command table"
        unless $cmd{$name};
}

# ---- the repository layout --------------------------------------------
my @tree;
if (system('git rev-parse --is-inside-work-tree >/dev/null 2>&1') == 0) {
    @tree = split /\n/, `git ls-files -co --exclude-standard`;
} else {
    # no git (an unpacked tarball): every file but build products, i.e.
    # files configure makes from a .in beside them
    @tree = grep { !-e "$_.in" } map { s{^\./}{}r } split /\n/, `find . -type f`;
}
my %want;
for (@tree) {
    $want{$_} = 1 if m{^lib/[^/]+\.(c|h|inc|in)$} || m{^mod_[^/]+\.[ch]$} || m{^scripts/[^/]+$};
    $want{"t/$1/"} = 1 if m{^t/([^/]+)/};
}
# t/ directories only when they hold files of the tree (not t/logs)
my $layout = section('Repository layout');
my %named;
while ($layout =~ /`([^`\s]+)`/g) {
    my $p = $1;
    $named{$p} = 1 if $p =~ m{^(lib/[^/]+\.\w+|mod_[^/]+\.[ch]|scripts/[^/]+|t/[^/]+/)$};
}
for (sort keys %want) {
    push @fail, "README.md: the repository layout does not name $_" unless $named{$_};
}
for (sort keys %named) {
    push @fail, "README.md: the repository layout names $_, which is not in the tree" unless $want{$_};
}

print STDERR "check-readme: $_\n" for @fail;
exit(@fail ? 1 : 0);
