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

/* OpenSSL 3 gives each thread DRBGs of its own, so RAND_bytes takes no
 * process-wide lock (httpd's ap_random_insecure_bytes serialises every
 * thread of a child on one mutex around a SHA-256 of its own). Should
 * both OpenSSL and the OS's source fail, the bytes are still unique in
 * the process: a counter, the time and the thread's stack address. */
void bff_random_bytes(unsigned char *buf, apr_size_t n)
{
    static unsigned long counter;
    unsigned long k;
    apr_time_t t;
    apr_size_t i;

    if (n == 0 || n > (apr_size_t)INT_MAX) {
        return;
    }
    if (RAND_bytes(buf, (int)n) == 1
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
