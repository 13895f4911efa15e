/*
 * Unit tests for the aggregation engine, driven through a fake fetcher
 * that answers from a table and completes requests in a chosen order.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "bff_engine.h"

/* ------------------------------------------------------ fake fetcher -- */

typedef struct {
    const char *url;
    int status;
    const char *body;
    bff_fetch_err_e err;
    int hang;                  /* never completes */
} fake_resp_t;

typedef struct {
    const fake_resp_t *table;
    bff_fetch_req_t *inflight[32];
    int ninflight;
    int lifo;                  /* complete the newest request first */
    /* as a fetcher shared by threads may: a blocking wait does not
     * return a quiet request's 2xx reply while another request runs */
    int hold_quiet;
    char quiet[512];           /* the URL of each quiet request started */
    int max_inflight;
    char log[4096];            /* "METHOD URL [body]\n" per start, and
                                  "done URL\n" per completion */
    int resets;
} fake_t;

static const fake_resp_t *fake_find(fake_t *fk, const char *url)
{
    const fake_resp_t *r;

    for (r = fk->table; r->url; r++) {
        if (!strcmp(r->url, url)) {
            return r;
        }
    }
    return NULL;
}

static apr_status_t fake_start(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    fake_t *fk = f->ctx;
    char line[512];

    snprintf(line, sizeof(line), "%s %s%s%s\n", req->method, req->url,
             req->body ? " " : "", req->body ? req->body : "");
    strncat(fk->log, line, sizeof(fk->log) - strlen(fk->log) - 1);
    if (req->quiet) {
        apr_size_t used = strlen(fk->quiet);
        snprintf(fk->quiet + used, sizeof(fk->quiet) - used, "%s\n",
                 req->url);
    }
    fk->inflight[fk->ninflight++] = req;
    if (fk->ninflight > fk->max_inflight) {
        fk->max_inflight = fk->ninflight;
    }
    return APR_SUCCESS;
}

static apr_status_t fake_wait(bff_fetcher_t *f, bff_fetch_req_t **done,
                              long max_wait_ms)
{
    fake_t *fk = f->ctx;
    int i, pick = -1;
    const fake_resp_t *r = NULL;
    char line[512];

    *done = NULL;
    if (fk->ninflight == 0) {
        return APR_EOF;
    }
    for (i = 0; i < fk->ninflight; i++) {
        int k = fk->lifo ? fk->ninflight - 1 - i : i;
        const fake_resp_t *c = fake_find(fk, fk->inflight[k]->url);
        if (c && fk->hold_quiet && max_wait_ms > 0 && fk->ninflight > 1
            && fk->inflight[k]->quiet && !c->err && c->status >= 200
            && c->status < 300) {
            continue;
        }
        if (!c || !c->hang) {
            pick = k;
            r = c;
            break;
        }
    }
    if (pick < 0) {
        apr_sleep(apr_time_from_msec(max_wait_ms));
        return APR_TIMEUP;
    }
    *done = fk->inflight[pick];
    memmove(&fk->inflight[pick], &fk->inflight[pick + 1],
            sizeof(fk->inflight[0]) * (size_t)(fk->ninflight - pick - 1));
    fk->ninflight--;
    if (!r) {
        (*done)->err = BFF_FETCH_ECONNECT;
        (*done)->status = 0;
    }
    else {
        (*done)->err = r->err;
        (*done)->status = r->err ? 0 : r->status;
        (*done)->resp = r->body ? r->body : "";
        (*done)->resp_len = strlen((*done)->resp);
    }
    snprintf(line, sizeof(line), "done %s\n", (*done)->url);
    strncat(fk->log, line, sizeof(fk->log) - strlen(fk->log) - 1);
    return APR_SUCCESS;
}

static void fake_release(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    req->resp = NULL;
}

static void fake_reset(bff_fetcher_t *f)
{
    fake_t *fk = f->ctx;

    fk->ninflight = 0;
    fk->resets++;
}

static void fake_destroy(bff_fetcher_t *f)
{
}

static const bff_fetch_vtable_t fake_vt = {
    "fake", fake_start, fake_wait, fake_release, fake_reset, fake_destroy,
    NULL
};

/* ------------------------------------------------------------ set-up -- */

static apr_pool_t *pool;
static fake_t fk;
static bff_fetcher_t fetcher = { &fake_vt, &fk };

static void setup(void)
{
    apr_pool_create(&pool, NULL);
    memset(&fk, 0, sizeof(fk));
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

static const char *add_backend(bff_endpoint_t *ep, const char *name,
                               const char *method, const char *url,
                               const char *const *opts)
{
    bff_backend_t *be = apr_pcalloc(pool, sizeof(*be));
    const char *err;

    be->name = name;
    be->method = method;
    if ((err = bff_tpl_compile(&be->url, url, BFF_TPL_URL, pool))) {
        return err;
    }
    for (; opts && *opts; opts++) {
        if ((err = bff_backend_option(be, *opts, pool))) {
            return err;
        }
    }
    APR_ARRAY_PUSH(ep->backends, bff_backend_t *) = be;
    return NULL;
}

static bff_endpoint_t *profile_endpoint(void)
{
    static const char *const user_opts[] = { "required", NULL };
    static const char *const orders_opts[] = { "default=[]", NULL };
    static const char *const products_opts[] = {
        "body={\"ids\":{orders[].product_id}}", NULL };
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/api/profile/{user_id:int}",
                                             pool);

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "user", "GET",
                                   "http://u/users/{user_id}", user_opts));
    ck_assert_ptr_null(add_backend(ep, "orders", "GET",
                                   "http://o/orders/user/{user_id}", orders_opts));
    ck_assert_ptr_null(add_backend(ep, "products", "POST",
                                   "http://p/products/batch", products_opts));
    ck_assert_ptr_null(bff_shape_add(ep->shape, "user.password_hash", 0, pool));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    return ep;
}

static const fake_resp_t ok_table[] = {
    { "http://u/users/7", 200,
      "{\"id\":7,\"name\":\"Ann\",\"password_hash\":\"x\"}", 0, 0 },
    { "http://o/orders/user/7", 200,
      "[{\"id\":1,\"product_id\":3},{\"id\":2,\"product_id\":5},"
      "{\"id\":3,\"product_id\":3}]", 0, 0 },
    { "http://p/products/batch", 200,
      "[{\"id\":3,\"name\":\"pen\"},{\"id\":5,\"name\":\"ink\"}]", 0, 0 },
    { NULL, 0, NULL, 0, 0 }
};

