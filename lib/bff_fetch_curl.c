/*
 * The libcurl multi implementation of the bff fetcher.
 *
 * One CURLM per fetcher: its connection cache is what keeps backend
 * connections alive between client requests. Easy handles are recycled
 * through a free list (curl_easy_reset keeps their DNS cache and session
 * data), and each keeps its body buffer so steady state allocates nothing.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <apr_strings.h>

#include "bff_fetch.h"
#include "bff_fetch_curl.h"
#include "bff_tls.h"

typedef struct slot_t slot_t;
struct slot_t {
    CURL *easy;
    struct curl_slist *hdrs;
    char *buf;
    apr_size_t len, cap, max;
    char *hbuf;              /* the response's header lines */
    apr_size_t hlen, hcap;
    int too_big;
    int progressed;          /* resolving, connecting or sending began */
    int active;              /* added to the multi handle */
    bff_fetch_req_t *req;
    slot_t *next;            /* free list / all list */
    slot_t *next_all;
    char errbuf[CURL_ERROR_SIZE];   /* per handle: others write theirs */
    struct curl_slist *connect_to;  /* server-name= */
    char *url;                      /* the URL asked for, with server-name= */
};

typedef struct {
    CURLM *multi;
    slot_t *free_slots;
    slot_t *all_slots;
    int in_flight;
    struct curl_waitfd *wfds;    /* bff_fetch_curl_poll's, reused */
    unsigned wcap;
    int woken;                   /* curl_wake's, atomic */
    long max_host;               /* CURLMOPT_MAX_HOST_CONNECTIONS */
    long max_age_s;              /* CURLOPT_MAXAGE_CONN */
} curl_ctx_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *baton)
{
    slot_t *s = baton;
    size_t n = size * nmemb;

    if (n > s->max - s->len) {
        s->too_big = 1;
        return 0;   /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap) {
        apr_size_t cap = s->cap ? s->cap : 4096;
        char *nb;
        while (cap < s->len + n + 1) {
            cap *= 2;
        }
        nb = realloc(s->buf, cap);
        if (!nb) {
            return 0;
        }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return n;
}

#define HEADERS_MAX (64 * 1024)

/* Keeps the header fields of the last response (a 1xx or a status line
 * starts over) as the native client does: "Name: value\r\n" each, the
 * value without surrounding whitespace. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *baton)
{
    slot_t *s = baton;
    size_t n = size * nmemb, k = n, nlen, vs;
    const char *colon;

    if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
        s->hlen = 0;
        return n;
    }
    while (k && (data[k - 1] == '\r' || data[k - 1] == '\n'
                 || data[k - 1] == ' ' || data[k - 1] == '\t')) {
        k--;
    }
    if (!k || !(colon = memchr(data, ':', k))) {
        return n;        /* the blank line */
    }
    nlen = (size_t)(colon - data);
    for (vs = nlen + 1; vs < k && (data[vs] == ' ' || data[vs] == '\t'); vs++) {
    }
    if (s->hlen + nlen + (k - vs) + 5 > HEADERS_MAX) {
        return n;        /* beyond the bound: dropped */
    }
    if (s->hlen + nlen + (k - vs) + 5 > s->hcap) {
        apr_size_t cap = s->hcap ? s->hcap : 1024;
        char *nb;
        while (cap < s->hlen + nlen + (k - vs) + 5) {
            cap *= 2;
        }
        if (!(nb = realloc(s->hbuf, cap))) {
            return 0;
        }
        s->hbuf = nb;
        s->hcap = cap;
    }
    memcpy(s->hbuf + s->hlen, data, nlen);
    memcpy(s->hbuf + s->hlen + nlen, ": ", 2);
    memcpy(s->hbuf + s->hlen + nlen + 2, data + vs, k - vs);
    memcpy(s->hbuf + s->hlen + nlen + 2 + (k - vs), "\r\n", 3);
    s->hlen += nlen + (k - vs) + 4;
    return n;
}

/* 1 when rc (with curl's message msg) is the TLS layer refusing the
 * peer or being refused: a handshake failure, a certificate that does not
 * verify, a client certificate the server wants and did not get. With TLS
 * 1.3 the server refuses a client certificate after the client finished
 * its handshake, so that alert arrives as a receive error. */
