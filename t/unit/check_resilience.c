/*
 * Unit tests for the circuit breaker state machine and the retry
 * arithmetic (backoff with jitter, budget). Time is passed in, so every
 * transition is checked at exact instants.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_atomic.h>

#include "bff_breaker.h"
#include "bff_retry.h"
#include "bff_inflight.h"
#include "bff_futex.h"

#include <pthread.h>

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

#define MS(n) apr_time_from_msec(n)
#define T0 ((apr_time_t)1000000000)

static int admit(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now)
{
    int from;
    return bff_brk_admit(b, c, now, &from);
}

/* n calls with outcome o at time now; returns the last transition */
static int calls(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
                 int n, bff_brk_outcome_e o)
{
    int t = -1, i;

    for (i = 0; i < n; i++) {
        ck_assert_int_eq(admit(b, c, now), 1);
        t = bff_brk_record(b, c, now, o, MS(1));
        if (t >= 0) {
            return t;
        }
    }
    return t;
}

/* --------------------------------------------------------- breaker -- */

START_TEST(defaults_are_resilience4j_like)
{
    bff_brk_conf_t c;

    bff_brk_conf_default(&c);
    ck_assert_int_eq(c.failure_rate, 50);
    ck_assert_int_eq(c.min_calls, 10);
    ck_assert_int_eq(c.consecutive, 0);
    ck_assert_int_eq(c.half_open, 3);
}
END_TEST

START_TEST(rate_needs_min_calls)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    memset(&b, 0, sizeof(b));
    /* 9 failures: below min-calls, still closed */
    ck_assert_int_eq(calls(&b, &c, T0, 9, BFF_BRK_FAILURE), -1);
    ck_assert_int_eq(b.state, BFF_BRK_CLOSED);
    /* the 10th call reaches min-calls with 100% failures */
    ck_assert_int_eq(calls(&b, &c, T0, 1, BFF_BRK_FAILURE), BFF_BRK_OPEN);
    ck_assert_int_eq(b.state, BFF_BRK_OPEN);
    ck_assert_uint_eq(b.n.opened, 1);
    ck_assert_uint_eq(b.n.failures, 10);
}
END_TEST

START_TEST(rate_threshold_exact)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    memset(&b, 0, sizeof(b));
    /* 6 successes then 4 failures: 40% of 10, closed */
    calls(&b, &c, T0, 6, BFF_BRK_SUCCESS);
    ck_assert_int_eq(calls(&b, &c, T0, 4, BFF_BRK_FAILURE), -1);
    /* one more failure: 5 of 11 = 45%, closed; another: 6 of 12 = 50% */
    ck_assert_int_eq(calls(&b, &c, T0, 1, BFF_BRK_FAILURE), -1);
    ck_assert_int_eq(calls(&b, &c, T0, 1, BFF_BRK_FAILURE), BFF_BRK_OPEN);
}
END_TEST

START_TEST(window_slides)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    c.window = 10;
    memset(&b, 0, sizeof(b));
    /* 4 failures, then many successes push them out of the window */
    calls(&b, &c, T0, 4, BFF_BRK_FAILURE);
    calls(&b, &c, T0, 20, BFF_BRK_SUCCESS);
    ck_assert_uint_eq(b.win_fail, 0);
    ck_assert_uint_eq(b.win_len, 10);
    /* now 4 failures are 40% of the window: closed; a 5th: 50%, open */
    ck_assert_int_eq(calls(&b, &c, T0, 4, BFF_BRK_FAILURE), -1);
    ck_assert_int_eq(calls(&b, &c, T0, 1, BFF_BRK_FAILURE), BFF_BRK_OPEN);
}
END_TEST

START_TEST(consecutive_failures_open)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    c.consecutive = 3;
    c.min_calls = 100;
    c.window = 100;
    memset(&b, 0, sizeof(b));
    calls(&b, &c, T0, 2, BFF_BRK_FAILURE);
    calls(&b, &c, T0, 1, BFF_BRK_SUCCESS);    /* breaks the run */
    ck_assert_int_eq(calls(&b, &c, T0, 2, BFF_BRK_FAILURE), -1);
    ck_assert_int_eq(calls(&b, &c, T0, 1, BFF_BRK_FAILURE), BFF_BRK_OPEN);
}
END_TEST

