/*
 * Client-specific presentation of a merged document: joins, lifts,
 * renames, wraps, dropping empty values (with a merge policy for the keys
 * they write), and sparse fieldsets. Paths are parsed once at config time
 * with the reference parser (bff_ref.c); applying them is a walk of the
 * document.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "bff_core.h"

typedef struct {
    const bff_ref_t *target;    /* A[].name */
    const bff_ref_t *src;       /* S[].key */
    const bff_ref_t *local;     /* A[].lkey */
    int src_iter;               /* segment of src carrying "[]" */
    apr_size_t max_size;        /* bytes it may copy; 0: the caller's */
} join_t;

typedef struct {
    const bff_ref_t *a;         /* the path moved / lifted / wrapped */
    const bff_ref_t *b;         /* rename: destination; lift: target */
    const char *key;            /* wrap: the new key */
    int split;                  /* rename: first segment after the last [] */
} op_t;

struct bff_present_t {
    bff_merge_e policy;
    apr_array_header_t *joins;      /* join_t */
    apr_array_header_t *lifts;      /* op_t */
    apr_array_header_t *renames;    /* op_t */
    apr_array_header_t *wraps;      /* op_t */
    int drop_empty;
};

static const char *const policy_names[] = {
    "error", "first-wins", "last-wins", "namespace", NULL
};

bff_present_t *bff_present_create(apr_pool_t *p)
{
    bff_present_t *pr = apr_pcalloc(p, sizeof(*pr));

    pr->joins = apr_array_make(p, 1, sizeof(join_t));
    pr->lifts = apr_array_make(p, 1, sizeof(op_t));
    pr->renames = apr_array_make(p, 2, sizeof(op_t));
    pr->wraps = apr_array_make(p, 1, sizeof(op_t));
    return pr;
}

const char *bff_present_policy(bff_present_t *pr, const char *policy,
                               apr_pool_t *p)
{
    int i;

    for (i = 0; policy_names[i]; i++) {
        if (!strcasecmp(policy, policy_names[i])) {
            pr->policy = (bff_merge_e)i;
            return NULL;
        }
    }
    return apr_psprintf(p, "unknown merge policy '%s' (expected error, "
                        "first-wins, last-wins or namespace)", policy);
}

bff_merge_e bff_present_get_policy(const bff_present_t *pr)
{
    return pr->policy;
}

void bff_present_drop_empty(bff_present_t *pr, int on)
{
    pr->drop_empty = on;
}

int bff_present_empty(const bff_present_t *pr)
{
    return !pr->lifts->nelts && !pr->renames->nelts && !pr->wraps->nelts
           && !pr->drop_empty;
}

/* ------------------------------------------------------------ parsing -- */

/* Number of "[]" in ref; *last the index of the segment carrying the last
 * one (-1 when none). */
static int iters(const bff_ref_t *ref, int *last)
{
    int i, n = 0, it;

    *last = -1;
    for (i = 0; i < bff_ref_nsegs(ref); i++) {
        bff_ref_seg(ref, i, &it);
        if (it) {
            n++;
            *last = i;
        }
    }
    return n;
}

/* 1 when a and b have the same segments (names and "[]") up to n. */
static int same_prefix(const bff_ref_t *a, const bff_ref_t *b, int n)
{
    int i, ia, ib;

    if (bff_ref_nsegs(a) < n || bff_ref_nsegs(b) < n) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (strcmp(bff_ref_seg(a, i, &ia), bff_ref_seg(b, i, &ib))
            || ia != ib) {
            return 0;
        }
    }
    return 1;
}

static const char *parse_plain(const bff_ref_t **out, const char *what,
                               const char *text, apr_pool_t *p)
{
    bff_ref_t *ref;
    int last;
    const char *err = bff_ref_parse(&ref, text, p);

    if (err) {
        return apr_psprintf(p, "%s: %s", what, err);
    }
    if (iters(ref, &last)) {
        return apr_psprintf(p, "%s '%s' cannot go through an array", what,
                            text);
    }
    *out = ref;
    return NULL;
}

