/* load: the bench's load mode (see load.h). The run, in phases:
 *   DISCOVER  GET /api/clients, lay the clients out over the nodes, rooms
 *             and senders, poll every node's /metrics once for a baseline;
 *   RUN       a 1 ms tick starts connections (at the ramp, at most
 *             LOAD_HANDSHAKES in flight), reconnects dropped clients after
 *             a backoff, and hands every sender's due messages over; a row
 *             every interval;
 *   DRAIN     sending has stopped: rows go on until every joined client has
 *             received all it is owed (ledger_owed) or --timeout passes;
 *   STOPPING  the summary and the verdict are written; connections close.
 * A client is "joined" once its handshake is done and, with rooms, its
 * subscribe answered: from then on the ledger holds it to every message of
 * its room. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "bench/bench.h"
#include "bench/dchat.h"
#include "bench/latency_hist.h"
#include "bench/ledger.h"
#include "bench/load.h"
#include "bench/load_report.h"
#include "bench/scan.h"
#include "bench/timeheap.h"
#include "common/fdlimit.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/outq.h"
#include "common/tls.h"
#include "common/util.h"
#include "common/ws_conn.h"

#define TICK_MS 1
#define SEND_BURST 4096            /* messages handed over per tick at most */
#define SEND_QUEUE (256u << 10)    /* a sender waits while this much is queued */
#define LATE_NS 2000000u           /* handed over this late counts as late */
#define SOURCES 8                  /* 127.0.0.1 .. 127.0.0.8 */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define DRAIN_CHECK_NS 100000000u  /* ledger_owed is asked this often */
#define TEXT_MAX 65536
#define NAMED_MAX 5                /* lost messages named in the error */
#define NODES_MAX 1024

static const char *const source_addrs[SOURCES] = {
    "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4",
    "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8",
};

enum cstate { CL_IDLE, CL_CONNECTING, CL_SUBSCRIBING, CL_JOINED, CL_RETRY };

struct lclient {
    struct load *ld;
    ws_conn *c;            /* NULL when not connected */
    unsigned idx;          /* 0 .. clients-1; named idx + 1 */
    unsigned node;         /* into servers */
    unsigned room;         /* 0 .. rooms-1 (0 without rooms) */
    int sender;            /* 0 .. senders-1, or -1 */
    enum cstate st;
    unsigned attempts;     /* failures in a row, for the backoff */
    long node_id;          /* the node's id from its frames, -1 until known */
    bool in_sendq;         /* has an entry in the send heap */
    uint32_t n;            /* the sender's next message, counted from t0 */
    uint64_t t0;           /* its first message's due time (the phase) */
};

/* One node's CPU and RSS from its /metrics. */
struct node_stat {
    struct load *ld;
    char url[300];
    http_client_req *req;  /* the poll in flight */
    bool have;             /* a poll answered */
    double cpu_first, cpu_now, cpu_row; /* s; cpu_row: at the last row, NAN none */
    double rss_now, rss_peak;           /* MiB */
};

enum phase { PH_DISCOVER, PH_RUN, PH_DRAIN, PH_STOPPING };

struct counters {
    uint64_t sent, deliveries, errors, reconnects, late;
};

struct load {
    const struct load_config *cfg;
    uv_loop_t *loop;
    tls_ctx *tls;
    FILE *out;
    uint32_t token;
    uint64_t rng;
    enum phase phase;
    int status;
    char error[4096];
    char first_error[720];

    struct bench_server *servers;
    unsigned nservers;
    struct node_stat *nodes;
    char (*node_names)[300];
    const char **node_name_ptrs;

    struct lclient *cl;
    unsigned ncl;
    unsigned *sender_client;
    unsigned nsenders;
    ledger *led;
    struct timeheap sendq, retryq;
    struct ws_conn_config wc;

    unsigned next_connect, inflight, connected, joined_ever;
    uint64_t t_start, t_stop, t_drain_end, t_drain_check, t_row;
    uint64_t period_ns;

    uv_timer_t tick, row_timer, join_timer;
    unsigned interval_no;
    struct counters iv, tot;
    struct ledger_counts led_row; /* the ledger's counts at the last row */
    struct latency_hist *hist_iv, *hist_tot;

    struct load_report_run run;
    char text[TEXT_MAX];
    char frame[TEXT_MAX + 256];
};

