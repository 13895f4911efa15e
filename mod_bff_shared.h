/*
 * mod_bff: per-process shared resources (mod_bff_shared.c).
 */
#ifndef MOD_BFF_SHARED_H
#define MOD_BFF_SHARED_H

#include "mod_bff.h"
#include "apr_global_mutex.h"
#include "ap_socache.h"
#include "apr_thread_mutex.h"
#include "mod_watchdog.h"
#include "bff_fetch.h"

/* mod_bff_shared.c: shared resources, one failure policy (a configured
 * feature that cannot have them stops start-up, naming what needs them).
 *
 * Anonymous shared memory created by the parent, kept across graceful
 * restarts: the same name and size give the same memory back (*kept 1);
 * new memory is zeroed. NULL (logged) when it cannot be had. */
void *bff_shm_retained(int *kept, const char *name, apr_size_t size,
                       server_rec *s);

/* Counters over every process (lib/bff_inflight.h) in retained shared
 * memory named name: a row for each process the server may run at once
 * (twice the hard limit: the old generation still runs during a graceful
 * restart). *workers: MaxRequestWorkers. NULL when it cannot be had, or
 * (*shape 1) when the memory holds a table of another shape. */
struct bff_inflight_t;
struct bff_inflight_t *bff_inflight_shared(int *shape, long *workers,
                                           const char *name, int counters,
                                           server_rec *s, apr_pool_t *pconf);
/* The parent's hook that clears the rows of the children it reaps. */
void bff_shared_register_hooks(apr_pool_t *p);
/* child_init: claims this process's row (rows of processes that are gone
 * are cleared first) and gives it back when pchild goes; -1 when every
 * row is taken. */
int bff_inflight_child_row(struct bff_inflight_t *t, apr_pool_t *pchild);

/* An socache shmcb instance and its global mutex. */
typedef struct {
    const ap_socache_provider_t *provider;
    ap_socache_instance_t *inst;
    apr_global_mutex_t *mutex;       /* NULL in a child that lost it */
    server_rec *server;
} bff_shared_cache_t;

/* post_config: makes c (name: the socache's name; args: shmcb's
 * "path(size)" or NULL; mutex_type registered in pre_config). OK, or
 * HTTP_INTERNAL_SERVER_ERROR logged with `what`, the directive that
 * needs it. */
int bff_shared_cache_create(bff_shared_cache_t *c, const char *what,
                            const char *name, const char *args,
                            const char *mutex_type,
                            const struct ap_socache_hints *hints,
                            server_rec *s, apr_pool_t *pconf,
                            apr_pool_t *ptemp);
/* child_init: attaches the mutex (a failure is logged; lock then fails). */
void bff_shared_cache_child_init(bff_shared_cache_t *c, apr_pool_t *pchild,
                                 server_rec *s);
/* 1 with the mutex held, 0 when it cannot be had (treat as unavailable). */
int bff_shared_cache_lock(bff_shared_cache_t *c);
void bff_shared_cache_unlock(bff_shared_cache_t *c);

/* Periodic work on mod_watchdog, with an HTTP client of its own, in
 * every child (the health probe, the JWKS fetcher): a child watchdog
 * calls tick every AP_WD_TM_SLICE. mod_watchdog starts its thread in
 * child_init and joins it only at process exit, after pchild is gone: a
 * pre-cleanup of pchild raises stop, wakes a round waiting for a fetch
 * (it returns APR_EINTR at once) and waits, on a mutex of the process
 * pool, for the round to end, so that no round touches the client (or
 * anything of pchild) afterwards. */
typedef struct {
    const char *name;                 /* the child watchdog's */
    ap_watchdog_callback_fn_t *tick;
    int curl;                         /* 1: a curl client; 0: the native
                                         one (https through curl) */
    /* per child */
    apr_thread_mutex_t *mu;
    volatile apr_uint32_t stop;
    bff_fetcher_t *client;
} bff_wd_task_t;

/* post_config: APR_SUCCESS, APR_ENOTIMPL without mod_watchdog, or the
 * status of a failed registration. */
apr_status_t bff_wd_task_register(bff_wd_task_t *t, apr_pool_t *pconf);
/* child_init, before mod_watchdog starts its thread (hook ordering):
 * NULL, or why this child runs no task. */
const char *bff_wd_task_child_init(bff_wd_task_t *t, apr_pool_t *pchild,
                                   server_rec *s);
/* In tick: 1 with the task's mutex held and the client ready (then
 * bff_wd_task_leave), 0 when there is nothing to do (not running,
 * stopping, no client). */
int bff_wd_task_enter(bff_wd_task_t *t, int state);
void bff_wd_task_leave(bff_wd_task_t *t);

#endif /* MOD_BFF_SHARED_H */
