#!/bin/sh
# Checks the docker/ stack as far as a machine without a Docker engine can:
# promtool on the Prometheus configuration and alert rules, YAML and JSON
# syntax, the links between the files (service names, ports, paths, the
# /metrics location, the data source uid), the dashboard's metric names
# against what SetHandler bff-metrics serves, and that docker/Dockerfile
# builds with the steps of README.md "Building by hand" and the packages
# of scripts/deps.sh. Run by scripts/test.sh. Needs promtool (Debian
# package prometheus) and python3-yaml (scripts/deps.sh installs both).
set -eu
cd "$(dirname "$0")/.."

promtool check config docker/prometheus/prometheus.yml
promtool check rules docker/prometheus/alerts.yml

python3 - <<'EOF'
import fnmatch, json, os, re, subprocess, sys
import yaml

errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)

D = "docker"
compose = load_yaml(f"{D}/docker-compose.yml")
prom = load_yaml(f"{D}/prometheus/prometheus.yml")
alerts = load_yaml(f"{D}/prometheus/alerts.yml")
dsprov = load_yaml(f"{D}/grafana/provisioning/datasources/prometheus.yml")
dbprov = load_yaml(f"{D}/grafana/provisioning/dashboards/mod_bff.yml")
with open(f"{D}/grafana/dashboards/mod_bff.json") as f:
    dash = json.load(f)
gateway_conf = open(f"{D}/gateway.conf").read()
# with the shipped conf/ files it includes (BFF_CONF_DIR is conf/ there)
gateway_conf += "".join(open(os.path.join("conf", f)).read() for f in
                        re.findall(r'^Include "\$\{BFF_CONF_DIR\}/([^"]+)"', gateway_conf, re.M))
dockerfile = open(f"{D}/Dockerfile").read()
readme = open("README.md").read()
deps = open("scripts/deps.sh").read()
build = open("scripts/build.sh").read()
profile = open("conf/bff-profile.conf").read()

# ---- compose: the services, their images, paths and ports
svcs = compose.get("services", {})
want = {"gateway", "user-service", "order-service", "product-service", "redis",
        "prometheus", "grafana"}
check(set(svcs) == want, f"compose services {sorted(svcs)} != {sorted(want)}")
gw = svcs.get("gateway", {})
check(gw.get("build", {}).get("dockerfile") == "docker/Dockerfile"
      and os.path.normpath(os.path.join(D, gw.get("build", {}).get("context", ""))) == ".",
      "gateway must build docker/Dockerfile from the repository root")
for name, s in svcs.items():
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        check(os.path.exists(os.path.join(D, src)), f"{name}: volume source {src} missing")
ports = {}
for role in ("user", "order", "product"):
    s = svcs.get(f"{role}-service", {})
    cmd = s.get("command", [])
    check(s.get("network_mode") == "service:gateway",
          f"{role}-service must share the gateway's network (loopback-only service)")
    check(s.get("image") == gw.get("image"), f"{role}-service must run the gateway image")
    check("--role" in cmd and cmd[cmd.index("--role") + 1] == role, f"{role}-service role")
    if "--port" in cmd:
        ports[role] = cmd[cmd.index("--port") + 1]
    m = re.search(r"Define BFF_%s_SERVICE http://127\.0\.0\.1:(\d+)" % role.upper(), profile)
    check(m and ports.get(role) == m.group(1),
          f"{role}-service port {ports.get(role)} != conf/bff-profile.conf's")
listen = re.search(r"^Listen\s+\S*:(\d+)", gateway_conf, re.M)
check(listen is not None, "gateway.conf: no Listen")

# ---- Prometheus scrapes the bff-metrics location of the gateway
loc = re.search(r"<Location\s+(\S+)>\s*\n\s*SetHandler\s+bff-metrics\b", gateway_conf)
check(loc is not None, "gateway.conf: no <Location> with SetHandler bff-metrics")
jobs = prom.get("scrape_configs", [])
job = next((j for j in jobs if j.get("job_name") == "mod_bff"), None)
check(job is not None, "prometheus.yml: no mod_bff job")
if job and loc and listen:
    check(job.get("metrics_path", "/metrics") == loc.group(1),
          f"metrics_path {job.get('metrics_path')} != gateway <Location {loc.group(1)}>")
    targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    check(f"gateway:{listen.group(1)}" in targets, f"targets {targets} miss gateway:{listen.group(1)}")
check(any(v.endswith("/alerts.yml") for v in [x.split(":")[1] for x in svcs["prometheus"]["volumes"]])
      and "alerts.yml" in prom.get("rule_files", []), "alert rules not mounted / referenced")

# ---- Grafana: the provisioned data source is the one the dashboard uses
ds = dsprov["datasources"][0]
check(ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090",
      "data source must point at the prometheus service")
gvols = {v.split(":")[1]: v.split(":")[0] for v in svcs["grafana"]["volumes"]}
check(gvols.get(dbprov["providers"][0]["options"]["path"]) == "./grafana/dashboards",
      "dashboard provider path must be the mounted dashboards folder")

# ---- the dashboard: metric names the metrics handler serves
counters = {"bff_http_requests_total", "bff_backend_requests_total", "bff_service_errors_total",
            "bff_cache_hits_total", "bff_cache_misses_total", "bff_cache_stale_total",
            "bff_cache_fallback_total", "bff_ratelimit_rejections_total", "bff_auth_failures_total",
            "bff_breaker_transitions_total"}
