/* bench: the fan-out benchmark's engine: sockets, rounds or one paced run,
 * checks (see bench.h). What depends on the system measured (finding the servers,
 * the messages on the wire) is behind a side (side.h). Everything runs on
 * one libuv loop in one thread. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "bench/bench.h"
#include "bench/pace.h"
#include "bench/progress.h"
#include "bench/scan.h"
#include "bench/side.h"
#include "bench/tally.h"
#include "common/log.h"
#include "common/outq.h"
#include "common/tls.h"
#include "common/util.h"
#include "common/ws_conn.h"

#define MAX_ROUNDS 64
#define BURST 128          /* messages handed to the sockets per loop turn */
#define PROBE_ROUND UINT32_MAX /* the marker's round of warm-up probes */
#define PROBE_MS 10        /* one probe this often while warming up */

struct bench_sock {
    struct bench *b;
    ws_conn *c;            /* NULL once closed */
    int sender;            /* 1: a sender (and receiver) on the target server */
    unsigned num;          /* sender 1..S, or server 1..N in the side's order */
    struct bench_server *ep;
    long node_id;          /* the server's own id, -1 until known */
    void *state;           /* the side's, side->sock_size bytes */
    int ready;             /* the side's handshake is done */
    int warm;              /* got a warm-up probe */
    int done;              /* received all of the current round */
    struct tally t;
};

enum phase { PH_DISCOVER, PH_CONNECT, PH_WARMUP, PH_ROUND, PH_FENCE, PH_STOPPING };

struct bench {
    const struct bench_config *cfg;
    const struct bench_side *side;
    void *side_ctx;
    uv_loop_t *loop;
    tls_ctx *tls;           /* --tls: every socket speaks wss:// */
    uint32_t token;
    enum phase phase;
    int status;
    char error[2048];

    struct bench_server *servers;
    unsigned nservers;
    struct bench_server target;

    struct bench_sock *socks; /* senders first, then one receiver per server */
    unsigned nsocks, opened, ready, warm, closed;
    uv_timer_t probe;      /* warm-up: sends sender 1's next probe */
    uint32_t probes;

    uv_timer_t timer;      /* the current phase's deadline */
    uv_idle_t pump;        /* hands messages to the senders */
    int pumping;
    uv_timer_t drain;      /* while a sender's queue is full: checks it */
    int draining;
    uv_timer_t tick;       /* the paced run: hands over what has come due */
    int ticking;

    struct pace pace;      /* --rate: the paced run's schedule; rate 0 = rounds */
    uint64_t late;         /* paced messages handed over more than BENCH_LATE_NS late */
    uint64_t late_max_ns;  /* the most any was */

    unsigned rounds[MAX_ROUNDS], nrounds, ri;
    uint32_t window;       /* messages in flight at most, 0 = no limit */
    uint32_t n, sent, socks_done;
    uint64_t *t_sent;      /* per message: uv_hrtime() when handed over (the
                              paced run computes due times instead) */
    uint64_t t_start, t_send_done, t_last;
    uint64_t cpu_start_us;  /* the bench's own CPU time at the round's start */
    uint64_t strays;       /* frames of an earlier round that came again */
    struct samples lat;

    struct progress progress; /* the line on a terminal's stderr */
    uv_timer_t progress_timer; /* redraws it, when it is on */
};

