/* dirlock: see dirlock.h. */
#include "common/dirlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/util.h"

int dirlock_take(const char *dir, char *err, size_t errlen)
{
    char path[1024];
    if (util_mkdir_p(dir) != 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s; pass a writable --data-dir", dir,
                 strerror(errno));
        return -1;
    }
    int n = snprintf(path, sizeof(path), "%s/LOCK", dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(err, errlen, "data dir path too long: %.200s...", dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s; pass a writable --data-dir", path,
                 strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t r = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[r > 0 ? r : 0] = '\0';
        pid[strcspn(pid, "\r\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "data dir %s is in use by another process (pid %s, as %s "
                     "says); stop that one first, or give this one a --data-dir of its own",
                     dir, pid[0] ? pid : "unknown", path);
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        return -1;
    }
    /* Ours: say whose, for the next one that tries. */
    char line[32];
    int len = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
        snprintf(err, errlen, "cannot write %s: %s; is the data dir's disk full?", path,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void dirlock_release(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the descriptor lets go of the flock */
}
