/* message: see message.h. A newMessageFromClient of the usual shape is
 * read by a small scanner that builds no tree (jansson's tree cost a third
 * of the senders' node's CPU time); anything else, including every invalid
 * request, goes to jansson, so the rules and the error texts are jansson's
 * and the scanner only ever accepts what jansson would accept the same way.
 * Frames out are written by hand into one buffer with room reserved for the
 * WebSocket header, because they are written once per message per node and
 * must be cheap. */
#include "node/message.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/ws.h"

#define SERVER_HEADER_MAX 10 /* unmasked: 2, 4 or 10 bytes */

/* See message_set_frame_limit(): the default options' limit until set. */
static size_t frame_limit = 65536 + MESSAGE_FRAME_SLACK;

void message_request_free(struct client_request *req)
{
    json_decref(req->root);
    free(req->marks);
    free(req->chats);
    memset(req, 0, sizeof(*req));
}

static enum message_kind errorf(char *err, size_t errlen, const char *fmt, const char *arg)
{
    snprintf(err, errlen, fmt, arg);
    return MESSAGE_ERROR;
}

static enum message_kind parse_new(json_t *payload, struct client_request *req,
                                   char *err, size_t errlen)
{
    json_t *text = json_object_get(payload, "text");
    json_t *sender = json_object_get(payload, "sender");
    json_t *chat = json_object_get(payload, "chatId");
    if (!json_is_object(payload))
        return errorf(err, errlen, "%s", "newMessageFromClient needs a \"payload\" object");
    if (!json_is_string(text))
        return errorf(err, errlen, "%s", text ? "payload field \"text\" must be a string"
                                              : "payload field \"text\" is missing");
    if (!json_is_string(sender))
        return errorf(err, errlen, "%s", sender ? "payload field \"sender\" must be a string"
                                                : "payload field \"sender\" is missing");
    if (!json_is_integer(chat))
        return errorf(err, errlen, "%s", chat ? "payload field \"chatId\" must be an integer"
                                              : "payload field \"chatId\" is missing");
    if (json_string_length(sender) > MESSAGE_SENDER_MAX)
        return errorf(err, errlen, "%s", "payload field \"sender\" is longer than 256 bytes");
    req->msg.text = json_string_value(text);
    req->msg.text_len = (uint32_t)json_string_length(text);
    req->msg.sender = json_string_value(sender);
    req->msg.sender_len = (uint32_t)json_string_length(sender);
    req->msg.chat_id = json_integer_value(chat);
    return MESSAGE_NEW;
}

/* A node id as a clientSyncRequest key, in the one form the node writes
 * ids in: decimal digits without sign, space or leading zero. strtol would
 * also take " 7", "+7" and "07", so that one request could name an origin
 * several times over (found by tests/fuzz/fuzz_message_parse.c). */
static bool origin_key(const char *k, uint32_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; k[n] >= '0' && k[n] <= '9' && n <= 10; n++)
        v = v * 10 + (uint64_t)(k[n] - '0');
    if (n == 0 || k[n] != '\0' || k[0] == '0' || v > INT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static enum message_kind parse_sync(json_t *payload, struct client_request *req,
                                    char *err, size_t errlen)
{
    if (payload == NULL || (json_is_array(payload) && json_array_size(payload) == 0))
        return MESSAGE_SYNC;
    if (!json_is_object(payload))
        return errorf(err, errlen, "%s",
                      "clientSyncRequest payload must be an object of {\"<origin id>\": <highest id>}");
    size_t n = json_object_size(payload);
    if (n > MESSAGE_SYNC_MAX_MARKS)
        return errorf(err, errlen, "%s", "clientSyncRequest has more than 10000 origins");
    req->marks = xcalloc(n ? n : 1, sizeof(*req->marks));
    const char *key;
    json_t *v;
    json_object_foreach(payload, key, v) {
        uint32_t origin;
        if (!origin_key(key, &origin))
            return errorf(err, errlen, "clientSyncRequest origin \"%s\" is not a node id (1..2147483647)", key);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) >= MESSAGE_SEQ_LIMIT)
            return errorf(err, errlen, "clientSyncRequest mark for origin %s must be an integer from 0 to 999999999999", key);
        req->marks[req->nmarks].origin = origin;
        req->marks[req->nmarks].seq = (uint64_t)json_integer_value(v);
        req->nmarks++;
    }
    return MESSAGE_SYNC;
}

