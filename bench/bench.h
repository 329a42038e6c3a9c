/* bench: the fan-out benchmark. It finds the servers (a dchat cluster's
 * nodes from discovery, or the NATS servers named by --nats: side.h),
 * opens sender sockets to one server and one receiver per server, then runs
 * rounds of n messages (10, 100, 1000, then doubling up to max): the
 * messages go round-robin over the senders, at most `window` of them
 * unacknowledged (not yet received by every socket) at a time so that no
 * queue on the way overflows, or with window 0 flat out, as fast as TCP
 * takes them. Either way a message is generated only while its sender's
 * outbound queue holds less than BENCH_SEND_QUEUE, so the bench's memory
 * stays bounded. A round ends when every socket has received all n. Each
 * socket's deliveries are checked one by one (tally.h) and each round
 * becomes a row of the report (report.h).
 *
 * With a rate (bench --rate) there is one paced, open-loop run instead of
 * the rounds: rate messages per second for duration seconds, handed over
 * on a 1 ms timer as they come due (pace.h), whatever has been delivered.
 * A message that cannot be handed over in time (its sender's queue over
 * BENCH_SEND_QUEUE, or the bench's loop busy) waits and is counted as late:
 * the generator fell behind, which the report says rather than quietly
 * offering less. Latency counts from each message's due time. */
#ifndef DCHAT_BENCH_BENCH_H
#define DCHAT_BENCH_BENCH_H

#include <limits.h>
#include <stdbool.h>

#include "bench/report.h"

/* A sender is handed its next message only while its outbound queue (not
 * yet taken by the kernel) holds less than this, counted as allocated. */
#define BENCH_SEND_QUEUE (1u << 20)
/* bench_config.window: pick one from the text size (bench_auto_window). */
#define BENCH_WINDOW_AUTO UINT_MAX
/* The paced run's timer, and how late a message may be handed over before
 * it counts as late: a 1 ms timer in a loop whose clock has 1 ms steps
 * hands a message over up to about 2 ms after its due time. */
#define BENCH_TICK_MS 1
#define BENCH_LATE_NS 2000000u
/* --duration when --rate is given without it. */
#define BENCH_DURATION_DEFAULT 10
/* Messages in one paced run at most (rate x duration). */
#define BENCH_PACED_MAX 100000000u

/* The system measured. */
enum bench_proto { BENCH_PROTO_DCHAT, BENCH_PROTO_NATS };

struct bench_config {
    enum bench_proto proto;
    char nats[2048];       /* --proto nats: ws://HOST:PORT[/PATH],... */
    char discovery[512];   /* http://HOST:PORT */
    char target[300];      /* ADDR:PORT, or "" for a random node */
    unsigned senders;
    unsigned max;          /* the last round's size */
    unsigned size;         /* bytes of message text */
    unsigned timeout_s;    /* per round, and for setting up */
    unsigned window;       /* messages in flight at most; 0 = no window
                              (flat out), BENCH_WINDOW_AUTO = by --size */
    unsigned chat_id;
    unsigned rate;         /* > 0: one paced run of rate msgs/s instead of rounds */
    unsigned duration_s;   /* its length */
    enum report_format format;
    bool progress;         /* the progress line on stderr when it is a terminal
                              (progress.h); false: --no-progress */
    bool tls;              /* wss:// to every node */
    char tls_ca[512];      /* verify the nodes' certificates against it; "" = not */
};

enum {
    BENCH_OK = 0,          /* every socket got every message once, in order */
    BENCH_FAILED = 1,      /* something was lost, duplicated, reordered or late */
    BENCH_NO_CLUSTER = 2,  /* discovery or fewer than 2 nodes not reachable */
};

/* Runs the whole bench on a fresh loop; prints the report on stdout and
 * what went wrong on stderr. Returns a BENCH_* status. */
int bench_run(const struct bench_config *cfg);

/* The default window for messages of size bytes: as many as keep about
 * 1 MiB queued per socket, at most 4000. */
unsigned bench_auto_window(unsigned size);

/* The round sizes for max: 10, 100, 1000, 2000, 4000 ... up to max (max
 * itself is the last round even when it is not on that ladder). Writes at
 * most cap sizes into out and returns how many. */
unsigned bench_rounds(unsigned max, unsigned *out, unsigned cap);

#endif
