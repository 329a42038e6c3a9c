/* metrics: see metrics.h. */
#include "common/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/util.h"

void metrics_init(struct metrics_out *m)
{
    m->cap = 4096;
    m->len = 0;
    m->buf = xmalloc(m->cap);
    m->buf[0] = '\0';
}

/* Room for n more bytes and the NUL after them. */
static void reserve(struct metrics_out *m, size_t n)
{
    if (m->len + n + 1 > m->cap) {
        while (m->len + n + 1 > m->cap)
            m->cap *= 2;
        m->buf = xrealloc(m->buf, m->cap);
    }
}

static void put(struct metrics_out *m, const char *s, size_t n)
{
    reserve(m, n);
    memcpy(m->buf + m->len, s, n);
    m->len += n;
    m->buf[m->len] = '\0';
}

static void puts_(struct metrics_out *m, const char *s)
{
    put(m, s, strlen(s));
}

static void printf_(struct metrics_out *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Formatted straight into the buffer, grown first when it is short. */
static void printf_(struct metrics_out *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    reserve(m, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(m->buf + m->len, m->cap - m->len, fmt, ap);
    va_end(ap);
    m->len += (size_t)n;
}

/* HELP text: backslash and newline escaped. Label values: those and the
 * double quote too. */
static void put_escaped(struct metrics_out *m, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            puts_(m, "\\\\");
        else if (*s == '\n')
            puts_(m, "\\n");
        else if (quote && *s == '"')
            puts_(m, "\\\"");
        else
            put(m, s, 1);
    }
}

void metrics_family(struct metrics_out *m, const char *name, const char *type,
                    const char *help)
{
    printf_(m, "# HELP %s ", name);
    put_escaped(m, help, 0);
    printf_(m, "\n# TYPE %s %s\n", name, type);
}

static void sample_name(struct metrics_out *m, const char *name, const char *label,
                        const char *label_value)
{
    puts_(m, name);
    if (label != NULL) {
        printf_(m, "{%s=\"", label);
        put_escaped(m, label_value, 1);
        puts_(m, "\"}");
    }
}

void metrics_u64(struct metrics_out *m, const char *name, const char *label,
                 const char *label_value, uint64_t v)
{
    sample_name(m, name, label, label_value);
    printf_(m, " %" PRIu64 "\n", v);
}

void metrics_f64(struct metrics_out *m, const char *name, const char *label,
                 const char *label_value, double v)
{
    sample_name(m, name, label, label_value);
    printf_(m, " %.15g\n", v);
}

void metrics_counter(struct metrics_out *m, const char *name, const char *help, uint64_t v)
{
    metrics_family(m, name, "counter", help);
    metrics_u64(m, name, NULL, NULL, v);
}

void metrics_gauge(struct metrics_out *m, const char *name, const char *help, double v)
{
    metrics_family(m, name, "gauge", help);
    metrics_f64(m, name, NULL, NULL, v);
}

void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->nbounds = nbounds < METRICS_MAX_BUCKETS ? nbounds : METRICS_MAX_BUCKETS;
}

void metrics_histogram_observe_n(struct metrics_histogram *h, double v, uint64_t n)
{
    for (size_t i = 0; i < h->nbounds; i++) {
        if (v <= h->bounds[i]) {
            h->counts[i] += n;
            break;
        }
    }
    h->count += n;
    h->sum += v * (double)n;
}

void metrics_histogram_observe(struct metrics_histogram *h, double v)
{
    metrics_histogram_observe_n(h, v, 1);
}

/* NAME_bucket{[label="value",]le="bound"}: the extra label first. */
static void bucket_sample(struct metrics_out *m, const char *name, const char *label,
                          const char *label_value, const char *le, uint64_t v)
{
    printf_(m, "%s_bucket{", name);
    if (label != NULL) {
        printf_(m, "%s=\"", label);
        put_escaped(m, label_value, 1);
        puts_(m, "\",");
    }
    printf_(m, "le=\"%s\"} %" PRIu64 "\n", le, v);
}

void metrics_histogram_samples(struct metrics_out *m, const char *name, const char *label,
                               const char *label_value, const struct metrics_histogram *h)
{
    char sample[128], le[32];
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h->nbounds; i++) {
        cumulative += h->counts[i];
        snprintf(le, sizeof(le), "%.15g", h->bounds[i]);
        bucket_sample(m, name, label, label_value, le, cumulative);
    }
    bucket_sample(m, name, label, label_value, "+Inf", h->count);
    snprintf(sample, sizeof(sample), "%s_sum", name);
    metrics_f64(m, sample, label, label_value, h->sum);
    snprintf(sample, sizeof(sample), "%s_count", name);
    metrics_u64(m, sample, label, label_value, h->count);
}

void metrics_histogram_write(struct metrics_out *m, const char *name, const char *help,
                             const struct metrics_histogram *h)
{
    metrics_family(m, name, "histogram", help);
    metrics_histogram_samples(m, name, NULL, NULL, h);
}

/* Resident pages from /proc/self/statm, in bytes; -1 when unreadable. */
static double resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size, resident;
    if (f == NULL)
        return -1;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (double)resident * (double)page : -1;
}

/* Entries of /proc/self/fd, less the one opendir holds; -1 when unreadable. */
static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return (double)(n - 1);
}

void metrics_process(struct metrics_out *m, uint64_t start_wall_ms)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        metrics_family(m, "process_cpu_seconds_total", "counter",
                       "User and system CPU time of the process, all threads, in seconds.");
        metrics_f64(m, "process_cpu_seconds_total", NULL, NULL,
                    (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                        ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6);
    }
    double rss = resident_bytes();
    if (rss >= 0)
        metrics_gauge(m, "process_resident_memory_bytes", "Resident memory of the process.",
                      rss);
    double fds = open_fds();
    if (fds >= 0)
        metrics_gauge(m, "process_open_fds", "Open file descriptors of the process.", fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        metrics_gauge(m, "process_max_fds", "The process's limit of open file descriptors.",
                      (double)rl.rlim_cur);
    metrics_gauge(m, "process_start_time_seconds",
                  "When the process started, in seconds since the Unix epoch.",
                  (double)start_wall_ms / 1000.0);
}
