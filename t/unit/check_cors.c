/*
 * Unit tests for the CORS core (lib/bff_cors.c): configured origins,
 * Origin header normalisation, matching (exact, "*", patterns through the
 * caller's matcher), preflight methods and headers.
 */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_cors.h"

static apr_pool_t *pool;

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
    pool = NULL;
}

static apr_status_t regex_cleanup(void *re)
{
    regfree(re);
    return APR_SUCCESS;
}

/* the glue uses ap_regex; POSIX regex stands in for it, anchored the
 * same way */
static int posix_match(const void *pattern, const char *origin)
{
    return regexec(pattern, origin, 0, NULL, 0) == 0;
}

static apr_array_header_t *origins(const char *const *args)
{
    apr_array_header_t *list = apr_array_make(pool, 4,
                                              sizeof(bff_cors_origin_t));

    for (; *args; args++) {
        bff_cors_origin_t *o = apr_array_push(list);
        const char *regex;
        ck_assert_msg(bff_cors_origin_parse(o, &regex, *args, pool) == NULL,
                      "%s refused", *args);
        if (regex) {
            regex_t *re = apr_palloc(pool, sizeof(*re));
            ck_assert_int_eq(regcomp(re, apr_pstrcat(pool, "^(", regex, ")$",
                                                     NULL),
                                     REG_EXTENDED | REG_ICASE | REG_NOSUB), 0);
            apr_pool_cleanup_register(pool, re, regex_cleanup,
                                      apr_pool_cleanup_null);
            o->pattern = re;
        }
    }
    return list;
}

static int allowed(const apr_array_header_t *list, const char *header)
{
    return bff_cors_origin_allowed(list,
                                   bff_cors_origin_normalize(header, pool),
                                   posix_match);
}

START_TEST(normalize_valid)
{
    static const char *const cases[][2] = {
        { "https://app.example.com", "https://app.example.com" },
        { "HTTPS://App.Example.COM", "https://app.example.com" },
        { "https://app.example.com:443", "https://app.example.com" },
        { "http://app.example.com:80", "http://app.example.com" },
        { "http://app.example.com:443", "http://app.example.com:443" },
        { "https://127.0.0.1:8443", "https://127.0.0.1:8443" },
        { "http://[::1]:3000", "http://[::1]:3000" },
        { "capacitor://localhost", "capacitor://localhost" },
        { "http://my_host", "http://my_host" },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *n = bff_cors_origin_normalize(cases[i][0], pool);
        ck_assert_msg(n && !strcmp(n, cases[i][1]), "%s -> %s", cases[i][0],
                      n ? n : "NULL");
    }
}
END_TEST

START_TEST(normalize_invalid)
{
    static const char *const cases[] = {
        "", "null", "null ", "app.example.com", "https://", "https:///x",
        "https://app.example.com/", "https://app.example.com/path",
        "https://app.example.com?x", "https://user@app.example.com",
        "https://app.example.com:", "https://app.example.com:65536",
        "https://app.example.com:123456", "https://app.example.com:8a",
        "https://app example.com", "https://app.example.com\r\nX-Evil: 1",
        "https://app.example.com ", " https://app.example.com",
        "https://[::1", "https://[]", "1http://x", "https://a.example.com,"
        "https://b.example.com", "https://*.example.com",
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_msg(bff_cors_origin_normalize(cases[i], pool) == NULL,
                      "'%s' accepted", cases[i]);
    }
    ck_assert_ptr_null(bff_cors_origin_normalize(NULL, pool));
}
END_TEST

START_TEST(parse_config)
{
    bff_cors_origin_t o;
    const char *regex, *err;

    ck_assert_ptr_null(bff_cors_origin_parse(&o, &regex, "*", pool));
    ck_assert_int_eq(o.any, 1);
    ck_assert_ptr_null(regex);

    ck_assert_ptr_null(bff_cors_origin_parse(&o, &regex,
                                             "HTTPS://App.example.com:443",
                                             pool));
    ck_assert_str_eq(o.origin, "https://app.example.com");
    ck_assert_int_eq(o.any, 0);

    ck_assert_ptr_null(bff_cors_origin_parse(&o, &regex,
                                             "~https://[a-z]+\\.example\\.com",
                                             pool));
    ck_assert_str_eq(regex, "https://[a-z]+\\.example\\.com");
    ck_assert_ptr_null(o.origin);

    err = bff_cors_origin_parse(&o, &regex, "null", pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "null"));
    err = bff_cors_origin_parse(&o, &regex, "https://*.example.com", pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "pattern"));
    err = bff_cors_origin_parse(&o, &regex, "https://app.example.com/", pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "not an origin"));
    ck_assert_ptr_nonnull(bff_cors_origin_parse(&o, &regex, "~", pool));
}
END_TEST

