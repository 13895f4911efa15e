/*
 * mod_bff metrics: a table of series in one block of shared memory and its
 * Prometheus text exposition (format 0.0.4). No httpd.h here.
 *
 * The table is an open-addressing hash of fixed-size slots. A slot holds
 * one series: its family (bff_metric_e), its rendered label set (the key,
 * e.g. endpoint="/api/x",method="GET",status="200") and its cells: one
 * value for a counter or gauge, the buckets and sum of a histogram. Slots
 * are claimed with a compare-and-swap and never move or go away, so every
 * update is one lookup plus atomic adds: any number of processes and
 * threads may update and render the same table without a lock. Because a
 * slot is keyed by its labels, not by a position computed from the
 * configuration, a table that survives a graceful restart keeps every
 * series even when the new configuration adds or removes endpoints.
 *
 * Label values come from bounded sets only (endpoint patterns, backend and
 * limit names from the configuration, enumerated reasons, status codes);
 * the table size bounds the rest: when it is full, new series are counted
 * in bff_metrics_series_dropped_total instead of being created.
 */
#ifndef BFF_METRICS_H
#define BFF_METRICS_H

#include <apr.h>
#include <apr_pools.h>

#include "bff_engine.h"

typedef enum {
    BFF_M_HTTP_REQUESTS = 0,      /* counter {endpoint,method,status} */
    BFF_M_HTTP_DURATION,          /* histogram {endpoint} */
    BFF_M_HTTP_ACTIVE,            /* gauge */
    BFF_M_AGG_DURATION,           /* histogram {endpoint} */
    BFF_M_BACKEND_REQUESTS,       /* counter {backend,outcome} */
    BFF_M_BACKEND_DURATION,       /* histogram {backend} */
    BFF_M_SERVICE_ERRORS,         /* counter {backend,reason} */
    BFF_M_CACHE_HITS,             /* counter */
    BFF_M_CACHE_MISSES,           /* counter */
    BFF_M_CACHE_STALE,            /* counter */
    BFF_M_CACHE_FALLBACK,         /* counter */
    BFF_M_RATELIMIT_REJECTIONS,   /* counter {limit} */
    BFF_M_AUTH_FAILURES,          /* counter {reason} */
    BFF_M_BREAKER_STATE,          /* gauge {backend} 0 closed 1 half-open 2 open */
    BFF_M_BREAKER_TRANSITIONS,    /* counter {backend,to} */
    BFF_M_REDIS_UP,               /* gauge {pool} */
    BFF_M_REDIS_CONNECTIONS,      /* gauge {pool,state} */
    BFF_M_DROPPED,                /* counter: series the full table refused */
    /* appended, so series kept across a graceful restart keep their ids */
    BFF_M_BREAKER_REFUSED,        /* counter {backend} */
    BFF_M_RETRIES,                /* counter {backend} */
    BFF_M_RETRY_BUDGET_EXHAUSTED, /* counter {backend} */
    BFF_M_AGG_ACTIVE,             /* gauge: aggregations in flight */
    BFF_M_BUILD_INFO,             /* gauge {version,features}, always 1 */
    BFF_M_OVERLOAD_REJECTED,      /* counter {endpoint,limit} */
    BFF_M_WORKERS_BUSY,           /* gauge: httpd workers serving requests */
    BFF_M_WORKERS_MAX,            /* gauge: MaxRequestWorkers */
    BFF_M_SSE_STREAMS,            /* gauge: event streams open */
    BFF_M_SSE_EVENTS,             /* counter: events sent on event streams */
    BFF_M_NFAMILIES
} bff_metric_e;

typedef enum {
    BFF_MT_COUNTER = 0,
    BFF_MT_GAUGE,
    BFF_MT_HISTOGRAM
} bff_metric_type_e;

typedef struct {
    const char *name;
    const char *help;
    bff_metric_type_e type;
} bff_metric_family_t;

const bff_metric_family_t *bff_metric_family(bff_metric_e m);

/* Histogram buckets: Prometheus' default upper bounds, 5 ms to 10 s. */
#define BFF_METRICS_NBUCKETS 11

