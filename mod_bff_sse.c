/*
 * mod_bff: server-sent events pushed from Redis Streams.
 *
 * A location with `SetHandler bff-event-stream` streams text/event-stream
 * to a client the access phase has let through (AuthType bff-jwt or
 * bff-apikey, Require, BFFRateLimit run first, as for any location). The
 * stream read is the identity's (PREFIX notifications:<sha256(iss NUL
 * sub)>) or a configured topic's (BFFEventStream topic=NAME); a service
 * publishes with XADD and every gateway instance delivers. The framing is
 * lib/bff_sse.c's.
 *
 * Threads: in httpd 2.4 each stream holds a worker thread for its whole
 * life. Those threads never block on Redis: one reader thread per child
 * (a long-lived subscriber, so a thread of its own rather than a
 * mod_watchdog callback) keeps one connection blocked in XREAD BLOCK on
 * every stream key the child's clients watch and, when a key has new
 * entries, wakes that key's waiting workers through its condition
 * variable. A woken worker reads its entries from its own position with a
 * short non-blocking XREAD on the pooled connections (lib/bff_redis.c),
 * so clients at different positions of one stream, and resumes from
 * Last-Event-ID, need nothing from the reader but the wake-up. A worker
 * whose key is new interrupts the reader's XREAD (CLIENT UNBLOCK) so the
 * key is watched at once.
 *
 * Caps: a server-wide cap on streams and a per-identity cap, counted over
 * every process of the server in retained shared memory (lib/bff_inflight
 * with a table of its own: counter 0 all streams, then 4096 counters by a
 * hash of the identity; identities that share a counter share its cap).
 * Beyond either: 503 with Retry-After and problem+json.
 *
 * A stream ends when the token expires (exp), when the child stops (a
 * graceful restart: the MPM's state is checked every 250 ms, and the
 * child's pre-cleanup wakes every worker), when the client goes away (a
 * failed write, at the latest at the next heartbeat) and when Redis fails
 * (logged); the client reconnects with Last-Event-ID and resumes.
 */
#include <errno.h>
#include <sys/socket.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"

#include "apr_atomic.h"
#include "apr_lib.h"
#include "apr_portable.h"
#include "apr_strings.h"
#include "apr_thread_cond.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#include <hiredis/hiredis.h>

#include "mod_bff.h"
#include "mod_bff_auth.h"
#include "mod_bff_obs.h"
#include "mod_bff_overload.h"
#include "mod_bff_shared.h"
#include "mod_bff_sse.h"
#include "bff_inflight.h"
#include "bff_opts.h"
#include "bff_redis.h"
#include "bff_sse.h"

APLOG_USE_MODULE(bff);

#define AUTO -1L
#define ID_BUCKETS 4096          /* per-identity counters */
#define KEY_MAX 256              /* longest stream key */
#define ID_MAX 48                /* longest stream id */
#define READ_COUNT 100           /* entries per XREAD */
#define BLOCK_MS 1000            /* the reader's XREAD BLOCK */
#define TICK_MS 250              /* a waiting worker checks exp, restart */

struct bff_sse_conf_t {
    const char *url;             /* NULL: no event streams */
    const char *prefix;
    long max_streams;            /* AUTO or a number */
    long retry_after_ms;
    long connect_ms, timeout_ms;
    int pool;
};

struct bff_sse_dir_t {
    const char *topic;           /* NULL: unset; "": the identity's */
    long heartbeat_ms;           /* UNSET */
    long per_identity;           /* UNSET */
};

/* A stream key watched by this child's workers. */
typedef struct {
    char key[KEY_MAX];
    char id[ID_MAX];             /* where the reader reads from */
    unsigned int refs;           /* workers watching; 0: a free slot */
    apr_uint64_t gen;            /* bumped when the key has news */
    apr_thread_cond_t *cond;
} wkey_t;

/* This child's reader and what it watches; all under mu. */
typedef struct {
    server_rec *s;
    bff_redis_t *redis;
    apr_thread_mutex_t *mu;
    apr_thread_cond_t *idle;     /* the reader waits here without keys */
    wkey_t *keys;
    int nkeys;
    apr_uint32_t version;        /* bumped when the set of keys changes */
    apr_uint32_t call_version;   /* the set the reader's call has */
    int in_call;                 /* the reader is in XREAD */
    long long client_id;         /* the reader connection's CLIENT ID */
    int down;                    /* the reader cannot read Redis */
    int stopping;                /* the child is exiting */
    apr_thread_t *thread;
} sse_child_t;

