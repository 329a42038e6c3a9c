/* nats_proto: the NATS text protocol codec (see nats_proto.h). The parser
 * keeps a control line that arrives in pieces in its own buffer, and a
 * payload that arrives in pieces in another; when a whole operation is in
 * the fed data (the usual case under load) it is handed over in place,
 * without a copy. */
#include "bench/nats_proto.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

enum parser_state { P_LINE, P_PAYLOAD, P_FAILED };

struct nats_parser {
    size_t max_control, max_payload;
    enum parser_state st;
    char *line;              /* a control line that came in pieces */
    size_t line_len, line_cap;
    struct nats_event msg;   /* P_PAYLOAD: the MSG whose payload is awaited */
    uint8_t *pay;            /* its payload and CRLF so far */
    size_t pay_len, pay_need;
    char err[200];
};

nats_parser *nats_parser_new(size_t max_control, size_t max_payload)
{
    nats_parser *p = xcalloc(1, sizeof(*p));
    p->max_control = max_control ? max_control : NATS_MAX_CONTROL;
    p->max_payload = max_payload;
    return p;
}

void nats_parser_free(nats_parser *p)
{
    if (p == NULL)
        return;
    free(p->line);
    free(p->pay);
    free(p);
}

const char *nats_parser_error(const nats_parser *p)
{
    return p->err;
}

/* Writes at most 40 bytes of s as printable text, for error messages. */
static void excerpt(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && i < 40 && n + 1 < cap; i++)
        out[n++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    out[n] = '\0';
    if (len > 40 && n + 4 < cap)
        strcpy(out + n, "...");
}

static int fail(nats_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(nats_parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    p->st = P_FAILED;
    return -1;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits line (len bytes, no CRLF) at blanks into at most cap words.
 * Returns how many there are, or cap + 1 when there are more. */
static size_t split_words(const char *line, size_t len, const char **w, size_t *wl, size_t cap)
{
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && is_blank(line[i]))
            i++;
        if (i == len)
            break;
        if (n == cap)
            return cap + 1;
        w[n] = line + i;
        while (i < len && !is_blank(line[i]))
            i++;
        wl[n] = (size_t)(line + i - w[n]);
        n++;
    }
    return n;
}

/* Decimal digits only, no overflow of uint64_t. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* The rest of a line after its operation word and the blanks behind it. */
static void rest_of_line(const char *line, size_t len, size_t op_len, const char **arg,
                         size_t *arg_len)
{
    size_t i = op_len;
    while (i < len && is_blank(line[i]))
        i++;
    size_t end = len;
    while (end > i && is_blank(line[end - 1]))
        end--;
    *arg = line + i;
    *arg_len = end - i;
}

/* Parses one control line (without its CRLF) into ev. Returns 0 for an
 * operation complete in itself, 1 for a MSG whose payload follows (its size
 * in ev->payload_len), -1 on malformed input. */
