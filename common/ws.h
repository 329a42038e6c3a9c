/* ws: the WebSocket protocol (RFC 6455) without I/O. Frames are parsed,
 * unmasked and reassembled here into whole messages, with every rule a
 * server must enforce, each as soon as the bytes it needs are in: masking
 * by role, control frame limits, fragmentation order and a message size
 * bound (1009) at the frame header, strict UTF-8 for text and close
 * reasons (1007). Outgoing frame headers are written by hand: a server
 * frame is unmasked, so one serialized frame serves every recipient.
 * ws_conn.c puts this on a socket. */
#ifndef DCHAT_WS_H
#define DCHAT_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/http_server.h"

#define WS_MAX_HEADER 14

#define WS_OP_CONT 0
#define WS_OP_TEXT 1
#define WS_OP_BINARY 2
#define WS_OP_CLOSE 8
#define WS_OP_PING 9
#define WS_OP_PONG 10

#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_NO_STATUS 1005
#define WS_CLOSE_ABNORMAL 1006
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_INTERNAL 1011
#define WS_CLOSE_SERVICE_RESTART 1012
#define WS_CLOSE_TRY_AGAIN 1013
#define WS_CLOSE_BAD_GATEWAY 1014

/* Whether a peer may send code in a close frame (RFC 6455 7.4 and the IANA
 * registry): 1000-1003, 1007-1014, 3000-4999. 1004-1006, 1015 and the rest
 * are refused with 1002. */
bool ws_close_code_valid(unsigned code);

/* Writes a FIN frame header for a payload of payload_len bytes into out
 * (WS_MAX_HEADER bytes of room) and returns its length: 2, 4 or 10 bytes,
 * plus 4 when mask (4 bytes) is given. The caller masks the payload. */
size_t ws_frame_header(uint8_t *out, unsigned opcode, uint64_t payload_len,
                       const uint8_t *mask);

/* XORs len bytes of data with mask, starting at mask offset 0. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4]);

/* base64(SHA-1(client_key + RFC 6455 GUID)) into out (29 bytes with NUL).
 * Returns 0 or -1. */
int ws_accept_key(const char *client_key, char out[29]);

/* Checks a server-side opening handshake: GET, Host, Upgrade, Connection,
 * Sec-WebSocket-Version and -Key (RFC 6455 4.2.1; Origin is the caller's to
 * judge). Returns 0 and sets *key (borrowed from req), or -1 with the
 * reason in err; *status is the HTTP status to answer with: 426 for a wrong
 * Sec-WebSocket-Version, 400 otherwise. */
int ws_check_upgrade(const http_request *req, const char **key, int *status,
                     char *err, size_t errlen);

/* Strict incremental UTF-8 validation. Start with state 0; feed chunks;
 * a sequence is valid when every call returned true and the final state
 * is 0 (no sequence cut off at the end). */
bool ws_utf8_feed(uint32_t *state, const uint8_t *p, size_t n);
bool ws_utf8_valid(const uint8_t *p, size_t n);

/* Whether all n bytes at p are ASCII (and so valid UTF-8): eight at a
 * time, the last eight overlapping the ones before when n is no multiple
 * of eight. Most chat text is ASCII; this is the cheap first look. */
static inline bool ws_ascii(const uint8_t *p, size_t n)
{
    uint64_t acc = 0, w;
    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8) {
            memcpy(&w, p + i, 8);
            acc |= w;
        }
        memcpy(&w, p + n - 8, 8);
        acc |= w;
    } else {
        for (size_t i = 0; i < n; i++)
            acc |= p[i];
    }
    return (acc & 0x8080808080808080ull) == 0;
}

/* A decoder for one direction of one connection. */
typedef struct ws_decoder ws_decoder;

/* Called per complete message (WS_OP_TEXT, WS_OP_BINARY) and per control
 * frame (WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE: for close, data is the raw
 * payload, already checked). data is valid during the call only. Return 0
 * to go on, non-zero to stop the decoder (ws_decoder_feed returns -1). */
typedef int (*ws_message_fn)(void *ud, unsigned opcode, const uint8_t *data,
                             size_t len);

/* masked: true on a server (client frames must be masked), false on a
 * client (server frames must not be). max_message bounds a whole message:
 * a data frame whose header announces more than that, or more than what
 * is left of it after the message's earlier fragments, is refused with
 * 1009 as soon as the header's length field is in, before its mask key
 * and payload. */
ws_decoder *ws_decoder_new(bool masked, size_t max_message);
void ws_decoder_free(ws_decoder *d);

/* Feeds received bytes in any chunking. Returns 0 (need more), -1 (the
 * callback asked to stop; it stays stopped), or a close code for a protocol
 * violation: 1002 (also for a 64-bit length with its top bit set), 1007,
 * 1009, or 1011 for a decoder bug; after an error the decoder takes no
 * more input. */
int ws_decoder_feed(ws_decoder *d, const uint8_t *data, size_t len,
                    ws_message_fn cb, void *ud);

/* Describes the last error for logs ("unmasked client frame" ...). */
const char *ws_decoder_error(const ws_decoder *d);

#endif
