/* Unit tests for bench/report.c: the format names, and the table, CSV and
 * JSON output of a run (captured with open_memstream; the CSV is parsed
 * back field by field, the JSON with jansson). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench/report.h"

static const struct report_run RUN = {
    .target = "127.0.0.1:9001", .senders = 4, .nodes = 3, .size = 64, .window = 500,
};

static const struct report_row ROW1 = {
    .messages = 1000, .expected = 3000, .received = 2998,
    .total_s = 1.25, .send_s = 0.5, .rate = 2398.4,
    .p50_ms = 3.5, .p99_ms = 12.25, .max_ms = 40.126,
    .lost = 2, .dups = 1, .reordered = 7, .cpu_pct = 55.6,
};

static const struct report_row ROW2 = {
    .messages = 10000, .expected = 30000, .received = 30000,
    .total_s = 10.0, .send_s = 4.0, .rate = 3000.0,
    .p50_ms = 1.0, .p99_ms = 2.0, .max_ms = 4.0,
    .lost = 0, .dups = 0, .reordered = 0, .cpu_pct = 99.0,
};

/* Runs begin, the given rows and end in fmt; returns the output (free it). */
static char *capture(enum report_format fmt, const struct report_row *rows, size_t nrows,
                     int ok, const char *error)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_begin(f, fmt, &RUN);
    for (size_t i = 0; i < nrows; i++)
        report_row(f, fmt, &rows[i]);
    report_end(f, fmt, ok, error);
    assert_int_equal(fclose(f), 0);
    assert_non_null(buf);
    assert_int_equal(strlen(buf), len);
    return buf;
}

/* Splits s at sep in place; returns the number of fields (up to max). */
static size_t split(char *s, char sep, char **fields, size_t max)
{
    size_t n = 0;
    for (;;) {
        if (n == max)
            return max + 1;
        fields[n++] = s;
        char *e = strchr(s, sep);
        if (e == NULL)
            return n;
        *e = '\0';
        s = e + 1;
    }
}

static void test_parse_format(void **state)
{
    (void)state;
    enum report_format f = REPORT_JSON;
    assert_int_equal(report_parse_format("table", &f), 0);
    assert_int_equal(f, REPORT_TABLE);
    assert_int_equal(report_parse_format("csv", &f), 0);
    assert_int_equal(f, REPORT_CSV);
    assert_int_equal(report_parse_format("json", &f), 0);
    assert_int_equal(f, REPORT_JSON);
    f = REPORT_CSV;
    assert_int_equal(report_parse_format("", &f), -1);
    assert_int_equal(report_parse_format("JSON", &f), -1);
    assert_int_equal(report_parse_format("tables", &f), -1);
    assert_int_equal(report_parse_format("cs", &f), -1);
    assert_int_equal(f, REPORT_CSV);
}

static void test_table(void **state)
{
    (void)state;
    char *out = capture(REPORT_TABLE, &ROW1, 1, 0, "lost 2");
    char *lines[8];
    size_t n = split(out, '\n', lines, 7);
    /* Title, column header, one row, and the empty rest after the last
     * newline: the error is not part of the table. */
    assert_int_equal(n, 4);
    assert_string_equal(lines[3], "");
    assert_string_equal(lines[0], "# 4 senders to 127.0.0.1:9001, one receiver on each of "
                                  "3 nodes, 64-byte texts, window 500");
    static const char *const cols[] = {
        "messages", "expected", "received", "total s", "send s", "deliveries/s", "p50 ms",
        "p99 ms", "max ms", "lost", "dup", "reorder", "cpu %",
    };
    const char *p = lines[1];
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        const char *c = strstr(p, cols[i]);
        if (c == NULL)
            fail_msg("column \"%s\" missing or out of order in \"%s\"", cols[i], lines[1]);
        p = c + strlen(cols[i]);
    }
    /* The columns are right-aligned: the row is exactly as wide. */
    assert_int_equal(strlen(lines[1]), strlen(lines[2]));
    unsigned messages;
    unsigned long long expected, received, lost, dups, reordered;
    double total_s, send_s, rate, p50, p99, max, cpu;
    int end = 0;
    assert_int_equal(sscanf(lines[2], "%u %llu %llu %lf %lf %lf %lf %lf %lf %llu %llu %llu %lf%n",
                            &messages, &expected, &received, &total_s, &send_s, &rate, &p50,
                            &p99, &max, &lost, &dups, &reordered, &cpu, &end),
                     13);
    assert_int_equal(lines[2][end], '\0');
    assert_int_equal(messages, 1000);
    assert_int_equal(expected, 3000);
    assert_int_equal(received, 2998);
    assert_float_equal(total_s, 1.25, 1e-9);
    assert_float_equal(send_s, 0.5, 1e-9);
    assert_float_equal(rate, 2398, 1e-9);
    assert_float_equal(p50, 3.5, 1e-9);
    assert_float_equal(p99, 12.25, 1e-9);
    assert_float_equal(max, 40.13, 1e-9);  /* two decimals */
    assert_int_equal(lost, 2);
    assert_int_equal(dups, 1);
    assert_int_equal(reordered, 7);
    assert_float_equal(cpu, 56, 1e-9);     /* no decimals */
    free(out);
}

