/* fdlimit: the process's descriptor limit (RLIMIT_NOFILE) and what it allows.
 * A server raises its soft limit to the hard one at start, then sizes its
 * connection cap from what it got, less a reserve for the descriptors that
 * are not connections (listeners, the database, logs, libuv's own), so that
 * a connection past the cap gets a 503 instead of an accept failing with
 * EMFILE. No state: plain functions of the process limit. */
#ifndef DCHAT_FDLIMIT_H
#define DCHAT_FDLIMIT_H

#include <stdint.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit (a hard limit of
 * RLIM_INFINITY is taken as the kernel's ceiling, /proc/sys/fs/nr_open).
 * *before_out gets the soft limit found and *soft_out the one in force on
 * return; either may be NULL; RLIM_INFINITY is reported as UINT64_MAX.
 * Returns 0, also when the soft limit was the hard one already, or the
 * negative UV_E* code of the failed getrlimit or setrlimit; then *soft_out
 * is the limit still in force (0 when even getrlimit failed). */
int fdlimit_raise(uint64_t *before_out, uint64_t *soft_out);

/* fdlimit_raise, with what it did logged for the operator (info), or why
 * it could not (warn, saying to raise ulimit -n before starting prog).
 * Returns the soft limit in force (0 when unknown). */
uint64_t fdlimit_raise_logged(const char *prog);

/* How many connections a process may accept with limit descriptors when it
 * keeps reserve of them for everything else: limit - reserve, at most
 * UINT_MAX; 0 when limit <= reserve, which leaves the caller to decide. */
unsigned fdlimit_connections(uint64_t limit, unsigned reserve);

#endif
