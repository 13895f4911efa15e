/*
 * mod_bff: SHA-256 through OpenSSL's EVP interface, and random bytes from
 * OpenSSL's DRBG (see bff_cache.h).
 *
 * OpenSSL 3 looks EVP_sha256() up in its provider store, under a lock, on
 * every EVP_DigestInit_ex: the algorithm is fetched once per process
 * instead (EVP_MD_fetch), which also lets OpenSSL use the CPU's SHA
 * instructions where it has them.
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <apr_general.h>
#include <apr_time.h>

#include "bff_cache.h"

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_fetched;

static void md_fetch(void)
{
    md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
    pthread_once(&md_once, md_fetch);
    return md_fetched ? md_fetched : EVP_sha256();
}

/* A digest that cannot be computed (no memory in OpenSSL) must never
 * look like a valid one: abort, as an allocation failure in APR does. */
static void must(int ok)
{
    if (!ok) {
        abort();
    }
}

void bff_sha256_init(bff_sha256_t *c)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    must(ctx != NULL && EVP_DigestInit_ex(ctx, sha256_md(), NULL));
    c->ctx = ctx;
}

void bff_sha256_update(bff_sha256_t *c, const void *data, apr_size_t n)
{
    if (n) {
        must(EVP_DigestUpdate(c->ctx, data, n));
    }
}

void bff_sha256_final(unsigned char out[32], bff_sha256_t *c)
{
    unsigned int len = 0;

    must(EVP_DigestFinal_ex(c->ctx, out, &len) && len == 32);
    EVP_MD_CTX_free(c->ctx);
    c->ctx = NULL;
}

void bff_sha256(unsigned char out[32], const void *data, apr_size_t n)
{
    unsigned int len = 0;

    must(EVP_Digest(n ? data : "", n, out, &len, sha256_md(), NULL)
         && len == 32);
}

/* Random bytes are drawn from OpenSSL's DRBG a block at a time into a
 * buffer of the process, and handed out from there under a mutex. A
 * RAND_bytes call costs about the same whatever its size up to a few
 * KiB (measured on OpenSSL 3.0: 590 ns for 64 bytes, 1.1 us for 4 KiB:
 * the DRBG's reseed check, its per-call AES key schedule and a getpid),
 * and every request takes 40-64 bytes for its ids: one draw per request
 * was ~4% of the gateway's CPU on the miss path. Bytes handed out are
 * wiped from the buffer. At fork the child drops what the parent had
 * drawn (pthread_atfork), so two processes never hand out the same
 * bytes. Large requests go to RAND_bytes directly. Should both OpenSSL
 * and the OS's source fail, the bytes are still unique in the process: a
 * counter, the time and the thread's stack address. */
#define RND_BLOCK 4096
#define RND_DIRECT 256          /* larger requests are drawn directly */

static struct {
    pthread_mutex_t mu;
    apr_size_t n;               /* bytes not yet taken, at the end of b */
    unsigned char b[RND_BLOCK];
} rnd = { PTHREAD_MUTEX_INITIALIZER, 0, { 0 } };
static pthread_once_t rnd_once = PTHREAD_ONCE_INIT;

static void rnd_prepare(void)
{
    pthread_mutex_lock(&rnd.mu);
}

static void rnd_parent(void)
{
    pthread_mutex_unlock(&rnd.mu);
}

static void rnd_child(void)
{
    memset(rnd.b, 0, sizeof(rnd.b));
    rnd.n = 0;
    pthread_mutex_unlock(&rnd.mu);
}

static void rnd_init(void)
{
    pthread_atfork(rnd_prepare, rnd_parent, rnd_child);
}

/* n bytes (n <= RND_DIRECT) from the buffer, refilled when short;
 * 0 when the DRBG failed. */
static int rnd_take(unsigned char *buf, apr_size_t n)
{
    int ok = 1;

    pthread_once(&rnd_once, rnd_init);
    pthread_mutex_lock(&rnd.mu);
    if (rnd.n < n) {
        ok = RAND_bytes(rnd.b, (int)sizeof(rnd.b)) == 1;
        rnd.n = ok ? sizeof(rnd.b) : 0;
    }
    if (ok) {
        rnd.n -= n;
        memcpy(buf, rnd.b + rnd.n, n);
        memset(rnd.b + rnd.n, 0, n);
    }
    pthread_mutex_unlock(&rnd.mu);
    return ok;
}

void bff_random_bytes(unsigned char *buf, apr_size_t n)
{
    static unsigned long counter;
    unsigned long k;
    apr_time_t t;
    apr_size_t i;

    if (n == 0 || n > (apr_size_t)INT_MAX) {
        return;
    }
    if ((n <= RND_DIRECT ? rnd_take(buf, n) : RAND_bytes(buf, (int)n) == 1)
        || apr_generate_random_bytes(buf, n) == APR_SUCCESS) {
        return;
    }
    k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    t = apr_time_now();
    for (i = 0; i < n; i++) {
        unsigned long long mix = (unsigned long long)k * 0x9e3779b97f4a7c15ULL
                                 ^ (unsigned long long)t
                                 ^ (unsigned long long)(apr_uintptr_t)&k;
        buf[i] = (unsigned char)(mix >> ((i % 8) * 8));
        k += i + 1;
    }
}
