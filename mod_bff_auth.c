/*
 * mod_bff: the access phase (issue 4).
 *
 *   authentication  AuthType bff-jwt / bff-apikey, in check_user_id
 *                   (ap_hook_check_authn): sets r->user to the JWT "sub"
 *                   or the API key's consumer;
 *   authorization   authz providers "bff-scope" and "bff-claim", so that
 *                   `Require bff-scope orders:read` composes with
 *                   <RequireAll>, `Require ip` and the rest of mod_authz_core;
 *   identity        fixups: configured identity headers are removed from
 *                   the client's request, then set from the claims
 *                   (ProxyPass backends see r->headers_in; the aggregation
 *                   forwards them, see bff_auth_identity_names);
 *   throttling      fixups: token buckets in Redis (one Lua call per limit,
 *                   EVALSHA) with a per-child pool of hiredis connections,
 *                   falling back to shared memory (socache shmcb) or failing
 *                   open / closed while Redis is unreachable.
 *
 * Errors (401, 403, 429, 503) are answered as application/problem+json by
 * an output filter that replaces httpd's error document body, so httpd's
 * own status handling (and an admin's ErrorDocument) still apply.
 *
 * The verification logic is in lib/ (bff_jwt.h, bff_apikey.h,
 * bff_bucket.h); this file is only the httpd glue.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_auth.h"
#include "ap_mpm.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "util_mutex.h"
#include "util_cookies.h"

#include "apr_atomic.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_global_mutex.h"

#include <hiredis/hiredis.h>

#include "mod_bff.h"
#include "bff_jwt.h"
#include "bff_apikey.h"
#include "bff_bucket.h"
#include "bff_lease.h"

APLOG_USE_MODULE(bff);

#define UNSET -1

#define AUTH_JWT    "bff-jwt"
#define AUTH_APIKEY "bff-apikey"

#define DEFAULT_APIKEY_HEADER  "X-API-Key"
#define DEFAULT_JWT_CACHE      1024
#define DEFAULT_JWT_CACHE_TTL  300         /* s */
#define DEFAULT_REDIS_CONNECT  200         /* ms */
#define DEFAULT_REDIS_TIMEOUT  100         /* ms */
#define DEFAULT_REDIS_RETRY    1000        /* ms */
#define DEFAULT_APIKEY_PREFIX  "bff:"
#define APIKEY_PREFIX_MAX      64
#define RL_MUTEX_TYPE          "bff-ratelimit"
#define RL_SOCACHE_NAME        "bff-ratelimit"
#define DEFAULT_LEASE_TTL      1000        /* ms */
#define LEASES_MAX             10000       /* keys with a lease, per child */

/* BFFRateLimitFallback */
#define FB_SHM    1
#define FB_OPEN   2
#define FB_CLOSED 3

/* ------------------------------------------------------------ config -- */

/* Token sources (BFFTokenSource) */
typedef enum { SRC_BEARER, SRC_HEADER, SRC_COOKIE, SRC_QUERY } src_kind_e;

typedef struct {
    src_kind_e kind;
    const char *name;            /* header, cookie or query parameter */
} token_src_t;

/* BFFIdentityHeader */
typedef struct {
    const char *header;
    const char *claim;           /* path in the claims */
    const char *sep;             /* joins array elements */
    int optional;                /* a token without the claim is accepted
                                    (no header); otherwise 401 */
} ident_t;

/* BFFRateLimit */
typedef enum { KEY_IP, KEY_USER, KEY_HEADER, KEY_GLOBAL } limit_key_e;

typedef struct {
    const char *name;
    bff_bucket_conf_t conf;
    limit_key_e key;
    const char *header;          /* KEY_HEADER */
    apr_array_header_t *plans;   /* const char *; NULL: every request; "-"
                                    stands for "no plan" */
    apr_int64_t lease;           /* > 1: tokens taken from Redis per call */
    long lease_ttl_ms;           /* unused leased tokens go back after */
} limit_t;

/* The JWT verification settings of one server. A virtual host that sets
 * none shares its parent's (and so its verifier). */
typedef struct {
    bff_jwt_conf_t conf;
    int exp_optional;            /* UNSET */
    apr_int64_t leeway;          /* UNSET */
    apr_array_header_t *issuers;
    int any;                     /* a BFFJWT* key/claim directive was seen */
    bff_jwt_verifier_t *verifier;   /* built in post_config */
} jwt_srv_t;

typedef struct {
    const char *path;
    bff_apikeys_t *keys;         /* loaded in post_config */
} keys_srv_t;

struct bff_auth_srv_t {
    jwt_srv_t *jwt;              /* NULL: no JWT configured */
    keys_srv_t *keys;            /* NULL: no API key file */
    int apikey_redis;            /* BFFAPIKeyRedis; UNSET */
    const char *apikey_prefix;   /* NULL: DEFAULT_APIKEY_PREFIX */
    /* main server only (process-wide resources) */
    int jwt_cache_entries;       /* UNSET; 0 disables */
    apr_int64_t jwt_cache_ttl;
    const char *redis_url;       /* NULL: no Redis */
    long redis_connect_ms, redis_timeout_ms, redis_retry_ms;
    int instances;               /* UNSET */
};

struct bff_auth_dir_t {
    apr_array_header_t *sources;     /* token_src_t; NULL: unset */
    const char *apikey_header;       /* NULL: unset */
    apr_array_header_t *idents;      /* ident_t */
    apr_array_header_t *limits;      /* limit_t * */
    int fallback;                    /* FB_*; 0: unset */
};

/* ------------------------------------------------------ request state -- */

typedef struct problem_t {
    int status;
    const char *title;
    const char *detail;
    const char *challenge;       /* WWW-Authenticate, or NULL */
    struct problem_t *next;
} problem_t;

typedef struct {
    json_t *claims;              /* JWT payload, or {"sub","plan"} for keys */
    const char *kind;            /* "jwt" / "apikey" */
    const char *plan;            /* API key plan, or NULL */
    const char *denied;          /* what a bff-* authz provider missed */
    problem_t *problems;         /* answers the problem filter may give */
} auth_req_t;

#define REQ_KEY "bff-auth-req"

/* ----------------------------------------------------- process state -- */

/* Built in post_config / child_init, immutable afterwards except where
 * noted. */
static bff_jwt_cache_t *jwt_cache;           /* per child */
static bff_redis_t *rl_redis;                /* per child */
static const ap_socache_provider_t *rl_shm_provider;
static ap_socache_instance_t *rl_shm;        /* shared by the children */
static apr_global_mutex_t *rl_mutex;
static server_rec *main_server;
/* seen while reading the configuration (reset in pre_config), for the
 * checks of check_config */
static int rl_limits_seen;       /* a BFFRateLimit somewhere */
static int rl_shm_fallback_seen; /* an explicit BFFRateLimitFallback shm */

