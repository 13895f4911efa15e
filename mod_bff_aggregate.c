/*
 * mod_bff: the aggregation handler.
 *
 * translate_name matches the request against the server's <BFFEndpoint>
 * routes before mod_proxy and mod_alias see it; map_to_storage keeps httpd
 * from looking for a file; <Location> sections (Require, ...) still apply.
 * The handler runs the engine with a fetcher checked out of a per-child
 * pool, so backend keep-alive connections outlive the client request.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"

#include "apr_strings.h"
#include "apr_reslist.h"

#include "mod_bff.h"
#include "mod_bff_aggregate.h"
#include "mod_bff_cache.h"
#include "mod_bff_overload.h"
#include "mod_bff_profile.h"
#include "mod_bff_resilience.h"
#include "mod_bff_auth.h"
#include "mod_bff_obs.h"
#include "bff_http.h"
#include "bff_cache.h"

APLOG_USE_MODULE(bff);

/* What translate_name found, for the handler. */
typedef struct {
    bff_ep_conf_t *epc;          /* the endpoint whose route and method match */
    const char **values;
    bff_ep_conf_t *bad;          /* a route matched but a parameter did not */
    int bad_param;
    const char *allow;           /* methods of routes that matched the path */
    const char *request_id;
    bff_trace_t trace;
    bff_obs_req_t *obs;          /* for the calls' span ids */
    json_t *body;                /* the client's body (POST, PUT, PATCH) */
} bff_req_t;

static apr_reslist_t *fetchers;  /* per child; NULL before child_init */

/* ----------------------------------------------------------- routing -- */

static int method_matches(const bff_endpoint_t *ep, const request_rec *r)
{
    return !strcmp(ep->method, r->method)
           || (r->method_number == M_GET && r->header_only
               && !strcmp(ep->method, "GET"));
}

/* The decoded path the routes see: r->uri, unless the path the client
 * sent has an empty segment, which httpd's MergeSlashes takes out of
 * r->uri: then that path, decoded and with its dot segments resolved, so
 * "/users//orders" is an empty parameter (a 400), never the shorter
 * "/users/orders" with the segments after it shifted into parameters. */
static const char *route_path(request_rec *r)
{
    const char *raw = r->unparsed_uri, *end, *s;
    char *path;

    if (raw && raw[0] != '/' && (s = strstr(raw, "://"))) {
        raw = strchr(s + 3, '/');     /* absolute-form request target */
    }
    if (!raw || raw[0] != '/') {
        return r->uri;
    }
    end = raw + strcspn(raw, "?#");
    for (s = raw; s + 1 < end && !(s[0] == '/' && s[1] == '/'); s++) {
    }
    if (s + 1 >= end) {
        return r->uri;
    }
    path = apr_pstrmemdup(r->pool, raw, (apr_size_t)(end - raw));
    if (ap_unescape_url(path) != OK) {
        return r->uri;
    }
    ap_getparents(path);
    return path;
}

static int bff_translate(request_rec *r)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);
    bff_req_t *rq = NULL;
    const char *pattern = NULL, *path;
    int i;

    if (!sc->endpoints->nelts || !r->uri || r->uri[0] != '/') {
        return DECLINED;
    }
    path = route_path(r);
    for (i = 0; i < sc->endpoints->nelts; i++) {
        bff_ep_conf_t *epc = APR_ARRAY_IDX(sc->endpoints, i, bff_ep_conf_t *);
        const char **values;
        int bad = -1;
        bff_route_result_e m = bff_route_match(&values, &bad, epc->ep->route,
                                               path, r->pool);
        if (m == BFF_ROUTE_NOMATCH) {
            continue;
        }
        if (!rq) {
            rq = apr_pcalloc(r->pool, sizeof(*rq));
            pattern = epc->ep->pattern;
        }
        if (m == BFF_ROUTE_BADPARAM) {
            if (!rq->bad) {
                rq->bad = epc;
                rq->bad_param = bad;
            }
            continue;
        }
        rq->allow = rq->allow ? apr_pstrcat(r->pool, rq->allow, ", ",
                                            epc->ep->method, NULL)
                              : epc->ep->method;
        if (!strcmp(epc->ep->method, "GET")) {
            rq->allow = apr_pstrcat(r->pool, rq->allow, ", HEAD", NULL);
        }
        if (!rq->epc && method_matches(epc->ep, r)) {
            rq->epc = epc;
            pattern = epc->ep->pattern;
            rq->values = values;
        }
    }
    if (!rq) {
        return DECLINED;
    }
    ap_set_module_config(r->request_config, &bff_module, rq);
    /* the endpoint label (metrics, logs), also of answers the access phase
     * gives */
    apr_table_setn(r->notes, "bff-endpoint", pattern);
    r->handler = BFF_HANDLER;
    r->filename = apr_pstrcat(r->pool, "bff:", r->uri, NULL);
    return OK;
}