const char *bff_present_join(bff_present_t *pr, const char *target,
                             const char *spec, apr_size_t max_size,
                             apr_pool_t *p)
{
    join_t j;
    bff_ref_t *t, *s, *l;
    const char *eq = spec ? strchr(spec, '=') : NULL, *err;
    int tl, sl, ll, n;

    if (!eq) {
        return apr_psprintf(p, "join '%s': expected SOURCE[].KEY="
                            "LIST[].FIELD, e.g. products[].id="
                            "orders[].product_id", spec ? spec : "");
    }
    if ((err = bff_ref_parse(&t, target, p))
        || (err = bff_ref_parse(&s, apr_pstrmemdup(p, spec,
                                (apr_size_t)(eq - spec)), p))
        || (err = bff_ref_parse(&l, eq + 1, p))) {
        return apr_psprintf(p, "join %s %s: %s", target, spec, err);
    }
    n = bff_ref_nsegs(t);
    if (iters(t, &tl) != 1 || tl != n - 2) {
        return apr_psprintf(p, "join target '%s' must be a new field of the "
                            "elements of one array, e.g. orders[].product",
                            target);
    }
    if (iters(s, &sl) != 1 || sl == bff_ref_nsegs(s) - 1) {
        return apr_psprintf(p, "join source '%s' must be a field of the "
                            "elements of one array, e.g. products[].id",
                            bff_ref_text(s));
    }
    if (iters(l, &ll) != 1 || ll != tl || !same_prefix(t, l, tl + 1)
        || ll == bff_ref_nsegs(l) - 1) {
        return apr_psprintf(p, "join key '%s' must be a field of the "
                            "elements of the target's array (%s)",
                            bff_ref_text(l), target);
    }
    j.target = t;
    j.src = s;
    j.local = l;
    j.src_iter = sl;
    j.max_size = max_size;
    APR_ARRAY_PUSH(pr->joins, join_t) = j;
    return NULL;
}

const char *bff_present_lift(bff_present_t *pr, const char *path,
                             const char *into, apr_pool_t *p)
{
    op_t op;
    const char *err;

    memset(&op, 0, sizeof(op));
    if ((err = parse_plain(&op.a, "lift path", path, p))) {
        return err;
    }
    if (into && *into && (err = parse_plain(&op.b, "lift target", into, p))) {
        return err;
    }
    APR_ARRAY_PUSH(pr->lifts, op_t) = op;
    return NULL;
}

const char *bff_present_rename(bff_present_t *pr, const char *from,
                               const char *to, apr_pool_t *p)
{
    op_t op;
    bff_ref_t *a, *b;
    int la, lb;
    const char *err;

    memset(&op, 0, sizeof(op));
    if ((err = bff_ref_parse(&a, from, p)) || (err = bff_ref_parse(&b, to, p))) {
        return apr_psprintf(p, "rename %s %s: %s", from, to, err);
    }
    iters(a, &la);
    iters(b, &lb);
    /* inside arrays, a value moves within its element */
    if (la != lb || (la >= 0 && !same_prefix(a, b, la + 1))) {
        return apr_psprintf(p, "rename %s %s: both paths must go through "
                            "the same arrays (e.g. orders[].quantity "
                            "orders[].qty)", from, to);
    }
    if (la == bff_ref_nsegs(a) - 1 || lb == bff_ref_nsegs(b) - 1) {
        return apr_psprintf(p, "rename %s %s: a path cannot end in []",
                            from, to);
    }
    if (!strcmp(from, to)) {
        return apr_psprintf(p, "rename %s %s: same path", from, to);
    }
    op.a = a;
    op.b = b;
    op.split = la + 1;
    APR_ARRAY_PUSH(pr->renames, op_t) = op;
    return NULL;
}

const char *bff_present_wrap(bff_present_t *pr, const char *path,
                             const char *key, apr_pool_t *p)
{
    op_t op;
    const bff_ref_t *k;
    const char *err;

    memset(&op, 0, sizeof(op));
    if ((err = parse_plain(&op.a, "wrap path", path, p))
        || (err = parse_plain(&k, "wrap key", key, p))) {
        return err;
    }
    if (bff_ref_nsegs(k) != 1) {
        return apr_psprintf(p, "wrap key '%s' must be one name", key);
    }
    op.key = bff_ref_text(k);
    APR_ARRAY_PUSH(pr->wraps, op_t) = op;
    return NULL;
}

/* ---------------------------------------------------- config checking -- */

