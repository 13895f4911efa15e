/*
 * Unit tests for the TLS settings of https:// backends (lib/bff_tls.c):
 * option parsing, the checks made when they are loaded, and the PEM files
 * read into memory (certificates, keys, encrypted keys and their
 * passphrase files, CRLs, CA directories). Real keys, certificates and a
 * CRL are made once by the openssl CLI into a temporary directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_tls.h"

#define CERT(x) "-----BEGIN CERTIFICATE-----\n" x "\n-----END CERTIFICATE-----\n"
#define KEY(t, x) "-----BEGIN " t "PRIVATE KEY-----\n" x "\n-----END " t "PRIVATE KEY-----\n"

static apr_pool_t *pool;
static char dir[64];
static char pki[64];         /* made by make_pki() in main */

#define PASS "s3cret phrase"

/* an EC key and its self-signed certificate (k.pem, c.pem), another key
 * (k2.pem), k.pem encrypted as PKCS#8 (enc.pem) and in OpenSSL's
 * traditional form (trad.pem), passphrase files, and an empty CRL of
 * c.pem (crl.pem) */
static int make_pki(void)
{
    char cmd[2048];

    strcpy(pki, "/tmp/check_tls_pki.XXXXXX");
    if (!mkdtemp(pki)) {
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "cd '%s' && ("
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k.pem"
        " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k2.pem"
        " && openssl req -x509 -new -key k.pem -subj /CN=check -days 2 -out c.pem"
        " && openssl pkey -in k.pem -aes256 -passout 'pass:" PASS "' -out enc.pem"
        " && openssl ec -in k.pem -aes256 -passout 'pass:" PASS "' -out trad.pem"
        " && printf '" PASS "\n' > pass.txt && printf 'other\n' > wrong.txt"
        " && printf '\n' > empty.txt"
        " && touch index.txt && echo 01 > crlnumber"
        " && printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\n"
        "crlnumber=crlnumber\ndefault_md=sha256\ndefault_crl_days=2\n' > ca.cnf"
        " && openssl ca -config ca.cnf -gencrl -keyfile k.pem -cert c.pem -out crl.pem"
        ") >/dev/null 2>&1", pki);
    return system(cmd);
}

static const char *pk(const char *name)
{
    return apr_pstrcat(pool, pki, "/", name, NULL);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = apr_pcalloc(pool, 65536);

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_gt(fread(buf, 1, 65535, f), 0);
    fclose(f);
    return buf;
}

/* Settings made of "name=value" options, then loaded: the first error
 * or NULL. */
static const char *load(bff_tls_t **out, const char *const *o)
{
    bff_tls_t *t = bff_tls_create(pool);
    const char *err = NULL;

    for (; *o && !err; o++) {
        err = bff_tls_option(t, *o, pool);
    }
    *out = t;
    return err ? err : bff_tls_load(t, pool);
}

