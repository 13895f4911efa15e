/*
 * mod_bff: private header shared by the httpd glue files (mod_bff*.c).
 */
#ifndef MOD_BFF_H
#define MOD_BFF_H

#include "httpd.h"
#include "http_config.h"
#include "apr_hash.h"
#include "apr_optional.h"
#include "apr_global_mutex.h"
#include "ap_socache.h"

#include "bff_engine.h"
#include "bff_breaker.h"
#include "bff_http.h"

/* "not set" in configuration records, merged away by the merge functions */
#define UNSET -1

/* Every log message at debug level and above carries its own number, so
 * operators and tests can grep for it. Never reuse a number. */
#define BFFLOGNO(n) "BFF" #n ": "

#define BFF_HANDLER "bff-aggregate"

/* BFFHTTPClient: which HTTP client calls the backends */
#define BFF_CLIENT_NATIVE 1   /* own HTTP/1.1 client; https via libcurl */
#define BFF_CLIENT_CURL   2   /* libcurl for everything */

extern module AP_MODULE_DECLARE_DATA bff_module;

/* Cache configuration (mod_bff_cache.c owns these types). */
typedef struct bff_cache_ep_t bff_cache_ep_t;       /* per endpoint */
typedef struct bff_cache_conf_t bff_cache_conf_t;   /* per server */
typedef struct bff_cache_req_t bff_cache_req_t;     /* per request */
/* mod_bff_client.c: fields and per-client defaults of an endpoint */
typedef struct bff_client_ep_t bff_client_ep_t;
/* mod_bff_auth.c keeps its configuration behind these (opaque here). */
typedef struct bff_auth_srv_t bff_auth_srv_t;
typedef struct bff_auth_dir_t bff_auth_dir_t;
/* mod_bff_resilience.c: breakers, retries, upstreams, probe (opaque). */
typedef struct bff_res_conf_t bff_res_conf_t;
/* mod_bff_events.c: analytics events (opaque here) */
typedef struct bff_events_conf_t bff_events_conf_t;
/* mod_bff_cors.c: the CORS policy of a location (opaque here). */
typedef struct bff_cors_dir_t bff_cors_dir_t;
/* mod_bff_validate.c: request validation rules (opaque here) */
typedef struct bff_valid_conf_t bff_valid_conf_t;

/* One <BFFEndpoint> section: the engine's definition plus what only the
 * glue needs. Limits left unset (-1 / 0) take the server's value in
 * post_config. */
typedef struct {
    bff_endpoint_t *ep;
    server_rec *server;          /* where it was defined */
    long timeout_ms;             /* -1: unset */
    long connect_timeout_ms;     /* -1: unset */
    apr_size_t max_body;         /* 0: unset */
    int max_depth;               /* 0: unset */
    apr_array_header_t *fwd_headers;   /* const char * */
    apr_array_header_t *fwd_query;     /* const char * */
    bff_cache_ep_t *cache;             /* NULL: never cached */
    bff_res_conf_t *res;               /* NULL: the server's BFFBreaker and
                                          BFFRetry */
    bff_client_ep_t *client;           /* NULL: no ?fields=, no clients */
    /* hex SHA-256 over the section's directives (backends, templates,
     * shaping, allow/deny, client profiles, cache settings): part of
     * every cache key, so a changed definition never serves old entries */
    const char *fingerprint;
    bff_valid_conf_t *valid;           /* NULL: the <Location>'s rules */
    apr_hash_t *tls;                   /* BFFBackendTLS: backend name (or
                                          "*", every backend) -> the
                                          bff_tls_t * of its https calls */
} bff_ep_conf_t;

