/* Unit tests for common/metrics.c: the Prometheus text format as written
 * (HELP and TYPE lines, samples with and without a label, escaping of
 * help texts and label values, integer and floating values), histograms
 * (cumulative buckets, inclusive bounds, +Inf, sum and count; with an
 * extra label before le) and the
 * process metrics of this very process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"

static void test_families_and_samples(void **state)
{
    (void)state;
    struct metrics_out m;
    metrics_init(&m);
    metrics_counter(&m, "dchat_x_total", "Things done.", 18446744073709551615ull);
    metrics_family(&m, "dchat_links", "gauge", "Links, by state.");
    metrics_u64(&m, "dchat_links", "state", "up", 2);
    metrics_f64(&m, "dchat_links", "state", "a\"b\\c\nd", 0.5);
    metrics_gauge(&m, "dchat_g", "Back\\slash and\nnewline.", 1e21);
    const char *want =
        "# HELP dchat_x_total Things done.\n"
        "# TYPE dchat_x_total counter\n"
        "dchat_x_total 18446744073709551615\n"
        "# HELP dchat_links Links, by state.\n"
        "# TYPE dchat_links gauge\n"
        "dchat_links{state=\"up\"} 2\n"
        "dchat_links{state=\"a\\\"b\\\\c\\nd\"} 0.5\n"
        "# HELP dchat_g Back\\\\slash and\\nnewline.\n"
        "# TYPE dchat_g gauge\n"
        "dchat_g 1e+21\n";
    assert_string_equal(m.buf, want);
    assert_int_equal(m.len, strlen(want));
    free(m.buf);
}

static void test_histogram(void **state)
{
    (void)state;
    static const double bounds[] = { 0.001, 0.01, 1 };
    struct metrics_histogram h;
    metrics_histogram_init(&h, bounds, 3);
    double obs[] = { 0.0005, 0.001, 0.005, 0.5, 3, 7 };
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        metrics_histogram_observe(&h, obs[i]);
    struct metrics_out m;
    metrics_init(&m);
    metrics_histogram_write(&m, "dchat_h_seconds", "Some times.", &h);
    const char *want =
        "# HELP dchat_h_seconds Some times.\n"
        "# TYPE dchat_h_seconds histogram\n"
        "dchat_h_seconds_bucket{le=\"0.001\"} 2\n"   /* a bound is inclusive */
        "dchat_h_seconds_bucket{le=\"0.01\"} 3\n"
        "dchat_h_seconds_bucket{le=\"1\"} 4\n"
        "dchat_h_seconds_bucket{le=\"+Inf\"} 6\n"
        "dchat_h_seconds_sum 10.5065\n"
        "dchat_h_seconds_count 6\n";
    assert_string_equal(m.buf, want);
    free(m.buf);

    /* n of one value at once: as n single observations */
    struct metrics_histogram one, many;
    metrics_histogram_init(&one, bounds, 3);
    metrics_histogram_init(&many, bounds, 3);
    for (int i = 0; i < 3; i++)
        metrics_histogram_observe(&one, 0.005);
    metrics_histogram_observe(&one, 2);
    metrics_histogram_observe_n(&many, 0.005, 3);
    metrics_histogram_observe_n(&many, 2, 1);
    metrics_histogram_observe_n(&many, 0.5, 0); /* nothing */
    assert_memory_equal(one.counts, many.counts, sizeof(one.counts));
    assert_int_equal(one.count, 4);
    assert_int_equal(many.count, 4);
    assert_true(one.sum == many.sum);
}

static void test_labelled_histogram(void **state)
{
    (void)state;
    static const double bounds[] = { 0.01 };
    struct metrics_histogram a, b;
    metrics_histogram_init(&a, bounds, 1);
    metrics_histogram_init(&b, bounds, 1);
    metrics_histogram_observe(&a, 0.005);
    metrics_histogram_observe(&b, 0.5);
    metrics_histogram_observe(&b, 0.25);
    struct metrics_out m;
    metrics_init(&m);
    metrics_family(&m, "dchat_t_seconds", "histogram", "Times.");
    metrics_histogram_samples(&m, "dchat_t_seconds", "source", "cl\"ient", &a);
    metrics_histogram_samples(&m, "dchat_t_seconds", "source", "peer", &b);
    const char *want =
        "# HELP dchat_t_seconds Times.\n"
        "# TYPE dchat_t_seconds histogram\n"
        "dchat_t_seconds_bucket{source=\"cl\\\"ient\",le=\"0.01\"} 1\n"
        "dchat_t_seconds_bucket{source=\"cl\\\"ient\",le=\"+Inf\"} 1\n"
        "dchat_t_seconds_sum{source=\"cl\\\"ient\"} 0.005\n"
        "dchat_t_seconds_count{source=\"cl\\\"ient\"} 1\n"
        "dchat_t_seconds_bucket{source=\"peer\",le=\"0.01\"} 0\n"
        "dchat_t_seconds_bucket{source=\"peer\",le=\"+Inf\"} 2\n"
        "dchat_t_seconds_sum{source=\"peer\"} 0.75\n"
        "dchat_t_seconds_count{source=\"peer\"} 2\n";
    assert_string_equal(m.buf, want);
    free(m.buf);
}

static void test_grows_past_its_first_buffer(void **state)
{
    (void)state;
    struct metrics_out m;
    metrics_init(&m);
    for (int i = 0; i < 2000; i++)
        metrics_u64(&m, "dchat_many", NULL, NULL, (uint64_t)i);
    assert_true(m.len > 20000);
    assert_int_equal(strlen(m.buf), m.len);
    assert_non_null(strstr(m.buf, "dchat_many 1999\n"));
    free(m.buf);
}

static void test_process_metrics_of_this_process(void **state)
{
    (void)state;
    struct metrics_out m;
    metrics_init(&m);
    metrics_process(&m, 1700000000123ull);
    const char *names[] = { "process_cpu_seconds_total ", "process_resident_memory_bytes ",
                            "process_open_fds ", "process_max_fds ",
                            "process_start_time_seconds 1700000000.123\n" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char line[80];
        snprintf(line, sizeof(line), "\n%s", names[i]);
        assert_non_null(strstr(m.buf, line));
    }
    assert_non_null(strstr(m.buf, "# TYPE process_cpu_seconds_total counter\n"));
    free(m.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_and_samples),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_labelled_histogram),
        cmocka_unit_test(test_grows_past_its_first_buffer),
        cmocka_unit_test(test_process_metrics_of_this_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
