/*
 * mod_bff CORS: which browser origins may read a location's answers.
 *
 * Runs in header_parser, after the <Location> configuration is merged and
 * before any access, authentication or authorization hook: a preflight
 * (OPTIONS with Origin and Access-Control-Request-Method) from an allowed
 * origin is answered here, so it needs no credentials (browsers send none)
 * and never reaches a handler or a backend. For other requests from an
 * allowed origin the CORS headers go into err_headers_out, so 401, 403,
 * 429 and 5xx answers carry them too (a browser app can then read the
 * error). They are never part of what the cache stores: the cache keeps
 * the body, its type and ETag only, and every answer gets the headers of
 * its own request's Origin.
 *
 * A disallowed origin gets no CORS headers and its request is processed as
 * if CORS were not configured (authenticated as usual).
 *
 * Pure origin logic is in lib/bff_cors.c.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_regex.h"

#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_cors.h"
#include "bff_core.h"
#include "bff_cors.h"


/* What browsers may read besides the safelisted headers, unless the
 * admin lists others: the request id, the cache and completion state,
 * and the rate-limit fields. */
static const char *const default_expose[] = {
    "X-Request-ID", "X-Cache-Status", "X-BFF-Completed", "RateLimit",
    "RateLimit-Policy", "Retry-After", NULL
};

/* A section with any BFFCORS* directive replaces the CORS policy it
 * inherits as a whole: the checks made while reading it (never "*" with
 * credentials) then hold for every request it applies to. */
struct bff_cors_dir_t {
    int set;                        /* a BFFCORS* directive is here */
    apr_array_header_t *origins;    /* bff_cors_origin_t; NULL: CORS off */
    apr_array_header_t *methods;    /* const char *; NULL: GET HEAD */
    apr_array_header_t *headers;    /* request headers allowed */
    apr_array_header_t *expose;     /* NULL: default_expose */
    int credentials;                /* UNSET, 0, 1 */
    long max_age;                   /* seconds; UNSET: 600 */
    const char *file;               /* where the origins were set */
    int line;
};

bff_cors_dir_t *bff_cors_dir_create(apr_pool_t *p)
{
    bff_cors_dir_t *c = apr_pcalloc(p, sizeof(*c));

    c->credentials = UNSET;
    c->max_age = UNSET;
    return c;
}

bff_cors_dir_t *bff_cors_dir_merge(apr_pool_t *p, bff_cors_dir_t *base,
                                   bff_cors_dir_t *add)
{
    return add->set ? add : base;
}

/* ------------------------------------------------------ directives -- */

static bff_cors_dir_t *dir_of(void *dcv)
{
    return ((bff_dir_conf_t *)dcv)->cors;
}

static int has_any(const bff_cors_dir_t *c)
{
    int i;

    for (i = 0; c->origins && i < c->origins->nelts; i++) {
        if (APR_ARRAY_IDX(c->origins, i, bff_cors_origin_t).any) {
            return 1;
        }
    }
    return 0;
}

static const char *no_any_with_credentials(cmd_parms *cmd,
                                           const bff_cors_dir_t *c)
{
    if (c->credentials == 1 && has_any(c)) {
        return apr_psprintf(cmd->pool, "%s: BFFCORSOrigin * cannot be used "
            "with BFFCORSCredentials On (any site could read the answers "
            "with the user's cookies): list the origins", cmd->cmd->name);
    }
    return NULL;
}

