/*
 * The bff fetcher with mod_bff's own HTTP/1.1 client, in the tradition of
 * nginx, HAProxy and mod_proxy: http:// backends are served on non-blocking
 * keep-alive sockets with epoll, costing about one send, one epoll_wait and
 * one recv per exchange; https:// goes to an internal curl fetcher (TLS,
 * HTTP/2), and one wait serves both.
 *
 * When a child's threads share one fetcher it holds hundreds of calls in
 * flight, so nothing per wait is proportional to them: a socket joins the
 * epoll set once, edge-triggered, when it is opened (and leaves it when it
 * is closed), and the deadlines are scanned only when the earliest one
 * known has passed.
 *
 * Steady state allocates nothing and resolves nothing: request slots keep
 * their request and body buffers, idle connections are kept per host:port
 * (bounded in total, least recently used closed first), and resolved
 * addresses are cached for DNS_TTL. A name is resolved with getaddrinfo_a
 * and waited for no longer than the call's connect timeout: a resolver
 * that does not answer costs a call its timeout, never a worker thread
 * without limit; the lookup goes on in the background and its answer
 * serves the next call to the host.
 *
 * A fetcher is used by one thread at a time; the module has no mutable
 * globals.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE               /* getaddrinfo_a */
#endif
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <apr_strings.h>

#include "bff_fetch.h"
#include "bff_fetch_curl.h"
#include "bff_h1.h"

#define RBUF_SIZE      16384
#define DNS_TTL        apr_time_from_sec(60)
#define MAX_ADDRS      8
#define MAX_HOSTS      64            /* soft: hosts in use are never dropped */
#define MAX_HOSTNAME   255
#define KEEP_BUF_MAX   (1024 * 1024) /* larger buffers are freed on release */
#define DEFAULT_IDLE   16
#define MAX_POLL_MS    60000         /* one poll; the wait loop goes on */
#define MAX_EVENTS     256           /* per epoll_wait; the rest next time */

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL   0             /* httpd ignores SIGPIPE anyway */
#endif

typedef struct host_t host_t;
typedef struct conn_t conn_t;
typedef struct slot_t slot_t;

/* A name lookup in progress: glibc's resolver thread writes into it until
 * it completes, so it has memory of its own, never the host's. */
typedef struct {
    struct gaicb cb;
    struct addrinfo hints;
    char name[MAX_HOSTNAME + 1];
} lookup_t;

/* A backend host:port, with its addresses, idle connections and the
 * requests queued for its per-host connection limit. */
struct host_t {
    host_t *next;
    char name[MAX_HOSTNAME + 1];  /* as in the URL, without [] */
    char hosthdr[MAX_HOSTNAME + 9];   /* Host: value */
    unsigned short port;
    int numeric;                  /* an IP literal: never resolved */
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t addrlen[MAX_ADDRS];
    int naddrs;
    int pref;                     /* the address that last connected */
    lookup_t *lookup;             /* a lookup still running, or NULL */
    apr_time_t resolved;
    apr_time_t used;
    conn_t *idle;                 /* most recently used first */
    int nconns;                   /* open: busy and idle */
    slot_t *qhead, *qtail;
    int kicking;
};

struct conn_t {
    int fd;                       /* in the epoll set while open */
    host_t *host;                 /* NULL once closed */
    slot_t *slot;                 /* the exchange using it, or NULL */
    int addr;                     /* index in host->addr */
    int tried;                    /* addresses tried while connecting */
    unsigned nreq;                /* exchanges completed */
    conn_t *hprev, *hnext;        /* host->idle, or the closed and free
                                     lists */
    conn_t *lprev, *lnext;        /* ctx idle LRU */
    apr_time_t idle_since;        /* while idle */
};

enum { S_FREE, S_QUEUED, S_CONNECTING, S_EXCHANGE, S_DONE };

/* One request in flight (or completed and not yet released). */
struct slot_t {
    slot_t *next_all;
    slot_t *next;                 /* free, done or host queue list */
    bff_fetch_req_t *req;
    int state;
    int head_req;
    int retried;
    host_t *host;
    conn_t *conn;
    apr_size_t rx;                /* response bytes received */
    apr_size_t out_off;
    bff_h1_buf_t out;             /* the request, head and body */
    bff_h1_buf_t body;
    bff_h1_buf_t hdrs;            /* the response's header fields */
    apr_time_t start, deadline, conn_deadline;
    char errbuf[200];
    bff_h1_parser_t ps;
};

typedef struct {
    bff_fetcher_t *curl;          /* https:// */
    host_t *hosts;
    int nhosts;
    conn_t *lru_head, *lru_tail;  /* idle connections, MRU first */
    int nidle;
    apr_interval_time_t idle_timeout;
    conn_t *free_conns;
    conn_t *closed;               /* closed since the last epoll_wait: its
                                     events may still name them */
    slot_t *all_slots, *free_slots;
    slot_t *done_head, *done_tail;
    int nactive;                  /* queued, connecting or exchanging */
    long max_idle, max_host;
    apr_time_t next_deadline;     /* no deadline passes before (0: none) */
    int epfd;
    struct epoll_event evs[MAX_EVENTS];
    int wakefd;                   /* eventfd that h1_wake writes */
    int woken;                    /* h1_wake's, atomic */
    char rbuf[RBUF_SIZE];
} h1_ctx_t;

typedef struct {
    const char *host;
    apr_size_t hostlen;
    int v6;
    unsigned short port;
    const char *target;           /* path and query, without fragment */
    apr_size_t targetlen;
} url_t;

static void slot_connect(h1_ctx_t *c, slot_t *s, int fresh);
static void parser_init(slot_t *s);
static void slot_send(h1_ctx_t *c, slot_t *s);

/* --------------------------------------------------------------- URL -- */

static int is_https(const char *url)
{
    return url && strncasecmp(url, "https://", 8) == 0;
}

static int parse_port(unsigned short *port, const char *p, apr_size_t n)
{
    unsigned long v = 0;
    apr_size_t i;

    if (n == 0 || n > 5) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v == 0 || v > 65535) {
        return -1;
    }
    *port = (unsigned short)v;
    return 0;
}