START_TEST(slow_calls_count_as_failures)
{
    bff_brk_conf_t c;
    bff_brk_t b;
    int i, t = -1;

    bff_brk_conf_default(&c);
    c.slow_ms = 200;
    c.min_calls = 4;
    memset(&b, 0, sizeof(b));
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(admit(&b, &c, T0), 1);
        /* successes, but slower than 200 ms */
        t = bff_brk_record(&b, &c, T0, BFF_BRK_SUCCESS, MS(i < 2 ? 199 : 250));
    }
    ck_assert_int_eq(t, BFF_BRK_OPEN);      /* 2 slow of 4 = 50% */
    ck_assert_uint_eq(b.n.slow, 2);
    ck_assert_uint_eq(b.n.failures, 2);
}
END_TEST

START_TEST(open_refuses_then_half_open)
{
    bff_brk_conf_t c;
    bff_brk_t b;
    int from;

    bff_brk_conf_default(&c);
    c.consecutive = 1;
    c.open_ms = 1000;
    c.half_open = 2;
    memset(&b, 0, sizeof(b));
    calls(&b, &c, T0, 1, BFF_BRK_FAILURE);
    ck_assert_int_eq(b.state, BFF_BRK_OPEN);
    ck_assert_int_eq(bff_brk_admit(&b, &c, T0 + MS(999), &from), 0);
    ck_assert_int_eq(from, -1);
    ck_assert_uint_eq(b.n.refused, 1);
    /* the wait is over: half-open, 2 trials, the third is refused */
    ck_assert_int_eq(bff_brk_admit(&b, &c, T0 + MS(1000), &from), 1);
    ck_assert_int_eq(from, BFF_BRK_OPEN);
    ck_assert_int_eq(b.state, BFF_BRK_HALF_OPEN);
    ck_assert_int_eq(bff_brk_admit(&b, &c, T0 + MS(1001), &from), 1);
    ck_assert_int_eq(from, -1);
    ck_assert_int_eq(bff_brk_admit(&b, &c, T0 + MS(1002), &from), 0);
    ck_assert_uint_eq(b.n.half_opened, 1);
}
END_TEST

START_TEST(half_open_closes_on_successes)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    c.consecutive = 1;
    c.open_ms = 100;
    c.half_open = 2;
    memset(&b, 0, sizeof(b));
    calls(&b, &c, T0, 1, BFF_BRK_FAILURE);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(100)), 1);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(100)), 1);
    ck_assert_int_eq(bff_brk_record(&b, &c, T0 + MS(110), BFF_BRK_SUCCESS, MS(1)), -1);
    ck_assert_int_eq(bff_brk_record(&b, &c, T0 + MS(120), BFF_BRK_SUCCESS, MS(1)),
                     BFF_BRK_CLOSED);
    ck_assert_int_eq(b.state, BFF_BRK_CLOSED);
    ck_assert_uint_eq(b.win_len, 0);          /* a fresh window */
    ck_assert_uint_eq(b.n.closed, 1);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(121)), 1);
}
END_TEST

START_TEST(half_open_failure_reopens)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    c.consecutive = 1;
    c.open_ms = 100;
    memset(&b, 0, sizeof(b));
    calls(&b, &c, T0, 1, BFF_BRK_FAILURE);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(150)), 1);
    ck_assert_int_eq(bff_brk_record(&b, &c, T0 + MS(160), BFF_BRK_FAILURE, MS(1)),
                     BFF_BRK_OPEN);
    /* open again for open_ms from now */
    ck_assert_int_eq(admit(&b, &c, T0 + MS(259)), 0);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(260)), 1);
    ck_assert_uint_eq(b.n.opened, 2);
}
END_TEST

START_TEST(late_reports_while_open_ignored)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    c.consecutive = 2;
    memset(&b, 0, sizeof(b));
    /* three calls in flight, two fail and open it, the third reports late */
    admit(&b, &c, T0);
    admit(&b, &c, T0);
    admit(&b, &c, T0);
    bff_brk_record(&b, &c, T0, BFF_BRK_FAILURE, MS(1));
    ck_assert_int_eq(bff_brk_record(&b, &c, T0, BFF_BRK_FAILURE, MS(1)), BFF_BRK_OPEN);
    ck_assert_int_eq(bff_brk_record(&b, &c, T0, BFF_BRK_SUCCESS, MS(1)), -1);
    ck_assert_int_eq(b.state, BFF_BRK_OPEN);
    ck_assert_uint_eq(b.n.opened, 1);
}
END_TEST

