/* origins: see origins.h. A list keeps its entries serialized, so checking
 * a header is one serialization and a few string compares. Character
 * classes are ASCII by hand: the C locale's would do, but no other. */
#include "common/origins.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Room for a serialized origin: a scheme, "://", a 255-byte host (253 for
 * a DNS name, a bracketed IPv6 address is shorter), ":65535" and a NUL. */
#define ORIGIN_MAX 320

struct origins {
    char **entries;       /* serialized */
    size_t n;
    char *described;      /* entries joined by commas */
};

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }
static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Serializes the origin at s (len bytes) into out (ORIGIN_MAX bytes):
 * RFC 6454 6.2, scheme and host lower-cased, a default port left out.
 * Returns 0, or -1 with why in err. */
static int origin_serialize(const char *s, size_t len, char *out, char *err, size_t errlen)
{
    static const char form[] = "expected scheme://host[:port], e.g. https://chat.example.com";
    const char *end = s + len;
    const char *p = s;
    while (p < end && (is_alnum(*p) || *p == '+' || *p == '-' || *p == '.'))
        p++;
    if (p == s || !is_alpha(*s) || end - p < 3 || memcmp(p, "://", 3) != 0) {
        snprintf(err, errlen, "%s", form);
        return -1;
    }
    size_t scheme_len = (size_t)(p - s);
    p += 3;
    const char *host = p;
    if (p < end && *p == '[') {
        p++;
        while (p < end && (is_hex(*p) || *p == ':' || *p == '.'))
            p++;
        if (p == end || *p != ']' || p == host + 1) {
            snprintf(err, errlen, "an IPv6 host goes in brackets, e.g. http://[::1]:8080");
            return -1;
        }
        p++;
    } else {
        while (p < end && (is_alnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~'))
            p++;
    }
    size_t host_len = (size_t)(p - host);
    if (host_len == 0) {
        snprintf(err, errlen, "no host; %s", form);
        return -1;
    }
    long port = -1;
    if (p < end && *p == ':') {
        const char *digits = ++p;
        port = 0;
        while (p < end && is_digit(*p) && p - digits < 5)
            port = port * 10 + (*p++ - '0');
        if (p == digits || port < 1 || port > 65535 || (p < end && is_digit(*p))) {
            snprintf(err, errlen, "the port must be a number from 1 to 65535");
            return -1;
        }
    }
    if (p < end) {
        if (*p == '/')
            snprintf(err, errlen, "an origin has no path: leave out the '/' and what follows");
        else if (*p == '@')
            snprintf(err, errlen, "an origin has no user info: leave out the part up to '@'");
        else
            snprintf(err, errlen, "unexpected '%c' after the host; %s", *p, form);
        return -1;
    }
    if (scheme_len + 3 + host_len + 7 > ORIGIN_MAX) {
        snprintf(err, errlen, "too long for an origin");
        return -1;
    }
    char *o = out;
    for (size_t i = 0; i < scheme_len; i++)
        *o++ = lower(s[i]);
    *o = '\0';
    bool http_like = strcmp(out, "http") == 0 || strcmp(out, "ws") == 0;
    bool https_like = strcmp(out, "https") == 0 || strcmp(out, "wss") == 0;
    if ((port == 80 && http_like) || (port == 443 && https_like))
        port = -1;
    memcpy(o, "://", 3);
    o += 3;
    for (size_t i = 0; i < host_len; i++)
        *o++ = lower(host[i]);
    if (port >= 0)
        o += sprintf(o, ":%ld", port);
    *o = '\0';
    return 0;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

origins *origins_parse(const char *list, char *err, size_t errlen)
{
    origins *o = xcalloc(1, sizeof(*o));
    size_t described_len = 0;
    const char *p = list;
    for (size_t index = 1;; index++) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p;
        while (b < end && is_blank(*b))
            b++;
        const char *e = end;
        while (e > b && is_blank(e[-1]))
            e--;
        size_t len = (size_t)(e - b);
        char why[160];
        char entry[ORIGIN_MAX];
        if (len == 0) {
            if (comma == NULL && index == 1)
                snprintf(err, errlen, "no origin given; name at least one, or leave the "
                                      "option out to allow any origin");
            else
                snprintf(err, errlen, "origin %zu of the list is empty; separate origins "
                                      "with single commas", index);
            goto fail;
        }
        if ((len == 4 && memcmp(b, "null", 4) == 0) || (len == 1 && *b == '*')) {
            snprintf(err, errlen, "\"%.*s\" cannot be allowed: %s", (int)len, b,
                     *b == '*' ? "leave the option out to allow any origin"
                               : "it is the origin of sandboxed pages and local files, "
                                 "which any page can take on");
            goto fail;
        }
        if (origin_serialize(b, len, entry, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "\"%.*s\" is not an origin: %s", (int)UTIL_MIN(len, 100),
                     b, why);
            goto fail;
        }
        o->entries = xrealloc(o->entries, (o->n + 1) * sizeof(*o->entries));
        o->entries[o->n++] = xstrdup(entry);
        size_t add = strlen(entry);
        o->described = xrealloc(o->described, described_len + add + 2);
        if (described_len > 0)
            o->described[described_len++] = ',';
        memcpy(o->described + described_len, entry, add + 1);
        described_len += add;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return o;
fail:
    origins_free(o);
    return NULL;
}

bool origins_allow(const origins *o, const char *header)
{
    char origin[ORIGIN_MAX];
    char why[160];
    if (origin_serialize(header, strlen(header), origin, why, sizeof(why)) != 0)
        return false;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->entries[i], origin) == 0)
            return true;
    return false;
}

bool origins_same(const char *header, bool tls, const char *host)
{
    char origin[ORIGIN_MAX], own[ORIGIN_MAX];
    char why[160];
    if (host == NULL || strlen(host) > ORIGIN_MAX - 16)
        return false;
    char url[ORIGIN_MAX];
    int n = snprintf(url, sizeof(url), "%s://%s", tls ? "https" : "http", host);
    return n > 0 && (size_t)n < sizeof(url) &&
           origin_serialize(url, (size_t)n, own, why, sizeof(why)) == 0 &&
           origin_serialize(header, strlen(header), origin, why, sizeof(why)) == 0 &&
           strcmp(origin, own) == 0;
}

const char *origins_describe(const origins *o) { return o->described; }

void origins_free(origins *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->n; i++)
        free(o->entries[i]);
    free(o->entries);
    free(o->described);
    free(o);
}
