/*
 * mod_bff: analytics events to a Redis stream.
 *
 * The request never talks to Redis: log_transaction copies the event into
 * malloc'd memory and pushes it onto a bounded per-child queue (a mutex
 * held for a few instructions; when the queue is full the event is dropped
 * and counted). One background thread per child, started in child_init and
 * joined when the child exits, takes batches off the queue and sends them
 * as pipelined XADD ... MAXLEN ~ N through the Redis store of the cache
 * (lib/bff_store_redis.c: connect and command deadlines, fail-fast backoff
 * while Redis is down). While Redis is down or silent the thread drops what
 * it takes (counted) and logs once per outage, never per event.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"

#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "mod_bff.h"
#include "mod_bff_obs.h"
#include "bff_opts.h"
#include "bff_cache.h"
#include "bff_redis.h"
#include "bff_obs.h"

APLOG_USE_MODULE(bff);

#define EV_BATCH_MAX 512

struct bff_events_conf_t {
    const char *url;             /* NULL: no events */
    const char *stream;
    long maxlen;
    unsigned int queue;
    int batch;
    long connect_ms;
    long timeout_ms;
};

/* The publisher of this child. */
typedef struct {
    const bff_events_conf_t *conf;
    server_rec *s;
    bff_store_t *store;
    bff_queue_t *q;
    apr_thread_t *thread;
    apr_pool_t *tpool;           /* the thread's scratch memory */
    apr_uint64_t published, lost;    /* by the thread only */
} ev_child_t;

static ev_child_t *child;        /* NULL: no events in this child */

/* ---------------------------------------------------------- config -- */

bff_events_conf_t *bff_events_conf_create(apr_pool_t *p)
{
    bff_events_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->stream = "bff:events";
    c->maxlen = 100000;
    c->queue = 10000;
    c->batch = 100;
    c->connect_ms = 200;
    c->timeout_ms = 500;
    return c;
}

static const char *opt_stream(void *target, const char *v, apr_pool_t *p)
{
    bff_events_conf_t *c = target;

    if (strlen(v) > 200) {
        return "1 to 200 bytes";
    }
    c->stream = v;
    return NULL;
}

/* queue= is an unsigned int; the parser writes an int of the same size */
static const bff_opt_t events_opts[] = {
    BFF_OPT_CALL("stream", opt_stream),
    BFF_OPT_NUM("maxlen", BFF_OPT_LONG, bff_events_conf_t, maxlen,
                1, 1000000000L),
    BFF_OPT_NUM("queue", BFF_OPT_INT, bff_events_conf_t, queue, 1, 10000000L),
    BFF_OPT_NUM("batch", BFF_OPT_INT, bff_events_conf_t, batch,
                1, EV_BATCH_MAX),
    BFF_OPT_NUM("connect-timeout", BFF_OPT_MS, bff_events_conf_t, connect_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_NUM("timeout", BFF_OPT_MS, bff_events_conf_t, timeout_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_END
};

const char *bff_events_cmd_redis(cmd_parms *cmd, void *dcv, const char *args)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);
    bff_events_conf_t *c = sc->events;
    bff_redis_url_t u;
    const char *url, *opt;

    if (err) {
        return err;
    }
    url = ap_getword_conf(cmd->pool, &args);
    if ((err = bff_redis_url_parse(&u, url, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFEventsRedis: %s", err);
    }
    c->url = url;
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        if ((err = bff_opt_parse(events_opts, c, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFEventsRedis: %s", err);
        }
    }
    return NULL;
}

/* --------------------------------------------------------- publisher -- */

static void ev_free_all(void **items, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        bff_event_free(items[i]);
    }
}

/* Sends one batch; returns 1 when Redis took it. */
static int ev_send(ev_child_t *c, void **items, int n, int *down)
{
    bff_store_fields_t *f = apr_palloc(c->tpool, sizeof(*f) * (apr_size_t)n);
    bff_store_rc_e rc;
    int i, added = 0;

    for (i = 0; i < n; i++) {
        const bff_event_t *e = items[i];
        f[i].n = e->n;
        f[i].kv = e->kv;
        f[i].len = e->len;
    }
    rc = bff_store_xadd(c->store, &added, c->conf->stream, c->conf->maxlen,
                        f, n, c->tpool);
    c->published += (apr_uint64_t)added;
    c->lost += (apr_uint64_t)(n - added);
    if (rc == BFF_STORE_OK) {
        if (*down) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, c->s, BFFLOGNO(353)
                         "analytics events: publishing to stream %s again "
                         "(%" APR_UINT64_T_FMT " events lost so far)",
                         c->conf->stream, c->lost);
            *down = 0;
        }
        return 1;
    }
    if (!*down) {
        bff_store_health_t h;
        bff_store_health(c->store, &h, c->tpool);
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, c->s, BFFLOGNO(352)
                     "analytics events: cannot publish to stream %s (%s): "
                     "dropping events until Redis answers again",
                     c->conf->stream, h.last_error ? h.last_error : "error");
        *down = 1;
    }
    return 0;
}

