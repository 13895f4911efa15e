/*
 * mod_bff: request validation, before any backend is called.
 *
 * In a <BFFEndpoint> or a <Location> (plain ProxyPass routes too): a JSON
 * Schema for the body (BFFRequestSchema), typed rules for query parameters
 * and headers (BFFQueryRule, BFFHeaderRule), bounds on the body
 * (BFFRequestMaxSize, BFFRequestMaxDepth) and on the violations listed
 * (BFFRequestMaxErrors).
 *
 * The fixups hook runs after the access phase and before any handler, so
 * before mod_proxy or the aggregation opens a backend connection. It reads
 * the whole body (chunked too, bounded), parses it (duplicate keys
 * refused) and validates it; an invalid request is answered there (415,
 * 413, 400 or one 422 listing the violations) and never reaches a backend.
 * A valid body goes on: to the endpoint's templates as {body...}, or to
 * mod_proxy through an input filter that replays the bytes read.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "apr_lib.h"
#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_validate.h"
#include "bff_opts.h"
#include "mod_bff_aggregate.h"
#include "bff_schema.h"

APLOG_USE_MODULE(bff);

#define DEFAULT_MAX_SIZE   (1024 * 1024)
#define DEFAULT_MAX_DEPTH  32
#define DEFAULT_MAX_ERRORS 20
#define REPLAY_FILTER      "BFF_BODY_REPLAY"

/* Fields left unset (NULL / 0) take the enclosing location's value, then
 * the default. */
struct bff_valid_conf_t {
    bff_schema_t *schema;
    const char *schema_file;
    apr_size_t max_size;
    int max_depth;
    int max_errors;
    apr_array_header_t *query;       /* bff_rule_t * */
    apr_array_header_t *headers;     /* bff_rule_t * */
};

static ap_filter_rec_t *replay_filter_handle;

/* ------------------------------------------------------------ config -- */

bff_valid_conf_t *bff_valid_conf_merge(apr_pool_t *p,
                                       const bff_valid_conf_t *base,
                                       const bff_valid_conf_t *add)
{
    bff_valid_conf_t *c;

    if (!base || !add) {
        return (bff_valid_conf_t *)(add ? add : base);
    }
    c = apr_pcalloc(p, sizeof(*c));
    c->schema = add->schema ? add->schema : base->schema;
    c->schema_file = add->schema ? add->schema_file : base->schema_file;
    c->max_size = add->max_size ? add->max_size : base->max_size;
    c->max_depth = add->max_depth ? add->max_depth : base->max_depth;
    c->max_errors = add->max_errors ? add->max_errors : base->max_errors;
    c->query = add->query ? add->query : base->query;
    c->headers = add->headers ? add->headers : base->headers;
    return c;
}

/* The rules being configured: the endpoint's inside <BFFEndpoint>, else
 * the location's (or the server's). */
static bff_valid_conf_t *conf_of(cmd_parms *cmd, void *dcv)
{
    bff_dir_conf_t *dc = dcv;
    bff_valid_conf_t **slot = dc->epc ? &dc->epc->valid : &dc->valid;

    if (!*slot) {
        *slot = apr_pcalloc(cmd->pool, sizeof(**slot));
    }
    return *slot;
}

typedef struct {
    int flags;
} schema_opts_t;

static const bff_opt_t schema_opts[] = {
    BFF_OPT_SET("formats", schema_opts_t, flags, BFF_SCHEMA_FORMAT_ASSERT),
    BFF_OPT_END
};

