/*
 * mod_bff CORS: origin parsing, normalisation and matching, and the checks
 * of a preflight's method and headers (pure logic).
 */
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "bff_cors.h"
#include "bff_http.h"

static char *lower_dup(const char *s, apr_size_t n, apr_pool_t *p)
{
    char *d = apr_pstrmemdup(p, s, n), *x;

    for (x = d; *x; x++) {
        *x = (char)apr_tolower(*x);
    }
    return d;
}

/* Parses scheme://host[:port] (nothing after it). Returns the normalised
 * form (lower case, the scheme's default port dropped) or NULL. */
static const char *normalize(const char *s, apr_pool_t *p)
{
    const char *c = s, *host, *hend, *port = NULL;
    apr_size_t slen, hlen, plen = 0;
    char *scheme, *h;
    long pv = 0;

    if (!apr_isalpha(*c)) {
        return NULL;
    }
    while (apr_isalnum(*c) || *c == '+' || *c == '.' || *c == '-') {
        c++;
    }
    if (strncmp(c, "://", 3)) {
        return NULL;
    }
    slen = (apr_size_t)(c - s);
    host = c + 3;
    if (*host == '[') {                      /* IPv6 literal */
        hend = host + 1;
        while (apr_isxdigit(*hend) || *hend == ':' || *hend == '.') {
            hend++;
        }
        if (*hend != ']' || hend == host + 1) {
            return NULL;
        }
        hend++;
    }
    else {
        hend = host;
        while (apr_isalnum(*hend) || *hend == '.' || *hend == '-'
               || *hend == '_') {
            hend++;
        }
        if (hend == host) {
            return NULL;
        }
    }
    hlen = (apr_size_t)(hend - host);
    c = hend;
    if (*c == ':') {
        port = ++c;
        while (apr_isdigit(*c) && plen < 6) {
            pv = pv * 10 + (*c - '0');
            c++;
            plen++;
        }
        if (!plen || plen > 5 || pv > 65535) {
            return NULL;
        }
    }
    if (*c) {
        return NULL;                         /* a path, a query, a space ... */
    }
    scheme = lower_dup(s, slen, p);
    h = lower_dup(host, hlen, p);
    if (port && !((!strcmp(scheme, "http") && pv == 80)
                  || (!strcmp(scheme, "https") && pv == 443))) {
        return apr_psprintf(p, "%s://%s:%ld", scheme, h, pv);
    }
    return apr_pstrcat(p, scheme, "://", h, NULL);
}

const char *bff_cors_origin_normalize(const char *origin, apr_pool_t *p)
{
    return origin ? normalize(origin, p) : NULL;
}

const char *bff_cors_origin_parse(bff_cors_origin_t *out, const char **regex,
                                  const char *arg, apr_pool_t *p)
{
    memset(out, 0, sizeof(*out));
    *regex = NULL;
    if (!strcmp(arg, "*")) {
        out->any = 1;
        return NULL;
    }
    if (*arg == '~') {
        if (!arg[1]) {
            return "'~' must be followed by a regular expression";
        }
        *regex = arg + 1;
        return NULL;
    }
    if (!strcasecmp(arg, "null")) {
        return "'null' is refused: sandboxed documents, file:// pages and "
               "redirects all send Origin: null, so any page can claim it";
    }
    if (strchr(arg, '*')) {
        return apr_psprintf(p, "'%s': a wildcard is only allowed alone ('*') "
                            "or in a pattern, e.g. ~https://[a-z0-9-]+"
                            "\\.example\\.com", arg);
    }
    out->origin = normalize(arg, p);
    if (!out->origin) {
        return apr_psprintf(p, "'%s' is not an origin: scheme://host[:port], "
                            "without a path or a trailing slash", arg);
    }
    return NULL;
}

int bff_cors_origin_allowed(const apr_array_header_t *list,
                            const char *origin, bff_cors_match_fn *match)
{
    int i;

    if (!origin || !list) {
        return 0;
    }
    for (i = 0; i < list->nelts; i++) {
        const bff_cors_origin_t *o = &APR_ARRAY_IDX(list, i, bff_cors_origin_t);
        if (o->any || (o->origin && !strcmp(o->origin, origin))
            || (o->pattern && match && match(o->pattern, origin))) {
            return 1;
        }
    }
    return 0;
}

int bff_cors_token(const char *s)
{
    return bff_http_token(s);
}

int bff_cors_method_allowed(const char *method,
                            const apr_array_header_t *allowed)
{
    int i;

    for (i = 0; method && allowed && i < allowed->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(allowed, i, const char *), method)) {
            return 1;
        }
    }
    return 0;
}

static int name_listed(const char *name, const apr_array_header_t *allowed)
{
    int i;

    for (i = 0; allowed && i < allowed->nelts; i++) {
        if (!strcasecmp(APR_ARRAY_IDX(allowed, i, const char *), name)) {
            return 1;
        }
    }
    return 0;
}

const char *bff_cors_headers_check(const char *requested,
                                   const apr_array_header_t *allowed,
                                   apr_pool_t *p)
{
    const char *c = requested;

    while (c && *c) {
        const char *start, *end;
        char *name;

        while (*c == ' ' || *c == '\t' || *c == ',') {
            c++;
        }
        if (!*c) {
            break;
        }
        start = c;
        while (*c && *c != ',') {
            c++;
        }
        end = c;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        name = apr_pstrmemdup(p, start, (apr_size_t)(end - start));
        if (!bff_cors_token(name) || !name_listed(name, allowed)) {
            return name;
        }
    }
    return NULL;
}

const char *bff_cors_join(const apr_array_header_t *names, apr_pool_t *p)
{
    return names && names->nelts ? apr_array_pstrcat(p, names, ',') : NULL;
}
