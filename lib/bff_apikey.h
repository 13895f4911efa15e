/*
 * mod_bff: API keys for partner clients (pure core, no httpd.h).
 *
 * The keys file holds hashes, never keys:
 *
 *     # consumer  sha256-hex-of-key                                                 plan
 *     acme        9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  gold
 *     globex      2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
 *
 * (the hashes of the keys "test" and "hello"): one consumer per line, a
 * name ([A-Za-z0-9._:@-], 1-64 bytes), the SHA-256 of the key in hex (64
 * digits, either case), and optionally a plan name ([A-Za-z0-9._-], 1-64
 * bytes) the glue maps to rate limits.
 * Fields are separated by spaces or tabs; '#' starts a comment line;
 * blank lines are ignored. The hash of a key is what
 *
 *     printf %s "$KEY" | sha256sum
 *
 * prints. A consumer name or a hash appearing twice is an error.
 */
#ifndef BFF_APIKEY_H
#define BFF_APIKEY_H

#include <apr_pools.h>

#include "bff_redis.h"

/* Longest key file accepted. */
#define BFF_APIKEYS_FILE_MAX (16 * 1024 * 1024)
/* Longest presented key hashed; longer ones are refused unhashed. */
#define BFF_APIKEY_MAX 1024

typedef struct bff_apikeys_t bff_apikeys_t;

typedef struct {
    const char *consumer;
    const char *plan;       /* NULL when the line names none */
    int line;               /* line number in the file, for logs */
} bff_apikey_t;

/* Parses the text of a keys file; name is used in errors ("FILE line 7:
 * consumer 'acme' already defined on line 2"). Returns NULL or an error. */
const char *bff_apikeys_parse(bff_apikeys_t **out, const char *text,
                              apr_size_t len, const char *name,
                              apr_pool_t *p);

/* Reads and parses a keys file. */
const char *bff_apikeys_load(bff_apikeys_t **out, const char *path,
                             apr_pool_t *p);

/* Number of consumers. */
int bff_apikeys_count(const bff_apikeys_t *keys);

/* Looks a presented key up: hashes it and compares the hash with every
 * entry in constant time (no early exit, CRYPTO_memcmp), so the time taken
 * says nothing about which entry, if any, is close. O(entries): fine for
 * the thousands of partners a keys file is meant for. Returns the entry or
 * NULL (also for an empty key or one longer than BFF_APIKEY_MAX). */
const bff_apikey_t *bff_apikeys_lookup(const bff_apikeys_t *keys,
                                       const char *key, apr_size_t len);

/* Checks a consumer name (plan == 0) or a plan name (plan != 0) that
 * comes from elsewhere than a keys file (an entry in Redis) by the file's
 * rules: 1-64 bytes of [A-Za-z0-9._:@-] (consumer) or [A-Za-z0-9._-]
 * (plan); so no control characters, spaces or bytes >= 0x80. Returns NULL
 * or why not (never quoting the value, which may hold anything). */
const char *bff_apikey_check_name(const char *s, apr_size_t n, int plan);

/* SHA-256 of key as 64 lower-case hex digits and a NUL. */
void bff_apikey_hash(char hex[65], const char *key, apr_size_t len);

/* API keys kept in Redis: the hash rkey (prefix + "apikey:" + the key's
 * SHA-256 in hex) with the fields consumer (required) and plan (optional),
 * both following the keys file's rules (bff_apikey_check_name). */
typedef enum {
    BFF_APIKEY_FOUND,       /* *consumer and *plan (NULL: none), in p */
    BFF_APIKEY_UNKNOWN,     /* no such hash */
    BFF_APIKEY_MALFORMED,   /* not a hash, or fields break the rules: *why */
    BFF_APIKEY_DOWN         /* Redis cannot answer (down, LOADING, ...): *why */
} bff_apikey_rc_e;

bff_apikey_rc_e bff_apikey_redis_lookup(const char **consumer,
                                        const char **plan, const char **why,
                                        bff_redis_t *rd, const char *rkey,
                                        apr_pool_t *p);

#endif /* BFF_APIKEY_H */
