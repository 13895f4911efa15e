/*
 * mod_bff: correlation (request id, W3C trace context) and JSON access logs.
 *
 * post_read_request gives every request of the server (aggregated
 * endpoints, ProxyPass routes, static files, errors) its request id and
 * trace context, unless BFFRequestID Off: then only aggregated endpoints
 * get them, when their handler asks (bff_request_id).
 *
 * mod_log_config escapes %{..}n, %{..}i and the like with \xHH, which is
 * not JSON. mod_bff registers its own LogFormat item, %{NAME}J, whose value
 * is always one complete JSON value (a string escaped by bff_json_quote,
 * a number, true/false, an object, or null), so a format made of %{..}J
 * items and literal text is one valid JSON object per line whatever a
 * client sends (conf/bff-log.conf).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "mod_log_config.h"

#include "apr_optional.h"
#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_obs.h"
#include "bff_cache.h"
#include "bff_http.h"
#include "bff_obs.h"

APLOG_USE_MODULE(bff);

#define OBS_KEY "bff-obs"

/* --------------------------------------------------------- correlation -- */

/* The request the others (subrequests, internal redirects) belong to. */
static request_rec *root_of(request_rec *r)
{
    while (r->main) {
        r = r->main;
    }
    while (r->prev) {
        r = r->prev;
    }
    return r;
}

static bff_obs_req_t *obs_find(request_rec *r)
{
    void *v = NULL;

    apr_pool_userdata_get(&v, OBS_KEY, root_of(r)->pool);
    return v;
}

/* Request id: a valid client X-Request-ID, else mod_unique_id's UNIQUE_ID,
 * else random. Trace: the client's valid traceparent continued, else a new
 * trace. The gateway's own span is the parent of what ProxyPass sends. */
static bff_obs_req_t *obs_create(request_rec *r)
{
    bff_obs_req_t *o = apr_pcalloc(r->pool, sizeof(*o));
    const char *id = apr_table_get(r->headers_in, "X-Request-ID");
    /* request id (16), trace id (16), span id (8) */
    unsigned char rnd[40];

    bff_random_bytes(rnd, sizeof(rnd));
    if (!bff_request_id_valid(id)) {
        id = apr_table_get(r->subprocess_env, "UNIQUE_ID");
        if (!bff_request_id_valid(id)) {
            id = bff_hex(rnd, 16, r->pool);
        }
    }
    o->request_id = apr_pstrdup(r->pool, id);
    o->continued = bff_trace_parse(&o->trace,
                                   apr_table_get(r->headers_in, "traceparent"));
    if (!o->continued) {
        bff_trace_new(&o->trace, rnd + 16);
    }
    o->traceparent = bff_trace_child(&o->trace, rnd + 32, r->pool);
    o->span_id = apr_pstrmemdup(r->pool, o->traceparent + 36, 16);

    apr_table_setn(r->notes, "bff-request-id", o->request_id);
    apr_table_setn(r->notes, "bff-trace-id",
                   apr_pstrdup(r->pool, o->trace.trace_id));
    apr_table_setn(r->notes, "bff-span-id", o->span_id);
    /* err_headers_out: also on error pages, and kept when mod_proxy
     * replaces headers_out with the backend's */
    apr_table_setn(r->err_headers_out, "X-Request-ID", o->request_id);
    apr_pool_userdata_setn(o, OBS_KEY, NULL, r->pool);
    return o;
}

/* What ProxyPass (and any other handler passing request headers on)
 * forwards: the request id, and a traceparent naming the gateway's span;
 * a tracestate that belongs to a trace we did not continue goes. */
static void obs_forward(request_rec *r, const bff_obs_req_t *o)
{
    apr_table_setn(r->headers_in, "X-Request-ID", o->request_id);
    apr_table_setn(r->headers_in, "traceparent", o->traceparent);
    if (!o->continued) {
        apr_table_unset(r->headers_in, "tracestate");
    }
}

bff_obs_req_t *bff_obs_req(request_rec *r)
{
    bff_obs_req_t *o = obs_find(r);

    return o ? o : obs_create(root_of(r));
}

const char *bff_request_id(request_rec *r)
{
    return bff_obs_req(r)->request_id;
}

static int obs_post_read_request(request_rec *r)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);

    if (sc->request_id != 0 && !r->main && !r->prev) {
        obs_forward(r, bff_obs_req(r));
    }
    return DECLINED;
}

/* mod_proxy fills headers_out with the backend's response headers: a
 * backend echoing X-Request-ID (common practice) would make the answer
 * carry the header twice, ours being in err_headers_out. The gateway's id
 * wins. Runs after content filters (mod_headers) and before the HTTP
 * header filter, once. */
