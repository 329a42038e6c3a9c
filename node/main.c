/* node: the chat server. Serves WebSocket clients (the DSatter protocol)
 * and plain HTTP status on the client port, links to every other active
 * node over TCP on the sync port, and keeps its membership with the
 * discovery daemon. This file reads the options, starts the modules in
 * order and stops them in reverse on SIGINT/SIGTERM. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/dirlock.h"
#include "common/fdlimit.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/msgbuf.h"
#include "common/origins.h"
#include "common/outq.h"
#include "common/secret.h"
#include "common/tls.h"
#include "common/util.h"
#include "node/clients.h"
#include "node/history.h"
#include "node/flow.h"
#include "node/membership.h"
#include "node/mesh.h"
#include "node/node.h"
#include "node/peer_proto.h"
#include "node/relay.h"
#include "node/status.h"
#include "node/store.h"

#define NODE_SHUTDOWN_LIMIT_MS 5000
/* Descriptors kept for all but clients: stdio, two listeners, the store's
 * database, WAL and shared memory on two connections, libuv's own, the
 * discovery client, and peer links: up to 64 not yet past their hello
 * and a few hundred up. */
#define NODE_FD_RESERVE 512
/* The largest --max-message: its text, the sender and the headers must fit
 * one peer frame (PEER_PROTO_MAX_FRAME). */
#define NODE_MAX_MESSAGE_LIMIT ((long)PEER_PROTO_MAX_FRAME - 1024)

enum {
    OPT_DISCOVERY, OPT_LISTEN, OPT_CLIENT_PORT, OPT_SYNC_PORT, OPT_ADVERTISE,
    OPT_DATA_DIR, OPT_MAX_MESSAGE, OPT_MAX_QUEUE, OPT_MAX_QUEUE_HARD, OPT_WRITE_DEADLINE,
    OPT_MAX_CLIENTS, OPT_HEARTBEAT, OPT_PING, OPT_DRAIN,
    OPT_HANDSHAKE, OPT_ALLOWED_ORIGINS, OPT_FSYNC, OPT_SYNC_INTERVAL, OPT_SYNC_LIMIT, OPT_SYNC_SCAN,
    OPT_HISTORY_MAX_AGE, OPT_HISTORY_MAX_MESSAGES, OPT_HISTORY_MAX_BYTES, OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_SECRET_FILE, OPT_INSECURE, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_ONLY, OPT_PEER_TLS,
    OPT_TEST_DROP, OPT_TEST_HOOKS, OPT_TEST_BEFORE_RETENTION,
};

