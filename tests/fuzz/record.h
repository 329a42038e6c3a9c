/* record: an append-only byte log the fuzz targets write what a decoder
 * handed them into, so that two runs over the same input (whole and in
 * chunks) can be compared with one memcmp. */
#ifndef DCHAT_FUZZ_RECORD_H
#define DCHAT_FUZZ_RECORD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct record {
    uint8_t *p;
    size_t len, cap;
} record;

static inline void record_add(record *r, const void *p, size_t n)
{
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2 + 256;
        r->p = realloc(r->p, r->cap);
        if (r->p == NULL) {
            fprintf(stderr, "fuzz: out of memory recording a decoder's output\n");
            abort();
        }
    }
    if (n > 0)
        memcpy(r->p + r->len, p, n);
    r->len += n;
}

static inline void record_u64(record *r, uint64_t v) { record_add(r, &v, sizeof(v)); }

static inline int record_same(const record *a, const record *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static inline void record_free(record *r)
{
    free(r->p);
    r->p = NULL;
    r->len = r->cap = 0;
}

/* A broken invariant: say which, then abort so that libFuzzer keeps the
 * input as a crash. */
#define FUZZ_CHECK(cond)                                                            \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz: invariant broken at %s:%d: %s\n", __FILE__,      \
                    __LINE__, #cond);                                               \
            abort();                                                                \
        }                                                                           \
    } while (0)

#endif
