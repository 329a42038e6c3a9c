/* mesh: exactly one link to every other active node. The active list comes
 * from discovery (through membership); both sides may dial, crossed dials
 * keep the lower id's (so two nodes never flap), a lost link to a node still
 * active is re-dialled with backoff, a node that leaves the list is dropped.
 * Each link is a peer (peer.h: connection, handshake, queue) with its
 * anti-entropy state (sync.h); broadcast queues a frame on every link up. */
#ifndef DCHAT_MESH_H
#define DCHAT_MESH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/msgbuf.h"
#include "node/node.h"

struct peer_info {
    uint32_t id;
    char address[64];
    int sync_port;
    int client_port;
};

/* Binds the sync port (n->cfg.listen_host, n->cfg.sync_port) and starts
 * accepting links; sets n->sync_port. Returns 0 or a UV_E* code. */
int mesh_start(node *n);

/* Applies discovery's list of the other active nodes. asked_ms is the
 * monotonic time the request that produced the list was sent: links that
 * came up after it are not dropped for being absent from it. */
void mesh_update(struct mesh *m, const struct peer_info *list, size_t count,
                 uint64_t asked_ms);

/* Queues frame (a complete MSG frame of origin and seq; a reference is
 * taken per link) on every link that is up; each link's anti-entropy then
 * counts it as sent to that peer. Returns the number of links it was
 * queued on. */
size_t mesh_broadcast(struct mesh *m, msgbuf *frame, uint32_t origin, uint64_t seq);

/* Number of links up. */
size_t mesh_links_up(const struct mesh *m);

/* Inbound connections closed at once since start because 64 accepted ones
 * were already waiting for a hello (each waits at most 5 s). */
uint64_t mesh_links_refused(const struct mesh *m);

/* Links refused for not proving the cluster secret (or breaking the
 * handshake), and peer messages dropped for an origin the link may not
 * speak for (link_may_relay in mesh.c). */
uint64_t mesh_links_unauthenticated(const struct mesh *m);
uint64_t mesh_forged_dropped(const struct mesh *m);

/* Messages sent to peers by anti-entropy since start (sync.h). */
uint64_t mesh_caught_up(const struct mesh *m);
/* Of those, rows below this node's low-water marks (backfill, sync.h). */
uint64_t mesh_backfilled(const struct mesh *m);

/* A JSON array describing each known peer and its link, for /api/status.
 * New reference. */
json_t *mesh_status(const struct mesh *m);

/* The links to the other active nodes by state (down: no link at all),
 * for GET /metrics; mesh_link_state_names gives each its label. */
enum mesh_link_state { MESH_LINK_UP, MESH_LINK_CONNECTING, MESH_LINK_CLOSING, MESH_LINK_DOWN,
                       MESH_LINK_STATES };
extern const char *const mesh_link_state_names[MESH_LINK_STATES];
void mesh_link_states(const struct mesh *m, unsigned count[MESH_LINK_STATES]);

/* How many peers in discovery's last list have no link up; their ids, up
 * to max, go into ids (for GET /readyz). */
size_t mesh_listed_not_up(const struct mesh *m, uint32_t *ids, size_t max);

/* Tests only (--test-hooks): closes the link to peer_id and refuses a new
 * one, either way, for ms. Returns 0, or -1 when the peer is unknown. */
int mesh_test_cut(struct mesh *m, uint32_t peer_id, unsigned ms);

/* Closes the listener and every link (frames still queued are dropped:
 * the peers learn of the shutdown from the closed socket), and frees the
 * mesh once every handle is closed. */
void mesh_stop(struct mesh *m);

#endif
