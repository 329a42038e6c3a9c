/* bench: the fan-out benchmark's run: discovery, sockets, rounds (see
 * bench.h). Everything runs on one libuv loop in one thread. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "bench/bench.h"
#include "bench/scan.h"
#include "bench/tally.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/outq.h"
#include "common/tls.h"
#include "common/util.h"
#include "common/ws_conn.h"

#define MAX_ROUNDS 64
#define BURST 128          /* messages handed to the sockets per loop turn */
#define TEXT_MAX 70000

struct endpoint {
    char host[256];
    int port;
};

struct bench;

struct sock {
    struct bench *b;
    ws_conn *c;            /* NULL once closed */
    int sender;            /* 1: a sender (and receiver) on the target node */
    unsigned num;          /* sender 1..S, or node 1..N in discovery's order */
    struct endpoint *ep;
    long node_id;          /* from the frames' "source", -1 until seen */
    int done;              /* received all of the current round */
    struct tally t;
};

enum phase { PH_DISCOVER, PH_CONNECT, PH_ROUND, PH_FENCE, PH_STOPPING };

struct bench {
    const struct bench_config *cfg;
    uv_loop_t *loop;
    tls_ctx *tls;           /* --tls: every socket speaks wss:// */
    uint32_t token;
    enum phase phase;
    int status;
    char error[2048];

    struct endpoint *nodes;
    unsigned nnodes;
    struct endpoint target;

    struct sock *socks;    /* senders first, then one receiver per node */
    unsigned nsocks, opened, closed;

    uv_timer_t timer;      /* the current phase's deadline */
    uv_idle_t pump;        /* hands messages to the senders */
    int pumping;
    uv_timer_t drain;      /* while a sender's queue is full: checks it */
    int draining;

    unsigned rounds[MAX_ROUNDS], nrounds, ri;
    uint32_t window;       /* messages in flight at most, 0 = no limit */
    uint32_t n, sent, socks_done;
    uint64_t *t_sent;      /* per message: uv_hrtime() when handed over */
    uint64_t t_start, t_send_done, t_last;
    uint64_t cpu_start_us;  /* the bench's own CPU time at the round's start */
    uint64_t strays;       /* frames of an earlier round that came again */
    struct samples lat;
    char *frame;           /* scratch for one outgoing message */
};

static void finish(struct bench *b, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* User plus system CPU time of this process, in microseconds. */
static uint64_t cpu_time_us(void)
{
    uv_rusage_t ru;
    if (uv_getrusage(&ru) != 0)
        return 0;
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void sock_name(const struct sock *s, char *out, size_t cap)
{
    char node[32] = "node ?";
    if (s->node_id >= 0)
        snprintf(node, sizeof(node), "node %ld", s->node_id);
    if (s->sender)
        snprintf(out, cap, "sender %u (on %s at %s:%d)", s->num, node, s->ep->host,
                 s->ep->port);
    else
        snprintf(out, cap, "receiver on %s at %s:%d", node, s->ep->host, s->ep->port);
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
    if (b->pumping) {
        uv_idle_stop(&b->pump);
        b->pumping = 0;
    }
    if (b->draining) {
        uv_timer_stop(&b->drain);
        b->draining = 0;
    }
}

static void finish(struct bench *b, int status, const char *fmt, ...)
{
    if (b->phase == PH_STOPPING)
        return;
    b->phase = PH_STOPPING;
    b->status = status;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->error, sizeof(b->error), fmt, ap);
        va_end(ap);
    }
    stop_pump(b);
    uv_timer_stop(&b->timer);
    for (unsigned i = 0; i < b->nsocks; i++)
        if (b->socks[i].c != NULL)
            ws_conn_close(b->socks[i].c, 1000, "bench done");
    uv_close((uv_handle_t *)&b->timer, NULL);
    uv_close((uv_handle_t *)&b->pump, NULL);
    uv_close((uv_handle_t *)&b->drain, NULL);
}

/* ---- rounds ------------------------------------------------------------ */

static void timeout_cb(uv_timer_t *t);
static void pump_cb(uv_idle_t *h);

static uint32_t min_unique(const struct bench *b)
{
    uint32_t m = UINT32_MAX;
    for (unsigned i = 0; i < b->nsocks; i++)
        m = UTIL_MIN(m, b->socks[i].t.unique);
    return m;
}