/* Whether this child logged a Redis outage: it is logged once when it
 * starts and once when it ends (the layer's gate does the back-off). */
static volatile apr_uint32_t redis_down;

/* Token leases of this child (BFFRateLimit lease=N) */
static bff_lease_table_t *leases;

static ap_filter_rec_t *problem_filter_handle;

/* ------------------------------------------------------ config merge -- */

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
        || add->conf.jwks_file) {
        j->conf.secret_file = add->conf.secret_file;
        j->conf.pubkey_file = add->conf.pubkey_file;
        j->conf.jwks_file = add->conf.jwks_file;
    }
    else {
        j->conf.secret_file = base->conf.secret_file;
        j->conf.pubkey_file = base->conf.pubkey_file;
        j->conf.jwks_file = base->conf.jwks_file;
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

/* -------------------------------------------------------- directives -- */

static bff_auth_srv_t *srv_conf(cmd_parms *cmd)
{
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);
    return sc->auth;
}

static jwt_srv_t *srv_jwt(cmd_parms *cmd)
{
    bff_auth_srv_t *as = srv_conf(cmd);

    if (!as->jwt) {
        as->jwt = jwt_create(cmd->pool);
    }
    as->jwt->any = 1;
    return as->jwt;
}

/* Per-directory directives belong in <Location> (or the server's default);
 * inside <BFFEndpoint> they would configure a section no request uses. */
static const char *dir_only(cmd_parms *cmd, void *dcv)
{
    bff_dir_conf_t *dc = dcv;

    if (dc && dc->epc) {
        return apr_psprintf(cmd->pool, "%s is not allowed inside "
                            "<BFFEndpoint>: put it in a <Location> for the "
                            "endpoint's path", cmd->cmd->name);
    }
    return NULL;
}

static const char *srv_only(cmd_parms *cmd)
{
    return ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
}

static int header_name_ok(const char *s)
{
    if (!*s) {
        return 0;
    }
    for (; *s; s++) {
        if (!apr_isalnum(*s) && !strchr("!#$%&'*+-.^_`|~", *s)) {
            return 0;
        }
    }
    return 1;
}

const char *bff_auth_cmd_jwt_file(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = srv_only(cmd);
    jwt_srv_t *j;
    const char *path;

    if (err) {
        return err;
    }
    j = srv_jwt(cmd);
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

const char *bff_auth_cmd_jwt_algs(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = srv_only(cmd);
    unsigned mask;

    if (!err) {
        err = bff_jwt_algs_parse(&mask, arg, cmd->pool);
    }
    if (err) {
        return apr_psprintf(cmd->pool, "BFFJWTAlgorithms: %s", err);
    }
    srv_jwt(cmd)->conf.algs = mask;
    return NULL;
}

const char *bff_auth_cmd_jwt_issuer(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = srv_only(cmd);
    jwt_srv_t *j;

    if (err) {
        return err;
    }
    j = srv_jwt(cmd);
    if (!j->issuers) {
        j->issuers = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(j->issuers, const char *) = arg;
    return NULL;
}

const char *bff_auth_cmd_jwt_audience(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    const char *err = srv_only(cmd);

    if (err) {
        return err;
    }
    srv_jwt(cmd)->conf.audience = arg;
    return NULL;
}

const char *bff_auth_cmd_jwt_leeway(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = srv_only(cmd);
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
    srv_jwt(cmd)->leeway = ms / 1000;
    return NULL;
}

const char *bff_auth_cmd_jwt_require_exp(cmd_parms *cmd, void *dcv, int on)
{
    const char *err = srv_only(cmd);

    if (err) {
        return err;
    }
    srv_jwt(cmd)->exp_optional = !on;
    return NULL;
}

const char *bff_auth_cmd_jwt_max_size(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    const char *err = srv_only(cmd);
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
    srv_jwt(cmd)->conf.max_size = n;
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
    const char *err = dir_only(cmd, dcv);
    token_src_t *src;
    const char *colon = strchr(arg, ':');

    if (err) {
        return err;
    }
    if (!dc->auth->sources) {
        dc->auth->sources = apr_array_make(cmd->pool, 2, sizeof(token_src_t));
    }
    src = apr_array_push(dc->auth->sources);
    if (!strcasecmp(arg, "bearer")) {
        src->kind = SRC_BEARER;
        return NULL;
    }
    if (colon && colon[1]) {
        src->name = colon + 1;
        if (!strncasecmp(arg, "header:", 7) && header_name_ok(src->name)) {
            src->kind = SRC_HEADER;
            return NULL;
        }
        if (!strncasecmp(arg, "cookie:", 7) && header_name_ok(src->name)) {
            src->kind = SRC_COOKIE;
            return NULL;
        }
        if (!strncasecmp(arg, "query:", 6)) {
            src->kind = SRC_QUERY;
            return NULL;
        }
    }
    return apr_psprintf(cmd->pool, "BFFTokenSource %s: expected bearer, "
                        "header:NAME, cookie:NAME or query:NAME", arg);
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

const char *bff_auth_cmd_apikey_redis(cmd_parms *cmd, void *dcv,
                                      const char *args)
{
    const char *err = srv_only(cmd);
    bff_auth_srv_t *as = srv_conf(cmd);
    const char *w, *opt, *s;

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
        if (strncmp(opt, "prefix=", 7)) {
            return apr_psprintf(cmd->pool, "BFFAPIKeyRedis: unknown option "
                                "'%s' (prefix=)", opt);
        }
        opt += 7;
        for (s = opt; *s && apr_isgraph(*s); s++) {
        }
        if (!*opt || *s || s - opt > APIKEY_PREFIX_MAX) {
            return apr_psprintf(cmd->pool, "BFFAPIKeyRedis: prefix=%s: 1 to "
                                "%d printable characters, no spaces", opt,
                                APIKEY_PREFIX_MAX);
        }
        as->apikey_prefix = opt;
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
        if (!strncmp(opt, "sep=", 4)) {
            if (!opt[4]) {
                return apr_psprintf(cmd->pool, "BFFIdentityHeader %s %s: "
                                    "sep= needs a separator", header, claim);
            }
            id->sep = opt + 4;
        }
        else if (!strcmp(opt, "optional")) {
            id->optional = 1;
        }
        else if (!strcmp(opt, "required")) {
            id->optional = 0;
        }
        else {
            return apr_psprintf(cmd->pool, "BFFIdentityHeader %s %s: unknown "
                                "option '%s' (sep=STRING, optional, "
                                "required)", header, claim, opt);
        }
    }
    return NULL;
}

static int limit_name_ok(const char *s)
{
    if (!*s || strlen(s) > 64) {
        return 0;
    }
    for (; *s; s++) {
        if (!apr_isalnum(*s) && !strchr("-_.", *s)) {
            return 0;
        }
    }
    return 1;
}

const char *bff_auth_cmd_rate_limit(cmd_parms *cmd, void *dcv,
                                    const char *args)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = dir_only(cmd, dcv);
    const char *name, *rate, *opt;
    limit_t *l;
    int i;

    if (err) {
        return err;
    }
    name = ap_getword_conf(cmd->pool, &args);
    rate = ap_getword_conf(cmd->pool, &args);
    if (!*name || !*rate) {
        return "BFFRateLimit takes a name, a rate and options: BFFRateLimit "
               "per-user 100/1m key=user [burst=N] [plan=NAME,...]";
    }
    if (!limit_name_ok(name)) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: a name is 1-64 of "
                            "A-Z a-z 0-9 - _ .", name);
    }
    rl_limits_seen = 1;
    l = apr_pcalloc(cmd->pool, sizeof(*l));
    l->name = name;
    l->key = KEY_IP;
    if ((err = bff_bucket_parse_rate(&l->conf, rate, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s %s: %s", name, rate,
                            err);
    }
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        if (!strncmp(opt, "key=", 4)) {
            const char *k = opt + 4;
            if (!strcmp(k, "ip")) {
                l->key = KEY_IP;
            }
            else if (!strcmp(k, "user")) {
                l->key = KEY_USER;
            }
            else if (!strcmp(k, "global")) {
                l->key = KEY_GLOBAL;
            }
            else if (!strncmp(k, "header:", 7) && header_name_ok(k + 7)) {
                l->key = KEY_HEADER;
                l->header = k + 7;
            }
            else {
                return apr_psprintf(cmd->pool, "BFFRateLimit %s: %s: expected "
                                    "key=ip, key=user, key=global or "
                                    "key=header:NAME", name, opt);
            }
        }
        else if (!strncmp(opt, "burst=", 6)) {
            char *end;
            apr_int64_t b = apr_strtoi64(opt + 6, &end, 10);
            if (!opt[6] || *end || b < 1) {
                return apr_psprintf(cmd->pool, "BFFRateLimit %s: %s: expected "
                                    "a number of at least 1", name, opt);
            }
            l->conf.capacity = b;
        }
        else if (!strncmp(opt, "plan=", 5) && opt[5]) {
            char *list = apr_pstrdup(cmd->pool, opt + 5), *last, *w;
            l->plans = apr_array_make(cmd->pool, 2, sizeof(const char *));
            for (w = apr_strtok(list, ",", &last); w;
                 w = apr_strtok(NULL, ",", &last)) {
                APR_ARRAY_PUSH(l->plans, const char *) = w;
            }
        }
        else if (!strncmp(opt, "lease=", 6)) {
            char *end;
            apr_int64_t n = apr_strtoi64(opt + 6, &end, 10);
            if (!opt[6] || *end || n < 1 || n > 1000000) {
                return apr_psprintf(cmd->pool, "BFFRateLimit %s: %s: expected "
                                    "a number of tokens from 1 to 1000000",
                                    name, opt);
            }
            l->lease = n;
        }
        else if (!strncmp(opt, "lease-ttl=", 10)) {
            if ((err = bff_parse_duration_ms(&l->lease_ttl_ms, opt + 10,
                                             cmd->temp_pool))
                || l->lease_ttl_ms < 1 || l->lease_ttl_ms > 60000) {
                return apr_psprintf(cmd->pool, "BFFRateLimit %s: %s: expected "
                                    "a duration from 1ms to 1m%s%s", name, opt,
                                    err ? ": " : "", err ? err : "");
            }
        }
        else {
            return apr_psprintf(cmd->pool, "BFFRateLimit %s: unknown option "
                                "'%s' (key=, burst=, plan=, lease=, "
                                "lease-ttl=)", name, opt);
        }
    }
    if ((err = bff_bucket_conf_check(&l->conf, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: %s", name, err);
    }
    if (l->lease > l->conf.capacity) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: lease=%" APR_INT64_T_FMT
                            " is more than the capacity (%" APR_INT64_T_FMT
                            " tokens)", name, l->lease, l->conf.capacity);
    }
    if (l->lease_ttl_ms && l->lease < 2) {
        return apr_psprintf(cmd->pool, "BFFRateLimit %s: lease-ttl= needs "
                            "lease=N with N >= 2", name);
    }
    if (!l->lease_ttl_ms) {
        l->lease_ttl_ms = DEFAULT_LEASE_TTL;
    }
    for (i = 0; i < dc->auth->limits->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(dc->auth->limits, i, limit_t *)->name,
                    name)) {
            return apr_psprintf(cmd->pool, "BFFRateLimit %s is already "
                                "defined here", name);
        }
    }
    APR_ARRAY_PUSH(dc->auth->limits, limit_t *) = l;
    return NULL;
}