/* subscribe and unsubscribe: {"chatIds": [<integer>, ...]}, 1 to
 * MESSAGE_ROOMS_MAX of them (repeats allowed), or for subscribe
 * {"all": true}. */
static enum message_kind parse_rooms(const char *type, json_t *payload,
                                     struct client_request *req, char *err, size_t errlen)
{
    bool sub = strcmp(type, "subscribe") == 0;
    enum message_kind kind = sub ? MESSAGE_SUBSCRIBE : MESSAGE_UNSUBSCRIBE;
    if (!json_is_object(payload))
        return errorf(err, errlen, "%s needs a \"payload\" object with \"chatIds\": "
                      "[<chatId>, ...]", type);
    json_t *all = json_object_get(payload, "all");
    json_t *ids = json_object_get(payload, "chatIds");
    if (sub && all != NULL) {
        if (!json_is_true(all) || ids != NULL)
            return errorf(err, errlen, "%s", "subscribe takes either \"chatIds\": [...] or "
                          "\"all\": true (every chat again), not both");
        req->all_chats = true;
        return kind;
    }
    if (!json_is_array(ids))
        return errorf(err, errlen, ids ? "%s payload field \"chatIds\" must be an array of "
                                         "integers"
                                       : "%s payload field \"chatIds\" is missing", type);
    size_t n = json_array_size(ids);
    if (n == 0 || n > MESSAGE_ROOMS_MAX) {
        snprintf(err, errlen, "%s names %zu chats; name 1 to %d", type, n, MESSAGE_ROOMS_MAX);
        return MESSAGE_ERROR;
    }
    req->chats = xmalloc(n * sizeof(*req->chats));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v))
            return errorf(err, errlen, "%s payload field \"chatIds\" must hold only integers "
                          "(JSON integers, as chatId in newMessageFromClient)", type);
        req->chats[req->nchats++] = json_integer_value(v);
    }
    return kind;
}

/* --- the fast path -------------------------------------------------------
 * Each function returns 0, or -1 for "not the simple case": the caller then
 * parses with jansson, which accepts or explains. Decoded strings either
 * point into the input (no escapes) or into one scratch buffer sized for
 * the whole input up front, so pointers into it stay valid. */

struct scan {
    const char *p, *end;
    char *scratch;
    size_t used;
};

static char *scratch_buf;
static size_t scratch_cap;

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int expect(struct scan *s, char c)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != c)
        return -1;
    s->p++;
    return 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* The bytes of the 8 at p that are not printable ASCII other than '"' and
 * '\\', as their high bits (the usual tests for a byte below a value or
 * equal to one in a word). A borrow can mark a byte above the first such
 * byte too, so only whether any is marked, and which is the lowest, are
 * exact: on a little-endian machine that is the first such byte. */
static uint64_t word_specials(const char *p)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t w, q, b;
    memcpy(&w, p, 8);
    q = w ^ (ones * '"');
    b = w ^ (ones * '\\');
    return (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b) | w) & highs;
}

/* Whether none of the 8 bytes at p needs an escape. */
static int plain_word(const char *p)
{
    return word_specials(p) == 0;
}

/* The next JSON string, decoded; *plain (when asked) says whether it is
 * message_plain, as far as the scan saw without another pass: true only
 * for a string without escapes or bytes >= 0x80. */
