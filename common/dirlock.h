/* dirlock: one process per data directory. A daemon takes DIR/LOCK with
 * flock(LOCK_EX | LOCK_NB) at start and holds it for its life (the kernel
 * lets go when the process ends, however it ends, so a kill -9 leaves no
 * stale lock), with its pid written in the file for the operator. A second
 * process on the same directory finds it held and stops before it reads or
 * writes anything there: two nodes on one data dir would both believe
 * they are the node it names and hand out the same sequence numbers. */
#ifndef DCHAT_DIRLOCK_H
#define DCHAT_DIRLOCK_H

#include <stddef.h>

/* Creates dir if needed and locks DIR/LOCK. Returns the lock's descriptor
 * (keep it open; dirlock_release or exit lets go), or -1 after writing
 * into err what failed and what to do: another process holds it (its pid,
 * as the file says), or the directory or file cannot be made. */
int dirlock_take(const char *dir, char *err, size_t errlen);

/* Lets go of a lock from dirlock_take (fd < 0: nothing). */
void dirlock_release(int fd);

#endif
