/* scan: the bench's cheap reader of server frames (see scan.h). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bench/scan.h"

#include "common/util.h"

#define TYPE_KEY "\"type\":\"newMessagesForClient\""
#define TEXT_KEY "\"text\":\""
#define SOURCE_KEY "\"source\":"
#define HEAD "{" TYPE_KEY "," SOURCE_KEY

/* Pads the marker of n bytes in out to size bytes with 'x'. */
static int pad_text(int n, size_t size, char *out, size_t cap)
{
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

/* By hand rather than with snprintf: every message the bench sends on
 * either side is formatted here, and snprintf was 7 % of its CPU. */
int scan_format_text(const struct scan_marker *m, size_t size, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    char marker[32]; /* "b" 8 hex "." 10 digits "." 10 digits "." */
    char *o = marker;
    *o++ = 'b';
    for (int shift = 28; shift >= 0; shift -= 4)
        *o++ = hex[(m->token >> shift) & 15];
    *o++ = '.';
    o = util_put_dec(o, m->round);
    *o++ = '.';
    o = util_put_dec(o, m->index);
    *o++ = '.';
    size_t n = (size_t)(o - marker);
    if (n >= cap)
        return -1;
    memcpy(out, marker, n);
    out[n] = '\0';
    return pad_text((int)n, size, out, cap);
}

int scan_format_load_text(const struct scan_load_marker *m, size_t size, char *out, size_t cap)
{
    return pad_text(snprintf(out, cap, "L%08x.%u.%u.%llu.", m->token, m->sender, m->seq,
                             (unsigned long long)m->sent_ns), size, out, cap);
}

/* Parses decimal digits at *p (bounded by end) up to the terminator t,
 * at most max. */
static int parse_dec(const char **p, const char *end, char t, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9')
        return -1;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    if (s >= end || *s != t)
        return -1;
    *p = s + 1;
    *out = v;
    return 0;
}

static int parse_u32(const char **p, const char *end, char t, uint32_t *out)
{
    uint64_t v;
    if (parse_dec(p, end, t, UINT32_MAX, &v) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The 8 hex digits of a token at t (t[0..7]); -1 when they are not. */
static int parse_token(const char *t, uint32_t *out)
{
    uint32_t token = 0;
    for (int i = 0; i < 8; i++) {
        int h = hexval(t[i]);
        if (h < 0)
            return -1;
        token = token << 4 | (uint32_t)h;
    }
    *out = token;
    return 0;
}

/* The first key (klen bytes, starting with a quote) in data[0..len): to
 * each quote with memchr, then a compare. glibc's memmem builds a table on
 * every call, which for three short keys in a 200-byte frame made it a
 * fifth of the bench's CPU. */
static const char *find_key(const char *data, size_t len, const char *key, size_t klen)
{
    const char *p = data, *end = data + len;
    while ((size_t)(end - p) >= klen) {
        p = memchr(p, key[0], (size_t)(end - p) - klen + 1);
        if (p == NULL)
            return NULL;
        /* most candidates differ in the next byte: no call for them */
        if ((klen < 2 || p[1] == key[1]) && memcmp(p, key, klen) == 0)
            return p;
        p++;
    }
    return NULL;
}

/* p at the literal lit (n bytes)? Then past it. */
static const char *lit_at(const char *p, const char *end, const char *lit, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

static const char *skip_digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

/* The text key of a node's frame laid out as the node writes it, from just
 * after the source: ,"payload":[{"nodeId":N,"id":N,"messageId":"D", then
 * the key. NULL when the frame is laid out otherwise. */
#define LIT(p, s) ((p) = (p) ? lit_at((p), end, (s), sizeof(s) - 1) : NULL)
static const char *after_layout(const char *p, const char *end)
{
    LIT(p, ",\"payload\":[{\"nodeId\":");
    if (p != NULL)
        p = skip_digits(p, end);
    LIT(p, ",\"id\":");
    if (p != NULL)
        p = skip_digits(p, end);
    LIT(p, ",\"messageId\":\"");
    if (p != NULL)
        p = skip_digits(p, end);
    LIT(p, "\",");
    if (p != NULL && lit_at(p, end, TEXT_KEY, sizeof(TEXT_KEY) - 1) == NULL)
        p = NULL;
    return p;
}
#undef LIT

enum scan_result scan_frame_text(const char *data, size_t len, const char **text,
                                 size_t *text_len, long *source)
{
    const char *end = data + len;
    *source = -1;
    /* A node's frame starts with the type and the source (HEAD), which
     * hold no text key: the text is looked for after them. Any other
     * frame is searched whole, for each key, with the same results. */
    const size_t head = sizeof(HEAD) - 1;
    const char *s, *from = data;
    bool node_head = len >= head && memcmp(data, HEAD, head) == 0;
    if (node_head) {
        s = data + head - (sizeof(SOURCE_KEY) - 1);
    } else {
        if (find_key(data, len, TYPE_KEY, sizeof(TYPE_KEY) - 1) == NULL)
            return SCAN_NOT_MESSAGE;
        s = find_key(data, len, SOURCE_KEY, sizeof(SOURCE_KEY) - 1);
    }
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
        if (node_head)
            from = s;
    }
    /* A node's frame has its fields in one order: the text key follows
     * payload, nodeId, id and messageId. Walked over with fixed compares
     * when the frame has that layout (the search stopped at each quote:
     * memchr was an eighth of the bench); searched for otherwise. */
    const char *t = node_head ? after_layout(from, end) : NULL;
    if (t == NULL)
        t = find_key(from, (size_t)(end - from), TEXT_KEY, sizeof(TEXT_KEY) - 1);
    if (t == NULL)
        return SCAN_FOREIGN;
    t += sizeof(TEXT_KEY) - 1;
    *text = t;
    *text_len = (size_t)(end - t);
    return SCAN_OK;
}

enum scan_result scan_frame(const char *data, size_t len, struct scan_marker *m,
                            long *source)
{
    const char *t;
    size_t tl;
    enum scan_result r = scan_frame_text(data, len, &t, &tl, source);
    if (r != SCAN_OK)
        return r;
    return scan_marker_parse(t, tl, m) == 0 ? SCAN_OK : SCAN_FOREIGN;
}

int scan_marker_parse(const char *text, size_t len, struct scan_marker *m)
{
    const char *t = text, *end = text + len;
    uint32_t token;
    if (len < 10 || t[0] != 'b' || t[9] != '.' || parse_token(t + 1, &token) != 0)
        return -1;
    t += 10;
    if (parse_u32(&t, end, '.', &m->round) != 0 || parse_u32(&t, end, '.', &m->index) != 0)
        return -1;
    m->token = token;
    return 0;
}

int scan_load_marker_parse(const char *text, size_t len, struct scan_load_marker *m)
{
    const char *t = text, *end = text + len;
    uint64_t ns;
    if (len < 10 || t[0] != 'L' || t[9] != '.' || parse_token(t + 1, &m->token) != 0)
        return -1;
    t += 10;
    if (parse_u32(&t, end, '.', &m->sender) != 0 || parse_u32(&t, end, '.', &m->seq) != 0 ||
        parse_dec(&t, end, '.', UINT64_MAX, &ns) != 0)
        return -1;
    m->sent_ns = ns;
    return 0;
}
