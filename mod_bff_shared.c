/*
 * mod_bff: per-process and cross-process resources in one place.
 *
 *   bff_shm_retained    shared memory owned by httpd's parent process,
 *                       kept across graceful restarts (breakers, metrics,
 *                       cache counters);
 *   bff_shared_cache_*  an socache shmcb instance with its global mutex
 *                       (the cache's shared-memory store and fallback, the
 *                       rate limiter's shared-memory buckets);
 *   bff_inflight_*      counters over every process, a row per process
 *                       (BFFMaxInFlight, the caps on event streams).
 *
 * One failure policy: a configured feature that cannot get its shared
 * memory or its mutex stops start-up with a message naming the directive
 * that needs it; nothing silently runs without it.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "util_mutex.h"

#include "apr_shm.h"
#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_shared.h"
#include "bff_inflight.h"

APLOG_USE_MODULE(bff);

/* Shared memory that survives graceful restarts: made once by the parent
 * (anonymous, so every child inherits it) from the process pool, and found
 * again by name in the retained data of the next generation.
 * mod_slotmem_shm cannot do this here: its segments carry the generation
 * in their name (httpd 2.4.6x), and one the module asked for makes the
 * parent crash in its cleanup at a graceful restart. */
typedef struct {
    apr_shm_t *shm;
    apr_size_t size;
} retained_shm_t;

void *bff_shm_retained(int *kept, const char *name, apr_size_t size,
                       server_rec *s)
{
    const char *key = apr_pstrcat(s->process->pool, "mod_bff-shm-", name,
                                  NULL);
    retained_shm_t *rs = ap_retained_data_get(key);
    apr_status_t rv;

    *kept = 0;
    if (!rs) {
        rs = ap_retained_data_create(key, sizeof(*rs));
    }
    if (rs->shm && rs->size == size) {
        *kept = 1;
        return apr_shm_baseaddr_get(rs->shm);
    }
    if (rs->shm) {
        /* another size: the children of older generations keep their
         * mapping until they exit */
        apr_shm_destroy(rs->shm);
        rs->shm = NULL;
    }
    rv = apr_shm_create(&rs->shm, size, NULL, s->process->pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(302)
                     "cannot create %" APR_SIZE_T_FMT " bytes of shared "
                     "memory for %s", size, name);
        rs->shm = NULL;
        return NULL;
    }
    rs->size = size;
    memset(apr_shm_baseaddr_get(rs->shm), 0, size);
    return apr_shm_baseaddr_get(rs->shm);
}

/* The tables of this generation's configuration, for the parent's
 * child_status hook: a child it reaped counts nothing any more, even
 * before the next child claims a row (a zombie still looks alive to
 * kill(), so the claim's own sweep may miss a child killed a moment
 * before; the MPM restarts a killed child's slot before it reaps the
 * next one). */
static apr_array_header_t *tables;   /* of bff_inflight_t *, in pconf */

static apr_status_t tables_forget(void *unused)
{
    tables = NULL;
    return APR_SUCCESS;
}

static void inflight_child_status(server_rec *s, pid_t pid,
                                  ap_generation_t gen, int slot,
                                  mpm_child_status state)
{
    int i;

    if (state == MPM_CHILD_EXITED && pid > 0 && tables) {
        for (i = 0; i < tables->nelts; i++) {
            bff_inflight_forget(APR_ARRAY_IDX(tables, i, bff_inflight_t *),
                                (apr_uint32_t)pid);
        }
    }
}

void bff_shared_register_hooks(apr_pool_t *p)
{
    ap_hook_child_status(inflight_child_status, NULL, NULL, APR_HOOK_MIDDLE);
}

bff_inflight_t *bff_inflight_shared(int *shape, long *workers,
                                    const char *name, int counters,
                                    server_rec *s, apr_pool_t *pconf)
{
    int daemons = 0, threads = 0, hard = 0, kept;
    void *mem;
    bff_inflight_t *t;

    ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons);
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &hard);
    daemons = daemons < 1 ? 1 : daemons;
    threads = threads < 1 ? 1 : threads;
    hard = hard < daemons ? daemons : hard;
    *workers = (long)daemons * threads;
    *shape = 0;
    mem = bff_shm_retained(&kept, name,
                           bff_inflight_size(2 * hard, counters), s);
    if (!mem) {
        return NULL;
    }
    t = bff_inflight_attach(mem, 2 * hard, counters, pconf);
    *shape = !t;
    if (t) {
        if (!tables) {
            tables = apr_array_make(pconf, 4, sizeof(bff_inflight_t *));
            apr_pool_cleanup_register(pconf, NULL, tables_forget,
                                      apr_pool_cleanup_null);
        }
        APR_ARRAY_PUSH(tables, bff_inflight_t *) = t;
    }
    return t;
}