const char *bff_auth_cmd_rl_fallback(cmd_parms *cmd, void *dcv,
                                     const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = dir_only(cmd, dcv);

    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "shm")) {
        dc->auth->fallback = FB_SHM;
        rl_shm_fallback_seen = 1;
    }
    else if (!strcasecmp(arg, "open")) {
        dc->auth->fallback = FB_OPEN;
    }
    else if (!strcasecmp(arg, "closed")) {
        dc->auth->fallback = FB_CLOSED;
    }
    else {
        return apr_psprintf(cmd->pool, "BFFRateLimitFallback %s: expected "
                            "shm, open or closed", arg);
    }
    return NULL;
}

const char *bff_auth_cmd_rl_redis(cmd_parms *cmd, void *dcv, const char *args)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    bff_auth_srv_t *as = srv_conf(cmd);
    const char *url, *opt;
    bff_redis_url_t parsed;

    if (err) {
        return err;
    }
    url = ap_getword_conf(cmd->pool, &args);
    /* HOST:PORT alone was accepted before URLs with credentials were */
    if (*url && !ap_strstr_c(url, "://")) {
        url = apr_pstrcat(cmd->pool, "redis://", url, NULL);
    }
    if ((err = bff_redis_url_parse(&parsed, url, cmd->temp_pool))) {
        return apr_psprintf(cmd->pool, "BFFRateLimitRedis: %s", err);
    }
    as->redis_url = url;
    while (*(opt = ap_getword_conf(cmd->pool, &args))) {
        const char *eq = strchr(opt, '=');
        long *dst = NULL, ms;
        if (eq && !strncmp(opt, "connect-timeout=", 16)) {
            dst = &as->redis_connect_ms;
        }
        else if (eq && !strncmp(opt, "timeout=", 8)) {
            dst = &as->redis_timeout_ms;
        }
        else if (eq && !strncmp(opt, "retry=", 6)) {
            dst = &as->redis_retry_ms;
        }
        if (!dst) {
            return apr_psprintf(cmd->pool, "BFFRateLimitRedis: unknown option "
                                "'%s' (connect-timeout=, timeout=, retry=)",
                                opt);
        }
        err = bff_parse_duration_ms(&ms, eq + 1, cmd->temp_pool);
        if (!err && ms <= 0) {
            err = "must be greater than 0";
        }
        if (err) {
            return apr_psprintf(cmd->pool, "BFFRateLimitRedis: %s: %s", opt,
                                err);
        }
        *dst = ms;
    }
    return NULL;
}

