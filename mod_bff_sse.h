/*
 * mod_bff: server-sent events from Redis Streams (mod_bff_sse.c).
 */
#ifndef MOD_BFF_SSE_H
#define MOD_BFF_SSE_H

#include "mod_bff.h"

#define BFF_SSE_HANDLER "bff-event-stream"

bff_sse_conf_t *bff_sse_conf_create(apr_pool_t *p);
bff_sse_dir_t *bff_sse_dir_create(apr_pool_t *p);
bff_sse_dir_t *bff_sse_dir_merge(apr_pool_t *p, const bff_sse_dir_t *base,
                                 const bff_sse_dir_t *add);
const char *bff_sse_cmd_redis(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_sse_cmd_stream(cmd_parms *cmd, void *dcv, const char *args);
void bff_sse_register_hooks(apr_pool_t *p);

#endif /* MOD_BFF_SSE_H */