/* host[:port] or [v6]:port; no userinfo. */
static int parse_authority(url_t *u, const char *a, apr_size_t n)
{
    apr_size_t i, hs = 0, he;

    if (n && a[0] == '[') {
        for (he = 1; he < n && a[he] != ']'; he++) {
        }
        if (he == n) {
            return -1;
        }
        hs = 1;
        u->v6 = 1;
        i = he + 1;
    }
    else {
        for (he = 0; he < n && a[he] != ':'; he++) {
            char ch = a[he];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
                  || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'
                  || ch == '_')) {
                return -1;
            }
        }
        i = he;
    }
    u->host = a + hs;
    u->hostlen = he - hs;
    if (u->hostlen == 0 || u->hostlen > MAX_HOSTNAME) {
        return -1;
    }
    u->port = 80;
    if (i == n) {
        return 0;
    }
    if (a[i] != ':') {
        return -1;
    }
    return parse_port(&u->port, a + i + 1, n - i - 1);
}

/* http://host[:port][/path][?query][#fragment]: 0, or -1 when we cannot
 * send it as is. Control bytes and spaces are refused in the target, since
 * they would end the request line early. */
static int parse_url(url_t *u, const char *url)
{
    const char *a, *t, *e;

    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, "http://", 7) != 0) {
        return -1;
    }
    a = url + 7;
    t = a + strcspn(a, "/?#");
    if (parse_authority(u, a, (apr_size_t)(t - a)) != 0) {
        return -1;
    }
    e = t + strcspn(t, "#");
    for (u->target = t; t < e; t++) {
        if ((unsigned char)*t <= 0x20 || *t == 0x7f) {
            return -1;
        }
    }
    u->targetlen = (apr_size_t)(e - u->target);
    return 0;
}

/* -------------------------------------------------------------- hosts -- */

static int host_addr_literal(host_t *h, int v6)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)&h->addr[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->addr[0];

    memset(&h->addr[0], 0, sizeof(h->addr[0]));
    if (!v6 && inet_pton(AF_INET, h->name, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(h->port);
        h->addrlen[0] = sizeof(*s4);
    }
    else if (v6 && inet_pton(AF_INET6, h->name, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(h->port);
        h->addrlen[0] = sizeof(*s6);
    }
    else {
        return v6 ? -1 : 0;   /* a bracketed host must be an IPv6 literal */
    }
    h->naddrs = 1;
    h->numeric = 1;
    return 0;
}

/* The least recently used host without connections or queue, if any. */
static void host_evict_one(h1_ctx_t *c)
{
    host_t **pp, **victim = NULL;

    for (pp = &c->hosts; *pp; pp = &(*pp)->next) {
        if ((*pp)->nconns == 0 && !(*pp)->qhead && !(*pp)->lookup
            && (!victim || (*pp)->used < (*victim)->used)) {
            victim = pp;
        }
    }
    if (victim) {
        host_t *h = *victim;
        *victim = h->next;
        free(h);
        c->nhosts--;
    }
}

static host_t *host_get(h1_ctx_t *c, const url_t *u, const char **err)
{
    host_t *h;

    for (h = c->hosts; h; h = h->next) {
        if (h->port == u->port && strlen(h->name) == u->hostlen
            && strncasecmp(h->name, u->host, u->hostlen) == 0) {
            return h;
        }
    }
    if (c->nhosts >= MAX_HOSTS) {
        host_evict_one(c);
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        *err = "out of memory";
        return NULL;
    }
    memcpy(h->name, u->host, u->hostlen);
    h->port = u->port;
    apr_snprintf(h->hosthdr, sizeof(h->hosthdr), "%s%s%s", u->v6 ? "[" : "",
                 h->name, u->v6 ? "]" : "");
    if (u->port != 80) {
        apr_size_t n = strlen(h->hosthdr);
        apr_snprintf(h->hosthdr + n, sizeof(h->hosthdr) - n, ":%u",
                     (unsigned)u->port);
    }
    if (host_addr_literal(h, u->v6) != 0) {
        free(h);
        *err = "bad IPv6 address in URL";
        return NULL;
    }
    h->next = c->hosts;
    c->hosts = h;
    c->nhosts++;
    return h;
}

/* Takes the addresses of a completed lookup. 0, or -1 with err set. */
static int host_take_addrs(host_t *h, int rc, struct addrinfo *res,
                           char *err, apr_size_t errlen)
{
    struct addrinfo *ai;
    int n = 0;

    if (rc != 0) {
        apr_snprintf(err, errlen, "could not resolve host %s: %s", h->name,
                     gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai && n < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            || ai->ai_addrlen > sizeof(h->addr[0])) {
            continue;
        }
        memcpy(&h->addr[n], ai->ai_addr, ai->ai_addrlen);
        h->addrlen[n] = (socklen_t)ai->ai_addrlen;
        if (ai->ai_family == AF_INET) {
            ((struct sockaddr_in *)&h->addr[n])->sin_port = htons(h->port);
        }
        else {
            ((struct sockaddr_in6 *)&h->addr[n])->sin6_port = htons(h->port);
        }
        n++;
    }
    freeaddrinfo(res);
    if (n == 0) {
        apr_snprintf(err, errlen, "no address for host %s", h->name);
        return -1;
    }
    h->naddrs = n;
    h->pref = 0;
    return 0;
}

/* Waits up to wait_ms for the host's lookup. 1 while it still runs, else
 * 0 or -1 (its outcome, err set) with the lookup gone. */
static int host_lookup_wait(host_t *h, long wait_ms, char *err,
                            apr_size_t errlen)
{
    lookup_t *lk = h->lookup;
    const struct gaicb *list[1];
    apr_time_t until = apr_time_now() + apr_time_from_msec(wait_ms);
    int rc;

    list[0] = &lk->cb;
    while ((rc = gai_error(&lk->cb)) == EAI_INPROGRESS) {
        apr_interval_time_t left = until - apr_time_now();
        struct timespec ts;

        if (left <= 0) {
            apr_snprintf(err, errlen, "resolving host %s took longer than "
                         "%ld ms", h->name, wait_ms > 0 ? wait_ms : 0);
            return 1;
        }
        ts.tv_sec = (time_t)apr_time_sec(left);
        ts.tv_nsec = (long)(left % APR_USEC_PER_SEC) * 1000L;
        /* its result does not count: glibc 2.36 says EAI_SYSTEM where the
         * manual says EAI_AGAIN; gai_error and the clock decide */
        (void)gai_suspend(list, 1, &ts);
    }
    h->lookup = NULL;
    rc = host_take_addrs(h, rc, lk->cb.ar_result, err, errlen);
    free(lk);
    return rc;
}

/* Fresh addresses for a new connection, waiting at most wait_ms for the
 * resolver. A failed or slow refresh keeps the old addresses for another
 * TTL: a DNS hiccup should not take a backend down, nor make every
 * connection wait for the resolver. */
static int host_resolve(host_t *h, long wait_ms, char *err, apr_size_t errlen)
{
    struct gaicb *list[1];
    lookup_t *lk;
    apr_time_t now;
    int rc;

    if (h->numeric) {
        return 0;
    }
    now = apr_time_now();
    if (!h->lookup && h->naddrs && now - h->resolved < DNS_TTL) {
        return 0;
    }
    if (!h->lookup) {
        if (!(lk = calloc(1, sizeof(*lk)))) {
            apr_snprintf(err, errlen, "out of memory");
            return h->naddrs ? 0 : -1;
        }
        apr_cpystrn(lk->name, h->name, sizeof(lk->name));
        lk->hints.ai_family = AF_UNSPEC;
        lk->hints.ai_socktype = SOCK_STREAM;
        lk->cb.ar_name = lk->name;
        lk->cb.ar_request = &lk->hints;
        list[0] = &lk->cb;
        h->resolved = now;
        if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL)) != 0) {
            free(lk);
            apr_snprintf(err, errlen, "could not resolve host %s: %s",
                         h->name, gai_strerror(rc));
            return h->naddrs ? 0 : -1;
        }
        h->lookup = lk;
    }
    rc = host_lookup_wait(h, wait_ms, err, errlen);
    return rc == 0 || h->naddrs ? 0 : -1;
}

