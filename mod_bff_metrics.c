/*
 * mod_bff: Prometheus metrics.
 *
 * Every series lives in one table in shared memory (lib/bff_metrics.c),
 * created by the parent in post_config: children update it with atomic
 * adds, so a scrape of `SetHandler bff-metrics` in any child sees the
 * server's totals. The segment is kept in httpd's retained data, so the
 * next generation of a graceful restart finds the same memory and the
 * counters go on (the table is keyed by labels, not by the configuration:
 * new endpoints get new series, old ones keep theirs).
 *
 * Sources: log_transaction counts every request (endpoint, method, final
 * status, duration) and the access phase's refusals (its notes); a pool
 * cleanup of each request keeps the active gauge; the aggregation handler
 * reports each engine run (bff_metrics_run); the cache counters and the
 * Redis pools are read when scraped.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "scoreboard.h"

#include "apr_hash.h"
#include "apr_optional.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_obs.h"
#include "mod_bff_shared.h"
#include "mod_bff_resilience.h"
#include "mod_bff_auth.h"
#include "mod_bff_cache.h"
#include "bff_metrics.h"
#include "bff_version.h"

APLOG_USE_MODULE(bff);

#define METRICS_HANDLER "bff-metrics"
#define DEFAULT_SLOTS   4096

static bff_metrics_table_t *table;   /* set in post_config, then fixed */
static apr_hash_t *locations;        /* <Location> paths: endpoint labels */

/* ------------------------------------------------------------- config -- */

const char *bff_metrics_cmd_slots(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    long n;

    if (err) {
        return err;
    }
    n = strtol(arg, &end, 10);
    if (*end || n < 64 || n > 1048576) {
        return apr_psprintf(cmd->pool, "BFFMetricsSlots %s: expected a "
                            "number of series from 64 to 1048576", arg);
    }
    sc->metrics_slots = (int)n;
    return NULL;
}

/* -------------------------------------------------------------- labels -- */

/* The endpoint label: the <BFFEndpoint> pattern (noted at translate), the
 * <Location> whose configuration applies, or "other". Never the URL. */
static const char *endpoint_of(request_rec *r, request_rec *last)
{
    const char *ep = apr_table_get(r->notes, "bff-endpoint");
    core_dir_config *d;

    if (!ep) {
        ep = apr_table_get(last->notes, "bff-endpoint");
    }
    if (ep) {
        return ep;
    }
    d = ap_get_core_module_config(r->per_dir_config);
    if (d && d->d && locations
        && (ep = apr_hash_get(locations, d->d, APR_HASH_KEY_STRING))) {
        return ep;
    }
    return "other";
}

/* -------------------------------------------------------- Redis pools -- */

/* The pools are per child: each child adds the change of its own share
 * since it last told, so the table holds the sum over the children (a
 * child going away takes its share back in a cleanup). */
enum { POOL_CACHE = 0, POOL_RATELIMIT, NPOOLS };
static const char *const pool_names[NPOOLS] = { "cache", "ratelimit" };
static apr_int64_t told[NPOOLS][2];          /* this child's busy, idle */

static void tell_pool(int which, const bff_redis_state_t *rs, apr_pool_t *p)
{
    static const char *const states[2] = { "busy", "idle" };
    apr_int64_t now[2];
    int i;

    now[0] = rs->busy;
    now[1] = rs->open > rs->busy ? rs->open - rs->busy : 0;
    for (i = 0; i < 2; i++) {
        apr_int64_t before = __atomic_exchange_n(&told[which][i], now[i],
                                                 __ATOMIC_ACQ_REL);
        if (now[i] != before) {
            bff_metrics_gauge_add(table, BFF_M_REDIS_CONNECTIONS,
                                  bff_metrics_labels(p, "pool",
                                  pool_names[which], "state", states[i],
                                  NULL), now[i] - before);
        }
    }
}

/* With probe (a scrape), also bff_redis_up. */
static void tell_pools(request_rec *r, int probe)
{
    bff_redis_state_t rs;

    if (bff_cache_redis_state(&rs, probe, r->pool)) {
        tell_pool(POOL_CACHE, &rs, r->pool);
        if (probe) {
            bff_metrics_set(table, BFF_M_REDIS_UP, bff_metrics_labels(r->pool,
                            "pool", pool_names[POOL_CACHE], NULL), rs.up);
        }
    }
    if (bff_auth_redis_state(&rs, probe, r)) {
        tell_pool(POOL_RATELIMIT, &rs, r->pool);
        if (probe) {
            bff_metrics_set(table, BFF_M_REDIS_UP, bff_metrics_labels(r->pool,
                            "pool", pool_names[POOL_RATELIMIT], NULL), rs.up);
        }
    }
}

