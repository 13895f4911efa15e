/*
 * The aggregation engine: endpoint definitions and the per-request run.
 */
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "bff_engine.h"

#define DEFAULT_TIMEOUT_MS          5000
#define DEFAULT_CONNECT_TIMEOUT_MS  1000
#define DEFAULT_MAX_BODY            (1024 * 1024)
#define DEFAULT_MAX_DEPTH           64
#define DEFAULT_MAX_BACKENDS        32

bff_endpoint_t *bff_endpoint_create(const char *method, const char *pattern,
                                    apr_pool_t *p)
{
    bff_endpoint_t *ep = apr_pcalloc(p, sizeof(*ep));

    ep->method = apr_pstrdup(p, method);
    ep->pattern = apr_pstrdup(p, pattern);
    ep->backends = apr_array_make(p, 4, sizeof(bff_backend_t *));
    ep->shape = bff_shape_create(p);
    ep->timeout_ms = DEFAULT_TIMEOUT_MS;
    ep->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    ep->max_body = DEFAULT_MAX_BODY;
    ep->max_depth = DEFAULT_MAX_DEPTH;
    ep->max_backends = DEFAULT_MAX_BACKENDS;
    return ep;
}

/* ------------------------------------------------------------ config -- */

static int name_ok(const char *s)
{
    if (!*s || !(apr_isalpha(*s) || *s == '_')) {
        return 0;
    }
    for (s++; *s; s++) {
        if (!(apr_isalnum(*s) || *s == '_' || *s == '-')) {
            return 0;
        }
    }
    return 1;
}

const char *bff_backend_option(bff_backend_t *be, const char *opt,
                               apr_pool_t *p)
{
    const char *v;

    if (!strcmp(opt, "required")) {
        be->required = 1;
        return NULL;
    }
    if (!strcmp(opt, "optional")) {
        be->required = 0;
        return NULL;
    }
    if (!strncmp(opt, "default=", 8)) {
        json_error_t jerr;
        json_t *j = json_loads(opt + 8, JSON_DECODE_ANY, &jerr);
        if (!j) {
            return apr_psprintf(p, "default=: invalid JSON '%s': %s",
                                opt + 8, jerr.text);
        }
        be->defval = bff_json_pool_own(j, p);
        return NULL;
    }
    if (!strncmp(opt, "body=", 5)) {
        const char *err = bff_tpl_compile(&be->body, opt + 5, BFF_TPL_JSON, p);
        return err ? apr_psprintf(p, "body=: %s", err) : NULL;
    }
    if (!strncmp(opt, "timeout=", 8)) {
        const char *err = bff_parse_duration_ms(&be->timeout_ms, opt + 8, p);
        if (!err && be->timeout_ms <= 0) {
            err = "must be greater than 0";
        }
        return err ? apr_psprintf(p, "timeout=: %s", err) : NULL;
    }
    if (!strncmp(opt, "max-size=", 9)) {
        const char *err = bff_parse_size(&be->max_body, opt + 9, p);
        if (!err && be->max_body == 0) {
            err = "must be greater than 0";
        }
        return err ? apr_psprintf(p, "max-size=: %s", err) : NULL;
    }
    v = strchr(opt, '=');
    return apr_psprintf(p, "unknown option '%s' (expected required, optional, "
                        "default=JSON, body=TEMPLATE, timeout=DURATION or "
                        "max-size=SIZE)",
                        v ? apr_pstrmemdup(p, opt, (apr_size_t)(v - opt + 1)) : opt);
}

int bff_endpoint_param(const bff_endpoint_t *ep, const char *name)
{
    int i, n = bff_route_nparams(ep->route);

    for (i = 0; i < n; i++) {
        if (!strcmp(bff_route_param_name(ep->route, i), name)) {
            return i;
        }
    }
    return -1;
}

int bff_endpoint_backend(const bff_endpoint_t *ep, const char *name)
{
    int i;

    for (i = 0; i < ep->backends->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(ep->backends, i, bff_backend_t *)->name, name)) {
            return i;
        }
    }
    return -1;
}

