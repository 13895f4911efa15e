/*
 * Unit tests of the access phase core: JWT verification (bff_jwt), API
 * keys (bff_apikey), token sources (bff_token: the token taken out of a
 * cookie or query string) and token buckets (bff_bucket), the Redis script
 * against a real redis-server this program starts on a free loopback port
 * and stops by PID.
 *
 * Keys are generated at start with the openssl CLI into a temporary
 * directory (removed at exit); tokens are made with libjwt and, for the
 * malformed and interop cases, signed by hand with OpenSSL.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <check.h>
#include <apr_general.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <hiredis/hiredis.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "bff_core.h"
#include "bff_jwt.h"
#include "bff_jwks.h"
#include "bff_apikey.h"
#include "bff_bucket.h"
#include "bff_lease.h"
#include "bff_token.h"
#include "testsrv.h"

#define NOW APR_INT64_C(1700000000)

static apr_pool_t *gp;          /* main(): keys, paths */
static apr_pool_t *tp;          /* one test */
static char tmpdir[64];
static server_t redis_srv;          /* started in main */
#define redis_port redis_srv.port

/* ------------------------------------------------------------ helpers -- */

static const char *path(const char *name)
{
    return apr_pstrcat(gp, tmpdir, "/", name, NULL);
}

static void run(const char *fmt, ...)
{
    va_list ap;
    char *cmd;
    int rc;

    va_start(ap, fmt);
    cmd = apr_pvsprintf(gp, fmt, ap);
    va_end(ap);
    rc = system(apr_pstrcat(gp, "cd ", tmpdir, " && (", cmd,
                            ") >/dev/null 2>&1", NULL));
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
        exit(2);
    }
}

static void write_file(const char *name, const void *data, apr_size_t len)
{
    FILE *f = fopen(path(name), "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path(name));
        exit(2);
    }
}

static char *read_file(const char *name, apr_size_t *len)
{
    char *buf;
    apr_size_t n;
    const char *err = bff_file_read(&buf, &n, "test file", path(name),
                                    1 << 20, gp);
    if (err) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    if (len) {
        *len = n;
    }
    return buf;
}

static void has(const char *s, const char *sub)
{
    ck_assert_msg(s && strstr(s, sub), "expected '%s' in '%s'", sub,
                  s ? s : "(null)");
}

static char *b64u(const void *data, apr_size_t len, apr_pool_t *p)
{
    char *out = apr_palloc(p, 4 * len / 3 + 8);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len), i, j = 0;

    for (i = 0; i < n && out[i] != '='; i++) {
        out[j++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[j] = '\0';
    return out;
}

static char *b64u_str(const char *s)
{
    return b64u(s, strlen(s), tp);
}

/* ------------------------------------------------------------ signing -- */

static const EVP_MD *md_of(const char *alg)
{
    return strstr(alg, "256") ? EVP_sha256() : strstr(alg, "384")
           ? EVP_sha384() : EVP_sha512();
}

/* Signs "header.payload" the way RFC 7515/7518 says, independently of
 * libjwt: HMAC, RSASSA-PKCS1-v1_5, or ECDSA with R || S. */
static char *sign_input(const char *alg, const char *keyfile,
                        const char *input)
{
    unsigned char sig[1024];
    size_t slen = sizeof(sig);
    apr_size_t klen;
    char *key = read_file(keyfile, &klen);

    if (alg[0] == 'H') {
        unsigned int n = 0;
        HMAC(md_of(alg), key, (int)klen, (const unsigned char *)input,
             strlen(input), sig, &n);
        slen = n;
    }
    else {
        BIO *b = BIO_new_mem_buf(key, (int)klen);
        EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
        EVP_MD_CTX *md = EVP_MD_CTX_new();

        ck_assert_ptr_nonnull(pk);
        ck_assert_int_eq(EVP_DigestSignInit(md, NULL, md_of(alg), NULL, pk),
                         1);
        ck_assert_int_eq(EVP_DigestSign(md, sig, &slen,
                                        (const unsigned char *)input,
                                        strlen(input)), 1);
        if (alg[0] == 'E') {
            const unsigned char *d = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &d, (long)slen);
            const BIGNUM *r, *s;
            int c = strstr(alg, "256") ? 32 : 48;

            ck_assert_ptr_nonnull(es);
            ECDSA_SIG_get0(es, &r, &s);
            BN_bn2binpad(r, sig, c);
            BN_bn2binpad(s, sig + c, c);
            slen = (size_t)(2 * c);
            ECDSA_SIG_free(es);
        }
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pk);
        BIO_free(b);
    }
    return b64u(sig, slen, tp);
}

static const char *hand(const char *alg, const char *keyfile,
                        const char *header, const char *payload)
{
    const char *input = apr_pstrcat(tp, b64u_str(header), ".",
                                    b64u_str(payload), NULL);
    return apr_pstrcat(tp, input, ".", sign_input(alg, keyfile, input),
                       NULL);
}

/* A token made by libjwt itself, as an issuer using libjwt would. */
static const char *lj(const char *alg, const char *keyfile, const char *kid,
                      const char *payload)
{
    jwt_t *j = NULL;
    apr_size_t klen;
    char *key = read_file(keyfile, &klen), *s;
    const char *out;

    ck_assert_int_eq(jwt_new(&j), 0);
    ck_assert_int_eq(jwt_add_grants_json(j, payload), 0);
    if (kid) {
        ck_assert_int_eq(jwt_add_header(j, "kid", kid), 0);
    }
    ck_assert_int_eq(jwt_set_alg(j, jwt_str_alg(alg), (unsigned char *)key,
                                 (int)klen), 0);
    s = jwt_encode_str(j);
    ck_assert_ptr_nonnull(s);
    out = apr_pstrdup(tp, s);
    free(s);
    jwt_free(j);
    return out;
}

static const char *claims_ok(apr_int64_t exp)
{
    return apr_psprintf(tp, "{\"sub\":\"user-1\",\"iss\":\"https://idp\","
                        "\"aud\":\"api\",\"exp\":%" APR_INT64_T_FMT ","
                        "\"iat\":%" APR_INT64_T_FMT ",\"scope\":\"a b\"}",
                        exp, NOW - 10);
}

/* ------------------------------------------------------------ keys -- */

static void json_b64_bn(json_t *o, const char *name, const BIGNUM *bn,
                        int pad)
{
    unsigned char buf[1024];
    int n = pad ? pad : BN_num_bytes(bn);

    BN_bn2binpad(bn, buf, n);
    json_object_set_new(o, name, json_string(b64u(buf, (apr_size_t)n, gp)));
}

static EVP_PKEY *load_pub(const char *name)
{
    apr_size_t len;
    char *pem = read_file(name, &len);
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!pk) {
        fprintf(stderr, "cannot load %s\n", name);
        exit(2);
    }
    return pk;
}

static json_t *jwk_rsa(const char *pubfile, const char *kid)
{
    EVP_PKEY *pk = load_pub(pubfile);
    BIGNUM *n = NULL, *e = NULL;
    json_t *o = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "kid", kid,
                          "use", "sig");

    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e);
    json_b64_bn(o, "n", n, 0);
    json_b64_bn(o, "e", e, 0);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(pk);
    return o;
}

static json_t *jwk_ec(const char *pubfile, const char *kid, const char *crv,
                      int c)
{
    EVP_PKEY *pk = load_pub(pubfile);
    BIGNUM *x = NULL, *y = NULL;
    json_t *o = json_pack("{s:s, s:s, s:s}", "kty", "EC", "kid", kid,
                          "crv", crv);

    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    json_b64_bn(o, "x", x, c);
    json_b64_bn(o, "y", y, c);
    BN_free(x);
    BN_free(y);
    EVP_PKEY_free(pk);
    return o;
}

static void write_jwks(const char *name, json_t *keys)
{
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *s = json_dumps(doc, JSON_INDENT(1));
    write_file(name, s, strlen(s));
    free(s);
    json_decref(doc);
}

static void make_keys(void)
{
    static const char secret64[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/";
    json_t *keys;

    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
        "-out rsa.key && openssl pkey -in rsa.key -pubout -out rsa.pub");
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
        "-out rsa2.key && openssl pkey -in rsa2.key -pubout -out rsa2.pub");
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 "
        "-out rsa1024.key && openssl pkey -in rsa1024.key -pubout "
        "-out rsa1024.pub");
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
        "-out ec256.key && openssl pkey -in ec256.key -pubout -out ec256.pub");
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 "
        "-out ec384.key && openssl pkey -in ec384.key -pubout -out ec384.pub");
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 "
        "-out ec521.key && openssl pkey -in ec521.key -pubout -out ec521.pub");
    run("openssl genpkey -algorithm ED25519 -out ed.key && "
        "openssl pkey -in ed.key -pubout -out ed.pub");
    run("openssl req -x509 -key rsa.key -subj /CN=test -days 1 "
        "-out cert.pem");
    /* the PKCS#1 form ("BEGIN RSA PUBLIC KEY") of the same key */
    run("openssl rsa -in rsa.key -RSAPublicKey_out -out rsa-pkcs1.pub");

    write_file("secret64", secret64, 64);
    write_file("secret32", secret64, 32);
    write_file("secret31", secret64, 31);
    write_file("secret32nl", "0123456789abcdefghijklmnopqrstuv\n", 33);
    write_file("secret31nl", "0123456789abcdefghijklmnopqrstu\r\n", 33);
    write_file("empty", "", 0);
    write_file("garbage.pem", "-----BEGIN PUBLIC KEY-----\nnot base64\n"
               "-----END PUBLIC KEY-----\n", 63);

    keys = json_array();
    json_array_append_new(keys, jwk_rsa("rsa.pub", "rsa1"));
    json_array_append_new(keys, jwk_rsa("rsa2.pub", "rsa2"));
    json_array_append_new(keys, jwk_ec("ec256.pub", "ec1", "P-256", 32));
    json_array_append_new(keys, jwk_ec("ec384.pub", "ec2", "P-384", 48));
    json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s}", "kty",
                                          "oct", "kid", "hs1", "alg",
                                          "HS256", "k",
                                          b64u(secret64, 64, gp)));
    /* real JWKS documents also carry keys we must skip, not choke on */
    {
        json_t *enc = jwk_rsa("rsa2.pub", "enc1");
        json_object_set_new(enc, "use", json_string("enc"));
        json_array_append_new(keys, enc);
        enc = jwk_rsa("rsa2.pub", "oaep1");
        json_object_del(enc, "use");
        json_object_set_new(enc, "alg", json_string("RSA-OAEP"));
        json_array_append_new(keys, enc);
    }
    write_jwks("jwks.json", keys);
}

/* ----------------------------------------------------------- verifier -- */

static bff_jwt_conf_t conf_for(const char *algs)
{
    bff_jwt_conf_t c;
    memset(&c, 0, sizeof(c));
    ck_assert_ptr_null(bff_jwt_algs_parse(&c.algs, algs, tp));
    return c;
}

static bff_jwt_verifier_t *verifier(const bff_jwt_conf_t *c)
{
    bff_jwt_verifier_t *v = NULL;
    const char *err = bff_jwt_verifier_create(&v, c, tp);
    ck_assert_msg(err == NULL, "verifier: %s", err);
    return v;
}

static const char *create_err(const bff_jwt_conf_t *c)
{
    bff_jwt_verifier_t *v = NULL;
    const char *err = bff_jwt_verifier_create(&v, c, tp);
    ck_assert_msg(err != NULL, "verifier accepted a bad configuration");
    return err;
}

static bff_jwt_verifier_t *v_rs(void)
{
    bff_jwt_conf_t c = conf_for("RS256 RS384 RS512");
    c.pubkey_file = path("rsa.pub");
    return verifier(&c);
}

static bff_jwt_verifier_t *v_jwks(void)
{
    bff_jwt_conf_t c = conf_for("RS256 ES256 ES384 HS256");
    c.jwks_file = path("jwks.json");
    return verifier(&c);
}

static json_t *expect_at(const bff_jwt_verifier_t *v, bff_jwt_cache_t *cache,
                         const char *token, apr_int64_t now,
                         bff_jwt_status_e want, const char *why_has)
{
    json_t *claims = NULL;
    const char *why = NULL;
    bff_jwt_status_e st = bff_jwt_verify(&claims, &why, v, cache, token, now,
                                         tp);

    ck_assert_msg(st == want, "status %s (%s), expected %s",
                  bff_jwt_status_name(st), why ? why : "-",
                  bff_jwt_status_name(want));
    if (want == BFF_JWT_OK) {
        ck_assert_ptr_nonnull(claims);
    }
    else {
        ck_assert_ptr_null(claims);
        ck_assert_ptr_nonnull(why);
        if (why_has) {
            has(why, why_has);
        }
    }
    return claims;
}

static json_t *expect(const bff_jwt_verifier_t *v, const char *token,
                      bff_jwt_status_e want, const char *why_has)
{
    return expect_at(v, NULL, token, NOW, want, why_has);
}

static void setup(void)
{
    apr_pool_create(&tp, gp);
}

static void teardown(void)
{
    apr_pool_destroy(tp);
    tp = NULL;
}

/* ---------------------------------------------------------- JWT: algs -- */

