/* pace: due times and due counts of the paced run (see pace.h). Products
 * are split at whole seconds so that nothing overflows 64 bits for any
 * elapsed time below 500 years and any rate up to PACE_RATE_MAX. */
#include "bench/pace.h"

#define NS 1000000000ull

uint64_t pace_time_ns(const struct pace *p, uint64_t i)
{
    /* i = q * rate + r: q whole seconds, then r / rate of one */
    return i / p->rate * NS + i % p->rate * NS / p->rate;
}

uint64_t pace_due(const struct pace *p, uint64_t elapsed_ns)
{
    /* Message i is due when floor(i * 1e9 / rate) <= t, that is when
     * i * 1e9 < (t + 1) * rate: the count is ceil((t + 1) * rate / 1e9). */
    uint64_t u = elapsed_ns + 1;
    uint64_t due = u / NS * p->rate + (u % NS * p->rate + NS - 1) / NS;
    return due < p->total ? due : p->total;
}

uint64_t pace_due_sender(const struct pace *p, unsigned k, uint64_t elapsed_ns)
{
    uint64_t due = pace_due(p, elapsed_ns);
    return due > k ? (due - k + p->senders - 1) / p->senders : 0;
}
