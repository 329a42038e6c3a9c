/* netwire: a userspace Ethernet switch between TAP devices that impairs its
 * links as tc netem would (delay, jitter, random loss, partitions), for the
 * fault tests of issue 15 on kernels without sch_netem. It creates one TAP
 * per name, says "netwire: ready", and switches frames between them as a
 * learning switch; the caller moves each TAP into a network namespace of its
 * own. Settings come from a key=value file, read again on SIGHUP.
 * Standalone (libc only): `make tools`, then build/bin/netwire --help. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <math.h>
#include <net/if.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define NETWIRE_NAME_MAX 15          /* IFNAMSIZ - 1 */
#define NETWIRE_MAX_PORTS 256
/* The largest frame a TAP hands over: MTU 65535, an Ethernet header and a
 * VLAN tag. A read into anything smaller would cut it short. */
#define NETWIRE_READ_MAX (65536 + 64)
#define NETWIRE_READ_BATCH 64        /* frames read from one port per turn */
#define NETWIRE_MAC_SLOTS 4096       /* a power of two */
#define NETWIRE_CLASS_MIN 7          /* buffers of 128 bytes .. */
#define NETWIRE_CLASSES 11           /* .. up to 128 KiB */
#define NETWIRE_MAX_MS 60000.0       /* delay and jitter: a minute at most */
#define NETWIRE_DEFAULT_BYTES (64ull << 20)
#define NETWIRE_MIN_BYTES (256ull << 10)
#define ETH_HEADER 14

/* A frame waiting to go out: one buffer, referred to by one queue entry per
 * port it goes to (a broadcast is copied once, not once per port). */
struct frame {
    struct frame *next_free;
    uint32_t len;
    uint32_t refs;
    uint8_t cls;
    unsigned char data[];
};

/* One frame due on one port: an entry of the timer heap. */
struct pending {
    uint64_t due_ns;
    struct frame *f;
    uint16_t from, to;
};

struct port {
    char name[NETWIRE_NAME_MAX + 1];
    int fd;
    bool gone;          /* its device went away: neither read nor written */
    bool write_failed;  /* a failed write was reported (once per port) */
};

struct settings {
    double delay_ms, jitter_ms, loss_pct;
    bool cut[NETWIRE_MAX_PORTS];
};

struct counters {
    unsigned long long in, out, loss, cut, bound, failed;
};

static struct port ports[NETWIRE_MAX_PORTS];
static int nports;
static struct settings cur;
static const char *conf_path;
static struct counters count;

/* Every byte that holds frames (buffers in use and on the free lists, and
 * the queue entries) counts against max_bytes. */
static uint64_t max_bytes = NETWIRE_DEFAULT_BYTES;
static uint64_t held_bytes, peak_bytes;
static struct frame *free_frames[NETWIRE_CLASSES];

static struct pending *heap;
static size_t heap_len, heap_cap;

static struct {
    uint8_t mac[6];
    uint16_t port;
    bool used;
} macs[NETWIRE_MAC_SLOTS];

static uint64_t rng_state;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: netwire [--conf FILE] [--max-bytes N] TAPNAME...\n"
            "Creates one TAP device per name (gone again when netwire exits), prints\n"
            "'netwire: ready' on stdout once all exist, then switches Ethernet frames\n"
            "between them as a learning switch, each frame impaired on its way out of\n"
            "a port. Move the TAPs into other network namespaces after 'ready' and set\n"
            "their addresses and links up there (ip link set TAP netns NS). Needs root.\n"
            "  --conf FILE    impairment settings, read at start and on SIGHUP (no file:\n"
            "                 none); lines key=value, '#' starts a comment:\n"
            "                   delay=MS    every frame waits MS milliseconds (e.g. 20)\n"
            "                   jitter=MS   plus a uniform random -MS..+MS (never below 0)\n"
            "                   loss=PCT    drops PCT %% of frames at random (0..100, e.g. 0.5)\n"
            "                   cut=A,B     partitions the TAPs A and B: every frame from or\n"
            "                               to them is dropped (cut=- or cut=: none)\n"
            "                 A malformed file on SIGHUP keeps the settings in force.\n"
            "  --max-bytes N  memory for frames waiting to go out, in bytes or with a\n"
            "                 K, M or G suffix (default 64M); frames beyond it are dropped\n"
            "Signals: SIGHUP rereads FILE; SIGUSR1 prints the counters; SIGTERM and\n"
            "SIGINT print them and exit 0. Counters: in (frames read), out (written),\n"
            "loss, cut, bound (dropped), failed (writes refused, as to a TAP whose link\n"
            "is down); a frame sent to several ports counts once per port in out and\n"
            "the drops; queued: frames still waiting at exit.\n");
}

