/* ledger: see ledger.h. The pairs of client c are want[first[c] ..
 * first[c] + room size), in the order of room_senders[c's room]; a sender's
 * slot is its place in that list. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bench/ledger.h"
#include "common/util.h"

#define FRESH 0x80000000u /* no message of this sender since the join */

struct ledger {
    unsigned clients, senders, rooms;
    unsigned *client_room;
    unsigned *sender_room;
    unsigned *slot;            /* [senders]: place in its room's list */
    unsigned *room_start;      /* [rooms + 1]: into room_senders */
    unsigned *room_senders;    /* [senders], grouped by room */
    uint64_t *first;           /* [clients]: into want */
    uint32_t *want;            /* [pairs] */
    uint32_t *sent;            /* [senders] */
    uint8_t *joined;           /* [clients] */
    unsigned *sender_of;       /* [clients]: its sender index, or UINT_MAX */
    /* (lo, hi] of sender s unacknowledged when its connection dropped, and
     * the highest of them any client received (lo: none) */
    struct window { unsigned s; uint32_t lo, hi, top; } *win;
    size_t nwin, capwin;
    struct deferred { unsigned c, s; size_t w; uint32_t from, to; } *def; /* misses in a window */
    size_t ndef, capdef;
    struct ledger_counts counts;
    struct ledger_miss misses[LEDGER_MISSES_KEPT];
    unsigned nmisses;
};

uint64_t ledger_pairs(const struct ledger_layout *lay)
{
    uint64_t *per_room = xcalloc(lay->rooms, sizeof(*per_room));
    for (unsigned s = 0; s < lay->senders; s++)
        per_room[lay->client_room[lay->sender_client[s]]]++;
    uint64_t n = 0;
    for (unsigned c = 0; c < lay->clients; c++)
        n += per_room[lay->client_room[c]];
    free(per_room);
    return n;
}

ledger *ledger_new(const struct ledger_layout *lay)
{
    ledger *l = xcalloc(1, sizeof(*l));
    l->clients = lay->clients;
    l->senders = lay->senders;
    l->rooms = lay->rooms;
    l->client_room = xmalloc((lay->clients + 1) * sizeof(unsigned));
    memcpy(l->client_room, lay->client_room, lay->clients * sizeof(unsigned));
    l->sender_room = xmalloc((lay->senders + 1) * sizeof(unsigned));
    l->slot = xmalloc((lay->senders + 1) * sizeof(unsigned));
    l->room_start = xcalloc(lay->rooms + 1, sizeof(unsigned));
    l->room_senders = xmalloc((lay->senders + 1) * sizeof(unsigned));
    for (unsigned s = 0; s < lay->senders; s++) {
        l->sender_room[s] = lay->client_room[lay->sender_client[s]];
        l->room_start[l->sender_room[s] + 1]++;
    }
    for (unsigned r = 0; r < lay->rooms; r++)
        l->room_start[r + 1] += l->room_start[r];
    unsigned *fill = xcalloc(lay->rooms, sizeof(unsigned));
    for (unsigned s = 0; s < lay->senders; s++) {
        unsigned r = l->sender_room[s];
        l->slot[s] = fill[r]++;
        l->room_senders[l->room_start[r] + l->slot[s]] = s;
    }
    free(fill);
    l->first = xmalloc((lay->clients + 1) * sizeof(uint64_t));
    uint64_t n = 0;
    for (unsigned c = 0; c < lay->clients; c++) {
        unsigned r = l->client_room[c];
        l->first[c] = n;
        n += l->room_start[r + 1] - l->room_start[r];
    }
    l->want = xcalloc(n + 1, sizeof(uint32_t));
    l->sent = xcalloc(lay->senders + 1, sizeof(uint32_t));
    l->joined = xcalloc(lay->clients + 1, 1);
    l->sender_of = xmalloc((lay->clients + 1) * sizeof(unsigned));
    for (unsigned c = 0; c < lay->clients; c++)
        l->sender_of[c] = UINT_MAX;
    for (unsigned s = 0; s < lay->senders; s++)
        l->sender_of[lay->sender_client[s]] = s;
    return l;
}

void ledger_free(ledger *l)
{
    if (l == NULL)
        return;
    free(l->client_room);
    free(l->sender_room);
    free(l->slot);
    free(l->room_start);
    free(l->room_senders);
    free(l->first);
    free(l->want);
    free(l->sent);
    free(l->joined);
    free(l->sender_of);
    free(l->win);
    free(l->def);
    free(l);
}

uint32_t ledger_send(ledger *l, unsigned s)
{
    if (l->sent[s] >= LEDGER_SEQ_MAX)
        return 0;
    return ++l->sent[s];
}

uint32_t ledger_sent(const ledger *l, unsigned s) { return l->sent[s]; }

static unsigned room_size(const ledger *l, unsigned r)
{
    return l->room_start[r + 1] - l->room_start[r];
}

void ledger_join(ledger *l, unsigned c)
{
    unsigned r = l->client_room[c];
    const unsigned *ss = l->room_senders + l->room_start[r];
    uint32_t *w = l->want + l->first[c];
    for (unsigned j = 0; j < room_size(l, r); j++)
        w[j] = FRESH | (l->sent[ss[j]] + 1);
    l->joined[c] = 1;
}

