/*
 * mod_bff: JWT verification (pure core). See bff_jwt.h for the design; the
 * comments here say why each check exists.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <apr_file_io.h>
#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "bff_core.h"
#include "bff_jwt.h"

/* Key files are small; a bound keeps a mistaken path (a log, /dev/zero)
 * from being read whole at startup. */
#define KEY_FILE_MAX   (64 * 1024)
#define JWKS_FILE_MAX  (1024 * 1024)
#define KID_MAX        256
/* JOSE headers and claim sets are shallow; deeper input is refused before
 * jansson recurses into it. */
#define JSON_DEPTH_MAX 16
#define LOG_STR_MAX    64
#define HEADER_MAX     4096

/* ------------------------------------------------------- algorithms -- */

typedef struct {
    unsigned bit;
    const char *name;
    jwt_alg_t jalg;
    int size;   /* HS: hash length (minimum secret); ES: signature length */
} alg_info_t;

static const alg_info_t alg_table[] = {
    { BFF_JWT_HS256, "HS256", JWT_ALG_HS256, 32 },
    { BFF_JWT_HS384, "HS384", JWT_ALG_HS384, 48 },
    { BFF_JWT_HS512, "HS512", JWT_ALG_HS512, 64 },
    { BFF_JWT_RS256, "RS256", JWT_ALG_RS256, 0 },
    { BFF_JWT_RS384, "RS384", JWT_ALG_RS384, 0 },
    { BFF_JWT_RS512, "RS512", JWT_ALG_RS512, 0 },
    { BFF_JWT_ES256, "ES256", JWT_ALG_ES256, 64 },
    { BFF_JWT_ES384, "ES384", JWT_ALG_ES384, 96 },
};
#define N_ALGS (sizeof(alg_table) / sizeof(alg_table[0]))

static const alg_info_t *alg_by_name(const char *name, apr_size_t len)
{
    apr_size_t i;

    /* Exact, case-sensitive (RFC 7518): libjwt's strcasecmp would also
     * take "hs256", and anything libjwt and we disagree on is refused. */
    for (i = 0; i < N_ALGS; i++) {
        if (strlen(alg_table[i].name) == len
            && !memcmp(alg_table[i].name, name, len)) {
            return &alg_table[i];
        }
    }
    return NULL;
}

static const alg_info_t *alg_by_bit(unsigned bit)
{
    apr_size_t i;

    for (i = 0; i < N_ALGS; i++) {
        if (alg_table[i].bit == bit) {
            return &alg_table[i];
        }
    }
    return NULL;
}

const char *bff_jwt_alg_name(unsigned alg)
{
    const alg_info_t *a = alg_by_bit(alg);
    return a ? a->name : NULL;
}

static const char *alg_list(unsigned mask, apr_pool_t *p)
{
    const char *s = NULL;
    apr_size_t i;

    for (i = 0; i < N_ALGS; i++) {
        if (mask & alg_table[i].bit) {
            s = s ? apr_pstrcat(p, s, " ", alg_table[i].name, NULL)
                  : alg_table[i].name;
        }
    }
    return s ? s : "none";
}

const char *bff_jwt_algs_parse(unsigned *mask, const char *list,
                               apr_pool_t *p)
{
    const char *s = list ? list : "";
    unsigned m = 0;

    while (*s) {
        apr_size_t n;
        const alg_info_t *a;

        if (*s == ' ' || *s == '\t' || *s == ',') {
            s++;
            continue;
        }
        n = strcspn(s, " \t,");
        a = alg_by_name(s, n);
        if (!a) {
            return apr_psprintf(p, "JWT algorithm '%.*s' is not supported "
                                "(supported: %s)", (int)n, s,
                                alg_list(~0u, p));
        }
        m |= a->bit;
        s += n;
    }
    if (!m) {
        return "no JWT algorithm given";
    }
    *mask = m;
    return NULL;
}

/* ------------------------------------------------------------ files -- */

const char *bff_file_read(char **buf, apr_size_t *len, const char *what,
                          const char *path, apr_size_t max, apr_pool_t *p)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_status_t rv;
    apr_size_t got = 0;
    char *b, err[128];

    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY,
                       APR_OS_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "%s %s: cannot open: %s", what, path,
                            apr_strerror(rv, err, sizeof(err)));
    }
    rv = apr_file_info_get(&fi, APR_FINFO_TYPE | APR_FINFO_SIZE, f);
    if (rv != APR_SUCCESS || fi.filetype != APR_REG) {
        apr_file_close(f);
        return apr_psprintf(p, "%s %s: not a regular file", what, path);
    }
    if (fi.size < 0 || (apr_uint64_t)fi.size > max) {
        apr_file_close(f);
        return apr_psprintf(p, "%s %s: larger than %" APR_SIZE_T_FMT
                            " bytes", what, path, max);
    }
    /* One byte more than announced catches a file growing under us. */
    b = apr_palloc(p, (apr_size_t)fi.size + 2);
    rv = apr_file_read_full(f, b, (apr_size_t)fi.size + 1, &got);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        return apr_psprintf(p, "%s %s: cannot read: %s", what, path,
                            apr_strerror(rv, err, sizeof(err)));
    }
    if (got > (apr_size_t)fi.size) {
        return apr_psprintf(p, "%s %s: changed while being read", what, path);
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    return NULL;
}

/* -------------------------------------------------------- base64url -- */

static int b64u_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Strict base64url (RFC 7515 section 2): URL alphabet only, no padding
 * unless allow_pad (lenient for JWKS files an admin may have pasted), and
 * zero unused bits, so a given byte string has exactly one encoding. */
static int b64u_decode(unsigned char **out, apr_size_t *outlen,
                       const char *in, apr_size_t len, int allow_pad,
                       apr_pool_t *p)
{
    unsigned char *o;
    apr_size_t i, n = 0;
    apr_uint32_t acc = 0;
    int bits = 0;

    if (allow_pad) {
        while (len > 0 && in[len - 1] == '=') {
            len--;
        }
    }
    if (len % 4 == 1) {
        return 0;
    }
    o = apr_palloc(p, len * 3 / 4 + 1);
    for (i = 0; i < len; i++) {
        int v = b64u_val((unsigned char)in[i]);
        if (v < 0) {
            return 0;
        }
        acc = (acc << 6) | (apr_uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1))) {
        return 0;
    }
    o[n] = '\0';
    *out = o;
    *outlen = n;
    return 1;
}

/* ------------------------------------------------------------ helpers -- */

/* Client-controlled text for a log line: bounded, printable ASCII. */
static const char *log_str(const char *s, apr_size_t len, apr_pool_t *p)
{
    apr_size_t i, n = len > LOG_STR_MAX ? LOG_STR_MAX : len;
    char *o = apr_palloc(p, n + 4);

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        o[i] = (c >= 0x20 && c < 0x7f && c != '\\') ? (char)c : '?';
    }
    if (n < len) {
        memcpy(o + n, "...", 3);
        n += 3;
    }
    o[n] = '\0';
    return o;
}

static const char *json_log_str(json_t *v, apr_pool_t *p)
{
    return log_str(json_string_value(v), json_string_length(v), p);
}

/* Parses untrusted JSON strictly: bounded depth, no duplicate keys (a
 * parser that keeps the first and one that keeps the last would disagree
 * on "alg"), an object at the top. */
