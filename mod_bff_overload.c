/*
 * mod_bff: overload is answered, not queued.
 *
 * In httpd 2.4 a worker thread stays with a request while its backends
 * answer, so a slow backend fills the workers and everything else waits
 * in the listen queue behind it: /health, metrics, httpd's other
 * locations. BFFMaxInFlight caps the aggregations in flight, counted
 * over every process of the server (lib/bff_inflight.c, in retained
 * shared memory): all of them together (total), per endpoint and per
 * backend origin. A request over a cap is answered at once with 503,
 * Retry-After and a problem+json body, counted in
 * bff_overload_rejected_total, and logged at debug. The caps default to
 * shares of MaxRequestWorkers: total leaves a tenth of the workers (at
 * least one) to everything else, one endpoint or one backend may take
 * three quarters of that. consumer=N caps what one authenticated user (r->user:
 * a token's subject, an API key's consumer) has in flight over every
 * process, counted in a table of its own by a hash of the name into
 * CONSUMER_BUCKETS counters: users whose names share a counter share its
 * cap (with 100 users in flight at once, each has a 2.4% chance of
 * sharing one).
 *
 * An event stream (mod_bff_sse.c) holds a worker for as long as it is
 * open: each counts against the total cap too (bff_overload_enter_stream).
 *
 * What the module cannot see: connections still waiting in the kernel's
 * listen queue for a worker. Those are bounded by ListenBacklog, not here.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "ap_mpm.h"

#include "apr_lib.h"
#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_overload.h"
#include "mod_bff_shared.h"
#include "bff_inflight.h"
#include "bff_opts.h"

APLOG_USE_MODULE(bff);

#define MAX_COUNTERS 1024      /* total + endpoints + backend origins */
#define CONSUMER_BUCKETS 4096
#define AUTO -1L

struct bff_overload_conf_t {
    int off;                     /* BFFMaxInFlight off */
    long total, endpoint, backend;   /* AUTO, or a number */
    long consumer;                   /* 0: no cap per consumer */
    long retry_after_ms;
    int set;
};

/* An endpoint's counters and caps: [0] total, [1] the endpoint, then one
 * per backend origin it calls. */
struct bff_overload_ep_t {
    int n;
    int *idx;
    apr_uint32_t *caps;
    const char **what;           /* "total", "endpoint", "backend ORIGIN" */
};

static bff_inflight_t *table, *ctable;
static int my_row = -1, my_crow = -1;
static const bff_overload_conf_t *gconf;
static long retry_after_s = 1;
/* What an event stream holds: the total counter (index 0), and its cap */
static const int total_idx = 0;
static apr_uint32_t total_cap;

bff_overload_conf_t *bff_overload_conf_create(apr_pool_t *p)
{
    bff_overload_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->total = c->endpoint = c->backend = AUTO;
    c->retry_after_ms = 1000;
    return c;
}

/* ------------------------------------------------------------ config -- */

static const char *opt_cap(long *out, const char *v, apr_pool_t *p)
{
    char *end;
    long n;

    if (!strcmp(v, "auto")) {
        *out = AUTO;
        return NULL;
    }
    n = strtol(v, &end, 10);
    if (!apr_isdigit(*v) || *end || n < 1 || n > 1000000) {
        return "expected auto or a number from 1 to 1000000";
    }
    *out = n;
    return NULL;
}

static const char *opt_total(void *target, const char *v, apr_pool_t *p)
{
    return opt_cap(&((bff_overload_conf_t *)target)->total, v, p);
}

static const char *opt_endpoint(void *target, const char *v, apr_pool_t *p)
{
    return opt_cap(&((bff_overload_conf_t *)target)->endpoint, v, p);
}

static const char *opt_backend(void *target, const char *v, apr_pool_t *p)
{
    return opt_cap(&((bff_overload_conf_t *)target)->backend, v, p);
}

static const bff_opt_t server_opts[] = {
    BFF_OPT_CALL("total", opt_total),
    BFF_OPT_CALL("endpoint", opt_endpoint),
    BFF_OPT_CALL("backend", opt_backend),
    BFF_OPT_NUM("consumer", BFF_OPT_LONG, bff_overload_conf_t, consumer, 1,
                1000000),
    BFF_OPT_NUM("retry-after", BFF_OPT_MS, bff_overload_conf_t,
                retry_after_ms, 1000, 3600000),
    BFF_OPT_END
};

typedef struct {
    long endpoint;
} ep_opts_t;

static const bff_opt_t endpoint_opts[] = {
    BFF_OPT_NUM("endpoint", BFF_OPT_LONG, ep_opts_t, endpoint, 1, 1000000),
    BFF_OPT_END
};

