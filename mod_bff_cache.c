/*
 * mod_bff: the response cache.
 *
 * Aggregated answers are stored in a primary store (Redis or memcached,
 * lib/bff_store_*.c, shared by every child and every instance) and, when
 * that store fails, in httpd's shared memory cache through the socache
 * provider API (shmcb by default), within the same request. The same
 * socache instance holds the optional near cache: hot answers kept for a
 * short time so most hits need no network round trip.
 *
 * Concurrent misses of one key are coalesced with a short lock in the
 * store (Redis SET NX PX; a lock entry under the global mutex in shared
 * memory): one request refreshes, the others wait briefly for its result
 * or get the stale copy. Counters live in shared memory (bff_shm_retained), so they are the
 * server's totals, and survive graceful restarts.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "ap_mpm.h"
#include "util_mutex.h"
#include "util_script.h"

#include "apr_atomic.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "mod_bff.h"
#include "mod_bff_auth.h"
#include "mod_bff_shared.h"
#include "mod_bff_cache.h"
#include "bff_cache.h"
#include "bff_redis.h"
#include "bff_http.h"

APLOG_USE_MODULE(bff);

#define MUTEX_TYPE      "bff-cache"
#define STATS_NAME      "bff-cache-stats"
#define NEAR_CHANNEL    "purge"

/* ------------------------------------------------------------ config -- */

struct bff_cache_conf_t {
    const char *store;           /* URL, "shmcb[:args]" or "off"; NULL unset */
    const char *fallback;        /* "shmcb[:args]" or "off"; NULL unset */
    const char *prefix;
    long connect_ms;
    long command_ms;
    int pool;
    long near_ms;
    apr_size_t max_entry;
};

typedef struct {
    const char *kind;            /* "header", "note", "env" */
    const char *name;
} vary_t;

typedef struct {
    const char *prefix;          /* "user:" */
    bff_ref_t *ref;              /* NULL: the tag is the prefix alone */
} tagtpl_t;

struct bff_cache_ep_t {
    long ttl_ms;                 /* > 0: cached */
    long stale_ms;               /* stale-if-error grace */
    long partial_ms;             /* partial answers; 0: never stored */
    long lock_ms;                /* wait for another request's refresh */
    int client_no_cache;         /* honour a client's no-cache */
    int shared;                  /* BFFCacheShared on: one answer for every
                                    identity */
    const char *cache_control;
    apr_array_header_t *vary;    /* vary_t */
    apr_array_header_t *key_query;
    apr_array_header_t *tags;    /* tagtpl_t */
    const char *endpoint;        /* "GET /api/profile/{user_id:int}" */
    const char *ep_tag;          /* "ep:" + encoded pattern */
    const bff_endpoint_t *ep;
};

bff_cache_conf_t *bff_cache_conf_create(apr_pool_t *p)
{
    bff_cache_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->connect_ms = UNSET;
    c->command_ms = UNSET;
    c->near_ms = UNSET;
    return c;
}

bff_cache_conf_t *bff_cache_conf_merge(apr_pool_t *p,
                                       const bff_cache_conf_t *base,
                                       const bff_cache_conf_t *add)
{
    bff_cache_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->store = add->store ? add->store : base->store;
    c->fallback = add->fallback ? add->fallback : base->fallback;
    c->prefix = add->prefix ? add->prefix : base->prefix;
    c->connect_ms = add->connect_ms != UNSET ? add->connect_ms : base->connect_ms;
    c->command_ms = add->command_ms != UNSET ? add->command_ms : base->command_ms;
    c->pool = add->pool ? add->pool : base->pool;
    c->near_ms = add->near_ms != UNSET ? add->near_ms : base->near_ms;
    c->max_entry = add->max_entry ? add->max_entry : base->max_entry;
    return c;
}

static const char *cfg_store(const bff_cache_conf_t *c)
{
    return c->store ? c->store : "shmcb";
}

static const char *cfg_fallback(const bff_cache_conf_t *c)
{
    return c->fallback ? c->fallback : "shmcb";
}

static apr_size_t cfg_max_entry(const bff_cache_conf_t *c)
{
    return c->max_entry ? c->max_entry : 512 * 1024;
}

static int is_shmcb(const char *spec)
{
    return !strncasecmp(spec, "shmcb", 5) && (!spec[5] || spec[5] == ':');
}

static const char *duration(cmd_parms *cmd, long *out, const char *arg,
                            int allow_zero)
{
    const char *err = bff_parse_duration_ms(out, arg, cmd->temp_pool);

    if (!err && *out == 0 && !allow_zero) {
        err = "must be greater than 0";
    }
    return err ? apr_psprintf(cmd->pool, "%s %s: %s", cmd->cmd->name, arg, err)
               : NULL;
}

const char *bff_cache_cmd_server(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);
    bff_cache_conf_t *c = sc->cache;
    /* one store per child process: not per virtual host */
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int id = (int)(apr_uintptr_t)cmd->info;
    bff_store_opts_t o;

    if (err) {
        return err;
    }
    switch (id) {
    case BFF_CC_STORE:
        if (!strcasecmp(arg, "off") || is_shmcb(arg)) {
            c->store = arg;
        }
        else if (!strncmp(arg, "redis", 5)) {
            bff_redis_url_t u;
            if ((err = bff_redis_url_parse(&u, arg, cmd->temp_pool))) {
                return apr_psprintf(cmd->pool, "BFFCacheStore: %s", err);
            }
            c->store = arg;
        }
        else if (!strncmp(arg, "memcache://", 11)) {
            apr_array_header_t *servers;
            if ((err = bff_memcache_url_parse(&servers, arg, cmd->temp_pool))) {
                return apr_psprintf(cmd->pool, "BFFCacheStore: %s", err);
            }
            c->store = arg;
        }
        else {
            return apr_psprintf(cmd->pool, "BFFCacheStore %s: expected "
                                "redis://[:password@]host:port/db, "
                                "memcache://host:port[,host:port...], "
                                "shmcb[:path(size)] or off", arg);
        }
        return NULL;
    case BFF_CC_FALLBACK:
        if (strcasecmp(arg, "off") && !is_shmcb(arg)) {
            return apr_psprintf(cmd->pool, "BFFCacheFallback %s: expected "
                                "shmcb[:path(size)] or off", arg);
        }
        c->fallback = arg;
        return NULL;
    case BFF_CC_PREFIX:
        if (!bff_cache_prefix_valid(arg)) {
            return apr_psprintf(cmd->pool, "BFFCachePrefix %s: up to 64 of "
                                "A-Z a-z 0-9 _ . : -", arg);
        }
        c->prefix = arg;
        return NULL;
    case BFF_CC_CONNECT:
        return duration(cmd, &c->connect_ms, arg, 0);
    case BFF_CC_COMMAND:
        return duration(cmd, &c->command_ms, arg, 0);
    case BFF_CC_NEAR:
        return duration(cmd, &c->near_ms, arg, 1);
    case BFF_CC_POOL: {
        char *end;
        long n = strtol(arg, &end, 10);
        if (!*arg || *end || n < 1 || n > 4096) {
            return apr_psprintf(cmd->pool, "BFFCachePoolSize %s: expected "
                                "1 to 4096", arg);
        }
        c->pool = (int)n;
        return NULL;
    }
    case BFF_CC_MAXENTRY:
        bff_store_opts_default(&o);
        if ((err = bff_parse_size(&c->max_entry, arg, cmd->temp_pool))
            || c->max_entry == 0 || c->max_entry > o.max_value) {
            return apr_psprintf(cmd->pool, "BFFCacheMaxEntrySize %s: %s", arg,
                                err ? err : "expected 1 byte to 16M");
        }
        return NULL;
    }
    return "BFFCache: unknown directive";
}

static bff_cache_ep_t *ep_cache(bff_ep_conf_t *epc, apr_pool_t *p)
{
    if (!epc->cache) {
        bff_cache_ep_t *ce = apr_pcalloc(p, sizeof(*ce));
        ce->stale_ms = 0;
        ce->partial_ms = 0;
        ce->lock_ms = UNSET;
        ce->vary = apr_array_make(p, 2, sizeof(vary_t));
        ce->key_query = apr_array_make(p, 2, sizeof(const char *));
        ce->tags = apr_array_make(p, 2, sizeof(tagtpl_t));
        epc->cache = ce;
    }
    return epc->cache;
}