#define OBS_ID_FILTER "BFF_REQUEST_ID"

static apr_status_t obs_id_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;

    if (apr_table_get(r->err_headers_out, "X-Request-ID")) {
        apr_table_unset(r->headers_out, "X-Request-ID");
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void obs_insert_filter(request_rec *r)
{
    if (obs_find(r)) {
        ap_add_output_filter(OBS_ID_FILTER, NULL, r, r->connection);
    }
}

/* ------------------------------------------------------ backend timings -- */

static const char *outcome(const bff_be_result_t *br)
{
    switch (br->state) {
    case BFF_BE_OK:      return "ok";
    case BFF_BE_FAILED:  return "failed";
    case BFF_BE_SKIPPED: return "skipped";
    default:             return "not-run";
    }
}

/* A backend that failed or was skipped: the log names its reason, and
 * it counts among the run's failures. */
static int run_failed(const bff_be_result_t *br)
{
    return br->state == BFF_BE_FAILED || br->state == BFF_BE_SKIPPED;
}

void bff_obs_note_run(request_rec *r, const bff_endpoint_t *ep,
                      const bff_run_result_t *res)
{
    bff_obs_req_t *o;
    int i;

    if (r->main) {
        /* a subrequest's pool is gone before the client's request is
         * logged: the log line and the event are the client's request's */
        return;
    }
    o = bff_obs_req(r);
    o->ep = ep;
    o->results = res->results;
    o->backends = NULL;
    o->failures = NULL;
    o->agg_ms = (double)res->elapsed / 1000.0;
    for (i = 0; i < ep->backends->nelts; i++) {
        const bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i,
                                                const bff_backend_t *);
        const bff_be_result_t *br = &res->results[i];
        bff_obs_failure_t *f;

        if (!run_failed(br)) {
            continue;
        }
        if (!o->failures) {
            o->failures = apr_array_make(r->pool, 1,
                                         sizeof(bff_obs_failure_t));
        }
        f = apr_array_push(o->failures);
        f->backend = be->name;
        f->reason = br->reason ? br->reason : outcome(br);
        f->status = br->status;
        f->ms = (double)br->elapsed / 1000.0;
        f->required = be->required;
    }
}

const char *bff_obs_duration_ms(request_rec *r)
{
    return apr_psprintf(r->pool, "%.3f",
                        (double)(apr_time_now() - r->request_time) / 1000.0);
}

const char *bff_obs_aggregation_ms(request_rec *r, const bff_obs_req_t *o)
{
    return o && o->results ? apr_psprintf(r->pool, "%.3f", o->agg_ms) : NULL;
}

const char *bff_obs_backends(request_rec *r, bff_obs_req_t *o)
{
    apr_array_header_t *parts;
    int i;

    if (!o || !o->results || o->backends) {
        return o ? o->backends : NULL;
    }
    parts = apr_array_make(r->pool, o->ep->backends->nelts,
                           sizeof(const char *));
    for (i = 0; i < o->ep->backends->nelts; i++) {
        const bff_backend_t *be = APR_ARRAY_IDX(o->ep->backends, i,
                                                const bff_backend_t *);
        const bff_be_result_t *br = &o->results[i];
        const char *item = apr_psprintf(r->pool, "%s:{\"outcome\":\"%s\","
            "\"status\":%d,\"ms\":%.3f", bff_json_quote_str(be->name, r->pool),
            outcome(br), br->status, (double)br->elapsed / 1000.0);

        if (run_failed(br)) {
            item = apr_pstrcat(r->pool, item, ",\"reason\":",
                               bff_json_quote_str(br->reason, r->pool), NULL);
        }
        APR_ARRAY_PUSH(parts, const char *) = apr_pstrcat(r->pool, item, "}",
                                                          NULL);
    }
    o->backends = apr_pstrcat(r->pool, "{",
                              apr_array_pstrcat(r->pool, parts, ','), "}",
                              NULL);
    return o->backends;
}

/* ---------------------------------------------------- LogFormat %{..}J -- */

static const char *json_or_null(const char *s, apr_pool_t *p)
{
    return bff_json_quote_str(s, p);
}

static const char *note_of(request_rec *orig, request_rec *last,
                           const char *name)
{
    const char *v = apr_table_get(last->notes, name);

    return v ? v : apr_table_get(orig->notes, name);
}

static const char *iso_time(apr_time_t t, apr_pool_t *p)
{
    apr_time_exp_t x;

    apr_time_exp_gmt(&x, t);
    return apr_psprintf(p, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                        x.tm_year + 1900, x.tm_mon + 1, x.tm_mday, x.tm_hour,
                        x.tm_min, x.tm_sec, x.tm_usec / 1000);
}

