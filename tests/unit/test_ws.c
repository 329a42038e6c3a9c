/* Unit tests for common/ws.c: the WebSocket codec (decoder of client frames
 * with masking, RSV, opcodes, fragmentation, the 1009 size limit (checked
 * at the frame header, before any payload) and the 1007 UTF-8 rules; the frame header writer; masking; the accept key; the
 * upgrade check; the incremental UTF-8 validator). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/ws.h"

/* --- helpers ---------------------------------------------------------------- */

/* A growable byte string. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void bytes_add(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void bytes_free(bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static const uint8_t test_mask_key[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* Appends one frame built by hand: any FIN, RSV, opcode, length encoding;
 * masked with test_mask_key when masked. */
static void add_frame(bytes *b, bool fin, unsigned rsv, unsigned opcode,
                      const void *payload, size_t len, bool masked)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f));
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 0; i < 8; i++)
            h[n++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(h + n, test_mask_key, 4);
        n += 4;
    }
    bytes_add(b, h, n);
    size_t off = b->len;
    bytes_add(b, payload, len);
    if (masked)
        ws_mask(b->p + off, len, test_mask_key);
}

/* A masked client frame with FIN set, no RSV. */
static void add_client(bytes *b, unsigned opcode, const void *payload, size_t len)
{
    add_frame(b, true, 0, opcode, payload, len, true);
}

static void add_client_str(bytes *b, unsigned opcode, const char *s)
{
    add_client(b, opcode, s, strlen(s));
}

/* What the decoder handed to the callback. */
#define MAX_MSGS 64
typedef struct {
    unsigned n;
    unsigned op[MAX_MSGS];
    bytes data[MAX_MSGS];
    int stop_at;             /* return non-zero for message number stop_at (1-based) */
} collector;

static int collect_cb(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    collector *c = ud;
    assert_true(c->n < MAX_MSGS);
    c->op[c->n] = opcode;
    memset(&c->data[c->n], 0, sizeof(bytes));
    bytes_add(&c->data[c->n], data, len);
    c->n++;
    return c->stop_at != 0 && (int)c->n == c->stop_at;
}

static void collector_free(collector *c)
{
    for (unsigned i = 0; i < c->n; i++)
        bytes_free(&c->data[i]);
    memset(c, 0, sizeof(*c));
}

static void assert_same_msgs(const collector *a, const collector *b)
{
    assert_int_equal(a->n, b->n);
    for (unsigned i = 0; i < a->n; i++) {
        assert_int_equal(a->op[i], b->op[i]);
        assert_int_equal(a->data[i].len, b->data[i].len);
        if (a->data[i].len)
            assert_memory_equal(a->data[i].p, b->data[i].p, a->data[i].len);
    }
}

static uint64_t rng_state;
static uint32_t rng_next(void)
{
    /* xorshift64*, seeded per run so every chunking is reproducible */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

enum chunking { WHOLE, BYTEWISE, RANDOM };

/* Feeds buf to d in the given chunking, stopping at the first non-zero
 * result, which it returns. Chunks are copied to a heap buffer of exactly
 * their size so that ASan catches any read beyond a chunk. */
static int feed(ws_decoder *d, const uint8_t *buf, size_t len, enum chunking how,
                uint64_t seed, collector *c)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t off = 0;
    while (off < len) {
        size_t n;
        if (how == WHOLE)
            n = len;
        else if (how == BYTEWISE)
            n = 1;
        else
            n = 1 + rng_next() % (rng_next() % 4 == 0 ? 5000 : 40);
        if (n > len - off)
            n = len - off;
        uint8_t *chunk = malloc(n);
        assert_non_null(chunk);
        memcpy(chunk, buf + off, n);
        int rc = ws_decoder_feed(d, chunk, n, collect_cb, c);
        free(chunk);
        off += n;
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Decodes buf on a fresh server-side decoder; returns the feed result. */
static int decode_with(const bytes *b, size_t max, enum chunking how, uint64_t seed,
                       collector *c)
{
    ws_decoder *d = ws_decoder_new(true, max);
    int rc = feed(d, b->p, b->len, how, seed, c);
    if (rc > 0)
        assert_true(strcmp(ws_decoder_error(d), "no error") != 0);
    ws_decoder_free(d);
    return rc;
}

/* The close code that feeding b gives, checked in every chunking. */
static int error_of(const bytes *b, size_t max)
{
    int first = -100;
    for (int how = WHOLE; how <= RANDOM; how++) {
        for (uint64_t seed = 1; seed <= (how == RANDOM ? 5u : 1u); seed++) {
            collector c = { 0 };
            int rc = decode_with(b, max, (enum chunking)how, seed, &c);
            collector_free(&c);
            if (first == -100)
                first = rc;
            assert_int_equal(rc, first);
        }
    }
    return first;
}

/* --- accept key, header writer, mask ---------------------------------------- */

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 section 1.3's example. (The value written in this test's
     * brief, "s3pPLMBiTxaQ9kNUAZXGZ0PLCSG8=", is not the RFC's and not
     * base64(SHA-1(key + GUID)); `openssl sha1 -binary | base64` agrees with
     * the RFC.) */
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(strlen(out), 28);
    /* A key far too long for the internal buffer is refused, not overrun. */
    char longkey[200];
    memset(longkey, 'A', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(ws_accept_key(longkey, out), -1);
}

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[WS_MAX_HEADER];
    const uint8_t mask[4] = { 1, 2, 3, 4 };

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 0, NULL), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0x00);

    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 125, NULL), 2);
    assert_int_equal(h[0], 0x82);
    assert_int_equal(h[1], 125);

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 126, NULL), 4);
    const uint8_t e126[] = { 0x81, 126, 0x00, 126 };
    assert_memory_equal(h, e126, sizeof(e126));

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 65535, NULL), 4);
    const uint8_t e65535[] = { 0x81, 126, 0xff, 0xff };
    assert_memory_equal(h, e65535, sizeof(e65535));

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 65536, NULL), 10);
    const uint8_t e65536[] = { 0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0 };
    assert_memory_equal(h, e65536, sizeof(e65536));

    assert_int_equal(ws_frame_header(h, WS_OP_CLOSE, 0x0102030405060708ull, NULL), 10);
    const uint8_t ebig[] = { 0x88, 127, 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_memory_equal(h, ebig, sizeof(ebig));

    /* Masked: mask bit plus the 4 key bytes after the length. */
    assert_int_equal(ws_frame_header(h, WS_OP_PING, 5, mask), 6);
    const uint8_t em5[] = { 0x89, 0x85, 1, 2, 3, 4 };
    assert_memory_equal(h, em5, sizeof(em5));

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 300, mask), 8);
    const uint8_t em300[] = { 0x81, 0xfe, 0x01, 0x2c, 1, 2, 3, 4 };
    assert_memory_equal(h, em300, sizeof(em300));

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 70000, mask), 14);
    const uint8_t em70000[] = { 0x81, 0xff, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70, 1, 2, 3, 4 };
    assert_memory_equal(h, em70000, sizeof(em70000));
}