static int root_stays(const bff_present_t *pr, const char *name)
{
    int i;

    for (i = 0; i < pr->lifts->nelts; i++) {
        const op_t *op = &APR_ARRAY_IDX(pr->lifts, i, op_t);
        if (bff_ref_nsegs(op->a) == 1
            && !strcmp(bff_ref_seg(op->a, 0, NULL), name)) {
            return 0;
        }
    }
    for (i = 0; i < pr->renames->nelts; i++) {
        const op_t *op = &APR_ARRAY_IDX(pr->renames, i, op_t);
        if (bff_ref_nsegs(op->a) == 1
            && !strcmp(bff_ref_seg(op->a, 0, NULL), name)) {
            return 0;
        }
    }
    return 1;
}

const char *bff_present_check(const bff_present_t *pr,
                              const apr_array_header_t *roots, apr_pool_t *p)
{
    int i, j;

    if (pr->policy != BFF_MERGE_ERROR) {
        return NULL;
    }
    for (i = 0; i < pr->renames->nelts; i++) {
        const op_t *a = &APR_ARRAY_IDX(pr->renames, i, op_t);
        const char *to = bff_ref_text(a->b);

        for (j = 0; j < i; j++) {
            const op_t *b = &APR_ARRAY_IDX(pr->renames, j, op_t);
            if (!strcmp(bff_ref_text(b->b), to)) {
                return apr_psprintf(p, "BFFRename %s %s and BFFRename %s %s "
                                    "write the same key (BFFMergePolicy "
                                    "error)", bff_ref_text(b->a), to,
                                    bff_ref_text(a->a), to);
            }
        }
        if (bff_ref_nsegs(a->b) != 1) {
            continue;
        }
        for (j = 0; roots && j < roots->nelts; j++) {
            const char *r = APR_ARRAY_IDX(roots, j, const char *);
            if (!strcmp(r, to) && root_stays(pr, r)) {
                return apr_psprintf(p, "BFFRename %s %s: '%s' is already "
                                    "the key of backend '%s' (BFFMergePolicy "
                                    "error)", bff_ref_text(a->a), to, to, r);
            }
        }
    }
    return NULL;
}

/* ----------------------------------------------------------- applying -- */

/* The value at segments [from, to) of ref below v (objects only), or
 * NULL. Borrowed. */
static json_t *get_path(json_t *v, const bff_ref_t *ref, int from, int to)
{
    int i;

    for (i = from; v && i < to; i++) {
        v = json_object_get(v, bff_ref_seg(ref, i, NULL));
    }
    return v;
}

/* The object at segments [from, to) below v, created where missing; NULL
 * when a value that is not an object is in the way. */
static json_t *ensure_obj(json_t *v, const bff_ref_t *ref, int from, int to)
{
    int i;

    for (i = from; v && i < to; i++) {
        const char *name = bff_ref_seg(ref, i, NULL);
        json_t *next;

        if (!json_is_object(v)) {
            return NULL;
        }
        next = json_object_get(v, name);
        if (!next) {
            next = json_object();
            json_object_set_new(v, name, next);
        }
        v = next;
    }
    return json_is_object(v) ? v : NULL;
}

/* Writes val (a reference is stolen) as obj.key under the merge policy;
 * source names the writer for namespace and for errors. */
static const char *put(const bff_present_t *pr, json_t *obj, const char *key,
                       json_t *val, const char *source, apr_pool_t *p)
{
    if (!json_object_get(obj, key)) {
        json_object_set_new(obj, key, val);
        return NULL;
    }
    switch (pr->policy) {
    case BFF_MERGE_FIRST:
        json_decref(val);
        return NULL;
    case BFF_MERGE_LAST:
        json_object_set_new(obj, key, val);
        return NULL;
    case BFF_MERGE_NAMESPACE:
        json_object_set_new(obj, apr_pstrcat(p, source, "_", key, NULL), val);
        return NULL;
    case BFF_MERGE_ERROR:
    default:
        json_decref(val);
        return apr_psprintf(p, "conflicting key '%s': '%s' writes a key "
                            "that is already there (BFFMergePolicy error)",
                            key, source);
    }
}

/* A scalar's identity for join lookups: type-tagged, so 1 and "1" differ. */
static const char *scalar_tag(const json_t *v, char *buf, size_t size)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return NULL;    /* the caller uses the string itself after 's' */
    case JSON_INTEGER:
        snprintf(buf, size, "i%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case JSON_REAL:
        snprintf(buf, size, "r%.17g", json_real_value(v));
        return buf;
    case JSON_TRUE:
        return "t";
    case JSON_FALSE:
        return "f";
    default:
        return "";      /* objects, arrays, null never match */
    }
}

