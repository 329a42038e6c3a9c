/* Unit tests for node/message.c: parsing the client's JSON frames
 * (newMessageFromClient, clientSyncRequest) with errors that name the bad
 * field, and the server frames (newMessagesForClient, error,
 * clientSyncReply): complete WebSocket text frames whose JSON parses with
 * jansson, with messageId, dateTime and JSON escaping checked; the sizes
 * computed without building (escaped text, object, client frame) against
 * what is built, and the client frame limit where requests are parsed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/msgbuf.h"
#include "common/util.h"
#include "common/ws.h"
#include "node/message.h"

/* --- helpers ---------------------------------------------------------------- */

/* Parses s (a heap copy of exactly strlen(s) bytes, so ASan sees any read
 * past the end) and returns the kind; err receives the error text. */
static enum message_kind parse(const char *s, struct client_request *req, char *err,
                               size_t errlen)
{
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    err[0] = '\0';
    enum message_kind k = message_parse_request(copy, n, req, err, errlen);
    /* the strings in req->msg point into req->root, not into the input */
    free(copy);
    return k;
}

/* Expects MESSAGE_ERROR with an error text containing want. */
static void expect_error(const char *json, const char *want)
{
    struct client_request req;
    char err[256];
    enum message_kind k = parse(json, &req, err, sizeof(err));
    if (k != MESSAGE_ERROR || strstr(err, want) == NULL)
        fail_msg("%s: kind %d, err \"%s\", wanted an error with \"%s\"", json, (int)k, err,
                 want);
    message_request_free(&req);
}

/* Checks b is one complete unmasked FIN text frame and returns its JSON
 * parsed (flags for json_loadb). Also runs it through a client-side
 * ws_decoder for a second opinion. */
static int frame_cb(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    char **out = ud;
    assert_int_equal(opcode, WS_OP_TEXT);
    *out = malloc(len + 1);
    memcpy(*out, data, len);
    (*out)[len] = '\0';
    return 0;
}

static json_t *frame_json(const msgbuf *b, size_t flags)
{
    const uint8_t *p = (const uint8_t *)b->data;
    assert_true(b->len >= 2);
    assert_int_equal(p[0], 0x81);          /* FIN + text */
    assert_int_equal(p[1] & 0x80, 0);      /* not masked */
    size_t h, len = p[1] & 0x7f;
    if (len < 126) {
        h = 2;
    } else if (len == 126) {
        len = (size_t)p[2] << 8 | p[3];
        assert_true(len >= 126);
        h = 4;
    } else {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        assert_true(len >= 65536);
        h = 10;
    }
    assert_int_equal(h + len, b->len);
    assert_true(b->len <= b->cap);

    ws_decoder *d = ws_decoder_new(false, 1 << 24);
    char *text = NULL;
    assert_int_equal(ws_decoder_feed(d, p, b->len, frame_cb, &text), 0);
    ws_decoder_free(d);
    assert_non_null(text);
    assert_memory_equal(text, p + h, len);
    free(text);

    json_error_t jerr;
    json_t *j = json_loadb((const char *)p + h, len, flags, &jerr);
    if (j == NULL)
        fail_msg("frame JSON does not parse: %s: %.*s", jerr.text, (int)len,
                 (const char *)p + h);
    return j;
}

static struct chat_message make_msg(uint32_t origin, uint64_t seq, const char *sender,
                                    const char *text)
{
    struct chat_message m;
    memset(&m, 0, sizeof(m));
    m.origin = origin;
    m.seq = seq;
    m.time_ms = 1795000000123ull;
    m.chat_id = 77;
    m.sender = sender;
    m.sender_len = (uint32_t)strlen(sender);
    m.text = text;
    m.text_len = (uint32_t)strlen(text);
    return m;
}

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* Checks one message object of a payload against m. */
static void check_message_object(json_t *o, const struct chat_message *m)
{
    assert_true(json_is_object(o));
    assert_true(json_is_integer(json_object_get(o, "nodeId")));
    assert_int_equal(json_integer_value(json_object_get(o, "nodeId")), m->origin);
    assert_true(json_is_integer(json_object_get(o, "id")));
    assert_int_equal(json_integer_value(json_object_get(o, "id")), m->seq);

    json_t *mid = json_object_get(o, "messageId");
    assert_true(json_is_string(mid));
    assert_true(all_digits(json_string_value(mid)));
    char want[64];
    snprintf(want, sizeof(want), "%u%012llu", (unsigned)m->origin, (unsigned long long)m->seq);
    assert_string_equal(json_string_value(mid), want);

    json_t *text = json_object_get(o, "text");
    assert_true(json_is_string(text));
    assert_int_equal(json_string_length(text), m->text_len);
    assert_memory_equal(json_string_value(text), m->text, m->text_len);
    json_t *sender = json_object_get(o, "sender");
    assert_true(json_is_string(sender));
    assert_int_equal(json_string_length(sender), m->sender_len);
    assert_memory_equal(json_string_value(sender), m->sender, m->sender_len);

    assert_true(json_is_integer(json_object_get(o, "chatId")));
    assert_true(json_integer_value(json_object_get(o, "chatId")) == m->chat_id);

    json_t *dt = json_object_get(o, "dateTime");
    assert_true(json_is_string(dt));
    const char *s = json_string_value(dt);
    /* YYYY-MM-DDTHH:MM:SS.mmmZ */
    assert_int_equal(strlen(s), 24);
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (int i = 0; i < 24; i++) {
        if (shape[i] == 'd')
            assert_true(isdigit((unsigned char)s[i]));
        else
            assert_int_equal(s[i], shape[i]);
    }
    char when[UTIL_ISO8601_LEN + 1];
    util_format_iso8601(m->time_ms, when);
    assert_string_equal(s, when);
    assert_int_equal(json_object_size(o), 7);
}

/* --- parsing ----------------------------------------------------------------- */

