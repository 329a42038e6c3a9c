/* sync: see sync.h. The cursors themselves, and what counts as already
 * sent, are catchup.c's pure logic; this file sends and reads MARKS, reads
 * the store for the cursors and queues the frames on the link. Catch-up is
 * driven by the link's queue: the peer's MARKS start a pump, which fills
 * the queue up to SYNC_CATCHUP_QUEUE, and every completed write on the
 * link pumps again while cursors are left, so catch-up runs as fast as the
 * link drains. A pump that stops at its bound on store reads with nothing
 * on its way to the peer (no write to wake it) goes on at the next loop
 * turn, through a zero timer; the tick pumps too. */
#include "node/sync.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "node/catchup.h"
#include "node/relay.h"
#include "node/store.h"

#define SYNC_CATCHUP_ROWS 256          /* messages per store read */
#define SYNC_CATCHUP_QUEUE (1u << 20)  /* catch-up waits while more is queued */
#define SYNC_CATCHUP_READS 64          /* store reads per pump, at most */
#define SYNC_GAP_MARKS_MS 200          /* marks after a refusal, at most this often */

struct sync {
    node *n;
    sync_direct_fn direct;
    void *ud;
    uv_timer_t later;         /* a zero timer: pumps that must go on */
    sync_link **active;       /* links waiting for it */
    size_t nactive, capactive;
    void (*closed)(void *ud);
    void *closed_ud;
    uint64_t caught_up;       /* MSG frames queued by catch-up */
    uint64_t backfilled;      /* of those, below our low-water mark */
};

struct sync_link {
    struct sync *y;
    peer *p;
    catchup *cu;              /* the cursors, see catchup.h */
    uint64_t next_marks_ms;   /* the periodic marks are due */
    uint64_t marks_sent_ms;
    bool marks_wanted;        /* a frame was refused: send marks soon */
    bool refused;             /* we refused a frame of the peer's since our
                                 last marks: flag the next ones */
    uint32_t *direct;         /* origins marked direct in our last marks */
    size_t ndirect;
    uint64_t marks_epoch;     /* store_trim_epoch when our last marks went */
    size_t active_index;      /* in y->active, when waiting for the timer */
    bool active;
    bool old_gap_logged;      /* see sync_pump_some */
};

struct sync *sync_new(node *n, sync_direct_fn direct, void *ud)
{
    struct sync *y = xcalloc(1, sizeof(*y));
    y->n = n;
    y->direct = direct;
    y->ud = ud;
    uv_timer_init(n->loop, &y->later);
    y->later.data = y;
    return y;
}

static void sync_closed_cb(uv_handle_t *h)
{
    struct sync *y = h->data;
    void (*done)(void *) = y->closed;
    void *ud = y->closed_ud;
    for (size_t i = 0; i < y->nactive; i++)
        y->active[i]->active = false; /* links freed later must not look here */
    free(y->active);
    free(y);
    if (done)
        done(ud);
}

void sync_close(struct sync *y, void (*done)(void *ud), void *ud)
{
    y->closed = done;
    y->closed_ud = ud;
    uv_close((uv_handle_t *)&y->later, sync_closed_cb);
}

uint64_t sync_caught_up(const struct sync *y)
{
    return y->caught_up;
}

uint64_t sync_backfilled(const struct sync *y)
{
    return y->backfilled;
}

sync_link *sync_link_new(struct sync *y, peer *p)
{
    sync_link *s = xcalloc(1, sizeof(*s));
    s->y = y;
    s->p = p;
    s->cu = catchup_new();
    return s;
}

static void active_remove(sync_link *s)
{
    struct sync *y = s->y;
    if (!s->active)
        return;
    sync_link *last = y->active[--y->nactive];
    y->active[s->active_index] = last;
    last->active_index = s->active_index;
    s->active = false;
}

void sync_link_free(sync_link *s)
{
    if (s == NULL)
        return;
    active_remove(s);
    catchup_free(s->cu);
    free(s->direct);
    free(s);
}

/* --- marks out ----------------------------------------------------------- */

static int id_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Our marks for the link's peer: our highest committed seq per origin,
 * except for the nodes we have a link up to (other than that peer):
 * PEER_MARK_DIRECT, since their messages come to us from them, live or by
 * their own catch-up; a third node sending them too would only make
 * duplicates. Flagged when we refused a frame of the peer's since our
 * previous marks to it. */
