/*
 * mod_bff: when to fetch a JWKS by URL again (pure core, no httpd.h).
 *
 * The provider's Cache-Control max-age sets the next refresh, clamped
 * to the admin's bounds; without one the configured interval applies.
 * A failed fetch is retried after min_ms. A token with an unknown kid
 * asks for an early refresh, granted at most once per kid_ms so forged
 * kids cannot make the gateway hammer the provider. Times are passed in.
 */
#ifndef BFF_JWKS_H
#define BFF_JWKS_H

#include <apr_pools.h>
#include <apr_time.h>

typedef struct {
    apr_int64_t refresh_ms;  /* interval without a usable max-age */
    apr_int64_t min_ms;      /* lower bound, and the retry after a failure */
    apr_int64_t max_ms;      /* upper bound */
    apr_int64_t kid_ms;      /* at most one early refresh per kid_ms */
} bff_jwks_sched_t;

/* max-age of a Cache-Control value in seconds, or -1 when there is none
 * or the response must not be reused (no-store, no-cache). */
apr_int64_t bff_jwks_max_age(const char *cache_control);

/* When to fetch next after a fetch that ended at now: ok says whether it
 * succeeded, cache_control is the response's header (may be NULL). */
apr_time_t bff_jwks_next_due(const bff_jwks_sched_t *s, int ok,
                             const char *cache_control, apr_time_t now);

/* Whether an unknown kid may trigger a refresh at now, given the last
 * early refresh granted at *last (0: never); on yes *last becomes now. */
int bff_jwks_kid_refresh(const bff_jwks_sched_t *s, apr_time_t *last,
                         apr_time_t now);

/* Checks a JWKS or discovery URL: https:// only (keys over plain http
 * could be replaced by anyone on the path), a host, no user info, no
 * fragment, no space or control character. NULL or what is wrong. */
const char *bff_jwks_url_check(const char *url);

/* 1 when url names an OpenID provider configuration (its path ends in
 * /.well-known/openid-configuration): the keys are at its jwks_uri. */
int bff_jwks_is_discovery(const char *url);

/* The jwks_uri of an OpenID provider configuration document (doc, len
 * bytes of JSON): a string passing bff_jwks_url_check. NULL, or what is
 * wrong with the document. */
const char *bff_jwks_discovery(const char **jwks_uri, const char *doc,
                               apr_size_t len, apr_pool_t *p);

#endif /* BFF_JWKS_H */
