/* clients: the WebSocket clients of this node. The client port's HTTP
 * server hands every upgrade request here; each client's text frames are
 * parsed as DSatter requests and passed to the relay; frames for all
 * clients go out through clients_broadcast(), shared buffers. */
#ifndef DCHAT_CLIENTS_H
#define DCHAT_CLIENTS_H

#include <stddef.h>
#include <uv.h>

#include "common/http_server.h"
#include "common/msgbuf.h"
#include "node/node.h"

struct clients *clients_new(node *n);

/* The http_upgrade_fn of the client port (ud is the node). */
int clients_on_upgrade(http_request *req, uv_tcp_t *tcp, const char *rest,
                       size_t rest_len, void *ud);

/* Queues frames[0..n) (complete WebSocket frames of messages, frames[i]
 * of chat chats[i], in the order they must arrive) to every open client
 * in each frame's chat: those that never subscribed (every chat) and the
 * members of its room. Consecutive frames bound for the same clients are
 * copied into one buffer (at most CLIENTS_COALESCE_MAX bytes, or half
 * of --max-queue when smaller): a burst costs each socket one
 * reference and one write, not one per message. A client over its queue
 * bound is closed with 1008 by its connection. to[i] is set to the number
 * of clients frames[i] was queued to.
 * now: the frames are a whole burst (a committed batch), written at once
 * to a client with nothing queued (ws_conn_send_frame_now); otherwise
 * more may follow on this loop turn (messages from peers come one by
 * one), and they are queued to go out together at the turn's end: one
 * write per message per socket would cost a receiving node twice the CPU
 * (docs/PERFORMANCE.md). */
#define CLIENTS_COALESCE_MAX (64 * 1024)
void clients_broadcast(struct clients *cs, msgbuf *const *frames, const int64_t *chats,
                       size_t n, bool now, size_t *to);

/* Chat rooms with at least one client, and the memberships in them. */
size_t clients_rooms(const struct clients *cs, size_t *memberships);

size_t clients_count(const struct clients *cs);

/* Error frames sent to clients since start. */
uint64_t clients_errors(const struct clients *cs);

/* Clients accepted since start. */
uint64_t clients_connects(const struct clients *cs);

/* The close codes counted one by one (RFC 6455 7.4.1; 1005: a close frame
 * without a code, 1006: the connection ended without a close frame);
 * clients_disconnects(cs, k) is how many clients went with
 * clients_close_codes[k], and with k == CLIENTS_CLOSE_CODES, with any
 * other code. The code is the one the node sent, or the client's when the
 * client closed first. */
#define CLIENTS_CLOSE_CODES 12
extern const int clients_close_codes[CLIENTS_CLOSE_CODES];
uint64_t clients_disconnects(const struct clients *cs, size_t k);

/* Closes every client with code (1001 on shutdown); done(n) runs once the
 * last one is gone. */
void clients_close_all(struct clients *cs, int code, void (*done)(node *n));

/* Shutdown with a drain: from now on new clients get 503, and those here
 * are closed with 1001 a few at a time, evenly over ms (a tick every
 * CLIENTS_DRAIN_TICK_MS closes as many as are due), as NATS's lame-duck
 * mode does, so that their reconnects spread over the other nodes instead
 * of landing all at once; the last ones go when ms is up. done(n) runs
 * once the last one is gone. ms 0: clients_close_all. */
#define CLIENTS_DRAIN_TICK_MS 50
void clients_drain(struct clients *cs, unsigned ms, void (*done)(node *n));

void clients_free(struct clients *cs);

#endif
