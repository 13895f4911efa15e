/*
 * libFuzzer target for the JSON reference parser and evaluator
 * (lib/bff_ref.c) and the deny/allow shaping paths (lib/bff_shape.c).
 *
 *   scripts/fuzz.sh fuzz_ref
 *
 * Input: TEXT '\n' JSON. TEXT is parsed as a reference and as a shaping
 * path, then evaluated against and applied to the JSON document. Besides
 * the sanitizers, it aborts when an invariant breaks:
 *   - an accepted reference is made of non-empty segments of
 *     [A-Za-z0-9_-], each optionally followed by "[]", that spell the text
 *     exactly; it is multi exactly when one segment has "[]";
 *   - a multi reference evaluates to an array without nulls and without
 *     two equal values (json_equal); a plain one to the value a walk of
 *     the objects finds;
 *   - a reference and a shaping path accept the same texts;
 *   - after denying TEXT, evaluating TEXT finds nothing (the deny list
 *     never lets a value through that the reference would reach);
 *   - after allowing only TEXT, every top-level key left is TEXT's root.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_core.h"

static apr_pool_t *gpool;

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static int seg_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* The segments spell the text, and each is well formed. */
static void check_segments(const bff_ref_t *ref, const char *text,
                           apr_pool_t *p)
{
    const char *out = "";
    int i, iter, multi = 0;

    check(bff_ref_nsegs(ref) >= 1);
    for (i = 0; i < bff_ref_nsegs(ref); i++) {
        const char *s = bff_ref_seg(ref, i, &iter), *c;

        check(*s != '\0');
        for (c = s; *c; c++) {
            check(seg_char(*c));
        }
        multi |= iter;
        out = apr_pstrcat(p, out, i ? "." : "", s, iter ? "[]" : "", NULL);
    }
    check(!strcmp(out, text));
    check(!strcmp(bff_ref_text(ref), text));
    check(!strcmp(bff_ref_root(ref), bff_ref_seg(ref, 0, NULL)));
    check(bff_ref_is_multi(ref) == multi);
}

/* What a plain reference names: a walk through objects only. */
static json_t *walk_plain(const bff_ref_t *ref, json_t *root)
{
    int i;

    for (i = 1; root && i < bff_ref_nsegs(ref); i++) {
        root = json_object_get(root, bff_ref_seg(ref, i, NULL));
    }
    return root;
}

static void check_eval(const bff_ref_t *ref, json_t *doc)
{
    json_t *root = json_object_get(doc, bff_ref_root(ref));
    json_t *v = bff_ref_eval(ref, root);
    size_t i, j;

    if (bff_ref_is_multi(ref)) {
        check(json_is_array(v));
        for (i = 0; i < json_array_size(v); i++) {
            check(!json_is_null(json_array_get(v, i)));
            /* inputs are at most 4 kB: a quadratic check is affordable */
            for (j = 0; j < i; j++) {
                check(!json_equal(json_array_get(v, i),
                                  json_array_get(v, j)));
            }
        }
    }
    else {
        check(v == walk_plain(ref, root));
    }
    json_decref(v);
}

/* Nothing that TEXT reaches survives a deny of TEXT. */
static void check_deny(const bff_ref_t *ref, const char *text, json_t *doc,
                       apr_pool_t *p)
{
    bff_shape_t *sh = bff_shape_create(p);
    json_t *copy = json_deep_copy(doc), *v;

    check(bff_shape_add(sh, text, 0, p) == NULL);
    bff_shape_apply(sh, copy);
    v = bff_ref_eval(ref, json_object_get(copy, bff_ref_root(ref)));
    check(!v || (json_is_array(v) && json_array_size(v) == 0));
    json_decref(v);
    json_decref(copy);
}

/* An allow list of TEXT keeps no other top-level key. */
static void check_allow(const bff_ref_t *ref, const char *text, json_t *doc,
                        apr_pool_t *p)
{
    bff_shape_t *sh = bff_shape_create(p);
    json_t *copy = json_deep_copy(doc), *v;
    const char *key;

    check(bff_shape_add(sh, text, 1, p) == NULL);
    bff_shape_apply(sh, copy);
    json_object_foreach(copy, key, v) {
        check(!strcmp(key, bff_ref_root(ref)));
    }
    json_decref(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    char *text, *jtext, *nl;
    bff_ref_t *ref;
    bff_shape_t *sh;
    json_t *doc = NULL;
    const char *rerr, *serr;

    if (!gpool) {
        apr_initialize();
        apr_pool_create(&gpool, NULL);
    }
    if (size > 4096) {
        return 0;
    }
    apr_pool_create(&p, gpool);
    text = apr_pstrmemdup(p, (const char *)data, size);
    jtext = "";
    if ((nl = strchr(text, '\n'))) {
        *nl = '\0';
        jtext = nl + 1;
    }

    rerr = bff_ref_parse(&ref, text, p);
    sh = bff_shape_create(p);
    serr = bff_shape_add(sh, text, 0, p);
    check(!rerr == !serr);
    check(!rerr || (ref == NULL && *rerr));
    check(bff_shape_empty(sh) == (serr != NULL));

    if (!rerr) {
        check_segments(ref, text, p);
        /* depth-checked first, as the engine does with replies */
        if (bff_json_depth(jtext, strlen(jtext)) <= 32) {
            doc = json_loads(jtext, JSON_DECODE_ANY, NULL);
        }
        if (json_is_object(doc)) {
            check_eval(ref, doc);
            check_deny(ref, text, doc, p);
            check_allow(ref, text, doc, p);
        }
        else if (doc) {
            /* a reply that is not an object, as the root value */
            json_decref(bff_ref_eval(ref, doc));
        }
        json_decref(doc);
    }
    apr_pool_destroy(p);
    return 0;
}