static const struct cli_option node_options[] = {
    [OPT_DISCOVERY] = { "discovery", 'd', "URL", "NODE_DISCOVERY",
                        "discovery daemon (default http://127.0.0.1:8080)" },
    [OPT_LISTEN] = { "listen", 'l', "ADDR", "NODE_LISTEN",
                     "address both ports bind to (default 0.0.0.0; :: for dual stack)" },
    [OPT_CLIENT_PORT] = { "client-port", 'c', "PORT", "NODE_CLIENT_PORT",
                          "WebSocket + HTTP port, 0 picks a free one (default 0)" },
    [OPT_SYNC_PORT] = { "sync-port", 's', "PORT", "NODE_SYNC_PORT",
                        "peer link port, 0 picks a free one (default 0)" },
    [OPT_ADVERTISE] = { "advertise", 'a', "HOST[:CLIENTPORT[:SYNCPORT]]", "NODE_ADVERTISE",
                        "what discovery hands out: clients connect to HOST:CLIENTPORT and "
                        "peers dial HOST:SYNCPORT, e.g. the published side of a port mapping; "
                        "HOST an IP address, IPv6 in brackets when ports follow; a port left "
                        "out is the bound one (default: the address discovery sees, the "
                        "bound ports)" },
    [OPT_DATA_DIR] = { "data-dir", 'D', "DIR", "NODE_DATA_DIR",
                       "where the identity (node.json) and the history (history.db) live "
                       "(default ./data/node)" },
    [OPT_MAX_MESSAGE] = { "max-message", 0, "BYTES", "NODE_MAX_MESSAGE",
                          "largest client message, at most 1047552; bigger closes with 1009 "
                          "(default 65536)" },
    [OPT_MAX_QUEUE] = { "max-queue", 0, "BYTES", "NODE_MAX_QUEUE",
                        "soft bound of a client's outbound queue: past it with no write "
                        "progress for --write-deadline closes with 1008 (default 4194304)" },
    [OPT_MAX_QUEUE_HARD] = { "max-queue-hard", 0, "BYTES", "NODE_MAX_QUEUE_HARD",
                             "hard bound of a client's outbound queue: past it closes with "
                             "1008 at once (default 67108864)" },
    [OPT_WRITE_DEADLINE] = { "write-deadline", 0, "SECONDS", "NODE_WRITE_DEADLINE",
                             "how long a queue past --max-queue may go without write "
                             "progress (default 5)" },
    [OPT_MAX_CLIENTS] = { "max-clients", 0, "N", "NODE_MAX_CLIENTS",
                          "WebSocket clients at most; more get HTTP 503 (default: from the "
                          "descriptor limit, less a reserve for peers and the store)" },
    [OPT_HEARTBEAT] = { "heartbeat-ms", 0, "MS", "NODE_HEARTBEAT_MS",
                        "discovery heartbeat period; keep under a third of its --ttl (default 1000)" },
    [OPT_PING] = { "ping-interval-ms", 0, "MS", "NODE_PING_INTERVAL_MS",
                   "WebSocket ping period; clients that do not answer are dropped, 0 = off (default 10000)" },
    [OPT_DRAIN] = { "drain-seconds", 0, "SECONDS", "NODE_DRAIN_SECONDS",
                    "on SIGTERM, after leaving discovery and refusing new clients, close "
                    "the clients spread over this long, so that their reconnects spread "
                    "over the other nodes; 0 = all at once (default 0)" },
    [OPT_HANDSHAKE] = { "handshake-timeout-ms", 0, "MS", "NODE_HANDSHAKE_TIMEOUT_MS",
                        "time allowed for an HTTP request or WebSocket handshake, the first "
                        "counted from connecting (default 10000)" },
    [OPT_ALLOWED_ORIGINS] = { "allowed-origins", 0, "LIST", "NODE_ALLOWED_ORIGINS",
                              "web origins (scheme://host[:port], comma-separated) that may "
                              "open a WebSocket; another Origin gets 403, none and the "
                              "node's own page are always accepted (default: any)" },
    [OPT_FSYNC] = { "fsync", 0, "MODE", "NODE_FSYNC",
                    "history durability: always (fsync each batch before sending it), batch "
                    "(commit before sending, fsync at checkpoints), off (default batch)" },
    [OPT_SYNC_INTERVAL] = { "sync-interval", 0, "SECONDS", "NODE_SYNC_INTERVAL",
                            "how often linked nodes compare histories (default 5)" },
    [OPT_SYNC_LIMIT] = { "sync-limit", 0, "N", "NODE_SYNC_LIMIT",
                         "messages per clientSyncReply at most (default 1000)" },
    [OPT_SYNC_SCAN] = { "sync-scan", 0, "N", "NODE_SYNC_SCAN",
                        "stored messages a clientSyncReply for a client in chat rooms looks "
                        "through at most, to find those of its chats; it says where to go on "
                        "(default 20000)" },
    [OPT_HISTORY_MAX_AGE] = { "history-max-age", 0, "DURATION", "NODE_HISTORY_MAX_AGE",
                              "retention: remove messages older than this, e.g. 30d, 12h, 90m, "
                              "45s; every node of a cluster alike; 0 = no age limit (default 0)" },
    [OPT_HISTORY_MAX_MESSAGES] = { "history-max-messages", 0, "N", "NODE_HISTORY_MAX_MESSAGES",
                                   "retention: keep the newest N messages of each chat; 0 = no "
                                   "limit (default 0)" },
    [OPT_HISTORY_MAX_BYTES] = { "history-max-bytes", 0, "SIZE", "NODE_HISTORY_MAX_BYTES",
                                "retention: the whole history at most this big (file and WAL), "
                                "oldest messages removed first, e.g. 512M, 2G; at least 16M; 0 = "
                                "no limit (default 1G)" },
    [OPT_LOG_LEVEL] = { "log-level", 0, "LEVEL", "DCHAT_LOG_LEVEL",
                        "debug, info, warn, error (default info)" },
    [OPT_LOG_FORMAT] = { "log-format", 0, "FORMAT", "DCHAT_LOG_FORMAT",
                         "text (default) or json: one JSON object per line (time, level, "
                         "program, node_id, msg), for log shippers" },
    [OPT_SECRET_FILE] = { "cluster-secret-file", 0, "FILE", "NODE_CLUSTER_SECRET_FILE",
                          "the cluster secret, shared by every node and discovery (or set "
                          "DCHAT_CLUSTER_SECRET); peers and discovery must prove it" },
    [OPT_INSECURE] = { "insecure", 0, NULL, NULL,
                       "run without a cluster secret: anyone who reaches the sync port is a "
                       "peer (for a laptop, never a network)" },
    [OPT_TLS_CERT] = { "tls-cert", 0, "FILE", "NODE_TLS_CERT",
                       "PEM certificate chain: the client port then also speaks TLS (wss://, "
                       "https://), told apart from plain by its first byte" },
    [OPT_TLS_KEY] = { "tls-key", 0, "FILE", "NODE_TLS_KEY",
                      "PEM private key of --tls-cert" },
    [OPT_TLS_ONLY] = { "tls-only", 0, NULL, NULL,
                       "refuse plain clients (HTTP 400): wss:// and https:// only" },
    [OPT_PEER_TLS] = { "peer-tls", 0, NULL, NULL,
                       "peer links run on TLS with --tls-cert (every node of the cluster "
                       "must say so), bound to the cluster secret's proofs" },
    [OPT_TEST_DROP] = { "test-drop-every", 0, "N", NULL,
                        "TESTS ONLY: drop every Nth message from peers before local delivery" },
    [OPT_TEST_HOOKS] = { "test-hooks", 0, NULL, NULL,
                         "TESTS ONLY: serve POST /api/test/cut-link?peer=N&ms=M" },
    [OPT_TEST_BEFORE_RETENTION] = { "test-before-retention", 0, NULL, NULL,
                                    "TESTS ONLY: towards peers, act as a node built before "
                                    "retention (no HELLO features; MARKS with floors are a "
                                    "bad frame)" },
};