static void test_mask(void **state)
{
    (void)state;
    const uint8_t key[4] = { 0xde, 0xad, 0xbe, 0xef };
    uint8_t buf[64], orig[64];
    for (size_t i = 0; i < sizeof(buf); i++)
        orig[i] = (uint8_t)(i * 7 + 3);
    for (size_t len = 0; len <= 37; len++) {
        /* Unaligned starts too: the word loop must not care. */
        for (size_t off = 0; off < 4; off++) {
            memcpy(buf, orig, sizeof(buf));
            ws_mask(buf + off, len, key);
            for (size_t i = 0; i < len; i++)
                assert_int_equal(buf[off + i], orig[off + i] ^ key[i & 3]);
            for (size_t i = off + len; i < sizeof(buf); i++)
                assert_int_equal(buf[i], orig[i]); /* nothing past len */
            ws_mask(buf + off, len, key);
            assert_memory_equal(buf, orig, sizeof(buf));
        }
    }
}

/* --- decoding ------------------------------------------------------------ */

static void test_decode_all_chunkings(void **state)
{
    (void)state;
    bytes b = { 0 };
    add_client_str(&b, WS_OP_TEXT, "hello");
    add_client(&b, WS_OP_TEXT, "", 0);
    const uint8_t bin[] = { 0, 1, 2, 0xff, 0xfe, 0x80 };
    add_client(&b, WS_OP_BINARY, bin, sizeof(bin));
    add_client_str(&b, WS_OP_PING, "are you there");
    /* 16-bit length, multi-byte UTF-8 to be split at chunk boundaries */
    bytes mid = { 0 };
    for (int i = 0; i < 60; i++)
        bytes_add(&mid, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10);
    add_client(&b, WS_OP_TEXT, mid.p, mid.len);
    /* 64-bit length (>= 65536) */
    bytes big = { 0 };
    for (int i = 0; i < 7001; i++)
        bytes_add(&big, "z\xe2\x82\xac\xf0\x9f\x98\x80x", 9); /* 63009 */
    for (int i = 0; i < 3000; i++)
        bytes_add(&big, "0123", 4);                              /* + 12000 */
    assert_true(big.len >= 65536);
    add_client(&b, WS_OP_TEXT, big.p, big.len);
    add_client_str(&b, WS_OP_PONG, "");
    add_client_str(&b, WS_OP_TEXT, "after");

    collector ref = { 0 };
    assert_int_equal(decode_with(&b, 1 << 20, WHOLE, 0, &ref), 0);
    assert_int_equal(ref.n, 8);
    assert_int_equal(ref.op[0], WS_OP_TEXT);
    assert_int_equal(ref.data[0].len, 5);
    assert_memory_equal(ref.data[0].p, "hello", 5);
    assert_int_equal(ref.op[1], WS_OP_TEXT);
    assert_int_equal(ref.data[1].len, 0);
    assert_int_equal(ref.op[2], WS_OP_BINARY);
    assert_int_equal(ref.data[2].len, sizeof(bin));
    assert_memory_equal(ref.data[2].p, bin, sizeof(bin));
    assert_int_equal(ref.op[3], WS_OP_PING);
    assert_memory_equal(ref.data[3].p, "are you there", 13);
    assert_int_equal(ref.op[4], WS_OP_TEXT);
    assert_int_equal(ref.data[4].len, mid.len);
    assert_memory_equal(ref.data[4].p, mid.p, mid.len);
    assert_int_equal(ref.op[5], WS_OP_TEXT);
    assert_int_equal(ref.data[5].len, big.len);
    assert_memory_equal(ref.data[5].p, big.p, big.len);
    assert_int_equal(ref.op[6], WS_OP_PONG);
    assert_int_equal(ref.data[6].len, 0);
    assert_int_equal(ref.op[7], WS_OP_TEXT);
    assert_memory_equal(ref.data[7].p, "after", 5);

    collector c = { 0 };
    assert_int_equal(decode_with(&b, 1 << 20, BYTEWISE, 0, &c), 0);
    assert_same_msgs(&ref, &c);
    collector_free(&c);
    for (uint64_t seed = 1; seed <= 25; seed++) {
        assert_int_equal(decode_with(&b, 1 << 20, RANDOM, seed, &c), 0);
        assert_same_msgs(&ref, &c);
        collector_free(&c);
    }
    collector_free(&ref);
    bytes_free(&mid);
    bytes_free(&big);
    bytes_free(&b);
}

static void test_length_encodings(void **state)
{
    (void)state;
    /* Boundary lengths of each encoding, each alone in a decoder. */
    const size_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536, 70001 };
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        bytes payload = { 0 }, b = { 0 };
        for (size_t i = 0; i < lens[k]; i++) {
            uint8_t ch = (uint8_t)('a' + i % 26);
            bytes_add(&payload, &ch, 1);
        }
        add_client(&b, WS_OP_BINARY, payload.p, payload.len);
        for (int how = WHOLE; how <= RANDOM; how++) {
            collector c = { 0 };
            assert_int_equal(decode_with(&b, 1 << 20, (enum chunking)how, k + 1, &c), 0);
            assert_int_equal(c.n, 1);
            assert_int_equal(c.op[0], WS_OP_BINARY);
            assert_int_equal(c.data[0].len, lens[k]);
            if (lens[k])
                assert_memory_equal(c.data[0].p, payload.p, lens[k]);
            collector_free(&c);
        }
        bytes_free(&payload);
        bytes_free(&b);
    }
}

