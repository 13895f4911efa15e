/*
 * mod_bff: a Backend-for-Frontend gateway for Apache httpd 2.4.
 *
 * This file holds the module record, the configuration (the <BFFEndpoint>
 * section and its directives) and the lifecycle hooks. The aggregation
 * handler is in mod_bff_aggregate.c; pure logic is under lib/.
 */
#include <pthread.h>
#include <signal.h>
#include <errno.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "mpm_common.h"

#include "apr_lib.h"
#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_aggregate.h"
#include "mod_bff_profile.h"
#include "mod_bff_validate.h"
#include "mod_bff_cors.h"
#include "mod_bff_obs.h"
#include "mod_bff_resilience.h"
#include "mod_bff_auth.h"
#include "mod_bff_cache.h"
#include "mod_bff_overload.h"
#include "mod_bff_shared.h"
#include "mod_bff_sse.h"
#include "bff_cache.h"
#include "bff_fetch.h"
#include "bff_futex.h"
#include "bff_opts.h"
#include "bff_tls.h"


/* Client headers that must never be forwarded as configured: hop-by-hop
 * (RFC 9110 7.6.1), framing, and what the gateway sets itself. */
static const char *const fwd_header_denied[] = {
    "Host", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
    "Content-Length", "Content-Type", "Expect", "Accept",
    "X-Request-ID", "traceparent", "tracestate", NULL
};

/* ------------------------------------------------------------ config -- */

static void *create_server_conf(apr_pool_t *p, server_rec *s)
{
    bff_server_conf_t *sc = apr_pcalloc(p, sizeof(*sc));

    sc->endpoints = apr_array_make(p, 4, sizeof(bff_ep_conf_t *));
    sc->timeout_ms = UNSET;
    sc->connect_timeout_ms = UNSET;
    sc->fwd_headers = apr_array_make(p, 2, sizeof(const char *));
    sc->fwd_query = apr_array_make(p, 2, sizeof(const char *));
    sc->cache = bff_cache_conf_create(p);
    sc->auth = bff_auth_create_srv(p);
    sc->res = bff_res_conf_create(p);
    sc->request_id = UNSET;
    sc->events = bff_events_conf_create(p);
    sc->overload = bff_overload_conf_create(p);
    sc->sse = bff_sse_conf_create(p);
    sc->tls_off = apr_array_make(p, 1, sizeof(const char *));
    return sc;
}

static void *merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    bff_server_conf_t *base = basev, *add = addv;
    bff_server_conf_t *sc = apr_pcalloc(p, sizeof(*sc));

    /* a virtual host sees its own endpoints first, then the main server's */
    sc->endpoints = apr_array_append(p, add->endpoints, base->endpoints);
    sc->timeout_ms = add->timeout_ms != UNSET ? add->timeout_ms : base->timeout_ms;
    sc->connect_timeout_ms = add->connect_timeout_ms != UNSET
                             ? add->connect_timeout_ms : base->connect_timeout_ms;
    sc->max_body = add->max_body ? add->max_body : base->max_body;
    sc->max_depth = add->max_depth ? add->max_depth : base->max_depth;
    sc->max_backends = add->max_backends ? add->max_backends : base->max_backends;
    sc->backend_conns = add->backend_conns ? add->backend_conns
                                           : base->backend_conns;
    sc->http_client = add->http_client ? add->http_client : base->http_client;
    sc->backend_pool = add->backend_pool ? add->backend_pool
                                         : base->backend_pool;
    sc->backend_max_origin = add->backend_max_origin
                             ? add->backend_max_origin
                             : base->backend_max_origin;
    sc->backend_idle_ms = add->backend_idle_ms ? add->backend_idle_ms
                                               : base->backend_idle_ms;
    sc->fwd_headers = apr_array_append(p, base->fwd_headers, add->fwd_headers);
    sc->fwd_query = apr_array_append(p, base->fwd_query, add->fwd_query);
    sc->cache = bff_cache_conf_merge(p, base->cache, add->cache);
    sc->auth = bff_auth_merge_srv(p, base->auth, add->auth);
    sc->res = bff_res_conf_merge(p, base->res, add->res);
    sc->request_id = add->request_id != UNSET ? add->request_id
                                              : base->request_id;
    sc->events = base->events;         /* main server only */
    sc->overload = base->overload;     /* main server only */
    sc->sse = base->sse;               /* main server only */
    sc->metrics_slots = add->metrics_slots ? add->metrics_slots
                                           : base->metrics_slots;
    sc->tls = add->tls ? add->tls : base->tls;
    sc->tls_off = add->tls_off;        /* each server reports its own */
    return sc;
}

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    bff_dir_conf_t *dc = apr_pcalloc(p, sizeof(*dc));

    dc->auth = bff_auth_create_dir(p);
    dc->cors = bff_cors_dir_create(p);
    dc->sse = bff_sse_dir_create(p);
    return dc;
}

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    bff_dir_conf_t *base = basev, *add = addv;
    bff_dir_conf_t *dc = apr_pcalloc(p, sizeof(*dc));

    dc->epc = add->epc;
    dc->auth = bff_auth_merge_dir(p, base->auth, add->auth);
    dc->cors = bff_cors_dir_merge(p, base->cors, add->cors);
    dc->purge_scope = add->purge_scope ? add->purge_scope : base->purge_scope;
    dc->valid = bff_valid_conf_merge(p, base->valid, add->valid);
    dc->sse = bff_sse_dir_merge(p, base->sse, add->sse);
    return dc;
}

/* -------------------------------------------------------- directives -- */

static bff_server_conf_t *server_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &bff_module);
}

/* Every request note mod_bff sets (r->notes): configtest checks names
 * that configurations refer to (BFFCacheVary note:NAME) against it. */
static const char *const notes_set[] = {
    "bff-auth", "bff-auth-error", "bff-authz-denied", "bff-cache",
    "bff-client", "bff-completed", "bff-endpoint", "bff-fields", "bff-plan",
    "bff-request-id", "bff-span-id", "bff-subject", "bff-throttled",
    "bff-trace-id", NULL
};

int bff_note_known(const char *name)
{
    int i;

    for (i = 0; notes_set[i]; i++) {
        if (!strcmp(notes_set[i], name)) {
            return 1;
        }
    }
    return 0;
}

const char *bff_need_curl(cmd_parms *cmd, const char *what)
{
    if (bff_fetch_has_curl()) {
        return NULL;
    }
    return apr_psprintf(cmd->pool, "%s needs libcurl, and this mod_bff was "
                        "built without it (configure --without-curl)", what);
}

const char *bff_in_endpoint_only(cmd_parms *cmd, void *dcv)
{
    bff_dir_conf_t *dc = dcv;

    if (!dc || !dc->epc) {
        return apr_psprintf(cmd->pool, "%s is only allowed inside "
                            "<BFFEndpoint>", cmd->cmd->name);
    }
    return NULL;
}

static const char *method_check(cmd_parms *cmd, const char *m)
{
    const char *s;

    if (!*m) {
        return "missing method";
    }
    for (s = m; *s; s++) {
        if (!apr_isupper(*s)) {
            return apr_psprintf(cmd->pool, "'%s' is not an HTTP method "
                                "(upper case, e.g. GET or POST)", m);
        }
    }
    return NULL;
}

/* Deny and allow paths start with a backend's name (they apply to the
 * merged document, before any reshaping): a misspelt name would deny
 * nothing, or keep nothing, without a word. */
