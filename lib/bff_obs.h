/*
 * mod_bff observability core (pure logic, no httpd.h): JSON string escaping
 * for log lines, analytics events that outlive the request pool, and the
 * bounded queue that carries them to a publisher thread.
 */
#ifndef BFF_OBS_H
#define BFF_OBS_H

#include <apr_pools.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

/* s (len bytes; not NUL terminated) as a quoted JSON string: quote,
 * backslash and control characters escaped (\n, \t, ... or \u00XX, DEL as
 * \u007f), valid UTF-8 kept, every byte of an invalid UTF-8 sequence
 * (overlong forms, surrogates, beyond U+10FFFF, truncated) replaced by
 * \ufffd. The result is always one valid JSON string token, whatever the
 * bytes: no log line can be split or extended through it. */
const char *bff_json_quote(const char *s, apr_size_t len, apr_pool_t *p);

/* Same for a NUL terminated string; NULL gives the token null. */
const char *bff_json_quote_str(const char *s, apr_pool_t *p);

/* ------------------------------------------------------------- events -- */

/* An analytics event: field/value pairs (a Redis stream entry), copied into
 * one malloc'd block so it can leave the request's pool and thread. */
typedef struct {
    int n;                  /* pairs */
    const char **kv;        /* 2n strings: field, value, field, value... */
    apr_size_t *len;        /* 2n lengths */
} bff_event_t;

/* Builds an event from 2*npairs NUL terminated strings (a NULL value makes
 * the pair be left out). Returns NULL when out of memory. Free with
 * bff_event_free. */
bff_event_t *bff_event_new(const char *const *kv, int npairs);
void bff_event_free(bff_event_t *e);
/* The value of field name, or NULL. */
const char *bff_event_get(const bff_event_t *e, const char *name);

/* -------------------------------------------------------------- queue -- */

/* A bounded FIFO of pointers between many producers (request threads) and
 * one consumer (the publisher thread). push never waits for the consumer:
 * when the queue is full the item is refused and counted as dropped. */
typedef struct bff_queue_t bff_queue_t;

typedef struct {
    apr_uint64_t pushed;     /* accepted */
    apr_uint64_t dropped;    /* refused: full or closed */
    unsigned int len;        /* waiting now */
    unsigned int cap;
} bff_queue_stats_t;

/* cap >= 1. The queue lives until p is destroyed (items still in it are
 * not freed: drain it first). */
apr_status_t bff_queue_create(bff_queue_t **q, unsigned int cap,
                              apr_pool_t *p);
/* 1: queued; 0: refused (full or closed; counted in dropped, the caller
 * keeps ownership of item). */
int bff_queue_push(bff_queue_t *q, void *item);
/* Takes up to max items, oldest first, waiting up to wait for the first
 * one. Returns how many (0: none within wait), or -1 once the queue is
 * closed and empty. */
int bff_queue_pop(bff_queue_t *q, void **items, int max,
                  apr_interval_time_t wait);
/* Refuses further pushes and wakes the consumer. */
void bff_queue_close(bff_queue_t *q);
void bff_queue_stats(bff_queue_t *q, bff_queue_stats_t *out);

#endif /* BFF_OBS_H */