static int copy_opt(char *dst, size_t len, const char *v, char *err, size_t errlen)
{
    if (strlen(v) >= len) {
        snprintf(err, errlen, "too long (at most %zu characters)", len - 1);
        return -1;
    }
    strcpy(dst, v);
    return 0;
}

/* Seconds, fractions allowed, from min to max, into milliseconds. */
static int seconds_to_ms(const char *v, double min, double max, unsigned *ms, char *err,
                         size_t errlen)
{
    char *end;
    double sec = strtod(v, &end);
    if (end == v || *end != '\0' || !(sec >= min && sec <= max)) {
        snprintf(err, errlen, "expected seconds between %g and %g", min, max);
        return -1;
    }
    *ms = (unsigned)(sec * 1000 + 0.5);
    return 0;
}

static int set_option(int index, const char *v, void *ud, char *err, size_t errlen)
{
    struct node_config *c = ud;
    long l;
    char host[64];
    int port;

    switch (index) {
    case OPT_DISCOVERY:
        if (http_client_parse_url(v, host, sizeof(host), &port, NULL, 0) != 0) {
            snprintf(err, errlen, "expected http://HOST:PORT");
            return -1;
        }
        return copy_opt(c->discovery_url, sizeof(c->discovery_url), v, err, errlen);
    case OPT_LISTEN:
        return copy_opt(c->listen_host, sizeof(c->listen_host), v, err, errlen);
    case OPT_CLIENT_PORT:
    case OPT_SYNC_PORT:
        if (cli_long(v, 0, 65535, "a port number", &l, err, errlen) != 0)
            return -1;
        *(index == OPT_CLIENT_PORT ? &c->client_port : &c->sync_port) = (int)l;
        return 0;
    case OPT_ADVERTISE:
        return netaddr_parse_advertise(v, &c->advertise, err, errlen);
    case OPT_DATA_DIR:
        return copy_opt(c->data_dir, sizeof(c->data_dir), v, err, errlen);
    case OPT_MAX_MESSAGE:
        /* A message must fit a peer frame with its sender and header. */
        if (cli_long(v, 128, NODE_MAX_MESSAGE_LIMIT, "bytes", &l, err, errlen) != 0)
            return -1;
        c->max_message = (size_t)l;
        return 0;
    case OPT_MAX_QUEUE:
    case OPT_MAX_QUEUE_HARD:
        if (cli_long(v, 4096, 1L << 30, "bytes", &l, err, errlen) != 0)
            return -1;
        *(index == OPT_MAX_QUEUE ? &c->max_queue : &c->max_queue_hard) = (size_t)l;
        return 0;
    case OPT_WRITE_DEADLINE:
        return seconds_to_ms(v, 0.05, 3600, &c->write_deadline_ms, err, errlen);
    case OPT_MAX_CLIENTS:
        if (cli_long(v, 1, 10000000, "a count", &l, err, errlen) != 0)
            return -1;
        c->max_clients = (size_t)l;
        return 0;
    case OPT_HEARTBEAT:
    case OPT_HANDSHAKE:
        if (cli_long(v, 50, 600000, "milliseconds", &l, err, errlen) != 0)
            return -1;
        *(index == OPT_HEARTBEAT ? &c->heartbeat_ms : &c->handshake_ms) = (unsigned)l;
        return 0;
    case OPT_ALLOWED_ORIGINS: {
        origins *list = origins_parse(v, err, errlen);
        if (list == NULL)
            return -1;
        origins_free(c->allowed_origins); /* the command line over the environment */
        c->allowed_origins = list;
        return 0;
    }
    case OPT_PING:
        if (cli_long(v, 0, 3600000, "milliseconds", &l, err, errlen) != 0)
            return -1;
        c->ping_ms = (unsigned)l;
        return 0;
    case OPT_DRAIN:
        if (cli_long(v, 0, 3600, "whole seconds", &l, err, errlen) != 0)
            return -1;
        c->drain_ms = (unsigned)l * 1000;
        return 0;
    case OPT_LOG_LEVEL:
        return cli_log_level(v, err, errlen);
    case OPT_LOG_FORMAT:
        return cli_log_format(v, err, errlen);
    case OPT_FSYNC: {
        enum store_fsync mode;
        if (store_parse_fsync(v, &mode) != 0) {
            snprintf(err, errlen, "expected always, batch or off");
            return -1;
        }
        c->fsync_mode = (int)mode;
        return 0;
    }
    case OPT_SYNC_INTERVAL:
        return seconds_to_ms(v, 0.05, 86400, &c->sync_interval_ms, err, errlen);
    case OPT_SYNC_LIMIT:
        if (cli_long(v, 1, 100000, "a count", &l, err, errlen) != 0)
            return -1;
        c->sync_limit = (unsigned)l;
        return 0;
    case OPT_SYNC_SCAN:
        if (cli_long(v, 100, 10000000, "a count", &l, err, errlen) != 0)
            return -1;
        c->sync_scan = (unsigned)l;
        return 0;
    case OPT_HISTORY_MAX_AGE:
        if (store_parse_duration(v, &c->retention.max_age_ms) != 0) {
            snprintf(err, errlen, "expected a duration such as 30d, 12h, 90m, 45s or 0");
            return -1;
        }
        return 0;
    case OPT_HISTORY_MAX_MESSAGES:
        if (cli_long(v, 0, 1000000000, "a count", &l, err, errlen) != 0)
            return -1;
        c->retention.max_messages = (uint64_t)l;
        return 0;
    case OPT_HISTORY_MAX_BYTES:
        if (store_parse_size(v, &c->retention.max_bytes) != 0 ||
            (c->retention.max_bytes != 0 && c->retention.max_bytes < STORE_MIN_MAX_BYTES)) {
            snprintf(err, errlen, "expected a size such as 512M or 2G, at least 16M, or 0");
            return -1;
        }
        return 0;
    case OPT_SECRET_FILE:
        return copy_opt(c->secret_file, sizeof(c->secret_file), v, err, errlen);
    case OPT_INSECURE:
        c->insecure = true;
        return 0;
    case OPT_TLS_CERT:
        return copy_opt(c->tls_cert, sizeof(c->tls_cert), v, err, errlen);
    case OPT_TLS_KEY:
        return copy_opt(c->tls_key, sizeof(c->tls_key), v, err, errlen);
    case OPT_TLS_ONLY:
        c->tls_only = true;
        return 0;
    case OPT_PEER_TLS:
        c->peer_tls = true;
        return 0;
    case OPT_TEST_HOOKS:
        c->test_hooks = true;
        return 0;
    case OPT_TEST_BEFORE_RETENTION:
        c->test_before_retention = true;
        return 0;
    case OPT_TEST_DROP:
        if (cli_long(v, 0, 1000000000, "a count", &l, err, errlen) != 0)
            return -1;
        c->test_drop_every = (unsigned)l;
        return 0;
    }
    return -1;
}