static void finish(struct load *ld, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static uint64_t next_rand(struct load *ld)
{
    ld->rng ^= ld->rng << 13;
    ld->rng ^= ld->rng >> 7;
    ld->rng ^= ld->rng << 17;
    return ld->rng;
}

/* A fixed pseudo-random number of (a, b): the jitter of a sender's
 * message, the same whenever it is computed (splitmix64's finaliser). */
static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void client_name(const struct lclient *c, char *out, size_t cap)
{
    const struct bench_server *s = &c->ld->servers[c->node];
    if (c->node_id >= 0)
        snprintf(out, cap, "client %u on node %ld at %s:%d", c->idx + 1, c->node_id, s->host,
                 s->port);
    else
        snprintf(out, cap, "client %u on %s:%d", c->idx + 1, s->host, s->port);
}

static void note_error(struct load *ld, const struct lclient *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Counts an error; the first is kept, by name, for the verdict. */
static void note_error(struct load *ld, const struct lclient *c, const char *fmt, ...)
{
    ld->iv.errors++;
    ld->tot.errors++;
    if (ld->first_error[0] != '\0')
        return;
    char name[400], what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    client_name(c, name, sizeof(name));
    snprintf(ld->first_error, sizeof(ld->first_error), "%s: %s", name, what);
}

/* ---- the end ------------------------------------------------------------ */

static void finish(struct load *ld, int status, const char *fmt, ...)
{
    if (ld->phase == PH_STOPPING)
        return;
    ld->phase = PH_STOPPING;
    ld->status = status;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->error, sizeof(ld->error), fmt, ap);
        va_end(ap);
    }
    uv_timer_stop(&ld->tick);
    uv_timer_stop(&ld->row_timer);
    uv_timer_stop(&ld->join_timer);
    for (unsigned i = 0; i < ld->ncl; i++)
        if (ld->cl[i].c != NULL)
            ws_conn_close(ld->cl[i].c, 1000, "bench done");
    for (unsigned k = 0; k < ld->nservers; k++)
        if (ld->nodes[k].req != NULL)
            http_client_cancel(ld->nodes[k].req);
    uv_close((uv_handle_t *)&ld->tick, NULL);
    uv_close((uv_handle_t *)&ld->row_timer, NULL);
    uv_close((uv_handle_t *)&ld->join_timer, NULL);
}

/* ---- the nodes' /metrics -------------------------------------------------- */

/* The value of the sample `name` (a line "name value"), or NAN. */
static double metric(const char *body, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = body; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return strtod(p + nl + 1, NULL);
    return NAN;
}

static void poll_cb(int status, const char *body, size_t len, void *ud)
{
    struct node_stat *ns = ud;
    (void)len;
    ns->req = NULL;
    if (status != 200 || body == NULL)
        return; /* a node that does not answer has empty cells */
    double cpu = metric(body, "process_cpu_seconds_total");
    double rss = metric(body, "process_resident_memory_bytes") / (1024.0 * 1024.0);
    if (isnan(cpu) || isnan(rss))
        return;
    if (!ns->have)
        ns->cpu_first = cpu;
    ns->have = true;
    ns->cpu_now = cpu;
    ns->rss_now = rss;
    ns->rss_peak = UTIL_MAX(ns->rss_peak, rss);
}

/* Asks every node whose previous poll has been answered. */
static void poll_nodes(struct load *ld)
{
    unsigned ms = (unsigned)UTIL_MAX(ld->cfg->interval_s * 1000, 500.0);
    for (unsigned k = 0; k < ld->nservers; k++) {
        struct node_stat *ns = &ld->nodes[k];
        if (ns->req == NULL &&
            http_client_request(ld->loop, ns->url, "GET", "/metrics", NULL, ms, poll_cb, ns,
                                &ns->req) != 0)
            ns->req = NULL;
    }
}

/* ---- rows ----------------------------------------------------------------- */

static double ms_of(uint64_t ns) { return (double)ns / 1e6; }

static void fill_latency(struct load_row *r, const struct latency_hist *h)
{
    r->p50_ms = ms_of(latency_hist_quantile(h, 0.50));
    r->p90_ms = ms_of(latency_hist_quantile(h, 0.90));
    r->p99_ms = ms_of(latency_hist_quantile(h, 0.99));
    r->p999_ms = ms_of(latency_hist_quantile(h, 0.999));
    r->max_ms = ms_of(latency_hist_quantile(h, 1.0));
}

