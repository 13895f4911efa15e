/*
 * Route patterns: /api/profile/{user_id:int}
 *
 * Compiled once at config time into an array of segments; matching walks
 * the request path once to check the shape without allocating, and only
 * then copies parameter values and checks their types. Most requests are
 * tested against many routes, so the no-match path must stay cheap.
 */
#include <string.h>
#include <sys/types.h>
#include <regex.h>

#include <apr_strings.h>
#include <apr_lib.h>

#include "bff_core.h"

typedef struct {
    const char *lit;        /* literal text, NULL for a parameter */
    apr_size_t len;         /* length of lit */
    int param;              /* index into params, or -1 */
} route_seg_t;

typedef struct {
    const char *name;
    bff_param_type_e type;
    regex_t re;             /* BFF_PARAM_REGEX only */
} route_param_t;

struct bff_route_t {
    const char *pattern;
    int nsegs;
    route_seg_t *segs;
    int nparams;
    route_param_t *params;
};

static apr_status_t regex_cleanup(void *data)
{
    regfree((regex_t *)data);
    return APR_SUCCESS;
}

static int is_name_start(int c)
{
    return apr_isalpha(c) || c == '_';
}

static int is_name_char(int c)
{
    return apr_isalnum(c) || c == '_';
}

/* Finds the '}' closing the placeholder that starts at s ('{'). Braces in
 * a regex ({code:~[A-Z]{3}}) nest; a backslash escapes the next byte and
 * bracket expressions ([{], [[:alpha:]]) hide braces, as in POSIX ERE.
 * Returns NULL when unterminated. */
static const char *find_close(const char *s)
{
    int depth = 0;
    const char *c = s;

    while (*c) {
        if (*c == '\\') {
            if (!c[1]) {
                return NULL;
            }
            c += 2;
            continue;
        }
        if (*c == '[') {
            /* bracket expression: a leading ']' (after an optional '^') is
             * literal, and [: :], [. .], [= =] may contain ']' */
            ++c;
            if (*c == '^') {
                ++c;
            }
            if (*c == ']') {
                ++c;
            }
            while (*c && *c != ']') {
                if (*c == '[' && (c[1] == ':' || c[1] == '.' || c[1] == '=')) {
                    char kind = c[1];
                    c += 2;
                    while (*c && !(*c == kind && c[1] == ']')) {
                        ++c;
                    }
                    if (!*c) {
                        return NULL;
                    }
                    c += 2;
                    continue;
                }
                ++c;
            }
            if (!*c) {
                return NULL;
            }
            ++c;
            continue;
        }
        if (*c == '{') {
            ++depth;
        }
        else if (*c == '}') {
            if (--depth == 0) {
                return c;
            }
        }
        ++c;
    }
    return NULL;
}

/* Parses the text between the braces of one placeholder into prm. */
static const char *parse_param(route_param_t *prm, const char *pattern,
                               const char *body, apr_size_t blen,
                               apr_pool_t *p)
{
    const char *colon = memchr(body, ':', blen);
    apr_size_t nlen = colon ? (apr_size_t)(colon - body) : blen;
    const char *type;
    apr_size_t i;

    if (nlen == 0) {
        return apr_psprintf(p, "route '%s': parameter '{%.*s}' has no name",
                            pattern, (int)blen, body);
    }
    if (!is_name_start((unsigned char)body[0])) {
        return apr_psprintf(p, "route '%s': parameter name '%.*s' must start "
                            "with a letter or '_'", pattern, (int)nlen, body);
    }
    for (i = 1; i < nlen; ++i) {
        if (!is_name_char((unsigned char)body[i])) {
            return apr_psprintf(p, "route '%s': parameter name '%.*s' may "
                                "only contain letters, digits and '_'",
                                pattern, (int)nlen, body);
        }
    }
    prm->name = apr_pstrmemdup(p, body, nlen);

    if (!colon) {
        prm->type = BFF_PARAM_SEGMENT;
        return NULL;
    }
    type = apr_pstrmemdup(p, colon + 1, blen - nlen - 1);
    if (!strcmp(type, "int")) {
        prm->type = BFF_PARAM_INT;
    }
    else if (!strcmp(type, "uuid")) {
        prm->type = BFF_PARAM_UUID;
    }
    else if (type[0] == '~') {
        const char *re = apr_pstrcat(p, "^(", type + 1, ")$", NULL);
        int rc;

        if (!type[1]) {
            return apr_psprintf(p, "route '%s': parameter '%s': empty regex",
                                pattern, prm->name);
        }
        prm->type = BFF_PARAM_REGEX;
        rc = regcomp(&prm->re, re, REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char buf[256];
            regerror(rc, &prm->re, buf, sizeof(buf));
            return apr_psprintf(p, "route '%s': parameter '%s': invalid "
                                "regex '%s': %s", pattern, prm->name,
                                type + 1, buf);
        }
        apr_pool_cleanup_register(p, &prm->re, regex_cleanup,
                                  apr_pool_cleanup_null);
    }
    else {
        return apr_psprintf(p, "route '%s': parameter '%s': unknown type "
                            "'%s' (expected int, uuid or ~regex)",
                            pattern, prm->name, type);
    }
    return NULL;
}

