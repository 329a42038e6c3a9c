/* catchup: see catchup.h. Two arrays, both in ascending origin order: what
 * the peer has per origin (rebuilt by each MARKS in one merge; a binary
 * search for a queued frame), and the origins to serve with a read index
 * (catchup_marks() appends, catchup_done() moves the index: never searched
 * nor shifted).
 *
 * Why a queued frame counts only when it is the next seq: the peer accepts
 * a message only as the next of its origin and drops one after a gap.
 * Frames we queue after receiving a MARKS reach the peer after it sent that
 * MARKS, in order, so from its mark on, each next one is accepted (or is a
 * duplicate of one it got elsewhere). A run of frames beyond the mark may
 * have reached it before it sent a later MARKS; if that MARKS is not
 * flagged, none of them was refused, so once it shows the peer at the run's
 * start, all of the run counts. A refusal (a gap, or a peer whose disk is
 * behind) comes back as a flagged MARKS, which resets the table. */
#include "node/catchup.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct known {
    uint32_t origin;
    uint64_t has;             /* the peer has or will have every seq up to it */
    uint64_t run_lo, run_hi;  /* frames queued beyond has+1, not yet known to
                                 connect to it; 0, 0 when none */
    uint64_t back_from;       /* the backfill range (catchup_skip): rows in */
    uint64_t back_after;      /* (back_after, back_upto] are still to go, */
    uint64_t back_upto;       /* (back_from, back_upto] after a refusal */
};

static bool back_pending(const struct known *e)
{
    return e->back_after < e->back_upto;
}

struct catchup {
    struct known *k;
    size_t nk, capk;
    uint32_t *cu;             /* origins to serve: cu[head .. ncu) */
    size_t head, ncu, capcu;
};

catchup *catchup_new(void)
{
    return xcalloc(1, sizeof(catchup));
}

void catchup_free(catchup *c)
{
    if (c == NULL)
        return;
    free(c->k);
    free(c->cu);
    free(c);
}

/* The first entry whose origin is not below origin (nk when none). */
static size_t known_pos(const catchup *c, uint32_t origin)
{
    size_t lo = 0, hi = c->nk;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->k[mid].origin < origin)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct known *known_find(const catchup *c, uint32_t origin)
{
    size_t i = known_pos(c, origin);
    return i < c->nk && c->k[i].origin == origin ? &c->k[i] : NULL;
}

uint64_t catchup_has(const catchup *c, uint32_t origin)
{
    const struct known *e = known_find(c, origin);
    return e != NULL ? e->has : 0;
}

/* What the peer's mark theirs (not flagged, not direct) says of e. */
static void known_raise(struct known *e, uint64_t theirs)
{
    if (e->run_hi != 0 && theirs + 1 >= e->run_lo)
        e->has = UTIL_MAX(e->has, e->run_hi); /* the run connects: see above */
    e->has = UTIL_MAX(e->has, theirs);
    if (e->run_hi <= e->has)
        e->run_lo = e->run_hi = 0;
}

void catchup_queued(catchup *c, uint32_t origin, uint64_t seq)
{
    size_t i = known_pos(c, origin);
    if (i == c->nk || c->k[i].origin != origin) {
        /* Rare: our own origin before a MARKS made room for it (each MARKS
         * makes an entry for every origin we have). */
        if (c->nk == c->capk) {
            c->capk = c->capk ? 2 * c->capk : 16;
            c->k = xrealloc(c->k, c->capk * sizeof(*c->k));
        }
        memmove(&c->k[i + 1], &c->k[i], (c->nk - i) * sizeof(*c->k));
        c->nk++;
        c->k[i] = (struct known){ .origin = origin };
    }
    struct known *e = &c->k[i];
    if (seq <= e->has)
        return;
    if (seq == e->has + 1) {
        e->has = seq;
        if (e->run_hi <= e->has)
            e->run_lo = e->run_hi = 0;
    } else if (e->run_hi != 0 && seq == e->run_hi + 1) {
        e->run_hi = seq;
    } else {
        e->run_lo = e->run_hi = seq; /* an older run, if any, no longer counts */
    }
}