static void test_non_minimal_length_rejected(void **state)
{
    (void)state;
    /* 16-bit form for a length < 126 and 64-bit form for one < 65536. */
    const uint8_t f16[] = { 0x81, 0x80 | 126, 0x00, 0x05, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o' };
    const uint8_t f64[] = { 0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0x05, 1, 2, 3, 4,
                            'h', 'e', 'l', 'l', 'o' };
    bytes b = { 0 };
    bytes_add(&b, f16, sizeof(f16));
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    b.len = 0;
    bytes_add(&b, f64, sizeof(f64));
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    /* 64-bit length with the top bit set */
    const uint8_t ftop[] = { 0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    b.len = 0;
    bytes_add(&b, ftop, sizeof(ftop));
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    bytes_free(&b);
}

static void test_fragmented_with_ping(void **state)
{
    (void)state;
    bytes b = { 0 };
    add_frame(&b, false, 0, WS_OP_TEXT, "Hel", 3, true);
    add_frame(&b, true, 0, WS_OP_PING, "p1", 2, true);
    add_frame(&b, false, 0, WS_OP_CONT, "lo ", 3, true);
    add_frame(&b, false, 0, WS_OP_CONT, "", 0, true);
    add_frame(&b, true, 0, WS_OP_PONG, "", 0, true);
    add_frame(&b, true, 0, WS_OP_CONT, "w\xc3\xb6rld", 6, true);
    /* then a fragmented binary message and a plain text one */
    add_frame(&b, false, 0, WS_OP_BINARY, "\x00\xff", 2, true);
    add_frame(&b, true, 0, WS_OP_CONT, "\xc3", 1, true);
    add_client_str(&b, WS_OP_TEXT, "next");
    /* a fragmented message whose first fragment is empty */
    add_frame(&b, false, 0, WS_OP_TEXT, "", 0, true);
    add_frame(&b, true, 0, WS_OP_CONT, "tail", 4, true);

    collector ref = { 0 };
    assert_int_equal(decode_with(&b, 1000, WHOLE, 0, &ref), 0);
    assert_int_equal(ref.n, 6);
    assert_int_equal(ref.op[0], WS_OP_PING);
    assert_memory_equal(ref.data[0].p, "p1", 2);
    assert_int_equal(ref.op[1], WS_OP_PONG);
    assert_int_equal(ref.op[2], WS_OP_TEXT);
    assert_int_equal(ref.data[2].len, 12);
    assert_memory_equal(ref.data[2].p, "Hello w\xc3\xb6rld", 12);
    assert_int_equal(ref.op[3], WS_OP_BINARY);
    assert_int_equal(ref.data[3].len, 3);
    assert_memory_equal(ref.data[3].p, "\x00\xff\xc3", 3);
    assert_int_equal(ref.op[4], WS_OP_TEXT);
    assert_memory_equal(ref.data[4].p, "next", 4);
    assert_int_equal(ref.op[5], WS_OP_TEXT);
    assert_int_equal(ref.data[5].len, 4);
    assert_memory_equal(ref.data[5].p, "tail", 4);

    for (uint64_t seed = 0; seed <= 20; seed++) {
        collector c = { 0 };
        assert_int_equal(decode_with(&b, 1000, seed ? RANDOM : BYTEWISE, seed, &c), 0);
        assert_same_msgs(&ref, &c);
        collector_free(&c);
    }
    collector_free(&ref);
    bytes_free(&b);
}

static void test_fragmentation_order(void **state)
{
    (void)state;
    bytes b = { 0 };
    /* a continuation with no message started */
    add_frame(&b, true, 0, WS_OP_CONT, "x", 1, true);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    /* a new data frame inside a fragmented message */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, "a", 1, true);
    add_frame(&b, true, 0, WS_OP_TEXT, "b", 1, true);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_BINARY, "a", 1, true);
    add_frame(&b, true, 0, WS_OP_BINARY, "b", 1, true);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    /* a continuation after the message finished */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, "a", 1, true);
    add_frame(&b, true, 0, WS_OP_CONT, "b", 1, true);
    add_frame(&b, true, 0, WS_OP_CONT, "c", 1, true);
    collector c = { 0 };
    assert_int_equal(decode_with(&b, 1000, WHOLE, 0, &c), WS_CLOSE_PROTOCOL);
    assert_int_equal(c.n, 1);
    assert_memory_equal(c.data[0].p, "ab", 2);
    collector_free(&c);
    bytes_free(&b);
}

static void test_masking_by_role(void **state)
{
    (void)state;
    bytes b = { 0 };
    /* server side: an unmasked client frame */
    add_frame(&b, true, 0, WS_OP_TEXT, "hi", 2, false);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    ws_decoder *d = ws_decoder_new(true, 1000);
    collector c = { 0 };
    assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), WS_CLOSE_PROTOCOL);
    assert_string_equal(ws_decoder_error(d), "unmasked client frame");
    assert_int_equal(c.n, 0);
    ws_decoder_free(d);
    /* unmasked control frame too */
    b.len = 0;
    add_frame(&b, true, 0, WS_OP_PING, "", 0, false);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);

    /* client side: unmasked server frames are fine, masked ones are not */
    b.len = 0;
    add_frame(&b, true, 0, WS_OP_TEXT, "from server", 11, false);
    d = ws_decoder_new(false, 1000);
    assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_memory_equal(c.data[0].p, "from server", 11);
    collector_free(&c);
    b.len = 0;
    add_frame(&b, true, 0, WS_OP_TEXT, "masked", 6, true);
    assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), WS_CLOSE_PROTOCOL);
    assert_int_equal(c.n, 0);
    ws_decoder_free(d);
    bytes_free(&b);
}

static void test_rsv_bits(void **state)
{
    (void)state;
    for (unsigned rsv = 1; rsv <= 7; rsv++) {
        bytes b = { 0 };
        add_frame(&b, true, rsv, WS_OP_TEXT, "x", 1, true);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
        b.len = 0;
        add_frame(&b, true, rsv, WS_OP_PING, "", 0, true);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
        bytes_free(&b);
    }
}

static void test_unknown_opcode(void **state)
{
    (void)state;
    const unsigned ops[] = { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        bytes b = { 0 };
        add_client(&b, ops[i], "x", 1);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
        bytes_free(&b);
    }
}

