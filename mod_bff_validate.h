/*
 * mod_bff: request validation (mod_bff_validate.c).
 */
#ifndef MOD_BFF_VALIDATE_H
#define MOD_BFF_VALIDATE_H

#include "mod_bff.h"

/* mod_bff_validate.c: request bodies (JSON Schema), query parameters and
 * headers checked before any backend is called */
bff_valid_conf_t *bff_valid_conf_merge(apr_pool_t *p,
                                       const bff_valid_conf_t *base,
                                       const bff_valid_conf_t *add);
const char *bff_valid_cmd_schema(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_valid_cmd_limit(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_valid_cmd_rule(cmd_parms *cmd, void *dcv, const char *args);
void bff_valid_register_hooks(apr_pool_t *p);

#endif /* MOD_BFF_VALIDATE_H */