START_TEST(unreported_trials_expire)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    c.consecutive = 1;
    c.open_ms = 100;
    c.half_open = 1;
    memset(&b, 0, sizeof(b));
    calls(&b, &c, T0, 1, BFF_BRK_FAILURE);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(100)), 1);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(150)), 0);
    /* the trial was cancelled: IGNORED gives it back */
    bff_brk_record(&b, &c, T0 + MS(150), BFF_BRK_IGNORED, 0);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(151)), 1);
    /* this one never reports: a new round after open_ms */
    ck_assert_int_eq(admit(&b, &c, T0 + MS(199)), 0);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(200)), 1);
}
END_TEST

START_TEST(force_by_probe)
{
    bff_brk_conf_t c;
    bff_brk_t b;

    bff_brk_conf_default(&c);
    c.open_ms = 1000;
    memset(&b, 0, sizeof(b));
    ck_assert_int_eq(bff_brk_force(&b, &c, T0, BFF_BRK_OPEN), BFF_BRK_CLOSED);
    ck_assert_int_eq(bff_brk_force(&b, &c, T0, BFF_BRK_OPEN), -1);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(10)), 0);
    ck_assert_int_eq(bff_brk_force(&b, &c, T0 + MS(20), BFF_BRK_HALF_OPEN),
                     BFF_BRK_OPEN);
    ck_assert_int_eq(admit(&b, &c, T0 + MS(21)), 1);
}
END_TEST

START_TEST(conf_options)
{
    bff_brk_conf_t c;

    bff_brk_conf_default(&c);
    ck_assert_ptr_null(bff_brk_conf_option(&c, "failure-rate=25", pool));
    ck_assert_ptr_null(bff_brk_conf_option(&c, "min-calls=4", pool));
    ck_assert_ptr_null(bff_brk_conf_option(&c, "window=8", pool));
    ck_assert_ptr_null(bff_brk_conf_option(&c, "consecutive=3", pool));
    ck_assert_ptr_null(bff_brk_conf_option(&c, "slow=1500ms", pool));
    ck_assert_ptr_null(bff_brk_conf_option(&c, "open=2s", pool));
    ck_assert_ptr_null(bff_brk_conf_option(&c, "half-open=5", pool));
    ck_assert_int_eq(c.failure_rate, 25);
    ck_assert_int_eq(c.min_calls, 4);
    ck_assert_int_eq(c.window, 8);
    ck_assert_int_eq(c.consecutive, 3);
    ck_assert_int_eq(c.slow_ms, 1500);
    ck_assert_int_eq(c.open_ms, 2000);
    ck_assert_int_eq(c.half_open, 5);
    ck_assert_ptr_null(bff_brk_conf_check(&c, pool));
    ck_assert_str_eq(bff_brk_conf_option(&c, "failure-rate=0", pool),
                     "failure-rate=0: expected a number from 1 to 100");
    ck_assert_str_eq(bff_brk_conf_option(&c, "window=129", pool),
                     "window=129: expected a number from 1 to 128");
    ck_assert_ptr_nonnull(strstr(bff_brk_conf_option(&c, "colour=red", pool),
                                 "unknown option 'colour='"));
    ck_assert_ptr_nonnull(strstr(bff_brk_conf_option(&c, "slow", pool),
                                 "slow: expected slow=VALUE"));
    ck_assert_ptr_nonnull(bff_brk_conf_option(&c, "open=soon", pool));
    ck_assert_int_eq(c.scope, BFF_BRK_SCOPE_HOST);
    ck_assert_ptr_null(bff_brk_conf_option(&c, "scope=backend", pool));
    ck_assert_int_eq(c.scope, BFF_BRK_SCOPE_BACKEND);
    ck_assert_str_eq(bff_brk_conf_option(&c, "scope=vhost", pool),
                     "scope=: expected scope=host or scope=backend");
    ck_assert_int_eq(c.scope, BFF_BRK_SCOPE_BACKEND);
    c.min_calls = 9;
    ck_assert_ptr_nonnull(strstr(bff_brk_conf_check(&c, pool),
                                 "min-calls=9 is larger than window=8"));
}
END_TEST

