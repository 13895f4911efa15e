/*
 * mod_bff: circuit breakers, retries, upstreams, the health probe
 * (mod_bff_resilience.c).
 */
#ifndef MOD_BFF_RESILIENCE_H
#define MOD_BFF_RESILIENCE_H

#include "mod_bff.h"
#include "bff_breaker.h"

/* mod_bff_resilience.c: circuit breakers, retries, load balancing over
 * upstream instances, health */
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
/* The seam for the circuit breakers: their glue registers this
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

#endif /* MOD_BFF_RESILIENCE_H */
