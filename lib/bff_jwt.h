/*
 * mod_bff: JWT verification on top of libjwt 1.10 (pure core, no httpd.h).
 *
 * libjwt 1.10 verifies a signature with whatever algorithm the token names,
 * accepts any token when given a NULL or empty key, and checks no claim. So
 * everything that decides whether a token is acceptable happens here:
 *
 *   1. cheap pre-checks on untrusted bytes: size limit, three base64url
 *      parts, header and payload parsed strictly (jansson, duplicate keys
 *      refused), alg in the configured set (never "none"), no "crit", a
 *      kid known to the JWKS;
 *   2. jwt_decode with the single key configured for that alg/kid (never
 *      NULL or empty), then jwt_get_alg compared with the header's alg;
 *   3. the claims, with strict JSON types: exp (required unless configured
 *      optional), nbf, iat, iss, aud, sub; leeway in seconds; now given by
 *      the caller.
 *
 * The keys are loaded once (post_config) into a verifier that is immutable
 * afterwards and so shared freely by threads. Verified tokens can be kept in
 * a bounded, thread-safe, process-local cache (bff_jwt_cache_t).
 */
#ifndef BFF_JWT_H
#define BFF_JWT_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>

/* -------------------------------------------------------- algorithms -- */

/* Bit mask of accepted algorithms. */
#define BFF_JWT_HS256 0x01u
#define BFF_JWT_HS384 0x02u
#define BFF_JWT_HS512 0x04u
#define BFF_JWT_RS256 0x08u
#define BFF_JWT_RS384 0x10u
#define BFF_JWT_RS512 0x20u
#define BFF_JWT_ES256 0x40u
#define BFF_JWT_ES384 0x80u
#define BFF_JWT_HS_ALL (BFF_JWT_HS256 | BFF_JWT_HS384 | BFF_JWT_HS512)
#define BFF_JWT_RS_ALL (BFF_JWT_RS256 | BFF_JWT_RS384 | BFF_JWT_RS512)
#define BFF_JWT_ES_ALL (BFF_JWT_ES256 | BFF_JWT_ES384)

/* Parses "RS256 ES256" (spaces and/or commas) into a mask. Names are
 * case-sensitive as in RFC 7518; "none" and anything unsupported are
 * errors naming the algorithm and listing the supported ones. */
const char *bff_jwt_algs_parse(unsigned *mask, const char *list,
                               apr_pool_t *p);

/* The name of a single algorithm bit ("RS256"), or NULL. */
const char *bff_jwt_alg_name(unsigned alg);

/* ---------------------------------------------------------- verifier -- */

#define BFF_JWT_DEFAULT_MAX_SIZE 8192

typedef struct {
    unsigned algs;          /* BFF_JWT_* bits, at least one */
    /* Key sources. secret_file and pubkey_file may be combined (the secret
     * serves HS*, the public key RS* or ES*); a JWKS (jwks_file or
     * jwks_text) excludes both. */
    const char *secret_file;  /* HS*: the file's bytes, minus one trailing
                                 LF or CRLF; at least 32/48/64 bytes for
                                 HS256/384/512 */
    const char *pubkey_file;  /* RS* or ES*: one PEM public key ("BEGIN
                                 PUBLIC KEY", or "BEGIN RSA PUBLIC KEY");
                                 RSA >= 2048 bits or EC P-256 (ES256) /
                                 P-384 (ES384). Private keys and
                                 certificates are refused. */
    const char *jwks_file;    /* {"keys":[...]}: RSA (n, e), EC P-256/P-384
                                 (crv, x, y) and oct (k) keys, each with a
                                 unique "kid"; tokens must name one */
    /* The same, from memory (a JWKS fetched by URL); excludes the three
     * files. jwks_what names it in errors ("JWKS of https://idp/keys"). */
    const char *jwks_text;
    apr_size_t jwks_len;
    const char *jwks_what;
    const apr_array_header_t *issuers;  /* const char *; NULL or empty: iss
                                           not required */
    const char *audience;   /* NULL: aud not checked (types still are) */
    apr_int64_t leeway;     /* seconds allowed for clock skew, >= 0 */
    int exp_optional;       /* 1: tokens without exp are accepted */
    apr_size_t max_size;    /* longest token accepted; 0: the default */
} bff_jwt_conf_t;

