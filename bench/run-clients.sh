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
. "$top/bench/lib.sh"
stop_all() {
    [[ -f $run/httpd.pid ]] && kill "$(cat "$run/httpd.pid")" 2>/dev/null || true
    for p in "${svc[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    rm -rf "$run"
}
trap stop_all EXIT

start_demo_services
export BFF_MODULE=$top/.libs/mod_bff.so BFFB_RUN=$run BFFB_PORT=$(free_port) \
       BFFB_USERS=${url[user]} BFFB_ORDERS=${url[order]} BFFB_PRODUCTS=${url[product]}
export_httpd_user
for i in $(seq 50); do curl -s -o /dev/null "${url[product]}/health" && break; sleep 0.1; done
conf=$top/bench/httpd-clients.conf.in
taskset -c "$GW_CPUS" apache2 -f "$conf" -k start
gw=http://127.0.0.1:$BFFB_PORT
for i in $(seq 50); do curl -s -o /dev/null "$gw/batch/api/mobile/profile/$USER_ID" && break; sleep 0.1; done

# both variants give the same answer, with every product in it
a=$(curl -s "$gw/fanout/api/mobile/profile/$USER_ID" | jq -S .)
b=$(curl -s "$gw/batch/api/mobile/profile/$USER_ID" | jq -S .)
[[ $a == "$b" ]] || { echo "fan-out and batch answers differ" >&2; diff <(echo "$a") <(echo "$b") >&2; exit 1; }
n=$(jq '[.orders[].product_name] | unique | length' <<<"$a")
echo "user $USER_ID: $n distinct products, answer $(curl -s "$gw/fanout/api/mobile/profile/$USER_ID" | wc -c) bytes"

declare -A rps
printf '%-48s %9s %8s %8s %9s\n' target req/s p50ms p99ms us/req
row() {   # label path
    wrk_measure "$conf" "$gw$2"
    rps[$1]=$m_rps
    printf '%-48s %9s %8s %8s %9.0f\n' "$1" "$m_rps" "$m_p50" "$m_p99" "$m_us"
}
row "batch (1 POST /products/batch)"            "/batch/api/mobile/profile/$USER_ID"
row "per-item (5 GET /products/{id}, cap 4)"     "/fanout/api/mobile/profile/$USER_ID"
row "batch, products +${BFFB_DELAY} ms"          "/delayed/batch/api/mobile/profile/$USER_ID"
row "per-item, products +${BFFB_DELAY} ms"       "/delayed/fanout/api/mobile/profile/$USER_ID"
echo
ratio() { echo "scale=2; ${rps[$1]} / ${rps[$2]}" | bc -l; }
echo "per-item / batch req/s, no delay:        $(ratio "per-item (5 GET /products/{id}, cap 4)" "batch (1 POST /products/batch)")"
echo "per-item / batch req/s, products +${BFFB_DELAY} ms: $(ratio "per-item, products +${BFFB_DELAY} ms" "batch, products +${BFFB_DELAY} ms")"