/* Writes the row of the interval that ends now, and starts the next. */
static void emit_row(struct load *ld, uint64_t now)
{
    double cpu[NODES_MAX], rss[NODES_MAX];
    struct ledger_counts k;
    ledger_counts(ld->led, &k);
    struct load_row r = {
        .interval = ++ld->interval_no,
        .elapsed_s = (double)(now - ld->t_start) / 1e9,
        .span_s = (double)(now - ld->t_row) / 1e9,
        .connected = ld->connected,
        .sent = ld->iv.sent, .deliveries = ld->iv.deliveries,
        .errors = ld->iv.errors, .reconnects = ld->iv.reconnects, .late = ld->iv.late,
        .lost = k.lost - ld->led_row.lost, .dups = k.dups - ld->led_row.dups,
        .reordered = k.reordered - ld->led_row.reordered,
        .node_cpu_s = cpu, .node_rss_mib = rss,
    };
    fill_latency(&r, ld->hist_iv);
    for (unsigned i = 0; i < ld->nservers; i++) {
        struct node_stat *ns = &ld->nodes[i];
        cpu[i] = ns->have && !isnan(ns->cpu_row) ? ns->cpu_now - ns->cpu_row : NAN;
        rss[i] = ns->have ? ns->rss_now : NAN;
        ns->cpu_row = ns->have ? ns->cpu_now : NAN;
    }
    load_report_row(ld->out, ld->cfg->format, &ld->run, &r);
    ld->led_row = k;
    ld->iv = (struct counters){ 0 };
    latency_hist_reset(ld->hist_iv);
    ld->t_row = now;
}

static void row_cb(uv_timer_t *t)
{
    struct load *ld = t->data;
    emit_row(ld, uv_hrtime());
    poll_nodes(ld);
}

/* ---- the verdict ---------------------------------------------------------- */

static void end_run(struct load *ld)
{
    uint64_t now = uv_hrtime();
    /* the last, shorter interval: so that the rows add up to the summary */
    emit_row(ld, now);
    ledger_finish(ld->led);
    struct ledger_counts k;
    ledger_counts(ld->led, &k);
    double cpu[NODES_MAX], rss[NODES_MAX];
    for (unsigned i = 0; i < ld->nservers; i++) {
        const struct node_stat *ns = &ld->nodes[i];
        cpu[i] = ns->have ? ns->cpu_now - ns->cpu_first : NAN;
        rss[i] = ns->have ? ns->rss_peak : NAN;
    }
    struct load_row r = {
        .elapsed_s = (double)(now - ld->t_start) / 1e9,
        .span_s = (double)(now - ld->t_start) / 1e9,
        .connected = ld->connected,
        .sent = ld->tot.sent, .deliveries = ld->tot.deliveries,
        .errors = ld->tot.errors, .reconnects = ld->tot.reconnects, .late = ld->tot.late,
        .lost = k.lost, .dups = k.dups, .reordered = k.reordered,
        .node_cpu_s = cpu, .node_rss_mib = rss,
    };
    fill_latency(&r, ld->hist_tot);

    char msg[sizeof(ld->error)] = "";
    size_t off = 0;
    int status = BENCH_OK;
    if (k.lost || k.dups || k.reordered || k.strays) {
        status = BENCH_FAILED;
        off += (size_t)snprintf(msg + off, sizeof(msg) - off,
                                "%" PRIu64 " lost, %" PRIu64 " duplicated, %" PRIu64
                                " reordered, %" PRIu64 " misrouted (another room's) deliveries",
                                k.lost, k.dups, k.reordered, k.strays);
        const struct ledger_miss *m;
        unsigned n = ledger_misses(ld->led, &m);
        for (unsigned i = 0; i < n && off < sizeof(msg); i++) {
            char name[400];
            client_name(&ld->cl[m[i].client], name, sizeof(name));
            off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s %s missed message %" PRIu32
                                    " of sender %u", i ? ";" : ":", name, m[i].seq,
                                    m[i].sender + 1);
        }
        if (k.lost > n && n > 0 && off < sizeof(msg))
            off += (size_t)snprintf(msg + off, sizeof(msg) - off, "; ...");
    }
    if (ld->tot.errors && off < sizeof(msg)) {
        status = BENCH_FAILED;
        off += (size_t)snprintf(msg + off, sizeof(msg) - off,
                                "%s%" PRIu64 " errors (error frames, failed connections, "
                                "dropped connections), the first: %s", off ? "; " : "",
                                ld->tot.errors, ld->first_error);
    }
    if (ld->joined_ever < ld->ncl && off < sizeof(msg)) {
        status = BENCH_FAILED;
        snprintf(msg + off, sizeof(msg) - off, "%sonly %u of %u clients ever joined before "
                 "sending stopped: raise --duration or --timeout, or lower --clients or "
                 "--ramp", off ? "; " : "", ld->joined_ever, ld->ncl);
    }
    unsigned joined = 0;
    for (unsigned i = 0; i < ld->ncl; i++)
        joined += ledger_joined(ld->led, i) != 0;
    struct load_verdict v = { .ok = status == BENCH_OK, .error = msg[0] ? msg : NULL,
                              .strays = k.strays, .unaccepted = k.unaccepted,
                              .clients_joined = joined };
    load_report_end(ld->out, ld->cfg->format, &ld->run, &r, &v);
    if (status == BENCH_OK)
        finish(ld, status, NULL);
    else
        finish(ld, status, "%s", msg);
}

