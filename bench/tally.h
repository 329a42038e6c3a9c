/* tally: what one socket received in one round of the bench, checked
 * message by message. Message i of a round of n goes out on sender
 * i % senders as that sender's (i / senders)-th message, so a socket must
 * see every i in [0, n) exactly once, and the i of each sender in rising
 * order. The tally counts unique, duplicate and reordered deliveries, keeps
 * every delivery's latency, and names what is missing. */
#ifndef DCHAT_BENCH_TALLY_H
#define DCHAT_BENCH_TALLY_H

#include <stddef.h>
#include <stdint.h>

struct tally {
    uint32_t n;          /* messages in the round */
    unsigned senders;
    uint32_t unique;     /* distinct messages received */
    uint32_t dups;       /* deliveries of a message already received */
    uint32_t reordered;  /* deliveries that came after a later one of the same sender */
    uint32_t strays;     /* frames of another round or out of range */
    uint8_t *seen;       /* one bit per message */
    uint32_t *next;      /* per sender: highest per-sender index seen + 1 */
};

/* Prepares t for a round of n messages over senders senders (memory is
 * reused from the previous round where it fits). */
void tally_reset(struct tally *t, uint32_t n, unsigned senders);

/* Records the delivery of message index. Returns 1 when it is new, 0 for a
 * duplicate, -1 when index is out of range (counted as a stray). */
int tally_add(struct tally *t, uint32_t index);

/* Writes into out (cap bytes) a description of the missing messages: how
 * many and the first five, e.g. "3 missing: #17 (sender 3), #18 (sender 1),
 * #40 (sender 2)" (senders counted from 1), then ", ..." if there are more. */
void tally_describe_missing(const struct tally *t, char *out, size_t cap);

void tally_free(struct tally *t);

/* Latency samples of a round (or of a paced run), in microseconds. Up to
 * `limit` samples are all kept; beyond that the set is a uniform random
 * sample of every value added (reservoir sampling, algorithm R, with a
 * fixed seed so that runs are repeatable), so memory stays bounded while
 * the quantiles still describe every delivery. The largest value is kept
 * exactly either way. */
#define SAMPLES_LIMIT (4u << 20) /* 4 Mi samples, 16 MiB: the default limit */

struct samples {
    uint32_t *v;
    size_t len, cap;
    size_t limit;        /* samples kept at most; 0 = SAMPLES_LIMIT */
    uint64_t count;      /* values added since the reset */
    uint32_t max;        /* the largest of them */
    uint64_t rng;        /* the reservoir's random state */
    int sorted;          /* v is in order (quantiles sort it once) */
};

/* Forgets the values (keeps the memory and the limit). */
void samples_reset(struct samples *s);
/* Keeps at most limit samples (>= 1) from now on; call before adding. */
void samples_set_limit(struct samples *s, size_t limit);
void samples_add(struct samples *s, uint32_t us);
/* The q-quantile (0..1) in microseconds, by nearest rank (the
 * ceil(q * len)-th smallest sample, q taken to six decimals, so p99.9 of
 * 1000 samples is the 999th); q = 1 gives the exact maximum of every value
 * added. Sorts s on first use after an add. 0 when there are no samples. */
uint32_t samples_quantile(struct samples *s, double q);
/* Whether values were left out: count > samples kept. */
int samples_sampled(const struct samples *s);
void samples_free(struct samples *s);

#endif
