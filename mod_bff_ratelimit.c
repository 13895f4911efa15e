/*
 * mod_bff: throttling (see mod_bff_access.h). BFFRateLimit buckets live in
 * Redis (BFFRateLimitRedis: one Lua call per limit through the one Redis
 * layer, lib/bff_redis.h, with token leases, lib/bff_lease.h), and in
 * shared memory (socache shmcb) without Redis or while it is unreachable
 * (BFFRateLimitFallback shm; or open / closed). The same Redis holds API
 * keys (BFFAPIKeyRedis).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "util_mutex.h"

#include "apr_atomic.h"
#include "apr_global_mutex.h"

#include <hiredis/hiredis.h>

#include "mod_bff_access.h"
#include "mod_bff_shared.h"
#include "bff_opts.h"
#include "bff_lease.h"

APLOG_USE_MODULE(bff);

#define DEFAULT_REDIS_CONNECT  200         /* ms */
#define DEFAULT_REDIS_TIMEOUT  100         /* ms */
#define DEFAULT_REDIS_RETRY    1000        /* ms */
#define RL_MUTEX_TYPE          "bff-ratelimit"
#define RL_SOCACHE_NAME        "bff-ratelimit"
#define DEFAULT_LEASE_TTL      1000        /* ms */
#define LEASES_MAX             10000       /* keys with a lease, per child */

/* ----------------------------------------------------- process state -- */

static bff_redis_t *rl_redis;                /* per child */
static bff_shared_cache_t rl_shm;            /* shared by the children */
/* seen while reading the configuration (reset in pre_config), for the
 * checks of check_config */
static int rl_limits_seen;       /* a BFFRateLimit somewhere */
static int rl_shm_fallback_seen; /* an explicit BFFRateLimitFallback shm */

/* Whether this child logged a Redis outage: it is logged once when it
 * starts and once when it ends (the layer's gate does the back-off). */
static volatile apr_uint32_t redis_down;

/* Token leases of this child (BFFRateLimit lease=N) */
static bff_lease_table_t *leases;

/* -------------------------------------------------------- directives -- */

static int limit_name_ok(const char *s)
{
    if (!*s || strlen(s) > 64) {
        return 0;
    }
    for (; *s; s++) {
        if (!apr_isalnum(*s) && !strchr("-_.", *s)) {
            return 0;
        }
    }
    return 1;
}

static const char *opt_key(void *target, const char *k, apr_pool_t *p)
{
    limit_t *l = target;

    if (!strcmp(k, "ip")) {
        l->key = KEY_IP;
    }
    else if (!strcmp(k, "user")) {
        l->key = KEY_USER;
    }
    else if (!strcmp(k, "global")) {
        l->key = KEY_GLOBAL;
    }
    else if (!strncmp(k, "header:", 7) && header_name_ok(k + 7)) {
        l->key = KEY_HEADER;
        l->header = k + 7;
    }
    else {
        return "expected key=ip, key=user, key=global or key=header:NAME";
    }
    return NULL;
}

static const char *opt_plans(void *target, const char *v, apr_pool_t *p)
{
    limit_t *l = target;
    char *list = apr_pstrdup(p, v), *last, *w;

    l->plans = apr_array_make(p, 2, sizeof(const char *));
    for (w = apr_strtok(list, ",", &last); w; w = apr_strtok(NULL, ",", &last)) {
        APR_ARRAY_PUSH(l->plans, const char *) = w;
    }
    return l->plans->nelts ? NULL : "expected plan=NAME[,NAME...]";
}

static const bff_opt_t limit_opts[] = {
    BFF_OPT_CALL("key", opt_key),
    BFF_OPT_NUM("burst", BFF_OPT_INT64, limit_t, conf.capacity, 1, BFF_OPT_MAX),
    BFF_OPT_CALL("plan", opt_plans),
    BFF_OPT_NUM("lease", BFF_OPT_INT64, limit_t, lease, 1, 1000000),
    BFF_OPT_NUM("lease-ttl", BFF_OPT_MS, limit_t, lease_ttl_ms, 1, 60000),
    BFF_OPT_END
};

