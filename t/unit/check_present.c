/*
 * Unit tests for the client-specific presentation core (lib/bff_present.c):
 * joins, lifts, renames, wraps, drop-empty, merge policies, sparse
 * fieldsets; and bff_query_get.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_engine.h"
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

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

    ck_assert_msg(j != NULL, "bad test JSON %s: %s", text, e.text);
    return bff_json_pool_own(j, pool);
}

static const char *dump(const json_t *doc)
{
    apr_size_t len;
    const char *s = bff_json_dump(&len, doc, pool);

    return apr_pstrmemdup(pool, s, len);
}

/* Applies pr (joins, then the rest) to text; returns the result or the
 * conflict as "ERR: ...". */
static const char *run(const bff_present_t *pr, const char *text)
{
    json_t *doc = J(text);
    const char *err;
    apr_size_t copied;

    err = bff_present_joins(&copied, pr, doc, 1 << 20, pool);
    if (!err) {
        err = bff_present_apply(pr, doc, pool);
    }
    return err ? apr_pstrcat(pool, "ERR: ", err, NULL) : dump(doc);
}

/* ------------------------------------------------------------- joins -- */

START_TEST(join_attaches_copies_and_nulls)
{
    bff_present_t *pr = bff_present_create(pool);
    apr_size_t copied;
    json_t *doc;
    json_t *o;

    ck_assert_ptr_null(bff_present_join(pr, "orders[].product",
                                        "products[].id=orders[].pid", 0,
                                        pool));
    ck_assert_str_eq(run(pr,
        "{\"orders\":[{\"pid\":1},{\"pid\":2},{\"pid\":1},{\"pid\":\"1\"},"
        "{\"x\":0},7],\"products\":[{\"id\":1,\"n\":\"a\"},{\"id\":1,\"n\":\"dup\"},"
        "{\"id\":3,\"n\":\"c\"},5]}"),
        "{\"orders\":[{\"pid\":1,\"product\":{\"id\":1,\"n\":\"a\"}},"
        "{\"pid\":2,\"product\":null},{\"pid\":1,\"product\":{\"id\":1,\"n\":\"a\"}},"
        "{\"pid\":\"1\",\"product\":null},{\"x\":0,\"product\":null},7],"
        "\"products\":[{\"id\":1,\"n\":\"a\"},{\"id\":1,\"n\":\"dup\"},"
        "{\"id\":3,\"n\":\"c\"},5]}");

    /* the attached objects are copies: editing one leaves the others */
    doc = J("{\"orders\":[{\"pid\":1},{\"pid\":1}],\"products\":[{\"id\":1}]}");
    ck_assert_ptr_null(bff_present_joins(&copied, pr, doc, 1 << 20, pool));
    ck_assert_uint_eq(copied, 2 * strlen("{\"id\":1}"));
    o = json_object_get(json_array_get(json_object_get(doc, "orders"), 0),
                        "product");
    json_object_set_new(o, "edited", json_true());
    ck_assert_str_eq(dump(doc), "{\"orders\":[{\"pid\":1,\"product\":{\"id\":1,"
                     "\"edited\":true}},{\"pid\":1,\"product\":{\"id\":1}}],"
                     "\"products\":[{\"id\":1}]}");
}
END_TEST

START_TEST(join_nested_paths_and_missing_source)
{
    bff_present_t *pr = bff_present_create(pool);

    ck_assert_ptr_null(bff_present_join(pr, "a.list[].item",
                                        "s.data[].k.id=a.list[].ref.id", 0,
                                        pool));
    ck_assert_str_eq(run(pr,
        "{\"a\":{\"list\":[{\"ref\":{\"id\":\"x\"}}]},"
        "\"s\":{\"data\":[{\"k\":{\"id\":\"x\"},\"v\":1}]}}"),
        "{\"a\":{\"list\":[{\"ref\":{\"id\":\"x\"},\"item\":{\"k\":{\"id\":\"x\"},"
        "\"v\":1}}]},\"s\":{\"data\":[{\"k\":{\"id\":\"x\"},\"v\":1}]}}");
    /* no source list (a failed backend): every target is null */
    ck_assert_str_eq(run(pr, "{\"a\":{\"list\":[{\"ref\":{\"id\":\"x\"}}]},"
                         "\"s\":null}"),
        "{\"a\":{\"list\":[{\"ref\":{\"id\":\"x\"},\"item\":null}]},\"s\":null}");
    /* no target list: nothing happens */
    ck_assert_str_eq(run(pr, "{\"a\":{\"list\":{}}}"), "{\"a\":{\"list\":{}}}");
}
END_TEST

