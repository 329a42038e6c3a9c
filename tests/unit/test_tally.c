/* Unit tests for bench/tally.c: per-socket delivery accounting (unique,
 * duplicate, reordered and stray deliveries over several senders, reuse
 * across rounds), the description of missing messages, and the latency
 * samples' nearest-rank quantiles. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/tally.h"

static void assert_counts(const struct tally *t, uint32_t unique, uint32_t dups,
                          uint32_t reordered, uint32_t strays)
{
    assert_int_equal(t->unique, unique);
    assert_int_equal(t->dups, dups);
    assert_int_equal(t->reordered, reordered);
    assert_int_equal(t->strays, strays);
}

static void test_unique_in_order(void **state)
{
    (void)state;
    struct tally t = { 0 };
    tally_reset(&t, 100, 4);
    assert_int_equal(t.n, 100);
    assert_int_equal(t.senders, 4);
    assert_counts(&t, 0, 0, 0, 0);
    for (uint32_t i = 0; i < 100; i++)
        assert_int_equal(tally_add(&t, i), 1);
    assert_counts(&t, 100, 0, 0, 0);
    tally_free(&t);
    assert_null(t.seen);
    assert_null(t.next);
}

/* Each sender's messages in order, but the senders interleaved in any way:
 * no reordering. */
static void test_senders_interleaved(void **state)
{
    (void)state;
    struct tally t = { 0 };
    const uint32_t n = 30;
    const unsigned k = 3;
    tally_reset(&t, n, k);
    /* All of sender 2 first, then sender 0, then sender 1. */
    for (unsigned s = 0; s < k; s++) {
        unsigned sender = (s + 2) % k;
        for (uint32_t i = sender; i < n; i += k)
            assert_int_equal(tally_add(&t, i), 1);
    }
    assert_counts(&t, n, 0, 0, 0);
    /* Backwards over senders, forwards within each. */
    tally_reset(&t, n, k);
    for (uint32_t j = 0; j < n / k; j++)
        for (unsigned s = k; s-- > 0;)
            assert_int_equal(tally_add(&t, j * k + s), 1);
    assert_counts(&t, n, 0, 0, 0);
    tally_free(&t);
}

static void test_duplicates(void **state)
{
    (void)state;
    struct tally t = { 0 };
    tally_reset(&t, 20, 2);
    for (uint32_t i = 0; i < 20; i++)
        assert_int_equal(tally_add(&t, i), 1);
    assert_int_equal(tally_add(&t, 0), 0);
    assert_int_equal(tally_add(&t, 19), 0);
    assert_int_equal(tally_add(&t, 19), 0);
    assert_int_equal(tally_add(&t, 8), 0);
    /* A duplicate of an early message is a duplicate, not a reordering. */
    assert_counts(&t, 20, 4, 0, 0);
    tally_free(&t);
}

static void test_reordered(void **state)
{
    (void)state;
    struct tally t = { 0 };
    /* Sender 0 has 0, 3, 6, 9; sender 1 has 1, 4, 7; sender 2 has 2, 5, 8. */
    tally_reset(&t, 10, 3);
    assert_int_equal(tally_add(&t, 6), 1);  /* sender 0, #2 */
    assert_int_equal(tally_add(&t, 3), 1);  /* sender 0, #1: after #2 */
    assert_counts(&t, 2, 0, 1, 0);
    assert_int_equal(tally_add(&t, 0), 1);  /* sender 0, #0: after #2 */
    assert_counts(&t, 3, 0, 2, 0);
    assert_int_equal(tally_add(&t, 9), 1);  /* sender 0, #3: in order */
    assert_counts(&t, 4, 0, 2, 0);
    /* A gap is not a reordering: sender 1 skips #1, then it comes late. */
    assert_int_equal(tally_add(&t, 1), 1);
    assert_int_equal(tally_add(&t, 7), 1);
    assert_counts(&t, 6, 0, 2, 0);
    assert_int_equal(tally_add(&t, 4), 1);  /* sender 1, #1 after #2 */
    assert_counts(&t, 7, 0, 3, 0);
    /* Another sender's earlier message after a later one: not reordered. */
    assert_int_equal(tally_add(&t, 2), 1);
    assert_int_equal(tally_add(&t, 5), 1);
    assert_int_equal(tally_add(&t, 8), 1);
    assert_counts(&t, 10, 0, 3, 0);
    /* Duplicates of reordered messages are only duplicates. */
    assert_int_equal(tally_add(&t, 3), 0);
    assert_int_equal(tally_add(&t, 4), 0);
    assert_counts(&t, 10, 2, 3, 0);
    tally_free(&t);
}

