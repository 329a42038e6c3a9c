/* clients: see clients.h. Open clients sit in a dense array (each knows
 * its slot, so removal is a swap with the last), and in the chat rooms
 * index (rooms.h), so that a broadcast is a straight loop of reference
 * pushes over the clients of the message's chat. */
#include "node/clients.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/origins.h"
#include "common/util.h"
#include "common/ws.h"
#include "common/ws_conn.h"
#include "node/flow.h"
#include "node/message.h"
#include "node/history.h"
#include "node/relay.h"
#include "node/rooms.h"
#include "node/store.h"

struct client {
    struct clients *set;
    ws_conn *conn;            /* NULL once closed */
    size_t index;
    unsigned syncs_waiting;   /* catch-up replies waiting for a commit: one at a time */
    struct flow_reader flow;
    struct rooms_member rooms; /* the chats it takes */
};

/* A clientSyncRequest waiting until the store has committed everything
 * the reply must hold. */
struct sync_job {
    struct client *c;
    struct sync_mark *marks;
    size_t nmarks;
    struct history_point point;
    bool in_rooms;            /* only these chats, as when it asked: */
    int64_t *chats;
    size_t nchats;
};

struct clients {
    node *n;
    struct client **all;
    size_t count, cap;
    rooms *rooms;             /* who takes which chat */
    bool closing;
    void (*closed_done)(node *n);
    uv_timer_t drain;         /* clients_drain's ticks, while draining */
    bool draining;
    uint64_t drain_start_ms;
    unsigned drain_ms;
    size_t drain_total;       /* clients when the drain began */
    size_t drain_closed;      /* closed by it so far */
    uint64_t errors;          /* error frames sent to clients */
    uint64_t connects;        /* handshakes accepted */
    uint64_t closes[CLIENTS_CLOSE_CODES + 1]; /* by code; the last: any other */
};

const int clients_close_codes[CLIENTS_CLOSE_CODES] = {
    WS_CLOSE_NORMAL, WS_CLOSE_GOING_AWAY, WS_CLOSE_PROTOCOL, WS_CLOSE_UNSUPPORTED,
    WS_CLOSE_NO_STATUS, WS_CLOSE_ABNORMAL, WS_CLOSE_INVALID_DATA, WS_CLOSE_POLICY,
    WS_CLOSE_TOO_BIG, WS_CLOSE_INTERNAL, WS_CLOSE_SERVICE_RESTART, WS_CLOSE_TRY_AGAIN,
};

struct clients *clients_new(node *n)
{
    struct clients *cs = xcalloc(1, sizeof(*cs));
    cs->n = n;
    cs->rooms = rooms_new();
    return cs;
}

static void send_error(struct client *c, const char *error)
{
    node *n = c->set->n;
    c->set->errors++;
    msgbuf *f = message_error_frame(n->id, error);
    ws_conn_send_frame(c->conn, f);
    msgbuf_unref(f);
}

static void sync_job_run(void *ud)
{
    struct sync_job *j = ud;
    struct client *c = j->c;
    node *n = c->set->n;
    c->syncs_waiting--;
    /* No work for a client that is gone or going. */
    if (c->conn != NULL && ws_conn_is_open(c->conn) && n->store != NULL) {
        char err[160];
        struct history_chats f = { j->chats, j->nchats };
        msgbuf *b = history_sync_reply(n, j->marks, j->nmarks, &j->point,
                                       j->in_rooms ? &f : NULL, err, sizeof(err));
        if (b != NULL) {
            ws_conn_send_frame(c->conn, b);
            msgbuf_unref(b);
        } else {
            send_error(c, err);
        }
    }
    if (c->conn == NULL && c->syncs_waiting == 0)
        free(c); /* closed while it waited */
    history_point_free(&j->point);
    free(j->marks);
    free(j->chats);
    free(j);
}

static void client_sync(struct client *c, const struct client_request *req)
{
    node *n = c->set->n;
    char err[200];
    if (c->syncs_waiting > 0) {
        /* One at a time: each reply is built from the store on the loop. */
        send_error(c, "a clientSyncRequest of this client is still being answered; "
                      "send the next one after its clientSyncReply");
        return;
    }
    struct sync_job *j = xcalloc(1, sizeof(*j));
    if (history_point_take(n, req->marks, req->nmarks, &j->point, err, sizeof(err)) != 0) {
        free(j);
        send_error(c, err);
        return;
    }
    j->c = c;
    j->nmarks = req->nmarks;
    j->marks = xmalloc((req->nmarks ? req->nmarks : 1) * sizeof(*j->marks));
    if (req->nmarks > 0)
        memcpy(j->marks, req->marks, req->nmarks * sizeof(*j->marks));
    if (c->rooms.in_rooms) {
        j->in_rooms = true;
        j->chats = xmalloc((c->rooms.nseats ? c->rooms.nseats : 1) * sizeof(*j->chats));
        j->nchats = rooms_chats(&c->rooms, j->chats);
    }
    c->syncs_waiting++;
    store_when_committed(n->store, sync_job_run, j);
}

