#!/bin/sh
# Runs every mod_bff test on this machine (the README's test command;
# .ci/run runs exactly this):
#   1. installs missing Debian packages (scripts/deps.sh);
#   2. sanitized pass: builds with ASan and UBSan, runs the C unit tests
#      and the Apache::Test suite once (BFFHTTPClient native) under them
#      (httpd preloads libasan); any sanitizer report fails the run;
#   3. fuzzing: every libFuzzer target t/fuzz/fuzz_*.c for FUZZ_SECONDS
#      from its corpus in t/fuzz/corpus/ (scripts/fuzz.sh);
#   4. normal pass: builds (warnings are errors), runs the unit tests, the
#      config file, source, packaging and docker/ checks, and the suite once per backend HTTP
#      client (native, then curl): a real httpd with mod_bff against the
#      real demo services, which the suite starts on free loopback ports
#      and stops by PID.
# The normal pass comes last so the tree is left with the normal build.
# Every step runs even when an earlier one failed (a failed build stops
# its pass); a summary with each step's time ends the output.
#
# Environment:
#   SANITIZE=1        the sanitized pass only;  SANITIZE=0  none of it
#   SANITIZE_CLIENTS  clients of the sanitized pass (default: native)
#   FUZZ_SECONDS=N    seconds per fuzz target (default 60; 0: no fuzzing)
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh

# a full run: a test that needs a server that is missing fails instead of
# skipping (t/lib/BFFTest.pm need_servers; CI=true does the same)
BFF_T_STRICT=1
export BFF_T_STRICT
APXS=${APXS:-$(command -v apxs2 || command -v apxs)}
HTTPD=$("$APXS" -q SBINDIR)/$("$APXS" -q TARGET)
mode=${SANITIZE:-all}

# A crashed httpd child leaves a core in t/logs/cores, which fails the
# suite (t/TEST.PL): the core size limit is raised to the hard limit, and
# a core_pattern that sends cores elsewhere (a pipe, an absolute path) is
# said in the summary, since crashes then go unseen.
ulimit -c "$(ulimit -H -c)" 2>/dev/null || true
core_pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo '?')
case $core_pattern in
'|'* | */* | '?')
    core_note="  kernel.core_pattern is $core_pattern: cores of crashed httpd children are not checked"
    ;;
*)
    [ "$(ulimit -c)" != 0 ] && core_note="" \
        || core_note="  core size limit 0: cores of crashed httpd children are not checked"
    ;;
esac
summary=""
note=""     # lines a step adds below its own in the summary
rc=0
started=$(date +%s)

# step NAME COMMAND...: runs it, records its time and outcome
step() {
    name=$1
    shift
    t0=$(date +%s)
    if "$@"; then
        res=ok
    else
        res=FAILED
        rc=1
    fi
    summary="$summary$(printf '%-44s %5ss  %s' "$name" $(($(date +%s) - t0)) "$res")
$note"
    note=""
    [ "$res" = ok ]
}

unit_tests() {
    echo "== unit tests"
    make -s check || { cat t/unit/*.log 2>/dev/null; return 1; }
    grep -h "^JSON-Schema-Test-Suite" t/unit/check_schema.log 2>/dev/null || true
}

# suite CLIENT [FILE...]: the Apache::Test suite (or some of its files);
# the names of failed files go to t/logs/failed-CLIENT and the summary
suite() {
    client=$1
    shift
    echo "== Apache::Test suite, BFFHTTPClient $client${1:+ ($*)}"
    mkdir -p t/logs
    { BFF_T_CLIENT=$client perl t/TEST.PL -apxs "$APXS" -httpd "$HTTPD" "$@"
      echo $? > "t/logs/suite-$client.rc"; } 2>&1 | tee "t/logs/suite-$client.out"
    src=$(cat "t/logs/suite-$client.rc")
    sed -n 's/^\(t\/[^ ]*\.t\) *(Wstat.*/\1/p' "t/logs/suite-$client.out" \
        | sort -u > "t/logs/failed-$client"
    if [ "$src" != 0 ] && [ -s "t/logs/failed-$client" ]; then
        note="$note$(printf '  failed: %s' "$(tr '\n' ' ' < "t/logs/failed-$client")")
