/*
 * mod_bff: when to fetch a JWKS by URL again (see bff_jwks.h).
 */
#include <string.h>
#include <apr_lib.h>

#include "bff_jwks.h"

/* Whether the directive at s (length n) is name, case-insensitively. */
static int directive_is(const char *s, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(s, name, n) == 0;
}

apr_int64_t bff_jwks_max_age(const char *cc)
{
    apr_int64_t age = -1;

    while (cc && *cc) {
        const char *start;
        size_t n;

        while (*cc == ',' || apr_isspace(*cc))
            cc++;
        start = cc;
        while (*cc && *cc != ',' && *cc != '=' && !apr_isspace(*cc))
            cc++;
        n = (size_t)(cc - start);
        while (apr_isspace(*cc))
            cc++;
        if (*cc == '=') {
            apr_int64_t x = 0;
            int digits = 0;

            cc++;
            while (apr_isspace(*cc))
                cc++;
            if (*cc == '"')
                cc++;
            while (apr_isdigit(*cc)) {
                if (x < APR_INT64_C(1000000000000))
                    x = x * 10 + (*cc - '0');
                cc++;
                digits++;
            }
            if (*cc == '"')
                cc++;
            if (directive_is(start, n, "max-age")) {
                if (!digits || (*cc && *cc != ',' && !apr_isspace(*cc)))
                    return -1;  /* malformed: ignore the header */
                age = x;
            }
            while (*cc && *cc != ',')
                cc++;
        }
        else if (directive_is(start, n, "no-store")
                 || directive_is(start, n, "no-cache")) {
            return -1;
        }
        if (n == 0 && *cc && *cc != ',')
            cc++;  /* a stray character: skip it */
    }
    return age;
}

apr_time_t bff_jwks_next_due(const bff_jwks_sched_t *s, int ok,
                             const char *cache_control, apr_time_t now)
{
    apr_int64_t ms, age;

    if (!ok)
        return now + apr_time_from_msec(s->min_ms);
    ms = s->refresh_ms;
    age = bff_jwks_max_age(cache_control);
    if (age >= 0)
        ms = age * 1000;
    if (ms < s->min_ms)
        ms = s->min_ms;
    if (ms > s->max_ms)
        ms = s->max_ms;
    return now + apr_time_from_msec(ms);
}

int bff_jwks_kid_refresh(const bff_jwks_sched_t *s, apr_time_t *last,
                         apr_time_t now)
{
    if (*last && now >= *last && now - *last < apr_time_from_msec(s->kid_ms))
        return 0;
    *last = now;
    return 1;
}
