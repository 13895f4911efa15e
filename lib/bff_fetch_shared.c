/*
 * One fetcher for all worker threads of a child, leader/follower style.
 *
 * In httpd 2.4 a worker thread stays with its request while the backends
 * answer, so a child holds as many requests in flight as it has threads.
 * Given a fetcher each, the threads would each keep their own keep-alive
 * connections (threads x backends of them) and each poll its own few
 * sockets. Here the inner fetcher, its connections and its per-origin
 * bound are the child's: a thread's handle hands its requests over, and
 * one waiting thread at a time (the leader) drives the inner fetcher for
 * everybody, handing each completed request to its owner's condition.
 * When the leader's own request completes it passes the lead to a thread
 * still waiting. A waiting thread is woken only for a completion it can
 * act on: a quiet request's 2xx reply (bff_fetch.h) stays in its queue,
 * without a wake-up, until another of its requests completes.
 *
 * Who may touch the inner fetcher: the leader, with or without the mutex;
 * or a thread holding the mutex while no thread leads. Requests started
 * while a thread leads wait in a queue, and the leader is woken (the
 * inner fetcher's wake) to start them; releases wait for its next turn.
 *
 * A request abandoned by a reset is cancelled in the inner fetcher (its
 * release: the connection of a half-done exchange is closed, a queued
 * call leaves its queue), at once when the resetting thread may touch
 * the inner fetcher, else by the leader, woken for it. Until then the
 * inner fetcher still reads its method, URL and body (as it does after
 * a start: retries, libcurl's POSTFIELDS), after its owner's pool is
 * gone: each request is copied into storage of its own, reused from one
 * request to the next.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "bff_fetch.h"

/* SR_CANCELLED: abandoned while running, on sh->releases until the
 * leader's next turn cancels it in the inner fetcher */
enum { SR_FREE, SR_PENDING, SR_RUNNING, SR_DONE, SR_RETURNED, SR_DROPPED,
       SR_CANCELLED };

#define SIG_BATCH 64

typedef struct sreq_t sreq_t;
typedef struct handle_t handle_t;

/* requests in order, linked by next */
typedef struct {
    sreq_t *head, *tail;
} sq_t;

struct sreq_t {
    bff_fetch_req_t in;           /* what the inner fetcher runs */
    bff_fetch_req_t *user;        /* NULL: abandoned */
    handle_t *owner;              /* NULL: abandoned */
    sreq_t *next;                 /* pending, releases, done or free list */
    sreq_t *next_all;
    sreq_t *oprev, *onext;        /* the owner's requests */
    int state;
    int started;                  /* the inner fetcher knows it */
    int loud;                     /* done, and its owner must be woken */
    char *store;                  /* URL, method and body copies */
    apr_size_t cap;
};

struct handle_t {
    bff_fetch_shared_t *sh;
    apr_thread_cond_t *cond;
    sreq_t *own;                  /* every request not yet released */
    sq_t done;                    /* delivered, not yet returned */
    int ndone;                    /* in done */
    int nloud;                    /* in done, and worth a wake-up */
    int outstanding;              /* pending, running or done */
    int waiting;
    int to_signal;                /* in sh->sig */
    handle_t *wnext, *wprev;      /* sh->waiters */
};

struct bff_fetch_shared_t {
    apr_thread_mutex_t *mu;
    bff_fetcher_t *inner;
    handle_t *leader;
    handle_t *waiters_head, *waiters_tail;
    sq_t pending;                 /* to be started by the leader */
    sreq_t *releases;             /* to be released (or cancelled) by the
                                     leader */
    sreq_t *free_list;
    sreq_t *all;
    /* owners to wake, signalled once the mutex is released: woken under
     * it, each would at once block on it again (a lock convoy) */
    handle_t *sig[SIG_BATCH];
    int nsig;
    int signalling;               /* threads signalling, atomic */
    bff_fetch_shared_stats_t stats;
};

