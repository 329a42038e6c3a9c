/* relay: see relay.h. The hot path of the node: per message, two
 * serializations (client frame, peer frame) whatever the fan-out, one
 * reference per recipient, and one record appended to the store's batch.
 * The highest sequence delivered per origin is the store's highest
 * appended (a peer's message is delivered when it is appended: its frame
 * goes to the clients at the end of the read that brought it, before the
 * loop runs anything else), except for our own origin, whose messages may
 * be held: for it the relay keeps the highest sent out. */
#include "node/relay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/msgbuf.h"
#include "common/outq.h"
#include "common/util.h"
#include "node/peer_proto.h"
#include "node/store.h"

/* A local message waiting for its batch to commit before it goes out. */
struct held {
    uint64_t read_ns;        /* when it was read, for the time in the node */
    uint64_t gen;
    uint32_t origin;
    uint64_t seq;
    int64_t chat;
    msgbuf *peer_frame;
    msgbuf *client_frame;
};

struct relay {
    uint64_t next_seq;       /* 0 until known (needs the node id) */
    uint32_t seq_origin;     /* the id next_seq counts for */
    uint64_t sent;           /* highest seq of seq_origin sent out */
    /* Numbering of our own origin (relay.h, relay_own). */
    uint32_t own_loaded;     /* the id at start (node.json), 0 for a new node */
    bool own_heard;          /* relay_own_heard: no more WAITING */
    uint32_t hold_origin;    /* the id peers_highest counts for */
    uint64_t peers_highest;  /* of hold_origin, the highest a peer claimed */
    uint64_t numbered_from;  /* the first seq of seq_origin numbered, 0: none */
    uint64_t conflict_upto;  /* conflicts logged up to this seq */
    uint64_t conflicts;
    struct held *held;       /* a ring, oldest at head */
    size_t head, nheld, capheld;
    size_t held_cost;        /* outq_cost of the held client frames */
    uint64_t remote_count;   /* for --test-drop-every */
    struct relay_sinks sinks;
    struct relay_counters counters;
    /* Peers' messages of the read being decoded, for the clients, handed
     * to them together by relay_remote_flush: one frame to queue per
     * socket for the read, not one per message (callgrind: the queueing
     * per message was some 300 instructions a message on a receiving
     * node). All of one read, so of one read_ns. */
    struct remote_out {
        msgbuf **frames;
        int64_t *chats;
        size_t *to;
        size_t n, cap;
        uint64_t read_ns;
    } out;
    /* Messages handed to clients on this loop turn, observed in in_node
     * once the turn's writes are done (outq's flushed hook): n of them
     * from the read at read_ns (the messages of one read come in a row,
     * and share their time). */
    struct sent_at { uint64_t read_ns; enum relay_source src; uint32_t n; } *turn;
    size_t nturn, capturn;
    struct metrics_histogram in_node[2];
    uint64_t wall_read_ns;   /* the read whose wall clock wall_ms is */
    uint64_t wall_ms;
};

/* 100 us to 2.5 s: a peer's message takes tens of microseconds, a client's
 * waits for its commit (milliseconds), a congested node much longer. */
static const double in_node_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                         1,      2.5 };

uint64_t relay_delivered(node *n, uint32_t origin)
{
    struct relay *r = n->relay;
    if (origin == n->id && r->seq_origin == n->id)
        return r->sent;
    /* Nothing of ours is held before our first message of this run. */
    return store_highest(n->store, origin);
}

/* cf went to `to` clients on this turn: its time in the node is taken when
 * the turn's writes are done. */
static void note_sent(struct relay *r, size_t to, uint64_t read_ns, enum relay_source src)
{
    if (to == 0)
        return;
    if (r->nturn > 0) {
        struct sent_at *last = &r->turn[r->nturn - 1];
        if (last->read_ns == read_ns && last->src == src && last->n < UINT32_MAX) {
            last->n++;
            return;
        }
    }
    if (r->nturn == r->capturn) {
        r->capturn = r->capturn ? 2 * r->capturn : 256;
        r->turn = xrealloc(r->turn, r->capturn * sizeof(*r->turn));
    }
    r->turn[r->nturn++] = (struct sent_at){ read_ns, src, 1 };
}

