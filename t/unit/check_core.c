/*
 * Unit tests for the pure-logic core (lib/bff_*.c).
 *
 *   make -f t/unit/Makefile.standalone [asan]
 *
 * Every test gets a fresh pool; jansson values are tied to it with
 * bff_json_pool_own so the ASan build also proves nothing leaks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <math.h>

#include <check.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_lib.h>

#include "bff_core.h"
#include "bff_opts.h"

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

/* ------------------------------------------------------------ helpers -- */

#define ASSERT_OK(expr) do {                                              \
        const char *e_ = (expr);                                          \
        ck_assert_msg(e_ == NULL, "%s: unexpected error: %s", #expr, e_); \
    } while (0)

#define ASSERT_ERR(expr, needle) do {                                     \
        const char *e_ = (expr);                                          \
        ck_assert_msg(e_ != NULL, "%s: expected an error containing "     \
                      "\"%s\"", #expr, (needle));                         \
        ck_assert_msg(strstr(e_, (needle)) != NULL,                       \
                      "%s: error \"%s\" lacks \"%s\"", #expr, e_,         \
                      (needle));                                          \
    } while (0)

/* Parses JSON (any value, NUL allowed) owned by the test pool. */
static json_t *J(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    ck_assert_msg(v != NULL, "bad test JSON '%s': %s", text, jerr.text);
    return bff_json_pool_own(v, pool);
}

/* Compact, key-sorted text of v, from the pool ("(null)" for NULL). */
static const char *D(const json_t *v)
{
    char *s;
    const char *r;

    if (!v) {
        return "(null)";
    }
    s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    r = apr_pstrdup(pool, s ? s : "(undumpable)");
    free(s);
    return r;
}

/* got must equal expect exactly: json_equal tells 1 from 1.0, and the
 * text comparison checks order of array elements as well. */
static void assert_json_(const json_t *got, const char *expect,
                         const char *file, int line)
{
    json_t *want = J(expect);

    ck_assert_msg(got && json_equal((json_t *)got, want),
                  "%s:%d: got %s, expected %s", file, line, D(got),
                  D(want));
}
#define ASSERT_JSON(got, expect) assert_json_((got), (expect), __FILE__, \
                                              __LINE__)

/* Decodes %XX (test side only) to check that encoding round-trips. */
static const char *pct_decode(const char *s, apr_size_t *len)
{
    char *o = apr_palloc(pool, strlen(s) + 1), *d = o;

    while (*s) {
        if (*s == '%') {
            unsigned int b;
            ck_assert_msg(sscanf(s + 1, "%2X", &b) == 1, "bad %% in %s", s);
            *d++ = (char)b;
            s += 3;
        }
        else {
            *d++ = *s++;
        }
    }
    *d = '\0';
    *len = (apr_size_t)(d - o);
    return o;
}

/* ====================================================== json helpers == */

START_TEST(json_depth_basic)
{
    ck_assert_int_eq(bff_json_depth("", 0), 0);
    ck_assert_int_eq(bff_json_depth(NULL, 10), 0);
    ck_assert_int_eq(bff_json_depth("42", 2), 0);
    ck_assert_int_eq(bff_json_depth("\"x\"", 3), 0);
    ck_assert_int_eq(bff_json_depth("[]", 2), 1);
    ck_assert_int_eq(bff_json_depth("{}", 2), 1);
    ck_assert_int_eq(bff_json_depth("[[{\"a\":[]}]]", 12), 4);
    /* the maximum, not the final depth */
    ck_assert_int_eq(bff_json_depth("[[[]],[]]", 9), 3);
    ck_assert_int_eq(bff_json_depth("[1,[2],{\"a\":{\"b\":[3]}}]", 24), 4);
}
END_TEST

START_TEST(json_depth_strings)
{
    const char *s;

    /* brackets inside strings do not count */
    s = "{\"a\":\"[[[[{{{{\"}";
    ck_assert_int_eq(bff_json_depth(s, strlen(s)), 1);
    /* an escaped quote does not end the string */
    s = "[\"x\\\"[[[[\"]";
    ck_assert_int_eq(bff_json_depth(s, strlen(s)), 1);
    /* an escaped backslash does end it: [[1]] counts */
    s = "[\"\\\\\",[[1]]]";
    ck_assert_int_eq(bff_json_depth(s, strlen(s)), 3);
    /* keys are strings too */
    s = "{\"[[[\":{\"}}}\":[]}}";
    ck_assert_int_eq(bff_json_depth(s, strlen(s)), 3);
    /* an unterminated string hides the rest */
    s = "[\"[[[[";
    ck_assert_int_eq(bff_json_depth(s, strlen(s)), 1);
}
END_TEST

START_TEST(json_depth_len_and_junk)
{
    char *deep;
    int i;

    /* only len bytes are looked at */
    ck_assert_int_eq(bff_json_depth("[[[[", 2), 2);
    /* embedded NUL is just a byte */
    ck_assert_int_eq(bff_json_depth("[\0[", 3), 2);
    /* stray closers never make the depth negative */
    ck_assert_int_eq(bff_json_depth("]]]][[", 6), 2);
    /* a trailing backslash inside a string does not read past len */
    ck_assert_int_eq(bff_json_depth("[\"\\", 3), 1);

    deep = apr_palloc(pool, 100000);
    for (i = 0; i < 100000; ++i) {
        deep[i] = (i % 2) ? '{' : '[';
    }
    ck_assert_int_eq(bff_json_depth(deep, 100000), 100000);
}
END_TEST

/* bff_json_dump gives json_dumpb's bytes (or both refuse) */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)
static void dump_same(json_t *v)
{
    size_t n = json_dumpb(v, NULL, 0, DUMP_FLAGS);
    apr_pool_t *sub;
    char *theirs;
    apr_size_t len;
    const char *ours;

    apr_pool_create(&sub, pool);
    theirs = apr_palloc(sub, n + 1);
    ours = bff_json_dump(&len, v, sub);
    ck_assert_uint_eq(json_dumpb(v, theirs, n, DUMP_FLAGS), n);
    theirs[n] = '\0';
    ck_assert_msg(len == n && memcmp(ours, theirs, n) == 0 && ours[len] == '\0',
                  "dump: ours '%s', jansson '%s'", ours, theirs);
    apr_pool_destroy(sub);
    json_decref(v);
}

static unsigned long long xs_state = 88172645463325252ULL;
static unsigned long long xorshift(void)
{
    xs_state ^= xs_state << 13;
    xs_state ^= xs_state >> 7;
    xs_state ^= xs_state << 17;
    return xs_state;
}

/* bff_json_load gives json_loadb's value (same dump with 17 digits, so
 * -0.0, integer or real and key order count), or both refuse */
static void load_same(const char *text, size_t len)
{
    json_error_t e1, e2;
    json_t *ours = bff_json_load(text, len, 0, &e1);
    json_t *theirs = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e2);
    const size_t fl = JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY;

    ck_assert_msg(!ours == !theirs, "load '%.*s': ours %p, jansson %p", (int)len,
                  text, (void *)ours, (void *)theirs);
    if (ours) {
        char *d1 = json_dumps(ours, fl), *d2 = json_dumps(theirs, fl);

        ck_assert_msg(strcmp(d1, d2) == 0, "load '%.*s': ours %s, jansson %s",
                      (int)len, text, d1, d2);
        free(d1);
        free(d2);
        json_decref(ours);
        json_decref(theirs);
    }
    else {
        ck_assert_str_eq(e1.text, e2.text);
    }
}
#define LOAD_SAME(lit) load_same(lit, sizeof(lit) - 1)

START_TEST(json_load_values)
{
    char *deep;
    int i, k;

    LOAD_SAME("{\"user\":{\"id\":42,\"name\":\"User 42\"},\"orders\":[{\"total\":67.9,"
              "\"q\":2,\"s\":\"delivered\"},{\"total\":116.28}],\"e\":{},\"a\":[]}");
    LOAD_SAME("  [ true , false , null ]\r\n\t");
    LOAD_SAME("\"plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    LOAD_SAME("\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u20AC \\ud83d\\ude00 \\u0000 end\"");
    LOAD_SAME("{\"a\":1,\"b\":2,\"a\":3}");            /* the last one wins, in place */
    LOAD_SAME("{\"k\\u0000\":1}");                     /* jansson's refusal */
    LOAD_SAME("{\"\\u00e9\\n\":[{\"\":\"\"}]}");
    /* numbers: the exact fast path, strtod, and jansson's limits */
    LOAD_SAME("[0,-0,0.0,-0.0,1,-1,123456789012345678,-123456789012345678]");
    LOAD_SAME("[1234567890123456789,-9223372036854775808,9223372036854775807]");
    LOAD_SAME("9223372036854775808");
    LOAD_SAME("-9223372036854775809");
    LOAD_SAME("[0.1,1e1,1E+2,1e-2,2.5e-3,1e22,1e23,1e-22,1e-23,123.456e-7]");
    LOAD_SAME("[9007199254740993.0,9007199254740992.5,4.35e-308,5e-324,1.7976931348623157e308]");
    LOAD_SAME("[0.1000000000000000055511151231257827021181583404541015625]");
    LOAD_SAME("[1e400]");
    LOAD_SAME("[-1e-400]");
    LOAD_SAME("[0.00000000000000000000000000000000000000000000000001]");
    for (k = 0; k < 2000; ++k) {
        char num[64];
        int n = snprintf(num, sizeof(num), "[%d.%02d,%de-%d,%.17g]", k * 37 % 100000,
                         k % 100, k, k % 30, (double)k / 7.0);
        load_same(num, (size_t)n);
    }
    /* refused, with jansson's message */
    LOAD_SAME("");
    LOAD_SAME("   ");
    LOAD_SAME("[1,]");
    LOAD_SAME("{\"a\" 1}");
    LOAD_SAME("{\"a\":1,}");
    LOAD_SAME("[01]");
    LOAD_SAME("[1.]");
    LOAD_SAME("[.5]");
    LOAD_SAME("[1e]");
    LOAD_SAME("[-]");
    LOAD_SAME("[truex]");
    LOAD_SAME("[nul]");
    LOAD_SAME("\"\\ud800\"");
    LOAD_SAME("\"\\udc00\"");
    LOAD_SAME("\"\\ud800\\u0041\"");
    LOAD_SAME("\"\\x\"");
    LOAD_SAME("\"\\u12G4\"");
    LOAD_SAME("\"a\tb\"");
    LOAD_SAME("\"\xff\"");
    LOAD_SAME("\"\xed\xa0\x80\"");
    LOAD_SAME("\"\xc0\x80\"");
    LOAD_SAME("\"unterminated");
    LOAD_SAME("[1] 2");
    LOAD_SAME("[1]\0");
    LOAD_SAME("\xef\xbb\xbf[1]");
    load_same("[\"a\0b\"]", 6);
    /* a caller's depth limit, checked before decoding, bad JSON or not */
    {
        json_error_t e;
        json_t *v;

        ck_assert_ptr_null(bff_json_load("[[[1]]]", 7, 2, &e));
        ck_assert_str_eq(e.text, "nesting deeper than 2");
        ck_assert_int_eq(e.line, -1);
        ck_assert_ptr_null(bff_json_load("{\"a\":[[x", 9, 2, &e));
        ck_assert_str_eq(e.text, "nesting deeper than 2");
        ck_assert_ptr_null(bff_json_load("[[x", 3, 2, &e));
        ck_assert_int_ne(e.line, -1);
        ck_assert_ptr_nonnull(v = bff_json_load("[[[1]]]", 7, 3, &e));
        json_decref(v);
        ck_assert_ptr_nonnull(v = bff_json_load("[[1],{\"a\":[2]}]", 15, 3, &e));
        json_decref(v);
    }
    /* nesting: beyond the first 32 frames, up to jansson's limit, past it */
    deep = apr_palloc(pool, 2 * 2100 + 1);
    for (k = 2040; k <= 2050; k += 10) {
        for (i = 0; i < k; ++i) {
            deep[i] = (i % 2) ? '[' : '[';
            deep[2 * k - 1 - i] = ']';
        }
        load_same(deep, (size_t)(2 * k));
        deep[k - 1] = '{';
        deep[k] = '}';
        load_same(deep, (size_t)(2 * k));
    }
}
END_TEST

