/*
 * mod_bff on mod_status's server-status page.
 *
 * With ExtendedStatus On, the page (HTML, and ?auto for scripts) shows
 * mod_bff's state as this child sees it: version and compiled features,
 * aggregations in flight (all children, from the metrics table), the
 * cache store and its health, the rate-limit store, and the breaker of
 * every backend key (all children, from the resilience table). Without
 * ExtendedStatus it shows nothing: reading the stores costs a round trip.
 *
 * ?auto lines are "Name: value", per backend "BFFBackend[N]Name: value",
 * as mod_proxy_balancer writes its members.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "apr_strings.h"
#include "mod_status.h"

#include "mod_bff.h"
#include "mod_bff_obs.h"
#include "mod_bff_auth.h"
#include "mod_bff_cache.h"
#include "mod_bff_resilience.h"
#include "bff_version.h"

typedef struct {
    request_rec *r;
    int short_report;
    int n;
} backends_ctx_t;

static const char *const probe_names[] = { "unknown", "up", "down" };

static void line(request_rec *r, int short_report, const char *name,
                 const char *label, const char *value)
{
    if (short_report) {
        ap_rprintf(r, "%s: %s\n", name, value);
    }
    else {
        ap_rprintf(r, "<dt>%s: %s</dt>\n", label,
                   ap_escape_html(r->pool, value));
    }
}

static void one_backend(void *baton, const bff_res_backend_t *b)
{
    backends_ctx_t *c = baton;
    request_rec *r = c->r;
    const char *state = b->breaker ? bff_brk_state_str(b->state) : "none";
    const char *probe = probe_names[b->probe >= 0 && b->probe < 3 ? b->probe
                                                                 : 0];
    const char *last = b->last_at ? (b->last_reason ? b->last_reason
                                     : apr_itoa(r->pool, b->last_status))
                                  : "never called";

    if (c->short_report) {
        ap_rprintf(r, "BFFBackend[%d]Name: %s\n", c->n, b->key);
        ap_rprintf(r, "BFFBackend[%d]Breaker: %s\n", c->n, state);
        ap_rprintf(r, "BFFBackend[%d]Probe: %s\n", c->n, probe);
        ap_rprintf(r, "BFFBackend[%d]InFlight: %u\n", c->n,
                   (unsigned)b->outstanding);
        ap_rprintf(r, "BFFBackend[%d]Refused: %" APR_UINT64_T_FMT "\n", c->n,
                   b->counters.refused);
        ap_rprintf(r, "BFFBackend[%d]Last: %s\n", c->n, last);
    }
    else {
        ap_rprintf(r, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%u</td>"
                   "<td>%" APR_UINT64_T_FMT "</td><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, b->key), state, probe,
                   (unsigned)b->outstanding, b->counters.refused,
                   ap_escape_html(r->pool, last));
    }
    c->n++;
}

static void cache_state(request_rec *r, int short_report)
{
    int usable;
    json_t *h = bff_cache_health(&usable, r->pool);
    const char *store, *fallback, *err;
    int up, in_use;

    if (!h) {
        line(r, short_report, "BFFCacheStore", "Cache store",
             "none (no endpoint is cached)");
        return;
    }
    store = json_string_value(json_object_get(h, "store"));
    up = json_is_true(json_object_get(h, "up"));
    fallback = json_string_value(json_object_get(h, "fallback"));
    in_use = json_is_true(json_object_get(h, "fallback_in_use"));
    err = json_string_value(json_object_get(h, "last_error"));
    if (short_report) {
        ap_rprintf(r, "BFFCacheStore: %s\nBFFCacheStoreUp: %d\n"
                   "BFFCacheFallback: %s\nBFFCacheFallbackInUse: %d\n",
                   store ? store : "off", up, fallback ? fallback : "none",
                   in_use);
        return;
    }
    line(r, 0, NULL, "Cache store", apr_psprintf(r->pool, "%s, %s%s%s; "
         "fallback %s%s", store ? store : "off", up ? "up" : "down",
         err && !up ? ": " : "", err && !up ? err : "",
         fallback ? fallback : "none", in_use ? " (in use)" : ""));
}

static void ratelimit_state(request_rec *r, int short_report)
{
    bff_redis_state_t rs;

    if (!bff_auth_redis_state(&rs, 1, r)) {
        line(r, short_report, "BFFRateLimitStore", "Rate-limit store",
             short_report ? "shm" : "shared memory (no BFFRateLimitRedis)");
        return;
    }
    if (short_report) {
        ap_rprintf(r, "BFFRateLimitStore: redis\nBFFRateLimitStoreUp: %d\n"
                   "BFFRateLimitConnections: %d\nBFFRateLimitBusy: %d\n",
                   rs.up, rs.open, rs.busy);
        return;
    }
    line(r, 0, NULL, "Rate-limit store", apr_psprintf(r->pool,
         "redis, %s (this child: %d connections, %d busy)%s",
         rs.up ? "up" : "down", rs.open, rs.busy,
         rs.up ? "" : "; BFFRateLimitFallback applies"));
}

static int bff_status_hook(request_rec *r, int flags)
{
    int short_report = flags & AP_STATUS_SHORT;
    backends_ctx_t bc;
    long active;

    if (!(flags & AP_STATUS_EXTENDED)) {
        return OK;
    }
    active = bff_metrics_agg_active();
    if (short_report) {
        ap_rprintf(r, "BFFVersion: %s\nBFFFeatures: %s\n"
                   "BFFAggregationsInFlight: %ld\n", BFF_VERSION,
                   BFF_FEATURES, active);
    }
    else {
        ap_rputs("<hr />\n<h2>mod_bff</h2>\n<dl>\n", r);
        ap_rprintf(r, "<dt>Version: %s; features: %s</dt>\n", BFF_VERSION,
                   BFF_FEATURES);
        ap_rprintf(r, "<dt>Aggregations in flight: %ld</dt>\n", active);
    }
    cache_state(r, short_report);
    ratelimit_state(r, short_report);
    memset(&bc, 0, sizeof(bc));
    bc.r = r;
    bc.short_report = short_report;
    if (short_report) {
        bff_res_backends(one_backend, &bc, r->pool);
        ap_rprintf(r, "BFFBackends: %d\n", bc.n);
        return OK;
    }
    ap_rputs("</dl>\n", r);
    if (flags & AP_STATUS_NOTABLE) {
        return OK;
    }
    ap_rputs("<table border=\"0\"><tr><th>Backend</th><th>Breaker</th>"
             "<th>Probe</th><th>In flight</th><th>Refused</th>"
             "<th>Last call</th></tr>\n", r);
    bff_res_backends(one_backend, &bc, r->pool);
    ap_rputs("</table>\n", r);
    return OK;
}

void bff_status_register_hooks(apr_pool_t *p)
{
    APR_OPTIONAL_HOOK(ap, status_hook, bff_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