static int tls_failure(CURLcode rc, const char *msg)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return 1;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return msg && strstr(msg, "OpenSSL SSL_") && strstr(msg, " alert ");
    default:
        return 0;
    }
}

/* A transfer leaves libcurl's queue of CURLMOPT_MAX_HOST_CONNECTIONS when
 * it resolves a name, opens a socket or gets a connection (new or reused)
 * for its request: each of these callbacks marks it. */
static int on_resolver_start(void *resolver, void *reserved, void *baton)
{
    (void)resolver;
    (void)reserved;
    ((slot_t *)baton)->progressed = 1;
    return 0;
}

static int on_sockopt(void *baton, curl_socket_t fd, curlsocktype purpose)
{
    (void)fd;
    (void)purpose;
    ((slot_t *)baton)->progressed = 1;
    return CURL_SOCKOPT_OK;
}

static int on_prereq(void *baton, char *ip, char *local_ip, int port,
                     int local_port)
{
    (void)ip;
    (void)local_ip;
    (void)port;
    (void)local_port;
    ((slot_t *)baton)->progressed = 1;
    return CURL_PREREQFUNC_OK;
}

static bff_fetch_err_e map_curl_error(CURLcode rc, const slot_t *s)
{
    switch (rc) {
    case CURLE_OK:
        return BFF_FETCH_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return BFF_FETCH_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        /* never resolved, connected nor sent: it waited for a connection
         * under CURLMOPT_MAX_HOST_CONNECTIONS all along */
        return s->progressed ? BFF_FETCH_ETIMEOUT : BFF_FETCH_EPOOL;
    case CURLE_FILESIZE_EXCEEDED:
        return BFF_FETCH_ETOOBIG;
    case CURLE_WRITE_ERROR:
        return s->too_big ? BFF_FETCH_ETOOBIG : BFF_FETCH_EINTERNAL;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return BFF_FETCH_EINTERNAL;
    default:
        /* GOT_NOTHING, RECV_ERROR, PARTIAL_FILE, WEIRD_SERVER_REPLY, ... */
        return BFF_FETCH_EPROTO;
    }
}

static void slot_detach(curl_ctx_t *c, slot_t *s)
{
    if (s->active) {
        curl_multi_remove_handle(c->multi, s->easy);
        s->active = 0;
        c->in_flight--;
    }
    if (s->hdrs) {
        curl_slist_free_all(s->hdrs);
        s->hdrs = NULL;
    }
    if (s->connect_to) {
        curl_slist_free_all(s->connect_to);
        s->connect_to = NULL;
    }
    if (s->url) {
        curl_free(s->url);
        s->url = NULL;
    }
    if (s->req) {
        s->req->impl = NULL;
        s->req = NULL;
    }
    s->next = c->free_slots;
    c->free_slots = s;
}

static slot_t *slot_get(curl_ctx_t *c)
{
    slot_t *s = c->free_slots;

    if (s) {
        c->free_slots = s->next;
        curl_easy_reset(s->easy);
    }
    else {
        s = calloc(1, sizeof(*s));
        if (!s) {
            return NULL;
        }
        s->easy = curl_easy_init();
        if (!s->easy) {
            free(s);
            return NULL;
        }
        s->next_all = c->all_slots;
        c->all_slots = s;
    }
    s->next = NULL;
    s->len = 0;
    s->hlen = 0;
    s->too_big = 0;
    return s;
}

static apr_status_t fail_req(bff_fetch_req_t *req, bff_fetch_err_e err,
                             const char *msg)
{
    req->err = err;
    req->errmsg = msg;
    req->status = 0;
    req->resp = NULL;
    req->resp_len = 0;
    req->resp_headers = NULL;
    req->resp_headers_len = 0;
    return APR_EGENERAL;
}

/* The TLS settings of a call. libcurl compares them (CA, client
 * certificate, verification, versions) before it reuses a connection or
 * a TLS session, so calls with other settings never share one. The blobs
 * are copied by libcurl (CURL_BLOB_COPY): the settings may be freed with
 * their configuration while a handle still holds them. */
