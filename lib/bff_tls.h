/*
 * mod_bff: TLS settings of https:// backends (pure core, no httpd.h).
 *
 * Options, one "name=value" word each (BFFBackendTLS):
 *
 *     ca=FILE          PEM certificates trusted instead of the system's
 *     ca-path=DIR      every PEM certificate of the files in DIR, too
 *     cert=FILE        PEM client certificate (mutual TLS); needs key=
 *     key=FILE         PEM private key of cert=
 *     key-pass-file=FILE  the passphrase of an encrypted key= (the first
 *                      line of FILE): the key is decrypted when it is
 *                      loaded, so libcurl only ever sees it decrypted
 *     crl=FILE         PEM certificate revocation lists: a backend
 *                      certificate they revoke (or of a CA without a CRL
 *                      in FILE) fails verification; libcurl reads FILE
 *                      for each new connection (CURLOPT_CRLFILE)
 *     verify=on|off    peer and host name verification (default on)
 *     min-tls=1.2|1.3  lowest protocol version accepted
 *     server-name=HOST the name sent as SNI, checked against the
 *                      certificate and sent as Host, while the connection
 *                      still goes to the URL's host and port
 *
 * Every file is read when the settings are loaded (bff_tls_load: at
 * start-up, while httpd is still root) and kept in memory, so a key that
 * only root may read serves children running as another user, and
 * nothing is read from disk per connection.
 */
#ifndef BFF_TLS_H
#define BFF_TLS_H

#include <apr_pools.h>

/* Largest PEM file (and CA bundle, ca-path included) accepted. */
#define BFF_TLS_FILE_MAX (1024 * 1024)

typedef struct {
    const char *data;       /* NUL terminated; NULL: none */
    apr_size_t len;
} bff_tls_blob_t;

typedef struct bff_tls_t {
    /* as configured */
    const char *ca_file;
    const char *ca_path;
    const char *cert_file;
    const char *key_file;
    const char *key_pass_file;
    const char *crl_file;
    int verify;             /* 1 (default) or 0 (verify=off) */
    int min_tls;            /* 0: the TLS library's default; 12 or 13 */
    const char *server_name;    /* NULL: the URL's host */
    /* filled by bff_tls_load */
    bff_tls_blob_t ca;      /* ca= and ca-path= together; none: system CAs */
    bff_tls_blob_t cert;
    bff_tls_blob_t key;
} bff_tls_t;

/* Settings with the defaults: verification on, system CAs, no client
 * certificate. */
bff_tls_t *bff_tls_create(apr_pool_t *p);

/* Applies one "name=value" option. NULL or an error naming the option. */
const char *bff_tls_option(bff_tls_t *t, const char *opt, apr_pool_t *p);

/* Checks the options together (a key needs its certificate and the other
 * way round) and reads every file into memory, each checked to hold what
 * it should (certificates, one private key belonging to the certificate,
 * decrypted with key-pass-file= when it is encrypted; CRLs). NULL or an
 * error naming the option and the file. */
const char *bff_tls_load(bff_tls_t *t, apr_pool_t *p);

/* Overwrites the private key held in memory and forgets it. bff_tls_load
 * registers it as a cleanup of its pool, so a key does not stay in freed
 * memory once its configuration is gone (a graceful restart). */
void bff_tls_wipe(bff_tls_t *t);

/* Reads one PEM file into *out; label is "CERTIFICATE" (one or more
 * certificates) or "PRIVATE KEY" (any private key block, encrypted ones
 * included).
 * what names the file in errors ("cert"). */
const char *bff_tls_read_pem(bff_tls_blob_t *out, const char *what,
                             const char *path, const char *label,
                             apr_pool_t *p);

/* Appends every certificate of the regular files of dir (sorted by name;
 * files without a certificate are skipped) to *out. An error when the
 * directory cannot be read or holds no certificate. */
const char *bff_tls_read_ca_dir(bff_tls_blob_t *out, const char *dir,
                                apr_pool_t *p);

#endif /* BFF_TLS_H */
