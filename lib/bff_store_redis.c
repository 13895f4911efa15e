/*
 * mod_bff cache store on Redis, with hiredis.
 *
 * hiredis is used for what it is good at (the protocol: formatting
 * commands, parsing replies) and the socket is driven here with poll()
 * against one deadline per operation: hiredis 0.14's blocking mode only
 * bounds each read() by SO_RCVTIMEO, so a trickling or silent server could
 * hold a worker far longer than the configured command timeout.
 *
 * Connections live in an apr_reslist per process. Its constructor makes an
 * empty holder and the connect happens after acquire, outside the list's
 * lock (apr_reslist constructs under its mutex, which would make every
 * thread wait for one slow connect). A connection that failed is never
 * returned: its holder is invalidated. When Redis fails the gate marks it
 * down: calls then fail at once, one probe per backoff period reconnects,
 * and connections opened before the failure are dropped on next use.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include <apr_atomic.h>
#include <apr_reslist.h>
#include <apr_sha1.h>
#include <apr_strings.h>

#include "bff_cache.h"

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
    redisContext *c;        /* NULL: not connected */
    apr_uint32_t gen;       /* gate generation when it connected */
    unsigned long uses;     /* operations completed on it */
} rconn_t;

typedef struct {
    bff_redis_url_t url;
    bff_store_opts_t o;
    const char *desc;       /* for messages; never holds the password */
    apr_reslist_t *conns;
    apr_uint32_t open;      /* connections open (for metrics) */
    bff_store_gate_t *gate;
    char sha[NSCRIPTS][41];
} rstore_t;

typedef struct {
    int argc;
    const char **argv;
    size_t *len;
} rcmd_t;

#define LOCK_SUFFIX ":lock"

/* ---------------------------------------------------------------- I/O -- */

/* 1: ready, 0: deadline passed, -1: poll failed. */
static int wait_fd(int fd, short events, apr_time_t deadline)
{
    for (;;) {
        apr_time_t now = apr_time_now();
        struct pollfd pfd;
        int rc;

        if (now >= deadline) {
            return 0;
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
        if (rc > 0) {
            return 1;   /* errors and hangups surface in the read/write */
        }
        if (rc < 0 && errno != EINTR) {
            return -1;
        }
    }
}

static void free_replies(redisReply **r, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (r[i]) {
            freeReplyObject(r[i]);
            r[i] = NULL;
        }
    }
}

/* Flushes what is queued on c and reads n replies before deadline.
 * Returns NULL (replies filled, caller frees) or an error, and sets *how:
 * RT_EOF when the peer closed or reset the connection before any reply,
 * the one failure worth a retry on a fresh connection (a pooled
 * connection Redis dropped while idle); RT_LOCAL when we refused the
 * reply (too large): the connection is lost but Redis is fine. */
#define RT_EOF   1
#define RT_LOCAL 2

static const char *roundtrip(redisReply **replies, int *how, redisContext *c,
                             int n, apr_size_t max_reply, apr_time_t deadline,
                             apr_pool_t *p)
{
    int done = 0, i, w;

    *how = 0;
    memset(replies, 0, sizeof(*replies) * (apr_size_t)n);
    for (;;) {
        if (redisBufferWrite(c, &done) != REDIS_OK) {
            *how = RT_EOF;
            return apr_psprintf(p, "write: %s", c->errstr);
        }
        if (done) {
            break;
        }
        if ((w = wait_fd(c->fd, POLLOUT, deadline)) <= 0) {
            return w ? "poll failed" : "timeout sending the command";
        }
    }
    for (i = 0; i < n; i++) {
        void *r = NULL;
        for (;;) {
            if (redisGetReplyFromReader(c, &r) != REDIS_OK) {
                free_replies(replies, i);
                return apr_psprintf(p, "protocol error: %s", c->errstr);
            }
            if (r) {
                break;
            }
            /* bounded memory: a reply larger than any value we accept is
             * refused while it arrives, not after */
            if (c->reader->len > max_reply + 4096) {
                free_replies(replies, i);
                *how = RT_LOCAL;
                return "reply too large";
            }
            if ((w = wait_fd(c->fd, POLLIN, deadline)) <= 0) {
                free_replies(replies, i);
                return w ? "poll failed" : "timeout waiting for the reply";
            }
            if (redisBufferRead(c) != REDIS_OK) {
                *how = i == 0 ? RT_EOF : 0;
                free_replies(replies, i);
                return apr_psprintf(p, "read: %s", c->errstr);
            }
        }
        replies[i] = r;
    }
    return NULL;
}

