/* Unit tests for bench/pace.c: the paced run's schedule. How many messages
 * are due at time t for rate R, in total and per sender when R is split
 * over N senders; that the due count and the due times agree at every
 * boundary; that nothing drifts over long runs; rates below one message per
 * 1 ms tick; and that the total caps the count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "bench/pace.h"

#define MS 1000000ull
#define S 1000000000ull

static void test_due_at_whole_rate(void **state)
{
    (void)state;
    struct pace p = { .rate = 1000, .senders = 3, .total = UINT64_MAX };
    /* message 0 is due at once, then one every millisecond */
    assert_int_equal(pace_due(&p, 0), 1);
    assert_int_equal(pace_due(&p, MS - 1), 1);
    assert_int_equal(pace_due(&p, MS), 2);
    assert_int_equal(pace_due(&p, 10 * MS), 11);
    assert_int_equal(pace_due(&p, S - 1), 1000);
    assert_int_equal(pace_due(&p, S), 1001);
    assert_int_equal(pace_time_ns(&p, 0), 0);
    assert_int_equal(pace_time_ns(&p, 1), MS);
    assert_int_equal(pace_time_ns(&p, 1000), S);
}

/* For every message of the first seconds of several rates (ones that do
 * not divide 1e9 among them): it is due exactly at its time, not a
 * nanosecond before. */
static void test_due_agrees_with_times(void **state)
{
    (void)state;
    const uint32_t rates[] = { 1, 3, 7, 999, 1000, 1001, 3333, 96800, 145100, 1000000 };
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
        struct pace p = { .rate = rates[r], .senders = 3, .total = UINT64_MAX };
        uint64_t n = rates[r] < 20000 ? 3ull * rates[r] : 20000;
        uint64_t prev = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t t = pace_time_ns(&p, i);
            if (i > 0)
                assert_true(t >= prev);       /* in order */
            prev = t;
            if (pace_due(&p, t) < i + 1)
                fail_msg("rate %u: message %llu not due at its time %llu ns", rates[r],
                         (unsigned long long)i, (unsigned long long)t);
            if (t > 0 && pace_due(&p, t - 1) > i)
                fail_msg("rate %u: message %llu due before its time %llu ns", rates[r],
                         (unsigned long long)i, (unsigned long long)t);
        }
    }
}

/* No drift: after a day at any rate exactly rate x seconds + 1 messages
 * are due (message 0 at 0), and the time of message rate x k is k s. */
static void test_no_drift(void **state)
{
    (void)state;
    const uint32_t rates[] = { 1, 3, 7, 333, 96800, 145100, 999999, PACE_RATE_MAX };
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
        struct pace p = { .rate = rates[r], .senders = 3, .total = UINT64_MAX };
        for (uint64_t k = 1; k <= 86400; k *= 7) {
            assert_int_equal(pace_due(&p, k * S), (uint64_t)rates[r] * k + 1);
            assert_int_equal(pace_due(&p, k * S - 1), (uint64_t)rates[r] * k);
            assert_int_equal(pace_time_ns(&p, (uint64_t)rates[r] * k), k * S);
        }
        /* a year in: still exact */
        uint64_t year = 365ull * 86400;
        assert_int_equal(pace_due(&p, year * S), (uint64_t)rates[r] * year + 1);
    }
}

/* Below one message per tick: 10 msgs/s is one per 100 ms, so most 1 ms
 * ticks have nothing due, and none is skipped or sent twice. */
static void test_slow_rates(void **state)
{
    (void)state;
    struct pace p = { .rate = 10, .senders = 3, .total = UINT64_MAX };
    uint64_t sent = 0, ticks_with_one = 0;
    for (uint64_t tick = 0; tick <= 2000; tick++) {  /* 2 s of 1 ms ticks */
        uint64_t due = pace_due(&p, tick * MS);
        assert_true(due >= sent);
        assert_true(due - sent <= 1);
        ticks_with_one += due - sent;
        sent = due;
    }
    assert_int_equal(sent, 21);                 /* 0, 100 ms, ..., 2000 ms */
    assert_int_equal(ticks_with_one, 21);
    assert_int_equal(pace_due(&p, 99 * MS), 1);
    assert_int_equal(pace_due(&p, 100 * MS), 2);
    /* 1 msg/s, 3 senders: one message a second, round-robin */
    struct pace one = { .rate = 1, .senders = 3, .total = UINT64_MAX };
    assert_int_equal(pace_due(&one, 0), 1);
    assert_int_equal(pace_due(&one, S - 1), 1);
    assert_int_equal(pace_due(&one, 2 * S), 3);
    assert_int_equal(pace_due_sender(&one, 0, 0), 1);
    assert_int_equal(pace_due_sender(&one, 1, 0), 0);
    assert_int_equal(pace_due_sender(&one, 1, S), 1);
    assert_int_equal(pace_due_sender(&one, 2, S), 0);
    assert_int_equal(pace_due_sender(&one, 2, 2 * S), 1);
}

/* R split over N senders: each sender's due count is its share, the shares
 * add up to the total, and no sender is ever more than one ahead of
 * another. */
static void test_split_over_senders(void **state)
{
    (void)state;
    const unsigned senders[] = { 1, 2, 3, 7 };
    for (size_t k = 0; k < sizeof(senders) / sizeof(senders[0]); k++) {
        unsigned n = senders[k];
        struct pace p = { .rate = 2000, .senders = n, .total = UINT64_MAX };
        for (uint64_t t = 0; t <= 3 * S; t += 250000) {   /* every 0.25 ms for 3 s */
            uint64_t sum = 0, lo = UINT64_MAX, hi = 0;
            for (unsigned s = 0; s < n; s++) {
                uint64_t d = pace_due_sender(&p, s, t);
                sum += d;
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
            }
            assert_int_equal(sum, pace_due(&p, t));
            assert_true(hi - lo <= 1);
        }
        /* after a whole second each sender has had rate / senders (+1 for
         * the messages due at 0 and at 1 s) */
        for (unsigned s = 0; s < n; s++) {
            uint64_t d = pace_due_sender(&p, s, S - 1);
            assert_true(d == 2000 / n || d == 2000 / n + 1);
        }
    }
}

static void test_total_caps(void **state)
{
    (void)state;
    struct pace p = { .rate = 2000, .senders = 3, .total = 2000 };  /* 1 s */
    assert_int_equal(pace_due(&p, S - 1), 2000);
    assert_int_equal(pace_due(&p, S), 2000);
    assert_int_equal(pace_due(&p, 3600 * S), 2000);
    assert_int_equal(pace_due_sender(&p, 0, 3600 * S), 667);
    assert_int_equal(pace_due_sender(&p, 1, 3600 * S), 667);
    assert_int_equal(pace_due_sender(&p, 2, 3600 * S), 666);
    /* the last message is due 1/rate before the second is over */
    assert_int_equal(pace_time_ns(&p, 1999), S - S / 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_due_at_whole_rate),
        cmocka_unit_test(test_due_agrees_with_times),
        cmocka_unit_test(test_no_drift),
        cmocka_unit_test(test_slow_rates),
        cmocka_unit_test(test_split_over_senders),
        cmocka_unit_test(test_total_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