/* --- descriptors ------------------------------------------------------------ */

/* Raises the soft descriptor limit to the hard one and shares it out:
 * NODE_FD_RESERVE for what is not a connection and for peer links, the
 * rest for connections on the client port, WebSocket and HTTP alike (the
 * HTTP server counts the upgraded ones, clients_count, against one cap).
 * WebSocket clients may take all of it but a sixty-fourth (at least 16),
 * kept for status requests and handshakes, unless --max-clients says
 * otherwise. So a burst of handshakes (all clients reconnecting after a
 * restart) may use every descriptor that clients do not hold yet, and the
 * node never runs out of descriptors for its peers, its store or its
 * discovery heartbeat however many clients come: the ones past the cap
 * get a 503. Returns the cap on connections in all. */
static unsigned descriptor_budget(struct node_config *c)
{
    uint64_t limit = fdlimit_raise_logged("the node");
    unsigned room = fdlimit_connections(limit, NODE_FD_RESERVE);
    if (room < 32) {
        log_warn("descriptors: the limit %llu leaves %u for clients after %d kept for "
                 "peers and the store; raise ulimit -n", (unsigned long long)limit, room,
                 NODE_FD_RESERVE);
        room = 32;
    }
    unsigned http_only = UTIL_MAX(room / 64, 16u);
    size_t clients = room - http_only;
    if (c->max_clients == 0)
        c->max_clients = clients;
    else if (c->max_clients > clients)
        log_warn("--max-clients %zu is more than the descriptor limit %llu allows (%zu); "
                 "clients past that may fail to connect instead of getting 503: lower "
                 "--max-clients or raise ulimit -n", c->max_clients,
                 (unsigned long long)limit, clients);
    log_info("connections: at most %zu WebSocket clients, and %u connections in all with "
             "HTTP ones (descriptor limit %llu, %d kept for peers and the store)",
             c->max_clients, room, (unsigned long long)limit, NODE_FD_RESERVE);
    return room;
}

