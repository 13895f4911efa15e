/*
 * Typed rules for query parameters and headers (see bff_schema.h).
 *
 * A rule is turned into a small JSON Schema and checked by the same
 * validator as bodies, so "minimum", "pattern", "enum" ... mean exactly
 * what they mean in a body schema. The text of the value is converted to
 * the rule's JSON type first; text that does not convert fails "type".
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_schema.h"
#include "bff_opts.h"

typedef enum { R_STRING, R_INTEGER, R_NUMBER, R_BOOLEAN } rule_kind_e;

struct bff_rule_t {
    const char *name;
    rule_kind_e kind;
    int required;
    bff_schema_t *schema;
};

static const struct {
    const char *type;
    rule_kind_e kind;
    const char *format;
} types[] = {
    { "string", R_STRING, NULL },
    { "integer", R_INTEGER, NULL },
    { "number", R_NUMBER, NULL },
    { "boolean", R_BOOLEAN, NULL },
    { "uuid", R_STRING, "uuid" },
    { "date", R_STRING, "date" },
    { "date-time", R_STRING, "date-time" },
};

static const char *const kind_names[] = {
    "string", "integer", "number", "boolean"
};

/* a bound: a number for numbers, a count for string lengths */
static const char *bound(json_t *schema, rule_kind_e kind, const char *kw_num,
                         const char *kw_len, const char *v, apr_pool_t *p)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(d)) {
        return apr_psprintf(p, "'%s' is not a number", v);
    }
    if (kind == R_INTEGER || kind == R_NUMBER) {
        json_object_set_new(schema, kw_num, d == floor(d) && fabs(d) < 1e15
                            ? json_integer((json_int_t)d) : json_real(d));
        return NULL;
    }
    if (kind != R_STRING || d < 0 || d != floor(d) || d > 1e9) {
        return apr_psprintf(p, "'%s' must be a length (strings) or a bound "
                            "(integer, number)", v);
    }
    json_object_set_new(schema, kw_len, json_integer((json_int_t)d));
    return NULL;
}

/* what the options of one rule write into */
typedef struct {
    bff_rule_t *r;
    json_t *schema;
    int required;
} rule_opts_t;

static const char *opt_min(void *target, const char *v, apr_pool_t *p)
{
    rule_opts_t *o = target;

    return bound(o->schema, o->r->kind, "minimum", "minLength", v, p);
}

static const char *opt_max(void *target, const char *v, apr_pool_t *p)
{
    rule_opts_t *o = target;

    return bound(o->schema, o->r->kind, "maximum", "maxLength", v, p);
}

static const char *opt_pattern(void *target, const char *v, apr_pool_t *p)
{
    rule_opts_t *o = target;

    json_object_set_new(o->schema, "pattern", json_string(v));
    return NULL;
}

static const char *opt_enum(void *target, const char *v, apr_pool_t *p)
{
    rule_opts_t *o = target;
    json_t *vals = json_array();

    do {
        size_t n = strcspn(v, "|");
        json_array_append_new(vals, json_stringn(v, n));
        v += n;
    } while (*v++);
    json_object_set_new(o->schema, "enum", vals);
    return NULL;
}

static const bff_opt_t string_opts[] = {
    BFF_OPT_SET("required", rule_opts_t, required, 1),
    BFF_OPT_CALL("min", opt_min),
    BFF_OPT_CALL("max", opt_max),
    BFF_OPT_CALL("pattern", opt_pattern),
    BFF_OPT_CALL("enum", opt_enum),
    BFF_OPT_END
};

static const bff_opt_t number_opts[] = {
    BFF_OPT_SET("required", rule_opts_t, required, 1),
    BFF_OPT_CALL("min", opt_min),
    BFF_OPT_CALL("max", opt_max),
    BFF_OPT_END
};

static const char *rule_option(bff_rule_t *r, json_t *schema, const char *opt,
                               apr_pool_t *p)
{
    rule_opts_t o = { r, schema, 0 };
    const char *err = bff_opt_parse(r->kind == R_STRING ? string_opts
                                                        : number_opts,
                                    &o, opt, p);

    r->required |= o.required;
    return err;
}

const char *bff_rule_compile(bff_rule_t **out, const char *name,
                             const char *type, const char *const *opts,
                             int nopts, apr_pool_t *p)
{
    bff_rule_t *r = apr_pcalloc(p, sizeof(*r));
    json_t *schema;
    const char *err = NULL;
    size_t t;
    int i;

    *out = NULL;
    for (t = 0; t < sizeof(types) / sizeof(types[0]); ++t) {
        if (!strcmp(types[t].type, type)) {
            break;
        }
    }
    if (t == sizeof(types) / sizeof(types[0])) {
        return apr_psprintf(p, "%s: unknown type '%s' (expected string, "
                            "integer, number, boolean, uuid, date or "
                            "date-time)", name, type);
    }
    r->name = name;
    r->kind = types[t].kind;
    schema = json_pack("{s:s}", "type", kind_names[r->kind]);
    if (types[t].format) {
        json_object_set_new(schema, "format", json_string(types[t].format));
    }
    for (i = 0; !err && i < nopts; ++i) {
        err = rule_option(r, schema, opts[i], p);
    }
    if (!err) {
        err = bff_schema_compile(&r->schema, schema, name,
                                 BFF_SCHEMA_FORMAT_ASSERT, p);
    }
    json_decref(schema);
    if (err) {
        return apr_psprintf(p, "%s: %s", name, err);
    }
    *out = r;
    return NULL;
}

const char *bff_rule_name(const bff_rule_t *rule)
{
    return rule->name;
}

/* The value as JSON of the rule's type; NULL when the text is not one. */
static json_t *convert(const bff_rule_t *r, const char *v)
{
    char *end;

    switch (r->kind) {
    case R_INTEGER: {
        long long n;
        const char *d = v + (*v == '-');
        if (!*d || strspn(d, "0123456789") != strlen(d) || strlen(d) > 18) {
            return NULL;
        }
        n = strtoll(v, &end, 10);
        return json_integer((json_int_t)n);
    }
    case R_NUMBER: {
        double d;
        errno = 0;
        d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || apr_isspace(*v)) {
            return NULL;
        }
        return json_real(d);
    }
    case R_BOOLEAN:
        return !strcmp(v, "true") ? json_true()
               : !strcmp(v, "false") ? json_false() : NULL;
    default:
        return json_string(v);   /* NULL when not UTF-8: a type error */
    }
}

int bff_rule_check(const char **keyword, const char **message,
                   const bff_rule_t *rule, const char *value, apr_pool_t *p)
{
    apr_array_header_t *errs = NULL;
    json_t *v;
    int ok;

    *keyword = *message = NULL;
    if (!value) {
        if (!rule->required) {
            return 1;
        }
        *keyword = "required";
        *message = "is required";
        return 0;
    }
    if (!(v = convert(rule, value))) {
        *keyword = "type";
        *message = apr_psprintf(p, "must be %s %s",
                                rule->kind == R_INTEGER ? "an" : "a",
                                kind_names[rule->kind]);
        return 0;
    }
    ok = bff_schema_validate(&errs, rule->schema, v, 1, p);
    json_decref(v);
    if (!ok) {
        const bff_schema_error_t *e = &APR_ARRAY_IDX(errs, 0,
                                                     bff_schema_error_t);
        *keyword = e->keyword;
        *message = e->message;
    }
    return ok;
}