const char *bff_cache_cmd_endpoint(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = bff_in_endpoint_only(cmd, dcv);
    bff_ep_conf_t *epc = err ? NULL : ((bff_dir_conf_t *)dcv)->epc;
    bff_cache_ep_t *ce;

    if (!epc) {
        return err;
    }
    ce = ep_cache(epc, cmd->pool);
    switch ((int)(apr_uintptr_t)cmd->info) {
    case BFF_CE_TTL:
        return duration(cmd, &ce->ttl_ms, arg, 1);
    case BFF_CE_STALE:
        return duration(cmd, &ce->stale_ms, arg, 1);
    case BFF_CE_PARTIAL:
        return duration(cmd, &ce->partial_ms, arg, 1);
    case BFF_CE_LOCK:
        return duration(cmd, &ce->lock_ms, arg, 1);
    case BFF_CE_NOCACHE:
    case BFF_CE_SHARED:
        if (strcasecmp(arg, "on") && strcasecmp(arg, "off")) {
            return apr_psprintf(cmd->pool, "%s %s: expected on or off",
                                cmd->cmd->name, arg);
        }
        *((int)(apr_uintptr_t)cmd->info == BFF_CE_SHARED ? &ce->shared
          : &ce->client_no_cache) = !strcasecmp(arg, "on");
        return NULL;
    case BFF_CE_CONTROL: {
        const char *s;
        for (s = arg; *s; s++) {
            if (apr_iscntrl(*s)) {
                return "BFFCacheControl: control characters are not allowed";
            }
        }
        ce->cache_control = arg;
        return NULL;
    }
    }
    return "BFFCache: unknown directive";
}

static const char *tag_template(tagtpl_t *t, const char *arg, apr_pool_t *p)
{
    const char *open = strchr(arg, '{');
    const char *err;

    if (!open) {
        if (!bff_cache_tag_valid(arg)) {
            return "a tag is 1 to 255 visible ASCII characters";
        }
        t->prefix = arg;
        t->ref = NULL;
        return NULL;
    }
    if (arg[strlen(arg) - 1] != '}' || strchr(open + 1, '{')) {
        return "a tag template is PREFIX{reference}, e.g. user:{user_id}";
    }
    t->prefix = apr_pstrmemdup(p, arg, (apr_size_t)(open - arg));
    if (*t->prefix && !bff_cache_tag_valid(t->prefix)) {
        return "the prefix must be visible ASCII";
    }
    err = bff_ref_parse(&t->ref, apr_pstrmemdup(p, open + 1,
                                                strlen(open + 1) - 1), p);
    return err;
}

const char *bff_cache_cmd_endpoint_list(cmd_parms *cmd, void *dcv,
                                        const char *arg)
{
    const char *err = bff_in_endpoint_only(cmd, dcv);
    bff_ep_conf_t *epc = err ? NULL : ((bff_dir_conf_t *)dcv)->epc;
    bff_cache_ep_t *ce;
    const char *s;

    if (!epc) {
        return err;
    }
    ce = ep_cache(epc, cmd->pool);
    switch ((int)(apr_uintptr_t)cmd->info) {
    case BFF_CE_VARY: {
        vary_t *v = apr_array_push(ce->vary);
        const char *colon = strchr(arg, ':');
        if (!colon || colon == arg || !colon[1]) {
            return apr_psprintf(cmd->pool, "BFFCacheVary %s: expected "
                                "header:NAME, note:NAME or env:NAME", arg);
        }
        v->kind = apr_pstrmemdup(cmd->pool, arg, (apr_size_t)(colon - arg));
        v->name = colon + 1;
        if (strcmp(v->kind, "header") && strcmp(v->kind, "note")
            && strcmp(v->kind, "env")) {
            return apr_psprintf(cmd->pool, "BFFCacheVary %s: unknown kind "
                                "'%s' (header, note or env)", arg, v->kind);
        }
        if (!strcmp(v->kind, "note") && !bff_note_known(v->name)) {
            /* another module may set it: a warning, not an error */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cmd->server,
                         BFFLOGNO(134) "BFFCacheVary %s (%s:%d): mod_bff "
                         "never sets the note '%s'; unless another module "
                         "does, every caller shares one cache entry", arg,
                         cmd->directive->filename, cmd->directive->line_num,
                         v->name);
        }
        return NULL;
    }
    case BFF_CE_KEYQUERY:
        for (s = arg; *s; s++) {
            if (!apr_isalnum(*s) && !strchr("-_.~[]", *s)) {
                return apr_psprintf(cmd->pool, "BFFCacheKeyQuery %s: not a "
                                    "plain parameter name", arg);
            }
        }
        APR_ARRAY_PUSH(ce->key_query, const char *) = arg;
        return NULL;
    case BFF_CE_TAG:
        if ((err = tag_template(apr_array_push(ce->tags), arg, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFCacheTag %s: %s", arg, err);
        }
        return NULL;
    }
    return "BFFCache: unknown directive";
}

/* BFFCachePurgeScope vhost|server, in the purge handler's location. */
const char *bff_cache_cmd_purge_scope(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    bff_dir_conf_t *dc = dcv;

    if (dc->epc) {
        return "BFFCachePurgeScope belongs in the <Location> of the purge "
               "handler, not in <BFFEndpoint>";
    }
    if (!strcasecmp(arg, "vhost")) {
        dc->purge_scope = BFF_PURGE_VHOST;
    }
    else if (!strcasecmp(arg, "server")) {
        dc->purge_scope = BFF_PURGE_SERVER;
    }
    else {
        return apr_psprintf(cmd->pool, "BFFCachePurgeScope %s: expected vhost "
                            "or server", arg);
    }
    return NULL;
}

/* Called when the <BFFEndpoint> section is complete. */
const char *bff_cache_ep_finalize(bff_ep_conf_t *epc, apr_pool_t *p)
{
    bff_cache_ep_t *ce = epc->cache;
    int i;

    if (!ce) {
        return NULL;
    }
    if (epc->ep->takes_body) {
        return apr_psprintf(p, "BFFCache* directives apply to GET endpoints "
                            "only, not %s", epc->ep->method);
    }
    if (ce->ttl_ms <= 0) {
        return "BFFCache* directives need BFFCacheTTL (greater than 0)";
    }
    for (i = 0; i < ce->tags->nelts; i++) {
        tagtpl_t *t = &APR_ARRAY_IDX(ce->tags, i, tagtpl_t);
        const char *root = t->ref ? bff_ref_root(t->ref) : NULL;
        if (root && bff_endpoint_param(epc->ep, root) < 0
            && bff_endpoint_backend(epc->ep, root) < 0) {
            return apr_psprintf(p, "BFFCacheTag %s{%s}: names neither a "
                                "parameter nor a backend", t->prefix,
                                bff_ref_text(t->ref));
        }
    }
    ce->ep = epc->ep;
    ce->endpoint = apr_pstrcat(p, epc->ep->method, " ", epc->ep->pattern, NULL);
    ce->ep_tag = apr_pstrcat(p, "ep:", bff_url_encode(epc->ep->pattern, p),
                             NULL);
    return NULL;
}

/* ----------------------------------------------------------- counters -- */

typedef struct {
    apr_uint64_t hits, near_hits, misses, stale, bypass, coalesced;
    apr_uint64_t errors, fallbacks, stored, skipped, purges, not_modified;
    apr_uint32_t near_gen;
    apr_uint32_t pad;
} stats_t;

static stats_t local_stats;          /* when no shared memory is available */
static stats_t *stats = &local_stats;

#define COUNT(field) __atomic_fetch_add(&stats->field, 1, __ATOMIC_RELAXED)

/* ------------------------------------------------------ process state -- */

static bff_cache_conf_t *gconf;               /* the main server's */
static bff_shared_cache_t shm;             /* the shmcb store */
static server_rec *main_server;
static bff_store_t *primary;                  /* per child */
static bff_store_t *shm_store;                /* shared memory, or NULL */
static void store_answered(request_rec *r);
static int caching;                           /* some endpoint caches */
static apr_thread_t *subscriber;
static volatile apr_uint32_t subscriber_stop;

/* ----------------------------------------- the shared memory store -- */

/* A bff_store_t over an ap_socache instance. shmcb is not safe for
 * concurrent use (AP_SOCACHE_FLAG_NOTMPSAFE): every call holds the global
 * mutex, which also makes lock/unlock and tag updates atomic. */

#define SHM_TAG_MAX 4096   /* bytes of keys recorded per tag */

/* shmcb picks a subcache by the first byte of an id, and every key starts
 * with the same prefix: ids get one leading byte hashed from the whole
 * key (FNV-1a), so entries spread over all subcaches instead of evicting
 * one another in one. */
static const unsigned char *shm_id(unsigned int *idlen, const char *key,
                                   apr_pool_t *p)
{
    apr_size_t n = strlen(key), i;
    apr_uint32_t h = 2166136261u;
    unsigned char *id = apr_palloc(p, n + 1);

    for (i = 0; i < n; i++) {
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    }
    id[0] = (unsigned char)(h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24));
    memcpy(id + 1, key, n);
    *idlen = (unsigned int)(n + 1);
    return id;
}