static void die(const char *what)
{
    fprintf(stderr, "netwire: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime");
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64 to seed, xorshift64* to draw: fast, and good enough for
 * deciding which frames are lost. */
static void rng_seed(void)
{
    uint64_t z = now_ns() ^ ((uint64_t)getpid() << 32);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    rng_state = (z ^ (z >> 31)) | 1;
}

/* A uniform double in [0, 1). */
static double rng_unit(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
}

/* --- the frame pool ---------------------------------------------------------- */

static int frame_class(size_t len)
{
    int c = 0;
    while (((size_t)1 << (NETWIRE_CLASS_MIN + c)) < len)
        c++;
    return c;
}

static size_t class_bytes(int c)
{
    return sizeof(struct frame) + ((size_t)1 << (NETWIRE_CLASS_MIN + c));
}

static void held_add(size_t n)
{
    held_bytes += n;
    if (held_bytes > peak_bytes)
        peak_bytes = held_bytes;
}

/* Frees one cached buffer, the largest there is. Returns false if the free
 * lists are empty. */
static bool pool_trim_one(void)
{
    for (int c = NETWIRE_CLASSES - 1; c >= 0; c--) {
        struct frame *f = free_frames[c];
        if (f != NULL) {
            free_frames[c] = f->next_free;
            held_bytes -= class_bytes(c);
            free(f);
            return true;
        }
    }
    return false;
}

/* A buffer for len bytes with refs 0, from the free list of its size class
 * or new; NULL if that would take more than max_bytes. The caller returns
 * it with frame_put once no queue entry refers to it. */
static struct frame *frame_get(size_t len)
{
    int c = frame_class(len);
    struct frame *f = free_frames[c];
    if (f != NULL) {
        free_frames[c] = f->next_free;
    } else {
        size_t need = class_bytes(c);
        while (held_bytes + need > max_bytes && pool_trim_one())
            ;
        if (held_bytes + need > max_bytes)
            return NULL;
        f = malloc(need);
        if (f == NULL) {
            fprintf(stderr, "netwire: out of memory for a %zu-byte frame buffer; "
                            "lower --max-bytes\n", need);
            exit(1);
        }
        held_add(need);
        f->cls = (uint8_t)c;
    }
    f->len = (uint32_t)len;
    f->refs = 0;
    return f;
}

static void frame_put(struct frame *f)
{
    f->next_free = free_frames[f->cls];
    free_frames[f->cls] = f;
}

/* --- the timer heap: frames by due time -------------------------------------- */

static bool heap_before(size_t a, size_t b)
{
    return heap[a].due_ns < heap[b].due_ns;
}

static void heap_swap(size_t a, size_t b)
{
    struct pending t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
}

/* Queues f for port `to`; false if the entry does not fit in max_bytes. */
static bool heap_push(uint64_t due_ns, struct frame *f, int from, int to)
{
    if (held_bytes + sizeof(struct pending) > max_bytes)
        return false;
    if (heap_len == heap_cap) {
        size_t cap = heap_cap ? heap_cap * 2 : 1024;
        struct pending *h = realloc(heap, cap * sizeof(*h));
        if (h == NULL) {
            fprintf(stderr, "netwire: out of memory for %zu queue entries; "
                            "lower --max-bytes\n", cap);
            exit(1);
        }
        heap = h;
        heap_cap = cap;
    }
    held_add(sizeof(struct pending));
    size_t i = heap_len++;
    heap[i] = (struct pending){ .due_ns = due_ns, .f = f, .from = (uint16_t)from,
                                .to = (uint16_t)to };
    f->refs++;
    while (i > 0 && heap_before(i, (i - 1) / 2)) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return true;
}

static struct pending heap_pop(void)
{
    struct pending top = heap[0];
    heap[0] = heap[--heap_len];
    held_bytes -= sizeof(struct pending);
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_len && heap_before(l, m))
            m = l;
        if (r < heap_len && heap_before(r, m))
            m = r;
        if (m == i)
            break;
        heap_swap(i, m);
        i = m;
    }
    return top;
}

