/*
 * mod_bff: per-process shared resources (mod_bff_shared.c).
 */
#ifndef MOD_BFF_SHARED_H
#define MOD_BFF_SHARED_H

#include "mod_bff.h"
#include "apr_global_mutex.h"
#include "ap_socache.h"

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

#endif /* MOD_BFF_SHARED_H */
