/*
 * mod_bff: the one Redis layer (see bff_redis.h).
 *
 * Connections live in an apr_reslist per process. Its constructor makes an
 * empty holder and the connect happens after acquire, outside the list's
 * lock (apr_reslist constructs under its mutex, which would make every
 * thread wait for one slow connect). A connection that failed is never
 * returned: its holder is invalidated.
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

#include "bff_redis.h"

typedef bff_redis_cmd_t rcmd_t;

typedef struct {
    redisContext *c;        /* NULL: not connected */
    apr_uint32_t gen;       /* gate generation when it connected */
    unsigned long uses;     /* calls completed on it */
} rconn_t;

struct bff_redis_t {
    bff_redis_url_t url;
    bff_redis_opts_t o;
    const char *desc;       /* for messages; never holds the password */
    apr_reslist_t *conns;
    apr_uint32_t open;      /* connections open (for metrics) */
    bff_store_gate_t *gate;
};

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

bff_redis_cmd_t bff_redis_cmd(apr_pool_t *p, int argc, ...)
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
static const char *redis_connect(redisContext **out, bff_redis_t *s, int select,
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
        cmds[n++] = s->url.user ? bff_redis_cmd(p, 3, "AUTH", s->url.user,
                                      s->url.password)
                                : bff_redis_cmd(p, 2, "AUTH", s->url.password);
    }
    if (select && s->url.db) {
        cmds[n++] = bff_redis_cmd(p, 2, "SELECT", db);
    }
    cmds[n++] = bff_redis_cmd(p, 1, "PING");
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
static void rconn_close(bff_redis_t *s, rconn_t *rc)
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

const char *bff_redis_exec(redisReply **rep, bff_redis_t *s,
                           const rcmd_t *cmds, int n, apr_pool_t *p)
{
    rconn_t *rc;
    const char *err;
    void *res;
    int attempt, how = 0, i;
    apr_status_t rv;

    if (!bff_store_gate_enter(s->gate, apr_time_now())) {
        return apr_pstrcat(p, s->desc, ": down, not retried yet", NULL);
    }
    if ((rv = apr_reslist_acquire(s->conns, &res)) != APR_SUCCESS) {
        err = apr_psprintf(p, "%s: no free connection within %ldms (pool "
                           "of %d)", s->desc, s->o.command_timeout_ms,
                           s->o.pool_max);
        bff_store_gate_note_error(s->gate, apr_time_now(), err);
        return err;
    }
    rc = res;
    for (attempt = 0;; attempt++) {
        if (rc->c && rc->gen != bff_store_gate_generation(s->gate)) {
            /* opened before Redis last went down */
            rconn_close(s, rc);
        }
        if (!rc->c) {
            apr_uint32_t gen = bff_store_gate_generation(s->gate);
            if ((err = redis_connect(&rc->c, s, 1, p))) {
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
            err = roundtrip(rep, &how, rc->c, n, s->o.max_reply, deadline,
                            p);
        }
        if (!err) {
            rc->uses++;
            apr_reslist_release(s->conns, rc);
            for (i = 0; i < n; i++) {
                apr_pool_cleanup_register(p, rep[i], reply_cleanup,
                                          apr_pool_cleanup_null);
            }
            return NULL;
        }
        err = apr_psprintf(p, "%s: %s", s->desc, err);
        rconn_close(s, rc);
        if (how == RT_LOCAL) {
            bff_store_gate_note_error(s->gate, apr_time_now(), err);
            apr_reslist_invalidate(s->conns, rc);
            return err;
        }
        /* one retry when an idle pooled connection turned out closed */
        if (!(attempt == 0 && how == RT_EOF && rc->uses > 0)) {
            break;
        }
    }
    bff_store_gate_fail(s->gate, apr_time_now(), err);
    apr_reslist_invalidate(s->conns, rc);
    return err;
}

const char *bff_redis_reply_error(bff_redis_t *s, const char *what,
                                  const redisReply *r, apr_pool_t *p)
{
    const char *err = apr_psprintf(p, "%s: %s: %s", s->desc, what,
                                   reply_text(r, p));

    bff_store_gate_note_error(s->gate, apr_time_now(), err);
    return err;
}

void bff_redis_note_error(bff_redis_t *s, const char *err)
{
    bff_store_gate_note_error(s->gate, apr_time_now(), err);
}

const char *bff_redis_eval(redisReply **out, bff_redis_t *s,
                           const bff_redis_script_t *script,
                           int nkeys, const char *const *keys,
                           const size_t *keylens,
                           int nargs, const char *const *args,
                           const size_t *arglens, apr_pool_t *p)
{
    rcmd_t c;
    const char *err;
    int i, k = 0;

    c.argc = 3 + nkeys + nargs;
    c.argv = apr_palloc(p, sizeof(*c.argv) * (apr_size_t)c.argc);
    c.len = apr_palloc(p, sizeof(*c.len) * (apr_size_t)c.argc);
    c.argv[k] = "EVALSHA";
    c.len[k++] = 7;
    c.argv[k] = script->sha1;
    c.len[k++] = 40;
    c.argv[k] = apr_itoa(p, nkeys);
    c.len[k] = strlen(c.argv[k]);
    k++;
    for (i = 0; i < nkeys; i++, k++) {
        c.argv[k] = keys[i];
        c.len[k] = keylens ? keylens[i] : strlen(keys[i]);
    }
    for (i = 0; i < nargs; i++, k++) {
        c.argv[k] = args[i];
        c.len[k] = arglens ? arglens[i] : strlen(args[i]);
    }
    if ((err = bff_redis_exec(out, s, &c, 1, p))) {
        return err;
    }
    if ((*out)->type == REDIS_REPLY_ERROR
        && !strncmp((*out)->str, "NOSCRIPT", 8)) {
        c.argv[0] = "EVAL";
        c.len[0] = 4;
        c.argv[1] = script->text;
        c.len[1] = strlen(script->text);
        err = bff_redis_exec(out, s, &c, 1, p);
    }
    return err;
}

/* ------------------------------------------------------ subscriptions -- */

/* ["message", channel, payload] */
static void deliver(redisReply *r, bff_redis_msg_fn *fn, void *baton)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3
        && r->element[0]->type == REDIS_REPLY_STRING
        && !strcmp(r->element[0]->str, "message")
        && r->element[2]->type == REDIS_REPLY_STRING) {
        fn(baton, r->element[2]->str, r->element[2]->len);
    }
}