static int parse_line(nats_parser *p, const char *line, size_t len, struct nats_event *ev)
{
    char ex[48];
    size_t op_len = 0;
    while (op_len < len && !is_blank(line[op_len]))
        op_len++;
    memset(ev, 0, sizeof(*ev));
#define IS_OP(name) (op_len == sizeof(name) - 1 && strncasecmp(line, name, op_len) == 0)
    if (IS_OP("MSG")) {
        const char *w[4];
        size_t wl[4];
        size_t n = split_words(line + op_len, len - op_len, w, wl, 4);
        uint64_t size;
        if (n < 3 || n > 4 || parse_u64(w[1], wl[1], &ev->sid) != 0 ||
            parse_u64(w[n - 1], wl[n - 1], &size) != 0) {
            excerpt(line, len, ex, sizeof(ex));
            return fail(p, "malformed MSG line '%s': expected MSG <subject> <sid> [reply-to] "
                           "<size>", ex);
        }
        if (size > p->max_payload)
            return fail(p, "MSG payload of %llu bytes is over the limit of %zu",
                        (unsigned long long)size, p->max_payload);
        ev->op = NATS_OP_MSG;
        ev->subject = w[0];
        ev->subject_len = wl[0];
        if (n == 4) {
            ev->reply = w[2];
            ev->reply_len = wl[2];
        }
        ev->payload_len = (size_t)size;
        return 1;
    }
    if (IS_OP("INFO")) {
        ev->op = NATS_OP_INFO;
        rest_of_line(line, len, op_len, &ev->arg, &ev->arg_len);
        if (ev->arg_len == 0)
            return fail(p, "INFO without its JSON object");
        return 0;
    }
    if (IS_OP("-ERR")) {
        ev->op = NATS_OP_ERR;
        rest_of_line(line, len, op_len, &ev->arg, &ev->arg_len);
        if (ev->arg_len >= 2 && ev->arg[0] == '\'' && ev->arg[ev->arg_len - 1] == '\'') {
            ev->arg++;
            ev->arg_len -= 2;
        }
        return 0;
    }
    if (IS_OP("PING") || IS_OP("PONG") || IS_OP("+OK")) {
        ev->op = IS_OP("PING") ? NATS_OP_PING : IS_OP("PONG") ? NATS_OP_PONG : NATS_OP_OK;
        const char *arg;
        size_t arg_len;
        rest_of_line(line, len, op_len, &arg, &arg_len);
        if (arg_len != 0) {
            excerpt(line, len, ex, sizeof(ex));
            return fail(p, "unexpected text after the operation in '%s'", ex);
        }
        return 0;
    }
#undef IS_OP
    excerpt(line, len, ex, sizeof(ex));
    return fail(p, "unknown operation in '%s' (a NATS server sends INFO, MSG, PING, PONG, "
                   "+OK or -ERR)", ex);
}

static void line_append(nats_parser *p, const uint8_t *data, size_t len)
{
    if (p->line_len + len > p->line_cap) {
        p->line_cap = UTIL_MAX(p->line_len + len, UTIL_MAX(p->line_cap * 2, (size_t)256));
        p->line = xrealloc(p->line, p->line_cap);
    }
    memcpy(p->line + p->line_len, data, len);
    p->line_len += len;
}

static int line_too_long(nats_parser *p)
{
    return fail(p, "control line longer than %zu bytes without its CRLF", p->max_control);
}

static int bad_payload_end(nats_parser *p, size_t size)
{
    return fail(p, "MSG payload of %zu bytes not followed by CRLF (wrong size in the MSG "
                   "line?)", size);
}

/* Moves the pointers of ev from [from, from + len) to the same offsets in to. */
static void rebase(struct nats_event *ev, const char *from, const char *to)
{
    ev->subject = to + (ev->subject - from);
    if (ev->reply != NULL)
        ev->reply = to + (ev->reply - from);
}