/* ---- sending -------------------------------------------------------------- */

/* When message n of sender c is due: its phase, n periods, and a jitter of
 * up to 5 % of a period (smaller than a period, so never out of order). */
static uint64_t due_ns(const struct load *ld, const struct lclient *c, uint32_t n)
{
    uint64_t jitter = mix((uint64_t)c->sender, n) % (ld->period_ns / 20 + 1);
    return c->t0 + (uint64_t)n * ld->period_ns + jitter;
}

static void schedule(struct load *ld, struct lclient *c, uint64_t at)
{
    if (timeheap_push(&ld->sendq, at, c->idx) == 0)
        c->in_sendq = true;
}

/* Hands one message of c over. Returns 0, or -1 when its queue is full. */
static int send_one(struct load *ld, struct lclient *c, uint64_t due, uint64_t now)
{
    if (ws_conn_queued_mem(c->c) >= SEND_QUEUE)
        return -1;
    unsigned s = (unsigned)c->sender;
    struct scan_load_marker m = { ld->token, s + 1, ledger_sent(ld->led, s) + 1, due };
    int tl = scan_format_load_text(&m, ld->cfg->size, ld->text, sizeof(ld->text));
    unsigned chat = ld->cfg->rooms ? LOAD_ROOM_BASE + c->room : LOAD_ALL_CHATS_ID;
    int fl = tl < 0 ? -1
                    : snprintf(ld->frame, sizeof(ld->frame),
                               "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\"%s\","
                               "\"sender\":\"load-%u\",\"chatId\":%u}}", ld->text, c->idx + 1,
                               chat);
    if (fl < 0 || (size_t)fl >= sizeof(ld->frame)) {
        finish(ld, EX_USAGE, "cannot build a message of --size %u (at most %d)", ld->cfg->size,
               TEXT_MAX - 1);
        return 0;
    }
    if (ws_conn_send_text(c->c, ld->frame, (size_t)fl) != 0)
        return 0; /* closing: on_close follows, and the message never existed */
    ledger_send(ld->led, s);
    ld->iv.sent++;
    ld->tot.sent++;
    if (now > due + LATE_NS) {
        ld->iv.late++;
        ld->tot.late++;
    }
    return 0;
}

static void send_due(struct load *ld, uint64_t now)
{
    struct timeheap_entry e;
    for (unsigned k = 0; k < SEND_BURST && timeheap_pop_due(&ld->sendq, now, &e); k++) {
        struct lclient *c = &ld->cl[e.id];
        c->in_sendq = false;
        if (c->st != CL_JOINED)
            continue; /* dropped: join() schedules it again */
        uint64_t due = due_ns(ld, c, c->n);
        if (due >= ld->t_stop)
            continue;
        if (due > now) { /* an entry from before a rejoin */
            schedule(ld, c, due);
            continue;
        }
        if (send_one(ld, c, due, now) != 0) {
            schedule(ld, c, now + 1000000); /* its queue is full: late, not lost */
            continue;
        }
        if (ld->phase == PH_STOPPING)
            return;
        c->n++;
        schedule(ld, c, due_ns(ld, c, c->n));
    }
}

/* ---- connections ---------------------------------------------------------- */

static const struct ws_conn_callbacks client_cb;

static void start_connect(struct load *ld, struct lclient *c)
{
    const struct bench_server *s = &ld->servers[c->node];
    struct ws_conn_config wc = ld->wc;
    if (strncmp(s->host, "127.", 4) == 0)
        wc.bind_addr = source_addrs[c->idx % SOURCES];
    c->st = CL_CONNECTING;
    ld->inflight++;
    if (ws_conn_connect(ld->loop, s->host, s->port, s->path, &wc, &client_cb, c, &c->c) != 0) {
        c->c = NULL;
        finish(ld, BENCH_NO_CLUSTER, "cannot connect to %s:%d: not an IP address", s->host,
               s->port);
    }
}

static void join(struct load *ld, struct lclient *c)
{
    c->st = CL_JOINED;
    ld->inflight--;
    ld->connected++;
    ld->joined_ever++;
    c->attempts = 0;
    ledger_join(ld->led, c->idx);
    if (c->sender >= 0 && ld->phase == PH_RUN) {
        c->t0 = uv_hrtime() + next_rand(ld) % ld->period_ns;
        c->n = 0;
        if (!c->in_sendq)
            schedule(ld, c, due_ns(ld, c, 0));
    }
}