/* One source element matched by every element of a long list: the
 * copies are bounded in bytes, by the join's own limit or the caller's. */
START_TEST(join_copies_bounded)
{
    bff_present_t *pr = bff_present_create(pool);
    json_t *doc = J("{\"o\":[{\"x\":1},{\"x\":1},{\"x\":1},{\"x\":2}],"
                    "\"s\":[{\"id\":1,\"v\":\"0123456789\"}]}");
    const char *one = "{\"id\":1,\"v\":\"0123456789\"}";
    apr_size_t copied, n = strlen(one);

    ck_assert_ptr_null(bff_present_join(pr, "o[].p", "s[].id=o[].x", 0, pool));
    /* exactly three copies fit */
    ck_assert_ptr_null(bff_present_joins(&copied, pr, doc, 3 * n, pool));
    ck_assert_uint_eq(copied, 3 * n);
    /* one byte less: refused before the third copy is made */
    doc = J("{\"o\":[{\"x\":1},{\"x\":1},{\"x\":1}],"
            "\"s\":[{\"id\":1,\"v\":\"0123456789\"}]}");
    ck_assert_str_eq(bff_present_joins(&copied, pr, doc, 3 * n - 1, pool),
                     apr_psprintf(pool, "BFFJoin o[].p: the copies it makes "
                                  "exceed %" APR_SIZE_T_FMT " bytes "
                                  "(max-size)", 3 * n - 1));
    ck_assert_uint_eq(copied, 3 * n);
    ck_assert_ptr_null(json_object_get(json_array_get(json_object_get(doc,
                       "o"), 2), "p"));
    /* the join's own limit wins over the caller's */
    pr = bff_present_create(pool);
    ck_assert_ptr_null(bff_present_join(pr, "o[].p", "s[].id=o[].x", n,
                                        pool));
    doc = J("{\"o\":[{\"x\":1},{\"x\":1}],\"s\":[{\"id\":1}]}");
    ck_assert_ptr_null(bff_present_joins(&copied, pr, doc, 1, pool));
    doc = J("{\"o\":[{\"x\":1},{\"x\":1},{\"x\":1}],"
            "\"s\":[{\"id\":1,\"v\":\"0123456789\"}]}");
    ck_assert_ptr_nonnull(bff_present_joins(&copied, pr, doc, 1 << 20, pool));
}
END_TEST

START_TEST(join_config_errors)
{
    bff_present_t *pr = bff_present_create(pool);

    ck_assert_str_eq(bff_present_join(pr, "o[].p", "s[].id", 0, pool),
        "join 's[].id': expected SOURCE[].KEY=LIST[].FIELD, e.g. "
        "products[].id=orders[].product_id");
    ck_assert_str_eq(bff_present_join(pr, "o.p", "s[].id=o[].x", 0, pool),
        "join target 'o.p' must be a new field of the elements of one "
        "array, e.g. orders[].product");
    ck_assert_str_eq(bff_present_join(pr, "o[].p[].q", "s[].id=o[].x", 0, pool),
        "join target 'o[].p[].q' must be a new field of the elements of one "
        "array, e.g. orders[].product");
    ck_assert_str_eq(bff_present_join(pr, "o[].p", "s[]=o[].x", 0, pool),
        "join source 's[]' must be a field of the elements of one array, "
        "e.g. products[].id");
    ck_assert_str_eq(bff_present_join(pr, "o[].p", "s[].id=q[].x", 0, pool),
        "join key 'q[].x' must be a field of the elements of the target's "
        "array (o[].p)");
    ck_assert_str_eq(bff_present_join(pr, "o[].p", "s[].id=o[].x=", 0, pool),
        "join o[].p s[].id=o[].x=: reference 'o[].x=': invalid character "
        "'=' at offset 5 (expected '.' or the end)");
}
END_TEST

/* ------------------------------------------------------------- lifts -- */

