#!/bin/sh
# Checks packaging, in scratch directories only (the system's httpd and
# /etc/apache2 are read, never changed):
#  1. `make install DESTDIR=...` of the built tree: the module in apxs'
#     LIBEXECDIR, no libtool .la, Debian's mods-available/bff.load (with
#     its '# Depends:' line) and bff.conf; `make uninstall` removes them.
#  2. a copy of the system's /etc/apache2 with those two files: `a2enmod bff`
#     enables the dependencies too, and `apache2ctl configtest` passes.
#  3. a second copy of the sources configured by default (no -Werror) and
#     then --without-curl --without-microhttpd in maintainer mode: builds,
#     links no libcurl, builds no demo service, and refuses what needs
#     libcurl at configtest with an error naming it.
set -eu
cd "$(dirname "$0")/.."
top=$PWD
APXS=${APXS:-$(command -v apxs2 || command -v apxs)}
HTTPD=$("$APXS" -q SBINDIR)/$("$APXS" -q TARGET)
LIBEXECDIR=$("$APXS" -q LIBEXECDIR)
SYSCONFDIR=$("$APXS" -q SYSCONFDIR)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "check-install: FAIL: $*" >&2; exit 1; }

# ---- 1. make install / uninstall into a scratch DESTDIR
dest=$tmp/dest
# (libtool's advice to run libtool --finish is for libraries, not modules)
out=$(make -s install DESTDIR="$dest" 2>&1) || fail "make install: $out"
[ -f "$dest$LIBEXECDIR/mod_bff.so" ] || fail "no $LIBEXECDIR/mod_bff.so"
[ ! -e "$dest$LIBEXECDIR/mod_bff.la" ] || fail "mod_bff.la installed"
if [ -d "$SYSCONFDIR/mods-available" ]; then
    load=$dest$SYSCONFDIR/mods-available/bff.load
    [ -f "$load" ] || fail "no mods-available/bff.load"
    [ -f "$dest$SYSCONFDIR/mods-available/bff.conf" ] || fail "no bff.conf"
    grep -qx '# Depends: socache_shmcb' "$load" || fail "bff.load: no Depends"
    grep -qx "LoadModule bff_module $LIBEXECDIR/mod_bff.so" "$load" \
        || fail "bff.load: LoadModule does not name $LIBEXECDIR/mod_bff.so"
    # nothing but comments inside bff.conf's <IfModule>: defaults only
    if grep -v '^[[:space:]]*#' "$dest$SYSCONFDIR/mods-available/bff.conf" \
        | grep -v '^[[:space:]]*$' | grep -qv 'IfModule'; then
        fail "bff.conf sets a directive (defaults are commented)"
    fi
fi
echo "make install DESTDIR: OK"

# ---- 2. a2enmod bff && apachectl configtest, on a copy of the system layout
if [ -d "$SYSCONFDIR/mods-available" ] && command -v a2enmod >/dev/null; then
    conf=$tmp/apache2
    cp -a "$SYSCONFDIR" "$conf"
    rm -f "$conf"/mods-enabled/bff.* "$conf"/mods-enabled/socache_shmcb.load
    cp "$dest$SYSCONFDIR"/mods-available/bff.conf "$conf/mods-available/"
    # the one change: the module is loaded from the scratch DESTDIR
    sed "s|$LIBEXECDIR/mod_bff.so|$dest$LIBEXECDIR/mod_bff.so|" \
        "$dest$SYSCONFDIR/mods-available/bff.load" > "$conf/mods-available/bff.load"
    APACHE_CONFDIR=$conf a2enmod -q bff >/dev/null
    [ -L "$conf/mods-enabled/bff.load" ] && [ -L "$conf/mods-enabled/bff.conf" ] \
        || fail "a2enmod bff did not enable bff.load and bff.conf"
    [ -L "$conf/mods-enabled/socache_shmcb.load" ] \
        || fail "a2enmod bff did not enable its dependency socache_shmcb"
    out=$(APACHE_CONFDIR=$conf apache2ctl configtest 2>&1) \
        || fail "apache2ctl configtest: $out"
    # the module is really loaded: a directive of it parses
    echo 'BFFTimeout 3s' > "$conf/conf-enabled/bff-check.conf"
    out=$(APACHE_CONFDIR=$conf apache2ctl configtest 2>&1) \
        || fail "apache2ctl configtest with a BFF directive: $out"
    echo "a2enmod bff && apachectl configtest (copy of $SYSCONFDIR): OK"
