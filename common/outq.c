/* outq: see outq.h. A write batch owns the references it writes and its
 * uv_buf_t array, and drops both in its callback. The flush list is kept
 * per process (the programs run one loop) and drained by a uv_check
 * handle, which runs right after the poll phase that produced the data.
 * Data queued outside the poll phase (from a timer or an idle callback)
 * would wait for the next poll to return, which may block for seconds: so
 * while the list is not empty an idle handle is active, which makes that
 * poll return at once. One write in flight per queue keeps what waits
 * droppable (a slow consumer's close frame goes right after that write) and
 * lets the next batch grow while the kernel takes the last one. */
#include "common/outq.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define OUTQ_MAX_IOV 1024
#define OUTQ_BATCH_BYTES (1u << 20) /* per write, unless one buffer is larger */
#define OUTQ_TRY_IOV 64   /* try_now takes batches of at most this many buffers */

struct outq_batch {
    uv_write_t req;
    outq *q;                /* the owner keeps it until the stream has closed:
                               libuv calls every write_cb before close_cb */
    size_t n, bytes, mem;
    msgbuf **bufs;
    char *cipher;           /* TLS: what goes out instead of iov */
    uint8_t head[OUTQ_SEAL_HEAD], tail[OUTQ_SEAL_TAIL];
    uv_buf_t iov[];         /* n buffers, plus a seal's head and tail: one
                               allocation with the batch */
};

/* Per entry, besides the buffer: its pending slot, and in a batch its
 * reference slot and iovec. */
#define OUTQ_ENTRY_COST (2 * sizeof(msgbuf *) + sizeof(uv_buf_t))

static outq *dirty_head;
static uv_check_t *flusher;
static uv_idle_t *waker;
static uint64_t (*clock_fn)(void) = util_now_ms;
static void (*flushed_fn)(void *ud);
static void *flushed_ud;
static bool wrote_now; /* outq_push_now wrote this turn: the hook is due */

void outq_set_clock(uint64_t (*now_ms)(void)) { clock_fn = now_ms ? now_ms : util_now_ms; }
uint64_t outq_now_ms(void) { return clock_fn(); }

static void wake_cb(uv_idle_t *h)
{
    (void)h; /* being active is its whole job */
}

static void flush_all_cb(uv_check_t *h)
{
    uv_idle_stop(waker);
    bool any = dirty_head != NULL || wrote_now;
    wrote_now = false;
    while (dirty_head != NULL) {
        outq *q = dirty_head;
        dirty_head = q->next_dirty;
        q->next_dirty = NULL;
        q->dirty = 0;
        outq_flush(q);
    }
    if (any && flushed_fn != NULL)
        flushed_fn(flushed_ud);
}

