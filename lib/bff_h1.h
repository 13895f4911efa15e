/*
 * mod_bff HTTP/1.1 response parser: pure (no I/O), incremental (bytes may
 * arrive split anywhere) and strict. Whatever RFC 9112 lets a recipient
 * refuse, it refuses: framing is never guessed, since a guess is how
 * response splitting and desynchronised keep-alive connections happen.
 *
 * Usage: bff_h1_init, then bff_h1_feed with each received chunk until it
 * returns something other than BFF_H1_AGAIN; bff_h1_eof when the peer
 * closes. The body goes into a caller-owned growable buffer (malloc'd, kept
 * across responses so steady state allocates nothing).
 */
#ifndef BFF_H1_H
#define BFF_H1_H

#include <apr.h>

#define BFF_H1_MAX_HEAD       16384  /* status line + header section bytes */
#define BFF_H1_MAX_LINES      100    /* header (or trailer) lines */
#define BFF_H1_MAX_CHUNK_LINE 4096   /* chunk-size line with extensions */
#define BFF_H1_MAX_INTERIM    8      /* 1xx responses before the final one */

typedef enum {
    BFF_H1_AGAIN = 0,  /* the response is incomplete: feed more */
    BFF_H1_DONE,       /* the response is complete */
    BFF_H1_EPROTO,     /* malformed, or over a header limit */
    BFF_H1_ETOOBIG,    /* the body is larger than max_body */
    BFF_H1_ENOMEM
} bff_h1_rc_e;

/* The body: data[0..len) then a NUL once the response is DONE. Free data
 * with free() (or bff_h1_buf_free) when done with the buffer. */
typedef struct {
    char *data;
    apr_size_t len;
    apr_size_t cap;
} bff_h1_buf_t;

typedef struct {
    /* results */
    int status;           /* final status (200-599), once its line parsed */
    int minor;            /* HTTP/1.<minor> of the final response */
    int keep_alive;       /* once DONE: the connection may carry another */
    const char *errmsg;   /* static text once an error is returned */
    /* optional: receives the final response's header fields, one
     * "name: value\r\n" line each (value without surrounding whitespace,
     * name as sent), NUL terminated; interim (1xx) headers are dropped.
     * Set after bff_h1_init; bounded by BFF_H1_MAX_HEAD. */
    bff_h1_buf_t *headers;

    /* private */
    int state;
    bff_h1_rc_e rc;
    int head_req;
    unsigned flags;
    int nlines;
    int ninterim;
    apr_size_t max_body;
    bff_h1_buf_t *body;
    apr_uint64_t clen;
    apr_uint64_t left;
    apr_size_t head_bytes;
    apr_size_t line_len;
    char line[BFF_H1_MAX_HEAD];   /* a line split across feeds */
} bff_h1_parser_t;

/* Prepares ps for one response, emptying body (its memory is kept).
 * head_req: the request was HEAD, so the response has no body. */
void bff_h1_init(bff_h1_parser_t *ps, bff_h1_buf_t *body,
                 apr_size_t max_body, int head_req);

/* Parses len more bytes. *used is set to the bytes consumed: all of them
 * unless DONE came first (bytes after a complete response are not its
 * own). Errors are sticky. */
bff_h1_rc_e bff_h1_feed(bff_h1_parser_t *ps, const char *data,
                        apr_size_t len, apr_size_t *used);

/* The peer closed the connection: completes a close-delimited body, and is
 * an error anywhere else before DONE. */
bff_h1_rc_e bff_h1_eof(bff_h1_parser_t *ps);

/* Makes room for need bytes in total. Growth doubles, but stops at limit
 * when need fits in it (the parser passes max_body + 1). 0, or -1 when
 * out of memory (b is then unchanged). */
int bff_h1_buf_reserve(bff_h1_buf_t *b, apr_size_t need, apr_size_t limit);

void bff_h1_buf_free(bff_h1_buf_t *b);

/* 1 when s[0..n) is a non-empty RFC 9110 token (a method, a field name). */
int bff_h1_is_token(const char *s, apr_size_t n);

#endif /* BFF_H1_H */