const char *bff_auth_cmd_rate_limit(cmd_parms *cmd, void *dcv,
                                    const char *args)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = dir_only(cmd, dcv);
    const char *name, *rate, *opt;
    limit_t *l;
    int i;

    if (err) {
        return err;
    }
    name = ap_getword_conf(cmd->pool, &args);
    rate = ap_getword_conf(cmd->pool, &args);
    if (!*name || !*rate) {
        return "BFFRateLimit takes a name, a rate and options: BFFRateLimit "
               "per-user 100/1m key=user [burst=N] [plan=NAME,...]";
    }
    if (!limit_name_ok(name)) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: a name is 1-64 of "
                            "A-Z a-z 0-9 - _ .", name);
    }
    rl_limits_seen = 1;
    l = apr_pcalloc(cmd->pool, sizeof(*l));
    l->name = name;
    l->key = KEY_IP;
    if ((err = bff_bucket_parse_rate(&l->conf, rate, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s %s: %s", name, rate,
                            err);
    }
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        if ((err = bff_opt_parse(limit_opts, l, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFRateLimit %s: %s", name, err);
        }
    }
    if ((err = bff_bucket_conf_check(&l->conf, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: %s", name, err);
    }
    if (l->lease > l->conf.capacity) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: lease=%" APR_INT64_T_FMT
                            " is more than the capacity (%" APR_INT64_T_FMT
                            " tokens)", name, l->lease, l->conf.capacity);
    }
    if (l->lease_ttl_ms && l->lease < 2) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: lease-ttl= needs "
                            "lease=N with N >= 2", name);
    }
    if (!l->lease_ttl_ms) {
        l->lease_ttl_ms = DEFAULT_LEASE_TTL;
    }
    for (i = 0; i < dc->auth->limits->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(dc->auth->limits, i, limit_t *)->name,
                    name)) {
            return apr_psprintf(cmd->pool, "BFFRateLimit %s is already "
                                "defined here", name);
        }
    }
    APR_ARRAY_PUSH(dc->auth->limits, limit_t *) = l;
    return NULL;
}

const char *bff_auth_cmd_rl_fallback(cmd_parms *cmd, void *dcv,
                                     const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = dir_only(cmd, dcv);

    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "shm")) {
        dc->auth->fallback = FB_SHM;
        rl_shm_fallback_seen = 1;
    }
    else if (!strcasecmp(arg, "open")) {
        dc->auth->fallback = FB_OPEN;
    }
    else if (!strcasecmp(arg, "closed")) {
        dc->auth->fallback = FB_CLOSED;
    }
    else {
        return apr_psprintf(cmd->pool, "BFFRateLimitFallback %s: expected "
                            "shm, open or closed", arg);
    }
    return NULL;
}

static const bff_opt_t redis_opts[] = {
    BFF_OPT_NUM("connect-timeout", BFF_OPT_MS, bff_auth_srv_t,
                redis_connect_ms, 1, BFF_OPT_MAX),
    BFF_OPT_NUM("timeout", BFF_OPT_MS, bff_auth_srv_t, redis_timeout_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_NUM("retry", BFF_OPT_MS, bff_auth_srv_t, redis_retry_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_END
};

const char *bff_auth_cmd_rl_redis(cmd_parms *cmd, void *dcv, const char *args)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    bff_auth_srv_t *as = srv_conf(cmd);
    const char *url, *opt;
    bff_redis_url_t parsed;

    if (err) {
        return err;
    }
    url = ap_getword_conf(cmd->pool, &args);
    /* HOST:PORT alone was accepted before URLs with credentials were */
    if (*url && !ap_strstr_c(url, "://")) {
        url = apr_pstrcat(cmd->pool, "redis://", url, NULL);
    }
    if ((err = bff_redis_url_parse(&parsed, url, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFRateLimitRedis: %s", err);
    }
    as->redis_url = url;
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        if ((err = bff_opt_parse(redis_opts, as, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFRateLimitRedis: %s", err);
        }
    }
    return NULL;
}

const char *bff_auth_cmd_rl_instances(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    long v;

    if (err) {
        return err;
    }
    v = strtol(arg, &end, 10);
    if (!*arg || *end || v < 1 || v > 1000) {
        return apr_psprintf(cmd->pool, "BFFRateLimitInstances %s: expected a "
                            "number from 1 to 1000", arg);
    }
    srv_conf(cmd)->instances = (int)v;
    return NULL;
}

/* After a failed call: the first failure of an outage is logged. */
static void redis_note_down(request_rec *r, const char *why)
{
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            ap_server_conf->module_config, &bff_module))->auth;
    long retry = ms->redis_retry_ms != UNSET ? ms->redis_retry_ms
                                             : DEFAULT_REDIS_RETRY;

    if (apr_atomic_cas32(&redis_down, 1, 0) == 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->server, BFFLOGNO(107)
                     "rate limit store unreachable: %s; using the "
                     "BFFRateLimitFallback of each location (API keys kept "
                     "in Redis cannot be verified: 503), retrying every "
                     "%ld ms", why, retry);
    }
}

static void redis_note_up(request_rec *r)
{
    if (apr_atomic_read32(&redis_down)
        && apr_atomic_cas32(&redis_down, 0, 1) == 1) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, r->server, BFFLOGNO(108)
                     "rate limit store %s reachable again",
                     bff_redis_desc(rl_redis));
    }
}