/* ----------------------------------------------------------- retry -- */

START_TEST(retryable_methods_and_statuses)
{
    bff_retry_conf_t c;

    bff_retry_conf_default(&c);
    /* attempts=1: never */
    ck_assert_int_eq(bff_retry_retryable(&c, "GET", 1, 0), 0);
    c.attempts = 3;
    ck_assert_int_eq(bff_retry_retryable(&c, "GET", 1, 0), 1);
    ck_assert_int_eq(bff_retry_retryable(&c, "GET", 0, 503), 1);
    ck_assert_int_eq(bff_retry_retryable(&c, "GET", 0, 500), 0);
    ck_assert_int_eq(bff_retry_retryable(&c, "GET", 0, 404), 0);
    ck_assert_int_eq(bff_retry_retryable(&c, "PUT", 0, 502), 1);
    ck_assert_int_eq(bff_retry_retryable(&c, "POST", 1, 0), 0);
    ck_assert_int_eq(bff_retry_retryable(&c, "PATCH", 0, 503), 0);
    c.unsafe = 1;
    ck_assert_int_eq(bff_retry_retryable(&c, "POST", 1, 0), 1);
}
END_TEST

START_TEST(backoff_exponential_with_jitter)
{
    bff_retry_conf_t c;
    apr_uint32_t r;

    bff_retry_conf_default(&c);
    c.base_ms = 100;
    c.max_ms = 350;
    /* equal jitter: [d/2, d] with d = 100, 200, 350 (capped), 350 */
    ck_assert_int_eq(bff_retry_backoff_ms(&c, 2, 0), 50);
    ck_assert_int_eq(bff_retry_backoff_ms(&c, 2, 50), 100);
    ck_assert_int_eq(bff_retry_backoff_ms(&c, 3, 0), 100);
    ck_assert_int_eq(bff_retry_backoff_ms(&c, 3, 100), 200);
    ck_assert_int_eq(bff_retry_backoff_ms(&c, 4, 0), 175);
    ck_assert_int_eq(bff_retry_backoff_ms(&c, 9, 175), 350);
    for (r = 0; r < 2000; r += 7) {
        long d = bff_retry_backoff_ms(&c, 3, r * 2654435761u);
        ck_assert_int_ge(d, 100);
        ck_assert_int_le(d, 200);
    }
}
END_TEST

START_TEST(budget_burst_then_ratio)
{
    bff_retry_conf_t c;
    bff_retry_budget_t b;
    int i, n = 0;

    bff_retry_conf_default(&c);
    c.budget_min = 3;
    c.budget_pct = 20;
    memset(&b, 0, sizeof(b));
    /* a burst of budget_min retries */
    for (i = 0; i < 10; i++) {
        n += bff_retry_budget_take(&b, &c);
    }
    ck_assert_int_eq(n, 3);
    /* then one retry per 5 calls (20%) */
    for (i = 0; i < 4; i++) {
        bff_retry_budget_deposit(&b, &c);
    }
    ck_assert_int_eq(bff_retry_budget_take(&b, &c), 0);
    bff_retry_budget_deposit(&b, &c);
    ck_assert_int_eq(bff_retry_budget_take(&b, &c), 1);
    ck_assert_int_eq(bff_retry_budget_take(&b, &c), 0);
    /* deposits are capped at budget_min tokens */
    for (i = 0; i < 100; i++) {
        bff_retry_budget_deposit(&b, &c);
    }
    for (n = 0, i = 0; i < 10; i++) {
        n += bff_retry_budget_take(&b, &c);
    }
    ck_assert_int_eq(n, 3);
}
END_TEST

