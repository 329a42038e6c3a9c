/* Unit tests for bench/nats_proto.c: the NATS client protocol codec. Every
 * script of server operations (INFO, MSG with and without reply subject,
 * payloads holding CRLF and "MSG", empty payloads, PING, PONG, +OK, -ERR,
 * lower-case names, tabs) is fed whole and in every chunking down to one
 * byte, each piece an exact-size heap copy so that ASan sees any read past
 * it, and must give the same operations. Malformed input is refused with
 * the same clear error in every chunking, and the parser stays refused.
 * The builders must produce the exact bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/nats_proto.h"

/* What the callback saw, one line per operation. */
struct transcript {
    char buf[8192];
    size_t len;
    int events;
    int stop_after;   /* stop the feed after this many events (0: never) */
};

static void put(struct transcript *t, const char *s, size_t n)
{
    assert_true(t->len + n < sizeof(t->buf));
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/* CR and LF inside a payload are shown as \r and \n, so a transcript is
 * one line per operation. */
static void put_escaped(struct transcript *t, const void *data, size_t n)
{
    const char *s = data;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r')
            put(t, "\\r", 2);
        else if (s[i] == '\n')
            put(t, "\\n", 2);
        else
            put(t, s + i, 1);
    }
}

static int record(void *ud, const struct nats_event *ev)
{
    struct transcript *t = ud;
    char num[64];
    switch (ev->op) {
    case NATS_OP_INFO:
        put(t, "INFO ", 5);
        put(t, ev->arg, ev->arg_len);
        break;
    case NATS_OP_ERR:
        put(t, "ERR ", 4);
        put(t, ev->arg, ev->arg_len);
        break;
    case NATS_OP_PING: put(t, "PING", 4); break;
    case NATS_OP_PONG: put(t, "PONG", 4); break;
    case NATS_OP_OK: put(t, "OK", 2); break;
    case NATS_OP_MSG:
        put(t, "MSG ", 4);
        put(t, ev->subject, ev->subject_len);
        snprintf(num, sizeof(num), " sid=%llu reply=", (unsigned long long)ev->sid);
        put(t, num, strlen(num));
        if (ev->reply != NULL)
            put(t, ev->reply, ev->reply_len);
        else
            put(t, "-", 1);
        snprintf(num, sizeof(num), " len=%zu [", ev->payload_len);
        put(t, num, strlen(num));
        put_escaped(t, ev->payload, ev->payload_len);
        put(t, "]", 1);
        break;
    }
    put(t, "\n", 1);
    t->events++;
    return t->stop_after > 0 && t->events >= t->stop_after;
}

/* Feeds script in pieces of chunk bytes to a fresh parser; returns the
 * feed's first nonzero result (or 0) and fills t (and err with the error). */
static int feed_chunked(const char *script, size_t len, size_t chunk, size_t max_payload,
                        size_t max_control, struct transcript *t, char *err, size_t errcap)
{
    nats_parser *p = nats_parser_new(max_control, max_payload);
    int rc = 0;
    int stop_after = t->stop_after;
    memset(t, 0, sizeof(*t));
    t->stop_after = stop_after;
    for (size_t off = 0; off < len && rc == 0; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        uint8_t *piece = malloc(n);
        assert_non_null(piece);
        memcpy(piece, script + off, n);
        int before = t->events;
        rc = nats_parser_feed(p, piece, n, record, t);
        free(piece);
        if (t->stop_after > 0 && t->events >= t->stop_after && t->events > before)
            break;
    }
    snprintf(err, errcap, "%s", nats_parser_error(p));
    if (rc != 0) {
        /* refused for good */
        assert_int_equal(nats_parser_feed(p, (const uint8_t *)"PING\r\n", 6, record, t), -1);
    }
    nats_parser_free(p);
    return rc;
}

/* The script must give the transcript want (want_len bytes) in one piece
 * and in every chunking. */
static void check_chunkings(const char *script, size_t len, const char *want, size_t want_len)
{
    struct transcript t;
    char err[256];
    for (size_t chunk = 1; chunk <= len; chunk++) {
        t.stop_after = 0;
        int rc = feed_chunked(script, len, chunk, 1 << 20, 0, &t, err, sizeof(err));
        if (rc != 0 || t.len != want_len || memcmp(t.buf, want, want_len) != 0)
            fail_msg("chunk %zu: rc %d (%s)\ngot:\n%s\nwant:\n%s", chunk, rc, err, t.buf, want);
    }
}