bff_ep_conf_t *bff_request_endpoint(request_rec *r)
{
    bff_req_t *rq = ap_get_module_config(r->request_config, &bff_module);

    return rq ? rq->epc : NULL;
}

void bff_request_set_body(request_rec *r, json_t *body)
{
    bff_req_t *rq = ap_get_module_config(r->request_config, &bff_module);

    if (rq) {
        rq->body = body;
    }
}

static int bff_map_to_storage(request_rec *r)
{
    /* not a file: skip the directory walk (the <Location> walk still runs) */
    return ap_get_module_config(r->request_config, &bff_module) ? OK : DECLINED;
}

/* ------------------------------------------------------- correlation -- */

static void set_correlation(request_rec *r, bff_req_t *rq)
{
    bff_obs_req_t *o = bff_obs_req(r);    /* mod_bff_log.c */

    rq->request_id = o->request_id;
    rq->trace = o->trace;
    rq->obs = o;
}

/* Every backend call gets its own span id under the request's trace. */
static void per_call_headers(void *baton, const bff_backend_t *be,
                             apr_array_header_t *hdrs, apr_pool_t *p)
{
    bff_req_t *rq = baton;
    unsigned char rnd[8];

    bff_random_bytes(rnd, sizeof(rnd));
    APR_ARRAY_PUSH(hdrs, const char *) = apr_pstrcat(p, "traceparent: ",
        bff_trace_child(&rq->trace, rnd, p), NULL);
}

