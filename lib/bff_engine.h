/*
 * mod_bff aggregation engine: an endpoint definition (built from the
 * <BFFEndpoint> config section) and the per-request run that calls its
 * backends through a fetcher, concurrently, in dependency order, and merges
 * the replies into one JSON document. No httpd.h here.
 */
#ifndef BFF_ENGINE_H
#define BFF_ENGINE_H

#include "bff_core.h"
#include "bff_fetch.h"

typedef struct bff_backend_t {
    const char *name;
    const char *method;
    bff_tpl_t *url;
    bff_tpl_t *body;          /* NULL: no request body */
    int required;
    json_t *defval;           /* value used when it fails; NULL: null */
    long timeout_ms;          /* 0: the endpoint deadline */
    apr_size_t max_body;      /* 0: the endpoint's */
    int index;                /* position in the endpoint, config order */
    /* derived by bff_endpoint_finalize */
    apr_array_header_t *deps; /* int: indexes of backends referenced */
    int dependents;           /* backends whose calls reference this one */
    /* per-item fan-out (option per-item): one call per unique value of
     * the array reference in the URL/body (item_ref), in first-seen order,
     * at most `concurrency` calls of this backend at a time */
    int per_item;
    int concurrency;          /* 0: default (4) */
    int max_items;            /* 0: default (100) */
    const bff_ref_t *item_ref;    /* derived by bff_endpoint_finalize */
    /* TLS settings of its https:// calls (bff_tls.h), set by the glue
     * (BFFBackendTLS); NULL: the defaults */
    const struct bff_tls_t *tls;
} bff_backend_t;

typedef struct bff_endpoint_t {
    const char *method;       /* GET, POST, ... (GET also answers HEAD) */
    const char *pattern;
    bff_route_t *route;
    apr_array_header_t *backends;       /* bff_backend_t * */
    bff_shape_t *shape;
    bff_present_t *present;             /* joins, lifts, renames, ... */
    long timeout_ms;                    /* deadline for the whole run */
    long connect_timeout_ms;
    apr_size_t max_body;                /* per backend reply */
    int max_depth;                      /* JSON nesting of a reply */
    int max_backends;
    const char *file;                   /* where it was defined */
    int line;
    int takes_body;                     /* POST, PUT, PATCH: templates may
                                           reference the request body as
                                           {body...} */
} bff_endpoint_t;

/* Allocates an endpoint with defaults: 5 s deadline, 1 s connect timeout,
 * 1 MiB replies, depth 64, at most 32 backends. POST, PUT and PATCH
 * endpoints take a body: "body" is then a reference root, not a name for a
 * backend or parameter. */
bff_endpoint_t *bff_endpoint_create(const char *method, const char *pattern,
                                    apr_pool_t *p);

/* Parses one backend definition's options after name, method and URL:
 *   required | optional | default=<json> | body=<json template> |
 *   timeout=<duration> | max-size=<size> | per-item | concurrency=<n> |
 *   max-items=<n>
 * Returns NULL or an error naming the offending option. */
const char *bff_backend_option(bff_backend_t *be, const char *opt,
                               apr_pool_t *p);

/* Checks the definition once all directives are read: unique names, every
 * reference names a route parameter or another backend, no cycles, limits.
 * Fills deps. Returns NULL or an error. */
const char *bff_endpoint_finalize(bff_endpoint_t *ep, apr_pool_t *p);

/* Index of the route parameter / backend named name, or -1. */
int bff_endpoint_param(const bff_endpoint_t *ep, const char *name);
int bff_endpoint_backend(const bff_endpoint_t *ep, const char *name);

/* What happened to one backend during a run. */
typedef enum {
    BFF_BE_PENDING = 0,
    BFF_BE_RUNNING,
    BFF_BE_OK,
    BFF_BE_FAILED,
    BFF_BE_SKIPPED          /* not called: a dependency failed */
} bff_be_state_e;

