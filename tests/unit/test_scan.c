/* Unit tests for bench/scan.c: the bench's message text marker
 * (scan_format_text), its reader for bare payloads (scan_marker_parse) and
 * the cheap frame reader (scan_frame, scan_frame_text), the load mode's
 * marker (scan_format_load_text, scan_load_marker_parse), including
 * foreign and malformed frames and truncation at every length. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/scan.h"

/* A server frame as the node writes it, around the given message text. */
static int make_frame(char *out, size_t cap, long source, const char *text)
{
    int n = snprintf(out, cap,
                     "{\"type\":\"newMessagesForClient\",\"source\":%ld,\"payload\":"
                     "[{\"nodeId\":3,\"id\":7,\"messageId\":\"3000000000007\",\"text\":\"%s\","
                     "\"sender\":\"bench-1\",\"chatId\":11,"
                     "\"dateTime\":\"2026-11-25T10:00:00.000Z\"}]}",
                     source, text);
    assert_true(n > 0 && (size_t)n < cap);
    return n;
}

/* scan_frame on an exact-size heap copy of data[0..len), so that ASan
 * catches any read beyond len (the frame is not NUL-terminated). */
static enum scan_result scan_copy(const char *data, size_t len, struct scan_marker *m,
                                  long *source)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    enum scan_result r = scan_frame(copy, len, m, source);
    free(copy);
    return r;
}

static enum scan_result scan_str(const char *frame, struct scan_marker *m, long *source)
{
    return scan_copy(frame, strlen(frame), m, source);
}

static void test_format_marker(void **state)
{
    (void)state;
    struct scan_marker m = { 0x00c0ffee, 500, 17 };
    char buf[64];
    /* Size 0 and sizes below the marker's length give the bare marker. */
    assert_int_equal(scan_format_text(&m, 0, buf, sizeof(buf)), 17);
    assert_string_equal(buf, "b00c0ffee.500.17.");
    assert_int_equal(scan_format_text(&m, 5, buf, sizeof(buf)), 17);
    assert_string_equal(buf, "b00c0ffee.500.17.");
    assert_int_equal(scan_format_text(&m, 17, buf, sizeof(buf)), 17);
    assert_string_equal(buf, "b00c0ffee.500.17.");
    /* Larger sizes pad with 'x' to exactly size. */
    assert_int_equal(scan_format_text(&m, 20, buf, sizeof(buf)), 20);
    assert_string_equal(buf, "b00c0ffee.500.17.xxx");
    /* Extremes of every field. */
    struct scan_marker big = { UINT32_MAX, UINT32_MAX, UINT32_MAX };
    assert_int_equal(scan_format_text(&big, 0, buf, sizeof(buf)), 32);
    assert_string_equal(buf, "bffffffff.4294967295.4294967295.");
    struct scan_marker zero = { 0, 0, 0 };
    assert_int_equal(scan_format_text(&zero, 0, buf, sizeof(buf)), 14);
    assert_string_equal(buf, "b00000000.0.0.");
}

static void test_format_padding_large(void **state)
{
    (void)state;
    struct scan_marker m = { 0xdeadbeef, 1000, 999 };
    size_t size = 4096;
    char *buf = malloc(size + 1);
    assert_non_null(buf);
    assert_int_equal(scan_format_text(&m, size, buf, size + 1), (int)size);
    assert_int_equal(strlen(buf), size);
    assert_memory_equal(buf, "bdeadbeef.1000.999.", 19);
    for (size_t i = 19; i < size; i++)
        if (buf[i] != 'x')
            fail_msg("byte %zu is '%c', not padding", i, buf[i]);
    free(buf);
}

static void test_format_cap(void **state)
{
    (void)state;
    struct scan_marker m = { 0x12345678, 10, 3 };  /* "b12345678.10.3." = 15 */
    char buf[32];
    /* The marker plus its NUL must fit. */
    assert_int_equal(scan_format_text(&m, 0, buf, 16), 15);
    assert_string_equal(buf, "b12345678.10.3.");
    assert_int_equal(scan_format_text(&m, 0, buf, 15), -1);
    assert_int_equal(scan_format_text(&m, 0, buf, 1), -1);
    /* The padded text plus its NUL must fit. */
    assert_int_equal(scan_format_text(&m, 20, buf, 21), 20);
    assert_string_equal(buf, "b12345678.10.3.xxxxx");
    assert_int_equal(scan_format_text(&m, 20, buf, 20), -1);
    assert_int_equal(scan_format_text(&m, 31, buf, sizeof(buf)), 31);
    assert_int_equal(scan_format_text(&m, 32, buf, sizeof(buf)), -1);
}