/* ------------------------------------------------------------ lists -- */

static void sq_push(sq_t *q, sreq_t *sr)
{
    sr->next = NULL;
    if (q->tail) {
        q->tail->next = sr;
    }
    else {
        q->head = sr;
    }
    q->tail = sr;
}

static sreq_t *sq_pop(sq_t *q)
{
    sreq_t *sr = q->head;

    if (sr) {
        q->head = sr->next;
        if (!q->head) {
            q->tail = NULL;
        }
        sr->next = NULL;
    }
    return sr;
}

static void own_link(handle_t *h, sreq_t *sr)
{
    sr->oprev = NULL;
    sr->onext = h->own;
    if (h->own) {
        h->own->oprev = sr;
    }
    h->own = sr;
}

static void own_unlink(handle_t *h, sreq_t *sr)
{
    if (sr->oprev) {
        sr->oprev->onext = sr->onext;
    }
    else if (h->own == sr) {
        h->own = sr->onext;
    }
    if (sr->onext) {
        sr->onext->oprev = sr->oprev;
    }
    sr->oprev = sr->onext = NULL;
}

static void waiter_link(bff_fetch_shared_t *sh, handle_t *h)
{
    h->wnext = NULL;
    h->wprev = sh->waiters_tail;
    if (sh->waiters_tail) {
        sh->waiters_tail->wnext = h;
    }
    else {
        sh->waiters_head = h;
    }
    sh->waiters_tail = h;
    h->waiting = 1;
}

static void waiter_unlink(bff_fetch_shared_t *sh, handle_t *h)
{
    if (!h->waiting) {
        return;
    }
    if (h->wprev) {
        h->wprev->wnext = h->wnext;
    }
    else {
        sh->waiters_head = h->wnext;
    }
    if (h->wnext) {
        h->wnext->wprev = h->wprev;
    }
    else {
        sh->waiters_tail = h->wprev;
    }
    h->wnext = h->wprev = NULL;
    h->waiting = 0;
}

static void sreq_recycle(bff_fetch_shared_t *sh, sreq_t *sr)
{
    sr->state = SR_FREE;
    sr->user = NULL;
    sr->owner = NULL;
    sr->started = 0;
    sr->next = sh->free_list;
    sh->free_list = sr;
}

/* Gives the inner fetcher back its resources for sr and recycles it: at
 * once when this thread may touch the inner fetcher, else on the
 * leader's next turn. */
static void sreq_release(bff_fetch_shared_t *sh, handle_t *self, sreq_t *sr)
{
    if (!sr->started) {
        sreq_recycle(sh, sr);
    }
    else if (!sh->leader || sh->leader == self) {
        bff_fetch_release(sh->inner, &sr->in);
        sreq_recycle(sh, sr);
    }
    else {
        sr->state = SR_DROPPED;
        sr->next = sh->releases;
        sh->releases = sr;
    }
}

/* Cancels sr, a running request whose owner abandoned it: at once when
 * this thread may touch the inner fetcher, else on the leader's next
 * turn. Returns 1 when the leader must be woken for it. */
static int sreq_cancel(bff_fetch_shared_t *sh, sreq_t *sr)
{
    if (!sh->leader) {
        sh->stats.in_flight--;
        sh->stats.cancels++;
        bff_fetch_release(sh->inner, &sr->in);
        sreq_recycle(sh, sr);
        return 0;
    }
    sr->state = SR_CANCELLED;
    sr->next = sh->releases;
    sh->releases = sr;
    return 1;
}

/* The lead is free: the first waiting thread takes it (a completion for
 * a thread that is not waiting is found at its next wait). */
static void pass_lead(bff_fetch_shared_t *sh)
{
    if (!sh->leader && sh->waiters_head) {
        sh->stats.handoffs++;
        apr_thread_cond_signal(sh->waiters_head->cond);
    }
}

/* ------------------------------------------------------ inner calls -- */