static void turn_flushed(void *ud)
{
    struct relay *r = ud;
    if (r->nturn == 0)
        return;
    uint64_t now = util_now_ns();
    for (size_t i = 0; i < r->nturn; i++)
        metrics_histogram_observe_n(&r->in_node[r->turn[i].src],
                                    (double)(now - r->turn[i].read_ns) / 1e9, r->turn[i].n);
    r->nturn = 0;
}

/* A batch of local messages whose turn has come, in order: to every peer
 * one by one (their links coalesce by themselves), to the clients
 * together, so that a burst goes out as one write per socket; now: the
 * batch is the turn's whole burst, written at once (clients_broadcast). */
#define RELAY_RELEASE_MAX 256
static void send_out(node *n, const struct held *h, size_t k, bool now)
{
    /* Peers first: their copy leaves the node on this loop turn too, and
     * the order of the two queues does not matter to anyone. */
    struct relay *r = n->relay;
    if (k == 0 || k > RELAY_RELEASE_MAX)
        return; /* never: the callers give 1 to RELAY_RELEASE_MAX */
    msgbuf *frames[RELAY_RELEASE_MAX];
    int64_t chats[RELAY_RELEASE_MAX];
    size_t to[RELAY_RELEASE_MAX];
    for (size_t i = 0; i < k; i++) {
        r->counters.peer_msgs_out +=
            r->sinks.to_peers(h[i].peer_frame, h[i].origin, h[i].seq, r->sinks.ud);
        frames[i] = h[i].client_frame;
        chats[i] = h[i].chat;
    }
    r->sinks.to_clients(frames, chats, k, now, to, r->sinks.ud);
    for (size_t i = 0; i < k; i++) {
        r->counters.client_frames_out += to[i];
        note_sent(r, to[i], h[i].read_ns, RELAY_FROM_CLIENT);
        if (h[i].origin == r->seq_origin)
            r->sent = UTIL_MAX(r->sent, h[i].seq);
    }
}

/* The store committed every batch up to gen: what waited for it goes, in
 * runs of at most RELAY_RELEASE_MAX that are contiguous in the ring. */
void relay_on_commit(uint64_t gen, int ok, void *ud)
{
    node *n = ud;
    struct relay *r = n->relay;
    /* ok = 0: the store gave a failing batch up as it closed (store.h).
     * Those messages are in no history: they go to no one, so nothing
     * anyone saw can be lost or numbered again. */
    while (r->nheld > 0 && r->held[r->head].gen <= gen) {
        size_t k = 0, room = UTIL_MIN(r->nheld, r->capheld - r->head);
        struct held *h = &r->held[r->head];
        while (k < room && k < RELAY_RELEASE_MAX && h[k].gen <= gen)
            k++;
        if (ok)
            send_out(n, h, k, true); /* a committed burst: written at once */
        else
            r->counters.unstored_dropped += k;
        for (size_t i = 0; i < k; i++) {
            r->held_cost -= outq_cost(h[i].client_frame);
            msgbuf_unref(h[i].peer_frame);
            msgbuf_unref(h[i].client_frame);
        }
        r->head = (r->head + k) % r->capheld;
        r->nheld -= k;
    }
}

static void hold(struct relay *r, uint64_t read_ns, uint64_t gen, const struct chat_message *m,
                 msgbuf *pf, msgbuf *cf)
{
    if (r->nheld == r->capheld) {
        size_t cap = r->capheld ? 2 * r->capheld : 1024;
        struct held *h = xmalloc(cap * sizeof(*h));
        for (size_t i = 0; i < r->nheld; i++)
            h[i] = r->held[(r->head + i) % r->capheld];
        free(r->held);
        r->held = h;
        r->capheld = cap;
        r->head = 0;
    }
    r->held[(r->head + r->nheld) % r->capheld] =
        (struct held){ read_ns, gen, m->origin, m->seq, m->chat_id, pf, cf };
    r->nheld++;
    r->held_cost += outq_cost(cf);
}