START_TEST(json_dump_reals)
{
    static const double pow10[] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7 };
    apr_size_t len;
    long i;
    int k;

    /* decimals of every length: the fast path, and its edges */
    for (k = 0; k < 8; ++k) {
        for (i = -30000; i <= 30000; i += 7) {
            dump_same(json_real((double)i / pow10[k]));
        }
    }
    /* prices, big and small magnitudes, and the %g switch points */
    for (i = 0; i < 100000; ++i) {
        dump_same(json_real((double)(xorshift() % 1000000000000ULL) / 100.0));
    }
    {
        static const double edge[] = {
            0.0, -0.0, 1e-4, 9.999999999999999e-5, 1e15, 999999999999999.9,
            999999999999999.0, 99999999999999.99, 0.30000000000000004, 0.1,
            5e-324, 1.7976931348623157e308, -2.5, 123456789012345.6,
            1e21, 1e-7, 0.06630859375, 4503599627370496.5, 9007199254740993.0
        };
        for (i = 0; i < (long)(sizeof(edge) / sizeof(edge[0])); ++i) {
            dump_same(json_real(edge[i]));
        }
    }
    /* any bits */
    for (i = 0; i < 200000; ++i) {
        unsigned long long b = xorshift();
        double d;

        memcpy(&d, &b, sizeof(d));
        if (isfinite(d)) {
            dump_same(json_real(d));
        }
    }
    /* a real has a '.' or an exponent, so it reads back as a real */
    ck_assert_str_eq(bff_json_dump(&len, bff_json_pool_own(json_real(5), pool), pool),
                     "5.0");
    ck_assert_str_eq(bff_json_dump(&len, bff_json_pool_own(json_real(1e20), pool), pool),
                     "1e20");
}
END_TEST

START_TEST(json_dump_values)
{
    const char *big;
    apr_size_t len;
    json_t *doc, *arr;
    int i;

    dump_same(json_integer(0));
    dump_same(json_integer(-1));
    dump_same(json_integer(LLONG_MAX));
    dump_same(json_integer(LLONG_MIN));
    dump_same(json_null());
    dump_same(json_true());
    dump_same(json_false());
    dump_same(json_string(""));
    dump_same(json_stringn("a\0b\x01\x1f\x7f\"\\/\b\f\n\r\t\x0b", 16));
    dump_same(json_string("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8"));
    dump_same(json_loads("{\"z\":1,\"a\":[],\"m\":{},\"\\u0001k\":[null,true,[[]]]}", 0, NULL));
    dump_same(json_array());
    dump_same(json_object());

    /* not UTF-8: jansson refuses, and so does this */
    for (i = 0; i < 6; ++i) {
        static const char *const bad[] = {
            "\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
            "ok\x80"
        };
        json_t *v = json_stringn_nocheck(bad[i], strlen(bad[i]));

        ck_assert_str_eq(bff_json_dump(&len, v, pool), "");
        ck_assert_uint_eq(len, 0);
        dump_same(v);
    }
    doc = json_object();
    json_object_setn_new_nocheck(doc, "\xff", 1, json_true());
    ck_assert_str_eq(bff_json_dump(&len, bff_json_pool_own(doc, pool), pool), "");

    /* far past the first buffer */
    arr = json_array();
    for (i = 0; i < 5000; ++i) {
        json_array_append_new(arr, json_pack("{s:i,s:f,s:s}", "id", i, "total",
                                             i / 100.0, "status", "delivered"));
    }
    json_incref(arr);
    dump_same(arr);
    big = bff_json_dump(&len, bff_json_pool_own(arr, pool), pool);
    ck_assert_uint_gt(len, 200000);
    ck_assert_uint_eq(strlen(big), len);
    /* refused past the first buffer: nothing written is kept (the
     * sanitized build's leak check) */
    arr = json_array();
    for (i = 0; i < 500; ++i) {
        json_array_append_new(arr, json_string("past the first buffer"));
    }
    json_array_append_new(arr, json_stringn_nocheck("\xff", 1));
    ck_assert_str_eq(bff_json_dump(&len, bff_json_pool_own(arr, pool), pool), "");
    ck_assert_uint_eq(len, 0);

    /* nesting beyond the parser's limit (and a bit) is refused */
    doc = arr = json_array();
    for (i = 0; i < JSON_PARSER_MAX_DEPTH + 100; ++i) {
        json_t *n = json_array();
        json_array_append_new(arr, n);
        arr = n;
    }
    ck_assert_str_eq(bff_json_dump(&len, bff_json_pool_own(doc, pool), pool), "");
}
END_TEST

START_TEST(json_pool_own)
{
    apr_pool_t *sub;
    json_t *v = json_object();

    ck_assert_ptr_null(bff_json_pool_own(NULL, pool));

    json_incref(v);                       /* refcount 2 */
    apr_pool_create(&sub, pool);
    ck_assert_ptr_eq(bff_json_pool_own(v, sub), v);
    ck_assert_int_eq((int)v->refcount, 2);
    apr_pool_destroy(sub);                /* drops the pool's reference */
    ck_assert_int_eq((int)v->refcount, 1);
    json_decref(v);

    /* also on clear, and the value really is released (LSan checks) */
    apr_pool_create(&sub, pool);
    bff_json_pool_own(json_pack("{s:[i,i]}", "a", 1, 2), sub);
    apr_pool_clear(sub);
    apr_pool_destroy(sub);
}
END_TEST

/* ============================================================ routes == */

static bff_route_t *R(const char *pattern)
{
    bff_route_t *rt;

    ASSERT_OK(bff_route_compile(&rt, pattern, pool));
    ck_assert_ptr_nonnull(rt);
    return rt;
}

static bff_route_result_e M(const bff_route_t *rt, const char *path,
                            const char ***vals, int *bad)
{
    const char **dummy_v;
    int dummy_b;

    return bff_route_match(vals ? vals : &dummy_v, bad ? bad : &dummy_b, rt,
                           path, pool);
}

