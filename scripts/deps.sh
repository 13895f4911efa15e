#!/bin/sh
# Installs the Debian 12 packages mod_bff needs to build, run its demo and
# run its tests. Only missing packages are installed; services that Debian
# would start on install (apache2, redis-server, memcached) are kept from
# starting: mod_bff runs its own instances, never the system's.
#
#   scripts/deps.sh           everything: build, unit tests, suite, demo
#   scripts/deps.sh --build   what `make && make check` needs (docker/Dockerfile)
set -eu

# build, and the unit tests (check_cache starts its own redis-server and
# memcached; check_schema runs the official JSON-Schema-Test-Suite)
BUILD_PKGS="build-essential autoconf automake libtool pkg-config
apache2 apache2-dev libapr1-dev libaprutil1-dev
libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev libhiredis-dev libjwt-dev
libpcre2-dev check redis-server memcached openssl json-schema-test-suite"
# the Apache::Test suite (IO::Socket::SSL: the TLS backends of t/82), the
# demo, the bench, the docker/ checks
# (promtool from prometheus, python3-yaml), the backtraces of a crashed
# httpd child's core (gdb), the fuzz targets (clang with
# libFuzzer and the sanitizer runtimes)
PKGS="$BUILD_PKGS libapache2-mod-perl2 libwww-perl libjson-perl libjson-xs-perl
libio-socket-ssl-perl
curl jq wrk procps iproute2 lsof bc python3 python3-yaml prometheus gdb
clang libclang-rt-14-dev"
if [ "${1:-}" = --build ]; then
    PKGS=$BUILD_PKGS
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi
echo "deps: installing:$missing" >&2
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
trap '[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