/* The client port's upgraded connections (http_server_config.upgraded_count). */
static size_t upgraded_clients(void *ud)
{
    node *n = ud;
    return clients_count(n->clients);
}

/* --- TLS ------------------------------------------------------------------ */

/* The TLS contexts the options ask for. Returns 0, or a sysexits code
 * after saying what is wrong. */
static int tls_setup(node *n)
{
    const struct node_config *c = &n->cfg;
    if ((c->tls_cert[0] != '\0') != (c->tls_key[0] != '\0')) {
        log_error("--tls-cert and --tls-key go together: give both, or neither");
        return EX_USAGE;
    }
    if ((c->tls_only || c->peer_tls) && c->tls_cert[0] == '\0') {
        log_error("%s needs a certificate: give --tls-cert and --tls-key",
                  c->tls_only ? "--tls-only" : "--peer-tls");
        return EX_USAGE;
    }
    if (c->tls_cert[0] == '\0')
        return 0;
    char err[600];
    n->tls_server = tls_ctx_server(c->tls_cert, c->tls_key, err, sizeof(err));
    if (n->tls_server == NULL) {
        log_error("%s", err);
        return EX_CONFIG;
    }
    if (c->peer_tls) {
        /* Peers are authenticated by the cluster secret bound to the TLS
         * session (peer_auth.h), not by certificates. */
        n->tls_peer_client = tls_ctx_client(NULL, err, sizeof(err));
        if (n->tls_peer_client == NULL) {
            log_error("%s", err);
            return EX_SOFTWARE;
        }
    }
    log_info("TLS: clients %s; peer links %s", c->tls_only ? "TLS only" : "TLS or plain",
             c->peer_tls ? "TLS" : "plain");
    return 0;
}

