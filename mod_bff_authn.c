/*
 * mod_bff: authentication and identity (see mod_bff_access.h):
 * AuthType bff-jwt / bff-apikey set r->user in check_user_id; in fixups
 * the configured identity headers are removed from the client's request,
 * then set from the verified claims (ProxyPass backends see
 * r->headers_in; the aggregation forwards them, see
 * bff_auth_identity_names), and the rate limits are applied. Also the
 * access configuration records (create, merge) and their JWT / API-key
 * directives.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_auth.h"
#include "scoreboard.h"

#include "mod_bff_access.h"
#include "bff_opts.h"

APLOG_USE_MODULE(bff);

#define DEFAULT_APIKEY_HEADER  "X-API-Key"
#define DEFAULT_JWT_CACHE      1024
#define DEFAULT_JWT_CACHE_TTL  300         /* s */
#define DEFAULT_APIKEY_PREFIX  "bff:"
#define APIKEY_PREFIX_MAX      64

/* built in child_init */
static bff_jwt_cache_t *jwt_cache;           /* per child */

bff_auth_srv_t *bff_auth_create_srv(apr_pool_t *p)
{
    bff_auth_srv_t *as = apr_pcalloc(p, sizeof(*as));

    as->jwt_cache_entries = UNSET;
    as->jwt_cache_ttl = UNSET;
    as->redis_connect_ms = UNSET;
    as->redis_timeout_ms = UNSET;
    as->redis_retry_ms = UNSET;
    as->instances = UNSET;
    as->apikey_redis = UNSET;
    return as;
}

static jwt_srv_t *jwt_create(apr_pool_t *p)
{
    jwt_srv_t *j = apr_pcalloc(p, sizeof(*j));

    j->exp_optional = UNSET;
    j->leeway = UNSET;
    return j;
}

static jwt_srv_t *jwt_merge(apr_pool_t *p, const jwt_srv_t *base,
                            const jwt_srv_t *add)
{
    jwt_srv_t *j;

    if (!base || !add) {
        return (jwt_srv_t *)(add ? add : base);
    }
    j = jwt_create(p);
    j->any = 1;
    j->conf.algs = add->conf.algs ? add->conf.algs : base->conf.algs;
    /* key sources go together: a vhost naming a JWKS must not inherit
     * its parent's PEM key (the two exclude each other) */
    if (add->conf.secret_file || add->conf.pubkey_file
        || add->conf.jwks_file || add->url) {
        j->conf.secret_file = add->conf.secret_file;
        j->conf.pubkey_file = add->conf.pubkey_file;
        j->conf.jwks_file = add->conf.jwks_file;
        j->url = add->url;
    }
    else {
        j->conf.secret_file = base->conf.secret_file;
        j->conf.pubkey_file = base->conf.pubkey_file;
        j->conf.jwks_file = base->conf.jwks_file;
        j->url = base->url;
    }
    j->issuers = add->issuers ? add->issuers : base->issuers;
    j->conf.audience = add->conf.audience ? add->conf.audience
                                          : base->conf.audience;
    j->leeway = add->leeway != UNSET ? add->leeway : base->leeway;
    j->exp_optional = add->exp_optional != UNSET ? add->exp_optional
                                                 : base->exp_optional;
    j->conf.max_size = add->conf.max_size ? add->conf.max_size
                                          : base->conf.max_size;
    return j;
}

bff_auth_srv_t *bff_auth_merge_srv(apr_pool_t *p, const bff_auth_srv_t *base,
                                   const bff_auth_srv_t *add)
{
    bff_auth_srv_t *as = apr_pmemdup(p, add, sizeof(*add));

    as->jwt = jwt_merge(p, base->jwt, add->jwt);
    as->keys = add->keys ? add->keys : base->keys;
    as->apikey_redis = add->apikey_redis != UNSET ? add->apikey_redis
                                                  : base->apikey_redis;
    as->apikey_prefix = add->apikey_prefix ? add->apikey_prefix
                                           : base->apikey_prefix;
    /* the process-wide settings are read from the main server only */
    return as;
}

bff_auth_dir_t *bff_auth_create_dir(apr_pool_t *p)
{
    bff_auth_dir_t *ad = apr_pcalloc(p, sizeof(*ad));

    ad->idents = apr_array_make(p, 2, sizeof(ident_t));
    ad->limits = apr_array_make(p, 2, sizeof(limit_t *));
    return ad;
}

bff_auth_dir_t *bff_auth_merge_dir(apr_pool_t *p, const bff_auth_dir_t *base,
                                   const bff_auth_dir_t *add)
{
    bff_auth_dir_t *ad = apr_pcalloc(p, sizeof(*ad));
    int i, j;

    /* a <Location> with JWT settings replaces the outer ones whole */
    ad->jwt = add->jwt ? add->jwt : base->jwt;
    ad->sources = add->sources ? add->sources : base->sources;
    ad->apikey_header = add->apikey_header ? add->apikey_header
                                           : base->apikey_header;
    ad->fallback = add->fallback ? add->fallback : base->fallback;

    /* Lists add up (a server-wide limit applies in every location); an
     * inner entry with the same header / limit name replaces the outer. */
    ad->idents = apr_array_make(p, base->idents->nelts + add->idents->nelts,
                                sizeof(ident_t));
    for (i = 0; i < base->idents->nelts; i++) {
        const ident_t *b = &APR_ARRAY_IDX(base->idents, i, ident_t);
        for (j = 0; j < add->idents->nelts; j++) {
            if (bff_header_name_same(b->header,
                    APR_ARRAY_IDX(add->idents, j, ident_t).header)) {
                break;
            }
        }
        if (j == add->idents->nelts) {
            APR_ARRAY_PUSH(ad->idents, ident_t) = *b;
        }
    }
    apr_array_cat(ad->idents, add->idents);

    ad->limits = apr_array_make(p, base->limits->nelts + add->limits->nelts,
                                sizeof(limit_t *));
    for (i = 0; i < base->limits->nelts; i++) {
        limit_t *b = APR_ARRAY_IDX(base->limits, i, limit_t *);
        for (j = 0; j < add->limits->nelts; j++) {
            if (!strcmp(b->name,
                        APR_ARRAY_IDX(add->limits, j, limit_t *)->name)) {
                break;
            }
        }
        if (j == add->limits->nelts) {
            APR_ARRAY_PUSH(ad->limits, limit_t *) = b;
        }
    }
    apr_array_cat(ad->limits, add->limits);
    return ad;
}

