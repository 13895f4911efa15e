/*
 * Unit tests for the JSON Schema validator (lib/bff_schema.c,
 * lib/bff_schema_format.c) and the typed rules (lib/bff_rule.c): the
 * official JSON-Schema-Test-Suite for draft-07 (Debian package
 * json-schema-test-suite), then what the suite does not cover: error lists
 * (pointers, keywords, the cap), uniqueItems on large arrays, schema errors
 * naming their pointer, refused remote references, bounded bodies, rules
 * for query parameters and headers.
 *
 * BFF_SCHEMA_SUITE overrides the suite's directory;
 * BFF_SCHEMA_SUITE_VERBOSE=1 prints the count of every file (the README's
 * table) and each failing case.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_schema.h"

#define SUITE_DIR "/usr/share/json-schema-test-suite/tests/draft7"
/* the one file allowed to fail: it needs a server on localhost:1234, and
 * references to other documents are refused by design */
#define REMOTE_FILE "refRemote.json"

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

static bff_schema_t *S(const char *text, int flags)
{
    bff_schema_t *s;
    const char *err = bff_schema_compile(&s, J(text), "t.json", flags, pool);

    ck_assert_msg(err == NULL, "schema %s: %s", text, err);
    return s;
}

/* ------------------------------------------------- the official suite -- */

typedef struct {
    int passed, total;
} count_t;

static count_t run_file(const char *path, int flags, int verbose)
{
    json_error_t e;
    json_t *groups = json_load_file(path, 0, &e), *g;
    count_t c = { 0, 0 };
    size_t gi;

    ck_assert_msg(groups != NULL, "%s: %s", path, e.text);
    json_array_foreach(groups, gi, g) {
        json_t *tests = json_object_get(g, "tests"), *t;
        bff_schema_t *s;
        const char *err = bff_schema_compile(&s, json_object_get(g, "schema"),
                                             path, flags, pool);
        size_t ti;

        json_array_foreach(tests, ti, t) {
            int want = json_is_true(json_object_get(t, "valid"));
            int got = err ? -1 : bff_schema_validate(NULL, s,
                                                     json_object_get(t, "data"),
                                                     1, pool);
            ++c.total;
            if (got == want) {
                ++c.passed;
            }
            else if (verbose) {
                fprintf(stderr, "  FAIL %s: %s / %s: %s\n", path,
                        json_string_value(json_object_get(g, "description")),
                        json_string_value(json_object_get(t, "description")),
                        err ? err : "wrong answer");
            }
        }
    }
    json_decref(groups);
    return c;
}

START_TEST(official_suite)
{
    const char *dir = getenv("BFF_SCHEMA_SUITE");
    int verbose = getenv("BFF_SCHEMA_SUITE_VERBOSE") != NULL;
    const char *patterns[2];
    int passed = 0, total = 0, files = 0, k;
    const char *bad = NULL;

    if (!dir) {
        dir = SUITE_DIR;
    }
    patterns[0] = apr_pstrcat(pool, dir, "/*.json", NULL);
    patterns[1] = apr_pstrcat(pool, dir, "/optional/format/*.json", NULL);
    for (k = 0; k < 2; ++k) {
        glob_t gl;
        size_t i;
        ck_assert_msg(glob(patterns[k], 0, NULL, &gl) == 0,
                      "no files %s (scripts/deps.sh installs "
                      "json-schema-test-suite)", patterns[k]);
        for (i = 0; i < gl.gl_pathc; ++i) {
            const char *path = gl.gl_pathv[i];
            const char *base = strrchr(path, '/') + 1;
            /* format is an assertion in the format files only: elsewhere
             * the draft makes it an annotation */
            count_t c = run_file(path, k ? BFF_SCHEMA_FORMAT_ASSERT : 0,
                                 verbose);
            ++files;
            passed += c.passed;
            total += c.total;
            if (verbose) {
                fprintf(stderr, "%s%s %d/%d\n", k ? "optional/format/" : "",
                        base, c.passed, c.total);
            }
            if (c.passed != c.total && strcmp(base, REMOTE_FILE) && !bad) {
                bad = apr_psprintf(pool, "%s: %d of %d cases pass", path,
                                   c.passed, c.total);
            }
        }
        globfree(&gl);
    }
    printf("JSON-Schema-Test-Suite draft7: %d/%d cases (%d files)\n", passed,
           total, files);
    fflush(stdout);
    ck_assert_msg(bad == NULL, "%s (BFF_SCHEMA_SUITE_VERBOSE=1 lists the "
                  "failures)", bad);
    ck_assert_int_ge(files, 50);
}
END_TEST

