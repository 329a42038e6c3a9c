/* Unit tests for common/origins.c: parsing an --allowed-origins list (the
 * entries kept in RFC 6454 serialization, blanks around them ignored), the
 * entries refused and what is said about them, and matching Origin header
 * values: case-insensitive scheme and host, default ports, exact ports,
 * and values that are not one origin; and origins_same, which tells the
 * node's own page (Origin = scheme of the connection + Host) apart. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/origins.h"

static origins *parse_ok(const char *list)
{
    char err[256] = "";
    origins *o = origins_parse(list, err, sizeof(err));
    if (o == NULL)
        fail_msg("\"%s\" refused: %s", list, err);
    return o;
}

static void test_parse_serializes(void **state)
{
    (void)state;
    static const struct {
        const char *list;
        const char *described;
    } cases[] = {
        { "https://chat.example.com", "https://chat.example.com" },
        { "HTTPS://Chat.Example.COM", "https://chat.example.com" },
        { "https://chat.example.com:443", "https://chat.example.com" },
        { "http://localhost:80", "http://localhost" },
        { "wss://a.example:443,ws://b.example:80", "wss://a.example,ws://b.example" },
        { "http://localhost:443", "http://localhost:443" },
        { "https://a.example:80", "https://a.example:80" },
        { "http://127.0.0.1:08080", "http://127.0.0.1:8080" },
        { "http://[::1]:3000", "http://[::1]:3000" },
        { "http://[FE80::1]", "http://[fe80::1]" },
        { " https://a.example ,\thttp://b.example:8080\t", "https://a.example,http://b.example:8080" },
        { "chrome-extension://abcdef", "chrome-extension://abcdef" },
        { "app+x.y-z://h_1~", "app+x.y-z://h_1~" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        origins *o = parse_ok(cases[i].list);
        assert_string_equal(origins_describe(o), cases[i].described);
        origins_free(o);
    }
}

static void test_parse_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *list;
        const char *needle;   /* in the error */
    } cases[] = {
        { "", "no origin given" },
        { "   ", "no origin given" },
        { "https://a.example,", "origin 2 of the list is empty" },
        { "https://a.example,,https://b.example", "origin 2 of the list is empty" },
        { ",https://a.example", "origin 1 of the list is empty" },
        { "chat.example.com", "\"chat.example.com\" is not an origin: expected scheme://host" },
        { "https:/a.example", "expected scheme://host" },
        { "://a.example", "expected scheme://host" },
        { "1http://a.example", "expected scheme://host" },
        { "https://", "no host" },
        { "https://:8080", "no host" },
        { "https://a.example/", "no path" },
        { "https://a.example/chat", "no path" },
        { "https://user@a.example", "no user info" },
        { "https://a.example:", "port must be a number from 1 to 65535" },
        { "https://a.example:0", "port must be a number from 1 to 65535" },
        { "https://a.example:65536", "port must be a number from 1 to 65535" },
        { "https://a.example:123456", "port must be a number from 1 to 65535" },
        { "https://a.example:80x", "unexpected 'x'" },
        { "https://a.example?x", "unexpected '?'" },
        { "https://a example", "unexpected ' '" },
        { "https://[::1", "IPv6 host goes in brackets" },
        { "https://[]", "IPv6 host goes in brackets" },
        { "https://[zz]", "IPv6 host goes in brackets" },
        { "null", "\"null\" cannot be allowed" },
        { "https://a.example,null", "\"null\" cannot be allowed" },
        { "*", "leave the option out to allow any origin" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "";
        origins *o = origins_parse(cases[i].list, err, sizeof(err));
        if (o != NULL)
            fail_msg("\"%s\" was accepted as %s", cases[i].list, origins_describe(o));
        if (strstr(err, cases[i].needle) == NULL)
            fail_msg("\"%s\": error \"%s\" does not say \"%s\"", cases[i].list, err,
                     cases[i].needle);
    }
    /* A host too long for any origin is refused, not cut. */
    char list[600];
    int n = snprintf(list, sizeof(list), "https://");
    memset(list + n, 'h', 400);
    list[n + 400] = '\0';
    char err[256] = "";
    assert_null(origins_parse(list, err, sizeof(err)));
    assert_non_null(strstr(err, "too long"));
}

