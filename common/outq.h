/* outq: the one write path of a connection. Callers push references to
 * immutable msgbufs; queues that received data during a loop turn are
 * flushed at the end of the turn (a uv_check handle), each with one vectored
 * uv_write carrying many buffers, and at most one write in flight per queue:
 * what arrives meanwhile waits in the queue, where it can still be dropped,
 * and goes out as soon as that write completes.
 *
 * Memory is accounted as allocated (each buffer's capacity and header plus
 * the queue's own per-entry cost), control frames included. The limits of a
 * class of queues (struct outq_class: the node's clients, its peer links)
 * say when a queue is a slow consumer:
 *   - past `hard` bytes, at once;
 *   - past `soft` bytes with no write progress for `deadline_ms`;
 * and when it is congested, for back-pressure: above `high` until it falls
 * below `low`. Used by WebSocket connections and by the node's peer links. */
#ifndef DCHAT_OUTQ_H
#define DCHAT_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/msgbuf.h"
#include "common/tls.h"

typedef struct outq outq;

/* Called when a write fails (status is the UV_E* code), or with
 * UV_ETIMEDOUT when the class's sweep found the queue stalled past its
 * deadline (a slow consumer); the owner should close the stream. Not
 * called for UV_ECANCELED after the owner closed it. */
typedef void (*outq_error_fn)(outq *q, int status, void *ud);

/* Called after each write completes without error, once the queue has
 * handed on what waited behind it: the owner may push more (outq_bytes
 * says how much is still on its way). See outq_set_on_written. */
typedef void (*outq_written_fn)(outq *q, void *ud);

struct outq_limits {
    size_t hard;            /* accounted bytes never held past this */
    size_t soft;            /* past this, the deadline applies */
    uint64_t deadline_ms;   /* no write progress this long past soft: slow; 0 = none */
    size_t high, low;       /* congestion marks; high 0 = never congested */
};

/* Queues sharing limits, the list of those now congested, and the list of
 * those past the soft bound, which a timer looks at every quarter of the
 * deadline: a queue stalled past it is reported to its owner through
 * on_error with UV_ETIMEDOUT, so a reader that stopped is closed even when
 * nothing more is sent to it. The owner keeps the class alive as long as
 * any queue of it, and closes the timer with the loop's other handles. */
struct outq_class {
    struct outq_limits lim;
    size_t mem;             /* accounted bytes of all its queues (GET /metrics) */
    uint64_t slow_closes;   /* queues their owners closed as slow consumers */
    outq *congested;        /* doubly linked through cong_next/cong_prev */
    size_t ncongested;
    outq *oversoft;         /* doubly linked through soft_next/soft_prev */
    uv_timer_t sweep;
    bool sweeping;          /* sweep initialised (outq_class_init) */
};

/* Sets the class's limits and, when they have a deadline, its sweep timer
 * on loop. A class used without this has no sweep (its deadline is then
 * only checked when data is pushed). */
void outq_class_init(struct outq_class *cls, uv_loop_t *loop, struct outq_limits lim);

/* Why a queue is a slow consumer (outq_verdict). */
enum outq_verdict { OUTQ_FINE = 0, OUTQ_OVER_HARD, OUTQ_STALLED };

struct outq_batch;

/* A seal wraps each write batch in a record: a header written before the
 * batch's buffers and a trailer after them (peer links: a length and a
 * MAC, node/peer_auth.h). It is given the batch's buffers and their total
 * length, and fills head (at most OUTQ_SEAL_HEAD bytes) and tail (at most
 * OUTQ_SEAL_TAIL), setting their lengths. */
#define OUTQ_SEAL_HEAD 8
#define OUTQ_SEAL_TAIL 32
typedef void (*outq_seal_fn)(void *ud, const uv_buf_t *bufs, size_t n, size_t bytes,
                             uint8_t *head, size_t *head_len, uint8_t *tail,
                             size_t *tail_len);

struct outq {
    uv_stream_t *stream;
    outq_error_fn on_error;
    void *ud;
    struct outq_class *cls;
    msgbuf **pending;          /* pushed, not yet handed to uv_write; a
                                  write that takes all of it takes the
                                  array too, so an idle queue has none */
    size_t npending, cappending;
    size_t pending_bytes;      /* payload bytes pending */
    size_t inflight_bytes;     /* payload bytes handed to uv_write, not completed */
    size_t mem;                /* accounted bytes, pending and in flight */
    size_t cls_mem;            /* the part of mem counted in cls->mem */
    unsigned inflight;         /* writes not yet completed */
    uint64_t progress_ms;      /* last write completion, or when data began waiting */
    uint64_t pushed_total;     /* payload bytes ever pushed */
    uint64_t retired_total;    /* payload bytes ever written or dropped */
    struct outq *next_dirty;   /* in the loop's flush list */
    struct outq *cong_next, *cong_prev;
    struct outq *soft_next, *soft_prev;
    uint8_t dirty;
    uint8_t dead;              /* discarded: nothing more goes out */
    uint8_t congested;
    uint8_t oversoft;
    uint64_t writes;           /* uv_write calls made (for tests, stats) */
    outq_seal_fn seal;         /* see outq_set_seal */
    void *seal_ud;
    size_t unsealed;           /* pending entries at the front that go out bare */
    tls_conn *tls;             /* see outq_set_tls */
    outq_written_fn on_written; /* see outq_set_on_written */
};

