/*
 * JSON Schema draft-07: compilation and validation (see bff_schema.h).
 *
 * Compiling turns every schema object into a node_t whose keywords are
 * already checked and converted (patterns compiled, bounds read, subschemas
 * linked), so validating walks nodes and the instance, and never looks a
 * keyword up by name. $ref is resolved once all of the document has been
 * compiled (forward references and recursion need the whole tree).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_schema.h"

/* Validation recursion bound: the instance depth is bounded before parsing,
 * but a schema can recurse without descending (allOf: [{$ref: "#"}]). */
#define MAX_EVAL_DEPTH 512
/* PCRE2 backtracking bound per match, so a costly pattern cannot hold a
 * worker: a match that hits it counts as failed. */
#define REGEX_MATCH_LIMIT 100000

#define META_URI "http://json-schema.org/draft-07/schema"

/* The draft-07 metaschema (http://json-schema.org/draft-07/schema#), as
 * published by json-schema.org; resolved locally, never fetched. */
static const char metaschema_text[] =
#include "bff_schema_meta.inc"

enum {
    T_NULL = 1, T_BOOLEAN = 2, T_OBJECT = 4, T_ARRAY = 8, T_NUMBER = 16,
    T_STRING = 32, T_INTEGER = 64
};
static const char *const type_names[] = {
    "null", "boolean", "object", "array", "number", "string", "integer"
};

typedef struct node_t node_t;

typedef struct {
    const char *name;
    node_t *schema;
} named_t;

typedef struct {
    pcre2_code *re;
    const char *src;
    node_t *schema;
} pattern_t;

typedef struct {
    const char *name;
    node_t *schema;                 /* schema form, or NULL */
    const json_t *names;            /* array form: required names */
} dep_t;

struct node_t {
    int is_bool, bool_val;
    node_t *ref;                    /* $ref: the other keywords ignored */
    unsigned types;                 /* T_* bits; 0: no "type" */
    const json_t *enum_vals;
    const json_t *const_val;
    const json_t *minimum, *maximum, *xminimum, *xmaximum, *multiple_of;
    long min_len, max_len, min_items, max_items, min_props, max_props;
    pattern_t *pattern;
    const char *format;             /* only when asserted */
    apr_array_header_t *props;      /* named_t */
    apr_array_header_t *pat_props;  /* pattern_t */
    node_t *addl_props;
    node_t *prop_names;
    const json_t *required;
    apr_array_header_t *deps;       /* dep_t */
    node_t *items;                  /* schema form */
    apr_array_header_t *items_arr;  /* node_t *: array form */
    node_t *addl_items;
    node_t *contains;
    int unique;
    apr_array_header_t *all_of, *any_of, *one_of;   /* node_t * */
    node_t *not_, *if_, *then_, *else_;
};

struct bff_schema_t {
    node_t *root;
    json_t *doc;
    pcre2_match_context *mctx;
};

/* ------------------------------------------------------------ compile -- */

typedef struct {
    json_t *doc;
    const char *base;
} resource_t;

typedef struct {
    node_t *node;
    const char *ref;
    const char *base;
    const char *where;
} pending_t;

typedef struct {
    apr_pool_t *p;
    const char *name;
    int flags;
    const char *err;
    apr_hash_t *compiled;            /* json_t * -> node_t * */
    apr_hash_t *resources;           /* URI without fragment, or an anchor
                                        URI "base#name" -> resource_t */
    apr_array_header_t *pending;     /* pending_t */
    int meta_loaded;
} cctx_t;

static apr_status_t free_code(void *data)
{
    pcre2_code_free((pcre2_code *)data);
    return APR_SUCCESS;
}

static apr_status_t free_mctx(void *data)
{
    pcre2_match_context_free((pcre2_match_context *)data);
    return APR_SUCCESS;
}

static node_t *set_err(cctx_t *c, const char *where, const char *msg)
{
    if (!c->err) {
        c->err = apr_psprintf(c->p, "%s: %s: %s", c->name,
                              *where ? where : "(root)", msg);
    }
    return NULL;
}