const char *bff_overload_cmd(cmd_parms *cmd, void *dcv, const char *args)
{
    bff_dir_conf_t *dc = dcv;
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);
    const char *w, *err;

    if (dc && dc->epc) {
        ep_opts_t o = { 0 };
        if (!*args) {
            return "BFFMaxInFlight inside <BFFEndpoint> takes endpoint=N";
        }
        while (*(w = ap_getword_conf(cmd->temp_pool, &args))) {
            if ((err = bff_opt_parse(endpoint_opts, &o, w, cmd->pool))) {
                return apr_psprintf(cmd->pool, "BFFMaxInFlight: %s", err);
            }
        }
        dc->epc->max_inflight = o.endpoint;
        return NULL;
    }
    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY))) {
        return err;
    }
    if (sc->overload->set) {
        return "BFFMaxInFlight is given twice";
    }
    sc->overload->set = 1;
    w = ap_getword_conf(cmd->temp_pool, &args);
    if (!strcasecmp(w, "off") && !*args) {
        sc->overload->off = 1;
        return NULL;
    }
    if (!*w) {
        return "BFFMaxInFlight takes options: total=N|auto endpoint=N|auto "
               "backend=N|auto consumer=N retry-after=DURATION, or off";
    }
    for (; *w; w = ap_getword_conf(cmd->temp_pool, &args)) {
        if ((err = bff_opt_parse(server_opts, sc->overload, w, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFMaxInFlight: %s", err);
        }
    }
    return NULL;
}

/* apache2 -t reports the unsafe opt-out */
static int overload_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                                 apr_pool_t *ptemp, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);

    if (sc->overload->off
        && ap_state_query(AP_SQ_RUN_MODE) == AP_SQ_RM_CONFIG_TEST) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, BFFLOGNO(150)
                     "BFFMaxInFlight off: no cap on aggregations in flight; "
                     "a slow backend can take every worker");
    }
    return OK;
}

/* ------------------------------------------------------------ tables -- */

static apr_uint32_t cap_of(long v, long dflt)
{
    return (apr_uint32_t)(v == AUTO ? dflt : v);
}

/* Gives every endpoint its counters: the same configuration gives the
 * same numbers, so a graceful restart keeps counting where it was. */
static int assign(server_rec *s, apr_pool_t *p, long mrw)
{
    const bff_overload_conf_t *c = gconf;
    long total = mrw - (mrw / 10 > 1 ? mrw / 10 : 1);
    long share;
    apr_hash_t *origins = apr_hash_make(p);
    int next = 1, full = 0;
    server_rec *vs;

    if (total < 1) {
        total = 1;
    }
    total_cap = cap_of(c->total, total);
    share = total * 3 / 4 > 0 ? total * 3 / 4 : 1;
    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        int i, j;

        for (i = 0; i < sc->endpoints->nelts; i++) {
            bff_ep_conf_t *epc = APR_ARRAY_IDX(sc->endpoints, i,
                                               bff_ep_conf_t *);
            bff_overload_ep_t *o;
            int nb = epc->ep->backends->nelts;

            if (epc->server != vs || epc->overload) {
                continue;
            }
            o = apr_pcalloc(p, sizeof(*o));
            o->idx = apr_pcalloc(p, sizeof(int) * (apr_size_t)(nb + 2));
            o->caps = apr_pcalloc(p, sizeof(apr_uint32_t) * (apr_size_t)(nb + 2));
            o->what = apr_pcalloc(p, sizeof(char *) * (apr_size_t)(nb + 2));
            o->idx[0] = 0;
            o->caps[0] = cap_of(c->total, total);
            o->what[0] = "total";
            o->idx[1] = next < MAX_COUNTERS ? next++ : -1;
            full |= o->idx[1] < 0;
            o->caps[1] = epc->max_inflight ? (apr_uint32_t)epc->max_inflight
                                           : cap_of(c->endpoint, share);
            o->what[1] = "endpoint";
            o->n = 2;
            for (j = 0; j < nb; j++) {
                bff_backend_t *be = APR_ARRAY_IDX(epc->ep->backends, j,
                                                  bff_backend_t *);
                const char *org = bff_url_origin(bff_tpl_text(be->url), p);
                int *slot, k, dup = 0;

                if (!org || strchr(org, '{')) {
                    continue;       /* a host only known per request */
                }
                if (!(slot = apr_hash_get(origins, org, APR_HASH_KEY_STRING))) {
                    slot = apr_palloc(p, sizeof(*slot));
                    *slot = next < MAX_COUNTERS ? next++ : -1;
                    full |= *slot < 0;
                    apr_hash_set(origins, org, APR_HASH_KEY_STRING, slot);
                }
                for (k = 2; k < o->n; k++) {
                    dup |= o->idx[k] == *slot;
                }
                if (dup || *slot < 0) {
                    continue;
                }
                o->idx[o->n] = *slot;
                o->caps[o->n] = cap_of(c->backend, share);
                o->what[o->n] = apr_pstrcat(p, "backend ", org, NULL);
                o->n++;
            }
            epc->overload = o;
        }
    }
    return full;
}

