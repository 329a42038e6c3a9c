/* ws_conn: see ws_conn.h. Life of a connection:
 *   client: CONNECTING -> HANDSHAKE -> OPEN;  server: OPEN at once;
 *   OPEN -> CLOSING (close frame sent, waiting for the peer's, bounded by a
 *   timer) -> DONE (socket shut down after the queue drains, then closed).
 * One timer per connection serves the handshake limit, the ping period and
 * the close limit, whichever applies in the current state. The tcp handle
 * and the timer are closed together; on_close runs once both are, and the
 * struct is freed right after: never inside a read callback. */
#include "common/ws_conn.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "common/outq.h"
#include "common/util.h"
#include "common/ws.h"

#define WS_DEFAULT_MAX_MESSAGE (64 * 1024)
#define WS_DEFAULT_MAX_QUEUE (4 * 1024 * 1024)
#define WS_DEFAULT_HANDSHAKE_MS 10000
#define WS_DEFAULT_CLOSE_MS 2000
#define WS_DEFAULT_WRITE_DEADLINE_MS 5000
/* Far above any keep-alive (one every few seconds); a peer past it is
 * flooding, as HTTP/2 servers treat a PING flood. */
#define WS_MAX_PINGS_PER_SECOND 1000
#define WS_MAX_RESPONSE_HEAD 8192
#define WS_READ_BUF (256 * 1024)

enum ws_state { WS_CONNECTING, WS_HANDSHAKE, WS_OPEN, WS_CLOSING, WS_DONE };

struct ws_conn {
    uv_loop_t *loop;
    uv_tcp_t *tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    outq q;
    ws_decoder *dec;
    struct ws_conn_config cfg;
    struct ws_conn_callbacks cb;
    void *ud;
    enum ws_state state;
    bool client;
    bool awaiting_pong;
    bool alive;                /* something arrived since the last ping */
    bool shutting_down;
    bool paused;               /* reading stopped by ws_conn_pause */
    uint64_t read_ns;          /* util_now_ns() when the bytes being decoded
                                  were read (ws_conn_read_ns) */
    uint64_t pong_end;         /* q.pushed_total once our last pong was queued */
    uint64_t ping_window_ms;   /* pings counted per second, against floods */
    unsigned pings;
    struct outq_class *own_class; /* owned; only when the config names none */
    int close_code;            /* sent or received */
    int handles_open;
    char accept[29];           /* client: the Sec-WebSocket-Accept expected */
    tls_conn *tls;             /* owned; NULL when plain */
    char *hs;                  /* client: the response head so far */
    size_t hs_len;
    char peer[64];
};

static char ws_read_buf[WS_READ_BUF];
static uint64_t mask_state;

static void conn_terminate(ws_conn *c);
static void conn_finish(ws_conn *c);

/* --- frames out ----------------------------------------------------------- */

static void next_mask(uint8_t mask[4])
{
    if (mask_state == 0) {
        if (getrandom(&mask_state, sizeof(mask_state), 0) != sizeof(mask_state))
            mask_state = util_now_ns();
        mask_state |= 1;
    }
    /* xorshift64: masks only need to be unpredictable to intermediaries. */
    mask_state ^= mask_state << 13;
    mask_state ^= mask_state >> 7;
    mask_state ^= mask_state << 17;
    memcpy(mask, &mask_state, 4);
}

/* A frame as this side must send it: masked from a client. */
static msgbuf *build_frame(ws_conn *c, unsigned opcode, const void *data, size_t len)
{
    msgbuf *b = msgbuf_new(len + WS_MAX_HEADER);
    uint8_t mask[4];
    if (c->client)
        next_mask(mask);
    size_t h = ws_frame_header((uint8_t *)b->data, opcode, len, c->client ? mask : NULL);
    if (len)
        memcpy(b->data + h, data, len);
    if (c->client)
        ws_mask((uint8_t *)b->data + h, len, mask);
    b->len = (uint32_t)(h + len);
    return b;
}

/* Closes c as a slow consumer: what waits in its queue is dropped, so the
 * close frame goes right after the write in flight. */