void ledger_leave(ledger *l, unsigned c)
{
    unsigned s = l->sender_of[c];
    if (l->joined[c] && s != UINT_MAX) {
        /* its stream of itself: the next of its own it expected */
        uint32_t lo = (l->want[l->first[c] + l->slot[s]] & ~FRESH) - 1, hi = l->sent[s];
        if (hi > lo) {
            if (l->nwin == l->capwin) {
                l->capwin = l->capwin ? 2 * l->capwin : 8;
                l->win = xrealloc(l->win, l->capwin * sizeof(*l->win));
            }
            l->win[l->nwin++] = (struct window){ s, lo, hi, lo };
        }
    }
    l->joined[c] = 0;
}
int ledger_joined(const ledger *l, unsigned c) { return l->joined[c]; }

/* Messages from .. to - 1 of sender s never reached client c. */
static void lost(ledger *l, unsigned c, unsigned s, uint32_t from, uint32_t to)
{
    if (to <= from)
        return;
    l->counts.lost += to - from;
    if (l->nmisses < LEDGER_MISSES_KEPT)
        l->misses[l->nmisses++] = (struct ledger_miss){ c, s, from };
}

/* Messages from .. to - 1 of sender s that client c did not get: what lies
 * in an unacknowledged window of s is judged at the end (deferred), the
 * rest is lost now. */
static void missed(ledger *l, unsigned c, unsigned s, uint32_t from, uint32_t to)
{
    for (size_t i = 0; i < l->nwin && from < to; i++) {
        const struct window *w = &l->win[i];
        if (w->s != s || w->hi < from || w->lo + 1 >= to)
            continue;
        uint32_t a = UTIL_MAX(from, w->lo + 1), b = UTIL_MIN(to, w->hi + 1);
        lost(l, c, s, from, a); /* before the window */
        if (l->ndef == l->capdef) {
            l->capdef = l->capdef ? 2 * l->capdef : 64;
            l->def = xrealloc(l->def, l->capdef * sizeof(*l->def));
        }
        l->def[l->ndef++] = (struct deferred){ c, s, i, a, b };
        from = b;
    }
    lost(l, c, s, from, to);
}

/* How many of from .. to - 1 of s are owed, leaving out what lies in a
 * window above the highest of it any client received: not accepted, so
 * far. */
static uint64_t owed_of(const ledger *l, unsigned s, uint32_t from, uint32_t to)
{
    uint64_t n = to > from ? to - from : 0;
    for (size_t i = 0; i < l->nwin; i++) {
        const struct window *w = &l->win[i];
        if (w->s != s)
            continue;
        uint32_t a = UTIL_MAX(UTIL_MAX(from, w->lo + 1), w->top + 1);
        uint32_t b = UTIL_MIN(to, w->hi + 1);
        n -= b > a ? b - a : 0;
    }
    return n;
}

enum ledger_verdict ledger_receive(ledger *l, unsigned c, unsigned s, uint32_t seq)
{
    if (c >= l->clients || !l->joined[c])
        return LEDGER_NOT_JOINED;
    if (s >= l->senders || l->sender_room[s] != l->client_room[c] || seq == 0 ||
        seq > l->sent[s]) {
        l->counts.strays++;
        return LEDGER_STRAY;
    }
    uint32_t *w = &l->want[l->first[c] + l->slot[s]];
    uint32_t want = *w & ~FRESH;
    enum ledger_verdict v = LEDGER_OK;
    if (seq < want) {
        if (!(*w & FRESH)) {
            if (seq + 1 == want) {
                l->counts.dups++;
                return LEDGER_DUP;
            }
            l->counts.reordered++;
            return LEDGER_REORDERED;
        }
        v = LEDGER_IN_FLIGHT; /* sent before the join; the stream starts here */
    } else if (seq > want) {
        missed(l, c, s, want, seq);
        v = LEDGER_GAP;
    }
    for (size_t i = 0; i < l->nwin; i++) /* none, unless a sender dropped */
        if (l->win[i].s == s && seq > l->win[i].lo && seq <= l->win[i].hi)
            l->win[i].top = UTIL_MAX(l->win[i].top, seq);
    *w = seq + 1;
    l->counts.accepted++;
    return v;
}

/* What the joined clients are still owed; with record, each run of owed
 * messages is also counted as lost there (record is l, writable). */
static uint64_t owed(const ledger *l, ledger *record)
{
    uint64_t n = 0;
    for (unsigned c = 0; c < l->clients; c++) {
        if (!l->joined[c])
            continue;
        unsigned r = l->client_room[c];
        const unsigned *ss = l->room_senders + l->room_start[r];
        const uint32_t *w = l->want + l->first[c];
        for (unsigned j = 0; j < room_size(l, r); j++) {
            uint32_t want = w[j] & ~FRESH, sent = l->sent[ss[j]];
            n += owed_of(l, ss[j], want, sent + 1);
            if (record != NULL)
                missed(record, c, ss[j], want, sent + 1);
        }
    }
    return n;
}

uint64_t ledger_owed(const ledger *l) { return owed(l, NULL); }

void ledger_finish(ledger *l)
{
    owed(l, l);
    /* A window's messages up to the highest any client got were accepted
     * (the node reads in order): missing one of those is a loss. */
    for (size_t i = 0; i < l->ndef; i++) {
        const struct deferred *d = &l->def[i];
        uint32_t cut = UTIL_MIN(UTIL_MAX(d->from, l->win[d->w].top + 1), d->to);
        lost(l, d->c, d->s, d->from, cut);
        l->counts.unaccepted += d->to - cut;
    }
    l->ndef = 0;
}

void ledger_counts(const ledger *l, struct ledger_counts *out) { *out = l->counts; }

unsigned ledger_misses(const ledger *l, const struct ledger_miss **out)
{
    *out = l->misses;
    return l->nmisses;
}