/* ---------------------------------------------------------- errors -- */

static apr_array_header_t *errors_of(const char *schema, const char *data,
                                     int max)
{
    apr_array_header_t *errs = NULL;
    int ok = bff_schema_validate(&errs, S(schema, 0), J(data), max, pool);

    ck_assert_int_eq(ok, errs == NULL);
    return errs;
}

static const bff_schema_error_t *err_at(const apr_array_header_t *errs, int i)
{
    ck_assert_ptr_nonnull(errs);
    ck_assert_int_gt(errs->nelts, i);
    return &APR_ARRAY_IDX(errs, i, bff_schema_error_t);
}

#define ORDER_SCHEMA \
    "{\"type\":\"object\",\"required\":[\"customer\",\"items\"]," \
    "\"additionalProperties\":false,\"properties\":{" \
    "\"customer\":{\"type\":\"object\",\"required\":[\"email\"]," \
    "\"properties\":{\"email\":{\"type\":\"string\",\"format\":\"email\"}}}," \
    "\"items\":{\"type\":\"array\",\"minItems\":1,\"items\":{" \
    "\"type\":\"object\",\"properties\":{" \
    "\"sku\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-[0-9]+$\"}," \
    "\"qty\":{\"type\":\"integer\",\"minimum\":1}}}}}}"

START_TEST(errors_have_pointer_and_keyword)
{
    apr_array_header_t *errs = errors_of(ORDER_SCHEMA,
        "{\"customer\":{},\"items\":[{\"sku\":\"ABC-1\",\"qty\":1},"
        "{\"sku\":\"x/y~z\",\"qty\":0}],\"extra\":1}", 20);
    const bff_schema_error_t *e;

    ck_assert_int_eq(errs->nelts, 4);
    e = err_at(errs, 0);
    ck_assert_str_eq(e->pointer, "/customer");
    ck_assert_str_eq(e->keyword, "required");
    ck_assert_ptr_nonnull(strstr(e->message, "'email'"));
    e = err_at(errs, 1);
    ck_assert_str_eq(e->pointer, "/items/1/sku");
    ck_assert_str_eq(e->keyword, "pattern");
    e = err_at(errs, 2);
    ck_assert_str_eq(e->pointer, "/items/1/qty");
    ck_assert_str_eq(e->keyword, "minimum");
    e = err_at(errs, 3);
    ck_assert_str_eq(e->pointer, "/extra");
    ck_assert_str_eq(e->keyword, "additionalProperties");
}
END_TEST

START_TEST(pointer_escapes_keys)
{
    apr_array_header_t *errs = errors_of(
        "{\"additionalProperties\":{\"type\":\"string\"}}",
        "{\"a/b~c\":1}", 5);

    ck_assert_str_eq(err_at(errs, 0)->pointer, "/a~1b~0c");
    ck_assert_str_eq(err_at(errs, 0)->keyword, "type");
}
END_TEST

START_TEST(errors_are_capped)
{
    apr_array_header_t *errs = errors_of(
        "{\"items\":{\"type\":\"string\"}}", "[1,2,3,4,5,6,7,8,9,10]", 3);

    ck_assert_int_eq(errs->nelts, 3);
    ck_assert_str_eq(err_at(errs, 2)->pointer, "/2");
    errs = errors_of("{\"items\":{\"type\":\"string\"}}", "[1,2,3,4]", 20);
    ck_assert_int_eq(errs->nelts, 4);
}
END_TEST

START_TEST(combinators_report_once)
{
    apr_array_header_t *errs = errors_of(
        "{\"anyOf\":[{\"type\":\"string\"},{\"minimum\":10}]}", "3", 20);

    ck_assert_int_eq(errs->nelts, 1);
    ck_assert_str_eq(err_at(errs, 0)->keyword, "anyOf");
    ck_assert_str_eq(err_at(errs, 0)->pointer, "");
    errs = errors_of("{\"oneOf\":[{\"minimum\":1},{\"minimum\":2}]}", "3", 20);
    ck_assert_str_eq(err_at(errs, 0)->keyword, "oneOf");
    errs = errors_of("{\"if\":{\"minimum\":5},\"then\":{\"multipleOf\":2}}",
                     "7", 20);
    ck_assert_str_eq(err_at(errs, 0)->keyword, "multipleOf");
}
END_TEST

