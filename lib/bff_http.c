/*
 * mod_bff: request id, trace context and query helpers (pure logic).
 */
#include <string.h>
#include <strings.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_http.h"

int bff_request_id_valid(const char *id)
{
    apr_size_t n = 0;

    if (!id) {
        return 0;
    }
    for (; id[n]; n++) {
        if (n >= 128 || !(apr_isalnum(id[n]) || strchr("._~:+/=@-", id[n]))) {
            return 0;
        }
    }
    return n > 0;
}

int bff_header_name_same(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '_' ? '-' : apr_tolower(*a);
        char y = *b == '_' ? '-' : apr_tolower(*b);
        if (x != y) {
            return 0;
        }
    }
    return !*a && !*b;
}

static int named(const apr_array_header_t *names, const char *name)
{
    int i;

    for (i = 0; i < names->nelts; i++) {
        if (bff_header_name_same(APR_ARRAY_IDX(names, i, const char *),
                                 name)) {
            return 1;
        }
    }
    return 0;
}

const char *bff_connection_without(const char *conn,
                                   const apr_array_header_t *names,
                                   apr_pool_t *p)
{
    apr_array_header_t *kept = apr_array_make(p, 4, sizeof(const char *));
    char *copy = apr_pstrdup(p, conn), *tok, *last = NULL;
    int dropped = 0;

    /* options are tokens separated by commas and optional whitespace */
    for (tok = apr_strtok(copy, ", \t", &last); tok;
         tok = apr_strtok(NULL, ", \t", &last)) {
        if (named(names, tok)) {
            dropped = 1;
        }
        else {
            APR_ARRAY_PUSH(kept, const char *) = tok;
        }
    }
    if (!kept->nelts) {
        return NULL;
    }
    if (!dropped) {
        return conn;
    }
    return apr_array_pstrcat(p, kept, ',');
}

static int hex_field(const char *s, apr_size_t n, int lower_only)
{
    apr_size_t i;
    int nonzero = 0;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
              || (!lower_only && c >= 'A' && c <= 'F'))) {
            return -1;
        }
        nonzero |= c != '0';
    }
    return nonzero;
}

int bff_trace_parse(bff_trace_t *out, const char *h)
{
    apr_size_t len;

    if (!h) {
        return 0;
    }
    len = strlen(h);
    /* version(2) - trace-id(32) - parent-id(16) - flags(2) = 55 chars */
    if (len < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') {
        return 0;
    }
    if (hex_field(h, 2, 1) < 0 || !strncmp(h, "ff", 2)) {
        return 0;
    }
    /* version 00 has exactly four fields; later versions may add more */
    if (!strncmp(h, "00", 2) ? len != 55 : (len > 55 && h[55] != '-')) {
        return 0;
    }
    if (hex_field(h + 3, 32, 1) != 1 || hex_field(h + 36, 16, 1) != 1
        || hex_field(h + 53, 2, 1) < 0) {
        return 0;
    }
    memcpy(out->trace_id, h + 3, 32);
    out->trace_id[32] = '\0';
    memcpy(out->parent_id, h + 36, 16);
    out->parent_id[16] = '\0';
    memcpy(out->flags, h + 53, 2);
    out->flags[2] = '\0';
    return 1;
}

static void hex_into(char *dst, const unsigned char *b, apr_size_t n)
{
    static const char digits[] = "0123456789abcdef";
    apr_size_t i;

    for (i = 0; i < n; i++) {
        dst[2 * i] = digits[b[i] >> 4];
        dst[2 * i + 1] = digits[b[i] & 15];
    }
    dst[2 * n] = '\0';
}

const char *bff_hex(const unsigned char *b, apr_size_t n, apr_pool_t *p)
{
    char *s = apr_palloc(p, 2 * n + 1);

    hex_into(s, b, n);
    return s;
}

void bff_trace_new(bff_trace_t *out, const unsigned char rnd[16])
{
    hex_into(out->trace_id, rnd, 16);
    if (hex_field(out->trace_id, 32, 1) != 1) {
        out->trace_id[31] = '1';   /* all-zero is invalid */
    }
    out->parent_id[0] = '\0';
    memcpy(out->flags, "01", 3);
}