static void finish(struct bench *b, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void vfinish(struct bench *b, int status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* User plus system CPU time of this process, in microseconds. */
static uint64_t cpu_time_us(void)
{
    uv_rusage_t ru;
    if (uv_getrusage(&ru) != 0)
        return 0;
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void sock_name(const struct bench_sock *s, char *out, size_t cap)
{
    char node[40] = "";
    if (s->node_id >= 0)
        snprintf(node, sizeof(node), "on node %ld ", s->node_id);
    if (s->sender)
        snprintf(out, cap, "sender %u (%sat %s:%d)", s->num, node, s->ep->host, s->ep->port);
    else
        snprintf(out, cap, "receiver %sat %s:%d", node, s->ep->host, s->ep->port);
}

unsigned bench_auto_window(unsigned size)
{
    /* Every socket may have the whole window queued at the node: keep that
     * at 1 MiB, a quarter of the node's default --max-queue. A frame is the
     * text plus about 200 bytes of JSON and header. */
    unsigned w = (1u << 20) / (size + 200);
    return UTIL_MAX(1u, UTIL_MIN(w, 4000u));
}

unsigned bench_rounds(unsigned max, unsigned *out, unsigned cap)
{
    unsigned k = 0;
    unsigned long n = 10;
    while (n < max && k < cap) {
        out[k++] = (unsigned)n;
        n = n < 1000 ? n * 10 : n * 2;
    }
    if (k < cap && max > 0)
        out[k++] = max;
    return k;
}

/* ---- teardown ---------------------------------------------------------- */

static void stop_pump(struct bench *b)
{
    if (b->ticking) {
        uv_timer_stop(&b->tick);
        b->ticking = 0;
    }
    if (b->pumping) {
        uv_idle_stop(&b->pump);
        b->pumping = 0;
    }
    if (b->draining) {
        uv_timer_stop(&b->drain);
        b->draining = 0;
    }
}

static void vfinish(struct bench *b, int status, const char *fmt, va_list ap)
{
    if (b->phase == PH_STOPPING)
        return;
    b->phase = PH_STOPPING;
    b->status = status;
    if (fmt != NULL)
        vsnprintf(b->error, sizeof(b->error), fmt, ap);
    stop_pump(b);
    uv_timer_stop(&b->timer);
    uv_timer_stop(&b->probe);
    uv_timer_stop(&b->progress_timer);
    progress_clear(&b->progress); /* before the report's end and any error */
    for (unsigned i = 0; i < b->nsocks; i++)
        if (b->socks[i].c != NULL)
            ws_conn_close(b->socks[i].c, 1000, "bench done");
    uv_close((uv_handle_t *)&b->timer, NULL);
    uv_close((uv_handle_t *)&b->pump, NULL);
    uv_close((uv_handle_t *)&b->drain, NULL);
    uv_close((uv_handle_t *)&b->tick, NULL);
    uv_close((uv_handle_t *)&b->probe, NULL);
    uv_close((uv_handle_t *)&b->progress_timer, NULL);
}

static void finish(struct bench *b, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfinish(b, status, fmt, ap);
    va_end(ap);
}

/* ---- rounds ------------------------------------------------------------ */

static void timeout_cb(uv_timer_t *t);
static void pump_cb(uv_idle_t *h);
static void tick_cb(uv_timer_t *t);

/* Whether the current round is the paced run (its messages go out on the
 * tick, as they come due; the fence after it is sent as fast as any). */
static int pacing(const struct bench *b)
{
    return b->pace.rate > 0 && b->phase == PH_ROUND;
}

/* When message i was sent, for its latency: handed over (rounds) or due
 * (the paced run: so that a late generator shows as latency, instead of
 * hiding the wait it caused, the "coordinated omission" of closed loops). */
static uint64_t sent_at(const struct bench *b, uint32_t i)
{
    return pacing(b) ? b->t_start + pace_time_ns(&b->pace, i) : b->t_sent[i];
}

static uint32_t min_unique(const struct bench *b)
{
    uint32_t m = UINT32_MAX;
    for (unsigned i = 0; i < b->nsocks; i++)
        m = UTIL_MIN(m, b->socks[i].t.unique);
    return m;
}

/* The sender of the next message, when its queue is full. */
static const struct bench_sock *next_sender_full(const struct bench *b)
{
    const struct bench_sock *s = &b->socks[b->sent % b->cfg->senders];
    return s->c != NULL && ws_conn_queued_mem(s->c) >= BENCH_SEND_QUEUE ? s : NULL;
}

static int window_open(const struct bench *b)
{
    return b->window == 0 || b->sent - min_unique(b) < b->window;
}

static void drain_cb(uv_timer_t *t);

/* Hands messages to the senders again when the window and the next
 * sender's queue allow it. Deliveries call it (they open the window and
 * show that the node reads); while the queue is what holds it back, a
 * timer looks every millisecond too, since the queue may empty after the
 * last delivery. */
static void start_pump(struct bench *b)
{
    if (pacing(b) || b->pumping || b->sent >= b->n || !window_open(b))
        return;
    if (next_sender_full(b)) {
        if (!b->draining) {
            b->draining = 1;
            uv_timer_start(&b->drain, drain_cb, 1, 1);
        }
        return;
    }
    if (b->draining) {
        uv_timer_stop(&b->drain);
        b->draining = 0;
    }
    b->pumping = 1;
    uv_idle_start(&b->pump, pump_cb);
}

static void drain_cb(uv_timer_t *t)
{
    start_pump(t->data);
}

static void start_round(struct bench *b, uint32_t n, enum phase ph)
{
    b->phase = ph;
    b->n = n;
    b->sent = 0;
    b->socks_done = 0;
    b->strays = 0;
    if (!pacing(b))
        b->t_sent = xrealloc(b->t_sent, (size_t)n * sizeof(*b->t_sent));
    samples_reset(&b->lat);
    b->late = b->late_max_ns = 0;
    for (unsigned i = 0; i < b->nsocks; i++) {
        tally_reset(&b->socks[i].t, n, b->cfg->senders);
        b->socks[i].done = 0;
    }
    b->cpu_start_us = cpu_time_us();
    b->t_start = uv_hrtime();
    b->t_send_done = b->t_last = b->t_start;
    if (pacing(b)) {
        /* the last message is due after duration_s; then the timeout */
        uv_timer_start(&b->timer, timeout_cb,
                       ((uint64_t)b->cfg->duration_s + b->cfg->timeout_s) * 1000, 0);
        b->ticking = 1;
        uv_timer_start(&b->tick, tick_cb, 0, BENCH_TICK_MS);
        return;
    }
    uv_timer_start(&b->timer, timeout_cb, (uint64_t)b->cfg->timeout_s * 1000, 0);
    start_pump(b);
}

/* Hands message i over to its sender. Returns 0, or -1 when the run is
 * over (the side failed it, or the send did). */
static int send_one(struct bench *b, uint32_t i)
{
    struct bench_sock *so = &b->socks[i % b->cfg->senders];
    struct scan_marker m = { b->token, b->phase == PH_FENCE ? 0 : b->n, i };
    int rc = b->side->send(so, &m);
    if (b->phase == PH_STOPPING)
        return -1; /* the side failed the run */
    if (rc != 0) {
        char name[400];
        sock_name(so, name, sizeof(name));
        finish(b, BENCH_FAILED, "%s: cannot send message %u: %s", name, i, uv_strerror(rc));
        return -1;
    }
    b->sent++;
    return 0;
}

/* The paced run's timer: hands over every message that has come due, in
 * order, whatever has been delivered (open loop). When the next one's
 * sender has BENCH_SEND_QUEUE waiting, it and those after it wait for a
 * later tick and count as late if they miss their time by more than
 * BENCH_LATE_NS: the generator falls behind, visibly, and the bench's
 * memory stays bounded. */
static void tick_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    uint64_t now = uv_hrtime();
    uint64_t due = pace_due(&b->pace, now - b->t_start);
    while (b->sent < due) {
        if (next_sender_full(b))
            return;
        uint64_t behind = now - (b->t_start + pace_time_ns(&b->pace, b->sent));
        if (behind > BENCH_LATE_NS)
            b->late++;
        b->late_max_ns = UTIL_MAX(b->late_max_ns, behind);
        if (send_one(b, b->sent) != 0)
            return;
    }
    if (b->sent == b->n) {
        b->t_send_done = now;
        stop_pump(b);
    }
}

static void pump_cb(uv_idle_t *h)
{
    struct bench *b = h->data;
    uint32_t floor = min_unique(b);
    for (unsigned k = 0; k < BURST && b->sent < b->n; k++) {
        if (b->window > 0 && b->sent - floor >= b->window) {
            stop_pump(b); /* on_text restarts it as deliveries come in */
            return;
        }
        if (next_sender_full(b)) {
            /* TCP sets the pace: nothing more is generated until the
             * kernel has taken some of what waits */
            stop_pump(b);
            start_pump(b); /* which waits for the queue */
            return;
        }
        b->t_sent[b->sent] = uv_hrtime();
        if (send_one(b, b->sent) != 0)
            return;
    }
    if (b->sent == b->n) {
        b->t_send_done = uv_hrtime();
        stop_pump(b);
    }
}

static void run_next(struct bench *b);

/* The paced run's row; a generator that fell behind is also said on
 * stderr, since then the rate asked for was not the rate offered. */
static void report_paced_run(struct bench *b, uint64_t expected, uint64_t received,
                             uint64_t dups, uint64_t reordered, double total_s, double cpu_pct)
{
    struct report_paced r = {
        .offered_msgs = b->pace.rate,
        .offered_deliveries = (double)b->pace.rate * b->nsocks,
        /* over the run's duration at least: the last message is due 1/rate
         * before its end, which would flatter a short run */
        .achieved = (double)received / UTIL_MAX(total_s, (double)b->cfg->duration_s),
        .messages = b->n, .expected = expected, .received = received, .total_s = total_s,
        .p50_ms = samples_quantile(&b->lat, 0.50) / 1000.0,
        .p90_ms = samples_quantile(&b->lat, 0.90) / 1000.0,
        .p99_ms = samples_quantile(&b->lat, 0.99) / 1000.0,
        .p999_ms = samples_quantile(&b->lat, 0.999) / 1000.0,
        .max_ms = samples_quantile(&b->lat, 1.0) / 1000.0,
        .lost = expected - received, .dups = dups, .reordered = reordered,
        .late = b->late, .late_bound_ms = BENCH_LATE_NS / 1e6,
        .late_max_ms = (double)b->late_max_ns / 1e6,
        .samples = b->lat.len, .sampled_from = b->lat.count, .cpu_pct = cpu_pct,
    };
    progress_clear(&b->progress);
    report_paced(stdout, b->cfg->format, &r);
    if (b->late > 0)
        log_warn("the generator fell behind: %" PRIu64 " of %u messages were handed over more "
                 "than %.0f ms after their due time (at most %.1f ms), so less than %u msgs/s "
                 "was offered at times; their latency counts from the due time. Lower --rate, "
                 "or give the bench a core of its own", b->late, b->n, BENCH_LATE_NS / 1e6,
                 r.late_max_ms, b->pace.rate);
}

static void end_round(struct bench *b)
{
    uv_timer_stop(&b->timer);
    if (b->phase == PH_FENCE) {
        if (b->strays > 0)
            finish(b, BENCH_FAILED,
                   "%" PRIu64 " deliveries of messages of finished rounds came again", b->strays);
        else
            finish(b, BENCH_OK, NULL);
        return;
    }
    uint64_t expected = (uint64_t)b->n * b->nsocks, received = 0, dups = b->strays;
    uint64_t reordered = 0;
    for (unsigned i = 0; i < b->nsocks; i++) {
        received += b->socks[i].t.unique;
        dups += b->socks[i].t.dups;
        reordered += b->socks[i].t.reordered;
    }
    double total_s = (double)(b->t_last - b->t_start) / 1e9;
    double cpu_pct = total_s > 0
                         ? (double)(cpu_time_us() - b->cpu_start_us) / 1e6 / total_s * 100.0
                         : 0;
    if (pacing(b))
        report_paced_run(b, expected, received, dups, reordered, total_s, cpu_pct);
    else {
        struct report_row r = {
            .messages = b->n, .expected = expected, .received = received,
            .total_s = total_s, .send_s = (double)(b->t_send_done - b->t_start) / 1e9,
            .rate = total_s > 0 ? (double)received / total_s : 0,
            .p50_ms = samples_quantile(&b->lat, 0.50) / 1000.0,
            .p99_ms = samples_quantile(&b->lat, 0.99) / 1000.0,
            .max_ms = samples_quantile(&b->lat, 1.0) / 1000.0,
            .lost = expected - received, .dups = dups, .reordered = reordered,
            .cpu_pct = cpu_pct,
        };
        progress_clear(&b->progress);
        report_row(stdout, b->cfg->format, &r);
    }

    if (dups || reordered) {
        char msg[sizeof(b->error)];
        size_t off = (size_t)snprintf(msg, sizeof(msg), "round of %u messages:", b->n);
        for (unsigned i = 0; i < b->nsocks && off < sizeof(msg); i++) {
            const struct bench_sock *s = &b->socks[i];
            if (!s->t.dups && !s->t.reordered)
                continue;
            char name[400];
            sock_name(s, name, sizeof(name));
            off += (size_t)snprintf(msg + off, sizeof(msg) - off,
                                    " %s got %u duplicated and %u reordered deliveries;",
                                    name, s->t.dups, s->t.reordered);
        }
        if (b->strays && off < sizeof(msg))
            snprintf(msg + off, sizeof(msg) - off,
                     " %" PRIu64 " deliveries of an earlier round came again;", b->strays);
        finish(b, BENCH_FAILED, "%s", msg);
        return;
    }
    run_next(b);
}

static void run_next(struct bench *b)
{
    if (b->ri < b->nrounds)
        start_round(b, b->rounds[b->ri++], PH_ROUND);
    else
        /* One message per sender after everything: once every socket has
         * it, whatever was going to arrive twice has arrived. */
        start_round(b, b->cfg->senders, PH_FENCE);
}

static void timeout_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    if (b->phase == PH_CONNECT) {
        if (b->opened < b->nsocks)
            finish(b, BENCH_NO_CLUSTER, "only %u of %u WebSocket connections opened within "
                   "%u s; are the servers running?", b->opened, b->nsocks, b->cfg->timeout_s);
        else
            finish(b, BENCH_NO_CLUSTER, "only %u of %u %s connections were ready within %u s "
                   "(the protocol's handshake did not finish); are these %s servers?",
                   b->ready, b->nsocks, b->side->name, b->cfg->timeout_s, b->side->name);
        return;
    }
    if (b->phase == PH_WARMUP) {
        char msg[sizeof(b->error)];
        size_t off = (size_t)snprintf(msg, sizeof(msg), "sender 1's probes did not reach every "
                                      "socket within %u s; are the servers linked to each "
                                      "other (cluster routes)? No probe reached:",
                                      b->cfg->timeout_s);
        for (unsigned i = 0; i < b->nsocks && off < sizeof(msg); i++) {
            if (b->socks[i].warm)
                continue;
            char name[400];
            sock_name(&b->socks[i], name, sizeof(name));
            off += (size_t)snprintf(msg + off, sizeof(msg) - off, " %s;", name);
        }
        finish(b, BENCH_FAILED, "%s", msg);
        return;
    }
    char msg[sizeof(b->error)];
    size_t off = pacing(b)
                     ? (size_t)snprintf(msg, sizeof(msg),
                                        "paced run of %u messages not complete %u s after the "
                                        "last was due (%u sent):", b->n, b->cfg->timeout_s,
                                        b->sent)
                     : (size_t)snprintf(msg, sizeof(msg),
                                        "round of %u messages not complete after %u s (%u sent):",
                                        b->n, b->cfg->timeout_s, b->sent);
    for (unsigned i = 0; i < b->nsocks && off < sizeof(msg); i++) {
        const struct bench_sock *s = &b->socks[i];
        if (s->t.unique == b->n)
            continue;
        char name[400], missing[400];
        sock_name(s, name, sizeof(name));
        tally_describe_missing(&s->t, missing, sizeof(missing));
        off += (size_t)snprintf(msg + off, sizeof(msg) - off, "\n  %s: %s", name, missing);
    }
    finish(b, BENCH_FAILED, "%s", msg);
}

/* ---- warm-up ----------------------------------------------------------- */

static void begin_rounds(struct bench *b)
{
    struct report_run run = { .proto = b->side->name, .senders = b->cfg->senders,
                              .nodes = b->nsocks - b->cfg->senders, .size = b->cfg->size,
                              .window = b->window, .rate = b->pace.rate,
                              .duration_s = b->cfg->duration_s };
    char target[300];
    snprintf(target, sizeof(target), "%s:%d", b->target.host, b->target.port);
    run.target = target;
    progress_clear(&b->progress);
    report_begin(stdout, b->cfg->format, &run);
    run_next(b);
}

static void probe_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    struct scan_marker m = { b->token, PROBE_ROUND, b->probes++ };
    int rc = b->side->send(&b->socks[0], &m);
    if (rc != 0 && b->phase == PH_WARMUP)
        finish(b, BENCH_FAILED, "sender 1: cannot send a warm-up probe: %s", uv_strerror(rc));
}

