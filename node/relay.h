/* relay: the message path of the node. A message from a local client gets
 * the next sequence number of this origin, is serialized once for clients
 * (a WebSocket frame) and once for peers (a peer frame), and both buffers
 * are shared by every recipient. A message from a peer is delivered to the
 * local clients only, never forwarded, and at most once per (origin, seq).
 * Sequence numbers are leased in blocks recorded in DATA_DIR/seq.lease
 * before use, so a restarted or crashed node never reuses one. */
#ifndef DCHAT_RELAY_H
#define DCHAT_RELAY_H

#include <stdint.h>

#include "node/message.h"
#include "node/node.h"

/* Reads the sequence lease from the data dir. Returns 0, or -1 after
 * logging what is wrong with the lease file. */
int relay_init(node *n);

/* Accepts a message from a local client: assigns origin and seq, sends it
 * to every local client and every peer. m->origin, seq and time_ms are
 * filled in here. Returns 0, or -1 when the node cannot accept messages
 * yet (no id from discovery) or the lease cannot be extended. */
int relay_local(node *n, struct chat_message *m);

/* Delivers a message received from a peer to the local clients, unless
 * this (origin, seq) was delivered before. */
void relay_remote(node *n, const struct chat_message *m);

/* Frees the relay's state. */
void relay_free(node *n);

#endif