/* %{NAME}J. r is the original request (want_orig); the final one (after
 * internal redirects) gives the status and response headers. */
static const char *log_json(request_rec *r, char *a)
{
    request_rec *last = r;
    bff_obs_req_t *o = obs_find(r);
    const char *v;

    while (last->next) {
        last = last->next;
    }
    if (!strcmp(a, "time")) {
        return iso_time(r->request_time, r->pool);
    }
    if (!strcmp(a, "request_id")) {
        return json_or_null(o ? o->request_id : NULL, r->pool);
    }
    if (!strcmp(a, "trace_id")) {
        return json_or_null(o ? o->trace.trace_id : NULL, r->pool);
    }
    if (!strcmp(a, "span_id")) {
        return json_or_null(o ? o->span_id : NULL, r->pool);
    }
    if (!strcmp(a, "method")) {
        return json_or_null(r->method, r->pool);
    }
    if (!strcmp(a, "path")) {
        return json_or_null(r->uri, r->pool);
    }
    if (!strcmp(a, "query")) {
        return json_or_null(r->args, r->pool);
    }
    if (!strcmp(a, "protocol")) {
        return json_or_null(r->protocol, r->pool);
    }
    if (!strcmp(a, "status")) {
        return apr_itoa(r->pool, last->status);
    }
    if (!strcmp(a, "duration_ms")) {
        return bff_obs_duration_ms(r);
    }
    if (!strcmp(a, "bytes")) {
        return apr_off_t_toa(r->pool, last->bytes_sent);
    }
    if (!strcmp(a, "client")) {
        return json_or_null(r->useragent_ip, r->pool);
    }
    if (!strcmp(a, "endpoint")) {
        return json_or_null(note_of(r, last, "bff-endpoint"), r->pool);
    }
    if (!strcmp(a, "cache")) {
        return json_or_null(note_of(r, last, "bff-cache"), r->pool);
    }
    if (!strcmp(a, "completed")) {
        v = note_of(r, last, "bff-completed");
        return !v ? "null" : !strcmp(v, "true") ? "true" : "false";
    }
    if (!strcmp(a, "backends")) {
        v = bff_obs_backends(r, o);
        return v ? v : "null";
    }
    if (!strcmp(a, "aggregation_ms")) {
        v = bff_obs_aggregation_ms(r, o);
        return v ? v : "null";
    }
    if (!strcmp(a, "subject")) {
        v = note_of(r, last, "bff-subject");
        return json_or_null(v ? v : last->user ? last->user : r->user, r->pool);
    }
    if (!strcmp(a, "auth")) {
        return json_or_null(note_of(r, last, "bff-auth"), r->pool);
    }
    if (!strncmp(a, "note:", 5)) {
        return json_or_null(note_of(r, last, a + 5), r->pool);
    }
    if (!strncmp(a, "header:", 7)) {
        return json_or_null(apr_table_get(r->headers_in, a + 7), r->pool);
    }
    if (!strncmp(a, "resp:", 5)) {
        v = apr_table_get(last->err_headers_out, a + 5);
        return json_or_null(v ? v : apr_table_get(last->headers_out, a + 5),
                            r->pool);
    }
    if (!strncmp(a, "env:", 4)) {
        v = apr_table_get(last->subprocess_env, a + 4);
        return json_or_null(v ? v : apr_table_get(r->subprocess_env, a + 4),
                            r->pool);
    }
    return "null";
}

static int obs_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp)
{
    APR_OPTIONAL_FN_TYPE(ap_register_log_handler) *reg
        = APR_RETRIEVE_OPTIONAL_FN(ap_register_log_handler);

    if (reg) {
        /* want_orig 1: the request as the client sent it, like %r */
        reg(pconf, (char *)"J", log_json, 1);
    }
    return OK;
}

/* -------------------------------------------------------- directives -- */

const char *bff_log_cmd_request_id(cmd_parms *cmd, void *dcv, int on)
{
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);

    sc->request_id = on;
    return NULL;
}

void bff_log_register_hooks(apr_pool_t *p)
{
    /* after mod_unique_id has set UNIQUE_ID */
    static const char *const pred[] = { "mod_unique_id.c", NULL };

    ap_hook_pre_config(obs_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(obs_post_read_request, pred, NULL,
                              APR_HOOK_MIDDLE);
    ap_hook_insert_filter(obs_insert_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_output_filter(OBS_ID_FILTER, obs_id_filter, NULL,
                              AP_FTYPE_PROTOCOL - 1);
}
