/*
 * TLS settings of https:// backends: option parsing and the PEM files
 * read into memory at start-up (see bff_tls.h).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_file_info.h>
#include <apr_strings.h>
#include <apr_tables.h>

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
        if (strstr(buf, "ENCRYPTED")) {
            return apr_psprintf(p, "%s %s: the private key is encrypted "
                                "(a passphrase cannot be given: store it "
                                "unencrypted, readable by root only)", what,
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

void bff_tls_wipe(bff_tls_t *t)
{
    /* volatile: a store into memory about to be freed is not optimised
     * away */
    volatile char *k = (volatile char *)t->key.data;
    apr_size_t i;

    for (i = 0; k && i < t->key.len; i++) {
        k[i] = 0;
    }
    t->key.data = NULL;
    t->key.len = 0;
}

static apr_status_t wipe_cleanup(void *t)
{
    bff_tls_wipe(t);
    return APR_SUCCESS;
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
    if (!t->verify && (t->ca_file || t->ca_path)) {
        return "verify=off with ca= or ca-path=: certificates that are not "
               "verified need no CA (remove one or the other)";
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
    }
    return NULL;
}