START_TEST(code_points_not_bytes)
{
    bff_schema_t *s = S("{\"maxLength\":2,\"minLength\":2}", 0);

    ck_assert_int_eq(bff_schema_validate(NULL, s, J("\"\\u00e9\\u00e9\""), 1,
                                         pool), 1);
    ck_assert_int_eq(bff_schema_validate(NULL, s, J("\"\\u00e9\""), 1, pool),
                     0);
}
END_TEST

START_TEST(format_only_when_asserted)
{
    const char *schema = "{\"format\":\"uuid\"}";
    json_t *bad = J("\"not-a-uuid\"");
    json_t *good = J("\"123e4567-e89b-12d3-a456-426614174000\"");

    ck_assert_int_eq(bff_schema_validate(NULL, S(schema, 0), bad, 1, pool), 1);
    ck_assert_int_eq(bff_schema_validate(NULL, S(schema,
                     BFF_SCHEMA_FORMAT_ASSERT), bad, 1, pool), 0);
    ck_assert_int_eq(bff_schema_validate(NULL, S(schema,
                     BFF_SCHEMA_FORMAT_ASSERT), good, 1, pool), 1);
    /* an unknown format stays an annotation */
    ck_assert_int_eq(bff_schema_validate(NULL, S("{\"format\":\"x-money\"}",
                     BFF_SCHEMA_FORMAT_ASSERT), bad, 1, pool), 1);
}
END_TEST

START_TEST(unique_items_large_and_equal_forms)
{
    bff_schema_t *s = S("{\"uniqueItems\":true}", 0);
    json_t *arr = bff_json_pool_own(json_array(), pool);
    apr_array_header_t *errs = NULL;
    int i;

    /* equal whatever the form: 1 and 1.0, members in any order */
    ck_assert_int_eq(bff_schema_validate(NULL, s, J("[1, 1.0]"), 1, pool), 0);
    ck_assert_int_eq(bff_schema_validate(NULL, s,
                     J("[{\"a\":1,\"b\":[2]},{\"b\":[2.0],\"a\":1}]"), 1,
                     pool), 0);
    ck_assert_int_eq(bff_schema_validate(NULL, s,
                     J("[{\"a\":1},{\"a\":2},[1],[[1]],\"1\",1,true,null]"), 1,
                     pool), 1);
    /* a body-sized array is not compared pair by pair (that would be
     * 2 * 10^10 comparisons: this test would time out) */
    for (i = 0; i < 200000; ++i) {
        json_array_append_new(arr, json_integer(i));
    }
    ck_assert_int_eq(bff_schema_validate(NULL, s, arr, 1, pool), 1);
    json_array_append_new(arr, json_real(123456.0));
    ck_assert_int_eq(bff_schema_validate(&errs, s, arr, 1, pool), 0);
    ck_assert_str_eq(err_at(errs, 0)->keyword, "uniqueItems");
    ck_assert_str_eq(err_at(errs, 0)->message, "items 123456 and 200000 are equal");
}
END_TEST

/* ------------------------------------------------------ bad schemas -- */

static const char *compile_err(const char *text)
{
    bff_schema_t *s;
    const char *err = bff_schema_compile(&s, J(text), "orders.json", 0, pool);

    ck_assert_msg(err != NULL, "schema %s compiled", text);
    ck_assert_ptr_null(s);
    return err;
}

START_TEST(bad_schemas_name_the_pointer)
{
    ck_assert_str_eq(compile_err("{\"properties\":{\"qty\":{\"minimum\":\"1\"}}}"),
                     "orders.json: /properties/qty/minimum: must be a number");
    ck_assert_str_eq(compile_err("{\"type\":\"float\"}"),
                     "orders.json: /type: unknown type 'float'");
    ck_assert_ptr_nonnull(strstr(compile_err(
        "{\"items\":[{\"pattern\":\"(\"}]}"),
        "orders.json: /items/0/pattern: bad regular expression"));
    ck_assert_str_eq(compile_err("{\"allOf\":[]}"),
                     "orders.json: /allOf: must be a non-empty array of schemas");
    ck_assert_str_eq(compile_err("{\"definitions\":{\"a/b\":3}}"),
                     "orders.json: /definitions/a~1b: a schema must be an "
                     "object or a boolean");
    ck_assert_str_eq(compile_err("{\"minLength\":-1}"),
                     "orders.json: /minLength: must be a non-negative integer");
    ck_assert_ptr_nonnull(strstr(compile_err("{\"$ref\":\"#/definitions/none\"}"),
                                 "/$ref: '#/definitions/none' points to nothing"));
}
END_TEST

