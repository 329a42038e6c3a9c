/* message: the client side of the DSatter protocol. Parses what a client
 * sends (newMessageFromClient, clientSyncRequest) with error texts that say
 * what was wrong, and writes what the node sends (newMessagesForClient,
 * error) as complete WebSocket frames in refcounted buffers: serialized
 * once, shared by every recipient. docs/PROTOCOL.md has the wire format. */
#ifndef DCHAT_MESSAGE_H
#define DCHAT_MESSAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/msgbuf.h"

/* Sequence numbers stay below 10^12 so that messageId, the decimal of
 * origin * 10^12 + seq, is unique in the cluster. */
#define MESSAGE_SEQ_LIMIT 1000000000000ull
#define MESSAGE_SENDER_MAX 256
#define MESSAGE_ID_MAX 32

struct chat_message {
    uint32_t origin;       /* node that accepted it from a client */
    uint64_t seq;          /* 1, 2, 3 ... at the origin */
    uint64_t time_ms;      /* wall clock ms when the origin accepted it */
    int64_t chat_id;
    const char *sender;    /* valid UTF-8, not NUL-terminated */
    uint32_t sender_len;
    const char *text;
    uint32_t text_len;
    /* sender and text are both message_plain (below): set by the parsers
     * that saw it on their way (the client request's scanner, the peer
     * frame's decoder), false when not known. Client frames then copy
     * them without looking for what to escape. Whoever changes sender or
     * text clears it, or sets it only after message_plain. */
    bool plain;
    /* sender and text are never NULL, not even when empty (length 0):
     * every writer hands them to memcpy, where NULL is undefined even for
     * zero bytes. */
};

enum message_kind {
    MESSAGE_IGNORE,        /* not JSON (first byte is not '{'): ignore it */
    MESSAGE_ERROR,         /* answer with an error frame; err says why */
    MESSAGE_NEW,           /* newMessageFromClient: req->msg is filled */
    MESSAGE_SYNC,          /* clientSyncRequest: req->marks */
    MESSAGE_SUBSCRIBE,     /* subscribe: req->chats, or req->all_chats */
    MESSAGE_UNSUBSCRIBE,   /* unsubscribe: req->chats */
};

struct sync_mark {
    uint32_t origin;
    uint64_t seq;          /* the highest id the client has from origin */
};

#define MESSAGE_SYNC_MAX_MARKS 10000
/* The chats one client may be in at once, and so name in one request. */
#define MESSAGE_ROOMS_MAX 1024

struct client_request {
    json_t *root;                 /* jansson's tree, when it was needed */
    struct chat_message msg;      /* MESSAGE_NEW: sender, text, chat_id */
    struct sync_mark *marks;      /* MESSAGE_SYNC */
    size_t nmarks;
    int64_t *chats;               /* MESSAGE_(UN)SUBSCRIBE: as given, 1 .. */
    size_t nchats;                /* MESSAGE_ROOMS_MAX of them */
    bool all_chats;               /* subscribe {"all": true}: every chat again */
};

/* Parses one text frame from a client. Returns a message_kind; on
 * MESSAGE_ERROR err holds a one-line reason for the error frame, among
 * them "message too large once encoded" for a newMessageFromClient whose
 * client frame (message_client_frame_max_len) would pass
 * message_frame_limit(). Call
 * message_request_free() whatever it returned. The strings of req->msg
 * point into data, into req->root, or into a scratch buffer that the next
 * call reuses: use them before parsing another frame. */
enum message_kind message_parse_request(const char *data, size_t len,
                                        struct client_request *req,
                                        char *err, size_t errlen);
void message_request_free(struct client_request *req);

/* Writes the messageId of (origin, seq) into out (MESSAGE_ID_MAX bytes):
 * origin followed by seq padded to 12 digits, which is the decimal of
 * origin * 10^12 + seq. Returns its length. */
int message_id_format(uint32_t origin, uint64_t seq, char *out);

/* The newMessagesForClient frame for m, sent by node source: a complete
 * unmasked WebSocket text frame with one message. New reference. */
msgbuf *message_client_frame(uint32_t source, const struct chat_message *m);

/* The exact length in bytes of message_client_frame(source, m) (header
 * included), computed without building it: one pass over text and sender. */
size_t message_client_frame_len(uint32_t source, const struct chat_message *m);