/* BFFRequestSchema FILE [formats] */
const char *bff_valid_cmd_schema(cmd_parms *cmd, void *dcv, const char *args)
{
    bff_valid_conf_t *vc = conf_of(cmd, dcv);
    const char *file = ap_getword_conf(cmd->pool, &args);
    const char *opt, *path, *err;
    schema_opts_t o = { 0 };

    if (!*file) {
        return "BFFRequestSchema takes a schema file, then optionally "
               "'formats' (check \"format\" as an assertion)";
    }
    while (*(opt = ap_getword_conf(cmd->temp_pool, &args))) {
        if ((err = bff_opt_parse(schema_opts, &o, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFRequestSchema %s: %s", file,
                                err);
        }
    }
    path = ap_server_root_relative(cmd->pool, file);
    if (!path) {
        return apr_psprintf(cmd->pool, "BFFRequestSchema %s: bad path", file);
    }
    /* compiled here, so apache2 -t reports a bad schema */
    if ((err = bff_schema_load(&vc->schema, path, o.flags, cmd->pool))) {
        return apr_pstrcat(cmd->pool, "BFFRequestSchema: ", err, NULL);
    }
    vc->schema_file = path;
    return NULL;
}

/* BFFRequestMaxSize / BFFRequestMaxDepth / BFFRequestMaxErrors */
const char *bff_valid_cmd_limit(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_valid_conf_t *vc = conf_of(cmd, dcv);
    const char *which = cmd->info;
    const char *err = NULL;
    char *end;
    long n;

    if (!strcmp(which, "size")) {
        err = bff_parse_size(&vc->max_size, arg, cmd->temp_pool);
        if (!err && vc->max_size == 0) {
            err = "must be greater than 0";
        }
        return err ? apr_psprintf(cmd->pool, "%s %s: %s", cmd->cmd->name,
                                  arg, err) : NULL;
    }
    n = strtol(arg, &end, 10);
    if (!*arg || *end || n < 1 || n > (which[0] == 'd' ? 512 : 1000)) {
        return apr_psprintf(cmd->pool, "%s %s: expected a number from 1 to "
                            "%d", cmd->cmd->name, arg,
                            which[0] == 'd' ? 512 : 1000);
    }
    *(which[0] == 'd' ? &vc->max_depth : &vc->max_errors) = (int)n;
    return NULL;
}

/* BFFQueryRule / BFFHeaderRule NAME TYPE [required] [min=N] [max=N]
 * [pattern=REGEX] [enum=a|b] */
const char *bff_valid_cmd_rule(cmd_parms *cmd, void *dcv, const char *args)
{
    bff_valid_conf_t *vc = conf_of(cmd, dcv);
    int header = cmd->info != NULL;
    apr_array_header_t **rules = header ? &vc->headers : &vc->query;
    apr_array_header_t *opts = apr_array_make(cmd->temp_pool, 4,
                                              sizeof(const char *));
    const char *name = ap_getword_conf(cmd->pool, &args);
    const char *type = ap_getword_conf(cmd->pool, &args);
    const char *opt, *err;
    bff_rule_t *rule;

    if (!*name || !*type) {
        return apr_psprintf(cmd->pool, "%s takes a name, a type, then "
                            "options: %s", cmd->cmd->name, header
                            ? "BFFHeaderRule X-Client-Version string "
                              "required pattern=^[0-9]+\\.[0-9]+$"
                            : "BFFQueryRule limit integer min=1 max=100");
    }
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        APR_ARRAY_PUSH(opts, const char *) = opt;
    }
    err = bff_rule_compile(&rule, name, type,
                           (const char *const *)opts->elts, opts->nelts,
                           cmd->pool);
    if (err) {
        return apr_psprintf(cmd->pool, "%s %s", cmd->cmd->name, err);
    }
    if (!*rules) {
        *rules = apr_array_make(cmd->pool, 4, sizeof(bff_rule_t *));
    }
    APR_ARRAY_PUSH(*rules, bff_rule_t *) = rule;
    return NULL;
}

/* -------------------------------------------------------- violations -- */

typedef struct {
    json_t *list;
    int max;
    int more;          /* violations beyond max were found */
} violations_t;

static void add_violation(violations_t *v, const char *where_kind,
                          const char *where, const char *keyword,
                          const char *message)
{
    if ((int)json_array_size(v->list) >= v->max) {
        v->more = 1;
        return;
    }
    json_array_append_new(v->list, json_pack("{s:s, s:s, s:s}", where_kind,
                                             where, "keyword", keyword,
                                             "detail", message));
}

static void check_rules(violations_t *v, const apr_array_header_t *rules,
                        int header, request_rec *r)
{
    int i;

    for (i = 0; rules && i < rules->nelts; ++i) {
        const bff_rule_t *rule = APR_ARRAY_IDX(rules, i, const bff_rule_t *);
        const char *name = bff_rule_name(rule);
        const char *value = header ? apr_table_get(r->headers_in, name)
                                   : bff_query_get(r->args, name, r->pool);
        const char *keyword, *message;

        if (!bff_rule_check(&keyword, &message, rule, value, r->pool)) {
            add_violation(v, header ? "header" : "parameter", name, keyword,
                          message);
        }
    }
}

/* -------------------------------------------------------------- body -- */

/* application/json, or application/<anything>+json; a charset, when
 * given, is UTF-8 (RFC 8259 allows no other) */
static int json_content_type(const char *ct)
{
    const char *semi, *cs;
    apr_size_t len;

    if (!ct) {
        return 0;
    }
    semi = ap_strchr_c(ct, ';');
    len = semi ? (apr_size_t)(semi - ct) : strlen(ct);
    while (len && apr_isspace(ct[len - 1])) {
        --len;
    }
    if (!(len == 16 && !strncasecmp(ct, "application/json", 16))
        && !(len > 17 && !strncasecmp(ct, "application/", 12)
             && !strncasecmp(ct + len - 5, "+json", 5))) {
        return 0;
    }
    cs = semi ? ap_strcasestr(semi, "charset=") : NULL;
    if (cs) {
        cs += 8;
        cs += *cs == '"';
        return !strncasecmp(cs, "utf-8", 5);
    }
    return 1;
}

