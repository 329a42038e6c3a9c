/* Unit tests for common/outq.c: the per-connection write queue. Buffers are
 * pushed and flushed through a real stream pair (a socketpair opened as two
 * uv_pipe_t in one loop): order, the end-of-turn flush, one write in flight,
 * the accounting of allocated bytes (control frames included), the hard
 * bound (UV_ENOBUFS, counting bytes in flight), the soft bound and its
 * progress deadline and the congestion marks against an injected clock,
 * outq_clear/outq_discard dropping their references (ASan's leak check),
 * more than 1024 buffers going out in several vectored writes, write
 * errors, and the written callback driving a producer; a plain queue's
 * batches go straight to the socket when it takes them (no request, no
 * completion), and what it does not take goes as a request; outq_push_now
 * writes to an idle queue's socket before returning (the flushed hook
 * still runs at the turn's end), queues behind anything pending, and
 * queues what the socket did not take. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/msgbuf.h"
#include "common/outq.h"

/* --- fixture ---------------------------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    uv_pipe_t w, r;          /* writer and reader ends */
    bool r_open;
    struct outq_class cls;
    outq q;
    char *got;               /* everything the reader received */
    size_t got_len, got_cap;
    int read_error;
    int errors;              /* on_error calls */
    int last_error;
    char rbuf[65536];
} fixture;

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fixture *f = h->data;
    buf->base = f->rbuf;
    buf->len = sizeof(f->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fixture *f = s->data;
    if (n < 0) {
        f->read_error = (int)n;
        uv_read_stop(s);
        return;
    }
    if (f->got_len + (size_t)n > f->got_cap) {
        f->got_cap = (f->got_len + (size_t)n) * 2;
        f->got = realloc(f->got, f->got_cap);
        assert_non_null(f->got);
    }
    memcpy(f->got + f->got_len, buf->base, (size_t)n);
    f->got_len += (size_t)n;
}

static void on_error(outq *q, int status, void *ud)
{
    fixture *f = ud;
    assert_ptr_equal(q, &f->q);
    f->errors++;
    f->last_error = status;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_pipe_init(&f->loop, &f->w, 0), 0);
    assert_int_equal(uv_pipe_open(&f->w, fds[0]), 0);
    assert_int_equal(uv_pipe_init(&f->loop, &f->r, 0), 0);
    assert_int_equal(uv_pipe_open(&f->r, fds[1]), 0);
    f->w.data = f;
    f->r.data = f;
    f->r_open = true;
    assert_int_equal(uv_read_start((uv_stream_t *)&f->r, alloc_cb, read_cb), 0);
    f->cls.lim = outq_limits_simple(64u << 20);
    outq_init(&f->q, (uv_stream_t *)&f->w, &f->cls, on_error, f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    outq_discard(&f->q);
    outq_set_clock(NULL);
    if (!uv_is_closing((uv_handle_t *)&f->w))
        uv_close((uv_handle_t *)&f->w, NULL);
    if (f->r_open && !uv_is_closing((uv_handle_t *)&f->r))
        uv_close((uv_handle_t *)&f->r, NULL);
    outq_shutdown(&f->loop);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->got);
    free(f);
    msgbuf_trim();
    return 0;
}

/* Starts the queue over with other limits. */
static void reinit(fixture *f, struct outq_limits lim)
{
    outq_discard(&f->q);
    f->cls.lim = lim;
    outq_init(&f->q, (uv_stream_t *)&f->w, &f->cls, on_error, f);
}

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void) { return fake_now; }

/* Turns the loop without blocking (each turn ends with the flush check)
 * until the reader has want bytes or 5 s have passed. */
static void run_until_received(fixture *f, size_t want)
{
    uint64_t start = uv_hrtime();
    while (f->got_len < want && uv_hrtime() - start < 5000000000ull)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->got_len, want);
}

/* Turns the loop until on_error was called or 5 s have passed; it must
 * have been, once. */
static void run_until_error(fixture *f)
{
    uint64_t start = uv_hrtime();
    while (f->errors == 0 && uv_hrtime() - start < 5000000000ull)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->errors, 1);
}

/* Turns the loop until no write is in flight. */
static void run_until_drained(fixture *f)
{
    uint64_t start = uv_hrtime();
    while ((f->q.inflight > 0 || f->q.npending > 0) && uv_hrtime() - start < 5000000000ull)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->q.inflight, 0);
    assert_int_equal(f->q.npending, 0);
}

static msgbuf *make_buf(size_t len, unsigned seed)
{
    msgbuf *b = msgbuf_new(len);
    for (size_t i = 0; i < len; i++)
        b->data[i] = (char)('A' + (seed + i) % 26);
    b->len = (uint32_t)len;
    return b;
}

/* The reader got big (from make_buf) at offset off of what it received. */
static void assert_got_big(const fixture *f, size_t off, const msgbuf *big)
{
    for (size_t i = 0; i < big->len; i += 4099)
        assert_int_equal((unsigned char)f->got[off + i], (unsigned char)big->data[i]);
}

