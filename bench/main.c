/* bench: measures the fan-out of a running dchat cluster (or, for
 * comparison, of a NATS cluster: --proto nats) and proves that every
 * message reached every socket exactly once, in order; `bench load` puts
 * many clients on the cluster instead (load.h). This file reads the
 * options; bench.c runs the rounds, load.c the load mode. Exit status:
 * 0 all delivered, 1 something lost, duplicated, reordered or late,
 * 2 no cluster to measure, 64 bad usage. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/ledger.h"
#include "bench/load.h"
#include "bench/pace.h"
#include "common/cli.h"
#include "common/log.h"
#include "common/util.h"

enum { OPT_PROTO, OPT_NATS, OPT_DISCOVERY, OPT_TARGET, OPT_SENDERS, OPT_MAX, OPT_SIZE, OPT_TIMEOUT, OPT_WINDOW,
       OPT_CHAT, OPT_RATE, OPT_DURATION, OPT_FORMAT, OPT_TLS, OPT_TLS_CA, OPT_LOG_LEVEL,
       OPT_LOG_FORMAT, OPT_NO_PROGRESS };

/* Options both modes have, word for word. */
#define OPTION_DISCOVERY { "discovery", 'd', "URL", "BENCH_DISCOVERY", \
                           "discovery daemon to ask for the nodes (default http://127.0.0.1:8080)" }
#define OPTION_TLS { "tls", 0, NULL, NULL, "connect with TLS (wss://); the nodes' certificates " \
                     "are not checked unless --tls-ca is given" }
#define OPTION_TLS_CA { "tls-ca", 0, "FILE", "BENCH_TLS_CA", "PEM CA certificates the nodes' " \
                        "certificates must chain to (implies --tls)" }
#define OPTION_LOG_LEVEL { "log-level", 0, "LEVEL", "DCHAT_LOG_LEVEL", \
                           "debug, info, warn, error (default warn)" }

static const struct cli_option options[] = {
    [OPT_PROTO] = { "proto", 0, "PROTO", "BENCH_PROTO",
                    "dchat (default) or nats: the system measured, with the same rounds, "
                    "checks and report" },
    [OPT_NATS] = { "nats", 0, "URL[,URL...]", "BENCH_NATS",
                   "--proto nats: the NATS servers' WebSocket listeners, ws://HOST:PORT "
                   "(wss:// with --tls); one receiver on each, the senders on --target or a "
                   "random one" },
    [OPT_DISCOVERY] = OPTION_DISCOVERY,
    [OPT_TARGET] = { "target", 't', "ADDR:PORT", "BENCH_TARGET",
                     "node (or NATS server) the senders connect to (default: a random one)" },
    [OPT_SENDERS] = { "senders", 's', "N", "BENCH_SENDERS",
                      "sender connections (default 3)" },
    [OPT_MAX] = { "max", 'm', "N", "BENCH_MAX",
                  "messages in the last round; rounds are 10, 100, 1000, 2000, 4000 ... "
                  "(default 8000)" },
    [OPT_SIZE] = { "size", 0, "BYTES", "BENCH_SIZE", "bytes of message text (default 30)" },
    [OPT_TIMEOUT] = { "timeout", 0, "SECONDS", "BENCH_TIMEOUT",
                      "limit for each round and for connecting (default 30)" },
    [OPT_WINDOW] = { "window", 0, "N", "BENCH_WINDOW",
                     "messages sent but not yet received by every socket, at most; 0 = no "
                     "window, send flat out as fast as TCP takes them (default: 4000, fewer "
                     "for big --size, so that about 1 MiB waits per socket)" },
    [OPT_RATE] = { "rate", 'r', "MSGS_PER_S", "BENCH_RATE",
                   "instead of the rounds, one paced, open-loop run: this many messages per "
                   "second over all senders, handed over every 1 ms as they come due whatever "
                   "has been delivered; latency from each message's due time (p50 to p99.9); "
                   "messages handed over late are counted and reported" },
    [OPT_DURATION] = { "duration", 0, "SECONDS", "BENCH_DURATION",
                       "--rate: how long the paced run sends (default 10)" },
    [OPT_CHAT] = { "chat-id", 0, "N", "BENCH_CHAT_ID", "chatId of the messages (default 11)" },
    [OPT_FORMAT] = { "format", 'f', "FMT", "BENCH_FORMAT",
                     "table (default), csv or json" },
    [OPT_NO_PROGRESS] = { "no-progress", 0, NULL, "BENCH_NO_PROGRESS",
                          "no progress line on stderr (by default one is redrawn there, "
                          "10 times a second, when stderr is a terminal; never on stdout)" },
    [OPT_TLS] = OPTION_TLS,
    [OPT_TLS_CA] = OPTION_TLS_CA,
    [OPT_LOG_LEVEL] = OPTION_LOG_LEVEL,
    [OPT_LOG_FORMAT] = { "log-format", 0, "FORMAT", "DCHAT_LOG_FORMAT",
                         "text (default) or json: the bench's warnings and errors as one JSON "
                         "object per line (time, level, program, msg); the report is --format" },
};

