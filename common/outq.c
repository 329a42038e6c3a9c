/* outq: see outq.h. A write batch owns the references it writes and its
 * uv_buf_t array, and drops both in its callback. The flush list is kept
 * per process (the programs run one loop) and drained by a uv_check
 * handle, which runs right after the poll phase that produced the data.
 * Data queued outside the poll phase (from a timer or an idle callback)
 * would wait for the next poll to return, which may block for seconds: so
 * while the list is not empty an idle handle is active, which makes that
 * poll return at once. */
#include "common/outq.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define OUTQ_MAX_IOV 1024

struct outq_batch {
    uv_write_t req;
    outq *q;                /* the owner keeps it until the stream has closed:
                               libuv calls every write_cb before close_cb */
    size_t n, bytes;
    msgbuf **bufs;
    uv_buf_t *iov;
};

static outq *dirty_head;
static uv_check_t *flusher;
static uv_idle_t *waker;

static void wake_cb(uv_idle_t *h)
{
    (void)h; /* being active is its whole job */
}

static void flush_all_cb(uv_check_t *h)
{
    uv_idle_stop(waker);
    while (dirty_head != NULL) {
        outq *q = dirty_head;
        dirty_head = q->next_dirty;
        q->next_dirty = NULL;
        q->dirty = 0;
        outq_flush(q);
    }
}

static void ensure_flusher(uv_loop_t *loop)
{
    if (flusher != NULL)
        return;
    flusher = xmalloc(sizeof(*flusher));
    uv_check_init(loop, flusher);
    uv_check_start(flusher, flush_all_cb);
    uv_unref((uv_handle_t *)flusher); /* it alone must not keep the loop alive */
    waker = xmalloc(sizeof(*waker));
    uv_idle_init(loop, waker); /* referenced: data to write keeps the loop alive */
}

void outq_init(outq *q, uv_stream_t *stream, size_t max_bytes,
               outq_error_fn on_error, void *ud)
{
    memset(q, 0, sizeof(*q));
    q->stream = stream;
    q->max_bytes = max_bytes;
    q->on_error = on_error;
    q->ud = ud;
    ensure_flusher(stream->loop);
}

int outq_push(outq *q, msgbuf *b)
{
    if (q->dead)
        return UV_EPIPE;
    if (outq_bytes(q) + b->len > q->max_bytes)
        return UV_ENOBUFS;
    return outq_push_unbounded(q, b);
}

int outq_push_unbounded(outq *q, msgbuf *b)
{
    if (q->dead)
        return UV_EPIPE;
    if (q->npending == q->cappending) {
        q->cappending = q->cappending ? 2 * q->cappending : 16;
        q->pending = xrealloc(q->pending, q->cappending * sizeof(*q->pending));
    }
    q->pending[q->npending++] = msgbuf_ref(b);
    q->pending_bytes += b->len;
    if (!q->dirty) {
        if (dirty_head == NULL)
            uv_idle_start(waker, wake_cb);
        q->dirty = 1;
        q->next_dirty = dirty_head;
        dirty_head = q;
    }
    return 0;
}

static void batch_free(struct outq_batch *w)
{
    for (size_t i = 0; i < w->n; i++)
        msgbuf_unref(w->bufs[i]);
    free(w->bufs);
    free(w->iov);
    free(w);
}

static void write_cb(uv_write_t *req, int status)
{
    struct outq_batch *w = container_of(req, struct outq_batch, req);
    outq *q = w->q;
    if (q != NULL) {
        q->inflight--;
        q->inflight_bytes -= w->bytes;
    }
    batch_free(w);
    if (q != NULL && status != 0 && status != UV_ECANCELED && q->on_error && !q->dead)
        q->on_error(q, status, q->ud);
}

static void unlink_dirty(outq *q)
{
    if (!q->dirty)
        return;
    for (outq **p = &dirty_head; *p != NULL; p = &(*p)->next_dirty) {
        if (*p == q) {
            *p = q->next_dirty;
            break;
        }
    }
    q->next_dirty = NULL;
    q->dirty = 0;
}

void outq_flush(outq *q)
{
    unlink_dirty(q);
    size_t done = 0;
    while (done < q->npending && !q->dead) {
        size_t n = UTIL_MIN(q->npending - done, (size_t)OUTQ_MAX_IOV);
        struct outq_batch *w = xmalloc(sizeof(*w));
        w->q = q;
        w->n = n;
        w->bytes = 0;
        w->bufs = xmalloc(n * sizeof(*w->bufs));
        w->iov = xmalloc(n * sizeof(*w->iov));
        memcpy(w->bufs, q->pending + done, n * sizeof(*w->bufs));
        for (size_t i = 0; i < n; i++) {
            w->iov[i] = uv_buf_init(w->bufs[i]->data, w->bufs[i]->len);
            w->bytes += w->bufs[i]->len;
        }
        done += n;
        q->pending_bytes -= w->bytes;
        int rc = uv_write(&w->req, q->stream, w->iov, (unsigned)n, write_cb);
        if (rc != 0) {
            batch_free(w);
            /* Drop the rest too: the stream is unusable. */
            while (done < q->npending) {
                q->pending_bytes -= q->pending[done]->len;
                msgbuf_unref(q->pending[done++]);
            }
            q->npending = 0;
            if (q->on_error && !q->dead)
                q->on_error(q, rc, q->ud);
            return;
        }
        q->inflight++;
        q->inflight_bytes += w->bytes;
        q->writes++;
    }
    q->npending = 0;
    /* A burst grew the array: do not keep a huge one for an idle client. */
    if (q->cappending > 4096) {
        free(q->pending);
        q->pending = NULL;
        q->cappending = 0;
    }
}

void outq_clear(outq *q)
{
    for (size_t i = 0; i < q->npending; i++)
        msgbuf_unref(q->pending[i]);
    q->npending = 0;
    q->pending_bytes = 0;
}

void outq_discard(outq *q)
{
    unlink_dirty(q);
    outq_clear(q);
    free(q->pending);
    q->pending = NULL;
    q->cappending = 0;
    q->dead = 1;
}

void outq_shutdown(uv_loop_t *loop)
{
    if (flusher == NULL)
        return;
    uv_close((uv_handle_t *)flusher, (uv_close_cb)free);
    uv_close((uv_handle_t *)waker, (uv_close_cb)free);
    flusher = NULL;
    waker = NULL;
    dirty_head = NULL;
}
