/* Unit tests for common/util.c and common/msgbuf.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_msgbuf_refs),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
