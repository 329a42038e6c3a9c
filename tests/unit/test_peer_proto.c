/* Unit tests for node/peer_proto.c: the length-prefixed binary frames of
 * the links between nodes (HELLO with its magic, MSG), their encoding, and
 * the incremental decoder: any chunking, frames back to back, the size
 * bound and every malformed-frame error, with no read beyond the input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/msgbuf.h"
#include "node/message.h"
#include "node/peer_proto.h"

/* A hello's payload: the magic and a nonce; and one with a wrong magic. */
static const char HP[4 + PEER_NONCE_LEN] = "DCHTnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";
static const char HPX[4 + PEER_NONCE_LEN] = "DCHXnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";
static const uint8_t NONCE[PEER_NONCE_LEN] = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";

/* --- helpers ---------------------------------------------------------------- */

typedef struct {
    char *p;
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

static void bytes_add_buf(bytes *b, msgbuf *m)
{
    bytes_add(b, m->data, m->len);
    msgbuf_unref(m);
}

static void bytes_free(bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static void put32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (24 - 8 * i));
}

static uint32_t get32(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | (uint8_t)p[i];
    return v;
}

static uint64_t get64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (uint8_t)p[i];
    return v;
}

/* A copy of one decoded frame (the decoder's strings live only during the
 * callback). */
typedef struct {
    uint8_t type;
    uint16_t flags;
    uint32_t origin;
    uint64_t seq;
    uint64_t time_ms;
    int64_t chat_id;
    uint32_t msg_origin;
    uint64_t msg_seq;
    char *sender;
    uint32_t sender_len;
    char *text;
    uint32_t text_len;
    bool plain;
} got_frame;

#define MAX_FRAMES 256
typedef struct {
    size_t n;
    got_frame f[MAX_FRAMES];
    size_t stop_at; /* non-zero: stop after this many frames */
} collector;

static char *dup_mem(const char *p, size_t n)
{
    char *c = malloc(n + 1);
    assert_non_null(c);
    if (n)
        memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

static int collect_cb(const struct peer_frame *f, void *ud)
{
    collector *c = ud;
    assert_true(c->n < MAX_FRAMES);
    got_frame *g = &c->f[c->n++];
    memset(g, 0, sizeof(*g));
    g->type = f->type;
    g->flags = f->flags;
    g->origin = f->origin;
    g->seq = f->seq;
    if (f->type == PEER_MSG) {
        g->time_ms = f->msg.time_ms;
        g->chat_id = f->msg.chat_id;
        g->msg_origin = f->msg.origin;
        g->msg_seq = f->msg.seq;
        /* empty strings too point into the frame (message.h: never NULL) */
        assert_non_null(f->msg.sender);
        assert_non_null(f->msg.text);
        g->sender = dup_mem(f->msg.sender, f->msg.sender_len);
        g->sender_len = f->msg.sender_len;
        g->text = dup_mem(f->msg.text, f->msg.text_len);
        g->text_len = f->msg.text_len;
        g->plain = f->msg.plain;
    }
    return c->stop_at != 0 && c->n == c->stop_at;
}

static void collector_free(collector *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->f[i].sender);
        free(c->f[i].text);
    }
    memset(c, 0, sizeof(*c));
}

static void assert_same(const collector *a, const collector *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const got_frame *x = &a->f[i], *y = &b->f[i];
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->origin, y->origin);
        assert_int_equal(x->seq, y->seq);
        assert_int_equal(x->time_ms, y->time_ms);
        assert_int_equal(x->chat_id, y->chat_id);
        assert_int_equal(x->sender_len, y->sender_len);
        assert_int_equal(x->text_len, y->text_len);
        if (x->type == PEER_MSG) {
            assert_memory_equal(x->sender, y->sender, x->sender_len);
            assert_memory_equal(x->text, y->text, x->text_len);
        }
    }
}

static uint64_t rng_state;
static uint32_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

enum chunking { WHOLE, BYTEWISE, RANDOM };

/* Feeds buf to d in the given chunking until a non-zero result, which it
 * returns (err gets the error text). Each chunk is a heap copy of exactly
 * its size: ASan reports any read beyond it. */
static int feed(peer_decoder *d, const char *buf, size_t len, enum chunking how,
                uint64_t seed, collector *c, char *err, size_t errlen)
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
            n = 1 + rng_next() % (rng_next() % 4 == 0 ? 3000 : 30);
        if (n > len - off)
            n = len - off;
        char *chunk = malloc(n);
        assert_non_null(chunk);
        memcpy(chunk, buf + off, n);
        int rc = peer_decoder_feed(d, chunk, n, collect_cb, c, err, errlen);
        free(chunk);
        off += n;
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int decode_with(const bytes *b, size_t max, enum chunking how, uint64_t seed,
                       collector *c, char *err, size_t errlen)
{
    peer_decoder d;
    peer_decoder_init(&d, max);
    int rc = feed(&d, b->p, b->len, how, seed, c, err, errlen);
    peer_decoder_free(&d);
    return rc;
}

