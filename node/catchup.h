/* catchup: one peer link's anti-entropy state, owned by sync.c (one per
 * link, freed with it, so a new link starts from the peer's marks alone):
 * per origin, what the peer has as far as this node knows (its MARKS, plus
 * the MSG frames queued to it on this link since, live or catch-up), and
 * the cursors of what it still lacks. The peer's MARKS, this node's origins
 * and that table are all in ascending origin order, so catchup_marks()
 * merges them in one pass and produces the cursors already in order: the
 * work is linear in the number of origins, so tens of thousands of them do
 * not hold the event loop.
 *
 * Only what the peer will accept counts as had: a queued frame moves an
 * origin's mark when it is the next seq after it; frames beyond (a live
 * message while the peer is still behind) are kept aside as one run, and
 * counted once a MARKS shows the peer reached the run's start. A MARKS
 * flagged PEER_MARKS_REFUSED (the peer refused a frame we sent) drops all
 * of it and starts again from the marks.
 *
 * Below our low-water mark (retention) a peer that lags behind skips to it
 * (catchup_skip); the rows we still hold below it are then sent apart, as
 * backfill, which moves no mark (docs/PROTOCOL.md 2.4). */
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

/* The peer's MARKS frame f (as decoded: its entries are in strictly
 * ascending origin order, flags included). ours is this node's origins in
 * ascending order (store_origins()). Updates what the peer has, then
 * replaces the cursors: one per origin of ours, except origins the peer
 * gets directly (PEER_MARK_DIRECT), whose highest seq is above what the
 * peer has or will have from this link. The peer's own origin is no
 * exception: a node whose history lost the tail of its own messages (a
 * crash with --fsync off, a history restored or deleted) marks less of it
 * than we hold, and gets it back like any other origin; a node that lost
 * nothing marks at least what it sent out (sync.c), so this costs no frame
 * then.
 * Neither f nor ours is kept. Returns the number of cursors. */
size_t catchup_marks(catchup *c, const struct peer_frame *f, const struct store_origin *ours,
                     size_t n);

/* The cursor to serve next: false when there is none; otherwise *origin,
 * and *after, the seq after which the peer lacks everything of it (what it
 * has, including the frames already queued to it). */
bool catchup_next(const catchup *c, uint32_t *origin, uint64_t *after);

/* A MSG frame of origin and seq was queued on the link (live or catch-up):
 * the peer will have it. */
void catchup_queued(catchup *c, uint32_t origin, uint64_t seq);

/* The peer will have every seq of origin up to upto without frames: it
 * skips to our low-water mark, which our last marks told it (sync.c).
 * What it had before, up to upto, it lacks: the rows we still hold in that
 * range (a quiet chat's, below a busy chat's mark) are to be backfilled
 * (catchup_backfill), once per link; a second skip widens the range. */
void catchup_skip(catchup *c, uint32_t origin, uint64_t upto);

/* The rows of origin still to backfill to the peer: false when none;
 * otherwise every row we hold with *after < seq <= *upto. The cursor of
 * origin stays while they are left, even once the peer has all above the
 * mark; a refused-flagged MARKS starts the range over, its rows not
 * counting as had either. */
bool catchup_backfill(const catchup *c, uint32_t origin, uint64_t *after, uint64_t *upto);

/* Every row of origin's backfill range up to seq was queued (or there is
 * none left up to it). */
void catchup_backfilled(catchup *c, uint32_t origin, uint64_t seq);

/* The next cursor is done (the peer has all of its origin now). */
void catchup_done(catchup *c);

/* Drops every cursor; the peer's next MARKS sets them again. */
void catchup_clear(catchup *c);

/* Cursors not done yet. */
size_t catchup_pending(const catchup *c);

/* Every seq of origin up to the result, the peer has or will have from the
 * frames queued on this link, as far as this node knows; 0 when unknown. */
uint64_t catchup_has(const catchup *c, uint32_t origin);

#endif
