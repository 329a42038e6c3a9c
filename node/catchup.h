/* catchup: one peer link's anti-entropy cursors, owned by mesh.c (one per
 * link, freed with it). The peer's MARKS frame and this node's origins are
 * both in ascending origin order, so catchup_marks() compares them in one
 * merge pass and produces the cursors already in that order, served from
 * the front: the work is linear in the number of origins, so tens of
 * thousands of them do not hold the event loop. */
#ifndef DCHAT_CATCHUP_H
#define DCHAT_CATCHUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/peer_proto.h"
#include "node/store.h"

typedef struct catchup catchup;

/* A link's state, empty. Freed with catchup_free (NULL is fine). */
catchup *catchup_new(void);
void catchup_free(catchup *c);

/* Replaces the cursors after the peer's MARKS frame f (as decoded: its
 * entries are in strictly ascending origin order). ours is this node's
 * origins in ascending order (store_origins()). One cursor per origin of
 * ours, except skip (the peer's own id: it has all of its own), whose
 * highest seq is above the peer's entry for it (0 when f has none).
 * Neither f nor ours is kept. Returns the number of cursors. */
size_t catchup_marks(catchup *c, const struct peer_frame *f, const struct store_origin *ours,
                     size_t n, uint32_t skip);

/* The cursor to serve next: false when there is none; otherwise *origin,
 * and *after, the seq after which the peer lacks everything of it. */
bool catchup_next(const catchup *c, uint32_t *origin, uint64_t *after);

/* A MSG frame of origin and seq was queued on the link: the next cursor
 * moves past it when it is the one that cursor would send next. */
void catchup_queued(catchup *c, uint32_t origin, uint64_t seq);

/* The next cursor is done (the peer has all of its origin now). */
void catchup_done(catchup *c);

/* Drops every cursor; the peer's next MARKS sets them again. */
void catchup_clear(catchup *c);

/* Cursors not done yet. */
size_t catchup_pending(const catchup *c);

#endif