static int header_value_ok(const char *v)
{
    for (; *v; v++) {
        if ((unsigned char)*v < 0x20 && *v != '\t') {
            return 0;
        }
        if (*v == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static void add_forwarded(apr_array_header_t *hdrs, request_rec *r,
                          const apr_array_header_t *names)
{
    int i;

    for (i = 0; i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, const char *);
        const char *v = apr_table_get(r->headers_in, name);
        if (v && header_value_ok(v)) {
            APR_ARRAY_PUSH(hdrs, const char *) = apr_pstrcat(r->pool, name,
                                                             ": ", v, NULL);
        }
    }
}

static int listed(const apr_array_header_t *names, const char *name)
{
    int i;

    for (i = 0; i < names->nelts; i++) {
        if (!strcasecmp(APR_ARRAY_IDX(names, i, const char *), name)) {
            return 1;
        }
    }
    return 0;
}

/* The identity headers of the location (set by mod_bff_authn.c from the
 * verified claims, client copies removed) always reach the backends. */
static void add_identity(apr_array_header_t *hdrs, request_rec *r,
                         const apr_array_header_t *fwd1,
                         const apr_array_header_t *fwd2)
{
    const apr_array_header_t *ids = bff_auth_identity_names(r);
    apr_array_header_t *todo;
    int i;

    if (!ids) {
        return;
    }
    todo = apr_array_make(r->pool, ids->nelts, sizeof(const char *));
    for (i = 0; i < ids->nelts; i++) {
        const char *name = APR_ARRAY_IDX(ids, i, const char *);
        if (!listed(fwd1, name) && !listed(fwd2, name)) {
            APR_ARRAY_PUSH(todo, const char *) = name;
        }
    }
    add_forwarded(hdrs, r, todo);
}

/* A call the TLS layer failed (an untrusted or misnamed certificate, a
 * client certificate the backend wants): a configuration matter, never
 * part of normal operation, so an error line of its own whatever the
 * answer, with libcurl's reason. */
static void log_tls_failure(request_rec *r, const bff_endpoint_t *ep,
                            const bff_backend_t *be,
                            const bff_be_result_t *br)
{
    if (!br->req.tls_failed) {
        return;
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(710)
                  "%s %s: backend '%s': TLS failure with %s: %s", ep->method,
                  ep->pattern, be->name, br->req.url ? br->req.url : "-",
                  br->detail ? br->detail : "no detail");
}

/* The failed calls of per-item backends, one line each. */
static void log_item_failures(request_rec *r, const bff_endpoint_t *ep,
                              const bff_run_result_t *res, int level)
{
    int i, k;

    for (i = 0; i < ep->backends->nelts; i++) {
        const bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i,
                                                const bff_backend_t *);
        const bff_be_result_t *br = &res->results[i];

        for (k = 0; br->items_failed && k < br->nitems; k++) {
            const bff_be_result_t *it = &br->items[k];
            if (it->state != BFF_BE_FAILED) {
                continue;
            }
            log_tls_failure(r, ep, be, it);
            ap_log_rerror(APLOG_MARK, level, 0, r, BFFLOGNO(400)
                          "%s %s: backend '%s' item %d of %d failed: %s%s%s "
                          "(%s %s)", ep->method, ep->pattern, be->name, k + 1,
                          br->nitems, it->reason, it->detail ? ": " : "",
                          it->detail ? it->detail : "", be->method,
                          it->req.url ? it->req.url : "-");
        }
    }
}

static void log_failures(request_rec *r, const bff_endpoint_t *ep,
                         const bff_run_result_t *res)
{
    /* warn only when the client gets a gateway error: a partial answer or
     * a 404 passed on are part of normal operation */
    int level = res->status >= 500 ? APLOG_WARNING : APLOG_INFO;
    int i;

    for (i = 0; i < ep->backends->nelts; i++) {
        const bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i,
                                                const bff_backend_t *);
        const bff_be_result_t *br = &res->results[i];
        if (br->state != BFF_BE_FAILED) {
            continue;
        }
        if (br->nitems == 0) {
            log_tls_failure(r, ep, be, br);
        }
        /* a refusal by an open breaker was logged once, when it opened */
        ap_log_rerror(APLOG_MARK, br->refused ? APLOG_DEBUG : level, 0,
                      r, BFFLOGNO(10) "%s %s: %s backend '%s' failed: %s%s%s "
                      "(%s %s)", ep->method, ep->pattern,
                      be->required ? "required" : "optional", be->name,
                      br->reason, br->detail ? ": " : "",
                      br->detail ? br->detail : "",
                      be->method, br->req.url ? br->req.url : "-");
    }
    log_item_failures(r, ep, res, level);
    if (res->status == 502 && !res->backend && res->detail) {
        /* every backend answered, but the answer cannot be built */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(402)
                      "%s %s: %s", ep->method, ep->pattern, res->detail);
    }
}

/* ----------------------------------------------------------- handler -- */

/* What every backend call of the request carries: the request id, the
 * forwarded client headers, the identity headers and the forwarded query.
 * Built before the cache is looked up, which derives its key from it. */
static void build_call_ctx(bff_call_ctx_t *cc, request_rec *r, bff_req_t *rq,
                           const bff_ep_conf_t *epc, const bff_shape_t *fields)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);
    apr_array_header_t *hdrs = apr_array_make(r->pool, 4, sizeof(const char *));
    const char *query;

    APR_ARRAY_PUSH(hdrs, const char *) = apr_pstrcat(r->pool, "X-Request-ID: ",
                                                     rq->request_id, NULL);
    add_forwarded(hdrs, r, sc->fwd_headers);
    add_forwarded(hdrs, r, epc->fwd_headers);
    add_identity(hdrs, r, sc->fwd_headers, epc->fwd_headers);
    query = bff_query_filter(r->args, sc->fwd_query, r->pool);
    if (epc->fwd_query->nelts) {
        const char *q2 = bff_query_filter(r->args, epc->fwd_query, r->pool);
        query = query && q2 ? apr_pstrcat(r->pool, query, "&", q2, NULL)
                            : query ? query : q2;
    }
    memset(cc, 0, sizeof(*cc));
    cc->headers = hdrs;
    cc->query = query;
    cc->per_call = per_call_headers;
    cc->baton = rq;
    cc->policy = bff_res_policy(r, epc);
    cc->fields = fields;
    cc->body = rq->body;
}

