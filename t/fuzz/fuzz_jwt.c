/*
 * libFuzzer target for the access phase parsers that see untrusted bytes:
 *
 *   data[0] % 4 == 0  the bytes are a token: bff_jwt_verify against an
 *                     HS256+RS256 verifier and a JWKS verifier, with and
 *                     without the cache (pre-checks, header parsing, kid
 *                     lookup, strict base64url);
 *   data[0] % 4 == 1  the bytes are an API keys file: parse, then look up
 *                     a key taken from the input; the same bytes as a
 *                     JWKS fetched by URL (a verifier from the text), an
 *                     OpenID configuration (its jwks_uri) and a
 *                     Cache-Control value;
 *   data[0] % 4 == 2  the bytes are "header JSON \xff payload JSON": they are
 *                     encoded and correctly signed with HS256, so the
 *                     fuzzer reaches libjwt and every claim check;
 *   data[0] % 4 == 3  the bytes are a claims object for the claim helpers.
 *
 * Keys are generated once, in a temporary directory removed at exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "bff_core.h"
#include "bff_jwt.h"
#include "bff_apikey.h"
#include "bff_jwks.h"

#define NOW APR_INT64_C(1700000000)

static const char secret[] =
    "fuzz-secret-fuzz-secret-fuzz-secret-fuzz-secret-fuzz-secret-6464";

static apr_pool_t *gp;
static bff_jwt_verifier_t *v_files, *v_jwks;
static bff_jwt_cache_t *cache;
static char dir[64];

static void cleanup(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_jwt: could not remove %s\n", dir);
    }
    /* APR's allocator may mmap its blocks, which LeakSanitizer does not
     * scan: run the pool cleanups (cache entries, JWKS document) before
     * its exit-time check, or their malloc'd memory looks leaked. */
    apr_pool_destroy(gp);
    apr_terminate();
}

static const char *put(const char *name, const char *data, size_t len)
{
    const char *path = apr_pstrcat(gp, dir, "/", name, NULL);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
        abort();
    }
    return path;
}

