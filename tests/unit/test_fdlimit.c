/* Unit tests for common/fdlimit.c: the connection count left by a
 * descriptor limit and a reserve, and raising this test process's own soft
 * RLIMIT_NOFILE after lowering it (both unprivileged). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <sys/resource.h>

#include "common/fdlimit.h"

static void test_connections(void **state)
{
    (void)state;
    assert_int_equal(fdlimit_connections(20000, 32), 19968);
    assert_int_equal(fdlimit_connections(1024, 32), 992);
    assert_int_equal(fdlimit_connections(33, 32), 1);
    /* Nothing left after the reserve: 0, never a wrapped huge count. */
    assert_int_equal(fdlimit_connections(32, 32), 0);
    assert_int_equal(fdlimit_connections(10, 32), 0);
    assert_int_equal(fdlimit_connections(0, 0), 0);
    assert_int_equal(fdlimit_connections(5, 0), 5);
    /* An unlimited or huge limit is capped at what an unsigned holds. */
    assert_int_equal(fdlimit_connections(UINT64_MAX, 32), UINT_MAX);
    assert_int_equal(fdlimit_connections((uint64_t)UINT_MAX + 32, 32), UINT_MAX);
    assert_int_equal(fdlimit_connections((uint64_t)UINT_MAX + 31, 32), UINT_MAX - 1);
}

static uint64_t soft_now(void)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

static void test_raise(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    /* Lower the soft limit (any process may), then raise it back. */
    rlim_t low = rl.rlim_max == RLIM_INFINITY ? 256 : rl.rlim_max / 2;
    if (low < 64)
        low = rl.rlim_max; /* a tiny hard limit: nothing to lower */
    struct rlimit lowered = { .rlim_cur = low, .rlim_max = rl.rlim_max };
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lowered), 0);

    uint64_t before = 1, after = 1;
    assert_int_equal(fdlimit_raise(&before, &after), 0);
    assert_int_equal(before, (uint64_t)low);
    assert_int_equal(after, soft_now()); /* what it says is what holds */
    if (rl.rlim_max != RLIM_INFINITY)
        assert_int_equal(after, (uint64_t)rl.rlim_max);
    else
        assert_true(after > (uint64_t)low);

    /* Again: already at the top, nothing changes. */
    uint64_t before2 = 0, after2 = 0;
    assert_int_equal(fdlimit_raise(&before2, &after2), 0);
    assert_int_equal(before2, after);
    assert_int_equal(after2, after);
    /* Both outputs may be NULL. */
    assert_int_equal(fdlimit_raise(NULL, NULL), 0);
    assert_int_equal(soft_now(), after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_raise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
