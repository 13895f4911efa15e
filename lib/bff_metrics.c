/*
 * mod_bff metrics: the shared series table and the Prometheus exposition
 * (see bff_metrics.h).
 */
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "bff_metrics.h"

#define TABLE_MAGIC 0xBFF3E701u
#define SPIN_MAX    100000       /* waits for a slot being claimed */

static const bff_metric_family_t families[BFF_M_NFAMILIES] = {
    { "bff_http_requests_total",
      "Requests answered, by endpoint (route pattern or Location), method "
      "and status.", BFF_MT_COUNTER },
    { "bff_http_request_duration_seconds",
      "Time from reading the request to logging it, by endpoint.",
      BFF_MT_HISTOGRAM },
    { "bff_http_active_requests",
      "Requests being processed now.", BFF_MT_GAUGE },
    { "bff_aggregation_duration_seconds",
      "Time the aggregation engine took to call the backends and merge "
      "their answers, by endpoint.", BFF_MT_HISTOGRAM },
    { "bff_backend_requests_total",
      "Backend calls made by the aggregation, by backend and outcome "
      "(ok or error).", BFF_MT_COUNTER },
    { "bff_backend_request_duration_seconds",
      "Duration of backend calls, by backend.", BFF_MT_HISTOGRAM },
    { "bff_service_errors_total",
      "Failed backend calls, by backend and reason.", BFF_MT_COUNTER },
    { "bff_cache_hits_total",
      "Answers served from the response cache (near cache included).",
      BFF_MT_COUNTER },
    { "bff_cache_misses_total",
      "Cache lookups that found no usable answer.", BFF_MT_COUNTER },
    { "bff_cache_stale_total",
      "Expired answers served instead of an error (stale-if-error).",
      BFF_MT_COUNTER },
    { "bff_cache_fallback_total",
      "Cache operations redirected to shared memory while the store "
      "failed.", BFF_MT_COUNTER },
    { "bff_ratelimit_rejections_total",
      "Requests refused by a rate limit, by limit name (store_down: "
      "refused because the limits' Redis was unreachable and "
      "BFFRateLimitFallback is closed).", BFF_MT_COUNTER },
    { "bff_auth_failures_total",
      "Requests refused by the access phase, by reason.", BFF_MT_COUNTER },
    { "bff_breaker_state",
      "Circuit breaker state by backend: 0 closed, 1 half-open, 2 open.",
      BFF_MT_GAUGE },
    { "bff_breaker_transitions_total",
      "Circuit breaker state changes, by backend and new state.",
      BFF_MT_COUNTER },
    { "bff_redis_up",
      "1 when the Redis behind a pool answers, else 0.", BFF_MT_GAUGE },
    { "bff_redis_pool_connections",
      "Connections of a Redis pool, over all child processes, by state "
      "(busy: checked out by a request, idle: kept open).", BFF_MT_GAUGE },
    { "bff_metrics_series_dropped_total",
      "Updates of series that the full metrics table could not hold "
      "(raise BFFMetricsSlots).", BFF_MT_COUNTER },
    { "bff_breaker_calls_refused_total",
      "Backend calls not made because the circuit breaker was open, by "
      "breaker.", BFF_MT_COUNTER },
    { "bff_backend_retries_total",
      "Retries of backend calls (BFFRetry), by breaker key (backend origin "
      "or endpoint backend).", BFF_MT_COUNTER },
    { "bff_retry_budget_exhausted_total",
      "Retries not made because the retry budget was spent, by breaker "
      "key.", BFF_MT_COUNTER },
    { "bff_aggregations_in_flight",
      "Aggregated endpoint requests past the access phase and not yet "
      "answered (cache hits included).", BFF_MT_GAUGE },
    { "bff_build_info",
      "mod_bff's version and the optional features it was built with "
      "(space-separated); always 1.", BFF_MT_GAUGE },
    { "bff_overload_rejected_total",
      "Aggregations answered 503 at once because a BFFMaxInFlight cap was "
      "reached, by endpoint and limit (total, endpoint, backend, consumer).",
      BFF_MT_COUNTER },
    { "bff_workers_busy",
      "httpd worker threads serving a request now (all processes, from "
      "the scoreboard, read at scrape).", BFF_MT_GAUGE },
    { "bff_workers_max",
      "MaxRequestWorkers: the most requests httpd serves at once.",
      BFF_MT_GAUGE },
    { "bff_event_streams_open",
      "Server-sent event streams open now (each holds a worker thread).",
      BFF_MT_GAUGE },
    { "bff_event_stream_events_total",
      "Events sent on server-sent event streams.", BFF_MT_COUNTER },
};