/* The sender of the next message, when its queue is full. */
static const struct sock *next_sender_full(const struct bench *b)
{
    const struct sock *s = &b->socks[b->sent % b->cfg->senders];
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
    if (b->pumping || b->sent >= b->n || !window_open(b))
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
    b->t_sent = xrealloc(b->t_sent, (size_t)n * sizeof(*b->t_sent));
    samples_reset(&b->lat);
    for (unsigned i = 0; i < b->nsocks; i++) {
        tally_reset(&b->socks[i].t, n, b->cfg->senders);
        b->socks[i].done = 0;
    }
    b->cpu_start_us = cpu_time_us();
    b->t_start = uv_hrtime();
    b->t_send_done = b->t_last = b->t_start;
    uv_timer_start(&b->timer, timeout_cb, (uint64_t)b->cfg->timeout_s * 1000, 0);
    start_pump(b);
}

static void pump_cb(uv_idle_t *h)
{
    struct bench *b = h->data;
    const struct bench_config *cfg = b->cfg;
    uint32_t floor = min_unique(b);
    char text[TEXT_MAX];
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
        uint32_t i = b->sent;
        unsigned s = i % cfg->senders;
        struct scan_marker m = { b->token, b->phase == PH_FENCE ? 0 : b->n, i };
        int tl = scan_format_text(&m, cfg->size, text, sizeof(text));
        int fl = tl < 0 ? -1
                        : snprintf(b->frame, TEXT_MAX + 256,
                                   "{\"type\":\"newMessageFromClient\",\"payload\":"
                                   "{\"text\":\"%s\",\"sender\":\"bench-%u\",\"chatId\":%u}}",
                                   text, s + 1, cfg->chat_id);
        if (fl < 0 || fl >= TEXT_MAX + 256) {
            finish(b, BENCH_FAILED, "cannot build message %u: --size too large", i);
            return;
        }
        struct sock *so = &b->socks[s];
        b->t_sent[i] = uv_hrtime();
        int rc = ws_conn_send_text(so->c, b->frame, (size_t)fl);
        if (rc != 0) {
            char name[400];
            sock_name(so, name, sizeof(name));
            finish(b, BENCH_FAILED, "%s: cannot send message %u: %s", name, i, uv_strerror(rc));
            return;
        }
        b->sent++;
    }
    if (b->sent == b->n) {
        b->t_send_done = uv_hrtime();
        stop_pump(b);
    }
}

static void run_next(struct bench *b);

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
    struct report_row r = { .messages = b->n };
    r.expected = (uint64_t)b->n * b->nsocks;
    for (unsigned i = 0; i < b->nsocks; i++) {
        r.received += b->socks[i].t.unique;
        r.dups += b->socks[i].t.dups;
        r.reordered += b->socks[i].t.reordered;
    }
    r.dups += b->strays;
    r.lost = r.expected - r.received;
    r.total_s = (double)(b->t_last - b->t_start) / 1e9;
    r.send_s = (double)(b->t_send_done - b->t_start) / 1e9;
    r.rate = r.total_s > 0 ? (double)r.received / r.total_s : 0;
    r.cpu_pct = r.total_s > 0
                    ? (double)(cpu_time_us() - b->cpu_start_us) / 1e6 / r.total_s * 100.0
                    : 0;
    r.p50_ms = samples_quantile(&b->lat, 0.50) / 1000.0;
    r.p99_ms = samples_quantile(&b->lat, 0.99) / 1000.0;
    r.max_ms = samples_quantile(&b->lat, 1.0) / 1000.0;
    report_row(stdout, b->cfg->format, &r);

    if (r.dups || r.reordered) {
        char msg[sizeof(b->error)];
        size_t off = (size_t)snprintf(msg, sizeof(msg), "round of %u messages:", b->n);
        for (unsigned i = 0; i < b->nsocks && off < sizeof(msg); i++) {
            const struct sock *s = &b->socks[i];
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
        finish(b, BENCH_NO_CLUSTER, "only %u of %u WebSocket connections opened within %u s",
               b->opened, b->nsocks, b->cfg->timeout_s);
        return;
    }
    char msg[sizeof(b->error)];
    size_t off = (size_t)snprintf(msg, sizeof(msg),
                                  "round of %u messages not complete after %u s (%u sent):",
                                  b->n, b->cfg->timeout_s, b->sent);
    for (unsigned i = 0; i < b->nsocks && off < sizeof(msg); i++) {
        const struct sock *s = &b->socks[i];
        if (s->t.unique == b->n)
            continue;
        char name[400], missing[400];
        sock_name(s, name, sizeof(name));
        tally_describe_missing(&s->t, missing, sizeof(missing));
        off += (size_t)snprintf(msg + off, sizeof(msg) - off, "\n  %s: %s", name, missing);
    }
    finish(b, BENCH_FAILED, "%s", msg);
}

