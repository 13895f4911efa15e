/*
 * mod_bff response cache, pure core: cache keys, the stored entry format,
 * freshness, ETags and If-None-Match, and the store interface with its
 * Redis (hiredis) and memcached implementations. No httpd.h here: the glue
 * (mod_bff_cache.c) adds the socache fallback, hooks and directives.
 *
 * Conventions as in bff_core.h: config-time functions return NULL or an
 * error string from the pool; request-time store calls return an rc enum.
 * Out-parameters first, pool last. Time is a parameter wherever a decision
 * depends on it.
 */
#ifndef BFF_CACHE_H
#define BFF_CACHE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "bff_gate.h"

/* ------------------------------------------------------------ SHA-256 -- */

/* SHA-256 for cache keys, ETags and configuration fingerprints: OpenSSL's
 * (the one JWT and API keys use too), through EVP with the algorithm
 * fetched once per process. bff_sha256_final releases what init took;
 * every init is followed by a final. */
typedef struct {
    void *ctx;                   /* EVP_MD_CTX */
} bff_sha256_t;

void bff_sha256_init(bff_sha256_t *c);
void bff_sha256_update(bff_sha256_t *c, const void *data, apr_size_t n);
void bff_sha256_final(unsigned char out[32], bff_sha256_t *c);
void bff_sha256(unsigned char out[32], const void *data, apr_size_t n);

/* Unpredictable bytes for request, trace and span ids, lock tokens and
 * retry jitter, from OpenSSL's DRBG through a buffer of the process
 * (thread-safe, fork-safe); never fails. */
void bff_random_bytes(unsigned char *buf, apr_size_t n);

/* ------------------------------------------------------------ limits -- */

#define BFF_CACHE_PREFIX_MAX   64     /* key prefix length */
#define BFF_CACHE_KEY_MAX      (BFF_CACHE_PREFIX_MAX + 64)
#define BFF_CACHE_MAX_TAGS     64     /* surrogate tags per entry */
#define BFF_CACHE_TAG_MAX      255    /* bytes per tag */
#define BFF_CACHE_CTYPE_MAX    255
#define BFF_CACHE_ETAG_MAX     255
/* 30 days: memcached reads larger expiry times as absolute timestamps. */
#define BFF_CACHE_TTL_MAX_MS   (30L * 24 * 3600 * 1000)

/* --------------------------------------------------------------- keys -- */

/* A name/value pair; value NULL means "absent", which differs from "". */
typedef struct {
    const char *name;
    const char *value;
} bff_cache_kv_t;

typedef struct {
    /* [A-Za-z0-9_.:-]{0,64}, e.g. "bff:" (lets several sites share one
     * Redis and lets an admin find mod_bff's keys) */
    const char *prefix;
    /* endpoint identity: method and route pattern, "GET /api/u/{id:int}" */
    const char *endpoint;
    /* route parameter values, in route order */
    const bff_cache_kv_t *params;
    int nparams;
    /* the raw client query string (r->args, may be NULL) and the decoded
     * names of the parameters that are part of the key: every name the
     * endpoint forwards (BFFForwardQuery) must be listed, since backends'
     * answers depend on them. Others are ignored. */
    const char *query;
    const apr_array_header_t *query_keys;      /* const char * */
    /* the raw "fields" selection, comma separated (NULL: absent) */
    const char *fields;
    /* identity inputs, like HTTP Vary: "h:accept-language" = "de",
     * "jwt:sub" = "7". A value NULL (header absent) and "" differ. */
    const bff_cache_kv_t *vary;
    int nvary;
    /* where the answer is made: the virtual host ("https://name:port")
     * and a fingerprint of the endpoint's configuration; NULL: none */
    const char *scope;
    const char *config;
    /* what every backend call of the request carries: its header lines
     * ("Name: value"; names compared case-insensitively, values trimmed)
     * and the forwarded query string (encoded, as appended to backend
     * URLs). Per-call values (request id, trace context) stay out. */
    const apr_array_header_t *headers;      /* const char * */
    const char *backend_query;
    /* the authenticated identity the answer is stored for (NULL:
     * anonymous, or an endpoint shared by configuration) */
    const char *identity;
} bff_cache_key_in_t;