static int scan_string(struct scan *s, const char **out, uint32_t *len, bool *plain)
{
    if (plain)
        *plain = false;
    if (expect(s, '"') != 0)
        return -1;
    const char *start = s->p;
    bool high = false; /* a byte >= 0x80 went by */
    /* A word at a time to the first byte that is not plain ASCII, which
     * the lowest marked byte is (callgrind put the byte loop alone at a
     * ninth of the senders' node); a UTF-8 byte is stepped over, anything
     * else, and the last bytes, go to the byte loop. */
    while (s->end - s->p >= 8) {
        uint64_t m = word_specials(s->p);
        if (m == 0) {
            s->p += 8;
            continue;
        }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        s->p += (unsigned)__builtin_ctzll(m) >> 3;
#else
        while ((unsigned char)*s->p >= 0x20 && (unsigned char)*s->p < 0x80 && *s->p != '"' &&
               *s->p != '\\')
            s->p++; /* the word has such a byte: m != 0 says so exactly */
#endif
        if ((unsigned char)*s->p < 0x80)
            break; /* '"', '\\' or a control byte */
        high = true;
        s->p++;
    }
    while (s->p < s->end && *s->p != '"' && *s->p != '\\') {
        if ((unsigned char)*s->p < 0x20)
            return -1;
        high |= (unsigned char)*s->p >= 0x80;
        s->p++;
    }
    if (s->p >= s->end)
        return -1;
    if (*s->p == '"') { /* no escapes: the input itself */
        *out = start;
        *len = (uint32_t)(s->p - start);
        s->p++;
        if (plain)
            *plain = !high;
        return 0;
    }
    char *o = s->scratch + s->used;
    char *first = o;
    memcpy(o, start, (size_t)(s->p - start));
    o += s->p - start;
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = (unsigned char)*s->p;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            *o++ = (char)c;
            s->p++;
            continue;
        }
        if (s->end - s->p < 2)
            return -1;
        char e = s->p[1];
        s->p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (s->end - s->p < 4 || hex4(s->p, &u) != 0)
                return -1;
            s->p += 4;
            if (u == 0 || (u >= 0xDC00 && u <= 0xDFFF))
                return -1; /* NUL, lone low surrogate: jansson's call */
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
                    hex4(s->p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                s->p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (u < 0x80) {
                *o++ = (char)u;
            } else if (u < 0x800) {
                *o++ = (char)(0xC0 | u >> 6);
                *o++ = (char)(0x80 | (u & 0x3F));
            } else if (u < 0x10000) {
                *o++ = (char)(0xE0 | u >> 12);
                *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
                *o++ = (char)(0x80 | (u & 0x3F));
            } else {
                *o++ = (char)(0xF0 | u >> 18);
                *o++ = (char)(0x80 | ((u >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
                *o++ = (char)(0x80 | (u & 0x3F));
            }
            break;
        }
        default:
            return -1;
        }
    }
    if (s->p >= s->end)
        return -1;
    s->p++;
    *out = first;
    *len = (uint32_t)(o - first);
    s->used += (size_t)(o - first);
    return 0;
}

static int scan_int(struct scan *s, int64_t *out)
{
    skip_ws(s);
    bool neg = s->p < s->end && *s->p == '-';
    if (neg)
        s->p++;
    if (s->p >= s->end || *s->p < '0' || *s->p > '9')
        return -1;
    if (*s->p == '0' && s->p + 1 < s->end && s->p[1] >= '0' && s->p[1] <= '9')
        return -1; /* leading zero: not JSON */
    uint64_t v = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        if (v > (uint64_t)(INT64_MAX - 9) / 10)
            return -1; /* near the int64 edge: let jansson judge */
        v = v * 10 + (uint64_t)(*s->p++ - '0');
    }
    if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E'))
        return -1; /* a real, not an integer */
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* A name the scanner looks for, with its quotes, as clients write it. */
struct name {
    const char *quoted;
    uint8_t len;
};
#define NAME(s) { "\"" s "\"", (uint8_t)(sizeof(s) + 1) }

/* Which of the n names the next JSON string is: its index, -1 for another
 * string, -2 for no string. A name written as itself is matched in place
 * (callgrind: decoding each key and value was a tenth of the senders'
 * node); any other spelling ("t\u0065xt") is decoded and compared. */
static int scan_name(struct scan *s, const struct name *names, int n)
{
    skip_ws(s);
    size_t left = (size_t)(s->end - s->p);
    for (int i = 0; i < n; i++) {
        if (left >= names[i].len && memcmp(s->p, names[i].quoted, names[i].len) == 0) {
            s->p += names[i].len;
            return i;
        }
    }
    const char *k;
    uint32_t klen;
    if (scan_string(s, &k, &klen, NULL) != 0)
        return -2;
    for (int i = 0; i < n; i++) {
        if (klen + 2 == names[i].len && memcmp(k, names[i].quoted + 1, klen) == 0)
            return i;
    }
    return -1;
}

/* {"type":"newMessageFromClient","payload":{"text":..,"sender":..,"chatId":..}}
 * with the keys in any order, each once, and nothing else. */
