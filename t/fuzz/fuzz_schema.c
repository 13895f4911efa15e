/*
 * libFuzzer target for untrusted request bodies: the bounded JSON decoder
 * (bff_schema_parse_body, lib/bff_schema.c, with bff_json_depth) and the
 * JSON Schema validator on what it accepts.
 *
 *   scripts/fuzz.sh fuzz_schema
 *
 * Input: the body. Besides the sanitizers, it aborts when an invariant
 * breaks:
 *   - a body longer than the bound is refused as too large, and nothing
 *     shorter is;
 *   - an accepted value nests no deeper than the bound, and survives a
 *     dump and a reload unchanged;
 *   - a body refused as too deep that jansson can load (rejecting
 *     duplicate keys) does nest deeper than the bound (the depth check
 *     never refuses a shallow body; with duplicate keys the text may nest
 *     deeper than the value jansson keeps, the last of each key);
 *   - a body refused as not JSON comes with a detail, and jansson (which
 *     the decoder uses, rejecting duplicate keys) refuses it too;
 *   - validation against a schema using most keywords reports at most
 *     max_errors violations, each with a JSON Pointer ("" or "/...") and
 *     a keyword, and none when it says the value is valid.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_schema.h"

#define MAX_BYTES 2048
#define MAX_DEPTH 8
#define MAX_ERRORS 5

static apr_pool_t *gpool;
static bff_schema_t *schema;

static const char schema_text[] =
    "{\"type\":\"object\",\"required\":[\"customer\",\"items\"],"
    "\"additionalProperties\":false,"
    "\"definitions\":{\"sku\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-[0-9]+$\"}},"
    "\"properties\":{"
    " \"customer\":{\"type\":\"object\",\"required\":[\"id\"],"
    "   \"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":1},"
    "   \"email\":{\"type\":\"string\",\"format\":\"email\",\"maxLength\":64}}},"
    " \"items\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":10,\"uniqueItems\":true,"
    "   \"items\":{\"type\":\"object\",\"required\":[\"sku\",\"qty\"],"
    "     \"properties\":{\"sku\":{\"$ref\":\"#/definitions/sku\"},"
    "     \"qty\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":99,\"multipleOf\":1}}}},"
    " \"note\":{\"oneOf\":[{\"type\":\"string\",\"maxLength\":20},{\"type\":\"null\"}]},"
    " \"when\":{\"type\":\"string\",\"format\":\"date-time\"},"
    " \"tags\":{\"type\":\"array\",\"contains\":{\"const\":\"gift\"},"
    "   \"items\":{\"enum\":[\"gift\",\"express\",\"fragile\"]}},"
    " \"extra\":{\"not\":{\"type\":\"object\"},"
    "   \"if\":{\"type\":\"number\"},\"then\":{\"exclusiveMaximum\":1e6},"
    "   \"else\":{\"propertyNames\":{\"maxLength\":3}}}"
    "}}";

/* names the invariant that broke before it aborts */
#define check(ok) \
    do { \
        if (!(ok)) { \
            fprintf(stderr, "fuzz_schema.c:%d: %s\n", __LINE__, #ok); \
            abort(); \
        } \
    } while (0)

static int depth_of(const json_t *v)
{
    int max = 0, d;
    size_t i;
    const char *k;
    json_t *e;

    if (json_is_array(v)) {
        json_array_foreach(v, i, e) {
            if ((d = depth_of(e)) > max) {
                max = d;
            }
        }
        return max + 1;
    }
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e) {
            if ((d = depth_of(e)) > max) {
                max = d;
            }
        }
        return max + 1;
    }
    return 0;
}

/* the schema's PCRE2 codes and JSON document are released with gpool:
 * at exit, before LeakSanitizer looks (atexit runs in reverse order) */
static void release(void)
{
    apr_pool_destroy(gpool);
    gpool = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* before the first input: libFuzzer counts what an input allocates and
 * does not free as a leak */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    json_error_t e;
    json_t *doc;

    apr_initialize();
    apr_pool_create(&gpool, NULL);
    atexit(release);
    doc = json_loads(schema_text, 0, &e);
    check(doc != NULL);
    check(bff_schema_compile(&schema, doc, "fuzz", BFF_SCHEMA_FORMAT_ASSERT,
                             gpool) == NULL);
    json_decref(doc);            /* the schema holds its own reference */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    json_t *v = NULL, *again, *strict;
    const char *detail = NULL;
    bff_body_result_e rc;
    apr_array_header_t *errors = NULL;
    json_error_t e;
    char *dump;
    int valid, i;

    if (size > 2 * MAX_BYTES) {
        return 0;
    }
    apr_pool_create(&p, gpool);
    rc = bff_schema_parse_body(&v, &detail, (const char *)data, size,
                               MAX_BYTES, MAX_DEPTH, p);
    check((rc == BFF_BODY_TOO_LARGE) == (size > MAX_BYTES));
    strict = json_loadb((const char *)data, size,
                        JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    switch (rc) {
    case BFF_BODY_OK:
        check(v != NULL && depth_of(v) <= MAX_DEPTH);
        dump = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        check(dump != NULL);
        again = json_loads(dump, JSON_DECODE_ANY, &e);
        check(again != NULL && json_equal(again, v));
        json_decref(again);
        free(dump);
        valid = bff_schema_validate(&errors, schema, v, MAX_ERRORS, p);
        check(valid == 0 || valid == 1);
        if (valid) {
            check(!errors || errors->nelts == 0);
        }
        else {
            check(errors && errors->nelts >= 1 && errors->nelts <= MAX_ERRORS);
            for (i = 0; i < errors->nelts; i++) {
                bff_schema_error_t *err = &APR_ARRAY_IDX(errors, i,
                                                         bff_schema_error_t);
                check(err->pointer && (!*err->pointer || *err->pointer == '/'));
                check(err->keyword && *err->keyword && err->message);
            }
        }
        break;
    case BFF_BODY_TOO_DEEP:
        check(!strict || depth_of(strict) > MAX_DEPTH);
        break;
    case BFF_BODY_NOT_JSON:
        check(detail != NULL && *detail);
        /* jansson without the duplicate check may take it; with it, never */
        check(strict == NULL);
        break;
    case BFF_BODY_TOO_LARGE:
        break;
    }
    json_decref(strict);
    apr_pool_destroy(p);
    return 0;
}