static json_t *parse_object(const unsigned char *buf, apr_size_t len)
{
    json_t *v;

    if (bff_json_depth((const char *)buf, len) > JSON_DEPTH_MAX) {
        return NULL;
    }
    v = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* ---------------------------------------------------------------- keys -- */

typedef struct {
    const char *kid;        /* NULL outside a JWKS */
    unsigned algs;          /* algorithms this key verifies */
    unsigned char *bytes;   /* HS: the secret; RS/ES: SPKI PEM text */
    int len;
    int sig_len;            /* RS: modulus bytes (the signature length) */
} jwt_key_t;

struct bff_jwt_verifier_t {
    unsigned algs;
    apr_array_header_t *keys;   /* jwt_key_t */
    int jwks;                   /* keys come from a JWKS: kid required */
    apr_hash_t *by_kid;         /* JWKS only: kid -> jwt_key_t * */
    const apr_array_header_t *issuers;
    const char *audience;
    apr_int64_t leeway;
    int exp_optional;
    apr_size_t max_size;
    unsigned char fingerprint[32];
};

static apr_status_t wipe_key(void *data)
{
    jwt_key_t *k = data;
    OPENSSL_cleanse(k->bytes, (size_t)k->len);
    return APR_SUCCESS;
}

static jwt_key_t *key_add(bff_jwt_verifier_t *v, const char *kid,
                          unsigned algs, const unsigned char *bytes,
                          apr_size_t len, apr_pool_t *p)
{
    jwt_key_t *k = apr_array_push(v->keys);

    k->kid = kid;
    k->algs = algs;
    k->bytes = apr_pmemdup(p, bytes, len + 1);
    k->bytes[len] = '\0';
    k->len = (int)len;
    k->sig_len = 0;
    if (algs & BFF_JWT_HS_ALL) {
        apr_pool_cleanup_register(p, k, wipe_key, apr_pool_cleanup_null);
    }
    return k;
}

/* A secret must be at least as long as the hash of every HS algorithm it
 * serves (RFC 7518 section 3.2); shorter ones are brute-forceable. */
static const char *check_secret_len(unsigned algs, apr_size_t len,
                                    const char *where, apr_pool_t *p)
{
    apr_size_t i;

    if (len == 0) {
        return apr_pstrcat(p, where, " is empty", NULL);
    }
    for (i = 0; i < N_ALGS; i++) {
        if ((algs & alg_table[i].bit & BFF_JWT_HS_ALL)
            && len < (apr_size_t)alg_table[i].size) {
            return apr_psprintf(p, "%s: %" APR_SIZE_T_FMT " bytes, %s needs "
                                "at least %d", where, len, alg_table[i].name,
                                alg_table[i].size);
        }
    }
    return NULL;
}

static const char *load_secret(bff_jwt_verifier_t *v, const char *path,
                               apr_pool_t *p)
{
    const char *where = apr_pstrcat(p, "JWT secret file ", path, NULL);
    const char *err;
    char *buf;
    apr_size_t len;

    if (!(v->algs & BFF_JWT_HS_ALL)) {
        return apr_psprintf(p, "%s: a secret is given but no HS algorithm "
                            "is allowed (allowed: %s)", where,
                            alg_list(v->algs, p));
    }
    err = bff_file_read(&buf, &len, "JWT secret file", path, KEY_FILE_MAX, p);
    if (err) {
        return err;
    }
    /* Editors and `echo` add a newline nobody means as part of the secret. */
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r') {
            len--;
        }
    }
    err = check_secret_len(v->algs, len, where, p);
    if (!err) {
        key_add(v, NULL, v->algs & BFF_JWT_HS_ALL,
                (unsigned char *)buf, len, p);
    }
    OPENSSL_cleanse(buf, len);
    return err;
}

/* The algorithms a public key can verify, after the checks that make it
 * acceptable at all; *sig_len is the signature size it produces. */
static const char *pkey_algs(unsigned *algs, int *sig_len,
                             EVP_PKEY *pkey, apr_pool_t *p)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < 2048) {
            return apr_psprintf(p, "RSA key of %d bits, at least 2048 are "
                                "needed", bits);
        }
        *algs = BFF_JWT_RS_ALL;
        *sig_len = (bits + 7) / 8;
        return NULL;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        size_t glen = 0;

        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                            group, sizeof(group), &glen)) {
            return "EC key without a named curve";
        }
        if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256")) {
            *algs = BFF_JWT_ES256;
            *sig_len = 64;
            return NULL;
        }
        if (!strcmp(group, "secp384r1") || !strcmp(group, "P-384")) {
            *algs = BFF_JWT_ES384;
            *sig_len = 96;
            return NULL;
        }
        return apr_psprintf(p, "EC curve %s is not supported (P-256 for "
                            "ES256, P-384 for ES384)", group);
    }
    return apr_psprintf(p, "key type %s is not supported (RSA or EC)",
                        EVP_PKEY_get0_type_name(pkey));
}

/* Canonical SPKI PEM: what libjwt's PEM_read_bio_PUBKEY gets, whatever
 * surrounded the key in the file. */
static const char *pkey_pem(const unsigned char **pem, apr_size_t *len,
                            EVP_PKEY *pkey, apr_pool_t *p)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (!b || !PEM_write_bio_PUBKEY(b, pkey)) {
        BIO_free(b);
        return "cannot encode the key as PEM";
    }
    n = BIO_get_mem_data(b, &data);
    *pem = apr_pmemdup(p, data, (apr_size_t)n);
    *len = (apr_size_t)n;
    BIO_free(b);
    return NULL;
}

/* Adds a public key, or says why it cannot be used. restrict_algs limits
 * the key to some algorithms (a JWK's "alg"); 0 means any it can do. */
static const char *add_pkey(bff_jwt_verifier_t *v, const char *kid,
                            EVP_PKEY *pkey, unsigned restrict_algs,
                            unsigned *usable, apr_pool_t *p)
{
    unsigned algs = 0;
    int sig_len = 0;
    const unsigned char *pem;
    apr_size_t len;
    const char *err;
    jwt_key_t *k;

    if ((err = pkey_algs(&algs, &sig_len, pkey, p))) {
        return err;
    }
    if (restrict_algs) {
        if (!(algs & restrict_algs)) {
            return apr_psprintf(p, "its \"alg\" %s does not fit the key",
                                alg_list(restrict_algs, p));
        }
        algs &= restrict_algs;
    }
    *usable = algs & v->algs;
    if (!*usable) {
        return NULL;
    }
    if ((err = pkey_pem(&pem, &len, pkey, p))) {
        return err;
    }
    k = key_add(v, kid, *usable, pem, len, p);
    k->sig_len = sig_len;
    return NULL;
}

