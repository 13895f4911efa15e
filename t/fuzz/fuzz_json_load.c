/*
 * libFuzzer target for the backends' answers' parser, bff_json_load
 * (lib/bff_json.c), against jansson's json_loadb(JSON_DECODE_ANY |
 * JSON_ALLOW_NUL): both refuse, or both give the same value, compared by
 * their dumps with 17 significant digits (so -0.0, integers and reals,
 * and key order all count).
 *
 *   scripts/fuzz.sh fuzz_json_load
 *
 * Input: the JSON text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bff_core.h"

#define FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY)

static char *dump(const json_t *v, size_t *n)
{
    char *s;

    *n = json_dumpb(v, NULL, 0, FLAGS);
    s = malloc(*n + 1);
    if (!s || json_dumpb(v, s, *n, FLAGS) != *n) {
        abort();
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t e1, e2;
    json_t *ours = bff_json_load((const char *)data, size, 0, &e1);
    json_t *theirs = json_loadb((const char *)data, size,
                                JSON_DECODE_ANY | JSON_ALLOW_NUL, &e2);

    if (!ours != !theirs) {
        abort();
    }
    if (ours) {
        size_t n1, n2;
        char *d1 = dump(ours, &n1), *d2 = dump(theirs, &n2);

        if (n1 != n2 || memcmp(d1, d2, n1) != 0 || !json_equal(ours, theirs)) {
            abort();
        }
        free(d1);
        free(d2);
        json_decref(ours);
        json_decref(theirs);
    }
    return 0;
}
