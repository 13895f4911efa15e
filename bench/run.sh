#!/bin/bash
# Benchmarks mod_bff side by side with the peers of ../shared/bench-peers
# (nginx+lua, Node fastify+undici, httpd static file and mod_proxy), in one
# run, gateway pinned to one CPU as the harness does. The harness is copied
# to a writable work directory (its node peer needs `npm ci`).
#
#   bench/run.sh              scenarios a b c, table printed and saved
#   bench/run.sh check        start, verify mod_bff's JSON equals Peer A's, stop
#   SCENARIOS=a REPEAT=3 bench/run.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
peers_src=${BENCH_PEERS:-$top/../shared/bench-peers}
work=${BFF_BENCH_WORK:-/tmp/bff-bench-peers}

[[ -x $peers_src/run.sh ]] || { echo "bench: no harness at $peers_src (set BENCH_PEERS)" >&2; exit 1; }
if [[ ! -f $work/.setup-done ]] || ! diff -rq -x node_modules -x results -x .setup-done \
        "$peers_src" "$work" >/dev/null 2>&1; then
    rm -rf "$work"
    mkdir -p "$work"
    cp -r "$peers_src"/. "$work"/
    chmod -R u+w "$work"
    (cd "$work" && ./run.sh setup)
    touch "$work/.setup-done"
fi

"$top/scripts/deps.sh"
"$top/scripts/build.sh" >/dev/null
export BFF_MODULE=$top/.libs/mod_bff.so
chmod o+rx "$top" "$top/.libs" 2>/dev/null || true
cd "$work"
MODBFF_HTTPD_CONF=$top/bench/httpd-modbff.conf.in exec ./run.sh "$@"
