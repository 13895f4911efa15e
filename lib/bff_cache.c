/*
 * mod_bff response cache, pure core: keys, entries, freshness, ETags,
 * store URLs and the up/down gate the stores share.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_general.h>
#include <apr_thread_mutex.h>

#include "bff_core.h"
#include "bff_http.h"
#include "bff_cache.h"
#include "bff_redis.h"

/* --------------------------------------------------------------- keys -- */

int bff_cache_prefix_valid(const char *prefix)
{
    apr_size_t n;

    if (!prefix) {
        return 0;
    }
    for (n = 0; prefix[n]; n++) {
        if (n >= BFF_CACHE_PREFIX_MAX
            || !(apr_isalnum(prefix[n]) || strchr("_.:-", prefix[n]))) {
            return 0;
        }
    }
    return 1;
}

int bff_cache_tag_valid(const char *tag)
{
    apr_size_t n;

    if (!tag) {
        return 0;
    }
    for (n = 0; tag[n]; n++) {
        unsigned char c = (unsigned char)tag[n];
        if (n >= BFF_CACHE_TAG_MAX || c < 0x21 || c > 0x7e) {
            return 0;
        }
    }
    return n > 0;
}

/* Every variable part enters the hash as "<len>:<bytes>" and every list
 * as "<letter><count>:", so the byte stream parses back in one way only:
 * ("a","bc") and ("ab","c") cannot produce the same stream. */
static void h_bytes(bff_sha256_t *h, const char *s, apr_size_t n)
{
    char num[32];
    int k = apr_snprintf(num, sizeof(num), "%" APR_SIZE_T_FMT ":", n);

    bff_sha256_update(h, num, (apr_size_t)k);
    bff_sha256_update(h, s, n);
}

static void h_str(bff_sha256_t *h, const char *s)
{
    h_bytes(h, s, strlen(s));
}

static void h_count(bff_sha256_t *h, char section, apr_size_t n)
{
    char num[32];
    int k = apr_snprintf(num, sizeof(num), "%c%" APR_SIZE_T_FMT ":",
                         section, n);

    bff_sha256_update(h, num, (apr_size_t)k);
}

/* An optional value: "-" when absent, "=" + bytes when present. */
static void h_opt(bff_sha256_t *h, const char *v)
{
    if (!v) {
        bff_sha256_update(h, "-", 1);
    }
    else {
        bff_sha256_update(h, "=", 1);
        h_str(h, v);
    }
}

typedef struct {
    const char *s;      /* sort key (a name) */
    apr_size_t n;       /* its length */
    int idx;            /* original position: makes qsort stable */
    const char *item;   /* what is hashed */
    const char *value;
} sort_item_t;