/* Prepares q for stream with the limits of cls (which q points to, not
 * copies: a change to the class applies to its queues). */
void outq_init(outq *q, uv_stream_t *stream, struct outq_class *cls,
               outq_error_fn on_error, void *ud);

/* From now on, every batch of what is pushed after this call is sealed
 * (what is pending already goes out as it is, in batches of its own). */
void outq_set_seal(outq *q, outq_seal_fn seal, void *ud);

/* From now on every byte goes through t (not owned): each batch is
 * encrypted into one ciphertext buffer when it is written, which the queue
 * accounts for until the write completes; what t itself has to send (its
 * handshake) goes out too, and nothing pending goes before the handshake
 * is done. Call outq_poke after feeding t, so its answers are written. */
void outq_set_tls(outq *q, tls_conn *t);

/* From now on fn(q, q's ud) runs after every write that completes without
 * error (NULL: none): producers that fill the queue in steps (a peer link's
 * catch-up) go on as it drains, not on a timer. */
void outq_set_on_written(outq *q, outq_written_fn fn);

/* Schedules a flush at the end of the loop turn if anything can go out now
 * (after a TLS feed produced handshake bytes or completed the handshake). */
void outq_poke(outq *q);

/* Limits with one bound and no deadline or congestion marks, for callers
 * that only need "never more than max bytes" (the bench, tests). */
struct outq_limits outq_limits_simple(size_t max);

/* What a queue is charged for holding b. */
size_t outq_cost(const msgbuf *b);

/* Queues a reference to b (msgbuf_ref is done here). Returns 0; UV_ENOBUFS
 * when holding b too would make the queue a slow consumer (nothing queued;
 * outq_verdict(q, outq_cost(b)) says why); UV_EPIPE after outq_discard. */
int outq_push(outq *q, msgbuf *b);

/* Queues b whatever the limits: for the few bytes of a control frame (a
 * pong, a close frame to a consumer that is being cut off). Its bytes are
 * counted all the same. Returns 0 or UV_EPIPE. */
int outq_push_unbounded(outq *q, msgbuf *b);

/* outq_push, and when q was idle (nothing pending or in flight, no TLS,
 * seal or on_written) b is offered to the socket at once instead of at the
 * end of the turn: for a fan-out, where each queue gets one buffer per
 * turn, this spares the queue's array, the flush list and a second pass
 * over every queue. What the socket does not take is queued as by
 * outq_push (a partial write: a copy of the rest), errors included: the
 * flush reports them, never this call. Returns as outq_push. */
int outq_push_now(outq *q, msgbuf *b);

/* OUTQ_FINE, or why the queue would be a slow consumer holding extra more
 * bytes, at the clock's now. */
enum outq_verdict outq_verdict(const outq *q, size_t extra);

/* Drops what is pending (not what is in flight); q stays usable. */
void outq_clear(outq *q);

/* Hands what is pending to uv_write now, unless a write is in flight (the
 * rest goes when it completes). */
void outq_flush(outq *q);

/* Hands everything pending to uv_write now, in flight or not: before a
 * uv_shutdown, which only waits for writes libuv already has. */
void outq_flush_all(outq *q);

/* Drops everything pending and takes q out of the flush and congestion
 * lists; writes in flight keep their references until their callbacks run
 * (the stream's uv_close cancels them). Call before closing the stream. */
void outq_discard(outq *q);

/* Payload bytes pending plus in flight: what the peer has yet to receive. */
static inline size_t outq_bytes(const outq *q)
{
    return q->pending_bytes + q->inflight_bytes;
}

/* Milliseconds since q last made write progress (0 when empty). */
uint64_t outq_stalled_ms(const outq *q);

/* Whether a congested queue of cls made write progress in the last
 * within_ms: a reader that is slow but reading, which senders should wait
 * for. A congested queue with no progress is a stalled reader: waiting for
 * it would let one dead socket stop everyone; its deadline deals with it. */
bool outq_class_pressing(const struct outq_class *cls, uint64_t within_ms);

/* The clock every deadline is read from (util_now_ms by default); tests
 * inject their own. */
void outq_set_clock(uint64_t (*now_ms)(void));
uint64_t outq_now_ms(void);

/* Frees the per-loop flush handle (at exit, so leak checkers see nothing). */
void outq_shutdown(uv_loop_t *loop);

/* fn(ud) runs at the end of each loop turn that flushed queues or wrote
 * at once (outq_push_now), once what was pushed on that turn has been
 * handed to the sockets (written, or
 * queued in libuv behind earlier writes). One hook per process; fn NULL
 * removes it. For metrics (the relay's time-in-node histogram). */
void outq_set_flushed_hook(void (*fn)(void *ud), void *ud);

#endif