static int set_count(const char *v, long min, long max, unsigned *out, char *err, size_t errlen)
{
    long l;
    if (cli_long(v, min, max, "a whole number", &l, err, errlen) != 0)
        return -1;
    *out = (unsigned)l;
    return 0;
}

/* What main checks after parsing: which options were given. */
struct parsed {
    struct bench_config c;
    bool max, window, duration;
};

static int set_option(int index, const char *v, void *ud, char *err, size_t errlen)
{
    struct parsed *pa = ud;
    struct bench_config *c = &pa->c;
    switch (index) {
    case OPT_PROTO:
        if (strcmp(v, "dchat") == 0)
            c->proto = BENCH_PROTO_DCHAT;
        else if (strcmp(v, "nats") == 0)
            c->proto = BENCH_PROTO_NATS;
        else {
            snprintf(err, errlen, "expected dchat or nats");
            return -1;
        }
        return 0;
    case OPT_NATS:
        if (strlen(v) >= sizeof(c->nats)) {
            snprintf(err, errlen, "too long");
            return -1;
        }
        strcpy(c->nats, v);
        return 0;
    case OPT_DISCOVERY:
    case OPT_TARGET: {
        char *dst = index == OPT_DISCOVERY ? c->discovery : c->target;
        size_t cap = index == OPT_DISCOVERY ? sizeof(c->discovery) : sizeof(c->target);
        if (strlen(v) >= cap) {
            snprintf(err, errlen, "too long");
            return -1;
        }
        strcpy(dst, v);
        return 0;
    }
    case OPT_SENDERS: return set_count(v, 1, 1000, &c->senders, err, errlen);
    case OPT_MAX:
        pa->max = true;
        return set_count(v, 1, 100000000, &c->max, err, errlen);
    case OPT_SIZE: return set_count(v, 1, 60000, &c->size, err, errlen);
    case OPT_TIMEOUT: return set_count(v, 1, 86400, &c->timeout_s, err, errlen);
    case OPT_WINDOW:
        pa->window = true;
        return set_count(v, 0, 100000000, &c->window, err, errlen);
    case OPT_RATE: return set_count(v, 1, PACE_RATE_MAX, &c->rate, err, errlen);
    case OPT_DURATION:
        pa->duration = true;
        return set_count(v, 1, 86400, &c->duration_s, err, errlen);
    case OPT_CHAT: return set_count(v, 0, 2147483647, &c->chat_id, err, errlen);
    case OPT_FORMAT:
        if (report_parse_format(v, &c->format) != 0) {
            snprintf(err, errlen, "expected table, csv or json");
            return -1;
        }
        return 0;
    case OPT_TLS:
        c->tls = true;
        return 0;
    case OPT_NO_PROGRESS:
        c->progress = false;
        return 0;
    case OPT_TLS_CA:
        if (strlen(v) >= sizeof(c->tls_ca)) {
            snprintf(err, errlen, "too long");
            return -1;
        }
        strcpy(c->tls_ca, v);
        c->tls = true;
        return 0;
    case OPT_LOG_LEVEL:
        return cli_log_level(v, err, errlen);
    case OPT_LOG_FORMAT:
        return cli_log_format(v, err, errlen);
    }
    return -1;
}