void relay_init(node *n, const struct relay_sinks *sinks)
{
    n->relay = xcalloc(1, sizeof(*n->relay));
    n->relay->sinks = *sinks;
    n->relay->own_loaded = n->id; /* membership_load ran: from node.json */
    for (size_t i = 0; i < 2; i++)
        metrics_histogram_init(&n->relay->in_node[i], in_node_bounds,
                               sizeof(in_node_bounds) / sizeof(in_node_bounds[0]));
    outq_set_flushed_hook(turn_flushed, n->relay);
    /* What message_parse_request refuses from clients, and above which a
     * peer's message is withheld from them (relay_remote). */
    message_set_frame_limit(message_frame_limit_of(n->cfg.max_message, n->cfg.max_queue));
}

static enum relay_own_state own_state(const node *n)
{
    const struct relay *r = n->relay;
    if (n->id == r->own_loaded && !r->own_heard)
        return RELAY_OWN_WAITING;
    if (r->hold_origin == n->id && n->store != NULL &&
        store_highest(n->store, n->id) < r->peers_highest)
        return RELAY_OWN_BEHIND;
    return RELAY_OWN_OPEN;
}

void relay_own(const node *n, struct relay_own *out)
{
    const struct relay *r = n->relay;
    out->state = own_state(n);
    out->highest = n->store != NULL ? store_highest(n->store, n->id) : 0;
    out->peers_highest = r->hold_origin == n->id ? r->peers_highest : 0;
    out->behind = out->peers_highest > out->highest ? out->peers_highest - out->highest : 0;
    out->conflicts = r->conflicts;
}

void relay_own_heard(node *n)
{
    n->relay->own_heard = true;
}

void relay_own_marked(node *n, uint32_t peer, uint64_t seq)
{
    struct relay *r = n->relay;
    uint64_t highest = store_highest(n->store, n->id);
    if (seq <= highest)
        return; /* the normal case: a peer holds what we sent it */
    if (r->hold_origin != n->id) {
        r->hold_origin = n->id;
        r->peers_highest = 0;
    }
    if (seq > r->peers_highest) {
        r->peers_highest = seq;
        log_warn("node %" PRIu32 " holds this node's messages up to seq %" PRIu64 ", its "
                 "history only up to %" PRIu64 " (history.db deleted or restored from an "
                 "older copy, or a crash with --fsync off): taking them back from the peers, "
                 "and refusing new client messages until then", peer, seq, highest);
    }
    if (r->seq_origin != n->id || r->numbered_from == 0 || r->numbered_from > seq)
        return;
    /* We numbered numbered_from .. next_seq - 1 (all at most our highest)
     * since start: the peer holds other messages under those numbers. */
    uint64_t hi = UTIL_MIN(seq, r->next_seq - 1);
    if (hi <= r->conflict_upto)
        return; /* said already */
    uint64_t lo = UTIL_MAX(r->numbered_from, r->conflict_upto + 1);
    r->conflicts += hi - lo + 1;
    r->conflict_upto = hi;
    log_error("this node numbered messages %" PRIu64 "..%" PRIu64 " since its start, but node "
              "%" PRIu32 " holds other messages of this node under those numbers: its history "
              "had lost them, and it numbered before it heard that peer's marks (it waits at "
              "most %d s after a start). Peers dropped those new messages as duplicates, so "
              "their clients never got them, and the histories differ there for good; ask "
              "their senders to send them again. To avoid it, do not delete history.db or "
              "put back an older copy while keeping node.json (remove both: the node then "
              "registers anew), and let a restarted node reach its peers",
              lo, hi, peer, RELAY_OWN_WAIT_MS / 1000);
}

/* The wall clock of the read at read_ns, taken once per read: the messages
 * of one read were accepted together, and a clock read per message was a
 * measurable part of the relay's time (25 ns each on this machine's VM). */