/* Every socket is ready. Where a side asks for it, sender 1 sends a probe
 * every PROBE_MS until every socket has received one: then every server's
 * subscriptions have reached the senders' server, and round one loses
 * nothing to a subscription still on its way. Late probes are ignored. */
static void all_ready(struct bench *b)
{
    uv_timer_stop(&b->timer);
    if (!b->side->warm_up) {
        begin_rounds(b);
        return;
    }
    b->phase = PH_WARMUP;
    uv_timer_start(&b->timer, timeout_cb, (uint64_t)b->cfg->timeout_s * 1000, 0);
    uv_timer_start(&b->probe, probe_cb, 0, PROBE_MS);
}

/* ---- the progress line -------------------------------------------------- */

/* Every PROGRESS_INTERVAL_MS while the display is on: what the bench is
 * doing now, from the counters the checks keep anyway. */
static void progress_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    struct progress_view v = { .sockets = b->nsocks };
    switch (b->phase) {
    case PH_DISCOVER:
        v.stage = PROGRESS_DISCOVER;
        break;
    case PH_CONNECT:
        v.stage = PROGRESS_CONNECT;
        v.ready = b->ready;
        break;
    case PH_WARMUP:
        v.stage = PROGRESS_WARMUP;
        v.ready = b->warm;
        break;
    case PH_ROUND:
        v.stage = pacing(b) ? PROGRESS_PACED : PROGRESS_ROUND;
        v.round = b->ri;
        v.rounds = b->nrounds;
        v.messages = b->n;
        v.sent = b->sent;
        v.expected = (uint64_t)b->n * b->nsocks;
        for (unsigned i = 0; i < b->nsocks; i++)
            v.delivered += b->socks[i].t.unique;
        v.elapsed_s = (double)(uv_hrtime() - b->t_start) / 1e9;
        v.duration_s = b->cfg->duration_s;
        break;
    case PH_FENCE:
        v.stage = PROGRESS_FENCE;
        break;
    case PH_STOPPING:
        return;
    }
    progress_draw(&b->progress, &v);
}

