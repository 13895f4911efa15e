#!/bin/sh
# Proves that scripts/check-source.sh, check-lognos.pl and check-readme.pl
# catch what they are for: on a copy of the tree, each known mistake is
# made once and the checks must fail, naming it; the clean copy must pass.
# Run by scripts/check-source.sh (the "source checks" step).
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard
else
    find . -path ./.git -prune -o -type f -print | sed 's|^\./||'
fi | tar -cf - -T - | tar -xf - -C "$tmp"
rc=0
cd "$tmp" || exit 1

# expect WHAT PATTERN: the checks fail and their output matches PATTERN
expect() {
    out=$(BFF_NO_SELFTEST=1 sh scripts/check-source.sh 2>&1) && {
        echo "selftest: not caught: $1" >&2; rc=1; return; }
    echo "$out" | grep -qE "$2" || { echo "selftest: $1: no line matching $2 in:
$out" >&2; rc=1; }
}
save() { cp "$1" "$1.orig"; }
restore() { mv "$1.orig" "$1"; }

BFF_NO_SELFTEST=1 sh scripts/check-source.sh >/dev/null 2>&1 \
    || { echo "selftest: the clean copy fails" >&2; exit 1; }

save lib/bff_gate.c
sed -i '1i #include "httpd.h"' lib/bff_gate.c
expect 'lib/ including httpd.h' 'lib/bff_gate.c:1:#include "httpd.h"'
restore lib/bff_gate.c; save lib/bff_gate.c
sed -i '1i #include "mod_bff.h"' lib/bff_gate.c
expect 'lib/ including a glue header' 'lib/bff_gate.c:1:#include "mod_bff.h"'
restore lib/bff_gate.c

save mod_bff_cors.c
sed -i '1i #include "mod_bff_access.h"' mod_bff_cors.c
expect 'mod_bff_access.h outside the access phase' '^mod_bff_cors\.c$'
restore mod_bff_cors.c

save lib/bff_gate.c
n=12    # (written apart, or this file would cite one)
sed -i "1i /* fixed for issue $n */" lib/bff_gate.c
expect 'an issue number in a comment' 'lib/bff_gate.c:1:.*issue [0-9]'
restore lib/bff_gate.c

save mod_bff_events.c
sed -i 's/BFFLOGNO(356)/BFFLOGNO(351)/' mod_bff_events.c
expect 'a log number used twice' 'BFF351 used twice'
sed -i 's/ERR, rv, s, BFFLOGNO(351)/ERR, rv, s, BFFLOGNO(301)/' mod_bff_events.c
expect 'a retired log number used' 'BFF301 is retired'
restore mod_bff_events.c
save docs/log-numbers.md
sed -i '/^| BFF43 |/d' docs/log-numbers.md
expect 'a log number missing from the registry' 'BFF43 is missing from docs/log-numbers.md'
restore docs/log-numbers.md; save docs/log-numbers.md
echo '| BFF999 | info | mod_bff.c | nothing |' >> docs/log-numbers.md
expect 'a registry row the source does not use' 'BFF999 is used nowhere'
restore docs/log-numbers.md
touch t/26_another.t
expect 'two test files with one number' 'share the prefix 26_'
rm t/26_another.t

save README.md
sed -i '/^| `BFFLift /d' README.md
expect 'a directive missing from the README' 'BFFLift .* is missing from the directive reference'
restore README.md; save README.md
sed -i 's/^\(| `BFFLift [^|]*| \)endpoint/\1server, location/' README.md
expect 'a wrong context in the README' 'BFFLift: context'
restore README.md; save README.md
sed -i 's/^\(| `BFFLift .*\)$/\1\n| `BFFNope X`: y | server | none | `BFFNope 1` | 0.1.0 |/' README.md
expect 'a README directive no command table has' 'BFFNope is in the directive reference but in no command table'
restore README.md; save README.md
sed -i 's/^\(| `BFFLift .*\)$/\1\n/' README.md
expect 'a directive table cut in two' 'a directive row after the end of the reference table'
restore README.md
touch lib/bff_new.c
expect 'a source file missing from the layout' 'layout does not name lib/bff_new.c'
rm lib/bff_new.c
save README.md
sed -i 's/^| `mod_bff_status.c` |/| `mod_bff_gone.c` |/' README.md
expect 'a layout entry that is gone' 'names mod_bff_gone.c, which is not in the tree'
restore README.md
save conf/bff.conf
sed -i 's/^\( *\)#BFFBreakerSlots 256$/\1#BFFBreakerSlots 512/' conf/bff.conf
expect 'a default that drifted from conf/bff.conf' 'BFFBreakerSlots: the default .* is not conf/bff.conf.s 512'
restore conf/bff.conf

[ $rc = 0 ] && echo "source checks selftest: OK"
exit $rc