static msgbuf *make_str(const char *s)
{
    msgbuf *b = msgbuf_new(strlen(s));
    memcpy(b->data, s, strlen(s));
    b->len = (uint32_t)strlen(s);
    return b;
}

/* --- tests ------------------------------------------------------------------ */

static void test_order_and_end_of_turn_flush(void **state)
{
    fixture *f = *state;
    enum { N = 200 };
    msgbuf *bufs[N];
    char want[N * 16];
    size_t want_len = 0;
    for (int i = 0; i < N; i++) {
        char s[16];
        int n = snprintf(s, sizeof(s), "msg-%03d;", i);
        bufs[i] = make_str(s);
        memcpy(want + want_len, s, (size_t)n);
        want_len += (size_t)n;
        assert_int_equal(outq_push(&f->q, bufs[i]), 0);
        assert_int_equal(bufs[i]->refs, 2); /* ours and the queue's */
    }
    /* nothing is written at push time: it waits for the end of the turn */
    assert_int_equal(f->q.npending, N);
    assert_int_equal(f->q.pending_bytes, want_len);
    assert_int_equal(outq_bytes(&f->q), want_len);
    assert_int_equal(f->q.writes, 0);
    assert_int_equal(f->q.dirty, 1);

    run_until_received(f, want_len);
    assert_memory_equal(f->got, want, want_len);
    /* one vectored write for all of them */
    assert_int_equal(f->q.writes, 1);
    run_until_drained(f);
    assert_int_equal(outq_bytes(&f->q), 0);
    assert_int_equal(f->q.dirty, 0);
    /* the write took the pending array with its references: an idle queue
     * costs no array (what 19,000 idle clients would otherwise hold) */
    assert_null(f->q.pending);
    assert_int_equal(f->q.cappending, 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(bufs[i]->refs, 1); /* the write dropped its reference */
        msgbuf_unref(bufs[i]);
    }

    /* a second round on the same queue, the same buffer several times */
    msgbuf *x = make_str("xyz");
    for (int i = 0; i < 5; i++)
        assert_int_equal(outq_push(&f->q, x), 0);
    assert_int_equal(x->refs, 6);
    msgbuf *y = make_str("!");
    assert_int_equal(outq_push_unbounded(&f->q, y), 0);
    run_until_received(f, want_len + 16);
    assert_memory_equal(f->got + want_len, "xyzxyzxyzxyzxyz!", 16);
    run_until_drained(f);
    assert_int_equal(f->q.writes, 2);
    assert_int_equal(x->refs, 1);
    msgbuf_unref(x);
    msgbuf_unref(y);
    assert_int_equal(f->errors, 0);
}

/* A seal that writes "<n:bytes>" before a batch and "</>" after it. */
static void test_seal_fn(void *ud, const uv_buf_t *bufs, size_t n, size_t bytes, uint8_t *head,
                         size_t *head_len, uint8_t *tail, size_t *tail_len)
{
    int *calls = ud;
    (*calls)++;
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += bufs[i].len;
    assert_int_equal(sum, bytes);
    *head_len = (size_t)snprintf((char *)head, OUTQ_SEAL_HEAD, "<%zu:%zu>", n, bytes);
    memcpy(tail, "</>", 3);
    *tail_len = 3;
}

static void test_seal_wraps_batches_pushed_after_it(void **state)
{
    fixture *f = *state;
    int calls = 0;
    msgbuf *a = make_str("aa"), *b = make_str("bbb"), *c = make_str("c");
    /* a is pending when the seal is set: it goes bare, in a batch of its
     * own, even though b and c could have joined it */
    assert_int_equal(outq_push(&f->q, a), 0);
    outq_set_seal(&f->q, test_seal_fn, &calls);
    assert_int_equal(outq_push(&f->q, b), 0);
    assert_int_equal(outq_push(&f->q, c), 0);
    run_until_received(f, 2 + 5 + 4 + 3);
    assert_memory_equal(f->got, "aa<2:4>bbbc</>", 14);
    assert_int_equal(calls, 1);
    assert_int_equal(f->q.writes, 2);
    run_until_drained(f);
    /* the payload accounting leaves the seal's bytes out */
    assert_int_equal(f->q.retired_total, 6);
    assert_int_equal(f->q.mem, 0);
    /* pending entries dropped before their batch: nothing bare is left */
    assert_int_equal(outq_push(&f->q, a), 0);
    outq_set_seal(&f->q, test_seal_fn, &calls);
    outq_clear(&f->q);
    assert_int_equal(outq_push(&f->q, c), 0);
    run_until_received(f, 14 + 5 + 1 + 3);
    assert_memory_equal(f->got + 14, "<1:1>c</>", 9);
    run_until_drained(f);
    msgbuf_unref(a);
    msgbuf_unref(b);
    msgbuf_unref(c);
}