/* The JWT settings a directive sets: its <Location>'s (made on first
 * use, and listed in its server for post_config) or its server's. */
static jwt_srv_t *jwt_of(cmd_parms *cmd, void *dcv)
{
    bff_auth_srv_t *as = srv_conf(cmd);
    jwt_srv_t **j = &as->jwt;

    if (cmd->path) {
        j = &((bff_dir_conf_t *)dcv)->auth->jwt;
    }
    if (!*j) {
        *j = jwt_create(cmd->pool);
        if (cmd->path) {
            if (!as->dir_jwts) {
                as->dir_jwts = apr_array_make(cmd->pool, 2,
                                              sizeof(jwt_srv_t *));
            }
            APR_ARRAY_PUSH(as->dir_jwts, jwt_srv_t *) = *j;
        }
    }
    (*j)->any = 1;
    return *j;
}

const char *bff_auth_cmd_jwt_file(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = dir_only(cmd, dcv);
    jwt_srv_t *j;
    const char *path;

    if (err) {
        return err;
    }
    j = jwt_of(cmd, dcv);
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path) {
        return apr_psprintf(cmd->pool, "%s %s: invalid path", cmd->cmd->name,
                            arg);
    }
    switch ((int)(apr_uintptr_t)cmd->info) {
    case 0: j->conf.pubkey_file = path; break;
    case 1: j->conf.secret_file = path; break;
    default: j->conf.jwks_file = path; break;
    }
    return NULL;
}

const char *bff_auth_cmd_jwks_url(cmd_parms *cmd, void *dcv,
                                  const char *args)
{
    const char *err = dir_only(cmd, dcv);
    jwks_url_t *u;

    if (!err) {
        err = bff_jwks_parse(&u, cmd, args);
    }
    if (err) {
        return err;
    }
    jwt_of(cmd, dcv)->url = u;
    return NULL;
}

const char *bff_auth_cmd_jwt_algs(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = dir_only(cmd, dcv);
    unsigned mask;

    if (!err) {
        err = bff_jwt_algs_parse(&mask, arg, cmd->pool);
    }
    if (err) {
        return apr_psprintf(cmd->pool, "BFFJWTAlgorithms: %s", err);
    }
    jwt_of(cmd, dcv)->conf.algs = mask;
    return NULL;
}

const char *bff_auth_cmd_jwt_issuer(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = dir_only(cmd, dcv);
    jwt_srv_t *j;

    if (err) {
        return err;
    }
    j = jwt_of(cmd, dcv);
    if (!j->issuers) {
        j->issuers = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(j->issuers, const char *) = arg;
    return NULL;
}

const char *bff_auth_cmd_jwt_audience(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    const char *err = dir_only(cmd, dcv);

    if (err) {
        return err;
    }
    jwt_of(cmd, dcv)->conf.audience = arg;
    return NULL;
}

const char *bff_auth_cmd_jwt_leeway(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = dir_only(cmd, dcv);
    long ms;

    if (!err) {
        err = bff_parse_duration_ms(&ms, arg, cmd->temp_pool);
    }
    if (!err && (ms < 0 || ms > 86400000L)) {
        err = "must be from 0 to 1 day";
    }
    if (err) {
        return apr_psprintf(cmd->pool, "BFFJWTLeeway %s: %s", arg, err);
    }
    jwt_of(cmd, dcv)->leeway = ms / 1000;
    return NULL;
}

const char *bff_auth_cmd_jwt_require_exp(cmd_parms *cmd, void *dcv, int on)
{
    const char *err = dir_only(cmd, dcv);

    if (err) {
        return err;
    }
    jwt_of(cmd, dcv)->exp_optional = !on;
    return NULL;
}

const char *bff_auth_cmd_jwt_max_size(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    const char *err = dir_only(cmd, dcv);
    apr_size_t n;

    if (!err) {
        err = bff_parse_size(&n, arg, cmd->temp_pool);
    }
    if (!err && (n < 64 || n > 1024 * 1024)) {
        err = "must be from 64 bytes to 1M";
    }
    if (err) {
        return apr_psprintf(cmd->pool, "BFFJWTMaxSize %s: %s", arg, err);
    }
    jwt_of(cmd, dcv)->conf.max_size = n;
    return NULL;
}

const char *bff_auth_cmd_jwt_cache(cmd_parms *cmd, void *dcv, const char *n,
                                   const char *ttl)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    bff_auth_srv_t *as = srv_conf(cmd);
    char *end;
    long v, ms = DEFAULT_JWT_CACHE_TTL * 1000L;

    if (err) {
        return err;
    }
    v = strtol(n, &end, 10);
    if (!*n || *end || v < 0 || v > 10000000) {
        return apr_psprintf(cmd->pool, "BFFJWTCache %s: expected a number of "
                            "entries from 0 (off) to 10000000", n);
    }
    if (ttl) {
        err = bff_parse_duration_ms(&ms, ttl, cmd->temp_pool);
        if (!err && ms < 1000) {
            err = "must be at least 1s";
        }
        if (err) {
            return apr_psprintf(cmd->pool, "BFFJWTCache %s %s: %s", n, ttl,
                                err);
        }
    }
    as->jwt_cache_entries = (int)v;
    as->jwt_cache_ttl = ms / 1000;
    return NULL;
}

