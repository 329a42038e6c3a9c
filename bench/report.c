/* report: table, CSV and JSON output of the bench (see report.h). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "bench/report.h"

/* JSON accumulates here until report_end. */
static json_t *json_doc;

int report_parse_format(const char *s, enum report_format *out)
{
    if (strcmp(s, "table") == 0) *out = REPORT_TABLE;
    else if (strcmp(s, "csv") == 0) *out = REPORT_CSV;
    else if (strcmp(s, "json") == 0) *out = REPORT_JSON;
    else return -1;
    return 0;
}

static const char *PACED_CSV =
    "offered_msgs_per_s,offered_deliveries_per_s,achieved_deliveries_per_s,messages,"
    "expected,received,total_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,lost,duplicated,"
    "reordered,late_sends,late_bound_ms,late_max_ms,latency_samples,deliveries_sampled,"
    "bench_cpu_pct\n";

static void begin_paced(FILE *f, enum report_format fmt, const struct report_run *run)
{
    const char *proto = run->proto ? run->proto : "dchat";
    switch (fmt) {
    case REPORT_TABLE:
        fprintf(f, "# %s, paced: %u msgs/s for %u s over %u senders to %s, one receiver on "
                   "each of %u servers, %u-byte texts; latency from each message's due time\n",
                proto, run->rate, run->duration_s, run->senders, run->target, run->nodes,
                run->size);
        fprintf(f, "%10s %12s %12s %9s %11s %11s %7s %7s %7s %8s %8s %5s %5s %7s %7s %8s "
                   "%6s\n", "offered/s", "offered dl/s", "achieved/s", "messages", "expected",
                "received", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "lost", "dup",
                "reorder", "late", "late ms", "cpu %");
        break;
    case REPORT_CSV:
        fputs(PACED_CSV, f);
        break;
    case REPORT_JSON:
        json_decref(json_doc);
        json_doc = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "proto", proto, "target",
                             run->target, "senders", (json_int_t)run->senders, "nodes",
                             (json_int_t)run->nodes, "size", (json_int_t)run->size,
                             "rate", (json_int_t)run->rate, "duration_s",
                             (json_int_t)run->duration_s);
        break;
    }
}

void report_begin(FILE *f, enum report_format fmt, const struct report_run *run)
{
    if (run->rate > 0) {
        begin_paced(f, fmt, run);
        fflush(f);
        return;
    }
    switch (fmt) {
    case REPORT_TABLE: {
        char window[32] = "no window (flat out)";
        if (run->window > 0)
            snprintf(window, sizeof(window), "window %u", run->window);
        if (run->proto == NULL || strcmp(run->proto, "dchat") == 0)
            fprintf(f, "# %u senders to %s, one receiver on each of %u nodes, %u-byte texts, "
                       "%s\n", run->senders, run->target, run->nodes, run->size, window);
        else
            fprintf(f, "# %s: %u senders to %s, one receiver on each of %u servers, %u-byte "
                       "texts, %s\n", run->proto, run->senders, run->target, run->nodes,
                    run->size, window);
        fprintf(f, "%9s %11s %11s %9s %9s %13s %8s %8s %8s %6s %6s %7s %6s\n", "messages",
                "expected", "received", "total s", "send s", "deliveries/s", "p50 ms",
                "p99 ms", "max ms", "lost", "dup", "reorder", "cpu %");
        break;
    }
    case REPORT_CSV:
        fprintf(f, "messages,expected,received,total_s,send_s,deliveries_per_s,"
                   "p50_ms,p99_ms,max_ms,lost,duplicated,reordered,bench_cpu_pct\n");
        break;
    case REPORT_JSON:
        json_decref(json_doc);
        json_doc = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:[]}", "proto",
                             run->proto ? run->proto : "dchat", "target", run->target,
                             "senders", (json_int_t)run->senders, "nodes",
                             (json_int_t)run->nodes, "size", (json_int_t)run->size,
                             "window", (json_int_t)run->window, "rounds");
        break;
    }
    fflush(f);
}