/* --- the switch -------------------------------------------------------------- */

static size_t mac_slot(const uint8_t *mac)
{
    uint64_t v = 0;
    memcpy(&v, mac, 6);
    return (size_t)((v * 0x9e3779b97f4a7c15ull) >> 52) & (NETWIRE_MAC_SLOTS - 1);
}

/* A direct-mapped table: a collision forgets the older address, whose
 * frames are then flooded until it sends again. */
static void mac_learn(const uint8_t *mac, int port)
{
    size_t s = mac_slot(mac);
    memcpy(macs[s].mac, mac, 6);
    macs[s].port = (uint16_t)port;
    macs[s].used = true;
}

/* The port that mac was last seen on, or -1. */
static int mac_lookup(const uint8_t *mac)
{
    size_t s = mac_slot(mac);
    if (macs[s].used && memcmp(macs[s].mac, mac, 6) == 0 && !ports[macs[s].port].gone)
        return macs[s].port;
    return -1;
}

static void port_write(int to, const unsigned char *data, size_t len)
{
    struct port *p = &ports[to];
    if (p->gone) {
        count.failed++;
        return;
    }
    ssize_t w = write(p->fd, data, len);
    if (w == (ssize_t)len) {
        count.out++;
        return;
    }
    count.failed++;
    /* EIO: its link is down (not up yet in its namespace, or set down), a
     * cable unplugged; frames to it are lost as they would be. */
    if (w < 0 && errno == EIO)
        return;
    if (!p->write_failed) {
        p->write_failed = true;
        fprintf(stderr, "netwire: writing a %zu-byte frame to %s failed (%s); further "
                        "failures there are only counted\n",
                len, p->name, w < 0 ? strerror(errno) : "short write");
    }
}

static uint64_t draw_delay_ns(void)
{
    double ms = cur.delay_ms;
    if (cur.jitter_ms > 0)
        ms += (2 * rng_unit() - 1) * cur.jitter_ms;
    return ms > 0 ? (uint64_t)(ms * 1e6) : 0;
}

/* One frame from port `from` on its way out of port `to`: cut, lost, sent
 * now, or queued (copied into *f, shared by every port it is queued for). */
static void forward(int from, int to, const unsigned char *data, size_t len,
                    struct frame **f, uint64_t now)
{
    if (cur.cut[from] || cur.cut[to]) {
        count.cut++;
        return;
    }
    if (cur.loss_pct > 0 && rng_unit() * 100 < cur.loss_pct) {
        count.loss++;
        return;
    }
    uint64_t d = draw_delay_ns();
    if (d == 0) {
        port_write(to, data, len);
        return;
    }
    if (*f == NULL) {
        *f = frame_get(len);
        if (*f == NULL) {
            count.bound++;
            return;
        }
        memcpy((*f)->data, data, len);
    }
    if (!heap_push(now + d, *f, from, to))
        count.bound++;
}

static void switch_frame(int from, const unsigned char *data, size_t len, uint64_t now)
{
    if (len < ETH_HEADER)
        return;
    const uint8_t *dst = data, *src = data + 6;
    if (!(src[0] & 1)) /* a group address is never a source */
        mac_learn(src, from);
    int to = (dst[0] & 1) ? -1 : mac_lookup(dst);
    if (to == from)
        return; /* for a host on the port it came from: a switch filters it */
    struct frame *f = NULL;
    if (to >= 0) {
        forward(from, to, data, len, &f, now);
    } else {
        for (int p = 0; p < nports; p++)
            if (p != from && !ports[p].gone)
                forward(from, p, data, len, &f, now);
    }
    if (f != NULL && f->refs == 0)
        frame_put(f);
}

