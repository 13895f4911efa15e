/*
 * mod_bff: observability: request id, trace context and logs
 * (mod_bff_log.c), events (mod_bff_events.c), metrics (mod_bff_metrics.c),
 * mod_status (mod_bff_status.c).
 */
#ifndef MOD_BFF_OBS_H
#define MOD_BFF_OBS_H

#include "mod_bff.h"
#include "bff_obs.h"

/* mod_bff_log.c: request id, trace context, JSON access logs */
typedef struct {
    const char *backend;
    const char *reason;
    int status;
    double ms;
    int required;
} bff_obs_failure_t;

typedef struct {
    const char *request_id;
    bff_trace_t trace;          /* the client's (continued) or a new one */
    int continued;              /* 1: the client's traceparent was valid */
    const char *traceparent;    /* for ProxyPass: the gateway's own span */
    const char *span_id;        /* that span */
    /* filled by bff_obs_note_run when an aggregation ran */
    const bff_endpoint_t *ep;
    const bff_be_result_t *results;  /* the run's, one per backend */
    const char *backends;       /* bff_obs_backends' text, once made */
    apr_array_header_t *failures;    /* bff_obs_failure_t; NULL: none */
    double agg_ms;
} bff_obs_req_t;

/* The request's correlation data, made on first use (post_read_request
 * unless BFFRequestID Off); shared by subrequests and internal
 * redirects. */
bff_obs_req_t *bff_obs_req(request_rec *r);
const char *bff_request_id(request_rec *r);
/* Records what the engine did, for the log and the events. */
void bff_obs_note_run(request_rec *r, const bff_endpoint_t *ep,
                      const bff_run_result_t *res);
/* The backends' outcomes and timings as a JSON object text, made when a
 * log or an event first asks for it (not on every request); NULL when
 * no aggregation ran. */
const char *bff_obs_backends(request_rec *r, bff_obs_req_t *o);
/* Milliseconds with three decimals: since the request arrived, and what
 * the aggregation took (NULL when none ran). */
const char *bff_obs_duration_ms(request_rec *r);
const char *bff_obs_aggregation_ms(request_rec *r, const bff_obs_req_t *o);
void bff_log_register_hooks(apr_pool_t *p);
const char *bff_log_cmd_request_id(cmd_parms *cmd, void *dcv, int on);

/* mod_bff_events.c: analytics events to a Redis stream */
bff_events_conf_t *bff_events_conf_create(apr_pool_t *p);
const char *bff_events_cmd_redis(cmd_parms *cmd, void *dcv,
                                 const char *args);
void bff_events_register_hooks(apr_pool_t *p);

/* ---- metrics: mod_bff_metrics.c ---- */
void bff_metrics_register_hooks(apr_pool_t *p);
const char *bff_metrics_cmd_slots(cmd_parms *cmd, void *dcv, const char *arg);
/* Counts one engine run: aggregation time, each backend's call, outcome,
 * duration and failure reason. */
void bff_metrics_run(request_rec *r, const bff_endpoint_t *ep,
                     const bff_run_result_t *res);
/* Aggregations in flight now, all children (the metrics table). */
long bff_metrics_agg_active(void);
/* Event streams: opened (+1) or closed (-1), events sent. */
void bff_metrics_sse(int streams, long events);

/* mod_bff_status.c: mod_bff's state on mod_status's page */
void bff_status_register_hooks(apr_pool_t *p);

#endif /* MOD_BFF_OBS_H */
