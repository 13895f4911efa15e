/*
 * Strict incremental HTTP/1.1 response parser (see bff_h1.h).
 *
 * Lines (status, headers, chunk sizes, trailers) are parsed where they lie
 * in the caller's data when a feed holds them whole, and copied into
 * ps->line only when split across feeds. Body bytes are copied once, into
 * the caller's buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "bff_h1.h"

enum {
    ST_STATUS,       /* status line */
    ST_HEADER,       /* header lines */
    ST_BODY_LEN,     /* Content-Length body */
    ST_BODY_EOF,     /* body delimited by the connection's close */
    ST_CHUNK_SIZE,   /* chunk-size line */
    ST_CHUNK_DATA,
    ST_CHUNK_CR,     /* the CRLF after chunk data */
    ST_CHUNK_LF,
    ST_TRAILER,      /* trailer lines after the last chunk */
    ST_DONE,
    ST_ERROR
};

#define F_CL       0x01u   /* Content-Length seen */
#define F_TE       0x02u   /* Transfer-Encoding: chunked seen */
#define F_CLOSE    0x04u   /* Connection: close */
#define F_KEEP     0x08u   /* Connection: keep-alive */

#define MAX_CL_DIGITS    19   /* fits apr_uint64_t: no overflow check needed */
#define MAX_CHUNK_DIGITS 16   /* 64 bits of hex */
#define RESERVE_MAX      (1024 * 1024)

/* ----------------------------------------------------------- buffer -- */

int bff_h1_buf_reserve(bff_h1_buf_t *b, apr_size_t need, apr_size_t limit)
{
    apr_size_t cap = b->cap ? b->cap : 1024;
    char *nb;

    if (need <= b->cap) {
        return 0;
    }
    while (cap < need) {
        cap = cap > APR_SIZE_MAX / 2 ? need : cap * 2;
    }
    if (cap > limit && limit >= need) {
        cap = limit;   /* a body never exceeds max_body: do not reserve more */
    }
    nb = realloc(b->data, cap);
    if (!nb) {
        return -1;
    }
    b->data = nb;
    b->cap = cap;
    return 0;
}

void bff_h1_buf_free(bff_h1_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------ char classes -- */

/* RFC 9110 5.6.2 token characters */
static int is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
        || (ch >= '0' && ch <= '9')) {
        return 1;
    }
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* field-value and reason-phrase bytes: HTAB, SP, VCHAR, obs-text */
int bff_h1_is_token(const char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i])) {
            return 0;
        }
    }
    return n > 0;
}

