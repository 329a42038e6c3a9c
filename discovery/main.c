/* discovery: the daemon that tracks which chat nodes are alive. Nodes
 * register once, log in with their ports, and send heartbeats; clients and
 * nodes ask for the active list. Not on the message path. This file reads
 * the options, loads the cluster secret (refusing to start without one
 * unless --insecure), raises the descriptor limit and sizes the connection
 * cap from it, opens the registry, the replay cache and the registration
 * rate limiter, serves the API and sweeps expired nodes until
 * SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/dirlock.h"
#include "common/fdlimit.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/reqauth.h"
#include "common/secret.h"
#include "common/util.h"
#include "discovery/api.h"
#include "discovery/registry.h"

/* Descriptors kept for what is not a client connection: stdio, the
 * listener, SQLite's database and journal, libuv's epoll, signal and async
 * descriptors, and the refused connections that linger (at most 16, see
 * http_server.h). */
#define DISCOVERY_FD_RESERVE 32
#define DISCOVERY_MAX_CONNS_LIMIT 1000000
/* MACs of accepted requests remembered against replays: a node sends about
 * one request a heartbeat (1 s by default), so this holds a 60 s window of
 * 68 nodes; more, and the window narrows safely (discovery/replay.h). */
#define DISCOVERY_REPLAY_CAP 4096

struct config {
    char host[64];
    int port;
    char data_dir[512];
    long ttl_s;
    unsigned request_timeout_ms;
    unsigned max_connections;      /* 0: not set, derived from the limit */
    char secret_file[512];
    bool insecure;
    unsigned register_burst, register_per_second;
};

enum {
    OPT_LISTEN, OPT_DATA_DIR, OPT_TTL, OPT_REQUEST_TIMEOUT, OPT_MAX_CONNS, OPT_LOG_LEVEL,
    OPT_LOG_FORMAT, OPT_SECRET_FILE, OPT_INSECURE, OPT_REGISTER_BURST, OPT_REGISTER_RATE,
};

static const struct cli_option options[] = {
    [OPT_LISTEN] = { "listen", 'l', "ADDR:PORT", "DISCOVERY_LISTEN",
                     "where to listen (default 0.0.0.0:8080; [::]:PORT for dual stack; port 0 picks one)" },
    [OPT_DATA_DIR] = { "data-dir", 'D', "DIR", "DISCOVERY_DATA_DIR",
                       "where discovery.db lives (default ./data/discovery)" },
    [OPT_TTL] = { "ttl", 't', "SECONDS", "DISCOVERY_TTL",
                  "a node silent this long leaves the active list (default 3)" },
    [OPT_REQUEST_TIMEOUT] = { "request-timeout-ms", 0, "MS", "DISCOVERY_REQUEST_TIMEOUT_MS",
                              "time allowed to send a whole request, a connection's first counted "
                              "from connecting; slower gets 408 (default 10000)" },
    [OPT_MAX_CONNS] = { "max-connections", 0, "N", "DISCOVERY_MAX_CONNECTIONS",
                        "open connections beyond this get 503 (default: the descriptor limit less 32)" },
    [OPT_LOG_LEVEL] = { "log-level", 0, "LEVEL", "DCHAT_LOG_LEVEL",
                        "debug, info, warn, error (default info)" },
    [OPT_LOG_FORMAT] = { "log-format", 0, "FORMAT", "DCHAT_LOG_FORMAT",
                         "text (default) or json: one JSON object per line (time, level, "
                         "program, msg), for log shippers" },
    [OPT_SECRET_FILE] = { "cluster-secret-file", 0, "FILE", "DISCOVERY_CLUSTER_SECRET_FILE",
                          "the cluster secret, shared by every node and discovery (or set "
                          "DCHAT_CLUSTER_SECRET); nodes must prove it to register and log in" },
    [OPT_INSECURE] = { "insecure", 0, NULL, NULL,
                       "run without a cluster secret: anyone who reaches discovery can "
                       "register nodes and list them for clients (for a laptop, never a "
                       "network)" },
    [OPT_REGISTER_BURST] = { "register-burst", 0, "N", "DISCOVERY_REGISTER_BURST",
                             "registrations one address may make at once (default 10)" },
    [OPT_REGISTER_RATE] = { "register-rate", 0, "N", "DISCOVERY_REGISTER_RATE",
                            "registrations an address regains a second, up to the burst "
                            "(default 1)" },
};