START_TEST(lift_into_root_and_objects)
{
    bff_present_t *pr = bff_present_create(pool);

    ck_assert_ptr_null(bff_present_lift(pr, "user", NULL, pool));
    ck_assert_ptr_null(bff_present_lift(pr, "acct.plan", "meta.billing", pool));
    ck_assert_ptr_null(bff_present_lift(pr, "gone", "", pool));
    ck_assert_int_eq(bff_present_empty(pr), 0);
    ck_assert_str_eq(run(pr,
        "{\"user\":{\"id\":1,\"name\":\"a\"},\"acct\":{\"plan\":{\"tier\":2}},"
        "\"gone\":null}"),
        "{\"acct\":{},\"id\":1,\"name\":\"a\",\"meta\":{\"billing\":{\"tier\":2}}}");
    /* a lift into a value that is not an object drops the members */
    ck_assert_str_eq(run(pr, "{\"user\":{\"id\":1},\"acct\":{\"plan\":{\"t\":1}},"
                         "\"meta\":3}"),
                     "{\"acct\":{},\"meta\":3,\"id\":1}");
    ck_assert_str_eq(bff_present_lift(pr, "a[].b", NULL, pool),
                     "lift path 'a[].b' cannot go through an array");
    ck_assert_str_eq(bff_present_lift(pr, "a", "b[]", pool),
                     "lift target 'b[]' cannot go through an array");
}
END_TEST

static bff_present_t *two_lifts(const char *policy)
{
    bff_present_t *pr = bff_present_create(pool);

    ck_assert_ptr_null(bff_present_policy(pr, policy, pool));
    ck_assert_ptr_null(bff_present_lift(pr, "a", NULL, pool));
    ck_assert_ptr_null(bff_present_lift(pr, "b", NULL, pool));
    return pr;
}

START_TEST(merge_policies)
{
    const char *doc = "{\"a\":{\"k\":1,\"x\":1},\"b\":{\"k\":2,\"y\":2}}";
    bff_present_t *pr;

    ck_assert_str_eq(run(two_lifts("first-wins"), doc),
                     "{\"k\":1,\"x\":1,\"y\":2}");
    ck_assert_str_eq(run(two_lifts("last-wins"), doc),
                     "{\"k\":2,\"x\":1,\"y\":2}");
    ck_assert_str_eq(run(two_lifts("namespace"), doc),
                     "{\"k\":1,\"x\":1,\"b_k\":2,\"y\":2}");
    ck_assert_str_eq(run(two_lifts("ERROR"), doc),
                     "ERR: conflicting key 'k': 'b' writes a key that is "
                     "already there (BFFMergePolicy error)");
    ck_assert_int_eq(bff_present_get_policy(two_lifts("last-wins")),
                     BFF_MERGE_LAST);
    /* no collision, no error */
    ck_assert_str_eq(run(two_lifts("error"), "{\"a\":{\"x\":1},\"b\":{\"y\":2}}"),
                     "{\"x\":1,\"y\":2}");
    pr = bff_present_create(pool);
    ck_assert_int_eq(bff_present_get_policy(pr), BFF_MERGE_ERROR);
    ck_assert_str_eq(bff_present_policy(pr, "newest", pool),
                     "unknown merge policy 'newest' (expected error, "
                     "first-wins, last-wins or namespace)");
}
END_TEST

/* ----------------------------------------------------------- renames -- */

START_TEST(rename_moves_values)
{
    bff_present_t *pr = bff_present_create(pool);

    ck_assert_ptr_null(bff_present_rename(pr, "user.name", "name", pool));
    ck_assert_ptr_null(bff_present_rename(pr, "user.mail", "contact.email.work",
                                          pool));
    ck_assert_ptr_null(bff_present_rename(pr, "orders[].total",
                                          "orders[].amount", pool));
    ck_assert_ptr_null(bff_present_rename(pr, "orders[].p.name",
                                          "orders[].product_name", pool));
    ck_assert_ptr_null(bff_present_rename(pr, "nothing.here", "x", pool));
    ck_assert_str_eq(run(pr,
        "{\"user\":{\"name\":\"a\",\"mail\":\"m\"},"
        "\"orders\":[{\"total\":1,\"p\":{\"name\":\"pen\"}},{\"p\":null},3]}"),
        "{\"user\":{},\"orders\":[{\"p\":{},\"amount\":1,\"product_name\":\"pen\"},"
        "{\"p\":null},3],\"name\":\"a\",\"contact\":{\"email\":{\"work\":\"m\"}}}");
    /* a destination through a non-object: the value is dropped */
    ck_assert_str_eq(run(pr, "{\"user\":{\"mail\":\"m\"},\"contact\":[1]}"),
                     "{\"user\":{},\"contact\":[1]}");
}
END_TEST

