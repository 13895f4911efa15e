#!/bin/sh
# Source checks that need no build:
# - lib/ is the pure core: no lib/*.c or lib/*.h includes httpd.h,
#   http_*.h, ap_*.h or a glue header (mod_bff*.h), so unit tests and fuzz
#   targets link it alone;
# - mod_bff_access.h is private to the access phase: only
#   mod_bff_authn.c, mod_bff_jwks.c, mod_bff_authz.c and
#   mod_bff_ratelimit.c include it;
# - no comment cites an issue number ("issue 4", "issues 5", "stop 9",
#   "#12"): comments explain the code as it is, not its history;
# - scripts/check-lognos.pl (log numbers, t/ file prefixes) and
#   scripts/check-readme.pl (directive table, repository layout), and
#   scripts/check-source-selftest.sh (each of these checks fails on the
#   mistake it is for).
# Exit status 1 when anything fails; every check runs.
set -u
cd "$(dirname "$0")/.."
rc=0
fail() { echo "check-source: $*" >&2; rc=1; }

# the files of the tree: git's list (tracked and new, not ignored) in a
# checkout, else every file but build products and test data
tree_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -co --exclude-standard
    else
        find . -path ./.git -prune -o -path ./build-aux -prune -o -path ./m4 -prune \
             -o -path ./autom4te.cache -prune -o -path ./t/logs -prune \
             -o -name .libs -prune -o -name .deps -prune -o -type f -print | sed 's|^\./||'
    fi | grep -vE '^(t/fuzz/corpus|services/fixtures)/' | sort
}
all=$(tree_files)

inc='^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]'
bad=$(grep -HnE "$inc(httpd\.h|http_[A-Za-z0-9_]*\.h|ap_[A-Za-z0-9_]*\.h|mod_bff[A-Za-z0-9_]*\.h)[>\"]" \
      lib/*.c lib/*.h 2>/dev/null)
[ -z "$bad" ] || fail "lib/ includes httpd or glue headers:
$bad"

bad=$(echo "$all" | grep -E '\.(c|h|inc)$' \
      | xargs grep -lE "${inc}mod_bff_access\.h[>\"]" 2>/dev/null \
      | grep -vxE 'mod_bff_authn\.c|mod_bff_jwks\.c|mod_bff_authz\.c|mod_bff_ratelimit\.c')
[ -z "$bad" ] || fail "mod_bff_access.h is private to mod_bff_authn.c, mod_bff_jwks.c, mod_bff_authz.c and mod_bff_ratelimit.c; also included by:
$bad"

# the sources, scripts, tests, configurations and docs
files=$(echo "$all" | grep -E '\.(c|h|in|inc|pl|pm|PL|t|sh|conf|md|yml|json|am|ac)$|(^|/)Dockerfile$|^scripts/')
# "issue 4", "Issues 4 and 5", "stop 9", "ticket #3", "#12"; not "PKCS#1"
# or a "# 12" shell comment
bad=$(echo "$files" | xargs grep -HnEi \
      '\b(issues?|stops?|tickets?|bugs?)[[:space:]]*#?[0-9]+\b|(^|[^&A-Za-z0-9_$])#[0-9]+\b' \
      2>/dev/null | grep -v '^scripts/check-source\.sh:')
[ -z "$bad" ] || fail "issue numbers cited (say what the code does instead):
$bad"

scripts/check-lognos.pl || fail "scripts/check-lognos.pl failed"
scripts/check-readme.pl || fail "scripts/check-readme.pl failed"
# and that these checks still catch what they are for
if [ -z "${BFF_NO_SELFTEST:-}" ]; then
    scripts/check-source-selftest.sh || fail "scripts/check-source-selftest.sh failed"
fi
[ $rc = 0 ] && echo "source checks: OK"
exit $rc
