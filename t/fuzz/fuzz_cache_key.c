/*
 * libFuzzer target for the cache key (bff_cache_key) with every input a
 * request can bring: route parameter, query, fields, the header lines the
 * backends get, the forwarded query, the virtual host, the configuration
 * fingerprint and the identity; and for the judgement
 * of backend response headers (bff_http_no_store), which come from
 * backends.
 *
 * Input: lines separated by '\n', in this order:
 *   endpoint, query, fields, param, headers ('\r' between header lines),
 *   backend query, scope, config, identity
 * (missing lines are absent inputs). Besides the sanitizers, it aborts
 * when an invariant breaks:
 *   - the key is the prefix and 64 lower-case hex digits, whatever the
 *     input (no header value or identity in the key text);
 *   - the same input gives the same key; header lines in another order
 *     (names all different) or with the name's case changed give the same
 *     key; an identity added to an anonymous input changes the key;
 *   - bff_http_no_store on the whole input returns NULL or one of its four
 *     reasons.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <apr_general.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_http.h"
#include "bff_cache.h"

#define NPARTS 9

static apr_pool_t *pool;

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

/* Splits s at '\n' into at most max parts (missing parts are NULL). */
static void split(char **parts, int max, char *s)
{
    int n = 0;

    while (n < max) {
        char *nl = strchr(s, '\n');
        parts[n++] = s;
        if (!nl) {
            break;
        }
        *nl = '\0';
        s = nl + 1;
    }
}

static apr_array_header_t *header_lines(const char *s)
{
    apr_array_header_t *a = apr_array_make(pool, 4, sizeof(const char *));
    char *copy, *last, *line;

    if (!s) {
        return a;
    }
    copy = apr_pstrdup(pool, s);
    for (line = apr_strtok(copy, "\r", &last); line;
         line = apr_strtok(NULL, "\r", &last)) {
        APR_ARRAY_PUSH(a, const char *) = line;
    }
    return a;
}

static void key_ok(const char *key)
{
    const char *k;

    check(strlen(key) == 4 + 64 && !strncmp(key, "bff:", 4));
    for (k = key + 4; *k; k++) {
        check((*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'f'));
    }
}

/* 1 when the lines have different names, compared as the key does. */
static int names_distinct(const apr_array_header_t *a)
{
    int i, j;

    for (i = 0; i < a->nelts; i++) {
        const char *x = APR_ARRAY_IDX(a, i, const char *);
        apr_size_t nx = strcspn(x, ":");
        for (j = i + 1; j < a->nelts; j++) {
            const char *y = APR_ARRAY_IDX(a, j, const char *);
            if (strcspn(y, ":") == nx && !strncasecmp(x, y, nx)) {
                return 0;
            }
        }
    }
    return 1;
}

static apr_array_header_t *reversed_upper(const apr_array_header_t *a)
{
    apr_array_header_t *r = apr_array_make(pool, a->nelts + 1,
                                           sizeof(const char *));
    int i;

    for (i = a->nelts - 1; i >= 0; i--) {
        char *l = apr_pstrdup(pool, APR_ARRAY_IDX(a, i, const char *)), *c;
        for (c = l; *c && *c != ':'; c++) {
            *c = (char)apr_toupper(*c);
        }
        APR_ARRAY_PUSH(r, const char *) = l;
    }
    return r;
}

static void fuzz_key(char *s)
{
    char *p[NPARTS] = {NULL};
    apr_array_header_t *qk = apr_array_make(pool, 2, sizeof(const char *));
    bff_cache_key_in_t in;
    bff_cache_kv_t param;
    const char *k1, *k2;

    split(p, NPARTS, s);
    APR_ARRAY_PUSH(qk, const char *) = "page";
    APR_ARRAY_PUSH(qk, const char *) = "lang";
    memset(&in, 0, sizeof(in));
    in.prefix = "bff:";
    in.endpoint = p[0];
    in.query = p[1];
    in.query_keys = qk;
    in.fields = p[2];
    param.name = "id";
    param.value = p[3];
    in.params = &param;
    in.nparams = 1;
    in.headers = header_lines(p[4]);
    in.backend_query = p[5];
    in.scope = p[6];
    in.config = p[7];
    in.identity = p[8];
    if (bff_cache_key(&k1, &in, pool)) {
        check(!p[0] || !*p[0]);
        return;
    }
    key_ok(k1);
    check(!bff_cache_key(&k2, &in, pool) && !strcmp(k1, k2));
    if (names_distinct(in.headers)) {
        in.headers = reversed_upper(in.headers);
        check(!bff_cache_key(&k2, &in, pool) && !strcmp(k1, k2));
    }
    if (!in.identity) {
        in.identity = "bff-jwt\nhttps://issuer.test\nalice";
        check(!bff_cache_key(&k2, &in, pool) && strcmp(k1, k2));
    }
}

static void fuzz_no_store(const char *d, size_t n)
{
    const char *why = bff_http_no_store(d, n);

    check(!why || !strcmp(why, "Set-Cookie")
          || !strcmp(why, "Cache-Control: no-store")
          || !strcmp(why, "Cache-Control: private")
          || !strcmp(why, "Vary: *"));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact size for the header judgement: ASan sees any read past it */
    char *exact = malloc(size ? size : 1);

    if (!exact) {
        return 0;
    }
    memcpy(exact, data, size);
    fuzz_no_store(exact, size);
    free(exact);
    fuzz_key(apr_pstrmemdup(pool, (const char *)data, size));
    apr_pool_clear(pool);
    return 0;
}