static json_t *index_get(json_t *index, const json_t *key, apr_pool_t *p,
                         json_t *set)
{
    char buf[64];
    const char *tag = scalar_tag(key, buf, sizeof(buf));

    if (tag && !*tag) {
        return NULL;
    }
    if (!tag) {
        tag = apr_pstrcat(p, "s", json_string_value(key), NULL);
    }
    if (set && !json_object_get(index, tag)) {
        json_object_set(index, tag, set);     /* first occurrence wins */
    }
    return json_object_get(index, tag);
}

/* Attaches the copies; NULL, or an error once they would weigh more than
 * max bytes (as compact JSON), before that copy is made: one source
 * element matched by every element of a long list would otherwise
 * multiply a reply's size without bound. */
static const char *join_apply(apr_size_t *copied, const join_t *j,
                              json_t *doc, apr_size_t max, apr_pool_t *p)
{
    int nt = bff_ref_nsegs(j->target), ns = bff_ref_nsegs(j->src);
    int nl = bff_ref_nsegs(j->local);
    json_t *src = get_path(doc, j->src, 0, j->src_iter + 1);
    json_t *list = get_path(doc, j->target, 0, nt - 1);
    const char *name = bff_ref_seg(j->target, nt - 1, NULL);
    json_t *index, *e;
    size_t i;

    if (!json_is_array(list)) {
        return NULL;
    }
    index = json_object();
    json_array_foreach(src, i, e) {
        json_t *k = get_path(e, j->src, j->src_iter + 1, ns);
        if (k) {
            index_get(index, k, p, e);
        }
    }
    json_array_foreach(list, i, e) {
        json_t *k, *m = NULL;

        if (!json_is_object(e)) {
            continue;
        }
        k = get_path(e, j->local, nt - 1, nl);
        if (k) {
            m = index_get(index, k, p, NULL);
        }
        if (m) {
            *copied += json_dumpb(m, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
            if (*copied > max) {
                json_decref(index);
                return apr_psprintf(p, "BFFJoin %s: the copies it makes "
                                    "exceed %" APR_SIZE_T_FMT " bytes "
                                    "(max-size)", bff_ref_text(j->target),
                                    max);
            }
        }
        /* a copy: later shaping edits each element on its own */
        json_object_set_new(e, name, m ? json_deep_copy(m) : json_null());
    }
    json_decref(index);
    return NULL;
}

const char *bff_present_joins(apr_size_t *copied, const bff_present_t *pr,
                              json_t *doc, apr_size_t max_size, apr_pool_t *p)
{
    const char *err = NULL;
    int i;

    *copied = 0;
    for (i = 0; pr && doc && !err && i < pr->joins->nelts; i++) {
        const join_t *j = &APR_ARRAY_IDX(pr->joins, i, join_t);
        apr_size_t n = 0;

        err = join_apply(&n, j, doc, j->max_size ? j->max_size : max_size, p);
        *copied += n;
    }
    return err;
}

/* Removes the value at segments [from, n) of ref below base and returns
 * it (a new reference), or NULL when it is not there. */
static json_t *take(json_t *base, const bff_ref_t *ref, int from)
{
    int n = bff_ref_nsegs(ref);
    json_t *parent = get_path(base, ref, from, n - 1), *v;
    const char *last = bff_ref_seg(ref, n - 1, NULL);

    v = json_object_get(parent, last);
    if (!v) {
        return NULL;
    }
    json_incref(v);
    json_object_del(parent, last);
    return v;
}

static const char *lift_apply(const bff_present_t *pr, const op_t *op,
                              json_t *doc, apr_pool_t *p)
{
    json_t *v = take(doc, op->a, 0), *dst, *m;
    const char *source = bff_ref_seg(op->a, 0, NULL), *key, *err = NULL;

    if (!v) {
        return NULL;
    }
    dst = op->b ? ensure_obj(doc, op->b, 0, bff_ref_nsegs(op->b)) : doc;
    if (json_is_object(v) && dst) {
        json_object_foreach(v, key, m) {
            if ((err = put(pr, dst, key, json_incref(m), source, p))) {
                break;
            }
        }
    }
    json_decref(v);
    return err;
}

static const char *move(const bff_present_t *pr, const op_t *op, json_t *base,
                        apr_pool_t *p)
{
    int nb = bff_ref_nsegs(op->b);
    json_t *v = take(base, op->a, op->split), *dst;

    if (!v) {
        return NULL;
    }
    dst = ensure_obj(base, op->b, op->split, nb - 1);
    if (!dst) {
        json_decref(v);
        return NULL;
    }
    return put(pr, dst, bff_ref_seg(op->b, nb - 1, NULL), v,
               bff_ref_seg(op->a, 0, NULL), p);
}

/* Walks the common prefix of a rename (segments before op->split, through
 * every array on the way) and moves the value inside each element. */
static const char *rename_walk(const bff_present_t *pr, const op_t *op,
                               json_t *v, int k, apr_pool_t *p)
{
    const char *err = NULL;
    int iter;

    if (k == op->split) {
        return json_is_object(v) ? move(pr, op, v, p) : NULL;
    }
    v = json_object_get(v, bff_ref_seg(op->a, k, &iter));
    if (iter) {
        size_t i;
        json_t *e;

        json_array_foreach(v, i, e) {
            if ((err = rename_walk(pr, op, e, k + 1, p))) {
                break;
            }
        }
        return err;
    }
    return v ? rename_walk(pr, op, v, k + 1, p) : NULL;
}

static void wrap_apply(const op_t *op, json_t *doc)
{
    int n = bff_ref_nsegs(op->a);
    json_t *parent = get_path(doc, op->a, 0, n - 1);
    const char *last = bff_ref_seg(op->a, n - 1, NULL);
    json_t *v = json_object_get(parent, last);

    if (v) {
        json_object_set_new(parent, last, json_pack("{s:O}", op->key, v));
    }
}

static int is_empty(const json_t *v)
{
    return json_is_null(v)
           || (json_is_string(v) && json_string_length(v) == 0)
           || (json_is_array(v) && json_array_size(v) == 0)
           || (json_is_object(v) && json_object_size(v) == 0);
}

static void drop_empty(json_t *v)
{
    const char *key;
    json_t *m;
    void *tmp;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach_safe(v, tmp, key, m) {
            drop_empty(m);
            if (is_empty(m)) {
                json_object_del(v, key);
            }
        }
    }
    else if (json_is_array(v)) {
        /* elements stay: positions can mean something to a client */
        json_array_foreach(v, i, m) {
            drop_empty(m);
        }
    }
}

