#!/usr/bin/perl
# Log message tags: every BFFLOGNO(n) of the module's source is listed in
# docs/log-numbers.md (number, level, file, meaning), used once, and never
# one of the retired numbers; every row names a number the source uses or
# is marked retired; no two test files in t/ share their NN_ prefix.
#   scripts/check-lognos.pl           check (exit status 1 on a problem)
#   scripts/check-lognos.pl --list    the tags the source uses, one a line
#   scripts/check-lognos.pl --next    the next number never used
use strict;
use warnings;
use File::Basename qw(dirname);

my $top = dirname(dirname(__FILE__));
chdir $top or die "$top: $!\n";
my $registry = 'docs/log-numbers.md';

# Every BFFLOGNO(n) in the glue and the core: number, level, file, line.
sub source_tags {
    my @tags;
    for my $f (sort(glob('mod_*.c'), glob('mod_*.h'), glob('lib/*.c'),
                    glob('lib/*.h'))) {
        open my $fh, '<', $f or die "$f: $!\n";
        my $src = do { local $/; <$fh> };
        close $fh;
        # a tag's call starts at the last "ap_log_*(" before it
        while ($src =~ /BFFLOGNO\((\d+)\)/g) {
            my ($n, $at) = ($1, $-[0]);
            next if substr($src, 0, $at) =~ /#\s*define\s+BFFLOGNO\s*$/;
            my $head = substr($src, 0, $at);
            my $start = rindex($head, 'ap_log_');
            my $call = $start >= 0 ? substr($head, $start) : '';
            # the level argument follows APLOG_MARK; anything but one
            # APLOG_ constant (a variable, a ?:) is "variable"
            my ($level) = $call =~ /^ap_log_\w+\s*\(\s*APLOG_MARK\s*,\s*APLOG_([A-Z]+\d?)\s*,/;
            my $line = 1 + (substr($src, 0, $at) =~ tr/\n//);
            push @tags, { n => $n, level => lc($level // 'variable'),
                          file => $f, line => $line };
        }
    }
    return @tags;
}

# The registry's table rows: | BFFn | level | file | meaning |
sub registry_rows {
    open my $fh, '<', $registry or die "$registry: $!\n";
    my @rows;
    while (my $l = <$fh>) {
        next unless $l =~ /^\|\s*`?BFF(\d+)`?\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|/;
        push @rows, { n => $1, level => $2, file => $3, line => $. };
    }
    close $fh;
    return @rows;
}

my @tags = source_tags();
if (@ARGV && $ARGV[0] eq '--list') {
    printf "BFF%-4d %-8s %s:%d\n", @$_{qw(n level file line)} for @tags;
    exit 0;
}
my @rows = registry_rows();
if (@ARGV && $ARGV[0] eq '--next') {
    my $max = 0;
    for (@tags, @rows) { $max = $_->{n} if $_->{n} > $max }
    print $max + 1, "\n";
    exit 0;
}

my @fail;
my (%src, %reg, %retired);
for my $t (@tags) {
    if (my $o = $src{ $t->{n} }) {
        push @fail, "BFF$t->{n} used twice: $o->{file}:$o->{line} and $t->{file}:$t->{line}";
    }
    $src{ $t->{n} } //= $t;
}
for my $r (@rows) {
    push @fail, "$registry:$r->{line}: BFF$r->{n} listed twice" if $reg{ $r->{n} };
    $reg{ $r->{n} } = $r;
    $retired{ $r->{n} } = 1 if $r->{level} eq 'retired';
}
for my $t (@tags) {
    my $r = $reg{ $t->{n} };
    if (!$r) {
        push @fail, "$t->{file}:$t->{line}: BFF$t->{n} is missing from $registry";
    } elsif ($retired{ $t->{n} }) {
        push @fail, "$t->{file}:$t->{line}: BFF$t->{n} is retired (never reuse a number; "
                  . "scripts/check-lognos.pl --next gives a free one)";
    } else {
        push @fail, "$registry:$r->{line}: BFF$t->{n} is level $t->{level} in the source, not $r->{level}"
            if (split ' ', $r->{level})[0] ne $t->{level};
        push @fail, "$registry:$r->{line}: BFF$t->{n} is in $t->{file}, not $r->{file}"
            if $r->{file} =~ s/`//gr ne $t->{file};
    }
}
for my $r (@rows) {
    push @fail, "$registry:$r->{line}: BFF$r->{n} is used nowhere in the source (mark it retired)"
        unless $src{ $r->{n} } || $retired{ $r->{n} };
}
my %prefix;
for my $t (sort glob('t/*.t')) {
    my ($p) = $t =~ m{^t/(\d+)_} or next;
    push @fail, "$t and $prefix{$p} share the prefix ${p}_" if $prefix{$p};
    $prefix{$p} //= $t;
}

print STDERR "check-lognos: $_\n" for @fail;
exit(@fail ? 1 : 0);