static void test_round_trip(void **state)
{
    (void)state;
    const struct scan_marker cases[] = {
        { 0x00c0ffee, 500, 17 },
        { 0, 0, 0 },
        { 0xabcdef01, 1, 0 },
        { UINT32_MAX, UINT32_MAX, UINT32_MAX - 1 },
    };
    const size_t sizes[] = { 0, 10, 32, 100, 1000 };
    char text[1100];
    char frame[1500];
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
            int tl = scan_format_text(&cases[c], sizes[z], text, sizeof(text));
            assert_true(tl > 0);
            assert_true((size_t)tl >= sizes[z]);
            int fl = make_frame(frame, sizeof(frame), 3, text);
            struct scan_marker got = { 1, 1, 1 };
            long source = 0;
            assert_int_equal(scan_copy(frame, (size_t)fl, &got, &source), SCAN_OK);
            assert_int_equal(source, 3);
            assert_int_equal(got.token, cases[c].token);
            assert_int_equal(got.round, cases[c].round);
            assert_int_equal(got.index, cases[c].index);
        }
    }
}

/* scan_marker_parse: the marker at the start of a bare payload (the NATS
 * side's), whatever follows it; text that does not start with one is
 * refused, read on an exact-size copy at every truncation. */
static void test_marker_parse(void **state)
{
    (void)state;
    const struct scan_marker m = { 0x0badf00d, 256000, 255999 };
    char text[200];
    int tl = scan_format_text(&m, 188, text, sizeof(text));
    assert_int_equal(tl, 188);
    for (size_t len = 0; len <= (size_t)tl; len++) {
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, text, len);
        struct scan_marker got = { 0, 0, 0 };
        int rc = scan_marker_parse(copy, len, &got);
        free(copy);
        /* "b0badf00d.256000.255999." is 24 bytes: complete from there on */
        if (len < 24) {
            assert_int_equal(rc, -1);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(got.token, m.token);
            assert_int_equal(got.round, m.round);
            assert_int_equal(got.index, m.index);
        }
    }
    struct scan_marker got;
    assert_int_equal(scan_marker_parse("hello world", 11, &got), -1);
    assert_int_equal(scan_marker_parse("b0badf00g.1.2.", 14, &got), -1);
    assert_int_equal(scan_marker_parse("b0badf00d.1.x.", 14, &got), -1);
    assert_int_equal(scan_marker_parse("b0badf00d.4294967296.1.", 23, &got), -1);
}

static void test_not_message(void **state)
{
    (void)state;
    struct scan_marker m;
    long source;
    /* NOTE: scan.h says *source is set to the frame's "source" value, but
     * scan_frame returns before looking for it in frames that are not
     * newMessagesForClient, so an error frame's source stays -1. Neither
     * behaviour is asserted here. */
    assert_int_equal(scan_str("{\"type\":\"error\",\"source\":3,\"message\":\"bad request\"}",
                              &m, &source),
                     SCAN_NOT_MESSAGE);
    assert_int_equal(scan_str("{\"type\":\"error\",\"text\":\"b00c0ffee.500.17.\"}", &m, &source),
                     SCAN_NOT_MESSAGE);
    assert_int_equal(scan_str("{\"type\":\"sync\",\"source\":1,\"payload\":[]}", &m, &source),
                     SCAN_NOT_MESSAGE);
    /* A longer type name that merely starts like ours. */
    assert_int_equal(scan_str("{\"type\":\"newMessagesForClients\",\"source\":1,"
                              "\"payload\":[{\"text\":\"b00c0ffee.500.17.\"}]}",
                              &m, &source),
                     SCAN_NOT_MESSAGE);
    assert_int_equal(scan_str("", &m, &source), SCAN_NOT_MESSAGE);
    assert_int_equal(source, -1);
    assert_int_equal(scan_str("not json at all", &m, &source), SCAN_NOT_MESSAGE);
    assert_int_equal(source, -1);
}