const char *bff_present_apply(const bff_present_t *pr, json_t *doc,
                              apr_pool_t *p)
{
    const char *err;
    int i;

    if (!pr || !doc || bff_present_empty(pr)) {
        return NULL;
    }
    for (i = 0; i < pr->lifts->nelts; i++) {
        if ((err = lift_apply(pr, &APR_ARRAY_IDX(pr->lifts, i, op_t), doc, p))) {
            return err;
        }
    }
    for (i = 0; i < pr->renames->nelts; i++) {
        if ((err = rename_walk(pr, &APR_ARRAY_IDX(pr->renames, i, op_t), doc,
                               0, p))) {
            return err;
        }
    }
    for (i = 0; i < pr->wraps->nelts; i++) {
        wrap_apply(&APR_ARRAY_IDX(pr->wraps, i, op_t), doc);
    }
    if (pr->drop_empty) {
        drop_empty(doc);
    }
    return NULL;
}

/* ------------------------------------------------------------- fields -- */

struct bff_fields_t {
    apr_array_header_t *allow;      /* normalised paths */
    apr_array_header_t *forbid;
};

bff_fields_t *bff_fields_create(apr_pool_t *p)
{
    bff_fields_t *fl = apr_pcalloc(p, sizeof(*fl));

    fl->allow = apr_array_make(p, 4, sizeof(const char *));
    fl->forbid = apr_array_make(p, 2, sizeof(const char *));
    return fl;
}

/* "orders[].total" -> "orders.total"; NULL or an error. */
static const char *field_norm(const char **out, const char *path, apr_pool_t *p)
{
    bff_ref_t *ref;
    const char *err = bff_ref_parse(&ref, path, p);
    char *s, *o;
    int i;

    if (err) {
        return err;
    }
    s = o = apr_palloc(p, strlen(path) + 1);
    for (i = 0; i < bff_ref_nsegs(ref); i++) {
        const char *seg = bff_ref_seg(ref, i, NULL);
        apr_size_t n = strlen(seg);

        if (i) {
            *o++ = '.';
        }
        memcpy(o, seg, n);
        o += n;
    }
    *o = '\0';
    *out = s;
    return NULL;
}

