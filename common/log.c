/* log: see log.h. Formats a whole line into one buffer and writes it with a
 * single write(2), so lines from several processes sharing a log file do not
 * interleave mid-line. The JSON format escapes as it copies, never past the
 * buffer's end, so a cut line is still one valid object. */
#include "common/log.h"
#include "common/util.h"
#include "common/ws.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *log_name = "dchat";
static enum log_level log_level = LOG_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;
static long log_id = -1;

static const char *const level_names[] = { "debug", "info", "warn", "error", "off" };
static const char *const format_names[] = { "text", "json" };

/* What follows the message in a JSON line: its closing quote, the object's
 * brace and the newline. */
#define LOG_JSON_TAIL "\"}\n"
/* Room kept after the program name for ,"node_id":<20 digits>,"msg":"
 * and the tail. */
#define LOG_JSON_AFTER_NAME 64

void log_init(const char *name) { log_name = name; }
void log_set_level(enum log_level level) { log_level = level; }
enum log_level log_get_level(void) { return log_level; }
void log_set_id(long id) { log_id = id; }
void log_set_format(enum log_format format) { log_format = format; }
enum log_format log_get_format(void) { return log_format; }

int log_parse_level(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_parse_format(const char *s, enum log_format *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(format_names); i++) {
        if (strcasecmp(s, format_names[i]) == 0) {
            *out = (enum log_format)i;
            return 0;
        }
    }
    return -1;
}

/* The length (2 to 4) of the well-formed UTF-8 sequence of a character
 * beyond ASCII at s (len bytes available), or 0 when s does not start one:
 * a stray continuation byte, an overlong form, a surrogate, a code point
 * past U+10FFFF or a sequence cut short. The rules are the WebSocket
 * validator's (ws_utf8_feed), fed a byte at a time until it is back
 * between characters. */
static size_t utf8_char_len(const unsigned char *s, size_t len)
{
    uint32_t st = 0;
    for (size_t i = 0; i < len && i < 4; i++) {
        if (!ws_utf8_feed(&st, s + i, 1))
            return 0;
        if (st == 0)
            return i + 1;
    }
    return 0;
}

/* Appends s (len bytes) to line[*n..cap) as the inside of a JSON string:
 * quotes and backslashes escaped, control characters as \n, \t ... or
 * \u00XX, invalid UTF-8 as U+FFFD one byte at a time. Stops before the
 * first character whose output would not fit, so nothing is ever half
 * written. */
static void json_append(char *line, size_t *n, size_t cap, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = *n;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        char esc[8];
        const char *out = esc;
        size_t olen, in = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            olen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = NULL;
            switch (c) {
            case '\n': named = "\\n"; break;
            case '\r': named = "\\r"; break;
            case '\t': named = "\\t"; break;
            case '\b': named = "\\b"; break;
            case '\f': named = "\\f"; break;
            }
            if (named != NULL) {
                out = named;
                olen = 2;
            } else
                olen = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        } else if (c < 0x80) {
            esc[0] = (char)c;
            olen = 1;
        } else if ((olen = utf8_char_len(u + i, len - i)) > 0) {
            out = s + i;
            in = olen;
        } else {
            out = "\xef\xbf\xbd"; /* U+FFFD REPLACEMENT CHARACTER */
            olen = 3;
        }
        if (o + olen > cap)
            break;
        memcpy(line + o, out, olen);
        o += olen;
        i += in;
    }
    *n = o;
}

static size_t format_json(char *line, size_t cap, const char *ts, enum log_level level,
                          const char *msg, size_t msglen)
{
    size_t n = (size_t)snprintf(line, cap, "{\"time\":\"%s\",\"level\":\"%s\",\"program\":\"",
                                ts, level_names[level]);
    json_append(line, &n, cap - LOG_JSON_AFTER_NAME, log_name, strlen(log_name));
    if (log_id >= 0)
        n += (size_t)snprintf(line + n, cap - n, "\",\"node_id\":%ld,\"msg\":\"", log_id);
    else
        n += (size_t)snprintf(line + n, cap - n, "\",\"msg\":\"");
    /* cap - 1: the line, like a text line, is at most LOG_LINE_MAX - 1 */
    json_append(line, &n, cap - 1 - strlen(LOG_JSON_TAIL), msg, msglen);
    memcpy(line + n, LOG_JSON_TAIL, strlen(LOG_JSON_TAIL));
    return n + strlen(LOG_JSON_TAIL);
}

static size_t format_text(char *line, size_t cap, const char *ts, enum log_level level,
                          const char *msg, size_t msglen)
{
    size_t n;
    if (log_id >= 0)
        n = (size_t)snprintf(line, cap, "%s %s[%ld] %s: ", ts, log_name, log_id,
                             level_names[level]);
    else
        n = (size_t)snprintf(line, cap, "%s %s %s: ", ts, log_name, level_names[level]);
    if (n < cap) {
        size_t m = UTIL_MIN(msglen, cap - n);
        memcpy(line + n, msg, m);
        n += m;
    }
    if (n > cap - 2)
        n = cap - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    return n;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    char line[LOG_LINE_MAX];
    char ts[UTIL_ISO8601_LEN + 1];

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* The length, not strlen: a "%c" of 0 is a byte of the message too
     * (JSON shows it as \u0000). */
    size_t msglen = m > 0 ? UTIL_MIN((size_t)m, sizeof(msg) - 1) : 0;

    util_format_iso8601(util_wall_ms(), ts);
    size_t n = log_format == LOG_FORMAT_JSON
                   ? format_json(line, sizeof(line), ts, level, msg, msglen)
                   : format_text(line, sizeof(line), ts, level, msg, msglen);
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report a failed log write */
}