START_TEST(rename_collisions_follow_the_policy)
{
    const char *doc = "{\"user\":{\"id\":1},\"id\":9}";
    const char *pol[] = { "first-wins", "last-wins", "namespace", "error" };
    const char *want[] = {
        "{\"user\":{},\"id\":9}",
        "{\"user\":{},\"id\":1}",
        "{\"user\":{},\"id\":9,\"user_id\":1}",
        "ERR: conflicting key 'id': 'user' writes a key that is already "
        "there (BFFMergePolicy error)"
    };
    int i;

    for (i = 0; i < 4; i++) {
        bff_present_t *pr = bff_present_create(pool);
        ck_assert_ptr_null(bff_present_policy(pr, pol[i], pool));
        ck_assert_ptr_null(bff_present_rename(pr, "user.id", "id", pool));
        ck_assert_str_eq(run(pr, doc), want[i]);
    }
}
END_TEST

START_TEST(rename_config_errors)
{
    bff_present_t *pr = bff_present_create(pool);

    ck_assert_str_eq(bff_present_rename(pr, "o[].a", "b", pool),
        "rename o[].a b: both paths must go through the same arrays (e.g. "
        "orders[].quantity orders[].qty)");
    ck_assert_str_eq(bff_present_rename(pr, "o[].a", "p[].a", pool),
        "rename o[].a p[].a: both paths must go through the same arrays (e.g. "
        "orders[].quantity orders[].qty)");
    ck_assert_str_eq(bff_present_rename(pr, "o[]", "o[]", pool),
                     "rename o[] o[]: a path cannot end in []");
    ck_assert_str_eq(bff_present_rename(pr, "a.b", "a.b", pool),
                     "rename a.b a.b: same path");
    ck_assert_str_eq(bff_present_rename(pr, "a b", "c", pool),
                     "rename a b c: reference 'a b': invalid character 0x20 "
                     "at offset 1 (expected '.' or the end)");
    ck_assert_int_eq(bff_present_empty(pr), 1);
}
END_TEST

START_TEST(config_time_collisions)
{
    apr_array_header_t *roots = apr_array_make(pool, 2, sizeof(const char *));
    bff_present_t *pr = bff_present_create(pool);

    APR_ARRAY_PUSH(roots, const char *) = "user";
    APR_ARRAY_PUSH(roots, const char *) = "orders";
    ck_assert_ptr_null(bff_present_rename(pr, "user.name", "name", pool));
    ck_assert_ptr_null(bff_present_check(pr, roots, pool));
    ck_assert_ptr_null(bff_present_rename(pr, "orders", "name", pool));
    ck_assert_str_eq(bff_present_check(pr, roots, pool),
        "BFFRename user.name name and BFFRename orders name write the same "
        "key (BFFMergePolicy error)");
    /* other policies resolve it at run time */
    ck_assert_ptr_null(bff_present_policy(pr, "last-wins", pool));
    ck_assert_ptr_null(bff_present_check(pr, roots, pool));

    pr = bff_present_create(pool);
    ck_assert_ptr_null(bff_present_rename(pr, "user.x", "orders", pool));
    ck_assert_str_eq(bff_present_check(pr, roots, pool),
        "BFFRename user.x orders: 'orders' is already the key of backend "
        "'orders' (BFFMergePolicy error)");
    /* unless that backend's key is lifted or renamed away */
    ck_assert_ptr_null(bff_present_lift(pr, "orders", NULL, pool));
    ck_assert_ptr_null(bff_present_check(pr, roots, pool));
}
END_TEST

/* ------------------------------------------------ wraps, drop-empty -- */