static void close_slow(ws_conn *c, enum outq_verdict why)
{
    if (why == OUTQ_OVER_HARD)
        log_info("ws: closing %s: slow consumer, %zu bytes queued (the bound is %zu)",
                 c->peer, c->q.mem, c->q.cls->lim.hard);
    else
        log_info("ws: closing %s: slow consumer, %zu bytes queued and nothing written "
                 "for %llu ms", c->peer, c->q.mem, (unsigned long long)outq_stalled_ms(&c->q));
    c->q.cls->slow_closes++;
    outq_clear(&c->q);
    ws_conn_close(c, WS_CLOSE_POLICY, "slow consumer: not reading fast enough");
}

static void queue_error_cb(outq *q, int status, void *ud)
{
    ws_conn *c = ud;
    if (status == UV_ETIMEDOUT) { /* the class's sweep: stalled past the deadline */
        if (c->state == WS_OPEN)
            close_slow(c, OUTQ_STALLED);
        return;
    }
    log_debug("ws: write to %s failed: %s", c->peer, uv_strerror(status));
    if (c->close_code == 0)
        c->close_code = WS_CLOSE_ABNORMAL;
    conn_finish(c);
}

static int send_control(ws_conn *c, unsigned opcode, const void *data, size_t len)
{
    msgbuf *b = build_frame(c, opcode, data, len);
    int rc = outq_push_unbounded(&c->q, b);
    msgbuf_unref(b);
    return rc;
}

static int send_frame(ws_conn *c, msgbuf *frame, int (*push)(outq *, msgbuf *))
{
    if (c->state != WS_OPEN)
        return UV_EPIPE;
    int rc = push(&c->q, frame);
    if (rc == UV_ENOBUFS)
        close_slow(c, outq_verdict(&c->q, outq_cost(frame)));
    return rc;
}

int ws_conn_send_frame(ws_conn *c, msgbuf *frame) { return send_frame(c, frame, outq_push); }

int ws_conn_send_frame_now(ws_conn *c, msgbuf *frame)
{
    return send_frame(c, frame, outq_push_now);
}

static int send_data(ws_conn *c, unsigned opcode, const void *data, size_t len)
{
    if (c->state != WS_OPEN)
        return UV_EPIPE;
    msgbuf *b = build_frame(c, opcode, data, len);
    int rc = ws_conn_send_frame(c, b);
    msgbuf_unref(b);
    return rc;
}

int ws_conn_send_text(ws_conn *c, const char *data, size_t len)
{
    return send_data(c, WS_OP_TEXT, data, len);
}

int ws_conn_send_binary(ws_conn *c, const void *data, size_t len)
{
    return send_data(c, WS_OP_BINARY, data, len);
}

/* --- closing ---------------------------------------------------------------- */

static void handle_closed_cb(uv_handle_t *h)
{
    ws_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    if (c->cb.on_close)
        c->cb.on_close(c, c->close_code ? c->close_code : WS_CLOSE_ABNORMAL, c->ud);
    ws_decoder_free(c->dec);
    tls_conn_free(c->tls);
    free(c->own_class);
    free(c->hs);
    free(c->tcp);
    free(c);
}

/* Closes both handles now; pending writes are cancelled. */
static void conn_terminate(ws_conn *c)
{
    if (c->state == WS_DONE && c->handles_open < 2)
        return;
    if (c->handles_open == 0)
        return;
    c->state = WS_DONE;
    outq_discard(&c->q);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
    if (!uv_is_closing((uv_handle_t *)c->tcp))
        uv_close((uv_handle_t *)c->tcp, handle_closed_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    ws_conn *c = req->data;
    conn_terminate(c);
}

/* Lets what is queued reach the peer, then closes: flush, shutdown (which
 * libuv runs after the pending writes), close. The close timer bounds it. */
static void conn_finish(ws_conn *c)
{
    if (c->shutting_down || c->handles_open == 0 || uv_is_closing((uv_handle_t *)c->tcp))
        return;
    c->shutting_down = true;
    c->state = WS_DONE;
    uv_read_stop((uv_stream_t *)c->tcp);
    outq_flush_all(&c->q); /* uv_shutdown waits only for libuv's writes */
    if (c->tls != NULL) {
        tls_conn_shutdown(c->tls); /* close_notify, behind all that went */
        outq_flush_all(&c->q);
    }
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)c->tcp, shutdown_cb) != 0)
        conn_terminate(c);
}