static void test_parse_new_message(void **state)
{
    (void)state;
    struct client_request req;
    char err[256];
    enum message_kind k = parse(
        "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"hello \\\"world\\\" \\u00e9\","
        "\"sender\":\"al\\u0069ce\",\"chatId\":-42}}",
        &req, err, sizeof(err));
    assert_int_equal(k, MESSAGE_NEW);
    assert_int_equal(req.msg.text_len, 16);
    assert_memory_equal(req.msg.text, "hello \"world\" \xc3\xa9", 16);
    assert_int_equal(req.msg.sender_len, 5);
    assert_memory_equal(req.msg.sender, "alice", 5);
    assert_true(req.msg.chat_id == -42);
    message_request_free(&req);
    assert_null(req.root);

    /* extra fields are fine, key order does not matter, big chat ids */
    k = parse("{\"payload\":{\"chatId\":9223372036854775807,\"sender\":\"\",\"text\":\"\","
              "\"extra\":[1]},\"type\":\"newMessageFromClient\",\"id\":5}",
              &req, err, sizeof(err));
    assert_int_equal(k, MESSAGE_NEW);
    assert_int_equal(req.msg.text_len, 0);
    assert_int_equal(req.msg.sender_len, 0);
    assert_non_null(req.msg.text);   /* empty, never NULL (message.h) */
    assert_non_null(req.msg.sender);
    assert_true(req.msg.chat_id == INT64_MAX);
    message_request_free(&req);

    /* the same on the fast path (issue 11's message); its strings pointed
     * into the input, freed by now, so only the pointers are checked */
    k = parse("{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"\",\"sender\":\"\","
              "\"chatId\":11}}",
              &req, err, sizeof(err));
    assert_int_equal(k, MESSAGE_NEW);
    assert_null(req.root);
    assert_int_equal(req.msg.text_len, 0);
    assert_int_equal(req.msg.sender_len, 0);
    assert_non_null(req.msg.text);
    assert_non_null(req.msg.sender);
    assert_true(req.msg.chat_id == 11);
    message_request_free(&req);

    /* a sender of exactly 256 bytes */
    char buf[600];
    char sender[257];
    memset(sender, 'x', 256);
    sender[256] = '\0';
    snprintf(buf, sizeof(buf), "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"t\","
             "\"sender\":\"%s\",\"chatId\":1}}", sender);
    assert_int_equal(parse(buf, &req, err, sizeof(err)), MESSAGE_NEW);
    assert_int_equal(req.msg.sender_len, 256);
    message_request_free(&req);
}

static void test_parse_ignored(void **state)
{
    (void)state;
    struct client_request req;
    char err[64];
    /* the contract: a frame whose first byte is not '{' is ignored */
    const char *ignored[] = {
        "", "Client connected", " {\"type\":\"newMessageFromClient\"}", "\n{}",
        "[1,2]", "\"str\"", "42", "null", "}",
    };
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        assert_int_equal(parse(ignored[i], &req, err, sizeof(err)), MESSAGE_IGNORE);
        assert_null(req.root);
        message_request_free(&req);
    }
    /* len 0 with a data pointer that must not be read */
    assert_int_equal(message_parse_request("{", 0, &req, err, sizeof(err)), MESSAGE_IGNORE);
    message_request_free(&req);
}

static void test_parse_errors(void **state)
{
    (void)state;
    /* malformed JSON */
    expect_error("{", "malformed JSON");
    expect_error("{\"type\":", "malformed JSON");
    expect_error("{\"type\":\"newMessageFromClient\",}", "malformed JSON");
    expect_error("{} trailing", "malformed JSON");
    expect_error("{\"a\":\"\xff\"}", "malformed JSON");         /* not UTF-8 */
    expect_error("{\"a\":\"\\ud800\"}", "malformed JSON");      /* lone surrogate */

    /* type */
    expect_error("{}", "\"type\" is missing");
    expect_error("{\"payload\":{}}", "\"type\" is missing");
    expect_error("{\"type\":5}", "\"type\" must be a string");
    expect_error("{\"type\":null}", "\"type\" must be a string");
    expect_error("{\"type\":\"hello\"}", "unknown type \"hello\"");
    expect_error("{\"type\":\"\"}", "unknown type");
    expect_error("{\"type\":\"NewMessageFromClient\"}", "unknown type");

    /* payload */
    expect_error("{\"type\":\"newMessageFromClient\"}", "\"payload\"");
    expect_error("{\"type\":\"newMessageFromClient\",\"payload\":[]}", "\"payload\"");
    expect_error("{\"type\":\"newMessageFromClient\",\"payload\":\"x\"}", "\"payload\"");
    expect_error("{\"type\":\"newMessageFromClient\",\"payload\":null}", "\"payload\"");

    /* fields: missing, then ill-typed */
    const char *pre = "{\"type\":\"newMessageFromClient\",\"payload\":";
    char buf[512];
#define FIELDS(body, want)                                  \
    do {                                                    \
        snprintf(buf, sizeof(buf), "%s%s}", pre, body);     \
        expect_error(buf, want);                            \
    } while (0)
    FIELDS("{\"sender\":\"a\",\"chatId\":1}", "\"text\" is missing");
    FIELDS("{\"text\":\"a\",\"chatId\":1}", "\"sender\" is missing");
    FIELDS("{\"text\":\"a\",\"sender\":\"b\"}", "\"chatId\" is missing");
    FIELDS("{\"text\":1,\"sender\":\"a\",\"chatId\":1}", "\"text\" must be a string");
    FIELDS("{\"text\":null,\"sender\":\"a\",\"chatId\":1}", "\"text\" must be a string");
    FIELDS("{\"text\":[\"a\"],\"sender\":\"a\",\"chatId\":1}", "\"text\" must be a string");
    FIELDS("{\"text\":\"a\",\"sender\":false,\"chatId\":1}", "\"sender\" must be a string");
    FIELDS("{\"text\":\"a\",\"sender\":{},\"chatId\":1}", "\"sender\" must be a string");
    FIELDS("{\"text\":\"a\",\"sender\":\"b\",\"chatId\":\"1\"}", "\"chatId\" must be an integer");
    FIELDS("{\"text\":\"a\",\"sender\":\"b\",\"chatId\":1.5}", "\"chatId\" must be an integer");
    FIELDS("{\"text\":\"a\",\"sender\":\"b\",\"chatId\":null}", "\"chatId\" must be an integer");
    FIELDS("{\"text\":\"a\",\"sender\":\"b\",\"chatId\":true}", "\"chatId\" must be an integer");
#undef FIELDS

    /* a sender over 256 bytes */
    char sender[258];
    memset(sender, 'y', 257);
    sender[257] = '\0';
    snprintf(buf, sizeof(buf), "%s{\"text\":\"t\",\"sender\":\"%s\",\"chatId\":1}}", pre, sender);
    expect_error(buf, "\"sender\" is longer than 256");

    /* a root that is not an object cannot happen (first byte '{'), but a
     * very long unknown type is cut in the error text */
    char longtype[400];
    memset(longtype, 'q', 300);
    longtype[300] = '\0';
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\"}", longtype);
    struct client_request req;
    char err[256];
    assert_int_equal(parse(buf, &req, err, sizeof(err)), MESSAGE_ERROR);
    assert_non_null(strstr(err, "unknown type"));
    assert_true(strlen(err) < 200);
    message_request_free(&req);

    /* a small err buffer is not overrun */
    char *small = malloc(10);
    assert_int_equal(message_parse_request("{}", 2, &req, small, 10), MESSAGE_ERROR);
    assert_int_equal(strlen(small), 9);
    free(small);
    message_request_free(&req);
}

