/* latency_hist: see latency_hist.h. Bucket i < 256 holds the value i; a
 * value v >= 256 with its highest set bit at e is shifted right by
 * s = e - 7, which leaves its top 8 bits (128..255), and goes to bucket
 * s * 128 + (v >> s): the index grows with v, without gaps. */
#include <math.h>
#include <string.h>

#include "bench/latency_hist.h"

void latency_hist_reset(struct latency_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

size_t latency_hist_bucket_of(uint64_t v)
{
    if (v < 2 * LATENCY_HIST_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = e - LATENCY_HIST_SUB_BITS;
    return (size_t)shift * LATENCY_HIST_SUB + (size_t)(v >> shift);
}

uint64_t latency_hist_bucket_low(size_t i)
{
    if (i < 2 * LATENCY_HIST_SUB)
        return i;
    size_t shift = i / LATENCY_HIST_SUB - 1;
    uint64_t top = i - shift * LATENCY_HIST_SUB; /* 128 .. 255 */
    return top << shift;
}

uint64_t latency_hist_bucket_high(size_t i)
{
    if (i + 1 >= LATENCY_HIST_BUCKETS)
        return UINT64_MAX;
    return latency_hist_bucket_low(i + 1) - 1;
}

void latency_hist_add(struct latency_hist *h, uint64_t v)
{
    h->bucket[latency_hist_bucket_of(v)]++;
    h->count++;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->sum = h->sum > UINT64_MAX - v ? UINT64_MAX : h->sum + v;
}

void latency_hist_merge(struct latency_hist *dst, const struct latency_hist *src)
{
    if (src->count == 0)
        return;
    for (size_t i = 0; i < LATENCY_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->sum = dst->sum > UINT64_MAX - src->sum ? UINT64_MAX : dst->sum + src->sum;
}

uint64_t latency_hist_quantile(const struct latency_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    /* in millionths, so that 0.999 is exact and 1000 values give rank 999 */
    uint64_t qm = q <= 0 ? 0 : (uint64_t)llround(q * 1e6);
    uint64_t rank = (h->count * qm + 999999) / 1000000; /* ceil; count < 2^44 in practice */
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LATENCY_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t lo = latency_hist_bucket_low(i), hi = latency_hist_bucket_high(i);
            uint64_t mid = lo + (hi - lo) / 2;
            return mid < h->min ? h->min : mid > h->max ? h->max : mid;
        }
    }
    return h->max;
}
