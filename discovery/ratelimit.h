/* ratelimit: a token bucket per source address, for registrations (each
 * one is a row in SQLite, kept for good). Every address starts with burst
 * tokens and gains per_second of them a second, up to burst; a request
 * takes one. The table holds at most max_addrs addresses; a new address
 * past that takes the slot of the one that asked least recently (which
 * then starts afresh with a full bucket if it comes back). Owns its
 * table. */
#ifndef DCHAT_RATELIMIT_H
#define DCHAT_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/* The defaults discovery uses (docs/DISCOVERY.md, 6). */
#define RATELIMIT_BURST 10
#define RATELIMIT_PER_SECOND 1
#define RATELIMIT_ADDRS 1024
#define RATELIMIT_ADDR_MAX 64   /* bytes of an address, with its NUL */

typedef struct ratelimit ratelimit;

/* burst >= 1 tokens, per_second >= 1, max_addrs >= 1. */
ratelimit *ratelimit_new(unsigned burst, unsigned per_second, size_t max_addrs);
void ratelimit_free(ratelimit *rl);

/* Takes a token for addr at now_ms (a monotonic clock). Returns 0, or -1
 * when addr has none left and *retry_after_ms (may be NULL) says when it
 * will have one. An address longer than RATELIMIT_ADDR_MAX - 1 bytes is
 * counted under its first RATELIMIT_ADDR_MAX - 1 bytes. */
int ratelimit_take(ratelimit *rl, const char *addr, uint64_t now_ms,
                   uint64_t *retry_after_ms);

/* Addresses in the table (for tests). */
size_t ratelimit_count(const ratelimit *rl);

#endif
