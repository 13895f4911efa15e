/*
 * Validation cost per request: the order-create body of conf/bff-orders.conf
 * (conf/schemas/order-create.json) parsed and validated as mod_bff does for
 * each request (bounded parse with duplicate keys refused, then the
 * compiled schema), in a request-like pool made and destroyed every
 * iteration. Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so
 * a busy machine inflates them less than wall time would.
 * bench/run-schema.sh builds and runs it; see bench/RESULTS.md.
 *
 *   schema-bench SCHEMA [ITERATIONS] [RUNS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "bff_core.h"
#include "bff_schema.h"

/* a few nested objects and an array of items, as a shop's client sends */
static const char order_body[] =
    "{\"user_id\":42,"
    "\"items\":[{\"product_id\":12,\"quantity\":2},"
    "{\"product_id\":7,\"quantity\":1,\"gift\":true},"
    "{\"product_id\":31,\"quantity\":4}],"
    "\"shipping\":{\"name\":\"Ada Lovelace\",\"street\":\"12 St James's Square\","
    "\"city\":\"London\",\"postcode\":\"SW1Y 4JH\",\"country\":\"GB\"},"
    "\"billing\":{\"name\":\"Ada Lovelace\",\"street\":\"12 St James's Square\","
    "\"city\":\"London\",\"postcode\":\"SW1Y 4JH\",\"country\":\"GB\"},"
    "\"email\":\"ada@example.com\",\"coupon\":\"WINTER2026\","
    "\"note\":\"Leave the parcel with the porter, please.\"}";

/* the same with four violations */
static const char bad_body[] =
    "{\"user_id\":0,"
    "\"items\":[{\"product_id\":12,\"quantity\":0},"
    "{\"product_id\":7,\"quantity\":1,\"gift\":\"yes\"},"
    "{\"product_id\":31,\"quantity\":4}],"
    "\"shipping\":{\"name\":\"Ada Lovelace\",\"street\":\"12 St James's Square\","
    "\"city\":\"London\",\"postcode\":\"SW1Y 4JH\",\"country\":\"XX\"},"
    "\"email\":\"ada@example.com\"}";

enum { PARSE, PARSE_VALIDATE, PARSE_VALIDATE_BAD, NMODES };
static const char *const mode_names[] = {
    "parse only (bounded, duplicate keys refused)",
    "parse + validate, valid body",
    "parse + validate, invalid body (4 violations listed)",
};

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double run(const bff_schema_t *s, int mode, long iters, apr_pool_t *p)
{
    const char *body = mode == PARSE_VALIDATE_BAD ? bad_body : order_body;
    size_t len = strlen(body);
    double t0 = now_ns();
    long i;

    for (i = 0; i < iters; ++i) {
        apr_pool_t *rp;
        json_t *v;
        const char *detail;
        apr_array_header_t *errs = NULL;

        apr_pool_create(&rp, p);
        if (bff_schema_parse_body(&v, &detail, body, len, 64 * 1024, 8, rp)
            != BFF_BODY_OK) {
            fprintf(stderr, "parse failed: %s\n", detail);
            exit(1);
        }
        if (mode != PARSE) {
            int ok = bff_schema_validate(&errs, s, v, 20, rp);
            if (ok != (mode == PARSE_VALIDATE)
                || (!ok && errs->nelts != 4)) {
                fprintf(stderr, "unexpected validation result\n");
                exit(1);
            }
        }
        apr_pool_destroy(rp);
    }
    return (now_ns() - t0) / (double)iters;
}

int main(int argc, char **argv)
{
    apr_pool_t *p;
    bff_schema_t *s;
    const char *err;
    long iters = argc > 2 ? atol(argv[2]) : 20000;
    int runs = argc > 3 ? atoi(argv[3]) : 5, m, r;
    double res[NMODES][64];

    if (argc < 2 || runs < 1 || runs > 64 || iters < 1) {
        fprintf(stderr, "usage: %s SCHEMA [ITERATIONS] [RUNS<=64]\n", argv[0]);
        return 2;
    }
    apr_initialize();
    apr_pool_create(&p, NULL);
    if ((err = bff_schema_load(&s, argv[1], BFF_SCHEMA_FORMAT_ASSERT, p))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    run(s, PARSE_VALIDATE, iters / 10 + 1, p);       /* warm-up */
    for (r = 0; r < runs; ++r) {
        for (m = 0; m < NMODES; ++m) {
            res[m][r] = run(s, m, iters, p);
        }
    }
    printf("body: %lu bytes (valid), %lu bytes (invalid); %ld iterations x %d "
           "runs\n", (unsigned long)strlen(order_body),
           (unsigned long)strlen(bad_body), iters, runs);
    printf("|what|median us/request|min|max|\n|---|--:|--:|--:|\n");
    for (m = 0; m < NMODES; ++m) {
        qsort(res[m], (size_t)runs, sizeof(double), cmp);
        printf("|%s|%.2f|%.2f|%.2f|\n", mode_names[m], res[m][runs / 2] / 1e3,
               res[m][0] / 1e3, res[m][runs - 1] / 1e3);
    }
    printf("|validation alone (difference of the medians)|%.2f|||\n",
           (res[PARSE_VALIDATE][runs / 2] - res[PARSE][runs / 2]) / 1e3);
    apr_pool_destroy(p);
    apr_terminate();
    return 0;
}
