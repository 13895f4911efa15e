#!/bin/sh
# Checks that the shipped configurations parse with the built module
# (apache2 -t), so a directive change cannot leave conf/ broken.
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
"$HTTPD" -t -f "$PWD/conf/demo-httpd.conf" -D BFF_ACCESS \
    -C "Define BFF_RUN_DIR $tmp" -C "Define BFF_MODULE $PWD/.libs/mod_bff.so" \
    -C "Define BFF_CONF_DIR $PWD/conf" -C "Define BFF_LISTEN 127.0.0.1:8000"
echo "conf/demo-httpd.conf -D BFF_ACCESS (conf/bff-access.conf): OK"