static apr_status_t shm_remove_locked(const char *key, apr_pool_t *p)
{
    unsigned int idlen;
    const unsigned char *id = shm_id(&idlen, key, p);

    return shm.provider->remove(shm.inst, shm.server, id, idlen, p);
}

static apr_status_t shm_get_locked(const char **val, apr_size_t *len,
                                   const char *key, apr_pool_t *p)
{
    unsigned int cap = 16384, n, idlen;
    const unsigned char *id = shm_id(&idlen, key, p);
    unsigned char *buf;
    apr_status_t rv;

    for (;;) {
        buf = apr_palloc(p, cap);
        n = cap;
        rv = shm.provider->retrieve(shm.inst, shm.server, id, idlen, buf,
                                    &n, p);
        if (rv == APR_ENOSPC && cap < cfg_max_entry(gconf) + 1024) {
            cap = (unsigned int)(cfg_max_entry(gconf) + 1024);
            continue;
        }
        break;
    }
    if (rv == APR_SUCCESS) {
        *val = (const char *)buf;
        *len = n;
    }
    return rv;
}

static apr_status_t shm_put_locked(const char *key, const char *val,
                                   apr_size_t len, long ttl_ms, apr_pool_t *p)
{
    unsigned int idlen;
    const unsigned char *id = shm_id(&idlen, key, p);

    return shm.provider->store(shm.inst, shm.server, id, idlen,
                               apr_time_now() + apr_time_from_msec(ttl_ms),
                               (unsigned char *)val, (unsigned int)len, p);
}

static int shm_lock(void)
{
    return bff_shared_cache_lock(&shm);
}

static void shm_unlock(void)
{
    bff_shared_cache_unlock(&shm);
}

static bff_store_rc_e shm_get(bff_store_t *s, const char **val,
                              apr_size_t *len, const char *key, apr_pool_t *p)
{
    apr_status_t rv;

    if (!shm_lock()) {
        return BFF_STORE_ERROR;
    }
    rv = shm_get_locked(val, len, key, p);
    shm_unlock();
    return rv == APR_SUCCESS ? BFF_STORE_OK
           : rv == APR_NOTFOUND ? BFF_STORE_MISS : BFF_STORE_ERROR;
}

/* A tag's entry lists the keys stored with it, one per line; bounded, so
 * the oldest keys fall off (they expire soon anyway). */
static void shm_tag_add_locked(const char *tag, const char *key,
                               long ttl_ms, apr_pool_t *p)
{
    const char *tkey = bff_cache_tag_key(gconf->prefix ? gconf->prefix : "bff:",
                                         tag, p);
    const char *old = NULL, *list;
    apr_size_t olen = 0, klen = strlen(key);

    if (shm_get_locked(&old, &olen, tkey, p) != APR_SUCCESS) {
        old = "";
        olen = 0;
    }
    while (olen + klen + 1 > SHM_TAG_MAX && olen) {
        const char *nl = memchr(old, '\n', olen);
        apr_size_t cut = nl ? (apr_size_t)(nl - old) + 1 : olen;
        old += cut;
        olen -= cut;
    }
    list = apr_pstrcat(p, apr_pstrmemdup(p, old, olen), key, "\n", NULL);
    shm_put_locked(tkey, list, strlen(list), ttl_ms, p);
}

static bff_store_rc_e shm_set(bff_store_t *s, const char *key,
                              const char *val, apr_size_t len, long ttl_ms,
                              const apr_array_header_t *tags, apr_pool_t *p)
{
    apr_status_t rv;
    int i;

    if (!shm_lock()) {
        return BFF_STORE_ERROR;
    }
    rv = shm_put_locked(key, val, len, ttl_ms, p);
    for (i = 0; rv == APR_SUCCESS && tags && i < tags->nelts; i++) {
        shm_tag_add_locked(APR_ARRAY_IDX(tags, i, const char *), key, ttl_ms, p);
    }
    shm_unlock();
    return rv == APR_SUCCESS ? BFF_STORE_OK : BFF_STORE_ERROR;
}

static bff_store_rc_e shm_del(bff_store_t *s, const char *key, apr_pool_t *p)
{
    apr_status_t rv;

    if (!shm_lock()) {
        return BFF_STORE_ERROR;
    }
    rv = shm_remove_locked(key, p);
    shm_unlock();
    return rv == APR_SUCCESS ? BFF_STORE_OK : BFF_STORE_MISS;
}

static bff_store_rc_e shm_lockkey(bff_store_t *s, const char **token,
                                  const char *key, long ttl_ms, apr_pool_t *p)
{
    const char *lkey = apr_pstrcat(p, key, ":lock", NULL), *v;
    apr_size_t n;
    bff_store_rc_e rc;

    if (!shm_lock()) {
        return BFF_STORE_ERROR;
    }
    if (shm_get_locked(&v, &n, lkey, p) == APR_SUCCESS) {
        rc = BFF_STORE_HELD;
    }
    else {
        *token = bff_store_token(p);
        rc = shm_put_locked(lkey, *token, strlen(*token), ttl_ms, p)
             == APR_SUCCESS ? BFF_STORE_OK : BFF_STORE_ERROR;
    }
    shm_unlock();
    return rc;
}

static bff_store_rc_e shm_unlockkey(bff_store_t *s, const char *key,
                                    const char *token, apr_pool_t *p)
{
    const char *lkey = apr_pstrcat(p, key, ":lock", NULL), *v;
    apr_size_t n;
    bff_store_rc_e rc = BFF_STORE_MISS;

    if (!shm_lock()) {
        return BFF_STORE_ERROR;
    }
    if (shm_get_locked(&v, &n, lkey, p) == APR_SUCCESS
        && n == strlen(token) && !memcmp(v, token, n)) {
        shm_remove_locked(lkey, p);
        rc = BFF_STORE_OK;
    }
    shm_unlock();
    return rc;
}

static bff_store_rc_e shm_purge_tag(bff_store_t *s, long *npurged,
                                    const char *tag, apr_pool_t *p)
{
    const char *tkey = bff_cache_tag_key(gconf->prefix ? gconf->prefix : "bff:",
                                         tag, p);
    const char *list;
    apr_size_t len;
    long n = 0;

    if (!shm_lock()) {
        return BFF_STORE_ERROR;
    }
    if (shm_get_locked(&list, &len, tkey, p) == APR_SUCCESS) {
        char *copy = apr_pstrmemdup(p, list, len), *last, *k;
        for (k = apr_strtok(copy, "\n", &last); k;
             k = apr_strtok(NULL, "\n", &last)) {
            if (shm_remove_locked(k, p) == APR_SUCCESS) {
                n++;
            }
        }
        shm_remove_locked(tkey, p);
    }
    shm_unlock();
    *npurged = n;
    return BFF_STORE_OK;
}

static bff_store_rc_e shm_publish(bff_store_t *s, const char *channel,
                                  const char *msg, apr_size_t len,
                                  apr_pool_t *p)
{
    return BFF_STORE_UNSUPPORTED;
}

static bff_store_rc_e shm_subscribe(bff_store_t *s, const char *channel,
                                    bff_store_msg_fn *fn, void *baton,
                                    volatile apr_uint32_t *stop, apr_pool_t *p)
{
    return BFF_STORE_UNSUPPORTED;
}

static void shm_health(bff_store_t *s, bff_store_health_t *out, apr_pool_t *p)
{
    memset(out, 0, sizeof(*out));
    out->up = 1;
    out->servers = 1;
}

static bff_store_rc_e shm_xadd(bff_store_t *s, int *added, const char *stream,
                               long maxlen, const bff_store_fields_t *entries,
                               int n, apr_pool_t *p)
{
    *added = 0;
    return BFF_STORE_UNSUPPORTED;
}