const char *bff_auth_cmd_rl_instances(cmd_parms *cmd, void *dcv,
                                      const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    long v;

    if (err) {
        return err;
    }
    v = strtol(arg, &end, 10);
    if (!*arg || *end || v < 1 || v > 1000) {
        return apr_psprintf(cmd->pool, "BFFRateLimitInstances %s: expected a "
                            "number from 1 to 1000", arg);
    }
    srv_conf(cmd)->instances = (int)v;
    return NULL;
}

/* ---------------------------------------------------- request helpers -- */

static bff_auth_dir_t *dir_conf(request_rec *r)
{
    bff_dir_conf_t *dc = ap_get_module_config(r->per_dir_config, &bff_module);

    return dc ? dc->auth : NULL;
}

static const char *dir_apikey_header(const bff_auth_dir_t *ad)
{
    return ad && ad->apikey_header ? ad->apikey_header : DEFAULT_APIKEY_HEADER;
}

static bff_auth_srv_t *req_srv(request_rec *r)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);
    return sc->auth;
}

static auth_req_t *req_get(request_rec *r, int create)
{
    auth_req_t *rq = NULL;

    apr_pool_userdata_get((void **)&rq, REQ_KEY, r->pool);
    if (!rq && create) {
        rq = apr_pcalloc(r->pool, sizeof(*rq));
        apr_pool_userdata_setn(rq, REQ_KEY, NULL, r->pool);
    }
    return rq;
}

/* The authenticated identity of r: its own, or that of the request it
 * was redirected from / is a subrequest of (AP_AUTH_INTERNAL_PER_CONF
 * copies r->user but not our claims). */
