/*
 * jansson helpers shared by the glue and the engine.
 */
#include "bff_core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

static apr_status_t json_cleanup(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *bff_json_pool_own(json_t *v, apr_pool_t *p)
{
    /* NULL is tolerated so callers can write
     * bff_json_pool_own(json_loadb(...), p) and test the result once. */
    if (v) {
        apr_pool_cleanup_register(p, v, json_cleanup, apr_pool_cleanup_null);
    }
    return v;
}

int bff_json_depth(const char *buf, size_t len)
{
    /* jansson's parser recurses per nesting level and its own limit
     * (JSON_PARSER_MAX_DEPTH) is a compile-time constant, so untrusted
     * bodies are measured first. Only bytes are looked at: brackets
     * inside strings do not count, and a backslash always hides the next
     * byte, which is all that is needed to find the end of a string. */
    int depth = 0, max = 0, in_str = 0;
    size_t i;

    if (!buf) {
        return 0;
    }
    for (i = 0; i < len; ++i) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\') {
                ++i;
            }
            else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            break;
        case '[':
        case '{':
            if (++depth > max) {
                max = depth;
            }
            break;
        case ']':
        case '}':
            /* Unbalanced closers are the parser's problem; never go
             * negative so "]]]][[" still reports its real depth. */
            if (depth > 0) {
                --depth;
            }
            break;
        default:
            break;
        }
    }
    return max;
}

/* ------------------------------------------------------------ output -- */

/*
 * The answer's serializer. It writes what json_dumpb(doc, JSON_COMPACT |
 * JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY) writes, byte for byte (the
 * fuzz target fuzz_json_dump compares both), but without jansson's
 * per-value callbacks and without a formatted print per number: on the
 * aggregation's miss path jansson's dump and its snprintf("%.15g") of
 * every real took about 30% of the gateway's instructions per request
 * (callgrind, bench/RESULTS.md); this takes a fifth of that.
 */

/* The text is written into a buffer on the caller's stack, then into
 * malloc()ed memory once it outgrows that, and copied into the pool at
 * its exact size when complete: a pool only grows until its request ends
 * (and a connection keeps its pools' memory for its next request), so
 * the pool holds the answer and not the buffers it was written in. */
#define JB_STACK 4096

typedef struct {
    char *buf;
    apr_size_t len, cap;
    int heap;                   /* buf is malloc()ed */
    apr_pool_t *p;
} jbuf_t;

static char *jb_room(jbuf_t *b, apr_size_t n)
{
    if (b->len + n > b->cap) {
        apr_size_t cap = b->cap * 2;
        char *nb;

        while (cap < b->len + n) {
            cap *= 2;
        }
        nb = b->heap ? realloc(b->buf, cap) : malloc(cap);
        if (!nb) {
            /* the pool's own answer to running out of memory */
            nb = apr_palloc(b->p, cap);
            memcpy(nb, b->buf, b->len);
            if (b->heap) {
                free(b->buf);
            }
            b->heap = 0;
        }
        else if (!b->heap) {
            memcpy(nb, b->buf, b->len);
            b->heap = 1;
        }
        b->buf = nb;
        b->cap = cap;
    }
    return b->buf + b->len;
}

static void jb_put(jbuf_t *b, const char *s, apr_size_t n)
{
    memcpy(jb_room(b, n), s, n);
    b->len += n;
}

static void jb_putc(jbuf_t *b, char c)
{
    *jb_room(b, 1) = c;
    b->len++;
}

/* Decimal digits of v, most significant first, in out (20 bytes). */
static apr_size_t utoa(char *out, unsigned long long v)
{
    char tmp[20];
    apr_size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; ++i) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

apr_size_t bff_json_int_text(char *out, json_int_t v)
{
    apr_size_t n = 0;
    unsigned long long u = (unsigned long long)v;

    if (v < 0) {
        out[n++] = '-';
        u = 0 - u;
    }
    return n + utoa(out + n, u);
}

