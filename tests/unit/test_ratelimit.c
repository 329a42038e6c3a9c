/* Unit tests for discovery/ratelimit.c: the burst, the refill rate and the
 * Retry-After it implies, addresses counted apart, and a full table that
 * gives the least recently asked address's slot to a new one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "discovery/ratelimit.h"

static void test_burst_then_rate(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(10, 1, 16);
    uint64_t t = 5000, retry = 0;
    for (int i = 0; i < 10; i++)
        assert_int_equal(ratelimit_take(rl, "10.0.0.1", t, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "10.0.0.1", t, &retry), -1);
    assert_true(retry == 1000);
    assert_int_equal(ratelimit_take(rl, "10.0.0.1", t + 400, &retry), -1);
    assert_true(retry == 600);
    assert_int_equal(ratelimit_take(rl, "10.0.0.1", t + 1000, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "10.0.0.1", t + 1000, &retry), -1);
    /* Refills stop at the burst: after an hour, 10 again, not 3600. */
    t += 3600 * 1000;
    for (int i = 0; i < 10; i++)
        assert_int_equal(ratelimit_take(rl, "10.0.0.1", t, NULL), 0);
    assert_int_equal(ratelimit_take(rl, "10.0.0.1", t, NULL), -1);
    /* Another address has its own bucket. */
    assert_int_equal(ratelimit_take(rl, "::1", t, NULL), 0);
    assert_int_equal(ratelimit_count(rl), 2);
    ratelimit_free(rl);
}

static void test_faster_rate(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(1, 4, 4);
    uint64_t retry = 0;
    assert_int_equal(ratelimit_take(rl, "a", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "a", 0, &retry), -1);
    assert_true(retry == 250);
    assert_int_equal(ratelimit_take(rl, "a", 250, &retry), 0);
    ratelimit_free(rl);
}

static void test_table_evicts_least_recent(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(1, 1, 3);
    assert_int_equal(ratelimit_take(rl, "a", 1, NULL), 0);
    assert_int_equal(ratelimit_take(rl, "b", 2, NULL), 0);
    assert_int_equal(ratelimit_take(rl, "c", 3, NULL), 0);
    assert_int_equal(ratelimit_take(rl, "a", 4, NULL), -1); /* a asked last now */
    assert_int_equal(ratelimit_take(rl, "d", 5, NULL), 0);  /* takes b's slot */
    assert_int_equal(ratelimit_count(rl), 3);
    assert_int_equal(ratelimit_take(rl, "a", 6, NULL), -1); /* a kept its count */
    assert_int_equal(ratelimit_take(rl, "c", 7, NULL), -1);
    assert_int_equal(ratelimit_take(rl, "b", 8, NULL), 0);  /* b came back afresh */
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_faster_rate),
        cmocka_unit_test(test_table_evicts_least_recent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