START_TEST(retry_conf_options)
{
    bff_retry_conf_t c;

    bff_retry_conf_default(&c);
    ck_assert_ptr_null(bff_retry_conf_option(&c, "attempts=3", pool));
    ck_assert_ptr_null(bff_retry_conf_option(&c, "backoff=20ms", pool));
    ck_assert_ptr_null(bff_retry_conf_option(&c, "max-backoff=2s", pool));
    ck_assert_ptr_null(bff_retry_conf_option(&c, "statuses=500,429", pool));
    ck_assert_ptr_null(bff_retry_conf_option(&c, "unsafe=on", pool));
    ck_assert_ptr_null(bff_retry_conf_option(&c, "budget=10", pool));
    ck_assert_ptr_null(bff_retry_conf_option(&c, "budget-min=5", pool));
    ck_assert_int_eq(c.attempts, 3);
    ck_assert_int_eq(c.base_ms, 20);
    ck_assert_int_eq(c.max_ms, 2000);
    ck_assert_int_eq(c.nstatuses, 2);
    ck_assert_int_eq(c.statuses[1], 429);
    ck_assert_int_eq(c.unsafe, 1);
    ck_assert_int_eq(c.budget_pct, 10);
    ck_assert_int_eq(c.budget_min, 5);
    ck_assert_str_eq(bff_retry_conf_option(&c, "attempts=0", pool),
                     "attempts=0: expected a number from 1 to 10");
    ck_assert_str_eq(bff_retry_conf_option(&c, "statuses=200", pool),
                     "statuses=: '200' is not a status from 400 to 599");
    ck_assert_ptr_nonnull(strstr(bff_retry_conf_option(&c, "statuses=,", pool),
                                 "statuses=: expected CODE[,CODE...]"));
    /* a refused list leaves the statuses as they were */
    ck_assert_int_eq(c.nstatuses, 2);
    ck_assert_str_eq(bff_retry_conf_option(&c, "unsafe=maybe", pool),
                     "unsafe=maybe: expected on or off");
    ck_assert_ptr_nonnull(strstr(bff_retry_conf_option(&c, "tries=2", pool),
                                 "unknown option 'tries=' (expected attempts=, "));
}
END_TEST

/* ----------------------------------------------------------- in flight -- */

static apr_uint32_t gone_pid;

static int alive_but_gone(apr_uint32_t pid)
{
    return pid != gone_pid;
}

static bff_inflight_t *inflight_new(int rows, int counters, void **mem)
{
    *mem = apr_pcalloc(pool, bff_inflight_size(rows, counters));
    return bff_inflight_attach(*mem, rows, counters, pool);
}

START_TEST(inflight_caps)
{
    void *mem;
    bff_inflight_t *t = inflight_new(3, 4, &mem);
    int r1, r2, idx[2] = { 0, 2 };
    apr_uint32_t caps[2] = { 3, 2 };

    ck_assert_ptr_nonnull(t);
    r1 = bff_inflight_claim(t, 101, alive_but_gone);
    r2 = bff_inflight_claim(t, 102, alive_but_gone);
    ck_assert_int_ge(r1, 0);
    ck_assert_int_ne(r1, r2);
    /* counter 2 is capped at 2: the third is refused, on position 1 */
    ck_assert_int_eq(bff_inflight_enter(t, r1, idx, caps, 2), -1);
    ck_assert_int_eq(bff_inflight_enter(t, r2, idx, caps, 2), -1);
    ck_assert_int_eq(bff_inflight_enter(t, r2, idx, caps, 2), 1);
    /* a refusal changes nothing */
    ck_assert_uint_eq(bff_inflight_count(t, 0), 2);
    ck_assert_uint_eq(bff_inflight_count(t, 2), 2);
    /* counter 0 (cap 3) still takes one that skips counter 2 */
    ck_assert_int_eq(bff_inflight_enter(t, r2, idx, caps, 1), -1);
    ck_assert_int_eq(bff_inflight_enter(t, r1, idx, caps, 1), 0);
    ck_assert_uint_eq(bff_inflight_count(t, 0), 3);
    bff_inflight_leave(t, r1, idx, 2);
    ck_assert_uint_eq(bff_inflight_count(t, 0), 2);
    ck_assert_uint_eq(bff_inflight_count(t, 2), 1);
    /* no cap: always admitted; out-of-range counters are ignored */
    caps[0] = caps[1] = 0;
    ck_assert_int_eq(bff_inflight_enter(t, r1, idx, caps, 2), -1);
    idx[1] = 99;
    ck_assert_int_eq(bff_inflight_enter(t, r1, idx, caps, 2), -1);
    ck_assert_uint_eq(bff_inflight_count(t, 99), 0);
    /* another shape over the same memory is refused */
    ck_assert_ptr_null(bff_inflight_attach(mem, 3, 5, pool));
    ck_assert_ptr_nonnull(bff_inflight_attach(mem, 3, 4, pool));
}
END_TEST