static void jb_int(jbuf_t *b, json_int_t v)
{
    b->len += bff_json_int_text(jb_room(b, BFF_JSON_INT_MAX), v);
}

/* What jansson's jsonp_dtostr makes of snprintf("%.15g"): a '.' when
 * neither '.' nor an exponent is there, and no '+' or leading zeros in
 * the exponent. */
static apr_size_t real_slow(char *out, apr_size_t cap, double v)
{
    int n = snprintf(out, cap, "%.15g", v);
    char *e, *s, *t;

    for (e = out; *e; ++e) {
        if (*e == ',') {        /* a locale's decimal comma */
            *e = '.';
        }
    }
    if (!strchr(out, '.') && !strchr(out, 'e')) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    if ((e = strchr(out, 'e')) != NULL) {
        s = e + 1;
        t = s + 1;
        if (*s == '-') {
            ++s;
        }
        while (*t == '0') {
            ++t;
        }
        if (t != s) {
            memmove(s, t, (apr_size_t)(out + n - t) + 1);
            n -= (int)(t - s);
        }
    }
    return (apr_size_t)n;
}

/*
 * v in fixed notation with the fewest decimals k that give v back: when
 * m = v * 10^k is an integer below 2^53 and m / 10^k == v, that division
 * is the correctly rounded value of the decimal m e-k, so the text reads
 * back as v; and as v is within half an ulp of it, far less than half a
 * step of a 15-digit grid, it is also what %.15g prints once its trailing
 * zeros go. Only where %.15g uses fixed notation (1e-4 <= |v| < 1e15) and
 * m has at most 15 digits; anything else is printed the slow way.
 */
static const double pow10_tab[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
    1e13, 1e14, 1e15, 1e16, 1e17, 1e18
};

static apr_size_t real_fast(char *out, double v)
{
    double a = v < 0 ? -v : v, m;
    unsigned long long u;
    apr_size_t n = 0, d, k;
    char digits[20];

    if (!(a >= 1e-4 && a < 1e15)) {
        return 0;
    }
    for (k = 0; k <= 18; ++k) {
        m = a * pow10_tab[k];
        if (m >= 1e15) {
            return 0;           /* more than 15 significant digits */
        }
        u = (unsigned long long)m;
        if ((double)u == m && (double)u / pow10_tab[k] == a) {
            break;
        }
    }
    if (k > 18) {
        return 0;
    }
    /* a rounded product can miss the shortest k and hit a longer one */
    while (k > 0 && u % 10 == 0) {
        u /= 10;
        --k;
    }
    d = utoa(digits, u);
    if (v < 0) {
        out[n++] = '-';
    }
    if (d <= k) {               /* 0.00ddd */
        out[n++] = '0';
        out[n++] = '.';
        memset(out + n, '0', k - d);
        n += k - d;
        memcpy(out + n, digits, d);
        n += d;
    }
    else {
        memcpy(out + n, digits, d - k);
        n += d - k;
        out[n++] = '.';
        if (k == 0) {
            out[n++] = '0';
        }
        else {
            memcpy(out + n, digits + d - k, k);
            n += k;
        }
    }
    return n;
}

static void jb_real(jbuf_t *b, double v)
{
    char *o = jb_room(b, 40);
    apr_size_t n = real_fast(o, v);

    b->len += n ? n : real_slow(o, 40, v);
}

/* One byte's escape, or NULL when it goes out as is. */
static const char *const esc_tab[32] = {
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005",
    "\\u0006", "\\u0007", "\\b", "\\t", "\\n", "\\u000B", "\\f", "\\r",
    "\\u000E", "\\u000F", "\\u0010", "\\u0011", "\\u0012", "\\u0013",
    "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
    "\\u001A", "\\u001B", "\\u001C", "\\u001D", "\\u001E", "\\u001F"
};

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid:
 * the rules of jansson's utf8_check_full (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