const char *bff_auth_cmd_token_source(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    bff_auth_srv_t *as = srv_conf(cmd);
    const char *err = dir_only(cmd, dcv);
    bff_token_src_t *src;

    if (err) {
        return err;
    }
    if (!dc->auth->sources) {
        dc->auth->sources = apr_array_make(cmd->pool, 2,
                                           sizeof(bff_token_src_t));
    }
    src = apr_array_push(dc->auth->sources);
    if ((err = bff_token_source_parse(src, arg, cmd->pool))) {
        return apr_psprintf(cmd->pool, "BFFTokenSource %s: %s", arg, err);
    }
    if (src->kind == BFF_TOKEN_COOKIE || src->kind == BFF_TOKEN_QUERY) {
        if (!as->token_optins) {
            as->token_optins = apr_array_make(cmd->pool, 2,
                                              sizeof(const char *));
        }
        const ap_directive_t *sec = cmd->directive->parent;
        APR_ARRAY_PUSH(as->token_optins, const char *) = apr_psprintf(
            cmd->pool, "BFFTokenSource %s in %s%s%s at %s:%d", arg,
            sec ? sec->directive : "the server config", sec ? " " : "",
            sec ? sec->args : "", cmd->directive->filename,
            cmd->directive->line_num);
    }
    return NULL;
}

const char *bff_auth_cmd_apikey_file(cmd_parms *cmd, void *dcv,
                                     const char *arg)
{
    const char *err = srv_only(cmd);
    keys_srv_t *k;

    if (err) {
        return err;
    }
    k = apr_pcalloc(cmd->pool, sizeof(*k));
    k->path = ap_server_root_relative(cmd->pool, arg);
    if (!k->path) {
        return apr_psprintf(cmd->pool, "BFFAPIKeyFile %s: invalid path", arg);
    }
    srv_conf(cmd)->keys = k;
    return NULL;
}

static const char *opt_prefix(void *target, const char *v, apr_pool_t *p)
{
    bff_auth_srv_t *as = target;
    const char *s;

    for (s = v; *s && apr_isgraph(*s); s++) {
    }
    if (*s || s - v > APIKEY_PREFIX_MAX) {
        return apr_psprintf(p, "1 to %d printable characters, no spaces",
                            APIKEY_PREFIX_MAX);
    }
    as->apikey_prefix = v;
    return NULL;
}

static const bff_opt_t apikey_redis_opts[] = {
    BFF_OPT_CALL("prefix", opt_prefix),
    BFF_OPT_END
};

const char *bff_auth_cmd_apikey_redis(cmd_parms *cmd, void *dcv,
                                      const char *args)
{
    const char *err = srv_only(cmd);
    bff_auth_srv_t *as = srv_conf(cmd);
    const char *w, *opt;

    if (err) {
        return err;
    }
    w = ap_getword_conf(cmd->pool, &args);
    if (!strcasecmp(w, "on")) {
        as->apikey_redis = 1;
    }
    else if (!strcasecmp(w, "off")) {
        as->apikey_redis = 0;
    }
    else {
        return apr_psprintf(cmd->pool, "BFFAPIKeyRedis %s: expected On or "
                            "Off", w);
    }
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        if ((err = bff_opt_parse(apikey_redis_opts, as, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFAPIKeyRedis: %s", err);
        }
    }
    return NULL;
}

const char *bff_auth_cmd_apikey_header(cmd_parms *cmd, void *dcv,
                                       const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = dir_only(cmd, dcv);

    if (err) {
        return err;
    }
    if (!header_name_ok(arg)) {
        return apr_psprintf(cmd->pool, "BFFAPIKeyHeader %s: not a header "
                            "name", arg);
    }
    dc->auth->apikey_header = arg;
    return NULL;
}

/* Headers a client must never be able to set through an identity claim. */
static const char *const ident_denied[] = {
    "Host", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Content-Length", "Content-Type",
    "Authorization", "Cookie", "Expect", NULL
};

static const bff_opt_t ident_opts[] = {
    BFF_OPT_VAL("sep", BFF_OPT_STR, ident_t, sep),
    BFF_OPT_SET("optional", ident_t, optional, 1),
    BFF_OPT_SET("required", ident_t, optional, 0),
    BFF_OPT_END
};

const char *bff_auth_cmd_identity_header(cmd_parms *cmd, void *dcv,
                                         const char *args)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = dir_only(cmd, dcv);
    const char *header, *claim, *opt;
    ident_t *id;
    int i;

    if (err) {
        return err;
    }
    header = ap_getword_conf(cmd->pool, &args);
    claim = ap_getword_conf(cmd->pool, &args);
    if (!*header || !*claim) {
        return "BFFIdentityHeader takes a header name, a claim path and "
               "options: BFFIdentityHeader X-User-Roles realm_access.roles "
               "[sep=STRING] [optional]";
    }
    if (!header_name_ok(header)) {
        return apr_psprintf(cmd->pool, "BFFIdentityHeader %s: not a header "
                            "name", header);
    }
    for (i = 0; ident_denied[i]; i++) {
        if (!strcasecmp(header, ident_denied[i])) {
            return apr_psprintf(cmd->pool, "BFFIdentityHeader %s: this header "
                                "cannot carry an identity", header);
        }
    }
    for (i = 0; i < dc->auth->idents->nelts; i++) {
        const char *other = APR_ARRAY_IDX(dc->auth->idents, i, ident_t).header;
        if (bff_header_name_same(other, header)) {
            return apr_psprintf(cmd->pool, "BFFIdentityHeader %s is already "
                                "defined here (as %s; backends may read '-' "
                                "and '_' alike)", header, other);
        }
    }
    id = apr_array_push(dc->auth->idents);
    id->header = header;
    id->claim = claim;
    id->sep = ",";
    id->optional = 0;
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        if ((err = bff_opt_parse(ident_opts, id, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFIdentityHeader %s %s: %s",
                                header, claim, err);
        }
    }
    return NULL;
}