static const char *add_deps(bff_endpoint_t *ep, bff_backend_t *be,
                            const bff_tpl_t *tpl, apr_pool_t *p)
{
    const apr_array_header_t *refs;
    int i, j;

    if (!tpl) {
        return NULL;
    }
    refs = bff_tpl_refs(tpl);
    for (i = 0; i < refs->nelts; i++) {
        const bff_ref_t *ref = APR_ARRAY_IDX(refs, i, const bff_ref_t *);
        const char *root = bff_ref_root(ref);
        int dep;

        if (bff_endpoint_param(ep, root) >= 0) {
            continue;
        }
        dep = bff_endpoint_backend(ep, root);
        if (dep < 0) {
            return apr_psprintf(p, "backend '%s': reference {%s} names neither "
                                "a parameter of %s nor a backend", be->name,
                                bff_ref_text(ref), ep->pattern);
        }
        if (dep == be->index) {
            return apr_psprintf(p, "backend '%s': reference {%s} refers to "
                                "its own reply", be->name, bff_ref_text(ref));
        }
        for (j = 0; j < be->deps->nelts; j++) {
            if (APR_ARRAY_IDX(be->deps, j, int) == dep) {
                break;
            }
        }
        if (j == be->deps->nelts) {
            APR_ARRAY_PUSH(be->deps, int) = dep;
        }
    }
    return NULL;
}

/* Depth-first search for a dependency cycle; color: 0 new, 1 on stack,
 * 2 done. Returns the backend index closing a cycle, or -1. */
static int find_cycle(const bff_endpoint_t *ep, int i, int *color)
{
    bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i, bff_backend_t *);
    int j;

    color[i] = 1;
    for (j = 0; j < be->deps->nelts; j++) {
        int d = APR_ARRAY_IDX(be->deps, j, int);
        if (color[d] == 1) {
            return d;
        }
        if (color[d] == 0) {
            int c = find_cycle(ep, d, color);
            if (c >= 0) {
                return c;
            }
        }
    }
    color[i] = 2;
    return -1;
}

const char *bff_endpoint_finalize(bff_endpoint_t *ep, apr_pool_t *p)
{
    int i, *color;
    const char *err;

    if (ep->backends->nelts == 0) {
        return "no BFFBackend defined";
    }
    if (ep->backends->nelts > ep->max_backends) {
        return apr_psprintf(p, "%d backends defined, more than the limit of "
                            "%d (BFFMaxBackends)", ep->backends->nelts,
                            ep->max_backends);
    }
    for (i = 0; i < ep->backends->nelts; i++) {
        bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i, bff_backend_t *);

        be->index = i;
        be->deps = apr_array_make(p, 2, sizeof(int));
        if (!name_ok(be->name) || be->name[0] == '_') {
            return apr_psprintf(p, "backend name '%s' is invalid (letters, "
                                "digits, '_' and '-', not starting with '_' "
                                "or a digit)", be->name);
        }
        if (bff_endpoint_backend(ep, be->name) != i) {
            return apr_psprintf(p, "backend '%s' is defined twice", be->name);
        }
        if (bff_endpoint_param(ep, be->name) >= 0) {
            return apr_psprintf(p, "backend '%s' has the name of a parameter "
                                "of %s", be->name, ep->pattern);
        }
        if (be->required && be->defval) {
            return apr_psprintf(p, "backend '%s': default= has no use on a "
                                "required backend", be->name);
        }
        if (be->body && (!strcmp(be->method, "GET")
                         || !strcmp(be->method, "HEAD"))) {
            return apr_psprintf(p, "backend '%s': body= needs a method that "
                                "takes a body, not %s", be->name, be->method);
        }
    }
    for (i = 0; i < ep->backends->nelts; i++) {
        bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i, bff_backend_t *);
        if ((err = add_deps(ep, be, be->url, p)) != NULL
            || (err = add_deps(ep, be, be->body, p)) != NULL) {
            return err;
        }
    }
    color = apr_pcalloc(p, sizeof(int) * (apr_size_t)ep->backends->nelts);
    for (i = 0; i < ep->backends->nelts; i++) {
        if (color[i] == 0) {
            int c = find_cycle(ep, i, color);
            if (c >= 0) {
                return apr_psprintf(p, "backend '%s' is part of a dependency "
                    "cycle", APR_ARRAY_IDX(ep->backends, c, bff_backend_t *)->name);
            }
        }
    }
    return NULL;
}