static const char *append(redisContext *c, const rcmd_t *cmds, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv,
                                   cmds[i].len) != REDIS_OK) {
            return "out of memory formatting a command";
        }
    }
    return NULL;
}

static rcmd_t cmd(apr_pool_t *p, int argc, ...)
{
    rcmd_t c;
    va_list ap;
    int i;

    c.argc = argc;
    c.argv = apr_palloc(p, sizeof(*c.argv) * (apr_size_t)argc);
    c.len = apr_palloc(p, sizeof(*c.len) * (apr_size_t)argc);
    va_start(ap, argc);
    for (i = 0; i < argc; i++) {
        c.argv[i] = va_arg(ap, const char *);
        c.len[i] = strlen(c.argv[i]);
    }
    va_end(ap);
    return c;
}

/* --------------------------------------------------------- connecting -- */

static struct timeval ms_tv(long ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static const char *reply_text(const redisReply *r, apr_pool_t *p)
{
    if (!r) {
        return "no reply";
    }
    if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS
        || r->type == REDIS_REPLY_STRING) {
        return apr_pstrmemdup(p, r->str, r->len > 200 ? 200 : r->len);
    }
    return apr_psprintf(p, "unexpected reply type %d", r->type);
}

/* Connects, then AUTH, SELECT and PING in one round trip, all within the
 * connect timeout. PING proves the connection is usable (a Redis that
 * wants a password answers NOAUTH, one that is loading answers LOADING). */
static const char *rs_connect(redisContext **out, rstore_t *s, int select,
                              apr_pool_t *p)
{
    apr_time_t deadline = apr_time_now()
                          + apr_time_from_msec(s->o.connect_timeout_ms);
    struct timeval tv = ms_tv(s->o.connect_timeout_ms);
    redisContext *c;
    redisReply *rep[3];
    rcmd_t cmds[3];
    const char *err, *db = apr_itoa(p, s->url.db);
    int n = 0, i, how, flags;

    c = s->url.path ? redisConnectUnixWithTimeout(s->url.path, tv)
                    : redisConnectWithTimeout(s->url.host, s->url.port, tv);
    if (!c) {
        return apr_psprintf(p, "connect to %s: out of memory", s->desc);
    }
    if (c->err) {
        err = apr_psprintf(p, "connect to %s: %s", s->desc, c->errstr);
        redisFree(c);
        return err;
    }
    /* from here on the deadline loop does the waiting (see the top) */
    flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        redisFree(c);
        return apr_psprintf(p, "connect to %s: cannot make the socket "
                            "non-blocking", s->desc);
    }
    c->flags &= ~REDIS_BLOCK;
    if (!s->url.path) {
        /* finds peers that vanished while a pooled connection was idle */
        redisEnableKeepAlive(c);
    }
    if (s->url.password) {
        cmds[n++] = s->url.user ? cmd(p, 3, "AUTH", s->url.user,
                                      s->url.password)
                                : cmd(p, 2, "AUTH", s->url.password);
    }
    if (select && s->url.db) {
        cmds[n++] = cmd(p, 2, "SELECT", db);
    }
    cmds[n++] = cmd(p, 1, "PING");
    if ((err = append(c, cmds, n))
        || (err = roundtrip(rep, &how, c, n, 4096, deadline, p))) {
        redisFree(c);
        return apr_psprintf(p, "connect to %s: handshake: %s", s->desc, err);
    }
    err = NULL;
    for (i = 0; i < n && !err; i++) {
        if (rep[i]->type == REDIS_REPLY_ERROR) {
            err = apr_psprintf(p, "connect to %s: %s refused: %s", s->desc,
                               cmds[i].argv[0], reply_text(rep[i], p));
        }
    }
    free_replies(rep, n);
    if (err) {
        redisFree(c);
        return err;
    }
    *out = c;
    return NULL;
}

/* ------------------------------------------------------------ the pool -- */