static void sync_send_marks(sync_link *s)
{
    node *n = s->y->n;
    size_t count;
    const struct store_origin *o = store_origins(n->store, &count);
    size_t ndirect;
    uint32_t *direct = s->y->direct(peer_id(s->p), &ndirect, s->y->ud);
    qsort(direct, ndirect, sizeof(*direct), id_cmp);
    /* Low-water marks only once something was trimmed, and only to a
     * peer whose hello says it reads them (peer_proto_marks_flags). */
    bool floors = false;
    for (size_t k = 0; k < count && !floors; k++)
        floors = o[k].trimmed > 0;
    peer_marks_writer w;
    peer_proto_marks_begin(&w, n->id, peer_proto_marks_flags(peer_features(s->p), s->refused,
                                                             floors),
                           count + ndirect);
    /* Both lists ascending: one merge. Past the frame bound, the highest
     * origins are left out (docs/PROTOCOL.md 2.4). */
    size_t i = 0, d = 0;
    int rc = 0;
    while (rc == 0 && (i < count || d < ndirect)) {
        if (d < ndirect && (i == count || direct[d] <= o[i].origin)) {
            if (i < count && o[i].origin == direct[d])
                i++;
            rc = peer_proto_marks_add(&w, direct[d++], PEER_MARK_DIRECT);
        } else {
            /* Only what is committed: a batch still being written may
             * fail, and the peer must not take its rows as ours. Of our
             * own origin, also what we sent out (with --fsync off, before
             * its commit): the peer has it from us, and sending it back
             * would be wasted. Should we crash before that commit, our
             * next marks, read from the history, claim less, and the
             * peers send the rest back (catchup.h). */
            uint64_t mark = o[i].committed;
            if (o[i].origin == n->id)
                mark = UTIL_MAX(mark, relay_delivered(n, n->id));
            rc = peer_proto_marks_add_floor(&w, o[i].origin, mark,
                                            UTIL_MIN(o[i].trimmed, mark));
            i++;
        }
    }
    free(s->direct); /* what the peer may send us of other origins */
    s->direct = direct;
    s->ndirect = ndirect;
    msgbuf *b = peer_proto_marks_end(&w);
    peer_send(s->p, b);
    msgbuf_unref(b);
    s->refused = false;
    s->marks_epoch = store_trim_epoch(n->store);
    uint64_t now = util_now_ms();
    s->marks_sent_ms = now;
    s->next_marks_ms = now + n->cfg.sync_interval_ms;
    s->marks_wanted = false;
}

void sync_link_up(sync_link *s)
{
    sync_send_marks(s); /* what did we miss of each other? */
}

void sync_probe(sync_link *s)
{
    if (peer_is_up(s->p) && util_now_ms() - s->marks_sent_ms >= SYNC_GAP_MARKS_MS)
        sync_send_marks(s);
}

void sync_after_msg(sync_link *s, bool refused)
{
    if (refused)
        s->refused = true; /* the peer may count it as had: tell it */
    if (s->refused && !s->marks_wanted) {
        s->marks_wanted = true;
        if (util_now_ms() - s->marks_sent_ms >= SYNC_GAP_MARKS_MS)
            sync_send_marks(s);
    }
}

bool sync_marked_direct(const sync_link *s, uint32_t origin)
{
    for (size_t lo = 0, hi = s->ndirect; lo < hi;) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->direct[mid] == origin)
            return true;
        if (s->direct[mid] < origin)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* --- catch-up ------------------------------------------------------------ */

void sync_queued(sync_link *s, uint32_t origin, uint64_t seq)
{
    catchup_queued(s->cu, origin, seq);
}

/* Queues rows of origin to the peer as MSG frames with flags, one by one
 * while its queue is short (checked per message: a few big ones could pass
 * the link's bound within one read, and the link would close and start
 * over), and tells the cursors. Returns how many went. */
static size_t sync_send_rows(sync_link *s, uint32_t origin, const struct store_rows *rows,
                             uint16_t flags)
{
    peer *p = s->p;
    size_t i = 0;
    for (; i < rows->n && peer_is_up(p) && peer_queued(p) < SYNC_CATCHUP_QUEUE; i++) {
        msgbuf *b = peer_proto_msg(&rows->msgs[i], flags);
        peer_send(p, b);
        msgbuf_unref(b);
        if (!peer_is_up(p))
            break;
        if (flags & PEER_MSG_BACKFILL) {
            catchup_backfilled(s->cu, origin, rows->msgs[i].seq);
            s->y->backfilled++;
        } else {
            catchup_queued(s->cu, origin, rows->msgs[i].seq);
        }
        s->y->caught_up++;
    }
    return i;
}