static sse_child_t *child;       /* NULL: no event streams in this child */
static bff_inflight_t *table;
static int my_row = -1;
static apr_uint32_t cap_total;   /* from post_config */
static const bff_sse_conf_t *gconf;

/* ------------------------------------------------------------ config -- */

bff_sse_conf_t *bff_sse_conf_create(apr_pool_t *p)
{
    bff_sse_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->prefix = "bff:";
    c->max_streams = AUTO;
    c->retry_after_ms = 5000;
    c->connect_ms = 200;
    c->timeout_ms = 500;
    c->pool = 16;
    return c;
}

bff_sse_dir_t *bff_sse_dir_create(apr_pool_t *p)
{
    bff_sse_dir_t *d = apr_pcalloc(p, sizeof(*d));

    d->heartbeat_ms = UNSET;
    d->per_identity = UNSET;
    return d;
}

bff_sse_dir_t *bff_sse_dir_merge(apr_pool_t *p, const bff_sse_dir_t *base,
                                 const bff_sse_dir_t *add)
{
    bff_sse_dir_t *d = apr_pcalloc(p, sizeof(*d));

    d->topic = add->topic ? add->topic : base->topic;
    d->heartbeat_ms = add->heartbeat_ms != UNSET ? add->heartbeat_ms
                                                 : base->heartbeat_ms;
    d->per_identity = add->per_identity != UNSET ? add->per_identity
                                                 : base->per_identity;
    return d;
}

static long heartbeat_of(const bff_sse_dir_t *d)
{
    return d->heartbeat_ms != UNSET ? d->heartbeat_ms : 15000;
}

static long per_identity_of(const bff_sse_dir_t *d)
{
    return d->per_identity != UNSET ? d->per_identity : 4;
}

static const char *opt_prefix(void *target, const char *v, apr_pool_t *p)
{
    bff_sse_conf_t *c = target;
    apr_size_t n = strlen(v);

    if (n > 64 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            "0123456789_.:-") != n) {
        return "up to 64 of A-Za-z0-9_.:-";
    }
    c->prefix = v;
    return NULL;
}

static const char *opt_max(void *target, const char *v, apr_pool_t *p)
{
    bff_sse_conf_t *c = target;
    char *end;
    long n;

    if (!strcmp(v, "auto")) {
        c->max_streams = AUTO;
        return NULL;
    }
    n = strtol(v, &end, 10);
    if (!apr_isdigit(*v) || *end || n < 1 || n > 1000000) {
        return "expected auto or a number from 1 to 1000000";
    }
    c->max_streams = n;
    return NULL;
}

static const bff_opt_t redis_opts[] = {
    BFF_OPT_CALL("prefix", opt_prefix),
    BFF_OPT_CALL("max-streams", opt_max),
    BFF_OPT_NUM("retry-after", BFF_OPT_MS, bff_sse_conf_t, retry_after_ms,
                1000, 3600000),
    BFF_OPT_NUM("connect-timeout", BFF_OPT_MS, bff_sse_conf_t, connect_ms,
                1, 60000),
    BFF_OPT_NUM("timeout", BFF_OPT_MS, bff_sse_conf_t, timeout_ms, 1, 60000),
    BFF_OPT_NUM("pool", BFF_OPT_INT, bff_sse_conf_t, pool, 1, 1024),
    BFF_OPT_END
};