static const char *dir_apikey_header(const bff_auth_dir_t *ad)
{
    return ad && ad->apikey_header ? ad->apikey_header : DEFAULT_APIKEY_HEADER;
}

static const char *quote(const char *s, apr_pool_t *p)
{
    /* an RFC 9110 quoted-string of printable ASCII */
    char *out = apr_palloc(p, 2 * strlen(s) + 3), *o = out;

    *o++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
        }
        *o++ = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

const char *bff_auth_bearer_challenge(request_rec *r, const char *error,
                                      const char *desc, const char *scope)
{
    const char *realm = ap_auth_name(r);
    const char *c = apr_pstrcat(r->pool, "Bearer realm=",
                                quote(realm ? realm : "api", r->pool), NULL);

    if (error) {
        c = apr_pstrcat(r->pool, c, ", error=\"", error, "\"", NULL);
    }
    if (desc) {
        c = apr_pstrcat(r->pool, c, ", error_description=",
                        quote(desc, r->pool), NULL);
    }
    if (scope) {
        c = apr_pstrcat(r->pool, c, ", scope=", quote(scope, r->pool), NULL);
    }
    return c;
}

/* Replaces the query of the request line (r->the_request) and of
 * r->unparsed_uri by the one without the token parameter: %r in an
 * access log and mod_status show the request line. */
static void query_rewrite(request_rec *r, const char *name)
{
    const char *old = r->unparsed_uri, *q = strchr(old, '?'), *rest, *at;
    const char *uri;

    if (!q) {
        return;
    }
    bff_token_query(&rest, q + 1, name, r->pool);
    uri = apr_pstrcat(r->pool, apr_pstrmemdup(r->pool, old,
                                              (apr_size_t)(q - old)),
                      rest ? "?" : "", rest, NULL);
    if (r->the_request && (at = strstr(r->the_request, old)) != NULL) {
        r->the_request = apr_pstrcat(r->pool,
            apr_pstrmemdup(r->pool, r->the_request,
                           (apr_size_t)(at - r->the_request)),
            uri, at + strlen(old), NULL);
    }
    r->unparsed_uri = (char *)uri;
    r->parsed_uri.query = (char *)r->args;
    /* the scoreboard took its copy of the request line when the line was
     * read: mod_status would show the token as long as the request runs,
     * hours for a WebSocket tunnel */
    if (r->connection->sbh) {
        ap_update_child_status(r->connection->sbh, SERVER_BUSY_WRITE, r);
    }
}

typedef struct {
    apr_pool_t *p;
    const char *all;
} cookies_t;

static int cookie_join(void *v, const char *key, const char *val)
{
    cookies_t *c = v;

    c->all = c->all ? apr_pstrcat(c->p, c->all, "; ", val, NULL) : val;
    return 1;
}

/* The token of a cookie; the cookie leaves the request (every Cookie
 * header, joined, is replaced by what remains). */
static const char *take_cookie(request_rec *r, const char *name)
{
    cookies_t c = { r->pool, NULL };
    const char *v, *rest;

    apr_table_do(cookie_join, &c, r->headers_in, "Cookie", NULL);
    if (!c.all) {
        return NULL;
    }
    v = bff_token_cookie(&rest, c.all, name, r->pool);
    apr_table_unset(r->headers_in, "Cookie");
    if (rest) {
        apr_table_setn(r->headers_in, "Cookie", rest);
    }
    return v;
}

/* The token of a query parameter; the parameter leaves the request:
 * r->args (what mod_proxy appends to the backend URL, %q, mod_bff's
 * %{query}J), r->unparsed_uri and the request line. */
static const char *take_query(request_rec *r, const char *name)
{
    const char *v, *rest;

    if (!r->args) {
        return NULL;
    }
    v = bff_token_query(&rest, r->args, name, r->pool);
    r->args = (char *)rest;
    query_rewrite(r, name);
    return v;
}

/* The token of one source. Cookie and query sources are taken out of the
 * request whether a token was found earlier or not, and whether it
 * verifies or not. */
static const char *token_from(request_rec *r, const bff_token_src_t *src)
{
    const char *v;

    switch (src->kind) {
    case BFF_TOKEN_BEARER:
        return bff_token_bearer(apr_table_get(r->headers_in,
                                              "Authorization"));
    case BFF_TOKEN_HEADER:
        v = apr_table_get(r->headers_in, src->name);
        return v && *v ? v : NULL;
    case BFF_TOKEN_COOKIE:
        return take_cookie(r, src->name);
    case BFF_TOKEN_QUERY:
        return take_query(r, src->name);
    }
    return NULL;
}

static void set_identity_env(request_rec *r, auth_req_t *rq)
{
    apr_table_setn(r->notes, "bff-auth", rq->kind);
    apr_table_setn(r->notes, "bff-subject", r->user);
    apr_table_setn(r->subprocess_env, "BFF_AUTH", rq->kind);
    apr_table_setn(r->subprocess_env, "BFF_SUBJECT", r->user);
    if (!strcmp(rq->kind, "jwt")) {
        const char *iss = bff_jwt_claim_header(rq->claims, "iss", ",",
                                               r->pool);
        apr_array_header_t *sc = bff_jwt_scopes(rq->claims, r->pool);
        apr_table_setn(r->subprocess_env, "BFF_JWT_SUB", r->user);
        if (iss) {
            apr_table_setn(r->subprocess_env, "BFF_JWT_ISS", iss);
        }
        apr_table_setn(r->subprocess_env, "BFF_JWT_SCOPE",
                       apr_array_pstrcat(r->pool, sc, ' '));
    }
    else {
        apr_table_setn(r->subprocess_env, "BFF_APIKEY_CONSUMER", r->user);
        if (rq->plan) {
            apr_table_setn(r->notes, "bff-plan", rq->plan);
            apr_table_setn(r->subprocess_env, "BFF_APIKEY_PLAN", rq->plan);
        }
    }
}