static int is_vchar(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

static int eq_nocase(const char *s, apr_size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* ------------------------------------------------------------ states -- */

static bff_h1_rc_e fail(bff_h1_parser_t *ps, bff_h1_rc_e rc, const char *msg)
{
    ps->state = ST_ERROR;
    ps->rc = rc;
    ps->errmsg = msg;
    return rc;
}

static void begin_head(bff_h1_parser_t *ps, int state)
{
    ps->state = state;
    ps->head_bytes = 0;
    ps->nlines = 0;
    ps->line_len = 0;
}

void bff_h1_init(bff_h1_parser_t *ps, bff_h1_buf_t *body,
                 apr_size_t max_body, int head_req)
{
    ps->status = 0;
    ps->minor = 0;
    ps->keep_alive = 0;
    ps->errmsg = NULL;
    ps->rc = BFF_H1_AGAIN;
    ps->head_req = head_req;
    ps->flags = 0;
    ps->ninterim = 0;
    ps->max_body = max_body;
    ps->body = body;
    ps->clen = 0;
    ps->left = 0;
    ps->headers = NULL;
    body->len = 0;
    begin_head(ps, ST_STATUS);
}

/* Appends one field of the final response to ps->headers. */
static bff_h1_rc_e keep_field(bff_h1_parser_t *ps, const char *name,
                              apr_size_t nlen, const char *v, apr_size_t vlen)
{
    bff_h1_buf_t *b = ps->headers;
    apr_size_t need = b->len + nlen + vlen + 5;

    if (bff_h1_buf_reserve(b, need, need) != 0) {
        return fail(ps, BFF_H1_ENOMEM, "out of memory");
    }
    memcpy(b->data + b->len, name, nlen);
    memcpy(b->data + b->len + nlen, ": ", 2);
    memcpy(b->data + b->len + nlen + 2, v, vlen);
    memcpy(b->data + b->len + nlen + 2 + vlen, "\r\n", 3);
    b->len += nlen + vlen + 4;
    return BFF_H1_AGAIN;
}

static bff_h1_rc_e finish(bff_h1_parser_t *ps)
{
    bff_h1_buf_t *b = ps->body;

    /* the terminator is always in range: the body's limit is max_body + 1 */
    if (bff_h1_buf_reserve(b, b->len + 1, b->len + 1) != 0) {
        return fail(ps, BFF_H1_ENOMEM, "out of memory");
    }
    b->data[b->len] = '\0';
    ps->state = ST_DONE;
    ps->rc = BFF_H1_DONE;
    return BFF_H1_DONE;
}

static bff_h1_rc_e append(bff_h1_parser_t *ps, const char *p, apr_size_t n)
{
    bff_h1_buf_t *b = ps->body;
    apr_size_t limit = ps->max_body < APR_SIZE_MAX ? ps->max_body + 1
                                                   : APR_SIZE_MAX;

    if (n > ps->max_body - b->len) {
        return fail(ps, BFF_H1_ETOOBIG, "body larger than the limit");
    }
    if (bff_h1_buf_reserve(b, b->len + n + 1, limit) != 0) {
        return fail(ps, BFF_H1_ENOMEM, "out of memory");
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return BFF_H1_AGAIN;
}

/* -------------------------------------------------------------- lines -- */

/* Takes the next line, at most limit bytes with its CRLF, from *p. Returns
 * 1 with the line (CRLF stripped) in *line and *n, 0 when the input ran out
 * first (kept in ps->line), or -1 with an error recorded. */
static int take_line(bff_h1_parser_t *ps, const char **p, const char *end,
                     apr_size_t limit, const char **line, apr_size_t *n)
{
    apr_size_t avail = (apr_size_t)(end - *p);
    apr_size_t room = limit > ps->line_len ? limit - ps->line_len : 0;
    const char *lf = memchr(*p, '\n', avail < room ? avail : room);
    apr_size_t take;

    if (!lf) {
        if (avail >= room) {
            fail(ps, BFF_H1_EPROTO, "line too long or header section too large");
            return -1;
        }
        memcpy(ps->line + ps->line_len, *p, avail);
        ps->line_len += avail;
        *p = end;
        return 0;
    }
    take = (apr_size_t)(lf + 1 - *p);
    if (ps->line_len == 0) {
        *line = *p;
        *n = take;
    }
    else {
        memcpy(ps->line + ps->line_len, *p, take);
        *line = ps->line;
        *n = ps->line_len + take;
        ps->line_len = 0;
    }
    *p += take;
    if (*n < 2 || (*line)[*n - 2] != '\r') {
        fail(ps, BFF_H1_EPROTO, "line not terminated by CRLF");
        return -1;
    }
    *n -= 2;
    return 1;
}

/* HTTP/1.x SP 3DIGIT [SP reason-phrase]. The reason is optional since
 * servers commonly omit it together with its separator. */
static bff_h1_rc_e parse_status(bff_h1_parser_t *ps, const char *l,
                                apr_size_t n)
{
    apr_size_t i;
    int st;

    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9'
        || l[8] != ' ') {
        return fail(ps, BFF_H1_EPROTO, "bad status line");
    }
    for (i = 9, st = 0; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9') {
            return fail(ps, BFF_H1_EPROTO, "bad status code");
        }
        st = st * 10 + (l[i] - '0');
    }
    if (st < 100 || st > 599) {
        return fail(ps, BFF_H1_EPROTO, "bad status code");
    }
    if (n > 12 && l[12] != ' ') {
        return fail(ps, BFF_H1_EPROTO, "bad status line");
    }
    for (i = 13; i < n; i++) {
        if (!is_vchar((unsigned char)l[i])) {
            return fail(ps, BFF_H1_EPROTO, "control character in status line");
        }
    }
    ps->status = st;
    ps->minor = l[7] - '0';
    ps->state = ST_HEADER;
    return BFF_H1_AGAIN;
}

static bff_h1_rc_e on_content_length(bff_h1_parser_t *ps, const char *v,
                                     apr_size_t n)
{
    apr_uint64_t cl = 0;
    apr_size_t i;

    if (ps->flags & F_CL) {
        return fail(ps, BFF_H1_EPROTO, "repeated Content-Length");
    }
    if (n == 0 || n > MAX_CL_DIGITS) {
        return fail(ps, BFF_H1_EPROTO, "bad Content-Length");
    }
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return fail(ps, BFF_H1_EPROTO, "bad Content-Length");
        }
        cl = cl * 10 + (apr_uint64_t)(v[i] - '0');
    }
    ps->flags |= F_CL;
    ps->clen = cl;
    return BFF_H1_AGAIN;
}

