/*
 * mod_bff: the one parser of NAME=VALUE directive options (bff_opts.h).
 */
#include <errno.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_opts.h"

const char *bff_opt_names(const bff_opt_t *t, apr_pool_t *p)
{
    const char *out = "";
    const bff_opt_t *o;

    for (o = t; o->name; o++) {
        const char *sep = o == t ? "" : o[1].name ? ", " : " or ";
        out = apr_pstrcat(p, out, sep, o->name,
                          o->kind == BFF_OPT_FLAG ? "" : "=", NULL);
    }
    return out;
}

/* "250ms", "2s", "1m": a bound of a duration, as an admin writes it */
static const char *ms_text(apr_int64_t ms, apr_pool_t *p)
{
    if (ms >= 3600000 && ms % 3600000 == 0) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT "h", ms / 3600000);
    }
    if (ms >= 60000 && ms % 60000 == 0) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT "m", ms / 60000);
    }
    if (ms >= 1000 && ms % 1000 == 0) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT "s", ms / 1000);
    }
    return apr_psprintf(p, "%" APR_INT64_T_FMT "ms", ms);
}

/* what a value out of lo..hi was expected to be */
static const char *range_text(const bff_opt_t *o, apr_pool_t *p)
{
    const char *what = o->kind == BFF_OPT_MS ? "a duration"
                       : o->kind == BFF_OPT_SIZE ? "a size" : "a number";
    const char *lo, *hi;

    if (o->kind == BFF_OPT_MS) {
        lo = ms_text(o->lo, p);
        hi = ms_text(o->hi, p);
    }
    else {
        lo = apr_psprintf(p, "%" APR_INT64_T_FMT, o->lo);
        hi = apr_psprintf(p, "%" APR_INT64_T_FMT, o->hi);
    }
    if (o->hi == BFF_OPT_MAX) {
        if (o->lo == 1 && o->kind != BFF_OPT_INT && o->kind != BFF_OPT_LONG
            && o->kind != BFF_OPT_INT64) {
            return "must be greater than 0";
        }
        return apr_psprintf(p, "expected %s of at least %s", what, lo);
    }
    return apr_psprintf(p, "expected %s from %s to %s", what, lo, hi);
}

static const char *parse_number(const bff_opt_t *o, apr_int64_t *out,
                                const char *v, apr_pool_t *p)
{
    const char *err = NULL;
    apr_int64_t n = 0;

    if (o->kind == BFF_OPT_MS) {
        long ms;
        if ((err = bff_parse_duration_ms(&ms, v, p))) {
            return err;
        }
        n = ms;
    }
    else if (o->kind == BFF_OPT_SIZE) {
        apr_size_t sz;
        if ((err = bff_parse_size(&sz, v, p))) {
            return err;
        }
        if (sz > (apr_size_t)APR_INT64_MAX) {
            return range_text(o, p);
        }
        n = (apr_int64_t)sz;
    }
    else {
        char *end;
        errno = 0;
        n = apr_strtoi64(v, &end, 10);
        if (!apr_isdigit(*v) && *v != '-') {
            return range_text(o, p);
        }
        if (*end || errno) {
            return range_text(o, p);
        }
    }
    if (n < o->lo || n > o->hi) {
        return range_text(o, p);
    }
    *out = n;
    return NULL;
}

const char *bff_opt_parse(const bff_opt_t *t, void *target, const char *word,
                          apr_pool_t *p)
{
    const char *eq = strchr(word, '='), *v, *err;
    apr_size_t nlen = eq ? (apr_size_t)(eq - word) : strlen(word);
    const bff_opt_t *o;
    char *field;
    apr_int64_t n = 0;

    for (o = t; o->name; o++) {
        if (strlen(o->name) == nlen && !strncmp(o->name, word, nlen)) {
            break;
        }
    }
    if (!o->name) {
        return apr_psprintf(p, "unknown option '%s' (expected %s)",
                            eq ? apr_pstrmemdup(p, word, nlen + 1) : word,
                            bff_opt_names(t, p));
    }
    field = (char *)target + o->offset;
    if (o->kind == BFF_OPT_FLAG) {
        if (eq) {
            return apr_psprintf(p, "%s takes no value", o->name);
        }
        *(int *)field = (int)o->lo;
        return NULL;
    }
    if (!eq) {
        return apr_psprintf(p, "%s: expected %s=VALUE", o->name, o->name);
    }
    v = eq + 1;
    if (!*v) {
        return apr_psprintf(p, "%s=: missing value", o->name);
    }
    switch (o->kind) {
    case BFF_OPT_ONOFF:
        if (!strcasecmp(v, "on") || !strcasecmp(v, "off")) {
            *(int *)field = !strcasecmp(v, "on");
            return NULL;
        }
        return apr_psprintf(p, "%s=%s: expected on or off", o->name, v);
    case BFF_OPT_STR:
        *(const char **)field = apr_pstrdup(p, v);
        return NULL;
    case BFF_OPT_FN:
        err = o->fn(target, v, p);
        return err ? apr_psprintf(p, "%s=: %s", o->name, err) : NULL;
    default:
        break;
    }
    if ((err = parse_number(o, &n, v, p))) {
        return apr_psprintf(p, "%s=%s: %s", o->name, v, err);
    }
    switch (o->kind) {
    case BFF_OPT_INT:
        *(int *)field = (int)n;
        break;
    case BFF_OPT_LONG:
    case BFF_OPT_MS:
        *(long *)field = (long)n;
        break;
    case BFF_OPT_INT64:
        *(apr_int64_t *)field = n;
        break;
    case BFF_OPT_SIZE:
        *(apr_size_t *)field = (apr_size_t)n;
        break;
    default:
        break;
    }
    return NULL;
}