/* The result of decoding b, the same in every chunking; err gets the text. */
static int result_of(const bytes *b, size_t max, char *err, size_t errlen)
{
    int first = -100;
    for (int how = WHOLE; how <= RANDOM; how++) {
        for (uint64_t seed = 1; seed <= (how == RANDOM ? 5u : 1u); seed++) {
            collector c = { 0 };
            err[0] = '\0';
            int rc = decode_with(b, max, (enum chunking)how, seed, &c, err, errlen);
            collector_free(&c);
            if (first == -100)
                first = rc;
            assert_int_equal(rc, first);
            if (rc == -1)
                assert_true(err[0] != '\0');
        }
    }
    return first;
}

static struct chat_message make_msg(uint32_t origin, uint64_t seq, const char *sender,
                                    const char *text, size_t text_len)
{
    struct chat_message m;
    memset(&m, 0, sizeof(m));
    m.origin = origin;
    m.seq = seq;
    m.time_ms = 1795000000123ull + seq;
    m.chat_id = (int64_t)seq * 1000 - 7;
    m.sender = sender;
    m.sender_len = (uint32_t)strlen(sender);
    m.text = text;
    m.text_len = (uint32_t)text_len;
    return m;
}

/* --- encoding -------------------------------------------------------------- */

static void test_hello_bytes(void **state)
{
    (void)state;
    msgbuf *b = peer_proto_hello(0x01020304, 0, NONCE);
    assert_int_equal(b->refs, 1);
    assert_int_equal(b->len, PEER_PROTO_HEADER + 4 + PEER_NONCE_LEN);
    const unsigned char want[] = {
        0, 0, 0, 52,                  /* length of the rest */
        2,                            /* version */
        1,                            /* HELLO */
        0, 0,                         /* flags */
        1, 2, 3, 4,                   /* origin */
        0, 0, 0, 0, 0, 0, 0, 0,       /* seq */
        'D', 'C', 'H', 'T',           /* magic */
    };
    assert_memory_equal(b->data, want, sizeof(want));
    assert_memory_equal(b->data + sizeof(want), NONCE, PEER_NONCE_LEN); /* nonce */
    msgbuf_unref(b);
}

static void test_msg_bytes(void **state)
{
    (void)state;
    struct chat_message m = make_msg(7, 0x0102030405ull, "bob", "hi!", 3);
    m.time_ms = 0x1122334455667788ull;
    m.chat_id = -2;
    msgbuf *b = peer_proto_msg(&m, 0);
    size_t payload = 22 + 3 + 3;
    assert_int_equal(b->len, PEER_PROTO_HEADER + payload);
    assert_int_equal(get32(b->data), 16 + payload);
    assert_int_equal((uint8_t)b->data[4], PEER_PROTO_VERSION);
    assert_int_equal((uint8_t)b->data[5], PEER_MSG);
    assert_int_equal((uint8_t)b->data[6], 0);
    assert_int_equal((uint8_t)b->data[7], 0);
    assert_int_equal(get32(b->data + 8), 7);
    assert_int_equal(get64(b->data + 12), 0x0102030405ull);
    const char *p = b->data + PEER_PROTO_HEADER;
    assert_int_equal(get64(p), 0x1122334455667788ull);
    assert_int_equal(get64(p + 8), 0xfffffffffffffffeull);
    assert_int_equal((uint8_t)p[16], 0);
    assert_int_equal((uint8_t)p[17], 3);
    assert_int_equal(get32(p + 18), 3);
    assert_memory_equal(p + 22, "bobhi!", 6);

    /* a repair's flag sits in the header and nowhere else */
    msgbuf *r = peer_proto_msg(&m, PEER_MSG_REPAIR);
    assert_int_equal(r->len, b->len);
    assert_int_equal((uint8_t)r->data[6], 0);
    assert_int_equal((uint8_t)r->data[7], PEER_MSG_REPAIR);
    assert_memory_equal(r->data, b->data, 6);
    assert_memory_equal(r->data + 8, b->data + 8, r->len - 8);
    msgbuf_unref(r);
    msgbuf_unref(b);
}

