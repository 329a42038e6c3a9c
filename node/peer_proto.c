/* peer_proto: see peer_proto.h. A frame that lies whole in the fed chunk
 * is decoded in place; only a frame split across reads is copied into the
 * decoder's buffer. */
#include "node/peer_proto.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/ws.h"

/* MSG payload: u64 time_ms | i64 chat_id | u16 sender_len | u32 text_len |
 * sender | text */
#define PEER_MSG_FIXED 22

static msgbuf *frame_new(uint8_t type, uint32_t origin, uint64_t seq, size_t payload)
{
    msgbuf *b = msgbuf_new(PEER_PROTO_HEADER + payload);
    util_put_be32(b->data, (uint32_t)(PEER_PROTO_HEADER - 4 + payload));
    b->data[4] = PEER_PROTO_VERSION;
    b->data[5] = (char)type;
    util_put_be16(b->data + 6, 0);
    util_put_be32(b->data + 8, origin);
    util_put_be64(b->data + 12, seq);
    b->len = (uint32_t)(PEER_PROTO_HEADER + payload);
    return b;
}

msgbuf *peer_proto_hello(uint32_t node_id, uint16_t flags,
                         const uint8_t nonce[PEER_NONCE_LEN])
{
    msgbuf *b = frame_new(PEER_HELLO, node_id, 0, 4 + PEER_NONCE_LEN);
    util_put_be16(b->data + 6, flags);
    util_put_be32(b->data + PEER_PROTO_HEADER, PEER_PROTO_MAGIC);
    memcpy(b->data + PEER_PROTO_HEADER + 4, nonce, PEER_NONCE_LEN);
    return b;
}

msgbuf *peer_proto_auth(uint32_t node_id, const uint8_t mac[PEER_AUTH_LEN])
{
    msgbuf *b = frame_new(PEER_AUTH, node_id, 0, PEER_AUTH_LEN);
    memcpy(b->data + PEER_PROTO_HEADER, mac, PEER_AUTH_LEN);
    return b;
}

msgbuf *peer_proto_msg(const struct chat_message *m, uint16_t flags)
{
    size_t payload = PEER_MSG_FIXED + m->sender_len + m->text_len;
    msgbuf *b = frame_new(PEER_MSG, m->origin, m->seq, payload);
    util_put_be16(b->data + 6, flags);
    char *p = b->data + PEER_PROTO_HEADER;
    util_put_be64(p, m->time_ms);
    util_put_be64(p + 8, (uint64_t)m->chat_id);
    util_put_be16(p + 16, (uint16_t)m->sender_len);
    util_put_be32(p + 18, m->text_len);
    memcpy(p + PEER_MSG_FIXED, m->sender, m->sender_len);
    memcpy(p + PEER_MSG_FIXED + m->sender_len, m->text, m->text_len);
    return b;
}

#define MARK_SIZE 12

void peer_proto_marks_begin(peer_marks_writer *w, uint32_t node_id, uint16_t flags,
                            size_t max)
{
    bool floors = (flags & PEER_MARKS_FLOORS) != 0;
    w->size = floors ? MARK_SIZE + 8 : MARK_SIZE;
    w->max = (uint32_t)UTIL_MIN(max, floors ? (size_t)PEER_PROTO_MAX_FLOOR_MARKS
                                            : (size_t)PEER_PROTO_MAX_MARKS);
    w->count = 0;
    w->last = 0;
    w->b = frame_new(PEER_MARKS, node_id, 0, 4 + (size_t)w->max * w->size);
    util_put_be16(w->b->data + 6, flags);
}

int peer_proto_marks_add(peer_marks_writer *w, uint32_t origin, uint64_t seq)
{
    return peer_proto_marks_add_floor(w, origin, seq, 0);
}

int peer_proto_marks_add_floor(peer_marks_writer *w, uint32_t origin, uint64_t seq,
                               uint64_t low)
{
    if (w->count == w->max || origin <= w->last)
        return -1;
    char *p = w->b->data + PEER_PROTO_HEADER + 4 + (size_t)w->count * w->size;
    util_put_be32(p, origin);
    util_put_be64(p + 4, seq);
    if (w->size > MARK_SIZE)
        util_put_be64(p + MARK_SIZE, low);
    w->count++;
    w->last = origin;
    return 0;
}