static const char *check_shape_roots(cmd_parms *cmd,
                                     const ap_directive_t *first,
                                     const bff_endpoint_t *ep)
{
    const ap_directive_t *d;
    const char *args, *path, *root;
    apr_array_header_t *names;
    int i;

    for (d = first; d; d = d->next) {
        if (strcasecmp(d->directive, "BFFDeny")
            && strcasecmp(d->directive, "BFFAllow")) {
            continue;
        }
        args = d->args;
        while (*(path = ap_getword_conf(cmd->temp_pool, &args))) {
            root = bff_shape_path_root(path, cmd->temp_pool);
            if (bff_endpoint_backend(ep, root) >= 0) {
                continue;
            }
            names = apr_array_make(cmd->temp_pool, ep->backends->nelts,
                                   sizeof(const char *));
            for (i = 0; i < ep->backends->nelts; i++) {
                APR_ARRAY_PUSH(names, const char *) =
                    APR_ARRAY_IDX(ep->backends, i, bff_backend_t *)->name;
            }
            cmd->err_directive = d;
            return apr_psprintf(cmd->pool, "%s %s: '%s' is not a backend of "
                                "this endpoint (its backends: %s)",
                                d->directive, path, root,
                                apr_array_pstrcat(cmd->temp_pool, names, ' '));
        }
    }
    return NULL;
}

/* Hashes a section's directives, names and arguments (variables already
 * expanded), nested ones too, each length-prefixed. */
static void hash_directives(bff_sha256_t *h, const ap_directive_t *d)
{
    for (; d; d = d->next) {
        const char *parts[2];
        int i;

        parts[0] = d->directive;
        parts[1] = d->args ? d->args : "";
        for (i = 0; i < 2; i++) {
            char num[24];
            int n = apr_snprintf(num, sizeof(num), "%" APR_SIZE_T_FMT ":",
                                 strlen(parts[i]));
            bff_sha256_update(h, num, (apr_size_t)n);
            bff_sha256_update(h, parts[i], strlen(parts[i]));
        }
        bff_sha256_update(h, "{", 1);
        hash_directives(h, d->first_child);
        bff_sha256_update(h, "}", 1);
    }
}

static const char *section_fingerprint(const cmd_parms *cmd,
                                       const char *method,
                                       const char *pattern)
{
    bff_sha256_t h;
    unsigned char md[32];

    bff_sha256_init(&h);
    bff_sha256_update(&h, method, strlen(method) + 1);
    bff_sha256_update(&h, pattern, strlen(pattern) + 1);
    hash_directives(&h, cmd->directive->first_child);
    bff_sha256_final(md, &h);
    return bff_hex(md, 16, cmd->pool);
}

/* Gives each backend its TLS settings: its own BFFBackendTLS, else the
 * endpoint's "BFFBackendTLS *" (the server's is applied in post_config,
 * where the whole configuration is known). A name that is no backend
 * would leave the settings unused without a word. */
static const char *apply_backend_tls(cmd_parms *cmd,
                                     const ap_directive_t *first,
                                     bff_ep_conf_t *epc)
{
    const bff_tls_t *all = apr_hash_get(epc->tls, "*", 1);
    const ap_directive_t *d;
    int i;

    for (d = first; d; d = d->next) {
        const char *args = d->args, *name;
        if (strcasecmp(d->directive, "BFFBackendTLS")) {
            continue;
        }
        name = ap_getword_conf(cmd->temp_pool, &args);
        if (strcmp(name, "*") && bff_endpoint_backend(epc->ep, name) < 0) {
            cmd->err_directive = d;
            return apr_psprintf(cmd->pool, "BFFBackendTLS %s: not a backend "
                                "of this endpoint", name);
        }
    }
    for (i = 0; i < epc->ep->backends->nelts; i++) {
        bff_backend_t *be = APR_ARRAY_IDX(epc->ep->backends, i,
                                          bff_backend_t *);
        const bff_tls_t *own = apr_hash_get(epc->tls, be->name,
                                            APR_HASH_KEY_STRING);
        be->tls = own ? own : all;
    }
    return NULL;
}

static const char *cmd_endpoint(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    bff_server_conf_t *sc = server_conf(cmd);
    const char *endp, *args, *method, *pattern;
    const ap_directive_t *d, *block;
    ap_conf_vector_t *section;
    bff_dir_conf_t *dc;
    bff_ep_conf_t *epc;
    int i;

    if (err) {
        return err;
    }
    endp = ap_strrchr_c(arg, '>');
    if (!endp) {
        return "<BFFEndpoint> directive missing closing '>'";
    }
    args = apr_pstrmemdup(cmd->temp_pool, arg, (apr_size_t)(endp - arg));
    method = ap_getword_conf(cmd->pool, &args);
    pattern = ap_getword_conf(cmd->pool, &args);
    if (!*pattern || *ap_getword_conf(cmd->temp_pool, &args)) {
        return "<BFFEndpoint> takes a method and a path: "
               "<BFFEndpoint GET /api/profile/{user_id:int}>";
    }
    if ((err = method_check(cmd, method)) != NULL) {
        return apr_pstrcat(cmd->pool, "<BFFEndpoint>: ", err, NULL);
    }
    if (strcmp(method, "GET") && strcmp(method, "POST")
        && strcmp(method, "PUT") && strcmp(method, "PATCH")) {
        return apr_psprintf(cmd->pool, "<BFFEndpoint %s %s>: GET (HEAD is "
                            "answered too), POST, PUT or PATCH expected",
                            method, pattern);
    }

    epc = apr_pcalloc(cmd->pool, sizeof(*epc));
    epc->ep = bff_endpoint_create(method, pattern, cmd->pool);
    epc->server = cmd->server;
    epc->ep->file = cmd->directive->filename;
    epc->ep->line = cmd->directive->line_num;
    epc->fingerprint = section_fingerprint(cmd, method, pattern);
    epc->timeout_ms = UNSET;
    epc->connect_timeout_ms = UNSET;
    epc->fwd_headers = apr_array_make(cmd->pool, 2, sizeof(const char *));
    epc->fwd_query = apr_array_make(cmd->pool, 2, sizeof(const char *));
    epc->tls = apr_hash_make(cmd->pool);
    if ((err = bff_route_compile(&epc->ep->route, pattern, cmd->pool)) != NULL) {
        return apr_psprintf(cmd->pool, "<BFFEndpoint %s %s>: %s", method,
                            pattern, err);
    }

    /* Other modules' directives would be applied to a configuration that is
     * never used: refuse them instead of ignoring them silently. */
    for (d = cmd->directive->first_child; d; d = d->next) {
        if (strncasecmp(d->directive, "BFF", 3)) {
            cmd->err_directive = d;
            return apr_psprintf(cmd->pool, "%s is not allowed inside "
                "<BFFEndpoint>: only BFF* directives are (put access control "
                "in a <Location> for the endpoint's path)", d->directive);
        }
    }

    block = cmd->directive->first_child;   /* ap_walk_config moves it */
    section = ap_create_per_dir_config(cmd->pool);
    dc = create_dir_conf(cmd->pool, NULL);
    dc->epc = epc;
    ap_set_module_config(section, &bff_module, dc);
    if ((err = ap_walk_config(cmd->directive->first_child, cmd, section))) {
        return err;
    }

    if (sc->max_backends) {
        epc->ep->max_backends = sc->max_backends;
    }
    if ((err = bff_endpoint_finalize(epc->ep, cmd->pool)) != NULL
        || (err = bff_cache_ep_finalize(epc, cmd->pool)) != NULL
        || (err = bff_profile_ep_finalize(epc, cmd->pool)) != NULL) {
        return apr_psprintf(cmd->pool, "<BFFEndpoint %s %s>: %s", method,
                            pattern, err);
    }
    if ((err = check_shape_roots(cmd, block, epc->ep)) != NULL
        || (err = apply_backend_tls(cmd, block, epc)) != NULL) {
        return err;
    }
    for (i = 0; i < sc->endpoints->nelts; i++) {
        bff_ep_conf_t *o = APR_ARRAY_IDX(sc->endpoints, i, bff_ep_conf_t *);
        if (!strcmp(o->ep->method, method) && !strcmp(o->ep->pattern, pattern)) {
            return apr_psprintf(cmd->pool, "<BFFEndpoint %s %s> is already "
                                "defined at %s:%d", method, pattern,
                                o->ep->file, o->ep->line);
        }
    }
    APR_ARRAY_PUSH(sc->endpoints, bff_ep_conf_t *) = epc;
    return NULL;
}