static char *b64u(const unsigned char *in, size_t len, apr_pool_t *p)
{
    char *out = apr_palloc(p, 4 * len / 3 + 8);
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len), i, j = 0;

    for (i = 0; i < n && out[i] != '='; i++) {
        out[j++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[j] = '\0';
    return out;
}

static void setup(void)
{
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    char *pem;
    long n;
    bff_jwt_conf_t c;
    const char *err, *pub, *jwks;

    apr_initialize();
    apr_pool_create(&gp, NULL);
    snprintf(dir, sizeof(dir), "/tmp/fuzz-jwt-XXXXXX");
    if (!mkdtemp(dir) || !pk || !b || !PEM_write_bio_PUBKEY(b, pk)) {
        abort();
    }
    atexit(cleanup);
    n = BIO_get_mem_data(b, &pem);
    pub = put("rsa.pub", pem, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(pk);

    memset(&c, 0, sizeof(c));
    c.algs = BFF_JWT_HS256 | BFF_JWT_RS256;
    c.secret_file = put("secret", secret, sizeof(secret) - 1);
    c.pubkey_file = pub;
    c.leeway = 5;
    c.audience = "api";
    err = bff_jwt_verifier_create(&v_files, &c, gp);
    if (err) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    jwks = apr_psprintf(gp, "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k1\","
                        "\"k\":\"%s\"},{\"kty\":\"oct\",\"kid\":\"k2\","
                        "\"alg\":\"HS384\",\"k\":\"%s\"}]}",
                        b64u((const unsigned char *)secret,
                             sizeof(secret) - 1, gp),
                        b64u((const unsigned char *)secret,
                             sizeof(secret) - 1, gp));
    memset(&c, 0, sizeof(c));
    c.algs = BFF_JWT_HS256 | BFF_JWT_HS384;
    c.jwks_file = put("jwks.json", jwks, strlen(jwks));
    c.exp_optional = 1;
    err = bff_jwt_verifier_create(&v_jwks, &c, gp);
    if (err || bff_jwt_cache_create(&cache, 64, 3600, gp)) {
        fprintf(stderr, "%s\n", err ? err : "cache");
        abort();
    }
}

static void verify_all(const char *tok, apr_pool_t *p)
{
    json_t *claims;
    const char *why;

    bff_jwt_verify(&claims, &why, v_files, NULL, tok, NOW, p);
    bff_jwt_verify(&claims, &why, v_jwks, NULL, tok, NOW, p);
    if (bff_jwt_verify(&claims, &why, v_jwks, cache, tok, NOW, p)
        == BFF_JWT_OK) {
        bff_jwt_scopes(claims, p);
        bff_jwt_claim_header(claims, "sub", ",", p);
    }
}

static void fuzz_signed(const uint8_t *d, size_t n, apr_pool_t *p)
{
    const uint8_t *sep = memchr(d, 0xff, n);
    const char *input, *tok;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;

    if (!sep) {
        return;
    }
    input = apr_pstrcat(p, b64u(d, (size_t)(sep - d), p), ".",
                        b64u(sep + 1, n - (size_t)(sep + 1 - d), p), NULL);
    HMAC(EVP_sha256(), secret, (int)sizeof(secret) - 1,
         (const unsigned char *)input, strlen(input), mac, &mlen);
    tok = apr_pstrcat(p, input, ".", b64u(mac, mlen, p), NULL);
    verify_all(tok, p);
}

static void fuzz_claims(const uint8_t *d, size_t n, apr_pool_t *p)
{
    json_t *c = bff_json_pool_own(json_loadb((const char *)d, n, 0, NULL), p);

    if (!c) {
        return;
    }
    bff_jwt_scopes(c, p);
    bff_jwt_has_scope(c, "a", p);
    bff_jwt_claim_strings(c, "realm_access.roles", p);
    bff_jwt_claim_header(c, "a.b", ", ", p);
    bff_jwt_claim_header(c, "roles", ",", p);
}

static void fuzz_keys(const uint8_t *d, size_t n, apr_pool_t *p)
{
    bff_apikeys_t *k;
    const uint8_t *nl = memchr(d, '\n', n);

    if (!bff_apikeys_parse(&k, (const char *)d, n, "fuzz", p) && nl) {
        bff_apikeys_lookup(k, (const char *)d, (size_t)(nl - d));
    }
}

/* What a JWKS provider sends: the key set, the discovery document, the
 * Cache-Control header. */
static void fuzz_provider(const uint8_t *d, size_t n, apr_pool_t *p)
{
    bff_jwt_conf_t c;
    bff_jwt_verifier_t *v;
    const char *uri;

    memset(&c, 0, sizeof(c));
    c.algs = BFF_JWT_HS_ALL | BFF_JWT_RS_ALL | BFF_JWT_ES_ALL;
    c.jwks_text = (const char *)d;
    c.jwks_len = n;
    if (!bff_jwt_verifier_create(&v, &c, p)) {
        bff_jwt_verifier_nkeys(v);
    }
    if (!bff_jwks_discovery(&uri, (const char *)d, n, p)) {
        bff_jwks_is_discovery(uri);
    }
    bff_jwks_max_age(apr_pstrmemdup(p, (const char *)d, n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;

    if (!gp) {
        setup();
    }
    if (size < 1) {
        return 0;
    }
    apr_pool_create(&p, gp);
    switch (data[0] % 4) {
    case 0:
        verify_all(apr_pstrmemdup(p, (const char *)data + 1, size - 1), p);
        break;
    case 1:
        fuzz_keys(data + 1, size - 1, p);
        fuzz_provider(data + 1, size - 1, p);
        break;
    case 2:
        fuzz_signed(data + 1, size - 1, p);
        break;
    default:
        fuzz_claims(data + 1, size - 1, p);
        break;
    }
    apr_pool_destroy(p);
    return 0;
}
