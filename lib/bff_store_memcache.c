/*
 * mod_bff cache store on memcached (text protocol), one or more servers.
 *
 * Why not apr_memcache's calls: apr-util 1.6 sets its sockets to block
 * forever after connecting (a server that accepts and never answers holds
 * the worker for good) and re-probes a dead server with a fixed 1 s
 * connect from inside requests. The protocol subset needed here is small,
 * so it is spoken over APR sockets with one deadline per operation.
 * apr_memcache's key hash and server choice are kept, so keys land where
 * mod_socache_memcache and other apr_memcache users expect them.
 *
 * Per server: an apr_reslist of connection holders (connect outside the
 * list's lock, as in the Redis store) and an up/down gate with backoff.
 * Tags are generation counters, see bff_cache.h.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_memcache.h>
#include <apr_network_io.h>
#include <apr_reslist.h>
#include <apr_strings.h>

#include "bff_cache.h"

#define LOCK_SUFFIX   ":lock"
#define LINE_MAX_LEN  2048
#define WRAP_MAGIC    "BFM1"
#define TAG_ID_LEN    32            /* hex digits after "<prefix>tag:" */
#define MC_KEY_MAX    250
#define MC_EXPTIME_MAX (30 * 24 * 3600)

typedef struct {
    apr_pool_t *pool;       /* unmanaged: socket and address, per connect */
    apr_socket_t *sock;     /* NULL: not connected */
    apr_uint32_t gen;
    unsigned long uses;
    char *buf;              /* read buffer (malloc: it grows and shrinks) */
    apr_size_t cap, pos, len;
    apr_size_t op_bytes;    /* received during the current operation */
    int eof;                /* the peer closed or reset */
} mconn_t;

typedef struct mstore_t mstore_t;

typedef struct {
    const char *host;
    int port;
    const char *desc;       /* "memcached host:port" */
    apr_reslist_t *conns;
    bff_store_gate_t *gate;
    mstore_t *store;
} mserver_t;

struct mstore_t {
    bff_store_opts_t o;
    int n;
    mserver_t *servers;
};

/* An exchange on a connection. Returns NULL or an error; *soft tells
 * whose fault an error is: 0 the connection's (the server is marked
 * down), SOFT_KEEP an error reply (the connection stays in step),
 * SOFT_DROP our refusal (too large: the connection is dropped, the server
 * is fine). */
#define SOFT_KEEP 1
#define SOFT_DROP 2

typedef const char *mop_fn(mconn_t *c, void *baton, apr_time_t deadline,
                           int *soft, apr_pool_t *p);

/* ---------------------------------------------------------------- I/O -- */

static apr_interval_time_t remaining(apr_time_t deadline)
{
    apr_time_t now = apr_time_now();

    return deadline > now ? deadline - now : 0;
}

static void conn_close(mconn_t *c)
{
    if (c->pool) {
        apr_pool_destroy(c->pool);      /* closes the socket */
        c->pool = NULL;
    }
    c->sock = NULL;
    free(c->buf);
    c->buf = NULL;
    c->cap = c->pos = c->len = 0;
}

static const char *conn_open(mconn_t *c, mserver_t *srv, apr_pool_t *p)
{
    apr_time_t deadline = apr_time_now() + apr_time_from_msec(
                              srv->store->o.connect_timeout_ms);
    apr_sockaddr_t *sa;
    apr_status_t rv;
    char ebuf[128];

    if ((rv = apr_pool_create_unmanaged_ex(&c->pool, NULL, NULL))
        != APR_SUCCESS) {
        return "out of memory";
    }
    rv = apr_sockaddr_info_get(&sa, srv->host, APR_UNSPEC,
                               (apr_port_t)srv->port, 0, c->pool);
    /* every address of the name ("localhost" may give ::1 first), all
     * within one connect timeout */
    for (; rv == APR_SUCCESS && sa; sa = sa->next) {
        apr_interval_time_t left = remaining(deadline);
        if (!left) {
            rv = APR_TIMEUP;
            break;
        }
        if ((rv = apr_socket_create(&c->sock, sa->family, SOCK_STREAM,
                                    APR_PROTO_TCP, c->pool)) != APR_SUCCESS) {
            continue;
        }
        apr_socket_opt_set(c->sock, APR_TCP_NODELAY, 1);
        apr_socket_opt_set(c->sock, APR_SO_KEEPALIVE, 1);
        apr_socket_timeout_set(c->sock, left);
        if ((rv = apr_socket_connect(c->sock, sa)) == APR_SUCCESS) {
            break;
        }
        apr_socket_close(c->sock);
        c->sock = NULL;
    }
    if (rv != APR_SUCCESS) {
        conn_close(c);
        return apr_psprintf(p, "connect to %s: %s", srv->desc,
                            APR_STATUS_IS_TIMEUP(rv) ? "timeout"
                            : apr_strerror(rv, ebuf, sizeof(ebuf)));
    }
    c->cap = 16384;
    if (!(c->buf = malloc(c->cap))) {
        conn_close(c);
        return "out of memory";
    }
    c->pos = c->len = 0;
    c->uses = 0;
    return NULL;
}

