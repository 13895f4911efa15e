/*
 * mod_bff: resilience. Circuit breakers, retries with backoff and a retry
 * budget, load balancing over the instances of an upstream, an active
 * health probe and the health handler.
 *
 * The engine (lib/bff_engine.c) asks a policy before and after every
 * backend call (bff_policy_t); this file implements it over one table of
 * slots in shared memory, one per breaker key (a backend host, or a
 * backend of an endpoint), updated under a global mutex: every child sees
 * the same breakers. The table belongs to httpd's parent process
 * (bff_shm_retained), so a graceful restart keeps it. (Not mod_slotmem_shm:
 * it gives a generation's table to the next one only through a file, and
 * its pool cleanup crashed the parent on graceful restart here.) The state machine and the retry arithmetic are pure
 * logic in lib/bff_breaker.c and lib/bff_retry.c.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_provider.h"
#include "apr_shm.h"
#include "ap_mpm.h"
#include "util_mutex.h"
#include "mod_watchdog.h"

#include "apr_strings.h"
#include "apr_hash.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#include "mod_bff.h"
#include "mod_bff_shared.h"
#include "mod_bff_cache.h"
#include "mod_bff_resilience.h"
#include "bff_breaker.h"
#include "bff_cache.h"
#include "bff_retry.h"
#include "bff_opts.h"

APLOG_USE_MODULE(bff);

#define MUTEX_TYPE   "bff-breaker"
#define SLOTS_NAME   "bff-breakers"
#define KEY_MAX      160
#define DEFAULT_SLOTS 256
#define RETAINED_KEY "mod_bff-resilience"


#define LB_ROUND_ROBIN 1
#define LB_LEAST       2

/* ------------------------------------------------------------ config -- */

/* BFFBreaker / BFFRetry: at server level (the default of its endpoints) or
 * inside <BFFEndpoint>; a part left unset is taken from the server. */
struct bff_res_conf_t {
    int breaker_set;             /* 0: inherit */
    int breaker_on;
    int scope;                   /* SCOPE_* */
    bff_brk_conf_t brk;
    int retry_set;
    bff_retry_conf_t retry;
    /* server level only */
    apr_array_header_t *upstreams;   /* upstream_t * */
    long probe_ms;                   /* 0: no active probe; -1 unset */
    long probe_timeout_ms;
    const char *probe_path;
    int slots;                       /* 0: unset */
};

typedef struct {
    const char *name;
    apr_array_header_t *instances;   /* const char * "http://host:port" */
    int lb;
    apr_uint32_t rr;                 /* per child round-robin position */
} upstream_t;

bff_res_conf_t *bff_res_conf_create(apr_pool_t *p)
{
    bff_res_conf_t *c = apr_pcalloc(p, sizeof(*c));

    bff_brk_conf_default(&c->brk);
    bff_retry_conf_default(&c->retry);
    c->scope = BFF_BRK_SCOPE_HOST;
    c->probe_ms = -1;
    c->upstreams = apr_array_make(p, 2, sizeof(upstream_t *));
    return c;
}

bff_res_conf_t *bff_res_conf_merge(apr_pool_t *p, const bff_res_conf_t *base,
                                   const bff_res_conf_t *add)
{
    bff_res_conf_t *c = apr_pmemdup(p, add, sizeof(*c));

    if (!add->breaker_set) {
        c->breaker_set = base->breaker_set;
        c->breaker_on = base->breaker_on;
        c->scope = base->scope;
        c->brk = base->brk;
    }
    if (!add->retry_set) {
        c->retry_set = base->retry_set;
        c->retry = base->retry;
    }
    c->upstreams = apr_array_append(p, base->upstreams, add->upstreams);
    c->probe_ms = add->probe_ms != -1 ? add->probe_ms : base->probe_ms;
    c->probe_timeout_ms = add->probe_timeout_ms ? add->probe_timeout_ms
                                                : base->probe_timeout_ms;
    c->probe_path = add->probe_path ? add->probe_path : base->probe_path;
    c->slots = add->slots ? add->slots : base->slots;
    return c;
}

static bff_res_conf_t *conf_for(cmd_parms *cmd, void *dcv)
{
    bff_dir_conf_t *dc = dcv;

    if (dc && dc->epc) {
        if (!dc->epc->res) {
            dc->epc->res = apr_pcalloc(cmd->pool, sizeof(bff_res_conf_t));
            bff_brk_conf_default(&dc->epc->res->brk);
            bff_retry_conf_default(&dc->epc->res->retry);
            dc->epc->res->scope = BFF_BRK_SCOPE_HOST;
        }
        return dc->epc->res;
    }
    return ((bff_server_conf_t *)ap_get_module_config(
                cmd->server->module_config, &bff_module))->res;
}

const char *bff_res_cmd_breaker(cmd_parms *cmd, void *dcv, const char *args)
{
    bff_res_conf_t *c = conf_for(cmd, dcv);
    bff_brk_conf_t brk;
    const char *w, *err;
    int on;

    w = ap_getword_conf(cmd->temp_pool, &args);
    if (!strcasecmp(w, "on")) {
        on = 1;
    }
    else if (!strcasecmp(w, "off")) {
        on = 0;
    }
    else {
        return "BFFBreaker takes on or off, then options: BFFBreaker on "
               "failure-rate=50 min-calls=10 window=20 consecutive=5 slow=2s "
               "open=30s half-open=3 scope=host|backend";
    }
    bff_brk_conf_default(&brk);
    while (*(w = ap_getword_conf(cmd->temp_pool, &args))) {
        if ((err = bff_brk_conf_option(&brk, w, cmd->temp_pool)) != NULL) {
            return apr_psprintf(cmd->pool, "BFFBreaker: %s", err);
        }
    }
    if ((err = bff_brk_conf_check(&brk, cmd->temp_pool)) != NULL) {
        return apr_psprintf(cmd->pool, "BFFBreaker: %s", err);
    }
    c->breaker_set = 1;
    c->breaker_on = on;
    c->scope = brk.scope;
    c->brk = brk;
    return NULL;
}

