/*
 * mod_bff core: pure logic shared by the httpd glue, the unit tests and the
 * fuzz targets. Nothing under lib/ includes httpd.h: it depends on APR,
 * jansson and (for the fetcher only) libcurl.
 *
 * Conventions: functions that can fail on user input return NULL on success
 * or a human readable error string allocated from the pool (config-time
 * functions) / an error enum (request-time functions). Out-parameters first,
 * pool last.
 */
#ifndef BFF_CORE_H
#define BFF_CORE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>

/* ------------------------------------------------------------ jansson -- */

/* Ties a jansson value to a pool: json_decref runs at pool cleanup.
 * Returns v for convenience. */
json_t *bff_json_pool_own(json_t *v, apr_pool_t *p);

/* Largest nesting depth of a JSON text ([ and { outside strings); scans
 * bytes only, so it is safe to run before decoding untrusted input. */
int bff_json_depth(const char *buf, size_t len);

/* ------------------------------------------------------------- routes -- */

/* A route pattern is an absolute path whose segments are literals or a whole
 * segment parameter: /api/profile/{user_id:int}. Types:
 *   {name}          any non-empty segment (default)
 *   {name:int}      [0-9]{1,18}
 *   {name:uuid}     8-4-4-4-12 hex digits (either case)
 *   {name:~REGEX}   POSIX extended regex, anchored at both ends
 * Parameter names are [A-Za-z_][A-Za-z0-9_]* and unique within a route. */
typedef enum {
    BFF_PARAM_SEGMENT = 0,
    BFF_PARAM_INT,
    BFF_PARAM_UUID,
    BFF_PARAM_REGEX
} bff_param_type_e;

typedef struct bff_route_t bff_route_t;

/* Compiles a pattern. Returns NULL or an error such as
 * "route '/a/{id:float}': parameter 'id': unknown type 'float' (expected
 * int, uuid or ~regex)". A trailing '/' is a segment of its own; an inner
 * empty segment ("//") is rejected since it could never match. */
const char *bff_route_compile(bff_route_t **out, const char *pattern,
                              apr_pool_t *p);

/* The pattern as written. */
const char *bff_route_pattern(const bff_route_t *rt);

/* Number and names of the route's parameters, in pattern order. */
int bff_route_nparams(const bff_route_t *rt);
const char *bff_route_param_name(const bff_route_t *rt, int i);
bff_param_type_e bff_route_param_type(const bff_route_t *rt, int i);

typedef enum {
    BFF_ROUTE_MATCH = 0,   /* *values filled, one per parameter */
    BFF_ROUTE_NOMATCH,     /* literal segments or segment count differ */
    BFF_ROUTE_BADPARAM     /* shape matches, *bad_param names the parameter
                              whose value does not match its type */
} bff_route_result_e;

/* Matches a decoded request path (r->uri). values[i] are copies from p;
 * the array has a NULL after the last value. An empty path segment never
 * matches a parameter (NOMATCH). Only MATCH sets *values and only
 * BADPARAM sets *bad_param. */
bff_route_result_e bff_route_match(const char ***values, int *bad_param,
                                   const bff_route_t *rt, const char *path,
                                   apr_pool_t *p);

/* ---------------------------------------------------------- references -- */

/* A reference names a value available while an endpoint runs:
 *   user_id                a route parameter (a JSON string, or integer for int)
 *   user                   the whole reply of backend "user"
 *   user.address.city      a field of it
 *   orders[].product_id    through an array: the unique values in first-seen
 *                          order, as a JSON array (scalars compared by value)
 *   orders[]               the array itself (same as "orders")
 * Segments are [A-Za-z0-9_-]+; "[]" may follow any segment. A reference with
 * at least one "[]" always yields an array (possibly empty). */
typedef struct bff_ref_t bff_ref_t;

const char *bff_ref_parse(bff_ref_t **out, const char *text, apr_pool_t *p);
const char *bff_ref_root(const bff_ref_t *ref);   /* first segment */
const char *bff_ref_text(const bff_ref_t *ref);   /* as written */
int bff_ref_is_multi(const bff_ref_t *ref);       /* contains [] */

