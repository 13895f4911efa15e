/*
 * mod_bff: where an access token is taken from (BFFTokenSource), pure
 * core without httpd.h.
 *
 * Sources, one word each, tried in the configured order:
 *
 *     bearer        Authorization: Bearer TOKEN (the default, alone)
 *     header:NAME   the whole value of request header NAME
 *     cookie:NAME   the value of cookie NAME (quotes removed)
 *     query:NAME    the value of query parameter NAME (URL-decoded)
 *
 * Browsers cannot set Authorization on a WebSocket upgrade or an
 * EventSource, hence cookies and query parameters; both are opt-ins per
 * location. A token taken from a cookie or a query parameter is also
 * removed from what goes further (the Cookie header, the query string),
 * so backends never receive it and logs written after the access phase
 * never show it: the bff_token_cookie and bff_token_query functions give
 * the value and what remains without it.
 */
#ifndef BFF_TOKEN_H
#define BFF_TOKEN_H

#include <apr_pools.h>

typedef enum {
    BFF_TOKEN_BEARER = 1,
    BFF_TOKEN_HEADER,
    BFF_TOKEN_COOKIE,
    BFF_TOKEN_QUERY
} bff_token_kind_e;

typedef struct {
    bff_token_kind_e kind;
    const char *name;           /* header, cookie or parameter; NULL: bearer */
} bff_token_src_t;

/* Parses one source word ("bearer", "cookie:session", ...). NULL or what
 * was expected. */
const char *bff_token_source_parse(bff_token_src_t *src, const char *word,
                                   apr_pool_t *p);

/* The token of an Authorization header value "Bearer TOKEN" (scheme
 * case-insensitive, spaces after it skipped), or NULL. */
const char *bff_token_bearer(const char *authorization);

/* The value of the first cookie called name in a Cookie header value
 * (NULL when absent or empty; a quoted value without its quotes). *rest:
 * the header without any cookie of that name, NULL when nothing remains.
 * cookies may be NULL. */
const char *bff_token_cookie(const char **rest, const char *cookies,
                             const char *name, apr_pool_t *p);

/* The URL-decoded value of the first query parameter called name (its
 * name decoded before it is compared; NULL when absent, empty or
 * decoding to a NUL or a control character). *rest: the query string
 * without any parameter of that name, the others as they were, NULL when
 * nothing remains. args may be NULL. */
const char *bff_token_query(const char **rest, const char *args,
                            const char *name, apr_pool_t *p);

#endif /* BFF_TOKEN_H */