static const char *load_pubkey(bff_jwt_verifier_t *v, const char *path,
                               apr_pool_t *p)
{
    const char *where = apr_pstrcat(p, "JWT public key file ", path, NULL);
    const char *err;
    char *buf;
    apr_size_t len;
    unsigned usable = 0;
    EVP_PKEY *pkey;
    BIO *b;

    if (!(v->algs & (BFF_JWT_RS_ALL | BFF_JWT_ES_ALL))) {
        return apr_psprintf(p, "%s: a public key is given but no RS or ES "
                            "algorithm is allowed (allowed: %s)", where,
                            alg_list(v->algs, p));
    }
    err = bff_file_read(&buf, &len, "JWT public key file", path,
                        KEY_FILE_MAX, p);
    if (err) {
        return err;
    }
    if (len == 0) {
        return apr_pstrcat(p, where, " is empty", NULL);
    }
    /* A private key on a verifier is a key leak waiting to happen (and
     * PEM_read_bio_PUBKEY would only say "no start line"). */
    if (strstr(buf, "PRIVATE KEY-----")) {
        return apr_pstrcat(p, where, " holds a private key; give the "
                           "public key only (openssl pkey -in KEY -pubout)",
                           NULL);
    }
    b = BIO_new_mem_buf(buf, (int)len);
    pkey = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    if (!pkey) {
        if (strstr(buf, "BEGIN CERTIFICATE")) {
            return apr_pstrcat(p, where, ": a certificate, not a public key "
                               "(openssl x509 -in CERT -pubkey -noout)",
                               NULL);
        }
        return apr_pstrcat(p, where, ": no PEM public key found (expected "
                           "-----BEGIN PUBLIC KEY-----)", NULL);
    }
    err = add_pkey(v, NULL, pkey, 0, &usable, p);
    EVP_PKEY_free(pkey);
    if (err) {
        return apr_pstrcat(p, where, ": ", err, NULL);
    }
    if (!usable) {
        return apr_psprintf(p, "%s: this key verifies none of the allowed "
                            "algorithms (%s)", where, alg_list(v->algs, p));
    }
    return NULL;
}

/* ------------------------------------------------------------- JWKS -- */

static const char *jwk_bytes(unsigned char **out, apr_size_t *len,
                             json_t *jwk, const char *name, apr_pool_t *p)
{
    json_t *v = json_object_get(jwk, name);

    if (!json_is_string(v) || json_string_length(v) == 0) {
        return apr_psprintf(p, "\"%s\" missing or not a string", name);
    }
    if (!b64u_decode(out, len, json_string_value(v), json_string_length(v),
                     1, p)) {
        return apr_psprintf(p, "\"%s\" is not base64url", name);
    }
    return NULL;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static const char *jwk_rsa(EVP_PKEY **out, json_t *jwk, apr_pool_t *p)
{
    unsigned char *n, *e;
    apr_size_t nlen, elen;
    const char *err;
    OSSL_PARAM_BLD *bld;
    BIGNUM *bn_n, *bn_e;

    if ((err = jwk_bytes(&n, &nlen, jwk, "n", p))
        || (err = jwk_bytes(&e, &elen, jwk, "e", p))) {
        return err;
    }
    /* An even or tiny exponent is not an RSA verification key. */
    if (elen > 8 || !(e[elen - 1] & 1) || (elen == 1 && e[0] < 3)) {
        return "\"e\" is not a usable RSA exponent";
    }
    bld = OSSL_PARAM_BLD_new();
    bn_n = BN_bin2bn(n, (int)nlen, NULL);
    bn_e = BN_bin2bn(e, (int)elen, NULL);
    *out = NULL;
    if (bld && bn_n && bn_e
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
        *out = pkey_fromdata("RSA", bld);
    }
    BN_free(bn_n);
    BN_free(bn_e);
    OSSL_PARAM_BLD_free(bld);
    return *out ? NULL : "not a valid RSA public key";
}

static const char *jwk_ec(EVP_PKEY **out, json_t *jwk, apr_pool_t *p)
{
    json_t *crv = json_object_get(jwk, "crv");
    unsigned char *x, *y, *pt;
    apr_size_t xlen, ylen, clen;
    const char *group, *err;
    OSSL_PARAM_BLD *bld;
    EVP_PKEY_CTX *ctx;
    int ok;

    if (!json_is_string(crv)) {
        return "\"crv\" missing or not a string";
    }
    if (!strcmp(json_string_value(crv), "P-256")) {
        group = "prime256v1";
        clen = 32;
    }
    else if (!strcmp(json_string_value(crv), "P-384")) {
        group = "secp384r1";
        clen = 48;
    }
    else {
        return apr_psprintf(p, "curve \"%s\" is not supported (P-256, "
                            "P-384)", json_log_str(crv, p));
    }
    if ((err = jwk_bytes(&x, &xlen, jwk, "x", p))
        || (err = jwk_bytes(&y, &ylen, jwk, "y", p))) {
        return err;
    }
    if (xlen != clen || ylen != clen) {
        return apr_psprintf(p, "\"x\" and \"y\" must be %" APR_SIZE_T_FMT
                            " bytes for %s", clen, json_string_value(crv));
    }
    /* Uncompressed SEC1 point: 0x04 || x || y. */
    pt = apr_palloc(p, 1 + 2 * clen);
    pt[0] = 0x04;
    memcpy(pt + 1, x, clen);
    memcpy(pt + 1 + clen, y, clen);
    bld = OSSL_PARAM_BLD_new();
    *out = NULL;
    if (bld
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            pt, 1 + 2 * clen)) {
        *out = pkey_fromdata("EC", bld);
    }
    OSSL_PARAM_BLD_free(bld);
    if (!*out) {
        return "not a valid EC public key (is (x, y) on the curve?)";
    }
    /* fromdata does not promise the point is on the curve; an off-curve
     * point is the classic invalid-curve attack vector. */
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
    ok = ctx && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        EVP_PKEY_free(*out);
        *out = NULL;
        return "the point (x, y) is not on the curve";
    }
    return NULL;
}

static const char *jwk_oct(bff_jwt_verifier_t *v, const char *kid,
                           json_t *jwk, unsigned restrict_algs,
                           unsigned *usable, apr_pool_t *p)
{
    unsigned char *k;
    apr_size_t len;
    unsigned algs = BFF_JWT_HS_ALL;
    const char *err;

    if (restrict_algs) {
        if (!(restrict_algs & BFF_JWT_HS_ALL)) {
            return apr_psprintf(p, "its \"alg\" %s does not fit an oct key",
                                alg_list(restrict_algs, p));
        }
        algs = restrict_algs;
    }
    *usable = algs & v->algs;
    if (!*usable) {
        return NULL;
    }
    if ((err = jwk_bytes(&k, &len, jwk, "k", p))) {
        return err;
    }
    err = check_secret_len(*usable, len, "the secret \"k\"", p);
    if (!err) {
        key_add(v, kid, *usable, k, len, p);
    }
    OPENSSL_cleanse(k, len);
    return err;
}

