/* Unit tests for bench/nats.c: the NATS payload length that makes a
 * delivered MSG as long as the frame a dchat node delivers for the same
 * --size (the rest of the side runs against real servers in
 * tests/e2e/test_compare.py). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "bench/nats.h"
#include "bench/nats_proto.h"

static void test_payload_len_matches_dchat_frame(void **state)
{
    (void)state;
    const char *subject = "bench.0badf00d";
    /* the default --size: 188 bytes in a 216-byte MSG */
    assert_int_equal(nats_payload_len(subject, 30), 188);
    const size_t sizes[] = { 1, 10, 30, 100, 800, 1000, 9000, 60000 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t p = nats_payload_len(subject, sizes[i]);
        assert_true(p >= sizes[i]);
        /* across the digit boundaries of the size field too */
        assert_int_equal(p + nats_msg_overhead(subject, 1, p),
                         sizes[i] + NATS_DCHAT_FRAME_OVERHEAD);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payload_len_matches_dchat_frame),
    };
    return cmocka_run_group_tests_name("nats", tests, NULL, NULL);
}
