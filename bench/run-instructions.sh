#!/bin/bash
# Instructions per request on the aggregation's miss path (GET
# /api/profile/42 of bench/httpd-concurrency.conf.in, backends of
# ../shared/bench-peers without delay), counted by callgrind in one
# `apache2 -X` from the start to the end of each request. Unlike req/s on
# a shared machine the count repeats to the instruction, so it compares
# builds (e.g. a module built from an older commit) and shows what each
# part of the request costs. It leaves out the kernel's share (system
# calls, scheduling), which bench/run.sh's gateway CPU includes.
#   bench/run-instructions.sh                   this tree's build
#   bench/run-instructions.sh OLD/mod_bff.so .libs/mod_bff.so
#   N=200 TOP=30 bench/run-instructions.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100}; TOP=${TOP:-25}

"$top/scripts/deps.sh"
command -v valgrind >/dev/null || apt-get install -y -q valgrind >/dev/null
. "$top/bench/lib.sh"
harness_setup
"$top/scripts/build.sh" >/dev/null
(($#)) || set -- "$top/.libs/mod_bff.so"

run=$(mktemp -d /tmp/bff-bench-instr.XXXXXX)
chmod 755 "$run"
cleanup() {
    [[ ! -f $run/httpd.pid ]] || kill -TERM "$(cat "$run/httpd.pid")" 2>/dev/null || true
    harness_serve_stop
    rm -rf "$run"
}
trap cleanup EXIT
harness_serve_start "$run/harness.log"

# the children's user: the profile is written by the process it counts
user=www-data
[[ $(id -u) == 0 ]] || user=$(id -un)
for mod in "$@"; do
    mod=$(readlink -f "$mod")
    out=$run/$(basename "$(dirname "$(dirname "$mod")")")
    mkdir -p "$out"
    chown "$user" "$out"
    export BFF_MODULE=$mod BFFB_RUN=$out BFFB_PORT BFFB_USER=$user BFFB_GROUP=$user \
           BFFB_MPM=$top/conf/bff-mpm.conf
    BFFB_PORT=$(free_port)
    runuser -u "$user" -- valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
        --toggle-collect=ap_process_async_request \
        apache2 -X -f "$top/bench/httpd-concurrency.conf.in" >"$out/valgrind.log" 2>&1 &
    vg=$!
    u=http://127.0.0.1:$BFFB_PORT/api/profile/42
    for _ in $(seq 300); do curl -sf -o /dev/null "$u" && break; sleep 0.1; done
    curl -sf "$u" | jq -e .user.id >/dev/null
    for _ in $(seq "$N"); do curl -sf -o /dev/null "$u"; done
    kill -TERM "$(cat "$out/httpd.pid")"
    wait "$vg"
    rm -f "$out/httpd.pid"
    total=$(callgrind_annotate "$out/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    echo "== $mod: $(( total / (N + 2) )) instructions per request ($((N + 2)) requests)"
    # the heaviest parts, inclusive, per request
    callgrind_annotate --inclusive=yes --auto=no "$out/callgrind.out" 2>/dev/null |
        awk -v n=$((N + 2)) -v top="$TOP" '/^-+$/ { sep++ } sep >= 3 && $1 ~ /^[0-9,]+$/ {
            ir = $1; gsub(",", "", ir); fn = $0; sub(/^.*:/, "", fn); sub(/ \[.*$/, "", fn)
            if (fn ~ /^0x|\047|TOTALS/ || seen[fn]++) next
            printf "  %9.0f  %s\n", ir / n, fn; if (++k >= top) exit }'
done
