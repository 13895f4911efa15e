#!/bin/sh
# Checks that the shipped configurations parse with the built module
# (apache2 -t), so a directive change cannot leave conf/ broken: the demo,
# the docker/ gateway, and the gateway skeleton with its recipes.
set -eu
cd "$(dirname "$0")/.."
APXS=${APXS:-$(command -v apxs2 || command -v apxs)}
HTTPD=$("$APXS" -q SBINDIR)/$("$APXS" -q TARGET)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$HTTPD" -t -f "$PWD/conf/demo-httpd.conf" \
    -C "Define BFF_RUN_DIR $tmp" -C "Define BFF_MODULE $PWD/.libs/mod_bff.so" \
    -C "Define BFF_CONF_DIR $PWD/conf" -C "Define BFF_LISTEN 127.0.0.1:8000"
echo "conf/demo-httpd.conf: OK"
"$HTTPD" -t -f "$PWD/conf/demo-httpd.conf" \
    -C "Define BFF_RUN_DIR $tmp" -C "Define BFF_MODULE $PWD/.libs/mod_bff.so" \
    -C "Define BFF_CONF_DIR $PWD/conf" -C "Define BFF_LISTEN 127.0.0.1:8000" \
    -C "Define BFF_EVENTS_REDIS redis://127.0.0.1:6379/0"
echo "conf/demo-httpd.conf with BFF_EVENTS_REDIS (conf/bff-log.conf, conf/bff-errorlog.conf): OK"
# apache2 -t loads the key files too (a broken one must fail the test, not
# the graceful restart): throw-away keys made as the test suite makes them
perl -I"$PWD/t/lib" -MBFFJWT -e 'BFFJWT::generate_keys($ARGV[0])' "$tmp/keys" \
    >/dev/null
"$HTTPD" -t -f "$PWD/conf/demo-httpd.conf" -D BFF_ACCESS \
    -C "Define BFF_RUN_DIR $tmp" -C "Define BFF_MODULE $PWD/.libs/mod_bff.so" \
    -C "Define BFF_CONF_DIR $PWD/conf" -C "Define BFF_LISTEN 127.0.0.1:8000" \
    -C "Define BFF_JWKS $tmp/keys/jwks.json" \
    -C "Define BFF_APIKEYS $tmp/keys/apikeys.txt"
echo "conf/demo-httpd.conf -D BFF_ACCESS (conf/bff-access.conf): OK"
# the docker/ gateway's configuration, with the paths of the build tree
"$HTTPD" -t -f "$PWD/docker/gateway.conf" \
    -C "Define BFF_RUN_DIR $tmp" -C "Define BFF_MODULE $PWD/.libs/mod_bff.so" \
    -C "Define BFF_CONF_DIR $PWD/conf"
echo "docker/gateway.conf: OK"
# the gateway skeleton and its recipes, with the variables they read from
# the environment
if [ "$(id -u)" = 0 ]; then u=nobody g=nogroup; else u=$(id -un) g=$(id -gn); fi
for f in gateway recipe-api recipe-proxy recipe-clients; do
    env BFF_RUN_DIR="$tmp" BFF_LISTEN=127.0.0.1:8000 \
        BFF_MODULES_DIR="$("$APXS" -q LIBEXECDIR)" BFF_MODULE="$PWD/.libs/mod_bff.so" \
        BFF_USER="$u" BFF_GROUP="$g" BFF_CONF_DIR="$PWD/conf" \
        BFF_USER_SERVICE=http://127.0.0.1:8001 BFF_ORDER_SERVICE=http://127.0.0.1:8002 \
        BFF_PRODUCT_SERVICE=http://127.0.0.1:8003 BFF_JWT_KEY="$tmp/keys/rsa.pub" \
        BFF_JWT_ISSUER=https://auth.example.com/ BFF_JWT_AUDIENCE=bff-api \
        "$HTTPD" -t -f "$PWD/conf/$f.conf"
    echo "conf/$f.conf: OK"
done
# the gateway's environment: a shell file that /etc/apache2/envvars
# sources; it appends to GLIBC_TUNABLES, never replaces it
envvars_gives() {   # expected, then env(1) arguments before the shell
    want=$1; shift
    t=$(env "$@" sh -ec '. "$1"; echo "$GLIBC_TUNABLES"' sh "$PWD/conf/bff-envvars")
    [ "$t" = "$want" ] || { echo "conf/bff-envvars: GLIBC_TUNABLES=$t, not $want" >&2; exit 1; }
}
envvars_gives glibc.malloc.arena_max=4:glibc.malloc.tcache_count=256 GLIBC_TUNABLES=glibc.malloc.arena_max=4
envvars_gives glibc.malloc.tcache_count=256 -u GLIBC_TUNABLES
echo "conf/bff-envvars: OK"