const char *bff_res_cmd_retry(cmd_parms *cmd, void *dcv, const char *args)
{
    bff_res_conf_t *c = conf_for(cmd, dcv);
    bff_retry_conf_t rc;
    const char *w, *err;

    bff_retry_conf_default(&rc);
    w = ap_getword_conf(cmd->temp_pool, &args);
    if (!*w) {
        return "BFFRetry takes off or options: BFFRetry attempts=3 "
               "backoff=50ms max-backoff=1s statuses=502,503,504 unsafe=off "
               "budget=20 budget-min=10";
    }
    if (strcasecmp(w, "off")) {
        do {
            if ((err = bff_retry_conf_option(&rc, w, cmd->temp_pool)) != NULL) {
                return apr_psprintf(cmd->pool, "BFFRetry: %s", err);
            }
        } while (*(w = ap_getword_conf(cmd->temp_pool, &args)));
        if (rc.max_ms < rc.base_ms) {
            return "BFFRetry: max-backoff is shorter than backoff";
        }
    }
    c->retry_set = 1;
    c->retry = rc;
    return NULL;
}

static const char *opt_lb(void *target, const char *v, apr_pool_t *p)
{
    upstream_t *u = target;

    if (!strcmp(v, "round-robin")) {
        u->lb = LB_ROUND_ROBIN;
    }
    else if (!strcmp(v, "least-outstanding")) {
        u->lb = LB_LEAST;
    }
    else {
        return "expected lb=round-robin or lb=least-outstanding";
    }
    return NULL;
}

static const bff_opt_t upstream_opts[] = {
    BFF_OPT_CALL("lb", opt_lb),
    BFF_OPT_END
};

const char *bff_res_cmd_upstream(cmd_parms *cmd, void *dcv, const char *args)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    bff_res_conf_t *c = conf_for(cmd, NULL);
    upstream_t *u;
    const char *w;
    int i;

    if (err) {
        return err;
    }
    u = apr_pcalloc(cmd->pool, sizeof(*u));
    u->name = ap_getword_conf(cmd->pool, &args);
    u->lb = LB_ROUND_ROBIN;
    u->instances = apr_array_make(cmd->pool, 4, sizeof(const char *));
    if (!*u->name || strchr(u->name, ':') || strchr(u->name, '/')) {
        return "BFFUpstream takes a name (a host name in backend URLs: "
               "http://NAME/path), then instance base URLs: BFFUpstream users "
               "http://10.0.0.1:8001 http://10.0.0.2:8001 [lb=round-robin|"
               "least-outstanding]";
    }
    while (*(w = ap_getword_conf(cmd->pool, &args))) {
        const char *o;
        if (!strstr(w, "://")) {
            if ((err = bff_opt_parse(upstream_opts, u, w, cmd->pool))) {
                return apr_psprintf(cmd->pool, "BFFUpstream %s: %s", u->name,
                                    err);
            }
            continue;
        }
        o = bff_url_origin(w, cmd->pool);
        if (!o || strcmp(o, w) || (strncmp(w, "http://", 7)
                                   && strncmp(w, "https://", 8))) {
            return apr_psprintf(cmd->pool, "BFFUpstream %s: '%s' is not a "
                                "base URL (http://host:port, no path)",
                                u->name, w);
        }
        if (!strncmp(w, "https://", 8)
            && (err = bff_need_curl(cmd, "an https:// instance"))) {
            return apr_psprintf(cmd->pool, "BFFUpstream %s: %s", u->name, err);
        }
        APR_ARRAY_PUSH(u->instances, const char *) = w;
    }
    if (!u->instances->nelts) {
        return apr_psprintf(cmd->pool, "BFFUpstream %s: no instance", u->name);
    }
    for (i = 0; i < c->upstreams->nelts; i++) {
        if (!strcasecmp(APR_ARRAY_IDX(c->upstreams, i, upstream_t *)->name,
                        u->name)) {
            return apr_psprintf(cmd->pool, "BFFUpstream %s is defined twice",
                                u->name);
        }
    }
    APR_ARRAY_PUSH(c->upstreams, upstream_t *) = u;
    return NULL;
}

static const char *opt_probe_path(void *target, const char *v, apr_pool_t *p)
{
    bff_res_conf_t *c = target;

    if (*v != '/') {
        return "expected a path starting with /";
    }
    c->probe_path = v;
    return NULL;
}

