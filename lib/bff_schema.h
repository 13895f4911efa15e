/*
 * JSON Schema draft-07 validation of request bodies (and of any JSON value).
 *
 * A schema is compiled once (keywords checked, patterns compiled with
 * PCRE2, every $ref resolved) and can then validate from any number of
 * threads at once: a compiled schema is never written to after
 * bff_schema_compile returns.
 *
 * References resolve within the document only: JSON Pointer fragments,
 * "definitions", "$id" (base URI changes and plain-name fragments), and
 * the draft-07 metaschema, which is bundled. A reference to any other
 * document is a compile error: nothing is ever fetched.
 *
 * Nothing here includes httpd.h.
 */
#ifndef BFF_SCHEMA_H
#define BFF_SCHEMA_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>

typedef struct bff_schema_t bff_schema_t;

/* Compile flags */
#define BFF_SCHEMA_FORMAT_ASSERT 0x1   /* "format" fails values that do not
                                          match a known format; without it
                                          "format" is an annotation only */

/* Compiles doc (kept referenced by the schema; tied to p). name is used in
 * error messages (a file name). Returns NULL, or an error naming the
 * JSON Pointer of the bad keyword: "orders.json: /properties/qty/minimum:
 * must be a number". */
const char *bff_schema_compile(bff_schema_t **out, json_t *doc,
                               const char *name, int flags, apr_pool_t *p);

/* Reads and compiles a schema file (duplicate keys refused). */
const char *bff_schema_load(bff_schema_t **out, const char *path, int flags,
                            apr_pool_t *p);

/* One violation: where in the instance (a JSON Pointer, "" for the whole
 * value), which keyword failed, and a short message for humans. */
typedef struct {
    const char *pointer;
    const char *keyword;
    const char *message;
} bff_schema_error_t;

/* Validates instance. Returns 1 when valid. Otherwise 0, and when errors
 * is not NULL it receives a new array of bff_schema_error_t (at most
 * max_errors of them; max_errors <= 0 means 1). A failing anyOf, oneOf or
 * not is reported once, at its own keyword, without the failures of its
 * branches. */
int bff_schema_validate(apr_array_header_t **errors, const bff_schema_t *s,
                        const json_t *instance, int max_errors,
                        apr_pool_t *p);

/* Decoding an untrusted JSON text, bounded before anything is parsed. */
typedef enum {
    BFF_BODY_OK = 0,
    BFF_BODY_TOO_LARGE,   /* more than max_bytes */
    BFF_BODY_TOO_DEEP,    /* nesting deeper than max_depth */
    BFF_BODY_NOT_JSON     /* not JSON, or an object repeats a key */
} bff_body_result_e;

/* On BFF_BODY_OK *out is the value (tied to p); on BFF_BODY_NOT_JSON
 * *detail says what and where. Any JSON value is accepted at the top. */
bff_body_result_e bff_schema_parse_body(json_t **out, const char **detail,
                                        const char *buf, size_t len,
                                        size_t max_bytes, int max_depth,
                                        apr_pool_t *p);

/* Formats known to "format": 1 when name is one (date-time, date, time,
 * email, idn-email, hostname, idn-hostname, ipv4, ipv6, uri,
 * uri-reference, iri, iri-reference, uri-template, json-pointer,
 * relative-json-pointer, regex, and uuid as an extension). */
int bff_schema_format_known(const char *name);

/* 1 when value (len bytes of UTF-8) is valid for format name; unknown
 * formats accept everything. */
int bff_schema_format_check(const char *name, const char *value, size_t len);

/* ---------------------------------------------- query and header rules --
 * A typed rule for one query parameter or header, as an admin writes it:
 *   NAME TYPE [required] [min=N] [max=N] [pattern=REGEX] [enum=a|b|c]
 * TYPE is string, integer, number, boolean, uuid, date or date-time; min
 * and max bound numbers, or the length of strings (code points). */
typedef struct bff_rule_t bff_rule_t;

/* opts: the words after TYPE. Returns NULL or an error naming the bad
 * word. */
const char *bff_rule_compile(bff_rule_t **out, const char *name,
                             const char *type, const char *const *opts,
                             int nopts, apr_pool_t *p);

const char *bff_rule_name(const bff_rule_t *rule);

/* Checks value (NULL: absent). Returns 1 when valid, else 0 with the
 * keyword that failed ("required", "type", "minimum", "pattern", ...) and
 * a message. */
int bff_rule_check(const char **keyword, const char **message,
                   const bff_rule_t *rule, const char *value, apr_pool_t *p);

#endif /* BFF_SCHEMA_H */
