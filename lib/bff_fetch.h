/*
 * mod_bff fetcher: runs many HTTP requests concurrently on the calling
 * thread. A small vtable (as mod_md does for its HTTP client) so the engine
 * does not care whether libcurl or another client does the work, and unit
 * tests can plug in a fake.
 *
 * A fetcher is used by one thread at a time. It is reused across client
 * requests (the httpd glue keeps a per-child pool of them) so keep-alive
 * connections to backends survive from one client request to the next.
 */
#ifndef BFF_FETCH_H
#define BFF_FETCH_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

typedef enum {
    BFF_FETCH_OK = 0,     /* a complete HTTP response arrived (any status) */
    BFF_FETCH_ECONNECT,   /* DNS or TCP/TLS connect failed */
    BFF_FETCH_ETIMEOUT,   /* the request's timeout elapsed */
    BFF_FETCH_ETOOBIG,    /* the body exceeded max_body */
    BFF_FETCH_EPROTO,     /* connection dropped, truncated or bad HTTP */
    BFF_FETCH_EABORTED,   /* cancelled by bff_fetch_abort_all */
    BFF_FETCH_EINTERNAL,  /* out of memory, bad URL, client bug */
    BFF_FETCH_EPOOL       /* waited its whole timeout for a connection:
                             the backend's connection bound was reached */
} bff_fetch_err_e;

/* Short, stable text for an error ("timeout", "connect error", ...): it is
 * what clients see in _errors and what metrics use as a label. */
const char *bff_fetch_err_str(bff_fetch_err_e err);

/* 1 when a request with this method may be sent again after it failed on
 * a reused keep-alive connection with no answer (GET, HEAD, OPTIONS,
 * TRACE). Others (POST, PUT, PATCH, DELETE...) may have reached the
 * backend before the connection died: once a byte of them was written,
 * the fetchers never send them twice. */
int bff_fetch_may_resend(const char *method);

typedef struct bff_fetch_req_t bff_fetch_req_t;
struct bff_fetch_req_t {
    /* in */
    const char *method;
    const char *url;
    const char *body;               /* NULL: no body */
    apr_size_t body_len;
    const apr_array_header_t *headers;  /* const char * "Name: value" */
    long timeout_ms;                /* whole exchange; > 0 */
    long connect_timeout_ms;        /* > 0 */
    apr_size_t max_body;            /* > 0 */
    void *baton;                    /* caller's */
    /* TLS settings of an https:// call (bff_tls.h); NULL: verification
     * against the system's CAs, no client certificate. Calls with other
     * settings never share a connection. */
    const struct bff_tls_t *tls;
    /* an egress proxy URL for this call (http://host:port); NULL: none
     * configured. The curl fetcher only (JWKS fetches). */
    const char *proxy;
    /* a hint for fetchers shared by threads: a 2xx reply to this request
     * need not wake the thread waiting for it while other requests of its
     * handle are still running (the thread would only wait again); any
     * other outcome, or the last of its requests, wakes it. bff_fetch_wait
     * returns such a reply as soon as the thread waits anyway. */
    int quiet;

    /* out, valid after the request completed */
    bff_fetch_err_e err;
    const char *errmsg;             /* detail for logs, never for clients */
    int status;                     /* HTTP status or 0 */
    const char *resp;               /* body, NUL terminated; owned by the
                                       fetcher until bff_fetch_release */
    apr_size_t resp_len;
    /* the final response's header fields, "Name: value\r\n" each, NUL
     * terminated ("" when none); owned like resp */
    const char *resp_headers;
    apr_size_t resp_headers_len;
    apr_interval_time_t elapsed;    /* from start to completion */
    int reused_conn;                /* 1 when a keep-alive connection served it */
    int tls_failed;                 /* 1: the TLS handshake or the peer's
                                       verification failed (errmsg says
                                       why); err is BFF_FETCH_ECONNECT */

    void *impl;                     /* the fetcher's */
};

typedef struct bff_fetcher_t bff_fetcher_t;