static void test_round_trip(void **state)
{
    (void)state;
    bytes s = { 0 };
    bytes_add_buf(&s, peer_proto_hello(42, 0, NONCE));
    bytes_add_buf(&s, peer_proto_hello(INT32_MAX, 0, NONCE));
    const char *text = "h\xc3\xa9llo \"w\\orld\"\n\xf0\x9f\x98\x80";
    struct chat_message m1 = make_msg(42, 1, "alice", text, strlen(text));
    struct chat_message m2 = make_msg(INT32_MAX, MESSAGE_SEQ_LIMIT - 1, "", "", 0);
    m2.chat_id = INT64_MIN;
    m2.time_ms = UINT64_MAX;
    struct chat_message m3 = make_msg(3, 9, "z", "with\0nul", 8);
    struct chat_message m4 = make_msg(4, 2, "bob", "plain text, 0-9 ~!", 18);
    struct chat_message m5 = make_msg(5, 3, "quote\"d", "fine", 4);
    bytes_add_buf(&s, peer_proto_msg(&m1, 0));
    bytes_add_buf(&s, peer_proto_msg(&m2, 0));
    bytes_add_buf(&s, peer_proto_msg(&m3, 0));
    bytes_add_buf(&s, peer_proto_msg(&m4, 0));
    bytes_add_buf(&s, peer_proto_msg(&m5, 0));

    collector c = { 0 };
    char err[128] = "";
    assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, WHOLE, 0, &c, err, sizeof(err)), 0);
    assert_int_equal(c.n, 7);
    assert_int_equal(c.f[0].type, PEER_HELLO);
    assert_int_equal(c.f[0].origin, 42);
    assert_int_equal(c.f[0].seq, 0);
    assert_int_equal(c.f[1].type, PEER_HELLO);
    assert_int_equal(c.f[1].origin, INT32_MAX);

    const struct chat_message *want[] = { &m1, &m2, &m3, &m4, &m5 };
    /* plain: printable ASCII without '"' and '\\' in both (an empty one
     * is); m1 has escapes and UTF-8, m3 a NUL, m5 a quote in its sender */
    const bool plain[] = { false, true, false, true, false };
    for (int i = 0; i < 5; i++) {
        const got_frame *g = &c.f[2 + i];
        const struct chat_message *m = want[i];
        assert_int_equal(g->type, PEER_MSG);
        assert_int_equal(g->origin, m->origin);
        assert_int_equal(g->seq, m->seq);
        assert_int_equal(g->msg_origin, m->origin);
        assert_int_equal(g->msg_seq, m->seq);
        assert_int_equal(g->time_ms, m->time_ms);
        assert_true(g->chat_id == m->chat_id);
        assert_int_equal(g->sender_len, m->sender_len);
        assert_memory_equal(g->sender, m->sender, m->sender_len);
        assert_int_equal(g->text_len, m->text_len);
        assert_memory_equal(g->text, m->text, m->text_len);
        assert_int_equal(g->plain, plain[i]);
    }
    collector_free(&c);
    bytes_free(&s);
}

static void test_chunkings(void **state)
{
    (void)state;
    /* Many frames back to back, small and large (one over the 64 KiB at
     * which the decoder gives its buffer back), in every chunking. */
    bytes s = { 0 };
    bytes_add_buf(&s, peer_proto_hello(5, 0, NONCE));
    char *big = malloc(200000);
    assert_non_null(big);
    for (size_t i = 0; i < 200000; i++)
        big[i] = (char)('a' + i % 26);
    /* multi-byte UTF-8 in the big text so a split inside a sequence cannot
     * matter */
    memcpy(big + 1000, "\xe2\x82\xac\xf0\x9f\x98\x80", 7);
    char sender[MESSAGE_SENDER_MAX + 1];
    memset(sender, 's', MESSAGE_SENDER_MAX);
    sender[MESSAGE_SENDER_MAX] = '\0';
    for (uint64_t i = 1; i <= 60; i++) {
        size_t tl = (i * 37) % 500;
        if (i == 20)
            tl = 70000;
        if (i == 40)
            tl = 200000;
        struct chat_message m = make_msg(5, i, i == 30 ? sender : "node-5 user", big, tl);
        bytes_add_buf(&s, peer_proto_msg(&m, 0));
    }
    collector ref = { 0 };
    char err[128] = "";
    assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, WHOLE, 0, &ref, err, sizeof(err)), 0);
    assert_int_equal(ref.n, 61);
    assert_int_equal(ref.f[0].type, PEER_HELLO);
    for (size_t i = 1; i <= 60; i++) {
        assert_int_equal(ref.f[i].type, PEER_MSG);
        assert_int_equal(ref.f[i].seq, i);
    }
    assert_int_equal(ref.f[20].text_len, 70000);
    assert_int_equal(ref.f[40].text_len, 200000);
    assert_memory_equal(ref.f[40].text, big, 200000);
    assert_int_equal(ref.f[30].sender_len, MESSAGE_SENDER_MAX);

    collector c = { 0 };
    assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, BYTEWISE, 0, &c, err, sizeof(err)), 0);
    assert_same(&ref, &c);
    collector_free(&c);
    for (uint64_t seed = 1; seed <= 30; seed++) {
        assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, RANDOM, seed, &c, err,
                                     sizeof(err)), 0);
        assert_same(&ref, &c);
        collector_free(&c);
    }
    /* split exactly at every offset of a small stream: two chunks */
    bytes small = { 0 };
    bytes_add_buf(&small, peer_proto_hello(9, 0, NONCE));
    struct chat_message m = make_msg(9, 1, "x", "yz", 2);
    bytes_add_buf(&small, peer_proto_msg(&m, 0));
    bytes_add_buf(&small, peer_proto_hello(10, 0, NONCE));
    for (size_t cut = 0; cut <= small.len; cut++) {
        peer_decoder d;
        peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
        char *a = malloc(cut + 1), *b = malloc(small.len - cut + 1);
        memcpy(a, small.p, cut);
        memcpy(b, small.p + cut, small.len - cut);
        assert_int_equal(peer_decoder_feed(&d, a, cut, collect_cb, &c, err, sizeof(err)), 0);
        assert_int_equal(peer_decoder_feed(&d, b, small.len - cut, collect_cb, &c, err,
                                           sizeof(err)), 0);
        assert_int_equal(c.n, 3);
        assert_int_equal(c.f[2].origin, 10);
        free(a);
        free(b);
        collector_free(&c);
        peer_decoder_free(&d);
    }
    bytes_free(&small);
    collector_free(&ref);
    free(big);
    bytes_free(&s);
}

