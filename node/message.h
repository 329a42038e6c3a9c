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
};

enum message_kind {
    MESSAGE_IGNORE,        /* not JSON (first byte is not '{'): ignore it */
    MESSAGE_ERROR,         /* answer with an error frame; err says why */
    MESSAGE_NEW,           /* newMessageFromClient: req->msg is filled */
    MESSAGE_SYNC,          /* clientSyncRequest: req->marks */
};

struct sync_mark {
    uint32_t origin;
    uint64_t seq;          /* the highest id the client has from origin */
};

#define MESSAGE_SYNC_MAX_MARKS 10000

struct client_request {
    json_t *root;                 /* jansson's tree, when it was needed */
    struct chat_message msg;      /* MESSAGE_NEW: sender, text, chat_id */
    struct sync_mark *marks;      /* MESSAGE_SYNC */
    size_t nmarks;
};

/* Parses one text frame from a client. Returns a message_kind; on
 * MESSAGE_ERROR err holds a one-line reason for the error frame. Call
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

/* {"type":"error","source":S,"error":"..."} as a WebSocket text frame. */
msgbuf *message_error_frame(uint32_t source, const char *error);

/* {"type":"clientSyncReply","source":S,"payload":[...],"truncated":B} for
 * n messages, oldest first. */
msgbuf *message_sync_reply_frame(uint32_t source, const struct chat_message *m,
                                 size_t n, bool truncated);

/* Appends s as a JSON string literal (with quotes) to out, which must have
 * room for 6 * len + 2 bytes. Returns the bytes written. */
size_t message_json_escape(char *out, const char *s, size_t len);

#endif