/* Only "chunked", once: a list ("gzip, chunked") or a repeat would make us
 * decode codings we do not support, or read the framing wrong. */
static bff_h1_rc_e on_transfer_encoding(bff_h1_parser_t *ps, const char *v,
                                        apr_size_t n)
{
    if (ps->flags & F_TE) {
        return fail(ps, BFF_H1_EPROTO, "repeated Transfer-Encoding");
    }
    if (!eq_nocase(v, n, "chunked")) {
        return fail(ps, BFF_H1_EPROTO, "unsupported Transfer-Encoding");
    }
    ps->flags |= F_TE;
    return BFF_H1_AGAIN;
}

/* A comma-separated list of options: only close and keep-alive matter. */
static void on_connection(bff_h1_parser_t *ps, const char *v, apr_size_t n)
{
    apr_size_t i = 0;

    while (i < n) {
        apr_size_t s, e;
        while (i < n && (is_ows(v[i]) || v[i] == ',')) {
            i++;
        }
        s = i;
        while (i < n && v[i] != ',') {
            i++;
        }
        e = i;
        while (e > s && is_ows(v[e - 1])) {
            e--;
        }
        if (eq_nocase(v + s, e - s, "close")) {
            ps->flags |= F_CLOSE;
        }
        else if (eq_nocase(v + s, e - s, "keep-alive")) {
            ps->flags |= F_KEEP;
        }
    }
}

/* field-name ":" OWS field-value OWS, validated whether or not we use it:
 * a header we ignore can still be what another hop reads differently. */
static bff_h1_rc_e parse_field(bff_h1_parser_t *ps, const char *l,
                               apr_size_t n, int trailer)
{
    apr_size_t i = 0, vs, ve;

    if (++ps->nlines > BFF_H1_MAX_LINES) {
        return fail(ps, BFF_H1_EPROTO, "too many header lines");
    }
    if (is_ows(l[0])) {
        return fail(ps, BFF_H1_EPROTO, "obsolete header line folding");
    }
    while (i < n && is_tchar((unsigned char)l[i])) {
        i++;
    }
    if (i == n) {
        return fail(ps, BFF_H1_EPROTO, "header line without ':'");
    }
    if (l[i] != ':') {
        return fail(ps, BFF_H1_EPROTO, is_ows(l[i])
                    ? "whitespace before ':' in header"
                    : "bad character in header name");
    }
    if (i == 0) {
        return fail(ps, BFF_H1_EPROTO, "empty header name");
    }
    for (vs = i + 1; vs < n; vs++) {
        if (!is_vchar((unsigned char)l[vs])) {
            return fail(ps, BFF_H1_EPROTO, "control character in header value");
        }
    }
    for (vs = i + 1; vs < n && is_ows(l[vs]); vs++) {
    }
    for (ve = n; ve > vs && is_ows(l[ve - 1]); ve--) {
    }
    if (trailer) {
        return BFF_H1_AGAIN;   /* validated, then discarded */
    }
    if (ps->headers && ps->status >= 200
        && keep_field(ps, l, i, l + vs, ve - vs) != BFF_H1_AGAIN) {
        return ps->rc;
    }
    if (eq_nocase(l, i, "content-length")) {
        return on_content_length(ps, l + vs, ve - vs);
    }
    if (eq_nocase(l, i, "transfer-encoding")) {
        return on_transfer_encoding(ps, l + vs, ve - vs);
    }
    if (eq_nocase(l, i, "connection")) {
        on_connection(ps, l + vs, ve - vs);
    }
    return BFF_H1_AGAIN;
}