static const char *conn_send(mconn_t *c, struct iovec *vec, int nvec,
                             apr_time_t deadline, apr_pool_t *p)
{
    char ebuf[128];

    while (nvec > 0) {
        apr_size_t written = 0;
        apr_interval_time_t left = remaining(deadline);
        apr_status_t rv;

        if (vec->iov_len == 0) {
            vec++;
            nvec--;
            continue;
        }
        if (!left) {
            return "timeout sending the command";
        }
        apr_socket_timeout_set(c->sock, left);
        rv = apr_socket_sendv(c->sock, vec, nvec, &written);
        while (written && nvec) {
            if (written >= vec->iov_len) {
                written -= vec->iov_len;
                vec++;
                nvec--;
            }
            else {
                vec->iov_base = (char *)vec->iov_base + written;
                vec->iov_len -= written;
                written = 0;
            }
        }
        if (rv != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(rv)
            && !APR_STATUS_IS_EAGAIN(rv)) {
            c->eof = 1;
            return apr_psprintf(p, "send: %s",
                                apr_strerror(rv, ebuf, sizeof(ebuf)));
        }
    }
    return NULL;
}

/* Reads more bytes; the buffer grows up to limit. */
static const char *conn_fill(mconn_t *c, apr_size_t limit,
                             apr_time_t deadline, apr_pool_t *p)
{
    apr_size_t n;
    apr_status_t rv;
    char ebuf[128];

    if (c->pos == c->len) {
        c->pos = c->len = 0;
    }
    if (c->len == c->cap) {
        if (c->pos > 0) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        else {
            apr_size_t ncap = c->cap * 2 < limit ? c->cap * 2 : limit;
            char *nb;
            if (c->cap >= limit) {
                return "reply too large";
            }
            if (!(nb = realloc(c->buf, ncap))) {
                return "out of memory";
            }
            c->buf = nb;
            c->cap = ncap;
        }
    }
    for (;;) {
        apr_interval_time_t left = remaining(deadline);
        if (!left) {
            return "timeout waiting for the reply";
        }
        apr_socket_timeout_set(c->sock, left);
        n = c->cap - c->len;
        rv = apr_socket_recv(c->sock, c->buf + c->len, &n);
        if (n > 0) {
            c->len += n;
            c->op_bytes += n;
            return NULL;
        }
        if (APR_STATUS_IS_TIMEUP(rv) || APR_STATUS_IS_EAGAIN(rv)) {
            continue;
        }
        c->eof = 1;
        return rv == APR_EOF ? "connection closed by the server"
               : apr_psprintf(p, "recv: %s",
                              apr_strerror(rv, ebuf, sizeof(ebuf)));
    }
}

/* One reply line without its CRLF, copied to p. */
static const char *conn_line(const char **line, mconn_t *c,
                             apr_time_t deadline, apr_pool_t *p)
{
    const char *err;

    for (;;) {
        char *nl = c->len > c->pos
                   ? memchr(c->buf + c->pos, '\n', c->len - c->pos) : NULL;
        if (nl) {
            apr_size_t n = (apr_size_t)(nl - (c->buf + c->pos));
            if (n == 0 || nl[-1] != '\r') {
                return "bad reply line";
            }
            *line = apr_pstrmemdup(p, c->buf + c->pos, n - 1);
            c->pos += n + 1;
            return NULL;
        }
        if (c->len - c->pos > LINE_MAX_LEN) {
            return "reply line too long";
        }
        if ((err = conn_fill(c, c->pos + LINE_MAX_LEN + 2, deadline, p))) {
            return err;
        }
    }
}

/* n data bytes and their CRLF, copied to p. */
static const char *conn_block(const char **data, mconn_t *c, apr_size_t n,
                              apr_size_t limit, apr_time_t deadline,
                              apr_pool_t *p)
{
    const char *err;

    while (c->len - c->pos < n + 2) {
        if ((err = conn_fill(c, limit, deadline, p))) {
            return err;
        }
    }
    if (c->buf[c->pos + n] != '\r' || c->buf[c->pos + n + 1] != '\n') {
        return "bad data block";
    }
    *data = apr_pmemdup(p, c->buf + c->pos, n ? n : 1);
    c->pos += n + 2;
    return NULL;
}

