/*
 * mod_bff: API keys file parsing and constant-time lookup (pure core).
 */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "bff_apikey.h"
#include "bff_jwt.h"    /* bff_file_read */

#define NAME_MAX_LEN 64

typedef struct {
    unsigned char hash[32];
    bff_apikey_t info;
} entry_t;

struct bff_apikeys_t {
    entry_t *entries;
    int n;
};

static int consumer_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'
           || c == ':' || c == '@';
}

static int plan_char(char c)
{
    return consumer_char(c) && c != ':' && c != '@';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Splits one line into at most 4 fields (a 4th is an error). */
static int split_fields(const char **f, apr_size_t *flen, const char *s,
                        apr_size_t len)
{
    apr_size_t i = 0;
    int n = 0;

    while (i < len) {
        if (s[i] == ' ' || s[i] == '\t') {
            i++;
            continue;
        }
        if (n == 4) {
            return 5;
        }
        f[n] = s + i;
        while (i < len && s[i] != ' ' && s[i] != '\t') {
            i++;
        }
        flen[n] = (apr_size_t)(s + i - f[n]);
        n++;
    }
    return n;
}

static const char *check_name(const char *s, apr_size_t n,
                              int (*ok)(char), const char *what,
                              const char *where, apr_pool_t *p)
{
    apr_size_t i;

    if (n > NAME_MAX_LEN) {
        return apr_psprintf(p, "%s: %s is longer than %d bytes", where, what,
                            NAME_MAX_LEN);
    }
    for (i = 0; i < n; i++) {
        if (!ok(s[i])) {
            return apr_psprintf(p, "%s: %s '%.*s' has a character outside "
                                "%s", where, what, (int)n, s,
                                ok == consumer_char ? "[A-Za-z0-9._:@-]"
                                                    : "[A-Za-z0-9._-]");
        }
    }
    return NULL;
}

static const char *parse_line(entry_t *e, const char *s, apr_size_t len,
                              const char *where, apr_pool_t *p)
{
    const char *f[4], *err;
    apr_size_t flen[4], i;
    int n = split_fields(f, flen, s, len);

    if (n < 2) {
        return apr_psprintf(p, "%s: expected 'consumer sha256-hex [plan]'",
                            where);
    }
    if (n > 3) {
        return apr_psprintf(p, "%s: more than 3 fields (consumer, "
                            "sha256-hex, plan)", where);
    }
    if ((err = check_name(f[0], flen[0], consumer_char, "consumer", where, p))) {
        return err;
    }
    if (flen[1] != 64) {
        return apr_psprintf(p, "%s: '%.*s' is not a SHA-256 in hex (64 hex "
                            "digits; printf %%s \"$KEY\" | sha256sum)", where,
                            (int)(flen[1] > 70 ? 70 : flen[1]), f[1]);
    }
    for (i = 0; i < 32; i++) {
        int hi = hexval(f[1][2 * i]), lo = hexval(f[1][2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return apr_psprintf(p, "%s: the SHA-256 has a non-hex character",
                                where);
        }
        e->hash[i] = (unsigned char)(hi << 4 | lo);
    }
    e->info.consumer = apr_pstrmemdup(p, f[0], flen[0]);
    e->info.plan = NULL;
    if (n == 3) {
        if ((err = check_name(f[2], flen[2], plan_char, "plan", where, p))) {
            return err;
        }
        e->info.plan = apr_pstrmemdup(p, f[2], flen[2]);
    }
    return NULL;
}

const char *bff_apikeys_parse(bff_apikeys_t **out, const char *text,
                              apr_size_t len, const char *name,
                              apr_pool_t *p)
{
    apr_array_header_t *arr = apr_array_make(p, 16, sizeof(entry_t));
    apr_hash_t *names = apr_hash_make(p), *hashes = apr_hash_make(p);
    bff_apikeys_t *k;
    apr_size_t pos = 0;
    int lineno = 0;

    if (memchr(text, '\0', len)) {
        return apr_psprintf(p, "%s: contains a NUL byte (not a text file)",
                            name);
    }
    while (pos < len) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        apr_size_t n = nl ? (apr_size_t)(nl - line) : len - pos;
        const char *where, *err;
        apr_size_t i = 0;
        entry_t e, *prev;

        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n > 0 && line[n - 1] == '\r') {
            n--;
        }
        while (i < n && (line[i] == ' ' || line[i] == '\t')) {
            i++;
        }
        if (i == n || line[i] == '#') {
            continue;
        }
        where = apr_psprintf(p, "%s line %d", name, lineno);
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c >= 0x7f) {
                return apr_psprintf(p, "%s: control or non-ASCII byte 0x%02x",
                                    where, c);
            }
        }
        memset(&e, 0, sizeof(e));
        if ((err = parse_line(&e, line, n, where, p))) {
            return err;
        }
        e.info.line = lineno;
        if ((prev = apr_hash_get(names, e.info.consumer,
                                 APR_HASH_KEY_STRING))) {
            return apr_psprintf(p, "%s: consumer '%s' already defined on "
                                "line %d", where, e.info.consumer,
                                prev->info.line);
        }
        if ((prev = apr_hash_get(hashes, e.hash, sizeof(e.hash)))) {
            return apr_psprintf(p, "%s: the same key hash as consumer '%s' "
                                "on line %d (one key, one consumer)", where,
                                prev->info.consumer, prev->info.line);
        }
        *(entry_t *)apr_array_push(arr) = e;
        /* apr_array_push may move the array: index copies, not pointers. */
        prev = apr_pmemdup(p, &e, sizeof(e));
        apr_hash_set(names, prev->info.consumer, APR_HASH_KEY_STRING, prev);
        apr_hash_set(hashes, prev->hash, sizeof(prev->hash), prev);
    }
    k = apr_pcalloc(p, sizeof(*k));
    k->entries = (entry_t *)arr->elts;
    k->n = arr->nelts;
    *out = k;
    return NULL;
}

