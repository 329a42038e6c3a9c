/* latency_hist: a log-bucketed histogram of latencies (issue 14), in the
 * manner of HdrHistogram: values below 256 have a bucket each, and every
 * power of two above is split into 128 buckets of equal width, so a bucket
 * is never wider than 1/128 of its lower bound. A quantile is answered
 * with its bucket's midpoint, within 1/256 (0.4 %) of the true value, in
 * constant memory (about 58 KiB) whatever the number of values; min, max,
 * count and sum are exact. The load bench keeps one per report interval and
 * one for the whole run. Values are unsigned 64-bit (the bench uses ns). */
#ifndef DCHAT_BENCH_LATENCY_HIST_H
#define DCHAT_BENCH_LATENCY_HIST_H

#include <stddef.h>
#include <stdint.h>

#define LATENCY_HIST_SUB_BITS 7
#define LATENCY_HIST_SUB (1u << LATENCY_HIST_SUB_BITS)  /* buckets per power of two */
/* Values 0..255 exact, then 128 buckets for each exponent 8..63. */
#define LATENCY_HIST_BUCKETS (2 * LATENCY_HIST_SUB + (63 - LATENCY_HIST_SUB_BITS) * LATENCY_HIST_SUB)

struct latency_hist {
    uint64_t count;
    uint64_t min, max;   /* exact; min is UINT64_MAX while count is 0 */
    uint64_t sum;        /* saturates at UINT64_MAX */
    uint64_t bucket[LATENCY_HIST_BUCKETS];
};

/* Forgets every value. A zeroed struct must be reset before use. */
void latency_hist_reset(struct latency_hist *h);

void latency_hist_add(struct latency_hist *h, uint64_t v);

/* Adds every value of src to dst. */
void latency_hist_merge(struct latency_hist *dst, const struct latency_hist *src);

/* The q-quantile (0 <= q <= 1) by nearest rank: the value of the
 * ceil(q * count)-th smallest (at least the first; q taken to six decimals,
 * so p99.9 of 1000 values is the 999th), given as its bucket's midpoint
 * clamped to [min, max]; q = 1 is the exact max. 0 when empty. */
uint64_t latency_hist_quantile(const struct latency_hist *h, double q);

/* The bucket of v, and the smallest and largest value of bucket i
 * (exposed for the tests of the error bound). */
size_t latency_hist_bucket_of(uint64_t v);
uint64_t latency_hist_bucket_low(size_t i);
uint64_t latency_hist_bucket_high(size_t i);

#endif