typedef struct bff_jwt_verifier_t bff_jwt_verifier_t;

/* Loads the keys and checks them against the algorithms: every allowed
 * algorithm must have a key able to verify it (with a JWKS: at least one
 * usable key). Returns NULL or an error naming the file and the problem,
 * e.g. "JWT secret file /etc/bff/hs.key: 20 bytes, HS256 needs at least
 * 32". Secrets are wiped from memory when p is cleared. */
const char *bff_jwt_verifier_create(bff_jwt_verifier_t **out,
                                    const bff_jwt_conf_t *conf,
                                    apr_pool_t *p);

/* Number of keys loaded (1 or 2 for files; the usable keys of a JWKS). */
int bff_jwt_verifier_nkeys(const bff_jwt_verifier_t *v);

/* SHA-256 over everything that decides acceptance (algorithms, keys,
 * issuers, audience, leeway, exp policy, size limit): two verifiers with
 * the same fingerprint accept exactly the same tokens. Cache keys include
 * it, so one cache can serve several verifiers (and a reload with new keys
 * never hits old entries). */
const unsigned char *bff_jwt_verifier_fingerprint(const bff_jwt_verifier_t *v);

/* ------------------------------------------------------ verification -- */

typedef enum {
    BFF_JWT_OK = 0,
    BFF_JWT_OVERSIZED,        /* longer than max_size */
    BFF_JWT_MALFORMED,        /* not 3 base64url parts, bad JSON, crit... */
    BFF_JWT_UNSUPPORTED_ALG,  /* alg not in the configured set ("none") */
    BFF_JWT_UNKNOWN_KID,      /* JWKS configured, kid missing or unknown */
    BFF_JWT_BAD_SIGNATURE,    /* libjwt refused the signature */
    BFF_JWT_MISSING_EXP,      /* no exp and exp is required */
    BFF_JWT_BAD_CLAIM,        /* a registered claim has the wrong type */
    BFF_JWT_EXPIRED,          /* now >= exp + leeway */
    BFF_JWT_NOT_YET_VALID,    /* now + leeway < nbf */
    BFF_JWT_WRONG_ISSUER,     /* iss missing or not configured */
    BFF_JWT_WRONG_AUDIENCE,   /* aud missing or without the audience */
    BFF_JWT_INTERNAL          /* out of memory, library failure */
} bff_jwt_status_e;

/* A stable lower-case name for logs and request notes ("expired"). */
const char *bff_jwt_status_name(bff_jwt_status_e st);

typedef struct bff_jwt_cache_t bff_jwt_cache_t;

/* Verifies token (the bare token, without "Bearer "). On BFF_JWT_OK,
 * *claims is the payload object, owned by p (bff_json_pool_own: do not
 * decref; it is the caller's own copy, mutable). Otherwise *why is a short
 * reason for the log, e.g. "exp 1700000000 is past (now 1700000100,
 * leeway 30s)"; client-supplied strings in it are truncated to 64 bytes
 * and non-printable bytes replaced, never any key material. now is in
 * seconds since the epoch. cache may be NULL; a hit skips every check,
 * which is sound because entries are keyed by the verifier fingerprint and
 * the token, and never outlive exp. */
bff_jwt_status_e bff_jwt_verify(json_t **claims, const char **why,
                                const bff_jwt_verifier_t *v,
                                bff_jwt_cache_t *cache, const char *token,
                                apr_int64_t now, apr_pool_t *p);

/* ------------------------------------------------------------ claims -- */

/* The value at a claim path, borrowed from claims, or NULL. A path that is
 * itself a top-level key is taken as is (namespaced claims such as
 * "https://example.com/roles"); otherwise it is split at dots
 * ("realm_access.roles"). */
json_t *bff_jwt_claim(json_t *claims, const char *path);

/* The claim at path as a list of strings (const char *): a string gives
 * one element, an array of strings its elements. NULL when missing or of
 * another type (an array with a non-string element included). */
apr_array_header_t *bff_jwt_claim_strings(json_t *claims, const char *path,
                                          apr_pool_t *p);