static const bff_store_vtable_t shm_vtable = {
    "shmcb", shm_get, shm_set, shm_del, shm_lockkey, shm_unlockkey,
    shm_purge_tag, shm_publish, shm_subscribe, shm_health, shm_xadd
};

static bff_store_t shm_store_obj = { &shm_vtable, NULL };

/* ------------------------------------------------------- near cache -- */

static long near_ms(void)
{
    return gconf && gconf->near_ms > 0 && shm_store && primary
           && primary != shm_store ? gconf->near_ms : 0;
}

/* Near entries live under a generation number that any purge bumps (on
 * every instance, through Redis pub/sub): invalidating all of them at once
 * is cheap and they only live for a second or so anyway. */
static const char *near_key(const char *key, apr_pool_t *p)
{
    return apr_psprintf(p, "n%u:%s",
                        __atomic_load_n(&stats->near_gen, __ATOMIC_ACQUIRE),
                        key);
}

static void near_flush(void)
{
    __atomic_fetch_add(&stats->near_gen, 1, __ATOMIC_ACQ_REL);
}

static void on_purge_message(void *baton, const char *msg, apr_size_t len)
{
    near_flush();   /* msg NULL (resubscribed, maybe missed some): flush too */
}

static void *APR_THREAD_FUNC subscriber_main(apr_thread_t *t, void *data)
{
    apr_pool_t *p;

    apr_pool_create(&p, apr_thread_pool_get(t));
    while (!subscriber_stop) {
        bff_store_subscribe(primary, apr_pstrcat(p, gconf->prefix ? gconf->prefix
                                                 : "bff:", NEAR_CHANNEL, NULL),
                            on_purge_message, NULL, &subscriber_stop, p);
        apr_pool_clear(p);
        /* the connection failed: entries may have missed a purge */
        near_flush();
        if (!subscriber_stop) {
            apr_sleep(apr_time_from_msec(500));
        }
    }
    apr_pool_destroy(p);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static apr_status_t subscriber_cleanup(void *data)
{
    apr_status_t rv;

    if (subscriber) {
        subscriber_stop = 1;
        apr_thread_join(&rv, subscriber);
        subscriber = NULL;
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------ request -- */

struct bff_cache_req_t {
    const bff_cache_ep_t *ce;
    const char *key;
    bff_store_t *store;          /* where this request reads and writes */
    const char *token;           /* the refresh lock we hold */
    bff_cache_entry_t stale;     /* an expired copy still usable */
    int have_stale;
    const char *status;          /* X-Cache-Status for a computed answer */
    const char *const *values;
    const char *user;            /* the identity the answer is stored for
                                    (r->user); NULL: shared */
};

/* Headers every backend call carries that differ on every request and
 * say nothing about the answer. Everything else a backend gets is part
 * of the key. */
static int per_request_header(const char *line)
{
    static const char *const names[] = { "X-Request-ID", "traceparent",
                                         "tracestate", NULL };
    apr_size_t n = strcspn(line, ":");
    int i;

    for (i = 0; names[i]; i++) {
        if (strlen(names[i]) == n && !strncasecmp(line, names[i], n)) {
            return 1;
        }
    }
    return 0;
}

/* A virtual host as the key and purge scopes see it: name and port. */
static const char *vhost_id(const server_rec *s, apr_pool_t *p)
{
    unsigned port = s->port ? s->port : s->addrs ? s->addrs->host_port : 0;

    return apr_psprintf(p, "%s:%u", s->server_hostname ? s->server_hostname
                                                       : "", port);
}

/* Tags are per virtual host, so a purge received by one never reaches the
 * entries of another (unless its location says BFFCachePurgeScope
 * server). */
static const char *scoped_tag(const server_rec *s, const char *tag,
                              apr_pool_t *p)
{
    const char *id = vhost_id(s, p);
    unsigned char md[32];

    bff_sha256(md, id, strlen(id));
    return apr_pstrcat(p, "v", bff_hex(md, 6, p), "/", tag, NULL);
}

/* Whoever authenticated the request (mod_bff's AuthTypes, httpd's Basic,
 * any module that sets r->user): the AuthType, the token's issuer when
 * there is one, and the user. Never a credential. */
static const char *request_identity(request_rec *r)
{
    const char *type = ap_auth_type(r), *iss;

    if (!r->user) {
        return NULL;
    }
    iss = bff_auth_claim(r, "iss");
    return apr_pstrcat(r->pool, type ? type : "", "\n", iss ? iss : "", "\n",
                       r->user, NULL);
}

/* The tag of one user's entries (PURGE ?identity=USER); hashed, so any
 * user name gives a short tag. */
static const char *identity_tag(const char *user, apr_pool_t *p)
{
    unsigned char md[32];

    bff_sha256(md, user, strlen(user));
    return apr_pstrcat(p, "identity:", bff_hex(md, 16, p), NULL);
}

typedef struct {
    apr_pool_t *p;
    const char *name;
} vary_find_t;

static int vary_has(void *rec, const char *key, const char *value)
{
    vary_find_t *f = rec;

    return !ap_find_token(f->p, value, f->name);   /* 0 stops: found */
}

/* Adds name to the answer's Vary unless another part of the module (the
 * client profile) or of httpd named it already. */
static void vary_add(request_rec *r, const char *name)
{
    vary_find_t f;

    f.p = r->pool;
    f.name = name;
    if (apr_table_do(vary_has, &f, r->headers_out, "Vary", NULL)) {
        apr_table_mergen(r->headers_out, "Vary", name);
    }
}

/* The request headers an answer of the endpoint varies on: those
 * forwarded to backends, BFFCacheVary header:NAME, and the credential
 * when answers are stored per identity. */
static void set_vary(request_rec *r, const bff_ep_conf_t *epc, int per_user)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);
    const bff_cache_ep_t *ce = epc->cache;
    int i;

    for (i = 0; i < sc->fwd_headers->nelts; i++) {
        vary_add(r, APR_ARRAY_IDX(sc->fwd_headers, i, const char *));
    }
    for (i = 0; i < epc->fwd_headers->nelts; i++) {
        vary_add(r, APR_ARRAY_IDX(epc->fwd_headers, i, const char *));
    }
    for (i = 0; i < ce->vary->nelts; i++) {
        const vary_t *v = &APR_ARRAY_IDX(ce->vary, i, vary_t);
        if (!strcmp(v->kind, "header")) {
            vary_add(r, v->name);
        }
    }
    if (per_user) {
        vary_add(r, "Authorization");
    }
}

/* Cache-Control of an answer: the admin's (BFFCacheControl) only on a
 * complete 200; "private" on other 200s stored per identity, and on all
 * of them when the admin set none. */
static void set_cache_control(request_rec *r, const bff_cache_req_t *cr,
                              int status, int completed)
{
    if (status != HTTP_OK) {
        return;
    }
    if (cr->ce->cache_control && completed) {
        apr_table_setn(r->headers_out, "Cache-Control", cr->ce->cache_control);
    }
    else if (cr->user) {
        apr_table_setn(r->headers_out, "Cache-Control", "private");
    }
}

static const char *vary_value(request_rec *r, const vary_t *v)
{
    if (!strcmp(v->kind, "header")) {
        return apr_table_get(r->headers_in, v->name);
    }
    if (!strcmp(v->kind, "note")) {
        return apr_table_get(r->notes, v->name);
    }
    return apr_table_get(r->subprocess_env, v->name);
}

static const char *build_key(request_rec *r, const bff_ep_conf_t *epc,
                             const char *const *values,
                             const bff_call_ctx_t *cc, const char *identity)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);
    const bff_cache_ep_t *ce = epc->cache;
    int np = bff_route_nparams(epc->ep->route), i;
    bff_cache_kv_t *params = apr_palloc(r->pool, sizeof(*params) * (np + 1));
    bff_cache_kv_t *vary = apr_palloc(r->pool, sizeof(*vary)
                                      * (apr_size_t)(ce->vary->nelts + 1));
    apr_array_header_t *qkeys, *hdrs;
    bff_cache_key_in_t in;
    const char *key, *err;

    for (i = 0; i < np; i++) {
        params[i].name = bff_route_param_name(epc->ep->route, i);
        params[i].value = values[i];
    }
    for (i = 0; i < ce->vary->nelts; i++) {
        const vary_t *v = &APR_ARRAY_IDX(ce->vary, i, vary_t);
        vary[i].name = apr_pstrcat(r->pool, v->kind, ":", v->name, NULL);
        vary[i].value = vary_value(r, v);
    }
    /* every query parameter a backend can see is part of the key */
    qkeys = apr_array_append(r->pool, ce->key_query, epc->fwd_query);
    qkeys = apr_array_append(r->pool, qkeys, sc->fwd_query);
    memset(&in, 0, sizeof(in));
    in.prefix = gconf->prefix ? gconf->prefix : "bff:";
    in.endpoint = ce->endpoint;
    in.params = params;
    in.nparams = np;
    in.query = r->args;
    in.query_keys = qkeys;
    /* the effective field selection (mod_bff_profile.c), normalised */
    in.fields = apr_table_get(r->notes, "bff-fields");
    in.vary = vary;
    in.nvary = ce->vary->nelts;
    /* what the backends get, as the handler built it for them */
    hdrs = apr_array_make(r->pool, cc->headers ? cc->headers->nelts : 1,
                          sizeof(const char *));
    for (i = 0; cc->headers && i < cc->headers->nelts; i++) {
        const char *line = APR_ARRAY_IDX(cc->headers, i, const char *);
        if (!per_request_header(line)) {
            APR_ARRAY_PUSH(hdrs, const char *) = line;
        }
    }
    in.headers = hdrs;
    in.backend_query = cc->query;
    in.scope = apr_pstrcat(r->pool, ap_http_scheme(r), "://",
                           vhost_id(r->server, r->pool), NULL);
    in.config = epc->fingerprint;
    in.identity = identity;
    if ((err = bff_cache_key(&key, &in, r->pool))) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(30)
                      "cache key: %s", err);
        return NULL;
    }
    return key;
}