START_TEST(route_literal)
{
    bff_route_t *rt = R("/api/health");
    const char **v = NULL;

    ck_assert_int_eq(bff_route_nparams(rt), 0);
    ck_assert_str_eq(bff_route_pattern(rt), "/api/health");
    ck_assert_int_eq(M(rt, "/api/health", &v, NULL), BFF_ROUTE_MATCH);
    ck_assert_ptr_nonnull(v);
    ck_assert_ptr_null(v[0]);
    ck_assert_int_eq(M(rt, "/api/health/", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/api/healthz", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/api/healt", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/api", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/api/health/x", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/API/health", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "api/health", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, NULL, NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "//api/health", NULL, NULL), BFF_ROUTE_NOMATCH);
}
END_TEST

START_TEST(route_root_and_trailing_slash)
{
    bff_route_t *root = R("/"), *slash = R("/api/"), *noslash = R("/api");

    ck_assert_int_eq(M(root, "/", NULL, NULL), BFF_ROUTE_MATCH);
    ck_assert_int_eq(M(root, "/x", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(root, "//", NULL, NULL), BFF_ROUTE_NOMATCH);

    ck_assert_int_eq(M(slash, "/api/", NULL, NULL), BFF_ROUTE_MATCH);
    ck_assert_int_eq(M(slash, "/api", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(noslash, "/api", NULL, NULL), BFF_ROUTE_MATCH);
    ck_assert_int_eq(M(noslash, "/api/", NULL, NULL), BFF_ROUTE_NOMATCH);
}
END_TEST

START_TEST(route_segment_param)
{
    bff_route_t *rt = R("/users/{name}/orders");
    const char **v = NULL;
    int bad = -7;

    ck_assert_int_eq(bff_route_nparams(rt), 1);
    ck_assert_str_eq(bff_route_param_name(rt, 0), "name");
    ck_assert_int_eq(bff_route_param_type(rt, 0), BFF_PARAM_SEGMENT);

    ck_assert_int_eq(M(rt, "/users/alice/orders", &v, NULL),
                     BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "alice");
    ck_assert_ptr_null(v[1]);

    /* decoded paths: any byte but '/' and NUL is part of the value */
    ck_assert_int_eq(M(rt, "/users/a b%2e..?#\xc3\xa9\xff/orders", &v, NULL),
                     BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "a b%2e..?#\xc3\xa9\xff");
    ck_assert_int_eq(M(rt, "/users/../orders", &v, NULL), BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "..");

    /* an empty segment where a parameter stands is a bad value of that
     * parameter, never a match */
    ck_assert_int_eq(M(rt, "/users//orders", NULL, &bad), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(M(rt, "/users/orders", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/users/a/b/orders", NULL, NULL),
                     BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/users/a/orders/", NULL, NULL),
                     BFF_ROUTE_NOMATCH);

    rt = R("/users/{id}");
    bad = -7;
    ck_assert_int_eq(M(rt, "/users/", NULL, &bad), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 0);
    /* a regex that accepts the empty string does not make it a value */
    ck_assert_int_eq(M(R("/a/{x:~b*}/c"), "/a//c", NULL, &bad),
                     BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(R("/a/{x}/{y:int}"), "/a/1/", NULL, &bad),
                     BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 1);
    ck_assert_int_eq(M(rt, "/users", NULL, NULL), BFF_ROUTE_NOMATCH);
    ck_assert_int_eq(M(rt, "/users/x/", NULL, NULL), BFF_ROUTE_NOMATCH);
}
END_TEST

START_TEST(route_int)
{
    bff_route_t *rt = R("/u/{id:int}/p");
    const char **v = NULL;
    int bad = -1;

    ck_assert_int_eq(bff_route_param_type(rt, 0), BFF_PARAM_INT);
    ck_assert_int_eq(M(rt, "/u/42/p", &v, NULL), BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "42");
    ck_assert_int_eq(M(rt, "/u/0/p", NULL, NULL), BFF_ROUTE_MATCH);
    ck_assert_int_eq(M(rt, "/u/007/p", NULL, NULL), BFF_ROUTE_MATCH);
    ck_assert_int_eq(M(rt, "/u/123456789012345678/p", &v, NULL),
                     BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "123456789012345678");

    ck_assert_int_eq(M(rt, "/u/1234567890123456789/p", NULL, &bad),
                     BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(M(rt, "/u/-1/p", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/u/+1/p", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/u/4a/p", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/u/1.0/p", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/u/ 1/p", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/u/\xd9\xa1/p", NULL, NULL), BFF_ROUTE_BADPARAM);
    /* shape mismatches stay NOMATCH even with a bad value */
    ck_assert_int_eq(M(rt, "/u/x/q", NULL, NULL), BFF_ROUTE_NOMATCH);
    /* an empty value is a bad one */
    ck_assert_int_eq(M(rt, "/u//p", NULL, NULL), BFF_ROUTE_BADPARAM);
}
END_TEST

START_TEST(route_uuid)
{
    bff_route_t *rt = R("/o/{oid:uuid}");
    const char **v = NULL;

    ck_assert_int_eq(bff_route_param_type(rt, 0), BFF_PARAM_UUID);
    ck_assert_int_eq(M(rt, "/o/123e4567-e89b-12d3-a456-426614174000", &v,
                       NULL), BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "123e4567-e89b-12d3-a456-426614174000");
    ck_assert_int_eq(M(rt, "/o/123E4567-E89B-12D3-A456-426614174ABC", NULL,
                       NULL), BFF_ROUTE_MATCH);
    /* one char short / long, hyphen misplaced, non-hex, braces */
    ck_assert_int_eq(M(rt, "/o/123e4567-e89b-12d3-a456-42661417400", NULL,
                       NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/o/123e4567-e89b-12d3-a456-4266141740000", NULL,
                       NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/o/123e4567e-89b-12d3-a456-426614174000", NULL,
                       NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/o/123e4567-e89b-12d3-a456-42661417400g", NULL,
                       NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/o/123e4567+e89b+12d3+a456+426614174000", NULL,
                       NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/o/123e4567e89b12d3a456426614174000", NULL,
                       NULL), BFF_ROUTE_BADPARAM);
}
END_TEST

START_TEST(route_regex)
{
    bff_route_t *rt = R("/fx/{code:~[A-Z]{3}}/rate");
    const char **v = NULL;
    int bad = -1;

    ck_assert_int_eq(bff_route_param_type(rt, 0), BFF_PARAM_REGEX);
    ck_assert_str_eq(bff_route_param_name(rt, 0), "code");
    ck_assert_int_eq(M(rt, "/fx/USD/rate", &v, NULL), BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "USD");
    ck_assert_int_eq(M(rt, "/fx/usd/rate", NULL, &bad), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 0);
    /* anchored at both ends */
    ck_assert_int_eq(M(rt, "/fx/USDX/rate", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/fx/xUSD/rate", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/fx/US/rate", NULL, NULL), BFF_ROUTE_BADPARAM);

    /* the anchors wrap the whole alternation: ^(a|bc)$, not ^a|bc$ */
    rt = R("/x/{v:~a|bc}");
    ck_assert_int_eq(M(rt, "/x/a", NULL, NULL), BFF_ROUTE_MATCH);
    ck_assert_int_eq(M(rt, "/x/bc", NULL, NULL), BFF_ROUTE_MATCH);
    ck_assert_int_eq(M(rt, "/x/abc", NULL, NULL), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(M(rt, "/x/ab", NULL, NULL), BFF_ROUTE_BADPARAM);

    /* braces hidden by escapes and bracket expressions, '/' in brackets,
     * nested interval braces */
    rt = R("/x/{v:~a\\{[}]b}/{w:~[^/]+}/{z:~(ab{1,2}){2}}/{c:~[[:digit:]]+}");
    ck_assert_int_eq(bff_route_nparams(rt), 4);
    ck_assert_int_eq(M(rt, "/x/a{}b/any thing/abbab/123", &v, NULL),
                     BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "a{}b");
    ck_assert_str_eq(v[1], "any thing");
    ck_assert_str_eq(v[2], "abbab");
    ck_assert_str_eq(v[3], "123");
    ck_assert_int_eq(M(rt, "/x/a{}b/any/ab/123", NULL, &bad),
                     BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 2);
    ck_assert_int_eq(M(rt, "/x/a{}b/any/abab/12a", NULL, &bad),
                     BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 3);
}
END_TEST

START_TEST(route_multi_params)
{
    bff_route_t *rt = R("/u/{uid:int}/o/{oid:uuid}/{rest}");
    const char **v = NULL;
    int bad = -1;

    ck_assert_int_eq(bff_route_nparams(rt), 3);
    ck_assert_str_eq(bff_route_param_name(rt, 0), "uid");
    ck_assert_str_eq(bff_route_param_name(rt, 1), "oid");
    ck_assert_str_eq(bff_route_param_name(rt, 2), "rest");
    ck_assert_int_eq(bff_route_param_type(rt, 2), BFF_PARAM_SEGMENT);
    ck_assert_ptr_null(bff_route_param_name(rt, 3));
    ck_assert_ptr_null(bff_route_param_name(rt, -1));

    ck_assert_int_eq(M(rt, "/u/7/o/00000000-0000-0000-0000-00000000000a/z",
                       &v, NULL), BFF_ROUTE_MATCH);
    ck_assert_str_eq(v[0], "7");
    ck_assert_str_eq(v[1], "00000000-0000-0000-0000-00000000000a");
    ck_assert_str_eq(v[2], "z");
    ck_assert_ptr_null(v[3]);

    /* the first bad parameter is reported */
    ck_assert_int_eq(M(rt, "/u/7/o/nope/z", NULL, &bad), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 1);
    ck_assert_int_eq(M(rt, "/u/x/o/nope/z", NULL, &bad), BFF_ROUTE_BADPARAM);
    ck_assert_int_eq(bad, 0);
    /* literal mismatch after a bad value: NOMATCH wins */
    ck_assert_int_eq(M(rt, "/u/x/p/nope/z", NULL, NULL), BFF_ROUTE_NOMATCH);

    /* NULL out-parameters are tolerated */
    ck_assert_int_eq(bff_route_match(NULL, NULL, rt, "/u/x/o/y/z", pool),
                     BFF_ROUTE_BADPARAM);
}
END_TEST

START_TEST(route_nomatch_leaves_outputs)
{
    bff_route_t *rt = R("/a/{x:int}");
    const char *sentinel[] = { "s", NULL };
    const char **v = sentinel;
    int bad = 99;

    ck_assert_int_eq(M(rt, "/b/1", &v, &bad), BFF_ROUTE_NOMATCH);
    ck_assert_ptr_eq(v, sentinel);
    ck_assert_int_eq(bad, 99);
    ck_assert_int_eq(M(rt, "/a/x", &v, &bad), BFF_ROUTE_BADPARAM);
    ck_assert_ptr_eq(v, sentinel);
    ck_assert_int_eq(bad, 0);
}
END_TEST

static const struct {
    const char *pattern, *needle;
} bad_routes[] = {
    { "", "must start with '/'" },
    { "api/x", "route 'api/x': must start with '/'" },
    { "/api/{id:flaot}", "route '/api/{id:flaot}': parameter 'id': unknown "
                         "type 'flaot' (expected int, uuid or ~regex)" },
    { "/a/{id:}", "unknown type ''" },
    { "/a/{id:INT}", "unknown type 'INT'" },
    { "/a/{id}x", "parameter '{id}' must be a whole path segment" },
    { "/a/x{id}", "parameter '{id}' must be a whole path segment" },
    { "/a/x{id", "must be a whole path segment" },
    { "/a/{id", "unterminated '{' at offset 3" },
    { "/a/{id:~[a-z}", "unterminated '{'" },
    { "/a/id}", "unmatched '}' at offset 5" },
    { "/a/{1d}", "parameter name '1d' must start with a letter or '_'" },
    { "/a/{i-d}", "parameter name 'i-d' may only contain" },
    { "/a/{}", "has no name" },
    { "/a/{:int}", "has no name" },
    { "/a/{id}/{id:int}", "parameter 'id' appears twice" },
    { "/a/{re:~}", "parameter 're': empty regex" },
    { "/a/{re:~(ab}", "parameter 're': invalid regex '(ab'" },
    { "/a/{re:~a{2,1}}", "invalid regex" },
    { "/a//b", "empty path segment (double slash) at offset 3" },
    { "//", "double slash" },
};

START_TEST(route_bad_patterns)
{
    bff_route_t *rt = (bff_route_t *)1;

    ASSERT_ERR(bff_route_compile(&rt, bad_routes[_i].pattern, pool),
               bad_routes[_i].needle);
    ck_assert_ptr_null(rt);
}
END_TEST

START_TEST(route_regex_cleanup)
{
    /* many regexes in a short-lived pool: LSan fails this without the
     * regfree cleanup */
    apr_pool_t *sub;
    bff_route_t *rt;
    int i;

    for (i = 0; i < 50; ++i) {
        apr_pool_create(&sub, pool);
        ASSERT_OK(bff_route_compile(&rt, "/{a:~[a-z]+}/{b:~x|y}", sub));
        /* a compile failing after a regex compiled must not leak it */
        ck_assert_ptr_nonnull(bff_route_compile(&rt, "/{a:~x}/{a}", sub));
        apr_pool_destroy(sub);
    }
}
END_TEST

/* ======================================================== references == */

static bff_ref_t *REF(const char *text)
{
    bff_ref_t *ref;

    ASSERT_OK(bff_ref_parse(&ref, text, pool));
    ck_assert_ptr_nonnull(ref);
    return ref;
}

/* Evaluates text against the JSON doc (the value of the root). */
static json_t *EV(const char *text, const char *doc)
{
    return bff_json_pool_own(bff_ref_eval(REF(text), doc ? J(doc) : NULL),
                             pool);
}

START_TEST(ref_parse_ok)
{
    bff_ref_t *r;

    r = REF("user_id");
    ck_assert_str_eq(bff_ref_root(r), "user_id");
    ck_assert_str_eq(bff_ref_text(r), "user_id");
    ck_assert_int_eq(bff_ref_is_multi(r), 0);

    r = REF("user.address.city");
    ck_assert_str_eq(bff_ref_root(r), "user");
    ck_assert_str_eq(bff_ref_text(r), "user.address.city");
    ck_assert_int_eq(bff_ref_is_multi(r), 0);

    r = REF("orders[].product_id");
    ck_assert_str_eq(bff_ref_root(r), "orders");
    ck_assert_int_eq(bff_ref_is_multi(r), 1);

    r = REF("orders[]");
    ck_assert_str_eq(bff_ref_root(r), "orders");
    ck_assert_int_eq(bff_ref_is_multi(r), 1);

    r = REF("a-b.c_d.0.x[].Y9");
    ck_assert_str_eq(bff_ref_root(r), "a-b");
    ck_assert_int_eq(bff_ref_is_multi(r), 1);
}
END_TEST

static const struct {
    const char *text, *needle;
} bad_refs[] = {
    { "", "reference is empty" },
    { ".a", "reference '.a': empty segment at offset 0" },
    { "a.", "reference 'a.': empty segment at offset 2" },
    { "a..b", "reference 'a..b': empty segment at offset 2" },
    { "[]", "reference '[]': empty segment at offset 0" },
    { "a.[]", "empty segment at offset 2" },
    { "a[", "reference 'a[': expected '[]' at offset 1" },
    { "a[0]", "expected '[]' at offset 1" },
    { "a[][]", "invalid character '[' at offset 3" },
    { "a[]x", "invalid character 'x' at offset 3 (expected '.' or the end)" },
    { "a b", "invalid character 0x20 at offset 1" },
    { "a.$b", "invalid character '$' at offset 2" },
    { "a/b", "invalid character '/' at offset 1" },
    { "a.b\n", "invalid character 0x0A at offset 3" },
    { "\xc3\xa9", "invalid character 0xC3 at offset 0" },
};

START_TEST(ref_parse_bad)
{
    bff_ref_t *r = (bff_ref_t *)1;

    ASSERT_ERR(bff_ref_parse(&r, bad_refs[_i].text, pool),
               bad_refs[_i].needle);
    ck_assert_ptr_null(r);
}
END_TEST

START_TEST(ref_eval_single)
{
    const char *doc = "{\"id\":1,\"name\":\"Ann\",\"address\":{\"city\":"
                      "\"Oslo\",\"zip\":null},\"tags\":[{\"a\":1}],"
                      "\"score\":1.0}";
    json_t *v;

    ASSERT_JSON(EV("user", doc), doc);
    ASSERT_JSON(EV("user.address.city", doc), "\"Oslo\"");
    ASSERT_JSON(EV("user.address", doc), "{\"city\":\"Oslo\",\"zip\":null}");

    /* integers stay integers, reals stay reals */
    v = EV("user.id", doc);
    ck_assert(json_is_integer(v));
    ck_assert_str_eq(D(v), "1");
    v = EV("user.score", doc);
    ck_assert(json_is_real(v));

    /* an existing null is a value; a missing field is not */
    ck_assert(json_is_null(EV("user.address.zip", doc)));
    ck_assert_ptr_null(EV("user.nope", doc));
    ck_assert_ptr_null(EV("user.address.city.x", doc));   /* of a string */
    ck_assert_ptr_null(EV("user.address.zip.x", doc));    /* of null */
    /* only [] iterates: a plain segment on an array is not found */
    ck_assert_ptr_null(EV("user.tags.a", doc));
    ck_assert_ptr_null(EV("orders.id", "[{\"id\":1}]"));
    /* no root value */
    ck_assert_ptr_null(EV("user", NULL));
    ck_assert_ptr_null(EV("user.id", NULL));
    /* route parameters are plain roots */
    ASSERT_JSON(EV("user_id", "42"), "42");
}
END_TEST

START_TEST(ref_eval_multi_dedupe_order)
{
    json_t *v;
    size_t i;

    v = EV("orders[].product_id",
           "[{\"product_id\":3},{\"product_id\":1},{\"product_id\":3},"
           "{\"x\":9},{\"product_id\":null},{\"product_id\":2},"
           "{\"product_id\":1},null,7,\"s\",[1],{\"product_id\":\"3\"}]");
    ASSERT_JSON(v, "[3,1,2,\"3\"]");
    for (i = 0; i < 3; ++i) {
        ck_assert(json_is_integer(json_array_get(v, i)));
    }

    /* values compare by type too: 1, 1.0, "1" and true are distinct */
    ASSERT_JSON(EV("a[]", "[1,1.0,\"1\",true,1,1.0,\"1\",true,false,false,"
                          "null,0,-0,0.5,0.5]"),
                "[1,1.0,\"1\",true,false,0,0.5]");

    /* "orders[]" is the array itself, deduplicated */
    ASSERT_JSON(EV("orders[]", "[\"b\",\"a\",\"b\"]"), "[\"b\",\"a\"]");
}
END_TEST

START_TEST(ref_eval_multi_objects)
{
    /* objects and arrays as elements are compared structurally */
    ASSERT_JSON(EV("a[]", "[{\"x\":1,\"y\":2},{\"y\":2,\"x\":1},{\"x\":2},"
                          "[1,2],[1,2],[2,1],{}]"),
                "[{\"x\":1,\"y\":2},{\"x\":2},[1,2],[2,1],{}]");
    /* a field holding an array is a value (no [] means no iteration) */
    ASSERT_JSON(EV("a[].tags", "[{\"tags\":[\"x\"]},{\"tags\":[\"y\"]},"
                               "{\"tags\":[\"x\"]}]"),
                "[[\"x\"],[\"y\"]]");
}
END_TEST

START_TEST(ref_eval_multi_nested)
{
    const char *doc =
        "[{\"b\":[{\"c\":1},{\"c\":2}]},"
        " {\"b\":[{\"c\":2},{\"c\":3},{\"d\":4},null,5]},"
        " {\"b\":null}, {\"nob\":1}, 5, {\"b\":{\"c\":99}},"
        " {\"b\":[{\"c\":1},{\"c\":null}]}]";

    /* nested [] flatten into one list of unique values */
    ASSERT_JSON(EV("a[].b[].c", doc), "[1,2,3]");
    /* deeper: a[].b[].c[] flattens the arrays themselves */
    ASSERT_JSON(EV("x.a[].b[]",
                   "{\"a\":[{\"b\":[1,2]},{\"b\":[2,3]},{\"b\":4}]}"),
                "[1,2,3]");
    ASSERT_JSON(EV("x.a[].b",
                   "{\"a\":[{\"b\":[1,2]},{\"b\":[2,3]},{\"b\":4}]}"),
                "[[1,2],[2,3],4]");
}
END_TEST

START_TEST(ref_eval_multi_empty)
{
    /* a multi reference always yields an array */
    ASSERT_JSON(EV("a[].x", NULL), "[]");
    ASSERT_JSON(EV("a[].x", "null"), "[]");
    ASSERT_JSON(EV("a[].x", "[]"), "[]");
    ASSERT_JSON(EV("a[].x", "[{},{\"y\":1}]"), "[]");
    /* [] on a non-array yields nothing */
    ASSERT_JSON(EV("a[]", "{\"x\":1}"), "[]");
    ASSERT_JSON(EV("a[]", "\"str\""), "[]");
    ASSERT_JSON(EV("a.b[].c", "{\"b\":{\"c\":1}}"), "[]");
    /* a plain segment on an array inside a multi ref is still not found */
    ASSERT_JSON(EV("a[].b.c", "[{\"b\":[{\"c\":1}]}]"), "[]");
}
END_TEST

START_TEST(ref_eval_multi_large)
{
    /* 200000 elements, 100000 unique: a quadratic dedupe needs ~10^10
     * comparisons and hits the test case timeout; the hashed one takes
     * a fraction of a second */
    json_t *arr = bff_json_pool_own(json_array(), pool), *v;
    json_t *sarr = bff_json_pool_own(json_array(), pool);
    int i;

    for (i = 0; i < 200000; ++i) {
        json_array_append_new(arr, json_pack("{s:I}", "id",
                                             (json_int_t)(i % 100000)));
        json_array_append_new(sarr, json_sprintf("s%d", i % 100000));
    }
    v = bff_json_pool_own(bff_ref_eval(REF("a[].id"), arr), pool);
    ck_assert_int_eq((int)json_array_size(v), 100000);
    for (i = 0; i < 100000; i += 997) {
        ck_assert_int_eq((int)json_integer_value(json_array_get(v, i)), i);
    }
    v = bff_json_pool_own(bff_ref_eval(REF("s[]"), sarr), pool);
    ck_assert_int_eq((int)json_array_size(v), 100000);
    ck_assert_str_eq(json_string_value(json_array_get(v, 12345)), "s12345");
}
END_TEST

START_TEST(ref_eval_multi_composites_large)
{
    /* 60000 objects and arrays, 30000 unique: comparing each with every
     * earlier one takes ~10^9 json_equal calls and hits the test case
     * timeout; hashing their content takes a fraction of a second */
    json_t *arr = bff_json_pool_own(json_array(), pool), *v;
    int i;

    for (i = 0; i < 60000; ++i) {
        int k = i % 30000;
        json_array_append_new(arr, k % 2
            ? json_pack("{s:{s:I,s:s}}", "o", "id", (json_int_t)k, "n", "x")
            : json_pack("{s:[I,b]}", "o", (json_int_t)k, 1));
    }
    v = bff_json_pool_own(bff_ref_eval(REF("a[].o"), arr), pool);
    ck_assert_int_eq((int)json_array_size(v), 30000);
    ASSERT_JSON(json_array_get(v, 29999),
                "{\"id\":29999,\"n\":\"x\"}");
    ASSERT_JSON(json_array_get(v, 2), "[2,true]");
}
END_TEST

START_TEST(ref_eval_multi_equal_values)
{
    /* json_equal decides: member order does not count, 1 and 1.0 differ,
     * -0.0 and 0.0 are one value, in objects too */
    ASSERT_JSON(EV("a[]", "[{\"x\":{\"p\":1,\"q\":[1,{}]},\"y\":2},"
                          "{\"y\":2,\"x\":{\"q\":[1,{}],\"p\":1}},"
                          "{\"x\":1.0},{\"x\":1},{\"z\":0.0},"
                          "{\"z\":-0.0},0.0,-0.0,[[]],[{}],[[]]]"),
                "[{\"x\":{\"p\":1,\"q\":[1,{}]},\"y\":2},{\"x\":1.0},"
                "{\"x\":1},{\"z\":0.0},0.0,[[]],[{}]]");
}
END_TEST

START_TEST(ref_eval_strings_with_nul)
{
    /* strings are compared by all their bytes, not up to a NUL */
    ASSERT_JSON(EV("a[]", "[\"a\\u0000b\",\"a\",\"a\\u0000c\",\"a\\u0000b\"]"),
                "[\"a\\u0000b\",\"a\",\"a\\u0000c\"]");
}
END_TEST

/* ========================================================= templates == */

typedef struct {
    json_t *env;            /* root name -> value */
} env_t;

/* The engine's job in miniature: find the root, evaluate the reference. */
static json_t *env_lookup(void *baton, const bff_ref_t *ref)
{
    env_t *e = baton;
    json_t *root = json_object_get(e->env, bff_ref_root(ref));

    if (!root) {
        return NULL;
    }
    return bff_json_pool_own(bff_ref_eval(ref, root), pool);
}

static bff_tpl_t *TPL(const char *text, bff_tpl_mode_e mode)
{
    bff_tpl_t *t;

    ASSERT_OK(bff_tpl_compile(&t, text, mode, pool));
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Expands text against env (a JSON object text); returns the output or
 * NULL, with the error in *err. */
static const char *X(const char **err, const char *text, bff_tpl_mode_e mode,
                     json_t *env_json)
{
    env_t env = { env_json };
    const char *out = (const char *)1;

    *err = bff_tpl_expand(&out, TPL(text, mode), env_lookup, &env, pool);
    if (*err) {
        ck_assert_ptr_null(out);
        return NULL;
    }
    ck_assert_ptr_nonnull(out);
    return out;
}

static const char *XU(const char *text, const char *env)
{
    const char *err, *out = X(&err, text, BFF_TPL_URL, J(env));

    ck_assert_msg(!err, "expanding '%s': %s", text, err);
    return out;
}

static const char *XJ(const char *text, const char *env)
{
    const char *err, *out = X(&err, text, BFF_TPL_JSON, J(env));

    ck_assert_msg(!err, "expanding '%s': %s", text, err);
    return out;
}

START_TEST(url_encode_basic)
{
    ck_assert_str_eq(bff_url_encode("", pool), "");
    ck_assert_str_eq(bff_url_encode("azAZ09-_~", pool), "azAZ09-_~");
    ck_assert_str_eq(bff_url_encode(".", pool), "%2E");
    ck_assert_str_eq(bff_url_encode("..", pool), "%2E%2E");
    ck_assert_str_eq(bff_url_encode("../admin", pool), "%2E%2E%2Fadmin");
    ck_assert_str_eq(bff_url_encode("a/b", pool), "a%2Fb");
    ck_assert_str_eq(bff_url_encode("x?y=1", pool), "x%3Fy%3D1");
    ck_assert_str_eq(bff_url_encode("x#f", pool), "x%23f");
    ck_assert_str_eq(bff_url_encode("u@evil.com", pool), "u%40evil%2Ecom");
    ck_assert_str_eq(bff_url_encode("%2e%2e", pool), "%252e%252e");
    ck_assert_str_eq(bff_url_encode("a\r\nHost: evil", pool),
                     "a%0D%0AHost%3A%20evil");
    ck_assert_str_eq(bff_url_encode(" ", pool), "%20");
    ck_assert_str_eq(bff_url_encode("+&;,=:'\"<>\\", pool),
                     "%2B%26%3B%2C%3D%3A%27%22%3C%3E%5C");
    ck_assert_str_eq(bff_url_encode("caf\xc3\xa9 \xe2\x82\xac", pool),
                     "caf%C3%A9%20%E2%82%AC");
    ck_assert_str_eq(bff_url_encode("\x01\x7f\x80\xff", pool),
                     "%01%7F%80%FF");
}
END_TEST

static const char *const ssrf_values[] = {
    "../admin", "..", ".", "a/b", "/", "x?y=1", "x#f", "u@evil.com",
    "%2e%2e", "%2F", "a\r\nHost: evil", " ", "caf\xc3\xa9", "\xff\xfe",
    "http://evil.com/", "\\..\\admin", ";jsessionid=1", "a&b=c",
};

START_TEST(url_tpl_ssrf)
{
    const char *prefix = "http://users:8080/users/";
    const char *suffix = "/profile?v=1";
    const char *value = ssrf_values[_i], *out, *mid, *c, *dec, *err;
    json_t *env = J("{}");
    apr_size_t len, dlen;

    /* nocheck: route parameters can hold bytes that are not UTF-8 */
    json_object_set_new(env, "id", json_stringn_nocheck(value,
                                                         strlen(value)));
    out = X(&err, "http://users:8080/users/{id}/profile?v=1", BFF_TPL_URL,
            env);
    ck_assert_msg(!err, "%s", err);
    len = strlen(out);
    /* host and path prefix unchanged, suffix unchanged */
    ck_assert_msg(!strncmp(out, prefix, strlen(prefix)), "out=%s", out);
    ck_assert_msg(len >= strlen(prefix) + strlen(suffix)
                  && !strcmp(out + len - strlen(suffix), suffix),
                  "out=%s", out);
    mid = apr_pstrndup(pool, out + strlen(prefix),
                       len - strlen(prefix) - strlen(suffix));
    /* a single segment made of unreserved bytes and %XX only */
    for (c = mid; *c; ++c) {
        ck_assert_msg(apr_isalnum(*c) || *c == '-' || *c == '_' || *c == '~'
                      || *c == '%', "byte '%c' in segment '%s'", *c, mid);
    }
    ck_assert_str_eq(mid, bff_url_encode(value, pool));
    dec = pct_decode(mid, &dlen);
    ck_assert_int_eq((int)dlen, (int)strlen(value));
    ck_assert(!memcmp(dec, value, dlen));
}
END_TEST

START_TEST(url_tpl_scalars)
{
    const char *env = "{\"i\":42,\"n\":-7,\"big\":123456789012345678,"
                      "\"r\":1.5,\"e\":1e300,\"t\":true,\"f\":false,"
                      "\"s\":\"a.b\",\"z\":0}";

    ck_assert_str_eq(XU("http://h/{i}/{n}/{big}", env),
                     "http://h/42/-7/123456789012345678");
    ck_assert_str_eq(XU("http://h/x?r={r}&t={t}&f={f}&z={z}", env),
                     "http://h/x?r=1.5&t=true&f=false&z=0");
    ck_assert_str_eq(XU("http://h/{s}", env), "http://h/a%2Eb");
    /* jansson's format; no '+' to be read as a space in a query */
    ck_assert_str_eq(XU("http://h/?e={e}", env),
                     "http://h/?e=1.0000000000000001e300");
    /* integers from references stay integers ("1" not "1.0") */
    ck_assert_str_eq(XU("http://h/u/{user.id}",
                        "{\"user\":{\"id\":1}}"), "http://h/u/1");
    /* the ends of the integer range */
    ck_assert_str_eq(XU("http://h/{a}/{b}",
                        "{\"a\":9223372036854775807,"
                        "\"b\":-9223372036854775808}"),
                     "http://h/9223372036854775807/-9223372036854775808");
}
END_TEST

START_TEST(url_tpl_nul_in_string)
{
    json_t *env = J("{}");
    const char *err, *out;

    json_object_set_new(env, "s", json_stringn("a\0b", 3));
    out = X(&err, "http://h/{s}", BFF_TPL_URL, env);
    ck_assert_ptr_null(err);
    ck_assert_str_eq(out, "http://h/a%00b");
}
END_TEST

START_TEST(url_tpl_arrays)
{
    const char *env = "{\"ids\":[1,\"a b\",true,2.5,\"x/y\"],\"none\":[],"
                      "\"orders\":[{\"product_id\":7},{\"product_id\":3},"
                      "{\"product_id\":7}]}";

    ck_assert_str_eq(XU("http://h/p?ids={ids}", env),
                     "http://h/p?ids=1,a%20b,true,2.5,x%2Fy");
    ck_assert_str_eq(XU("http://h/p?ids={none}", env), "http://h/p?ids=");
    ck_assert_str_eq(XU("http://catalog:8080/products?ids="
                        "{orders[].product_id}", env),
                     "http://catalog:8080/products?ids=7,3");
}
END_TEST

static const struct {
    const char *env, *needle;
} bad_url_values[] = {
    { "{\"v\":{\"a\":1}}", "reference 'v' is an object, which cannot be "
                           "put in a URL" },
    { "{\"v\":null}", "reference 'v' is null" },
    { "{\"v\":[1,[2]]}", "reference 'v': element 1 is an array" },
    { "{\"v\":[{}]}", "reference 'v': element 0 is an object" },
    { "{\"v\":[1,null]}", "reference 'v': element 1 is null" },
    { "{}", "reference 'v' has no value" },
};

START_TEST(url_tpl_bad_values)
{
    const char *err, *out;

    out = X(&err, "http://h/x/{v}", BFF_TPL_URL, J(bad_url_values[_i].env));
    ck_assert_ptr_null(out);
    ASSERT_ERR(err, bad_url_values[_i].needle);
}
END_TEST

START_TEST(url_tpl_missing_path)
{
    const char *err;

    ck_assert_ptr_null(X(&err, "http://h/u/{user.id}", BFF_TPL_URL,
                         J("{\"user\":{\"name\":\"x\"}}")));
    ASSERT_ERR(err, "reference 'user.id' has no value");
}
END_TEST

START_TEST(url_tpl_compile_ok)
{
    bff_tpl_t *t;
    const apr_array_header_t *refs;

    t = TPL("http://users:8080/users/{user_id}/orders?ids={orders[].id}",
            BFF_TPL_URL);
    ck_assert_str_eq(bff_tpl_text(t),
                     "http://users:8080/users/{user_id}/orders?ids="
                     "{orders[].id}");
    refs = bff_tpl_refs(t);
    ck_assert_int_eq(refs->nelts, 2);
    ck_assert_str_eq(bff_ref_text(APR_ARRAY_IDX(refs, 0, bff_ref_t *)),
                     "user_id");
    ck_assert_str_eq(bff_ref_text(APR_ARRAY_IDX(refs, 1, bff_ref_t *)),
                     "orders[].id");

    TPL("HTTPS://Users.example-1.com/x/{a}", BFF_TPL_URL);
    TPL("Http://h/{a}", BFF_TPL_URL);
    TPL("http://h:1", BFF_TPL_URL);             /* no path, no placeholder */
    TPL("http://h", BFF_TPL_URL);
    TPL("http://h?x=1", BFF_TPL_URL);
    TPL("http://[::1]:8080/{a}", BFF_TPL_URL);
    TPL("http://user:pw@h:80/{a}", BFF_TPL_URL);
    TPL("http://my_service/{a}", BFF_TPL_URL);
    TPL("http://h/", BFF_TPL_URL);
    TPL("http://h/{a}{b}", BFF_TPL_URL);
    ck_assert_int_eq(bff_tpl_refs(TPL("http://h/x", BFF_TPL_URL))->nelts, 0);
}
END_TEST

static const struct {
    const char *text, *needle;
} bad_url_tpls[] = {
    { "ftp://h/x", "URL template 'ftp://h/x': must start with http:// or "
                   "https://" },
    { "h/x", "must start with http://" },
    { "//h/x", "must start with http://" },
    { "{scheme}://h/x", "must start with http://" },
    { "http{s}://h/x", "must start with http://" },
    { "http:/h/x", "must start with http://" },
    { "http:///x", "missing or invalid host" },
    { "http://", "missing or invalid host" },
    { "http://user@/x", "missing or invalid host" },
    { "http://:80/x", "missing or invalid host" },
    { "http://{host}/x", "placeholders are only allowed in the path" },
    { "http://{host}", "placeholders are only allowed in the path" },
    { "http://h{x}.com/x", "placeholders are only allowed in the path" },
    { "http://h:{port}/x", "placeholders are only allowed in the path" },
    { "http://{u}@h/x", "placeholders are only allowed in the path" },
    { "http://h?q={x}", "placeholders are only allowed in the path" },
    { "http://h#{x}", "placeholders are only allowed in the path" },
    { "http://h:abc/x", "invalid port 'abc'" },
    { "http://h:/x", "invalid port ''" },
    { "http://h:123456/x", "invalid port '123456'" },
    { "http://h$x/y", "invalid character '$' in host" },
    { "http://[::1/x", "invalid IPv6 host" },
    { "http://h/x y", "space byte 0x20 at offset 10" },
    { "http://h/x\r\nHost: evil", "control byte 0x0D at offset 10" },
    { "http://h/x\t", "control byte 0x09" },
    { "http://h/\x7f", "control byte 0x7F" },
    { "http://h/caf\xc3\xa9", "non-ASCII byte 0xC3" },
    { "http://h/{a b}", "URL template 'http://h/{a b}': reference 'a b': "
                        "invalid character 0x20" },
    { "http://h/{a..b}", "reference 'a..b': empty segment" },
    { "http://h/{a", "unterminated placeholder at offset 9" },
    { "http://h/{a[0]}", "expected '[]'" },
};

START_TEST(url_tpl_compile_bad)
{
    bff_tpl_t *t = (bff_tpl_t *)1;

    ASSERT_ERR(bff_tpl_compile(&t, bad_url_tpls[_i].text, BFF_TPL_URL, pool),
               bad_url_tpls[_i].needle);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(json_tpl_basic)
{
    const char *env = "{\"orders\":[{\"product_id\":1},{\"product_id\":2},"
                      "{\"product_id\":1}],\"user\":{\"id\":5,\"name\":"
                      "\"Ann\",\"tags\":[\"a\"]},\"n\":null,\"r\":2.5}";

    ck_assert_str_eq(XJ("{\"ids\":{orders[].product_id}}", env),
                     "{\"ids\":[1,2]}");
    ck_assert_str_eq(XJ("{\"ids\": {orders[].product_id} }", env),
                     "{\"ids\": [1,2] }");
    /* a whole object, compact, key order kept */
    ck_assert_str_eq(XJ("{\"u\":{user},\"id\":{user.id}}", env),
                     "{\"u\":{\"id\":5,\"name\":\"Ann\",\"tags\":[\"a\"]},"
                     "\"id\":5}");
    /* a template can be just a value */
    ck_assert_str_eq(XJ("{user.name}", env), "\"Ann\"");
    ck_assert_str_eq(XJ("[{user.id},{r},{n}]", env), "[5,2.5,null]");
    /* reals as the gateway's answers print them: 15 significant digits */
    ck_assert_str_eq(XJ("{\"p\":{p}}", "{\"p\":0.1}"), "{\"p\":0.1}");
    /* literal braces not followed by a name are JSON */
    ck_assert_str_eq(XJ("{\"a\":{\"b\":{user.id}},\"c\":{}}", env),
                     "{\"a\":{\"b\":5},\"c\":{}}");
    /* escaped quote in a literal string before a placeholder */
    ck_assert_str_eq(XJ("{\"q\\\"{\":{user.id}}", env),
                     "{\"q\\\"{\":5}");
}
END_TEST

START_TEST(json_tpl_escapes)
{
    json_t *env = J("{}"), *got, *want;
    const char *err, *out;
    const char *nasty = "a\"b\\c\n</script>\x01\xc3\xa9\"}],\"admin\":true";
    json_error_t jerr;

    json_object_set_new(env, "s", json_string(nasty));
    out = X(&err, "{\"name\":{s},\"ok\":1}", BFF_TPL_JSON, env);
    ck_assert_msg(!err, "%s", err);
    got = bff_json_pool_own(json_loads(out, 0, &jerr), pool);
    ck_assert_msg(got != NULL, "output '%s' is not JSON: %s", out, jerr.text);
    want = bff_json_pool_own(json_pack("{s:s,s:i}", "name", nasty, "ok", 1),
                             pool);
    ck_assert(json_equal(got, want));
    ck_assert_int_eq((int)json_object_size(got), 2);
}
END_TEST

START_TEST(json_tpl_invalid_utf8)
{
    json_t *env = J("{}");
    const char *err;

    /* a string that is not UTF-8 cannot be dumped: an error, not a
     * corrupt body */
    json_object_set_new(env, "s", json_stringn_nocheck("\xff", 1));
    ck_assert_ptr_null(X(&err, "{\"a\":{s}}", BFF_TPL_JSON, env));
    ASSERT_ERR(err, "reference 's': value cannot be encoded as JSON");
}
END_TEST

START_TEST(json_tpl_missing)
{
    const char *err;

    ck_assert_ptr_null(X(&err, "{\"a\":{user.id}}", BFF_TPL_JSON,
                         J("{\"user\":{}}")));
    ASSERT_ERR(err, "reference 'user.id' has no value");
    ck_assert_ptr_null(X(&err, "{\"a\":{nouser}}", BFF_TPL_JSON, J("{}")));
    ASSERT_ERR(err, "reference 'nouser' has no value");
}
END_TEST

static const struct {
    const char *text, *needle;
} bad_json_tpls[] = {
    { "{\"ids\":{orders[].product_id}",
      "JSON template '{\"ids\":{orders[].product_id}': not valid JSON" },
    { "{\"a\":{x} {y}}", "column" },
    { "{\"a\":{x},}", "not valid JSON" },
    { "", "not valid JSON" },
    { "{\"a\":1,\"a\":{x}}", "duplicate" },
    { "{\"a\":\"{x}\"}", "placeholder {x} is inside a JSON string" },
    { "{\"a\":\"pre {x} post\"}", "inside a JSON string" },
    { "[\"\\\"{x}\"]", "inside a JSON string" },
    { "{\"a\":{x..y}}", "JSON template '{\"a\":{x..y}}': reference 'x..y': "
                        "empty segment" },
    { "{\"a\":{x", "unterminated placeholder" },
};

START_TEST(json_tpl_compile_bad)
{
    bff_tpl_t *t = (bff_tpl_t *)1;

    ASSERT_ERR(bff_tpl_compile(&t, bad_json_tpls[_i].text, BFF_TPL_JSON,
                               pool), bad_json_tpls[_i].needle);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(json_tpl_column_reported)
{
    bff_tpl_t *t;
    const char *err = bff_tpl_compile(&t, "{\"a\":{x} {y}}", BFF_TPL_JSON,
                                      pool);

    /* jansson's message and position, on "{"a":null null}" */
    ASSERT_ERR(err, "line 1, column ");
    ASSERT_ERR(err, "with each placeholder replaced by null");
}
END_TEST

/* =========================================================== shaping == */

static bff_shape_t *SH(const char *const *allow, const char *const *deny)
{
    bff_shape_t *sh = bff_shape_create(pool);

    for (; allow && *allow; ++allow) {
        ASSERT_OK(bff_shape_add(sh, *allow, 1, pool));
    }
    for (; deny && *deny; ++deny) {
        ASSERT_OK(bff_shape_add(sh, *deny, 0, pool));
    }
    return sh;
}

static void shape_check(const char *const *allow, const char *const *deny,
                        const char *doc, const char *expect)
{
    json_t *d = J(doc);

    bff_shape_apply(SH(allow, deny), d);
    ASSERT_JSON(d, expect);
}

#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })

static const char *user_doc =
    "{\"user\":{\"id\":1,\"name\":\"Ann\",\"email\":\"a@x\","
    "\"password_hash\":\"h\",\"address\":{\"city\":\"Oslo\",\"zip\":\"1\"}},"
    "\"orders\":[{\"id\":1,\"internal_note\":\"n\",\"items\":[{\"sku\":\"a\","
    "\"cost\":1}]},{\"id\":2,\"items\":[]},{\"id\":3,\"internal_note\":null}],"
    "\"meta\":{\"v\":1},\"debug\":true}";

/* deny/allow paths are checked against the backends by their root */
START_TEST(shape_path_root)
{
    ck_assert_str_eq(bff_shape_path_root("user.password_hash", pool), "user");
    ck_assert_str_eq(bff_shape_path_root("orders[].note", pool), "orders");
    ck_assert_str_eq(bff_shape_path_root("secret_note", pool), "secret_note");
    ck_assert_str_eq(bff_shape_path_root("my-svc.x", pool), "my-svc");
}
END_TEST

START_TEST(shape_deny)
{
    /* root-level key */
    shape_check(NULL, L("debug"), "{\"a\":1,\"debug\":true}", "{\"a\":1}");
    /* nested */
    shape_check(NULL, L("user.password_hash"),
                "{\"user\":{\"id\":1,\"password_hash\":\"h\"},\"x\":2}",
                "{\"user\":{\"id\":1},\"x\":2}");
    /* through an array, with and without [] */
    shape_check(NULL, L("orders[].internal_note"), user_doc,
                "{\"user\":{\"id\":1,\"name\":\"Ann\",\"email\":\"a@x\","
                "\"password_hash\":\"h\",\"address\":{\"city\":\"Oslo\","
                "\"zip\":\"1\"}},\"orders\":[{\"id\":1,\"items\":[{\"sku\":"
                "\"a\",\"cost\":1}]},{\"id\":2,\"items\":[]},{\"id\":3}],"
                "\"meta\":{\"v\":1},\"debug\":true}");
    shape_check(NULL, L("orders.items.cost", "user.password_hash",
                        "user.address", "debug"), user_doc,
                "{\"user\":{\"id\":1,\"name\":\"Ann\",\"email\":\"a@x\"},"
                "\"orders\":[{\"id\":1,\"internal_note\":\"n\",\"items\":"
                "[{\"sku\":\"a\"}]},{\"id\":2,\"items\":[]},{\"id\":3,"
                "\"internal_note\":null}],\"meta\":{\"v\":1}}");
    /* arrays of arrays, and a root array */
    shape_check(NULL, L("a.x"), "{\"a\":[[{\"x\":1,\"y\":2}],[3]]}",
                "{\"a\":[[{\"y\":2}],[3]]}");
    shape_check(NULL, L("secret"), "[{\"secret\":1,\"a\":2},{\"b\":3},4]",
                "[{\"a\":2},{\"b\":3},4]");
    /* nonexistent paths are ignored */
    shape_check(NULL, L("nope", "user.nope.deeper", "debug.x", "meta.v.w"),
                user_doc, user_doc);
}
END_TEST

START_TEST(shape_allow)
{
    /* whole subtree */
    shape_check(L("user"), NULL, user_doc,
                "{\"user\":{\"id\":1,\"name\":\"Ann\",\"email\":\"a@x\","
                "\"password_hash\":\"h\",\"address\":{\"city\":\"Oslo\","
                "\"zip\":\"1\"}}}");
    /* subset of an object */
    shape_check(L("user.name", "user.address.city"), NULL, user_doc,
                "{\"user\":{\"name\":\"Ann\",\"address\":{\"city\":"
                "\"Oslo\"}}}");
    /* arrays keep every element, each pruned */
    shape_check(L("orders[].id", "meta"), NULL, user_doc,
                "{\"orders\":[{\"id\":1},{\"id\":2},{\"id\":3}],"
                "\"meta\":{\"v\":1}}");
    shape_check(L("orders.items.sku"), NULL, user_doc,
                "{\"orders\":[{\"items\":[{\"sku\":\"a\"}]},{\"items\":[]},"
                "{}]}");
    /* root array document */
    shape_check(L("a"), NULL, "[{\"a\":1,\"b\":2},{\"b\":3},5]",
                "[{\"a\":1},{},5]");
    /* a broader allow wins over a narrower one, in either order */
    shape_check(L("user", "user.name"), NULL,
                "{\"user\":{\"name\":1,\"x\":2},\"y\":3}",
                "{\"user\":{\"name\":1,\"x\":2}}");
    shape_check(L("user.name", "user"), NULL,
                "{\"user\":{\"name\":1,\"x\":2},\"y\":3}",
                "{\"user\":{\"name\":1,\"x\":2}}");
    /* nonexistent allowed paths simply keep nothing */
    shape_check(L("nope"), NULL, user_doc, "{}");
    shape_check(L("user.nope"), NULL, user_doc, "{\"user\":{}}");
    /* a scalar where an object was expected is kept as it is */
    shape_check(L("user.name"), NULL, "{\"user\":\"bob\",\"x\":1}",
                "{\"user\":\"bob\"}");
}
END_TEST

START_TEST(shape_allow_deny)
{
    /* deny is applied after allow */
    shape_check(L("user"), L("user.password_hash", "user.address.zip"),
                user_doc,
                "{\"user\":{\"id\":1,\"name\":\"Ann\",\"email\":\"a@x\","
                "\"address\":{\"city\":\"Oslo\"}}}");
    shape_check(L("user.name"), L("user"), user_doc, "{}");
    shape_check(L("orders"), L("orders.internal_note", "orders.items"),
                user_doc,
                "{\"orders\":[{\"id\":1},{\"id\":2},{\"id\":3}]}");
    /* a deny outside the allowed set changes nothing more */
    shape_check(L("meta"), L("user.password_hash"), user_doc,
                "{\"meta\":{\"v\":1}}");
    /* allow a.b + deny a.c: c was not allowed anyway */
    shape_check(L("a.b"), L("a.c"), "{\"a\":{\"b\":1,\"c\":2,\"d\":3}}",
                "{\"a\":{\"b\":1}}");
    /* deny below an allowed prefix that is also partially allowed */
    shape_check(L("a.b", "a.c"), L("a.b.x"),
                "{\"a\":{\"b\":{\"x\":1,\"y\":2},\"c\":3,\"d\":4},\"e\":5}",
                "{\"a\":{\"b\":{\"y\":2},\"c\":3}}");
}
END_TEST

START_TEST(shape_empty_and_odd_docs)
{
    bff_shape_t *sh = bff_shape_create(pool);
    json_t *d = J("{\"a\":1}"), *s = J("\"str\"");

    ck_assert(bff_shape_empty(sh));
    bff_shape_apply(sh, d);
    ASSERT_JSON(d, "{\"a\":1}");
    ASSERT_OK(bff_shape_add(sh, "a", 0, pool));
    ck_assert(!bff_shape_empty(sh));
    bff_shape_apply(sh, NULL);
    bff_shape_apply(sh, s);
    ASSERT_JSON(s, "\"str\"");
    bff_shape_apply(sh, d);
    ASSERT_JSON(d, "{}");
}
END_TEST

static const struct {
    const char *path, *needle;
} bad_shapes[] = {
    { "", "deny path is empty" },
    { ".", "deny path '.': empty segment at offset 0" },
    { "a.", "deny path 'a.': empty segment at offset 2" },
    { ".a", "empty segment at offset 0" },
    { "a..b", "empty segment at offset 2" },
    { "[]", "deny path '[]': empty segment at offset 0" },
    { "[].a", "empty segment at offset 0" },
    { "a[", "expected '[]' at offset 1" },
    { "a[0]", "expected '[]' at offset 1" },
    { "a b", "invalid character at offset 1" },
    { "a.$", "invalid character at offset 2" },
    { "a[]b", "expected '.' or the end" },
};

START_TEST(shape_bad_paths)
{
    bff_shape_t *sh = bff_shape_create(pool);

    ASSERT_ERR(bff_shape_add(sh, bad_shapes[_i].path, 0, pool),
               bad_shapes[_i].needle);
    /* a rejected path leaves the shape untouched */
    ck_assert(bff_shape_empty(sh));
    ASSERT_ERR(bff_shape_add(sh, bad_shapes[_i].path, 1, pool), "allow path");
    ck_assert(bff_shape_empty(sh));
}
END_TEST

/* ============================================================ parsing == */

static const struct {
    const char *text;
    long ms;
} good_durations[] = {
    { "250ms", 250 }, { "2s", 2000 }, { "1.5s", 1500 }, { "1m", 60000 },
    { "3", 3000 }, { "0", 0 }, { "0ms", 0 }, { "0s", 0 }, { "0.25", 250 },
    { "1h", 3600000 }, { "0.5m", 30000 }, { "1.5ms", 1 }, { "007s", 7000 },
    { "10.123456789123s", 10123 }, { "0.001s", 1 }, { "0.0001s", 0 },
    { "9223372036854775807ms", LONG_MAX },
};

START_TEST(duration_good)
{
    long ms = -1;

    ASSERT_OK(bff_parse_duration_ms(&ms, good_durations[_i].text, pool));
    ck_assert_int_eq(ms, good_durations[_i].ms);
}
END_TEST

static const struct {
    const char *text, *needle;
} bad_durations[] = {
    { "", "empty duration" },
    { "-1", "duration '-1' must not be negative" },
    { "-1s", "must not be negative" },
    { "1x", "invalid duration '1x': unknown unit 'x'" },
    { "1ss", "unknown unit 'ss'" },
    { "1 s", "unknown unit ' s'" },
    { " 1s", "invalid duration ' 1s'" },
    { "1s ", "unknown unit 's '" },
    { "s", "invalid duration 's'" },
    { "ms", "invalid duration 'ms'" },
    { ".5s", "invalid duration '.5s'" },
    { "1.s", "no digits after '.'" },
    { "1.5.2s", "unknown unit '.2s'" },
    { "1e3", "unknown unit 'e3'" },
    { "1S", "unknown unit 'S'" },
    { "+1s", "invalid duration '+1s'" },
    { "9223372036854775808ms", "duration '9223372036854775808ms' is too "
                               "large" },
    { "9223372036854775807s", "is too large" },
    { "99999999999999999999999", "is too large" },
    { "153722867280912931m", "is too large" },
};

START_TEST(duration_bad)
{
    long ms = 12345;

    ASSERT_ERR(bff_parse_duration_ms(&ms, bad_durations[_i].text, pool),
               bad_durations[_i].needle);
    ck_assert_int_eq(ms, 12345);
}
END_TEST

static const struct {
    const char *text;
    apr_uint64_t v;
} good_sizes[] = {
    { "0", 0 }, { "1048576", 1048576 }, { "512k", 524288 },
    { "512K", 524288 }, { "1M", 1048576 }, { "1m", 1048576 },
    { "2G", APR_UINT64_C(2147483648) }, { "1g", APR_UINT64_C(1073741824) },
    { "17179869183G", APR_UINT64_C(18446744072635809792) },
    { "18446744073709551615", APR_UINT64_C(18446744073709551615) },
};

START_TEST(size_good)
{
    apr_size_t v = 1;

    ASSERT_OK(bff_parse_size(&v, good_sizes[_i].text, pool));
    ck_assert_uint_eq(v, good_sizes[_i].v);
}
END_TEST

static const struct {
    const char *text, *needle;
} bad_sizes[] = {
    { "", "empty size" },
    { "k", "invalid size 'k'" },
    { "-1", "invalid size '-1'" },
    { "1kb", "invalid size '1kb': unknown unit 'kb'" },
    { "1T", "unknown unit 'T'" },
    { "1.5M", "unknown unit '.5M'" },
    { " 1", "invalid size ' 1'" },
    { "1 ", "unknown unit ' '" },
    { "18446744073709551616", "size '18446744073709551616' is too large" },
    { "17179869184G", "is too large" },
    { "99999999999999999999999k", "is too large" },
};

START_TEST(size_bad)
{
    apr_size_t v = 777;

    ASSERT_ERR(bff_parse_size(&v, bad_sizes[_i].text, pool),
               bad_sizes[_i].needle);
    ck_assert_uint_eq(v, 777);
}
END_TEST

/* ------------------------------------------------------------ options -- */

typedef struct {
    int n, on, flag;
    long ms;
    apr_int64_t big;
    apr_size_t size;
    const char *s, *fn;
} opt_rec_t;

static const char *opt_fn(void *target, const char *v, apr_pool_t *p)
{
    opt_rec_t *r = target;

    if (strcmp(v, "a") && strcmp(v, "b")) {
        return "expected a or b";
    }
    r->fn = apr_pstrdup(p, v);
    return NULL;
}

static const bff_opt_t opt_table[] = {
    BFF_OPT_NUM("n", BFF_OPT_INT, opt_rec_t, n, 1, 100),
    BFF_OPT_NUM("big", BFF_OPT_INT64, opt_rec_t, big, 1, BFF_OPT_MAX),
    BFF_OPT_NUM("ms", BFF_OPT_MS, opt_rec_t, ms, 1, 60000),
    BFF_OPT_NUM("wait", BFF_OPT_MS, opt_rec_t, ms, 1, BFF_OPT_MAX),
    BFF_OPT_NUM("size", BFF_OPT_SIZE, opt_rec_t, size, 1, 1048576),
    BFF_OPT_VAL("on", BFF_OPT_ONOFF, opt_rec_t, on),
    BFF_OPT_VAL("s", BFF_OPT_STR, opt_rec_t, s),
    BFF_OPT_SET("flag", opt_rec_t, flag, 7),
    BFF_OPT_CALL("fn", opt_fn),
    BFF_OPT_END
};

START_TEST(options_table)
{
    opt_rec_t r;

    memset(&r, 0, sizeof(r));
    ASSERT_OK(bff_opt_parse(opt_table, &r, "n=42", pool));
    ck_assert_int_eq(r.n, 42);
    ASSERT_OK(bff_opt_parse(opt_table, &r, "big=9000000000", pool));
    ck_assert(r.big == APR_INT64_C(9000000000));
    ASSERT_OK(bff_opt_parse(opt_table, &r, "ms=1.5s", pool));
    ck_assert_int_eq(r.ms, 1500);
    ASSERT_OK(bff_opt_parse(opt_table, &r, "size=64k", pool));
    ck_assert_uint_eq(r.size, 65536);
    ASSERT_OK(bff_opt_parse(opt_table, &r, "on=On", pool));
    ck_assert_int_eq(r.on, 1);
    ASSERT_OK(bff_opt_parse(opt_table, &r, "on=off", pool));
    ck_assert_int_eq(r.on, 0);
    ASSERT_OK(bff_opt_parse(opt_table, &r, "s=x=y", pool));
    ck_assert_str_eq(r.s, "x=y");
    ASSERT_OK(bff_opt_parse(opt_table, &r, "flag", pool));
    ck_assert_int_eq(r.flag, 7);
    ASSERT_OK(bff_opt_parse(opt_table, &r, "fn=b", pool));
    ck_assert_str_eq(r.fn, "b");

    /* bounds, in the admin's units */
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "n=0", pool),
               "n=0: expected a number from 1 to 100");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "n=101", pool),
               "n=101: expected a number from 1 to 100");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "n=4x", pool),
               "n=4x: expected a number from 1 to 100");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "n= 4", pool),
               "expected a number from 1 to 100");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "n=99999999999999999999", pool),
               "expected a number from 1 to 100");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "big=0", pool),
               "big=0: expected a number of at least 1");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "ms=2m", pool),
               "ms=2m: expected a duration from 1ms to 1m");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "ms=soon", pool),
               "ms=soon: invalid duration 'soon'");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "wait=0", pool),
               "wait=0: must be greater than 0");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "size=2M", pool),
               "size=2M: expected a size from 1 to 1048576");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "on=yes", pool),
               "on=yes: expected on or off");
    ck_assert_int_eq(r.n, 42);
    ck_assert_int_eq(r.ms, 1500);

    /* shape of the word */
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "n", pool),
               "n: expected n=VALUE");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "n=", pool), "n=: missing value");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "flag=1", pool),
               "flag takes no value");
    /* the unknown option's value is not repeated: it may be a secret */
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "colour=s3cret", pool),
               "unknown option 'colour=' (expected n=, big=, ms=, wait=, "
               "size=, on=, s=, flag or fn=)");
    ck_assert_ptr_null(strstr(bff_opt_parse(opt_table, &r, "colour=s3cret",
                                            pool), "s3cret"));
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "colour", pool),
               "unknown option 'colour'");
    /* nor the value a parser of its own refuses */
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "fn=s3cret", pool),
               "fn=: expected a or b");
    ck_assert_ptr_null(strstr(bff_opt_parse(opt_table, &r, "fn=s3cret",
                                            pool), "s3cret"));
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "nn=1", pool), "unknown option 'nn='");
    ASSERT_ERR(bff_opt_parse(opt_table, &r, "=1", pool), "unknown option '='");
}
END_TEST