/* One JWK: *usable says whether it was added (0: skipped, not an error). */
static const char *jwk_load(bff_jwt_verifier_t *v, json_t *jwk,
                            const char **kid_out, unsigned *usable,
                            apr_pool_t *p)
{
    json_t *kty = json_object_get(jwk, "kty");
    json_t *kid = json_object_get(jwk, "kid");
    json_t *use = json_object_get(jwk, "use");
    json_t *alg = json_object_get(jwk, "alg");
    unsigned restrict_algs = 0;
    const char *err, *k;
    EVP_PKEY *pkey = NULL;

    *usable = 0;
    if (!json_is_object(jwk)) {
        return "not a JSON object";
    }
    if (!json_is_string(kid) || json_string_length(kid) == 0
        || json_string_length(kid) > KID_MAX) {
        return "\"kid\" missing, empty or not a string (every key needs "
               "one: tokens select keys by kid)";
    }
    k = apr_pstrdup(p, json_string_value(kid));
    *kid_out = k;
    if (strlen(k) != json_string_length(kid)) {
        return "\"kid\" contains a NUL character";
    }
    if (apr_hash_get(v->by_kid, k, APR_HASH_KEY_STRING)) {
        return "duplicate \"kid\"";
    }
    /* Encryption keys and keys for algorithms we do not do (PS256, EdDSA,
     * RSA-OAEP) are legitimately part of real JWKS documents: skip them. */
    if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig"))) {
        return NULL;
    }
    if (alg) {
        const alg_info_t *a;
        if (!json_is_string(alg)) {
            return "\"alg\" is not a string";
        }
        a = alg_by_name(json_string_value(alg), json_string_length(alg));
        if (!a) {
            return NULL;
        }
        restrict_algs = a->bit;
    }
    if (json_object_get(jwk, "d") || json_object_get(jwk, "p")) {
        return "holds private key material; publish public keys only";
    }
    if (!json_is_string(kty)) {
        return "\"kty\" missing or not a string";
    }
    if (!strcmp(json_string_value(kty), "oct")) {
        err = jwk_oct(v, k, jwk, restrict_algs, usable, p);
    }
    else {
        if (!strcmp(json_string_value(kty), "RSA")) {
            err = jwk_rsa(&pkey, jwk, p);
        }
        else if (!strcmp(json_string_value(kty), "EC")) {
            err = jwk_ec(&pkey, jwk, p);
        }
        else {
            return apr_psprintf(p, "\"kty\" \"%s\" is not supported (RSA, "
                                "EC, oct)", json_log_str(kty, p));
        }
        ERR_clear_error();
        if (!err) {
            err = add_pkey(v, k, pkey, restrict_algs, usable, p);
        }
        EVP_PKEY_free(pkey);
    }
    if (!err && *usable) {
        jwt_key_t *last = &APR_ARRAY_IDX(v->keys, v->keys->nelts - 1,
                                         jwt_key_t);
        apr_hash_set(v->by_kid, last->kid, APR_HASH_KEY_STRING, last);
    }
    return err;
}

/* A JWKS document; what names it in errors ("JWKS file /etc/x.json"). */
static const char *load_jwks_text(bff_jwt_verifier_t *v, const char *what,
                                  const char *buf, apr_size_t len,
                                  apr_pool_t *p)
{
    const char *err = NULL;
    apr_size_t i;
    json_t *doc, *keys;
    json_error_t jerr;

    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        return apr_psprintf(p, "%s: line %d: %s", what, jerr.line,
                            jerr.text);
    }
    keys = json_object_get(doc, "keys");
    if (!json_is_array(keys) || json_array_size(keys) == 0) {
        err = apr_psprintf(p, "%s: no \"keys\" array", what);
    }
    for (i = 0; !err && i < json_array_size(keys); i++) {
        const char *kid = NULL;
        unsigned usable;

        err = jwk_load(v, json_array_get(keys, i), &kid, &usable, p);
        if (err) {
            err = apr_psprintf(p, "%s: key %" APR_SIZE_T_FMT
                               "%s%s%s: %s", what, i + 1,
                               kid ? " (kid \"" : "",
                               kid ? log_str(kid, strlen(kid), p) : "",
                               kid ? "\")" : "", err);
        }
    }
    /* everything needed was copied (kids, PEM, secrets) */
    json_decref(doc);
    if (err) {
        return err;
    }
    if (v->keys->nelts == 0) {
        return apr_psprintf(p, "%s: no key usable with the allowed "
                            "algorithms (%s)", what, alg_list(v->algs, p));
    }
    return NULL;
}

static const char *load_jwks(bff_jwt_verifier_t *v, const char *path,
                             apr_pool_t *p)
{
    const char *err;
    char *buf;
    apr_size_t len;

    err = bff_file_read(&buf, &len, "JWKS file", path, JWKS_FILE_MAX, p);
    if (err) {
        return err;
    }
    err = load_jwks_text(v, apr_pstrcat(p, "JWKS file ", path, NULL), buf,
                         len, p);
    /* oct keys are secrets: keep no copy of the file around */
    OPENSSL_cleanse(buf, len);
    return err;
}

/* ---------------------------------------------------------- verifier -- */

static void fp_add(EVP_MD_CTX *md, const void *data, apr_size_t len)
{
    /* Length-prefixed, so field boundaries cannot shift. */
    apr_uint64_t n = len;
    EVP_DigestUpdate(md, &n, sizeof(n));
    EVP_DigestUpdate(md, data, len);
}

static void fp_add_str(EVP_MD_CTX *md, const char *s)
{
    fp_add(md, s ? s : "", s ? strlen(s) + 1 : 0);
}

static const char *fingerprint(bff_jwt_verifier_t *v)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    apr_int64_t nums[4];
    unsigned int n = 0;
    int i;

    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return "cannot compute SHA-256";
    }
    fp_add_str(md, "bff-jwt-1");
    nums[0] = v->algs;
    nums[1] = v->leeway;
    nums[2] = v->exp_optional;
    nums[3] = (apr_int64_t)v->max_size;
    fp_add(md, nums, sizeof(nums));
    for (i = 0; i < v->keys->nelts; i++) {
        jwt_key_t *k = &APR_ARRAY_IDX(v->keys, i, jwt_key_t);
        fp_add_str(md, k->kid);
        fp_add(md, &k->algs, sizeof(k->algs));
        fp_add(md, k->bytes, (apr_size_t)k->len);
    }
    for (i = 0; v->issuers && i < v->issuers->nelts; i++) {
        fp_add_str(md, APR_ARRAY_IDX(v->issuers, i, const char *));
    }
    fp_add_str(md, "|aud");
    fp_add_str(md, v->audience);
    EVP_DigestFinal_ex(md, v->fingerprint, &n);
    EVP_MD_CTX_free(md);
    return NULL;
}