static const char *const v7[] = { "7" };

static const char *dump(const json_t *doc)
{
    apr_size_t len;
    return bff_json_dump(&len, doc, pool);
}

/* ------------------------------------------------------------- tests -- */

/* ---------------------------------------------------- per-item fan-out -- */

static bff_endpoint_t *fanout_endpoint(const char *const *opts, int required)
{
    static const char *const req_opts[] = { "required", NULL };
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/m/{user_id:int}", pool);
    const char *const *o = opts;
    bff_backend_t *be;

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "orders", "GET",
                                   "http://o/orders/user/{user_id}", NULL));
    ck_assert_ptr_null(add_backend(ep, "products", "GET",
                                   "http://p/products/{orders[].product_id}",
                                   required ? req_opts : NULL));
    be = APR_ARRAY_IDX(ep->backends, 1, bff_backend_t *);
    for (; o && *o; o++) {
        ck_assert_ptr_null(bff_backend_option(be, *o, pool));
    }
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    return ep;
}

/* products 3 5 3 8 9 11 12: six unique items */
static const fake_resp_t fan_table[] = {
    { "http://o/orders/user/7", 200,
      "[{\"product_id\":3},{\"product_id\":5},{\"product_id\":3},"
      "{\"product_id\":8},{\"product_id\":9},{\"product_id\":11},"
      "{\"product_id\":12}]", 0, 0 },
    { "http://p/products/3", 200, "{\"id\":3}", 0, 0 },
    { "http://p/products/5", 200, "{\"id\":5}", 0, 0 },
    { "http://p/products/8", 200, "{\"id\":8}", 0, 0 },
    { "http://p/products/9", 200, "{\"id\":9}", 0, 0 },
    { "http://p/products/11", 200, "{\"id\":11}", 0, 0 },
    { "http://p/products/12", 200, "{\"id\":12}", 0, 0 },
    { NULL, 0, NULL, 0, 0 }
};

START_TEST(per_item_unique_stable_order_capped)
{
    static const char *const opts[] = { "per-item", "concurrency=2", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    fk.table = fan_table;
    fk.lifo = _i;   /* completion order does not change the answer */
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 1);
    ck_assert_str_eq(dump(json_object_get(res.doc, "products")),
        "[{\"id\":3},{\"id\":5},{\"id\":8},{\"id\":9},{\"id\":11},"
        "{\"id\":12}]");
    ck_assert_int_eq(fk.max_inflight, 2);
    /* one call per unique id */
    ck_assert_ptr_null(strstr(strstr(fk.log, "GET http://p/products/3\n") + 1,
                              "GET http://p/products/3\n"));
    ck_assert_int_eq(res.results[1].nitems, 6);
}
END_TEST