size_t catchup_marks(catchup *c, const struct peer_frame *f, const struct store_origin *ours,
                     size_t n)
{
    bool reset = (f->flags & PEER_MARKS_REFUSED) != 0;
    /* The new table: one entry per origin of ours or of the old table (the
     * latter only adds our own origin before we have any message of it). */
    size_t cap = c->nk + n;
    struct known *nk = xmalloc((cap ? cap : 1) * sizeof(*nk));
    size_t nn = 0, i = 0, j = 0;
    uint32_t k = 0;              /* the peer's next entry */
    uint32_t mo = 0;             /* its origin and seq, when k < f->nmarks */
    uint64_t ms = 0;
    if (k < f->nmarks)
        peer_proto_mark(f, k, &mo, &ms);
    c->head = c->ncu = 0;
    while (i < c->nk || j < n) {
        uint32_t origin = j == n || (i < c->nk && c->k[i].origin < ours[j].origin)
                              ? c->k[i].origin
                              : ours[j].origin;
        struct known e = i < c->nk && c->k[i].origin == origin ? c->k[i++]
                                                               : (struct known){ .origin = origin };
        const struct store_origin *o = j < n && ours[j].origin == origin ? &ours[j++] : NULL;
        while (k < f->nmarks && mo < origin && ++k < f->nmarks)
            peer_proto_mark(f, k, &mo, &ms);
        uint64_t theirs = k < f->nmarks && mo == origin ? ms : 0;
        bool direct = theirs == PEER_MARK_DIRECT;
        if (reset) {
            e.has = direct ? 0 : theirs;
            e.run_lo = e.run_hi = 0;
            if (back_pending(&e))
                e.back_after = e.back_from; /* what went may have been refused */
        } else if (!direct) {
            known_raise(&e, theirs);
        }
        nk[nn++] = e;
        if (o != NULL && !direct && (o->highest > e.has || back_pending(&e))) {
            if (c->ncu == c->capcu) {
                c->capcu = c->capcu ? 2 * c->capcu : 16;
                c->cu = xrealloc(c->cu, c->capcu * sizeof(*c->cu));
            }
            c->cu[c->ncu++] = origin;
        }
    }
    free(c->k);
    c->k = nk;
    c->nk = nn;
    c->capk = cap ? cap : 1;
    return c->ncu;
}

bool catchup_next(const catchup *c, uint32_t *origin, uint64_t *after)
{
    if (c->head == c->ncu)
        return false;
    *origin = c->cu[c->head];
    *after = catchup_has(c, *origin);
    return true;
}

void catchup_skip(catchup *c, uint32_t origin, uint64_t upto)
{
    uint64_t had = catchup_has(c, origin);
    catchup_queued(c, origin, upto); /* makes the entry if need be */
    size_t i = known_pos(c, origin);
    struct known *e = &c->k[i];
    if (upto > had) {
        if (back_pending(e)) {
            e->back_from = UTIL_MIN(e->back_from, had);
            e->back_after = UTIL_MIN(e->back_after, had);
            e->back_upto = UTIL_MAX(e->back_upto, upto);
        } else {
            e->back_from = e->back_after = had;
            e->back_upto = upto;
        }
    }
    e->has = UTIL_MAX(e->has, upto);
    if (e->run_hi <= e->has)
        e->run_lo = e->run_hi = 0;
}

bool catchup_backfill(const catchup *c, uint32_t origin, uint64_t *after, uint64_t *upto)
{
    const struct known *e = known_find(c, origin);
    if (e == NULL || !back_pending(e))
        return false;
    *after = e->back_after;
    *upto = e->back_upto;
    return true;
}

void catchup_backfilled(catchup *c, uint32_t origin, uint64_t seq)
{
    size_t i = known_pos(c, origin);
    if (i == c->nk || c->k[i].origin != origin)
        return;
    struct known *e = &c->k[i];
    e->back_after = UTIL_MAX(e->back_after, UTIL_MIN(seq, e->back_upto));
    if (!back_pending(e))
        e->back_from = e->back_after = e->back_upto = 0;
}

void catchup_done(catchup *c)
{
    if (c->head < c->ncu && ++c->head == c->ncu)
        c->head = c->ncu = 0;
}

void catchup_clear(catchup *c)
{
    c->head = c->ncu = 0;
}

size_t catchup_pending(const catchup *c)
{
    return c->ncu - c->head;
}
