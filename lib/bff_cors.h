/*
 * mod_bff CORS: which browser origins may read a location's answers, and
 * the checks of a preflight (pure logic; the glue compiles the patterns
 * with ap_regex and answers the requests).
 */
#ifndef BFF_CORS_H
#define BFF_CORS_H

#include <apr_pools.h>
#include <apr_tables.h>

/* One allowed origin of the configuration. */
typedef struct {
    int any;                 /* "*": every origin (never with credentials) */
    const char *origin;      /* exact, normalised: scheme://host[:port] */
    const void *pattern;     /* else a pattern, compiled by the caller */
} bff_cors_origin_t;

/* 1 when pattern matches the whole origin (the caller's regex engine). */
typedef int bff_cors_match_fn(const void *pattern, const char *origin);

/* Parses a configured origin: "*", an origin "scheme://host[:port]"
 * (case-insensitive; the scheme's default port may be given or not) or
 * "~REGEX" (*regex is then set to REGEX, for the caller to compile and
 * store in out->pattern; it must match the whole origin). "null", paths,
 * user info and wildcards outside a pattern are refused. NULL, or an
 * error. */
const char *bff_cors_origin_parse(bff_cors_origin_t *out, const char **regex,
                                  const char *arg, apr_pool_t *p);

/* The Origin request header in the normalised form, or NULL when it is
 * not a valid serialised origin (then it matches nothing; "null" too). */
const char *bff_cors_origin_normalize(const char *origin, apr_pool_t *p);

/* 1 when the normalised origin is allowed by one of list
 * (bff_cors_origin_t); match answers the patterns. */
int bff_cors_origin_allowed(const apr_array_header_t *list,
                            const char *origin, bff_cors_match_fn *match);

/* 1 when s is an HTTP token (a method or a header name). */
int bff_cors_token(const char *s);

/* 1 when method is one of allowed (const char *; methods are
 * case-sensitive). */
int bff_cors_method_allowed(const char *method,
                            const apr_array_header_t *allowed);

/* Access-Control-Request-Headers of a preflight against allowed (const
 * char *, case-insensitive): NULL when every name is allowed, else the
 * first name that is not (or the malformed element). */
const char *bff_cors_headers_check(const char *requested,
                                   const apr_array_header_t *allowed,
                                   apr_pool_t *p);

/* "a,b,c" of an array of const char * (NULL when empty). */
const char *bff_cors_join(const apr_array_header_t *names, apr_pool_t *p);

#endif /* BFF_CORS_H */