/* A queue whose owner pumps on completions always writes by request: the
 * tests of the request path use one. */
static void noop_written(outq *q, void *ud)
{
    (void)q;
    (void)ud;
}

static void test_explicit_flush(void **state)
{
    fixture *f = *state;
    outq_set_on_written(&f->q, noop_written);
    msgbuf *a = make_str("hello ");
    msgbuf *b = make_str("world");
    assert_int_equal(outq_push(&f->q, a), 0);
    outq_flush(&f->q);
    /* handed to uv_write now (and out of the flush list) */
    assert_int_equal(f->q.writes, 1);
    assert_int_equal(f->q.npending, 0);
    assert_int_equal(f->q.dirty, 0);
    assert_int_equal(outq_push(&f->q, b), 0);
    outq_flush(&f->q);
    /* one write in flight at a time: b waits for the first to complete */
    assert_int_equal(f->q.writes, 1);
    assert_int_equal(f->q.npending, 1);
    run_until_received(f, 11);
    assert_int_equal(f->q.writes, 2);
    outq_flush(&f->q); /* nothing pending: no write */
    assert_int_equal(f->q.writes, 2);
    assert_memory_equal(f->got, "hello world", 11);
    run_until_drained(f);
    msgbuf_unref(a);
    msgbuf_unref(b);
}

/* A producer that fills the queue in steps, driven by on_written: each
 * completed write lets it push the next buffer, until all are out. */
struct stepper {
    fixture *f;
    int calls;
    int pushed;
    int total;
};

static struct stepper *the_stepper;

static void step_written(outq *q, void *ud)
{
    fixture *f = ud;
    struct stepper *st = the_stepper;
    assert_ptr_equal(q, &f->q);
    st->calls++;
    /* called once the write is accounted for: nothing of it in flight */
    assert_int_equal(q->inflight, 0);
    if (st->pushed < st->total) {
        msgbuf *b = make_buf(1000, (unsigned)st->pushed);
        assert_int_equal(outq_push(q, b), 0);
        msgbuf_unref(b);
        st->pushed++;
    }
}

static void test_on_written_drives_a_producer(void **state)
{
    fixture *f = *state;
    struct stepper st = { .f = f, .total = 50 };
    the_stepper = &st;
    outq_set_on_written(&f->q, step_written);
    msgbuf *b = make_buf(1000, 0);
    assert_int_equal(outq_push(&f->q, b), 0);
    msgbuf_unref(b);
    st.pushed = 1;
    run_until_received(f, 50 * 1000);
    run_until_drained(f);
    /* one call per completed write, and each pushed one more */
    assert_int_equal(st.pushed, 50);
    assert_int_equal((uint64_t)st.calls, f->q.writes);
    for (int i = 0; i < 50; i++)
        assert_int_equal(f->got[i * 1000], 'A' + i % 26);
    /* a failed write is reported as an error, not as written */
    int before = st.calls;
    uv_close((uv_handle_t *)&f->r, NULL);
    f->r_open = false;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    st.total = 0; /* push nothing more from the callback */
    b = make_str("into the void");
    assert_int_equal(outq_push(&f->q, b), 0);
    msgbuf_unref(b);
    run_until_error(f);
    assert_int_equal(st.calls, before);
    outq_set_on_written(&f->q, NULL);
    the_stepper = NULL;
}

static void test_byte_bound(void **state)
{
    fixture *f = *state;
    msgbuf *a = make_buf(60, 0), *b = make_buf(40, 1), *c = make_buf(1, 2);
    reinit(f, outq_limits_simple(outq_cost(a) + outq_cost(b)));
    assert_int_equal(outq_push(&f->q, a), 0);
    assert_int_equal(outq_push(&f->q, b), 0);     /* exactly the bound */
    assert_int_equal(outq_bytes(&f->q), 100);
    assert_int_equal(f->q.mem, f->cls.lim.hard);
    assert_int_equal(outq_verdict(&f->q, 0), OUTQ_FINE);
    assert_int_equal(outq_verdict(&f->q, 1), OUTQ_OVER_HARD);
    assert_int_equal(outq_push(&f->q, c), UV_ENOBUFS);
    /* refused means nothing queued and no reference taken */
    assert_int_equal(c->refs, 1);
    assert_int_equal(f->q.npending, 2);
    assert_int_equal(outq_bytes(&f->q), 100);
    /* the unbounded push goes past it (a close frame to a slow consumer),
     * and is counted */
    msgbuf *close = make_str("CLOSE");
    assert_int_equal(outq_push_unbounded(&f->q, close), 0);
    assert_int_equal(outq_bytes(&f->q), 105);
    assert_int_equal(f->q.mem, f->cls.lim.hard + outq_cost(close));
    assert_int_equal(outq_push(&f->q, c), UV_ENOBUFS);

    run_until_received(f, 105);
    assert_memory_equal(f->got, a->data, 60);
    assert_memory_equal(f->got + 60, b->data, 40);
    assert_memory_equal(f->got + 100, "CLOSE", 5);
    run_until_drained(f);
    /* written: room again */
    assert_int_equal(outq_bytes(&f->q), 0);
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(outq_push(&f->q, c), 0);
    run_until_received(f, 106);
    run_until_drained(f);
    msgbuf_unref(a);
    msgbuf_unref(b);
    msgbuf_unref(c);
    msgbuf_unref(close);
}

