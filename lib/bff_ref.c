/*
 * References: user.address.city, orders[].product_id
 *
 * Parsed once at config time into segments; evaluation is a walk of the
 * value with, for multi references, a collector that keeps unique values
 * in first-seen order.
 */
#include <stdio.h>
#include <string.h>

#include <apr_strings.h>
#include <apr_lib.h>

#include "bff_core.h"

typedef struct {
    const char *name;
    int iter;               /* followed by "[]" */
} ref_seg_t;

struct bff_ref_t {
    const char *text;
    int nsegs;
    ref_seg_t *segs;
    int multi;
};

static int is_seg_char(int c)
{
    return apr_isalnum(c) || c == '_' || c == '-';
}

/* Shows a byte in an error message without letting control characters
 * into the admin's terminal or the error log. */
static const char *show_char(char c, apr_pool_t *p)
{
    unsigned char u = (unsigned char)c;

    if (u >= 0x21 && u < 0x7f) {
        return apr_psprintf(p, "'%c'", c);
    }
    return apr_psprintf(p, "0x%02X", u);
}

const char *bff_ref_parse(bff_ref_t **out, const char *text, apr_pool_t *p)
{
    bff_ref_t *ref;
    const char *s;
    int n = 1;

    *out = NULL;
    if (!text || !*text) {
        return "reference is empty";
    }
    for (s = text; *s; ++s) {
        if (*s == '.') {
            ++n;
        }
    }
    ref = apr_pcalloc(p, sizeof(*ref));
    ref->text = apr_pstrdup(p, text);
    ref->segs = apr_pcalloc(p, n * sizeof(ref_seg_t));

    s = text;
    for (;;) {
        const char *start = s;
        ref_seg_t *seg = &ref->segs[ref->nsegs++];

        while (is_seg_char((unsigned char)*s)) {
            ++s;
        }
        if (s == start) {
            if (!*s || *s == '.' || *s == '[') {
                return apr_psprintf(p, "reference '%s': empty segment at "
                                    "offset %d", text, (int)(s - text));
            }
            return apr_psprintf(p, "reference '%s': invalid character %s at "
                                "offset %d (segments are letters, digits, "
                                "'_' and '-')", text, show_char(*s, p),
                                (int)(s - text));
        }
        seg->name = apr_pstrmemdup(p, start, (apr_size_t)(s - start));
        if (*s == '[') {
            if (s[1] != ']') {
                return apr_psprintf(p, "reference '%s': expected '[]' at "
                                    "offset %d", text, (int)(s - text));
            }
            seg->iter = 1;
            ref->multi = 1;
            s += 2;
        }
        if (!*s) {
            break;
        }
        if (*s != '.') {
            return apr_psprintf(p, "reference '%s': invalid character %s at "
                                "offset %d (expected '.' or the end)", text,
                                show_char(*s, p), (int)(s - text));
        }
        ++s;
    }
    *out = ref;
    return NULL;
}

const char *bff_ref_root(const bff_ref_t *ref)
{
    return ref->segs[0].name;
}

const char *bff_ref_text(const bff_ref_t *ref)
{
    return ref->text;
}

int bff_ref_is_multi(const bff_ref_t *ref)
{
    return ref->multi;
}

int bff_ref_nsegs(const bff_ref_t *ref)
{
    return ref->nsegs;
}

const char *bff_ref_seg(const bff_ref_t *ref, int i, int *iter)
{
    if (iter) {
        *iter = ref->segs[i].iter;
    }
    return ref->segs[i].name;
}

/* Unique-value collector. Scalars are looked up in jansson hash tables
 * (strings by their bytes, other scalars by a type-tagged text so 1, 1.0
 * and true stay distinct, as json_equal has them); objects and arrays by
 * a hash of their content that json_equal values share (member order
 * aside), then json_equal within that hash's bucket: linear in the size
 * of the values, where comparing each with all earlier ones was
 * quadratic in their number. */
typedef struct {
    json_t *result;
    json_t *strings;        /* set of string values */
    json_t *others;         /* set of tagged numbers/booleans */
    json_t *composites;     /* content hash (hex) -> [values] */
} collector_t;

static apr_uint64_t mix(apr_uint64_t h, apr_uint64_t v)
{
    v *= APR_UINT64_C(0xff51afd7ed558ccd);
    v ^= v >> 33;
    return (h ^ v) * APR_UINT64_C(0xc4ceb9fe1a85ec53) + 0x9e3779b97f4a7c15ULL;
}

static apr_uint64_t hash_bytes(const char *s, size_t n)
{
    apr_uint64_t h = APR_UINT64_C(0xcbf29ce484222325);   /* FNV-1a */
    size_t i;

    for (i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * APR_UINT64_C(0x100000001b3);
    }
    return h;
}

