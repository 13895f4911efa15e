/*
 * mod_bff: JWT keys fetched by URL (BFFJWKSURL), shared by every child.
 *
 * One table in shared memory (bff_shm_retained, so a graceful restart
 * keeps the last good key sets) holds a slot per distinct source (URL,
 * proxy, CA): the last good JWKS text, a generation bumped whenever that
 * text changes, when to fetch next, and a flag an unknown kid raises.
 * The fetches run on mod_watchdog, never in a client request: a child
 * watchdog of its own calls jwks_tick every AP_WD_TM_SLICE in every
 * child, and the child that finds a slot due marks it busy under the
 * global mutex and fetches it, so one process fetches a source at a time.
 * A failed fetch changes nothing: the last good key set keeps serving.
 * A child that stops gives its fetch up at once and leaves the source
 * due for another; a restart clears every busy mark (their children
 * are stopping).
 *
 * Each JWT setting with a URL has, per child, the verifier of the
 * generation it last saw; a request compares the slot's generation (one
 * atomic read) and rebuilds the verifier when it moved. Requests hold the
 * verifier they use by a reference count, so a rotation never frees one
 * in use. The verified-token cache is keyed by the verifier's
 * fingerprint: a key removed by a refresh stops verifying at once.
 * When and how often to fetch is lib/bff_jwks.c's arithmetic.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "util_mutex.h"
#include "mod_watchdog.h"

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include "mod_bff_access.h"
#include "mod_bff_shared.h"
#include "bff_fetch.h"
#include "bff_http.h"
#include "bff_jwks.h"
#include "bff_opts.h"
#include "bff_tls.h"

APLOG_USE_MODULE(bff);

#define MUTEX_TYPE     "bff-jwks"
#define RETAINED_KEY   "mod_bff-jwks"
#define JWKS_TEXT_MAX  (64 * 1024)
#define SOURCE_MAX     1024

#define DEFAULT_REFRESH_MS     3600000L    /* 1h */
#define DEFAULT_MIN_MS         60000L      /* 1m */
#define DEFAULT_MAX_MS         86400000L   /* 1d */
#define DEFAULT_KID_MS         60000L      /* 1m */
#define DEFAULT_TIMEOUT_MS     5000L

struct jwks_url_t {
    const char *url;             /* a JWKS, or an OpenID configuration */
    const char *proxy;           /* NULL: none */
    bff_tls_t *tls;
    long timeout_ms;
    long refresh_ms, min_ms, max_ms, kid_ms;
    int cold_deny;               /* 1: 401 without keys; 0: 503 */
    const char *source;          /* url, proxy and CA: the slot's key */
};

/* One source in shared memory. source[0] == 0: free. */
typedef struct {
    char source[SOURCE_MAX];
    apr_uint32_t gen;            /* 0: no key set yet */
    apr_uint32_t want;           /* an unknown kid asks for a refresh */
    apr_uint32_t failures;       /* consecutive, for the log */
    apr_time_t next_due;
    apr_time_t busy_until;       /* a child is fetching it */
    apr_time_t kid_last;         /* last early refresh granted */
    apr_size_t len;
    char text[JWKS_TEXT_MAX];
} slot_t;

/* A verifier and the requests using it. */
typedef struct {
    bff_jwt_verifier_t *v;
    apr_pool_t *pool;
    int refs;                    /* requests, +1 while current */
} vref_t;

struct jwks_state_t {
    unsigned int slot;
    apr_thread_mutex_t *mu;      /* per child */
    apr_pool_t *pool;            /* per child, parent of the vref pools */
    apr_uint32_t gen;            /* of cur */
    vref_t *cur;                 /* NULL: none yet */
};

typedef struct {
    apr_global_mutex_t *mutex;
} retained_t;

/* the settings of this configuration (pconf), rebuilt by bff_jwks_reset */
static apr_array_header_t *jwts;        /* jwt_srv_t *, with a URL */
static apr_array_header_t *sources;     /* jwks_url_t *, one per slot */
/* shared */
static slot_t *slots;
static apr_global_mutex_t *gmutex;
static server_rec *main_server;
/* the fetcher on mod_watchdog's thread, in every child */
static apr_status_t jwks_tick(int state, void *data, apr_pool_t *pool);
static bff_wd_task_t task = { "_bff_jwks_", jwks_tick, 1, NULL, 0, NULL };

/* ------------------------------------------------------------ config -- */