/* JSON Pointer escaping of one reference token */
static const char *ptr_escape(const char *tok, apr_pool_t *p)
{
    const char *s;
    char *out, *o;

    if (!strpbrk(tok, "~/")) {
        return tok;
    }
    out = o = apr_palloc(p, 2 * strlen(tok) + 1);
    for (s = tok; *s; ++s) {
        if (*s == '~' || *s == '/') {
            *o++ = '~';
            *o++ = *s == '~' ? '0' : '1';
        }
        else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

static const char *ptr_join(const char *where, const char *tok, apr_pool_t *p)
{
    return apr_pstrcat(p, where, "/", ptr_escape(tok, p), NULL);
}

/* --- URI references (RFC 3986 section 5), enough for $id and $ref ---- */

static size_t scheme_len(const char *u)
{
    size_t i = 0;

    if (!((u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z'))) {
        return 0;
    }
    while (u[i] && (apr_isalnum(u[i]) || u[i] == '+' || u[i] == '-'
                    || u[i] == '.')) {
        ++i;
    }
    return u[i] == ':' ? i : 0;
}

static const char *strip_fragment(const char *u, apr_pool_t *p)
{
    const char *h = strchr(u, '#');

    return h ? apr_pstrmemdup(p, u, (apr_size_t)(h - u)) : u;
}

/* RFC 3986 5.2.4 on a path */
static const char *remove_dots(const char *path, apr_pool_t *p)
{
    char *out = apr_palloc(p, strlen(path) + 2);
    size_t o = 0;
    const char *in = path;

    while (*in) {
        if (!strncmp(in, "../", 3)) {
            in += 3;
        }
        else if (!strncmp(in, "./", 2)) {
            in += 2;
        }
        else if (!strncmp(in, "/./", 3)) {
            in += 2;
        }
        else if (!strcmp(in, "/.")) {
            in = "/";
        }
        else if (!strncmp(in, "/../", 4) || !strcmp(in, "/..")) {
            in = in[3] ? in + 3 : "/";
            while (o > 0 && out[--o] != '/') {
            }
        }
        else if (!strcmp(in, ".") || !strcmp(in, "..")) {
            in += strlen(in);
        }
        else {
            do {
                out[o++] = *in++;
            } while (*in && *in != '/');
        }
    }
    out[o] = '\0';
    return out;
}

static const char *uri_resolve(const char *base, const char *ref,
                               apr_pool_t *p)
{
    size_t sl = scheme_len(base), auth_end, path_end;
    const char *b = strip_fragment(base, p), *q;

    if (scheme_len(ref)) {
        return ref;
    }
    if (!*ref) {
        return b;
    }
    if (ref[0] == '#') {
        return apr_pstrcat(p, b, ref, NULL);
    }
    if (!strncmp(ref, "//", 2)) {
        return apr_pstrcat(p, apr_pstrmemdup(p, b, sl + (sl ? 1 : 0)), ref,
                           NULL);
    }
    /* base: scheme ":" ["//" authority] path ["?" query] */
    auth_end = sl ? sl + 1 : 0;
    if (!strncmp(b + auth_end, "//", 2)) {
        auth_end += 2 + strcspn(b + auth_end + 2, "/?");
    }
    path_end = auth_end + strcspn(b + auth_end, "?");
    if (ref[0] == '?') {
        return apr_pstrcat(p, apr_pstrmemdup(p, b, path_end), ref, NULL);
    }
    q = ref + strcspn(ref, "?#");
    if (ref[0] == '/') {
        return apr_pstrcat(p, apr_pstrmemdup(p, b, auth_end),
                           remove_dots(apr_pstrmemdup(p, ref,
                                                      (apr_size_t)(q - ref)),
                                       p), q, NULL);
    }
    else {
        const char *dir = b + auth_end;
        const char *slash = NULL, *s;
        const char *merged;

        for (s = dir; s < b + path_end; ++s) {
            if (*s == '/') {
                slash = s;
            }
        }
        if (slash) {
            merged = apr_pstrcat(p, apr_pstrmemdup(p, dir,
                                                   (apr_size_t)(slash - dir + 1)),
                                 apr_pstrmemdup(p, ref, (apr_size_t)(q - ref)),
                                 NULL);
        }
        else {
            merged = apr_pstrcat(p, auth_end > sl + 1 ? "/" : "",
                                 apr_pstrmemdup(p, ref, (apr_size_t)(q - ref)),
                                 NULL);
        }
        if (merged[0] == '/') {
            merged = remove_dots(merged, p);
        }
        return apr_pstrcat(p, apr_pstrmemdup(p, b, auth_end), merged, q,
                           NULL);
    }
}

/* %XX decoding of a fragment; NULL when malformed */
static char *pct_decode(const char *s, apr_pool_t *p)
{
    char *out = apr_palloc(p, strlen(s) + 1), *o = out;

    while (*s) {
        if (*s == '%') {
            int hi, lo;
            if (!apr_isxdigit(s[1]) || !apr_isxdigit(s[2])) {
                return NULL;
            }
            hi = apr_isdigit(s[1]) ? s[1] - '0' : (apr_tolower(s[1]) - 'a' + 10);
            lo = apr_isdigit(s[2]) ? s[2] - '0' : (apr_tolower(s[2]) - 'a' + 10);
            *o++ = (char)(hi * 16 + lo);
            s += 3;
        }
        else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* --- keywords ------------------------------------------------------- */

static node_t *compile_node(cctx_t *c, json_t *s, const char *base,
                           const char *where);

static int get_count(cctx_t *c, long *out, json_t *s, const char *kw,
                     const char *where)
{
    json_t *v = json_object_get(s, kw);
    double d;

    *out = -1;
    if (!v) {
        return 1;
    }
    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
    }
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) {
        d = json_real_value(v);
    }
    else {
        set_err(c, ptr_join(where, kw, c->p), "must be a non-negative integer");
        return 0;
    }
    if (d < 0 || d > 2147483647.0) {
        set_err(c, ptr_join(where, kw, c->p), "must be a non-negative integer");
        return 0;
    }
    *out = (long)d;
    return 1;
}

static int get_number(cctx_t *c, const json_t **out, json_t *s, const char *kw,
                      const char *where)
{
    json_t *v = json_object_get(s, kw);

    *out = NULL;
    if (v && !json_is_number(v)) {
        set_err(c, ptr_join(where, kw, c->p), "must be a number");
        return 0;
    }
    *out = v;
    return 1;
}

static node_t *sub(cctx_t *c, json_t *s, const char *kw, const char *base,
                   const char *where, int *ok)
{
    json_t *v = json_object_get(s, kw);
    node_t *n;

    if (!v) {
        return NULL;
    }
    n = compile_node(c, v, base, ptr_join(where, kw, c->p));
    if (!n) {
        *ok = 0;
    }
    return n;
}

static apr_array_header_t *sub_array(cctx_t *c, json_t *s, const char *kw,
                                     const char *base, const char *where,
                                     int *ok)
{
    json_t *v = json_object_get(s, kw), *e;
    apr_array_header_t *arr;
    size_t i;
    const char *w = ptr_join(where, kw, c->p);

    if (!v) {
        return NULL;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        set_err(c, w, "must be a non-empty array of schemas");
        *ok = 0;
        return NULL;
    }
    arr = apr_array_make(c->p, (int)json_array_size(v), sizeof(node_t *));
    json_array_foreach(v, i, e) {
        node_t *n = compile_node(c, e, base,
                                 apr_psprintf(c->p, "%s/%lu", w,
                                              (unsigned long)i));
        if (!n) {
            *ok = 0;
            return NULL;
        }
        APR_ARRAY_PUSH(arr, node_t *) = n;
    }
    return arr;
}

static pcre2_code *compile_regex(cctx_t *c, const char *src, size_t len,
                                 const char *where)
{
    int rc;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, len,
                                   PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &rc,
                                   &off, NULL);

    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        set_err(c, where, apr_psprintf(c->p, "bad regular expression at "
                                       "offset %lu: %s", (unsigned long)off,
                                       (const char *)msg));
        return NULL;
    }
    apr_pool_cleanup_register(c->p, re, free_code, apr_pool_cleanup_null);
    /* JIT when the platform has it (the match limit still applies);
     * without it the interpreter matches */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static int compile_type(cctx_t *c, node_t *n, json_t *t, const char *where)
{
    const char *w = ptr_join(where, "type", c->p);
    json_t *e;
    size_t i;
    unsigned k;

    if (json_is_string(t)) {
        for (k = 0; k < 7; ++k) {
            if (!strcmp(json_string_value(t), type_names[k])) {
                n->types = 1u << k;
                return 1;
            }
        }
        set_err(c, w, apr_psprintf(c->p, "unknown type '%s'",
                                   json_string_value(t)));
        return 0;
    }
    if (!json_is_array(t)) {
        set_err(c, w, "must be a type name or an array of them");
        return 0;
    }
    json_array_foreach(t, i, e) {
        unsigned bit = 0;
        for (k = 0; json_is_string(e) && k < 7; ++k) {
            if (!strcmp(json_string_value(e), type_names[k])) {
                bit = 1u << k;
            }
        }
        if (!bit || (n->types & bit)) {
            set_err(c, apr_psprintf(c->p, "%s/%lu", w, (unsigned long)i),
                    "must be a type name, each given once");
            return 0;
        }
        n->types |= bit;
    }
    return 1;
}

static int compile_object_kws(cctx_t *c, node_t *n, json_t *s,
                              const char *base, const char *where)
{
    json_t *v, *e;
    const char *key;
    size_t i;
    int ok = 1;

    if ((v = json_object_get(s, "properties"))) {
        const char *w = ptr_join(where, "properties", c->p);
        if (!json_is_object(v)) {
            set_err(c, w, "must be an object of schemas");
            return 0;
        }
        n->props = apr_array_make(c->p, (int)json_object_size(v),
                                  sizeof(named_t));
        json_object_foreach(v, key, e) {
            named_t *nm = apr_array_push(n->props);
            nm->name = key;
            if (!(nm->schema = compile_node(c, e, base, ptr_join(w, key, c->p)))) {
                return 0;
            }
        }
    }
    if ((v = json_object_get(s, "patternProperties"))) {
        const char *w = ptr_join(where, "patternProperties", c->p);
        if (!json_is_object(v)) {
            set_err(c, w, "must be an object of schemas");
            return 0;
        }
        n->pat_props = apr_array_make(c->p, (int)json_object_size(v),
                                      sizeof(pattern_t));
        json_object_foreach(v, key, e) {
            pattern_t *pt = apr_array_push(n->pat_props);
            const char *wk = ptr_join(w, key, c->p);
            pt->src = key;
            if (!(pt->re = compile_regex(c, key, strlen(key), wk))
                || !(pt->schema = compile_node(c, e, base, wk))) {
                return 0;
            }
        }
    }
    n->addl_props = sub(c, s, "additionalProperties", base, where, &ok);
    n->prop_names = sub(c, s, "propertyNames", base, where, &ok);
    if (!ok) {
        return 0;
    }
    if ((v = json_object_get(s, "required"))) {
        if (!json_is_array(v)) {
            set_err(c, ptr_join(where, "required", c->p),
                    "must be an array of strings");
            return 0;
        }
        json_array_foreach(v, i, e) {
            if (!json_is_string(e)) {
                set_err(c, apr_psprintf(c->p, "%s/required/%lu", where,
                                        (unsigned long)i), "must be a string");
                return 0;
            }
        }
        n->required = v;
    }
    if ((v = json_object_get(s, "dependencies"))) {
        const char *w = ptr_join(where, "dependencies", c->p);
        if (!json_is_object(v)) {
            set_err(c, w, "must be an object");
            return 0;
        }
        n->deps = apr_array_make(c->p, (int)json_object_size(v), sizeof(dep_t));
        json_object_foreach(v, key, e) {
            dep_t *d = apr_array_push(n->deps);
            const char *wk = ptr_join(w, key, c->p);
            json_t *nm;
            size_t j;
            d->name = key;
            d->schema = NULL;
            d->names = NULL;
            if (json_is_array(e)) {
                json_array_foreach(e, j, nm) {
                    if (!json_is_string(nm)) {
                        set_err(c, apr_psprintf(c->p, "%s/%lu", wk,
                                                (unsigned long)j),
                                "must be a string");
                        return 0;
                    }
                }
                d->names = e;
            }
            else if (!(d->schema = compile_node(c, e, base, wk))) {
                return 0;
            }
        }
    }
    return get_count(c, &n->min_props, s, "minProperties", where)
        && get_count(c, &n->max_props, s, "maxProperties", where);
}

static int compile_array_kws(cctx_t *c, node_t *n, json_t *s,
                             const char *base, const char *where)
{
    json_t *v = json_object_get(s, "items"), *e;
    int ok = 1;
    size_t i;

    if (v && json_is_array(v)) {
        const char *w = ptr_join(where, "items", c->p);
        n->items_arr = apr_array_make(c->p, (int)json_array_size(v) + 1,
                                      sizeof(node_t *));
        json_array_foreach(v, i, e) {
            node_t *it = compile_node(c, e, base,
                                      apr_psprintf(c->p, "%s/%lu", w,
                                                   (unsigned long)i));
            if (!it) {
                return 0;
            }
            APR_ARRAY_PUSH(n->items_arr, node_t *) = it;
        }
        n->addl_items = sub(c, s, "additionalItems", base, where, &ok);
    }
    else {
        n->items = sub(c, s, "items", base, where, &ok);
        /* additionalItems has no effect without an items array, but a bad
         * one is still a bad schema */
        sub(c, s, "additionalItems", base, where, &ok);
    }
    n->contains = sub(c, s, "contains", base, where, &ok);
    if (!ok) {
        return 0;
    }
    if ((v = json_object_get(s, "uniqueItems"))) {
        if (!json_is_boolean(v)) {
            set_err(c, ptr_join(where, "uniqueItems", c->p),
                    "must be a boolean");
            return 0;
        }
        n->unique = json_is_true(v);
    }
    return get_count(c, &n->min_items, s, "minItems", where)
        && get_count(c, &n->max_items, s, "maxItems", where);
}

static int compile_scalar_kws(cctx_t *c, node_t *n, json_t *s,
                              const char *where)
{
    json_t *v;

    if ((v = json_object_get(s, "type")) && !compile_type(c, n, v, where)) {
        return 0;
    }
    if ((v = json_object_get(s, "enum"))) {
        if (!json_is_array(v)) {
            set_err(c, ptr_join(where, "enum", c->p), "must be an array");
            return 0;
        }
        n->enum_vals = v;
    }
    n->const_val = json_object_get(s, "const");
    if (!get_number(c, &n->minimum, s, "minimum", where)
        || !get_number(c, &n->maximum, s, "maximum", where)
        || !get_number(c, &n->xminimum, s, "exclusiveMinimum", where)
        || !get_number(c, &n->xmaximum, s, "exclusiveMaximum", where)
        || !get_number(c, &n->multiple_of, s, "multipleOf", where)) {
        return 0;
    }
    if (n->multiple_of && json_number_value(n->multiple_of) <= 0) {
        set_err(c, ptr_join(where, "multipleOf", c->p),
                "must be greater than 0");
        return 0;
    }
    if (!get_count(c, &n->min_len, s, "minLength", where)
        || !get_count(c, &n->max_len, s, "maxLength", where)) {
        return 0;
    }
    if ((v = json_object_get(s, "pattern"))) {
        const char *w = ptr_join(where, "pattern", c->p);
        if (!json_is_string(v)) {
            set_err(c, w, "must be a string");
            return 0;
        }
        n->pattern = apr_pcalloc(c->p, sizeof(*n->pattern));
        n->pattern->src = json_string_value(v);
        if (!(n->pattern->re = compile_regex(c, json_string_value(v),
                                             json_string_length(v), w))) {
            return 0;
        }
    }
    if ((v = json_object_get(s, "format"))) {
        if (!json_is_string(v)) {
            set_err(c, ptr_join(where, "format", c->p), "must be a string");
            return 0;
        }
        /* unknown formats are annotations, as the draft says */
        if ((c->flags & BFF_SCHEMA_FORMAT_ASSERT)
            && bff_schema_format_known(json_string_value(v))) {
            n->format = json_string_value(v);
        }
    }
    return 1;
}

static void add_resource(cctx_t *c, const char *uri, json_t *doc,
                         const char *base)
{
    resource_t *r = apr_palloc(c->p, sizeof(*r));

    r->doc = doc;
    r->base = base;
    apr_hash_set(c->resources, uri, APR_HASH_KEY_STRING, r);
}

static node_t *compile_node(cctx_t *c, json_t *s, const char *base,
                            const char *where)
{
    node_t *n;
    json_t *v;
    const json_t **key;
    int ok = 1;

    if (c->err) {
        return NULL;
    }
    if ((n = apr_hash_get(c->compiled, &s, sizeof(s)))) {
        return n;
    }
    n = apr_pcalloc(c->p, sizeof(*n));
    key = apr_palloc(c->p, sizeof(*key));
    *key = s;
    apr_hash_set(c->compiled, key, sizeof(*key), n);
    n->min_len = n->max_len = n->min_items = n->max_items = -1;
    n->min_props = n->max_props = -1;

    if (json_is_boolean(s)) {
        n->is_bool = 1;
        n->bool_val = json_is_true(s);
        return n;
    }
    if (!json_is_object(s)) {
        return set_err(c, where, "a schema must be an object or a boolean");
    }
    if ((v = json_object_get(s, "$ref"))) {
        pending_t *pd;
        if (!json_is_string(v)) {
            return set_err(c, ptr_join(where, "$ref", c->p),
                           "must be a string");
        }
        /* draft-07: the other keywords next to $ref are ignored */
        pd = apr_array_push(c->pending);
        pd->node = n;
        pd->ref = json_string_value(v);
        pd->base = base;
        pd->where = ptr_join(where, "$ref", c->p);
        return n;
    }
    if ((v = json_object_get(s, "$id"))) {
        const char *id, *h;
        if (!json_is_string(v)) {
            return set_err(c, ptr_join(where, "$id", c->p), "must be a string");
        }
        id = uri_resolve(base, json_string_value(v), c->p);
        h = strchr(id, '#');
        if (h && h[1]) {
            /* a plain-name fragment: an anchor within the current base */
            add_resource(c, id, s, base);
        }
        else {
            base = strip_fragment(id, c->p);
            add_resource(c, base, s, base);
        }
    }
    if ((v = json_object_get(s, "definitions"))) {
        const char *w = ptr_join(where, "definitions", c->p), *k;
        json_t *e;
        if (!json_is_object(v)) {
            return set_err(c, w, "must be an object of schemas");
        }
        json_object_foreach(v, k, e) {
            if (!compile_node(c, e, base, ptr_join(w, k, c->p))) {
                return NULL;
            }
        }
    }
    if (!compile_scalar_kws(c, n, s, where)
        || !compile_object_kws(c, n, s, base, where)
        || !compile_array_kws(c, n, s, base, where)) {
        return NULL;
    }
    n->all_of = sub_array(c, s, "allOf", base, where, &ok);
    n->any_of = sub_array(c, s, "anyOf", base, where, &ok);
    n->one_of = sub_array(c, s, "oneOf", base, where, &ok);
    n->not_ = sub(c, s, "not", base, where, &ok);
    n->if_ = sub(c, s, "if", base, where, &ok);
    n->then_ = sub(c, s, "then", base, where, &ok);
    n->else_ = sub(c, s, "else", base, where, &ok);
    return ok ? n : NULL;
}

/* Walks a JSON Pointer fragment from a resource, following $id changes of
 * the objects on the way. NULL when it leads nowhere. */
static json_t *walk_pointer(const char **base, json_t *doc, const char *frag,
                            apr_pool_t *p)
{
    json_t *cur = doc;
    const char *s = frag;

    while (*s == '/') {
        const char *end = s + 1 + strcspn(s + 1, "/");
        char *tok = apr_pstrmemdup(p, s + 1, (apr_size_t)(end - s - 1));
        char *r, *w;
        json_t *id;

        for (r = w = tok; *r; ++r) {
            if (*r == '~' && (r[1] == '0' || r[1] == '1')) {
                *w++ = r[1] == '0' ? '~' : '/';
                ++r;
            }
            else if (*r == '~') {
                return NULL;
            }
            else {
                *w++ = *r;
            }
        }
        *w = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        }
        else if (json_is_array(cur)) {
            char *e;
            unsigned long i = strtoul(tok, &e, 10);
            if (!*tok || *e || (tok[0] == '0' && tok[1])) {
                return NULL;
            }
            cur = json_array_get(cur, i);
        }
        else {
            return NULL;
        }
        if (!cur) {
            return NULL;
        }
        if (json_is_object(cur) && *end == '/'
            && json_is_string(id = json_object_get(cur, "$id"))) {
            *base = strip_fragment(uri_resolve(*base, json_string_value(id),
                                               p), p);
        }
        s = end;
    }
    return *s ? NULL : cur;
}

static int load_metaschema(cctx_t *c)
{
    json_error_t e;
    json_t *meta = json_loads(metaschema_text, 0, &e);

    c->meta_loaded = 1;
    if (!meta) {
        set_err(c, "", "bundled metaschema does not parse");
        return 0;
    }
    bff_json_pool_own(meta, c->p);
    add_resource(c, META_URI, meta, META_URI);
    return compile_node(c, meta, META_URI, "(draft-07 metaschema)") != NULL;
}

static node_t *resolve_ref(cctx_t *c, const pending_t *pd)
{
    const char *abs = uri_resolve(pd->base, pd->ref, c->p);
    const char *hash = strchr(abs, '#');
    const char *docuri = strip_fragment(abs, c->p);
    const char *frag = hash ? pct_decode(hash + 1, c->p) : "";
    resource_t *res = apr_hash_get(c->resources, docuri, APR_HASH_KEY_STRING);
    json_t *target;
    const char *tbase;

    if (!res && !strcmp(docuri, META_URI) && !c->meta_loaded) {
        if (!load_metaschema(c)) {
            return NULL;
        }
        res = apr_hash_get(c->resources, docuri, APR_HASH_KEY_STRING);
    }
    if (!res) {
        return set_err(c, pd->where, apr_psprintf(c->p,
                       "'%s' is not in this document: references to other "
                       "documents are refused (nothing is fetched)", pd->ref));
    }
    if (!frag) {
        return set_err(c, pd->where, "bad %-escape in the fragment");
    }
    tbase = res->base;
    if (!*frag) {
        target = res->doc;
    }
    else if (frag[0] == '/') {
        target = walk_pointer(&tbase, res->doc, frag, c->p);
    }
    else {
        resource_t *anchor = apr_hash_get(c->resources, abs,
                                          APR_HASH_KEY_STRING);
        target = anchor ? anchor->doc : NULL;
        tbase = anchor ? anchor->base : tbase;
    }
    if (!target) {
        return set_err(c, pd->where, apr_psprintf(c->p,
                       "'%s' points to nothing", pd->ref));
    }
    return compile_node(c, target, tbase,
                        apr_psprintf(c->p, "(target of %s)", pd->where));
}

static int resolve_all(cctx_t *c)
{
    int i, j;

    /* the array grows while targets are compiled */
    for (i = 0; i < c->pending->nelts; ++i) {
        pending_t *pd = &APR_ARRAY_IDX(c->pending, i, pending_t);
        node_t *t = resolve_ref(c, pd);
        if (!t) {
            return 0;
        }
        pd = &APR_ARRAY_IDX(c->pending, i, pending_t);
        pd->node->ref = t;
    }
    /* a chain of $ref that comes back to itself never validates anything */
    for (i = 0; i < c->pending->nelts; ++i) {
        const pending_t *pd = &APR_ARRAY_IDX(c->pending, i, pending_t);
        const node_t *n = pd->node;
        for (j = 0; n && n->ref && j <= c->pending->nelts; ++j) {
            n = n->ref;
        }
        if (n && n->ref) {
            set_err(c, pd->where, "$ref loops back to itself");
            return 0;
        }
    }
    return 1;
}

const char *bff_schema_compile(bff_schema_t **out, json_t *doc,
                               const char *name, int flags, apr_pool_t *p)
{
    cctx_t c;
    bff_schema_t *s;

    *out = NULL;
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.name = name ? name : "schema";
    c.flags = flags;
    c.compiled = apr_hash_make(p);
    c.resources = apr_hash_make(p);
    c.pending = apr_array_make(p, 8, sizeof(pending_t));

    s = apr_pcalloc(p, sizeof(*s));
    s->doc = bff_json_pool_own(json_incref(doc), p);
    add_resource(&c, "", doc, "");
    s->root = compile_node(&c, doc, "", "");
    if (!s->root || !resolve_all(&c)) {
        return c.err;
    }
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->mctx) {
        return apr_psprintf(p, "%s: out of memory", c.name);
    }
    apr_pool_cleanup_register(p, s->mctx, free_mctx, apr_pool_cleanup_null);
    pcre2_set_match_limit(s->mctx, REGEX_MATCH_LIMIT);
    *out = s;
    return NULL;
}

const char *bff_schema_load(bff_schema_t **out, const char *path, int flags,
                            apr_pool_t *p)
{
    json_error_t e;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    const char *err;

    *out = NULL;
    if (!doc) {
        return apr_psprintf(p, "%s: line %d column %d: %s", path, e.line,
                            e.column, e.text);
    }
    err = bff_schema_compile(out, doc, path, flags, p);
    json_decref(doc);
    return err;
}

/* ----------------------------------------------------------- validate -- */

typedef struct {
    apr_pool_t *p;
    const bff_schema_t *schema;
    apr_array_header_t *errors;
    int max;
    int depth;
    char *path;             /* the instance's JSON Pointer so far */
    size_t len, cap;
} vctx_t;

static size_t path_push(vctx_t *vc, const char *tok, size_t toklen)
{
    size_t old = vc->len, need = vc->len + 2 * toklen + 2, i;

    if (need > vc->cap) {
        char *np;
        vc->cap = need * 2;
        np = apr_palloc(vc->p, vc->cap);
        memcpy(np, vc->path, vc->len);
        vc->path = np;
    }
    vc->path[vc->len++] = '/';
    for (i = 0; i < toklen; ++i) {
        if (tok[i] == '~' || tok[i] == '/') {
            vc->path[vc->len++] = '~';
            vc->path[vc->len++] = tok[i] == '~' ? '0' : '1';
        }
        else {
            vc->path[vc->len++] = tok[i];
        }
    }
    return old;
}

static size_t path_push_index(vctx_t *vc, size_t i)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%lu", (unsigned long)i);

    return path_push(vc, buf, (size_t)n);
}

