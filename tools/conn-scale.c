/* conn-scale: many idle WebSocket clients on one node, measured. Opens N
 * clients (their source addresses spread over 127.0.0.1 .. 127.0.0.A),
 * each a raw non-blocking socket on one epoll loop that does the handshake,
 * answers the node's pings and counts the text frames it receives, then:
 *   mem    the node's RSS (VmRSS of --pid) before and after, per client;
 *   one    client 0 sends one message: time until all N received it;
 *   burst  client 0 sends B messages in one write: time until all N got
 *          them all, and the node's CPU (utime + stime of --pid) per
 *          million deliveries;
 *   storm  all but clients 0 (the sender) and 1 (the probe) close and
 *          come back at once, as after a restart: how long until all are
 *          in, how many were refused (connect errors, non-101 answers,
 *          resets), and the probe's delivery latency meanwhile (the
 *          sender sends a message every 10 ms). The probe's messages go to
 *          a chat only the probe is in, and each returning client joins
 *          another chat as soon as it is in (as room clients do), so the
 *          latency shows what the handshakes cost the connected clients,
 *          not what delivering every probe to 19,000 more does (that is
 *          the fan-out measured above). --storm-every keeps the returning
 *          clients in every chat instead: then each probe goes to all.
 * Reading 19,000 sockets from one thread is part of the measured time; C
 * and epoll keep that small. Standalone (libc only): `make tools`, then
 * build/bin/conn-scale --help; docs/PERFORMANCE.md, "Connection scale". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 50
#define STORM_PROBE_MS 10
#define MAX_PROBES 100000

enum cstate { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_FAILED };

struct conn {
    int fd;
    uint8_t state;
    uint8_t hdr_got, hdr_need, opcode;
    uint8_t ctrl_len;
    uint64_t left;        /* payload bytes of the current frame still to come */
    uint32_t texts;       /* text frames received */
    char *head;           /* handshake answer so far (C_HANDSHAKE only) */
    uint16_t head_len;
    uint8_t hdr[14];
    uint8_t ctrl[125];    /* a ping's payload, echoed in the pong */
};

static struct conn *conns;
static int nconns;
static int ep;
static struct sockaddr_in node_addr;
static int naddrs = 8;
static int node_pid;
static _Atomic uint64_t texts_total; /* the probe's thread counts too */
static int open_count, failed_count;
static int fail_connect, fail_status, fail_reset;
static int last_status;
static double last_open_at;
static bool probing;       /* storm: note the probe's receipt times */
static bool storm_rooms;   /* storm: returning clients subscribe to STORM_CHAT */
#define PROBE_CHAT 2       /* the probe's chat in the storm (rooms) */
#define STORM_CHAT 3       /* the returning clients' chat */
#define SENDER_CHAT 4      /* the sender's own chat, where nobody writes */
static double probe_sent[MAX_PROBES], probe_got[MAX_PROBES];
static _Atomic int nprobe_sent, nprobe_got;
static atomic_bool probe_stop;
static int probe_ep;       /* the probe thread's epoll (storm) */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "conn-scale: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* --- the node's process ------------------------------------------------------ */

static long rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", node_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* utime + stime of the node, in seconds. */
static double cpu_s(void)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", node_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long ut = 0, st = 0;
    /* after the command: state, then fields 4..13, utime is 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* --- frames ------------------------------------------------------------------ */

static void masked_frame(uint8_t *out, size_t *outlen, unsigned opcode, const void *data,
                         size_t len)
{
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    }
    uint8_t mask[4] = { (uint8_t)rand(), (uint8_t)rand(), (uint8_t)rand(), (uint8_t)rand() };
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        out[h + i] = ((const uint8_t *)data)[i] ^ mask[i & 3];
    *outlen = h + len;
}

static void send_all(struct conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN)
            continue; /* small frames on an idle socket: never for long */
        if (w <= 0)
            die("send to the node");
        p += w;
        len -= (size_t)w;
    }
}

