/*
 * libFuzzer target for the request-time core: route matching, reference
 * evaluation, URL encoding and template expansion, plus the config-time
 * parsers fed with the same bytes.
 *
 *   scripts/fuzz.sh fuzz_tpl
 *
 * Input: PATH '\n' TEXT '\n' JSON, where TEXT is tried as a route pattern,
 * reference, URL/JSON template and shaping path. Besides the sanitizers,
 * it aborts when a security invariant breaks: a URL expansion that changes
 * the fixed prefix or lets a byte outside [A-Za-z0-9-_~%,.] into a value,
 * or a matched parameter value that holds a '/', or an integer written
 * otherwise than jansson prints it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_core.h"

static apr_pool_t *gpool;

static void must(const char *err)
{
    if (err) {
        abort();
    }
}

/* The fixed routes are compiled per input, in the input's pool: Debian's
 * APR allocates pool memory with mmap, which LeakSanitizer does not scan,
 * so regexes held only by a long-lived pool would be reported as leaks. */
static void compile_fixed(bff_route_t **routes, bff_ref_t **refs,
                          bff_tpl_t **url_tpl, bff_tpl_t **int_tpl,
                          apr_pool_t *p)
{
    static const char *const rpat[5] = {
        "/users/{id:int}/orders", "/fx/{code:~[A-Z]{3}}/{x}",
        "/o/{oid:uuid}", "/", "/a/{b}/",
    };
    static const char *const rtext[6] = {
        "a", "a.b", "a[].b", "a[].b[].c", "a[]", "a.x[].y",
    };
    int i;

    for (i = 0; i < 5; ++i) {
        must(bff_route_compile(&routes[i], rpat[i], p));
    }
    for (i = 0; i < 6; ++i) {
        must(bff_ref_parse(&refs[i], rtext[i], p));
    }
    must(bff_tpl_compile(url_tpl, "http://h:1/x/{a}/y?q={a[].b}&r={a.b}",
                         BFF_TPL_URL, p));
    must(bff_tpl_compile(int_tpl, "http://h:1/i/{a}", BFF_TPL_URL, p));
}

typedef struct {
    json_t *doc;
    apr_pool_t *p;
} baton_t;

/* Evaluates the reference against the document, as the engine does. */
static json_t *eval_lookup(void *b, const bff_ref_t *ref)
{
    baton_t *bt = b;
    json_t *root = json_object_get(bt->doc, bff_ref_root(ref));

    if (!root) {
        root = bt->doc;
    }
    return bff_json_pool_own(bff_ref_eval(ref, root), bt->p);
}