static const char *put(const char *name, const char *text)
{
    const char *path = apr_pstrcat(pool, dir, "/", name, NULL);
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    strcpy(dir, "/tmp/check_tls.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    apr_pool_destroy(pool);
    pool = NULL;
}

static const char *opts(bff_tls_t *t, const char *const *o)
{
    const char *err = NULL;

    for (; *o && !err; o++) {
        err = bff_tls_option(t, *o, pool);
    }
    return err;
}

START_TEST(defaults)
{
    bff_tls_t *t = bff_tls_create(pool);

    ck_assert_int_eq(t->verify, 1);
    ck_assert_int_eq(t->min_tls, 0);
    ck_assert_ptr_null(t->ca_file);
    ck_assert_ptr_null(t->server_name);
    ck_assert_ptr_null(bff_tls_load(t, pool));
    ck_assert_ptr_null(t->ca.data);
    ck_assert_ptr_null(t->cert.data);
    ck_assert_ptr_null(t->key.data);
}
END_TEST

START_TEST(options)
{
    bff_tls_t *t = bff_tls_create(pool);
    static const char *const ok[] = {
        "ca=/x/ca.pem", "ca-path=/x/cas", "cert=/x/c.pem", "key=/x/k.pem",
        "key-pass-file=/x/pass", "crl=/x/crl.pem",
        "verify=off", "min-tls=1.3", "server-name=api.internal", NULL
    };

    ck_assert_ptr_null(opts(t, ok));
    ck_assert_str_eq(t->ca_file, "/x/ca.pem");
    ck_assert_str_eq(t->ca_path, "/x/cas");
    ck_assert_str_eq(t->cert_file, "/x/c.pem");
    ck_assert_str_eq(t->key_file, "/x/k.pem");
    ck_assert_str_eq(t->key_pass_file, "/x/pass");
    ck_assert_str_eq(t->crl_file, "/x/crl.pem");
    ck_assert_int_eq(t->verify, 0);
    ck_assert_int_eq(t->min_tls, 13);
    ck_assert_str_eq(t->server_name, "api.internal");
    ck_assert_ptr_null(bff_tls_option(t, "verify=ON", pool));
    ck_assert_int_eq(t->verify, 1);
    ck_assert_ptr_null(bff_tls_option(t, "min-tls=1.2", pool));
    ck_assert_int_eq(t->min_tls, 12);
}
END_TEST

START_TEST(bad_options)
{
    bff_tls_t *t = bff_tls_create(pool);
    const char *err;

    err = bff_tls_option(t, "min-tls=1.1", pool);
    ck_assert_ptr_nonnull(strstr(err, "expected min-tls=1.2 or min-tls=1.3"));
    err = bff_tls_option(t, "min-tls=1.0", pool);
    ck_assert_ptr_nonnull(err);
    err = bff_tls_option(t, "verify=maybe", pool);
    ck_assert_ptr_nonnull(strstr(err, "verify=maybe: expected on or off"));
    err = bff_tls_option(t, "verfy=on", pool);
    ck_assert_ptr_nonnull(strstr(err, "unknown option 'verfy=' (expected ca=, ca-path="));
    err = bff_tls_option(t, "ca", pool);
    ck_assert_ptr_nonnull(strstr(err, "ca: expected ca=VALUE"));
    err = bff_tls_option(t, "=x", pool);
    ck_assert_ptr_nonnull(strstr(err, "unknown option '='"));
    err = bff_tls_option(t, "cert=", pool);
    ck_assert_ptr_nonnull(strstr(err, "cert=: missing value"));
    err = bff_tls_option(t, "server-name=a/b", pool);
    ck_assert_ptr_nonnull(strstr(err, "not a host name"));
    err = bff_tls_option(t, "server-name=-a", pool);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(t->verify, 1);
    ck_assert_int_eq(t->min_tls, 0);
    ck_assert_ptr_null(t->cert_file);
}
END_TEST

START_TEST(pairs)
{
    bff_tls_t *t = bff_tls_create(pool);
    const char *err;

    ck_assert_ptr_null(bff_tls_option(t, "key=/x/k.pem", pool));
    err = bff_tls_load(t, pool);
    ck_assert_ptr_nonnull(strstr(err, "key=/x/k.pem without cert="));
    t = bff_tls_create(pool);
    ck_assert_ptr_null(bff_tls_option(t, "cert=/x/c.pem", pool));
    err = bff_tls_load(t, pool);
    ck_assert_ptr_nonnull(strstr(err, "cert=/x/c.pem without key="));
    t = bff_tls_create(pool);
    ck_assert_ptr_null(bff_tls_option(t, "ca=/x/ca.pem", pool));
    ck_assert_ptr_null(bff_tls_option(t, "verify=off", pool));
    err = bff_tls_load(t, pool);
    ck_assert_ptr_nonnull(strstr(err, "verify=off with ca="));
}
END_TEST

START_TEST(load_files)
{
    bff_tls_t *t = bff_tls_create(pool);
    const char *ca = put("ca.pem", "subject=CA\n" CERT("QUJD") "trailing\n");
    const char *c = put("c.pem", slurp(pk("c.pem")));
    const char *k = put("k.pem", slurp(pk("k.pem")));

    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "ca=", ca, NULL), pool));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "cert=", c, NULL), pool));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "key=", k, NULL), pool));
    ck_assert_ptr_null(bff_tls_load(t, pool));
    /* the CA bundle keeps the certificates only */
    ck_assert_str_eq(t->ca.data, CERT("QUJD"));
    ck_assert_uint_eq(t->ca.len, strlen(CERT("QUJD")));
    ck_assert_str_eq(t->cert.data, slurp(pk("c.pem")));
    /* an unencrypted key is kept as it was */
    ck_assert_str_eq(t->key.data, slurp(pk("k.pem")));
    ck_assert_uint_eq(t->key.len, strlen(slurp(pk("k.pem"))));
    /* the files are not needed any more: read once */
    ck_assert_int_eq(unlink(k), 0);
    ck_assert_str_eq(t->key.data, slurp(pk("k.pem")));
}
END_TEST

