/* util: allocation that aborts on out-of-memory, container_of, and small
 * helpers every module uses. Out of memory is not a recoverable condition for
 * a network daemon here: xmalloc() prints what failed and aborts, so callers
 * are not littered with NULL checks. */
#ifndef DCHAT_UTIL_H
#define DCHAT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define UTIL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define UTIL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Never return NULL: abort with a message naming the size on failure. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* 1, 10, 100 ... 10^19. */
extern const uint64_t util_pow10[20];

/* The number of decimal digits of v (1 for 0), without a division: from
 * its bit length, log10(2) being about 1233 / 4096, then one comparison. */
static inline unsigned util_dec_len(uint64_t v)
{
    uint64_t w = v | 1;
    unsigned t = ((64u - (unsigned)__builtin_clzll(w)) * 1233u) >> 12;
    return t + 1 - (w < util_pow10[t]);
}

/* "00" "01" ... "99": the numbers of every message frame are written two
 * digits at a time, which halves the divisions (each a multiply and a
 * shift or two) and the stores. */
extern const char util_digit_pairs[200];

/* v in decimal at o (util_dec_len(v) bytes, at most 20, no NUL), written
 * from its last digit back; returns the end. For the numbers of every
 * message frame, where printf would cost. */
static inline char *util_put_dec(char *o, uint64_t v)
{
    char *end = o + util_dec_len(v);
    char *p = end;
    while (v >= 100) {
        p -= 2;
        memcpy(p, util_digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, util_digit_pairs + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    return end;
}

/* v in exactly width decimal digits at o, zeros in front (the lowest
 * digits when v has more); returns o + width. */
static inline char *util_put_dec_width(char *o, uint64_t v, int width)
{
    int i = width;
    for (; i >= 2; i -= 2) {
        memcpy(o + i - 2, util_digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (i == 1)
        o[0] = (char)('0' + v % 10);
    return o + width;
}

/* Big-endian (network order) integers at p, at any alignment, as the peer
 * protocol and its records write them. */
static inline void util_put_be16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static inline void util_put_be32(void *p, uint32_t v)
{
    uint8_t *b = p;
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (24 - 8 * i));
}

static inline void util_put_be64(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint16_t util_get_be16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t util_get_be32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline uint64_t util_get_be64(const void *p)
{
    return (uint64_t)util_get_be32(p) << 32 | util_get_be32((const uint8_t *)p + 4);
}

/* Monotonic clock in milliseconds / nanoseconds (CLOCK_MONOTONIC). */
uint64_t util_now_ms(void);
uint64_t util_now_ns(void);

/* Wall clock in milliseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t util_wall_ms(void);

/* Formats a wall-clock time in ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, exactly
 * 24 characters, as JavaScript's Date.toJSON) into out, which must hold
 * UTIL_ISO8601_LEN + 1 bytes. Returns the length written (24). */
#define UTIL_ISO8601_LEN 24
int util_format_iso8601(uint64_t wall_ms, char *out);

/* Parses a decimal integer in [min, max] from the whole of s. Returns 0, or
 * -1 when s is empty, has trailing characters or is out of range. */
int util_parse_long(const char *s, long min, long max, long *out);

/* Creates dir and its missing parents (mode 0755), like mkdir -p.
 * Returns 0, or -1 with errno set. */
int util_mkdir_p(const char *dir);

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT"/"PORT" (host defaults to
 * default_host) into host (NUL-terminated, at most hostlen-1 bytes, brackets
 * removed) and port (0..65535). Returns 0 or -1 on a malformed string. */
int util_parse_hostport(const char *s, const char *default_host,
                        char *host, size_t hostlen, int *port);

#endif