static int set_option(int index, const char *v, void *ud, char *err, size_t errlen)
{
    struct config *c = ud;
    long l;
    switch (index) {
    case OPT_LISTEN:
        if (util_parse_hostport(v, "0.0.0.0", c->host, sizeof(c->host), &c->port) != 0) {
            snprintf(err, errlen, "expected ADDR:PORT, [IPV6]:PORT or PORT");
            return -1;
        }
        return 0;
    case OPT_DATA_DIR:
        if (strlen(v) >= sizeof(c->data_dir)) {
            snprintf(err, errlen, "path too long");
            return -1;
        }
        strcpy(c->data_dir, v);
        return 0;
    case OPT_TTL:
        return cli_long(v, 1, 86400, "whole seconds", &c->ttl_s, err, errlen);
    case OPT_REQUEST_TIMEOUT:
        if (cli_long(v, 50, 3600000, "milliseconds", &l, err, errlen) != 0)
            return -1;
        c->request_timeout_ms = (unsigned)l;
        return 0;
    case OPT_MAX_CONNS:
        if (cli_long(v, 1, DISCOVERY_MAX_CONNS_LIMIT, "a count", &l, err, errlen) != 0)
            return -1;
        c->max_connections = (unsigned)l;
        return 0;
    case OPT_LOG_LEVEL:
        return cli_log_level(v, err, errlen);
    case OPT_LOG_FORMAT:
        return cli_log_format(v, err, errlen);
    case OPT_SECRET_FILE:
        if (strlen(v) >= sizeof(c->secret_file)) {
            snprintf(err, errlen, "path too long");
            return -1;
        }
        strcpy(c->secret_file, v);
        return 0;
    case OPT_INSECURE:
        c->insecure = true;
        return 0;
    case OPT_REGISTER_BURST:
    case OPT_REGISTER_RATE:
        if (cli_long(v, 1, 1000000, "a count", &l, err, errlen) != 0)
            return -1;
        *(index == OPT_REGISTER_BURST ? &c->register_burst : &c->register_per_second) =
            (unsigned)l;
        return 0;
    }
    return -1;
}

/* Raises the soft descriptor limit to the hard one and returns the
 * connection cap: max_connections when the user set it, else what the
 * limit leaves after DISCOVERY_FD_RESERVE. */
static unsigned connection_cap(unsigned max_connections)
{
    uint64_t limit = fdlimit_raise_logged("discovery");
    unsigned room = fdlimit_connections(limit, DISCOVERY_FD_RESERVE);
    if (max_connections != 0) {
        if (limit != 0 && max_connections > room)
            log_warn("--max-connections %u is more than the descriptor limit %llu allows "
                     "(%u, keeping %d for the rest); connections past that fail to be "
                     "accepted instead of getting 503: lower --max-connections or raise "
                     "ulimit -n", max_connections, (unsigned long long)limit, room,
                     DISCOVERY_FD_RESERVE);
        return max_connections;
    }
    if (limit == 0)
        return 0; /* unknown: the http_server default */
    if (room == 0) {
        log_warn("descriptors: the limit %llu leaves no room for connections after %d "
                 "kept in reserve; serving one at a time: raise ulimit -n",
                 (unsigned long long)limit, DISCOVERY_FD_RESERVE);
        return 1;
    }
    room = UTIL_MIN(room, (unsigned)DISCOVERY_MAX_CONNS_LIMIT);
    log_info("connections: at most %u open (descriptor limit %llu less %d in reserve)", room,
             (unsigned long long)limit, DISCOVERY_FD_RESERVE);
    return room;
}

