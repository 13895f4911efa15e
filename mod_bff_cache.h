/*
 * mod_bff: the response cache (mod_bff_cache.c): its directives, the
 * lookup and store steps of the request pipeline, its state for health
 * and metrics.
 */
#ifndef MOD_BFF_CACHE_H
#define MOD_BFF_CACHE_H

#include "mod_bff.h"

/* mod_bff_cache.c: directives (listed in mod_bff.c's table, cmd->info
 * one of these) */
enum {
    BFF_CC_STORE = 1, BFF_CC_FALLBACK, BFF_CC_PREFIX, BFF_CC_CONNECT,
    BFF_CC_COMMAND, BFF_CC_POOL, BFF_CC_NEAR, BFF_CC_MAXENTRY,
    BFF_CE_TTL, BFF_CE_STALE, BFF_CE_PARTIAL, BFF_CE_LOCK, BFF_CE_NOCACHE,
    BFF_CE_CONTROL, BFF_CE_VARY, BFF_CE_KEYQUERY, BFF_CE_TAG, BFF_CE_SHARED
};
const char *bff_cache_cmd_server(cmd_parms *cmd, void *dc, const char *arg);
const char *bff_cache_cmd_endpoint(cmd_parms *cmd, void *dc, const char *arg);
const char *bff_cache_cmd_endpoint_list(cmd_parms *cmd, void *dc,
                                        const char *arg);
const char *bff_cache_cmd_purge_scope(cmd_parms *cmd, void *dc,
                                      const char *arg);
bff_cache_conf_t *bff_cache_conf_create(apr_pool_t *p);
bff_cache_conf_t *bff_cache_conf_merge(apr_pool_t *p, const bff_cache_conf_t *base,
                                       const bff_cache_conf_t *add);
const char *bff_cache_ep_finalize(bff_ep_conf_t *epc, apr_pool_t *p);
void bff_cache_register_hooks(apr_pool_t *p);

/* The request side: bff_cache_lookup answers from the cache (OK) or says
 * the handler must compute (DECLINED, *cr set when the answer is to be
 * stored); bff_cache_finish stores what was computed, or answers with a
 * stale copy instead of an error (OK). The key derives from cc, the
 * context the backend calls will carry (headers, forwarded query), so
 * whatever reaches a backend is in it. */
int bff_cache_lookup(bff_cache_req_t **cr, request_rec *r,
                     const bff_ep_conf_t *epc, const char *const *values,
                     const bff_call_ctx_t *cc);
int bff_cache_finish(bff_cache_req_t *cr, request_rec *r,
                     const bff_run_result_t *res, const char *body,
                     apr_size_t len, const char *etag);
/* The cache store's state for the health handler (type, up, whether the
 * shared memory fallback is in use); NULL when no endpoint caches.
 * *usable is set to 0 when answers can be neither read nor stored. */
json_t *bff_cache_health(int *usable, apr_pool_t *p);


/* What the metrics read from the other areas when scraped. */
typedef struct {
    apr_uint64_t hits, misses, stale, fallbacks;
} bff_cache_counters_t;
/* mod_bff_cache.c: its shared counters (all children); 0 when no endpoint
 * is cached. */
int bff_cache_counters(bff_cache_counters_t *out);

/* 0 when there is no such Redis; else fills out, and with probe sends the
 * Redis a command first (bounded by the pool's timeouts, failing fast
 * while it is known down). */
int bff_cache_redis_state(bff_redis_state_t *out, int probe, apr_pool_t *p);

#endif /* MOD_BFF_CACHE_H */