static int client_no_cache(request_rec *r)
{
    const char *cc = apr_table_get(r->headers_in, "Cache-Control");
    const char *pragma = apr_table_get(r->headers_in, "Pragma");

    return (cc && (ap_strcasestr(cc, "no-cache") || ap_strcasestr(cc, "max-age=0")))
           || (!cc && pragma && ap_strcasestr(pragma, "no-cache"));
}

/* Answers from a stored entry: status, headers, 304 when the client's
 * copy is current. */
static int serve_entry(request_rec *r, const bff_cache_entry_t *e,
                       const bff_cache_req_t *cr, const char *status)
{
    apr_table_setn(r->headers_out, "X-Cache-Status", status);
    apr_table_setn(r->headers_out, "Age",
                   apr_ltoa(r->pool, bff_cache_entry_age(e, apr_time_now())));
    apr_table_setn(r->headers_out, "X-BFF-Completed",
                   e->completed ? "true" : "false");
    apr_table_setn(r->notes, "bff-cache", status);
    apr_table_setn(r->notes, "bff-completed", e->completed ? "true" : "false");
    set_cache_control(r, cr, e->status, e->completed);
    return bff_send_body(r, e->status, e->content_type ? e->content_type
                         : "application/json", e->body, e->body_len, e->etag);
}

static int fetch_entry(bff_cache_entry_t *e, bff_store_t *st, const char *key,
                       request_rec *r, bff_store_rc_e *rcp)
{
    const char *val, *err;
    apr_size_t len;
    bff_store_rc_e rc = bff_store_get(st, &val, &len, key, r->pool);

    *rcp = rc;
    if (st == primary && rc != BFF_STORE_ERROR) {
        store_answered(r);
    }
    if (rc != BFF_STORE_OK) {
        return 0;
    }
    if ((err = bff_cache_entry_decode(e, val, len, cfg_max_entry(gconf),
                                      r->pool))) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(31)
                      "cache entry for %s unusable (%s): ignored", key, err);
        return 0;
    }
    return 1;
}

/* The primary store's outage as this child saw it: logged once when it
 * starts and once when it ends, as the rate limiter does. */
static volatile apr_uint32_t store_down;

static void store_failed(request_rec *r, const char *what)
{
    bff_store_health_t h;

    if (__atomic_exchange_n(&store_down, 1, __ATOMIC_ACQ_REL)) {
        return;
    }
    bff_store_health(primary, &h, r->pool);
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(42)
                  "cache store %s failed on %s (%s): %s until it answers "
                  "again", primary->vt->name, what,
                  h.last_error ? h.last_error : "no detail",
                  shm_store && shm_store != primary
                  ? "answers are kept in shared memory"
                  : "answers are not cached");
}

static void store_answered(request_rec *r)
{
    if (__atomic_load_n(&store_down, __ATOMIC_ACQUIRE)
        && __atomic_exchange_n(&store_down, 0, __ATOMIC_ACQ_REL)) {
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, BFFLOGNO(43)
                      "cache store %s answers again", primary->vt->name);
    }
}

/* The primary store, or the shared memory one when the primary fails. */
static bff_store_t *fall_back(request_rec *r, const char *what)
{
    COUNT(errors);
    store_failed(r, what);
    if (!shm_store || shm_store == primary) {
        return NULL;
    }
    COUNT(fallbacks);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(32)
                  "cache store %s failed on %s: using shared memory",
                  primary->vt->name, what);
    return shm_store;
}

int bff_cache_lookup(bff_cache_req_t **out, request_rec *r,
                     const bff_ep_conf_t *epc, const char *const *values,
                     const bff_call_ctx_t *cc)
{
    const bff_cache_ep_t *ce = epc->cache;
    bff_cache_req_t *cr;
    bff_cache_entry_t e;
    bff_store_rc_e rc;
    apr_time_t now, until;
    long lock_ms, wait_ms;
    const char *identity;

    *out = NULL;
    /* privacy is decided per request: an authenticated request gets
     * answers stored for its identity, unless the endpoint is shared */
    identity = ce && !ce->shared ? request_identity(r) : NULL;
    if (ce) {
        set_vary(r, epc, identity != NULL);
    }
    if (!ce || !primary) {
        apr_table_setn(r->headers_out, "X-Cache-Status", "BYPASS");
        apr_table_setn(r->notes, "bff-cache", "BYPASS");
        return DECLINED;
    }
    cr = apr_pcalloc(r->pool, sizeof(*cr));
    cr->ce = ce;
    cr->values = values;
    cr->store = primary;
    cr->status = "MISS";
    cr->user = identity ? r->user : NULL;
    if (!(cr->key = build_key(r, epc, values, cc, identity))) {
        return DECLINED;
    }
    *out = cr;

    if (ce->client_no_cache && client_no_cache(r)) {
        COUNT(bypass);
        cr->status = "BYPASS";
        return DECLINED;          /* compute, and refresh the stored copy */
    }

    now = apr_time_now();
    if (near_ms()) {
        bff_store_rc_e nrc;
        if (fetch_entry(&e, shm_store, near_key(cr->key, r->pool), r, &nrc)
            && bff_cache_entry_is_fresh(&e, now)) {
            COUNT(hits);
            COUNT(near_hits);
            return serve_entry(r, &e, cr, "HIT");
        }
    }
    if (fetch_entry(&e, cr->store, cr->key, r, &rc)) {
        if (bff_cache_entry_is_fresh(&e, now)) {
            COUNT(hits);
            if (near_ms()) {
                const char *buf;
                apr_size_t len;
                /* fresh until the primary copy expires, or for the near
                 * TTL from now, whichever comes first */
                bff_cache_entry_t ne = e;
                long age_ms = (long)apr_time_as_msec(now - e.created);
                ne.ttl_ms = age_ms < 0 ? near_ms()
                            : (e.ttl_ms < age_ms + near_ms() ? e.ttl_ms
                                                             : age_ms + near_ms());
                ne.grace_ms = 0;
                if (!bff_cache_entry_encode(&buf, &len, &ne, r->pool)) {
                    bff_store_set(shm_store, near_key(cr->key, r->pool), buf,
                                  len, near_ms(), NULL, r->pool);
                }
            }
            return serve_entry(r, &e, cr, "HIT");
        }
        if (bff_cache_entry_is_stale_usable(&e, now)) {
            cr->stale = e;
            cr->have_stale = 1;
        }
    }
    else if (rc == BFF_STORE_ERROR) {
        if (!(cr->store = fall_back(r, "get"))) {
            cr->key = NULL;       /* no store at all: just compute */
            COUNT(misses);
            return DECLINED;
        }
        if (fetch_entry(&e, cr->store, cr->key, r, &rc)) {
            if (bff_cache_entry_is_fresh(&e, now)) {
                COUNT(hits);
                return serve_entry(r, &e, cr, "HIT");
            }
            if (bff_cache_entry_is_stale_usable(&e, now)) {
                cr->stale = e;
                cr->have_stale = 1;
            }
        }
    }

    /* A miss: one request refreshes, the others wait for its answer. */
    lock_ms = epc->ep->timeout_ms + 1000;
    rc = bff_store_lock(cr->store, &cr->token, cr->key, lock_ms, r->pool);
    if (rc == BFF_STORE_OK || rc == BFF_STORE_ERROR) {
        if (rc == BFF_STORE_ERROR) {
            cr->token = NULL;
        }
        COUNT(misses);
        return DECLINED;
    }
    if (cr->have_stale) {
        COUNT(stale);
        return serve_entry(r, &cr->stale, cr, "STALE");
    }
    /* unset: wait up to the deadline; 0: never wait, compute at once */
    wait_ms = ce->lock_ms >= 0 ? ce->lock_ms : epc->ep->timeout_ms;
    until = apr_time_now() + apr_time_from_msec(wait_ms);
    while (apr_time_now() < until) {
        apr_sleep(apr_time_from_msec(wait_ms < 10 ? wait_ms : 10));
        if (fetch_entry(&e, cr->store, cr->key, r, &rc)
            && bff_cache_entry_is_fresh(&e, apr_time_now())) {
            COUNT(hits);
            COUNT(coalesced);
            return serve_entry(r, &e, cr, "HIT");
        }
        if (rc == BFF_STORE_ERROR) {
            break;
        }
    }
    COUNT(misses);
    return DECLINED;              /* waited long enough: compute ourselves */
}

