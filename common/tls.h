/* tls: TLS for libuv streams, with OpenSSL over memory BIOs. A tls_conn
 * never touches a socket: the owner feeds it the ciphertext it read and
 * gets plaintext back, hands it plaintext to encrypt, and writes the
 * ciphertext it takes out. So TLS slots into the existing read callbacks
 * and into outq's batches (outq_set_tls), and the event loop stays the
 * owner's. The node's client port (wss://, https://), its peer links and
 * the bench's client sockets use it; docs/PROTOCOL.md 6.3 says how. */
#ifndef DCHAT_TLS_H
#define DCHAT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

/* A server context from a PEM certificate chain and its PEM private key.
 * Returns NULL with the reason (file, OpenSSL's error, what to do) in err. */
tls_ctx *tls_ctx_server(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* A client context. With ca_file, the server's certificate must chain to
 * it and name the host given to tls_conn_new; with NULL nothing is
 * verified (the bench against test certificates, and peer links, which
 * authenticate by the cluster secret bound to the TLS session instead). */
tls_ctx *tls_ctx_client(const char *ca_file, char *err, size_t errlen);

void tls_ctx_free(tls_ctx *ctx);

/* A connection of ctx's role. A client connection starts its handshake at
 * once (its ClientHello is then waiting in tls_conn_output), naming
 * server_name (SNI and, with a CA, the name to verify; may be NULL). */
tls_conn *tls_conn_new(tls_ctx *ctx, const char *server_name);
void tls_conn_free(tls_conn *t);

/* What tls_conn_feed returns besides 0. */
#define TLS_CLOSED (-1)   /* the peer sent close_notify: as EOF */
#define TLS_FAILED (-2)   /* a handshake or record error: tls_conn_error */

/* Feeds len bytes of ciphertext read from the socket. The plaintext they
 * complete is at *out, *out_len bytes (0 during the handshake); it lives
 * in a buffer shared by every connection, until the next feed. Whatever
 * the feed made the connection send (handshake messages, alerts) is in
 * tls_conn_output. Returns 0, TLS_CLOSED or TLS_FAILED. */
int tls_conn_feed(tls_conn *t, const char *in, size_t len, const char **out, size_t *out_len);

/* Whether the handshake is complete: plaintext can be written. */
bool tls_conn_ready(const tls_conn *t);

/* Encrypts the n buffers, in order, as few records as fit (16 KiB each).
 * Only once ready. Returns 0 or TLS_FAILED. */
int tls_conn_writev(tls_conn *t, const uv_buf_t *bufs, size_t n);

/* Ciphertext waiting to be written to the socket, and taking it: returns
 * a malloc'd buffer of *len bytes (the caller frees it), NULL when none. */
size_t tls_conn_output_len(const tls_conn *t);
char *tls_conn_take_output(tls_conn *t, size_t *len);

/* Moves up to cap bytes of that ciphertext into buf; returns how many. */
size_t tls_conn_read_output(tls_conn *t, char *buf, size_t cap);

/* Queues a close_notify alert (the end of the session, RFC 8446 6.1) in
 * tls_conn_output, once the handshake is done; after it nothing more can
 * be written. */
void tls_conn_shutdown(tls_conn *t);

/* Why the connection failed (TLS_FAILED), for logs. */
const char *tls_conn_error(const tls_conn *t);

/* Keying material exported from the session (RFC 5705 / 8446 7.5) under
 * label: the same on both ends of one TLS session, different on any
 * other. Peer links bind their proofs to it. Returns 0 or -1. */
int tls_conn_export(tls_conn *t, const char *label, uint8_t *out, size_t len);

/* The negotiated protocol and cipher, for logs ("TLSv1.3 TLS_AES_..."). */
void tls_conn_describe(const tls_conn *t, char *buf, size_t len);

/* Whether the first bytes a client sent start a TLS handshake record (an
 * HTTP request or a peer HELLO never does). */
static inline bool tls_is_handshake(const char *data, size_t len)
{
    return len > 0 && (uint8_t)data[0] == 0x16;
}

#endif