static int unauthorized(request_rec *r, const char *note, const char *detail,
                        const char *challenge)
{
    apr_table_setn(r->notes, "bff-auth-error", note);
    bff_problem_defer(r, HTTP_UNAUTHORIZED, "Unauthorized", detail, challenge);
    return HTTP_UNAUTHORIZED;
}

static int authn_jwt(request_rec *r)
{
    static const bff_token_src_t bearer = { BFF_TOKEN_BEARER, NULL };
    bff_auth_srv_t *as = req_srv(r);
    bff_auth_dir_t *ad = dir_conf(r);
    jwt_srv_t *j = ad && ad->jwt ? ad->jwt->use : as->jwt;
    const bff_jwt_verifier_t *v = j ? j->verifier : NULL;
    const char *token = NULL, *why = NULL, *sub;
    bff_jwt_status_e st;
    json_t *claims = NULL, *jsub;
    auth_req_t *rq;
    int i;

    if (!j || (!j->verifier && !j->url)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(100)
                      "AuthType " AUTH_JWT " needs JWT keys in this server "
                      "or location (BFFJWTKeyFile, BFFJWTSecretFile, "
                      "BFFJWKSFile or BFFJWKSURL)");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ad && ad->sources) {
        for (i = 0; i < ad->sources->nelts; i++) {
            const char *t = token_from(r, &APR_ARRAY_IDX(ad->sources, i,
                                                         bff_token_src_t));
            token = token ? token : t;
        }
    }
    else {
        token = token_from(r, &bearer);
    }
    if (!token) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(101)
                      "no access token in the request");
        /* RFC 6750 3.1: no error code when the request had no credentials */
        return unauthorized(r, "missing", "an access token is required",
                            bff_auth_bearer_challenge(r, NULL, NULL, NULL));
    }

    /* keys by URL: the verifier of the last key set fetched (none yet:
     * the cold-start policy answers) */
    if (j->url && (i = bff_jwks_verifier(&v, r, j)) != OK) {
        return i;
    }
    st = bff_jwt_verify(&claims, &why, v, jwt_cache, token,
                        apr_time_sec(apr_time_now()), r->pool);
    if (st == BFF_JWT_UNKNOWN_KID && j->url) {
        bff_jwks_unknown_kid(j);
    }
    if (st == BFF_JWT_OK) {
        jsub = json_object_get(claims, "sub");
        sub = json_is_string(jsub) ? json_string_value(jsub) : NULL;
        if (!sub || !*sub) {
            st = BFF_JWT_BAD_CLAIM;
            why = "no \"sub\" string claim";
        }
    }
    if (st != BFF_JWT_OK) {
        const char *name = bff_jwt_status_name(st);
        ap_log_rerror(APLOG_MARK, st == BFF_JWT_INTERNAL ? APLOG_ERR
                      : APLOG_INFO, 0, r, BFFLOGNO(102)
                      "JWT rejected (%s): %s", name, why ? why : "-");
        if (st == BFF_JWT_INTERNAL) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        /* the client learns the class of the problem, never the details */
        return unauthorized(r, name, apr_pstrcat(r->pool, "invalid access "
                            "token: ", name, NULL),
                            bff_auth_bearer_challenge(r, "invalid_token",
                                             st == BFF_JWT_EXPIRED
                                             ? "token expired"
                                             : "token invalid", NULL));
    }

    rq = req_get(r, 1);
    rq->claims = claims;
    rq->kind = "jwt";
    r->user = apr_pstrdup(r->pool, sub);
    set_identity_env(r, rq);
    return OK;
}

static const char *apikey_challenge(request_rec *r, const char *header)
{
    const char *realm = ap_auth_name(r);

    return apr_pstrcat(r->pool, "APIKey realm=",
                       quote(realm ? realm : "api", r->pool), ", header=",
                       quote(header, r->pool), NULL);
}