static int pid_alive(apr_uint32_t pid)
{
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

typedef struct {
    bff_inflight_t *t;
    int row;
} inflight_row_t;

static apr_status_t inflight_row_release(void *data)
{
    inflight_row_t *r = data;

    bff_inflight_release(r->t, r->row);
    return APR_SUCCESS;
}

int bff_inflight_child_row(bff_inflight_t *t, apr_pool_t *pchild)
{
    inflight_row_t *r = apr_palloc(pchild, sizeof(*r));

    r->t = t;
    r->row = bff_inflight_claim(t, (apr_uint32_t)getpid(), pid_alive);
    if (r->row >= 0) {
        apr_pool_cleanup_register(pchild, r, inflight_row_release,
                                  apr_pool_cleanup_null);
    }
    return r->row;
}

static apr_status_t shared_cache_destroy(void *data)
{
    bff_shared_cache_t *c = data;

    if (c->inst) {
        c->provider->destroy(c->inst, c->server);
        c->inst = NULL;
    }
    return APR_SUCCESS;
}

int bff_shared_cache_create(bff_shared_cache_t *c, const char *what,
                            const char *name, const char *args,
                            const char *mutex_type,
                            const struct ap_socache_hints *hints,
                            server_rec *s, apr_pool_t *pconf,
                            apr_pool_t *ptemp)
{
    const char *err;
    apr_status_t rv;

    memset(c, 0, sizeof(*c));
    c->server = s;
    c->provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                                     AP_SOCACHE_PROVIDER_VERSION);
    if (!c->provider) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(360)
                     "%s needs shared memory from mod_socache_shmcb: "
                     "LoadModule socache_shmcb_module", what);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((err = c->provider->create(&c->inst, args, ptemp, pconf))) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(361)
                     "%s: shared memory %s: %s", what, args ? args : "", err);
        c->inst = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((rv = c->provider->init(c->inst, name, hints, s, pconf))
        != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(362)
                     "%s: cannot create its shared memory", what);
        c->inst = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, c, shared_cache_destroy,
                              apr_pool_cleanup_null);
    if ((rv = ap_global_mutex_create(&c->mutex, NULL, mutex_type, NULL, s,
                                     pconf, 0)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(363)
                     "%s: cannot create its mutex (Mutex %s)", what,
                     mutex_type);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

void bff_shared_cache_child_init(bff_shared_cache_t *c, apr_pool_t *pchild,
                                 server_rec *s)
{
    apr_status_t rv;

    if (!c->mutex) {
        return;
    }
    rv = apr_global_mutex_child_init(&c->mutex,
                                     apr_global_mutex_lockfile(c->mutex),
                                     pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(364)
                     "cannot attach the shared memory mutex %s: its users "
                     "fall back as when the memory is full",
                     apr_global_mutex_lockfile(c->mutex)
                     ? apr_global_mutex_lockfile(c->mutex) : "");
        c->mutex = NULL;
    }
}

int bff_shared_cache_lock(bff_shared_cache_t *c)
{
    return c->mutex && apr_global_mutex_lock(c->mutex) == APR_SUCCESS;
}

void bff_shared_cache_unlock(bff_shared_cache_t *c)
{
    apr_global_mutex_unlock(c->mutex);
}

/* ------------------------------------------------- tasks on mod_watchdog -- */

apr_status_t bff_wd_task_register(bff_wd_task_t *t, apr_pool_t *pconf)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_instance =
        APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *reg =
        APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    ap_watchdog_t *wd;
    apr_status_t rv;

    if (!get_instance || !reg) {
        return APR_ENOTIMPL;
    }
    if ((rv = get_instance(&wd, t->name, 0, 0, pconf)) == APR_SUCCESS) {
        rv = reg(wd, AP_WD_TM_SLICE, NULL, t->tick);
    }
    return rv;
}

static apr_status_t task_client_cleanup(void *data)
{
    bff_wd_task_t *t = data;

    if (t->client) {
        t->client->vt->destroy(t->client);
        t->client = NULL;
    }
    return APR_SUCCESS;
}

static apr_status_t task_stop(void *data)
{
    bff_wd_task_t *t = data;

    t->stop = 1;
    /* a round waiting for a fetch returns at once (APR_EINTR) */
    if (t->client && t->client->vt->wake) {
        t->client->vt->wake(t->client);
    }
    if (t->mu) {
        apr_thread_mutex_lock(t->mu);
        apr_thread_mutex_unlock(t->mu);
    }
    return APR_SUCCESS;
}

const char *bff_wd_task_child_init(bff_wd_task_t *t, apr_pool_t *pchild,
                                   server_rec *s)
{
    bff_fetch_curl_opts_t opts = { 0, 4, 0 };
    apr_pool_t *p;
    apr_status_t rv;

    t->stop = 0;
    t->client = NULL;
    /* the process pool: outlives pchild, as the watchdog thread does */
    if (apr_thread_mutex_create(&t->mu, APR_THREAD_MUTEX_DEFAULT,
                                s->process->pool) != APR_SUCCESS) {
        t->mu = NULL;
        return "cannot create a mutex";
    }
    apr_pool_create(&p, pchild);
    rv = t->curl ? bff_fetch_curl_create(&t->client, &opts, p)
                 : bff_fetch_h1_create(&t->client, &opts, p);
    if (rv != APR_SUCCESS) {
        t->client = NULL;
        return "cannot create an HTTP client";
    }
    apr_pool_cleanup_register(p, t, task_client_cleanup,
                              apr_pool_cleanup_null);
    apr_pool_pre_cleanup_register(pchild, t, task_stop);
    return NULL;
}

int bff_wd_task_enter(bff_wd_task_t *t, int state)
{
    if (state != AP_WATCHDOG_STATE_RUNNING || !t->mu) {
        return 0;
    }
    apr_thread_mutex_lock(t->mu);
    if (t->stop || !t->client) {
        apr_thread_mutex_unlock(t->mu);
        return 0;
    }
    return 1;
}

void bff_wd_task_leave(bff_wd_task_t *t)
{
    apr_thread_mutex_unlock(t->mu);
}