/* Surrogate keys of an answer: the endpoint, the path, and the configured
 * templates over parameters and backend replies. */
static apr_array_header_t *entry_tags(request_rec *r, const bff_cache_req_t *cr,
                                      const bff_run_result_t *res)
{
    const bff_cache_ep_t *ce = cr->ce;
    apr_array_header_t *tags = apr_array_make(r->pool, 4, sizeof(const char *));
    int i;

    APR_ARRAY_PUSH(tags, const char *) = "all";
    APR_ARRAY_PUSH(tags, const char *) = ce->ep_tag;
    APR_ARRAY_PUSH(tags, const char *) = apr_pstrcat(r->pool, "url:",
                                         bff_url_encode(r->uri, r->pool), NULL);
    if (cr->user) {
        APR_ARRAY_PUSH(tags, const char *) = identity_tag(cr->user, r->pool);
    }
    for (i = 0; i < ce->tags->nelts; i++) {
        const tagtpl_t *t = &APR_ARRAY_IDX(ce->tags, i, tagtpl_t);
        json_t *base = NULL, *v;
        int k;

        if (!t->ref) {
            APR_ARRAY_PUSH(tags, const char *) = t->prefix;
            continue;
        }
        if ((k = bff_endpoint_param(ce->ep, bff_ref_root(t->ref))) >= 0) {
            base = bff_json_pool_own(json_string(cr->values[k]), r->pool);
        }
        else if ((k = bff_endpoint_backend(ce->ep, bff_ref_root(t->ref))) >= 0
                 && res->results[k].state == BFF_BE_OK) {
            base = res->results[k].value;
        }
        v = base ? bff_json_pool_own(bff_ref_eval(t->ref, base), r->pool) : NULL;
        if (!v) {
            continue;
        }
        for (k = 0; k < (json_is_array(v) ? (int)json_array_size(v) : 1); k++) {
            json_t *item = json_is_array(v) ? json_array_get(v, (size_t)k) : v;
            const char *s = json_is_string(item) ? json_string_value(item)
                            : json_is_integer(item)
                            ? apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                           (apr_int64_t)json_integer_value(item))
                            : NULL;
            const char *tag = s ? apr_pstrcat(r->pool, t->prefix,
                                              bff_url_encode(s, r->pool), NULL)
                                : NULL;
            if (tag && bff_cache_tag_valid(tag)
                && tags->nelts < BFF_CACHE_MAX_TAGS) {
                APR_ARRAY_PUSH(tags, const char *) = tag;
            }
        }
    }
    /* every tag within this virtual host (too long once scoped: dropped) */
    for (i = 0; i < tags->nelts; i++) {
        const char *t = scoped_tag(r->server, APR_ARRAY_IDX(tags, i,
                                                            const char *),
                                   r->pool);
        APR_ARRAY_IDX(tags, i, const char *) = bff_cache_tag_valid(t) ? t
                                                                      : NULL;
    }
    for (i = 0; i < tags->nelts;) {
        if (!APR_ARRAY_IDX(tags, i, const char *)) {
            APR_ARRAY_IDX(tags, i, const char *) = APR_ARRAY_IDX(tags,
                tags->nelts - 1, const char *);
            tags->nelts--;
        }
        else {
            i++;
        }
    }
    return tags;
}

static void store_answer(request_rec *r, bff_cache_req_t *cr,
                         const bff_run_result_t *res, const char *body,
                         apr_size_t len, const char *etag)
{
    const bff_cache_ep_t *ce = cr->ce;
    long ttl = res->completed ? ce->ttl_ms : ce->partial_ms;
    bff_cache_entry_t e;
    const char *buf, *err;
    apr_size_t blen;
    bff_store_rc_e rc;

    if (ttl <= 0) {
        return;
    }
    if (len > cfg_max_entry(gconf)) {
        COUNT(skipped);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(33)
                      "answer of %" APR_SIZE_T_FMT " bytes not cached: over "
                      "BFFCacheMaxEntrySize %" APR_SIZE_T_FMT, len,
                      cfg_max_entry(gconf));
        return;
    }
    memset(&e, 0, sizeof(e));
    e.status = res->status;
    e.content_type = "application/json";
    e.body = body;
    e.body_len = len;
    e.etag = etag;
    e.created = apr_time_now();
    e.ttl_ms = ttl;
    e.grace_ms = ce->stale_ms;
    e.completed = res->completed;
    e.tags = entry_tags(r, cr, res);
    if (APLOGrdebug(r)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(41)
                      "storing %s for %ld ms, tags: %s", cr->key, ttl,
                      apr_array_pstrcat(r->pool, e.tags, ' '));
    }
    if ((err = bff_cache_entry_encode(&buf, &blen, &e, r->pool))) {
        COUNT(skipped);
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(34)
                      "answer not cached: %s", err);
        return;
    }
    rc = bff_store_set(cr->store, cr->key, buf, blen,
                       bff_cache_entry_store_ttl_ms(&e), e.tags, r->pool);
    if (rc == BFF_STORE_ERROR && cr->store != shm_store
        && (cr->store = fall_back(r, "set")) != NULL) {
        rc = bff_store_set(cr->store, cr->key, buf, blen,
                           bff_cache_entry_store_ttl_ms(&e), e.tags, r->pool);
    }
    if (rc == BFF_STORE_OK) {
        COUNT(stored);
    }
}

int bff_cache_finish(bff_cache_req_t *cr, request_rec *r,
                     const bff_run_result_t *res, const char *body,
                     apr_size_t len, const char *etag)
{
    int answered = DECLINED;

    if (!cr || !cr->key) {
        return DECLINED;
    }
    if (res->status >= 500 && cr->have_stale) {
        /* stale-if-error: an expired copy beats an error */
        COUNT(stale);
        answered = serve_entry(r, &cr->stale, cr, "STALE");
    }
    else if (res->status == 200 && res->no_store) {
        /* a backend said its reply is for this client only: the answer
         * built from it is neither stored nor kept from before */
        COUNT(bypass);
        cr->status = "BYPASS";
        apr_table_setn(r->notes, "bff-cache-reason", res->no_store);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(44)
                      "answer not cached: %s", res->no_store);
        bff_store_del(cr->store, cr->key, r->pool);
    }
    else if (res->status == 200) {
        store_answer(r, cr, res, body, len, etag);
    }
    if (cr->token) {
        bff_store_unlock(cr->store, cr->key, cr->token, r->pool);
    }
    if (answered == DECLINED) {
        apr_table_setn(r->headers_out, "X-Cache-Status", cr->status);
        apr_table_setn(r->notes, "bff-cache", cr->status);
        apr_table_setn(r->headers_out, "Age", "0");
        if (res->status == 200 && res->no_store) {
            apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        }
        else {
            set_cache_control(r, cr, res->status, res->completed);
        }
    }
    return answered;
}

