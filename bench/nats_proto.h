/* nats_proto: the NATS client protocol's text operations, as the bench
 * speaks them to nats-server (docs.nats.io, "Client Protocol"). A streaming
 * parser reads what a server sends (INFO, MSG, PING, PONG, +OK, -ERR) fed in
 * any chunking, as WebSocket frames cut the byte stream anywhere; builders
 * write what a client sends (CONNECT, SUB, PUB, PING, PONG). No NATS
 * library: this is the codec, bench/nats.c drives a connection with it. */
#ifndef DCHAT_BENCH_NATS_PROTO_H
#define DCHAT_BENCH_NATS_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* The largest control line (everything up to CRLF) the parser accepts by
 * default; INFO carries a JSON object that grows with the cluster. */
#define NATS_MAX_CONTROL (64 * 1024)

#define NATS_PING "PING\r\n"
#define NATS_PONG "PONG\r\n"

enum nats_op { NATS_OP_INFO, NATS_OP_MSG, NATS_OP_PING, NATS_OP_PONG, NATS_OP_OK, NATS_OP_ERR };

/* One server operation. Pointers point into the parser's buffer or into the
 * fed data and are valid only during the callback. */
struct nats_event {
    enum nats_op op;
    /* INFO: the JSON object; -ERR: the message without its quotes. */
    const char *arg;
    size_t arg_len;
    /* MSG only: */
    const char *subject;
    size_t subject_len;
    const char *reply;       /* NULL when the MSG has no reply subject */
    size_t reply_len;
    uint64_t sid;
    const uint8_t *payload;  /* may contain any bytes, CRLF included */
    size_t payload_len;
};

/* Called for every complete operation, in order. Return 0 to go on, or
 * anything else to stop the feed at once (the rest of the data is not
 * parsed; the parser must not be fed again). */
typedef int (*nats_event_fn)(void *ud, const struct nats_event *ev);

typedef struct nats_parser nats_parser;

/* A parser for one connection that refuses control lines over max_control
 * bytes (0: NATS_MAX_CONTROL) and MSG payloads over max_payload bytes. The
 * caller owns it and frees it with nats_parser_free. */
nats_parser *nats_parser_new(size_t max_control, size_t max_payload);
void nats_parser_free(nats_parser *p);

/* Parses len bytes of the server's stream, calling fn for each complete
 * operation; a partial one is kept for the next feed. Returns 0 when every
 * byte was consumed or fn stopped the feed, -1 on malformed input (an
 * unknown operation, a bad MSG line, a line or payload over the limits, a
 * payload not followed by CRLF): nats_parser_error says which, and the
 * parser refuses any further feed. */
int nats_parser_feed(nats_parser *p, const uint8_t *data, size_t len, nats_event_fn fn,
                     void *ud);

/* Why the last feed returned -1 ("" before that). Owned by the parser. */
const char *nats_parser_error(const nats_parser *p);

/* Builders: each writes one operation into out (cap bytes, not
 * NUL-terminated) and returns its length, or -1 when it does not fit or an
 * argument cannot be sent (a subject that is empty or holds whitespace). */

/* CONNECT {"verbose":false,"pedantic":false,...,"name":name}: no +OK for
 * every operation, no strict subject checks, our own messages echoed to our
 * subscriptions, no headers. name must be plain (letters, digits, "-_."). */
int nats_build_connect(char *out, size_t cap, const char *name);

/* SUB <subject> <sid> */
int nats_build_sub(char *out, size_t cap, const char *subject, uint64_t sid);

/* PUB <subject> [reply] <len>\r\n<payload>\r\n; reply may be NULL. */
int nats_build_pub(char *out, size_t cap, const char *subject, const char *reply,
                   const void *payload, size_t len);

/* The bytes of a MSG line and its CRLFs as a server delivers a payload of
 * payload_len bytes on subject to subscription sid, without reply subject:
 * what one delivery costs on the wire besides its payload. */
size_t nats_msg_overhead(const char *subject, uint64_t sid, size_t payload_len);

#endif
