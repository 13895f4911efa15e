/*
 * mod_bff: token leases of one process (pure core, no httpd.h).
 *
 * With BFFRateLimit ... lease=N a process takes up to N tokens from a
 * Redis bucket in one call (bff_bucket_redis_lease) and hands them out to
 * its next requests itself. This table keeps, per bucket key, the tokens
 * taken and not used yet, until they expire; unused tokens go back to
 * Redis with the next call on that key, or at process exit (drain).
 * Thread-safe; bounded in keys (beyond the bound tokens are not kept:
 * they come back by the bucket's refill, nothing is over-granted).
 */
#ifndef BFF_LEASE_H
#define BFF_LEASE_H

#include <apr_pools.h>
#include <apr_time.h>

#include "bff_bucket.h"

typedef struct bff_lease_table_t bff_lease_table_t;

/* A table of at most max_keys keys; NULL when no mutex can be made.
 * Entries are malloc'ed and freed by bff_lease_drain (call it before p
 * goes, e.g. from a cleanup registered after the table was made). */
bff_lease_table_t *bff_lease_table_create(int max_keys, apr_pool_t *p);

/* Tokens a process holds count as still in the bucket: adds n to
 * res->remaining and takes their refill time off res->reset_ms. */
void bff_lease_held(bff_bucket_result_t *res, apr_int64_t n,
                    const bff_bucket_conf_t *c);

/* Hands out a token of the lease on key, if there is a live one: returns
 * 1 with *res (Redis' answer when the tokens were leased, with the tokens
 * still held counted as remaining). Otherwise returns 0 and *refund gets
 * the tokens left in the (then expired) lease, which the caller gives
 * back with its next Redis call. */
int bff_lease_use(bff_lease_table_t *t, bff_bucket_result_t *res,
                  apr_int64_t *refund, const char *key, apr_time_t now);

/* Keeps n leased tokens for key until expires (added to a lease another
 * thread took meanwhile). res is Redis' answer, conf the bucket's. */
void bff_lease_keep(bff_lease_table_t *t, const char *key, apr_int64_t n,
                    const bff_bucket_result_t *res,
                    const bff_bucket_conf_t *conf, apr_time_t expires);

/* Empties the table: fn is called for each live lease (tokens not used,
 * not expired at now) with its key, tokens and bucket conf, then every
 * entry is freed. Returns 0 when the table was busy (a thread stopped by
 * a signal may hold its lock): nothing is called or freed then. */
typedef void bff_lease_fn(void *baton, const char *key, apr_int64_t avail,
                          const bff_bucket_conf_t *conf);
int bff_lease_drain(bff_lease_table_t *t, apr_time_t now, bff_lease_fn *fn,
                    void *baton);

/* Keys in the table (for tests and metrics). */
int bff_lease_count(bff_lease_table_t *t);

#endif /* BFF_LEASE_H */
