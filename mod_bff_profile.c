/*
 * mod_bff: client-specific presentation, the httpd glue.
 *
 * The directives that reshape an endpoint's answer for its clients
 * (BFFJoin, BFFLift, BFFRename, BFFWrap, BFFDropEmpty, BFFMergePolicy go to
 * the engine's presentation, lib/bff_present.c), sparse fieldsets
 * (BFFFields, ?fields=) and per-client defaults chosen by a request header
 * or a verified claim (BFFClientSelect, BFFClientFields). The request side
 * runs before the cache lookup: a refused field list never reaches the
 * cache or a backend, and the effective selection (note bff-fields) is
 * part of the cache key.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_auth.h"
#include "mod_bff_profile.h"
#include "bff_opts.h"
#include "bff_http.h"

APLOG_USE_MODULE(bff);

#define SELECT_NONE   0
#define SELECT_HEADER 1
#define SELECT_CLAIM  2

typedef struct {
    const char *name;              /* "*": when no other client matches */
    apr_array_header_t *paths;     /* as configured */
    const char *norm;              /* normalised selection (the cache key) */
    bff_shape_t *shape;
    const char *file;
    int line;
} profile_t;

struct bff_profile_ep_t {
    bff_fields_t *fields;          /* ?fields= allow-list; forbidden: BFFDeny */
    int select;                    /* SELECT_* */
    const char *select_name;       /* header name or claim path */
    apr_array_header_t *profiles;  /* profile_t */
};

static bff_profile_ep_t *client_ep(bff_ep_conf_t *epc, apr_pool_t *p)
{
    if (!epc->profile) {
        epc->profile = apr_pcalloc(p, sizeof(*epc->profile));
        epc->profile->fields = bff_fields_create(p);
        epc->profile->profiles = apr_array_make(p, 2, sizeof(profile_t));
    }
    return epc->profile;
}

/* -------------------------------------------------------- directives -- */

typedef struct {
    apr_size_t max;
} join_opts_t;

static const bff_opt_t join_opts[] = {
    BFF_OPT_NUM("max-size", BFF_OPT_SIZE, join_opts_t, max, 1, BFF_OPT_MAX),
    BFF_OPT_END
};

/* BFFJoin TARGET SOURCE[].KEY=LIST[].FIELD [max-size=SIZE] */
const char *bff_profile_cmd_join(cmd_parms *cmd, void *dcv, const char *target,
                                const char *spec, const char *opt)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = bff_in_endpoint_only(cmd, dc);
    join_opts_t o = { 0 };

    if (err) {
        return err;
    }
    if (!opt || !(err = bff_opt_parse(join_opts, &o, opt, cmd->pool))) {
        err = bff_present_join(dc->epc->ep->present, target, spec, o.max,
                               cmd->pool);
    }
    return err ? apr_psprintf(cmd->pool, "%s %s %s: %s", cmd->cmd->name,
                              target, spec, err) : NULL;
}

const char *bff_profile_cmd(cmd_parms *cmd, void *dcv, const char *a1,
                           const char *a2)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = bff_in_endpoint_only(cmd, dc);
    bff_present_t *pr;

    if (err) {
        return err;
    }
    pr = dc->epc->ep->present;
    switch ((int)(apr_uintptr_t)cmd->info) {
    case BFF_PR_LIFT:
        err = bff_present_lift(pr, a1, a2, cmd->pool);
        break;
    case BFF_PR_RENAME:
        err = bff_present_rename(pr, a1, a2, cmd->pool);
        break;
    case BFF_PR_WRAP:
        err = bff_present_wrap(pr, a1, a2, cmd->pool);
        break;
    case BFF_PR_MERGE:
        err = bff_present_policy(pr, a1, cmd->pool);
        break;
    case BFF_PR_FIELDS:
        err = bff_fields_allow(client_ep(dc->epc, cmd->pool)->fields, a1,
                               cmd->pool);
        break;
    case BFF_PR_SELECT: {
        bff_profile_ep_t *ce = client_ep(dc->epc, cmd->pool);
        if (!strncasecmp(a1, "header:", 7) && a1[7]) {
            ce->select = SELECT_HEADER;
            ce->select_name = a1 + 7;
        }
        else if (!strncasecmp(a1, "claim:", 6) && a1[6]) {
            ce->select = SELECT_CLAIM;
            ce->select_name = a1 + 6;
        }
        else {
            err = "expected header:NAME or claim:PATH";
        }
        break;
    }
    default:
        err = "unknown directive";
    }
    if (err) {
        return apr_psprintf(cmd->pool, "%s %s%s%s: %s", cmd->cmd->name, a1,
                            a2 ? " " : "", a2 ? a2 : "", err);
    }
    return NULL;
}