static int starts(const char *line, const char *word)
{
    apr_size_t n = strlen(word);

    return !strncmp(line, word, n) && (line[n] == '\0' || line[n] == ' ');
}

/* SERVER_ERROR leaves the connection in step (memcached swallowed the
 * data); after ERROR or CLIENT_ERROR it may not be, so it is dropped.
 * Either way the server works. */
static const char *error_reply(const char *line, int *soft, apr_pool_t *p)
{
    *soft = starts(line, "SERVER_ERROR") ? SOFT_KEEP : SOFT_DROP;
    return apr_psprintf(p, "server replied: %.200s", line);
}

/* ---------------------------------------------------------- operations -- */

typedef struct {
    const char **keys;
    int nkeys;
    apr_size_t max;         /* largest value accepted */
    apr_hash_t *values;     /* out: key -> mvalue_t * */
} mget_t;

typedef struct {
    const char *data;
    apr_size_t len;
} mvalue_t;

static const char *op_get(mconn_t *c, void *baton, apr_time_t deadline,
                          int *soft, apr_pool_t *p)
{
    mget_t *g = baton;
    struct iovec *vec = apr_palloc(p, sizeof(*vec)
                                      * (apr_size_t)(2 * g->nkeys + 2));
    const char *err, *line;
    int i, nv = 0;

    vec[nv].iov_base = "get";
    vec[nv++].iov_len = 3;
    for (i = 0; i < g->nkeys; i++) {
        vec[nv].iov_base = " ";
        vec[nv++].iov_len = 1;
        vec[nv].iov_base = (void *)g->keys[i];
        vec[nv++].iov_len = strlen(g->keys[i]);
    }
    vec[nv].iov_base = "\r\n";
    vec[nv++].iov_len = 2;
    if ((err = conn_send(c, vec, nv, deadline, p))) {
        return err;
    }
    g->values = apr_hash_make(p);
    for (;;) {
        char key[MC_KEY_MAX + 1];
        unsigned long flags;
        apr_uint64_t bytes;
        mvalue_t *v;

        if ((err = conn_line(&line, c, deadline, p))) {
            return err;
        }
        if (!strcmp(line, "END")) {
            return NULL;
        }
        if (!starts(line, "VALUE")) {
            return error_reply(line, soft, p);
        }
        if (sscanf(line, "VALUE %250s %lu %" APR_UINT64_T_FMT, key, &flags,
                   &bytes) != 3) {
            return "bad VALUE line";
        }
        if (bytes > g->max) {
            /* refused before reading it: bounded memory */
            *soft = SOFT_DROP;
            return apr_psprintf(p, "value of %" APR_UINT64_T_FMT " bytes "
                                "over the limit", bytes);
        }
        v = apr_palloc(p, sizeof(*v));
        v->len = (apr_size_t)bytes;
        if ((err = conn_block(&v->data, c, v->len, v->len + LINE_MAX_LEN + 2,
                              deadline, p))) {
            return err;
        }
        apr_hash_set(g->values, apr_pstrdup(p, key), APR_HASH_KEY_STRING, v);
    }
}

typedef struct {
    const char *verb;       /* "set", "add" */
    const char *key;
    const char *data;
    apr_size_t len;
    long exptime;
    int stored;             /* out: 1 STORED, 0 NOT_STORED */
} mstore_op_t;

static const char *op_store(mconn_t *c, void *baton, apr_time_t deadline,
                            int *soft, apr_pool_t *p)
{
    mstore_op_t *o = baton;
    struct iovec vec[3];
    const char *err, *line;

    vec[0].iov_base = apr_psprintf(p, "%s %s 0 %ld %" APR_SIZE_T_FMT "\r\n",
                                   o->verb, o->key, o->exptime, o->len);
    vec[0].iov_len = strlen(vec[0].iov_base);
    vec[1].iov_base = (void *)o->data;
    vec[1].iov_len = o->len;
    vec[2].iov_base = "\r\n";
    vec[2].iov_len = 2;
    if ((err = conn_send(c, vec, 3, deadline, p))
        || (err = conn_line(&line, c, deadline, p))) {
        return err;
    }
    if (!strcmp(line, "STORED")) {
        o->stored = 1;
        return NULL;
    }
    if (!strcmp(line, "NOT_STORED")) {
        o->stored = 0;
        return NULL;
    }
    return error_reply(line, soft, p);
}

typedef struct {
    const char *line;       /* the command, CRLF included */
    const char *reply;      /* out: the reply line */
} mline_op_t;

