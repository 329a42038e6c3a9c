/* relay: the message path of the node. A message from a local client gets
 * the next sequence number of this origin, is serialized once for clients
 * (a WebSocket frame) and once for peers (a peer frame), is stored, and
 * both buffers are shared by every recipient. Unless --fsync off, the two
 * frames are held until the store has committed the message, so that
 * nothing leaves the node that a crash could make it forget (and reuse the
 * sequence number of). A message from a peer is delivered to the local
 * clients only, never forwarded, stored, and accepted only as the next of
 * its origin: a duplicate is ignored, one after a gap too (the gap is
 * repaired by anti-entropy, see sync.h, which delivers in order). That
 * holds for our own origin too: peers send back what our history lacks
 * of it (a crash with --fsync off, a history restored or deleted). The
 * exception: a row a peer backfills below our low-water mark of its origin
 * (sync.h) is stored if we lack it, and not delivered live.
 * The relay knows its recipients only as the sinks main hands it at
 * start: it calls nothing of clients or the mesh, which call into it. It
 * owns the message counters and the time-in-node histogram of /metrics. */
#ifndef DCHAT_RELAY_H
#define DCHAT_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/metrics.h"
#include "common/msgbuf.h"
#include "node/message.h"
#include "node/node.h"

/* Where the relay's frames go, given by main at start. Each sink takes a
 * reference per recipient (the caller keeps its own) and returns how many
 * recipients it was queued to. */
struct relay_sinks {
    /* Complete WebSocket frames of messages, frames[i] of chat chats[i],
     * in order, to every local client in each one's chat (clients.h);
     * sets to[i] instead of returning. now: a whole burst, to be written
     * at once; otherwise more may follow on this turn (clients_broadcast). */
    void (*to_clients)(msgbuf *const *frames, const int64_t *chats, size_t n, bool now,
                       size_t *to, void *ud);
    /* A complete MSG frame of origin and seq, to every peer link up. */
    size_t (*to_peers)(msgbuf *frame, uint32_t origin, uint64_t seq, void *ud);
    void *ud;
};

/* Starts the relay on n->store, which main has opened with relay_on_commit
 * as its commit callback (and the node as its ud) and closes itself; the
 * sinks are copied. Sets the client frame limit from the options. */
void relay_init(node *n, const struct relay_sinks *sinks);

/* The store's commit callback (store_commit_fn, ud the node): sends what
 * waited for the batches up to gen. */
void relay_on_commit(uint64_t gen, int ok, void *ud);

/* Accepts a message from a local client: assigns origin, seq and time,
 * stores it and (once stored, see above) sends it to every local client
 * and every peer. Returns 0, or -1 when the node cannot accept messages
 * now: no id from discovery yet, history writes failing or far behind, or
 * numbering not open (relay_own below). read_ns is when the message was
 * read (ws_conn_read_ns: once per read, not a clock read per message); its
 * time in the node (relay_in_node_seconds) counts from there, and its
 * time_ms is the wall clock of that read. */
int relay_local(node *n, struct chat_message *m, uint64_t read_ns);

/* Numbering our own messages never gives a number a peer holds for
 * another message (docs/PROTOCOL.md 3.2). Two things hold it back:
 *  - WAITING: after a start with the id of an earlier run (node.json),
 *    until the mesh has heard the marks of every peer on discovery's list,
 *    or RELAY_OWN_WAIT_MS after the start, whichever comes first
 *    (relay_own_heard). A node registered in this run, whose id is new,
 *    does not wait;
 *  - BEHIND: while a peer's marks said it holds more of our origin than
 *    our history (relay_own_marked), until the repair (relay_remote) has
 *    brought our history up to that. */
#define RELAY_OWN_WAIT_MS 10000
enum relay_own_state { RELAY_OWN_OPEN, RELAY_OWN_WAITING, RELAY_OWN_BEHIND };
struct relay_own {
    enum relay_own_state state;
    uint64_t highest;       /* our origin's highest seq in the history */
    uint64_t peers_highest; /* the highest a peer's marks claimed since start */
    uint64_t behind;        /* peers_highest - highest, 0 when not above */
    uint64_t conflicts;     /* numbers given here that a peer held for other
                               messages (relay_own_marked) */
};
void relay_own(const node *n, struct relay_own *out);

