#!/bin/bash
# Many slow aggregations in flight: GET /api/profile/42 with backend delays
# 20/50/30 ms and 1000 concurrent clients, in one run: Peer A (nginx+lua),
# Peer B (Node), httpd serving the same bytes as a static file (the
# ceiling inside httpd, bench-peers' own instance), the same file served by
# the gateway's httpd with the shipped profile (httpd's own path with the
# same MPM settings: the reference for context switches and memory),
# mod_bff with the shipped profile (conf/bff-mpm.conf,
# and conf/bff-envvars in its environment)
# and mod_bff with Debian's default event MPM settings. Each row prints
# req/s, p50, p99, socket errors, non-2xx answers (503s of BFFMaxInFlight),
# the gateway's peak RSS and its peak number of open backend connections
# (both sampled every 200 ms), the RSS it grew by per client connection
# (peak less its RSS before the warm-up, over CONNS), its context switches
# per request (every thread of its processes) and the TCP connections the
# machine opened during the measured run (wrk's own included).
# The peers and the backends are ../shared/bench-peers's (`run.sh serve`);
# gateways on CPU 0, backends and wrk on CPU 1, as in bench/run.sh.
#   bench/run-concurrency.sh          CONNS=1000 DURATION=10 WARMUP=3 REPEAT=1
#   REPEAT=3 ONLY='mod_bff' bench/run-concurrency.sh
#   RAW_DIR=/tmp/x bench/run-concurrency.sh    keeps wrk's own output of each run
#   PERF_OUT=/tmp/p bench/run-concurrency.sh   perf record ($PERF_OPTS, -g) of the mod_bff rows
#   CONNS=32 DELAYS=0/0/0 bench/run-concurrency.sh   the miss path of bench/run.sh's scenario a
#   MODULES='old/.libs/mod_bff.so .libs/mod_bff.so' bench/run-concurrency.sh   builds side by side
#   POOLS='child thread' bench/run-concurrency.sh   rows per BFFBackendPool (default child)
#   PROFILES='conf/bff-mpm.conf /tmp/16x96.conf' bench/run-concurrency.sh
#                                       profile rows per MPM configuration file
#   ENVS='- MALLOC_ARENA_MAX=2' bench/run-concurrency.sh   rows per gateway environment
#                                       (- is none; each entry one NAME=VALUE for apache2,
#                                       after conf/bff-envvars, which the profile rows
#                                       source: GLIBC_TUNABLES= runs one without it)
#   ROUNDS=5 bench/run-concurrency.sh   every row once per round, rows alternating,
#                                       then each row's median over the rounds
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
CONNS=${CONNS:-1000}; DURATION=${DURATION:-10}; WARMUP=${WARMUP:-3}; REPEAT=${REPEAT:-1}
ROUNDS=${ROUNDS:-1}
GW_CPUS=${GW_CPUS:-0}; AUX_CPUS=${AUX_CPUS:-1}; ONLY=${ONLY:-}
DELAYS=${DELAYS:-20/50/30}
debian_mpm=${DEBIAN_MPM:-/etc/apache2/mods-available/mpm_event.conf}

. "$top/bench/lib.sh"
"$top/scripts/deps.sh"
harness_setup
"$top/scripts/build.sh" >/dev/null
[[ -r $debian_mpm ]] || { echo "bench: no $debian_mpm (apache2 package)" >&2; exit 1; }
(( $(ulimit -n) > CONNS + 256 )) || ulimit -n "$(ulimit -Hn)"

run=$(mktemp -d /tmp/bff-bench-conc.XXXXXX)
chmod 755 "$run"
cleanup() {
    stop_gateway
    harness_serve_stop
    rm -rf "$run"
}
stop_gateway() {
    [[ -f $run/httpd.pid ]] || return 0
    local p; p=$(cat "$run/httpd.pid")
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$run/httpd.pid"
}
trap cleanup EXIT