/* Builds prefix + 64 lower-case hex digits of SHA-256 over an unambiguous
 * serialisation (every variable part is length-prefixed, every list
 * count-prefixed), so no two different inputs share a key except by a
 * SHA-256 collision. Normalisation, so equivalent requests share a key:
 *   - query: only query_keys, decoded then re-encoded exactly as
 *     bff_query_filter does (bad escapes dropped, "a" == "a="), sorted
 *     by name; repeated names keep their relative order (backends see it);
 *   - fields: split on ',', spaces trimmed, empties dropped, sorted,
 *     duplicates removed (an empty but present list differs from absent);
 *   - vary: sorted by name (stable), so config order does not matter;
 *   - headers: names lower-cased, values trimmed, sorted by name
 *     (stable: repeated names keep their order);
 *   - backend_query: sorted by name as query is.
 * The key is ASCII without spaces or controls, at most BFF_CACHE_KEY_MAX
 * (128) bytes: safe for Redis and memcached (250). Vary values, header
 * values and the identity only enter the hash, never the key text. Returns NULL or an
 * error (bad prefix, missing endpoint). */
const char *bff_cache_key(const char **key, const bff_cache_key_in_t *in,
                          apr_pool_t *p);

/* 1 when prefix is [A-Za-z0-9_.:-]{0,64}. */
int bff_cache_prefix_valid(const char *prefix);

/* The store key of a surrogate tag: prefix + "tag:" + 32 hex digits of
 * SHA-256(tag). Hashed so any tag text gives a safe, bounded key. */
const char *bff_cache_tag_key(const char *prefix, const char *tag,
                              apr_pool_t *p);

/* 1 when tag is 1..255 bytes of visible ASCII (0x21-0x7E). Build tags
 * from data with bff_url_encode: "user:" + bff_url_encode(id). */
int bff_cache_tag_valid(const char *tag);

/* ------------------------------------------------------------ entries -- */

typedef struct {
    int status;                   /* 200..599 */
    const char *content_type;     /* NULL: none */
    const char *body;             /* decode: points INTO the input bytes */
    apr_size_t body_len;
    const char *etag;             /* a strong or weak entity-tag, quoted */
    apr_time_t created;           /* when the answer was produced */
    long ttl_ms;                  /* fresh for this long after created */
    long grace_ms;                /* then usable as STALE for this long */
    int completed;                /* 0: a partial answer */
    const apr_array_header_t *tags;   /* const char *, surrogate keys */
} bff_cache_entry_t;

/* Serialises e into pool memory. Format v1, big-endian:
 *   "BFCE" | version 1 | flags (bit 0 completed) | status u16 |
 *   created i64 (us) | ttl_ms u32 | grace_ms u32 | body_len u32 |
 *   ctype_len u8 | etag_len u8 | ntags u8 | 0 |
 *   ctype | etag | (tag_len u8 | tag) * ntags | body
 * Returns NULL or an error (status out of range, ttl or grace beyond
 * BFF_CACHE_TTL_MAX_MS, header values with controls, bad etag or tag,
 * too many tags, body over 4 GiB). */
const char *bff_cache_entry_encode(const char **buf, apr_size_t *len,
                                   const bff_cache_entry_t *e,
                                   apr_pool_t *p);

/* Parses stored bytes. Never trusts them: magic, version, flags, every
 * length (exact total length), status range, header value syntax (the
 * content type and etag go into response headers, so no CR/LF/controls
 * can come back from a poisoned store), tags and limits are checked, and
 * bodies above max_body are refused. e->body points into buf (no copy);
 * strings are copied. Returns NULL or an error ("truncated", ...). */
const char *bff_cache_entry_decode(bff_cache_entry_t *e, const char *buf,
                                   apr_size_t len, apr_size_t max_body,
                                   apr_pool_t *p);

/* Freshness with an explicit clock. A created time in the future (clock
 * skew between hosts) counts as age 0. */
int bff_cache_entry_is_fresh(const bff_cache_entry_t *e, apr_time_t now);
/* Expired, but within grace: usable for stale-if-error / while another
 * request refreshes. */
int bff_cache_entry_is_stale_usable(const bff_cache_entry_t *e,
                                    apr_time_t now);
/* Age in whole seconds (the Age header), >= 0. */
long bff_cache_entry_age(const bff_cache_entry_t *e, apr_time_t now);
/* How long the store should keep it: ttl + grace, in ms (>= 1). */
long bff_cache_entry_store_ttl_ms(const bff_cache_entry_t *e);

/* --------------------------------------------------------------- ETag -- */

/* Strong validator from the body: "\"" + 32 hex digits (128 bits of
 * SHA-256) + "\"". Same bytes, same ETag, on every instance. */
const char *bff_cache_etag(const char *body, apr_size_t len, apr_pool_t *p);

/* RFC 9110 13.1.2 If-None-Match against the current etag (NULL: no
 * current representation). Returns 1 when the condition is FALSE, i.e.
 * the client's copy matches and a GET may answer 304: "*" matches any
 * existing representation; otherwise a comma separated list of
 * entity-tags compared weakly (W/ ignored on both sides). A malformed
 * header never matches (the full answer is always safe). */