const char *bff_sse_cmd_redis(cmd_parms *cmd, void *dcv, const char *args)
{
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    bff_redis_url_t u;
    const char *url, *w;

    if (err) {
        return err;
    }
    if (sc->sse->url) {
        return "BFFEventStreamRedis is given twice";
    }
    url = ap_getword_conf(cmd->pool, &args);
    if ((err = bff_redis_url_parse(&u, url, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFEventStreamRedis: %s", err);
    }
    sc->sse->url = url;
    while (*(w = ap_getword_conf(cmd->pool, &args))) {
        if ((err = bff_opt_parse(redis_opts, sc->sse, w, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFEventStreamRedis: %s", err);
        }
    }
    return NULL;
}

static const char *opt_topic(void *target, const char *v, apr_pool_t *p)
{
    if (!bff_sse_topic_valid(v)) {
        return "a topic is 1 to 128 of A-Za-z0-9_.:-";
    }
    ((bff_sse_dir_t *)target)->topic = v;
    return NULL;
}

static const bff_opt_t stream_opts[] = {
    BFF_OPT_CALL("topic", opt_topic),
    BFF_OPT_NUM("heartbeat", BFF_OPT_MS, bff_sse_dir_t, heartbeat_ms,
                100, 3600000),
    BFF_OPT_NUM("per-identity", BFF_OPT_LONG, bff_sse_dir_t, per_identity,
                1, 100000),
    BFF_OPT_END
};

const char *bff_sse_cmd_stream(cmd_parms *cmd, void *dcv, const char *args)
{
    bff_dir_conf_t *dc = dcv;
    const char *w, *err;

    if (dc->epc) {
        return "BFFEventStream is not allowed inside <BFFEndpoint>";
    }
    if (!*args) {
        return "BFFEventStream takes options: topic=NAME heartbeat=DURATION "
               "per-identity=N";
    }
    while (*(w = ap_getword_conf(cmd->temp_pool, &args))) {
        if ((err = bff_opt_parse(stream_opts, dc->sse, w, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFEventStream: %s", err);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ tables -- */

static int sse_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);
    long mrw;
    int shape;

    table = NULL;
    gconf = sc->sse;
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG
        || !gconf->url) {
        return OK;
    }
    table = bff_inflight_shared(&shape, &mrw, "sse", ID_BUCKETS + 1, s,
                                pconf);
    if (!table) {
        if (shape) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(800)
                         "BFFEventStreamRedis: the shared table of event "
                         "streams has another shape");
        }
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    cap_total = (apr_uint32_t)(gconf->max_streams == AUTO
                               ? (mrw / 2 > 0 ? mrw / 2 : 1)
                               : gconf->max_streams);
    return OK;
}

/* ------------------------------------------------------------ reader -- */

/* Wakes every worker (Redis failed, the child stops). Under mu. */
static void wake_all(sse_child_t *c)
{
    int i;

    for (i = 0; i < c->nkeys; i++) {
        c->keys[i].gen++;
        apr_thread_cond_broadcast(c->keys[i].cond);
    }
    apr_thread_cond_broadcast(c->idle);
}

static void set_down(sse_child_t *c, int down, const char *err)
{
    apr_thread_mutex_lock(c->mu);
    if (down && !c->down) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, c->s, BFFLOGNO(803)
                     "event streams: cannot read Redis (%s): streams of this "
                     "child end, new ones are refused until it answers", err);
    }
    else if (!down && c->down) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, c->s, BFFLOGNO(804)
                     "event streams: reading Redis again");
    }
    c->down = down;
    if (down) {
        wake_all(c);
    }
    apr_thread_mutex_unlock(c->mu);
}

/* The XREAD BLOCK over every watched key; NULL under mu when none. */
static bff_redis_cmd_t *read_cmd(sse_child_t *c, apr_pool_t *p)
{
    bff_redis_cmd_t *cmd;
    int i, n = 0, k = 0;

    for (i = 0; i < c->nkeys; i++) {
        n += c->keys[i].refs > 0;
    }
    if (!n) {
        return NULL;
    }
    cmd = apr_pcalloc(p, sizeof(*cmd));
    cmd->argc = 6 + 2 * n;
    cmd->argv = apr_pcalloc(p, sizeof(char *) * (apr_size_t)cmd->argc);
    cmd->argv[k++] = "XREAD";
    cmd->argv[k++] = "COUNT";
    cmd->argv[k++] = apr_itoa(p, READ_COUNT);
    cmd->argv[k++] = "BLOCK";
    cmd->argv[k++] = apr_itoa(p, BLOCK_MS);
    cmd->argv[k++] = "STREAMS";
    for (i = 0; i < c->nkeys; i++) {
        if (c->keys[i].refs) {
            cmd->argv[k] = apr_pstrdup(p, c->keys[i].key);
            cmd->argv[k + n] = apr_pstrdup(p, c->keys[i].id);
            k++;
        }
    }
    return cmd;
}

/* XREAD's reply: [[key, [[id, fields], ...]], ...]; wakes each key's
 * workers and moves the reader past what it saw. */
static void notify(sse_child_t *c, const redisReply *rep)
{
    size_t i;
    int j;

    if (rep->type != REDIS_REPLY_ARRAY) {
        return;                  /* nil: the block timed out, or unblocked */
    }
    apr_thread_mutex_lock(c->mu);
    for (i = 0; i < rep->elements; i++) {
        const redisReply *ks = rep->element[i], *ents, *last;

        if (ks->type != REDIS_REPLY_ARRAY || ks->elements != 2
            || ks->element[0]->type != REDIS_REPLY_STRING
            || (ents = ks->element[1])->type != REDIS_REPLY_ARRAY
            || !ents->elements) {
            continue;
        }
        last = ents->element[ents->elements - 1];
        if (last->type != REDIS_REPLY_ARRAY || !last->elements
            || last->element[0]->type != REDIS_REPLY_STRING
            || last->element[0]->len >= ID_MAX) {
            continue;
        }
        for (j = 0; j < c->nkeys; j++) {
            wkey_t *w = &c->keys[j];
            if (w->refs && !strcmp(w->key, ks->element[0]->str)) {
                apr_cpystrn(w->id, last->element[0]->str, sizeof(w->id));
                w->gen++;
                apr_thread_cond_broadcast(w->cond);
            }
        }
    }
    apr_thread_mutex_unlock(c->mu);
}

/* One connection: CLIENT ID, then XREAD BLOCK until it fails or the child
 * stops (NULL). *calls counts the calls that succeeded; -1 when Redis
 * answered XREAD with an error. */
static const char *read_loop(sse_child_t *c, int *calls, apr_pool_t *p)
{
    bff_redis_conn_t *conn;
    bff_redis_cmd_t idcmd = bff_redis_cmd(p, 2, "CLIENT", "ID");
    redisReply *rep;
    const char *err;
    apr_pool_t *it;

    if ((err = bff_redis_conn_open(&conn, c->redis, p))) {
        return err;
    }
    if ((err = bff_redis_conn_call(&rep, conn, &idcmd, 0, p))) {
        bff_redis_conn_close(conn);
        return err;
    }
    if (rep->type != REDIS_REPLY_INTEGER) {
        bff_redis_conn_close(conn);
        return "CLIENT ID refused";
    }
    apr_pool_create(&it, p);
    apr_thread_mutex_lock(c->mu);
    c->client_id = rep->integer;
    apr_thread_mutex_unlock(c->mu);
    set_down(c, 0, NULL);
    ++*calls;
    for (;;) {
        bff_redis_cmd_t *cmd = NULL;

        apr_pool_clear(it);
        apr_thread_mutex_lock(c->mu);
        while (!c->stopping && !(cmd = read_cmd(c, it))) {
            apr_thread_cond_wait(c->idle, c->mu);
        }
        if (c->stopping) {
            apr_thread_mutex_unlock(c->mu);
            bff_redis_conn_close(conn);
            return NULL;
        }
        c->call_version = c->version;
        c->in_call = 1;
        apr_thread_mutex_unlock(c->mu);
        err = bff_redis_conn_call(&rep, conn, cmd, BLOCK_MS, it);
        apr_thread_mutex_lock(c->mu);
        c->in_call = 0;
        apr_thread_mutex_unlock(c->mu);
        if (err) {
            bff_redis_conn_close(conn);
            return err;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            err = apr_pstrcat(p, "XREAD: ", rep->str, NULL);
            bff_redis_conn_close(conn);
            *calls = -1;             /* Redis answers, and refuses */
            return err;
        }
        notify(c, rep);
        ++*calls;
    }
}

static void *APR_THREAD_FUNC reader_thread(apr_thread_t *t, void *data)
{
    sse_child_t *c = data;
    apr_pool_t *p;
    long pause_ms = 100;
    int again = 0;

    apr_pool_create(&p, NULL);
    for (;;) {
        int stop, calls = 0;
        const char *err;

        apr_pool_clear(p);
        if (!(err = read_loop(c, &calls, p))) {
            break;
        }
        if (calls > 1 || (calls == 1 && !again)) {
            /* a connection that worked failed (Redis restarted, an idle
             * connection dropped): a fresh one at once, the keys' ids
             * kept, so no stream ends and no entry is missed; once in a
             * row unless an XREAD succeeded since */
            again = calls == 1;
            pause_ms = 100;
            continue;
        }
        again = 0;
        set_down(c, 1, err);
        /* a pause before the next try, cut short by the child's exit */
        apr_thread_mutex_lock(c->mu);
        if (!c->stopping) {
            apr_thread_cond_timedwait(c->idle, c->mu,
                                      apr_time_from_msec(pause_ms));
        }
        stop = c->stopping;
        apr_thread_mutex_unlock(c->mu);
        if (stop) {
            break;
        }
        pause_ms = pause_ms * 2 > 2000 ? 2000 : pause_ms * 2;
    }
    apr_pool_destroy(p);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* Interrupts the reader's XREAD so it watches a new key (of the set
 * version) at once. */
static void unblock(sse_child_t *c, apr_uint32_t version, apr_pool_t *p)
{
    int tries;

    for (tries = 0; tries < 50; tries++) {
        redisReply *rep;
        bff_redis_cmd_t cmd;
        long long id;
        int done;

        apr_thread_mutex_lock(c->mu);
        /* at the child's exit (version: the most) the reader is
         * interrupted too, so it is joined at once */
        done = !c->in_call || c->call_version >= version || c->down;
        id = c->client_id;
        apr_thread_mutex_unlock(c->mu);
        if (done) {
            return;
        }
        cmd = bff_redis_cmd(p, 3, "CLIENT", "UNBLOCK",
                            apr_psprintf(p, "%lld", id));
        if (bff_redis_exec(&rep, c->redis, &cmd, 1, p)
            || (rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
            || rep->type == REDIS_REPLY_ERROR) {
            return;
        }
        /* not blocked yet: the XREAD is still on its way */
        apr_sleep(apr_time_from_msec(2));
    }
}

/* Child exit (and a graceful restart's end of the old generation): every
 * worker wakes and ends its stream, the reader stops. A pre-cleanup: it
 * runs before the child pool's subpools go away. */
static apr_status_t sse_stop(void *data)
{
    sse_child_t *c = data;
    apr_status_t trv;
    apr_pool_t *p;

    apr_thread_mutex_lock(c->mu);
    c->stopping = 1;
    wake_all(c);
    apr_thread_mutex_unlock(c->mu);
    apr_pool_create(&p, NULL);
    unblock(c, APR_UINT32_MAX, p);
    apr_pool_destroy(p);
    /* child stays set: a worker still streaming sees c->stopping */
    apr_thread_join(&trv, c->thread);
    return APR_SUCCESS;
}

static void sse_child_init(apr_pool_t *pchild, server_rec *s)
{
    bff_redis_opts_t o;
    sse_child_t *c;
    const char *err;
    int threads = 0, i;
    apr_status_t rv;

    child = NULL;
    my_row = -1;
    if (!table) {
        return;
    }
    if ((my_row = bff_inflight_child_row(table, pchild)) < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(802)
                     "event streams: no free row for this process in the "
                     "shared table: its streams are refused");
        return;
    }
    c = apr_pcalloc(pchild, sizeof(*c));
    c->s = s;
    bff_redis_opts_default(&o);
    o.connect_timeout_ms = gconf->connect_ms;
    o.command_timeout_ms = gconf->timeout_ms;
    o.pool_max = gconf->pool;
    if ((err = bff_redis_create(&c->redis, gconf->url, &o, pchild))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(801)
                     "event streams disabled in this child: %s", err);
        return;
    }
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    c->nkeys = threads < 1 ? 1 : threads;    /* one key per worker at most */
    c->keys = apr_pcalloc(pchild, sizeof(wkey_t) * (apr_size_t)c->nkeys);
    rv = apr_thread_mutex_create(&c->mu, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (rv == APR_SUCCESS) {
        rv = apr_thread_cond_create(&c->idle, pchild);
    }
    for (i = 0; i < c->nkeys && rv == APR_SUCCESS; i++) {
        rv = apr_thread_cond_create(&c->keys[i].cond, pchild);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, BFFLOGNO(812)
                     "event streams disabled in this child: no mutex or "
                     "condition variable");
        return;
    }
    rv = apr_thread_create(&c->thread, NULL, reader_thread, c, pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, BFFLOGNO(813)
                     "event streams disabled in this child: cannot start "
                     "the reader thread");
        return;
    }
    apr_pool_pre_cleanup_register(pchild, c, sse_stop);
    child = c;
}