static void test_truncated_input(void **state)
{
    (void)state;
    /* Every proper prefix of a frame is "need more", with no callback and
     * no read past the prefix (heap copies of exact size). */
    struct chat_message m = make_msg(1, 1, "abc", "defgh", 5);
    msgbuf *b = peer_proto_msg(&m, 0);
    for (size_t n = 0; n < b->len; n++) {
        bytes pre = { 0 };
        bytes_add(&pre, b->data, n);
        collector c = { 0 };
        char err[64] = "";
        assert_int_equal(decode_with(&pre, PEER_PROTO_MAX_FRAME, WHOLE, 0, &c, err,
                                     sizeof(err)), 0);
        assert_int_equal(decode_with(&pre, PEER_PROTO_MAX_FRAME, BYTEWISE, 0, &c, err,
                                     sizeof(err)), 0);
        assert_int_equal(c.n, 0);
        bytes_free(&pre);
    }
    msgbuf_unref(b);
}

/* --- errors ---------------------------------------------------------------- */

/* A frame by hand: the length field covers the rest. */
static void raw_frame(bytes *s, uint8_t ver, uint8_t type, uint32_t origin, uint64_t seq,
                      const void *payload, size_t plen)
{
    char h[PEER_PROTO_HEADER];
    put32(h, (uint32_t)(16 + plen));
    h[4] = (char)ver;
    h[5] = (char)type;
    h[6] = 0;
    h[7] = 0;
    put32(h + 8, origin);
    for (int i = 0; i < 8; i++)
        h[12 + i] = (char)(seq >> (56 - 8 * i));
    bytes_add(s, h, sizeof(h));
    bytes_add(s, payload, plen);
}

