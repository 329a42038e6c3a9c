/* ws: see ws.h. The decoder walks the stream frame by frame: each header
 * up to its length's last byte, judged at once (masking by role, reserved
 * bits, opcodes, fragmentation order, message size), then the mask key,
 * then the payload, unmasked eight bytes at a time: a message that is one
 * frame, whole in one feed, into one buffer per thread, anything else
 * straight into the connection's reassembly buffer (or the control
 * frame's); UTF-8 is checked on the payload. An unmasked frame (a client
 * reading a server) that arrives whole and unfragmented is passed up from
 * the input itself. */
#include "common/ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

size_t ws_frame_header(uint8_t *out, unsigned opcode, uint64_t payload_len,
                       const uint8_t *mask)
{
    size_t n;
    uint8_t m = mask ? 0x80 : 0;
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (payload_len < 126) {
        out[1] = (uint8_t)(m | payload_len);
        n = 2;
    } else if (payload_len <= 0xffff) {
        out[1] = m | 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/* dst = src ^ the mask key, whose phase is the payload offset off, eight
 * bytes at a time; dst may be src. */
static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], uint64_t off)
{
    uint8_t k[8];
    for (int i = 0; i < 8; i++)
        k[i] = key[(off + (uint64_t)i) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 7];
}

void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4])
{
    unmask(data, data, len, mask, 0);
}

int ws_accept_key(const char *client_key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    char buf[128];
    size_t klen = strlen(client_key);
    if (klen + sizeof(guid) > sizeof(buf))
        return -1;
    memcpy(buf, client_key, klen);
    memcpy(buf + klen, guid, sizeof(guid) - 1);
    if (SHA1((unsigned char *)buf, klen + sizeof(guid) - 1, digest) == NULL)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH) == 28 ? 0 : -1;
}

/* True when the comma-separated header value contains token (any case). */
static bool header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0)
            return true;
    }
    return false;
}

int ws_check_upgrade(const http_request *req, const char **key, int *status,
                     char *err, size_t errlen)
{
    const char *up = http_request_header(req, "Upgrade");
    const char *conn = http_request_header(req, "Connection");
    const char *ver = http_request_header(req, "Sec-WebSocket-Version");
    const char *k = http_request_header(req, "Sec-WebSocket-Key");
    unsigned char raw[32];

    *status = 400;
    if (strcmp(req->method, "GET") != 0) {
        snprintf(err, errlen, "the WebSocket handshake must be a GET");
        return -1;
    }
    /* The HTTP server refuses HTTP/1.1 requests without one; an HTTP/1.0
     * request may lack it, a handshake may not (RFC 6455 4.1). */
    if (http_request_header(req, "Host") == NULL) {
        snprintf(err, errlen, "Host is missing; send Host: <host>[:<port>] (RFC 6455 4.1)");
        return -1;
    }
    if (up == NULL || !header_has_token(up, "websocket")) {
        snprintf(err, errlen, "Upgrade: websocket is missing");
        return -1;
    }
    if (conn == NULL || !header_has_token(conn, "upgrade")) {
        snprintf(err, errlen, "Connection: Upgrade is missing");
        return -1;
    }
    if (ver == NULL || strcmp(ver, "13") != 0) {
        *status = 426;
        snprintf(err, errlen, "Sec-WebSocket-Version must be 13");
        return -1;
    }
    /* 16 bytes are 22 base64 digits, the last carrying 2 bits (so one of
     * A, Q, g, w), then "==". */
    if (k == NULL || strlen(k) != 24 ||
        EVP_DecodeBlock(raw, (const unsigned char *)k, 24) != 18 || k[22] != '=' ||
        k[23] != '=' || strchr("AQgw", k[21]) == NULL || k[21] == '\0') {
        snprintf(err, errlen, "Sec-WebSocket-Key must be 16 bytes in base64");
        return -1;
    }
    *key = k;
    return 0;
}

/* --- UTF-8 ----------------------------------------------------------------
 * state: bits 0-1 continuation bytes still due; bits 8-15 and 16-23 the
 * range allowed for the next one (narrower than 80..BF right after E0, ED,
 * F0 and F4, which is what rules out overlongs, surrogates and > U+10FFFF). */

#define UTF8_STATE(need, lo, hi) ((uint32_t)(need) | ((uint32_t)(lo) << 8) | ((uint32_t)(hi) << 16))