static void test_control_frame_limits(void **state)
{
    (void)state;
    uint8_t payload[200];
    memset(payload, 'p', sizeof(payload));
    bytes b = { 0 };
    /* 125 bytes is the most a control frame may carry */
    add_client(&b, WS_OP_PING, payload, 125);
    collector c = { 0 };
    assert_int_equal(decode_with(&b, 1000, BYTEWISE, 0, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.data[0].len, 125);
    collector_free(&c);
    /* 126 (16-bit length form) */
    const unsigned ops[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    for (size_t i = 0; i < 3; i++) {
        b.len = 0;
        add_client(&b, ops[i], payload, 126);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
        b.len = 0;
        add_client(&b, ops[i], payload, 200);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
        /* fragmented control frame */
        b.len = 0;
        add_frame(&b, false, 0, ops[i], "", 0, true);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    }
    /* control frames do not count against the message limit */
    b.len = 0;
    add_client(&b, WS_OP_PING, payload, 100);
    assert_int_equal(decode_with(&b, 10, WHOLE, 0, &c), 0);
    assert_int_equal(c.n, 1);
    collector_free(&c);
    bytes_free(&b);
}

static void test_message_too_big(void **state)
{
    (void)state;
    uint8_t payload[300];
    memset(payload, 'x', sizeof(payload));
    bytes b = { 0 };
    collector c = { 0 };
    /* exactly the limit passes */
    add_client(&b, WS_OP_TEXT, payload, 200);
    assert_int_equal(decode_with(&b, 200, WHOLE, 0, &c), 0);
    assert_int_equal(c.n, 1);
    collector_free(&c);
    b.len = 0;
    add_client(&b, WS_OP_TEXT, payload, 201);
    assert_int_equal(error_of(&b, 200), WS_CLOSE_TOO_BIG);
    b.len = 0;
    add_client(&b, WS_OP_BINARY, payload, 300);
    assert_int_equal(error_of(&b, 200), WS_CLOSE_TOO_BIG);
    /* fragments that add up to more than the limit */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, payload, 120, true);
    add_frame(&b, true, 0, WS_OP_PING, "", 0, true);
    add_frame(&b, true, 0, WS_OP_CONT, payload, 81, true);
    assert_int_equal(error_of(&b, 200), WS_CLOSE_TOO_BIG);
    /* ... and exactly to the limit */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, payload, 120, true);
    add_frame(&b, false, 0, WS_OP_CONT, payload, 40, true);
    add_frame(&b, true, 0, WS_OP_CONT, payload, 40, true);
    assert_int_equal(decode_with(&b, 200, BYTEWISE, 0, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.data[0].len, 200);
    collector_free(&c);
    /* the limit is per message: many messages under it are fine */
    b.len = 0;
    for (int i = 0; i < 10; i++)
        add_client(&b, WS_OP_TEXT, payload, 150);
    assert_int_equal(decode_with(&b, 200, RANDOM, 7, &c), 0);
    assert_int_equal(c.n, 10);
    collector_free(&c);
    /* A declared 64-bit length far over the limit (4 GiB) fails on the
     * header alone, in every chunking (see test_length_checked_at_header). */
    b.len = 0;
    const uint8_t hdr[] = { 0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4 };
    bytes_add(&b, hdr, sizeof(hdr));
    assert_int_equal(error_of(&b, 1 << 20), WS_CLOSE_TOO_BIG);
    bytes_free(&b);
}

/* Appends only the header of a frame announcing len payload bytes (in the
 * shortest length form), masked with test_mask_key when masked. */
static void add_header(bytes *b, bool fin, unsigned opcode, uint64_t len, bool masked)
{
    uint8_t h[WS_MAX_HEADER];
    size_t n = ws_frame_header(h, opcode, len, masked ? test_mask_key : NULL);
    if (!fin)
        h[0] &= 0x7f;
    bytes_add(b, h, n);
}

/* Feeds b one byte at a time to d until a non-zero result, which it
 * returns; *fed is how many bytes had been fed then (all when none). */
static int bytewise_until_error(ws_decoder *d, const bytes *b, collector *c, size_t *fed)
{
    for (size_t i = 0; i < b->len; i++) {
        uint8_t byte = b->p[i]; /* a copy: ASan sees any read past it */
        int rc = ws_decoder_feed(d, &byte, 1, collect_cb, c);
        if (rc != 0) {
            *fed = i + 1;
            return rc;
        }
    }
    *fed = b->len;
    return 0;
}

/* The close code for a header that must be refused on its own, checked fed
 * whole and byte by byte, in both roles: the error comes with the last byte
 * of the length field (before the mask key: no check needs it), no payload
 * needed, and nothing is delivered. */
static void assert_header_refused(uint64_t len, size_t max, int code, const char *why)
{
    for (int role = 0; role < 2; role++) {
        bool masked = role == 0;
        bytes b = { 0 };
        add_header(&b, true, WS_OP_BINARY, len, masked);
        collector c = { 0 };
        ws_decoder *d = ws_decoder_new(masked, max);
        assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), code);
        assert_string_equal(ws_decoder_error(d), why);
        ws_decoder_free(d);
        d = ws_decoder_new(masked, max);
        size_t fed = 0;
        assert_int_equal(bytewise_until_error(d, &b, &c, &fed), code);
        assert_int_equal(fed, b.len - (masked ? 4 : 0));
        assert_string_equal(ws_decoder_error(d), why);
        assert_int_equal(c.n, 0);
        ws_decoder_free(d);
        bytes_free(&b);
    }
}

static void test_length_checked_at_header(void **state)
{
    (void)state;
    static const char too_big[] = "message larger than the limit";
    static const char top_bit[] = "frame length with the most significant bit set";
    /* 2^62 bytes announced: 1009 with the header, not after its payload. */
    assert_header_refused(1ull << 62, 1 << 20, WS_CLOSE_TOO_BIG, too_big);
    assert_header_refused(UINT64_MAX >> 1, 1 << 20, WS_CLOSE_TOO_BIG, too_big);
    /* One over the bound, in each length form. */
    assert_header_refused(101, 100, WS_CLOSE_TOO_BIG, too_big);
    assert_header_refused(1001, 1000, WS_CLOSE_TOO_BIG, too_big);
    assert_header_refused(70001, 70000, WS_CLOSE_TOO_BIG, too_big);
    /* The top bit of the 64-bit length must be 0 (RFC 6455 5.2): 1002, also
     * when the limit would allow anything. */
    assert_header_refused(1ull << 63, SIZE_MAX, WS_CLOSE_PROTOCOL, top_bit);
    assert_header_refused(UINT64_MAX, SIZE_MAX, WS_CLOSE_PROTOCOL, top_bit);

    /* Exactly the bound is accepted: the header alone needs more, then the
     * payload completes the message. */
    const size_t bounds[] = { 0, 100, 125, 1000, 65535, 70000 };
    for (size_t k = 0; k < sizeof(bounds) / sizeof(bounds[0]); k++) {
        size_t max = bounds[k];
        uint8_t *payload = malloc(max + 1);
        assert_non_null(payload);
        memset(payload, 'b', max);
        bytes b = { 0 };
        add_frame(&b, true, 0, WS_OP_BINARY, payload, max, true);
        size_t head = b.len - max;
        for (int how = WHOLE; how <= BYTEWISE; how++) {
            ws_decoder *d = ws_decoder_new(true, max);
            collector c = { 0 };
            assert_int_equal(feed(d, b.p, head, (enum chunking)how, 0, &c), 0);
            assert_int_equal(c.n, max == 0 ? 1u : 0u);
            assert_int_equal(feed(d, b.p + head, max, (enum chunking)how, 0, &c), 0);
            assert_int_equal(c.n, 1);
            assert_int_equal(c.data[0].len, max);
            collector_free(&c);
            ws_decoder_free(d);
        }
        bytes_free(&b);
        free(payload);
    }
}

/* Fragments whose running total passes the bound: 1009 at the header of
 * the fragment that passes it (its length field), before its payload; what
 * came before (the first fragments, a ping) was taken and the ping
 * delivered. */