static apr_size_t utf8_len(const unsigned char *s, apr_size_t n)
{
    unsigned char c = s[0];
    apr_size_t len, i;
    unsigned int cp;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    }
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    }
    else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    }
    else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; ++i) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)
        || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

static int jb_string(jbuf_t *b, const char *str, apr_size_t n)
{
    const unsigned char *s = (const unsigned char *)str, *run = s;
    const unsigned char *end = s + n;

    jb_putc(b, '"');
    while (s < end) {
        unsigned char c = *s;
        apr_size_t l;

        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            ++s;
            continue;
        }
        if (c >= 0x80) {
            if (!(l = utf8_len(s, (apr_size_t)(end - s)))) {
                return -1;
            }
            s += l;
            continue;
        }
        jb_put(b, (const char *)run, (apr_size_t)(s - run));
        if (c == '"') {
            jb_put(b, "\\\"", 2);
        }
        else if (c == '\\') {
            jb_put(b, "\\\\", 2);
        }
        else {
            jb_put(b, esc_tab[c], strlen(esc_tab[c]));
        }
        run = ++s;
    }
    jb_put(b, (const char *)run, (apr_size_t)(s - run));
    jb_putc(b, '"');
    return 0;
}

/* jansson's dump recurses without a limit; this one stops at the depth
 * its parser accepts, which no document built from parsed input exceeds
 * by more than the few levels an endpoint's shape adds. */
#define BFF_JSON_DUMP_DEPTH (JSON_PARSER_MAX_DEPTH + 64)

static int jb_value(jbuf_t *b, const json_t *v, int depth)
{
    if (depth > BFF_JSON_DUMP_DEPTH) {
        return -1;
    }
    switch (json_typeof(v)) {
    case JSON_NULL:
        jb_put(b, "null", 4);
        return 0;
    case JSON_TRUE:
        jb_put(b, "true", 4);
        return 0;
    case JSON_FALSE:
        jb_put(b, "false", 5);
        return 0;
    case JSON_INTEGER:
        jb_int(b, json_integer_value(v));
        return 0;
    case JSON_REAL:
        jb_real(b, json_real_value(v));
        return 0;
    case JSON_STRING:
        return jb_string(b, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        size_t i, n = json_array_size(v);

        jb_putc(b, '[');
        for (i = 0; i < n; ++i) {
            if (i) {
                jb_putc(b, ',');
            }
            if (jb_value(b, json_array_get(v, i), depth + 1) < 0) {
                return -1;
            }
        }
        jb_putc(b, ']');
        return 0;
    }
    case JSON_OBJECT: {
        /* insertion order, as jansson dumps it */
        void *it = json_object_iter((json_t *)v);
        int first = 1;

        jb_putc(b, '{');
        for (; it; it = json_object_iter_next((json_t *)v, it)) {
            const char *k = json_object_iter_key(it);

            if (!first) {
                jb_putc(b, ',');
            }
            first = 0;
            if (jb_string(b, k, json_object_iter_key_len(it)) < 0) {
                return -1;
            }
            jb_putc(b, ':');
            if (jb_value(b, json_object_iter_value(it), depth + 1) < 0) {
                return -1;
            }
        }
        jb_putc(b, '}');
        return 0;
    }
    }
    return -1;
}

const char *bff_json_dump(apr_size_t *len, const json_t *doc, apr_pool_t *p)
{
    char first[JB_STACK];
    const char *out = "";
    jbuf_t b;

    b.p = p;
    b.buf = first;
    b.cap = sizeof(first);
    b.len = 0;
    b.heap = 0;
    *len = 0;
    if (doc && jb_value(&b, doc, 0) == 0) {
        out = apr_pstrmemdup(p, b.buf, b.len);
        *len = b.len;
    }
    if (b.heap) {
        free(b.buf);
    }
    return out;
}

/* ------------------------------------------------------------- input -- */