/* subscribe and unsubscribe: change the client's chats and answer with
 * what they are now. */
static void client_rooms(struct client *c, enum message_kind kind,
                         const struct client_request *req)
{
    struct clients *cs = c->set;
    bool sub = kind == MESSAGE_SUBSCRIBE;
    if (sub && req->all_chats) {
        rooms_every(cs->rooms, &c->rooms);
    } else if (sub) {
        if (rooms_join(cs->rooms, &c->rooms, req->chats, req->nchats, MESSAGE_ROOMS_MAX) != 0) {
            char err[160];
            snprintf(err, sizeof(err), "subscribe would put this client in more than %d chats; "
                     "unsubscribe from some first", MESSAGE_ROOMS_MAX);
            send_error(c, err);
            return;
        }
    } else if (!c->rooms.in_rooms) {
        send_error(c, "unsubscribe: this client takes every chat (it never subscribed); "
                      "subscribe to the chats it wants instead");
        return;
    } else {
        rooms_leave(cs->rooms, &c->rooms, req->chats, req->nchats);
    }
    int64_t *chats = xmalloc((c->rooms.nseats ? c->rooms.nseats : 1) * sizeof(*chats));
    size_t nchats = rooms_chats(&c->rooms, chats);
    msgbuf *f = message_rooms_reply_frame(cs->n->id, sub ? "subscribeReply" : "unsubscribeReply",
                                          !c->rooms.in_rooms, chats, nchats);
    ws_conn_send_frame(c->conn, f);
    msgbuf_unref(f);
    free(chats);
}

static void client_set_paused(struct flow_reader *r, bool paused)
{
    struct client *c = container_of(r, struct client, flow);
    if (c->conn != NULL)
        ws_conn_pause(c->conn, paused);
}

static void on_text(ws_conn *conn, const char *data, size_t len, void *ud)
{
    struct client *c = ud;
    node *n = c->set->n;
    struct client_request req;
    char err[256];

    int kind = message_parse_request(data, len, &req, err, sizeof(err));
    switch (kind) {
    case MESSAGE_IGNORE:
        log_debug("ignoring a non-JSON text frame from client %s", ws_conn_peer_addr(conn));
        break;
    case MESSAGE_ERROR:
        send_error(c, err);
        break;
    case MESSAGE_NEW:
        flow_note(n, &c->flow);
        if (relay_local(n, &req.msg, ws_conn_read_ns(conn)) != 0) {
            const char *failing = n->store != NULL ? store_failing(n->store, NULL) : NULL;
            struct relay_own own;
            relay_own(n, &own);
            char e[400];
            if (n->id == 0) {
                send_error(c, "node is not registered with discovery yet; retry shortly");
            } else if (failing != NULL) {
                snprintf(e, sizeof(e), "node cannot store messages now (%s); the message "
                         "was not taken: send it again later or use another node", failing);
                send_error(c, e);
            } else if (own.state == RELAY_OWN_WAITING) {
                send_error(c, "node cannot number messages yet: it has just started and "
                              "waits to hear from its peers what they hold of its messages; "
                              "the message was not taken: send it again shortly or use "
                              "another node");
            } else if (own.state == RELAY_OWN_BEHIND) {
                snprintf(e, sizeof(e), "node cannot number messages yet: its peers hold %" PRIu64
                         " of its messages that its history lacks, which it is fetching back; "
                         "the message was not taken: send it again shortly or use another "
                         "node", own.behind);
                send_error(c, e);
            } else {
                send_error(c, "node is overloaded (history writes are behind); retry "
                              "shortly or use another node");
            }
        }
        break;
    case MESSAGE_SYNC:
        client_sync(c, &req);
        break;
    case MESSAGE_SUBSCRIBE:
    case MESSAGE_UNSUBSCRIBE:
        client_rooms(c, kind, &req);
        break;
    }
    message_request_free(&req);
}