static const char *cmd_backend(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = bff_in_endpoint_only(cmd, dc);
    bff_backend_t *be;
    const char *url, *opt;

    if (err) {
        return err;
    }
    be = apr_pcalloc(cmd->pool, sizeof(*be));
    be->name = ap_getword_conf(cmd->pool, &arg);
    be->method = ap_getword_conf(cmd->pool, &arg);
    url = ap_getword_conf(cmd->pool, &arg);
    if (!*be->name || !*be->method || !*url) {
        return "BFFBackend takes a name, a method and a URL, then options: "
               "BFFBackend user GET http://127.0.0.1:8001/users/{user_id} required";
    }
    if ((err = method_check(cmd, be->method)) != NULL) {
        return apr_psprintf(cmd->pool, "BFFBackend %s: %s", be->name, err);
    }
    if ((err = bff_tpl_compile(&be->url, url, BFF_TPL_URL, cmd->pool))) {
        return apr_psprintf(cmd->pool, "BFFBackend %s: %s", be->name, err);
    }
    if (!strncasecmp(url, "https://", 8)
        && (err = bff_need_curl(cmd, "an https:// backend"))) {
        return apr_psprintf(cmd->pool, "BFFBackend %s: %s", be->name, err);
    }
    while (*(opt = ap_getword_conf(cmd->temp_pool, &arg))) {
        if ((err = bff_backend_option(be, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFBackend %s: %s", be->name, err);
        }
    }
    APR_ARRAY_PUSH(dc->epc->ep->backends, bff_backend_t *) = be;
    return NULL;
}

/* BFFBackendTLS NAME|* option=value...: inside <BFFEndpoint> for one
 * backend (or * for all of them), at server level (*) for every backend
 * of the server's endpoints that has none. The files are read here, as
 * root, at every start and restart and for apache2 -t. */
static const char *cmd_backend_tls(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    bff_server_conf_t *sc = server_conf(cmd);
    int in_ep = dc && dc->epc;
    const char *name = ap_getword_conf(cmd->pool, &arg);
    const char *opt, *err;
    bff_tls_t *t;
    int n = 0;

    if (!*name) {
        return "BFFBackendTLS takes a backend name (or *) and options: "
               "BFFBackendTLS user ca=/etc/apache2/bff/ca.pem";
    }
    if (!in_ep && strcmp(name, "*")) {
        return apr_psprintf(cmd->pool, "BFFBackendTLS %s: outside "
                            "<BFFEndpoint> only * (every backend of the "
                            "server) is allowed", name);
    }
    if ((err = bff_need_curl(cmd, "BFFBackendTLS"))) {
        return apr_psprintf(cmd->pool, "BFFBackendTLS %s: %s", name, err);
    }
    if (in_ep ? apr_hash_get(dc->epc->tls, name, APR_HASH_KEY_STRING) != NULL
              : sc->tls != NULL) {
        return apr_psprintf(cmd->pool, "BFFBackendTLS %s: given twice", name);
    }
    t = bff_tls_create(cmd->pool);
    while (*(opt = ap_getword_conf(cmd->temp_pool, &arg))) {
        if ((err = bff_tls_option(t, opt, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFBackendTLS %s: %s", name, err);
        }
        n++;
    }
    if (!n) {
        return apr_psprintf(cmd->pool, "BFFBackendTLS %s: no option (ca=, "
                            "ca-path=, cert=, key=, key-pass-file=, crl=, "
                            "verify=, min-tls=, server-name=)", name);
    }
    if ((err = bff_tls_load(t, cmd->pool))) {
        return apr_psprintf(cmd->pool, "BFFBackendTLS %s: %s", name, err);
    }
    if (!t->verify) {
        APR_ARRAY_PUSH(sc->tls_off, const char *) = apr_psprintf(cmd->pool,
            "BFFBackendTLS %s at %s:%d", name, cmd->directive->filename,
            cmd->directive->line_num);
    }
    if (in_ep) {
        apr_hash_set(dc->epc->tls, name, APR_HASH_KEY_STRING, t);
    }
    else {
        sc->tls = t;
    }
    return NULL;
}

static const char *cmd_shape(cmd_parms *cmd, void *dcv, const char *path)
{
    bff_dir_conf_t *dc = dcv;
    const char *err = bff_in_endpoint_only(cmd, dc);

    if (!err) {
        err = bff_shape_add(dc->epc->ep->shape, path, cmd->info != NULL,
                            cmd->pool);
    }
    if (!err && !cmd->info) {
        bff_profile_note_deny(dc->epc, path, cmd->pool);
    }
    return err ? apr_psprintf(cmd->pool, "%s %s: %s", cmd->cmd->name, path, err)
               : NULL;
}

static const char *cmd_duration(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    bff_server_conf_t *sc = server_conf(cmd);
    int connect = cmd->info != NULL;
    long ms;
    const char *err = bff_parse_duration_ms(&ms, arg, cmd->temp_pool);

    if (!err && ms <= 0) {
        err = "must be greater than 0";
    }
    if (err) {
        return apr_psprintf(cmd->pool, "%s %s: %s", cmd->cmd->name, arg, err);
    }
    if (dc && dc->epc) {
        *(connect ? &dc->epc->connect_timeout_ms : &dc->epc->timeout_ms) = ms;
    }
    else {
        *(connect ? &sc->connect_timeout_ms : &sc->timeout_ms) = ms;
    }
    return NULL;
}

static const char *cmd_max_size(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_dir_conf_t *dc = dcv;
    apr_size_t n;
    const char *err = bff_parse_size(&n, arg, cmd->temp_pool);

    if (!err && n == 0) {
        err = "must be greater than 0";
    }
    if (err) {
        return apr_psprintf(cmd->pool, "BFFMaxResponseSize %s: %s", arg, err);
    }
    *(dc && dc->epc ? &dc->epc->max_body : &server_conf(cmd)->max_body) = n;
    return NULL;
}

static const char *parse_int(cmd_parms *cmd, int *out, const char *arg,
                             int lo, int hi)
{
    char *end;
    long v = strtol(arg, &end, 10);

    if (!*arg || *end || v < lo || v > hi) {
        return apr_psprintf(cmd->pool, "%s %s: expected a number from %d to "
                            "%d", cmd->cmd->name, arg, lo, hi);
    }
    *out = (int)v;
    return NULL;
}

static const char *cmd_max_depth(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_dir_conf_t *dc = dcv;

    return parse_int(cmd, dc && dc->epc ? &dc->epc->max_depth
                                        : &server_conf(cmd)->max_depth,
                     arg, 1, 1024);
}

static const char *cmd_max_backends(cmd_parms *cmd, void *dcv, const char *arg)
{
    bff_dir_conf_t *dc = dcv;

    if (dc && dc->epc) {
        return parse_int(cmd, &dc->epc->ep->max_backends, arg, 1, 256);
    }
    return parse_int(cmd, &server_conf(cmd)->max_backends, arg, 1, 256);
}

static const char *cmd_backend_conns(cmd_parms *cmd, void *dcv, const char *arg)
{
    /* the client pool belongs to the child process, not to a vhost */
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    return err ? err : parse_int(cmd, &server_conf(cmd)->backend_conns, arg,
                                 1, 100000);
}

typedef struct {
    long max_origin;
    int unbounded;
    long idle_ms;
} pool_opts_t;

static const bff_opt_t pool_opts[] = {
    BFF_OPT_NUM("max-per-origin", BFF_OPT_LONG, pool_opts_t, max_origin,
                1, 100000),
    BFF_OPT_SET("unbounded", pool_opts_t, unbounded, 1),
    BFF_OPT_NUM("idle-timeout", BFF_OPT_MS, pool_opts_t, idle_ms, 1000,
                3600000),
    BFF_OPT_END
};

/* BFFBackendPool child|thread [max-per-origin=N|unbounded]
 *                [idle-timeout=DURATION] */
static const char *cmd_backend_pool(cmd_parms *cmd, void *dcv,
                                    const char *args)
{
    bff_server_conf_t *sc = server_conf(cmd);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *w = ap_getword_conf(cmd->temp_pool, &args);
    pool_opts_t o = { 0, 0, 0 };

    if (err) {
        return err;
    }
    if (!strcasecmp(w, "child")) {
        sc->backend_pool = BFF_POOL_CHILD;
    }
    else if (!strcasecmp(w, "thread")) {
        sc->backend_pool = BFF_POOL_THREAD;
    }
    else {
        return apr_psprintf(cmd->pool, "BFFBackendPool: '%s': expected "
                            "child or thread", w);
    }
    while (*(w = ap_getword_conf(cmd->temp_pool, &args))) {
        if ((err = bff_opt_parse(pool_opts, &o, w, cmd->pool))) {
            return apr_psprintf(cmd->pool, "BFFBackendPool: %s", err);
        }
    }
    if (o.unbounded && o.max_origin) {
        return "BFFBackendPool: max-per-origin= and unbounded exclude "
               "each other";
    }
    sc->backend_max_origin = o.unbounded ? -1 : o.max_origin;
    sc->backend_idle_ms = o.idle_ms;
    return NULL;
}

static const char *cmd_client(cmd_parms *cmd, void *dcv, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "native")) {
        server_conf(cmd)->http_client = BFF_HTTP_CLIENT_NATIVE;
    }
    else if (!strcasecmp(arg, "curl")) {
        if ((err = bff_need_curl(cmd, "the curl client")) != NULL) {
            return apr_pstrcat(cmd->pool, "BFFHTTPClient curl: ", err, NULL);
        }
        server_conf(cmd)->http_client = BFF_HTTP_CLIENT_CURL;
    }
    else {
        return apr_psprintf(cmd->pool, "BFFHTTPClient %s: expected native "
                            "or curl", arg);
    }
    return NULL;
}

static const char *cmd_fwd_header(cmd_parms *cmd, void *dcv, const char *name)
{
    bff_dir_conf_t *dc = dcv;
    int i;

    if (!bff_http_token(name)) {
        return apr_psprintf(cmd->pool, "BFFForwardHeader %s: not a "
                            "header name", name);
    }
    for (i = 0; fwd_header_denied[i]; i++) {
        if (!strcasecmp(name, fwd_header_denied[i])) {
            return apr_psprintf(cmd->pool, "BFFForwardHeader %s: this header "
                                "is never forwarded (hop-by-hop, framing, or "
                                "set by mod_bff itself)", name);
        }
    }
    APR_ARRAY_PUSH(dc && dc->epc ? dc->epc->fwd_headers
                                 : server_conf(cmd)->fwd_headers,
                   const char *) = name;
    return NULL;
}

static const char *cmd_fwd_query(cmd_parms *cmd, void *dcv, const char *name)
{
    bff_dir_conf_t *dc = dcv;
    const char *s;

    for (s = name; *s; s++) {
        if (!apr_isalnum(*s) && !strchr("-_.~[]", *s)) {
            return apr_psprintf(cmd->pool, "BFFForwardQuery %s: not a plain "
                                "parameter name", name);
        }
    }
    APR_ARRAY_PUSH(dc && dc->epc ? dc->epc->fwd_query
                                 : server_conf(cmd)->fwd_query,
                   const char *) = name;
    return NULL;
}

static const command_rec bff_cmds[] = {
    AP_INIT_RAW_ARGS("<BFFEndpoint", cmd_endpoint, NULL, RSRC_CONF,
        "An aggregated endpoint: <BFFEndpoint GET /path/{param:type}> ... "
        "</BFFEndpoint>"),
    AP_INIT_RAW_ARGS("BFFBackend", cmd_backend, NULL, RSRC_CONF,
        "A backend call: name METHOD URL-template [required|optional] "
        "[default=JSON] [body=JSON-template] [timeout=DURATION] "
        "[max-size=SIZE]"),
    AP_INIT_RAW_ARGS("BFFBackendTLS", cmd_backend_tls, NULL, RSRC_CONF,
        "TLS of https:// backends: NAME|* [ca=FILE] [ca-path=DIR] "
        "[cert=FILE key=FILE] [verify=on|off] [min-tls=1.2|1.3] "
        "[server-name=HOST]"),
    AP_INIT_ITERATE("BFFDeny", cmd_shape, NULL, RSRC_CONF,
        "Dotted paths removed from the answer, e.g. user.password_hash"),
    AP_INIT_ITERATE("BFFAllow", cmd_shape, (void *)1, RSRC_CONF,
        "Dotted paths kept in the answer (everything else is dropped)"),
    AP_INIT_TAKE1("BFFTimeout", cmd_duration, NULL, RSRC_CONF,
        "Deadline for a whole endpoint, e.g. 2s or 800ms (default 5s)"),
    AP_INIT_TAKE1("BFFConnectTimeout", cmd_duration, (void *)1, RSRC_CONF,
        "TCP/TLS connect timeout for backend calls (default 1s)"),
    AP_INIT_TAKE1("BFFMaxResponseSize", cmd_max_size, NULL, RSRC_CONF,
        "Largest accepted backend reply, e.g. 1M (default 1M)"),
    AP_INIT_TAKE1("BFFMaxJSONDepth", cmd_max_depth, NULL, RSRC_CONF,
        "Deepest JSON nesting accepted in a backend reply (default 64)"),
    AP_INIT_TAKE1("BFFMaxBackends", cmd_max_backends, NULL, RSRC_CONF,
        "Most backends one endpoint may define (default 32)"),
    AP_INIT_TAKE1("BFFBackendConnections", cmd_backend_conns, NULL, RSRC_CONF,
        "Idle keep-alive backend connections kept per pool (default 1024 "
        "per child, 16 per thread with BFFBackendPool thread)"),
    AP_INIT_RAW_ARGS("BFFBackendPool", cmd_backend_pool, NULL, RSRC_CONF,
        "Whose backend connections are: child (one pool per child shared "
        "by its threads; the default) or thread, [max-per-origin=N] "
        "(default 256 with child) or [unbounded], [idle-timeout=DURATION] "
        "(default 30s)"),
    AP_INIT_TAKE1("BFFHTTPClient", cmd_client, NULL, RSRC_CONF,
        "Backend HTTP client: native (own HTTP/1.1 client, libcurl for "
        "https; the default) or curl (libcurl for everything)"),
    AP_INIT_ITERATE("BFFForwardHeader", cmd_fwd_header, NULL, RSRC_CONF,
        "Client request headers passed on to every backend call"),
    AP_INIT_ITERATE("BFFForwardQuery", cmd_fwd_query, NULL, RSRC_CONF,
        "Client query parameters appended to every backend GET"),
    /* the response cache (mod_bff_cache.c) */
    AP_INIT_TAKE1("BFFCacheStore", bff_cache_cmd_server, (void *)BFF_CC_STORE, RSRC_CONF,
        "Where cached answers live: redis://[:password@]host:port/db, "
        "memcache://host:port[,host:port...], shmcb[:path(size)] or off"),
    AP_INIT_TAKE1("BFFCacheFallback", bff_cache_cmd_server, (void *)BFF_CC_FALLBACK, RSRC_CONF,
        "Shared memory cache used while the store fails: shmcb[:path(size)] "
        "or off"),
    AP_INIT_TAKE1("BFFCachePrefix", bff_cache_cmd_server, (void *)BFF_CC_PREFIX, RSRC_CONF,
        "Prefix of every cache key (default bff:)"),
    AP_INIT_TAKE1("BFFCacheConnectTimeout", bff_cache_cmd_server, (void *)BFF_CC_CONNECT,
        RSRC_CONF, "Store connect timeout (default 50ms)"),
    AP_INIT_TAKE1("BFFCacheTimeout", bff_cache_cmd_server, (void *)BFF_CC_COMMAND, RSRC_CONF,
        "Store command timeout (default 50ms)"),
    AP_INIT_TAKE1("BFFCachePoolSize", bff_cache_cmd_server, (void *)BFF_CC_POOL, RSRC_CONF,
        "Store connections per child process (default 16)"),
    AP_INIT_TAKE1("BFFCacheNearTTL", bff_cache_cmd_server, (void *)BFF_CC_NEAR, RSRC_CONF,
        "How long hot answers are also kept in local shared memory "
        "(default 0: off)"),
    AP_INIT_TAKE1("BFFCacheMaxEntrySize", bff_cache_cmd_server, (void *)BFF_CC_MAXENTRY,
        RSRC_CONF, "Largest answer stored (default 512k)"),
    AP_INIT_TAKE1("BFFCacheTTL", bff_cache_cmd_endpoint, (void *)BFF_CE_TTL, RSRC_CONF,
        "Caches the endpoint's answers for this long, e.g. 30s"),
    AP_INIT_TAKE1("BFFCacheStaleIfError", bff_cache_cmd_endpoint, (void *)BFF_CE_STALE,
        RSRC_CONF, "How long an expired answer may stand in for an error"),
    AP_INIT_TAKE1("BFFCachePartialTTL", bff_cache_cmd_endpoint, (void *)BFF_CE_PARTIAL,
        RSRC_CONF, "TTL of partial answers (default 0: not stored)"),
    AP_INIT_TAKE1("BFFCacheLockWait", bff_cache_cmd_endpoint, (void *)BFF_CE_LOCK,
        RSRC_CONF, "How long a miss waits for a concurrent refresh "
        "(default: the endpoint deadline)"),
    AP_INIT_TAKE1("BFFCacheClientNoCache", bff_cache_cmd_endpoint, (void *)BFF_CE_NOCACHE,
        RSRC_CONF, "on: a client's Cache-Control: no-cache bypasses the cache"),
    AP_INIT_TAKE1("BFFCacheControl", bff_cache_cmd_endpoint, (void *)BFF_CE_CONTROL,
        RSRC_CONF, "Cache-Control header of the endpoint's complete answers"),
    AP_INIT_TAKE1("BFFCacheShared", bff_cache_cmd_endpoint, (void *)BFF_CE_SHARED,
        RSRC_CONF, "on: one stored answer serves every identity (default off: "
        "authenticated requests get answers stored for their identity)"),
    AP_INIT_TAKE1("BFFCachePurgeScope", bff_cache_cmd_purge_scope, NULL,
        ACCESS_CONF, "What a purge location purges: vhost (default, its own "
        "virtual host) or server (every virtual host)"),
    AP_INIT_ITERATE("BFFCacheVary", bff_cache_cmd_endpoint_list, (void *)BFF_CE_VARY,
        RSRC_CONF, "Identity inputs of the key: header:NAME, note:NAME, "
        "env:NAME"),
    AP_INIT_ITERATE("BFFCacheKeyQuery", bff_cache_cmd_endpoint_list, (void *)BFF_CE_KEYQUERY,
        RSRC_CONF, "Query parameters that are part of the key"),
    AP_INIT_ITERATE("BFFCacheTag", bff_cache_cmd_endpoint_list, (void *)BFF_CE_TAG,
        RSRC_CONF, "Surrogate keys for purges, e.g. user:{user_id} "
        "product:{products[].id}"),

    /* ---- client-specific presentation: mod_bff_profile.c ---- */
    AP_INIT_TAKE23("BFFJoin", bff_profile_cmd_join, NULL, RSRC_CONF,
        "Attaches matching elements of another list: TARGET SOURCE=KEY "
        "[max-size=SIZE], e.g. orders[].product "
        "products[].id=orders[].product_id"),
    AP_INIT_TAKE12("BFFLift", bff_profile_cmd, (void *)BFF_PR_LIFT, RSRC_CONF,
        "Moves an object's members into the root (or into TARGET): PATH "
        "[TARGET]"),
    AP_INIT_TAKE2("BFFRename", bff_profile_cmd, (void *)BFF_PR_RENAME, RSRC_CONF,
        "Moves a value: FROM TO, e.g. user.name name or orders[].quantity "
        "orders[].qty"),
    AP_INIT_TAKE2("BFFWrap", bff_profile_cmd, (void *)BFF_PR_WRAP, RSRC_CONF,
        "Replaces a value by {KEY: value}: PATH KEY"),
    AP_INIT_FLAG("BFFDropEmpty", bff_profile_cmd_drop_empty, NULL, RSRC_CONF,
        "On: members that are null, \"\", [] or {} are removed (default Off)"),
    AP_INIT_TAKE1("BFFMergePolicy", bff_profile_cmd1, (void *)BFF_PR_MERGE,
        RSRC_CONF, "When a lift or rename writes an existing key: error "
        "(default), first-wins, last-wins or namespace"),
    AP_INIT_ITERATE("BFFFields", bff_profile_cmd1, (void *)BFF_PR_FIELDS,
        RSRC_CONF, "Paths a client may select with ?fields= (and below)"),
    AP_INIT_TAKE1("BFFClientSelect", bff_profile_cmd1, (void *)BFF_PR_SELECT,
        RSRC_CONF, "What names the client: header:NAME or claim:PATH"),
    AP_INIT_ITERATE2("BFFClientFields", bff_profile_cmd_fields, NULL,
        RSRC_CONF, "Default field selection of a client: NAME PATH... "
        "(NAME * when no client matches)"),
    /* ---- end of the client-specific presentation directives ---- */

    /* ---- access phase: mod_bff_authn.c, mod_bff_authz.c, mod_bff_ratelimit.c ---- */
    AP_INIT_TAKE1("BFFJWTKeyFile", bff_auth_cmd_jwt_file, (void *)0,
        RSRC_CONF | ACCESS_CONF, "PEM public key (RSA or EC) verifying RS*/ES* tokens"),
    AP_INIT_TAKE1("BFFJWTSecretFile", bff_auth_cmd_jwt_file, (void *)1,
        RSRC_CONF | ACCESS_CONF, "File holding the shared secret verifying HS* tokens"),
    AP_INIT_TAKE1("BFFJWKSFile", bff_auth_cmd_jwt_file, (void *)2,
        RSRC_CONF | ACCESS_CONF, "JWKS file: keys chosen by the token's kid"),
    AP_INIT_RAW_ARGS("BFFJWKSURL", bff_auth_cmd_jwks_url, NULL,
        RSRC_CONF | ACCESS_CONF, "https:// URL of a JWKS (or an OpenID "
        "configuration) fetched in the background, and options"),
    AP_INIT_RAW_ARGS("BFFJWTAlgorithms", bff_auth_cmd_jwt_algs, NULL,
        RSRC_CONF | ACCESS_CONF, "Accepted JWT algorithms, e.g. RS256 ES256"),
    AP_INIT_ITERATE("BFFJWTIssuer", bff_auth_cmd_jwt_issuer, NULL, RSRC_CONF | ACCESS_CONF,
        "Accepted iss values (one must match)"),
    AP_INIT_TAKE1("BFFJWTAudience", bff_auth_cmd_jwt_audience, NULL,
        RSRC_CONF | ACCESS_CONF, "Required aud value"),
    AP_INIT_TAKE1("BFFJWTLeeway", bff_auth_cmd_jwt_leeway, NULL, RSRC_CONF | ACCESS_CONF,
        "Clock skew allowed for exp and nbf (default 0)"),
    AP_INIT_FLAG("BFFJWTRequireExp", bff_auth_cmd_jwt_require_exp, NULL,
        RSRC_CONF | ACCESS_CONF, "On (default): tokens without exp are refused"),
    AP_INIT_TAKE1("BFFJWTMaxSize", bff_auth_cmd_jwt_max_size, NULL,
        RSRC_CONF | ACCESS_CONF, "Longest token accepted (default 8k)"),
    AP_INIT_TAKE12("BFFJWTCache", bff_auth_cmd_jwt_cache, NULL, RSRC_CONF,
        "Verified tokens kept per child: entries [max-ttl] (default 1024 "
        "5m; 0 disables)"),
    AP_INIT_ITERATE("BFFTokenSource", bff_auth_cmd_token_source, NULL,
        RSRC_CONF | ACCESS_CONF, "Where the token is looked for, in order: "
        "bearer, header:NAME, cookie:NAME, query:NAME (default bearer)"),
    AP_INIT_TAKE1("BFFAPIKeyFile", bff_auth_cmd_apikey_file, NULL, RSRC_CONF,
        "API key file: consumer, sha256 of the key, plan"),
    AP_INIT_RAW_ARGS("BFFAPIKeyRedis", bff_auth_cmd_apikey_redis, NULL,
        RSRC_CONF, "Also look API keys up in the BFFRateLimitRedis Redis, "
        "as hashes PREFIXapikey:SHA256HEX (consumer, plan): On|Off "
        "[prefix=STRING] (default Off, prefix bff:)"),
    AP_INIT_TAKE1("BFFAPIKeyHeader", bff_auth_cmd_apikey_header, NULL,
        RSRC_CONF | ACCESS_CONF, "Request header holding the API key "
        "(default X-API-Key)"),
    AP_INIT_RAW_ARGS("BFFIdentityHeader", bff_auth_cmd_identity_header, NULL,
        RSRC_CONF | ACCESS_CONF, "Header set for backends from a claim: "
        "Header claim.path [sep=STRING] [optional]"),
    AP_INIT_RAW_ARGS("BFFRateLimit", bff_auth_cmd_rate_limit, NULL,
        RSRC_CONF | ACCESS_CONF, "Token bucket: name N/DURATION "
        "[key=ip|user|global|header:NAME] [burst=N] [plan=NAME,...]"),
    AP_INIT_TAKE1("BFFRateLimitFallback", bff_auth_cmd_rl_fallback, NULL,
        RSRC_CONF | ACCESS_CONF, "While Redis is unreachable: shm (default), "
        "open or closed"),
    AP_INIT_RAW_ARGS("BFFRateLimitRedis", bff_auth_cmd_rl_redis, NULL,
        RSRC_CONF, "Redis holding the buckets: redis://HOST:PORT "
        "[connect-timeout=D] [timeout=D] [retry=D]"),
    AP_INIT_TAKE1("BFFRateLimitInstances", bff_auth_cmd_rl_instances, NULL,
        RSRC_CONF, "httpd instances sharing the Redis buckets (the shm "
        "fallback keeps 1/N of each limit)"),
    /* ---- end of the access phase directives ---- */

    /* ---- resilience: mod_bff_resilience.c ---- */
    AP_INIT_RAW_ARGS("BFFBreaker", bff_res_cmd_breaker, NULL, RSRC_CONF,
        "Circuit breaker of the backends (server default or one endpoint): "
        "on|off [failure-rate=PCT] [min-calls=N] [window=N] [consecutive=N] "
        "[slow=DURATION] [open=DURATION] [half-open=N] [scope=host|backend]"),
    AP_INIT_RAW_ARGS("BFFRetry", bff_res_cmd_retry, NULL, RSRC_CONF,
        "Retries of failed backend calls: off | [attempts=N] "
        "[backoff=DURATION] [max-backoff=DURATION] [statuses=CODE,...] "
        "[unsafe=on|off] [budget=PCT] [budget-min=N]"),
    AP_INIT_RAW_ARGS("BFFUpstream", bff_res_cmd_upstream, NULL, RSRC_CONF,
        "Instances of one backend, used as http://NAME/... in BFFBackend "
        "URLs: NAME URL... [lb=round-robin|least-outstanding]"),
    AP_INIT_RAW_ARGS("BFFHealthProbe", bff_res_cmd_probe, NULL, RSRC_CONF,
        "Active probe of every backend host: interval=DURATION "
        "[path=/health] [timeout=DURATION] | off"),
    AP_INIT_TAKE1("BFFBreakerSlots", bff_res_cmd_slots, NULL, RSRC_CONF,
        "Breaker keys kept in shared memory (default 256)"),
    AP_INIT_RAW_ARGS("BFFMaxInFlight", bff_overload_cmd, NULL, RSRC_CONF,
        "Caps on aggregations in flight, all processes: [total=N|auto] "
        "[endpoint=N|auto] [backend=N|auto] [retry-after=DURATION] | off "
        "(main server); endpoint=N inside <BFFEndpoint>"),
    /* ---- end of the resilience directives ---- */
    /* ---- observability: mod_bff_log.c, mod_bff_events.c ---- */
    AP_INIT_FLAG("BFFRequestID", bff_log_cmd_request_id, NULL, RSRC_CONF,
        "On (default): every request gets a request id and trace context, "
        "passed to ProxyPass backends too; Off: aggregated endpoints only"),
    AP_INIT_RAW_ARGS("BFFEventsRedis", bff_events_cmd_redis, NULL, RSRC_CONF,
        "Analytics events to a Redis stream: redis://HOST:PORT[/DB] "
        "[stream=NAME] [maxlen=N] [queue=N] [batch=N] [connect-timeout=D] "
        "[timeout=D]"),
    /* ---- end of the observability directives ---- */
    /* ---- CORS: mod_bff_cors.c ---- */
    AP_INIT_ITERATE("BFFCORSOrigin", bff_cors_cmd_origin, NULL, RSRC_CONF | ACCESS_CONF,
        "Origins whose pages may read the answers: scheme://host[:port], "
        "~REGEX (whole origin), * (not with credentials) or off"),
    AP_INIT_ITERATE("BFFCORSMethods", bff_cors_cmd_list, (void *)1,
        RSRC_CONF | ACCESS_CONF, "Methods a preflight may ask for "
        "(default GET HEAD)"),
    AP_INIT_ITERATE("BFFCORSHeaders", bff_cors_cmd_list, (void *)2,
        RSRC_CONF | ACCESS_CONF, "Request headers a preflight may ask for "
        "(default none), e.g. Authorization Content-Type"),
    AP_INIT_ITERATE("BFFCORSExposeHeaders", bff_cors_cmd_list, (void *)3,
        RSRC_CONF | ACCESS_CONF, "Response headers pages may read (default "
        "X-Request-ID X-Cache-Status X-BFF-Completed RateLimit "
        "RateLimit-Policy Retry-After; none: only the safelisted ones)"),
    AP_INIT_FLAG("BFFCORSCredentials", bff_cors_cmd_credentials, NULL,
        RSRC_CONF | ACCESS_CONF, "On: pages may send cookies and "
        "Authorization and read the answer (default Off)"),
    AP_INIT_TAKE1("BFFCORSMaxAge", bff_cors_cmd_max_age, NULL, RSRC_CONF | ACCESS_CONF,
        "How long browsers may cache a preflight's answer (default 10m)"),
    /* ---- end of the CORS directives ---- */
    /* ---- request validation: mod_bff_validate.c ---- */
    AP_INIT_RAW_ARGS("BFFRequestSchema", bff_valid_cmd_schema, NULL,
        RSRC_CONF | ACCESS_CONF, "JSON Schema (draft-07) file the request "
        "body must match: FILE [formats]"),
    AP_INIT_TAKE1("BFFRequestMaxSize", bff_valid_cmd_limit, "size",
        RSRC_CONF | ACCESS_CONF, "Largest request body read for validation "
        "(default 1M; larger: 413)"),
    AP_INIT_TAKE1("BFFRequestMaxDepth", bff_valid_cmd_limit, "depth",
        RSRC_CONF | ACCESS_CONF, "Deepest JSON nesting of a request body "
        "(default 32; deeper: 400)"),
    AP_INIT_TAKE1("BFFRequestMaxErrors", bff_valid_cmd_limit, "errors",
        RSRC_CONF | ACCESS_CONF, "Most violations listed in a 422 answer "
        "(default 20)"),
    AP_INIT_RAW_ARGS("BFFQueryRule", bff_valid_cmd_rule, NULL,
        RSRC_CONF | ACCESS_CONF, "A typed query parameter: NAME "
        "string|integer|number|boolean|uuid|date|date-time [required] "
        "[min=N] [max=N] [pattern=REGEX] [enum=a|b]"),
    AP_INIT_RAW_ARGS("BFFHeaderRule", bff_valid_cmd_rule, "header",
        RSRC_CONF | ACCESS_CONF, "A typed request header: NAME "
        "string|integer|number|boolean|uuid|date|date-time [required] "
        "[min=N] [max=N] [pattern=REGEX] [enum=a|b]"),
    /* ---- end of the request validation directives ---- */
    /* ---- metrics: mod_bff_metrics.c ---- */
    AP_INIT_TAKE1("BFFMetricsSlots", bff_metrics_cmd_slots, NULL, RSRC_CONF,
        "Most metric series kept in shared memory (default 4096)"),
    /* ---- end of the metrics directives ---- */
    /* ---- event streams: mod_bff_sse.c ---- */
    AP_INIT_RAW_ARGS("BFFEventStreamRedis", bff_sse_cmd_redis, NULL, RSRC_CONF,
        "Redis of the event streams: URL [prefix=P] [max-streams=N|auto] "
        "[retry-after=D] [connect-timeout=D] [timeout=D] [pool=N]"),
    AP_INIT_RAW_ARGS("BFFEventStream", bff_sse_cmd_stream, NULL,
        RSRC_CONF | ACCESS_CONF, "What a bff-event-stream location streams: "
        "[topic=NAME] [heartbeat=D] [per-identity=N]"),
    /* ---- end of the event stream directives ---- */
    { NULL }
};

/* --------------------------------------------------------- lifecycle -- */

static apr_status_t fetch_cleanup(void *data)
{
    bff_fetch_global_cleanup();
    return APR_SUCCESS;
}

/* Endpoint limits the admin left unset take the server's value, then the
 * engine's default (already in the endpoint). */
static void apply_server_defaults(bff_server_conf_t *sc, server_rec *s)
{
    int i, j;

    for (i = 0; i < sc->endpoints->nelts; i++) {
        bff_ep_conf_t *epc = APR_ARRAY_IDX(sc->endpoints, i, bff_ep_conf_t *);
        bff_endpoint_t *ep = epc->ep;

        if (epc->server != s) {
            continue;   /* inherited from the main server: done there */
        }

        ep->timeout_ms = epc->timeout_ms != UNSET ? epc->timeout_ms
                         : sc->timeout_ms != UNSET ? sc->timeout_ms
                         : ep->timeout_ms;
        ep->connect_timeout_ms = epc->connect_timeout_ms != UNSET
                                 ? epc->connect_timeout_ms
                                 : sc->connect_timeout_ms != UNSET
                                 ? sc->connect_timeout_ms
                                 : ep->connect_timeout_ms;
        ep->max_body = epc->max_body ? epc->max_body
                       : sc->max_body ? sc->max_body : ep->max_body;
        ep->max_depth = epc->max_depth ? epc->max_depth
                        : sc->max_depth ? sc->max_depth : ep->max_depth;
        for (j = 0; sc->tls && j < ep->backends->nelts; j++) {
            bff_backend_t *be = APR_ARRAY_IDX(ep->backends, j,
                                              bff_backend_t *);
            if (!be->tls) {
                be->tls = sc->tls;
            }
        }
    }
}

/* TLS settings given by name to a backend that never uses TLS (http://,
 * not an upstream with https:// instances): almost surely a URL missing
 * its "s", and calls that go out in clear text while the configuration
 * says they are protected. Refused at every start and by apache2 -t. */
static int check_tls_unused(server_rec *s)
{
    server_rec *vs;
    int i, j, bad = 0;

    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        for (i = 0; i < sc->endpoints->nelts; i++) {
            bff_ep_conf_t *epc = APR_ARRAY_IDX(sc->endpoints, i,
                                               bff_ep_conf_t *);
            if (epc->server != vs) {
                continue;
            }
            for (j = 0; j < epc->ep->backends->nelts; j++) {
                bff_backend_t *be = APR_ARRAY_IDX(epc->ep->backends, j,
                                                  bff_backend_t *);
                const char *url = bff_tpl_text(be->url);
                if (!apr_hash_get(epc->tls, be->name, APR_HASH_KEY_STRING)
                    || bff_res_url_tls(s, url)) {
                    continue;
                }
                ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(712)
                             "BFFBackendTLS %s in <BFFEndpoint %s %s> at "
                             "%s:%d: the backend calls %s, without TLS: use "
                             "https:// (or remove its BFFBackendTLS)",
                             be->name, epc->ep->method, epc->ep->pattern,
                             epc->ep->file, epc->ep->line, url);
                bad = 1;
            }
        }
    }
    return bad ? HTTP_INTERNAL_SERVER_ERROR : OK;
}