START_TEST(wrap_values)
{
    bff_present_t *pr = bff_present_create(pool);

    ck_assert_ptr_null(bff_present_wrap(pr, "orders", "items", pool));
    ck_assert_ptr_null(bff_present_wrap(pr, "a.b", "v", pool));
    ck_assert_ptr_null(bff_present_wrap(pr, "missing", "v", pool));
    ck_assert_str_eq(run(pr, "{\"orders\":[1,2],\"a\":{\"b\":null}}"),
                     "{\"orders\":{\"items\":[1,2]},\"a\":{\"b\":{\"v\":null}}}");
    ck_assert_str_eq(bff_present_wrap(pr, "a", "b.c", pool),
                     "wrap key 'b.c' must be one name");
    ck_assert_str_eq(bff_present_wrap(pr, "a[]", "b", pool),
                     "wrap path 'a[]' cannot go through an array");
}
END_TEST

START_TEST(drop_empty_values)
{
    bff_present_t *pr = bff_present_create(pool);

    bff_present_drop_empty(pr, 1);
    ck_assert_str_eq(run(pr,
        "{\"a\":null,\"b\":\"\",\"c\":[],\"d\":{},\"e\":{\"f\":{\"g\":null}},"
        "\"h\":[null,{},{\"i\":\"\",\"j\":0}],\"k\":false,\"l\":\" \"}"),
        "{\"h\":[null,{},{\"j\":0}],\"k\":false,\"l\":\" \"}");
    ck_assert_str_eq(run(pr, "{\"a\":{}}"), "{}");
    bff_present_drop_empty(pr, 0);
    ck_assert_int_eq(bff_present_empty(pr), 1);
    ck_assert_str_eq(run(pr, "{\"a\":{}}"), "{\"a\":{}}");
}
END_TEST

START_TEST(order_lift_rename_wrap_drop)
{
    bff_present_t *pr = bff_present_create(pool);

    /* directive order across kinds does not matter: lifts, renames,
     * wraps, drop-empty */
    bff_present_drop_empty(pr, 1);
    ck_assert_ptr_null(bff_present_wrap(pr, "list", "data", pool));
    ck_assert_ptr_null(bff_present_rename(pr, "items", "list", pool));
    ck_assert_ptr_null(bff_present_lift(pr, "user", NULL, pool));
    ck_assert_str_eq(run(pr, "{\"user\":{\"items\":[1],\"e\":\"\"}}"),
                     "{\"list\":{\"data\":[1]}}");
}
END_TEST

/* ------------------------------------------------------------ fields -- */

static bff_fields_t *web_fields(void)
{
    bff_fields_t *fl = bff_fields_create(pool);

    ck_assert_ptr_null(bff_fields_allow(fl, "user", pool));
    ck_assert_ptr_null(bff_fields_allow(fl, "orders[].total", pool));
    ck_assert_ptr_null(bff_fields_allow(fl, "orders.id", pool));
    ck_assert_ptr_null(bff_fields_forbid(fl, "user.password_hash", pool));
    return fl;
}

START_TEST(fields_accepted_and_normalised)
{
    bff_fields_t *fl = web_fields();
    bff_fields_sel_t sel;

    ck_assert_int_eq(bff_fields_count(fl), 3);
    ck_assert_str_eq(apr_array_pstrcat(pool, bff_fields_allowed(fl), ' '),
                     "user orders.total orders.id");
    ck_assert_int_eq(bff_fields_select(&sel, fl,
        " user.name ,orders[].total,,user.address.city,user.name,\torders.id",
        pool), 1);
    ck_assert_str_eq(sel.norm,
                     "orders.id,orders.total,user.address.city,user.name");
    ck_assert_int_eq(sel.fields->nelts, 4);
    ck_assert_ptr_null(sel.error);
    ck_assert_int_eq(bff_fields_select(&sel, fl, "user", pool), 1);
    ck_assert_str_eq(sel.norm, "user");
}
END_TEST

