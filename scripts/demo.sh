#!/bin/sh
# Starts the mod_bff demo on this machine: builds the module, starts the
# three demo services (127.0.0.1:8001-8003), Redis on 127.0.0.1:6379 when
# redis-server is installed, and an httpd of its own on 127.0.0.1:8000
# (ServerRoot, PidFile and logs under run/; the system apache is never
# touched). Then: curl http://127.0.0.1:8000/api/profile/1
#
#   scripts/demo.sh          start (stops a previous demo first)
#   scripts/demo.sh stop     stop everything it started, by PID
#   scripts/demo.sh status
set -eu
cd "$(dirname "$0")/.."
top=$PWD
run=$top/run
APXS=${APXS:-$(command -v apxs2 || command -v apxs || echo /usr/bin/apxs)}

stop_pidfile() {
    f=$1
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    rm -f "$f"
}

stop_all() {
    stop_pidfile "$run/httpd.pid"
    for s in user order product; do stop_pidfile "$run/$s.pid"; done
    stop_pidfile "$run/redis.pid"
}

wait_port() {
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$1/$2"; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "demo: nothing answers on 127.0.0.1:$1" >&2; return 1; }
        sleep 0.1
    done
}

case "${1:-start}" in
stop)
    stop_all
    echo "demo stopped"
    exit 0
    ;;
status)
    for f in "$run"/*.pid; do
        [ -f "$f" ] || continue
        if kill -0 "$(cat "$f")" 2>/dev/null; then s=running; else s=dead; fi
        echo "$(basename "$f" .pid): $s (pid $(cat "$f"))"
    done
    exit 0
    ;;
start) ;;
*) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

scripts/deps.sh
scripts/build.sh
stop_all
mkdir -p "$run"

for spec in user:8001 order:8002 product:8003; do
    role=${spec%%:*}
    port=${spec##*:}
    services/bff-demo-service --role "$role" --port "$port" \
        --data "$top/services/fixtures" --pidfile "$run/$role.pid" \
        --log "$run/$role.log" >>"$run/services.out" 2>&1 &
done
for port in 8001 8002 8003; do wait_port $port health; done

cache_store=shmcb
events=""
if command -v redis-server >/dev/null 2>&1; then
    if redis-server --bind 127.0.0.1 --port 6379 --daemonize yes \
        --pidfile "$run/redis.pid" --dir "$run" --save '' --appendonly no \
        --logfile "$run/redis.log"; then
        cache_store=redis://127.0.0.1:6379/0
        events=1
    else
        echo "demo: redis-server did not start: caching in shared memory" >&2
    fi
else
    echo "demo: redis-server not installed: caching in shared memory" >&2
fi

httpd=$("$APXS" -q SBINDIR)/$("$APXS" -q TARGET)
set -- -C "Define BFF_RUN_DIR $run" -C "Define BFF_MODULE $top/.libs/mod_bff.so" \
       -C "Define BFF_CONF_DIR $top/conf" -C "Define BFF_LISTEN 127.0.0.1:8000" \
       -C "Define BFF_CACHE_STORE $cache_store"
if [ -n "$events" ]; then
    set -- "$@" -C "Define BFF_EVENTS_REDIS redis://127.0.0.1:6379/0"
fi
if [ "$(id -u)" = 0 ]; then
    set -- "$@" -C "Define BFF_USER nobody" -C "Define BFF_GROUP nogroup"
fi
# the environment the README recommends for a gateway (glibc's tcache)
. "$top/conf/bff-envvars"
"$httpd" -f "$top/conf/demo-httpd.conf" "$@" -k start
wait_port 8000 api/profile/1

echo "mod_bff demo running: curl http://127.0.0.1:8000/api/profile/1"
echo "cached ($cache_store): curl -i http://127.0.0.1:8000/api/cached/profile/1"
echo "logs: $run/error.log $run/access.log (JSON); stop: scripts/demo.sh stop"
[ -n "$events" ] && echo "analytics events: redis-cli XRANGE bff:events - +"
exit 0