static int scan_new_message(const char *data, size_t len, struct chat_message *m)
{
    enum { TYPE, PAYLOAD };
    enum { TEXT, SENDER, CHAT };
    static const struct name top[] = { NAME("type"), NAME("payload") };
    static const struct name fields[] = { NAME("text"), NAME("sender"), NAME("chatId") };
    static const struct name new_message[] = { NAME("newMessageFromClient") };
    if (scratch_cap < len) {
        free(scratch_buf);
        scratch_cap = UTIL_MAX(len, (size_t)4096);
        scratch_buf = xmalloc(scratch_cap);
    }
    struct scan s = { data, data + len, scratch_buf, 0 };
    bool type = false, payload = false, text = false, sender = false, chat = false;
    bool text_plain = false, sender_plain = false;

    if (expect(&s, '{') != 0)
        return -1;
    do {
        int key = scan_name(&s, top, 2);
        if (key < 0 || expect(&s, ':') != 0)
            return -1;
        if (key == TYPE && !type) {
            if (scan_name(&s, new_message, 1) != 0)
                return -1;
            type = true;
        } else if (key == PAYLOAD && !payload) {
            if (expect(&s, '{') != 0)
                return -1;
            do {
                int field = scan_name(&s, fields, 3);
                if (field < 0 || expect(&s, ':') != 0)
                    return -1;
                if (field == TEXT && !text) {
                    if (scan_string(&s, &m->text, &m->text_len, &text_plain) != 0)
                        return -1;
                    text = true;
                } else if (field == SENDER && !sender) {
                    if (scan_string(&s, &m->sender, &m->sender_len, &sender_plain) != 0 ||
                        m->sender_len > MESSAGE_SENDER_MAX)
                        return -1;
                    sender = true;
                } else if (field == CHAT && !chat) {
                    if (scan_int(&s, &m->chat_id) != 0)
                        return -1;
                    chat = true;
                } else {
                    return -1;
                }
                skip_ws(&s);
            } while (s.p < s.end && *s.p == ',' && s.p++);
            if (expect(&s, '}') != 0)
                return -1;
            payload = true;
        } else {
            return -1;
        }
        skip_ws(&s);
    } while (s.p < s.end && *s.p == ',' && s.p++);
    if (expect(&s, '}') != 0)
        return -1;
    skip_ws(&s);
    m->plain = text_plain && sender_plain;
    return s.p == s.end && type && payload && text && sender && chat ? 0 : -1;
}

/* The longest client frame of a message whose text and sender are empty:
 * its literals, the widest numbers, the quotes. */
static size_t bare_frame_max(void)
{
    static size_t n; /* the same value whoever computes it first */
    if (n == 0) {
        struct chat_message bare = { .chat_id = INT64_MIN, .sender = "", .text = "" };
        n = message_client_frame_max_len(&bare);
    }
    return n;
}

/* Whether m's client frame (from any node id up to INT32_MAX) fits limit
 * whatever its escapes: a byte escapes to at most 6 ("\u00XX"), so a
 * message far below the limit needs its escapes counted (a pass over its
 * text and sender) only when this says no. */
static bool frame_surely_fits(const struct chat_message *m, size_t limit)
{
    return bare_frame_max() + WS_MAX_HEADER + 6 * ((size_t)m->text_len + m->sender_len) <= limit;
}

/* The last check of a newMessageFromClient: its frame to clients must fit
 * the limit (escaping can make it several times the text's size); counted
 * exactly only near it (callgrind: the count was 4 % of the senders'
 * node). */
static enum message_kind check_frame(struct client_request *req, char *err, size_t errlen)
{
    if (frame_surely_fits(&req->msg, frame_limit))
        return MESSAGE_NEW;
    size_t need = message_client_frame_max_len(&req->msg);
    if (need <= frame_limit)
        return MESSAGE_NEW;
    snprintf(err, errlen, "message too large once encoded: %zu bytes, at most %zu", need,
             frame_limit);
    return MESSAGE_ERROR;
}