/* At destroy: a lookup that cannot be cancelled keeps its memory, which
 * the resolver thread still writes (a few hundred bytes, once). */
static void host_lookup_drop(host_t *h)
{
    lookup_t *lk = h->lookup;

    if (!lk) {
        return;
    }
    h->lookup = NULL;
    gai_cancel(&lk->cb);
    if (gai_error(&lk->cb) != EAI_INPROGRESS) {
        if (lk->cb.ar_result) {
            freeaddrinfo(lk->cb.ar_result);
        }
        free(lk);
    }
}

/* -------------------------------------------------------- connections -- */

static void lru_unlink(h1_ctx_t *c, conn_t *cn)
{
    if (cn->lprev) {
        cn->lprev->lnext = cn->lnext;
    }
    else {
        c->lru_head = cn->lnext;
    }
    if (cn->lnext) {
        cn->lnext->lprev = cn->lprev;
    }
    else {
        c->lru_tail = cn->lprev;
    }
    cn->lprev = cn->lnext = NULL;
}

/* Takes an idle connection out of both idle lists. */
static void idle_unlink(h1_ctx_t *c, conn_t *cn)
{
    host_t *h = cn->host;

    if (cn->hprev) {
        cn->hprev->hnext = cn->hnext;
    }
    else {
        h->idle = cn->hnext;
    }
    if (cn->hnext) {
        cn->hnext->hprev = cn->hprev;
    }
    cn->hprev = cn->hnext = NULL;
    lru_unlink(c, cn);
    c->nidle--;
}

static conn_t *conn_new(h1_ctx_t *c, host_t *h)
{
    conn_t *cn = c->free_conns;

    if (cn) {
        c->free_conns = cn->hnext;
    }
    else if (!(cn = malloc(sizeof(*cn)))) {
        return NULL;
    }
    memset(cn, 0, sizeof(*cn));
    cn->fd = -1;
    cn->host = h;
    h->nconns++;
    return cn;
}

/* Takes fd into the epoll set for good: edge-triggered, so a connection
 * idle in the pool costs nothing, and an exchange reads and writes until
 * the socket would block. Its events name cn. */
static int conn_watch(h1_ctx_t *c, conn_t *cn, int fd)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = cn;
    return epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Closes the socket (out of the epoll set first: a forked process may
 * still hold it open). */
static void conn_close_fd(h1_ctx_t *c, conn_t *cn)
{
    if (cn->fd >= 0) {
        (void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, cn->fd, NULL);
        close(cn->fd);
        cn->fd = -1;
    }
}

/* Closes a connection that is not idle (busy or connecting). Its memory
 * is reused only after the events of the current epoll_wait are handled,
 * which may still name it. */
static void conn_close(h1_ctx_t *c, conn_t *cn)
{
    conn_close_fd(c, cn);
    if (cn->slot) {
        cn->slot->conn = NULL;
        cn->slot = NULL;
    }
    cn->host->nconns--;
    cn->host = NULL;
    cn->hnext = c->closed;
    c->closed = cn;
}

static void conn_attach(slot_t *s, conn_t *cn)
{
    s->conn = cn;
    cn->slot = s;
}

/* Keeps a connection for the next request to its host; beyond the limit
 * the least recently used idle connection is closed. */
static void conn_idle(h1_ctx_t *c, conn_t *cn)
{
    host_t *h = cn->host;

    cn->hprev = NULL;
    cn->hnext = h->idle;
    if (h->idle) {
        h->idle->hprev = cn;
    }
    h->idle = cn;
    cn->lprev = NULL;
    cn->lnext = c->lru_head;
    if (c->lru_head) {
        c->lru_head->lprev = cn;
    }
    else {
        c->lru_tail = cn;
    }
    c->lru_head = cn;
    c->nidle++;
    cn->idle_since = apr_time_now();
    while (c->nidle > c->max_idle) {
        conn_t *old = c->lru_tail;
        idle_unlink(c, old);
        conn_close(c, old);
    }
}

/* Closes the connections idle for the idle timeout or longer: the least
 * recently used first, so the scan stops at the first younger one. */
static void idle_expire(h1_ctx_t *c, apr_time_t now)
{
    while (c->lru_tail && now - c->lru_tail->idle_since >= c->idle_timeout) {
        conn_t *old = c->lru_tail;
        idle_unlink(c, old);
        conn_close(c, old);
    }
}

/* An idle connection is usable when there is nothing to read on it: EOF
 * means the backend closed it, data would be a response to nothing (a late
 * 408, say) that must not be taken for the next request's. */
static int conn_alive(const conn_t *cn)
{
    char b;
    ssize_t n = recv(cn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

#ifndef SOCK_NONBLOCK
static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        return -1;
    }
    return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0;
}
#endif

