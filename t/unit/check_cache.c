/*
 * Unit tests for the response cache core (lib/bff_cache.c, bff_sha256.c)
 * and its stores (bff_store_redis.c, bff_store_memcache.c).
 *
 *   make -f t/unit/Makefile.cache [asan]
 *
 * The store tests run against real redis-server and memcached processes
 * that this program starts on free loopback ports and stops by PID (they
 * also get SIGKILL from the kernel should this program die first:
 * PR_SET_PDEATHSIG). Timing assertions are generous multiples of the
 * configured timeouts so that a loaded machine or ASan does not make them
 * flaky, while still failing when a timeout is not enforced at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <check.h>
#include <hiredis/hiredis.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_memcache.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <apr_thread_mutex.h>

#include "bff_core.h"
#include "bff_cache.h"
#include "bff_redis.h"
#include "bff_http.h"
#include "testsrv.h"

static apr_pool_t *pool;

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
    pool = NULL;
}

#define ASSERT_OK(expr) do {                                              \
        const char *e_ = (expr);                                          \
        ck_assert_msg(e_ == NULL, "%s: unexpected error: %s", #expr, e_); \
    } while (0)

#define ASSERT_ERR(expr) do {                                             \
        const char *e_ = (expr);                                          \
        ck_assert_msg(e_ != NULL, "%s: expected an error", #expr);        \
    } while (0)

#define ASSERT_RC(expr, want) do {                                        \
        bff_store_rc_e r_ = (expr);                                       \
        ck_assert_msg(r_ == (want), "%s: got %s, want %s", #expr,         \
                      bff_store_rc_str(r_), bff_store_rc_str(want));      \
    } while (0)

static long ms_since(apr_time_t t0)
{
    return (long)((apr_time_now() - t0) / 1000);
}

static void sleep_ms(long ms)
{
    apr_sleep(apr_time_from_msec(ms));
}

/* ------------------------------------------------------------ SHA-256 -- */

static const char *sha_hex(const void *d, apr_size_t n)
{
    unsigned char md[32];
    char *s = apr_palloc(pool, 65);
    int i;

    bff_sha256(md, d, n);
    for (i = 0; i < 32; i++) {
        sprintf(s + 2 * i, "%02x", md[i]);
    }
    return s;
}

START_TEST(sha256_vectors)
{
    static const char m448[] =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const char m896[] =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
        "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    ck_assert_str_eq(sha_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb924"
                                     "27ae41e4649b934ca495991b7852b855");
    ck_assert_str_eq(sha_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223"
                                        "b00361a396177a9cb410ff61f20015ad");
    ck_assert_str_eq(sha_hex(m448, strlen(m448)),
                     "248d6a61d20638b8e5c026930c3e6039"
                     "a33ce45964ff2167f6ecedd419db06c1");
    ck_assert_str_eq(sha_hex(m896, strlen(m896)),
                     "cf5b16a778af8380036ce59e7b049237"
                     "0b249b11e8f07a51afac45037afee9d1");
}
END_TEST

/* Lengths around the padding boundaries (55/56, 63/64/65, ...), one-shot
 * and fed in awkward pieces. Expected values from Python's hashlib over
 * bytes i % 251. */