static enum message_kind parse_request(const char *data, size_t len,
                                       struct client_request *req, char *err,
                                       size_t errlen)
{
    memset(req, 0, sizeof(*req));
    /* DSatter ignored every text frame not starting with '{' (its client
     * sends "Client connected" first). */
    if (len == 0 || data[0] != '{')
        return MESSAGE_IGNORE;
    if (scan_new_message(data, len, &req->msg) == 0)
        return MESSAGE_NEW;
    memset(&req->msg, 0, sizeof(req->msg));
    json_error_t jerr;
    req->root = json_loadb(data, len, 0, &jerr);
    if (req->root == NULL) {
        snprintf(err, errlen, "malformed JSON at column %d: %s", jerr.column, jerr.text);
        return MESSAGE_ERROR;
    }
    if (!json_is_object(req->root))
        return errorf(err, errlen, "%s", "a request must be a JSON object");
    json_t *type = json_object_get(req->root, "type");
    if (!json_is_string(type))
        return errorf(err, errlen, "%s", type ? "field \"type\" must be a string"
                                              : "field \"type\" is missing");
    const char *t = json_string_value(type);
    json_t *payload = json_object_get(req->root, "payload");
    if (strcmp(t, "newMessageFromClient") == 0) {
        if (payload == NULL)
            return errorf(err, errlen, "%s", "newMessageFromClient needs a \"payload\" object");
        return parse_new(payload, req, err, errlen);
    }
    if (strcmp(t, "clientSyncRequest") == 0)
        return parse_sync(payload, req, err, errlen);
    if (strcmp(t, "subscribe") == 0 || strcmp(t, "unsubscribe") == 0)
        return parse_rooms(t, payload, req, err, errlen);
    char quoted[80];
    snprintf(quoted, sizeof(quoted), "%.64s", t);
    return errorf(err, errlen,
                  "unknown type \"%s\"; expected newMessageFromClient, clientSyncRequest, "
                  "subscribe or unsubscribe", quoted);
}

enum message_kind message_parse_request(const char *data, size_t len,
                                        struct client_request *req,
                                        char *err, size_t errlen)
{
    enum message_kind k = parse_request(data, len, req, err, errlen);
    return k == MESSAGE_NEW ? check_frame(req, err, errlen) : k;
}

/* --- writing numbers: every message frame has five, so no printf ---------- */

static char *put_dec_signed(char *o, int64_t v)
{
    if (v >= 0)
        return util_put_dec(o, (uint64_t)v);
    *o++ = '-';
    return util_put_dec(o, -(uint64_t)v);
}

static char *put_bytes(char *o, const char *s, size_t len)
{
    memcpy(o, s, len);
    return o + len;
}

#define PUT_LIT(o, s) put_bytes((o), (s), sizeof(s) - 1)

/* messageId: the origin's digits, then seq in 12 digits. */
static char *put_message_id(char *o, uint32_t origin, uint64_t seq)
{
    o = util_put_dec(o, origin);
    return util_put_dec_width(o, seq % MESSAGE_SEQ_LIMIT, 12);
}

int message_id_format(uint32_t origin, uint64_t seq, char *out)
{
    char *end = put_message_id(out, origin, seq);
    *end = '\0';
    return (int)(end - out);
}


/* The length of s's leading whole 8-byte words in which every byte is
 * printable ASCII other than '"' and '\\': bytes that go out as they are.
 * Most chat text is all such bytes, so the escaper and its length skip them
 * a word at a time and look at bytes one by one only from the first word
 * that needs it. The returned length is all of s when every byte is
 * plain and s has at least 8. */
static size_t plain_words_len(const char *s, size_t len)
{
    size_t i = 0;
    while (i + 8 <= len && plain_word(s + i))
        i += 8;
    /* the last bytes, as the word that ends the string (it overlaps) */
    if (i < len && i + 8 > len && len >= 8 && plain_word(s + len - 8))
        i = len;
    return i;
}

bool message_plain(const char *s, size_t len)
{
    /* the plain words at once, then byte by byte from the first other one */
    for (size_t i = plain_words_len(s, len); i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            return false;
    }
    return true;
}