static int item_cmp(const void *a, const void *b)
{
    const sort_item_t *x = a, *y = b;
    apr_size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);

    if (c) {
        return c;
    }
    if (x->n != y->n) {
        return x->n < y->n ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* An encoded query string's pairs, sorted by name; pairs of one name
 * keep their order. */
static void h_query_str(bff_sha256_t *h, char section, const char *q,
                        apr_pool_t *p)
{
    apr_array_header_t *items = apr_array_make(p, 8, sizeof(sort_item_t));
    const char *s;
    int i;

    for (s = q; s && *s;) {
        const char *amp = strchr(s, '&');
        apr_size_t len = amp ? (apr_size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        sort_item_t *it = apr_array_push(items);

        it->s = s;
        it->n = eq ? (apr_size_t)(eq - s) : len;
        it->idx = items->nelts;
        it->item = apr_pstrmemdup(p, s, len);
        it->value = NULL;
        s += len;
        if (*s == '&') {
            s++;
        }
    }
    qsort(items->elts, (size_t)items->nelts, sizeof(sort_item_t), item_cmp);
    h_count(h, section, (apr_size_t)items->nelts);
    for (i = 0; i < items->nelts; i++) {
        h_str(h, APR_ARRAY_IDX(items, i, sort_item_t).item);
    }
}

/* Query parameters that are part of the key, normalised by
 * bff_query_filter (the same decoding and encoding backends get). */
static void h_query(bff_sha256_t *h, const bff_cache_key_in_t *in,
                    apr_pool_t *p)
{
    const char *q = NULL;

    if (in->query && in->query_keys && in->query_keys->nelts) {
        q = bff_query_filter(in->query, in->query_keys, p);
    }
    h_query_str(h, 'Q', q, p);
}

/* Backend request headers: "Name: value" lines, the name lower-cased and
 * the value trimmed, sorted by name (stable). A line without ':' is a
 * name with an empty value. */
static void h_headers(bff_sha256_t *h, const apr_array_header_t *hdrs,
                      apr_pool_t *p)
{
    int n = hdrs ? hdrs->nelts : 0, i;
    sort_item_t *items = apr_pcalloc(p, sizeof(*items) * (apr_size_t)(n + 1));

    for (i = 0; i < n; i++) {
        const char *line = APR_ARRAY_IDX(hdrs, i, const char *);
        const char *colon = line ? strchr(line, ':') : NULL;
        apr_size_t nlen = colon ? (apr_size_t)(colon - line)
                                : (line ? strlen(line) : 0);
        const char *v = colon ? colon + 1 : "", *e;
        char *name = apr_pstrmemdup(p, line ? line : "", nlen), *c;

        for (c = name; *c; c++) {
            *c = (char)apr_tolower(*c);
        }
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t'); e--) {
        }
        items[i].s = name;
        items[i].n = nlen;
        items[i].idx = i;
        items[i].item = name;
        items[i].value = apr_pstrmemdup(p, v, (apr_size_t)(e - v));
    }
    qsort(items, (size_t)n, sizeof(*items), item_cmp);
    h_count(h, 'H', (apr_size_t)n);
    for (i = 0; i < n; i++) {
        h_str(h, items[i].item);
        h_str(h, items[i].value);
    }
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* fields: a set of names; order, spaces and repeats do not matter. */
static void h_fields(bff_sha256_t *h, const char *fields, apr_pool_t *p)
{
    apr_array_header_t *f;
    const char *s = fields;
    int i, n = 0;

    if (!fields) {
        bff_sha256_update(h, "F-", 2);
        return;
    }
    f = apr_array_make(p, 8, sizeof(const char *));
    while (*s) {
        const char *comma = strchr(s, ','), *b = s, *e;
        e = comma ? comma : s + strlen(s);
        while (b < e && (*b == ' ' || *b == '\t')) {
            b++;
        }
        while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        if (e > b) {
            APR_ARRAY_PUSH(f, const char *) = apr_pstrmemdup(p, b,
                                                             (apr_size_t)(e - b));
        }
        s = comma ? comma + 1 : e + strlen(e);
    }
    qsort(f->elts, (size_t)f->nelts, sizeof(const char *), str_cmp);
    for (i = 0; i < f->nelts; i++) {
        const char *x = APR_ARRAY_IDX(f, i, const char *);
        if (n == 0 || strcmp(x, APR_ARRAY_IDX(f, n - 1, const char *))) {
            APR_ARRAY_IDX(f, n, const char *) = x;
            n++;
        }
    }
    h_count(h, 'F', (apr_size_t)n);
    for (i = 0; i < n; i++) {
        h_str(h, APR_ARRAY_IDX(f, i, const char *));
    }
}

static const char *h_pairs(bff_sha256_t *h, char section,
                           const bff_cache_kv_t *kv, int n, int sort,
                           apr_pool_t *p)
{
    sort_item_t *items;
    int i;

    if (n < 0 || (n > 0 && !kv)) {
        return apr_psprintf(p, "cache key: bad list of %s",
                            section == 'P' ? "parameters" : "vary inputs");
    }
    items = apr_pcalloc(p, sizeof(*items) * (apr_size_t)(n ? n : 1));
    for (i = 0; i < n; i++) {
        if (!kv[i].name) {
            return apr_psprintf(p, "cache key: %s %d has no name",
                                section == 'P' ? "parameter" : "vary input",
                                i);
        }
        items[i].s = kv[i].name;
        items[i].n = strlen(kv[i].name);
        items[i].idx = i;
        items[i].item = kv[i].name;
        items[i].value = kv[i].value;
    }
    if (sort) {
        qsort(items, (size_t)n, sizeof(*items), item_cmp);
    }
    h_count(h, section, (apr_size_t)n);
    for (i = 0; i < n; i++) {
        h_str(h, items[i].item);
        h_opt(h, items[i].value);
    }
    return NULL;
}

const char *bff_cache_key(const char **key, const bff_cache_key_in_t *in,
                          apr_pool_t *p)
{
    static const char version[] = "bff-cache-key/2\n";
    bff_sha256_t h;
    unsigned char md[32];
    const char *prefix = in->prefix ? in->prefix : "", *err;

    if (!bff_cache_prefix_valid(prefix)) {
        return apr_psprintf(p, "cache key prefix '%s' is invalid (at most %d "
                            "of A-Z a-z 0-9 _ . : -)", prefix,
                            BFF_CACHE_PREFIX_MAX);
    }
    if (!in->endpoint || !*in->endpoint) {
        return "cache key: no endpoint";
    }
    bff_sha256_init(&h);
    bff_sha256_update(&h, version, sizeof(version) - 1);
    bff_sha256_update(&h, "E", 1);
    h_str(&h, in->endpoint);
    /* route order is fixed by the pattern: no sorting */
    if ((err = h_pairs(&h, 'P', in->params, in->nparams, 0, p))) {
        bff_sha256_final(md, &h);
        return err;
    }
    h_query(&h, in, p);
    h_fields(&h, in->fields, p);
    if ((err = h_pairs(&h, 'V', in->vary, in->nvary, 1, p))) {
        bff_sha256_final(md, &h);
        return err;
    }
    bff_sha256_update(&h, "S", 1);
    h_opt(&h, in->scope);
    bff_sha256_update(&h, "C", 1);
    h_opt(&h, in->config);
    h_headers(&h, in->headers, p);
    h_query_str(&h, 'B', in->backend_query, p);
    bff_sha256_update(&h, "I", 1);
    h_opt(&h, in->identity);
    bff_sha256_final(md, &h);
    *key = apr_pstrcat(p, prefix, bff_hex(md, sizeof(md), p), NULL);
    return NULL;
}

const char *bff_cache_tag_key(const char *prefix, const char *tag,
                              apr_pool_t *p)
{
    unsigned char md[32];

    bff_sha256(md, tag, strlen(tag));
    return apr_pstrcat(p, prefix ? prefix : "", "tag:", bff_hex(md, 16, p),
                       NULL);
}

/* ------------------------------------------------------------ entries -- */

#define ENTRY_MAGIC    "BFCE"
#define ENTRY_VERSION  1
#define ENTRY_HDR_LEN  32
#define FLAG_COMPLETED 0x01

static int ctype_valid(const char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E
 * (obs-text refused: we only ever store our own hex validators). */
static int etag_valid(const char *s, apr_size_t n)
{
    apr_size_t i = 0;

    if (n >= 2 && s[0] == 'W' && s[1] == '/') {
        i = 2;
    }
    if (n < i + 2 || s[i] != '"' || s[n - 1] != '"') {
        return 0;
    }
    for (i++; i < n - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == '"' || c > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static void put16(unsigned char *b, apr_uint32_t v)
{
    b[0] = (unsigned char)(v >> 8);
    b[1] = (unsigned char)v;
}

static void put32(unsigned char *b, apr_uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

static apr_uint32_t get16(const unsigned char *b)
{
    return (apr_uint32_t)b[0] << 8 | b[1];
}

static apr_uint32_t get32(const unsigned char *b)
{
    return (apr_uint32_t)b[0] << 24 | (apr_uint32_t)b[1] << 16
           | (apr_uint32_t)b[2] << 8 | b[3];
}

const char *bff_cache_entry_encode(const char **buf, apr_size_t *len,
                                   const bff_cache_entry_t *e,
                                   apr_pool_t *p)
{
    apr_size_t ctlen = e->content_type ? strlen(e->content_type) : 0;
    apr_size_t etlen = e->etag ? strlen(e->etag) : 0;
    int ntags = e->tags ? e->tags->nelts : 0, i;
    apr_size_t total = ENTRY_HDR_LEN + ctlen + etlen + e->body_len;
    apr_uint64_t created;
    unsigned char *b, *w;

    if (e->status < 100 || e->status > 599) {
        return apr_psprintf(p, "cache entry: status %d out of range",
                            e->status);
    }
    if (e->ttl_ms < 0 || e->ttl_ms > BFF_CACHE_TTL_MAX_MS
        || e->grace_ms < 0 || e->grace_ms > BFF_CACHE_TTL_MAX_MS) {
        return apr_psprintf(p, "cache entry: ttl %ldms / grace %ldms out of "
                            "range (0 to 30 days)", e->ttl_ms, e->grace_ms);
    }
    if (e->created < 0) {
        return "cache entry: negative creation time";
    }
    if (ctlen > BFF_CACHE_CTYPE_MAX || !ctype_valid(e->content_type, ctlen)) {
        return "cache entry: content type too long or not printable ASCII";
    }
    if (e->etag && (etlen > BFF_CACHE_ETAG_MAX
                    || !etag_valid(e->etag, etlen))) {
        return apr_psprintf(p, "cache entry: invalid ETag %s", e->etag);
    }
    if (ntags > BFF_CACHE_MAX_TAGS) {
        return apr_psprintf(p, "cache entry: %d tags (at most %d)", ntags,
                            BFF_CACHE_MAX_TAGS);
    }
    if (e->body_len > 0xffffffffUL || (e->body_len && !e->body)) {
        return "cache entry: body too large";
    }
    for (i = 0; i < ntags; i++) {
        const char *t = APR_ARRAY_IDX(e->tags, i, const char *);
        if (!bff_cache_tag_valid(t)) {
            return apr_psprintf(p, "cache entry: invalid tag '%s' (1 to %d "
                                "visible ASCII characters)", t ? t : "(null)",
                                BFF_CACHE_TAG_MAX);
        }
        total += 1 + strlen(t);
    }

    w = b = apr_palloc(p, total);
    memcpy(w, ENTRY_MAGIC, 4);
    w[4] = ENTRY_VERSION;
    w[5] = e->completed ? FLAG_COMPLETED : 0;
    put16(w + 6, (apr_uint32_t)e->status);
    created = (apr_uint64_t)e->created;
    put32(w + 8, (apr_uint32_t)(created >> 32));
    put32(w + 12, (apr_uint32_t)created);
    put32(w + 16, (apr_uint32_t)e->ttl_ms);
    put32(w + 20, (apr_uint32_t)e->grace_ms);
    put32(w + 24, (apr_uint32_t)e->body_len);
    w[28] = (unsigned char)ctlen;
    w[29] = (unsigned char)etlen;
    w[30] = (unsigned char)ntags;
    w[31] = 0;
    w += ENTRY_HDR_LEN;
    memcpy(w, e->content_type ? e->content_type : "", ctlen);
    w += ctlen;
    memcpy(w, e->etag ? e->etag : "", etlen);
    w += etlen;
    for (i = 0; i < ntags; i++) {
        const char *t = APR_ARRAY_IDX(e->tags, i, const char *);
        apr_size_t tl = strlen(t);
        *w++ = (unsigned char)tl;
        memcpy(w, t, tl);
        w += tl;
    }
    if (e->body_len) {
        memcpy(w, e->body, e->body_len);
    }
    *buf = (const char *)b;
    *len = total;
    return NULL;
}

const char *bff_cache_entry_decode(bff_cache_entry_t *e, const char *buf,
                                   apr_size_t len, apr_size_t max_body,
                                   apr_pool_t *p)
{
    const unsigned char *b = (const unsigned char *)buf, *r;
    apr_size_t ctlen, etlen, need, body_len, left;
    apr_uint64_t created;
    apr_array_header_t *tags;
    int ntags, i;

    memset(e, 0, sizeof(*e));
    if (!buf || len < ENTRY_HDR_LEN) {
        return "cache entry: truncated header";
    }
    if (memcmp(b, ENTRY_MAGIC, 4)) {
        return "cache entry: bad magic (not a mod_bff entry)";
    }
    if (b[4] != ENTRY_VERSION) {
        return apr_psprintf(p, "cache entry: unknown version %d", b[4]);
    }
    if (b[5] & ~FLAG_COMPLETED || b[31] != 0) {
        return "cache entry: unknown flags";
    }
    e->completed = b[5] & FLAG_COMPLETED;
    e->status = (int)get16(b + 6);
    if (e->status < 100 || e->status > 599) {
        return apr_psprintf(p, "cache entry: status %d out of range",
                            e->status);
    }
    created = (apr_uint64_t)get32(b + 8) << 32 | get32(b + 12);
    if (created > (apr_uint64_t)APR_INT64_MAX) {
        return "cache entry: bad creation time";
    }
    e->created = (apr_time_t)created;
    e->ttl_ms = (long)get32(b + 16);
    e->grace_ms = (long)get32(b + 20);
    if (e->ttl_ms > BFF_CACHE_TTL_MAX_MS || e->grace_ms > BFF_CACHE_TTL_MAX_MS) {
        return "cache entry: ttl or grace out of range";
    }
    body_len = get32(b + 24);
    ctlen = b[28];
    etlen = b[29];
    ntags = b[30];
    if (ntags > BFF_CACHE_MAX_TAGS) {
        return apr_psprintf(p, "cache entry: %d tags (at most %d)", ntags,
                            BFF_CACHE_MAX_TAGS);
    }
    if (max_body && body_len > max_body) {
        return apr_psprintf(p, "cache entry: body of %" APR_SIZE_T_FMT
                            " bytes exceeds %" APR_SIZE_T_FMT, body_len,
                            max_body);
    }
    /* every length is bounded (u8/u32), so these sums cannot overflow */
    left = len - ENTRY_HDR_LEN;
    need = ctlen + etlen + body_len + (apr_size_t)ntags;
    if (left < need) {
        return "cache entry: truncated";
    }
    r = b + ENTRY_HDR_LEN;
    if (!ctype_valid((const char *)r, ctlen)) {
        return "cache entry: content type is not printable ASCII";
    }
    e->content_type = ctlen ? apr_pstrmemdup(p, (const char *)r, ctlen)
                            : NULL;
    r += ctlen;
    if (etlen && !etag_valid((const char *)r, etlen)) {
        return "cache entry: invalid ETag";
    }
    e->etag = etlen ? apr_pstrmemdup(p, (const char *)r, etlen) : NULL;
    r += etlen;
    left -= ctlen + etlen;
    tags = apr_array_make(p, ntags ? ntags : 1, sizeof(const char *));
    for (i = 0; i < ntags; i++) {
        apr_size_t tl;
        const char *t;
        if (left < 1) {
            return "cache entry: truncated tags";
        }
        tl = *r++;
        left--;
        if (left < tl) {
            return "cache entry: truncated tags";
        }
        t = apr_pstrmemdup(p, (const char *)r, tl);
        if (!bff_cache_tag_valid(t) || strlen(t) != tl) {
            return "cache entry: invalid tag";
        }
        APR_ARRAY_PUSH(tags, const char *) = t;
        r += tl;
        left -= tl;
    }
    e->tags = tags;
    if (left != body_len) {
        return left < body_len ? "cache entry: truncated body"
                               : "cache entry: trailing bytes";
    }
    e->body = (const char *)r;
    e->body_len = body_len;
    return NULL;
}

static apr_interval_time_t entry_age_us(const bff_cache_entry_t *e,
                                        apr_time_t now)
{
    return now > e->created ? now - e->created : 0;
}

int bff_cache_entry_is_fresh(const bff_cache_entry_t *e, apr_time_t now)
{
    return entry_age_us(e, now) < (apr_interval_time_t)e->ttl_ms * 1000;
}

int bff_cache_entry_is_stale_usable(const bff_cache_entry_t *e,
                                    apr_time_t now)
{
    apr_interval_time_t age = entry_age_us(e, now);

    return age >= (apr_interval_time_t)e->ttl_ms * 1000
           && age < ((apr_interval_time_t)e->ttl_ms + e->grace_ms) * 1000;
}

long bff_cache_entry_age(const bff_cache_entry_t *e, apr_time_t now)
{
    return (long)apr_time_sec(entry_age_us(e, now));
}

long bff_cache_entry_store_ttl_ms(const bff_cache_entry_t *e)
{
    long t = e->ttl_ms + e->grace_ms;

    return t > 0 ? t : 1;
}

/* --------------------------------------------------------------- ETag -- */

const char *bff_cache_etag(const char *body, apr_size_t len, apr_pool_t *p)
{
    unsigned char md[32];

    bff_sha256(md, body ? body : "", body ? len : 0);
    return apr_pstrcat(p, "\"", bff_hex(md, 16, p), "\"", NULL);
}

static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    return s;
}

/* The opaque part of an entity-tag: the quoted string without W/. */
static int etag_opaque(const char *etag, const char **o, apr_size_t *n)
{
    apr_size_t len = strlen(etag);

    if (!etag_valid(etag, len)) {
        return 0;
    }
    if (etag[0] == 'W') {
        etag += 2;
        len -= 2;
    }
    *o = etag;
    *n = len;
    return 1;
}

int bff_etag_match(const char *inm, const char *etag)
{
    const char *s, *cur;
    apr_size_t curlen;

    if (!inm) {
        return 0;
    }
    s = skip_ows(inm);
    if (*s == '*') {
        return *skip_ows(s + 1) == '\0' && etag != NULL;
    }
    if (!etag || !etag_opaque(etag, &cur, &curlen)) {
        return 0;
    }
    for (;;) {
        const char *o;

        /* a #list may hold empty elements: ", ," */
        while (*s == ',' || *s == ' ' || *s == '\t') {
            s++;
        }
        if (!*s) {
            return 0;
        }
        if (s[0] == 'W' && s[1] == '/') {
            s += 2;
        }
        if (*s != '"') {
            return 0;
        }
        for (o = s++; *s && *s != '"'; s++) {
            unsigned char c = (unsigned char)*s;
            if (c < 0x21 || c == 0x7f) {      /* etagc, obs-text allowed */
                return 0;
            }
        }
        if (*s != '"') {
            return 0;
        }
        s++;
        if ((apr_size_t)(s - o) == curlen && !memcmp(o, cur, curlen)) {
            return 1;
        }
        s = skip_ows(s);
        if (*s && *s != ',') {
            return 0;
        }
    }
}

/* --------------------------------------------------------------- URLs -- */

static int hexval(char c)
{
    return apr_isdigit(c) ? c - '0' : apr_tolower(c) - 'a' + 10;
}

/* Percent-decodes userinfo text; only RFC 3986 userinfo characters may
 * appear literally, and %00 is refused (the value goes into AUTH). */
static const char *userinfo_decode(const char **out, const char *s,
                                   apr_size_t n, const char *what,
                                   apr_pool_t *p)
{
    char *d = apr_palloc(p, n + 1), *w = d;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int v;
            if (i + 2 >= n || !apr_isxdigit(s[i + 1])
                || !apr_isxdigit(s[i + 2])) {
                return apr_psprintf(p, "bad %%-escape in the %s", what);
            }
            v = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            if (v == 0) {
                return apr_psprintf(p, "%%00 in the %s", what);
            }
            *w++ = (char)v;
            i += 2;
        }
        else if (apr_isalnum(c) || strchr("-._~!$&'()*+,;=:", c)) {
            *w++ = c;
        }
        else {
            return apr_psprintf(p, "character '%c' must be %%-encoded in the "
                                "%s", apr_isprint(c) ? c : '?', what);
        }
    }
    *w = '\0';
    *out = d;
    return NULL;
}

/* "[user]:password" */
static const char *parse_userinfo(bff_redis_url_t *out, const char *s,
                                  apr_size_t n, apr_pool_t *p)
{
    const char *colon = memchr(s, ':', n), *err;

    if (!colon) {
        return "credentials must be ':password' or 'user:password'";
    }
    if (colon > s) {
        if ((err = userinfo_decode(&out->user, s, (apr_size_t)(colon - s),
                                   "user name", p))) {
            return err;
        }
    }
    if ((err = userinfo_decode(&out->password, colon + 1,
                               n - (apr_size_t)(colon - s) - 1, "password",
                               p))) {
        return err;
    }
    if (!*out->password) {
        return "empty password";
    }
    return NULL;
}

/* Decimal without sign or leading zeros, at most max. */
static int parse_uint(long *v, const char *s, apr_size_t n, long max)
{
    apr_size_t i;
    long x = 0;

    if (n == 0 || n > 10 || (n > 1 && s[0] == '0')) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!apr_isdigit(s[i])) {
            return 0;
        }
        x = x * 10 + (s[i] - '0');
        if (x > max) {
            return 0;
        }
    }
    *v = x;
    return 1;
}

/* host[:port] or [v6][:port]: exactly n bytes. */
static const char *parse_hostport(const char **host, int *port,
                                  const char *s, apr_size_t n,
                                  apr_pool_t *p)
{
    const char *end = s + n, *h, *he;
    long v;

    if (n && *s == '[') {
        h = s + 1;
        he = memchr(h, ']', n - 1);
        if (!he || he == h) {
            return "bad [IPv6] address";
        }
        for (s = h; s < he; s++) {
            if (!apr_isxdigit(*s) && *s != ':' && *s != '.') {
                return "bad [IPv6] address";
            }
        }
        s = he + 1;
    }
    else {
        h = s;
        while (s < end && *s != ':') {
            if (!apr_isalnum(*s) && *s != '.' && *s != '-') {
                return apr_psprintf(p, "bad character '%c' in host name",
                                    apr_isprint(*s) ? *s : '?');
            }
            s++;
        }
        he = s;
        if (he == h) {
            return "no host";
        }
        if (he - h > 253) {
            return "host name too long";
        }
    }
    if (s < end) {
        if (*s != ':' || !parse_uint(&v, s + 1, (apr_size_t)(end - s - 1),
                                     65535) || v == 0) {
            return "port must be a number from 1 to 65535";
        }
        *port = (int)v;
    }
    *host = apr_pstrmemdup(p, h, (apr_size_t)(he - h));
    return NULL;
}

static int prefix_is(const char *s, const char *prefix)
{
    return !strncasecmp(s, prefix, strlen(prefix));
}

const char *bff_redis_url_parse(bff_redis_url_t *out, const char *url,
                                apr_pool_t *p)
{
    const char *s, *slash, *at, *err, *q;
    long v;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url) {
        return "no Redis URL";
    }
    if (prefix_is(url, "rediss://")) {
        return apr_psprintf(p, "Redis URL '%s': TLS (rediss://) is not "
                            "supported", url);
    }
    if (prefix_is(url, "redis+unix://")) {
        s = url + strlen("redis+unix://");
        if (*s != '/') {
            at = strchr(s, '@');
            if (!at || at[1] != '/') {
                return apr_psprintf(p, "Redis URL '%s': expected "
                                    "redis+unix://[:password@]/path", url);
            }
            if ((err = parse_userinfo(out, s, (apr_size_t)(at - s), p))) {
                return apr_psprintf(p, "Redis URL: %s", err);
            }
            s = at + 1;
        }
        q = strchr(s, '?');
        out->path = q ? apr_pstrmemdup(p, s, (apr_size_t)(q - s))
                      : apr_pstrdup(p, s);
        if (strlen(out->path) < 2 || strlen(out->path) > 107) {
            return apr_psprintf(p, "Redis URL '%s': socket path must be 2 to "
                                "107 characters", url);
        }
        for (s = out->path; *s; s++) {
            if ((unsigned char)*s < 0x21 || *s == '#' || *s == '%'
                || *s == 0x7f || *s == '@') {
                return apr_psprintf(p, "Redis URL '%s': bad character in "
                                    "socket path", url);
            }
        }
        if (q) {
            if (strncmp(q, "?db=", 4)
                || !parse_uint(&v, q + 4, strlen(q + 4), 65535)) {
                return apr_psprintf(p, "Redis URL '%s': the only query "
                                    "allowed is ?db=N (0 to 65535)", url);
            }
            out->db = (int)v;
        }
        out->host = NULL;
        out->port = 0;
        return NULL;
    }
    if (!prefix_is(url, "redis://")) {
        return apr_psprintf(p, "Redis URL '%s': expected redis://[:password@]"
                            "host[:port][/db] or redis+unix:///path[?db=N]",
                            url);
    }
    s = url + strlen("redis://");
    if (strpbrk(s, "?#")) {
        return apr_psprintf(p, "Redis URL '%s': no query or fragment allowed",
                            url);
    }
    slash = strchr(s, '/');
    if (!slash) {
        slash = s + strlen(s);
    }
    /* the last '@' ends the credentials; the password must encode its own */
    for (at = NULL, q = s; q < slash; q++) {
        if (*q == '@') {
            at = q;
        }
    }
    if (at) {
        if (memchr(s, '@', (apr_size_t)(at - s))) {
            return apr_psprintf(p, "Redis URL '%s': encode '@' in the "
                                "password as %%40", url);
        }
        if ((err = parse_userinfo(out, s, (apr_size_t)(at - s), p))) {
            return apr_psprintf(p, "Redis URL: %s", err);
        }
        s = at + 1;
    }
    if ((err = parse_hostport(&out->host, &out->port, s,
                              (apr_size_t)(slash - s), p))) {
        return apr_psprintf(p, "Redis URL '%s': %s", url, err);
    }
    if (*slash && slash[1]) {
        if (!parse_uint(&v, slash + 1, strlen(slash + 1), 65535)) {
            return apr_psprintf(p, "Redis URL '%s': database must be a number "
                                "from 0 to 65535", url);
        }
        out->db = (int)v;
    }
    return NULL;
}