/* Reads the whole body (dechunked by httpd) into pool memory, at most max
 * bytes. OK, HTTP_REQUEST_ENTITY_TOO_LARGE, or httpd's error for a broken
 * body. */
static int read_body(char **buf, apr_size_t *len, request_rec *r,
                     apr_size_t max)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool,
                                                r->connection->bucket_alloc);
    apr_size_t cap = 8192, n = 0;
    char *out = apr_palloc(r->pool, cap);
    int eos = 0;

    while (!eos) {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t dlen;
            if (APR_BUCKET_IS_EOS(b)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b)) {
                continue;
            }
            rv = apr_bucket_read(b, &data, &dlen, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                return HTTP_BAD_REQUEST;
            }
            if (dlen > max - n) {
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
            if (n + dlen > cap) {
                char *grown;
                while (n + dlen > cap) {
                    cap *= 2;
                }
                grown = apr_palloc(r->pool, cap);
                memcpy(grown, out, n);
                out = grown;
            }
            memcpy(out + n, data, dlen);
            n += dlen;
        }
        apr_brigade_cleanup(bb);
    }
    *buf = out;
    *len = n;
    return OK;
}

/* ------------------------------------------------------ replay filter -- */

typedef struct {
    const char *buf;
    apr_size_t len, off;
} replay_t;

/* Gives mod_proxy the body that was read for validation, then EOS. */
static apr_status_t replay_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                  ap_input_mode_t mode,
                                  apr_read_type_e block, apr_off_t readbytes)
{
    replay_t *rp = f->ctx;
    apr_bucket_alloc_t *ba = f->c->bucket_alloc;
    apr_size_t n = rp->len - rp->off;

    if (mode != AP_MODE_READBYTES && mode != AP_MODE_SPECULATIVE) {
        return APR_ENOTIMPL;
    }
    if (readbytes > 0 && (apr_off_t)n > readbytes) {
        n = (apr_size_t)readbytes;
    }
    if (n) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_immortal_create(rp->buf + rp->off,
                                                               n, ba));
        if (mode == AP_MODE_READBYTES) {
            rp->off += n;
        }
    }
    else {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    }
    return APR_SUCCESS;
}

/* ---------------------------------------------------------- request -- */

static int problem(request_rec *r, int status, const char *title,
                   const char *detail, json_t *extra)
{
    /* the body may not have been read: do not reuse the connection */
    if (status != HTTP_UNPROCESSABLE_ENTITY) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    bff_send_problem(r, status, title, detail, extra);
    return DONE;
}

static int has_body(const request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");

    return apr_table_get(r->headers_in, "Transfer-Encoding")
           || (cl && strcmp(cl, "0"));
}

/* Body checks: 415, 413, 400 answered here (DONE); OK with *body set. */
static int take_body(json_t **body, const char **raw, apr_size_t *rawlen,
                     request_rec *r, const bff_valid_conf_t *vc)
{
    apr_size_t max = vc && vc->max_size ? vc->max_size : DEFAULT_MAX_SIZE;
    int depth = vc && vc->max_depth ? vc->max_depth : DEFAULT_MAX_DEPTH;
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    const char *detail;
    char *buf = NULL;
    apr_size_t len = 0;
    int rc;

    *body = NULL;
    if (!json_content_type(apr_table_get(r->headers_in, "Content-Type"))) {
        return problem(r, HTTP_UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type",
                       "the body must be application/json", NULL);
    }
    if (cl && apr_strtoi64(cl, NULL, 10) > (apr_int64_t)max) {
        return problem(r, HTTP_REQUEST_ENTITY_TOO_LARGE, "Content Too Large",
                       apr_psprintf(r->pool, "the body is larger than %"
                                    APR_SIZE_T_FMT " bytes", max), NULL);
    }
    rc = read_body(&buf, &len, r, max);
    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE) {
        return problem(r, rc, "Content Too Large",
                       apr_psprintf(r->pool, "the body is larger than %"
                                    APR_SIZE_T_FMT " bytes", max), NULL);
    }
    if (rc != OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(600)
                      "reading the request body failed (%d)", rc);
        return rc;
    }
    switch (bff_schema_parse_body(body, &detail, buf, len, max, depth,
                                  r->pool)) {
    case BFF_BODY_OK:
        break;
    case BFF_BODY_TOO_DEEP:
        return problem(r, HTTP_BAD_REQUEST, "Bad Request",
                       apr_psprintf(r->pool, "the body nests deeper than %d "
                                    "levels", depth), NULL);
    case BFF_BODY_NOT_JSON:
        return problem(r, HTTP_BAD_REQUEST, "Bad Request",
                       apr_pstrcat(r->pool, "the body is not JSON: ", detail,
                                   NULL), NULL);
    default:
        return problem(r, HTTP_REQUEST_ENTITY_TOO_LARGE, "Content Too Large",
                       "the body is too large", NULL);
    }
    *raw = buf;
    *rawlen = len;
    return OK;
}

