/* load: the bench's load mode, `bench load` (issue 14). Many clients (up to
 * the descriptor limit) are spread over every node discovery lists, or N on
 * each (--per-node), connected at a ramp with a bounded number of
 * handshakes in flight, from source addresses 127.0.0.1 .. 127.0.0.8 in
 * turn when the nodes are on loopback, so that ephemeral ports do not run
 * out. A fraction of them send, each at its own open-loop pace (a random
 * phase, a little jitter, never drifting), texts that carry the sender,
 * its sequence number and the due time; every client receives. With rooms,
 * client i subscribes to chatId 1000 + i % K and senders send there.
 * Every interval a row: connected clients, messages sent, deliveries, their
 * latency quantiles (latency_hist.h), errors, reconnects, and each node's
 * CPU and RSS from its /metrics. At the end, once deliveries have drained,
 * the exactly-once check (ledger.h) and a summary (load_report.h). One
 * libuv loop, one thread; memory is bounded by the client count (see
 * ledger.h for the check's share). */
#ifndef DCHAT_BENCH_LOAD_H
#define DCHAT_BENCH_LOAD_H

#include <stdbool.h>

#include "bench/report.h"

/* Defaults and bounds of the options (main.c checks them). */
#define LOAD_HANDSHAKES 256        /* handshakes (and subscribes) in flight at most */
#define LOAD_RATE_MAX 1000.0       /* msgs/s per sender */
#define LOAD_FD_MARGIN 64          /* descriptors kept for all but the clients */
#define LOAD_LEDGER_MAX (1ull << 30) /* bytes the exactly-once check may take */
#define LOAD_ROOM_BASE 1000        /* room k is chatId 1000 + k */
#define LOAD_ALL_CHATS_ID 11       /* the chat of clients without rooms */

struct load_config {
    char discovery[512];
    unsigned clients;      /* in all, or on each node with per_node */
    bool per_node;
    double rate;           /* msgs/s per sending client, > 0 */
    unsigned size;         /* bytes of text, at least the marker's */
    unsigned duration_s;   /* from the start until sending stops */
    double ramp_s;         /* connections spread over this long; 0 = at once */
    unsigned rooms;        /* 0 = every client in all chats */
    double senders;        /* the fraction of clients that send, 0 .. 1 */
    double interval_s;     /* one report row this often */
    unsigned timeout_s;    /* for discovery, handshakes and the drain */
    enum report_format format;
    char out[512];         /* the report's file; "" = stdout */
    bool tls;
    char tls_ca[512];
};

/* Runs the load mode on a fresh loop: the report on cfg->out or stdout,
 * progress and errors on stderr. Returns BENCH_OK (every client got every
 * message it was owed, once, in order, and nothing failed), BENCH_FAILED
 * (something was lost, duplicated, reordered or misrouted, or connections
 * failed: the message names the first ones), BENCH_NO_CLUSTER (no
 * discovery, no node, no client could join) or EX_USAGE (the run does not
 * fit: descriptors, the check's memory, the output file). */
int load_run(const struct load_config *cfg);

#endif