static void set_tls(CURL *e, const bff_tls_t *t)
{
    struct curl_blob b;

    if (!t) {
        return;
    }
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, t->verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, t->verify ? 2L : 0L);
    if (t->ca.data) {
        b.data = (void *)t->ca.data;
        b.len = t->ca.len;
        b.flags = CURL_BLOB_COPY;
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
        /* only these CAs: not the system's as well */
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    }
    if (t->cert.data) {
        b.data = (void *)t->cert.data;
        b.len = t->cert.len;
        b.flags = CURL_BLOB_COPY;
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        b.data = (void *)t->key.data;
        b.len = t->key.len;
        b.flags = CURL_BLOB_COPY;
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (t->crl_file) {
        curl_easy_setopt(e, CURLOPT_CRLFILE, t->crl_file);
    }
    if (t->min_tls) {
        curl_easy_setopt(e, CURLOPT_SSLVERSION, t->min_tls == 13
                         ? (long)CURL_SSLVERSION_TLSv1_3
                         : (long)CURL_SSLVERSION_TLSv1_2);
    }
}

/* server-name=HOST: the URL's host becomes HOST (SNI, the name checked
 * in the certificate, Host), and CONNECT_TO sends the connection to the
 * original host and port. */
static const char *server_name(slot_t *s, const char *url, const char *name)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *line;
    const char *err = NULL;

    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK
        || curl_url_set(u, CURLUPART_HOST, name, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_URL, &s->url, 0) != CURLUE_OK) {
        err = "server-name: cannot rewrite the URL";
    }
    else if (!(line = malloc(strlen(name) + strlen(host) + 2 * strlen(port) + 4))) {
        err = "out of memory";
    }
    else {
        sprintf(line, "%s:%s:%s:%s", name, port, host, port);
        s->connect_to = curl_slist_append(NULL, line);
        free(line);
        if (!s->connect_to) {
            err = "out of memory";
        }
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return err;
}

static apr_status_t curl_start(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    curl_ctx_t *c = f->ctx;
    slot_t *s;
    CURL *e;
    int i;

    req->impl = NULL;
    req->err = BFF_FETCH_OK;
    req->errmsg = NULL;
    req->status = 0;
    req->resp = NULL;
    req->resp_len = 0;
    req->resp_headers = NULL;
    req->resp_headers_len = 0;
    req->reused_conn = 0;
    req->tls_failed = 0;
    req->elapsed = 0;

    s = slot_get(c);
    if (!s) {
        return fail_req(req, BFF_FETCH_EINTERNAL, "out of memory");
    }
    e = s->easy;
    s->max = req->max_body;
    s->req = req;
    req->impl = s;

    for (i = 0; req->headers && i < req->headers->nelts; i++) {
        struct curl_slist *n = curl_slist_append(
            s->hdrs, APR_ARRAY_IDX(req->headers, i, const char *));
        if (!n) {
            slot_detach(c, s);
            return fail_req(req, BFF_FETCH_EINTERNAL, "out of memory");
        }
        s->hdrs = n;
    }
    if (req->body) {
        /* no "Expect: 100-continue" round trip for small JSON bodies */
        struct curl_slist *n = curl_slist_append(s->hdrs, "Expect:");
        if (!n) {
            slot_detach(c, s);
            return fail_req(req, BFF_FETCH_EINTERNAL, "out of memory");
        }
        s->hdrs = n;
    }

    if (req->tls && req->tls->server_name && !strncasecmp(req->url, "https://", 8)) {
        const char *err = server_name(s, req->url, req->tls->server_name);
        if (err) {
            slot_detach(c, s);
            return fail_req(req, BFF_FETCH_EINTERNAL, err);
        }
        curl_easy_setopt(e, CURLOPT_URL, s->url);
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, s->connect_to);
    }
    else {
        curl_easy_setopt(e, CURLOPT_URL, req->url);
    }
    set_tls(e, req->tls);
    /* NULL gives libcurl's default back to a reused handle */
    curl_easy_setopt(e, CURLOPT_PROXY, req->proxy);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    s->progressed = c->max_host <= 0;   /* no queue: a timeout is one */
    if (c->max_host > 0) {
        curl_easy_setopt(e, CURLOPT_RESOLVER_START_FUNCTION, on_resolver_start);
        curl_easy_setopt(e, CURLOPT_RESOLVER_START_DATA, s);
        curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
        curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, s);
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, s);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, c->max_age_s);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms < req->timeout_ms
                         ? req->connect_timeout_ms : req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    s->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    /* a backend answer is data, never instructions to go elsewhere */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* libcurl sends a request again, body included, when a reused
     * connection dies before any answer byte: only a fresh connection
     * keeps it from repeating a POST the backend may have processed */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT,
                     bff_fetch_may_resend(req->method) ? 0L : 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* a name lookup still running when the call ends (its connect
     * timeout) is left to finish in its thread: without this, libcurl
     * joins that thread, and a resolver that does not answer holds the
     * worker for the resolver's own timeout */
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif

    if (!strcmp(req->method, "GET")) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    else if (!strcmp(req->method, "POST")) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
    }
    else if (!strcmp(req->method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    }
    else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
    if (req->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    }

    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        slot_detach(c, s);
        return fail_req(req, BFF_FETCH_EINTERNAL, "curl_multi_add_handle failed");
    }
    s->active = 1;
    c->in_flight++;
    return APR_SUCCESS;
}

