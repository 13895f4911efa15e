/*
 * libFuzzer target for what the cache reads from outside: stored entries
 * (a store is shared, so its bytes are untrusted), store URLs (config),
 * If-None-Match headers (clients) and cache key inputs (clients).
 *
 *   scripts/fuzz.sh fuzz_cache_entry
 *
 * Input: a mode byte, then the bytes for that mode. The input is passed
 * at its exact size, so ASan catches any read past it. Besides the
 * sanitizers, it aborts when an invariant breaks:
 *   0 entry:  an accepted entry re-encodes to exactly the same bytes, its
 *             body lies inside the input and respects max_body, its
 *             content type and etag are header-safe;
 *   1 Redis URL, 2 memcache URL: accepted values are in range;
 *   3 If-None-Match ("header\netag"): no crash, and an etag always
 *             matches itself;
 *   4 key ("endpoint\nquery\nfields\nparam\nvary"): the key is at most
 *             BFF_CACHE_KEY_MAX bytes of printable ASCII without spaces.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_core.h"
#include "bff_cache.h"
#include "bff_redis.h"

static apr_pool_t *pool;

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static int header_safe(const char *s)
{
    for (; s && *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static void fuzz_entry(const char *d, size_t n)
{
    bff_cache_entry_t e;
    const char *buf;
    apr_size_t len;
    const apr_size_t max_body = 1024;

    if (bff_cache_entry_decode(&e, d, n, max_body, pool)) {
        return;
    }
    check(e.body >= d && e.body + e.body_len == d + n);
    check(e.body_len <= max_body);
    check(e.status >= 100 && e.status <= 599);
    check(header_safe(e.content_type) && header_safe(e.etag));
    check(!e.etag || bff_etag_match(e.etag, e.etag));
    check(bff_cache_entry_encode(&buf, &len, &e, pool) == NULL);
    check(len == n && !memcmp(buf, d, n));
    /* freshness helpers at extreme clocks */
    bff_cache_entry_is_fresh(&e, 0);
    bff_cache_entry_is_stale_usable(&e, APR_INT64_MAX / 2);
    check(bff_cache_entry_age(&e, e.created) == 0);
    check(bff_cache_entry_store_ttl_ms(&e) >= 1);
}

static void fuzz_redis_url(const char *s)
{
    bff_redis_url_t u;

    if (bff_redis_url_parse(&u, s, pool)) {
        return;
    }
    check(u.db >= 0 && u.db <= 65535);
    if (u.path) {
        check(u.path[0] == '/' && !u.host);
    }
    else {
        check(u.host && *u.host && u.port >= 1 && u.port <= 65535);
    }
    check(!u.password || *u.password);
}

static void fuzz_memcache_url(const char *s)
{
    apr_array_header_t *a;
    int i;

    if (bff_memcache_url_parse(&a, s, pool)) {
        return;
    }
    check(a->nelts >= 1 && a->nelts <= 64);
    for (i = 0; i < a->nelts; i++) {
        bff_memcache_server_t *m = &APR_ARRAY_IDX(a, i, bff_memcache_server_t);
        check(m->host && *m->host && m->port >= 1 && m->port <= 65535);
    }
}

/* Splits s at '\n' into at most max parts (missing parts are NULL). */
static int split(char **parts, int max, char *s)
{
    int n = 0;

    while (n < max) {
        char *nl = strchr(s, '\n');
        parts[n++] = s;
        if (!nl) {
            break;
        }
        *nl = '\0';
        s = nl + 1;
    }
    return n;
}

static void fuzz_inm(char *s)
{
    char *p[2] = {NULL, NULL};

    split(p, 2, s);
    bff_etag_match(p[0], p[1]);
    if (p[1] && bff_etag_match(p[1], p[1]) == 0) {
        /* only an invalid etag may fail to match itself */
        bff_cache_entry_t e;
        const char *b;
        apr_size_t l;
        memset(&e, 0, sizeof(e));
        e.status = 200;
        e.etag = p[1];
        check(bff_cache_entry_encode(&b, &l, &e, pool) != NULL);
    }
}

