/*
 * TLS settings of https:// backends: option parsing and the PEM files
 * read into memory at start-up (see bff_tls.h).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_file_info.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "bff_tls.h"
#include "bff_opts.h"
#include "bff_jwt.h"        /* bff_file_read */

#define CERT_BEGIN "-----BEGIN CERTIFICATE-----"
#define CERT_END   "-----END CERTIFICATE-----"

bff_tls_t *bff_tls_create(apr_pool_t *p)
{
    bff_tls_t *t = apr_pcalloc(p, sizeof(*t));

    t->verify = 1;
    return t;
}

static int host_ok(const char *h)
{
    apr_size_t n = strlen(h);
    const char *s;

    if (n == 0 || n > 253 || *h == '.' || *h == '-') {
        return 0;
    }
    for (s = h; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
              || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.')) {
            return 0;
        }
    }
    return 1;
}

static const char *opt_min_tls(void *target, const char *v, apr_pool_t *p)
{
    bff_tls_t *t = target;

    if (!strcmp(v, "1.2")) {
        t->min_tls = 12;
    }
    else if (!strcmp(v, "1.3")) {
        t->min_tls = 13;
    }
    else {
        return "expected min-tls=1.2 or min-tls=1.3";
    }
    return NULL;
}

static const char *opt_server_name(void *target, const char *v,
                                   apr_pool_t *p)
{
    bff_tls_t *t = target;

    if (!host_ok(v)) {
        return "not a host name";
    }
    t->server_name = apr_pstrdup(p, v);
    return NULL;
}

static const bff_opt_t tls_opts[] = {
    BFF_OPT_VAL("ca", BFF_OPT_STR, bff_tls_t, ca_file),
    BFF_OPT_VAL("ca-path", BFF_OPT_STR, bff_tls_t, ca_path),
    BFF_OPT_VAL("cert", BFF_OPT_STR, bff_tls_t, cert_file),
    BFF_OPT_VAL("key", BFF_OPT_STR, bff_tls_t, key_file),
    BFF_OPT_VAL("key-pass-file", BFF_OPT_STR, bff_tls_t, key_pass_file),
    BFF_OPT_VAL("crl", BFF_OPT_STR, bff_tls_t, crl_file),
    BFF_OPT_VAL("verify", BFF_OPT_ONOFF, bff_tls_t, verify),
    BFF_OPT_CALL("min-tls", opt_min_tls),
    BFF_OPT_CALL("server-name", opt_server_name),
    BFF_OPT_END
};

const char *bff_tls_option(bff_tls_t *t, const char *opt, apr_pool_t *p)
{
    return bff_opt_parse(tls_opts, t, opt, p);
}

/* Appends n bytes to a byte array (start-up only: no hurry). */
static void buf_add(apr_array_header_t *buf, const char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        *(char *)apr_array_push(buf) = s[i];
    }
}

/* Appends every certificate block of text to buf: a CA bundle holds
 * certificates only, whatever else the file had. Returns how many. */
static int append_certs(apr_array_header_t *buf, const char *text)
{
    const char *b = text, *e;
    int n = 0;

    while ((b = strstr(b, CERT_BEGIN)) != NULL
           && (e = strstr(b, CERT_END)) != NULL) {
        e += sizeof(CERT_END) - 1;
        buf_add(buf, b, (apr_size_t)(e - b));
        buf_add(buf, "\n", 1);
        n++;
        b = e;
    }
    return n;
}