/* NULL and *res on success; otherwise why Redis could not answer. With a
 * lease (l->lease > 1) most requests take a token this child leased
 * earlier, and one in about l->lease calls Redis. */
static const char *redis_take(bff_bucket_result_t *res, request_rec *r,
                              const char *key, const limit_t *l)
{
    const char *err;
    apr_int64_t refund = 0, granted = 0;
    apr_int64_t lease = l->lease > 1 && leases ? l->lease : 1;
    apr_time_t now = apr_time_now();

    if (lease > 1 && bff_lease_use(leases, res, &refund, key, now)) {
        return NULL;
    }
    /* Redis' clock (now_ms < 0): every instance refills by the same time */
    err = bff_bucket_redis_lease(res, &granted, rl_redis, key, strlen(key),
                                 &l->conf, -1, 1, lease, refund, r->pool);
    if (err) {
        /* a refund that may not have arrived is dropped: better a token
         * short until the refill than one too many */
        redis_note_down(r, err);
        return err;
    }
    redis_note_up(r);
    if (granted > 1) {          /* only with lease > 1 */
        bff_lease_keep(leases, key, granted - 1, res, &l->conf,
                       now + apr_time_from_msec(l->lease_ttl_ms));
        bff_lease_held(res, granted - 1, &l->conf);
    }
    return NULL;
}

/* For the metrics: this child's connections and, with probe, a PING
 * (failing fast while Redis is known to be down). */
int bff_auth_redis_state(bff_redis_state_t *out, int probe, request_rec *r)
{
    bff_store_health_t h;
    bff_redis_cmd_t ping;
    redisReply *reply;
    const char *err;

    if (!rl_redis) {
        return 0;
    }
    out->up = 0;
    if (probe) {
        ping = bff_redis_cmd(r->pool, 1, "PING");
        if (!(err = bff_redis_exec(&reply, rl_redis, &ping, 1, r->pool))
            && reply->type == REDIS_REPLY_ERROR) {
            err = bff_redis_reply_error(rl_redis, "PING", reply, r->pool);
        }
        out->up = !err;
        if (err) {
            redis_note_down(r, err);
        }
        else {
            redis_note_up(r);
        }
    }
    bff_redis_health(rl_redis, &h, r->pool);
    out->open = h.conns_open;
    out->busy = h.conns_busy;
    return 1;
}

typedef struct {
    apr_pool_t *p;
    int failed;
} return_ctx_t;

static void lease_return(void *baton, const char *key, apr_int64_t avail,
                         const bff_bucket_conf_t *conf)
{
    return_ctx_t *rc = baton;
    bff_bucket_result_t res;
    apr_int64_t granted;

    /* after one failure the others would fail fast: stop trying */
    if (!rc->failed) {
        rc->failed = bff_bucket_redis_lease(&res, &granted, rl_redis, key,
                                            strlen(key), conf, -1, 0, 0,
                                            avail, rc->p) != NULL;
    }
}

/* Child exit: the tokens of live leases go back to Redis, so a graceful
 * restart or MaxConnectionsPerChild loses none. */
static apr_status_t leases_return(void *data)
{
    return_ctx_t rc;

    (void)data;
    if (!leases || !rl_redis || apr_pool_create(&rc.p, NULL) != APR_SUCCESS) {
        return APR_SUCCESS;
    }
    rc.failed = 0;
    bff_lease_drain(leases, apr_time_now(), lease_return, &rc);
    apr_pool_destroy(rc.p);
    return APR_SUCCESS;
}