static int bff_handler(request_rec *r)
{
    bff_req_t *rq;
    bff_ep_conf_t *epc;
    bff_call_ctx_t cc;
    bff_run_result_t res;
    bff_fetcher_t *f;
    const char *body = NULL, *etag = NULL, *detail = NULL;
    const bff_shape_t *fields;
    json_t *extra = NULL;
    apr_size_t len = 0;
    bff_cache_req_t *cr = NULL;
    apr_status_t rv;
    int rc;

    if (!r->handler || strcmp(r->handler, BFF_HANDLER)) {
        return DECLINED;
    }
    rq = ap_get_module_config(r->request_config, &bff_module);
    if (!rq) {
        /* SetHandler bff-aggregate on a path no <BFFEndpoint> matches */
        return HTTP_NOT_FOUND;
    }
    set_correlation(r, rq);
    epc = rq->epc;

    if (!epc && rq->allow) {
        apr_table_setn(r->headers_out, "Allow", rq->allow);
        return bff_send_problem(r, HTTP_METHOD_NOT_ALLOWED,
                                "Method Not Allowed",
                                apr_psprintf(r->pool, "%s is not allowed here "
                                             "(allowed: %s)", r->method,
                                             rq->allow), NULL);
    }
    if (!epc) {
        return bff_send_problem(r, HTTP_BAD_REQUEST, "Bad Request",
            apr_psprintf(r->pool, "parameter '%s' does not match %s",
                         bff_route_param_name(rq->bad->ep->route, rq->bad_param),
                         rq->bad->ep->pattern), NULL);
    }
    /* a body an endpoint takes was read (and validated) in the fixups */
    if (!epc->ep->takes_body && (rc = ap_discard_request_body(r)) != OK) {
        return rc;
    }
    apr_table_setn(r->notes, "bff-endpoint", epc->ep->pattern);
    if ((rc = bff_profile_prepare(r, epc, &fields, &detail, &extra)) != OK) {
        return bff_send_problem(r, rc, "Bad Request", detail, extra);
    }
    build_call_ctx(&cc, r, rq, epc, fields);
    if (bff_cache_lookup(&cr, r, epc, rq->values, &cc) == OK) {
        return OK;
    }
    if ((detail = bff_overload_enter(r, epc)) != NULL) {
        return bff_send_problem(r, HTTP_SERVICE_UNAVAILABLE,
                                "Service Unavailable", detail, NULL);
    }

    if (!fetchers) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(11)
                      "no backend client pool in this child");
        return bff_send_problem(r, HTTP_SERVICE_UNAVAILABLE,
                                "Service Unavailable", "gateway not ready",
                                NULL);
    }
    rv = apr_reslist_acquire(fetchers, (void **)&f);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, BFFLOGNO(12)
                      "cannot get a backend client");
        return bff_send_problem(r, HTTP_SERVICE_UNAVAILABLE,
                                "Service Unavailable",
                                "no backend client available", NULL);
    }
    bff_engine_run(&res, epc->ep, rq->values, &cc, f, r->pool);
    apr_reslist_release(fetchers, f);
    bff_obs_note_run(r, epc->ep, &res);
    bff_metrics_run(r, epc->ep, &res);

    log_failures(r, epc->ep, &res);
    if (res.status == 200) {
        body = bff_json_dump(&len, res.doc, r->pool);
        etag = bff_cache_etag(body, len, r->pool);
    }
    if (bff_cache_finish(cr, r, &res, body, len, etag) == OK) {
        return OK;    /* answered from the cache instead of an error */
    }
    apr_table_setn(r->notes, "bff-completed", res.completed ? "true" : "false");
    if (res.status != 200) {
        return bff_send_problem(r, res.status, res.title, res.detail, NULL);
    }
    apr_table_setn(r->headers_out, "X-BFF-Completed",
                   res.completed ? "true" : "false");
    return bff_send_body(r, HTTP_OK, "application/json", body, len, etag);
}

