/*
 * mod_bff: small HTTP helpers the glue needs that are pure logic: request
 * id validation, W3C trace context, query string filtering.
 */
#ifndef BFF_HTTP_H
#define BFF_HTTP_H

#include <apr_pools.h>
#include <apr_tables.h>

/* A client-supplied X-Request-ID is kept only if it is 1..128 characters of
 * [A-Za-z0-9._~:+/=@-] (no spaces, quotes or controls: it ends up in logs and
 * in backend requests). */
int bff_request_id_valid(const char *id);

/* 1 when two header names are the same to a backend that folds case and
 * treats '-' and '_' alike (CGI, WSGI, PHP, Rack and several proxies turn
 * both X-User-ID and x_user_id into HTTP_X_USER_ID). */
int bff_header_name_same(const char *a, const char *b);

/* The value of a Connection header without the options that name one of
 * names (const char *) in any spelling bff_header_name_same folds together:
 * a proxy removes the headers a client lists there as hop-by-hop, so
 * listing a header the gateway sets would strip it. NULL when no option
 * is left; conn itself when nothing was removed. */
const char *bff_connection_without(const char *conn,
                                   const apr_array_header_t *names,
                                   apr_pool_t *p);

/* W3C trace context (traceparent version 00). */
typedef struct {
    char trace_id[33];   /* 32 lower-case hex digits */
    char parent_id[17];  /* 16 lower-case hex digits */
    char flags[3];       /* 2 hex digits */
} bff_trace_t;

/* Parses a traceparent header. Returns 1 when valid (version 00 exactly, or
 * a later version whose first four fields are well formed), all-zero ids
 * rejected. */
int bff_trace_parse(bff_trace_t *out, const char *header);

/* Fills trace_id from 16 random bytes (never all zero) and flags "01". */
void bff_trace_new(bff_trace_t *out, const unsigned char rnd[16]);

/* "00-<trace_id>-<span>-<flags>" for a call whose span id comes from 8
 * random bytes. */
const char *bff_trace_child(const bff_trace_t *t, const unsigned char rnd[8],
                            apr_pool_t *p);

/* Lower-case hex of n bytes. */
const char *bff_hex(const unsigned char *b, apr_size_t n, apr_pool_t *p);

/* Keeps the query parameters whose decoded names are listed in names
 * (const char *), in the client's order, re-encoded from their decoded
 * values: the result cannot carry anything but name=value pairs. Returns
 * NULL when none is kept. Parameters whose value does not decode (bad %
 * escape) are dropped. */
const char *bff_query_filter(const char *args, const apr_array_header_t *names,
                             apr_pool_t *p);

/* The decoded values of every query parameter called name, joined with
 * ','; NULL when there is none. */
const char *bff_query_get(const char *args, const char *name, apr_pool_t *p);

/* The value of the header field name (case-insensitive) in header lines
 * as a fetcher returns them, several lines joined with ", "; NULL when
 * there is none. */
const char *bff_http_header(const char *headers, apr_size_t len,
                            const char *name, apr_pool_t *p);

/* The decoded value of the first query parameter whose decoded name is
 * name ("" for a bare name; NULL when there is none or its value does not
 * decode), and in *rest the query without any parameter of that name, the
 * others as they were, empty ones left out (NULL when nothing remains).
 * args may be NULL. */
const char *bff_query_take(const char **rest, const char *args,
                           const char *name, apr_pool_t *p);

/* 1 when s is a non-empty RFC 9110 token (a header, cookie or method
 * name); NULL is none. */
int bff_http_token(const char *s);

/* Why a backend response with these header fields ("Name: value\r\n"
 * lines, as a fetcher returns them; NULL or "" for none) must not be
 * stored in a shared cache: "Set-Cookie", "Cache-Control: no-store",
 * "Cache-Control: private" or "Vary: *" (names case-insensitive, every
 * directive of every Cache-Control line and every member of every Vary
 * line looked at). NULL when it may be stored. */
const char *bff_http_no_store(const char *headers, apr_size_t len);

/* "scheme://host[:port]" of url (a backend's or an upstream's), or NULL
 * when it has no authority. */
const char *bff_url_origin(const char *url, apr_pool_t *p);

#endif /* BFF_HTTP_H */