START_TEST(inflight_crashed_process)
{
    void *mem;
    bff_inflight_t *t = inflight_new(2, 2, &mem);
    int r1, r2, r3, idx[1] = { 1 };
    apr_uint32_t caps[1] = { 1 };

    r1 = bff_inflight_claim(t, 201, alive_but_gone);
    r2 = bff_inflight_claim(t, 202, alive_but_gone);
    ck_assert_int_eq(bff_inflight_claim(t, 203, alive_but_gone), -1);
    ck_assert_int_eq(bff_inflight_enter(t, r1, idx, caps, 1), -1);
    ck_assert_int_eq(bff_inflight_enter(t, r2, idx, caps, 1), 0);
    /* 201 dies with its request in flight: its count stays until a new
     * process claims a row, which clears the dead one */
    gone_pid = 201;
    r3 = bff_inflight_claim(t, 203, alive_but_gone);
    ck_assert_int_eq(r3, r1);
    ck_assert_uint_eq(bff_inflight_count(t, 1), 0);
    ck_assert_int_eq(bff_inflight_enter(t, r3, idx, caps, 1), -1);
    /* a normal exit gives the row back, empty */
    bff_inflight_release(t, r3);
    ck_assert_uint_eq(bff_inflight_count(t, 1), 0);
    ck_assert_int_eq(bff_inflight_claim(t, 204, alive_but_gone), r3);
    gone_pid = 0;
    /* reaped by its parent (still "alive" to kill(), as a zombie is):
     * forgetting it clears and frees its row at once; another pid's row
     * is left alone */
    caps[0] = 2;
    ck_assert_int_eq(bff_inflight_enter(t, r2, idx, caps, 1), -1);
    ck_assert_int_eq(bff_inflight_enter(t, r3, idx, caps, 1), -1);
    ck_assert_uint_eq(bff_inflight_count(t, 1), 2);
    bff_inflight_forget(t, 202);
    ck_assert_uint_eq(bff_inflight_count(t, 1), 1);
    ck_assert_int_eq(bff_inflight_claim(t, 205, alive_but_gone), r2);
    bff_inflight_forget(t, 204);
    ck_assert_uint_eq(bff_inflight_count(t, 1), 0);
}
END_TEST

typedef struct {
    bff_inflight_t *t;
    int row;
    volatile apr_uint32_t *inside;
    volatile apr_uint32_t *max_seen;
    int admitted;
} inflight_worker_t;

/* Counts who is admitted with a counter of its own: the table's count
 * also holds, for a moment, the entries of requests about to be refused,
 * so it may pass the cap while the admitted never do. */
static void *inflight_worker(void *data)
{
    inflight_worker_t *w = data;
    int idx[1] = { 0 }, i;
    apr_uint32_t caps[1] = { 5 };

    for (i = 0; i < 20000; i++) {
        if (bff_inflight_enter(w->t, w->row, idx, caps, 1) < 0) {
            apr_uint32_t n = apr_atomic_inc32(w->inside) + 1;
            apr_uint32_t m = *w->max_seen;
            while (n > m && apr_atomic_cas32(w->max_seen, n, m) != m) {
                m = *w->max_seen;
            }
            w->admitted++;
            apr_atomic_dec32(w->inside);
            bff_inflight_leave(w->t, w->row, idx, 1);
        }
    }
    return NULL;
}