START_TEST(remote_refs_refused)
{
    const char *err = compile_err(
        "{\"properties\":{\"a\":{\"$ref\":\"http://localhost:1234/x.json\"}}}");

    ck_assert_ptr_nonnull(strstr(err, "/properties/a/$ref:"));
    ck_assert_ptr_nonnull(strstr(err, "refused"));
    err = compile_err("{\"$ref\":\"other.json#/definitions/a\"}");
    ck_assert_ptr_nonnull(strstr(err, "refused"));
}
END_TEST

START_TEST(ref_loops_refused)
{
    ck_assert_ptr_nonnull(strstr(compile_err(
        "{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},"
        "\"b\":{\"$ref\":\"#/definitions/a\"}},\"$ref\":\"#/definitions/a\"}"),
        "loops"));
}
END_TEST

START_TEST(recursion_through_allof_is_bounded)
{
    bff_schema_t *s = S("{\"allOf\":[{\"$ref\":\"#\"}]}", 0);
    apr_array_header_t *errs = NULL;

    ck_assert_int_eq(bff_schema_validate(&errs, s, J("1"), 5, pool), 0);
    ck_assert_str_eq(err_at(errs, 0)->keyword, "$ref");
}
END_TEST

START_TEST(metaschema_bundled)
{
    bff_schema_t *s = S("{\"$ref\":\"http://json-schema.org/draft-07/schema#\"}",
                        0);

    ck_assert_int_eq(bff_schema_validate(NULL, s,
                     J("{\"type\":\"object\",\"minLength\":1}"), 1, pool), 1);
    ck_assert_int_eq(bff_schema_validate(NULL, s, J("{\"minLength\":-1}"), 1,
                                         pool), 0);
}
END_TEST

START_TEST(load_refuses_duplicate_keys)
{
    char path[] = "/tmp/check_schema_XXXXXX";
    int fd = mkstemp(path);
    bff_schema_t *s;
    const char *err;
    FILE *f;

    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    fputs("{\"type\":\"object\",\"type\":\"string\"}", f);
    fclose(f);
    err = bff_schema_load(&s, path, 0, pool);
    unlink(path);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "duplicate"));
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

/* ------------------------------------------------------------ rules -- */

static bff_rule_t *R(const char *type, const char *o1, const char *o2)
{
    const char *opts[2] = { o1, o2 };
    bff_rule_t *r;
    const char *err = bff_rule_compile(&r, "x", type, opts,
                                       o2 ? 2 : o1 ? 1 : 0, pool);

    ck_assert_msg(err == NULL, "rule %s: %s", type, err);
    return r;
}

static const char *rule_kw(const bff_rule_t *r, const char *value)
{
    const char *kw, *msg;

    return bff_rule_check(&kw, &msg, r, value, pool) ? "ok" : kw;
}

