/* Unit tests for bench/progress.c: progress_format's line for every stage
 * (exact text, the rate and percentage arithmetic, no division by zero)
 * and its cut to the buffer; and the display on a pseudo-terminal
 * (posix_openpt): off on a pipe and when not wanted, each draw one '\r' and
 * the line cut to the terminal's width less one column, the spaces that
 * wipe a longer previous line, and the clear ('\r', spaces, '\r'), read
 * back byte for byte from the terminal's master side. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "bench/progress.h"

#define SPACES19 "                   "

static void check_format(const struct progress_view *v, const char *want)
{
    char buf[PROGRESS_LINE_MAX + 1];
    memset(buf, 'Z', sizeof(buf));
    size_t n = progress_format(v, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_format_every_stage(void **state)
{
    (void)state;
    check_format(&(struct progress_view){ .stage = PROGRESS_DISCOVER },
                 "bench: finding the servers");
    check_format(&(struct progress_view){ .stage = PROGRESS_CONNECT, .ready = 4, .sockets = 6 },
                 "bench: connecting, 4 of 6 sockets ready");
    check_format(&(struct progress_view){ .stage = PROGRESS_WARMUP, .ready = 5, .sockets = 6 },
                 "bench: warming up, 5 of 6 sockets got a probe");
    check_format(&(struct progress_view){ .stage = PROGRESS_ROUND, .round = 5, .rounds = 11,
                                          .messages = 4000, .sent = 3500, .delivered = 18000,
                                          .expected = 24000, .elapsed_s = 0.5 },
                 "round 5/11: 4000 messages, 18000 of 24000 deliveries (75 %), "
                 "36000 deliveries/s");
    check_format(&(struct progress_view){ .stage = PROGRESS_PACED, .messages = 100000,
                                          .sent = 42000, .delivered = 250001,
                                          .expected = 600000, .elapsed_s = 4.25,
                                          .duration_s = 10 },
                 "paced: 4.2 of 10 s, 42000 of 100000 messages sent, 250001 deliveries "
                 "(41 %), 58824 deliveries/s");
    check_format(&(struct progress_view){ .stage = PROGRESS_FENCE },
                 "bench: last check, that nothing arrives twice");
}

static void test_format_arithmetic(void **state)
{
    (void)state;
    /* Nothing elapsed or expected yet: 0, not a division by zero. */
    check_format(&(struct progress_view){ .stage = PROGRESS_ROUND, .round = 1, .rounds = 1,
                                          .messages = 10 },
                 "round 1/1: 10 messages, 0 of 0 deliveries (0 %), 0 deliveries/s");
    /* The percentage rounds down: 99.99 % is not yet 100 %. */
    check_format(&(struct progress_view){ .stage = PROGRESS_ROUND, .round = 2, .rounds = 3,
                                          .messages = 10000, .delivered = 59999,
                                          .expected = 60000, .elapsed_s = 2.0 },
                 "round 2/3: 10000 messages, 59999 of 60000 deliveries (99 %), "
                 "30000 deliveries/s");
    /* Counts beyond 32 bits. */
    check_format(&(struct progress_view){ .stage = PROGRESS_ROUND, .round = 1, .rounds = 1,
                                          .messages = 100000000, .delivered = 6000000000ULL,
                                          .expected = 6000000000ULL, .elapsed_s = 3.0 },
                 "round 1/1: 100000000 messages, 6000000000 of 6000000000 deliveries "
                 "(100 %), 2000000000 deliveries/s");
}

static void test_format_cut_to_the_buffer(void **state)
{
    (void)state;
    struct progress_view v = { .stage = PROGRESS_CONNECT, .ready = 1, .sockets = 2 };
    char buf[11];
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(progress_format(&v, buf, sizeof(buf)), 10);
    assert_string_equal(buf, "bench: con");
    char one[1] = { 'Z' };
    assert_int_equal(progress_format(&v, one, 1), 0);
    assert_int_equal(one[0], '\0');
    char none[1] = { 'Z' };
    assert_int_equal(progress_format(&v, none, 0), 0);
    assert_int_equal(none[0], 'Z'); /* not written at all */
}

/* --- the display, on a pseudo-terminal --------------------------------------- */

struct pty {
    int master, slave;
};

static struct pty pty_open(unsigned short cols)
{
    struct pty t;
    t.master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(t.master >= 0);
    assert_int_equal(grantpt(t.master), 0);
    assert_int_equal(unlockpt(t.master), 0);
    t.slave = open(ptsname(t.master), O_RDWR | O_NOCTTY);
    assert_true(t.slave >= 0);
    /* raw output: the bytes written are the bytes read */
    struct termios tio;
    assert_int_equal(tcgetattr(t.slave, &tio), 0);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    assert_int_equal(tcsetattr(t.slave, TCSANOW, &tio), 0);
    struct winsize ws = { .ws_row = 24, .ws_col = cols };
    assert_int_equal(ioctl(t.slave, TIOCSWINSZ, &ws), 0);
    return t;
}