static apr_status_t untell_pools(void *data)
{
    bff_redis_state_t none = { 0, 0, 0 };
    apr_pool_t *p;
    int i;

    if (!table || apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return APR_SUCCESS;
    }
    for (i = 0; i < NPOOLS; i++) {
        tell_pool(i, &none, p);
    }
    apr_pool_destroy(p);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------ requests -- */

static apr_status_t active_done(void *data)
{
    bff_metrics_gauge_add(table, BFF_M_HTTP_ACTIVE, "", -1);
    return APR_SUCCESS;
}

static int metrics_post_read_request(request_rec *r)
{
    /* the initial request only: internal redirects run this hook again */
    if (table && !r->prev && !r->main) {
        bff_metrics_gauge_add(table, BFF_M_HTTP_ACTIVE, "", 1);
        /* a cleanup, not log_transaction: it runs however the request ends */
        apr_pool_cleanup_register(r->pool, NULL, active_done,
                                  apr_pool_cleanup_null);
    }
    return DECLINED;
}

static apr_status_t agg_done(void *data)
{
    bff_metrics_gauge_add(table, BFF_M_AGG_ACTIVE, "", -1);
    return APR_SUCCESS;
}

/* An aggregation is in flight from here (past the access phase) until its
 * request is done. */
static int metrics_fixups(request_rec *r)
{
    if (table && !r->main && r->handler && !strcmp(r->handler, BFF_HANDLER)) {
        bff_metrics_gauge_add(table, BFF_M_AGG_ACTIVE, "", 1);
        apr_pool_cleanup_register(r->pool, NULL, agg_done,
                                  apr_pool_cleanup_null);
    }
    return DECLINED;
}

long bff_metrics_agg_active(void)
{
    return table ? (long)bff_metrics_get(table, BFF_M_AGG_ACTIVE, "") : 0;
}

void bff_metrics_sse(int streams, long events)
{
    if (!table) {
        return;
    }
    if (streams) {
        bff_metrics_gauge_add(table, BFF_M_SSE_STREAMS, "", streams);
    }
    if (events) {
        bff_metrics_add(table, BFF_M_SSE_EVENTS, "", events);
    }
}

static int metrics_log_transaction(request_rec *r)
{
    request_rec *last = r;
    const char *ep, *note;
    apr_pool_t *p = r->pool;

    if (!table || r->main) {
        return DECLINED;
    }
    while (last->next) {
        last = last->next;
    }
    ep = endpoint_of(r, last);
    bff_metrics_add(table, BFF_M_HTTP_REQUESTS, bff_metrics_labels(p,
                    "endpoint", ep, "method", bff_metrics_method(r->method),
                    "status", bff_metrics_status(last->status, p), NULL), 1);
    bff_metrics_observe(table, BFF_M_HTTP_DURATION,
                        bff_metrics_labels(p, "endpoint", ep, NULL),
                        apr_time_now() - r->request_time);

    /* the access phase's refusals, from the notes mod_bff_authn.c and
     * mod_bff_ratelimit.c leave */
    if ((last->status == HTTP_UNAUTHORIZED || last->status == HTTP_FORBIDDEN
         || last->status == HTTP_SERVICE_UNAVAILABLE)
        && ((note = apr_table_get(r->notes, "bff-auth-error"))
            || (last->status != HTTP_SERVICE_UNAVAILABLE
                && (note = apr_table_get(r->notes, "bff-authz-denied"))))) {
        bff_metrics_add(table, BFF_M_AUTH_FAILURES, bff_metrics_labels(p,
                        "reason", bff_metrics_auth_reason(note), NULL), 1);
    }
    if ((note = apr_table_get(r->notes, "bff-throttled"))
        && (last->status == HTTP_TOO_MANY_REQUESTS
            || (last->status == HTTP_SERVICE_UNAVAILABLE
                && !strcmp(note, "store-down")))) {
        bff_metrics_add(table, BFF_M_RATELIMIT_REJECTIONS, bff_metrics_labels(
                        p, "limit", last->status == HTTP_TOO_MANY_REQUESTS
                        ? note : "store_down", NULL), 1);
    }
    if ((note = apr_table_get(r->notes, "bff-overload"))
        && last->status == HTTP_SERVICE_UNAVAILABLE) {
        bff_metrics_add(table, BFF_M_OVERLOAD_REJECTED, bff_metrics_labels(p,
                        "endpoint", ep, "limit", note, NULL), 1);
    }
    tell_pools(r, 0);
    return DECLINED;
}

/* One backend's (or one item's) calls: every attempt counts, the ones
 * before the last having failed; the duration is the whole, retries
 * included. A refused call (circuit open) was not made. */
static void count_calls(apr_pool_t *p, const char *name,
                        const bff_be_result_t *br)
{
    int ok = br->state == BFF_BE_OK;
    int errors = br->attempts - (ok && br->attempts > 0);

    /* skipped: not called (a dependency failed) or abandoned after a
     * required backend failed; neither is this backend's doing */
    if (!ok && br->state != BFF_BE_FAILED) {
        return;
    }
    if (!ok) {
        bff_metrics_add(table, BFF_M_SERVICE_ERRORS, bff_metrics_labels(p,
                        "backend", name, "reason",
                        bff_metrics_backend_reason(br), NULL), 1);
    }
    if (br->attempts <= 0) {
        return;
    }
    if (ok) {
        bff_metrics_add(table, BFF_M_BACKEND_REQUESTS, bff_metrics_labels(p,
                        "backend", name, "outcome", "ok", NULL), 1);
    }
    if (errors > 0) {
        bff_metrics_add(table, BFF_M_BACKEND_REQUESTS, bff_metrics_labels(p,
                        "backend", name, "outcome", "error", NULL),
                        (apr_uint64_t)errors);
    }
    bff_metrics_observe(table, BFF_M_BACKEND_DURATION,
                        bff_metrics_labels(p, "backend", name, NULL),
                        br->elapsed);
}

void bff_metrics_run(request_rec *r, const bff_endpoint_t *ep,
                     const bff_run_result_t *res)
{
    apr_pool_t *p = r->pool;
    int i, k;

    if (!table) {
        return;
    }
    bff_metrics_observe(table, BFF_M_AGG_DURATION, bff_metrics_labels(p,
                        "endpoint", ep->pattern, NULL), res->elapsed);
    for (i = 0; i < ep->backends->nelts; i++) {
        const bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i,
                                                const bff_backend_t *);
        const bff_be_result_t *br = &res->results[i];

        if (br->nitems > 0) {
            /* per-item calls: each item is a call of its own */
            for (k = 0; k < br->nitems; k++) {
                count_calls(p, be->name, &br->items[k]);
            }
        }
        else {
            count_calls(p, be->name, br);
        }
    }
}