/* A subscribe request of c to chat (its answer is one text frame). */
static void send_subscribe(struct conn *c, int chat)
{
    char json[96];
    int n = snprintf(json, sizeof(json), "{\"type\":\"subscribe\",\"payload\":{\"chatIds\":[%d]}}",
                     chat);
    uint8_t f[128];
    size_t fl;
    masked_frame(f, &fl, 1, json, (size_t)n);
    send_all(c, f, fl);
}

/* count messages of chat from client c in one write; 30-byte texts (the
 * frame a node delivers is then about 213 bytes, as the floor's). */
static void send_chat_messages(struct conn *c, int count, int chat)
{
    static _Thread_local uint8_t buf[1 << 20];
    static _Atomic unsigned seq;
    size_t off = 0;
    for (int i = 0; i < count; i++) {
        char json[160];
        int n = snprintf(json, sizeof(json),
                         "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":"
                         "\"conn-scale %019u\",\"sender\":\"cs\",\"chatId\":%d}}",
                         seq++, chat);
        size_t fl;
        masked_frame(buf + off, &fl, 1, json, (size_t)n);
        off += fl;
    }
    send_all(c, buf, off);
}

static void send_messages(struct conn *c, int count)
{
    send_chat_messages(c, count, 1);
}

static void conn_fail(struct conn *c, int *why)
{
    if (c->state == C_OPEN)
        open_count--;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->head);
    c->head = NULL;
    c->state = C_FAILED;
    failed_count++;
    (*why)++;
}

/* Server frames: unmasked. Counts texts, answers pings, skips the rest. */
static void frames_in(struct conn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (c->left == 0 && c->hdr_need == 0) {
            c->hdr_got = 0;
            c->hdr_need = 2;
        }
        if (c->hdr_need > 0) {
            c->hdr[c->hdr_got++] = *p++;
            n--;
            if (c->hdr_got == 2) {
                unsigned l7 = c->hdr[1] & 0x7f;
                c->hdr_need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
            }
            if (c->hdr_got < c->hdr_need)
                continue;
            c->opcode = c->hdr[0] & 0x0f;
            unsigned l7 = c->hdr[1] & 0x7f;
            uint64_t len = l7;
            if (l7 >= 126)
                for (int i = 2; i < c->hdr_need; i++)
                    len = len << 8 | c->hdr[i];
            if (l7 == 126)
                len &= 0xffff;
            c->hdr_need = 0;
            c->left = len;
            c->ctrl_len = 0;
            if (c->opcode == 1) {
                c->texts++;
                texts_total++;
                if (probing && c == &conns[1] && nprobe_got < MAX_PROBES) {
                    probe_got[nprobe_got] = now_s();
                    nprobe_got++;
                }
            }
            if (len > 0)
                continue;
        } else {
            size_t take = n < c->left ? n : (size_t)c->left;
            if (c->opcode == 9 && c->ctrl_len + take <= sizeof(c->ctrl)) {
                memcpy(c->ctrl + c->ctrl_len, p, take);
                c->ctrl_len += (uint8_t)take;
            }
            p += take;
            n -= take;
            c->left -= take;
            if (c->left > 0)
                continue;
        }
        if (c->opcode == 9) { /* ping: pong with its payload */
            uint8_t f[140];
            size_t fl;
            masked_frame(f, &fl, 10, c->ctrl, c->ctrl_len);
            send_all(c, f, fl);
        }
    }
}