/* Sends what is due; a cut made while a frame waited drops it too. */
static void send_due(uint64_t now)
{
    while (heap_len > 0 && heap[0].due_ns <= now) {
        struct pending e = heap_pop();
        if (cur.cut[e.from] || cur.cut[e.to])
            count.cut++;
        else
            port_write(e.to, e.f->data, e.f->len);
        if (--e.f->refs == 0)
            frame_put(e.f);
    }
}

static void port_gone(int i, int ep, int err)
{
    struct port *p = &ports[i];
    fprintf(stderr, "netwire: %s is gone (reading it: %s); its port is closed\n", p->name,
            strerror(err));
    if (epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL) != 0)
        die("epoll_ctl (removing a port)");
    close(p->fd);
    p->fd = -1;
    p->gone = true;
}

static void port_read(int i, int ep)
{
    static unsigned char buf[NETWIRE_READ_MAX];
    uint64_t now = now_ns();
    for (int n = 0; n < NETWIRE_READ_BATCH; n++) {
        ssize_t r = read(ports[i].fd, buf, sizeof(buf));
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                port_gone(i, ep, errno);
            return;
        }
        if (r == 0)
            return;
        count.in++;
        switch_frame(i, buf, (size_t)r, now);
    }
}

/* --- settings ---------------------------------------------------------------- */

static int port_by_name(const char *name)
{
    for (int i = 0; i < nports; i++)
        if (strcmp(ports[i].name, name) == 0)
            return i;
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
                     s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* A number from 0 to max, optionally followed by unit: "20", "0.5ms". */
static bool parse_amount(const char *s, const char *unit, double max, double *out)
{
    if (!((*s >= '0' && *s <= '9') || *s == '.') || strpbrk(s, "xX") != NULL)
        return false; /* no sign, no "inf", "nan" or hexadecimal */
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(v) || v < 0 || v > max)
        return false;
    while (*end == ' ' || *end == '\t')
        end++;
    if (strcmp(end, unit) == 0)
        end += strlen(unit);
    if (*end != '\0')
        return false;
    *out = v;
    return true;
}

/* Fills s from the comma-separated TAP names in list ("" or "-": none).
 * Returns NULL, or the first name that is no TAP of ours. */
static char *parse_cut(char *list, struct settings *s)
{
    memset(s->cut, 0, sizeof(s->cut));
    if (strcmp(list, "-") == 0)
        return NULL;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        t = trim(t);
        if (*t == '\0')
            continue;
        int p = port_by_name(t);
        if (p < 0)
            return t;
        s->cut[p] = true;
    }
    return NULL;
}

/* Reads path into *out (what it does not set is no impairment). A missing
 * file is no impairment. Returns 0, or -1 after saying on stderr which line
 * is wrong and why. */