#define check_every_chunking(script, len, want) check_chunkings(script, len, want, strlen(want))

/* The script must be refused in every chunking with an error holding
 * want_err, after exactly the operations in want_before. */
static void check_refused(const char *script, size_t max_payload, size_t max_control,
                          const char *want_before, const char *want_err)
{
    size_t len = strlen(script);
    struct transcript t;
    char err[256];
    for (size_t chunk = 1; chunk <= len; chunk++) {
        t.stop_after = 0;
        int rc = feed_chunked(script, len, chunk, max_payload, max_control, &t, err,
                              sizeof(err));
        if (rc != -1 || strstr(err, want_err) == NULL || strcmp(t.buf, want_before) != 0)
            fail_msg("chunk %zu: rc %d, error '%s' (want '%s'), before:\n%s", chunk, rc, err,
                     want_err, t.buf);
    }
}

/* ---- parsing ------------------------------------------------------------- */

static void test_info(void **state)
{
    (void)state;
    const char *s = "INFO {\"server_id\":\"NABC\",\"version\":\"2.9.10\",\"max_payload\":1048576,"
                    "\"headers\":true}\r\n";
    check_every_chunking(s, strlen(s),
                         "INFO {\"server_id\":\"NABC\",\"version\":\"2.9.10\","
                         "\"max_payload\":1048576,\"headers\":true}\n");
}

static void test_control_ops(void **state)
{
    (void)state;
    const char *s = "PING\r\nPONG\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\n"
                    "ping\r\npong \r\n-ERR\t'Authorization Violation'\r\n";
    check_every_chunking(s, strlen(s),
                         "PING\nPONG\nOK\nERR Unknown Protocol Operation\nPING\nPONG\n"
                         "ERR Authorization Violation\n");
}

static void test_msg_without_reply(void **state)
{
    (void)state;
    const char *s = "MSG bench.0badf00d 1 11\r\nhello world\r\n";
    check_every_chunking(s, strlen(s),
                         "MSG bench.0badf00d sid=1 reply=- len=11 [hello world]\n");
}

static void test_msg_with_reply(void **state)
{
    (void)state;
    const char *s = "MSG foo.bar 42 _INBOX.abc.1 5\r\nhi!!!\r\n";
    check_every_chunking(s, strlen(s), "MSG foo.bar sid=42 reply=_INBOX.abc.1 len=5 [hi!!!]\n");
}

static void test_msg_payload_with_crlf(void **state)
{
    (void)state;
    /* The size, not a CRLF, ends a payload: CRLF, "MSG" and "PING\r\n"
     * inside one are data. */
    const char *s = "MSG a 1 20\r\nx\r\nMSG a 1 2\r\nPING\r\n\r\n"
                    "MSG a 1 r 2\r\n\r\n\r\n"
                    "MSG a 1 0\r\n\r\n"
                    "PING\r\n";
    check_every_chunking(s, strlen(s),
                         "MSG a sid=1 reply=- len=20 [x\\r\\nMSG a 1 2\\r\\nPING\\r\\n]\n"
                         "MSG a sid=1 reply=r len=2 [\\r\\n]\n"
                         "MSG a sid=1 reply=- len=0 []\n"
                         "PING\n");
}

static void test_msg_binary_payload_and_tabs(void **state)
{
    (void)state;
    /* A payload may hold any byte, NUL included; arguments may be
     * separated by tabs and several blanks; operation names are
     * case-insensitive. */
    static const char s[] = "msg\tsub.x  7\t\t3\r\n\0\xff\n\r\nMSG s 18446744073709551 1\r\nz\r\n";
    static const char want[] = "MSG sub.x sid=7 reply=- len=3 [\0\xff\\n]\n"
                               "MSG s sid=18446744073709551 reply=- len=1 [z]\n";
    check_chunkings(s, sizeof(s) - 1, want, sizeof(want) - 1);
}

static void test_mixed_script(void **state)
{
    (void)state;
    const char *s = "INFO {\"a\":1}\r\nPING\r\nMSG bench.1 1 4\r\nb.1.\r\n+OK\r\n"
                    "MSG bench.1 1 reply.to 6\r\n\r\n\r\n\r\n\r\n-ERR 'Slow Consumer'\r\nPONG\r\n";
    check_every_chunking(s, strlen(s),
                         "INFO {\"a\":1}\nPING\nMSG bench.1 sid=1 reply=- len=4 [b.1.]\nOK\n"
                         "MSG bench.1 sid=1 reply=reply.to len=6 [\\r\\n\\r\\n\\r\\n]\n"
                         "ERR Slow Consumer\nPONG\n");
}