START_TEST(algs_parse)
{
    unsigned m = 0;

    ck_assert_ptr_null(bff_jwt_algs_parse(&m, "RS256, ES256", tp));
    ck_assert_uint_eq(m, BFF_JWT_RS256 | BFF_JWT_ES256);
    has(bff_jwt_algs_parse(&m, "none", tp), "'none' is not supported");
    has(bff_jwt_algs_parse(&m, "ES512", tp), "supported: HS256");
    has(bff_jwt_algs_parse(&m, "rs256", tp), "not supported");
    has(bff_jwt_algs_parse(&m, " , ", tp), "no JWT algorithm");
    ck_assert_str_eq(bff_jwt_alg_name(BFF_JWT_ES384), "ES384");
}
END_TEST

START_TEST(every_alg_accepted)
{
    static const struct { const char *alg, *key, *pub; } t[] = {
        { "HS256", "secret64", NULL }, { "HS384", "secret64", NULL },
        { "HS512", "secret64", NULL }, { "RS256", "rsa.key", "rsa.pub" },
        { "RS384", "rsa.key", "rsa.pub" }, { "RS512", "rsa.key", "rsa.pub" },
        { "ES256", "ec256.key", "ec256.pub" },
        { "ES384", "ec384.key", "ec384.pub" },
    };
    apr_size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        bff_jwt_conf_t c = conf_for(t[i].alg);
        bff_jwt_verifier_t *v;
        const char *tok;
        json_t *claims;

        if (t[i].pub) {
            c.pubkey_file = path(t[i].pub);
        }
        else {
            c.secret_file = path(t[i].key);
        }
        v = verifier(&c);
        /* made by libjwt, and signed independently by hand */
        tok = lj(t[i].alg, t[i].key, NULL, claims_ok(NOW + 600));
        claims = expect(v, tok, BFF_JWT_OK, NULL);
        ck_assert_str_eq(json_string_value(json_object_get(claims, "sub")),
                         "user-1");
        tok = hand(t[i].alg, t[i].key,
                   apr_psprintf(tp, "{\"alg\":\"%s\",\"typ\":\"JWT\"}",
                                t[i].alg), claims_ok(NOW + 600));
        expect(v, tok, BFF_JWT_OK, NULL);
    }
}
END_TEST