/* A whole round received backwards: every message but each sender's last
 * one arrives after a later one. */
static void test_reversed_round(void **state)
{
    (void)state;
    struct tally t = { 0 };
    const uint32_t n = 1000;
    const unsigned k = 7;
    tally_reset(&t, n, k);
    for (uint32_t i = n; i-- > 0;)
        assert_int_equal(tally_add(&t, i), 1);
    assert_counts(&t, n, 0, n - k, 0);
    /* One sender: any out-of-order pair counts. */
    tally_reset(&t, 4, 1);
    assert_int_equal(tally_add(&t, 1), 1);
    assert_int_equal(tally_add(&t, 0), 1);
    assert_int_equal(tally_add(&t, 3), 1);
    assert_int_equal(tally_add(&t, 2), 1);
    assert_counts(&t, 4, 0, 2, 0);
    tally_free(&t);
}

static void test_strays(void **state)
{
    (void)state;
    struct tally t = { 0 };
    tally_reset(&t, 10, 3);
    assert_int_equal(tally_add(&t, 10), -1);
    assert_int_equal(tally_add(&t, 11), -1);
    assert_int_equal(tally_add(&t, UINT32_MAX), -1);
    assert_counts(&t, 0, 0, 0, 3);
    assert_int_equal(tally_add(&t, 9), 1);
    assert_int_equal(tally_add(&t, 10), -1);
    assert_counts(&t, 1, 0, 0, 4);
    /* An empty round: everything is a stray. */
    tally_reset(&t, 0, 3);
    assert_counts(&t, 0, 0, 0, 0);
    assert_int_equal(tally_add(&t, 0), -1);
    assert_counts(&t, 0, 0, 0, 1);
    char buf[64];
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "0 missing");
    tally_free(&t);
}

/* Rounds of different sizes and sender counts on one tally: nothing of a
 * round leaks into the next. */
static void test_reuse(void **state)
{
    (void)state;
    struct tally t = { 0 };
    const struct { uint32_t n; unsigned k; } rounds[] = {
        { 100, 4 }, { 1000, 4 }, { 9, 3 }, { 1, 1 }, { 1000, 5 },
        { 0, 5 }, { 17, 2 }, { 4096, 8 }, { 8, 8 }, { 4097, 3 },
    };
    for (size_t r = 0; r < sizeof(rounds) / sizeof(rounds[0]); r++) {
        uint32_t n = rounds[r].n;
        unsigned k = rounds[r].k;
        tally_reset(&t, n, k);
        assert_int_equal(t.n, n);
        assert_int_equal(t.senders, k);
        assert_counts(&t, 0, 0, 0, 0);
        /* Everything is new, even where the last round saw it. */
        for (uint32_t i = 0; i < n; i++)
            if (tally_add(&t, i) != 1)
                fail_msg("round %zu (n %u): message %u not new", r, n, i);
        /* Nothing past n is accepted, even where the last round had it. */
        assert_int_equal(tally_add(&t, n), -1);
        assert_int_equal(tally_add(&t, n + 7), -1);
        assert_counts(&t, n, 0, 0, 2);
        char buf[32];
        tally_describe_missing(&t, buf, sizeof(buf));
        assert_string_equal(buf, "0 missing");
    }
    /* A partly received big round, then a smaller one: the smaller one's
     * missing list must not see stale bits, and a bigger one after that
     * must start clean past the small one's end too. */
    tally_reset(&t, 64, 2);
    for (uint32_t i = 0; i < 64; i += 2)
        tally_add(&t, i);
    tally_reset(&t, 4, 2);
    char buf[128];
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "4 missing: #0 (sender 1), #1 (sender 2), #2 (sender 1), "
                             "#3 (sender 2)");
    tally_reset(&t, 64, 2);
    for (uint32_t i = 0; i < 64; i++)
        assert_int_equal(tally_add(&t, i), 1);
    tally_free(&t);
    /* And after tally_free the tally is usable again. */
    tally_reset(&t, 5, 2);
    assert_int_equal(tally_add(&t, 4), 1);
    assert_int_equal(tally_add(&t, 4), 0);
    tally_free(&t);
}

