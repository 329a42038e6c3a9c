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
static const char GMAC_KEY_LABEL[] = "dchat-link-gmac-key-v1";

/* HMAC(secret, label || role || dialer id || acceptor id || both nonces
 * [|| TLS binding]). */
static void bound_mac(const struct peer_handshake *hs, const char *label, const char *role,
                      uint8_t out[SECRET_MAC_LEN])
{
    uint8_t ids[8];
    util_put_be32(ids, hs->dialer_id);
    util_put_be32(ids + 4, hs->acceptor_id);
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

/* The key of what `from` sends, for the record MAC chosen: each has a key
 * of its own, derived under its own label. */
static void direction_key(struct peer_record_mac *rm, const struct peer_handshake *hs,
                          enum peer_role from, bool gmac)
{
    uint8_t key[SECRET_MAC_LEN];
    _Static_assert(SECRET_GMAC_KEY_LEN == SECRET_MAC_LEN, "one derived key fits both");
    bound_mac(hs, gmac ? GMAC_KEY_LABEL : KEY_LABEL, role_name(from), key);
    rm->hmac = gmac ? NULL : secret_mac_new(key, sizeof(key));
    rm->gmac = gmac ? secret_gmac_new(key) : NULL;
    rm->tag_len = gmac ? SECRET_GMAC_LEN : SECRET_MAC_LEN;
    explicit_bzero(key, sizeof(key));
}

static void record_mac_free(struct peer_record_mac *rm)
{
    secret_mac_free(rm->hmac);
    secret_gmac_free(rm->gmac);
    memset(rm, 0, sizeof(*rm));
}

static void mac_bytes(struct peer_record_mac *rm, const void *data, size_t len)
{
    if (rm->gmac != NULL)
        secret_gmac_update(rm->gmac, data, len);
    else
        secret_mac_update(rm->hmac, data, len);
}

/* The tag (rm->tag_len bytes) of record number count with head (its
 * length field) and frames. HMAC: over the number, the head and the
 * frames; GMAC: the number is its nonce, over the head and the frames. */
static void record_mac(struct peer_record_mac *rm, uint64_t count,
                       const uint8_t head[PEER_RECORD_HEAD], const uv_buf_t *bufs, size_t n,
                       const char *flat, size_t flat_len, uint8_t out[PEER_RECORD_MAC])
{
    if (rm->gmac != NULL) {
        secret_gmac_begin(rm->gmac, count);
    } else {
        uint8_t num[8];
        util_put_be64(num, count);
        secret_mac_begin(rm->hmac);
        secret_mac_update(rm->hmac, num, sizeof(num));
    }
    /* A libcrypto update costs a fixed 50-100 ns whatever its length, so a
     * record of many small frames is hashed in runs gathered here (a copy
     * of 100 bytes costs a few ns); big frames go on their own. */
    char run[8192];
    size_t used = PEER_RECORD_HEAD;
    memcpy(run, head, PEER_RECORD_HEAD);
    for (size_t i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (used + len > sizeof(run)) {
            mac_bytes(rm, run, used);
            used = 0;
        }
        if (len > sizeof(run) / 2) {
            mac_bytes(rm, bufs[i].base, len);
            continue;
        }
        memcpy(run + used, bufs[i].base, len);
        used += len;
    }
    mac_bytes(rm, run, used);
    if (flat != NULL)
        mac_bytes(rm, flat, flat_len);
    if (rm->gmac != NULL)
        secret_gmac_end(rm->gmac, out);
    else
        secret_mac_end(rm->hmac, out);
}

/* --- sending ------------------------------------------------------------ */

void peer_sealer_init(peer_sealer *s, const struct peer_handshake *hs, enum peer_role from,
                      bool gmac)
{
    direction_key(&s->mac, hs, from, gmac);
    s->count = 0;
}

void peer_sealer_free(peer_sealer *s)
{
    record_mac_free(&s->mac);
}

void peer_seal(void *ud, const uv_buf_t *bufs, size_t n, size_t bytes, uint8_t *head,
               size_t *head_len, uint8_t *tail, size_t *tail_len)
{
    peer_sealer *s = ud;
    /* The link's queue never batches more than PEER_RECORD_MAX. */
    util_put_be32(head, (uint32_t)bytes);
    record_mac(&s->mac, s->count++, head, bufs, n, NULL, 0, tail);
    *head_len = PEER_RECORD_HEAD;
    *tail_len = s->mac.tag_len;
}

/* --- receiving ---------------------------------------------------------- */

void peer_opener_init(peer_opener *o, const struct peer_handshake *hs, enum peer_role from,
                      bool gmac)
{
    memset(o, 0, sizeof(*o));
    direction_key(&o->mac, hs, from, gmac);
}

void peer_opener_free(peer_opener *o)
{
    record_mac_free(&o->mac);
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
    size_t len = total - PEER_RECORD_HEAD - o->mac.tag_len;
    uint8_t want[PEER_RECORD_MAC];
    record_mac(&o->mac, o->count, (const uint8_t *)p, NULL, 0, p + PEER_RECORD_HEAD, len, want);
    if (!secret_equal(want, p + PEER_RECORD_HEAD + len, o->mac.tag_len))
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
        size_t body = util_get_be32(lp);
        if (body == 0 || body > PEER_RECORD_MAX)
            return refuse(o, err, errlen, body ? "record longer than the limit"
                                               : "empty record");
        size_t total = PEER_RECORD_HEAD + body + o->mac.tag_len;
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