static void test_parse_sync(void **state)
{
    (void)state;
    struct client_request req;
    char err[256];
    assert_int_equal(parse("{\"type\":\"clientSyncRequest\"}", &req, err, sizeof(err)),
                     MESSAGE_SYNC);
    assert_int_equal(req.nmarks, 0);
    message_request_free(&req);
    assert_int_equal(parse("{\"type\":\"clientSyncRequest\",\"payload\":[]}", &req, err,
                           sizeof(err)), MESSAGE_SYNC);
    assert_int_equal(req.nmarks, 0);
    message_request_free(&req);
    assert_int_equal(parse("{\"type\":\"clientSyncRequest\",\"payload\":{}}", &req, err,
                           sizeof(err)), MESSAGE_SYNC);
    assert_int_equal(req.nmarks, 0);
    message_request_free(&req);

    assert_int_equal(parse("{\"type\":\"clientSyncRequest\",\"payload\":{\"1\":5,"
                           "\"2147483647\":999999999999,\"3\":0}}",
                           &req, err, sizeof(err)), MESSAGE_SYNC);
    assert_int_equal(req.nmarks, 3);
    /* any order; find each */
    int seen = 0;
    for (size_t i = 0; i < req.nmarks; i++) {
        if (req.marks[i].origin == 1 && req.marks[i].seq == 5)
            seen |= 1;
        if (req.marks[i].origin == 2147483647u && req.marks[i].seq == 999999999999ull)
            seen |= 2;
        if (req.marks[i].origin == 3 && req.marks[i].seq == 0)
            seen |= 4;
    }
    assert_int_equal(seen, 7);
    message_request_free(&req);

    const char *pre = "{\"type\":\"clientSyncRequest\",\"payload\":";
    char buf[256];
#define SYNC_ERR(body, want)                                \
    do {                                                    \
        snprintf(buf, sizeof(buf), "%s%s}", pre, body);     \
        expect_error(buf, want);                            \
    } while (0)
    SYNC_ERR("[1]", "payload must be an object");
    SYNC_ERR("5", "payload must be an object");
    SYNC_ERR("\"x\"", "payload must be an object");
    SYNC_ERR("{\"0\":1}", "origin \"0\"");
    SYNC_ERR("{\"abc\":1}", "origin \"abc\"");
    SYNC_ERR("{\"2147483648\":1}", "origin \"2147483648\"");
    SYNC_ERR("{\"-1\":1}", "origin \"-1\"");
    /* Only the form ids are written in: strtol's " 7", "+7" and "07" would
     * let one request name origin 7 three times (found by fuzzing). */
    SYNC_ERR("{\"07\":1}", "origin \"07\"");
    SYNC_ERR("{\" 7\":1}", "origin \" 7\"");
    SYNC_ERR("{\"+7\":1}", "origin \"+7\"");
    SYNC_ERR("{\"7 \":1}", "origin \"7 \"");
    SYNC_ERR("{\"00000000001\":1}", "origin \"00000000001\"");
    SYNC_ERR("{\"99999999999\":1}", "origin \"99999999999\"");
    SYNC_ERR("{\"1\":-1}", "mark for origin 1");
    SYNC_ERR("{\"1\":1000000000000}", "mark for origin 1");
    SYNC_ERR("{\"1\":\"5\"}", "mark for origin 1");
    SYNC_ERR("{\"1\":1.5}", "mark for origin 1");
    SYNC_ERR("{\"1\":null}", "mark for origin 1");
    SYNC_ERR("{\"1\":2,\"7\":true}", "mark for origin 7");
#undef SYNC_ERR
}

/* --- output frames ------------------------------------------------------------ */

static void test_message_id(void **state)
{
    (void)state;
    char id[MESSAGE_ID_MAX];
    assert_int_equal(message_id_format(1, 1, id), 13);
    assert_string_equal(id, "1000000000001");
    assert_int_equal(message_id_format(123, 456, id), 15);
    assert_string_equal(id, "123000000000456");
    assert_int_equal(message_id_format(7, 999999999999ull, id), 13);
    assert_string_equal(id, "7999999999999");
    assert_int_equal(message_id_format(UINT32_MAX, 999999999999ull, id), 22);
    assert_string_equal(id, "4294967295999999999999");
}

static void test_client_frame(void **state)
{
    (void)state;
    struct chat_message m = make_msg(3, 17, "alice", "hello there");
    msgbuf *b = message_client_frame(9, &m);
    assert_int_equal(b->refs, 1);
    json_t *j = frame_json(b, 0);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "newMessagesForClient");
    assert_int_equal(json_integer_value(json_object_get(j, "source")), 9);
    json_t *payload = json_object_get(j, "payload");
    assert_true(json_is_array(payload));
    assert_int_equal(json_array_size(payload), 1);
    check_message_object(json_array_get(payload, 0), &m);
    assert_string_equal(json_string_value(json_object_get(json_array_get(payload, 0),
                                                          "messageId")), "3000000000017");
    assert_string_equal(json_string_value(json_object_get(json_array_get(payload, 0),
                                                          "dateTime")),
                        "2026-11-18T11:06:40.123Z");
    json_decref(j);
    msgbuf_unref(b);

    /* extremes: the biggest ids and a negative chat id, epoch 0 */
    m = make_msg(INT32_MAX, MESSAGE_SEQ_LIMIT - 1, "", "");
    m.chat_id = INT64_MIN;
    m.time_ms = 0;
    b = message_client_frame(UINT32_MAX, &m);
    j = frame_json(b, 0);
    assert_true(json_integer_value(json_object_get(j, "source")) == (json_int_t)UINT32_MAX);
    check_message_object(json_array_get(json_object_get(j, "payload"), 0), &m);
    json_decref(j);
    msgbuf_unref(b);
}

static void test_frame_lengths(void **state)
{
    (void)state;
    /* JSON sizes that need the 7-bit, 16-bit and 64-bit header forms */
    const size_t lens[] = { 0, 1, 100, 200, 65400, 70000, 300000 };
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        char *text = malloc(lens[k] + 1);
        for (size_t i = 0; i < lens[k]; i++)
            text[i] = (char)('a' + i % 26);
        text[lens[k]] = '\0';
        struct chat_message m = make_msg(1, k + 1, "s", text);
        msgbuf *b = message_client_frame(1, &m);
        json_t *j = frame_json(b, 0);
        check_message_object(json_array_get(json_object_get(j, "payload"), 0), &m);
        json_decref(j);
        msgbuf_unref(b);
        free(text);
    }
}

static void test_escaping_round_trip(void **state)
{
    (void)state;
    /* every control character, quotes, backslashes, DEL, slashes,
     * non-ASCII of every length, U+2028/U+2029, and a NUL */
    char text[256];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        text[n++] = (char)c;
    const char *rest = "\"\\\x7f/ \\\" \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 "
                       "\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xaa end\"";
    memcpy(text + n, rest, strlen(rest));
    n += strlen(rest);
    text[n++] = '\0'; /* a NUL inside the text (valid UTF-8) */
    memcpy(text + n, "after", 5);
    n += 5;

    struct chat_message m = make_msg(2, 5, "o'\"\\ \xe4\xb8\xad\t\n", "");
    m.text = text;
    m.text_len = (uint32_t)n;
    msgbuf *b = message_client_frame(2, &m);
    /* no raw control character and no raw U+2028/2029 in the JSON */
    const uint8_t *p = (const uint8_t *)b->data;
    size_t h = p[1] < 126 ? 2 : 4;
    for (size_t i = h; i < b->len; i++) {
        assert_true(p[i] >= 0x20);
        if (i + 2 < b->len && p[i] == 0xe2 && p[i + 1] == 0x80)
            assert_true(p[i + 2] != 0xa8 && p[i + 2] != 0xa9);
    }
    json_t *j = frame_json(b, JSON_ALLOW_NUL);
    check_message_object(json_array_get(json_object_get(j, "payload"), 0), &m);
    json_decref(j);
    msgbuf_unref(b);
}