static int overload_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);
    int any = 0, shape;
    long mrw;
    server_rec *vs;

    table = ctable = NULL;
    gconf = sc->overload;
    retry_after_s = (gconf->retry_after_ms + 999) / 1000;
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG
        || gconf->off) {
        return OK;
    }
    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *vsc = ap_get_module_config(vs->module_config,
                                                      &bff_module);
        any |= vsc->endpoints->nelts > 0;
    }
    if (!any) {
        return OK;
    }
    table = bff_inflight_shared(&shape, &mrw, "inflight", MAX_COUNTERS, s,
                                pconf);
    if (!table) {
        if (shape) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(151)
                         "BFFMaxInFlight: the shared table of requests in "
                         "flight has another shape");
        }
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (gconf->consumer
        && !(ctable = bff_inflight_shared(&shape, &mrw, "inflight-consumer",
                                          CONSUMER_BUCKETS, s, pconf))) {
        if (shape) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(155)
                         "BFFMaxInFlight: the shared table of requests in "
                         "flight per consumer has another shape");
        }
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (assign(s, pconf, mrw)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, BFFLOGNO(152)
                     "BFFMaxInFlight: more than %d endpoints and backend "
                     "origins: the ones beyond have only the total cap",
                     MAX_COUNTERS - 1);
    }
    return OK;
}

static void overload_child_init(apr_pool_t *pchild, server_rec *s)
{
    my_row = my_crow = -1;
    if (!table) {
        return;
    }
    my_row = bff_inflight_child_row(table, pchild);
    if (ctable) {
        my_crow = bff_inflight_child_row(ctable, pchild);
    }
    if (my_row < 0 || (ctable && my_crow < 0)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(153)
                     "BFFMaxInFlight: no free row for this process: its "
                     "requests are not counted");
    }
}

/* ----------------------------------------------------------- requests -- */

typedef struct {
    const bff_overload_ep_t *o;
    int consumer;                /* its counter, or -1 */
} held_t;


static apr_status_t leave_stream(void *data)
{
    if (table && my_row >= 0) {
        bff_inflight_leave(table, my_row, &total_idx, 1);
    }
    return APR_SUCCESS;
}

const char *bff_overload_enter_stream(request_rec *r)
{
    if (!table || my_row < 0) {
        return NULL;
    }
    if (bff_inflight_enter(table, my_row, &total_idx, &total_cap, 1) >= 0) {
        apr_table_setn(r->notes, "bff-overload", "total");
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(156)
                      "event stream: over the cap of aggregations in "
                      "flight (total: %u)", total_cap);
        apr_table_setn(r->err_headers_out, "Retry-After",
                       apr_ltoa(r->pool, retry_after_s));
        return apr_psprintf(r->pool, "too many requests in flight (total: "
                            "%u); retry later", total_cap);
    }
    apr_pool_cleanup_register(r->pool, NULL, leave_stream,
                              apr_pool_cleanup_null);
    return NULL;
}

static apr_status_t leave(void *data)
{
    held_t *h = data;

    if (table && my_row >= 0) {
        bff_inflight_leave(table, my_row, h->o->idx, h->o->n);
    }
    if (h->consumer >= 0 && ctable && my_crow >= 0) {
        bff_inflight_leave(ctable, my_crow, &h->consumer, 1);
    }
    return APR_SUCCESS;
}

/* The 503's note (the metric's limit label), log line, Retry-After and
 * detail, for the cap named what. */
static const char *refuse(request_rec *r, const bff_ep_conf_t *epc,
                          const char *what, apr_uint32_t cap)
{
    apr_table_setn(r->notes, "bff-overload",
                   !strcmp(what, "total") || !strcmp(what, "endpoint")
                   || !strcmp(what, "consumer") ? what : "backend");
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(154)
                  "%s %s: over the cap of aggregations in flight (%s: %u)",
                  epc->ep->method, epc->ep->pattern, what, cap);
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_ltoa(r->pool, retry_after_s));
    return apr_psprintf(r->pool, "too many requests in flight (%s: %u); "
                        "retry later", what, cap);
}

const char *bff_overload_enter(request_rec *r, const bff_ep_conf_t *epc)
{
    const bff_overload_ep_t *o = epc->overload;
    held_t *h;
    int over;

    if (!table || !o || my_row < 0) {
        return NULL;
    }
    over = bff_inflight_enter(table, my_row, o->idx, o->caps, o->n);
    if (over < 0) {
        h = apr_palloc(r->pool, sizeof(*h));
        h->o = o;
        h->consumer = -1;
        if (ctable && my_crow >= 0 && r->user) {
            apr_ssize_t len = APR_HASH_KEY_STRING;
            int idx = (int)(apr_hashfunc_default(r->user, &len)
                            % CONSUMER_BUCKETS);
            apr_uint32_t cap = (apr_uint32_t)gconf->consumer;

            if (bff_inflight_enter(ctable, my_crow, &idx, &cap, 1) >= 0) {
                bff_inflight_leave(table, my_row, o->idx, o->n);
                return refuse(r, epc, "consumer", cap);
            }
            h->consumer = idx;
        }
        apr_pool_cleanup_register(r->pool, h, leave, apr_pool_cleanup_null);
        return NULL;
    }
    return refuse(r, epc, o->what[over], o->caps[over]);
}

void bff_overload_register_hooks(apr_pool_t *p)
{
    ap_hook_check_config(overload_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(overload_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(overload_child_init, NULL, NULL, APR_HOOK_MIDDLE);
}