static void test_foreign_texts(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "hello",                           /* someone else's chat */
        "",                                /* empty text */
        "b00c0ffee",                       /* too short */
        "b00c0ffee.",                      /* no round */
        "b00c0ffee.500",                   /* round not terminated */
        "b00c0ffee.500.",                  /* no index */
        "b00c0ffee.500.17",                /* index not terminated */
        "b00c0ffee.500.17x",               /* index not terminated by '.' */
        "b00c0ffee..17.",                  /* empty round */
        "b00c0ffee.500..",                 /* empty index */
        "b00c0ffee.-1.17.",                /* negative round */
        "b00c0ffee.+5.17.",                /* sign */
        "b00c0ffee. 5.17.",                /* space */
        "a00c0ffee.500.17.",               /* wrong lead letter */
        "B00c0ffee.500.17.",               /* wrong lead letter case */
        "b00c0ffe.500.17.",                /* 7 hex digits */
        "b00c0ffee0.500.17.",              /* 9 hex digits */
        "b00c0ffge.500.17.",               /* bad hex digit */
        "b00c0ff-e.500.17.",               /* bad hex digit */
        "bzzzzzzzz.500.17.",               /* bad hex digits */
        "b00c0ffee.4294967296.17.",        /* round overflows uint32 */
        "b00c0ffee.500.4294967296.",       /* index overflows uint32 */
        "b00c0ffee.500.99999999999999999999999.", /* far beyond */
        "b00c0ffee.184467440737095516160.1.",      /* beyond uint64 too */
        " b00c0ffee.500.17.",              /* marker not at the start */
        "hi b00c0ffee.500.17.",            /* marker not at the start */
    };
    char frame[512];
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        int fl = make_frame(frame, sizeof(frame), 2, texts[i]);
        struct scan_marker m;
        long source = 0;
        enum scan_result r = scan_copy(frame, (size_t)fl, &m, &source);
        if (r != SCAN_FOREIGN)
            fail_msg("text \"%s\": result %d, not SCAN_FOREIGN", texts[i], (int)r);
        assert_int_equal(source, 2);
    }
    /* A message frame without a text at all. */
    struct scan_marker m;
    long source = 0;
    assert_int_equal(scan_str("{\"type\":\"newMessagesForClient\",\"source\":4,\"payload\":[]}",
                              &m, &source),
                     SCAN_FOREIGN);
    assert_int_equal(source, 4);
}

static void test_number_limits(void **state)
{
    (void)state;
    char frame[512];
    struct scan_marker m;
    long source;
    /* The largest values still fit. */
    int fl = make_frame(frame, sizeof(frame), 0, "bffffffff.4294967295.4294967295.tail");
    assert_int_equal(scan_copy(frame, (size_t)fl, &m, &source), SCAN_OK);
    assert_int_equal(source, 0);
    assert_int_equal(m.token, UINT32_MAX);
    assert_int_equal(m.round, UINT32_MAX);
    assert_int_equal(m.index, UINT32_MAX);
    /* Leading zeros are only digits. */
    fl = make_frame(frame, sizeof(frame), 12, "b0000000a.0007.0000000000009.");
    assert_int_equal(scan_copy(frame, (size_t)fl, &m, &source), SCAN_OK);
    assert_int_equal(source, 12);
    assert_int_equal(m.token, 10);
    assert_int_equal(m.round, 7);
    assert_int_equal(m.index, 9);
}

static void test_key_order(void **state)
{
    (void)state;
    struct scan_marker m;
    long source;
    /* Source last, text before everything else in the message. */
    const char *f1 = "{\"payload\":[{\"text\":\"b0badcafe.8.5.xxxx\",\"nodeId\":2,\"id\":1,"
                     "\"sender\":\"bench-2\"}],\"type\":\"newMessagesForClient\",\"source\":21}";
    assert_int_equal(scan_str(f1, &m, &source), SCAN_OK);
    assert_int_equal(source, 21);
    assert_int_equal(m.token, 0x0badcafe);
    assert_int_equal(m.round, 8);
    assert_int_equal(m.index, 5);
    /* Source first, type in the middle. */
    const char *f2 = "{\"source\":1,\"type\":\"newMessagesForClient\",\"payload\":"
                     "[{\"sender\":\"bench-1\",\"text\":\"b00000001.2.1.\"}]}";
    assert_int_equal(scan_str(f2, &m, &source), SCAN_OK);
    assert_int_equal(source, 1);
    assert_int_equal(m.token, 1);
    assert_int_equal(m.round, 2);
    assert_int_equal(m.index, 1);
}