#define BFF_METRICS_KEY_MAX 232          /* rendered labels, NUL included */
/* cells: a histogram's finite buckets (not cumulative), the bucket above
 * the last bound, then the sum in microseconds; v[0] for the others */
#define BFF_METRICS_CELL_INF BFF_METRICS_NBUCKETS
#define BFF_METRICS_CELL_SUM (BFF_METRICS_NBUCKETS + 1)
#define BFF_METRICS_NCELLS   (BFF_METRICS_NBUCKETS + 2)

typedef struct {
    apr_uint32_t state;                 /* 0 free, 1 being claimed, 2 ready */
    apr_uint32_t hash;
    apr_uint32_t family;
    apr_uint32_t pad;
    char key[BFF_METRICS_KEY_MAX];
    apr_uint64_t v[BFF_METRICS_NCELLS];
} bff_metrics_slot_t;

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t nslots;
    apr_uint64_t dropped;
    bff_metrics_slot_t slots[1];        /* nslots of them */
} bff_metrics_table_t;

/* Bytes of a table of nslots slots. */
apr_size_t bff_metrics_table_size(unsigned nslots);

/* Makes mem (bff_metrics_table_size(nslots) bytes) a table. A block that
 * already is a table of this size (memory reattached after a graceful
 * restart) is kept as it is: returns 1; else it is cleared: returns 0. */
int bff_metrics_table_init(void *mem, unsigned nslots);

/* Renders label pairs as a key: name, value, name, value, ..., NULL.
 * Values are escaped as the exposition format wants (\\, \", \n). NULL
 * when the result does not fit a slot's key. */
const char *bff_metrics_labels(apr_pool_t *p, ...);

/* The series (family, labels), created when new; NULL when the table is
 * full or labels is NULL (too long: see bff_metrics_labels); both are
 * counted as dropped. "" for no labels. */
bff_metrics_slot_t *bff_metrics_series(bff_metrics_table_t *t,
                                       bff_metric_e fam, const char *labels);

/* Updates; all are no-ops when the series cannot be had. */
void bff_metrics_add(bff_metrics_table_t *t, bff_metric_e fam,
                     const char *labels, apr_uint64_t n);
void bff_metrics_gauge_add(bff_metrics_table_t *t, bff_metric_e fam,
                           const char *labels, apr_int64_t delta);
/* For values another part of the server already keeps (a counter in its
 * own shared memory, a state): the last writer wins. */
/* The value of a counter or gauge series (0 for a new one). */
apr_int64_t bff_metrics_get(bff_metrics_table_t *t, bff_metric_e fam,
                            const char *labels);
void bff_metrics_set(bff_metrics_table_t *t, bff_metric_e fam,
                     const char *labels, apr_int64_t value);
void bff_metrics_observe(bff_metrics_table_t *t, bff_metric_e fam,
                         const char *labels, apr_interval_time_t usec);

/* The exposition text of every family: HELP and TYPE lines for each, then
 * its series sorted by labels (a family without labels that has no series
 * yet shows 0). */
const char *bff_metrics_render(apr_size_t *len, const bff_metrics_table_t *t,
                               apr_pool_t *p);

/* ------------------------------------------------ bounded label values -- */

/* GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, or "other". */
const char *bff_metrics_method(const char *method);

/* "200" for 100..599, else "other". */
const char *bff_metrics_status(int status, apr_pool_t *p);

/* The reason bucket of a failed backend: timeout, connect_error, too_big,
 * bad_response, cancelled, internal, http_4xx, http_5xx, http_other,
 * invalid_json, missing_input, circuit_open, dependency_failed or other. */
const char *bff_metrics_backend_reason(const bff_be_result_t *br);

/* The access phase's failure notes (bff-auth-error) mapped to a bounded
 * set: missing, invalid_key, insufficient_scope, store_down, the JWT
 * verifier's status names (expired, bad_signature, ...), else "other". */
const char *bff_metrics_auth_reason(const char *note);

/* Breaker state names ("closed", "half-open", "open") as the gauge value
 * 0, 1, 2; -1 when unknown. */
int bff_metrics_breaker_value(const char *state);

#endif /* BFF_METRICS_H */