static void test_csv(void **state)
{
    (void)state;
    const struct report_row rows[] = { ROW1, ROW2 };
    char *out = capture(REPORT_CSV, rows, 2, 1, NULL);
    char *lines[8];
    assert_int_equal(split(out, '\n', lines, 7), 4);
    assert_string_equal(lines[3], "");
    char *head[16];
    assert_int_equal(split(lines[0], ',', head, 15), 13);
    static const char *const names[] = {
        "messages", "expected", "received", "total_s", "send_s", "deliveries_per_s",
        "p50_ms", "p99_ms", "max_ms", "lost", "duplicated", "reordered", "bench_cpu_pct",
    };
    for (size_t i = 0; i < 13; i++)
        assert_string_equal(head[i], names[i]);
    assert_string_equal(lines[1], "1000,3000,2998,1.250000,0.500000,2398,3.500,12.250,40.126,"
                                  "2,1,7,55.6");
    for (size_t r = 0; r < 2; r++) {
        char *f[16];
        assert_int_equal(split(lines[1 + r], ',', f, 15), 13);
        const struct report_row *w = &rows[r];
        char *e;
        assert_int_equal(strtoull(f[0], &e, 10), w->messages);
        assert_int_equal(*e, '\0');
        assert_int_equal(strtoull(f[1], &e, 10), w->expected);
        assert_int_equal(strtoull(f[2], &e, 10), w->received);
        assert_float_equal(strtod(f[3], &e), w->total_s, 1e-6);
        assert_int_equal(*e, '\0');
        assert_float_equal(strtod(f[4], &e), w->send_s, 1e-6);
        assert_float_equal(strtod(f[5], &e), w->rate, 0.5);
        assert_float_equal(strtod(f[6], &e), w->p50_ms, 1e-3);
        assert_float_equal(strtod(f[7], &e), w->p99_ms, 1e-3);
        assert_float_equal(strtod(f[8], &e), w->max_ms, 1e-3);
        assert_int_equal(strtoull(f[9], &e, 10), w->lost);
        assert_int_equal(strtoull(f[10], &e, 10), w->dups);
        assert_int_equal(strtoull(f[11], &e, 10), w->reordered);
        assert_float_equal(strtod(f[12], &e), w->cpu_pct, 0.05);
        assert_int_equal(*e, '\0');
    }
    free(out);
}

static void check_json_row(json_t *o, const struct report_row *w)
{
    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), 13);
    assert_int_equal(json_integer_value(json_object_get(o, "messages")), w->messages);
    assert_int_equal(json_integer_value(json_object_get(o, "expected")), w->expected);
    assert_int_equal(json_integer_value(json_object_get(o, "received")), w->received);
    assert_float_equal(json_number_value(json_object_get(o, "total_s")), w->total_s, 1e-9);
    assert_float_equal(json_number_value(json_object_get(o, "send_s")), w->send_s, 1e-9);
    assert_float_equal(json_number_value(json_object_get(o, "deliveries_per_s")), w->rate,
                       1e-9);
    assert_float_equal(json_number_value(json_object_get(o, "p50_ms")), w->p50_ms, 1e-9);
    assert_float_equal(json_number_value(json_object_get(o, "p99_ms")), w->p99_ms, 1e-9);
    assert_float_equal(json_number_value(json_object_get(o, "max_ms")), w->max_ms, 1e-9);
    assert_int_equal(json_integer_value(json_object_get(o, "lost")), w->lost);
    assert_int_equal(json_integer_value(json_object_get(o, "duplicated")), w->dups);
    assert_int_equal(json_integer_value(json_object_get(o, "reordered")), w->reordered);
    assert_float_equal(json_number_value(json_object_get(o, "bench_cpu_pct")), w->cpu_pct,
                       1e-9);
}