static void on_open(ws_conn *conn, void *ud)
{
    struct lclient *c = ud;
    struct load *ld = c->ld;
    if (ld->phase == PH_STOPPING)
        return;
    if (ld->cfg->rooms == 0) {
        join(ld, c);
        return;
    }
    char frame[128];
    int n = snprintf(frame, sizeof(frame),
                     "{\"type\":\"subscribe\",\"payload\":{\"chatIds\":[%u]}}",
                     LOAD_ROOM_BASE + c->room);
    c->st = CL_SUBSCRIBING;
    ws_conn_send_text(conn, frame, (size_t)n);
}

/* A subscribeReply: joins c when it lists c's room. */
static void subscribed(struct load *ld, struct lclient *c, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(data, len, 0, &jerr);
    json_t *ids = json_object_get(json_object_get(doc, "payload"), "chatIds");
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(ids, i, e)
        found |= json_integer_value(e) == (json_int_t)(LOAD_ROOM_BASE + c->room);
    json_decref(doc);
    if (found)
        join(ld, c);
    else
        note_error(ld, c, "subscribeReply without chatId %u: %.200s", LOAD_ROOM_BASE + c->room,
                   data);
}

/* A frame that is not a message: a subscribe's answer or an error. */
static void control_frame(struct load *ld, struct lclient *c, const char *data, size_t len)
{
    size_t head = UTIL_MIN(len, 200);
    if (memmem(data, head, "\"type\":\"subscribeReply\"", 23) != NULL) {
        if (c->st == CL_SUBSCRIBING)
            subscribed(ld, c, data, len);
        return;
    }
    if (memmem(data, head, "\"type\":\"error\"", 14) == NULL)
        return;
    if (c->st == CL_SUBSCRIBING) {
        char name[400];
        client_name(c, name, sizeof(name));
        finish(ld, BENCH_FAILED, "%s: the node refused to subscribe to chatId %u: %.*s; does "
               "it support rooms? Run without --rooms against nodes that do not",
               name, LOAD_ROOM_BASE + c->room, (int)UTIL_MIN(len, 300), data);
        return;
    }
    note_error(ld, c, "the node answered with an error: %.*s", (int)UTIL_MIN(len, 300), data);
}

static void on_text(ws_conn *conn, const char *data, size_t len, void *ud)
{
    struct lclient *c = ud;
    struct load *ld = c->ld;
    (void)conn;
    if (ld->phase != PH_RUN && ld->phase != PH_DRAIN)
        return;
    uint64_t now = uv_hrtime();
    const char *text;
    size_t tl;
    long source;
    enum scan_result r = scan_frame_text(data, len, &text, &tl, &source);
    if (source >= 0)
        c->node_id = source;
    if (r == SCAN_NOT_MESSAGE) {
        control_frame(ld, c, data, len);
        return;
    }
    struct scan_load_marker m;
    if (r != SCAN_OK || scan_load_marker_parse(text, tl, &m) != 0 || m.token != ld->token ||
        m.sender == 0)
        return; /* someone else's message */
    ld->iv.deliveries++;
    ld->tot.deliveries++;
    uint64_t lat = now > m.sent_ns ? now - m.sent_ns : 0;
    latency_hist_add(ld->hist_iv, lat);
    latency_hist_add(ld->hist_tot, lat);
    ledger_receive(ld->led, c->idx, m.sender - 1, m.seq);
}

static void on_close(ws_conn *conn, int code, void *ud)
{
    struct lclient *c = ud;
    struct load *ld = c->ld;
    (void)conn;
    c->c = NULL;
    enum cstate was = c->st;
    c->st = CL_IDLE;
    if (ld->phase == PH_STOPPING)
        return;
    if (was == CL_JOINED) {
        ld->connected--;
        ledger_leave(ld->led, c->idx);
        note_error(ld, c, "connection closed with code %d", code);
    } else {
        ld->inflight--;
        note_error(ld, c, "cannot connect (code %d%s)", code,
                   was == CL_SUBSCRIBING ? ", while subscribing" : "");
    }
    if (ld->phase != PH_RUN)
        return;
    unsigned ms = BACKOFF_MIN_MS << UTIL_MIN(c->attempts, 5u);
    ms = UTIL_MIN(ms, (unsigned)BACKOFF_MAX_MS);
    ms += (unsigned)(next_rand(ld) % (ms / 2 + 1));
    c->attempts++;
    c->st = CL_RETRY;
    timeheap_push(&ld->retryq, uv_hrtime() + (uint64_t)ms * 1000000u, c->idx);
}

