/* util: see util.h. Allocation wrappers, clocks and small parsers. */
#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void oom(size_t size)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes; "
                    "raise the memory limit or lower the load\n", size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *old, size_t size)
{
    void *p = realloc(old, size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t util_now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t util_now_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000u; }
uint64_t util_wall_ms(void) { return clock_ns(CLOCK_REALTIME) / 1000000u; }

const uint64_t util_pow10[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
    100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
    10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
    100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull,
};

const char util_digit_pairs[200] =
    "00010203040506070809"
    "10111213141516171819"
    "20212223242526272829"
    "30313233343536373839"
    "40414243444546474849"
    "50515253545556575859"
    "60616263646566676869"
    "70717273747576777879"
    "80818283848586878889"
    "90919293949596979899";

int util_format_iso8601(uint64_t wall_ms, char *out)
{
    /* Called for every message on the hot path: gmtime_r only when the
     * second changes, then digits by hand. */
    static uint64_t cached_sec = UINT64_MAX;
    static char cached[UTIL_ISO8601_LEN + 1];
    uint64_t sec = wall_ms / 1000;

    if (sec != cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        /* Years past 9999 cannot be written in this fixed-width format. */
        unsigned year = (unsigned)(tm.tm_year + 1900);
        if (year > 9999)
            year = 9999;
        memcpy(cached, "0000-00-00T00:00:00.000Z", UTIL_ISO8601_LEN + 1);
        util_put_dec_width(cached, year, 4);
        util_put_dec_width(cached + 5, (unsigned)tm.tm_mon + 1, 2);
        util_put_dec_width(cached + 8, (unsigned)tm.tm_mday, 2);
        util_put_dec_width(cached + 11, (unsigned)tm.tm_hour, 2);
        util_put_dec_width(cached + 14, (unsigned)tm.tm_min, 2);
        util_put_dec_width(cached + 17, (unsigned)tm.tm_sec, 2);
        cached_sec = sec;
    }
    memcpy(out, cached, UTIL_ISO8601_LEN + 1);
    util_put_dec_width(out + 20, (unsigned)(wall_ms % 1000), 3);
    return UTIL_ISO8601_LEN;
}

int util_parse_long(const char *s, long min, long max, long *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int util_parse_hostport(const char *s, const char *default_host,
                        char *host, size_t hostlen, int *port)
{
    const char *portstr;
    size_t n;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        n = (size_t)(close - s - 1);
        if (n == 0 || n >= hostlen)
            return -1;
        memcpy(host, s + 1, n);
        host[n] = '\0';
        portstr = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            portstr = s;
            n = 0;
        } else {
            if (strchr(s, ':') != colon)
                return -1; /* bare IPv6 needs brackets to carry a port */
            n = (size_t)(colon - s);
            portstr = colon + 1;
        }
        if (n == 0) {
            if (strlen(default_host) >= hostlen)
                return -1;
            strcpy(host, default_host);
        } else {
            if (n >= hostlen)
                return -1;
            memcpy(host, s, n);
            host[n] = '\0';
        }
    }
    long p;
    if (util_parse_long(portstr, 0, 65535, &p) != 0)
        return -1;
    *port = (int)p;
    return 0;
}

int util_mkdir_p(const char *dir)
{
    char buf[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, dir, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}
