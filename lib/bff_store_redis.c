/*
 * mod_bff cache store on Redis: the bff_store_t operations on the one
 * Redis layer (bff_redis.h), which owns connections, deadlines and the
 * outage gate.
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include <apr_strings.h>

#include "bff_cache.h"
#include "bff_redis.h"

/* ------------------------------------------------------------ scripts -- */

/* SET with tags. Tag sets are sorted sets scored by their members'
 * expiry (Redis clock), pruned on every write, so a hot tag (say, an
 * endpoint's) does not collect dead keys forever; the set itself lives as
 * long as its longest member. */
static const char script_set[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local ttl = tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)\n"
    "for i = 2, #KEYS do\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)\n"
    "  redis.call('ZADD', KEYS[i], now + ttl, KEYS[1])\n"
    "  if redis.call('PTTL', KEYS[i]) < ttl then\n"
    "    redis.call('PEXPIRE', KEYS[i], ttl)\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* Deletes every member of a tag set and the set, in batches (unpack has
 * a stack limit). */
static const char script_purge[] =
    "local m = redis.call('ZRANGE', KEYS[1], 0, -1)\n"
    "local n = 0\n"
    "for i = 1, #m, 500 do\n"
    "  n = n + redis.call('DEL', unpack(m, i, math.min(i + 499, #m)))\n"
    "end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return n\n";