static void close_timeout_cb(uv_timer_t *t)
{
    ws_conn *c = t->data;
    log_debug("ws: %s did not finish the close handshake in time", c->peer);
    conn_terminate(c);
}

void ws_conn_close(ws_conn *c, int code, const char *reason)
{
    if (c->state == WS_CLOSING || c->state == WS_DONE)
        return;
    if (c->state != WS_OPEN) {
        c->close_code = code;
        conn_terminate(c);
        return;
    }
    uint8_t payload[125];
    size_t rlen = reason ? UTIL_MIN(strlen(reason), sizeof(payload) - 2) : 0;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (rlen)
        memcpy(payload + 2, reason, rlen);
    c->close_code = code;
    c->state = WS_CLOSING;
    send_control(c, WS_OP_CLOSE, payload, rlen + 2);
    uv_timer_start(&c->timer, close_timeout_cb, c->cfg.close_timeout_ms, 0);
}

void ws_conn_abort(ws_conn *c)
{
    if (c->close_code == 0)
        c->close_code = WS_CLOSE_ABNORMAL;
    conn_terminate(c);
}

/* --- frames in ------------------------------------------------------------- */

static int message_cb(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    ws_conn *c = ud;
    switch (opcode) {
    case WS_OP_TEXT:
        if (c->state == WS_OPEN && c->cb.on_text)
            c->cb.on_text(c, (const char *)data, len, c->ud);
        break;
    case WS_OP_BINARY:
        if (c->state != WS_OPEN)
            break;
        if (c->cb.on_binary)
            c->cb.on_binary(c, data, len, c->ud);
        else
            ws_conn_close(c, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
        break;
    case WS_OP_PING:
        if (c->state != WS_OPEN)
            break;
        if (uv_now(c->loop) - c->ping_window_ms >= 1000) {
            c->ping_window_ms = uv_now(c->loop);
            c->pings = 0;
        }
        if (++c->pings > WS_MAX_PINGS_PER_SECOND) {
            log_info("ws: closing %s: ping flood (over %d pings in a second)", c->peer,
                     WS_MAX_PINGS_PER_SECOND);
            outq_clear(&c->q);
            ws_conn_close(c, WS_CLOSE_POLICY, "ping flood");
            break;
        }
        if (c->q.retired_total < c->pong_end) {
            /* Our last pong is still queued: one answers for all (RFC 6455
             * 5.5.3 allows answering only the latest). A peer that pings
             * on while reading nothing is a slow consumer like any other. */
            if (outq_stalled_ms(&c->q) >= c->cfg.write_deadline_ms)
                close_slow(c, OUTQ_STALLED);
            break;
        }
        send_control(c, WS_OP_PONG, data, len);
        c->pong_end = c->q.pushed_total;
        break;
    case WS_OP_PONG:
        c->awaiting_pong = false;
        break;
    case WS_OP_CLOSE: {
        int code = len >= 2 ? (data[0] << 8 | data[1]) : WS_CLOSE_NO_STATUS;
        if (c->state == WS_OPEN) {
            /* Echo the code, as RFC 6455 asks, then close once it is out. */
            c->close_code = code;
            c->state = WS_CLOSING;
            uint8_t echo[2] = { data[0], data[1] };
            send_control(c, WS_OP_CLOSE, echo, len >= 2 ? 2 : 0);
        }
        uv_timer_start(&c->timer, close_timeout_cb, c->cfg.close_timeout_ms, 0);
        conn_finish(c);
        return 1;
    }
    }
    /* Keep decoding while closing (the peer's close frame is still to come);
     * only a finished connection stops the decoder. */
    return c->state == WS_DONE ? 1 : 0;
}

static void feed(ws_conn *c, const char *data, size_t len)
{
    if (len == 0)
        return;
    c->alive = true;
    c->read_ns = util_now_ns(); /* once per read, not per frame: a clock
                                   read costs 25 ns on a VM */
    int rc = ws_decoder_feed(c->dec, (const uint8_t *)data, len, message_cb, c);
    if (rc > 0) {
        log_info("ws: closing %s with %d: %s", c->peer, rc, ws_decoder_error(c->dec));
        ws_conn_close(c, rc, ws_decoder_error(c->dec));
        /* RFC 6455 7.1.7: a failed connection sends its close frame and
         * closes; waiting for the peer's answer (which the decoder could
         * no longer read anyway) would only hold the socket until the
         * close timer. */
        if (c->state == WS_CLOSING)
            conn_finish(c);
    }
}

/* Client role: collects the response head, checks it, feeds the rest. */
static void handshake_bytes(ws_conn *c, const char *data, size_t len)
{
    size_t take = UTIL_MIN(len, (size_t)WS_MAX_RESPONSE_HEAD - c->hs_len);
    memcpy(c->hs + c->hs_len, data, take);
    c->hs_len += take;
    c->hs[c->hs_len] = '\0';
    char *end = strstr(c->hs, "\r\n\r\n");
    if (end == NULL) {
        if (c->hs_len >= WS_MAX_RESPONSE_HEAD) {
            log_warn("ws: %s sent a handshake answer over %d bytes", c->peer,
                     WS_MAX_RESPONSE_HEAD);
            ws_conn_abort(c);
        }
        return;
    }
    size_t head_len = (size_t)(end - c->hs) + 4;
    *end = '\0';
    bool ok = strncmp(c->hs, "HTTP/1.1 101", 12) == 0;
    const char *acc = NULL;
    for (char *line = strstr(c->hs, "\r\n"); ok && line != NULL; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21) == 0) {
            acc = line + 23;
            while (*acc == ' ' || *acc == '\t')
                acc++;
        }
    }
    if (!ok || acc == NULL || strncmp(acc, c->accept, 28) != 0) {
        char first[80];
        snprintf(first, sizeof(first), "%.*s", (int)strcspn(c->hs, "\r"), c->hs);
        log_warn("ws: %s refused the WebSocket handshake: %s", c->peer, first);
        ws_conn_abort(c);
        return;
    }
    c->state = WS_OPEN;
    uv_timer_stop(&c->timer);
    size_t extra = c->hs_len - head_len; /* frames right behind the head */
    char *rest = c->hs + head_len;
    if (c->cb.on_open)
        c->cb.on_open(c, c->ud);
    if (extra > 0 && c->state == WS_OPEN)
        feed(c, rest, extra);
    /* Bytes of this read beyond what fit in hs would be lost; the head is
     * small and the server sends nothing unasked before it, so take them. */
    if (take < len && c->state == WS_OPEN)
        feed(c, data + take, len - take);
    free(c->hs);
    c->hs = NULL;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = ws_read_buf;
    buf->len = sizeof(ws_read_buf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ws_conn *c = s->data;
    if (nread == 0 || c->state == WS_DONE)
        return;
    if (nread < 0) {
        if (c->close_code == 0)
            c->close_code = WS_CLOSE_ABNORMAL;
        conn_terminate(c);
        return;
    }
    const char *data = buf->base;
    size_t len = (size_t)nread;
    if (c->tls != NULL) {
        int rc = tls_conn_feed(c->tls, data, len, &data, &len);
        outq_poke(&c->q); /* its handshake answers; or the handshake is done */
        if (rc != 0) {
            /* A client (the bench) says why it could not connect; a node
             * notes a client's failure at info level only. */
            enum log_level lvl = c->client ? LOG_WARN : LOG_INFO;
            if (rc == TLS_FAILED && log_enabled(lvl))
                log_write(lvl, "ws: TLS with %s failed: %s", c->peer, tls_conn_error(c->tls));
            if (c->close_code == 0)
                c->close_code = WS_CLOSE_ABNORMAL;
            conn_finish(c); /* its alert, if any, goes out first */
            return;
        }
        if (len == 0)
            return;
    }
    if (c->state == WS_HANDSHAKE)
        handshake_bytes(c, data, len);
    else
        feed(c, data, len);
}