/* Everything the terminal has received so far (waits up to 1 s for the
 * first byte, then takes what is there), NUL-terminated. */
static char *pty_read(const struct pty *t, char *buf, size_t cap)
{
    size_t n = 0;
    struct pollfd p = { .fd = t->master, .events = POLLIN };
    int timeout = 1000;
    while (n < cap - 1 && poll(&p, 1, timeout) == 1) {
        ssize_t r = read(t->master, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        timeout = 50;
    }
    buf[n] = '\0';
    return buf;
}

static void pty_close(struct pty *t)
{
    close(t->slave);
    close(t->master);
}

static void test_off_on_a_pipe_or_when_not_wanted(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct progress p;
    progress_init(&p, fds[1], true);
    assert_false(p.on);
    progress_draw(&p, &(struct progress_view){ .stage = PROGRESS_DISCOVER });
    progress_clear(&p);
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 0); /* nothing was written */
    close(fds[0]);

    struct pty t = pty_open(80);
    progress_init(&p, t.slave, false);
    assert_false(p.on);
    progress_draw(&p, &(struct progress_view){ .stage = PROGRESS_DISCOVER });
    progress_clear(&p);
    struct pollfd pf = { .fd = t.master, .events = POLLIN };
    assert_int_equal(poll(&pf, 1, 100), 0);
    pty_close(&t);
}

static void test_draw_and_clear_on_a_terminal(void **state)
{
    (void)state;
    struct pty t = pty_open(80);
    struct progress p;
    char buf[1024];
    progress_init(&p, t.slave, true);
    assert_true(p.on);

    /* nothing shown yet: a clear writes nothing */
    progress_clear(&p);
    struct pollfd pf = { .fd = t.master, .events = POLLIN };
    assert_int_equal(poll(&pf, 1, 100), 0);

    progress_draw(&p, &(struct progress_view){ .stage = PROGRESS_CONNECT, .ready = 4,
                                               .sockets = 6 });
    assert_string_equal(pty_read(&t, buf, sizeof(buf)),
                        "\rbench: connecting, 4 of 6 sockets ready");
    /* a shorter line: spaces over the rest of the longer one */
    progress_draw(&p, &(struct progress_view){ .stage = PROGRESS_DISCOVER });
    assert_string_equal(pty_read(&t, buf, sizeof(buf)),
                        "\rbench: finding the servers             ");
    progress_clear(&p);
    assert_string_equal(pty_read(&t, buf, sizeof(buf)),
                        "\r                          \r");
    /* cleared: a second clear writes nothing */
    progress_clear(&p);
    assert_int_equal(poll(&pf, 1, 100), 0);
    pty_close(&t);
}

static void test_never_wider_than_the_terminal(void **state)
{
    (void)state;
    struct pty t = pty_open(20);
    struct progress p;
    char buf[1024];
    progress_init(&p, t.slave, true);
    progress_draw(&p, &(struct progress_view){ .stage = PROGRESS_FENCE });
    assert_string_equal(pty_read(&t, buf, sizeof(buf)), "\rbench: last check, ");
    progress_clear(&p);
    assert_string_equal(pty_read(&t, buf, sizeof(buf)), "\r" SPACES19 "\r");

    /* a terminal that does not say its width counts as 80 columns */
    struct winsize ws = { 0 };
    assert_int_equal(ioctl(t.slave, TIOCSWINSZ, &ws), 0);
    progress_draw(&p, &(struct progress_view){ .stage = PROGRESS_ROUND, .round = 10,
                                               .rounds = 11, .messages = 128000,
                                               .delivered = 500000, .expected = 768000,
                                               .elapsed_s = 1 });
    char want[100];
    snprintf(want, sizeof(want), "\r%.79s",
             "round 10/11: 128000 messages, 500000 of 768000 deliveries (65 %), "
             "500000 deliveries/s");
    assert_string_equal(pty_read(&t, buf, sizeof(buf)), want);
    /* the terminal narrows: the wiping spaces stop at its edge too */
    ws.ws_col = 10;
    assert_int_equal(ioctl(t.slave, TIOCSWINSZ, &ws), 0);
    progress_draw(&p, &(struct progress_view){ .stage = PROGRESS_DISCOVER });
    assert_string_equal(pty_read(&t, buf, sizeof(buf)), "\rbench: fi");
    pty_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_every_stage),
        cmocka_unit_test(test_format_arithmetic),
        cmocka_unit_test(test_format_cut_to_the_buffer),
        cmocka_unit_test(test_off_on_a_pipe_or_when_not_wanted),
        cmocka_unit_test(test_draw_and_clear_on_a_terminal),
        cmocka_unit_test(test_never_wider_than_the_terminal),
    };
    return cmocka_run_group_tests_name("progress", tests, NULL, NULL);
}