/* Compare and delete: only the holder's token releases a lock. */
static const char script_unlock[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

enum { SCRIPT_SET = 0, SCRIPT_PURGE, SCRIPT_UNLOCK, NSCRIPTS };

static const char *const scripts[NSCRIPTS] = {
    script_set, script_purge, script_unlock
};

/* -------------------------------------------------------------- types -- */

typedef struct {
    bff_redis_t *r;
    bff_store_opts_t o;
    bff_redis_script_t script[NSCRIPTS];
} rstore_t;

typedef bff_redis_cmd_t rcmd_t;

#define LOCK_SUFFIX ":lock"
#define cmd bff_redis_cmd

/* Runs n pipelined commands: OK with every reply in rep[] (error replies
 * included), or ERROR (the layer has told the gate). */
static bff_store_rc_e rs_exec(redisReply **rep, rstore_t *s,
                              const rcmd_t *cmds, int n, apr_pool_t *p)
{
    return bff_redis_exec(rep, s->r, cmds, n, p) ? BFF_STORE_ERROR
                                                 : BFF_STORE_OK;
}

/* A Redis error reply: the store works, this call did not. */
static bff_store_rc_e rs_reply_error(rstore_t *s, const char *what,
                                     const redisReply *r, apr_pool_t *p)
{
    bff_redis_reply_error(s->r, what, r, p);
    return BFF_STORE_ERROR;
}

static bff_store_rc_e rs_script(redisReply **out, rstore_t *s, int script,
                                int nkeys, const char **keys, int nargs,
                                const char **args, const size_t *arglens,
                                apr_pool_t *p)
{
    return bff_redis_eval(out, s->r, &s->script[script], nkeys, keys, NULL,
                          nargs, args, arglens, p) ? BFF_STORE_ERROR
                                                   : BFF_STORE_OK;
}

/* --------------------------------------------------------- operations -- */

static long clamp_ttl(long ttl_ms)
{
    return ttl_ms < 1 ? 1 : ttl_ms > BFF_CACHE_TTL_MAX_MS
                            ? BFF_CACHE_TTL_MAX_MS : ttl_ms;
}

static bff_store_rc_e rs_get(bff_store_t *st, const char **val,
                             apr_size_t *len, const char *key, apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    rcmd_t c = cmd(p, 2, "GET", key);
    redisReply *r;
    bff_store_rc_e rc;

    if ((rc = rs_exec(&r, s, &c, 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    if (r->type == REDIS_REPLY_NIL) {
        return BFF_STORE_MISS;
    }
    if (r->type != REDIS_REPLY_STRING) {
        return rs_reply_error(s, "GET", r, p);
    }
    if (r->len > s->o.max_value) {
        bff_redis_note_error(s->r, apr_psprintf(p,
            "%s: GET: value of %lu bytes over the limit", bff_redis_desc(s->r),
            (unsigned long)r->len));
        return BFF_STORE_ERROR;
    }
    *val = r->str;
    *len = r->len;
    return BFF_STORE_OK;
}

static bff_store_rc_e rs_set(bff_store_t *st, const char *key,
                             const char *val, apr_size_t len, long ttl_ms,
                             const apr_array_header_t *tags, apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    const char *ttl = apr_ltoa(p, clamp_ttl(ttl_ms));
    redisReply *r;
    bff_store_rc_e rc;
    int i;

    if (!tags || tags->nelts == 0) {
        rcmd_t c = cmd(p, 5, "SET", key, "", "PX", ttl);
        c.argv[2] = val;
        c.len[2] = len;
        rc = rs_exec(&r, s, &c, 1, p);
    }
    else {
        const char **keys, *args[2];
        size_t lens[2];

        if (tags->nelts > BFF_CACHE_MAX_TAGS) {
            bff_redis_note_error(s->r, "SET: too many tags");
            return BFF_STORE_ERROR;
        }
        keys = apr_palloc(p, sizeof(*keys) * (apr_size_t)(tags->nelts + 1));
        keys[0] = key;
        for (i = 0; i < tags->nelts; i++) {
            keys[i + 1] = bff_cache_tag_key(s->o.prefix,
                                            APR_ARRAY_IDX(tags, i,
                                                          const char *), p);
        }
        args[0] = val;
        lens[0] = len;
        args[1] = ttl;
        lens[1] = strlen(ttl);
        rc = rs_script(&r, s, SCRIPT_SET, tags->nelts + 1, keys, 2, args,
                       lens, p);
    }
    if (rc != BFF_STORE_OK) {
        return rc;
    }
    /* OOM ("maxmemory"), READONLY replica, ...: this write failed */
    if (r->type == REDIS_REPLY_ERROR) {
        return rs_reply_error(s, "SET", r, p);
    }
    return BFF_STORE_OK;
}

static bff_store_rc_e rs_int_op(long long *v, rstore_t *s, const char *what,
                                const rcmd_t *c, apr_pool_t *p)
{
    redisReply *r;
    bff_store_rc_e rc;

    if ((rc = rs_exec(&r, s, c, 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        return rs_reply_error(s, what, r, p);
    }
    *v = r->integer;
    return BFF_STORE_OK;
}

static bff_store_rc_e rs_del(bff_store_t *st, const char *key, apr_pool_t *p)
{
    rcmd_t c = cmd(p, 2, "DEL", key);
    long long n;
    bff_store_rc_e rc = rs_int_op(&n, st->ctx, "DEL", &c, p);

    return rc != BFF_STORE_OK ? rc : n > 0 ? BFF_STORE_OK : BFF_STORE_MISS;
}

static bff_store_rc_e rs_lock(bff_store_t *st, const char **token,
                              const char *key, long ttl_ms, apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    const char *tok = bff_store_token(p);
    rcmd_t c = cmd(p, 6, "SET", apr_pstrcat(p, key, LOCK_SUFFIX, NULL), tok,
                   "NX", "PX", apr_ltoa(p, clamp_ttl(ttl_ms)));
    redisReply *r;
    bff_store_rc_e rc;

    if ((rc = rs_exec(&r, s, &c, 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    if (r->type == REDIS_REPLY_NIL) {
        return BFF_STORE_HELD;
    }
    if (r->type != REDIS_REPLY_STATUS) {
        return rs_reply_error(s, "SET NX", r, p);
    }
    *token = tok;
    return BFF_STORE_OK;
}

static bff_store_rc_e rs_unlock(bff_store_t *st, const char *key,
                                const char *token, apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    const char *k = apr_pstrcat(p, key, LOCK_SUFFIX, NULL);
    redisReply *r;
    bff_store_rc_e rc;

    if ((rc = rs_script(&r, s, SCRIPT_UNLOCK, 1, &k, 1, &token, NULL, p))
        != BFF_STORE_OK) {
        return rc;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        return rs_reply_error(s, "unlock", r, p);
    }
    return r->integer > 0 ? BFF_STORE_OK : BFF_STORE_MISS;
}

static bff_store_rc_e rs_purge_tag(bff_store_t *st, long *npurged,
                                   const char *tag, apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    const char *k = bff_cache_tag_key(s->o.prefix, tag, p);
    redisReply *r;
    bff_store_rc_e rc;

    if ((rc = rs_script(&r, s, SCRIPT_PURGE, 1, &k, 0, NULL, NULL, p))
        != BFF_STORE_OK) {
        return rc;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        return rs_reply_error(s, "purge", r, p);
    }
    *npurged = (long)r->integer;
    return BFF_STORE_OK;
}

static bff_store_rc_e rs_publish(bff_store_t *st, const char *channel,
                                 const char *msg, apr_size_t len,
                                 apr_pool_t *p)
{
    rcmd_t c = cmd(p, 3, "PUBLISH", channel, "");
    long long n;

    c.argv[2] = msg;
    c.len[2] = len;
    return rs_int_op(&n, st->ctx, "PUBLISH", &c, p);
}

static bff_store_rc_e rs_subscribe(bff_store_t *st, const char *channel,
                                   bff_store_msg_fn *fn, void *baton,
                                   volatile apr_uint32_t *stop,
                                   apr_pool_t *p)
{
    rstore_t *s = st->ctx;

    return bff_redis_subscribe(s->r, channel, fn, baton, stop, p)
           ? BFF_STORE_ERROR : BFF_STORE_OK;
}

static void rs_health(bff_store_t *st, bff_store_health_t *out,
                      apr_pool_t *p)
{
    rstore_t *s = st->ctx;

    bff_redis_health(s->r, out, p);
}

static bff_store_rc_e rs_xadd(bff_store_t *st, int *added, const char *stream,
                              long maxlen, const bff_store_fields_t *entries,
                              int n, apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    rcmd_t *cmds = apr_palloc(p, sizeof(*cmds) * (apr_size_t)(n ? n : 1));
    redisReply **rep = apr_pcalloc(p, sizeof(*rep) * (apr_size_t)(n ? n : 1));
    const char *ml = apr_ltoa(p, maxlen);
    const redisReply *bad = NULL;
    bff_store_rc_e rc;
    int i, k;

    *added = 0;
    if (n <= 0) {
        return BFF_STORE_OK;
    }
    for (i = 0; i < n; i++) {
        const bff_store_fields_t *e = &entries[i];
        rcmd_t *c = &cmds[i];
        c->argc = 6 + 2 * e->n;
        c->argv = apr_palloc(p, sizeof(*c->argv) * (apr_size_t)c->argc);
        c->len = apr_palloc(p, sizeof(*c->len) * (apr_size_t)c->argc);
        c->argv[0] = "XADD";
        c->argv[1] = stream;
        c->argv[2] = "MAXLEN";
        c->argv[3] = "~";        /* trimmed by whole macro nodes: cheap */
        c->argv[4] = ml;
        c->argv[5] = "*";
        for (k = 0; k < 6; k++) {
            c->len[k] = strlen(c->argv[k]);
        }
        for (k = 0; k < 2 * e->n; k++) {
            c->argv[6 + k] = e->kv[k];
            c->len[6 + k] = e->len[k];
        }
    }
    if ((rc = rs_exec(rep, s, cmds, n, p)) != BFF_STORE_OK) {
        return rc;
    }
    for (i = 0; i < n; i++) {
        if (rep[i]->type == REDIS_REPLY_STRING) {
            (*added)++;
        }
        else if (!bad) {
            bad = rep[i];
        }
    }
    if (bad) {
        /* WRONGTYPE (the key is not a stream), OOM, ...: Redis is up */
        bff_redis_reply_error(s->r, apr_pstrcat(p, "XADD ", stream, NULL),
                              bad, p);
        return *added ? BFF_STORE_OK : BFF_STORE_ERROR;
    }
    return BFF_STORE_OK;
}

static const bff_store_vtable_t redis_vtable = {
    "redis",
    rs_get, rs_set, rs_del, rs_lock, rs_unlock, rs_purge_tag, rs_publish,
    rs_subscribe, rs_health, rs_xadd
};

/* ----------------------------------------------------------- creation -- */

const char *bff_store_redis_create(bff_store_t **out, const char *url,
                                   const bff_store_opts_t *opts,
                                   apr_pool_t *p)
{
    rstore_t *s = apr_pcalloc(p, sizeof(*s));
    bff_redis_opts_t ro;
    bff_store_t *st;
    const char *err;
    int i;

    if ((err = bff_store_opts_check(opts, p))) {
        return err;
    }
    s->o = *opts;
    s->o.prefix = apr_pstrdup(p, opts->prefix);
    ro.connect_timeout_ms = opts->connect_timeout_ms;
    ro.command_timeout_ms = opts->command_timeout_ms;
    ro.pool_max = opts->pool_max;
    ro.pool_idle_ms = opts->pool_idle_ms;
    ro.backoff_min_ms = opts->backoff_min_ms;
    ro.backoff_max_ms = opts->backoff_max_ms;
    ro.max_reply = opts->max_value;
    if ((err = bff_redis_create(&s->r, url, &ro, p))) {
        return err;
    }
    for (i = 0; i < NSCRIPTS; i++) {
        bff_redis_script_init(&s->script[i], scripts[i]);
    }
    st = apr_pcalloc(p, sizeof(*st));
    st->vt = &redis_vtable;
    st->ctx = s;
    *out = st;
    return NULL;
}