typedef struct {
    apr_array_header_t *endpoints;     /* bff_ep_conf_t * */
    long timeout_ms;
    long connect_timeout_ms;
    apr_size_t max_body;
    int max_depth;
    int max_backends;                  /* 0: unset */
    int backend_conns;                 /* idle keep-alive connections per
                                          fetcher; 0: unset */
    int client;                        /* BFF_CLIENT_*; 0: unset */
    apr_array_header_t *fwd_headers;
    apr_array_header_t *fwd_query;
    bff_cache_conf_t *cache;
    bff_auth_srv_t *auth;              /* access phase (mod_bff_auth.c) */
    bff_res_conf_t *res;               /* resilience (mod_bff_resilience.c) */
    int request_id;                    /* BFFRequestID: -1 unset, 0, 1 */
    bff_events_conf_t *events;         /* BFFEventsRedis (main server) */

    int metrics_slots;                 /* BFFMetricsSlots; 0: unset */
    const struct bff_tls_t *tls;       /* BFFBackendTLS * at server level:
                                          backends without their own;
                                          NULL: unset */
    apr_array_header_t *tls_off;       /* "FILE:LINE" of BFFBackendTLS
                                          with verify=off, for configtest */
} bff_server_conf_t;

/* The per-directory config only carries the endpoint being defined while
 * the directives inside <BFFEndpoint> are read. */
typedef struct {
    bff_ep_conf_t *epc;
    bff_auth_dir_t *auth;              /* access phase (mod_bff_auth.c) */
    bff_cors_dir_t *cors;              /* mod_bff_cors.c */
    int purge_scope;                   /* BFFCachePurgeScope: 0 unset */
    bff_valid_conf_t *valid;           /* request validation; NULL: none */
} bff_dir_conf_t;

#define BFF_PURGE_VHOST  1             /* the virtual host purged (default) */
#define BFF_PURGE_SERVER 2             /* every virtual host */

/* NULL when libcurl is built in; else an error naming what needs it
 * (what: "an https:// backend"), for the directive to prefix. */
const char *bff_need_curl(cmd_parms *cmd, const char *what);

/* NULL when the directive is read inside <BFFEndpoint> (dc->epc is then
 * the endpoint), else the error to return. */
const char *bff_in_endpoint_only(cmd_parms *cmd, void *dc);

/* 1 when mod_bff sets the request note name (r->notes) on some requests:
 * the list is kept in mod_bff.c, next to the module record. */
int bff_note_known(const char *name);

/* mod_bff_cache.c: directives (listed in mod_bff.c's table, cmd->info
 * one of these) */
enum {
    BFF_CC_STORE = 1, BFF_CC_FALLBACK, BFF_CC_PREFIX, BFF_CC_CONNECT,
    BFF_CC_COMMAND, BFF_CC_POOL, BFF_CC_NEAR, BFF_CC_MAXENTRY,
    BFF_CE_TTL, BFF_CE_STALE, BFF_CE_PARTIAL, BFF_CE_LOCK, BFF_CE_NOCACHE,
    BFF_CE_CONTROL, BFF_CE_VARY, BFF_CE_KEYQUERY, BFF_CE_TAG, BFF_CE_SHARED
};
const char *bff_cache_cmd_server(cmd_parms *cmd, void *dc, const char *arg);
const char *bff_cache_cmd_endpoint(cmd_parms *cmd, void *dc, const char *arg);
const char *bff_cache_cmd_endpoint_list(cmd_parms *cmd, void *dc,
                                        const char *arg);
const char *bff_cache_cmd_purge_scope(cmd_parms *cmd, void *dc,
                                      const char *arg);
bff_cache_conf_t *bff_cache_conf_create(apr_pool_t *p);
bff_cache_conf_t *bff_cache_conf_merge(apr_pool_t *p, const bff_cache_conf_t *base,
                                       const bff_cache_conf_t *add);
const char *bff_cache_ep_finalize(bff_ep_conf_t *epc, apr_pool_t *p);
void bff_cache_register_hooks(apr_pool_t *p);

/* The request side: bff_cache_lookup answers from the cache (OK) or says
 * the handler must compute (DECLINED, *cr set when the answer is to be
 * stored); bff_cache_finish stores what was computed, or answers with a
 * stale copy instead of an error (OK). The key derives from cc, the
 * context the backend calls will carry (headers, forwarded query), so
 * whatever reaches a backend is in it. */