static int needs_body(const request_rec *r)
{
    return r->method_number == M_POST || r->method_number == M_PUT
           || r->method_number == M_PATCH;
}

static int validate_fixups(request_rec *r)
{
    bff_dir_conf_t *dc = ap_get_module_config(r->per_dir_config, &bff_module);
    bff_ep_conf_t *epc = bff_request_endpoint(r);
    const bff_valid_conf_t *vc;
    violations_t v;
    json_t *body = NULL, *extra;
    const char *raw = NULL;
    apr_size_t rawlen = 0;
    int takes_body = epc && epc->ep->takes_body;
    int rc;

    if (r->main || r->prev) {
        return DECLINED;    /* checked once, on the client's request */
    }
    vc = bff_valid_conf_merge(r->pool, dc ? dc->valid : NULL,
                              epc ? epc->valid : NULL);
    if (!vc && !takes_body) {
        return DECLINED;
    }
    if (takes_body || (vc->schema && (needs_body(r) || has_body(r)))) {
        rc = take_body(&body, &raw, &rawlen, r, vc);
        if (rc != OK) {
            return rc;
        }
    }

    v.list = json_array();
    v.max = vc && vc->max_errors ? vc->max_errors : DEFAULT_MAX_ERRORS;
    v.more = 0;
    if (vc) {
        apr_array_header_t *errs = NULL;
        check_rules(&v, vc->query, 0, r);
        check_rules(&v, vc->headers, 1, r);
        if (body && vc->schema
            && !bff_schema_validate(&errs, vc->schema, body,
                                    v.max + 1, r->pool)) {
            int i;
            for (i = 0; i < errs->nelts; ++i) {
                const bff_schema_error_t *e = &APR_ARRAY_IDX(
                    errs, i, bff_schema_error_t);
                add_violation(&v, "pointer", e->pointer, e->keyword,
                              e->message);
            }
        }
    }
    if (json_array_size(v.list) || v.more) {
        size_t n = json_array_size(v.list);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(601)
                      "request refused: %lu violation%s%s%s%s",
                      (unsigned long)n, n == 1 ? "" : "s",
                      v.more ? " (and more)" : "",
                      vc->schema_file ? " of " : "",
                      vc->schema_file ? vc->schema_file : "");
        extra = json_pack("{s:o}", "errors", v.list);
        if (v.more) {
            json_object_set_new(extra, "errors_truncated", json_true());
        }
        bff_json_pool_own(extra, r->pool);
        return problem(r, HTTP_UNPROCESSABLE_ENTITY, "Unprocessable Content",
                       apr_psprintf(r->pool, "the request does not match its "
                                    "contract (%lu violation%s%s)",
                                    (unsigned long)n, n == 1 ? "" : "s",
                                    v.more ? " listed, more not" : ""), extra);
    }
    json_decref(v.list);

    if (takes_body) {
        bff_request_set_body(r, body);
    }
    else if (raw) {
        /* a proxied request: the backend gets exactly the bytes that were
         * validated, now with their length known */
        replay_t *rp = apr_pcalloc(r->pool, sizeof(*rp));
        rp->buf = raw;
        rp->len = rawlen;
        apr_table_unset(r->headers_in, "Transfer-Encoding");
        apr_table_setn(r->headers_in, "Content-Length",
                       apr_psprintf(r->pool, "%" APR_SIZE_T_FMT, rawlen));
        ap_add_input_filter_handle(replay_filter_handle, rp, r, r->connection);
    }
    return DECLINED;
}

void bff_valid_register_hooks(apr_pool_t *p)
{
    /* last of the fixups: everything that may refuse the request cheaper
     * (access, rate limits) has run; only handlers follow */
    ap_hook_fixups(validate_fixups, NULL, NULL, APR_HOOK_LAST);
    replay_filter_handle = ap_register_input_filter(REPLAY_FILTER,
                                                    replay_filter, NULL,
                                                    AP_FTYPE_RESOURCE);
}
