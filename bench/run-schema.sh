#!/bin/sh
# Validation cost per request for the order-create body (bench/schema-bench.c
# against conf/schemas/order-create.json): builds the benchmark with -O2
# from lib/ and runs it, pinned to one CPU when taskset exists.
#   bench/run-schema.sh [ITERATIONS] [RUNS]
set -eu
cd "$(dirname "$0")/.."
out=${TMPDIR:-/tmp}/bff-schema-bench.$$
trap 'rm -f "$out"' EXIT
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter -Ilib \
    $(apr-1-config --cppflags --includes) $(pkg-config --cflags jansson libpcre2-8) \
    bench/schema-bench.c lib/bff_schema.c lib/bff_schema_format.c lib/bff_json.c \
    -o "$out" $(apr-1-config --link-ld) $(pkg-config --libs jansson libpcre2-8) -lm
echo "host: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if command -v taskset >/dev/null 2>&1; then
    taskset -c 0 "$out" conf/schemas/order-create.json "$@"
else
    "$out" conf/schemas/order-create.json "$@"
fi
