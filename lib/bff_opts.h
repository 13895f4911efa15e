/*
 * mod_bff: the one parser of NAME=VALUE directive options.
 *
 * A directive lists its options in a table (name, kind, where the value
 * goes in the directive's record, bounds); each word of the directive's
 * line is handed to bff_opt_parse, which finds the option, parses and
 * checks its value and stores it. Durations and sizes use
 * bff_parse_duration_ms and bff_parse_size, numbers are decimal.
 *
 * Messages name the option and say what was expected:
 *   "failure-rate=0: expected a number from 1 to 100"
 *   "lease-ttl=2m: expected a duration from 1ms to 1m"
 *   "unknown option 'colour=' (expected window=, slow= or open=)"
 * Values of strings and of options with their own parser (BFF_OPT_STR,
 * BFF_OPT_FN) are never repeated in a message: they may be secrets or
 * long templates.
 */
#ifndef BFF_OPTS_H
#define BFF_OPTS_H

#include <stddef.h>

#include <apr_pools.h>

typedef enum {
    BFF_OPT_INT = 1,    /* int, lo..hi */
    BFF_OPT_LONG,       /* long, lo..hi */
    BFF_OPT_INT64,      /* apr_int64_t, lo..hi */
    BFF_OPT_MS,         /* long milliseconds, a duration lo..hi ms */
    BFF_OPT_SIZE,       /* apr_size_t bytes, lo..hi */
    BFF_OPT_ONOFF,      /* int 1 for on, 0 for off */
    BFF_OPT_STR,        /* const char *, not empty */
    BFF_OPT_FLAG,       /* a bare word without value: int set to lo */
    BFF_OPT_FN          /* fn parses the value */
} bff_opt_kind_e;

/* Parses value into target (the directive's record, not the field);
 * returns NULL or what was expected. */
typedef const char *bff_opt_fn(void *target, const char *value,
                               apr_pool_t *p);

typedef struct {
    const char *name;
    bff_opt_kind_e kind;
    apr_size_t offset;          /* of the field in the target record */
    apr_int64_t lo, hi;         /* bounds; BFF_OPT_FLAG: the value set */
    bff_opt_fn *fn;             /* BFF_OPT_FN only */
} bff_opt_t;

#define BFF_OPT_MAX APR_INT64_MAX

/* Table entries; a table ends with BFF_OPT_END. */
#define BFF_OPT_NUM(name, kind, type, field, lo, hi) \
    { name, kind, offsetof(type, field), lo, hi, NULL }
#define BFF_OPT_VAL(name, kind, type, field) \
    { name, kind, offsetof(type, field), 0, 0, NULL }
#define BFF_OPT_SET(name, type, field, value) \
    { name, BFF_OPT_FLAG, offsetof(type, field), value, 0, NULL }
#define BFF_OPT_CALL(name, fn) \
    { name, BFF_OPT_FN, 0, 0, 0, fn }
#define BFF_OPT_END { NULL, 0, 0, 0, 0, NULL }

/* Parses one word of a directive ("timeout=2s", "required") into target.
 * Returns NULL, or an error message (see above). */
const char *bff_opt_parse(const bff_opt_t *table, void *target,
                          const char *word, apr_pool_t *p);

/* "window=, slow= or open=": the options of a table, for messages */
const char *bff_opt_names(const bff_opt_t *table, apr_pool_t *p);

#endif /* BFF_OPTS_H */