int bff_cache_lookup(bff_cache_req_t **cr, request_rec *r,
                     const bff_ep_conf_t *epc, const char *const *values,
                     const bff_call_ctx_t *cc);
int bff_cache_finish(bff_cache_req_t *cr, request_rec *r,
                     const bff_run_result_t *res, const char *body,
                     apr_size_t len, const char *etag);
/* The cache store's state for the health handler (type, up, whether the
 * shared memory fallback is in use); NULL when no endpoint caches.
 * *usable is set to 0 when answers can be neither read nor stored. */
json_t *bff_cache_health(int *usable, apr_pool_t *p);
/* Sends a JSON body with ETag / If-None-Match handling. */
int bff_send_body(request_rec *r, int status, const char *ctype,
                  const char *body, apr_size_t len, const char *etag);

/* mod_bff_client.c: client-specific presentation (issue 6); directives
 * listed in mod_bff.c's table, cmd->info one of these */
enum {
    BFF_PR_LIFT = 1, BFF_PR_RENAME, BFF_PR_WRAP, BFF_PR_MERGE,
    BFF_PR_FIELDS, BFF_PR_SELECT
};
const char *bff_client_cmd(cmd_parms *cmd, void *dc, const char *a1,
                           const char *a2);
const char *bff_client_cmd1(cmd_parms *cmd, void *dc, const char *a1);
const char *bff_client_cmd_join(cmd_parms *cmd, void *dc, const char *target,
                                const char *spec, const char *opt);
const char *bff_client_cmd_drop_empty(cmd_parms *cmd, void *dc, int on);
const char *bff_client_cmd_fields(cmd_parms *cmd, void *dc, const char *name,
                                  const char *path);
/* A BFFDeny path: never selectable with ?fields= */
void bff_client_note_deny(bff_ep_conf_t *epc, const char *path, apr_pool_t *p);
const char *bff_client_ep_finalize(bff_ep_conf_t *epc, apr_pool_t *p);
/* Picks the client (Vary, note bff-client) and the field selection (?fields=
 * or the client's default; note bff-fields, read by the cache key). OK with
 * *fields set (NULL: everything), or HTTP_BAD_REQUEST with a detail and
 * extra problem members (the refused fields). */
int bff_client_prepare(request_rec *r, const bff_ep_conf_t *epc,
                       const bff_shape_t **fields, const char **detail,
                       json_t **extra);

/* mod_bff_aggregate.c */
void bff_aggregate_register_hooks(apr_pool_t *p);
/* The endpoint whose route and method r matched; NULL when none. */
bff_ep_conf_t *bff_request_endpoint(request_rec *r);
/* Hands the client's parsed body (validated) to the endpoint's run. */
void bff_request_set_body(request_rec *r, json_t *body);
apr_status_t bff_aggregate_child_init(apr_pool_t *pchild, server_rec *s);

/* mod_bff_problem.c: problem+json answers (RFC 9457, request_id
 * included). bff_send_problem answers r now (extra: further members, or
 * NULL; returns OK); bff_problem_defer registers the answer httpd gives
 * when it ends up answering r with that status from ap_die (an
 * access-phase refusal), with the WWW-Authenticate challenge, or NULL. */
int bff_send_problem(request_rec *r, int status, const char *title,
                     const char *detail, json_t *extra);
void bff_problem_defer(request_rec *r, int status, const char *title,
                       const char *detail, const char *challenge);
void bff_problem_register_hooks(apr_pool_t *p);

/* The access phase (mod_bff_authn.c, mod_bff_authz.c, mod_bff_ratelimit.c;
 * see mod_bff_access.h): authentication, authorization, identity headers
 * and throttling. */
