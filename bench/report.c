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

void report_begin(FILE *f, enum report_format fmt, const struct report_run *run)
{
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
