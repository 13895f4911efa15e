/*
 * mod_bff: SHA-256 through OpenSSL's EVP interface (see bff_cache.h).
 *
 * OpenSSL 3 looks EVP_sha256() up in its provider store, under a lock, on
 * every EVP_DigestInit_ex: the algorithm is fetched once per process
 * instead (EVP_MD_fetch), which also lets OpenSSL use the CPU's SHA
 * instructions where it has them.
 */
#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

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