/* ---- what the sides call -------------------------------------------------- */

const struct bench_config *bench_config(const bench *b) { return b->cfg; }
uv_loop_t *bench_loop(const bench *b) { return b->loop; }
void *bench_side_ctx(const bench *b) { return b->side_ctx; }
uint32_t bench_token(const bench *b) { return b->token; }
bench *bench_sock_bench(const bench_sock *s) { return s->b; }
ws_conn *bench_sock_conn(const bench_sock *s) { return s->c; }
void *bench_sock_state(const bench_sock *s) { return s->state; }
unsigned bench_sock_sender(const bench_sock *s) { return s->sender ? s->num : 0; }
void bench_sock_name(const bench_sock *s, char *out, size_t cap) { sock_name(s, out, cap); }
void bench_sock_set_server_id(bench_sock *s, long id) { s->node_id = id; }

void bench_fail(bench *b, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfinish(b, status, fmt, ap);
    va_end(ap);
}

void bench_sock_ready(bench_sock *s)
{
    struct bench *b = s->b;
    if (s->ready || b->phase != PH_CONNECT)
        return;
    s->ready = 1;
    if (++b->ready == b->nsocks)
        all_ready(b);
}

void bench_sock_deliver(bench_sock *s, const struct scan_marker *m)
{
    struct bench *b = s->b;
    if (m->token != b->token)
        return; /* someone else's traffic */
    if (m->round == PROBE_ROUND) {
        if (b->phase == PH_WARMUP && !s->warm) {
            s->warm = 1;
            if (++b->warm == b->nsocks) {
                uv_timer_stop(&b->probe);
                uv_timer_stop(&b->timer);
                begin_rounds(b);
            }
        }
        return;
    }
    if (b->phase != PH_ROUND && b->phase != PH_FENCE)
        return;
    uint32_t want = b->phase == PH_FENCE ? 0 : b->n;
    if (m->round != want) {
        b->strays++;
        return;
    }
    /* The time of the read that brought it (all of one read's frames
     * arrived together; uv_hrtime's clock, CLOCK_MONOTONIC), not a clock
     * read per delivery (25 ns each on this machine's VM). */
    uint64_t now = ws_conn_read_ns(s->c);
    if (tally_add(&s->t, m->index) == 1) {
        uint64_t at = sent_at(b, m->index);
        samples_add(&b->lat, (uint32_t)UTIL_MIN((now > at ? now - at : 0) / 1000, UINT32_MAX));
        b->t_last = now;
        if (s->t.unique == b->n && !s->done) {
            s->done = 1;
            if (++b->socks_done == b->nsocks) {
                end_round(b);
                return;
            }
        }
    }
    start_pump(b);
}

