/* http_server: an HTTP/1.1 server on libuv with llhttp parsing.
 * Keep-alive and pipelined requests, Content-Length bodies, and limits that
 * keep a bad client from hurting the others: header size (431), body size
 * (413), time to receive a whole request (408), and a connection cap.
 * A request with more than one Host header or an invalid one gets 400, and
 * so does an HTTP/1.1 one without (RFC 9112 3.2); HTTP/1.0 may omit it.
 * Handlers answer synchronously; errors go out as JSON {"error": "..."}.
 * A connection that ends after an answer (an error such as 413, or
 * "Connection: close") ends with a lingering close, so that a client that
 * is still sending reads the answer instead of a reset.
 * A request that asks for an Upgrade (WebSocket) can be handed, with its
 * socket, to the owner of the server: the node serves HTTP and WebSocket on
 * one port this way. */
#ifndef DCHAT_HTTP_SERVER_H
#define DCHAT_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "common/tls.h"

typedef struct http_server http_server;

typedef struct http_request {
    const char *method;   /* "GET", "POST", ... */
    const char *path;     /* decoded only as far as llhttp does; no query */
    const char *query;    /* the part after '?', or "" */
    const char *body;     /* NUL-terminated (the NUL is not in body_len) */
    size_t body_len;
    const char *peer_addr; /* bare IP: "127.0.0.1", "::1"; a v4-mapped
                              IPv6 peer is shown as plain IPv4 */
    int peer_port;
    void *priv;            /* the server's; do not touch */
} http_request;

/* Case-insensitive header lookup; NULL when absent. The string lives as
 * long as the request. */
const char *http_request_header(const http_request *req, const char *name);

/* Whether req came over TLS (https), as long as the TLS state has not been
 * taken (below). */
bool http_request_is_tls(const http_request *req);

/* The TLS state of req's connection (NULL when plain), which the caller
 * now owns: for an upgrade callback that takes the socket (ws_conn_accept
 * does), so that the WebSocket goes on over the same session. */
tls_conn *http_request_take_tls(http_request *req);

/* Adds the header line "name: value" to req's answer. Call it from the
 * handler before its http_respond* call; what is added for one request
 * never carries over to the next. The server writes Content-Type,
 * Content-Length and Connection itself: those names (and Transfer-Encoding)
 * are refused, as are names that are not HTTP tokens, values with control
 * characters other than tab, and lines beyond HTTP_ANSWER_HEADERS_MAX bytes
 * in all. Returns 0, or -1 with nothing added. Example: a 405 answer must
 * name the allowed methods, http_answer_add_header(req, "Allow", "POST"). */
#define HTTP_ANSWER_HEADERS_MAX 512
int http_answer_add_header(http_request *req, const char *name, const char *value);

/* Answers req. Exactly one http_respond* call per request, from inside the
 * handler. The body is copied. The answer to a HEAD request is its header
 * section only (RFC 9112 6.3): Content-Length still states len, the length
 * the body would have, but no body bytes follow. The server routes nothing
 * itself: a handler sees method "HEAD" and decides; answering it as GET
 * (discovery's API does) gives exactly the GET answer's headers. */
void http_respond(http_request *req, int status, const char *content_type,
                  const char *body, size_t len);
/* Answers with the compact JSON dump of body, and takes the reference
 * (json_decref is done here). */