/* ---- sockets ----------------------------------------------------------- */

static void on_open(ws_conn *c, void *ud)
{
    struct sock *s = ud;
    struct bench *b = s->b;
    (void)c;
    if (++b->opened == b->nsocks && b->phase == PH_CONNECT) {
        uv_timer_stop(&b->timer);
        struct report_run run = { .senders = b->cfg->senders, .nodes = b->nnodes,
                                  .size = b->cfg->size, .window = b->window };
        char target[300];
        snprintf(target, sizeof(target), "%s:%d", b->target.host, b->target.port);
        run.target = target;
        report_begin(stdout, b->cfg->format, &run);
        run_next(b);
    }
}

static void on_text(ws_conn *c, const char *data, size_t len, void *ud)
{
    struct sock *s = ud;
    struct bench *b = s->b;
    struct scan_marker m;
    long source;
    (void)c;
    enum scan_result r = scan_frame(data, len, &m, &source);
    if (source >= 0)
        s->node_id = source;
    if (r == SCAN_NOT_MESSAGE) {
        if (len > 200)
            len = 200;
        char name[400];
        sock_name(s, name, sizeof(name));
        if (memmem(data, len, "\"type\":\"error\"", 14) != NULL)
            finish(b, BENCH_FAILED, "%s answered with an error: %.*s", name, (int)len, data);
        return;
    }
    if (r != SCAN_OK || m.token != b->token)
        return; /* someone else's traffic */
    if (b->phase != PH_ROUND && b->phase != PH_FENCE)
        return;
    uint32_t want = b->phase == PH_FENCE ? 0 : b->n;
    if (m.round != want) {
        b->strays++;
        return;
    }
    uint64_t now = uv_hrtime();
    if (tally_add(&s->t, m.index) == 1) {
        samples_add(&b->lat, (uint32_t)UTIL_MIN((now - b->t_sent[m.index]) / 1000, UINT32_MAX));
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

static void on_close(ws_conn *c, int code, void *ud)
{
    struct sock *s = ud;
    struct bench *b = s->b;
    (void)c;
    s->c = NULL;
    b->closed++;
    if (b->phase != PH_STOPPING) {
        char name[400];
        sock_name(s, name, sizeof(name));
        if (b->phase == PH_CONNECT)
            finish(b, BENCH_NO_CLUSTER, "%s: cannot open a WebSocket connection (code %d); "
                   "is the node running?", name, code);
        else
            finish(b, BENCH_FAILED, "%s: connection closed with code %d during the round of "
                   "%u messages%s", name, code, b->n,
                   code == 1008 ? " (the node found it too slow: lower --window, or raise "
                                  "the node's --max-queue)" : "");
    }
}

static const struct ws_conn_callbacks sock_cb = {
    .on_open = on_open, .on_text = on_text, .on_close = on_close,
};

static void connect_all(struct bench *b)
{
    const struct bench_config *cfg = b->cfg;
    b->nsocks = cfg->senders + b->nnodes;
    b->socks = xcalloc(b->nsocks, sizeof(*b->socks));
    struct ws_conn_config wc = {
        .max_message = 1 << 20,
        /* the pump keeps a sender's queue under BENCH_SEND_QUEUE plus one
         * message; a receiver only queues pongs */
        .max_queue = 4 * BENCH_SEND_QUEUE,
        .handshake_timeout_ms = cfg->timeout_s * 1000,
        .tls = b->tls,
    };
    b->phase = PH_CONNECT;
    uv_timer_start(&b->timer, timeout_cb, (uint64_t)cfg->timeout_s * 1000, 0);
    for (unsigned i = 0; i < b->nsocks; i++) {
        struct sock *s = &b->socks[i];
        s->b = b;
        s->node_id = -1;
        s->sender = i < cfg->senders;
        s->num = s->sender ? i + 1 : i - cfg->senders + 1;
        s->ep = s->sender ? &b->target : &b->nodes[i - cfg->senders];
        if (ws_conn_connect(b->loop, s->ep->host, s->ep->port, "/", &wc, &sock_cb, s,
                            &s->c) != 0) {
            s->c = NULL;
            finish(b, BENCH_NO_CLUSTER, "cannot connect to %s:%d: not an IP address",
                   s->ep->host, s->ep->port);
            return;
        }
    }
}

/* ---- discovery --------------------------------------------------------- */

static void clients_cb(int status, const char *body, size_t len, void *ud)
{
    struct bench *b = ud;
    if (status < 0) {
        finish(b, BENCH_NO_CLUSTER, "cannot ask discovery at %s: %s; start it, or pass "
               "--discovery", b->cfg->discovery, uv_strerror(status));
        return;
    }
    json_error_t jerr;
    json_t *doc = status == 200 ? json_loadb(body, len, 0, &jerr) : NULL;
    json_t *list = json_object_get(doc, "activeNodes");
    if (!json_is_array(list)) {
        json_decref(doc);
        finish(b, BENCH_NO_CLUSTER, "discovery at %s answered GET /api/clients with %d and "
               "no activeNodes list", b->cfg->discovery, status);
        return;
    }
    b->nodes = xcalloc(json_array_size(list) + 1, sizeof(*b->nodes));
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        const char *addr = json_string_value(json_object_get(e, "address"));
        json_int_t port = json_integer_value(json_object_get(e, "clientport"));
        if (addr == NULL || port <= 0 || port > 65535 || strlen(addr) >= sizeof(b->nodes->host))
            continue;
        strcpy(b->nodes[b->nnodes].host, addr);
        b->nodes[b->nnodes].port = (int)port;
        b->nnodes++;
    }
    json_decref(doc);
    if (b->nnodes < 2) {
        finish(b, BENCH_NO_CLUSTER, "discovery at %s lists %u active node%s; the bench needs "
               "at least 2 (start more nodes)", b->cfg->discovery, b->nnodes,
               b->nnodes == 1 ? "" : "s");
        return;
    }
    if (b->cfg->target[0] != '\0') {
        if (util_parse_hostport(b->cfg->target, "127.0.0.1", b->target.host,
                                sizeof(b->target.host), &b->target.port) != 0) {
            finish(b, BENCH_FAILED, "--target %s: expected ADDR:PORT", b->cfg->target);
            return;
        }
    } else {
        b->target = b->nodes[(unsigned)rand() % b->nnodes];
    }
    connect_all(b);
}

int bench_run(const struct bench_config *cfg)
{
    struct bench b = { .cfg = cfg, .phase = PH_DISCOVER };
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc != 0) {
        log_error("cannot create an event loop: %s", uv_strerror(rc));
        return BENCH_FAILED;
    }
    b.loop = &loop;
    b.token = (uint32_t)(util_now_ns() ^ ((uint64_t)getpid() << 16));
    b.frame = xmalloc(TEXT_MAX + 256);
    b.nrounds = bench_rounds(cfg->max, b.rounds, MAX_ROUNDS);
    b.window = cfg->window == BENCH_WINDOW_AUTO ? bench_auto_window(cfg->size) : cfg->window;
    uv_timer_init(&loop, &b.timer);
    b.timer.data = &b;
    if (cfg->tls) {
        char err[600];
        b.tls = tls_ctx_client(cfg->tls_ca[0] ? cfg->tls_ca : NULL, err, sizeof(err));
        if (b.tls == NULL) {
            log_error("%s", err);
            uv_close((uv_handle_t *)&b.timer, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_loop_close(&loop);
            free(b.frame);
            return BENCH_NO_CLUSTER;
        }
    }
    uv_timer_init(&loop, &b.drain);
    b.drain.data = &b;
    uv_idle_init(&loop, &b.pump);
    b.pump.data = &b;

    rc = http_client_request(&loop, cfg->discovery, "GET", "/api/clients", NULL,
                             cfg->timeout_s * 1000, clients_cb, &b, NULL);
    if (rc != 0) {
        log_error("--discovery %s: expected http://HOST:PORT", cfg->discovery);
        uv_close((uv_handle_t *)&b.timer, NULL);
        uv_close((uv_handle_t *)&b.pump, NULL);
        uv_close((uv_handle_t *)&b.drain, NULL);
        b.phase = PH_STOPPING;
        b.status = BENCH_NO_CLUSTER;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    outq_shutdown(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    report_end(stdout, cfg->format, b.status == BENCH_OK, b.error[0] ? b.error : NULL);
    if (b.status != BENCH_OK && b.error[0] != '\0')
        log_error("%s", b.error);

    rc = uv_loop_close(&loop);
    if (rc != 0)
        log_warn("event loop closed with handles open: %s", uv_strerror(rc));
    for (unsigned i = 0; i < b.nsocks; i++)
        tally_free(&b.socks[i].t);
    samples_free(&b.lat);
    free(b.socks);
    free(b.nodes);
    free(b.t_sent);
    free(b.frame);
    tls_ctx_free(b.tls);
    return b.status;
}