const char *bff_jwt_verifier_create(bff_jwt_verifier_t **out,
                                    const bff_jwt_conf_t *conf,
                                    apr_pool_t *p)
{
    bff_jwt_verifier_t *v = apr_pcalloc(p, sizeof(*v));
    const char *err = NULL;
    apr_size_t i;

    if (!conf->algs || (conf->algs & ~(unsigned)(BFF_JWT_HS_ALL
                                                 | BFF_JWT_RS_ALL
                                                 | BFF_JWT_ES_ALL))) {
        return "JWT: no (or an unknown) algorithm configured";
    }
    if (conf->leeway < 0 || conf->leeway > 86400) {
        return "JWT: leeway must be between 0 and 86400 seconds";
    }
    if ((conf->jwks_file || conf->jwks_text)
        && (conf->secret_file || conf->pubkey_file)) {
        return "JWT: a JWKS excludes a secret or public key file "
               "(put every key in the JWKS)";
    }
    if (conf->jwks_file && conf->jwks_text) {
        return "JWT: a JWKS file excludes a JWKS by URL";
    }
    if (!conf->jwks_file && !conf->jwks_text && !conf->secret_file
        && !conf->pubkey_file) {
        return "JWT: no key configured (secret, public key or JWKS file)";
    }
    v->algs = conf->algs;
    v->keys = apr_array_make(p, 4, sizeof(jwt_key_t));
    v->by_kid = apr_hash_make(p);
    v->issuers = conf->issuers;
    v->audience = conf->audience;
    v->leeway = conf->leeway;
    v->exp_optional = conf->exp_optional;
    v->max_size = conf->max_size ? conf->max_size : BFF_JWT_DEFAULT_MAX_SIZE;

    if (conf->jwks_file) {
        v->jwks = 1;
        err = load_jwks(v, conf->jwks_file, p);
    }
    else if (conf->jwks_text) {
        v->jwks = 1;
        err = load_jwks_text(v, conf->jwks_what ? conf->jwks_what : "JWKS",
                             conf->jwks_text, conf->jwks_len, p);
    }
    else {
        if (conf->secret_file) {
            err = load_secret(v, conf->secret_file, p);
        }
        if (!err && conf->pubkey_file) {
            err = load_pubkey(v, conf->pubkey_file, p);
        }
        /* Without kids, an allowed algorithm no key can verify is a
         * configuration mistake, not a rotation in progress. */
        for (i = 0; !err && i < N_ALGS; i++) {
            unsigned bit = alg_table[i].bit, have = 0;
            int k;
            for (k = 0; k < v->keys->nelts; k++) {
                have |= APR_ARRAY_IDX(v->keys, k, jwt_key_t).algs;
            }
            if ((v->algs & bit) && !(have & bit)) {
                err = apr_psprintf(p, "JWT: algorithm %s is allowed but no "
                                   "configured key can verify it (%s)",
                                   alg_table[i].name,
                                   (bit & BFF_JWT_HS_ALL)
                                   ? "HS algorithms need a secret file"
                                   : conf->pubkey_file
                                   ? apr_pstrcat(p, conf->pubkey_file,
                                                 " holds another key type "
                                                 "or curve", NULL)
                                   : "RS and ES algorithms need a public "
                                     "key file");
            }
        }
    }
    if (!err) {
        err = fingerprint(v);
    }
    if (err) {
        return err;
    }
    *out = v;
    return NULL;
}

int bff_jwt_verifier_nkeys(const bff_jwt_verifier_t *v)
{
    return v->keys->nelts;
}

const unsigned char *bff_jwt_verifier_fingerprint(const bff_jwt_verifier_t *v)
{
    return v->fingerprint;
}

/* ------------------------------------------------------ verification -- */

const char *bff_jwt_status_name(bff_jwt_status_e st)
{
    switch (st) {
    case BFF_JWT_OK:              return "ok";
    case BFF_JWT_OVERSIZED:       return "oversized";
    case BFF_JWT_MALFORMED:       return "malformed";
    case BFF_JWT_UNSUPPORTED_ALG: return "unsupported_alg";
    case BFF_JWT_UNKNOWN_KID:     return "unknown_kid";
    case BFF_JWT_BAD_SIGNATURE:   return "bad_signature";
    case BFF_JWT_MISSING_EXP:     return "missing_exp";
    case BFF_JWT_BAD_CLAIM:       return "bad_claim";
    case BFF_JWT_EXPIRED:         return "expired";
    case BFF_JWT_NOT_YET_VALID:   return "not_yet_valid";
    case BFF_JWT_WRONG_ISSUER:    return "wrong_issuer";
    case BFF_JWT_WRONG_AUDIENCE:  return "wrong_audience";
    case BFF_JWT_INTERNAL:        return "internal";
    }
    return "unknown";
}

typedef struct {
    const char *token;
    apr_size_t len;
    const char *part[3];
    apr_size_t plen[3];
    const alg_info_t *alg;
    const jwt_key_t *key;
    json_t *payload;        /* owned until handed to the caller */
} parsed_t;

#define FAIL(st_, ...) do { *why = apr_psprintf(p, __VA_ARGS__); \
                            return (st_); } while (0)

/* Everything that can be decided without cryptography. */
static bff_jwt_status_e precheck(parsed_t *t, const char **why,
                                 const bff_jwt_verifier_t *v, apr_pool_t *p)
{
    const char *s = t->token, *dot1, *dot2;
    unsigned char *buf;
    apr_size_t blen;
    json_t *hdr, *alg, *kid, *typ;
    bff_jwt_status_e st = BFF_JWT_MALFORMED;

    dot1 = memchr(s, '.', t->len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', t->len - (apr_size_t)(dot1 + 1 - s))
                : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', t->len - (apr_size_t)(dot2 + 1 - s))) {
        FAIL(BFF_JWT_MALFORMED, "not three dot-separated parts (a JWE or "
             "garbage)");
    }
    t->part[0] = s;
    t->plen[0] = (apr_size_t)(dot1 - s);
    t->part[1] = dot1 + 1;
    t->plen[1] = (apr_size_t)(dot2 - dot1 - 1);
    t->part[2] = dot2 + 1;
    t->plen[2] = t->len - (apr_size_t)(dot2 + 1 - s);
    if (!t->plen[0] || !t->plen[1]) {
        FAIL(BFF_JWT_MALFORMED, "empty header or payload");
    }

    if (!b64u_decode(&buf, &blen, t->part[0], t->plen[0], 0, p)) {
        FAIL(BFF_JWT_MALFORMED, "header is not base64url");
    }
    hdr = parse_object(buf, blen);
    if (!hdr) {
        FAIL(BFF_JWT_MALFORMED, "header is not a JSON object (or has "
             "duplicate members)");
    }
    alg = json_object_get(hdr, "alg");
    typ = json_object_get(hdr, "typ");
    kid = json_object_get(hdr, "kid");
    if (!json_is_string(alg)) {
        *why = "header has no \"alg\" string";
    }
    else if (!(t->alg = alg_by_name(json_string_value(alg),
                                    json_string_length(alg)))
             || !(t->alg->bit & v->algs)) {
        st = BFF_JWT_UNSUPPORTED_ALG;
        *why = apr_psprintf(p, "alg \"%s\" is not allowed (allowed: %s)",
                            json_log_str(alg, p), alg_list(v->algs, p));
    }
    /* libjwt 1.10 refuses a typ other than "JWT" (any case) after doing
     * the signature work; say so up front. */
    else if (typ && (!json_is_string(typ)
                     || strcasecmp(json_string_value(typ), "JWT"))) {
        *why = "typ is not \"JWT\"";
    }
    /* We implement no extension, so any critical one must fail
     * (RFC 7515 section 4.1.11). */
    else if (json_object_get(hdr, "crit")) {
        *why = "header has \"crit\" extensions";
    }
    else if (kid && !json_is_string(kid)) {
        *why = "kid is not a string";
    }
    else if (v->jwks) {
        /* A JWKS: the kid selects the one key; no kid, no key. */
        if (!kid) {
            st = BFF_JWT_UNKNOWN_KID;
            *why = "token has no kid (keys come from a JWKS)";
        }
        else if (!(t->key = apr_hash_get(v->by_kid, json_string_value(kid),
                                         (apr_ssize_t)json_string_length(kid)))) {
            st = BFF_JWT_UNKNOWN_KID;
            *why = apr_psprintf(p, "kid \"%s\" is not in the JWKS",
                                json_log_str(kid, p));
        }
        else if (!(t->key->algs & t->alg->bit)) {
            /* e.g. an HS256 token naming an RSA key's kid: confusion. */
            st = BFF_JWT_UNSUPPORTED_ALG;
            *why = apr_psprintf(p, "kid \"%s\" is not a key for %s",
                                json_log_str(kid, p), t->alg->name);
            t->key = NULL;
        }
        else {
            st = BFF_JWT_OK;
        }
    }
    else {
        int i;
        for (i = 0; i < v->keys->nelts && !t->key; i++) {
            const jwt_key_t *k = &APR_ARRAY_IDX(v->keys, i, jwt_key_t);
            if (k->algs & t->alg->bit) {
                t->key = k;
            }
        }
        /* create() guarantees a key for every allowed algorithm */
        st = t->key ? BFF_JWT_OK : BFF_JWT_INTERNAL;
        if (!t->key) {
            *why = "no key for the algorithm";
        }
    }
    json_decref(hdr);
    if (st != BFF_JWT_OK) {
        return st;
    }

    if (!b64u_decode(&buf, &blen, t->part[1], t->plen[1], 0, p)) {
        FAIL(BFF_JWT_MALFORMED, "payload is not base64url");
    }
    t->payload = parse_object(buf, blen);
    if (!t->payload) {
        FAIL(BFF_JWT_MALFORMED, "payload is not a JSON object (or has "
             "duplicate members)");
    }
    /* Checked after alg, so that "alg":"none" tokens (whose signature is
     * empty) are reported as what they are. */
    if (!t->plen[2]) {
        FAIL(BFF_JWT_MALFORMED, "empty signature");
    }
    if (!b64u_decode(&buf, &blen, t->part[2], t->plen[2], 0, p)) {
        FAIL(BFF_JWT_MALFORMED, "signature is not base64url");
    }
    /* The signature's length is fixed by alg and key: a cheap refusal
     * before any public key operation. */
    {
        int want = (t->alg->bit & BFF_JWT_RS_ALL) ? t->key->sig_len
                                                  : t->alg->size;
        if ((apr_size_t)want != blen) {
            FAIL(BFF_JWT_BAD_SIGNATURE, "signature is %" APR_SIZE_T_FMT
                 " bytes, %s with this key makes %d", blen, t->alg->name,
                 want);
        }
    }
    return BFF_JWT_OK;
}

