/*
 * libFuzzer target for the presentation config parsers and their
 * application (lib/bff_present.c): BFFJoin, BFFLift, BFFRename, BFFWrap,
 * BFFMergePolicy, BFFDropEmpty, BFFFields and ?fields= selections.
 *
 *   scripts/fuzz.sh fuzz_present
 *
 * Input: a flags byte (bits 0-1: merge policy, bit 2: drop-empty), then
 * lines; the first line that starts with '{' and every line after it are
 * the JSON document. Other lines are directives, "X ARG1 ARG2" split on
 * single spaces:
 *   J target spec   a join          L path [into]   a lift
 *   R from to       a rename        W path key      a wrap
 *   F path          BFFFields       D path          a forbidden field
 *   S list          a ?fields= selection (after every F and D)
 * Besides the sanitizers, it aborts when an invariant breaks: a refused
 * directive names the problem; the document stays an object that jansson
 * can serialise; a join copies at most its byte limit (the first that
 * would copy more stops with an error); an accepted
 * selection is sorted, unique and inside the allowed fields, and one that
 * is refused says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_core.h"

#define JOIN_LIMIT 2048

static apr_pool_t *gpool;

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void check_refused(const char *err)
{
    check(!err || *err);
}

static int under_allowed(const char *f, const apr_array_header_t *allowed)
{
    int i;

    for (i = 0; i < allowed->nelts; i++) {
        const char *a = APR_ARRAY_IDX(allowed, i, const char *);
        size_t n = strlen(a);

        if (!strncmp(f, a, n) && (f[n] == '\0' || f[n] == '.')) {
            return 1;
        }
    }
    return 0;
}

static void check_select(const bff_fields_t *fl, const char *list,
                         apr_pool_t *p)
{
    bff_fields_sel_t sel;
    int i;

    if (!bff_fields_select(&sel, fl, list, p)) {
        check(sel.error || sel.unknown->nelts || sel.forbidden->nelts);
        return;
    }
    check(sel.norm && sel.fields->nelts > 0
          && sel.fields->nelts <= BFF_FIELDS_MAX);
    for (i = 0; i < sel.fields->nelts; i++) {
        const char *f = APR_ARRAY_IDX(sel.fields, i, const char *);

        check(under_allowed(f, bff_fields_allowed(fl)));
        check(!i || strcmp(APR_ARRAY_IDX(sel.fields, i - 1, const char *),
                           f) < 0);
    }
    bff_shape_apply(bff_fields_shape(sel.fields, p), NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    bff_present_t *pr;
    bff_fields_t *fl;
    apr_array_header_t *selections, *roots;
    char *buf, *line, *next, *jtext = NULL;
    json_t *doc;
    const char *key, *err;
    json_t *v;
    apr_size_t copied;
    int i, joins = 0;

    if (!gpool) {
        apr_initialize();
        apr_pool_create(&gpool, NULL);
    }
    if (size < 1 || size > 4096) {
        return 0;
    }
    apr_pool_create(&p, gpool);
    pr = bff_present_create(p);
    fl = bff_fields_create(p);
    selections = apr_array_make(p, 2, sizeof(const char *));
    check(!bff_present_policy(pr, (const char *[]){ "error", "first-wins",
                              "last-wins", "namespace" }[data[0] & 3], p));
    bff_present_drop_empty(pr, (data[0] >> 2) & 1);

    buf = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    for (line = buf; line && !jtext; line = next) {
        char *a1, *a2 = NULL;

        if ((next = strchr(line, '\n'))) {
            *next++ = '\0';
        }
        if (line[0] == '{') {
            jtext = line;
            if (next) {
                next[-1] = '\n';
            }
            break;
        }
        if (!line[0] || line[1] != ' ') {
            continue;
        }
        a1 = line + 2;
        if ((a2 = strchr(a1, ' '))) {
            *a2++ = '\0';
        }
        switch (line[0]) {
        case 'J':
            err = bff_present_join(pr, a1, a2, 0, p);
            check_refused(err);
            joins += !err;
            break;
        case 'L':
            check_refused(bff_present_lift(pr, a1, a2, p));
            break;
        case 'R':
            check_refused(bff_present_rename(pr, a1, a2 ? a2 : "", p));
            break;
        case 'W':
            check_refused(bff_present_wrap(pr, a1, a2 ? a2 : "", p));
            break;
        case 'F':
            check_refused(bff_fields_allow(fl, a1, p));
            break;
        case 'D':
            check_refused(bff_fields_forbid(fl, a1, p));
            break;
        case 'S':
            if (a2) {
                a2[-1] = ' ';
            }
            APR_ARRAY_PUSH(selections, const char *) = a1;
            break;
        }
    }
    for (i = 0; i < selections->nelts; i++) {
        check_select(fl, APR_ARRAY_IDX(selections, i, const char *), p);
    }

    doc = jtext && bff_json_depth(jtext, strlen(jtext)) <= 32
          ? json_loads(jtext, 0, NULL) : NULL;
    if (json_is_object(doc)) {
        roots = apr_array_make(p, 4, sizeof(const char *));
        json_object_foreach(doc, key, v) {
            APR_ARRAY_PUSH(roots, const char *) = apr_pstrdup(p, key);
        }
        check_refused(bff_present_check(pr, roots, p));
        err = bff_present_joins(&copied, pr, doc, JOIN_LIMIT, p);
        /* each join copies at most the limit; the one that would copy
         * more stops the run */
        check(err ? *err && copied > JOIN_LIMIT
                  : copied <= (apr_size_t)joins * JOIN_LIMIT);
        if (!err) {
            check_refused(bff_present_apply(pr, doc, p));
        }
        check(json_is_object(doc));
        free(json_dumps(doc, JSON_COMPACT));
    }
    json_decref(doc);
    apr_pool_destroy(p);
    return 0;
}