static const bff_opt_t probe_opts[] = {
    BFF_OPT_NUM("interval", BFF_OPT_MS, bff_res_conf_t, probe_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_CALL("path", opt_probe_path),
    BFF_OPT_NUM("timeout", BFF_OPT_MS, bff_res_conf_t, probe_timeout_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_END
};

const char *bff_res_cmd_probe(cmd_parms *cmd, void *dcv, const char *args)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    bff_res_conf_t *c = conf_for(cmd, NULL);
    const char *w;

    if (err) {
        return err;
    }
    c->probe_ms = 0;
    w = ap_getword_conf(cmd->pool, &args);
    if (!strcasecmp(w, "off") && !*args) {
        return NULL;
    }
    for (; *w; w = ap_getword_conf(cmd->pool, &args)) {
        if ((err = bff_opt_parse(probe_opts, c, w, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFHealthProbe: %s", err);
        }
    }
    if (!c->probe_ms) {
        return "BFFHealthProbe needs interval=DURATION (or off)";
    }
    return NULL;
}

const char *bff_res_cmd_slots(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int n;

    if (!err && (err = bff_parse_int(&n, arg, 1, 100000, cmd->temp_pool))) {
        err = apr_pstrcat(cmd->pool, "BFFBreakerSlots: ", err, NULL);
    }
    if (!err) {
        conf_for(cmd, NULL)->slots = n;
    }
    return err;
}

/* ------------------------------------------------------ shared state -- */

/* One breaker key in shared memory. key[0] == 0: free. */
typedef struct {
    char key[KEY_MAX];
    apr_uint32_t required;       /* a required backend calls it */
    apr_uint32_t outstanding;    /* calls in flight, all children */
    apr_uint32_t last_status;    /* last call: HTTP status (0: none) */
    apr_uint32_t last_ok;
    apr_time_t last_at;
    char last_reason[48];
    apr_uint32_t probe;          /* 0 unknown, 1 up, 2 down */
    apr_uint32_t has_breaker;    /* a breaker is configured for it */
    apr_time_t probe_at;
    apr_time_t probe_lease;      /* slot 0 only: next probe round */
    bff_brk_t brk;
    bff_retry_budget_t budget;
} slot_t;

/* What outlives a configuration generation (ap_retained_data); the
 * table itself is bff_shm_retained's. */
typedef struct {
    apr_global_mutex_t *mutex;
} retained_t;

static retained_t *ret;
static slot_t *slots;             /* the table; NULL: no breakers */
static unsigned int nslots;
static apr_global_mutex_t *gmutex;
static bff_res_conf_t *gconf;     /* the main server's */
static server_rec *main_server;
static apr_hash_t *key_cache;     /* per child: key -> slot_t * */
static apr_thread_mutex_t *cache_mutex;
static int table_full_logged;

static int glock(void)
{
    return !gmutex || apr_global_mutex_lock(gmutex) == APR_SUCCESS;
}

static void gunlock(void)
{
    if (gmutex) {
        apr_global_mutex_unlock(gmutex);
    }
}

/* The slot of key (claimed when new), under the global mutex. Slot 0
 * holds the probe lease, never a key. */
static slot_t *slot_find_locked(const char *key, int claim)
{
    unsigned int i;
    slot_t *free_slot = NULL;

    for (i = 1; i < nslots; i++) {
        if (!slots[i].key[0]) {
            if (!free_slot) {
                free_slot = &slots[i];
            }
            continue;
        }
        if (!strncmp(slots[i].key, key, KEY_MAX - 1)) {
            return &slots[i];
        }
    }
    if (free_slot && claim) {
        memset(free_slot, 0, sizeof(*free_slot));
        apr_cpystrn(free_slot->key, key, KEY_MAX);
    }
    return claim ? free_slot : NULL;
}

static slot_t *slot_get(const char *key)
{
    slot_t *s = NULL;

    if (!slots) {
        return NULL;
    }
    if (cache_mutex) {
        apr_thread_mutex_lock(cache_mutex);
    }
    if (key_cache) {
        s = apr_hash_get(key_cache, key, APR_HASH_KEY_STRING);
    }
    if (!s && glock()) {
        s = slot_find_locked(key, 1);
        gunlock();
        if (s && key_cache) {
            apr_pool_t *hp = apr_hash_pool_get(key_cache);
            apr_hash_set(key_cache, apr_pstrdup(hp, key), APR_HASH_KEY_STRING, s);
        }
        else if (!s && !table_full_logged) {
            table_full_logged = 1;
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, main_server, BFFLOGNO(200)
                         "the breaker table is full (%u keys, BFFBreakerSlots):"
                         " '%s' and later keys have no breaker", nslots - 1, key);
        }
    }
    if (cache_mutex) {
        apr_thread_mutex_unlock(cache_mutex);
    }
    return s;
}

static void log_transition(const slot_t *s, int from, int to, const char *why)
{
    ap_log_error(APLOG_MARK, to == BFF_BRK_OPEN ? APLOG_WARNING : APLOG_NOTICE,
                 0, main_server, BFFLOGNO(201) "circuit breaker %s: %s -> %s%s%s",
                 s->key, bff_brk_state_str(from), bff_brk_state_str(to),
                 why ? ": " : "", why ? why : "");
}

/* ------------------------------------------------------------ policy -- */

typedef struct {
    request_rec *r;
    const bff_ep_conf_t *epc;
    const bff_res_conf_t *ep;     /* the endpoint's own settings, or NULL */
    const bff_res_conf_t *srv;
    bff_policy_t policy;
} pol_baton_t;

static const bff_res_conf_t *brk_conf(const pol_baton_t *pb)
{
    return pb->ep && pb->ep->breaker_set ? pb->ep : pb->srv;
}

static const bff_retry_conf_t *retry_conf(const pol_baton_t *pb)
{
    return pb->ep && pb->ep->retry_set ? &pb->ep->retry : &pb->srv->retry;
}

static const char *slot_key(const pol_baton_t *pb, const bff_backend_t *be,
                            const char *origin, apr_pool_t *p)
{
    if (brk_conf(pb)->scope == BFF_BRK_SCOPE_BACKEND) {
        return apr_psprintf(p, "%s %s %s", origin, pb->epc->ep->pattern,
                            be->name);
    }
    return origin;
}

int bff_res_url_tls(server_rec *s, const char *url)
{
    bff_res_conf_t *c = ((bff_server_conf_t *)ap_get_module_config(
                            s->module_config, &bff_module))->res;
    const char *host = strstr(url, "://");
    apr_size_t n;
    int i, j;

    if (!strncasecmp(url, "https://", 8)) {
        return 1;
    }
    if (!host) {
        return 0;
    }
    host += 3;
    n = strcspn(host, "/?#:");
    for (i = 0; i < c->upstreams->nelts; i++) {
        upstream_t *u = APR_ARRAY_IDX(c->upstreams, i, upstream_t *);
        if (strlen(u->name) != n || strncasecmp(u->name, host, n)) {
            continue;
        }
        for (j = 0; j < u->instances->nelts; j++) {
            if (!strncasecmp(APR_ARRAY_IDX(u->instances, j, const char *),
                             "https://", 8)) {
                return 1;
            }
        }
    }
    return 0;
}

static upstream_t *upstream_of(const char *origin)
{
    const char *host = strstr(origin, "://");
    int i;

    if (!gconf || !host) {
        return NULL;
    }
    host += 3;
    for (i = 0; i < gconf->upstreams->nelts; i++) {
        upstream_t *u = APR_ARRAY_IDX(gconf->upstreams, i, upstream_t *);
        if (!strcasecmp(u->name, host)) {
            return u;
        }
    }
    return NULL;
}

/* Is the breaker of s letting calls through (no state change)? */
static int slot_usable(const slot_t *s, const bff_brk_conf_t *c, apr_time_t now)
{
    apr_uint32_t st = __atomic_load_n(&s->brk.state, __ATOMIC_RELAXED);

    return st == BFF_BRK_CLOSED || st == BFF_BRK_HALF_OPEN
           || (st == BFF_BRK_OPEN && now >= s->brk.open_until);
}

/* Picks an instance of u for this call: the next in round-robin order, or
 * the one with the fewest calls in flight; instances whose breaker is open
 * are skipped while another one is usable. */
static const char *pick_instance(pol_baton_t *pb, const bff_backend_t *be,
                                 upstream_t *u, apr_pool_t *p)
{
    const bff_res_conf_t *bc = brk_conf(pb);
    int n = u->instances->nelts, i, best = -1;
    apr_uint32_t start = __atomic_fetch_add(&u->rr, 1, __ATOMIC_RELAXED);
    apr_uint32_t best_out = 0;
    apr_time_t now = apr_time_now();

    for (i = 0; i < n; i++) {
        int k = (int)((start + (apr_uint32_t)i) % (apr_uint32_t)n);
        const char *inst = APR_ARRAY_IDX(u->instances, k, const char *);
        slot_t *s = slot_get(slot_key(pb, be, inst, p));
        apr_uint32_t out;

        if (s && bc->breaker_on && !slot_usable(s, &bc->brk, now)) {
            continue;
        }
        if (u->lb == LB_ROUND_ROBIN) {
            return inst;
        }
        out = s ? __atomic_load_n(&s->outstanding, __ATOMIC_RELAXED) : 0;
        if (best < 0 || out < best_out) {
            best = k;
            best_out = out;
        }
    }
    if (best >= 0) {
        return APR_ARRAY_IDX(u->instances, best, const char *);
    }
    /* all open: the first one refuses the call */
    return APR_ARRAY_IDX(u->instances, start % (apr_uint32_t)n, const char *);
}

static const char *pol_admit(void *baton, const bff_backend_t *be, int attempt,
                             const char **url, void **token, apr_pool_t *p)
{
    pol_baton_t *pb = baton;
    const bff_res_conf_t *bc = brk_conf(pb);
    const char *origin = bff_url_origin(*url, p);
    upstream_t *u;
    slot_t *s;
    int ok = 1, from = -1, to = -1, deposit;
    apr_time_t now = apr_time_now();

    *token = NULL;
    if (!origin) {
        return NULL;
    }
    if ((u = upstream_of(origin)) != NULL) {
        const char *inst = pick_instance(pb, be, u, p);
        *url = apr_pstrcat(p, inst, *url + strlen(origin), NULL);
        origin = inst;
    }
    s = slot_get(slot_key(pb, be, origin, p));
    if (!s) {
        return NULL;
    }
    /* benign races: every writer writes 1 */
    if (be->required && !s->required) {
        s->required = 1;
    }
    if (bc->breaker_on && !s->has_breaker) {
        s->has_breaker = 1;
    }
    /* the lock only when there is something to change: a closed breaker
     * admits every call, and only retries use the budget */
    deposit = attempt == 1 && retry_conf(pb)->attempts > 1;
    if (bc->breaker_on) {
        apr_uint32_t st = __atomic_load_n(&s->brk.state, __ATOMIC_RELAXED);
        if ((st != BFF_BRK_CLOSED || deposit) && glock()) {
            ok = bff_brk_admit(&s->brk, &bc->brk, now, &from);
            to = (int)s->brk.state;
            if (ok && deposit) {
                bff_retry_budget_deposit(&s->budget, retry_conf(pb));
            }
            gunlock();
        }
        if (from >= 0) {
            log_transition(s, from, to, "open wait over");
        }
        if (!ok) {
            return "circuit open";
        }
    }
    else if (deposit && glock()) {
        bff_retry_budget_deposit(&s->budget, retry_conf(pb));
        gunlock();
    }
    __atomic_fetch_add(&s->outstanding, 1, __ATOMIC_RELAXED);
    *token = s;
    return NULL;
}

static void pol_report(void *baton, const bff_backend_t *be, void *token,
                       const bff_fetch_req_t *req, int cancelled)
{
    pol_baton_t *pb = baton;
    const bff_res_conf_t *bc = brk_conf(pb);
    slot_t *s = token;
    bff_brk_outcome_e o;
    int to = -1, from = -1;
    apr_time_t now = apr_time_now();
    const char *why;

    if (!s) {
        return;
    }
    __atomic_fetch_sub(&s->outstanding, 1, __ATOMIC_RELAXED);
    if (cancelled || req->err == BFF_FETCH_ETOOBIG
        || req->err == BFF_FETCH_EINTERNAL || req->err == BFF_FETCH_EABORTED
        || req->err == BFF_FETCH_EPOOL) {
        /* says nothing about the backend's health: the pool's bound is
         * the gateway's own */
        o = BFF_BRK_IGNORED;
    }
    else if (req->err != BFF_FETCH_OK || req->status >= 500) {
        o = BFF_BRK_FAILURE;
    }
    else {
        o = BFF_BRK_SUCCESS;
    }
    why = req->err != BFF_FETCH_OK ? bff_fetch_err_str(req->err)
          : apr_psprintf(pb->r->pool, "HTTP %d", req->status);
    if (o != BFF_BRK_IGNORED) {
        /* for display only: written without the lock (a reader may see
         * two calls' fields mixed; the snapshot terminates the string) */
        s->last_at = now;
        s->last_status = (apr_uint32_t)req->status;
        s->last_ok = o == BFF_BRK_SUCCESS;
        apr_cpystrn(s->last_reason, why, sizeof(s->last_reason));
    }
    if (!bc->breaker_on || !glock()) {
        return;
    }
    from = (int)s->brk.state;
    to = bff_brk_record(&s->brk, &bc->brk, now, o, req->elapsed);
    gunlock();
    if (to >= 0) {
        log_transition(s, from, to, to == BFF_BRK_OPEN
                       ? apr_psprintf(pb->r->pool, "last call %s%s", why,
                                      o == BFF_BRK_SUCCESS ? " (slow)" : "")
                       : NULL);
    }
}

static long pol_retry(void *baton, const bff_backend_t *be, void *token,
                      const bff_fetch_req_t *req, int attempt)
{
    pol_baton_t *pb = baton;
    const bff_retry_conf_t *rc = retry_conf(pb);
    const bff_res_conf_t *bc = brk_conf(pb);
    const char *origin;
    int transport, ok;
    slot_t *s;
    apr_uint32_t rnd;

    if (attempt >= rc->attempts) {
        return -1;
    }
    transport = req->err == BFF_FETCH_ECONNECT || req->err == BFF_FETCH_ETIMEOUT
                || req->err == BFF_FETCH_EPROTO;
    if (!transport && req->err != BFF_FETCH_OK) {
        return -1;
    }
    if (!bff_retry_retryable(rc, be->method, transport, req->status)) {
        return -1;
    }
    origin = bff_url_origin(req->url, pb->r->pool);
    s = origin ? slot_get(slot_key(pb, be, origin, pb->r->pool)) : NULL;
    if (s) {
        const char *tpl_origin = bff_url_origin(bff_tpl_text(be->url),
                                           pb->r->pool);
        /* its breaker just opened: a retry would only be refused (an
         * upstream's retry goes to another instance) */
        if (bc->breaker_on && !(tpl_origin && upstream_of(tpl_origin))
            && !slot_usable(s, &bc->brk, apr_time_now())) {
            return -1;
        }
        if (!glock()) {
            return -1;
        }
        ok = bff_retry_budget_take(&s->budget, rc);
        if (ok) {
            s->brk.n.retries++;
        }
        else {
            s->brk.n.budget_exhausted++;
        }
        gunlock();
        if (!ok) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, pb->r, BFFLOGNO(202)
                          "backend '%s': retry budget of %s exhausted",
                          be->name, s->key);
            return -1;
        }
    }
    bff_random_bytes((unsigned char *)&rnd, sizeof(rnd));
    return bff_retry_backoff_ms(rc, attempt + 1, rnd);
}

