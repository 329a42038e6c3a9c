/* peer_proto: the frames nodes exchange over their TCP links. Every frame
 * is length-prefixed and carries a fixed header:
 *   u32 length of the rest | u8 version | u8 type | u16 flags |
 *   u32 origin | u64 seq | payload          (all integers big-endian)
 * HELLO opens a link (origin = the sender's node id, flags = the features
 * it speaks, payload = magic and a fresh nonce); AUTH proves the cluster secret (payload = a MAC, see
 * node/peer_auth.h); MSG carries one chat message. After each side's AUTH
 * its bytes come in sealed records (peer_auth.h) holding frames.
 * docs/PROTOCOL.md has the byte tables. */
#ifndef DCHAT_PEER_PROTO_H
#define DCHAT_PEER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/msgbuf.h"
#include "node/message.h"

#define PEER_PROTO_VERSION 2
#define PEER_PROTO_MAGIC 0x44434854u /* "DCHT" */
#define PEER_PROTO_HEADER 20         /* length field + fixed header */
#define PEER_PROTO_MAX_FRAME (1u << 20)
#define PEER_NONCE_LEN 32
#define PEER_AUTH_LEN 32

enum peer_frame_type {
    PEER_HELLO = 1,
    PEER_MSG = 2,
    /* Anti-entropy: the sender's highest seq per origin (origin field =
     * the sender's id, seq 0; payload u32 count, then count times u32
     * origin, u64 seq, in strictly ascending origin order: the decoder
     * refuses a frame out of order). The receiver answers with MSG frames
     * of what the sender lacks. */
    PEER_MARKS = 3,
    /* The sender's proof of the secret for this link (payload: the MAC of
     * peer_auth_proof); the last frame it sends outside a record. */
    PEER_AUTH = 4,
};

/* HELLO header flag: the sender reads MARKS frames with PEER_MARKS_FLOORS.
 * Nodes before retention send no HELLO flag and ignore the field, so a
 * link carries floors only when both HELLOs had it (docs/PROTOCOL.md 2.1;
 * the AUTH proofs do not cover the flags, see there). */
#define PEER_HELLO_FLOORS 0x0001u

/* HELLO header flag: the sender seals and opens records with GMAC
 * (AES-256-GCM) rather than HMAC-SHA256 (peer_auth.h); a link uses it when
 * both HELLOs had it. Nodes before it send no such flag, so a link to one
 * keeps HMAC (docs/PROTOCOL.md 2.2). */
#define PEER_HELLO_GMAC 0x0002u

/* MSG header flag: the message is sent by anti-entropy catch-up, not live
 * (for the receiver's counters only; a receiver that does not know the
 * flag ignores it). */
#define PEER_MSG_REPAIR 0x0001u

/* MSG header flag, with PEER_MSG_REPAIR: the message is at or below the
 * sender's low-water mark of its origin, a row it still holds there (a
 * quiet chat's, below a busy chat's mark) sent by catch-up to a peer whose
 * mark was below that mark and which skipped to it (docs/PROTOCOL.md 2.4).
 * A receiver that has skipped past it stores it if it lacks it, with no
 * gap test. A receiver that does not know the flag ignores it and finds
 * the message at or below its highest: a duplicate, dropped. */
#define PEER_MSG_BACKFILL 0x0002u

/* MARKS header flag: since its previous MARKS on this link, the sender
 * refused a MSG frame the receiver sent on it that was not a duplicate (it
 * came after a gap, or the sender's store could not take it). The receiver
 * then forgets what it queued on the link and serves from these marks. */
#define PEER_MARKS_REFUSED 0x0001u

/* MARKS header flag: every entry carries a third field, u64 trimmed, the
 * sender's low-water mark of that origin less one (every seq up to it may
 * be gone from its history by retention; docs/PROTOCOL.md 2.4, 3.3):
 * entries are then 20 bytes, not 12. Sent only by a node that has trimmed
 * something; nodes before retention refuse such a frame. */
#define PEER_MARKS_FLOORS 0x0002u

/* A MARKS entry's seq meaning "I have a link to this origin and get its
 * messages from it directly: do not send me any". The highest seq there
 * can be, so a receiver that does not know the convention sends nothing of
 * that origin either. */
#define PEER_MARK_DIRECT (MESSAGE_SEQ_LIMIT - 1)

/* The flags of a MARKS frame on a link whose HELLOs agreed on features
 * (both sides' HELLO flags, and'ed): PEER_MARKS_REFUSED when refused;
 * PEER_MARKS_FLOORS when the sender trimmed something and the link has
 * PEER_HELLO_FLOORS. Without it, a trimmed sender's marks are the plain
 * 12-byte entries that nodes before retention read. */
