/*
 * mod_bff: server-sent events framing, stream ids and keys (see
 * bff_sse.h).
 */
#include <string.h>

#include <apr_strings.h>

#include "bff_cache.h"
#include "bff_sse.h"

/* one decimal number of at most 20 digits, no leading zero, <= 2^64-1;
 * the end of it in *end */
static int parse_u64(apr_uint64_t *out, const char *s, const char **end)
{
    apr_uint64_t v = 0;
    int n = 0;

    if (*s == '0' && s[1] >= '0' && s[1] <= '9') {
        return 0;
    }
    for (; *s >= '0' && *s <= '9'; s++, n++) {
        apr_uint64_t d = (apr_uint64_t)(*s - '0');
        if (n == 20 || v > (APR_UINT64_MAX - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *out = v;
    *end = s;
    return n > 0;
}

int bff_sse_id_parse(apr_uint64_t *ms, apr_uint64_t *seq, const char *s)
{
    apr_uint64_t a, b;
    const char *e;

    if (!s || !parse_u64(&a, s, &e) || *e != '-'
        || !parse_u64(&b, e + 1, &e) || *e) {
        return 0;
    }
    *ms = a;
    *seq = b;
    return 1;
}

int bff_sse_id_cmp(const char *a, const char *b)
{
    apr_uint64_t am = 0, as = 0, bm = 0, bs = 0;

    bff_sse_id_parse(&am, &as, a);
    bff_sse_id_parse(&bm, &bs, b);
    if (am != bm) {
        return am < bm ? -1 : 1;
    }
    return as < bs ? -1 : as > bs ? 1 : 0;
}

const char *bff_sse_identity_key(const char *prefix, const char *iss,
                                 const char *sub, apr_pool_t *p)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    char hex[65];
    bff_sha256_t c;
    int i;

    bff_sha256_init(&c);
    bff_sha256_update(&c, iss, strlen(iss) + 1);    /* with its NUL */
    bff_sha256_update(&c, sub, strlen(sub));
    bff_sha256_final(md, &c);
    for (i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return apr_pstrcat(p, prefix, "notifications:", hex, NULL);
}

const char *bff_sse_topic_key(const char *prefix, const char *topic,
                              apr_pool_t *p)
{
    return apr_pstrcat(p, prefix, "topic:", topic, NULL);
}

int bff_sse_topic_valid(const char *name)
{
    apr_size_t n = strlen(name);

    return n >= 1 && n <= 128
           && strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                           "0123456789_.:-") == n;
}

static int field_is(const bff_sse_field_t *f, const char *name)
{
    return f->nlen == strlen(name) && !memcmp(f->name, name, f->nlen);
}

const char *bff_sse_frame(apr_size_t *len, const char **why, const char *id,
                          const bff_sse_field_t *f, int n, apr_pool_t *p)
{
    const bff_sse_field_t *event = NULL, *data = NULL;
    apr_size_t cap, i, o = 0;
    char *out;
    int k;

    for (k = 0; k < n; k++) {
        if (field_is(&f[k], "event")) {
            event = &f[k];
        }
        else if (field_is(&f[k], "data")) {
            data = &f[k];
        }
    }
    *why = !data ? "no data field"
         : event && (memchr(event->value, '\r', event->vlen)
                     || memchr(event->value, '\n', event->vlen)
                     || memchr(event->value, '\0', event->vlen))
           ? "event name with CR, LF or NUL" : NULL;
    /* each data line adds "data: " and "\n": at worst one per byte */
    cap = strlen(id) + 8 + (event && !*why ? event->vlen + 8 : 0)
          + (data && !*why ? data->vlen * 8 + 8 : 0) + 2;
    out = apr_palloc(p, cap);
    o = (apr_size_t)apr_snprintf(out, cap, "id: %s\n", id);
    if (!*why) {
        if (event) {
            memcpy(out + o, "event: ", 7);
            o += 7;
            memcpy(out + o, event->value, event->vlen);
            o += event->vlen;
            out[o++] = '\n';
        }
        memcpy(out + o, "data: ", 6);
        o += 6;
        for (i = 0; i < data->vlen; i++) {
            char c = data->value[i];
            if (c == '\r' || c == '\n') {
                if (c == '\r' && i + 1 < data->vlen
                    && data->value[i + 1] == '\n') {
                    i++;
                }
                memcpy(out + o, "\ndata: ", 7);
                o += 7;
            }
            else {
                out[o++] = c;
            }
        }
        out[o++] = '\n';
    }
    out[o++] = '\n';
    out[o] = '\0';
    *len = o;
    return out;
}