START_TEST(per_item_default_cap_is_4)
{
    static const char *const opts[] = { "per-item", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    fk.table = fan_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(fk.max_inflight, 4);
}
END_TEST

static const fake_resp_t fan_fail_table[] = {
    { "http://o/orders/user/7", 200,
      "[{\"product_id\":3},{\"product_id\":5},{\"product_id\":8}]", 0, 0 },
    { "http://p/products/3", 200, "{\"id\":3}", 0, 0 },
    { "http://p/products/5", 404, "{}", 0, 0 },
    { "http://p/products/8", 200, "{\"id\":8}", 0, 0 },
    { NULL, 0, NULL, 0, 0 }
};

START_TEST(per_item_failure_is_partial)
{
    static const char *const opts[] = { "per-item", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    fk.table = fan_fail_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 0);
    ck_assert_str_eq(dump(json_object_get(res.doc, "products")),
                     "[{\"id\":3},{\"id\":8}]");
    ck_assert_str_eq(dump(json_object_get(res.doc, "_errors")),
        "{\"products\":{\"status\":null,\"reason\":\"1 of 3 items failed\","
        "\"items\":[{\"item\":5,\"status\":404,\"reason\":\"HTTP 404\"}]}}");
}
END_TEST

static const fake_resp_t fan_allfail_table[] = {
    { "http://o/orders/user/7", 200,
      "[{\"product_id\":\"a b\"},{\"product_id\":5}]", 0, 0 },
    { "http://p/products/a%20b", 503, "{}", 0, 0 },
    { "http://p/products/5", 0, NULL, BFF_FETCH_ECONNECT, 0 },
    { NULL, 0, NULL, 0, 0 }
};

START_TEST(per_item_all_failed_uses_default)
{
    static const char *const opts[] = { "per-item", "default=[]", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    fk.table = fan_allfail_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 0);
    ck_assert_str_eq(dump(json_object_get(res.doc, "products")), "[]");
    ck_assert_str_eq(dump(json_object_get(res.doc, "_errors")),
        "{\"products\":{\"status\":503,\"reason\":\"HTTP 503\","
        "\"items\":[{\"item\":\"a b\",\"status\":503,\"reason\":\"HTTP 503\"},"
        "{\"item\":5,\"status\":null,\"reason\":\"connect error\"}]}}");
}
END_TEST

START_TEST(per_item_required_failure_is_502)
{
    static const char *const opts[] = { "per-item", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 1);
    bff_run_result_t res;

    fk.table = fan_fail_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    /* an item's 404 is not "the resource does not exist" */
    ck_assert_int_eq(res.status, 502);
    ck_assert_str_eq(res.detail, "required backend 'products' failed: "
                     "item 5: HTTP 404");
}
END_TEST

static const fake_resp_t fan_empty_table[] = {
    { "http://o/orders/user/7", 200, "[]", 0, 0 },
    { NULL, 0, NULL, 0, 0 }
};

START_TEST(per_item_no_items_no_calls)
{
    static const char *const opts[] = { "per-item", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    fk.table = fan_empty_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 1);
    ck_assert_str_eq(dump(res.doc), "{\"orders\":[],\"products\":[]}");
    ck_assert_str_eq(fk.log, "GET http://o/orders/user/7\n"
                     "done http://o/orders/user/7\n");
}
END_TEST

START_TEST(per_item_max_items)
{
    static const char *const opts[] = { "per-item", "max-items=5", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    fk.table = fan_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(dump(json_object_get(res.doc, "_errors")),
        "{\"products\":{\"status\":null,\"reason\":\"too many items\"}}");
    ck_assert_ptr_null(strstr(fk.log, "http://p/"));
}
END_TEST

/* The items' replies together are bounded like one reply: six replies of
 * 50 bytes in all, and max-size=40 fails the backend at the fifth (41
 * bytes) with one call at a time, so the sixth is never made. */
START_TEST(per_item_bytes_bounded)
{
    static const char *const opts[] = { "per-item", "concurrency=1",
                                        "max-size=40", NULL };
    static const char *const fit[] = { "per-item", "max-size=50", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    fk.table = fan_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 0);
    ck_assert_str_eq(dump(json_object_get(res.doc, "_errors")),
        "{\"products\":{\"status\":null,\"reason\":\"response too large\"}}");
    ck_assert_str_eq(res.results[1].detail,
                     "the replies of its items exceed 40 bytes in total");
    ck_assert_ptr_nonnull(strstr(fk.log, "http://p/products/11\n"));
    ck_assert_ptr_null(strstr(fk.log, "http://p/products/12\n"));

    /* required: the endpoint fails */
    memset(&fk, 0, sizeof(fk));
    fk.table = fan_table;
    bff_engine_run(&res, fanout_endpoint(opts, 1), v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 502);
    ck_assert_str_eq(res.detail, "required backend 'products' failed: "
                     "response too large");

    /* exactly at the bound: every item is there */
    memset(&fk, 0, sizeof(fk));
    fk.table = fan_table;
    bff_engine_run(&res, fanout_endpoint(fit, 0), v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 1);
    ck_assert_int_eq(json_array_size(json_object_get(res.doc, "products")), 6);
}
END_TEST

/* Forwarded client query parameters go to GET calls only. */
START_TEST(query_to_get_calls_only)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    bff_call_ctx_t cc;

    static const fake_resp_t table[] = {
        { "http://u/users/7?page=2", 200, "{\"id\":7}", 0, 0 },
        { "http://o/orders/user/7?page=2", 200, "[{\"product_id\":3}]", 0, 0 },
        { "http://p/products/batch", 200, "[{\"id\":3}]", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };

    memset(&cc, 0, sizeof(cc));
    cc.query = "page=2";
    fk.table = table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 1);
    ck_assert_ptr_nonnull(strstr(fk.log, "GET http://u/users/7?page=2\n"));
    ck_assert_ptr_nonnull(strstr(fk.log,
                                 "GET http://o/orders/user/7?page=2\n"));
    ck_assert_ptr_nonnull(strstr(fk.log, "POST http://p/products/batch "
                                         "{\"ids\":[3]}\n"));
}
END_TEST

/* A join whose copies would exceed its bound fails the answer (502). */
START_TEST(join_bound_fails_answer)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    ck_assert_ptr_null(bff_present_join(ep->present, "orders[].product",
                                        "products[].id=orders[].product_id",
                                        40, pool));
    fk.table = ok_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 502);
    ck_assert_ptr_null(res.backend);
    ck_assert_str_eq(res.detail, "BFFJoin orders[].product: the copies it "
                     "makes exceed 40 bytes (max-size)");
    ck_assert_ptr_null(res.doc);
}
END_TEST

static const fake_resp_t fan_hang_table[] = {
    { "http://o/orders/user/7", 200,
      "[{\"product_id\":3},{\"product_id\":5},{\"product_id\":8}]", 0, 0 },
    { "http://p/products/3", 200, "{\"id\":3}", 0, 0 },
    { "http://p/products/5", 0, NULL, 0, 1 },
    { "http://p/products/8", 0, NULL, 0, 1 },
    { NULL, 0, NULL, 0, 0 }
};

START_TEST(per_item_deadline)
{
    static const char *const opts[] = { "per-item", "concurrency=1", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;

    ep->timeout_ms = 50;
    fk.table = fan_hang_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    /* 5 hangs; 8 never started: both are reported */
    ck_assert_str_eq(dump(json_object_get(res.doc, "products")),
                     "[{\"id\":3}]");
    ck_assert_str_eq(dump(json_object_get(json_object_get(res.doc, "_errors"),
                                          "products")),
        "{\"status\":null,\"reason\":\"2 of 3 items failed\",\"items\":["
        "{\"item\":5,\"status\":null,\"reason\":\"timeout\"},"
        "{\"item\":8,\"status\":null,\"reason\":\"timeout\"}]}");
    ck_assert_ptr_null(strstr(fk.log, "http://p/products/8"));
}
END_TEST

START_TEST(per_item_config_errors)
{
    bff_endpoint_t *ep;
    bff_backend_t be;
    static const char *const pi[] = { "per-item", NULL };
    static const char *const conc[] = { "concurrency=2", NULL };

    memset(&be, 0, sizeof(be));
    ck_assert_str_eq(bff_backend_option(&be, "concurrency=0", pool),
                     "concurrency=0: expected a number from 1 to 256");
    ck_assert_str_eq(bff_backend_option(&be, "max-items=x", pool),
                     "max-items=x: expected a number from 1 to 10000");

    ep = bff_endpoint_create("GET", "/m/{id:int}", pool);
    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "o", "GET", "http://o/{id}", NULL));
    ck_assert_ptr_null(add_backend(ep, "p", "GET", "http://p/{o.x}", pi));
    ck_assert_str_eq(bff_endpoint_finalize(ep, pool),
        "backend 'p': per-item needs a reference through an array in its "
        "URL or body, e.g. {orders[].product_id}");

    ep = bff_endpoint_create("GET", "/m/{id:int}", pool);
    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "o", "GET", "http://o/{id}", NULL));
    ck_assert_ptr_null(add_backend(ep, "p", "GET",
                                   "http://p/{o[].a}/{o[].b}", pi));
    ck_assert_str_eq(bff_endpoint_finalize(ep, pool),
        "backend 'p': per-item iterates over one array reference, not both "
        "{o[].a} and {o[].b}");

    ep = bff_endpoint_create("GET", "/m/{id:int}", pool);
    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "o", "GET", "http://o/{id}", NULL));
    ck_assert_ptr_null(add_backend(ep, "p", "GET", "http://p/{o[].a}", conc));
    ck_assert_str_eq(bff_endpoint_finalize(ep, pool),
        "backend 'p': concurrency= and max-items= need per-item");
}
END_TEST