/* ============================================================== main == */

#define NELTS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static TCase *tc(const char *name)
{
    TCase *t = tcase_create(name);

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 30);
    return t;
}

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *t = tc("json");

    tcase_add_test(t, json_depth_basic);
    tcase_add_test(t, json_depth_strings);
    tcase_add_test(t, json_depth_len_and_junk);
    tcase_add_test(t, json_load_values);
    tcase_add_test(t, json_dump_reals);
    tcase_add_test(t, json_dump_values);
    tcase_add_test(t, json_pool_own);
    suite_add_tcase(s, t);
    return s;
}

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *t = tc("match"), *b = tc("compile");

    tcase_add_test(t, route_literal);
    tcase_add_test(t, route_root_and_trailing_slash);
    tcase_add_test(t, route_segment_param);
    tcase_add_test(t, route_int);
    tcase_add_test(t, route_uuid);
    tcase_add_test(t, route_regex);
    tcase_add_test(t, route_multi_params);
    tcase_add_test(t, route_nomatch_leaves_outputs);
    suite_add_tcase(s, t);
    tcase_add_loop_test(b, route_bad_patterns, 0, NELTS(bad_routes));
    tcase_add_test(b, route_regex_cleanup);
    suite_add_tcase(s, b);
    return s;
}

static Suite *ref_suite(void)
{
    Suite *s = suite_create("ref");
    TCase *t = tc("parse"), *e = tc("eval");

    tcase_add_test(t, ref_parse_ok);
    tcase_add_loop_test(t, ref_parse_bad, 0, NELTS(bad_refs));
    suite_add_tcase(s, t);
    tcase_add_test(e, ref_eval_single);
    tcase_add_test(e, ref_eval_multi_dedupe_order);
    tcase_add_test(e, ref_eval_multi_objects);
    tcase_add_test(e, ref_eval_multi_nested);
    tcase_add_test(e, ref_eval_multi_empty);
    tcase_add_test(e, ref_eval_multi_equal_values);
    suite_add_tcase(s, e);
    /* own case for its own timeout (fork mode; CK_TIMEOUT_MULTIPLIER
     * scales it on slow machines) */
    e = tc("eval-large");
    tcase_set_timeout(e, 10);
    tcase_add_test(e, ref_eval_multi_large);
    tcase_add_test(e, ref_eval_multi_composites_large);
    tcase_add_test(e, ref_eval_strings_with_nul);
    suite_add_tcase(s, e);
    return s;
}

