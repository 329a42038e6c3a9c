/* progress: the bench's one-line progress display on a terminal (issue 13).
 * While the bench runs, a timer in bench.c redraws one line on stderr
 * (round, messages, deliveries so far, their rate) at most every
 * PROGRESS_INTERVAL_MS, going back with '\r' and never ending it with a
 * newline; the line is wiped before anything else is written (a report row
 * that may go to the same terminal, a log line) and when the run ends. It
 * is on only when stderr is a terminal and --no-progress was not given, so
 * a redirected stderr gets none of it, and stdout, where the report goes,
 * never does. */
#ifndef DCHAT_BENCH_PROGRESS_H
#define DCHAT_BENCH_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROGRESS_INTERVAL_MS 100
/* The longest line drawn; a narrower terminal cuts it to its width less one
 * column, so that it never wraps (a wrapped line cannot be wiped with '\r'). */
#define PROGRESS_LINE_MAX 160

/* What the bench is doing, as the line says it. */
enum progress_stage {
    PROGRESS_DISCOVER,  /* finding the servers */
    PROGRESS_CONNECT,   /* opening the sockets: ready of sockets */
    PROGRESS_WARMUP,    /* waiting for the probes: ready of sockets got one */
    PROGRESS_ROUND,     /* round `round` of `rounds` */
    PROGRESS_PACED,     /* the paced run (bench --rate) */
    PROGRESS_FENCE,     /* the last check: nothing arrives twice */
};

struct progress_view {
    enum progress_stage stage;
    unsigned ready, sockets;     /* CONNECT, WARMUP */
    unsigned round, rounds;      /* ROUND: 1-based */
    uint32_t messages;           /* ROUND, PACED: in the round or run */
    uint32_t sent;               /* handed to the senders so far */
    uint64_t delivered;          /* unique deliveries so far, every socket */
    uint64_t expected;           /* messages x sockets */
    double elapsed_s;            /* since the round (or paced run) started */
    unsigned duration_s;         /* PACED: how long it sends */
};

/* Formats v as the progress line into buf (cap bytes, NUL-terminated, cut
 * to cap - 1), e.g.
 *   round 5/11: 4000 messages, 18000 of 24000 deliveries (75 %), 650210 deliveries/s
 * No '\r' and no newline. Returns the length written. */
size_t progress_format(const struct progress_view *v, char *buf, size_t cap);

/* The display on one descriptor. */
struct progress {
    int fd;
    bool on;            /* drawing at all */
    size_t shown;       /* columns of the line now on the terminal, 0 = none */
};

/* Draws on fd only when wanted and fd is a terminal. */
void progress_init(struct progress *p, int fd, bool wanted);

/* Replaces the line on the terminal with v's ('\r', the line, spaces over
 * what is left of the previous one), with one write(2). Nothing when off. */
void progress_draw(struct progress *p, const struct progress_view *v);

/* Wipes the line ('\r', spaces, '\r'), leaving the cursor at the start of an
 * empty line for whatever is written next. Nothing when no line is shown. */
void progress_clear(struct progress *p);

#endif