static auth_req_t *req_find(request_rec *r)
{
    for (; r; r = r->prev ? r->prev : r->main) {
        auth_req_t *rq = req_get(r, 0);
        if (rq && rq->claims) {
            return rq;
        }
    }
    return NULL;
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

/* Registers the problem+json answer for status: if httpd ends up
 * answering r with that status from ap_die (an error of ours, not a
 * backend's answer), insert_error_filter adds the filter that gives it. */
static void add_problem(request_rec *r, int status, const char *title,
                        const char *detail, const char *challenge)
{
    auth_req_t *rq = req_get(r, 1);
    problem_t *pb = apr_pcalloc(r->pool, sizeof(*pb));

    pb->status = status;
    pb->title = title;
    pb->detail = detail;
    pb->challenge = challenge;
    pb->next = rq->problems;
    rq->problems = pb;
}

static const char *bearer_challenge(request_rec *r, const char *error,
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

/* -------------------------------------------------- problem filter -- */

typedef struct {
    const problem_t *pb;
    int sent;
} problem_ctx_t;

static void drop_data(apr_bucket_brigade *bb)
{
    apr_bucket *b = APR_BRIGADE_FIRST(bb);

    while (b != APR_BRIGADE_SENTINEL(bb)) {
        apr_bucket *next = APR_BUCKET_NEXT(b);
        if (!APR_BUCKET_IS_METADATA(b)) {
            apr_bucket_delete(b);
        }
        b = next;
    }
}

/* Replaces the body of httpd's error document by the problem document
 * and adds the challenge. Runs before the HTTP header filter. */
static apr_status_t problem_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    problem_ctx_t *ctx = f->ctx;

    /* httpd's HTML goes, the metadata (EOS, FLUSH) stays */
    drop_data(bb);
    if (!ctx->sent) {
        const problem_t *pb = ctx->pb;
        json_t *doc = bff_problem(pb->status, pb->title, pb->detail, r->uri,
                                  r->pool);
        const char *req_id = bff_request_id(r);    /* = X-Request-ID */
        apr_size_t len = 0;
        const char *body;

        ctx->sent = 1;
        if (doc && req_id) {
            json_object_set_new(doc, "request_id", json_string(req_id));
        }
        body = doc ? bff_json_dump(&len, doc, r->pool) : "";
        ap_set_content_type(r, "application/problem+json");
        r->content_languages = NULL;
        if (pb->challenge) {
            apr_table_setn(r->headers_out, "WWW-Authenticate", pb->challenge);
        }
        if (!r->header_only && len) {
            APR_BRIGADE_INSERT_HEAD(bb, apr_bucket_pool_create(body, len,
                                    r->pool, f->c->bucket_alloc));
        }
    }
    return ap_pass_brigade(f->next, bb);
}

/* Called by ap_send_error_response only: httpd is about to answer r with
 * an error document. */
static void bff_insert_error_filter(request_rec *r)
{
    auth_req_t *rq = req_get(r, 0);
    const problem_t *pb;
    problem_ctx_t *ctx;

    for (pb = rq ? rq->problems : NULL; pb; pb = pb->next) {
        if (pb->status == r->status) {
            ctx = apr_pcalloc(r->pool, sizeof(*ctx));
            ctx->pb = pb;
            ap_add_output_filter_handle(problem_filter_handle, ctx, r,
                                        r->connection);
            return;
        }
    }
}

/* ---------------------------------------------------- authentication -- */

static const char *token_from(request_rec *r, const token_src_t *src)
{
    const char *v = NULL;

    switch (src->kind) {
    case SRC_BEARER:
        v = apr_table_get(r->headers_in, "Authorization");
        if (v && !strncasecmp(v, "Bearer ", 7)) {
            for (v += 7; *v == ' '; v++) {
            }
            return *v ? v : NULL;
        }
        return NULL;
    case SRC_HEADER:
        v = apr_table_get(r->headers_in, src->name);
        return v && *v ? v : NULL;
    case SRC_COOKIE:
        if (ap_cookie_read(r, src->name, &v, 0) != APR_SUCCESS) {
            return NULL;
        }
        return v && *v ? v : NULL;
    case SRC_QUERY: {
        /* a JWT holds no character that needs escaping: take the value
         * as it is, or unescape it when it was escaped anyway */
        apr_size_t n = strlen(src->name);
        const char *a = r->args;
        while (a && *a) {
            const char *end = strchr(a, '&');
            apr_size_t len = end ? (apr_size_t)(end - a) : strlen(a);
            if (len > n && !strncmp(a, src->name, n) && a[n] == '=') {
                char *val = apr_pstrmemdup(r->pool, a + n + 1, len - n - 1);
                if (ap_unescape_urlencoded(val) != OK || !*val) {
                    return NULL;
                }
                return val;
            }
            a = end ? end + 1 : NULL;
        }
        return NULL;
    }
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
    add_problem(r, HTTP_UNAUTHORIZED, "Unauthorized", detail, challenge);
    return HTTP_UNAUTHORIZED;
}

static int authn_jwt(request_rec *r)
{
    static const token_src_t bearer = { SRC_BEARER, NULL };
    bff_auth_srv_t *as = req_srv(r);
    bff_auth_dir_t *ad = dir_conf(r);
    const char *token = NULL, *why = NULL, *sub;
    bff_jwt_status_e st;
    json_t *claims = NULL, *jsub;
    auth_req_t *rq;
    int i;

    if (!as->jwt || !as->jwt->verifier) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(100)
                      "AuthType " AUTH_JWT " needs JWT keys in this server "
                      "(BFFJWTKeyFile, BFFJWTSecretFile or BFFJWKSFile)");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ad && ad->sources) {
        for (i = 0; !token && i < ad->sources->nelts; i++) {
            token = token_from(r, &APR_ARRAY_IDX(ad->sources, i, token_src_t));
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
                            bearer_challenge(r, NULL, NULL, NULL));
    }

    st = bff_jwt_verify(&claims, &why, as->jwt->verifier, jwt_cache, token,
                        apr_time_sec(apr_time_now()), r->pool);
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
                            bearer_challenge(r, "invalid_token",
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

/* API keys kept in Redis (BFFAPIKeyRedis); defined with the Redis code */
static bff_apikey_rc_e redis_apikey(request_rec *r, const char *rkey,
                                    const char **consumer, const char **plan,
                                    const char **why);

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
        switch (redis_apikey(r, rkey, &consumer, &plan, &why)) {
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
            add_problem(r, HTTP_SERVICE_UNAVAILABLE, "Service Unavailable",
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
        add_problem(r, HTTP_UNAUTHORIZED, "Unauthorized",
                    apr_pstrcat(r->pool, "insufficient scope: ", rq->denied,
                                NULL),
                    !strcasecmp(type, AUTH_JWT)
                    ? bearer_challenge(r, "insufficient_scope", NULL, NULL)
                    : apikey_challenge(r, DEFAULT_APIKEY_HEADER));
    }
    return OK;
}

/* ----------------------------------------------------- authorization -- */

static const char *parse_words(cmd_parms *cmd, const char *line,
                               const void **parsed)
{
    apr_array_header_t *w = apr_array_make(cmd->pool, 2, sizeof(const char *));
    const char *t;

    while (*(t = ap_getword_conf(cmd->pool, &line))) {
        APR_ARRAY_PUSH(w, const char *) = t;
    }
    *parsed = w;
    return NULL;
}

static const char *scope_parse(cmd_parms *cmd, const char *line,
                               const void **parsed)
{
    parse_words(cmd, line, parsed);
    if (!((const apr_array_header_t *)*parsed)->nelts) {
        return "Require bff-scope needs at least one scope: "
               "Require bff-scope orders:read";
    }
    return NULL;
}

static const char *claim_parse(cmd_parms *cmd, const char *line,
                               const void **parsed)
{
    parse_words(cmd, line, parsed);
    if (((const apr_array_header_t *)*parsed)->nelts < 2) {
        return "Require bff-claim needs a claim and at least one value: "
               "Require bff-claim realm_access.roles admin";
    }
    return NULL;
}

/* Authorization failed for an authenticated user: remember why, and
 * prepare the 403 answer (AuthzSendForbiddenOnFailure On) in case this
 * denial decides the request. */
static authz_status authz_denied(request_rec *r, const char *what,
                                 const char *scope)
{
    auth_req_t *rq = req_get(r, 1);
    const char *type = ap_auth_type(r);

    rq->denied = what;
    /* counted by the metrics only if this denial decides the answer */
    apr_table_setn(r->notes, "bff-authz-denied", "insufficient_scope");
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(106)
                  "user '%s' lacks %s", r->user, what);
    add_problem(r, HTTP_FORBIDDEN, "Forbidden",
                apr_pstrcat(r->pool, "insufficient scope: ", what, NULL),
                type && !strcasecmp(type, AUTH_JWT)
                ? bearer_challenge(r, "insufficient_scope", NULL, scope)
                : NULL);
    return AUTHZ_DENIED;
}

static authz_status scope_check(request_rec *r, const char *line,
                                const void *parsed)
{
    const apr_array_header_t *want = parsed;
    auth_req_t *rq;
    int i;

    if (!r->user) {
        return AUTHZ_DENIED_NO_USER;
    }
    rq = req_find(r);
    for (i = 0; i < want->nelts; i++) {
        const char *s = APR_ARRAY_IDX(want, i, const char *);
        if (!rq || !bff_jwt_has_scope(rq->claims, s, r->pool)) {
            return authz_denied(r, apr_pstrcat(r->pool, "scope ", s, NULL),
                                apr_array_pstrcat(r->pool, want, ' '));
        }
    }
    return AUTHZ_GRANTED;
}

static authz_status claim_check(request_rec *r, const char *line,
                                const void *parsed)
{
    const apr_array_header_t *want = parsed;
    const char *path = APR_ARRAY_IDX(want, 0, const char *);
    apr_array_header_t *have;
    auth_req_t *rq;
    int i, j;

    if (!r->user) {
        return AUTHZ_DENIED_NO_USER;
    }
    rq = req_find(r);
    have = rq ? bff_jwt_claim_strings(rq->claims, path, r->pool) : NULL;
    for (i = 0; have && i < have->nelts; i++) {
        for (j = 1; j < want->nelts; j++) {
            if (!strcmp(APR_ARRAY_IDX(have, i, const char *),
                        APR_ARRAY_IDX(want, j, const char *))) {
                return AUTHZ_GRANTED;
            }
        }
    }
    return authz_denied(r, apr_psprintf(r->pool, "claim %s in (%s)", path,
                        apr_array_pstrcat(r->pool, want, ' ')
                        + strlen(path) + 1), NULL);
}

static const authz_provider scope_provider = { scope_check, scope_parse };
static const authz_provider claim_provider = { claim_check, claim_parse };

/* ------------------------------------------------------------ Redis -- */

/* After a failed call: the first failure of an outage is logged. */
static void redis_note_down(request_rec *r, const char *why)
{
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            main_server->module_config, &bff_module))->auth;
    long retry = ms->redis_retry_ms != UNSET ? ms->redis_retry_ms
                                             : DEFAULT_REDIS_RETRY;

    if (apr_atomic_cas32(&redis_down, 1, 0) == 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->server, BFFLOGNO(107)
                     "rate limit store unreachable: %s; using the "
                     "BFFRateLimitFallback of each location (API keys kept "
                     "in Redis cannot be verified: 503), retrying every "
                     "%ld ms", why, retry);
    }
}

static void redis_note_up(request_rec *r)
{
    if (apr_atomic_read32(&redis_down)
        && apr_atomic_cas32(&redis_down, 0, 1) == 1) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, r->server, BFFLOGNO(108)
                     "rate limit store %s reachable again",
                     bff_redis_desc(rl_redis));
    }
}