static const char *opt_cold(void *target, const char *v, apr_pool_t *p)
{
    jwks_url_t *u = target;

    if (!strcasecmp(v, "deny")) {
        u->cold_deny = 1;
    }
    else if (!strcasecmp(v, "unavailable")) {
        u->cold_deny = 0;
    }
    else {
        return "expected unavailable (503) or deny (401)";
    }
    return NULL;
}

static const char *opt_proxy(void *target, const char *v, apr_pool_t *p)
{
    jwks_url_t *u = target;

    if (strncasecmp(v, "http://", 7) && strncasecmp(v, "https://", 8)) {
        return "expected an http:// or https:// proxy URL";
    }
    u->proxy = v;
    return NULL;
}

static const char *opt_ca(void *target, const char *v, apr_pool_t *p)
{
    return bff_tls_option(((jwks_url_t *)target)->tls,
                          apr_pstrcat(p, "ca=", v, NULL), p);
}

static const char *opt_ca_path(void *target, const char *v, apr_pool_t *p)
{
    return bff_tls_option(((jwks_url_t *)target)->tls,
                          apr_pstrcat(p, "ca-path=", v, NULL), p);
}

#define DAY_MS 86400000L
static const bff_opt_t url_opts[] = {
    BFF_OPT_CALL("ca", opt_ca),
    BFF_OPT_CALL("ca-path", opt_ca_path),
    BFF_OPT_CALL("proxy", opt_proxy),
    BFF_OPT_CALL("cold-start", opt_cold),
    BFF_OPT_NUM("timeout", BFF_OPT_MS, jwks_url_t, timeout_ms, 100, 60000),
    BFF_OPT_NUM("refresh", BFF_OPT_MS, jwks_url_t, refresh_ms, 1000,
                30 * DAY_MS),
    BFF_OPT_NUM("min-refresh", BFF_OPT_MS, jwks_url_t, min_ms, 1000,
                30 * DAY_MS),
    BFF_OPT_NUM("max-refresh", BFF_OPT_MS, jwks_url_t, max_ms, 1000,
                30 * DAY_MS),
    BFF_OPT_NUM("kid-refresh", BFF_OPT_MS, jwks_url_t, kid_ms, 1000,
                30 * DAY_MS),
    BFF_OPT_END
};

const char *bff_jwks_parse(jwks_url_t **out, cmd_parms *cmd,
                           const char *args)
{
    apr_pool_t *p = cmd->pool;
    jwks_url_t *u = apr_pcalloc(p, sizeof(*u));
    const char *opt, *err;

    u->url = ap_getword_conf(p, &args);
    if (!*u->url) {
        return "BFFJWKSURL takes an https:// URL and options: BFFJWKSURL "
               "https://idp.example/keys [ca=FILE] [proxy=URL] "
               "[refresh=DURATION] [cold-start=unavailable|deny]";
    }
    if ((err = bff_jwks_url_check(u->url))) {
        return apr_psprintf(p, "BFFJWKSURL %s: %s", u->url, err);
    }
    if (!bff_fetch_has_curl()) {
        return "BFFJWKSURL needs libcurl: mod_bff was built --without-curl";
    }
    u->tls = bff_tls_create(p);
    u->timeout_ms = DEFAULT_TIMEOUT_MS;
    u->refresh_ms = DEFAULT_REFRESH_MS;
    u->min_ms = DEFAULT_MIN_MS;
    u->max_ms = DEFAULT_MAX_MS;
    u->kid_ms = DEFAULT_KID_MS;
    while (*(opt = ap_getword_conf(p, &args))) {
        if ((err = bff_opt_parse(url_opts, u, opt, p))) {
            return apr_psprintf(p, "BFFJWKSURL %s: %s", u->url, err);
        }
    }
    if (u->min_ms > u->max_ms) {
        return apr_psprintf(p, "BFFJWKSURL %s: min-refresh is above "
                            "max-refresh", u->url);
    }
    /* the CA now, as root: the children may not be able to read it */
    if ((err = bff_tls_load(u->tls, p))) {
        return apr_psprintf(p, "BFFJWKSURL %s: %s", u->url, err);
    }
    u->source = apr_pstrcat(p, u->url, " proxy=", u->proxy ? u->proxy : "",
                            " ca=", u->tls->ca_file ? u->tls->ca_file : "",
                            " ca-path=",
                            u->tls->ca_path ? u->tls->ca_path : "", NULL);
    if (strlen(u->source) >= SOURCE_MAX) {
        return apr_psprintf(p, "BFFJWKSURL %s: URL too long", u->url);
    }
    *out = u;
    return NULL;
}

