/*
 * Response shaping: allow and deny lists of dotted paths.
 *
 * All paths of a shape are merged into one tree at config time, so a
 * response is shaped in a single walk whatever the number of paths. A
 * node records whether an allow or deny path ends there and whether one
 * passes below it, which is enough to decide per key: drop it, keep it
 * whole, or descend.
 */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_lib.h>

#include "bff_core.h"

typedef struct shape_node_t shape_node_t;
struct shape_node_t {
    const char *name;
    apr_size_t nlen;
    /* Children by name for lookups, and as a list for walking them: an
     * apr_hash_first(NULL, ...) iteration writes into the hash, and a
     * shape is shared by all request threads. */
    apr_hash_t *kids;       /* segment name -> shape_node_t, or NULL */
    apr_array_header_t *kidlist;    /* shape_node_t * */
    int allow;              /* an allow path ends here: keep all below */
    int allow_below;        /* an allow path continues below this node */
    int deny;               /* a deny path ends here: drop this key */
    int deny_below;         /* a deny path continues below this node */
};

struct bff_shape_t {
    apr_pool_t *pool;
    shape_node_t root;
    int npaths;
};

bff_shape_t *bff_shape_create(apr_pool_t *p)
{
    bff_shape_t *sh = apr_pcalloc(p, sizeof(*sh));
    sh->pool = p;
    return sh;
}

int bff_shape_empty(const bff_shape_t *sh)
{
    return sh->npaths == 0;
}

static int is_seg_char(int c)
{
    return apr_isalnum(c) || c == '_' || c == '-';
}

const char *bff_shape_path_root(const char *path, apr_pool_t *p)
{
    const char *s = path;

    while (is_seg_char((unsigned char)*s)) {
        ++s;
    }
    return apr_pstrmemdup(p, path, (apr_size_t)(s - path));
}

const char *bff_shape_add(bff_shape_t *sh, const char *path, int allow,
                          apr_pool_t *p)
{
    const char *what = allow ? "allow" : "deny";
    apr_array_header_t *segs = apr_array_make(p, 4, sizeof(const char *));
    shape_node_t *node;
    const char *s = path;
    int i;

    if (!path || !*path) {
        return apr_psprintf(p, "%s path is empty", what);
    }
    /* Validate the whole path before touching the tree, so a rejected
     * path leaves the shape unchanged. */
    for (;;) {
        const char *start = s;

        while (is_seg_char((unsigned char)*s)) {
            ++s;
        }
        if (s == start) {
            if (!*s || *s == '.' || *s == '[') {
                return apr_psprintf(p, "%s path '%s': empty segment at "
                                    "offset %d", what, path,
                                    (int)(s - path));
            }
            return apr_psprintf(p, "%s path '%s': invalid character at "
                                "offset %d (segments are letters, digits, "
                                "'_' and '-')", what, path, (int)(s - path));
        }
        *(const char **)apr_array_push(segs) =
            apr_pstrmemdup(sh->pool, start, (apr_size_t)(s - start));
        /* "[]" is documentation only: arrays are always walked through */
        if (*s == '[') {
            if (s[1] != ']') {
                return apr_psprintf(p, "%s path '%s': expected '[]' at "
                                    "offset %d", what, path,
                                    (int)(s - path));
            }
            s += 2;
        }
        if (!*s) {
            break;
        }
        if (*s != '.') {
            return apr_psprintf(p, "%s path '%s': invalid character at "
                                "offset %d (expected '.' or the end)", what,
                                path, (int)(s - path));
        }
        ++s;
    }

    node = &sh->root;
    for (i = 0; i < segs->nelts; ++i) {
        const char *name = APR_ARRAY_IDX(segs, i, const char *);
        shape_node_t *kid;

        if (allow) {
            node->allow_below = 1;
        }
        else {
            node->deny_below = 1;
        }
        if (!node->kids) {
            node->kids = apr_hash_make(sh->pool);
            node->kidlist = apr_array_make(sh->pool, 2,
                                           sizeof(shape_node_t *));
        }
        kid = apr_hash_get(node->kids, name, APR_HASH_KEY_STRING);
        if (!kid) {
            kid = apr_pcalloc(sh->pool, sizeof(*kid));
            kid->name = name;
            kid->nlen = strlen(name);
            apr_hash_set(node->kids, name, APR_HASH_KEY_STRING, kid);
            *(shape_node_t **)apr_array_push(node->kidlist) = kid;
        }
        node = kid;
    }
    if (allow) {
        node->allow = 1;
    }
    else {
        node->deny = 1;
    }
    sh->npaths++;
    return NULL;
}

static void shape_value(const shape_node_t *node, json_t *v, int restrict_);

/* restrict_: only keys on an allow path survive at this level. */
static void shape_object(const shape_node_t *node, json_t *obj, int restrict_)
{
    const char *key;
    size_t klen;
    json_t *val;
    void *tmp;

    if (restrict_) {
        /* every key of the document has to be judged */
        json_object_keylen_foreach_safe(obj, tmp, key, klen, val) {
            const shape_node_t *kid = node->kids
                ? apr_hash_get(node->kids, key, (apr_ssize_t)klen) : NULL;

            if (!kid || kid->deny || (!kid->allow && !kid->allow_below)) {
                json_object_deln(obj, key, klen);
            }
            else if (!kid->allow || kid->deny_below) {
                shape_value(kid, val, !kid->allow);
            }
        }
    }
    else if (node->kids) {
        /* only denied keys matter: look them up instead of scanning */
        int i;

        for (i = 0; i < node->kidlist->nelts; ++i) {
            const shape_node_t *kid =
                APR_ARRAY_IDX(node->kidlist, i, const shape_node_t *);

            if (kid->deny) {
                json_object_deln(obj, kid->name, kid->nlen);
            }
            else if (kid->deny_below
                     && (val = json_object_getn(obj, kid->name, kid->nlen))) {
                shape_value(kid, val, 0);
            }
        }
    }
}

static void shape_value(const shape_node_t *node, json_t *v, int restrict_)
{
    if (json_is_object(v)) {
        shape_object(node, v, restrict_);
    }
    else if (json_is_array(v)) {
        /* a path segment meeting an array applies to every element;
         * scalars and nulls on the way are kept as they are */
        size_t i;
        json_t *e;

        json_array_foreach(v, i, e) {
            shape_value(node, e, restrict_);
        }
    }
}

void bff_shape_apply(const bff_shape_t *sh, json_t *doc)
{
    if (!doc || sh->npaths == 0) {
        return;
    }
    shape_value(&sh->root, doc, sh->root.allow_below);
}
