/* Unit tests for common/ws_conn.c: WebSocket connections in both roles, in
 * one uv loop. Each test starts an http_server on 127.0.0.1 (port 0) whose
 * on_upgrade hands the socket to ws_conn_accept (server role) and connects
 * to it with ws_conn_connect (client role), or with a raw non-blocking
 * POSIX socket that writes the handshake and frames by hand where the test
 * needs a peer that misbehaves. Covered: on_open, text both ways (empty,
 * small, the 125/126/127 and 65535/65536-byte header boundaries, multi-byte
 * UTF-8), order of many messages queued in one loop turn, bytes sent right
 * behind the upgrade request, a prebuilt frame shared by two connections
 * (its references dropped after the writes), the close handshake from
 * either side (each on_close exactly once, with the code), 1009 for a
 * message over max_message, 1003 for binary without on_binary, binary
 * both ways (ws_conn_send_binary), 1008 and
 * UV_ENOBUFS for a peer that does not read, pings (answered: stays open;
 * unanswered: dropped with 1006), and 1006 without on_open for a refused
 * connection, a refused upgrade and a handshake that never gets an answer;
 * a client bound to a source address (bind_addr) is seen from there.
 * The loop is driven with UV_RUN_ONCE until a condition holds; a 10 ms
 * guard timer keeps it turning and a time limit only guards against hangs.
 * Everything is freed (http_server_close, outq_shutdown, uv_loop_close) so
 * ASan's leak check sees a clean exit. The tests that need no raw socket
 * run a second time over TLS (setup_tls: the server takes TLS and plain,
 * the client verifies its certificate), and a plain client reaches that
 * same TLS-enabled server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/http_server.h"
#include "common/msgbuf.h"
#include "common/outq.h"
#include "common/ws.h"
#include "common/tls.h"
#include "common/util.h"
#include "common/ws_conn.h"
#include "tests/unit/certs.h"

#define HANG_NS (10ull * 1000000000ull) /* hang guard for every wait */
#define MAX_EP 8
#define LONG_CLOSE_MS 60000 /* so a close must come from the handshake, not a timer */

/* --- fixture ---------------------------------------------------------------- */

struct msg {
    char *data;
    size_t len;
    bool binary;
    uint64_t read_ns; /* ws_conn_read_ns during the callback */
};

struct fx;

/* One end of a connection, as its callbacks saw it. */
struct ep {
    struct fx *fx;
    ws_conn *conn;            /* NULL once on_close ran */
    int opens;
    int closes;
    int close_code;
    int wrong_conn;           /* callbacks with a ws_conn that is not ours */
    struct msg *msgs;
    size_t nmsgs, cap;
};

struct fx {
    uv_loop_t loop;
    uv_timer_t guard;
    http_server *srv;
    int port;
    bool srv_done;
    struct ws_conn_config scfg, ccfg;
    bool server_binary;       /* server on_binary set */
    bool refuse_upgrade;
    bool small_sndbuf;        /* server sockets get a 4 KiB send buffer */
    int accept_failures;
    char host_seen[64];       /* the Host header of the last upgrade request */
    struct ep sep[MAX_EP];    /* server ends, in accept order */
    int nsrv;
    struct ep cli[MAX_EP];    /* client ends, in connect order */
    int ncli;
    int fds[4];               /* raw sockets to close in teardown */
    tls_ctx *stls, *ctls;     /* setup_tls: the server's and the client's */
    char tls_dir[32];
};

static void ep_record(struct ep *ep, ws_conn *c, const void *data, size_t len, bool binary)
{
    if (c != ep->conn)
        ep->wrong_conn++;
    if (ep->nmsgs == ep->cap) {
        ep->cap = ep->cap ? 2 * ep->cap : 16;
        ep->msgs = realloc(ep->msgs, ep->cap * sizeof(*ep->msgs));
    }
    struct msg *m = &ep->msgs[ep->nmsgs++];
    m->data = malloc(len + 1);
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    m->len = len;
    m->binary = binary;
    m->read_ns = ws_conn_read_ns(c);
}

static void on_open(ws_conn *c, void *ud)
{
    struct ep *ep = ud;
    if (c != ep->conn)
        ep->wrong_conn++;
    ep->opens++;
}

static void on_text(ws_conn *c, const char *data, size_t len, void *ud)
{
    ep_record(ud, c, data, len, false);
}

static void on_binary(ws_conn *c, const uint8_t *data, size_t len, void *ud)
{
    ep_record(ud, c, data, len, true);
}

static void on_close(ws_conn *c, int code, void *ud)
{
    struct ep *ep = ud;
    if (c != ep->conn)
        ep->wrong_conn++;
    ep->closes++;
    ep->close_code = code;
    ep->conn = NULL;
}

static int on_upgrade(http_request *req, uv_tcp_t *tcp, const char *rest,
                      size_t rest_len, void *ud)
{
    struct fx *fx = ud;
    const char *host = http_request_header(req, "Host");
    snprintf(fx->host_seen, sizeof(fx->host_seen), "%s", host ? host : "(none)");
    if (fx->refuse_upgrade || fx->nsrv == MAX_EP) {
        http_respond_error(req, 403, "no");
        return 0;
    }
    if (fx->small_sndbuf) {
        int v = 4096;
        uv_send_buffer_size((uv_handle_t *)tcp, &v);
    }
    struct ep *ep = &fx->sep[fx->nsrv];
    ep->fx = fx;
    struct ws_conn_callbacks cb = {
        .on_text = on_text,
        .on_binary = fx->server_binary ? on_binary : NULL,
        .on_close = on_close,
    };
    int status = 0;
    char err[128];
    if (ws_conn_accept(&fx->loop, req, tcp, rest, rest_len, &fx->scfg, &cb, ep,
                       &ep->conn, &status, err, sizeof(err)) != 0) {
        fx->accept_failures++;
        http_respond_error(req, status, "%s", err);
        return 0;
    }
    fx->nsrv++;
    return 1;
}