/* ---- bench load ------------------------------------------------------------ */

enum { L_DISCOVERY, L_CLIENTS, L_PER_NODE, L_RATE, L_SIZE, L_DURATION, L_RAMP, L_ROOMS,
       L_SENDERS, L_INTERVAL, L_FORMAT, L_OUT, L_TIMEOUT, L_TLS, L_TLS_CA, L_LOG_LEVEL,
       L_LOG_FORMAT };

static const struct cli_option load_options[] = {
    [L_DISCOVERY] = OPTION_DISCOVERY,
    [L_CLIENTS] = { "clients", 'n', "N", "BENCH_LOAD_CLIENTS",
                    "WebSocket clients in all, spread evenly over the nodes (default 100); "
                    "at most what the descriptor limit allows (ulimit -Hn, less 64)" },
    [L_PER_NODE] = { "per-node", 0, NULL, NULL, "--clients N on each node instead of in all" },
    [L_RATE] = { "rate", 'r', "MSGS_PER_S", "BENCH_LOAD_RATE",
                 "messages per second of each sending client, may be fractional (0.2 = one "
                 "every 5 s), at most 1000 (default 1); open loop: each sender has a random "
                 "phase and a little jitter, and its messages are handed over when due "
                 "whatever has been delivered" },
    [L_SIZE] = { "size", 0, "BYTES", "BENCH_LOAD_SIZE",
                 "bytes of message text (default 64; at least the ~40-byte marker that "
                 "carries the sender, its sequence number and the send time)" },
    [L_DURATION] = { "duration", 0, "SECONDS", "BENCH_LOAD_DURATION",
                     "how long the clients send, counted from the first connection "
                     "(default 10); then the bench waits up to --timeout for the "
                     "deliveries to drain and checks them" },
    [L_RAMP] = { "ramp", 0, "SECONDS", "BENCH_LOAD_RAMP",
                 "start the connections evenly over this long (default 0: as fast as the "
                 "nodes take them, 256 handshakes in flight at most)" },
    [L_ROOMS] = { "rooms", 0, "K", "BENCH_LOAD_ROOMS",
                  "client i subscribes to chatId 1000 + i % K and its messages go there; "
                  "each client is held to its room's messages (default 0: no rooms, every "
                  "client is an all-chats client and gets every message, chatId 11)" },
    [L_SENDERS] = { "senders", 's', "FRACTION", "BENCH_LOAD_SENDERS",
                    "the fraction of clients that send, 0 to 1 (default 1: all); picked at "
                    "random with a fixed seed, so spread over nodes and rooms" },
    [L_INTERVAL] = { "interval", 'i', "SECONDS", "BENCH_LOAD_INTERVAL",
                     "one report row this often (default 1, at least 0.1)" },
    [L_FORMAT] = { "format", 'f', "FMT", "BENCH_LOAD_FORMAT",
                   "table (default), csv (a header line, a line per interval, then the "
                   "summary line, whose interval is \"total\") or json (one object per line, "
                   "the same)" },
    [L_OUT] = { "out", 'o', "FILE", "BENCH_LOAD_OUT",
                "write the report to FILE instead of stdout (errors stay on stderr)" },
    [L_TIMEOUT] = { "timeout", 0, "SECONDS", "BENCH_LOAD_TIMEOUT",
                    "limit for asking discovery, for a handshake, for the first client to "
                    "join, and for the deliveries to drain after sending stops (default 30)" },
    [L_TLS] = OPTION_TLS,
    [L_TLS_CA] = OPTION_TLS_CA,
    [L_LOG_LEVEL] = OPTION_LOG_LEVEL,
    [L_LOG_FORMAT] = { "log-format", 0, "FORMAT", "DCHAT_LOG_FORMAT",
                       "text (default) or json, for the bench's own warnings and errors" },
};

