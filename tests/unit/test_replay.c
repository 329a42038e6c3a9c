/* Unit tests for discovery/replay.c: a MAC is accepted once; MACs that
 * share a bucket are told apart; a full cache drops what has left the
 * window first, else the oldest, and then refuses anything as old, so a
 * replay never passes however many requests came in between. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "discovery/replay.h"

#define W 60000u
#define NOW 1700000000000ull

/* A MAC whose first 8 bytes (the hash) are h and whose last byte is tag. */
static const uint8_t *mac_of(uint64_t h, uint8_t tag)
{
    static uint8_t m[SECRET_MAC_LEN];
    memset(m, 0, sizeof(m));
    memcpy(m, &h, sizeof(h));
    m[SECRET_MAC_LEN - 1] = tag;
    return m;
}

static void test_once(void **state)
{
    (void)state;
    replay *r = replay_new(8, W);
    assert_int_equal(replay_seen(r, mac_of(1, 0), NOW, NOW), 0);
    assert_int_equal(replay_seen(r, mac_of(1, 0), NOW, NOW), 1);
    assert_int_equal(replay_seen(r, mac_of(1, 0), NOW, NOW + 1000), 1);
    /* Same bucket, another MAC: new. */
    assert_int_equal(replay_seen(r, mac_of(1, 1), NOW, NOW), 0);
    assert_int_equal(replay_seen(r, mac_of(1, 1), NOW, NOW), 1);
    assert_int_equal(replay_count(r), 2);
    replay_free(r);
}

static void test_full_drops_expired_first(void **state)
{
    (void)state;
    replay *r = replay_new(4, W);
    for (uint8_t i = 0; i < 4; i++)
        assert_int_equal(replay_seen(r, mac_of(i, i), NOW + i, NOW + i), 0);
    /* Later than the window for all four: they go, nothing is refused. */
    uint64_t later = NOW + W + 10;
    assert_int_equal(replay_seen(r, mac_of(9, 9), later, later), 0);
    assert_int_equal(replay_count(r), 1);
    assert_int_equal(replay_seen(r, mac_of(9, 9), later, later), 1);
    /* An old timestamp is not refused by the cache (the clock check does
     * that), as no floor was raised. */
    assert_int_equal(replay_seen(r, mac_of(8, 8), NOW, later), 0);
    replay_free(r);
}

static void test_full_of_fresh_raises_the_floor(void **state)
{
    (void)state;
    replay *r = replay_new(4, W);
    for (uint8_t i = 0; i < 4; i++)
        assert_int_equal(replay_seen(r, mac_of(i, i), NOW + 10 * i, NOW), 0);
    /* Full, nothing expired: the oldest (NOW) is dropped, and with it
     * anything signed at NOW or before. */
    assert_int_equal(replay_seen(r, mac_of(5, 5), NOW + 100, NOW), 0);
    assert_int_equal(replay_count(r), 4);
    assert_int_equal(replay_seen(r, mac_of(0, 0), NOW, NOW), 1);      /* the dropped one */
    assert_int_equal(replay_seen(r, mac_of(6, 6), NOW - 5, NOW), 1);  /* older */
    assert_int_equal(replay_seen(r, mac_of(1, 1), NOW + 10, NOW), 1); /* still held */
    assert_int_equal(replay_seen(r, mac_of(7, 7), NOW + 1, NOW), 0);  /* newer: fine */
    /* Many requests later, every MAC accepted so far is still refused. */
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(replay_seen(r, mac_of(100 + i, 1), NOW + 200 + i, NOW), 0);
    assert_int_equal(replay_count(r), 4);
    assert_int_equal(replay_seen(r, mac_of(5, 5), NOW + 100, NOW), 1);
    assert_int_equal(replay_seen(r, mac_of(7, 7), NOW + 1, NOW), 1);
    assert_int_equal(replay_seen(r, mac_of(100, 1), NOW + 200, NOW), 1);
    assert_int_equal(replay_seen(r, mac_of(1099, 1), NOW + 1199, NOW), 1);
    replay_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_once),
        cmocka_unit_test(test_full_drops_expired_first),
        cmocka_unit_test(test_full_of_fresh_raises_the_floor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
