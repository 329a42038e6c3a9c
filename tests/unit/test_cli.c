/* Unit tests for common/cli.c: cli_parse option handling. Successful parses
 * run in-process (long, short, attached and grouped forms, environment
 * fallback and its precedence, flags from the environment); everything that
 * makes cli_parse exit (--help, --version, bad values, unknown options,
 * missing values, positional arguments) runs in a forked child whose exit
 * status and output are checked. The setter helpers (cli_long,
 * cli_log_level, cli_log_format) are called directly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/log.h"

#define ENV_LISTEN "DCHAT_TEST_CLI_LISTEN"
#define ENV_ID "DCHAT_TEST_CLI_ID"
#define ENV_VERBOSE "DCHAT_TEST_CLI_VERBOSE"

enum { OPT_LISTEN, OPT_ID, OPT_VERBOSE, OPT_NAME, NOPTS };

static const struct cli_option opts[NOPTS] = {
    [OPT_LISTEN] = { "listen", 'l', "ADDR", ENV_LISTEN, "address to listen on (default :7000)" },
    [OPT_ID] = { "id", 'i', "N", ENV_ID, "node id, 1 to 100" },
    [OPT_VERBOSE] = { "verbose", 'v', NULL, ENV_VERBOSE, "log more" },
    [OPT_NAME] = { "name", 0, "NAME", NULL, "a name without a short form" },
};

/* Records every set call as "index=value;" (value "-" for flags). */
struct rec {
    char log[512];
    int calls;
};

static int set_cb(int index, const char *value, void *ud, char *err, size_t errlen)
{
    struct rec *r = ud;
    r->calls++;
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof(r->log) - n, "%d=%s;", index, value ? value : "-");
    if (index == OPT_ID) {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno != 0 || v < 1 || v > 100) {
            snprintf(err, errlen, "must be an integer between 1 and 100");
            return -1;
        }
    }
    if (index == OPT_NAME && strcmp(value, "refuse") == 0)
        return -1; /* no text: cli_parse's default applies */
    return 0;
}

static void clear_env(void)
{
    unsetenv(ENV_LISTEN);
    unsetenv(ENV_ID);
    unsetenv(ENV_VERBOSE);
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

/* In-process parse of a NULL-terminated argument list (argv[0] = "prog"). */
static void parse_ok(struct rec *r, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"prog";
    va_list ap;
    va_start(ap, r);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    memset(r, 0, sizeof(*r));
    cli_parse(argc, argv, "prog", "[options]", "A test program.", opts, NOPTS, set_cb, r);
}

struct child_result {
    int status;          /* exit code, or -1 when not a normal exit */
    char out[8192];      /* stdout and stderr together */
};

/* Runs cli_parse in a child with the given arguments (NULL-terminated,
 * after argv[0]) and environment ("NAME=VALUE" strings, NULL-terminated).
 * A child whose parse returns prints "RETURNED <log>" and exits 100. */
static void run_child(struct child_result *res, const char *const *env, const char *const *args)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[1]);
        clear_env();
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        char *argv[32];
        int argc = 0;
        argv[argc++] = (char *)"prog";
        for (int i = 0; args[i] && argc < 31; i++)
            argv[argc++] = (char *)args[i];
        argv[argc] = NULL;
        struct rec r;
        memset(&r, 0, sizeof(r));
        cli_parse(argc, argv, "prog", "[options]", "A test program.", opts, NOPTS, set_cb, &r);
        printf("RETURNED %s\n", r.log);
        fflush(stdout);
        _exit(100);
    }
    close(p[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(p[0], res->out + len, sizeof(res->out) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(res->out) - 1)
            break;
    }
    res->out[len] = '\0';
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    res->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define ENV(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* --- in-process -------------------------------------------------------------- */

static void test_long_and_short_forms(void **state)
{
    (void)state;
    struct rec r;
    parse_ok(&r, NULL);
    assert_int_equal(r.calls, 0);
    assert_string_equal(r.log, "");

    parse_ok(&r, "--listen", "1.2.3.4:5", "--id=7", "--verbose", "--name", "bob", NULL);
    assert_string_equal(r.log, "0=1.2.3.4:5;1=7;2=-;3=bob;");

    parse_ok(&r, "-l", ":9", "-i42", "-v", NULL);
    assert_string_equal(r.log, "0=:9;1=42;2=-;");

    /* Grouped short options, the last one taking the next argument. */
    parse_ok(&r, "-vi", "3", NULL);
    assert_string_equal(r.log, "2=-;1=3;");

    /* Repeats are passed on in order; values may start with '-'. */
    parse_ok(&r, "--listen", "a", "-l", "b", "--name", "-x", NULL);
    assert_string_equal(r.log, "0=a;0=b;3=-x;");

    /* Unambiguous long prefixes (getopt_long) and an empty value. */
    parse_ok(&r, "--verb", "--lis=c", "--name=", NULL);
    assert_string_equal(r.log, "2=-;0=c;3=;");

    /* "--" ends the options; nothing after it here. */
    parse_ok(&r, "-v", "--", NULL);
    assert_string_equal(r.log, "2=-;");
}

static void test_env_fallback(void **state)
{
    (void)state;
    struct rec r;
    setenv(ENV_LISTEN, "10.0.0.1:1", 1);
    setenv(ENV_ID, "5", 1);
    parse_ok(&r, NULL);
    assert_string_equal(r.log, "0=10.0.0.1:1;1=5;");
    /* The command line comes after the environment, so it wins. */
    parse_ok(&r, "--id", "6", "-l", "x:2", NULL);
    assert_string_equal(r.log, "0=10.0.0.1:1;1=5;1=6;0=x:2;");
    /* An empty variable for an option with a value is ignored. */
    setenv(ENV_LISTEN, "", 1);
    unsetenv(ENV_ID);
    parse_ok(&r, NULL);
    assert_string_equal(r.log, "");
    clear_env();
}

static void test_env_flags(void **state)
{
    (void)state;
    struct rec r;
    const char *on[] = { "1", "true", "yes", "anything" };
    for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        setenv(ENV_VERBOSE, on[i], 1);
        parse_ok(&r, NULL);
        assert_string_equal(r.log, "2=-;"); /* a flag: value NULL */
    }
    const char *off[] = { "0", "false", "" };
    for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        setenv(ENV_VERBOSE, off[i], 1);
        parse_ok(&r, NULL);
        assert_string_equal(r.log, "");
    }
    clear_env();
}

