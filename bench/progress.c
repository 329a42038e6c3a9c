/* progress: see progress.h. Spaces over the old line rather than an erase
 * escape sequence, so that it works on any terminal that knows '\r'. */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "bench/progress.h"
#include "common/util.h"

size_t progress_format(const struct progress_view *v, char *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    double rate = v->elapsed_s > 0 ? (double)v->delivered / v->elapsed_s : 0;
    unsigned pct = v->expected > 0 ? (unsigned)(v->delivered * 100 / v->expected) : 0;
    int n = 0;
    switch (v->stage) {
    case PROGRESS_DISCOVER:
        n = snprintf(buf, cap, "bench: finding the servers");
        break;
    case PROGRESS_CONNECT:
        n = snprintf(buf, cap, "bench: connecting, %u of %u sockets ready", v->ready,
                     v->sockets);
        break;
    case PROGRESS_WARMUP:
        n = snprintf(buf, cap, "bench: warming up, %u of %u sockets got a probe", v->ready,
                     v->sockets);
        break;
    case PROGRESS_ROUND:
        n = snprintf(buf, cap, "round %u/%u: %u messages, %llu of %llu deliveries (%u %%), "
                     "%.0f deliveries/s", v->round, v->rounds, v->messages,
                     (unsigned long long)v->delivered, (unsigned long long)v->expected, pct,
                     rate);
        break;
    case PROGRESS_PACED:
        n = snprintf(buf, cap, "paced: %.1f of %u s, %u of %u messages sent, %llu "
                     "deliveries (%u %%), %.0f deliveries/s", v->elapsed_s, v->duration_s,
                     v->sent, v->messages, (unsigned long long)v->delivered, pct, rate);
        break;
    case PROGRESS_FENCE:
        n = snprintf(buf, cap, "bench: last check, that nothing arrives twice");
        break;
    }
    return n < 0 ? 0 : UTIL_MIN((size_t)n, cap - 1);
}

/* The terminal's width in columns, or 80 when it does not say. */
static size_t term_width(int fd)
{
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

void progress_init(struct progress *p, int fd, bool wanted)
{
    p->fd = fd;
    p->on = wanted && isatty(fd) == 1;
    p->shown = 0;
}

/* One write; a failed or short one is not worth a retry or a message: the
 * display is a courtesy, and the next draw or clear starts with '\r'. */
static void put(struct progress *p, const char *buf, size_t len)
{
    ssize_t w = write(p->fd, buf, len);
    (void)w;
}

void progress_draw(struct progress *p, const struct progress_view *v)
{
    if (!p->on)
        return;
    char line[PROGRESS_LINE_MAX + 1];
    size_t len = progress_format(v, line, sizeof(line));
    size_t width = term_width(p->fd);
    if (width > 1 && len > width - 1)
        len = width - 1; /* never wrap: '\r' goes back one row only */
    char out[1 + 2 * PROGRESS_LINE_MAX];
    size_t o = 0;
    out[o++] = '\r';
    memcpy(out + o, line, len);
    o += len;
    for (size_t i = len; i < p->shown && (width <= 1 || i < width - 1); i++)
        out[o++] = ' ';
    put(p, out, o);
    p->shown = len;
}

void progress_clear(struct progress *p)
{
    if (!p->on || p->shown == 0)
        return;
    char out[2 + PROGRESS_LINE_MAX];
    size_t o = 0;
    out[o++] = '\r';
    for (size_t i = 0; i < p->shown && i < PROGRESS_LINE_MAX; i++)
        out[o++] = ' ';
    out[o++] = '\r';
    put(p, out, o);
    p->shown = 0;
}