/* ----------------------------------------------------------- streams -- */

/* One client's stream. */
typedef struct {
    request_rec *r;
    const bff_sse_dir_t *d;
    const char *key;
    char cursor[ID_MAX];         /* the last id sent (or the start) */
    wkey_t *w;                   /* its slot while watching */
    int counted[2];              /* the shared counters it holds */
    apr_time_t exp;              /* 0: the token has no exp */
    long events;
} stream_t;

static apr_status_t stream_leave(void *data)
{
    stream_t *st = data;

    if (table && my_row >= 0) {
        bff_inflight_leave(table, my_row, st->counted, 2);
    }
    bff_metrics_sse(-1, 0);
    return APR_SUCCESS;
}

/* 503 with Retry-After: the answer to every refusal for capacity. */
static int refuse(request_rec *r, const char *detail)
{
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_ltoa(r->pool, (gconf->retry_after_ms + 999) / 1000));
    return bff_send_problem(r, HTTP_SERVICE_UNAVAILABLE,
                            "Service Unavailable", detail, NULL);
}

/* The identity of r: "notifications:" and the hash of its issuer (the
 * token's iss; "apikey" for an API key's consumer) and subject. */
static const char *identity_key(request_rec *r)
{
    const char *iss = bff_auth_claim(r, "iss");
    const char *kind = apr_table_get(r->notes, "bff-auth");

    if (!iss) {
        iss = kind && !strcmp(kind, "apikey") ? "apikey" : "";
    }
    return bff_sse_identity_key("", iss, r->user, r->pool);
}