/* NULL and *res on success; otherwise why Redis could not answer. With a
 * lease (l->lease > 1) most requests take a token this child leased
 * earlier, and one in about l->lease calls Redis. */
static const char *redis_take(bff_bucket_result_t *res, request_rec *r,
                              const char *key, const limit_t *l)
{
    const char *err;
    apr_int64_t refund = 0, granted = 0;
    apr_int64_t lease = l->lease > 1 && leases ? l->lease : 1;
    apr_time_t now = apr_time_now();

    if (lease > 1 && bff_lease_use(leases, res, &refund, key, now)) {
        return NULL;
    }
    /* Redis' clock (now_ms < 0): every instance refills by the same time */
    err = bff_bucket_redis_lease(res, &granted, rl_redis, key, strlen(key),
                                 &l->conf, -1, 1, lease, refund, r->pool);
    if (err) {
        /* a refund that may not have arrived is dropped: better a token
         * short until the refill than one too many */
        redis_note_down(r, err);
        return err;
    }
    redis_note_up(r);
    if (granted > 1) {          /* only with lease > 1 */
        bff_lease_keep(leases, key, granted - 1, res, &l->conf,
                       now + apr_time_from_msec(l->lease_ttl_ms));
        bff_lease_held(res, granted - 1, &l->conf);
    }
    return NULL;
}

/* For the metrics: this child's connections and, with probe, a PING
 * (failing fast while Redis is known to be down). */
int bff_auth_redis_state(bff_redis_state_t *out, int probe, request_rec *r)
{
    bff_store_health_t h;
    bff_redis_cmd_t ping;
    redisReply *reply;
    const char *err;

    if (!rl_redis) {
        return 0;
    }
    out->up = 0;
    if (probe) {
        ping = bff_redis_cmd(r->pool, 1, "PING");
        if (!(err = bff_redis_exec(&reply, rl_redis, &ping, 1, r->pool))
            && reply->type == REDIS_REPLY_ERROR) {
            err = bff_redis_reply_error(rl_redis, "PING", reply, r->pool);
        }
        out->up = !err;
        if (err) {
            redis_note_down(r, err);
        }
        else {
            redis_note_up(r);
        }
    }
    bff_redis_health(rl_redis, &h, r->pool);
    out->open = h.conns_open;
    out->busy = h.conns_busy;
    return 1;
}

typedef struct {
    apr_pool_t *p;
    int failed;
} return_ctx_t;

static void lease_return(void *baton, const char *key, apr_int64_t avail,
                         const bff_bucket_conf_t *conf)
{
    return_ctx_t *rc = baton;
    bff_bucket_result_t res;
    apr_int64_t granted;

    /* after one failure the others would fail fast: stop trying */
    if (!rc->failed) {
        rc->failed = bff_bucket_redis_lease(&res, &granted, rl_redis, key,
                                            strlen(key), conf, -1, 0, 0,
                                            avail, rc->p) != NULL;
    }
}

/* Child exit: the tokens of live leases go back to Redis, so a graceful
 * restart or MaxConnectionsPerChild loses none. */
static apr_status_t leases_return(void *data)
{
    return_ctx_t rc;

    (void)data;
    if (!leases || !rl_redis || apr_pool_create(&rc.p, NULL) != APR_SUCCESS) {
        return APR_SUCCESS;
    }
    rc.failed = 0;
    bff_lease_drain(leases, apr_time_now(), lease_return, &rc);
    apr_pool_destroy(rc.p);
    return APR_SUCCESS;
}

/* Looks an API key's entry up in the rate limiter's Redis (see
 * bff_apikey_redis_lookup); an outage is logged as for the buckets. */
static bff_apikey_rc_e redis_apikey(request_rec *r, const char *rkey,
                                    const char **consumer, const char **plan,
                                    const char **why)
{
    bff_apikey_rc_e rc;

    if (!rl_redis) {
        *consumer = *plan = NULL;
        *why = "no Redis";
        return BFF_APIKEY_DOWN;
    }
    rc = bff_apikey_redis_lookup(consumer, plan, why, rl_redis, rkey, r->pool);
    if (rc == BFF_APIKEY_DOWN) {
        redis_note_down(r, *why);
    }
    else {
        redis_note_up(r);
    }
    return rc;
}

/* ------------------------------------------------- shared memory -- */

static const char *shm_take(bff_bucket_result_t *res, request_rec *r,
                            const char *key, const bff_bucket_conf_t *c)
{
    bff_bucket_state_t st;
    unsigned char buf[sizeof(st)];
    unsigned int len = sizeof(buf);
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    apr_status_t rv;

    if (!rl_shm) {
        return "no shared memory";
    }
    if ((rv = apr_global_mutex_lock(rl_mutex)) != APR_SUCCESS) {
        return "mutex";
    }
    memset(&st, 0, sizeof(st));
    rv = rl_shm_provider->retrieve(rl_shm, r->server,
                                   (const unsigned char *)key,
                                   (unsigned int)strlen(key), buf, &len,
                                   r->pool);
    if (rv == APR_SUCCESS && len == sizeof(st)) {
        memcpy(&st, buf, sizeof(st));
    }
    bff_bucket_take(res, &st, c, now_ms, 1);
    memcpy(buf, &st, sizeof(st));
    rv = rl_shm_provider->store(rl_shm, r->server, (const unsigned char *)key,
                                (unsigned int)strlen(key),
                                apr_time_now() + apr_time_from_msec(
                                    res->reset_ms + 1000),
                                buf, sizeof(buf), r->pool);
    apr_global_mutex_unlock(rl_mutex);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r, BFFLOGNO(109)
                      "cannot store a rate limit bucket in shared memory");
    }
    return NULL;
}

/* ------------------------------------------------------- throttling -- */

static int limit_applies(const limit_t *l, const auth_req_t *rq)
{
    const char *plan = rq && rq->plan ? rq->plan : "-";
    int i;

    if (!l->plans) {
        return 1;
    }
    for (i = 0; i < l->plans->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(l->plans, i, const char *), plan)) {
            return 1;
        }
    }
    return 0;
}

/* The bucket key of r under l, or NULL when l does not apply (no user,
 * no such header). The value is hashed, whatever it is: user names,
 * client addresses and header values never appear in Redis key names
 * (SCAN, MONITOR, slow logs), as in the cache's keys. */
static const char *limit_key(request_rec *r, const limit_t *l)
{
    const char *v;
    char hex[65];

    switch (l->key) {
    case KEY_IP:     v = r->useragent_ip; break;
    case KEY_USER:   v = r->user; break;
    case KEY_HEADER: v = apr_table_get(r->headers_in, l->header); break;
    default:         v = NULL; break;
    }
    if (l->key != KEY_GLOBAL) {
        if (!v || !*v) {
            return NULL;
        }
        bff_apikey_hash(hex, v, strlen(v));
        v = hex;
    }
    else {
        v = "*";
    }
    /* the conf is part of the key: a changed limit starts afresh */
    return apr_psprintf(r->pool, "bff:rl:%s:%" APR_INT64_T_FMT "/%"
                        APR_INT64_T_FMT "/%" APR_INT64_T_FMT ":%s", l->name,
                        l->conf.capacity, l->conf.rate_tokens,
                        l->conf.rate_ms, v);
}