size_t message_json_escape(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    *o++ = '"';
    size_t run = plain_words_len(s, len); /* copied with the next run */
    for (size_t i = run; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[7];
        if (c >= 0x20 && c != '"' && c != '\\') {
            /* U+2028 and U+2029 are valid JSON but break JavaScript. */
            if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
                ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9)) {
                memcpy(o, s + i - run, run);
                o += run;
                run = 0;
                memcpy(o, (unsigned char)s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
                o += 6;
                i += 2;
                continue;
            }
            run++;
            continue;
        }
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            ubuf[0] = '\\'; ubuf[1] = 'u'; ubuf[2] = '0'; ubuf[3] = '0';
            ubuf[4] = hex[c >> 4]; ubuf[5] = hex[c & 15]; ubuf[6] = '\0';
            esc = ubuf;
        }
        memcpy(o, s + i - run, run);
        o += run;
        run = 0;
        size_t el = strlen(esc);
        memcpy(o, esc, el);
        o += el;
    }
    memcpy(o, s + len - run, run);
    o += run;
    *o++ = '"';
    return (size_t)(o - out);
}

/* What message_json_escape adds to a byte besides itself: 1 for the two-
 * character escapes, 5 for \u00XX. (U+2028 and U+2029 add 3 per 3 bytes;
 * they start with 0xE2, which is checked apart.) */
static const uint8_t escape_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* \b \t \n \f \r */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* " */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* \\ */
};

size_t message_json_escaped_len(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = len + 2;
    for (size_t i = plain_words_len(s, len); i < len; i++) {
        n += escape_extra[u[i]];
        if (u[i] == 0xE2 && i + 2 < len && u[i + 1] == 0x80 &&
            (u[i + 2] == 0xA8 || u[i + 2] == 0xA9)) {
            n += 3;
            i += 2;
        }
    }
    return n;
}

static unsigned dec_len_signed(int64_t v)
{
    return v < 0 ? 1 + util_dec_len(-(uint64_t)v) : util_dec_len((uint64_t)v);
}

#define LIT_LEN(s) (sizeof(s) - 1)

/* A message object is these literals around its values; the writer and
 * message_object_len both use them, so the length is exact. */
#define OBJ_ORIGIN "{\"nodeId\":"
#define OBJ_SEQ ",\"id\":"
#define OBJ_ID ",\"messageId\":\""
#define OBJ_TEXT "\",\"text\":"
#define OBJ_SENDER ",\"sender\":"
#define OBJ_CHAT ",\"chatId\":"
#define OBJ_TIME ",\"dateTime\":\""
#define OBJ_END "\"}"
#define OBJ_LITERALS                                                                  \
    (LIT_LEN(OBJ_ORIGIN) + LIT_LEN(OBJ_SEQ) + LIT_LEN(OBJ_ID) + LIT_LEN(OBJ_TEXT) +  \
     LIT_LEN(OBJ_SENDER) + LIT_LEN(OBJ_CHAT) + LIT_LEN(OBJ_TIME) + LIT_LEN(OBJ_END))

/* newMessagesForClient around one object */
#define CLIENT_HEAD "{\"type\":\"newMessagesForClient\",\"source\":"
#define CLIENT_PAYLOAD ",\"payload\":["
#define CLIENT_END "]}"

/* The escaped lengths of a message's text and sender (quotes included),
 * counted once for both the length and the writing of its frame. */
struct escaped {
    size_t text, sender;
};

static struct escaped escaped_of(const struct chat_message *m)
{
    return (struct escaped){ message_json_escaped_len(m->text, m->text_len),
                             message_json_escaped_len(m->sender, m->sender_len) };
}

static size_t object_len(const struct chat_message *m, struct escaped e)
{
    /* messageId: the origin's digits, then seq in 12 digits */
    return OBJ_LITERALS + 2 * (size_t)util_dec_len(m->origin) + util_dec_len(m->seq) + 12 +
           e.text + e.sender + dec_len_signed(m->chat_id) + UTIL_ISO8601_LEN;
}

size_t message_object_len(const struct chat_message *m)
{
    return object_len(m, escaped_of(m));
}

/* s (len bytes) as a JSON string into out, esc being its escaped length
 * or 0 when not counted: with nothing to escape (esc is len + 2, since
 * every escape lengthens) a copy between quotes, with no second look at
 * the bytes. */
static size_t escape_known(char *out, const char *s, size_t len, size_t esc)
{
    if (esc != len + 2)
        return message_json_escape(out, s, len);
    out[0] = '"';
    memcpy(out + 1, s, len);
    out[len + 1] = '"';
    return len + 2;
}