/* ------------------------------------------------ presentation in runs -- */

START_TEST(presentation_pipeline)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    bff_call_ctx_t cc;
    apr_array_header_t *sel = apr_array_make(pool, 2, sizeof(const char *));

    /* join before deny (the source list can be denied), lift and rename
     * after it, the field selection last, _errors never selected away */
    ck_assert_ptr_null(bff_present_join(ep->present, "orders[].product",
                                        "products[].id=orders[].product_id",
                                        0, pool));
    ck_assert_ptr_null(bff_shape_add(ep->shape, "products", 0, pool));
    ck_assert_ptr_null(bff_present_lift(ep->present, "user", NULL, pool));
    ck_assert_ptr_null(bff_present_rename(ep->present, "orders[].product.name",
                                          "orders[].product_name", pool));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    APR_ARRAY_PUSH(sel, const char *) = "name";
    APR_ARRAY_PUSH(sel, const char *) = "orders.product_name";
    memset(&cc, 0, sizeof(cc));
    cc.fields = bff_fields_shape(sel, pool);
    fk.table = ok_table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(dump(res.doc),
        "{\"orders\":[{\"product_name\":\"pen\"},{\"product_name\":\"ink\"},"
        "{\"product_name\":\"pen\"}],\"name\":\"Ann\"}");
}
END_TEST

START_TEST(presentation_conflict_is_502)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    /* user's "id" and the lifted orders element... : lift user and a
     * product-less copy: user.id collides with the rename's "id" */
    ck_assert_ptr_null(bff_present_lift(ep->present, "user", NULL, pool));
    ck_assert_ptr_null(bff_present_rename(ep->present, "products", "id",
                                          pool));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    fk.table = ok_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 502);
    ck_assert_str_eq(res.detail, "conflicting key 'id': 'products' writes a "
                     "key that is already there (BFFMergePolicy error)");
}
END_TEST


START_TEST(merged_in_config_order)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    fk.table = ok_table;
    fk.lifo = _i;   /* both completion orders give the same document */
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 1);
    ck_assert_str_eq(dump(res.doc),
        "{\"user\":{\"id\":7,\"name\":\"Ann\"},"
        "\"orders\":[{\"id\":1,\"product_id\":3},{\"id\":2,\"product_id\":5},"
        "{\"id\":3,\"product_id\":3}],"
        "\"products\":[{\"id\":3,\"name\":\"pen\"},{\"id\":5,\"name\":\"ink\"}]}");
    ck_assert_int_eq(fk.resets, 1);
}
END_TEST

START_TEST(independent_calls_concurrent_dependent_after)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    const char *log;

    fk.table = ok_table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    log = fk.log;
    /* user and orders start before anything completes; products starts only
     * after orders is done, with the unique product ids */
    ck_assert_str_eq(log,
        "GET http://u/users/7\n"
        "GET http://o/orders/user/7\n"
        "done http://u/users/7\n"
        "done http://o/orders/user/7\n"
        "POST http://p/products/batch {\"ids\":[3,5]}\n"
        "done http://p/products/batch\n");
    ck_assert_int_eq(fk.max_inflight, 2);
    /* only orders has a backend waiting for it */
    ck_assert_str_eq(fk.quiet, "http://u/users/7\nhttp://p/products/batch\n");
}
END_TEST

START_TEST(dependent_starts_as_soon_as_its_input_is_ready)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    fk.table = ok_table;
    fk.lifo = 1;    /* orders completes first: products must not wait for user */
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_str_eq(fk.log,
        "GET http://u/users/7\n"
        "GET http://o/orders/user/7\n"
        "done http://o/orders/user/7\n"
        "POST http://p/products/batch {\"ids\":[3,5]}\n"
        "done http://p/products/batch\n"
        "done http://u/users/7\n");
}
END_TEST

START_TEST(optional_failure_gives_partial_answer)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 200, "{\"id\":7}", 0, 0 },
        { "http://o/orders/user/7", 503, "{}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    fk.table = table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 0);
    /* products depends on orders: not called, null, named in _errors */
    ck_assert_str_eq(dump(res.doc),
        "{\"user\":{\"id\":7},\"orders\":[],\"products\":null,"
        "\"_errors\":{\"orders\":{\"status\":503,\"reason\":\"HTTP 503\"},"
        "\"products\":{\"status\":null,\"reason\":\"dependency 'orders' failed\"}}}");
    ck_assert_ptr_null(strstr(fk.log, "products"));
}
END_TEST

START_TEST(optional_failure_kinds)
{
    static const struct { fake_resp_t r; const char *reason; } cases[] = {
        { { "http://o/orders/user/7", 0, NULL, BFF_FETCH_ECONNECT, 0 }, "connect error" },
        { { "http://o/orders/user/7", 0, NULL, BFF_FETCH_ETOOBIG, 0 }, "response too large" },
        { { "http://o/orders/user/7", 0, NULL, BFF_FETCH_EPROTO, 0 }, "bad response" },
        { { "http://o/orders/user/7", 200, "[{\"id\":", 0, 0 }, "invalid JSON" },
        { { "http://o/orders/user/7", 200, "", 0, 0 }, "invalid JSON" },
        { { "http://o/orders/user/7", 200, "<html>", 0, 0 }, "invalid JSON" },
        { { "http://o/orders/user/7", 302, "", 0, 0 }, "HTTP 302" },
    };
    bff_endpoint_t *ep = profile_endpoint();
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_resp_t table[3] = { { "http://u/users/7", 200, "{}", 0, 0 },
                                 cases[i].r, { NULL, 0, NULL, 0, 0 } };
        bff_run_result_t res;
        json_t *e;

        memset(&fk, 0, sizeof(fk));
        fk.table = table;
        bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
        ck_assert_int_eq(res.status, 200);
        ck_assert_int_eq(res.completed, 0);
        e = json_object_get(json_object_get(res.doc, "_errors"), "orders");
        ck_assert_ptr_nonnull(e);
        ck_assert_str_eq(json_string_value(json_object_get(e, "reason")),
                         cases[i].reason);
    }
}
END_TEST