/* One read of the rows of origin held in (after, upto], below our
 * low-water mark, queued to the peer flagged PEER_MSG_BACKFILL while its
 * queue is short (docs/PROTOCOL.md 2.4). They move no cursor: the peer has
 * skipped past them already. Returns 0, or -1 when the link went down or
 * the store could not be read (logged: the cursors are dropped, and the
 * peer's next marks set them again, the range left included). */
static int sync_backfill_some(sync_link *s, uint32_t origin, uint64_t after, uint64_t upto)
{
    node *n = s->y->n;
    peer *p = s->p;
    struct store_rows rows = { 0 };
    if (store_read(n->store, origin, after, upto, SYNC_CATCHUP_ROWS, &rows) != 0) {
        catchup_clear(s->cu); /* logged; the next marks start over */
        store_rows_free(&rows);
        return -1;
    }
    size_t i = sync_send_rows(s, origin, &rows, PEER_MSG_REPAIR | PEER_MSG_BACKFILL);
    /* All of the range read and queued: none left (an age or byte limit
     * removes prefixes, so then this is the first and only read). */
    if (i == rows.n && rows.n < SYNC_CATCHUP_ROWS && peer_is_up(p)) {
        catchup_backfilled(s->cu, origin, upto);
        log_debug("node %u backfilled on origin %u below %llu", peer_id(p), origin,
                  (unsigned long long)upto);
    }
    store_rows_free(&rows);
    return peer_is_up(p) ? 0 : -1;
}

/* Sends what the cursors say the peer lacks, while its queue is short.
 * Returns whether it stopped at its bound on store reads with cursors left
 * (rather than at a full queue, the end, or a link down). */
static bool sync_pump_some(sync_link *s)
{
    node *n = s->y->n;
    peer *p = s->p;
    uint32_t origin;
    uint64_t after;
    int reads = 0;
    for (; reads < SYNC_CATCHUP_READS && peer_is_up(p) && peer_queued(p) < SYNC_CATCHUP_QUEUE &&
           catchup_next(s->cu, &origin, &after);
         reads++) {
        /* Below our low-water mark we may lack rows (retention): the peer
         * skips to it when our marks say it (sync_on_marks), so send it
         * what is above, once marks with that mark went out first. */
        uint64_t low = store_trimmed(n->store, origin);
        if (after < low && !(peer_features(p) & PEER_HELLO_FLOORS)) {
            /* A node before retention cannot skip to low and refuses what
             * follows a gap: send it nothing of origin, rather than frames
             * that come back refused each round (docs/PROTOCOL.md 3.3). */
            if (!s->old_gap_logged)
                log_warn("node %u runs a version before retention and lacks messages of origin "
                         "%u this node removed (it has them up to %llu, this node from %llu on):"
                         " it gets nothing of such origins from this node until upgraded",
                         peer_id(p), origin, (unsigned long long)after,
                         (unsigned long long)low + 1);
            s->old_gap_logged = true;
            catchup_done(s->cu);
            continue;
        }
        if (after < low) {
            if (s->marks_epoch != store_trim_epoch(n->store))
                sync_send_marks(s);
            catchup_skip(s->cu, origin, low); /* and what it lacked below: backfill */
            after = low;
        }
        /* Rows we still hold below the mark, which the peer lacked (a quiet
         * chat's, below a busy chat's mark): first, a read at a time. */
        uint64_t back_after, back_upto;
        if (catchup_backfill(s->cu, origin, &back_after, &back_upto)) {
            if (sync_backfill_some(s, origin, back_after, back_upto) != 0)
                return false;
            continue;
        }
        struct store_rows rows = { 0 };
        /* Up to what went out live: our own messages committed but still
         * held for the commit callback go out live, so not here too. */
        if (store_read(n->store, origin, after, relay_delivered(n, origin), SYNC_CATCHUP_ROWS,
                       &rows) != 0) {
            catchup_clear(s->cu); /* logged; the next marks start over */
            store_rows_free(&rows);
            return false;
        }
        bool done = rows.n < SYNC_CATCHUP_ROWS;
        size_t i = sync_send_rows(s, origin, &rows, PEER_MSG_REPAIR);
        if (i < rows.n)
            done = false; /* the rest on the next pump */
        store_rows_free(&rows);
        if (!peer_is_up(p))
            return false;
        if (done) {
            log_debug("node %u caught up on origin %u", peer_id(p), origin);
            catchup_done(s->cu);
        }
    }
    return reads == SYNC_CATCHUP_READS && peer_is_up(p) && catchup_pending(s->cu) > 0;
}