START_TEST(jwks_every_kid)
{
    bff_jwt_verifier_t *v = v_jwks();
    json_t *claims;

    /* rsa1, rsa2, ec1, ec2, hs1; the enc and RSA-OAEP keys are skipped */
    ck_assert_int_eq(bff_jwt_verifier_nkeys(v), 5);
    claims = expect(v, lj("RS256", "rsa.key", "rsa1", claims_ok(NOW + 60)),
                    BFF_JWT_OK, NULL);
    ck_assert_ptr_nonnull(claims);
    expect(v, lj("RS256", "rsa2.key", "rsa2", claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    expect(v, lj("ES256", "ec256.key", "ec1", claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    expect(v, lj("ES384", "ec384.key", "ec2", claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    expect(v, lj("HS256", "secret64", "hs1", claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    /* right key material, wrong kid: the kid selects the key */
    expect(v, lj("RS256", "rsa.key", "rsa2", claims_ok(NOW + 60)),
           BFF_JWT_BAD_SIGNATURE, "kid \"rsa2\"");
    /* an allowed alg, but not one the named key may do */
    expect(v, lj("ES256", "ec256.key", "rsa1", claims_ok(NOW + 60)),
           BFF_JWT_UNSUPPORTED_ALG, "not a key for ES256");
}
END_TEST

/* ------------------------------------------------------ JWT: refusals -- */

START_TEST(alg_none)
{
    bff_jwt_verifier_t *v = v_rs();
    const char *body = b64u_str(claims_ok(NOW + 600));

    expect(v, apr_pstrcat(tp, b64u_str("{\"alg\":\"none\"}"), ".", body, ".",
                          NULL), BFF_JWT_UNSUPPORTED_ALG, "\"none\"");
    expect(v, apr_pstrcat(tp, b64u_str("{\"alg\":\"none\",\"typ\":\"JWT\"}"),
                          ".", body, ".AAAA", NULL),
           BFF_JWT_UNSUPPORTED_ALG, "not allowed");
    /* case games: libjwt would take "rs256", we do not */
    expect(v, hand("RS256", "rsa.key", "{\"alg\":\"rs256\"}",
                   claims_ok(NOW + 600)), BFF_JWT_UNSUPPORTED_ALG, NULL);
    /* duplicate "alg": parsers disagree on which one counts */
    expect(v, hand("RS256", "rsa.key",
                   "{\"alg\":\"RS256\",\"alg\":\"none\"}",
                   claims_ok(NOW + 600)), BFF_JWT_MALFORMED, "header");
    expect(v, hand("RS256", "rsa.key", "{\"typ\":\"JWT\"}",
                   claims_ok(NOW + 600)), BFF_JWT_MALFORMED, "no \"alg\"");
}
END_TEST

START_TEST(alg_confusion)
{
    bff_jwt_verifier_t *v = v_rs();
    const char *tok = hand("HS256", "rsa.pub", "{\"alg\":\"HS256\"}",
                           claims_ok(NOW + 600));
    apr_size_t len;
    char *pub = read_file("rsa.pub", &len);
    jwt_t *j = NULL;
    bff_jwt_conf_t c;

    /* The threat is real: libjwt 1.10 verifies this token with the RSA
     * public key's PEM bytes as HMAC secret. */
    ck_assert_int_eq(jwt_decode(&j, tok, (unsigned char *)pub, (int)len), 0);
    jwt_free(j);
    /* ... and with no key at all (the reason keys are never NULL). */
    ck_assert_int_eq(jwt_decode(&j, tok, NULL, 0), 0);
    jwt_free(j);

    expect(v, tok, BFF_JWT_UNSUPPORTED_ALG, "HS256");
    /* HS allowed too, with its own secret: the PEM is never the secret */
    c = conf_for("HS256 RS256");
    c.secret_file = path("secret64");
    c.pubkey_file = path("rsa.pub");
    v = verifier(&c);
    expect(v, tok, BFF_JWT_BAD_SIGNATURE, NULL);
    expect(v, lj("HS256", "secret64", NULL, claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    expect(v, lj("RS256", "rsa.key", NULL, claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    /* in a JWKS: an HS token naming an RSA key's kid */
    expect(v_jwks(), hand("HS256", "rsa.pub",
                          "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}",
                          claims_ok(NOW + 600)),
           BFF_JWT_UNSUPPORTED_ALG, "not a key for HS256");
}
END_TEST

START_TEST(time_claims)
{
    bff_jwt_conf_t c = conf_for("RS256");
    bff_jwt_verifier_t *v, *vl;
    const char *tok;

    c.pubkey_file = path("rsa.pub");
    v = verifier(&c);
    c.leeway = 30;
    vl = verifier(&c);

    tok = lj("RS256", "rsa.key", NULL, claims_ok(NOW - 10));
    expect(v, tok, BFF_JWT_EXPIRED, "is past");
    expect(vl, tok, BFF_JWT_OK, NULL);              /* within leeway */
    expect_at(vl, NULL, tok, NOW + 20, BFF_JWT_EXPIRED, "leeway 30s");
    /* exp is the first second the token is invalid */
    tok = lj("RS256", "rsa.key", NULL, claims_ok(NOW));
    expect(v, tok, BFF_JWT_EXPIRED, NULL);
    expect_at(v, NULL, tok, NOW - 1, BFF_JWT_OK, NULL);

    tok = lj("RS256", "rsa.key", NULL,
             apr_psprintf(tp, "{\"exp\":%" APR_INT64_T_FMT ",\"nbf\":%"
                          APR_INT64_T_FMT "}", NOW + 600, NOW + 20));
    expect(v, tok, BFF_JWT_NOT_YET_VALID, "in the future");
    expect(vl, tok, BFF_JWT_OK, NULL);
    expect_at(v, NULL, tok, NOW + 20, BFF_JWT_OK, NULL);
    /* fractional NumericDate */
    tok = lj("RS256", "rsa.key", NULL,
             apr_psprintf(tp, "{\"exp\":%" APR_INT64_T_FMT ".5}", NOW));
    expect(v, tok, BFF_JWT_OK, NULL);
    expect_at(v, NULL, tok, NOW + 1, BFF_JWT_EXPIRED, NULL);
}
END_TEST

START_TEST(claim_types)
{
    bff_jwt_verifier_t *v = v_rs();
    static const struct { const char *payload, *why; bff_jwt_status_e st; }
    t[] = {
        { "{\"exp\":\"2000000000\"}", "exp is not a number",
          BFF_JWT_BAD_CLAIM },
        { "{\"exp\":true}", "exp is not a number", BFF_JWT_BAD_CLAIM },
        { "{\"exp\":null}", "exp is not a number", BFF_JWT_BAD_CLAIM },
        { "{\"exp\":2000000000,\"nbf\":\"1\"}", "nbf", BFF_JWT_BAD_CLAIM },
        { "{\"exp\":2000000000,\"iat\":[1]}", "iat", BFF_JWT_BAD_CLAIM },
        { "{\"exp\":2000000000,\"sub\":42}", "sub", BFF_JWT_BAD_CLAIM },
        { "{\"exp\":2000000000,\"iss\":{}}", "iss", BFF_JWT_BAD_CLAIM },
        { "{\"exp\":2000000000,\"aud\":[\"a\",1]}", "aud",
          BFF_JWT_BAD_CLAIM },
        { "{\"exp\":2000000000,\"aud\":5}", "aud", BFF_JWT_BAD_CLAIM },
        { "{\"sub\":\"x\"}", "no exp", BFF_JWT_MISSING_EXP },
        { "[1,2]", "payload", BFF_JWT_MALFORMED },
        { "{\"exp\":1,\"exp\":2000000000}", "payload", BFF_JWT_MALFORMED },
        { "{\"exp\":2000000000", "payload", BFF_JWT_MALFORMED },
    };
    apr_size_t i;
    bff_jwt_conf_t c;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        expect(v, hand("RS256", "rsa.key", "{\"alg\":\"RS256\"}",
                       t[i].payload), t[i].st, t[i].why);
    }
    c = conf_for("RS256");
    c.pubkey_file = path("rsa.pub");
    c.exp_optional = 1;
    expect(verifier(&c), lj("RS256", "rsa.key", NULL, "{\"sub\":\"x\"}"),
           BFF_JWT_OK, NULL);
}
END_TEST

START_TEST(issuer_audience)
{
    bff_jwt_conf_t c = conf_for("RS256");
    apr_array_header_t *iss = apr_array_make(tp, 2, sizeof(const char *));
    bff_jwt_verifier_t *v;

    APR_ARRAY_PUSH(iss, const char *) = "https://other";
    APR_ARRAY_PUSH(iss, const char *) = "https://idp";
    c.pubkey_file = path("rsa.pub");
    c.issuers = iss;
    c.audience = "api";
    v = verifier(&c);

    expect(v, lj("RS256", "rsa.key", NULL, claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    expect(v, lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
           "{\"iss\":\"https://evil\",\"aud\":\"api\",\"exp\":%"
           APR_INT64_T_FMT "}", NOW + 60)), BFF_JWT_WRONG_ISSUER,
           "\"https://evil\"");
    expect(v, lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
           "{\"aud\":\"api\",\"exp\":%" APR_INT64_T_FMT "}", NOW + 60)),
           BFF_JWT_WRONG_ISSUER, "no iss");
    expect(v, lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
           "{\"iss\":\"https://idp\",\"aud\":\"apix\",\"exp\":%"
           APR_INT64_T_FMT "}", NOW + 60)), BFF_JWT_WRONG_AUDIENCE,
           "does not contain \"api\"");
    expect(v, lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
           "{\"iss\":\"https://idp\",\"aud\":[\"x\",\"y\"],\"exp\":%"
           APR_INT64_T_FMT "}", NOW + 60)), BFF_JWT_WRONG_AUDIENCE, NULL);
    expect(v, lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
           "{\"iss\":\"https://idp\",\"aud\":[],\"exp\":%"
           APR_INT64_T_FMT "}", NOW + 60)), BFF_JWT_WRONG_AUDIENCE, NULL);
    expect(v, lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
           "{\"iss\":\"https://idp\",\"exp\":%" APR_INT64_T_FMT "}",
           NOW + 60)), BFF_JWT_WRONG_AUDIENCE, "no aud");
    expect(v, lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
           "{\"iss\":\"https://idp\",\"aud\":[\"x\",\"api\"],\"exp\":%"
           APR_INT64_T_FMT "}", NOW + 60)), BFF_JWT_OK, NULL);
    /* client strings in reasons are bounded and printable */
    {
        json_t *claims = NULL;
        const char *why = NULL;
        bff_jwt_verify(&claims, &why, v, NULL,
                       lj("RS256", "rsa.key", NULL, apr_psprintf(tp,
                          "{\"iss\":\"%s\",\"exp\":%" APR_INT64_T_FMT "}",
                          "AAA\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                          NOW + 60)), NOW, tp);
        ck_assert_ptr_nonnull(why);
        ck_assert_ptr_null(strchr(why, '\n'));
        has(why, "AAA?AAA");
        has(why, "...");
    }
}
END_TEST

START_TEST(signature_tampering)
{
    bff_jwt_verifier_t *v = v_rs();
    const char *tok = lj("RS256", "rsa.key", NULL, claims_ok(NOW + 60));
    char *t2 = apr_pstrdup(tp, tok), *dot2 = strrchr(t2, '.');
    const char *payload2;

    /* signed by another key */
    expect(v, lj("RS256", "rsa2.key", NULL, claims_ok(NOW + 60)),
           BFF_JWT_BAD_SIGNATURE, "does not verify");
    /* one signature byte flipped */
    dot2[10] = dot2[10] == 'A' ? 'B' : 'A';
    expect(v, t2, BFF_JWT_BAD_SIGNATURE, NULL);
    /* payload replaced, signature kept */
    payload2 = b64u_str(apr_psprintf(tp, "{\"sub\":\"admin\",\"exp\":%"
                                     APR_INT64_T_FMT "}", NOW + 60));
    t2 = apr_pstrcat(tp, apr_pstrndup(tp, tok, (apr_size_t)
                                      (strchr(tok, '.') - tok + 1)),
                     payload2, strrchr(tok, '.'), NULL);
    expect(v, t2, BFF_JWT_BAD_SIGNATURE, NULL);
    /* truncated signature: refused on length, before any RSA */
    t2 = apr_pstrndup(tp, tok, strlen(tok) - 6);    /* 342 -> 336 chars */
    expect(v, t2, BFF_JWT_BAD_SIGNATURE, "252 bytes, RS256 with this key "
           "makes 256");
    /* non-zero unused bits: a second encoding of the same bytes */
    t2 = apr_pstrdup(tp, tok);
    t2[strlen(t2) - 1] = 'B';       /* 342 chars: the last has 4 spare bits */
    expect(v, t2, BFF_JWT_MALFORMED, "signature is not base64url");
    /* ES signature in DER instead of R || S */
    {
        bff_jwt_conf_t c = conf_for("ES256");
        const char *good = lj("ES256", "ec256.key", NULL,
                              claims_ok(NOW + 60));
        c.pubkey_file = path("ec256.pub");
        expect(verifier(&c), apr_pstrcat(tp, apr_pstrndup(tp, good,
               (apr_size_t)(strrchr(good, '.') - good)), ".",
               b64u_str("0D\002 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\002 "
                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), NULL),
               BFF_JWT_BAD_SIGNATURE, "ES256");
    }
}
END_TEST

START_TEST(kid_handling)
{
    bff_jwt_verifier_t *v = v_jwks();

    expect(v, lj("RS256", "rsa.key", "nope", claims_ok(NOW + 60)),
           BFF_JWT_UNKNOWN_KID, "\"nope\" is not in the JWKS");
    expect(v, lj("RS256", "rsa.key", NULL, claims_ok(NOW + 60)),
           BFF_JWT_UNKNOWN_KID, "no kid");
    /* skipped keys are not keys */
    expect(v, lj("RS256", "rsa2.key", "enc1", claims_ok(NOW + 60)),
           BFF_JWT_UNKNOWN_KID, NULL);
    expect(v, hand("RS256", "rsa.key", "{\"alg\":\"RS256\",\"kid\":7}",
                   claims_ok(NOW + 60)), BFF_JWT_MALFORMED, "kid");
    /* without a JWKS the kid is informational */
    expect(v_rs(), lj("RS256", "rsa.key", "whatever", claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
}
END_TEST

START_TEST(malformed_tokens)
{
    bff_jwt_verifier_t *v = v_rs();
    const char *good = lj("RS256", "rsa.key", NULL, claims_ok(NOW + 60));
    const char *h = b64u_str("{\"alg\":\"RS256\"}");
    const char *b = b64u_str(claims_ok(NOW + 60));
    char *big;
    bff_jwt_conf_t c;

    expect(v, "", BFF_JWT_MALFORMED, "three");
    expect(v, "abc", BFF_JWT_MALFORMED, "three");
    expect(v, apr_pstrcat(tp, h, ".", b, NULL), BFF_JWT_MALFORMED, "three");
    expect(v, apr_pstrcat(tp, good, ".x", NULL), BFF_JWT_MALFORMED, "three");
    expect(v, apr_pstrcat(tp, ".", b, ".AAAA", NULL), BFF_JWT_MALFORMED,
           "empty");
    expect(v, apr_pstrcat(tp, h, "..AAAA", NULL), BFF_JWT_MALFORMED,
           "empty");
    expect(v, apr_pstrcat(tp, h, ".", b, ".", NULL), BFF_JWT_MALFORMED,
           "empty signature");
    /* not base64url: '+', '/', '=', '*', spaces, a stray bit */
    expect(v, apr_pstrcat(tp, "eyJh+GciOiJSUzI1NiJ9.", b, ".AAAA", NULL),
           BFF_JWT_MALFORMED, "base64url");
    expect(v, apr_pstrcat(tp, h, "=.", b, ".AAAA", NULL), BFF_JWT_MALFORMED,
           "base64url");
    expect(v, apr_pstrcat(tp, h, ".", b, "*.AAAA", NULL), BFF_JWT_MALFORMED,
           "payload is not base64url");
    expect(v, apr_pstrcat(tp, h, ".", b, ".AA AA", NULL), BFF_JWT_MALFORMED,
           "signature is not base64url");
    expect(v, apr_pstrcat(tp, "eyJ.", b, ".AAAA", NULL), BFF_JWT_MALFORMED,
           NULL);
    expect(v, apr_pstrcat(tp, b64u_str("[\"alg\"]"), ".", b, ".AAAA", NULL),
           BFF_JWT_MALFORMED, "header");
    expect(v, apr_pstrcat(tp, b64u_str("{\"alg\":\"RS256\""), ".", b,
                          ".AAAA", NULL), BFF_JWT_MALFORMED, "header");
    expect(v, apr_pstrcat(tp, b64u_str("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]"
                                       "]]]]]]]]]]]]]]]]]]]]]]]]]"), ".", b,
                          ".AAAA", NULL), BFF_JWT_MALFORMED, "header");
    /* typ other than JWT (libjwt 1.10 would refuse it late), crit */
    expect(v, hand("RS256", "rsa.key",
                   "{\"alg\":\"RS256\",\"typ\":\"at+jwt\"}",
                   claims_ok(NOW + 60)), BFF_JWT_MALFORMED, "typ");
    expect(v, hand("RS256", "rsa.key", "{\"alg\":\"RS256\",\"typ\":\"jwt\"}",
                   claims_ok(NOW + 60)), BFF_JWT_OK, NULL);
    expect(v, hand("RS256", "rsa.key",
                   "{\"alg\":\"RS256\",\"crit\":[\"exp\"],\"exp\":1}",
                   claims_ok(NOW + 60)), BFF_JWT_MALFORMED, "crit");
    /* oversized: refused on length alone */
    big = apr_palloc(tp, 9001);
    memset(big, 'A', 9000);
    big[9000] = '\0';
    expect(v, big, BFF_JWT_OVERSIZED, "8192");
    expect(v, apr_pstrcat(tp, good, ".", big, NULL), BFF_JWT_OVERSIZED,
           NULL);
    c = conf_for("RS256");
    c.pubkey_file = path("rsa.pub");
    c.max_size = 100;
    expect(verifier(&c), good, BFF_JWT_OVERSIZED, "100 bytes");
    {
        json_t *claims = (json_t *)1;
        const char *why = NULL;
        ck_assert_int_eq(bff_jwt_verify(&claims, &why, v, NULL, NULL, NOW,
                                        tp), BFF_JWT_MALFORMED);
        ck_assert_ptr_null(claims);
    }
}
END_TEST

/* -------------------------------------------------- JWT: key loading -- */

START_TEST(key_refusals)
{
    bff_jwt_conf_t c;

    c = conf_for("HS256");
    c.secret_file = path("empty");
    has(create_err(&c), "is empty");
    c.secret_file = path("secret31");
    has(create_err(&c), "31 bytes, HS256 needs at least 32");
    c.secret_file = path("secret31nl");      /* 31 + CRLF */
    has(create_err(&c), "31 bytes");
    c.secret_file = path("secret32nl");      /* 32 + LF: fine */
    verifier(&c);
    c.secret_file = path("does-not-exist");
    has(create_err(&c), "cannot open");
    c.secret_file = tmpdir;
    has(create_err(&c), "not a regular file");
    c = conf_for("HS512");
    c.secret_file = path("secret32");
    has(create_err(&c), "HS512 needs at least 64");

    c = conf_for("RS256");
    c.pubkey_file = path("rsa.key");
    has(create_err(&c), "private key");
    c.pubkey_file = path("rsa1024.pub");
    has(create_err(&c), "1024 bits, at least 2048");
    c.pubkey_file = path("garbage.pem");
    has(create_err(&c), "no PEM public key");
    c.pubkey_file = path("empty");
    has(create_err(&c), "is empty");
    c.pubkey_file = path("cert.pem");
    has(create_err(&c), "certificate");
    /* PKCS#1 "BEGIN RSA PUBLIC KEY" is read, and handed to libjwt as SPKI */
    c.pubkey_file = path("rsa-pkcs1.pub");
    expect(verifier(&c), lj("RS256", "rsa.key", NULL, claims_ok(NOW + 60)),
           BFF_JWT_OK, NULL);
    c.pubkey_file = path("ec256.pub");
    has(create_err(&c), "verifies none of the allowed algorithms (RS256)");
    c = conf_for("ES256");
    c.pubkey_file = path("ec521.pub");
    has(create_err(&c), "curve");
    c.pubkey_file = path("ed.pub");
    has(create_err(&c), "not supported");
    c.pubkey_file = path("ec384.pub");       /* P-384 cannot do ES256 */
    has(create_err(&c), "verifies none of the allowed algorithms (ES256)");
    c = conf_for("ES256 ES384");
    c.pubkey_file = path("ec256.pub");
    has(create_err(&c), "ES384 is allowed");

    c = conf_for("HS256 RS256");
    c.pubkey_file = path("rsa.pub");
    has(create_err(&c), "HS algorithms need a secret");
    c = conf_for("RS256");
    c.secret_file = path("secret64");
    has(create_err(&c), "no HS algorithm is allowed");
    c = conf_for("RS256");
    has(create_err(&c), "no key configured");
    c.pubkey_file = path("rsa.pub");
    c.jwks_file = path("jwks.json");
    has(create_err(&c), "excludes");
    c = conf_for("RS256");
    c.pubkey_file = path("rsa.pub");
    c.leeway = -1;
    has(create_err(&c), "leeway");
}
END_TEST

static const char *jwks_err(const char *algs, const char *json)
{
    bff_jwt_conf_t c = conf_for(algs);
    write_file("t.jwks", json, strlen(json));
    c.jwks_file = path("t.jwks");
    return create_err(&c);
}

/* {"keys": keys} as text (keys is consumed) */
static const char *keys_doc(json_t *keys)
{
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, 0);
    const char *out = apr_pstrdup(tp, text);

    free(text);
    json_decref(doc);
    return out;
}

START_TEST(jwks_refusals)
{
    json_t *k;
    const char *s;
    const char *err;

    has(jwks_err("RS256", "{\"keys\":[]}"), "no \"keys\" array");
    has(jwks_err("RS256", "{\"keys\":[1"), "line 1");
    has(jwks_err("RS256", "{\"keys\":[1]}"), "key 1: not a JSON object");

    k = jwk_rsa("rsa.pub", "a");
    json_object_del(k, "kid");
    s = keys_doc(json_pack("[o]", k));
    has(jwks_err("RS256", s), "\"kid\" missing");

    k = json_pack("[o,o]", jwk_rsa("rsa.pub", "a"), jwk_rsa("rsa2.pub", "a"));
    s = keys_doc(k);
    has(jwks_err("RS256", s), "key 2 (kid \"a\"): duplicate");

    k = jwk_rsa("rsa.pub", "a");
    json_object_set_new(k, "d", json_string("AAAA"));
    s = keys_doc(json_pack("[o]", k));
    has(jwks_err("RS256", s), "private key material");

    k = jwk_rsa("rsa1024.pub", "small");
    s = keys_doc(json_pack("[o]", k));
    has(jwks_err("RS256", s), "1024 bits");

    k = jwk_ec("ec256.pub", "e", "P-256", 32);
    json_object_set_new(k, "y", json_string(b64u("0123456789abcdef0123456789"
                                                 "abcdef", 32, tp)));
    s = keys_doc(json_pack("[o]", k));
    has(jwks_err("ES256", s), "not a valid EC public key");

    k = jwk_ec("ec256.pub", "e", "P-256", 32);
    json_object_set_new(k, "crv", json_string("P-384"));
    s = keys_doc(json_pack("[o]", k));
    has(jwks_err("ES384", s), "48 bytes");

    k = jwk_ec("ec256.pub", "e", "P-256", 32);
    json_object_set_new(k, "x", json_string("!!"));
    s = keys_doc(json_pack("[o]", k));
    has(jwks_err("ES256", s), "\"x\" is not base64url");

    has(jwks_err("HS256", "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"h\","
                 "\"k\":\"c2hvcnQ\"}]}"), "5 bytes, HS256 needs");
    has(jwks_err("RS256", "{\"keys\":[{\"kty\":\"OKP\",\"kid\":\"o\"}]}"),
        "\"OKP\" is not supported");
    k = jwk_rsa("rsa.pub", "r");
    json_object_set_new(k, "alg", json_string("ES256"));
    s = keys_doc(json_pack("[o]", k));
    has(jwks_err("RS256 ES256", s), "key 1 (kid \"r\"): its \"alg\" ES256 "
        "does not fit");
    has(jwks_err("RS256", "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"o\","
                 "\"n\":\"AQAB\",\"e\":\"AQAB\"}]}"), "17 bits");
    has(jwks_err("RS256", "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"o\","
                 "\"n\":\"AQAB\",\"e\":\"AQAA\"}]}"), "exponent");
    /* only keys for other algorithms: nothing usable */
    err = jwks_err("ES384", "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"h\","
                   "\"k\":\"c2hvcnQ\"}]}");
    has(err, "no key usable with the allowed algorithms (ES384)");
}
END_TEST

START_TEST(fingerprints)
{
    bff_jwt_conf_t c = conf_for("RS256");
    bff_jwt_verifier_t *a, *b, *d;

    c.pubkey_file = path("rsa.pub");
    a = verifier(&c);
    b = verifier(&c);
    c.audience = "other";
    d = verifier(&c);
    ck_assert_int_eq(memcmp(bff_jwt_verifier_fingerprint(a),
                            bff_jwt_verifier_fingerprint(b), 32), 0);
    ck_assert_int_ne(memcmp(bff_jwt_verifier_fingerprint(a),
                            bff_jwt_verifier_fingerprint(d), 32), 0);
}
END_TEST

/* -------------------------------------------------------- JWT: claims -- */

START_TEST(claim_helpers)
{
    json_t *c = bff_json_pool_own(json_loads(
        "{\"scope\":\"orders:read  profile\",\"scp\":[\"ignored\"],"
        "\"realm_access\":{\"roles\":[\"admin\",\"user\"]},"
        "\"https://ex.com/roles\":\"ns\",\"n\":42,\"f\":1.5,\"b\":true,"
        "\"evil\":\"a\\r\\nX-Injected: 1\",\"nul\":\"a\\u0000b\","
        "\"mixed\":[\"a\",2,true],\"deep\":[[1]],\"obj\":{}}", JSON_ALLOW_NUL,
        NULL), tp);
    apr_array_header_t *a;

    ck_assert_ptr_nonnull(c);
    a = bff_jwt_scopes(c, tp);
    ck_assert_int_eq(a->nelts, 2);
    ck_assert_str_eq(APR_ARRAY_IDX(a, 0, const char *), "orders:read");
    ck_assert_str_eq(APR_ARRAY_IDX(a, 1, const char *), "profile");
    ck_assert(bff_jwt_has_scope(c, "profile", tp));
    ck_assert(!bff_jwt_has_scope(c, "ignored", tp));
    json_object_del(c, "scope");
    ck_assert(bff_jwt_has_scope(c, "ignored", tp));
    json_object_del(c, "scp");
    ck_assert_int_eq(bff_jwt_scopes(c, tp)->nelts, 0);

    a = bff_jwt_claim_strings(c, "realm_access.roles", tp);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->nelts, 2);
    ck_assert_str_eq(APR_ARRAY_IDX(a, 1, const char *), "user");
    a = bff_jwt_claim_strings(c, "https://ex.com/roles", tp);
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(APR_ARRAY_IDX(a, 0, const char *), "ns");
    ck_assert_ptr_null(bff_jwt_claim_strings(c, "mixed", tp));
    ck_assert_ptr_null(bff_jwt_claim(c, "realm_access..roles"));
    ck_assert_ptr_null(bff_jwt_claim(c, "realm_access.roles.x"));
    ck_assert_ptr_null(bff_jwt_claim(c, "realm_access."));
    ck_assert_ptr_null(bff_jwt_claim(c, ""));

    ck_assert_str_eq(bff_jwt_claim_header(c, "realm_access.roles", ",", tp),
                     "admin,user");
    ck_assert_str_eq(bff_jwt_claim_header(c, "n", ",", tp), "42");
    ck_assert_str_eq(bff_jwt_claim_header(c, "f", ",", tp), "1.5");
    ck_assert_str_eq(bff_jwt_claim_header(c, "b", ",", tp), "true");
    ck_assert_str_eq(bff_jwt_claim_header(c, "mixed", " ", tp), "a 2 true");
    ck_assert_ptr_null(bff_jwt_claim_header(c, "evil", ",", tp));
    ck_assert_ptr_null(bff_jwt_claim_header(c, "nul", ",", tp));
    ck_assert_ptr_null(bff_jwt_claim_header(c, "deep", ",", tp));
    ck_assert_ptr_null(bff_jwt_claim_header(c, "obj", ",", tp));
    ck_assert_ptr_null(bff_jwt_claim_header(c, "missing", ",", tp));
}
END_TEST

/* identity headers: a claim arrives intact or the token is refused */
static bff_claim_status_e enc(const char **out, const char *json,
                              const char *sep)
{
    json_error_t e;
    json_t *c = bff_json_pool_own(json_loads(json, JSON_ALLOW_NUL, &e), tp);

    ck_assert_ptr_nonnull(c);
    *out = NULL;
    return bff_jwt_claim_encode(out, c, "v", sep, tp);
}

START_TEST(claim_encode)
{
    const char *v;
    char big[5000];

    ck_assert_int_eq(enc(&v, "{\"v\":\"alice\"}", ","), BFF_CLAIM_OK);
    ck_assert_str_eq(v, "alice");
    ck_assert_int_eq(enc(&v, "{\"v\":\"Doe, John\"}", ","), BFF_CLAIM_OK);
    ck_assert_str_eq(v, "Doe, John");      /* a scalar may hold the separator */
    ck_assert_int_eq(enc(&v, "{\"v\":[\"a\",2,false,1.5]}", ";"), BFF_CLAIM_OK);
    ck_assert_str_eq(v, "a;2;false;1.5");
    ck_assert_int_eq(enc(&v, "{\"v\":[]}", ","), BFF_CLAIM_OK);
    ck_assert_str_eq(v, "");
    ck_assert_int_eq(enc(&v, "{\"v\":[\"a,b\"]}", ";"), BFF_CLAIM_OK);
    ck_assert_str_eq(v, "a,b");
    ck_assert_int_eq(enc(&v, "{\"v\":\"caf\u00e9\"}", ","), BFF_CLAIM_OK);

    ck_assert_int_eq(enc(&v, "{}", ","), BFF_CLAIM_MISSING);
    ck_assert_int_eq(enc(&v, "{\"v\":null}", ","), BFF_CLAIM_MISSING);
    ck_assert_int_eq(enc(&v, "{\"v\":\"a\\r\\nX: 1\"}", ","), BFF_CLAIM_CONTROL);
    ck_assert_int_eq(enc(&v, "{\"v\":\"a\\tb\"}", ","), BFF_CLAIM_CONTROL);
    ck_assert_int_eq(enc(&v, "{\"v\":\"a\\u0000b\"}", ","), BFF_CLAIM_CONTROL);
    ck_assert_int_eq(enc(&v, "{\"v\":\"a\\u007f\"}", ","), BFF_CLAIM_CONTROL);
    ck_assert_int_eq(enc(&v, "{\"v\":[\"ok\",\"a\\nb\"]}", ","), BFF_CLAIM_CONTROL);
    ck_assert_int_eq(enc(&v, "{\"v\":\" admin\"}", ","), BFF_CLAIM_SPACE);
    ck_assert_int_eq(enc(&v, "{\"v\":\"admin \"}", ","), BFF_CLAIM_SPACE);
    ck_assert_int_eq(enc(&v, "{\"v\":[\"a\",\" b\"]}", ","), BFF_CLAIM_SPACE);
    ck_assert_int_eq(enc(&v, "{\"v\":{\"a\":1}}", ","), BFF_CLAIM_STRUCTURE);
    ck_assert_int_eq(enc(&v, "{\"v\":[[\"a\"]]}", ","), BFF_CLAIM_STRUCTURE);
    ck_assert_int_eq(enc(&v, "{\"v\":[{\"a\":1}]}", ","), BFF_CLAIM_STRUCTURE);
    ck_assert_int_eq(enc(&v, "{\"v\":[null]}", ","), BFF_CLAIM_STRUCTURE);
    ck_assert_int_eq(enc(&v, "{\"v\":[\"a,b\",\"c\"]}", ","), BFF_CLAIM_SEPARATOR);
    ck_assert_int_eq(enc(&v, "{\"v\":[\"a\",\"b::c\"]}", "::"), BFF_CLAIM_SEPARATOR);
    ck_assert_ptr_null(v);

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(enc(&v, apr_psprintf(tp, "{\"v\":\"%s\"}", big), ","),
                     BFF_CLAIM_TOO_LONG);
    ck_assert_int_eq(enc(&v, apr_psprintf(tp, "{\"v\":\"%.4096s\"}", big), ","),
                     BFF_CLAIM_OK);
    ck_assert_int_eq(enc(&v, apr_psprintf(tp, "{\"v\":[\"%.3000s\",\"%.3000s\"]}",
                                          big, big), ","), BFF_CLAIM_TOO_LONG);
    ck_assert_str_eq(bff_claim_status_text(BFF_CLAIM_SEPARATOR),
                     "array element containing the separator");
}
END_TEST

/* --------------------------------------------------------- JWT: cache -- */

START_TEST(cache_hit)
{
    bff_jwt_verifier_t *v = v_rs();
    bff_jwt_cache_t *cache;
    bff_jwt_cache_stats_t st;
    const char *tok = lj("RS256", "rsa.key", NULL, claims_ok(NOW + 100));
    json_t *c1, *c2;

    ck_assert_ptr_null(bff_jwt_cache_create(&cache, 16, 3600, tp));
    c1 = expect_at(v, cache, tok, NOW, BFF_JWT_OK, NULL);
    c2 = expect_at(v, cache, tok, NOW + 99, BFF_JWT_OK, NULL);
    ck_assert(json_equal(c1, c2));
    ck_assert_ptr_ne(c1, c2);            /* each caller owns its copy */
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_uint_eq(st.misses, 1);
    ck_assert_uint_eq(st.entries, 1);
    /* never past exp: at exp the entry is dropped and the token refused */
    expect_at(v, cache, tok, NOW + 100, BFF_JWT_EXPIRED, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_uint_eq(st.entries, 0);
    /* failures are never cached */
    expect_at(v, cache, "x.y.z", NOW, BFF_JWT_MALFORMED, NULL);
    expect_at(v, cache, "x.y.z", NOW, BFF_JWT_MALFORMED, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.entries, 0);
}
END_TEST

START_TEST(cache_bounded)
{
    bff_jwt_verifier_t *v = v_rs();
    bff_jwt_cache_t *cache;
    bff_jwt_cache_stats_t st;
    const char *toks[10];
    int i;

    ck_assert_ptr_null(bff_jwt_cache_create(&cache, 4, 3600, tp));
    for (i = 0; i < 10; i++) {
        toks[i] = lj("RS256", "rsa.key", NULL, claims_ok(NOW + 100 + i));
        expect_at(v, cache, toks[i], NOW, BFF_JWT_OK, NULL);
    }
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.entries, 4);
    ck_assert_uint_eq(st.capacity, 4);
    ck_assert_uint_eq(st.evictions, 6);
    /* the last four are there */
    for (i = 6; i < 10; i++) {
        expect_at(v, cache, toks[i], NOW, BFF_JWT_OK, NULL);
    }
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 4);
    /* CLOCK: referenced entries survive the next insertion */
    expect_at(v, cache, toks[0], NOW, BFF_JWT_OK, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.entries, 4);
    ck_assert_uint_eq(st.evictions, 7);

    has(bff_jwt_cache_create(&cache, 0, 60, tp), "entries");
    has(bff_jwt_cache_create(&cache, 4, 0, tp), "lifetime");
}
END_TEST

START_TEST(cache_ttl_and_verifiers)
{
    bff_jwt_conf_t c = conf_for("RS256");
    bff_jwt_verifier_t *va, *vb, *vo;
    bff_jwt_cache_t *cache;
    bff_jwt_cache_stats_t st;
    const char *tok;

    c.pubkey_file = path("rsa.pub");
    c.audience = "api";
    va = verifier(&c);
    c.audience = "other";
    vb = verifier(&c);
    ck_assert_ptr_null(bff_jwt_cache_create(&cache, 8, 30, tp));

    /* a token valid for va must not pass vb through the shared cache */
    tok = lj("RS256", "rsa.key", NULL, claims_ok(NOW + 3600));
    expect_at(va, cache, tok, NOW, BFF_JWT_OK, NULL);
    expect_at(vb, cache, tok, NOW, BFF_JWT_WRONG_AUDIENCE, NULL);
    /* max_ttl bounds entries of long-lived tokens */
    expect_at(va, cache, tok, NOW + 29, BFF_JWT_OK, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 1);
    expect_at(va, cache, tok, NOW + 30, BFF_JWT_OK, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 1);

    /* tokens without exp (when allowed) live max_ttl */
    c.audience = NULL;
    c.exp_optional = 1;
    vo = verifier(&c);
    tok = lj("RS256", "rsa.key", NULL, "{\"sub\":\"x\"}");
    expect_at(vo, cache, tok, NOW, BFF_JWT_OK, NULL);
    expect_at(vo, cache, tok, NOW + 29, BFF_JWT_OK, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 2);
}
END_TEST

/* A key set without a key (a JWKS refreshed by URL) gives a verifier of
 * another fingerprint, so a cached token of the removed key misses the
 * cache and is refused at once. */
START_TEST(cache_key_removed)
{
    bff_jwt_conf_t c = conf_for("RS256");
    bff_jwt_verifier_t *v1, *v2;
    bff_jwt_cache_t *cache;
    bff_jwt_cache_stats_t st;
    json_t *keys = json_array();
    const char *tok = lj("RS256", "rsa.key", "rsa1", claims_ok(NOW + 3600));
    const char *tok2 = lj("RS256", "rsa2.key", "rsa2", claims_ok(NOW + 3600));

    json_array_append_new(keys, jwk_rsa("rsa.pub", "rsa1"));
    json_array_append_new(keys, jwk_rsa("rsa2.pub", "rsa2"));
    write_jwks("rot1.json", keys);
    keys = json_array();
    json_array_append_new(keys, jwk_rsa("rsa2.pub", "rsa2"));
    write_jwks("rot2.json", keys);
    c.jwks_file = path("rot1.json");
    v1 = verifier(&c);
    c.jwks_file = path("rot2.json");
    v2 = verifier(&c);
    ck_assert(memcmp(bff_jwt_verifier_fingerprint(v1),
                     bff_jwt_verifier_fingerprint(v2), 32) != 0);
    ck_assert_ptr_null(bff_jwt_cache_create(&cache, 8, 300, tp));

    expect_at(v1, cache, tok, NOW, BFF_JWT_OK, NULL);
    expect_at(v1, cache, tok, NOW + 1, BFF_JWT_OK, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 1);
    /* after the rotation: the removed key's token is refused ... */
    expect_at(v2, cache, tok, NOW + 2, BFF_JWT_UNKNOWN_KID, NULL);
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits, 1);
    /* ... and the remaining key's tokens verify */
    expect_at(v2, cache, tok2, NOW + 2, BFF_JWT_OK, NULL);
}
END_TEST