static const struct ws_conn_callbacks client_cb = {
    .on_open = on_open, .on_text = on_text, .on_close = on_close,
};

/* ---- the tick ------------------------------------------------------------- */

static void connect_due(struct load *ld, uint64_t now)
{
    uint64_t ramp_ns = (uint64_t)(ld->cfg->ramp_s * 1e9);
    while (ld->next_connect < ld->ncl && ld->inflight < LOAD_HANDSHAKES) {
        if (ramp_ns && now - ld->t_start < ramp_ns * ld->next_connect / ld->ncl)
            break;
        start_connect(ld, &ld->cl[ld->next_connect++]);
        if (ld->phase == PH_STOPPING)
            return;
    }
    struct timeheap_entry e;
    while (ld->inflight < LOAD_HANDSHAKES && timeheap_pop_due(&ld->retryq, now, &e)) {
        ld->iv.reconnects++;
        ld->tot.reconnects++;
        start_connect(ld, &ld->cl[e.id]);
        if (ld->phase == PH_STOPPING)
            return;
    }
}

static void tick_cb(uv_timer_t *t)
{
    struct load *ld = t->data;
    uint64_t now = uv_hrtime();
    if (ld->phase == PH_RUN) {
        connect_due(ld, now);
        if (ld->phase == PH_RUN)
            send_due(ld, now);
        if (ld->phase == PH_RUN && now >= ld->t_stop) {
            ld->phase = PH_DRAIN;
            ld->t_drain_end = now + (uint64_t)ld->cfg->timeout_s * 1000000000u;
            ld->t_drain_check = now;
        }
    }
    if (ld->phase == PH_DRAIN && now >= ld->t_drain_check) {
        ld->t_drain_check = now + DRAIN_CHECK_NS;
        if (ledger_owed(ld->led) == 0 || now >= ld->t_drain_end)
            end_run(ld);
    }
}

static void join_timeout_cb(uv_timer_t *t)
{
    struct load *ld = t->data;
    if (ld->joined_ever == 0)
        finish(ld, BENCH_NO_CLUSTER, "no client could join within %u s (%s); are the nodes "
               "running and reachable?", ld->cfg->timeout_s,
               ld->first_error[0] ? ld->first_error : "no answer");
}

/* ---- the layout ------------------------------------------------------------ */

/* Which node each client goes to: within each room the members take the
 * nodes in turn (member j of room r: node (j + r) % nodes) so that every
 * room spans the nodes, unless that node has its share already; then the
 * next one that has room. Shares: equal (differing by one at most), or
 * exactly cfg->clients each with --per-node. */
static void lay_out_nodes(struct load *ld)
{
    unsigned n = ld->nservers, rooms = UTIL_MAX(ld->cfg->rooms, 1u);
    unsigned *left = xcalloc(n, sizeof(*left));
    for (unsigned k = 0; k < n; k++)
        left[k] = ld->ncl / n + (k < ld->ncl % n);
    for (unsigned i = 0; i < ld->ncl; i++) {
        unsigned k = (i / rooms + i % rooms) % n;
        while (left[k] == 0)
            k = (k + 1) % n;
        left[k]--;
        ld->cl[i].node = k;
        ld->cl[i].room = ld->cfg->rooms ? i % rooms : 0;
    }
    free(left);
}

/* Which clients send: round(clients x fraction) of them (at least one when
 * the fraction is above 0), picked at random with a fixed seed so that
 * they spread over rooms and nodes alike and a run can be repeated;
 * numbered in client order. */
static void pick_senders(struct load *ld)
{
    unsigned want = (unsigned)llround(ld->ncl * ld->cfg->senders);
    if (want == 0 && ld->cfg->senders > 0)
        want = 1;
    unsigned *perm = xmalloc((ld->ncl + 1) * sizeof(*perm));
    uint8_t *is = xcalloc(ld->ncl + 1, 1);
    for (unsigned i = 0; i < ld->ncl; i++)
        perm[i] = i;
    uint64_t saved = ld->rng;
    ld->rng = 0x5eed5eed5eedull;
    for (unsigned i = 0; i < want; i++) {
        unsigned j = i + (unsigned)(next_rand(ld) % (ld->ncl - i));
        unsigned tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
        is[perm[i]] = 1;
    }
    ld->rng = saved;
    ld->sender_client = xmalloc((want + 1) * sizeof(unsigned));
    ld->nsenders = 0;
    for (unsigned i = 0; i < ld->ncl; i++) {
        ld->cl[i].sender = is[i] ? (int)ld->nsenders : -1;
        if (is[i])
            ld->sender_client[ld->nsenders++] = i;
    }
    free(perm);
    free(is);
}