static void test_json(void **state)
{
    (void)state;
    const struct report_row rows[] = { ROW1, ROW2 };
    char *out = capture(REPORT_JSON, rows, 2, 0, "round of 1000 messages: lost 2");
    json_error_t err;
    json_t *doc = json_loads(out, 0, &err);
    if (doc == NULL)
        fail_msg("JSON does not parse (%s, line %d): %s", err.text, err.line, out);
    assert_true(json_is_object(doc));
    assert_string_equal(json_string_value(json_object_get(doc, "target")), "127.0.0.1:9001");
    assert_int_equal(json_integer_value(json_object_get(doc, "senders")), 4);
    assert_int_equal(json_integer_value(json_object_get(doc, "nodes")), 3);
    assert_int_equal(json_integer_value(json_object_get(doc, "size")), 64);
    assert_int_equal(json_integer_value(json_object_get(doc, "window")), 500);
    assert_true(json_is_false(json_object_get(doc, "ok")));
    assert_string_equal(json_string_value(json_object_get(doc, "error")),
                        "round of 1000 messages: lost 2");
    json_t *rounds = json_object_get(doc, "rounds");
    assert_true(json_is_array(rounds));
    assert_int_equal(json_array_size(rounds), 2);
    check_json_row(json_array_get(rounds, 0), &ROW1);
    check_json_row(json_array_get(rounds, 1), &ROW2);
    json_decref(doc);
    /* One document, ending in a newline. */
    size_t len = strlen(out);
    assert_true(len > 0 && out[len - 1] == '\n');
    free(out);
}

static void test_table_title_without_window(void **state)
{
    (void)state;
    struct report_run run = RUN;
    run.window = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_begin(f, REPORT_TABLE, &run);
    assert_int_equal(fclose(f), 0);
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_string_equal(buf, "# 4 senders to 127.0.0.1:9001, one receiver on each of "
                             "3 nodes, 64-byte texts, no window (flat out)");
    free(buf);
}

/* The NATS side says so in the title, and JSON names the proto; the CSV
 * columns stay the same so that the two sides compare row by row. */
static void test_nats_title_and_json_proto(void **state)
{
    (void)state;
    struct report_run run = RUN;
    run.proto = "nats";
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_begin(f, REPORT_TABLE, &run);
    report_begin(f, REPORT_JSON, &run);
    report_end(f, REPORT_JSON, 1, NULL);
    assert_int_equal(fclose(f), 0);
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_string_equal(buf, "# nats: 4 senders to 127.0.0.1:9001, one receiver on each of "
                             "3 servers, 64-byte texts, window 500");
    char *json = strchr(nl + 1, '{');
    assert_non_null(json);
    json_error_t err;
    json_t *doc = json_loads(json, 0, &err);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "proto")), "nats");
    json_decref(doc);
    free(buf);
    /* dchat's JSON says dchat when the run names no proto */
    char *out = capture(REPORT_JSON, NULL, 0, 1, NULL);
    doc = json_loads(out, 0, &err);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "proto")), "dchat");
    json_decref(doc);
    free(out);
}

static void test_json_ok_no_rounds(void **state)
{
    (void)state;
    char *out = capture(REPORT_JSON, NULL, 0, 1, NULL);
    json_error_t err;
    json_t *doc = json_loads(out, 0, &err);
    assert_non_null(doc);
    assert_true(json_is_true(json_object_get(doc, "ok")));
    assert_true(json_is_null(json_object_get(doc, "error")));
    assert_true(json_is_array(json_object_get(doc, "rounds")));
    assert_int_equal(json_array_size(json_object_get(doc, "rounds")), 0);
    json_decref(doc);
    free(out);
}

/* A second run in the same process starts a fresh document; rows and an
 * end without a begin print nothing. */
static void test_json_fresh_document(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_row(f, REPORT_JSON, &ROW1);
    report_end(f, REPORT_JSON, 1, NULL);
    fflush(f);
    assert_int_equal(len, 0);
    /* A begun document abandoned for a new one. */
    report_begin(f, REPORT_JSON, &RUN);
    report_row(f, REPORT_JSON, &ROW1);
    fflush(f);
    assert_int_equal(len, 0);  /* JSON is written only at the end */
    report_begin(f, REPORT_JSON, &RUN);
    report_row(f, REPORT_JSON, &ROW2);
    report_end(f, REPORT_JSON, 1, NULL);
    assert_int_equal(fclose(f), 0);
    json_error_t err;
    json_t *doc = json_loads(buf, 0, &err);
    assert_non_null(doc);
    json_t *rounds = json_object_get(doc, "rounds");
    assert_int_equal(json_array_size(rounds), 1);
    check_json_row(json_array_get(rounds, 0), &ROW2);
    json_decref(doc);
    free(buf);
}

