/*
 * mod_bff: counts of requests in flight, shared by every process of a
 * server, with caps (an overload is answered at once, not queued).
 *
 * The table lives in memory every process maps (httpd's retained shared
 * memory): one row per process, claimed at its start, and in each row one
 * counter per thing counted (all aggregations, one endpoint, one backend
 * origin). A process changes only its own row, with atomic operations; a
 * count is the sum over the rows. A process that dies without leaving
 * (a crash) leaves its counts behind in its row only: the row is cleared
 * when the parent reaps the process (bff_inflight_forget), and the next
 * process to claim a row clears the rows of processes that no longer
 * exist, so a crash never leaves the gateway refusing requests.
 */
#ifndef BFF_INFLIGHT_H
#define BFF_INFLIGHT_H

#include <apr.h>
#include <apr_pools.h>

typedef struct bff_inflight_t bff_inflight_t;

/* Bytes a table of rows x counters needs. */
apr_size_t bff_inflight_size(int rows, int counters);

/* Attaches a table to mem (size from bff_inflight_size; zeroed memory is
 * an empty table, a table made with the same shape is taken as it is).
 * NULL when mem holds a table of another shape. */
bff_inflight_t *bff_inflight_attach(void *mem, int rows, int counters,
                                    apr_pool_t *p);

/* 1 when the process pid still exists. */
typedef int bff_inflight_alive_fn(apr_uint32_t pid);

/* Claims a row for process pid (clearing the rows of processes alive()
 * says are gone first). The row, or -1 when every row is taken. */
int bff_inflight_claim(bff_inflight_t *t, apr_uint32_t pid,
                       bff_inflight_alive_fn *alive);

/* Gives the row back (a process that exits normally). */
void bff_inflight_release(bff_inflight_t *t, int row);

/* Clears and frees the rows of process pid, which has exited (its parent
 * reaped it): what it counted is no longer in flight. */
void bff_inflight_forget(bff_inflight_t *t, apr_uint32_t pid);

/* What counter idx counts now, all rows. */
apr_uint32_t bff_inflight_count(const bff_inflight_t *t, int idx);

/* Enters n counters at once: each idx[i] counts one more unless that
 * makes its sum exceed caps[i] (0: no cap). Returns -1 when admitted;
 * else the position i of the first cap exceeded, and nothing changed.
 * Two requests entering at the same moment near a cap may both be
 * refused, never both admitted beyond it. */
int bff_inflight_enter(bff_inflight_t *t, int row, const int *idx,
                       const apr_uint32_t *caps, int n);

/* Leaves what bff_inflight_enter admitted. */
void bff_inflight_leave(bff_inflight_t *t, int row, const int *idx, int n);

#endif /* BFF_INFLIGHT_H */