static void http_handler(http_request *req, void *ud)
{
    (void)ud;
    http_respond(req, 404, "text/plain", "", 0);
}

static void guard_cb(uv_timer_t *t) { (void)t; /* wakes UV_RUN_ONCE */ }

static void srv_done_cb(void *ud) { ((struct fx *)ud)->srv_done = true; }
static void srv_done_cb_flag(void *ud) { *(bool *)ud = true; }

/* The server's TLS context and a client context that trusts it. */
static void tls_contexts(struct fx *fx)
{
    char cert[64], key[64], err[600];
    strcpy(fx->tls_dir, "/tmp/dchat-wstls-XXXXXX");
    assert_non_null(mkdtemp(fx->tls_dir));
    snprintf(cert, sizeof(cert), "%s/cert.pem", fx->tls_dir);
    snprintf(key, sizeof(key), "%s/key.pem", fx->tls_dir);
    make_cert("localhost", cert, key);
    fx->stls = tls_ctx_server(cert, key, err, sizeof(err));
    fx->ctls = tls_ctx_client(cert, err, sizeof(err));
    assert_non_null(fx->stls);
    assert_non_null(fx->ctls);
    unlink(cert);
    unlink(key);
    rmdir(fx->tls_dir);
    fx->ccfg.tls = fx->ctls;
    fx->ccfg.tls_server_name = "localhost";
}

static int setup_with(void **state, bool tls)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    for (int i = 0; i < 4; i++)
        fx->fds[i] = -1;
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    uv_timer_init(&fx->loop, &fx->guard);
    if (tls)
        tls_contexts(fx);
    struct http_server_config cfg = {
        .handler = http_handler, .on_upgrade = on_upgrade, .ud = fx, .tls = fx->stls,
    };
    assert_int_equal(http_server_start(&fx->loop, "127.0.0.1", 0, &cfg, &fx->srv), 0);
    fx->port = http_server_port(fx->srv);
    assert_true(fx->port > 0);
    fx->scfg.close_timeout_ms = LONG_CLOSE_MS;
    fx->ccfg.close_timeout_ms = LONG_CLOSE_MS;
    *state = fx;
    return 0;
}

static int setup(void **state) { return setup_with(state, false); }
static int setup_tls(void **state) { return setup_with(state, true); }