harness_serve_start "$run/harness.log"
IFS=/ read -r du do dp <<<"$DELAYS"
for s in 8001:$du 8002:$do 8003:$dp; do
    curl -sf -o /dev/null "http://127.0.0.1:${s%%:*}/__admin/delay?ms=${s#*:}"
done

# the answer's bytes as a static file, for the static rows of the gateway
mkdir -p "$run/docroot/static"
curl -sf -o "$run/docroot/static/profile.json" http://127.0.0.1:9001/api/profile/42
chmod -R o+rX "$run/docroot"

export BFF_MODULE=$top/.libs/mod_bff.so BFFB_RUN=$run
export_httpd_user
chmod o+rx "$top" "$top/.libs" 2>/dev/null || true
start_gateway() {   # mpm-conf [envvars file]
    export BFFB_PORT BFFB_MPM=$1
    BFFB_PORT=$(free_port)
    : >"$run/error.log"
    ( [[ -z ${2:-} ]] || . "$2"
      env ${GW_ENV#-} taskset -c "$GW_CPUS" apache2 -f "$top/bench/httpd-concurrency.conf.in" -k start )
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$BFFB_PORT/api/profile/42" && return 0
        sleep 0.1
    done
    cat "$run/error.log" >&2; exit 1
}

listen_pid() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

printf '%-52s %8s %7s %7s %6s %6s %7s %7s %8s %8s %6s %9s\n' target req/s p50ms p99ms errors non2xx 'gw us/r' \
    'RSS MiB' 'KiB/conn' 'be conns' 'cs/req' 'tcp opens'
measure_row() {   # label url root-pid
    local label=$1 u=$2 root=$3 i out line pids t0 t1 o0 o1 c0 c1 rss0 rows=()
    for i in $(seq "$REPEAT"); do
        rss0=$(tree_rss "$root")
        taskset -c "$AUX_CPUS" wrk -t1 -c"$CONNS" -d"${WARMUP}s" --timeout 5s "$u" >/dev/null 2>&1 || true
        pids=$(tree_of "$root")
        t0=$(proc_ticks $pids); o0=$(tcp_active_opens); c0=$(ctx_switches $pids)
        sample_peaks "$root" "$run/peaks" &
        local sampler=$!
        taskset -cp "$AUX_CPUS" "$sampler" >/dev/null
        local perf=
        if [[ -n ${PERF_OUT:-} && $label == mod_bff* ]]; then
            taskset -c "$AUX_CPUS" perf record -q ${PERF_OPTS:--g} -o "$PERF_OUT-${label//[^A-Za-z0-9]/_}-$i.data" \
                -p "$(tree_of "$root" | tr ' ' ',')" 2>/dev/null &
            perf=$!
        fi
        out=$(taskset -c "$AUX_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s \
            -s "$BFF_BENCH_WORK/lib/wrk-report.lua" "$u" 2>&1) || true
        kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
        [[ -z $perf ]] || { kill -INT "$perf"; wait "$perf" 2>/dev/null || true; }
        pids=$(printf '%s\n' $pids $(tree_of "$root") | sort -un)
        t1=$(proc_ticks $pids); o1=$(tcp_active_opens)
        c1=$(ctx_switches $pids)
        [[ -z ${RAW_DIR:-} ]] || printf '%s\n' "$out" >"$RAW_DIR/${label//[^A-Za-z0-9]/_}-$i.txt"
        line=$(grep '^RESULT ' <<<"$out" | tail -1)
        [[ -n $line ]] || { echo "$out" >&2; exit 1; }
        local -A R=(); local kv
        for kv in ${line#RESULT }; do R[${kv%%=*}]=${kv#*=}; done
        rows+=("$(awk -v req="${R[requests]}" -v dus="${R[duration_us]}" -v p50="${R[p50_us]}" \
            -v p99="${R[p99_us]}" -v err="${R[errors]}" -v n2="${R[non2xx]}" -v hz="$(getconf CLK_TCK)" \
            -v dt="$((t1 - t0))" -v peaks="$(cat "$run/peaks")" -v opens="$((o1 - o0))" \
            -v rss0="$rss0" -v conns="$CONNS" -v cs="$(ctx_delta "$c0" "$c1")" 'BEGIN {
                split(peaks, pk, " ")
                printf "%.0f %.1f %.1f %d %d %.0f %.0f %.0f %d %.1f %d\n", req / (dus / 1e6), p50 / 1000,
                    p99 / 1000, err, n2 - 0, req ? 1e6 * dt / hz / req : 0, pk[1] / 1024,
                    (pk[1] > rss0 ? (pk[1] - rss0) / conns : 0), pk[2], req ? cs / req : 0, opens }')")
    done
    # every run of the row, kept for the medians over the rounds
    printf '%s\n' "${rows[@]}" >>"$run/rows-$(row_key "$label")"
    grep -qxF "$label" "$run/labels" 2>/dev/null || echo "$label" >>"$run/labels"
    print_median "$label" "${rows[@]}"
}
row_key() { printf '%s' "$1" | md5sum | cut -c1-12; }
# label, then runs: the run with the median req/s, every run's req/s after it
print_median() {
    local l=$1; shift
    printf '%s\n' "$@" | sort -n -k1,1 | sed -n "$(( ($# + 1) / 2 ))p" |
        awk -v l="$l" -v all="$(printf '%s\n' "$@" | cut -d' ' -f1 | sort -n | paste -sd/)" \
            '{ printf "%-52s %8s %7s %7s %6s %6s %7s %7s %8s %8s %6s %9s  (%s)\n", l, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, all }'
}

# root and its children (httpd's parent and children, nginx's master and
# workers, node)
tree_of() { echo "$1" $(pgrep -P "$1"); }
# CPU ticks of the given processes, with those of their children that
# ended and were waited for (httpd's parent reaps the children its MPM
# stops while the load falls)
proc_ticks() {
    local p s=0 rest
    for p in "$@"; do
        { read -r rest <"/proc/$p/stat"; } 2>/dev/null || continue
        rest=${rest##*) }
        set -- $rest
        s=$(( s + ${12} + ${13} + ${14} + ${15} ))
    done
    echo $s
}
# context switches of every thread of the given processes, a "pid count"
# line each
ctx_switches() {
    local p
    for p in "$@"; do
        [[ -d /proc/$p ]] || continue
        echo "$p $(cat /proc/"$p"/task/*/status 2>/dev/null |
            awk '/_ctxt_switches:/ { n += $2 } END { print n + 0 }')"
    done
}
# the switches between two ctx_switches lists: of the processes in the
# second, less what they had in the first (a process that ended during
# the run is not counted)
ctx_delta() {
    awk 'NR == FNR { was[$1] = $2; next } { n += $2 - was[$1] } END { print n + 0 }' \
        <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}
tree_rss() {
    local p s=0
    for p in $(tree_of "$1"); do
        s=$(( s + $( { awk '/^VmRSS:/ { n = $2 } END { print n + 0 }' <"/proc/$p/status"; } 2>/dev/null || echo 0) ))
    done
    echo $s
}
tcp_active_opens() { awk '/^Tcp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }
# peak RSS (KiB, summed over root's tree) and peak open connections from
# that tree to the backends, written to $2 when killed
sample_peaks() {
    local root=$1 outf=$2 rss conns peak_rss=0 peak_conns=0 p pids
    trap 'echo "$peak_rss $peak_conns" >"$outf"; exit 0' TERM
    echo "0 0" >"$outf"
    while :; do
        pids=$(tree_of "$root"); rss=0
        for p in $pids; do
            rss=$(( rss + $( { awk '/^VmRSS:/ { n = $2 } END { print n + 0 }' <"/proc/$p/status"; } 2>/dev/null || echo 0) ))
        done
        conns=$(ss -tnpH state established '( dport = :8001 or dport = :8002 or dport = :8003 )' 2>/dev/null |
            grep -cE "pid=($(echo $pids | tr ' ' '|'))," || true)
        (( rss > peak_rss )) && peak_rss=$rss
        (( conns > peak_conns )) && peak_conns=$conns
        sleep 0.2
    done
}

want() { [[ -z $ONLY || $1 =~ $ONLY ]]; }
one_round() {
want peer-a && measure_row "A nginx+lua" http://127.0.0.1:9001/api/profile/42 "$(listen_pid 9001)"
want peer-b && measure_row "B node fastify+undici" http://127.0.0.1:9002/api/profile/42 "$(listen_pid 9002)"
# the ceiling inside httpd (a static file of the same bytes): the
# reference for context switches per request
want static && [[ -n $(listen_pid 9004) ]] &&
    measure_row "httpd static file (apache-static)" http://127.0.0.1:9004/api/profile/42 "$(listen_pid 9004)"
# httpd's own static-file path in the gateway, with the profile's MPM
# settings: the reference for context switches and memory per connection
for prof in ${PROFILES:-conf/bff-mpm.conf}; do
    want profile-static || break
    [[ $prof == /* ]] || prof=$top/$prof
    pools=${POOLS:-child} mods=${MODULES:-$top/.libs/mod_bff.so} GW_ENV=-
    export BFFB_POOL=${pools%% *}
    BFF_MODULE=$(readlink -f "${mods%% *}")
    start_gateway "$prof" "$top/conf/bff-envvars"
    measure_row "httpd static file, ${prof#"$top/"}" "http://127.0.0.1:$BFFB_PORT/static/profile.json" "$(cat "$run/httpd.pid")"
    stop_gateway
done
# MODULES="A/.libs/mod_bff.so B/.libs/mod_bff.so": rows for each build
# (named by its source directory), in one run
for mod in ${MODULES:-$top/.libs/mod_bff.so}; do
    BFF_MODULE=$(readlink -f "$mod")
    tag=
    [[ -z ${MODULES:-} ]] || tag=" [$(basename "$(dirname "$(dirname "$BFF_MODULE")")")]"
  for BFFB_POOL in ${POOLS:-child}; do
  for GW_ENV in ${ENVS:--}; do
    export BFFB_POOL
    ptag=
    [[ -z ${POOLS:-} ]] || ptag=" pool=$BFFB_POOL"
    [[ $GW_ENV == - ]] || ptag="$ptag $GW_ENV"
    for prof in ${PROFILES:-conf/bff-mpm.conf}; do
        want mod_bff-profile || break
        [[ $prof == /* ]] || prof=$top/$prof
        start_gateway "$prof" "$top/conf/bff-envvars"
        measure_row "mod_bff, ${prof#"$top/"}$tag$ptag" "http://127.0.0.1:$BFFB_PORT/api/profile/42" "$(cat "$run/httpd.pid")"
        [[ -z ${RAW_DIR:-} ]] || cp "$run/error.log" "$RAW_DIR/error-profile-$BFFB_POOL${ptag//[^A-Za-z0-9]/_}.log"
        stop_gateway
    done
    if want mod_bff-debian; then
        start_gateway "$debian_mpm"
        measure_row "mod_bff, Debian's mpm_event.conf$tag$ptag" "http://127.0.0.1:$BFFB_PORT/api/profile/42" "$(cat "$run/httpd.pid")"
        [[ -z ${RAW_DIR:-} ]] || cp "$run/error.log" "$RAW_DIR/error-debian-$BFFB_POOL${ptag//[^A-Za-z0-9]/_}.log"
        stop_gateway
    fi
  done
  done
done
}
for round in $(seq "$ROUNDS"); do
    (( ROUNDS == 1 )) || echo "-- round $round of $ROUNDS"
    one_round
done
if (( ROUNDS > 1 )); then
    echo "-- median over the $ROUNDS rounds (rows alternated within each round)"
    while IFS= read -r label; do
        mapfile -t all <"$run/rows-$(row_key "$label")"
        print_median "$label" "${all[@]}"
    done <"$run/labels"
fi
echo "CONNS=$CONNS DURATION=${DURATION}s WARMUP=${WARMUP}s REPEAT=$REPEAT ROUNDS=$ROUNDS delays $DELAYS ms; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