/* the key does not outlive its configuration in memory */
START_TEST(key_wiped)
{
    apr_pool_t *sub;
    bff_tls_t *t;
    const char *c = pk("c.pem");
    const char *k = pk("k.pem");
    const char *buf;
    apr_size_t len, i, nonzero = 0;

    ck_assert_int_eq(apr_pool_create(&sub, pool), APR_SUCCESS);
    t = bff_tls_create(pool);
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "cert=", c, NULL), pool));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "key=", k, NULL), pool));
    ck_assert_ptr_null(bff_tls_load(t, sub));
    buf = t->key.data;
    len = t->key.len;
    ck_assert_str_eq(buf, slurp(k));
    /* clearing the pool runs the cleanup; apr keeps the pool's block, so
     * the bytes can still be looked at */
    apr_pool_clear(sub);
    ck_assert_ptr_null(t->key.data);
    ck_assert_uint_eq(t->key.len, 0);
    for (i = 0; i < len; i++) {
        nonzero += buf[i] != 0;
    }
    ck_assert_uint_eq(nonzero, 0);
    apr_pool_destroy(sub);
}
END_TEST

START_TEST(key_kinds)
{
    bff_tls_blob_t b;
    const char *err;

    ck_assert_ptr_null(bff_tls_read_pem(&b, "key", put("rsa.pem", KEY("RSA ", "eA==")),
                                        "PRIVATE KEY", pool));
    ck_assert_ptr_null(bff_tls_read_pem(&b, "key", put("ec.pem", KEY("EC ", "eA==")),
                                        "PRIVATE KEY", pool));
    /* an encrypted key is a key: bff_tls_load wants its passphrase */
    ck_assert_ptr_null(bff_tls_read_pem(&b, "key", put("enc.pem", KEY("ENCRYPTED ", "eA==")),
                                        "PRIVATE KEY", pool));
    err = bff_tls_read_pem(&b, "key", put("cert-as-key.pem", CERT("eA==")),
                           "PRIVATE KEY", pool);
    ck_assert_ptr_nonnull(strstr(err, "no PEM private key"));
    err = bff_tls_read_pem(&b, "cert", put("key-as-cert.pem", KEY("", "eA==")),
                           "CERTIFICATE", pool);
    ck_assert_ptr_nonnull(strstr(err, "cert "));
    ck_assert_ptr_nonnull(strstr(err, "no PEM certificate"));
    err = bff_tls_read_pem(&b, "cert", apr_pstrcat(pool, dir, "/missing.pem", NULL),
                           "CERTIFICATE", pool);
    ck_assert_ptr_nonnull(strstr(err, "missing.pem: cannot open"));
    err = bff_tls_read_pem(&b, "cert", dir, "CERTIFICATE", pool);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
}
END_TEST

START_TEST(ca_dir)
{
    bff_tls_t *t = bff_tls_create(pool);
    const char *sub = apr_pstrcat(pool, dir, "/cas", NULL);
    const char *err;

    ck_assert_int_eq(mkdir(sub, 0700), 0);
    put("cas/b.pem", CERT("Qg=="));
    put("cas/a.crt", CERT("QQ==") "junk\n" CERT("QTI="));
    put("cas/README", "no certificate here\n");
    put("cas/key.pem", KEY("", "eA=="));
    put("cas/.hidden", CERT("SA=="));
    put("ca.pem", CERT("Rg=="));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "ca-path=", sub, NULL), pool));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "ca=", dir, "/ca.pem", NULL),
                                      pool));
    ck_assert_ptr_null(bff_tls_load(t, pool));
    /* ca= first, then the directory's files by name; keys, other text and
     * hidden files left out */
    ck_assert_str_eq(t->ca.data, CERT("Rg==") CERT("QQ==") CERT("QTI=") CERT("Qg=="));
    ck_assert_uint_eq(t->ca.len, strlen(t->ca.data));

    t = bff_tls_create(pool);
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "ca-path=", dir, "/cas/README",
                                                     NULL), pool));
    err = bff_tls_load(t, pool);
    ck_assert_ptr_nonnull(strstr(err, "cannot open"));
}
END_TEST