const char *bff_route_compile(bff_route_t **out, const char *pattern,
                              apr_pool_t *p)
{
    bff_route_t *rt;
    const char *s, *err;
    int nslash = 0, maxparams = 0;

    *out = NULL;
    if (!pattern || pattern[0] != '/') {
        return apr_psprintf(p, "route '%s': must start with '/'",
                            pattern ? pattern : "");
    }
    /* Upper bounds for the arrays: every segment starts after a '/' (a
     * '/' inside a regex overcounts, which is harmless). */
    for (s = pattern; *s; ++s) {
        if (*s == '/') {
            ++nslash;
        }
        else if (*s == '{') {
            ++maxparams;
        }
    }

    rt = apr_pcalloc(p, sizeof(*rt));
    rt->pattern = apr_pstrdup(p, pattern);
    rt->segs = apr_pcalloc(p, nslash * sizeof(route_seg_t));
    rt->params = apr_pcalloc(p, (maxparams ? maxparams : 1)
                                * sizeof(route_param_t));

    s = pattern + 1;
    for (;;) {
        route_seg_t *seg = &rt->segs[rt->nsegs++];

        if (*s == '{') {
            const char *close = find_close(s);
            route_param_t *prm;
            int i;

            if (!close) {
                return apr_psprintf(p, "route '%s': unterminated '{' at "
                                    "offset %d", pattern, (int)(s - pattern));
            }
            if (close[1] && close[1] != '/') {
                return apr_psprintf(p, "route '%s': parameter '%.*s' must be "
                                    "a whole path segment", pattern,
                                    (int)(close - s + 1), s);
            }
            prm = &rt->params[rt->nparams];
            err = parse_param(prm, pattern, s + 1,
                              (apr_size_t)(close - s - 1), p);
            if (err) {
                return err;
            }
            for (i = 0; i < rt->nparams; ++i) {
                if (!strcmp(rt->params[i].name, prm->name)) {
                    return apr_psprintf(p, "route '%s': parameter '%s' "
                                        "appears twice", pattern, prm->name);
                }
            }
            seg->param = rt->nparams++;
            s = close + 1;
        }
        else {
            const char *e = s;

            while (*e && *e != '/') {
                if (*e == '{') {
                    const char *close = find_close(e);
                    return apr_psprintf(p, "route '%s': parameter '%.*s' "
                                        "must be a whole path segment",
                                        pattern, close ? (int)(close - e + 1)
                                                       : (int)strlen(e), e);
                }
                if (*e == '}') {
                    return apr_psprintf(p, "route '%s': unmatched '}' at "
                                        "offset %d", pattern,
                                        (int)(e - pattern));
                }
                ++e;
            }
            /* r->uri never holds "//" once httpd merges slashes, so an
             * inner empty segment is a typo that would never match. A
             * trailing '/' is a real, distinct route. */
            if (e == s && *e == '/') {
                return apr_psprintf(p, "route '%s': empty path segment "
                                    "(double slash) at offset %d", pattern,
                                    (int)(s - pattern));
            }
            seg->lit = apr_pstrmemdup(p, s, (apr_size_t)(e - s));
            seg->len = (apr_size_t)(e - s);
            seg->param = -1;
            s = e;
        }
        if (!*s) {
            break;
        }
        ++s; /* the '/' */
    }
    *out = rt;
    return NULL;
}

