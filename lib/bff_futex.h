/*
 * mod_bff: the kernel's futex hash of a process with many threads.
 *
 * A thread that waits on a pthread mutex or condition variable sleeps in
 * the kernel on a futex, queued in the chain of the hash bucket its
 * address falls in, and every wake-up walks that chain under the bucket's
 * lock until it finds a waiter of its own futex. Since Linux 6.16 a
 * multi-threaded process has a futex hash of its own, sized by the CPUs
 * it may run on (16 buckets up to four CPUs), not by its threads. An
 * httpd child of the event MPM keeps its idle workers waiting on one
 * condition variable: hundreds of them in one chain, and every futex
 * falling in the same bucket (one in 16) pays a walk of hundreds of
 * entries for each wake-up. Measured: 14% of a child's CPU in the
 * kernel's futex_wake with 384 threads and 16 buckets, below 0.6% with
 * 2,048 buckets (bench/RESULTS.md).
 */
#ifndef BFF_FUTEX_H
#define BFF_FUTEX_H

/* The buckets for a process of that many threads: four per thread (the
 * kernel's own sizing per CPU), a power of two from 16 to 16,384; 0 for
 * a single thread, which has no use for a hash of its own. */
unsigned bff_futex_hash_slots(int threads);

/* Gives this process a futex hash of slots buckets (0: nothing to do).
 * Returns 0, with the buckets before (0: the kernel's global hash) and
 * after; or an errno value, with *before -1 when the kernel cannot say
 * what its hash is (EINVAL: a kernel without process futex hashes,
 * before 6.16, where every process shares the global hash and there is
 * nothing to size), else the buckets kept (the kernel refused the size:
 * EINVAL for one not a power of two, ENOMEM). */
int bff_futex_hash_set(unsigned slots, int *before, int *after);

#endif /* BFF_FUTEX_H */
