/* Unit tests for common/reqauth.c: the X-Dchat-Auth value against one
 * computed independently (Python's hmac), and every way reqauth_check
 * refuses one: missing, malformed, another secret, another method, path or
 * body, a timestamp outside the window either side (and just inside). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/reqauth.h"

#define SECRET "unit-test-secret-0123"
#define TS 1700000000000ull
#define PATH "/api/nodes/register"
#define BODY "{\"password\":\"pw\"}"
/* hmac.new(SECRET, b"dchat-discovery-v1\nPOST\n" PATH b"\n1700000000000\n" BODY,
 *          hashlib.sha256).hexdigest() */
#define WANT "1700000000000.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd0"

static int check(const char *value, const char *method, const char *path, const char *body,
                 uint64_t now)
{
    uint64_t ts = 0;
    uint8_t mac[SECRET_MAC_LEN];
    return reqauth_check(value, method, path, body, strlen(body), now, &ts, mac);
}

static void test_sign_matches_an_independent_hmac(void **state)
{
    (void)state;
    secret_set(SECRET, strlen(SECRET));
    char v[REQAUTH_VALUE_MAX];
    reqauth_sign("POST", PATH, TS, BODY, strlen(BODY), v);
    assert_string_equal(v, WANT);
    uint64_t ts = 0;
    uint8_t mac[SECRET_MAC_LEN], want[SECRET_MAC_LEN];
    assert_int_equal(reqauth_check(v, "POST", PATH, BODY, strlen(BODY), TS, &ts, mac),
                     REQAUTH_OK);
    assert_true(ts == TS);
    assert_int_equal(secret_unhex(WANT + 14, 64, want, sizeof(want)), 0);
    assert_memory_equal(mac, want, sizeof(mac));
    /* An empty body is signed too. */
    reqauth_sign("POST", PATH, TS, NULL, 0, v);
    assert_int_equal(check(v, "POST", PATH, "", TS), REQAUTH_OK);
    assert_int_equal(check(v, "POST", PATH, " ", TS), REQAUTH_BAD_MAC);
}

static void test_refusals(void **state)
{
    (void)state;
    secret_set(SECRET, strlen(SECRET));
    assert_int_equal(check(NULL, "POST", PATH, BODY, TS), REQAUTH_MISSING);
    static const char *const malformed[] = {
        "", ".", "1700000000000", "1700000000000.", "x.d7137ffe",
        "1700000000000.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd",
        "1700000000000.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd00",
        "1700000000000.g7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd0",
        "01700000000000.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd0",
        "-1.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd0",
        "1234567890123456.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd0",
        " 1700000000000.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670db276bc41bd0",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        assert_int_equal(check(malformed[i], "POST", PATH, BODY, TS), REQAUTH_MALFORMED);
    /* The MAC covers method, path, timestamp and body. */
    assert_int_equal(check(WANT, "PUT", PATH, BODY, TS), REQAUTH_BAD_MAC);
    assert_int_equal(check(WANT, "POST", "/api/nodes/active/login", BODY, TS), REQAUTH_BAD_MAC);
    assert_int_equal(check(WANT, "POST", PATH, "{\"password\":\"pW\"}", TS), REQAUTH_BAD_MAC);
    assert_int_equal(check("1700000000001.d7137ffe29138ecf9b96b3ce33ffb65a35cad070577ec2864670"
                           "db276bc41bd0", "POST", PATH, BODY, TS), REQAUTH_BAD_MAC);
    /* Upper-case hex is the same MAC. */
    assert_int_equal(check("1700000000000.D7137FFE29138ECF9B96B3CE33FFB65A35CAD070577EC2864670"
                           "DB276BC41BD0", "POST", PATH, BODY, TS), REQAUTH_OK);
    /* Another secret, and none (--insecure), make other MACs. */
    secret_set("another-secret-0123456", 22);
    assert_int_equal(check(WANT, "POST", PATH, BODY, TS), REQAUTH_BAD_MAC);
    secret_set(NULL, 0);
    assert_int_equal(check(WANT, "POST", PATH, BODY, TS), REQAUTH_BAD_MAC);
}

static void test_window(void **state)
{
    (void)state;
    secret_set(SECRET, strlen(SECRET));
    uint64_t w = REQAUTH_WINDOW_MS;
    assert_int_equal(check(WANT, "POST", PATH, BODY, TS + w), REQAUTH_OK);
    assert_int_equal(check(WANT, "POST", PATH, BODY, TS - w), REQAUTH_OK);
    assert_int_equal(check(WANT, "POST", PATH, BODY, TS + w + 1), REQAUTH_CLOCK);
    assert_int_equal(check(WANT, "POST", PATH, BODY, TS - w - 1), REQAUTH_CLOCK);
    assert_int_equal(check(WANT, "POST", PATH, BODY, 0), REQAUTH_CLOCK);
    /* A wrong MAC is reported as such, whatever the clocks. */
    assert_int_equal(check(WANT, "POST", PATH, "{}", 0), REQAUTH_BAD_MAC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_matches_an_independent_hmac),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