typedef struct bff_be_result_t bff_be_result_t;
struct bff_be_result_t {
    bff_be_state_e state;
    bff_fetch_err_e err;     /* fetch error when FAILED by the transport */
    int status;              /* HTTP status, 0 when none */
    const char *reason;      /* short, client-safe: "timeout", "HTTP 503" */
    const char *detail;      /* for the error log only */
    json_t *value;           /* parsed reply (pool owned); per-item: the
                                replies of the items that answered */
    apr_interval_time_t elapsed;
    bff_fetch_req_t req;
    int attempts;            /* calls made (retries included) */
    int refused;             /* 1: the policy refused the call (breaker) */
    void *token;             /* the policy's, for the call in flight */
    apr_time_t retry_at;     /* PENDING again: when the retry may start */
    /* per-item backends: one result per unique item, first-seen order */
    json_t *item;            /* an item's value (items only) */
    bff_be_result_t *items;
    int nitems;
    int next_item;           /* items started so far */
    int items_running;
    int items_failed;
    int items_retrying;      /* items waiting for their retry */
    apr_size_t items_bytes;  /* size of the items' replies so far */
};

/* Resilience hooks (circuit breakers, retries, load balancing), which the
 * glue implements over shared memory (mod_bff_resilience.c). Any may be
 * NULL. They see every call, per-item calls included. */
typedef struct {
    /* Before every attempt (1 = the first call). May replace *url (another
     * instance of the backend). Returns NULL to make the call, or a short
     * client-safe reason not to ("circuit open"): the call then fails at
     * once. *token is the policy's, handed back to report. */
    const char *(*admit)(void *baton, const bff_backend_t *be, int attempt,
                         const char **url, void **token, apr_pool_t *p);
    /* After every admitted attempt: req is complete (err, status,
     * elapsed), or cancelled is 1 when the run dropped it unanswered. */
    void (*report)(void *baton, const bff_backend_t *be, void *token,
                   const bff_fetch_req_t *req, int cancelled);
    /* After failed attempt number attempt: milliseconds to wait before the
     * next attempt, or -1 for no retry. The engine never schedules one
     * past the endpoint deadline. */
    long (*retry)(void *baton, const bff_backend_t *be, void *token,
                  const bff_fetch_req_t *req, int attempt);
    void *baton;
} bff_policy_t;

/* Per-call extras the glue supplies (request id, trace context, forwarded
 * client headers, client query parameters). */
typedef struct {
    const apr_array_header_t *headers;    /* "Name: value", every call */
    const char *query;                    /* appended to GET URLs, encoded */
    /* called once per backend call to add call-specific headers (e.g. a
     * traceparent with a new span id); may be NULL */
    void (*per_call)(void *baton, const bff_backend_t *be,
                     apr_array_header_t *headers, apr_pool_t *p);
    void *baton;
    /* the client's field selection (?fields=, or its client's default),
     * applied last; NULL: the whole document */
    const bff_shape_t *fields;
    const bff_policy_t *policy;           /* NULL: no breaker, no retry */
    const json_t *body;                   /* the client's (validated) body,
                                             for {body...}; NULL: none */
} bff_call_ctx_t;

typedef struct {
    int status;              /* HTTP status for the client */
    int completed;           /* 1: every backend answered */
    json_t *doc;             /* 2xx: the merged document (pool owned) */
    const char *title;       /* non-2xx: problem title */
    const char *detail;      /* non-2xx: problem detail (client-safe) */
    const char *backend;     /* the required backend that failed, if any */
    /* why the answer must not be stored in a cache: the first backend
     * reply (per-item calls included) with Set-Cookie, Cache-Control
     * no-store or private, or Vary: *; NULL when it may be */
    const char *no_store;
    bff_be_result_t *results;   /* one per backend, config order */
    apr_interval_time_t elapsed;
} bff_run_result_t;

/* Runs ep for one request. values are the route parameter values in route
 * order. Always fills res; never blocks past ep->timeout_ms. */
void bff_engine_run(bff_run_result_t *res, const bff_endpoint_t *ep,
                    const char *const *values, const bff_call_ctx_t *cc,
                    bff_fetcher_t *f, apr_pool_t *p);


/* An RFC 9457 problem document. */
json_t *bff_problem(int status, const char *title, const char *detail,
                    const char *instance, apr_pool_t *p);

#endif /* BFF_ENGINE_H */