static apr_status_t rconn_make(void **res, void *params, apr_pool_t *p)
{
    (void)params;
    (void)p;
    /* malloc, not the list's pool: holders come and go for the whole
     * life of the process and a pool would only grow */
    *res = calloc(1, sizeof(rconn_t));
    return *res ? APR_SUCCESS : APR_ENOMEM;
}

/* Closes the holder's connection, if any. */
static void rconn_close(rstore_t *s, rconn_t *rc)
{
    if (rc->c) {
        redisFree(rc->c);
        rc->c = NULL;
        apr_atomic_dec32(&s->open);
    }
}

static apr_status_t rconn_free(void *res, void *params, apr_pool_t *p)
{
    rconn_t *rc = res;

    (void)p;
    rconn_close(params, rc);
    free(rc);
    return APR_SUCCESS;
}

static apr_status_t reply_cleanup(void *r)
{
    freeReplyObject(r);
    return APR_SUCCESS;
}

/* Runs n pipelined commands on a pooled connection. OK: every reply is in
 * rep[] (owned by p; error replies included: the caller judges them).
 * ERROR: the store is down, no connection was free in time, or the
 * connection failed (then the gate is told, and the connection dropped). */
static bff_store_rc_e rs_exec(redisReply **rep, rstore_t *s,
                              const rcmd_t *cmds, int n, apr_pool_t *p)
{
    rconn_t *rc;
    const char *err;
    void *res;
    int attempt, how = 0, i;
    apr_status_t rv;

    if (!bff_store_gate_enter(s->gate, apr_time_now())) {
        return BFF_STORE_ERROR;
    }
    if ((rv = apr_reslist_acquire(s->conns, &res)) != APR_SUCCESS) {
        bff_store_gate_note_error(s->gate, apr_time_now(), apr_psprintf(p,
            "%s: no free connection within %ldms (pool of %d)", s->desc,
            s->o.command_timeout_ms, s->o.pool_max));
        return BFF_STORE_ERROR;
    }
    rc = res;
    for (attempt = 0;; attempt++) {
        if (rc->c && rc->gen != bff_store_gate_generation(s->gate)) {
            /* opened before the store last went down */
            rconn_close(s, rc);
        }
        if (!rc->c) {
            apr_uint32_t gen = bff_store_gate_generation(s->gate);
            if ((err = rs_connect(&rc->c, s, 1, p))) {
                bff_store_gate_count(s->gate, 0, 1);
                break;
            }
            apr_atomic_inc32(&s->open);
            bff_store_gate_count(s->gate, 1, 0);
            bff_store_gate_ok(s->gate, apr_time_now());
            rc->gen = gen;
            rc->uses = 0;
        }
        how = 0;
        if (!(err = append(rc->c, cmds, n))) {
            apr_time_t deadline = apr_time_now()
                                  + apr_time_from_msec(s->o.command_timeout_ms);
            err = roundtrip(rep, &how, rc->c, n, s->o.max_value, deadline,
                            p);
        }
        if (!err) {
            rc->uses++;
            apr_reslist_release(s->conns, rc);
            for (i = 0; i < n; i++) {
                apr_pool_cleanup_register(p, rep[i], reply_cleanup,
                                          apr_pool_cleanup_null);
            }
            return BFF_STORE_OK;
        }
        err = apr_psprintf(p, "%s: %s", s->desc, err);
        rconn_close(s, rc);
        if (how == RT_LOCAL) {
            bff_store_gate_note_error(s->gate, apr_time_now(), err);
            apr_reslist_invalidate(s->conns, rc);
            return BFF_STORE_ERROR;
        }
        /* one retry when an idle pooled connection turned out closed */
        if (!(attempt == 0 && how == RT_EOF && rc->uses > 0)) {
            break;
        }
    }
    bff_store_gate_fail(s->gate, apr_time_now(), err);
    apr_reslist_invalidate(s->conns, rc);
    return BFF_STORE_ERROR;
}

/* A Redis error reply: the store works, this call did not. */
static bff_store_rc_e rs_reply_error(rstore_t *s, const char *what,
                                     const redisReply *r, apr_pool_t *p)
{
    bff_store_gate_note_error(s->gate, apr_time_now(), apr_psprintf(p,
        "%s: %s: %s", s->desc, what, reply_text(r, p)));
    return BFF_STORE_ERROR;
}

