/* peer_auth: see peer_auth.h. A record that lies whole in the fed chunk is
 * verified and handed on in place; only a record split across reads is
 * copied into the opener's buffer. */
#include "node/peer_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char PROOF_LABEL[] = "dchat-link-auth-v2";
static const char KEY_LABEL[] = "dchat-link-key-v2";

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* HMAC(secret, label || role || dialer id || acceptor id || both nonces
 * [|| TLS binding]). */
static void bound_mac(const struct peer_handshake *hs, const char *label, const char *role,
                      uint8_t out[SECRET_MAC_LEN])
{
    uint8_t ids[8];
    put32(ids, hs->dialer_id);
    put32(ids + 4, hs->acceptor_id);
    const void *parts[] = { label, role, ids, hs->dialer_nonce, hs->acceptor_nonce,
                            hs->binding };
    size_t lens[] = { strlen(label) + 1, strlen(role) + 1, sizeof(ids), PEER_NONCE_LEN,
                      PEER_NONCE_LEN, hs->binding_len };
    /* A plain link's MAC has no sixth part, as before TLS existed. */
    secret_hmac(out, ARRAY_SIZE(parts) - (hs->binding_len == 0), parts, lens);
}

static const char *role_name(enum peer_role r)
{
    return r == PEER_DIALER ? "dialer" : "acceptor";
}

void peer_auth_proof(const struct peer_handshake *hs, enum peer_role role,
                     uint8_t out[PEER_AUTH_LEN])
{
    bound_mac(hs, PROOF_LABEL, role_name(role), out);
}

bool peer_auth_check(const struct peer_handshake *hs, enum peer_role role,
                     const uint8_t mac[PEER_AUTH_LEN])
{
    uint8_t want[PEER_AUTH_LEN];
    peer_auth_proof(hs, role, want);
    return secret_equal(want, mac, PEER_AUTH_LEN);
}

/* The key of what `from` sends. */
static secret_mac *direction_mac(const struct peer_handshake *hs, enum peer_role from)
{
    uint8_t key[SECRET_MAC_LEN];
    bound_mac(hs, KEY_LABEL, role_name(from), key);
    secret_mac *m = secret_mac_new(key, sizeof(key));
    explicit_bzero(key, sizeof(key));
    return m;
}

/* The MAC of record number count with head (its length field) and frames. */
static void record_mac(secret_mac *m, uint64_t count, const uint8_t head[PEER_RECORD_HEAD],
                       const uv_buf_t *bufs, size_t n, const char *flat, size_t flat_len,
                       uint8_t out[PEER_RECORD_MAC])
{
    uint8_t num[8];
    put64(num, count);
    secret_mac_begin(m);
    secret_mac_update(m, num, sizeof(num));
    secret_mac_update(m, head, PEER_RECORD_HEAD);
    for (size_t i = 0; i < n; i++)
        secret_mac_update(m, bufs[i].base, bufs[i].len);
    if (flat != NULL)
        secret_mac_update(m, flat, flat_len);
    secret_mac_end(m, out);
}

/* --- sending ------------------------------------------------------------ */

void peer_sealer_init(peer_sealer *s, const struct peer_handshake *hs, enum peer_role from)
{
    s->mac = direction_mac(hs, from);
    s->count = 0;
}

void peer_sealer_free(peer_sealer *s)
{
    secret_mac_free(s->mac);
    s->mac = NULL;
}

void peer_seal(void *ud, const uv_buf_t *bufs, size_t n, size_t bytes, uint8_t *head,
               size_t *head_len, uint8_t *tail, size_t *tail_len)
{
    peer_sealer *s = ud;
    /* The link's queue never batches more than PEER_RECORD_MAX. */
    put32(head, (uint32_t)bytes);
    record_mac(s->mac, s->count++, head, bufs, n, NULL, 0, tail);
    *head_len = PEER_RECORD_HEAD;
    *tail_len = PEER_RECORD_MAC;
}

/* --- receiving ---------------------------------------------------------- */

void peer_opener_init(peer_opener *o, const struct peer_handshake *hs, enum peer_role from)
{
    memset(o, 0, sizeof(*o));
    o->mac = direction_mac(hs, from);
}

void peer_opener_free(peer_opener *o)
{
    secret_mac_free(o->mac);
    free(o->buf);
    memset(o, 0, sizeof(*o));
}

static int refuse(peer_opener *o, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    o->failed = 1;
    return -1;
}

/* Verifies the whole record at p (head, frames, MAC) and hands it on. */
static int open_record(peer_opener *o, const char *p, size_t total, peer_record_fn fn,
                       void *ud, char *err, size_t errlen)
{
    size_t len = total - PEER_RECORD_HEAD - PEER_RECORD_MAC;
    uint8_t want[PEER_RECORD_MAC];
    record_mac(o->mac, o->count, (const uint8_t *)p, NULL, 0, p + PEER_RECORD_HEAD, len, want);
    if (!secret_equal(want, p + PEER_RECORD_HEAD + len, PEER_RECORD_MAC))
        return refuse(o, err, errlen, "a record's MAC does not verify (forged, changed or "
                                      "replayed on the way)");
    o->count++;
    return fn(p + PEER_RECORD_HEAD, len, ud) ? 1 : 0;
}

int peer_opener_feed(peer_opener *o, const char *data, size_t len, peer_record_fn fn,
                     void *ud, char *err, size_t errlen)
{
    if (o->failed)
        return refuse(o, err, errlen, "input after a bad record");
    while (len > 0) {
        /* The record's length, from the buffer or the input. */
        size_t have = o->len;
        if (have + len < PEER_RECORD_HEAD || (have > 0 && have < PEER_RECORD_HEAD)) {
            size_t take = UTIL_MIN(PEER_RECORD_HEAD - have, len);
            if (o->cap < PEER_RECORD_HEAD) {
                o->cap = 256;
                o->buf = xrealloc(o->buf, o->cap);
            }
            memcpy(o->buf + have, data, take);
            o->len += take;
            data += take;
            len -= take;
            if (o->len < PEER_RECORD_HEAD)
                return 0;
            have = o->len; /* the length is complete: check it now */
        }
        const uint8_t *lp = (const uint8_t *)(have > 0 ? o->buf : data);
        size_t body = get32(lp);
        if (body == 0 || body > PEER_RECORD_MAX)
            return refuse(o, err, errlen, body ? "record longer than the limit"
                                               : "empty record");
        size_t total = PEER_RECORD_HEAD + body + PEER_RECORD_MAC;
        if (have == 0 && len >= total) {
            int rc = open_record(o, data, total, fn, ud, err, errlen);
            if (rc != 0)
                return rc;
            data += total;
            len -= total;
            continue;
        }
        if (o->cap < total) {
            o->cap = total;
            o->buf = xrealloc(o->buf, o->cap);
        }
        size_t take = UTIL_MIN(total - have, len);
        memcpy(o->buf + have, data, take);
        o->len += take;
        data += take;
        len -= take;
        if (o->len < total)
            return 0;
        o->len = 0;
        int rc = open_record(o, o->buf, total, fn, ud, err, errlen);
        if (o->cap > 64 * 1024) { /* do not keep a big one around */
            free(o->buf);
            o->buf = NULL;
            o->cap = 0;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}