static bff_jwt_status_e check_signature(parsed_t *t, const char **why,
                                        apr_pool_t *p)
{
    jwt_t *jwt = NULL;
    int rc;
    jwt_alg_t got;

    /* Never NULL or empty: libjwt 1.10 then accepts any HS token. */
    if (!t->key || !t->key->bytes || t->key->len <= 0) {
        FAIL(BFF_JWT_INTERNAL, "no key");
    }
    rc = jwt_decode(&jwt, t->token, t->key->bytes, t->key->len);
    /* libjwt leaves OpenSSL errors on this thread's queue; mod_ssl reads
     * that queue, so it must be empty when we return. */
    ERR_clear_error();
    if (rc == ENOMEM) {
        FAIL(BFF_JWT_INTERNAL, "out of memory in jwt_decode");
    }
    if (rc || !jwt) {
        jwt_free(jwt);
        FAIL(BFF_JWT_BAD_SIGNATURE, "%s signature does not verify%s%s%s",
             t->alg->name, t->key->kid ? " with kid \"" : "",
             t->key->kid ? log_str(t->key->kid, strlen(t->key->kid), p) : "",
             t->key->kid ? "\"" : "");
    }
    got = jwt_get_alg(jwt);
    jwt_free(jwt);
    if (got != t->alg->jalg) {
        FAIL(BFF_JWT_UNSUPPORTED_ALG, "libjwt decoded %s, header says %s",
             jwt_alg_str(got), t->alg->name);
    }
    return BFF_JWT_OK;
}

static int aud_contains(json_t *aud, const char *want)
{
    apr_size_t i;
    json_t *e;

    if (json_is_string(aud)) {
        return !strcmp(json_string_value(aud), want);
    }
    json_array_foreach(aud, i, e) {
        if (!strcmp(json_string_value(e), want)) {
            return 1;
        }
    }
    return 0;
}

static bff_jwt_status_e check_claims(const char **why,
                                     const bff_jwt_verifier_t *v,
                                     json_t *c, apr_int64_t now,
                                     apr_pool_t *p)
{
    json_t *exp = json_object_get(c, "exp");
    json_t *nbf = json_object_get(c, "nbf");
    json_t *iat = json_object_get(c, "iat");
    json_t *iss = json_object_get(c, "iss");
    json_t *aud = json_object_get(c, "aud");
    json_t *sub = json_object_get(c, "sub");
    double dnow = (double)now, lee = (double)v->leeway;
    apr_size_t i;
    json_t *e;

    /* Types first: a claim of the wrong type is never "compared" with
     * anything (json_number_value("123") is 0, i.e. never expires). */
    if (exp && !json_is_number(exp)) {
        FAIL(BFF_JWT_BAD_CLAIM, "exp is not a number");
    }
    if (nbf && !json_is_number(nbf)) {
        FAIL(BFF_JWT_BAD_CLAIM, "nbf is not a number");
    }
    if (iat && !json_is_number(iat)) {
        FAIL(BFF_JWT_BAD_CLAIM, "iat is not a number");
    }
    if (iss && !json_is_string(iss)) {
        FAIL(BFF_JWT_BAD_CLAIM, "iss is not a string");
    }
    if (sub && !json_is_string(sub)) {
        FAIL(BFF_JWT_BAD_CLAIM, "sub is not a string");
    }
    if (aud && !json_is_string(aud)) {
        if (!json_is_array(aud)) {
            FAIL(BFF_JWT_BAD_CLAIM, "aud is neither a string nor an array");
        }
        json_array_foreach(aud, i, e) {
            if (!json_is_string(e)) {
                FAIL(BFF_JWT_BAD_CLAIM, "aud has a non-string element");
            }
        }
    }

    if (!exp && !v->exp_optional) {
        FAIL(BFF_JWT_MISSING_EXP, "no exp claim (required)");
    }
    if (exp && dnow >= json_number_value(exp) + lee) {
        FAIL(BFF_JWT_EXPIRED, "exp %.0f is past (now %" APR_INT64_T_FMT
             ", leeway %" APR_INT64_T_FMT "s)", json_number_value(exp), now,
             v->leeway);
    }
    if (nbf && dnow + lee < json_number_value(nbf)) {
        FAIL(BFF_JWT_NOT_YET_VALID, "nbf %.0f is in the future (now %"
             APR_INT64_T_FMT ", leeway %" APR_INT64_T_FMT "s)",
             json_number_value(nbf), now, v->leeway);
    }
    if (v->issuers && v->issuers->nelts) {
        int ok = 0;
        if (!iss) {
            FAIL(BFF_JWT_WRONG_ISSUER, "no iss claim");
        }
        for (i = 0; !ok && i < (apr_size_t)v->issuers->nelts; i++) {
            ok = !strcmp(json_string_value(iss),
                         APR_ARRAY_IDX(v->issuers, i, const char *));
        }
        if (!ok) {
            FAIL(BFF_JWT_WRONG_ISSUER, "iss \"%s\" is not accepted",
                 json_log_str(iss, p));
        }
    }
    if (v->audience) {
        if (!aud) {
            FAIL(BFF_JWT_WRONG_AUDIENCE, "no aud claim");
        }
        if (!aud_contains(aud, v->audience)) {
            FAIL(BFF_JWT_WRONG_AUDIENCE, "aud does not contain \"%s\"",
                 log_str(v->audience, strlen(v->audience), p));
        }
    }
    return BFF_JWT_OK;
}