static int full(const vctx_t *vc)
{
    return vc->errors->nelts >= vc->max;
}

/* Records a violation at the current path when collecting; returns 0 so
 * callers can write `return fail(...)`. */
static int fail(vctx_t *vc, int collect, const char *keyword,
                const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(vctx_t *vc, int collect, const char *keyword,
                const char *fmt, ...)
{
    bff_schema_error_t *e;
    va_list ap;

    if (!collect || full(vc)) {
        return 0;
    }
    e = apr_array_push(vc->errors);
    e->pointer = apr_pstrmemdup(vc->p, vc->path, vc->len);
    e->keyword = keyword;
    va_start(ap, fmt);
    e->message = apr_pvsprintf(vc->p, fmt, ap);
    va_end(ap);
    return 0;
}

static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    else {
        double x = json_number_value(a), y = json_number_value(b);
        return x < y ? -1 : x > y;
    }
}

static int json_eq(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        return num_cmp(a, b) == 0;
    }
    if (json_typeof(a) != json_typeof(b)) {
        return 0;
    }
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b)
            && !memcmp(json_string_value(a), json_string_value(b),
                       json_string_length(a));
    case JSON_ARRAY: {
        size_t i;
        if (json_array_size(a) != json_array_size(b)) {
            return 0;
        }
        for (i = 0; i < json_array_size(a); ++i) {
            if (!json_eq(json_array_get(a, i), json_array_get(b, i))) {
                return 0;
            }
        }
        return 1;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *v, *w;
        if (json_object_size(a) != json_object_size(b)) {
            return 0;
        }
        json_object_foreach((json_t *)a, k, v) {
            if (!(w = json_object_get(b, k)) || !json_eq(v, w)) {
                return 0;
            }
        }
        return 1;
    }
    default:
        return 1;   /* true, false, null: the type is the value */
    }
}