typedef struct {
    const bff_jwt_verifier_t *v;
    bff_jwt_cache_t *cache;
    const char **toks;
    int ntoks, iterations, failures;
} cache_thread_t;

static void *cache_worker(void *arg)
{
    cache_thread_t *w = arg;
    apr_pool_t *p;
    int i;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    for (i = 0; i < w->iterations; i++) {
        json_t *claims;
        const char *why;
        if (bff_jwt_verify(&claims, &why, w->v, w->cache,
                           w->toks[(i * 7 + w->ntoks / 2) % w->ntoks], NOW, p)
            != BFF_JWT_OK
            || strcmp(json_string_value(json_object_get(claims, "sub")),
                      "user-1")) {
            w->failures++;
        }
        if (i % 16 == 15) {
            apr_pool_clear(p);
        }
    }
    apr_pool_destroy(p);
    return NULL;
}

START_TEST(cache_threads)
{
    bff_jwt_conf_t c = conf_for("HS256");
    bff_jwt_verifier_t *v;
    bff_jwt_cache_t *cache;
    bff_jwt_cache_stats_t st;
    const char *toks[24];
    cache_thread_t w[4];
    pthread_t th[4];
    int i;

    c.secret_file = path("secret64");
    v = verifier(&c);
    ck_assert_ptr_null(bff_jwt_cache_create(&cache, 8, 3600, tp));
    for (i = 0; i < 24; i++) {
        toks[i] = lj("HS256", "secret64", NULL, claims_ok(NOW + 100 + i));
    }
    for (i = 0; i < 4; i++) {
        w[i].v = v;
        w[i].cache = cache;
        w[i].toks = toks;
        w[i].ntoks = 24 - i;
        w[i].iterations = 2000;
        w[i].failures = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, cache_worker, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].failures, 0);
    }
    bff_jwt_cache_stats(&st, cache);
    ck_assert_uint_eq(st.hits + st.misses, 8000);
    ck_assert_uint_le(st.entries, 8);
}
END_TEST