/* A decimal number (fractions allowed) in [min, max]. */
static int set_real(const char *v, double min, double max, double *out, char *err,
                    size_t errlen)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !(d >= min && d <= max)) {
        snprintf(err, errlen, "expected a number between %g and %g", min, max);
        return -1;
    }
    *out = d;
    return 0;
}

static int set_string(const char *v, char *dst, size_t cap, char *err, size_t errlen)
{
    if (strlen(v) >= cap) {
        snprintf(err, errlen, "too long (at most %zu bytes)", cap - 1);
        return -1;
    }
    strcpy(dst, v);
    return 0;
}

static int set_load_option(int index, const char *v, void *ud, char *err, size_t errlen)
{
    struct load_config *c = ud;
    switch (index) {
    case L_DISCOVERY: return set_string(v, c->discovery, sizeof(c->discovery), err, errlen);
    case L_CLIENTS: return set_count(v, 1, 1000000, &c->clients, err, errlen);
    case L_PER_NODE:
        c->per_node = true;
        return 0;
    case L_RATE:
        if (set_real(v, 0.001, LOAD_RATE_MAX, &c->rate, err, errlen) != 0)
            return -1;
        return 0;
    case L_SIZE: return set_count(v, 1, 60000, &c->size, err, errlen);
    case L_DURATION: return set_count(v, 1, 86400, &c->duration_s, err, errlen);
    case L_RAMP: return set_real(v, 0, 86400, &c->ramp_s, err, errlen);
    case L_ROOMS: return set_count(v, 0, 1000000, &c->rooms, err, errlen);
    case L_SENDERS: return set_real(v, 0, 1, &c->senders, err, errlen);
    case L_INTERVAL: return set_real(v, 0.1, 3600, &c->interval_s, err, errlen);
    case L_FORMAT:
        if (report_parse_format(v, &c->format) != 0) {
            snprintf(err, errlen, "expected table, csv or json");
            return -1;
        }
        return 0;
    case L_OUT: return set_string(v, c->out, sizeof(c->out), err, errlen);
    case L_TIMEOUT: return set_count(v, 1, 86400, &c->timeout_s, err, errlen);
    case L_TLS:
        c->tls = true;
        return 0;
    case L_TLS_CA:
        c->tls = true;
        return set_string(v, c->tls_ca, sizeof(c->tls_ca), err, errlen);
    case L_LOG_LEVEL: return cli_log_level(v, err, errlen);
    case L_LOG_FORMAT: return cli_log_format(v, err, errlen);
    }
    return -1;
}

