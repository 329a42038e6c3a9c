/* Unit tests for bench/timeheap.c: entries come out in time order, only
 * when due, equal times all come out, and a full heap refuses a push. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "bench/timeheap.h"

static void test_order_and_due(void **state)
{
    (void)state;
    struct timeheap h;
    timeheap_init(&h, 1000);
    uint64_t x = 12345;
    for (uint32_t i = 0; i < 1000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        assert_int_equal(timeheap_push(&h, (x >> 33) % 500, i), 0);
    }
    assert_int_equal(timeheap_push(&h, 1, 1000), -1);  /* full */
    struct timeheap_entry e;
    uint64_t prev = 0;
    unsigned n = 0;
    while (timeheap_pop_due(&h, 249, &e)) {
        assert_true(e.at >= prev && e.at <= 249);
        prev = e.at;
        n++;
    }
    assert_true(n > 0 && n < 1000);
    assert_int_equal(h.len, 1000 - n);
    assert_int_equal(timeheap_pop_due(&h, 249, &e), 0);  /* nothing else due yet */
    while (timeheap_pop_due(&h, UINT64_MAX, &e)) {
        assert_true(e.at >= prev && e.at >= 250);
        prev = e.at;
        n++;
    }
    assert_int_equal(n, 1000);
    assert_int_equal(timeheap_pop_due(&h, UINT64_MAX, &e), 0);
    timeheap_free(&h);
}

static void test_equal_times(void **state)
{
    (void)state;
    struct timeheap h;
    timeheap_init(&h, 8);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(timeheap_push(&h, 7, i), 0);
    unsigned seen = 0;
    struct timeheap_entry e;
    assert_int_equal(timeheap_pop_due(&h, 6, &e), 0);
    while (timeheap_pop_due(&h, 7, &e))
        seen |= 1u << e.id;
    assert_int_equal(seen, 0xff);
    timeheap_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_due),
        cmocka_unit_test(test_equal_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