/* ------------------------------------------------------------- scrape -- */

/* Worker saturation, as mod_status counts it: the scoreboard's worker
 * slots that are serving a request (neither idle, starting nor dead). */
static void count_workers(void)
{
    int daemons = 0, threads = 0, i, j;
    apr_int64_t busy = 0;

    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons);
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &threads);
    for (i = 0; i < daemons; i++) {
        for (j = 0; j < threads; j++) {
            worker_score *ws = ap_get_scoreboard_worker_from_indexes(i, j);
            if (ws && ws->status != SERVER_DEAD && ws->status != SERVER_READY
                && ws->status != SERVER_STARTING
                && ws->status != SERVER_IDLE_KILL) {
                busy++;
            }
        }
    }
    bff_metrics_set(table, BFF_M_WORKERS_BUSY, "", busy);
    ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons);
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    bff_metrics_set(table, BFF_M_WORKERS_MAX, "",
                    (apr_int64_t)daemons * threads);
}

/* Copies what other parts of the server keep into the table. */
static void refresh(request_rec *r)
{
    bff_cache_counters_t cc;
    APR_OPTIONAL_FN_TYPE(bff_breaker_snapshot) *breakers;

    if (bff_cache_counters(&cc)) {
        /* mod_bff_cache.c's own shared counters: not counted twice */
        bff_metrics_set(table, BFF_M_CACHE_HITS, "", (apr_int64_t)cc.hits);
        bff_metrics_set(table, BFF_M_CACHE_MISSES, "", (apr_int64_t)cc.misses);
        bff_metrics_set(table, BFF_M_CACHE_STALE, "", (apr_int64_t)cc.stale);
        bff_metrics_set(table, BFF_M_CACHE_FALLBACK, "",
                        (apr_int64_t)cc.fallbacks);
    }
    tell_pools(r, 1);
    count_workers();
    bff_metrics_set(table, BFF_M_BUILD_INFO,
                    bff_metrics_labels(r->pool, "version", BFF_VERSION,
                                       "features", BFF_FEATURES, NULL), 1);
    /* the circuit breakers, when their glue provides them */
    breakers = APR_RETRIEVE_OPTIONAL_FN(bff_breaker_snapshot);
    if (breakers) {
        apr_array_header_t *all = breakers(r->pool);
        int i;
        for (i = 0; all && i < all->nelts; i++) {
            const bff_breaker_info_t *b = &APR_ARRAY_IDX(all, i,
                                                         bff_breaker_info_t);
            const char *lb = bff_metrics_labels(r->pool, "backend",
                                                b->backend, NULL);
            int v;
            /* retries are counted for keys with or without a breaker */
            bff_metrics_set(table, BFF_M_RETRIES, lb, (apr_int64_t)b->retries);
            bff_metrics_set(table, BFF_M_RETRY_BUDGET_EXHAUSTED, lb,
                            (apr_int64_t)b->budget_exhausted);
            if (!b->state) {
                continue;
            }
            bff_metrics_set(table, BFF_M_BREAKER_REFUSED, lb,
                            (apr_int64_t)b->refused);
            v = bff_metrics_breaker_value(b->state);
            if (v >= 0) {
                bff_metrics_set(table, BFF_M_BREAKER_STATE, lb, v);
            }
            bff_metrics_set(table, BFF_M_BREAKER_TRANSITIONS,
                            bff_metrics_labels(r->pool, "backend", b->backend,
                                               "to", "closed", NULL),
                            (apr_int64_t)b->to_closed);
            bff_metrics_set(table, BFF_M_BREAKER_TRANSITIONS,
                            bff_metrics_labels(r->pool, "backend", b->backend,
                                               "to", "half-open", NULL),
                            (apr_int64_t)b->to_half_open);
            bff_metrics_set(table, BFF_M_BREAKER_TRANSITIONS,
                            bff_metrics_labels(r->pool, "backend", b->backend,
                                               "to", "open", NULL),
                            (apr_int64_t)b->to_open);
        }
    }
}