/* Counts the stream against the server cap and its identity's: NULL, or
 * the detail of the 503 to answer. */
static const char *admit(stream_t *st, const char *ident)
{
    request_rec *r = st->r;
    apr_uint32_t caps[2];
    const char *refused;
    int over;

    st->counted[0] = 0;
    /* the hash's first 12 bits */
    st->counted[1] = 1 + (int)(strtoul(apr_pstrndup(r->pool,
                         ident + strlen("notifications:"), 3), NULL, 16)
                         % ID_BUCKETS);
    caps[0] = cap_total;
    caps[1] = (apr_uint32_t)per_identity_of(st->d);
    over = bff_inflight_enter(table, my_row, st->counted, caps, 2);
    if (over >= 0) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(805)
                      "event stream refused: %s (%u)",
                      over ? "streams per identity" : "streams of the server",
                      caps[over]);
        return over ? apr_psprintf(r->pool, "too many event streams for "
                                   "this identity (%u); retry later", caps[1])
                    : apr_psprintf(r->pool, "too many event streams (%u); "
                                   "retry later", caps[0]);
    }
    if ((refused = bff_overload_enter_stream(r))) {
        bff_inflight_leave(table, my_row, st->counted, 2);
        return refused;
    }
    bff_metrics_sse(1, 0);
    apr_pool_cleanup_register(r->pool, st, stream_leave,
                              apr_pool_cleanup_null);
    return NULL;
}