/* A waiting owner is woken for a completion it can act on: one not
 * quiet (bff_fetch.h), or the last of its requests. */
static int wake_due(const handle_t *h)
{
    return h->nloud > 0 || (h->ndone > 0 && h->ndone == h->outstanding);
}

static void deliver(bff_fetch_shared_t *sh, sreq_t *sr)
{
    handle_t *h = sr->owner;

    sh->stats.in_flight--;
    if (sr->state == SR_CANCELLED) {
        /* abandoned, on sh->releases: released by the next drain */
        sr->state = SR_DROPPED;
        return;
    }
    sr->state = SR_DONE;
    sr->loud = !sr->in.quiet || sr->in.err != BFF_FETCH_OK
               || sr->in.status < 200 || sr->in.status > 299;
    sq_push(&h->done, sr);
    h->ndone++;
    h->nloud += sr->loud;
    if (!wake_due(h)) {
        sh->stats.held++;
        return;
    }
    if (h->waiting && !h->to_signal) {
        if (sh->nsig < SIG_BATCH) {
            h->to_signal = 1;
            sh->sig[sh->nsig++] = h;
        }
        else {
            apr_thread_cond_signal(h->cond);
        }
    }
}

/* Releases the mutex, then wakes the owners deliver() collected. A
 * handle is not destroyed while a thread signals it (sh_destroy waits). */
static void unlock_and_signal(bff_fetch_shared_t *sh)
{
    handle_t *sig[SIG_BATCH];
    int i, n = sh->nsig;

    for (i = 0; i < n; i++) {
        sig[i] = sh->sig[i];
        sig[i]->to_signal = 0;
    }
    sh->nsig = 0;
    if (n) {
        __atomic_add_fetch(&sh->signalling, 1, __ATOMIC_ACQ_REL);
    }
    apr_thread_mutex_unlock(sh->mu);
    if (n) {
        for (i = 0; i < n; i++) {
            apr_thread_cond_signal(sig[i]->cond);
        }
        __atomic_sub_fetch(&sh->signalling, 1, __ATOMIC_ACQ_REL);
    }
}

/* Hands sr to the inner fetcher; one that fails at once is delivered. */
static apr_status_t inner_start(bff_fetch_shared_t *sh, sreq_t *sr)
{
    apr_status_t rv = bff_fetch_start(sh->inner, &sr->in);

    sr->state = SR_RUNNING;
    sr->started = rv == APR_SUCCESS;
    return rv;
}

/* Starts the queued requests and gives back released ones; only the
 * leader calls it, holding the mutex. */
static void drain(bff_fetch_shared_t *sh)
{
    sreq_t *sr;

    while ((sr = sh->releases) != NULL) {
        sh->releases = sr->next;
        if (sr->state == SR_CANCELLED) {
            sh->stats.in_flight--;
            sh->stats.cancels++;
        }
        bff_fetch_release(sh->inner, &sr->in);
        sreq_recycle(sh, sr);
    }
    while ((sr = sq_pop(&sh->pending)) != NULL) {
        if (sr->state == SR_DROPPED) {
            sh->stats.in_flight--;
            sreq_recycle(sh, sr);
        }
        else if (inner_start(sh, sr) != APR_SUCCESS) {
            deliver(sh, sr);
        }
    }
}

/* Drives the inner fetcher until this thread's next request completes,
 * its wait is over or the inner fetcher fails. Called and returns with
 * the mutex held and sh->leader == h. What one wait of the inner fetcher
 * completed is collected without the mutex and delivered under one
 * acquisition of it, not one each. */
