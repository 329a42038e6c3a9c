/* cli: see cli.h. A thin layer over getopt_long that keeps option names,
 * environment variables and --help text in one table per program. */
#include "common/cli.h"
#include "common/log.h"
#include "common/util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_help(FILE *f, const char *prog, const char *summary,
                       const char *description,
                       const struct cli_option *opts, int nopts)
{
    fprintf(f, "usage: %s %s\n\n%s\n\noptions:\n", prog, summary, description);
    for (int i = 0; i < nopts; i++) {
        char head[96];
        char shortpart[8] = "";
        if (opts[i].short_name)
            snprintf(shortpart, sizeof(shortpart), "-%c, ", opts[i].short_name);
        snprintf(head, sizeof(head), "%s--%s%s%s", shortpart, opts[i].name,
                 opts[i].metavar ? " " : "",
                 opts[i].metavar ? opts[i].metavar : "");
        fprintf(f, "  %-30s %s", head, opts[i].help);
        if (opts[i].env)
            fprintf(f, " [env %s]", opts[i].env);
        fputc('\n', f);
    }
    fprintf(f, "  %-30s %s\n  %-30s %s\n", "-h, --help", "show this help and exit",
            "-V, --version", "show the version and exit");
}

static void apply(const char *prog, const struct cli_option *opt, int index,
                  const char *value, cli_set_fn set, void *ud,
                  const char *origin)
{
    char err[256] = "invalid value";
    if (set(index, value, ud, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: --%s%s%s: %s%s; see %s --help\n", prog, opt->name,
                value ? " " : "", value ? value : "", err, origin, prog);
        exit(EX_USAGE);
    }
}

void cli_parse(int argc, char **argv, const char *prog, const char *summary,
               const char *description, const struct cli_option *opts,
               int nopts, cli_set_fn set, void *ud)
{
    struct option *longopts = xcalloc((size_t)nopts + 3, sizeof(*longopts));
    /* '+': stop at the first positional; ':': report a missing value as
     * ':' rather than '?', so it can be told from an unknown option. */
    char shortopts[3 * 64 + 8] = "+:hV";
    size_t sl = strlen(shortopts);

    for (int i = 0; i < nopts; i++) {
        longopts[i].name = opts[i].name;
        longopts[i].has_arg = opts[i].metavar ? required_argument : no_argument;
        longopts[i].val = 256 + i;
        if (opts[i].short_name && sl + 3 < sizeof(shortopts)) {
            shortopts[sl++] = (char)opts[i].short_name;
            if (opts[i].metavar)
                shortopts[sl++] = ':';
            shortopts[sl] = '\0';
        }
    }
    longopts[nopts] = (struct option){ "help", no_argument, NULL, 'h' };
    longopts[nopts + 1] = (struct option){ "version", no_argument, NULL, 'V' };

    /* Environment first, so the command line wins. */
    for (int i = 0; i < nopts; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (v == NULL || (*v == '\0' && opts[i].metavar))
            continue;
        if (opts[i].metavar == NULL) {
            /* A flag set from the environment: "0", "" or "false" unset it. */
            if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || *v == '\0')
                continue;
            v = NULL;
        }
        char origin[128];
        snprintf(origin, sizeof(origin), " (from %s)", opts[i].env);
        apply(prog, &opts[i], i, v, set, ud, origin);
    }

    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == 'h') {
            print_help(stdout, prog, summary, description, opts, nopts);
            free(longopts);
            exit(0);
        } else if (c == 'V') {
            printf("%s %s\n", prog, DCHAT_VERSION);
            free(longopts);
            exit(0);
        } else if (c == ':') {
            /* A value is missing: optopt is 256 + index for the long form,
             * the letter for the short one. */
            if (optopt >= 256)
                fprintf(stderr, "%s: option --%s needs a value; see %s --help\n",
                        prog, opts[optopt - 256].name, prog);
            else
                fprintf(stderr, "%s: option -%c needs a value; see %s --help\n",
                        prog, optopt, prog);
            exit(EX_USAGE);
        } else if (c == '?') {
            /* getopt_long also answers '?' for a flag given a value
             * ("--verbose=1", "--help=1"), with optopt the flag's val. Short
             * flags never fail, so a known val here means the long form. */
            if (optopt >= 256)
                fprintf(stderr, "%s: option --%s takes no value; see %s --help\n",
                        prog, opts[optopt - 256].name, prog);
            else if (optopt == 'h' || optopt == 'V')
                fprintf(stderr, "%s: option --%s takes no value; see %s --help\n",
                        prog, optopt == 'h' ? "help" : "version", prog);
            else if (optopt)
                fprintf(stderr, "%s: unknown option -%c; see %s --help\n",
                        prog, optopt, prog);
            else
                fprintf(stderr, "%s: unknown option %s; see %s --help\n", prog,
                        argv[optind - 1], prog);
            exit(EX_USAGE);
        } else {
            int i = -1;
            if (c >= 256)
                i = c - 256;
            else
                for (int j = 0; j < nopts; j++)
                    if (opts[j].short_name == c)
                        i = j;
            if (i < 0 || i >= nopts) {
                fprintf(stderr, "%s: unexpected option; see %s --help\n", prog, prog);
                exit(EX_USAGE);
            }
            apply(prog, &opts[i], i, optarg, set, ud, "");
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'; see %s --help\n", prog,
                argv[optind], prog);
        exit(EX_USAGE);
    }
    free(longopts);
}

int cli_long(const char *v, long min, long max, const char *what, long *out,
             char *err, size_t errlen)
{
    long l;
    if (util_parse_long(v, min, max, &l) != 0) {
        snprintf(err, errlen, "expected %s between %ld and %ld", what, min, max);
        return -1;
    }
    *out = l;
    return 0;
}

int cli_log_level(const char *v, char *err, size_t errlen)
{
    enum log_level lvl;
    if (log_parse_level(v, &lvl) != 0) {
        snprintf(err, errlen, "expected debug, info, warn or error");
        return -1;
    }
    log_set_level(lvl);
    return 0;
}

int cli_log_format(const char *v, char *err, size_t errlen)
{
    enum log_format f;
    if (log_parse_format(v, &f) != 0) {
        snprintf(err, errlen, "expected text or json");
        return -1;
    }
    log_set_format(f);
    return 0;
}