static void test_callback_stops_feed(void **state)
{
    (void)state;
    const char *s = "PING\r\nMSG a 1 1\r\nx\r\nPONG\r\n";
    for (size_t chunk = 1; chunk <= strlen(s); chunk++) {
        struct transcript t = { .stop_after = 2 };
        char err[256];
        assert_int_equal(feed_chunked(s, strlen(s), chunk, 100, 0, &t, err, sizeof(err)), 0);
        assert_int_equal(t.events, 2);
        assert_string_equal(t.buf, "PING\nMSG a sid=1 reply=- len=1 [x]\n");
    }
}

static void test_malformed_refused(void **state)
{
    (void)state;
    check_refused("PING\r\nHMSG a 1 2 2\r\nxx\r\n", 100, 0, "PING\n",
                  "unknown operation in 'HMSG a 1 2 2'");
    check_refused("SUB a 1\r\n", 100, 0, "", "unknown operation");
    check_refused("PING\n", 100, 0, "", "ended by LF alone");
    check_refused("MSG a\rb 1 1\r\nx\r\n", 100, 0, "", "holds a CR before its end");
    check_refused("PING\r\r\n", 100, 0, "", "holds a CR before its end");
    check_refused("MSG a 1\r\nx\r\n", 100, 0, "", "malformed MSG line 'MSG a 1'");
    check_refused("MSG a x 1\r\nx\r\n", 100, 0, "", "malformed MSG line");
    check_refused("MSG a 1 -1\r\nx\r\n", 100, 0, "", "malformed MSG line");
    check_refused("MSG a 1 r s 1\r\nx\r\n", 100, 0, "", "malformed MSG line");
    check_refused("MSG a 1 99999999999999999999\r\n", 100, 0, "", "malformed MSG line");
    check_refused("MSG a 1 3\r\nabcd\r\n", 100, 0, "", "MSG payload of 3 bytes not followed "
                                                       "by CRLF");
    check_refused("PING\r\nMSG a 1 101\r\n", 100, 0, "PING\n",
                  "MSG payload of 101 bytes is over the limit of 100");
    check_refused("PONG x\r\n", 100, 0, "", "unexpected text after the operation");
    check_refused("INFO \r\n", 100, 0, "", "INFO without its JSON object");
    check_refused("\r\n", 100, 0, "", "unknown operation in ''");
    /* a control line over the limit, with or without its end in sight */
    check_refused("PING\r\nINFO {\"0123456789\"}\r\n", 100, 16, "PING\n",
                  "control line longer than 16 bytes");
    check_refused("INFO {\"0123456789\":1111111111}", 100, 16, "",
                  "control line longer than 16 bytes");
    /* exactly at the limit is fine */
    struct transcript t = { 0 };
    char err[256];
    const char *ok = "INFO {\"0123456\"}\r\n"; /* 16 bytes before CRLF */
    assert_int_equal(feed_chunked(ok, strlen(ok), 1, 100, 16, &t, err, sizeof(err)), 0);
    assert_string_equal(t.buf, "INFO {\"0123456\"}\n");
}

static void test_error_excerpt_is_printable_and_bounded(void **state)
{
    (void)state;
    char script[200];
    snprintf(script, sizeof(script), "GARBAGE\x01\x7f%s\r\n",
             "0123456789012345678901234567890123456789012345678901234567890123456789");
    nats_parser *p = nats_parser_new(0, 100);
    assert_int_equal(nats_parser_feed(p, (const uint8_t *)script, strlen(script), record,
                                      &(struct transcript){ 0 }),
                     -1);
    const char *e = nats_parser_error(p);
    assert_non_null(strstr(e, "'GARBAGE??0123"));
    assert_non_null(strstr(e, "...'"));
    assert_true(strlen(e) < 160);
    for (const char *c = e; *c; c++)
        assert_true(*c >= 0x20 && *c < 0x7f);
    nats_parser_free(p);
}

/* ---- builders ------------------------------------------------------------ */

