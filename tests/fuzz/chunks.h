/* chunks: how the fuzz targets cut their input into reads. The first
 * CHUNKS_HEADER bytes of an input are a cycle of chunk sizes; the rest is
 * the byte stream, fed in those sizes, so that libFuzzer mutates the
 * chunking along with the bytes and every split point gets tried. */
#ifndef DCHAT_FUZZ_CHUNKS_H
#define DCHAT_FUZZ_CHUNKS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/record.h"

#define CHUNKS_HEADER 4

typedef struct chunks {
    uint8_t sizes[CHUNKS_HEADER];
    unsigned next;
} chunks;

/* Takes the chunk sizes from the front of *data (fewer bytes than that: all
 * in one chunk). */
static inline void chunks_init(chunks *c, const uint8_t **data, size_t *len)
{
    c->next = 0;
    for (unsigned i = 0; i < CHUNKS_HEADER; i++)
        c->sizes[i] = 0xff;
    if (*len < CHUNKS_HEADER)
        return;
    for (unsigned i = 0; i < CHUNKS_HEADER; i++)
        c->sizes[i] = (*data)[i];
    *data += CHUNKS_HEADER;
    *len -= CHUNKS_HEADER;
}

/* The layout of every chunked target's input: one byte of the target's
 * own settings, then the chunk header (chunks_init), then the stream.
 * Returns -1 for an empty input (nothing to run), else 0 with *settings
 * set and *data, *len the stream. */
static inline int chunks_start(chunks *c, const uint8_t **data, size_t *len, uint8_t *settings)
{
    if (*len < 1)
        return -1;
    *settings = (*data)[0];
    (*data)++;
    (*len)--;
    chunks_init(c, data, len);
    return 0;
}

/* The next chunk's size, at most left: a byte below 0x80 is 1..128 bytes,
 * one above is (b - 0x7f) * 256 bytes, and 0xff the rest of the input. */
static inline size_t chunks_next(chunks *c, size_t left)
{
    uint8_t b = c->sizes[c->next++ % CHUNKS_HEADER];
    size_t n = b == 0xff ? left : b < 0x80 ? (size_t)b + 1 : (size_t)(b - 0x7f) * 256;
    return n < left ? n : left;
}

/* A heap copy of exactly the n bytes at src (one byte allocated for an
 * empty chunk), so that ASan sees a read past the chunk; free it. */
static inline void *chunks_copy(const void *src, size_t n)
{
    void *chunk = malloc(n ? n : 1);
    FUZZ_CHECK(chunk != NULL);
    if (n > 0)
        memcpy(chunk, src, n);
    return chunk;
}

#endif
