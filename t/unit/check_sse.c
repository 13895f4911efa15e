/*
 * Unit tests for server-sent events (lib/bff_sse.c): stream ids as
 * Last-Event-ID, the stream key of an identity, and the framing of one
 * stream entry.
 */
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include <check.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_sse.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

START_TEST(id_valid)
{
    apr_uint64_t ms = 1, seq = 1;

    ck_assert(bff_sse_id_parse(&ms, &seq, "0-0"));
    ck_assert(ms == 0 && seq == 0);
    ck_assert(bff_sse_id_parse(&ms, &seq, "1700000000000-42"));
    ck_assert(ms == 1700000000000ULL && seq == 42);
    ck_assert(bff_sse_id_parse(&ms, &seq,
                               "18446744073709551615-18446744073709551615"));
    ck_assert(ms == APR_UINT64_MAX && seq == APR_UINT64_MAX);
}
END_TEST

START_TEST(id_invalid)
{
    static const char *const bad[] = {
        "", "-", "1", "1-", "-1", "1-2-3", "01-1", "1-01", "+1-1", "1-+1",
        " 1-1", "1-1 ", "1 -1", "a-1", "1-a", "1-1\n", "$", ">", "*", "0x1-1",
        "18446744073709551616-0", "0-18446744073709551616",
        "100000000000000000000-0", "1.5-1", "-1-1", "1--1", "1-1;"
    };
    apr_uint64_t ms, seq;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(!bff_sse_id_parse(&ms, &seq, bad[i]), "accepted '%s'",
                      bad[i]);
    }
    ck_assert(!bff_sse_id_parse(&ms, &seq, NULL));
}
END_TEST

START_TEST(id_order)
{
    ck_assert_int_lt(bff_sse_id_cmp("1-5", "2-0"), 0);
    ck_assert_int_lt(bff_sse_id_cmp("2-5", "2-10"), 0);
    ck_assert_int_eq(bff_sse_id_cmp("7-7", "7-7"), 0);
    ck_assert_int_gt(bff_sse_id_cmp("10-0", "9-99"), 0);
}
END_TEST

START_TEST(identity_keys)
{
    const char *a = bff_sse_identity_key("bff:", "https://issuer.test",
                                         "alice", pool);
    const char *b = bff_sse_identity_key("bff:", "https://issuer.test",
                                         "bob", pool);

    /* sha256("https://issuer.test\0alice") */
    ck_assert_str_eq(a, "bff:notifications:"
        "7048c9cc253d39603b81125f2bfbce676e650f33458fc17a7c0178f18e3b2c2e");
    ck_assert_str_ne(a, b);
    /* the separator: ("ab", "c") and ("a", "bc") are two identities */
    ck_assert_str_ne(bff_sse_identity_key("p:", "ab", "c", pool),
                     bff_sse_identity_key("p:", "a", "bc", pool));
    ck_assert_str_ne(bff_sse_identity_key("p:", "", "alice", pool),
                     bff_sse_identity_key("p:", "x", "alice", pool));
    ck_assert_str_eq(bff_sse_topic_key("bff:", "news", pool),
                     "bff:topic:news");
    ck_assert(bff_sse_topic_valid("news.eu:1_a-b"));
    ck_assert(!bff_sse_topic_valid(""));
    ck_assert(!bff_sse_topic_valid("a b"));
    ck_assert(!bff_sse_topic_valid("a\nb"));
    ck_assert(!bff_sse_topic_valid("a/b"));
}
END_TEST

static const char *frame(const char **why, const char *id, int n, ...)
{
    bff_sse_field_t f[8];
    apr_size_t len;
    const char *out;
    va_list ap;
    int i;

    va_start(ap, n);
    for (i = 0; i < n; i++) {
        f[i].name = va_arg(ap, const char *);
        f[i].nlen = strlen(f[i].name);
        f[i].value = va_arg(ap, const char *);
        f[i].vlen = strlen(f[i].value);
    }
    va_end(ap);
    out = bff_sse_frame(&len, why, id, f, n, pool);
    ck_assert_uint_eq(len, strlen(out));
    return out;
}

START_TEST(frame_fields)
{
    const char *why;

    ck_assert_str_eq(frame(&why, "5-1", 2, "event", "order", "data", "{\"a\":1}"),
                     "id: 5-1\nevent: order\ndata: {\"a\":1}\n\n");
    ck_assert_ptr_null(why);
    /* without event: a "message" event; other fields are not sent */
    ck_assert_str_eq(frame(&why, "5-2", 3, "x", "y", "data", "hi", "id", "9-9"),
                     "id: 5-2\ndata: hi\n\n");
    ck_assert_ptr_null(why);
    /* every line break of data starts a data: line */
    ck_assert_str_eq(frame(&why, "1-0", 1, "data", "a\nb\r\nc\rd"),
                     "id: 1-0\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    ck_assert_str_eq(frame(&why, "1-0", 1, "data", "a\n"),
                     "id: 1-0\ndata: a\ndata: \n\n");
    ck_assert_str_eq(frame(&why, "1-0", 1, "data", ""),
                     "id: 1-0\ndata: \n\n");
    /* an injected blank line or field stays inside data: lines */
    ck_assert_str_eq(frame(&why, "1-0", 1, "data", "x\n\nid: 99-9\nevent: evil"),
                     "id: 1-0\ndata: x\ndata: \ndata: id: 99-9\n"
                     "data: event: evil\n\n");
}
END_TEST

START_TEST(frame_id_only)
{
    const char *why;

    ck_assert_str_eq(frame(&why, "3-0", 1, "event", "ping"), "id: 3-0\n\n");
    ck_assert_str_eq(why, "no data field");
    ck_assert_str_eq(frame(&why, "3-1", 2, "event", "a\nid: 1-1", "data", "x"),
                     "id: 3-1\n\n");
    ck_assert_str_eq(why, "event name with CR, LF or NUL");
    ck_assert_str_eq(frame(&why, "3-2", 2, "event", "a\rb", "data", "x"),
                     "id: 3-2\n\n");
    ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(frame_binary)
{
    bff_sse_field_t f[1] = { { "data", 4, "a\0b\n", 4 } };
    apr_size_t len;
    const char *why;
    const char *out = bff_sse_frame(&len, &why, "1-1", f, 1, pool);

    ck_assert_uint_eq(len, sizeof("id: 1-1\ndata: a\0b\ndata: \n\n") - 1);
    ck_assert(!memcmp(out, "id: 1-1\ndata: a\0b\ndata: \n\n", len));
}
END_TEST

static Suite *sse_suite(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("ids");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, id_valid);
    tcase_add_test(tc, id_invalid);
    tcase_add_test(tc, id_order);
    tcase_add_test(tc, identity_keys);
    suite_add_tcase(s, tc);
    tc = tcase_create("frame");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, frame_fields);
    tcase_add_test(tc, frame_id_only);
    tcase_add_test(tc, frame_binary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(sse_suite());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