/* TLS settings no call uses are refused; verify=off is the admin's
 * explicit choice (a test backend, a network where something else
 * authenticates the peer): apache2 -t reports it, as it reports JWT
 * settings that check no issuer. */
static int bff_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    const bff_server_conf_t *main_sc;
    server_rec *vs;
    int i;

    if (check_tls_unused(s) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_CONFIG_TEST) {
        return OK;
    }
    main_sc = ap_get_module_config(s->module_config, &bff_module);
    if (main_sc->backend_max_origin < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, BFFLOGNO(160)
                     "BFFBackendPool unbounded: no bound on connections per "
                     "backend origin; a slow backend can be sent a "
                     "connection per worker thread");
    }
    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        for (i = 0; i < sc->tls_off->nelts; i++) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, vs, BFFLOGNO(711)
                         "%s: verify=off: the backend's certificate and "
                         "host name are not checked, so anyone on the "
                         "network path can answer in its name",
                         APR_ARRAY_IDX(sc->tls_off, i, const char *));
        }
    }
    return OK;
}

static int bff_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    server_rec *vs;
    const char *err;

    for (vs = s; vs; vs = vs->next) {
        bff_server_conf_t *sc = ap_get_module_config(vs->module_config,
                                                     &bff_module);
        int i;

        apply_server_defaults(sc, vs);
        for (i = 0; sc->max_backends && i < sc->endpoints->nelts; i++) {
            bff_endpoint_t *ep = APR_ARRAY_IDX(sc->endpoints, i,
                                               bff_ep_conf_t *)->ep;
            if (ep->backends->nelts > sc->max_backends) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, 0, vs, BFFLOGNO(1)
                             "<BFFEndpoint %s %s> at %s:%d has %d backends, "
                             "more than BFFMaxBackends %d", ep->method,
                             ep->pattern, ep->file, ep->line,
                             ep->backends->nelts, sc->max_backends);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    /* once per configuration cycle, balanced by the cleanup */
    if ((err = bff_fetch_global_init()) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(2)
                     "curl_global_init failed: %s", err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, NULL, fetch_cleanup, apr_pool_cleanup_null);
    return OK;
}

