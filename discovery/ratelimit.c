/* ratelimit: see ratelimit.h. Tokens are counted in thousandths, so that a
 * refill of per_second tokens a second is per_second thousandths a
 * millisecond, in integers. The table is searched linearly: it is at most
 * a few thousand short strings, and it is asked once per registration,
 * which costs an fsync in SQLite anyway. */
#include "discovery/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MILLI 1000u

struct bucket {
    char addr[RATELIMIT_ADDR_MAX];
    uint64_t tokens_m;   /* thousandths of a token, at last_ms */
    uint64_t last_ms;    /* when it was last asked (and refilled) */
};

struct ratelimit {
    struct bucket *b;
    size_t count, cap;
    uint64_t burst_m;
    uint64_t per_ms_m;   /* thousandths of a token gained a millisecond */
};

ratelimit *ratelimit_new(unsigned burst, unsigned per_second, size_t max_addrs)
{
    ratelimit *rl = xcalloc(1, sizeof(*rl));
    rl->cap = max_addrs ? max_addrs : 1;
    rl->b = xcalloc(rl->cap, sizeof(*rl->b));
    rl->burst_m = (uint64_t)(burst ? burst : 1) * MILLI;
    rl->per_ms_m = per_second ? per_second : 1;
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    if (rl == NULL)
        return;
    free(rl->b);
    free(rl);
}

size_t ratelimit_count(const ratelimit *rl) { return rl->count; }

/* The bucket of addr, made (full) if it is new, in the least recently
 * asked slot if the table is full. */
static struct bucket *find(ratelimit *rl, const char *addr, uint64_t now_ms)
{
    size_t lru = 0;
    for (size_t i = 0; i < rl->count; i++) {
        if (strncmp(rl->b[i].addr, addr, RATELIMIT_ADDR_MAX - 1) == 0)
            return &rl->b[i];
        if (rl->b[i].last_ms < rl->b[lru].last_ms)
            lru = i;
    }
    struct bucket *b = rl->count < rl->cap ? &rl->b[rl->count++] : &rl->b[lru];
    size_t n = strnlen(addr, RATELIMIT_ADDR_MAX - 1);
    memcpy(b->addr, addr, n);
    b->addr[n] = '\0';
    b->tokens_m = rl->burst_m;
    b->last_ms = now_ms;
    return b;
}

int ratelimit_take(ratelimit *rl, const char *addr, uint64_t now_ms, uint64_t *retry_after_ms)
{
    struct bucket *b = find(rl, addr, now_ms);
    if (now_ms > b->last_ms) {
        uint64_t gained = (now_ms - b->last_ms) * rl->per_ms_m;
        b->tokens_m = UTIL_MIN(rl->burst_m, b->tokens_m + gained);
    }
    b->last_ms = UTIL_MAX(b->last_ms, now_ms);
    if (b->tokens_m >= MILLI) {
        b->tokens_m -= MILLI;
        return 0;
    }
    if (retry_after_ms != NULL)
        *retry_after_ms = (MILLI - b->tokens_m + rl->per_ms_m - 1) / rl->per_ms_m;
    return -1;
}