/* Looks an API key's entry up in the rate limiter's Redis (see
 * bff_apikey_redis_lookup); an outage is logged as for the buckets. */
bff_apikey_rc_e bff_ratelimit_apikey(request_rec *r, const char *rkey,
                                     const char **consumer, const char **plan,
                                     const char **why)
{
    bff_apikey_rc_e rc;

    if (!rl_redis) {
        *consumer = *plan = NULL;
        *why = "no Redis";
        return BFF_APIKEY_DOWN;
    }
    rc = bff_apikey_redis_lookup(consumer, plan, why, rl_redis, rkey, r->pool);
    if (rc == BFF_APIKEY_DOWN) {
        redis_note_down(r, *why);
    }
    else {
        redis_note_up(r);
    }
    return rc;
}

static const char *shm_take(bff_bucket_result_t *res, request_rec *r,
                            const char *key, const bff_bucket_conf_t *c)
{
    bff_bucket_state_t st;
    unsigned char buf[sizeof(st)];
    unsigned int len = sizeof(buf);
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    apr_status_t rv;

    if (!rl_shm.inst) {
        return "no shared memory";
    }
    if (!bff_shared_cache_lock(&rl_shm)) {
        return "mutex";
    }
    memset(&st, 0, sizeof(st));
    rv = rl_shm.provider->retrieve(rl_shm.inst, r->server,
                                   (const unsigned char *)key,
                                   (unsigned int)strlen(key), buf, &len,
                                   r->pool);
    if (rv == APR_SUCCESS && len == sizeof(st)) {
        memcpy(&st, buf, sizeof(st));
    }
    bff_bucket_take(res, &st, c, now_ms, 1);
    memcpy(buf, &st, sizeof(st));
    rv = rl_shm.provider->store(rl_shm.inst, r->server, (const unsigned char *)key,
                                (unsigned int)strlen(key),
                                apr_time_now() + apr_time_from_msec(
                                    res->reset_ms + 1000),
                                buf, sizeof(buf), r->pool);
    bff_shared_cache_unlock(&rl_shm);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r, BFFLOGNO(109)
                      "cannot store a rate limit bucket in shared memory");
    }
    return NULL;
}

static int limit_applies(const limit_t *l, const auth_req_t *rq)
{
    const char *plan = rq && rq->plan ? rq->plan : "-";
    int i;

    if (!l->plans) {
        return 1;
    }
    for (i = 0; i < l->plans->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(l->plans, i, const char *), plan)) {
            return 1;
        }
    }
    return 0;
}

/* The bucket key of r under l, or NULL when l does not apply (no user,
 * no such header). The value is hashed, whatever it is: user names,
 * client addresses and header values never appear in Redis key names
 * (SCAN, MONITOR, slow logs), as in the cache's keys. */
static const char *limit_key(request_rec *r, const limit_t *l)
{
    const char *v;
    char hex[65];

    switch (l->key) {
    case KEY_IP:     v = r->useragent_ip; break;
    case KEY_USER:   v = r->user; break;
    case KEY_HEADER: v = apr_table_get(r->headers_in, l->header); break;
    default:         v = NULL; break;
    }
    if (l->key != KEY_GLOBAL) {
        if (!v || !*v) {
            return NULL;
        }
        bff_apikey_hash(hex, v, strlen(v));
        v = hex;
    }
    else {
        v = "*";
    }
    /* the conf is part of the key: a changed limit starts afresh */
    return apr_psprintf(r->pool, "bff:rl:%s:%" APR_INT64_T_FMT "/%"
                        APR_INT64_T_FMT "/%" APR_INT64_T_FMT ":%s", l->name,
                        l->conf.capacity, l->conf.rate_tokens,
                        l->conf.rate_ms, v);
}

typedef struct {
    const limit_t *l;
    bff_bucket_conf_t conf;       /* the one applied (maybe a share) */
    bff_bucket_result_t res;
} taken_t;

static int taken_cmp(const void *a, const void *b)
{
    const taken_t *x = a, *y = b;

    return x->res.remaining < y->res.remaining ? -1
         : x->res.remaining > y->res.remaining;
}

