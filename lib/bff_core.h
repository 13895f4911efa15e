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

/* Writes v in decimal as jansson prints it (no NUL) into out, which has
 * room for BFF_JSON_INT_MAX bytes; returns the length. */
#define BFF_JSON_INT_MAX 21
apr_size_t bff_json_int_text(char *out, json_int_t v);

/* Serialises doc compactly into pool memory, NUL terminated: the bytes
 * json_dumpb(JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)
 * gives. A document jansson cannot dump (a string that is not UTF-8)
 * or nested deeper than JSON_PARSER_MAX_DEPTH + 64 gives "" and *len 0. */
const char *bff_json_dump(apr_size_t *len, const json_t *doc, apr_pool_t *p);

/* Decodes a JSON text (any value, NUL allowed in strings) to the value
 * json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, err) gives, or
 * NULL with err filled in by jansson. A text nested deeper than
 * max_depth (when 0 < max_depth < JSON_PARSER_MAX_DEPTH; else jansson's
 * limit holds) is refused before it is decoded, with err->text "nesting
 * deeper than N" and err->line -1. The caller owns the value. */
json_t *bff_json_load(const char *buf, size_t len, int max_depth,
                      json_error_t *err);

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
 * the array has a NULL after the last value. An empty path segment where
 * a parameter stands ("/users//orders", "/users/" for "/users/{id}") is a
 * bad value of that parameter (BADPARAM), never a match of a shorter
 * path. Only MATCH sets *values and only BADPARAM sets *bad_param. */
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
/* Its segments: the name of segment i, *iter set when "[]" follows it. */
int bff_ref_nsegs(const bff_ref_t *ref);
const char *bff_ref_seg(const bff_ref_t *ref, int i, int *iter);

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
/* The first segment of a deny/allow path: "user" for "user.password_hash",
 * "orders" for "orders[].note". The whole path when it has one segment. */
const char *bff_shape_path_root(const char *path, apr_pool_t *p);
void bff_shape_apply(const bff_shape_t *sh, json_t *doc);
int bff_shape_empty(const bff_shape_t *sh);

/* -------------------------------------------------------- presentation -- */

/* Client-specific reshaping of the merged document, all configured per
 * endpoint and applied in this order:
 *   1. joins    orders[].product := the element of products[] whose id
 *               equals the order's product_id (before deny/allow, so the
 *               source list can be denied afterwards)
 *   2. deny/allow (bff_shape_t above)
 *   3. lifts    an object's members moved into the root (or another
 *               object), in directive order
 *   4. renames  a value moved to another path (user.name -> name); both
 *               paths may go through the same array: orders[].quantity ->
 *               orders[].qty renames inside every element
 *   5. wraps    a value replaced by {key: value}
 *   6. drop-empty  object members that are null, "", [] or {} removed
 *               (depth first, so an object emptied by it goes too)
 * A key that a lift or a rename writes may already exist: the merge
 * policy decides. */
typedef enum {
    BFF_MERGE_ERROR = 0,   /* refused at config time when detectable (two
                              renames to one path, a rename onto a backend's
                              key); at run time the answer fails (502) */
    BFF_MERGE_FIRST,       /* the value already there stays */
    BFF_MERGE_LAST,        /* the value written later replaces it */
    BFF_MERGE_NAMESPACE    /* the later value goes to "<source>_<key>",
                              source being the lifted or renamed path's
                              first segment (the backend) */
} bff_merge_e;

typedef struct bff_present_t bff_present_t;

bff_present_t *bff_present_create(apr_pool_t *p);
/* "error", "first-wins", "last-wins" or "namespace". */
const char *bff_present_policy(bff_present_t *pr, const char *policy,
                               apr_pool_t *p);
bff_merge_e bff_present_get_policy(const bff_present_t *pr);
/* target "orders[].product", spec "products[].id=orders[].product_id":
 * both sides go through one array each, the local side's array is the
 * target's. Unmatched elements get null. Matches are copies, of at most
 * max_size bytes in total as compact JSON (0: what bff_present_joins is
 * given). */
const char *bff_present_join(bff_present_t *pr, const char *target,
                             const char *spec, apr_size_t max_size,
                             apr_pool_t *p);
/* into NULL or "": the root. Neither path may go through an array. A
 * value that is not an object is dropped (a failed backend's null). */
const char *bff_present_lift(bff_present_t *pr, const char *path,
                             const char *into, apr_pool_t *p);
const char *bff_present_rename(bff_present_t *pr, const char *from,
                               const char *to, apr_pool_t *p);
const char *bff_present_wrap(bff_present_t *pr, const char *path,
                             const char *key, apr_pool_t *p);
void bff_present_drop_empty(bff_present_t *pr, int on);
/* 1 when nothing but (possibly) joins is configured. */
int bff_present_empty(const bff_present_t *pr);
/* Config-time collisions under BFF_MERGE_ERROR: roots are the top-level
 * keys of the merged document (backend names, const char *). NULL or an
 * error naming both writers. */
const char *bff_present_check(const bff_present_t *pr,
                              const apr_array_header_t *roots, apr_pool_t *p);
/* Step 1, in place (p for scratch memory): NULL, or the error of the
 * first join whose copies would exceed its byte limit (max_size for
 * joins without their own), which stops there. *copied: the bytes the
 * joins copied (or, after an error, would have). */
const char *bff_present_joins(apr_size_t *copied, const bff_present_t *pr,
                              json_t *doc, apr_size_t max_size,
                              apr_pool_t *p);
/* Steps 3-6, in place. NULL, or (policy error only) the collision. */
const char *bff_present_apply(const bff_present_t *pr, json_t *doc,
                              apr_pool_t *p);

/* ------------------------------------------------------ sparse fieldsets -- */

/* The fields a client may select (?fields=user.name,orders.total): an
 * allow-list of dotted paths ("[]" optional: orders[].total is
 * orders.total); a listed path also allows every path below it. Paths
 * under a forbidden one (the endpoint's deny list) are reported as
 * forbidden rather than unknown. */
typedef struct bff_fields_t bff_fields_t;

#define BFF_FIELDS_MAX      64     /* fields in one selection */
#define BFF_FIELD_MAX_LEN   256

bff_fields_t *bff_fields_create(apr_pool_t *p);
const char *bff_fields_allow(bff_fields_t *fl, const char *path,
                             apr_pool_t *p);
const char *bff_fields_forbid(bff_fields_t *fl, const char *path,
                              apr_pool_t *p);
int bff_fields_count(const bff_fields_t *fl);
/* The allow-list, normalised, in config order (const char *). */
const apr_array_header_t *bff_fields_allowed(const bff_fields_t *fl);

typedef struct {
    const char *norm;              /* sorted, unique, comma-joined */
    apr_array_header_t *fields;    /* const char *, normalised, sorted */
    apr_array_header_t *unknown;   /* as the client wrote them */
    apr_array_header_t *forbidden;
    const char *error;             /* why the list as a whole is refused
                                      (empty, too many, too long) */
} bff_fields_sel_t;

/* Checks a client's comma-separated list (already URL-decoded): items are
 * trimmed of spaces, empty items ignored. Returns 1 when every field is
 * allowed (norm and fields set), 0 otherwise (unknown, forbidden and/or
 * error set). */
int bff_fields_select(bff_fields_sel_t *sel, const bff_fields_t *fl,
                      const char *list, apr_pool_t *p);
/* An allow shape keeping exactly the selected fields. */
bff_shape_t *bff_fields_shape(const apr_array_header_t *fields,
                              apr_pool_t *p);

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