/* ------------------------------------------------------------- cache -- */

typedef struct {
    unsigned char key[32];
    apr_int64_t expires;    /* seconds; the entry is dead at this time */
    char *claims;           /* malloc'd compact JSON, NULL when free */
    apr_size_t len;
    int ref;                /* CLOCK reference bit */
} cache_slot_t;

struct bff_jwt_cache_t {
#if APR_HAS_THREADS
    apr_thread_mutex_t *mutex;
#endif
    cache_slot_t *slots;
    apr_size_t n, hand, used;
    apr_hash_t *index;      /* key -> slot */
    apr_int64_t max_ttl;
    apr_uint64_t hits, misses, evictions;
    EVP_MD *sha256;         /* fetched once: EVP_sha256() in OpenSSL 3
                               looks the algorithm up (under a lock) on
                               every use */
};

#if APR_HAS_THREADS
#define CACHE_LOCK(c)   apr_thread_mutex_lock((c)->mutex)
#define CACHE_UNLOCK(c) apr_thread_mutex_unlock((c)->mutex)
#else
#define CACHE_LOCK(c)
#define CACHE_UNLOCK(c)
#endif

static apr_status_t cache_cleanup(void *data)
{
    bff_jwt_cache_t *c = data;
    apr_size_t i;

    for (i = 0; i < c->n; i++) {
        free(c->slots[i].claims);
        c->slots[i].claims = NULL;
    }
    EVP_MD_free(c->sha256);
    c->sha256 = NULL;
    return APR_SUCCESS;
}

const char *bff_jwt_cache_create(bff_jwt_cache_t **out, apr_size_t entries,
                                 apr_int64_t max_ttl, apr_pool_t *p)
{
    bff_jwt_cache_t *c;

    if (entries < 1 || entries > 10 * 1000 * 1000) {
        return "JWT cache: entries must be between 1 and 10000000";
    }
    if (max_ttl < 1) {
        return "JWT cache: the longest lifetime must be at least 1 second";
    }
    c = apr_pcalloc(p, sizeof(*c));
    c->slots = apr_pcalloc(p, entries * sizeof(cache_slot_t));
    c->n = entries;
    c->index = apr_hash_make(p);
    c->max_ttl = max_ttl;
#if APR_HAS_THREADS
    if (apr_thread_mutex_create(&c->mutex, APR_THREAD_MUTEX_DEFAULT, p)
        != APR_SUCCESS) {
        return "JWT cache: cannot create its mutex";
    }
#endif
    c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);   /* NULL: implicit */
    apr_pool_cleanup_register(p, c, cache_cleanup, apr_pool_cleanup_null);
    *out = c;
    return NULL;
}

static void cache_key(unsigned char key[32], const EVP_MD *sha256,
                      const bff_jwt_verifier_t *v, const char *token,
                      apr_size_t len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;

    if (md && EVP_DigestInit_ex(md, sha256, NULL)
        && EVP_DigestUpdate(md, v->fingerprint, sizeof(v->fingerprint))
        && EVP_DigestUpdate(md, token, len)
        && EVP_DigestFinal_ex(md, key, &n)) {
        EVP_MD_CTX_free(md);
        return;
    }
    EVP_MD_CTX_free(md);
    /* Cannot happen with the default provider; a zero key would only
     * alias with other failures, so make it unmatchable instead. */
    SHA256((const unsigned char *)token, len, key);
    key[0] ^= 0xff;
}

void bff_jwt_cache_key(unsigned char key[32], const bff_jwt_verifier_t *v,
                       const char *token, apr_size_t len)
{
    cache_key(key, EVP_sha256(), v, token, len);
}

static void slot_unlink(bff_jwt_cache_t *c, cache_slot_t *s, char **garbage)
{
    apr_hash_set(c->index, s->key, sizeof(s->key), NULL);
    *garbage = s->claims;
    s->claims = NULL;
    c->used--;
}

/* Returns the claims (new, pool-owned) or NULL. */
static json_t *cache_get(bff_jwt_cache_t *c, const unsigned char key[32],
                         apr_int64_t now, apr_pool_t *p)
{
    cache_slot_t *s;
    char *copy = NULL, *garbage = NULL;
    apr_size_t len = 0;
    json_t *claims = NULL;

    CACHE_LOCK(c);
    s = apr_hash_get(c->index, key, 32);
    if (s && now < s->expires) {
        s->ref = 1;
        len = s->len;
        copy = apr_pmemdup(p, s->claims, len);
        c->hits++;
    }
    else {
        if (s) {
            slot_unlink(c, s, &garbage);
        }
        c->misses++;
    }
    CACHE_UNLOCK(c);
    free(garbage);
    if (copy) {
        claims = bff_json_pool_own(json_loadb(copy, len, 0, NULL), p);
    }
    return claims;
}

static void cache_put(bff_jwt_cache_t *c, const unsigned char key[32],
                      json_t *claims, apr_int64_t now)
{
    json_t *exp = json_object_get(claims, "exp");
    apr_int64_t expires = now + c->max_ttl;
    char *text, *garbage = NULL;
    cache_slot_t *s;
    apr_size_t steps;

    if (json_is_number(exp) && json_number_value(exp) < (double)expires) {
        /* floor: an entry dies no later than the token */
        expires = (apr_int64_t)json_number_value(exp);
        if ((double)expires > json_number_value(exp)) {
            expires--;
        }
    }
    if (expires <= now) {
        return;
    }
    text = json_dumps(claims, JSON_COMPACT);
    if (!text) {
        return;
    }
    CACHE_LOCK(c);
    s = apr_hash_get(c->index, key, 32);
    if (!s) {
        /* CLOCK: the first free, dead or unreferenced slot from the hand;
         * referenced ones get a second chance. 2n steps always find one. */
        for (steps = 0; steps < 2 * c->n; steps++) {
            s = &c->slots[c->hand];
            c->hand = (c->hand + 1) % c->n;
            if (!s->claims || s->expires <= now || !s->ref) {
                break;
            }
            s->ref = 0;
        }
        if (s->claims) {
            if (s->expires > now) {
                c->evictions++;
            }
            slot_unlink(c, s, &garbage);
        }
        memcpy(s->key, key, 32);
        apr_hash_set(c->index, s->key, sizeof(s->key), s);
        c->used++;
    }
    else {
        garbage = s->claims;
    }
    s->claims = text;
    s->len = strlen(text);
    s->expires = expires;
    s->ref = 0;
    CACHE_UNLOCK(c);
    free(garbage);
}

void bff_jwt_cache_stats(bff_jwt_cache_stats_t *out, bff_jwt_cache_t *c)
{
    CACHE_LOCK(c);
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->entries = c->used;
    out->capacity = c->n;
    CACHE_UNLOCK(c);
}

/* ------------------------------------------------------------ verify -- */