fi

out=$(make -s uninstall DESTDIR="$dest" 2>&1) || fail "make uninstall: $out"
left=$(find "$dest" -type f)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "make uninstall DESTDIR: OK"

# ---- 3. configure defaults and --without-curl --without-microhttpd
if [ "${BFF_CHECK_INSTALL_QUICK:-0}" = 1 ]; then
    echo "configure --without-curl: skipped (BFF_CHECK_INSTALL_QUICK=1)"
    exit 0
fi
src=$tmp/src
mkdir "$src"
git ls-files -z --cached --others --exclude-standard \
    | xargs -0 tar -cf - | tar -C "$src" -xf -
cd "$src"
autoreconf -fi >/dev/null 2>&1
./configure -q --with-apxs="$APXS" > configure.out
if grep '^WARN_CFLAGS' Makefile | grep -q -- -Werror; then
    fail "-Werror without --enable-maintainer-mode"
fi
grep -q 'maintainer mode *no' configure.out || fail "summary: $(cat configure.out)"
./configure -q --with-apxs="$APXS" --enable-maintainer-mode \
    --without-curl --without-microhttpd > configure.out
grep '^WARN_CFLAGS' Makefile | grep -q -- -Werror \
    || fail "no -Werror with --enable-maintainer-mode"
grep -q 'libcurl *no' configure.out && grep -q 'demo services *no' configure.out \
    || fail "summary does not name the missing features: $(cat configure.out)"
make -s -j2 all >/dev/null && make -s -j2 t/unit/check_h1 >/dev/null
[ ! -e services/bff-demo-service ] || fail "demo service built --without-microhttpd"
if readelf -d .libs/mod_bff.so | grep NEEDED | grep -q libcurl; then
    fail "mod_bff.so --without-curl links libcurl"
fi
# the fetcher refuses https:// itself (the test of it replaces the curl one)
t/unit/check_h1 >/dev/null || fail "check_h1 --without-curl"

# configtest errors naming the missing feature
mpm="LoadModule mpm_event_module $LIBEXECDIR/mod_mpm_event.so"
refused() {   # directive lines... : apache2 -t must fail naming libcurl
    printf '%s\n' "ServerRoot $tmp" "ServerName localhost" "$mpm" \
        "Listen 127.0.0.1:1" "LoadModule bff_module $src/.libs/mod_bff.so" \
        "$@" > "$tmp/t.conf"
    if out=$("$HTTPD" -t -f "$tmp/t.conf" 2>&1); then
        fail "configtest passed --without-curl: $*"
    fi
    echo "$out" | grep -q 'needs libcurl.*--without-curl' \
        || fail "configtest error does not name libcurl: $out"
}
refused '<VirtualHost 127.0.0.1:1>' '<BFFEndpoint GET /x>' \
    'BFFBackend a GET https://127.0.0.1:1/x' '</BFFEndpoint>' '</VirtualHost>'
refused 'BFFHTTPClient curl'
refused 'BFFUpstream users https://127.0.0.1:1'
# and plain http still works
printf '%s\n' "ServerRoot $tmp" "ServerName localhost" "$mpm" "Listen 127.0.0.1:1" \
    "ErrorLog $tmp/error_log" \
    "LoadModule bff_module $src/.libs/mod_bff.so" \
    '<BFFEndpoint GET /x>' 'BFFBackend a GET http://127.0.0.1:1/x' \
    '</BFFEndpoint>' > "$tmp/t.conf"
"$HTTPD" -t -f "$tmp/t.conf" >/dev/null 2>&1 \
    || fail "configtest of an http:// backend --without-curl: $("$HTTPD" -t -f "$tmp/t.conf" 2>&1)"
echo "configure (no -Werror by default), --without-curl --without-microhttpd: OK"
