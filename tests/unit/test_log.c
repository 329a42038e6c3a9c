/* Unit tests for common/log.c: log_parse_level for every level name (in any
 * case) and for bad ones; the defaults; level filtering by the log_* macros
 * (lines below the level are not written, LOG_OFF writes nothing); the line
 * format "<ISO 8601 UTC with ms> <name>[<id>] <level>: <message>\n", with
 * the timestamp checked against the wall clock around the call; log_set_id
 * switching the prefix between "name" and "name[id]"; and long lines being
 * cut to the 2 KiB buffer while keeping their newline. The JSON format
 * (--log-format json): log_parse_format; every field of a line (time within
 * the call, level, program, node_id only when set, msg), read back with
 * jansson; the exact escaping of quotes, backslashes, every control
 * character, NUL and DEL, valid UTF-8 passed through and invalid UTF-8
 * (stray, overlong, surrogate, past U+10FFFF, cut short) replaced by U+FFFD;
 * the same filtering by level; and a line never split or left invalid,
 * however long the message or the program name and whatever the escapes
 * cost. stderr is redirected to a temporary file with dup/dup2 inside each
 * capture and restored. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
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
    log_set_format(LOG_FORMAT_TEXT);
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

/* Logs msg and then "after" at info; returns what was written (free it),
 * its length in *len and the first line's, newline included, in *first. */
static char *log_then_after(const char *msg, size_t *len, size_t *first)
{
    capture_begin();
    log_info("%s", msg);
    log_info("after");
    char *out = capture_end(len);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    *first = (size_t)(nl - out) + 1;
    return out;
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
    size_t len, first;
    char *out = log_then_after(msg, &len, &first);
    char *nl = out + first - 1;
    assert_int_equal(first, 2047);
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

/* --- the JSON format ------------------------------------------------------- */

static void test_parse_format(void **state)
{
    (void)state;
    static const struct { const char *s; enum log_format want; } ok[] = {
        { "text", LOG_FORMAT_TEXT }, { "json", LOG_FORMAT_JSON },
        { "TEXT", LOG_FORMAT_TEXT }, { "Json", LOG_FORMAT_JSON },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        enum log_format got = (enum log_format)99;
        assert_int_equal(log_parse_format(ok[i].s, &got), 0);
        assert_int_equal(got, ok[i].want);
    }
    static const char *const bad[] = { "", "xml", "jsonl", "json ", " text", "txt", "ndjson" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum log_format got = (enum log_format)77;
        assert_int_equal(log_parse_format(bad[i], &got), -1);
        assert_int_equal(got, 77); /* untouched on failure */
    }
    assert_int_equal(log_get_format(), LOG_FORMAT_TEXT); /* the default */
    log_set_format(LOG_FORMAT_JSON);
    assert_int_equal(log_get_format(), LOG_FORMAT_JSON);
}

/* Parses out (one line: a JSON object and '\n') with jansson, which refuses
 * invalid UTF-8 and anything after the object (and takes \u0000, which
 * JSON allows). Returns a new reference. */
static json_t *parse_line(const char *out, size_t len)
{
    assert_true(len > 0);
    assert_int_equal(out[len - 1], '\n');
    assert_int_equal(count_char(out, len, '\n'), 1);
    json_error_t e;
    json_t *o = json_loadb(out, len, JSON_ALLOW_NUL, &e);
    if (o == NULL)
        fail_msg("not one JSON object: %s at column %d in \"%.*s\"", e.text, e.column,
                 (int)len, out);
    assert_true(json_is_object(o));
    return o;
}

/* Captures one log_write(level, "%s", msg) in JSON and returns its object. */
static json_t *json_of(enum log_level level, const char *msg, char **raw, size_t *rawlen)
{
    capture_begin();
    log_write(level, "%s", msg);
    size_t len;
    char *out = capture_end(&len);
    json_t *o = parse_line(out, len);
    if (raw) {
        *raw = out;
        *rawlen = len;
    } else
        free(out);
    return o;
}

static void test_json_every_field(void **state)
{
    (void)state;
    static const char *const names[] = { "debug", "info", "warn", "error" };
    log_set_format(LOG_FORMAT_JSON);
    log_init("node");
    for (int l = LOG_DEBUG; l <= LOG_ERROR; l++) {
        for (long id = -1; id <= 3; id += 4) {
            log_set_id(id);
            uint64_t before = wall_ms();
            char *raw;
            size_t len;
            json_t *o = json_of((enum log_level)l, "peer 2 link up", &raw, &len);
            uint64_t after = wall_ms();
            /* exactly these keys, in this order */
            const char *want = id >= 0 ? "^\\{\"time\":\"[^\"]+\",\"level\":\"[a-z]+\","
                                         "\"program\":\"node\",\"node_id\":3,"
                                         "\"msg\":\"peer 2 link up\"\\}\n$"
                                       : "^\\{\"time\":\"[^\"]+\",\"level\":\"[a-z]+\","
                                         "\"program\":\"node\",\"msg\":\"peer 2 link up\"\\}\n$";
            assert_matches(raw, want);
            assert_int_equal(json_object_size(o), id >= 0 ? 5 : 4);
            const char *t = json_string_value(json_object_get(o, "time"));
            assert_non_null(t);
            assert_matches(t, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$");
            uint64_t ts = parse_ts(t);
            assert_true(ts >= before && ts <= after);
            assert_string_equal(json_string_value(json_object_get(o, "level")), names[l]);
            assert_string_equal(json_string_value(json_object_get(o, "program")), "node");
            assert_string_equal(json_string_value(json_object_get(o, "msg")), "peer 2 link up");
            if (id >= 0)
                assert_int_equal(json_integer_value(json_object_get(o, "node_id")), 3);
            else
                assert_null(json_object_get(o, "node_id"));
            json_decref(o);
            free(raw);
        }
    }
    /* the printf arguments are formatted before escaping; an empty message
     * is an empty string */
    log_set_id(123456789012L);
    capture_begin();
    log_warn("%d%% of \"%s\"", 50, "a\\b");
    log_error("%s", "");
    size_t len;
    char *out = capture_end(&len);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    json_t *o = parse_line(out, (size_t)(nl - out) + 1);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "50% of \"a\\b\"");
    assert_int_equal(json_integer_value(json_object_get(o, "node_id")), 123456789012LL);
    json_decref(o);
    o = parse_line(nl + 1, len - (size_t)(nl + 1 - out));
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "");
    assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
    json_decref(o);
    free(out);
}