/* the bucket bounds as le label values */
static const char *const bucket_le_str[BFF_METRICS_NBUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
    "5", "10"
};

/* and in microseconds */
static const apr_int64_t bucket_us[BFF_METRICS_NBUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000
};

const bff_metric_family_t *bff_metric_family(bff_metric_e m)
{
    return (unsigned)m < BFF_M_NFAMILIES ? &families[m] : NULL;
}

/* -------------------------------------------------------------- table -- */

apr_size_t bff_metrics_table_size(unsigned nslots)
{
    return offsetof(bff_metrics_table_t, slots)
           + (apr_size_t)nslots * sizeof(bff_metrics_slot_t);
}

int bff_metrics_table_init(void *mem, unsigned nslots)
{
    bff_metrics_table_t *t = mem;

    if (t->magic == TABLE_MAGIC && t->nslots == nslots) {
        return 1;
    }
    memset(mem, 0, bff_metrics_table_size(nslots));
    t->nslots = nslots;
    __atomic_store_n(&t->magic, TABLE_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

static apr_uint32_t fnv1a(apr_uint32_t fam, const char *s)
{
    apr_uint32_t h = 2166136261u ^ fam;

    h *= 16777619u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static void count_dropped(bff_metrics_table_t *t)
{
    __atomic_fetch_add(&t->dropped, 1, __ATOMIC_RELAXED);
}

bff_metrics_slot_t *bff_metrics_series(bff_metrics_table_t *t,
                                       bff_metric_e fam, const char *labels)
{
    apr_uint32_t h, i, n;
    apr_size_t klen;

    if (!t || (unsigned)fam >= BFF_M_NFAMILIES) {
        return NULL;
    }
    /* NULL: bff_metrics_labels found them too long */
    if (!labels || (klen = strlen(labels)) >= BFF_METRICS_KEY_MAX) {
        count_dropped(t);
        return NULL;
    }
    h = fnv1a((apr_uint32_t)fam, labels);
    for (n = 0, i = h % t->nslots; n < t->nslots; n++, i = (i + 1) % t->nslots) {
        bff_metrics_slot_t *s = &t->slots[i];
        apr_uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        int spins = 0;

        while (st != 2) {
            apr_uint32_t zero = 0;
            if (st == 0 && __atomic_compare_exchange_n(&s->state, &zero, 1, 0,
                                                       __ATOMIC_ACQ_REL,
                                                       __ATOMIC_ACQUIRE)) {
                s->hash = h;
                s->family = (apr_uint32_t)fam;
                memcpy(s->key, labels, klen + 1);
                __atomic_store_n(&s->state, 2, __ATOMIC_RELEASE);
                return s;
            }
            /* another thread or process is writing this slot's key: it
             * takes a few instructions, unless that process died in
             * between; then the slot is skipped (render merges the
             * duplicate a later claim may create) */
            if (++spins > SPIN_MAX) {
                break;
            }
            if (spins % 64 == 0) {
                sched_yield();
            }
            st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        }
        if (st == 2 && s->hash == h && s->family == (apr_uint32_t)fam
            && !strcmp(s->key, labels)) {
            return s;
        }
    }
    count_dropped(t);
    return NULL;
}

void bff_metrics_add(bff_metrics_table_t *t, bff_metric_e fam,
                     const char *labels, apr_uint64_t n)
{
    bff_metrics_slot_t *s = bff_metrics_series(t, fam, labels);

    if (s) {
        __atomic_fetch_add(&s->v[0], n, __ATOMIC_RELAXED);
    }
}

void bff_metrics_gauge_add(bff_metrics_table_t *t, bff_metric_e fam,
                           const char *labels, apr_int64_t delta)
{
    bff_metrics_slot_t *s = bff_metrics_series(t, fam, labels);

    if (s) {
        /* two's complement: a negative delta subtracts */
        __atomic_fetch_add(&s->v[0], (apr_uint64_t)delta, __ATOMIC_RELAXED);
    }
}

void bff_metrics_set(bff_metrics_table_t *t, bff_metric_e fam,
                     const char *labels, apr_int64_t value)
{
    bff_metrics_slot_t *s = bff_metrics_series(t, fam, labels);

    if (s) {
        __atomic_store_n(&s->v[0], (apr_uint64_t)value, __ATOMIC_RELAXED);
    }
}

apr_int64_t bff_metrics_get(bff_metrics_table_t *t, bff_metric_e fam,
                            const char *labels)
{
    bff_metrics_slot_t *s = bff_metrics_series(t, fam, labels);

    return s ? (apr_int64_t)__atomic_load_n(&s->v[0], __ATOMIC_RELAXED) : 0;
}

void bff_metrics_observe(bff_metrics_table_t *t, bff_metric_e fam,
                         const char *labels, apr_interval_time_t usec)
{
    bff_metrics_slot_t *s = bff_metrics_series(t, fam, labels);
    int b;

    if (!s) {
        return;
    }
    if (usec < 0) {
        usec = 0;
    }
    for (b = 0; b < BFF_METRICS_NBUCKETS && usec > bucket_us[b]; b++) {
    }
    __atomic_fetch_add(&s->v[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->v[BFF_METRICS_CELL_SUM], (apr_uint64_t)usec,
                       __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------- labels -- */

/* Appends v at *o, escaped for a label value when esc; *ok = 0 when it
 * does not fit before end. */
static void put(char **o, const char *end, const char *v, int esc, int *ok)
{
    for (; *ok && *v; v++) {
        const char *rep;
        char one[2] = { *v, '\0' };
        switch (esc ? *v : 0) {
        case '\\': rep = "\\\\"; break;
        case '"':  rep = "\\\""; break;
        case '\n': rep = "\\n"; break;
        default:   rep = one; break;
        }
        for (; *rep; rep++) {
            if (*o >= end) {
                *ok = 0;
                return;
            }
            *(*o)++ = *rep;
        }
    }
}

const char *bff_metrics_labels(apr_pool_t *p, ...)
{
    char buf[BFF_METRICS_KEY_MAX];
    char *o = buf;
    const char *end = buf + sizeof(buf) - 1;
    const char *name;
    int ok = 1, first = 1;
    va_list ap;

    va_start(ap, p);
    while (ok && (name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        put(&o, end, first ? "" : ",", 0, &ok);
        put(&o, end, name, 0, &ok);          /* names are identifiers */
        put(&o, end, "=\"", 0, &ok);
        put(&o, end, value ? value : "", 1, &ok);
        put(&o, end, "\"", 0, &ok);
        first = 0;
    }
    va_end(ap);
    if (!ok) {
        return NULL;
    }
    *o = '\0';
    return apr_pstrmemdup(p, buf, (apr_size_t)(o - buf));
}

/* ------------------------------------------------------------ render -- */

typedef struct {
    apr_uint32_t family;
    const char *key;
    apr_uint64_t v[BFF_METRICS_NCELLS];
} snap_t;

static int snap_cmp(const void *a, const void *b)
{
    const snap_t *x = a, *y = b;

    if (x->family != y->family) {
        return x->family < y->family ? -1 : 1;
    }
    return strcmp(x->key, y->key);
}

/* "{key}" or "{key,extra}" or "" */
static const char *braces(const char *key, const char *extra, apr_pool_t *p)
{
    if (!*key && !extra) {
        return "";
    }
    if (!*key) {
        return apr_pstrcat(p, "{", extra, "}", NULL);
    }
    return apr_pstrcat(p, "{", key, extra ? "," : "", extra ? extra : "",
                       "}", NULL);
}

static void render_series(apr_array_header_t *out, const bff_metric_family_t *f,
                          const snap_t *s, apr_pool_t *p)
{
    const char *line;

    if (f->type == BFF_MT_HISTOGRAM) {
        apr_uint64_t cum = 0;
        int b;
        for (b = 0; b < BFF_METRICS_NBUCKETS; b++) {
            cum += s->v[b];
            line = apr_psprintf(p, "%s_bucket%s %" APR_UINT64_T_FMT "\n",
                                f->name, braces(s->key, apr_pstrcat(p,
                                "le=\"", bucket_le_str[b], "\"", NULL), p),
                                cum);
            APR_ARRAY_PUSH(out, const char *) = line;
        }
        cum += s->v[BFF_METRICS_CELL_INF];
        /* _count is the +Inf bucket by construction: they always agree */
        line = apr_psprintf(p, "%s_bucket%s %" APR_UINT64_T_FMT "\n"
                            "%s_sum%s %.6f\n%s_count%s %" APR_UINT64_T_FMT "\n",
                            f->name, braces(s->key, "le=\"+Inf\"", p), cum,
                            f->name, braces(s->key, NULL, p),
                            (double)s->v[BFF_METRICS_CELL_SUM] / 1e6,
                            f->name, braces(s->key, NULL, p), cum);
    }
    else if (f->type == BFF_MT_GAUGE) {
        line = apr_psprintf(p, "%s%s %" APR_INT64_T_FMT "\n", f->name,
                            braces(s->key, NULL, p), (apr_int64_t)s->v[0]);
    }
    else {
        line = apr_psprintf(p, "%s%s %" APR_UINT64_T_FMT "\n", f->name,
                            braces(s->key, NULL, p), s->v[0]);
    }
    APR_ARRAY_PUSH(out, const char *) = line;
}

const char *bff_metrics_render(apr_size_t *len, const bff_metrics_table_t *t,
                               apr_pool_t *p)
{
    apr_array_header_t *out = apr_array_make(p, 256, sizeof(const char *));
    snap_t *snaps = NULL;
    apr_uint32_t i, n = 0, fam;
    apr_uint32_t j = 0;
    const char *text;

    if (t) {
        snaps = apr_pcalloc(p, sizeof(*snaps) * (t->nslots + 1));
        for (i = 0; i < t->nslots; i++) {
            const bff_metrics_slot_t *s = &t->slots[i];
            int c;
            if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != 2
                || s->family >= BFF_M_NFAMILIES) {
                continue;
            }
            snaps[n].family = s->family;
            snaps[n].key = apr_pstrndup(p, s->key, BFF_METRICS_KEY_MAX - 1);
            for (c = 0; c < BFF_METRICS_NCELLS; c++) {
                snaps[n].v[c] = __atomic_load_n(&s->v[c], __ATOMIC_RELAXED);
            }
            n++;
        }
        snaps[n].family = BFF_M_DROPPED;
        snaps[n].key = "";
        snaps[n].v[0] = __atomic_load_n(&t->dropped, __ATOMIC_RELAXED);
        n++;
        qsort(snaps, n, sizeof(*snaps), snap_cmp);
        /* merge duplicates (see bff_metrics_series) */
        for (i = 1, j = 0; i < n; i++) {
            if (!snap_cmp(&snaps[i], &snaps[j])) {
                int c;
                for (c = 0; c < BFF_METRICS_NCELLS; c++) {
                    snaps[j].v[c] += snaps[i].v[c];
                }
            }
            else {
                snaps[++j] = snaps[i];
            }
        }
        n = j + 1;
    }

    for (fam = 0, i = 0; fam < BFF_M_NFAMILIES; fam++) {
        const bff_metric_family_t *f = &families[fam];
        int any = 0;
        APR_ARRAY_PUSH(out, const char *) = apr_psprintf(p,
            "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
            f->type == BFF_MT_COUNTER ? "counter"
            : f->type == BFF_MT_GAUGE ? "gauge" : "histogram");
        for (; i < n && snaps[i].family == fam; i++) {
            render_series(out, f, &snaps[i], p);
            any = 1;
        }
        if (!any && (fam == BFF_M_HTTP_ACTIVE || fam == BFF_M_AGG_ACTIVE
                     || fam == BFF_M_SSE_STREAMS || fam == BFF_M_SSE_EVENTS
                     || fam == BFF_M_CACHE_HITS
                     || fam == BFF_M_CACHE_MISSES || fam == BFF_M_CACHE_STALE
                     || fam == BFF_M_CACHE_FALLBACK)) {
            snap_t zero;
            memset(&zero, 0, sizeof(zero));
            zero.key = "";
            render_series(out, f, &zero, p);
        }
    }
    text = apr_array_pstrcat(p, out, '\0');
    *len = strlen(text);
    return text;
}

/* ------------------------------------------------ bounded label values -- */

const char *bff_metrics_method(const char *m)
{
    static const char *const known[] = {
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", NULL
    };
    int i;

    for (i = 0; m && known[i]; i++) {
        if (!strcmp(m, known[i])) {
            return known[i];
        }
    }
    return "other";
}

const char *bff_metrics_status(int status, apr_pool_t *p)
{
    return status >= 100 && status <= 599 ? apr_itoa(p, status) : "other";
}

const char *bff_metrics_backend_reason(const bff_be_result_t *br)
{
    const char *r = br->reason ? br->reason : "";

    if (br->state == BFF_BE_SKIPPED) {
        return !strcmp(r, "cancelled") ? "cancelled" : "dependency_failed";
    }
    if (strstr(r, "circuit")) {
        return "circuit_open";
    }
    switch (br->err) {
    case BFF_FETCH_ECONNECT:  return "connect_error";
    case BFF_FETCH_ETIMEOUT:  return "timeout";
    case BFF_FETCH_ETOOBIG:   return "too_big";
    case BFF_FETCH_EPROTO:    return "bad_response";
    case BFF_FETCH_EABORTED:  return "cancelled";
    case BFF_FETCH_EINTERNAL: return "internal";
    case BFF_FETCH_EPOOL:     return "pool_exhausted";
    case BFF_FETCH_OK:        break;
    }
    if (!strncmp(r, "HTTP ", 5)) {
        int st = atoi(r + 5);
        return st >= 500 && st <= 599 ? "http_5xx"
             : st >= 400 && st <= 499 ? "http_4xx" : "http_other";
    }
    if (!strcmp(r, "invalid JSON")) {
        return "invalid_json";
    }
    if (!strcmp(r, "missing input")) {
        return "missing_input";
    }
    if (!strncmp(r, "dependency", 10)) {
        return "dependency_failed";
    }
    return "other";
}

const char *bff_metrics_auth_reason(const char *note)
{
    /* the access phase's notes, then bff_jwt_status_name's values */
    static const char *const known[] = {
        "missing", "insufficient_scope", "oversized", "malformed",
        "unsupported_alg", "unknown_kid", "bad_signature", "missing_exp",
        "bad_claim", "expired", "not_yet_valid", "wrong_issuer",
        "wrong_audience", NULL
    };
    int i;

    if (!note) {
        return "other";
    }
    if (!strcmp(note, "invalid")) {
        return "invalid_key";          /* an unknown API key */
    }
    if (!strcmp(note, "store-down")) {
        return "store_down";           /* API key not verifiable: Redis */
    }
    for (i = 0; known[i]; i++) {
        if (!strcmp(note, known[i])) {
            return known[i];
        }
    }
    return "other";
}

int bff_metrics_breaker_value(const char *state)
{
    if (!state) {
        return -1;
    }
    if (!strcmp(state, "closed")) {
        return 0;
    }
    if (!strcmp(state, "half-open") || !strcmp(state, "half_open")) {
        return 1;
    }
    if (!strcmp(state, "open")) {
        return 2;
    }
    return -1;
}