static int metrics_handler(request_rec *r)
{
    const char *text;
    apr_size_t len;

    if (!r->handler || strcmp(r->handler, METRICS_HANDLER)) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD");
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!table) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(300)
                      "no metrics table in this server");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    refresh(r);
    text = bff_metrics_render(&len, table, r->pool);
    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)len);
    if (!r->header_only) {
        ap_rwrite(text, (int)len, r);
    }
    return OK;
}

/* ---------------------------------------------------------- lifecycle -- */

static int metrics_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                              apr_pool_t *ptemp)
{
    table = NULL;
    locations = NULL;
    return OK;
}

/* Every <Location> path of every server: the labels of requests no
 * <BFFEndpoint> answers. */
static void collect_locations(apr_pool_t *p, server_rec *s)
{
    locations = apr_hash_make(p);
    for (; s; s = s->next) {
        core_server_config *cs = ap_get_core_module_config(s->module_config);
        int i;
        for (i = 0; cs->sec_url && i < cs->sec_url->nelts; i++) {
            ap_conf_vector_t *v = APR_ARRAY_IDX(cs->sec_url, i,
                                                ap_conf_vector_t *);
            core_dir_config *d = ap_get_core_module_config(v);
            if (d && d->d) {
                apr_hash_set(locations, d->d, APR_HASH_KEY_STRING, d->d);
            }
        }
    }
}

static int metrics_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                               apr_pool_t *ptemp, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);
    unsigned nslots = sc->metrics_slots ? (unsigned)sc->metrics_slots
                                        : DEFAULT_SLOTS;
    apr_size_t size = bff_metrics_table_size(nslots);
    void *mem;
    int kept;

    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;   /* the dry run: no shared memory yet */
    }
    collect_locations(pconf, s);
    if (!(mem = bff_shm_retained(&kept, "metrics", size, s))) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* a table kept from the previous generation is used as it is */
    kept = bff_metrics_table_init(mem, nslots);
    table = mem;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, BFFLOGNO(303)
                 "metrics: %s table of %u series (%" APR_SIZE_T_FMT " bytes)",
                 kept ? "kept the" : "new", nslots, size);
    return OK;
}

static void metrics_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_pool_cleanup_register(pchild, NULL, untell_pools,
                              apr_pool_cleanup_null);
}

void bff_metrics_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(metrics_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(metrics_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(metrics_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(metrics_post_read_request, NULL, NULL,
                              APR_HOOK_REALLY_FIRST);
    ap_hook_log_transaction(metrics_log_transaction, NULL, NULL,
                            APR_HOOK_MIDDLE);
    ap_hook_handler(metrics_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_fixups(metrics_fixups, NULL, NULL, APR_HOOK_LAST);
}
