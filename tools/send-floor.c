/* send-floor: what one send() per socket costs on this machine, the floor
 * under a node's fan-out to many clients. Opens N loopback TCP connections
 * (their client ends bound to 127.0.0.1 .. 127.0.0.A so that ephemeral
 * ports do not run out), the receiving ends in a child process that drains
 * them (two ends of 19,000 connections would not fit one process's
 * descriptor limit), then times a loop of one send() of K frames of S
 * bytes on every socket, RUNS times, and prints min / median / max of the
 * loop's total and of the time per send. On loopback the receiver's TCP
 * processing runs inside the sender's call, as it does for a node's
 * clients on the same machine. Standalone (libc only): `make tools`,
 * then build/bin/send-floor --help. docs/PERFORMANCE.md, "Connection
 * scale", has its figures. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 100

static void usage(FILE *f)
{
    fprintf(f,
            "usage: send-floor [-n N] [-k K] [-s BYTES] [-r RUNS] [-a ADDRS]\n"
            "Times one send() of K frames of BYTES bytes on each of N loopback TCP\n"
            "connections, RUNS times; prints min / median / max.\n"
            "  -n N      connections (default 19000; needs N + 64 descriptors: ulimit -n)\n"
            "  -k K      frames per send, one buffer of K * BYTES (default 1)\n"
            "  -s BYTES  frame size (default 213, a 30-byte chat text as a node sends it)\n"
            "  -r RUNS   timed loops over all sockets (default 5, at most %d)\n"
            "  -a ADDRS  client ends bound round-robin to 127.0.0.1 .. 127.0.0.ADDRS\n"
            "            (default 8)\n"
            "  -p        the sender on CPU 0, the receiver on CPU 1 (as a node and\n"
            "            conn-scale are pinned for docs/PERFORMANCE.md)\n"
            "The receiver drains the sockets while the sends run, as a node's\n"
            "clients do; waking it is part of each send's cost.\n",
            MAX_RUNS);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "send-floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The child: accepts n connections, then reads everything they carry and
 * writes one byte to done each time the total reaches the next multiple of
 * per_run, so that the parent starts a run only on drained sockets. */
static void receiver(int lfd, int n, size_t per_run, int done)
{
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1 (receiver)");
    for (int i = 0; i < n; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0)
            die("accept (receiver)");
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl (receiver)");
    }
    close(lfd);
    char c = 'a';
    if (write(done, &c, 1) != 1)
        die("write to the parent");
    static char buf[1 << 16];
    static struct epoll_event evs[1024];
    size_t total = 0, mark = per_run;
    for (;;) {
        int k = epoll_wait(ep, evs, 1024, -1);
        if (k < 0 && errno != EINTR)
            die("epoll_wait (receiver)");
        for (int i = 0; i < k; i++) {
            ssize_t r;
            while ((r = read(evs[i].data.fd, buf, sizeof(buf))) > 0)
                total += (size_t)r;
            if (r == 0)
                _exit(0); /* the parent closed its ends: done */
        }
        while (total >= mark) {
            if (write(done, &c, 1) != 1)
                _exit(0);
            mark += per_run;
        }
    }
}

static void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        die("sched_setaffinity (-p needs CPUs 0 and 1)");
}

int main(int argc, char **argv)
{
    int n = 19000, k = 1, runs = 5, addrs = 8;
    bool pin = false;
    size_t size = 213;
    int opt;
    while ((opt = getopt(argc, argv, "n:k:s:r:a:ph")) != -1) {
        switch (opt) {
        case 'n': n = atoi(optarg); break;
        case 'k': k = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'r': runs = atoi(optarg); break;
        case 'a': addrs = atoi(optarg); break;
        case 'p': pin = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (n < 1 || k < 1 || size < 1 || runs < 1 || runs > MAX_RUNS || addrs < 1 || addrs > 254) {
        usage(stderr);
        return 64;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        fprintf(stderr, "send-floor: %d connections need %d descriptors, the limit is %llu; "
                        "lower -n or raise ulimit -n\n", n, n + 64,
                (unsigned long long)rl.rlim_cur);
        return 69;
    }
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t salen = sizeof(sa);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(lfd, 65535) != 0 || getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0)
        die("listen on 127.0.0.1");
    size_t len = size * (size_t)k;
    int pipefd[2];
    if (pipe(pipefd) != 0)
        die("pipe");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        if (pin)
            pin_to(1);
        close(pipefd[0]);
        receiver(lfd, n, len * (size_t)n, pipefd[1]);
        _exit(0);
    }
    close(pipefd[1]);
    close(lfd);
    if (pin)
        pin_to(0);

    int *fds = calloc((size_t)n, sizeof(*fds));
    char *buf = malloc(len);
    if (fds == NULL || buf == NULL)
        die("malloc");
    memset(buf, 'x', len);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* as the node */
        struct sockaddr_in src = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl(0x7f000001u + (unsigned)(i % addrs)) };
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0)
            die("bind to a 127.0.0.x source address");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            die("connect to the receiver");
        fds[i] = fd;
    }
    char c;
    if (read(pipefd[0], &c, 1) != 1) {
        fprintf(stderr, "send-floor: the receiver died while accepting\n");
        return 1;
    }
    printf("# %d loopback connections (client ends on 127.0.0.1..%d) set up in %.2f s\n", n,
           addrs, now_s() - t0);
    printf("# each run: one send() of %d x %zu bytes on every socket\n", k, size);
    double totals[MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        double a = now_s();
        for (int i = 0; i < n; i++) {
            ssize_t w = send(fds[i], buf, len, 0);
            if (w != (ssize_t)len) {
                fprintf(stderr, "send-floor: send on connection %d wrote %zd of %zu bytes "
                                "(%s); the socket buffers are too small for -k %d\n",
                        i, w, len, w < 0 ? strerror(errno) : "short", k);
                return 1;
            }
        }
        totals[r] = now_s() - a;
        printf("run %d: %.4f s for %d sends, %.2f us per send\n", r + 1, totals[r], n,
               totals[r] * 1e6 / n);
        fflush(stdout);
        if (read(pipefd[0], &c, 1) != 1) { /* the receiver drained this run */
            fprintf(stderr, "send-floor: the receiver died\n");
            return 1;
        }
    }
    qsort(totals, (size_t)runs, sizeof(double), cmp_double);
    double med = totals[runs / 2];
    printf("total s (min / median / max): %.4f / %.4f / %.4f\n", totals[0], med,
           totals[runs - 1]);
    printf("us per send (min / median / max): %.2f / %.2f / %.2f\n", totals[0] * 1e6 / n,
           med * 1e6 / n, totals[runs - 1] * 1e6 / n);
    printf("us per frame at the median: %.3f\n", med * 1e6 / n / k);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    int st;
    waitpid(child, &st, 0);
    return 0;
}
