# Shared by the bench scripts (bench/run.sh, run-auth.sh, run-clients.sh,
# run-concurrency.sh); sourced, bash. They set top; the single-httpd ones
# also run (a 755 work directory), AUX_CPUS, and svc=() for the PIDs to
# stop on exit.

# A writable copy of ../shared/bench-peers (its node peer needs `npm ci`)
# in $BFF_BENCH_WORK, set up once: `run.sh setup` installs its packages.
harness_setup() {
    local src=${BENCH_PEERS:-$top/../shared/bench-peers}
    export BFF_BENCH_WORK=${BFF_BENCH_WORK:-/tmp/bff-bench-peers}
    [[ -x $src/run.sh ]] || { echo "bench: no harness at $src (set BENCH_PEERS)" >&2; exit 1; }
    if [[ ! -f $BFF_BENCH_WORK/.setup-done ]] || ! diff -rq -x node_modules -x results -x .setup-done \
            "$src" "$BFF_BENCH_WORK" >/dev/null 2>&1; then
        rm -rf "$BFF_BENCH_WORK"
        mkdir -p "$BFF_BENCH_WORK"
        cp -r "$src"/. "$BFF_BENCH_WORK"/
        chmod -R u+w "$BFF_BENCH_WORK"
        (cd "$BFF_BENCH_WORK" && ./run.sh setup)
        touch "$BFF_BENCH_WORK/.setup-done"
    fi
}

# The harness in serve mode (its backends on 127.0.0.1:8001-8003 and its
# peers on :9001-9004, the mod_bff slot empty), in the background, its
# output in $1; harness_serve_stop stops it and every server it started.
harness_pid=
harness_serve_start() {
    (cd "$BFF_BENCH_WORK" && MODBFF_URL=http://127.0.0.1:1/ SERVE_SECONDS=86400 \
        GW_CPUS=${GW_CPUS:-0} AUX_CPUS=${AUX_CPUS:-1} exec ./run.sh serve) >"$1" 2>&1 &
    harness_pid=$!
    for _ in $(seq 600); do
        grep -q 'serving for' "$1" && return 0
        kill -0 "$harness_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$1" >&2
    exit 1
}
harness_serve_stop() {
    if [[ -n $harness_pid ]] && kill -0 "$harness_pid" 2>/dev/null; then
        # it waits in `sleep`: ending that lets its EXIT trap stop every
        # server it started, by PID
        pkill -TERM -P "$harness_pid" -x sleep || true
        wait "$harness_pid" 2>/dev/null || true
    fi
    harness_pid=
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The three demo services on free ports, on $AUX_CPUS: url[user|order|
# product] get their base URLs, svc their PIDs.
declare -A url
start_demo_services() {
    local role p
    for role in user order product; do
        p=$(free_port)
        taskset -c "$AUX_CPUS" "$top/services/bff-demo-service" --role $role --port "$p" \
            --data "$top/services/fixtures" --threads 2 2>>"$run/services.log" &
        svc+=($!)
        url[$role]=http://127.0.0.1:$p
    done
}

# The User/Group the bench httpd's children run as.
export_httpd_user() {
    if [[ $(id -u) == 0 ]]; then export BFFB_USER=www-data BFFB_GROUP=www-data; else
        export BFFB_USER=$(id -un) BFFB_GROUP=$(id -gn); fi
}

# utime + stime ticks of every httpd process started with config $1
gw_ticks() {
    local t=0 p
    for p in $(pgrep -f "$1"); do
        t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
    done
    echo $t
}

# wrk_measure CONF URL [wrk args]: a warm-up, then a measured wrk run
# (-t1 -c$CONNS on $AUX_CPUS, $WARMUP and $DURATION seconds); sets
# m_rps, m_p50, m_p99 and m_us (gateway CPU per request, from the ticks of
# the httpd processes of CONF). Non-2xx answers are reported on stderr.
# A script may define measure_begin / measure_end (e.g. to profile a row):
# they run right around the measured wrk run.
wrk_measure() {
    local conf=$1 u=$2 out t0 t1 n
    shift 2
    taskset -c "$AUX_CPUS" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$@" "$u" >/dev/null
    t0=$(gw_ticks "$conf")
    ! declare -F measure_begin >/dev/null || measure_begin
    out=$(taskset -c "$AUX_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$u")
    ! declare -F measure_end >/dev/null || measure_end
    t1=$(gw_ticks "$conf")
    ! grep -q Non-2xx <<<"$out" || echo "$u: $(grep Non-2xx <<<"$out")" >&2
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    m_rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    m_p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    m_p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    m_us=$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l)
}