/* message_object_write, with the escaped lengths when known (0 if not). */
static size_t object_write(char *o, const struct chat_message *m, struct escaped e)
{
    char *start = o;
    o = PUT_LIT(o, OBJ_ORIGIN);
    o = util_put_dec(o, m->origin);
    o = PUT_LIT(o, OBJ_SEQ);
    o = util_put_dec(o, m->seq);
    o = PUT_LIT(o, OBJ_ID);
    o = put_message_id(o, m->origin, m->seq);
    o = PUT_LIT(o, OBJ_TEXT);
    o += escape_known(o, m->text, m->text_len, e.text);
    o = PUT_LIT(o, OBJ_SENDER);
    o += escape_known(o, m->sender, m->sender_len, e.sender);
    o = PUT_LIT(o, OBJ_CHAT);
    o = put_dec_signed(o, m->chat_id);
    o = PUT_LIT(o, OBJ_TIME);
    /* Straight into the frame, not through a copy on the stack; its NUL
     * lands where OBJ_END goes. */
    o += util_format_iso8601(m->time_ms, o);
    o = PUT_LIT(o, OBJ_END);
    *o = '\0'; /* the contract (message.h); callers write over it */
    return (size_t)(o - start);
}

size_t message_object_write(char *o, const struct chat_message *m)
{
    return object_write(o, m, (struct escaped){ 0, 0 });
}

/* Puts the frame header in front of the JSON written at b->data + at,
 * moving the JSON only when its header is not `at` bytes long. */
static msgbuf *finish_frame_at(msgbuf *b, size_t at, size_t json_len)
{
    uint8_t head[WS_MAX_HEADER];
    size_t h = ws_frame_header(head, WS_OP_TEXT, json_len, NULL);
    if (h != at)
        memmove(b->data + h, b->data + at, json_len);
    memcpy(b->data, head, h);
    b->len = (uint32_t)(h + json_len);
    return b;
}

/* The same for JSON written at SERVER_HEADER_MAX, its length not known
 * beforehand. */
static msgbuf *finish_frame(msgbuf *b, size_t json_len)
{
    return finish_frame_at(b, SERVER_HEADER_MAX, json_len);
}

static size_t server_header_len(size_t payload_len)
{
    return payload_len < 126 ? 2 : payload_len <= 0xffff ? 4 : 10;
}

static size_t client_json_len(uint32_t source, const struct chat_message *m, struct escaped e)
{
    return LIT_LEN(CLIENT_HEAD) + util_dec_len(source) + LIT_LEN(CLIENT_PAYLOAD) +
           object_len(m, e) + LIT_LEN(CLIENT_END);
}

size_t message_client_frame_len(uint32_t source, const struct chat_message *m)
{
    size_t json = client_json_len(source, m, escaped_of(m));
    return server_header_len(json) + json;
}

msgbuf *message_client_frame(uint32_t source, const struct chat_message *m)
{
    /* The length is known exactly, so the JSON goes right after the
     * header it will have: no move of the whole frame, which perf showed
     * on the senders' node. */
    /* A plain message's strings go out as they are, between quotes: no
     * count of escapes (callgrind: 150-210 instructions a message). */
    struct escaped e = m->plain ? (struct escaped){ (size_t)m->text_len + 2,
                                                    (size_t)m->sender_len + 2 }
                                : escaped_of(m);
    size_t json = client_json_len(source, m, e);
    size_t at = server_header_len(json);
    msgbuf *b = msgbuf_new(at + json);
    char *o = b->data + at;
    char *start = o;
    o = PUT_LIT(o, CLIENT_HEAD);
    o = util_put_dec(o, source);
    o = PUT_LIT(o, CLIENT_PAYLOAD);
    o += object_write(o, m, e);
    memcpy(o, CLIENT_END, LIT_LEN(CLIENT_END));
    o += LIT_LEN(CLIENT_END);
    return finish_frame_at(b, at, (size_t)(o - start));
}

/* --- the client frame limit ---------------------------------------------- */

size_t message_frame_limit_of(size_t max_message, size_t max_queue)
{
    return UTIL_MIN(max_message + MESSAGE_FRAME_SLACK, max_queue / 2);
}

void message_set_frame_limit(size_t limit) { frame_limit = limit; }

size_t message_frame_limit(void) { return frame_limit; }