/* --- the client frame limit ----------------------------------------------
 * No frame for one message may be larger than what every client of the
 * node can take: the limit is the smaller of --max-message plus
 * MESSAGE_FRAME_SLACK (room for the ids, the date and a 256-byte sender
 * escaped six times over, so that whatever a client sent within
 * --max-message fits unless its text grows when escaped) and half of
 * --max-queue (a client with half its queue full still takes the frame). A
 * client's message over it is refused when parsed (the error text says
 * so); a peer's is stored but shown to clients with MESSAGE_WITHHELD_TEXT
 * (docs/PROTOCOL.md, 2.7). */
#define MESSAGE_FRAME_SLACK 2048
#define MESSAGE_WITHHELD_TEXT "[message withheld: too large for the clients of this node]"

/* The limit for these two options. */
size_t message_frame_limit_of(size_t max_message, size_t max_queue);

/* Sets the process-wide limit message_parse_request() checks (the node
 * has one configuration; relay_init sets it). Until set it is the limit
 * of the default options, message_frame_limit_of(65536, 4194304). */
void message_set_frame_limit(size_t limit);
size_t message_frame_limit(void);

/* The length of m's frame with the longest ids (source and origin
 * 2147483647, seq 999999999999): what message_parse_request() checks, so
 * that the verdict does not depend on the node's id or the message's
 * number, and the real frame is never larger. */
size_t message_client_frame_max_len(const struct chat_message *m);

/* When m's frame from node source would be over limit, points m->text at
 * MESSAGE_WITHHELD_TEXT and returns true (m is the caller's copy; the
 * strings are not freed). The withheld frame always fits: the text is
 * short and the limit leaves room for the longest sender. */
bool message_withhold_if_large(struct chat_message *m, uint32_t source, size_t limit);

/* The exact length of m's JSON object (as in every payload and in
 * GET /api/history), and a writer for it: out needs room for that length
 * plus one (a NUL is written after). Returns the length written. */
size_t message_object_len(const struct chat_message *m);
size_t message_object_write(char *out, const struct chat_message *m);

/* {"type":"error","source":S,"error":"..."} as a WebSocket text frame. */
msgbuf *message_error_frame(uint32_t source, const char *error);

/* {"type":"clientSyncReply","source":S,"payload":[...],"truncated":B} for
 * n messages, oldest first. Its JSON is the n objects (message_object_len),
 * a comma between each two, and at most MESSAGE_REPLY_ENVELOPE bytes. */
#define MESSAGE_REPLY_ENVELOPE 96
msgbuf *message_sync_reply_frame(uint32_t source, const struct chat_message *m,
                                 size_t n, bool truncated);

/* The same for a client in chat rooms, whose reply holds only its chats:
 * with next (nnext marks) it also carries "next":{"<origin>":<id>,...},
 * the marks to ask with for the rest (docs/PROTOCOL.md 1.4). Each mark
 * adds at most MESSAGE_NEXT_MARK_LEN bytes to the envelope. */
#define MESSAGE_NEXT_MARK_LEN 28
msgbuf *message_sync_reply_frame_next(uint32_t source, const struct chat_message *m,
                                      size_t n, bool truncated,
                                      const struct sync_mark *next, size_t nnext);

/* The same with "trimmed":{"<origin>":<id>,...} after "truncated" when
 * ntrimmed > 0: per origin, messages with an id up to that one that the
 * reply lacks were removed by retention (docs/PROTOCOL.md 1.4, 3.3). Each
 * adds at most MESSAGE_NEXT_MARK_LEN bytes too. */
msgbuf *message_sync_reply_frame_trimmed(uint32_t source, const struct chat_message *m,
                                         size_t n, bool truncated,
                                         const struct sync_mark *trimmed, size_t ntrimmed,
                                         const struct sync_mark *next, size_t nnext);

/* {"type":T,"source":S,"payload":{"all":B,"chatIds":[...]}} with T
 * "subscribeReply" or "unsubscribeReply": the client's chats after the
 * request (sorted ascending), or all true and no ids for a client that
 * receives every chat. */
msgbuf *message_rooms_reply_frame(uint32_t source, const char *type, bool all,
                                  const int64_t *chats, size_t n);

/* Appends s as a JSON string literal (with quotes) to out, which must have
 * room for 6 * len + 2 bytes. Returns the bytes written. */
size_t message_json_escape(char *out, const char *s, size_t len);

/* The exact length message_json_escape() writes for s (quotes included). */
size_t message_json_escaped_len(const char *s, size_t len);

/* Whether message_json_escape() would write s as it is, between quotes:
 * every byte printable ASCII other than '"' and '\\' (so also valid
 * UTF-8). */
bool message_plain(const char *s, size_t len);

#endif
