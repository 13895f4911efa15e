/*
 * mod_bff: server-sent events from Redis Streams, the pure part (no
 * httpd.h): stream ids as Last-Event-ID, the stream key of an identity,
 * and the text/event-stream framing of one stream entry.
 *
 * An entry's fields map to the event as follows: field "event" gives the
 * event: line (the type a browser's addEventListener names), field "data"
 * gives one data: line per line of its value (split on CRLF, LF or CR, as
 * the EventSource parser joins them back with LF); other fields are not
 * sent. Every entry carries its stream id as id:, so a reconnecting
 * client sends it back as Last-Event-ID. An entry without data (or whose
 * event name holds CR, LF or NUL, which cannot be framed) is sent as its
 * id: line alone: the client's last event id advances, no event fires.
 */
#ifndef BFF_SSE_H
#define BFF_SSE_H

#include <apr.h>
#include <apr_pools.h>

/* Parses a Redis stream id "MS-SEQ" strictly: two decimal numbers of at
 * most 20 digits without sign, spaces or leading zeros (except "0"),
 * each fitting 64 bits. 1 when s is one (out-parameters set), else 0. */
int bff_sse_id_parse(apr_uint64_t *ms, apr_uint64_t *seq, const char *s);

/* <0, 0, >0 as stream id a is before, equal to or after b (both valid). */
int bff_sse_id_cmp(const char *a, const char *b);

/* The stream key of an identity: PREFIX "notifications:" and the hex
 * SHA-256 of iss, a NUL byte and sub (so no issuer/subject pair can be
 * spelled as another), e.g. "bff:notifications:3a7b...". iss may be "". */
const char *bff_sse_identity_key(const char *prefix, const char *iss,
                                 const char *sub, apr_pool_t *p);

/* The stream key of a configured topic: PREFIX "topic:" NAME. */
const char *bff_sse_topic_key(const char *prefix, const char *topic,
                              apr_pool_t *p);

/* 1 when name is a topic name: 1 to 128 of [A-Za-z0-9_.:-]. */
int bff_sse_topic_valid(const char *name);

/* One field of a stream entry (binary-safe). */
typedef struct {
    const char *name;
    apr_size_t nlen;
    const char *value;
    apr_size_t vlen;
} bff_sse_field_t;

/* The event of entry id with its n fields, ending with the blank line
 * that dispatches it; *len its length. *why is NULL, or why only the id
 * is sent ("no data field", "event name with CR, LF or NUL"). */
const char *bff_sse_frame(apr_size_t *len, const char **why, const char *id,
                          const bff_sse_field_t *f, int n, apr_pool_t *p);

/* The comment line that keeps an idle stream alive (": keep-alive" and
 * the blank line). */
#define BFF_SSE_HEARTBEAT ": keep-alive\n\n"

#endif /* BFF_SSE_H */