void outq_set_flushed_hook(void (*fn)(void *ud), void *ud)
{
    flushed_fn = fn;
    flushed_ud = ud;
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

struct outq_limits outq_limits_simple(size_t max)
{
    return (struct outq_limits){ .hard = max, .soft = max };
}

void outq_init(outq *q, uv_stream_t *stream, struct outq_class *cls,
               outq_error_fn on_error, void *ud)
{
    memset(q, 0, sizeof(*q));
    q->stream = stream;
    q->cls = cls;
    q->on_error = on_error;
    q->ud = ud;
    ensure_flusher(stream->loop);
}

size_t outq_cost(const msgbuf *b)
{
    return sizeof(msgbuf) + b->cap + OUTQ_ENTRY_COST;
}

/* --- the class's lists: congested, past the soft bound ------------------------ */

/* The two lists are intrusive (a queue is on each at most once); these
 * take the list head and the queue's own link fields. */
#define LIST_ADD(head, q, next, prev)       \
    do {                                    \
        (q)->prev = NULL;                   \
        (q)->next = (head);                 \
        if ((q)->next)                      \
            (q)->next->prev = (q);          \
        (head) = (q);                       \
    } while (0)
#define LIST_DEL(head, q, next, prev)       \
    do {                                    \
        if ((q)->next)                      \
            (q)->next->prev = (q)->prev;    \
        if ((q)->prev)                      \
            (q)->prev->next = (q)->next;    \
        else                                \
            (head) = (q)->next;             \
        (q)->next = (q)->prev = NULL;       \
    } while (0)

static void lists_leave(outq *q)
{
    struct outq_class *c = q->cls;
    if (q->congested) {
        LIST_DEL(c->congested, q, cong_next, cong_prev);
        q->congested = 0;
        c->ncongested--;
    }
    if (q->oversoft) {
        LIST_DEL(c->oversoft, q, soft_next, soft_prev);
        q->oversoft = 0;
    }
}

static void sweep_cb(uv_timer_t *t);

/* After every change of q->mem. The class's total follows it, even for a
 * discarded queue (its writes in flight complete later). Congestion: enter
 * above high, leave below low. The sweep's list: past soft, when the class
 * has a deadline. */
static void lists_update(outq *q)
{
    struct outq_class *c = q->cls;
    const struct outq_limits *l = &c->lim;
    c->mem = c->mem - q->cls_mem + q->mem;
    q->cls_mem = q->mem;
    if (q->dead)
        return;
    if (l->high != 0) {
        if (!q->congested && q->mem > l->high) {
            LIST_ADD(c->congested, q, cong_next, cong_prev);
            q->congested = 1;
            c->ncongested++;
        } else if (q->congested && q->mem < l->low) {
            LIST_DEL(c->congested, q, cong_next, cong_prev);
            q->congested = 0;
            c->ncongested--;
        }
    }
    if (c->sweeping) {
        bool over = q->mem > l->soft;
        if (over && !q->oversoft) {
            LIST_ADD(c->oversoft, q, soft_next, soft_prev);
            q->oversoft = 1;
            if (!uv_is_active((uv_handle_t *)&c->sweep)) {
                uint64_t every = UTIL_MAX(l->deadline_ms / 4, 1);
                uv_timer_start(&c->sweep, sweep_cb, every, every);
            }
        } else if (!over && q->oversoft) {
            LIST_DEL(c->oversoft, q, soft_next, soft_prev);
            q->oversoft = 0;
        }
    }
}

/* Reports every queue of the list that is stalled past the deadline; the
 * owner's on_error closes it (which takes it off the list). */
static void sweep_cb(uv_timer_t *t)
{
    struct outq_class *c = container_of(t, struct outq_class, sweep);
    for (outq *q = c->oversoft, *next; q != NULL; q = next) {
        next = q->soft_next;
        if (outq_verdict(q, 0) == OUTQ_STALLED && q->on_error)
            q->on_error(q, UV_ETIMEDOUT, q->ud);
    }
    if (c->oversoft == NULL)
        uv_timer_stop(t);
}

void outq_class_init(struct outq_class *cls, uv_loop_t *loop, struct outq_limits lim)
{
    memset(cls, 0, sizeof(*cls));
    cls->lim = lim;
    if (lim.deadline_ms == 0)
        return;
    uv_timer_init(loop, &cls->sweep);
    uv_unref((uv_handle_t *)&cls->sweep); /* the connections keep the loop alive */
    cls->sweeping = true;
}

bool outq_class_pressing(const struct outq_class *cls, uint64_t within_ms)
{
    uint64_t now = clock_fn();
    for (const outq *q = cls->congested; q != NULL; q = q->cong_next)
        if (now - q->progress_ms < within_ms)
            return true;
    return false;
}

uint64_t outq_stalled_ms(const outq *q)
{
    return q->mem == 0 ? 0 : clock_fn() - q->progress_ms;
}

enum outq_verdict outq_verdict(const outq *q, size_t extra)
{
    const struct outq_limits *l = &q->cls->lim;
    size_t m = q->mem + extra;
    if (m > l->hard)
        return OUTQ_OVER_HARD;
    if (l->deadline_ms && m > l->soft && q->mem > 0 &&
        clock_fn() - q->progress_ms >= l->deadline_ms)
        return OUTQ_STALLED;
    return OUTQ_FINE;
}

/* --- pushing ------------------------------------------------------------------ */

/* Puts q on the list flushed at the end of the loop turn. */
static void mark_dirty(outq *q)
{
    if (q->dirty)
        return;
    if (dirty_head == NULL)
        uv_idle_start(waker, wake_cb);
    q->dirty = 1;
    q->next_dirty = dirty_head;
    dirty_head = q;
}

/* Whether a write would carry something: pending entries that can go out
 * (over TLS, once the handshake is done), or TLS's own output. */
static bool has_work(const outq *q)
{
    if (q->tls == NULL)
        return q->npending > 0;
    return (q->npending > 0 && tls_conn_ready(q->tls)) || tls_conn_output_len(q->tls) > 0;
}

int outq_push(outq *q, msgbuf *b)
{
    if (q->dead)
        return UV_EPIPE;
    if (outq_verdict(q, outq_cost(b)) != OUTQ_FINE)
        return UV_ENOBUFS;
    return outq_push_unbounded(q, b);
}

int outq_push_unbounded(outq *q, msgbuf *b)
{
    if (q->dead)
        return UV_EPIPE;
    if (q->npending == q->cappending) {
        /* x4: a burst of 50 to an idle queue grows it twice, not thrice */
        q->cappending = q->cappending ? 4 * q->cappending : 16;
        q->pending = xrealloc(q->pending, q->cappending * sizeof(*q->pending));
    }
    if (q->mem == 0)
        q->progress_ms = clock_fn(); /* the deadline counts from here */
    q->pending[q->npending++] = msgbuf_ref(b);
    q->pending_bytes += b->len;
    q->pushed_total += b->len;
    q->mem += outq_cost(b);
    lists_update(q);
    mark_dirty(q);
    return 0;
}

int outq_push_now(outq *q, msgbuf *b)
{
    if (q->dead)
        return UV_EPIPE;
    if (q->npending > 0 || q->inflight > 0 || q->tls != NULL || q->seal != NULL ||
        q->on_written != NULL)
        return outq_push(q, b);
    if (outq_verdict(q, outq_cost(b)) != OUTQ_FINE)
        return UV_ENOBUFS;
    uv_buf_t buf = uv_buf_init(b->data, b->len);
    int r = uv_try_write(q->stream, &buf, 1);
    if (r <= 0) /* EAGAIN, or an error the flush will meet and report */
        return outq_push_unbounded(q, b);
    q->pushed_total += (size_t)r;
    q->retired_total += (size_t)r;
    q->writes++;
    wrote_now = true; /* the flushed hook runs at the end of this turn too */
    if ((uint32_t)r == b->len)
        return 0;
    msgbuf *rest = msgbuf_new(b->len - (uint32_t)r);
    memcpy(rest->data, b->data + r, b->len - (uint32_t)r);
    rest->len = b->len - (uint32_t)r;
    int rc = outq_push_unbounded(q, rest); /* the socket took the rest's start */
    msgbuf_unref(rest);
    return rc;
}

/* --- writing ------------------------------------------------------------------ */

static void batch_free(struct outq_batch *w)
{
    for (size_t i = 0; i < w->n; i++)
        msgbuf_unref(w->bufs[i]);
    free(w->bufs);
    free(w->cipher);
    free(w);
}

static void write_cb(uv_write_t *req, int status)
{
    struct outq_batch *w = container_of(req, struct outq_batch, req);
    outq *q = w->q;
    if (q != NULL) {
        q->inflight--;
        q->inflight_bytes -= w->bytes;
        q->retired_total += w->bytes;
        q->mem -= w->mem;
        q->progress_ms = clock_fn();
        lists_update(q);
    }
    batch_free(w);
    if (q == NULL || q->dead)
        return;
    if (status != 0) {
        if (status != UV_ECANCELED && q->on_error)
            q->on_error(q, status, q->ud);
        return;
    }
    if (q->inflight == 0 && has_work(q))
        outq_flush(q); /* what waited behind this write */
    if (q->on_written != NULL && !q->dead)
        q->on_written(q, q->ud); /* last: it may close the stream */
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

/* Drops pending[from..npending) without writing it. */
static void drop_pending(outq *q, size_t from)
{
    for (size_t i = from; i < q->npending; i++) {
        msgbuf *b = q->pending[i];
        q->pending_bytes -= b->len;
        q->retired_total += b->len;
        q->mem -= outq_cost(b);
        msgbuf_unref(b);
    }
    q->npending = from;
    q->unsealed = UTIL_MIN(q->unsealed, from);
    lists_update(q);
}

/* The first n pending entries (bytes, accounted as mem) left with a write
 * that completed at once: released as write_cb releases a batch. An idle
 * queue keeps no array. */
static void retire_now(outq *q, size_t n, size_t bytes, size_t mem)
{
    for (size_t i = 0; i < n; i++)
        msgbuf_unref(q->pending[i]);
    if (q->unsealed > 0)
        q->unsealed -= n;
    q->npending -= n;
    if (q->npending > 0) {
        memmove(q->pending, q->pending + n, q->npending * sizeof(*q->pending));
    } else {
        free(q->pending);
        q->pending = NULL;
        q->cappending = 0;
    }
    q->pending_bytes -= bytes;
    q->retired_total += bytes;
    q->mem -= mem;
    q->progress_ms = clock_fn();
    q->writes++;
    lists_update(q);
}

/* Offers the first n pending entries (bytes of them, n > 0) to the socket
 * at once, as redis writes before it installs a write handler: what the
 * kernel takes needs no write request, no copy of the iovecs, no poll
 * registration and no completion on a later turn. Only for plain queues
 * (no TLS, no seal) whose owner does not pump on completions
 * (on_written), with nothing in flight (libuv refuses otherwise too).
 * Returns the bytes taken (all of them: retired), 0, or a UV_E* error. */
static ssize_t try_now(outq *q, size_t n, size_t bytes, size_t mem)
{
    uv_buf_t iov[OUTQ_TRY_IOV];
    if (q->tls != NULL || q->seal != NULL || q->on_written != NULL || q->inflight > 0 ||
        n == 0 || n > OUTQ_TRY_IOV)
        return 0;
    for (size_t i = 0; i < n; i++)
        iov[i] = uv_buf_init(q->pending[i]->data, q->pending[i]->len);
    int r = uv_try_write(q->stream, iov, (unsigned)n);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        return 0;
    if (r > 0 && (size_t)r == bytes)
        retire_now(q, n, bytes, mem);
    return r;
}

/* Hands one batch from the front of pending to the socket (try_now) and
 * what it did not take to uv_write. Returns 0, or -1 when the stream
 * refused it (pending is dropped, on_error called). */
static int write_batch(outq *q)
{
    size_t n = 0, bytes = 0, mem = 0;
    /* Entries pushed before the seal was set go out bare, on their own.
     * Over TLS, nothing goes before the handshake is done. */
    size_t most = q->unsealed > 0 ? q->unsealed : q->npending;
    if (q->tls != NULL && !tls_conn_ready(q->tls))
        most = 0;
    bool sealed = q->seal != NULL && q->unsealed == 0;
    while (n < most && n < OUTQ_MAX_IOV &&
           (n == 0 || bytes + q->pending[n]->len <= OUTQ_BATCH_BYTES)) {
        bytes += q->pending[n]->len;
        mem += outq_cost(q->pending[n]);
        n++;
    }
    ssize_t taken = try_now(q, n, bytes, mem);
    if (taken < 0) {
        drop_pending(q, 0); /* the stream is unusable */
        if (q->on_error && !q->dead)
            q->on_error(q, (int)taken, q->ud);
        return -1;
    }
    if (taken > 0 && (size_t)taken == bytes)
        return 0; /* all of it, now */
    struct outq_batch *w = xmalloc(sizeof(*w) + (n + 2) * sizeof(w->iov[0]));
    w->cipher = NULL;
    w->q = q;
    w->n = n;
    w->bytes = bytes;
    w->mem = mem;
    if (n > 0 && n == q->npending) {
        /* All of it (the usual case): the batch takes the array, and an
         * idle queue holds none. */
        w->bufs = q->pending;
        q->pending = NULL;
        q->cappending = 0;
    } else {
        w->bufs = xmalloc((n ? n : 1) * sizeof(*w->bufs));
        if (n > 0) /* none: a batch of TLS's own output only */
            memcpy(w->bufs, q->pending, n * sizeof(*w->bufs));
    }
    size_t niov = n;
    if (sealed) {
        for (size_t i = 0; i < n; i++)
            w->iov[i + 1] = uv_buf_init(w->bufs[i]->data, w->bufs[i]->len);
        size_t hl = 0, tl = 0;
        q->seal(q->seal_ud, w->iov + 1, n, bytes, w->head, &hl, w->tail, &tl);
        w->iov[0] = uv_buf_init((char *)w->head, (unsigned)hl);
        w->iov[n + 1] = uv_buf_init((char *)w->tail, (unsigned)tl);
        niov = n + 2;
    } else {
        for (size_t i = 0; i < n; i++)
            w->iov[i] = uv_buf_init(w->bufs[i]->data, w->bufs[i]->len);
    }
    if (q->unsealed > 0)
        q->unsealed -= n;
    q->npending -= n;
    if (n > 0 && q->npending > 0)
        memmove(q->pending, q->pending + n, q->npending * sizeof(*q->pending));
    q->pending_bytes -= bytes;
    q->inflight_bytes += bytes;
    q->inflight++;
    const uv_buf_t *out = w->iov;
    uv_buf_t cipher;
    int rc = 0;
    if (q->tls != NULL) {
        /* Encrypted here, at the last moment: a reference still waiting
         * could be dropped, and the same frame bytes serve every queue. */
        size_t clen = 0;
        if (n > 0 && tls_conn_writev(q->tls, w->iov, niov) != 0)
            rc = UV_EPROTO;
        else if ((w->cipher = tls_conn_take_output(q->tls, &clen)) == NULL)
            rc = n > 0 ? UV_EPROTO : 0;
        if (rc == 0 && w->cipher == NULL) { /* nothing at all to write */
            q->inflight--;
            batch_free(w);
            return 0;
        }
        cipher = uv_buf_init(w->cipher, (unsigned)clen);
        out = &cipher;
        niov = 1;
        w->mem += clen;
        q->mem += clen;
        lists_update(q);
    }
    if (rc == 0 && taken > 0) {
        /* The socket took the first bytes: the rest goes as a request. */
        size_t skip = (size_t)taken;
        while (skip >= out->len) {
            skip -= out->len;
            out++;
            niov--;
        }
        w->iov[out - w->iov].base += skip;
        w->iov[out - w->iov].len -= skip;
    }
    if (rc == 0)
        rc = uv_write(&w->req, q->stream, out, (unsigned)niov, write_cb);
    if (rc != 0) {
        q->inflight--;
        q->inflight_bytes -= bytes;
        q->retired_total += bytes;
        q->mem -= w->mem;
        batch_free(w);
        drop_pending(q, 0); /* the stream is unusable */
        if (q->on_error && !q->dead)
            q->on_error(q, rc, q->ud);
        return -1;
    }
    q->writes++;
    return 0;
}

/* A burst grew the array: do not keep a huge one for an idle client. */
static void shrink_pending(outq *q)
{
    if (q->npending == 0 && q->cappending > 4096) {
        free(q->pending);
        q->pending = NULL;
        q->cappending = 0;
    }
}

void outq_flush(outq *q)
{
    unlink_dirty(q);
    /* A batch the socket took at once leaves nothing in flight: the next
     * one (more than a batch was pending) may go too. */
    while (q->inflight == 0 && !q->dead && has_work(q)) {
        size_t before = q->npending;
        if (write_batch(q) != 0 || q->npending == before)
            break;
    }
    shrink_pending(q);
}

void outq_flush_all(outq *q)
{
    unlink_dirty(q);
    while (!q->dead && has_work(q) && write_batch(q) == 0)
        ;
    shrink_pending(q);
}

void outq_set_tls(outq *q, tls_conn *t)
{
    q->tls = t;
    outq_poke(q);
}

void outq_set_on_written(outq *q, outq_written_fn fn)
{
    q->on_written = fn;
}

void outq_poke(outq *q)
{
    if (!q->dead && has_work(q))
        mark_dirty(q);
}

void outq_set_seal(outq *q, outq_seal_fn seal, void *ud)
{
    q->seal = seal;
    q->seal_ud = ud;
    q->unsealed = q->npending;
}

void outq_clear(outq *q)
{
    drop_pending(q, 0);
}

void outq_discard(outq *q)
{
    unlink_dirty(q);
    outq_clear(q);
    lists_leave(q);
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
