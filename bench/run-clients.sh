#!/bin/bash
# The mobile endpoint (conf/bff-clients.conf) with per-item fan-out, one
# GET /products/{id} per ordered product (user 2: 5 orders, 5 distinct
# products; at most 4 calls at a time) against the same endpoint with one
# POST /products/batch, in one run of one httpd (pinned to CPU 0 as in
# bench/run.sh; the demo services and wrk on CPU 1). Then the same with
# every product call delayed BFFB_DELAY ms: 5 items at 4 at a time take
# two rounds.
#   bench/run-clients.sh         DURATION=5 WARMUP=2 CONNS=32 USER_ID=2 BFFB_DELAY=20
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-5}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-32}
GW_CPUS=${GW_CPUS:-0}; AUX_CPUS=${AUX_CPUS:-1}; USER_ID=${USER_ID:-2}
export BFFB_DELAY=${BFFB_DELAY:-20}

"$top/scripts/deps.sh" >/dev/null
"$top/scripts/build.sh" >/dev/null
run=$(mktemp -d /tmp/bff-bench-clients.XXXXXX)
chmod 755 "$run"
svc=()
stop_all() {
    [[ -f $run/httpd.pid ]] && kill "$(cat "$run/httpd.pid")" 2>/dev/null || true
    for p in "${svc[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    rm -rf "$run"
}
trap stop_all EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A url
for role in user order product; do
    p=$(port)
    taskset -c "$AUX_CPUS" "$top/services/bff-demo-service" --role $role --port "$p" \
        --data "$top/services/fixtures" --threads 2 2>>"$run/services.log" &
    svc+=($!)
    url[$role]=http://127.0.0.1:$p
done
export BFF_MODULE=$top/.libs/mod_bff.so BFFB_RUN=$run BFFB_PORT=$(port) \
       BFFB_USERS=${url[user]} BFFB_ORDERS=${url[order]} BFFB_PRODUCTS=${url[product]}
if [[ $(id -u) == 0 ]]; then export BFFB_USER=www-data BFFB_GROUP=www-data; else
    export BFFB_USER=$(id -un) BFFB_GROUP=$(id -gn); fi
for i in $(seq 50); do curl -s -o /dev/null "${url[product]}/health" && break; sleep 0.1; done
taskset -c "$GW_CPUS" apache2 -f "$top/bench/httpd-clients.conf.in" -k start
gw=http://127.0.0.1:$BFFB_PORT
for i in $(seq 50); do curl -s -o /dev/null "$gw/batch/api/mobile/profile/$USER_ID" && break; sleep 0.1; done

# both variants give the same answer, with every product in it
a=$(curl -s "$gw/fanout/api/mobile/profile/$USER_ID" | jq -S .)
b=$(curl -s "$gw/batch/api/mobile/profile/$USER_ID" | jq -S .)
[[ $a == "$b" ]] || { echo "fan-out and batch answers differ" >&2; diff <(echo "$a") <(echo "$b") >&2; exit 1; }
n=$(jq '[.orders[].product_name] | unique | length' <<<"$a")
echo "user $USER_ID: $n distinct products, answer $(curl -s "$gw/fanout/api/mobile/profile/$USER_ID" | wc -c) bytes"

gw_ticks() {   # CPU ticks of this run's httpd processes
    local t=0 p
    for p in $(pgrep -f "$top/bench/httpd-clients.conf.in"); do
        t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
    done
    echo $t
}
hz=$(getconf CLK_TCK)
declare -A rps
printf '%-48s %9s %8s %8s %9s\n' target req/s p50ms p99ms us/req
row() {   # label path
    local label=$1 u=$gw$2 out t0 t1 n
    taskset -c "$AUX_CPUS" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$u" >/dev/null
    t0=$(gw_ticks)
    out=$(taskset -c "$AUX_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$u")
    t1=$(gw_ticks)
    ! grep -q Non-2xx <<<"$out" || { echo "$label: $(grep Non-2xx <<<"$out")" >&2; }
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rps[$label]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    printf '%-48s %9s %8s %8s %9.0f\n' "$label" "${rps[$label]}" \
        "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
        "$(echo "($t1 - $t0) * 1000000 / $hz / $n" | bc -l)"
}
row "batch (1 POST /products/batch)"            "/batch/api/mobile/profile/$USER_ID"
row "per-item (5 GET /products/{id}, cap 4)"     "/fanout/api/mobile/profile/$USER_ID"
row "batch, products +${BFFB_DELAY} ms"          "/delayed/batch/api/mobile/profile/$USER_ID"
row "per-item, products +${BFFB_DELAY} ms"       "/delayed/fanout/api/mobile/profile/$USER_ID"
echo
ratio() { echo "scale=2; ${rps[$1]} / ${rps[$2]}" | bc -l; }
echo "per-item / batch req/s, no delay:        $(ratio "per-item (5 GET /products/{id}, cap 4)" "batch (1 POST /products/batch)")"
echo "per-item / batch req/s, products +${BFFB_DELAY} ms: $(ratio "per-item, products +${BFFB_DELAY} ms" "batch, products +${BFFB_DELAY} ms")"