static Suite *tpl_suite(void)
{
    Suite *s = suite_create("tpl");
    TCase *u = tc("url"), *j = tc("json");

    tcase_add_test(u, url_encode_basic);
    tcase_add_loop_test(u, url_tpl_ssrf, 0, NELTS(ssrf_values));
    tcase_add_test(u, url_tpl_scalars);
    tcase_add_test(u, url_tpl_nul_in_string);
    tcase_add_test(u, url_tpl_arrays);
    tcase_add_loop_test(u, url_tpl_bad_values, 0, NELTS(bad_url_values));
    tcase_add_test(u, url_tpl_missing_path);
    tcase_add_test(u, url_tpl_compile_ok);
    tcase_add_loop_test(u, url_tpl_compile_bad, 0, NELTS(bad_url_tpls));
    suite_add_tcase(s, u);
    tcase_add_test(j, json_tpl_basic);
    tcase_add_test(j, json_tpl_escapes);
    tcase_add_test(j, json_tpl_missing);
    tcase_add_test(j, json_tpl_invalid_utf8);
    tcase_add_loop_test(j, json_tpl_compile_bad, 0, NELTS(bad_json_tpls));
    tcase_add_test(j, json_tpl_column_reported);
    suite_add_tcase(s, j);
    return s;
}