/* --- in a child: everything that exits ------------------------------------- */

static void test_help(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, NULL, ARGS("--help"));
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.out, "usage: prog [options]\n"));
    assert_non_null(strstr(res.out, "A test program."));
    assert_non_null(strstr(res.out, "-l, --listen ADDR"));
    assert_non_null(strstr(res.out, "address to listen on (default :7000) [env " ENV_LISTEN "]"));
    assert_non_null(strstr(res.out, "-v, --verbose "));
    assert_non_null(strstr(res.out, "  --name NAME "));
    assert_non_null(strstr(res.out, "a name without a short form\n")); /* no [env] */
    assert_non_null(strstr(res.out, "-h, --help"));
    assert_non_null(strstr(res.out, "-V, --version"));
    assert_null(strstr(res.out, "RETURNED"));
    /* Short form, and help wins over options that come before it. */
    run_child(&res, NULL, ARGS("-v", "-h"));
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.out, "usage: prog"));
}

static void test_version(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, NULL, ARGS("--version"));
    assert_int_equal(res.status, 0);
    assert_string_equal(res.out, "prog " DCHAT_VERSION "\n");
    run_child(&res, NULL, ARGS("-V"));
    assert_int_equal(res.status, 0);
    assert_string_equal(res.out, "prog " DCHAT_VERSION "\n");
}

static void test_child_success(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, ENV(ENV_ID "=9"), ARGS("-v"));
    assert_int_equal(res.status, 100);
    assert_string_equal(res.out, "RETURNED 1=9;2=-;\n");
}

static void test_bad_value(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, NULL, ARGS("--id", "500"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "prog: --id 500: must be an integer between 1 and 100"));
    assert_non_null(strstr(res.out, "see prog --help"));
    assert_null(strstr(res.out, "RETURNED"));
    /* Short form, and later options are not applied. */
    run_child(&res, NULL, ARGS("-i", "x", "--listen", "never"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "prog: --id x: must be an integer"));
    /* A setter without an error text gets a generic one. */
    run_child(&res, NULL, ARGS("--name", "refuse"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "prog: --name refuse: invalid value"));
}

static void test_bad_value_from_env(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, ENV(ENV_ID "=0"), ARGS("--id", "5"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "prog: --id 0: must be an integer between 1 and 100"));
    assert_non_null(strstr(res.out, "(from " ENV_ID ")"));
    assert_null(strstr(res.out, "RETURNED"));
}

static void test_unknown_options(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, NULL, ARGS("--bogus"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "unknown option --bogus"));
    run_child(&res, NULL, ARGS("--bogus=1"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "unknown option --bogus"));
    run_child(&res, NULL, ARGS("-x"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "unknown option -x"));
}

static void test_missing_value(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, NULL, ARGS("--listen"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "option --listen needs a value"));
    run_child(&res, NULL, ARGS("-v", "-l"));
    assert_int_equal(res.status, EX_USAGE);
    assert_null(strstr(res.out, "RETURNED"));
    assert_non_null(strstr(res.out, "option -l needs a value"));
    assert_null(strstr(res.out, "unknown option"));
}

static void test_flag_given_value(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, NULL, ARGS("--verbose=1"));
    assert_int_equal(res.status, EX_USAGE);
    assert_null(strstr(res.out, "RETURNED"));
    assert_null(strstr(res.out, "needs a value"));
    assert_non_null(strstr(res.out, "option --verbose takes no value"));
    /* The built-in flags too. */
    run_child(&res, NULL, ARGS("--help=1"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "option --help takes no value"));
    run_child(&res, NULL, ARGS("--version=yes"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "option --version takes no value"));
}