/* ------------------------------------------------------------- purge -- */

static int purge_reply(request_rec *r, int status, json_t *j)
{
    apr_size_t len;
    const char *body = bff_json_dump(&len, bff_json_pool_own(j, r->pool),
                                     r->pool);

    r->status = status;
    ap_set_content_type(r, status == 200 ? "application/json"
                                         : "application/problem+json");
    ap_set_content_length(r, (apr_off_t)len);
    ap_rwrite(body, (int)len, r);
    return OK;
}

static int purge_problem(request_rec *r, int status, const char *title,
                         const char *detail)
{
    return purge_reply(r, status, json_pack("{s:s, s:s, s:i, s:s}", "type",
                       "about:blank", "title", title, "status", status,
                       "detail", detail));
}

/* Purges tag within the virtual hosts of scope, from the primary store
 * and the shared memory one; the counts are summed. */
static void purge_scoped(request_rec *r, const char *tag, int server_wide,
                         long *n1, bff_store_rc_e *rc1, long *n2,
                         bff_store_rc_e *rc2)
{
    apr_hash_t *done = apr_hash_make(r->pool);
    server_rec *s;

    for (s = server_wide ? main_server : r->server; s;
         s = server_wide ? s->next : NULL) {
        const char *t = scoped_tag(s, tag, r->pool);
        long k = 0;
        bff_store_rc_e rc;

        if (apr_hash_get(done, t, APR_HASH_KEY_STRING)) {
            continue;        /* two server_recs of one name and port */
        }
        apr_hash_set(done, t, APR_HASH_KEY_STRING, t);
        rc = bff_store_purge_tag(primary, &k, t, r->pool);
        *n1 += k > 0 ? k : 0;
        if (rc != BFF_STORE_OK) {
            *rc1 = rc;
        }
        if (shm_store && shm_store != primary) {
            /* answers stored while the primary was down */
            k = 0;
            rc = bff_store_purge_tag(shm_store, &k, t, r->pool);
            *n2 += k > 0 ? k : 0;
            if (rc != BFF_STORE_OK) {
                *rc2 = rc;
            }
        }
    }
}

/* PURGE or DELETE /<location>?tag=user:7 | ?url=/api/profile/7 |
 * ?endpoint=/api/profile/{user_id:int} | ?identity=USER | ?all=1, within
 * the virtual host that receives it (BFFCachePurgeScope server: all). */
static int purge_handler(request_rec *r)
{
    bff_dir_conf_t *dc;
    apr_table_t *args;
    const char *tag, *v;
    long n1 = 0, n2 = 0, published = -1;
    bff_store_rc_e rc1 = BFF_STORE_OK, rc2 = BFF_STORE_OK;
    int server_wide;

    if (!r->handler || strcmp(r->handler, "bff-cache-purge")) {
        return DECLINED;
    }
    if (strcmp(r->method, "PURGE") && r->method_number != M_DELETE) {
        apr_table_setn(r->headers_out, "Allow", "PURGE, DELETE");
        return purge_problem(r, HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed",
                             "use PURGE or DELETE");
    }
    if (!primary) {
        return purge_problem(r, HTTP_SERVICE_UNAVAILABLE, "Service Unavailable",
                             "no cache store is configured");
    }
    dc = ap_get_module_config(r->per_dir_config, &bff_module);
    server_wide = dc && dc->purge_scope == BFF_PURGE_SERVER;
    ap_args_to_table(r, &args);
    if ((v = apr_table_get(args, "tag")) != NULL) {
        tag = v;
    }
    else if ((v = apr_table_get(args, "url")) != NULL) {
        tag = apr_pstrcat(r->pool, "url:", bff_url_encode(v, r->pool), NULL);
    }
    else if ((v = apr_table_get(args, "endpoint")) != NULL) {
        tag = apr_pstrcat(r->pool, "ep:", bff_url_encode(v, r->pool), NULL);
    }
    else if ((v = apr_table_get(args, "identity")) != NULL && *v) {
        tag = identity_tag(v, r->pool);
    }
    else if ((v = apr_table_get(args, "all")) != NULL && !strcmp(v, "1")) {
        tag = "all";      /* every entry carries it */
    }
    else {
        return purge_problem(r, HTTP_BAD_REQUEST, "Bad Request",
                             "name what to purge: ?tag=, ?url=, ?endpoint=, "
                             "?identity= or ?all=1");
    }
    if (!bff_cache_tag_valid(tag)
        || !bff_cache_tag_valid(scoped_tag(r->server, tag, r->pool))) {
        return purge_problem(r, HTTP_BAD_REQUEST, "Bad Request",
                             "a tag is 1 to 240 visible ASCII characters");
    }
    purge_scoped(r, tag, server_wide, &n1, &rc1, &n2, &rc2);
    near_flush();
    if (near_ms()) {
        const char *chan = apr_pstrcat(r->pool, gconf->prefix ? gconf->prefix
                                       : "bff:", NEAR_CHANNEL, NULL);
        if (bff_store_publish(primary, chan, tag, strlen(tag), r->pool)
            == BFF_STORE_OK) {
            published = 1;
        }
    }
    COUNT(purges);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(35)
                  "cache purge of %s: %ld in %s (%s), %ld in shared memory, "
                  "%s", tag, n1, primary->vt->name, bff_store_rc_str(rc1), n2,
                  server_wide ? "every virtual host"
                              : vhost_id(r->server, r->pool));
    if (rc1 == BFF_STORE_ERROR && rc2 != BFF_STORE_OK) {
        return purge_problem(r, HTTP_SERVICE_UNAVAILABLE, "Service Unavailable",
                             "the cache store failed; nothing was purged");
    }
    return purge_reply(r, HTTP_OK, json_pack("{s:s, s:I, s:I, s:s, s:b, s:s}",
                       "tag", tag, "purged", (json_int_t)n1,
                       "purged_shared_memory", (json_int_t)n2,
                       "store", bff_store_rc_str(rc1),
                       "near_caches_notified", published > 0,
                       "scope", server_wide ? "server" : "vhost"));
}

/* ------------------------------------------------------------ status -- */

/* GET on a `SetHandler bff-cache-status` location: the server's cache
 * counters (summed over all children, from shared memory) and the state of
 * the stores, as JSON. The metrics and health endpoints build on it. */
static int status_handler(request_rec *r)
{
    bff_store_health_t h;
    json_t *j, *st;

    if (!r->handler || strcmp(r->handler, "bff-cache-status")) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "hits", (json_int_t)stats->hits,
        "near_hits", (json_int_t)stats->near_hits,
        "misses", (json_int_t)stats->misses,
        "stale", (json_int_t)stats->stale,
        "bypass", (json_int_t)stats->bypass,
        "coalesced", (json_int_t)stats->coalesced,
        "errors", (json_int_t)stats->errors,
        "fallbacks", (json_int_t)stats->fallbacks,
        "stored", (json_int_t)stats->stored,
        "skipped", (json_int_t)stats->skipped,
        "purges", (json_int_t)stats->purges);
    if (!j) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    bff_json_pool_own(j, r->pool);
    if (primary) {
        bff_store_health(primary, &h, r->pool);
        st = json_pack("{s:s, s:b, s:s?, s:I, s:I}", "type", primary->vt->name,
                       "up", h.up, "last_error", h.last_error,
                       "connect_failures", (json_int_t)h.connect_failures,
                       "fast_fails", (json_int_t)h.fast_fails);
        if (st) {
            json_object_set_new(j, "store", st);
        }
    }
    json_object_set_new(j, "fallback", json_string(shm_store && shm_store != primary
                                                   ? "shmcb" : "none"));
    return purge_reply(r, HTTP_OK, json_incref(j));
}

/* ------------------------------------------------------------ health -- */