/* A stop that catches a child while it starts. httpd's children run
 * just_die on SIGTERM from their fork until their threads run, and
 * just_die destroys the child's pool and calls exit() inside the signal
 * handler. The parent sends SIGTERM to every child when it stops, children
 * still starting after a graceful restart included; one that arrives while
 * mod_unixd drops the privileges (initgroups reads /etc/group with malloc)
 * frees memory while malloc is half-way through an update, and the child
 * dies of SIGABRT ("corrupted size vs. prev_size"). So SIGTERM is held while
 * the privileges are dropped and let in at the start and at the end of
 * child_init, where nothing is inside malloc: the child then stops the way
 * httpd means it to. (The MPM blocks every signal itself before child_init
 * and lets SIGTERM in only after its threads started, with a handler that
 * ignores it: one pending at the end of child_init would be lost.) */
static sigset_t term_set;
static sigset_t term_before;    /* the mask before SIGTERM was held */
static sigset_t term_holding;   /* the mask while it is held */

static int hold_term(apr_pool_t *pchild, server_rec *s)
{
    sigemptyset(&term_set);
    sigaddset(&term_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term_set, &term_before);
    pthread_sigmask(SIG_BLOCK, NULL, &term_holding);
    return DECLINED;   /* the privileges are mod_unixd's to drop */
}