bool ws_utf8_feed(uint32_t *state, const uint8_t *p, size_t n)
{
    uint32_t st = *state;
    size_t i = 0;
    while (i < n) {
        if (st == 0) {
            /* ASCII runs, eight bytes at a time. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i >= n)
                break;
            /* Fewer than eight left: when the last eight bytes are ASCII,
             * so are these (the window reaches back over bytes already
             * passed, whatever they were). */
            if (i + 8 > n && n >= 8 && ws_ascii(p + n - 8, 8))
                break;
            uint8_t c = p[i++];
            if (c < 0x80)
                continue;
            if (c >= 0xC2 && c <= 0xDF)
                st = UTF8_STATE(1, 0x80, 0xBF);
            else if (c == 0xE0)
                st = UTF8_STATE(2, 0xA0, 0xBF);
            else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
                st = UTF8_STATE(2, 0x80, 0xBF);
            else if (c == 0xED)
                st = UTF8_STATE(2, 0x80, 0x9F);
            else if (c == 0xF0)
                st = UTF8_STATE(3, 0x90, 0xBF);
            else if (c >= 0xF1 && c <= 0xF3)
                st = UTF8_STATE(3, 0x80, 0xBF);
            else if (c == 0xF4)
                st = UTF8_STATE(3, 0x80, 0x8F);
            else {
                *state = st;
                return false;
            }
        } else {
            uint8_t c = p[i++];
            uint32_t lo = (st >> 8) & 0xff, hi = (st >> 16) & 0xff;
            if (c < lo || c > hi) {
                *state = st;
                return false;
            }
            uint32_t need = (st & 3) - 1;
            st = need ? UTF8_STATE(need, 0x80, 0xBF) : 0;
        }
    }
    *state = st;
    return true;
}

bool ws_utf8_valid(const uint8_t *p, size_t n)
{
    if (ws_ascii(p, n))
        return true;
    uint32_t st = 0;
    return ws_utf8_feed(&st, p, n) && st == 0;
}

/* --- the decoder ---------------------------------------------------------- */

struct ws_decoder {
    bool masked;                 /* frames must be masked (server side) */
    size_t max_message;
    /* a frame's header, up to its length's last byte */
    uint8_t hdr[10];
    size_t hdr_got;
    /* the frame being received: its mask key, then its payload */
    bool in_frame;
    uint8_t opcode;
    bool fin;
    bool frame_masked;
    uint8_t mask[4];
    unsigned mask_got;
    uint64_t frame_len, frame_got;
    uint8_t ctrl[125];
    /* the message being reassembled (msg_opcode 0: none) */
    uint8_t msg_opcode;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    uint32_t utf8;
    int error;
    const char *error_text;
    bool stopped;                /* the callback asked to stop */
};

ws_decoder *ws_decoder_new(bool masked, size_t max_message)
{
    ws_decoder *d = xcalloc(1, sizeof(*d));
    d->masked = masked;
    d->max_message = max_message;
    return d;
}

void ws_decoder_free(ws_decoder *d)
{
    if (d == NULL)
        return;
    free(d->msg);
    free(d);
}

const char *ws_decoder_error(const ws_decoder *d)
{
    return d->error_text ? d->error_text : "no error";
}

static int fail(ws_decoder *d, int code, const char *text)
{
    d->error = code;
    d->error_text = text;
    return code;
}

static bool is_control(unsigned op) { return op >= 8; }

/* A frame header as read_header decoded it. */
struct frame_header {
    bool fin, mask;
    unsigned rsv, opcode;
    uint64_t payload_length;
};

/* A frame header is in (up to its length field): the checks that need only
 * the header, before its mask key or any of its payload is taken. */