/* --------------------------------------------------------------- run -- */

typedef struct {
    const bff_endpoint_t *ep;
    const char *const *values;
    const bff_call_ctx_t *cc;
    bff_run_result_t *res;
    bff_fetcher_t *f;
    json_t **param_json;       /* lazily built JSON of each parameter */
    const bff_policy_t *pol;   /* NULL: no breaker, no retry */
    void **token;              /* per backend: the policy's, for report */
    apr_time_t *retry_at;      /* per backend: 0, or when to try again */
    int retrying;              /* backends waiting for a retry */
    int running;
    int required_failed;       /* index + 1 */
    apr_time_t deadline;
    apr_pool_t *p;
} run_t;

static json_t *lookup(void *baton, const bff_ref_t *ref)
{
    run_t *run = baton;
    const char *root = bff_ref_root(ref);
    json_t *base = NULL;
    int i = bff_endpoint_param(run->ep, root);

    if (i >= 0) {
        base = run->param_json[i];
    }
    else if ((i = bff_endpoint_backend(run->ep, root)) >= 0
             && run->res->results[i].state == BFF_BE_OK) {
        base = run->res->results[i].value;
    }
    if (!base) {
        return NULL;
    }
    return bff_json_pool_own(bff_ref_eval(ref, base), run->p);
}

/* Milliseconds until the deadline, rounded up so that a wait for them ends
 * at or after the deadline, never just before it. */
static long ms_left(apr_time_t deadline)
{
    apr_interval_time_t us = deadline - apr_time_now();

    return us <= 0 ? 0 : (long)((us + 999) / 1000);
}

static void fail(run_t *run, int i, const char *reason, const char *detail)
{
    bff_be_result_t *r = &run->res->results[i];
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);

    r->state = BFF_BE_FAILED;
    r->reason = reason;
    r->detail = detail;
    if (be->required && !run->required_failed) {
        run->required_failed = i + 1;
    }
}

static void report(run_t *run, int i, int cancelled)
{
    if (run->pol && run->pol->report) {
        run->pol->report(run->pol->baton,
                         APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *),
                         run->token[i], &run->res->results[i].req, cancelled);
    }
    run->token[i] = NULL;
}

static void launch(run_t *run, int i)
{
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
    bff_be_result_t *r = &run->res->results[i];
    const bff_call_ctx_t *cc = run->cc;
    apr_array_header_t *hdrs;
    const char *url, *body = NULL, *err;
    long left, timeout;

    err = bff_tpl_expand(&url, be->url, lookup, run, run->p);
    if (!err && be->body) {
        err = bff_tpl_expand(&body, be->body, lookup, run, run->p);
    }
    if (err) {
        fail(run, i, "missing input", err);
        return;
    }
    if (cc && cc->query && *cc->query) {
        url = apr_pstrcat(run->p, url, strchr(url, '?') ? "&" : "?",
                          cc->query, NULL);
    }

    left = ms_left(run->deadline);
    timeout = be->timeout_ms > 0 && be->timeout_ms < run->ep->timeout_ms
              ? be->timeout_ms : run->ep->timeout_ms;
    if (timeout > left) {
        timeout = left;
    }
    if (timeout <= 0) {
        r->err = BFF_FETCH_ETIMEOUT;
        fail(run, i, bff_fetch_err_str(BFF_FETCH_ETIMEOUT),
             "endpoint deadline passed before the call");
        return;
    }
    if (run->pol && run->pol->admit) {
        const char *why = run->pol->admit(run->pol->baton, be, r->attempts + 1,
                                          &url, &run->token[i], run->p);
        if (why) {
            r->refused = 1;
            r->err = BFF_FETCH_OK;
            r->status = 0;
            fail(run, i, why, NULL);
            return;
        }
    }
    r->attempts++;

    hdrs = apr_array_make(run->p, 8, sizeof(const char *));
    APR_ARRAY_PUSH(hdrs, const char *) = "Accept: application/json";
    if (body) {
        APR_ARRAY_PUSH(hdrs, const char *) = "Content-Type: application/json";
    }
    if (cc && cc->headers) {
        apr_array_cat(hdrs, cc->headers);
    }
    if (cc && cc->per_call) {
        cc->per_call(cc->baton, be, hdrs, run->p);
    }

    memset(&r->req, 0, sizeof(r->req));
    r->req.method = be->method;
    r->req.url = url;
    r->req.body = body;
    r->req.body_len = body ? strlen(body) : 0;
    r->req.headers = hdrs;
    r->req.timeout_ms = timeout;
    r->req.connect_timeout_ms = run->ep->connect_timeout_ms;
    r->req.max_body = be->max_body ? be->max_body : run->ep->max_body;
    r->req.baton = (void *)(apr_uintptr_t)(i + 1);
    if (bff_fetch_start(run->f, &r->req) != APR_SUCCESS) {
        report(run, i, 0);
        r->err = r->req.err;
        fail(run, i, bff_fetch_err_str(r->req.err),
             r->req.errmsg ? apr_pstrdup(run->p, r->req.errmsg) : NULL);
        return;
    }
    r->state = BFF_BE_RUNNING;
    run->running++;
}

