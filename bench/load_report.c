/* load_report: table, CSV and JSON lines of the load mode (see
 * load_report.h). */
#include <math.h>
#include <stdio.h>

#include <jansson.h>

#include "bench/load_report.h"

static double per_s(uint64_t n, double span_s)
{
    return span_s > 0 ? (double)n / span_s : 0;
}

void load_report_begin(FILE *f, enum report_format fmt, const struct load_report_run *run)
{
    switch (fmt) {
    case REPORT_TABLE:
        fprintf(f, "# load: %u clients on %u node%s, %u sending %g msgs/s each, %u-byte texts, "
                   "%s, %u s; a row every %g s\n", run->clients, run->nodes,
                run->nodes == 1 ? "" : "s", run->senders, run->rate, run->size,
                run->rooms ? "in rooms" : "all chats", run->duration_s, run->interval_s);
        if (run->rooms)
            fprintf(f, "# rooms: %u (chatId 1000 + client %% %u)\n", run->rooms, run->rooms);
        for (unsigned k = 0; k < run->nodes; k++)
            fprintf(f, "# node%u = %s\n", k + 1, run->node_names[k]);
        fprintf(f, "%8s %8s %7s %8s %10s %9s %7s %7s %7s %8s %8s %6s %6s %5s %5s %7s %6s",
                "interval", "elapsed", "conn", "sent", "delivered", "dl/s", "p50 ms", "p90 ms",
                "p99 ms", "p99.9 ms", "max ms", "errors", "reconn", "lost", "dup", "reorder",
                "late");
        for (unsigned k = 0; k < run->nodes; k++) {
            char cpu[24], rss[24];
            snprintf(cpu, sizeof(cpu), "n%u cpu s", k + 1);
            snprintf(rss, sizeof(rss), "n%u MiB", k + 1);
            fprintf(f, " %8s %8s", cpu, rss);
        }
        fputc('\n', f);
        break;
    case REPORT_CSV:
        fputs("interval,elapsed_s,connected,sent,deliveries,sent_per_s,deliveries_per_s,"
              "p50_ms,p90_ms,p99_ms,p999_ms,max_ms,errors,reconnects,lost,duplicated,"
              "reordered,late_sends", f);
        for (unsigned k = 0; k < run->nodes; k++)
            fprintf(f, ",node%u_cpu_s,node%u_rss_mib", k + 1, k + 1);
        fputc('\n', f);
        break;
    case REPORT_JSON:
        break;
    }
    fflush(f);
}

/* The node columns are nK: the title lines above say which node is which. */
static void table_row(FILE *f, const struct load_report_run *run, const struct load_row *r)
{
    char label[16];
    if (r->interval)
        snprintf(label, sizeof(label), "%u", r->interval);
    else
        snprintf(label, sizeof(label), "total");
    fprintf(f, "%8s %8.1f %7u %8llu %10llu %9.0f %7.2f %7.2f %7.2f %8.2f %8.2f %6llu %6llu "
               "%5llu %5llu %7llu %6llu", label, r->elapsed_s, r->connected,
            (unsigned long long)r->sent, (unsigned long long)r->deliveries,
            per_s(r->deliveries, r->span_s), r->p50_ms, r->p90_ms, r->p99_ms, r->p999_ms,
            r->max_ms, (unsigned long long)r->errors, (unsigned long long)r->reconnects,
            (unsigned long long)r->lost, (unsigned long long)r->dups,
            (unsigned long long)r->reordered, (unsigned long long)r->late);
    for (unsigned k = 0; k < run->nodes; k++) {
        char cpu[24] = "-", rss[24] = "-";
        if (!isnan(r->node_cpu_s[k]))
            snprintf(cpu, sizeof(cpu), "%.2f", r->node_cpu_s[k]);
        if (!isnan(r->node_rss_mib[k]))
            snprintf(rss, sizeof(rss), "%.1f", r->node_rss_mib[k]);
        fprintf(f, " %8s %8s", cpu, rss);
    }
    fputc('\n', f);
}

static void csv_num(FILE *f, double v, const char *fmt)
{
    fputc(',', f);
    if (!isnan(v))
        fprintf(f, fmt, v);
}

