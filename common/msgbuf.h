/* msgbuf: an immutable, reference-counted byte buffer. An outgoing message
 * is serialized once (JSON plus its WebSocket frame header, or a peer frame)
 * into a msgbuf; every recipient's write queue holds a reference and drops
 * it when the write completes. No per-recipient copy. Single-threaded: the
 * count is not atomic. Small buffers come from a free list, so the hot path
 * does not call malloc per message in steady state: four size classes,
 * 256 bytes to 2 KiB, each with a bounded cache. */
#ifndef DCHAT_MSGBUF_H
#define DCHAT_MSGBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct msgbuf {
    uint32_t refs;
    uint32_t len;   /* bytes used in data */
    uint32_t cap;   /* bytes available in data */
    uint32_t pad_;
    char data[];
} msgbuf;

/* A new buffer with room for at least cap bytes, len 0 and one reference
 * (the caller's). Fill data, set len, then share it. */
msgbuf *msgbuf_new(size_t cap);

static inline msgbuf *msgbuf_ref(msgbuf *b) { b->refs++; return b; }

/* Drops one reference; the last one returns the buffer to the free list. */
void msgbuf_unref(msgbuf *b);

/* Coalesces: a buffer holding the bytes of bufs[0..k) one after another,
 * for the largest k (at least 1, at most n) whose total fits in max bytes,
 * with one reference for the caller; *taken = k. When only bufs[0] fits
 * (or it alone is over max), that is bufs[0] itself with a new reference,
 * no copy. So a receiver that takes one such buffer sees exactly the bytes
 * it would have from the k, in order. n must be at least 1. */
msgbuf *msgbuf_concat(msgbuf *const *bufs, size_t n, size_t max, size_t *taken);

/* Data bytes of the free buffers kept for reuse (at most 2 MiB per size
 * class, msgbuf.c). */
size_t msgbuf_cached_bytes(void);

/* Returns every cached free buffer to the system (at exit, for leak
 * checkers). */
void msgbuf_trim(void);

#endif