/* The header section ended: decide how the body is delimited (RFC 9112
 * 6.3), strictly. */
static bff_h1_rc_e end_of_head(bff_h1_parser_t *ps)
{
    if (ps->status < 200) {
        /* interim (100 Continue, 103 Early Hints): the real one follows;
         * 101 would switch protocols, which we never ask for */
        if (ps->status == 101 || ++ps->ninterim > BFF_H1_MAX_INTERIM) {
            return fail(ps, BFF_H1_EPROTO, "unexpected 1xx response");
        }
        ps->flags = 0;
        begin_head(ps, ST_STATUS);
        return BFF_H1_AGAIN;
    }
    if ((ps->flags & F_TE) && ps->minor == 0) {
        return fail(ps, BFF_H1_EPROTO, "Transfer-Encoding in an HTTP/1.0 response");
    }
    if ((ps->flags & F_TE) && (ps->flags & F_CL)) {
        return fail(ps, BFF_H1_EPROTO, "both Content-Length and Transfer-Encoding");
    }
    ps->keep_alive = ps->minor > 0 ? !(ps->flags & F_CLOSE)
                                   : (ps->flags & F_KEEP) && !(ps->flags & F_CLOSE);
    if (ps->head_req || ps->status == 204 || ps->status == 304) {
        return finish(ps);
    }
    if (ps->flags & F_TE) {
        begin_head(ps, ST_CHUNK_SIZE);
        return BFF_H1_AGAIN;
    }
    if (ps->flags & F_CL) {
        if (ps->clen > ps->max_body) {
            return fail(ps, BFF_H1_ETOOBIG, "Content-Length larger than the limit");
        }
        /* one allocation up front, but not more than a typical body before
         * the bytes actually arrive */
        if (bff_h1_buf_reserve(ps->body, (apr_size_t)(ps->clen < RESERVE_MAX
                                                      ? ps->clen : RESERVE_MAX) + 1,
                               (apr_size_t)ps->clen + 1) != 0) {
            return fail(ps, BFF_H1_ENOMEM, "out of memory");
        }
        ps->left = ps->clen;
        ps->state = ST_BODY_LEN;
        return ps->clen == 0 ? finish(ps) : BFF_H1_AGAIN;
    }
    /* Read-until-close: HTTP/1.0 style, or announced by Connection: close.
     * An HTTP/1.1 keep-alive response without framing is malformed. */
    if (ps->minor > 0 && !(ps->flags & F_CLOSE)) {
        return fail(ps, BFF_H1_EPROTO, "response without length on a "
                    "keep-alive connection");
    }
    ps->keep_alive = 0;
    ps->state = ST_BODY_EOF;
    return BFF_H1_AGAIN;
}

/* chunk-size [ BWS ";" chunk-ext ] : extensions are ignored, but must be
 * free of control characters. */
static bff_h1_rc_e parse_chunk_size(bff_h1_parser_t *ps, const char *l,
                                    apr_size_t n)
{
    apr_uint64_t size = 0;
    apr_size_t i;
    int d;

    for (i = 0; i < n && (d = hexval((unsigned char)l[i])) >= 0; i++) {
        if (i == MAX_CHUNK_DIGITS) {
            return fail(ps, BFF_H1_EPROTO, "chunk size too long");
        }
        size = (size << 4) | (apr_uint64_t)d;
    }
    if (i == 0) {
        return fail(ps, BFF_H1_EPROTO, "bad chunk size");
    }
    while (i < n && is_ows(l[i])) {
        i++;
    }
    if (i < n && l[i] != ';') {
        return fail(ps, BFF_H1_EPROTO, "bad chunk size");
    }
    for (; i < n; i++) {
        if (!is_vchar((unsigned char)l[i])) {
            return fail(ps, BFF_H1_EPROTO, "control character in chunk extension");
        }
    }
    if (size == 0) {
        begin_head(ps, ST_TRAILER);
        return BFF_H1_AGAIN;
    }
    if (size > ps->max_body - ps->body->len) {
        return fail(ps, BFF_H1_ETOOBIG, "body larger than the limit");
    }
    ps->left = size;
    ps->state = ST_CHUNK_DATA;
    return BFF_H1_AGAIN;
}