static int conf_load(const char *path, struct settings *out)
{
    memset(out, 0, sizeof(*out));
    if (path == NULL)
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "netwire: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    static const char *const keys[] = { "delay", "jitter", "loss", "cut" };
    int seen_on[4] = { 0 };
    char *line = NULL, *bad = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    char why[512];
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(why, sizeof(why), "'%s' is not key=value", s);
            goto bad_line;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        int k = 0;
        while (k < 4 && strcmp(key, keys[k]) != 0)
            k++;
        if (k == 4) {
            snprintf(why, sizeof(why), "unknown key '%s' (the keys are delay, jitter, "
                                       "loss and cut)", key);
            goto bad_line;
        }
        if (seen_on[k] != 0) {
            snprintf(why, sizeof(why), "%s is given twice (first on line %d)", key,
                     seen_on[k]);
            goto bad_line;
        }
        seen_on[k] = lineno;
        if (k == 0 && !parse_amount(val, "ms", NETWIRE_MAX_MS, &out->delay_ms)) {
            snprintf(why, sizeof(why), "delay '%s' is not milliseconds from 0 to %.0f "
                                       "(e.g. delay=20)", val, NETWIRE_MAX_MS);
            goto bad_line;
        }
        if (k == 1 && !parse_amount(val, "ms", NETWIRE_MAX_MS, &out->jitter_ms)) {
            snprintf(why, sizeof(why), "jitter '%s' is not milliseconds from 0 to %.0f "
                                       "(e.g. jitter=5)", val, NETWIRE_MAX_MS);
            goto bad_line;
        }
        if (k == 2 && !parse_amount(val, "%", 100, &out->loss_pct)) {
            snprintf(why, sizeof(why), "loss '%s' is not a percentage from 0 to 100 "
                                       "(e.g. loss=1 or loss=0.5)", val);
            goto bad_line;
        }
        if (k == 3 && (bad = parse_cut(val, out)) != NULL) {
            int n = snprintf(why, sizeof(why), "cut names '%s', which is none of the TAPs "
                                               "(they are", bad);
            for (int p = 0; p < nports && n > 0 && (size_t)n < sizeof(why); p++)
                n += snprintf(why + n, sizeof(why) - (size_t)n, " %s", ports[p].name);
            if (n > 0 && (size_t)n < sizeof(why))
                snprintf(why + n, sizeof(why) - (size_t)n, ")");
            goto bad_line;
        }
        continue;
    bad_line:
        fprintf(stderr, "netwire: %s line %d: %s\n", path, lineno, why);
        rc = -1;
        break;
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "netwire: cannot read %s: %s\n", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

static void settings_print(const struct settings *s, const char *note)
{
    char cut[NETWIRE_MAX_PORTS * (NETWIRE_NAME_MAX + 1) + 2] = "";
    size_t n = 0;
    for (int p = 0; p < nports; p++) {
        if (s->cut[p]) {
            n += (size_t)snprintf(cut + n, sizeof(cut) - n, "%s%s", n ? "," : "",
                                  ports[p].name);
        }
    }
    fprintf(stderr, "netwire: delay=%gms jitter=%gms loss=%g%% cut=%s%s\n", s->delay_ms,
            s->jitter_ms, s->loss_pct, n ? cut : "-", note);
}

/* SIGHUP: the file again; a malformed one keeps what is in force. */
static void settings_reload(void)
{
    struct settings s;
    if (conf_load(conf_path, &s) != 0) {
        fprintf(stderr, "netwire: keeping the settings in force; fix the file and send "
                        "SIGHUP again\n");
        return;
    }
    bool same = s.delay_ms == cur.delay_ms && s.jitter_ms == cur.jitter_ms &&
                s.loss_pct == cur.loss_pct && memcmp(s.cut, cur.cut, sizeof(s.cut)) == 0;
    cur = s;
    settings_print(&cur, same ? " (unchanged)" : "");
}

static void counters_print(void)
{
    fprintf(stderr, "netwire: counters: in=%llu out=%llu loss=%llu cut=%llu bound=%llu "
                    "failed=%llu queued=%zu peak-bytes=%llu\n", count.in, count.out,
            count.loss, count.cut, count.bound, count.failed, heap_len,
            (unsigned long long)peak_bytes);
}

/* --- start ------------------------------------------------------------------- */

static bool parse_bytes(const char *s, uint64_t *out)
{
    if (!(*s >= '0' && *s <= '9'))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    int shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift != 0)
        end++;
    if (*end != '\0' || v > (ULLONG_MAX >> shift))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* Names go into `cut` lists and on to the kernel, which reads "%d" in one
 * as "the next free number": letters, digits, '-', '_' and '.' only. */
static void check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NETWIRE_NAME_MAX) {
        fprintf(stderr, "netwire: the TAP name '%s' has %zu characters; an interface name "
                        "has 1 to %d\n", name, n, NETWIRE_NAME_MAX);
        exit(64);
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != n) {
        fprintf(stderr, "netwire: the TAP name '%s' is not allowed; use letters, digits, "
                        "'-', '_' and '.'\n", name);
        exit(64);
    }
    if (port_by_name(name) >= 0) {
        fprintf(stderr, "netwire: the TAP name '%s' is given twice; give each TAP its own "
                        "name\n", name);
        exit(64);
    }
    if (if_nametoindex(name) != 0) {
        fprintf(stderr, "netwire: an interface named '%s' exists already; pick another "
                        "name, or remove it (ip link del %s)\n", name, name);
        exit(1);
    }
}