static void test_describe_missing(void **state)
{
    (void)state;
    struct tally t = { 0 };
    char buf[256];
    tally_reset(&t, 10, 3);
    for (uint32_t i = 0; i < 10; i++)
        if (i != 0 && i != 4 && i != 8)
            tally_add(&t, i);
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "3 missing: #0 (sender 1), #4 (sender 2), #8 (sender 3)");
    /* Nothing missing. */
    tally_add(&t, 0);
    tally_add(&t, 4);
    tally_add(&t, 8);
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "0 missing");
    /* Exactly five are listed in full... */
    tally_reset(&t, 10, 2);
    for (uint32_t i = 5; i < 10; i++)
        tally_add(&t, i);
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "5 missing: #0 (sender 1), #1 (sender 2), #2 (sender 1), "
                             "#3 (sender 2), #4 (sender 1)");
    /* ... more are cut after the first five. */
    tally_reset(&t, 1000, 4);
    tally_add(&t, 1);
    tally_add(&t, 3);
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "998 missing: #0 (sender 1), #2 (sender 3), #4 (sender 1), "
                             "#5 (sender 2), #6 (sender 3), ...");
    /* Duplicates and strays do not hide missing messages. */
    tally_reset(&t, 3, 1);
    tally_add(&t, 1);
    tally_add(&t, 1);
    tally_add(&t, 1);
    tally_add(&t, 5);
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "2 missing: #0 (sender 1), #2 (sender 1)");
    /* The last message of a round whose size is not a multiple of 8. */
    tally_reset(&t, 13, 5);
    for (uint32_t i = 0; i < 12; i++)
        tally_add(&t, i);
    tally_describe_missing(&t, buf, sizeof(buf));
    assert_string_equal(buf, "1 missing: #12 (sender 3)");
    tally_free(&t);
}

/* Every buffer size from 1 up: the text is the full one cut to fit, always
 * NUL-terminated, and nothing is written past cap (exact-size heap buffers
 * for ASan). */
static void test_describe_missing_small_buffers(void **state)
{
    (void)state;
    struct tally t = { 0 };
    tally_reset(&t, 1000, 4);
    tally_add(&t, 1);
    char full[256];
    tally_describe_missing(&t, full, sizeof(full));
    assert_string_equal(full, "999 missing: #0 (sender 1), #2 (sender 3), #3 (sender 4), "
                              "#4 (sender 1), #5 (sender 2), ...");
    size_t flen = strlen(full);
    for (size_t cap = 1; cap <= flen + 2; cap++) {
        char *b = malloc(cap);
        assert_non_null(b);
        memset(b, '?', cap);
        tally_describe_missing(&t, b, cap);
        size_t want = flen < cap - 1 ? flen : cap - 1;
        if (strnlen(b, cap) != want || memcmp(b, full, want) != 0)
            fail_msg("cap %zu: \"%.*s\"", cap, (int)strnlen(b, cap), b);
        free(b);
    }
    /* cap 0 writes nothing. */
    char guard = '!';
    tally_describe_missing(&t, &guard, 0);
    assert_int_equal(guard, '!');
    tally_free(&t);
}