int bff_etag_match(const char *if_none_match, const char *etag);

/* ------------------------------------------------------------- stores -- */

typedef enum {
    BFF_STORE_OK = 0,       /* done; get: hit; lock: acquired */
    BFF_STORE_MISS,         /* get: no entry; del: nothing to delete;
                               unlock: not ours (expired or taken over) */
    BFF_STORE_HELD,         /* lock: someone else holds it */
    BFF_STORE_ERROR,        /* the store failed or is down: fall back */
    BFF_STORE_UNSUPPORTED   /* this store cannot do it (memcached pub/sub) */
} bff_store_rc_e;

/* Short stable text for rc ("ok", "miss", ...), for logs and metrics. */
const char *bff_store_rc_str(bff_store_rc_e rc);

/* Called by subscribe for each message; msg NULL means "(re)subscribed:
 * messages may have been missed meanwhile" (flush what they guard). */
typedef void bff_store_msg_fn(void *baton, const char *msg, apr_size_t len);

typedef struct bff_store_t bff_store_t;

/* One stream entry for xadd: n field/value pairs. */
typedef struct {
    int n;
    const char *const *kv;        /* 2n strings (not NUL terminated) */
    const apr_size_t *len;        /* 2n lengths */
} bff_store_fields_t;

/* Every function may be called from many threads at once. None blocks
 * longer than the wait for a pooled connection (<= command timeout), a
 * connect with its handshake (<= connect timeout, only when a connection
 * must be opened) and the command (<= command timeout). While the store
 * is down every call answers ERROR at once, except one connect attempt
 * per backoff period. p receives results and scratch memory. */
typedef struct {
    const char *name;                 /* "redis", "memcache" */
    /* *val (not NUL terminated) lives in p. A value above max_value is
     * an ERROR (read no further than needed, never truncated); the
     * store stays up. */
    bff_store_rc_e (*get)(bff_store_t *s, const char **val, apr_size_t *len,
                          const char *key, apr_pool_t *p);
    /* Stores val for ttl_ms and adds key to each tag (const char *, may
     * be NULL). Redis: atomically, one script: SET PX, then per tag a
     * sorted set scored by member expiry (ZADD; expired members pruned
     * on each write) and a PEXPIRE that only ever lengthens its life. */
    bff_store_rc_e (*set)(bff_store_t *s, const char *key, const char *val,
                          apr_size_t len, long ttl_ms,
                          const apr_array_header_t *tags, apr_pool_t *p);
    bff_store_rc_e (*del)(bff_store_t *s, const char *key, apr_pool_t *p);
    /* Stampede lock on key (the store adds its own suffix). OK with a
     * fresh random *token, or HELD. Expires by itself after ttl_ms
     * (memcached: rounded up to whole seconds). */
    bff_store_rc_e (*lock)(bff_store_t *s, const char **token,
                           const char *key, long ttl_ms, apr_pool_t *p);
    /* Deletes the lock only when it still holds token: OK, or MISS. */
    bff_store_rc_e (*unlock)(bff_store_t *s, const char *key,
                             const char *token, apr_pool_t *p);
    /* Invalidates every entry stored with tag. *npurged: entries deleted,
     * or -1 when the store cannot tell (memcached). */
    bff_store_rc_e (*purge_tag)(bff_store_t *s, long *npurged,
                                const char *tag, apr_pool_t *p);
    bff_store_rc_e (*publish)(bff_store_t *s, const char *channel,
                              const char *msg, apr_size_t len, apr_pool_t *p);
    /* Blocks on a dedicated connection, calling fn for each message on
     * channel, until *stop becomes non-zero (checked every 100 ms: OK) or
     * the connection fails (ERROR; call again after a pause). Meant for a
     * thread of the glue's own. */
    bff_store_rc_e (*subscribe)(bff_store_t *s, const char *channel,
                                bff_store_msg_fn *fn, void *baton,
                                volatile apr_uint32_t *stop, apr_pool_t *p);
    void (*health)(bff_store_t *s, bff_store_health_t *out, apr_pool_t *p);
    /* Appends n entries to a stream (Redis: XADD stream MAXLEN ~ maxlen *
     * ..., pipelined in one round trip); *added: the entries accepted
     * (an error reply for one entry does not fail the others).
     * UNSUPPORTED on memcached. */
    bff_store_rc_e (*xadd)(bff_store_t *s, int *added, const char *stream,
                           long maxlen, const bff_store_fields_t *entries,
                           int n, apr_pool_t *p);
} bff_store_vtable_t;

struct bff_store_t {
    const bff_store_vtable_t *vt;
    void *ctx;
};

