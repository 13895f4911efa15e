/*
 * mod_bff circuit breaker: pure logic, no httpd.h.
 *
 * A breaker's state is a plain fixed-size struct (bff_brk_t) so the httpd
 * glue can keep it in shared memory, one slot per backend host or backend,
 * and update it under a global mutex: every child process sees the same
 * state. Time is always passed in, never read here.
 *
 * States (as in Resilience4j):
 *   closed     calls go through; outcomes fill a count-based sliding window.
 *              It opens when, with at least min_calls in the window, the
 *              failure rate reaches failure_rate percent, or after
 *              `consecutive` failures in a row. A call slower than slow_ms
 *              counts as a failure.
 *   open       calls are refused until open_ms have passed.
 *   half-open  up to half_open trial calls go through; one failure opens
 *              again, half_open successes close. Trials that never report
 *              are forgotten after open_ms (a new round of trials starts).
 */
#ifndef BFF_BREAKER_H
#define BFF_BREAKER_H

#include <apr.h>
#include <apr_pools.h>
#include <apr_time.h>

#define BFF_BRK_WINDOW_MAX 128

typedef enum {
    BFF_BRK_CLOSED = 0,
    BFF_BRK_OPEN = 1,
    BFF_BRK_HALF_OPEN = 2
} bff_brk_state_e;

/* What a call's outcome was, for the breaker. */
typedef enum {
    BFF_BRK_SUCCESS = 0,
    BFF_BRK_FAILURE,
    BFF_BRK_IGNORED          /* cancelled: neither success nor failure */
} bff_brk_outcome_e;

typedef struct {
    int failure_rate;        /* percent, 1..100 (default 50) */
    int min_calls;           /* calls in the window before the rate counts
                                (default 10) */
    int window;              /* calls kept, <= BFF_BRK_WINDOW_MAX (20) */
    int consecutive;         /* failures in a row that open; 0: off (0) */
    long slow_ms;            /* slower calls count as failures; 0: off (0) */
    long open_ms;            /* how long it stays open (30 s) */
    int half_open;           /* trial calls in half-open (3) */
    int scope;               /* BFF_BRK_SCOPE_*: what one breaker covers */
} bff_brk_conf_t;

#define BFF_BRK_SCOPE_HOST    1   /* a backend host (default) */
#define BFF_BRK_SCOPE_BACKEND 2   /* a backend of an endpoint */

/* Counters kept with the state, for /health and metrics. */
typedef struct {
    apr_uint64_t calls;            /* outcomes recorded */
    apr_uint64_t failures;         /* of which failures (slow included) */
    apr_uint64_t slow;             /* of which slow */
    apr_uint64_t refused;          /* calls not made: circuit open */
    apr_uint64_t opened;           /* transitions to open */
    apr_uint64_t half_opened;      /* transitions to half-open */
    apr_uint64_t closed;           /* transitions back to closed */
    apr_uint64_t retries;          /* retries made */
    apr_uint64_t budget_exhausted; /* retries refused by the budget */
} bff_brk_counters_t;

/* The shared state of one breaker. All zero is a valid closed breaker. */
typedef struct {
    apr_uint32_t state;            /* bff_brk_state_e */
    apr_uint32_t win_len;          /* outcomes in the window */
    apr_uint32_t win_pos;          /* next slot to write */
    apr_uint32_t win_fail;         /* failures in the window */
    apr_uint32_t consecutive;      /* current run of failures */
    apr_uint32_t trials;           /* half-open: trials admitted */
    apr_uint32_t trial_ok;         /* half-open: trials that succeeded */
    apr_uint32_t pad;
    apr_time_t changed_at;         /* last transition */
    apr_time_t open_until;         /* open: when half-open may start */
    apr_time_t trials_since;       /* half-open: start of this round */
    apr_uint64_t win_bits[BFF_BRK_WINDOW_MAX / 64];  /* 1: failure */
    bff_brk_counters_t n;
} bff_brk_t;

/* Fills c with the defaults above. */
void bff_brk_conf_default(bff_brk_conf_t *c);

/* Parses one option of the BFFBreaker directive into c:
 *   failure-rate=PCT  min-calls=N  window=N  consecutive=N  slow=DURATION
 *   open=DURATION  half-open=N
 * Returns NULL or an error naming the option. */
const char *bff_brk_conf_option(bff_brk_conf_t *c, const char *opt,
                                apr_pool_t *p);

/* Checks the combination (min_calls <= window). NULL or an error. */
const char *bff_brk_conf_check(const bff_brk_conf_t *c, apr_pool_t *p);

/* May a call go through at now? Moves open -> half-open when the wait is
 * over (*from is then set to the old state, else to -1) and counts a
 * half-open trial. Returns 1 to call, 0 when refused (counted). */
int bff_brk_admit(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
                  int *from);

/* Records the outcome of an admitted call that took elapsed. Returns the
 * state it moved to, or -1 when the state did not change. */
int bff_brk_record(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
                   bff_brk_outcome_e outcome, apr_interval_time_t elapsed);

/* Forces a state (an active health probe's verdict): open (for open_ms)
 * or half-open. Returns the old state, or -1 when nothing changed. */
int bff_brk_force(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
                  bff_brk_state_e to);

/* "closed", "open", "half-open" */
const char *bff_brk_state_str(int state);

#endif /* BFF_BREAKER_H */
