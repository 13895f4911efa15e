/*
 * mod_bff: the one Redis layer (pure core, no httpd.h), used by the cache
 * store, the rate limiter's token buckets, API-key lookups and the event
 * publisher.
 *
 * A bff_redis_t is one Redis server as one process sees it: a parsed URL
 * (password, ACL user, db, unix socket), a pool of connections opened on
 * demand, deadlines on connect and on every call, and an outage gate
 * (bff_gate.h) with back-off. hiredis formats commands and parses replies;
 * the socket is driven here with poll() against one deadline per call
 * (hiredis 0.14's blocking mode bounds each read() only, so a trickling
 * or silent server could hold a worker far longer than the timeout).
 *
 * Every function may be called from many threads at once. None blocks
 * longer than the wait for a pooled connection (<= command timeout), a
 * connect with its handshake (<= connect timeout, only when a connection
 * must be opened) and the command (<= command timeout). A pooled
 * connection that Redis closed while it was idle (a restart, an idle
 * timeout) costs no failure: the call is sent once more on a fresh one.
 * When Redis fails the gate marks it down: calls then fail at once, one
 * probe per back-off period reconnects, and connections opened before
 * the failure are dropped on next use.
 *
 * Redis over TLS (rediss://) needs hiredis_ssl, which Debian 12's hiredis
 * 0.14 lacks: refused with a message saying so.
 */
#ifndef BFF_REDIS_H
#define BFF_REDIS_H

#include <apr_pools.h>
#include <apr_time.h>

#include "bff_gate.h"

struct redisReply;          /* hiredis */

typedef struct {
    const char *host;       /* TCP: name, IPv4 or IPv6 (without []) */
    int port;               /* TCP: 1..65535 (default 6379) */
    const char *path;       /* unix socket, or NULL */
    const char *user;       /* ACL user (Redis 6+), or NULL */
    const char *password;   /* NULL: no AUTH */
    int db;                 /* SELECT, 0..65535 */
} bff_redis_url_t;

/* Parses, strictly:
 *   redis://[[user]:password@]host[:port][/db]
 *   redis+unix://[[user]:password@]/path/to/socket[?db=N]
 * user and password are percent-decoded (encode '@', ':', '/' there);
 * hosts are [A-Za-z0-9.-] or [IPv6]; no query, fragment or trailing junk
 * for TCP. rediss:// (TLS) is refused: hiredis 0.14 has no TLS. */
const char *bff_redis_url_parse(bff_redis_url_t *out, const char *url,
                                apr_pool_t *p);

typedef struct {
    long connect_timeout_ms;     /* TCP connect + AUTH/SELECT/PING; > 0 */
    long command_timeout_ms;     /* one call, all its round trips, and the
                                    wait for a pooled connection; > 0 */
    int pool_max;                /* connections per process, >= 1 */
    long pool_idle_ms;           /* a connection idle longer is closed,
                                    not used; 0: never */
    long backoff_min_ms;         /* first "down" period, > 0 */
    long backoff_max_ms;         /* doubling stops here (>= min) */
    apr_size_t max_reply;        /* largest reply read, >= 1024 */
} bff_redis_opts_t;

/* Connect and command 50 ms, pool 16, idle 60 s, back-off 100 ms doubling
 * to 5 s, replies up to 16 MiB. */
void bff_redis_opts_default(bff_redis_opts_t *o);

typedef struct bff_redis_t bff_redis_t;

/* Parses url and makes the pool; nothing connects before the first call,
 * so it can be made in child_init whether Redis is up or not. Make it per
 * process (after fork); it lives until p is destroyed. Host names are
 * resolved by the system resolver at each connect, outside the connect
 * timeout: use an address (or /etc/hosts) for strict bounds. The process
 * must ignore SIGPIPE (httpd does). */
const char *bff_redis_create(bff_redis_t **out, const char *url,
                             const bff_redis_opts_t *opts, apr_pool_t *p);

/* "redis HOST:PORT db N" or "redis unix:PATH db N", for messages: never
 * the password. */