static void complete(curl_ctx_t *c, slot_t *s, CURLcode rc)
{
    bff_fetch_req_t *req = s->req;
    long status = 0, nconn = 0;
    curl_off_t total_us = 0;

    curl_multi_remove_handle(c->multi, s->easy);
    s->active = 0;
    c->in_flight--;

    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &nconn);
    curl_easy_getinfo(s->easy, CURLINFO_TOTAL_TIME_T, &total_us);

    req->err = map_curl_error(rc, s);
    req->errmsg = rc == CURLE_OK ? NULL
                  : (s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
    if (rc != CURLE_OK && tls_failure(rc, req->errmsg)) {
        req->tls_failed = 1;
        req->err = BFF_FETCH_ECONNECT;
    }
    req->status = (int)status;
    req->reused_conn = nconn == 0;
    req->elapsed = (apr_interval_time_t)total_us;
    if (req->err == BFF_FETCH_OK) {
        if (!s->buf) {
            s->buf = malloc(1);
            s->cap = s->buf ? 1 : 0;
        }
        if (!s->buf) {
            fail_req(req, BFF_FETCH_EINTERNAL, "out of memory");
            return;
        }
        s->buf[s->len] = '\0';
        req->resp = s->buf;
        req->resp_len = s->len;
        req->resp_headers = s->hlen ? s->hbuf : "";
        req->resp_headers_len = s->hlen;
    }
    else {
        req->status = 0;
    }
}

static apr_status_t curl_wait(bff_fetcher_t *f, bff_fetch_req_t **done,
                              long max_wait_ms)
{
    curl_ctx_t *c = f->ctx;
    apr_time_t until = apr_time_now() + apr_time_from_msec(max_wait_ms);

    *done = NULL;
    for (;;) {
        int running = 0, queued = 0;
        CURLMsg *m;
        long left;

        curl_multi_perform(c->multi, &running);
        while ((m = curl_multi_info_read(c->multi, &queued)) != NULL) {
            slot_t *s = NULL;
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            if (!s || !s->req) {
                continue;
            }
            complete(c, s, m->data.result);
            *done = s->req;
            return APR_SUCCESS;
        }
        if (__atomic_exchange_n(&c->woken, 0, __ATOMIC_ACQ_REL)) {
            return APR_EINTR;
        }
        if (c->in_flight == 0) {
            return APR_EOF;
        }
        left = (long)apr_time_as_msec(until - apr_time_now());
        if (left <= 0) {
            return APR_TIMEUP;
        }
        /* curl_multi_poll also wakes for curl's own internal timeouts */
        curl_multi_poll(c->multi, NULL, 0, (int)(left > 1000 ? 1000 : left),
                        NULL);
    }
}

static void curl_release(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    slot_t *s = req->impl;

    if (s && s->req == req) {
        slot_detach(f->ctx, s);
    }
    req->resp = NULL;
    req->resp_headers = NULL;
}

static void curl_reset(bff_fetcher_t *f)
{
    curl_ctx_t *c = f->ctx;
    slot_t *s;

    for (s = c->all_slots; s; s = s->next_all) {
        if (s->req) {
            if (s->active) {
                s->req->err = BFF_FETCH_EABORTED;
            }
            slot_detach(c, s);
        }
    }
}

