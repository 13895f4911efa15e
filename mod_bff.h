/*
 * mod_bff: private header shared by the httpd glue files (mod_bff*.c).
 */
#ifndef MOD_BFF_H
#define MOD_BFF_H

#include "httpd.h"
#include "http_config.h"
#include "apr_hash.h"
#include "apr_optional.h"

#include "bff_engine.h"
#include "bff_http.h"

/* "not set" in configuration records, merged away by the merge functions */
#define UNSET -1

/* Every log message at debug level and above carries its own number, so
 * operators and tests can grep for it. Never reuse a number. */
#define BFFLOGNO(n) "BFF" #n ": "

#define BFF_HANDLER "bff-aggregate"

/* BFFHTTPClient: which HTTP client calls the backends */
#define BFF_HTTP_CLIENT_NATIVE 1   /* own HTTP/1.1 client; https via libcurl */
#define BFF_HTTP_CLIENT_CURL   2   /* libcurl for everything */

/* BFFBackendPool: whose the backend connections are */
#define BFF_POOL_CHILD         1   /* the child's, shared by its threads */
#define BFF_POOL_THREAD        2   /* each worker thread's own */
#define BFF_POOL_MAX_ORIGIN  256   /* child: connections per origin */
#define BFF_POOL_IDLE_CHILD 1024   /* child: idle connections kept */
#define BFF_POOL_IDLE_THREAD  16   /* thread: idle connections kept */

extern module AP_MODULE_DECLARE_DATA bff_module;

/* Cache configuration (mod_bff_cache.c owns these types). */
typedef struct bff_cache_ep_t bff_cache_ep_t;       /* per endpoint */
typedef struct bff_cache_conf_t bff_cache_conf_t;   /* per server */
typedef struct bff_cache_req_t bff_cache_req_t;     /* per request */
/* mod_bff_profile.c: fields and per-client defaults of an endpoint */
typedef struct bff_profile_ep_t bff_profile_ep_t;
/* mod_bff_authn.c keeps the access configuration behind these (opaque here). */
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
/* mod_bff_overload.c: caps on requests in flight (opaque here) */
typedef struct bff_overload_conf_t bff_overload_conf_t;
typedef struct bff_overload_ep_t bff_overload_ep_t;
/* mod_bff_sse.c: event streams (opaque here) */
typedef struct bff_sse_conf_t bff_sse_conf_t;
typedef struct bff_sse_dir_t bff_sse_dir_t;

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
    bff_profile_ep_t *profile;         /* NULL: no ?fields=, no client profiles */
    /* hex SHA-256 over the section's directives (backends, templates,
     * shaping, allow/deny, client profiles, cache settings): part of
     * every cache key, so a changed definition never serves old entries */
    const char *fingerprint;
    bff_valid_conf_t *valid;           /* NULL: the <Location>'s rules */
    long max_inflight;                 /* BFFMaxInFlight inside the
                                          endpoint; 0: the server's */
    bff_overload_ep_t *overload;       /* its counters, from post_config */
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
                                          pool; 0: unset */
    int backend_pool;                  /* BFF_POOL_*; 0: unset */
    long backend_max_origin;           /* open connections per origin and
                                          pool; 0: unset, -1: unbounded */
    long backend_idle_ms;              /* idle timeout; 0: unset */
    int http_client;                   /* BFF_HTTP_CLIENT_*; 0: unset */
    apr_array_header_t *fwd_headers;
    apr_array_header_t *fwd_query;
    bff_cache_conf_t *cache;
    bff_auth_srv_t *auth;              /* access phase (mod_bff_access.h) */
    bff_res_conf_t *res;               /* resilience (mod_bff_resilience.c) */
    int request_id;                    /* BFFRequestID: -1 unset, 0, 1 */
    bff_events_conf_t *events;         /* BFFEventsRedis (main server) */
    bff_overload_conf_t *overload;     /* BFFMaxInFlight (main server) */
    bff_sse_conf_t *sse;               /* BFFEventStreamRedis (main server) */

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
    bff_auth_dir_t *auth;              /* access phase (mod_bff_access.h) */
    bff_cors_dir_t *cors;              /* mod_bff_cors.c */
    int purge_scope;                   /* BFFCachePurgeScope: 0 unset */
    bff_valid_conf_t *valid;           /* request validation; NULL: none */
    bff_sse_dir_t *sse;                /* BFFEventStream */
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

/* mod_bff_send.c: every answer the module sends itself. problem+json
 * (RFC 9457, request_id included): bff_send_problem answers r now (extra: further members, or
 * NULL; returns OK); bff_problem_defer registers the answer httpd gives
 * when it ends up answering r with that status from ap_die (an
 * access-phase refusal), with the WWW-Authenticate challenge, or NULL. */
int bff_send_problem(request_rec *r, int status, const char *title,
                     const char *detail, json_t *extra);
void bff_problem_defer(request_rec *r, int status, const char *title,
                       const char *detail, const char *challenge);
void bff_problem_register_hooks(apr_pool_t *p);

/* Sends a JSON body with ETag / If-None-Match handling; body lives in
 * r->pool or longer (it is sent without a copy). */
int bff_send_body(request_rec *r, int status, const char *ctype,
                  const char *body, apr_size_t len, const char *etag);

typedef struct {
    int up;                    /* probe: the Redis answered just now */
    int open, busy;            /* this child's pooled connections */
} bff_redis_state_t;

#endif /* MOD_BFF_H */
