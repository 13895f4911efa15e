/*
 * mod_bff: the aggregation handler (mod_bff_aggregate.c).
 */
#ifndef MOD_BFF_AGGREGATE_H
#define MOD_BFF_AGGREGATE_H

#include "mod_bff.h"

/* mod_bff_aggregate.c */
void bff_aggregate_register_hooks(apr_pool_t *p);
/* The endpoint whose route and method r matched; NULL when none. */
bff_ep_conf_t *bff_request_endpoint(request_rec *r);
/* Hands the client's parsed body (validated) to the endpoint's run. */
void bff_request_set_body(request_rec *r, json_t *body);
apr_status_t bff_aggregate_child_init(apr_pool_t *pchild, server_rec *s);

#endif /* MOD_BFF_AGGREGATE_H */