/* ------------------------------------------------------------ API keys -- */

#define H_TEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

START_TEST(apikey_hash)
{
    char hex[65];

    bff_apikey_hash(hex, "test", 4);
    ck_assert_str_eq(hex, H_TEST);      /* printf %s test | sha256sum */
    bff_apikey_hash(hex, "", 0);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb924"
                          "27ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(apikey_lookup)
{
    char h1[65], h2[65], h3[65];
    const char *text;
    bff_apikeys_t *k;
    const bff_apikey_t *e;

    bff_apikey_hash(h1, "key-one", 7);
    bff_apikey_hash(h2, "key-two", 7);
    bff_apikey_hash(h3, "key-three", 9);
    /* upper-case hex works too */
    {
        int i;
        for (i = 0; h3[i]; i++) {
            h3[i] = (char)apr_toupper(h3[i]);
        }
    }
    text = apr_psprintf(tp, "# partners\n\n  acme   %s  gold\r\n"
                        "\tglobex\t%s\n# c\nx.y@z:1 %s free", h1, h2, h3);
    ck_assert_ptr_null(bff_apikeys_parse(&k, text, strlen(text), "keys", tp));
    ck_assert_int_eq(bff_apikeys_count(k), 3);
    e = bff_apikeys_lookup(k, "key-one", 7);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->consumer, "acme");
    ck_assert_str_eq(e->plan, "gold");
    ck_assert_int_eq(e->line, 3);
    e = bff_apikeys_lookup(k, "key-two", 7);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->consumer, "globex");
    ck_assert_ptr_null(e->plan);
    e = bff_apikeys_lookup(k, "key-three", 9);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->consumer, "x.y@z:1");
    ck_assert_ptr_null(bff_apikeys_lookup(k, "key-on", 6));
    ck_assert_ptr_null(bff_apikeys_lookup(k, "", 0));
    ck_assert_ptr_null(bff_apikeys_lookup(k, NULL, 0));
    ck_assert_ptr_null(bff_apikeys_lookup(k, H_TEST, 64));

    write_file("keys.txt", text, strlen(text));
    ck_assert_ptr_null(bff_apikeys_load(&k, path("keys.txt"), tp));
    ck_assert_int_eq(bff_apikeys_count(k), 3);
    has(bff_apikeys_load(&k, path("nope.txt"), tp), "API keys file");
    ck_assert_ptr_null(bff_apikeys_parse(&k, "", 0, "empty", tp));
    ck_assert_int_eq(bff_apikeys_count(k), 0);
}
END_TEST

START_TEST(apikey_check_name)
{
    char big[70];

    ck_assert_ptr_null(bff_apikey_check_name("acme", 4, 0));
    ck_assert_ptr_null(bff_apikey_check_name("x.y@z:1", 7, 0));
    ck_assert_ptr_null(bff_apikey_check_name("gold", 4, 1));
    ck_assert_ptr_nonnull(bff_apikey_check_name("x@y", 3, 1));
    ck_assert_ptr_nonnull(bff_apikey_check_name("", 0, 0));
    ck_assert_ptr_nonnull(bff_apikey_check_name(NULL, 0, 1));
    ck_assert_ptr_nonnull(bff_apikey_check_name("a b", 3, 0));
    ck_assert_ptr_nonnull(bff_apikey_check_name("a\x01", 2, 0));
    ck_assert_ptr_nonnull(bff_apikey_check_name("a\nX: 1", 6, 0));
    ck_assert_ptr_nonnull(bff_apikey_check_name("a\0b", 3, 0));   /* NUL */
    ck_assert_ptr_nonnull(bff_apikey_check_name("caf\xc3\xa9", 5, 0));
    memset(big, 'a', sizeof(big));
    ck_assert_ptr_null(bff_apikey_check_name(big, 64, 0));
    ck_assert_ptr_nonnull(bff_apikey_check_name(big, 65, 0));
    ck_assert_ptr_nonnull(bff_apikey_check_name(big, 65, 1));
}
END_TEST

static const char *keys_err(const char *text)
{
    bff_apikeys_t *k = NULL;
    const char *err = bff_apikeys_parse(&k, text, strlen(text), "F", tp);
    ck_assert_msg(err != NULL, "accepted: %s", text);
    return err;
}

START_TEST(apikey_errors)
{
    has(keys_err("a " H_TEST "\nb\n"), "F line 2: expected");
    has(keys_err("#\na " H_TEST " p extra\n"), "F line 2: more than 3");
    has(keys_err("a 9f86d0818\n"), "line 1: '9f86d0818' is not a SHA-256");
    has(keys_err("a " H_TEST "0\n"), "not a SHA-256");
    has(keys_err("a 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15"
                 "b0f00a0g\n"), "non-hex");
    has(keys_err("a/b " H_TEST "\n"), "consumer 'a/b' has a character");
    has(keys_err("a " H_TEST " g@ld\n"), "plan 'g@ld'");
    has(keys_err("a " H_TEST "\n\na 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
                 "2b0b822cd15d6c15b0f00a09\n"),
        "line 3: consumer 'a' already defined on line 1");
    has(keys_err("a " H_TEST "\nb " H_TEST "\n"),
        "line 2: the same key hash as consumer 'a' on line 1");
    has(keys_err("a " H_TEST "\nb \xc3\xa9 x\n"), "line 2: control or "
        "non-ASCII");
    has(keys_err("a " H_TEST "\nb\x01 x\n"), "control");
    has(keys_err("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "aa " H_TEST "\n"), "longer than 64");
    {
        bff_apikeys_t *k;
        has(bff_apikeys_parse(&k, "a\0b", 3, "F", tp), "NUL");
    }
}
END_TEST

/* -------------------------------------------------------------- bucket -- */

START_TEST(bucket_parse)
{
    bff_bucket_conf_t c;

    ck_assert_ptr_null(bff_bucket_parse_rate(&c, "100/1m", tp));
    ck_assert_int_eq(c.capacity, 100);
    ck_assert_int_eq(c.rate_tokens, 100);
    ck_assert_int_eq(c.rate_ms, 60000);
    ck_assert_ptr_null(bff_bucket_parse_rate(&c, "10/s", tp));
    ck_assert_int_eq(c.rate_ms, 1000);
    ck_assert_ptr_null(bff_bucket_parse_rate(&c, "5/250ms", tp));
    ck_assert_int_eq(c.rate_ms, 250);
    ck_assert_ptr_null(bff_bucket_parse_rate(&c, "1/h", tp));
    ck_assert_int_eq(c.rate_ms, 3600000);
    has(bff_bucket_parse_rate(&c, "100", tp), "expected N/DURATION");
    has(bff_bucket_parse_rate(&c, "/1m", tp), "expected N/DURATION");
    has(bff_bucket_parse_rate(&c, "x/1m", tp), "not a count");
    has(bff_bucket_parse_rate(&c, "0/1m", tp), "positive");
    has(bff_bucket_parse_rate(&c, "10/1y", tp), "unknown unit");
    has(bff_bucket_parse_rate(&c, "10/0s", tp), "positive");
    has(bff_bucket_parse_rate(&c, "999999999999/1h", tp), "2^53");
}
END_TEST

START_TEST(bucket_burst_and_refill)
{
    bff_bucket_conf_t c = { 10, 1, 1000 };    /* 10 burst, 1/s */
    bff_bucket_state_t st = { 0, 0 };
    bff_bucket_result_t r;
    apr_int64_t t = 5000000;
    int i;

    for (i = 0; i < 10; i++) {
        bff_bucket_take(&r, &st, &c, t, 1);
        ck_assert(r.allowed);
        ck_assert_int_eq(r.remaining, 9 - i);
        ck_assert_int_eq(r.limit, 10);
        ck_assert_int_eq(r.reset_ms, (i + 1) * 1000);
    }
    bff_bucket_take(&r, &st, &c, t, 1);
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.remaining, 0);
    ck_assert_int_eq(r.retry_after_ms, 1000);
    ck_assert_int_eq(r.reset_ms, 10000);
    /* 999 ms later: still not one token */
    bff_bucket_take(&r, &st, &c, t + 999, 1);
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.retry_after_ms, 1);
    bff_bucket_take(&r, &st, &c, t + 1000, 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 0);
    /* 2.5 s: two whole tokens, half a token kept */
    bff_bucket_take(&r, &st, &c, t + 3500, 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 1);
    ck_assert_int_eq(r.reset_ms, 8500);
    /* cost */
    bff_bucket_take(&r, &st, &c, t + 3500, 2);
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.retry_after_ms, 500);
    bff_bucket_take(&r, &st, &c, t + 3500, 0);          /* report only */
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 1);
    bff_bucket_take(&r, &st, &c, t + 3500, 11);         /* never */
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.retry_after_ms, -1);
    /* a clock going back refills nothing and keeps last */
    bff_bucket_take(&r, &st, &c, t, 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(st.last_ms, t + 3500);
    bff_bucket_take(&r, &st, &c, t + 4000, 1);
    ck_assert(r.allowed);               /* 0.5 left + 0.5 refilled */
    ck_assert_int_eq(r.remaining, 0);
    bff_bucket_take(&r, &st, &c, t + 4000, 1);
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.retry_after_ms, 1000);
    /* a long absence fills the bucket without overflowing */
    bff_bucket_take(&r, &st, &c, APR_INT64_C(4000000000000000000), 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 9);
}
END_TEST