/* The newest id of the stream ("0-0" when empty): where a client without
 * Last-Event-ID starts. NULL on a Redis failure (logged). */
static const char *newest_id(stream_t *st)
{
    request_rec *r = st->r;
    bff_redis_cmd_t cmd = bff_redis_cmd(r->pool, 6, "XREVRANGE", st->key,
                                        "+", "-", "COUNT", "1");
    redisReply *rep;
    const char *err;

    if ((err = bff_redis_exec(&rep, child->redis, &cmd, 1, r->pool))
        || (rep->type != REDIS_REPLY_ARRAY
            && (err = bff_redis_reply_error(child->redis, "XREVRANGE", rep,
                                            r->pool)))) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(806)
                      "event stream refused: %s", err);
        return NULL;
    }
    if (!rep->elements) {
        return "0-0";
    }
    rep = rep->element[0];
    if (rep->type != REDIS_REPLY_ARRAY || !rep->elements
        || rep->element[0]->type != REDIS_REPLY_STRING
        || rep->element[0]->len >= ID_MAX) {
        return "0-0";
    }
    return apr_pstrdup(r->pool, rep->element[0]->str);
}

static apr_status_t unwatch(void *data);

/* Registers the stream's key with the reader; 0 when no slot is free. */
static int watch(stream_t *st)
{
    sse_child_t *c = child;
    wkey_t *free_slot = NULL;
    apr_uint32_t version;
    int i;

    apr_thread_mutex_lock(c->mu);
    for (i = 0; i < c->nkeys && !st->w; i++) {
        wkey_t *w = &c->keys[i];
        if (w->refs && !strcmp(w->key, st->key)) {
            st->w = w;
        }
        else if (!w->refs && !free_slot) {
            free_slot = w;
        }
    }
    if (!st->w) {
        if (!free_slot) {
            /* one slot per worker thread: never short but to a miscount */
            apr_thread_mutex_unlock(c->mu);
            return 0;
        }
        st->w = free_slot;
        apr_cpystrn(st->w->key, st->key, sizeof(st->w->key));
        apr_cpystrn(st->w->id, st->cursor, sizeof(st->w->id));
        c->version++;
        apr_thread_cond_signal(c->idle);
    }
    st->w->refs++;
    version = c->version;
    apr_thread_mutex_unlock(c->mu);
    apr_pool_cleanup_register(st->r->pool, st, unwatch,
                              apr_pool_cleanup_null);
    unblock(c, version, st->r->pool);
    return 1;
}

static apr_status_t unwatch(void *data)
{
    stream_t *st = data;
    sse_child_t *c = child;

    if (c && st->w) {
        apr_thread_mutex_lock(c->mu);
        if (!--st->w->refs) {
            c->version++;
        }
        apr_thread_mutex_unlock(c->mu);
    }
    st->w = NULL;
    return APR_SUCCESS;
}

/* Writes and flushes; 0 when the client is gone. */
static int put(request_rec *r, const char *buf, apr_size_t len)
{
    return !r->connection->aborted
           && ap_rwrite(buf, (int)len, r) == (int)len && ap_rflush(r) == 0;
}