/* Starts every pending backend whose dependencies are done, skipping those
 * whose dependencies failed; repeats until nothing changes, since a skip can
 * make further backends skippable. */
static void start_ready(run_t *run)
{
    int changed = 1, i, j;
    int n = run->ep->backends->nelts;

    while (changed && !run->required_failed) {
        changed = 0;
        for (i = 0; i < n && !run->required_failed; i++) {
            bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
            bff_be_result_t *r = &run->res->results[i];
            int ready = 1;
            const char *failed_dep = NULL;

            if (r->state != BFF_BE_PENDING
                || (run->retry_at[i] && run->retry_at[i] > apr_time_now())) {
                continue;
            }
            if (run->retry_at[i]) {
                run->retry_at[i] = 0;
                run->retrying--;
            }
            for (j = 0; j < be->deps->nelts; j++) {
                int d = APR_ARRAY_IDX(be->deps, j, int);
                bff_be_state_e s = run->res->results[d].state;
                if (s == BFF_BE_FAILED || s == BFF_BE_SKIPPED) {
                    failed_dep = APR_ARRAY_IDX(run->ep->backends, d,
                                               bff_backend_t *)->name;
                    break;
                }
                if (s != BFF_BE_OK) {
                    ready = 0;
                }
            }
            if (failed_dep) {
                fail(run, i, apr_psprintf(run->p, "dependency '%s' failed",
                                          failed_dep), NULL);
                r->state = BFF_BE_SKIPPED;
                changed = 1;
            }
            else if (ready) {
                launch(run, i);
                changed = 1;
            }
        }
    }
}

/* Asks the policy whether failed attempt i is retried; if so the backend
 * is pending again until its retry time, which must leave time before the
 * deadline. Returns 1 when a retry is scheduled. */
static int schedule_retry(run_t *run, int i, const bff_fetch_req_t *req)
{
    bff_be_result_t *r = &run->res->results[i];
    long delay;
    apr_time_t at;

    if (!run->pol || !run->pol->retry) {
        return 0;
    }
    delay = run->pol->retry(run->pol->baton,
                            APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *),
                            NULL, req, r->attempts);
    if (delay < 0) {
        return 0;
    }
    at = apr_time_now() + apr_time_from_msec(delay);
    if (at >= run->deadline) {
        return 0;
    }
    r->state = BFF_BE_PENDING;
    r->reason = req->err != BFF_FETCH_OK ? bff_fetch_err_str(req->err)
                : apr_psprintf(run->p, "HTTP %d", req->status);
    run->retry_at[i] = at ? at : 1;
    run->retrying++;
    return 1;
}

