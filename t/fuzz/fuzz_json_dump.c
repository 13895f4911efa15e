/*
 * libFuzzer target for the answer's serializer, bff_json_dump
 * (lib/bff_json.c), against jansson's json_dumpb with the same settings
 * (JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY): both must
 * give the same bytes, or both refuse.
 *
 *   scripts/fuzz.sh fuzz_json_dump
 *
 * Input, three ways at once: a JSON text that jansson decodes (any
 * value, NUL in strings allowed); the same bytes as one string value
 * (not checked for UTF-8, as json_stringn_nocheck allows); and every 8
 * bytes as the bits of a double, dumped as a real, alone and in an array.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>

#include "bff_core.h"

#define FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)

static apr_pool_t *gpool;

static void same(const json_t *v)
{
    apr_pool_t *p;
    apr_size_t len;
    const char *ours;
    size_t n = json_dumpb(v, NULL, 0, FLAGS);
    char *theirs = n ? malloc(n) : NULL;

    if (n && json_dumpb(v, theirs, n, FLAGS) != n) {
        abort();
    }
    apr_pool_create(&p, gpool);
    ours = bff_json_dump(&len, v, p);
    if (len != n || (n && memcmp(ours, theirs, n) != 0) || ours[len] != '\0') {
        abort();
    }
    apr_pool_destroy(p);
    free(theirs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v;
    size_t i;

    if (!gpool) {
        apr_initialize();
        apr_pool_create(&gpool, NULL);
    }
    v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                   NULL);
    if (v) {
        same(v);
        json_decref(v);
    }
    v = json_stringn_nocheck((const char *)data, size);
    if (v) {
        same(v);
        json_decref(v);
    }
    for (i = 0; i + 8 <= size; i += 8) {
        double d;
        json_t *a;

        memcpy(&d, data + i, 8);
        if (!isfinite(d) || !(v = json_real(d))) {
            continue;
        }
        same(v);
        a = json_array();
        json_array_append_new(a, v);
        same(a);
        json_decref(a);
    }
    return 0;
}
