/* timeheap: a binary min-heap of (time, id) pairs, for the load mode's
 * schedules: the next message of each sender, and the clients waiting to
 * reconnect. Fixed capacity, set at creation (one entry per client at most
 * in each use), so pushing never allocates. */
#ifndef DCHAT_BENCH_TIMEHEAP_H
#define DCHAT_BENCH_TIMEHEAP_H

#include <stdint.h>

struct timeheap_entry {
    uint64_t at;
    uint32_t id;
};

struct timeheap {
    struct timeheap_entry *e;
    uint32_t len, cap;
};

/* An empty heap for up to cap entries; timeheap_free releases it. */
void timeheap_init(struct timeheap *h, uint32_t cap);
void timeheap_free(struct timeheap *h);

/* Adds (at, id). Returns 0, or -1 when the heap is full. */
int timeheap_push(struct timeheap *h, uint64_t at, uint32_t id);

/* Removes the entry with the smallest time into *out when that time is
 * <= now. Returns 1 when one was removed, 0 when none is due. */
int timeheap_pop_due(struct timeheap *h, uint64_t now, struct timeheap_entry *out);

#endif