static void test_bad_frames(void **state)
{
    (void)state;
    char err[128];
    bytes s = { 0 };

    /* the good hello by hand, to know raw_frame is right */
    raw_frame(&s, PEER_PROTO_VERSION, PEER_HELLO, 3, 0, HP, sizeof(HP));
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), 0);

    /* wrong version */
    s.len = 0;
    raw_frame(&s, 1, PEER_HELLO, 3, 0, HP, sizeof(HP));
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version"));
    s.len = 0;
    raw_frame(&s, 0, PEER_HELLO, 3, 0, HP, sizeof(HP));
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);

    /* wrong magic, or a magic of the wrong size */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_HELLO, 3, 0, HPX, sizeof(HPX));
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "magic"));
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_HELLO, 3, 0, "DCHTx", 5);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_HELLO, 3, 0, "", 0);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);

    /* hello with node id 0 or above INT32_MAX */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_HELLO, 0, 0, HP, sizeof(HP));
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_HELLO, 0x80000000u, 0, HP, sizeof(HP));
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);

    /* unknown types */
    const uint8_t types[] = { 0, 5, 99, 255 };
    for (size_t i = 0; i < sizeof(types); i++) {
        s.len = 0;
        raw_frame(&s, PEER_PROTO_VERSION, types[i], 3, 1, HP, sizeof(HP));
        assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "type"));
    }

    /* MARKS: a count that does not match the payload, a zero origin */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MARKS, 3, 0, "\0\0\0\2", 4);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "marks"));
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MARKS, 3, 0, "\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\5", 16);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "marks"));

    /* MARKS out of ascending origin order, or with an origin twice: refused
     * (receivers merge them with their own sorted origins). In order: fine. */
    const struct {
        uint32_t a, b;
        int rc;
    } orders[] = { { 5, 3, -1 }, { 4, 4, -1 }, { 3, 5, 0 }, { 2147483647u, 1, -1 } };
    for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
        char pl[4 + 3 * 12] = { 0 };
        put32(pl, 3);
        put32(pl + 4, 1);
        put32(pl + 16, orders[i].a);
        put32(pl + 28, orders[i].b);
        pl[39] = 7; /* the last entry's seq */
        s.len = 0;
        raw_frame(&s, PEER_PROTO_VERSION, PEER_MARKS, 3, 0, pl, sizeof(pl));
        assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), orders[i].rc);
        if (orders[i].rc != 0)
            assert_non_null(strstr(err, "ascending order"));
    }

    /* length field below the header size (16 is the least: ver..seq) */
    const uint32_t short_lens[] = { 0, 1, 4, 15 };
    for (size_t i = 0; i < 4; i++) {
        s.len = 0;
        char f[PEER_PROTO_HEADER] = { 0 };
        put32(f, short_lens[i]);
        f[4] = 1;
        f[5] = PEER_HELLO;
        bytes_add(&s, f, sizeof(f));
        bytes_add(&s, "DCHTDCHT", 8); /* so there are enough bytes either way */
        assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "shorter"));
    }

    /* length over the bound: refused from the length field alone, before
     * the rest arrives, in every chunking */
    s.len = 0;
    char lenonly[4];
    put32(lenonly, 1001);
    bytes_add(&s, lenonly, 4);
    assert_int_equal(result_of(&s, 1000, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer"));
    s.len = 0;
    put32(lenonly, 0xffffffffu);
    bytes_add(&s, lenonly, 4);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    /* ... and exactly the bound is fine */
    s.len = 0;
    struct chat_message m = make_msg(1, 1, "ab", "0123456789", 10);
    msgbuf *b = peer_proto_msg(&m, 0);
    bytes_add_buf(&s, b);
    size_t bound = s.len - 4;
    assert_int_equal(result_of(&s, bound, err, sizeof(err)), 0);
    assert_int_equal(result_of(&s, bound - 1, err, sizeof(err)), -1);
    bytes_free(&s);
}

static void test_bad_msg_frames(void **state)
{
    (void)state;
    char err[128];
    bytes s = { 0 };
    char p[64];
    memset(p, 0, sizeof(p));
    /* payload: time 8 | chat 8 | sender_len 2 | text_len 4 | "ab" "cd" */
    p[17] = 2;
    p[21] = 2;
    memcpy(p + 22, "abcd", 4);

    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, p, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), 0);

    /* origin 0, > INT32_MAX; seq 0, >= 10^12 */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 0, 1, p, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 0x80000000u, 1, p, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 0, p, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, MESSAGE_SEQ_LIMIT, p, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, MESSAGE_SEQ_LIMIT - 1, p, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), 0);

    /* payload shorter than its fixed part */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, p, 21);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "short"));
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, p, 0);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);

    /* inner lengths that do not add up to the frame, both ways, and ones
     * that would point far beyond it */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, p, 25);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "lengths"));
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, p, 27);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    char q[64];
    memcpy(q, p, sizeof(q));
    q[18] = 0x7f; /* text_len huge */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, q, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    memcpy(q, p, sizeof(q));
    q[16] = (char)0xff; /* sender_len huge */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, q, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    /* text_len + sender_len that wrap 32 bits still must not match */
    memcpy(q, p, sizeof(q));
    q[16] = 0;
    q[17] = 6;
    q[18] = (char)0xff;
    q[19] = (char)0xff;
    q[20] = (char)0xff;
    q[21] = (char)0xfe; /* 6 + 0xfffffffe wraps to 4 in 32 bits */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, q, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);

    /* invalid UTF-8 in sender, then in text */
    memcpy(q, p, sizeof(q));
    q[22] = (char)0xc0;
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, q, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "UTF-8"));
    memcpy(q, p, sizeof(q));
    q[25] = (char)0xe2; /* text ends inside a sequence */
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, q, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    /* a sequence that starts in the sender and ends in the text: the two
     * together are valid UTF-8 ("a" "\xc3\xa9" "d"), each alone is not */
    memcpy(q, p, sizeof(q));
    q[23] = (char)0xc3;
    q[24] = (char)0xa9;
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, q, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "UTF-8"));
    /* the same character whole in the text is fine */
    memcpy(q, p, sizeof(q));
    q[24] = (char)0xc3;
    q[25] = (char)0xa9;
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, q, 26);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), 0);

    /* sender over 256 bytes */
    char *longp = calloc(1, 22 + 257);
    longp[16] = 0x01;
    longp[17] = 0x01; /* 257 */
    memset(longp + 22, 's', 257);
    s.len = 0;
    raw_frame(&s, PEER_PROTO_VERSION, PEER_MSG, 3, 1, longp, 22 + 257);
    assert_int_equal(result_of(&s, PEER_PROTO_MAX_FRAME, err, sizeof(err)), -1);
    free(longp);
    bytes_free(&s);
}

