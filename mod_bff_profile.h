/*
 * mod_bff: client profiles (mod_bff_profile.c): reshaping directives,
 * ?fields= and per-client defaults of an endpoint.
 */
#ifndef MOD_BFF_PROFILE_H
#define MOD_BFF_PROFILE_H

#include "mod_bff.h"

/* mod_bff_profile.c: client-specific presentation; directives
 * listed in mod_bff.c's table, cmd->info one of these */
enum {
    BFF_PR_LIFT = 1, BFF_PR_RENAME, BFF_PR_WRAP, BFF_PR_MERGE,
    BFF_PR_FIELDS, BFF_PR_SELECT
};
const char *bff_profile_cmd(cmd_parms *cmd, void *dc, const char *a1,
                           const char *a2);
const char *bff_profile_cmd1(cmd_parms *cmd, void *dc, const char *a1);
const char *bff_profile_cmd_join(cmd_parms *cmd, void *dc, const char *target,
                                const char *spec, const char *opt);
const char *bff_profile_cmd_drop_empty(cmd_parms *cmd, void *dc, int on);
const char *bff_profile_cmd_fields(cmd_parms *cmd, void *dc, const char *name,
                                  const char *path);
/* A BFFDeny path: never selectable with ?fields= */
void bff_profile_note_deny(bff_ep_conf_t *epc, const char *path, apr_pool_t *p);
const char *bff_profile_ep_finalize(bff_ep_conf_t *epc, apr_pool_t *p);
/* Picks the client (Vary, note bff-client) and the field selection (?fields=
 * or the client's default; note bff-fields, read by the cache key). OK with
 * *fields set (NULL: everything), or HTTP_BAD_REQUEST with a detail and
 * extra problem members (the refused fields). */
int bff_profile_prepare(request_rec *r, const bff_ep_conf_t *epc,
                       const bff_shape_t **fields, const char **detail,
                       json_t **extra);

#endif /* MOD_BFF_PROFILE_H */
