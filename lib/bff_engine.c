/*
 * The aggregation engine: endpoint definitions and the per-request run.
 */
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "bff_engine.h"
#include "bff_opts.h"
#include "bff_http.h"

#define DEFAULT_TIMEOUT_MS          5000
#define DEFAULT_CONNECT_TIMEOUT_MS  1000
#define DEFAULT_MAX_BODY            (1024 * 1024)
#define DEFAULT_MAX_DEPTH           64
#define DEFAULT_MAX_BACKENDS        32
/* the reference root of the client's body in POST, PUT, PATCH endpoints */
#define BODY_ROOT "body"
#define DEFAULT_CONCURRENCY         4     /* per-item calls of one backend */
#define DEFAULT_MAX_ITEMS           100
#define MAX_ITEMS_LIMIT             10000

/* A call's fetch baton: backend index + 1 in the low bits, item index + 1
 * above (0: a whole-backend call). */
#define ITEM_SHIFT 10
#define BE_MASK    ((1u << ITEM_SHIFT) - 1)

bff_endpoint_t *bff_endpoint_create(const char *method, const char *pattern,
                                    apr_pool_t *p)
{
    bff_endpoint_t *ep = apr_pcalloc(p, sizeof(*ep));

    ep->method = apr_pstrdup(p, method);
    ep->pattern = apr_pstrdup(p, pattern);
    ep->backends = apr_array_make(p, 4, sizeof(bff_backend_t *));
    ep->shape = bff_shape_create(p);
    ep->present = bff_present_create(p);
    ep->timeout_ms = DEFAULT_TIMEOUT_MS;
    ep->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    ep->max_body = DEFAULT_MAX_BODY;
    ep->max_depth = DEFAULT_MAX_DEPTH;
    ep->max_backends = DEFAULT_MAX_BACKENDS;
    ep->takes_body = !strcmp(method, "POST") || !strcmp(method, "PUT")
                     || !strcmp(method, "PATCH");
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

static const char *backend_default(void *target, const char *v,
                                   apr_pool_t *p)
{
    bff_backend_t *be = target;
    json_error_t jerr;
    json_t *j = json_loads(v, JSON_DECODE_ANY, &jerr);

    if (!j) {
        return apr_psprintf(p, "invalid JSON: %s", jerr.text);
    }
    be->defval = bff_json_pool_own(j, p);
    return NULL;
}

static const char *backend_body(void *target, const char *v, apr_pool_t *p)
{
    bff_backend_t *be = target;

    return bff_tpl_compile(&be->body, v, BFF_TPL_JSON, p);
}

static const bff_opt_t backend_opts[] = {
    BFF_OPT_SET("required", bff_backend_t, required, 1),
    BFF_OPT_SET("optional", bff_backend_t, required, 0),
    BFF_OPT_CALL("default", backend_default),
    BFF_OPT_CALL("body", backend_body),
    BFF_OPT_NUM("timeout", BFF_OPT_MS, bff_backend_t, timeout_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_NUM("max-size", BFF_OPT_SIZE, bff_backend_t, max_body,
                1, BFF_OPT_MAX),
    BFF_OPT_SET("per-item", bff_backend_t, per_item, 1),
    BFF_OPT_NUM("concurrency", BFF_OPT_INT, bff_backend_t, concurrency,
                1, 256),
    BFF_OPT_NUM("max-items", BFF_OPT_INT, bff_backend_t, max_items,
                1, MAX_ITEMS_LIMIT),
    BFF_OPT_END
};

const char *bff_backend_option(bff_backend_t *be, const char *opt,
                               apr_pool_t *p)
{
    return bff_opt_parse(backend_opts, be, opt, p);
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

        if (bff_endpoint_param(ep, root) >= 0
            || (ep->takes_body && !strcmp(root, BODY_ROOT))) {
            continue;
        }
        dep = bff_endpoint_backend(ep, root);
        if (dep < 0) {
            return apr_psprintf(p, "backend '%s': reference {%s} names neither "
                                "a parameter of %s nor a backend%s", be->name,
                                bff_ref_text(ref), ep->pattern,
                                ep->takes_body ? " nor the body" : "");
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

/* A per-item backend iterates over exactly one array reference (it may
 * appear several times); the options of fan-out need per-item. */
static const char *find_item_ref(bff_backend_t *be, apr_pool_t *p)
{
    const bff_tpl_t *tpls[2];
    int t, i;

    if (!be->per_item) {
        if (be->concurrency || be->max_items) {
            return apr_psprintf(p, "backend '%s': concurrency= and "
                                "max-items= need per-item", be->name);
        }
        return NULL;
    }
    tpls[0] = be->url;
    tpls[1] = be->body;
    for (t = 0; t < 2; t++) {
        const apr_array_header_t *refs = tpls[t] ? bff_tpl_refs(tpls[t]) : NULL;

        for (i = 0; refs && i < refs->nelts; i++) {
            const bff_ref_t *ref = APR_ARRAY_IDX(refs, i, const bff_ref_t *);
            if (!bff_ref_is_multi(ref)) {
                continue;
            }
            if (be->item_ref && strcmp(bff_ref_text(be->item_ref),
                                       bff_ref_text(ref))) {
                return apr_psprintf(p, "backend '%s': per-item iterates over "
                                    "one array reference, not both {%s} and "
                                    "{%s}", be->name,
                                    bff_ref_text(be->item_ref),
                                    bff_ref_text(ref));
            }
            be->item_ref = ref;
        }
    }
    if (!be->item_ref) {
        return apr_psprintf(p, "backend '%s': per-item needs a reference "
                            "through an array in its URL or body, e.g. "
                            "{orders[].product_id}", be->name);
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

static const char *present_check(const bff_endpoint_t *ep, apr_pool_t *p);

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
    if (ep->takes_body && bff_endpoint_param(ep, BODY_ROOT) >= 0) {
        return apr_psprintf(p, "parameter '%s': the name refers to the "
                            "request body in a %s endpoint", BODY_ROOT,
                            ep->method);
    }
    for (i = 0; i < ep->backends->nelts; i++) {
        bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i, bff_backend_t *);

        be->index = i;
        be->deps = apr_array_make(p, 2, sizeof(int));
        be->dependents = 0;
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
        if (ep->takes_body && !strcmp(be->name, BODY_ROOT)) {
            return apr_psprintf(p, "backend '%s': the name refers to the "
                                "request body in a %s endpoint", be->name,
                                ep->method);
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
            || (err = add_deps(ep, be, be->body, p)) != NULL
            || (err = find_item_ref(be, p)) != NULL) {
            return err;
        }
    }
    for (i = 0; i < ep->backends->nelts; i++) {
        const bff_backend_t *be = APR_ARRAY_IDX(ep->backends, i,
                                                bff_backend_t *);
        int j;
        for (j = 0; j < be->deps->nelts; j++) {
            APR_ARRAY_IDX(ep->backends, APR_ARRAY_IDX(be->deps, j, int),
                          bff_backend_t *)->dependents++;
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
    return present_check(ep, p);
}

static const char *present_check(const bff_endpoint_t *ep, apr_pool_t *p)
{
    apr_array_header_t *roots = apr_array_make(p, ep->backends->nelts,
                                               sizeof(const char *));
    int i;

    for (i = 0; i < ep->backends->nelts; i++) {
        APR_ARRAY_PUSH(roots, const char *) =
            APR_ARRAY_IDX(ep->backends, i, bff_backend_t *)->name;
    }
    return bff_present_check(ep->present, roots, p);
}

/* --------------------------------------------------------------- run -- */

typedef struct {
    const bff_endpoint_t *ep;
    const char *const *values;
    const bff_call_ctx_t *cc;
    bff_run_result_t *res;
    bff_fetcher_t *f;
    json_t **param_json;       /* lazily built JSON of each parameter */
    int running;               /* calls in flight (items included) */
    const bff_policy_t *pol;   /* NULL: no breaker, no retry */
    int retrying;              /* calls waiting for their retry */
    int required_failed;       /* index + 1 */
    /* while a per-item call is built: its item ref and value */
    const bff_ref_t *item_ref;
    json_t *item_value;
    apr_time_t deadline;
    apr_pool_t *p;
} run_t;

static json_t *lookup(void *baton, const bff_ref_t *ref)
{
    run_t *run = baton;
    const char *root = bff_ref_root(ref);
    json_t *base = NULL;
    int i;

    if (run->item_value
        && !strcmp(bff_ref_text(ref), bff_ref_text(run->item_ref))) {
        return run->item_value;
    }
    i = bff_endpoint_param(run->ep, root);
    if (i >= 0) {
        base = run->param_json[i];
    }
    else if ((i = bff_endpoint_backend(run->ep, root)) >= 0) {
        if (run->res->results[i].state == BFF_BE_OK) {
            base = run->res->results[i].value;
        }
    }
    else if (run->ep->takes_body && !strcmp(root, BODY_ROOT) && run->cc) {
        base = (json_t *)run->cc->body;
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

/* Tells the policy how the call in r ended (or that it was dropped). */
static void report(run_t *run, const bff_backend_t *be, bff_be_result_t *r,
                   int cancelled)
{
    if (run->pol && run->pol->report && r->token) {
        run->pol->report(run->pol->baton, be, r->token, &r->req, cancelled);
    }
    r->token = NULL;
}

/* Expands be's templates and starts one call into r. NULL when the call
 * runs; else the client-safe reason (r->err and *detail set). */
static const char *start_call(run_t *run, const bff_backend_t *be,
                              bff_be_result_t *r, apr_uintptr_t baton,
                              const char **detail)
{
    const bff_call_ctx_t *cc = run->cc;
    apr_array_header_t *hdrs;
    const char *url, *body = NULL, *err;
    long left, timeout;

    err = bff_tpl_expand(&url, be->url, lookup, run, run->p);
    if (!err && be->body) {
        err = bff_tpl_expand(&body, be->body, lookup, run, run->p);
    }
    if (err) {
        *detail = err;
        return "missing input";
    }
    /* the client's query parameters (BFFForwardQuery) go to GET calls
     * only, as documented: other calls carry what their template says */
    if (cc && cc->query && *cc->query && !strcmp(be->method, "GET")) {
        url = apr_pstrcat(run->p, url, strchr(url, '?') ? "&" : "?",
                          cc->query, NULL);
    }

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

    left = ms_left(run->deadline);
    timeout = be->timeout_ms > 0 && be->timeout_ms < run->ep->timeout_ms
              ? be->timeout_ms : run->ep->timeout_ms;
    if (timeout > left) {
        timeout = left;
    }
    if (timeout <= 0) {
        r->err = BFF_FETCH_ETIMEOUT;
        *detail = "endpoint deadline passed before the call";
        return bff_fetch_err_str(BFF_FETCH_ETIMEOUT);
    }
    if (run->pol && run->pol->admit) {
        const char *why = run->pol->admit(run->pol->baton, be, r->attempts + 1,
                                          &url, &r->token, run->p);
        if (why) {
            r->refused = 1;
            r->err = BFF_FETCH_OK;
            r->status = 0;
            return why;
        }
    }
    r->attempts++;

    memset(&r->req, 0, sizeof(r->req));
    r->req.method = be->method;
    r->req.url = url;
    r->req.body = body;
    r->req.body_len = body ? strlen(body) : 0;
    r->req.headers = hdrs;
    r->req.timeout_ms = timeout;
    r->req.connect_timeout_ms = run->ep->connect_timeout_ms;
    r->req.max_body = be->max_body ? be->max_body : run->ep->max_body;
    r->req.baton = (void *)baton;
    r->req.tls = be->tls;
    /* nothing waits for a whole backend's success that no other backend
     * references: only the answer, which also waits for the rest */
    r->req.quiet = !be->per_item && be->dependents == 0;
    if (bff_fetch_start(run->f, &r->req) != APR_SUCCESS) {
        report(run, be, r, 0);
        r->err = r->req.err;
        *detail = r->req.errmsg ? apr_pstrdup(run->p, r->req.errmsg) : NULL;
        return bff_fetch_err_str(r->req.err);
    }
    r->state = BFF_BE_RUNNING;
    return NULL;
}

/* ----------------------------------------------------- per-item calls -- */

/* An item as text for messages: its compact JSON. */
static const char *item_text(const json_t *item, apr_pool_t *p)
{
    apr_size_t len;
    const char *s = bff_json_dump(&len, item, p);

    return apr_pstrmemdup(p, s, len);
}

static void item_failed(run_t *run, int i, int k, const char *reason,
                        const char *detail)
{
    bff_be_result_t *r = &run->res->results[i];
    bff_be_result_t *it = &r->items[k];
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);

    it->state = BFF_BE_FAILED;
    it->reason = reason;
    it->detail = detail;
    r->items_failed++;
    if (be->required && !run->required_failed) {
        /* a required backend is complete or fails: the whole of it */
        r->err = it->err;
        r->refused = it->refused;
        fail(run, i, apr_psprintf(run->p, "item %s: %s",
                                  item_text(it->item, run->p), reason),
             detail);
    }
}

/* Once every item is done: the backend's value is the array of the
 * replies that came, in item order; it failed only if every item did. */
static void items_settle(run_t *run, int i)
{
    bff_be_result_t *r = &run->res->results[i];
    json_t *arr;
    int k;

    if (r->state != BFF_BE_RUNNING || r->items_running || r->items_retrying
        || r->next_item < r->nitems) {
        return;
    }
    if (r->nitems && r->items_failed == r->nitems) {
        r->status = r->items[0].status;
        r->err = r->items[0].err;
        r->refused = r->items[0].refused;
        fail(run, i, r->items[0].reason, r->items[0].detail);
        return;
    }
    arr = bff_json_pool_own(json_array(), run->p);
    for (k = 0; k < r->nitems; k++) {
        if (r->items[k].state == BFF_BE_OK) {
            json_array_append(arr, r->items[k].value);
        }
    }
    r->value = arr;
    r->state = BFF_BE_OK;
}

static void start_item(run_t *run, int i, int k)
{
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
    bff_be_result_t *r = &run->res->results[i];
    bff_be_result_t *it = &r->items[k];
    const char *reason, *detail = NULL;

    run->item_ref = be->item_ref;
    run->item_value = it->item;
    reason = start_call(run, be, it, (apr_uintptr_t)(i + 1)
                        | ((apr_uintptr_t)(k + 1) << ITEM_SHIFT), &detail);
    run->item_value = NULL;
    if (reason) {
        item_failed(run, i, k, reason, detail);
        return;
    }
    r->items_running++;
    run->running++;
}

/* Starts items whose retry is due, then new ones in order, while fewer
 * than the backend's concurrency run. */
static void items_start(run_t *run, int i)
{
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
    bff_be_result_t *r = &run->res->results[i];
    int cap = be->concurrency > 0 ? be->concurrency : DEFAULT_CONCURRENCY;
    apr_time_t now = apr_time_now();
    int k;

    for (k = 0; r->items_retrying && k < r->next_item; k++) {
        bff_be_result_t *it = &r->items[k];
        if (r->state != BFF_BE_RUNNING || r->items_running >= cap
            || run->required_failed) {
            break;
        }
        if (it->state == BFF_BE_PENDING && it->retry_at
            && it->retry_at <= now) {
            it->retry_at = 0;
            r->items_retrying--;
            run->retrying--;
            start_item(run, i, k);
        }
    }
    while (r->state == BFF_BE_RUNNING && r->items_running < cap
           && r->next_item < r->nitems && !run->required_failed) {
        start_item(run, i, r->next_item++);
    }
    items_settle(run, i);
}

/* The items are the unique values of the item reference, first-seen
 * order (bff_ref_eval removes duplicates). */
static void launch_items(run_t *run, int i)
{
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
    bff_be_result_t *r = &run->res->results[i];
    int max = be->max_items > 0 ? be->max_items : DEFAULT_MAX_ITEMS;
    json_t *all = lookup(run, be->item_ref);
    size_t n, k;

    if (!all) {
        fail(run, i, "missing input", apr_psprintf(run->p, "reference '%s' "
             "has no value", bff_ref_text(be->item_ref)));
        return;
    }
    n = json_array_size(all);
    if (n > (size_t)max) {
        fail(run, i, "too many items", apr_psprintf(run->p, "%" APR_SIZE_T_FMT
             " items, more than max-items=%d", n, max));
        return;
    }
    r->nitems = (int)n;
    r->items = apr_pcalloc(run->p, sizeof(*r->items) * (n + 1));
    for (k = 0; k < n; k++) {
        r->items[k].item = json_array_get(all, k);
    }
    r->state = BFF_BE_RUNNING;
    items_start(run, i);
}

static void launch(run_t *run, int i)
{
    bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
    const char *reason, *detail = NULL;

    if (be->per_item) {
        launch_items(run, i);
        return;
    }
    reason = start_call(run, be, &run->res->results[i],
                        (apr_uintptr_t)(i + 1), &detail);
    if (reason) {
        fail(run, i, reason, detail);
        return;
    }
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

            if (r->state == BFF_BE_RUNNING && r->items_retrying) {
                items_start(run, i);
                changed |= r->state != BFF_BE_RUNNING;
                continue;
            }
            if (r->state != BFF_BE_PENDING
                || (r->retry_at && r->retry_at > apr_time_now())) {
                continue;
            }
            if (r->retry_at) {
                r->retry_at = 0;
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

/* Judges a completed call into r: OK with its parsed reply, or FAILED
 * with a reason. */
static void judge(run_t *run, bff_be_result_t *r, bff_fetch_req_t *req)
{
    json_error_t jerr;
    json_t *j;

    r->elapsed = req->elapsed;
    r->err = req->err;
    r->status = req->status;
    r->state = BFF_BE_FAILED;
    if (req->err != BFF_FETCH_OK) {
        /* the message lives in the fetcher's handle, which is reused */
        r->reason = bff_fetch_err_str(req->err);
        r->detail = req->errmsg ? apr_pstrdup(run->p, req->errmsg) : NULL;
    }
    else if (req->status < 200 || req->status > 299) {
        r->reason = apr_psprintf(run->p, "HTTP %d", req->status);
    }
    else if (req->status == 204) {
        r->state = BFF_BE_OK;
        r->value = bff_json_pool_own(json_null(), run->p);
    }
    else if (!(j = bff_json_load(req->resp, req->resp_len, run->ep->max_depth,
                                 &jerr))) {
        r->reason = "invalid JSON";
        r->detail = jerr.line < 0
                    ? apr_pstrdup(run->p, jerr.text)
                    : apr_psprintf(run->p, "%s at line %d column %d", jerr.text,
                                   jerr.line, jerr.column);
    }
    else {
        r->state = BFF_BE_OK;
        r->value = bff_json_pool_own(j, run->p);
    }
}

/* Asks the policy whether the failed call in r is tried again; if so r
 * is PENDING until its retry time, which must leave time before the
 * deadline. Returns 1 when a retry is scheduled. */
static int schedule_retry(run_t *run, const bff_backend_t *be,
                          bff_be_result_t *r, const bff_fetch_req_t *req)
{
    long delay;
    apr_time_t at;

    if (!run->pol || !run->pol->retry || r->state != BFF_BE_FAILED) {
        return 0;
    }
    delay = run->pol->retry(run->pol->baton, be, NULL, req, r->attempts);
    if (delay < 0) {
        return 0;
    }
    at = apr_time_now() + apr_time_from_msec(delay);
    if (at >= run->deadline) {
        return 0;
    }
    r->state = BFF_BE_PENDING;
    r->retry_at = at ? at : 1;
    run->retrying++;
    return 1;
}

/* The replies of a per-item backend are one reply: together they are
 * bounded as one is (max-size, BFFMaxResponseSize). Past the bound the
 * backend fails as a too large reply does; calls in flight finish
 * unused and no more start. */
static void items_add_bytes(run_t *run, int i, apr_size_t n)
{
    const bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i,
                                            const bff_backend_t *);
    bff_be_result_t *r = &run->res->results[i];
    apr_size_t max = be->max_body ? be->max_body : run->ep->max_body;

    r->items_bytes += n;
    if (r->state == BFF_BE_RUNNING && r->items_bytes > max) {
        r->err = BFF_FETCH_ETOOBIG;
        fail(run, i, bff_fetch_err_str(BFF_FETCH_ETOOBIG),
             apr_psprintf(run->p, "the replies of its items exceed %"
                          APR_SIZE_T_FMT " bytes in total", max));
    }
}

static void finish(run_t *run, bff_fetch_req_t *req)
{
    apr_uintptr_t b = (apr_uintptr_t)req->baton;
    int i = (int)(b & BE_MASK) - 1, k = (int)(b >> ITEM_SHIFT) - 1;
    bff_be_result_t *r = &run->res->results[i];

    const bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i,
                                            const bff_backend_t *);

    run->running--;
    if (req->err == BFF_FETCH_OK && !run->res->no_store) {
        const char *why = bff_http_no_store(req->resp_headers,
                                            req->resp_headers_len);
        if (why) {
            run->res->no_store = apr_psprintf(run->p, "backend '%s' answered "
                                              "with %s", be->name, why);
        }
    }
    if (k >= 0) {
        bff_be_result_t *it = &r->items[k];

        judge(run, it, req);
        report(run, be, it, 0);
        r->items_running--;
        if (it->state == BFF_BE_OK) {
            items_add_bytes(run, i, req->resp_len);
        }
        if (schedule_retry(run, be, it, req)) {
            r->items_retrying++;
        }
        else if (it->state == BFF_BE_FAILED) {
            item_failed(run, i, k, it->reason, it->detail);
        }
        bff_fetch_release(run->f, req);
        items_start(run, i);
        return;
    }
    judge(run, r, req);
    report(run, be, r, 0);
    if (!schedule_retry(run, be, r, req) && r->state == BFF_BE_FAILED) {
        fail(run, i, r->reason, r->detail);
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
    if (r->refused || r->err == BFF_FETCH_EPOOL) {
        /* the gateway's own bounds: it is busy, the backend may not be */
        res->status = 503;
        res->title = "Service Unavailable";
    }
    else if (r->err == BFF_FETCH_ETIMEOUT) {
        res->status = 504;
        res->title = "Gateway Timeout";
    }
    else if (!be->per_item && (r->status == 404 || r->status == 410)) {
        /* the resource the endpoint is about does not exist: say so (an
         * item of a list that is gone is the backends' inconsistency) */
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

/* _errors.<backend>: status and reason, and for a per-item backend the
 * items that failed. */
static json_t *error_entry(const bff_be_result_t *r)
{
    json_t *e = json_pack("{s:o, s:s}",
        "status", r->status ? json_integer(r->status) : json_null(),
        "reason", r->reason ? r->reason : "failed");
    json_t *items;
    int k;

    if (!r->items_failed) {
        return e;
    }
    items = json_array();
    for (k = 0; k < r->nitems; k++) {
        const bff_be_result_t *it = &r->items[k];
        if (it->state == BFF_BE_FAILED) {
            json_array_append_new(items, json_pack("{s:O, s:o, s:s}",
                "item", it->item,
                "status", it->status ? json_integer(it->status) : json_null(),
                "reason", it->reason ? it->reason : "failed"));
        }
    }
    json_object_set_new(e, "items", items);
    return e;
}

static void build_doc(run_t *run)
{
    bff_run_result_t *res = run->res;
    json_t *doc = bff_json_pool_own(json_object(), run->p);
    json_t *errors = NULL;
    const char *conflict;
    apr_size_t copied;
    int i;

    res->completed = 1;
    for (i = 0; i < run->ep->backends->nelts; i++) {
        bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i, bff_backend_t *);
        bff_be_result_t *r = &res->results[i];

        if (r->state == BFF_BE_OK) {
            json_object_set(doc, be->name, r->value);
            if (!r->items_failed) {
                continue;
            }
            /* a per-item backend with some items missing */
            r->reason = apr_psprintf(run->p, "%d of %d items failed",
                                     r->items_failed, r->nitems);
        }
        else {
            /* a copy: shaping edits the document in place, and the default
             * is shared by every request */
            json_object_set_new(doc, be->name, be->defval
                                ? json_deep_copy(be->defval) : json_null());
        }
        res->completed = 0;
        if (!errors) {
            errors = json_object();
        }
        json_object_set_new(errors, be->name, error_entry(r));
    }
    /* a join copies at most as much as one reply may hold */
    conflict = bff_present_joins(&copied, run->ep->present, doc,
                                 run->ep->max_body, run->p);
    if (!conflict) {
        bff_shape_apply(run->ep->shape, doc);
        conflict = bff_present_apply(run->ep->present, doc, run->p);
    }
    if (conflict) {
        json_decref(errors);
        res->status = 502;
        res->title = "Bad Gateway";
        res->detail = conflict;
        res->completed = 0;
        return;
    }
    if (run->cc && run->cc->fields) {
        bff_shape_apply(run->cc->fields, doc);
    }
    if (errors) {
        json_object_set_new(doc, "_errors", errors);
    }
    res->status = 200;
    res->doc = doc;
}

/* At the end of a run: whatever still runs is past the deadline or no
 * longer needed. */
static void stop_unfinished(run_t *run, int i)
{
    const bff_backend_t *be = APR_ARRAY_IDX(run->ep->backends, i,
                                            const bff_backend_t *);
    bff_be_result_t *r = &run->res->results[i];
    int k;

    /* calls still in flight: dropped, or (the deadline) timed out, which
     * the breaker must hear of */
    for (k = -1; r->state == BFF_BE_RUNNING && k < r->nitems; k++) {
        bff_be_result_t *c = k < 0 ? r : &r->items[k];
        if (c->token && (k < 0 ? !r->items : c->state == BFF_BE_RUNNING)) {
            if (!run->required_failed) {
                c->req.err = BFF_FETCH_ETIMEOUT;
                c->req.elapsed = apr_time_now() - (run->deadline
                                 - apr_time_from_msec(run->ep->timeout_ms));
            }
            report(run, be, c, run->required_failed != 0);
        }
    }
    if (r->state == BFF_BE_RUNNING && run->required_failed) {
        r->state = BFF_BE_SKIPPED;
        r->reason = "cancelled";
        r->err = BFF_FETCH_EABORTED;
    }
    else if (r->state == BFF_BE_RUNNING && r->items) {
        for (k = 0; k < r->nitems; k++) {
            bff_be_result_t *it = &r->items[k];
            if (it->state == BFF_BE_PENDING && it->retry_at) {
                /* its retry did not fit before the deadline */
                item_failed(run, i, k, it->reason, "no time left for the "
                            "retry");
            }
            else if (it->state == BFF_BE_RUNNING
                     || it->state == BFF_BE_PENDING) {
                it->err = BFF_FETCH_ETIMEOUT;
                item_failed(run, i, k, bff_fetch_err_str(BFF_FETCH_ETIMEOUT),
                            "endpoint deadline reached");
            }
        }
        r->items_running = 0;
        r->next_item = r->nitems;
        items_settle(run, i);
    }
    else if (r->state == BFF_BE_RUNNING) {
        r->err = BFF_FETCH_ETIMEOUT;
        fail(run, i, bff_fetch_err_str(BFF_FETCH_ETIMEOUT),
             "endpoint deadline reached");
    }
    else if (r->state == BFF_BE_PENDING && r->retry_at
             && !run->required_failed) {
        /* its retry did not fit before the deadline */
        fail(run, i, r->reason, "no time left for the retry");
    }
    else if (r->state == BFF_BE_PENDING) {
        r->state = BFF_BE_SKIPPED;
        r->reason = "cancelled";
    }
}

/* Milliseconds until the earliest retry is due, at most left. */
static long retry_wait(run_t *run, long left)
{
    int i, k;

    for (i = 0; i < run->ep->backends->nelts; i++) {
        bff_be_result_t *r = &run->res->results[i];
        for (k = -1; k < (r->items_retrying ? r->next_item : 0); k++) {
            bff_be_result_t *c = k < 0 ? r : &r->items[k];
            if (c->retry_at && c->state == BFF_BE_PENDING) {
                long ms = ms_left(c->retry_at);
                left = ms < left ? ms : left;
            }
        }
    }
    return left;
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
    run.deadline = start + apr_time_from_msec(ep->timeout_ms);
    run.pol = cc ? cc->policy : NULL;

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
            /* what completed without waking this thread (quiet) still
             * counts: only what is running now is late */
            while (run.running > 0 && bff_fetch_wait(f, &done, 0) == APR_SUCCESS
                   && done) {
                finish(&run, done);
                done = NULL;
            }
            break;
        }
        if (run.retrying) {
            /* wake up for the earliest retry */
            left = retry_wait(&run, left);
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

    for (i = 0; i < n; i++) {
        stop_unfinished(&run, i);
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