/* The ping period (server role). */
static void ping_cb(uv_timer_t *t)
{
    ws_conn *c = t->data;
    if (c->state != WS_OPEN)
        return;
    /* While we do not read, its pong cannot be seen: not its fault. */
    if (c->awaiting_pong && !c->alive && !c->paused) {
        log_info("ws: dropping %s: no answer to a ping within %u ms", c->peer,
                 c->cfg.ping_interval_ms);
        c->close_code = WS_CLOSE_ABNORMAL;
        conn_terminate(c);
        return;
    }
    c->alive = false;
    c->awaiting_pong = true;
    send_control(c, WS_OP_PING, "", 0);
}

/* --- opening ---------------------------------------------------------------- */

static ws_conn *conn_new(uv_loop_t *loop, uv_tcp_t *tcp, bool client,
                         const struct ws_conn_config *cfg,
                         const struct ws_conn_callbacks *cb, void *ud)
{
    ws_conn *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->tcp = tcp;
    c->client = client;
    c->cfg = *cfg;
    if (!c->cfg.max_message) c->cfg.max_message = WS_DEFAULT_MAX_MESSAGE;
    if (!c->cfg.max_queue) c->cfg.max_queue = WS_DEFAULT_MAX_QUEUE;
    if (!c->cfg.write_deadline_ms) c->cfg.write_deadline_ms = WS_DEFAULT_WRITE_DEADLINE_MS;
    if (!c->cfg.handshake_timeout_ms) c->cfg.handshake_timeout_ms = WS_DEFAULT_HANDSHAKE_MS;
    if (!c->cfg.close_timeout_ms) c->cfg.close_timeout_ms = WS_DEFAULT_CLOSE_MS;
    c->cb = *cb;
    c->ud = ud;
    tcp->data = c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    struct outq_class *cls = cfg->queue_class;
    if (cls == NULL) { /* a class of its own: the node's clients share one */
        cls = c->own_class = xcalloc(1, sizeof(*c->own_class));
        cls->lim = outq_limits_simple(c->cfg.max_queue);
    }
    outq_init(&c->q, (uv_stream_t *)tcp, cls, queue_error_cb, c);
    c->dec = ws_decoder_new(!client, c->cfg.max_message);
    return c;
}