START_TEST(json_depth_limit)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 200, "{}", 0, 0 },
        { "http://o/orders/user/7", 200, "[[[[[[1]]]]]]", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    ep->max_depth = 5;
    fk.table = table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.completed, 0);
    ep->max_depth = 6;
    memset(&fk, 0, sizeof(fk));
    fk.table = table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.results[1].state, BFF_BE_OK);
}
END_TEST

START_TEST(required_failure_status)
{
    static const struct { fake_resp_t r; int status; } cases[] = {
        { { "http://u/users/7", 500, "{}", 0, 0 }, 502 },
        { { "http://u/users/7", 404, "{}", 0, 0 }, 404 },
        { { "http://u/users/7", 0, NULL, BFF_FETCH_ETIMEOUT, 0 }, 504 },
        { { "http://u/users/7", 0, NULL, BFF_FETCH_ECONNECT, 0 }, 502 },
        { { "http://u/users/7", 200, "{oops", 0, 0 }, 502 },
    };
    bff_endpoint_t *ep = profile_endpoint();
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_resp_t table[2] = { cases[i].r, { NULL, 0, NULL, 0, 0 } };
        bff_run_result_t res;

        memset(&fk, 0, sizeof(fk));
        fk.table = table;
        bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
        ck_assert_int_eq(res.status, cases[i].status);
        ck_assert_ptr_null(res.doc);
        ck_assert_str_eq(res.backend, "user");
        ck_assert_ptr_nonnull(strstr(res.detail, "'user'"));
    }
}
END_TEST

/* Also when the fetcher holds user's reply back (quiet, while orders
 * hangs, as a fetcher shared by threads may): it is collected at the
 * deadline, and only orders is late. */
START_TEST(deadline_fails_hanging_backends)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 200, "{}", 0, 0 },
        { "http://o/orders/user/7", 0, NULL, 0, 1 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    ep->timeout_ms = 60;
    fk.table = table;
    fk.hold_quiet = _i;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 0);
    ck_assert_int_eq(res.results[0].state, BFF_BE_OK);
    ck_assert_str_eq(res.results[1].reason, "timeout");
    ck_assert_str_eq(fk.quiet, "http://u/users/7\n");
    ck_assert_int_lt(res.elapsed, apr_time_from_msec(1000));
    ck_assert_int_ge(res.elapsed, apr_time_from_msec(60));
}
END_TEST

START_TEST(required_hang_gives_504)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 0, NULL, 0, 1 },
        { "http://o/orders/user/7", 200, "[]", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;

    ep->timeout_ms = 50;
    fk.table = table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 504);
}
END_TEST

START_TEST(call_context_headers_and_query)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    apr_array_header_t *h = apr_array_make(pool, 1, sizeof(const char *));
    bff_call_ctx_t cc = { h, "lang=en", NULL, NULL, NULL, NULL, NULL };

    APR_ARRAY_PUSH(h, const char *) = "X-Request-ID: abc";
    fk.table = ok_table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    /* the query goes to GET calls only; the fake table has no entry for the
     * changed URLs, so those fail, which is fine for this test */
    ck_assert_ptr_nonnull(strstr(fk.log, "GET http://u/users/7?lang=en\n"));
    ck_assert_ptr_nonnull(strstr(fk.log, "GET http://o/orders/user/7?lang=en\n"));
    ck_assert_int_eq(res.status, 502);
    ck_assert_int_eq(res.results[0].req.headers->nelts, 2);
    ck_assert_str_eq(APR_ARRAY_IDX(res.results[0].req.headers, 1, const char *),
                     "X-Request-ID: abc");
}
END_TEST

START_TEST(default_is_copied_before_shaping)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 200, "{}", 0, 0 },
        { "http://o/orders/user/7", 500, "", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    static const char *const orders_opts[] = {
        "default=[{\"id\":0,\"secret\":1}]", NULL };
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/p/{user_id:int}", pool);
    bff_run_result_t res;
    bff_backend_t *be;

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "user", "GET", "http://u/users/{user_id}", NULL));
    ck_assert_ptr_null(add_backend(ep, "orders", "GET",
                                   "http://o/orders/user/{user_id}", orders_opts));
    ck_assert_ptr_null(bff_shape_add(ep->shape, "orders[].secret", 0, pool));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    fk.table = table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_str_eq(dump(json_object_get(res.doc, "orders")), "[{\"id\":0}]");
    be = APR_ARRAY_IDX(ep->backends, 1, bff_backend_t *);
    ck_assert_str_eq(dump(be->defval), "[{\"id\":0,\"secret\":1}]");
}
END_TEST

START_TEST(param_types_in_templates)
{
    static const fake_resp_t table[] = {
        { "http://u/x/ab%2Fc", 200, "{}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    static const char *const body_opts[] = { "body={\"n\":{n},\"s\":{s}}", NULL };
    static const char *const vals[] = { "42", "ab/c" };
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/t/{n:int}/{s}", pool);
    bff_run_result_t res;

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "a", "GET", "http://u/x/{s}", NULL));
    ck_assert_ptr_null(add_backend(ep, "b", "POST", "http://u/y", body_opts));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    fk.table = table;
    bff_engine_run(&res, ep, vals, NULL, &fetcher, pool);
    ck_assert_ptr_nonnull(strstr(fk.log, "GET http://u/x/ab%2Fc\n"));
    ck_assert_ptr_nonnull(strstr(fk.log,
                                 "POST http://u/y {\"n\":42,\"s\":\"ab/c\"}\n"));
}
END_TEST

