/* catchup: see catchup.h. The cursors are an array in ascending origin
 * order with a read index: catchup_marks() appends, catchup_done() moves
 * the index, so neither ever searches nor shifts the array. */
#include "node/catchup.h"

#include <stdlib.h>

#include "common/util.h"

struct cursor {
    uint32_t origin;
    uint64_t after;
};

struct catchup {
    struct cursor *cu;
    size_t head, n, cap;      /* cu[head .. n) are to be served */
};

catchup *catchup_new(void)
{
    return xcalloc(1, sizeof(catchup));
}

void catchup_free(catchup *c)
{
    if (c == NULL)
        return;
    free(c->cu);
    free(c);
}

size_t catchup_marks(catchup *c, const struct peer_frame *f, const struct store_origin *ours,
                     size_t n, uint32_t skip)
{
    c->head = c->n = 0;
    uint32_t k = 0;              /* the peer's next entry */
    uint32_t mo = 0;             /* its origin and seq, when k < f->nmarks */
    uint64_t ms = 0;
    if (k < f->nmarks)
        peer_proto_mark(f, k, &mo, &ms);
    for (size_t i = 0; i < n; i++) {
        uint32_t origin = ours[i].origin;
        while (k < f->nmarks && mo < origin && ++k < f->nmarks)
            peer_proto_mark(f, k, &mo, &ms);
        uint64_t theirs = k < f->nmarks && mo == origin ? ms : 0;
        if (origin == skip || ours[i].highest <= theirs)
            continue;
        if (c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 16;
            c->cu = xrealloc(c->cu, c->cap * sizeof(*c->cu));
        }
        c->cu[c->n++] = (struct cursor){ origin, theirs };
    }
    return c->n;
}

bool catchup_next(const catchup *c, uint32_t *origin, uint64_t *after)
{
    if (c->head == c->n)
        return false;
    *origin = c->cu[c->head].origin;
    *after = c->cu[c->head].after;
    return true;
}

void catchup_queued(catchup *c, uint32_t origin, uint64_t seq)
{
    if (c->head < c->n && c->cu[c->head].origin == origin && c->cu[c->head].after + 1 == seq)
        c->cu[c->head].after = seq;
}

void catchup_done(catchup *c)
{
    if (c->head < c->n && ++c->head == c->n)
        c->head = c->n = 0;
}

void catchup_clear(catchup *c)
{
    c->head = c->n = 0;
}

size_t catchup_pending(const catchup *c)
{
    return c->n - c->head;
}
