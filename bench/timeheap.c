/* timeheap: see timeheap.h. The usual array heap: children of i at 2i+1
 * and 2i+2. */
#include "bench/timeheap.h"

#include <stdlib.h>

#include "common/util.h"

void timeheap_init(struct timeheap *h, uint32_t cap)
{
    h->e = xmalloc(((size_t)cap + 1) * sizeof(*h->e));
    h->len = 0;
    h->cap = cap;
}

void timeheap_free(struct timeheap *h)
{
    free(h->e);
    h->e = NULL;
    h->len = h->cap = 0;
}

int timeheap_push(struct timeheap *h, uint64_t at, uint32_t id)
{
    if (h->len == h->cap)
        return -1;
    uint32_t i = h->len++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (h->e[p].at <= at)
            break;
        h->e[i] = h->e[p];
        i = p;
    }
    h->e[i] = (struct timeheap_entry){ at, id };
    return 0;
}

int timeheap_pop_due(struct timeheap *h, uint64_t now, struct timeheap_entry *out)
{
    if (h->len == 0 || h->e[0].at > now)
        return 0;
    *out = h->e[0];
    struct timeheap_entry last = h->e[--h->len];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && h->e[c + 1].at < h->e[c].at)
            c++;
        if (last.at <= h->e[c].at)
            break;
        h->e[i] = h->e[c];
        i = c;
    }
    if (h->len > 0)
        h->e[i] = last;
    return 1;
}