START_TEST(body_references_in_post_endpoints)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 200, "{\"id\":7}", 0, 0 },
        { "http://u/orders", 201, "{\"id\":1}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    static const char *const body_opts[] = {
        "body={\"user\":{user.id},\"items\":{body.items}}", NULL };
    bff_endpoint_t *ep = bff_endpoint_create("POST", "/o/{uid:int}", pool);
    bff_endpoint_t *get = bff_endpoint_create("GET", "/g", pool);
    bff_call_ctx_t cc;
    bff_run_result_t res;
    const char *err;

    memset(&cc, 0, sizeof(cc));
    cc.body = json_pack("{s:[{s:s,s:i}]}", "items", "sku", "ABC-1", "qty", 2);
    bff_json_pool_own((json_t *)cc.body, pool);
    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "user", "GET", "http://u/users/{uid}",
                                   NULL));
    ck_assert_ptr_null(add_backend(ep, "order", "POST", "http://u/orders",
                                   body_opts));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    fk.table = table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_ptr_nonnull(strstr(fk.log, "POST http://u/orders {\"user\":7,"
                                 "\"items\":[{\"sku\":\"ABC-1\",\"qty\":2}]}\n"));

    /* "body" is only a root where there is a body, and never a name */
    ck_assert_ptr_null(bff_route_compile(&get->route, get->pattern, pool));
    ck_assert_ptr_null(add_backend(get, "a", "GET", "http://u/{body.x}", NULL));
    err = bff_endpoint_finalize(get, pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "names neither"));
    ep = bff_endpoint_create("PUT", "/o", pool);
    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "body", "GET", "http://u/x", NULL));
    err = bff_endpoint_finalize(ep, pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "request body"));
}
END_TEST

START_TEST(invalid_utf8_param_is_400)
{
    static const char *const vals[] = { "\xff\xfe" };
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/t/{s}", pool);
    bff_run_result_t res;

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "a", "GET", "http://u/x/{s}", NULL));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    bff_engine_run(&res, ep, vals, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 400);
    ck_assert_str_eq(fk.log, "");
}
END_TEST

START_TEST(missing_scalar_reference_fails_backend)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 200, "{\"name\":\"no id\"}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/p/{user_id:int}", pool);
    bff_run_result_t res;

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "user", "GET", "http://u/users/{user_id}", NULL));
    ck_assert_ptr_null(add_backend(ep, "team", "GET", "http://t/teams/{user.team_id}", NULL));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    fk.table = table;
    bff_engine_run(&res, ep, v7, NULL, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 0);
    ck_assert_str_eq(res.results[1].reason, "missing input");
    ck_assert_ptr_null(strstr(fk.log, "http://t/"));
}
END_TEST

/* ----------------------------------------------------- policy hooks -- */

typedef struct {
    const char *refuse;          /* backend name refused by admit */
    const char *refuse_reason;
    int fail_first;              /* attempt 1 goes to URL "?fail" */
    long retry_ms;               /* -1: no retry */
    int max_attempts;
    int admits, reports, cancels, retries_asked;
    char log[1024];
} pol_t;

static const char *pol_admit(void *baton, const bff_backend_t *be, int attempt,
                             const char **url, void **token, apr_pool_t *p)
{
    pol_t *pl = baton;
    char line[256];

    pl->admits++;
    snprintf(line, sizeof(line), "admit %s %d\n", be->name, attempt);
    strncat(pl->log, line, sizeof(pl->log) - strlen(pl->log) - 1);
    if (pl->refuse && !strcmp(be->name, pl->refuse)) {
        return pl->refuse_reason;
    }
    if (pl->fail_first && attempt == 1) {
        *url = apr_pstrcat(p, *url, "?fail", NULL);
    }
    *token = (void *)be;
    return NULL;
}

static void pol_report(void *baton, const bff_backend_t *be, void *token,
                       const bff_fetch_req_t *req, int cancelled)
{
    pol_t *pl = baton;
    char line[256];

    ck_assert_ptr_eq(token, be);
    pl->reports++;
    pl->cancels += cancelled;
    snprintf(line, sizeof(line), "report %s %d %s\n", be->name,
             cancelled ? -1 : req->status, req->url);
    strncat(pl->log, line, sizeof(pl->log) - strlen(pl->log) - 1);
}

static long pol_retry(void *baton, const bff_backend_t *be, void *token,
                      const bff_fetch_req_t *req, int attempt)
{
    pol_t *pl = baton;

    pl->retries_asked++;
    return attempt < pl->max_attempts ? pl->retry_ms : -1;
}

static bff_policy_t policy_of(pol_t *pl)
{
    bff_policy_t po = { pol_admit, pol_report, pol_retry, pl };
    return po;
}

/* One backend, "user", on GET http://u/users/{user_id} */
static bff_endpoint_t *user_endpoint(void)
{
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/p/{user_id:int}", pool);

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ck_assert_ptr_null(add_backend(ep, "user", "GET", "http://u/users/{user_id}",
                                   NULL));
    ck_assert_ptr_null(bff_endpoint_finalize(ep, pool));
    return ep;
}

START_TEST(policy_refusal_of_optional_is_partial)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    pol_t pl = { "orders", "circuit open", 0, -1, 1, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };

    fk.table = ok_table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 0);
    ck_assert_ptr_null(strstr(fk.log, "http://o/"));
    ck_assert_int_eq(res.results[1].refused, 1);
    ck_assert_int_eq(res.results[1].attempts, 0);
    ck_assert_str_eq(dump(json_object_get(res.doc, "_errors")),
                     "{\"orders\":{\"status\":null,\"reason\":\"circuit open\"},"
                     "\"products\":{\"status\":null,\"reason\":\"dependency 'orders' failed\"}}");
    /* products depends on orders: skipped, never admitted */
    ck_assert_int_eq(pl.admits, 2);
    ck_assert_int_eq(pl.reports, 1);
}
END_TEST

START_TEST(policy_refusal_of_required_is_503)
{
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    pol_t pl = { "user", "circuit open", 0, -1, 1, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };

    fk.table = ok_table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(res.backend, "user");
    ck_assert_str_eq(res.detail, "required backend 'user' failed: circuit open");
    ck_assert_ptr_null(strstr(fk.log, "http://u/"));
}
END_TEST

