/*
 * Hooks into the curl fetcher for a fetcher that delegates part of its
 * requests to one (bff_fetch_h1.c sends https:// there) and must serve its
 * own sockets and curl's in one wait. f comes from bff_fetch_curl_create.
 */
#ifndef BFF_FETCH_CURL_H
#define BFF_FETCH_CURL_H

#include <poll.h>

#include "bff_fetch.h"

/* Requests started on f and not yet completed. */
int bff_fetch_curl_in_flight(const bff_fetcher_t *f);

/* Sleeps until I/O is possible on one of curl's sockets or of fds, curl's
 * next internal timeout, or timeout_ms; fds[].revents are then set as
 * poll(2) sets them. Runs no transfer: bff_fetch_wait(f, &done, 0) does
 * that afterwards. APR_SUCCESS, or an error. */
apr_status_t bff_fetch_curl_poll(bff_fetcher_t *f, struct pollfd *fds,
                                 unsigned nfds, int timeout_ms);

#endif /* BFF_FETCH_CURL_H */
