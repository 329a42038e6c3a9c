/* side: what the bench's engine (bench.c: sockets, rounds, pacing, checks,
 * report) asks of the system it measures, so that one engine drives a
 * dchat cluster (bench/dchat.c) or a NATS cluster (bench/nats.c) through
 * the same rounds. A side finds the servers, runs its protocol's handshake
 * on each WebSocket, turns the engine's markers into its messages and the
 * frames it receives back into markers (scan.h); the engine owns the
 * sockets and every count. Only the two sides implement this header. */
#ifndef DCHAT_BENCH_SIDE_H
#define DCHAT_BENCH_SIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bench/bench.h"
#include "bench/scan.h"
#include "common/ws_conn.h"

typedef struct bench bench;
typedef struct bench_sock bench_sock;

/* One server to put sockets on: ws://host:port/path. */
struct bench_server {
    char host[256];
    int port;
    char path[256];
};

struct bench_side {
    const char *name;       /* "dchat", "nats": the report's proto */
    size_t ctx_size;        /* the side's run state, zeroed, bench_side_ctx */
    size_t sock_size;       /* its state per socket, zeroed, bench_sock_state */
    /* Before round one, sender 1 sends probes until every socket has one:
     * for systems where a subscription reaches the other servers some time
     * after it is confirmed (NATS routes). */
    bool warm_up;
    /* Largest WebSocket message a server may send (ws_conn max_message). */
    size_t max_message;
    /* Finds the servers and calls bench_servers_found, or bench_fail (with
     * BENCH_NO_CLUSTER when there is none to measure). May answer later,
     * from the loop. */
    void (*find_servers)(bench *b);
    /* The socket's WebSocket is open: start the protocol's own handshake
     * and call bench_sock_ready once messages flow both ways. */
    void (*open)(bench_sock *s);
    /* Sends marker m (from the socket's sender, bench_sock_sender) as the
     * side's message. Returns 0 or a UV_E* code from ws_conn. */
    int (*send)(bench_sock *s, const struct scan_marker *m);
    /* A message arrived (binary: a binary WebSocket message). Calls
     * bench_sock_deliver for each of the bench's messages in it, or
     * bench_fail when the server reports an error. */
    void (*receive)(bench_sock *s, const uint8_t *data, size_t len, bool binary);
    /* The socket is gone: free what the side keeps in its state. May be NULL. */
    void (*close)(bench_sock *s);
    /* The run is over: free what the side keeps in its ctx. May be NULL. */
    void (*finish)(bench *b);
};

extern const struct bench_side bench_dchat_side;
extern const struct bench_side bench_nats_side;

/* ---- what the engine offers the sides ----------------------------------- */

const struct bench_config *bench_config(const bench *b);
uv_loop_t *bench_loop(const bench *b);
void *bench_side_ctx(const bench *b);
/* The run's token: markers of other tokens are someone else's traffic. */
uint32_t bench_token(const bench *b);

/* The servers (copied), one receiver on each; the senders go to --target,
 * or else to a random one of them. Then the engine connects. */
void bench_servers_found(bench *b, const struct bench_server *servers, unsigned n);

/* Ends the run with status (a BENCH_* code) and the reason, which should
 * say what failed and what to do. */
void bench_fail(bench *b, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

bench *bench_sock_bench(const bench_sock *s);
ws_conn *bench_sock_conn(const bench_sock *s);
void *bench_sock_state(const bench_sock *s);
/* 1..senders for a sender (which also receives), 0 for a receiver. */
unsigned bench_sock_sender(const bench_sock *s);
/* "sender 2 (on node 3 at 127.0.0.1:9001)", "receiver at ...": for errors. */
void bench_sock_name(const bench_sock *s, char *out, size_t cap);
/* The server's own id for the socket's name (dchat: the node id). */
void bench_sock_set_server_id(bench_sock *s, long id);
void bench_sock_ready(bench_sock *s);
/* One of the run's messages (or someone else's: the token is checked)
 * reached the socket. */
void bench_sock_deliver(bench_sock *s, const struct scan_marker *m);

#endif