START_TEST(policy_retry_then_success)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7?fail", 503, "{}", 0, 0 },
        { "http://u/users/7", 200, "{\"id\":7}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = user_endpoint();
    bff_run_result_t res;
    pol_t pl = { NULL, NULL, 1, 20, 3, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };
    apr_time_t t0;

    fk.table = table;
    t0 = apr_time_now();
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    /* the retry waited for its backoff */
    ck_assert_int_ge(apr_time_now() - t0, apr_time_from_msec(20));
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 1);
    ck_assert_int_eq(res.results[0].attempts, 2);
    ck_assert_str_eq(fk.log, "GET http://u/users/7?fail\ndone http://u/users/7?fail\n"
                             "GET http://u/users/7\ndone http://u/users/7\n");
    ck_assert_str_eq(pl.log, "admit user 1\nreport user 503 http://u/users/7?fail\n"
                             "admit user 2\nreport user 200 http://u/users/7\n");
}
END_TEST

START_TEST(policy_retries_stop_at_attempts)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 502, "{}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = user_endpoint();
    bff_run_result_t res;
    pol_t pl = { NULL, NULL, 0, 1, 3, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };

    fk.table = table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.results[0].attempts, 3);
    ck_assert_int_eq(pl.reports, 3);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.results[0].reason, "HTTP 502");
}
END_TEST

START_TEST(policy_retry_never_past_deadline)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 503, "{}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = user_endpoint();
    bff_run_result_t res;
    pol_t pl = { NULL, NULL, 0, 500, 5, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };
    apr_time_t t0;

    ep->timeout_ms = 100;
    fk.table = table;
    t0 = apr_time_now();
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    /* a 500 ms backoff does not fit in a 100 ms deadline: no retry, no wait */
    ck_assert_int_lt(apr_time_now() - t0, apr_time_from_msec(100));
    ck_assert_int_eq(res.results[0].attempts, 1);
    ck_assert_int_eq(pl.retries_asked, 1);
}
END_TEST

START_TEST(policy_hung_call_reported_as_timeout)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 200, "{}", 0, 0 },
        { "http://o/orders/user/7", 200, "[]", 0, 1 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    pol_t pl = { NULL, NULL, 0, -1, 1, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };

    ep->timeout_ms = 50;
    fk.table = table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.results[1].err, BFF_FETCH_ETIMEOUT);
    /* the breaker hears of the timeout; nothing is left unreported */
    ck_assert_int_eq(pl.reports, pl.admits);
    ck_assert_int_eq(pl.cancels, 0);
    ck_assert_ptr_nonnull(strstr(pl.log, "report orders 0 http://o/orders/user/7\n"));
}
END_TEST

START_TEST(policy_cancelled_call_reported)
{
    static const fake_resp_t table[] = {
        { "http://u/users/7", 500, "{}", 0, 0 },
        { "http://o/orders/user/7", 200, "[]", 0, 1 },
        { NULL, 0, NULL, 0, 0 }
    };
    bff_endpoint_t *ep = profile_endpoint();
    bff_run_result_t res;
    pol_t pl = { NULL, NULL, 0, -1, 1, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };

    fk.table = table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.status, 502);
    ck_assert_int_eq(pl.reports, 2);
    ck_assert_int_eq(pl.cancels, 1);
}
END_TEST

START_TEST(policy_per_item_retries)
{
    static const fake_resp_t table[] = {
        { "http://o/orders/user/7?fail", 503, "{}", 0, 0 },
        { "http://o/orders/user/7", 200,
          "[{\"product_id\":3},{\"product_id\":5},{\"product_id\":8}]", 0, 0 },
        { "http://p/products/3?fail", 502, "{}", 0, 0 },
        { "http://p/products/5?fail", 0, NULL, BFF_FETCH_ECONNECT, 0 },
        { "http://p/products/8?fail", 503, "{}", 0, 0 },
        { "http://p/products/3", 200, "{\"id\":3}", 0, 0 },
        { "http://p/products/5", 200, "{\"id\":5}", 0, 0 },
        { "http://p/products/8", 200, "{\"id\":8}", 0, 0 },
        { NULL, 0, NULL, 0, 0 }
    };
    static const char *const opts[] = { "per-item", "concurrency=2", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 0);
    bff_run_result_t res;
    pol_t pl = { NULL, NULL, 1, 5, 2, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };
    int k;

    fk.table = table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.status, 200);
    ck_assert_int_eq(res.completed, 1);
    ck_assert_str_eq(dump(json_object_get(res.doc, "products")),
                     "[{\"id\":3},{\"id\":5},{\"id\":8}]");
    ck_assert_int_eq(res.results[0].attempts, 2);
    for (k = 0; k < 3; k++) {
        ck_assert_int_eq(res.results[1].items[k].attempts, 2);
    }
    /* every call admitted was reported: 2 orders + 6 items */
    ck_assert_int_eq(pl.admits, 8);
    ck_assert_int_eq(pl.reports, 8);
    ck_assert_int_le(fk.max_inflight, 2);
}
END_TEST

START_TEST(policy_per_item_refusal_of_required_is_503)
{
    static const char *const opts[] = { "per-item", NULL };
    bff_endpoint_t *ep = fanout_endpoint(opts, 1);
    bff_run_result_t res;
    pol_t pl = { "products", "circuit open", 0, -1, 1, 0, 0, 0, 0, "" };
    bff_policy_t po = policy_of(&pl);
    bff_call_ctx_t cc = { NULL, NULL, NULL, NULL, NULL, &po, NULL };

    fk.table = fan_table;
    bff_engine_run(&res, ep, v7, &cc, &fetcher, pool);
    ck_assert_int_eq(res.status, 503);
    ck_assert_ptr_nonnull(strstr(res.detail, "circuit open"));
    ck_assert_ptr_null(strstr(fk.log, "http://p/"));
}
END_TEST

/* ------------------------------------------------------ config checks -- */

static const char *finalize_with(const char *const *names, const char *const *urls,
                                 const char *opt)
{
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/p/{id:int}", pool);
    const char *const opts[] = { opt, NULL };
    const char *err;
    int i;

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    for (i = 0; names[i]; i++) {
        if ((err = add_backend(ep, names[i], "GET", urls[i],
                               i == 0 ? opts : NULL))) {
            return err;
        }
    }
    return bff_endpoint_finalize(ep, pool);
}