static void test_refuses_after_error(void **state)
{
    (void)state;
    char err[128] = "";
    bytes s = { 0 };
    raw_frame(&s, 9, PEER_HELLO, 3, 0, HP, sizeof(HP));
    bytes good = { 0 };
    bytes_add_buf(&good, peer_proto_hello(4, 0, NONCE));
    /* a good frame before the bad one is delivered; none after */
    bytes all = { 0 };
    bytes_add(&all, good.p, good.len);
    bytes_add(&all, s.p, s.len);
    bytes_add(&all, good.p, good.len);
    peer_decoder d;
    peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
    collector c = { 0 };
    assert_int_equal(peer_decoder_feed(&d, all.p, all.len, collect_cb, &c, err, sizeof(err)), -1);
    assert_int_equal(c.n, 1);
    err[0] = '\0';
    assert_int_equal(peer_decoder_feed(&d, good.p, good.len, collect_cb, &c, err, sizeof(err)),
                     -1);
    assert_true(err[0] != '\0');
    assert_int_equal(c.n, 1);
    peer_decoder_free(&d);
    collector_free(&c);
    bytes_free(&s);
    bytes_free(&good);
    bytes_free(&all);
}

static void test_callback_stop(void **state)
{
    (void)state;
    char err[128] = "";
    bytes s = { 0 };
    for (uint32_t i = 1; i <= 5; i++)
        bytes_add_buf(&s, peer_proto_hello(i, 0, NONCE));
    for (int how = WHOLE; how <= BYTEWISE; how++) {
        collector c = { 0 };
        c.stop_at = 2;
        assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, (enum chunking)how, 0, &c, err,
                                     sizeof(err)), 1);
        assert_int_equal(c.n, 2);
        collector_free(&c);
    }
    bytes_free(&s);
}

static void test_error_text_truncated(void **state)
{
    (void)state;
    /* a small err buffer is filled, NUL-terminated, not overrun */
    bytes s = { 0 };
    raw_frame(&s, 7, PEER_HELLO, 3, 0, HP, sizeof(HP));
    char *err = malloc(8);
    collector c = { 0 };
    assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, WHOLE, 0, &c, err, 8), -1);
    assert_int_equal(strlen(err), 7);
    free(err);
    bytes_free(&s);
}

static int marks_cb(const struct peer_frame *f, void *ud)
{
    struct peer_frame *out = ud;
    assert_int_equal(f->type, PEER_MARKS);
    assert_int_equal(f->origin, 9);
    assert_int_equal(f->flags, PEER_MARKS_REFUSED);
    assert_int_equal(f->nmarks, 3);
    for (uint32_t i = 0; i < f->nmarks; i++) {
        uint32_t o;
        uint64_t q;
        peer_proto_mark(f, i, &o, &q);
        assert_int_equal(o, i + 1);
        assert_true(q == (i == 2 ? PEER_MARK_DIRECT : (uint64_t)i * 1000));
    }
    /* Found by origin; one the frame lacks has 0. */
    assert_int_equal(peer_proto_mark_of(f, 1), 0);
    assert_int_equal(peer_proto_mark_of(f, 2), 1000);
    assert_true(peer_proto_mark_of(f, 3) == PEER_MARK_DIRECT);
    assert_int_equal(peer_proto_mark_of(f, 4), 0);
    out->nmarks = f->nmarks;
    return 0;
}

static void test_marks_round_trip(void **state)
{
    (void)state;
    peer_marks_writer w;
    peer_proto_marks_begin(&w, 9, PEER_MARKS_REFUSED, 10);
    assert_int_equal(peer_proto_marks_add(&w, 1, 0), 0);
    assert_int_equal(peer_proto_marks_add(&w, 2, 1000), 0);
    assert_int_equal(peer_proto_marks_add(&w, 2, 5), -1); /* not ascending: left out */
    assert_int_equal(peer_proto_marks_add(&w, 1, 5), -1);
    assert_int_equal(peer_proto_marks_add(&w, 3, PEER_MARK_DIRECT), 0);
    msgbuf *b = peer_proto_marks_end(&w);
    assert_int_equal(b->len, PEER_PROTO_HEADER + 4 + 3 * 12);
    assert_int_equal(get32(b->data), b->len - 4);
    assert_int_equal((uint8_t)b->data[6] << 8 | (uint8_t)b->data[7], PEER_MARKS_REFUSED);
    /* whole, then byte by byte */
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        peer_decoder d;
        struct peer_frame got = { 0 };
        char err[128];
        peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
        if (bytewise) {
            for (uint32_t i = 0; i < b->len; i++)
                assert_int_equal(peer_decoder_feed(&d, b->data + i, 1, marks_cb, &got, err,
                                                   sizeof(err)), 0);
        } else {
            assert_int_equal(peer_decoder_feed(&d, b->data, b->len, marks_cb, &got, err,
                                               sizeof(err)), 0);
        }
        assert_int_equal(got.nmarks, 3);
        peer_decoder_free(&d);
    }
    msgbuf_unref(b);
}