static void test_fragments_checked_at_header(void **state)
{
    (void)state;
    uint8_t payload[300];
    memset(payload, 'f', sizeof(payload));
    bytes b = { 0 };
    add_frame(&b, false, 0, WS_OP_TEXT, payload, 120, true);
    add_frame(&b, true, 0, WS_OP_PING, "p", 1, true);
    add_frame(&b, false, 0, WS_OP_CONT, payload, 80, true); /* 200: the bound */
    size_t before = b.len;
    add_header(&b, false, WS_OP_CONT, 1, true);              /* 201 */
    size_t header_end = b.len;

    ws_decoder *d = ws_decoder_new(true, 200);
    collector c = { 0 };
    size_t fed = 0;
    assert_int_equal(bytewise_until_error(d, &b, &c, &fed), WS_CLOSE_TOO_BIG);
    assert_int_equal(fed, header_end - 4); /* before the mask key */
    assert_string_equal(ws_decoder_error(d), "message larger than the limit");
    assert_int_equal(c.n, 1);
    assert_int_equal(c.op[0], WS_OP_PING);
    collector_free(&c);
    ws_decoder_free(d);

    /* Whole: the same, and the first fragments alone were fine. */
    d = ws_decoder_new(true, 200);
    assert_int_equal(ws_decoder_feed(d, b.p, before, collect_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(ws_decoder_feed(d, b.p + before, header_end - before, collect_cb, &c),
                     WS_CLOSE_TOO_BIG);
    collector_free(&c);
    ws_decoder_free(d);
    d = ws_decoder_new(true, 200);
    assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), WS_CLOSE_TOO_BIG);
    assert_int_equal(c.n, 1);
    collector_free(&c);
    ws_decoder_free(d);

    /* A huge continuation after a small first fragment, on the client side. */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_BINARY, payload, 10, false);
    add_header(&b, true, WS_OP_CONT, 1ull << 62, false);
    d = ws_decoder_new(false, 1 << 20);
    assert_int_equal(bytewise_until_error(d, &b, &c, &fed), WS_CLOSE_TOO_BIG);
    assert_int_equal(fed, b.len);
    assert_int_equal(c.n, 0);
    ws_decoder_free(d);

    /* Header checks other than the length do not wait for payload either:
     * a continuation without a message, announcing 2^62 bytes, is 1002. */
    b.len = 0;
    add_header(&b, true, WS_OP_CONT, 1ull << 62, true);
    d = ws_decoder_new(true, 1 << 20);
    assert_int_equal(bytewise_until_error(d, &b, &c, &fed), WS_CLOSE_PROTOCOL);
    assert_int_equal(fed, b.len - 4);
    assert_string_equal(ws_decoder_error(d), "continuation frame without a message");
    ws_decoder_free(d);
    bytes_free(&b);
}

static void test_sticky_error(void **state)
{
    (void)state;
    bytes b = { 0 };
    add_frame(&b, true, 0, WS_OP_TEXT, "hi", 2, false);
    ws_decoder *d = ws_decoder_new(true, 1000);
    collector c = { 0 };
    assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), WS_CLOSE_PROTOCOL);
    b.len = 0;
    add_client_str(&b, WS_OP_TEXT, "good");
    /* once failed, it takes no more input */
    assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), WS_CLOSE_PROTOCOL);
    assert_int_equal(c.n, 0);
    ws_decoder_free(d);
    bytes_free(&b);
}

static void test_callback_stop(void **state)
{
    (void)state;
    bytes b = { 0 };
    add_client_str(&b, WS_OP_TEXT, "one");
    add_client_str(&b, WS_OP_TEXT, "two");
    add_client_str(&b, WS_OP_TEXT, "three");
    ws_decoder *d = ws_decoder_new(true, 1000);
    collector c = { 0 };
    c.stop_at = 2;
    assert_int_equal(ws_decoder_feed(d, b.p, b.len, collect_cb, &c), -1);
    assert_int_equal(c.n, 2);
    ws_decoder_free(d);
    collector_free(&c);
    bytes_free(&b);
    ws_decoder_free(NULL); /* allowed */
}

/* A masked frame cut anywhere, its mask key and payload at any phase:
 * unmasking eight bytes at a time must take each piece at the key's
 * right offset. */
static void test_masked_frame_cut_anywhere(void **state)
{
    (void)state;
    char text[61];
    for (int i = 0; i < 60; i++)
        text[i] = (char)('a' + (i * 7) % 26);
    text[60] = '\0';
    bytes b = { 0 };
    add_client_str(&b, WS_OP_TEXT, text);
    add_client_str(&b, WS_OP_PING, "ping!");
    for (size_t cut1 = 0; cut1 <= b.len; cut1++) {
        for (size_t cut2 = cut1; cut2 <= b.len; cut2 += 5) {
            ws_decoder *d = ws_decoder_new(true, 1000);
            collector c = { 0 };
            assert_int_equal(ws_decoder_feed(d, b.p, cut1, collect_cb, &c), 0);
            assert_int_equal(ws_decoder_feed(d, b.p + cut1, cut2 - cut1, collect_cb, &c), 0);
            assert_int_equal(ws_decoder_feed(d, b.p + cut2, b.len - cut2, collect_cb, &c), 0);
            assert_int_equal(c.n, 2);
            assert_int_equal(c.data[0].len, 60);
            assert_memory_equal(c.data[0].p, text, 60);
            assert_int_equal(c.data[1].len, 5);
            assert_memory_equal(c.data[1].p, "ping!", 5);
            ws_decoder_free(d);
            collector_free(&c);
        }
    }
    bytes_free(&b);
}

/* Decoders fed in turns, in random chunks, each between two others'
 * frames, after one that stopped with bytes left: each decodes what it
 * was sent (decoders share nothing but the code). */
static void test_decoders_interleaved(void **state)
{
    (void)state;
    bytes b = { 0 };
    add_client_str(&b, WS_OP_TEXT, "first");
    bytes big = { 0 };
    for (int i = 0; i < 1500; i++)
        bytes_add(&big, "abcdefgh", 8); /* 12000: cut by most chunkings */
    add_client(&b, WS_OP_BINARY, big.p, big.len);
    add_frame(&b, false, 0, WS_OP_TEXT, "frag", 4, true);
    add_client_str(&b, WS_OP_PING, "p");
    add_frame(&b, true, 0, WS_OP_CONT, "ment", 4, true);
    add_client_str(&b, WS_OP_TEXT, "last");
    collector ref = { 0 };
    assert_int_equal(decode_with(&b, 1 << 20, WHOLE, 0, &ref), 0);
    assert_int_equal(ref.n, 5); /* the ping too */

    for (uint64_t seed = 1; seed <= 20; seed++) {
        /* a decoder that stops with the rest of a chunk unread */
        ws_decoder *stopped = ws_decoder_new(true, 1 << 20);
        collector sc = { .stop_at = 1 };
        assert_int_equal(ws_decoder_feed(stopped, b.p, b.len, collect_cb, &sc), -1);
        ws_decoder_free(stopped);
        collector_free(&sc);

        enum { K = 3 };
        ws_decoder *d[K];
        collector c[K];
        size_t off[K];
        for (int k = 0; k < K; k++) {
            d[k] = ws_decoder_new(true, 1 << 20);
            memset(&c[k], 0, sizeof(c[k]));
            off[k] = 0;
        }
        rng_state = seed * 0x9e3779b97f4a7c15ull;
        for (bool more = true; more;) {
            more = false;
            for (int k = 0; k < K; k++) {
                if (off[k] == b.len)
                    continue;
                size_t n = 1 + rng_next() % (rng_next() % 3 == 0 ? 6000 : 30);
                if (n > b.len - off[k])
                    n = b.len - off[k];
                assert_int_equal(ws_decoder_feed(d[k], b.p + off[k], n, collect_cb, &c[k]), 0);
                off[k] += n;
                more = true;
            }
        }
        for (int k = 0; k < K; k++) {
            assert_same_msgs(&ref, &c[k]);
            collector_free(&c[k]);
            ws_decoder_free(d[k]);
        }
    }
    collector_free(&ref);
    bytes_free(&big);
    bytes_free(&b);
}

