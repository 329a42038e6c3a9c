/* rooms: see rooms.h. */
#include "node/rooms.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct room {
    int64_t chat;
    struct rooms_member **members;
    uint32_t *seat;           /* per member: its seat's index in members[i]->seats */
    uint32_t n, cap;
};

struct room_seat {
    struct room *room;
    uint32_t index;           /* in room->members */
};

struct rooms {
    struct room **table;      /* open addressing by chat, linear probing */
    size_t cap, used;         /* cap a power of two, used <= cap / 2 */
    struct rooms_member **every;
    uint32_t nevery, capevery;
    size_t memberships;
};

static size_t hash_chat(int64_t chat)
{
    uint64_t x = (uint64_t)chat + 0x9e3779b97f4a7c15ull; /* splitmix64's finaliser */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return (size_t)(x ^ (x >> 31));
}

/* The slot of chat's room, or the empty slot where it would go. */
static size_t slot_of(const rooms *rs, int64_t chat)
{
    size_t mask = rs->cap - 1, i = hash_chat(chat) & mask;
    while (rs->table[i] != NULL && rs->table[i]->chat != chat)
        i = (i + 1) & mask;
    return i;
}

static struct room *room_find(const rooms *rs, int64_t chat)
{
    return rs->used == 0 ? NULL : rs->table[slot_of(rs, chat)];
}

static void table_grow(rooms *rs)
{
    struct room **old = rs->table;
    size_t oldcap = rs->cap;
    rs->cap = oldcap ? 2 * oldcap : 64;
    rs->table = xcalloc(rs->cap, sizeof(*rs->table));
    for (size_t i = 0; i < oldcap; i++)
        if (old[i] != NULL)
            rs->table[slot_of(rs, old[i]->chat)] = old[i];
    free(old);
}

static struct room *room_get(rooms *rs, int64_t chat)
{
    struct room *r = room_find(rs, chat);
    if (r != NULL)
        return r;
    if (2 * (rs->used + 1) > rs->cap)
        table_grow(rs);
    r = xcalloc(1, sizeof(*r));
    r->chat = chat;
    rs->table[slot_of(rs, chat)] = r;
    rs->used++;
    return r;
}

/* Removes an empty room; the entries after it in its probe run move back
 * so that no lookup stops short (deletion without tombstones). */