/* delete / incr: one line out, one line back. */
static const char *op_line(mconn_t *c, void *baton, apr_time_t deadline,
                           int *soft, apr_pool_t *p)
{
    mline_op_t *o = baton;
    struct iovec vec[1];
    const char *err;

    vec[0].iov_base = (void *)o->line;
    vec[0].iov_len = strlen(o->line);
    if ((err = conn_send(c, vec, 1, deadline, p))
        || (err = conn_line(&o->reply, c, deadline, p))) {
        return err;
    }
    if (starts(o->reply, "ERROR") || starts(o->reply, "CLIENT_ERROR")
        || starts(o->reply, "SERVER_ERROR")) {
        return error_reply(o->reply, soft, p);
    }
    return NULL;
}

/* ----------------------------------------------------------- the pool -- */

static apr_status_t mconn_make(void **res, void *params, apr_pool_t *p)
{
    (void)params;
    (void)p;
    *res = calloc(1, sizeof(mconn_t));
    return *res ? APR_SUCCESS : APR_ENOMEM;
}

static apr_status_t mconn_free(void *res, void *params, apr_pool_t *p)
{
    (void)params;
    (void)p;
    conn_close(res);
    free(res);
    return APR_SUCCESS;
}

/* Runs fn on a pooled connection to srv, whose gate the caller entered. */
static bff_store_rc_e ms_exec(mserver_t *srv, mop_fn *fn, void *baton,
                              apr_pool_t *p)
{
    const bff_store_opts_t *o = &srv->store->o;
    mconn_t *c;
    const char *err;
    void *res;
    int attempt, soft;

    if (apr_reslist_acquire(srv->conns, &res) != APR_SUCCESS) {
        bff_store_gate_note_error(srv->gate, apr_time_now(), apr_psprintf(p,
            "%s: no free connection within %ldms (pool of %d)", srv->desc,
            o->command_timeout_ms, o->pool_max));
        return BFF_STORE_ERROR;
    }
    c = res;
    for (attempt = 0;; attempt++) {
        if (c->sock && c->gen != bff_store_gate_generation(srv->gate)) {
            conn_close(c);
        }
        if (!c->sock) {
            apr_uint32_t gen = bff_store_gate_generation(srv->gate);
            if ((err = conn_open(c, srv, p))) {
                bff_store_gate_count(srv->gate, 0, 1);
                break;
            }
            bff_store_gate_count(srv->gate, 1, 0);
            bff_store_gate_ok(srv->gate, apr_time_now());
            c->gen = gen;
        }
        c->op_bytes = 0;
        c->eof = 0;
        soft = 0;
        err = fn(c, baton, apr_time_now()
                           + apr_time_from_msec(o->command_timeout_ms),
                 &soft, p);
        if (!err || soft == SOFT_KEEP) {
            c->uses++;
            /* a big value should not pin its buffer for the pool's life */
            if (c->cap > 65536 && c->pos == c->len) {
                char *nb = realloc(c->buf, 16384);
                if (nb) {
                    c->buf = nb;
                    c->cap = 16384;
                    c->pos = c->len = 0;
                }
            }
            apr_reslist_release(srv->conns, c);
            if (err) {
                bff_store_gate_note_error(srv->gate, apr_time_now(),
                                          apr_psprintf(p, "%s: %s",
                                                       srv->desc, err));
                return BFF_STORE_ERROR;
            }
            return BFF_STORE_OK;
        }
        err = apr_psprintf(p, "%s: %s", srv->desc, err);
        if (soft == SOFT_DROP) {
            bff_store_gate_note_error(srv->gate, apr_time_now(), err);
            apr_reslist_invalidate(srv->conns, c);
            return BFF_STORE_ERROR;
        }
        {
            int stale = c->eof && c->op_bytes == 0 && c->uses > 0;
            conn_close(c);
            /* one retry when an idle pooled connection turned out closed */
            if (!(attempt == 0 && stale)) {
                break;
            }
        }
    }
    bff_store_gate_fail(srv->gate, apr_time_now(), err);
    apr_reslist_invalidate(srv->conns, c);
    return BFF_STORE_ERROR;
}

/* ------------------------------------------------------- server choice -- */

static int key_valid(const char *key)
{
    apr_size_t n;

    for (n = 0; key[n]; n++) {
        if (n >= MC_KEY_MAX || (unsigned char)key[n] <= 0x20
            || (unsigned char)key[n] == 0x7f) {
            return 0;
        }
    }
    return n > 0;
}

/* apr_memcache's choice: its default hash modulo the server count, then
 * the next servers in turn when failover is allowed. NULL: none usable
 * (their gates refused: fail fast). */
static int home(const mstore_t *s, const char *key)
{
    apr_uint32_t h = apr_memcache_hash_default(NULL, key, strlen(key));

    return (int)((h ? h : 1) % (apr_uint32_t)s->n);
}