int ws_conn_accept(uv_loop_t *loop, http_request *req, uv_tcp_t *tcp,
                   const char *rest, size_t rest_len,
                   const struct ws_conn_config *cfg,
                   const struct ws_conn_callbacks *cb, void *ud, ws_conn **out,
                   int *status, char *err, size_t errlen)
{
    const char *key;
    char accept[29];
    if (ws_check_upgrade(req, &key, status, err, errlen) != 0)
        return -1;
    if (ws_accept_key(key, accept) != 0) {
        *status = 400;
        snprintf(err, errlen, "cannot compute Sec-WebSocket-Accept");
        return -1;
    }
    ws_conn *c = conn_new(loop, tcp, false, cfg, cb, ud);
    snprintf(c->peer, sizeof(c->peer), "%s:%d", req->peer_addr, req->peer_port);
    c->state = WS_OPEN;
    c->tls = http_request_take_tls(req);
    if (c->tls != NULL)
        outq_set_tls(&c->q, c->tls);
    *out = c;

    msgbuf *b = msgbuf_new(256);
    b->len = (uint32_t)snprintf(b->data, 256,
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                                accept);
    outq_push_unbounded(&c->q, b);
    msgbuf_unref(b);
    uv_tcp_nodelay(tcp, 1);
    if (c->cfg.ping_interval_ms)
        uv_timer_start(&c->timer, ping_cb, c->cfg.ping_interval_ms, c->cfg.ping_interval_ms);
    int rc = uv_read_start((uv_stream_t *)tcp, alloc_cb, read_cb);
    if (rc != 0) {
        ws_conn_abort(c);
        return 0; /* taken: on_close reports the end */
    }
    if (rest_len)
        feed(c, rest, rest_len);
    return 0;
}

static void handshake_timeout_cb(uv_timer_t *t)
{
    ws_conn *c = t->data;
    log_warn("ws: no WebSocket handshake answer from %s within %u ms", c->peer,
             c->cfg.handshake_timeout_ms);
    ws_conn_abort(c);
}