/* A node's frame is walked by its layout; a frame with the node's head but
 * another layout is searched, with the same result; every truncation of a
 * frame is read within its bytes (an exact-size copy, under ASan). */
static void test_node_layout_and_others(void **state)
{
    (void)state;
    struct scan_marker m;
    long source;
    char frame[400];
    int n = make_frame(frame, sizeof(frame), 4, "b00000abc.3.9.xx");
    assert_int_equal(scan_copy(frame, (size_t)n, &m, &source), SCAN_OK);
    assert_true(m.token == 0xabc && m.round == 3 && m.index == 9 && source == 4);
    const char *others[] = {
        /* the messageId not all digits, nodeId and id swapped, a field more */
        "{\"type\":\"newMessagesForClient\",\"source\":4,\"payload\":[{\"nodeId\":3,\"id\":7,"
        "\"messageId\":\"3-7\",\"text\":\"b00000abc.3.9.xx\"}]}",
        "{\"type\":\"newMessagesForClient\",\"source\":4,\"payload\":[{\"id\":7,\"nodeId\":3,"
        "\"messageId\":\"37\",\"text\":\"b00000abc.3.9.xx\"}]}",
        "{\"type\":\"newMessagesForClient\",\"source\":4,\"payload\":[{\"nodeId\":3,\"id\":7,"
        "\"messageId\":\"37\",\"sender\":\"s\",\"text\":\"b00000abc.3.9.xx\"}]}",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        m = (struct scan_marker){ 0, 0, 0 };
        assert_int_equal(scan_copy(others[i], strlen(others[i]), &m, &source), SCAN_OK);
        assert_true(m.token == 0xabc && m.round == 3 && m.index == 9 && source == 4);
    }
    for (int len = 0; len < n; len++) {
        enum scan_result r = scan_copy(frame, (size_t)len, &m, &source);
        if (r == SCAN_OK) /* cut after the marker: it is whole */
            assert_true(m.token == 0xabc && m.round == 3 && m.index == 9);
    }
}

static void test_missing_source(void **state)
{
    (void)state;
    struct scan_marker m;
    long source = 99;
    const char *f = "{\"type\":\"newMessagesForClient\",\"payload\":"
                    "[{\"text\":\"b00c0ffee.500.17.\"}]}";
    assert_int_equal(scan_str(f, &m, &source), SCAN_OK);
    assert_int_equal(source, -1);
    assert_int_equal(m.index, 17);
    /* A source that is not a number counts as none. */
    source = 99;
    const char *g = "{\"type\":\"newMessagesForClient\",\"source\":null,\"payload\":"
                    "[{\"text\":\"b00c0ffee.500.17.\"}]}";
    assert_int_equal(scan_str(g, &m, &source), SCAN_OK);
    assert_int_equal(source, -1);
    source = 99;
    const char *h = "{\"type\":\"newMessagesForClient\",\"source\":-3,\"payload\":"
                    "[{\"text\":\"hello\"}]}";
    assert_int_equal(scan_str(h, &m, &source), SCAN_FOREIGN);
    assert_int_equal(source, -1);
}

/* Every prefix of a real frame: never reads past len, and only reports a
 * marker (or a source) once all of it is inside the prefix. */