static void finish(run_t *run, bff_fetch_req_t *req)
{
    int i = (int)(apr_uintptr_t)req->baton - 1;
    bff_be_result_t *r = &run->res->results[i];
    json_error_t jerr;
    json_t *j;

    run->running--;
    r->elapsed = req->elapsed;
    r->err = req->err;
    r->status = req->status;
    report(run, i, 0);
    if ((req->err != BFF_FETCH_OK || req->status < 200 || req->status > 299)
        && schedule_retry(run, i, req)) {
        bff_fetch_release(run->f, req);
        return;
    }
    if (req->err != BFF_FETCH_OK) {
        /* the message lives in the fetcher's handle, which is reused */
        fail(run, i, bff_fetch_err_str(req->err),
             req->errmsg ? apr_pstrdup(run->p, req->errmsg) : NULL);
    }
    else if (req->status < 200 || req->status > 299) {
        fail(run, i, apr_psprintf(run->p, "HTTP %d", req->status), NULL);
    }
    else if (req->status == 204) {
        r->state = BFF_BE_OK;
        r->value = bff_json_pool_own(json_null(), run->p);
    }
    else if (bff_json_depth(req->resp, req->resp_len) > run->ep->max_depth) {
        fail(run, i, "invalid JSON",
             apr_psprintf(run->p, "nesting deeper than %d", run->ep->max_depth));
    }
    else if (!(j = json_loadb(req->resp, req->resp_len,
                              JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr))) {
        fail(run, i, "invalid JSON", apr_psprintf(run->p, "%s at line %d "
             "column %d", jerr.text, jerr.line, jerr.column));
    }
    else {
        r->state = BFF_BE_OK;
        r->value = bff_json_pool_own(j, run->p);
    }
    bff_fetch_release(run->f, req);
}

static void build_error(run_t *run)
{
    bff_run_result_t *res = run->res;
    int i = run->required_failed - 1;
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
    bff_be_result_t *r = &res->results[i];

    res->backend = be->name;
    res->completed = 0;
    if (r->refused) {
        res->status = 503;
        res->title = "Service Unavailable";
    }
    else if (r->err == BFF_FETCH_ETIMEOUT) {
        res->status = 504;
        res->title = "Gateway Timeout";
    }
    else if (r->status == 404 || r->status == 410) {
        /* the resource the endpoint is about does not exist: say so */
        res->status = r->status;
        res->title = r->status == 404 ? "Not Found" : "Gone";
    }
    else {
        res->status = 502;
        res->title = "Bad Gateway";
    }
    res->detail = apr_psprintf(run->p, "required backend '%s' failed: %s",
                               be->name, r->reason);
}

static void build_doc(run_t *run)
{
    bff_run_result_t *res = run->res;
    json_t *doc = bff_json_pool_own(json_object(), run->p);
    json_t *errors = NULL;
    int i;

    res->completed = 1;
    for (i = 0; i < run->ep->backends->nelts; i++) {
        bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
        bff_be_result_t *r = &res->results[i];

        if (r->state == BFF_BE_OK) {
            json_object_set(doc, be->name, r->value);
            continue;
        }
        res->completed = 0;
        /* a copy: shaping edits the document in place, and the default is
         * shared by every request */
        json_object_set_new(doc, be->name, be->defval
                            ? json_deep_copy(be->defval) : json_null());
        if (!errors) {
            errors = json_object();
        }
        json_object_set_new(errors, be->name, json_pack("{s:o, s:s}",
            "status", r->status ? json_integer(r->status) : json_null(),
            "reason", r->reason ? r->reason : "failed"));
    }
    bff_shape_apply(run->ep->shape, doc);
    if (errors) {
        json_object_set_new(doc, "_errors", errors);
    }
    res->status = 200;
    res->doc = doc;
}

