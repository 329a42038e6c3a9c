/* scan: the bench's cheap reader of server frames (see scan.h). */
#include <stdio.h>
#include <string.h>

#include "bench/scan.h"

#define TYPE_KEY "\"type\":\"newMessagesForClient\""
#define TEXT_KEY "\"text\":\""
#define SOURCE_KEY "\"source\":"

int scan_format_text(const struct scan_marker *m, size_t size, char *out, size_t cap)
{
    int n = snprintf(out, cap, "b%08x.%u.%u.", m->token, m->round, m->index);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    size_t len = (size_t)n;
    if (size > len) {
        if (size >= cap)
            return -1;
        memset(out + len, 'x', size - len);
        len = size;
        out[len] = '\0';
    }
    return (int)len;
}

/* Parses decimal digits at *p (bounded by end) up to the terminator t. */
static int parse_u32(const char **p, const char *end, char t, uint32_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9')
        return -1;
    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -1;
        s++;
    }
    if (s >= end || *s != t)
        return -1;
    *p = s + 1;
    *out = (uint32_t)v;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

enum scan_result scan_frame(const char *data, size_t len, struct scan_marker *m,
                            long *source)
{
    const char *end = data + len;
    *source = -1;
    if (memmem(data, len, TYPE_KEY, sizeof(TYPE_KEY) - 1) == NULL)
        return SCAN_NOT_MESSAGE;
    const char *s = memmem(data, len, SOURCE_KEY, sizeof(SOURCE_KEY) - 1);
    if (s != NULL) {
        s += sizeof(SOURCE_KEY) - 1;
        long v = 0;
        int digits = 0;
        while (s < end && *s >= '0' && *s <= '9' && digits < 10) {
            v = v * 10 + (*s++ - '0');
            digits++;
        }
        if (digits > 0)
            *source = v;
    }
    const char *t = memmem(data, len, TEXT_KEY, sizeof(TEXT_KEY) - 1);
    if (t == NULL)
        return SCAN_FOREIGN;
    t += sizeof(TEXT_KEY) - 1;
    return scan_marker_parse(t, (size_t)(end - t), m) == 0 ? SCAN_OK : SCAN_FOREIGN;
}

int scan_marker_parse(const char *text, size_t len, struct scan_marker *m)
{
    const char *t = text, *end = text + len;
    if (len < 10 || t[0] != 'b' || t[9] != '.')
        return -1;
    uint32_t token = 0;
    for (int i = 1; i <= 8; i++) {
        int h = hexval(t[i]);
        if (h < 0)
            return -1;
        token = token << 4 | (uint32_t)h;
    }
    t += 10;
    if (parse_u32(&t, end, '.', &m->round) != 0 || parse_u32(&t, end, '.', &m->index) != 0)
        return -1;
    m->token = token;
    return 0;
}