static void connect_cb(uv_connect_t *req, int status)
{
    ws_conn *c = req->data;
    if (c->state == WS_DONE)
        return;
    if (status != 0) {
        log_warn("ws: cannot connect to %s: %s", c->peer, uv_strerror(status));
        ws_conn_abort(c);
        return;
    }
    uv_tcp_nodelay(c->tcp, 1);
    unsigned char raw[16];
    char key[25];
    if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
        ws_conn_abort(c);
        return;
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    ws_accept_key(key, c->accept);
    msgbuf *b = msgbuf_new(512);
    b->len = (uint32_t)snprintf(b->data, 512,
                                "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n",
                                (const char *)c->hs, c->peer, key);
    c->hs_len = 0;
    outq_push_unbounded(&c->q, b);
    msgbuf_unref(b);
    if (c->tls != NULL)
        outq_set_tls(&c->q, c->tls); /* the request waits for the TLS handshake */
    c->state = WS_HANDSHAKE;
    if (uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb) != 0)
        ws_conn_abort(c);
}

int ws_conn_connect(uv_loop_t *loop, const char *host, int port,
                    const char *path, const struct ws_conn_config *cfg,
                    const struct ws_conn_callbacks *cb, void *ud, ws_conn **out)
{
    struct sockaddr_storage sa, local;
    if (netaddr_parse(host, port, &sa) != 0 || strlen(path) > 256)
        return UV_EINVAL;
    if (cfg->bind_addr != NULL && netaddr_parse(cfg->bind_addr, 0, &local) != 0)
        return UV_EINVAL;
    uv_tcp_t *tcp = xmalloc(sizeof(*tcp));
    uv_tcp_init(loop, tcp);
    ws_conn *c = conn_new(loop, tcp, true, cfg, cb, ud);
    snprintf(c->peer, sizeof(c->peer), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    c->state = WS_CONNECTING;
    /* hs holds the path until the request is sent, then the answer. */
    c->hs = xmalloc(WS_MAX_RESPONSE_HEAD + 1);
    snprintf(c->hs, WS_MAX_RESPONSE_HEAD + 1, "%s", path[0] ? path : "/");
    if (c->cfg.tls != NULL)
        c->tls = tls_conn_new(c->cfg.tls, c->cfg.tls_server_name ? c->cfg.tls_server_name : host);
    c->connect_req.data = c;
    uv_timer_start(&c->timer, handshake_timeout_cb, c->cfg.handshake_timeout_ms, 0);
    *out = c;
    c->cfg.bind_addr = NULL; /* the caller's string; not needed after this */
    int rc = cfg->bind_addr != NULL ? uv_tcp_bind(tcp, (struct sockaddr *)&local, 0) : 0;
    if (rc != 0) {
        log_warn("ws: cannot bind to %s to connect to %s: %s", cfg->bind_addr, c->peer,
                 uv_strerror(rc));
        ws_conn_abort(c); /* on_close runs from the loop */
        return 0;
    }
    rc = uv_tcp_connect(&c->connect_req, tcp, (struct sockaddr *)&sa, connect_cb);
    if (rc != 0) {
        log_warn("ws: cannot connect to %s: %s", c->peer, uv_strerror(rc));
        ws_conn_abort(c); /* on_close runs from the loop */
    }
    return 0;
}

bool ws_conn_is_open(const ws_conn *c) { return c->state == WS_OPEN; }
const char *ws_conn_peer_addr(const ws_conn *c) { return c->peer; }
uint64_t ws_conn_read_ns(const ws_conn *c) { return c->read_ns; }
size_t ws_conn_queued_bytes(const ws_conn *c) { return outq_bytes(&c->q); }
size_t ws_conn_queued_mem(const ws_conn *c) { return c->q.mem; }

int ws_conn_pause(ws_conn *c, bool pause)
{
    if (pause == c->paused || c->state == WS_DONE || c->handles_open < 2)
        return 0;
    c->paused = pause;
    if (pause)
        return uv_read_stop((uv_stream_t *)c->tcp);
    c->alive = true; /* what it sent meanwhile is in the socket, unread */
    int rc = uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb);
    if (rc != 0)
        ws_conn_abort(c);
    return rc;
}
void *ws_conn_ud(const ws_conn *c) { return c->ud; }
void ws_conn_set_ud(ws_conn *c, void *ud) { c->ud = ud; }
