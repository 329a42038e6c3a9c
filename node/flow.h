/* flow: the node's back-pressure. Every reader (a client's WebSocket, a
 * peer link) tells flow of each message it delivers; when the work its
 * messages feed is piling up, it stops being read at once, and TCP slows
 * its sender down. It is read again once that
 * work has drained below the low-water marks. A sender is never closed for
 * sending fast. What piles up:
 *   - for a client: the node's own messages waiting for their commit (the
 *     relay's held bytes), the store's backlog, and the outbound queues of
 *     clients and peer links that are congested while still reading;
 *   - for a peer link: the store's backlog and congested client queues
 *     (not other links: peers never forward, so links cannot wait on each
 *     other in a circle).
 * flow also owns the queue classes (limits) of clients and links. */
#ifndef DCHAT_FLOW_H
#define DCHAT_FLOW_H

#include <stdbool.h>
#include <stddef.h>

#include "common/outq.h"
#include "node/node.h"

enum flow_kind { FLOW_CLIENT, FLOW_PEER };

/* Embedded in the owner (a client, a link); set_paused stops or resumes
 * reading its socket. */
struct flow_reader {
    struct flow_reader *next, *prev;
    enum flow_kind kind;
    unsigned char list;        /* which list it is on: none, noted, paused */
    void (*set_paused)(struct flow_reader *r, bool paused);
};

/* Creates the node's flow state (n->flow) from n->cfg's queue limits. */
void flow_init(node *n);

/* The limits of the clients' and of the links' outbound queues. */
struct outq_class *flow_clients_class(node *n);
struct outq_class *flow_links_class(node *n);

/* r delivered a message: it is paused now if its work is piling up (what
 * it already read is still decoded), and checked again after the turn. */
void flow_note(node *n, struct flow_reader *r);

/* r is closing: forget it (it is not resumed). */
void flow_forget(node *n, struct flow_reader *r);

/* How many readers are paused now (for /api/status). */
size_t flow_paused(const node *n, enum flow_kind kind);

/* How many times a reader of kind was paused since the start. */
uint64_t flow_pauses(const node *n, enum flow_kind kind);

/* Frees the state, at exit: after the loop has closed every handle (its
 * own and every connection's, whose queues point into it). */
void flow_free(node *n);

#endif