const char *bff_cors_cmd_origin(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_cors_dir_t *c = dir_of(dcv);
    bff_cors_origin_t *o;
    const char *err, *regex;

    if (bff_in_endpoint_only(cmd, dcv) == NULL) {
        return "BFFCORSOrigin belongs in a <Location> (or the server), "
               "not in <BFFEndpoint>";
    }
    c->set = 1;
    if (!strcasecmp(arg, "off")) {
        if (c->origins && c->origins->nelts) {
            return "BFFCORSOrigin off cannot be combined with origins";
        }
        c->origins = NULL;
        return NULL;
    }
    if (!c->origins) {
        c->origins = apr_array_make(cmd->pool, 4, sizeof(bff_cors_origin_t));
        c->file = cmd->directive->filename;
        c->line = cmd->directive->line_num;
    }
    o = apr_array_push(c->origins);
    if ((err = bff_cors_origin_parse(o, &regex, arg, cmd->pool)) != NULL) {
        return apr_pstrcat(cmd->pool, "BFFCORSOrigin: ", err, NULL);
    }
    if (regex) {
        /* anchored: a pattern never matches part of an origin */
        ap_regex_t *re = ap_pregcomp(cmd->pool, apr_pstrcat(cmd->pool, "^(?:",
                                     regex, ")$", NULL), AP_REG_EXTENDED
                                     | AP_REG_ICASE | AP_REG_NOSUB);
        if (!re) {
            return apr_psprintf(cmd->pool, "BFFCORSOrigin: '%s' is not a "
                                "valid regular expression", regex);
        }
        o->pattern = re;
    }
    return no_any_with_credentials(cmd, c);
}

const char *bff_cors_cmd_list(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_cors_dir_t *c = dir_of(dcv);
    apr_array_header_t **list;
    int method = cmd->info == (void *)1;

    if (bff_in_endpoint_only(cmd, dcv) == NULL) {
        return apr_psprintf(cmd->pool, "%s belongs in a <Location>, not in "
                            "<BFFEndpoint>", cmd->cmd->name);
    }
    c->set = 1;
    list = method ? &c->methods : cmd->info == (void *)2 ? &c->headers
                                                         : &c->expose;
    if (!*list) {
        *list = apr_array_make(cmd->pool, 4, sizeof(const char *));
    }
    if (!method && !strcasecmp(arg, "none")) {
        return NULL;               /* an empty list, not the default */
    }
    if (!bff_cors_token(arg) || !strcmp(arg, "*")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a %s", cmd->cmd->name,
                            arg, method ? "method" : "header name");
    }
    APR_ARRAY_PUSH(*list, const char *) = arg;
    return NULL;
}

const char *bff_cors_cmd_credentials(cmd_parms *cmd, void *dcv, int on)
{
    bff_cors_dir_t *c = dir_of(dcv);

    if (bff_in_endpoint_only(cmd, dcv) == NULL) {
        return "BFFCORSCredentials belongs in a <Location>, not in "
               "<BFFEndpoint>";
    }
    c->set = 1;
    c->credentials = on;
    return no_any_with_credentials(cmd, c);
}

const char *bff_cors_cmd_max_age(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_cors_dir_t *c = dir_of(dcv);
    const char *err;
    long ms;

    if (bff_in_endpoint_only(cmd, dcv) == NULL) {
        return "BFFCORSMaxAge belongs in a <Location>, not in <BFFEndpoint>";
    }
    if ((err = bff_parse_duration_ms(&ms, arg, cmd->pool)) != NULL) {
        return apr_pstrcat(cmd->pool, "BFFCORSMaxAge: ", err, NULL);
    }
    if (ms < 0 || ms > 86400000L) {
        return "BFFCORSMaxAge: from 0 to 24h";
    }
    c->set = 1;
    c->max_age = ms / 1000;
    return NULL;
}

/* --------------------------------------------------------- requests -- */

static int match_regex(const void *pattern, const char *origin)
{
    return ap_regexec(pattern, origin, 0, NULL, 0) == 0;
}

static const char *join_or_default(const apr_array_header_t *list,
                                   const char *const *dflt, apr_pool_t *p)
{
    const char *out = NULL;

    if (list) {
        return bff_cors_join(list, p);
    }
    for (; *dflt; dflt++) {
        out = out ? apr_pstrcat(p, out, ",", *dflt, NULL) : *dflt;
    }
    return out;
}