static int authn_apikey(request_rec *r)
{
    bff_auth_srv_t *as = req_srv(r);
    bff_auth_dir_t *ad = dir_conf(r);
    const char *header = dir_apikey_header(ad);
    const char *key = apr_table_get(r->headers_in, header);
    const bff_apikey_t *e = NULL;
    const char *consumer = NULL, *plan = NULL;
    int use_redis = as->apikey_redis == 1;
    auth_req_t *rq;

    if ((!as->keys || !as->keys->keys) && !use_redis) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(103)
                      "AuthType " AUTH_APIKEY " needs BFFAPIKeyFile or "
                      "BFFAPIKeyRedis On in this server");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!key || !*key) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(104)
                      "no API key in header %s", header);
        return unauthorized(r, "missing", apr_pstrcat(r->pool, "an API key "
                            "is required in the ", header, " header", NULL),
                            apikey_challenge(r, header));
    }
    /* the file first, then Redis: a key in the file works while Redis is
     * down */
    if (as->keys && as->keys->keys) {
        e = bff_apikeys_lookup(as->keys->keys, key, strlen(key));
    }
    if (e) {
        consumer = e->consumer;
        plan = e->plan;
    }
    else if (use_redis && strlen(key) <= BFF_APIKEY_MAX) {
        char hex[65];
        const char *why = NULL, *rkey;
        bff_apikey_hash(hex, key, strlen(key));
        rkey = apr_pstrcat(r->pool, as->apikey_prefix ? as->apikey_prefix
                           : DEFAULT_APIKEY_PREFIX, "apikey:", hex, NULL);
        switch (bff_ratelimit_apikey(r, rkey, &consumer, &plan, &why)) {
        case BFF_APIKEY_FOUND:
            break;
        case BFF_APIKEY_MALFORMED:
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(125)
                          "malformed API key entry in Redis (sha256 %.8s...):"
                          " %s; treated as an unknown key", hex, why);
            consumer = NULL;
            break;
        case BFF_APIKEY_DOWN:
            /* fail closed: a key that cannot be verified is not accepted */
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(126)
                          "cannot verify the API key (sha256 %.8s...) in "
                          "header %s: Redis unavailable (%s)", hex, header,
                          why);
            apr_table_setn(r->notes, "bff-auth-error", "store-down");
            apr_table_setn(r->err_headers_out, "Retry-After", "1");
            bff_problem_defer(r, HTTP_SERVICE_UNAVAILABLE, "Service Unavailable",
                        "the API key cannot be verified now", NULL);
            return HTTP_SERVICE_UNAVAILABLE;
        default:
            consumer = NULL;
            break;
        }
    }
    if (!consumer) {
        char hex[65];
        bff_apikey_hash(hex, key, strlen(key));
        hex[8] = '\0';   /* enough to correlate, too little to matter */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(105)
                      "unknown API key (sha256 %s...) in header %s", hex,
                      header);
        return unauthorized(r, "invalid", "invalid API key",
                            apikey_challenge(r, header));
    }
    rq = req_get(r, 1);
    rq->kind = "apikey";
    rq->plan = plan;
    rq->claims = bff_json_pool_own(plan
        ? json_pack("{s:s, s:s}", "sub", consumer, "plan", plan)
        : json_pack("{s:s}", "sub", consumer), r->pool);
    r->user = apr_pstrdup(r->pool, consumer);
    /* backends get the identity, never the partner's credential */
    apr_table_unset(r->headers_in, header);
    set_identity_env(r, rq);
    return OK;
}

static int bff_check_authn(request_rec *r)
{
    const char *type = ap_auth_type(r);

    if (!type) {
        return DECLINED;
    }
    if (!strcasecmp(type, AUTH_JWT)) {
        return authn_jwt(r);
    }
    if (!strcasecmp(type, AUTH_APIKEY)) {
        return authn_apikey(r);
    }
    return DECLINED;
}

/* mod_authz_core calls this when it answers 401 to an authenticated user
 * (AuthzSendForbiddenOnFailure Off): the token was fine, its claims were
 * not enough. */
static int bff_note_auth_failure(request_rec *r, const char *type)
{
    auth_req_t *rq;

    if (strcasecmp(type, AUTH_JWT) && strcasecmp(type, AUTH_APIKEY)) {
        return DECLINED;
    }
    rq = req_find(r);
    if (rq && rq->denied) {
        bff_problem_defer(r, HTTP_UNAUTHORIZED, "Unauthorized",
                    apr_pstrcat(r->pool, "insufficient scope: ", rq->denied,
                                NULL),
                    !strcasecmp(type, AUTH_JWT)
                    ? bff_auth_bearer_challenge(r, "insufficient_scope", NULL, NULL)
                    : apikey_challenge(r, DEFAULT_APIKEY_HEADER));
    }
    return OK;
}

const char *bff_auth_claim(request_rec *r, const char *path)
{
    auth_req_t *rq = req_find(r);

    return rq ? bff_jwt_claim_header(rq->claims, path, ",", r->pool) : NULL;
}

const apr_array_header_t *bff_auth_identity_names(request_rec *r)
{
    bff_auth_dir_t *ad = dir_conf(r);
    apr_array_header_t *names;
    int i;

    if (!ad || !ad->idents->nelts) {
        return NULL;
    }
    names = apr_array_make(r->pool, ad->idents->nelts, sizeof(const char *));
    for (i = 0; i < ad->idents->nelts; i++) {
        APR_ARRAY_PUSH(names, const char *) =
            APR_ARRAY_IDX(ad->idents, i, ident_t).header;
    }
    return names;
}

typedef struct {
    const apr_array_header_t *names;
    apr_array_header_t *found;
} spelling_ctx_t;

static int collect_spelling(void *baton, const char *key, const char *value)
{
    spelling_ctx_t *ctx = baton;
    int i;

    for (i = 0; i < ctx->names->nelts; i++) {
        if (bff_header_name_same(APR_ARRAY_IDX(ctx->names, i, const char *),
                                 key)) {
            APR_ARRAY_PUSH(ctx->found, const char *) = key;
            break;
        }
    }
    return 1;
}

/* Removes every client copy of the identity headers, in each spelling a
 * backend may fold into the same name (X-User_ID, x-user-id), and the
 * Connection options naming them: a proxy drops the headers listed in
 * Connection as hop-by-hop, which would strip the ones set here. */
static void strip_client_identity(request_rec *r,
                                  const apr_array_header_t *names)
{
    spelling_ctx_t ctx;
    const char *conn;
    int i;

    ctx.names = names;
    ctx.found = apr_array_make(r->pool, 4, sizeof(const char *));
    apr_table_do(collect_spelling, &ctx, r->headers_in, NULL);
    for (i = 0; i < ctx.found->nelts; i++) {
        apr_table_unset(r->headers_in,
                        APR_ARRAY_IDX(ctx.found, i, const char *));
    }
    /* httpd joins repeated Connection headers into one */
    if ((conn = apr_table_get(r->headers_in, "Connection"))) {
        const char *kept = bff_connection_without(conn, names, r->pool);
        if (!kept) {
            apr_table_unset(r->headers_in, "Connection");
        }
        else if (kept != conn) {
            apr_table_setn(r->headers_in, "Connection", kept);
        }
    }
}

/* The identity headers from the verified claims. A claim that cannot be
 * forwarded intact, or a required one the token lacks, refuses the token:
 * the request never reaches a backend without the identity it was meant
 * to carry. */