START_TEST(bucket_fractional)
{
    bff_bucket_conf_t c = { 3, 2, 3000 };     /* 2 tokens per 3 s */
    bff_bucket_state_t st = { 0, 0 };
    bff_bucket_result_t r;
    apr_int64_t t = 1000;
    int i;

    for (i = 0; i < 3; i++) {
        bff_bucket_take(&r, &st, &c, t, 1);
        ck_assert(r.allowed);
    }
    /* 1 s gives 2/3 of a token: need 1/3 more, i.e. 500 ms */
    bff_bucket_take(&r, &st, &c, t + 1000, 1);
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.retry_after_ms, 500);
    bff_bucket_take(&r, &st, &c, t + 1499, 1);
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.retry_after_ms, 1);
    bff_bucket_take(&r, &st, &c, t + 1500, 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(st.level, 0);
    ck_assert_int_eq(r.reset_ms, 4500);
    /* over a long run exactly 2 per 3 s pass (no drift) */
    {
        int allowed = 0;
        apr_int64_t now;
        for (now = t + 1501; now <= t + 1500 + 300000; now += 7) {
            bff_bucket_take(&r, &st, &c, now, 1);
            allowed += r.allowed;
        }
        ck_assert_int_eq(allowed, 200);
    }
}
END_TEST

START_TEST(bucket_headers_and_share)
{
    bff_bucket_conf_t c = { 100, 100, 60000 }, s;
    bff_bucket_state_t st = { 0, 0 };
    bff_bucket_result_t r;
    bff_bucket_headers_t h;
    int i;

    bff_bucket_take(&r, &st, &c, 1000000, 1);
    bff_bucket_headers(&h, "per-minute", &c, &r, tp);
    ck_assert_str_eq(h.policy, "\"per-minute\";q=100;w=60");
    ck_assert_str_eq(h.ratelimit, "\"per-minute\";r=99;t=1");
    ck_assert_str_eq(h.x_limit, "100");
    ck_assert_str_eq(h.x_remaining, "99");
    ck_assert_str_eq(h.x_reset, "1");
    ck_assert_ptr_null(h.retry_after);
    for (i = 0; i < 99; i++) {
        bff_bucket_take(&r, &st, &c, 1000000, 1);
    }
    bff_bucket_take(&r, &st, &c, 1000000, 1);
    ck_assert(!r.allowed);
    bff_bucket_headers(&h, "q\"\\\n", &c, &r, tp);
    ck_assert_str_eq(h.policy, "\"q\\\"\\\\?\";q=100;w=60");
    ck_assert_str_eq(h.ratelimit, "\"q\\\"\\\\?\";r=0;t=60");
    ck_assert_str_eq(h.retry_after, "1");
    ck_assert_str_eq(h.x_reset, "60");
    bff_bucket_take(&r, &st, &c, 1000000, 1000);
    bff_bucket_headers(&h, NULL, &c, &r, tp);
    ck_assert_str_eq(h.retry_after, "60");
    has(h.policy, "\"default\"");

    bff_bucket_conf_share(&s, &c, 3);
    ck_assert_int_eq(s.capacity, 33);
    ck_assert_int_eq(s.rate_tokens, 100);
    ck_assert_int_eq(s.rate_ms, 180000);
    ck_assert_ptr_null(bff_bucket_conf_check(&s, tp));
    bff_bucket_conf_share(&s, &c, 1);
    ck_assert_int_eq(s.capacity, 100);
    ck_assert_int_eq(s.rate_ms, 60000);
    c.capacity = 2;
    bff_bucket_conf_share(&s, &c, 5);
    ck_assert_int_eq(s.capacity, 1);
    ck_assert_int_eq(s.rate_ms, 300000);
    /* near the exact limit the token count is divided instead */
    c.capacity = 1;
    c.rate_tokens = 10;
    c.rate_ms = (APR_INT64_C(1) << 52);
    ck_assert_ptr_null(bff_bucket_conf_check(&c, tp));
    bff_bucket_conf_share(&s, &c, 4);
    ck_assert_int_eq(s.rate_ms, c.rate_ms);
    ck_assert_int_eq(s.rate_tokens, 2);
    ck_assert_ptr_null(bff_bucket_conf_check(&s, tp));
}
END_TEST

/* ------------------------------------------------------------- leases -- */

typedef struct {
    int calls;
    apr_int64_t tokens;
    char keys[64];
} drained_t;

static void drained(void *baton, const char *key, apr_int64_t avail,
                    const bff_bucket_conf_t *conf)
{
    drained_t *d = baton;

    d->calls++;
    d->tokens += avail;
    ck_assert_int_eq(conf->capacity, 100);
    apr_cpystrn(d->keys + strlen(d->keys), key, sizeof(d->keys) - strlen(d->keys));
}

START_TEST(lease_table)
{
    const bff_bucket_conf_t conf = { 100, 100, 60000 };  /* 600 ms a token */
    bff_bucket_result_t leased = { 1, 100, 80, 0, 12000 }, r;
    bff_lease_table_t *t = bff_lease_table_create(2, tp);
    apr_int64_t refund;
    drained_t d = { 0, 0, "" };
    apr_time_t now = apr_time_from_sec(1000);

    ck_assert_ptr_nonnull(t);
    /* nothing held: no token, nothing to refund */
    ck_assert_int_eq(bff_lease_use(t, &r, &refund, "a", now), 0);
    ck_assert_int_eq(refund, 0);
    /* 3 tokens kept: handed out one by one, each counted as remaining */
    bff_lease_keep(t, "a", 3, &leased, &conf, now + 1000);
    ck_assert_int_eq(bff_lease_use(t, &r, &refund, "a", now), 1);
    ck_assert_int_eq(r.remaining, 82);
    ck_assert_int_eq(r.reset_ms, 12000 - 2 * 600);
    ck_assert_int_eq(bff_lease_use(t, &r, &refund, "a", now), 1);
    ck_assert_int_eq(r.remaining, 81);
    ck_assert_int_eq(bff_lease_use(t, &r, &refund, "a", now), 1);
    ck_assert_int_eq(r.remaining, 80);
    /* spent: the next call goes to Redis, nothing to give back */
    ck_assert_int_eq(bff_lease_use(t, &r, &refund, "a", now), 0);
    ck_assert_int_eq(refund, 0);
    ck_assert_int_eq(bff_lease_count(t), 0);
    /* expired with 5 unused: they are refunded */
    bff_lease_keep(t, "a", 5, &leased, &conf, now + 10);
    ck_assert_int_eq(bff_lease_use(t, &r, &refund, "a", now + 10), 0);
    ck_assert_int_eq(refund, 5);
    /* a lease another thread took meanwhile is topped up */
    bff_lease_keep(t, "a", 2, &leased, &conf, now + 1000);
    bff_lease_keep(t, "a", 2, &leased, &conf, now + 1000);
    /* bounded: a third key is not kept */
    bff_lease_keep(t, "b", 4, &leased, &conf, now + 1000);
    bff_lease_keep(t, "c", 4, &leased, &conf, now + 1000);
    ck_assert_int_eq(bff_lease_count(t), 2);
    ck_assert_int_eq(bff_lease_use(t, &r, &refund, "c", now), 0);
    /* held tokens never make reset_ms negative */
    r.remaining = 0;
    r.reset_ms = 100;
    bff_lease_held(&r, 10, &conf);
    ck_assert_int_eq(r.reset_ms, 0);
    ck_assert_int_eq(r.remaining, 10);
    /* drain: the live leases, then an empty table */
    ck_assert_int_eq(bff_lease_drain(t, now, drained, &d), 1);
    ck_assert_int_eq(d.calls, 2);
    ck_assert_int_eq(d.tokens, 8);
    ck_assert(strchr(d.keys, 'a') && strchr(d.keys, 'b'));
    ck_assert_int_eq(bff_lease_count(t), 0);
    /* expired leases are not given back at drain */
    bff_lease_keep(t, "a", 2, &leased, &conf, now + 10);
    d.calls = 0;
    ck_assert_int_eq(bff_lease_drain(t, now + 10, drained, &d), 1);
    ck_assert_int_eq(d.calls, 0);
}
END_TEST

/* --------------------------------------------------------------- Redis -- */

static redisContext *rconn(void)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(!c->err, "redis connect: %s", c->errstr);
    redisSetTimeout(c, tv);
    return c;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* The Redis layer on the test server, as the rate limiter uses it. */
static bff_redis_t *rlayer(int port, apr_pool_t *p)
{
    bff_redis_opts_t o;
    bff_redis_t *rd;
    const char *err;

    bff_redis_opts_default(&o);
    o.connect_timeout_ms = 2000;
    o.command_timeout_ms = 2000;
    o.pool_max = 4;
    err = bff_redis_create(&rd, apr_psprintf(p, "redis://127.0.0.1:%d",
                                             port), &o, p);
    ck_assert_msg(err == NULL, "redis layer: %s", err);
    return rd;
}

static void rtake(bff_bucket_result_t *r, bff_redis_t *c, const char *key,
                  const bff_bucket_conf_t *conf, apr_int64_t now,
                  apr_int64_t cost)
{
    const char *err = bff_bucket_redis_take(r, c, key, strlen(key), conf,
                                            now, cost, tp);
    ck_assert_msg(err == NULL, "redis take: %s", err);
}

START_TEST(redis_script_sha)
{
    unsigned char h[20];
    char hex[41];
    int i;
    redisContext *c = rconn();
    redisReply *r;

    SHA1((const unsigned char *)BFF_BUCKET_LUA, strlen(BFF_BUCKET_LUA), h);
    for (i = 0; i < 20; i++) {
        sprintf(hex + 2 * i, "%02x", h[i]);
    }
    ck_assert_str_eq(hex, BFF_BUCKET_LUA_SHA1);
    r = cmd(c, "SCRIPT LOAD %s", BFF_BUCKET_LUA);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, BFF_BUCKET_LUA_SHA1);
    freeReplyObject(r);
    redisFree(c);
}
END_TEST

static apr_int64_t rlease(bff_bucket_result_t *r, bff_redis_t *c,
                          const char *key, const bff_bucket_conf_t *conf,
                          apr_int64_t now, apr_int64_t lease,
                          apr_int64_t refund)
{
    apr_int64_t granted = -1;
    const char *err = bff_bucket_redis_lease(r, &granted, c, key, strlen(key),
                                             conf, now, 1, lease, refund, tp);
    ck_assert_msg(err == NULL, "redis lease: %s", err);
    return granted;
}

START_TEST(redis_lease)
{
    /* 20 per minute; the clock stands still at t so nothing refills */
    const bff_bucket_conf_t conf = { 20, 20, 60000 };
    const apr_int64_t t = 1700000000000;
    redisContext *c = rconn();
    bff_redis_t *rd = rlayer(redis_port, tp);
    bff_bucket_result_t r;
    apr_int64_t total = 0, g;
    redisReply *rep = cmd(c, "DEL l:a l:b");
    freeReplyObject(rep);

    /* extra tokens come from the upper half only */
    ck_assert_int_eq(rlease(&r, rd, "l:a", &conf, t, 5, 0), 5);
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 15);
    ck_assert_int_eq(rlease(&r, rd, "l:a", &conf, t, 5, 0), 5);
    ck_assert_int_eq(r.remaining, 10);
    /* the lower half: one token per call, as without a lease */
    ck_assert_int_eq(rlease(&r, rd, "l:a", &conf, t, 5, 0), 1);
    ck_assert_int_eq(r.remaining, 9);
    /* unused tokens come back first: 9 + 4 = 13, take 1, then the 2
     * above half */
    ck_assert_int_eq(rlease(&r, rd, "l:a", &conf, t, 5, 4), 3);
    ck_assert_int_eq(r.remaining, 10);
    /* a refund never fills past the capacity */
    ck_assert_int_eq(rlease(&r, rd, "l:a", &conf, t, 1, 1000), 1);
    ck_assert_int_eq(r.remaining, 19);

    /* however the tokens are leased, a bucket gives out its capacity and
     * not one token more */
    for (;;) {
        g = rlease(&r, rd, "l:b", &conf, t, 7, 0);
        if (!r.allowed) {
            ck_assert_int_eq(g, 0);
            ck_assert_int_gt(r.retry_after_ms, 0);
            break;
        }
        ck_assert_int_ge(g, 1);
        total += g;
        ck_assert_int_le(total, 20);
    }
    ck_assert_int_eq(total, 20);
    /* the exact call keeps working on a leased bucket */
    rtake(&r, rd, "l:b", &conf, t, 1);
    ck_assert(!r.allowed);
    redisFree(c);
}
END_TEST

