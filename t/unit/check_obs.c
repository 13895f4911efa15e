/*
 * Unit tests for the observability core (lib/bff_obs.c): JSON quoting of
 * log values, analytics events, the bounded queue; and the request id and
 * trace context helpers it relies on (lib/bff_http.c). Every JSON string
 * produced here is checked by jansson's strict parser too.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <jansson.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#include "bff_obs.h"
#include "bff_http.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* q must be one JSON string token decoding to want (wlen bytes). */
static void assert_json_string(const char *q, const char *want,
                               size_t wlen)
{
    json_error_t err;
    json_t *v = json_loads(q, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

    ck_assert_msg(v != NULL, "not JSON: %s (%s)", q, err.text);
    ck_assert(json_is_string(v));
    ck_assert_uint_eq(json_string_length(v), wlen);
    ck_assert(!memcmp(json_string_value(v), want, wlen));
    json_decref(v);
}

START_TEST(quote_plain_and_specials)
{
    ck_assert_str_eq(bff_json_quote_str("abc", pool), "\"abc\"");
    ck_assert_str_eq(bff_json_quote_str("", pool), "\"\"");
    ck_assert_str_eq(bff_json_quote_str(NULL, pool), "null");
    ck_assert_str_eq(bff_json_quote_str("a\"b\\c", pool), "\"a\\\"b\\\\c\"");
    ck_assert_str_eq(bff_json_quote_str("l1\nl2\r\t\b\f", pool),
                     "\"l1\\nl2\\r\\t\\b\\f\"");
    ck_assert_str_eq(bff_json_quote_str("\x01\x1f\x7f", pool),
                     "\"\\u0001\\u001f\\u007f\"");
    /* mod_log_config's \xHH escaping is not JSON: never produced */
    ck_assert_ptr_null(strstr(bff_json_quote_str("\x1b[31m", pool), "\\x"));
    assert_json_string(bff_json_quote_str("\x1b[31m", pool), "\x1b[31m", 5);
    /* an injection attempt stays inside the string */
    assert_json_string(bff_json_quote_str("x\",\"status\":200,\"y\":\"", pool),
                       "x\",\"status\":200,\"y\":\"", 21);
}
END_TEST

START_TEST(quote_nul_and_binary)
{
    const char b[] = { 'a', '\0', 'b' };
    const char *q = bff_json_quote(b, 3, pool);

    ck_assert_str_eq(q, "\"a\\u0000b\"");
    assert_json_string(q, b, 3);
}
END_TEST

START_TEST(quote_utf8)
{
    /* valid: 2, 3 and 4 byte sequences pass unchanged */
    const char *ok = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";

    ck_assert_str_eq(bff_json_quote_str(ok, pool),
                     apr_pstrcat(pool, "\"", ok, "\"", NULL));
    assert_json_string(bff_json_quote_str(ok, pool), ok, strlen(ok));
}
END_TEST

START_TEST(quote_invalid_utf8)
{
    static const struct { const char *in, *out; } cases[] = {
        { "\xff", "\"\\ufffd\"" },                       /* never valid */
        { "\xc3", "\"\\ufffd\"" },                       /* truncated */
        { "a\xc3(", "\"a\\ufffd(\"" },                   /* bad continuation */
        { "\xc0\xaf", "\"\\ufffd\\ufffd\"" },            /* overlong '/' */
        { "\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"" }, /* overlong */
        { "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" }, /* surrogate */
        { "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* >10FFFF */
        { "\x80x", "\"\\ufffdx\"" },                     /* lone continuation */
        { "\xe2\x82", "\"\\ufffd\\ufffd\"" },            /* truncated 3-byte */
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *q = bff_json_quote_str(cases[i].in, pool);
        json_t *v = json_loads(q, JSON_DECODE_ANY, NULL);
        ck_assert_msg(!strcmp(q, cases[i].out), "case %zu: %s", i, q);
        ck_assert_msg(v && json_is_string(v), "case %zu not JSON", i);
        json_decref(v);
    }
}
END_TEST

/* every byte value at every position: always one valid JSON string */
START_TEST(quote_all_bytes)
{
    char buf[4];
    int a, b;

    for (a = 0; a < 256; a++) {
        for (b = 0; b < 256; b += 7) {
            const char *q;
            json_t *v;
            buf[0] = (char)a;
            buf[1] = (char)b;
            buf[2] = '"';
            q = bff_json_quote(buf, 3, pool);
            v = json_loads(q, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            ck_assert_msg(v && json_is_string(v), "%02x %02x: %s", a, b, q);
            ck_assert(!strchr(q, '\n') && !strchr(q, '\r'));
            json_decref(v);
        }
    }
}
END_TEST

START_TEST(event_pack)
{
    const char *kv[] = { "type", "request", "skip", NULL, "path", "/a b",
                         "empty", "" };
    bff_event_t *e = bff_event_new(kv, 4);

    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->n, 3);                /* the NULL value is left out */
    ck_assert_str_eq(e->kv[0], "type");
    ck_assert_str_eq(e->kv[1], "request");
    ck_assert_uint_eq(e->len[1], 7);
    ck_assert_str_eq(bff_event_get(e, "path"), "/a b");
    ck_assert_str_eq(bff_event_get(e, "empty"), "");
    ck_assert_uint_eq(e->len[5], 0);
    ck_assert_ptr_null(bff_event_get(e, "skip"));
    ck_assert_ptr_null(bff_event_get(e, "nope"));
    /* a copy: the caller's strings may go away */
    ck_assert_ptr_ne(e->kv[1], kv[1]);
    bff_event_free(e);
    ck_assert_ptr_null(bff_event_new(kv, 65));
    e = bff_event_new(kv, 0);
    ck_assert_int_eq(e->n, 0);
    bff_event_free(e);
}
END_TEST

START_TEST(queue_bounded)
{
    bff_queue_t *q;
    bff_queue_stats_t st;
    void *items[8];
    int v[5] = { 1, 2, 3, 4, 5 }, i;

    ck_assert_int_eq(bff_queue_create(&q, 0, pool), APR_EINVAL);
    ck_assert_int_eq(bff_queue_create(&q, 3, pool), APR_SUCCESS);
    for (i = 0; i < 5; i++) {
        ck_assert_int_eq(bff_queue_push(q, &v[i]), i < 3);
    }
    bff_queue_stats(q, &st);
    ck_assert_uint_eq(st.pushed, 3);
    ck_assert_uint_eq(st.dropped, 2);
    ck_assert_uint_eq(st.len, 3);
    ck_assert_uint_eq(st.cap, 3);
    /* FIFO, at most max at a time */
    ck_assert_int_eq(bff_queue_pop(q, items, 2, 0), 2);
    ck_assert_ptr_eq(items[0], &v[0]);
    ck_assert_ptr_eq(items[1], &v[1]);
    /* wraps around */
    ck_assert_int_eq(bff_queue_push(q, &v[3]), 1);
    ck_assert_int_eq(bff_queue_push(q, &v[4]), 1);
    ck_assert_int_eq(bff_queue_pop(q, items, 8, 0), 3);
    ck_assert_ptr_eq(items[0], &v[2]);
    ck_assert_ptr_eq(items[2], &v[4]);
    /* empty: waits about as long as asked, then 0 */
    {
        apr_time_t t0 = apr_time_now();
        ck_assert_int_eq(bff_queue_pop(q, items, 8, apr_time_from_msec(100)), 0);
        ck_assert_int_ge(apr_time_now() - t0, apr_time_from_msec(90));
    }
    /* closed: the rest is still delivered, then -1; pushes refused */
    ck_assert_int_eq(bff_queue_push(q, &v[0]), 1);
    bff_queue_close(q);
    ck_assert_int_eq(bff_queue_push(q, &v[1]), 0);
    ck_assert_int_eq(bff_queue_pop(q, items, 8, apr_time_from_sec(5)), 1);
    ck_assert_int_eq(bff_queue_pop(q, items, 8, apr_time_from_sec(5)), -1);
    bff_queue_stats(q, &st);
    ck_assert_uint_eq(st.dropped, 3);
}
END_TEST

typedef struct {
    bff_queue_t *q;
    int got;
    apr_time_t woke;
} consumer_t;

static void *APR_THREAD_FUNC consume(apr_thread_t *t, void *data)
{
    consumer_t *c = data;
    void *items[16];
    int n;

    while ((n = bff_queue_pop(c->q, items, 16, apr_time_from_sec(10))) >= 0) {
        c->got += n;
    }
    c->woke = apr_time_now();
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

typedef struct {
    bff_queue_t *q;
    int ok;
} producer_t;

static void *APR_THREAD_FUNC produce(apr_thread_t *t, void *data)
{
    producer_t *p = data;
    static int token;
    int i;

    for (i = 0; i < 20000; i++) {
        p->ok += bff_queue_push(p->q, &token);
    }
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* many producers, one consumer: nothing lost or duplicated, every push
 * either delivered or counted as dropped; close wakes a waiting consumer
 * at once (not after its 10 s wait) */
START_TEST(queue_threads)
{
    bff_queue_t *q;
    bff_queue_stats_t st;
    consumer_t c = { 0 };
    producer_t p[4];
    apr_thread_t *ct, *pt[4];
    apr_status_t rv;
    apr_time_t t0;
    int i, ok = 0;

    ck_assert_int_eq(bff_queue_create(&q, 64, pool), APR_SUCCESS);
    c.q = q;
    apr_thread_create(&ct, NULL, consume, &c, pool);
    for (i = 0; i < 4; i++) {
        p[i].q = q;
        p[i].ok = 0;
        apr_thread_create(&pt[i], NULL, produce, &p[i], pool);
    }
    for (i = 0; i < 4; i++) {
        apr_thread_join(&rv, pt[i]);
        ok += p[i].ok;
    }
    apr_sleep(apr_time_from_msec(200));
    t0 = apr_time_now();
    bff_queue_close(q);
    apr_thread_join(&rv, ct);
    ck_assert_int_lt(c.woke - t0, apr_time_from_sec(2));
    bff_queue_stats(q, &st);
    ck_assert_int_eq(c.got, ok);
    ck_assert_uint_eq(st.pushed, (apr_uint64_t)ok);
    ck_assert_uint_eq(st.pushed + st.dropped, 80000);
}
END_TEST

/* header names a backend folds together, Connection options naming them */
START_TEST(header_name_folding)
{
    apr_array_header_t *names = apr_array_make(pool, 2, sizeof(const char *));

    ck_assert(bff_header_name_same("X-User-ID", "x_user_id"));
    ck_assert(bff_header_name_same("X-User-ID", "X-USER-ID"));
    ck_assert(bff_header_name_same("x_user_id", "X-User_Id"));
    ck_assert(!bff_header_name_same("X-User-ID", "X-User-IDs"));
    ck_assert(!bff_header_name_same("X-User-ID", "X-UserID"));
    ck_assert(!bff_header_name_same("X-User-ID", ""));

    APR_ARRAY_PUSH(names, const char *) = "X-User-ID";
    APR_ARRAY_PUSH(names, const char *) = "X-Roles";
    ck_assert_ptr_null(bff_connection_without("X-User-ID", names, pool));
    ck_assert_ptr_null(bff_connection_without(" x_user_id ,, X-ROLES", names,
                                              pool));
    ck_assert_str_eq(bff_connection_without("close, X-User-ID,X-Hop", names,
                                            pool), "close,X-Hop");
    ck_assert_str_eq(bff_connection_without("keep-alive\tx-roles", names,
                                            pool), "keep-alive");
    {
        const char *c = "close, X-Hop";
        ck_assert_ptr_eq(bff_connection_without(c, names, pool), c);
    }
    ck_assert_ptr_null(bff_connection_without("", names, pool));
}
END_TEST

/* the request id and trace helpers the glue builds on */
START_TEST(request_id_rules)
{
    char longid[130];

    ck_assert(bff_request_id_valid("abc-123._~:+/=@"));
    ck_assert(!bff_request_id_valid(NULL));
    ck_assert(!bff_request_id_valid(""));
    ck_assert(!bff_request_id_valid("a b"));
    ck_assert(!bff_request_id_valid("a\"b"));
    ck_assert(!bff_request_id_valid("a\nb"));
    ck_assert(!bff_request_id_valid("a\\b"));
    memset(longid, 'a', 128);
    longid[128] = '\0';
    ck_assert(bff_request_id_valid(longid));
    longid[128] = 'a';
    longid[129] = '\0';
    ck_assert(!bff_request_id_valid(longid));
}
END_TEST

START_TEST(trace_rules)
{
    bff_trace_t t;
    const unsigned char zero16[16] = { 0 }, zero8[8] = { 0 };
    const unsigned char r8[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    const char *c;

    ck_assert(bff_trace_parse(&t,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    ck_assert_str_eq(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(t.parent_id, "00f067aa0ba902b7");
    ck_assert_str_eq(t.flags, "01");
    /* upper case, zero ids, version ff, extra fields in 00: refused */
    ck_assert(!bff_trace_parse(&t,
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    ck_assert(!bff_trace_parse(&t,
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    ck_assert(!bff_trace_parse(&t,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    ck_assert(!bff_trace_parse(&t,
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    ck_assert(!bff_trace_parse(&t,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"));
    /* a later version may carry more fields */
    ck_assert(bff_trace_parse(&t,
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what"));
    /* a new trace is never all zero; a child keeps trace and flags */
    bff_trace_new(&t, zero16);
    ck_assert_str_ne(t.trace_id, "00000000000000000000000000000000");
    ck_assert_str_eq(t.flags, "01");
    c = bff_trace_child(&t, r8, pool);
    ck_assert_str_eq(c, apr_pstrcat(pool, "00-", t.trace_id,
                                    "-0102030405060708-01", NULL));
    c = bff_trace_child(&t, zero8, pool);
    ck_assert(bff_trace_parse(&t, c));
}
END_TEST

static Suite *obs_suite(void)
{
    Suite *s = suite_create("obs");
    TCase *tc = tcase_create("json");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, quote_plain_and_specials);
    tcase_add_test(tc, quote_nul_and_binary);
    tcase_add_test(tc, quote_utf8);
    tcase_add_test(tc, quote_invalid_utf8);
    tcase_add_test(tc, quote_all_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("events");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, event_pack);
    tcase_add_test(tc, queue_bounded);
    tcase_add_test(tc, queue_threads);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("correlation");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, request_id_rules);
    tcase_add_test(tc, header_name_folding);
    tcase_add_test(tc, trace_rules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(obs_suite());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