int nats_parser_feed(nats_parser *p, const uint8_t *data, size_t len, nats_event_fn fn,
                     void *ud)
{
    size_t pos = 0;
    if (p->st == P_FAILED)
        return -1;
    while (pos < len) {
        if (p->st == P_PAYLOAD) {
            size_t take = UTIL_MIN(p->pay_need - p->pay_len, len - pos);
            memcpy(p->pay + p->pay_len, data + pos, take);
            p->pay_len += take;
            pos += take;
            if (p->pay_len < p->pay_need)
                break;
            size_t size = p->pay_need - 2;
            if (p->pay[size] != '\r' || p->pay[size + 1] != '\n')
                return bad_payload_end(p, size);
            p->msg.payload = p->pay;
            p->msg.payload_len = size;
            p->st = P_LINE;
            p->line_len = 0;
            if (fn(ud, &p->msg) != 0)
                return 0;
            continue;
        }
        const uint8_t *nl = memchr(data + pos, '\n', len - pos);
        size_t chunk = nl != NULL ? (size_t)(nl - (data + pos)) + 1 : len - pos;
        if (p->line_len + chunk > p->max_control + 2)
            return line_too_long(p);
        if (nl == NULL) {
            line_append(p, data + pos, chunk);
            break;
        }
        const char *line = (const char *)data + pos;
        bool buffered = p->line_len > 0;
        if (buffered) {
            line_append(p, data + pos, chunk);
            line = p->line;
        }
        size_t ll = buffered ? p->line_len : chunk;
        pos += chunk;
        if (ll < 2 || line[ll - 2] != '\r') {
            char ex[48];
            excerpt(line, ll - 1, ex, sizeof(ex));
            return fail(p, "line '%s' ended by LF alone; NATS ends lines with CRLF", ex);
        }
        if (memchr(line, '\r', ll - 2) != NULL) {
            char ex[48];
            excerpt(line, ll - 2, ex, sizeof(ex));
            return fail(p, "line '%s' holds a CR before its end; NATS ends lines with CRLF",
                        ex);
        }
        struct nats_event ev;
        int rc = parse_line(p, line, ll - 2, &ev);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            p->line_len = 0;
            if (fn(ud, &ev) != 0)
                return 0;
            continue;
        }
        size_t need = ev.payload_len + 2;
        if (len - pos >= need) {
            /* The whole payload is here: hand it over in place. */
            const uint8_t *pl = data + pos;
            if (pl[ev.payload_len] != '\r' || pl[ev.payload_len + 1] != '\n')
                return bad_payload_end(p, ev.payload_len);
            ev.payload = pl;
            pos += need;
            p->line_len = 0;
            if (fn(ud, &ev) != 0)
                return 0;
            continue;
        }
        if (!buffered) {
            /* The line lives in data, which the next feed replaces. */
            line_append(p, (const uint8_t *)line, ll);
            rebase(&ev, line, p->line);
        }
        p->msg = ev;
        p->pay = xrealloc(p->pay, need);
        p->pay_len = 0;
        p->pay_need = need;
        p->st = P_PAYLOAD;
    }
    return 0;
}

/* ---- builders ------------------------------------------------------------ */

static bool subject_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++)
        if (is_blank(*s) || *s == '\r' || *s == '\n')
            return false;
    return true;
}

static int fits(int n, size_t cap)
{
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int nats_build_connect(char *out, size_t cap, const char *name)
{
    for (const char *s = name; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
            return -1;
    /* snprintf needs room for its NUL, which is not part of the result. */
    return fits(snprintf(out, cap,
                         "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,"
                         "\"name\":\"%s\",\"lang\":\"c\",\"version\":\"dchat-bench\","
                         "\"protocol\":1,\"echo\":true,\"headers\":false}\r\n",
                         name),
                cap);
}

int nats_build_sub(char *out, size_t cap, const char *subject, uint64_t sid)
{
    if (!subject_ok(subject))
        return -1;
    return fits(snprintf(out, cap, "SUB %s %llu\r\n", subject, (unsigned long long)sid), cap);
}

int nats_build_pub(char *out, size_t cap, const char *subject, const char *reply,
                   const void *payload, size_t len)
{
    if (!subject_ok(subject) || (reply != NULL && !subject_ok(reply)))
        return -1;
    /* By hand, not with snprintf: the bench builds one for every message. */
    size_t sl = strlen(subject), rl = reply != NULL ? strlen(reply) + 1 : 0;
    size_t nd = (size_t)util_dec_len(len);
    size_t h = 4 + sl + rl + 1 + nd + 2; /* "PUB " subject [" " reply] " " len CRLF */
    if (h + len + 2 > cap || h + len + 2 > INT_MAX)
        return -1;
    char *o = out;
    memcpy(o, "PUB ", 4);
    o += 4;
    memcpy(o, subject, sl);
    o += sl;
    if (reply != NULL) {
        *o++ = ' ';
        memcpy(o, reply, rl - 1);
        o += rl - 1;
    }
    *o++ = ' ';
    o = util_put_dec(o, len);
    memcpy(o, "\r\n", 2);
    if (len)
        memcpy(out + h, payload, len);
    memcpy(out + h + len, "\r\n", 2);
    return (int)(h + len + 2);
}

size_t nats_msg_overhead(const char *subject, uint64_t sid, size_t payload_len)
{
    /* "MSG " subject " " sid " " size "\r\n" ... "\r\n" */
    return 4 + strlen(subject) + 1 + util_dec_len(sid) + 1 + util_dec_len(payload_len) + 2 + 2;
}
