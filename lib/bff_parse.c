/*
 * Config value parsers: durations and sizes.
 *
 * Exact integer arithmetic (no strtod) so "0.1s" is 100ms on every
 * platform, and every overflow is caught instead of wrapping.
 */
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include <apr_strings.h>
#include <apr_lib.h>

#include "bff_core.h"

/* a *= m, then a += add, failing instead of overflowing; max is the limit */
static int mul_add(apr_uint64_t *a, apr_uint64_t m, apr_uint64_t add,
                   apr_uint64_t max)
{
    if (m && *a > max / m) {
        return 0;
    }
    *a *= m;
    if (*a > max - add) {
        return 0;
    }
    *a += add;
    return 1;
}

const char *bff_parse_duration_ms(long *out_ms, const char *text,
                                  apr_pool_t *p)
{
    static const char *hint = "(expected e.g. 250ms, 2s, 1.5s, 1m, 1h or "
                              "a number of seconds)";
    const apr_uint64_t max = LONG_MAX;
    apr_uint64_t ip = 0, frac = 0, fscale = 1, unit, ms;
    const char *s = text;
    int ndig = 0, nfrac = 0;

    if (!text || !*text) {
        return apr_psprintf(p, "empty duration %s", hint);
    }
    if (*s == '-') {
        return apr_psprintf(p, "duration '%s' must not be negative", text);
    }
    for (; apr_isdigit(*s); ++s, ++ndig) {
        if (!mul_add(&ip, 10, (apr_uint64_t)(*s - '0'), max)) {
            return apr_psprintf(p, "duration '%s' is too large", text);
        }
    }
    if (*s == '.') {
        ++s;
        for (; apr_isdigit(*s); ++s, ++nfrac) {
            /* beyond 9 decimals nothing is left at 1ms resolution */
            if (nfrac < 9) {
                frac = frac * 10 + (apr_uint64_t)(*s - '0');
                fscale *= 10;
            }
        }
        if (nfrac == 0) {
            return apr_psprintf(p, "invalid duration '%s': no digits after "
                                "'.' %s", text, hint);
        }
    }
    if (ndig == 0) {
        return apr_psprintf(p, "invalid duration '%s' %s", text, hint);
    }
    if (!*s || !strcmp(s, "s")) {
        unit = 1000;
    }
    else if (!strcmp(s, "ms")) {
        unit = 1;
    }
    else if (!strcmp(s, "m")) {
        unit = 60 * 1000;
    }
    else if (!strcmp(s, "h")) {
        unit = 60 * 60 * 1000;
    }
    else {
        return apr_psprintf(p, "invalid duration '%s': unknown unit '%s' %s",
                            text, s, hint);
    }
    /* sub-millisecond parts ("1.5ms", "0.0001s") are truncated */
    ms = ip;
    if (!mul_add(&ms, unit, frac * unit / fscale, max)) {
        return apr_psprintf(p, "duration '%s' is too large", text);
    }
    *out_ms = (long)ms;
    return NULL;
}

const char *bff_parse_size(apr_size_t *out, const char *text, apr_pool_t *p)
{
    static const char *hint = "(expected a number of bytes with an optional "
                              "k, M or G suffix, e.g. 512k)";
    const apr_uint64_t max = (apr_uint64_t)APR_SIZE_MAX;
    apr_uint64_t v = 0, unit;
    const char *s = text;

    if (!text || !*text) {
        return apr_psprintf(p, "empty size %s", hint);
    }
    for (; apr_isdigit(*s); ++s) {
        if (!mul_add(&v, 10, (apr_uint64_t)(*s - '0'), max)) {
            return apr_psprintf(p, "size '%s' is too large", text);
        }
    }
    if (s == text) {
        return apr_psprintf(p, "invalid size '%s' %s", text, hint);
    }
    switch (*s) {
    case '\0':
        unit = 1;
        break;
    case 'k': case 'K':
        unit = APR_UINT64_C(1) << 10;
        break;
    case 'm': case 'M':
        unit = APR_UINT64_C(1) << 20;
        break;
    case 'g': case 'G':
        unit = APR_UINT64_C(1) << 30;
        break;
    default:
        unit = 0;
        break;
    }
    if (!unit || (*s && s[1])) {
        return apr_psprintf(p, "invalid size '%s': unknown unit '%s' %s",
                            text, s, hint);
    }
    if (!mul_add(&v, unit, 0, max)) {
        return apr_psprintf(p, "size '%s' is too large", text);
    }
    *out = (apr_size_t)v;
    return NULL;
}

const char *bff_parse_int(int *out, const char *text, int lo, int hi,
                          apr_pool_t *p)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < lo || v > hi) {
        return apr_psprintf(p, "expected a number from %d to %d", lo, hi);
    }
    *out = (int)v;
    return NULL;
}
