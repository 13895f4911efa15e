/*
 * The curl fetcher of a build without libcurl (configure --without-curl):
 * every request it is given fails, with a message naming the missing
 * feature. The glue refuses https:// backends and BFFHTTPClient curl at
 * configuration time, so this only answers what slips past that.
 */
#include <apr_errno.h>
#include <apr_pools.h>

#include "bff_fetch.h"
#include "bff_fetch_curl.h"

int bff_fetch_has_curl(void)
{
    return 0;
}

const char *bff_fetch_global_init(void)
{
    return NULL;
}

void bff_fetch_global_cleanup(void)
{
}

static apr_status_t nocurl_start(bff_fetcher_t *f, bff_fetch_req_t *req)
{
    req->err = BFF_FETCH_EINTERNAL;
    req->errmsg = "https:// needs libcurl: mod_bff was built --without-curl";
    req->status = 0;
    req->resp = NULL;
    req->resp_len = 0;
    req->resp_headers = NULL;
    req->resp_headers_len = 0;
    return APR_ENOTIMPL;
}

static apr_status_t nocurl_wait(bff_fetcher_t *f, bff_fetch_req_t **done,
                                long max_wait_ms)
{
    *done = NULL;
    return APR_EOF;
}

static void nocurl_release(bff_fetcher_t *f, bff_fetch_req_t *req)
{
}

static void nocurl_reset(bff_fetcher_t *f)
{
}

static void nocurl_destroy(bff_fetcher_t *f)
{
}

static void nocurl_wake(bff_fetcher_t *f)
{
}

static const bff_fetch_vtable_t nocurl_vtable = {
    "no-curl", nocurl_start, nocurl_wait, nocurl_release, nocurl_reset,
    nocurl_destroy, nocurl_wake
};

int bff_fetch_curl_in_flight(const bff_fetcher_t *f)
{
    return 0;
}

apr_status_t bff_fetch_curl_poll(bff_fetcher_t *f, struct pollfd *fds,
                                 unsigned nfds, int timeout_ms)
{
    return APR_ENOTIMPL;
}

apr_status_t bff_fetch_curl_create(bff_fetcher_t **out,
                                   const bff_fetch_curl_opts_t *opts,
                                   apr_pool_t *p)
{
    bff_fetcher_t *f = apr_pcalloc(p, sizeof(*f));

    f->vt = &nocurl_vtable;
    *out = f;
    return APR_SUCCESS;
}
