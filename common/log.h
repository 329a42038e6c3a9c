/* log: levelled, timestamped log lines to stderr, one line per call.
 * The level comes from log_set_level() (programs wire it to --log-level and
 * the DCHAT_LOG_LEVEL environment variable). Lines look like:
 *   2026-11-24T02:55:00.123Z node[3] info: peer 2 link up */
#ifndef DCHAT_LOG_H
#define DCHAT_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* name: the program name printed in every line (not copied; keep it alive). */
void log_init(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off". Returns 0 or -1. */
int log_parse_level(const char *s, enum log_level *out);
/* Sets a tag shown after the program name, e.g. the node id ("node[3]"). */
void log_set_id(long id);

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_enabled(lvl) ((lvl) >= log_get_level())
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_enabled(LOG_INFO))  log_write(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_enabled(LOG_WARN))  log_write(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_error(...) do { if (log_enabled(LOG_ERROR)) log_write(LOG_ERROR, __VA_ARGS__); } while (0)

#endif
