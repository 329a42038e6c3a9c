/* Unit tests for common/log.c: log_parse_level for every level name (in any
 * case) and for bad ones; the defaults; level filtering by the log_* macros
 * (lines below the level are not written, LOG_OFF writes nothing); the line
 * format "<ISO 8601 UTC with ms> <name>[<id>] <level>: <message>\n", with
 * the timestamp checked against the wall clock around the call; log_set_id
 * switching the prefix between "name" and "name[id]"; and long lines being
 * cut to the 2 KiB buffer while keeping their newline. stderr is redirected
 * to a temporary file with dup/dup2 inside each capture and restored. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* --- capturing stderr ------------------------------------------------------- */

static int saved_stderr = -1;
static FILE *capture_file;

static void capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(fileno(capture_file), STDERR_FILENO), STDERR_FILENO);
}

/* Restores stderr and returns what was written meanwhile (malloc'd, NUL
 * terminated; *len excludes the NUL). */
static char *capture_end(size_t *len)
{
    fflush(stderr);
    assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    assert_int_equal(fseek(capture_file, 0, SEEK_END), 0);
    long size = ftell(capture_file);
    assert_true(size >= 0);
    rewind(capture_file);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, capture_file), (size_t)size);
    buf[size] = '\0';
    fclose(capture_file);
    capture_file = NULL;
    if (len)
        *len = (size_t)size;
    return buf;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Parses the "YYYY-MM-DDTHH:MM:SS.mmmZ" at the start of line into ms since
 * the epoch (UTC). */
static uint64_t parse_ts(const char *line)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    unsigned ms = 0;
    int n = sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3uZ", &tm.tm_year, &tm.tm_mon,
                   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
    assert_int_equal(n, 7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    assert_true(t != (time_t)-1);
    return (uint64_t)t * 1000u + ms;
}

/* Asserts that line (NUL terminated, with its '\n') matches the regex. */
static void assert_matches(const char *line, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, line, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("line \"%s\" does not match /%s/", line, pattern);
}

static int count_char(const char *s, size_t len, char ch)
{
    int n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == ch;
    return n;
}

#define TS_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

static int setup(void **state)
{
    (void)state;
    log_init("testprog");
    log_set_level(LOG_INFO);
    log_set_id(-1);
    return 0;
}

/* --- tests ------------------------------------------------------------------- */

/* Runs first, before any setup touched the globals. */
static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(log_get_level(), LOG_INFO);
    capture_begin();
    log_debug("not shown");
    log_info("shown %d", 1);
    size_t len;
    char *out = capture_end(&len);
    assert_matches(out, TS_RE "dchat info: shown 1\n$");
    free(out);
}