/* Sends what the stream has after the cursor, READ_COUNT entries at a
 * time. 1: all sent, 0: the client is gone, -1: Redis failed (logged). */
static int deliver(stream_t *st, apr_pool_t *p)
{
    request_rec *r = st->r;

    for (;;) {
        bff_redis_cmd_t cmd = bff_redis_cmd(p, 6, "XREAD", "COUNT",
                                            apr_itoa(p, READ_COUNT),
                                            "STREAMS", st->key, st->cursor);
        const redisReply *rep, *ents = NULL;
        redisReply *got;
        const char *err;
        size_t i;

        err = bff_redis_exec(&got, child->redis, &cmd, 1, p);
        rep = got;
        if (!err && rep->type == REDIS_REPLY_NIL) {
            return 1;
        }
        if (!err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1
                     || rep->element[0]->type != REDIS_REPLY_ARRAY
                     || rep->element[0]->elements != 2
                     || (ents = rep->element[0]->element[1])->type
                        != REDIS_REPLY_ARRAY)) {
            err = bff_redis_reply_error(child->redis, "XREAD", rep, p);
        }
        if (err) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(807)
                          "event stream ended: %s", err);
            return -1;
        }
        for (i = 0; i < ents->elements; i++) {
            const redisReply *e = ents->element[i], *kv;
            bff_sse_field_t *f;
            const char *text, *why;
            apr_size_t len, k, n;
            apr_uint64_t ms, seq;

            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
                || e->element[0]->type != REDIS_REPLY_STRING
                || !bff_sse_id_parse(&ms, &seq, e->element[0]->str)
                || e->element[0]->len >= ID_MAX
                || (kv = e->element[1])->type != REDIS_REPLY_ARRAY) {
                continue;
            }
            n = kv->elements / 2;
            f = apr_pcalloc(p, sizeof(*f) * (n ? n : 1));
            for (k = 0; k < n; k++) {
                f[k].name = kv->element[2 * k]->str;
                f[k].nlen = kv->element[2 * k]->len;
                f[k].value = kv->element[2 * k + 1]->str;
                f[k].vlen = kv->element[2 * k + 1]->len;
            }
            text = bff_sse_frame(&len, &why, e->element[0]->str, f, (int)n,
                                 p);
            if (why) {
                ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(809)
                              "event stream: entry %s sent as its id only: "
                              "%s", e->element[0]->str, why);
            }
            if (!put(r, text, len)) {
                return 0;
            }
            apr_cpystrn(st->cursor, e->element[0]->str, sizeof(st->cursor));
            st->events++;
            bff_metrics_sse(0, 1);
        }
        if (ents->elements < READ_COUNT) {
            return 1;
        }
        apr_pool_clear(p);
    }
}

static int stopping(void)
{
    int state = 0;

    return (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS
            && state == AP_MPMQ_STOPPING) || child->stopping;
}

/* 1 when the client closed its end: a stream's client sends nothing
 * after its request, so a readable socket with nothing to read is EOF.
 * Through TLS the bytes seen are not the client's, and an HTTP/2 stream
 * (a secondary connection) has no socket of its own: a gone client is
 * then noticed by the next write, at the latest a heartbeat. */