static void fuzz_key(char *s)
{
    char *p[5] = {NULL, NULL, NULL, NULL, NULL};
    bff_cache_key_in_t in;
    bff_cache_kv_t param, vary[2];
    apr_array_header_t *qk = apr_array_make(pool, 2, sizeof(const char *));
    const char *key, *k;

    split(p, 5, s);
    APR_ARRAY_PUSH(qk, const char *) = "a";
    APR_ARRAY_PUSH(qk, const char *) = "page";
    memset(&in, 0, sizeof(in));
    in.prefix = "bff:";
    in.endpoint = p[0];
    in.query = p[1];
    in.query_keys = qk;
    in.fields = p[2];
    param.name = "id";
    param.value = p[3];
    in.params = &param;
    in.nparams = 1;
    vary[0].name = "h:x";
    vary[0].value = p[4];
    vary[1].name = "jwt:sub";
    vary[1].value = NULL;
    in.vary = vary;
    in.nvary = 2;
    if (bff_cache_key(&key, &in, pool)) {
        check(!p[0] || !*p[0]);
        return;
    }
    check(strlen(key) <= BFF_CACHE_KEY_MAX);
    for (k = key; *k; k++) {
        check(*k > 0x20 && *k < 0x7f);
    }
}

static void write_seed(const char *dir, int n, const void *d, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/seed%02d", dir, n);
    if ((f = fopen(path, "wb"))) {
        fwrite(d, 1, len, f);
        fclose(f);
    }
}

static void write_text_seed(const char *dir, int n, char mode, const char *t)
{
    char *b = apr_pstrcat(pool, " ", t, NULL);

    b[0] = mode;
    write_seed(dir, n, b, strlen(b));
}

/* Valid inputs of every mode, so the fuzzer starts deep inside. */
static void write_seeds(const char *dir)
{
    bff_cache_entry_t e;
    apr_array_header_t *tags = apr_array_make(pool, 2, sizeof(const char *));
    const char *buf;
    apr_size_t len;
    char *b;
    int n = 0;

    APR_ARRAY_PUSH(tags, const char *) = "user:7";
    APR_ARRAY_PUSH(tags, const char *) = "product:42";
    memset(&e, 0, sizeof(e));
    e.status = 200;
    e.content_type = "application/json";
    e.body = "{\"user\":{\"id\":7}}";
    e.body_len = strlen(e.body);
    e.etag = bff_cache_etag(e.body, e.body_len, pool);
    e.created = APR_INT64_C(1700000000000000);
    e.ttl_ms = 30000;
    e.grace_ms = 60000;
    e.completed = 1;
    e.tags = tags;
    bff_cache_entry_encode(&buf, &len, &e, pool);
    b = apr_palloc(pool, len + 1);
    b[0] = 0;
    memcpy(b + 1, buf, len);
    write_seed(dir, n++, b, len + 1);
    memset(&e, 0, sizeof(e));
    e.status = 502;
    e.etag = "W/\"x\"";
    bff_cache_entry_encode(&buf, &len, &e, pool);
    b = apr_palloc(pool, len + 1);
    b[0] = 0;
    memcpy(b + 1, buf, len);
    write_seed(dir, n++, b, len + 1);

    write_text_seed(dir, n++, 1, "redis://:p%40ss@127.0.0.1:6379/2");
    write_text_seed(dir, n++, 1, "redis://user:pw@[::1]:6380");
    write_text_seed(dir, n++, 1, "redis+unix://:pw@/run/redis.sock?db=3");
    write_text_seed(dir, n++, 2, "memcache://h1:11211,h2,[::1]:5");
    write_text_seed(dir, n++, 3, "W/\"a\", \"b\"\n\"b\"");
    write_text_seed(dir, n++, 3, "*\n\"x\"");
    write_text_seed(dir, n++, 4, "GET /u/{id}\npage=2&a=%41+b&x=1\nb, a\n42\n");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("BFF_FUZZ_WRITE_SEEDS");

    (void)argc;
    (void)argv;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (dir) {
        write_seeds(dir);
        apr_pool_clear(pool);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size < 1) {
        return 0;
    }
    switch (data[0] % 5) {
    case 0:
        fuzz_entry((const char *)data + 1, size - 1);
        break;
    default:
        s = apr_pstrmemdup(pool, (const char *)data + 1, size - 1);
        if (data[0] % 5 == 1) {
            fuzz_redis_url(s);
        }
        else if (data[0] % 5 == 2) {
            fuzz_memcache_url(s);
        }
        else if (data[0] % 5 == 3) {
            fuzz_inm(s);
        }
        else {
            fuzz_key(s);
        }
        break;
    }
    apr_pool_clear(pool);
    return 0;
}