static uv_signal_t sig_int, sig_term;
static uv_timer_t sweep;
static http_server *server;

static void sweep_cb(uv_timer_t *t)
{
    struct api *a = t->data;
    registry_expire(a->reg, util_now_ms(), a->ttl_ms);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    log_info("received %s; stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sweep, NULL);
    http_server_close(server, NULL, NULL);
}

int main(int argc, char **argv)
{
    struct config c = { .host = "0.0.0.0", .port = 8080, .data_dir = "data/discovery",
                        .ttl_s = 3, .register_burst = RATELIMIT_BURST,
                        .register_per_second = RATELIMIT_PER_SECOND };
    log_init("discovery");
    cli_parse(argc, argv, "discovery", "[OPTIONS]",
              "The dchat discovery daemon: tracks which chat nodes are alive and tells\n"
              "nodes and clients where they are (HTTP/JSON, see docs/DISCOVERY.md).",
              options, (int)ARRAY_SIZE(options), set_option, &c);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)(util_now_ns() ^ (uint64_t)getpid()));
    char err[1400];
    if (secret_load(c.secret_file, c.insecure, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return EX_USAGE;
    }
    if (!secret_present())
        log_warn("running --insecure, without a cluster secret: anyone who reaches "
                 "discovery can register nodes and have clients sent to any address; give "
                 "every node and discovery --cluster-secret-file");
    unsigned max_connections = connection_cap(c.max_connections);

    int lock = dirlock_take(c.data_dir, err, sizeof(err));
    if (lock < 0) {
        log_error("%s", err);
        return EX_CANTCREAT;
    }
    registry *reg = registry_open(c.data_dir, err, sizeof(err));
    if (reg == NULL) {
        log_error("%s; pass a writable --data-dir", err);
        return EX_CANTCREAT;
    }
    struct api a = {
        .reg = reg,
        .ttl_ms = (uint64_t)c.ttl_s * 1000,
        .insecure = !secret_present(),
        .seen = replay_new(DISCOVERY_REPLAY_CAP, REQAUTH_WINDOW_MS),
        .registrations = ratelimit_new(c.register_burst, c.register_per_second,
                                       RATELIMIT_ADDRS),
        .register_burst = c.register_burst,
        .register_per_second = c.register_per_second,
        .started_wall_ms = util_wall_ms(),
    };
    uv_loop_t *loop = uv_default_loop();
    struct http_server_config hc = {
        .handler = api_handle,
        .ud = &a,
        .max_body_bytes = 64 * 1024,
        .request_timeout_ms = c.request_timeout_ms,
        .max_connections = max_connections,
    };
    int rc = http_server_start(loop, c.host, c.port, &hc, &server);
    if (rc != 0) {
        log_error("cannot listen on %s:%d: %s; pick another --listen address or port",
                  c.host, c.port, uv_strerror(rc));
        replay_free(a.seen);
        ratelimit_free(a.registrations);
        registry_close(reg);
        return EX_UNAVAILABLE;
    }
    printf("discovery listening on %s:%d\n", c.host, http_server_port(server));
    fflush(stdout);
    log_info("listening on %s:%d, data in %s, ttl %ld s, registrations per address: %u at "
             "once then %u a second", c.host, http_server_port(server), c.data_dir, c.ttl_s,
             c.register_burst, c.register_per_second);

    uv_timer_init(loop, &sweep);
    sweep.data = &a;
    uint64_t period = UTIL_MAX(a.ttl_ms / 4, (uint64_t)100);
    uv_timer_start(&sweep, sweep_cb, period, period);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, signal_cb, SIGINT);
    uv_signal_start(&sig_term, signal_cb, SIGTERM);

    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    replay_free(a.seen);
    ratelimit_free(a.registrations);
    registry_close(reg);
    dirlock_release(lock);
    return 0;
}