static void csv_row(FILE *f, const struct load_report_run *run, const struct load_row *r)
{
    if (r->interval)
        fprintf(f, "%u", r->interval);
    else
        fputs("total", f);
    fprintf(f, ",%.3f,%u,%llu,%llu,%.1f,%.1f,%.3f,%.3f,%.3f,%.3f,%.3f,%llu,%llu,%llu,%llu,%llu,"
               "%llu", r->elapsed_s, r->connected, (unsigned long long)r->sent,
            (unsigned long long)r->deliveries, per_s(r->sent, r->span_s),
            per_s(r->deliveries, r->span_s), r->p50_ms, r->p90_ms, r->p99_ms, r->p999_ms,
            r->max_ms, (unsigned long long)r->errors, (unsigned long long)r->reconnects,
            (unsigned long long)r->lost, (unsigned long long)r->dups,
            (unsigned long long)r->reordered, (unsigned long long)r->late);
    for (unsigned k = 0; k < run->nodes; k++) {
        csv_num(f, r->node_cpu_s[k], "%.3f");
        csv_num(f, r->node_rss_mib[k], "%.1f");
    }
    fputc('\n', f);
}

static json_t *num_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static json_t *json_row(const struct load_report_run *run, const struct load_row *r)
{
    json_t *o = json_pack(
        "{s:o, s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
        "interval", r->interval ? json_integer(r->interval) : json_string("total"),
        "elapsed_s", r->elapsed_s, "connected", (json_int_t)r->connected, "sent",
        (json_int_t)r->sent, "deliveries", (json_int_t)r->deliveries, "sent_per_s",
        per_s(r->sent, r->span_s), "deliveries_per_s", per_s(r->deliveries, r->span_s),
        "p50_ms", r->p50_ms, "p90_ms", r->p90_ms, "p99_ms", r->p99_ms, "p999_ms", r->p999_ms,
        "max_ms", r->max_ms);
    json_object_update_new(o, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "errors",
                                        (json_int_t)r->errors, "reconnects",
                                        (json_int_t)r->reconnects, "lost", (json_int_t)r->lost,
                                        "duplicated", (json_int_t)r->dups, "reordered",
                                        (json_int_t)r->reordered, "late_sends",
                                        (json_int_t)r->late));
    json_t *nodes = json_array();
    for (unsigned k = 0; k < run->nodes; k++)
        json_array_append_new(nodes, json_pack("{s:s, s:o, s:o}", "node", run->node_names[k],
                                               "cpu_s", num_or_null(r->node_cpu_s[k]),
                                               "rss_mib", num_or_null(r->node_rss_mib[k])));
    json_object_set_new(o, "nodes", nodes);
    return o;
}

static void json_line(FILE *f, json_t *o)
{
    json_dumpf(o, f, JSON_COMPACT);
    fputc('\n', f);
    json_decref(o);
}

void load_report_row(FILE *f, enum report_format fmt, const struct load_report_run *run,
                     const struct load_row *r)
{
    switch (fmt) {
    case REPORT_TABLE: table_row(f, run, r); break;
    case REPORT_CSV: csv_row(f, run, r); break;
    case REPORT_JSON: json_line(f, json_row(run, r)); break;
    }
    fflush(f);
}

void load_report_end(FILE *f, enum report_format fmt, const struct load_report_run *run,
                     const struct load_row *r, const struct load_verdict *v)
{
    switch (fmt) {
    case REPORT_TABLE:
        table_row(f, run, r);
        fprintf(f, "# exactly once: %llu lost, %llu duplicated, %llu reordered, %llu strays; "
                   "%u of %u clients joined at the end: %s\n", (unsigned long long)r->lost,
                (unsigned long long)r->dups, (unsigned long long)r->reordered,
                (unsigned long long)v->strays, v->clients_joined, run->clients,
                v->ok ? "OK" : "FAILED");
        if (v->unaccepted)
            fprintf(f, "# not owed: %llu deliveries of messages sent on connections that "
                       "dropped before any client got them (the node never accepted them)\n",
                    (unsigned long long)v->unaccepted);
        if (v->error)
            fprintf(f, "# %s\n", v->error);
        break;
    case REPORT_CSV:
        csv_row(f, run, r);
        break;
    case REPORT_JSON: {
        json_t *o = json_row(run, r);
        json_object_update_new(
            o, json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:b, s:o}", "clients",
                         (json_int_t)run->clients, "senders", (json_int_t)run->senders,
                         "rooms", (json_int_t)run->rooms, "rate", run->rate, "strays",
                         (json_int_t)v->strays, "unaccepted", (json_int_t)v->unaccepted,
                         "clients_joined",
                         (json_int_t)v->clients_joined, "duration_s",
                         (json_int_t)run->duration_s, "ok", v->ok, "error",
                         v->error ? json_string(v->error) : json_null()));
        json_line(f, o);
        break;
    }
    }
    fflush(f);
}
