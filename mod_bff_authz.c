/*
 * mod_bff: authorization (see mod_bff_access.h): the authz providers
 * "bff-scope" (every listed scope in the token's scope / scp claim) and
 * "bff-claim" (a claim equal to one of the listed values), for
 * `Require bff-scope ...` and `Require bff-claim ...`.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_request.h"
#include "mod_auth.h"
#include "ap_provider.h"

#include "mod_bff_access.h"

APLOG_USE_MODULE(bff);

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
    bff_problem_defer(r, HTTP_FORBIDDEN, "Forbidden",
                apr_pstrcat(r->pool, "insufficient scope: ", what, NULL),
                type && !strcasecmp(type, AUTH_JWT)
                ? bff_auth_bearer_challenge(r, "insufficient_scope", NULL, scope)
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

void bff_authz_register_hooks(apr_pool_t *p)
{
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "bff-scope",
                              AUTHZ_PROVIDER_VERSION, &scope_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "bff-claim",
                              AUTHZ_PROVIDER_VERSION, &claim_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
}