/* Steps through one line-based state. */
static bff_h1_rc_e step_line(bff_h1_parser_t *ps, const char **p,
                             const char *end)
{
    const char *l = NULL;
    apr_size_t n = 0, limit;
    int r;

    limit = ps->state == ST_CHUNK_SIZE ? BFF_H1_MAX_CHUNK_LINE
                                       : BFF_H1_MAX_HEAD - ps->head_bytes;
    r = take_line(ps, p, end, limit, &l, &n);
    if (r <= 0) {
        return r < 0 ? ps->rc : BFF_H1_AGAIN;
    }
    if (ps->state == ST_CHUNK_SIZE) {
        return parse_chunk_size(ps, l, n);
    }
    ps->head_bytes += n + 2;
    if (ps->state == ST_STATUS) {
        return parse_status(ps, l, n);
    }
    if (n == 0) {
        return ps->state == ST_TRAILER ? finish(ps) : end_of_head(ps);
    }
    return parse_field(ps, l, n, ps->state == ST_TRAILER);
}

/* Steps through one body state. */
static bff_h1_rc_e step_body(bff_h1_parser_t *ps, const char **p,
                             const char *end)
{
    apr_size_t avail = (apr_size_t)(end - *p), n;
    bff_h1_rc_e rc;

    switch (ps->state) {
    case ST_CHUNK_CR:
    case ST_CHUNK_LF:
        if (**p != (ps->state == ST_CHUNK_CR ? '\r' : '\n')) {
            return fail(ps, BFF_H1_EPROTO, "missing CRLF after chunk data");
        }
        (*p)++;
        if (ps->state == ST_CHUNK_LF) {
            begin_head(ps, ST_CHUNK_SIZE);
        }
        else {
            ps->state = ST_CHUNK_LF;
        }
        return BFF_H1_AGAIN;
    case ST_BODY_EOF:
        n = avail;
        break;
    default:   /* ST_BODY_LEN, ST_CHUNK_DATA */
        n = ps->left < avail ? (apr_size_t)ps->left : avail;
        break;
    }
    rc = append(ps, *p, n);
    if (rc != BFF_H1_AGAIN) {
        return rc;
    }
    *p += n;
    if (ps->state == ST_BODY_EOF || (ps->left -= n) > 0) {
        return BFF_H1_AGAIN;
    }
    if (ps->state == ST_BODY_LEN) {
        return finish(ps);
    }
    ps->state = ST_CHUNK_CR;
    return BFF_H1_AGAIN;
}

bff_h1_rc_e bff_h1_feed(bff_h1_parser_t *ps, const char *data,
                        apr_size_t len, apr_size_t *used)
{
    const char *p = data, *end = data + len;
    bff_h1_rc_e rc = ps->rc;

    while (rc == BFF_H1_AGAIN && p < end) {
        switch (ps->state) {
        case ST_STATUS:
        case ST_HEADER:
        case ST_CHUNK_SIZE:
        case ST_TRAILER:
            rc = step_line(ps, &p, end);
            break;
        default:
            rc = step_body(ps, &p, end);
            break;
        }
    }
    *used = (apr_size_t)(p - data);
    return rc;
}

bff_h1_rc_e bff_h1_eof(bff_h1_parser_t *ps)
{
    if (ps->state == ST_BODY_EOF) {
        return finish(ps);
    }
    if (ps->rc != BFF_H1_AGAIN) {
        return ps->rc;
    }
    return fail(ps, BFF_H1_EPROTO, "connection closed before the response "
                "was complete");
}