void report_row(FILE *f, enum report_format fmt, const struct report_row *r)
{
    switch (fmt) {
    case REPORT_TABLE:
        fprintf(f, "%9u %11llu %11llu %9.3f %9.3f %13.0f %8.2f %8.2f %8.2f %6llu %6llu %7llu %6.0f\n",
                r->messages, (unsigned long long)r->expected,
                (unsigned long long)r->received, r->total_s, r->send_s, r->rate, r->p50_ms,
                r->p99_ms, r->max_ms, (unsigned long long)r->lost,
                (unsigned long long)r->dups, (unsigned long long)r->reordered, r->cpu_pct);
        break;
    case REPORT_CSV:
        fprintf(f, "%u,%llu,%llu,%.6f,%.6f,%.0f,%.3f,%.3f,%.3f,%llu,%llu,%llu,%.1f\n",
                r->messages, (unsigned long long)r->expected,
                (unsigned long long)r->received, r->total_s, r->send_s, r->rate, r->p50_ms,
                r->p99_ms, r->max_ms, (unsigned long long)r->lost,
                (unsigned long long)r->dups, (unsigned long long)r->reordered, r->cpu_pct);
        break;
    case REPORT_JSON:
        if (json_doc != NULL)
            json_array_append_new(
                json_object_get(json_doc, "rounds"),
                json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:f}",
                          "messages", (json_int_t)r->messages, "expected",
                          (json_int_t)r->expected, "received", (json_int_t)r->received,
                          "total_s", r->total_s, "send_s", r->send_s, "deliveries_per_s",
                          r->rate, "p50_ms", r->p50_ms, "p99_ms", r->p99_ms, "max_ms",
                          r->max_ms, "lost", (json_int_t)r->lost, "duplicated",
                          (json_int_t)r->dups, "reordered", (json_int_t)r->reordered,
                          "bench_cpu_pct", r->cpu_pct));
        break;
    }
    fflush(f);
}

void report_paced(FILE *f, enum report_format fmt, const struct report_paced *r)
{
    switch (fmt) {
    case REPORT_TABLE:
        fprintf(f, "%10.0f %12.0f %12.0f %9u %11llu %11llu %7.2f %7.2f %7.2f %8.2f %8.2f %5llu "
                   "%5llu %7llu %7llu %8.2f %6.0f\n",
                r->offered_msgs, r->offered_deliveries, r->achieved, r->messages,
                (unsigned long long)r->expected, (unsigned long long)r->received, r->p50_ms,
                r->p90_ms, r->p99_ms, r->p999_ms, r->max_ms, (unsigned long long)r->lost,
                (unsigned long long)r->dups, (unsigned long long)r->reordered,
                (unsigned long long)r->late, r->late_max_ms, r->cpu_pct);
        if (r->samples < r->sampled_from)
            fprintf(f, "# latency quantiles from a uniform random sample of %llu of the %llu "
                       "deliveries (max exact)\n", (unsigned long long)r->samples,
                    (unsigned long long)r->sampled_from);
        break;
    case REPORT_CSV:
        fprintf(f, "%.0f,%.0f,%.0f,%u,%llu,%llu,%.6f,%.3f,%.3f,%.3f,%.3f,%.3f,%llu,%llu,%llu,"
                   "%llu,%.3f,%.3f,%llu,%llu,%.1f\n",
                r->offered_msgs, r->offered_deliveries, r->achieved, r->messages,
                (unsigned long long)r->expected, (unsigned long long)r->received, r->total_s,
                r->p50_ms, r->p90_ms, r->p99_ms, r->p999_ms, r->max_ms,
                (unsigned long long)r->lost, (unsigned long long)r->dups,
                (unsigned long long)r->reordered, (unsigned long long)r->late,
                r->late_bound_ms, r->late_max_ms, (unsigned long long)r->samples,
                (unsigned long long)r->sampled_from, r->cpu_pct);
        break;
    case REPORT_JSON:
        if (json_doc != NULL) {
            json_t *o = json_pack(
                "{s:f, s:f, s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}",
                "offered_msgs_per_s", r->offered_msgs, "offered_deliveries_per_s",
                r->offered_deliveries, "achieved_deliveries_per_s", r->achieved, "messages",
                (json_int_t)r->messages, "expected", (json_int_t)r->expected, "received",
                (json_int_t)r->received, "total_s", r->total_s, "p50_ms", r->p50_ms, "p90_ms",
                r->p90_ms, "p99_ms", r->p99_ms, "p999_ms", r->p999_ms, "max_ms", r->max_ms);
            json_object_update_new(
                o, json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:f}", "lost",
                             (json_int_t)r->lost, "duplicated", (json_int_t)r->dups,
                             "reordered", (json_int_t)r->reordered, "late_sends",
                             (json_int_t)r->late, "late_bound_ms", r->late_bound_ms,
                             "late_max_ms", r->late_max_ms, "latency_samples",
                             (json_int_t)r->samples, "deliveries_sampled",
                             (json_int_t)r->sampled_from, "bench_cpu_pct", r->cpu_pct));
            json_object_set_new(json_doc, "paced", o);
        }
        break;
    }
    fflush(f);
}

void report_end(FILE *f, enum report_format fmt, int ok, const char *error)
{
    if (fmt == REPORT_JSON && json_doc != NULL) {
        json_object_set_new(json_doc, "ok", json_boolean(ok));
        json_object_set_new(json_doc, "error", error ? json_string(error) : json_null());
        json_dumpf(json_doc, f, JSON_INDENT(2));
        fputc('\n', f);
        json_decref(json_doc);
        json_doc = NULL;
    }
    fflush(f);
}