/* --- UTF-8 --------------------------------------------------------------- */

static const char *const bad_utf8[] = {
    "\x80",                 /* lone continuation byte */
    "a\xbf",
    "\xc0\x80",             /* overlong NUL */
    "\xc1\xbf",             /* overlong */
    "\xe0\x80\x80",         /* overlong 3-byte */
    "\xe0\x9f\xbf",         /* overlong 3-byte, top */
    "\xf0\x80\x80\x80",     /* overlong 4-byte */
    "\xf0\x8f\xbf\xbf",
    "\xed\xa0\x80",         /* U+D800 surrogate */
    "\xed\xbf\xbf",         /* U+DFFF surrogate */
    "\xed\xa0\x80\xed\xb0\x80", /* surrogate pair encoded as CESU-8 */
    "\xf4\x90\x80\x80",     /* > U+10FFFF */
    "\xf5\x80\x80\x80",
    "\xf8\x88\x80\x80\x80",
    "\xfe",
    "\xff",
    "\xc3",                 /* cut off */
    "\xe2\x82",             /* cut off */
    "\xf0\x9f\x98",         /* cut off */
    "\xc3\x28",             /* bad continuation */
    "\xe2\x28\xa1",
    "\xf0\x9f\x28\x80",
    "abcdefgh\xc3",         /* cut off after an ASCII run */
    "abcdefghijklmnop\x80",
};

static const char *const good_utf8[] = {
    "",
    "plain ascii, longer than eight bytes",
    "\x7f",
    "\xc2\x80",             /* U+0080 */
    "\xdf\xbf",             /* U+07FF */
    "\xe0\xa0\x80",         /* U+0800 */
    "\xed\x9f\xbf",         /* U+D7FF */
    "\xee\x80\x80",         /* U+E000 */
    "\xef\xbf\xbf",         /* U+FFFF */
    "\xf0\x90\x80\x80",     /* U+10000 */
    "\xf4\x8f\xbf\xbf",     /* U+10FFFF */
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", /* κόσμε */
    "12345678\xe2\x82\xac" "12345678\xf0\x9f\x98\x80",
};

static void test_utf8_validator(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        const uint8_t *p = (const uint8_t *)bad_utf8[i];
        size_t n = strlen(bad_utf8[i]);
        assert_false(ws_utf8_valid(p, n));
        /* byte by byte: some call fails or the end state is not 0 */
        uint32_t st = 0;
        bool ok = true;
        for (size_t k = 0; k < n && ok; k++)
            ok = ws_utf8_feed(&st, p + k, 1);
        assert_false(ok && st == 0);
    }
    for (size_t i = 0; i < sizeof(good_utf8) / sizeof(good_utf8[0]); i++) {
        const uint8_t *p = (const uint8_t *)good_utf8[i];
        size_t n = strlen(good_utf8[i]);
        assert_true(ws_utf8_valid(p, n));
        /* every split point */
        for (size_t cut = 0; cut <= n; cut++) {
            uint32_t st = 0;
            assert_true(ws_utf8_feed(&st, p, cut));
            assert_true(ws_utf8_feed(&st, p + cut, n - cut));
            assert_int_equal(st, 0);
        }
    }
    /* With ASCII before and after, at every length up to two words on each
     * side: the word-at-a-time runs, the overlapping last word and the
     * all-ASCII first look must neither hide a bad sequence nor refuse a
     * good one, whole or fed in two parts. */
    for (int bad = 0; bad < 2; bad++) {
        const char *const *set = bad ? bad_utf8 : good_utf8;
        size_t count = bad ? sizeof(bad_utf8) / sizeof(bad_utf8[0])
                           : sizeof(good_utf8) / sizeof(good_utf8[0]);
        for (size_t i = 0; i < count; i++) {
            size_t m = strlen(set[i]);
            for (size_t pre = 0; pre <= 17; pre++) {
                for (size_t post = 0; post <= 17; post++) {
                    uint8_t buf[96];
                    memset(buf, 'x', sizeof(buf));
                    memcpy(buf + pre, set[i], m);
                    size_t n = pre + m + post;
                    assert_int_equal(ws_utf8_valid(buf, n), !bad);
                    uint32_t st = 0;
                    bool ok = ws_utf8_feed(&st, buf, pre + 1 > n ? n : pre + 1);
                    if (ok && pre + 1 < n)
                        ok = ws_utf8_feed(&st, buf + pre + 1, n - pre - 1);
                    assert_int_equal(ok && st == 0, !bad);
                }
            }
        }
    }
    /* ws_ascii: one byte >= 0x80 anywhere, at any length */
    for (size_t n = 0; n <= 40; n++) {
        uint8_t buf[40];
        memset(buf, 'a', sizeof(buf));
        assert_true(ws_ascii(buf, n));
        for (size_t k = 0; k < n; k++) {
            buf[k] = 0x80;
            assert_false(ws_ascii(buf, n));
            buf[k] = 0x7f;
            assert_true(ws_ascii(buf, n));
            buf[k] = 'a';
        }
    }
    /* a NUL byte is valid UTF-8 */
    assert_true(ws_utf8_valid((const uint8_t *)"a\0b", 3));
    /* an incomplete sequence leaves a non-zero state */
    uint32_t st = 0;
    assert_true(ws_utf8_feed(&st, (const uint8_t *)"\xe2\x82", 2));
    assert_int_not_equal(st, 0);
}

static void test_invalid_utf8_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        bytes b = { 0 };
        add_client_str(&b, WS_OP_TEXT, bad_utf8[i]);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);
        /* the same bytes in a binary message are fine */
        b.len = 0;
        add_client_str(&b, WS_OP_BINARY, bad_utf8[i]);
        assert_int_equal(error_of(&b, 1000), 0);
        bytes_free(&b);
    }
    /* no callback for a rejected message */
    bytes b = { 0 };
    add_client_str(&b, WS_OP_TEXT, "ok");
    add_client_str(&b, WS_OP_TEXT, "bad \xed\xa0\x80");
    collector c = { 0 };
    assert_int_equal(decode_with(&b, 1000, WHOLE, 0, &c), WS_CLOSE_INVALID_DATA);
    assert_int_equal(c.n, 1);
    collector_free(&c);
    bytes_free(&b);
}