static void test_json_escape(void **state)
{
    (void)state;
    struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        { "", 0, "\"\"" },
        { "abc", 3, "\"abc\"" },
        { "a\"b\\c", 5, "\"a\\\"b\\\\c\"" },
        { "\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"" },
        { "\x01\x1f", 2, "\"\\u0001\\u001f\"" },
        { "\0", 1, "\"\\u0000\"" },
        { "\x7f", 1, "\"\x7f\"" },
        { "\xc3\xa9", 2, "\"\xc3\xa9\"" },
        { "x\xe2\x80\xa8y\xe2\x80\xa9", 8, "\"x\\u2028y\\u2029\"" },
        { "\xe2\x80\xaa", 3, "\"\xe2\x80\xaa\"" },
        /* a cut-off E2 80 at the end: copied, never read past */
        { "ab\xe2\x80", 4, "\"ab\xe2\x80\"" },
        { "\xe2", 1, "\"\xe2\"" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len;
        char *in = malloc(len ? len : 1);      /* exact size: ASan checks reads */
        memcpy(in, cases[i].in, len);
        char *out = malloc(6 * len + 2);      /* the documented room, exactly */
        size_t w = message_json_escape(out, in, len);
        assert_int_equal(w, strlen(cases[i].out));
        assert_memory_equal(out, cases[i].out, w);
        free(in);
        free(out);
    }
    /* the worst case uses all of the documented room */
    char in[50];
    memset(in, 0x01, sizeof(in));
    char *out = malloc(6 * sizeof(in) + 2);
    assert_int_equal(message_json_escape(out, in, sizeof(in)), 6 * sizeof(in) + 2);
    free(out);
}

/* The escaper skips plain 8-byte words at once: a byte that needs an
 * escape must be found in every position of a word and after it, and the
 * words before it copied as they are. */
static void test_json_escape_at_every_offset(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } specials[] = {
        { "\"", "\\\"" },  { "\\", "\\\\" }, { "\n", "\\n" },
        { "\x01", "\\u0001" }, { "\x1f", "\\u001f" }, { "\xe2\x80\xa8", "\\u2028" },
        { "\xc3\xa9", "\xc3\xa9" }, { "\x7f", "\x7f" }, { " ", " " }, { "~", "~" },
    };
    enum { LEN = 43 }; /* five words and an overlapping tail */
    for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
        size_t sl = strlen(specials[k].in);
        for (size_t pos = 0; pos + sl <= LEN; pos++) {
            char *in = malloc(LEN); /* exact size: ASan checks reads */
            char want[6 * LEN + 2], *w = want;
            memset(in, 'a', LEN);
            memcpy(in + pos, specials[k].in, sl);
            *w++ = '"';
            memset(w, 'a', pos);
            w += pos;
            memcpy(w, specials[k].out, strlen(specials[k].out));
            w += strlen(specials[k].out);
            memset(w, 'a', LEN - pos - sl);
            w += LEN - pos - sl;
            *w++ = '"';
            char *out = malloc(6 * LEN + 2);
            size_t n = message_json_escape(out, in, LEN);
            assert_int_equal(n, (size_t)(w - want));
            assert_memory_equal(out, want, n);
            assert_int_equal(message_json_escaped_len(in, LEN), n);
            free(in);
            free(out);
        }
    }
}

static void test_error_frame(void **state)
{
    (void)state;
    msgbuf *b = message_error_frame(4, "payload field \"text\" is missing");
    const char *want = "{\"type\":\"error\",\"source\":4,"
                       "\"error\":\"payload field \\\"text\\\" is missing\"}";
    assert_int_equal(b->len, 2 + strlen(want));
    assert_int_equal((uint8_t)b->data[0], 0x81);
    assert_int_equal((uint8_t)b->data[1], strlen(want));
    assert_memory_equal(b->data + 2, want, strlen(want));
    json_t *j = frame_json(b, 0);
    assert_int_equal(json_object_size(j), 3);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "payload field \"text\" is missing");
    json_decref(j);
    msgbuf_unref(b);

    /* control characters and non-ASCII in the text, and a long one */
    const char *odd = "bad\n\x01 \\ \xc3\xa9";
    b = message_error_frame(UINT32_MAX, odd);
    j = frame_json(b, 0);
    assert_string_equal(json_string_value(json_object_get(j, "error")), odd);
    assert_true(json_integer_value(json_object_get(j, "source")) == (json_int_t)UINT32_MAX);
    json_decref(j);
    msgbuf_unref(b);

    char *big = malloc(1001);
    memset(big, '"', 1000);
    big[1000] = '\0';
    b = message_error_frame(1, big);
    j = frame_json(b, 0);
    assert_string_equal(json_string_value(json_object_get(j, "error")), big);
    json_decref(j);
    msgbuf_unref(b);
    free(big);

    b = message_error_frame(1, "");
    j = frame_json(b, 0);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "");
    json_decref(j);
    msgbuf_unref(b);
}

static void test_sync_reply_frame(void **state)
{
    (void)state;
    msgbuf *b = message_sync_reply_frame(6, NULL, 0, false);
    json_t *j = frame_json(b, 0);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "clientSyncReply");
    assert_int_equal(json_integer_value(json_object_get(j, "source")), 6);
    assert_int_equal(json_array_size(json_object_get(j, "payload")), 0);
    assert_true(json_is_false(json_object_get(j, "truncated")));
    json_decref(j);
    msgbuf_unref(b);

    struct chat_message ms[3] = {
        make_msg(1, 1, "a", "first \"one\""),
        make_msg(2, 10, "b\\", "second\n"),
        make_msg(1, 2, "\xc3\xa9", "third \xe2\x80\xa8"),
    };
    ms[1].time_ms = 1;
    ms[2].chat_id = -1;
    b = message_sync_reply_frame(6, ms, 3, true);
    j = frame_json(b, 0);
    json_t *payload = json_object_get(j, "payload");
    assert_int_equal(json_array_size(payload), 3);
    for (size_t i = 0; i < 3; i++)
        check_message_object(json_array_get(payload, i), &ms[i]);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    msgbuf_unref(b);
}