typedef struct {
    const limit_t *l;
    bff_bucket_conf_t conf;       /* the one applied (maybe a share) */
    bff_bucket_result_t res;
} taken_t;

static int taken_cmp(const void *a, const void *b)
{
    const taken_t *x = a, *y = b;

    return x->res.remaining < y->res.remaining ? -1
         : x->res.remaining > y->res.remaining;
}

static void set_limit_headers(request_rec *r, taken_t *t, int n)
{
    const char *policy = NULL, *ratelimit = NULL, *retry = NULL;
    apr_int64_t retry_s = 0;
    bff_bucket_headers_t h;
    int i;

    qsort(t, (size_t)n, sizeof(*t), taken_cmp);
    for (i = 0; i < n; i++) {
        bff_bucket_headers(&h, t[i].l->name, &t[i].conf, &t[i].res, r->pool);
        policy = policy ? apr_pstrcat(r->pool, policy, ", ", h.policy, NULL)
                        : h.policy;
        ratelimit = ratelimit ? apr_pstrcat(r->pool, ratelimit, ", ",
                                            h.ratelimit, NULL) : h.ratelimit;
        if (h.retry_after && apr_atoi64(h.retry_after) > retry_s) {
            retry_s = apr_atoi64(h.retry_after);
            retry = h.retry_after;
        }
        if (i == 0) {
            /* the customary trio tells about the tightest bucket */
            apr_table_setn(r->err_headers_out, "X-RateLimit-Limit", h.x_limit);
            apr_table_setn(r->err_headers_out, "X-RateLimit-Remaining",
                           h.x_remaining);
            apr_table_setn(r->err_headers_out, "X-RateLimit-Reset", h.x_reset);
        }
    }
    apr_table_setn(r->err_headers_out, "RateLimit-Policy", policy);
    apr_table_setn(r->err_headers_out, "RateLimit", ratelimit);
    if (retry) {
        apr_table_setn(r->err_headers_out, "Retry-After", retry);
    }
}

static int throttle(request_rec *r, const bff_auth_dir_t *ad)
{
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            main_server->module_config, &bff_module))->auth;
    int fallback = ad->fallback ? ad->fallback : FB_SHM;
    int instances = ms->instances != UNSET ? ms->instances : 1;
    auth_req_t *rq = req_find(r);
    taken_t *t = apr_pcalloc(r->pool, sizeof(*t) * (size_t)ad->limits->nelts);
    const char *refused = NULL;
    int i, n = 0;

    for (i = 0; i < ad->limits->nelts && !refused; i++) {
        const limit_t *l = APR_ARRAY_IDX(ad->limits, i, limit_t *);
        const char *key, *err = "no Redis";
        if (!limit_applies(l, rq) || !(key = limit_key(r, l))) {
            continue;
        }
        t[n].l = l;
        t[n].conf = l->conf;
        if (ms->redis_url) {
            err = redis_take(&t[n].res, r, key, l);
        }
        if (err && ms->redis_url) {
            if (fallback == FB_OPEN) {
                continue;
            }
            if (fallback == FB_CLOSED) {
                apr_table_setn(r->notes, "bff-throttled", "store-down");
                apr_table_setn(r->err_headers_out, "Retry-After", "1");
                add_problem(r, HTTP_SERVICE_UNAVAILABLE, "Service Unavailable",
                            "rate limiting is unavailable", NULL);
                return HTTP_SERVICE_UNAVAILABLE;
            }
            /* each instance keeps its share of the limit */
            bff_bucket_conf_share(&t[n].conf, &l->conf, instances);
            key = apr_psprintf(r->pool, "%s:share%d", key, instances);
        }
        if (err && (err = shm_take(&t[n].res, r, key, &t[n].conf))) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(110)
                          "rate limit %s not applied: %s", l->name, err);
            continue;
        }
        if (!t[n].res.allowed) {
            refused = l->name;
        }
        n++;
    }
    if (n) {
        set_limit_headers(r, t, n);
    }
    if (refused) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, BFFLOGNO(111)
                      "rate limit %s exceeded by %s", refused,
                      r->user ? r->user : r->useragent_ip);
        apr_table_setn(r->notes, "bff-throttled", refused);
        add_problem(r, HTTP_TOO_MANY_REQUESTS, "Too Many Requests",
                    apr_pstrcat(r->pool, "rate limit '", refused,
                                "' exceeded", NULL), NULL);
        return HTTP_TOO_MANY_REQUESTS;
    }
    return DECLINED;
}

/* ------------------------------------------------- identity, fixups -- */

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
                            : bearer_challenge(r, "invalid_token",
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
        return throttle(r, ad);
    }
    return DECLINED;
}

/* --------------------------------------------------------- lifecycle -- */

static int bff_auth_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                               apr_pool_t *ptemp)
{
    rl_limits_seen = 0;
    rl_shm_fallback_seen = 0;
    /* registered here so that the admin's Mutex directive applies */
    return ap_mutex_register(pconf, RL_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
}

static apr_status_t shm_destroy(void *data)
{
    if (rl_shm) {
        rl_shm_provider->destroy(rl_shm, main_server);
        rl_shm = NULL;
    }
    return APR_SUCCESS;
}

static int load_keys(server_rec *s, apr_pool_t *pconf)
{
    server_rec *vs;
    const char *err;
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            s->module_config, &bff_module))->auth;

    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        bff_auth_srv_t *as = sc->auth;
        jwt_srv_t *j = as->jwt;

        if (j && !j->verifier) {
            if (!j->conf.secret_file && !j->conf.pubkey_file
                && !j->conf.jwks_file) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(112)
                             "BFFJWT* settings without a key: set "
                             "BFFJWTKeyFile, BFFJWTSecretFile or BFFJWKSFile");
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            if (!j->conf.algs) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(113)
                             "JWT keys without BFFJWTAlgorithms: name the "
                             "accepted algorithms, e.g. BFFJWTAlgorithms "
                             "RS256");
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            j->conf.issuers = j->issuers;
            j->conf.leeway = j->leeway != UNSET ? j->leeway : 0;
            j->conf.exp_optional = j->exp_optional == 1;
            err = bff_jwt_verifier_create(&j->verifier, &j->conf, pconf);
            if (err) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(114)
                             "cannot load the JWT keys: %s", err);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, vs, BFFLOGNO(115)
                         "JWT verifier ready, %d key(s)",
                         bff_jwt_verifier_nkeys(j->verifier));
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

/* Shared-memory buckets need mod_socache_shmcb: without Redis always,
 * with Redis for the shm fallback (the default). Without the module the
 * limits would not be applied at all. */
