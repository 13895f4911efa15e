/*
 * Unit tests for the metrics core (lib/bff_metrics.c): label rendering,
 * the shared series table (claims from several processes at once, a full
 * table, reattaching), histograms and the exposition text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <check.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_metrics.h"

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

static bff_metrics_table_t *table(unsigned nslots)
{
    void *mem = apr_palloc(pool, bff_metrics_table_size(nslots));

    /* garbage, as fresh memory may be */
    memset(mem, 0xa5, bff_metrics_table_size(nslots));
    ck_assert_int_eq(bff_metrics_table_init(mem, nslots), 0);
    return mem;
}

static const char *render(const bff_metrics_table_t *t)
{
    apr_size_t len;
    const char *s = bff_metrics_render(&len, t, pool);

    ck_assert_uint_eq(len, strlen(s));
    return s;
}

#define ASSERT_HAS(text, needle) \
    ck_assert_msg(strstr((text), (needle)) != NULL, "missing <%s> in:\n%s", \
                  (needle), (text))
#define ASSERT_HASNT(text, needle) \
    ck_assert_msg(strstr((text), (needle)) == NULL, "unexpected <%s> in:\n%s", \
                  (needle), (text))

/* -------------------------------------------------------------- labels -- */

START_TEST(labels_escaped)
{
    const char *k = bff_metrics_labels(pool, "endpoint", "/a\"b\\c\nd",
                                       "method", "GET", NULL);

    ck_assert_str_eq(k, "endpoint=\"/a\\\"b\\\\c\\nd\",method=\"GET\"");
    ck_assert_str_eq(bff_metrics_labels(pool, "x", "", NULL), "x=\"\"");
    ck_assert_str_eq(bff_metrics_labels(pool, NULL), "");
}
END_TEST

START_TEST(labels_too_long_dropped)
{
    bff_metrics_table_t *t = table(8);
    char big[300];
    const char *k, *text;

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    k = bff_metrics_labels(pool, "endpoint", big, NULL);
    ck_assert_ptr_null(k);
    /* an escaped value that only overflows because of its escapes */
    memset(big, '"', 200);
    big[200] = '\0';
    ck_assert_ptr_null(bff_metrics_labels(pool, "e", big, NULL));
    big[100] = '\0';
    ck_assert_ptr_nonnull(bff_metrics_labels(pool, "e", big, NULL));

    bff_metrics_add(t, BFF_M_HTTP_REQUESTS, k, 1);
    text = render(t);
    /* never counted as the label-less series */
    ASSERT_HASNT(text, "\nbff_http_requests_total 1");
    ASSERT_HAS(text, "\nbff_metrics_series_dropped_total 1\n");
}
END_TEST

/* --------------------------------------------------------------- table -- */

START_TEST(counter_and_gauge)
{
    bff_metrics_table_t *t = table(64);
    const char *a = bff_metrics_labels(pool, "endpoint", "/a", "method", "GET",
                                       "status", "200", NULL);
    const char *b = bff_metrics_labels(pool, "endpoint", "/a", "method", "GET",
                                       "status", "404", NULL);
    const char *text;

    bff_metrics_add(t, BFF_M_HTTP_REQUESTS, a, 1);
    bff_metrics_add(t, BFF_M_HTTP_REQUESTS, a, 2);
    bff_metrics_add(t, BFF_M_HTTP_REQUESTS, b, 1);
    bff_metrics_gauge_add(t, BFF_M_HTTP_ACTIVE, "", 1);
    bff_metrics_gauge_add(t, BFF_M_HTTP_ACTIVE, "", 1);
    bff_metrics_gauge_add(t, BFF_M_HTTP_ACTIVE, "", -3);
    bff_metrics_set(t, BFF_M_CACHE_HITS, "", 41);
    bff_metrics_set(t, BFF_M_CACHE_HITS, "", 42);
    text = render(t);
    ASSERT_HAS(text, "\nbff_http_requests_total{endpoint=\"/a\",method=\"GET\","
                     "status=\"200\"} 3\n"
                     "bff_http_requests_total{endpoint=\"/a\",method=\"GET\","
                     "status=\"404\"} 1\n");
    ASSERT_HAS(text, "\nbff_http_active_requests -1\n");
    ASSERT_HAS(text, "\nbff_cache_hits_total 42\n");
    /* unlabelled families show 0 before their first update */
    ASSERT_HAS(text, "\nbff_cache_misses_total 0\n");
    ASSERT_HAS(text, "\nbff_metrics_series_dropped_total 0\n");
}
END_TEST

