/*
 * Access token sources: the source words of BFFTokenSource, and the
 * token taken out of an Authorization, Cookie or query string value (see
 * bff_token.h).
 */
#include <string.h>
#include <strings.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include "bff_token.h"
#include "bff_http.h"

/* a query parameter name as written in a URL, unencoded */
static int param_ok(const char *s)
{
    if (!*s) {
        return 0;
    }
    for (; *s; s++) {
        if (!apr_isalnum(*s) && !strchr("-._~", *s)) {
            return 0;
        }
    }
    return 1;
}

const char *bff_token_source_parse(bff_token_src_t *src, const char *word,
                                   apr_pool_t *p)
{
    const char *colon = strchr(word, ':');
    apr_size_t n = colon ? (apr_size_t)(colon - word) : 0;

    memset(src, 0, sizeof(*src));
    if (!strcasecmp(word, "bearer")) {
        src->kind = BFF_TOKEN_BEARER;
        return NULL;
    }
    if (colon) {
        const char *name = colon + 1;
        if (n == 6 && !strncasecmp(word, "header", 6) && bff_http_token(name)) {
            src->kind = BFF_TOKEN_HEADER;
        }
        else if (n == 6 && !strncasecmp(word, "cookie", 6) && bff_http_token(name)) {
            src->kind = BFF_TOKEN_COOKIE;
        }
        else if (n == 5 && !strncasecmp(word, "query", 5) && param_ok(name)) {
            src->kind = BFF_TOKEN_QUERY;
        }
        if (src->kind) {
            src->name = apr_pstrdup(p, name);
            return NULL;
        }
    }
    return "expected bearer, header:NAME, cookie:NAME or query:NAME "
           "(a header or cookie name, a query parameter name of letters, "
           "digits and -._~)";
}

const char *bff_token_bearer(const char *v)
{
    if (!v || strncasecmp(v, "Bearer ", 7)) {
        return NULL;
    }
    for (v += 7; *v == ' '; v++) {
    }
    return *v ? v : NULL;
}

static const char *trim(const char *b, const char *e, apr_pool_t *p)
{
    while (b < e && (*b == ' ' || *b == '\t')) {
        b++;
    }
    while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
        e--;
    }
    return apr_pstrmemdup(p, b, (apr_size_t)(e - b));
}

/* the strings of a joined by sep; NULL for none */
static const char *join(const apr_array_header_t *a, const char *sep,
                        apr_pool_t *p)
{
    const char *out = NULL;
    int i;

    for (i = 0; i < a->nelts; i++) {
        const char *s = APR_ARRAY_IDX(a, i, const char *);
        out = out ? apr_pstrcat(p, out, sep, s, NULL) : s;
    }
    return out;
}

const char *bff_token_cookie(const char **rest, const char *cookies,
                             const char *name, apr_pool_t *p)
{
    apr_array_header_t *kept = apr_array_make(p, 4, sizeof(const char *));
    const char *value = NULL, *s = cookies;
    apr_size_t n = strlen(name);
    int found = 0;

    while (s && *s) {
        const char *end = strchr(s, ';');
        const char *c = trim(s, end ? end : s + strlen(s), p);
        if (!strncmp(c, name, n) && c[n] == '=') {
            if (!found) {
                const char *v = c + n + 1;
                apr_size_t len = strlen(v);
                if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
                    v = apr_pstrmemdup(p, v + 1, len - 2);
                }
                value = *v ? v : NULL;
                found = 1;
            }
        }
        else if (*c) {
            APR_ARRAY_PUSH(kept, const char *) = c;
        }
        s = end ? end + 1 : NULL;
    }
    *rest = join(kept, "; ", p);
    return value;
}

const char *bff_token_query(const char **rest, const char *args,
                            const char *name, apr_pool_t *p)
{
    const char *v = bff_query_take(rest, args, name, p), *c;

    for (c = v; c && *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            return NULL;
        }
    }
    return v && *v ? v : NULL;
}
