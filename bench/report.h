/* report: prints the bench's results as a table for people, or as CSV or
 * JSON for scripts and plots. Rows are printed (and flushed) as each round
 * ends, so a long run shows progress; JSON is one document at the end. */
#ifndef DCHAT_BENCH_REPORT_H
#define DCHAT_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

enum report_format { REPORT_TABLE, REPORT_CSV, REPORT_JSON };

struct report_row {
    uint32_t messages;      /* sent in the round */
    uint64_t expected;      /* messages x sockets */
    uint64_t received;      /* unique deliveries */
    double total_s;         /* first send to last delivery */
    double send_s;          /* first send to the last message handed to a socket */
    double rate;            /* received / total_s */
    double p50_ms, p99_ms, max_ms;
    uint64_t lost, dups, reordered;
    double cpu_pct;         /* the bench's own CPU time over total_s, in % of
                               one core: near 100 means the bench, not the
                               cluster, set the pace */
};

struct report_run {
    const char *proto;      /* "dchat" (NULL counts as that) or "nats" */
    const char *target;     /* ADDR:PORT of the senders' node */
    unsigned senders;
    unsigned nodes;
    unsigned size;
    unsigned window;        /* messages in flight at most, 0 = no window */
    unsigned rate;          /* > 0: a paced run (bench --rate) of rate msgs/s ... */
    unsigned duration_s;    /* ... for duration_s seconds; one report_paced row */
};

/* The one row of a paced, open-loop run (bench --rate). Latency is from each
 * message's due time, not from when it was handed over, so a generator
 * that falls behind shows in the latency instead of hiding it. */
struct report_paced {
    double offered_msgs;    /* msgs/s offered: --rate */
    double offered_deliveries; /* offered_msgs x sockets */
    double achieved;        /* received / the longer of total_s and the duration */
    uint32_t messages;      /* rate x duration */
    uint64_t expected;      /* messages x sockets */
    uint64_t received;      /* unique deliveries */
    double total_s;         /* start to the last delivery */
    double p50_ms, p90_ms, p99_ms, p999_ms, max_ms;
    uint64_t lost, dups, reordered;
    uint64_t late;          /* messages handed over more than late_bound_ms after
                               their due time: the generator fell behind */
    double late_bound_ms;
    double late_max_ms;     /* the most any message was handed over after its time */
    uint64_t samples;       /* latency samples the quantiles come from ... */
    uint64_t sampled_from;  /* ... out of this many deliveries */
    double cpu_pct;         /* the bench's own CPU time over total_s */
};

/* Parses "table", "csv" or "json". Returns 0 or -1. */
int report_parse_format(const char *s, enum report_format *out);

void report_begin(FILE *f, enum report_format fmt, const struct report_run *run);
void report_row(FILE *f, enum report_format fmt, const struct report_row *r);
/* The row of a paced run; report_begin was given run->rate > 0. */
void report_paced(FILE *f, enum report_format fmt, const struct report_paced *r);
/* ok: whether every round delivered everything; error: why not, or NULL. */
void report_end(FILE *f, enum report_format fmt, int ok, const char *error);

#endif