static void test_positional_refused(void **state)
{
    (void)state;
    struct child_result res;
    run_child(&res, NULL, ARGS("-v", "extra"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "unexpected argument 'extra'"));
    /* With "+" in the option string, options after a positional are not
     * parsed either: the positional is what gets reported. */
    run_child(&res, NULL, ARGS("extra", "--id", "5"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "unexpected argument 'extra'"));
    run_child(&res, NULL, ARGS("--", "after-dashes"));
    assert_int_equal(res.status, EX_USAGE);
    assert_non_null(strstr(res.out, "unexpected argument 'after-dashes'"));
}

static void test_cli_long(void **state)
{
    (void)state;
    char err[128];
    long out = 0;
    assert_int_equal(cli_long("50", 50, 3600000, "milliseconds", &out, err, sizeof(err)), 0);
    assert_int_equal(out, 50);
    assert_int_equal(cli_long("3600000", 50, 3600000, "milliseconds", &out, err, sizeof(err)), 0);
    assert_int_equal(out, 3600000);
    assert_int_equal(cli_long("-5", -10, 10, "a number", &out, err, sizeof(err)), 0);
    assert_int_equal(out, -5);
    /* Out of range, not a whole number, empty, trailing text: refused with
     * the range in the message, and *out left alone. */
    static const char *const bad[] = { "49", "3600001", "", "abc", "100ms", "1.5", " ",
                                       "99999999999999999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        out = 1234;
        strcpy(err, "untouched");
        if (cli_long(bad[i], 50, 3600000, "milliseconds", &out, err, sizeof(err)) != -1)
            fail_msg("cli_long accepted \"%s\"", bad[i]);
        assert_int_equal(out, 1234);
        assert_string_equal(err, "expected milliseconds between 50 and 3600000");
    }
    assert_int_equal(cli_long("0", 1, 86400, "whole seconds", &out, err, sizeof(err)), -1);
    assert_string_equal(err, "expected whole seconds between 1 and 86400");
    assert_int_equal(cli_long("x", 0, 2147483647, "a whole number", &out, err, sizeof(err)), -1);
    assert_string_equal(err, "expected a whole number between 0 and 2147483647");
    /* A short err buffer is cut, not overrun. */
    char tiny[9];
    assert_int_equal(cli_long("x", 1, 2, "a count", &out, tiny, sizeof(tiny)), -1);
    assert_string_equal(tiny, "expected");
}

static void test_cli_log_level(void **state)
{
    (void)state;
    enum log_level before = log_get_level();
    char err[128];
    assert_int_equal(cli_log_level("debug", err, sizeof(err)), 0);
    assert_int_equal(log_get_level(), LOG_DEBUG);
    assert_int_equal(cli_log_level("error", err, sizeof(err)), 0);
    assert_int_equal(log_get_level(), LOG_ERROR);
    assert_int_equal(cli_log_level("WARN", err, sizeof(err)), 0); /* any case */
    assert_int_equal(log_get_level(), LOG_WARN);
    assert_int_equal(cli_log_level("info", err, sizeof(err)), 0);
    assert_int_equal(log_get_level(), LOG_INFO);
    /* Refused: the level stays as it was. */
    static const char *const bad[] = { "verbose", "", "debug ", "2" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(err, "untouched");
        if (cli_log_level(bad[i], err, sizeof(err)) != -1)
            fail_msg("cli_log_level accepted \"%s\"", bad[i]);
        assert_string_equal(err, "expected debug, info, warn or error");
        assert_int_equal(log_get_level(), LOG_INFO);
    }
    log_set_level(before);
}

static void test_cli_log_format(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(cli_log_format("json", err, sizeof(err)), 0);
    assert_int_equal(log_get_format(), LOG_FORMAT_JSON);
    assert_int_equal(cli_log_format("TEXT", err, sizeof(err)), 0); /* any case */
    assert_int_equal(log_get_format(), LOG_FORMAT_TEXT);
    assert_int_equal(cli_log_format("Json", err, sizeof(err)), 0);
    assert_int_equal(log_get_format(), LOG_FORMAT_JSON);
    /* Refused: the format stays as it was. */
    static const char *const bad[] = { "xml", "", "json ", "1", "logfmt" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(err, "untouched");
        if (cli_log_format(bad[i], err, sizeof(err)) != -1)
            fail_msg("cli_log_format accepted \"%s\"", bad[i]);
        assert_string_equal(err, "expected text or json");
        assert_int_equal(log_get_format(), LOG_FORMAT_JSON);
    }
    log_set_format(LOG_FORMAT_TEXT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, setup)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_long_and_short_forms),
        T(test_env_fallback),
        T(test_env_flags),
        T(test_help),
        T(test_version),
        T(test_child_success),
        T(test_bad_value),
        T(test_bad_value_from_env),
        T(test_unknown_options),
        T(test_missing_value),
        T(test_flag_given_value),
        T(test_positional_refused),
        cmocka_unit_test(test_cli_long),
        cmocka_unit_test(test_cli_log_level),
        cmocka_unit_test(test_cli_log_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