static int set_identity(request_rec *r, bff_auth_dir_t *ad, auth_req_t *rq)
{
    int i;

    for (i = 0; i < ad->idents->nelts; i++) {
        const ident_t *id = &APR_ARRAY_IDX(ad->idents, i, ident_t);
        const char *v = NULL;
        bff_claim_status_e st = bff_jwt_claim_encode(&v, rq->claims, id->claim,
                                                     id->sep, r->pool);
        if (st == BFF_CLAIM_OK) {
            apr_table_setn(r->headers_in, id->header, v);
            continue;
        }
        if (st == BFF_CLAIM_MISSING && id->optional) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(130)
                          "the token has no claim \"%s\": BFFIdentityHeader "
                          "%s not set (optional)", id->claim, id->header);
            continue;
        }
        if (st == BFF_CLAIM_MISSING) {
            /* a valid token lacking it: a claim name the issuer does not
             * use (a typo?) or an issuer that dropped it */
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(128)
                          "%s token refused: no claim \"%s\" for the "
                          "required BFFIdentityHeader %s", rq->kind,
                          id->claim, id->header);
        }
        else {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(129)
                          "%s token refused: claim \"%s\" cannot be "
                          "forwarded intact in BFFIdentityHeader %s (%s)",
                          rq->kind, id->claim, id->header,
                          bff_claim_status_text(st));
        }
        return unauthorized(r, "identity", "invalid access token: identity "
                            "claim cannot be forwarded",
                            strcmp(rq->kind, "jwt")
                            ? apikey_challenge(r, dir_apikey_header(ad))
                            : bff_auth_bearer_challenge(r, "invalid_token",
                                               "token invalid", NULL));
    }
    return OK;
}

static int bff_auth_fixups(request_rec *r)
{
    bff_auth_dir_t *ad = dir_conf(r);
    auth_req_t *rq;
    int rc;

    if (!ad) {
        return DECLINED;
    }
    if (ad->idents->nelts) {
        /* whatever the client sent under these names is gone, token or not */
        strip_client_identity(r, bff_auth_identity_names(r));
        if ((rq = req_find(r)) && (rc = set_identity(r, ad, rq)) != OK) {
            return rc;
        }
    }
    /* once per client request: not again for subrequests and internal
     * redirects (an ErrorDocument must not cost a token) */
    if (ad->limits->nelts && !r->main && !r->prev) {
        return bff_ratelimit_throttle(r, ad);
    }
    return DECLINED;
}

/* The verifier of one JWT setting (files), or its place among the key
 * sets fetched by URL. vs names the server in messages. */
static int build_jwt(server_rec *vs, jwt_srv_t *j, int keyless_ok,
                     apr_pool_t *pconf)
{
    const char *err;

    if (j->verifier || j->state) {
        return OK;   /* shared with another server */
    }
    if (!j->conf.secret_file && !j->conf.pubkey_file && !j->conf.jwks_file
        && !j->url) {
        if (keyless_ok) {
            return OK;
        }
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(112)
                     "BFFJWT* settings without a key: set BFFJWTKeyFile, "
                     "BFFJWTSecretFile, BFFJWKSFile or BFFJWKSURL");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!j->conf.algs) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(113)
                     "JWT keys without BFFJWTAlgorithms: name the "
                     "accepted algorithms, e.g. BFFJWTAlgorithms RS256");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    j->conf.issuers = j->issuers;
    j->conf.leeway = j->leeway != UNSET ? j->leeway : 0;
    j->conf.exp_optional = j->exp_optional == 1;
    if (j->url) {
        if (j->conf.secret_file || j->conf.pubkey_file
            || j->conf.jwks_file) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(149)
                         "BFFJWKSURL %s excludes BFFJWTKeyFile, "
                         "BFFJWTSecretFile and BFFJWKSFile in the same "
                         "settings: the keys come from the URL",
                         bff_jwks_url_of(j));
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        bff_jwks_add(j, pconf);
        return OK;
    }
    err = bff_jwt_verifier_create(&j->verifier, &j->conf, pconf);
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(114)
                     "cannot load the JWT keys: %s", err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, vs, BFFLOGNO(115)
                 "JWT verifier ready, %d key(s)",
                 bff_jwt_verifier_nkeys(j->verifier));
    return OK;
}

static int load_keys(server_rec *s, apr_pool_t *pconf)
{
    server_rec *vs;
    const char *err;
    int i, rc;
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            s->module_config, &bff_module))->auth;

    int located = 0;

    bff_jwks_reset();
    /* With key sets in <Location>s, a server's settings without a key
     * are their common part (algorithms, issuer ...), not a mistake. */
    for (vs = s; vs; vs = vs->next) {
        located |= ((bff_server_conf_t *)ap_get_module_config(
                      vs->module_config, &bff_module))->auth->dir_jwts != NULL;
    }
    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        bff_auth_srv_t *as = sc->auth;

        if (as->jwt && (rc = build_jwt(vs, as->jwt, located, pconf)) != OK) {
            return rc;
        }
        /* a <Location>'s settings, completed by its server's */
        for (i = 0; as->dir_jwts && i < as->dir_jwts->nelts; i++) {
            jwt_srv_t *d = APR_ARRAY_IDX(as->dir_jwts, i, jwt_srv_t *);
            d->use = jwt_merge(pconf, as->jwt, d);
            if ((rc = build_jwt(vs, d->use, 0, pconf)) != OK) {
                return rc;
            }
        }
        if (as->apikey_redis == 1 && !ms->redis_url) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(124)
                         "BFFAPIKeyRedis On needs BFFRateLimitRedis in the "
                         "main server (the Redis holding the keys)");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (as->keys && !as->keys->keys) {
            err = bff_apikeys_load(&as->keys->keys, as->keys->path, pconf);
            if (err) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(116)
                             "BFFAPIKeyFile: %s", err);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }
    return OK;
}