/* ----------------------------------------------------- fetcher pool -- */

typedef struct {
    bff_fetch_curl_opts_t opts;
    int http_client;
    bff_fetch_shared_t *shared;    /* BFFBackendPool child */
} pool_params_t;

static apr_status_t client_create(bff_fetcher_t **f, const pool_params_t *pp,
                                  apr_pool_t *p)
{
    return pp->http_client == BFF_HTTP_CLIENT_CURL
           ? bff_fetch_curl_create(f, &pp->opts, p)
           : bff_fetch_h1_create(f, &pp->opts, p);
}

/* a worker thread's fetcher: its own client, or its handle on the
 * child's */
static apr_status_t fetcher_construct(void **res, void *params, apr_pool_t *p)
{
    pool_params_t *pp = params;
    bff_fetcher_t *f;
    apr_status_t rv = pp->shared ? bff_fetch_shared_handle(&f, pp->shared, p)
                                 : client_create(&f, pp, p);

    *res = f;
    return rv;
}

static apr_status_t fetcher_destruct(void *res, void *params, apr_pool_t *p)
{
    bff_fetcher_t *f = res;

    f->vt->destroy(f);
    return APR_SUCCESS;
}

apr_status_t bff_aggregate_child_init(apr_pool_t *pchild, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config, &bff_module);
    pool_params_t *pp = apr_pcalloc(pchild, sizeof(*pp));
    server_rec *vs;
    int threads = 1, any = 0;
    int per_child = sc->backend_pool != BFF_POOL_THREAD;
    long max_origin = sc->backend_max_origin;

    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *vsc = ap_get_module_config(vs->module_config,
                                                      &bff_module);
        any |= vsc->endpoints->nelts > 0;
    }
    if (!any) {
        return APR_SUCCESS;
    }
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    if (threads < 1) {
        threads = 1;
    }
    if (max_origin == 0) {
        max_origin = per_child ? BFF_POOL_MAX_ORIGIN : -1;
    }
    pp->opts.max_host_connections = max_origin > 0 ? max_origin : 0;
    pp->opts.max_cached_connections = sc->backend_conns ? sc->backend_conns
                                      : per_child ? BFF_POOL_IDLE_CHILD
                                                  : BFF_POOL_IDLE_THREAD;
    pp->opts.idle_timeout_ms = sc->backend_idle_ms;
    pp->http_client = sc->http_client ? sc->http_client : BFF_HTTP_CLIENT_NATIVE;
    if (per_child) {
        bff_fetcher_t *inner;
        apr_status_t rv = client_create(&inner, pp, pchild);
        if (rv == APR_SUCCESS) {
            rv = bff_fetch_shared_create(&pp->shared, inner, pchild);
        }
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(161)
                         "the child's backend connection pool could not be "
                         "set up");
            return rv;
        }
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, BFFLOGNO(4)
                 "backend HTTP client: %s, %s, %ld idle connections kept "
                 "(closed after %ld ms idle), %s connections per backend "
                 "origin", pp->http_client == BFF_HTTP_CLIENT_CURL ? "curl"
                 : "native", per_child
                 ? "one pool per child shared by its threads"
                 : "one pool per worker thread",
                 pp->opts.max_cached_connections, pp->opts.idle_timeout_ms
                 ? pp->opts.idle_timeout_ms : (long)BFF_FETCH_IDLE_MS,
                 max_origin > 0 ? apr_ltoa(pchild, max_origin) : "unbounded");
    /* one fetcher per worker thread at most: a thread never waits for one */
    return apr_reslist_create(&fetchers, 0, threads, threads, 0,
                              fetcher_construct, fetcher_destruct, pp, pchild);
}

void bff_aggregate_register_hooks(apr_pool_t *p)
{
    /* before mod_proxy's ProxyPass and mod_alias: an endpoint is more
     * specific than a catch-all proxy */
    static const char *const succ[] = { "mod_proxy.c", "mod_alias.c",
                                        "mod_rewrite.c", NULL };

    ap_hook_translate_name(bff_translate, NULL, succ, APR_HOOK_FIRST);
    ap_hook_map_to_storage(bff_map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(bff_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