/* ---- sockets ----------------------------------------------------------- */

static void on_open(ws_conn *c, void *ud)
{
    struct bench_sock *s = ud;
    struct bench *b = s->b;
    (void)c;
    b->opened++;
    if (b->phase == PH_CONNECT)
        b->side->open(s);
}

static void on_text(ws_conn *c, const char *data, size_t len, void *ud)
{
    struct bench_sock *s = ud;
    (void)c;
    if (s->b->phase != PH_STOPPING)
        s->b->side->receive(s, (const uint8_t *)data, len, false);
}

static void on_binary(ws_conn *c, const uint8_t *data, size_t len, void *ud)
{
    struct bench_sock *s = ud;
    (void)c;
    if (s->b->phase != PH_STOPPING)
        s->b->side->receive(s, data, len, true);
}

static void on_close(ws_conn *c, int code, void *ud)
{
    struct bench_sock *s = ud;
    struct bench *b = s->b;
    (void)c;
    s->c = NULL;
    b->closed++;
    if (b->side->close != NULL)
        b->side->close(s);
    if (b->phase != PH_STOPPING) {
        char name[400];
        sock_name(s, name, sizeof(name));
        if (b->phase == PH_CONNECT)
            finish(b, BENCH_NO_CLUSTER, "%s: cannot open a WebSocket connection (code %d); "
                   "is the server running?", name, code);
        else
            finish(b, BENCH_FAILED, "%s: connection closed with code %d during the round of "
                   "%u messages%s", name, code, b->n,
                   code == 1008 ? " (the server found it too slow: lower --window, or raise "
                                  "the server's limit, --max-queue on a dchat node)" : "");
    }
}

