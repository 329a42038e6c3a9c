/* fdlimit: see fdlimit.h. getrlimit/setrlimit on RLIMIT_NOFILE; raising the
 * soft limit up to the hard one needs no privilege. */
#include "common/fdlimit.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/resource.h>
#include <uv.h>

#include "common/log.h"

/* Linux's default for fs.nr_open, for when /proc cannot be read. */
#define FDLIMIT_NR_OPEN_DEFAULT 1048576

static uint64_t as_u64(rlim_t v)
{
    return v == RLIM_INFINITY ? UINT64_MAX : (uint64_t)v;
}

/* The most descriptors the kernel lets one process have. */
static rlim_t nr_open(void)
{
    unsigned long long v = 0;
    FILE *f = fopen("/proc/sys/fs/nr_open", "r");
    if (f != NULL) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v > 0 ? (rlim_t)v : (rlim_t)FDLIMIT_NR_OPEN_DEFAULT;
}

int fdlimit_raise(uint64_t *before_out, uint64_t *soft_out)
{
    struct rlimit rl;
    if (before_out)
        *before_out = 0;
    if (soft_out)
        *soft_out = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return uv_translate_sys_error(errno);
    if (before_out)
        *before_out = as_u64(rl.rlim_cur);
    if (soft_out)
        *soft_out = as_u64(rl.rlim_cur);
    /* An infinite soft limit for descriptors is refused by Linux
     * (setrlimit says EPERM above nr_open): aim at the ceiling instead. */
    rlim_t target = rl.rlim_max == RLIM_INFINITY ? nr_open() : rl.rlim_max;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= target)
        return 0;
    struct rlimit want = { .rlim_cur = target, .rlim_max = rl.rlim_max };
    if (setrlimit(RLIMIT_NOFILE, &want) != 0)
        return uv_translate_sys_error(errno);
    if (soft_out)
        *soft_out = as_u64(target);
    return 0;
}

uint64_t fdlimit_raise_logged(const char *prog)
{
    uint64_t before = 0, limit = 0;
    int rc = fdlimit_raise(&before, &limit);
    if (rc != 0)
        log_warn("descriptors: cannot raise the soft limit (%llu) to the hard limit: %s; "
                 "raise it with ulimit -n before starting %s",
                 (unsigned long long)limit, uv_strerror(rc), prog);
    else if (limit > before)
        log_info("descriptors: soft limit raised from %llu to %llu",
                 (unsigned long long)before, (unsigned long long)limit);
    else
        log_info("descriptors: soft limit %llu, already the hard limit",
                 (unsigned long long)limit);
    return limit;
}

unsigned fdlimit_connections(uint64_t limit, unsigned reserve)
{
    if (limit <= reserve)
        return 0;
    uint64_t n = limit - reserve;
    return n > UINT_MAX ? UINT_MAX : (unsigned)n;
}