const char *bff_tls_read_pem(bff_tls_blob_t *out, const char *what,
                             const char *path, const char *label,
                             apr_pool_t *p)
{
    char *buf;
    apr_size_t len;
    const char *err = bff_file_read(&buf, &len, what, path, BFF_TLS_FILE_MAX,
                                    p);

    if (err) {
        return err;
    }
    if (strlen(buf) != len) {
        return apr_psprintf(p, "%s %s: not a PEM file (NUL bytes)", what, path);
    }
    if (!strcmp(label, "CERTIFICATE")) {
        if (!strstr(buf, CERT_BEGIN) || !strstr(buf, CERT_END)) {
            return apr_psprintf(p, "%s %s: no PEM certificate in it", what,
                                path);
        }
    }
    else {
        const char *b = strstr(buf, "-----BEGIN ");
        const char *e = b ? strstr(b, "PRIVATE KEY-----") : NULL;
        if (!b || !e || e - b > 40 || memchr(b + 11, '\n', (apr_size_t)(e - b - 11))) {
            return apr_psprintf(p, "%s %s: no PEM private key in it", what,
                                path);
        }
    }
    out->data = buf;
    out->len = len;
    return NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *bff_tls_read_ca_dir(bff_tls_blob_t *out, const char *dir,
                                apr_pool_t *p)
{
    apr_dir_t *d;
    apr_finfo_t fi;
    apr_status_t rv;
    apr_array_header_t *names = apr_array_make(p, 8, sizeof(const char *));
    apr_array_header_t *buf = apr_array_make(p, 4096, 1);
    char err[128];
    int i, n = 0;

    if (out->data) {
        buf_add(buf, out->data, out->len);
    }
    rv = apr_dir_open(&d, dir, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "ca-path %s: cannot open: %s", dir,
                            apr_strerror(rv, err, sizeof(err)));
    }
    while (apr_dir_read(&fi, APR_FINFO_NAME | APR_FINFO_TYPE, d) == APR_SUCCESS) {
        if (fi.name[0] == '.') {
            continue;
        }
        APR_ARRAY_PUSH(names, const char *) = apr_pstrdup(p, fi.name);
    }
    apr_dir_close(d);
    qsort(names->elts, (size_t)names->nelts, sizeof(const char *), cmp_names);
    for (i = 0; i < names->nelts; i++) {
        const char *path = apr_pstrcat(p, dir, "/",
                                       APR_ARRAY_IDX(names, i, const char *),
                                       NULL);
        char *text;
        apr_size_t len;

        if (apr_stat(&fi, path, APR_FINFO_TYPE, p) != APR_SUCCESS
            || fi.filetype != APR_REG) {
            continue;       /* hashed links to a file read anyway, too */
        }
        if (bff_file_read(&text, &len, "ca-path", path, BFF_TLS_FILE_MAX, p)) {
            continue;
        }
        n += append_certs(buf, text);
        if ((apr_size_t)buf->nelts > BFF_TLS_FILE_MAX) {
            return apr_psprintf(p, "ca-path %s: more than %d bytes of "
                                "certificates", dir, BFF_TLS_FILE_MAX);
        }
    }
    if (!n) {
        return apr_psprintf(p, "ca-path %s: no PEM certificate in its files",
                            dir);
    }
    *(char *)apr_array_push(buf) = '\0';
    out->data = buf->elts;
    out->len = (apr_size_t)buf->nelts - 1;
    return NULL;
}

/* volatile: a store into memory about to be freed is not optimised away */
static void wipe(volatile char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; s && i < n; i++) {
        s[i] = 0;
    }
}

void bff_tls_wipe(bff_tls_t *t)
{
    wipe((volatile char *)t->key.data, t->key.len);
    t->key.data = NULL;
    t->key.len = 0;
}

static apr_status_t wipe_cleanup(void *t)
{
    bff_tls_wipe(t);
    return APR_SUCCESS;
}

/* OpenSSL asks for a passphrase through this (never on the terminal):
 * u is the passphrase, or NULL for none. */
static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    size_t n = u ? strlen(u) : 0;

    (void)rwflag;
    if (!u || n >= (size_t)size) {
        return 0;
    }
    memcpy(buf, u, n);
    return (int)n;
}

/* The first line of key-pass-file=, without its line end. */
static const char *read_pass(char **pass, const char *path, apr_pool_t *p)
{
    apr_size_t len;
    char *buf;
    const char *err = bff_file_read(&buf, &len, "key-pass-file", path, 4096,
                                    p);

    if (err) {
        return err;
    }
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!*buf) {
        wipe(buf, len);
        return apr_psprintf(p, "key-pass-file %s: no passphrase on its "
                            "first line", path);
    }
    *pass = buf;
    return NULL;
}

/* The private key of t->key as an OpenSSL key, decrypted with
 * key-pass-file= when it is encrypted. */
static const char *parse_key(EVP_PKEY **pkey, bff_tls_t *t, apr_pool_t *p)
{
    int encrypted = strstr(t->key.data, "ENCRYPTED") != NULL;
    char *pass = NULL;
    const char *err;
    BIO *bio;

    if (encrypted && !t->key_pass_file) {
        return apr_psprintf(p, "key %s: the private key is encrypted: give "
                            "its passphrase in a file only root reads, "
                            "key-pass-file=FILE", t->key_file);
    }
    if (!encrypted && t->key_pass_file) {
        return apr_psprintf(p, "key-pass-file=%s: the private key %s is not "
                            "encrypted", t->key_pass_file, t->key_file);
    }
    if (encrypted && (err = read_pass(&pass, t->key_pass_file, p))) {
        return err;
    }
    bio = BIO_new_mem_buf(t->key.data, (int)t->key.len);
    *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, pass_cb, pass) : NULL;
    BIO_free(bio);
    if (pass) {
        wipe(pass, strlen(pass));
    }
    ERR_clear_error();
    if (!*pkey) {
        return encrypted
            ? apr_psprintf(p, "key %s: cannot decrypt the private key with "
                           "the passphrase of key-pass-file=%s (wrong "
                           "passphrase?)", t->key_file, t->key_pass_file)
            : apr_psprintf(p, "key %s: the private key does not parse",
                           t->key_file);
    }
    return NULL;
}