static void handshake_in(struct conn *c, const char *p, size_t n)
{
    size_t room = 1023 - c->head_len;
    size_t take = n < room ? n : room;
    memcpy(c->head + c->head_len, p, take);
    c->head_len += (uint16_t)take;
    c->head[c->head_len] = '\0';
    char *end = strstr(c->head, "\r\n\r\n");
    if (end == NULL) {
        if (c->head_len >= 1023)
            conn_fail(c, &fail_status);
        return;
    }
    int status = 0;
    sscanf(c->head, "HTTP/1.1 %d", &status);
    if (status != 101) {
        last_status = status;
        conn_fail(c, &fail_status);
        return;
    }
    size_t head_len = (size_t)(end - c->head) + 4;
    size_t extra = c->head_len - head_len;
    char rest[1024];
    memcpy(rest, end + 4, extra);
    free(c->head);
    c->head = NULL;
    c->state = C_OPEN;
    open_count++;
    last_open_at = now_s();
    if (storm_rooms && c - conns >= 2)
        send_subscribe(c, STORM_CHAT);
    frames_in(c, (uint8_t *)rest, extra);
    if (take < n)
        frames_in(c, (const uint8_t *)p + take, n - take);
}

static void conn_start(int i)
{
    struct conn *c = &conns[i];
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        die("socket (raise ulimit -n)");
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in src = { .sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(0x7f000001u + (unsigned)(i % naddrs)) };
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0)
        die("bind to a 127.0.0.x source address");
    c->state = C_CONNECTING;
    int rc = connect(c->fd, (struct sockaddr *)&node_addr, sizeof(node_addr));
    if (rc != 0 && errno != EINPROGRESS) {
        conn_fail(c, &fail_connect);
        return;
    }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl");
}

static void conn_event(int i, uint32_t events)
{
    struct conn *c = &conns[i];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err != 0) {
            conn_fail(c, &fail_connect);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLIN)))
            return;
        char req[256];
        int n = snprintf(req, sizeof(req),
                         "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n");
        send_all(c, req, (size_t)n);
        c->state = C_HANDSHAKE;
        c->head = malloc(1024);
        c->head_len = 0;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    static _Thread_local uint8_t buf[1 << 16];
    for (;;) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            conn_fail(c, c->state == C_OPEN ? &fail_reset
                         : r == 0 ? &fail_status : &fail_reset);
            return;
        }
        if (c->state == C_HANDSHAKE)
            handshake_in(c, (char *)buf, (size_t)r);
        else if (c->state == C_OPEN)
            frames_in(c, buf, (size_t)r);
        if (c->state == C_FAILED || (size_t)r < sizeof(buf))
            return;
    }
}

/* Runs the loop until done() or the deadline; tick (may be NULL) runs every
 * tick_ms. Returns whether done() held. */
static bool run_until(bool (*done)(void), double limit_s, void (*tick)(void), int tick_ms)
{
    static struct epoll_event evs[4096];
    double end = now_s() + limit_s, next_tick = now_s();
    while (!done()) {
        double t = now_s();
        if (t > end)
            return false;
        int wait_ms = 100;
        if (tick != NULL) {
            if (t >= next_tick) {
                tick();
                next_tick += tick_ms / 1000.0;
            }
            wait_ms = (int)((next_tick - now_s()) * 1000);
            if (wait_ms < 0)
                wait_ms = 0;
        }
        int k = epoll_wait(ep, evs, 4096, wait_ms);
        if (k < 0 && errno != EINTR)
            die("epoll_wait");
        for (int j = 0; j < k; j++)
            conn_event((int)evs[j].data.u32, evs[j].events);
    }
    return true;
}

static int want_open;
static uint64_t want_texts;
static bool all_settled(void) { return open_count + failed_count >= want_open; }
static bool texts_in(void) { return texts_total >= want_texts; }

/* Connects clients [from, to), at most window handshakes at a time (0: all
 * at once). Returns the seconds it took. */
static double connect_range(int from, int to, int window)
{
    double t0 = now_s();
    int base = open_count + failed_count;
    for (int next = from; next < to;) {
        int stop = window > 0 && next + window < to ? next + window : to;
        for (; next < stop; next++)
            conn_start(next);
        want_open = base + (stop - from);
        if (!run_until(all_settled, 60, NULL, 0)) {
            fprintf(stderr, "conn-scale: clients did not connect within 60 s\n");
            exit(1);
        }
    }
    return now_s() - t0;
}