void bff_auth_register_hooks(apr_pool_t *p);
bff_auth_srv_t *bff_auth_create_srv(apr_pool_t *p);
bff_auth_srv_t *bff_auth_merge_srv(apr_pool_t *p, const bff_auth_srv_t *base,
                                   const bff_auth_srv_t *add);
bff_auth_dir_t *bff_auth_create_dir(apr_pool_t *p);
bff_auth_dir_t *bff_auth_merge_dir(apr_pool_t *p, const bff_auth_dir_t *base,
                                   const bff_auth_dir_t *add);
/* The identity headers configured for r's location (const char *), which
 * the aggregation always forwards; NULL when none. */
const apr_array_header_t *bff_auth_identity_names(request_rec *r);
/* A verified claim of r (JWT, or an API key's sub/plan) rendered as
 * bff_jwt_claim_header does; NULL without one. */
const char *bff_auth_claim(request_rec *r, const char *path);

/* directive handlers (the command table is in mod_bff.c) */
const char *bff_auth_cmd_jwt_file(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_auth_cmd_jwt_algs(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_auth_cmd_jwt_issuer(cmd_parms *cmd, void *dcv,
                                    const char *arg);
const char *bff_auth_cmd_jwt_audience(cmd_parms *cmd, void *dcv,
                                      const char *arg);
const char *bff_auth_cmd_jwt_leeway(cmd_parms *cmd, void *dcv,
                                    const char *arg);
const char *bff_auth_cmd_jwt_require_exp(cmd_parms *cmd, void *dcv, int on);
const char *bff_auth_cmd_jwt_max_size(cmd_parms *cmd, void *dcv,
                                      const char *arg);
const char *bff_auth_cmd_jwt_cache(cmd_parms *cmd, void *dcv, const char *n,
                                   const char *ttl);
const char *bff_auth_cmd_token_source(cmd_parms *cmd, void *dcv,
                                      const char *arg);
const char *bff_auth_cmd_apikey_file(cmd_parms *cmd, void *dcv,
                                     const char *arg);
const char *bff_auth_cmd_apikey_header(cmd_parms *cmd, void *dcv,
                                       const char *arg);
const char *bff_auth_cmd_apikey_redis(cmd_parms *cmd, void *dcv,
                                      const char *args);
const char *bff_auth_cmd_identity_header(cmd_parms *cmd, void *dcv,
                                         const char *args);
const char *bff_auth_cmd_rate_limit(cmd_parms *cmd, void *dcv,
                                    const char *args);
const char *bff_auth_cmd_rl_fallback(cmd_parms *cmd, void *dcv,
                                     const char *arg);
const char *bff_auth_cmd_rl_redis(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_auth_cmd_rl_instances(cmd_parms *cmd, void *dcv,
                                      const char *arg);

/* mod_bff_resilience.c: circuit breakers, retries, load balancing over
 * upstream instances, health (issue 5) */
void bff_res_register_hooks(apr_pool_t *p);
bff_res_conf_t *bff_res_conf_create(apr_pool_t *p);
bff_res_conf_t *bff_res_conf_merge(apr_pool_t *p, const bff_res_conf_t *base,
                                   const bff_res_conf_t *add);
/* The engine policy for one request to epc; NULL when there is none. */
const bff_policy_t *bff_res_policy(request_rec *r, const bff_ep_conf_t *epc);
const char *bff_res_cmd_breaker(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_res_cmd_retry(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_res_cmd_upstream(cmd_parms *cmd, void *dcv, const char *args);
/* 1 when calls to url may use TLS: an https:// URL, or one whose host is
 * a BFFUpstream (of main server s) with an https:// instance. */
int bff_res_url_tls(server_rec *s, const char *url);
const char *bff_res_cmd_probe(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_res_cmd_slots(cmd_parms *cmd, void *dcv, const char *arg);

/* Read API for metrics and health: one breaker key (a backend origin
 * "http://host:port", or "origin /pattern backend" with scope=backend)
 * with its state and counters, summed over all children. */
typedef struct {
    const char *key;
    int state;                   /* bff_brk_state_e */
    int breaker;                 /* 1: a breaker is configured for it */
    int required;                /* a required backend calls it */
    int probe;                   /* active probe: 0 unknown, 1 up, 2 down */
    apr_time_t probe_at;
    apr_uint32_t outstanding;    /* calls in flight now */
    int last_status;             /* last call's HTTP status, 0: none */
    int last_ok;
    const char *last_reason;     /* "HTTP 503", "timeout", ... or NULL */
    apr_time_t last_at;          /* 0: never called */
    apr_time_t open_until;       /* open: when trials may start */
    bff_brk_counters_t counters; /* transitions, refused, retries, ... */
} bff_res_backend_t;
typedef void bff_res_backend_fn(void *baton, const bff_res_backend_t *b);
/* Calls fn for every known key (a snapshot taken under the lock); returns
 * how many. */
int bff_res_backends(bff_res_backend_fn *fn, void *baton, apr_pool_t *p);
/* mod_bff_log.c: request id, trace context, JSON access logs (issue 7) */
typedef struct {
    const char *backend;
    const char *reason;
    int status;
    double ms;
    int required;
} bff_obs_failure_t;

typedef struct {
    const char *request_id;
    bff_trace_t trace;          /* the client's (continued) or a new one */
    int continued;              /* 1: the client's traceparent was valid */
    const char *traceparent;    /* for ProxyPass: the gateway's own span */
    const char *span_id;        /* that span */
    /* filled by bff_obs_note_run when an aggregation ran */
    const char *backends;       /* JSON object text: name -> timing */
    apr_array_header_t *failures;    /* bff_obs_failure_t */
    double agg_ms;
} bff_obs_req_t;

/* The request's correlation data, made on first use (post_read_request
 * unless BFFRequestID Off); shared by subrequests and internal
 * redirects. */
bff_obs_req_t *bff_obs_req(request_rec *r);
const char *bff_request_id(request_rec *r);
/* Records what the engine did, for the log and the events. */
void bff_obs_note_run(request_rec *r, const bff_endpoint_t *ep,
                      const bff_run_result_t *res);
void bff_log_register_hooks(apr_pool_t *p);
const char *bff_log_cmd_request_id(cmd_parms *cmd, void *dcv, int on);

/* mod_bff_validate.c: request bodies (JSON Schema), query parameters and
 * headers checked before any backend is called */
bff_valid_conf_t *bff_valid_conf_merge(apr_pool_t *p,
                                       const bff_valid_conf_t *base,
                                       const bff_valid_conf_t *add);
const char *bff_valid_cmd_schema(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_valid_cmd_limit(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_valid_cmd_rule(cmd_parms *cmd, void *dcv, const char *args);
void bff_valid_register_hooks(apr_pool_t *p);

/* mod_bff_events.c: analytics events to a Redis stream (issue 7) */
bff_events_conf_t *bff_events_conf_create(apr_pool_t *p);
const char *bff_events_cmd_redis(cmd_parms *cmd, void *dcv,
                                 const char *args);
void bff_events_register_hooks(apr_pool_t *p);

/* ---- CORS: mod_bff_cors.c ---- */
bff_cors_dir_t *bff_cors_dir_create(apr_pool_t *p);
bff_cors_dir_t *bff_cors_dir_merge(apr_pool_t *p, bff_cors_dir_t *base,
                                   bff_cors_dir_t *add);
/* cmd->info of bff_cors_cmd_list: 1 methods, 2 request headers, 3 exposed
 * headers */
const char *bff_cors_cmd_origin(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_cors_cmd_list(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_cors_cmd_credentials(cmd_parms *cmd, void *dcv, int on);
const char *bff_cors_cmd_max_age(cmd_parms *cmd, void *dcv, const char *arg);
void bff_cors_register_hooks(apr_pool_t *p);

/* ---- metrics: mod_bff_metrics.c (issue 7) ---- */
void bff_metrics_register_hooks(apr_pool_t *p);
const char *bff_metrics_cmd_slots(cmd_parms *cmd, void *dcv, const char *arg);
/* Counts one engine run: aggregation time, each backend's call, outcome,
 * duration and failure reason. */
void bff_metrics_run(request_rec *r, const bff_endpoint_t *ep,
                     const bff_run_result_t *res);
/* Aggregations in flight now, all children (the metrics table). */
long bff_metrics_agg_active(void);

/* mod_bff_status.c: mod_bff's state on mod_status's page */
void bff_status_register_hooks(apr_pool_t *p);

/* mod_bff_shared.c: shared resources, one failure policy (a configured
 * feature that cannot have them stops start-up, naming what needs them).
 *
 * Anonymous shared memory created by the parent, kept across graceful
 * restarts: the same name and size give the same memory back (*kept 1);
 * new memory is zeroed. NULL (logged) when it cannot be had. */
void *bff_shm_retained(int *kept, const char *name, apr_size_t size,
                       server_rec *s);

/* An socache shmcb instance and its global mutex. */
typedef struct {
    const ap_socache_provider_t *provider;
    ap_socache_instance_t *inst;
    apr_global_mutex_t *mutex;       /* NULL in a child that lost it */
    server_rec *server;
} bff_shared_cache_t;

/* post_config: makes c (name: the socache's name; args: shmcb's
 * "path(size)" or NULL; mutex_type registered in pre_config). OK, or
 * HTTP_INTERNAL_SERVER_ERROR logged with `what`, the directive that
 * needs it. */
int bff_shared_cache_create(bff_shared_cache_t *c, const char *what,
                            const char *name, const char *args,
                            const char *mutex_type,
                            const struct ap_socache_hints *hints,
                            server_rec *s, apr_pool_t *pconf,
                            apr_pool_t *ptemp);
/* child_init: attaches the mutex (a failure is logged; lock then fails). */
void bff_shared_cache_child_init(bff_shared_cache_t *c, apr_pool_t *pchild,
                                 server_rec *s);
/* 1 with the mutex held, 0 when it cannot be had (treat as unavailable). */
int bff_shared_cache_lock(bff_shared_cache_t *c);
void bff_shared_cache_unlock(bff_shared_cache_t *c);

/* What the metrics read from the other areas when scraped. */
typedef struct {
    apr_uint64_t hits, misses, stale, fallbacks;
} bff_cache_counters_t;
/* mod_bff_cache.c: its shared counters (all children); 0 when no endpoint
 * is cached. */
int bff_cache_counters(bff_cache_counters_t *out);
typedef struct {
    int up;                    /* probe: the Redis answered just now */
    int open, busy;            /* this child's pooled connections */
} bff_redis_state_t;
/* 0 when there is no such Redis; else fills out, and with probe sends the
 * Redis a command first (bounded by the pool's timeouts, failing fast
 * while it is known down). */
int bff_cache_redis_state(bff_redis_state_t *out, int probe, apr_pool_t *p);
int bff_auth_redis_state(bff_redis_state_t *out, int probe, request_rec *r);

/* The seam for the circuit breakers (issue 5): their glue registers this
 * optional function (APR_REGISTER_OPTIONAL_FN) returning one
 * bff_breaker_info_t per breaker key (breakers, and keys with retry
 * counts), read at every scrape. */
typedef struct {
    const char *backend;       /* the breaker's backend (or host) name */
    const char *state;         /* "closed", "half-open" or "open"; NULL for
                                  a key without a breaker (retries only) */
    apr_uint64_t to_closed, to_half_open, to_open;   /* transitions so far */
    apr_uint64_t refused;      /* calls not made: circuit open */
    apr_uint64_t retries, budget_exhausted;          /* BFFRetry */
} bff_breaker_info_t;
APR_DECLARE_OPTIONAL_FN(apr_array_header_t *, bff_breaker_snapshot,
                        (apr_pool_t *p));

#endif /* MOD_BFF_H */