/* a SIGTERM that came meanwhile runs its handler now (just_die: the child
 * exits); SIGTERM is then blocked again if it was */
static void let_term_in(void)
{
    sigset_t pending, was;

    if (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM)) {
        pthread_sigmask(SIG_UNBLOCK, &term_set, &was);
        if (sigismember(&was, SIGTERM)) {
            pthread_sigmask(SIG_BLOCK, &term_set, NULL);
        }
    }
}

static void term_child_init_first(apr_pool_t *pchild, server_rec *s)
{
    sigset_t now;
    int sig, same = 1;

    let_term_in();
    /* an MPM that set a mask of its own since keeps it; otherwise the
     * mask from before the hold comes back */
    sigemptyset(&now);
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    for (sig = 1; sig < NSIG && same; sig++) {
        same = sigismember(&now, sig) == sigismember(&term_holding, sig);
    }
    if (same) {
        pthread_sigmask(SIG_SETMASK, &term_before, NULL);
    }
}

static void term_child_init_last(apr_pool_t *pchild, server_rec *s)
{
    let_term_in();
}

/* A child's threads wait on futexes: its futex hash sized for them
 * (bff_futex.h), before the MPM starts its threads. */
static void futex_hash_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threads = 0, before, after, err;
    unsigned slots;

    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS
        || (slots = bff_futex_hash_slots(threads)) == 0) {
        return;
    }
    err = bff_futex_hash_set(slots, &before, &after);
    if (err && before < 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, err == EINVAL ? 0 : err, s,
                     BFFLOGNO(6)
                     "futex hash of this child: the kernel's global one "
                     "(this kernel has no process futex hashes)");
    }
    else if (err) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, err, s, BFFLOGNO(7)
                     "futex hash of this child: %u buckets for its %d "
                     "threads refused, %d kept (0: the kernel's global "
                     "hash)", slots, threads, before);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, BFFLOGNO(5)
                     "futex hash of this child: %d buckets for its %d "
                     "threads", after, threads);
    }
}