const char *bff_jwks_url_of(const jwt_srv_t *j)
{
    return j->url->url;
}

void bff_jwks_reset(void)
{
    jwts = NULL;
    sources = NULL;
}

void bff_jwks_add(jwt_srv_t *j, apr_pool_t *pconf)
{
    unsigned int i;

    if (!jwts) {
        jwts = apr_array_make(pconf, 4, sizeof(jwt_srv_t *));
        sources = apr_array_make(pconf, 4, sizeof(jwks_url_t *));
    }
    for (i = 0; i < (unsigned int)jwts->nelts; i++) {
        if (APR_ARRAY_IDX(jwts, i, jwt_srv_t *) == j) {
            return;
        }
    }
    APR_ARRAY_PUSH(jwts, jwt_srv_t *) = j;
    j->state = apr_pcalloc(pconf, sizeof(*j->state));
    for (i = 0; i < (unsigned int)sources->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(sources, i, jwks_url_t *)->source,
                    j->url->source)) {
            break;
        }
    }
    if (i == (unsigned int)sources->nelts) {
        APR_ARRAY_PUSH(sources, jwks_url_t *) = j->url;
    }
    j->state->slot = i;
}

/* ------------------------------------------------------------- fetch -- */

static int glock(void)
{
    return gmutex && apr_global_mutex_lock(gmutex) == APR_SUCCESS;
}

static void gunlock(void)
{
    apr_global_mutex_unlock(gmutex);
}

/* One GET on the watchdog's thread: NULL with the body and the
 * Cache-Control header, or why it failed. */
static const char *get(const char **body, apr_size_t *len, const char **cc,
                       const jwks_url_t *u, const char *url, apr_pool_t *p)
{
    bff_fetch_req_t *req = apr_pcalloc(p, sizeof(*req));
    bff_fetch_req_t *done = NULL;
    apr_array_header_t *hdrs = apr_array_make(p, 1, sizeof(const char *));
    const char *err = NULL;
    apr_status_t rv;

    APR_ARRAY_PUSH(hdrs, const char *) = "Accept: application/json";
    req->method = "GET";
    req->url = url;
    req->headers = hdrs;
    req->timeout_ms = u->timeout_ms;
    req->connect_timeout_ms = u->timeout_ms;
    req->max_body = JWKS_TEXT_MAX - 1;
    req->tls = u->tls;
    req->proxy = u->proxy;
    if (bff_fetch_start(task.client, req) == APR_SUCCESS) {
        do {
            rv = bff_fetch_wait(task.client, &done, u->timeout_ms + 1000);
        } while ((rv == APR_TIMEUP || rv == APR_EINTR) && !task.stop);
        if (!done) {
            bff_fetch_reset(task.client);
            return "no answer";
        }
    }
    if (req->err != BFF_FETCH_OK) {
        err = apr_psprintf(p, "%s%s%s", bff_fetch_err_str(req->err),
                           req->errmsg ? ": " : "",
                           req->errmsg ? req->errmsg : "");
    }
    else if (req->status != 200) {
        err = apr_psprintf(p, "HTTP %d", req->status);
    }
    else {
        *body = apr_pstrmemdup(p, req->resp, req->resp_len);
        *len = req->resp_len;
        *cc = bff_http_header(req->resp_headers, req->resp_headers_len,
                              "Cache-Control", p);
    }
    if (done) {
        bff_fetch_release(task.client, done);
    }
    return err;
}

/* The key set of u: through the provider's configuration document when
 * the URL names one; checked to hold at least one key mod_bff can use. */
static const char *fetch(const char **body, apr_size_t *len, const char **cc,
                         const jwks_url_t *u, apr_pool_t *p)
{
    const char *url = u->url, *err, *doc, *dcc;
    apr_size_t dlen;
    bff_jwt_conf_t c;
    bff_jwt_verifier_t *v;

    if (bff_jwks_is_discovery(url)) {
        if ((err = get(&doc, &dlen, &dcc, u, url, p))
            || (err = bff_jwks_discovery(&url, doc, dlen, p))) {
            return err;
        }
    }
    if ((err = get(body, len, cc, u, url, p))) {
        return url == u->url ? err : apr_pstrcat(p, url, ": ", err, NULL);
    }
    memset(&c, 0, sizeof(c));
    c.algs = BFF_JWT_HS_ALL | BFF_JWT_RS_ALL | BFF_JWT_ES_ALL;
    c.jwks_text = *body;
    c.jwks_len = *len;
    c.jwks_what = url;
    return bff_jwt_verifier_create(&v, &c, p);
}

