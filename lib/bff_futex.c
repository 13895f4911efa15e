/*
 * mod_bff: the kernel's futex hash of a process with many threads
 * (bff_futex.h).
 */
#include <errno.h>
#include <sys/prctl.h>

#include "bff_futex.h"

/* linux/prctl.h of Linux 6.16; older headers do not name them */
#ifndef PR_FUTEX_HASH
#define PR_FUTEX_HASH 78
#define PR_FUTEX_HASH_SET_SLOTS 1
#define PR_FUTEX_HASH_GET_SLOTS 2
#endif

#define SLOTS_MIN 16u
#define SLOTS_MAX 16384u

unsigned bff_futex_hash_slots(int threads)
{
    unsigned slots = SLOTS_MIN;

    if (threads <= 1) {
        return 0;
    }
    while (slots < SLOTS_MAX && slots / 4 < (unsigned)threads) {
        slots <<= 1;
    }
    return slots;
}

int bff_futex_hash_set(unsigned slots, int *before, int *after)
{
    int n;

    *before = -1;
    *after = 0;
    n = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
    if (n < 0) {
        return errno;
    }
    *before = *after = n;
    if (slots == 0 || (unsigned)n == slots) {
        return 0;
    }
    if (prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, slots, 0, 0) != 0) {
        return errno;
    }
    n = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
    if (n < 0) {
        return errno;
    }
    *after = n;
    return 0;
}
