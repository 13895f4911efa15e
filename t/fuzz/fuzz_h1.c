/*
 * libFuzzer target for the HTTP/1.1 response parser.
 *
 *   scripts/fuzz.sh fuzz_h1
 *
 * Input: a flags byte (bit 0: response to HEAD, bits 1-2: max_body, bit 3:
 * the peer closes at the end), a seed byte for the split points, then the
 * bytes the backend sent. Each feed gets its own exactly-sized heap copy,
 * so ASan catches any read past a chunk. Besides the sanitizers, it aborts
 * when an invariant breaks: the outcome must not depend on how the bytes
 * were split; the body never exceeds max_body and is NUL terminated; a
 * complete response consumed no more than it was given, has a final
 * status, and (unless delimited by the close) is complete on its own
 * bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bff_h1.h"

typedef struct {
    bff_h1_rc_e rc;
    int status, keep_alive;
    size_t used;
    bff_h1_buf_t body;
} outcome_t;

static bff_h1_parser_t parser;   /* large: not on the stack */

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* chunk: 0 for random sizes from seed, else a fixed size */
static void parse(outcome_t *o, const uint8_t *d, size_t n, size_t max,
                  int head, int eof, size_t chunk, uint32_t seed)
{
    bff_h1_parser_t *ps = &parser;
    size_t pos = 0;

    memset(o, 0, sizeof(*o));
    bff_h1_init(ps, &o->body, max, head);
    o->rc = BFF_H1_AGAIN;
    while (o->rc == BFF_H1_AGAIN && pos < n) {
        size_t k = chunk ? chunk : 1 + next_rand(&seed) % 64, used = 0;
        char *copy;
        if (k > n - pos) {
            k = n - pos;
        }
        copy = malloc(k);
        check(copy != NULL);
        memcpy(copy, d + pos, k);
        o->rc = bff_h1_feed(ps, copy, k, &used);
        free(copy);
        check(used <= k);
        check(o->rc != BFF_H1_AGAIN || used == k);
        o->used = pos + used;
        pos += k;
    }
    if (o->rc == BFF_H1_AGAIN && eof) {
        o->rc = bff_h1_eof(ps);
    }
    check(o->body.len <= max);
    if (o->rc == BFF_H1_DONE) {
        check(o->body.data && o->body.data[o->body.len] == '\0');
        check(ps->status >= 200 && ps->status <= 599);
        check(o->used <= n);
        check(!head || o->body.len == 0);
        o->status = ps->status;
        o->keep_alive = ps->keep_alive;
    }
    else if (o->rc != BFF_H1_AGAIN) {
        check(ps->errmsg != NULL);
    }
}

static void same(const outcome_t *a, const outcome_t *b)
{
    check(a->rc == b->rc);
    if (a->rc == BFF_H1_DONE) {
        check(a->status == b->status && a->keep_alive == b->keep_alive);
        check(a->used == b->used && a->body.len == b->body.len);
        check(memcmp(a->body.data, b->body.data, a->body.len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t maxes[4] = { 0, 16, 1000, 1 << 20 };
    outcome_t whole, rnd, bytes, prefix;
    size_t max;
    int head, eof;
    uint32_t seed;

    if (size < 2) {
        return 0;
    }
    head = data[0] & 1;
    max = maxes[(data[0] >> 1) & 3];
    eof = (data[0] >> 3) & 1;
    seed = 0x9e3779b9u ^ data[1] ^ ((uint32_t)size << 8);
    data += 2;
    size -= 2;

    parse(&whole, data, size, max, head, eof, size ? size : 1, seed);
    parse(&rnd, data, size, max, head, eof, 0, seed);
    same(&whole, &rnd);
    if (size <= 4096) {
        parse(&bytes, data, size, max, head, eof, 1, seed);
        same(&whole, &bytes);
        bff_h1_buf_free(&bytes.body);
    }
    /* a message with its own framing needs nothing after its last byte */
    if (whole.rc == BFF_H1_DONE && whole.keep_alive) {
        parse(&prefix, data, whole.used, max, head, 0, 0, seed);
        same(&whole, &prefix);
        bff_h1_buf_free(&prefix.body);
    }
    bff_h1_buf_free(&whole.body);
    bff_h1_buf_free(&rnd.body);
    return 0;
}