const bff_policy_t *bff_res_policy(request_rec *r, const bff_ep_conf_t *epc)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);
    pol_baton_t *pb;

    if (!slots) {
        return NULL;
    }
    pb = apr_pcalloc(r->pool, sizeof(*pb));
    pb->r = r;
    pb->epc = epc;
    pb->ep = epc->res;
    pb->srv = sc->res;
    if (!brk_conf(pb)->breaker_on && retry_conf(pb)->attempts < 2
        && !gconf->upstreams->nelts) {
        return NULL;
    }
    pb->policy.admit = pol_admit;
    pb->policy.report = pol_report;
    pb->policy.retry = pol_retry;
    pb->policy.baton = pb;
    return &pb->policy;
}

/* ---------------------------------------------------------- read API -- */

int bff_res_backends(bff_res_backend_fn *fn, void *baton, apr_pool_t *p)
{
    slot_t *copy;
    unsigned int i;
    int n = 0;

    if (!slots) {
        return 0;
    }
    /* a consistent snapshot, then no lock while the caller works */
    copy = apr_palloc(p, sizeof(slot_t) * nslots);
    if (!glock()) {
        return 0;
    }
    memcpy(copy, slots, sizeof(slot_t) * nslots);
    gunlock();
    for (i = 1; i < nslots; i++) {
        bff_res_backend_t b;
        slot_t *s = &copy[i];

        if (!s->key[0]) {
            continue;
        }
        s->key[KEY_MAX - 1] = '\0';
        s->last_reason[sizeof(s->last_reason) - 1] = '\0';
        b.key = s->key;
        b.state = (int)s->brk.state;
        b.breaker = (int)s->has_breaker;
        b.required = (int)s->required;
        b.probe = (int)s->probe;
        b.probe_at = s->probe_at;
        b.outstanding = s->outstanding;
        b.last_status = (int)s->last_status;
        b.last_ok = (int)s->last_ok;
        b.last_reason = s->last_reason[0] ? s->last_reason : NULL;
        b.last_at = s->last_at;
        b.open_until = s->brk.state == BFF_BRK_OPEN ? s->brk.open_until : 0;
        b.counters = s->brk.n;
        fn(baton, &b);
        n++;
    }
    return n;
}