/* EVALSHA, and EVAL when Redis does not know the script yet (first use,
 * or after a restart or SCRIPT FLUSH). */
static bff_store_rc_e rs_script(redisReply **out, rstore_t *s, int script,
                                int nkeys, const char **keys, int nargs,
                                const char **args, const size_t *arglens,
                                apr_pool_t *p)
{
    rcmd_t c;
    bff_store_rc_e rc;
    int i, k = 0;

    c.argc = 3 + nkeys + nargs;
    c.argv = apr_palloc(p, sizeof(*c.argv) * (apr_size_t)c.argc);
    c.len = apr_palloc(p, sizeof(*c.len) * (apr_size_t)c.argc);
    c.argv[k] = "EVALSHA";
    c.len[k++] = 7;
    c.argv[k] = s->sha[script];
    c.len[k++] = 40;
    c.argv[k] = apr_itoa(p, nkeys);
    c.len[k] = strlen(c.argv[k]);
    k++;
    for (i = 0; i < nkeys; i++, k++) {
        c.argv[k] = keys[i];
        c.len[k] = strlen(keys[i]);
    }
    for (i = 0; i < nargs; i++, k++) {
        c.argv[k] = args[i];
        c.len[k] = arglens ? arglens[i] : strlen(args[i]);
    }
    if ((rc = rs_exec(out, s, &c, 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    if ((*out)->type == REDIS_REPLY_ERROR
        && !strncmp((*out)->str, "NOSCRIPT", 8)) {
        c.argv[0] = "EVAL";
        c.len[0] = 4;
        c.argv[1] = scripts[script];
        c.len[1] = strlen(scripts[script]);
        rc = rs_exec(out, s, &c, 1, p);
    }
    return rc;
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
        bff_store_gate_note_error(s->gate, apr_time_now(), apr_psprintf(p,
            "%s: GET: value of %lu bytes over the limit", s->desc,
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
            bff_store_gate_note_error(s->gate, apr_time_now(),
                                      "SET: too many tags");
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

/* ["message", channel, payload] */
static void deliver(redisReply *r, bff_store_msg_fn *fn, void *baton)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3
        && r->element[0]->type == REDIS_REPLY_STRING
        && !strcmp(r->element[0]->str, "message")
        && r->element[2]->type == REDIS_REPLY_STRING) {
        fn(baton, r->element[2]->str, r->element[2]->len);
    }
}

static bff_store_rc_e rs_subscribe(bff_store_t *st, const char *channel,
                                   bff_store_msg_fn *fn, void *baton,
                                   volatile apr_uint32_t *stop,
                                   apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    redisContext *c;
    redisReply *r;
    rcmd_t sc = cmd(p, 2, "SUBSCRIBE", channel);
    const char *err;
    int how;

    /* its own connection, outside the pool and the gate: it lives long,
     * and the request path judges Redis' health by itself */
    if ((err = rs_connect(&c, s, 0, p))) {
        bff_store_gate_count(s->gate, 0, 1);
        bff_store_gate_note_error(s->gate, apr_time_now(), err);
        return BFF_STORE_ERROR;
    }
    bff_store_gate_count(s->gate, 1, 0);
    if ((err = append(c, &sc, 1))
        || (err = roundtrip(&r, &how, c, 1, 4096, apr_time_now()
                            + apr_time_from_msec(s->o.command_timeout_ms),
                            p))) {
        goto fail;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        err = apr_psprintf(p, "SUBSCRIBE refused: %s", reply_text(r, p));
        freeReplyObject(r);
        goto fail;
    }
    freeReplyObject(r);
    fn(baton, NULL, 0);     /* messages sent while we were away are lost */
    while (!apr_atomic_read32(stop)) {
        void *m = NULL;
        struct pollfd pfd;
        int rc;

        if (redisGetReplyFromReader(c, &m) != REDIS_OK) {
            err = apr_psprintf(p, "protocol error: %s", c->errstr);
            goto fail;
        }
        if (m) {
            deliver(m, fn, baton);
            freeReplyObject(m);
            continue;
        }
        if (c->reader->len > s->o.max_value + 4096) {
            err = "message too large";
            goto fail;
        }
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        rc = poll(&pfd, 1, 100);
        if (rc < 0 && errno != EINTR) {
            err = "poll failed";
            goto fail;
        }
        if (rc > 0 && redisBufferRead(c) != REDIS_OK) {
            err = apr_psprintf(p, "read: %s", c->errstr);
            goto fail;
        }
    }
    redisFree(c);
    return BFF_STORE_OK;

fail:
    bff_store_gate_note_error(s->gate, apr_time_now(), apr_psprintf(p,
        "%s: subscriber: %s", s->desc, err));
    redisFree(c);
    return BFF_STORE_ERROR;
}

static void rs_health(bff_store_t *st, bff_store_health_t *out,
                      apr_pool_t *p)
{
    rstore_t *s = st->ctx;

    memset(out, 0, sizeof(*out));
    bff_store_gate_health(s->gate, out, p);
    out->servers = 1;
    out->servers_down = !out->up;
    out->conns_open = (int)apr_atomic_read32(&s->open);
    out->conns_busy = (int)apr_reslist_acquired_count(s->conns);
}

static bff_store_rc_e rs_xadd(bff_store_t *st, int *added, const char *stream,
                              long maxlen, const bff_store_fields_t *entries,
                              int n, apr_pool_t *p)
{
    rstore_t *s = st->ctx;
    rcmd_t *cmds = apr_palloc(p, sizeof(*cmds) * (apr_size_t)(n ? n : 1));
    redisReply **rep = apr_pcalloc(p, sizeof(*rep) * (apr_size_t)(n ? n : 1));
    const char *ml = apr_ltoa(p, maxlen);
    const char *err = NULL;
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
        else if (!err) {
            err = reply_text(rep[i], p);
        }
    }
    if (err) {
        /* WRONGTYPE (the key is not a stream), OOM, ...: Redis is up */
        bff_store_gate_note_error(s->gate, apr_time_now(), apr_psprintf(p,
            "%s: XADD %s: %s", s->desc, stream, err));
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

static void sha1_hex(char out[41], const char *text)
{
    unsigned char md[APR_SHA1_DIGESTSIZE];
    static const char digits[] = "0123456789abcdef";
    apr_sha1_ctx_t c;
    int i;

    apr_sha1_init(&c);
    apr_sha1_update_binary(&c, (const unsigned char *)text,
                           (unsigned int)strlen(text));
    apr_sha1_final(md, &c);
    for (i = 0; i < APR_SHA1_DIGESTSIZE; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[40] = '\0';
}

const char *bff_store_redis_create(bff_store_t **out, const char *url,
                                   const bff_store_opts_t *opts,
                                   apr_pool_t *p)
{
    rstore_t *s = apr_pcalloc(p, sizeof(*s));
    bff_store_t *st;
    const char *err;
    apr_status_t rv;
    int i;

    if ((err = bff_redis_url_parse(&s->url, url, p))) {
        return err;
    }
    if ((err = bff_store_opts_check(opts, p))) {
        return err;
    }
    s->o = *opts;
    s->o.prefix = apr_pstrdup(p, opts->prefix);
    s->desc = s->url.path
              ? apr_psprintf(p, "redis unix:%s db %d", s->url.path, s->url.db)
              : apr_psprintf(p, "redis %s%s%s:%d db %d",
                             strchr(s->url.host, ':') ? "[" : "", s->url.host,
                             strchr(s->url.host, ':') ? "]" : "", s->url.port,
                             s->url.db);
    for (i = 0; i < NSCRIPTS; i++) {
        sha1_hex(s->sha[i], scripts[i]);
    }
    s->gate = bff_store_gate_create(s->o.backoff_min_ms, s->o.backoff_max_ms,
                                    p);
    /* min 0: nothing connects before the first request */
    rv = apr_reslist_create(&s->conns, 0, s->o.pool_max, s->o.pool_max,
                            apr_time_from_msec(s->o.pool_idle_ms),
                            rconn_make, rconn_free, s, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "%s: cannot create the connection pool",
                            s->desc);
    }
    apr_reslist_timeout_set(s->conns,
                            apr_time_from_msec(s->o.command_timeout_ms));
    st = apr_pcalloc(p, sizeof(*st));
    st->vt = &redis_vtable;
    st->ctx = s;
    *out = st;
    return NULL;
}
