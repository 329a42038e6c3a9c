/* load_report: the load mode's output (bench load, issue 14): one row per
 * interval, then a summary row over the whole run and the verdict of the
 * exactly-once check, as a table for people, as CSV (one header line, one
 * line per interval, then the summary as a last line whose `interval` is
 * "total") or as JSON lines (one object per interval, then one summary
 * object with "interval": "total"). Each row is flushed as it is written,
 * so a pipe sees the run as it goes. Columns (docs/PERFORMANCE.md):
 *   interval, elapsed_s, connected, sent, deliveries, sent_per_s,
 *   deliveries_per_s, p50_ms, p90_ms, p99_ms, p999_ms, max_ms, errors,
 *   reconnects, lost, duplicated, reordered, late_sends, then for each node
 *   k = 1 .. nodes nodeK_cpu_s and nodeK_rss_mib (empty in CSV, null in
 *   JSON, "-" in the table when the node's /metrics did not answer). */
#ifndef DCHAT_BENCH_LOAD_REPORT_H
#define DCHAT_BENCH_LOAD_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/report.h"

/* What the run is, for the table's title and the summary. */
struct load_report_run {
    unsigned clients, senders, nodes, rooms;
    double rate;               /* msgs/s per sender */
    unsigned size, duration_s;
    double interval_s;
    const char *const *node_names; /* [nodes]: "ADDR:PORT" */
};

struct load_row {
    unsigned interval;         /* 1, 2 ...; 0 = the summary ("total") */
    double elapsed_s;          /* since the start; the summary: the whole run */
    double span_s;             /* the time the row covers, for the rates */
    unsigned connected;        /* joined clients at its end */
    uint64_t sent, deliveries;
    double p50_ms, p90_ms, p99_ms, p999_ms, max_ms;
    uint64_t errors, reconnects;
    uint64_t lost, dups, reordered, late;
    const double *node_cpu_s;  /* [nodes]; NAN = unknown */
    const double *node_rss_mib;
};

/* The exactly-once verdict, for the summary. */
struct load_verdict {
    bool ok;
    const char *error;         /* what went wrong, or NULL */
    uint64_t strays;
    uint64_t unaccepted;       /* deliveries not owed: sent on a connection
                                  that dropped, received by no client */
    unsigned clients_joined;   /* clients joined at the end */
};

void load_report_begin(FILE *f, enum report_format fmt, const struct load_report_run *run);
void load_report_row(FILE *f, enum report_format fmt, const struct load_report_run *run,
                     const struct load_row *r);
/* The summary row (r->interval 0) and the verdict. */
void load_report_end(FILE *f, enum report_format fmt, const struct load_report_run *run,
                     const struct load_row *r, const struct load_verdict *v);

#endif