typedef struct {
    const char *name;
    /* Queues req; it starts on the next wait. Returns APR_SUCCESS or an
     * error (req is then complete with err set, and not queued). */
    apr_status_t (*start)(bff_fetcher_t *f, bff_fetch_req_t *req);
    /* Drives I/O until one request completes (*done set, APR_SUCCESS), the
     * wait elapses (APR_TIMEUP) or nothing is in flight (APR_EOF). */
    apr_status_t (*wait)(bff_fetcher_t *f, bff_fetch_req_t **done,
                         long max_wait_ms);
    /* Gives back the resources of a completed request (its body). */
    void (*release)(bff_fetcher_t *f, bff_fetch_req_t *req);
    /* Cancels everything in flight and releases all requests; the fetcher
     * is ready for the next client request. */
    void (*reset)(bff_fetcher_t *f);
    void (*destroy)(bff_fetcher_t *f);
    /* Callable from any thread: a wait in progress returns APR_EINTR as
     * soon as it can (or the next wait does, when none is running). NULL
     * when the fetcher cannot be woken (it is then never shared). */
    void (*wake)(bff_fetcher_t *f);
} bff_fetch_vtable_t;

struct bff_fetcher_t {
    const bff_fetch_vtable_t *vt;
    void *ctx;
};

#define bff_fetch_start(f, r)        ((f)->vt->start((f), (r)))
#define bff_fetch_wait(f, d, ms)     ((f)->vt->wait((f), (d), (ms)))
#define bff_fetch_release(f, r)      ((f)->vt->release((f), (r)))
#define bff_fetch_reset(f)           ((f)->vt->reset((f)))

typedef struct {
    long max_host_connections;   /* per backend origin (host:port, and TLS
                                    settings for https): open connections
                                    at most, a request beyond waits within
                                    its timeout (BFF_FETCH_EPOOL); 0: none */
    long max_cached_connections; /* idle keep-alive connections kept */
    long idle_timeout_ms;        /* a connection idle this long is closed,
                                    never reused; 0: BFF_FETCH_IDLE_MS */
} bff_fetch_curl_opts_t;

#define BFF_FETCH_IDLE_MS 30000

/* Whether libcurl is built in (configure --without-curl: no). Without it
 * the curl fetcher fails every request it is given, so https:// URLs and
 * BFFHTTPClient curl must be refused when the configuration is read. */
int bff_fetch_has_curl(void);
/* Once per process (configuration cycle) before any fetcher is created;
 * NULL or an error text. Balanced by bff_fetch_global_cleanup. */
const char *bff_fetch_global_init(void);
void bff_fetch_global_cleanup(void);

/* Needs bff_fetch_global_init to have been called. The fetcher lives until
 * destroy, or until pool p is cleared. */
apr_status_t bff_fetch_curl_create(bff_fetcher_t **out,
                                   const bff_fetch_curl_opts_t *opts,
                                   apr_pool_t *p);

/* mod_bff's own HTTP/1.1 client for http:// URLs (keep-alive connections
 * per host:port, opts as for curl), with https:// handed to an internal
 * curl fetcher: so it also needs curl_global_init. Lives until destroy or
 * until pool p is cleared. */
apr_status_t bff_fetch_h1_create(bff_fetcher_t **out,
                                 const bff_fetch_curl_opts_t *opts,
                                 apr_pool_t *p);

/* ----------------------------------------------------------- shared --
 * One fetcher shared by all worker threads of a child (leader/follower):
 * its connections form one pool per child, bounded per backend origin
 * by the inner fetcher's max_host_connections, and reused by whichever
 * thread's request needs one. Each thread uses its own handle, a
 * fetcher with the usual interface; one waiting thread at a time (the
 * leader) drives the inner fetcher's I/O for every thread's requests
 * while the others sleep on a condition until theirs complete. Requests
 * a handle abandons (reset) are cancelled in the inner fetcher, which
 * closes the connection of a half-done exchange: by the resetting thread
 * when no thread leads, else by the leader, woken for it.
 */
typedef struct bff_fetch_shared_t bff_fetch_shared_t;

/* inner must have a wake operation; it is destroyed with the shared
 * fetcher (when pool p is cleared). */
apr_status_t bff_fetch_shared_create(bff_fetch_shared_t **out,
                                     bff_fetcher_t *inner, apr_pool_t *p);
/* A handle for one thread at a time, living until destroy or until p is
 * cleared (p must not outlive the shared fetcher's pool). */
apr_status_t bff_fetch_shared_handle(bff_fetcher_t **out,
                                     bff_fetch_shared_t *sh, apr_pool_t *p);

typedef struct {
    unsigned long leads;        /* times a thread became the leader */
    unsigned long handoffs;     /* leaderships passed to a waiting thread */
    unsigned long cancels;      /* running requests abandoned by a reset */
    unsigned long held;         /* quiet completions that woke nobody */
    int in_flight;              /* requests started, not yet delivered */
} bff_fetch_shared_stats_t;

void bff_fetch_shared_stats(bff_fetch_shared_t *sh,
                            bff_fetch_shared_stats_t *st);

#endif /* BFF_FETCH_H */
