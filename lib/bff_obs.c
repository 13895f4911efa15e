/*
 * mod_bff observability core: JSON escaping, events, bounded queue.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>

#include "bff_obs.h"

/* ------------------------------------------------------------- JSON -- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static apr_size_t utf8_len(const unsigned char *s, apr_size_t n)
{
    unsigned int c = s[0], cp;
    apr_size_t need, i;

    if (c < 0xc2 || c > 0xf4) {
        return 0;           /* continuation byte, overlong lead, > U+10FFFF */
    }
    need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (n < need) {
        return 0;
    }
    cp = c & (need == 2 ? 0x1f : need == 3 ? 0x0f : 0x07);
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (need == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return need;
}

const char *bff_json_quote(const char *str, apr_size_t len, apr_pool_t *p)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    /* worst case: every byte becomes \ufffd (6 bytes) */
    char *out = apr_palloc(p, len * 6 + 3), *d = out;
    apr_size_t i = 0;

    *d++ = '"';
    while (i < len) {
        unsigned char c = s[i];
        apr_size_t n;

        if (c == '"' || c == '\\') {
            *d++ = '\\';
            *d++ = (char)c;
            i++;
        }
        else if (c < 0x20 || c == 0x7f) {
            *d++ = '\\';
            switch (c) {
            case '\n': *d++ = 'n'; break;
            case '\r': *d++ = 'r'; break;
            case '\t': *d++ = 't'; break;
            case '\b': *d++ = 'b'; break;
            case '\f': *d++ = 'f'; break;
            default:
                *d++ = 'u';
                *d++ = '0';
                *d++ = '0';
                *d++ = hex[c >> 4];
                *d++ = hex[c & 15];
            }
            i++;
        }
        else if (c < 0x80) {
            *d++ = (char)c;
            i++;
        }
        else if ((n = utf8_len(s + i, len - i)) > 0) {
            memcpy(d, s + i, n);
            d += n;
            i += n;
        }
        else {
            memcpy(d, "\\ufffd", 6);
            d += 6;
            i++;
        }
    }
    *d++ = '"';
    *d = '\0';
    return out;
}

const char *bff_json_quote_str(const char *s, apr_pool_t *p)
{
    return s ? bff_json_quote(s, strlen(s), p) : "null";
}

/* ----------------------------------------------------------- events -- */

bff_event_t *bff_event_new(const char *const *kv, int npairs)
{
    apr_size_t total = sizeof(bff_event_t), lens[2 * 64];
    bff_event_t *e;
    char *d;
    int i, n = 0;

    if (npairs < 0 || npairs > 64) {
        return NULL;
    }
    for (i = 0; i < 2 * npairs; i += 2) {
        if (!kv[i] || !kv[i + 1]) {
            continue;
        }
        lens[2 * n] = strlen(kv[i]);
        lens[2 * n + 1] = strlen(kv[i + 1]);
        total += lens[2 * n] + lens[2 * n + 1] + 2;
        n++;
    }
    total += (apr_size_t)(2 * n) * (sizeof(char *) + sizeof(apr_size_t));
    /* one block: the struct, the pointers, the lengths, the bytes */
    if (!(e = malloc(total))) {
        return NULL;
    }
    e->n = n;
    e->kv = (const char **)(e + 1);
    e->len = (apr_size_t *)(e->kv + 2 * n);
    d = (char *)(e->len + 2 * n);
    n = 0;
    for (i = 0; i < 2 * npairs; i += 2) {
        int k;
        if (!kv[i] || !kv[i + 1]) {
            continue;
        }
        for (k = 0; k < 2; k++) {
            apr_size_t l = lens[2 * n + k];
            memcpy(d, kv[i + k], l + 1);
            e->kv[2 * n + k] = d;
            e->len[2 * n + k] = l;
            d += l + 1;
        }
        n++;
    }
    return e;
}

void bff_event_free(bff_event_t *e)
{
    free(e);
}

const char *bff_event_get(const bff_event_t *e, const char *name)
{
    int i;

    for (i = 0; i < e->n; i++) {
        if (!strcmp(e->kv[2 * i], name)) {
            return e->kv[2 * i + 1];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ queue -- */

struct bff_queue_t {
    apr_thread_mutex_t *mx;
    apr_thread_cond_t *cv;
    void **ring;
    unsigned int cap, head, len;
    int closed;
    apr_uint64_t pushed, dropped;
};

apr_status_t bff_queue_create(bff_queue_t **out, unsigned int cap,
                              apr_pool_t *p)
{
    bff_queue_t *q = apr_pcalloc(p, sizeof(*q));
    apr_status_t rv;

    if (cap < 1) {
        return APR_EINVAL;
    }
    q->cap = cap;
    q->ring = apr_pcalloc(p, sizeof(void *) * cap);
    if ((rv = apr_thread_mutex_create(&q->mx, APR_THREAD_MUTEX_DEFAULT, p))
        != APR_SUCCESS
        || (rv = apr_thread_cond_create(&q->cv, p)) != APR_SUCCESS) {
        return rv;
    }
    *out = q;
    return APR_SUCCESS;
}

int bff_queue_push(bff_queue_t *q, void *item)
{
    int ok;

    apr_thread_mutex_lock(q->mx);
    ok = !q->closed && q->len < q->cap;
    if (ok) {
        q->ring[(q->head + q->len) % q->cap] = item;
        q->len++;
        q->pushed++;
        apr_thread_cond_signal(q->cv);
    }
    else {
        q->dropped++;
    }
    apr_thread_mutex_unlock(q->mx);
    return ok;
}

int bff_queue_pop(bff_queue_t *q, void **items, int max,
                  apr_interval_time_t wait)
{
    int n = 0;

    apr_thread_mutex_lock(q->mx);
    if (!q->len && !q->closed && wait > 0) {
        apr_time_t until = apr_time_now() + wait;
        /* spurious wake-ups: wait again for what is left */
        while (!q->len && !q->closed) {
            apr_time_t now = apr_time_now();
            if (now >= until) {
                break;
            }
            apr_thread_cond_timedwait(q->cv, q->mx, until - now);
        }
    }
    while (n < max && q->len) {
        items[n++] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    if (!n && q->closed) {
        n = -1;
    }
    apr_thread_mutex_unlock(q->mx);
    return n;
}

void bff_queue_close(bff_queue_t *q)
{
    apr_thread_mutex_lock(q->mx);
    q->closed = 1;
    apr_thread_cond_broadcast(q->cv);
    apr_thread_mutex_unlock(q->mx);
}

void bff_queue_stats(bff_queue_t *q, bff_queue_stats_t *out)
{
    apr_thread_mutex_lock(q->mx);
    out->pushed = q->pushed;
    out->dropped = q->dropped;
    out->len = q->len;
    out->cap = q->cap;
    apr_thread_mutex_unlock(q->mx);
}