static unsigned type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL: return T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return T_BOOLEAN;
    case JSON_OBJECT: return T_OBJECT;
    case JSON_ARRAY: return T_ARRAY;
    case JSON_STRING: return T_STRING;
    case JSON_INTEGER: return T_NUMBER | T_INTEGER;
    case JSON_REAL: {
        double d = json_real_value(v);
        return T_NUMBER | (isfinite(d) && d == floor(d) ? T_INTEGER : 0);
    }
    }
    return 0;
}

static const char *type_list(unsigned types, apr_pool_t *p)
{
    const char *s = NULL;
    unsigned k;

    for (k = 0; k < 7; ++k) {
        if (types & (1u << k)) {
            s = s ? apr_pstrcat(p, s, " or ", type_names[k], NULL)
                  : type_names[k];
        }
    }
    return s;
}

/* 1 match, 0 no match, -1 the match gave up (limit) */
static int regex_match(const vctx_t *vc, pcre2_code *re, const char *s,
                       size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc;

    if (!md) {
        return -1;
    }
    rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, md,
                     vc->schema->mctx);
    pcre2_match_data_free(md);
    return rc >= 0 ? 1 : rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

static size_t utf8_len(const char *s, size_t n)
{
    size_t i, cps = 0;

    for (i = 0; i < n; ++i) {
        cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    }
    return cps;
}