static int open_socket(int family)
{
    int one = 1, fd;

#ifdef SOCK_NONBLOCK
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
    fd = socket(family, SOCK_STREAM, 0);
    if (fd >= 0 && set_nonblock(fd) != 0) {
        close(fd);
        return -1;
    }
#endif
    if (fd < 0) {
        return -1;
    }
    /* a request goes out in one segment: Nagle would only delay it */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------- slots -- */

static void done_push(h1_ctx_t *c, slot_t *s)
{
    s->next = NULL;
    if (c->done_tail) {
        c->done_tail->next = s;
    }
    else {
        c->done_head = s;
    }
    c->done_tail = s;
}

static void done_remove(h1_ctx_t *c, slot_t *s)
{
    slot_t **pp, *prev = NULL;

    for (pp = &c->done_head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            if (c->done_tail == s) {
                c->done_tail = prev;
            }
            s->next = NULL;
            return;
        }
    }
}

static void queue_remove(host_t *h, slot_t *s)
{
    slot_t **pp, *prev = NULL;

    for (pp = &h->qhead; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            if (h->qtail == s) {
                h->qtail = prev;
            }
            s->next = NULL;
            return;
        }
    }
}

static void host_kick(h1_ctx_t *c, host_t *h);

/* A request's deadline d: expire() must look no later than d. */
static void deadline_note(h1_ctx_t *c, apr_time_t d)
{
    if (!c->next_deadline || d < c->next_deadline) {
        c->next_deadline = d;
    }
}

/* Completes the request: the connection is kept only when keep says the
 * exchange ended cleanly. Queued requests of the host may now go. */
static void slot_finish(h1_ctx_t *c, slot_t *s, bff_fetch_err_e err,
                        const char *msg, int keep)
{
    bff_fetch_req_t *req = s->req;
    host_t *h = s->host;

    if (s->conn) {
        conn_t *cn = s->conn;
        if (keep) {
            cn->nreq++;
            cn->slot = NULL;
            conn_idle(c, cn);
        }
        else {
            conn_close(c, cn);
        }
        s->conn = NULL;
    }
    if (s->state == S_QUEUED) {
        queue_remove(h, s);
    }
    req->err = err;
    req->errmsg = msg;
    req->elapsed = apr_time_now() - s->start;
    if (err == BFF_FETCH_OK) {
        req->status = s->ps.status;
        req->resp = s->body.data;
        req->resp_len = s->body.len;
        req->resp_headers = s->hdrs.len ? s->hdrs.data : "";
        req->resp_headers_len = s->hdrs.len;
    }
    else {
        req->status = 0;
        req->resp = NULL;
        req->resp_len = 0;
        req->resp_headers = NULL;
        req->resp_headers_len = 0;
    }
    s->state = S_DONE;
    s->host = NULL;
    c->nactive--;
    done_push(c, s);
    host_kick(c, h);
}

static void slot_fail_errno(h1_ctx_t *c, slot_t *s, bff_fetch_err_e err,
                            const char *what, int e)
{
    char ebuf[120];

    apr_strerror(APR_FROM_OS_ERROR(e), ebuf, sizeof(ebuf));
    apr_snprintf(s->errbuf, sizeof(s->errbuf), "%s %s:%u: %s", what,
                 s->host->name, (unsigned)s->host->port, ebuf);
    slot_finish(c, s, err, s->errbuf, 0);
}

/* A queued request whose whole timeout passed without a connection. */
static void pool_expired(h1_ctx_t *c, slot_t *s, apr_time_t now)
{
    apr_snprintf(s->errbuf, sizeof(s->errbuf), "no connection to %s:%u "
                 "within %ld ms: all %ld in use", s->host->name,
                 (unsigned)s->host->port,
                 (long)apr_time_as_msec(now - s->start), c->max_host);
    slot_finish(c, s, BFF_FETCH_EPOOL, s->errbuf, 0);
}

/* Starts queued requests while the host has a connection for them (one
 * whose timeout passed in the queue fails instead). Not reentrant: a
 * request that fails at once completes from inside the loop, which then
 * simply goes on. */
static void host_kick(h1_ctx_t *c, host_t *h)
{
    if (!h || h->kicking) {
        return;
    }
    h->kicking = 1;
    while (h->qhead && (h->idle || c->max_host <= 0
                        || h->nconns < c->max_host)) {
        slot_t *s = h->qhead;
        apr_time_t now = apr_time_now();
        if (now >= s->deadline) {
            pool_expired(c, s, now);    /* leaves the queue */
            continue;
        }
        h->qhead = s->next;
        if (!h->qhead) {
            h->qtail = NULL;
        }
        s->next = NULL;
        s->state = S_CONNECTING;   /* leaves the queue */
        slot_connect(c, s, 0);
    }
    h->kicking = 0;
}

/* Tries the host's addresses, from the one that worked last, until one
 * connects or is in progress. */
static void conn_try(h1_ctx_t *c, slot_t *s)
{
    conn_t *cn = s->conn;
    host_t *h = s->host;
    int e = 0;

    for (; cn->tried < h->naddrs; cn->tried++) {
        int i = (h->pref + cn->tried) % h->naddrs;
        struct sockaddr *sa = (struct sockaddr *)&h->addr[i];
        int fd = open_socket(sa->sa_family);

        if (fd < 0) {
            e = errno;
            continue;
        }
        if (conn_watch(c, cn, fd) != 0) {
            e = errno;
            close(fd);
            continue;
        }
        cn->fd = fd;
        cn->addr = i;
        if (connect(fd, sa, h->addrlen[i]) == 0) {
            h->pref = i;
            s->state = S_EXCHANGE;
            slot_send(c, s);
            return;
        }
        if (errno == EINPROGRESS) {
            s->state = S_CONNECTING;
            return;
        }
        e = errno;
        conn_close_fd(c, cn);
    }
    slot_fail_errno(c, s, BFF_FETCH_ECONNECT, "connect to", e ? e : ECONNREFUSED);
}

/* An idle connection of the host that is still alive, unless fresh asks
 * for a new one; else opens a new connection (the host has room for it). */