static void probe_tick(void)
{
    if (nprobe_sent < MAX_PROBES) {
        probe_sent[nprobe_sent] = now_s();
        nprobe_sent++;
        send_chat_messages(&conns[0], 1, storm_rooms ? PROBE_CHAT : 1);
    }
}

/* The probe's loop, on a thread of its own during the storm (it owns the
 * sender's and the probe's sockets then): a probe every STORM_PROBE_MS,
 * receipts noted as they come, whatever the main loop is doing with
 * thousands of handshakes. Once told to stop, it waits up to 10 s for
 * the probes still on their way. */
static void *probe_main(void *arg)
{
    (void)arg;
    struct epoll_event evs[8];
    double next = now_s(), end = 0;
    for (;;) {
        double t = now_s();
        if (atomic_load(&probe_stop)) {
            if (end == 0)
                end = t + 10;
            if (nprobe_got >= nprobe_sent || t > end)
                break;
        } else if (t >= next) {
            probe_tick();
            next += STORM_PROBE_MS / 1000.0;
        }
        int wait_ms = end > 0 ? 10 : (int)((next - now_s()) * 1000);
        int k = epoll_wait(probe_ep, evs, 8, wait_ms < 0 ? 0 : wait_ms);
        if (k < 0 && errno != EINTR)
            die("epoll_wait (probe)");
        for (int j = 0; j < k; j++)
            conn_event((int)evs[j].data.u32, evs[j].events);
    }
    return NULL;
}

/* Moves the sockets of clients 0 and 1 from one epoll to another. */
static void move_probe_conns(int from, int to)
{
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        if (epoll_ctl(from, EPOLL_CTL_DEL, conns[i].fd, NULL) != 0 ||
            epoll_ctl(to, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0)
            die("epoll_ctl (moving the probe)");
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: conn-scale --port PORT --pid PID [-n N] [--runs R] [--burst B]\n"
            "                  [--addrs A] [--window W] [--phases mem,one,burst,storm]\n"
            "Holds N WebSocket clients on the node at 127.0.0.1:PORT (process PID) and\n"
            "measures its memory per client, the time for one message to reach all N,\n"
            "bursts of B messages (time, node CPU per million deliveries) and a\n"
            "connection storm (all reconnecting at once). Needs N + 64 descriptors,\n"
            "and the node needs --max-clients >= N.\n"
            "  -n N          clients (default 1000)\n"
            "  --runs R      runs of each timed phase (default 3)\n"
            "  --burst B     messages per burst (default 50)\n"
            "  --addrs A     source addresses 127.0.0.1 .. 127.0.0.A (default 8)\n"
            "  --window W    handshakes at once while setting up (default 500)\n"
            "  --phases LIST which of mem,one,burst,storm (default all)\n"
            "  --storm-every returning clients take every chat (each probe goes to\n"
            "                all of them) instead of joining a chat of their own\n");
}

static void report(const char *what, double *v, int n, const char *unit, double scale)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    printf("%s (min / median / max of %d): %.4f / %.4f / %.4f %s\n", what, n, v[0] * scale,
           v[n / 2] * scale, v[n - 1] * scale, unit);
}