static void test_json_escaping(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    /* What goes in, what the line must hold between "msg":" and "}, and
     * what a JSON reader must get back. */
    static const struct { const char *in, *escaped, *decoded; } cases[] = {
        { "say \"hi\"", "say \\\"hi\\\"", "say \"hi\"" },
        { "C:\\dir\\", "C:\\\\dir\\\\", "C:\\dir\\" },
        { "a\nb\rc\td\be\ff", "a\\nb\\rc\\td\\be\\ff", "a\nb\rc\td\be\ff" },
        { "\x01\x02\x1b\x1f", "\\u0001\\u0002\\u001b\\u001f", "\x01\x02\x1b\x1f" },
        { "del\x7f", "del\\u007f", "del\x7f" },
        { "/ <script> '", "/ <script> '", "/ <script> '" },
        /* valid UTF-8 of 2, 3 and 4 bytes, and the last code point */
        { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf" },
        /* invalid: one U+FFFD per byte that starts no valid character */
        { "a\xff" "b", "a\xef\xbf\xbd" "b", "a\xef\xbf\xbd" "b" },
        { "\x80", "\xef\xbf\xbd", "\xef\xbf\xbd" },                     /* stray continuation */
        { "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd", "\xef\xbf\xbd\xef\xbf\xbd" }, /* overlong / */
        { "\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },                      /* overlong, 3 bytes */
        { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },                      /* a surrogate */
        { "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },          /* past U+10FFFF */
        { "x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd", "x\xef\xbf\xbd\xef\xbf\xbd" }, /* cut short */
        { "\xe2\x82\"", "\xef\xbf\xbd\xef\xbf\xbd\\\"", "\xef\xbf\xbd\xef\xbf\xbd\"" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *raw;
        size_t len;
        json_t *o = json_of(LOG_INFO, cases[i].in, &raw, &len);
        const char *start = strstr(raw, ",\"msg\":\"");
        assert_non_null(start);
        start += strlen(",\"msg\":\"");
        size_t elen = strlen(cases[i].escaped);
        if (len - (size_t)(start - raw) != elen + 3 || memcmp(start, cases[i].escaped, elen) != 0 ||
            memcmp(start + elen, "\"}\n", 3) != 0)
            fail_msg("case %zu: line \"%s\" does not end with \"%s\"}", i, raw,
                     cases[i].escaped);
        assert_string_equal(json_string_value(json_object_get(o, "msg")), cases[i].decoded);
        json_decref(o);
        free(raw);
    }
    /* A NUL byte in the message ("%c" of 0) is a character too. */
    capture_begin();
    log_info("a%cb", 0);
    size_t len;
    char *out = capture_end(&len);
    json_t *o = parse_line(out, len);
    assert_non_null(strstr(out, "\"msg\":\"a\\u0000b\"}\n"));
    size_t slen = json_string_length(json_object_get(o, "msg"));
    assert_int_equal(slen, 3);
    assert_memory_equal(json_string_value(json_object_get(o, "msg")), "a\0b", 3);
    json_decref(o);
    free(out);
    /* The program name is escaped the same way. */
    log_init("we\"ird\n\xff");
    o = json_of(LOG_INFO, "m", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "program")),
                        "we\"ird\n\xef\xbf\xbd");
    json_decref(o);
    log_init("testprog");
}

static void test_json_level_filtering(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_WARN);
    capture_begin();
    log_debug("d");
    log_info("i");
    log_warn("w");
    log_error("e");
    size_t len;
    char *out = capture_end(&len);
    assert_int_equal(count_char(out, len, '\n'), 2);
    char *nl = strchr(out, '\n');
    json_t *o = parse_line(out, (size_t)(nl - out) + 1);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "w");
    json_decref(o);
    o = parse_line(nl + 1, len - (size_t)(nl + 1 - out));
    assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "e");
    json_decref(o);
    free(out);
    log_set_level(LOG_OFF);
    capture_begin();
    log_error("nothing");
    out = capture_end(&len);
    assert_int_equal(len, 0);
    free(out);
}