static void sync_later_cb(uv_timer_t *t);

/* A pump, and what makes sure it goes on: the next completed write when
 * something is on its way to the peer, else the zero timer. */
static void sync_pump(sync_link *s)
{
    struct sync *y = s->y;
    if (!sync_pump_some(s) || peer_queued(s->p) > 0 || s->active)
        return;
    if (y->nactive == y->capactive) {
        y->capactive = y->capactive ? 2 * y->capactive : 8;
        y->active = xrealloc(y->active, y->capactive * sizeof(*y->active));
    }
    s->active_index = y->nactive;
    y->active[y->nactive++] = s;
    s->active = true;
    if (!uv_is_active((uv_handle_t *)&y->later))
        uv_timer_start(&y->later, sync_later_cb, 0, 0);
}

static void sync_later_cb(uv_timer_t *t)
{
    struct sync *y = t->data;
    /* Each waiting link leaves the list before its pump, which may put it
     * back (and restart the timer for the next turn). */
    size_t n = y->nactive;
    sync_link **batch = xmalloc((n ? n : 1) * sizeof(*batch));
    memcpy(batch, y->active, n * sizeof(*batch));
    for (size_t i = 0; i < n; i++)
        active_remove(batch[i]);
    for (size_t i = 0; i < n; i++)
        sync_pump(batch[i]);
    free(batch);
}

void sync_link_written(sync_link *s)
{
    if (catchup_pending(s->cu) > 0 && peer_queued(s->p) < SYNC_CATCHUP_QUEUE)
        sync_pump(s);
}

/* The peer removed every message of some origin up to its low-water mark
 * and we hold less: we can get nothing below it from that peer, so skip to
 * it (docs/PROTOCOL.md 2.4). Not for an origin our marks call direct (its
 * own node, which may hold more, sends it), unless the peer is that node. */
static void sync_skip_trimmed(sync_link *s, const struct peer_frame *f)
{
    node *n = s->y->n;
    for (uint32_t i = 0; i < f->nmarks; i++) {
        uint64_t low = peer_proto_mark_floor(f, i);
        uint32_t origin;
        uint64_t seq;
        peer_proto_mark(f, i, &origin, &seq);
        if (low == 0 || low <= store_highest(n->store, origin))
            continue;
        if (origin != peer_id(s->p) && sync_marked_direct(s, origin))
            continue;
        log_info("node %u removed the messages of origin %u up to %llu by retention, this "
                 "node has them up to %llu only: skipping to %llu", peer_id(s->p), origin,
                 (unsigned long long)low, (unsigned long long)store_highest(n->store, origin),
                 (unsigned long long)low);
        store_skip(n->store, origin, low);
    }
}

void sync_on_marks(sync_link *s, const struct peer_frame *f)
{
    struct sync *y = s->y;
    if (f->flags & PEER_MARKS_FLOORS)
        sync_skip_trimmed(s, f);
    /* What the peer holds of our own origin: numbering must not give
     * those numbers again (relay_own_marked). Never direct: a peer marks
     * direct only nodes other than the one it sends its marks to. */
    uint64_t ours = peer_proto_mark_of(f, y->n->id);
    if (ours != 0 && ours != PEER_MARK_DIRECT)
        relay_own_marked(y->n, peer_id(s->p), ours);
    size_t count;
    const struct store_origin *o = store_origins(y->n->store, &count);
    catchup_marks(s->cu, f, o, count);
    sync_pump(s);
}

void sync_tick(sync_link *s, uint64_t now)
{
    if (now >= s->next_marks_ms ||
        (s->marks_wanted && now - s->marks_sent_ms >= SYNC_GAP_MARKS_MS))
        sync_send_marks(s);
    if (peer_is_up(s->p))
        sync_pump(s);
}