/* Descriptors: the soft limit raised to the hard one; refuses a run that
 * needs more. */
static int check_fds(struct load *ld, unsigned clients)
{
    uint64_t soft = 0;
    fdlimit_raise(NULL, &soft);
    uint64_t need = (uint64_t)clients + LOAD_FD_MARGIN + 2u * ld->nservers;
    if (soft != 0 && need > soft) {
        finish(ld, EX_USAGE, "%u clients need about %" PRIu64 " file descriptors, and this "
               "process may open %" PRIu64 " (ulimit -Hn); lower --clients, or raise the hard "
               "limit (ulimit -Hn, /etc/security/limits.conf) and run again", clients, need,
               soft);
        return -1;
    }
    return 0;
}

static void start_run(struct load *ld)
{
    const struct load_config *cfg = ld->cfg;
    ld->ncl = cfg->per_node ? cfg->clients * ld->nservers : cfg->clients;
    if (check_fds(ld, ld->ncl) != 0)
        return;
    ld->cl = xcalloc(ld->ncl, sizeof(*ld->cl));
    for (unsigned i = 0; i < ld->ncl; i++)
        ld->cl[i] = (struct lclient){ .ld = ld, .idx = i, .node_id = -1, .sender = -1 };
    lay_out_nodes(ld);
    pick_senders(ld);
    unsigned rooms = UTIL_MAX(cfg->rooms, 1u);
    unsigned *client_room = xmalloc((ld->ncl + 1) * sizeof(unsigned));
    for (unsigned i = 0; i < ld->ncl; i++)
        client_room[i] = ld->cl[i].room;
    struct ledger_layout lay = { .clients = ld->ncl, .senders = ld->nsenders, .rooms = rooms,
                                 .client_room = client_room,
                                 .sender_client = ld->sender_client };
    uint64_t pairs = ledger_pairs(&lay);
    if (pairs * 4 > LOAD_LEDGER_MAX) {
        free(client_room);
        finish(ld, EX_USAGE, "checking %u clients against %u senders%s needs %" PRIu64
               " MiB, more than the %llu MiB allowed; lower --clients or --senders, or use "
               "--rooms", ld->ncl, ld->nsenders, cfg->rooms ? " in their rooms" : "",
               pairs * 4 >> 20, LOAD_LEDGER_MAX >> 20);
        return;
    }
    ld->led = ledger_new(&lay);
    free(client_room);
    timeheap_init(&ld->sendq, ld->ncl);
    timeheap_init(&ld->retryq, ld->ncl);

    ld->run = (struct load_report_run){
        .clients = ld->ncl, .senders = ld->nsenders, .nodes = ld->nservers,
        .rooms = cfg->rooms, .rate = cfg->rate, .size = cfg->size,
        .duration_s = cfg->duration_s, .interval_s = cfg->interval_s,
        .node_names = ld->node_name_ptrs,
    };
    load_report_begin(ld->out, cfg->format, &ld->run);
    poll_nodes(ld); /* the CPU baseline */

    ld->phase = PH_RUN;
    ld->t_start = ld->t_row = uv_hrtime();
    ld->t_stop = ld->t_start + (uint64_t)cfg->duration_s * 1000000000u;
    uint64_t iv_ms = (uint64_t)llround(cfg->interval_s * 1000);
    uv_timer_start(&ld->tick, tick_cb, 0, TICK_MS);
    uv_timer_start(&ld->row_timer, row_cb, iv_ms, iv_ms);
    uv_timer_start(&ld->join_timer, join_timeout_cb, (uint64_t)cfg->timeout_s * 1000, 0);
}

static void clients_cb(int status, const char *body, size_t len, void *ud)
{
    struct load *ld = ud;
    const struct load_config *cfg = ld->cfg;
    if (ld->phase != PH_DISCOVER)
        return;
    if (status < 0) {
        finish(ld, BENCH_NO_CLUSTER, "cannot ask discovery at %s: %s; start it, or pass "
               "--discovery", cfg->discovery, uv_strerror(status));
        return;
    }
    ld->servers = xcalloc(NODES_MAX, sizeof(*ld->servers));
    int n = status == 200 ? dchat_parse_nodes(body, len, ld->servers, NODES_MAX) : -1;
    if (n <= 0) {
        finish(ld, BENCH_NO_CLUSTER, n < 0 ? "discovery at %s answered GET /api/clients "
               "without an activeNodes list" : "discovery at %s lists no active node; start "
               "one", cfg->discovery);
        return;
    }
    ld->nservers = (unsigned)n;
    ld->nodes = xcalloc(ld->nservers, sizeof(*ld->nodes));
    ld->node_names = xcalloc(ld->nservers, sizeof(*ld->node_names));
    ld->node_name_ptrs = xcalloc(ld->nservers, sizeof(*ld->node_name_ptrs));
    for (unsigned k = 0; k < ld->nservers; k++) {
        const struct bench_server *s = &ld->servers[k];
        bool v6 = strchr(s->host, ':') != NULL;
        snprintf(ld->node_names[k], sizeof(ld->node_names[k]), v6 ? "[%s]:%d" : "%s:%d",
                 s->host, s->port);
        ld->node_name_ptrs[k] = ld->node_names[k];
        snprintf(ld->nodes[k].url, sizeof(ld->nodes[k].url), "http://%s", ld->node_names[k]);
        ld->nodes[k].ld = ld;
        ld->nodes[k].cpu_row = NAN;
    }
    start_run(ld);
}