const char *bff_memcache_url_parse(apr_array_header_t **servers,
                                   const char *url, apr_pool_t *p)
{
    const char *s, *err;
    apr_array_header_t *a;
    int i;

    if (!url || !prefix_is(url, "memcache://")) {
        return apr_psprintf(p, "memcache URL '%s': expected "
                            "memcache://host[:port][,host[:port]]...",
                            url ? url : "");
    }
    s = url + strlen("memcache://");
    if (strpbrk(s, "/?#@")) {
        return apr_psprintf(p, "memcache URL '%s': only host[:port] lists "
                            "are allowed (no credentials, path or query)",
                            url);
    }
    a = apr_array_make(p, 4, sizeof(bff_memcache_server_t));
    for (;;) {
        const char *comma = strchr(s, ',');
        apr_size_t n = comma ? (apr_size_t)(comma - s) : strlen(s);
        bff_memcache_server_t *ms;

        if (a->nelts >= 64) {
            return apr_psprintf(p, "memcache URL '%s': at most 64 servers",
                                url);
        }
        ms = apr_array_push(a);
        ms->port = 11211;
        if ((err = parse_hostport(&ms->host, &ms->port, s, n, p))) {
            return apr_psprintf(p, "memcache URL '%s': server %d: %s", url,
                                a->nelts, err);
        }
        for (i = 0; i < a->nelts - 1; i++) {
            bff_memcache_server_t *o = &APR_ARRAY_IDX(a, i,
                                                      bff_memcache_server_t);
            if (!strcasecmp(o->host, ms->host) && o->port == ms->port) {
                return apr_psprintf(p, "memcache URL '%s': server %s:%d "
                                    "listed twice", url, ms->host, ms->port);
            }
        }
        if (!comma) {
            break;
        }
        s = comma + 1;
    }
    *servers = a;
    return NULL;
}