const char *bff_redis_desc(const bff_redis_t *r);

/* One command: argc arguments, binary-safe. */
typedef struct {
    int argc;
    const char **argv;
    size_t *len;
} bff_redis_cmd_t;

/* A command from argc NUL-terminated strings. */
bff_redis_cmd_t bff_redis_cmd(apr_pool_t *p, int argc, ...);

/* Runs n commands pipelined in one round trip on a pooled connection.
 * NULL: every reply is in rep[] (freed with p; error replies included:
 * the caller judges them, see bff_redis_reply_error). Otherwise why not
 * (Redis down, no connection free in time, the connection failed: then
 * the gate is told and the connection dropped). */
const char *bff_redis_exec(struct redisReply **rep, bff_redis_t *r,
                           const bff_redis_cmd_t *cmds, int n,
                           apr_pool_t *p);

/* A Lua script, run by EVALSHA (EVAL when Redis does not know it yet:
 * first use, a restart, SCRIPT FLUSH; that caches it again). sha1 is the
 * script's SHA-1 in hex (bff_redis_script_init computes it). */
typedef struct {
    const char *text;
    char sha1[41];
} bff_redis_script_t;

void bff_redis_script_init(bff_redis_script_t *s, const char *text);

/* Runs a script with nkeys keys and nargs arguments (lengths: NULL for
 * NUL-terminated strings). As bff_redis_exec for one command. */
const char *bff_redis_eval(struct redisReply **rep, bff_redis_t *r,
                           const bff_redis_script_t *s,
                           int nkeys, const char *const *keys,
                           const size_t *keylens,
                           int nargs, const char *const *args,
                           const size_t *arglens, apr_pool_t *p);

/* For a reply the caller cannot use (an error reply: OOM, READONLY,
 * WRONGTYPE; or an unexpected type): records it with the gate (Redis is
 * up, this call failed) and returns "DESC: WHAT: TEXT". */
const char *bff_redis_reply_error(bff_redis_t *r, const char *what,
                                  const struct redisReply *rep,
                                  apr_pool_t *p);

/* Records an error that is not Redis being down (see bff_gate.h). */
void bff_redis_note_error(bff_redis_t *r, const char *err);

/* Called by bff_redis_subscribe for each message; msg NULL means
 * "(re)subscribed: messages may have been missed meanwhile". */
typedef void bff_redis_msg_fn(void *baton, const char *msg, apr_size_t len);

/* Blocks on a connection of its own (outside the pool and the gate: it
 * lives long), calling fn for each message on channel, until *stop
 * becomes non-zero (checked every 100 ms: NULL) or the connection fails
 * (the error; call again after a pause). For a thread of the caller's. */
const char *bff_redis_subscribe(bff_redis_t *r, const char *channel,
                                bff_redis_msg_fn *fn, void *baton,
                                volatile apr_uint32_t *stop, apr_pool_t *p);

/* A connection of its own, outside the pool and the gate (as a
 * subscriber's): for one thread that issues blocking commands (XREAD
 * BLOCK) whose wait is longer than the command timeout. Connect and
 * handshake (AUTH, SELECT) within the connect timeout; errors are noted
 * for health, they never mark Redis down for the pool. */
typedef struct bff_redis_conn_t bff_redis_conn_t;

const char *bff_redis_conn_open(bff_redis_conn_t **out, bff_redis_t *r,
                                apr_pool_t *p);

/* One command on c, its reply read within wait_ms plus the command
 * timeout (wait_ms: how long the command itself may block). NULL: *rep
 * holds the reply (freed with p). Otherwise why not; c is then unusable:
 * close it and open another. */
const char *bff_redis_conn_call(struct redisReply **rep, bff_redis_conn_t *c,
                                const bff_redis_cmd_t *cmd, long wait_ms,
                                apr_pool_t *p);

void bff_redis_conn_close(bff_redis_conn_t *c);

/* The gate's state and counters, and the pool's connections. */
void bff_redis_health(bff_redis_t *r, bff_store_health_t *out,
                      apr_pool_t *p);

#endif /* BFF_REDIS_H */