static int validate(vctx_t *vc, const node_t *n, const json_t *v,
                    int collect);

/* Continues after a failed keyword only while collecting and not full */
#define CHECK(expr) do { \
        if (!(expr)) { \
            ok = 0; \
            if (!collect || full(vc)) { \
                return 0; \
            } \
        } \
    } while (0)

static int check_number(vctx_t *vc, const node_t *n, const json_t *v,
                        int collect)
{
    int ok = 1;

    if (n->minimum && num_cmp(v, n->minimum) < 0) {
        CHECK(fail(vc, collect, "minimum", "must be >= %g",
                   json_number_value(n->minimum)));
    }
    if (n->maximum && num_cmp(v, n->maximum) > 0) {
        CHECK(fail(vc, collect, "maximum", "must be <= %g",
                   json_number_value(n->maximum)));
    }
    if (n->xminimum && num_cmp(v, n->xminimum) <= 0) {
        CHECK(fail(vc, collect, "exclusiveMinimum", "must be > %g",
                   json_number_value(n->xminimum)));
    }
    if (n->xmaximum && num_cmp(v, n->xmaximum) >= 0) {
        CHECK(fail(vc, collect, "exclusiveMaximum", "must be < %g",
                   json_number_value(n->xmaximum)));
    }
    if (n->multiple_of) {
        int multiple;
        if (json_is_integer(v) && json_is_integer(n->multiple_of)) {
            multiple = json_integer_value(v)
                       % json_integer_value(n->multiple_of) == 0;
        }
        else {
            double q = json_number_value(v) / json_number_value(n->multiple_of);
            multiple = isfinite(q)
                       && fabs(q - nearbyint(q)) <= 1e-9 * fmax(1.0, fabs(q));
        }
        if (!multiple) {
            CHECK(fail(vc, collect, "multipleOf", "must be a multiple of %g",
                       json_number_value(n->multiple_of)));
        }
    }
    return ok;
}