static void *APR_THREAD_FUNC ev_thread(apr_thread_t *t, void *data)
{
    ev_child_t *c = data;
    void *items[EV_BATCH_MAX];
    apr_uint64_t dropped_logged = 0;
    apr_time_t dropped_at = 0;
    int down = 0, n;

    while ((n = bff_queue_pop(c->q, items, c->conf->batch,
                              apr_time_from_msec(500))) >= 0) {
        bff_queue_stats_t st;

        if (n > 0) {
            ev_send(c, items, n, &down);
            ev_free_all(items, n);
            apr_pool_clear(c->tpool);
        }
        /* a full queue: say so at most every 10 s, with the count */
        bff_queue_stats(c->q, &st);
        if (st.dropped > dropped_logged
            && apr_time_now() - dropped_at > apr_time_from_sec(10)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, c->s, BFFLOGNO(354)
                         "analytics events: queue full (%u): %"
                         APR_UINT64_T_FMT " events dropped so far", st.cap,
                         st.dropped);
            dropped_logged = st.dropped;
            dropped_at = apr_time_now();
        }
    }
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* Child exit: no more events, the thread sends what is queued (bounded by
 * the Redis deadlines, fail-fast when down) and ends. A pre-cleanup: it
 * runs before the child pool's subpools (the thread's) go away. */
static apr_status_t ev_stop(void *data)
{
    ev_child_t *c = data;
    bff_queue_stats_t st;
    apr_status_t trv;

    bff_queue_close(c->q);
    apr_thread_join(&trv, c->thread);
    bff_queue_stats(c->q, &st);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, c->s, BFFLOGNO(355)
                 "analytics events: publisher stopped: %" APR_UINT64_T_FMT
                 " published, %" APR_UINT64_T_FMT " lost (Redis), %"
                 APR_UINT64_T_FMT " dropped (queue full)", c->published,
                 c->lost, st.dropped);
    child = NULL;
    return APR_SUCCESS;
}

static void ev_child_init(apr_pool_t *pchild, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);
    const bff_events_conf_t *conf = sc->events;
    bff_store_opts_t o;
    ev_child_t *c;
    const char *err;
    apr_status_t rv;

    if (!conf->url) {
        return;
    }
    c = apr_pcalloc(pchild, sizeof(*c));
    c->conf = conf;
    c->s = s;
    bff_store_opts_default(&o);
    o.connect_timeout_ms = conf->connect_ms;
    o.command_timeout_ms = conf->timeout_ms;
    o.pool_max = 1;                 /* one thread uses it */
    if ((err = bff_store_redis_create(&c->store, conf->url, &o, pchild))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(351)
                     "analytics events disabled in this child: %s", err);
        return;
    }
    if ((rv = bff_queue_create(&c->q, conf->queue, pchild)) != APR_SUCCESS
        || (rv = apr_pool_create(&c->tpool, pchild)) != APR_SUCCESS
        || (rv = apr_thread_create(&c->thread, NULL, ev_thread, c, pchild))
           != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, BFFLOGNO(356)
                     "analytics events disabled in this child: cannot "
                     "start the publisher");
        return;
    }
    apr_pool_pre_cleanup_register(pchild, c, ev_stop);
    child = c;
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, BFFLOGNO(350)
                 "analytics events: publishing to stream %s (queue %u, "
                 "maxlen ~%ld)", conf->stream, conf->queue, conf->maxlen);
}