/* The token's scopes: "scope" (space separated string, RFC 8693/9068),
 * else "scp" or "scopes" (array of strings, or a space separated string).
 * Empty array when none. */
apr_array_header_t *bff_jwt_scopes(json_t *claims, apr_pool_t *p);

/* 1 when scope is among bff_jwt_scopes(claims). */
int bff_jwt_has_scope(json_t *claims, const char *scope, apr_pool_t *p);

/* Why a claim cannot become an identity header. */
typedef enum {
    BFF_CLAIM_OK = 0,
    BFF_CLAIM_MISSING,        /* absent, or null */
    BFF_CLAIM_CONTROL,        /* a control character (CR/LF would split the
                                 header, NUL truncate it) */
    BFF_CLAIM_SPACE,          /* a value or element that begins or ends
                                 with whitespace, which header parsers
                                 strip ("admin " would arrive as "admin") */
    BFF_CLAIM_STRUCTURE,      /* an object, or an array holding an array
                                 or object */
    BFF_CLAIM_SEPARATOR,      /* an array element contains the separator:
                                 the backend could not split it back */
    BFF_CLAIM_TOO_LONG        /* more than 4096 bytes */
} bff_claim_status_e;

/* Short English for a status ("control character", ...). */
const char *bff_claim_status_text(bff_claim_status_e st);

/* The claim at path rendered for a request header, only when it arrives
 * intact: a string as is, an integer, real or boolean as JSON prints it,
 * an array of those joined with sep (an empty array gives ""). Sets *out
 * on BFF_CLAIM_OK only. Claims are client-controlled through the issuer
 * (user names, display names): anything a backend would read differently
 * from the token is refused, never cut or dropped silently. */
bff_claim_status_e bff_jwt_claim_encode(const char **out, json_t *claims,
                                        const char *path, const char *sep,
                                        apr_pool_t *p);

/* bff_jwt_claim_encode's value, or NULL for any other status. */
const char *bff_jwt_claim_header(json_t *claims, const char *path,
                                 const char *sep, apr_pool_t *p);

/* ------------------------------------------------------------- cache -- */

/* A bounded cache of verified tokens for the threads of one process.
 * Keyed by SHA-256(verifier fingerprint || token), so a token is never
 * stored and a verifier never sees another's entries; each entry holds the
 * compact JSON of the claims and an expiry of min(exp, now + max_ttl).
 * Replacement is CLOCK (second chance), lookups are O(1) and the mutex
 * is held only to find, copy or swap one entry; JSON parsing and
 * serialisation happen outside it.
 *
 * Sharing across children (later): keep this API, and behind it store the
 * same key (bff_jwt_cache_key) and value ("<expiry> <claims JSON>") in an
 * httpd socache provider (shmcb) with expiry as its apr_time_t; the
 * verifier fingerprint stays valid across children because the verifier
 * is built in post_config before the fork. */

/* entries >= 1; max_ttl > 0 bounds entries of tokens without exp (and any
 * other: no entry lives longer than max_ttl seconds). The cache and its
 * mutex live in p. */
const char *bff_jwt_cache_create(bff_jwt_cache_t **out, apr_size_t entries,
                                 apr_int64_t max_ttl, apr_pool_t *p);

/* The cache key of token for v. */
void bff_jwt_cache_key(unsigned char key[32], const bff_jwt_verifier_t *v,
                       const char *token, apr_size_t len);

typedef struct {
    apr_uint64_t hits;
    apr_uint64_t misses;
    apr_uint64_t evictions;   /* live entries replaced to make room */
    apr_size_t entries;       /* entries in use now */
    apr_size_t capacity;
} bff_jwt_cache_stats_t;

void bff_jwt_cache_stats(bff_jwt_cache_stats_t *out, bff_jwt_cache_t *c);

/* ------------------------------------------------------------- files -- */

/* Reads a whole regular file of at most max bytes into a NUL-terminated
 * pool buffer. Returns NULL or an error naming what (e.g. "JWT secret
 * file"), the path and the problem. Used by every key/credential loader. */
const char *bff_file_read(char **buf, apr_size_t *len, const char *what,
                          const char *path, apr_size_t max, apr_pool_t *p);

#endif /* BFF_JWT_H */