static void test_parse_rooms(void **state)
{
    (void)state;
    struct client_request req;
    char err[256];
    assert_int_equal(parse("{\"type\":\"subscribe\",\"payload\":{\"chatIds\":[11,-12,11]}}",
                           &req, err, sizeof(err)), MESSAGE_SUBSCRIBE);
    assert_int_equal(req.nchats, 3);
    assert_true(req.chats[0] == 11 && req.chats[1] == -12 && req.chats[2] == 11);
    assert_false(req.all_chats);
    message_request_free(&req);
    assert_int_equal(parse("{\"type\":\"unsubscribe\",\"source\":\"x\",\"payload\":"
                           "{\"chatIds\":[9223372036854775807],\"extra\":1}}",
                           &req, err, sizeof(err)), MESSAGE_UNSUBSCRIBE);
    assert_int_equal(req.nchats, 1);
    assert_true(req.chats[0] == INT64_MAX);
    message_request_free(&req);
    assert_int_equal(parse("{\"type\":\"subscribe\",\"payload\":{\"all\":true}}", &req, err,
                           sizeof(err)), MESSAGE_SUBSCRIBE);
    assert_true(req.all_chats);
    assert_int_equal(req.nchats, 0);
    message_request_free(&req);

    expect_error("{\"type\":\"subscribe\"}", "subscribe needs a \"payload\" object");
    expect_error("{\"type\":\"unsubscribe\",\"payload\":[11]}", "unsubscribe needs a");
    expect_error("{\"type\":\"subscribe\",\"payload\":{}}", "\"chatIds\" is missing");
    expect_error("{\"type\":\"subscribe\",\"payload\":{\"chatIds\":11}}", "must be an array");
    expect_error("{\"type\":\"subscribe\",\"payload\":{\"chatIds\":[]}}", "names 0 chats");
    expect_error("{\"type\":\"subscribe\",\"payload\":{\"chatIds\":[11,\"12\"]}}",
                 "only integers");
    expect_error("{\"type\":\"subscribe\",\"payload\":{\"chatIds\":[1.5]}}", "only integers");
    expect_error("{\"type\":\"subscribe\",\"payload\":{\"all\":false}}", "not both");
    expect_error("{\"type\":\"subscribe\",\"payload\":{\"all\":true,\"chatIds\":[1]}}",
                 "not both");
    expect_error("{\"type\":\"unsubscribe\",\"payload\":{\"all\":true}}",
                 "\"chatIds\" is missing");
    expect_error("{\"type\":\"join\"}", "subscribe or unsubscribe");

    /* the most ids a request may name, and one more */
    size_t cap = 64 + 3 * (MESSAGE_ROOMS_MAX + 1);
    char *big = malloc(cap);
    assert_non_null(big);
    for (size_t n = MESSAGE_ROOMS_MAX; n <= MESSAGE_ROOMS_MAX + 1; n++) {
        size_t len = (size_t)sprintf(big, "{\"type\":\"subscribe\",\"payload\":{\"chatIds\":[");
        for (size_t i = 0; i < n; i++)
            len += (size_t)sprintf(big + len, "%s%zu", i ? "," : "", i % 10);
        strcpy(big + len, "]}}");
        enum message_kind k = parse(big, &req, err, sizeof(err));
        if (n == MESSAGE_ROOMS_MAX) {
            assert_int_equal(k, MESSAGE_SUBSCRIBE);
            assert_int_equal(req.nchats, n);
        } else {
            assert_int_equal(k, MESSAGE_ERROR);
            assert_non_null(strstr(err, "names 1025 chats; name 1 to 1024"));
        }
        message_request_free(&req);
    }
    free(big);
}

static void test_rooms_reply_frame(void **state)
{
    (void)state;
    const int64_t chats[] = { INT64_MIN, -1, 0, 11, INT64_MAX };
    msgbuf *b = message_rooms_reply_frame(7, "subscribeReply", false, chats, 5);
    json_t *j = frame_json(b, 0);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "subscribeReply");
    assert_int_equal(json_integer_value(json_object_get(j, "source")), 7);
    json_t *p = json_object_get(j, "payload");
    assert_true(json_is_false(json_object_get(p, "all")));
    json_t *ids = json_object_get(p, "chatIds");
    assert_int_equal(json_array_size(ids), 5);
    for (size_t i = 0; i < 5; i++)
        assert_true(json_integer_value(json_array_get(ids, i)) == chats[i]);
    json_decref(j);
    msgbuf_unref(b);

    b = message_rooms_reply_frame(7, "unsubscribeReply", true, NULL, 0);
    j = frame_json(b, 0);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "unsubscribeReply");
    p = json_object_get(j, "payload");
    assert_true(json_is_true(json_object_get(p, "all")));
    assert_int_equal(json_array_size(json_object_get(p, "chatIds")), 0);
    json_decref(j);
    msgbuf_unref(b);
}

static void test_sync_reply_next(void **state)
{
    (void)state;
    struct chat_message m = make_msg(1, 5, "a", "x");
    const struct sync_mark next[] = { { 1, 5 }, { 2147483647, 999999999999ull } };
    msgbuf *b = message_sync_reply_frame_next(3, &m, 1, true, next, 2);
    /* the envelope stays within its stated bound */
    assert_true(b->len <= 10 + MESSAGE_REPLY_ENVELOPE + message_object_len(&m) + 1 +
                              2 * MESSAGE_NEXT_MARK_LEN + 16);
    json_t *j = frame_json(b, 0);
    json_t *n = json_object_get(j, "next");
    assert_int_equal(json_object_size(n), 2);
    assert_int_equal(json_integer_value(json_object_get(n, "1")), 5);
    assert_true(json_integer_value(json_object_get(n, "2147483647")) == 999999999999ll);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    msgbuf_unref(b);
    /* without marks there is no "next" */
    b = message_sync_reply_frame_next(3, &m, 1, false, NULL, 0);
    j = frame_json(b, 0);
    assert_null(json_object_get(j, "next"));
    json_decref(j);
    msgbuf_unref(b);
}

/* The fast scanner and jansson must agree: random newMessageFromClient
 * requests written by jansson (random key order, with and without \u
 * escapes, every awkward character) parse to exactly what was written. */
static void random_string(char *out, size_t *len, unsigned *seed)
{
    static const char *const pieces[] = {
        "a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f", "\xc3\xa9",
        "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xe2\x80\xa8", "{", "}", ":", ",",
    };
    size_t n = (size_t)(rand_r(seed) % 40), o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = pieces[rand_r(seed) % (sizeof(pieces) / sizeof(pieces[0]))];
        memcpy(out + o, p, strlen(p));
        o += strlen(p);
    }
    out[o] = '\0';
    *len = o;
}