size_t message_client_frame_max_len(const struct chat_message *m)
{
    struct chat_message longest = *m;
    longest.origin = INT32_MAX;
    longest.seq = MESSAGE_SEQ_LIMIT - 1;
    return message_client_frame_len(INT32_MAX, &longest);
}

bool message_withhold_if_large(struct chat_message *m, uint32_t source, size_t limit)
{
    /* Every peer message and catch-up row comes here before its frame is
     * made, which counts the escapes again: count them only near the limit. */
    if (frame_surely_fits(m, limit) || message_client_frame_len(source, m) <= limit)
        return false;
    m->text = MESSAGE_WITHHELD_TEXT;
    m->text_len = (uint32_t)LIT_LEN(MESSAGE_WITHHELD_TEXT);
    m->plain = false; /* the sender is still to be looked at */
    return true;
}

msgbuf *message_error_frame(uint32_t source, const char *error)
{
    size_t elen = strlen(error);
    msgbuf *b = msgbuf_new(SERVER_HEADER_MAX + 96 + 6 * elen);
    char *o = b->data + SERVER_HEADER_MAX;
    char *start = o;
    o += sprintf(o, "{\"type\":\"error\",\"source\":%" PRIu32 ",\"error\":", source);
    o += message_json_escape(o, error, elen);
    *o++ = '}';
    return finish_frame(b, (size_t)(o - start));
}

msgbuf *message_sync_reply_frame(uint32_t source, const struct chat_message *m,
                                 size_t n, bool truncated)
{
    return message_sync_reply_frame_next(source, m, n, truncated, NULL, 0);
}

msgbuf *message_sync_reply_frame_next(uint32_t source, const struct chat_message *m,
                                      size_t n, bool truncated,
                                      const struct sync_mark *next, size_t nnext)
{
    return message_sync_reply_frame_trimmed(source, m, n, truncated, NULL, 0, next, nnext);
}

/* ,"key":{"<origin>":<seq>,...} */
static char *put_marks(char *o, const char *key, const struct sync_mark *marks, size_t n)
{
    o += sprintf(o, ",\"%s\":{", key);
    for (size_t i = 0; i < n; i++)
        o += sprintf(o, "%s\"%" PRIu32 "\":%" PRIu64, i ? "," : "", marks[i].origin,
                     marks[i].seq);
    *o++ = '}';
    return o;
}

msgbuf *message_sync_reply_frame_trimmed(uint32_t source, const struct chat_message *m,
                                         size_t n, bool truncated,
                                         const struct sync_mark *trimmed, size_t ntrimmed,
                                         const struct sync_mark *next, size_t nnext)
{
    size_t cap = SERVER_HEADER_MAX + MESSAGE_REPLY_ENVELOPE + 1 +
                 (nnext + ntrimmed) * MESSAGE_NEXT_MARK_LEN + 32;
    for (size_t i = 0; i < n; i++)
        cap += message_object_len(&m[i]) + 1;
    msgbuf *b = msgbuf_new(cap);
    char *o = b->data + SERVER_HEADER_MAX;
    char *start = o;
    o += sprintf(o, "{\"type\":\"clientSyncReply\",\"source\":%" PRIu32 ",\"payload\":[", source);
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        o += message_object_write(o, &m[i]);
    }
    o += sprintf(o, "],\"truncated\":%s", truncated ? "true" : "false");
    if (ntrimmed > 0)
        o = put_marks(o, "trimmed", trimmed, ntrimmed);
    if (next != NULL)
        o = put_marks(o, "next", next, nnext);
    *o++ = '}';
    return finish_frame(b, (size_t)(o - start));
}

msgbuf *message_rooms_reply_frame(uint32_t source, const char *type, bool all,
                                  const int64_t *chats, size_t n)
{
    msgbuf *b = msgbuf_new(SERVER_HEADER_MAX + 96 + strlen(type) + 21 * n);
    char *o = b->data + SERVER_HEADER_MAX;
    char *start = o;
    o += sprintf(o, "{\"type\":\"%s\",\"source\":%" PRIu32 ",\"payload\":{\"all\":%s,"
                 "\"chatIds\":[", type, source, all ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        o = put_dec_signed(o, chats[i]);
    }
    o = PUT_LIT(o, "]}}");
    return finish_frame(b, (size_t)(o - start));
}