START_TEST(typed_rules)
{
    bff_rule_t *lim = R("integer", "min=1", "max=100");
    bff_rule_t *req = R("string", "required", "enum=asc|desc");
    bff_rule_t *len = R("string", "min=2", "max=3");
    bff_rule_t *r;
    const char *opts[] = { "pattern=(" };

    ck_assert_str_eq(rule_kw(lim, NULL), "ok");
    ck_assert_str_eq(rule_kw(lim, "100"), "ok");
    ck_assert_str_eq(rule_kw(lim, "-5"), "minimum");
    ck_assert_str_eq(rule_kw(lim, "101"), "maximum");
    ck_assert_str_eq(rule_kw(lim, "1.0"), "type");
    ck_assert_str_eq(rule_kw(lim, "1e2"), "type");
    ck_assert_str_eq(rule_kw(lim, " 1"), "type");
    ck_assert_str_eq(rule_kw(lim, "1234567890123456789"), "type");
    ck_assert_str_eq(rule_kw(req, NULL), "required");
    ck_assert_str_eq(rule_kw(req, "asc"), "ok");
    ck_assert_str_eq(rule_kw(req, "up"), "enum");
    ck_assert_str_eq(rule_kw(len, "\xc3\xa9\xc3\xa9"), "ok");   /* 2 code points */
    ck_assert_str_eq(rule_kw(len, "abcd"), "maxLength");
    ck_assert_str_eq(rule_kw(len, "\xff"), "type");           /* not UTF-8 */
    ck_assert_str_eq(rule_kw(R("number", "max=1", NULL), "0.5"), "ok");
    ck_assert_str_eq(rule_kw(R("number", "max=1", NULL), "1.5"), "maximum");
    ck_assert_str_eq(rule_kw(R("number", NULL, NULL), "nan"), "type");
    ck_assert_str_eq(rule_kw(R("boolean", NULL, NULL), "true"), "ok");
    ck_assert_str_eq(rule_kw(R("boolean", NULL, NULL), "1"), "type");
    ck_assert_str_eq(rule_kw(R("uuid", NULL, NULL), "x"), "format");
    ck_assert_str_eq(rule_kw(R("date", NULL, NULL), "2024-02-30"), "format");
    ck_assert_str_eq(rule_kw(R("date-time", NULL, NULL),
                             "2024-02-29T10:00:00Z"), "ok");
    ck_assert_ptr_nonnull(strstr(bff_rule_compile(&r, "x", "float", NULL, 0,
                                                  pool), "unknown type"));
    ck_assert_ptr_nonnull(strstr(bff_rule_compile(&r, "x", "string", opts, 1,
                                                  pool), "bad regular"));
    opts[0] = "enum=a";
    ck_assert_ptr_nonnull(strstr(bff_rule_compile(&r, "x", "integer", opts, 1,
                                                  pool), "unknown option"));
}
END_TEST

/* ----------------------------------------------------------- bodies -- */

START_TEST(body_bounds)
{
    json_t *v;
    const char *detail;
    const char *deep = "[[[[[[1]]]]]]";

    ck_assert_int_eq(bff_schema_parse_body(&v, &detail, "{\"a\":1}", 7, 7, 4,
                                           pool), BFF_BODY_OK);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "a")), 1);
    ck_assert_int_eq(bff_schema_parse_body(&v, &detail, "{\"a\":1}", 7, 6, 4,
                                           pool), BFF_BODY_TOO_LARGE);
    ck_assert_int_eq(bff_schema_parse_body(&v, &detail, deep, strlen(deep),
                                           100, 5, pool), BFF_BODY_TOO_DEEP);
    ck_assert_int_eq(bff_schema_parse_body(&v, &detail, deep, strlen(deep),
                                           100, 6, pool), BFF_BODY_OK);
    ck_assert_int_eq(bff_schema_parse_body(&v, &detail, "{\"a\":", 5, 100, 6,
                                           pool), BFF_BODY_NOT_JSON);
    ck_assert_ptr_nonnull(detail);
    ck_assert_ptr_null(v);
}
END_TEST

START_TEST(body_duplicate_keys_refused)
{
    json_t *v;
    const char *detail;
    const char *dup = "{\"qty\":1,\"qty\":1000}";

    ck_assert_int_eq(bff_schema_parse_body(&v, &detail, dup, strlen(dup), 100,
                                           4, pool), BFF_BODY_NOT_JSON);
    ck_assert_ptr_nonnull(strstr(detail, "duplicate"));
}
END_TEST

static Suite *schema_suite(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tcase_create("suite");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, official_suite);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, errors_have_pointer_and_keyword);
    tcase_add_test(tc, pointer_escapes_keys);
    tcase_add_test(tc, errors_are_capped);
    tcase_add_test(tc, combinators_report_once);
    tcase_add_test(tc, code_points_not_bytes);
    tcase_add_test(tc, format_only_when_asserted);
    tcase_add_test(tc, unique_items_large_and_equal_forms);
    suite_add_tcase(s, tc);

    tc = tcase_create("compile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, bad_schemas_name_the_pointer);
    tcase_add_test(tc, remote_refs_refused);
    tcase_add_test(tc, ref_loops_refused);
    tcase_add_test(tc, recursion_through_allof_is_bounded);
    tcase_add_test(tc, metaschema_bundled);
    tcase_add_test(tc, load_refuses_duplicate_keys);
    suite_add_tcase(s, tc);

    tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, typed_rules);
    suite_add_tcase(s, tc);

    tc = tcase_create("bodies");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, body_bounds);
    tcase_add_test(tc, body_duplicate_keys_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(schema_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