static void test_quantiles(void **state)
{
    (void)state;
    struct samples s = { 0 };
    assert_int_equal(samples_quantile(&s, 0.5), 0);
    assert_int_equal(samples_quantile(&s, 1.0), 0);
    /* 1..100 in scrambled order (37 is coprime with 100). */
    for (uint32_t i = 0; i < 100; i++)
        samples_add(&s, (i * 37) % 100 + 1);
    assert_int_equal(s.len, 100);
    assert_int_equal(samples_quantile(&s, 0.50), 50);
    assert_int_equal(samples_quantile(&s, 0.99), 99);
    assert_int_equal(samples_quantile(&s, 1.0), 100);
    assert_int_equal(samples_quantile(&s, 0.0), 1);
    assert_int_equal(samples_quantile(&s, 0.01), 1);
    assert_int_equal(samples_quantile(&s, 0.011), 2);
    assert_int_equal(samples_quantile(&s, 0.9), 90);
    /* Ten samples: p50 is the 5th, p99 the 10th (rank = ceil(q * n)). */
    samples_reset(&s);
    assert_int_equal(s.len, 0);
    assert_int_equal(samples_quantile(&s, 0.5), 0);
    for (uint32_t i = 10; i > 0; i--)
        samples_add(&s, i * 1000);
    assert_int_equal(samples_quantile(&s, 0.50), 5000);
    assert_int_equal(samples_quantile(&s, 0.51), 6000);
    assert_int_equal(samples_quantile(&s, 0.99), 10000);
    assert_int_equal(samples_quantile(&s, 1.0), 10000);
    /* One sample is every quantile. */
    samples_reset(&s);
    samples_add(&s, 777);
    assert_int_equal(samples_quantile(&s, 0.0), 777);
    assert_int_equal(samples_quantile(&s, 0.5), 777);
    assert_int_equal(samples_quantile(&s, 0.99), 777);
    assert_int_equal(samples_quantile(&s, 1.0), 777);
    /* Equal values and extremes. */
    samples_reset(&s);
    samples_add(&s, UINT32_MAX);
    samples_add(&s, 0);
    samples_add(&s, 5);
    samples_add(&s, 5);
    assert_int_equal(samples_quantile(&s, 0.25), 0);
    assert_int_equal(samples_quantile(&s, 0.5), 5);
    assert_int_equal(samples_quantile(&s, 0.75), 5);
    assert_int_equal(samples_quantile(&s, 1.0), UINT32_MAX);
    samples_free(&s);
    assert_null(s.v);
    assert_int_equal(s.len, 0);
}

/* Past the first allocation: growth keeps every sample. */
static void test_samples_grow(void **state)
{
    (void)state;
    struct samples s = { 0 };
    const uint32_t n = 10000;
    for (uint32_t i = 0; i < n; i++)
        samples_add(&s, (i * 7919) % n);  /* 0..n-1 scrambled */
    assert_int_equal(s.len, n);
    assert_true(s.cap >= n);
    assert_int_equal(samples_quantile(&s, 0.5), 4999);
    assert_int_equal(samples_quantile(&s, 0.99), 9899);
    assert_int_equal(samples_quantile(&s, 1.0), n - 1);
    for (uint32_t i = 0; i < n; i++)
        if (s.v[i] != i)
            fail_msg("sorted sample %u is %u", i, s.v[i]);
    /* Reset keeps the memory for the next round. */
    size_t cap = s.cap;
    samples_reset(&s);
    assert_int_equal(s.cap, cap);
    samples_add(&s, 3);
    samples_add(&s, 1);
    samples_add(&s, 2);
    assert_int_equal(samples_quantile(&s, 0.5), 2);
    assert_int_equal(samples_quantile(&s, 1.0), 3);
    samples_free(&s);
}