START_TEST(match_exact_and_pattern)
{
    static const char *const cfg[] = {
        "https://app.example.com", "http://localhost:3000",
        "~https://[a-z0-9-]+\\.preview\\.example\\.com", NULL
    };
    apr_array_header_t *list = origins(cfg);

    ck_assert(allowed(list, "https://app.example.com"));
    ck_assert(allowed(list, "https://app.example.com:443"));
    ck_assert(allowed(list, "http://localhost:3000"));
    ck_assert(allowed(list, "https://pr-12.preview.example.com"));
    /* other scheme, port, host, suffix or prefix tricks */
    ck_assert(!allowed(list, "http://app.example.com"));
    ck_assert(!allowed(list, "https://app.example.com:8443"));
    ck_assert(!allowed(list, "http://localhost:3001"));
    ck_assert(!allowed(list, "https://app.example.com.evil.com"));
    ck_assert(!allowed(list, "https://evilapp.example.com"));
    /* the pattern is anchored at both ends */
    ck_assert(!allowed(list, "https://pr-12.preview.example.com.evil.com"));
    ck_assert(!allowed(list, "https://evil.com#https://x.preview.example.com"));
    ck_assert(!allowed(list, "https://a.b.preview.example.com"));
    ck_assert(!allowed(list, "null"));
    ck_assert(!allowed(list, "https://app.example.com/"));
    ck_assert(!bff_cors_origin_allowed(list, NULL, posix_match));
}
END_TEST

START_TEST(match_any)
{
    static const char *const cfg[] = { "*", NULL };
    apr_array_header_t *list = origins(cfg);

    ck_assert(allowed(list, "https://anything.example"));
    /* not even "*" lets a malformed or null origin through */
    ck_assert(!allowed(list, "null"));
    ck_assert(!allowed(list, "https://x/\r\n"));
    ck_assert(!bff_cors_origin_allowed(NULL, "https://x", posix_match));
}
END_TEST

START_TEST(methods_and_tokens)
{
    apr_array_header_t *m = apr_array_make(pool, 2, sizeof(const char *));

    APR_ARRAY_PUSH(m, const char *) = "GET";
    APR_ARRAY_PUSH(m, const char *) = "POST";
    ck_assert(bff_cors_method_allowed("GET", m));
    ck_assert(bff_cors_method_allowed("POST", m));
    ck_assert(!bff_cors_method_allowed("post", m));   /* case-sensitive */
    ck_assert(!bff_cors_method_allowed("DELETE", m));
    ck_assert(!bff_cors_method_allowed(NULL, m));
    ck_assert(bff_cors_token("X-Custom_Header.1"));
    ck_assert(!bff_cors_token(""));
    ck_assert(!bff_cors_token("a b"));
    ck_assert(!bff_cors_token("a:b"));
    ck_assert(!bff_cors_token("a\r\n"));
}
END_TEST

START_TEST(request_headers)
{
    apr_array_header_t *h = apr_array_make(pool, 2, sizeof(const char *));
    const char *bad;

    APR_ARRAY_PUSH(h, const char *) = "Authorization";
    APR_ARRAY_PUSH(h, const char *) = "Content-Type";
    ck_assert_ptr_null(bff_cors_headers_check("authorization", h, pool));
    ck_assert_ptr_null(bff_cors_headers_check("content-type,authorization",
                                              h, pool));
    ck_assert_ptr_null(bff_cors_headers_check(" Content-Type , Authorization ",
                                              h, pool));
    ck_assert_ptr_null(bff_cors_headers_check("", h, pool));
    bad = bff_cors_headers_check("authorization,x-secret", h, pool);
    ck_assert_str_eq(bad, "x-secret");
    bad = bff_cors_headers_check("authorization, bad header", h, pool);
    ck_assert_str_eq(bad, "bad header");
    /* nothing allowed */
    bad = bff_cors_headers_check("content-type", NULL, pool);
    ck_assert_str_eq(bad, "content-type");
}
END_TEST

START_TEST(join)
{
    apr_array_header_t *h = apr_array_make(pool, 2, sizeof(const char *));

    ck_assert_ptr_null(bff_cors_join(h, pool));
    APR_ARRAY_PUSH(h, const char *) = "GET";
    ck_assert_str_eq(bff_cors_join(h, pool), "GET");
    APR_ARRAY_PUSH(h, const char *) = "POST";
    ck_assert_str_eq(bff_cors_join(h, pool), "GET,POST");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cors");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, normalize_valid);
    tcase_add_test(tc, normalize_invalid);
    tcase_add_test(tc, parse_config);
    tcase_add_test(tc, match_exact_and_pattern);
    tcase_add_test(tc, match_any);
    tcase_add_test(tc, methods_and_tokens);
    tcase_add_test(tc, request_headers);
    tcase_add_test(tc, join);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