static int check_string(vctx_t *vc, const node_t *n, const json_t *v,
                        int collect)
{
    int ok = 1;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);

    if (n->min_len >= 0 || n->max_len >= 0) {
        size_t cps = utf8_len(s, len);
        if (n->min_len >= 0 && cps < (size_t)n->min_len) {
            CHECK(fail(vc, collect, "minLength",
                       "must be at least %ld characters long", n->min_len));
        }
        if (n->max_len >= 0 && cps > (size_t)n->max_len) {
            CHECK(fail(vc, collect, "maxLength",
                       "must be at most %ld characters long", n->max_len));
        }
    }
    if (n->pattern && regex_match(vc, n->pattern->re, s, len) != 1) {
        CHECK(fail(vc, collect, "pattern", "must match the pattern '%s'",
                   n->pattern->src));
    }
    if (n->format && !bff_schema_format_check(n->format, s, len)) {
        CHECK(fail(vc, collect, "format", "must be a valid %s", n->format));
    }
    return ok;
}

static int check_object(vctx_t *vc, const node_t *n, const json_t *v,
                        int collect)
{
    int ok = 1, i;
    const char *key;
    json_t *m;
    size_t size = json_object_size(v), old;

    if (n->min_props >= 0 && size < (size_t)n->min_props) {
        CHECK(fail(vc, collect, "minProperties",
                   "must have at least %ld properties", n->min_props));
    }
    if (n->max_props >= 0 && size > (size_t)n->max_props) {
        CHECK(fail(vc, collect, "maxProperties",
                   "must have at most %ld properties", n->max_props));
    }
    if (n->required) {
        size_t j;
        json_t *r;
        json_array_foreach(n->required, j, r) {
            if (!json_object_get(v, json_string_value(r))) {
                CHECK(fail(vc, collect, "required",
                           "property '%s' is required", json_string_value(r)));
            }
        }
    }
    for (i = 0; n->deps && i < n->deps->nelts; ++i) {
        const dep_t *d = &APR_ARRAY_IDX(n->deps, i, dep_t);
        if (!json_object_get(v, d->name)) {
            continue;
        }
        if (d->schema) {
            CHECK(validate(vc, d->schema, v, collect));
        }
        else {
            size_t j;
            json_t *r;
            json_array_foreach(d->names, j, r) {
                if (!json_object_get(v, json_string_value(r))) {
                    CHECK(fail(vc, collect, "dependencies",
                               "property '%s' is required with '%s'",
                               json_string_value(r), d->name));
                }
            }
        }
    }
    json_object_foreach((json_t *)v, key, m) {
        size_t klen = strlen(key);
        int covered = 0;
        old = path_push(vc, key, klen);
        if (n->prop_names) {
            json_t *name = json_stringn_nocheck(key, klen);
            int good = name && validate(vc, n->prop_names, name, 0);
            json_decref(name);
            if (!good) {
                vc->len = old;   /* reported at the object itself */
                CHECK(fail(vc, collect, "propertyNames",
                           "property name '%s' is not allowed", key));
                old = path_push(vc, key, klen);
            }
        }
        for (i = 0; n->props && i < n->props->nelts; ++i) {
            const named_t *nm = &APR_ARRAY_IDX(n->props, i, named_t);
            if (!strcmp(nm->name, key)) {
                covered = 1;
                if (!validate(vc, nm->schema, m, collect)) {
                    vc->len = old;
                    CHECK(0);
                    old = path_push(vc, key, klen);
                }
            }
        }
        for (i = 0; n->pat_props && i < n->pat_props->nelts; ++i) {
            const pattern_t *pt = &APR_ARRAY_IDX(n->pat_props, i, pattern_t);
            int rc = regex_match(vc, pt->re, key, klen);
            if (rc < 0) {
                vc->len = old;
                CHECK(fail(vc, collect, "patternProperties",
                           "pattern '%s' gave up on property '%s'", pt->src,
                           key));
                old = path_push(vc, key, klen);
            }
            else if (rc) {
                covered = 1;
                if (!validate(vc, pt->schema, m, collect)) {
                    vc->len = old;
                    CHECK(0);
                    old = path_push(vc, key, klen);
                }
            }
        }
        if (!covered && n->addl_props) {
            if (n->addl_props->is_bool && !n->addl_props->bool_val) {
                CHECK(fail(vc, collect, "additionalProperties",
                           "property '%s' is not allowed", key));
            }
            else if (!validate(vc, n->addl_props, m, collect)) {
                vc->len = old;
                CHECK(0);
            }
        }
        vc->len = old;
    }
    return ok;
}