msgbuf *peer_proto_marks_end(peer_marks_writer *w)
{
    msgbuf *b = w->b;
    size_t payload = 4 + (size_t)w->count * w->size;
    util_put_be32(b->data, (uint32_t)(PEER_PROTO_HEADER - 4 + payload));
    util_put_be32(b->data + PEER_PROTO_HEADER, w->count);
    b->len = (uint32_t)(PEER_PROTO_HEADER + payload);
    w->b = NULL;
    return b;
}

void peer_proto_mark(const struct peer_frame *f, uint32_t i, uint32_t *origin,
                     uint64_t *seq)
{
    *origin = util_get_be32(f->marks + (size_t)i * f->mark_size);
    *seq = util_get_be64(f->marks + (size_t)i * f->mark_size + 4);
}

uint64_t peer_proto_mark_floor(const struct peer_frame *f, uint32_t i)
{
    if (f->mark_size <= MARK_SIZE)
        return 0;
    return util_get_be64(f->marks + (size_t)i * f->mark_size + MARK_SIZE);
}

uint64_t peer_proto_mark_of(const struct peer_frame *f, uint32_t origin)
{
    for (uint32_t lo = 0, hi = f->nmarks; lo < hi;) {
        uint32_t mid = lo + (hi - lo) / 2, o;
        uint64_t seq;
        peer_proto_mark(f, mid, &o, &seq);
        if (o == origin)
            return seq;
        if (o < origin)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

void peer_decoder_init(peer_decoder *d, size_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame;
}

void peer_decoder_free(peer_decoder *d)
{
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

static int bad(peer_decoder *d, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    d->failed = 1;
    return -1;
}

/* Decodes one whole frame at p (total bytes, length field included). */
static int decode(peer_decoder *d, const char *p, size_t total, peer_frame_fn cb,
                  void *ud, char *err, size_t errlen)
{
    struct peer_frame f;
    memset(&f, 0, sizeof(f));
    if ((uint8_t)p[4] != PEER_PROTO_VERSION)
        return bad(d, err, errlen, "unsupported peer protocol version");
    f.type = (uint8_t)p[5];
    f.flags = util_get_be16(p + 6);
    f.origin = util_get_be32(p + 8);
    f.seq = util_get_be64(p + 12);
    const char *pl = p + PEER_PROTO_HEADER;
    size_t plen = total - PEER_PROTO_HEADER;
    switch (f.type) {
    case PEER_HELLO:
        if (plen != 4 + PEER_NONCE_LEN || util_get_be32(pl) != PEER_PROTO_MAGIC)
            return bad(d, err, errlen, "hello without the protocol magic and a nonce");
        if (f.origin == 0 || f.origin > INT32_MAX)
            return bad(d, err, errlen, "hello with an invalid node id");
        f.nonce = (const uint8_t *)pl + 4;
        break;
    case PEER_AUTH:
        if (plen != PEER_AUTH_LEN || f.origin == 0 || f.origin > INT32_MAX)
            return bad(d, err, errlen, "auth frame with a bad length or node id");
        f.mac = (const uint8_t *)pl;
        break;
    case PEER_MSG: {
        if (f.origin == 0 || f.origin > INT32_MAX || f.seq == 0 || f.seq >= MESSAGE_SEQ_LIMIT)
            return bad(d, err, errlen, "message with an invalid origin or sequence");
        if (plen < PEER_MSG_FIXED)
            return bad(d, err, errlen, "message frame too short");
        uint16_t slen = util_get_be16(pl + 16);
        uint32_t tlen = util_get_be32(pl + 18);
        if ((size_t)PEER_MSG_FIXED + slen + tlen != plen)
            return bad(d, err, errlen, "message lengths do not match the frame");
        f.msg.origin = f.origin;
        f.msg.seq = f.seq;
        f.msg.time_ms = util_get_be64(pl);
        f.msg.chat_id = (int64_t)util_get_be64(pl + 8);
        f.msg.sender = pl + PEER_MSG_FIXED;
        f.msg.sender_len = slen;
        f.msg.text = pl + PEER_MSG_FIXED + slen;
        f.msg.text_len = tlen;
        /* sender and text lie next to each other: when both are plain
         * ASCII (most chat: valid UTF-8, and nothing for client frames to
         * escape) one look covers them, else each is checked alone (a
         * sequence must not run from one into the other) */
        f.msg.plain = message_plain(f.msg.sender, (size_t)slen + tlen);
        if (slen > MESSAGE_SENDER_MAX ||
            (!f.msg.plain && !ws_ascii((const uint8_t *)f.msg.sender, (size_t)slen + tlen) &&
             (!ws_utf8_valid((const uint8_t *)f.msg.sender, slen) ||
              !ws_utf8_valid((const uint8_t *)f.msg.text, tlen))))
            return bad(d, err, errlen, "message sender or text is not valid UTF-8");
        break;
    }
    case PEER_MARKS:
        f.mark_size = f.flags & PEER_MARKS_FLOORS ? MARK_SIZE + 8 : MARK_SIZE;
        if (f.origin == 0 || f.origin > INT32_MAX || plen < 4 ||
            (size_t)util_get_be32(pl) * f.mark_size != plen - 4)
            return bad(d, err, errlen, "marks frame with a bad origin or length");
        f.nmarks = util_get_be32(pl);
        f.marks = pl + 4;
        /* Ascending order is checked here, in one pass, so that receivers
         * can merge the marks with their own sorted origins. */
        for (uint32_t i = 0, prev = 0; i < f.nmarks; i++) {
            uint32_t o;
            uint64_t q;
            peer_proto_mark(&f, i, &o, &q);
            if (o == 0 || o > INT32_MAX || q >= MESSAGE_SEQ_LIMIT ||
                (peer_proto_mark_floor(&f, i) > q))
                return bad(d, err, errlen, "marks frame with an invalid origin or sequence");
            if (o <= prev)
                return bad(d, err, errlen, "marks frame with origins not in ascending order");
            prev = o;
        }
        break;
    default:
        return bad(d, err, errlen, "unknown frame type");
    }
    return cb(&f, ud) ? 1 : 0;
}

int peer_decoder_feed(peer_decoder *d, const char *data, size_t len,
                      peer_frame_fn cb, void *ud, char *err, size_t errlen)
{
    if (d->failed)
        return bad(d, err, errlen, "input after a bad frame");
    const char *start = data;
    d->used = 0;
    while (len > 0) {
        if (d->len > 0 || len < 4) {
            /* Complete the buffered frame (or its length field) first. */
            size_t need = 4;
            if (d->len >= 4)
                need = 4 + (size_t)util_get_be32(d->buf);
            if (d->len < 4) {
                size_t take = UTIL_MIN(4 - d->len, len);
                if (d->cap < 4) {
                    d->cap = 256;
                    d->buf = xrealloc(d->buf, d->cap);
                }
                memcpy(d->buf + d->len, data, take);
                d->len += take;
                data += take;
                len -= take;
                if (d->len < 4)
                    return 0;
                need = 4 + (size_t)util_get_be32(d->buf);
                if (need - 4 > d->max_frame || need < PEER_PROTO_HEADER)
                    return bad(d, err, errlen, need < PEER_PROTO_HEADER
                                                   ? "frame shorter than its header"
                                                   : "frame longer than the limit");
            }
            if (need > d->cap) {
                d->cap = need;
                d->buf = xrealloc(d->buf, d->cap);
            }
            size_t take = UTIL_MIN(need - d->len, len);
            memcpy(d->buf + d->len, data, take);
            d->len += take;
            data += take;
            len -= take;
            if (d->len < need)
                return 0;
            d->len = 0;
            int rc = decode(d, d->buf, need, cb, ud, err, errlen);
            if (d->cap > 64 * 1024) { /* do not keep a big one around */
                free(d->buf);
                d->buf = NULL;
                d->cap = 0;
            }
            if (rc != 0) {
                d->used = (size_t)(data - start);
                return rc;
            }
            continue;
        }
        size_t flen = (size_t)util_get_be32(data);
        if (flen > d->max_frame || flen + 4 < PEER_PROTO_HEADER)
            return bad(d, err, errlen, flen + 4 < PEER_PROTO_HEADER
                                           ? "frame shorter than its header"
                                           : "frame longer than the limit");
        if (len < 4 + flen) {
            d->len = 0; /* buffer it through the path above */
            if (d->cap < 4 + flen) {
                d->cap = 4 + flen;
                d->buf = xrealloc(d->buf, d->cap);
            }
            memcpy(d->buf, data, len);
            d->len = len;
            return 0;
        }
        int rc = decode(d, data, 4 + flen, cb, ud, err, errlen);
        if (rc != 0) {
            d->used = (size_t)(data + 4 + flen - start);
            return rc;
        }
        data += 4 + flen;
        len -= 4 + flen;
    }
    return 0;
}
