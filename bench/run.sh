#!/bin/bash
# Benchmarks mod_bff side by side with the peers of ../shared/bench-peers
# (nginx+lua, Node fastify+undici, httpd static file and mod_proxy), in one
# run, gateway pinned to one CPU as the harness does. The harness is copied
# to a writable work directory (its node peer needs `npm ci`).
#
#   bench/run.sh              scenarios a b c, table printed and saved
#   bench/run.sh check        start, verify mod_bff's JSON equals Peer A's, stop
#   SCENARIOS=a REPEAT=3 bench/run.sh
#   bench/run.sh cache        the cache-hit rows and the miss that writes
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
harness_setup
work=$BFF_BENCH_WORK

"$top/scripts/deps.sh"
"$top/scripts/build.sh" >/dev/null
export BFF_MODULE=$top/.libs/mod_bff.so
chmod o+rx "$top" "$top/.libs" 2>/dev/null || true
cd "$work"
export MODBFF_HTTPD_CONF=$top/bench/httpd-modbff.conf.in

if [[ ${1:-} != cache ]]; then
    exec ./run.sh "$@"
fi

# bench/run.sh cache: the hit path (scenario c) with the answer in shared
# memory only, in Redis only, and in the near cache in front of Redis; then
# the miss path that also writes Redis (scenario a). Each run measures its
# rows against the httpd static file and the peers in that same run.
shift
harness_args=("$@")
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis_dir=$(mktemp -d)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --daemonize yes --pidfile "$redis_dir/redis.pid" --dir "$redis_dir" \
    --logfile "$redis_dir/redis.log"
trap 'kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null; rm -rf "$redis_dir"' EXIT
id=${USER_ID:-42}
run_variant() {    # label store near scenarios url-var url
    echo "=== mod_bff cache: $1 (store $2, near cache $3)"
    BFF_BENCH_CACHE_STORE=$2 BFF_BENCH_NEAR_TTL=$3 MODBFF_HTTPD_ARGS="-D BFF_CACHE" \
        SCENARIOS=$4 env "$5=$6" ./run.sh "${harness_args[@]}"
}
run_variant "shared memory hits" shmcb 0 c MODBFF_CACHE_URL \
    "http://127.0.0.1:9000/cached/api/profile/$id"
run_variant "Redis-only hits" "redis://127.0.0.1:$redis_port/0" 0 c MODBFF_CACHE_URL \
    "http://127.0.0.1:9000/cached/api/profile/$id"
run_variant "near cache hits" "redis://127.0.0.1:$redis_port/0" 1s c MODBFF_CACHE_URL \
    "http://127.0.0.1:9000/cached/api/profile/$id"
run_variant "misses that write Redis" "redis://127.0.0.1:$redis_port/0" 0 a MODBFF_URL \
    "http://127.0.0.1:9000/cachewrite/api/profile/$id"
