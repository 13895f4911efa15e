/*
 * mod_bff: shared counts of requests in flight (see bff_inflight.h).
 */
#include <string.h>

#include <apr_atomic.h>

#include "bff_inflight.h"

#define MAGIC 0x62666631u   /* "bff1" */

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t rows;
    apr_uint32_t counters;
    apr_uint32_t pad;
} head_t;

struct bff_inflight_t {
    head_t *head;
    volatile apr_uint32_t *pids;       /* rows: owner, 0 free */
    volatile apr_uint32_t *counts;     /* rows x counters */
    int rows, counters;
};

apr_size_t bff_inflight_size(int rows, int counters)
{
    return sizeof(head_t) + sizeof(apr_uint32_t) * (apr_size_t)rows
           + sizeof(apr_uint32_t) * (apr_size_t)rows * (apr_size_t)counters;
}

bff_inflight_t *bff_inflight_attach(void *mem, int rows, int counters,
                                    apr_pool_t *p)
{
    bff_inflight_t *t;
    head_t *h = mem;

    if (rows < 1 || counters < 1) {
        return NULL;
    }
    if (h->magic == 0) {
        memset(mem, 0, bff_inflight_size(rows, counters));
        h->rows = (apr_uint32_t)rows;
        h->counters = (apr_uint32_t)counters;
        h->magic = MAGIC;
    }
    else if (h->magic != MAGIC || h->rows != (apr_uint32_t)rows
             || h->counters != (apr_uint32_t)counters) {
        return NULL;
    }
    t = apr_pcalloc(p, sizeof(*t));
    t->head = h;
    t->pids = (volatile apr_uint32_t *)(h + 1);
    t->counts = t->pids + rows;
    t->rows = rows;
    t->counters = counters;
    return t;
}

static volatile apr_uint32_t *row_of(const bff_inflight_t *t, int row)
{
    return t->counts + (apr_size_t)row * (apr_size_t)t->counters;
}

static void row_clear(bff_inflight_t *t, int row)
{
    volatile apr_uint32_t *c = row_of(t, row);
    int i;

    for (i = 0; i < t->counters; i++) {
        apr_atomic_set32(&c[i], 0);
    }
}

/* Row i of a process that is gone: its counts go with it (cleared
 * before the row is freed, so a new owner starts at 0). */
static void row_forget(bff_inflight_t *t, int i, apr_uint32_t owner)
{
    row_clear(t, i);
    apr_atomic_cas32(&t->pids[i], 0, owner);
}

void bff_inflight_forget(bff_inflight_t *t, apr_uint32_t pid)
{
    int i;

    for (i = 0; pid && i < t->rows; i++) {
        if (apr_atomic_read32(&t->pids[i]) == pid) {
            row_forget(t, i, pid);
        }
    }
}

int bff_inflight_claim(bff_inflight_t *t, apr_uint32_t pid,
                       bff_inflight_alive_fn *alive)
{
    int i;

    for (i = 0; i < t->rows; i++) {
        apr_uint32_t owner = apr_atomic_read32(&t->pids[i]);
        if (owner && owner != pid && !alive(owner)) {
            row_forget(t, i, owner);
        }
    }
    for (i = 0; i < t->rows; i++) {
        if (apr_atomic_cas32(&t->pids[i], pid, 0) == 0) {
            row_clear(t, i);
            return i;
        }
    }
    return -1;
}

void bff_inflight_release(bff_inflight_t *t, int row)
{
    if (row >= 0 && row < t->rows) {
        row_clear(t, row);
        apr_atomic_set32(&t->pids[row], 0);
    }
}

apr_uint32_t bff_inflight_count(const bff_inflight_t *t, int idx)
{
    apr_uint32_t sum = 0;
    int i;

    if (idx < 0 || idx >= t->counters) {
        return 0;
    }
    for (i = 0; i < t->rows; i++) {
        sum += apr_atomic_read32(&row_of(t, i)[idx]);
    }
    return sum;
}

int bff_inflight_enter(bff_inflight_t *t, int row, const int *idx,
                       const apr_uint32_t *caps, int n)
{
    volatile apr_uint32_t *c;
    int i, over = -1;

    if (row < 0 || row >= t->rows) {
        return -1;       /* a process without a row is not counted */
    }
    c = row_of(t, row);
    /* count first, then look: of two entering at once, each sees the
     * other, so neither passes a cap unseen */
    for (i = 0; i < n; i++) {
        if (idx[i] >= 0 && idx[i] < t->counters) {
            apr_atomic_inc32(&c[idx[i]]);
        }
    }
    for (i = 0; i < n && over < 0; i++) {
        if (caps[i] && idx[i] >= 0 && idx[i] < t->counters
            && bff_inflight_count(t, idx[i]) > caps[i]) {
            over = i;
        }
    }
    if (over >= 0) {
        bff_inflight_leave(t, row, idx, n);
    }
    return over;
}

void bff_inflight_leave(bff_inflight_t *t, int row, const int *idx, int n)
{
    volatile apr_uint32_t *c;
    int i;

    if (row < 0 || row >= t->rows) {
        return;
    }
    c = row_of(t, row);
    for (i = 0; i < n; i++) {
        if (idx[i] >= 0 && idx[i] < t->counters) {
            apr_atomic_dec32(&c[idx[i]]);
        }
    }
}
