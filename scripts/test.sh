#!/bin/sh
# Runs every mod_bff test on this machine: installs missing Debian
# packages, builds, runs the C unit tests, then the Apache::Test suite
# (a real httpd with mod_bff against the real demo services, which the
# suite starts on free loopback ports and stops by PID).
#
# Environment: SANITIZE=1 builds with ASan/UBSan and runs everything under
# them (httpd preloads libasan).
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh
if [ "${SANITIZE:-0}" = 1 ]; then
    scripts/build.sh --enable-sanitizers
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:log_path=$PWD/t/logs/asan}
    export ASAN_OPTIONS
    mkdir -p t/logs
    rm -f t/logs/asan.*
else
    scripts/build.sh
fi

echo "== unit tests"
make -s check || { cat t/unit/*.log 2>/dev/null; exit 1; }
grep -h "^JSON-Schema-Test-Suite" t/unit/check_schema.log 2>/dev/null || true

if [ "${SANITIZE:-0}" = 1 ]; then
    # httpd is not built with ASan: preload its runtime for the module
    LD_PRELOAD=$(gcc -print-file-name=libasan.so)
    export LD_PRELOAD
fi

echo "== config file checks"
scripts/check-conf.sh

echo "== packaging checks (make install DESTDIR, a2enmod, --without-curl)"
scripts/check-install.sh

echo "== docker/ checks (no Docker engine: promtool, syntax, cross-references)"
scripts/check-docker.sh

APXS=${APXS:-$(command -v apxs2 || command -v apxs)}
HTTPD=$("$APXS" -q SBINDIR)/$("$APXS" -q TARGET)
set -- -apxs "$APXS" -httpd "$HTTPD"
rc=0
# once per backend HTTP client: the native one, then libcurl for everything
for client in native curl; do
    echo "== Apache::Test suite, BFFHTTPClient $client"
    BFF_T_CLIENT=$client perl t/TEST.PL "$@" || rc=$?
done
if [ "${SANITIZE:-0}" = 1 ] && ls t/logs/asan.* >/dev/null 2>&1; then
    echo "AddressSanitizer/UBSan reports:" >&2
    cat t/logs/asan.* >&2
    rc=1
fi
exit $rc