static void tap_open(struct port *p)
{
    p->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (p->fd < 0) {
        int err = errno;
        fprintf(stderr, "netwire: cannot open /dev/net/tun: %s; ", strerror(err));
        if (err == ENOENT || err == ENODEV || err == ENXIO)
            fprintf(stderr, "TAP devices need the tun driver (modprobe tun; in a "
                            "container: --device /dev/net/tun --cap-add NET_ADMIN)\n");
        else if (err == EACCES || err == EPERM)
            fprintf(stderr, "opening it needs root: run netwire as root\n");
        else
            fprintf(stderr, "TAP devices cannot be made here\n");
        exit(err == EACCES || err == EPERM ? 77 : 69);
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, p->name, strlen(p->name) + 1);
    if (ioctl(p->fd, TUNSETIFF, &ifr) != 0) {
        int err = errno;
        fprintf(stderr, "netwire: creating the TAP device %s: %s; %s\n", p->name,
                strerror(err),
                err == EPERM ? "creating TAP devices needs root (CAP_NET_ADMIN): run netwire "
                               "as root"
                             : "is the name free, and may this process create devices?");
        exit(err == EPERM ? 77 : 1);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "conf", 1, 0, 'c' }, { "max-bytes", 1, 0, 'm' }, { "help", 0, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf_path = optarg; break;
        case 'm':
            if (!parse_bytes(optarg, &max_bytes) || max_bytes < NETWIRE_MIN_BYTES) {
                fprintf(stderr, "netwire: --max-bytes '%s' is not a size of at least %llu "
                                "bytes (e.g. 64M)\n", optarg, NETWIRE_MIN_BYTES);
                return 64;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    int n = argc - optind;
    if (n < 2 || n > NETWIRE_MAX_PORTS) {
        fprintf(stderr, "netwire: give 2 to %d TAP names to switch between (got %d)\n",
                NETWIRE_MAX_PORTS, n);
        usage(stderr);
        return 64;
    }
    for (int i = 0; i < n; i++) {
        check_name(argv[optind + i]);
        snprintf(ports[nports++].name, sizeof(ports[0].name), "%s", argv[optind + i]);
    }
    if (conf_load(conf_path, &cur) != 0) {
        fprintf(stderr, "netwire: fix %s and start again\n", conf_path);
        return 1;
    }

    /* The signals arrive on a descriptor of the loop, never in a handler. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0)
        die("sigprocmask");
    int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = NETWIRE_MAX_PORTS };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) != 0)
        die("epoll_ctl (signals)");
    for (int i = 0; i < nports; i++) {
        tap_open(&ports[i]);
        ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = (uint32_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ports[i].fd, &ev) != 0)
            die("epoll_ctl (a TAP)");
    }
    rng_seed();
    settings_print(&cur, "");
    if (printf("netwire: ready\n") < 0 || fflush(stdout) != 0)
        die("writing 'ready' on stdout");

    struct epoll_event evs[64];
    for (;;) {
        int timeout = -1;
        if (heap_len > 0) {
            uint64_t t = now_ns(), due = heap[0].due_ns;
            /* whole milliseconds, rounded up: never early */
            uint64_t ms = due > t ? (due - t + 999999) / 1000000 : 0;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        int k = epoll_wait(ep, evs, 64, timeout);
        if (k < 0 && errno != EINTR)
            die("epoll_wait");
        for (int j = 0; j < k; j++) {
            uint32_t i = evs[j].data.u32;
            if (i < NETWIRE_MAX_PORTS) {
                if (!ports[i].gone)
                    port_read((int)i, ep);
                continue;
            }
            struct signalfd_siginfo si;
            ssize_t r;
            while ((r = read(sfd, &si, sizeof(si))) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGHUP) {
                    settings_reload();
                } else if (si.ssi_signo == SIGUSR1) {
                    counters_print();
                } else {
                    counters_print();
                    return 0; /* the TAPs go with the descriptors */
                }
            }
            if (r < 0 && errno != EAGAIN)
                die("reading signals");
        }
        send_due(now_ns());
    }
}