static int check_ratelimit_shm(server_rec *s)
{
    bff_auth_srv_t *ms = ((bff_server_conf_t *)ap_get_module_config(
                            s->module_config, &bff_module))->auth;
    bff_dir_conf_t *md = ap_get_module_config(s->lookup_defaults,
                                              &bff_module);
    int fb = md && md->auth ? md->auth->fallback : 0;

    if (!rl_limits_seen
        || ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                              AP_SOCACHE_PROVIDER_VERSION)) {
        return OK;
    }
    if (!ms->redis_url) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(131)
                     "BFFRateLimit without BFFRateLimitRedis keeps its "
                     "buckets in shared memory, which needs "
                     "mod_socache_shmcb: LoadModule socache_shmcb_module");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rl_shm_fallback_seen || fb == 0 || fb == FB_SHM) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(132)
                     "BFFRateLimitFallback shm (the default) needs "
                     "mod_socache_shmcb: LoadModule socache_shmcb_module, or "
                     "set BFFRateLimitFallback open or closed in the main "
                     "server");
        return HTTP_INTERNAL_SERVER_ERROR;
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
        jwt_srv_t *j = as->jwt;
        if (!j || apr_hash_get(seen, &j, sizeof(j))) {
            continue;
        }
        apr_hash_set(seen, apr_pmemdup(ptemp, &j, sizeof(j)), sizeof(j), j);
        if ((!j->issuers || !j->issuers->nelts) && !j->conf.audience) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs, BFFLOGNO(133)
                         "JWT settings of %s:%u check neither the issuer nor "
                         "the audience: any token these keys signed is "
                         "accepted, whatever it was issued for; set "
                         "BFFJWTIssuer and/or BFFJWTAudience",
                         vs->server_hostname ? vs->server_hostname : "*",
                         (unsigned)vs->port);
        }
    }
}

/* Runs at every start and restart, and for `apache2 -t` (and so
 * `apache2ctl graceful`, which runs it first), which stops before
 * post_config: load the keys here in that mode, so that a broken key file
 * fails the test instead of the restart. */
static int bff_auth_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                                 apr_pool_t *ptemp, server_rec *s)
{
    int rc;

    if ((rc = check_ratelimit_shm(s)) != OK) {
        return rc;
    }
    check_jwt_claims(s, ptemp);
    if (ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_CONFIG_TEST) {
        return OK;
    }
    return load_keys(s, pconf);
}

static int bff_auth_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp, server_rec *s)
{
    struct ap_socache_hints hints = { 64, sizeof(bff_bucket_state_t),
                                      apr_time_from_sec(60) };
    apr_status_t rv;
    const char *err;
    int rc;

    main_server = s;
    /* keys are (re)loaded on every start and graceful restart, in the
     * dry run too: a bad key stops httpd before it forks */
    if ((rc = load_keys(s, pconf)) != OK) {
        return rc;
    }
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }

    /* Shared-memory buckets: the store without Redis, and the fallback
     * when it is unreachable. Lost on restart (buckets refill anyway). */
    rl_shm = NULL;
    rl_shm_provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                                         AP_SOCACHE_PROVIDER_VERSION);
    if (!rl_shm_provider) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, BFFLOGNO(117)
                     "mod_socache_shmcb is not loaded: rate limits without "
                     "Redis (and BFFRateLimitFallback shm) are not applied");
        return OK;
    }
    if ((err = rl_shm_provider->create(&rl_shm, NULL, ptemp, pconf))) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(118)
                     "rate limit shared memory: %s", err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    rv = rl_shm_provider->init(rl_shm, RL_SOCACHE_NAME, &hints, s, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(119)
                     "cannot create the rate limit shared memory");
        rl_shm = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, NULL, shm_destroy, apr_pool_cleanup_null);
    rv = ap_global_mutex_create(&rl_mutex, NULL, RL_MUTEX_TYPE, NULL, s,
                                pconf, 0);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(120)
                     "cannot create the rate limit mutex");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static void bff_auth_child_init(apr_pool_t *pchild, server_rec *s)
{
    bff_server_conf_t *sc = ap_get_module_config(s->module_config,
                                                 &bff_module);
    bff_auth_srv_t *as = sc->auth;
    int threads = 1, entries;
    apr_status_t rv;
    const char *err;

    rl_redis = NULL;
    jwt_cache = NULL;
    leases = NULL;
    apr_atomic_set32(&redis_down, 0);
    if (rl_mutex) {
        rv = apr_global_mutex_child_init(&rl_mutex,
                                         apr_global_mutex_lockfile(rl_mutex),
                                         pchild);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(121)
                         "cannot attach the rate limit mutex");
        }
    }

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

    if (as->redis_url) {
        bff_redis_opts_t o;
        long retry = as->redis_retry_ms != UNSET ? as->redis_retry_ms
                                                 : DEFAULT_REDIS_RETRY;

        bff_redis_opts_default(&o);
        o.connect_timeout_ms = as->redis_connect_ms != UNSET
                               ? as->redis_connect_ms : DEFAULT_REDIS_CONNECT;
        o.command_timeout_ms = as->redis_timeout_ms != UNSET
                               ? as->redis_timeout_ms : DEFAULT_REDIS_TIMEOUT;
        /* a connection per worker thread at most, opened on demand */
        ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
        o.pool_max = threads > 1 ? threads : 1;
        o.backoff_min_ms = o.backoff_max_ms = retry;
        o.max_reply = 64 * 1024;
        if ((err = bff_redis_create(&rl_redis, as->redis_url, &o, pchild))) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(123)
                         "rate limit store: %s", err);
            rl_redis = NULL;
        }
        /* registered after the pool: runs before it is destroyed */
        leases = bff_lease_table_create(LEASES_MAX, pchild);
        if (!leases) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(127)
                         "cannot create the token lease mutex");
        }
        else {
            apr_pool_cleanup_register(pchild, NULL, leases_return,
                                      apr_pool_cleanup_null);
        }
    }
}

void bff_auth_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(bff_auth_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(bff_auth_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(bff_auth_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(bff_auth_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_authn(bff_check_authn, NULL, NULL, APR_HOOK_MIDDLE,
                        AP_AUTH_INTERNAL_PER_CONF);
    ap_hook_note_auth_failure(bff_note_auth_failure, NULL, NULL,
                              APR_HOOK_MIDDLE);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "bff-scope",
                              AUTHZ_PROVIDER_VERSION, &scope_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "bff-claim",
                              AUTHZ_PROVIDER_VERSION, &claim_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    /* first among fixups: identity headers are in place, and a throttled
     * request is refused, before any other module acts on the request */
    ap_hook_fixups(bff_auth_fixups, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_insert_error_filter(bff_insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    problem_filter_handle = ap_register_output_filter("BFF_PROBLEM",
        problem_filter, NULL, AP_FTYPE_CONTENT_SET);
}