/* Whether slot i is to be fetched now; if so it is marked busy. */
static int due_locked(slot_t *sl, const jwks_url_t *u, apr_time_t now)
{
    bff_jwks_sched_t sched = { u->refresh_ms, u->min_ms, u->max_ms,
                               u->kid_ms };
    int due = now >= sl->next_due, wanted;

    /* after a graceful restart that moved the sources, an old child's
     * source may no longer own this slot */
    if (now < sl->busy_until || strcmp(sl->source, u->source)) {
        return 0;
    }
    /* a fetch due anyway serves the kids that asked too */
    wanted = apr_atomic_xchg32(&sl->want, 0) != 0;
    if (!due && wanted && bff_jwks_kid_refresh(&sched, &sl->kid_last, now)) {
        due = 1;
    }
    if (due) {
        sl->busy_until = now + apr_time_from_msec(u->timeout_ms * 2 + 1000);
    }
    return due;
}

static void fetch_slot(unsigned int i, const jwks_url_t *u, apr_pool_t *p)
{
    bff_jwks_sched_t sched = { u->refresh_ms, u->min_ms, u->max_ms,
                               u->kid_ms };
    const char *body = NULL, *cc = NULL, *err;
    apr_size_t len = 0;
    slot_t *sl = &slots[i];
    apr_uint32_t gen = 0, failures = 0;
    int changed = 0;

    err = fetch(&body, &len, &cc, u, p);
    if (!glock()) {
        return;
    }
    if (strcmp(sl->source, u->source)) {
        gunlock();   /* the slot went to another source meanwhile */
        return;
    }
    sl->busy_until = 0;
    if (err && task.stop) {
        /* this child stops: its fetch was cut short, not failed, and
         * the source is due at once for another child */
        gunlock();
        return;
    }
    sl->next_due = bff_jwks_next_due(&sched, !err, cc, apr_time_now());
    if (err) {
        failures = ++sl->failures;
    }
    else {
        sl->failures = 0;
        if (sl->len != len || memcmp(sl->text, body, len)) {
            memcpy(sl->text, body, len);
            sl->text[len] = '\0';
            sl->len = len;
            /* never 0 again: 0 means "none yet" */
            apr_atomic_set32(&sl->gen, sl->gen + 1 ? sl->gen + 1 : 1);
            changed = 1;
        }
    }
    gen = sl->gen;
    gunlock();
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, main_server, BFFLOGNO(140)
                     "JWKS %s: fetch failed (%u in a row): %s; %s", u->url,
                     failures, err, gen ? "the last good key set keeps "
                     "serving" : u->cold_deny ? "no key set yet: tokens "
                     "are refused (401, cold-start=deny)" : "no key set "
                     "yet: requests get 503 (cold-start=unavailable)");
    }
    else if (changed) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, main_server, BFFLOGNO(141)
                     "JWKS %s: new key set (generation %u, %" APR_SIZE_T_FMT
                     " bytes)", u->url, gen, len);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, main_server, BFFLOGNO(142)
                     "JWKS %s: refreshed, unchanged", u->url);
    }
}

static apr_status_t jwks_tick(int state, void *data, apr_pool_t *pool)
{
    int i;

    if (!sources || !bff_wd_task_enter(&task, state)) {
        return APR_SUCCESS;
    }
    for (i = 0; !task.stop && i < sources->nelts; i++) {
        const jwks_url_t *u = APR_ARRAY_IDX(sources, i, jwks_url_t *);
        int due;

        if (!glock()) {
            break;
        }
        due = due_locked(&slots[i], u, apr_time_now());
        gunlock();
        if (due) {
            apr_pool_t *p;

            /* a fetch's memory (the key set, its secrets) goes with it */
            apr_pool_create(&p, pool);
            fetch_slot((unsigned int)i, u, p);
            apr_pool_destroy(p);
        }
    }
    bff_wd_task_leave(&task);
    return APR_SUCCESS;
}

/* ---------------------------------------------------------- requests -- */

