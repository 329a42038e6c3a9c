/* cli: the command-line conventions shared by discovery, node and bench.
 * Every program describes its options in one table; cli_parse() applies the
 * environment variables first and the command line over them, answers
 * --help and --version itself, and exits with sysexits.h codes on misuse
 * (EX_USAGE = 64) so that scripts and containers can tell errors apart. */
#ifndef DCHAT_CLI_H
#define DCHAT_CLI_H

#include <stddef.h>
#include <sysexits.h>

struct cli_option {
    const char *name;    /* long name without dashes, e.g. "listen" */
    int short_name;      /* e.g. 'l', or 0 for none */
    const char *metavar; /* argument shown in --help, NULL for a flag */
    const char *env;     /* environment variable that also sets it, or NULL */
    const char *help;    /* one line; the default, if any, in its text */
};

/* Called once per option that is set, environment first, then argv in
 * order. value is NULL for flags. Returns 0, or -1 after writing into err
 * (errlen bytes) why the value is bad; cli_parse then prints
 * "PROG: --NAME: ERR" and exits EX_USAGE. */
typedef int (*cli_set_fn)(int index, const char *value, void *ud,
                          char *err, size_t errlen);

/* Parses argc/argv for program prog. summary is the usage line after the
 * program name, description a paragraph for --help. Exits the process on
 * --help / --version (0) and on bad usage (EX_USAGE). Positional arguments
 * are refused. */
void cli_parse(int argc, char **argv, const char *prog, const char *summary,
               const char *description, const struct cli_option *opts,
               int nopts, cli_set_fn set, void *ud);

/* Helpers for cli_set_fn callbacks: each returns 0, or -1 after writing
 * into err (errlen bytes) the text cli_parse shows after the option. */

/* Parses a whole decimal number in [min, max] into *out; otherwise
 * "expected WHAT between MIN and MAX", e.g. what = "milliseconds" gives
 * "expected milliseconds between 50 and 3600000", and *out is left as it
 * was. Callers narrow *out to their field's type (the range makes it fit). */
int cli_long(const char *v, long min, long max, const char *what, long *out,
             char *err, size_t errlen);

/* Parses debug, info, warn or error and makes it the log level
 * (log_set_level); otherwise "expected debug, info, warn or error". */
int cli_log_level(const char *v, char *err, size_t errlen);

/* Parses text or json and makes it the log format (log_set_format);
 * otherwise "expected text or json". */
int cli_log_format(const char *v, char *err, size_t errlen);

#endif