/* A verifier that checks neither iss nor aud accepts any token its keys
 * signed, whatever service it was issued for (a shared identity
 * provider signs tokens for many). Reported by `apache2 -t`, not refused. */
static void check_jwt_claims(server_rec *s, apr_pool_t *ptemp)
{
    apr_hash_t *seen = apr_hash_make(ptemp);
    server_rec *vs;

    if (ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_CONFIG_TEST) {
        return;
    }
    for (vs = s; vs; vs = vs->next) {
        bff_auth_srv_t *as = ((bff_server_conf_t *)ap_get_module_config(
                                vs->module_config, &bff_module))->auth;
        int i, n = as->dir_jwts ? as->dir_jwts->nelts : 0;

        for (i = -1; i < n; i++) {
            jwt_srv_t *j = i < 0 ? as->jwt
                                 : APR_ARRAY_IDX(as->dir_jwts, i, jwt_srv_t *);
            if (!j || apr_hash_get(seen, &j, sizeof(j))) {
                continue;
            }
            apr_hash_set(seen, apr_pmemdup(ptemp, &j, sizeof(j)), sizeof(j),
                         j);
            /* a <Location>'s own, or those it gets from its server */
            if ((!j->issuers || !j->issuers->nelts) && !j->conf.audience
                && (i < 0 || !as->jwt || ((!as->jwt->issuers
                                           || !as->jwt->issuers->nelts)
                                          && !as->jwt->conf.audience))) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs, BFFLOGNO(133)
                             "JWT settings of %s:%u%s%s check neither the "
                             "issuer nor the audience: any token these keys "
                             "signed is accepted, whatever it was issued "
                             "for; set BFFJWTIssuer and/or BFFJWTAudience",
                             vs->server_hostname ? vs->server_hostname : "*",
                             (unsigned)vs->port, i < 0 ? "" : " in a ",
                             i < 0 ? "" : "<Location>");
            }
        }
    }
}

/* Tokens from cookies and query parameters are opt-ins (browsers cannot
 * set Authorization on a WebSocket upgrade or an EventSource), each a
 * risk of its own: `apache2 -t` names every place that takes one. */
static void report_token_sources(server_rec *s)
{
    server_rec *vs;
    int i;

    if (ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_CONFIG_TEST) {
        return;
    }
    for (vs = s; vs; vs = vs->next) {
        bff_auth_srv_t *as = ((bff_server_conf_t *)ap_get_module_config(
                                vs->module_config, &bff_module))->auth;
        for (i = 0; as->token_optins && i < as->token_optins->nelts; i++) {
            const char *what = APR_ARRAY_IDX(as->token_optins, i,
                                             const char *);
            if (strstr(what, "BFFTokenSource query:") == what) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs, BFFLOGNO(820)
                             "%s: access tokens in the URL; mod_bff removes "
                             "the parameter from the request before it is "
                             "forwarded or logged by the access log, but "
                             "what sees the URL before httpd's access phase "
                             "(proxies in front, browser history, "
                             "mod_log_forensic) keeps it", what);
            }
            else {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs, BFFLOGNO(821)
                             "%s: access tokens in a cookie, which browsers "
                             "send by themselves, from other sites' pages "
                             "too unless it is SameSite (cross-site request "
                             "forgery); removed from the Cookie header "
                             "before forwarding", what);
            }
        }
    }
}

/* --------------------------------------------------------- lifecycle -- */

/* Runs at every start and restart, and for `apache2 -t` (and so
 * `apache2ctl graceful`, which runs it first), which stops before
 * post_config: load the keys here in that mode, so that a broken key file
 * fails the test instead of the restart. */
static int authn_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                              apr_pool_t *ptemp, server_rec *s)
{
    check_jwt_claims(s, ptemp);
    report_token_sources(s);
    if (ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_CONFIG_TEST) {
        return OK;
    }
    return load_keys(s, pconf);
}

static int authn_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                             apr_pool_t *ptemp, server_rec *s)
{
    /* keys are (re)loaded on every start and graceful restart, in the
     * dry run too: a bad key stops httpd before it forks */
    int rc = load_keys(s, pconf);

    return rc != OK ? rc : bff_jwks_start(s, pconf, ptemp);
}

static void authn_child_init(apr_pool_t *pchild, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);
    bff_auth_srv_t *as = sc->auth;
    const char *err;
    int entries;

    jwt_cache = NULL;
    entries = as->jwt_cache_entries != UNSET ? as->jwt_cache_entries
                                             : DEFAULT_JWT_CACHE;
    if (entries > 0) {
        err = bff_jwt_cache_create(&jwt_cache, (apr_size_t)entries,
                                   as->jwt_cache_ttl != UNSET
                                   ? as->jwt_cache_ttl : DEFAULT_JWT_CACHE_TTL,
                                   pchild);
        if (err) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(122)
                         "JWT cache off: %s", err);
            jwt_cache = NULL;
        }
    }
}

void bff_auth_register_hooks(apr_pool_t *p)
{
    ap_hook_check_config(authn_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(authn_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(authn_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_authn(bff_check_authn, NULL, NULL, APR_HOOK_MIDDLE,
                        AP_AUTH_INTERNAL_PER_CONF);
    ap_hook_note_auth_failure(bff_note_auth_failure, NULL, NULL,
                              APR_HOOK_MIDDLE);
    /* first among fixups: identity headers are in place, and a throttled
     * request is refused, before any other module acts on the request */
    ap_hook_fixups(bff_auth_fixups, NULL, NULL, APR_HOOK_FIRST);
    bff_jwks_register_hooks(p);
    bff_authz_register_hooks(p);
    bff_ratelimit_register_hooks(p);
}