START_TEST(help_and_type_for_every_family)
{
    const char *text = render(table(4));
    int m;

    for (m = 0; m < BFF_M_NFAMILIES; m++) {
        const bff_metric_family_t *f = bff_metric_family((bff_metric_e)m);
        const char *type = f->type == BFF_MT_COUNTER ? "counter"
                           : f->type == BFF_MT_GAUGE ? "gauge" : "histogram";
        ck_assert_ptr_nonnull(f);
        ASSERT_HAS(text, apr_psprintf(pool, "# HELP %s ", f->name));
        ASSERT_HAS(text, apr_psprintf(pool, "# TYPE %s %s\n", f->name, type));
        ck_assert_str_eq(f->name + strlen(f->name) - (f->type == BFF_MT_COUNTER
                         ? 6 : 0), f->type == BFF_MT_COUNTER ? "_total"
                         : "");
    }
    ck_assert_ptr_null(bff_metric_family(BFF_M_NFAMILIES));
}
END_TEST

START_TEST(histogram_buckets)
{
    bff_metrics_table_t *t = table(16);
    const char *k = bff_metrics_labels(pool, "backend", "user", NULL);
    const char *text;

    bff_metrics_observe(t, BFF_M_BACKEND_DURATION, k, 3000);      /* 3ms */
    bff_metrics_observe(t, BFF_M_BACKEND_DURATION, k, 7000);      /* 7ms */
    bff_metrics_observe(t, BFF_M_BACKEND_DURATION, k, 100000);    /* on 0.1 */
    bff_metrics_observe(t, BFF_M_BACKEND_DURATION, k, 100001);
    bff_metrics_observe(t, BFF_M_BACKEND_DURATION, k, 20000000);  /* 20 s */
    bff_metrics_observe(t, BFF_M_BACKEND_DURATION, k, -5);        /* clock */
    text = render(t);
    ASSERT_HAS(text,
        "\nbff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"0.005\"} 2\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"0.01\"} 3\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"0.025\"} 3\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"0.05\"} 3\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"0.1\"} 4\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"0.25\"} 5\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"0.5\"} 5\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"1\"} 5\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"2.5\"} 5\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"5\"} 5\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"10\"} 5\n"
        "bff_backend_request_duration_seconds_bucket{backend=\"user\",le=\"+Inf\"} 6\n"
        "bff_backend_request_duration_seconds_sum{backend=\"user\"} 20.210001\n"
        "bff_backend_request_duration_seconds_count{backend=\"user\"} 6\n");
}
END_TEST

START_TEST(histogram_without_labels)
{
    bff_metrics_table_t *t = table(16);
    const char *text;

    bff_metrics_observe(t, BFF_M_AGG_DURATION, "", 1);
    text = render(t);
    ASSERT_HAS(text, "\nbff_aggregation_duration_seconds_bucket{le=\"0.005\"} 1\n");
    ASSERT_HAS(text, "\nbff_aggregation_duration_seconds_sum 0.000001\n"
                     "bff_aggregation_duration_seconds_count 1\n");
}
END_TEST

START_TEST(full_table)
{
    bff_metrics_table_t *t = table(4);
    const char *text;
    int i;

    for (i = 0; i < 6; i++) {
        bff_metrics_add(t, BFF_M_SERVICE_ERRORS, bff_metrics_labels(pool,
                        "backend", apr_itoa(pool, i), "reason", "timeout",
                        NULL), 1);
    }
    /* the series already there still count */
    for (i = 0; i < 6; i++) {
        bff_metrics_add(t, BFF_M_SERVICE_ERRORS, bff_metrics_labels(pool,
                        "backend", apr_itoa(pool, i), "reason", "timeout",
                        NULL), 1);
    }
    text = render(t);
    ASSERT_HAS(text, "\nbff_metrics_series_dropped_total 4\n");
    {
        int seen = 0;
        const char *s = text;
        while ((s = strstr(s, "\nbff_service_errors_total{")) != NULL) {
            ck_assert_ptr_nonnull(strstr(s, "} 2\n"));
            seen++;
            s++;
        }
        ck_assert_int_eq(seen, 4);
    }
}
END_TEST