static int client_gone(request_rec *r)
{
    apr_socket_t *sock;
    apr_os_sock_t fd;
    ssize_t n;
    char c;

    if (r->connection->aborted) {
        return 1;
    }
    if (r->connection->master
        || !(sock = ap_get_conn_socket(r->connection))
        || apr_os_sock_get(&fd, sock) != APR_SUCCESS) {
        return 0;
    }
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

typedef enum {
    W_NEWS, W_HEARTBEAT, W_EXPIRED, W_STOPPING, W_DOWN, W_GONE
} wake_e;

/* Waits until the stream's key has news (gen moved past seen) or
 * something else ends the wait, checking every TICK_MS. */
static wake_e wait_news(stream_t *st, apr_uint64_t seen, apr_time_t next_hb)
{
    for (;;) {
        apr_time_t now;
        int news, down;

        apr_thread_mutex_lock(child->mu);
        if (st->w->gen == seen && !child->down && !child->stopping) {
            apr_thread_cond_timedwait(st->w->cond, child->mu,
                                      apr_time_from_msec(TICK_MS));
        }
        news = st->w->gen != seen;
        down = child->down;
        apr_thread_mutex_unlock(child->mu);
        now = apr_time_now();
        if (down) {
            return W_DOWN;
        }
        if (stopping()) {
            return W_STOPPING;
        }
        if (st->exp && now >= st->exp) {
            return W_EXPIRED;
        }
        if (news) {
            return W_NEWS;
        }
        if (now >= next_hb) {
            return W_HEARTBEAT;
        }
        if (client_gone(st->r)) {
            return W_GONE;
        }
    }
}

/* Streams until the client goes, the token expires, the child stops or
 * Redis fails. */
static void run(stream_t *st)
{
    static const char *const why_of[] = {
        NULL, NULL, "token expired", "server stopping", "Redis failed",
        "client gone"
    };
    request_rec *r = st->r;
    long hb = heartbeat_of(st->d);
    apr_time_t next_hb = apr_time_now() + apr_time_from_msec(hb);
    apr_pool_t *p;
    const char *why = NULL;

    apr_pool_create(&p, r->pool);
    while (!why) {
        apr_uint64_t seen;
        wake_e w;
        int rc;

        apr_thread_mutex_lock(child->mu);
        seen = st->w->gen;
        apr_thread_mutex_unlock(child->mu);
        apr_pool_clear(p);
        if ((rc = deliver(st, p)) <= 0) {
            why = rc ? "Redis failed" : "client gone";
            break;
        }
        w = wait_news(st, seen, next_hb);
        why = why_of[w];
        if (w == W_HEARTBEAT) {
            if (!put(r, BFF_SSE_HEARTBEAT, sizeof(BFF_SSE_HEARTBEAT) - 1)) {
                why = "client gone";
            }
            next_hb = apr_time_now() + apr_time_from_msec(hb);
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(808)
                  "event stream ended (%s) after %ld events at %s", why,
                  st->events, st->cursor);
}

static int sse_handler(request_rec *r)
{
    bff_dir_conf_t *dc;
    stream_t *st;
    const char *last, *ident, *start, *exp, *refused;
    apr_uint64_t ms, seq;

    if (!r->handler || strcmp(r->handler, BFF_SSE_HANDLER)) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        apr_table_setn(r->headers_out, "Allow", "GET");
        return bff_send_problem(r, HTTP_METHOD_NOT_ALLOWED,
                                "Method Not Allowed",
                                "an event stream is read with GET", NULL);
    }
    dc = ap_get_module_config(r->per_dir_config, &bff_module);
    if (!gconf || !gconf->url || !r->user) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(811)
                      "SetHandler %s needs BFFEventStreamRedis (main server) "
                      "and authentication (AuthType bff-jwt or bff-apikey) "
                      "on the location", BFF_SSE_HANDLER);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    last = apr_table_get(r->headers_in, "Last-Event-ID");
    if (last && !bff_sse_id_parse(&ms, &seq, last)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(810)
                      "event stream: Last-Event-ID is not a stream id");
        return bff_send_problem(r, HTTP_BAD_REQUEST, "Bad Request",
                                "Last-Event-ID must be a stream id "
                                "(MS-SEQ) this stream sent", NULL);
    }
    if (!child || !table || my_row < 0 || child->down) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(814)
                      "event stream refused: %s", child && child->down
                      ? "Redis is not answering" : "not available in this "
                      "process");
        return refuse(r, "event streams are unavailable; retry later");
    }
    st = apr_pcalloc(r->pool, sizeof(*st));
    st->r = r;
    st->d = dc->sse;
    ident = identity_key(r);
    st->key = st->d->topic && *st->d->topic
              ? bff_sse_topic_key(gconf->prefix, st->d->topic, r->pool)
              : apr_pstrcat(r->pool, gconf->prefix, ident, NULL);
    if ((exp = bff_auth_claim(r, "exp")) && apr_isdigit(*exp)) {
        st->exp = apr_time_from_sec(apr_atoi64(exp));
    }
    if ((refused = admit(st, ident))) {
        return refuse(r, refused);
    }
    /* also with Last-Event-ID: a key that is no stream is refused here,
     * not in the reader's XREAD of every key */
    if (!(start = newest_id(st))) {
        return refuse(r, "event streams are unavailable; retry later");
    }
    apr_cpystrn(st->cursor, last ? last : start, sizeof(st->cursor));
    if (!watch(st)) {
        return refuse(r, "too many event streams in this process; retry "
                      "later");
    }

    /* events go out as they come: no compression buffering them */
    apr_table_setn(r->subprocess_env, "no-gzip", "1");
    ap_set_content_type(r, "text/event-stream; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    apr_table_setn(r->headers_out, "X-Accel-Buffering", "no");
    if (r->header_only) {
        return OK;
    }
    if (put(r, ": open\n\n", 8)) {
        run(st);
    }
    return OK;
}

void bff_sse_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(sse_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(sse_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(sse_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
