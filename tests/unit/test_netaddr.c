/* Unit tests for common/netaddr.c: netaddr_parse and netaddr_to_string for
 * IPv4, IPv6 (bracketed or not), v4-mapped IPv6 shown as plain IPv4,
 * "localhost", bad literals and ports, small output buffers, and
 * netaddr_peer / netaddr_sockname on a connected loopback pair,
 * netaddr_is_host on what login's "address" may and may not be, and
 * netaddr_parse_advertise on --advertise values and what its errors say. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "tests/unit/skip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/netaddr.h"

/* Parses host:port and prints it back; returns the parse result. */
static int roundtrip(const char *host, int port, char *out, size_t outlen, int *outport)
{
    struct sockaddr_storage ss;
    memset(&ss, 0xa5, sizeof(ss));
    int rc = netaddr_parse(host, port, &ss);
    if (rc != 0)
        return rc;
    return netaddr_to_string((struct sockaddr *)&ss, out, outlen, outport);
}

static void test_ipv4(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(netaddr_parse("192.168.1.20", 8080, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    assert_int_equal(ntohs(in->sin_port), 8080);
    assert_int_equal(ntohl(in->sin_addr.s_addr), 0xc0a80114u);

    char buf[64];
    int port = -1;
    assert_int_equal(roundtrip("192.168.1.20", 8080, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "192.168.1.20");
    assert_int_equal(port, 8080);
    assert_int_equal(roundtrip("0.0.0.0", 0, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "0.0.0.0");
    assert_int_equal(port, 0);
    assert_int_equal(roundtrip("255.255.255.255", 65535, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "255.255.255.255");
    assert_int_equal(port, 65535);
}

static void test_localhost(void **state)
{
    (void)state;
    char buf[64];
    int port;
    assert_int_equal(roundtrip("localhost", 7000, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "127.0.0.1");
    assert_int_equal(port, 7000);
    assert_int_equal(roundtrip("[localhost]", 1, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "127.0.0.1");
}

static void test_ipv6(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(netaddr_parse("::1", 443, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port), 443);

    char buf[64];
    int port = -1;
    assert_int_equal(roundtrip("::1", 443, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "::1");
    assert_int_equal(port, 443);
    assert_int_equal(roundtrip("[::1]", 80, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "::1");
    assert_int_equal(port, 80);
    assert_int_equal(roundtrip("::", 7, buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, "::");
    /* Printed in canonical (compressed, lower-case) form. */
    assert_int_equal(roundtrip("2001:DB8:0:0:0:0:0:1", 1, buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, "2001:db8::1");
    assert_int_equal(roundtrip("[fe80::1:2:3:4]", 1, buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, "fe80::1:2:3:4");
    /* The longest printed form (39 characters) fits exactly in 40 bytes. */
    char exact[40];
    assert_int_equal(roundtrip("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 1, exact,
                               sizeof(exact), NULL), 0);
    assert_string_equal(exact, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

static void test_v4_mapped(void **state)
{
    (void)state;
    char buf[64];
    int port = -1;
    assert_int_equal(roundtrip("::ffff:1.2.3.4", 5000, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "1.2.3.4");
    assert_int_equal(port, 5000);
    assert_int_equal(roundtrip("[::ffff:127.0.0.1]", 9, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "127.0.0.1");
    assert_int_equal(port, 9);
    assert_int_equal(roundtrip("::FFFF:7f00:1", 9, buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, "127.0.0.1");
    /* Built by hand, as accept() would give it on a dual-stack socket. */
    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(1234);
    in6.sin6_addr.s6_addr[10] = 0xff;
    in6.sin6_addr.s6_addr[11] = 0xff;
    in6.sin6_addr.s6_addr[12] = 10;
    in6.sin6_addr.s6_addr[15] = 7;
    assert_int_equal(netaddr_to_string((struct sockaddr *)&in6, buf, sizeof(buf), &port), 0);
    assert_string_equal(buf, "10.0.0.7");
    assert_int_equal(port, 1234);
    /* A v4-compatible (deprecated, not mapped) address stays IPv6. */
    assert_int_equal(roundtrip("::1.2.3.4", 1, buf, sizeof(buf), NULL), 0);
    assert_string_not_equal(buf, "1.2.3.4");
    assert_true(strncmp(buf, "::", 2) == 0); /* "::1.2.3.4" with glibc */
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    const char *bad[] = {
        "", "example.com", "1.2.3", "1.2.3.256", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 ",
        ":::", "1::2::3", "[::1", "::1]", "[]", "[1.2.3.4", "gggg::1", "[[::1]]",
        "1.2.3.4:80", "01.2.3.4x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (netaddr_parse(bad[i], 80, &ss) != UV_EINVAL)
            fail_msg("netaddr_parse accepted \"%s\"", bad[i]);
    }
    assert_int_equal(netaddr_parse("1.2.3.4", -1, &ss), UV_EINVAL);
    assert_int_equal(netaddr_parse("1.2.3.4", 65536, &ss), UV_EINVAL);
    assert_int_equal(netaddr_parse("::1", 70000, &ss), UV_EINVAL);
    assert_int_equal(netaddr_parse("1.2.3.4", 0, &ss), 0);
    assert_int_equal(netaddr_parse("1.2.3.4", 65535, &ss), 0);
    /* A long bracketed string does not overflow the internal buffer. */
    char longhost[200];
    memset(longhost, '1', sizeof(longhost) - 1);
    longhost[0] = '[';
    longhost[sizeof(longhost) - 2] = ']';
    longhost[sizeof(longhost) - 1] = '\0';
    assert_int_equal(netaddr_parse(longhost, 1, &ss), UV_EINVAL);
}

static void test_to_string_edges(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char small[8];
    int port = -1;
    /* Too small a buffer: an error, no overrun; port untouched. */
    assert_int_equal(netaddr_parse("192.168.100.200", 1, &ss), 0);
    memset(small, 'x', sizeof(small));
    assert_int_equal(netaddr_to_string((struct sockaddr *)&ss, small, sizeof(small), &port), UV_ENOBUFS);
    assert_int_equal(port, -1);
    /* Exactly enough (length + NUL). */
    char fit[16];
    assert_int_equal(netaddr_to_string((struct sockaddr *)&ss, fit, sizeof(fit), &port), 0);
    assert_string_equal(fit, "192.168.100.200");
    /* out NULL: only the port. */
    port = -1;
    assert_int_equal(netaddr_parse("::1", 321, &ss), 0);
    assert_int_equal(netaddr_to_string((struct sockaddr *)&ss, NULL, 0, &port), 0);
    assert_int_equal(port, 321);
    /* Both NULL is allowed too. */
    assert_int_equal(netaddr_to_string((struct sockaddr *)&ss, NULL, 0, NULL), 0);
    /* Unsupported family. */
    struct sockaddr sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    assert_int_equal(netaddr_to_string(&sa, fit, sizeof(fit), &port), UV_EAFNOSUPPORT);
}

/* --- netaddr_peer / netaddr_sockname on a real connection ------------------ */

struct pair {
    uv_tcp_t listener, client, server;
    uv_connect_t conn;
    bool accepted, connected;
    int listen_port;
    char peer[64], sock[64], cpeer[64];
    int peer_port, sock_port, cpeer_port, client_port;
    int rc[4];
};

static void maybe_done(struct pair *p)
{
    if (!p->accepted || !p->connected)
        return;
    p->rc[0] = netaddr_peer(&p->server, p->peer, sizeof(p->peer), &p->peer_port);
    p->rc[1] = netaddr_sockname(&p->server, p->sock, sizeof(p->sock), &p->sock_port);
    p->rc[2] = netaddr_peer(&p->client, p->cpeer, sizeof(p->cpeer), &p->cpeer_port);
    p->rc[3] = netaddr_sockname(&p->client, NULL, 0, &p->client_port);
    uv_close((uv_handle_t *)&p->listener, NULL);
    uv_close((uv_handle_t *)&p->client, NULL);
    uv_close((uv_handle_t *)&p->server, NULL);
}

static void on_conn(uv_stream_t *s, int status)
{
    struct pair *p = s->data;
    if (status == 0 && uv_accept(s, (uv_stream_t *)&p->server) == 0)
        p->accepted = true;
    maybe_done(p);
}

static void on_connect(uv_connect_t *c, int status)
{
    struct pair *p = c->data;
    p->connected = status == 0;
    maybe_done(p);
}

/* Connects to host (bound with flags) over loopback; 0, or -1 when the
 * address family is not available here. */
static int run_pair(struct pair *p, const char *bind_host, const char *connect_host,
                    unsigned flags)
{
    uv_loop_t loop;
    memset(p, 0, sizeof(*p));
    assert_int_equal(uv_loop_init(&loop), 0);
    struct sockaddr_storage ss;
    assert_int_equal(netaddr_parse(bind_host, 0, &ss), 0);
    uv_tcp_init(&loop, &p->listener);
    uv_tcp_init(&loop, &p->client);
    uv_tcp_init(&loop, &p->server);
    p->listener.data = p;
    p->conn.data = p;
    int rc = uv_tcp_bind(&p->listener, (struct sockaddr *)&ss, flags);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->listener, 4, on_conn);
    if (rc == 0)
        rc = netaddr_sockname(&p->listener, NULL, 0, &p->listen_port);
    if (rc == 0) {
        assert_int_equal(netaddr_parse(connect_host, p->listen_port, &ss), 0);
        rc = uv_tcp_connect(&p->conn, &p->client, (struct sockaddr *)&ss, on_connect);
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&p->listener, NULL);
        uv_close((uv_handle_t *)&p->client, NULL);
        uv_close((uv_handle_t *)&p->server, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    if (rc != 0)
        return -1;
    assert_true(p->accepted && p->connected);
    for (int i = 0; i < 4; i++)
        assert_int_equal(p->rc[i], 0);
    return 0;
}

static void test_peer_and_sockname_ipv4(void **state)
{
    (void)state;
    struct pair p;
    assert_int_equal(run_pair(&p, "127.0.0.1", "127.0.0.1", 0), 0);
    assert_string_equal(p.peer, "127.0.0.1");
    assert_string_equal(p.sock, "127.0.0.1");
    assert_string_equal(p.cpeer, "127.0.0.1");
    assert_int_equal(p.sock_port, p.listen_port);
    assert_int_equal(p.cpeer_port, p.listen_port);
    assert_int_equal(p.peer_port, p.client_port);
    assert_true(p.client_port > 0);
}

static void test_peer_v4_mapped_on_dual_stack(void **state)
{
    (void)state;
    struct pair p;
    /* "::" dual-stack; an IPv4 client shows up as ::ffff:127.0.0.1 in the
     * kernel's answer and must be printed as plain IPv4. */
    if (run_pair(&p, "::", "127.0.0.1", 0) != 0)
        skip_because("no dual-stack IPv6 listener on this machine");
    assert_string_equal(p.peer, "127.0.0.1");
    assert_string_equal(p.sock, "127.0.0.1");
    assert_int_equal(p.peer_port, p.client_port);
}

static void test_peer_ipv6(void **state)
{
    (void)state;
    struct pair p;
    if (run_pair(&p, "::1", "::1", UV_TCP_IPV6ONLY) != 0)
        skip_because("no IPv6 loopback (::1) on this machine");
    assert_string_equal(p.peer, "::1");
    assert_string_equal(p.sock, "::1");
    assert_string_equal(p.cpeer, "::1");
    assert_int_equal(p.peer_port, p.client_port);
}

static void test_peer_not_connected(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_tcp_t t;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_tcp_init(&loop, &t);
    char buf[64];
    int port;
    assert_true(netaddr_peer(&t, buf, sizeof(buf), &port) < 0);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_is_host(void **state)
{
    (void)state;
    char label63[64], name253[300], name254[300];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    /* 3 labels of 63, each with its dot, and one of 61: 253 bytes */
    name253[0] = '\0';
    for (int i = 0; i < 3; i++) {
        strcat(name253, label63);
        strcat(name253, ".");
    }
    strncat(name253, label63, 61);
    strcpy(name254, name253);
    strcat(name254, "b");
    assert_int_equal(strlen(name253), 253);
    const char *good[] = { "127.0.0.1", "10.1.2.3", "::1", "fe80::1", "2001:db8::a:b",
                           "::ffff:1.2.3.4", "localhost", "node-b.example", "a", "A1-b2.c3",
                           "1a.example", "x.1a", label63, name253 };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!netaddr_is_host(good[i]))
            fail_msg("refused \"%s\"", good[i]);
    }
    char ctl[] = "node\x01x", del[] = "node\x7f", high[] = "n\xc3\xa9ud";
    char label64[65];
    memset(label64, 'a', 64);
    label64[64] = '\0';
    const char *bad[] = { "", " ", "node b", " node", "node ", "node\t", "node\n", ctl, del,
                          high, "-node", "node-", "a.-b", "a.b-", "a..b", ".a", "a.",
                          "node:80", "127.0.0.1:80", "[::1]", "http://node", "node/x",
                          "a_b", "a@b", "1.2.3", "node1.10", "256.1.1.1", "10.0.0.01x.", "123",
                          "fe80::1%eth0", label64, name254 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (netaddr_is_host(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

/* --- netaddr_parse_advertise ---------------------------------------------- */

static void test_advertise_forms(void **state)
{
    (void)state;
    static const struct {
        const char *in, *host;
        int client, sync;
    } good[] = {
        { "127.0.0.1", "127.0.0.1", 0, 0 },
        { "203.0.113.7:9001", "203.0.113.7", 9001, 0 },
        { "203.0.113.7:9001:9101", "203.0.113.7", 9001, 9101 },
        { "10.0.0.1:1:65535", "10.0.0.1", 1, 65535 },
        { "10.0.0.1:065535:00001", "10.0.0.1", 65535, 1 }, /* leading zeros: still decimal */
        { "localhost:9001:9101", "localhost", 9001, 9101 },
        /* a bare IPv6 address keeps working, ports or not in brackets */
        { "::1", "::1", 0, 0 },
        { "2001:db8::1", "2001:db8::1", 0, 0 },
        { "2001:db8::1:9001", "2001:db8::1:9001", 0, 0 }, /* a whole address: no port */
        { "::ffff:1.2.3.4", "::ffff:1.2.3.4", 0, 0 },
        { "[::1]", "::1", 0, 0 },
        { "[2001:db8::1]:9001", "2001:db8::1", 9001, 0 },
        { "[2001:db8::1]:9001:7001", "2001:db8::1", 9001, 7001 },
        { "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:1:2",
          "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 1, 2 },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct netaddr_advertise a;
        char err[256] = "";
        memset(&a, 0xa5, sizeof(a));
        if (netaddr_parse_advertise(good[i].in, &a, err, sizeof(err)) != 0)
            fail_msg("refused \"%s\": %s", good[i].in, err);
        assert_string_equal(a.host, good[i].host);
        assert_int_equal(a.client_port, good[i].client);
        assert_int_equal(a.sync_port, good[i].sync);
    }
}

static void test_advertise_errors_say_what_is_wrong(void **state)
{
    (void)state;
    char name63[80], name64[80], long_host[100];
    memset(name63, 'a', 63);
    name63[63] = '\0';
    memset(name64, 'a', 64);
    name64[64] = '\0';
    /* 64 bytes before the ports: too long even though the rest is fine */
    snprintf(long_host, sizeof(long_host), "%s:1:2", name64);
    /* Each bad value, and what its error must say. */
    const char *const bad[][2] = {
        { "", "HOST is empty" },
        { ":9001", "HOST is empty" },
        { ":9001:9101", "HOST is empty" },
        { "[]:9001", "HOST is empty" },
        { "1.2.3.4:", "CLIENTPORT is empty" },
        { "1.2.3.4::9101", "neither an IPv6 address nor" },
        { "1.2.3.4:9001:", "SYNCPORT is empty" },
        { "1.2.3.4:0", "CLIENTPORT 0 is out of range" },
        { "1.2.3.4:9001:0", "SYNCPORT 0 is out of range" },
        { "1.2.3.4:65536", "CLIENTPORT 65536 is out of range" },
        { "1.2.3.4:9001:99999999999999999999", "SYNCPORT 999" },
        { "1.2.3.4:-1", "CLIENTPORT '-1' is not a port number" },
        { "1.2.3.4:+80", "not a port number" },
        { "1.2.3.4: 80", "not a port number" },
        { "1.2.3.4:80x", "not a port number" },
        { "1.2.3.4:http", "not a port number" },
        { "[::1]:9001:9101:9201", "more than two ports" },
        { "1.2.3.4:1:2:3", "in brackets" },
        { "2001:db8::1:9001:9101:x", "in brackets" },
        { "fe80::1%eth0", "in brackets" },
        { "[::1", "'[' without ']'" },
        { "[::1]9001", "expected ':' and a port after ']'" },
        { "[1.2.3.4]:9001", "brackets are for IPv6 only" },
        { "[node1]:9001", "brackets are for IPv6 only" },
        { "1.2.3", "not an IP address" },
        { "1.2.3.4 ", "not an IP address" },
        { "a b:9001", "not an IP address" },
        { "http://1.2.3.4", "is a URL" },
        { "ws://[::1]:9001", "is a URL" },
        { "node1:9001:9101", "is a name" },
        { "chat.example.com", "is a name" },
        { name63, "is a name" },
        { name64, "HOST has 64 bytes" },
        { long_host, "HOST has 64 bytes" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct netaddr_advertise a;
        char err[256] = "";
        if (netaddr_parse_advertise(bad[i][0], &a, err, sizeof(err)) == 0)
            fail_msg("accepted \"%s\"", bad[i][0]);
        if (strstr(err, bad[i][1]) == NULL)
            fail_msg("\"%s\": expected \"%s\" in \"%s\"", bad[i][0], bad[i][1], err);
    }
    /* A small error buffer is cut, never overrun. */
    struct netaddr_advertise a;
    char small[12];
    memset(small, 'x', sizeof(small));
    assert_int_equal(netaddr_parse_advertise("node1:1", &a, small, 8), -1);
    assert_int_equal(strlen(small), 7);
    assert_int_equal(small[8], 'x');
}

/* What it accepts, discovery accepts (netaddr_is_host) and peers can dial
 * (netaddr_parse), for every host it gives back. */
static void test_advertise_host_is_what_discovery_and_peers_take(void **state)
{
    (void)state;
    const char *in[] = { "127.0.0.1:1", "[::1]:2:3", "::1", "localhost", "[fe80::1]:7" };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct netaddr_advertise a;
        struct sockaddr_storage ss;
        char err[256];
        assert_int_equal(netaddr_parse_advertise(in[i], &a, err, sizeof(err)), 0);
        assert_true(netaddr_is_host(a.host));
        assert_true(strlen(a.host) <= NETADDR_ADVERTISE_HOST_MAX);
        assert_int_equal(netaddr_parse(a.host, a.sync_port, &ss), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_localhost),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_v4_mapped),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_to_string_edges),
        cmocka_unit_test(test_peer_and_sockname_ipv4),
        cmocka_unit_test(test_peer_v4_mapped_on_dual_stack),
        cmocka_unit_test(test_peer_ipv6),
        cmocka_unit_test(test_peer_not_connected),
        cmocka_unit_test(test_is_host),
        cmocka_unit_test(test_advertise_forms),
        cmocka_unit_test(test_advertise_errors_say_what_is_wrong),
        cmocka_unit_test(test_advertise_host_is_what_discovery_and_peers_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