static void on_close(ws_conn *conn, int code, void *ud)
{
    struct client *c = ud;
    struct clients *cs = c->set;
    struct client *last = cs->all[--cs->count];
    cs->all[c->index] = last;
    last->index = c->index;
    log_debug("client %s closed (code %d), %zu left", ws_conn_peer_addr(conn), code,
              cs->count);
    size_t k = 0;
    while (k < CLIENTS_CLOSE_CODES && clients_close_codes[k] != code)
        k++;
    cs->closes[k]++;
    c->conn = NULL;
    rooms_remove(cs->rooms, &c->rooms);
    flow_forget(cs->n, &c->flow);
    if (c->syncs_waiting == 0)
        free(c); /* else the last sync job frees it */
    if (cs->closing && cs->count == 0 && cs->draining) {
        cs->draining = false;
        uv_close((uv_handle_t *)&cs->drain, NULL);
    }
    if (cs->closing && cs->count == 0 && cs->closed_done) {
        void (*done)(node *) = cs->closed_done;
        cs->closed_done = NULL;
        done(cs->n);
    }
}

int clients_on_upgrade(http_request *req, uv_tcp_t *tcp, const char *rest,
                       size_t rest_len, void *ud)
{
    node *n = ud;
    struct clients *cs = n->clients;
    /* Browsers send Origin; DSatter's clients and other programs send none
     * and are not what --allowed-origins is about (RFC 6455 10.2). The
     * node's own chat page (node/web.h) is always allowed: its origin is
     * the address the browser opens, scheme, Host and port alike. A
     * forbidden origin is told so before any question of capacity: retrying
     * will not help it. */
    const char *origin = http_request_header(req, "Origin");
    if (origin != NULL && n->cfg.allowed_origins != NULL &&
        !origins_allow(n->cfg.allowed_origins, origin) &&
        !origins_same(origin, http_request_is_tls(req), http_request_header(req, "Host"))) {
        log_debug("client %s: WebSocket refused for origin %.200s", req->peer_addr, origin);
        http_respond_error(req, 403, "WebSocket handshake refused: origin %.200s is not in "
                           "this node's --allowed-origins; open the chat from an allowed "
                           "page, or ask the operator to add it", origin);
        return 0;
    }
    if (cs->closing) {
        http_respond_error(req, 503, "node is shutting down; connect to another node");
        return 0;
    }
    if (cs->count >= n->cfg.max_clients) {
        http_respond_error(req, 503, "node has %zu clients, its limit (--max-clients); "
                           "connect to another node", cs->count);
        return 0;
    }
    struct ws_conn_config cfg = {
        .max_message = n->cfg.max_message,
        .queue_class = flow_clients_class(n),
        .write_deadline_ms = n->cfg.write_deadline_ms,
        .ping_interval_ms = n->cfg.ping_ms,
        .close_timeout_ms = 2000,
    };
    struct ws_conn_callbacks cb = { .on_text = on_text, .on_close = on_close };
    struct client *c = xcalloc(1, sizeof(*c));
    c->set = cs;
    c->flow.kind = FLOW_CLIENT;
    c->flow.set_paused = client_set_paused;
    char err[160];
    int status;
    if (ws_conn_accept(n->loop, req, tcp, rest, rest_len, &cfg, &cb, c, &c->conn,
                       &status, err, sizeof(err)) != 0) {
        free(c);
        http_respond_error(req, status, "WebSocket handshake refused: %s", err);
        return 0;
    }
    if (cs->count == cs->cap) {
        cs->cap = cs->cap ? 2 * cs->cap : 64;
        cs->all = xrealloc(cs->all, cs->cap * sizeof(*cs->all));
    }
    c->index = cs->count;
    cs->all[cs->count++] = c;
    rooms_add(cs->rooms, &c->rooms);
    cs->connects++;
    log_debug("client %s connected, %zu clients", req->peer_addr, cs->count);
    return 1;
}

/* Sends frames[0..n) to the k clients of list, coalesced into buffers no
 * larger than one frame may be (half the queue bound, message.h), so that
 * no client's queue judges a burst differently from its messages. With
 * now, each buffer is written at once to a client with nothing queued: it
 * is all that client gets from this burst, so waiting for the end of the
 * turn would only walk every queue a second time. Without, it is queued
 * for the end of the turn, where more frames may join it in one write. */