static void set_limit_headers(request_rec *r, taken_t *t, int n)
{
    const char *policy = NULL, *ratelimit = NULL, *retry = NULL;
    apr_int64_t retry_s = 0;
    bff_bucket_headers_t h;
    int i;

    qsort(t, (size_t)n, sizeof(*t), taken_cmp);
    for (i = 0; i < n; i++) {
        bff_bucket_headers(&h, t[i].l->name, &t[i].conf, &t[i].res, r->pool);
        policy = policy ? apr_pstrcat(r->pool, policy, ", ", h.policy, NULL)
                        : h.policy;
        ratelimit = ratelimit ? apr_pstrcat(r->pool, ratelimit, ", ",
                                            h.ratelimit, NULL) : h.ratelimit;
        if (h.retry_after && apr_atoi64(h.retry_after) > retry_s) {
            retry_s = apr_atoi64(h.retry_after);
            retry = h.retry_after;
        }
        if (i == 0) {
            /* the customary trio tells about the tightest bucket */
            apr_table_setn(r->err_headers_out, "X-RateLimit-Limit", h.x_limit);
            apr_table_setn(r->err_headers_out, "X-RateLimit-Remaining",
                           h.x_remaining);
            apr_table_setn(r->err_headers_out, "X-RateLimit-Reset", h.x_reset);
        }
    }
    apr_table_setn(r->err_headers_out, "RateLimit-Policy", policy);
    apr_table_setn(r->err_headers_out, "RateLimit", ratelimit);
    if (retry) {
        apr_table_setn(r->err_headers_out, "Retry-After", retry);
    }
}

int bff_ratelimit_throttle(request_rec *r, const bff_auth_dir_t *ad)
{
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            ap_server_conf->module_config, &bff_module))->auth;
    int fallback = ad->fallback ? ad->fallback : FB_SHM;
    int instances = ms->instances != UNSET ? ms->instances : 1;
    auth_req_t *rq = req_find(r);
    taken_t *t = apr_pcalloc(r->pool, sizeof(*t) * (size_t)ad->limits->nelts);
    const char *refused = NULL;
    int i, n = 0;

    for (i = 0; i < ad->limits->nelts && !refused; i++) {
        const limit_t *l = APR_ARRAY_IDX(ad->limits, i, limit_t *);
        const char *key, *err = "no Redis";
        if (!limit_applies(l, rq) || !(key = limit_key(r, l))) {
            continue;
        }
        t[n].l = l;
        t[n].conf = l->conf;
        if (ms->redis_url) {
            err = redis_take(&t[n].res, r, key, l);
        }
        if (err && ms->redis_url) {
            if (fallback == FB_OPEN) {
                continue;
            }
            if (fallback == FB_CLOSED) {
                apr_table_setn(r->notes, "bff-throttled", "store-down");
                apr_table_setn(r->err_headers_out, "Retry-After", "1");
                bff_problem_defer(r, HTTP_SERVICE_UNAVAILABLE, "Service Unavailable",
                            "rate limiting is unavailable", NULL);
                return HTTP_SERVICE_UNAVAILABLE;
            }
            /* each instance keeps its share of the limit */
            bff_bucket_conf_share(&t[n].conf, &l->conf, instances);
            key = apr_psprintf(r->pool, "%s:share%d", key, instances);
        }
        if (err && (err = shm_take(&t[n].res, r, key, &t[n].conf))) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(110)
                          "rate limit %s not applied: %s", l->name, err);
            continue;
        }
        if (!t[n].res.allowed) {
            refused = l->name;
        }
        n++;
    }
    if (n) {
        set_limit_headers(r, t, n);
    }
    if (refused) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(111)
                      "rate limit %s exceeded by %s", refused,
                      r->user ? r->user : r->useragent_ip);
        apr_table_setn(r->notes, "bff-throttled", refused);
        bff_problem_defer(r, HTTP_TOO_MANY_REQUESTS, "Too Many Requests",
                    apr_pstrcat(r->pool, "rate limit '", refused,
                                "' exceeded", NULL), NULL);
        return HTTP_TOO_MANY_REQUESTS;
    }
    return DECLINED;
}