#define bff_store_get(s, v, l, k, p)          ((s)->vt->get((s), (v), (l), (k), (p)))
#define bff_store_set(s, k, v, l, t, g, p)    ((s)->vt->set((s), (k), (v), (l), (t), (g), (p)))
#define bff_store_del(s, k, p)                ((s)->vt->del((s), (k), (p)))
#define bff_store_lock(s, t, k, ms, p)        ((s)->vt->lock((s), (t), (k), (ms), (p)))
#define bff_store_unlock(s, k, t, p)          ((s)->vt->unlock((s), (k), (t), (p)))
#define bff_store_purge_tag(s, n, t, p)       ((s)->vt->purge_tag((s), (n), (t), (p)))
#define bff_store_publish(s, c, m, l, p)      ((s)->vt->publish((s), (c), (m), (l), (p)))
#define bff_store_subscribe(s, c, f, b, x, p) ((s)->vt->subscribe((s), (c), (f), (b), (x), (p)))
#define bff_store_health(s, o, p)             ((s)->vt->health((s), (o), (p)))
#define bff_store_xadd(s, a, st, m, e, n, p)  ((s)->vt->xadd((s), (a), (st), (m), (e), (n), (p)))

typedef struct {
    const char *prefix;          /* for tag and lock keys; as for keys */
    long connect_timeout_ms;     /* TCP connect + AUTH/SELECT; > 0 */
    long command_timeout_ms;     /* one operation, all round trips; > 0 */
    int pool_max;                /* connections per process (per server) */
    long pool_idle_ms;           /* a pooled connection idle longer is
                                    closed, not used; 0: never */
    long backoff_min_ms;         /* first "down" period */
    long backoff_max_ms;         /* doubling stops here */
    apr_size_t max_value;        /* largest value get accepts */
} bff_store_opts_t;

/* Defaults: prefix "bff:", connect 50 ms, command 50 ms, pool 16, idle
 * 60 s, backoff 100 ms doubling to 5 s, values up to 16 MiB. */
void bff_store_opts_default(bff_store_opts_t *o);

/* NULL or an error naming the bad option; the create functions check
 * too, the glue may check at config time. */
const char *bff_store_opts_check(const bff_store_opts_t *o, apr_pool_t *p);

/* ------------------------------------------------------------- Redis -- */

/* Creates the store; it connects lazily, on first use, so it can be made
 * in child_init whether Redis is up or not. Make it per process (after
 * fork). Lives until p is destroyed. Host names are resolved by the
 * system resolver at each connect, outside the connect timeout: use an
 * address (or /etc/hosts) for strict bounds. The process must ignore
 * SIGPIPE (httpd does). */
const char *bff_store_redis_create(bff_store_t **out, const char *url,
                                   const bff_store_opts_t *opts,
                                   apr_pool_t *p);

/* ---------------------------------------------------------- memcached -- */

typedef struct {
    const char *host;
    int port;               /* default 11211 */
} bff_memcache_server_t;

/* memcache://host[:port][,host[:port]]... (1..64 servers, no
 * duplicates); fills an array of bff_memcache_server_t. */
const char *bff_memcache_url_parse(apr_array_header_t **servers,
                                   const char *url, apr_pool_t *p);

/* memcached over its text protocol with mod_bff's own deadline-bounded
 * I/O (apr_memcache 1.6 waits forever for a server that accepts and never
 * answers, and re-probes dead servers with a fixed 1 s connect inside
 * requests). Keys go to servers as apr_memcache does (its default hash,
 * CRC32 >> 16 & 0x7fff, modulo the server count, the next live server
 * when one is down), so mod_socache_memcache and mod_bff agree.
 *   - lock: "add" with an expiry rounded up to seconds; unlock is a get
 *     and compare then delete, not atomic (no CAS in the text protocol
 *     here): a lock that expires in between can be deleted for its new
 *     owner, costing at most one extra refresh.
 *   - tags: memcached has no sets. Each tag has a generation counter
 *     (key bff_cache_tag_key, created with the current time in us so a
 *     re-created counter never repeats an old value); set records the
 *     generations of the entry's tags with the value, get checks them
 *     (one multi-get per server) and treats a changed or missing counter
 *     as a MISS; purge_tag increments the counter (*npurged = -1). Tag
 *     counters never fail over: when their server is down, set with tags
 *     and purge_tag answer ERROR and get answers MISS.
 *   - publish/subscribe: UNSUPPORTED (near caches then rely on their
 *     short TTL).
 * Expiry times have one-second resolution (rounded up). */
const char *bff_store_memcache_create(bff_store_t **out, const char *url,
                                      const bff_store_opts_t *opts,
                                      apr_pool_t *p);

/* 32 random hex digits for lock tokens. */
const char *bff_store_token(apr_pool_t *p);

#endif /* BFF_CACHE_H */
