/* outq: the one write path of a connection. Callers push references to
 * immutable msgbufs; all queues that received data during a loop turn are
 * flushed once, at the end of the turn (a uv_check handle), each with one
 * vectored uv_write carrying many buffers. Bytes queued but not yet written
 * are bounded: past the bound outq_push refuses and the owner closes the
 * connection (a slow consumer must not grow memory or slow the others).
 * Used by WebSocket connections and by the node's peer links. */
#ifndef DCHAT_OUTQ_H
#define DCHAT_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/msgbuf.h"

typedef struct outq outq;

/* Called when a write fails (status is the UV_E* code); the owner should
 * close the stream. Not called for UV_ECANCELED after the owner closed it. */
typedef void (*outq_error_fn)(outq *q, int status, void *ud);

struct outq_batch;

struct outq {
    uv_stream_t *stream;
    outq_error_fn on_error;
    void *ud;
    msgbuf **pending;          /* pushed, not yet handed to uv_write */
    size_t npending, cappending;
    size_t pending_bytes;
    size_t inflight_bytes;     /* handed to uv_write, not yet completed */
    size_t max_bytes;
    unsigned inflight;         /* writes not yet completed */
    struct outq *next_dirty;   /* in the loop's flush list */
    uint8_t dirty;
    uint8_t dead;              /* discarded: nothing more goes out */
    uint64_t writes;           /* uv_write calls made (for tests, stats) */
};

/* Prepares q for stream. max_bytes bounds pending + in-flight bytes. */
void outq_init(outq *q, uv_stream_t *stream, size_t max_bytes,
               outq_error_fn on_error, void *ud);

/* Queues a reference to b (msgbuf_ref is done here). Returns 0, UV_ENOBUFS
 * when the bound would be passed (nothing queued), or UV_EPIPE after
 * outq_discard. */
int outq_push(outq *q, msgbuf *b);

/* Queues b even past the bound: for the few bytes of a close frame sent to
 * a consumer that is being cut off. Returns 0 or UV_EPIPE. */
int outq_push_unbounded(outq *q, msgbuf *b);

/* Drops what is pending (not what is in flight); q stays usable. */
void outq_clear(outq *q);

/* Writes what is pending now instead of at the end of the loop turn. */
void outq_flush(outq *q);

/* Drops everything pending and takes q out of the flush list; writes in
 * flight keep their references until their callbacks run (the stream's
 * uv_close cancels them). Call before closing the stream. */
void outq_discard(outq *q);

/* Bytes pending plus bytes in flight. */
static inline size_t outq_bytes(const outq *q)
{
    return q->pending_bytes + q->inflight_bytes;
}

/* Frees the per-loop flush handle (at exit, so leak checkers see nothing). */
void outq_shutdown(uv_loop_t *loop);

#endif
