/* Unit tests for common/util.c and common/msgbuf.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/msgbuf.h"
#include "common/util.h"

static void test_iso8601(void **state)
{
    (void)state;
    char buf[UTIL_ISO8601_LEN + 1];
    assert_int_equal(util_format_iso8601(0, buf), 24);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    util_format_iso8601(1795000000123ull, buf);
    assert_string_equal(buf, "2026-11-18T11:06:40.123Z");
}

static void test_decimal_digits(void **state)
{
    (void)state;
    assert_int_equal(util_dec_len(0), 1);
    assert_int_equal(util_dec_len(9), 1);
    assert_int_equal(util_dec_len(10), 2);
    assert_int_equal(util_dec_len(999999999999ull), 12);
    assert_int_equal(util_dec_len(1000000000000ull), 13);
    assert_int_equal(util_dec_len(UINT64_MAX), 20);
    char out[24];
    memset(out, 'x', sizeof(out));
    assert_ptr_equal(util_put_dec_width(out, 42, 5), out + 5);
    assert_memory_equal(out, "00042x", 6);
    util_put_dec_width(out, 123456, 3); /* too many digits: the lowest ones */
    assert_memory_equal(out, "456", 3);
    util_put_dec_width(out, UINT64_MAX, 20);
    assert_memory_equal(out, "18446744073709551615", 20);
    /* util_put_dec: as many digits as util_dec_len, nothing after them */
    const uint64_t values[] = { 0, 7, 10, 4294967295u, UINT64_MAX };
    const char *const want[] = { "0", "7", "10", "4294967295", "18446744073709551615" };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        memset(out, 'x', sizeof(out));
        char *end = util_put_dec(out, values[i]);
        assert_int_equal(end - out, util_dec_len(values[i]));
        assert_memory_equal(out, want[i], strlen(want[i]));
        assert_int_equal(*end, 'x');
    }
    /* Around every power of ten, against printf: the two-digit steps and
     * the odd digit left at the front (or at the left of a width). */
    for (uint64_t p = 1;; p *= 10) {
        for (uint64_t v = p > 1 ? p - 1 : 0; v <= p + 1; v++) {
            char want_s[24], want_w[24];
            int n = snprintf(want_s, sizeof(want_s), "%" PRIu64, v);
            assert_int_equal(util_dec_len(v), n);
            assert_int_equal(util_put_dec(out, v) - out, n);
            assert_memory_equal(out, want_s, (size_t)n);
            for (int w = 1; w <= 20; w++) {
                snprintf(want_w, sizeof(want_w), "%020" PRIu64, v);
                assert_ptr_equal(util_put_dec_width(out, v, w), out + w);
                assert_memory_equal(out, want_w + 20 - w, (size_t)w);
            }
        }
        if (p > UINT64_MAX / 10)
            break;
    }
}