/* A hash that agrees with json_eq: equal values hash alike (1 and 1.0
 * too; object members in any order). */
static apr_uint64_t json_hash(const json_t *v)
{
    apr_uint64_t h = 1469598103934665603ULL;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_INTEGER:
    case JSON_REAL: {
        double d = json_number_value(v);
        unsigned char b[sizeof(double)];
        if (d == 0) {
            d = 0;    /* -0.0 == 0.0 */
        }
        memcpy(b, &d, sizeof(b));
        for (i = 0; i < sizeof(b); ++i) {
            h = (h ^ b[i]) * 1099511628211ULL;
        }
        return h;
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        for (i = 0; i < json_string_length(v); ++i) {
            h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
        }
        return h ^ 0x5;
    }
    case JSON_ARRAY:
        for (i = 0; i < json_array_size(v); ++i) {
            h = (h ^ json_hash(json_array_get(v, i))) * 1099511628211ULL;
        }
        return h ^ 0x7;
    case JSON_OBJECT: {
        const char *k;
        json_t *m;
        apr_uint64_t sum = 0;
        json_object_foreach((json_t *)v, k, m) {
            apr_uint64_t kh = 1469598103934665603ULL;
            const char *c;
            /* k itself drives json_object_foreach: walk a copy */
            for (c = k; *c; ++c) {
                kh = (kh ^ (unsigned char)*c) * 1099511628211ULL;
            }
            sum += (kh ^ json_hash(m)) * 0x9E3779B97F4A7C15ULL;
        }
        return sum ^ 0xB;
    }
    default:
        return (apr_uint64_t)json_typeof(v);
    }
}

typedef struct {
    apr_uint64_t hash;
    size_t index;
} hashed_t;

