/* registry: the nodes discovery knows. Registered nodes (id and a salted
 * HMAC-SHA256 of their password) live in SQLite and survive restarts; ids
 * come from an AUTOINCREMENT key, so they are never reused. The active list
 * (who is logged in, on which ports, last seen when) lives in memory and
 * starts empty: nodes fill it again with logins and heartbeats. */
#ifndef DCHAT_REGISTRY_H
#define DCHAT_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct registry registry;

struct registry_node {
    int64_t id;
    int syncport;
    int clientport;
    char address[64];
    uint64_t last_seen_ms;  /* monotonic */
    bool active;
};

/* Opens (creating) DIR/discovery.db. Returns NULL after writing the reason
 * into err. */
registry *registry_open(const char *dir, char *err, size_t errlen);
void registry_close(registry *r);

/* Stores a new node with password; returns its id (>= 1) or -1 on a
 * database error (logged). */
int64_t registry_register(registry *r, const char *password);

/* 0 when id exists and password matches, -1 otherwise. */
int registry_check(registry *r, int64_t id, const char *password);

/* Marks id active with its ports and address, seen now. */
void registry_login(registry *r, int64_t id, int syncport, int clientport,
                    const char *address, uint64_t now_ms);

/* Refreshes id's last-seen time. Returns 0, or -1 when the node has not
 * logged in since this daemon started or since it logged out (its ports are
 * unknown). A node that expired without logging out becomes active again. */
int registry_heartbeat(registry *r, int64_t id, uint64_t now_ms);

/* Takes id off the active list and forgets its ports. */
void registry_logout(registry *r, int64_t id);

/* Deactivates the nodes not seen for ttl_ms; returns how many. */
size_t registry_expire(registry *r, uint64_t now_ms, uint64_t ttl_ms);
/* Nodes registry_expire made inactive since open. */
uint64_t registry_expired_total(const registry *r);

/* The active nodes, in id order; *count set. Valid until the next call
 * that changes the registry. */
const struct registry_node *registry_active(registry *r, size_t *count);

#endif