static uint64_t read_wall_ms(struct relay *r, uint64_t read_ns)
{
    if (r->wall_ms == 0 || read_ns != r->wall_read_ns) {
        r->wall_read_ns = read_ns;
        r->wall_ms = util_wall_ms();
    }
    return r->wall_ms;
}

int relay_local(node *n, struct chat_message *m, uint64_t read_ns)
{
    struct relay *r = n->relay;
    if (n->id == 0 || !store_accepting(n->store) || own_state(n) != RELAY_OWN_OPEN)
        return -1;
    if (r->next_seq == 0 || r->seq_origin != n->id) {
        /* The first message since start, or since discovery gave us a new
         * id: go on from the history. Nothing of this id is held yet, so
         * the history's highest is also the highest sent. */
        r->sent = store_highest(n->store, n->id);
        r->next_seq = r->sent + 1;
        r->seq_origin = n->id;
        r->numbered_from = r->next_seq;
        r->conflict_upto = 0;
    }
    m->origin = n->id;
    m->seq = r->next_seq++;
    /* Our messages' times never go backwards, not even across a restart
     * after the clock stepped back: catch-up replies sort by time. */
    m->time_ms = UTIL_MAX(read_wall_ms(r, read_ns), store_last_time(n->store, n->id));
    r->counters.client_msgs_in++;

    msgbuf *pf = peer_proto_msg(m, 0);
    msgbuf *cf = message_client_frame(n->id, m);
    uint64_t gen = store_append(n->store, m);
    if (store_mode(n->store) == STORE_FSYNC_OFF) {
        struct held now = { read_ns, gen, m->origin, m->seq, m->chat_id, pf, cf };
        send_out(n, &now, 1, false); /* more may follow on this turn */
        msgbuf_unref(pf);
        msgbuf_unref(cf);
    } else {
        hold(r, read_ns, gen, m, pf, cf); /* relay_on_commit sends them */
    }
    return 0;
}

/* A row the peer holds below its low-water mark, at or below ours: we
 * skipped past it (2.4), so it is no gap, and every seq up to our highest
 * counts as had; the store tells whether we hold it. Storing is enough:
 * delivered live, it would reach our clients after higher ids of its
 * origin. A store that cannot take it now refuses it like a gap: the
 * peer's backfill starts over on our refused-flagged marks. */
static enum relay_result relay_backfill(node *n, const struct chat_message *m)
{
    struct relay *r = n->relay;
    uint64_t gen;
    int rc = store_accepting(n->store) ? store_append_below_floor(n->store, m, &gen) : -1;
    if (rc < 0) {
        r->counters.dropped_gap++;
        return RELAY_GAP;
    }
    if (rc == 0) {
        r->counters.dropped_dup++;
        return RELAY_DUP;
    }
    r->counters.repaired++;
    r->counters.backfilled++;
    return RELAY_NEW;
}