const char *bff_redis_subscribe(bff_redis_t *s, const char *channel,
                                bff_redis_msg_fn *fn, void *baton,
                                volatile apr_uint32_t *stop, apr_pool_t *p)
{
    redisContext *c;
    redisReply *r;
    rcmd_t sc = bff_redis_cmd(p, 2, "SUBSCRIBE", channel);
    const char *err;
    int how;

    if ((err = redis_connect(&c, s, 0, p))) {
        bff_store_gate_count(s->gate, 0, 1);
        bff_store_gate_note_error(s->gate, apr_time_now(), err);
        return err;
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
        if (c->reader->len > s->o.max_reply + 4096) {
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
    return NULL;

fail:
    err = apr_psprintf(p, "%s: subscriber: %s", s->desc, err);
    bff_store_gate_note_error(s->gate, apr_time_now(), err);
    redisFree(c);
    return err;
}

/* ------------------------------------------------ own connections -- */

struct bff_redis_conn_t {
    bff_redis_t *s;
    redisContext *c;
};

const char *bff_redis_conn_open(bff_redis_conn_t **out, bff_redis_t *s,
                                apr_pool_t *p)
{
    bff_redis_conn_t *rc;
    redisContext *c;
    const char *err;

    if ((err = redis_connect(&c, s, 1, p))) {
        bff_store_gate_count(s->gate, 0, 1);
        bff_store_gate_note_error(s->gate, apr_time_now(), err);
        return err;
    }
    bff_store_gate_count(s->gate, 1, 0);
    rc = malloc(sizeof(*rc));
    if (!rc) {
        redisFree(c);
        return "out of memory";
    }
    rc->s = s;
    rc->c = c;
    *out = rc;
    return NULL;
}

const char *bff_redis_conn_call(redisReply **rep, bff_redis_conn_t *rc,
                                const rcmd_t *cmd, long wait_ms,
                                apr_pool_t *p)
{
    bff_redis_t *s = rc->s;
    const char *err;
    int how;

    if (!rc->c) {
        return "connection closed after an error";
    }
    if (!(err = append(rc->c, cmd, 1))) {
        err = roundtrip(rep, &how, rc->c, 1, s->o.max_reply,
                        apr_time_now() + apr_time_from_msec(
                            wait_ms + s->o.command_timeout_ms), p);
    }
    if (err) {
        err = apr_psprintf(p, "%s: %s", s->desc, err);
        bff_store_gate_note_error(s->gate, apr_time_now(), err);
        redisFree(rc->c);
        rc->c = NULL;
        return err;
    }
    apr_pool_cleanup_register(p, *rep, reply_cleanup, apr_pool_cleanup_null);
    return NULL;
}

void bff_redis_conn_close(bff_redis_conn_t *rc)
{
    if (rc) {
        if (rc->c) {
            redisFree(rc->c);
        }
        free(rc);
    }
}

void bff_redis_health(bff_redis_t *s, bff_store_health_t *out,
                      apr_pool_t *p)
{
    memset(out, 0, sizeof(*out));
    bff_store_gate_health(s->gate, out, p);
    out->servers = 1;
    out->servers_down = !out->up;
    out->conns_open = (int)apr_atomic_read32(&s->open);
    out->conns_busy = (int)apr_reslist_acquired_count(s->conns);
}

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


void bff_redis_script_init(bff_redis_script_t *s, const char *text)
{
    s->text = text;
    sha1_hex(s->sha1, text);
}

void bff_redis_opts_default(bff_redis_opts_t *o)
{
    o->connect_timeout_ms = 50;
    o->command_timeout_ms = 50;
    o->pool_max = 16;
    o->pool_idle_ms = 60000;
    o->backoff_min_ms = 100;
    o->backoff_max_ms = 5000;
    o->max_reply = 16 * 1024 * 1024;
}

const char *bff_redis_desc(const bff_redis_t *s)
{
    return s->desc;
}

const char *bff_redis_create(bff_redis_t **out, const char *url,
                             const bff_redis_opts_t *opts, apr_pool_t *p)
{
    bff_redis_t *s = apr_pcalloc(p, sizeof(*s));
    const char *err;
    apr_status_t rv;

    if ((err = bff_redis_url_parse(&s->url, url, p))) {
        return err;
    }
    if (opts->connect_timeout_ms <= 0 || opts->command_timeout_ms <= 0
        || opts->pool_max < 1 || opts->pool_idle_ms < 0
        || opts->backoff_min_ms <= 0
        || opts->backoff_max_ms < opts->backoff_min_ms
        || opts->max_reply < 1024) {
        return "Redis options out of range (timeouts and back-off > 0, "
               "pool >= 1, replies >= 1k)";
    }
    s->o = *opts;
    s->desc = s->url.path
              ? apr_psprintf(p, "redis unix:%s db %d", s->url.path, s->url.db)
              : apr_psprintf(p, "redis %s%s%s:%d db %d",
                             strchr(s->url.host, ':') ? "[" : "", s->url.host,
                             strchr(s->url.host, ':') ? "]" : "", s->url.port,
                             s->url.db);
    s->gate = bff_store_gate_create(s->o.backoff_min_ms, s->o.backoff_max_ms,
                                    p);
    /* min 0: nothing connects before the first call */
    rv = apr_reslist_create(&s->conns, 0, s->o.pool_max, s->o.pool_max,
                            apr_time_from_msec(s->o.pool_idle_ms),
                            rconn_make, rconn_free, s, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "%s: cannot create the connection pool",
                            s->desc);
    }
    apr_reslist_timeout_set(s->conns,
                            apr_time_from_msec(s->o.command_timeout_ms));
    *out = s;
    return NULL;
}