static void test_parse_long(void **state)
{
    (void)state;
    long v;
    assert_int_equal(util_parse_long("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(util_parse_long("-1", 0, 100, &v), -1);
    assert_int_equal(util_parse_long("101", 0, 100, &v), -1);
    assert_int_equal(util_parse_long("4x", 0, 100, &v), -1);
    assert_int_equal(util_parse_long("", 0, 100, &v), -1);
    assert_int_equal(util_parse_long("99999999999999999999999", 0, 100, &v), -1);
}

static void test_parse_hostport(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(util_parse_hostport("127.0.0.1:8080", "0.0.0.0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(util_parse_hostport(":9", "0.0.0.0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 9);
    assert_int_equal(util_parse_hostport("7000", "::", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::");
    assert_int_equal(port, 7000);
    assert_int_equal(util_parse_hostport("[::1]:80", "0.0.0.0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 80);
    assert_int_equal(util_parse_hostport("::1:80", "0.0.0.0", host, sizeof(host), &port), -1);
    assert_int_equal(util_parse_hostport("h:65536", "0.0.0.0", host, sizeof(host), &port), -1);
    assert_int_equal(util_parse_hostport("[::1]80", "0.0.0.0", host, sizeof(host), &port), -1);
    assert_int_equal(util_parse_hostport("h:", "0.0.0.0", host, sizeof(host), &port), -1);
}

static void test_msgbuf_refs(void **state)
{
    (void)state;
    msgbuf *a = msgbuf_new(10);
    assert_int_equal(a->refs, 1);
    assert_true(a->cap >= 10);
    memcpy(a->data, "hello", 5);
    a->len = 5;
    msgbuf_ref(a);
    assert_int_equal(a->refs, 2);
    msgbuf_unref(a);
    assert_int_equal(a->refs, 1);
    msgbuf_unref(a);
    /* The freed small buffer is reused and comes back clean. */
    msgbuf *b = msgbuf_new(20);
    assert_int_equal(b->refs, 1);
    assert_int_equal(b->len, 0);
    msgbuf *big = msgbuf_new(100000);
    assert_true(big->cap >= 100000);
    msgbuf_unref(big);
    msgbuf_unref(b);
    msgbuf_trim();
    assert_int_equal(msgbuf_cached_bytes(), 0);

    /* Rounded up to the smallest class that holds it: a 220-byte frame
     * costs 256, a 300-byte one 512; beyond 2 KiB, the size asked. */
    size_t asks[] = { 1, 220, 256, 257, 300, 1024, 1025, 2048, 2049 };
    size_t caps[] = { 256, 256, 256, 512, 512, 1024, 2048, 2048, 2049 };
    for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
        msgbuf *m = msgbuf_new(asks[i]);
        assert_int_equal(m->cap, caps[i]);
        msgbuf_unref(m);
    }
    /* A burst of 20000 live 256-byte buffers: once freed, 2 MiB of them
     * stay cached (8192), the rest go back to malloc; the cached ones are
     * reused first. */
    msgbuf_trim();
    enum { BURST = 20000 };
    msgbuf **live = malloc(BURST * sizeof(*live));
    for (int i = 0; i < BURST; i++)
        live[i] = msgbuf_new(200);
    for (int i = 0; i < BURST; i++)
        msgbuf_unref(live[i]);
    assert_int_equal(msgbuf_cached_bytes(), 2u << 20);
    msgbuf *again = msgbuf_new(100);
    assert_int_equal(msgbuf_cached_bytes(), (2u << 20) - 256);
    assert_ptr_equal(again, live[8191]); /* the last one cached, first out */
    msgbuf_unref(again);
    free(live);
    msgbuf_trim();
}

static msgbuf *filled(const char *text)
{
    msgbuf *b = msgbuf_new(strlen(text));
    memcpy(b->data, text, strlen(text));
    b->len = (uint32_t)strlen(text);
    return b;
}

/* Coalescing frames for one write: as many as fit, in order, never a
 * buffer over the bound unless one frame alone is. */
static void test_msgbuf_concat(void **state)
{
    (void)state;
    msgbuf *f[4] = { filled("aaa"), filled("bb"), filled("cccc"), filled("d") };
    size_t k;
    msgbuf *b = msgbuf_concat(f, 4, 100, &k);
    assert_int_equal(k, 4);
    assert_int_equal(b->len, 10);
    assert_memory_equal(b->data, "aaabbccccd", 10);
    assert_int_equal(b->refs, 1);
    msgbuf_unref(b);

    /* Up to the bound exactly (3 + 2 + 4 = 9), then the rest. */
    b = msgbuf_concat(f, 4, 9, &k);
    assert_int_equal(k, 3);
    assert_memory_equal(b->data, "aaabbcccc", 9);
    msgbuf_unref(b);
    b = msgbuf_concat(f + 3, 1, 9, &k);
    assert_int_equal(k, 1);
    assert_ptr_equal(b, f[3]); /* one alone: shared, not copied */
    assert_int_equal(f[3]->refs, 2);
    msgbuf_unref(b);

    /* A first buffer over the bound goes alone, as it is; so does one
     * whose next does not fit. */
    b = msgbuf_concat(f, 4, 2, &k);
    assert_int_equal(k, 1);
    assert_ptr_equal(b, f[0]);
    msgbuf_unref(b);
    b = msgbuf_concat(f + 1, 3, 5, &k);
    assert_int_equal(k, 1);
    assert_ptr_equal(b, f[1]);
    msgbuf_unref(b);

    /* Whatever the bound, the pieces put together are the whole. */
    for (size_t max = 1; max <= 12; max++) {
        char all[16];
        size_t len = 0, i = 0;
        while (i < 4) {
            b = msgbuf_concat(f + i, 4 - i, max, &k);
            assert_true(k >= 1 && i + k <= 4);
            assert_true(k == 1 || b->len <= max);
            memcpy(all + len, b->data, b->len);
            len += b->len;
            msgbuf_unref(b);
            i += k;
        }
        assert_int_equal(len, 10);
        assert_memory_equal(all, "aaabbccccd", 10);
    }
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(f[i]->refs, 1);
        msgbuf_unref(f[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_decimal_digits),
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_msgbuf_refs),
        cmocka_unit_test(test_msgbuf_concat),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