const char *bff_trace_child(const bff_trace_t *t, const unsigned char rnd[8],
                            apr_pool_t *p)
{
    char span[17];

    hex_into(span, rnd, 8);
    if (hex_field(span, 16, 1) != 1) {
        span[15] = '1';
    }
    return apr_pstrcat(p, "00-", t->trace_id, "-", span, "-", t->flags, NULL);
}

/* Decodes application/x-www-form-urlencoded text ('+' is a space). Returns
 * NULL on a bad escape or an encoded NUL. */
static char *form_decode(const char *s, apr_size_t n, apr_pool_t *p)
{
    char *out = apr_palloc(p, n + 1), *d = out;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        if (s[i] == '+') {
            *d++ = ' ';
        }
        else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n || !apr_isxdigit(s[i + 1])
                || !apr_isxdigit(s[i + 2])) {
                return NULL;
            }
            hi = apr_isdigit(s[i + 1]) ? s[i + 1] - '0'
                 : (apr_tolower(s[i + 1]) - 'a' + 10);
            lo = apr_isdigit(s[i + 2]) ? s[i + 2] - '0'
                 : (apr_tolower(s[i + 2]) - 'a' + 10);
            if (hi == 0 && lo == 0) {
                return NULL;
            }
            *d++ = (char)(hi * 16 + lo);
            i += 2;
        }
        else {
            *d++ = s[i];
        }
    }
    *d = '\0';
    return out;
}

const char *bff_query_filter(const char *args, const apr_array_header_t *names,
                             apr_pool_t *p)
{
    const char *out = NULL, *s = args;

    if (!args || !*args || !names || names->nelts == 0) {
        return NULL;
    }
    while (*s) {
        const char *amp = strchr(s, '&'), *eq;
        apr_size_t len = amp ? (apr_size_t)(amp - s) : strlen(s);
        char *name, *value;
        int i;

        eq = memchr(s, '=', len);
        name = form_decode(s, eq ? (apr_size_t)(eq - s) : len, p);
        value = eq ? form_decode(eq + 1, len - (apr_size_t)(eq - s) - 1, p)
                   : apr_pstrdup(p, "");
        if (name && value) {
            for (i = 0; i < names->nelts; i++) {
                if (!strcmp(name, APR_ARRAY_IDX(names, i, const char *))) {
                    const char *pair = apr_pstrcat(p, bff_url_encode(name, p),
                                                   "=", bff_url_encode(value, p),
                                                   NULL);
                    out = out ? apr_pstrcat(p, out, "&", pair, NULL) : pair;
                    break;
                }
            }
        }
        s += len;
        if (*s == '&') {
            s++;
        }
    }
    return out;
}

const char *bff_query_get(const char *args, const char *name, apr_pool_t *p)
{
    const char *out = NULL, *s = args;

    while (s && *s) {
        const char *amp = strchr(s, '&'), *eq;
        apr_size_t len = amp ? (apr_size_t)(amp - s) : strlen(s);
        const char *n, *v;

        eq = memchr(s, '=', len);
        n = form_decode(s, eq ? (apr_size_t)(eq - s) : len, p);
        if (n && !strcmp(n, name)) {
            v = eq ? form_decode(eq + 1, len - (apr_size_t)(eq - s) - 1, p)
                   : apr_pstrdup(p, "");
            /* a value that does not decode counts as present but empty */
            v = v ? v : "";
            out = out ? apr_pstrcat(p, out, ",", v, NULL) : v;
        }
        s += len;
        if (*s == '&') {
            s++;
        }
    }
    return out;
}

const char *bff_query_take(const char **rest, const char *args,
                           const char *name, apr_pool_t *p)
{
    const char *value = NULL, *out = NULL, *s = args;
    int found = 0;

    while (s && *s) {
        const char *amp = strchr(s, '&'), *eq;
        apr_size_t len = amp ? (apr_size_t)(amp - s) : strlen(s);
        const char *n;

        eq = memchr(s, '=', len);
        n = form_decode(s, eq ? (apr_size_t)(eq - s) : len, p);
        if (n && !strcmp(n, name)) {
            if (!found) {
                value = eq ? form_decode(eq + 1,
                                         len - (apr_size_t)(eq - s) - 1, p)
                           : "";
                found = 1;
            }
        }
        else if (len) {     /* "a&&b" -> "a&b": an empty one says nothing */
            const char *kept = apr_pstrmemdup(p, s, len);
            out = out ? apr_pstrcat(p, out, "&", kept, NULL) : kept;
        }
        s = amp ? amp + 1 : NULL;
    }
    *rest = out;
    return value;
}