static const struct report_paced PACED = {
    .offered_msgs = 2000, .offered_deliveries = 12000, .achieved = 11989.5,
    .messages = 2000, .expected = 12000, .received = 11999, .total_s = 1.0009,
    .p50_ms = 0.8, .p90_ms = 1.41, .p99_ms = 2.2, .p999_ms = 8.31, .max_ms = 9.02,
    .lost = 1, .dups = 2, .reordered = 3, .late = 4, .late_bound_ms = 2, .late_max_ms = 2.5,
    .samples = 11999, .sampled_from = 11999, .cpu_pct = 8.04,
};

/* A paced run prints a title with its rate and duration, then its one row,
 * in every format: the CSV header names every field in the row's order,
 * JSON holds the row as "paced" beside the rate; a sampled latency set is
 * said under the table. */
static void test_paced(void **state)
{
    (void)state;
    struct report_run run = RUN;
    run.proto = "nats";
    run.rate = 2000;
    run.duration_s = 1;
    static const char *const names[] = {
        "offered_msgs_per_s", "offered_deliveries_per_s", "achieved_deliveries_per_s",
        "messages", "expected", "received", "total_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
        "max_ms", "lost", "duplicated", "reordered", "late_sends", "late_bound_ms",
        "late_max_ms", "latency_samples", "deliveries_sampled", "bench_cpu_pct",
    };
    const size_t nf = sizeof(names) / sizeof(names[0]);
    char *buf = NULL;
    size_t len = 0;

    /* CSV */
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_begin(f, REPORT_CSV, &run);
    report_paced(f, REPORT_CSV, &PACED);
    report_end(f, REPORT_CSV, 1, NULL);
    assert_int_equal(fclose(f), 0);
    char *lines[8];
    assert_int_equal(split(buf, '\n', lines, 7), 3);
    char *head[32], *row[32];
    assert_int_equal(split(lines[0], ',', head, 31), nf);
    assert_int_equal(split(lines[1], ',', row, 31), nf);
    for (size_t i = 0; i < nf; i++)
        assert_string_equal(head[i], names[i]);
    assert_string_equal(row[0], "2000");
    assert_string_equal(row[1], "12000");
    assert_string_equal(row[3], "2000");
    assert_string_equal(row[4], "12000");
    assert_string_equal(row[5], "11999");
    assert_string_equal(row[10], "8.310");
    assert_string_equal(row[15], "4");
    assert_string_equal(row[17], "2.500");
    free(buf);

    /* table: title, header, row, and no sampling note */
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_begin(f, REPORT_TABLE, &run);
    report_paced(f, REPORT_TABLE, &PACED);
    struct report_paced sampled = PACED;
    sampled.samples = 100;
    report_paced(f, REPORT_TABLE, &sampled);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(split(buf, '\n', lines, 7), 6);
    assert_string_equal(lines[0], "# nats, paced: 2000 msgs/s for 1 s over 4 senders to "
                                  "127.0.0.1:9001, one receiver on each of 3 servers, 64-byte "
                                  "texts; latency from each message's due time");
    assert_true(strstr(lines[1], "p99.9 ms") != NULL);
    size_t ncols = 0;
    for (char *tok = strtok(lines[2], " "); tok != NULL; tok = strtok(NULL, " "))
        ncols++;
    assert_int_equal(ncols, 17);   /* every column of the header has a value */
    assert_true(lines[3][0] != '#');
    assert_string_equal(lines[4], "# latency quantiles from a uniform random sample of 100 of "
                                  "the 11999 deliveries (max exact)");
    free(buf);

    /* JSON */
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_begin(f, REPORT_JSON, &run);
    report_paced(f, REPORT_JSON, &PACED);
    report_end(f, REPORT_JSON, 1, NULL);
    assert_int_equal(fclose(f), 0);
    json_error_t err;
    json_t *doc = json_loads(buf, 0, &err);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "rate")), 2000);
    assert_int_equal(json_integer_value(json_object_get(doc, "duration_s")), 1);
    assert_null(json_object_get(doc, "rounds"));
    json_t *o = json_object_get(doc, "paced");
    assert_int_equal(json_object_size(o), nf);
    for (size_t i = 0; i < nf; i++)
        if (json_object_get(o, names[i]) == NULL)
            fail_msg("JSON lacks %s", names[i]);
    assert_float_equal(json_number_value(json_object_get(o, "p999_ms")), 8.31, 1e-9);
    assert_int_equal(json_integer_value(json_object_get(o, "late_sends")), 4);
    assert_int_equal(json_integer_value(json_object_get(o, "received")), 11999);
    json_decref(doc);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_format),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_nats_title_and_json_proto),
        cmocka_unit_test(test_json_ok_no_rounds),
        cmocka_unit_test(test_table_title_without_window),
        cmocka_unit_test(test_json_fresh_document),
        cmocka_unit_test(test_paced),
    };
    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