START_TEST(sha256_boundaries)
{
    static const struct { int n; const char *hex; } v[] = {
        {1, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"},
        {55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59"},
        {56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562"},
        {63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488"},
        {64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108"},
        {65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781"},
        {119, "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6"},
        {120, "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c"},
        {127, "92ca0fa6651ee2f97b884b7246a562fa71250fedefe5ebf270d31c546bfea976"},
        {128, "471fb943aa23c511f6f72f8d1652d9c880cfa392ad80503120547703e56a2be5"},
        {129, "5099c6a56203f9687f7d33f4bfdf576d31dc91f6b695ecea38b2770c87631135"},
        {1000, "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d"},
    };
    unsigned char buf[1000], md[32];
    size_t i;
    int k;

    for (k = 0; k < 1000; k++) {
        buf[k] = (unsigned char)(k % 251);
    }
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        static const int steps[] = {1, 3, 7, 63, 64, 65};
        size_t s;
        ck_assert_str_eq(sha_hex(buf, (apr_size_t)v[i].n), v[i].hex);
        for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            bff_sha256_t c;
            int off = 0;
            char hex[65];
            bff_sha256_init(&c);
            while (off < v[i].n) {
                int take = v[i].n - off < steps[s] ? v[i].n - off : steps[s];
                bff_sha256_update(&c, buf + off, (apr_size_t)take);
                off += take;
            }
            bff_sha256_final(md, &c);
            for (k = 0; k < 32; k++) {
                sprintf(hex + 2 * k, "%02x", md[k]);
            }
            ck_assert_str_eq(hex, v[i].hex);
        }
    }
}
END_TEST

START_TEST(sha256_million_a)
{
    bff_sha256_t c;
    unsigned char md[32];
    char chunk[1000], hex[65];
    int i;

    memset(chunk, 'a', sizeof(chunk));
    bff_sha256_init(&c);
    for (i = 0; i < 1000; i++) {
        bff_sha256_update(&c, chunk, sizeof(chunk));
    }
    bff_sha256_final(md, &c);
    for (i = 0; i < 32; i++) {
        sprintf(hex + 2 * i, "%02x", md[i]);
    }
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
                          "f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* Draws differ from each other, no position stays zero over many draws,
 * and a zero-length draw writes nothing. */
START_TEST(random_bytes)
{
    unsigned char a[64], b[64], seen[64], none[4] = {7, 7, 7, 7};
    int i, round;

    memset(seen, 0, sizeof(seen));
    bff_random_bytes(a, sizeof(a));
    for (round = 0; round < 32; round++) {
        bff_random_bytes(b, sizeof(b));
        ck_assert(memcmp(a, b, sizeof(a)) != 0);
        for (i = 0; i < 64; i++) {
            seen[i] |= b[i];
        }
        memcpy(a, b, sizeof(a));
    }
    for (i = 0; i < 64; i++) {
        ck_assert_int_ne(seen[i], 0);
    }
    bff_random_bytes(none, 0);
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(none[i], 7);
    }
}
END_TEST

/* --------------------------------------------------------------- keys -- */

static apr_array_header_t *names(const char *a, const char *b, const char *c)
{
    apr_array_header_t *n = apr_array_make(pool, 3, sizeof(const char *));

    if (a) APR_ARRAY_PUSH(n, const char *) = a;
    if (b) APR_ARRAY_PUSH(n, const char *) = b;
    if (c) APR_ARRAY_PUSH(n, const char *) = c;
    return n;
}

static bff_cache_key_in_t base_in(void)
{
    static const bff_cache_kv_t params[] = {{"user_id", "42"}};
    bff_cache_key_in_t in;

    memset(&in, 0, sizeof(in));
    in.prefix = "bff:";
    in.endpoint = "GET /api/profile/{user_id:int}";
    in.params = params;
    in.nparams = 1;
    in.query_keys = names("page", "lang", NULL);
    return in;
}

static const char *key_of(const bff_cache_key_in_t *in)
{
    const char *k = NULL;

    ASSERT_OK(bff_cache_key(&k, in, pool));
    return k;
}

START_TEST(key_shape)
{
    bff_cache_key_in_t in = base_in();
    const char *k = key_of(&in), *s;

    ck_assert_int_eq(strlen(k), 4 + 64);
    ck_assert(!strncmp(k, "bff:", 4));
    for (s = k + 4; *s; s++) {
        ck_assert_msg((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'),
                      "not lower-case hex: %s", k);
    }
    /* deterministic */
    ck_assert_str_eq(k, key_of(&in));
    /* no prefix */
    in.prefix = NULL;
    ck_assert_int_eq(strlen(key_of(&in)), 64);
    in.prefix = "";
    ck_assert_int_eq(strlen(key_of(&in)), 64);
}
END_TEST

START_TEST(key_prefix_limits)
{
    bff_cache_key_in_t in = base_in();
    const char *k;
    char p64[65], p65[66];

    memset(p64, 'p', 64);
    p64[64] = '\0';
    memset(p65, 'p', 65);
    p65[65] = '\0';
    in.prefix = p64;
    k = key_of(&in);
    ck_assert_int_eq(strlen(k), BFF_CACHE_KEY_MAX);
    ck_assert_int_lt(strlen(k), 250 - strlen(":lock"));
    in.prefix = p65;
    ASSERT_ERR(bff_cache_key(&k, &in, pool));
    in.prefix = "bad prefix";
    ASSERT_ERR(bff_cache_key(&k, &in, pool));
    in.prefix = "a/b";
    ASSERT_ERR(bff_cache_key(&k, &in, pool));
    in.prefix = "site-1.bff_v2:";
    ASSERT_OK(bff_cache_key(&k, &in, pool));
    ck_assert(bff_cache_prefix_valid(""));
    ck_assert(!bff_cache_prefix_valid(NULL));
    ck_assert(!bff_cache_prefix_valid("tab\t"));
    in.prefix = "x:";
    in.endpoint = NULL;
    ASSERT_ERR(bff_cache_key(&k, &in, pool));
    in.endpoint = "";
    ASSERT_ERR(bff_cache_key(&k, &in, pool));
}
END_TEST

START_TEST(key_endpoint_and_params)
{
    bff_cache_key_in_t a = base_in(), b = base_in();
    bff_cache_kv_t pa[2] = {{"x", "a"}, {"y", "bc"}};
    bff_cache_kv_t pb[2] = {{"x", "ab"}, {"y", "c"}};
    bff_cache_kv_t pc[1] = {{"xa", "1"}}, pd[1] = {{"x", "a1"}};
    bff_cache_kv_t pe[1] = {{"id", NULL}}, pf[1] = {{"id", ""}};

    b.endpoint = "GET /api/profile/{user_id}";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    b = base_in();
    b.endpoint = "POST /api/profile/{user_id:int}";
    ck_assert_str_ne(key_of(&a), key_of(&b));

    /* value boundaries: ("a","bc") vs ("ab","c") */
    a.params = pa;
    a.nparams = 2;
    b = base_in();
    b.params = pb;
    b.nparams = 2;
    ck_assert_str_ne(key_of(&a), key_of(&b));
    /* name/value boundary */
    a.params = pc;
    a.nparams = 1;
    b.params = pd;
    b.nparams = 1;
    ck_assert_str_ne(key_of(&a), key_of(&b));
    /* absent and empty differ */
    a.params = pe;
    b.params = pf;
    ck_assert_str_ne(key_of(&a), key_of(&b));
    /* route order matters (it is the pattern's order) */
    {
        bff_cache_kv_t o1[2] = {{"a", "1"}, {"b", "2"}};
        bff_cache_kv_t o2[2] = {{"b", "2"}, {"a", "1"}};
        a.params = o1;
        a.nparams = 2;
        b.params = o2;
        b.nparams = 2;
        ck_assert_str_ne(key_of(&a), key_of(&b));
    }
    /* a parameter with no name is a caller bug */
    {
        bff_cache_kv_t bad[1] = {{NULL, "1"}};
        const char *k;
        a.params = bad;
        a.nparams = 1;
        ASSERT_ERR(bff_cache_key(&k, &a, pool));
    }
}
END_TEST

static const char *key_q(const char *query)
{
    bff_cache_key_in_t in = base_in();

    in.query = query;
    return key_of(&in);
}

START_TEST(key_query)
{
    const char *none = key_q(NULL);

    /* order of different names does not matter */
    ck_assert_str_eq(key_q("page=2&lang=de"), key_q("lang=de&page=2"));
    /* parameters outside the key are ignored */
    ck_assert_str_eq(key_q("page=2&utm_source=x&lang=de"),
                     key_q("lang=de&page=2"));
    ck_assert_str_eq(key_q("utm=1"), none);
    ck_assert_str_eq(key_q(""), none);
    /* values matter */
    ck_assert_str_ne(key_q("page=2"), key_q("page=3"));
    ck_assert_str_ne(key_q("page=2"), none);
    /* repeated names keep their order (backends see it) */
    ck_assert_str_ne(key_q("page=1&page=2"), key_q("page=2&page=1"));
    ck_assert_str_eq(key_q("page=1&lang=x&page=2"),
                     key_q("lang=x&page=1&page=2"));
    /* decoding normalises: %-escapes, '+', bare names */
    ck_assert_str_eq(key_q("p%61ge=2"), key_q("page=2"));
    ck_assert_str_eq(key_q("lang=a+b"), key_q("lang=a%20b"));
    ck_assert_str_eq(key_q("page"), key_q("page="));
    /* bad escapes are dropped, as bff_query_filter drops them */
    ck_assert_str_eq(key_q("page=%zz"), none);
    /* '&' and '=' inside values cannot fake other parameters */
    ck_assert_str_ne(key_q("page=1%26lang%3Dde"), key_q("page=1&lang=de"));
    /* no query keys: the query never matters */
    {
        bff_cache_key_in_t in = base_in();
        in.query_keys = NULL;
        in.query = "page=9";
        ck_assert_str_eq(key_of(&in), none);
    }
}
END_TEST

static const char *key_f(const char *fields)
{
    bff_cache_key_in_t in = base_in();

    in.fields = fields;
    return key_of(&in);
}

START_TEST(key_fields)
{
    ck_assert_str_eq(key_f("a,b"), key_f("b,a"));
    ck_assert_str_eq(key_f("a,b"), key_f(" b , a ,,a"));
    ck_assert_str_ne(key_f("a"), key_f("b"));
    ck_assert_str_ne(key_f("a,b"), key_f("ab"));
    ck_assert_str_ne(key_f(""), key_f(NULL));
    ck_assert_str_eq(key_f(""), key_f(" , "));
    ck_assert_str_ne(key_f("user.name"), key_f("user,name"));
}
END_TEST

static const char *key_v(const bff_cache_kv_t *v, int n)
{
    bff_cache_key_in_t in = base_in();

    in.vary = v;
    in.nvary = n;
    return key_of(&in);
}

START_TEST(key_vary)
{
    bff_cache_kv_t absent[1] = {{"h:accept-language", NULL}};
    bff_cache_kv_t empty[1] = {{"h:accept-language", ""}};
    bff_cache_kv_t de[1] = {{"h:accept-language", "de"}};
    bff_cache_kv_t u1[2] = {{"jwt:sub", "7"}, {"h:x-tenant", "a"}};
    bff_cache_kv_t u2[2] = {{"h:x-tenant", "a"}, {"jwt:sub", "7"}};
    bff_cache_kv_t u3[2] = {{"h:x-tenant", "a"}, {"jwt:sub", "8"}};
    bff_cache_kv_t s1[1] = {{"jwt:sub", "a"}}, s2[1] = {{"jwt:su", "ba"}};

    ck_assert_str_ne(key_v(absent, 1), key_v(empty, 1));
    ck_assert_str_ne(key_v(empty, 1), key_v(de, 1));
    ck_assert_str_ne(key_v(absent, 1), key_v(NULL, 0));
    /* user A never gets user B's key */
    ck_assert_str_ne(key_v(u2, 2), key_v(u3, 2));
    /* configuration order does not matter */
    ck_assert_str_eq(key_v(u1, 2), key_v(u2, 2));
    ck_assert_str_ne(key_v(s1, 1), key_v(s2, 1));
    /* a route parameter and a vary input of the same name and value are
     * different inputs */
    {
        bff_cache_key_in_t a = base_in(), b = base_in();
        bff_cache_kv_t p[1] = {{"sub", "7"}}, v[1] = {{"sub", "7"}};
        a.params = p;
        a.nparams = 1;
        b.params = NULL;
        b.nparams = 0;
        b.vary = v;
        b.nvary = 1;
        ck_assert_str_ne(key_of(&a), key_of(&b));
    }
    /* the vary value (a token, say) never appears in the key text */
    {
        bff_cache_kv_t t[1] = {{"h:authorization", "Bearer SECRET"}};
        ck_assert(strstr(key_v(t, 1), "SECRET") == NULL);
    }
}
END_TEST

static apr_array_header_t *hdrs(const char *a, const char *b, const char *c)
{
    apr_array_header_t *n = apr_array_make(pool, 3, sizeof(const char *));

    if (a) APR_ARRAY_PUSH(n, const char *) = a;
    if (b) APR_ARRAY_PUSH(n, const char *) = b;
    if (c) APR_ARRAY_PUSH(n, const char *) = c;
    return n;
}

/* What reaches the backends, where the answer is made and for whom. */
START_TEST(key_context)
{
    bff_cache_key_in_t a = base_in(), b = base_in();
    const char *k0 = key_of(&a);

    /* backend request headers: names case-insensitive, order of different
     * names and surrounding spaces do not matter, values do */
    a.headers = hdrs("Accept-Language: de", "X-Tenant: a", NULL);
    b.headers = hdrs("x-tenant:a ", "accept-language:  de", NULL);
    ck_assert_str_eq(key_of(&a), key_of(&b));
    ck_assert_str_ne(key_of(&a), k0);
    b.headers = hdrs("X-Tenant: b", "Accept-Language: de", NULL);
    ck_assert_str_ne(key_of(&a), key_of(&b));
    /* a header present but empty differs from none */
    b.headers = hdrs("X-Tenant:", NULL, NULL);
    ck_assert_str_ne(key_of(&b), k0);
    /* name/value boundaries */
    a.headers = hdrs("X-A: b-c", NULL, NULL);
    b.headers = hdrs("X-A-b: c", NULL, NULL);
    ck_assert_str_ne(key_of(&a), key_of(&b));
    /* repeated names keep their order */
    a.headers = hdrs("X-A: 1", "X-A: 2", NULL);
    b.headers = hdrs("X-A: 2", "X-A: 1", NULL);
    ck_assert_str_ne(key_of(&a), key_of(&b));
    /* an empty list is no list */
    a.headers = hdrs(NULL, NULL, NULL);
    ck_assert_str_eq(key_of(&a), k0);

    /* the forwarded query, as backends get it */
    a = base_in();
    b = base_in();
    a.backend_query = "v=1&w=2";
    b.backend_query = "w=2&v=1";
    ck_assert_str_eq(key_of(&a), key_of(&b));
    b.backend_query = "v=2&w=2";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    b.backend_query = NULL;
    ck_assert_str_ne(key_of(&a), key_of(&b));

    /* the virtual host and the configuration */
    a = base_in();
    b = base_in();
    a.scope = "http://a.test:80";
    b.scope = "http://b.test:80";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    b.scope = "https://a.test:80";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    b.scope = "http://a.test:80";
    ck_assert_str_eq(key_of(&a), key_of(&b));
    a.config = "0123";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    b.config = "0124";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    b.config = "0123";
    ck_assert_str_eq(key_of(&a), key_of(&b));
    /* scope and config are different inputs */
    a = base_in();
    b = base_in();
    a.scope = "x";
    b.config = "x";
    ck_assert_str_ne(key_of(&a), key_of(&b));

    /* the identity */
    a = base_in();
    b = base_in();
    a.identity = "bff-jwt\nhttps://issuer.test\nalice";
    b.identity = "bff-jwt\nhttps://issuer.test\nbob";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    ck_assert_str_ne(key_of(&a), k0);
    b.identity = "";
    ck_assert_str_ne(key_of(&b), k0);
    a.identity = NULL;
    a.config = "bff-jwt\nhttps://issuer.test\nbob";
    b.identity = "bff-jwt\nhttps://issuer.test\nbob";
    ck_assert_str_ne(key_of(&a), key_of(&b));
    /* never in the key text */
    ck_assert(strstr(key_of(&b), "bob") == NULL);
    a = base_in();
    a.headers = hdrs("X-User-ID: SECRET", NULL, NULL);
    ck_assert(strstr(key_of(&a), "SECRET") == NULL);
}
END_TEST

START_TEST(header_values)
{
#define HV(lit, name) bff_http_header(lit, sizeof(lit) - 1, name, pool)
    ck_assert_ptr_null(bff_http_header(NULL, 0, "Cache-Control", pool));
    ck_assert_ptr_null(HV("Content-Type: a\r\n", "Cache-Control"));
    ck_assert_str_eq(HV("Content-Type: a\r\ncache-control:  max-age=60\r\n",
                        "Cache-Control"), "max-age=60");
    ck_assert_str_eq(HV("Cache-Control: public\r\nX: y\r\n"
                        "CACHE-CONTROL:\tmax-age=5\r\n", "cache-control"),
                     "public, max-age=5");
    /* a line without a colon, a bare LF, no final newline */
    ck_assert_str_eq(HV("garbage\nCache-Control: max-age=1", "Cache-Control"),
                     "max-age=1");
    ck_assert_str_eq(HV("Cache-Control:\r\n", "Cache-Control"), "");
    ck_assert_ptr_null(HV("Cache-Control-X: 1\r\n", "Cache-Control"));
#undef HV
}
END_TEST

START_TEST(no_store_headers)
{
#define NS(lit) bff_http_no_store(lit, sizeof(lit) - 1)
    ck_assert_ptr_null(bff_http_no_store(NULL, 0));
    ck_assert_ptr_null(NS(""));
    ck_assert_ptr_null(NS("Content-Type: application/json\r\n"
                          "Cache-Control: max-age=60, public\r\n"
                          "Vary: Accept, Accept-Encoding\r\n"));
    ck_assert_str_eq(NS("set-COOKIE: a=b\r\n"), "Set-Cookie");
    ck_assert_str_eq(NS("Set-Cookie2: a=b\r\n"), "Set-Cookie");
    ck_assert_str_eq(NS("Cache-Control: max-age=5, No-Store\r\n"),
                     "Cache-Control: no-store");
    ck_assert_str_eq(NS("Cache-Control: public\r\nCache-Control: private\r\n"),
                     "Cache-Control: private");
    ck_assert_str_eq(NS("Cache-Control: private=\"set-cookie\"\r\n"),
                     "Cache-Control: private");
    ck_assert_str_eq(NS("Vary: Accept, *\r\n"), "Vary: *");
    ck_assert_str_eq(NS("Vary:*"), "Vary: *");
    /* look-alikes are not matches */
    ck_assert_ptr_null(NS("X-Set-Cookie: a\r\nCache-Control: no-store-x, "
                          "privately\r\nVary: *x\r\nX-Vary: *\r\n"));
    ck_assert_ptr_null(NS("Cache-Control-X: no-store\r\n"));
    /* bare LF lines and a last line without a line end */
    ck_assert_str_eq(NS("A: b\nVary: *"), "Vary: *");
#undef NS
}
END_TEST

START_TEST(key_tags)
{
    const char *k = bff_cache_tag_key("bff:", "user:7", pool);

    ck_assert_int_eq(strlen(k), 4 + 4 + 32);
    ck_assert(!strncmp(k, "bff:tag:", 8));
    ck_assert_str_eq(k, bff_cache_tag_key("bff:", "user:7", pool));
    ck_assert_str_ne(k, bff_cache_tag_key("bff:", "user:8", pool));
    ck_assert_str_ne(k, bff_cache_tag_key("other:", "user:7", pool));
    ck_assert(bff_cache_tag_valid("user:7"));
    ck_assert(bff_cache_tag_valid("product:%C3%A9"));
    ck_assert(!bff_cache_tag_valid(""));
    ck_assert(!bff_cache_tag_valid(NULL));
    ck_assert(!bff_cache_tag_valid("user 7"));
    ck_assert(!bff_cache_tag_valid("user:\x7f"));
    ck_assert(!bff_cache_tag_valid("caf\xc3\xa9"));
    {
        char t[BFF_CACHE_TAG_MAX + 2];
        memset(t, 't', sizeof(t));
        t[BFF_CACHE_TAG_MAX] = '\0';
        ck_assert(bff_cache_tag_valid(t));
        t[BFF_CACHE_TAG_MAX] = 't';
        t[BFF_CACHE_TAG_MAX + 1] = '\0';
        ck_assert(!bff_cache_tag_valid(t));
    }
}
END_TEST

/* ------------------------------------------------------------ entries -- */

static bff_cache_entry_t sample_entry(void)
{
    bff_cache_entry_t e;
    apr_array_header_t *tags = apr_array_make(pool, 2, sizeof(const char *));
    static const char body[] = "{\"user\":{\"id\":7}}\0binary\xff";

    APR_ARRAY_PUSH(tags, const char *) = "user:7";
    APR_ARRAY_PUSH(tags, const char *) = "product:42";
    memset(&e, 0, sizeof(e));
    e.status = 200;
    e.content_type = "application/json; charset=utf-8";
    e.body = body;
    e.body_len = sizeof(body) - 1;
    e.etag = bff_cache_etag(e.body, e.body_len, pool);
    e.created = APR_INT64_C(1700000000123456);
    e.ttl_ms = 30000;
    e.grace_ms = 60000;
    e.completed = 1;
    e.tags = tags;
    return e;
}

static void encode(const char **buf, apr_size_t *len,
                   const bff_cache_entry_t *e)
{
    ASSERT_OK(bff_cache_entry_encode(buf, len, e, pool));
}

START_TEST(entry_roundtrip)
{
    bff_cache_entry_t e = sample_entry(), d;
    const char *buf;
    apr_size_t len;
    int i;

    encode(&buf, &len, &e);
    ASSERT_OK(bff_cache_entry_decode(&d, buf, len, 1 << 20, pool));
    ck_assert_int_eq(d.status, 200);
    ck_assert_str_eq(d.content_type, e.content_type);
    ck_assert_str_eq(d.etag, e.etag);
    ck_assert_int_eq(d.body_len, e.body_len);
    ck_assert(!memcmp(d.body, e.body, e.body_len));
    ck_assert(d.body >= buf && d.body + d.body_len == buf + len);  /* no copy */
    ck_assert(d.created == e.created);
    ck_assert_int_eq(d.ttl_ms, 30000);
    ck_assert_int_eq(d.grace_ms, 60000);
    ck_assert_int_eq(d.completed, 1);
    ck_assert_int_eq(d.tags->nelts, 2);
    for (i = 0; i < 2; i++) {
        ck_assert_str_eq(APR_ARRAY_IDX(d.tags, i, const char *),
                         APR_ARRAY_IDX(e.tags, i, const char *));
    }

    /* minimal: partial, no content type, no etag, no tags, empty body */
    memset(&e, 0, sizeof(e));
    e.status = 503;
    encode(&buf, &len, &e);
    ck_assert_int_eq(len, 32);
    ASSERT_OK(bff_cache_entry_decode(&d, buf, len, 0, pool));
    ck_assert_int_eq(d.status, 503);
    ck_assert_ptr_null(d.content_type);
    ck_assert_ptr_null(d.etag);
    ck_assert_int_eq(d.body_len, 0);
    ck_assert_int_eq(d.completed, 0);
    ck_assert_int_eq(d.tags->nelts, 0);

    /* weak etags and the largest counts round-trip too */
    e = sample_entry();
    e.etag = "W/\"v1\"";
    {
        apr_array_header_t *t = apr_array_make(pool, 64, sizeof(char *));
        for (i = 0; i < BFF_CACHE_MAX_TAGS; i++) {
            APR_ARRAY_PUSH(t, const char *) = apr_psprintf(pool, "t:%d", i);
        }
        e.tags = t;
    }
    e.ttl_ms = BFF_CACHE_TTL_MAX_MS;
    e.grace_ms = BFF_CACHE_TTL_MAX_MS;
    encode(&buf, &len, &e);
    ASSERT_OK(bff_cache_entry_decode(&d, buf, len, 0, pool));
    ck_assert_str_eq(d.etag, "W/\"v1\"");
    ck_assert_int_eq(d.tags->nelts, BFF_CACHE_MAX_TAGS);
    ck_assert_int_eq(d.ttl_ms, BFF_CACHE_TTL_MAX_MS);
}
END_TEST

START_TEST(entry_encode_rejects)
{
    bff_cache_entry_t e;
    const char *buf;
    apr_size_t len;
    apr_array_header_t *t;
    int i;

#define REJECT(field_change) do {                                       \
        e = sample_entry();                                             \
        field_change;                                                   \
        ASSERT_ERR(bff_cache_entry_encode(&buf, &len, &e, pool));       \
    } while (0)

    REJECT(e.status = 99);
    REJECT(e.status = 600);
    REJECT(e.ttl_ms = -1);
    REJECT(e.grace_ms = -1);
    REJECT(e.ttl_ms = BFF_CACHE_TTL_MAX_MS + 1);
    REJECT(e.created = -1);
    REJECT(e.content_type = "text/html\r\nSet-Cookie: x=1");
    REJECT(e.content_type = "a\tb");
    REJECT(e.etag = "no-quotes");
    REJECT(e.etag = "\"has space\"");
    REJECT(e.etag = "\"a\"b\"");
    REJECT(e.etag = "w/\"lower\"");
    REJECT(e.etag = "\"");
    REJECT(e.body = NULL);
    t = apr_array_make(pool, 1, sizeof(const char *));
    APR_ARRAY_PUSH(t, const char *) = "has space";
    REJECT(e.tags = t);
    t = apr_array_make(pool, 1, sizeof(const char *));
    APR_ARRAY_PUSH(t, const char *) = "";
    REJECT(e.tags = t);
    t = apr_array_make(pool, 65, sizeof(const char *));
    for (i = 0; i < BFF_CACHE_MAX_TAGS + 1; i++) {
        APR_ARRAY_PUSH(t, const char *) = "t";
    }
    REJECT(e.tags = t);
    {
        char big[BFF_CACHE_CTYPE_MAX + 2];
        memset(big, 'x', sizeof(big));
        big[sizeof(big) - 1] = '\0';
        REJECT(e.content_type = big);
    }
#undef REJECT
}
END_TEST

/* Decoding a copy with one change must fail with an error (and never
 * read outside the buffer: the copy is exactly sized for ASan). */
static const char *decode_mut(const char *buf, apr_size_t len, apr_size_t off,
                              unsigned char val, apr_size_t max_body)
{
    char *m = malloc(len ? len : 1);
    bff_cache_entry_t d;
    const char *err;

    memcpy(m, buf, len);
    if (off < len) {
        m[off] = (char)val;
    }
    err = bff_cache_entry_decode(&d, m, len, max_body, pool);
    free(m);
    return err;
}

START_TEST(entry_decode_rejects)
{
    bff_cache_entry_t e = sample_entry(), d;
    const char *buf, *ct_at;
    apr_size_t len, i;

    encode(&buf, &len, &e);
    ASSERT_OK(decode_mut(buf, len, len, 0, 0));
    /* every truncation */
    for (i = 0; i < len; i++) {
        char *m = malloc(i ? i : 1);
        memcpy(m, buf, i);
        ck_assert_msg(bff_cache_entry_decode(&d, m, i, 0, pool) != NULL,
                      "truncated to %lu bytes was accepted",
                      (unsigned long)i);
        free(m);
    }
    /* one byte too many */
    {
        char *m = malloc(len + 1);
        memcpy(m, buf, len);
        m[len] = 'x';
        ASSERT_ERR(bff_cache_entry_decode(&d, m, len + 1, 0, pool));
        free(m);
    }
    ASSERT_ERR(bff_cache_entry_decode(&d, NULL, 0, 0, pool));
    ASSERT_ERR(decode_mut(buf, len, 0, 'X', 0));          /* magic */
    ASSERT_ERR(decode_mut(buf, len, 4, 2, 0));            /* version */
    ASSERT_ERR(decode_mut(buf, len, 4, 0, 0));
    ASSERT_ERR(decode_mut(buf, len, 5, 0x03, 0));         /* flags */
    ASSERT_ERR(decode_mut(buf, len, 5, 0x80, 0));
    ASSERT_ERR(decode_mut(buf, len, 6, 0xff, 0));         /* status */
    ASSERT_ERR(decode_mut(buf, len, 7, 0x00, 0));
    ASSERT_ERR(decode_mut(buf, len, 8, 0x80, 0));         /* created < 0 */
    ASSERT_ERR(decode_mut(buf, len, 16, 0xff, 0));        /* ttl */
    ASSERT_ERR(decode_mut(buf, len, 20, 0xff, 0));        /* grace */
    for (i = 24; i < 28; i++) {                           /* body length */
        ASSERT_ERR(decode_mut(buf, len, i, (unsigned char)(buf[i] ^ 1), 0));
    }
    ASSERT_ERR(decode_mut(buf, len, 28, (unsigned char)(buf[28] + 1), 0));
    ASSERT_ERR(decode_mut(buf, len, 28, (unsigned char)(buf[28] - 1), 0));
    ASSERT_ERR(decode_mut(buf, len, 29, (unsigned char)(buf[29] + 1), 0));
    ASSERT_ERR(decode_mut(buf, len, 30, 3, 0));           /* tag count */
    ASSERT_ERR(decode_mut(buf, len, 30, 1, 0));
    ASSERT_ERR(decode_mut(buf, len, 30, 200, 0));
    ASSERT_ERR(decode_mut(buf, len, 31, 1, 0));           /* reserved */
    /* header injection from a poisoned store */
    ct_at = buf + 32;
    ASSERT_ERR(decode_mut(buf, len, (apr_size_t)(ct_at - buf) + 3, '\n', 0));
    ASSERT_ERR(decode_mut(buf, len, (apr_size_t)(ct_at - buf) + 3, '\r', 0));
    ASSERT_ERR(decode_mut(buf, len, (apr_size_t)(ct_at - buf) + 3, 0, 0));
    {
        apr_size_t et = 32 + strlen(e.content_type);
        ASSERT_ERR(decode_mut(buf, len, et, 'x', 0));      /* etag quote */
        ASSERT_ERR(decode_mut(buf, len, et + 5, '\n', 0));
        ASSERT_ERR(decode_mut(buf, len, et + 5, '"', 0));
        /* first tag's length and bytes */
        et += strlen(e.etag);
        ASSERT_ERR(decode_mut(buf, len, et, (unsigned char)(buf[et] + 1), 0));
        ASSERT_ERR(decode_mut(buf, len, et + 1, ' ', 0));
        ASSERT_ERR(decode_mut(buf, len, et + 1, 0, 0));
    }
    /* bodies over the caller's limit */
    ASSERT_ERR(decode_mut(buf, len, len, 0, e.body_len - 1));
    ASSERT_OK(decode_mut(buf, len, len, 0, e.body_len));
}
END_TEST

/* Random mutations: decode either fails or yields an entry that encodes
 * again to the same bytes (nothing is silently reinterpreted). */
START_TEST(entry_decode_mutations)
{
    bff_cache_entry_t e = sample_entry(), d;
    const char *buf;
    apr_size_t len;
    unsigned int seed = 12345;
    int round, accepted = 0;

    encode(&buf, &len, &e);
    for (round = 0; round < 20000; round++) {
        apr_size_t n = len + (apr_size_t)(rand_r(&seed) % 5) - 2, i;
        char *m = malloc(n);
        const char *err;
        int flips = 1 + rand_r(&seed) % 3, f;

        for (i = 0; i < n; i++) {
            m[i] = i < len ? buf[i] : (char)rand_r(&seed);
        }
        for (f = 0; f < flips; f++) {
            m[rand_r(&seed) % n] = (char)rand_r(&seed);
        }
        err = bff_cache_entry_decode(&d, m, n, 1 << 20, pool);
        if (!err) {
            const char *b2;
            apr_size_t l2;
            accepted++;
            ASSERT_OK(bff_cache_entry_encode(&b2, &l2, &d, pool));
            ck_assert_int_eq(l2, n);
            ck_assert(!memcmp(b2, m, n));
        }
        free(m);
        if (round % 1000 == 999) {
            apr_pool_clear(pool);
            e = sample_entry();
            encode(&buf, &len, &e);
        }
    }
    /* flips that land in the body are legitimately accepted */
    ck_assert_int_gt(accepted, 0);
}
END_TEST

/* ---------------------------------------------------------- freshness -- */

START_TEST(entry_freshness)
{
    bff_cache_entry_t e;
    apr_time_t t = APR_INT64_C(1700000000000000);

    memset(&e, 0, sizeof(e));
    e.created = t;
    e.ttl_ms = 30000;
    e.grace_ms = 60000;

    ck_assert(bff_cache_entry_is_fresh(&e, t));
    ck_assert(!bff_cache_entry_is_stale_usable(&e, t));
    ck_assert(bff_cache_entry_is_fresh(&e, t + apr_time_from_msec(29999)));
    ck_assert(!bff_cache_entry_is_fresh(&e, t + apr_time_from_sec(30)));
    ck_assert(bff_cache_entry_is_stale_usable(&e, t + apr_time_from_sec(30)));
    ck_assert(bff_cache_entry_is_stale_usable(&e, t + apr_time_from_msec(89999)));
    ck_assert(!bff_cache_entry_is_stale_usable(&e, t + apr_time_from_sec(90)));
    ck_assert(!bff_cache_entry_is_fresh(&e, t + apr_time_from_sec(90)));

    ck_assert_int_eq(bff_cache_entry_age(&e, t), 0);
    ck_assert_int_eq(bff_cache_entry_age(&e, t + apr_time_from_msec(5500)), 5);
    ck_assert_int_eq(bff_cache_entry_age(&e, t + apr_time_from_sec(31)), 31);
    /* a clock behind the producer's: age 0, fresh */
    ck_assert_int_eq(bff_cache_entry_age(&e, t - apr_time_from_sec(10)), 0);
    ck_assert(bff_cache_entry_is_fresh(&e, t - apr_time_from_sec(10)));

    ck_assert_int_eq(bff_cache_entry_store_ttl_ms(&e), 90000);
    e.ttl_ms = 0;
    e.grace_ms = 0;
    ck_assert(!bff_cache_entry_is_fresh(&e, t));
    ck_assert(!bff_cache_entry_is_stale_usable(&e, t));
    ck_assert_int_eq(bff_cache_entry_store_ttl_ms(&e), 1);
    e.ttl_ms = 1000;
    ck_assert(!bff_cache_entry_is_stale_usable(&e, t + apr_time_from_sec(1)));
}
END_TEST

/* --------------------------------------------------------------- ETag -- */

START_TEST(etag_value)
{
    const char *a = bff_cache_etag("{\"a\":1}", 7, pool);
    const char *s;

    ck_assert_int_eq(strlen(a), 34);
    ck_assert(a[0] == '"' && a[33] == '"');
    for (s = a + 1; s < a + 33; s++) {
        ck_assert((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'));
    }
    ck_assert_str_eq(a, bff_cache_etag("{\"a\":1}", 7, pool));
    ck_assert_str_ne(a, bff_cache_etag("{\"a\":2}", 7, pool));
    /* the empty body has one too; NULL means empty */
    ck_assert_str_eq(bff_cache_etag(NULL, 0, pool),
                     bff_cache_etag("", 0, pool));
    ck_assert_str_eq(bff_cache_etag("", 0, pool),
                     "\"e3b0c44298fc1c149afbf4c8996fb924\"");
}
END_TEST

START_TEST(etag_if_none_match)
{
    const char *et = "\"abc\"";

    ck_assert(!bff_etag_match(NULL, et));
    ck_assert(bff_etag_match("\"abc\"", et));
    ck_assert(!bff_etag_match("\"abd\"", et));
    ck_assert(!bff_etag_match("\"ab\"", et));
    ck_assert(!bff_etag_match("\"abcd\"", et));
    /* weak comparison: W/ on either side */
    ck_assert(bff_etag_match("W/\"abc\"", et));
    ck_assert(bff_etag_match("\"abc\"", "W/\"abc\""));
    ck_assert(bff_etag_match("W/\"abc\"", "W/\"abc\""));
    /* lists, whitespace, empty elements */
    ck_assert(bff_etag_match("\"x\", \"abc\"", et));
    ck_assert(bff_etag_match("\"x\",\"y\",W/\"abc\"", et));
    ck_assert(bff_etag_match(" \t\"x\" ,\t\"abc\" ", et));
    ck_assert(bff_etag_match(", ,\"abc\",", et));
    ck_assert(!bff_etag_match("\"x\", \"y\"", et));
    ck_assert(!bff_etag_match("", et));
    ck_assert(!bff_etag_match("  ", et));
    /* "*" */
    ck_assert(bff_etag_match("*", et));
    ck_assert(bff_etag_match(" * ", et));
    ck_assert(!bff_etag_match("*", NULL));
    ck_assert(!bff_etag_match("*, \"abc\"", et));
    ck_assert(!bff_etag_match("\"abc\"", NULL));
    /* malformed: never a match */
    ck_assert(!bff_etag_match("abc", et));
    ck_assert(!bff_etag_match("\"abc", et));
    ck_assert(!bff_etag_match("w/\"abc\"", et));
    ck_assert(!bff_etag_match("W/abc", et));
    ck_assert(!bff_etag_match("\"x\"junk, \"abc\"", et));
    ck_assert(!bff_etag_match("\"a c\"", "\"a c\""));
    /* a bad current etag never matches */
    ck_assert(!bff_etag_match("\"abc\"", "abc"));
    /* opaque-tags are case-sensitive */
    ck_assert(!bff_etag_match("\"ABC\"", et));
    /* obs-text is valid syntax in a client's list */
    ck_assert(bff_etag_match("\"\xe9\", \"abc\"", et));
}
END_TEST

/* --------------------------------------------------------------- URLs -- */

START_TEST(url_redis_valid)
{
    bff_redis_url_t u;

    ASSERT_OK(bff_redis_url_parse(&u, "redis://127.0.0.1:6380/2", pool));
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 2);
    ck_assert_ptr_null(u.password);
    ck_assert_ptr_null(u.user);
    ck_assert_ptr_null(u.path);

    ASSERT_OK(bff_redis_url_parse(&u, "redis://cache.example-1.net", pool));
    ck_assert_str_eq(u.host, "cache.example-1.net");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    ASSERT_OK(bff_redis_url_parse(&u, "redis://h/", pool));
    ck_assert_int_eq(u.db, 0);
    ASSERT_OK(bff_redis_url_parse(&u, "REDIS://h:1/65535", pool));
    ck_assert_int_eq(u.port, 1);
    ck_assert_int_eq(u.db, 65535);

    ASSERT_OK(bff_redis_url_parse(&u, "redis://:p%40ss%3Aw%2Fd@h:7/1", pool));
    ck_assert_str_eq(u.password, "p@ss:w/d");
    ck_assert_ptr_null(u.user);
    ASSERT_OK(bff_redis_url_parse(&u, "redis://:a:b@h", pool));
    ck_assert_str_eq(u.password, "a:b");
    ASSERT_OK(bff_redis_url_parse(&u, "redis://bff:s3cr3t!@h", pool));
    ck_assert_str_eq(u.user, "bff");
    ck_assert_str_eq(u.password, "s3cr3t!");

    ASSERT_OK(bff_redis_url_parse(&u, "redis://[::1]:6390/4", pool));
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6390);
    ck_assert_int_eq(u.db, 4);

    ASSERT_OK(bff_redis_url_parse(&u, "redis+unix:///run/redis.sock", pool));
    ck_assert_str_eq(u.path, "/run/redis.sock");
    ck_assert_ptr_null(u.host);
    ck_assert_int_eq(u.db, 0);
    ASSERT_OK(bff_redis_url_parse(&u, "redis+unix:///tmp/r.sock?db=3", pool));
    ck_assert_str_eq(u.path, "/tmp/r.sock");
    ck_assert_int_eq(u.db, 3);
    ASSERT_OK(bff_redis_url_parse(&u, "redis+unix://:pw@/tmp/r.sock", pool));
    ck_assert_str_eq(u.password, "pw");
    ck_assert_str_eq(u.path, "/tmp/r.sock");
}
END_TEST

START_TEST(url_redis_invalid)
{
    static const char *const bad[] = {
        "", "http://h", "redis:/h", "redis://", "redis://:6379",
        "redis://h:0", "redis://h:65536", "redis://h:12a", "redis://h:",
        "redis://h:/", "redis://h:+1", "redis://h:-1", "redis://h:123456",
        "redis://h/abc", "redis://h/1/2", "redis://h/-1", "redis://h/01",
        "redis://h/65536", "redis://h/1 ", "redis://h?x=1", "redis://h/0#f",
        "redis://us er:p@h", "redis://pw@h", "redis://:@h", "redis://:p%zz@h",
        "redis://:p%0@h", "redis://:p%00@h", "redis://:p w@h", "redis://h h",
        "redis://h_1", "redis://[::1", "redis://[]:1", "redis://[::1]x",
        "redis://[::g]", "rediss://h", "redis+unix://relative",
        "redis+unix:///p?db=x", "redis+unix:///p?foo=1", "redis+unix://",
        "redis+unix:///", "redis+unix://:pw@relative", "redis://a@b@h",
        "redis://h:6379 ", "redis://h\n", "redis://:p/w@h",
        "redis+unix:///tmp/a b", "redis+unix:///p?db=1&x=2",
    };
    bff_redis_url_t u;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = bff_redis_url_parse(&u, bad[i], pool);
        ck_assert_msg(err != NULL, "'%s' was accepted", bad[i]);
    }
    ASSERT_ERR(bff_redis_url_parse(&u, NULL, pool));
    /* the message names the problem */
    ck_assert(strstr(bff_redis_url_parse(&u, "rediss://h", pool), "TLS"));
    ck_assert(strstr(bff_redis_url_parse(&u, "redis://h:0", pool), "port"));
    ck_assert(strstr(bff_redis_url_parse(&u, "redis://h/x", pool),
                     "database"));
}
END_TEST

START_TEST(url_memcache)
{
    apr_array_header_t *s;
    static const char *const bad[] = {
        "", "memcache://", "memcache://h,", "memcache://,h", "memcache://h,,g",
        "memcache://h,h", "memcache://h:11211,h", "memcache://h:0",
        "memcache://h:70000", "memcache://u@h", "memcache://h/x",
        "memcache://h?x", "memcached://h", "redis://h", "memcache://h h",
        "memcache://[::1", "memcache://h:",
    };
    size_t i;

    ASSERT_OK(bff_memcache_url_parse(&s, "memcache://h1:11311,h2,[::1]:5",
                                     pool));
    ck_assert_int_eq(s->nelts, 3);
    ck_assert_str_eq(APR_ARRAY_IDX(s, 0, bff_memcache_server_t).host, "h1");
    ck_assert_int_eq(APR_ARRAY_IDX(s, 0, bff_memcache_server_t).port, 11311);
    ck_assert_str_eq(APR_ARRAY_IDX(s, 1, bff_memcache_server_t).host, "h2");
    ck_assert_int_eq(APR_ARRAY_IDX(s, 1, bff_memcache_server_t).port, 11211);
    ck_assert_str_eq(APR_ARRAY_IDX(s, 2, bff_memcache_server_t).host, "::1");
    ck_assert_int_eq(APR_ARRAY_IDX(s, 2, bff_memcache_server_t).port, 5);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(bff_memcache_url_parse(&s, bad[i], pool) != NULL,
                      "'%s' was accepted", bad[i]);
    }
    {
        char *u = apr_pstrdup(pool, "memcache://h0");
        for (i = 1; i < 64; i++) {
            u = apr_psprintf(pool, "%s,h%d", u, (int)i);
        }
        ASSERT_OK(bff_memcache_url_parse(&s, u, pool));
        ck_assert_int_eq(s->nelts, 64);
        u = apr_psprintf(pool, "%s,h64", u);
        ASSERT_ERR(bff_memcache_url_parse(&s, u, pool));
    }
}
END_TEST

/* --------------------------------------------------------------- gate -- */

START_TEST(gate_backoff)
{
    bff_store_gate_t *g = bff_store_gate_create(100, 400, pool);
    bff_store_health_t h;
    apr_time_t t = APR_INT64_C(1700000000000000);
    apr_uint32_t gen0 = bff_store_gate_generation(g);

#define MS(n) apr_time_from_msec(n)
    bff_store_gate_health(g, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert_ptr_null(h.last_error);
    ck_assert(bff_store_gate_enter(g, t));

    bff_store_gate_fail(g, t, "connection refused");
    ck_assert(bff_store_gate_generation(g) != gen0);
    bff_store_gate_health(g, &h, pool);
    ck_assert_int_eq(h.up, 0);
    ck_assert(h.since == t);
    ck_assert(h.retry_at == t + MS(100));
    ck_assert_str_eq(h.last_error, "connection refused");
    /* failures of calls already under way do not extend the period */
    bff_store_gate_fail(g, t + MS(10), "late");
    bff_store_gate_health(g, &h, pool);
    ck_assert(h.retry_at == t + MS(100));

    ck_assert(!bff_store_gate_enter(g, t + MS(50)));
    ck_assert(!bff_store_gate_enter(g, t + MS(99)));
    /* one probe, the others keep failing fast */
    ck_assert(bff_store_gate_enter(g, t + MS(100)));
    ck_assert(!bff_store_gate_enter(g, t + MS(101)));
    bff_store_gate_health(g, &h, pool);
    ck_assert_int_eq(h.fast_fails, 3);
    /* the probe fails: the period doubles */
    bff_store_gate_fail(g, t + MS(110), "refused again");
    ck_assert(!bff_store_gate_enter(g, t + MS(309)));
    ck_assert(bff_store_gate_enter(g, t + MS(310)));
    bff_store_gate_fail(g, t + MS(310), "x");          /* next: 400 (cap) */
    ck_assert(!bff_store_gate_enter(g, t + MS(709)));
    ck_assert(bff_store_gate_enter(g, t + MS(710)));
    bff_store_gate_fail(g, t + MS(710), "x");          /* still 400 */
    ck_assert(!bff_store_gate_enter(g, t + MS(1109)));
    ck_assert(bff_store_gate_enter(g, t + MS(1110)));
    /* a probe that never reports does not wedge the gate */
    ck_assert(!bff_store_gate_enter(g, t + MS(1200)));
    ck_assert(bff_store_gate_enter(g, t + MS(1600)));
    /* success: up, backoff back to the minimum */
    bff_store_gate_ok(g, t + MS(1610));
    bff_store_gate_health(g, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert(h.since == t + MS(1610));
    ck_assert(h.retry_at == 0);
    ck_assert(bff_store_gate_enter(g, t + MS(1611)));
    gen0 = bff_store_gate_generation(g);
    bff_store_gate_fail(g, t + MS(2000), "down again");
    ck_assert(bff_store_gate_generation(g) != gen0);
    ck_assert(!bff_store_gate_enter(g, t + MS(2099)));
    ck_assert(bff_store_gate_enter(g, t + MS(2100)));
    /* an error reply is noted but changes nothing */
    bff_store_gate_ok(g, t + MS(2100));
    bff_store_gate_note_error(g, t + MS(2200), "OOM command not allowed");
    bff_store_gate_health(g, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert_str_eq(h.last_error, "OOM command not allowed");
    ck_assert(h.last_error_at == t + MS(2200));
    bff_store_gate_count(g, 2, 1);
    bff_store_gate_health(g, &h, pool);
    ck_assert_int_eq(h.connects, 2);
    ck_assert_int_eq(h.connect_failures, 1);
#undef MS
}
END_TEST

START_TEST(store_misc)
{
    bff_store_opts_t o;
    const char *t1 = bff_store_token(pool), *t2 = bff_store_token(pool);
    bff_store_t *st;

    ck_assert_int_eq(strlen(t1), 32);
    ck_assert_str_ne(t1, t2);
    ck_assert_str_eq(bff_store_rc_str(BFF_STORE_OK), "ok");
    ck_assert_str_eq(bff_store_rc_str(BFF_STORE_MISS), "miss");
    ck_assert_str_eq(bff_store_rc_str(BFF_STORE_HELD), "held");
    ck_assert_str_eq(bff_store_rc_str(BFF_STORE_ERROR), "error");
    ck_assert_str_eq(bff_store_rc_str(BFF_STORE_UNSUPPORTED), "unsupported");
    bff_store_opts_default(&o);
    ck_assert_str_eq(o.prefix, "bff:");
    ck_assert_int_eq(o.command_timeout_ms, 50);
    /* creating never connects; bad URLs and options are refused */
    ASSERT_OK(bff_store_redis_create(&st, "redis://127.0.0.1:1", &o, pool));
    ASSERT_OK(bff_store_memcache_create(&st, "memcache://127.0.0.1:1", &o,
                                        pool));
    ASSERT_ERR(bff_store_redis_create(&st, "redis://h:0", &o, pool));
    ASSERT_ERR(bff_store_memcache_create(&st, "memcache://", &o, pool));
    o.command_timeout_ms = 0;
    ASSERT_ERR(bff_store_redis_create(&st, "redis://h", &o, pool));
    ASSERT_ERR(bff_store_memcache_create(&st, "memcache://h", &o, pool));
    bff_store_opts_default(&o);
    o.prefix = "bad prefix";
    ASSERT_ERR(bff_store_redis_create(&st, "redis://h", &o, pool));
    ASSERT_ERR(bff_store_memcache_create(&st, "memcache://h", &o, pool));
}
END_TEST

/* ------------------------------------------------------- test servers -- */

/* Servers shared by a test case, started in its unchecked fixture. */
static server_t redis_a, redis_b, mc_a, mc_b;

static void redis_fixture_up(void)
{
    redis_start(&redis_a, 0, NULL);
    redis_start(&redis_b, 0, "s3cret");
}

static void redis_fixture_down(void)
{
    server_stop(&redis_a);
    server_stop(&redis_b);
}

static void mc_fixture_up(void)
{
    memcached_start(&mc_a, 0);
    memcached_start(&mc_b, 0);
}

static void mc_fixture_down(void)
{
    server_stop(&mc_a);
    server_stop(&mc_b);
}

static bff_store_opts_t test_opts(long timeout_ms)
{
    bff_store_opts_t o;

    bff_store_opts_default(&o);
    o.prefix = "t:";
    o.connect_timeout_ms = timeout_ms;
    o.command_timeout_ms = timeout_ms;
    o.backoff_min_ms = 200;
    o.backoff_max_ms = 800;
    o.pool_max = 4;
    return o;
}

static bff_store_t *redis_store(const server_t *s, const char *auth, int db,
                                long timeout_ms)
{
    bff_store_opts_t o = test_opts(timeout_ms);
    bff_store_t *st = NULL;

    ASSERT_OK(bff_store_redis_create(&st, apr_psprintf(pool,
        "redis://%s127.0.0.1:%d/%d", auth ? auth : "", s->port, db), &o,
        pool));
    return st;
}

static bff_store_t *mc_store(const char *url, long timeout_ms)
{
    bff_store_opts_t o = test_opts(timeout_ms);
    bff_store_t *st = NULL;

    ASSERT_OK(bff_store_memcache_create(&st, url, &o, pool));
    return st;
}

/* A direct hiredis connection, to look behind the store's back. */
static redisReply *raw(int port, const char *password, const char *fmt,
                       const char *a1, const char *a2)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    redisReply *r;

    ck_assert(c && !c->err);
    if (password) {
        r = redisCommand(c, "AUTH %s", password);
        freeReplyObject(r);
    }
    r = redisCommand(c, fmt, a1, a2);
    redisFree(c);
    ck_assert(r != NULL);
    return r;
}

static const char *health_error(bff_store_t *st)
{
    bff_store_health_t h;

    bff_store_health(st, &h, pool);
    return h.last_error ? h.last_error : "(none)";
}

static apr_array_header_t *tags_of(const char *a, const char *b)
{
    return names(a, b, NULL);
}

/* ------------------------------------------------- generic store tests -- */

/* The same expectations for both stores. */
static void basic_ops(bff_store_t *st)
{
    const char *v, *tok = NULL, *tok2 = NULL;
    apr_size_t len;
    static const char bin[] = "a\0b\r\nEND\r\n\xff";

    ASSERT_RC(bff_store_get(st, &v, &len, "t:k1", pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_set(st, "t:k1", "hello", 5, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:k1", pool), BFF_STORE_OK);
    ck_assert_int_eq(len, 5);
    ck_assert(!memcmp(v, "hello", 5));
    /* binary values, protocol look-alikes included */
    ASSERT_RC(bff_store_set(st, "t:k2", bin, sizeof(bin) - 1, 10000, NULL,
                            pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:k2", pool), BFF_STORE_OK);
    ck_assert_int_eq(len, sizeof(bin) - 1);
    ck_assert(!memcmp(v, bin, len));
    /* empty value */
    ASSERT_RC(bff_store_set(st, "t:k3", "", 0, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:k3", pool), BFF_STORE_OK);
    ck_assert_int_eq(len, 0);
    /* overwrite, delete */
    ASSERT_RC(bff_store_set(st, "t:k1", "bye", 3, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:k1", pool), BFF_STORE_OK);
    ck_assert(len == 3 && !memcmp(v, "bye", 3));
    ASSERT_RC(bff_store_del(st, "t:k1", pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_del(st, "t:k1", pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:k1", pool), BFF_STORE_MISS);

    /* locks: exclusive, released only by their owner */
    ASSERT_RC(bff_store_lock(st, &tok, "t:k1", 10000, pool), BFF_STORE_OK);
    ck_assert_ptr_nonnull(tok);
    ASSERT_RC(bff_store_lock(st, &tok2, "t:k1", 10000, pool), BFF_STORE_HELD);
    ASSERT_RC(bff_store_unlock(st, "t:k1", "not-the-token", pool),
              BFF_STORE_MISS);
    ASSERT_RC(bff_store_lock(st, &tok2, "t:k1", 10000, pool), BFF_STORE_HELD);
    ASSERT_RC(bff_store_unlock(st, "t:k1", tok, pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_unlock(st, "t:k1", tok, pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_lock(st, &tok2, "t:k1", 10000, pool), BFF_STORE_OK);
    ck_assert_str_ne(tok, tok2);
    /* the lock is not the entry */
    ASSERT_RC(bff_store_get(st, &v, &len, "t:k1", pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_unlock(st, "t:k1", tok2, pool), BFF_STORE_OK);
}

static void tag_ops(bff_store_t *st, int exact_counts)
{
    const char *v;
    apr_size_t len;
    long n = 99;

    ASSERT_RC(bff_store_set(st, "t:e1", "1", 1, 10000,
                            tags_of("user:7", "product:42"), pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_set(st, "t:e2", "2", 1, 10000,
                            tags_of("user:7", NULL), pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_set(st, "t:e3", "3", 1, 10000,
                            tags_of("product:42", NULL), pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_set(st, "t:e4", "4", 1, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e1", pool), BFF_STORE_OK);
    ck_assert(len == 1 && v[0] == '1');

    ASSERT_RC(bff_store_purge_tag(st, &n, "user:7", pool), BFF_STORE_OK);
    ck_assert_int_eq(n, exact_counts ? 2 : -1);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e1", pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e2", pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e3", pool), BFF_STORE_OK);
    ck_assert(len == 1 && v[0] == '3');
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e4", pool), BFF_STORE_OK);

    ASSERT_RC(bff_store_purge_tag(st, &n, "product:42", pool), BFF_STORE_OK);
    ck_assert_int_eq(n, exact_counts ? 1 : -1);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e3", pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e4", pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_purge_tag(st, &n, "never-used", pool), BFF_STORE_OK);
    ck_assert_int_eq(n, exact_counts ? 0 : -1);

    /* entries written after a purge are valid again */
    ASSERT_RC(bff_store_set(st, "t:e1", "5", 1, 10000,
                            tags_of("user:7", NULL), pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e1", pool), BFF_STORE_OK);
    ck_assert(len == 1 && v[0] == '5');
    ASSERT_RC(bff_store_purge_tag(st, &n, "user:7", pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:e1", pool), BFF_STORE_MISS);
}

/* ------------------------------------------------------ Redis, healthy -- */

START_TEST(redis_basic)
{
    basic_ops(redis_store(&redis_a, NULL, 0, 500));
}
END_TEST

START_TEST(redis_ttl)
{
    bff_store_t *st = redis_store(&redis_a, NULL, 0, 500);
    const char *v, *tok;
    redisReply *r;
    apr_size_t len;

    ASSERT_RC(bff_store_set(st, "t:ttl", "x", 1, 150, NULL, pool),
              BFF_STORE_OK);
    r = raw(redis_a.port, NULL, "PTTL %s", "t:ttl", NULL);
    ck_assert(r->integer > 0 && r->integer <= 150);
    freeReplyObject(r);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:ttl", pool), BFF_STORE_OK);
    sleep_ms(300);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:ttl", pool), BFF_STORE_MISS);

    /* locks expire by themselves; a late unlock cannot free the new one */
    ASSERT_RC(bff_store_lock(st, &tok, "t:ttl", 150, pool), BFF_STORE_OK);
    sleep_ms(300);
    {
        const char *tok2;
        ASSERT_RC(bff_store_lock(st, &tok2, "t:ttl", 10000, pool),
                  BFF_STORE_OK);
        ASSERT_RC(bff_store_unlock(st, "t:ttl", tok, pool), BFF_STORE_MISS);
        ASSERT_RC(bff_store_lock(st, &tok, "t:ttl", 10000, pool),
                  BFF_STORE_HELD);
        ASSERT_RC(bff_store_unlock(st, "t:ttl", tok2, pool), BFF_STORE_OK);
    }
}
END_TEST

START_TEST(redis_tags)
{
    bff_store_t *st = redis_store(&redis_a, NULL, 0, 500);
    const char *tk = bff_cache_tag_key("t:", "endpoint:x", pool);
    redisReply *r;

    tag_ops(st, 1);

    /* the tag set lives as long as its longest member ... */
    ASSERT_RC(bff_store_set(st, "t:long", "l", 1, 20000,
                            tags_of("endpoint:x", NULL), pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_set(st, "t:short", "s", 1, 100,
                            tags_of("endpoint:x", NULL), pool), BFF_STORE_OK);
    r = raw(redis_a.port, NULL, "PTTL %s", tk, NULL);
    ck_assert_msg(r->integer > 15000, "tag set ttl %lld", r->integer);
    freeReplyObject(r);
    /* ... and does not keep members that expired */
    sleep_ms(250);
    ASSERT_RC(bff_store_set(st, "t:other", "o", 1, 20000,
                            tags_of("endpoint:x", NULL), pool), BFF_STORE_OK);
    r = raw(redis_a.port, NULL, "ZCARD %s", tk, NULL);
    ck_assert_int_eq(r->integer, 2);
    freeReplyObject(r);

    /* the scripts are reloaded when Redis forgets them */
    r = raw(redis_a.port, NULL, "SCRIPT FLUSH", NULL, NULL);
    freeReplyObject(r);
    {
        long n;
        ASSERT_RC(bff_store_purge_tag(st, &n, "endpoint:x", pool),
                  BFF_STORE_OK);
        ck_assert_int_eq(n, 2);
    }
    r = raw(redis_a.port, NULL, "EXISTS %s", tk, NULL);
    ck_assert_int_eq(r->integer, 0);
    freeReplyObject(r);
}
END_TEST

START_TEST(redis_auth_db)
{
    bff_store_t *st = redis_store(&redis_b, ":s3cret@", 3, 500);
    const char *v;
    apr_size_t len;
    redisReply *r;
    bff_store_health_t h;

    ASSERT_RC(bff_store_set(st, "t:db", "in-3", 4, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:db", pool), BFF_STORE_OK);
    r = raw(redis_b.port, "s3cret", "GET %s", "t:db", NULL);
    ck_assert_int_eq(r->type, REDIS_REPLY_NIL);         /* not in db 0 */
    freeReplyObject(r);
    {
        redisContext *c = redisConnect("127.0.0.1", redis_b.port);
        freeReplyObject(redisCommand(c, "AUTH s3cret"));
        freeReplyObject(redisCommand(c, "SELECT 3"));
        r = redisCommand(c, "GET t:db");
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(r->str, "in-3");
        freeReplyObject(r);
        redisFree(c);
    }
    /* the ACL form too */
    st = redis_store(&redis_b, "default:s3cret@", 3, 500);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:db", pool), BFF_STORE_OK);

    /* wrong or missing password: errors that say why */
    st = redis_store(&redis_b, ":wrong@", 0, 500);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:db", pool), BFF_STORE_ERROR);
    ck_assert_msg(strstr(health_error(st), "AUTH refused"), "%s",
                  health_error(st));
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 0);
    ck_assert_int_eq(h.connect_failures, 1);
    st = redis_store(&redis_b, NULL, 0, 500);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:db", pool), BFF_STORE_ERROR);
    ck_assert_msg(strstr(health_error(st), "NOAUTH"), "%s",
                  health_error(st));
    /* a database that does not exist */
    st = redis_store(&redis_a, NULL, 999, 500);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:db", pool), BFF_STORE_ERROR);
    ck_assert_msg(strstr(health_error(st), "SELECT refused"), "%s",
                  health_error(st));
}
END_TEST

START_TEST(redis_limits)
{
    bff_store_opts_t o = test_opts(500);
    bff_store_t *st;
    bff_store_health_t h;
    const char *v;
    apr_size_t len;
    char *big = apr_palloc(pool, 64 * 1024);

    o.max_value = 4096;
    ASSERT_OK(bff_store_redis_create(&st, apr_psprintf(pool,
        "redis://127.0.0.1:%d", redis_a.port), &o, pool));
    memset(big, 'x', 64 * 1024);
    ASSERT_RC(bff_store_set(st, "t:big", big, 64 * 1024, 10000, NULL, pool),
              BFF_STORE_OK);
    /* refused while it arrives; Redis is not declared down for it */
    ASSERT_RC(bff_store_get(st, &v, &len, "t:big", pool), BFF_STORE_ERROR);
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert_msg(strstr(h.last_error, "too large"), "%s", h.last_error);
    ASSERT_RC(bff_store_set(st, "t:small", "s", 1, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:small", pool), BFF_STORE_OK);
    /* a wrong type is an error reply, not an outage */
    freeReplyObject(raw(redis_a.port, NULL, "LPUSH %s %s", "t:list", "x"));
    ASSERT_RC(bff_store_get(st, &v, &len, "t:list", pool), BFF_STORE_ERROR);
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert_msg(strstr(h.last_error, "WRONGTYPE"), "%s", h.last_error);
}
END_TEST

typedef struct {
    bff_store_t *st;
    int id;
    int failures;
} worker_t;

static void *APR_THREAD_FUNC worker(apr_thread_t *t, void *data)
{
    worker_t *w = data;
    apr_pool_t *p;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < 200; i++) {
        const char *k = apr_psprintf(p, "t:w%d:%d", w->id, i % 10), *v;
        const char *val = apr_psprintf(p, "%d-%d", w->id, i);
        apr_size_t len;
        if (bff_store_set(w->st, k, val, strlen(val), 10000, NULL, p)
            != BFF_STORE_OK
            || bff_store_get(w->st, &v, &len, k, p) != BFF_STORE_OK
            || len != strlen(val) || memcmp(v, val, len)) {
            w->failures++;
        }
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    /* return rather than apr_thread_exit: pthread_exit's unwinding
     * confuses ASan's stack bookkeeping */
    (void)t;
    return NULL;
}

static void run_workers(bff_store_t *st, int pool_max)
{
    apr_thread_t *th[8];
    worker_t w[8];
    apr_status_t rv;
    bff_store_health_t h;
    int i;

    for (i = 0; i < 8; i++) {
        w[i].st = st;
        w[i].id = i;
        w[i].failures = 0;
        ck_assert_int_eq(apr_thread_create(&th[i], NULL, worker, &w[i], pool),
                         APR_SUCCESS);
    }
    for (i = 0; i < 8; i++) {
        apr_thread_join(&rv, th[i]);
        ck_assert_msg(w[i].failures == 0, "worker %d: %d failures (%s)", i,
                      w[i].failures, health_error(st));
    }
    bff_store_health(st, &h, pool);
    ck_assert_int_le(h.connects, pool_max);
    ck_assert_int_eq(h.errors, 0);
}

START_TEST(redis_threads)
{
    run_workers(redis_store(&redis_a, NULL, 0, 2000), 4);
}
END_TEST

typedef struct {
    apr_thread_mutex_t *mu;
    int subscribed;
    int nmsg;
    char last[64];
    volatile apr_uint32_t stop;
    bff_store_t *st;
    bff_store_rc_e rc;
    apr_pool_t *p;
} sub_t;

static void on_msg(void *baton, const char *msg, apr_size_t len)
{
    sub_t *s = baton;

    apr_thread_mutex_lock(s->mu);
    if (!msg) {
        s->subscribed++;
    }
    else {
        s->nmsg++;
        apr_cpystrn(s->last, msg, len + 1 < sizeof(s->last)
                                  ? len + 1 : sizeof(s->last));
    }
    apr_thread_mutex_unlock(s->mu);
}

static void *APR_THREAD_FUNC subscriber(apr_thread_t *t, void *data)
{
    sub_t *s = data;

    s->rc = bff_store_subscribe(s->st, "t:chan", on_msg, s, &s->stop, s->p);
    /* return rather than apr_thread_exit: pthread_exit's unwinding
     * confuses ASan's stack bookkeeping */
    (void)t;
    return NULL;
}

static int wait_for(sub_t *s, int *field, int want)
{
    int i, v = 0;

    for (i = 0; i < 300; i++) {
        apr_thread_mutex_lock(s->mu);
        v = *field;
        apr_thread_mutex_unlock(s->mu);
        if (v >= want) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

START_TEST(redis_pubsub)
{
    sub_t s;
    apr_thread_t *th;
    apr_status_t rv;
    apr_time_t t0;

    memset(&s, 0, sizeof(s));
    apr_thread_mutex_create(&s.mu, APR_THREAD_MUTEX_DEFAULT, pool);
    s.st = redis_store(&redis_b, ":s3cret@", 2, 500);
    apr_pool_create(&s.p, NULL);
    ck_assert_int_eq(apr_thread_create(&th, NULL, subscriber, &s, pool),
                     APR_SUCCESS);
    ck_assert(wait_for(&s, &s.subscribed, 1));
    ASSERT_RC(bff_store_publish(s.st, "t:chan", "purge t:abc", 11, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_publish(s.st, "t:other", "not for us", 10, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_publish(s.st, "t:chan", "second", 6, pool),
              BFF_STORE_OK);
    ck_assert(wait_for(&s, &s.nmsg, 2));
    ck_assert_int_eq(s.nmsg, 2);
    ck_assert_str_eq(s.last, "second");
    /* stop is honoured promptly */
    t0 = apr_time_now();
    apr_atomic_set32(&s.stop, 1);
    apr_thread_join(&rv, th);
    ck_assert_int_lt(ms_since(t0), 1000);
    ASSERT_RC(s.rc, BFF_STORE_OK);
    apr_pool_destroy(s.p);
}
END_TEST

/* XADD ... MAXLEN ~ for the analytics events: fields arrive byte for
 * byte, a pipelined batch lands in one call, the stream stays near its
 * cap, a key of another type is an error reply (Redis stays up), and a
 * Redis that is not there fails fast after the first attempt. */
START_TEST(redis_xadd)
{
    bff_store_t *st = redis_store(&redis_a, NULL, 0, 500);
    const char *kv[] = { "type", "request", "path", "/a\"b\n" };
    apr_size_t len[] = { 4, 7, 4, 6 };
    bff_store_fields_t e[300];
    bff_store_health_t h;
    server_t nobody = { 0 };
    redisReply *r;
    apr_time_t t0;
    int added = -1, i;

    for (i = 0; i < 300; i++) {
        e[i].n = 2;
        e[i].kv = kv;
        e[i].len = len;
    }
    ASSERT_RC(bff_store_xadd(st, &added, "t:ev", 100, e, 1, pool),
              BFF_STORE_OK);
    ck_assert_int_eq(added, 1);
    r = raw(redis_a.port, NULL, "XRANGE %s %s + COUNT 1", "t:ev", "-");
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(r->elements, 1);
    ck_assert_uint_eq(r->element[0]->element[1]->elements, 4);
    ck_assert_str_eq(r->element[0]->element[1]->element[2]->str, "path");
    ck_assert_str_eq(r->element[0]->element[1]->element[3]->str, "/a\"b\n");
    freeReplyObject(r);

    ASSERT_RC(bff_store_xadd(st, &added, "t:ev", 100, e, 300, pool),
              BFF_STORE_OK);
    ck_assert_int_eq(added, 300);
    r = raw(redis_a.port, NULL, "XLEN %s", "t:ev", NULL);
    /* ~: trimmed by whole nodes (100 entries each by default) */
    ck_assert_int_ge(r->integer, 100);
    ck_assert_int_lt(r->integer, 301);
    freeReplyObject(r);

    freeReplyObject(raw(redis_a.port, NULL, "SET %s %s", "t:notastream", "x"));
    ASSERT_RC(bff_store_xadd(st, &added, "t:notastream", 100, e, 2, pool),
              BFF_STORE_ERROR);
    ck_assert_int_eq(added, 0);
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert(strstr(h.last_error, "WRONGTYPE"));

    nobody.port = free_port();
    st = redis_store(&nobody, NULL, 0, 200);
    ASSERT_RC(bff_store_xadd(st, &added, "t:ev", 100, e, 1, pool),
              BFF_STORE_ERROR);
    t0 = apr_time_now();
    ASSERT_RC(bff_store_xadd(st, &added, "t:ev", 100, e, 1, pool),
              BFF_STORE_ERROR);
    ck_assert_int_lt(ms_since(t0), 100);     /* no new attempt: gate down */
}
END_TEST

/* ------------------------------------------------------ Redis, failing -- */

START_TEST(redis_killed_and_restarted)
{
    server_t r;
    bff_store_t *st;
    bff_store_health_t h0, h1;
    const char *v;
    apr_size_t len;
    apr_time_t t0;
    long elapsed;
    int i, ok = 0;

    redis_start(&r, 0, NULL);
    st = redis_store(&r, NULL, 0, 200);
    ASSERT_RC(bff_store_set(st, "t:a", "1", 1, 60000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_OK);

    server_kill9(&r);
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    elapsed = ms_since(t0);
    ck_assert_msg(elapsed < 2 * 200, "first error took %ldms", elapsed);
    bff_store_health(st, &h0, pool);
    ck_assert_int_eq(h0.up, 0);
    ck_assert_ptr_nonnull(h0.last_error);

    /* down: no connect attempt per call, answers at once */
    t0 = apr_time_now();
    for (i = 0; i < 500; i++) {
        ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
        ASSERT_RC(bff_store_set(st, "t:a", "1", 1, 1000, NULL, pool),
                  BFF_STORE_ERROR);
    }
    elapsed = ms_since(t0);
    bff_store_health(st, &h1, pool);
    ck_assert_msg(elapsed < 150, "1000 calls while down took %ldms", elapsed);
    ck_assert_int_le(h1.connect_failures - h0.connect_failures, 1);
    ck_assert_int_ge(h1.fast_fails - h0.fast_fails, 999);

    /* restarted on the same port: the same store object recovers */
    redis_start(&r, r.port, NULL);
    for (i = 0; i < 300 && !ok; i++) {
        ok = bff_store_set(st, "t:b", "2", 1, 60000, NULL, pool)
             == BFF_STORE_OK;
        if (!ok) {
            sleep_ms(10);
        }
    }
    ck_assert_msg(ok, "no recovery: %s", health_error(st));
    bff_store_health(st, &h1, pool);
    ck_assert_int_eq(h1.up, 1);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:b", pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_MISS);
    /* recovery took about one backoff period, not many */
    ck_assert_int_le(h1.connect_failures, 6);
    server_stop(&r);
}
END_TEST

/* The Redis layer itself: a connection Redis closed while it sat in the
 * pool (CLIENT KILL, a restart) costs the caller nothing: the call goes
 * out once more on a fresh connection, and Redis is not marked down. */
static const char *layer_ping(bff_redis_t *rd)
{
    bff_redis_cmd_t c = bff_redis_cmd(pool, 1, "PING");
    redisReply *rep;
    const char *err = bff_redis_exec(&rep, rd, &c, 1, pool);

    if (!err && (rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "PONG"))) {
        err = "not PONG";
    }
    return err;
}

START_TEST(redis_layer_idle_closed)
{
    server_t r;
    bff_redis_opts_t o;
    bff_redis_t *rd;
    bff_store_health_t h;
    redisContext *admin;
    redisReply *rep;
    struct timeval tv = { 2, 0 };
    const char *err;

    redis_start(&r, 0, NULL);
    bff_redis_opts_default(&o);
    o.connect_timeout_ms = o.command_timeout_ms = 500;
    ASSERT_OK(bff_redis_create(&rd, apr_psprintf(pool, "redis://127.0.0.1:%d",
                                                 r.port), &o, pool));
    ck_assert_str_eq(bff_redis_desc(rd),
                     apr_psprintf(pool, "redis 127.0.0.1:%d db 0", r.port));
    err = layer_ping(rd);
    ck_assert_msg(!err, "%s", err);

    /* Redis drops every client, the pooled one included */
    admin = redisConnectWithTimeout("127.0.0.1", r.port, tv);
    ck_assert(admin && !admin->err);
    rep = redisCommand(admin, "CLIENT KILL TYPE normal");
    if (rep) {
        freeReplyObject(rep);
    }
    redisFree(admin);
    sleep_ms(50);
    err = layer_ping(rd);
    ck_assert_msg(!err, "after CLIENT KILL: %s", err);

    /* a restart on the same port: the same */
    server_stop(&r);
    redis_start(&r, r.port, NULL);
    err = layer_ping(rd);
    ck_assert_msg(!err, "after a restart: %s", err);

    bff_redis_health(rd, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert_int_eq((int)h.connects, 3);
    ck_assert_int_eq((int)h.connect_failures, 0);
    ck_assert_int_eq((int)h.errors, 0);
    server_stop(&r);
}
END_TEST

/* Refused AUTH: the call fails with Redis' answer, the gate marks Redis
 * down, and calls then fail fast without connecting. */
START_TEST(redis_layer_auth_refused)
{
    bff_redis_opts_t o;
    bff_redis_t *rd;
    bff_store_health_t h;
    const char *err;

    bff_redis_opts_default(&o);
    o.backoff_min_ms = o.backoff_max_ms = 60000;
    ASSERT_OK(bff_redis_create(&rd, apr_psprintf(pool,
        "redis://:wrong@127.0.0.1:%d", redis_b.port), &o, pool));
    err = layer_ping(rd);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "AUTH refused: WRONGPASS"), "%s", err);
    ck_assert_msg(!strstr(err, "wrong"), "the password leaked: %s", err);
    err = layer_ping(rd);
    ck_assert_msg(err && strstr(err, "down"), "%s", err);
    bff_redis_health(rd, &h, pool);
    ck_assert_int_eq(h.up, 0);
    ck_assert_int_eq((int)h.connect_failures, 1);
    ck_assert_int_eq((int)h.fast_fails, 1);
    /* bad options are refused at creation */
    o.pool_max = 0;
    ck_assert_ptr_nonnull(bff_redis_create(&rd, "redis://h", &o, pool));
}
END_TEST

/* redis+unix:// with a password and a database. */
START_TEST(redis_unix_socket)
{
    server_t r;
    char path[64], *argv[16];
    bff_store_t *st;
    bff_store_opts_t o = test_opts(500);
    const char *v;
    apr_size_t len;
    int i, n = 0;

    snprintf(path, sizeof(path), "/tmp/bff-check-cache-%d.sock", (int)getpid());
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--unixsocket";
    argv[n++] = path;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = "/tmp";
    argv[n++] = "--requirepass";
    argv[n++] = "pw";
    argv[n] = NULL;
    r.port = 0;
    r.pid = spawn(argv);
    for (i = 0; i < 500 && access(path, F_OK); i++) {
        sleep_ms(10);
    }
    ck_assert_msg(i < 500, "redis-server did not create %s", path);
    ASSERT_OK(bff_store_redis_create(&st, apr_psprintf(pool,
        "redis+unix://:pw@%s?db=5", path), &o, pool));
    for (i = 0; i < 100; i++) {
        if (bff_store_set(st, "t:u", "unix", 4, 10000, NULL, pool)
            == BFF_STORE_OK) {
            break;
        }
        sleep_ms(10);       /* the socket file appears before listen() */
    }
    ASSERT_RC(bff_store_get(st, &v, &len, "t:u", pool), BFF_STORE_OK);
    ck_assert(len == 4 && !memcmp(v, "unix", 4));
    server_stop(&r);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:u", pool), BFF_STORE_ERROR);
    unlink(path);
}
END_TEST

/* A Redis that stops answering (SIGSTOP): the command timeout holds, the
 * store goes down, and comes back once Redis runs again. */
START_TEST(redis_stalled)
{
    server_t r;
    bff_store_t *st;
    const char *v;
    apr_size_t len;
    apr_time_t t0;
    long elapsed;
    int i, ok = 0;

    redis_start(&r, 0, NULL);
    st = redis_store(&r, NULL, 0, 200);
    ASSERT_RC(bff_store_set(st, "t:a", "1", 1, 60000, NULL, pool),
              BFF_STORE_OK);
    kill(r.pid, SIGSTOP);
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    elapsed = ms_since(t0);
    ck_assert_msg(elapsed >= 190 && elapsed < 2 * 200,
                  "stalled get took %ldms", elapsed);
    ck_assert_msg(strstr(health_error(st), "timeout"), "%s",
                  health_error(st));
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    ck_assert_int_lt(ms_since(t0), 20);
    kill(r.pid, SIGCONT);
    for (i = 0; i < 300 && !ok; i++) {
        ok = bff_store_get(st, &v, &len, "t:a", pool) == BFF_STORE_OK;
        if (!ok) {
            sleep_ms(10);
        }
    }
    ck_assert_msg(ok, "no recovery: %s", health_error(st));
    server_stop(&r);
}
END_TEST

static int listener(int *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    loopback(&a, 0);
    ck_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    ck_assert(listen(fd, 64) == 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

/* The kernel completes the handshake for a listening socket nobody
 * accepts on: connects succeed, nothing ever answers. */
START_TEST(redis_black_hole)
{
    int port, fd = listener(&port);
    bff_store_opts_t o = test_opts(100);
    bff_store_t *st;
    const char *v;
    apr_size_t len;
    apr_time_t t0;
    long elapsed;

    ASSERT_OK(bff_store_redis_create(&st, apr_psprintf(pool,
        "redis://127.0.0.1:%d", port), &o, pool));
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    elapsed = ms_since(t0);
    /* connect (100) + command (100) is the most it may take */
    ck_assert_msg(elapsed >= 90 && elapsed < 2 * 200,
                  "black hole took %ldms", elapsed);
    ck_assert_msg(strstr(health_error(st), "timeout"), "%s",
                  health_error(st));
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    ck_assert_int_lt(ms_since(t0), 20);
    close(fd);
}
END_TEST

/* A server that completes the handshake (answers PING) and then never
 * answers again: the command timeout, not the connect timeout, holds. */
typedef struct {
    int lfd;
    volatile int stop;
} mute_t;

static void *mute_server(void *data)
{
    mute_t *m = data;
    int c = accept(m->lfd, NULL, NULL);
    char buf[4096];
    ssize_t n;

    if (c < 0) {
        return NULL;
    }
    while (!m->stop && (n = read(c, buf, sizeof(buf))) > 0) {
        if (memmem(buf, (size_t)n, "PING", 4)) {
            if (write(c, "+PONG\r\n", 7) != 7) {
                break;
            }
        }
    }
    close(c);
    return NULL;
}

START_TEST(redis_mute_after_handshake)
{
    mute_t m;
    pthread_t th;
    int port;
    bff_store_opts_t o = test_opts(150);
    bff_store_t *st;
    const char *v;
    apr_size_t len;
    apr_time_t t0;
    long elapsed;

    m.lfd = listener(&port);
    m.stop = 0;
    pthread_create(&th, NULL, mute_server, &m);
    o.connect_timeout_ms = 1000;
    ASSERT_OK(bff_store_redis_create(&st, apr_psprintf(pool,
        "redis://127.0.0.1:%d", port), &o, pool));
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    elapsed = ms_since(t0);
    ck_assert_msg(elapsed >= 140 && elapsed < 2 * 150,
                  "mute server took %ldms", elapsed);
    ck_assert_msg(strstr(health_error(st), "timeout waiting for the reply"),
                  "%s", health_error(st));
    m.stop = 1;
    shutdown(m.lfd, SHUT_RDWR);
    close(m.lfd);
    pthread_join(th, NULL);
}
END_TEST

/* A server that answers every command, one byte every 20 ms: a reply of
 * 26 bytes takes over 500 ms. Each read() gets a byte well within the
 * timeout; the deadline of the whole call must still hold. */
static void *trickle_server(void *data)
{
    mute_t *m = data;
    int c = accept(m->lfd, NULL, NULL);
    static const char reply[] = "$16\r\nabcdefghijklmnop\r\n";
    char buf[4096];
    ssize_t n;
    size_t i;

    if (c < 0) {
        return NULL;
    }
    while (!m->stop && (n = read(c, buf, sizeof(buf))) > 0) {
        if (memmem(buf, (size_t)n, "PING", 4)) {
            if (write(c, "+PONG\r\n", 7) != 7) {
                break;
            }
            continue;
        }
        for (i = 0; i < sizeof(reply) - 1 && !m->stop; i++) {
            if (write(c, reply + i, 1) != 1) {
                break;
            }
            sleep_ms(20);
        }
    }
    close(c);
    return NULL;
}

START_TEST(redis_layer_trickle)
{
    mute_t m;
    pthread_t th;
    int port;
    bff_redis_opts_t o;
    bff_redis_t *rd;
    bff_redis_cmd_t c;
    redisReply *rep;
    const char *err;
    apr_time_t t0;
    long elapsed;

    m.lfd = listener(&port);
    m.stop = 0;
    pthread_create(&th, NULL, trickle_server, &m);
    bff_redis_opts_default(&o);
    o.connect_timeout_ms = 1000;
    o.command_timeout_ms = 150;
    ASSERT_OK(bff_redis_create(&rd, apr_psprintf(pool,
        "redis://127.0.0.1:%d", port), &o, pool));
    c = bff_redis_cmd(pool, 2, "GET", "k");
    t0 = apr_time_now();
    err = bff_redis_exec(&rep, rd, &c, 1, pool);
    elapsed = ms_since(t0);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "timeout"), "%s", err);
    ck_assert_msg(elapsed >= 140 && elapsed < 2 * 150,
                  "trickling server took %ldms", elapsed);
    m.stop = 1;
    shutdown(m.lfd, SHUT_RDWR);
    close(m.lfd);
    pthread_join(th, NULL);
}
END_TEST

/* --------------------------------------------------------- memcached -- */

static const char *mc_url(const server_t *a, const server_t *b)
{
    return b ? apr_psprintf(pool, "memcache://127.0.0.1:%d,127.0.0.1:%d",
                            a->port, b->port)
             : apr_psprintf(pool, "memcache://127.0.0.1:%d", a->port);
}

START_TEST(mc_basic)
{
    basic_ops(mc_store(mc_url(&mc_a, &mc_b), 500));
}
END_TEST

START_TEST(mc_tags)
{
    tag_ops(mc_store(mc_url(&mc_a, &mc_b), 500), 0);
}
END_TEST

START_TEST(mc_unsupported_and_keys)
{
    bff_store_t *st = mc_store(mc_url(&mc_a, NULL), 500);
    volatile apr_uint32_t stop = 0;
    const char *v;
    apr_size_t len;
    char longkey[300];

    ASSERT_RC(bff_store_publish(st, "c", "m", 1, pool),
              BFF_STORE_UNSUPPORTED);
    ASSERT_RC(bff_store_subscribe(st, "c", on_msg, NULL, &stop, pool),
              BFF_STORE_UNSUPPORTED);
    /* keys memcached cannot take are refused before the wire */
    ASSERT_RC(bff_store_get(st, &v, &len, "a key", pool), BFF_STORE_ERROR);
    ASSERT_RC(bff_store_set(st, "a\r\nflush_all", "x", 1, 1000, NULL, pool),
              BFF_STORE_ERROR);
    memset(longkey, 'k', sizeof(longkey));
    longkey[sizeof(longkey) - 1] = '\0';
    ASSERT_RC(bff_store_get(st, &v, &len, longkey, pool), BFF_STORE_ERROR);
    /* a value somebody else wrote under our key is never served */
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        char buf[64];
        loopback(&a, mc_a.port);
        ck_assert(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
        ck_assert(write(fd, "set t:foreign 0 60 3\r\nabc\r\n", 27) == 27);
        ck_assert(read(fd, buf, sizeof(buf)) > 0);
        close(fd);
    }
    ASSERT_RC(bff_store_get(st, &v, &len, "t:foreign", pool), BFF_STORE_MISS);
}
END_TEST

START_TEST(mc_ttl)
{
    bff_store_t *st = mc_store(mc_url(&mc_a, &mc_b), 500);
    const char *v, *tok, *tok2;
    apr_size_t len;

    /* one-second resolution: 1 ms is rounded up to 1 s */
    ASSERT_RC(bff_store_set(st, "t:ttl", "x", 1, 1, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:ttl", pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_lock(st, &tok, "t:ttl", 1000, pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_lock(st, &tok2, "t:ttl", 1000, pool), BFF_STORE_HELD);
    sleep_ms(2500);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:ttl", pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_lock(st, &tok2, "t:ttl", 10000, pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_unlock(st, "t:ttl", tok, pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_unlock(st, "t:ttl", tok2, pool), BFF_STORE_OK);
}
END_TEST

/* Keys spread over the servers as apr_memcache spreads them: a store on
 * one server alone sees exactly the keys homed there. */
START_TEST(mc_sharding)
{
    bff_store_t *both = mc_store(mc_url(&mc_a, &mc_b), 500);
    bff_store_t *a = mc_store(mc_url(&mc_a, NULL), 500);
    bff_store_t *b = mc_store(mc_url(&mc_b, NULL), 500);
    int i, na = 0, nb = 0;

    for (i = 0; i < 200; i++) {
        const char *k = apr_psprintf(pool, "t:shard:%d", i), *v;
        apr_size_t len;
        ASSERT_RC(bff_store_set(both, k, "v", 1, 60000, NULL, pool),
                  BFF_STORE_OK);
        na += bff_store_get(a, &v, &len, k, pool) == BFF_STORE_OK;
        nb += bff_store_get(b, &v, &len, k, pool) == BFF_STORE_OK;
    }
    ck_assert_int_eq(na + nb, 200);
    ck_assert_msg(na > 40 && nb > 40, "unbalanced: %d / %d", na, nb);
}
END_TEST

START_TEST(mc_threads)
{
    run_workers(mc_store(mc_url(&mc_a, &mc_b), 2000), 8);
}
END_TEST

START_TEST(mc_limits)
{
    bff_store_opts_t o = test_opts(500);
    bff_store_t *st;
    bff_store_health_t h;
    const char *v;
    apr_size_t len;
    char *big = apr_palloc(pool, 2 * 1024 * 1024);

    o.max_value = 4096;
    ASSERT_OK(bff_store_memcache_create(&st, mc_url(&mc_a, NULL), &o, pool));
    memset(big, 'x', 2 * 1024 * 1024);
    ASSERT_RC(bff_store_set(st, "t:big", big, 65536, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:big", pool), BFF_STORE_ERROR);
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert_msg(strstr(h.last_error, "over the limit"), "%s", h.last_error);
    /* memcached's own item limit (1 MiB): an error reply, still up */
    ASSERT_RC(bff_store_set(st, "t:huge", big, 2 * 1024 * 1024, 10000, NULL,
                            pool), BFF_STORE_ERROR);
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ck_assert_msg(strstr(h.last_error, "SERVER_ERROR"), "%s", h.last_error);
    ASSERT_RC(bff_store_set(st, "t:small", "s", 1, 10000, NULL, pool),
              BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:small", pool), BFF_STORE_OK);
}
END_TEST

static int mc_home(const char *key, int n)
{
    apr_uint32_t h = apr_memcache_hash_default(NULL, key, strlen(key));

    return (int)((h ? h : 1) % (apr_uint32_t)n);
}

/* One of two servers dies: its keys fail over to the other after one
 * error, tag counters do not, and the server is used again once back. */
START_TEST(mc_server_down)
{
    server_t a, b;
    bff_store_t *st;
    bff_store_health_t h;
    const char *v, *kb = NULL, *tb = NULL;
    apr_size_t len;
    apr_time_t t0;
    long n;
    int i, ok = 0;

    memcached_start(&a, 0);
    memcached_start(&b, 0);
    st = mc_store(mc_url(&a, &b), 200);
    /* a key and a tag whose home is b (index 1), as apr_memcache hashes */
    for (i = 0; i < 100 && (!kb || !tb); i++) {
        const char *k = apr_psprintf(pool, "t:k%d", i);
        const char *t = apr_psprintf(pool, "tag%d", i);
        const char *tk = bff_cache_tag_key("t:", t, pool);
        if (!kb && mc_home(k, 2) == 1) {
            kb = k;
        }
        if (!tb && mc_home(tk, 2) == 1) {
            tb = t;
        }
    }
    ck_assert_ptr_nonnull(kb);
    ck_assert_ptr_nonnull(tb);
    ASSERT_RC(bff_store_set(st, kb, "v", 1, 60000, NULL, pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, kb, pool), BFF_STORE_OK);

    server_kill9(&b);
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, kb, pool), BFF_STORE_ERROR);
    ck_assert_int_lt(ms_since(t0), 2 * 200);
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 0);
    ck_assert_int_eq(h.servers, 2);
    ck_assert_int_eq(h.servers_down, 1);
    /* failover: b's keys now go to a (an empty copy there) */
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, kb, pool), BFF_STORE_MISS);
    ASSERT_RC(bff_store_set(st, kb, "w", 1, 60000, NULL, pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, kb, pool), BFF_STORE_OK);
    /* no call waited for the 200 ms timeout (on a loaded machine three
     * quick exchanges may take tens of milliseconds) */
    ck_assert_int_lt(ms_since(t0), 200);
    /* tag counters homed on b never move */
    ASSERT_RC(bff_store_purge_tag(st, &n, tb, pool), BFF_STORE_ERROR);
    ASSERT_RC(bff_store_set(st, "t:x", "x", 1, 60000, tags_of(tb, NULL),
                            pool), BFF_STORE_ERROR);

    memcached_start(&b, b.port);
    for (i = 0; i < 300 && !ok; i++) {
        ok = bff_store_purge_tag(st, &n, tb, pool) == BFF_STORE_OK;
        if (!ok) {
            sleep_ms(10);
        }
    }
    ck_assert_msg(ok, "no recovery: %s", health_error(st));
    bff_store_health(st, &h, pool);
    ck_assert_int_eq(h.up, 1);
    ASSERT_RC(bff_store_set(st, "t:x", "x", 1, 60000, tags_of(tb, NULL),
                            pool), BFF_STORE_OK);
    ASSERT_RC(bff_store_get(st, &v, &len, "t:x", pool), BFF_STORE_OK);
    server_stop(&a);
    server_stop(&b);
}
END_TEST

START_TEST(mc_black_hole)
{
    int port, fd = listener(&port);
    bff_store_t *st = mc_store(apr_psprintf(pool, "memcache://127.0.0.1:%d",
                                            port), 100);
    const char *v;
    apr_size_t len;
    apr_time_t t0;
    long elapsed;

    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    elapsed = ms_since(t0);
    ck_assert_msg(elapsed >= 90 && elapsed < 2 * 100,
                  "black hole took %ldms", elapsed);
    ck_assert_msg(strstr(health_error(st), "timeout"), "%s",
                  health_error(st));
    t0 = apr_time_now();
    ASSERT_RC(bff_store_get(st, &v, &len, "t:a", pool), BFF_STORE_ERROR);
    ck_assert_int_lt(ms_since(t0), 20);
    close(fd);
}
END_TEST

/* The bytes come from a buffer of the process: draws that cross a refill
 * and draws larger than the buffer still differ from each other. */
START_TEST(random_bytes_refill)
{
    static unsigned char big[5000], small[300];
    unsigned char prev[16], cur[16];
    int i;

    bff_random_bytes(prev, sizeof(prev));
    /* 3 x 300 direct draws, and enough 16-byte takes to refill the buffer
     * more than once */
    for (i = 0; i < 3; i++) {
        bff_random_bytes(small, sizeof(small));
    }
    for (i = 0; i < 600; i++) {
        bff_random_bytes(cur, sizeof(cur));
        ck_assert(memcmp(prev, cur, sizeof(cur)) != 0);
        memcpy(prev, cur, sizeof(cur));
    }
    bff_random_bytes(big, sizeof(big));
    ck_assert(memcmp(big, big + 2500, 16) != 0);
}
END_TEST

/* After a fork the child does not hand out what the parent drew before
 * it: the next bytes of parent and child differ. */
START_TEST(random_bytes_fork)
{
    unsigned char warm[16], mine[32], theirs[32];
    int fds[2], status;
    pid_t pid;
    ssize_t got = 0;

    bff_random_bytes(warm, sizeof(warm));     /* the buffer is filled */
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        unsigned char out[32];
        bff_random_bytes(out, sizeof(out));
        _exit(write(fds[1], out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 1);
    }
    close(fds[1]);
    bff_random_bytes(mine, sizeof(mine));
    while (got < (ssize_t)sizeof(theirs)) {
        ssize_t n = read(fds[0], theirs + got, sizeof(theirs) - (size_t)got);
        if (n <= 0) {
            break;
        }
        got += n;
    }
    close(fds[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(got, sizeof(theirs));
    ck_assert(memcmp(mine, theirs, sizeof(mine)) != 0);
}
END_TEST

#define RND_THREADS 4
#define RND_TAKES 3000

static void *rnd_worker(void *arg)
{
    unsigned char (*out)[16] = arg;
    int i;

    for (i = 0; i < RND_TAKES; i++) {
        bff_random_bytes(out[i], 16);
    }
    return NULL;
}

static int cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Threads taking at once never get the same bytes. */
START_TEST(random_bytes_threads)
{
    static unsigned char got[RND_THREADS * RND_TAKES][16];
    pthread_t th[RND_THREADS];
    int i;

    for (i = 0; i < RND_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, rnd_worker,
                                        got + i * RND_TAKES), 0);
    }
    for (i = 0; i < RND_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    qsort(got, RND_THREADS * RND_TAKES, 16, cmp16);
    for (i = 1; i < RND_THREADS * RND_TAKES; i++) {
        ck_assert(memcmp(got[i - 1], got[i], 16) != 0);
    }
}
END_TEST

/* ------------------------------------------------------------- suites -- */

static Suite *core_suite(void)
{
    Suite *s = suite_create("cache core");
    TCase *tc;

    tc = tcase_create("sha256");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sha256_vectors);
    tcase_add_test(tc, sha256_boundaries);
    tcase_add_test(tc, sha256_million_a);
    tcase_add_test(tc, random_bytes);
    tcase_add_test(tc, random_bytes_refill);
    tcase_add_test(tc, random_bytes_fork);
    tcase_add_test(tc, random_bytes_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, key_shape);
    tcase_add_test(tc, key_prefix_limits);
    tcase_add_test(tc, key_endpoint_and_params);
    tcase_add_test(tc, key_query);
    tcase_add_test(tc, key_fields);
    tcase_add_test(tc, key_vary);
    tcase_add_test(tc, key_tags);
    tcase_add_test(tc, key_context);
    tcase_add_test(tc, no_store_headers);
    tcase_add_test(tc, header_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("entries");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, entry_roundtrip);
    tcase_add_test(tc, entry_encode_rejects);
    tcase_add_test(tc, entry_decode_rejects);
    tcase_add_test(tc, entry_decode_mutations);
    tcase_add_test(tc, entry_freshness);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("etag");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, etag_value);
    tcase_add_test(tc, etag_if_none_match);
    suite_add_tcase(s, tc);

    tc = tcase_create("urls and gate");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, url_redis_valid);
    tcase_add_test(tc, url_redis_invalid);
    tcase_add_test(tc, url_memcache);
    tcase_add_test(tc, gate_backoff);
    tcase_add_test(tc, store_misc);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *redis_suite(void)
{
    Suite *s = suite_create("redis store");
    TCase *tc;

    tc = tcase_create("redis");
    tcase_add_unchecked_fixture(tc, redis_fixture_up, redis_fixture_down);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, redis_basic);
    tcase_add_test(tc, redis_ttl);
    tcase_add_test(tc, redis_tags);
    tcase_add_test(tc, redis_auth_db);
    tcase_add_test(tc, redis_limits);
    tcase_add_test(tc, redis_threads);
    tcase_add_test(tc, redis_pubsub);
    tcase_add_test(tc, redis_xadd);
    tcase_add_test(tc, redis_layer_auth_refused);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("redis failures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, redis_killed_and_restarted);
    tcase_add_test(tc, redis_layer_idle_closed);
    tcase_add_test(tc, redis_stalled);
    tcase_add_test(tc, redis_unix_socket);
    tcase_add_test(tc, redis_black_hole);
    tcase_add_test(tc, redis_mute_after_handshake);
    tcase_add_test(tc, redis_layer_trickle);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *memcache_suite(void)
{
    Suite *s = suite_create("memcache store");
    TCase *tc;

    tc = tcase_create("memcached");
    tcase_add_unchecked_fixture(tc, mc_fixture_up, mc_fixture_down);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, mc_basic);
    tcase_add_test(tc, mc_tags);
    tcase_add_test(tc, mc_unsupported_and_keys);
    tcase_add_test(tc, mc_ttl);
    tcase_add_test(tc, mc_sharding);
    tcase_add_test(tc, mc_threads);
    tcase_add_test(tc, mc_limits);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("memcached failures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, mc_server_down);
    tcase_add_test(tc, mc_black_hole);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    /* as httpd does: a peer that went away must not kill the process */
    signal(SIGPIPE, SIG_IGN);
    apr_initialize();
    sr = srunner_create(core_suite());
    srunner_add_suite(sr, redis_suite());
    srunner_add_suite(sr, memcache_suite());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