static apr_status_t lead(bff_fetch_shared_t *sh, handle_t *h, apr_time_t until)
{
    int looked = 0;

    for (;;) {
        bff_fetch_req_t *d = NULL, *batch[SIG_BATCH];
        apr_interval_time_t left;
        apr_status_t rv;
        int i, n = 0;

        drain(sh);
        if (wake_due(h)) {
            return APR_SUCCESS;
        }
        if (h->outstanding == 0) {
            return APR_EOF;
        }
        left = until - apr_time_now();
        if (left <= 0) {
            if (looked) {
                return APR_TIMEUP;
            }
            left = 0;
        }
        unlock_and_signal(sh);
        rv = bff_fetch_wait(sh->inner, &d, (long)((left + 999) / 1000));
        while (rv == APR_SUCCESS && d) {
            batch[n++] = d;
            d = NULL;
            if (n == SIG_BATCH) {
                break;
            }
            rv = bff_fetch_wait(sh->inner, &d, 0);
        }
        apr_thread_mutex_lock(sh->mu);
        looked = 1;
        for (i = 0; i < n; i++) {
            deliver(sh, batch[i]->baton);
        }
        if (n) {
            continue;
        }
        if (rv == APR_EOF) {
            if (!sh->pending.head) {
                /* this thread's requests are done or lost: none running */
                return h->done.head ? APR_SUCCESS : APR_EOF;
            }
        }
        else if (rv != APR_TIMEUP && rv != APR_EINTR && rv != APR_SUCCESS) {
            return rv;
        }
    }
}

/* ----------------------------------------------------------- handle -- */

static apr_status_t copy_in(sreq_t *sr, const bff_fetch_req_t *req)
{
    apr_size_t ul = req->url ? strlen(req->url) + 1 : 0;
    apr_size_t ml = req->method ? strlen(req->method) + 1 : 0;
    apr_size_t bl = req->body ? req->body_len + 1 : 0;
    apr_size_t need = ul + ml + bl;
    char *p;

    if (need > sr->cap) {
        char *n = realloc(sr->store, need);
        if (!n) {
            return APR_ENOMEM;
        }
        sr->store = n;
        sr->cap = need;
    }
    sr->in = *req;
    sr->in.baton = sr;
    sr->in.impl = NULL;
    p = sr->store;
    if (req->url) {
        memcpy(p, req->url, ul);
        sr->in.url = p;
        p += ul;
    }
    if (req->method) {
        memcpy(p, req->method, ml);
        sr->in.method = p;
        p += ml;
    }
    if (req->body) {
        memcpy(p, req->body, req->body_len);
        p[req->body_len] = '\0';
        sr->in.body = p;
    }
    return APR_SUCCESS;
}

static void copy_out(bff_fetch_req_t *u, const bff_fetch_req_t *in)
{
    u->err = in->err;
    u->errmsg = in->errmsg;
    u->status = in->status;
    u->resp = in->resp;
    u->resp_len = in->resp_len;
    u->resp_headers = in->resp_headers;
    u->resp_headers_len = in->resp_headers_len;
    u->elapsed = in->elapsed;
    u->reused_conn = in->reused_conn;
    u->tls_failed = in->tls_failed;
}

static apr_status_t sh_start(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    handle_t *h = f->ctx;
    bff_fetch_shared_t *sh = h->sh;
    sreq_t *sr;
    apr_status_t rv;
    int wake = 0;

    apr_thread_mutex_lock(sh->mu);
    sr = sh->free_list;
    if (sr) {
        sh->free_list = sr->next;
    }
    else if ((sr = calloc(1, sizeof(*sr))) != NULL) {
        sr->next_all = sh->all;
        sh->all = sr;
    }
    else {
        apr_thread_mutex_unlock(sh->mu);
        req->err = BFF_FETCH_EINTERNAL;
        req->errmsg = "out of memory";
        return APR_ENOMEM;
    }
    if (copy_in(sr, req) != APR_SUCCESS) {
        sreq_recycle(sh, sr);
        apr_thread_mutex_unlock(sh->mu);
        req->err = BFF_FETCH_EINTERNAL;
        req->errmsg = "out of memory";
        return APR_ENOMEM;
    }
    sr->user = req;
    sr->owner = h;
    sr->next = NULL;
    req->impl = sr;
    if (!sh->leader) {
        rv = inner_start(sh, sr);
        if (rv != APR_SUCCESS) {
            copy_out(req, &sr->in);
            req->impl = NULL;
            sreq_recycle(sh, sr);
            apr_thread_mutex_unlock(sh->mu);
            return rv;
        }
    }
    else {
        sr->state = SR_PENDING;
        sq_push(&sh->pending, sr);
        wake = 1;
    }
    own_link(h, sr);
    h->outstanding++;
    sh->stats.in_flight++;
    apr_thread_mutex_unlock(sh->mu);
    if (wake) {
        sh->inner->vt->wake(sh->inner);
    }
    return APR_SUCCESS;
}

