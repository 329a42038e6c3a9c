/* tally: per-socket delivery accounting and latency samples (see tally.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/tally.h"
#include "common/util.h"

void tally_reset(struct tally *t, uint32_t n, unsigned senders)
{
    size_t bytes = ((size_t)n + 7) / 8;
    size_t old_bytes = ((size_t)t->n + 7) / 8;
    if (t->seen == NULL || bytes > old_bytes)
        t->seen = xrealloc(t->seen, bytes ? bytes : 1);
    memset(t->seen, 0, bytes ? bytes : 1);
    if (t->next == NULL || senders != t->senders)
        t->next = xrealloc(t->next, senders * sizeof(*t->next));
    memset(t->next, 0, senders * sizeof(*t->next));
    t->n = n;
    t->senders = senders;
    t->unique = t->dups = t->reordered = t->strays = 0;
}

int tally_add(struct tally *t, uint32_t index)
{
    if (index >= t->n) {
        t->strays++;
        return -1;
    }
    uint8_t bit = (uint8_t)(1u << (index & 7));
    if (t->seen[index >> 3] & bit) {
        t->dups++;
        return 0;
    }
    t->seen[index >> 3] |= bit;
    t->unique++;
    unsigned s = index % t->senders;
    uint32_t k = index / t->senders;
    if (k + 1 < t->next[s])
        t->reordered++;
    else
        t->next[s] = k + 1;
    return 1;
}

void tally_describe_missing(const struct tally *t, char *out, size_t cap)
{
    size_t off = 0;
    int shown = 0;
    uint32_t missing = t->n - t->unique;
    off += (size_t)snprintf(out, cap, "%u missing", missing);
    for (uint32_t i = 0; i < t->n && shown < 5 && off < cap; i++) {
        if (t->seen[i >> 3] & (1u << (i & 7)))
            continue;
        off += (size_t)snprintf(out + off, cap - off, "%s#%u (sender %u)",
                                shown ? ", " : ": ", i, i % t->senders + 1);
        shown++;
    }
    if (shown && missing > (uint32_t)shown && off < cap)
        snprintf(out + off, cap - off, ", ...");
}

void tally_free(struct tally *t)
{
    free(t->seen);
    free(t->next);
    memset(t, 0, sizeof(*t));
}

void samples_reset(struct samples *s)
{
    s->len = 0;
    s->count = 0;
    s->max = 0;
    s->rng = 0x9e3779b97f4a7c15ull; /* a fixed seed: repeatable runs */
    s->sorted = 1;
}

void samples_set_limit(struct samples *s, size_t limit)
{
    s->limit = limit > 0 ? limit : 1;
}

/* xorshift64*: fast, and good enough to pick reservoir slots. */
static uint64_t next_random(struct samples *s)
{
    if (s->rng == 0)
        s->rng = 0x9e3779b97f4a7c15ull;
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545f4914f6cdd1dull;
}

void samples_add(struct samples *s, uint32_t us)
{
    size_t limit = s->limit ? s->limit : SAMPLES_LIMIT;
    s->count++;
    if (us > s->max)
        s->max = us;
    s->sorted = 0;
    if (s->len < limit) {
        if (s->len == s->cap) {
            s->cap = s->cap ? UTIL_MIN(s->cap * 2, limit) : UTIL_MIN((size_t)4096, limit);
            s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
        }
        s->v[s->len++] = us;
        return;
    }
    /* Algorithm R: the count-th value replaces a random sample with
     * probability limit / count, which keeps every value added so far
     * equally likely to be in the set. */
    uint64_t j = next_random(s) % s->count;
    if (j < s->len)
        s->v[j] = us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

uint32_t samples_quantile(struct samples *s, double q)
{
    if (s->len == 0)
        return 0;
    if (q >= 1.0)
        return s->max;
    if (!s->sorted) {
        qsort(s->v, s->len, sizeof(*s->v), cmp_u32);
        s->sorted = 1;
    }
    /* In integers, so that q * len landing a hair above a whole number in
     * floating point (0.07 * 100 = 7.000000000000001) does not move the
     * rank up by one. */
    uint64_t ppm = q <= 0 ? 0 : (uint64_t)llround(q * 1e6);
    uint64_t rank = (ppm * (uint64_t)s->len + 999999) / 1000000;
    if (rank < 1)
        rank = 1;
    if (rank > s->len)
        rank = s->len;
    return s->v[rank - 1];
}

int samples_sampled(const struct samples *s)
{
    return s->count > s->len;
}

void samples_free(struct samples *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}
