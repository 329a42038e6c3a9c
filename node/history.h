/* history: what the node's store answers to others. Clients catch up with
 * clientSyncRequest: the reply holds every stored message newer than the
 * client's marks (per origin: the highest id it has), up to the point the
 * request arrived, oldest first, capped by --sync-limit and by
 * HISTORY_REPLY_BYTES with a "truncated" flag. Operators read
 * GET /api/history, capped the same way, and the per-origin digest in
 * GET /api/status. docs/PROTOCOL.md has the formats. */
#ifndef DCHAT_HISTORY_H
#define DCHAT_HISTORY_H

#include <jansson.h>
#include <stddef.h>

#include "common/http_server.h"
#include "common/msgbuf.h"
#include "node/message.h"
#include "node/node.h"

/* The point a sync request is answered up to: per origin the highest seq
 * delivered to local clients when it arrived. */
struct history_point {
    struct sync_mark *marks;
    size_t n;
};

/* Takes the point now. Fails (-1, err filled) when the request names an
 * origin this node has no message of. */
int history_point_take(node *n, const struct sync_mark *req, size_t nreq,
                       struct history_point *out, char *err, size_t errlen);
void history_point_free(struct history_point *p);

/* Which chats a reply holds: all (chats NULL), or those of a client in
 * chat rooms (n of them, sorted ascending; n may be 0). */
struct history_chats {
    const int64_t *chats;
    size_t n;
};

/* A reply for a client in rooms looks at no more than this many stored
 * messages (over all origins; --sync-scan), so that a quiet room in a long
 * history costs the loop a bounded time; what it did not look at, it says
 * with "truncated" and the "next" marks to ask with. */
#define HISTORY_SCAN_ROWS 20000

/* The clientSyncReply for marks req (none: the latest messages) up to
 * point, holding the chats of f (NULL: all), read from the store: call once
 * everything up to point is committed. NULL on a store error (err filled).
 * New reference. */
msgbuf *history_sync_reply(node *n, const struct sync_mark *req, size_t nreq,
                           const struct history_point *point, const struct history_chats *f,
                           char *err, size_t errlen);

/* A reply, clientSyncReply or GET /api/history, holds at most this many
 * bytes of JSON: it ends at a message boundary and holds at least one
 * message when there is one (a single message may pass it: a client frame
 * is at most message_frame_limit()). Its "truncated" or "more" flag then
 * says that the client should ask again. */
#define HISTORY_REPLY_BYTES (1u << 20)

/* GET /api/history?origin=N&after=ID&limit=K */
void history_http(node *n, http_request *req);

/* {"fsync": mode, "pending": bool, "origins": [{"origin","count","highest"}]} */
json_t *history_digest(node *n);

#endif
