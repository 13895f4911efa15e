/*
 * mod_bff: the outage gate of a shared store (Redis, memcached), pure core
 * (no httpd.h). One per server a process talks to: while the server is
 * down calls fail fast, and once per backoff period one caller probes it.
 * Its counters and state feed health checks and metrics.
 */
#ifndef BFF_GATE_H
#define BFF_GATE_H

#include <apr_pools.h>
#include <apr_time.h>

/* State for health checks and metrics. Counters are per process. */
typedef struct {
    int up;                   /* 0: failing fast until retry_at */
    apr_time_t since;         /* last up/down change (0: never) */
    apr_time_t retry_at;      /* down: next connect attempt */
    const char *last_error;   /* NULL when none */
    apr_time_t last_error_at;
    apr_uint64_t connects;            /* connections opened */
    apr_uint64_t connect_failures;    /* connects that failed */
    apr_uint64_t errors;              /* operations answered ERROR */
    apr_uint64_t fast_fails;          /* ERRORs without trying: down */
    int servers;              /* memcached: servers configured; Redis: 1 */
    int servers_down;
    int conns_open;           /* Redis: pooled connections open */
    int conns_busy;           /* Redis: of which checked out now */
} bff_store_health_t;

/* Up/down state with exponential backoff, shared by the stores: while
 * down, calls fail fast; once retry_at has passed one caller (the probe)
 * may connect, the others keep failing fast until it reports. */
typedef struct bff_store_gate_t bff_store_gate_t;

bff_store_gate_t *bff_store_gate_create(long backoff_min_ms,
                                        long backoff_max_ms, apr_pool_t *p);
/* 1: go ahead (up, or this caller is the probe); 0: fail fast. */
int bff_store_gate_enter(bff_store_gate_t *g, apr_time_t now);
/* A connect or command succeeded: up, backoff reset. */
void bff_store_gate_ok(bff_store_gate_t *g, apr_time_t now);
/* A connection failed: down until now + backoff (then doubled); the
 * generation changes so pooled connections opened before are dropped. */
void bff_store_gate_fail(bff_store_gate_t *g, apr_time_t now,
                         const char *err);
/* An operation failed without the store being down (an error reply). */
void bff_store_gate_note_error(bff_store_gate_t *g, apr_time_t now,
                               const char *err);
apr_uint32_t bff_store_gate_generation(bff_store_gate_t *g);
void bff_store_gate_count(bff_store_gate_t *g, int connect_ok,
                          int connect_failed);
void bff_store_gate_health(bff_store_gate_t *g, bff_store_health_t *out,
                           apr_pool_t *p);

#endif /* BFF_GATE_H */
