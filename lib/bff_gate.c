/*
 * mod_bff: the outage gate of a shared store (see bff_gate.h).
 */
#include <string.h>

#include <apr_strings.h>
#include <apr_thread_mutex.h>

#include "bff_gate.h"

struct bff_store_gate_t {
    apr_thread_mutex_t *mu;
    int up;
    int probing;               /* a probe was let through while down */
    apr_time_t since;
    apr_time_t down_until;
    apr_interval_time_t backoff, bmin, bmax;
    apr_uint32_t gen;
    char last_error[256];
    apr_time_t last_error_at;
    apr_uint64_t connects, connect_failures, errors, fast_fails;
};

bff_store_gate_t *bff_store_gate_create(long backoff_min_ms,
                                        long backoff_max_ms, apr_pool_t *p)
{
    bff_store_gate_t *g = apr_pcalloc(p, sizeof(*g));

    apr_thread_mutex_create(&g->mu, APR_THREAD_MUTEX_DEFAULT, p);
    g->up = 1;
    g->bmin = apr_time_from_msec(backoff_min_ms > 0 ? backoff_min_ms : 1);
    g->bmax = apr_time_from_msec(backoff_max_ms > backoff_min_ms
                                 ? backoff_max_ms : backoff_min_ms);
    if (g->bmax < g->bmin) {
        g->bmax = g->bmin;
    }
    g->backoff = g->bmin;
    return g;
}

int bff_store_gate_enter(bff_store_gate_t *g, apr_time_t now)
{
    int ok = 1;

    apr_thread_mutex_lock(g->mu);
    if (!g->up) {
        if (now >= g->down_until) {
            /* this caller probes; the others fail fast until it reports
             * (or until another backoff period, should it never report) */
            g->probing = 1;
            g->down_until = now + g->backoff;
        }
        else {
            ok = 0;
            g->fast_fails++;
            g->errors++;
        }
    }
    apr_thread_mutex_unlock(g->mu);
    return ok;
}

static void set_error(bff_store_gate_t *g, apr_time_t now, const char *err)
{
    apr_cpystrn(g->last_error, err ? err : "unknown error",
                sizeof(g->last_error));
    g->last_error_at = now;
    g->errors++;
}

void bff_store_gate_ok(bff_store_gate_t *g, apr_time_t now)
{
    apr_thread_mutex_lock(g->mu);
    if (!g->up) {
        g->up = 1;
        g->since = now;
    }
    g->probing = 0;
    g->backoff = g->bmin;
    apr_thread_mutex_unlock(g->mu);
}

void bff_store_gate_fail(bff_store_gate_t *g, apr_time_t now, const char *err)
{
    apr_thread_mutex_lock(g->mu);
    set_error(g, now, err);
    if (g->up || g->probing) {
        /* a transition or a failed probe; failures of calls that were
         * already under way when the store went down change nothing, so
         * the backoff doubles once per probe, not once per thread */
        if (g->up) {
            g->up = 0;
            g->since = now;
            g->gen++;
        }
        g->probing = 0;
        g->down_until = now + g->backoff;
        g->backoff = g->backoff * 2 < g->bmax ? g->backoff * 2 : g->bmax;
    }
    apr_thread_mutex_unlock(g->mu);
}

void bff_store_gate_note_error(bff_store_gate_t *g, apr_time_t now,
                               const char *err)
{
    apr_thread_mutex_lock(g->mu);
    set_error(g, now, err);
    apr_thread_mutex_unlock(g->mu);
}

apr_uint32_t bff_store_gate_generation(bff_store_gate_t *g)
{
    apr_uint32_t gen;

    apr_thread_mutex_lock(g->mu);
    gen = g->gen;
    apr_thread_mutex_unlock(g->mu);
    return gen;
}

void bff_store_gate_count(bff_store_gate_t *g, int connect_ok,
                          int connect_failed)
{
    apr_thread_mutex_lock(g->mu);
    g->connects += (apr_uint64_t)connect_ok;
    g->connect_failures += (apr_uint64_t)connect_failed;
    apr_thread_mutex_unlock(g->mu);
}

void bff_store_gate_health(bff_store_gate_t *g, bff_store_health_t *out,
                           apr_pool_t *p)
{
    apr_thread_mutex_lock(g->mu);
    out->up = g->up;
    out->since = g->since;
    out->retry_at = g->up ? 0 : g->down_until;
    out->last_error = g->last_error[0] ? apr_pstrdup(p, g->last_error)
                                       : NULL;
    out->last_error_at = g->last_error_at;
    out->connects = g->connects;
    out->connect_failures = g->connect_failures;
    out->errors = g->errors;
    out->fast_fails = g->fast_fails;
    apr_thread_mutex_unlock(g->mu);
}