static void room_delete(rooms *rs, struct room *r)
{
    size_t mask = rs->cap - 1, i = slot_of(rs, r->chat);
    rs->table[i] = NULL;
    for (size_t j = (i + 1) & mask; rs->table[j] != NULL; j = (j + 1) & mask) {
        size_t home = hash_chat(rs->table[j]->chat) & mask;
        /* j's entry may move to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            rs->table[i] = rs->table[j];
            rs->table[j] = NULL;
            i = j;
        }
    }
    rs->used--;
    free(r->members);
    free(r->seat);
    free(r);
}

static void seat_add(rooms *rs, struct rooms_member *m, struct room *r)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 4;
        r->members = xrealloc(r->members, r->cap * sizeof(*r->members));
        r->seat = xrealloc(r->seat, r->cap * sizeof(*r->seat));
    }
    if (m->nseats == m->capseats) {
        m->capseats = m->capseats ? 2 * m->capseats : 2;
        m->seats = xrealloc(m->seats, m->capseats * sizeof(*m->seats));
    }
    r->members[r->n] = m;
    r->seat[r->n] = m->nseats;
    m->seats[m->nseats++] = (struct room_seat){ r, r->n++ };
    rs->memberships++;
}

/* Takes m out of the room of its seat j: a swap with the last on both
 * sides, each telling the other where it went. */
static void seat_remove(rooms *rs, struct rooms_member *m, uint32_t j)
{
    struct room *r = m->seats[j].room;
    uint32_t k = m->seats[j].index, last = r->n - 1;
    if (k != last) {
        r->members[k] = r->members[last];
        r->seat[k] = r->seat[last];
        r->members[k]->seats[r->seat[k]].index = k;
    }
    r->n--;
    uint32_t lastj = m->nseats - 1;
    if (j != lastj) {
        m->seats[j] = m->seats[lastj];
        m->seats[j].room->seat[m->seats[j].index] = j;
    }
    m->nseats--;
    rs->memberships--;
    if (r->n == 0)
        room_delete(rs, r);
}

static void every_add(rooms *rs, struct rooms_member *m)
{
    if (rs->nevery == rs->capevery) {
        rs->capevery = rs->capevery ? 2 * rs->capevery : 64;
        rs->every = xrealloc(rs->every, rs->capevery * sizeof(*rs->every));
    }
    m->every_index = rs->nevery;
    rs->every[rs->nevery++] = m;
    m->in_rooms = false;
}

static void every_remove(rooms *rs, struct rooms_member *m)
{
    struct rooms_member *last = rs->every[--rs->nevery];
    rs->every[m->every_index] = last;
    last->every_index = m->every_index;
    m->in_rooms = true;
}

static int cmp_chat(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool sorted_has(const int64_t *v, size_t n, int64_t x)
{
    return n > 0 && bsearch(&x, v, n, sizeof(*v), cmp_chat) != NULL;
}

/* chats sorted with repeats removed, in a new array; returns its length. */
static size_t sorted_unique(const int64_t *chats, size_t n, int64_t **out)
{
    int64_t *v = xmalloc((n ? n : 1) * sizeof(*v));
    if (n > 0)
        memcpy(v, chats, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_chat);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || v[u - 1] != v[i])
            v[u++] = v[i];
    *out = v;
    return u;
}

rooms *rooms_new(void)
{
    return xcalloc(1, sizeof(struct rooms));
}

void rooms_add(rooms *rs, struct rooms_member *m)
{
    memset(m, 0, sizeof(*m));
    every_add(rs, m);
    m->listed = true;
}

void rooms_remove(rooms *rs, struct rooms_member *m)
{
    if (!m->listed)
        return;
    if (m->in_rooms) {
        while (m->nseats > 0)
            seat_remove(rs, m, m->nseats - 1);
    } else {
        every_remove(rs, m);
    }
    free(m->seats);
    memset(m, 0, sizeof(*m));
}

int rooms_join(rooms *rs, struct rooms_member *m, const int64_t *chats, size_t n, size_t max)
{
    int64_t *want, *have = xmalloc((m->nseats ? m->nseats : 1) * sizeof(*have));
    size_t nhave = rooms_chats(m, have);
    size_t nwant = sorted_unique(chats, n, &want);
    size_t added = 0;
    for (size_t i = 0; i < nwant; i++)
        added += !sorted_has(have, nhave, want[i]);
    int rc = -1;
    if (nhave + added <= max) {
        if (!m->in_rooms)
            every_remove(rs, m);
        for (size_t i = 0; i < nwant; i++)
            if (!sorted_has(have, nhave, want[i]))
                seat_add(rs, m, room_get(rs, want[i]));
        rc = 0;
    }
    free(want);
    free(have);
    return rc;
}

void rooms_leave(rooms *rs, struct rooms_member *m, const int64_t *chats, size_t n)
{
    int64_t *drop;
    size_t ndrop = sorted_unique(chats, n, &drop);
    /* From the end: a removal moves the last seat, already looked at, here. */
    for (uint32_t j = m->nseats; j-- > 0;)
        if (sorted_has(drop, ndrop, m->seats[j].room->chat))
            seat_remove(rs, m, j);
    free(drop);
}

void rooms_every(rooms *rs, struct rooms_member *m)
{
    if (!m->in_rooms)
        return;
    while (m->nseats > 0)
        seat_remove(rs, m, m->nseats - 1);
    every_add(rs, m);
}

size_t rooms_chats(const struct rooms_member *m, int64_t *out)
{
    for (uint32_t j = 0; j < m->nseats; j++)
        out[j] = m->seats[j].room->chat;
    qsort(out, m->nseats, sizeof(*out), cmp_chat);
    return m->nseats;
}

struct rooms_member *const *rooms_every_members(const rooms *rs, size_t *n)
{
    *n = rs->nevery;
    return rs->every;
}

struct rooms_member *const *rooms_members(const rooms *rs, int64_t chat, size_t *n)
{
    struct room *r = room_find(rs, chat);
    *n = r ? r->n : 0;
    return r ? r->members : NULL;
}

size_t rooms_count(const rooms *rs)
{
    return rs->used;
}

size_t rooms_memberships(const rooms *rs)
{
    return rs->memberships;
}

void rooms_free(rooms *rs)
{
    if (rs == NULL)
        return;
    for (size_t i = 0; i < rs->cap; i++) {
        if (rs->table[i] != NULL) {
            free(rs->table[i]->members);
            free(rs->table[i]->seat);
            free(rs->table[i]);
        }
    }
    free(rs->table);
    free(rs->every);
    free(rs);
}