/* ------------------------------------------------------ store helpers -- */

const char *bff_store_rc_str(bff_store_rc_e rc)
{
    switch (rc) {
    case BFF_STORE_OK:          return "ok";
    case BFF_STORE_MISS:        return "miss";
    case BFF_STORE_HELD:        return "held";
    case BFF_STORE_ERROR:       return "error";
    case BFF_STORE_UNSUPPORTED: return "unsupported";
    }
    return "unknown";
}

void bff_store_opts_default(bff_store_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->prefix = "bff:";
    o->connect_timeout_ms = 50;
    o->command_timeout_ms = 50;
    o->pool_max = 16;
    o->pool_idle_ms = 60 * 1000;
    o->backoff_min_ms = 100;
    o->backoff_max_ms = 5000;
    o->max_value = 16 * 1024 * 1024;
}

const char *bff_store_opts_check(const bff_store_opts_t *o, apr_pool_t *p)
{
    if (!bff_cache_prefix_valid(o->prefix)) {
        return apr_psprintf(p, "cache key prefix '%s' is invalid (at most %d "
                            "of A-Z a-z 0-9 _ . : -)",
                            o->prefix ? o->prefix : "(null)",
                            BFF_CACHE_PREFIX_MAX);
    }
    if (o->connect_timeout_ms <= 0 || o->command_timeout_ms <= 0) {
        return "cache store timeouts must be positive";
    }
    if (o->pool_max <= 0 || o->pool_max > 1024) {
        return apr_psprintf(p, "cache store pool size %d: must be 1 to 1024",
                            o->pool_max);
    }
    if (o->pool_idle_ms < 0) {
        return "cache store idle time must not be negative";
    }
    if (o->backoff_min_ms <= 0 || o->backoff_max_ms < o->backoff_min_ms) {
        return "cache store backoff: the minimum must be positive and not "
               "above the maximum";
    }
    if (o->max_value < 1024) {
        return "cache store value limit must be at least 1k";
    }
    return NULL;
}

const char *bff_store_token(apr_pool_t *p)
{
    unsigned char rnd[16];

    bff_random_bytes(rnd, sizeof(rnd));
    return bff_hex(rnd, sizeof(rnd), p);
}
