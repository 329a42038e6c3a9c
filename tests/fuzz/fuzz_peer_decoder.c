/* Fuzz target for node/peer_proto.c's decoder (HELLO, AUTH, MSG, MARKS). Input:
 * one byte of settings (bits 0-1: the frame limit; bits 2-7: stop after
 * that many frames, 0 never), the chunk sizes (chunks.h), then the link's
 * byte stream. It is decoded twice, in one call and in the chunks: same
 * frames, same verdict. Every frame handed up keeps the decoder's contract
 * (ids and sequences in range, UTF-8 strings, marks strictly ascending) and
 * survives a round trip: re-encoded with peer_proto_hello/auth/msg/marks and
 * decoded again, it gives the same fields. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ws.h"
#include "node/peer_proto.h"
#include "tests/fuzz/chunks.h"
#include "tests/fuzz/record.h"

struct run {
    record r;
    unsigned n, stop_at;
};

static void record_frame(record *r, const struct peer_frame *f)
{
    record_u64(r, f->type);
    record_u64(r, f->flags);
    record_u64(r, f->origin);
    record_u64(r, f->seq);
    if (f->type == PEER_MSG) {
        record_u64(r, f->msg.origin);
        record_u64(r, f->msg.seq);
        record_u64(r, f->msg.time_ms);
        record_u64(r, (uint64_t)f->msg.chat_id);
        record_u64(r, f->msg.sender_len);
        record_add(r, f->msg.sender, f->msg.sender_len);
        record_u64(r, f->msg.text_len);
        record_add(r, f->msg.text, f->msg.text_len);
    } else if (f->type == PEER_HELLO) {
        record_add(r, (const char *)f->nonce, PEER_NONCE_LEN);
    } else if (f->type == PEER_AUTH) {
        record_add(r, (const char *)f->mac, PEER_AUTH_LEN);
    } else if (f->type == PEER_MARKS) {
        record_u64(r, f->nmarks);
        for (uint32_t i = 0; i < f->nmarks; i++) {
            uint32_t o;
            uint64_t q;
            peer_proto_mark(f, i, &o, &q);
            record_u64(r, o);
            record_u64(r, q);
        }
    }
}

static int copy_cb(const struct peer_frame *f, void *ud)
{
    record_frame(ud, f);
    return 0;
}

/* Decodes b whole on a fresh decoder: exactly one frame, recorded. */
static void decode_one(msgbuf *b, record *out)
{
    peer_decoder d;
    char err[128];
    peer_decoder_init(&d, PEER_PROTO_MAX_FRAME);
    FUZZ_CHECK(peer_decoder_feed(&d, b->data, b->len, copy_cb, out, err, sizeof(err)) == 0);
    peer_decoder_free(&d);
    msgbuf_unref(b);
}

static void check_round_trip(const struct peer_frame *f)
{
    record want = { 0 }, got = { 0 };
    struct peer_frame g = *f;
    g.flags = 0;
    switch (f->type) {
    case PEER_HELLO:
        g.flags = f->flags; /* the writer sends the features as given */
        g.seq = 0; /* the decoder does not look at a hello's seq */
        decode_one(peer_proto_hello(f->origin, f->flags, f->nonce), &got);
        break;
    case PEER_AUTH:
        g.seq = 0; /* nor at an auth's */
        decode_one(peer_proto_auth(f->origin, f->mac), &got);
        break;
    case PEER_MSG:
        g.flags = f->flags; /* the writer sends them as given */
        decode_one(peer_proto_msg(&f->msg, f->flags), &got);
        break;
    case PEER_MARKS: {
        peer_marks_writer w;
        g.flags = f->flags; /* the writer sends flags, and seq 0 */
        g.seq = 0;
        peer_proto_marks_begin(&w, f->origin, f->flags, f->nmarks);
        for (uint32_t i = 0; i < f->nmarks; i++) {
            uint32_t o;
            uint64_t q;
            peer_proto_mark(f, i, &o, &q);
            FUZZ_CHECK(peer_proto_marks_add(&w, o, q) == 0);
        }
        decode_one(peer_proto_marks_end(&w), &got);
        break;
    }
    default:
        FUZZ_CHECK(!"a frame type the decoder must not hand up");
    }
    record_frame(&want, &g);
    FUZZ_CHECK(record_same(&want, &got));
    record_free(&want);
    record_free(&got);
}

static int frame_cb(const struct peer_frame *f, void *ud)
{
    struct run *run = ud;
    FUZZ_CHECK(f->origin >= 1 && f->origin <= INT32_MAX);
    if (f->type == PEER_MSG) {
        FUZZ_CHECK(f->seq >= 1 && f->seq < MESSAGE_SEQ_LIMIT);
        FUZZ_CHECK(f->msg.origin == f->origin && f->msg.seq == f->seq);
        FUZZ_CHECK(f->msg.sender_len <= MESSAGE_SENDER_MAX);
        FUZZ_CHECK(ws_utf8_valid((const uint8_t *)f->msg.sender, f->msg.sender_len));
        FUZZ_CHECK(ws_utf8_valid((const uint8_t *)f->msg.text, f->msg.text_len));
        /* plain: exactly when both are (client frames copy them as they are) */
        FUZZ_CHECK(f->msg.plain == (message_plain(f->msg.sender, f->msg.sender_len) &&
                                    message_plain(f->msg.text, f->msg.text_len)));
    } else if (f->type == PEER_MARKS) {
        for (uint32_t i = 0, prev = 0; i < f->nmarks; i++) {
            uint32_t o;
            uint64_t q;
            peer_proto_mark(f, i, &o, &q);
            FUZZ_CHECK(o > prev && o <= INT32_MAX && q < MESSAGE_SEQ_LIMIT);
            prev = o;
        }
    }
    check_round_trip(f);
    record_frame(&run->r, f);
    return ++run->n == run->stop_at;
}

static int decode(struct run *run, size_t max_frame, const uint8_t *data, size_t len,
                  chunks *ch)
{
    peer_decoder d;
    char err[128] = "";
    peer_decoder_init(&d, max_frame);
    int rc = 0;
    size_t off = 0;
    do {
        size_t n = ch ? chunks_next(ch, len - off) : len;
        char *chunk = chunks_copy(data + off, n);
        rc = peer_decoder_feed(&d, chunk, n, frame_cb, run, err, sizeof(err));
        free(chunk);
        off += n;
    } while (rc == 0 && off < len);
    FUZZ_CHECK(rc == 0 || rc == 1 || (rc == -1 && err[0] != '\0'));
    if (rc == -1) {
        /* After a bad frame the decoder refuses everything. */
        static const char zero[24];
        FUZZ_CHECK(peer_decoder_feed(&d, zero, sizeof(zero), frame_cb, run, err,
                                     sizeof(err)) == -1);
    }
    peer_decoder_free(&d);
    record_u64(&run->r, (uint64_t)(int64_t)rc);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const size_t limits[4] = { 16, 64, 4096, PEER_PROTO_MAX_FRAME };
    uint8_t settings;
    chunks ch;
    if (chunks_start(&ch, &data, &len, &settings) != 0)
        return 0;
    size_t max_frame = limits[settings & 3];
    struct run whole = { .stop_at = settings >> 2 };
    struct run split = whole;
    decode(&whole, max_frame, data, len, NULL);
    decode(&split, max_frame, data, len, &ch);
    FUZZ_CHECK(record_same(&whole.r, &split.r));
    record_free(&whole.r);
    record_free(&split.r);
    return 0;
}