bff_jwt_status_e bff_jwt_verify(json_t **claims, const char **why,
                                const bff_jwt_verifier_t *v,
                                bff_jwt_cache_t *cache, const char *token,
                                apr_int64_t now, apr_pool_t *p)
{
    parsed_t t;
    bff_jwt_status_e st;
    unsigned char key[32];

    *claims = NULL;
    *why = NULL;
    memset(&t, 0, sizeof(t));
    if (!token) {
        FAIL(BFF_JWT_MALFORMED, "no token");
    }
    /* Bounded scan: the size limit applies before anything else. */
    t.len = strnlen(token, v->max_size + 1);
    if (t.len > v->max_size) {
        FAIL(BFF_JWT_OVERSIZED, "token longer than %" APR_SIZE_T_FMT
             " bytes", v->max_size);
    }
    t.token = token;
    if (cache) {
        cache_key(key, cache->sha256 ? cache->sha256 : EVP_sha256(), v,
                  token, t.len);
        if ((*claims = cache_get(cache, key, now, p))) {
            return BFF_JWT_OK;
        }
    }
    st = precheck(&t, why, v, p);
    if (st == BFF_JWT_OK) {
        st = check_signature(&t, why, p);
    }
    if (st == BFF_JWT_OK) {
        st = check_claims(why, v, t.payload, now, p);
    }
    if (st != BFF_JWT_OK) {
        json_decref(t.payload);
        return st;
    }
    if (cache) {
        cache_put(cache, key, t.payload, now);
    }
    *claims = bff_json_pool_own(t.payload, p);
    return BFF_JWT_OK;
}

/* ------------------------------------------------------------ claims -- */

json_t *bff_jwt_claim(json_t *claims, const char *path)
{
    json_t *v;
    const char *s = path, *dot;

    if (!json_is_object(claims) || !path || !*path) {
        return NULL;
    }
    if ((v = json_object_get(claims, path))) {
        return v;
    }
    v = claims;
    while (v && s) {
        dot = strchr(s, '.');
        if (!json_is_object(v) || dot == s || (!dot && !*s)) {
            return NULL;
        }
        v = dot ? json_object_getn(v, s, (size_t)(dot - s))
                : json_object_get(v, s);
        s = dot ? dot + 1 : NULL;
    }
    return v;
}

apr_array_header_t *bff_jwt_claim_strings(json_t *claims, const char *path,
                                          apr_pool_t *p)
{
    json_t *v = bff_jwt_claim(claims, path), *e;
    apr_array_header_t *out;
    apr_size_t i;

    if (json_is_string(v)) {
        out = apr_array_make(p, 1, sizeof(const char *));
        APR_ARRAY_PUSH(out, const char *) = apr_pstrdup(p,
                                                        json_string_value(v));
        return out;
    }
    if (!json_is_array(v)) {
        return NULL;
    }
    out = apr_array_make(p, (int)json_array_size(v) + 1,
                         sizeof(const char *));
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) {
            return NULL;
        }
        APR_ARRAY_PUSH(out, const char *) = apr_pstrdup(p,
                                                        json_string_value(e));
    }
    return out;
}

static void push_words(apr_array_header_t *out, const char *s, apr_pool_t *p)
{
    while (*s) {
        apr_size_t n;
        if (*s == ' ') {
            s++;
            continue;
        }
        n = strcspn(s, " ");
        APR_ARRAY_PUSH(out, const char *) = apr_pstrmemdup(p, s, n);
        s += n;
    }
}

apr_array_header_t *bff_jwt_scopes(json_t *claims, apr_pool_t *p)
{
    static const char *const names[] = { "scope", "scp", "scopes" };
    apr_array_header_t *out = apr_array_make(p, 8, sizeof(const char *));
    apr_size_t n, i;
    json_t *v, *e;

    for (n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        v = json_object_get(claims, names[n]);
        if (json_is_string(v)) {
            push_words(out, json_string_value(v), p);
            return out;
        }
        if (json_is_array(v)) {
            json_array_foreach(v, i, e) {
                if (json_is_string(e)) {
                    APR_ARRAY_PUSH(out, const char *) =
                        apr_pstrdup(p, json_string_value(e));
                }
            }
            return out;
        }
    }
    return out;
}

int bff_jwt_has_scope(json_t *claims, const char *scope, apr_pool_t *p)
{
    apr_array_header_t *s = bff_jwt_scopes(claims, p);
    int i;

    for (i = 0; i < s->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(s, i, const char *), scope)) {
            return 1;
        }
    }
    return 0;
}

/* A scalar as header text in *out, or why it cannot be one. Strings are
 * client-controlled. */
static bff_claim_status_e scalar_text(const char **out, json_t *v,
                                      apr_pool_t *p)
{
    const char *r;
    char *s;
    apr_size_t i, n;

    if (json_is_string(v)) {
        r = json_string_value(v);
        n = json_string_length(v);
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char)r[i];
            if (c < 0x20 || c == 0x7f) {
                return BFF_CLAIM_CONTROL;
            }
        }
        if (n && (r[0] == ' ' || r[n - 1] == ' ')) {
            return BFF_CLAIM_SPACE;
        }
        *out = r;
        return BFF_CLAIM_OK;
    }
    if (!json_is_number(v) && !json_is_boolean(v)) {
        return BFF_CLAIM_STRUCTURE;
    }
    s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s) {
        return BFF_CLAIM_STRUCTURE;
    }
    *out = apr_pstrdup(p, s);
    free(s);
    return BFF_CLAIM_OK;
}

const char *bff_claim_status_text(bff_claim_status_e st)
{
    switch (st) {
    case BFF_CLAIM_OK:        return "ok";
    case BFF_CLAIM_MISSING:   return "missing";
    case BFF_CLAIM_CONTROL:   return "control character";
    case BFF_CLAIM_SPACE:     return "leading or trailing space";
    case BFF_CLAIM_STRUCTURE: return "object or nested array";
    case BFF_CLAIM_SEPARATOR: return "array element containing the separator";
    case BFF_CLAIM_TOO_LONG:  return "too long";
    }
    return "invalid";
}

bff_claim_status_e bff_jwt_claim_encode(const char **out, json_t *claims,
                                        const char *path, const char *sep,
                                        apr_pool_t *p)
{
    json_t *v = bff_jwt_claim(claims, path), *e;
    bff_claim_status_e st;
    const char *text = NULL;
    apr_size_t i;

    if (!v || json_is_null(v)) {
        return BFF_CLAIM_MISSING;
    }
    if (json_is_array(v)) {
        apr_array_header_t *parts = apr_array_make(p, 4, sizeof(char *));
        if (!sep || !*sep) {
            sep = ",";
        }
        json_array_foreach(v, i, e) {
            const char *s = NULL;
            if ((st = scalar_text(&s, e, p)) != BFF_CLAIM_OK) {
                return st;
            }
            if (strstr(s, sep)) {
                return BFF_CLAIM_SEPARATOR;
            }
            if (i > 0) {
                APR_ARRAY_PUSH(parts, const char *) = sep;
            }
            APR_ARRAY_PUSH(parts, const char *) = s;
        }
        text = apr_array_pstrcat(p, parts, 0);
    }
    else if ((st = scalar_text(&text, v, p)) != BFF_CLAIM_OK) {
        return st;
    }
    if (strlen(text) > HEADER_MAX) {
        return BFF_CLAIM_TOO_LONG;
    }
    *out = text;
    return BFF_CLAIM_OK;
}

const char *bff_jwt_claim_header(json_t *claims, const char *path,
                                 const char *sep, apr_pool_t *p)
{
    const char *out = NULL;

    return bff_jwt_claim_encode(&out, claims, path, sep, p) == BFF_CLAIM_OK
           ? out : NULL;
}