static apr_status_t sh_wait(bff_fetcher_t *f, bff_fetch_req_t **done,
                            long max_wait_ms)
{
    handle_t *h = f->ctx;
    bff_fetch_shared_t *sh = h->sh;
    apr_time_t until = apr_time_now() + apr_time_from_msec(max_wait_ms);
    apr_status_t rv = APR_SUCCESS;

    *done = NULL;
    apr_thread_mutex_lock(sh->mu);
    for (;;) {
        sreq_t *sr = sq_pop(&h->done);
        apr_time_t now;

        if (sr) {
            sr->state = SR_RETURNED;
            h->ndone--;
            h->nloud -= sr->loud;
            h->outstanding--;
            copy_out(sr->user, &sr->in);
            sr->user->impl = sr;
            *done = sr->user;
            rv = APR_SUCCESS;
            break;
        }
        if (h->outstanding == 0) {
            rv = APR_EOF;
            break;
        }
        if (rv != APR_SUCCESS) {
            break;    /* what the lead ended with */
        }
        if (!sh->leader) {
            sh->leader = h;
            sh->stats.leads++;
            rv = lead(sh, h, until);
            sh->leader = NULL;
            if (rv == APR_SUCCESS || rv == APR_EINTR) {
                rv = APR_SUCCESS;
            }
            continue;
        }
        now = apr_time_now();
        if (now >= until) {
            rv = APR_TIMEUP;
            break;
        }
        waiter_link(sh, h);
        apr_thread_cond_timedwait(h->cond, sh->mu, until - now);
        waiter_unlink(sh, h);
    }
    pass_lead(sh);
    unlock_and_signal(sh);
    return rv;
}

static void sh_release(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    handle_t *h = f->ctx;
    bff_fetch_shared_t *sh = h->sh;
    sreq_t *sr = req->impl;

    apr_thread_mutex_lock(sh->mu);
    if (sr && sr->user == req && sr->owner == h && sr->state == SR_RETURNED) {
        own_unlink(h, sr);
        sreq_release(sh, h, sr);
    }
    apr_thread_mutex_unlock(sh->mu);
    req->impl = NULL;
    req->resp = NULL;
    req->resp_headers = NULL;
}

/* Cancels what is in flight (the leader of the moment does it for a
 * running request when another thread leads) and releases what
 * completed. */
static void sh_reset(bff_fetcher_t *f)
{
    handle_t *h = f->ctx;
    bff_fetch_shared_t *sh = h->sh;
    sreq_t *sr;
    int wake = 0;

    apr_thread_mutex_lock(sh->mu);
    while ((sr = h->own) != NULL) {
        own_unlink(h, sr);
        if (sr->user) {
            if (sr->state == SR_PENDING || sr->state == SR_RUNNING) {
                sr->user->err = BFF_FETCH_EABORTED;
                sr->user->errmsg = "aborted";
            }
            sr->user->resp = NULL;
            sr->user->resp_headers = NULL;
            sr->user->impl = NULL;
        }
        switch (sr->state) {
        case SR_PENDING:
            sr->state = SR_DROPPED;    /* skipped by the next drain */
            sr->user = NULL;
            sr->owner = NULL;
            break;
        case SR_RUNNING:
            sr->user = NULL;
            sr->owner = NULL;
            wake |= sreq_cancel(sh, sr);
            break;
        default:   /* SR_DONE, SR_RETURNED */
            sr->user = NULL;
            sr->owner = NULL;
            sreq_release(sh, h, sr);
            break;
        }
    }
    h->done.head = h->done.tail = NULL;
    h->ndone = h->nloud = 0;
    h->outstanding = 0;
    apr_thread_mutex_unlock(sh->mu);
    if (wake) {
        sh->inner->vt->wake(sh->inner);
    }
}