/* p90, p99 and p99.9 by nearest rank at the sizes a paced run gives:
 * 1..n in scrambled order, so the q-quantile is ceil(q * n) exactly; and
 * quantiles whose q * n lands a hair above a whole number in floating
 * point (0.07 * 100 = 7.000000000000001) keep their rank. */
static void test_quantiles_tail(void **state)
{
    (void)state;
    const uint32_t sizes[] = { 1000, 12000, 100000, 1234567 };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint32_t n = sizes[k];
        struct samples s = { 0 };
        for (uint32_t i = 0; i < n; i++)
            samples_add(&s, (uint32_t)(((uint64_t)i * 7919) % n) + 1); /* 7919: prime */
        assert_int_equal(s.len, n);
        assert_false(samples_sampled(&s));
        assert_int_equal(samples_quantile(&s, 0.90), (n * 9 + 9) / 10);
        assert_int_equal(samples_quantile(&s, 0.99), (n * 99ull + 99) / 100);
        assert_int_equal(samples_quantile(&s, 0.999), (n * 999ull + 999) / 1000);
        assert_int_equal(samples_quantile(&s, 1.0), n);
        samples_free(&s);
    }
    struct samples s = { 0 };
    for (uint32_t i = 1; i <= 100; i++)
        samples_add(&s, i);
    assert_int_equal(samples_quantile(&s, 0.07), 7);
    assert_int_equal(samples_quantile(&s, 0.29), 29);
    assert_int_equal(samples_quantile(&s, 0.57), 57);
    /* a sample added after a quantile was asked for is not lost to the sort */
    samples_add(&s, 1000);
    assert_int_equal(samples_quantile(&s, 1.0), 1000);
    assert_int_equal(samples_quantile(&s, 0.999), 1000);
    assert_int_equal(samples_quantile(&s, 0.99), 100);
    samples_free(&s);
}

/* Beyond the limit the samples are a uniform random sample of every value
 * added: memory stays at the limit, the maximum stays exact, and the
 * quantiles of 0..999999 (added in order, the worst case for a biased
 * sample) come out within a few tenths of a percent of the true ones. */
static void test_samples_reservoir(void **state)
{
    (void)state;
    struct samples s = { 0 };
    samples_set_limit(&s, 20000);
    const uint32_t n = 1000000;
    for (uint32_t i = 0; i < n; i++)
        samples_add(&s, i);
    assert_int_equal(s.len, 20000);
    assert_true(s.cap <= 20000);
    assert_int_equal(s.count, n);
    assert_true(samples_sampled(&s));
    assert_int_equal(samples_quantile(&s, 1.0), n - 1);     /* exact */
    const double qs[] = { 0.10, 0.50, 0.90, 0.99 };
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        double got = samples_quantile(&s, qs[k]);
        double want = qs[k] * n;
        if (got < want - 0.01 * n || got > want + 0.01 * n)
            fail_msg("q %.2f: %.0f, expected about %.0f", qs[k], got, want);
    }
    /* a reset keeps the limit and starts a fresh reservoir */
    samples_reset(&s);
    assert_int_equal(s.count, 0);
    for (uint32_t i = 0; i < 100; i++)
        samples_add(&s, 5);
    assert_false(samples_sampled(&s));
    assert_int_equal(samples_quantile(&s, 0.5), 5);
    assert_int_equal(samples_quantile(&s, 1.0), 5);
    samples_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unique_in_order),
        cmocka_unit_test(test_senders_interleaved),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_reordered),
        cmocka_unit_test(test_reversed_round),
        cmocka_unit_test(test_strays),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_describe_missing),
        cmocka_unit_test(test_describe_missing_small_buffers),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_samples_grow),
        cmocka_unit_test(test_quantiles_tail),
        cmocka_unit_test(test_samples_reservoir),
    };
    return cmocka_run_group_tests_name("tally", tests, NULL, NULL);
}