static void check_value_bytes(const char *s, const char *end)
{
    for (; s < end; ++s) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '~'
              || c == '%' || c == ',' || c == '.')) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    bff_route_t *routes[5];
    bff_ref_t *refs[6];
    bff_tpl_t *url_tpl, *int_tpl;
    apr_pool_t *p;
    char *buf, *path, *text, *jtext, *nl;
    json_t *doc = NULL;
    const char **vals;
    const char *out;
    bff_route_t *rt;
    bff_ref_t *ref;
    bff_tpl_t *tpl;
    bff_shape_t *sh;
    int i, bad;
    long ms;
    apr_size_t sz;

    if (!inited) {
        apr_initialize();
        apr_pool_create(&gpool, NULL);
        inited = 1;
    }
    if (size > 4096) {
        return 0;
    }
    apr_pool_create(&p, gpool);
    compile_fixed(routes, refs, &url_tpl, &int_tpl, p);

    buf = apr_pstrmemdup(p, (const char *)data, size);
    path = buf;
    text = "";
    jtext = "";
    if ((nl = strchr(path, '\n'))) {
        *nl = '\0';
        text = nl + 1;
        if ((nl = strchr(text, '\n'))) {
            *nl = '\0';
            jtext = nl + 1;
        }
    }

    /* routes: fixed ones and TEXT as a pattern (short: glibc regcomp is
     * not what is under test) */
    for (i = 0; i < 5; ++i) {
        if (bff_route_match(&vals, &bad, routes[i], path, p)
            == BFF_ROUTE_MATCH) {
            int k;
            for (k = 0; k < bff_route_nparams(routes[i]); ++k) {
                if (!vals[k][0] || strchr(vals[k], '/')) {
                    abort();
                }
            }
        }
    }
    if (strlen(text) < 64 && !bff_route_compile(&rt, text, p)) {
        if (bff_route_match(&vals, &bad, rt, path, p) == BFF_ROUTE_MATCH) {
            int k;
            for (k = 0; k < bff_route_nparams(rt); ++k) {
                if (strchr(vals[k], '/')) {
                    abort();
                }
            }
        }
    }

    /* encoding */
    out = bff_url_encode(path, p);
    check_value_bytes(out, out + strlen(out));
    if (strchr(out, '.') || strchr(out, ',')) {
        abort();
    }

    /* parsers */
    (void)bff_parse_duration_ms(&ms, path, p);
    (void)bff_parse_size(&sz, path, p);

    /* JSON document: depth-checked first, as the engine will */
    if (bff_json_depth(jtext, strlen(jtext)) <= 32) {
        doc = bff_json_pool_own(json_loads(jtext, JSON_DECODE_ANY, NULL), p);
    }
    if (doc) {
        baton_t bt = { doc, p };

        for (i = 0; i < 6; ++i) {
            json_t *v = bff_ref_eval(refs[i], doc);
            if (bff_ref_is_multi(refs[i]) && !json_is_array(v)) {
                abort();
            }
            json_decref(v);
        }
        if (!bff_ref_parse(&ref, text, p)) {
            json_decref(bff_ref_eval(ref, doc));
        }

        /* URL expansion never touches the fixed prefix, and values only
         * hold encoded bytes */
        bt.doc = json_is_object(doc) ? doc : NULL;
        if (bt.doc && !bff_tpl_expand(&out, url_tpl, eval_lookup, &bt, p)) {
            const char *prefix = "http://h:1/x/";
            const char *y = strstr(out, "/y?q=");
            if (strncmp(out, prefix, strlen(prefix)) || !y) {
                abort();
            }
            /* the first value runs up to "/y?q=": no '/' inside it,
             * and no ".." (only numbers keep their '.') */
            check_value_bytes(out + strlen(prefix), y);
            if (strstr(out, "..")) {
                abort();
            }
        }
        /* an integer is written as jansson prints it */
        if (bt.doc && json_is_integer(json_object_get(bt.doc, "a"))) {
            char want[64];
            json_int_t a = json_integer_value(json_object_get(bt.doc, "a"));

            snprintf(want, sizeof(want), "http://h:1/i/%" JSON_INTEGER_FORMAT,
                     a);
            if (bff_tpl_expand(&out, int_tpl, eval_lookup, &bt, p)
                || strcmp(out, want)) {
                abort();
            }
        }

        /* TEXT as templates */
        if (bt.doc) {
            if (!bff_tpl_compile(&tpl, text, BFF_TPL_URL, p)) {
                (void)bff_tpl_expand(&out, tpl, eval_lookup, &bt, p);
            }
            if (!bff_tpl_compile(&tpl, text, BFF_TPL_JSON, p)
                && !bff_tpl_expand(&out, tpl, eval_lookup, &bt, p)) {
                /* the expansion of a valid JSON template is valid JSON */
                json_t *j = json_loads(out, JSON_DECODE_ANY, NULL);
                if (!j) {
                    abort();
                }
                json_decref(j);
            }
        }

        /* TEXT as shaping paths (split on ',' into allow and deny) */
        sh = bff_shape_create(p);
        {
            char *save = NULL, *tok;
            char *copy = apr_pstrdup(p, text);
            int allow = 1;
            for (tok = apr_strtok(copy, ",", &save); tok;
                 tok = apr_strtok(NULL, ",", &save)) {
                (void)bff_shape_add(sh, tok, allow, p);
                allow = !allow;
            }
        }
        bff_shape_apply(sh, doc);
    }
    else {
        (void)bff_ref_parse(&ref, text, p);
        (void)bff_tpl_compile(&tpl, text, BFF_TPL_URL, p);
        (void)bff_tpl_compile(&tpl, text, BFF_TPL_JSON, p);
    }

    apr_pool_destroy(p);
    return 0;
}