static void test_fast_path_agrees_with_jansson(void **state)
{
    (void)state;
    unsigned seed = 12345;
    for (int iter = 0; iter < 3000; iter++) {
        char text[400], sender[200];
        size_t tlen, slen;
        random_string(text, &tlen, &seed);
        random_string(sender, &slen, &seed);
        json_int_t chat = (json_int_t)rand_r(&seed) - RAND_MAX / 2;
        if (iter % 7 == 0)
            chat = iter % 2 ? INT64_MAX : INT64_MIN;
        json_t *payload = json_object();
        json_t *fields[3] = { json_stringn(text, tlen), json_stringn(sender, slen),
                              json_integer(chat) };
        const char *names[3] = { "text", "sender", "chatId" };
        int order = rand_r(&seed) % 6;
        static const int perms[6][3] = { {0,1,2}, {0,2,1}, {1,0,2}, {1,2,0}, {2,0,1}, {2,1,0} };
        for (int i = 0; i < 3; i++)
            json_object_set_new(payload, names[perms[order][i]], fields[perms[order][i]]);
        json_t *root = json_object();
        if (rand_r(&seed) % 2) {
            json_object_set_new(root, "type", json_string("newMessageFromClient"));
            json_object_set_new(root, "payload", payload);
        } else {
            json_object_set_new(root, "payload", payload);
            json_object_set_new(root, "type", json_string("newMessageFromClient"));
        }
        size_t flags = JSON_PRESERVE_ORDER | (iter % 2 ? JSON_ENSURE_ASCII : 0) |
                       (iter % 3 ? JSON_COMPACT : JSON_INDENT(2));
        char *wire = json_dumps(root, flags);
        json_decref(root);
        assert_non_null(wire);

        struct client_request req;
        char err[256];
        assert_int_equal(message_parse_request(wire, strlen(wire), &req, err, sizeof(err)),
                         MESSAGE_NEW);
        assert_int_equal(req.msg.text_len, tlen);
        assert_memory_equal(req.msg.text, text, tlen);
        if (slen <= MESSAGE_SENDER_MAX) {
            assert_int_equal(req.msg.sender_len, slen);
            assert_memory_equal(req.msg.sender, sender, slen);
        }
        assert_true(req.msg.chat_id == chat);
        message_request_free(&req);
        free(wire);
    }
}

/* The string scanner goes a word at a time to the first byte that is not
 * plain ASCII: such a byte at every offset from a word's start. */
static void test_parse_special_byte_at_every_offset(void **state)
{
    (void)state;
    static const struct { const char *wire, *got; } kinds[] = {
        { "\xc3\xa9", "\xc3\xa9" }, /* UTF-8: stepped over */
        { "\\n", "\n" },          /* an escape */
        { "\\\"", "\"" },        /* an escaped quote */
        { "\x01", NULL },         /* a raw control byte: not JSON */
    };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (int pos = 0; pos <= 20; pos++) {
            char text[64], want[64], wire[256];
            memset(text, 'a', (size_t)pos);
            snprintf(text + pos, sizeof(text) - (size_t)pos, "%sbcdefghij", kinds[k].wire);
            snprintf(wire, sizeof(wire), "{\"type\":\"newMessageFromClient\",\"payload\":"
                     "{\"text\":\"%s\",\"sender\":\"s\",\"chatId\":1}}", text);
            struct client_request req;
            char err[256];
            enum message_kind got = message_parse_request(wire, strlen(wire), &req, err,
                                                          sizeof(err));
            if (kinds[k].got == NULL) {
                assert_int_not_equal(got, MESSAGE_NEW);
            } else {
                assert_int_equal(got, MESSAGE_NEW);
                memset(want, 'a', (size_t)pos);
                snprintf(want + pos, sizeof(want) - (size_t)pos, "%sbcdefghij", kinds[k].got);
                assert_int_equal(req.msg.text_len, strlen(want));
                assert_memory_equal(req.msg.text, want, strlen(want));
            }
            message_request_free(&req);
        }
    }
}

/* The scanner matches each name as clients write it in place; any other
 * spelling of a name must mean the same, and a name with more or fewer
 * letters must not match. */
static void test_parse_names_spelled_otherwise(void **state)
{
    (void)state;
    static const struct { const char *wire; bool is_new; } cases[] = {
        { "{\"\\u0074ype\":\"newMessageFrom\\u0043lient\",\"p\\u0061yload\":"
          "{\"t\\u0065xt\":\"hi\",\"sende\\u0072\":\"s\",\"ch\\u0061tId\":7}}", true },
        { "{ \"type\" : \"newMessageFromClient\" , \"payload\" : { \"chatId\" : 7 , "
          "\"sender\" : \"s\" , \"text\" : \"hi\" } }", true },
        /* "texts" and "tex" are other keys: not a message (no text) */
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"texts\":\"hi\","
          "\"sender\":\"s\",\"chatId\":7}}", false },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"tex\":\"hi\","
          "\"sender\":\"s\",\"chatId\":7}}", false },
        { "{\"type\":\"newMessageFromClients\",\"payload\":{\"text\":\"hi\","
          "\"sender\":\"s\",\"chatId\":7}}", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client_request req;
        char err[256] = "";
        enum message_kind kind = message_parse_request(cases[i].wire, strlen(cases[i].wire),
                                                       &req, err, sizeof(err));
        if (!cases[i].is_new) {
            assert_int_not_equal(kind, MESSAGE_NEW);
        } else {
            assert_int_equal(kind, MESSAGE_NEW);
            assert_int_equal(req.msg.text_len, 2);
            assert_memory_equal(req.msg.text, "hi", 2);
            assert_int_equal(req.msg.sender_len, 1);
            assert_memory_equal(req.msg.sender, "s", 1);
            assert_true(req.msg.chat_id == 7);
        }
        message_request_free(&req);
    }
}

/* message_plain against the escaper, for every byte value at every
 * position of strings of each length 0-20 (words, overlapping last
 * words, short strings). */
static void test_plain(void **state)
{
    (void)state;
    for (size_t len = 0; len <= 20; len++) {
        char in[24], out[6 * 24 + 2];
        memset(in, 'a', len);
        assert_true(message_plain(in, len));
        for (size_t pos = 0; pos < len; pos++) {
            for (int c = 0; c < 256; c++) {
                memset(in, 'a', len);
                in[pos] = (char)c;
                bool want = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
                assert_int_equal(message_plain(in, len), want);
                if (want) /* then the escaper copies it between quotes */
                    assert_int_equal(message_json_escape(out, in, len), len + 2);
            }
        }
    }
}

/* The scanner says plain only of a message that is, and the client frame
 * it makes is the one made without the flag. */
static void test_parse_plain(void **state)
{
    (void)state;
    static const struct { const char *wire; bool plain; } cases[] = {
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"hello, world 0123456789\","
          "\"sender\":\"alice\",\"chatId\":11}}", true },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"\",\"sender\":\"\","
          "\"chatId\":11}}", true },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"caf\xc3\xa9 and more text\","
          "\"sender\":\"alice\",\"chatId\":11}}", false },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"hi\","
          "\"sender\":\"al\xc3\xa9\",\"chatId\":11}}", false },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"a \\\"quote\\\" in it\","
          "\"sender\":\"alice\",\"chatId\":11}}", false },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"\\u0041\","
          "\"sender\":\"alice\",\"chatId\":11}}", false }, /* escaped, though plain */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client_request req;
        char err[256] = "";
        assert_int_equal(message_parse_request(cases[i].wire, strlen(cases[i].wire), &req, err,
                                               sizeof(err)),
                         MESSAGE_NEW);
        assert_int_equal(req.msg.plain, cases[i].plain);
        struct chat_message slow = req.msg;
        slow.plain = false;
        msgbuf *a = message_client_frame(2, &req.msg), *b = message_client_frame(2, &slow);
        assert_int_equal(a->len, b->len);
        assert_memory_equal(a->data, b->data, a->len);
        msgbuf_unref(a);
        msgbuf_unref(b);
        message_request_free(&req);
    }
}