static Suite *shape_suite(void)
{
    Suite *s = suite_create("shape");
    TCase *t = tc("shape");

    tcase_add_test(t, shape_path_root);
    tcase_add_test(t, shape_deny);
    tcase_add_test(t, shape_allow);
    tcase_add_test(t, shape_allow_deny);
    tcase_add_test(t, shape_empty_and_odd_docs);
    tcase_add_loop_test(t, shape_bad_paths, 0, NELTS(bad_shapes));
    suite_add_tcase(s, t);
    return s;
}

static Suite *parse_suite(void)
{
    Suite *s = suite_create("parse");
    TCase *t = tc("parse");

    tcase_add_loop_test(t, duration_good, 0, NELTS(good_durations));
    tcase_add_loop_test(t, duration_bad, 0, NELTS(bad_durations));
    tcase_add_loop_test(t, size_good, 0, NELTS(good_sizes));
    tcase_add_loop_test(t, size_bad, 0, NELTS(bad_sizes));
    tcase_add_test(t, options_table);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(json_suite());
    srunner_add_suite(sr, route_suite());
    srunner_add_suite(sr, ref_suite());
    srunner_add_suite(sr, tpl_suite());
    srunner_add_suite(sr, shape_suite());
    srunner_add_suite(sr, parse_suite());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