START_TEST(redis_matches_c)
{
    /* The same random sequence through C and Lua: identical answers. */
    static const bff_bucket_conf_t confs[] = {
        { 10, 1, 1000 }, { 3, 2, 3000 }, { 100, 100, 60000 }, { 7, 13, 17 },
        { 1, 1, 3600000 },
    };
    redisContext *c = rconn();
    bff_redis_t *rd = rlayer(redis_port, tp);
    apr_size_t k;
    unsigned seed = 12345;

    for (k = 0; k < sizeof(confs) / sizeof(confs[0]); k++) {
        bff_bucket_state_t st = { 0, 0 };
        apr_int64_t now = 1700000000000;
        const char *key = apr_psprintf(tp, "t:match:%d", (int)k);
        int i;

        freeReplyObject(cmd(c, "DEL %s", key));
        for (i = 0; i < 300; i++) {
            bff_bucket_result_t a, b;
            apr_int64_t cost = rand_r(&seed) % 4;
            now += rand_r(&seed) % (i % 50 == 49 ? 100000 : 700);
            bff_bucket_take(&a, &st, &confs[k], now, cost);
            rtake(&b, rd, key, &confs[k], now, cost);
            ck_assert_msg(a.allowed == b.allowed && a.remaining == b.remaining
                          && a.retry_after_ms == b.retry_after_ms
                          && a.reset_ms == b.reset_ms,
                          "conf %d step %d: C %d/%lld/%lld/%lld, Lua "
                          "%d/%lld/%lld/%lld", (int)k, i, a.allowed,
                          (long long)a.remaining, (long long)a.retry_after_ms,
                          (long long)a.reset_ms, b.allowed,
                          (long long)b.remaining, (long long)b.retry_after_ms,
                          (long long)b.reset_ms);
        }
    }
    redisFree(c);
}
END_TEST

START_TEST(redis_refill_ttl_noscript)
{
    bff_bucket_conf_t conf = { 5, 1, 1000 };
    bff_bucket_result_t r;
    redisContext *c = rconn();
    bff_redis_t *rd = rlayer(redis_port, tp);
    redisReply *rep;
    apr_int64_t t = 1700000000000;
    int i;

    freeReplyObject(cmd(c, "DEL t:refill"));
    for (i = 0; i < 5; i++) {
        rtake(&r, rd, "t:refill", &conf, t, 1);
        ck_assert(r.allowed);
    }
    rtake(&r, rd, "t:refill", &conf, t, 1);
    ck_assert(!r.allowed);
    ck_assert_int_eq(r.retry_after_ms, 1000);
    ck_assert_int_eq(r.limit, 5);
    rep = cmd(c, "PTTL t:refill");
    ck_assert_int_ge(rep->integer, 5000);
    ck_assert_int_le(rep->integer, 6000);
    freeReplyObject(rep);
    rtake(&r, rd, "t:refill", &conf, t + 2500, 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 1);

    /* the script cache is gone: EVAL steps in, and caches it again */
    freeReplyObject(cmd(c, "SCRIPT FLUSH"));
    rep = cmd(c, "SCRIPT EXISTS %s", BFF_BUCKET_LUA_SHA1);
    ck_assert_int_eq(rep->element[0]->integer, 0);
    freeReplyObject(rep);
    rtake(&r, rd, "t:refill", &conf, t + 2500, 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 0);
    rep = cmd(c, "SCRIPT EXISTS %s", BFF_BUCKET_LUA_SHA1);
    ck_assert_int_eq(rep->element[0]->integer, 1);
    freeReplyObject(rep);

    /* Redis time: a fresh key starts full */
    freeReplyObject(cmd(c, "DEL t:time"));
    rtake(&r, rd, "t:time", &conf, -1, 1);
    ck_assert(r.allowed);
    ck_assert_int_eq(r.remaining, 4);

    /* a key of the wrong type is an error, not a crash */
    freeReplyObject(cmd(c, "SET t:str x"));
    has(bff_bucket_redis_take(&r, rd, "t:str", 5, &conf, t, 1, tp),
        "WRONGTYPE");
    redisFree(c);
}
END_TEST

typedef struct {
    bff_redis_t *rd;
    const char *key;
    apr_int64_t now;
    int calls, allowed;
    const char *err;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    bff_bucket_conf_t conf = { 100, 100, 3600000 };   /* 100 per hour */
    apr_pool_t *p;
    int i;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    for (i = 0; i < h->calls; i++) {
        bff_bucket_result_t r;
        const char *err = bff_bucket_redis_take(&r, h->rd, h->key,
                                                strlen(h->key), &conf,
                                                h->now, 1, p);
        if (err) {
            h->err = "redis error";
            break;
        }
        h->allowed += r.allowed;
    }
    apr_pool_destroy(p);
    return NULL;
}