START_TEST(reattach_keeps_values)
{
    apr_size_t size = bff_metrics_table_size(32);
    void *mem = apr_palloc(pool, size);
    bff_metrics_table_t *t = mem;

    memset(mem, 0, size);
    ck_assert_int_eq(bff_metrics_table_init(mem, 32), 0);
    bff_metrics_add(t, BFF_M_CACHE_MISSES, "", 7);
    /* a graceful restart: same memory, same size */
    ck_assert_int_eq(bff_metrics_table_init(mem, 32), 1);
    ASSERT_HAS(render(t), "\nbff_cache_misses_total 7\n");
    /* another size is another table */
    ck_assert_int_eq(bff_metrics_table_init(mem, 16), 0);
    ASSERT_HAS(render(t), "\nbff_cache_misses_total 0\n");
}
END_TEST

START_TEST(duplicates_merged)
{
    bff_metrics_table_t *t = table(8);
    bff_metrics_slot_t *s;
    const char *text;
    int i;

    bff_metrics_add(t, BFF_M_AUTH_FAILURES, "reason=\"expired\"", 2);
    /* what a claim left half done by a dead process can lead to: a second
     * slot with the same key */
    for (i = 0; i < 8; i++) {
        s = &t->slots[i];
        if (!s->state) {
            s->family = BFF_M_AUTH_FAILURES;
            strcpy(s->key, "reason=\"expired\"");
            s->v[0] = 3;
            s->state = 2;
            break;
        }
    }
    text = render(t);
    ASSERT_HAS(text, "\nbff_auth_failures_total{reason=\"expired\"} 5\n");
}
END_TEST

/* Several processes claim and bump the same series at once, as httpd
 * children do: no update lost, no series twice. */
