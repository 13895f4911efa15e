/*
 * mod_bff: what the access phase offers the other areas and the
 * command table (its private types are in mod_bff_access.h).
 */
#ifndef MOD_BFF_AUTH_H
#define MOD_BFF_AUTH_H

#include "mod_bff.h"

/* The access phase (mod_bff_authn.c, mod_bff_authz.c, mod_bff_ratelimit.c;
 * see mod_bff_access.h): authentication, authorization, identity headers
 * and throttling. */
void bff_auth_register_hooks(apr_pool_t *p);
bff_auth_srv_t *bff_auth_create_srv(apr_pool_t *p);
bff_auth_srv_t *bff_auth_merge_srv(apr_pool_t *p, const bff_auth_srv_t *base,
                                   const bff_auth_srv_t *add);
bff_auth_dir_t *bff_auth_create_dir(apr_pool_t *p);
bff_auth_dir_t *bff_auth_merge_dir(apr_pool_t *p, const bff_auth_dir_t *base,
                                   const bff_auth_dir_t *add);
/* The identity headers configured for r's location (const char *), which
 * the aggregation always forwards; NULL when none. */
const apr_array_header_t *bff_auth_identity_names(request_rec *r);
/* A verified claim of r (JWT, or an API key's sub/plan) rendered as
 * bff_jwt_claim_header does; NULL without one. */
const char *bff_auth_claim(request_rec *r, const char *path);

/* directive handlers (the command table is in mod_bff.c) */
const char *bff_auth_cmd_jwt_file(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_auth_cmd_jwks_url(cmd_parms *cmd, void *dcv,
                                  const char *args);
const char *bff_auth_cmd_jwt_algs(cmd_parms *cmd, void *dcv, const char *arg);
const char *bff_auth_cmd_jwt_issuer(cmd_parms *cmd, void *dcv,
                                    const char *arg);
const char *bff_auth_cmd_jwt_audience(cmd_parms *cmd, void *dcv,
                                      const char *arg);
const char *bff_auth_cmd_jwt_leeway(cmd_parms *cmd, void *dcv,
                                    const char *arg);
const char *bff_auth_cmd_jwt_require_exp(cmd_parms *cmd, void *dcv, int on);
const char *bff_auth_cmd_jwt_max_size(cmd_parms *cmd, void *dcv,
                                      const char *arg);
const char *bff_auth_cmd_jwt_cache(cmd_parms *cmd, void *dcv, const char *n,
                                   const char *ttl);
const char *bff_auth_cmd_token_source(cmd_parms *cmd, void *dcv,
                                      const char *arg);
const char *bff_auth_cmd_apikey_file(cmd_parms *cmd, void *dcv,
                                     const char *arg);
const char *bff_auth_cmd_apikey_header(cmd_parms *cmd, void *dcv,
                                       const char *arg);
const char *bff_auth_cmd_apikey_redis(cmd_parms *cmd, void *dcv,
                                      const char *args);
const char *bff_auth_cmd_identity_header(cmd_parms *cmd, void *dcv,
                                         const char *args);
const char *bff_auth_cmd_rate_limit(cmd_parms *cmd, void *dcv,
                                    const char *args);
const char *bff_auth_cmd_rl_fallback(cmd_parms *cmd, void *dcv,
                                     const char *arg);
const char *bff_auth_cmd_rl_redis(cmd_parms *cmd, void *dcv, const char *args);
const char *bff_auth_cmd_rl_instances(cmd_parms *cmd, void *dcv,
                                      const char *arg);

int bff_auth_redis_state(bff_redis_state_t *out, int probe, request_rec *r);

#endif /* MOD_BFF_AUTH_H */