json_t *bff_cache_health(int *usable, apr_pool_t *p)
{
    bff_store_health_t h;
    bff_store_rc_e rc;
    const char *val;
    apr_size_t len;
    json_t *j;
    int fallback = shm_store && shm_store != primary;

    *usable = 1;
    if (!caching) {
        return NULL;
    }
    if (!primary) {
        return bff_json_pool_own(json_pack("{s:s}", "store", "off"), p);
    }
    /* one read tells this process whether the store answers now (the
     * state is per process); while it is known down the store fails fast */
    rc = bff_store_get(primary, &val, &len, "health", p);
    bff_store_health(primary, &h, p);
    if (rc == BFF_STORE_ERROR) {
        h.up = 0;
    }
    /* a store that is down is no problem while shared memory stands in */
    *usable = h.up || fallback;
    j = json_pack("{s:s, s:b, s:s?, s:s, s:b}", "store", primary->vt->name,
                  "up", h.up, "last_error", h.last_error,
                  "fallback", fallback ? "shmcb" : "none",
                  "fallback_in_use", !h.up && fallback);
    return j ? bff_json_pool_own(j, p) : NULL;
}

/* For the metrics handler (mod_bff_metrics.c): the counters above, which
 * are already summed over the children, and the Redis store's state. */
int bff_cache_counters(bff_cache_counters_t *out)
{
    if (!caching) {
        return 0;
    }
    out->hits = __atomic_load_n(&stats->hits, __ATOMIC_RELAXED);
    out->misses = __atomic_load_n(&stats->misses, __ATOMIC_RELAXED);
    out->stale = __atomic_load_n(&stats->stale, __ATOMIC_RELAXED);
    out->fallbacks = __atomic_load_n(&stats->fallbacks, __ATOMIC_RELAXED);
    return 1;
}

int bff_cache_redis_state(bff_redis_state_t *out, int probe, apr_pool_t *p)
{
    bff_store_health_t h;
    const char *val;
    apr_size_t len;

    if (!primary || strcmp(primary->vt->name, "redis")) {
        return 0;
    }
    out->up = 0;
    if (probe) {
        /* a GET that misses proves Redis answers; fails fast while down */
        out->up = bff_store_get(primary, &val, &len, apr_pstrcat(p,
                                gconf->prefix ? gconf->prefix : "bff:",
                                "metrics:probe", NULL), p) != BFF_STORE_ERROR;
    }
    bff_store_health(primary, &h, p);
    out->open = h.conns_open;
    out->busy = h.conns_busy;
    return 1;
}

/* ------------------------------------------------------------ lifecycle -- */

static int cache_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp)
{
    ap_mutex_register(pconf, MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    caching = 0;
    primary = NULL;
    shm_store = NULL;
    memset(&shm, 0, sizeof(shm));
    stats = &local_stats;
    return OK;
}

/* `apache2 -t` reports the opt-ins that weaken the cache's privacy. */
static void warn_shared_endpoints(server_rec *s)
{
    if (ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_CONFIG_TEST) {
        return;
    }
    for (; s; s = s->next) {
        bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                     &bff_module);
        int i;
        for (i = 0; i < sc->endpoints->nelts; i++) {
            bff_ep_conf_t *epc = APR_ARRAY_IDX(sc->endpoints, i,
                                               bff_ep_conf_t *);
            if (epc->cache && epc->cache->shared) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, BFFLOGNO(45)
                             "<BFFEndpoint %s %s> at %s:%d: BFFCacheShared "
                             "on: one stored answer serves every user, "
                             "authenticated or not (the identity headers "
                             "sent to backends still vary the key)",
                             epc->ep->method, epc->ep->pattern, epc->ep->file,
                             epc->ep->line);
            }
        }
    }
}

static int any_cached_endpoint(server_rec *s)
{
    for (; s; s = s->next) {
        bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                     &bff_module);
        int i;
        for (i = 0; i < sc->endpoints->nelts; i++) {
            if (APR_ARRAY_IDX(sc->endpoints, i, bff_ep_conf_t *)->cache) {
                return 1;
            }
        }
    }
    return 0;
}

static int setup_shm(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s,
                     const char *spec)
{
    static const struct ap_socache_hints hints = { 64, 2048, 30000000 };
    const char *arg = strchr(spec, ':');
    int rc;

    if ((rc = bff_shared_cache_create(&shm, "the cache's shared memory "
                                      "store and fallback (BFFCacheStore, "
                                      "BFFCacheFallback)", "mod_bff",
                                      arg ? arg + 1 : NULL, MUTEX_TYPE,
                                      &hints, s, pconf, ptemp)) != OK) {
        return rc;
    }
    shm_store = &shm_store_obj;
    return OK;
}

/* The counters live in shared memory that a graceful restart keeps
 * (mod_bff_metrics.c: mod_slotmem_shm, used here before, made the parent
 * crash in its cleanup at a graceful restart). */
static void setup_stats(apr_pool_t *pconf, server_rec *s)
{
    int kept;
    void *mem = bff_shm_retained(&kept, STATS_NAME, sizeof(stats_t), s);

    if (mem) {
        stats = mem;
    }
}

/* Runs for `apache2 -t` too (post_config does not): the privacy opt-ins
 * are reported, and a cache that needs
 * mod_socache_shmcb (the shmcb store, or the fallback, both defaults)
 * fails the test instead of the start. */
static int cache_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                              apr_pool_t *ptemp, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config, &bff_module);
    const char *store = cfg_store(sc->cache), *fb = cfg_fallback(sc->cache);

    warn_shared_endpoints(s);
    if (!any_cached_endpoint(s)
        || (!is_shmcb(store) && !strcasecmp(fb, "off"))
        || ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                              AP_SOCACHE_PROVIDER_VERSION)) {
        return OK;
    }
    ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(135)
                 "%s needs mod_socache_shmcb: LoadModule "
                 "socache_shmcb_module (or BFFCacheStore elsewhere and "
                 "BFFCacheFallback off)", is_shmcb(store)
                 ? "BFFCacheStore shmcb (the default)"
                 : "BFFCacheFallback shmcb (the default)");
    return HTTP_INTERNAL_SERVER_ERROR;
}

static int cache_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                             apr_pool_t *ptemp, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config, &bff_module);
    const char *store, *fb;
    int rc;

    main_server = s;
    gconf = sc->cache;
    if (!any_cached_endpoint(s)) {
        return OK;
    }
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;   /* the dry run: no shared memory yet */
    }
    caching = 1;
    store = cfg_store(gconf);
    fb = cfg_fallback(gconf);
    if (is_shmcb(store)) {
        if ((rc = setup_shm(pconf, ptemp, s, store)) != OK) {
            return rc;
        }
    }
    else if (strcasecmp(fb, "off")) {
        if ((rc = setup_shm(pconf, ptemp, s, fb)) != OK) {
            return rc;
        }
    }
    setup_stats(pconf, s);
    return OK;
}

static void cache_child_init(apr_pool_t *pchild, server_rec *s)
{
    const char *store, *err = NULL;
    bff_store_opts_t o;

    if (!caching) {
        return;
    }
    bff_shared_cache_child_init(&shm, pchild, s);
    store = cfg_store(gconf);
    if (!strcasecmp(store, "off")) {
        return;
    }
    if (is_shmcb(store)) {
        primary = shm_store;
        return;
    }
    bff_store_opts_default(&o);
    if (gconf->prefix) {
        o.prefix = gconf->prefix;
    }
    if (gconf->connect_ms > 0) {
        o.connect_timeout_ms = gconf->connect_ms;
    }
    if (gconf->command_ms > 0) {
        o.command_timeout_ms = gconf->command_ms;
    }
    if (gconf->pool > 0) {
        o.pool_max = gconf->pool;
    }
    o.max_value = cfg_max_entry(gconf) + 4096;
    err = !strncmp(store, "redis", 5)
          ? bff_store_redis_create(&primary, store, &o, pchild)
          : bff_store_memcache_create(&primary, store, &o, pchild);
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(40)
                     "cache store %s: %s; using shared memory only", store, err);
        primary = shm_store;
        return;
    }
    if (near_ms() && !strncmp(store, "redis", 5)) {
        subscriber_stop = 0;
        /* a pre-cleanup: the thread's pools are subpools of pchild, which
         * go before pchild's plain cleanups run; the thread is stopped and
         * joined while they still exist */
        if (apr_thread_create(&subscriber, NULL, subscriber_main, NULL, pchild)
            == APR_SUCCESS) {
            apr_pool_pre_cleanup_register(pchild, NULL, subscriber_cleanup);
        }
    }
}

void bff_cache_register_hooks(apr_pool_t *p)
{
    static const char *const after_socache[] = { "mod_socache_shmcb.c", NULL };

    ap_hook_pre_config(cache_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(cache_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(cache_post_config, after_socache, NULL,
                        APR_HOOK_MIDDLE);
    ap_hook_child_init(cache_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(purge_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(status_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