START_TEST(processes_share_table)
{
    enum { NPROC = 4, NSERIES = 40, ROUNDS = 500 };
    apr_size_t size = bff_metrics_table_size(256);
    bff_metrics_table_t *t = mmap(NULL, size, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pids[NPROC];
    const char *text, *s;
    int i, n = 0;

    ck_assert_ptr_ne(t, MAP_FAILED);
    ck_assert_int_eq(bff_metrics_table_init(t, 256), 0);
    for (i = 0; i < NPROC; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (!pids[i]) {
            apr_pool_t *cp;
            int r, k;
            apr_pool_create(&cp, NULL);
            for (r = 0; r < ROUNDS; r++) {
                for (k = 0; k < NSERIES; k++) {
                    /* each process walks the series in another order */
                    int j = (k + i * 7) % NSERIES;
                    const char *key = bff_metrics_labels(cp, "backend",
                        apr_psprintf(cp, "b%d", j), "outcome", "ok", NULL);
                    bff_metrics_add(t, BFF_M_BACKEND_REQUESTS, key, 1);
                    bff_metrics_observe(t, BFF_M_BACKEND_DURATION, key, 1000);
                }
            }
            _exit(0);
        }
    }
    for (i = 0; i < NPROC; i++) {
        int st;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    text = render(t);
    for (s = text; (s = strstr(s, "\nbff_backend_requests_total{")); s++) {
        ck_assert_msg(!strncmp(strchr(s, '}'), "} 2000\n", 7), "%.80s", s + 1);
        n++;
    }
    ck_assert_int_eq(n, NSERIES);
    ASSERT_HAS(text, "bff_backend_request_duration_seconds_count{backend=\"b7\","
                     "outcome=\"ok\"} 2000\n");
    ASSERT_HAS(text, "\nbff_metrics_series_dropped_total 0\n");
    munmap(t, size);
}
END_TEST

/* -------------------------------------------------------- label values -- */

START_TEST(bounded_values)
{
    bff_be_result_t br;

    ck_assert_str_eq(bff_metrics_method("GET"), "GET");
    ck_assert_str_eq(bff_metrics_method("PATCH"), "PATCH");
    ck_assert_str_eq(bff_metrics_method("BREW"), "other");
    ck_assert_str_eq(bff_metrics_method(NULL), "other");
    ck_assert_str_eq(bff_metrics_status(404, pool), "404");
    ck_assert_str_eq(bff_metrics_status(99, pool), "other");
    ck_assert_str_eq(bff_metrics_status(600, pool), "other");

    memset(&br, 0, sizeof(br));
    br.state = BFF_BE_FAILED;
    br.err = BFF_FETCH_ETIMEOUT;
    br.reason = "timeout";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "timeout");
    br.err = BFF_FETCH_ECONNECT;
    br.reason = "connect error";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "connect_error");
    br.err = BFF_FETCH_ETOOBIG;
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "too_big");
    br.err = BFF_FETCH_EPROTO;
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "bad_response");
    br.err = BFF_FETCH_OK;
    br.reason = "HTTP 503";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "http_5xx");
    br.reason = "HTTP 404";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "http_4xx");
    br.reason = "HTTP 302";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "http_other");
    br.reason = "invalid JSON";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "invalid_json");
    br.reason = "missing input";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "missing_input");
    br.reason = "circuit open";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "circuit_open");
    br.reason = "something new";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "other");
    br.state = BFF_BE_SKIPPED;
    br.reason = "dependency 'user' failed";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "dependency_failed");
    br.reason = "cancelled";
    ck_assert_str_eq(bff_metrics_backend_reason(&br), "cancelled");

    ck_assert_str_eq(bff_metrics_auth_reason("missing"), "missing");
    ck_assert_str_eq(bff_metrics_auth_reason("expired"), "expired");
    ck_assert_str_eq(bff_metrics_auth_reason("bad_signature"), "bad_signature");
    ck_assert_str_eq(bff_metrics_auth_reason("invalid"), "invalid_key");
    ck_assert_str_eq(bff_metrics_auth_reason("store-down"), "store_down");
    ck_assert_str_eq(bff_metrics_auth_reason("insufficient_scope"),
                     "insufficient_scope");
    ck_assert_str_eq(bff_metrics_auth_reason("user 1234"), "other");
    ck_assert_str_eq(bff_metrics_auth_reason(NULL), "other");

    ck_assert_int_eq(bff_metrics_breaker_value("closed"), 0);
    ck_assert_int_eq(bff_metrics_breaker_value("half-open"), 1);
    ck_assert_int_eq(bff_metrics_breaker_value("open"), 2);
    ck_assert_int_eq(bff_metrics_breaker_value("ajar"), -1);
}
END_TEST

START_TEST(breaker_series)
{
    bff_metrics_table_t *t = table(16);
    const char *text;

    bff_metrics_set(t, BFF_M_BREAKER_STATE, bff_metrics_labels(pool,
                    "backend", "user", NULL), bff_metrics_breaker_value("open"));
    bff_metrics_set(t, BFF_M_BREAKER_TRANSITIONS, bff_metrics_labels(pool,
                    "backend", "user", "to", "open", NULL), 3);
    text = render(t);
    ASSERT_HAS(text, "\nbff_breaker_state{backend=\"user\"} 2\n");
    ASSERT_HAS(text, "\nbff_breaker_transitions_total{backend=\"user\","
                     "to=\"open\"} 3\n");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, labels_escaped);
    tcase_add_test(tc, labels_too_long_dropped);
    tcase_add_test(tc, counter_and_gauge);
    tcase_add_test(tc, help_and_type_for_every_family);
    tcase_add_test(tc, histogram_buckets);
    tcase_add_test(tc, histogram_without_labels);
    tcase_add_test(tc, full_table);
    tcase_add_test(tc, reattach_keeps_values);
    tcase_add_test(tc, duplicates_merged);
    tcase_add_test(tc, processes_share_table);
    tcase_add_test(tc, bounded_values);
    tcase_add_test(tc, breaker_series);
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
