/* ledger: see ledger.h. The pairs of client c are want[first[c] ..
 * first[c] + room size), in the order of room_senders[c's room]; a sender's
 * slot is its place in that list. */
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

void ledger_leave(ledger *l, unsigned c) { l->joined[c] = 0; }
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
        lost(l, c, s, want, seq);
        v = LEDGER_GAP;
    }
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
            n += sent >= want ? sent + 1 - want : 0;
            if (record != NULL)
                lost(record, c, ss[j], want, sent + 1);
        }
    }
    return n;
}

uint64_t ledger_owed(const ledger *l) { return owed(l, NULL); }

void ledger_finish(ledger *l) { owed(l, l); }

void ledger_counts(const ledger *l, struct ledger_counts *out) { *out = l->counts; }

unsigned ledger_misses(const ledger *l, const struct ledger_miss **out)
{
    *out = l->misses;
    return l->nmisses;
}