static void vref_drop_locked(vref_t *vr)
{
    if (vr && --vr->refs == 0) {
        apr_pool_destroy(vr->pool);
    }
}

typedef struct {
    jwks_state_t *st;
    vref_t *vr;
} hold_t;

static apr_status_t vref_release(void *data)
{
    hold_t *h = data;

    apr_thread_mutex_lock(h->st->mu);
    vref_drop_locked(h->vr);
    apr_thread_mutex_unlock(h->st->mu);
    return APR_SUCCESS;
}

/* Under st->mu: a verifier for the slot's current generation. A key set
 * the settings cannot use (another algorithm) keeps the previous one. */
static void rebuild_locked(jwt_srv_t *j, request_rec *r)
{
    jwks_state_t *st = j->state;
    slot_t *sl = &slots[st->slot];
    bff_jwt_conf_t c = j->conf;
    vref_t *vr;
    apr_pool_t *p;
    const char *err;
    char *text;
    apr_size_t len;

    apr_pool_create(&p, st->pool);
    if (!glock()) {
        apr_pool_destroy(p);
        return;
    }
    if (strcmp(sl->source, j->url->source)) {
        /* an old child after a graceful restart that gave its slot to
         * another source: never the keys of another source */
        st->gen = apr_atomic_read32(&sl->gen);
        gunlock();
        apr_pool_destroy(p);
        return;
    }
    len = sl->len;
    text = apr_pmemdup(p, sl->text, len + 1);
    st->gen = sl->gen;
    gunlock();
    c.jwks_text = text;
    c.jwks_len = len;
    c.jwks_what = apr_pstrcat(p, "JWKS of ", j->url->url, NULL);
    vr = apr_pcalloc(p, sizeof(*vr));
    vr->pool = p;
    err = bff_jwt_verifier_create(&vr->v, &c, p);
    /* oct keys are secrets: no copy beyond the verifier's */
    memset(text, 0, len);
    if (err) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, BFFLOGNO(143)
                      "%s; %s", err, st->cur ? "the previous key set keeps "
                      "serving" : "no key set to verify tokens with");
        apr_pool_destroy(p);
        return;
    }
    vr->refs = 1;
    vref_drop_locked(st->cur);
    st->cur = vr;
}

int bff_jwks_verifier(const bff_jwt_verifier_t **v, request_rec *r,
                      jwt_srv_t *j)
{
    jwks_state_t *st = j->state;
    hold_t *h;
    apr_uint32_t gen;
    apr_time_t due = 0;

    if (!slots || !st->mu) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    gen = apr_atomic_read32(&slots[st->slot].gen);
    apr_thread_mutex_lock(st->mu);
    if (gen != st->gen) {
        rebuild_locked(j, r);
    }
    if (st->cur) {
        h = apr_palloc(r->pool, sizeof(*h));
        h->st = st;
        h->vr = st->cur;
        h->vr->refs++;
        *v = h->vr->v;
        apr_thread_mutex_unlock(st->mu);
        apr_pool_cleanup_register(r->pool, h, vref_release,
                                  apr_pool_cleanup_null);
        return OK;
    }
    apr_thread_mutex_unlock(st->mu);

    /* cold start: nothing fetched yet (or nothing usable) */
    due = slots[st->slot].next_due;
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, BFFLOGNO(144)
                  "no JWKS from %s yet: %s", j->url->url,
                  j->url->cold_deny ? "token refused (cold-start=deny)"
                  : "503 (cold-start=unavailable)");
    apr_table_setn(r->notes, "bff-auth-error", "no-keys");
    if (j->url->cold_deny) {
        bff_problem_defer(r, HTTP_UNAUTHORIZED, "Unauthorized",
                          "the access token cannot be verified now",
                          bff_auth_bearer_challenge(r, "invalid_token",
                                                    "token invalid", NULL));
        return HTTP_UNAUTHORIZED;
    }
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%" APR_TIME_T_FMT,
                                due > r->request_time
                                ? apr_time_sec(due - r->request_time) + 1
                                : 1));
    bff_problem_defer(r, HTTP_SERVICE_UNAVAILABLE, "Service Unavailable",
                      "the access token cannot be verified now", NULL);
    return HTTP_SERVICE_UNAVAILABLE;
}

void bff_jwks_unknown_kid(jwt_srv_t *j)
{
    if (slots && j->state) {
        apr_atomic_set32(&slots[j->state->slot].want, 1);
    }
}

