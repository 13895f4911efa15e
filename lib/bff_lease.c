/*
 * mod_bff: token leases of one process (see bff_lease.h).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_thread_mutex.h>

#include "bff_lease.h"

typedef struct {
    apr_int64_t avail;           /* leased tokens not handed out yet */
    apr_time_t expires;          /* then they go back to Redis */
    bff_bucket_result_t last;    /* Redis' answer when they were leased */
    bff_bucket_conf_t conf;      /* of the bucket, to give tokens back */
    char key[1];
} lease_t;

struct bff_lease_table_t {
    apr_hash_t *leases;          /* key -> lease_t (malloc'ed, key inline) */
    apr_thread_mutex_t *mu;
    int max_keys;
};

bff_lease_table_t *bff_lease_table_create(int max_keys, apr_pool_t *p)
{
    bff_lease_table_t *t = apr_pcalloc(p, sizeof(*t));

    if (apr_thread_mutex_create(&t->mu, APR_THREAD_MUTEX_DEFAULT, p)
        != APR_SUCCESS) {
        return NULL;
    }
    t->leases = apr_hash_make(p);
    t->max_keys = max_keys;
    return t;
}

void bff_lease_held(bff_bucket_result_t *res, apr_int64_t n,
                    const bff_bucket_conf_t *c)
{
    apr_int64_t back = n * c->rate_ms / c->rate_tokens;

    res->remaining += n;
    res->reset_ms = res->reset_ms > back ? res->reset_ms - back : 0;
}

int bff_lease_use(bff_lease_table_t *t, bff_bucket_result_t *res,
                  apr_int64_t *refund, const char *key, apr_time_t now)
{
    lease_t *e;
    int used = 0;

    *refund = 0;
    apr_thread_mutex_lock(t->mu);
    e = apr_hash_get(t->leases, key, APR_HASH_KEY_STRING);
    if (e && e->avail > 0 && now < e->expires) {
        e->avail--;
        *res = e->last;
        /* what Redis had left plus what this process still holds */
        bff_lease_held(res, e->avail, &e->conf);
        used = 1;
    }
    else if (e) {
        /* spent or expired: what is left goes back */
        *refund = e->avail;
        apr_hash_set(t->leases, e->key, APR_HASH_KEY_STRING, NULL);
        free(e);
    }
    apr_thread_mutex_unlock(t->mu);
    return used;
}

void bff_lease_keep(bff_lease_table_t *t, const char *key, apr_int64_t n,
                    const bff_bucket_result_t *res,
                    const bff_bucket_conf_t *conf, apr_time_t expires)
{
    lease_t *e;
    apr_size_t len = strlen(key);

    apr_thread_mutex_lock(t->mu);
    e = apr_hash_get(t->leases, key, (apr_ssize_t)len);
    if (e) {
        e->avail += n;
        e->last = *res;
        e->expires = expires;
    }
    else if ((int)apr_hash_count(t->leases) < t->max_keys
             && (e = malloc(sizeof(*e) + len))) {
        memcpy(e->key, key, len + 1);
        e->avail = n;
        e->last = *res;
        e->conf = *conf;
        e->expires = expires;
        apr_hash_set(t->leases, e->key, (apr_ssize_t)len, e);
    }
    apr_thread_mutex_unlock(t->mu);
}

int bff_lease_drain(bff_lease_table_t *t, apr_time_t now, bff_lease_fn *fn,
                    void *baton)
{
    apr_hash_index_t *hi;

    /* not lock: see bff_lease.h */
    if (apr_thread_mutex_trylock(t->mu) != APR_SUCCESS) {
        return 0;
    }
    /* apr_hash_first(NULL, ...) iterates with the table's own index */
    for (hi = apr_hash_first(NULL, t->leases); hi; hi = apr_hash_next(hi)) {
        lease_t *e = apr_hash_this_val(hi);
        if (e->avail > 0 && now < e->expires) {
            fn(baton, e->key, e->avail, &e->conf);
        }
    }
    /* the entry is unlinked before it is freed (the key is inside it);
     * APR's iterator allows removing the current entry */
    for (hi = apr_hash_first(NULL, t->leases); hi; hi = apr_hash_next(hi)) {
        lease_t *e = apr_hash_this_val(hi);
        apr_hash_set(t->leases, e->key, APR_HASH_KEY_STRING, NULL);
        free(e);
    }
    apr_thread_mutex_unlock(t->mu);
    return 1;
}

int bff_lease_count(bff_lease_table_t *t)
{
    int n;

    apr_thread_mutex_lock(t->mu);
    n = (int)apr_hash_count(t->leases);
    apr_thread_mutex_unlock(t->mu);
    return n;
}