static mserver_t *pick(mstore_t *s, const char *key, int failover)
{
    apr_time_t now = apr_time_now();
    int i, h = home(s, key);

    for (i = 0; i < s->n; i++) {
        mserver_t *srv = &s->servers[(h + i) % s->n];
        if (bff_store_gate_enter(srv->gate, now)) {
            return srv;
        }
        if (!failover) {
            break;
        }
    }
    return NULL;
}

static long exptime(long ttl_ms)
{
    long s = (ttl_ms + 999) / 1000;

    return s < 1 ? 1 : s > MC_EXPTIME_MAX ? MC_EXPTIME_MAX : s;
}

static bff_store_rc_e bad_key(mstore_t *s, const char *key, apr_pool_t *p)
{
    bff_store_gate_note_error(s->servers[0].gate, apr_time_now(),
                              apr_psprintf(p, "invalid memcached key '%.64s'",
                                           key));
    return BFF_STORE_ERROR;
}

/* Fetches keys that all live on srv; values in *out (key -> mvalue_t). */
static bff_store_rc_e mget_on(apr_hash_t **out, mserver_t *srv,
                              const char **keys, int n, apr_pool_t *p)
{
    mget_t g;
    bff_store_rc_e rc;

    g.keys = keys;
    g.nkeys = n;
    g.max = srv->store->o.max_value + 5
            + BFF_CACHE_MAX_TAGS * (TAG_ID_LEN + 8);
    g.values = NULL;
    if ((rc = ms_exec(srv, op_get, &g, p)) == BFF_STORE_OK) {
        *out = g.values;
    }
    return rc;
}