static void test_build_connect(void **state)
{
    (void)state;
    char out[512];
    int n = nats_build_connect(out, sizeof(out), "bench-sender-1");
    const char *want = "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,"
                       "\"name\":\"bench-sender-1\",\"lang\":\"c\",\"version\":\"dchat-bench\","
                       "\"protocol\":1,\"echo\":true,\"headers\":false}\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(out, want, (size_t)n);
    assert_int_equal(nats_build_connect(out, (size_t)n, "bench-sender-1"), -1); /* no room */
    assert_int_equal(nats_build_connect(out, sizeof(out), "a\"b"), -1);
    assert_int_equal(nats_build_connect(out, sizeof(out), "a b"), -1);
}

static void test_build_sub(void **state)
{
    (void)state;
    char out[64];
    int n = nats_build_sub(out, sizeof(out), "bench.0badf00d", 1);
    assert_int_equal(n, 22);
    assert_memory_equal(out, "SUB bench.0badf00d 1\r\n", 22);
    n = nats_build_sub(out, sizeof(out), "x", 18446744073709551615ull);
    assert_int_equal(n, 28);
    assert_memory_equal(out, "SUB x 18446744073709551615\r\n", 28);
    assert_int_equal(nats_build_sub(out, sizeof(out), "", 1), -1);
    assert_int_equal(nats_build_sub(out, sizeof(out), "a b", 1), -1);
    assert_int_equal(nats_build_sub(out, sizeof(out), "a\r\n", 1), -1);
    assert_int_equal(nats_build_sub(out, 10, "bench.0badf00d", 1), -1);
}

static void test_build_pub(void **state)
{
    (void)state;
    char out[64];
    int n = nats_build_pub(out, sizeof(out), "bench.1", NULL, "a\r\nb", 4);
    assert_int_equal(n, 21);
    assert_memory_equal(out, "PUB bench.1 4\r\na\r\nb\r\n", 21);
    n = nats_build_pub(out, sizeof(out), "s", "_INBOX.1", "xy", 2);
    assert_int_equal(n, 22);
    assert_memory_equal(out, "PUB s _INBOX.1 2\r\nxy\r\n", 22);
    n = nats_build_pub(out, sizeof(out), "s", NULL, NULL, 0);
    assert_int_equal(n, 11);
    assert_memory_equal(out, "PUB s 0\r\n\r\n", 11);
    /* exactly enough room, and one byte less */
    assert_int_equal(nats_build_pub(out, 11, "s", NULL, NULL, 0), 11);
    assert_int_equal(nats_build_pub(out, 10, "s", NULL, NULL, 0), -1);
    assert_int_equal(nats_build_pub(out, sizeof(out), "a b", NULL, "x", 1), -1);
    assert_int_equal(nats_build_pub(out, sizeof(out), "a", "r r", "x", 1), -1);
    /* a payload bigger than the room */
    char big[300];
    memset(big, 'p', sizeof(big));
    assert_int_equal(nats_build_pub(out, sizeof(out), "s", NULL, big, sizeof(big)), -1);
}

static void test_msg_overhead(void **state)
{
    (void)state;
    /* "MSG bench.0badf00d 1 188\r\n" + "\r\n" */
    assert_int_equal(nats_msg_overhead("bench.0badf00d", 1, 188), 28);
    assert_int_equal(nats_msg_overhead("a", 12, 5), 4 + 1 + 1 + 2 + 1 + 1 + 4);
    /* and it matches what a parser takes for one delivery */
    char line[64];
    int n = snprintf(line, sizeof(line), "MSG bench.0badf00d 1 3\r\nabc\r\n");
    assert_int_equal((size_t)n, nats_msg_overhead("bench.0badf00d", 1, 3) + 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_control_ops),
        cmocka_unit_test(test_msg_without_reply),
        cmocka_unit_test(test_msg_with_reply),
        cmocka_unit_test(test_msg_payload_with_crlf),
        cmocka_unit_test(test_msg_binary_payload_and_tabs),
        cmocka_unit_test(test_mixed_script),
        cmocka_unit_test(test_callback_stops_feed),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_error_excerpt_is_printable_and_bounded),
        cmocka_unit_test(test_build_connect),
        cmocka_unit_test(test_build_sub),
        cmocka_unit_test(test_build_pub),
        cmocka_unit_test(test_msg_overhead),
    };
    return cmocka_run_group_tests_name("nats_proto", tests, NULL, NULL);
}