static int count_cb(const struct peer_frame *f, void *ud)
{
    /* Entries 1 .. nmarks, each seq its origin: the search finds every
     * one, and nothing past the end. */
    for (uint32_t o = 1; o <= f->nmarks; o += 997)
        assert_int_equal(peer_proto_mark_of(f, o), o);
    assert_int_equal(peer_proto_mark_of(f, f->nmarks), f->nmarks);
    assert_int_equal(peer_proto_mark_of(f, f->nmarks + 1), 0);
    *(uint32_t *)ud = f->nmarks;
    return 0;
}

static void test_marks_writer_bounds(void **state)
{
    (void)state;
    /* Room for max entries only, and never more than fit one frame. */
    peer_marks_writer w;
    peer_proto_marks_begin(&w, 9, 0, 2);
    assert_int_equal(peer_proto_marks_add(&w, 1, 1), 0);
    assert_int_equal(peer_proto_marks_add(&w, 2, 1), 0);
    assert_int_equal(peer_proto_marks_add(&w, 3, 1), -1);
    msgbuf *b = peer_proto_marks_end(&w);
    assert_int_equal(get32(b->data + PEER_PROTO_HEADER), 2);
    msgbuf_unref(b);

    /* Empty. */
    peer_proto_marks_begin(&w, 9, 0, 0);
    b = peer_proto_marks_end(&w);
    assert_int_equal(b->len, PEER_PROTO_HEADER + 4);
    msgbuf_unref(b);

    assert_int_equal(PEER_PROTO_MAX_MARKS, 87379);
    peer_proto_marks_begin(&w, 9, 0, 200000);
    uint32_t added = 0;
    for (uint32_t o = 1; o <= 100000; o++)
        if (peer_proto_marks_add(&w, o, o) == 0)
            added++;
    assert_int_equal(added, PEER_PROTO_MAX_MARKS);
    b = peer_proto_marks_end(&w);
    assert_true(b->len - 4 <= PEER_PROTO_MAX_FRAME);
    peer_decoder d;
    char err[128];
    uint32_t got = 0;
    peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
    assert_int_equal(peer_decoder_feed(&d, b->data, b->len, count_cb, &got, err, sizeof(err)),
                     0);
    assert_int_equal(got, PEER_PROTO_MAX_MARKS);
    peer_decoder_free(&d);
    msgbuf_unref(b);
}

static int floors_cb(const struct peer_frame *f, void *ud)
{
    uint64_t *lows = ud;
    assert_int_equal(f->flags, PEER_MARKS_FLOORS);
    assert_int_equal(f->nmarks, 3);
    for (uint32_t i = 0; i < f->nmarks; i++)
        lows[i] = peer_proto_mark_floor(f, i);
    assert_int_equal(peer_proto_mark_of(f, 2), 1000);
    return 0;
}

/* The features a HELLO announces sit in its header's flags field, and the
 * decoder hands them up; the rest of the frame is what nodes before
 * retention send and read (they check only the payload: a flagged HELLO
 * is the same frame to them). */
static void test_hello_flags(void **state)
{
    (void)state;
    msgbuf *plain = peer_proto_hello(77, 0, NONCE);
    msgbuf *floors = peer_proto_hello(77, PEER_HELLO_FLOORS, NONCE);
    assert_int_equal(floors->len, plain->len);
    assert_int_equal((uint8_t)floors->data[6], 0);
    assert_int_equal((uint8_t)floors->data[7], PEER_HELLO_FLOORS);
    assert_int_equal((uint8_t)plain->data[7], 0);
    assert_memory_equal(floors->data, plain->data, 6);
    assert_memory_equal(floors->data + 8, plain->data + 8, plain->len - 8);

    bytes s = { 0 };
    bytes_add_buf(&s, floors);
    bytes_add_buf(&s, plain);
    /* whole, one byte at a time, and in random chunks */
    for (int how = WHOLE; how <= RANDOM; how++) {
        collector c = { 0 };
        char err[128] = "";
        assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, (enum chunking)how, 3, &c, err,
                                     sizeof(err)),
                         0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.f[0].type, PEER_HELLO);
        assert_int_equal(c.f[0].flags, PEER_HELLO_FLOORS);
        assert_int_equal(c.f[0].origin, 77);
        assert_int_equal(c.f[1].flags, 0);
        collector_free(&c);
    }
    bytes_free(&s);
}

/* What a MARKS frame's flags are on a link: floors only when the sender
 * trimmed something and both HELLOs announced PEER_HELLO_FLOORS; never
 * for a peer before retention, which would drop the link on them. */