/* Equal values (json_equal) hash alike: object members are summed, so
 * their order does not count, and -0.0 hashes as 0.0. Depth is bounded
 * by the depth check every reply passes. */
static apr_uint64_t value_hash(const json_t *v)
{
    apr_uint64_t h = 0, sum = 0;
    const char *key;
    json_t *e;
    size_t i;
    double d;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, key, e) {
            sum += mix(hash_bytes(key, strlen(key)), value_hash(e));
        }
        return mix('o', sum);
    case JSON_ARRAY:
        h = 'a';
        json_array_foreach(v, i, e) {
            h = mix(h, value_hash(e));
        }
        return h;
    case JSON_STRING:
        return mix('s', hash_bytes(json_string_value(v),
                                   json_string_length(v)));
    case JSON_INTEGER:
        return mix('i', (apr_uint64_t)json_integer_value(v));
    case JSON_REAL:
        d = json_real_value(v);
        if (d == 0) {
            d = 0;
        }
        memcpy(&h, &d, sizeof(h) < sizeof(d) ? sizeof(h) : sizeof(d));
        return mix('r', h);
    default:
        return mix('c', (apr_uint64_t)json_typeof(v));
    }
}

static void collect(collector_t *c, json_t *v)
{
    char key[64];
    int klen = 0;
    size_t i;
    json_t *bucket;

    switch (json_typeof(v)) {
    case JSON_NULL:
        /* missing and null values are skipped alike */
        return;
    case JSON_STRING:
        if (json_object_getn(c->strings, json_string_value(v),
                             json_string_length(v))) {
            return;
        }
        json_object_setn_new_nocheck(c->strings, json_string_value(v),
                                     json_string_length(v), json_null());
        break;
    case JSON_INTEGER:
        klen = snprintf(key, sizeof(key), "i%" JSON_INTEGER_FORMAT,
                        json_integer_value(v));
        break;
    case JSON_REAL:
        /* -0.0 and 0.0 are equal (json_equal): one tag */
        klen = snprintf(key, sizeof(key), "r%.17g",
                        json_real_value(v) == 0 ? 0.0 : json_real_value(v));
        break;
    case JSON_TRUE:
        key[0] = 't';
        klen = 1;
        break;
    case JSON_FALSE:
        key[0] = 'f';
        klen = 1;
        break;
    case JSON_OBJECT:
    case JSON_ARRAY:
        klen = snprintf(key, sizeof(key), "%016" APR_UINT64_T_HEX_FMT,
                        value_hash(v));
        bucket = json_object_getn(c->composites, key, (size_t)klen);
        if (!bucket) {
            bucket = json_array();
            json_object_setn_new_nocheck(c->composites, key, (size_t)klen,
                                         bucket);
        }
        for (i = 0; i < json_array_size(bucket); ++i) {
            if (json_equal(json_array_get(bucket, i), v)) {
                return;
            }
        }
        json_array_append(bucket, v);
        json_array_append(c->result, v);
        return;
    }
    if (klen > 0) {
        if (json_object_getn(c->others, key, (size_t)klen)) {
            return;
        }
        json_object_setn_new_nocheck(c->others, key, (size_t)klen,
                                     json_null());
    }
    json_array_append(c->result, v);
}

static void walk(collector_t *c, const bff_ref_t *ref, int k, json_t *v);

/* v is the value after segment k (name and "[]") has been applied. */
static void walk_next(collector_t *c, const bff_ref_t *ref, int k, json_t *v)
{
    json_t *child;

    if (k == ref->nsegs - 1) {
        collect(c, v);
        return;
    }
    child = json_object_get(v, ref->segs[k + 1].name); /* NULL unless obj */
    if (child) {
        walk(c, ref, k + 1, child);
    }
}

/* v is the value named by segment k, before its "[]". */
static void walk(collector_t *c, const bff_ref_t *ref, int k, json_t *v)
{
    if (ref->segs[k].iter) {
        size_t i;
        json_t *e;

        /* "[]" on anything but an array yields nothing */
        json_array_foreach(v, i, e) {
            walk_next(c, ref, k, e);
        }
    }
    else {
        walk_next(c, ref, k, v);
    }
}

json_t *bff_ref_eval(const bff_ref_t *ref, json_t *root_value)
{
    collector_t c;
    int k;

    if (!ref->multi) {
        json_t *v = root_value;

        /* only "[]" iterates: a field of an array is not found */
        for (k = 1; v && k < ref->nsegs; ++k) {
            v = json_object_get(v, ref->segs[k].name);
        }
        return json_incref(v);
    }

    c.result = json_array();
    if (root_value && !json_is_null(root_value)) {
        c.strings = json_object();
        c.others = json_object();
        c.composites = json_object();
        walk(&c, ref, 0, root_value);
        json_decref(c.strings);
        json_decref(c.others);
        json_decref(c.composites);
    }
    return c.result;
}