/* Evaluates the reference against root_value (the value bff_ref_root names).
 * Returns a NEW reference (caller decrefs), or NULL when a non-multi path
 * does not exist (missing field, or a field of a non-object, arrays
 * included: only "[]" iterates). Multi references skip missing and null
 * values, yield nothing for "[]" applied to a non-array, and flatten nested
 * "[]". The result may share sub-values with root_value. */
json_t *bff_ref_eval(const bff_ref_t *ref, json_t *root_value);

/* ----------------------------------------------------------- templates -- */

/* Templates are text with {reference} placeholders. A '{' starts a
 * placeholder only when followed by [A-Za-z_]; any other '{' is literal (so
 * JSON bodies such as {"ids":{orders[].product_id}} work as written). */
typedef enum {
    BFF_TPL_URL = 0,   /* absolute http(s) URL; values are percent-encoded */
    BFF_TPL_JSON       /* JSON text; values are inserted as JSON */
} bff_tpl_mode_e;

typedef struct bff_tpl_t bff_tpl_t;

/* Compiles a template. URL mode requires http:// or https://, a host, and no
 * placeholder before the first '/' of the path (the scheme, host and port
 * are never built from request data); literal bytes must be printable
 * ASCII without spaces. JSON mode requires that the text with every
 * placeholder replaced by null parses as JSON, and rejects placeholders
 * inside JSON strings. */
const char *bff_tpl_compile(bff_tpl_t **out, const char *text,
                            bff_tpl_mode_e mode, apr_pool_t *p);

/* The template as written. */
const char *bff_tpl_text(const bff_tpl_t *tpl);

/* The placeholders' references, in order of appearance (bff_ref_t *). */
const apr_array_header_t *bff_tpl_refs(const bff_tpl_t *tpl);

/* Supplies the value of a reference at expansion time: a borrowed value, or
 * NULL when unavailable. */
typedef json_t *bff_tpl_lookup_fn(void *baton, const bff_ref_t *ref);

/* Expands a template. URL mode: strings are percent-encoded (only
 * ALPHA DIGIT - _ ~ stay as they are; everything else, '.' included,
 * becomes %XX), integers/reals/booleans print as JSON does (except that
 * the '+' of an exponent becomes %2B), arrays are comma-joined encoded
 * elements, objects and null (also inside arrays) are errors. JSON mode:
 * each value is inserted as compact JSON. Returns NULL on success or an
 * error naming the reference ("reference 'user.id' has no value"). */
const char *bff_tpl_expand(const char **out, const bff_tpl_t *tpl,
                           bff_tpl_lookup_fn *lookup, void *baton,
                           apr_pool_t *p);

/* Percent-encodes s as bff_tpl_expand does for URL values. */
const char *bff_url_encode(const char *s, apr_pool_t *p);

/* ------------------------------------------------------------- shaping -- */

/* Deny and allow lists of dotted paths: "user.password_hash",
 * "orders[].internal_note" ([] optional: a plain segment that meets an array
 * applies to each element). When the allow list is non-empty only allowed
 * paths (and the objects/arrays leading to them) are kept; deny is applied
 * after allow. Object keys are what gets filtered: array elements are never
 * removed, and a scalar found where an allow path expects an object is
 * kept. Paths missing from a document are ignored. */
typedef struct bff_shape_t bff_shape_t;

bff_shape_t *bff_shape_create(apr_pool_t *p);
const char *bff_shape_add(bff_shape_t *sh, const char *path, int allow,
                          apr_pool_t *p);
/* Applies the shape to doc in place. */
void bff_shape_apply(const bff_shape_t *sh, json_t *doc);
int bff_shape_empty(const bff_shape_t *sh);

/* ----------------------------------------------------------- durations -- */

/* Parses "250ms", "2s", "1.5s", "1m" or a bare number of seconds into
 * milliseconds. Returns NULL or an error. */
const char *bff_parse_duration_ms(long *out_ms, const char *text,
                                  apr_pool_t *p);
/* Parses "1048576", "512k", "1M" (binary units) into bytes. */
const char *bff_parse_size(apr_size_t *out, const char *text, apr_pool_t *p);
/* Parses a decimal integer from lo to hi. Returns NULL or an error
 * ("expected a number from lo to hi"). */
const char *bff_parse_int(int *out, const char *text, int lo, int hi,
                          apr_pool_t *p);

#endif /* BFF_CORE_H */
