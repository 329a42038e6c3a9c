/* membership: the node's standing with discovery. On first start it
 * registers (POST /api/nodes/register) and keeps its id and password in
 * DATA_DIR/node.json so that a restarted node comes back with the same id.
 * Then it logs in with its ports, sends a heartbeat every heartbeat_ms and
 * hands every active list it receives to the mesh. When discovery is
 * unreachable it keeps going with the mesh it has and retries with backoff;
 * it logs in again when discovery forgets it. */
#ifndef DCHAT_MEMBERSHIP_H
#define DCHAT_MEMBERSHIP_H

#include <stdbool.h>

#include "node/node.h"

/* Loads the identity from the data dir (creating the dir), so n->id is set
 * at once for a node that was registered before. Returns 0, or -1 after
 * logging why (unreadable or corrupt node.json, data dir not writable). */
int membership_load(node *n);

/* Starts talking to discovery (register if needed, login, heartbeats). */
void membership_start(node *n);

/* True once discovery accepted a login and has not refused a heartbeat
 * since. */
bool membership_active(const node *n);

/* Logs out (bounded by a short timeout), stops the timers, and calls
 * done(n) when finished, from the loop. */
void membership_stop(node *n, void (*done)(node *n));

#endif
