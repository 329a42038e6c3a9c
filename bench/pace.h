/* pace: the arithmetic of the bench's paced, open-loop run (bench --rate):
 * message i of the run is due at i / rate seconds after the start, and goes
 * out on sender i % senders, so the senders share the rate evenly and each
 * sender's messages are evenly spaced too. Every time is computed from the
 * message's index, never by adding up intervals, so a long run does not
 * drift, and rates below one message per tick (1 ms) work. The engine
 * (bench.c) asks on each tick how many are due; latency is measured from a
 * message's due time (pace_time_ns), not from when it was handed over. */
#ifndef DCHAT_BENCH_PACE_H
#define DCHAT_BENCH_PACE_H

#include <stdint.h>

/* Highest rate pace supports, in messages per second: the arithmetic below
 * stays within 64 bits up to here. */
#define PACE_RATE_MAX 100000000u

struct pace {
    uint32_t rate;      /* messages per second over all senders, 1..PACE_RATE_MAX */
    unsigned senders;   /* at least 1 */
    uint64_t total;     /* messages in the run */
};

/* When message i is due, in nanoseconds after the start:
 * floor(i * 1e9 / rate). */
uint64_t pace_time_ns(const struct pace *p, uint64_t i);

/* How many messages are due elapsed_ns after the start (those whose time
 * is <= elapsed_ns; message 0 is due at 0), at most p->total. */
uint64_t pace_due(const struct pace *p, uint64_t elapsed_ns);

/* How many of sender k's messages (k = 0 .. senders-1, the messages i with
 * i % senders == k) are due elapsed_ns after the start. */
uint64_t pace_due_sender(const struct pace *p, unsigned k, uint64_t elapsed_ns);

#endif