/* The metrics' seam (mod_bff.h): every key that has a breaker, with its
 * state and transitions. */
static void snapshot_add(void *baton, const bff_res_backend_t *b)
{
    apr_array_header_t *all = baton;
    bff_breaker_info_t *i;

    if (!b->breaker && !b->counters.retries && !b->counters.budget_exhausted) {
        return;
    }
    i = &APR_ARRAY_PUSH(all, bff_breaker_info_t);
    i->backend = b->key;
    i->state = b->breaker ? bff_brk_state_str(b->state) : NULL;
    i->to_closed = b->counters.closed;
    i->to_half_open = b->counters.half_opened;
    i->to_open = b->counters.opened;
    i->refused = b->counters.refused;
    i->retries = b->counters.retries;
    i->budget_exhausted = b->counters.budget_exhausted;
}

static apr_array_header_t *bff_breaker_snapshot(apr_pool_t *p)
{
    apr_array_header_t *all = apr_array_make(p, 8, sizeof(bff_breaker_info_t));

    bff_res_backends(snapshot_add, all, p);
    return all;
}

/* ------------------------------------------------------------ health -- */

typedef struct {
    json_t *list;
    int unhealthy;
    apr_pool_t *p;
} health_t;

static json_t *time_json(apr_time_t t, apr_pool_t *p)
{
    char buf[APR_RFC822_DATE_LEN];

    if (!t) {
        return json_null();
    }
    apr_rfc822_date(buf, t);
    return json_string(buf);
}