static void send_run(const struct clients *cs, struct rooms_member *const *list, size_t k,
                     msgbuf *const *frames, size_t n, bool now)
{
    int (*send)(ws_conn *, msgbuf *) = now ? ws_conn_send_frame_now : ws_conn_send_frame;
    if (k == 0)
        return;
    size_t max = UTIL_MIN((size_t)CLIENTS_COALESCE_MAX, cs->n->cfg.max_queue / 2);
    for (size_t i = 0, took; i < n; i += took) {
        msgbuf *b = msgbuf_concat(frames + i, n - i, max, &took);
        for (size_t j = 0; j < k; j++)
            send(container_of(list[j], struct client, rooms)->conn, b);
        msgbuf_unref(b);
    }
}

void clients_broadcast(struct clients *cs, msgbuf *const *frames, const int64_t *chats,
                       size_t n, bool now, size_t *to)
{
    /* A send can only fail by starting a close; on_close (which reorders
     * the arrays) runs later, from the loop, so the loops are stable.
     * Every-chat clients and room members are apart (rooms.h): the first
     * get every frame, the others each run of one chat's frames in turn,
     * so that a member of several chats still sees them in order. */
    size_t every, members;
    struct rooms_member *const *e = rooms_every_members(cs->rooms, &every);
    send_run(cs, e, every, frames, n, now);
    for (size_t i = 0, run; i < n; i += run) {
        for (run = 1; i + run < n && chats[i + run] == chats[i]; run++)
            ;
        struct rooms_member *const *m = rooms_members(cs->rooms, chats[i], &members);
        send_run(cs, m, members, frames + i, run, now);
        for (size_t j = i; j < i + run; j++)
            to[j] = every + members;
    }
}

size_t clients_rooms(const struct clients *cs, size_t *memberships)
{
    *memberships = rooms_memberships(cs->rooms);
    return rooms_count(cs->rooms);
}

uint64_t clients_errors(const struct clients *cs)
{
    return cs->errors;
}

size_t clients_count(const struct clients *cs) { return cs->count; }

uint64_t clients_connects(const struct clients *cs) { return cs->connects; }

uint64_t clients_disconnects(const struct clients *cs, size_t k)
{
    return k <= CLIENTS_CLOSE_CODES ? cs->closes[k] : 0;
}

void clients_close_all(struct clients *cs, int code, void (*done)(node *n))
{
    cs->closing = true;
    cs->closed_done = done;
    if (cs->count == 0) {
        cs->closed_done = NULL;
        if (done)
            done(cs->n);
        return;
    }
    for (size_t i = 0; i < cs->count; i++)
        ws_conn_close(cs->all[i]->conn, code, "node shutting down");
}

/* How many of total are due to be closed elapsed ms into a drain of ms. */
static size_t drain_due(size_t total, uint64_t elapsed, unsigned ms)
{
    if (elapsed >= ms)
        return total;
    return (size_t)(((unsigned long long)total * elapsed + ms - 1) / ms);
}

static void drain_tick(uv_timer_t *t)
{
    struct clients *cs = t->data;
    uint64_t elapsed = util_now_ms() - cs->drain_start_ms;
    size_t due = drain_due(cs->drain_total, elapsed, cs->drain_ms);
    /* Closing ones stay in the array until their close completes
     * (on_close): skip them. Once time is up every one is due, and as
     * clients that left by themselves were not counted, the loop then
     * closes whoever is left (none is new: they get 503). */
    for (size_t i = 0; i < cs->count && cs->drain_closed < due; i++) {
        ws_conn *conn = cs->all[i]->conn;
        if (conn != NULL && ws_conn_is_open(conn)) {
            ws_conn_close(conn, 1001, "node shutting down");
            cs->drain_closed++;
        }
    }
    if (elapsed >= cs->drain_ms)
        uv_timer_stop(t);
}

void clients_drain(struct clients *cs, unsigned ms, void (*done)(node *n))
{
    if (ms == 0 || cs->count == 0) {
        clients_close_all(cs, 1001, done);
        return;
    }
    cs->closing = true;
    cs->closed_done = done;
    cs->draining = true;
    cs->drain_start_ms = util_now_ms();
    cs->drain_ms = ms;
    cs->drain_total = cs->count;
    cs->drain_closed = 0;
    uv_timer_init(cs->n->loop, &cs->drain);
    cs->drain.data = cs;
    uv_timer_start(&cs->drain, drain_tick, 0, CLIENTS_DRAIN_TICK_MS);
}

void clients_free(struct clients *cs)
{
    if (cs == NULL)
        return;
    rooms_free(cs->rooms);
    free(cs->all);
    free(cs);
}