const char *bff_apikeys_load(bff_apikeys_t **out, const char *path,
                             apr_pool_t *p)
{
    char *buf;
    apr_size_t len;
    const char *err = bff_file_read(&buf, &len, "API keys file", path,
                                    BFF_APIKEYS_FILE_MAX, p);

    if (err) {
        return err;
    }
    return bff_apikeys_parse(out, buf, len,
                             apr_pstrcat(p, "API keys file ", path, NULL), p);
}

int bff_apikeys_count(const bff_apikeys_t *keys)
{
    return keys->n;
}

const bff_apikey_t *bff_apikeys_lookup(const bff_apikeys_t *keys,
                                       const char *key, apr_size_t len)
{
    unsigned char h[32];
    const bff_apikey_t *found = NULL;
    int i;

    if (!key || len == 0 || len > BFF_APIKEY_MAX) {
        return NULL;
    }
    SHA256((const unsigned char *)key, len, h);
    /* Every entry is compared in full, whatever matched before: the time
     * taken depends on the number of entries only, never on how close the
     * presented key's hash is to a stored one. */
    for (i = 0; i < keys->n; i++) {
        int eq = CRYPTO_memcmp(h, keys->entries[i].hash, sizeof(h)) == 0;
        found = eq ? &keys->entries[i].info : found;
    }
    OPENSSL_cleanse(h, sizeof(h));
    return found;
}

const char *bff_apikey_check_name(const char *s, apr_size_t n, int plan)
{
    apr_size_t i;

    if (!s || !n) {
        return "empty";
    }
    if (n > NAME_MAX_LEN) {
        return "longer than 64 bytes";
    }
    for (i = 0; i < n; i++) {
        if (!(plan ? plan_char(s[i]) : consumer_char(s[i]))) {
            return plan ? "a character outside [A-Za-z0-9._-]"
                        : "a character outside [A-Za-z0-9._:@-]";
        }
    }
    return NULL;
}

void bff_apikey_hash(char hex[65], const char *key, apr_size_t len)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char h[32];
    int i;

    SHA256((const unsigned char *)key, len, h);
    for (i = 0; i < 32; i++) {
        hex[2 * i] = digits[h[i] >> 4];
        hex[2 * i + 1] = digits[h[i] & 0x0f];
    }
    hex[64] = '\0';
}

bff_apikey_rc_e bff_apikey_redis_lookup(const char **consumer,
                                        const char **plan, const char **why,
                                        bff_redis_t *rd, const char *rkey,
                                        apr_pool_t *p)
{
    bff_redis_cmd_t hmget = bff_redis_cmd(p, 4, "HMGET", rkey, "consumer",
                                          "plan");
    redisReply *reply, *c, *pl;

    *consumer = *plan = NULL;
    *why = NULL;
    if ((*why = bff_redis_exec(&reply, rd, &hmget, 1, p))) {
        return BFF_APIKEY_DOWN;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* WRONGTYPE: the key holds no hash; anything else (LOADING,
         * MISCONF, ...): the store cannot answer now */
        *why = bff_redis_reply_error(rd, "HMGET", reply, p);
        return !strncmp(reply->str, "WRONGTYPE", 9) ? BFF_APIKEY_MALFORMED
                                                    : BFF_APIKEY_DOWN;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        *why = bff_redis_reply_error(rd, "HMGET", reply, p);
        return BFF_APIKEY_DOWN;
    }
    c = reply->element[0];
    pl = reply->element[1];
    if (c->type == REDIS_REPLY_NIL && pl->type == REDIS_REPLY_NIL) {
        return BFF_APIKEY_UNKNOWN;
    }
    if (c->type != REDIS_REPLY_STRING) {
        *why = "no consumer field";
    }
    else if ((*why = bff_apikey_check_name(c->str, c->len, 0))) {
        *why = apr_pstrcat(p, "consumer: ", *why, NULL);
    }
    else if (pl->type != REDIS_REPLY_NIL && pl->type != REDIS_REPLY_STRING) {
        *why = "plan: not a string";
    }
    else if (pl->type == REDIS_REPLY_STRING
             && (*why = bff_apikey_check_name(pl->str, pl->len, 1))) {
        *why = apr_pstrcat(p, "plan: ", *why, NULL);
    }
    else {
        *consumer = apr_pstrmemdup(p, c->str, c->len);
        if (pl->type == REDIS_REPLY_STRING) {
            *plan = apr_pstrmemdup(p, pl->str, pl->len);
        }
        return BFF_APIKEY_FOUND;
    }
    return BFF_APIKEY_MALFORMED;
}