void http_respond_json(http_request *req, int status, json_t *body);
/* Answers {"error": "<formatted message>"} with the given status. */
void http_respond_error(http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Called once per complete request. It must answer with http_respond*. */
typedef void (*http_handler_fn)(http_request *req, void *ud);

/* Called for a complete request that carries "Connection: upgrade" and an
 * Upgrade header. Either:
 *  - take the socket: return 1. tcp is a heap-allocated uv_tcp_t that now
 *    belongs to the callee, reading stopped, tcp->data unset; rest/rest_len
 *    are the bytes already received after the request (copy them before
 *    returning). The callee must eventually uv_close() it and free() it in
 *    the close callback. Do not call http_respond* in this case.
 *  - or refuse: answer with http_respond* and return 0; the server sends
 *    the answer and closes the connection.
 * When no upgrade callback is set, upgrade requests get 400. */
typedef int (*http_upgrade_fn)(http_request *req, uv_tcp_t *tcp,
                               const char *rest, size_t rest_len, void *ud);

struct http_server_config {
    http_handler_fn handler;
    http_upgrade_fn on_upgrade;    /* may be NULL */
    void *ud;                      /* passed to the callbacks */
    size_t max_header_bytes;       /* 0 = 8 KiB; beyond: 431 and close */
    size_t max_body_bytes;         /* 0 = 1 MiB; beyond: 413 and close */
    unsigned request_timeout_ms;   /* 0 = 10 s to receive a whole request:
                                      the first from accept, later ones from
                                      their first byte; beyond: 408 and
                                      close (silently when not a byte of the
                                      first request came).
                                      Also, once over 1 MiB of answers wait
                                      and reading is paused: the longest the
                                      client may read none of them */
    unsigned idle_timeout_ms;      /* 0 = 60 s idle keep-alive between
                                      requests, then close;
                                      while answers wait to be written, the
                                      client must read some in each period */
    unsigned max_connections;      /* 0 = 10000; beyond: 503 and close */
    /* Reads handled per loop turn, over all connections (0 = 32). A
     * request, and for an upgrade the handshake that follows, costs tens of
     * microseconds: thousands of clients reconnecting at once would
     * otherwise be served in one turn and hold everything else on the loop
     * (a node's message flow) for a second. Past the budget, what a read
     * brought waits, and that connection is not read, until a later turn;
     * while some wait, new reads queue behind them, and each turn begins
     * with the oldest. The request timeout runs all the same. Accepting
     * stays immediate, so the kernel's queue never overflows. */
    unsigned reads_per_turn;
    /* Connections taken by on_upgrade and still open (each holds a
     * descriptor), counted against max_connections with the server's own,
     * so that one cap on descriptors serves HTTP and upgraded connections
     * alike: a burst of handshakes may use what upgraded connections do
     * not. Called with ud at each accept; NULL: they are not counted. */
    size_t (*upgraded_count)(void *ud);
    /* TLS (not owned): a connection whose first byte starts a TLS
     * handshake speaks TLS, any other plain HTTP, unless tls_only, which
     * answers plain requests 400. NULL: plain HTTP only. */
    tls_ctx *tls;
    bool tls_only;
    /* Lingering close: once the last answer of a connection that ends is
     * written, the server shuts down its sending side and reads and drops
     * what the client still sends, then closes at the client's EOF, after
     * linger_timeout_ms, or past linger_max_bytes, whichever comes first.
     * Lingering connections count against max_connections; at most 16
     * refused (503) ones linger at once, the others close at once. */
    unsigned linger_timeout_ms;    /* 0 = 2 s */
    size_t linger_max_bytes;       /* 0 = 8 MiB */
};

/* Binds host:port (port 0 picks a free one; host may be an IPv4 or IPv6
 * literal; "::" listens dual-stack) and starts listening. cfg is copied.
 * Returns 0 and *out, or a negative UV_E* code (nothing left allocated). */
int http_server_start(uv_loop_t *loop, const char *host, int port,
                      const struct http_server_config *cfg,
                      http_server **out);

/* The port actually bound. */
int http_server_port(const http_server *s);

/* Number of open connections (for status pages and tests). */
unsigned http_server_connections(const http_server *s);

/* Reads that waited for a later loop turn (reads_per_turn), since start. */
uint64_t http_server_deferred(const http_server *s);

/* Stops listening, closes every connection, and frees the server once all
 * handles are closed; then calls done(ud) if done is not NULL. */
void http_server_close(http_server *s, void (*done)(void *ud), void *ud);

/* --- a connection without a socket (fuzzing and tests) ---------------------
 * A probe is one connection of a server that does not listen: bytes are fed
 * by hand and the answers are collected instead of written. Everything the
 * server does with a request's bytes runs as it does on a socket: llhttp,
 * the header, body and count limits, the handler, pipelining, upgrade
 * requests (on_upgrade must answer and return 0: there is no socket to
 * take). What needs a socket or time does not happen: writes complete at
 * once, timers fire only if the caller runs the loop. */
typedef struct http_probe http_probe;

/* cfg is copied; handlers run on the caller's stack during feeds. */
http_probe *http_probe_new(uv_loop_t *loop, const struct http_server_config *cfg);

/* Feeds len bytes as if read from the socket. Returns 0, or 1 once the
 * connection ends (an answer said Connection: close, an error such as 400
 * or 431, a refused upgrade): more input is then ignored. */
int http_probe_feed(http_probe *p, const char *data, size_t len);

/* Every answer so far, in order, NUL-terminated; owned by the probe.
 * *last (when not NULL) is where the latest answer starts. */
const char *http_probe_output(const http_probe *p, size_t *len, size_t *last);

/* Closes the connection (running loop until its handles are closed) and
 * frees the probe. */
void http_probe_free(http_probe *p);

#endif