START_TEST(fields_refused)
{
    bff_fields_t *fl = web_fields();
    bff_fields_sel_t sel;
    char big[80 * 3];
    int i;

    ck_assert_int_eq(bff_fields_select(&sel, fl,
        "user.password_hash.x,orders,usr,orders.totals,a..b,user.name,"
        "user.password_hash", pool), 0);
    ck_assert_str_eq(apr_array_pstrcat(pool, sel.forbidden, ' '),
                     "user.password_hash.x user.password_hash");
    /* a parent of an allowed path is not allowed, nor a longer name */
    ck_assert_str_eq(apr_array_pstrcat(pool, sel.unknown, ' '),
                     "orders usr orders.totals a..b");
    ck_assert_ptr_null(sel.error);

    ck_assert_int_eq(bff_fields_select(&sel, fl, " , ,", pool), 0);
    ck_assert_str_eq(sel.error, "the field list is empty");
    ck_assert_int_eq(bff_fields_select(&sel, fl, NULL, pool), 0);
    ck_assert_str_eq(sel.error, "the field list is empty");

    for (i = 0; i < 65; i++) {
        memcpy(big + 2 * i, "u,", 2);
    }
    big[2 * 65 - 1] = '\0';
    ck_assert_int_eq(bff_fields_select(&sel, fl, big, pool), 0);
    ck_assert_str_eq(sel.error, "more than 64 fields");
    big[2 * 64 - 1] = '\0';
    ck_assert_int_eq(bff_fields_select(&sel, fl, big, pool), 0);
    ck_assert_ptr_null(sel.error);    /* 64 unknown fields, not too many */

    ck_assert_int_eq(bff_fields_select(&sel, fl,
        apr_pstrcat(pool, "user.", apr_pstrndup(pool,
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            252), NULL), pool), 0);
    ck_assert_str_eq(sel.error, "a field is longer than 256 bytes");
    ck_assert_str_eq(bff_fields_allow(fl, "a b", pool),
                     "reference 'a b': invalid character 0x20 at offset 1 "
                     "(expected '.' or the end)");
    ck_assert_int_eq(bff_fields_count(fl), 3);
}
END_TEST

START_TEST(fields_shape_keeps_the_selection)
{
    bff_fields_t *fl = web_fields();
    bff_fields_sel_t sel;
    json_t *doc = J("{\"user\":{\"name\":\"a\",\"age\":3},\"orders\":[{\"id\":1,"
                    "\"total\":2,\"x\":3}],\"other\":1}");

    ck_assert_int_eq(bff_fields_select(&sel, fl, "orders.total,user.name", pool),
                     1);
    bff_shape_apply(bff_fields_shape(sel.fields, pool), doc);
    ck_assert_str_eq(dump(doc),
                     "{\"user\":{\"name\":\"a\"},\"orders\":[{\"total\":2}]}");
}
END_TEST

/* -------------------------------------------------------- query_get -- */

START_TEST(query_get_values)
{
    ck_assert_ptr_null(bff_query_get(NULL, "fields", pool));
    ck_assert_ptr_null(bff_query_get("a=1&fieldsx=2", "fields", pool));
    ck_assert_str_eq(bff_query_get("fields=a.b,c", "fields", pool), "a.b,c");
    ck_assert_str_eq(bff_query_get("x=1&fields=a%2Cb+c&y&fields=d", "fields",
                                   pool), "a,b c,d");
    ck_assert_str_eq(bff_query_get("fields", "fields", pool), "");
    ck_assert_str_eq(bff_query_get("fields=%zz&fields=e", "fields", pool),
                     ",e");
    ck_assert_str_eq(bff_query_get("fi%65lds=q", "fields", pool), "q");
}
END_TEST

static Suite *present_suite(void)
{
    Suite *s = suite_create("present");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, join_attaches_copies_and_nulls);
    tcase_add_test(tc, join_nested_paths_and_missing_source);
    tcase_add_test(tc, join_copies_bounded);
    tcase_add_test(tc, join_config_errors);
    tcase_add_test(tc, lift_into_root_and_objects);
    tcase_add_test(tc, merge_policies);
    tcase_add_test(tc, rename_moves_values);
    tcase_add_test(tc, rename_collisions_follow_the_policy);
    tcase_add_test(tc, rename_config_errors);
    tcase_add_test(tc, config_time_collisions);
    tcase_add_test(tc, wrap_values);
    tcase_add_test(tc, drop_empty_values);
    tcase_add_test(tc, order_lift_rename_wrap_drop);
    tcase_add_test(tc, fields_accepted_and_normalised);
    tcase_add_test(tc, fields_refused);
    tcase_add_test(tc, fields_shape_keeps_the_selection);
    tcase_add_test(tc, query_get_values);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(present_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
