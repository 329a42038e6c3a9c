/* metrics: the Prometheus text exposition format (version 0.0.4), written
 * into a growing buffer for GET /metrics on a node and on discovery
 * (docs/METRICS.md lists every metric). A family is announced once
 * (metrics_family: # HELP and # TYPE), then its samples follow, with at
 * most one label each here; label values are escaped. Also the standard
 * process_* metrics of the running process, read from getrusage and
 * /proc/self. */
#ifndef DCHAT_METRICS_H
#define DCHAT_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics_out {
    char *buf;
    size_t len, cap;
};

/* buf is malloc'd as it grows; free it with free(m->buf). */
void metrics_init(struct metrics_out *m);

/* # HELP name help, # TYPE name type ("counter", "gauge"). */
void metrics_family(struct metrics_out *m, const char *name, const char *type,
                    const char *help);

/* name value, or name{label="value"} value when label is not NULL. */
void metrics_u64(struct metrics_out *m, const char *name, const char *label,
                 const char *label_value, uint64_t v);
void metrics_f64(struct metrics_out *m, const char *name, const char *label,
                 const char *label_value, double v);

/* A family with one unlabelled sample, in one call. */
void metrics_counter(struct metrics_out *m, const char *name, const char *help, uint64_t v);
void metrics_gauge(struct metrics_out *m, const char *name, const char *help, double v);

/* A histogram with fixed upper bounds (ascending; +Inf is implied), for
 * the loop thread that fills it and writes it. */
#define METRICS_MAX_BUCKETS 16
struct metrics_histogram {
    const double *bounds;
    size_t nbounds;                         /* at most METRICS_MAX_BUCKETS */
    uint64_t counts[METRICS_MAX_BUCKETS];   /* per bound, not cumulative */
    uint64_t count;                         /* all observations (+Inf) */
    double sum;
};

/* bounds (static, ascending) is kept; nbounds is cut to the maximum. */
void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds);
void metrics_histogram_observe(struct metrics_histogram *h, double v);
/* n observations of the same value v at once. */
void metrics_histogram_observe_n(struct metrics_histogram *h, double v, uint64_t n);

/* The family: NAME_bucket{le="..."} cumulative, NAME_sum, NAME_count. */
void metrics_histogram_write(struct metrics_out *m, const char *name, const char *help,
                             const struct metrics_histogram *h);

/* A labelled histogram: announce the family (metrics_family, type
 * "histogram"), then one call per label value writes its samples,
 * NAME_bucket{label="value",le="..."}, NAME_sum{label="value"} and
 * NAME_count{label="value"}. */
void metrics_histogram_samples(struct metrics_out *m, const char *name, const char *label,
                               const char *label_value, const struct metrics_histogram *h);

/* process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, process_max_fds and process_start_time_seconds
 * (start_wall_ms: the process's start, Unix ms). What cannot be read is
 * left out (and the rest written). */
void metrics_process(struct metrics_out *m, uint64_t start_wall_ms);

/* The Content-Type of the format. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