START_TEST(config_errors)
{
    static const char *const two[] = { "a", "b", NULL };
    static const char *const dup[] = { "a", "a", NULL };
    static const char *const one[] = { "a", NULL };
    static const char *const bad[] = { "_x", NULL };
    static const char *const clash[] = { "id", NULL };
    static const char *const cyc_urls[] = { "http://h/{b.x}", "http://h/{a.y}" };
    static const char *const unknown_urls[] = { "http://h/{nosuch.x}" };
    static const char *const self_urls[] = { "http://h/{a.x}" };
    static const char *const ok_urls[] = { "http://h/{id}", "http://h/{id}" };
    const char *err;

    ck_assert_ptr_null(finalize_with(two, ok_urls, NULL));
    err = finalize_with(dup, ok_urls, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "defined twice"));
    err = finalize_with(two, cyc_urls, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "cycle"));
    err = finalize_with(one, unknown_urls, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "{nosuch.x}"));
    err = finalize_with(one, self_urls, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "own reply"));
    err = finalize_with(bad, ok_urls, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "invalid"));
    err = finalize_with(clash, ok_urls, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "parameter"));
    err = finalize_with(one, ok_urls, "required");
    ck_assert_ptr_null(err);
    err = finalize_with(one, ok_urls, "body={\"a\":1}");
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "body="));
}
END_TEST

START_TEST(backend_option_errors)
{
    bff_backend_t be;
    const char *err;

    memset(&be, 0, sizeof(be));
    be.name = "x";
    ck_assert_ptr_null(bff_backend_option(&be, "required", pool));
    ck_assert_int_eq(be.required, 1);
    ck_assert_ptr_null(bff_backend_option(&be, "timeout=250ms", pool));
    ck_assert_int_eq(be.timeout_ms, 250);
    ck_assert_ptr_null(bff_backend_option(&be, "max-size=2k", pool));
    ck_assert_uint_eq(be.max_body, 2048);
    err = bff_backend_option(&be, "default={oops", pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "invalid JSON"));
    err = bff_backend_option(&be, "timeout=0", pool);
    ck_assert_ptr_nonnull(err);
    err = bff_backend_option(&be, "retries=3", pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "unknown option 'retries='"));
    err = bff_backend_option(&be, "body={\"ids\":{orders[].id}", pool);
    ck_assert_ptr_nonnull(err);
    /* required and a default contradict each other */
    {
        static const char *const one[] = { "a", NULL };
        static const char *const urls[] = { "http://h/{id}" };
        bff_endpoint_t *ep = bff_endpoint_create("GET", "/p/{id:int}", pool);
        static const char *const opts[] = { "required", "default=[]", NULL };
        ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
        ck_assert_ptr_null(add_backend(ep, one[0], "GET", urls[0], opts));
        err = bff_endpoint_finalize(ep, pool);
        ck_assert_ptr_nonnull(err);
        ck_assert_ptr_nonnull(strstr(err, "required"));
    }
}
END_TEST

START_TEST(too_many_backends)
{
    bff_endpoint_t *ep = bff_endpoint_create("GET", "/p/{id:int}", pool);
    const char *err;
    int i;

    ck_assert_ptr_null(bff_route_compile(&ep->route, ep->pattern, pool));
    ep->max_backends = 2;
    for (i = 0; i < 3; i++) {
        ck_assert_ptr_null(add_backend(ep, apr_psprintf(pool, "b%d", i), "GET",
                                       "http://h/{id}", NULL));
    }
    err = bff_endpoint_finalize(ep, pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "limit of 2"));
}
END_TEST

START_TEST(problem_document)
{
    json_t *pb = bff_problem(400, "Bad Request", "parameter 'id'", "/p/x", pool);

    ck_assert_str_eq(dump(pb), "{\"type\":\"about:blank\",\"title\":\"Bad Request\","
                     "\"status\":400,\"detail\":\"parameter 'id'\",\"instance\":\"/p/x\"}");
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("run");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, merged_in_config_order, 0, 2);
    tcase_add_test(tc, independent_calls_concurrent_dependent_after);
    tcase_add_test(tc, dependent_starts_as_soon_as_its_input_is_ready);
    tcase_add_test(tc, optional_failure_gives_partial_answer);
    tcase_add_test(tc, optional_failure_kinds);
    tcase_add_test(tc, json_depth_limit);
    tcase_add_test(tc, required_failure_status);
    tcase_add_loop_test(tc, deadline_fails_hanging_backends, 0, 2);
    tcase_add_test(tc, required_hang_gives_504);
    tcase_add_test(tc, call_context_headers_and_query);
    tcase_add_test(tc, default_is_copied_before_shaping);
    tcase_add_test(tc, param_types_in_templates);
    tcase_add_test(tc, body_references_in_post_endpoints);
    tcase_add_test(tc, invalid_utf8_param_is_400);
    tcase_add_test(tc, missing_scalar_reference_fails_backend);
    tcase_add_test(tc, policy_refusal_of_optional_is_partial);
    tcase_add_test(tc, policy_refusal_of_required_is_503);
    tcase_add_test(tc, policy_retry_then_success);
    tcase_add_test(tc, policy_retries_stop_at_attempts);
    tcase_add_test(tc, policy_retry_never_past_deadline);
    tcase_add_test(tc, policy_hung_call_reported_as_timeout);
    tcase_add_test(tc, policy_cancelled_call_reported);
    tcase_add_test(tc, policy_per_item_retries);
    tcase_add_test(tc, policy_per_item_refusal_of_required_is_503);
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, backend_option_errors);
    tcase_add_test(tc, too_many_backends);
    tcase_add_test(tc, problem_document);
    tcase_add_loop_test(tc, per_item_unique_stable_order_capped, 0, 2);
    tcase_add_test(tc, per_item_default_cap_is_4);
    tcase_add_test(tc, per_item_failure_is_partial);
    tcase_add_test(tc, per_item_all_failed_uses_default);
    tcase_add_test(tc, per_item_required_failure_is_502);
    tcase_add_test(tc, per_item_no_items_no_calls);
    tcase_add_test(tc, per_item_max_items);
    tcase_add_test(tc, per_item_bytes_bounded);
    tcase_add_test(tc, join_bound_fails_answer);
    tcase_add_test(tc, query_to_get_calls_only);
    tcase_add_test(tc, per_item_deadline);
    tcase_add_test(tc, per_item_config_errors);
    tcase_add_test(tc, presentation_pipeline);
    tcase_add_test(tc, presentation_conflict_is_502);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
