/*
 * Retry decisions, backoff with jitter and the retry budget (see
 * bff_retry.h).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "bff_core.h"
#include "bff_retry.h"

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

static const char *num(int *out, const char *v, int lo, int hi,
                       const char *name, apr_pool_t *p)
{
    const char *err = bff_parse_int(out, v, lo, hi, p);

    return err ? apr_psprintf(p, "%s=%s: %s", name, v, err) : NULL;
}

static const char *statuses(bff_retry_conf_t *c, const char *v, apr_pool_t *p)
{
    char *list = apr_pstrdup(p, v), *last, *tok;

    c->nstatuses = 0;
    for (tok = apr_strtok(list, ",", &last); tok;
         tok = apr_strtok(NULL, ",", &last)) {
        int s;
        const char *err;
        if (c->nstatuses == (int)(sizeof(c->statuses) / sizeof(c->statuses[0]))) {
            return "statuses=: at most 8 statuses";
        }
        if ((err = num(&s, tok, 400, 599, "statuses", p)) != NULL) {
            return err;
        }
        c->statuses[c->nstatuses++] = s;
    }
    return NULL;
}

const char *bff_retry_conf_option(bff_retry_conf_t *c, const char *opt,
                                  apr_pool_t *p)
{
    const char *eq = strchr(opt, '=');
    const char *name, *v, *err;

    if (!eq) {
        return apr_psprintf(p, "'%s': expected NAME=VALUE", opt);
    }
    name = apr_pstrmemdup(p, opt, (apr_size_t)(eq - opt));
    v = eq + 1;
    if (!strcmp(name, "attempts")) {
        return num(&c->attempts, v, 1, 10, name, p);
    }
    if (!strcmp(name, "budget")) {
        return num(&c->budget_pct, v, 1, 100, name, p);
    }
    if (!strcmp(name, "budget-min")) {
        return num(&c->budget_min, v, 1, 100000, name, p);
    }
    if (!strcmp(name, "statuses")) {
        return statuses(c, v, p);
    }
    if (!strcmp(name, "unsafe")) {
        if (strcasecmp(v, "on") && strcasecmp(v, "off")) {
            return apr_psprintf(p, "unsafe=%s: expected on or off", v);
        }
        c->unsafe = !strcasecmp(v, "on");
        return NULL;
    }
    if (!strcmp(name, "backoff") || !strcmp(name, "max-backoff")) {
        long ms;
        err = bff_parse_duration_ms(&ms, v, p);
        if (!err && ms <= 0) {
            err = "must be greater than 0";
        }
        if (err) {
            return apr_psprintf(p, "%s=%s: %s", name, v, err);
        }
        *(name[0] == 'b' ? &c->base_ms : &c->max_ms) = ms;
        return NULL;
    }
    return apr_psprintf(p, "unknown option '%s' (expected attempts, backoff, "
                        "max-backoff, statuses, unsafe, budget or "
                        "budget-min)", name);
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