static const struct ws_conn_callbacks sock_cb = {
    .on_open = on_open, .on_text = on_text, .on_binary = on_binary, .on_close = on_close,
};

void bench_servers_found(bench *b, const struct bench_server *servers, unsigned n)
{
    const struct bench_config *cfg = b->cfg;
    if (b->phase != PH_DISCOVER)
        return;
    b->servers = xcalloc(n, sizeof(*b->servers));
    memcpy(b->servers, servers, n * sizeof(*servers));
    b->nservers = n;
    if (cfg->target[0] != '\0') {
        b->target = servers[0]; /* for the path */
        if (util_parse_hostport(cfg->target, "127.0.0.1", b->target.host,
                                sizeof(b->target.host), &b->target.port) != 0) {
            finish(b, BENCH_FAILED, "--target %s: expected ADDR:PORT", cfg->target);
            return;
        }
    } else {
        b->target = servers[(unsigned)rand() % n];
    }

    b->nsocks = cfg->senders + n;
    b->socks = xcalloc(b->nsocks, sizeof(*b->socks));
    struct ws_conn_config wc = {
        .max_message = b->side->max_message,
        /* the pump keeps a sender's queue under BENCH_SEND_QUEUE plus one
         * message; a receiver only queues pongs */
        .max_queue = 4 * BENCH_SEND_QUEUE,
        .handshake_timeout_ms = cfg->timeout_s * 1000,
        .tls = b->tls,
    };
    b->phase = PH_CONNECT;
    uv_timer_start(&b->timer, timeout_cb, (uint64_t)cfg->timeout_s * 1000, 0);
    for (unsigned i = 0; i < b->nsocks; i++) {
        struct bench_sock *s = &b->socks[i];
        s->b = b;
        s->node_id = -1;
        s->sender = i < cfg->senders;
        s->num = s->sender ? i + 1 : i - cfg->senders + 1;
        s->ep = s->sender ? &b->target : &b->servers[i - cfg->senders];
        s->state = b->side->sock_size ? xcalloc(1, b->side->sock_size) : NULL;
    }
    for (unsigned i = 0; i < b->nsocks; i++) {
        struct bench_sock *s = &b->socks[i];
        if (ws_conn_connect(b->loop, s->ep->host, s->ep->port, s->ep->path, &wc, &sock_cb, s,
                            &s->c) != 0) {
            s->c = NULL;
            finish(b, BENCH_NO_CLUSTER, "cannot connect to %s:%d: not an IP address",
                   s->ep->host, s->ep->port);
            return;
        }
    }
}