int main(int argc, char **argv)
{
    int n = 1000, runs = 3, burst = 50, window = 500, port = 0;
    bool storm_every = false;
    const char *phases = "mem,one,burst,storm";
    static const struct option opts[] = {
        { "port", 1, 0, 'p' }, { "pid", 1, 0, 'P' },   { "runs", 1, 0, 'r' },
        { "burst", 1, 0, 'b' }, { "addrs", 1, 0, 'a' }, { "window", 1, 0, 'w' },
        { "phases", 1, 0, 'f' }, { "help", 0, 0, 'h' }, { "storm-every", 0, 0, 'e' },
        { 0, 0, 0, 0 },
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'n': n = atoi(optarg); break;
        case 'p': port = atoi(optarg); break;
        case 'P': node_pid = atoi(optarg); break;
        case 'r': runs = atoi(optarg); break;
        case 'b': burst = atoi(optarg); break;
        case 'a': naddrs = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'e': storm_every = true; break;
        case 'f': phases = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (port <= 0 || node_pid <= 0 || n < 3 || runs < 1 || runs > MAX_RUNS || burst < 1 ||
        naddrs < 1 || naddrs > 254) {
        usage(stderr);
        return 64;
    }
    if (rss_kib() < 0) {
        fprintf(stderr, "conn-scale: cannot read /proc/%d/status: is --pid the node's?\n",
                node_pid);
        return 66;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        fprintf(stderr, "conn-scale: %d clients need %d descriptors, the limit is %llu; "
                        "lower -n or raise ulimit -n\n", n, n + 64,
                (unsigned long long)rl.rlim_cur);
        return 69;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* each line as it comes, for scripts */
    srand((unsigned)getpid());
    node_addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    conns = calloc((size_t)n, sizeof(*conns));
    nconns = n;
    ep = epoll_create1(0);
    if (conns == NULL || ep < 0)
        die("setup");

    long rss0 = rss_kib();
    double setup = connect_range(0, n, window);
    /* The node frees each connection's HTTP state from its loop right after
     * the upgrade: give it a few turns (answering pings meanwhile). */
    want_texts = UINT64_MAX;
    run_until(texts_in, 0.5, NULL, 0);
    long rss1 = rss_kib();
    printf("# %d clients on 127.0.0.1:%d (source addresses 127.0.0.1..%d): %d open, %d refused,"
           " set up in %.2f s\n", n, port, naddrs, open_count, failed_count, setup);
    if (open_count != n) {
        fprintf(stderr, "conn-scale: only %d of %d clients connected (last HTTP status %d): "
                        "is the node's --max-clients at least %d?\n", open_count, n,
                last_status, n);
        return 1;
    }
    if (strstr(phases, "mem"))
        printf("mem: node VmRSS %ld KiB before, %ld KiB with %d clients: %.0f bytes per client\n",
               rss0, rss1, n, (double)(rss1 - rss0) * 1024.0 / n);

    double v[MAX_RUNS], w[MAX_RUNS];
    if (strstr(phases, "one")) {
        double c0 = cpu_s();
        for (int r = 0; r < runs; r++) {
            want_texts = texts_total + (uint64_t)n;
            double t0 = now_s();
            send_messages(&conns[0], 1);
            if (!run_until(texts_in, 30, NULL, 0)) {
                fprintf(stderr, "conn-scale: one message did not reach all %d clients in 30 s "
                                "(%llu deliveries missing)\n", n,
                        (unsigned long long)(want_texts - texts_total));
                return 1;
            }
            v[r] = now_s() - t0;
            printf("one: run %d: %.4f s until all %d clients had the message\n", r + 1, v[r], n);
        }
        double c1 = cpu_s();
        report("one: seconds to all", v, runs, "s", 1);
        /* in clock ticks (10 ms): a sum over the runs, not per run */
        printf("one: node CPU over the %d runs: %.2f s, %.4f s per message\n", runs, c1 - c0,
               (c1 - c0) / runs);
    }
    if (strstr(phases, "burst")) {
        for (int r = 0; r < runs; r++) {
            want_texts = texts_total + (uint64_t)n * (uint64_t)burst;
            double c0 = cpu_s(), t0 = now_s();
            send_messages(&conns[0], burst);
            if (!run_until(texts_in, 60, NULL, 0)) {
                fprintf(stderr, "conn-scale: a burst did not reach all clients in 60 s\n");
                return 1;
            }
            v[r] = now_s() - t0;
            /* the node's last writes complete as the last frames arrive */
            double c1 = cpu_s();
            double deliveries = (double)n * burst;
            w[r] = (c1 - c0) / deliveries * 1e6;
            printf("burst: run %d: %d messages, %.0f deliveries in %.4f s, node CPU %.2f s: "
                   "%.3f s per million deliveries\n", r + 1, burst, deliveries, v[r], c1 - c0,
                   w[r]);
        }
        report("burst: seconds", v, runs, "s", 1);
        report("burst: node CPU s per million deliveries", w, runs, "", 1);
    }
    if (strstr(phases, "storm")) {
        storm_rooms = !storm_every;
        for (int i = 2; i < n; i++) {
            close(conns[i].fd);
            if (conns[i].state == C_OPEN)
                open_count--;
            conns[i].state = C_IDLE;
        }
        /* Let the node see the closes: until a message goes around to the
         * probe, its loop has handled the EOFs read before it. */
        want_texts = texts_total + 2;
        send_messages(&conns[0], 1);
        run_until(texts_in, 10, NULL, 0);
        if (storm_rooms) {
            /* the sender in a chat of its own, the probe in PROBE_CHAT */
            want_texts = texts_total + 2;
            send_subscribe(&conns[0], SENDER_CHAT);
            send_subscribe(&conns[1], PROBE_CHAT);
            run_until(texts_in, 10, NULL, 0);
        }
        failed_count = 0;
        fail_connect = fail_status = fail_reset = 0;
        /* The probe on its own thread: a second before the storm, for
         * comparison, then during it. */
        probing = true;
        nprobe_sent = nprobe_got = 0;
        probe_ep = epoll_create1(0);
        if (probe_ep < 0)
            die("epoll_create1");
        move_probe_conns(ep, probe_ep);
        pthread_t probe_thread;
        if (pthread_create(&probe_thread, NULL, probe_main, NULL) != 0)
            die("pthread_create");
        struct timespec second = { 1, 0 };
        nanosleep(&second, NULL);
        int storm_from = nprobe_sent;
        double t0 = now_s();
        last_open_at = t0;
        for (int i = 2; i < n; i++)
            conn_start(i);
        double issued = now_s() - t0;
        want_open = n;
        bool ok = run_until(all_settled, 120, NULL, 0);
        double took = last_open_at - t0;
        /* every probe sent during the storm received (or 10 s) */
        atomic_store(&probe_stop, true);
        pthread_join(probe_thread, NULL);
        move_probe_conns(probe_ep, ep);
        close(probe_ep);
        probing = false;
        int got = nprobe_got < nprobe_sent ? nprobe_got : nprobe_sent;
        int nb = got < storm_from ? got : storm_from;
        double *before = malloc(sizeof(double) * (size_t)(nb > 0 ? nb : 1));
        for (int i = 0; i < nb; i++)
            before[i] = probe_got[i] - probe_sent[i];
        int m = got - nb;
        double *lat = malloc(sizeof(double) * (size_t)(m > 0 ? m : 1));
        for (int i = 0; i < m; i++)
            lat[i] = probe_got[nb + i] - probe_sent[nb + i];
        printf("storm: %d clients connecting at once (connect() calls issued in %.3f s): "
               "%d in after %.2f s, %d refused (%d connect errors, %d non-101 answers, last "
               "status %d, %d resets)%s\n", n - 2, issued, open_count - 2, took,
               failed_count, fail_connect, fail_status, last_status, fail_reset,
               ok ? "" : "; NOT SETTLED after 120 s");
        if (nb > 0)
            report("storm: probe latency before, ms", before, nb, "ms", 1000);
        printf("storm: %d probes sent, %d received (probe %s)\n", nprobe_sent - storm_from,
               m, conns[1].state == C_OPEN ? "open" : "gone");
        if (m > 0)
            report("storm: probe latency during, ms", lat, m, "ms", 1000);
        free(before);
        free(lat);
    }
    return 0;
}
