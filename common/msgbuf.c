/* msgbuf: see msgbuf.h. One size class of cached buffers covers the common
 * chat message (JSON of a few hundred bytes); larger buffers are malloc'd
 * and freed directly. The cache is bounded so an idle node gives memory
 * back. */
#include "common/msgbuf.h"
#include "common/util.h"

#include <stdlib.h>

#define MSGBUF_SMALL_CAP 1024
#define MSGBUF_CACHE_MAX 4096

static msgbuf *msgbuf_cache[MSGBUF_CACHE_MAX];
static size_t msgbuf_cached;

msgbuf *msgbuf_new(size_t cap)
{
    msgbuf *b;
    if (cap <= MSGBUF_SMALL_CAP && msgbuf_cached > 0) {
        b = msgbuf_cache[--msgbuf_cached];
    } else {
        size_t c = cap <= MSGBUF_SMALL_CAP ? MSGBUF_SMALL_CAP : cap;
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
    if (b->cap == MSGBUF_SMALL_CAP && msgbuf_cached < MSGBUF_CACHE_MAX)
        msgbuf_cache[msgbuf_cached++] = b;
    else
        free(b);
}

void msgbuf_trim(void)
{
    while (msgbuf_cached > 0)
        free(msgbuf_cache[--msgbuf_cached]);
}
