/*
 * mod_bff: caps on aggregations in flight, all processes together
 * (mod_bff_overload.c).
 */
#ifndef MOD_BFF_OVERLOAD_H
#define MOD_BFF_OVERLOAD_H

#include "mod_bff.h"

bff_overload_conf_t *bff_overload_conf_create(apr_pool_t *p);
const char *bff_overload_cmd(cmd_parms *cmd, void *dcv, const char *args);
void bff_overload_register_hooks(apr_pool_t *p);

/* The handler's admission step, after the cache lookup: NULL when r may
 * call epc's backends (it counts until r is done); otherwise the detail
 * of the 503 to answer (Retry-After is set). */
const char *bff_overload_enter(request_rec *r, const bff_ep_conf_t *epc);

/* An event stream's admission: it counts against the total cap while r
 * lasts. NULL, or the detail of the 503 to answer (Retry-After set). */
const char *bff_overload_enter_stream(request_rec *r);

#endif /* MOD_BFF_OVERLOAD_H */
