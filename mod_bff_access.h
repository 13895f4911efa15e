/*
 * mod_bff: the access phase, private to its four files:
 *
 *   mod_bff_authn.c      authentication: AuthType bff-jwt / bff-apikey in
 *                        check_user_id (r->user is the JWT "sub" or the API
 *                        key's consumer); identity headers in fixups,
 *                        removed from the client's request then set from
 *                        the claims; the access configuration (create,
 *                        merge) and the JWT / API-key directives;
 *   mod_bff_jwks.c       JWT keys fetched by URL (BFFJWKSURL): key sets in
 *                        shared memory, fetched on mod_watchdog;
 *   mod_bff_authz.c      authorization: the authz providers "bff-scope" and
 *                        "bff-claim", so that `Require bff-scope orders:read`
 *                        composes with <RequireAll>, `Require ip` and the
 *                        rest of mod_authz_core;
 *   mod_bff_ratelimit.c  throttling in fixups: token buckets in Redis (one
 *                        Lua call per limit through lib/bff_redis.h),
 *                        falling back to shared memory (socache shmcb) or
 *                        failing open / closed while Redis is unreachable;
 *                        the same Redis holds API keys (BFFAPIKeyRedis).
 *
 * Errors (401, 403, 429, 503) are answered as application/problem+json by
 * mod_bff_send.c (bff_problem_defer), so httpd's own status handling
 * (and an admin's ErrorDocument) still apply. The verification logic is
 * in lib/ (bff_jwt.h, bff_apikey.h, bff_bucket.h, bff_lease.h).
 */
#ifndef MOD_BFF_ACCESS_H
#define MOD_BFF_ACCESS_H

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"

#include "apr_lib.h"
#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_auth.h"
#include "bff_jwt.h"
#include "bff_apikey.h"
#include "bff_bucket.h"
#include "bff_token.h"
#include "bff_http.h"

#define AUTH_JWT    "bff-jwt"
#define AUTH_APIKEY "bff-apikey"

/* BFFRateLimitFallback */
#define FB_SHM    1
#define FB_OPEN   2
#define FB_CLOSED 3

/* ------------------------------------------------------------ config -- */

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

/* BFFJWKSURL: where a key set is fetched and how (mod_bff_jwks.c). */
typedef struct jwks_url_t jwks_url_t;
/* The per-child state of a key set fetched by URL (mod_bff_jwks.c). */
typedef struct jwks_state_t jwks_state_t;

/* The JWT verification settings of one server or <Location>. A virtual
 * host that sets none shares its parent's (and so its verifier); a
 * <Location> that sets any gets its own, completed in post_config by
 * those of its server (the `use` field). */
typedef struct jwt_srv_t jwt_srv_t;
struct jwt_srv_t {
    bff_jwt_conf_t conf;
    int exp_optional;            /* UNSET */
    apr_int64_t leeway;          /* UNSET */
    apr_array_header_t *issuers;
    int any;                     /* a BFFJWT* key/claim directive was seen */
    jwks_url_t *url;             /* BFFJWKSURL; NULL: keys from files */
    bff_jwt_verifier_t *verifier;   /* files: built in post_config */
    jwks_state_t *state;         /* url: the verifier of the fetched keys */
    jwt_srv_t *use;              /* <Location>: the settings completed by
                                    the server's, set in post_config */
};

typedef struct {
    const char *path;
    bff_apikeys_t *keys;         /* loaded in post_config */
} keys_srv_t;

struct bff_auth_srv_t {
    jwt_srv_t *jwt;              /* NULL: no JWT configured */
    apr_array_header_t *dir_jwts;   /* jwt_srv_t *: those of the
                                       <Location>s written in this server */
    keys_srv_t *keys;            /* NULL: no API key file */
    int apikey_redis;            /* BFFAPIKeyRedis; UNSET */
    const char *apikey_prefix;   /* NULL: DEFAULT_APIKEY_PREFIX */
    /* main server only (process-wide resources) */
    int jwt_cache_entries;       /* UNSET; 0 disables */
    apr_int64_t jwt_cache_ttl;
    const char *redis_url;       /* NULL: no Redis */
    long redis_connect_ms, redis_timeout_ms, redis_retry_ms;
    int instances;               /* UNSET */
    /* BFFTokenSource cookie: and query: of this server's sections, for
     * apache2 -t (const char *: "WORD in <Location /x> at FILE:LINE") */
    apr_array_header_t *token_optins;
};

struct bff_auth_dir_t {
    jwt_srv_t *jwt;                  /* NULL: the server's */
    apr_array_header_t *sources;     /* bff_token_src_t; NULL: unset */
    const char *apikey_header;       /* NULL: unset */
    apr_array_header_t *idents;      /* ident_t */
    apr_array_header_t *limits;      /* limit_t * */
    int fallback;                    /* FB_*; 0: unset */
};

