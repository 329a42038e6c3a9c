/* node: the state of one chat node, shared by its modules.
 * Data path: client (WebSocket) -> relay (assign seq, serialize once,
 * store) -> every local client and every peer link; peer link -> relay
 * (store) -> local clients only. store keeps the history; history answers
 * clients' catch-up requests; sync repairs peers' gaps from the store.
 * membership keeps the node registered and logged in with discovery and
 * feeds the active list to mesh, which keeps exactly one link (peer) per
 * active node. status answers /healthz and /api/status. */
#ifndef DCHAT_NODE_H
#define DCHAT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/http_server.h"
#include "common/netaddr.h"
#include "node/store.h"

struct membership;
struct mesh;
struct clients;
struct relay;
struct store;
struct flow;
struct origins;

struct node_config {
    char secret_file[512];  /* --cluster-secret-file, or empty */
    bool insecure;          /* --insecure: no secret needed */
    char discovery_url[256];
    char listen_host[64];   /* bind address for both ports */
    int client_port;        /* 0 = any */
    int sync_port;          /* 0 = any */
    struct netaddr_advertise advertise; /* --advertise: what login announces;
                               host "" = the address discovery sees, a
                               port 0 = the bound one */
    char data_dir[512];
    size_t max_message;     /* client frame bound (1009 beyond) */
    size_t max_queue;       /* soft bound of a client's outbound queue, bytes */
    size_t max_queue_hard;  /* hard bound: 1008 at once beyond */
    unsigned write_deadline_ms; /* past the soft bound this long without
                               write progress: 1008 */
    size_t max_clients;     /* WebSocket clients at most (503 beyond) */
    unsigned heartbeat_ms;  /* discovery heartbeat period */
    unsigned ping_ms;       /* WebSocket ping period to clients */
    unsigned drain_ms;      /* on SIGTERM, close the clients over this long */
    unsigned handshake_ms;  /* HTTP request / WebSocket handshake limit,
                               the first request's from accept */
    struct origins *allowed_origins; /* --allowed-origins; NULL: any */
    unsigned test_drop_every; /* test only: drop every Nth relayed delivery */
    bool test_hooks;        /* test only: POST /api/test/cut-link */
    bool test_before_retention; /* test only: no HELLO features; a MARKS
                               frame with floors is a bad frame */
    int fsync_mode;         /* enum store_fsync */
    unsigned sync_interval_ms; /* anti-entropy period per peer link */
    unsigned sync_limit;    /* messages per clientSyncReply at most */
    unsigned sync_scan;     /* rows such a reply looks at for a client in rooms */
    struct store_retention retention; /* --history-max-age/-messages/-bytes */
    char tls_cert[512];     /* --tls-cert: PEM chain, or empty (no TLS) */
    char tls_key[512];      /* --tls-key */
    bool tls_only;          /* --tls-only: plain clients refused */
    bool peer_tls;          /* --peer-tls: peer links run on TLS */
};

typedef struct node {
    uv_loop_t *loop;
    struct node_config cfg;
    uint32_t id;               /* 0 until registered with discovery */
    char password[65];
    http_server *http;         /* client port: HTTP + WebSocket */
    uv_tcp_t sync_listener;    /* sync port: peer links */
    int client_port;           /* as bound */
    int sync_port;
    struct membership *membership;
    struct mesh *mesh;
    struct clients *clients;
    struct relay *relay;
    struct store *store;       /* history (DATA_DIR/history.db) */
    struct flow *flow;         /* back-pressure, queue limits */
    struct tls_ctx *tls_server;      /* --tls-cert/--tls-key: client port and
                                        accepted peer links; NULL = no TLS */
    struct tls_ctx *tls_peer_client; /* --peer-tls: dialled peer links */
    bool stopping;
    uint64_t started_ms;
} node;

#endif