const char *bff_profile_cmd1(cmd_parms *cmd, void *dcv, const char *a1)
{
    return bff_profile_cmd(cmd, dcv, a1, NULL);
}

const char *bff_profile_cmd_drop_empty(cmd_parms *cmd, void *dcv, int on)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = bff_in_endpoint_only(cmd, dc);

    if (!err) {
        bff_present_drop_empty(dc->epc->ep->present, on);
    }
    return err;
}

const char *bff_profile_cmd_fields(cmd_parms *cmd, void *dcv, const char *name,
                                  const char *path)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = bff_in_endpoint_only(cmd, dc);
    bff_profile_ep_t *ce;
    profile_t *c = NULL;
    int i;

    if (err) {
        return err;
    }
    ce = client_ep(dc->epc, cmd->pool);
    for (i = 0; i < ce->profiles->nelts; i++) {
        profile_t *o = &APR_ARRAY_IDX(ce->profiles, i, profile_t);
        if (!strcasecmp(o->name, name)) {
            c = o;
            if (o->line != cmd->directive->line_num
                || strcmp(o->file, cmd->directive->filename)) {
                return apr_psprintf(cmd->pool, "BFFClientFields %s: already "
                                    "defined at %s:%d", name, o->file,
                                    o->line);
            }
        }
    }
    if (!c) {
        c = apr_array_push(ce->profiles);
        memset(c, 0, sizeof(*c));
        c->name = name;
        c->paths = apr_array_make(cmd->pool, 4, sizeof(const char *));
        c->file = cmd->directive->filename;
        c->line = cmd->directive->line_num;
    }
    APR_ARRAY_PUSH(c->paths, const char *) = path;
    return NULL;
}

void bff_profile_note_deny(bff_ep_conf_t *epc, const char *path, apr_pool_t *p)
{
    /* already validated by the shape: a denied path can never be selected */
    bff_fields_forbid(client_ep(epc, p)->fields, path, p);
}

const char *bff_profile_ep_finalize(bff_ep_conf_t *epc, apr_pool_t *p)
{
    bff_profile_ep_t *ce = epc->profile;
    int i, j;

    if (!ce) {
        return NULL;
    }
    if (ce->select && !ce->profiles->nelts) {
        return "BFFClientSelect needs BFFClientFields for at least one client";
    }
    if (ce->profiles->nelts && !ce->select) {
        for (i = 0; i < ce->profiles->nelts; i++) {
            if (strcmp(APR_ARRAY_IDX(ce->profiles, i, profile_t).name, "*")) {
                return "BFFClientFields for a named client needs "
                       "BFFClientSelect (header:NAME or claim:PATH)";
            }
        }
    }
    for (i = 0; i < ce->profiles->nelts; i++) {
        profile_t *c = &APR_ARRAY_IDX(ce->profiles, i, profile_t);
        const bff_fields_t *fl = ce->fields;
        bff_fields_sel_t sel;

        if (!bff_fields_count(fl)) {
            /* no client selection: the client's own list bounds itself */
            bff_fields_t *own = bff_fields_create(p);
            for (j = 0; j < c->paths->nelts; j++) {
                const char *err = bff_fields_allow(own,
                    APR_ARRAY_IDX(c->paths, j, const char *), p);
                if (err) {
                    return apr_psprintf(p, "BFFClientFields %s: %s", c->name,
                                        err);
                }
            }
            fl = own;
        }
        if (!bff_fields_select(&sel, fl, apr_array_pstrcat(p, c->paths, ','),
                               p)) {
            apr_array_header_t *bad = apr_array_append(p, sel.unknown,
                                                       sel.forbidden);
            return apr_psprintf(p, "BFFClientFields %s: %s%s", c->name,
                                sel.error ? sel.error : "not in BFFFields or "
                                "denied: ", sel.error ? ""
                                : apr_array_pstrcat(p, bad, ' '));
        }
        c->norm = sel.norm;
        c->shape = bff_fields_shape(sel.fields, p);
    }
    return NULL;
}