static void test_utf8_across_fragments(void **state)
{
    (void)state;
    bytes b = { 0 };
    collector c = { 0 };
    /* "€" = E2 82 AC split over three fragments with a ping between */
    add_frame(&b, false, 0, WS_OP_TEXT, "x\xe2", 2, true);
    add_frame(&b, true, 0, WS_OP_PING, "", 0, true);
    add_frame(&b, false, 0, WS_OP_CONT, "\x82", 1, true);
    add_frame(&b, true, 0, WS_OP_CONT, "\xac!", 2, true);
    for (uint64_t seed = 0; seed <= 10; seed++) {
        assert_int_equal(decode_with(&b, 1000, seed ? RANDOM : BYTEWISE, seed, &c), 0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.data[1].len, 5);
        assert_memory_equal(c.data[1].p, "x\xe2\x82\xac!", 5);
        collector_free(&c);
    }
    /* an invalid continuation in the next fragment */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, "\xe2\x82", 2, true);
    add_frame(&b, true, 0, WS_OP_CONT, "(", 1, true);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);
    /* a surrogate split over fragments */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, "\xed", 1, true);
    add_frame(&b, true, 0, WS_OP_CONT, "\xa0\x80", 2, true);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);
    /* an overlong split over fragments */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, "ab\xe0", 3, true);
    add_frame(&b, true, 0, WS_OP_CONT, "\x80\x80", 2, true);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);
    /* the message ends inside a sequence: the last fragment is fine by
     * itself but the sequence is cut off */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, "ok", 2, true);
    add_frame(&b, true, 0, WS_OP_CONT, "\xf0\x9f\x98", 3, true);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);
    /* a sequence left open in one message does not leak into the next
     * (each message starts from a clean state): "\xc3" then "\xa9" in a
     * new message must fail, not join up */
    b.len = 0;
    add_client_str(&b, WS_OP_TEXT, "\xc3");
    add_client_str(&b, WS_OP_TEXT, "\xa9");
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);
    bytes_free(&b);
}

/* --- close frames --------------------------------------------------------- */

static void close_payload(bytes *b, unsigned code, const char *reason, size_t rlen)
{
    uint8_t p[125];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rlen);
    b->len = 0;
    add_client(b, WS_OP_CLOSE, p, 2 + rlen);
}

/* Issue 11: a text frame with FIN=0 and no payload left the reassembly
 * buffer NULL and reached memcpy(NULL, p, 0), which UBSan stops the node
 * for. Empty fragments, first, middle or last, and a message made of
 * nothing but empty fragments decode in every chunking. */
static void test_empty_fragments(void **state)
{
    (void)state;
    bytes b = { 0 };
    add_frame(&b, false, 0, WS_OP_TEXT, "", 0, true);
    add_frame(&b, false, 0, WS_OP_CONT, "ab", 2, true);
    add_frame(&b, false, 0, WS_OP_CONT, "", 0, true);
    add_frame(&b, true, 0, WS_OP_CONT, "c", 1, true);
    /* all empty: an empty message */
    add_frame(&b, false, 0, WS_OP_BINARY, "", 0, true);
    add_frame(&b, true, 0, WS_OP_CONT, "", 0, true);
    add_frame(&b, false, 0, WS_OP_TEXT, "", 0, true);
    add_frame(&b, true, 0, WS_OP_CONT, "", 0, true);
    /* an empty unfragmented text, and an empty ping */
    add_client(&b, WS_OP_TEXT, "", 0);
    add_client(&b, WS_OP_PING, "", 0);
    for (int how = WHOLE; how <= RANDOM; how++) {
        collector c = { 0 };
        assert_int_equal(decode_with(&b, 1000, (enum chunking)how, 7, &c), 0);
        assert_int_equal(c.n, 5);
        assert_int_equal(c.op[0], WS_OP_TEXT);
        assert_int_equal(c.data[0].len, 3);
        assert_memory_equal(c.data[0].p, "abc", 3);
        assert_int_equal(c.op[1], WS_OP_BINARY);
        assert_int_equal(c.data[1].len, 0);
        assert_int_equal(c.op[2], WS_OP_TEXT);
        assert_int_equal(c.data[2].len, 0);
        assert_int_equal(c.op[3], WS_OP_TEXT);
        assert_int_equal(c.data[3].len, 0);
        assert_int_equal(c.op[4], WS_OP_PING);
        collector_free(&c);
    }
    bytes_free(&b);
}

static void test_close_frames(void **state)
{
    (void)state;
    bytes b = { 0 };
    collector c = { 0 };

    /* no payload: fine (1005 is implied) */
    add_client(&b, WS_OP_CLOSE, "", 0);
    assert_int_equal(decode_with(&b, 1000, WHOLE, 0, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.op[0], WS_OP_CLOSE);
    assert_int_equal(c.data[0].len, 0);
    collector_free(&c);

    /* code + reason: handed up raw */
    close_payload(&b, 1000, "bye \xc3\xa9", 6);
    assert_int_equal(decode_with(&b, 1000, BYTEWISE, 0, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.op[0], WS_OP_CLOSE);
    assert_int_equal(c.data[0].len, 8);
    assert_int_equal(c.data[0].p[0], 0x03);
    assert_int_equal(c.data[0].p[1], 0xe8);
    assert_memory_equal(c.data[0].p + 2, "bye \xc3\xa9", 6);
    collector_free(&c);

    /* the longest reason that fits */
    char reason[123];
    memset(reason, 'r', sizeof(reason));
    close_payload(&b, 4999, reason, sizeof(reason));
    assert_int_equal(decode_with(&b, 1000, RANDOM, 3, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.data[0].len, 125);
    collector_free(&c);

    /* a 1-byte payload */
    b.len = 0;
    add_client(&b, WS_OP_CLOSE, "\x03", 1);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);

    /* 1012-1014 are registered (service restart, try again later, bad
     * gateway): a peer may send them. */
    const unsigned good[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                              1012, 1013, 1014, 3000, 3999, 4000, 4999 };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        close_payload(&b, good[i], "", 0);
        assert_int_equal(error_of(&b, 1000), 0);
    }
    const unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                             5000, 65535 };
    for (unsigned code = 0; code < 70000; code++) {
        bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                     (code >= 3000 && code <= 4999);
        assert_int_equal(ws_close_code_valid(code), valid);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        close_payload(&b, bad[i], "", 0);
        assert_int_equal(error_of(&b, 1000), WS_CLOSE_PROTOCOL);
    }
    /* a reason that is not UTF-8 */
    close_payload(&b, 1000, "\xff", 1);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);
    close_payload(&b, 1001, "cut \xe2\x82", 6);
    assert_int_equal(error_of(&b, 1000), WS_CLOSE_INVALID_DATA);

    /* a close frame in the middle of a fragmented message is allowed */
    b.len = 0;
    add_frame(&b, false, 0, WS_OP_TEXT, "a", 1, true);
    add_client(&b, WS_OP_CLOSE, "\x03\xe8", 2);
    assert_int_equal(decode_with(&b, 1000, WHOLE, 0, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.op[0], WS_OP_CLOSE);
    collector_free(&c);
    bytes_free(&b);
}