void bff_engine_run(bff_run_result_t *res, const bff_endpoint_t *ep,
                    const char *const *values, const bff_call_ctx_t *cc,
                    bff_fetcher_t *f, apr_pool_t *p)
{
    run_t run;
    apr_time_t start = apr_time_now();
    int n = ep->backends->nelts, i;

    memset(res, 0, sizeof(*res));
    res->results = apr_pcalloc(p, sizeof(bff_be_result_t) * (apr_size_t)n);
    memset(&run, 0, sizeof(run));
    run.ep = ep;
    run.values = values;
    run.cc = cc;
    run.res = res;
    run.f = f;
    run.p = p;
    run.param_json = apr_pcalloc(p, sizeof(json_t *)
                                 * (apr_size_t)(bff_route_nparams(ep->route) + 1));
    run.pol = cc ? cc->policy : NULL;
    run.token = apr_pcalloc(p, sizeof(void *) * (apr_size_t)n);
    run.retry_at = apr_pcalloc(p, sizeof(apr_time_t) * (apr_size_t)n);
    run.deadline = start + apr_time_from_msec(ep->timeout_ms);

    for (i = 0; i < bff_route_nparams(ep->route); i++) {
        json_t *j = bff_route_param_type(ep->route, i) == BFF_PARAM_INT
                    ? json_integer(apr_atoi64(values[i])) : json_string(values[i]);
        if (!j) {
            /* only invalid UTF-8 has no JSON form */
            res->status = 400;
            res->title = "Bad Request";
            res->detail = apr_psprintf(p, "parameter '%s' is not valid UTF-8",
                                       bff_route_param_name(ep->route, i));
            return;
        }
        run.param_json[i] = bff_json_pool_own(j, p);
    }

    for (;;) {
        bff_fetch_req_t *done = NULL;
        apr_status_t rv;
        long left;

        start_ready(&run);
        if (run.required_failed || (run.running == 0 && run.retrying == 0)) {
            break;
        }
        left = ms_left(run.deadline);
        if (left <= 0) {
            break;
        }
        if (run.retrying) {
            /* wake up for the earliest retry */
            for (i = 0; i < n; i++) {
                if (run.retry_at[i]) {
                    long ms = ms_left(run.retry_at[i]);
                    left = ms < left ? ms : left;
                }
            }
            if (run.running == 0) {
                apr_sleep(apr_time_from_msec(left));
                continue;
            }
        }
        rv = bff_fetch_wait(f, &done, left);
        if (rv == APR_SUCCESS && done) {
            finish(&run, done);
        }
        else if (rv == APR_EOF) {
            break;   /* the fetcher lost track: fail what is still running */
        }
    }

    /* whatever still runs is past the deadline or no longer needed */
    for (i = 0; i < n; i++) {
        bff_be_result_t *r = &res->results[i];
        if (r->state == BFF_BE_RUNNING) {
            if (run.required_failed) {
                r->state = BFF_BE_SKIPPED;
                r->reason = "cancelled";
                r->err = BFF_FETCH_EABORTED;
                report(&run, i, 1);
            }
            else {
                /* the backend did not answer in time: a timeout for the
                 * breaker too */
                r->err = r->req.err = BFF_FETCH_ETIMEOUT;
                r->req.elapsed = apr_time_now() - start;
                report(&run, i, 0);
                fail(&run, i, bff_fetch_err_str(BFF_FETCH_ETIMEOUT),
                     "endpoint deadline reached");
            }
        }
        else if (r->state == BFF_BE_PENDING && run.retry_at[i]
                 && !run.required_failed) {
            /* its retry did not fit before the deadline */
            fail(&run, i, r->reason, "no time left for the retry");
        }
        else if (r->state == BFF_BE_PENDING) {
            r->state = BFF_BE_SKIPPED;
            r->reason = "cancelled";
        }
    }
    bff_fetch_reset(f);

    if (run.required_failed) {
        build_error(&run);
    }
    else {
        build_doc(&run);
    }
    res->elapsed = apr_time_now() - start;
}

/* ------------------------------------------------------------ output -- */

const char *bff_json_dump(apr_size_t *len, const json_t *doc, apr_pool_t *p)
{
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(15)
                         | JSON_ENCODE_ANY;
    size_t cap = 4096, n;
    char *buf = apr_palloc(p, cap);

    n = json_dumpb(doc, buf, cap, flags);
    if (n > cap) {
        buf = apr_palloc(p, n);
        n = json_dumpb(doc, buf, n, flags);
    }
    *len = n;
    return buf;
}

json_t *bff_problem(int status, const char *title, const char *detail,
                    const char *instance, apr_pool_t *p)
{
    json_t *j = json_pack("{s:s, s:s, s:i}", "type", "about:blank",
                          "title", title, "status", status);

    if (!j) {
        return NULL;
    }
    if (detail) {
        json_object_set_new(j, "detail", json_string(detail));
    }
    if (instance) {
        json_object_set_new(j, "instance", json_string(instance));
    }
    return bff_json_pool_own(j, p);
}
