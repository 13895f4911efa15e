/*
 * mod_bff retries: which failures are retried, the backoff before each
 * retry, and the retry budget. Pure logic, no httpd.h; the budget is a
 * plain struct the glue keeps in shared memory.
 */
#ifndef BFF_RETRY_H
#define BFF_RETRY_H

#include <apr.h>
#include <apr_pools.h>


typedef struct {
    int attempts;            /* total attempts, 1: no retry (default 1) */
    long base_ms;            /* first backoff (50 ms) */
    long max_ms;             /* backoff cap (1 s) */
    int statuses[8];         /* statuses that are retried (502, 503, 504) */
    int nstatuses;
    int unsafe;              /* 1: non-idempotent methods too */
    int budget_pct;          /* retries per 100 calls, 1..100 (20) */
    int budget_min;          /* retries always allowed in reserve (10) */
} bff_retry_conf_t;

/* The token bucket of the retry budget (shared memory). All zero is
 * "never used": bff_retry_budget_take fills it first. */
typedef struct {
    apr_int64_t milli;       /* tokens * 1000 */
    apr_uint32_t init;
    apr_uint32_t pad;
} bff_retry_budget_t;

void bff_retry_conf_default(bff_retry_conf_t *c);

/* Parses one option of BFFRetry:
 *   attempts=N  backoff=DURATION  max-backoff=DURATION
 *   statuses=CODE[,CODE...]  unsafe=on|off  budget=PCT  budget-min=N
 * Returns NULL or an error naming the option. */
const char *bff_retry_conf_option(bff_retry_conf_t *c, const char *opt,
                                  apr_pool_t *p);

/* Is a failed attempt of method worth retrying? transport_err: 1 for
 * connect error / timeout / dropped connection, else status is the HTTP
 * status received. */
int bff_retry_retryable(const bff_retry_conf_t *c, const char *method,
                        int transport_err, int status);

/* Delay before attempt number `attempt` (2 = the first retry):
 * exponential (base * 2^(attempt-2), capped at max) with "equal jitter":
 * half fixed, half random from rnd (any 32 random bits). */
long bff_retry_backoff_ms(const bff_retry_conf_t *c, int attempt,
                          apr_uint32_t rnd);

/* The retry budget is a token bucket holding at most budget_min tokens,
 * full at first: every first attempt deposits budget_pct/100 of a token, a
 * retry takes a whole one. So a burst of budget_min retries is allowed,
 * then about budget_pct retries per 100 calls: during an outage retries
 * cannot multiply the load. take returns 1 when the retry may go, 0 when
 * the budget is exhausted. */
void bff_retry_budget_deposit(bff_retry_budget_t *b, const bff_retry_conf_t *c);
int bff_retry_budget_take(bff_retry_budget_t *b, const bff_retry_conf_t *c);

#endif /* BFF_RETRY_H */