/* --- upgrade check ------------------------------------------------------- *
 * ws_check_upgrade reads headers through http_request_header(). The test
 * binary defines that function itself (so the linker does not pull
 * http_server.o from libcommon.a) over a plain table pointed to by
 * req->priv: this tests ws_check_upgrade's own logic without a socket. */

struct fake_headers {
    const char *names[8];
    const char *values[8];
    int n;
};

const char *http_request_header(const http_request *req, const char *name)
{
    const struct fake_headers *h = req->priv;
    for (int i = 0; i < h->n; i++)
        if (strcasecmp(h->names[i], name) == 0)
            return h->values[i];
    return NULL;
}

static void set_header(struct fake_headers *h, const char *name, const char *value)
{
    for (int i = 0; i < h->n; i++) {
        if (strcasecmp(h->names[i], name) == 0) {
            if (value == NULL) {
                h->names[i] = h->names[h->n - 1];
                h->values[i] = h->values[h->n - 1];
                h->n--;
            } else {
                h->values[i] = value;
            }
            return;
        }
    }
    if (value != NULL) {
        h->names[h->n] = name;
        h->values[h->n++] = value;
    }
}

static void good_handshake(struct fake_headers *h, http_request *req)
{
    memset(h, 0, sizeof(*h));
    memset(req, 0, sizeof(*req));
    req->method = "GET";
    req->path = "/";
    req->query = "";
    req->body = "";
    req->priv = h;
    set_header(h, "Host", "localhost:8080");
    set_header(h, "Upgrade", "websocket");
    set_header(h, "Connection", "Upgrade");
    set_header(h, "Sec-WebSocket-Version", "13");
    set_header(h, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
}

static int check(const http_request *req, int *status, const char **key)
{
    char err[128] = "";
    *key = NULL;
    int rc = ws_check_upgrade(req, key, status, err, sizeof(err));
    if (rc != 0)
        assert_true(err[0] != '\0');
    return rc;
}

static void test_check_upgrade(void **state)
{
    (void)state;
    struct fake_headers h;
    http_request req;
    int status;
    const char *key;

    good_handshake(&h, &req);
    assert_int_equal(check(&req, &status, &key), 0);
    assert_string_equal(key, "dGhlIHNhbXBsZSBub25jZQ==");

    /* tokens in lists, any case, with spaces */
    good_handshake(&h, &req);
    set_header(&h, "Connection", "keep-alive, Upgrade");
    set_header(&h, "Upgrade", "WebSocket");
    assert_int_equal(check(&req, &status, &key), 0);
    good_handshake(&h, &req);
    set_header(&h, "Connection", "keep-alive ,\tupgrade\t");
    assert_int_equal(check(&req, &status, &key), 0);

    /* not GET */
    good_handshake(&h, &req);
    req.method = "POST";
    assert_int_equal(check(&req, &status, &key), -1);
    assert_int_equal(status, 400);

    /* Host missing (an HTTP/1.0 request gets this far without one) */
    good_handshake(&h, &req);
    set_header(&h, "Host", NULL);
    assert_int_equal(check(&req, &status, &key), -1);
    assert_int_equal(status, 400);
    assert_null(key);
    good_handshake(&h, &req);
    set_header(&h, "Host", "");
    assert_int_equal(check(&req, &status, &key), 0);

    /* Upgrade missing or wrong */
    good_handshake(&h, &req);
    set_header(&h, "Upgrade", NULL);
    assert_int_equal(check(&req, &status, &key), -1);
    assert_int_equal(status, 400);
    good_handshake(&h, &req);
    set_header(&h, "Upgrade", "h2c");
    assert_int_equal(check(&req, &status, &key), -1);
    good_handshake(&h, &req);
    set_header(&h, "Upgrade", "websockets");
    assert_int_equal(check(&req, &status, &key), -1);

    /* Connection missing or without upgrade */
    good_handshake(&h, &req);
    set_header(&h, "Connection", NULL);
    assert_int_equal(check(&req, &status, &key), -1);
    assert_int_equal(status, 400);
    good_handshake(&h, &req);
    set_header(&h, "Connection", "keep-alive");
    assert_int_equal(check(&req, &status, &key), -1);
    good_handshake(&h, &req);
    set_header(&h, "Connection", "upgraded");
    assert_int_equal(check(&req, &status, &key), -1);

    /* version: 426 */
    good_handshake(&h, &req);
    set_header(&h, "Sec-WebSocket-Version", "8");
    assert_int_equal(check(&req, &status, &key), -1);
    assert_int_equal(status, 426);
    good_handshake(&h, &req);
    set_header(&h, "Sec-WebSocket-Version", NULL);
    assert_int_equal(check(&req, &status, &key), -1);
    assert_int_equal(status, 426);
    good_handshake(&h, &req);
    set_header(&h, "Sec-WebSocket-Version", "13 ");
    assert_int_equal(check(&req, &status, &key), -1);
    assert_int_equal(status, 426);

    /* key: must be 16 bytes in base64 */
    const char *bad_keys[] = {
        NULL,
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",       /* 23 chars */
        "dGhlIHNhbXBsZSBub25jZQ===",     /* 25 chars */
        "dGhlIHNhbXBsZSBub25jZQAA",      /* 18 bytes, no padding */
        "dGhlIHNhbXBsZSBub25j!Q==",      /* not base64 */
        "dGhlIHNhbXBsZQ==",              /* 10 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",      /* "Z===": three pads, not base64 */
        "dGhlIHNhbXBsZSBub25jZR==",      /* 'R' carries bits past 16 bytes */
    };
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        good_handshake(&h, &req);
        set_header(&h, "Sec-WebSocket-Key", bad_keys[i]);
        assert_int_equal(check(&req, &status, &key), -1);
        assert_int_equal(status, 400);
        assert_null(key);
    }
    good_handshake(&h, &req);
    set_header(&h, "Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==");
    assert_int_equal(check(&req, &status, &key), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_decode_all_chunkings),
        cmocka_unit_test(test_length_encodings),
        cmocka_unit_test(test_non_minimal_length_rejected),
        cmocka_unit_test(test_fragmented_with_ping),
        cmocka_unit_test(test_fragmentation_order),
        cmocka_unit_test(test_masking_by_role),
        cmocka_unit_test(test_rsv_bits),
        cmocka_unit_test(test_unknown_opcode),
        cmocka_unit_test(test_control_frame_limits),
        cmocka_unit_test(test_message_too_big),
        cmocka_unit_test(test_length_checked_at_header),
        cmocka_unit_test(test_fragments_checked_at_header),
        cmocka_unit_test(test_sticky_error),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_masked_frame_cut_anywhere),
        cmocka_unit_test(test_decoders_interleaved),
        cmocka_unit_test(test_utf8_validator),
        cmocka_unit_test(test_invalid_utf8_text),
        cmocka_unit_test(test_utf8_across_fragments),
        cmocka_unit_test(test_empty_fragments),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_check_upgrade),
    };
    return cmocka_run_group_tests_name("ws", tests, NULL, NULL);
}