static void slot_connect(h1_ctx_t *c, slot_t *s, int fresh)
{
    host_t *h = s->host;
    apr_time_t now;
    conn_t *cn;

    now = apr_time_now();
    idle_expire(c, now);
    while (!fresh && (cn = h->idle) != NULL) {
        idle_unlink(c, cn);
        if (conn_alive(cn)) {
            conn_attach(s, cn);
            s->req->reused_conn = 1;
            s->state = S_EXCHANGE;
            slot_send(c, s);
            return;
        }
        conn_close(c, cn);
    }
    /* the connect timeout bounds the name lookup and the connect */
    s->conn_deadline = s->req->connect_timeout_ms > 0
        ? now + apr_time_from_msec(s->req->connect_timeout_ms)
        : s->deadline;
    if (s->conn_deadline > s->deadline) {
        s->conn_deadline = s->deadline;
    }
    deadline_note(c, s->conn_deadline);
    if (host_resolve(h, s->conn_deadline > now
                        ? (long)apr_time_as_msec(s->conn_deadline - now) : 0,
                     s->errbuf, sizeof(s->errbuf)) != 0) {
        slot_finish(c, s, BFF_FETCH_ECONNECT, s->errbuf, 0);
        return;
    }
    cn = conn_new(c, h);
    if (!cn) {
        slot_finish(c, s, BFF_FETCH_EINTERNAL, "out of memory", 0);
        return;
    }
    conn_attach(s, cn);
    s->req->reused_conn = 0;
    conn_try(c, s);
}

/* The idle connection (or a new one) for s, or a place in the host's
 * queue when the host is at its connection limit. */
static void slot_begin(h1_ctx_t *c, slot_t *s)
{
    host_t *h = s->host;

    if (!h->idle && c->max_host > 0 && h->nconns >= c->max_host) {
        s->state = S_QUEUED;
        s->next = NULL;
        if (h->qtail) {
            h->qtail->next = s;
        }
        else {
            h->qhead = s;
        }
        h->qtail = s;
        return;
    }
    s->state = S_CONNECTING;
    slot_connect(c, s, 0);
}

/* Ready for the response to s->req, keeping its header fields. */
static void parser_init(slot_t *s)
{
    bff_h1_init(&s->ps, &s->body, s->req->max_body, s->head_req);
    s->hdrs.len = 0;
    s->ps.headers = &s->hdrs;
}

/* A reused connection failed before any response byte: most likely the
 * backend closed it as we sent (keep-alive race) and did not see the
 * request. Once, on a fresh connection, as browsers do; but a request
 * that must not run twice (POST, PUT, PATCH, DELETE) may have been
 * processed, so once a byte of it was written it fails instead. */
static int slot_retry(h1_ctx_t *c, slot_t *s)
{
    if (s->retried || s->rx > 0 || !s->conn || s->conn->nreq == 0
        || (s->out_off > 0 && !bff_fetch_may_resend(s->req->method))) {
        return 0;
    }
    s->retried = 1;
    conn_close(c, s->conn);
    s->conn = NULL;
    s->out_off = 0;
    parser_init(s);
    s->state = S_CONNECTING;
    slot_connect(c, s, 1);
    return 1;
}

static void slot_io_error(h1_ctx_t *c, slot_t *s, const char *what, int e)
{
    if (!slot_retry(c, s)) {
        slot_fail_errno(c, s, BFF_FETCH_EPROTO, what, e);
    }
}

static void slot_send(h1_ctx_t *c, slot_t *s)
{
    while (s->out_off < s->out.len) {
        ssize_t n = send(s->conn->fd, s->out.data + s->out_off,
                         s->out.len - s->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            s->out_off += (apr_size_t)n;
        }
        else if (n < 0 && errno == EINTR) {
            continue;
        }
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;   /* the rest on POLLOUT */
        }
        else {
            slot_io_error(c, s, "send to", n < 0 ? errno : EPIPE);
            return;
        }
    }
}

static void on_connected(h1_ctx_t *c, slot_t *s)
{
    conn_t *cn = s->conn;
    int e = 0;
    socklen_t len = sizeof(e);

    if (getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) {
        e = errno;
    }
    if (e == 0) {
        cn->host->pref = cn->addr;
        s->state = S_EXCHANGE;
        slot_send(c, s);
        return;
    }
    if (e == EINPROGRESS || e == EALREADY) {
        return;
    }
    conn_close_fd(c, cn);
    cn->tried++;
    if (cn->tried < s->host->naddrs) {
        conn_try(c, s);
        return;
    }
    slot_fail_errno(c, s, BFF_FETCH_ECONNECT, "connect to", e);
}

static bff_fetch_err_e map_h1(bff_h1_rc_e rc)
{
    switch (rc) {
    case BFF_H1_ETOOBIG: return BFF_FETCH_ETOOBIG;
    case BFF_H1_ENOMEM:  return BFF_FETCH_EINTERNAL;
    default:             return BFF_FETCH_EPROTO;
    }
}

/* The response is complete: the connection goes back to the pool only
 * when the backend allows it, the whole request went out and nothing
 * followed the response (stray bytes would be taken for the next one). */
static void on_response(h1_ctx_t *c, slot_t *s, int clean)
{
    int keep = clean && s->ps.keep_alive && s->out_off == s->out.len;

    slot_finish(c, s, BFF_FETCH_OK, NULL, keep);
}

static void on_eof(h1_ctx_t *c, slot_t *s)
{
    bff_h1_rc_e rc;

    if (s->rx == 0) {
        if (!slot_retry(c, s)) {
            apr_snprintf(s->errbuf, sizeof(s->errbuf), "%s:%u closed the "
                         "connection without a response", s->host->name,
                         (unsigned)s->host->port);
            slot_finish(c, s, BFF_FETCH_EPROTO, s->errbuf, 0);
        }
        return;
    }
    rc = bff_h1_eof(&s->ps);
    if (rc == BFF_H1_DONE) {
        on_response(c, s, 0);
    }
    else {
        slot_finish(c, s, map_h1(rc), s->ps.errmsg, 0);
    }
}

/* Reads what is there. A full buffer suggests more is waiting, so it reads
 * again; a short read returns to epoll without an extra EAGAIN recv, as
 * any byte that arrives later is a new edge, unless the peer's close came
 * with the event (hup): it makes no edge of its own, so it is read now. */
static void slot_recv(h1_ctx_t *c, slot_t *s, int hup)
{
    for (;;) {
        ssize_t n = recv(s->conn->fd, c->rbuf, RBUF_SIZE, 0);
        apr_size_t used = 0;
        bff_h1_rc_e rc;

        if (n == 0) {
            on_eof(c, s);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                slot_io_error(c, s, "receive from", errno);
            }
            return;
        }
        s->rx += (apr_size_t)n;
        rc = bff_h1_feed(&s->ps, c->rbuf, (apr_size_t)n, &used);
        if (rc == BFF_H1_DONE) {
            on_response(c, s, used == (apr_size_t)n);
            return;
        }
        if (rc != BFF_H1_AGAIN) {
            slot_finish(c, s, map_h1(rc), s->ps.errmsg, 0);
            return;
        }
        if (n < RBUF_SIZE && !hup) {
            return;
        }
    }
}