static void health_add(void *baton, const bff_res_backend_t *b)
{
    static const char *const probe[] = { "unknown", "up", "down" };
    health_t *h = baton;
    const bff_brk_counters_t *n = &b->counters;
    json_t *j;
    int down = b->state == BFF_BRK_OPEN || b->probe == 2;

    if (down && b->required) {
        h->unhealthy = 1;
    }
    j = json_pack("{s:s, s:s, s:b, s:s, s:I}",
        "backend", b->key,
        "state", bff_brk_state_str(b->state),
        "required", b->required,
        "probe", probe[b->probe < 3 ? b->probe : 0],
        "in_flight", (json_int_t)b->outstanding);
    if (!j) {
        return;
    }
    json_object_set_new(j, "last", json_pack("{s:o, s:o, s:s?, s:o}",
        "ok", b->last_at ? json_boolean(b->last_ok) : json_null(),
        "status", b->last_status ? json_integer(b->last_status) : json_null(),
        "reason", b->last_reason,
        "at", time_json(b->last_at, h->p)));
    if (b->open_until) {
        json_object_set_new(j, "open_until", time_json(b->open_until, h->p));
    }
    json_object_set_new(j, "counters", json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "calls", (json_int_t)n->calls, "failures", (json_int_t)n->failures,
        "slow", (json_int_t)n->slow, "refused", (json_int_t)n->refused,
        "opened", (json_int_t)n->opened,
        "half_opened", (json_int_t)n->half_opened,
        "closed", (json_int_t)n->closed, "retries", (json_int_t)n->retries,
        "budget_exhausted", (json_int_t)n->budget_exhausted));
    json_array_append_new(h->list, j);
}

/* GET on a `SetHandler bff-health` location: each backend's breaker and
 * last call, the cache store; 200 while serving, 503 when a required
 * backend is unusable (breaker open, probe down) or the store is. */
static int health_handler(request_rec *r)
{
    health_t h;
    json_t *doc, *cache;
    int store_ok = 1, status;
    apr_size_t len;
    const char *body;

    if (!r->handler || strcmp(r->handler, "bff-health")) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        r->allowed = AP_METHOD_BIT << M_GET;
        return HTTP_METHOD_NOT_ALLOWED;
    }
    h.list = json_array();
    h.unhealthy = 0;
    h.p = r->pool;
    bff_res_backends(health_add, &h, r->pool);
    cache = bff_cache_health(&store_ok, r->pool);
    status = h.unhealthy || !store_ok ? HTTP_SERVICE_UNAVAILABLE : HTTP_OK;
    doc = json_pack("{s:s, s:o}", "status",
                    status == HTTP_OK ? "ok" : "unavailable", "backends", h.list);
    if (!doc) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    bff_json_pool_own(doc, r->pool);
    if (cache) {
        json_object_set_new(doc, "cache", cache);
    }
    body = bff_json_dump(&len, doc, r->pool);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    return bff_send_body(r, status, "application/json", body, len, NULL);
}

/* ------------------------------------------------------------- probe -- */

static apr_status_t probe_tick(int state, void *data, apr_pool_t *pool);
static bff_wd_task_t probe = { "_bff_health_probe_", probe_tick, 0,
                               NULL, 0, NULL };
/* origin -> the TLS settings (bff_tls_t) the probe uses for it: those of
 * the first backend that calls it; set in post_config */
static apr_hash_t *origin_tls;

/* One probe round: GET origin + path on every known origin, all at once;
 * a failure opens the breakers of that origin, a success lets an open one
 * try calls again (half-open). */
