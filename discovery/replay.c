/* replay: see replay.h. A chained hash set over a fixed array of entries:
 * the buckets hold entry indexes, free entries form a list. MACs are HMAC
 * outputs, uniform without the secret, so their first bytes are the hash.
 * Expiry is lazy: only a full cache is swept, in one pass that also finds
 * the oldest entry in case nothing has expired. */
#include "discovery/replay.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define REPLAY_NONE UINT32_MAX

struct replay_entry {
    uint8_t mac[SECRET_MAC_LEN];
    uint64_t ts_ms;
    uint32_t next;    /* in its bucket's chain, or in the free list */
    bool used;
};

struct replay {
    struct replay_entry *entries;
    uint32_t *buckets;
    size_t cap, count, nbuckets; /* nbuckets: a power of two >= 2 cap */
    uint32_t free_head;
    uint64_t window_ms;
    uint64_t floor_ms;           /* timestamps <= this are refused; 0: none */
};

replay *replay_new(size_t cap, uint64_t window_ms)
{
    replay *r = xcalloc(1, sizeof(*r));
    r->cap = cap ? cap : 1;
    r->window_ms = window_ms;
    r->nbuckets = 2;
    while (r->nbuckets < 2 * r->cap)
        r->nbuckets *= 2;
    r->entries = xcalloc(r->cap, sizeof(*r->entries));
    r->buckets = xmalloc(r->nbuckets * sizeof(*r->buckets));
    for (size_t i = 0; i < r->nbuckets; i++)
        r->buckets[i] = REPLAY_NONE;
    for (size_t i = 0; i < r->cap; i++)
        r->entries[i].next = i + 1 < r->cap ? (uint32_t)(i + 1) : REPLAY_NONE;
    r->free_head = 0;
    return r;
}

void replay_free(replay *r)
{
    if (r == NULL)
        return;
    free(r->entries);
    free(r->buckets);
    free(r);
}

size_t replay_count(const replay *r) { return r->count; }

static uint32_t *bucket_of(replay *r, const uint8_t mac[SECRET_MAC_LEN])
{
    uint64_t h;
    memcpy(&h, mac, sizeof(h));
    return &r->buckets[h & (r->nbuckets - 1)];
}

static void remove_entry(replay *r, uint32_t idx)
{
    uint32_t *link = bucket_of(r, r->entries[idx].mac);
    while (*link != idx)
        link = &r->entries[*link].next;
    *link = r->entries[idx].next;
    r->entries[idx].used = false;
    r->entries[idx].next = r->free_head;
    r->free_head = idx;
    r->count--;
}

/* Makes room for one entry: drops what has left the window, else the
 * oldest entry, raising the floor to its timestamp. */
static void make_room(replay *r, uint64_t now_ms)
{
    uint32_t oldest = REPLAY_NONE;
    size_t dropped = 0;
    for (uint32_t i = 0; i < r->cap; i++) {
        struct replay_entry *e = &r->entries[i];
        if (!e->used)
            continue;
        if (e->ts_ms + r->window_ms < now_ms) {
            remove_entry(r, i);
            dropped++;
        } else if (oldest == REPLAY_NONE || e->ts_ms < r->entries[oldest].ts_ms) {
            oldest = i;
        }
    }
    if (dropped == 0 && oldest != REPLAY_NONE) {
        r->floor_ms = UTIL_MAX(r->floor_ms, r->entries[oldest].ts_ms);
        remove_entry(r, oldest);
    }
}

int replay_seen(replay *r, const uint8_t mac[SECRET_MAC_LEN], uint64_t ts_ms, uint64_t now_ms)
{
    if (r->floor_ms != 0 && ts_ms <= r->floor_ms)
        return 1;
    for (uint32_t i = *bucket_of(r, mac); i != REPLAY_NONE; i = r->entries[i].next)
        if (memcmp(r->entries[i].mac, mac, SECRET_MAC_LEN) == 0)
            return 1;
    if (r->count == r->cap)
        make_room(r, now_ms);
    uint32_t idx = r->free_head;
    struct replay_entry *e = &r->entries[idx];
    r->free_head = e->next;
    memcpy(e->mac, mac, SECRET_MAC_LEN);
    e->ts_ms = ts_ms;
    e->used = true;
    uint32_t *head = bucket_of(r, mac);
    e->next = *head;
    *head = idx;
    r->count++;
    return 0;
}