static void slot_events(h1_ctx_t *c, slot_t *s, uint32_t events)
{
    if (s->state == S_CONNECTING) {
        on_connected(c, s);
        return;
    }
    if ((events & EPOLLOUT) && s->out_off < s->out.len) {
        slot_send(c, s);
    }
    if (s->state == S_EXCHANGE
        && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        slot_recv(c, s, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
    }
}

/* Gives the slot back to the free list, with its buffers unless a large
 * response made them worth returning to the allocator. */
static void slot_free(h1_ctx_t *c, slot_t *s)
{
    if (s->req && s->req->impl == s) {
        s->req->impl = NULL;
    }
    s->req = NULL;
    s->state = S_FREE;
    if (s->body.cap > KEEP_BUF_MAX) {
        bff_h1_buf_free(&s->body);
    }
    s->hdrs.len = 0;
    if (s->out.cap > KEEP_BUF_MAX) {
        bff_h1_buf_free(&s->out);
    }
    s->next = c->free_slots;
    c->free_slots = s;
}

static slot_t *slot_get(h1_ctx_t *c)
{
    slot_t *s = c->free_slots;

    if (s) {
        c->free_slots = s->next;
    }
    else {
        s = calloc(1, sizeof(*s));
        if (!s) {
            return NULL;
        }
        s->next_all = c->all_slots;
        c->all_slots = s;
    }
    s->next = NULL;
    s->host = NULL;
    s->conn = NULL;
    s->retried = 0;
    s->rx = 0;
    s->out_off = 0;
    s->errbuf[0] = '\0';
    return s;
}

/* ----------------------------------------------------------- request -- */

/* Checks one "Name: value" header. Returns its size on the wire (0: not
 * sent, as curl does not send a header with an empty value), or -1 with
 * *err set. CR and LF are refused anywhere: no header injection. */
static long header_check(const char *hd, int *is_host, const char **err)
{
    const char *colon = strchr(hd, ':'), *v;
    apr_size_t nlen;

    *is_host = 0;
    if (!colon || !bff_h1_is_token(hd, (apr_size_t)(colon - hd))) {
        *err = "bad request header name";
        return -1;
    }
    nlen = (apr_size_t)(colon - hd);
    for (v = colon + 1; *v; v++) {
        if ((unsigned char)*v < 0x20 ? *v != '\t' : *v == 0x7f) {
            *err = "control character (CR, LF, ...) in a request header";
            return -1;
        }
    }
    if ((nlen == 14 && !strncasecmp(hd, "Content-Length", 14))
        || (nlen == 17 && !strncasecmp(hd, "Transfer-Encoding", 17))) {
        *err = "request framing headers are the fetcher's";
        return -1;
    }
    *is_host = nlen == 4 && !strncasecmp(hd, "Host", 4);
    for (v = colon + 1; *v == ' ' || *v == '\t'; v++) {
    }
    return *v ? (long)(v - hd) + (long)strlen(v) + 2 : 0;
}

/* Methods that carry content get a Content-Length even when empty, since
 * servers may answer 411 otherwise. */
static int wants_length(const char *m)
{
    return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
}

static void put(bff_h1_buf_t *b, const char *s, apr_size_t n)
{
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* The whole request in s->out, sized first so it is built with a single
 * (usually no) allocation and sent with a single send. */
static const char *build_request(slot_t *s, const url_t *u, const host_t *h)
{
    const bff_fetch_req_t *req = s->req;
    const char *err = NULL;
    char clbuf[32];
    apr_size_t need, cl_len = 0, mlen = strlen(req->method);
    int i, is_host, custom_host = 0;

    if (!bff_h1_is_token(req->method, mlen)) {
        return "bad request method";
    }
    need = mlen + 1 + 1 + u->targetlen + 11
           + 6 + strlen(h->hosthdr) + 2 + 2 + req->body_len;
    for (i = 0; req->headers && i < req->headers->nelts; i++) {
        long n = header_check(APR_ARRAY_IDX(req->headers, i, const char *),
                              &is_host, &err);
        if (n < 0) {
            return err;
        }
        custom_host |= is_host && n > 0;
        need += (apr_size_t)n;
    }
    if (req->body || wants_length(req->method)) {
        cl_len = (apr_size_t)apr_snprintf(clbuf, sizeof(clbuf),
                                          "Content-Length: %" APR_SIZE_T_FMT
                                          "\r\n", req->body ? req->body_len : 0);
        need += cl_len;
    }
    if (bff_h1_buf_reserve(&s->out, need, need) != 0) {
        return "out of memory";
    }
    s->out.len = 0;
    put(&s->out, req->method, mlen);
    put(&s->out, " ", 1);
    if (u->targetlen == 0 || u->target[0] == '?') {
        put(&s->out, "/", 1);   /* "http://h" and "http://h?q" */
    }
    put(&s->out, u->target, u->targetlen);
    put(&s->out, " HTTP/1.1\r\n", 11);
    if (!custom_host) {
        put(&s->out, "Host: ", 6);
        put(&s->out, h->hosthdr, strlen(h->hosthdr));
        put(&s->out, "\r\n", 2);
    }
    for (i = 0; req->headers && i < req->headers->nelts; i++) {
        const char *hd = APR_ARRAY_IDX(req->headers, i, const char *);
        long n = header_check(hd, &is_host, &err);
        if (n > 0) {
            put(&s->out, hd, (apr_size_t)n - 2);
            put(&s->out, "\r\n", 2);
        }
    }
    put(&s->out, clbuf, cl_len);
    put(&s->out, "\r\n", 2);
    if (req->body) {
        put(&s->out, req->body, req->body_len);
    }
    return NULL;
}

/* ------------------------------------------------------------ vtable -- */

const char *bff_fetch_err_str(bff_fetch_err_e err)
{
    switch (err) {
    case BFF_FETCH_OK:        return "ok";
    case BFF_FETCH_ECONNECT:  return "connect error";
    case BFF_FETCH_ETIMEOUT:  return "timeout";
    case BFF_FETCH_ETOOBIG:   return "response too large";
    case BFF_FETCH_EPROTO:    return "bad response";
    case BFF_FETCH_EABORTED:  return "aborted";
    case BFF_FETCH_EPOOL:     return "pool exhausted";
    default:                  return "internal error";
    }
}

int bff_fetch_may_resend(const char *method)
{
    return !strcmp(method, "GET") || !strcmp(method, "HEAD")
           || !strcmp(method, "OPTIONS") || !strcmp(method, "TRACE");
}

static apr_status_t fail_start(bff_fetch_req_t *req, const char *msg)
{
    req->err = BFF_FETCH_EINTERNAL;
    req->errmsg = msg;
    return APR_EGENERAL;
}

static apr_status_t h1_start(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    h1_ctx_t *c = f->ctx;
    const char *err = NULL;
    url_t u;
    slot_t *s;
    host_t *h;

    if (is_https(req->url)) {
        return bff_fetch_start(c->curl, req);
    }
    req->impl = NULL;
    req->err = BFF_FETCH_OK;
    req->errmsg = NULL;
    req->status = 0;
    req->resp = NULL;
    req->resp_len = 0;
    req->resp_headers = NULL;
    req->resp_headers_len = 0;
    req->reused_conn = 0;
    req->elapsed = 0;
    if (!req->url || !req->method) {
        return fail_start(req, "no URL or method");
    }
    if (parse_url(&u, req->url) != 0) {
        return fail_start(req, strncasecmp(req->url, "http://", 7)
                          ? "unsupported URL scheme" : "bad URL");
    }
    if (!(h = host_get(c, &u, &err))) {
        return fail_start(req, err);
    }
    if (!(s = slot_get(c))) {
        return fail_start(req, "out of memory");
    }
    s->req = req;
    if ((err = build_request(s, &u, h)) != NULL) {
        slot_free(c, s);
        return fail_start(req, err);
    }
    req->impl = s;
    s->host = h;
    s->head_req = !strcmp(req->method, "HEAD");
    s->start = apr_time_now();
    /* no timeout is no limit, as with curl */
    s->deadline = req->timeout_ms > 0
        ? s->start + apr_time_from_msec(req->timeout_ms) : APR_INT64_MAX;
    deadline_note(c, s->deadline);
    h->used = s->start;
    parser_init(s);
    c->nactive++;
    /* under way at once: the backend works while the next one is built */
    slot_begin(c, s);
    return APR_SUCCESS;
}

/* Times out whatever passed its deadline; returns the next deadline (0:
 * none). The requests are scanned only when the earliest deadline noted
 * has passed (it may belong to one that completed since). */
static apr_time_t expire(h1_ctx_t *c, apr_time_t now)
{
    slot_t *s;

    if (!c->next_deadline || now < c->next_deadline) {
        return c->next_deadline;
    }
    /* noted again below; a request that expiring starts (from a host's
     * queue) notes its own */
    c->next_deadline = 0;
    for (s = c->all_slots; s; s = s->next_all) {
        apr_time_t d;
        if (s->state != S_QUEUED && s->state != S_CONNECTING
            && s->state != S_EXCHANGE) {
            continue;
        }
        d = s->state == S_CONNECTING ? s->conn_deadline : s->deadline;
        if (now >= d && s->state == S_QUEUED) {
            pool_expired(c, s, now);
        }
        else if (now >= d) {
            apr_snprintf(s->errbuf, sizeof(s->errbuf), "%s after %ld ms",
                         s->state == S_CONNECTING ? "connect timeout"
                                                  : "timeout",
                         (long)apr_time_as_msec(now - s->start));
            slot_finish(c, s, BFF_FETCH_ETIMEOUT, s->errbuf, 0);
        }
        else {
            deadline_note(c, d);
        }
    }
    return c->next_deadline;
}

/* Handles the events of one epoll_wait. */
static void handle_events(h1_ctx_t *c, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        conn_t *cn = c->evs[i].data.ptr;
        slot_t *s;

        if (!cn) {
            eventfd_t v;
            (void)eventfd_read(c->wakefd, &v);   /* h1_wait sees woken */
            continue;
        }
        /* closed, idle, or given to another exchange while this batch
         * was handled: a stale event only costs a read that would block */
        s = cn->slot;
        if (cn->fd >= 0 && s && (s->state == S_CONNECTING
                                 || s->state == S_EXCHANGE)) {
            slot_events(c, s, c->evs[i].events);
        }
    }
    /* no event names them any more */
    while (c->closed) {
        conn_t *cn = c->closed;
        c->closed = cn->hnext;
        cn->hnext = c->free_conns;
        c->free_conns = cn;
    }
}

/* Waits for I/O on our sockets (and curl's, when it has work) for at most
 * timeout_ms, then handles what happened. */
static apr_status_t poll_once(h1_ctx_t *c, int timeout_ms)
{
    int n;

    if (bff_fetch_curl_in_flight(c->curl) > 0) {
        /* curl polls its own sockets and the epoll set */
        struct pollfd pfd;
        apr_status_t rv;
        pfd.fd = c->epfd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        rv = bff_fetch_curl_poll(c->curl, &pfd, 1, timeout_ms);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (!pfd.revents) {
            return APR_SUCCESS;
        }
        timeout_ms = 0;
    }
    n = epoll_wait(c->epfd, c->evs, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        return errno == EINTR ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
    }
    handle_events(c, n);
    return APR_SUCCESS;
}

static apr_status_t h1_wait(bff_fetcher_t *f, bff_fetch_req_t **done,
                            long max_wait_ms)
{
    h1_ctx_t *c = f->ctx;
    apr_time_t until = apr_time_now() + apr_time_from_msec(max_wait_ms);
    int polled = 0;

    *done = NULL;
    for (;;) {
        apr_time_t now, next;
        apr_interval_time_t left;
        int curl_busy = bff_fetch_curl_in_flight(c->curl) > 0;
        apr_status_t rv;

        if (!c->done_head
            && __atomic_exchange_n(&c->woken, 0, __ATOMIC_ACQ_REL)) {
            return APR_EINTR;
        }
        if (c->done_head) {
            slot_t *s = c->done_head;
            c->done_head = s->next;
            if (!c->done_head) {
                c->done_tail = NULL;
            }
            s->next = NULL;
            *done = s->req;
            return APR_SUCCESS;
        }
        if (c->nactive == 0) {
            return curl_busy ? bff_fetch_wait(c->curl, done,
                                              (long)apr_time_as_msec(until - apr_time_now()))
                             : APR_EOF;
        }
        now = apr_time_now();
        idle_expire(c, now);
        next = expire(c, now);
        if (c->done_head) {
            continue;
        }
        left = until - now;
        if (left <= 0) {
            if (polled) {
                return APR_TIMEUP;
            }
            left = 0;   /* a zero wait still looks once */
        }
        if (next && next - now < left) {
            left = next - now;
        }
        if (left > apr_time_from_msec(MAX_POLL_MS)) {
            left = apr_time_from_msec(MAX_POLL_MS);
        }
        /* rounded up: waking just before a deadline would spin */
        rv = poll_once(c, (int)((left + 999) / 1000));
        polled = 1;
        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (curl_busy && bff_fetch_wait(c->curl, done, 0) == APR_SUCCESS
            && *done) {
            return APR_SUCCESS;
        }
    }
}

static void h1_release(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    h1_ctx_t *c = f->ctx;
    slot_t *s = req->impl;

    if (is_https(req->url)) {
        bff_fetch_release(c->curl, req);
        return;
    }
    if (s && s->req == req) {
        if (s->state == S_DONE) {
            done_remove(c, s);
        }
        else if (s->state != S_FREE) {
            /* not complete: a misuse, but never leave a socket half-read */
            slot_finish(c, s, BFF_FETCH_EABORTED, "aborted", 0);
            done_remove(c, s);
        }
        slot_free(c, s);
    }
    req->resp = NULL;
    req->resp_headers = NULL;
}

/* Cancels what is in flight: half-done exchanges cannot be resumed, so
 * their connections are closed; completed requests are released. */
static void h1_reset(bff_fetcher_t *f)
{
    h1_ctx_t *c = f->ctx;
    host_t *h;
    slot_t *s;

    for (h = c->hosts; h; h = h->next) {
        h->qhead = h->qtail = NULL;   /* their slots are freed below */
    }
    for (s = c->all_slots; s; s = s->next_all) {
        if (s->state == S_FREE) {
            continue;
        }
        if (s->state != S_DONE) {
            if (s->conn) {
                conn_close(c, s->conn);
                s->conn = NULL;
            }
            s->req->err = BFF_FETCH_EABORTED;
            s->req->errmsg = "aborted";
            c->nactive--;
        }
        s->req->resp = NULL;
        slot_free(c, s);
    }
    c->done_head = c->done_tail = NULL;
    bff_fetch_reset(c->curl);
}

static void h1_destroy(bff_fetcher_t *f)
{
    h1_ctx_t *c = f->ctx;
    slot_t *s, *sn;
    conn_t *cn;
    host_t *h;

    if (!c) {
        return;
    }
    h1_reset(f);
    while ((cn = c->lru_head) != NULL) {
        idle_unlink(c, cn);
        conn_close(c, cn);
    }
    while ((cn = c->closed) != NULL) {
        c->closed = cn->hnext;
        free(cn);
    }
    while ((cn = c->free_conns) != NULL) {
        c->free_conns = cn->hnext;
        free(cn);
    }
    while ((h = c->hosts) != NULL) {
        c->hosts = h->next;
        host_lookup_drop(h);
        free(h);
    }
    for (s = c->all_slots; s; s = sn) {
        sn = s->next_all;
        bff_h1_buf_free(&s->out);
        bff_h1_buf_free(&s->body);
        bff_h1_buf_free(&s->hdrs);
        free(s);
    }
    c->curl->vt->destroy(c->curl);
    close(c->wakefd);
    close(c->epfd);
    free(c);
    f->ctx = NULL;
}

/* From any thread: the flag says why the wait ended, the eventfd (or
 * curl's own wakeup, while curl alone is waited for) ends it. While the
 * flag is set h1_wait returns before it blocks again, so only the wake
 * that sets it writes: many threads handing requests over between two
 * turns of the waiter cost one write, not one each. */
static void h1_wake(bff_fetcher_t *f)
{
    h1_ctx_t *c = f->ctx;

    if (c && !__atomic_exchange_n(&c->woken, 1, __ATOMIC_ACQ_REL)) {
        (void)eventfd_write(c->wakefd, 1);
        c->curl->vt->wake(c->curl);
    }
}

static const bff_fetch_vtable_t h1_vtable = {
    "h1+curl", h1_start, h1_wait, h1_release, h1_reset, h1_destroy, h1_wake
};

static apr_status_t fetcher_cleanup(void *data)
{
    h1_destroy(data);
    return APR_SUCCESS;
}

apr_status_t bff_fetch_h1_create(bff_fetcher_t **out,
                                 const bff_fetch_curl_opts_t *opts,
                                 apr_pool_t *p)
{
    bff_fetcher_t *f = apr_pcalloc(p, sizeof(*f));
    h1_ctx_t *c = calloc(1, sizeof(*c));
    apr_status_t rv;

    *out = NULL;
    if (!c) {
        return APR_ENOMEM;
    }
    /* created first, so its pool cleanup runs after ours (which destroys
     * it; destroying twice is harmless) */
    rv = bff_fetch_curl_create(&c->curl, opts, p);
    if (rv != APR_SUCCESS) {
        free(c);
        return rv;
    }
    c->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->wakefd < 0 || c->epfd < 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    else {
        /* the wake-up's events name no connection */
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = NULL;
        rv = epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->wakefd, &ev) == 0
             ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
    }
    if (rv != APR_SUCCESS) {
        if (c->wakefd >= 0) {
            close(c->wakefd);
        }
        if (c->epfd >= 0) {
            close(c->epfd);
        }
        c->curl->vt->destroy(c->curl);
        free(c);
        return rv;
    }
    c->max_idle = opts && opts->max_cached_connections > 0
                  ? opts->max_cached_connections : DEFAULT_IDLE;
    c->max_host = opts ? opts->max_host_connections : 0;
    c->idle_timeout = apr_time_from_msec(opts && opts->idle_timeout_ms > 0
                                         ? opts->idle_timeout_ms
                                         : BFF_FETCH_IDLE_MS);
    f->vt = &h1_vtable;
    f->ctx = c;
    apr_pool_cleanup_register(p, f, fetcher_cleanup, apr_pool_cleanup_null);
    *out = f;
    return APR_SUCCESS;
}