static void sh_destroy(bff_fetcher_t *f)
{
    handle_t *h = f->ctx;

    if (!h) {
        return;
    }
    sh_reset(f);
    /* a leader may be about to signal this handle's condition */
    while (__atomic_load_n(&h->sh->signalling, __ATOMIC_ACQUIRE)) {
        apr_thread_yield();
    }
    apr_thread_cond_destroy(h->cond);
    free(h);
    f->ctx = NULL;
}

static void sh_wake(bff_fetcher_t *f)
{
    handle_t *h = f->ctx;

    h->sh->inner->vt->wake(h->sh->inner);
}

static const bff_fetch_vtable_t shared_vtable = {
    "shared", sh_start, sh_wait, sh_release, sh_reset, sh_destroy, sh_wake
};

static apr_status_t handle_cleanup(void *data)
{
    sh_destroy(data);
    return APR_SUCCESS;
}

apr_status_t bff_fetch_shared_handle(bff_fetcher_t **out,
                                     bff_fetch_shared_t *sh, apr_pool_t *p)
{
    bff_fetcher_t *f = apr_pcalloc(p, sizeof(*f));
    handle_t *h = calloc(1, sizeof(*h));
    apr_status_t rv;

    *out = NULL;
    if (!h) {
        return APR_ENOMEM;
    }
    rv = apr_thread_cond_create(&h->cond, p);
    if (rv != APR_SUCCESS) {
        free(h);
        return rv;
    }
    h->sh = sh;
    f->vt = &shared_vtable;
    f->ctx = h;
    apr_pool_cleanup_register(p, f, handle_cleanup, apr_pool_cleanup_null);
    *out = f;
    return APR_SUCCESS;
}

/* ----------------------------------------------------------- shared -- */

static apr_status_t shared_cleanup(void *data)
{
    bff_fetch_shared_t *sh = data;
    sreq_t *sr;

    /* handles live in pools cleared before this one: whatever is still
     * running was abandoned, and goes with the inner fetcher */
    sh->inner->vt->destroy(sh->inner);
    while ((sr = sh->all) != NULL) {
        sh->all = sr->next_all;
        free(sr->store);
        free(sr);
    }
    sh->free_list = sh->releases = NULL;
    sh->pending.head = sh->pending.tail = NULL;
    return APR_SUCCESS;
}

apr_status_t bff_fetch_shared_create(bff_fetch_shared_t **out,
                                     bff_fetcher_t *inner, apr_pool_t *p)
{
    bff_fetch_shared_t *sh = apr_pcalloc(p, sizeof(*sh));
    apr_status_t rv;

    *out = NULL;
    if (!inner || !inner->vt->wake) {
        return APR_ENOTIMPL;
    }
    rv = apr_thread_mutex_create(&sh->mu, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    sh->inner = inner;
    apr_pool_cleanup_register(p, sh, shared_cleanup, apr_pool_cleanup_null);
    *out = sh;
    return APR_SUCCESS;
}

void bff_fetch_shared_stats(bff_fetch_shared_t *sh,
                            bff_fetch_shared_stats_t *st)
{
    apr_thread_mutex_lock(sh->mu);
    *st = sh->stats;
    apr_thread_mutex_unlock(sh->mu);
}