gauges = {"bff_http_active_requests", "bff_breaker_state", "bff_redis_up",
          "bff_redis_pool_connections"}
counters.add("bff_metrics_series_dropped_total")
hists = {"bff_http_request_duration_seconds", "bff_aggregation_duration_seconds",
         "bff_backend_request_duration_seconds"}
allowed = counters | gauges | {h + s for h in hists for s in ("_bucket", "_sum", "_count")}
exprs = []
ids = set()
for p in dash["panels"]:
    check(p["id"] not in ids, f"duplicate panel id {p['id']}")
    ids.add(p["id"])
    check(p.get("datasource", {}).get("uid") == ds["uid"], f"panel {p['title']}: data source uid")
    check(p.get("targets"), f"panel {p['title']}: no query")
    for t in p.get("targets", []):
        exprs.append((p["title"], t["expr"]))
for r in alerts["groups"][0]["rules"]:
    exprs.append((r["alert"], r["expr"]))
for title, e in exprs:
    for m in re.findall(r"\bbff_[a-z_]+", e):
        check(m in allowed, f"{title}: unknown metric {m}")
alltext = " ".join(e for _, e in exprs)
for need, what in ((r"rate\(bff_http_requests_total", "request rate"),
                   (r"histogram_quantile\(0\.9\d?, sum by \(le\) \(rate\(bff_http_request_duration_seconds_bucket", "latency percentiles"),
                   (r"bff_cache_hits_total.*bff_cache_misses_total", "cache hit ratio"),
                   (r"bff_service_errors_total", "backend errors"),
                   (r"bff_breaker_state", "breaker state")):
    check(re.search(need, alltext), f"dashboard lacks {what}")

# ---- Dockerfile: the README's build steps, scripts/deps.sh's packages
m = re.search(r"## Building by hand\n\n((?:    .*\n)+)", readme)
check(m is not None, "README: no 'Building by hand' block")
if m:
    steps = [re.sub(r"\s+#.*$", "", l.strip()) for l in m.group(1).splitlines()]
    first = steps[0]
    check(re.search(r"^RUN " + re.escape(first) + r"$", dockerfile, re.M),
          f"Dockerfile lacks 'RUN {first}' (README.md Building by hand)")
    check(any(s == "make install" for s in steps)
          and re.search(r"^RUN make install( DESTDIR=\S+)?$", dockerfile, re.M),
          "Dockerfile must install with make install like the README")
    check("--with-apxs=" in first and '"--with-apxs=$APXS' in build,
          "README and scripts/build.sh must both configure --with-apxs")
check(re.search(r"^RUN scripts/deps\.sh --build\b", dockerfile, re.M),
      "Dockerfile must install its build packages with scripts/deps.sh --build")
bm = re.search(r'BUILD_PKGS="([^"]*)"', deps)
build_pkgs = set(bm.group(1).split()) if bm else set()
for p in re.findall(r"\b(apache2-dev|lib[a-z0-9.+-]+-dev|check)\b",
                    readme[readme.find("## Building by hand"):readme.find("## Tests")]):
    check(p in build_pkgs, f"README names {p}, scripts/deps.sh --build does not install it")
runtime = {"libjansson-dev": "libjansson4", "libcurl4-openssl-dev": "libcurl4",
           "libhiredis-dev": "libhiredis0.14", "libjwt-dev": "libjwt0",
           "libmicrohttpd-dev": "libmicrohttpd12"}
final = dockerfile[dockerfile.rfind("\nFROM "):]
for dev, lib in runtime.items():
    check(dev in build_pkgs, f"{dev} not in BUILD_PKGS")
    check(re.search(r"\b%s\b" % re.escape(lib), final), f"runtime stage lacks {lib} (for {dev})")
    try:
        out = subprocess.run(["apt-cache", "depends", dev], capture_output=True, text=True).stdout
        if out:
            check(re.search(r"Depends: %s\b" % re.escape(lib), out),
                  f"{dev} no longer depends on {lib}: update the Dockerfile")
    except FileNotFoundError:
        pass
for src in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M):
    check(os.path.exists(src), f"Dockerfile copies {src}, which does not exist")

# ---- .dockerignore keeps every tracked source file in the build context
pats = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
def ignored(path):
    out = False
    for p in pats:
        neg = p.startswith("!")
        q = p[1:] if neg else p
        q = q.lstrip("/")
        hit = fnmatch.fnmatch(path, q) or fnmatch.fnmatch(path, q + "/*") \
            or (q.startswith("**/") and (fnmatch.fnmatch(path, q[3:]) or fnmatch.fnmatch(os.path.basename(path), q[3:])))
        if hit:
            out = not neg
    return out
tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True).stdout.split()
for f in tracked:
    check(not ignored(f), f".dockerignore excludes the source file {f}")
check(len(tracked) > 50, "git ls-files found no sources")

if errors:
    for e in errors:
        print("check-docker: " + e, file=sys.stderr)
    sys.exit(1)
print(f"docker/: compose ({len(svcs)} services), prometheus, grafana "
      f"({len(dash['panels'])} panels, {len(exprs)} queries), Dockerfile vs README: OK")
EOF
