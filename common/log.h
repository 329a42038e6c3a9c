/* log: levelled, timestamped log lines to stderr, one line per call.
 * The level comes from log_set_level() (programs wire it to --log-level and
 * the DCHAT_LOG_LEVEL environment variable), the format from
 * log_set_format() (--log-format, DCHAT_LOG_FORMAT). Text lines look like:
 *   2026-11-24T02:55:00.123Z node[3] info: peer 2 link up
 * JSON lines, for log shippers, carry the same in one object per line:
 *   {"time":"2026-11-24T02:55:00.123Z","level":"info","program":"node",
 *    "node_id":3,"msg":"peer 2 link up"}
 * (on one line; "node_id" only once the id is known). */
#ifndef DCHAT_LOG_H
#define DCHAT_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* Lines are built in a buffer of this many bytes: at most LOG_LINE_MAX - 1
 * are written, newline included. A longer message is cut (in JSON, at a
 * character boundary and before the closing quote and brace, so that the
 * line stays one valid JSON object). */
#define LOG_LINE_MAX 2048

/* name: the program name printed in every line (not copied; keep it alive). */
void log_init(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off". Returns 0 or -1. */
int log_parse_level(const char *s, enum log_level *out);
/* Sets a tag shown after the program name, e.g. the node id ("node[3]"),
 * and in JSON as "node_id". Negative: none. */
void log_set_id(long id);

void log_set_format(enum log_format format);
enum log_format log_get_format(void);
/* Parses "text" or "json" (any case). Returns 0, or -1 leaving *out as it was. */
int log_parse_format(const char *s, enum log_format *out);

/* Writes one line at level (no filtering here: the macros below filter) with
 * a single write(2) to stderr, so that lines of processes sharing a file do
 * not interleave. In JSON, the message is escaped: quotes, backslashes and
 * control characters (newlines included, so a line is never split), and
 * every byte that is not part of valid UTF-8 becomes U+FFFD. */
void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_enabled(lvl) ((lvl) >= log_get_level())
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_enabled(LOG_INFO))  log_write(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_enabled(LOG_WARN))  log_write(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_error(...) do { if (log_enabled(LOG_ERROR)) log_write(LOG_ERROR, __VA_ARGS__); } while (0)

#endif
