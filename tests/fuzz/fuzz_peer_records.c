/* Fuzz target for node/peer_auth.c's sealed records. Input: one byte of
 * mode, the chunk sizes (chunks.h), then bytes. Bit 1 of mode chooses the
 * record MAC: HMAC-SHA256 (0) or GMAC (1).
 *   mode even: the bytes are a link's raw stream, fed to an opener in one
 *     call and in the chunks: the same records come out, with the same
 *     verdict; after a refusal everything is refused.
 *   mode odd: the bytes are cut into records of (mode >> 2) + 1 bytes,
 *     sealed with peer_seal, then opened in the chunks: exactly the same
 *     bytes come back, record by record; one flipped bit (chosen from the
 *     input) in the sealed stream makes the opener refuse it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/outq.h"
#include "node/peer_auth.h"
#include "tests/fuzz/chunks.h"
#include "tests/fuzz/record.h"

static struct peer_handshake hs = { .dialer_id = 3, .acceptor_id = 8 };

static int keep_cb(const char *data, size_t len, void *ud)
{
    record *r = ud;
    record_u64(r, len);
    record_add(r, data, len);
    return 0;
}

static int open_stream(const uint8_t *data, size_t len, chunks *ch, record *r, bool gmac)
{
    peer_opener o;
    peer_opener_init(&o, &hs, PEER_DIALER, gmac);
    char err[160] = "";
    int rc = 0;
    size_t off = 0;
    do {
        size_t n = ch ? chunks_next(ch, len - off) : len;
        char *chunk = chunks_copy(data + off, n);
        rc = peer_opener_feed(&o, chunk, n, keep_cb, r, err, sizeof(err));
        free(chunk);
        off += n;
    } while (rc == 0 && off < len);
    FUZZ_CHECK(rc == 0 || (rc == -1 && err[0] != '\0'));
    if (rc == -1)
        FUZZ_CHECK(peer_opener_feed(&o, "x", 1, keep_cb, r, err, sizeof(err)) == -1);
    peer_opener_free(&o);
    record_u64(r, (uint64_t)(int64_t)rc);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static bool keyed;
    if (!keyed) {
        secret_set("a fuzzing cluster secret", 24);
        memset(hs.dialer_nonce, 1, PEER_NONCE_LEN);
        memset(hs.acceptor_nonce, 2, PEER_NONCE_LEN);
        keyed = true;
    }
    uint8_t mode;
    chunks ch;
    if (chunks_start(&ch, &data, &len, &mode) != 0)
        return 0;
    record whole = { 0 }, split = { 0 };
    bool gmac = (mode >> 1) & 1; /* HMAC-SHA256 or GMAC records */
    if (mode % 2 == 0) {
        open_stream(data, len, NULL, &whole, gmac);
        open_stream(data, len, &ch, &split, gmac);
        FUZZ_CHECK(record_same(&whole, &split));
        record_free(&whole);
        record_free(&split);
        return 0;
    }
    if (len == 0)
        return 0;
    /* Seal data in records of step bytes; expect them back. */
    size_t step = (size_t)(mode >> 2) + 1;
    size_t nrec = (len + step - 1) / step;
    size_t wire_len = len + nrec * (PEER_RECORD_HEAD + (gmac ? SECRET_GMAC_LEN : PEER_RECORD_MAC));
    uint8_t *wire = malloc(wire_len);
    FUZZ_CHECK(wire != NULL);
    peer_sealer s;
    peer_sealer_init(&s, &hs, PEER_DIALER, gmac);
    size_t w = 0;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        uv_buf_t b = uv_buf_init((char *)data + off, (unsigned)n);
        uint8_t head[OUTQ_SEAL_HEAD], tail[OUTQ_SEAL_TAIL];
        size_t hl = 0, tl = 0;
        peer_seal(&s, &b, 1, n, head, &hl, tail, &tl);
        memcpy(wire + w, head, hl);
        memcpy(wire + w + hl, data + off, n);
        memcpy(wire + w + hl + n, tail, tl);
        w += hl + n + tl;
        keep_cb((const char *)data + off, n, &whole);
    }
    peer_sealer_free(&s);
    FUZZ_CHECK(w == wire_len);
    record_u64(&whole, 0);
    FUZZ_CHECK(open_stream(wire, wire_len, &ch, &split, gmac) == 0);
    FUZZ_CHECK(record_same(&whole, &split));
    /* One flipped bit anywhere: refused (or, in a length, left waiting). */
    size_t bit = (size_t)(data[0] | (size_t)data[len - 1] << 8) % (wire_len * 8);
    wire[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    record bad = { 0 };
    chunks_init(&ch, &(const uint8_t *){ (const uint8_t *)"\xff\xff\xff\xff" }, &(size_t){ 4 });
    int rc = open_stream(wire, wire_len, &ch, &bad, gmac);
    FUZZ_CHECK(rc == -1 || !record_same(&whole, &bad));
    record_free(&bad);
    free(wire);
    record_free(&whole);
    record_free(&split);
    return 0;
}