int bff_http_token(const char *s)
{
    if (!s || !*s) {
        return 0;
    }
    for (; *s; s++) {
        if (!apr_isalnum(*s) && !strchr("!#$%&'*+-.^_`|~", *s)) {
            return 0;
        }
    }
    return 1;
}

/* 1 when the comma separated list v[0..n) has a member equal (case
 * insensitive) to want; with param, a member "want=..." counts too. */
static int list_has(const char *v, apr_size_t n, const char *want, int param)
{
    apr_size_t i = 0, wl = strlen(want);

    while (i < n) {
        apr_size_t s, e;
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        s = i;
        while (i < n && v[i] != ',') {
            i++;
        }
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) {
            e--;
        }
        if (e - s >= wl && !strncasecmp(v + s, want, wl)
            && (e - s == wl || (param && (v[s + wl] == '='
                                          || v[s + wl] == ' ')))) {
            return 1;
        }
    }
    return 0;
}

static int name_is(const char *l, apr_size_t n, const char *name)
{
    return n == strlen(name) && !strncasecmp(l, name, n);
}

/* The next "Name: value" line of headers from *off on: 1 with the name
 * (n bytes) and the value (vlen bytes, leading blanks skipped), 0 at the
 * end. Lines without a colon are skipped. */
static int next_field(const char *headers, apr_size_t len, apr_size_t *off,
                      const char **name, apr_size_t *n, const char **v,
                      apr_size_t *vlen)
{
    while (headers && *off < len) {
        const char *s = headers + *off;
        const char *nl = memchr(s, '\n', len - *off);
        apr_size_t l = nl ? (apr_size_t)(nl - s) : len - *off;
        const char *colon;

        *off += l + 1;
        if (l && s[l - 1] == '\r') {
            l--;
        }
        if (!(colon = memchr(s, ':', l))) {
            continue;
        }
        *name = s;
        *n = (apr_size_t)(colon - s);
        *v = colon + 1;
        *vlen = l - *n - 1;
        while (*vlen && (**v == ' ' || **v == '\t')) {
            (*v)++;
            (*vlen)--;
        }
        return 1;
    }
    return 0;
}

const char *bff_http_header(const char *headers, apr_size_t len,
                            const char *name, apr_pool_t *p)
{
    apr_size_t off = 0, i, vlen;
    const char *s, *v, *out = NULL;

    while (next_field(headers, len, &off, &s, &i, &v, &vlen)) {
        if (name_is(s, i, name)) {
            v = apr_pstrmemdup(p, v, vlen);
            out = out ? apr_pstrcat(p, out, ", ", v, NULL) : v;
        }
    }
    return out;
}

const char *bff_http_no_store(const char *headers, apr_size_t len)
{
    apr_size_t off = 0, i, vlen;
    const char *s, *v;

    while (next_field(headers, len, &off, &s, &i, &v, &vlen)) {
        if (name_is(s, i, "set-cookie") || name_is(s, i, "set-cookie2")) {
            return "Set-Cookie";
        }
        if (name_is(s, i, "cache-control")) {
            if (list_has(v, vlen, "no-store", 0)) {
                return "Cache-Control: no-store";
            }
            if (list_has(v, vlen, "private", 1)) {
                return "Cache-Control: private";
            }
        }
        if (name_is(s, i, "vary") && list_has(v, vlen, "*", 0)) {
            return "Vary: *";
        }
    }
    return NULL;
}

const char *bff_url_origin(const char *url, apr_pool_t *p)
{
    const char *s = strstr(url, "://"), *e;

    if (!s || s == url) {
        return NULL;
    }
    e = s + 3;
    e += strcspn(e, "/?#");
    if (e == s + 3) {
        return NULL;
    }
    return apr_pstrmemdup(p, url, (apr_size_t)(e - url));
}