static int main_load(int argc, char **argv)
{
    struct load_config c = {
        .discovery = "http://127.0.0.1:8080",
        .clients = 100,
        .rate = 1,
        .size = 64,
        .duration_s = 10,
        .senders = 1,
        .interval_s = 1,
        .timeout_s = 30,
        .format = REPORT_TABLE,
    };
    cli_parse(argc, argv, "bench load", "[OPTIONS]",
              "Puts many clients on a running dchat cluster for a while: --clients spread\n"
              "over the nodes discovery lists, a fraction of them (--senders) each sending\n"
              "--rate messages per second, every client receiving (all chats, or its room\n"
              "with --rooms). Prints a row per --interval (connected clients, messages sent,\n"
              "deliveries, latency p50/p90/p99/p99.9/max from the send time embedded in each\n"
              "text, errors, reconnects, each node's CPU seconds and RSS from its /metrics),\n"
              "then the same over the whole run, and checks that every client got every\n"
              "message of its room sent after it joined once, in each sender's order.\n"
              "Exit status: 0 all delivered, 1 lost/duplicated/reordered/misrouted or\n"
              "connections failed, 2 no cluster, 64 bad usage or a run that does not fit.",
              load_options, (int)ARRAY_SIZE(load_options), set_load_option, &c);
    if (c.rooms > c.clients) {
        fprintf(stderr, "bench load: --rooms %u is more than --clients %u: some rooms would "
                        "be empty; lower --rooms\n", c.rooms, c.clients);
        return EX_USAGE;
    }
    if (c.ramp_s >= c.duration_s) {
        fprintf(stderr, "bench load: --ramp %g s is not shorter than --duration %u s: the "
                        "last clients would join after sending stopped; lower --ramp or raise "
                        "--duration\n", c.ramp_s, c.duration_s);
        return EX_USAGE;
    }
    if (c.rate * c.duration_s >= LEDGER_SEQ_MAX) {
        fprintf(stderr, "bench load: --rate %g for %u s is more messages than one sender may "
                        "number (%u); lower --rate or --duration\n", c.rate, c.duration_s,
                LEDGER_SEQ_MAX);
        return EX_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    return load_run(&c);
}

int main(int argc, char **argv)
{
    struct parsed pa = { .c = {
        .discovery = "http://127.0.0.1:8080",
        .senders = 3,
        .max = 8000,
        .size = 30,
        .timeout_s = 30,
        .window = BENCH_WINDOW_AUTO,
        .chat_id = 11,
        .duration_s = BENCH_DURATION_DEFAULT,
        .format = REPORT_TABLE,
        .progress = true,
    } };
    struct bench_config c;
    log_init("bench");
    log_set_level(LOG_WARN);
    if (argc > 1 && strcmp(argv[1], "load") == 0)
        return main_load(argc - 1, argv + 1);
    cli_parse(argc, argv, "bench", "[OPTIONS] | bench load [OPTIONS]",
              "Measures the fan-out of a running dchat cluster: senders on one node, one\n"
              "receiver on every node, rounds of 10, 100, 1000, 2000 ... messages. Every\n"
              "socket must get every message once and in each sender's order. With\n"
              "--proto nats it does the same to a NATS cluster over its WebSocket listeners.\n"
              "With --rate, one paced run at that many messages per second instead.\n"
              "`bench load` puts many clients on the cluster instead, with a report per\n"
              "interval and an exactly-once check: see `bench load --help`.\n"
              "Exit status: 0 all delivered, 1 lost/duplicated/reordered/late, 2 no cluster.",
              options, (int)ARRAY_SIZE(options), set_option, &pa);
    c = pa.c;
    if (c.rate > 0 && (pa.max || pa.window)) {
        fprintf(stderr, "bench: --rate runs one paced run instead of the rounds; --%s is for "
                        "the rounds: drop it, or drop --rate\n", pa.max ? "max" : "window");
        return EX_USAGE;
    }
    if (c.rate == 0 && pa.duration) {
        fprintf(stderr, "bench: --duration is the length of a paced run; add --rate "
                        "MSGS_PER_S\n");
        return EX_USAGE;
    }
    if ((uint64_t)c.rate * c.duration_s > BENCH_PACED_MAX) {
        fprintf(stderr, "bench: --rate %u for %u s is %llu messages, more than the %u one run "
                        "may send; lower --rate or --duration\n", c.rate, c.duration_s,
                (unsigned long long)c.rate * c.duration_s, BENCH_PACED_MAX);
        return EX_USAGE;
    }
    if (c.proto == BENCH_PROTO_NATS && c.nats[0] == '\0') {
        fprintf(stderr, "bench: --proto nats needs --nats ws://HOST:PORT[,...] (the NATS "
                        "servers' WebSocket listeners)\n");
        return EX_USAGE;
    }
    if (c.proto != BENCH_PROTO_NATS && c.nats[0] != '\0') {
        fprintf(stderr, "bench: --nats is for --proto nats; add --proto nats to measure "
                        "NATS\n");
        return EX_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)(util_now_ns() ^ (uint64_t)getpid()));
    return bench_run(&c);
}