static bff_store_rc_e mget1(mvalue_t **v, mstore_t *s, const char *key,
                            int failover, apr_pool_t *p)
{
    mserver_t *srv;
    apr_hash_t *h;
    bff_store_rc_e rc;

    if (!key_valid(key)) {
        return bad_key(s, key, p);
    }
    if (!(srv = pick(s, key, failover))) {
        return BFF_STORE_ERROR;
    }
    if ((rc = mget_on(&h, srv, &key, 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    *v = apr_hash_get(h, key, APR_HASH_KEY_STRING);
    return *v ? BFF_STORE_OK : BFF_STORE_MISS;
}

static bff_store_rc_e mstore_cmd(int *stored, mstore_t *s, const char *verb,
                                 const char *key, const char *data,
                                 apr_size_t len, long exp, int failover,
                                 apr_pool_t *p)
{
    mstore_op_t o;
    mserver_t *srv;
    bff_store_rc_e rc;

    if (!key_valid(key)) {
        return bad_key(s, key, p);
    }
    if (!(srv = pick(s, key, failover))) {
        return BFF_STORE_ERROR;
    }
    o.verb = verb;
    o.key = key;
    o.data = data;
    o.len = len;
    o.exptime = exp;
    o.stored = 0;
    if ((rc = ms_exec(srv, op_store, &o, p)) == BFF_STORE_OK) {
        *stored = o.stored;
    }
    return rc;
}

static bff_store_rc_e mline(const char **reply, mstore_t *s, const char *key,
                            const char *line, int failover, apr_pool_t *p)
{
    mline_op_t o;
    mserver_t *srv;
    bff_store_rc_e rc;

    if (!key_valid(key)) {
        return bad_key(s, key, p);
    }
    if (!(srv = pick(s, key, failover))) {
        return BFF_STORE_ERROR;
    }
    o.line = line;
    o.reply = NULL;
    if ((rc = ms_exec(srv, op_line, &o, p)) == BFF_STORE_OK) {
        *reply = o.reply;
    }
    return rc;
}

/* --------------------------------------------------------------- tags -- */

/* The value memcached holds: "BFM1" | ntags u8 | (tag id, 32 hex digits |
 * generation u64 big-endian) * ntags | the caller's bytes. */
typedef struct {
    const char *ckey;       /* counter key */
    apr_uint64_t gen;
} mtag_t;

static apr_uint64_t parse_u64(const char *s, apr_size_t n, int *ok)
{
    apr_uint64_t v = 0;
    apr_size_t i;

    *ok = n > 0 && n <= 20;
    for (i = 0; i < n && *ok; i++) {
        if (!apr_isdigit(s[i]) || v > (APR_UINT64_MAX - 9) / 10) {
            *ok = 0;
        }
        v = v * 10 + (apr_uint64_t)(s[i] - '0');
    }
    return v;
}

/* Reads the current generations of tags' counters, from their home
 * servers (no failover: a counter must have one place), one multi-get per
 * server. create: make missing counters, starting at the current time in
 * microseconds, so a counter lost and made again never repeats a value
 * that entries recorded. Without create a missing counter has gen 0,
 * which no entry records. */
static bff_store_rc_e tag_gens(mstore_t *s, mtag_t *t, int n, int create,
                               apr_pool_t *p)
{
    int *done = apr_pcalloc(p, sizeof(int) * (apr_size_t)n), i, j;
    const char **keys = apr_palloc(p, sizeof(*keys) * (apr_size_t)n);

    for (i = 0; i < n; i++) {
        t[i].gen = 0;
    }
    for (i = 0; i < n; i++) {
        mserver_t *srv;
        apr_hash_t *h;
        int nk = 0, hi = home(s, t[i].ckey);
        bff_store_rc_e rc;

        if (done[i]) {
            continue;
        }
        if (!(srv = pick(s, t[i].ckey, 0))) {
            return BFF_STORE_ERROR;
        }
        for (j = i; j < n; j++) {
            if (!done[j] && home(s, t[j].ckey) == hi) {
                keys[nk++] = t[j].ckey;
                done[j] = 1;
            }
        }
        if ((rc = mget_on(&h, srv, keys, nk, p)) != BFF_STORE_OK) {
            return rc;
        }
        for (j = i; j < n; j++) {
            mvalue_t *v = apr_hash_get(h, t[j].ckey, APR_HASH_KEY_STRING);
            int ok;
            if (v) {
                t[j].gen = parse_u64(v->data, v->len, &ok);
                if (!ok) {
                    t[j].gen = 0;
                }
            }
        }
    }
    for (i = 0; create && i < n; i++) {
        int tries;
        for (tries = 0; !t[i].gen; tries++) {
            const char *now = apr_psprintf(p, "%" APR_UINT64_T_FMT,
                                           (apr_uint64_t)apr_time_now());
            bff_store_rc_e rc;
            mvalue_t *v;
            int stored = 0, ok;

            if (tries == 3) {
                return BFF_STORE_ERROR;     /* evicted as fast as made */
            }
            if ((rc = mstore_cmd(&stored, s, "add", t[i].ckey, now,
                                 strlen(now), 0, 0, p)) != BFF_STORE_OK) {
                return rc;
            }
            if (stored) {
                t[i].gen = parse_u64(now, strlen(now), &ok);
            }
            else if ((rc = mget1(&v, s, t[i].ckey, 0, p)) == BFF_STORE_OK) {
                /* another request made it first */
                t[i].gen = parse_u64(v->data, v->len, &ok);
                if (!ok) {
                    return BFF_STORE_ERROR;
                }
            }
            else if (rc != BFF_STORE_MISS) {
                return rc;
            }
        }
    }
    return BFF_STORE_OK;
}

static void put64(unsigned char *b, apr_uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++) {
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    }
}

static apr_uint64_t get64(const unsigned char *b)
{
    apr_uint64_t v = 0;
    int i;

    for (i = 0; i < 8; i++) {
        v = v << 8 | b[i];
    }
    return v;
}

/* --------------------------------------------------------- the vtable -- */

static bff_store_rc_e mc_get(bff_store_t *st, const char **val,
                             apr_size_t *len, const char *key, apr_pool_t *p)
{
    mstore_t *s = st->ctx;
    const unsigned char *b;
    apr_size_t n, hdr;
    mvalue_t *v;
    mtag_t *t;
    int ntags, i;
    bff_store_rc_e rc;

    if ((rc = mget1(&v, s, key, 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    b = (const unsigned char *)v->data;
    n = v->len;
    if (n < 5 || memcmp(b, WRAP_MAGIC, 4)) {
        return BFF_STORE_MISS;          /* not ours: never served */
    }
    ntags = b[4];
    hdr = 5 + (apr_size_t)ntags * (TAG_ID_LEN + 8);
    if (ntags > BFF_CACHE_MAX_TAGS || n < hdr) {
        return BFF_STORE_MISS;
    }
    if (ntags) {
        t = apr_palloc(p, sizeof(*t) * (apr_size_t)ntags);
        for (i = 0; i < ntags; i++) {
            const unsigned char *e = b + 5 + (apr_size_t)i * (TAG_ID_LEN + 8);
            t[i].ckey = apr_pstrcat(p, s->o.prefix, "tag:",
                                    apr_pstrmemdup(p, (const char *)e,
                                                   TAG_ID_LEN), NULL);
        }
        if (tag_gens(s, t, ntags, 0, p) != BFF_STORE_OK) {
            return BFF_STORE_MISS;      /* cannot vouch for it */
        }
        for (i = 0; i < ntags; i++) {
            const unsigned char *e = b + 5 + (apr_size_t)i * (TAG_ID_LEN + 8);
            if (!t[i].gen || get64(e + TAG_ID_LEN) != t[i].gen) {
                const char *r;
                /* purged: drop it now rather than at expiry */
                mline(&r, s, key, apr_pstrcat(p, "delete ", key, "\r\n",
                                              NULL), 1, p);
                return BFF_STORE_MISS;
            }
        }
    }
    if (n - hdr > s->o.max_value) {
        return BFF_STORE_ERROR;
    }
    *val = (const char *)b + hdr;
    *len = n - hdr;
    return BFF_STORE_OK;
}

static bff_store_rc_e mc_set(bff_store_t *st, const char *key,
                             const char *val, apr_size_t len, long ttl_ms,
                             const apr_array_header_t *tags, apr_pool_t *p)
{
    mstore_t *s = st->ctx;
    int ntags = tags ? tags->nelts : 0, i, stored = 0;
    apr_size_t hdr = 5 + (apr_size_t)ntags * (TAG_ID_LEN + 8), plen;
    unsigned char *w;
    mtag_t *t = NULL;
    bff_store_rc_e rc;

    if (ntags > BFF_CACHE_MAX_TAGS) {
        return bad_key(s, "(too many tags)", p);
    }
    if (ntags) {
        t = apr_palloc(p, sizeof(*t) * (apr_size_t)ntags);
        for (i = 0; i < ntags; i++) {
            t[i].ckey = bff_cache_tag_key(s->o.prefix,
                                          APR_ARRAY_IDX(tags, i,
                                                        const char *), p);
        }
        if ((rc = tag_gens(s, t, ntags, 1, p)) != BFF_STORE_OK) {
            return rc;
        }
    }
    w = apr_palloc(p, hdr + len + 1);
    memcpy(w, WRAP_MAGIC, 4);
    w[4] = (unsigned char)ntags;
    plen = strlen(s->o.prefix) + 4;
    for (i = 0; i < ntags; i++) {
        unsigned char *e = w + 5 + (apr_size_t)i * (TAG_ID_LEN + 8);
        memcpy(e, t[i].ckey + plen, TAG_ID_LEN);
        put64(e + TAG_ID_LEN, t[i].gen);
    }
    memcpy(w + hdr, val, len);
    if ((rc = mstore_cmd(&stored, s, "set", key, (const char *)w, hdr + len,
                         exptime(ttl_ms), 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    return stored ? BFF_STORE_OK : BFF_STORE_ERROR;
}

static bff_store_rc_e mc_del(bff_store_t *st, const char *key, apr_pool_t *p)
{
    const char *r;
    bff_store_rc_e rc = mline(&r, st->ctx, key,
                              apr_pstrcat(p, "delete ", key, "\r\n", NULL),
                              1, p);

    if (rc != BFF_STORE_OK) {
        return rc;
    }
    return !strcmp(r, "DELETED") ? BFF_STORE_OK : BFF_STORE_MISS;
}

static bff_store_rc_e mc_lock(bff_store_t *st, const char **token,
                              const char *key, long ttl_ms, apr_pool_t *p)
{
    const char *tok = bff_store_token(p);
    int stored = 0;
    bff_store_rc_e rc = mstore_cmd(&stored, st->ctx, "add",
                                   apr_pstrcat(p, key, LOCK_SUFFIX, NULL),
                                   tok, strlen(tok), exptime(ttl_ms), 1, p);

    if (rc != BFF_STORE_OK) {
        return rc;
    }
    if (!stored) {
        return BFF_STORE_HELD;
    }
    *token = tok;
    return BFF_STORE_OK;
}

static bff_store_rc_e mc_unlock(bff_store_t *st, const char *key,
                                const char *token, apr_pool_t *p)
{
    mstore_t *s = st->ctx;
    const char *k = apr_pstrcat(p, key, LOCK_SUFFIX, NULL), *r;
    mvalue_t *v;
    bff_store_rc_e rc;

    if ((rc = mget1(&v, s, k, 1, p)) != BFF_STORE_OK) {
        return rc;
    }
    if (v->len != strlen(token) || memcmp(v->data, token, v->len)) {
        return BFF_STORE_MISS;
    }
    if ((rc = mline(&r, s, k, apr_pstrcat(p, "delete ", k, "\r\n", NULL), 1,
                    p)) != BFF_STORE_OK) {
        return rc;
    }
    return !strcmp(r, "DELETED") ? BFF_STORE_OK : BFF_STORE_MISS;
}

static bff_store_rc_e mc_purge_tag(bff_store_t *st, long *npurged,
                                   const char *tag, apr_pool_t *p)
{
    mstore_t *s = st->ctx;
    const char *k = bff_cache_tag_key(s->o.prefix, tag, p), *r;
    bff_store_rc_e rc;
    int ok;

    *npurged = -1;
    if ((rc = mline(&r, s, k, apr_pstrcat(p, "incr ", k, " 1\r\n", NULL), 0,
                    p)) != BFF_STORE_OK) {
        return rc;
    }
    /* NOT_FOUND: no counter, so no entry with this tag can be valid */
    if (strcmp(r, "NOT_FOUND")) {
        parse_u64(r, strlen(r), &ok);
        if (!ok) {
            bff_store_gate_note_error(s->servers[0].gate, apr_time_now(),
                                      apr_psprintf(p, "incr: unexpected "
                                                   "reply '%.64s'", r));
            return BFF_STORE_ERROR;
        }
    }
    return BFF_STORE_OK;
}

static bff_store_rc_e mc_publish(bff_store_t *st, const char *channel,
                                 const char *msg, apr_size_t len,
                                 apr_pool_t *p)
{
    (void)st; (void)channel; (void)msg; (void)len; (void)p;
    return BFF_STORE_UNSUPPORTED;
}

static bff_store_rc_e mc_subscribe(bff_store_t *st, const char *channel,
                                   bff_store_msg_fn *fn, void *baton,
                                   volatile apr_uint32_t *stop, apr_pool_t *p)
{
    (void)st; (void)channel; (void)fn; (void)baton; (void)stop; (void)p;
    return BFF_STORE_UNSUPPORTED;
}

static void mc_health(bff_store_t *st, bff_store_health_t *out,
                      apr_pool_t *p)
{
    mstore_t *s = st->ctx;
    int i;

    memset(out, 0, sizeof(*out));
    out->up = 1;
    out->servers = s->n;
    for (i = 0; i < s->n; i++) {
        bff_store_health_t h;
        memset(&h, 0, sizeof(h));
        bff_store_gate_health(s->servers[i].gate, &h, p);
        if (!h.up) {
            out->up = 0;
            out->servers_down++;
            if (!out->retry_at || h.retry_at < out->retry_at) {
                out->retry_at = h.retry_at;
            }
        }
        if (h.since > out->since) {
            out->since = h.since;
        }
        if (h.last_error && h.last_error_at >= out->last_error_at) {
            out->last_error = h.last_error;
            out->last_error_at = h.last_error_at;
        }
        out->connects += h.connects;
        out->connect_failures += h.connect_failures;
        out->errors += h.errors;
        out->fast_fails += h.fast_fails;
    }
}

/* memcached has no streams */
static bff_store_rc_e mc_xadd(bff_store_t *st, int *added, const char *stream,
                              long maxlen, const bff_store_fields_t *entries,
                              int n, apr_pool_t *p)
{
    *added = 0;
    return BFF_STORE_UNSUPPORTED;
}

static const bff_store_vtable_t memcache_vtable = {
    "memcache",
    mc_get, mc_set, mc_del, mc_lock, mc_unlock, mc_purge_tag, mc_publish,
    mc_subscribe, mc_health, mc_xadd
};

const char *bff_store_memcache_create(bff_store_t **out, const char *url,
                                      const bff_store_opts_t *opts,
                                      apr_pool_t *p)
{
    mstore_t *s = apr_pcalloc(p, sizeof(*s));
    apr_array_header_t *list;
    bff_store_t *st;
    const char *err;
    int i;

    if ((err = bff_memcache_url_parse(&list, url, p))) {
        return err;
    }
    if ((err = bff_store_opts_check(opts, p))) {
        return err;
    }
    s->o = *opts;
    s->o.prefix = apr_pstrdup(p, opts->prefix);
    s->n = list->nelts;
    s->servers = apr_pcalloc(p, sizeof(*s->servers) * (apr_size_t)s->n);
    for (i = 0; i < s->n; i++) {
        bff_memcache_server_t *u = &APR_ARRAY_IDX(list, i,
                                                  bff_memcache_server_t);
        mserver_t *srv = &s->servers[i];
        srv->host = u->host;
        srv->port = u->port;
        srv->store = s;
        srv->desc = apr_psprintf(p, "memcached %s%s%s:%d",
                                 strchr(u->host, ':') ? "[" : "", u->host,
                                 strchr(u->host, ':') ? "]" : "", u->port);
        srv->gate = bff_store_gate_create(s->o.backoff_min_ms,
                                          s->o.backoff_max_ms, p);
        if (apr_reslist_create(&srv->conns, 0, s->o.pool_max, s->o.pool_max,
                               apr_time_from_msec(s->o.pool_idle_ms),
                               mconn_make, mconn_free, srv, p)
            != APR_SUCCESS) {
            return apr_psprintf(p, "%s: cannot create the connection pool",
                                srv->desc);
        }
        apr_reslist_timeout_set(srv->conns,
                                apr_time_from_msec(s->o.command_timeout_ms));
    }
    st = apr_pcalloc(p, sizeof(*st));
    st->vt = &memcache_vtable;
    st->ctx = s;
    *out = st;
    return NULL;
}
