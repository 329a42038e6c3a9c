/* Unit tests for common/secret.c: HMAC-SHA256 against RFC 4231's test
 * vectors (one shot and incremental, a keyed MAC reused), loading the
 * secret from a file and the environment, the refusal without one, and
 * hex. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"

/* RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". */
static const char *TC2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

static void test_hmac_vectors(void **state)
{
    (void)state;
    uint8_t out[SECRET_MAC_LEN];
    char hex[2 * SECRET_MAC_LEN + 1];
    const void *parts[] = { "what do ya want ", "for nothing?" };
    size_t lens[] = { 16, 12 };
    secret_hmac_key((const uint8_t *)"Jefe", 4, out, 2, parts, lens);
    assert_string_equal(secret_hex(out, sizeof(out), hex), TC2);

    /* One key, many MACs: begin starts each afresh. */
    secret_mac *m = secret_mac_new((const uint8_t *)"Jefe", 4);
    for (int i = 0; i < 3; i++) {
        secret_mac_begin(m);
        secret_mac_update(m, "what do ya", 10);
        secret_mac_update(m, "", 0);
        secret_mac_update(m, " want for nothing?", 18);
        secret_mac_end(m, out);
        assert_string_equal(secret_hex(out, sizeof(out), hex), TC2);
    }
    secret_mac_free(m);

    /* The process secret keys secret_hmac. */
    secret_set("Jefe", 4);
    secret_hmac(out, 2, parts, lens);
    assert_string_equal(secret_hex(out, sizeof(out), hex), TC2);
    assert_true(secret_present());
    /* The empty secret (--insecure) still gives a MAC, and another one. */
    secret_set(NULL, 0);
    assert_false(secret_present());
    secret_hmac(out, 2, parts, lens);
    assert_string_not_equal(secret_hex(out, sizeof(out), hex), TC2);
}

static void test_load(void **state)
{
    (void)state;
    char err[512];
    char path[] = "/tmp/dchat-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "  0123456789abcdef0123\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);

    unsetenv(SECRET_ENV);
    assert_int_equal(secret_load(path, false, err, sizeof(err)), 0);
    assert_true(secret_present());
    /* Whitespace is not part of it: the same MAC as the bare value. */
    uint8_t a[SECRET_MAC_LEN], b[SECRET_MAC_LEN];
    const void *parts[] = { "x" };
    size_t lens[] = { 1 };
    secret_hmac(a, 1, parts, lens);
    secret_hmac_key((const uint8_t *)"0123456789abcdef0123", 20, b, 1, parts, lens);
    assert_memory_equal(a, b, sizeof(a));

    /* Too short: refused, saying how long it must be. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("short\n", f);
    fclose(f);
    assert_int_equal(secret_load(path, false, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "has 5 bytes"));
    unlink(path);
    assert_int_equal(secret_load(path, true, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open"));

    /* The environment, when no file is named. */
    setenv(SECRET_ENV, "abcdefghijklmnopqrstuvwxyz", 1);
    assert_int_equal(secret_load(NULL, false, err, sizeof(err)), 0);
    assert_true(secret_present());
    unsetenv(SECRET_ENV);

    /* Neither: refused, unless insecure. */
    assert_int_equal(secret_load(NULL, false, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--insecure"));
    assert_int_equal(secret_load(NULL, true, err, sizeof(err)), 0);
    assert_false(secret_present());
}

static void test_hex_and_equal(void **state)
{
    (void)state;
    uint8_t raw[3] = { 0x00, 0xab, 0xff }, back[3];
    char hex[7];
    assert_string_equal(secret_hex(raw, 3, hex), "00abff");
    assert_int_equal(secret_unhex("00ABff", 6, back, 3), 0);
    assert_memory_equal(raw, back, 3);
    assert_int_equal(secret_unhex("00abf", 5, back, 3), -1);
    assert_int_equal(secret_unhex("00abfg", 6, back, 3), -1);
    assert_true(secret_equal("abc", "abc", 3));
    assert_false(secret_equal("abc", "abd", 3));
    uint8_t n1[32], n2[32];
    secret_random(n1, sizeof(n1));
    secret_random(n2, sizeof(n2));
    assert_memory_not_equal(n1, n2, sizeof(n1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_vectors),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_hex_and_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