/* A message whose escaped form is longer than the line: the line is cut at
 * a character boundary, stays one valid object at most LOG_LINE_MAX - 1
 * bytes long, and its msg is a prefix of the message. */
static void check_cut(const char *unit, size_t unit_len, size_t units, const char *decoded_unit)
{
    size_t mlen = unit_len * units;
    char *msg = malloc(mlen + 1);
    assert_non_null(msg);
    for (size_t i = 0; i < units; i++)
        memcpy(msg + i * unit_len, unit, unit_len);
    msg[mlen] = '\0';
    size_t len, first;
    char *out = log_then_after(msg, &len, &first);
    assert_true(first <= LOG_LINE_MAX - 1);
    assert_true(first >= LOG_LINE_MAX - 1 - 6); /* cut at most one escape short */
    json_t *o = parse_line(out, first);
    const char *got = json_string_value(json_object_get(o, "msg"));
    size_t glen = json_string_length(json_object_get(o, "msg"));
    size_t dlen = strlen(decoded_unit);
    assert_true(glen > 0 && glen % dlen == 0);
    for (size_t i = 0; i < glen; i += dlen)
        assert_memory_equal(got + i, decoded_unit, dlen);
    json_decref(o);
    /* the next line is intact */
    o = parse_line(out + first, len - first);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "after");
    json_decref(o);
    free(out);
    free(msg);
}

static void test_json_long_line_never_split(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_id(42);
    check_cut("x", 1, 5000, "x");
    check_cut("\"", 1, 3000, "\"");              /* 2 bytes each */
    check_cut("\x01", 1, 3000, "\x01");          /* 6 bytes each */
    check_cut("\xe2\x82\xac", 3, 1000, "\xe2\x82\xac"); /* never half a character */
    check_cut("\xf0\x9f\x98\x80", 4, 700, "\xf0\x9f\x98\x80");
    check_cut("\xff", 1, 3000, "\xef\xbf\xbd");  /* 1 byte in, 3 out */
    check_cut("a\n", 2, 3000, "a\n");            /* newlines never end the line early */

    /* a program name longer than the line: cut, and msg still there */
    char *name = malloc(3001);
    assert_non_null(name);
    memset(name, 'n', 3000);
    name[3000] = '\0';
    log_init(name);
    capture_begin();
    log_info("kept");
    size_t len;
    char *out = capture_end(&len);
    assert_true(len <= LOG_LINE_MAX - 1);
    json_t *o = parse_line(out, len);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "kept");
    assert_int_equal(json_integer_value(json_object_get(o, "node_id")), 42);
    assert_true(strspn(json_string_value(json_object_get(o, "program")), "n") > 1800);
    json_decref(o);
    free(out);
    log_init("testprog");
    free(name);
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
        cmocka_unit_test_setup(test_parse_format, setup),
        cmocka_unit_test_setup(test_json_every_field, setup),
        cmocka_unit_test_setup(test_json_escaping, setup),
        cmocka_unit_test_setup(test_json_level_filtering, setup),
        cmocka_unit_test_setup(test_json_long_line_never_split, setup),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