static void bff_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv = bff_aggregate_child_init(pchild, s);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(3)
                     "cannot create the backend client pool");
    }
}

static void bff_register_hooks(apr_pool_t *p)
{
    ap_hook_check_config(bff_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(bff_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_drop_privileges(hold_term, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_child_init(term_child_init_first, NULL, NULL,
                       APR_HOOK_REALLY_FIRST);
    ap_hook_child_init(futex_hash_child_init, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_child_init(bff_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(term_child_init_last, NULL, NULL, APR_HOOK_REALLY_LAST);
    bff_aggregate_register_hooks(p);
    bff_cache_register_hooks(p);
    bff_problem_register_hooks(p);
    bff_auth_register_hooks(p);
    bff_res_register_hooks(p);
    bff_overload_register_hooks(p);
    bff_log_register_hooks(p);
    bff_events_register_hooks(p);
    bff_metrics_register_hooks(p);
    bff_cors_register_hooks(p);
    bff_status_register_hooks(p);
    bff_valid_register_hooks(p);
    bff_sse_register_hooks(p);
    bff_shared_register_hooks(p);
}

AP_DECLARE_MODULE(bff) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    create_server_conf,
    merge_server_conf,
    bff_cmds,
    bff_register_hooks,
    AP_MODULE_FLAG_NONE
};