/* The headers every answer to an allowed origin carries. */
static void allow_origin(request_rec *r, const bff_cors_dir_t *c,
                         const char *origin)
{
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin",
                   c->credentials != 1 && has_any(c) ? "*" : origin);
    if (c->credentials == 1) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Credentials",
                       "true");
    }
}

/* Ends the request with an empty answer of this status, headers already
 * set; DONE for header_parser. */
static int answer_now(request_rec *r, int status)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool,
                                                r->connection->bucket_alloc);

    r->status = status;
    apr_table_unset(r->headers_out, "Content-Type");
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    ap_pass_brigade(r->output_filters, bb);
    return DONE;
}

static int preflight(request_rec *r, const bff_cors_dir_t *c,
                     const char *origin)
{
    static const char *const get_head[] = { "GET", "HEAD", NULL };
    const char *method = apr_table_get(r->headers_in,
                                       "Access-Control-Request-Method");
    const char *hdrs = apr_table_get(r->headers_in,
                                     "Access-Control-Request-Headers");
    const char *bad = NULL;
    int ok;

    apr_table_mergen(r->err_headers_out, "Vary",
                     "Access-Control-Request-Method, "
                     "Access-Control-Request-Headers");
    if (c->methods) {
        ok = bff_cors_method_allowed(method, c->methods);
    }
    else {
        ok = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    }
    if (ok && hdrs) {
        bad = bff_cors_headers_check(hdrs, c->headers, r->pool);
    }
    if (!ok || bad) {
        /* no CORS headers: the browser refuses the actual request */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(701)
                      "CORS preflight from %s refused: %s '%s' is not "
                      "allowed here", origin, !ok ? "method" : "header",
                      ap_escape_logitem(r->pool, !ok ? method : bad));
        return answer_now(r, HTTP_FORBIDDEN);
    }
    allow_origin(r, c, origin);
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods",
                   join_or_default(c->methods, get_head, r->pool));
    if (c->headers && c->headers->nelts) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Headers",
                       bff_cors_join(c->headers, r->pool));
    }
    apr_table_setn(r->err_headers_out, "Access-Control-Max-Age",
                   apr_ltoa(r->pool, c->max_age == UNSET ? 600 : c->max_age));
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(702)
                  "CORS preflight from %s for %s answered", origin,
                  ap_escape_logitem(r->pool, method));
    return answer_now(r, HTTP_NO_CONTENT);
}

static int cors_header_parser(request_rec *r)
{
    bff_dir_conf_t *dc = ap_get_module_config(r->per_dir_config, &bff_module);
    const bff_cors_dir_t *c = dc ? dc->cors : NULL;
    const char *origin, *norm;

    if (!c || !c->origins || r->main) {
        return DECLINED;
    }
    /* the answer depends on Origin, whether it is allowed or not */
    apr_table_mergen(r->err_headers_out, "Vary", "Origin");
    origin = apr_table_get(r->headers_in, "Origin");
    if (!origin) {
        return DECLINED;
    }
    norm = bff_cors_origin_normalize(origin, r->pool);
    if (!bff_cors_origin_allowed(c->origins, norm, match_regex)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, BFFLOGNO(700)
                      "CORS: origin %s is not allowed here",
                      ap_escape_logitem(r->pool, origin));
        return DECLINED;
    }
    /* a valid origin: only its own characters, safe to echo back */
    if (r->method_number == M_OPTIONS
        && apr_table_get(r->headers_in, "Access-Control-Request-Method")) {
        return preflight(r, c, norm);
    }
    allow_origin(r, c, norm);
    {
        const char *expose = join_or_default(c->expose, default_expose,
                                             r->pool);
        if (expose && *expose) {
            apr_table_setn(r->err_headers_out,
                           "Access-Control-Expose-Headers", expose);
        }
    }
    return DECLINED;
}

void bff_cors_register_hooks(apr_pool_t *p)
{
    ap_hook_header_parser(cors_header_parser, NULL, NULL, APR_HOOK_FIRST);
}