/* ----------------------------------------------------------- request -- */

static const profile_t *find_profile(const bff_profile_ep_t *ce, const char *v)
{
    int i;

    for (i = 0; v && i < ce->profiles->nelts; i++) {
        const profile_t *c = &APR_ARRAY_IDX(ce->profiles, i, profile_t);
        if (!strcasecmp(c->name, v)) {
            return c;
        }
    }
    return NULL;
}

static json_t *str_array(const apr_array_header_t *a)
{
    json_t *j = json_array();
    int i;

    for (i = 0; i < a->nelts; i++) {
        json_array_append_new(j, json_string(APR_ARRAY_IDX(a, i,
                                                           const char *)));
    }
    return j;
}

int bff_profile_prepare(request_rec *r, const bff_ep_conf_t *epc,
                       const bff_shape_t **fields, const char **detail,
                       json_t **extra)
{
    const bff_profile_ep_t *ce = epc->profile;
    const profile_t *c = NULL;
    const char *raw;
    bff_fields_sel_t sel;

    *fields = NULL;
    if (!ce) {
        return OK;
    }
    if (ce->select == SELECT_HEADER) {
        c = find_profile(ce, apr_table_get(r->headers_in, ce->select_name));
        apr_table_mergen(r->headers_out, "Vary", ce->select_name);
    }
    else if (ce->select == SELECT_CLAIM) {
        c = find_profile(ce, bff_auth_claim(r, ce->select_name));
        /* the claim comes with the credentials */
        apr_table_mergen(r->headers_out, "Vary", "Authorization");
    }
    if (!c) {
        c = find_profile(ce, "*");
    }
    if (c) {
        apr_table_setn(r->notes, "bff-client", c->name);
    }

    raw = bff_fields_count(ce->fields)
          ? bff_query_get(r->args, "fields", r->pool) : NULL;
    if (!raw) {
        if (c) {
            *fields = c->shape;
            apr_table_setn(r->notes, "bff-fields", c->norm);
        }
        return OK;
    }
    if (!bff_fields_select(&sel, ce->fields, raw, r->pool)) {
        *detail = sel.error
            ? apr_pstrcat(r->pool, "fields: ", sel.error, NULL)
            : apr_pstrcat(r->pool, "fields: unknown or forbidden: ",
                          apr_array_pstrcat(r->pool,
                              apr_array_append(r->pool, sel.unknown,
                                               sel.forbidden), ','), NULL);
        *extra = bff_json_pool_own(json_pack("{s:o, s:o, s:o}",
            "unknown_fields", str_array(sel.unknown),
            "forbidden_fields", str_array(sel.forbidden),
            "allowed_fields", str_array(bff_fields_allowed(ce->fields))),
            r->pool);
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(401)
                      "%s %s: %s", epc->ep->method, epc->ep->pattern, *detail);
        return HTTP_BAD_REQUEST;
    }
    *fields = bff_fields_shape(sel.fields, r->pool);
    apr_table_setn(r->notes, "bff-fields", sel.norm);
    return OK;
}
