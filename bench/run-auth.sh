#!/bin/bash
# The cost of the access phase: the aggregated profile with an RS256 token
# and a Redis token bucket against the same endpoint without them, on the
# miss path and on the cache-hit path, all in one run of one httpd (pinned
# to CPU 0 as in bench/run.sh; backends, Redis and wrk on CPU 1).
#   bench/run-auth.sh            DURATION=5 WARMUP=2 CONNS=32 REPEAT=3
#   BACKENDS=harness bench/run-auth.sh   (with `SERVE_SECONDS=300 bench/run.sh serve` running)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-5}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-32}
GW_CPUS=${GW_CPUS:-0}; AUX_CPUS=${AUX_CPUS:-1}

"$top/scripts/deps.sh"
"$top/scripts/build.sh" >/dev/null
run=$(mktemp -d /tmp/bff-bench-auth.XXXXXX)
chmod 755 "$run"
svc=()
. "$top/bench/lib.sh"
cleanup() {
    [[ -f $run/httpd.pid ]] && kill "$(cat "$run/httpd.pid")" 2>/dev/null || true
    for p in "${svc[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -f $run/redis.pid ]] && kill "$(cat "$run/redis.pid")" 2>/dev/null || true
    sleep 0.5
    rm -rf "$run"
}
trap cleanup EXIT

# backends and Redis on the auxiliary CPU. BACKENDS=harness uses the nginx
# backends of a `bench/run.sh serve` that is running (127.0.0.1:8001-8003).
if [[ ${BACKENDS:-demo} == harness ]]; then
    url=([user]=http://127.0.0.1:8001 [order]=http://127.0.0.1:8002 [product]=http://127.0.0.1:8003)
else
    start_demo_services
fi
redis_port=$(free_port)
taskset -c "$AUX_CPUS" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' \
    --appendonly no --daemonize yes --pidfile "$run/redis.pid" --dir "$run" --logfile "$run/redis.log"

# an RS256 key pair and a token
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$run/rsa.key" 2>/dev/null
openssl pkey -in "$run/rsa.key" -pubout -out "$run/rsa.pub"
chmod 644 "$run/rsa.pub"
b64u() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
exp=$(( $(date +%s) + 3600 ))
input="$(printf '{"alg":"RS256","typ":"JWT"}' | b64u).$(printf '{"sub":"bench","iss":"bench","aud":"bench","exp":%d}' $exp | b64u)"
token="$input.$(printf %s "$input" | openssl dgst -sha256 -sign "$run/rsa.key" | b64u)"

export BFF_MODULE=$top/.libs/mod_bff.so BFFB_RUN=$run BFFB_PORT=$(free_port) \
       BFFB_REDIS=redis://127.0.0.1:$redis_port \
       BFFB_USERS=${url[user]} BFFB_ORDERS=${url[order]} BFFB_PRODUCTS=${url[product]}
export_httpd_user
conf=$top/bench/httpd-auth.conf.in
taskset -c "$GW_CPUS" apache2 -f "$conf" -k start
base=http://127.0.0.1:$BFFB_PORT
for i in $(seq 50); do curl -s -o /dev/null "$base/open/api/profile/42" && break; sleep 0.1; done
st=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base/secure/api/profile/42")
[[ $st == 200 ]] || { echo "secure endpoint answered $st" >&2; cat "$run/error.log" >&2; exit 1; }
st=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base/lease/cached/profile/42")
[[ $st == 200 ]] || { echo "leased endpoint answered $st" >&2; cat "$run/error.log" >&2; exit 1; }
st=$(curl -s -o /dev/null -w '%{http_code}' "$base/secure/api/profile/42")
[[ $st == 401 ]] || { echo "no token gave $st, expected 401" >&2; exit 1; }

# Rows are measured in REPEAT interleaved rounds (off, on, off, on, ...), so
# slow drifts of the shared machine hit both rows of a pair alike; each
# pair's cost is the median of its per-round costs.
REPEAT=${REPEAT:-3}
printf '%-36s %5s %9s %8s %8s %9s\n' target round req/s p50ms p99ms us/req
declare -A rps usr
perf_pid= profile=
# PERF_ROW='hit, RS256 + Redis bucket' PERF_OUT=/tmp/x.data: profile that
# row's first round
measure_begin() {
    [[ -n $profile ]] || return 0
    perf record -q ${PERF_OPTS:--g} -o "${PERF_OUT:-/tmp/bff-auth.perf}" \
        -p "$(pgrep -d, -f "$conf")" 2>/dev/null &
    perf_pid=$!
}
measure_end() {
    [[ -n $perf_pid ]] || return 0
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    perf_pid=
}
measure() {   # label round url [header]
    local label=$1 round=$2 u=$3; shift 3
    profile=
    [[ -n ${PERF_ROW:-} && $label == "$PERF_ROW" && $round == 1 ]] && profile=1
    wrk_measure "$conf" "$u" "$@"
    rps[$label,$round]=$m_rps; usr[$label,$round]=$m_us
    printf '%-36s %5s %9s %8s %8s %9.0f\n' "$label" "$round" "$m_rps" "$m_p50" "$m_p99" "$m_us"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for round in $(seq "$REPEAT"); do
    measure "miss, no auth"               "$round" "$base/open/api/profile/42"
    measure "miss, RS256 + Redis bucket"  "$round" "$base/secure/api/profile/42"   -H "Authorization: Bearer $token"
    measure "miss, RS256 + leased bucket" "$round" "$base/lease/api/profile/42"    -H "Authorization: Bearer $token"
    measure "hit, no auth"                "$round" "$base/open/cached/profile/42"
    measure "hit, RS256 + Redis bucket"   "$round" "$base/secure/cached/profile/42" -H "Authorization: Bearer $token"
    measure "hit, RS256 + leased bucket"  "$round" "$base/lease/cached/profile/42"  -H "Authorization: Bearer $token"
done
echo
summary() {   # path [bucket]
    local off="$1, no auth" on="$1, RS256 + ${2:-Redis} bucket" r costs=() uson=() usoff=()
    for r in $(seq "$REPEAT"); do
        costs+=("$(echo "(1 - ${rps[$on,$r]} / ${rps[$off,$r]}) * 100" | bc -l)")
        uson+=("${usr[$on,$r]}"); usoff+=("${usr[$off,$r]}")
    done
    local cpuoff cpuon
    cpuoff=$(printf '%s\n' "${usoff[@]}" | median)
    cpuon=$(printf '%s\n' "${uson[@]}" | median)
    # req/s ratios swing with whatever else the shared machine runs; the
    # gateway's CPU per request is steadier, and when the gateway is the
    # bottleneck its capacity falls by 1 - off/on
    printf 'access phase cost, %-4s path, %-6s bucket: median %.1f%% fewer req/s (rounds: %s); gateway CPU %.0f -> %.0f us/req (medians): %.1f%% less capacity when CPU-bound\n' \
        "$1" "${2:-Redis}" "$(printf '%s\n' "${costs[@]}" | median)" \
        "$(printf '%.1f%% ' "${costs[@]}")" "$cpuoff" "$cpuon" \
        "$(echo "(1 - $cpuoff / $cpuon) * 100" | bc -l)"
}
summary miss
summary miss leased
summary hit
summary hit leased