static void test_parse_level(void **state)
{
    (void)state;
    static const struct { const char *s; enum log_level want; } ok[] = {
        { "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "warn", LOG_WARN },
        { "error", LOG_ERROR }, { "off", LOG_OFF },
        /* strcasecmp: any case is accepted */
        { "DEBUG", LOG_DEBUG }, { "Info", LOG_INFO }, { "WaRn", LOG_WARN },
        { "ERROR", LOG_ERROR }, { "OFF", LOG_OFF },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        enum log_level got = (enum log_level)99;
        assert_int_equal(log_parse_level(ok[i].s, &got), 0);
        assert_int_equal(got, ok[i].want);
    }
    static const char *const bad[] = {
        "", "verbose", "warning", "err", "info ", " info", "debu", "debugx",
        "0", "1", "none", "trace", "in\xc3\xa9o",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum log_level got = (enum log_level)77;
        assert_int_equal(log_parse_level(bad[i], &got), -1);
        assert_int_equal(got, 77); /* untouched on failure */
    }
}

static void test_set_get_level(void **state)
{
    (void)state;
    for (int l = LOG_DEBUG; l <= LOG_OFF; l++) {
        log_set_level((enum log_level)l);
        assert_int_equal(log_get_level(), l);
    }
}

static void test_level_filtering(void **state)
{
    (void)state;
    static const char *const names[] = { "debug", "info", "warn", "error" };
    for (int level = LOG_DEBUG; level <= LOG_OFF; level++) {
        log_set_level((enum log_level)level);
        capture_begin();
        log_debug("m%d", LOG_DEBUG);
        log_info("m%d", LOG_INFO);
        log_warn("m%d", LOG_WARN);
        log_error("m%d", LOG_ERROR);
        size_t len;
        char *out = capture_end(&len);
        /* one line per level at or above the threshold, in call order */
        int want_lines = LOG_OFF - level;
        assert_int_equal(count_char(out, len, '\n'), want_lines);
        char *line = out;
        for (int l = level; l < LOG_OFF; l++) {
            char *nl = strchr(line, '\n');
            assert_non_null(nl);
            char saved = nl[1];
            nl[1] = '\0';
            char pat[128];
            snprintf(pat, sizeof(pat), TS_RE "testprog %s: m%d\n$", names[l], l);
            assert_matches(line, pat);
            nl[1] = saved;
            line = nl + 1;
        }
        assert_int_equal(*line, '\0');
        free(out);
    }
    /* log_enabled is the same test the macros use */
    log_set_level(LOG_WARN);
    assert_false(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
}

static void test_line_format_and_timestamp(void **state)
{
    (void)state;
    log_set_level(LOG_DEBUG);
    uint64_t before = wall_ms();
    capture_begin();
    log_write(LOG_WARN, "peer %d link %s (%.1f%%)", 2, "up", 99.5);
    size_t len;
    char *out = capture_end(&len);
    uint64_t after = wall_ms();
    assert_matches(out, TS_RE "testprog warn: peer 2 link up \\(99\\.5%\\)\n$");
    assert_int_equal(len, 24 + strlen(" testprog warn: peer 2 link up (99.5%)\n"));
    /* UTC, milliseconds, taken during the call */
    uint64_t ts = parse_ts(out);
    assert_true(ts >= before);
    assert_true(ts <= after);
    free(out);

    /* log_write itself does not filter: the macros do */
    log_set_level(LOG_ERROR);
    capture_begin();
    log_write(LOG_DEBUG, "direct");
    out = capture_end(&len);
    assert_matches(out, TS_RE "testprog debug: direct\n$");
    free(out);

    /* an empty message still gives a whole line */
    capture_begin();
    log_write(LOG_ERROR, "%s", "");
    out = capture_end(&len);
    assert_matches(out, TS_RE "testprog error: \n$");
    free(out);
}

static void test_set_id_prefix(void **state)
{
    (void)state;
    size_t len;
    log_init("node");
    log_set_id(3);
    capture_begin();
    log_info("peer %d link up", 2);
    char *out = capture_end(&len);
    assert_matches(out, TS_RE "node\\[3\\] info: peer 2 link up\n$");
    free(out);

    /* 0 is an id like any other; only negative ids mean none */
    log_set_id(0);
    capture_begin();
    log_error("x");
    out = capture_end(&len);
    assert_matches(out, TS_RE "node\\[0\\] error: x\n$");
    free(out);

    log_set_id(123456789012L);
    capture_begin();
    log_warn("big");
    out = capture_end(&len);
    assert_matches(out, TS_RE "node\\[123456789012\\] warn: big\n$");
    free(out);

    log_set_id(-1);
    capture_begin();
    log_info("no id");
    out = capture_end(&len);
    assert_matches(out, TS_RE "node info: no id\n$");
    free(out);

    /* the name is not copied: log_init with another pointer switches it */
    log_init("discovery");
    log_set_id(7);
    capture_begin();
    log_info("a");
    log_set_id(-5);
    log_info("b");
    out = capture_end(&len);
    assert_matches(out, TS_RE "discovery\\[7\\] info: a\n"
                            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                            "discovery info: b\n$");
    free(out);
}

static void test_long_line_truncated(void **state)
{
    (void)state;
    /* Lines are built in a 2048-byte buffer: a longer one is cut to 2046
     * bytes plus its newline, and is still one line. */
    char *msg = malloc(5001);
    assert_non_null(msg);
    memset(msg, 'x', 5000);
    msg[5000] = '\0';
    capture_begin();
    log_info("%s", msg);
    log_info("after");
    size_t len;
    char *out = capture_end(&len);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_int_equal((size_t)(nl - out) + 1, 2047);
    assert_null(memchr(out, '\0', 2047)); /* no NUL written out */
    *nl = '\0';
    const char *prefix = strstr(out, " testprog info: ");
    assert_non_null(prefix);
    assert_int_equal(prefix - out, 24);
    size_t xs = strspn(prefix + strlen(" testprog info: "), "x");
    assert_int_equal(24 + strlen(" testprog info: ") + xs, 2046);
    /* the next line is intact */
    assert_matches(nl + 1, TS_RE "testprog info: after\n$");
    assert_int_equal(count_char(out + 2047, len - 2047, '\n'), 1);
    free(out);

    /* a message that exactly fills the buffer minus the newline */
    size_t room = 2046 - 24 - strlen(" testprog info: ");
    msg[room] = '\0';
    capture_begin();
    log_info("%s", msg);
    out = capture_end(&len);
    assert_int_equal(len, 2047);
    assert_int_equal(out[2046], '\n');
    assert_int_equal(out[2045], 'x');
    free(out);

    /* a program name longer than the buffer: the prefix alone is cut */
    char *name = malloc(3001);
    assert_non_null(name);
    memset(name, 'n', 3000);
    name[3000] = '\0';
    log_init(name);
    capture_begin();
    log_info("lost");
    out = capture_end(&len);
    assert_int_equal(len, 2047);
    assert_int_equal(out[2046], '\n');
    assert_int_equal(count_char(out, len, '\n'), 1);
    assert_null(strstr(out, "lost"));
    free(out);
    log_init("testprog");
    free(name);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), /* first: nothing set yet */
        cmocka_unit_test_setup(test_parse_level, setup),
        cmocka_unit_test_setup(test_set_get_level, setup),
        cmocka_unit_test_setup(test_level_filtering, setup),
        cmocka_unit_test_setup(test_line_format_and_timestamp, setup),
        cmocka_unit_test_setup(test_set_id_prefix, setup),
        cmocka_unit_test_setup(test_long_line_truncated, setup),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