static void test_bound_counts_bytes_in_flight(void **state)
{
    fixture *f = *state;
    /* A write the socket cannot take at once stays in flight: its bytes
     * still count against the bound until its callback. */
    const size_t big = 6u << 20;
    msgbuf *b = make_buf(big, 3);
    reinit(f, outq_limits_simple(outq_cost(b) + (2u << 20)));
    uv_read_stop((uv_stream_t *)&f->r);
    assert_int_equal(outq_push(&f->q, b), 0);
    outq_flush(&f->q);
    assert_int_equal(f->q.npending, 0);
    assert_int_equal(f->q.pending_bytes, 0);
    assert_int_equal(f->q.inflight, 1);
    assert_int_equal(f->q.inflight_bytes, big);
    assert_int_equal(outq_bytes(&f->q), big);
    msgbuf *more = make_buf(3u << 20, 4);
    assert_int_equal(outq_push(&f->q, more), UV_ENOBUFS);
    msgbuf *small = make_buf(1000, 5);
    assert_int_equal(outq_push(&f->q, small), 0);
    assert_int_equal(b->refs, 2);

    assert_int_equal(uv_read_start((uv_stream_t *)&f->r, alloc_cb, read_cb), 0);
    run_until_received(f, big + 1000);
    assert_memory_equal(f->got, b->data, big);
    assert_memory_equal(f->got + big, small->data, 1000);
    run_until_drained(f);
    assert_int_equal(outq_bytes(&f->q), 0);
    assert_int_equal(b->refs, 1);
    assert_int_equal(outq_push(&f->q, more), 0);
    run_until_received(f, big + 1000 + (3u << 20));
    run_until_drained(f);
    msgbuf_unref(b);
    msgbuf_unref(more);
    msgbuf_unref(small);
}

static void test_clear_drops_refs(void **state)
{
    fixture *f = *state;
    msgbuf *bufs[50];
    for (int i = 0; i < 50; i++) {
        bufs[i] = make_buf(100 + (size_t)i * 50, (unsigned)i); /* small and large */
        assert_int_equal(outq_push(&f->q, bufs[i]), 0);
    }
    /* a buffer only the queue holds: outq_clear must free it (ASan leak
     * check at exit otherwise) */
    msgbuf *orphan = make_buf(5000, 9);
    assert_int_equal(outq_push(&f->q, orphan), 0);
    msgbuf_unref(orphan);
    outq_clear(&f->q);
    assert_int_equal(f->q.npending, 0);
    assert_int_equal(f->q.pending_bytes, 0);
    assert_int_equal(outq_bytes(&f->q), 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(bufs[i]->refs, 1);
        msgbuf_unref(bufs[i]);
    }
    /* still usable; the cleared data never goes out */
    msgbuf *m = make_str("after clear");
    assert_int_equal(outq_push(&f->q, m), 0);
    run_until_received(f, 11);
    assert_memory_equal(f->got, "after clear", 11);
    run_until_drained(f);
    msgbuf_unref(m);
    assert_int_equal(f->q.writes, 1);
}

static void test_many_small_buffers(void **state)
{
    fixture *f = *state;
    enum { N = 3000 };
    msgbuf **bufs = malloc(N * sizeof(*bufs));
    char *want = malloc(N * 8);
    for (int i = 0; i < N; i++) {
        char s[16];
        snprintf(s, sizeof(s), "%07u,", (unsigned)i);
        bufs[i] = make_str(s);
        memcpy(want + i * 8, s, 8);
        assert_int_equal(outq_push(&f->q, bufs[i]), 0);
        msgbuf_unref(bufs[i]); /* the queue holds the only reference */
    }
    assert_int_equal(f->q.npending, N);
    run_until_received(f, N * 8);
    assert_memory_equal(f->got, want, N * 8);
    run_until_drained(f);
    /* at most 1024 buffers per uv_write: 1024 + 1024 + 952 */
    assert_int_equal(f->q.writes, 3);
    assert_int_equal(outq_bytes(&f->q), 0);
    /* the last batch took what was left, array and all: an idle queue
     * holds no pending array */
    assert_null(f->q.pending);
    assert_int_equal(f->q.cappending, 0);
    free(bufs);
    free(want);

    /* a bigger burst: 5000 buffers, 5 writes, the array is given back */
    for (int i = 0; i < 5000; i++) {
        msgbuf *b = make_str("z");
        assert_int_equal(outq_push(&f->q, b), 0);
        msgbuf_unref(b);
    }
    run_until_received(f, N * 8 + 5000);
    run_until_drained(f);
    assert_int_equal(f->q.writes, 3 + 5);
    assert_null(f->q.pending);
    assert_int_equal(f->q.cappending, 0);
    /* and it still works after that */
    msgbuf *b = make_str("end");
    assert_int_equal(outq_push(&f->q, b), 0);
    msgbuf_unref(b);
    run_until_received(f, N * 8 + 5000 + 3);
    assert_memory_equal(f->got + N * 8 + 5000, "end", 3);
    run_until_drained(f);
}