/* --------------------------------------------------------- lifecycle -- */

/* The slots of this configuration's sources: kept (with their key sets)
 * when a source was there before the graceful restart, else cleared. */
static void assign_slots_locked(unsigned int n, apr_pool_t *ptemp)
{
    slot_t *old = apr_palloc(ptemp, sizeof(slot_t));
    unsigned int i, k;

    for (i = 0; i < n; i++) {
        const char *src = APR_ARRAY_IDX(sources, i, jwks_url_t *)->source;
        if (!strcmp(slots[i].source, src)) {
            continue;
        }
        /* moved to another index: swap it here */
        for (k = i + 1; k < n && strcmp(slots[k].source, src); k++) {
        }
        if (k < n) {
            memcpy(old, &slots[i], sizeof(slot_t));
            memcpy(&slots[i], &slots[k], sizeof(slot_t));
            memcpy(&slots[k], old, sizeof(slot_t));
            continue;
        }
        memset(&slots[i], 0, sizeof(slot_t));
        apr_cpystrn(slots[i].source, src, SOURCE_MAX);
    }
    /* A fetch in flight belongs to a child of the previous generation,
     * which is stopping: it may never clear its mark (it exits, or its
     * slot moved), and the new children must not wait out its timeout.
     * At worst a source is fetched twice at once; the later answer wins. */
    for (i = 0; i < n; i++) {
        slots[i].busy_until = 0;
    }
}

int bff_jwks_start(server_rec *s, apr_pool_t *pconf, apr_pool_t *ptemp)
{
    retained_t *ret;
    apr_status_t rv;
    void *mem;
    int kept;
    unsigned int n;

    main_server = s;
    slots = NULL;
    gmutex = NULL;
    if (!sources || ap_state_query(AP_SQ_MAIN_STATE)
                    == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    n = (unsigned int)sources->nelts;
    /* one table per number of sources; a graceful restart with the
     * same number keeps the key sets (matched by source) */
    if (!(mem = bff_shm_retained(&kept, "jwks", sizeof(slot_t) * n, s))) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ret = ap_retained_data_get(RETAINED_KEY);
    if (!ret) {
        ret = ap_retained_data_create(RETAINED_KEY, sizeof(*ret));
    }
    if (!ret->mutex
        && (rv = ap_global_mutex_create(&ret->mutex, NULL, MUTEX_TYPE, NULL,
                                        s, s->process->pool, 0))
           != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    gmutex = ret->mutex;
    slots = mem;
    if (!glock()) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(146)
                     "BFFJWKSURL: cannot take the mutex");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    assign_slots_locked(n, ptemp);
    gunlock();
    rv = bff_wd_task_register(&task, pconf);
    if (rv == APR_ENOTIMPL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, BFFLOGNO(145)
                     "BFFJWKSURL needs mod_watchdog: load it "
                     "(LoadModule watchdog_module)");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, BFFLOGNO(147)
                     "BFFJWKSURL: cannot register with mod_watchdog");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static void jwks_child_init(apr_pool_t *pchild, server_rec *s)
{
    const char *err;
    int i;

    if (!slots) {
        return;
    }
    apr_global_mutex_child_init(&gmutex, apr_global_mutex_lockfile(gmutex),
                                pchild);
    for (i = 0; i < jwts->nelts; i++) {
        jwks_state_t *st = APR_ARRAY_IDX(jwts, i, jwt_srv_t *)->state;
        apr_thread_mutex_create(&st->mu, APR_THREAD_MUTEX_DEFAULT, pchild);
        apr_pool_create(&st->pool, pchild);
        st->gen = 0;
        st->cur = NULL;
    }
    if ((err = bff_wd_task_child_init(&task, pchild, s))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, BFFLOGNO(148)
                     "BFFJWKSURL: %s: this child fetches no keys", err);
    }
}

static int jwks_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp)
{
    ap_mutex_register(pconf, MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    bff_jwks_reset();
    slots = NULL;
    gmutex = NULL;
    return OK;
}

void bff_jwks_register_hooks(apr_pool_t *p)
{
    /* before mod_watchdog starts the fetcher's thread */
    static const char *const before_watchdog[] = { "mod_watchdog.c", NULL };

    ap_hook_pre_config(jwks_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(jwks_child_init, NULL, before_watchdog,
                       APR_HOOK_MIDDLE);
}