static void hammer_run(const char *key, apr_int64_t now)
{
    redisContext *c = rconn();
    hammer_t h[2];
    pthread_t th[2];
    int i;

    bff_redis_t *rd = rlayer(redis_port, tp);

    freeReplyObject(cmd(c, "DEL %s", key));
    redisFree(c);
    for (i = 0; i < 2; i++) {
        h[i].rd = rd;
        h[i].key = key;
        h[i].now = now;
        h[i].calls = 150;
        h[i].allowed = 0;
        h[i].err = NULL;
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &h[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(h[i].err == NULL, "%s", h[i].err);
    }
    ck_assert_int_eq(h[0].allowed + h[1].allowed, 100);
}

START_TEST(redis_exact_under_concurrency)
{
    hammer_run("t:hammer:fixed", 1700000000000);    /* caller's clock */
    hammer_run("t:hammer:time", -1);                /* Redis TIME */
}
END_TEST

/* API keys kept in Redis: every answer the lookup can give. */
START_TEST(redis_apikey_lookup)
{
    redisContext *c = rconn();
    bff_redis_t *rd = rlayer(redis_port, tp);
    const char *consumer, *plan, *why;

    freeReplyObject(cmd(c, "DEL k:ok k:noplan k:nocons k:badplan k:str"));
    freeReplyObject(cmd(c, "HSET k:ok consumer acme plan gold"));
    freeReplyObject(cmd(c, "HSET k:noplan consumer acme"));
    freeReplyObject(cmd(c, "HSET k:nocons plan gold"));
    freeReplyObject(cmd(c, "HSET k:badplan consumer acme plan %s", "no space"));
    freeReplyObject(cmd(c, "SET k:str x"));
    redisFree(c);

    ck_assert_int_eq(bff_apikey_redis_lookup(&consumer, &plan, &why, rd,
                                             "k:ok", tp), BFF_APIKEY_FOUND);
    ck_assert_str_eq(consumer, "acme");
    ck_assert_str_eq(plan, "gold");
    ck_assert_int_eq(bff_apikey_redis_lookup(&consumer, &plan, &why, rd,
                                             "k:noplan", tp), BFF_APIKEY_FOUND);
    ck_assert_ptr_null(plan);
    ck_assert_int_eq(bff_apikey_redis_lookup(&consumer, &plan, &why, rd,
                                             "k:none", tp), BFF_APIKEY_UNKNOWN);
    ck_assert_int_eq(bff_apikey_redis_lookup(&consumer, &plan, &why, rd,
                                             "k:nocons", tp),
                     BFF_APIKEY_MALFORMED);
    has(why, "no consumer");
    ck_assert_int_eq(bff_apikey_redis_lookup(&consumer, &plan, &why, rd,
                                             "k:badplan", tp),
                     BFF_APIKEY_MALFORMED);
    has(why, "plan: ");
    ck_assert_ptr_null(consumer);
    ck_assert_int_eq(bff_apikey_redis_lookup(&consumer, &plan, &why, rd,
                                             "k:str", tp),
                     BFF_APIKEY_MALFORMED);
    has(why, "WRONGTYPE");
}
END_TEST

START_TEST(redis_unreachable)
{
    bff_bucket_conf_t conf = { 5, 1, 1000 };
    bff_bucket_result_t r;
    int port = free_port();
    bff_redis_t *rd;

    if (port_open(port)) {
        return;             /* someone took the port: nothing to test */
    }
    rd = rlayer(port, tp);
    has(bff_bucket_redis_take(&r, rd, "k", 1, &conf, 1, 1, tp),
        "connect to redis 127.0.0.1");
    /* then it fails fast, without connecting, until the back-off ends */
    has(bff_bucket_redis_take(&r, rd, "k", 1, &conf, 1, 1, tp), "down");
    {
        const char *consumer, *plan, *why;
        ck_assert_int_eq(bff_apikey_redis_lookup(&consumer, &plan, &why, rd,
                                                 "k", tp), BFF_APIKEY_DOWN);
        has(why, "down");
    }
}
END_TEST

/* ----------------------------------------------------------------- main -- */

START_TEST(jwks_max_age)
{
    ck_assert_int_eq(bff_jwks_max_age(NULL), -1);
    ck_assert_int_eq(bff_jwks_max_age(""), -1);
    ck_assert_int_eq(bff_jwks_max_age("public, max-age=300"), 300);
    ck_assert_int_eq(bff_jwks_max_age("Max-Age = 60 , must-revalidate"), 60);
    ck_assert_int_eq(bff_jwks_max_age("max-age=\"120\""), 120);
    ck_assert_int_eq(bff_jwks_max_age("s-maxage=10"), -1);
    ck_assert_int_eq(bff_jwks_max_age("private"), -1);
    ck_assert_int_eq(bff_jwks_max_age("max-age=abc"), -1);
    ck_assert_int_eq(bff_jwks_max_age("max-age=12x"), -1);
    ck_assert_int_eq(bff_jwks_max_age("max-age="), -1);
    ck_assert_int_eq(bff_jwks_max_age("max-age=0"), 0);
    ck_assert_int_eq(bff_jwks_max_age("no-store, max-age=300"), -1);
    ck_assert_int_eq(bff_jwks_max_age("max-age=300, no-cache"), -1);
    ck_assert(bff_jwks_max_age("max-age=99999999999999999999") > 0);
}
END_TEST

/* A verifier from JWKS text in memory (a key set fetched by URL): the
 * same keys as the file give the same fingerprint; errors name the
 * source given; text and file exclude each other. */
START_TEST(jwks_from_text)
{
    bff_jwt_conf_t c = conf_for("RS256");
    bff_jwt_verifier_t *vt, *vf;
    json_t *keys = json_array(), *doc;
    char *text;
    const char *tok = lj("RS256", "rsa.key", "rsa1", claims_ok(NOW + 3600));
    const char *err;

    json_array_append_new(keys, jwk_rsa("rsa.pub", "rsa1"));
    doc = json_pack("{s:o}", "keys", keys);
    text = json_dumps(doc, JSON_COMPACT);
    write_file("text.json", text, strlen(text));
    c.jwks_text = apr_pstrdup(tp, text);
    c.jwks_len = strlen(text);
    c.jwks_what = "JWKS of https://idp.test/keys";
    vt = verifier(&c);
    ck_assert_int_eq(bff_jwt_verifier_nkeys(vt), 1);
    expect_at(vt, NULL, tok, NOW, BFF_JWT_OK, NULL);
    /* kids are required as with a file */
    expect_at(vt, NULL, lj("RS256", "rsa.key", "other", claims_ok(NOW + 3600)),
              NOW, BFF_JWT_UNKNOWN_KID, "not in the JWKS");
    memset(&c, 0, sizeof(c));
    c = conf_for("RS256");
    c.jwks_file = path("text.json");
    vf = verifier(&c);
    ck_assert(memcmp(bff_jwt_verifier_fingerprint(vt),
                     bff_jwt_verifier_fingerprint(vf), 32) == 0);
    /* both sources: refused */
    c.jwks_text = text;
    c.jwks_len = strlen(text);
    err = create_err(&c);
    ck_assert_msg(strstr(err, "excludes a JWKS by URL"), "%s", err);
    free(text);
    json_decref(doc);

    /* broken text: the error names the source */
    c = conf_for("RS256");
    c.jwks_text = "{\"keys\":[";
    c.jwks_len = strlen(c.jwks_text);
    c.jwks_what = "JWKS of https://idp.test/keys";
    err = create_err(&c);
    ck_assert_msg(!strncmp(err, "JWKS of https://idp.test/keys: line 1", 37),
                  "%s", err);
    c.jwks_text = "{\"keys\":[]}";
    c.jwks_len = strlen(c.jwks_text);
    c.jwks_what = NULL;
    err = create_err(&c);
    ck_assert_msg(!strcmp(err, "JWKS: no \"keys\" array"), "%s", err);
    /* the length counts, not a NUL: a truncated document is refused */
    c.jwks_text = "{\"keys\":[]}";
    c.jwks_len = 5;
    err = create_err(&c);
    ck_assert_msg(strstr(err, "line 1"), "%s", err);
}
END_TEST

START_TEST(jwks_urls)
{
    const char *uri = NULL, *err;

    ck_assert_ptr_null(bff_jwks_url_check("https://idp.test/keys"));
    ck_assert_ptr_null(bff_jwks_url_check("HTTPS://127.0.0.1:8443/k?x=1"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("http://idp.test/keys"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("ftp://idp.test/keys"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("https:///keys"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("https://:443/keys"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("https://u:p@idp.test/keys"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("https://idp.test/k#f"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("https://idp.test/k x"));
    ck_assert_ptr_nonnull(bff_jwks_url_check("https://idp.test/k\r\n"));
    /* an @ in the path is no user info */
    ck_assert_ptr_null(bff_jwks_url_check("https://idp.test/a@b"));

    ck_assert(bff_jwks_is_discovery(
        "https://idp.test/realms/x/.well-known/openid-configuration"));
    ck_assert(bff_jwks_is_discovery(
        "https://idp.test/.well-known/openid-configuration?p=1"));
    ck_assert(!bff_jwks_is_discovery("https://idp.test/certs"));
    ck_assert(!bff_jwks_is_discovery(
        "https://idp.test/.well-known/openid-configuration/x"));

#define DISC(s) bff_jwks_discovery(&uri, s, strlen(s), tp)
    ck_assert_ptr_null(DISC("{\"issuer\":\"https://idp.test\","
                            "\"jwks_uri\":\"https://idp.test/certs\"}"));
    ck_assert_str_eq(uri, "https://idp.test/certs");
    uri = NULL;
    err = DISC("{\"jwks_uri\":\"http://idp.test/certs\"}");
    ck_assert_msg(err && strstr(err, "jwks_uri: not an https:// URL"), "%s",
                  err);
    err = DISC("{\"issuer\":\"https://idp.test\"}");
    ck_assert_msg(err && strstr(err, "no \"jwks_uri\" string"), "%s", err);
    err = DISC("{\"jwks_uri\":42}");
    ck_assert_msg(err && strstr(err, "no \"jwks_uri\" string"), "%s", err);
    /* jansson refuses an escaped NUL in a string */
    err = DISC("{\"jwks_uri\":\"https://a/\\u0000x\"}");
    ck_assert_msg(err && strstr(err, "discovery document: line 1"), "%s", err);
    err = DISC("[\"https://idp.test/certs\"]");
    ck_assert_msg(err && strstr(err, "not a JSON object"), "%s", err);
    err = DISC("{\"jwks_uri\":\"https://a/\",\"jwks_uri\":\"https://b/\"}");
    ck_assert_msg(err && strstr(err, "discovery document: line 1"), "%s", err);
    err = DISC("<html>");
    ck_assert_msg(err && strstr(err, "discovery document: line 1"), "%s", err);
    ck_assert_ptr_null(uri);
#undef DISC
}
END_TEST

START_TEST(jwks_schedule)
{
    bff_jwks_sched_t s = { 300000, 60000, 86400000, 30000 };
    apr_time_t now = apr_time_from_sec(1000000), last = 0;

    /* no max-age: the configured interval */
    ck_assert(bff_jwks_next_due(&s, 1, NULL, now)
              == now + apr_time_from_sec(300));
    ck_assert(bff_jwks_next_due(&s, 1, "public", now)
              == now + apr_time_from_sec(300));
    /* max-age within bounds, below min, above max */
    ck_assert(bff_jwks_next_due(&s, 1, "max-age=3600", now)
              == now + apr_time_from_sec(3600));
    ck_assert(bff_jwks_next_due(&s, 1, "max-age=5", now)
              == now + apr_time_from_sec(60));
    ck_assert(bff_jwks_next_due(&s, 1, "max-age=9999999", now)
              == now + apr_time_from_sec(86400));
    ck_assert(bff_jwks_next_due(&s, 1, "no-store", now)
              == now + apr_time_from_sec(300));
    /* failure: retry after min, whatever the header */
    ck_assert(bff_jwks_next_due(&s, 0, "max-age=3600", now)
              == now + apr_time_from_sec(60));
    /* unknown kid: one early refresh per kid_ms */
    ck_assert(bff_jwks_kid_refresh(&s, &last, now));
    ck_assert(last == now);
    ck_assert(!bff_jwks_kid_refresh(&s, &last, now));
    ck_assert(!bff_jwks_kid_refresh(&s, &last, now + apr_time_from_sec(29)));
    ck_assert(last == now);
    ck_assert(bff_jwks_kid_refresh(&s, &last, now + apr_time_from_sec(30)));
    ck_assert(last == now + apr_time_from_sec(30));
    /* a clock that went back does not block refreshes for good */
    ck_assert(bff_jwks_kid_refresh(&s, &last, now));
}
END_TEST

/* ------------------------------------------------------ token sources -- */

START_TEST(token_source_parse)
{
    bff_token_src_t src;

    ck_assert_ptr_null(bff_token_source_parse(&src, "Bearer", tp));
    ck_assert_int_eq(src.kind, BFF_TOKEN_BEARER);
    ck_assert_ptr_null(src.name);
    ck_assert_ptr_null(bff_token_source_parse(&src, "cookie:bff_token", tp));
    ck_assert_int_eq(src.kind, BFF_TOKEN_COOKIE);
    ck_assert_str_eq(src.name, "bff_token");
    ck_assert_ptr_null(bff_token_source_parse(&src, "query:access_token", tp));
    ck_assert_int_eq(src.kind, BFF_TOKEN_QUERY);
    ck_assert_ptr_null(bff_token_source_parse(&src, "HEADER:X-Token", tp));
    ck_assert_int_eq(src.kind, BFF_TOKEN_HEADER);
    ck_assert_str_eq(src.name, "X-Token");
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "url:x", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "cookie:", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "cookie:a;b", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "header:a b", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "query:a&b", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "query:a=b", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "query:a%20", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "queryx:a", tp));
    ck_assert_ptr_nonnull(bff_token_source_parse(&src, "bearerx", tp));
}
END_TEST

START_TEST(token_bearer)
{
    ck_assert_str_eq(bff_token_bearer("Bearer abc"), "abc");
    ck_assert_str_eq(bff_token_bearer("bearer   abc"), "abc");
    ck_assert_ptr_null(bff_token_bearer("Bearer "));
    ck_assert_ptr_null(bff_token_bearer("Basic abc"));
    ck_assert_ptr_null(bff_token_bearer("Bearerabc"));
    ck_assert_ptr_null(bff_token_bearer(NULL));
}
END_TEST

START_TEST(token_cookie)
{
    const char *rest = "x";

    ck_assert_str_eq(bff_token_cookie(&rest, "a=b; t=TOK; c=d", "t", tp),
                     "TOK");
    ck_assert_str_eq(rest, "a=b; c=d");
    /* the only cookie: nothing remains */
    ck_assert_str_eq(bff_token_cookie(&rest, "t=TOK", "t", tp), "TOK");
    ck_assert_ptr_null(rest);
    /* quoted, no spaces, and a second cookie of the same name removed too */
    ck_assert_str_eq(bff_token_cookie(&rest, "t=\"Q\";a=1;t=second", "t", tp),
                     "Q");
    ck_assert_str_eq(rest, "a=1");
    /* names are exact: a prefix or a longer name is another cookie */
    ck_assert_ptr_null(bff_token_cookie(&rest, "tt=1; t2=2; T=3", "t", tp));
    ck_assert_str_eq(rest, "tt=1; t2=2; T=3");
    /* empty value: no token, the cookie still removed */
    ck_assert_ptr_null(bff_token_cookie(&rest, "t=; a=1", "t", tp));
    ck_assert_str_eq(rest, "a=1");
    ck_assert_ptr_null(bff_token_cookie(&rest, NULL, "t", tp));
    ck_assert_ptr_null(rest);
    ck_assert_ptr_null(bff_token_cookie(&rest, " ; ;", "t", tp));
    ck_assert_ptr_null(rest);
}
END_TEST

START_TEST(token_query)
{
    const char *rest = "x";

    ck_assert_str_eq(bff_token_query(&rest, "a=1&access_token=TOK&b=2",
                                     "access_token", tp), "TOK");
    ck_assert_str_eq(rest, "a=1&b=2");
    ck_assert_str_eq(bff_token_query(&rest, "access_token=TOK",
                                     "access_token", tp), "TOK");
    ck_assert_ptr_null(rest);
    /* decoded value; every parameter of the name removed, first one used */
    ck_assert_str_eq(bff_token_query(&rest, "t=a%2Eb+c&x=%41&t=2", "t", tp),
                     "a.b c");
    ck_assert_str_eq(rest, "x=%41");
    /* an encoded name is the same parameter */
    ck_assert_str_eq(bff_token_query(&rest, "%74=abc&y", "t", tp), "abc");
    ck_assert_str_eq(rest, "y");
    /* empty parameters are left out: nothing remains, not "" */
    ck_assert_str_eq(bff_token_query(&rest, "&t=abc&&", "t", tp), "abc");
    ck_assert_ptr_null(rest);
    ck_assert_ptr_null(bff_token_query(&rest, "a&&b", "t", tp));
    ck_assert_str_eq(rest, "a&b");
    /* other names stay as they were */
    ck_assert_ptr_null(bff_token_query(&rest, "tt=1&t2=2&T=3", "t", tp));
    ck_assert_str_eq(rest, "tt=1&t2=2&T=3");
    /* no value, an empty one, broken escapes, control characters: no
     * token, and the parameter is gone all the same */
    ck_assert_ptr_null(bff_token_query(&rest, "t&a=1", "t", tp));
    ck_assert_str_eq(rest, "a=1");
    ck_assert_ptr_null(bff_token_query(&rest, "t=&a=1", "t", tp));
    ck_assert_str_eq(rest, "a=1");
    ck_assert_ptr_null(bff_token_query(&rest, "t=ab%4", "t", tp));
    ck_assert_ptr_null(rest);
    ck_assert_ptr_null(bff_token_query(&rest, "t=ab%zz", "t", tp));
    ck_assert_ptr_null(bff_token_query(&rest, "t=a%00b", "t", tp));
    ck_assert_ptr_null(bff_token_query(&rest, "t=a%0Ab", "t", tp));
    ck_assert_ptr_null(bff_token_query(&rest, NULL, "t", tp));
    ck_assert_ptr_null(rest);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *jwt = tcase_create("jwt"), *keys = tcase_create("keys");
    TCase *cache = tcase_create("cache"), *api = tcase_create("apikey");
    TCase *bucket = tcase_create("bucket"), *redis = tcase_create("redis");
    TCase *token = tcase_create("token");
    TCase *all[] = { jwt, keys, cache, api, bucket, redis, token };
    apr_size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        tcase_add_checked_fixture(all[i], setup, teardown);
        tcase_set_timeout(all[i], 60);
        suite_add_tcase(s, all[i]);
    }
    tcase_add_test(jwt, algs_parse);
    tcase_add_test(jwt, every_alg_accepted);
    tcase_add_test(jwt, jwks_every_kid);
    tcase_add_test(jwt, alg_none);
    tcase_add_test(jwt, alg_confusion);
    tcase_add_test(jwt, time_claims);
    tcase_add_test(jwt, claim_types);
    tcase_add_test(jwt, issuer_audience);
    tcase_add_test(jwt, signature_tampering);
    tcase_add_test(jwt, kid_handling);
    tcase_add_test(jwt, malformed_tokens);
    tcase_add_test(jwt, claim_helpers);
    tcase_add_test(jwt, claim_encode);
    tcase_add_test(keys, key_refusals);
    tcase_add_test(keys, jwks_refusals);
    tcase_add_test(keys, fingerprints);
    tcase_add_test(keys, jwks_max_age);
    tcase_add_test(keys, jwks_schedule);
    tcase_add_test(keys, jwks_from_text);
    tcase_add_test(keys, jwks_urls);
    tcase_add_test(cache, cache_hit);
    tcase_add_test(cache, cache_bounded);
    tcase_add_test(cache, cache_ttl_and_verifiers);
    tcase_add_test(cache, cache_key_removed);
    tcase_add_test(cache, cache_threads);
    tcase_add_test(api, apikey_hash);
    tcase_add_test(api, apikey_lookup);
    tcase_add_test(api, apikey_check_name);
    tcase_add_test(api, apikey_errors);
    tcase_add_test(bucket, bucket_parse);
    tcase_add_test(bucket, bucket_burst_and_refill);
    tcase_add_test(bucket, bucket_fractional);
    tcase_add_test(bucket, bucket_headers_and_share);
    tcase_add_test(bucket, lease_table);
    tcase_add_test(redis, redis_script_sha);
    tcase_add_test(redis, redis_matches_c);
    tcase_add_test(redis, redis_lease);
    tcase_add_test(redis, redis_apikey_lookup);
    tcase_add_test(redis, redis_refill_ttl_noscript);
    tcase_add_test(redis, redis_exact_under_concurrency);
    tcase_add_test(redis, redis_unreachable);
    tcase_add_test(token, token_source_parse);
    tcase_add_test(token, token_bearer);
    tcase_add_test(token, token_cookie);
    tcase_add_test(token, token_query);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    apr_pool_create(&gp, NULL);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bff-auth-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    make_keys();
    /* redis-server is a test dependency (scripts/deps.sh installs it):
     * exits with an error when it does not start */
    redis_start_in(&redis_srv, 0, NULL, tmpdir);
    sr = srunner_create(auth_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    server_stop(&redis_srv);
    run("rm -rf '%s'", tmpdir);
    apr_pool_destroy(gp);
    apr_terminate();
    return failed ? 1 : 0;
}