static void test_two_queues_one_turn(void **state)
{
    fixture *f = *state;
    /* a second stream pair with its own queue, both dirty in one turn */
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    uv_pipe_t w2;
    assert_int_equal(uv_pipe_init(&f->loop, &w2, 0), 0);
    assert_int_equal(uv_pipe_open(&w2, fds[0]), 0);
    outq q2;
    struct outq_class cls2 = { .lim = outq_limits_simple(10000) };
    outq_init(&q2, (uv_stream_t *)&w2, &cls2, NULL, NULL);
    msgbuf *a = make_str("to-one");
    msgbuf *b = make_str("to-two");
    assert_int_equal(outq_push(&f->q, a), 0);
    assert_int_equal(outq_push(&q2, b), 0);
    assert_int_equal(outq_push(&q2, b), 0);
    run_until_received(f, 6);
    assert_memory_equal(f->got, "to-one", 6);
    run_until_drained(f);
    uint64_t start = uv_hrtime();
    while (q2.inflight > 0 && uv_hrtime() - start < 5000000000ull)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(q2.writes, 1);
    assert_int_equal(q2.inflight, 0);
    char got[32];
    assert_int_equal(read(fds[1], got, sizeof(got)), 12);
    assert_memory_equal(got, "to-twoto-two", 12);
    /* discarding a dirty queue takes it out of the flush list */
    assert_int_equal(outq_push(&q2, b), 0);
    outq_discard(&q2);
    assert_int_equal(outq_push(&q2, b), UV_EPIPE);
    assert_int_equal(outq_push_unbounded(&q2, b), UV_EPIPE);
    assert_int_equal(b->refs, 1);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the flush must not touch q2 */
    assert_int_equal(q2.writes, 1);
    uv_close((uv_handle_t *)&w2, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    close(fds[1]);
    msgbuf_unref(a);
    msgbuf_unref(b);
}

static void test_discard_with_write_in_flight(void **state)
{
    fixture *f = *state;
    uv_read_stop((uv_stream_t *)&f->r);
    reinit(f, outq_limits_simple(16u << 20));
    msgbuf *b = make_buf(4u << 20, 1);
    assert_int_equal(outq_push(&f->q, b), 0);
    outq_flush(&f->q);
    assert_int_equal(f->q.inflight, 1);
    msgbuf *p = make_buf(10, 2);
    assert_int_equal(outq_push(&f->q, p), 0);
    outq_discard(&f->q);
    assert_int_equal(p->refs, 1);          /* pending dropped now */
    assert_int_equal(b->refs, 2);          /* in flight keeps its reference */
    assert_int_equal(outq_push(&f->q, p), UV_EPIPE);
    /* closing the stream cancels the write; no error report for that */
    uv_close((uv_handle_t *)&f->w, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->q.inflight, 0);
    assert_int_equal(b->refs, 1);
    assert_int_equal(f->errors, 0);
    msgbuf_unref(b);
    msgbuf_unref(p);
}

static void test_write_error_reported(void **state)
{
    fixture *f = *state;
    /* the reading end goes away: the write fails with EPIPE */
    uv_close((uv_handle_t *)&f->r, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    msgbuf *b = make_str("into the void");
    assert_int_equal(outq_push(&f->q, b), 0);
    assert_int_equal(outq_push(&f->q, b), 0);
    /* Flushed by hand: with the reader closed nothing keeps the loop alive
     * (the flush check handle is unref'd), so uv_run would not turn. */
    outq_flush(&f->q);
    run_until_error(f);
    assert_int_equal(f->last_error, UV_EPIPE);
    run_until_drained(f);
    assert_int_equal(outq_bytes(&f->q), 0);
    assert_int_equal(b->refs, 1);
    msgbuf_unref(b);
}

/* A push made from a timer callback, with nothing else happening on the
 * loop: it must go out without waiting for another event. */
typedef struct {
    fixture *f;
    msgbuf *b;
    uint64_t pushed_at, got_at;
} timer_probe;

static void probe_push_cb(uv_timer_t *t)
{
    timer_probe *p = t->data;
    p->pushed_at = uv_hrtime();
    assert_int_equal(outq_push(&p->f->q, p->b), 0);
}

static void probe_check_cb(uv_timer_t *t)
{
    timer_probe *p = t->data;
    if (p->f->got_len > 0 && p->got_at == 0)
        p->got_at = uv_hrtime();
    if (p->got_at)
        uv_timer_stop(t);
}

static void test_push_from_timer_latency(void **state)
{
    fixture *f = *state;
    timer_probe p = { f, make_str("tick"), 0, 0 };
    uv_timer_t push, wake;
    uv_timer_init(&f->loop, &push);
    uv_timer_init(&f->loop, &wake);
    push.data = &p;
    wake.data = &p;
    uv_timer_start(&push, probe_push_cb, 0, 0);
    /* The only other event: a timer 10 s later. A push from a timer
     * callback must not sit in the queue while poll blocks until then
     * (outq keeps an idle handle active while data waits). */
    uv_timer_start(&wake, probe_check_cb, 10000, 0);
    uint64_t start = uv_hrtime();
    while (f->got_len < 4 && uv_hrtime() - start < 30000000000ull)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->got_len, 4);
    assert_int_equal(p.got_at, 0); /* the data came before the wake timer */
    uv_close((uv_handle_t *)&push, NULL);
    uv_close((uv_handle_t *)&wake, NULL);
    run_until_drained(f);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    msgbuf_unref(p.b);
}

/* What a queue is charged: each buffer's allocation, not its length (a
 * small frame sits in a 256-byte buffer), control frames included; the
 * charge goes when the write completes or the data is dropped. */
static void test_accounting_is_allocated_bytes(void **state)
{
    fixture *f = *state;
    outq_set_on_written(&f->q, noop_written); /* the request path */
    msgbuf *small = make_str("ab"), *big = make_buf(100000, 1);
    assert_true(outq_cost(small) >= small->cap + sizeof(msgbuf));
    assert_true(outq_cost(small) >= 256); /* far more than its 2 bytes */
    assert_true(outq_cost(big) >= 100000 + sizeof(msgbuf));
    assert_int_equal(outq_push(&f->q, small), 0);
    assert_int_equal(outq_push_unbounded(&f->q, small), 0); /* a "pong" */
    assert_int_equal(outq_push(&f->q, big), 0);
    assert_int_equal(f->q.mem, 2 * outq_cost(small) + outq_cost(big));
    assert_int_equal(outq_bytes(&f->q), 100004);
    assert_int_equal(f->q.pushed_total, 100004);
    outq_flush(&f->q); /* one batch of three: in flight, still charged */
    assert_int_equal(f->q.mem, 2 * outq_cost(small) + outq_cost(big));
    run_until_received(f, 100004);
    run_until_drained(f);
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(f->q.retired_total, 100004);
    /* dropped data is retired too */
    assert_int_equal(outq_push(&f->q, small), 0);
    outq_clear(&f->q);
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(f->q.retired_total, f->q.pushed_total);
    msgbuf_unref(small);
    msgbuf_unref(big);
}

/* A plain queue (no TLS, no seal, no on_written) offers each batch to the
 * socket at once: what it takes is written and released within the flush,
 * with no request in flight; a batch bigger than the socket takes goes
 * partly at once and the rest by request, in order, charged until done. */
static void test_direct_write(void **state)
{
    fixture *f = *state;
    msgbuf *a = make_str("hello "), *b = make_str("world");
    assert_int_equal(outq_push(&f->q, a), 0);
    assert_int_equal(outq_push(&f->q, b), 0);
    outq_flush(&f->q);
    assert_int_equal(f->q.writes, 1);
    assert_int_equal(f->q.inflight, 0);
    assert_int_equal(f->q.npending, 0);
    assert_null(f->q.pending);            /* an idle queue keeps no array */
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(f->q.retired_total, 11);
    run_until_received(f, 11);
    assert_memory_equal(f->got, "hello world", 11);

    /* 8 MiB: far more than a socketpair's buffer */
    size_t big_len = 8u << 20;
    msgbuf *big = make_buf(big_len, 7);
    assert_int_equal(outq_push(&f->q, big), 0);
    assert_int_equal(outq_push(&f->q, a), 0);
    outq_flush(&f->q);
    assert_int_equal(f->q.inflight, 1);   /* the rest of big, and a, by request */
    assert_true(f->q.mem >= outq_cost(big));
    run_until_received(f, 11 + big_len + 6);
    run_until_drained(f);
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(f->q.retired_total, 11 + big_len + 6);
    assert_got_big(f, 11, big);
    assert_memory_equal(f->got + 11 + big_len, "hello ", 6);
    msgbuf_unref(a);
    msgbuf_unref(b);
    msgbuf_unref(big);
}

/* outq_push_now: an idle queue's buffer goes to the socket before the call
 * returns (no array, not on the flush list); behind something pending it
 * is queued in order; a buffer bigger than the socket takes is written in
 * part and the rest (a copy) goes by request; a dead reader's error comes
 * from the flush, not from the call. */
static int hook_calls;
static void count_hook(void *ud)
{
    (void)ud;
    hook_calls++;
}

static void test_push_now(void **state)
{
    fixture *f = *state;
    msgbuf *a = make_str("hello "), *b = make_str("world");
    hook_calls = 0;
    outq_set_flushed_hook(count_hook, NULL);
    assert_int_equal(outq_push_now(&f->q, a), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the turn's end: the hook is due */
    outq_set_flushed_hook(NULL, NULL);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(f->q.npending, 0);
    assert_null(f->q.pending);
    assert_false(f->q.dirty);
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(f->q.pushed_total, 6);
    assert_int_equal(f->q.retired_total, 6);
    assert_int_equal(a->refs, 1);             /* the socket has the bytes: no reference kept */
    assert_int_equal(outq_push(&f->q, a), 0); /* pending: the next one queues behind it */
    assert_int_equal(outq_push_now(&f->q, b), 0);
    assert_int_equal(f->q.npending, 2);
    run_until_received(f, 17);
    assert_memory_equal(f->got, "hello hello world", 17);
    run_until_drained(f);

    size_t big_len = 8u << 20; /* far more than a socketpair's buffer */
    msgbuf *big = make_buf(big_len, 3);
    assert_int_equal(outq_push_now(&f->q, big), 0);
    assert_int_equal(f->q.npending, 1);       /* the rest, a copy */
    assert_true(f->q.pending[0] != big);
    assert_int_equal(big->refs, 1);
    assert_true(f->q.retired_total > 17);     /* some went at once */
    assert_int_equal(outq_push_now(&f->q, b), 0); /* behind the rest */
    run_until_received(f, 17 + big_len + 5);
    run_until_drained(f);
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(f->q.retired_total, 17 + big_len + 5);
    assert_got_big(f, 17, big);
    assert_memory_equal(f->got + 17 + big_len, "world", 5);

    uv_close((uv_handle_t *)&f->r, NULL);
    f->r_open = false;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(outq_push_now(&f->q, a), 0); /* EPIPE inside: queued */
    assert_int_equal(f->errors, 0);
    outq_flush(&f->q);
    run_until_error(f);
    assert_int_equal(f->last_error, UV_EPIPE);
    msgbuf_unref(a);
    msgbuf_unref(b);
    msgbuf_unref(big);
}

/* The soft bound: past it, a queue that made no write progress for the
 * deadline is a slow consumer; below it, never; progress restarts the
 * count. The hard bound applies at once, whatever the clock. */
static void test_soft_bound_and_deadline(void **state)
{
    fixture *f = *state;
    outq_set_clock(fake_clock);
    msgbuf *b = make_buf(50000, 4);
    size_t c = outq_cost(b);
    reinit(f, (struct outq_limits){ .hard = 10 * c, .soft = 2 * c, .deadline_ms = 1000 });
    uv_read_stop((uv_stream_t *)&f->r); /* the reader stalls */
    assert_int_equal(outq_stalled_ms(&f->q), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(outq_push(&f->q, b), 0);
    fake_now += 5000; /* long stalled, but at the soft bound, not past it */
    assert_int_equal(outq_stalled_ms(&f->q), 5000);
    assert_int_equal(outq_verdict(&f->q, 0), OUTQ_FINE);
    assert_int_equal(outq_verdict(&f->q, 1), OUTQ_STALLED);
    assert_int_equal(outq_push(&f->q, b), UV_ENOBUFS);

    /* progress (the reader reads again) restarts the deadline */
    assert_int_equal(uv_read_start((uv_stream_t *)&f->r, alloc_cb, read_cb), 0);
    run_until_received(f, 100000);
    run_until_drained(f);
    uv_read_stop((uv_stream_t *)&f->r);
    for (int i = 0; i < 5; i++) /* past soft: fine while the deadline runs */
        assert_int_equal(outq_push(&f->q, b), 0);
    fake_now += 999;
    assert_int_equal(outq_verdict(&f->q, 0), OUTQ_FINE);
    assert_int_equal(outq_push(&f->q, b), 0);
    fake_now += 1;
    assert_int_equal(outq_verdict(&f->q, 0), OUTQ_STALLED);
    assert_int_equal(outq_push(&f->q, b), UV_ENOBUFS);
    outq_clear(&f->q); /* nothing was in flight: all of it goes */
    assert_int_equal(f->q.mem, 0);
    assert_int_equal(outq_verdict(&f->q, 0), OUTQ_FINE);

    /* the hard bound, with a fresh clock */
    reinit(f, (struct outq_limits){ .hard = 3 * c, .soft = c, .deadline_ms = 1000 });
    for (int i = 0; i < 3; i++)
        assert_int_equal(outq_push(&f->q, b), 0);
    assert_int_equal(outq_verdict(&f->q, c), OUTQ_OVER_HARD);
    assert_int_equal(outq_push(&f->q, b), UV_ENOBUFS);
    assert_int_equal(b->refs, 4);
    outq_discard(&f->q);
    assert_int_equal(uv_read_start((uv_stream_t *)&f->r, alloc_cb, read_cb), 0);
    uv_close((uv_handle_t *)&f->w, NULL); /* cancels what is in flight */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    msgbuf_unref(b);
}

/* Congestion: a queue enters above high and leaves below low (between the
 * two it stays in); while in, it presses on senders only as long as it
 * makes progress (a stalled reader must not hold everyone back). */
static void test_congestion_marks(void **state)
{
    fixture *f = *state;
    outq_set_clock(fake_clock);
    msgbuf *big = make_buf(4u << 20, 7), *b = make_buf(10000, 5);
    size_t C = outq_cost(big), c = outq_cost(b);
    reinit(f, (struct outq_limits){ .hard = 2 * C, .soft = 2 * C,
                                    .high = C + 2 * c, .low = C / 2 });
    uv_read_stop((uv_stream_t *)&f->r);
    assert_int_equal(outq_push(&f->q, big), 0);
    outq_flush(&f->q); /* in flight, and stays: the reader reads nothing */
    for (int i = 0; i < 2; i++)
        assert_int_equal(outq_push(&f->q, b), 0);
    assert_int_equal(f->cls.ncongested, 0); /* at high, not above */
    assert_false(outq_class_pressing(&f->cls, 200));
    assert_int_equal(outq_push(&f->q, b), 0);
    assert_int_equal(f->cls.ncongested, 1);
    assert_ptr_equal(f->cls.congested, &f->q);
    assert_true(outq_class_pressing(&f->cls, 200));
    fake_now += 200; /* no progress for that long: a stalled reader */
    assert_false(outq_class_pressing(&f->cls, 200));
    assert_true(outq_class_pressing(&f->cls, 201));
    /* down to the write in flight: under high, over low, still in */
    outq_clear(&f->q);
    assert_int_equal(f->q.mem, C);
    assert_int_equal(f->cls.ncongested, 1);
    /* all written: out */
    assert_int_equal(uv_read_start((uv_stream_t *)&f->r, alloc_cb, read_cb), 0);
    run_until_received(f, 4u << 20);
    run_until_drained(f);
    assert_int_equal(f->cls.ncongested, 0);
    assert_null(f->cls.congested);
    /* discarding a congested queue takes it out of the list */
    uv_read_stop((uv_stream_t *)&f->r);
    assert_int_equal(outq_push(&f->q, big), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(outq_push(&f->q, b), 0);
    assert_int_equal(f->cls.ncongested, 1);
    outq_discard(&f->q);
    assert_int_equal(f->cls.ncongested, 0);
    assert_null(f->cls.congested);
    msgbuf_unref(big);
    msgbuf_unref(b);
}

/* One write in flight: what is pushed meanwhile stays pending, where a
 * slow consumer's data can be dropped so that its close frame goes right
 * after the write in flight. outq_flush_all hands everything over (before
 * a shutdown). */
static void test_one_write_in_flight_then_close_frame(void **state)
{
    fixture *f = *state;
    uv_read_stop((uv_stream_t *)&f->r);
    msgbuf *big = make_buf(2u << 20, 6);
    assert_int_equal(outq_push(&f->q, big), 0);
    outq_flush(&f->q);
    assert_int_equal(f->q.inflight, 1);
    msgbuf *data = make_str("DATA-NOBODY-WANTS");
    for (int i = 0; i < 10; i++)
        assert_int_equal(outq_push(&f->q, data), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the end-of-turn flush waits too */
    assert_int_equal(f->q.inflight, 1);
    assert_int_equal(f->q.npending, 10);
    outq_clear(&f->q);
    msgbuf *close = make_str("CLOSE");
    assert_int_equal(outq_push_unbounded(&f->q, close), 0);
    outq_flush_all(&f->q);
    assert_int_equal(f->q.inflight, 2);
    assert_int_equal(f->q.npending, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&f->r, alloc_cb, read_cb), 0);
    run_until_received(f, (2u << 20) + 5);
    assert_memory_equal(f->got, big->data, 2u << 20);
    assert_memory_equal(f->got + (2u << 20), "CLOSE", 5);
    run_until_drained(f);
    assert_int_equal(data->refs, 1);
    msgbuf_unref(big);
    msgbuf_unref(data);
    msgbuf_unref(close);
}

int main(void)
{
    /* a write to a closed socketpair must fail with EPIPE, not kill us */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_end_of_turn_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_written_drives_a_producer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_wraps_batches_pushed_after_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_counts_bytes_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear_drops_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_small_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_queues_one_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_with_write_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_from_timer_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounting_is_allocated_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_bound_and_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_congestion_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_write_in_flight_then_close_frame, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("outq", tests, NULL, NULL);
}