"
    elif [ "$src" != 0 ]; then
        note="$note  failed: no test file; see the report after the suite (httpd crashed, or the run stopped)
"
    fi
    return "$src"
}

# Sanitizer reports of httpd, the demo services and the unit tests land
# in t/logs/asan.* and t/logs/ubsan.* (UB aborts: -fno-sanitize-recover).
sanitizer_reports() {
    if ls t/logs/asan.* t/logs/ubsan.* >/dev/null 2>&1; then
        echo "AddressSanitizer/UBSan reports:" >&2
        cat t/logs/asan.* t/logs/ubsan.* >&2
        return 1
    fi
}

# httpd is not built with ASan: its runtime is preloaded for the module.
# This pass looks for memory errors and undefined behaviour; ASan slows
# httpd several times, so a file that failed is run once more on its own
# (named in the summary) before the pass fails. Any sanitizer report
# fails the run regardless (sanitizer_reports).
sanitized_suite() {
    asan=$(gcc -print-file-name=libasan.so)
    LD_PRELOAD=$asan suite "$1" && return 0
    failed=$(cat "t/logs/failed-$1")
    [ -n "$failed" ] || return 1
    # shellcheck disable=SC2086
    LD_PRELOAD=$asan suite "$1" $failed || return 1
    note="$note$(printf '  passed when run again: %s' "$(echo $failed)")
"
}

sanitized_pass() {
    echo "== sanitized build (ASan, UBSan)"
    step "sanitized build" scripts/build.sh --enable-sanitizers || return 0
    mkdir -p t/logs
    rm -f t/logs/asan.* t/logs/ubsan.*
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:log_path=$PWD/t/logs/asan}
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:log_path=$PWD/t/logs/ubsan}
    # ASan makes the unit tests 2-3 times slower: Check's per-case
    # timeouts (set for the normal build) scale with it
    CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-3}
    export ASAN_OPTIONS UBSAN_OPTIONS CK_TIMEOUT_MULTIPLIER
    step "sanitized unit tests" unit_tests || true
    for client in ${SANITIZE_CLIENTS:-native}; do
        step "sanitized suite, $client" sanitized_suite "$client" || true
    done
    step "sanitizer reports" sanitizer_reports || true
    unset ASAN_OPTIONS UBSAN_OPTIONS CK_TIMEOUT_MULTIPLIER
}

normal_pass() {
    echo "== build"
    step "build" scripts/build.sh || return 0
    step "unit tests" unit_tests || true
    echo "== config file checks"
    step "config file checks" scripts/check-conf.sh || true
    echo "== source checks (lib/ includes, issue numbers, log numbers, README)"
    step "source checks" scripts/check-source.sh || true
    echo "== packaging checks (make install DESTDIR, a2enmod, --without-curl)"
    step "packaging checks" scripts/check-install.sh || true
    echo "== docker/ checks (no Docker engine: promtool, syntax, cross-references)"
    step "docker/ checks" scripts/check-docker.sh || true
    # once per backend HTTP client: the native one, then libcurl
    for client in native curl; do
        step "suite, $client" suite "$client" || true
    done
}

fuzz_pass() {
    echo "== fuzzing, ${FUZZ_SECONDS:-60}s per target"
    step "fuzzing" scripts/fuzz.sh || true
}

case $mode in
1)
    sanitized_pass
    ;;
0)
    normal_pass
    ;;
*)
    sanitized_pass
    [ "${FUZZ_SECONDS:-60}" = 0 ] || fuzz_pass
    normal_pass
    ;;
esac

echo "== summary"
printf '%s' "$summary"
[ -z "$core_note" ] || printf '%s\n' "$core_note"
printf '%-44s %5ss  %s\n' "total" $(($(date +%s) - started)) \
    "$([ $rc = 0 ] && echo ok || echo FAILED)"
exit $rc