static void free_ep(struct ep *ep)
{
    for (size_t i = 0; i < ep->nmsgs; i++)
        free(ep->msgs[i].data);
    free(ep->msgs);
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    for (int i = 0; i < 4; i++)
        if (fx->fds[i] >= 0)
            close(fx->fds[i]);
    for (int i = 0; i < MAX_EP; i++) {
        if (fx->sep[i].conn)
            ws_conn_abort(fx->sep[i].conn);
        if (fx->cli[i].conn)
            ws_conn_abort(fx->cli[i].conn);
    }
    http_server_close(fx->srv, srv_done_cb, fx);
    uv_close((uv_handle_t *)&fx->guard, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    outq_shutdown(&fx->loop);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_true(fx->srv_done);
    for (int i = 0; i < MAX_EP; i++) {
        /* every connection that existed reported its end exactly once */
        assert_null(fx->sep[i].conn);
        assert_null(fx->cli[i].conn);
        assert_true(fx->sep[i].closes <= 1);
        assert_true(fx->cli[i].closes <= 1);
        assert_int_equal(fx->sep[i].wrong_conn, 0);
        assert_int_equal(fx->cli[i].wrong_conn, 0);
        free_ep(&fx->sep[i]);
        free_ep(&fx->cli[i]);
    }
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    tls_ctx_free(fx->stls);
    tls_ctx_free(fx->ctls);
    free(fx);
    msgbuf_trim();
    return 0;
}

/* Turns the loop until cond holds; fails after HANG_NS. The guard timer
 * makes every UV_RUN_ONCE return within 10 ms, so cond may also poll
 * things outside the loop (raw sockets). */
#define RUN_UNTIL(fx, cond)                                                    \
    do {                                                                       \
        uint64_t t0_ = uv_hrtime();                                            \
        uv_timer_start(&(fx)->guard, guard_cb, 10, 10);                        \
        while (!(cond) && uv_hrtime() - t0_ < HANG_NS)                         \
            uv_run(&(fx)->loop, UV_RUN_ONCE);                                  \
        uv_timer_stop(&(fx)->guard);                                           \
        if (!(cond))                                                           \
            fail_msg("timed out waiting for: %s", #cond);                      \
    } while (0)

/* A few more loop turns, to let anything that should not happen happen. */
static void spin(struct fx *fx, int turns)
{
    for (int i = 0; i < turns; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static struct ep *connect_client(struct fx *fx)
{
    assert_true(fx->ncli < MAX_EP);
    struct ep *ep = &fx->cli[fx->ncli++];
    ep->fx = fx;
    struct ws_conn_callbacks cb = {
        .on_open = on_open, .on_text = on_text, .on_binary = on_binary,
        .on_close = on_close,
    };
    assert_int_equal(ws_conn_connect(&fx->loop, "127.0.0.1", fx->port, "/ws",
                                     &fx->ccfg, &cb, ep, &ep->conn), 0);
    assert_non_null(ep->conn);
    assert_ptr_equal(ws_conn_ud(ep->conn), ep);
    return ep;
}

/* Connects a client and waits until both ends are open. */
static void open_pair(struct fx *fx, struct ep **cli, struct ep **srv)
{
    int before = fx->nsrv;
    struct ep *c = connect_client(fx);
    RUN_UNTIL(fx, c->opens == 1 && fx->nsrv == before + 1);
    assert_int_equal(c->closes, 0);
    assert_non_null(fx->sep[before].conn);
    assert_int_equal(fx->sep[before].closes, 0);
    *cli = c;
    *srv = &fx->sep[before];
}

/* Valid UTF-8 of exactly n bytes, mixing 1- to 4-byte sequences. */
static char *make_utf8(size_t n, unsigned seed)
{
    static const char *const seqs[] = { "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e",
                                        "Z", "\xe6\x97\xa5", "\xd0\x96" };
    char *s = malloc(n + 1);
    size_t i = 0;
    unsigned k = seed;
    while (i < n) {
        const char *q = seqs[k++ % 7];
        size_t l = strlen(q);
        if (l > n - i)
            q = "x", l = 1;
        memcpy(s + i, q, l);
        i += l;
    }
    s[n] = '\0';
    assert_true(ws_utf8_valid((const uint8_t *)s, n));
    return s;
}

/* A complete server (unmasked) frame. */
static msgbuf *server_frame(unsigned opcode, const void *data, size_t len)
{
    msgbuf *b = msgbuf_new(len + WS_MAX_HEADER);
    size_t h = ws_frame_header((uint8_t *)b->data, opcode, len, NULL);
    memcpy(b->data + h, data, len);
    b->len = (uint32_t)(h + len);
    return b;
}

/* A complete client (masked) frame, into out (len + 14 bytes of room). */
static size_t client_frame(uint8_t *out, unsigned opcode, const void *data, size_t len)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    size_t h = ws_frame_header(out, opcode, len, mask);
    memcpy(out + h, data, len);
    ws_mask(out + h, len, mask);
    return h + len;
}

/* --- raw sockets ------------------------------------------------------------- */

#define RAW_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RAW_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 1.3 */
#define RAW_REQUEST "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" \
                    "Connection: Upgrade\r\nSec-WebSocket-Key: " RAW_KEY "\r\n"   \
                    "Sec-WebSocket-Version: 13\r\n\r\n"

struct raw {
    int fd;
    char *buf;                /* everything received */
    size_t len, cap;
    bool eof;
};

static void fx_keep_fd(struct fx *fx, int fd)
{
    for (int i = 0; i < 4; i++) {
        if (fx->fds[i] < 0) {
            fx->fds[i] = fd;
            return;
        }
    }
    fail_msg("too many raw sockets");
}

static void fx_close_fd(struct fx *fx, int fd)
{
    for (int i = 0; i < 4; i++)
        if (fx->fds[i] == fd)
            fx->fds[i] = -1;
    close(fd);
}

/* A TCP socket connected to 127.0.0.1:port (the kernel completes the
 * connection to a listening socket without the loop), then non-blocking.
 * rcvbuf > 0 shrinks its receive buffer first. */
static void raw_connect(struct fx *fx, struct raw *r, int port, int rcvbuf)
{
    memset(r, 0, sizeof(*r));
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(r->fd >= 0);
    fx_keep_fd(fx, r->fd);
    if (rcvbuf > 0)
        assert_int_equal(setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    int one = 1;
    setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(r->fd, (struct sockaddr *)&sa, sizeof(sa));
    assert_true(rc == 0 || errno == EINPROGRESS);
}

/* Sends all of data; the socket is writable at once for these small
 * amounts, but a would-block is retried by turning the loop. */
static void raw_send(struct fx *fx, struct raw *r, const void *data, size_t len)
{
    const char *p = data;
    uint64_t t0 = uv_hrtime();
    while (len > 0) {
        ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS));
        assert_true(uv_hrtime() - t0 < HANG_NS);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
}

/* Reads whatever is there without blocking. Returns true (for use in
 * RUN_UNTIL conditions). */
static bool raw_pump(struct raw *r)
{
    for (;;) {
        if (r->cap - r->len < 65536) {
            r->cap = r->cap ? 2 * r->cap : 262144;
            r->buf = realloc(r->buf, r->cap);
        }
        ssize_t n = recv(r->fd, r->buf + r->len, r->cap - r->len, MSG_DONTWAIT);
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            r->eof = true;
        return true;
    }
}

/* Length of the HTTP head at the start of r's data (with its blank line),
 * or 0 while incomplete. */
static size_t raw_head_len(const struct raw *r)
{
    for (size_t i = 0; i + 4 <= r->len; i++)
        if (memcmp(r->buf + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

/* Parses one server frame (unmasked, FIN) at p. Returns its total length,
 * or 0 if incomplete. */
static size_t parse_frame(const uint8_t *p, size_t avail, unsigned *opcode,
                          const uint8_t **payload, size_t *plen)
{
    if (avail < 2)
        return 0;
    assert_int_equal(p[0] & 0x80, 0x80);       /* FIN */
    assert_int_equal(p[1] & 0x80, 0);          /* unmasked */
    size_t h = 2, len = p[1] & 0x7f;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = (size_t)p[2] << 8 | p[3];
        h = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        h = 10;
    }
    if (avail < h + len)
        return 0;
    *opcode = p[0] & 0x0f;
    *payload = p + h;
    *plen = len;
    return h + len;
}

/* True once r's data holds a frame with the given opcode after the head. */
static bool raw_has_frame(const struct raw *r, unsigned want)
{
    size_t off = raw_head_len(r);
    if (off == 0)
        return false;
    for (;;) {
        unsigned op;
        const uint8_t *pl;
        size_t plen;
        size_t n = parse_frame((const uint8_t *)r->buf + off, r->len - off, &op, &pl, &plen);
        if (n == 0)
            return false;
        if (op == want)
            return true;
        off += n;
    }
}

static void raw_check_head(const struct raw *r)
{
    size_t head = raw_head_len(r);
    assert_true(head > 0);
    assert_memory_equal(r->buf, "HTTP/1.1 101 ", 13);
    char *h = strndup(r->buf, head);
    assert_non_null(strstr(h, "Sec-WebSocket-Accept: " RAW_ACCEPT "\r\n"));
    free(h);
}

/* --- tests ------------------------------------------------------------------- */

static void test_open_and_small_text(void **state)
{
    struct fx *fx = *state;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    assert_int_equal(fx->accept_failures, 0);
    assert_ptr_equal(ws_conn_ud(srv->conn), srv);
    /* peer addresses as each side sees the other */
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", fx->port);
    assert_string_equal(ws_conn_peer_addr(cli->conn), want);
    assert_memory_equal(ws_conn_peer_addr(srv->conn), "127.0.0.1:", 10);
    /* the client's handshake names the server as Host: host:port (RFC
     * 6455 4.1; the HTTP server refuses an HTTP/1.1 request without) */
    assert_string_equal(fx->host_seen, want);

    assert_int_equal(ws_conn_send_text(cli->conn, "hello", 5), 0);
    RUN_UNTIL(fx, srv->nmsgs == 1);
    assert_int_equal(srv->msgs[0].len, 5);
    assert_memory_equal(srv->msgs[0].data, "hello", 5);
    assert_false(srv->msgs[0].binary);

    assert_int_equal(ws_conn_send_text(srv->conn, "world!", 6), 0);
    RUN_UNTIL(fx, cli->nmsgs == 1);
    assert_int_equal(cli->msgs[0].len, 6);
    assert_memory_equal(cli->msgs[0].data, "world!", 6);

    /* empty messages both ways */
    assert_int_equal(ws_conn_send_text(cli->conn, "", 0), 0);
    assert_int_equal(ws_conn_send_text(srv->conn, "", 0), 0);
    RUN_UNTIL(fx, srv->nmsgs == 2 && cli->nmsgs == 2);
    assert_int_equal(srv->msgs[1].len, 0);
    assert_int_equal(cli->msgs[1].len, 0);

    /* ws_conn_set_ud redirects later callbacks */
    struct ep *other = &fx->cli[MAX_EP - 1];
    other->conn = cli->conn;
    ws_conn_set_ud(cli->conn, other);
    assert_ptr_equal(ws_conn_ud(cli->conn), other);
    assert_int_equal(ws_conn_send_text(srv->conn, "to-other", 8), 0);
    RUN_UNTIL(fx, other->nmsgs == 1);
    assert_int_equal(cli->nmsgs, 2);
    assert_string_equal(other->msgs[0].data, "to-other");
    ws_conn_set_ud(cli->conn, cli);
    other->conn = NULL;

    assert_int_equal(cli->opens, 1);
    assert_int_equal(cli->closes, 0);
    assert_int_equal(srv->closes, 0);
}

static void test_text_sizes_and_utf8(void **state)
{
    struct fx *fx = *state;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    /* Around the 7-bit/16-bit/64-bit length encodings; 65536 is exactly
     * the default max_message (64 KiB), which is allowed. */
    static const size_t sizes[] = { 1, 2, 3, 4, 124, 125, 126, 127, 128, 1000,
                                    65534, 65535, 65536 };
    enum { NS = sizeof(sizes) / sizeof(sizes[0]) };
    char *up[NS], *down[NS];
    for (size_t i = 0; i < NS; i++) {
        up[i] = make_utf8(sizes[i], (unsigned)i);
        down[i] = make_utf8(sizes[i], (unsigned)i + 3);
        assert_int_equal(ws_conn_send_text(cli->conn, up[i], sizes[i]), 0);
        assert_int_equal(ws_conn_send_text(srv->conn, down[i], sizes[i]), 0);
    }
    static const char mixed[] = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac"
                                "\xe8\xaa\x9e \xf0\x9d\x84\x9e \xf0\x9f\x99\x82";
    assert_int_equal(ws_conn_send_text(cli->conn, mixed, strlen(mixed)), 0);
    assert_int_equal(ws_conn_send_text(srv->conn, mixed, strlen(mixed)), 0);

    RUN_UNTIL(fx, srv->nmsgs == NS + 1 && cli->nmsgs == NS + 1);
    for (size_t i = 0; i < NS; i++) {
        assert_int_equal(srv->msgs[i].len, sizes[i]);
        assert_memory_equal(srv->msgs[i].data, up[i], sizes[i]);
        assert_int_equal(cli->msgs[i].len, sizes[i]);
        assert_memory_equal(cli->msgs[i].data, down[i], sizes[i]);
        free(up[i]);
        free(down[i]);
    }
    assert_string_equal(srv->msgs[NS].data, mixed);
    assert_string_equal(cli->msgs[NS].data, mixed);
    assert_int_equal(cli->closes + srv->closes, 0);
}

static void test_many_messages_one_turn(void **state)
{
    struct fx *fx = *state;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    enum { N = 3000 };
    char s[32];
    size_t cq = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(s, sizeof(s), "up-%05d", i);
        assert_int_equal(ws_conn_send_text(cli->conn, s, (size_t)n), 0);
        n = snprintf(s, sizeof(s), "down-%05d", i);
        assert_int_equal(ws_conn_send_text(srv->conn, s, (size_t)n), 0);
        cq += 2 + 4 + 8; /* header, mask, payload */
    }
    /* nothing went out yet: all of it waits in the queue for the end of
     * the turn */
    assert_int_equal(ws_conn_queued_bytes(cli->conn), cq);
    assert_int_equal(ws_conn_queued_bytes(srv->conn), (size_t)N * (2 + 10));
    RUN_UNTIL(fx, srv->nmsgs == N && cli->nmsgs == N);
    for (int i = 0; i < N; i++) {
        snprintf(s, sizeof(s), "up-%05d", i);
        assert_string_equal(srv->msgs[i].data, s);
        snprintf(s, sizeof(s), "down-%05d", i);
        assert_string_equal(cli->msgs[i].data, s);
    }
    RUN_UNTIL(fx, ws_conn_queued_bytes(cli->conn) == 0 && ws_conn_queued_bytes(srv->conn) == 0);
}

/* Connects r and sends the upgrade request and two text frames, a and b,
 * in one write (short: one read on loopback). */
static void request_and_two_frames(struct fx *fx, struct raw *r, const char *a, const char *b)
{
    raw_connect(fx, r, fx->port, 0);
    uint8_t buf[512];
    size_t n = strlen(RAW_REQUEST);
    memcpy(buf, RAW_REQUEST, n);
    n += client_frame(buf + n, WS_OP_TEXT, a, strlen(a));
    n += client_frame(buf + n, WS_OP_TEXT, b, strlen(b));
    raw_send(fx, r, buf, n);
}

static void test_rest_bytes_after_request(void **state)
{
    struct fx *fx = *state;
    /* The request and a first frame in one write: what http_server read
     * past the request must reach the ws_conn. */
    struct raw r;
    request_and_two_frames(fx, &r, "early", "bird");
    RUN_UNTIL(fx, fx->nsrv == 1 && fx->sep[0].nmsgs == 2);
    assert_string_equal(fx->sep[0].msgs[0].data, "early");
    assert_string_equal(fx->sep[0].msgs[1].data, "bird");
    RUN_UNTIL(fx, raw_pump(&r) && raw_head_len(&r) > 0);
    raw_check_head(&r);
    free(r.buf);
}

/* Every frame of one read has that read's time; a later read a later one. */
static void test_read_time_per_read(void **state)
{
    struct fx *fx = *state;
    struct raw r;
    uint64_t t0 = util_now_ns();
    request_and_two_frames(fx, &r, "one", "two");
    RUN_UNTIL(fx, fx->nsrv == 1 && fx->sep[0].nmsgs == 2);
    uint64_t t1 = util_now_ns();
    struct ep *srv = &fx->sep[0];
    assert_true(srv->msgs[0].read_ns >= t0 && srv->msgs[0].read_ns <= t1);
    assert_true(srv->msgs[1].read_ns == srv->msgs[0].read_ns);
    uint8_t buf[64];
    size_t n = client_frame(buf, WS_OP_TEXT, "three", 5);
    raw_send(fx, &r, buf, n);
    RUN_UNTIL(fx, srv->nmsgs == 3);
    assert_true(srv->msgs[2].read_ns >= t1 && srv->msgs[2].read_ns <= util_now_ns());
    RUN_UNTIL(fx, raw_pump(&r) && raw_head_len(&r) > 0);
    free(r.buf);
}

static void test_shared_frame_two_servers(void **state)
{
    struct fx *fx = *state;
    struct ep *c1, *s1, *c2, *s2;
    open_pair(fx, &c1, &s1);
    open_pair(fx, &c2, &s2);
    char *payload = make_utf8(3000, 1);
    msgbuf *f = server_frame(WS_OP_TEXT, payload, 3000);
    assert_int_equal(ws_conn_send_frame(s1->conn, f), 0);
    assert_int_equal(ws_conn_send_frame(s2->conn, f), 0);
    assert_int_equal(f->refs, 3); /* ours and one per queue */
    RUN_UNTIL(fx, c1->nmsgs == 1 && c2->nmsgs == 1);
    assert_int_equal(c1->msgs[0].len, 3000);
    assert_memory_equal(c1->msgs[0].data, payload, 3000);
    assert_int_equal(c2->msgs[0].len, 3000);
    assert_memory_equal(c2->msgs[0].data, payload, 3000);
    /* the writes completed and dropped their references */
    RUN_UNTIL(fx, f->refs == 1);
    /* and the same frame can go out again */
    assert_int_equal(ws_conn_send_frame(s2->conn, f), 0);
    RUN_UNTIL(fx, c2->nmsgs == 2 && f->refs == 1);
    assert_memory_equal(c2->msgs[1].data, payload, 3000);
    assert_int_equal(c1->nmsgs, 1);
    msgbuf_unref(f);
    free(payload);
}

static void test_close_from_client(void **state)
{
    struct fx *fx = *state;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    assert_int_equal(ws_conn_send_text(cli->conn, "last", 4), 0);
    ws_conn_close(cli->conn, 1000, "bye");
    /* closing: nothing more can be sent, a second close is ignored */
    assert_int_equal(ws_conn_send_text(cli->conn, "late", 4), UV_EPIPE);
    ws_conn_close(cli->conn, 1001, "again");
    /* both sides finish through the handshake (the close timers are 60 s) */
    RUN_UNTIL(fx, srv->closes == 1 && cli->closes == 1);
    assert_int_equal(srv->close_code, 1000);
    assert_int_equal(cli->close_code, 1000);
    /* what was sent before the close arrived; nothing after it */
    assert_int_equal(srv->nmsgs, 1);
    assert_string_equal(srv->msgs[0].data, "last");
    spin(fx, 20);
    assert_int_equal(srv->closes, 1);
    assert_int_equal(cli->closes, 1);
    assert_int_equal(cli->opens, 1);
}

/* A server with TLS still takes plain clients (told apart by the first
 * byte), while TLS clients talk to it at the same time. */
static void test_plain_client_of_a_tls_server(void **state)
{
    struct fx *fx = *state;
    struct ep *tcli, *tsrv, *pcli, *psrv;
    open_pair(fx, &tcli, &tsrv);
    fx->ccfg.tls = NULL;
    open_pair(fx, &pcli, &psrv);
    assert_int_equal(ws_conn_send_text(pcli->conn, "plain", 5), 0);
    assert_int_equal(ws_conn_send_text(tcli->conn, "sealed", 6), 0);
    RUN_UNTIL(fx, psrv->nmsgs == 1 && tsrv->nmsgs == 1);
    assert_string_equal(psrv->msgs[0].data, "plain");
    assert_string_equal(tsrv->msgs[0].data, "sealed");
}

/* A TLS client of a server without TLS: the handshake fails, on_close
 * (1006) without on_open. */
static void test_tls_client_of_a_plain_server_fails(void **state)
{
    struct fx *fx = *state;
    http_server *plain;
    struct http_server_config cfg = {
        .handler = http_handler, .on_upgrade = on_upgrade, .ud = fx,
    };
    assert_int_equal(http_server_start(&fx->loop, "127.0.0.1", 0, &cfg, &plain), 0);
    int tls_port = fx->port;
    fx->port = http_server_port(plain);
    struct ep *c = connect_client(fx);
    RUN_UNTIL(fx, c->closes == 1);
    assert_int_equal(c->opens, 0);
    assert_int_equal(c->close_code, 1006);
    assert_int_equal(fx->nsrv, 0);
    fx->port = tls_port;
    bool done = false;
    http_server_close(plain, srv_done_cb_flag, &done);
    RUN_UNTIL(fx, done);
}

static void test_close_from_server(void **state)
{
    struct fx *fx = *state;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    assert_int_equal(ws_conn_send_text(srv->conn, "bye now", 7), 0);
    ws_conn_close(srv->conn, 1001, "going away");
    assert_int_equal(ws_conn_send_text(srv->conn, "late", 4), UV_EPIPE);
    msgbuf *f = server_frame(WS_OP_TEXT, "x", 1);
    assert_int_equal(ws_conn_send_frame(srv->conn, f), UV_EPIPE);
    assert_int_equal(f->refs, 1);
    msgbuf_unref(f);
    RUN_UNTIL(fx, srv->closes == 1 && cli->closes == 1);
    assert_int_equal(srv->close_code, 1001);
    assert_int_equal(cli->close_code, 1001);
    assert_int_equal(cli->nmsgs, 1);
    assert_string_equal(cli->msgs[0].data, "bye now");
    spin(fx, 20);
    assert_int_equal(srv->closes, 1);
    assert_int_equal(cli->closes, 1);
}

static void test_max_message_1009(void **state)
{
    struct fx *fx = *state;
    fx->scfg.max_message = 1000;
    /* A short server close limit: after a protocol error the server only
     * ends through it (see test_protocol_error_close_finishes_without_timer). */
    fx->scfg.close_timeout_ms = 200;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    char *ok = make_utf8(1000, 0), *big = make_utf8(1001, 0);
    assert_int_equal(ws_conn_send_text(cli->conn, ok, 1000), 0);
    assert_int_equal(ws_conn_send_text(cli->conn, big, 1001), 0);
    RUN_UNTIL(fx, srv->closes == 1 && cli->closes == 1);
    assert_int_equal(srv->close_code, 1009);
    assert_int_equal(cli->close_code, 1009);
    assert_int_equal(srv->nmsgs, 1); /* the one at the limit, not the one over */
    assert_int_equal(srv->msgs[0].len, 1000);
    free(ok);
    free(big);
}

/* After a protocol error the server stops reading (feed() calls
 * uv_read_stop once it is CLOSING), so it never sees the peer's close
 * answer nor its EOF: the connection only ends when close_timeout_ms runs
 * out, however fast the peer answered. */
static void test_protocol_error_close_finishes_without_timer(void **state)
{
    struct fx *fx = *state;
    fx->scfg.max_message = 10;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    assert_int_equal(ws_conn_send_text(cli->conn, "0123456789X", 11), 0);
    /* the client gets the 1009 close, answers it and is done */
    RUN_UNTIL(fx, cli->closes == 1);
    assert_int_equal(cli->close_code, 1009);
    /* With a 60 s close limit, the server side must finish once its
     * close frame is out (RFC 6455 7.1.7), not when the timer runs out. */
    RUN_UNTIL(fx, srv->closes == 1);
    assert_int_equal(srv->close_code, 1009);
}

static void test_binary_without_handler_1003(void **state)
{
    struct fx *fx = *state;
    fx->server_binary = false;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    msgbuf *b = msgbuf_new(64);
    b->len = (uint32_t)client_frame((uint8_t *)b->data, WS_OP_BINARY, "\x00\x01\x02\xff", 4);
    assert_int_equal(ws_conn_send_frame(cli->conn, b), 0);
    msgbuf_unref(b);
    RUN_UNTIL(fx, srv->closes == 1 && cli->closes == 1);
    assert_int_equal(srv->close_code, 1003);
    assert_int_equal(cli->close_code, 1003);
    assert_int_equal(srv->nmsgs, 0);
}

static void test_binary_with_handler(void **state)
{
    struct fx *fx = *state;
    fx->server_binary = true;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    uint8_t bin[300];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(255 - i); /* not UTF-8: fine for binary */
    msgbuf *b = msgbuf_new(sizeof(bin) + WS_MAX_HEADER);
    b->len = (uint32_t)client_frame((uint8_t *)b->data, WS_OP_BINARY, bin, sizeof(bin));
    assert_int_equal(ws_conn_send_frame(cli->conn, b), 0);
    msgbuf_unref(b);
    assert_int_equal(ws_conn_send_text(cli->conn, "after", 5), 0);
    RUN_UNTIL(fx, srv->nmsgs == 2);
    assert_true(srv->msgs[0].binary);
    assert_int_equal(srv->msgs[0].len, sizeof(bin));
    assert_memory_equal(srv->msgs[0].data, bin, sizeof(bin));
    assert_false(srv->msgs[1].binary);
    assert_string_equal(srv->msgs[1].data, "after");
    assert_int_equal(srv->closes + cli->closes, 0);
}

/* ws_conn_send_binary in both roles: the client's frame is masked, the
 * server's is not, and either arrives as one binary message, bytes intact. */
static void test_send_binary_both_ways(void **state)
{
    struct fx *fx = *state;
    fx->server_binary = true;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    uint8_t bin[60000]; /* a 16-bit length header */
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(ws_conn_send_binary(cli->conn, bin, 200), 0);
    assert_int_equal(ws_conn_send_binary(srv->conn, bin, sizeof(bin)), 0);
    assert_int_equal(ws_conn_send_binary(cli->conn, "", 0), 0);
    RUN_UNTIL(fx, srv->nmsgs == 2 && cli->nmsgs == 1);
    assert_true(srv->msgs[0].binary);
    assert_int_equal(srv->msgs[0].len, 200);
    assert_memory_equal(srv->msgs[0].data, bin, 200);
    assert_true(srv->msgs[1].binary);
    assert_int_equal(srv->msgs[1].len, 0);
    assert_true(cli->msgs[0].binary);
    assert_int_equal(cli->msgs[0].len, sizeof(bin));
    assert_memory_equal(cli->msgs[0].data, bin, sizeof(bin));
    assert_int_equal(srv->closes + cli->closes, 0);
}

static void test_slow_consumer_1008(void **state)
{
    struct fx *fx = *state;
    /* A raw peer that completes the handshake and then reads nothing, with
     * small socket buffers on both ends: what the kernel can hold is
     * bounded, so the server's queue must reach max_queue however fast
     * the machine is. */
    fx->small_sndbuf = true;
    fx->scfg.max_queue = 64 * 1024;
    struct raw r;
    raw_connect(fx, &r, fx->port, 4096);
    raw_send(fx, &r, RAW_REQUEST, strlen(RAW_REQUEST));
    RUN_UNTIL(fx, fx->nsrv == 1);
    struct ep *srv = &fx->sep[0];

    enum { PLEN = 1000, FRAME = PLEN + 4 };
    char payload[PLEN];
    memset(payload, 'p', sizeof(payload));
    int rc = 0;
    int sent = 0;
    size_t queued_before = 0;
    /* 100 MiB is far beyond any socket buffering: a hang guard */
    for (; sent < 100000; sent++) {
        snprintf(payload, sizeof(payload), "%08d", sent);
        payload[8] = '-';
        queued_before = ws_conn_queued_mem(srv->conn);
        rc = ws_conn_send_text(srv->conn, payload, PLEN);
        if (rc != 0)
            break;
        uv_run(&fx->loop, UV_RUN_NOWAIT); /* flush: hand it to the kernel */
    }
    assert_int_equal(rc, UV_ENOBUFS);
    /* refused exactly when the frame would pass the bound, counted as the
     * memory it holds (its buffer's capacity), not its length */
    msgbuf *like = msgbuf_new(PLEN + WS_MAX_HEADER);
    size_t cost = outq_cost(like);
    msgbuf_unref(like);
    assert_true(cost > FRAME);
    assert_true(queued_before + cost > fx->scfg.max_queue);
    assert_true(queued_before <= fx->scfg.max_queue);
    /* being closed with 1008: nothing more is taken */
    assert_int_equal(srv->closes, 0);
    assert_int_equal(ws_conn_send_text(srv->conn, "x", 1), UV_EPIPE);

    /* Now the peer reads: whole text frames in order (the ones still
     * pending were dropped, never cut), then the close frame. */
    RUN_UNTIL(fx, raw_pump(&r) && raw_has_frame(&r, WS_OP_CLOSE));
    raw_check_head(&r);
    size_t off = raw_head_len(&r);
    int texts = 0;
    for (;;) {
        unsigned op;
        const uint8_t *pl;
        size_t plen;
        size_t n = parse_frame((const uint8_t *)r.buf + off, r.len - off, &op, &pl, &plen);
        assert_true(n > 0);
        off += n;
        if (op == WS_OP_CLOSE) {
            assert_true(plen >= 2);
            assert_int_equal(pl[0] << 8 | pl[1], 1008);
            break;
        }
        assert_int_equal(op, WS_OP_TEXT);
        assert_int_equal(plen, PLEN);
        char want[9];
        snprintf(want, sizeof(want), "%08d", texts);
        assert_memory_equal(pl, want, 8);
        texts++;
    }
    assert_true(texts >= 1);
    assert_true(texts <= sent);
    assert_int_equal(off, r.len); /* nothing after the close frame */

    /* answer the close: the server finishes with 1008 */
    uint8_t echo[16];
    uint8_t code[2] = { 1008 >> 8, 1008 & 0xff };
    raw_send(fx, &r, echo, client_frame(echo, WS_OP_CLOSE, code, 2));
    RUN_UNTIL(fx, raw_pump(&r) && srv->closes == 1 && r.eof);
    assert_int_equal(srv->close_code, 1008);
    fx_close_fd(fx, r.fd);
    free(r.buf);
}

static void tick_cb(uv_timer_t *t) { (*(int *)t->data)++; }

static void test_ping_answered_stays_open(void **state)
{
    struct fx *fx = *state;
    /* 400 ms between pings; a pong has a whole interval to come back
     * through two loop turns, so only a machine stalled that long could
     * miss it. */
    fx->scfg.ping_interval_ms = 400;
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    uv_timer_t tick;
    int ticks = 0;
    uv_timer_init(&fx->loop, &tick);
    tick.data = &ticks;
    uv_timer_start(&tick, tick_cb, 400, 400);
    /* 5 intervals: a peer that did not answer is gone after 2 (see the
     * test below) */
    RUN_UNTIL(fx, ticks >= 5 || srv->closes || cli->closes);
    uv_close((uv_handle_t *)&tick, NULL);
    spin(fx, 1); /* tick lives on this stack: let the close complete */
    assert_int_equal(srv->closes, 0);
    assert_int_equal(cli->closes, 0);
    assert_int_equal(cli->opens, 1);
    /* and it still works */
    assert_int_equal(ws_conn_send_text(srv->conn, "still here", 10), 0);
    RUN_UNTIL(fx, cli->nmsgs == 1);
    assert_string_equal(cli->msgs[0].data, "still here");
}

static void test_ping_unanswered_drops_1006(void **state)
{
    struct fx *fx = *state;
    fx->scfg.ping_interval_ms = 30;
    struct raw r;
    raw_connect(fx, &r, fx->port, 0);
    raw_send(fx, &r, RAW_REQUEST, strlen(RAW_REQUEST));
    RUN_UNTIL(fx, fx->nsrv == 1);
    struct ep *srv = &fx->sep[0];
    /* the raw peer reads but never answers: one ping, then dropped */
    RUN_UNTIL(fx, raw_pump(&r) && srv->closes == 1);
    assert_int_equal(srv->close_code, 1006);
    RUN_UNTIL(fx, raw_pump(&r) && r.eof);
    raw_check_head(&r);
    size_t off = raw_head_len(&r);
    int pings = 0;
    while (off < r.len) {
        unsigned op;
        const uint8_t *pl;
        size_t plen;
        size_t n = parse_frame((const uint8_t *)r.buf + off, r.len - off, &op, &pl, &plen);
        assert_true(n > 0);
        assert_int_equal(op, WS_OP_PING);
        off += n;
        pings++;
    }
    assert_int_equal(pings, 1); /* dropped at the first tick without an answer */
    fx_close_fd(fx, r.fd);
    free(r.buf);
}

static void test_connect_refused_1006(void **state)
{
    struct fx *fx = *state;
    /* A port bound but not listening refuses connections, and no one else
     * can take it while we hold it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    fx_keep_fd(fx, fd);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    int port = ntohs(sa.sin_port);

    struct ep *ep = &fx->cli[fx->ncli++];
    ep->fx = fx;
    struct ws_conn_callbacks cb = { .on_open = on_open, .on_text = on_text,
                                    .on_close = on_close };
    assert_int_equal(ws_conn_connect(&fx->loop, "127.0.0.1", port, "/", &fx->ccfg, &cb,
                                     ep, &ep->conn), 0);
    RUN_UNTIL(fx, ep->closes == 1);
    assert_int_equal(ep->close_code, 1006);
    assert_int_equal(ep->opens, 0);
    spin(fx, 10);
    assert_int_equal(ep->closes, 1);

    /* bad arguments are refused at once, without callbacks */
    ws_conn *c = NULL;
    assert_int_equal(ws_conn_connect(&fx->loop, "no-such-host.invalid", port, "/", &fx->ccfg, &cb,
                                     ep, &c), UV_EINVAL);
    assert_null(c); /* nothing was created */
    char longpath[300];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(ws_conn_connect(&fx->loop, "127.0.0.1", port, longpath, &fx->ccfg,
                                     &cb, ep, &c), UV_EINVAL);
    spin(fx, 5);
    assert_int_equal(ep->closes, 1);
}

static void test_upgrade_refused_1006(void **state)
{
    struct fx *fx = *state;
    fx->refuse_upgrade = true;
    struct ep *cli = connect_client(fx);
    RUN_UNTIL(fx, cli->closes == 1);
    assert_int_equal(cli->close_code, 1006);
    assert_int_equal(cli->opens, 0);
    assert_int_equal(fx->nsrv, 0);
}

static void test_handshake_timeout_1006(void **state)
{
    struct fx *fx = *state;
    /* a listener that never accepts: the TCP connection succeeds (the
     * kernel's backlog) but no handshake answer ever comes */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    fx_keep_fd(fx, fd);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    fx->port = ntohs(sa.sin_port);
    fx->ccfg.handshake_timeout_ms = 50;
    struct ep *cli = connect_client(fx);
    RUN_UNTIL(fx, cli->closes == 1);
    assert_int_equal(cli->close_code, 1006);
    assert_int_equal(cli->opens, 0);
}

/* bind_addr: the client's socket leaves from the address given (loopback
 * is all of 127/8 on Linux), and a bind_addr that is no address is refused
 * before anything is created. */
static void test_client_binds_to_bind_addr(void **state)
{
    struct fx *fx = *state;
    fx->ccfg.bind_addr = "127.0.0.2";
    struct ep *cli, *srv;
    open_pair(fx, &cli, &srv);
    assert_memory_equal(ws_conn_peer_addr(srv->conn), "127.0.0.2:", 10);
    assert_int_equal(ws_conn_send_text(cli->conn, "from .2", 7), 0);
    RUN_UNTIL(fx, srv->nmsgs == 1);
    assert_string_equal(srv->msgs[0].data, "from .2");

    struct ep *ep = &fx->cli[fx->ncli++];
    ep->fx = fx;
    struct ws_conn_callbacks cb = { .on_open = on_open, .on_text = on_text,
                                    .on_close = on_close };
    ws_conn *c = NULL;
    fx->ccfg.bind_addr = "not-an-address";
    assert_int_equal(ws_conn_connect(&fx->loop, "127.0.0.1", fx->port, "/", &fx->ccfg, &cb,
                                     ep, &c), UV_EINVAL);
    assert_null(c);
    spin(fx, 5);
    assert_int_equal(ep->closes, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_open_and_small_text),
        T(test_text_sizes_and_utf8),
        T(test_many_messages_one_turn),
        T(test_rest_bytes_after_request),
        T(test_read_time_per_read),
        T(test_shared_frame_two_servers),
        T(test_close_from_client),
        T(test_close_from_server),
        T(test_max_message_1009),
        T(test_protocol_error_close_finishes_without_timer),
        T(test_binary_without_handler_1003),
        T(test_binary_with_handler),
        T(test_send_binary_both_ways),
        T(test_slow_consumer_1008),
        T(test_ping_answered_stays_open),
        T(test_ping_unanswered_drops_1006),
        T(test_connect_refused_1006),
        T(test_upgrade_refused_1006),
        T(test_handshake_timeout_1006),
        T(test_client_binds_to_bind_addr),
#undef T
#define TLS(f) cmocka_unit_test_setup_teardown(f, setup_tls, teardown)
        TLS(test_open_and_small_text),
        TLS(test_text_sizes_and_utf8),
        TLS(test_many_messages_one_turn),
        TLS(test_shared_frame_two_servers),
        TLS(test_close_from_client),
        TLS(test_close_from_server),
        TLS(test_max_message_1009),
        TLS(test_send_binary_both_ways),
        TLS(test_ping_answered_stays_open),
        TLS(test_plain_client_of_a_tls_server),
        TLS(test_tls_client_of_a_plain_server_fails),
#undef TLS
    };
    return cmocka_run_group_tests_name("ws_conn", tests, NULL, NULL);
}