/* The mesh heard the marks of every listed peer, or gave up waiting for
 * them: WAITING is over for this run. */
void relay_own_heard(node *n);

/* Peer peer's MARKS claim every seq of our origin up to seq (its entry;
 * not PEER_MARK_DIRECT). Above our history's highest, numbering waits for
 * the repair; if we already numbered some of those seqs in this run, the
 * peer holds other messages under them: logged as an error, counted in
 * conflicts. */
void relay_own_marked(node *n, uint32_t peer, uint64_t seq);

enum relay_result { RELAY_NEW, RELAY_DUP, RELAY_GAP };

/* Takes a message received from a peer, of any origin, ours included:
 * stored, and its client frame made for the local clients (they get it at
 * the next relay_remote_flush), when it is the next one of its origin
 * (RELAY_NEW; numbering then goes on after one of ours); ignored
 * when already had (RELAY_DUP), or when messages before it are missing or
 * the store cannot take it now (RELAY_GAP: the caller should ask that
 * peer again). flags are its MSG frame's: PEER_MSG_REPAIR, sent by
 * anti-entropy catch-up (for the counters); PEER_MSG_BACKFILL, a row the
 * peer holds below its low-water mark of the origin: one at or below ours
 * too (we skipped past it) is stored if we lack it (RELAY_NEW, else
 * RELAY_DUP), with no gap test and no mark moved, and not delivered live:
 * live frames of an origin reach clients in increasing id order, and
 * clientSyncRequest serves it (docs/PROTOCOL.md 1.6, 2.7). read_ns: when
 * it was read (peer_read_ns), as for relay_local. */
enum relay_result relay_remote(node *n, const struct chat_message *m, uint16_t flags,
                               uint64_t read_ns);

/* The client frames of the messages relay_remote took since the last call
 * go to the clients, in order, together. The links call it at the end of
 * each read (peer_events.frames_done); relay_remote calls it itself when
 * a message of another read comes while some wait. */
void relay_remote_flush(node *n);

/* The relay's counters, since start (status.c shows them). */
struct relay_counters {
    uint64_t client_msgs_in;   /* accepted from local clients */
    uint64_t peer_msgs_in;     /* received from peers */
    uint64_t peer_msgs_out;    /* frames queued to peers */
    uint64_t client_frames_out;/* frames queued to local clients */
    uint64_t dropped_dup;      /* peer messages ignored as already seen */
    uint64_t dropped_gap;      /* peer messages ignored for coming after a gap */
    uint64_t repair_in;        /* peer messages sent by catch-up, received */
    uint64_t repaired;         /* of those, taken: missing here until then */
    uint64_t backfilled;       /* of those, rows below our low-water mark of
                                  their origin (PEER_MSG_BACKFILL) */
    uint64_t unstored_dropped; /* own messages never stored (the store gave up
                                  a failing batch as it closed): sent nowhere */
};
/* Owned by the relay; valid until relay_free. */
const struct relay_counters *relay_counters(const node *n);

/* Where a message came from, for relay_in_node_seconds. */
enum relay_source { RELAY_FROM_CLIENT, RELAY_FROM_PEER };

/* Per message delivered to at least one local client: the time from the
 * read of the message (its frame decoded on the loop) to the end of the
 * loop turn that handed its frame to the clients' sockets. A client's
 * message includes the wait for its commit. */
const struct metrics_histogram *relay_in_node_seconds(const node *n, enum relay_source src);

/* The highest sequence of origin delivered to local clients (for the own
 * origin: sent out), 0 when none. */
uint64_t relay_delivered(node *n, uint32_t origin);

/* What the node's own messages waiting for their commit cost each client
 * queue once they go (outq_cost of their client frames): back-pressure. */
size_t relay_held(const node *n);

/* Frees the relay's state; held messages are dropped (the store has
 * them). Call after the store is closed. */
void relay_free(node *n);

#endif