static void probe_round(bff_fetcher_t *f, apr_pool_t *p)
{
    const char *path = gconf->probe_path ? gconf->probe_path : "/health";
    long timeout = gconf->probe_timeout_ms ? gconf->probe_timeout_ms : 1000;
    apr_hash_t *origins = apr_hash_make(p);
    apr_hash_index_t *hi;
    apr_array_header_t *hdrs = apr_array_make(p, 1, sizeof(const char *));
    unsigned int i;
    int inflight = 0;
    apr_time_t until;

    APR_ARRAY_PUSH(hdrs, const char *) = "Accept: application/json";
    if (!glock()) {
        return;
    }
    for (i = 1; i < nslots; i++) {
        const char *o;
        if (!slots[i].key[0] || strncmp(slots[i].key, "http", 4)) {
            continue;
        }
        o = apr_pstrndup(p, slots[i].key, strcspn(slots[i].key, " "));
        apr_hash_set(origins, o, APR_HASH_KEY_STRING, o);
    }
    gunlock();
    for (hi = apr_hash_first(p, origins); hi; hi = apr_hash_next(hi)) {
        const char *o = apr_hash_this_key(hi);
        bff_fetch_req_t *req = apr_pcalloc(p, sizeof(*req));

        req->method = "GET";
        req->url = apr_pstrcat(p, o, path, NULL);
        req->headers = hdrs;
        req->timeout_ms = timeout;
        req->connect_timeout_ms = timeout;
        req->max_body = 65536;
        req->baton = (void *)o;
        req->tls = origin_tls ? apr_hash_get(origin_tls, o, APR_HASH_KEY_STRING)
                              : NULL;
        if (bff_fetch_start(f, req) == APR_SUCCESS) {
            inflight++;
        }
        else {
            apr_hash_set(origins, o, APR_HASH_KEY_STRING, "down");
        }
    }
    until = apr_time_now() + apr_time_from_msec(timeout + 100);
    while (inflight > 0 && apr_time_now() < until && !probe.stop) {
        bff_fetch_req_t *done = NULL;
        apr_status_t rv = bff_fetch_wait(f, &done, 100);
        if (rv == APR_EOF) {
            break;
        }
        if (rv != APR_SUCCESS || !done) {
            continue;
        }
        inflight--;
        apr_hash_set(origins, done->baton, APR_HASH_KEY_STRING,
                     done->err == BFF_FETCH_OK && done->status >= 200
                     && done->status < 300 ? "up"
                     : done->tls_failed ? apr_pstrcat(p, "TLS failure: ",
                                                      done->errmsg, NULL)
                     : "down");
        bff_fetch_release(f, done);
    }
    bff_fetch_reset(f);
    if (probe.stop) {
        return;
    }

    for (hi = apr_hash_first(p, origins); hi; hi = apr_hash_next(hi)) {
        const char *o = apr_hash_this_key(hi), *v = apr_hash_this_val(hi);
        int up = !strcmp(v, "up");
        apr_size_t ol = strlen(o);
        apr_time_t now = apr_time_now();

        if (v == o) {
            up = 0;      /* no answer in time */
        }
        if (!glock()) {
            return;
        }
        for (i = 1; i < nslots; i++) {
            slot_t *s = &slots[i];
            int from = -1, to = -1;
            if (strncmp(s->key, o, ol) || (s->key[ol] && s->key[ol] != ' ')) {
                continue;
            }
            if (s->probe != (up ? 1u : 2u)) {
                ap_log_error(APLOG_MARK, up ? APLOG_NOTICE : APLOG_WARNING, 0,
                             main_server, BFFLOGNO(203) "health probe %s%s: %s",
                             o, path, up ? "up" : "down");
                if (v != o && !strncmp(v, "TLS", 3)) {
                    /* the reason, which a wrong CA or key makes permanent */
                    ap_log_error(APLOG_MARK, APLOG_ERR, 0, main_server,
                                 BFFLOGNO(713) "health probe %s%s: %s", o,
                                 path, v);
                }
            }
            s->probe = up ? 1 : 2;
            s->probe_at = now;
            if (!gconf->breaker_on) {
                continue;
            }
            if (!up) {
                from = bff_brk_force(&s->brk, &gconf->brk, now, BFF_BRK_OPEN);
                to = BFF_BRK_OPEN;
            }
            else if (s->brk.state == BFF_BRK_OPEN) {
                from = bff_brk_force(&s->brk, &gconf->brk, now,
                                     BFF_BRK_HALF_OPEN);
                to = BFF_BRK_HALF_OPEN;
            }
            if (from >= 0) {
                log_transition(s, from, to, up ? "health probe up"
                                               : "health probe down");
            }
        }
        gunlock();
    }
}

/* The probe runs on mod_watchdog (bff_wd_task_t): probe_tick runs every
 * AP_WD_TM_SLICE in every child, and the shared lease in slot 0 lets one
 * process per interval probe. */
static apr_status_t probe_tick(int state, void *data, apr_pool_t *pool)
{
    apr_time_t now = apr_time_now();
    int mine = 0;

    if (!bff_wd_task_enter(&probe, state)) {
        return APR_SUCCESS;
    }
    if (glock()) {
        /* one process probes per interval: whoever takes the lease */
        if (now >= slots[0].probe_lease) {
            slots[0].probe_lease = now + apr_time_from_msec(gconf->probe_ms);
            mine = 1;
        }
        gunlock();
        if (mine) {
            probe_round(probe.client, pool);
        }
    }
    bff_wd_task_leave(&probe);
    return APR_SUCCESS;
}

/* post_config: a child watchdog for the probe (needs mod_watchdog) */
static int probe_register(apr_pool_t *pconf, server_rec *s)
{
    apr_status_t rv = bff_wd_task_register(&probe, pconf);

    if (rv == APR_ENOTIMPL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(209)
                     "BFFHealthProbe needs mod_watchdog: load it "
                     "(LoadModule watchdog_module) or remove the probe");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(210)
                     "BFFHealthProbe: cannot register with mod_watchdog");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* child_init, before mod_watchdog starts the thread */
static void probe_child_init(apr_pool_t *pchild, server_rec *s)
{
    const char *err = bff_wd_task_child_init(&probe, pchild, s);

    if (err) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(204)
                     "health probe: %s", err);
    }
}

/* --------------------------------------------------------- lifecycle -- */