/* What the scanner declines goes to jansson, which gives the answer. */
static void test_fast_path_declines_to_jansson(void **state)
{
    (void)state;
    static const struct { const char *in; int kind; const char *needle; } cases[] = {
        { "{\"type\":\"newMessageFromClient\",\"source\":3,\"payload\":{\"text\":\"a\","
          "\"sender\":\"b\",\"chatId\":1}}", MESSAGE_NEW, NULL },   /* extra key */
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"a\",\"text\":\"c\","
          "\"sender\":\"b\",\"chatId\":1}}", MESSAGE_NEW, NULL },   /* duplicate */
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"a\","
          "\"sender\":\"b\",\"chatId\":1.5}}", MESSAGE_ERROR, "chatId" },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"a\","
          "\"sender\":\"b\",\"chatId\":01}}", MESSAGE_ERROR, "malformed" },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"a\\u0000b\","
          "\"sender\":\"b\",\"chatId\":1}}", MESSAGE_ERROR, "malformed" },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"\\ud800\","
          "\"sender\":\"b\",\"chatId\":1}}", MESSAGE_ERROR, "malformed" },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"a\","
          "\"sender\":\"b\",\"chatId\":1}} x", MESSAGE_ERROR, "malformed" },
        { "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"a\","
          "\"sender\":\"b\"}}", MESSAGE_ERROR, "chatId" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client_request req;
        char err[256] = "";
        int kind = message_parse_request(cases[i].in, strlen(cases[i].in), &req, err,
                                         sizeof(err));
        assert_int_equal(kind, cases[i].kind);
        if (cases[i].needle)
            assert_non_null(strstr(err, cases[i].needle));
        if (kind == MESSAGE_NEW && i == 1)
            assert_memory_equal(req.msg.text, "c", 1); /* jansson: the last one wins */
        message_request_free(&req);
    }
}

/* --- sizes without building: escaped length, object, frame, limit ----------- */

static void check_escaped_len(const char *s, size_t len)
{
    char *in = malloc(len ? len : 1);  /* exact size: ASan checks reads */
    memcpy(in, s, len);
    char *out = malloc(6 * len + 2);
    size_t w = message_json_escape(out, in, len);
    if (message_json_escaped_len(in, len) != w)
        fail_msg("escaped length %zu, but %zu written for %zu bytes",
                 message_json_escaped_len(in, len), w, len);
    free(in);
    free(out);
}