enum relay_result relay_remote(node *n, const struct chat_message *m, uint16_t flags,
                               uint64_t read_ns)
{
    struct relay *r = n->relay;
    bool repair = (flags & PEER_MSG_REPAIR) != 0;
    r->counters.peer_msgs_in++;
    r->counters.repair_in += repair;
    if ((flags & PEER_MSG_BACKFILL) && m->seq <= store_trimmed(n->store, m->origin))
        return relay_backfill(n, m);
    /* Our own origin, which the relay numbers (it has, since start). */
    bool numbered = m->origin == n->id && r->seq_origin == n->id;
    uint64_t mark = store_highest(n->store, m->origin);
    /* Of our own origin too: a peer sends it back when our history lacks
     * it (catchup.h). We append every seq we number, so one we numbered is
     * never above our highest: the second test only says it outright. */
    if (m->seq <= mark || (numbered && m->seq < r->next_seq)) {
        r->counters.dropped_dup++;
        log_debug("ignoring message %" PRIu32 "/%" PRIu64 " from a peer: already had it",
                  m->origin, m->seq);
        return RELAY_DUP;
    }
    if (m->seq == mark + 1 && !store_accepting(n->store)) {
        /* The disk is behind (or the node is stopping): not accepted now;
         * the peer's repair brings it again later. */
        r->counters.dropped_gap++;
        return RELAY_GAP;
    }
    if (m->seq != mark + 1) {
        r->counters.dropped_gap++;
        log_debug("ignoring message %" PRIu32 "/%" PRIu64 ": %" PRIu64 " is the last one "
                  "had from that origin", m->origin, m->seq, mark);
        return RELAY_GAP;
    }
    store_append(n->store, m); /* which makes it the origin's highest */
    r->counters.repaired += repair;
    if (numbered) {
        /* Numbering goes on after it, and it counts as sent: it goes to
         * our clients now, and catch-up may serve it once committed. Our
         * clients get it like any repaired message: those connected now
         * never had it from this history; one that saw it live before a
         * crash (--fsync off) ignores a messageId it has (PROTOCOL.md
         * 1.6). */
        r->next_seq = m->seq + 1;
        r->sent = UTIL_MAX(r->sent, m->seq);
    }
    if (n->cfg.test_drop_every && ++r->remote_count % n->cfg.test_drop_every == 0)
        return RELAY_NEW; /* --test-drop-every: a deliberately lossy node for tests */

    /* A frame over the limit would cut every client (or be refused by
     * them). The message is stored as it came, so the origin's numbering
     * goes on and peers get it intact; clients get it with its text
     * withheld, so that they still see one frame per id. */
    struct chat_message shown = *m;
    size_t limit = message_frame_limit();
    if (message_withhold_if_large(&shown, n->id, limit))
        log_warn("message %" PRIu32 "/%" PRIu64 " from a peer would make a %zu-byte client "
                 "frame, over the limit of %zu: stored, shown to clients as withheld",
                 m->origin, m->seq, message_client_frame_len(n->id, m), limit);
    struct remote_out *o = &r->out;
    if (o->n > 0 && o->read_ns != read_ns)
        relay_remote_flush(n); /* never from peer.c: a read's frames share it */
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->frames = xrealloc(o->frames, o->cap * sizeof(*o->frames));
        o->chats = xrealloc(o->chats, o->cap * sizeof(*o->chats));
        o->to = xrealloc(o->to, o->cap * sizeof(*o->to));
    }
    o->frames[o->n] = message_client_frame(n->id, &shown);
    o->chats[o->n] = m->chat_id;
    o->read_ns = read_ns;
    o->n++;
    return RELAY_NEW;
}

const struct relay_counters *relay_counters(const node *n)
{
    return &n->relay->counters;
}

const struct metrics_histogram *relay_in_node_seconds(const node *n, enum relay_source src)
{
    return &n->relay->in_node[src];
}

size_t relay_held(const node *n)
{
    return n->relay ? n->relay->held_cost : 0;
}

void relay_remote_flush(node *n)
{
    struct remote_out *o = &n->relay->out;
    if (o->n == 0)
        return;
    struct relay *r = n->relay;
    r->sinks.to_clients(o->frames, o->chats, o->n, false, o->to, r->sinks.ud);
    for (size_t i = 0; i < o->n; i++) {
        r->counters.client_frames_out += o->to[i];
        note_sent(r, o->to[i], o->read_ns, RELAY_FROM_PEER);
        msgbuf_unref(o->frames[i]);
    }
    o->n = 0;
}

void relay_free(node *n)
{
    struct relay *r = n->relay;
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->out.n; i++) /* none: each read's end sent them */
        msgbuf_unref(r->out.frames[i]);
    free(r->out.frames);
    free(r->out.chats);
    free(r->out.to);
    for (size_t i = 0; i < r->nheld; i++) {
        struct held *h = &r->held[(r->head + i) % r->capheld];
        msgbuf_unref(h->peer_frame);
        msgbuf_unref(h->client_frame);
    }
    free(r->held);
    free(r->turn);
    outq_set_flushed_hook(NULL, NULL);
    free(r);
    n->relay = NULL;
}
