#!/bin/sh
# Builds mod_bff, the demo services and the unit tests in the source tree
# (autotools + apxs), in maintainer mode (warnings are errors). Extra
# arguments go to configure, e.g.
#   scripts/build.sh --enable-sanitizers
set -eu
cd "$(dirname "$0")/.."

APXS=${APXS:-$(command -v apxs2 || command -v apxs || echo /usr/bin/apxs)}
want="--with-apxs=$APXS --enable-maintainer-mode $*"
if [ ! -f configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    autoreconf -fi
fi
# reconfigure when the options changed since the last build
if [ ! -f Makefile ] || [ "$(cat .configure-args 2>/dev/null)" != "$want" ]; then
    # objects built with other flags (e.g. without the sanitizers) would
    # be kept by make: the flags are not among their dependencies
    if [ -f Makefile ]; then
        make -s clean >/dev/null 2>&1 || true
    fi
    # shellcheck disable=SC2086
    ./configure -q $want
    echo "$want" > .configure-args
fi
make -j"$(nproc)" all
make -j"$(nproc)" t/unit/check_core t/unit/check_engine t/unit/check_h1 t/unit/check_auth t/unit/check_cache t/unit/check_obs t/unit/check_metrics t/unit/check_present t/unit/check_resilience t/unit/check_schema t/unit/check_cors t/unit/check_tls t/unit/check_sse