/* Shared-memory buckets need mod_socache_shmcb: without Redis always,
 * with Redis for the shm fallback (the default). Without the module the
 * limits would not be applied at all. */
static int check_ratelimit_shm(server_rec *s)
{
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            s->module_config, &bff_module))->auth;
    bff_dir_conf_t *md = ap_get_module_config(s->lookup_defaults,
                                              &bff_module);
    int fb = md && md->auth ? md->auth->fallback : 0;

    if (!rl_limits_seen
        || ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                              AP_SOCACHE_PROVIDER_VERSION)) {
        return OK;
    }
    if (!ms->redis_url) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(131)
                     "BFFRateLimit without BFFRateLimitRedis keeps its "
                     "buckets in shared memory, which needs "
                     "mod_socache_shmcb: LoadModule socache_shmcb_module");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rl_shm_fallback_seen || fb == 0 || fb == FB_SHM) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(132)
                     "BFFRateLimitFallback shm (the default) needs "
                     "mod_socache_shmcb: LoadModule socache_shmcb_module, or "
                     "set BFFRateLimitFallback open or closed in the main "
                     "server");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* --------------------------------------------------------- lifecycle -- */

int bff_ratelimit_has_redis(server_rec *s)
{
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            s->module_config, &bff_module))->auth;
    return ms->redis_url != NULL;
}

static int rl_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                         apr_pool_t *ptemp)
{
    rl_limits_seen = 0;
    rl_shm_fallback_seen = 0;
    /* registered here so that the admin's Mutex directive applies */
    return ap_mutex_register(pconf, RL_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
}

static int rl_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    return check_ratelimit_shm(s);
}

static int rl_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *s)
{
    struct ap_socache_hints hints = { 64, sizeof(bff_bucket_state_t),
                                      apr_time_from_sec(60) };

    memset(&rl_shm, 0, sizeof(rl_shm));
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    /* Shared-memory buckets: the store without Redis, and the fallback
     * when it is unreachable (lost on restart: buckets refill anyway).
     * Without mod_socache_shmcb, check_config has refused every
     * configuration that needs them. */
    if (!rl_limits_seen
        || !ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                               AP_SOCACHE_PROVIDER_VERSION)) {
        return OK;
    }
    return bff_shared_cache_create(&rl_shm, "BFFRateLimit (its buckets in "
                                   "shared memory, and BFFRateLimitFallback "
                                   "shm)", RL_SOCACHE_NAME, NULL,
                                   RL_MUTEX_TYPE, &hints, s, pconf, ptemp);
}

static void rl_child_init(apr_pool_t *pchild, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);
    bff_auth_srv_t *as = sc->auth;
    int threads = 1;
    const char *err;

    rl_redis = NULL;
    leases = NULL;
    apr_atomic_set32(&redis_down, 0);
    bff_shared_cache_child_init(&rl_shm, pchild, s);
    if (as->redis_url) {
        bff_redis_opts_t o;
        long retry = as->redis_retry_ms != UNSET ? as->redis_retry_ms
                                                 : DEFAULT_REDIS_RETRY;

        bff_redis_opts_default(&o);
        o.connect_timeout_ms = as->redis_connect_ms != UNSET
                               ? as->redis_connect_ms : DEFAULT_REDIS_CONNECT;
        o.command_timeout_ms = as->redis_timeout_ms != UNSET
                               ? as->redis_timeout_ms : DEFAULT_REDIS_TIMEOUT;
        /* a connection per worker thread at most, opened on demand */
        ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
        o.pool_max = threads > 1 ? threads : 1;
        o.backoff_min_ms = o.backoff_max_ms = retry;
        o.max_reply = 64 * 1024;
        if ((err = bff_redis_create(&rl_redis, as->redis_url, &o, pchild))) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(123)
                         "rate limit store: %s", err);
            rl_redis = NULL;
        }
        /* registered after the pool: runs before it is destroyed */
        leases = bff_lease_table_create(LEASES_MAX, pchild);
        if (!leases) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(127)
                         "cannot create the token lease mutex");
        }
        else {
            apr_pool_cleanup_register(pchild, NULL, leases_return,
                                      apr_pool_cleanup_null);
        }
    }
}

void bff_ratelimit_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_pre_config(rl_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(rl_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(rl_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(rl_child_init, NULL, NULL, APR_HOOK_MIDDLE);
}