static void curl_destroy(bff_fetcher_t *f)
{
    curl_ctx_t *c = f->ctx;
    slot_t *s, *n;

    if (!c) {
        return;
    }
    curl_reset(f);
    for (s = c->all_slots; s; s = n) {
        n = s->next_all;
        curl_easy_cleanup(s->easy);
        free(s->buf);
        free(s->hbuf);
        free(s);
    }
    if (c->multi) {
        curl_multi_cleanup(c->multi);
    }
    free(c->wfds);
    free(c);
    f->ctx = NULL;
}

/* -------------------------------------------------- process setup -- */

int bff_fetch_has_curl(void)
{
    return 1;
}

const char *bff_fetch_global_init(void)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

    return rc == CURLE_OK ? NULL : curl_easy_strerror(rc);
}

void bff_fetch_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ------------------------------------------ hooks for other fetchers -- */

int bff_fetch_curl_in_flight(const bff_fetcher_t *f)
{
    const curl_ctx_t *c = f->ctx;

    return c ? c->in_flight : 0;
}

apr_status_t bff_fetch_curl_poll(bff_fetcher_t *f, struct pollfd *fds,
                                 unsigned nfds, int timeout_ms)
{
    curl_ctx_t *c = f->ctx;
    unsigned i;
    int numfds = 0;

    if (!c) {
        return APR_EINVAL;
    }
    if (nfds > c->wcap) {
        struct curl_waitfd *w = realloc(c->wfds, nfds * sizeof(*w));
        if (!w) {
            return APR_ENOMEM;
        }
        c->wfds = w;
        c->wcap = nfds;
    }
    for (i = 0; i < nfds; i++) {
        c->wfds[i].fd = fds[i].fd;
        c->wfds[i].events = (short)(((fds[i].events & POLLIN) ? CURL_WAIT_POLLIN : 0)
                                    | ((fds[i].events & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
        c->wfds[i].revents = 0;
    }
    if (curl_multi_poll(c->multi, c->wfds, nfds, timeout_ms, &numfds)
        != CURLM_OK) {
        return APR_EGENERAL;
    }
    /* curl reports only IN/OUT/PRI for extra fds, dropping ERR and HUP: ask
     * the kernel for the exact events, without waiting */
    if (nfds && poll(fds, nfds, 0) < 0 && errno != EINTR) {
        return APR_FROM_OS_ERROR(errno);
    }
    return APR_SUCCESS;
}

/* curl_multi_wakeup may be called from any thread */
static void curl_wake(bff_fetcher_t *f)
{
    curl_ctx_t *c = f->ctx;

    if (c) {
        __atomic_store_n(&c->woken, 1, __ATOMIC_RELEASE);
        curl_multi_wakeup(c->multi);
    }
}

static const bff_fetch_vtable_t curl_vtable = {
    "curl-multi", curl_start, curl_wait, curl_release, curl_reset, curl_destroy,
    curl_wake
};

static apr_status_t fetcher_cleanup(void *data)
{
    curl_destroy(data);
    return APR_SUCCESS;
}

apr_status_t bff_fetch_curl_create(bff_fetcher_t **out,
                                   const bff_fetch_curl_opts_t *opts,
                                   apr_pool_t *p)
{
    bff_fetcher_t *f = apr_pcalloc(p, sizeof(*f));
    curl_ctx_t *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (!c) {
        return APR_ENOMEM;
    }
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return APR_EGENERAL;
    }
    c->max_host = opts ? opts->max_host_connections : 0;
    /* libcurl counts whole seconds of idleness: rounded up, at least one */
    c->max_age_s = ((opts && opts->idle_timeout_ms > 0 ? opts->idle_timeout_ms
                     : BFF_FETCH_IDLE_MS) + 999) / 1000;
    if (opts && opts->max_host_connections > 0) {
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          opts->max_host_connections);
    }
    if (opts && opts->max_cached_connections > 0) {
        curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS,
                          opts->max_cached_connections);
    }
    f->vt = &curl_vtable;
    f->ctx = c;
    apr_pool_cleanup_register(p, f, fetcher_cleanup, apr_pool_cleanup_null);
    *out = f;
    return APR_SUCCESS;
}
