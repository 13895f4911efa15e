/*
 * mod_bff: token bucket throttling (pure core, no httpd.h).
 *
 * A bucket holds up to `capacity` tokens (the burst) and gains
 * `rate_tokens` every `rate_ms` milliseconds, continuously; a request
 * takes `cost` tokens (1 normally) or is refused. The rate is a rational,
 * and the level is kept in units of 1/rate_ms token, so every step is
 * exact integer arithmetic: no drift, and the C code, the Lua script in
 * Redis (doubles, exact below 2^53) and the shared-memory fallback agree
 * to the token.
 *
 * Three places run the same arithmetic:
 *   - bff_bucket_take: on a state the caller stores (shared memory);
 *   - BFF_BUCKET_LUA in Redis, atomically (bff_bucket_redis_take);
 *   - the fallback divides a limit among instances (bff_bucket_conf_share).
 */
#ifndef BFF_BUCKET_H
#define BFF_BUCKET_H

#include <apr_pools.h>

#include "bff_redis.h"

typedef struct {
    apr_int64_t capacity;       /* tokens a full bucket holds, >= 1 */
    apr_int64_t rate_tokens;    /* refill: rate_tokens tokens ... */
    apr_int64_t rate_ms;        /* ... every rate_ms milliseconds */
} bff_bucket_conf_t;

/* Checks the bounds that keep the arithmetic exact everywhere:
 * capacity, rate_tokens, rate_ms >= 1 and capacity * rate_ms + rate_tokens
 * <= 2^53 (e.g. a capacity of a million with a period of a day is fine). */
const char *bff_bucket_conf_check(const bff_bucket_conf_t *c, apr_pool_t *p);

/* Parses "N/DURATION" ("100/1m", "10/s", "5/250ms"; DURATION as
 * bff_parse_duration_ms, a bare unit meaning 1 of it): rate N per
 * DURATION, capacity N. The glue may then set another capacity (burst). */
const char *bff_bucket_parse_rate(bff_bucket_conf_t *c, const char *text,
                                  apr_pool_t *p);

/* The per-instance share when each of `instances` servers keeps its own
 * bucket (Redis unreachable): capacity / instances (at least 1), and the
 * rate divided exactly by multiplying the period. */
void bff_bucket_conf_share(bff_bucket_conf_t *out,
                           const bff_bucket_conf_t *in, int instances);

/* The state the caller stores, e.g. in a shared memory slot. A zeroed
 * state with last_ms == 0 is "never seen": take() starts it full. The
 * level's unit depends on rate_ms, so whoever stores states (shm slot,
 * Redis key) keys them by the conf too: a changed limit starts afresh. */
typedef struct {
    apr_int64_t level;          /* tokens * rate_ms */
    apr_int64_t last_ms;        /* time of the last refill; 0: new */
} bff_bucket_state_t;

typedef struct {
    int allowed;
    apr_int64_t limit;          /* the capacity */
    apr_int64_t remaining;      /* whole tokens left after this request */
    apr_int64_t retry_after_ms; /* refused: until `cost` tokens are back;
                                   -1 when cost > capacity (never); 0 when
                                   allowed */
    apr_int64_t reset_ms;       /* until the bucket is full again */
} bff_bucket_result_t;

/* Refills the bucket up to now_ms, then takes cost tokens if there are
 * enough (cost 0 only reports). A clock going backwards refills nothing
 * and never moves last_ms back. */
void bff_bucket_take(bff_bucket_result_t *res, bff_bucket_state_t *st,
                     const bff_bucket_conf_t *c, apr_int64_t now_ms,
                     apr_int64_t cost);

/* ------------------------------------------------------------ headers -- */

/* Response header values for one bucket:
 *   RateLimit-Policy  "name";q=<capacity>;w=<seconds to fill from empty>
 *   RateLimit         "name";r=<remaining>;t=<seconds until full>
 * (draft-ietf-httpapi-ratelimit-headers-10: Structured Field lists; with
 * several buckets the glue joins the items with ", ", the RateLimit item
 * of the bucket with the fewest remaining first), and the customary trio
 *   X-RateLimit-Limit / -Remaining / -Reset (delta seconds until full),
 * plus Retry-After (seconds, >= 1) when refused. name is emitted as an sf-
 * string; characters other than printable ASCII become '?'. */
typedef struct {
    const char *policy;
    const char *ratelimit;
    const char *x_limit;
    const char *x_remaining;
    const char *x_reset;
    const char *retry_after;    /* NULL when allowed */
} bff_bucket_headers_t;

void bff_bucket_headers(bff_bucket_headers_t *h, const char *name,
                        const bff_bucket_conf_t *c,
                        const bff_bucket_result_t *r, apr_pool_t *p);

/* -------------------------------------------------------------- Redis -- */

/* The same arithmetic as bff_bucket_take, atomic in Redis.
 *   KEYS[1]  the bucket (a hash: l = level, t = last refill ms)
 *   ARGV     capacity, rate_tokens, rate_ms, now_ms, cost, ttl_ms
 *            [, lease [, refund]]
 * now_ms < 0 takes the time from Redis (TIME): every httpd instance then
 * uses one clock, so hosts whose clocks disagree cannot refill a shared
 * bucket early (and a host whose clock lags cannot stall it). A caller's
 * now_ms >= 0 is for tests and for deployments that prefer it. Needs Redis
 * >= 4.0 (variadic HSET; TIME before a write relies on effects
 * replication, switched on by the script, the default from 5).
 * The key expires after max(ttl_ms, time until full + 1 s): an expired
 * key is a full bucket, so no state is lost.
 * A lease (> cost) asks for up to that many tokens in one call: the cost
 * as usual, plus extra tokens taken only from the upper half of the
 * bucket, so the lower half is always handed out one call at a time and
 * a bucket near empty behaves exactly as without leases. refund gives back
 * tokens of an earlier lease that were not used (the bucket never exceeds
 * its capacity).
 * Returns {allowed, remaining, retry_after_ms, reset_ms, granted}. */
extern const char BFF_BUCKET_LUA[];
/* SHA-1 of BFF_BUCKET_LUA, as EVALSHA wants it (checked by the tests). */
#define BFF_BUCKET_LUA_SHA1 "219ff574bdf3194a87a7180951794fa4d4ef7ee7"

/* Runs the script on Redis (bff_redis_eval: EVALSHA, EVAL when Redis lost
 * its script cache). now_ms < 0 means Redis time. Returns NULL or an
 * error: Redis down or failing (the layer's gate knows), or an error or
 * unexpected reply. */
const char *bff_bucket_redis_take(bff_bucket_result_t *res,
                                  bff_redis_t *rd, const char *key,
                                  apr_size_t keylen,
                                  const bff_bucket_conf_t *conf,
                                  apr_int64_t now_ms, apr_int64_t cost,
                                  apr_pool_t *p);

/* The same with a lease: *granted gets the number of tokens taken (cost
 * plus any extra, 0 when refused); refund returns unused leased tokens
 * first. */
const char *bff_bucket_redis_lease(bff_bucket_result_t *res,
                                   apr_int64_t *granted, bff_redis_t *rd,
                                   const char *key, apr_size_t keylen,
                                   const bff_bucket_conf_t *conf,
                                   apr_int64_t now_ms, apr_int64_t cost,
                                   apr_int64_t lease, apr_int64_t refund,
                                   apr_pool_t *p);

#endif /* BFF_BUCKET_H */
