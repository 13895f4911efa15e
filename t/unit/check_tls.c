/*
 * Unit tests for the TLS settings of https:// backends (lib/bff_tls.c):
 * option parsing, the checks made when they are loaded, and the PEM files
 * read into memory (certificates, keys, CA directories).
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
        "verify=off", "min-tls=1.3", "server-name=api.internal", NULL
    };

    ck_assert_ptr_null(opts(t, ok));
    ck_assert_str_eq(t->ca_file, "/x/ca.pem");
    ck_assert_str_eq(t->ca_path, "/x/cas");
    ck_assert_str_eq(t->cert_file, "/x/c.pem");
    ck_assert_str_eq(t->key_file, "/x/k.pem");
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
    const char *c = put("c.pem", CERT("REVG"));
    const char *k = put("k.pem", KEY("", "R0hJ"));

    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "ca=", ca, NULL), pool));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "cert=", c, NULL), pool));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "key=", k, NULL), pool));
    ck_assert_ptr_null(bff_tls_load(t, pool));
    /* the CA bundle keeps the certificates only */
    ck_assert_str_eq(t->ca.data, CERT("QUJD"));
    ck_assert_uint_eq(t->ca.len, strlen(CERT("QUJD")));
    ck_assert_str_eq(t->cert.data, CERT("REVG"));
    ck_assert_str_eq(t->key.data, KEY("", "R0hJ"));
    ck_assert_uint_eq(t->key.len, strlen(KEY("", "R0hJ")));
    /* the files are not needed any more: read once */
    ck_assert_int_eq(unlink(k), 0);
    ck_assert_str_eq(t->key.data, KEY("", "R0hJ"));
}
END_TEST

/* the key does not outlive its configuration in memory */
START_TEST(key_wiped)
{
    apr_pool_t *sub;
    bff_tls_t *t;
    const char *c = put("c.pem", CERT("REVG"));
    const char *k = put("k.pem", KEY("", "R0hJ"));
    const char *buf;
    apr_size_t len, i, nonzero = 0;

    ck_assert_int_eq(apr_pool_create(&sub, pool), APR_SUCCESS);
    t = bff_tls_create(pool);
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "cert=", c, NULL), pool));
    ck_assert_ptr_null(bff_tls_option(t, apr_pstrcat(pool, "key=", k, NULL), pool));
    ck_assert_ptr_null(bff_tls_load(t, sub));
    buf = t->key.data;
    len = t->key.len;
    ck_assert_str_eq(buf, KEY("", "R0hJ"));
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
    err = bff_tls_read_pem(&b, "key", put("enc.pem", KEY("ENCRYPTED ", "eA==")),
                           "PRIVATE KEY", pool);
    ck_assert_ptr_nonnull(strstr(err, "is encrypted"));
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
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
