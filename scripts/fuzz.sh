#!/bin/sh
# Builds the libFuzzer targets t/fuzz/fuzz_*.c (clang, ASan, UBSan; see
# t/fuzz/fuzz.mk) and runs each for FUZZ_SECONDS seconds (default 60)
# from its corpus in the repository, t/fuzz/corpus/NAME/. A crash, a
# sanitizer report, a leak, a timeout (10 s for one input) or an
# out-of-memory fails the run; the log and the input that caused it are
# left in t/logs/fuzz/. A new fuzz_NAME.c joins without any change here.
#
#   scripts/fuzz.sh                      every target
#   scripts/fuzz.sh fuzz_tpl fuzz_h1     some of them
#   FUZZ_SECONDS=600 scripts/fuzz.sh fuzz_h1
#   FUZZ_MERGE=1 scripts/fuzz.sh NAME    after the run, fold the inputs it
#                                        found into t/fuzz/corpus/NAME/
#                                        (minimised: only new coverage)
#
# Optional per target: t/fuzz/NAME.dict (a libFuzzer dictionary) and
# t/fuzz/NAME.options (more libFuzzer flags on one line, e.g. -max_len=).
# Inputs found during a run stay in t/logs/fuzz/NAME.new, outside the
# repository, unless FUZZ_MERGE=1.
set -eu
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
make -s -f t/fuzz/fuzz.mk -j"$(nproc)" all
if [ $# -eq 0 ]; then
    set -- $(make -s -f t/fuzz/fuzz.mk fuzz-targets)
fi

out=t/logs/fuzz
mkdir -p "$out"
rc=0
for name in "$@"; do
    bin=t/fuzz/$name
    corpus=t/fuzz/corpus/$name
    if [ ! -x "$bin" ]; then
        echo "fuzz: $name: no such target (t/fuzz/$name.c)" >&2
        rc=1
        continue
    fi
    if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
        echo "fuzz: $name: no corpus in $corpus (commit seed inputs there)" >&2
        rc=1
        continue
    fi
    rm -rf "$out/$name.new" "$out/$name".crash-* "$out/$name".leak-* \
           "$out/$name".timeout-* "$out/$name".oom-* "$out/$name".slow-unit-*
    mkdir -p "$out/$name.new"
    opts=""
    [ -f "t/fuzz/$name.options" ] && opts=$(cat "t/fuzz/$name.options")
    [ -f "t/fuzz/$name.dict" ] && opts="$opts -dict=t/fuzz/$name.dict"
    # new inputs go to the first directory, never into the repository's
    # shellcheck disable=SC2086
    if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
           -print_final_stats=1 -artifact_prefix="$out/$name." $opts \
           "$out/$name.new" "$corpus" > "$out/$name.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log")
        cov=$(sed -n 's/.*DONE *cov: \([0-9]*\).*/\1/p' "$out/$name.log")
        echo "fuzz: $name: ok, ${runs:-?} inputs in ${seconds}s, coverage ${cov:-?}"
    else
        echo "fuzz: $name: FAILED (log: $out/$name.log)" >&2
        grep -E '^(==[0-9]+==|SUMMARY|.*runtime error:|artifact_prefix|Test unit written)' \
            "$out/$name.log" | head -20 >&2 || true
        rc=1
        continue
    fi
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        # shellcheck disable=SC2086
        "$bin" -merge=1 $opts "$corpus" "$out/$name.new" \
            > "$out/$name.merge.log" 2>&1
        echo "fuzz: $name: corpus now $(ls "$corpus" | wc -l) inputs"
    fi
done
exit $rc
