/*
 * Retry decisions, backoff with jitter and the retry budget (see
 * bff_retry.h).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "bff_core.h"
#include "bff_retry.h"
#include "bff_opts.h"

void bff_retry_conf_default(bff_retry_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    c->attempts = 1;
    c->base_ms = 50;
    c->max_ms = 1000;
    c->statuses[0] = 502;
    c->statuses[1] = 503;
    c->statuses[2] = 504;
    c->nstatuses = 3;
    c->budget_pct = 20;
    c->budget_min = 10;
}

static const char *statuses(void *target, const char *v, apr_pool_t *p)
{
    bff_retry_conf_t *c = target;
    char *list = apr_pstrdup(p, v), *last, *tok;
    int n = 0, list_[8];

    for (tok = apr_strtok(list, ",", &last); tok;
         tok = apr_strtok(NULL, ",", &last)) {
        if (n == (int)(sizeof(list_) / sizeof(list_[0]))) {
            return "at most 8 statuses";
        }
        if (bff_parse_int(&list_[n], tok, 400, 599, p)) {
            return apr_psprintf(p, "'%s' is not a status from 400 to 599",
                                tok);
        }
        n++;
    }
    if (!n) {
        return "expected CODE[,CODE...]";
    }
    memcpy(c->statuses, list_, sizeof(int) * (apr_size_t)n);
    c->nstatuses = n;
    return NULL;
}

static const bff_opt_t retry_opts[] = {
    BFF_OPT_NUM("attempts", BFF_OPT_INT, bff_retry_conf_t, attempts, 1, 10),
    BFF_OPT_NUM("backoff", BFF_OPT_MS, bff_retry_conf_t, base_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_NUM("max-backoff", BFF_OPT_MS, bff_retry_conf_t, max_ms,
                1, BFF_OPT_MAX),
    BFF_OPT_CALL("statuses", statuses),
    BFF_OPT_VAL("unsafe", BFF_OPT_ONOFF, bff_retry_conf_t, unsafe),
    BFF_OPT_NUM("budget", BFF_OPT_INT, bff_retry_conf_t, budget_pct, 1, 100),
    BFF_OPT_NUM("budget-min", BFF_OPT_INT, bff_retry_conf_t, budget_min,
                1, 100000),
    BFF_OPT_END
};

const char *bff_retry_conf_option(bff_retry_conf_t *c, const char *opt,
                                  apr_pool_t *p)
{
    return bff_opt_parse(retry_opts, c, opt, p);
}

/* RFC 9110 9.2.2: methods whose repetition has the effect of one call */
static int idempotent(const char *m)
{
    static const char *const safe[] = { "GET", "HEAD", "OPTIONS", "TRACE",
                                        "PUT", "DELETE", NULL };
    int i;

    for (i = 0; safe[i]; i++) {
        if (!strcmp(m, safe[i])) {
            return 1;
        }
    }
    return 0;
}

int bff_retry_retryable(const bff_retry_conf_t *c, const char *method,
                        int transport_err, int status)
{
    int i;

    if (c->attempts < 2 || (!c->unsafe && !idempotent(method))) {
        return 0;
    }
    if (transport_err) {
        return 1;
    }
    for (i = 0; i < c->nstatuses; i++) {
        if (c->statuses[i] == status) {
            return 1;
        }
    }
    return 0;
}

long bff_retry_backoff_ms(const bff_retry_conf_t *c, int attempt,
                          apr_uint32_t rnd)
{
    long d = c->base_ms;
    int i;

    for (i = 2; i < attempt && d < c->max_ms; i++) {
        d *= 2;
    }
    if (d > c->max_ms) {
        d = c->max_ms;
    }
    /* equal jitter: [d/2, d] */
    return d - d / 2 + (long)(rnd % (apr_uint32_t)(d / 2 + 1));
}

static void budget_init(bff_retry_budget_t *b, const bff_retry_conf_t *c)
{
    if (!b->init) {
        b->milli = (apr_int64_t)c->budget_min * 1000;
        b->init = 1;
    }
}

void bff_retry_budget_deposit(bff_retry_budget_t *b, const bff_retry_conf_t *c)
{
    apr_int64_t cap = (apr_int64_t)c->budget_min * 1000;

    budget_init(b, c);
    b->milli += c->budget_pct * 10;
    if (b->milli > cap) {
        b->milli = cap;
    }
}

int bff_retry_budget_take(bff_retry_budget_t *b, const bff_retry_conf_t *c)
{
    budget_init(b, c);
    if (b->milli < 1000) {
        return 0;
    }
    b->milli -= 1000;
    return 1;
}