static void test_marks_flags_by_link(void **state)
{
    (void)state;
    assert_int_equal(peer_proto_marks_flags(PEER_HELLO_FLOORS, false, false), 0);
    assert_int_equal(peer_proto_marks_flags(PEER_HELLO_FLOORS, false, true), PEER_MARKS_FLOORS);
    assert_int_equal(peer_proto_marks_flags(PEER_HELLO_FLOORS, true, true),
                     PEER_MARKS_FLOORS | PEER_MARKS_REFUSED);
    assert_int_equal(peer_proto_marks_flags(PEER_HELLO_FLOORS, true, false), PEER_MARKS_REFUSED);
    assert_int_equal(peer_proto_marks_flags(0, false, true), 0);
    assert_int_equal(peer_proto_marks_flags(0, true, true), PEER_MARKS_REFUSED);
    /* a feature bit we do not know does not stand for floors */
    assert_int_equal(peer_proto_marks_flags(0x8000, false, true), 0);

    /* and the frame a trimmed node writes for a peer before retention is
     * 12 bytes an entry, whatever floors it was handed */
    peer_marks_writer w;
    peer_proto_marks_begin(&w, 9, peer_proto_marks_flags(0, false, true), 4);
    assert_int_equal(peer_proto_marks_add_floor(&w, 1, 50, 40), 0);
    assert_int_equal(peer_proto_marks_add_floor(&w, 2, 60, 10), 0);
    msgbuf *b = peer_proto_marks_end(&w);
    assert_int_equal(b->len, PEER_PROTO_HEADER + 4 + 2 * 12);
    assert_int_equal((uint8_t)b->data[7], 0);
    bytes s = { 0 };
    bytes_add_buf(&s, b);
    collector c = { 0 };
    char err[128] = "";
    assert_int_equal(decode_with(&s, PEER_PROTO_MAX_FRAME, WHOLE, 0, &c, err, sizeof(err)), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.f[0].type, PEER_MARKS);
    collector_free(&c);
    bytes_free(&s);
}

/* With PEER_MARKS_FLOORS each entry carries the sender's low-water mark
 * (20 bytes); a frame without the flag reads as low-water marks 0; a mark
 * above its entry's highest is a bad frame. */
static void test_marks_with_floors(void **state)
{
    (void)state;
    peer_marks_writer w;
    peer_proto_marks_begin(&w, 9, PEER_MARKS_FLOORS, 10);
    assert_int_equal(peer_proto_marks_add_floor(&w, 1, 50, 40), 0);
    assert_int_equal(peer_proto_marks_add_floor(&w, 2, 1000, 0), 0);
    assert_int_equal(peer_proto_marks_add(&w, 3, PEER_MARK_DIRECT), 0);
    msgbuf *b = peer_proto_marks_end(&w);
    assert_int_equal(b->len, PEER_PROTO_HEADER + 4 + 3 * 20);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        peer_decoder d;
        uint64_t lows[3] = { 9, 9, 9 };
        char err[128];
        peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
        for (uint32_t i = 0; i < b->len; i += bytewise ? 1 : b->len)
            assert_int_equal(peer_decoder_feed(&d, b->data + i, bytewise ? 1 : b->len,
                                               floors_cb, lows, err, sizeof(err)), 0);
        assert_int_equal(lows[0], 40);
        assert_int_equal(lows[1], 0);
        assert_int_equal(lows[2], 0);
        peer_decoder_free(&d);
    }
    /* entry 1's low-water mark above its highest */
    b->data[PEER_PROTO_HEADER + 4 + 12 + 7] = 51;
    peer_decoder d;
    uint64_t lows[3];
    char err[128];
    peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
    assert_int_equal(peer_decoder_feed(&d, b->data, b->len, floors_cb, lows, err, sizeof(err)),
                     -1);
    peer_decoder_free(&d);
    /* without the flag the same bytes are a bad length */
    b->data[PEER_PROTO_HEADER + 4 + 12 + 7] = 40;
    b->data[7] = 0;
    peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
    assert_int_equal(peer_decoder_feed(&d, b->data, b->len, floors_cb, lows, err, sizeof(err)),
                     -1);
    peer_decoder_free(&d);
    msgbuf_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marks_round_trip),
        cmocka_unit_test(test_marks_with_floors),
        cmocka_unit_test(test_marks_writer_bounds),
        cmocka_unit_test(test_hello_bytes),
        cmocka_unit_test(test_hello_flags),
        cmocka_unit_test(test_marks_flags_by_link),
        cmocka_unit_test(test_msg_bytes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_chunkings),
        cmocka_unit_test(test_truncated_input),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_bad_msg_frames),
        cmocka_unit_test(test_refuses_after_error),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_error_text_truncated),
    };
    int rc = cmocka_run_group_tests_name("peer_proto", tests, NULL, NULL);
    msgbuf_trim();
    return rc;
}
