/* ws_conn: a WebSocket connection on a uv_tcp_t, server or client role.
 * It reads into a shared buffer, decodes with ws.h, answers pings, runs the
 * close handshake, pings idle peers (server role) and drops those that do
 * not answer, and sends everything through one outq, so frames never
 * interleave and a slow reader is closed with 1008 instead of growing
 * memory. The node uses the server role, the bench the client role. */
#ifndef DCHAT_WS_CONN_H
#define DCHAT_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/http_server.h"
#include "common/msgbuf.h"
#include "common/outq.h"

typedef struct ws_conn ws_conn;

struct ws_conn_callbacks {
    /* Client role: the handshake succeeded. May be NULL. */
    void (*on_open)(ws_conn *c, void *ud);
    /* A complete text message, valid UTF-8; data lives during the call. */
    void (*on_text)(ws_conn *c, const char *data, size_t len, void *ud);
    /* A complete binary message; NULL closes binary senders with 1003. */
    void (*on_binary)(ws_conn *c, const uint8_t *data, size_t len, void *ud);
    /* Called exactly once, when the connection is finished for any reason;
     * code is the close code sent or received (1006 when the socket just
     * died). c is freed right after this returns. */
    void (*on_close)(ws_conn *c, int code, void *ud);
};

struct ws_conn_config {
    size_t max_message;          /* 0 = 64 KiB; bigger closes with 1009 */
    /* The limits of the outbound queue (see outq.h); a queue past them is a
     * slow consumer, closed with 1008. NULL: max_queue bytes at most. */
    struct outq_class *queue_class;
    size_t max_queue;            /* without a class: 0 = 4 MiB */
    unsigned write_deadline_ms;  /* a pong queued this long unsent while the
                                    peer pings on: 1008 (0 = 5 s) */
    unsigned handshake_timeout_ms; /* client role: 0 = 10 s */
    unsigned ping_interval_ms;   /* server role: 0 = never ping */
    unsigned close_timeout_ms;   /* 0 = 2 s to wait for the peer's close */
    /* Client role: connect over TLS with this context (not owned; it must
     * outlive the connection), naming tls_server_name (NULL: the host) for
     * SNI and verification. The server role takes TLS from the request. */
    tls_ctx *tls;
    const char *tls_server_name;
    /* Client role: the local IP address (a literal, port left to the
     * kernel) to bind the socket to before connecting, or NULL for the
     * kernel's choice. The load bench spreads many connections over
     * 127.0.0.x this way, each source address with its own ephemeral
     * ports. Read only during ws_conn_connect. */
    const char *bind_addr;
};

/* Server role: completes the handshake of an upgrade request handed over by
 * http_server (see http_upgrade_fn) and takes tcp (freed when the
 * connection ends); rest are bytes received after the request. On a bad
 * handshake returns -1 without taking tcp, with the reason in err and the
 * HTTP status to answer (400 or 426) in *status. */
int ws_conn_accept(uv_loop_t *loop, http_request *req, uv_tcp_t *tcp,
                   const char *rest, size_t rest_len,
                   const struct ws_conn_config *cfg,
                   const struct ws_conn_callbacks *cb, void *ud, ws_conn **out,
                   int *status, char *err, size_t errlen);

/* Client role: connects to host:port (an IPv4 or IPv6 literal, or
 * "localhost"), from cfg->bind_addr when set, sends the handshake for path
 * and calls on_open when the server accepted it, or on_close (1006) when
 * anything failed (a bind or connect error too). Returns 0, or UV_EINVAL
 * (host or bind_addr not an address, path too long) with nothing created. */
int ws_conn_connect(uv_loop_t *loop, const char *host, int port,
                    const char *path, const struct ws_conn_config *cfg,
                    const struct ws_conn_callbacks *cb, void *ud,
                    ws_conn **out);

/* Queues a complete frame built by the caller (server role: unmasked; a
 * reference is taken). Returns 0; UV_ENOBUFS when the peer is a slow
 * consumer (the connection is being closed with 1008: what it had queued
 * is dropped and the close frame goes next); UV_EPIPE when it is closing. */
int ws_conn_send_frame(ws_conn *c, msgbuf *frame);

/* The same, written at once when nothing is queued (outq_push_now): for a
 * fan-out, which gives each connection one frame per loop turn. */
int ws_conn_send_frame_now(ws_conn *c, msgbuf *frame);

/* Frames data as one text message (masked in client role) and queues it. */
int ws_conn_send_text(ws_conn *c, const char *data, size_t len);

/* Frames data as one binary message (masked in client role) and queues it;
 * returns as ws_conn_send_frame. */
int ws_conn_send_binary(ws_conn *c, const void *data, size_t len);

/* Starts the close handshake with code and reason; incoming messages are
 * no longer delivered. */
void ws_conn_close(ws_conn *c, int code, const char *reason);

/* Closes the socket at once (no handshake). */
void ws_conn_abort(ws_conn *c);

/* Stops (pause true) or resumes reading from the peer, for back-pressure:
 * TCP then slows the sender. While paused, a missing pong does not count
 * against the peer. Returns 0 or a UV_E* code (resuming failed: closed). */
int ws_conn_pause(ws_conn *c, bool pause);

/* Whether messages can still be sent (no close started). */
bool ws_conn_is_open(const ws_conn *c);

const char *ws_conn_peer_addr(const ws_conn *c);
/* When the bytes now handed to on_text or on_binary were read: util_now_ns()
 * taken once per read, so every frame of one read has the same time. A
 * caller wanting a frame's arrival time takes it here rather than reading
 * the clock per frame. */
uint64_t ws_conn_read_ns(const ws_conn *c);
/* Payload bytes queued, and the memory they are accounted as. */
size_t ws_conn_queued_bytes(const ws_conn *c);
size_t ws_conn_queued_mem(const ws_conn *c);
void *ws_conn_ud(const ws_conn *c);
void ws_conn_set_ud(ws_conn *c, void *ud);

#endif