const char *bff_route_pattern(const bff_route_t *rt)
{
    return rt->pattern;
}

int bff_route_nparams(const bff_route_t *rt)
{
    return rt->nparams;
}

const char *bff_route_param_name(const bff_route_t *rt, int i)
{
    return (i >= 0 && i < rt->nparams) ? rt->params[i].name : NULL;
}

bff_param_type_e bff_route_param_type(const bff_route_t *rt, int i)
{
    return (i >= 0 && i < rt->nparams) ? rt->params[i].type
                                       : BFF_PARAM_SEGMENT;
}

static int is_int(const char *v, apr_size_t len)
{
    apr_size_t i;

    /* 18 digits always fit a json_int_t, so the engine can hand the value
     * on as a JSON integer without overflow checks. */
    if (len < 1 || len > 18) {
        return 0;
    }
    for (i = 0; i < len; ++i) {
        if (v[i] < '0' || v[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static int is_uuid(const char *v, apr_size_t len)
{
    apr_size_t i;

    if (len != 36) {
        return 0;
    }
    for (i = 0; i < 36; ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (v[i] != '-') {
                return 0;
            }
        }
        else if (!apr_isxdigit((unsigned char)v[i])) {
            return 0;
        }
    }
    return 1;
}

bff_route_result_e bff_route_match(const char ***values, int *bad_param,
                                   const bff_route_t *rt, const char *path,
                                   apr_pool_t *p)
{
    const char *s, *e, **vals;
    int i;

    if (!path || path[0] != '/') {
        return BFF_ROUTE_NOMATCH;
    }

    /* Pass 1: shape only (segment count, literals, non-empty params). */
    s = path + 1;
    for (i = 0; i < rt->nsegs; ++i) {
        const route_seg_t *seg = &rt->segs[i];

        e = strchr(s, '/');
        if (!e) {
            if (i != rt->nsegs - 1) {
                return BFF_ROUTE_NOMATCH;   /* path too short */
            }
            e = s + strlen(s);
        }
        else if (i == rt->nsegs - 1) {
            return BFF_ROUTE_NOMATCH;       /* path too long */
        }
        if (seg->lit) {
            if ((apr_size_t)(e - s) != seg->len
                || memcmp(s, seg->lit, seg->len)) {
                return BFF_ROUTE_NOMATCH;
            }
        }
        /* an empty segment where a parameter stands ("/users//orders",
         * "/users/") has the route's shape: pass 2 refuses the value */
        s = e + 1;
    }

    /* Pass 2: copy values and check their types. */
    vals = apr_palloc(p, (rt->nparams + 1) * sizeof(*vals));
    s = path + 1;
    for (i = 0; i < rt->nsegs; ++i) {
        const route_seg_t *seg = &rt->segs[i];

        e = strchr(s, '/');
        if (!e) {
            e = s + strlen(s);
        }
        if (!seg->lit) {
            const route_param_t *prm = &rt->params[seg->param];
            apr_size_t len = (apr_size_t)(e - s);
            int ok;

            switch (prm->type) {
            case BFF_PARAM_INT:
                ok = is_int(s, len);
                break;
            case BFF_PARAM_UUID:
                ok = is_uuid(s, len);
                break;
            default:
                ok = 1;
                break;
            }
            ok = ok && len > 0;   /* never empty, whatever the type */
            vals[seg->param] = apr_pstrmemdup(p, s, len);
            if (ok && prm->type == BFF_PARAM_REGEX) {
                ok = !regexec(&prm->re, vals[seg->param], 0, NULL, 0);
            }
            if (!ok) {
                if (bad_param) {
                    *bad_param = seg->param;
                }
                return BFF_ROUTE_BADPARAM;
            }
        }
        s = e + 1;
    }
    vals[rt->nparams] = NULL;
    if (values) {
        *values = vals;
    }
    return BFF_ROUTE_MATCH;
}