/* ---- the whole run ---------------------------------------------------------- */

static void free_run(struct load *ld)
{
    ledger_free(ld->led);
    timeheap_free(&ld->sendq);
    timeheap_free(&ld->retryq);
    free(ld->cl);
    free(ld->sender_client);
    free(ld->servers);
    free(ld->nodes);
    free(ld->node_names);
    free(ld->node_name_ptrs);
    free(ld->hist_iv);
    free(ld->hist_tot);
    tls_ctx_free(ld->tls);
}

int load_run(const struct load_config *cfg)
{
    struct load *ld = xcalloc(1, sizeof(*ld));
    ld->cfg = cfg;
    ld->phase = PH_DISCOVER;
    ld->out = stdout;
    if (cfg->out[0] != '\0' && (ld->out = fopen(cfg->out, "w")) == NULL) {
        log_error("cannot write the report to --out %s: %s", cfg->out, strerror(errno));
        free(ld);
        return EX_USAGE;
    }
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc != 0) {
        log_error("cannot create an event loop: %s", uv_strerror(rc));
        if (ld->out != stdout)
            fclose(ld->out);
        free(ld);
        return BENCH_FAILED;
    }
    ld->loop = &loop;
    ld->token = (uint32_t)(util_now_ns() ^ ((uint64_t)getpid() << 16));
    ld->rng = util_now_ns() | 1;
    ld->period_ns = (uint64_t)llround(1e9 / cfg->rate);
    ld->hist_iv = xmalloc(sizeof(*ld->hist_iv));
    ld->hist_tot = xmalloc(sizeof(*ld->hist_tot));
    latency_hist_reset(ld->hist_iv);
    latency_hist_reset(ld->hist_tot);
    ld->wc = (struct ws_conn_config){
        .max_message = 1 << 20,
        .max_queue = 4 * SEND_QUEUE, /* a sender waits at SEND_QUEUE */
        .handshake_timeout_ms = cfg->timeout_s * 1000,
    };
    uv_timer_init(&loop, &ld->tick);
    ld->tick.data = ld;
    uv_timer_init(&loop, &ld->row_timer);
    ld->row_timer.data = ld;
    uv_timer_init(&loop, &ld->join_timer);
    ld->join_timer.data = ld;
    if (cfg->tls) {
        char err[600];
        ld->tls = tls_ctx_client(cfg->tls_ca[0] ? cfg->tls_ca : NULL, err, sizeof(err));
        if (ld->tls == NULL)
            finish(ld, BENCH_NO_CLUSTER, "%s", err);
        ld->wc.tls = ld->tls;
    }
    if (!cfg->per_node && ld->phase == PH_DISCOVER)
        check_fds(ld, cfg->clients); /* before asking anyone */
    if (ld->phase == PH_DISCOVER &&
        http_client_request(&loop, cfg->discovery, "GET", "/api/clients", NULL,
                            cfg->timeout_s * 1000, clients_cb, ld, NULL) != 0)
        finish(ld, EX_USAGE, "--discovery %s: expected http://HOST:PORT", cfg->discovery);

    uv_run(&loop, UV_RUN_DEFAULT);
    outq_shutdown(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (ld->status != BENCH_OK && ld->error[0] != '\0')
        log_error("%s", ld->error);
    rc = uv_loop_close(&loop);
    if (rc != 0)
        log_warn("event loop closed with handles open: %s", uv_strerror(rc));
    if (ld->out != stdout && fclose(ld->out) != 0 && ld->status == BENCH_OK) {
        log_error("cannot write the report to --out %s: %s", cfg->out, strerror(errno));
        ld->status = EX_USAGE;
    }
    int status = ld->status;
    free_run(ld);
    free(ld);
    return status;
}
