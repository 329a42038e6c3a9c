/* log: see log.h. Formats a whole line into one buffer and writes it with a
 * single write(2), so lines from several processes sharing a log file do not
 * interleave mid-line. */
#include "common/log.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *log_name = "dchat";
static enum log_level log_level = LOG_INFO;
static long log_id = -1;

static const char *const level_names[] = { "debug", "info", "warn", "error", "off" };

void log_init(const char *name) { log_name = name; }
void log_set_level(enum log_level level) { log_level = level; }
enum log_level log_get_level(void) { return log_level; }
void log_set_id(long id) { log_id = id; }

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

void log_write(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    char ts[UTIL_ISO8601_LEN + 1];
    size_t n;

    util_format_iso8601(util_wall_ms(), ts);
    if (log_id >= 0)
        n = (size_t)snprintf(line, sizeof(line), "%s %s[%ld] %s: ", ts,
                             log_name, log_id, level_names[level]);
    else
        n = (size_t)snprintf(line, sizeof(line), "%s %s %s: ", ts, log_name,
                             level_names[level]);
    if (n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += (size_t)m;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report a failed log write */
}
