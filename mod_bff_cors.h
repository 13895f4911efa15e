/*
 * mod_bff: CORS (mod_bff_cors.c).
 */
#ifndef MOD_BFF_CORS_H
#define MOD_BFF_CORS_H

#include "mod_bff.h"

/* ---- CORS: mod_bff_cors.c ---- */
bff_cors_dir_t *bff_cors_dir_create(apr_pool_t *p);
bff_cors_dir_t *bff_cors_dir_merge(apr_pool_t *p, bff_cors_dir_t *base,
                                   bff_cors_dir_t *add);
/* cmd->info of bff_cors_cmd_list: 1 methods, 2 request headers, 3 exposed
 * headers */
const char *bff_cors_cmd_origin(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_cors_cmd_list(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_cors_cmd_credentials(cmd_parms *cmd, void *dcv, int on);
const char *bff_cors_cmd_max_age(cmd_parms *cmd, void *dcv, const char *arg);
void bff_cors_register_hooks(apr_pool_t *p);

#endif /* MOD_BFF_CORS_H */