/* 8 threads in 4 rows race for a cap of 5: never more than 5 in. */
START_TEST(inflight_threads)
{
    void *mem;
    bff_inflight_t *t = inflight_new(4, 1, &mem);
    inflight_worker_t w[8];
    pthread_t th[8];
    volatile apr_uint32_t max_seen = 0, inside = 0;
    int i, rows[4], total = 0;

    for (i = 0; i < 4; i++) {
        rows[i] = bff_inflight_claim(t, (apr_uint32_t)(300 + i), alive_but_gone);
    }
    for (i = 0; i < 8; i++) {
        w[i].t = t;
        w[i].row = rows[i % 4];
        w[i].inside = &inside;
        w[i].max_seen = &max_seen;
        w[i].admitted = 0;
        pthread_create(&th[i], NULL, inflight_worker, &w[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += w[i].admitted;
    }
    ck_assert_uint_le(max_seen, 5);
    ck_assert_int_gt(total, 0);
    ck_assert_uint_eq(bff_inflight_count(t, 0), 0);
}
END_TEST

/* four buckets a thread, a power of two between 16 and 16,384 */
START_TEST(futex_hash_slots)
{
    ck_assert_uint_eq(bff_futex_hash_slots(-1), 0);
    ck_assert_uint_eq(bff_futex_hash_slots(0), 0);
    ck_assert_uint_eq(bff_futex_hash_slots(1), 0);
    ck_assert_uint_eq(bff_futex_hash_slots(2), 16);
    ck_assert_uint_eq(bff_futex_hash_slots(4), 16);
    ck_assert_uint_eq(bff_futex_hash_slots(5), 32);
    ck_assert_uint_eq(bff_futex_hash_slots(25), 128);
    ck_assert_uint_eq(bff_futex_hash_slots(384), 2048);
    ck_assert_uint_eq(bff_futex_hash_slots(4096), 16384);
    ck_assert_uint_eq(bff_futex_hash_slots(4097), 16384);
    ck_assert_uint_eq(bff_futex_hash_slots(1 << 30), 16384);
}
END_TEST

static void *futex_idle(void *arg)
{
    pthread_barrier_wait(arg);
    return NULL;
}

/* The size asked for, kept by threads started after it (the MPM starts
 * its workers after child_init). Each test runs in a process of its own
 * (check forks), so the size does not leak into another. */
START_TEST(futex_hash_sized)
{
    pthread_barrier_t b;
    pthread_t th[4];
    int before, after, err, i;

    err = bff_futex_hash_set(bff_futex_hash_slots(384), &before, &after);
    if (err == EINVAL && before == -1) {
        fprintf(stderr, "futex_hash_sized: no process futex hashes in this "
                "kernel (before Linux 6.16), nothing to size\n");
        return;
    }
    ck_assert_int_eq(err, 0);
    ck_assert_int_eq(after, 2048);
    pthread_barrier_init(&b, NULL, 5);
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, futex_idle, &b), 0);
    }
    err = bff_futex_hash_set(bff_futex_hash_slots(25), &before, &after);
    pthread_barrier_wait(&b);
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    ck_assert_int_eq(err, 0);
    ck_assert_int_eq(before, 2048);
    ck_assert_int_eq(after, 128);
    /* no size asked for: the size stays */
    ck_assert_int_eq(bff_futex_hash_set(0, &before, &after), 0);
    ck_assert_int_eq(before, 128);
    ck_assert_int_eq(after, 128);
    /* a size the kernel refuses (not a power of two): the error, and the
     * size kept */
    ck_assert_int_eq(bff_futex_hash_set(1000, &before, &after), EINVAL);
    ck_assert_int_eq(before, 128);
    ck_assert_int_eq(after, 128);
}
END_TEST

static Suite *resilience_suite(void)
{
    Suite *s = suite_create("resilience");
    TCase *tc = tcase_create("breaker");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults_are_resilience4j_like);
    tcase_add_test(tc, rate_needs_min_calls);
    tcase_add_test(tc, rate_threshold_exact);
    tcase_add_test(tc, window_slides);
    tcase_add_test(tc, consecutive_failures_open);
    tcase_add_test(tc, slow_calls_count_as_failures);
    tcase_add_test(tc, open_refuses_then_half_open);
    tcase_add_test(tc, half_open_closes_on_successes);
    tcase_add_test(tc, half_open_failure_reopens);
    tcase_add_test(tc, late_reports_while_open_ignored);
    tcase_add_test(tc, unreported_trials_expire);
    tcase_add_test(tc, force_by_probe);
    tcase_add_test(tc, conf_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("retry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, retryable_methods_and_statuses);
    tcase_add_test(tc, backoff_exponential_with_jitter);
    tcase_add_test(tc, budget_burst_then_ratio);
    tcase_add_test(tc, retry_conf_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("inflight");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, inflight_caps);
    tcase_add_test(tc, inflight_crashed_process);
    tcase_add_test(tc, inflight_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("futex");
    tcase_add_test(tc, futex_hash_slots);
    tcase_add_test(tc, futex_hash_sized);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(resilience_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