typedef struct {
    json_t *claims;              /* JWT payload, or {"sub","plan"} for keys */
    const char *kind;            /* "jwt" / "apikey" */
    const char *plan;            /* API key plan, or NULL */
    const char *denied;          /* what a bff-* authz provider missed */
} auth_req_t;

#define REQ_KEY "bff-auth-req"

/* ------------------------------------------------------------ helpers -- */

static inline bff_auth_srv_t *srv_conf(cmd_parms *cmd)
{
    bff_server_conf_t *sc = ap_get_module_config(cmd->server->module_config,
                                                 &bff_module);
    return sc->auth;
}

/* Per-directory directives belong in <Location> (or the server's default);
 * inside <BFFEndpoint> they would configure a section no request uses. */
static inline const char *dir_only(cmd_parms *cmd, void *dcv)
{
    bff_dir_conf_t *dc = dcv;

    if (dc && dc->epc) {
        return apr_psprintf(cmd->pool, "%s is not allowed inside "
                            "<BFFEndpoint>: put it in a <Location> for the "
                            "endpoint's path", cmd->cmd->name);
    }
    return NULL;
}

static inline const char *srv_only(cmd_parms *cmd)
{
    return ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
}

static inline int header_name_ok(const char *s)
{
    return bff_http_token(s);
}

static inline bff_auth_dir_t *dir_conf(request_rec *r)
{
    bff_dir_conf_t *dc = ap_get_module_config(r->per_dir_config, &bff_module);

    return dc ? dc->auth : NULL;
}

static inline bff_auth_srv_t *req_srv(request_rec *r)
{
    bff_server_conf_t *sc = ap_get_module_config(r->server->module_config,
                                                 &bff_module);
    return sc->auth;
}

static inline auth_req_t *req_get(request_rec *r, int create)
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
static inline auth_req_t *req_find(request_rec *r)
{
    for (; r; r = r->prev ? r->prev : r->main) {
        auth_req_t *rq = req_get(r, 0);
        if (rq && rq->claims) {
            return rq;
        }
    }
    return NULL;
}

/* ------------------------------------------------ across the three -- */

/* mod_bff_ratelimit.c: applies the location's BFFRateLimits to r (DECLINED,
 * or the 429 / 503 status to answer with); the API-key lookup in the
 * rate limiter's Redis (bff_apikey_redis_lookup, with the outage logged). */
int bff_ratelimit_throttle(request_rec *r, const bff_auth_dir_t *ad);
bff_apikey_rc_e bff_ratelimit_apikey(request_rec *r, const char *rkey,
                                     const char **consumer, const char **plan,
                                     const char **why);
/* Whether BFFRateLimitRedis is set (in the main server). */
int bff_ratelimit_has_redis(server_rec *main_server);

/* mod_bff_authn.c: the WWW-Authenticate Bearer challenge (RFC 6750) for
 * r's realm; error, desc and scope may be NULL. */
const char *bff_auth_bearer_challenge(request_rec *r, const char *error,
                                      const char *desc, const char *scope);

void bff_authz_register_hooks(apr_pool_t *p);
void bff_ratelimit_register_hooks(apr_pool_t *p);

/* ------------------------------------------- JWKS by URL (mod_bff_jwks.c) */

/* BFFJWKSURL URL [options]: parses and checks everything (the CA file is
 * read now, as root). NULL or an error naming the directive. */
const char *bff_jwks_parse(jwks_url_t **out, cmd_parms *cmd,
                           const char *args);
/* post_config (and apache2 -t): forgets the key sets of the previous
 * configuration, then each JWT setting with a URL is added. */
void bff_jwks_reset(void);
void bff_jwks_add(jwt_srv_t *j, apr_pool_t *pconf);
/* post_config, real run: shared memory, mutex and the fetcher on
 * mod_watchdog. OK or HTTP_INTERNAL_SERVER_ERROR (logged). */
int bff_jwks_start(server_rec *s, apr_pool_t *pconf, apr_pool_t *ptemp);
void bff_jwks_register_hooks(apr_pool_t *p);
/* The verifier of j's fetched keys for r (held until r ends): OK, or the
 * status to answer while there is none yet (cold-start policy; the
 * problem document and Retry-After are set). */
int bff_jwks_verifier(const bff_jwt_verifier_t **v, request_rec *r,
                      jwt_srv_t *j);
/* A token named a kid the key set lacks: asks the fetcher for an early
 * refresh (rate-limited there). */
void bff_jwks_unknown_kid(jwt_srv_t *j);
/* The URL of j's key set, for messages. */
const char *bff_jwks_url_of(const jwt_srv_t *j);

#endif /* MOD_BFF_ACCESS_H */