static int frame_start(ws_decoder *d, const struct frame_header *h)
{
    if (h->rsv != 0)
        return fail(d, WS_CLOSE_PROTOCOL, "reserved bits set without an extension");
    if (h->mask != d->masked)
        return fail(d, WS_CLOSE_PROTOCOL, d->masked ? "unmasked client frame"
                                                    : "masked server frame");
    switch (h->opcode) {
    case WS_OP_CONT:
        if (d->msg_opcode == 0)
            return fail(d, WS_CLOSE_PROTOCOL, "continuation frame without a message");
        break;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (d->msg_opcode != 0)
            return fail(d, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
        break;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!h->fin)
            return fail(d, WS_CLOSE_PROTOCOL, "fragmented control frame");
        if (h->payload_length > 125)
            return fail(d, WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes");
        break;
    default:
        return fail(d, WS_CLOSE_PROTOCOL, "unknown opcode");
    }
    /* msg_len <= max_message holds, so the subtraction cannot wrap. */
    if (!is_control(h->opcode) && h->payload_length > d->max_message - d->msg_len)
        return fail(d, WS_CLOSE_TOO_BIG, "message larger than the limit");
    d->in_frame = true;
    d->opcode = h->opcode;
    d->fin = h->fin;
    d->frame_len = h->payload_length;
    d->frame_got = 0;
    if (h->opcode == WS_OP_TEXT || h->opcode == WS_OP_BINARY) {
        d->msg_opcode = h->opcode;
        d->msg_len = 0;
        d->utf8 = 0;
    }
    return 0;
}

/* Room for n more bytes at the end of the message being reassembled; the
 * caller writes them there and counts them in msg_len. */
static uint8_t *msg_reserve(ws_decoder *d, size_t n)
{
    if (d->msg_len + n > d->msg_cap) {
        d->msg_cap = UTIL_MAX(d->msg_len + n, d->msg_cap * 2);
        d->msg_cap = UTIL_MAX(d->msg_cap, (size_t)1024);
        d->msg = xrealloc(d->msg, d->msg_cap);
    }
    return d->msg + d->msg_len;
}

static void msg_append(ws_decoder *d, const uint8_t *p, size_t n)
{
    /* An empty fragment leaves d->msg NULL, and memcpy must not see it. */
    if (n == 0)
        return;
    memcpy(msg_reserve(d, n), p, n);
    d->msg_len += n;
}

bool ws_close_code_valid(unsigned code)
{
    /* The IANA registry of RFC 6455 11.7: 1000-1003 and 1007-1014 are
     * defined for the wire; 1004 is reserved, 1005, 1006 and 1015 are only
     * for reporting, never sent; 3000-3999 are registered by libraries and
     * 4000-4999 private. Anything else is not a code a peer may send. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static int check_close_payload(ws_decoder *d, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (n == 1)
        return fail(d, WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
    unsigned code = (unsigned)p[0] << 8 | p[1];
    if (!ws_close_code_valid(code))
        return fail(d, WS_CLOSE_PROTOCOL, "invalid close code");
    if (!ws_utf8_valid(p + 2, n - 2))
        return fail(d, WS_CLOSE_INVALID_DATA, "close reason is not valid UTF-8");
    return 0;
}

/* n bytes of the frame's payload, unmasked, at p (possibly the whole
 * frame). placed: they are already where they go, at the end of d->msg
 * (not yet counted in msg_len) or in d->ctrl, as a masked frame's are
 * unmasked straight there; otherwise p is the caller's input, and a
 * message that is this one frame, whole, is passed up from it without a
 * copy. */
static int frame_chunk(ws_decoder *d, const uint8_t *p, size_t n, bool placed,
                       ws_message_fn cb, void *ud)
{
    bool whole = d->frame_got == 0 && n == d->frame_len;

    if (is_control(d->opcode)) {
        if (n > 0 && !placed)
            memcpy(d->ctrl + d->frame_got, p, n);
    } else {
        /* between sequences, an all-ASCII chunk leaves the state as it is */
        if (d->msg_opcode == WS_OP_TEXT && !(d->utf8 == 0 && ws_ascii(p, n)) &&
            !ws_utf8_feed(&d->utf8, p, n))
            return fail(d, WS_CLOSE_INVALID_DATA, "text is not valid UTF-8");
        if (placed)
            d->msg_len += n;
        else if (!(whole && d->fin && d->msg_len == 0))
            msg_append(d, p, n);
    }
    d->frame_got += n;
    if (d->frame_got < d->frame_len)
        return 0;

    d->in_frame = false;
    if (is_control(d->opcode)) {
        size_t len = (size_t)d->frame_len;
        if (d->opcode == WS_OP_CLOSE) {
            int rc = check_close_payload(d, d->ctrl, len);
            if (rc != 0)
                return rc;
        }
        return cb(ud, d->opcode, d->ctrl, len) ? -1 : 0;
    }
    if (!d->fin)
        return 0;
    if (d->msg_opcode == WS_OP_TEXT && d->utf8 != 0)
        return fail(d, WS_CLOSE_INVALID_DATA, "text ends inside a UTF-8 sequence");
    unsigned op = d->msg_opcode;
    d->msg_opcode = 0;
    int stop;
    static const uint8_t empty[1];
    if (whole && d->msg_len == 0) /* not placed: the input itself */
        stop = cb(ud, op, n > 0 ? p : empty, n);
    else /* a message of empty fragments has no buffer: never pass NULL */
        stop = cb(ud, op, d->msg_len > 0 ? d->msg : empty, d->msg_len);
    d->msg_len = 0;
    /* Give back a large reassembly buffer once the big message is done. */
    if (d->msg_cap > 256 * 1024) {
        free(d->msg);
        d->msg = NULL;
        d->msg_cap = 0;
    }
    return stop ? -1 : 0;
}

/* Where a masked message that is one frame, whole in one feed (a client's
 * usual message), is unmasked and passed up from: one buffer per thread,
 * not one per connection, so that a client that sent something keeps no
 * buffer of its own. The callback gets it during the call only. */
static _Thread_local uint8_t *scratch;
static _Thread_local size_t scratch_cap;

static int whole_masked_message(ws_decoder *d, const uint8_t *p, size_t n, ws_message_fn cb,
                                void *ud)
{
    if (n > scratch_cap) {
        free(scratch);
        scratch_cap = UTIL_MAX(n, (size_t)4096);
        scratch = xmalloc(scratch_cap);
    }
    unmask(scratch, p, n, d->mask, 0);
    int rc = frame_chunk(d, scratch, n, false, cb, ud);
    if (scratch_cap > 256 * 1024) { /* do not keep a big one around */
        free(scratch);
        scratch = NULL;
        scratch_cap = 0;
    }
    return rc;
}

/* n bytes of the current frame's payload from the input at p: unmasked
 * into where they go when the frame is masked, handed on as they are when
 * not. */
static int payload(ws_decoder *d, const uint8_t *p, size_t n, ws_message_fn cb, void *ud)
{
    if (!d->frame_masked || n == 0)
        return frame_chunk(d, p, n, false, cb, ud);
    if (!is_control(d->opcode) && d->fin && d->msg_len == 0 && d->frame_got == 0 &&
        n == d->frame_len)
        return whole_masked_message(d, p, n, cb, ud);
    uint8_t *dst;
    if (is_control(d->opcode)) {
        dst = d->ctrl + d->frame_got; /* frame_start: at most 125 bytes */
    } else {
        dst = msg_reserve(d, n);
    }
    unmask(dst, p, n, d->mask, d->frame_got);
    return frame_chunk(d, dst, n, true, cb, ud);
}

/* --- frame headers ----------------------------------------------------------
 * Each header is read up to its length's last byte into d->hdr (all the
 * checks need; the mask key is not) and judged at once, so a header
 * announcing 2^62 bytes is refused before any of its payload is taken. */

/* How much of the header in d->hdr the checks need: 2 bytes until the
 * second is known, then up to the end of the length. */
static size_t header_checked_size(const ws_decoder *d)
{
    if (d->hdr_got < 2)
        return 2;
    unsigned len7 = d->hdr[1] & 0x7f;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

/* d->hdr holds a header up to its length: decode it, check it, start the
 * frame. */
static int read_header(ws_decoder *d)
{
    const uint8_t *h = d->hdr;
    struct frame_header fh = {
        .fin = (h[0] & 0x80) != 0,
        .rsv = (h[0] >> 4) & 7,
        .opcode = h[0] & 0x0f,
        .mask = (h[1] & 0x80) != 0,
    };
    unsigned len7 = h[1] & 0x7f;
    d->hdr_got = 0;
    if (len7 < 126) {
        fh.payload_length = len7;
    } else {
        size_t n = len7 == 126 ? 2 : 8;
        for (size_t i = 0; i < n; i++)
            fh.payload_length = fh.payload_length << 8 | h[2 + i];
        /* RFC 6455 5.2: the 64-bit form has its top bit clear, and the
         * shortest form is the one to use. */
        if (n == 8 && (fh.payload_length >> 63) != 0)
            return fail(d, WS_CLOSE_PROTOCOL, "frame length with the most significant bit set");
        if (fh.payload_length < (n == 2 ? 126u : 65536u))
            return fail(d, WS_CLOSE_PROTOCOL, "frame length not in its shortest form");
    }
    int rc = frame_start(d, &fh);
    if (rc != 0)
        return rc;
    d->frame_masked = fh.mask;
    d->mask_got = 0;
    return 0;
}

static int feed_frames(ws_decoder *d, const uint8_t *data, size_t len,
                       ws_message_fn cb, void *ud)
{
    if (d->error)
        return d->error;
    if (d->stopped)
        return -1;
    for (;;) {
        if (!d->in_frame) {
            if (len == 0)
                return 0;
            d->hdr[d->hdr_got++] = *data++;
            len--;
            if (d->hdr_got < header_checked_size(d))
                continue;
            int rc = read_header(d);
            if (rc != 0)
                return rc;
            continue;
        }
        if (d->frame_masked && d->mask_got < 4) {
            if (len == 0)
                return 0;
            size_t take = UTIL_MIN(len, (size_t)(4 - d->mask_got));
            memcpy(d->mask + d->mask_got, data, take);
            d->mask_got += (unsigned)take;
            data += take;
            len -= take;
            continue;
        }
        /* the payload; a frame of none completes without input */
        uint64_t left = d->frame_len - d->frame_got;
        if (left > 0 && len == 0)
            return 0;
        size_t take = (size_t)UTIL_MIN((uint64_t)len, left);
        int rc = payload(d, data, take, cb, ud);
        data += take;
        len -= take;
        if (rc == -1)
            d->stopped = true; /* what follows in the stream is not kept */
        if (rc != 0)
            return rc;
    }
}

int ws_decoder_feed(ws_decoder *d, const uint8_t *data, size_t len,
                    ws_message_fn cb, void *ud)
{
    return feed_frames(d, data, len, cb, ud);
}
