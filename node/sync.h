/* sync: anti-entropy between linked nodes (docs/PROTOCOL.md 2.4). Each side
 * sends MARKS (its highest committed seq per origin, "direct" for the nodes
 * it links to) when a link comes up, every --sync-interval and soon after a
 * refusal; the other answers with the MSG frames the peer lacks (catchup.h),
 * read from the store while the link's queue is short, and more each time a
 * write on the link completes; below its low-water mark of an origin, which
 * the peer skips to, the rows it still holds go first, flagged as backfill.
 * Owns a zero timer for pumps that must go on with nothing on the wire;
 * one sync_link per peer link, held by the mesh. */
#ifndef DCHAT_SYNC_H
#define DCHAT_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/node.h"
#include "node/peer.h"
#include "node/peer_proto.h"

/* The node's anti-entropy: its timer and the links waiting for it. Not
 * typedef'd: unistd.h declares a function sync(). */
struct sync;

/* The ids of the nodes with a link up, other than peer id except: the
 * origins our marks to that peer call direct. Returns a malloc'd array of
 * *n ids (the caller frees it; room for at least one). */
typedef uint32_t *(*sync_direct_fn)(uint32_t except, size_t *n, void *ud);

/* direct and ud are kept. */
struct sync *sync_new(node *n, sync_direct_fn direct, void *ud);

/* Stops the timer and frees the state once its handle is closed;
 * then done(ud). Every sync_link must be freed by then or later not used. */
void sync_close(struct sync *y, void (*done)(void *ud), void *ud);

/* Messages sent to peers by catch-up since start. */
uint64_t sync_caught_up(const struct sync *y);
/* Of those, rows below this node's low-water mark of their origin, sent
 * to a peer that skipped past them (backfill, docs/PROTOCOL.md 2.4). */
uint64_t sync_backfilled(const struct sync *y);

typedef struct sync_link sync_link;

/* The anti-entropy state of link p, empty (a new link starts from the
 * peer's marks alone). Freed with sync_link_free once p is gone. */
sync_link *sync_link_new(struct sync *y, peer *p);
void sync_link_free(sync_link *s);

/* The link came up: tell the peer our marks. */
void sync_link_up(sync_link *s);

/* The periodic work of a link up (the mesh's tick): marks when due (the
 * interval, or soon after a refusal), then catch-up. */
void sync_tick(sync_link *s, uint64_t now);

/* The link was challenged by a new one from the same node: if it is dead,
 * a write on it says so soon (marks, at most every 200 ms). */
void sync_probe(sync_link *s);

/* The peer's MARKS frame: what it holds of our own origin goes to the
 * relay (relay_own_marked), cursors are set for every origin it lags
 * behind on, and catch-up starts. */
void sync_on_marks(sync_link *s, const struct peer_frame *f);

/* A write on the link completed (peer_events.written): catch-up goes on
 * while the queue is short. */
void sync_link_written(sync_link *s);

/* A MSG frame of the peer's was taken (refused false) or refused for a gap
 * or a store behind (refused true): after a refusal, marks go out soon. */
void sync_after_msg(sync_link *s, bool refused);

/* A MSG frame of origin and seq was queued on the link live: catch-up will
 * not send it again. */
void sync_queued(sync_link *s, uint32_t origin, uint64_t seq);

/* Whether our last marks on the link called origin direct: then its
 * messages must come from its own node, not from this peer. */
bool sync_marked_direct(const sync_link *s, uint32_t origin);

#endif