static int hashed_cmp(const void *a, const void *b)
{
    const hashed_t *x = a, *y = b;

    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/* uniqueItems in O(n log n): sorted by hash, only equal hashes compared.
 * 1 with the first two equal items found (lower index first). */
static int find_duplicate(size_t dup[2], const json_t *arr, apr_pool_t *p)
{
    size_t n = json_array_size(arr), i, j;
    hashed_t *h = apr_palloc(p, n * sizeof(*h));
    int found = 0;

    for (i = 0; i < n; ++i) {
        h[i].hash = json_hash(json_array_get(arr, i));
        h[i].index = i;
    }
    qsort(h, n, sizeof(*h), hashed_cmp);
    for (i = 0; i < n; ++i) {
        for (j = i + 1; j < n && h[j].hash == h[i].hash; ++j) {
            if (json_eq(json_array_get(arr, h[i].index),
                        json_array_get(arr, h[j].index))
                && (!found || h[i].index < dup[0]
                    || (h[i].index == dup[0] && h[j].index < dup[1]))) {
                dup[0] = h[i].index;
                dup[1] = h[j].index;
                found = 1;
            }
        }
    }
    return found;
}

static int check_array(vctx_t *vc, const node_t *n, const json_t *v,
                       int collect)
{
    int ok = 1;
    size_t size = json_array_size(v), i, old;

    if (n->min_items >= 0 && size < (size_t)n->min_items) {
        CHECK(fail(vc, collect, "minItems", "must have at least %ld items",
                   n->min_items));
    }
    if (n->max_items >= 0 && size > (size_t)n->max_items) {
        CHECK(fail(vc, collect, "maxItems", "must have at most %ld items",
                   n->max_items));
    }
    if (n->unique && size > 1) {
        size_t dup[2];
        if (find_duplicate(dup, v, vc->p)) {
            CHECK(fail(vc, collect, "uniqueItems", "items %lu and %lu are equal",
                       (unsigned long)dup[0], (unsigned long)dup[1]));
        }
    }
    for (i = 0; i < size; ++i) {
        const node_t *it = n->items;
        if (n->items_arr) {
            it = i < (size_t)n->items_arr->nelts
                 ? APR_ARRAY_IDX(n->items_arr, i, node_t *) : n->addl_items;
        }
        if (!it) {
            continue;
        }
        old = path_push_index(vc, i);
        if (n->items_arr && i >= (size_t)n->items_arr->nelts && it->is_bool
            && !it->bool_val) {
            CHECK(fail(vc, collect, "additionalItems",
                       "no item is allowed past %d",
                       n->items_arr->nelts));
            vc->len = old;
            break;
        }
        if (!validate(vc, it, json_array_get(v, i), collect)) {
            vc->len = old;
            CHECK(0);
        }
        vc->len = old;
    }
    if (n->contains) {
        int found = 0;
        for (i = 0; i < size && !found; ++i) {
            found = validate(vc, n->contains, json_array_get(v, i), 0);
        }
        if (!found) {
            CHECK(fail(vc, collect, "contains",
                       "no item matches the \"contains\" schema"));
        }
    }
    return ok;
}

static int check_combinators(vctx_t *vc, const node_t *n, const json_t *v,
                             int collect)
{
    int ok = 1, i;

    for (i = 0; n->all_of && i < n->all_of->nelts; ++i) {
        CHECK(validate(vc, APR_ARRAY_IDX(n->all_of, i, node_t *), v, collect));
    }
    if (n->any_of) {
        int any = 0;
        for (i = 0; i < n->any_of->nelts && !any; ++i) {
            any = validate(vc, APR_ARRAY_IDX(n->any_of, i, node_t *), v, 0);
        }
        if (!any) {
            CHECK(fail(vc, collect, "anyOf", "matches none of the schemas"));
        }
    }
    if (n->one_of) {
        int count = 0;
        for (i = 0; i < n->one_of->nelts && count < 2; ++i) {
            count += validate(vc, APR_ARRAY_IDX(n->one_of, i, node_t *), v, 0);
        }
        if (count != 1) {
            CHECK(fail(vc, collect, "oneOf", count ? "matches more than one "
                       "of the schemas" : "matches none of the schemas"));
        }
    }
    if (n->not_ && validate(vc, n->not_, v, 0)) {
        CHECK(fail(vc, collect, "not", "must not match the \"not\" schema"));
    }
    if (n->if_) {
        const node_t *branch = validate(vc, n->if_, v, 0) ? n->then_ : n->else_;
        if (branch) {
            CHECK(validate(vc, branch, v, collect));
        }
    }
    return ok;
}

static int validate_inner(vctx_t *vc, const node_t *n, const json_t *v,
                          int collect)
{
    int ok = 1, i;
    unsigned t = type_of(v);

    if (n->is_bool) {
        return n->bool_val ? 1 : fail(vc, collect, "false",
                                      "no value is allowed here");
    }
    if (n->ref) {
        return validate(vc, n->ref, v, collect);
    }
    if (n->types && !(n->types & t)) {
        CHECK(fail(vc, collect, "type", "must be %s",
                   type_list(n->types, vc->p)));
    }
    if (n->enum_vals) {
        int found = 0;
        for (i = 0; !found && (size_t)i < json_array_size(n->enum_vals); ++i) {
            found = json_eq(v, json_array_get(n->enum_vals, (size_t)i));
        }
        if (!found) {
            CHECK(fail(vc, collect, "enum", "must be one of the listed values"));
        }
    }
    if (n->const_val && !json_eq(v, n->const_val)) {
        CHECK(fail(vc, collect, "const", "must be the constant value"));
    }
    if (t & T_NUMBER) {
        CHECK(check_number(vc, n, v, collect));
    }
    else if (t == T_STRING) {
        CHECK(check_string(vc, n, v, collect));
    }
    else if (t == T_OBJECT) {
        CHECK(check_object(vc, n, v, collect));
    }
    else if (t == T_ARRAY) {
        CHECK(check_array(vc, n, v, collect));
    }
    CHECK(check_combinators(vc, n, v, collect));
    return ok;
}

static int validate(vctx_t *vc, const node_t *n, const json_t *v, int collect)
{
    int ok;

    if (vc->depth >= MAX_EVAL_DEPTH) {
        return fail(vc, collect, "$ref", "the schema recurses too deeply");
    }
    ++vc->depth;
    ok = validate_inner(vc, n, v, collect);
    --vc->depth;
    return ok;
}

int bff_schema_validate(apr_array_header_t **errors, const bff_schema_t *s,
                        const json_t *instance, int max_errors,
                        apr_pool_t *p)
{
    vctx_t vc;
    int ok;

    memset(&vc, 0, sizeof(vc));
    vc.p = p;
    vc.schema = s;
    vc.max = max_errors > 0 ? max_errors : 1;
    vc.errors = apr_array_make(p, errors ? 4 : 1, sizeof(bff_schema_error_t));
    vc.cap = 128;
    vc.path = apr_palloc(p, vc.cap);
    ok = validate(&vc, s->root, instance, errors != NULL);
    if (errors) {
        *errors = ok ? NULL : vc.errors;
    }
    return ok;
}

/* -------------------------------------------------------------- bodies -- */

bff_body_result_e bff_schema_parse_body(json_t **out, const char **detail,
                                        const char *buf, size_t len,
                                        size_t max_bytes, int max_depth,
                                        apr_pool_t *p)
{
    json_error_t e;
    json_t *v;

    *out = NULL;
    *detail = NULL;
    if (len > max_bytes) {
        return BFF_BODY_TOO_LARGE;
    }
    if (bff_json_depth(buf, len) > max_depth) {
        return BFF_BODY_TOO_DEEP;
    }
    v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (!v) {
        *detail = apr_psprintf(p, "%s (line %d, column %d)", e.text, e.line,
                               e.column);
        return BFF_BODY_NOT_JSON;
    }
    *out = bff_json_pool_own(v, p);
    return BFF_BODY_OK;
}
