/*
 * mod_bff: every answer the module sends itself.
 *
 *   bff_send_body      a JSON body with its ETag, or 304 when the client's
 *                      copy is current (the handler, the cache, health);
 *   bff_send_problem   a problem+json answer (RFC 9457) now (the handler,
 *                      validation);
 *   bff_problem_defer  registers the answer for a status that httpd will
 *                      give through ap_die (an access-phase 401, 403, 429
 *                      or 503): when httpd sends its error document for
 *                      that status, an output filter replaces the body by
 *                      the problem document and adds the challenge, so
 *                      httpd's own status handling (and an admin's
 *                      ErrorDocument) still apply.
 *
 * Both documents carry the request id (X-Request-ID) as "request_id".
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "apr_strings.h"

#include "mod_bff.h"
#include "mod_bff_obs.h"
#include "bff_cache.h"

#define PROBLEMS_KEY "bff-problems"

typedef struct problem_t {
    int status;
    const char *title;
    const char *detail;
    const char *challenge;       /* WWW-Authenticate, or NULL */
    struct problem_t *next;
} problem_t;

typedef struct {
    const problem_t *pb;
    int sent;
} problem_ctx_t;

static ap_filter_rec_t *problem_filter_handle;

/* The problem document for r: type, title, status, detail, instance and
 * the request id; NULL when out of memory. */
static json_t *problem_doc(request_rec *r, int status, const char *title,
                           const char *detail)
{
    json_t *doc = bff_problem(status, title, detail, r->uri, r->pool);
    const char *id = bff_request_id(r);    /* = X-Request-ID */

    if (doc && id) {
        json_object_set_new(doc, "request_id", json_string(id));
    }
    return doc;
}

int bff_send_problem(request_rec *r, int status, const char *title,
                     const char *detail, json_t *extra)
{
    json_t *doc = problem_doc(r, status, title, detail);
    const char *body;
    apr_size_t len;

    if (!doc) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (extra) {
        json_object_update(doc, extra);
    }
    apr_table_setn(r->headers_out, "X-BFF-Completed", "false");
    body = bff_json_dump(&len, doc, r->pool);
    return bff_send_body(r, status, "application/problem+json", body, len,
                         NULL);
}

void bff_problem_defer(request_rec *r, int status, const char *title,
                       const char *detail, const char *challenge)
{
    problem_t *head = NULL, *pb = apr_pcalloc(r->pool, sizeof(*pb));

    apr_pool_userdata_get((void **)&head, PROBLEMS_KEY, r->pool);
    pb->status = status;
    pb->title = title;
    pb->detail = detail;
    pb->challenge = challenge;
    pb->next = head;
    apr_pool_userdata_setn(pb, PROBLEMS_KEY, NULL, r->pool);
}

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
        json_t *doc = problem_doc(r, pb->status, pb->title, pb->detail);
        apr_size_t len = 0;
        const char *body;

        ctx->sent = 1;
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
    const problem_t *pb = NULL;
    problem_ctx_t *ctx;

    apr_pool_userdata_get((void **)&pb, PROBLEMS_KEY, r->pool);
    for (; pb; pb = pb->next) {
        if (pb->status == r->status) {
            ctx = apr_pcalloc(r->pool, sizeof(*ctx));
            ctx->pb = pb;
            ap_add_output_filter_handle(problem_filter_handle, ctx, r,
                                        r->connection);
            return;
        }
    }
}

void bff_problem_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_insert_error_filter(bff_insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    problem_filter_handle = ap_register_output_filter("BFF_PROBLEM",
        problem_filter, NULL, AP_FTYPE_CONTENT_SET);
}

/* --------------------------------------------------------------- body -- */

/* Sends a body with its ETag; a client whose copy is current (its
 * If-None-Match matches) gets 304 without the body. The body is passed
 * as it is, in a pool bucket, not copied into the connection's buckets
 * (ap_rwrite's copy took an 8 KiB block that the connection then keeps
 * for as long as it lives): it must live in r->pool or longer. */
int bff_send_body(request_rec *r, int status, const char *ctype,
                  const char *body, apr_size_t len, const char *etag)
{
    if (etag) {
        apr_table_setn(r->headers_out, "ETag", etag);
        if (status == HTTP_OK
            && bff_etag_match(apr_table_get(r->headers_in, "If-None-Match"),
                              etag)) {
            r->status = HTTP_NOT_MODIFIED;
            return OK;
        }
    }
    r->status = status;
    ap_set_content_type(r, ctype);
    ap_set_content_length(r, (apr_off_t)len);
    if (!r->header_only && len) {
        apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
        apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);

        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(body, len, r->pool,
                                                           ba));
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
        /* a client gone is the connection's to note (c->aborted), as
         * with ap_rwrite: the answer was given */
        (void)ap_pass_brigade(r->output_filters, bb);
        apr_brigade_cleanup(bb);
    }
    return OK;
}