static void test_allow(void **state)
{
    (void)state;
    origins *o = parse_ok("https://chat.example.com, http://localhost:8080, http://[::1]:3000");
    static const char *const allowed[] = {
        "https://chat.example.com",
        "HTTPS://CHAT.EXAMPLE.COM",
        "https://chat.example.com:443",
        "http://localhost:8080",
        "http://LocalHost:8080",
        "http://[::1]:3000",
    };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (!origins_allow(o, allowed[i]))
            fail_msg("%s refused", allowed[i]);
    static const char *const refused[] = {
        "https://evil.example",
        "http://chat.example.com",           /* another scheme */
        "https://chat.example.com:8443",     /* another port */
        "https://chat.example.com.evil.example",
        "https://sub.chat.example.com",
        "http://localhost",                  /* port 80, not 8080 */
        "http://localhost:8081",
        "null",
        "",
        "https://chat.example.com/",
        "https://chat.example.com https://evil.example", /* a list */
        "https://chat.example.com,https://evil.example",
        "https://user@chat.example.com",
        "http://[::1]:3001",
        "chat.example.com",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (origins_allow(o, refused[i]))
            fail_msg("\"%s\" allowed", refused[i]);
    /* A header far longer than any origin is simply not in the list. */
    char big[9000];
    memcpy(big, "https://", 8);
    memset(big + 8, 'a', sizeof(big) - 9);
    big[sizeof(big) - 1] = '\0';
    assert_false(origins_allow(o, big));
    origins_free(o);
    origins_free(NULL);
}

static void test_same(void **state)
{
    (void)state;
    static const struct {
        const char *origin;
        bool tls;
        const char *host;
        bool same;
    } cases[] = {
        { "http://127.0.0.1:9001", false, "127.0.0.1:9001", true },
        { "http://LocalHost:9001", false, "localhost:9001", true },
        { "http://localhost", false, "localhost:80", true },     /* default port */
        { "http://localhost:80", false, "localhost", true },
        { "https://chat.example.com", true, "chat.example.com:443", true },
        { "http://[::1]:9001", false, "[::1]:9001", true },
        { "https://127.0.0.1:9001", false, "127.0.0.1:9001", false }, /* the scheme */
        { "http://127.0.0.1:9001", true, "127.0.0.1:9001", false },
        { "http://127.0.0.1:9002", false, "127.0.0.1:9001", false },  /* the port */
        { "http://127.0.0.1", false, "127.0.0.1:9001", false },
        { "http://evil.example:9001", false, "127.0.0.1:9001", false },
        { "http://127.0.0.1:9001", false, NULL, false },               /* no Host */
        { "http://127.0.0.1:9001", false, "", false },
        { "null", false, "127.0.0.1:9001", false },
        { "http://127.0.0.1:9001/", false, "127.0.0.1:9001", false },
        { "http://127.0.0.1:9001", false, "127.0.0.1:9001/x", false },
        { "http://a.example,http://127.0.0.1:9001", false, "127.0.0.1:9001", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (origins_same(cases[i].origin, cases[i].tls, cases[i].host) != cases[i].same)
            fail_msg("origins_same(\"%s\", %s, \"%s\") is not %s", cases[i].origin,
                     cases[i].tls ? "tls" : "plain",
                     cases[i].host ? cases[i].host : "(none)",
                     cases[i].same ? "true" : "false");
    char big[9000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(origins_same("http://aaaa", false, big));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_serializes),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_allow),
        cmocka_unit_test(test_same),
    };
    return cmocka_run_group_tests_name("origins", tests, NULL, NULL);
}