static void test_escaped_len(void **state)
{
    (void)state;
    /* what each kind of byte costs: control characters 6 (\u00XX) or 2 (\n
     * and the like), quotes and backslashes 2, UTF-8 as is, U+2028/9 6 for
     * 3; 2 for the quotes around */
    assert_int_equal(message_json_escaped_len("", 0), 2);
    assert_int_equal(message_json_escaped_len("\x01\x1f\x0b\x00", 4), 2 + 4 * 6);
    assert_int_equal(message_json_escaped_len("\n\r\t\b\f", 5), 2 + 5 * 2);
    assert_int_equal(message_json_escaped_len("\"\"\\", 3), 2 + 3 * 2);
    assert_int_equal(message_json_escaped_len("\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 9), 2 + 9);
    assert_int_equal(message_json_escaped_len("\xe2\x80\xa8\xe2\x80\xa9", 6), 2 + 12);
    assert_int_equal(message_json_escaped_len("\xe2\x80\xaa/\x7f", 5), 2 + 5);
    assert_int_equal(message_json_escaped_len("ab\xe2\x80", 4), 2 + 4); /* cut off */

    /* and always what message_json_escape writes: every byte value ... */
    char all[256];
    for (int c = 0; c < 256; c++)
        all[c] = (char)c;
    check_escaped_len(all, sizeof(all));
    /* ... and random mixtures of the awkward pieces */
    unsigned seed = 99;
    for (int i = 0; i < 2000; i++) {
        char text[400];
        size_t len;
        random_string(text, &len, &seed);
        check_escaped_len(text, len);
    }
}

static void check_lengths(uint32_t source, const struct chat_message *m)
{
    char *obj = malloc(message_object_len(m) + 1);
    size_t w = message_object_write(obj, m);
    assert_int_equal(w, message_object_len(m));
    assert_int_equal(strlen(obj), w); /* the NUL comes right after */
    free(obj);
    msgbuf *b = message_client_frame(source, m);
    if (message_client_frame_len(source, m) != b->len)
        fail_msg("frame length computed %zu, built %u (text %u bytes)",
                 message_client_frame_len(source, m), b->len, m->text_len);
    assert_true(message_client_frame_max_len(m) >= b->len);
    msgbuf_unref(b);
}

static void test_client_frame_len_is_exact(void **state)
{
    (void)state;
    unsigned seed = 7;
    for (int i = 0; i < 2000; i++) {
        char text[400], sender[400];
        size_t tlen, slen;
        random_string(text, &tlen, &seed);
        random_string(sender, &slen, &seed);
        struct chat_message m = make_msg((uint32_t)rand_r(&seed) % 3000 + 1,
                                         (uint64_t)rand_r(&seed) * 977 % MESSAGE_SEQ_LIMIT + 1,
                                         "", "");
        m.text = text;
        m.text_len = (uint32_t)tlen;
        m.sender = sender;
        m.sender_len = (uint32_t)UTIL_MIN(slen, (size_t)MESSAGE_SENDER_MAX);
        m.chat_id = (int64_t)rand_r(&seed) - RAND_MAX / 2;
        check_lengths((uint32_t)rand_r(&seed), &m);
    }
    /* extremes of every number */
    struct chat_message m = make_msg(INT32_MAX, MESSAGE_SEQ_LIMIT - 1, "s", "t");
    m.chat_id = INT64_MIN;
    check_lengths(UINT32_MAX, &m);
    assert_int_equal(message_client_frame_max_len(&m), message_client_frame_len(INT32_MAX, &m));
    m = make_msg(1, 1, "", "");
    m.chat_id = 0;
    check_lengths(0, &m);
    /* JSON of exactly 65535, 65536 and 65537 bytes (where the header grows
     * from 4 to 10 bytes), of control characters that escape six times
     * over and a few plain bytes to hit each length */
    char *text = malloc(70000);
    struct chat_message c = make_msg(5, 5, "x", "");
    c.text = text;
    c.text_len = 0;
    size_t fixed = message_client_frame_len(5, &c) - 4; /* JSON without a text */
    assert_true(fixed > 125 && fixed < 400);
    const size_t json_lens[] = { 400, 65535, 65536, 65537 };
    for (size_t k = 0; k < sizeof(json_lens) / sizeof(json_lens[0]); k++) {
        size_t ctl = (json_lens[k] - fixed) / 6 - 1;
        size_t plain = json_lens[k] - fixed - 6 * ctl;
        memset(text, 0x01, ctl);
        memset(text + ctl, 'a', plain);
        c.text_len = (uint32_t)(ctl + plain);
        size_t header = json_lens[k] <= 0xffff ? 4 : 10;
        assert_int_equal(message_client_frame_len(5, &c), json_lens[k] + header);
        check_lengths(5, &c);
    }
    free(text);
}

static void test_frame_limit_of(void **state)
{
    (void)state;
    /* the defaults, a tiny queue, the largest message */
    assert_int_equal(message_frame_limit_of(65536, 4194304), 65536 + MESSAGE_FRAME_SLACK);
    assert_int_equal(message_frame_limit_of(65536, 4096), 2048);
    assert_int_equal(message_frame_limit_of(1047552, (size_t)1 << 30),
                     1047552 + MESSAGE_FRAME_SLACK);
    assert_int_equal(message_frame_limit(), 65536 + MESSAGE_FRAME_SLACK); /* until set */
}

/* A request of n bytes 0x01 in the text, written as \u0001 (fast path) or
 * with an extra key (jansson's path). */
static char *control_request(size_t n, bool extra_key)
{
    char *s = malloc(6 * n + 200);
    size_t o = (size_t)sprintf(s, "{\"type\":\"newMessageFromClient\",%s\"payload\":{\"text\":\"",
                               extra_key ? "\"source\":1," : "");
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(s + o, "\\u0001");
    sprintf(s + o, "\",\"sender\":\"q\\\"\",\"chatId\":-3}}");
    return s;
}

static void test_frame_limit_at_parse(void **state)
{
    (void)state;
    for (int extra = 0; extra < 2; extra++) {
        const size_t n = 20000; /* 20 KB of text, 120 KB once escaped */
        char *wire = control_request(n, extra);
        struct chat_message m = make_msg(1, 1, "q\"", "");
        char *text = malloc(n);
        memset(text, 0x01, n);
        m.text = text;
        m.text_len = (uint32_t)n;
        m.chat_id = -3;
        size_t need = message_client_frame_max_len(&m);
        assert_true(need > 6 * n);

        struct client_request req;
        char err[256] = "";
        message_set_frame_limit(need); /* exactly at the limit: taken */
        assert_int_equal(message_parse_request(wire, strlen(wire), &req, err, sizeof(err)),
                         MESSAGE_NEW);
        assert_int_equal(req.msg.text_len, n);
        message_request_free(&req);

        message_set_frame_limit(need - 1); /* one over: refused, saying by how much */
        assert_int_equal(message_parse_request(wire, strlen(wire), &req, err, sizeof(err)),
                         MESSAGE_ERROR);
        char want[160];
        snprintf(want, sizeof(want), "message too large once encoded: %zu bytes, at most %zu",
                 need, need - 1);
        assert_string_equal(err, want);
        message_request_free(&req);
        free(text);
        free(wire);
    }

    /* raw U+2028 doubles in size; a short text is never near the limit */
    message_set_frame_limit(2048);
    char wire[8192];
    size_t o = (size_t)sprintf(wire, "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"");
    for (int i = 0; i < 400; i++) /* 1200 bytes in, 2400 out */
        o += (size_t)sprintf(wire + o, "\xe2\x80\xa8");
    sprintf(wire + o, "\",\"sender\":\"s\",\"chatId\":1}}");
    struct client_request req;
    char err[256] = "";
    assert_true(strlen(wire) < 2048 - 200);
    assert_int_equal(message_parse_request(wire, strlen(wire), &req, err, sizeof(err)),
                     MESSAGE_ERROR);
    assert_non_null(strstr(err, "too large once encoded"));
    message_request_free(&req);
    const char *small = "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"hi\","
                        "\"sender\":\"s\",\"chatId\":1}}";
    assert_int_equal(message_parse_request(small, strlen(small), &req, err, sizeof(err)),
                     MESSAGE_NEW);
    message_request_free(&req);
    message_set_frame_limit(message_frame_limit_of(65536, 4194304));
}

static void test_withhold(void **state)
{
    (void)state;
    size_t limit = message_frame_limit_of(65536, 4194304);
    size_t n = 100000;
    char *text = malloc(n);
    memset(text, 0x02, n);
    struct chat_message m = make_msg(4, 9, "peer", "");
    m.text = text;
    m.text_len = (uint32_t)n;
    struct chat_message shown = m;
    assert_true(message_withhold_if_large(&shown, 1, limit));
    assert_int_equal(shown.text_len, strlen(MESSAGE_WITHHELD_TEXT));
    assert_memory_equal(shown.text, MESSAGE_WITHHELD_TEXT, shown.text_len);
    assert_true(shown.seq == 9 && shown.origin == 4 && shown.sender == m.sender);
    assert_true(message_client_frame_len(1, &shown) <= limit);

    /* at the limit it is kept; one byte under, withheld */
    m.text_len = 1000;
    shown = m;
    size_t len = message_client_frame_len(1, &m);
    assert_false(message_withhold_if_large(&shown, 1, len));
    assert_ptr_equal(shown.text, text);
    assert_true(message_withhold_if_large(&shown, 1, len - 1));

    /* withheld, even the longest sender of control characters fits the
     * smallest limit there is (--max-message 128, --max-queue 4096) */
    char sender[MESSAGE_SENDER_MAX];
    memset(sender, 0x03, sizeof(sender));
    m.sender = sender;
    m.sender_len = MESSAGE_SENDER_MAX;
    m.text_len = (uint32_t)n;
    size_t smallest = UTIL_MIN(message_frame_limit_of(128, 4096),
                               message_frame_limit_of(128, 1u << 30));
    assert_true(message_withhold_if_large(&m, 1, smallest));
    assert_true(message_client_frame_max_len(&m) <= smallest);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_path_agrees_with_jansson),
        cmocka_unit_test(test_parse_special_byte_at_every_offset),
        cmocka_unit_test(test_parse_names_spelled_otherwise),
        cmocka_unit_test(test_fast_path_declines_to_jansson),
        cmocka_unit_test(test_parse_new_message),
        cmocka_unit_test(test_parse_ignored),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_sync),
        cmocka_unit_test(test_parse_rooms),
        cmocka_unit_test(test_rooms_reply_frame),
        cmocka_unit_test(test_sync_reply_next),
        cmocka_unit_test(test_message_id),
        cmocka_unit_test(test_client_frame),
        cmocka_unit_test(test_frame_lengths),
        cmocka_unit_test(test_escaping_round_trip),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_json_escape_at_every_offset),
        cmocka_unit_test(test_error_frame),
        cmocka_unit_test(test_sync_reply_frame),
        cmocka_unit_test(test_escaped_len),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_parse_plain),
        cmocka_unit_test(test_client_frame_len_is_exact),
        cmocka_unit_test(test_frame_limit_of),
        cmocka_unit_test(test_frame_limit_at_parse),
        cmocka_unit_test(test_withhold),
    };
    int rc = cmocka_run_group_tests_name("message", tests, NULL, NULL);
    msgbuf_trim();
    return rc;
}