/* Replaces t->key by the unencrypted PEM of pkey. */
static const char *key_decrypted(bff_tls_t *t, EVP_PKEY *pkey, apr_pool_t *p)
{
    BIO *out = BIO_new(BIO_s_secmem());
    char *data;
    long n;
    char *copy;

    if (!out || !PEM_write_bio_PrivateKey(out, pkey, NULL, NULL, 0, NULL,
                                          NULL)) {
        BIO_free(out);
        ERR_clear_error();
        return apr_psprintf(p, "key %s: cannot re-encode the decrypted key",
                            t->key_file);
    }
    n = BIO_get_mem_data(out, &data);
    copy = apr_palloc(p, (apr_size_t)n + 1);
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    BIO_free(out);          /* secure memory: cleared when freed */
    t->key.data = copy;
    t->key.len = (apr_size_t)n;
    return NULL;
}

/* The key: parsed (decrypted when it is encrypted), checked against the
 * first certificate of cert=, and kept unencrypted for libcurl. */
static const char *load_key(bff_tls_t *t, apr_pool_t *p)
{
    int encrypted = strstr(t->key.data, "ENCRYPTED") != NULL;
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    BIO *bio;
    const char *err = parse_key(&pkey, t, p);

    if (err) {
        return err;
    }
    bio = BIO_new_mem_buf(t->cert.data, (int)t->cert.len);
    cert = bio ? PEM_read_bio_X509(bio, NULL, pass_cb, NULL) : NULL;
    BIO_free(bio);
    if (!cert) {
        err = apr_psprintf(p, "cert %s: the certificate does not parse",
                           t->cert_file);
    }
    else if (X509_check_private_key(cert, pkey) != 1) {
        err = apr_psprintf(p, "key %s: not the private key of cert %s",
                           t->key_file, t->cert_file);
    }
    else if (encrypted) {
        err = key_decrypted(t, pkey, p);
    }
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(pkey);
    return err;
}

/* crl=: a PEM file of CRLs, each parsed. libcurl reads the file again
 * for each new connection, as the children's user. */
static const char *check_crl(const char *path, apr_pool_t *p)
{
    char *buf;
    apr_size_t len;
    const char *err = bff_file_read(&buf, &len, "crl", path,
                                    BFF_TLS_FILE_MAX, p);
    BIO *bio;
    X509_CRL *crl;
    int n = 0;

    if (err) {
        return err;
    }
    bio = BIO_new_mem_buf(buf, (int)len);
    while (bio && (crl = PEM_read_bio_X509_CRL(bio, NULL, pass_cb, NULL))) {
        X509_CRL_free(crl);
        n++;
    }
    BIO_free(bio);
    ERR_clear_error();
    if (!n) {
        return apr_psprintf(p, "crl %s: no PEM certificate revocation list "
                            "in it", path);
    }
    return NULL;
}

const char *bff_tls_load(bff_tls_t *t, apr_pool_t *p)
{
    const char *err;

    if (t->key_file && !t->cert_file) {
        return apr_psprintf(p, "key=%s without cert=: the client "
                            "certificate is missing", t->key_file);
    }
    if (t->cert_file && !t->key_file) {
        return apr_psprintf(p, "cert=%s without key=: its private key is "
                            "missing", t->cert_file);
    }
    if (!t->verify && (t->ca_file || t->ca_path || t->crl_file)) {
        return "verify=off with ca=, ca-path= or crl=: certificates that "
               "are not verified need no CA and no CRL (remove one or the "
               "other)";
    }
    if (t->key_pass_file && !t->key_file) {
        return apr_psprintf(p, "key-pass-file=%s without key=: no key to "
                            "decrypt", t->key_pass_file);
    }
    if (t->crl_file && (err = check_crl(t->crl_file, p))) {
        return err;
    }
    memset(&t->ca, 0, sizeof(t->ca));
    if (t->ca_file) {
        apr_array_header_t *buf = apr_array_make(p, 4096, 1);
        if ((err = bff_tls_read_pem(&t->ca, "ca", t->ca_file, "CERTIFICATE",
                                    p))) {
            return err;
        }
        append_certs(buf, t->ca.data);
        *(char *)apr_array_push(buf) = '\0';
        t->ca.data = buf->elts;
        t->ca.len = (apr_size_t)buf->nelts - 1;
    }
    if (t->ca_path && (err = bff_tls_read_ca_dir(&t->ca, t->ca_path, p))) {
        return err;
    }
    if (t->cert_file
        && ((err = bff_tls_read_pem(&t->cert, "cert", t->cert_file,
                                    "CERTIFICATE", p))
            || (err = bff_tls_read_pem(&t->key, "key", t->key_file,
                                       "PRIVATE KEY", p)))) {
        return err;
    }
    if (t->key.data) {
        apr_pool_cleanup_register(p, t, wipe_cleanup, apr_pool_cleanup_null);
        if ((err = load_key(t, p))) {
            return err;
        }
    }
    return NULL;
}