int bench_run(const struct bench_config *cfg)
{
    struct bench b = { .cfg = cfg, .phase = PH_DISCOVER };
    b.side = cfg->proto == BENCH_PROTO_NATS ? &bench_nats_side : &bench_dchat_side;
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc != 0) {
        log_error("cannot create an event loop: %s", uv_strerror(rc));
        return BENCH_FAILED;
    }
    b.loop = &loop;
    b.token = (uint32_t)(util_now_ns() ^ ((uint64_t)getpid() << 16));
    if (cfg->rate > 0) {
        /* one "round": the paced run (bench_main checked it fits) */
        b.pace = (struct pace){ cfg->rate, cfg->senders, (uint64_t)cfg->rate * cfg->duration_s };
        b.rounds[0] = (unsigned)b.pace.total;
        b.nrounds = 1;
    } else {
        b.nrounds = bench_rounds(cfg->max, b.rounds, MAX_ROUNDS);
    }
    b.window = cfg->window == BENCH_WINDOW_AUTO ? bench_auto_window(cfg->size) : cfg->window;
    if (cfg->tls) {
        char err[600];
        b.tls = tls_ctx_client(cfg->tls_ca[0] ? cfg->tls_ca : NULL, err, sizeof(err));
        if (b.tls == NULL) {
            log_error("%s", err);
            uv_loop_close(&loop);
            return BENCH_NO_CLUSTER;
        }
    }
    b.side_ctx = b.side->ctx_size ? xcalloc(1, b.side->ctx_size) : NULL;
    uv_timer_init(&loop, &b.timer);
    b.timer.data = &b;
    uv_timer_init(&loop, &b.drain);
    b.drain.data = &b;
    uv_timer_init(&loop, &b.tick);
    b.tick.data = &b;
    uv_timer_init(&loop, &b.probe);
    b.probe.data = &b;
    uv_idle_init(&loop, &b.pump);
    b.pump.data = &b;
    uv_timer_init(&loop, &b.progress_timer);
    b.progress_timer.data = &b;
    progress_init(&b.progress, STDERR_FILENO, cfg->progress);
    if (b.progress.on)
        uv_timer_start(&b.progress_timer, progress_cb, 0, PROGRESS_INTERVAL_MS);

    b.side->find_servers(&b);
    uv_run(&loop, UV_RUN_DEFAULT);
    outq_shutdown(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    report_end(stdout, cfg->format, b.status == BENCH_OK, b.error[0] ? b.error : NULL);
    if (b.status != BENCH_OK && b.error[0] != '\0')
        log_error("%s", b.error);

    rc = uv_loop_close(&loop);
    if (rc != 0)
        log_warn("event loop closed with handles open: %s", uv_strerror(rc));
    if (b.side->finish != NULL)
        b.side->finish(&b);
    for (unsigned i = 0; i < b.nsocks; i++) {
        tally_free(&b.socks[i].t);
        free(b.socks[i].state);
    }
    samples_free(&b.lat);
    free(b.socks);
    free(b.servers);
    free(b.t_sent);
    free(b.side_ctx);
    tls_ctx_free(b.tls);
    return b.status;
}