static const char *fields_add(apr_array_header_t *list, const char *path,
                              apr_pool_t *p)
{
    const char *norm, *err = field_norm(&norm, path, p);

    if (!err) {
        APR_ARRAY_PUSH(list, const char *) = norm;
    }
    return err;
}

const char *bff_fields_allow(bff_fields_t *fl, const char *path, apr_pool_t *p)
{
    return fields_add(fl->allow, path, p);
}

const char *bff_fields_forbid(bff_fields_t *fl, const char *path, apr_pool_t *p)
{
    return fields_add(fl->forbid, path, p);
}

int bff_fields_count(const bff_fields_t *fl)
{
    return fl ? fl->allow->nelts : 0;
}

const apr_array_header_t *bff_fields_allowed(const bff_fields_t *fl)
{
    return fl->allow;
}

/* 1 when path is base or lies below it. */
static int under(const char *path, const char *base)
{
    apr_size_t n = strlen(base);

    return !strncmp(path, base, n) && (path[n] == '\0' || path[n] == '.');
}

static int under_any(const char *path, const apr_array_header_t *list)
{
    int i;

    for (i = 0; i < list->nelts; i++) {
        if (under(path, APR_ARRAY_IDX(list, i, const char *))) {
            return 1;
        }
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int bff_fields_select(bff_fields_sel_t *sel, const bff_fields_t *fl,
                      const char *list, apr_pool_t *p)
{
    char *copy = apr_pstrdup(p, list ? list : ""), *item, *last;
    int count = 0, i, o;

    memset(sel, 0, sizeof(*sel));
    sel->fields = apr_array_make(p, 8, sizeof(const char *));
    sel->unknown = apr_array_make(p, 2, sizeof(const char *));
    sel->forbidden = apr_array_make(p, 2, sizeof(const char *));

    for (item = apr_strtok(copy, ",", &last); item;
         item = apr_strtok(NULL, ",", &last)) {
        char *end;
        const char *norm;

        while (*item == ' ' || *item == '\t') {
            item++;
        }
        end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t')) {
            *--end = '\0';
        }
        if (!*item) {
            continue;
        }
        if (++count > BFF_FIELDS_MAX) {
            sel->error = apr_psprintf(p, "more than %d fields",
                                      BFF_FIELDS_MAX);
            return 0;
        }
        if (strlen(item) > BFF_FIELD_MAX_LEN) {
            sel->error = apr_psprintf(p, "a field is longer than %d bytes",
                                      BFF_FIELD_MAX_LEN);
            return 0;
        }
        if (field_norm(&norm, item, p)) {
            APR_ARRAY_PUSH(sel->unknown, const char *) = item;
        }
        else if (under_any(norm, fl->forbid)) {
            APR_ARRAY_PUSH(sel->forbidden, const char *) = item;
        }
        else if (under_any(norm, fl->allow)) {
            APR_ARRAY_PUSH(sel->fields, const char *) = norm;
        }
        else {
            APR_ARRAY_PUSH(sel->unknown, const char *) = item;
        }
    }
    if (!count) {
        sel->error = "the field list is empty";
        return 0;
    }
    if (sel->unknown->nelts || sel->forbidden->nelts) {
        return 0;
    }
    qsort(sel->fields->elts, (size_t)sel->fields->nelts, sizeof(const char *),
          cmp_str);
    for (i = o = 0; i < sel->fields->nelts; i++) {
        const char *f = APR_ARRAY_IDX(sel->fields, i, const char *);
        if (!o || strcmp(f, APR_ARRAY_IDX(sel->fields, o - 1, const char *))) {
            APR_ARRAY_IDX(sel->fields, o++, const char *) = f;
        }
    }
    sel->fields->nelts = o;
    sel->norm = apr_array_pstrcat(p, sel->fields, ',');
    return 1;
}

bff_shape_t *bff_fields_shape(const apr_array_header_t *fields, apr_pool_t *p)
{
    bff_shape_t *sh = bff_shape_create(p);
    int i;

    for (i = 0; i < fields->nelts; i++) {
        /* normalised paths always parse */
        bff_shape_add(sh, APR_ARRAY_IDX(fields, i, const char *), 1, p);
    }
    return sh;
}
