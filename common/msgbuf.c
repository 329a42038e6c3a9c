/* msgbuf: see msgbuf.h. Four size classes of cached buffers (256 bytes to
 * 2 KiB of data) cover chat messages and peer frames; a buffer is rounded
 * up to its class, so a 220-byte frame costs 256 bytes, not 1 KiB. Each
 * class keeps at most MSGBUF_CLASS_CACHE bytes of free buffers: enough for
 * the thousands of frames a burst keeps in flight (with fewer, every
 * buffer past the cache went back to malloc and the heap's top was trimmed
 * and faulted in again, which perf showed as 9 % of the senders' node),
 * bounded so that an idle node gives memory back. Larger buffers are
 * malloc'd and freed directly. */
#include "common/msgbuf.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define MSGBUF_CLASSES 4
#define MSGBUF_MIN_CLASS 256                       /* data bytes of class 0 */
#define MSGBUF_MAX_CLASS (MSGBUF_MIN_CLASS << (MSGBUF_CLASSES - 1))
#define MSGBUF_CLASS_CACHE (2u << 20)              /* free bytes kept per class */

struct msgbuf_class {
    msgbuf **free;      /* MSGBUF_CLASS_CACHE / cap slots */
    size_t n;
};

static struct msgbuf_class classes[MSGBUF_CLASSES];

/* The class whose capacity holds cap bytes, or -1 beyond the largest. */
static int class_of(size_t cap)
{
    size_t c = MSGBUF_MIN_CLASS;
    for (int i = 0; i < MSGBUF_CLASSES; i++, c <<= 1)
        if (cap <= c)
            return i;
    return -1;
}

static size_t class_cap(int i)
{
    return (size_t)MSGBUF_MIN_CLASS << i;
}

static size_t class_slots(int i)
{
    return MSGBUF_CLASS_CACHE / class_cap(i);
}

msgbuf *msgbuf_new(size_t cap)
{
    msgbuf *b;
    int k = class_of(cap);
    if (k >= 0 && classes[k].n > 0) {
        b = classes[k].free[--classes[k].n];
    } else {
        size_t c = k >= 0 ? class_cap(k) : cap;
        if (c > UINT32_MAX - sizeof(msgbuf))
            c = UINT32_MAX - sizeof(msgbuf); /* caller bugs only; bounded below */
        b = xmalloc(sizeof(msgbuf) + c);
        b->cap = (uint32_t)c;
    }
    b->refs = 1;
    b->len = 0;
    return b;
}

void msgbuf_unref(msgbuf *b)
{
    if (--b->refs > 0)
        return;
    int k = b->cap <= MSGBUF_MAX_CLASS ? class_of(b->cap) : -1;
    if (k >= 0 && class_cap(k) == b->cap) {
        struct msgbuf_class *c = &classes[k];
        if (c->free == NULL)
            c->free = xmalloc(class_slots(k) * sizeof(*c->free));
        if (c->n < class_slots(k)) {
            c->free[c->n++] = b;
            return;
        }
    }
    free(b);
}

msgbuf *msgbuf_concat(msgbuf *const *bufs, size_t n, size_t max, size_t *taken)
{
    size_t k = 1, total = bufs[0]->len;
    while (k < n && total + bufs[k]->len <= max)
        total += bufs[k++]->len;
    *taken = k;
    if (k == 1)
        return msgbuf_ref(bufs[0]);
    msgbuf *b = msgbuf_new(total);
    for (size_t i = 0; i < k; i++) {
        memcpy(b->data + b->len, bufs[i]->data, bufs[i]->len);
        b->len += bufs[i]->len;
    }
    return b;
}

size_t msgbuf_cached_bytes(void)
{
    size_t bytes = 0;
    for (int i = 0; i < MSGBUF_CLASSES; i++)
        bytes += classes[i].n * class_cap(i);
    return bytes;
}

void msgbuf_trim(void)
{
    for (int i = 0; i < MSGBUF_CLASSES; i++) {
        while (classes[i].n > 0)
            free(classes[i].free[--classes[i].n]);
        free(classes[i].free);
        classes[i].free = NULL;
    }
}