/* --- the relay's sinks: where its frames go ------------------------------ */

static void sink_clients(msgbuf *const *frames, const int64_t *chats, size_t nframes,
                         bool now, size_t *to, void *ud)
{
    node *n = ud;
    clients_broadcast(n->clients, frames, chats, nframes, now, to);
}

/* While the node stops, the store's last commit may come after the links
 * are gone (the mesh is freed and n->mesh cleared). */
static size_t sink_peers(msgbuf *frame, uint32_t origin, uint64_t seq, void *ud)
{
    node *n = ud;
    return n->mesh != NULL ? mesh_broadcast(n->mesh, frame, origin, seq) : 0;
}

/* Opens the history in the data dir (the node owns it; closed at
 * shutdown, before the links) with the relay as its commit callback, and
 * starts the relay on it with the sinks above. Returns 0, or -1 after
 * logging why. */
static int node_open_store(node *n)
{
    char err[1400];
    n->store = store_open(n->loop, n->cfg.data_dir, (enum store_fsync)n->cfg.fsync_mode,
                          relay_on_commit, n, err, sizeof(err));
    if (n->store == NULL) {
        log_error("%s; pass a writable --data-dir", err);
        return -1;
    }
    if (store_set_retention(n->store, &n->cfg.retention, err, sizeof(err)) != 0) {
        log_error("cannot set up the history's retention: %s", err);
        return -1;
    }
    log_info("history retention: max age %llu ms, max %llu messages per chat, max %llu bytes "
             "(0 = no limit)", (unsigned long long)n->cfg.retention.max_age_ms,
             (unsigned long long)n->cfg.retention.max_messages,
             (unsigned long long)n->cfg.retention.max_bytes);
    struct relay_sinks sinks = { .to_clients = sink_clients, .to_peers = sink_peers, .ud = n };
    relay_init(n, &sinks);
    return 0;
}

/* --- shutdown: clients and discovery first, then links and ports -------- */

static uv_signal_t sig_int, sig_term;
static uv_timer_t shutdown_timer;
static int shutdown_steps;

static void http_closed_cb(void *ud) { (void)ud; }

static bool store_closing, store_closed;

/* Last step: the store has committed everything (its held messages went
 * out to the links and clients still there); now the links and ports. */
static void store_closed_cb(void *ud)
{
    node *n = ud;
    n->store = NULL;
    store_closed = true;
    mesh_stop(n->mesh);
    http_server_close(n->http, http_closed_cb, n);
    uv_close((uv_handle_t *)&shutdown_timer, NULL);
    log_info("stopped");
}

static void close_store(node *n)
{
    if (store_closing)
        return;
    store_closing = true;
    store_close(n->store, store_closed_cb, n);
}

static void shutdown_step_done(node *n)
{
    if (--shutdown_steps > 0)
        return;
    /* No client sends any more; what is pending is committed (and what was
     * held for it sent) before the links close. */
    close_store(n);
}