static void test_truncated(void **state)
{
    (void)state;
    struct scan_marker want = { 0x00c0ffee, 500, 17 };
    char text[64];
    assert_true(scan_format_text(&want, 40, text, sizeof(text)) == 40);
    char frame[512];
    int fl = make_frame(frame, sizeof(frame), 3, text);
    const char *type_key = "\"type\":\"newMessagesForClient\"";
    size_t type_end = (size_t)(strstr(frame, type_key) - frame) + strlen(type_key);
    size_t source_end = (size_t)(strstr(frame, "\"source\":3") - frame) + strlen("\"source\":3");
    size_t marker_end = (size_t)(strstr(frame, "b00c0ffee.500.17.") - frame) +
                        strlen("b00c0ffee.500.17.");
    for (size_t len = 0; len <= (size_t)fl; len++) {
        struct scan_marker m = { 0, 0, 0 };
        long source = 42;
        enum scan_result r = scan_copy(frame, len, &m, &source);
        enum scan_result expect = len < type_end     ? SCAN_NOT_MESSAGE
                                  : len < marker_end ? SCAN_FOREIGN
                                                     : SCAN_OK;
        if (r != expect)
            fail_msg("prefix of %zu bytes: result %d, expected %d", len, (int)r, (int)expect);
        if (r != SCAN_NOT_MESSAGE && source != (len >= source_end ? 3 : -1))
            fail_msg("prefix of %zu bytes: source %ld", len, source);
        if (r == SCAN_OK) {
            assert_int_equal(m.token, want.token);
            assert_int_equal(m.round, want.round);
            assert_int_equal(m.index, want.index);
        }
    }
    /* The same with the marker's last byte at the very end of the data. */
    const char *bare = "{\"type\":\"newMessagesForClient\",\"source\":3,\"payload\":"
                       "[{\"text\":\"b00c0ffee.500.17.";
    size_t bl = strlen(bare);
    for (size_t len = type_end; len <= bl; len++) {
        struct scan_marker m;
        long source;
        enum scan_result r = scan_copy(bare, len, &m, &source);
        assert_int_equal(r, len == bl ? SCAN_OK : SCAN_FOREIGN);
    }
}

/* The load mode's marker: round trip through a frame, the 64-bit time, and
 * texts that are not one. */
static void test_load_marker(void **state)
{
    (void)state;
    struct scan_load_marker m = { 0xdeadbeef, 17, 4242, 18446744073709551615ull }, got;
    char text[300], frame[600];
    int n = scan_format_load_text(&m, 100, text, sizeof(text));
    assert_int_equal(n, 100);
    assert_memory_equal(text, "Ldeadbeef.17.4242.18446744073709551615.x", 40);
    make_frame(frame, sizeof(frame), 2, text);
    const char *t;
    size_t tl;
    long source;
    assert_int_equal(scan_frame_text(frame, strlen(frame), &t, &tl, &source), SCAN_OK);
    assert_int_equal(source, 2);
    assert_int_equal(scan_load_marker_parse(t, tl, &got), 0);
    assert_int_equal(got.token, m.token);
    assert_int_equal(got.sender, 17);
    assert_int_equal(got.seq, 4242);
    assert_true(got.sent_ns == m.sent_ns);
    /* the size is a minimum: a short one gets the whole marker */
    assert_int_equal(scan_format_load_text(&m, 5, text, sizeof(text)), 39);
    assert_int_equal(scan_format_load_text(&m, 5, text, 20), -1);
    /* not load markers: the rounds' marker, a time past 64 bits, cut short */
    assert_int_equal(scan_load_marker_parse("b0000002a.10.3.", 15, &got), -1);
    const char *big = "Ldeadbeef.1.1.18446744073709551616.";
    assert_int_equal(scan_load_marker_parse(big, strlen(big), &got), -1);
    const char *ok = "Ldeadbeef.1.2.3.";
    for (size_t len = 0; len < strlen(ok); len++)
        assert_int_equal(scan_load_marker_parse(ok, len, &got), -1);
    assert_int_equal(scan_load_marker_parse(ok, strlen(ok), &got), 0);
    assert_true(got.sent_ns == 3);
    /* not a message frame */
    const char *err = "{\"type\":\"error\",\"source\":1,\"error\":\"x\"}";
    assert_int_equal(scan_frame_text(err, strlen(err), &t, &tl, &source), SCAN_NOT_MESSAGE);
    assert_int_equal(source, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_marker),
        cmocka_unit_test(test_format_padding_large),
        cmocka_unit_test(test_format_cap),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_marker_parse),
        cmocka_unit_test(test_not_message),
        cmocka_unit_test(test_foreign_texts),
        cmocka_unit_test(test_number_limits),
        cmocka_unit_test(test_key_order),
        cmocka_unit_test(test_node_layout_and_others),
        cmocka_unit_test(test_missing_source),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_load_marker),
    };
    return cmocka_run_group_tests_name("scan", tests, NULL, NULL);
}