START_TEST(key_pass)
{
    bff_tls_t *t;
    const char *c = apr_pstrcat(pool, "cert=", pk("c.pem"), NULL);
    const char *pass = apr_pstrcat(pool, "key-pass-file=", pk("pass.txt"), NULL);
    const char *o[4] = { c, NULL, pass, NULL };
    const char *kinds[] = { "enc.pem", "trad.pem" };
    const char *err;
    int i;

    for (i = 0; i < 2; i++) {
        o[1] = apr_pstrcat(pool, "key=", pk(kinds[i]), NULL);
        o[2] = pass;
        ck_assert_ptr_null(load(&t, o));
        /* decrypted once, at load: libcurl gets the plain key */
        ck_assert_ptr_null(strstr(t->key.data, "ENCRYPTED"));
        ck_assert_ptr_nonnull(strstr(t->key.data, "-----BEGIN PRIVATE KEY-----"));
        ck_assert_uint_eq(t->key.len, strlen(t->key.data));
        /* a wrong passphrase */
        o[2] = apr_pstrcat(pool, "key-pass-file=", pk("wrong.txt"), NULL);
        err = load(&t, o);
        ck_assert_ptr_nonnull(err);
        ck_assert_ptr_nonnull(strstr(err, "cannot decrypt the private key"));
        ck_assert_ptr_nonnull(strstr(err, "wrong.txt (wrong passphrase?)"));
        /* none */
        o[2] = NULL;
        err = load(&t, o);
        ck_assert_ptr_nonnull(err);
        ck_assert_ptr_nonnull(strstr(err, "is encrypted: give its passphrase"));
    }
    /* an empty first line, a missing file */
    o[1] = apr_pstrcat(pool, "key=", pk("enc.pem"), NULL);
    o[2] = apr_pstrcat(pool, "key-pass-file=", pk("empty.txt"), NULL);
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "empty.txt: no passphrase on its first line"));
    o[2] = apr_pstrcat(pool, "key-pass-file=", pk("none.txt"), NULL);
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "key-pass-file "));
    ck_assert_ptr_nonnull(strstr(err, "none.txt: cannot open"));
    /* a passphrase for a key that has none */
    o[1] = apr_pstrcat(pool, "key=", pk("k.pem"), NULL);
    o[2] = pass;
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "k.pem is not encrypted"));
    /* a passphrase without a key */
    o[0] = pass;
    o[1] = NULL;
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "pass.txt without key="));
}
END_TEST

START_TEST(key_mismatch)
{
    bff_tls_t *t;
    const char *o[] = { apr_pstrcat(pool, "cert=", pk("c.pem"), NULL),
                        apr_pstrcat(pool, "key=", pk("k2.pem"), NULL), NULL };
    const char *err = load(&t, o);

    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "k2.pem: not the private key of cert "));
    /* a key block that is no key */
    o[1] = apr_pstrcat(pool, "key=", put("junk.pem", KEY("", "R0hJ")), NULL);
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "junk.pem: the private key does not parse"));
}
END_TEST

START_TEST(crl)
{
    bff_tls_t *t;
    const char *o[] = { apr_pstrcat(pool, "crl=", pk("crl.pem"), NULL), NULL,
                        NULL };
    const char *err;

    ck_assert_ptr_null(load(&t, o));
    ck_assert_str_eq(t->crl_file, pk("crl.pem"));
    o[0] = apr_pstrcat(pool, "crl=", pk("c.pem"), NULL);
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "c.pem: no PEM certificate revocation list"));
    o[0] = apr_pstrcat(pool, "crl=", put("fake.pem", "-----BEGIN X509 CRL-----\neA==\n"
                                         "-----END X509 CRL-----\n"), NULL);
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "no PEM certificate revocation list"));
    o[0] = apr_pstrcat(pool, "crl=", pk("crl.pem"), NULL);
    o[1] = "verify=off";
    err = load(&t, o);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "verify=off with ca=, ca-path= or crl="));
}
END_TEST

START_TEST(ca_dir_empty)
{
    bff_tls_t *t = bff_tls_create(pool);
    const char *sub = apr_pstrcat(pool, dir, "/none", NULL);
    const char *err;

    ck_assert_int_eq(mkdir(sub, 0700), 0);
    put("none/README", "no certificate here\n");
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "ca-path=", sub, NULL), pool));
    err = bff_tls_load(t, pool);
    ck_assert_ptr_nonnull(strstr(err, "no PEM certificate in its files"));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, options);
    tcase_add_test(tc, bad_options);
    tcase_add_test(tc, pairs);
    tcase_add_test(tc, load_files);
    tcase_add_test(tc, key_kinds);
    tcase_add_test(tc, key_wiped);
    tcase_add_test(tc, ca_dir);
    tcase_add_test(tc, ca_dir_empty);
    tcase_add_test(tc, key_pass);
    tcase_add_test(tc, key_mismatch);
    tcase_add_test(tc, crl);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    if (make_pki() != 0) {
        fprintf(stderr, "check_tls: the openssl CLI could not make the keys\n");
        return EXIT_FAILURE;
    }
    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
        if (system(cmd) != 0) {
            failed++;
        }
    }
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