static inline uint16_t peer_proto_marks_flags(uint16_t link_features, bool refused,
                                              bool trimmed)
{
    return (uint16_t)((refused ? PEER_MARKS_REFUSED : 0) |
                      (trimmed && (link_features & PEER_HELLO_FLOORS) ? PEER_MARKS_FLOORS : 0));
}

struct peer_frame {
    uint8_t type;
    uint16_t flags;
    uint32_t origin;
    uint64_t seq;
    struct chat_message msg;  /* PEER_MSG; strings point into the input */
    const char *marks;        /* PEER_MARKS: nmarks raw entries, see below */
    uint32_t nmarks;
    uint32_t mark_size;       /* 12, or 20 with PEER_MARKS_FLOORS */
    const uint8_t *nonce;     /* PEER_HELLO: PEER_NONCE_LEN bytes */
    const uint8_t *mac;       /* PEER_AUTH: PEER_AUTH_LEN bytes */
};

/* The i-th entry of a MARKS frame. */
void peer_proto_mark(const struct peer_frame *f, uint32_t i, uint32_t *origin,
                     uint64_t *seq);

/* The trimmed field of the i-th entry (0 in a frame without
 * PEER_MARKS_FLOORS). */
uint64_t peer_proto_mark_floor(const struct peer_frame *f, uint32_t i);

/* The seq of origin's entry in a decoded MARKS frame (its entries are in
 * ascending origin order: a binary search), 0 when it has none. */
uint64_t peer_proto_mark_of(const struct peer_frame *f, uint32_t origin);

/* A MARKS frame built entry by entry: begin (room for at most max entries,
 * and never more than fit PEER_PROTO_MAX_FRAME: PEER_PROTO_MAX_MARKS), add
 * in strictly ascending origin order, end. */
#define PEER_PROTO_MAX_MARKS ((PEER_PROTO_MAX_FRAME - (PEER_PROTO_HEADER - 4) - 4) / 12)
#define PEER_PROTO_MAX_FLOOR_MARKS ((PEER_PROTO_MAX_FRAME - (PEER_PROTO_HEADER - 4) - 4) / 20)
typedef struct peer_marks_writer {
    msgbuf *b;
    uint32_t count, max;
    uint32_t size;            /* bytes per entry */
    uint32_t last;            /* the previous entry's origin */
} peer_marks_writer;

void peer_proto_marks_begin(peer_marks_writer *w, uint32_t node_id, uint16_t flags,
                            size_t max);
/* Returns 0, or -1 (the entry left out) when the frame is full or origin
 * is not above the previous entry's. */
int peer_proto_marks_add(peer_marks_writer *w, uint32_t origin, uint64_t seq);
/* The same with the entry's trimmed field (begun with PEER_MARKS_FLOORS;
 * otherwise low is not written). */
int peer_proto_marks_add_floor(peer_marks_writer *w, uint32_t origin, uint64_t seq,
                               uint64_t low);
/* The frame; w is done. New reference. */
msgbuf *peer_proto_marks_end(peer_marks_writer *w);

/* The link's first frame: announces node_id, the features we speak
 * (flags: PEER_HELLO_FLOORS or 0) and our nonce. New reference. */
msgbuf *peer_proto_hello(uint32_t node_id, uint16_t flags,
                         const uint8_t nonce[PEER_NONCE_LEN]);

/* Our proof of the secret. New reference. */
msgbuf *peer_proto_auth(uint32_t node_id, const uint8_t mac[PEER_AUTH_LEN]);

/* One chat message; flags 0, PEER_MSG_REPAIR, or that and
 * PEER_MSG_BACKFILL. New reference. */
msgbuf *peer_proto_msg(const struct chat_message *m, uint16_t flags);

/* An incremental decoder for one link's byte stream. */
typedef struct peer_decoder {
    size_t max_frame;
    char *buf;               /* a frame split across reads */
    size_t len, cap;
    int failed;
    size_t used;             /* after feed returned 1: bytes of its input consumed */
} peer_decoder;

/* Called per complete frame; f and its strings live during the call.
 * Return 0 to go on, non-zero to stop (the link is being closed). */
typedef int (*peer_frame_fn)(const struct peer_frame *f, void *ud);

void peer_decoder_init(peer_decoder *d, size_t max_frame);
void peer_decoder_free(peer_decoder *d);

/* Feeds bytes in any chunking. Returns 0, 1 when the callback stopped it
 * (d->used then says how much of data was consumed, the frame that
 * stopped it included: the rest may be another layer's, e.g. records),
 * or -1 with err filled on a bad frame (too long, unknown version or type,
 * inconsistent lengths, invalid UTF-8, zero origin or seq, marks out of
 * ascending origin order); after -1 the
 * decoder refuses all input. */
int peer_decoder_feed(peer_decoder *d, const char *data, size_t len,
                      peer_frame_fn cb, void *ud, char *err, size_t errlen);

#endif