/*
 * The backends' answers' parser. What it accepts it decodes to the value
 * json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL) gives (the fuzz target
 * fuzz_json_load compares both); on anything else (bad JSON, but also a
 * 19-digit integer, a long real, a NUL in a key, nesting past
 * JSON_PARSER_MAX_DEPTH) it hands the text to jansson, whose value or
 * error is the answer. jansson's loader reads through a per-character
 * stream and took about 45% of the gateway's instructions per request on
 * the aggregation's miss path (callgrind, bench/RESULTS.md): this scans
 * strings a run at a time and builds the same jansson values.
 */

#define WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')
#define DIGIT(c) ((c) >= '0' && (c) <= '9')

static const char *skip_ws(const char *s, const char *end)
{
    while (s < end && WS(*s)) {
        ++s;
    }
    return s;
}

static int hex4(const char *s, unsigned int *out)
{
    unsigned int v = 0;
    int i;

    for (i = 0; i < 4; ++i) {
        char c = s[i];

        v <<= 4;
        if (DIGIT(c)) {
            v |= (unsigned int)(c - '0');
        }
        else if (c >= 'a' && c <= 'f') {
            v |= (unsigned int)(c - 'a' + 10);
        }
        else if (c >= 'A' && c <= 'F') {
            v |= (unsigned int)(c - 'A' + 10);
        }
        else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

/* The string whose opening quote is at s[-1]. Sets *out and *olen to its
 * decoded bytes: a pointer into the input when it has no escapes, else
 * *owned, a malloc'd copy for the caller to free. Returns what follows
 * the closing quote, NULL for anything jansson would refuse. */
static const char *lex_string(const char *s, const char *end,
                              const char **out, size_t *olen, char **owned)
{
    const char *p = s;
    char *buf, *o;

    *owned = NULL;
    while (p < end) {
        unsigned char c = (unsigned char)*p;

        if (c == '"') {
            *out = s;
            *olen = (size_t)(p - s);
            return p + 1;
        }
        if (c == '\\') {
            break;
        }
        if (c < 0x20) {
            return NULL;
        }
        if (c < 0x80) {
            ++p;
        }
        else {
            size_t l = utf8_len((const unsigned char *)p, (size_t)(end - p));

            if (!l) {
                return NULL;
            }
            p += l;
        }
    }
    if (p >= end) {
        return NULL;
    }
    /* escapes: decoding never makes a string longer */
    for (p = s; p < end && *p != '"'; ++p) {
        if (*p == '\\') {
            ++p;
        }
    }
    if (p >= end) {
        return NULL;
    }
    if (!(buf = o = malloc((size_t)(p - s) + 1))) {
        return NULL;
    }
    p = s;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        unsigned int cp, lo;

        if (c != '\\') {
            size_t l = 1;

            if (c < 0x20
                || (c >= 0x80
                    && !(l = utf8_len((const unsigned char *)p, (size_t)(end - p))))) {
                goto bad;
            }
            memcpy(o, p, l);
            o += l;
            p += l;
            continue;
        }
        switch (p[1]) {
        case '"': case '\\': case '/':
            *o++ = p[1];
            p += 2;
            continue;
        case 'b': *o++ = '\b'; p += 2; continue;
        case 'f': *o++ = '\f'; p += 2; continue;
        case 'n': *o++ = '\n'; p += 2; continue;
        case 'r': *o++ = '\r'; p += 2; continue;
        case 't': *o++ = '\t'; p += 2; continue;
        case 'u':
            break;
        default:
            goto bad;
        }
        if (end - p < 6 || hex4(p + 2, &cp) < 0) {
            goto bad;
        }
        p += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0
                || lo < 0xdc00 || lo > 0xdfff) {
                goto bad;
            }
            p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        else if (cp >= 0xdc00 && cp <= 0xdfff) {
            goto bad;
        }
        if (cp < 0x80) {
            *o++ = (char)cp;
        }
        else if (cp < 0x800) {
            *o++ = (char)(0xc0 | (cp >> 6));
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
        else if (cp < 0x10000) {
            *o++ = (char)(0xe0 | (cp >> 12));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
        else {
            *o++ = (char)(0xf0 | (cp >> 18));
            *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    *out = *owned = buf;
    *olen = (size_t)(o - buf);
    return p + 1;
bad:
    free(buf);
    return NULL;
}

/*
 * A number: an integer of up to 18 digits, or a real. A real whose digits
 * make an integer M below 2^53 and whose decimal exponent e is within
 * +-22 is M * 10^e or M / 10^-e, one correctly rounded operation on two
 * exact doubles, so it is what strtod gives; other reals go to strtod.
 */
static const char *lex_number(const char *s, const char *end, json_t **v)
{
    static const double p10[] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
    };
    const char *p = s, *digits;
    unsigned long long m = 0;
    int neg = 0, is_real = 0, fast = 1, frac = 0, ndig;
    long exp10 = 0;
    double d;

    if (*p == '-') {
        neg = 1;
        ++p;
    }
    digits = p;
    if (p < end && *p == '0') {
        ++p;
        if (p < end && DIGIT(*p)) {
            return NULL;
        }
    }
    else if (p < end && DIGIT(*p)) {
        while (p < end && DIGIT(*p)) {
            if (m > (1ULL << 53) / 10) {
                fast = 0;
            }
            m = m * 10 + (unsigned long long)(*p - '0');
            ++p;
        }
    }
    else {
        return NULL;
    }
    ndig = (int)(p - digits);
    if (p < end && *p == '.') {
        is_real = 1;
        if (++p >= end || !DIGIT(*p)) {
            return NULL;
        }
        while (p < end && DIGIT(*p)) {
            if (m > (1ULL << 53) / 10) {
                fast = 0;
            }
            m = m * 10 + (unsigned long long)(*p - '0');
            ++frac;
            ++p;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;

        is_real = 1;
        if (++p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            ++p;
        }
        if (p >= end || !DIGIT(*p)) {
            return NULL;
        }
        while (p < end && DIGIT(*p)) {
            if (exp10 < 100000) {
                exp10 = exp10 * 10 + (*p - '0');
            }
            ++p;
        }
        if (eneg) {
            exp10 = -exp10;
        }
    }
    if (!is_real) {
        if (ndig > 18) {
            return NULL;        /* jansson decides: big, or too big */
        }
        *v = json_integer(neg ? -(json_int_t)m : (json_int_t)m);
        return p;
    }
    exp10 -= frac;
    if (fast && m <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        d = exp10 >= 0 ? (double)m * p10[exp10] : (double)m / p10[-exp10];
        if (neg) {
            d = -d;
        }
    }
    else {
        char tmp[64], *e;
        size_t n = (size_t)(p - s);

        if (n >= sizeof(tmp)) {
            return NULL;
        }
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        d = strtod(tmp, &e);
        /* a locale whose decimal point is not '.' stops strtod early */
        if (e != tmp + n || isinf(d)) {
            return NULL;
        }
    }
    *v = json_real(d);
    return p;
}

typedef struct {
    json_t *c;
    const char *key;            /* an object's key awaiting its value */
    size_t klen;
    char *key_owned;
    int is_obj;
} jframe_t;

static json_t *fast_load(const char *buf, size_t len, size_t max_depth,
                         int *too_deep)
{
    const char *s = buf, *end = buf + len;
    jframe_t small[32], *st = small, *top;
    size_t depth = 0, cap = sizeof(small) / sizeof(small[0]);
    json_t *v = NULL;

value:
    s = skip_ws(s, end);
    if (s >= end) {
        goto fail;
    }
    switch (*s) {
    case '{':
    case '[':
        if (depth >= max_depth) {
            *too_deep = max_depth < JSON_PARSER_MAX_DEPTH;
            goto fail;
        }
        if (depth == cap) {
            jframe_t *n = malloc(cap * 2 * sizeof(*n));

            if (!n) {
                goto fail;
            }
            memcpy(n, st, cap * sizeof(*n));
            if (st != small) {
                free(st);
            }
            st = n;
            cap *= 2;
        }
        top = &st[depth++];
        top->is_obj = *s == '{';
        top->key_owned = NULL;
        if (!(top->c = top->is_obj ? json_object() : json_array())) {
            --depth;
            goto fail;
        }
        s = skip_ws(s + 1, end);
        if (s < end && *s == (top->is_obj ? '}' : ']')) {
            ++s;
            v = top->c;
            --depth;
            goto attach;
        }
        if (top->is_obj) {
            goto key;
        }
        goto value;
    case '"': {
        const char *str;
        size_t n;
        char *owned;

        if (!(s = lex_string(s + 1, end, &str, &n, &owned))) {
            goto fail;
        }
        v = json_stringn_nocheck(str, n);
        free(owned);
        break;
    }
    case 't':
        if (end - s < 4 || memcmp(s, "true", 4) != 0) {
            goto fail;
        }
        s += 4;
        v = json_true();
        break;
    case 'f':
        if (end - s < 5 || memcmp(s, "false", 5) != 0) {
            goto fail;
        }
        s += 5;
        v = json_false();
        break;
    case 'n':
        if (end - s < 4 || memcmp(s, "null", 4) != 0) {
            goto fail;
        }
        s += 4;
        v = json_null();
        break;
    default:
        if (!(s = lex_number(s, end, &v))) {
            goto fail;
        }
        break;
    }
    if (!v) {
        goto fail;
    }

attach:
    if (depth == 0) {
        if (skip_ws(s, end) != end) {
            json_decref(v);
            goto fail;
        }
        if (st != small) {
            free(st);
        }
        return v;
    }
    top = &st[depth - 1];
    if (top->is_obj) {
        int rc = json_object_setn_new_nocheck(top->c, top->key, top->klen, v);

        free(top->key_owned);
        top->key_owned = NULL;
        if (rc) {
            goto fail;
        }
    }
    else if (json_array_append_new(top->c, v)) {
        goto fail;
    }
    s = skip_ws(s, end);
    if (s >= end) {
        goto fail;
    }
    if (*s == ',') {
        ++s;
        if (top->is_obj) {
            goto key;
        }
        goto value;
    }
    if (*s == (top->is_obj ? '}' : ']')) {
        ++s;
        v = top->c;
        --depth;
        goto attach;
    }
    goto fail;

key:
    top = &st[depth - 1];
    s = skip_ws(s, end);
    if (s >= end || *s != '"'
        || !(s = lex_string(s + 1, end, &top->key, &top->klen, &top->key_owned))) {
        goto fail;
    }
    /* jansson refuses a NUL in a key: let it say so */
    if (memchr(top->key, '\0', top->klen)) {
        goto fail;
    }
    s = skip_ws(s, end);
    if (s >= end || *s != ':') {
        goto fail;
    }
    ++s;
    goto value;

fail:
    while (depth > 0) {
        --depth;
        free(st[depth].key_owned);
        json_decref(st[depth].c);
    }
    if (st != small) {
        free(st);
    }
    return NULL;
}

json_t *bff_json_load(const char *buf, size_t len, int max_depth,
                      json_error_t *err)
{
    size_t limit = max_depth > 0 && max_depth < JSON_PARSER_MAX_DEPTH
                   ? (size_t)max_depth : JSON_PARSER_MAX_DEPTH;
    int too_deep = 0;
    json_t *v = buf ? fast_load(buf, len, limit, &too_deep) : NULL;

    if (v) {
        return v;
    }
    if (too_deep || (limit < JSON_PARSER_MAX_DEPTH
                     && bff_json_depth(buf, len) > (int)limit)) {
        memset(err, 0, sizeof(*err));
        err->line = err->column = -1;
        snprintf(err->text, sizeof(err->text), "nesting deeper than %d",
                 (int)limit);
        return NULL;
    }
    return json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, err);
}