/* ------------------------------------------------------------ events -- */

static void ev_push(ev_child_t *c, const char *const *kv, int npairs)
{
    bff_event_t *e = bff_event_new(kv, npairs);

    if (e && !bff_queue_push(c->q, e)) {
        bff_event_free(e);          /* full: counted by the queue */
    }
}

/* One "request" event per request routed to an endpoint (answered by the
 * handler or refused before it, e.g. by the access phase), one
 * "backend_error" event per backend that failed or was skipped. */
static int ev_log_transaction(request_rec *r)
{
    ev_child_t *c = child;
    request_rec *last = r;
    const char *endpoint;
    bff_obs_req_t *o;
    const char *ts, *dur, *status;
    int i;

    if (!c || r->main) {
        return DECLINED;
    }
    while (last->next) {
        last = last->next;
    }
    endpoint = apr_table_get(r->notes, "bff-endpoint");
    if (!endpoint) {
        return DECLINED;            /* not an aggregated endpoint */
    }
    o = bff_obs_req(r);
    ts = apr_psprintf(r->pool, "%" APR_TIME_T_FMT, apr_time_as_msec(r->request_time));
    dur = bff_obs_duration_ms(r);
    status = apr_itoa(r->pool, last->status);
    {
        const char *subject = apr_table_get(r->notes, "bff-subject");
        const char *kv[] = {
            "type", "request",
            "ts", ts,
            "request_id", o->request_id,
            "trace_id", o->trace.trace_id,
            "method", r->method,
            "endpoint", endpoint,
            "path", r->uri,
            "status", status,
            "duration_ms", dur,
            "aggregation_ms", bff_obs_aggregation_ms(r, o),
            "cache", apr_table_get(r->notes, "bff-cache"),
            "completed", apr_table_get(r->notes, "bff-completed"),
            "subject", subject ? subject : r->user,
            "bytes", apr_off_t_toa(r->pool, last->bytes_sent),
            "backends", bff_obs_backends(r, o),
            "errors", o->failures ? apr_itoa(r->pool, o->failures->nelts)
                                  : "0",
            /* refused by the access phase: the class of failure, the limit */
            "auth_error", apr_table_get(r->notes, "bff-auth-error"),
            "throttled", apr_table_get(r->notes, "bff-throttled"),
        };
        ev_push(c, kv, (int)(sizeof(kv) / sizeof(kv[0]) / 2));
    }
    for (i = 0; o->failures && i < o->failures->nelts; i++) {
        const bff_obs_failure_t *f = &APR_ARRAY_IDX(o->failures, i,
                                                    bff_obs_failure_t);
        const char *kv[] = {
            "type", "backend_error",
            "ts", ts,
            "request_id", o->request_id,
            "endpoint", endpoint,
            "backend", f->backend,
            "reason", f->reason,
            "backend_status", apr_itoa(r->pool, f->status),
            "required", f->required ? "true" : "false",
            "duration_ms", apr_psprintf(r->pool, "%.3f", f->ms),
            "status", status,
        };
        ev_push(c, kv, (int)(sizeof(kv) / sizeof(kv[0]) / 2));
    }
    return DECLINED;
}

void bff_events_register_hooks(apr_pool_t *p)
{
    ap_hook_child_init(ev_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_log_transaction(ev_log_transaction, NULL, NULL, APR_HOOK_MIDDLE);
}
