/*
 * The circuit breaker state machine (see bff_breaker.h).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "bff_core.h"
#include "bff_breaker.h"
#include "bff_opts.h"

void bff_brk_conf_default(bff_brk_conf_t *c)
{
    c->failure_rate = 50;
    c->min_calls = 10;
    c->window = 20;
    c->consecutive = 0;
    c->slow_ms = 0;
    c->open_ms = 30000;
    c->half_open = 3;
    c->scope = BFF_BRK_SCOPE_HOST;
}

static const char *opt_scope(void *target, const char *v, apr_pool_t *p)
{
    bff_brk_conf_t *c = target;

    if (!strcmp(v, "host")) {
        c->scope = BFF_BRK_SCOPE_HOST;
    }
    else if (!strcmp(v, "backend")) {
        c->scope = BFF_BRK_SCOPE_BACKEND;
    }
    else {
        return "expected scope=host or scope=backend";
    }
    return NULL;
}

static const bff_opt_t brk_opts[] = {
    BFF_OPT_NUM("failure-rate", BFF_OPT_INT, bff_brk_conf_t, failure_rate,
                1, 100),
    BFF_OPT_NUM("min-calls", BFF_OPT_INT, bff_brk_conf_t, min_calls,
                1, BFF_BRK_WINDOW_MAX),
    BFF_OPT_NUM("window", BFF_OPT_INT, bff_brk_conf_t, window,
                1, BFF_BRK_WINDOW_MAX),
    BFF_OPT_NUM("consecutive", BFF_OPT_INT, bff_brk_conf_t, consecutive,
                0, 100000),
    BFF_OPT_NUM("slow", BFF_OPT_MS, bff_brk_conf_t, slow_ms, 1, BFF_OPT_MAX),
    BFF_OPT_NUM("open", BFF_OPT_MS, bff_brk_conf_t, open_ms, 0, LONG_MAX),
    BFF_OPT_NUM("half-open", BFF_OPT_INT, bff_brk_conf_t, half_open, 1, 1000),
    BFF_OPT_CALL("scope", opt_scope),
    BFF_OPT_END
};

const char *bff_brk_conf_option(bff_brk_conf_t *c, const char *opt,
                                apr_pool_t *p)
{
    return bff_opt_parse(brk_opts, c, opt, p);
}

const char *bff_brk_conf_check(const bff_brk_conf_t *c, apr_pool_t *p)
{
    if (c->min_calls > c->window) {
        return apr_psprintf(p, "min-calls=%d is larger than window=%d: the "
                            "failure rate would never count", c->min_calls,
                            c->window);
    }
    return NULL;
}

const char *bff_brk_state_str(int state)
{
    switch (state) {
    case BFF_BRK_CLOSED:    return "closed";
    case BFF_BRK_OPEN:      return "open";
    case BFF_BRK_HALF_OPEN: return "half-open";
    }
    return "unknown";
}

static void window_clear(bff_brk_t *b)
{
    b->win_len = b->win_pos = b->win_fail = 0;
    b->consecutive = 0;
    memset(b->win_bits, 0, sizeof(b->win_bits));
}

static int bit_get(const bff_brk_t *b, apr_uint32_t i)
{
    return (int)((b->win_bits[i / 64] >> (i % 64)) & 1);
}

static void bit_set(bff_brk_t *b, apr_uint32_t i, int v)
{
    if (v) {
        b->win_bits[i / 64] |= (apr_uint64_t)1 << (i % 64);
    }
    else {
        b->win_bits[i / 64] &= ~((apr_uint64_t)1 << (i % 64));
    }
}

/* Moves to a state; returns the old one. */
static int go(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
              bff_brk_state_e to)
{
    int from = (int)b->state;

    b->state = to;
    b->changed_at = now;
    b->trials = b->trial_ok = 0;
    switch (to) {
    case BFF_BRK_OPEN:
        b->open_until = now + apr_time_from_msec(c->open_ms);
        b->n.opened++;
        break;
    case BFF_BRK_HALF_OPEN:
        b->trials_since = now;
        b->n.half_opened++;
        break;
    case BFF_BRK_CLOSED:
        window_clear(b);
        b->n.closed++;
        break;
    }
    return from;
}

int bff_brk_admit(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
                  int *from)
{
    *from = -1;
    if (b->state == BFF_BRK_OPEN && now >= b->open_until) {
        *from = go(b, c, now, BFF_BRK_HALF_OPEN);
    }
    if (b->state == BFF_BRK_HALF_OPEN
        && now - b->trials_since >= apr_time_from_msec(c->open_ms)) {
        /* trials admitted but never reported (cancelled with their
         * request): start a new round rather than stay stuck */
        b->trials = b->trial_ok = 0;
        b->trials_since = now;
    }
    switch (b->state) {
    case BFF_BRK_CLOSED:
        return 1;
    case BFF_BRK_HALF_OPEN:
        if (b->trials < (apr_uint32_t)c->half_open) {
            b->trials++;
            return 1;
        }
        break;
    }
    b->n.refused++;
    return 0;
}

int bff_brk_record(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
                   bff_brk_outcome_e outcome, apr_interval_time_t elapsed)
{
    int failed;
    apr_uint32_t win = (apr_uint32_t)c->window;

    if (outcome == BFF_BRK_IGNORED) {
        if (b->state == BFF_BRK_HALF_OPEN && b->trials > b->trial_ok) {
            b->trials--;     /* give the trial back */
        }
        return -1;
    }
    failed = outcome == BFF_BRK_FAILURE;
    b->n.calls++;
    if (!failed && c->slow_ms > 0 && elapsed >= apr_time_from_msec(c->slow_ms)) {
        failed = 1;
        b->n.slow++;
    }
    if (failed) {
        b->n.failures++;
    }

    switch (b->state) {
    case BFF_BRK_OPEN:
        /* a call admitted before the breaker opened: already judged */
        return -1;
    case BFF_BRK_HALF_OPEN:
        if (failed) {
            go(b, c, now, BFF_BRK_OPEN);
            return BFF_BRK_OPEN;
        }
        if (++b->trial_ok >= (apr_uint32_t)c->half_open) {
            go(b, c, now, BFF_BRK_CLOSED);
            return BFF_BRK_CLOSED;
        }
        return -1;
    }

    /* closed: slide the window */
    if (win > BFF_BRK_WINDOW_MAX) {
        win = BFF_BRK_WINDOW_MAX;
    }
    if (b->win_pos >= win) {
        b->win_pos = 0;      /* the window size changed on a restart */
    }
    if (b->win_len >= win) {
        b->win_fail -= (apr_uint32_t)bit_get(b, b->win_pos);
    }
    else {
        b->win_len++;
    }
    bit_set(b, b->win_pos, failed);
    b->win_fail += (apr_uint32_t)failed;
    b->win_pos = (b->win_pos + 1) % win;
    b->consecutive = failed ? b->consecutive + 1 : 0;

    if ((c->consecutive > 0 && b->consecutive >= (apr_uint32_t)c->consecutive)
        || (b->win_len >= (apr_uint32_t)c->min_calls
            && b->win_fail * 100 >= (apr_uint32_t)c->failure_rate * b->win_len)) {
        go(b, c, now, BFF_BRK_OPEN);
        return BFF_BRK_OPEN;
    }
    return -1;
}

int bff_brk_force(bff_brk_t *b, const bff_brk_conf_t *c, apr_time_t now,
                  bff_brk_state_e to)
{
    if ((int)b->state == (int)to) {
        return -1;
    }
    return go(b, c, now, to);
}