static int res_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp)
{
    ap_mutex_register(pconf, MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    slots = NULL;
    nslots = 0;
    gmutex = NULL;
    gconf = NULL;
    key_cache = NULL;
    cache_mutex = NULL;
    table_full_logged = 0;
    return OK;
}

static void register_key(const char *key, int required, int breaker)
{
    slot_t *s = slot_find_locked(key, 1);

    if (s) {
        s->required |= (apr_uint32_t)required;
        s->has_breaker |= (apr_uint32_t)breaker;
    }
}

/* Every backend whose URL names its host literally, and every upstream
 * instance, gets its slot now: /health lists them before any traffic and
 * the probe knows them. (Keys only known at run time come on first use.) */
static void register_known_keys(server_rec *s, apr_pool_t *p)
{
    server_rec *vs;
    int i, j, k;

    for (i = 0; i < gconf->upstreams->nelts; i++) {
        upstream_t *u = APR_ARRAY_IDX(gconf->upstreams, i, upstream_t *);
        for (j = 0; j < u->instances->nelts; j++) {
            register_key(APR_ARRAY_IDX(u->instances, j, const char *), 0,
                         gconf->breaker_on);
        }
    }
    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        for (i = 0; i < sc->endpoints->nelts; i++) {
            bff_ep_conf_t *epc = APR_ARRAY_IDX(sc->endpoints, i, bff_ep_conf_t *);
            pol_baton_t pb;

            if (epc->server != vs) {
                continue;
            }
            memset(&pb, 0, sizeof(pb));
            pb.epc = epc;
            pb.ep = epc->res;
            pb.srv = sc->res;
            for (j = 0; j < epc->ep->backends->nelts; j++) {
                bff_backend_t *be = APR_ARRAY_IDX(epc->ep->backends, j,
                                                  bff_backend_t *);
                const char *o = bff_url_origin(bff_tpl_text(be->url), p);
                upstream_t *u;

                if (!o || strchr(o, '{')) {
                    continue;
                }
                if ((u = upstream_of(o)) != NULL) {
                    for (k = 0; k < u->instances->nelts; k++) {
                        register_key(slot_key(&pb, be, APR_ARRAY_IDX(
                            u->instances, k, const char *), p), be->required,
                            brk_conf(&pb)->breaker_on);
                    }
                    continue;
                }
                register_key(slot_key(&pb, be, o, p), be->required,
                             brk_conf(&pb)->breaker_on);
            }
        }
    }
}

/* The probe calls an https origin with the TLS settings of the backends
 * that call it (the first one's, when several disagree), upstream
 * instances with those of the backends that use the upstream. */
static void map_probe_tls(server_rec *s, apr_pool_t *p)
{
    server_rec *vs;
    int i, j, k;

    origin_tls = apr_hash_make(p);
    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        for (i = 0; i < sc->endpoints->nelts; i++) {
            bff_ep_conf_t *epc = APR_ARRAY_IDX(sc->endpoints, i, bff_ep_conf_t *);
            for (j = 0; j < epc->ep->backends->nelts; j++) {
                bff_backend_t *be = APR_ARRAY_IDX(epc->ep->backends, j,
                                                  bff_backend_t *);
                const char *o = bff_url_origin(bff_tpl_text(be->url), p);
                upstream_t *u;

                if (!be->tls || !o || strchr(o, '{')) {
                    continue;
                }
                if ((u = upstream_of(o)) == NULL) {
                    if (!apr_hash_get(origin_tls, o, APR_HASH_KEY_STRING)) {
                        apr_hash_set(origin_tls, o, APR_HASH_KEY_STRING, be->tls);
                    }
                    continue;
                }
                for (k = 0; k < u->instances->nelts; k++) {
                    const char *in = APR_ARRAY_IDX(u->instances, k, const char *);
                    if (!apr_hash_get(origin_tls, in, APR_HASH_KEY_STRING)) {
                        apr_hash_set(origin_tls, in, APR_HASH_KEY_STRING, be->tls);
                    }
                }
            }
        }
    }
}

static int res_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config, &bff_module);
    server_rec *vs;
    apr_status_t rv;
    void *mem;
    unsigned int want;
    int any = 0, kept;

    main_server = s;
    gconf = sc->res;
    map_probe_tls(s, pconf);
    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *vsc = ap_get_module_config(vs->module_config,
                                                      &bff_module);
        any |= vsc->endpoints->nelts > 0;
    }
    if (!any || ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    want = (unsigned int)(gconf->slots ? gconf->slots : DEFAULT_SLOTS) + 1;
    /* The table and its mutex belong to httpd's parent process, not to a
     * configuration generation (retained data): a graceful restart keeps
     * breakers, budgets and counters, and old and new children share them
     * under the same mutex. A cold start begins with closed breakers and
     * zero counters; another BFFBreakerSlots gives a new, empty table. */
    if (!(mem = bff_shm_retained(&kept, "breakers", sizeof(slot_t) * want, s))) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ret = ap_retained_data_get(RETAINED_KEY);
    if (!ret) {
        ret = ap_retained_data_create(RETAINED_KEY, sizeof(*ret));
    }
    if (!ret->mutex
        && (rv = ap_global_mutex_create(&ret->mutex, NULL, MUTEX_TYPE, NULL, s,
                                        s->process->pool, 0)) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    gmutex = ret->mutex;
    nslots = want;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, BFFLOGNO(208)
                 "breakers: %s table of %u keys", kept ? "kept the" : "new",
                 want - 1);
    slots = mem;
    /* in a graceful restart the old generation's children still claim
     * and update slots: the table is written under their mutex only */
    if (!glock()) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(500)
                     "breakers: cannot take the mutex: the configured keys "
                     "get their slots on first use");
        return OK;
    }
    register_known_keys(s, ptemp);
    gunlock();
    return gconf->probe_ms > 0 ? probe_register(pconf, s) : OK;
}

static void res_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (!slots) {
        return;
    }
    apr_global_mutex_child_init(&gmutex, apr_global_mutex_lockfile(gmutex),
                                pchild);
    apr_thread_mutex_create(&cache_mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
    key_cache = apr_hash_make(pchild);
    if (gconf->probe_ms > 0) {
        probe_child_init(pchild, s);
    }
}

void bff_res_register_hooks(apr_pool_t *p)
{
    /* before mod_watchdog starts the probe's thread */
    static const char *const before_watchdog[] = { "mod_watchdog.c", NULL };

    ap_hook_pre_config(res_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(res_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(res_child_init, NULL, before_watchdog,
                       APR_HOOK_MIDDLE);
    ap_hook_handler(health_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_REGISTER_OPTIONAL_FN(bff_breaker_snapshot);
}