static void shutdown_limit_cb(uv_timer_t *t)
{
    log_warn("shutdown did not finish within %d ms; stopping anyway",
             NODE_SHUTDOWN_LIMIT_MS);
    uv_stop(t->loop);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    node *n = s->data;
    if (n->stopping)
        return;
    n->stopping = true;
    log_info("received %s; logging out, closing clients and links",
             signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_timer_init(n->loop, &shutdown_timer);
    uv_timer_start(&shutdown_timer, shutdown_limit_cb,
                   NODE_SHUTDOWN_LIMIT_MS + (uint64_t)n->cfg.drain_ms, 0);
    uv_unref((uv_handle_t *)&shutdown_timer);
    shutdown_steps = 2;
    /* Discovery first: clients asking where to go hear of the others only.
     * Then the clients, at once or spread over --drain-seconds; the links
     * stay up meanwhile, so those still here keep getting everything. */
    membership_stop(n, shutdown_step_done);
    if (n->cfg.drain_ms > 0)
        log_info("draining: closing %zu clients over %u s", clients_count(n->clients),
                 n->cfg.drain_ms / 1000);
    clients_drain(n->clients, n->cfg.drain_ms, shutdown_step_done);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Whether malloc is glibc's (not a sanitizer's), for tune_malloc. */
#if defined(__SANITIZE_ADDRESS__)
#define NODE_OWN_MALLOC 0 /* ASan's allocator: mallopt is not glibc's */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NODE_OWN_MALLOC 0
#endif
#endif
#ifndef NODE_OWN_MALLOC
#define NODE_OWN_MALLOC 1
#endif

/* glibc's malloc gives the top of its heap back to the kernel whenever
 * more than 128 KiB of it is free, and takes it back at the next burst:
 * a brk call, then a page fault and a zeroed page per 4 KiB, over and over
 * as each burst's frames and batches come and go (perf: brk with its TLB
 * flushes and the faults were several per cent of a node flat out; the
 * median CPU per delivery fell by a fifth with these three, the same peak
 * RSS: docs/PERFORMANCE.md, "A sixth round"). Up to 8 MiB of free heap
 * stays, growth asks 1 MiB more than it needs, and only blocks of 1 MiB
 * and more get their own mapping. */
static void tune_malloc(void)
{
    if (!NODE_OWN_MALLOC)
        return;
    if (mallopt(M_TRIM_THRESHOLD, 8 << 20) != 1 || mallopt(M_TOP_PAD, 1 << 20) != 1 ||
        mallopt(M_MMAP_THRESHOLD, 1 << 20) != 1)
        log_warn("cannot tune malloc (mallopt failed): the node runs, with more CPU per "
                 "message spent on giving memory back and taking it again; is it linked "
                 "with an allocator other than glibc's?");
}

int main(int argc, char **argv)
{
    static node n;
    struct node_config *c = &n.cfg;

    log_init("node");
    strcpy(c->discovery_url, "http://127.0.0.1:8080");
    strcpy(c->listen_host, "0.0.0.0");
    strcpy(c->data_dir, "data/node");
    c->max_message = 64 * 1024;
    c->max_queue = 4 * 1024 * 1024;
    c->max_queue_hard = 64 * 1024 * 1024;
    c->write_deadline_ms = 5000;
    c->heartbeat_ms = 1000;
    c->ping_ms = 10000;
    c->handshake_ms = 10000;
    c->fsync_mode = STORE_FSYNC_BATCH;
    c->sync_interval_ms = 5000;
    c->sync_limit = 1000;
    c->sync_scan = HISTORY_SCAN_ROWS;
    c->retention.max_bytes = STORE_DEFAULT_MAX_BYTES;
    cli_parse(argc, argv, "node", "[OPTIONS]",
              "A dchat chat node: WebSocket clients (DSatter protocol) on the client port,\n"
              "a full-mesh TCP relay to the other nodes on the sync port, membership\n"
              "through the discovery daemon.",
              node_options, (int)ARRAY_SIZE(node_options), set_option, c);

    tune_malloc(); /* after the options: a warning in the log's format */
    signal(SIGPIPE, SIG_IGN);
    n.loop = uv_default_loop();
    n.started_ms = util_now_ms();

    if (c->max_queue_hard < c->max_queue) {
        log_error("--max-queue-hard (%zu) is below --max-queue (%zu); raise it or lower "
                  "--max-queue", c->max_queue_hard, c->max_queue);
        return EX_USAGE;
    }
    char serr[512];
    if (secret_load(c->secret_file, c->insecure, serr, sizeof(serr)) != 0) {
        log_error("%s", serr);
        return EX_USAGE;
    }
    if (!secret_present())
        log_warn("running --insecure, without a cluster secret: anyone who reaches the sync "
                 "port can join the mesh and forge messages; give every node and discovery "
                 "--cluster-secret-file");
    int trc = tls_setup(&n);
    if (trc != 0)
        return trc;
    unsigned conn_cap = descriptor_budget(c);
    char lerr[1400];
    int lock = dirlock_take(c->data_dir, lerr, sizeof(lerr));
    if (lock < 0) {
        log_error("%s", lerr);
        return EX_CANTCREAT;
    }
    if (membership_load(&n) != 0 || node_open_store(&n) != 0)
        return EX_CANTCREAT;
    flow_init(&n);
    n.clients = clients_new(&n);

    struct http_server_config hc = {
        .handler = status_handle,
        .on_upgrade = clients_on_upgrade,
        .ud = &n,
        .request_timeout_ms = c->handshake_ms, /* bounds the WebSocket handshake too */
        .max_connections = conn_cap,
        .upgraded_count = upgraded_clients,
        .tls = n.tls_server,
        .tls_only = c->tls_only,
    };
    int rc = http_server_start(n.loop, c->listen_host, c->client_port, &hc, &n.http);
    if (rc != 0) {
        log_error("cannot listen for clients on %s:%d: %s; pick another --client-port "
                  "or --listen address", c->listen_host, c->client_port, uv_strerror(rc));
        return EX_UNAVAILABLE;
    }
    n.client_port = http_server_port(n.http);
    rc = mesh_start(&n);
    if (rc != 0) {
        log_error("cannot listen for peers on %s:%d: %s; pick another --sync-port",
                  c->listen_host, c->sync_port, uv_strerror(rc));
        return EX_UNAVAILABLE;
    }

    if (n.id)
        printf("node %u listening clients on %s:%d sync on %s:%d\n", n.id,
               c->listen_host, n.client_port, c->listen_host, n.sync_port);
    else
        printf("node (registering) listening clients on %s:%d sync on %s:%d\n",
               c->listen_host, n.client_port, c->listen_host, n.sync_port);
    fflush(stdout);
    log_info("clients on %s:%d, peers on %s:%d, discovery %s", c->listen_host,
             n.client_port, c->listen_host, n.sync_port, c->discovery_url);
    if (c->allowed_origins != NULL)
        log_info("WebSocket handshakes with an Origin header must come from %s "
                 "(--allowed-origins); those without, and the node's own page, are accepted",
                 origins_describe(c->allowed_origins));

    membership_start(&n);

    uv_signal_init(n.loop, &sig_int);
    uv_signal_init(n.loop, &sig_term);
    sig_int.data = sig_term.data = &n;
    uv_signal_start(&sig_int, signal_cb, SIGINT);
    uv_signal_start(&sig_term, signal_cb, SIGTERM);

    uv_run(n.loop, UV_RUN_DEFAULT);

    /* Whatever is still open (the shutdown limit fired) is closed now so
     * the loop can be closed and leak checkers see a clean exit. */
    if (!store_closed) {
        /* The shutdown limit fired: still store what was accepted. The
         * store's last commit and its handles need the loop; the other
         * handles are closed after it is done. */
        close_store(&n);
        while (!store_closed)
            uv_run(n.loop, UV_RUN_ONCE);
    }
    outq_shutdown(n.loop);
    uv_walk(n.loop, close_walk_cb, NULL);
    uv_run(n.loop, UV_RUN_DEFAULT);
    relay_free(&n);
    clients_free(n.clients);
    flow_free(&n);
    tls_ctx_free(n.tls_server);
    tls_ctx_free(n.tls_peer_client);
    origins_free(c->allowed_origins);
    uv_loop_close(n.loop);
    msgbuf_trim();
    dirlock_release(lock); /* last: the store is closed */
    return 0;
}
