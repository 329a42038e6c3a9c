/* peer_auth: how two nodes prove the cluster secret to each other when a
 * link opens, and the sealed records every byte after that travels in.
 *
 * Handshake (docs/PROTOCOL.md 2.1): the dialer sends HELLO(its id, a fresh
 * nonce); the acceptor answers HELLO(its id, its nonce) and AUTH(its
 * proof); the dialer checks that proof and sends AUTH(its proof); the
 * acceptor checks it. A proof is HMAC-SHA256(secret, label of the role ||
 * dialer id || acceptor id || dialer nonce || acceptor nonce [|| TLS
 * binding]): it binds both nonces (no replay), both ids (no relabelling),
 * the role (a proof the acceptor made cannot be reflected back as the
 * dialer's) and, over TLS, the TLS session (no relay through a middle).
 *
 * Records: after its AUTH, each side sends only records:
 *   u32 length | length bytes of frames | MAC
 * MAC = HMAC-SHA256(direction key, u64 record number || u32 length ||
 * frames), 32 bytes; or, when both hellos carried PEER_HELLO_GMAC, the
 * 16-byte GMAC (AES-256-GCM) of u32 length || frames under a direction key
 * of its own with the record number as its nonce. Each direction's key is
 * derived from the secret, the ids and both nonces, and record numbers
 * count from 0: a record forged, changed, replayed, dropped or reordered on
 * the path fails its MAC and the link is closed. The frames are not encrypted (TLS does that, when
 * configured). One record is one write batch of the link's queue (outq's
 * seal), so the MAC costs one HMAC per batch, not per message. */
#ifndef DCHAT_PEER_AUTH_H
#define DCHAT_PEER_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/secret.h"
#include "node/peer_proto.h"

#define PEER_RECORD_HEAD 4
#define PEER_RECORD_MAC SECRET_MAC_LEN /* the longest tag: HMAC's */
/* A record's frames at most: a write batch (1 MiB, or one frame of up to
 * PEER_PROTO_MAX_FRAME alone), with room to spare. */
#define PEER_RECORD_MAX (2u << 20)

enum peer_role { PEER_DIALER, PEER_ACCEPTOR };

/* Keying material of the link's TLS session that the proofs and keys are
 * bound to (tls_conn_export under this label), when the link runs on TLS. */
#define PEER_TLS_BINDING_LABEL "EXPORTER-dchat-peer-link"
#define PEER_TLS_BINDING_LEN 32

/* What both sides know once the hellos are exchanged. */
struct peer_handshake {
    uint32_t dialer_id, acceptor_id;
    uint8_t dialer_nonce[PEER_NONCE_LEN], acceptor_nonce[PEER_NONCE_LEN];
    /* Over TLS: the session's exported keying material, so that a proof
     * made on one TLS session fails on any other (a party in the middle
     * that terminates TLS on both sides cannot relay the proofs); len 0
     * on a plain link. */
    uint8_t binding[PEER_TLS_BINDING_LEN];
    size_t binding_len;
};

/* The proof that role sends in its AUTH frame. */
void peer_auth_proof(const struct peer_handshake *hs, enum peer_role role,
                     uint8_t out[PEER_AUTH_LEN]);

/* Whether mac is role's proof (constant time). */
bool peer_auth_check(const struct peer_handshake *hs, enum peer_role role,
                     const uint8_t mac[PEER_AUTH_LEN]);

/* One direction's record MAC: HMAC-SHA256 or GMAC, keyed. */
struct peer_record_mac {
    secret_mac *hmac;        /* one of the two */
    secret_gmac *gmac;
    size_t tag_len;          /* SECRET_MAC_LEN or SECRET_GMAC_LEN */
};

/* The sealing state of one direction: what `from` sends. */
typedef struct peer_sealer {
    struct peer_record_mac mac;
    uint64_t count;
} peer_sealer;

/* gmac: the link has PEER_HELLO_GMAC (both hellos carried it). */
void peer_sealer_init(peer_sealer *s, const struct peer_handshake *hs, enum peer_role from,
                      bool gmac);
void peer_sealer_free(peer_sealer *s);

/* An outq_seal_fn (ud: a peer_sealer): the record's length and MAC. */
void peer_seal(void *ud, const uv_buf_t *bufs, size_t n, size_t bytes, uint8_t *head,
               size_t *head_len, uint8_t *tail, size_t *tail_len);

/* Called with each verified record's frames; non-zero stops the feed. */
typedef int (*peer_record_fn)(const char *data, size_t len, void *ud);

/* The receiving state of one direction: what `from` sends us. */
typedef struct peer_opener {
    struct peer_record_mac mac;
    uint64_t count;
    char *buf;               /* a record split across reads */
    size_t len, cap;
    int failed;
} peer_opener;

void peer_opener_init(peer_opener *o, const struct peer_handshake *hs, enum peer_role from,
                      bool gmac);
void peer_opener_free(peer_opener *o);

/* Feeds bytes in any chunking; fn gets each record's frames once its MAC
 * verified. Returns 0, 1 when fn stopped it, or -1 with err filled (a
 * record too long, or a bad MAC); after -1 it refuses all input. */
int peer_opener_feed(peer_opener *o, const char *data, size_t len, peer_record_fn fn,
                     void *ud, char *err, size_t errlen);

#endif
