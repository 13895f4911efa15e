/*
 * mod_bff: when to fetch a JWKS by URL again (see bff_jwks.h).
 */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <jansson.h>

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

const char *bff_jwks_url_check(const char *url)
{
    const char *host, *s;

    if (strncasecmp(url, "https://", 8)) {
        return "not an https:// URL (keys are fetched over TLS only)";
    }
    host = url + 8;
    for (s = url; *s; s++) {
        if ((unsigned char)*s <= 0x20 || *s == 0x7f) {
            return "a space or control character in the URL";
        }
    }
    if (strchr(url, '#')) {
        return "a fragment (#) in the URL";
    }
    s = host + strcspn(host, "/?");
    if (s == host || *host == ':') {
        return "no host in the URL";
    }
    if (memchr(host, '@', (size_t)(s - host))) {
        return "user info (@) in the URL";
    }
    return NULL;
}

int bff_jwks_is_discovery(const char *url)
{
    static const char suffix[] = "/.well-known/openid-configuration";
    size_t n = strcspn(url, "?"), k = sizeof(suffix) - 1;

    return n >= k && !strncmp(url + n - k, suffix, k);
}

const char *bff_jwks_discovery(const char **jwks_uri, const char *doc,
                               apr_size_t len, apr_pool_t *p)
{
    json_error_t jerr;
    json_t *d = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *u;
    const char *err = NULL;

    if (!d) {
        return apr_psprintf(p, "discovery document: line %d: %s", jerr.line,
                            jerr.text);
    }
    u = json_object_get(d, "jwks_uri");
    if (!json_is_object(d)) {
        err = "discovery document: not a JSON object";
    }
    else if (!json_is_string(u) || !json_string_length(u)) {
        err = "discovery document: no \"jwks_uri\" string";
    }
    else if ((err = bff_jwks_url_check(json_string_value(u)))) {
        err = apr_pstrcat(p, "discovery document: jwks_uri: ", err, NULL);
    }
    else {
        *jwks_uri = apr_pstrdup(p, json_string_value(u));
    }
    json_decref(d);
    return err;
}
