/* Unit tests for bench/latency_hist.c: the buckets tile the whole 64-bit
 * range in order, without gaps or overlaps, and none is wider than 1/128 of
 * its lower bound; quantiles of random data (uniform, log-uniform over six
 * decades, and with a far outlier) match the nearest-rank quantile of the
 * sorted values within the bound; exact values below 256; min, max, count
 * and merge; the empty histogram. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "bench/latency_hist.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_buckets_tile_the_range(void **state)
{
    (void)state;
    assert_int_equal(latency_hist_bucket_low(0), 0);
    for (size_t i = 0; i < LATENCY_HIST_BUCKETS; i++) {
        uint64_t lo = latency_hist_bucket_low(i), hi = latency_hist_bucket_high(i);
        assert_true(lo <= hi);
        if (i + 1 < LATENCY_HIST_BUCKETS)
            assert_int_equal(hi + 1, latency_hist_bucket_low(i + 1)); /* no gap */
        assert_int_equal(latency_hist_bucket_of(lo), i);
        assert_int_equal(latency_hist_bucket_of(hi), i);
        if (i < 256)
            assert_int_equal(lo, hi);                         /* exact */
        else if ((hi - lo + 1) * 128 > lo)
            fail_msg("bucket %zu [%llu, %llu] is wider than 1/128 of its start", i,
                     (unsigned long long)lo, (unsigned long long)hi);
    }
    assert_int_equal(latency_hist_bucket_high(LATENCY_HIST_BUCKETS - 1), UINT64_MAX);
    assert_int_equal(latency_hist_bucket_of(UINT64_MAX), LATENCY_HIST_BUCKETS - 1);
}

/* n values from gen, then p50 .. p99.9 against the sorted reference. */
static void check_against_sorted(uint64_t (*gen)(void), size_t n)
{
    struct latency_hist *h = malloc(sizeof(*h));
    uint64_t *v = malloc(n * sizeof(*v));
    latency_hist_reset(h);
    for (size_t i = 0; i < n; i++) {
        v[i] = gen();
        latency_hist_add(h, v[i]);
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    const double qs[] = { 0, 0.5, 0.9, 0.99, 0.999, 1 };
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        uint64_t rank = (uint64_t)ceil(qs[k] * (double)n - 1e-9);
        uint64_t want = v[rank ? rank - 1 : 0];
        uint64_t got = latency_hist_quantile(h, qs[k]);
        double err = fabs((double)got - (double)want) / (double)(want ? want : 1);
        if (err > 1.0 / 256)
            fail_msg("q %.3f of %zu: %llu, want %llu (error %.4f)", qs[k], n,
                     (unsigned long long)got, (unsigned long long)want, err);
    }
    assert_int_equal(latency_hist_quantile(h, 1), v[n - 1]);
    assert_int_equal(h->min, v[0]);
    assert_int_equal(h->count, n);
    free(v);
    free(h);
}

static uint64_t uniform_ms(void) { return next_rand() % 5000000; }            /* 0..5 ms in ns */
static uint64_t log_uniform(void) { return (uint64_t)pow(10, 3 + (double)(next_rand() % 6000000) / 1e6); }
static uint64_t with_outliers(void)
{
    return next_rand() % 1000 == 0 ? 2000000000ull + next_rand() % 1000 : 100000 + next_rand() % 50000;
}

static void test_quantiles_match_sorted_reference(void **state)
{
    (void)state;
    check_against_sorted(uniform_ms, 100000);
    check_against_sorted(log_uniform, 100000);
    check_against_sorted(with_outliers, 100000);
    check_against_sorted(uniform_ms, 1);
    check_against_sorted(log_uniform, 999);
    check_against_sorted(with_outliers, 1001);
}

static void test_small_values_exact_and_nearest_rank(void **state)
{
    (void)state;
    struct latency_hist *h = malloc(sizeof(*h));
    latency_hist_reset(h);
    for (uint64_t i = 1; i <= 200; i++)
        latency_hist_add(h, i);
    assert_int_equal(latency_hist_quantile(h, 0.5), 100);
    assert_int_equal(latency_hist_quantile(h, 0.99), 198);
    assert_int_equal(latency_hist_quantile(h, 0.999), 200);  /* ceil(199.8) */
    assert_int_equal(latency_hist_quantile(h, 0), 1);
    assert_int_equal(latency_hist_quantile(h, 1), 200);
    assert_int_equal(h->sum, 200 * 201 / 2);
    free(h);
}

static void test_merge_and_empty(void **state)
{
    (void)state;
    struct latency_hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    latency_hist_reset(a);
    latency_hist_reset(b);
    assert_int_equal(latency_hist_quantile(a, 0.5), 0);
    assert_int_equal(latency_hist_quantile(a, 1), 0);
    latency_hist_merge(a, b);                 /* empty into empty */
    assert_int_equal(a->count, 0);
    assert_int_equal(a->min, UINT64_MAX);
    for (uint64_t i = 0; i < 1000; i++)
        latency_hist_add(i % 2 ? a : b, 1000000 + i * 1000);
    latency_hist_merge(a, b);
    assert_int_equal(a->count, 1000);
    assert_int_equal(a->min, 1000000);
    assert_int_equal(a->max, 1000000 + 999 * 1000);
    uint64_t p50 = latency_hist_quantile(a, 0.5), want = 1000000 + 499 * 1000;
    assert_true(p50 >= want - want / 256 && p50 <= want + want / 256);
    latency_hist_reset(a);
    assert_int_equal(a->count, 0);
    assert_int_equal(latency_hist_quantile(a, 0.99), 0);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_tile_the_range),
        cmocka_unit_test(test_quantiles_match_sorted_reference),
        cmocka_unit_test(test_small_values_exact_and_nearest_rank),
        cmocka_unit_test(test_merge_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
