/* Unit tests for node/peer_auth.c: the handshake proofs (each role's own,
 * bound to both nonces, both ids and the secret), and sealed records:
 * what a sealer writes an opener of the same direction reads back in any
 * chunking; a changed byte, a replayed, dropped or reordered record, a
 * record of the other direction or of another secret is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/outq.h"
#include "node/peer_auth.h"

static struct peer_handshake hs_fixture(void)
{
    struct peer_handshake hs = { .dialer_id = 7, .acceptor_id = 9 };
    memset(hs.dialer_nonce, 0xd1, PEER_NONCE_LEN);
    memset(hs.acceptor_nonce, 0xa2, PEER_NONCE_LEN);
    return hs;
}

static void test_proofs(void **state)
{
    (void)state;
    secret_set("the cluster secret, 32 bytes...", 31);
    struct peer_handshake hs = hs_fixture();
    uint8_t d[PEER_AUTH_LEN], a[PEER_AUTH_LEN];
    peer_auth_proof(&hs, PEER_DIALER, d);
    peer_auth_proof(&hs, PEER_ACCEPTOR, a);
    assert_true(peer_auth_check(&hs, PEER_DIALER, d));
    assert_true(peer_auth_check(&hs, PEER_ACCEPTOR, a));
    /* No reflection: one role's proof is not the other's. */
    assert_memory_not_equal(d, a, PEER_AUTH_LEN);
    assert_false(peer_auth_check(&hs, PEER_ACCEPTOR, d));
    /* Bound to each nonce and each id. */
    struct peer_handshake other = hs;
    other.acceptor_nonce[5] ^= 1;
    assert_false(peer_auth_check(&other, PEER_DIALER, d));
    other = hs;
    other.dialer_nonce[31] ^= 0x80;
    assert_false(peer_auth_check(&other, PEER_DIALER, d));
    other = hs;
    other.dialer_id = 8;
    assert_false(peer_auth_check(&other, PEER_DIALER, d));
    other = hs;
    other.acceptor_id = 10;
    assert_false(peer_auth_check(&other, PEER_DIALER, d));
    /* And to the secret. */
    secret_set("another secret of the same size", 31);
    assert_false(peer_auth_check(&hs, PEER_DIALER, d));
}

struct sink {
    char got[4096];
    size_t len;
    int records;
};

static int on_record(const char *data, size_t len, void *ud)
{
    struct sink *k = ud;
    assert_true(k->len + len <= sizeof(k->got));
    memcpy(k->got + k->len, data, len);
    k->len += len;
    k->records++;
    return 0;
}

/* The record MAC of the test running: HMAC-SHA256 or GMAC. */
static bool gmac;

/* Seals the buffers as one record into out; returns its length. */
static size_t seal_into(peer_sealer *s, const char *const *parts, size_t n, char *out)
{
    uv_buf_t bufs[8] = { { 0 } };
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        bufs[i] = uv_buf_init((char *)parts[i], (unsigned)strlen(parts[i]));
        bytes += bufs[i].len;
    }
    uint8_t head[OUTQ_SEAL_HEAD], tail[OUTQ_SEAL_TAIL];
    size_t hl = 0, tl = 0;
    peer_seal(s, bufs, n, bytes, head, &hl, tail, &tl);
    assert_int_equal(hl, PEER_RECORD_HEAD);
    assert_int_equal(tl, gmac ? SECRET_GMAC_LEN : PEER_RECORD_MAC);
    size_t o = 0;
    memcpy(out, head, hl);
    o += hl;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + o, bufs[i].base, bufs[i].len);
        o += bufs[i].len;
    }
    memcpy(out + o, tail, tl);
    return o + tl;
}

static void records_round_trip_in_any_chunking(void)
{
    secret_set("the cluster secret, 32 bytes...", 31);
    struct peer_handshake hs = hs_fixture();
    char wire[2048];
    size_t len = 0;
    peer_sealer s;
    peer_sealer_init(&s, &hs, PEER_DIALER, gmac);
    const char *r1[] = { "first ", "record" };
    const char *r2[] = { "second" };
    const char *r3[] = { "a", "b", "c" };
    len += seal_into(&s, r1, 2, wire + len);
    len += seal_into(&s, r2, 1, wire + len);
    len += seal_into(&s, r3, 3, wire + len);
    peer_sealer_free(&s);

    for (size_t chunk = 1; chunk <= len; chunk++) {
        peer_opener o;
        peer_opener_init(&o, &hs, PEER_DIALER, gmac);
        struct sink k = { .len = 0 };
        char err[128];
        for (size_t off = 0; off < len; off += chunk) {
            size_t n = off + chunk > len ? len - off : chunk;
            assert_int_equal(peer_opener_feed(&o, wire + off, n, on_record, &k, err,
                                              sizeof(err)), 0);
        }
        assert_int_equal(k.records, 3);
        assert_int_equal(k.len, strlen("first recordsecondabc"));
        assert_memory_equal(k.got, "first recordsecondabc", k.len);
        peer_opener_free(&o);
    }
}

/* Feeds wire[0..len) to a fresh opener of direction from; returns what
 * feed returned, with err. */
static int open_all(const struct peer_handshake *hs, enum peer_role from, const char *wire,
                    size_t len, struct sink *k, char *err, size_t errlen)
{
    peer_opener o;
    peer_opener_init(&o, hs, from, gmac);
    int rc = peer_opener_feed(&o, wire, len, on_record, k, err, errlen);
    char again[128];
    if (rc < 0) /* refuses all input after */
        assert_int_equal(peer_opener_feed(&o, "x", 1, on_record, k, again, sizeof(again)), -1);
    peer_opener_free(&o);
    return rc;
}

static void tampering_is_refused(void)
{
    secret_set("the cluster secret, 32 bytes...", 31);
    struct peer_handshake hs = hs_fixture();
    char a[256], b[256], wire[512];
    peer_sealer s;
    peer_sealer_init(&s, &hs, PEER_ACCEPTOR, gmac);
    const char *p1[] = { "one" }, *p2[] = { "two" };
    size_t la = seal_into(&s, p1, 1, a);
    size_t lb = seal_into(&s, p2, 1, b);
    peer_sealer_free(&s);
    struct sink k = { .len = 0 };
    char err[128];

    memcpy(wire, a, la);
    memcpy(wire + la, b, lb);
    assert_int_equal(open_all(&hs, PEER_ACCEPTOR, wire, la + lb, &k, err, sizeof(err)), 0);
    assert_int_equal(k.records, 2);

    /* Every single changed byte, in the length, the frames or the MAC. */
    for (size_t i = 0; i < la; i++) {
        memcpy(wire, a, la);
        wire[i] ^= 0x01;
        k.records = 0;
        k.len = 0;
        assert_int_equal(open_all(&hs, PEER_ACCEPTOR, wire, la, &k, err, sizeof(err)) < 1 &&
                             k.records == 0, 1);
    }
    /* The other direction's opener, or another secret. */
    k.records = 0;
    assert_int_equal(open_all(&hs, PEER_DIALER, a, la, &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "MAC"));
    secret_set("another secret of the same size", 31);
    assert_int_equal(open_all(&hs, PEER_ACCEPTOR, a, la, &k, err, sizeof(err)), -1);
    secret_set("the cluster secret, 32 bytes...", 31);
    /* Replayed (record 0 twice), dropped or reordered (record 1 first). */
    memcpy(wire, a, la);
    memcpy(wire + la, a, la);
    k.records = 0;
    assert_int_equal(open_all(&hs, PEER_ACCEPTOR, wire, 2 * la, &k, err, sizeof(err)), -1);
    assert_int_equal(k.records, 1);
    k.records = 0;
    assert_int_equal(open_all(&hs, PEER_ACCEPTOR, b, lb, &k, err, sizeof(err)), -1);
    assert_int_equal(k.records, 0);
    /* Lengths: empty, or above the limit, refused before any MAC. */
    const char zero[4] = { 0, 0, 0, 0 }, huge[4] = { 0x7f, 0, 0, 0 };
    assert_int_equal(open_all(&hs, PEER_ACCEPTOR, zero, 4, &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(open_all(&hs, PEER_ACCEPTOR, huge, 4, &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "limit"));
}

static void test_hmac_records_round_trip_in_any_chunking(void **state)
{
    (void)state;
    gmac = false;
    records_round_trip_in_any_chunking();
}

static void test_gmac_records_round_trip_in_any_chunking(void **state)
{
    (void)state;
    gmac = true;
    records_round_trip_in_any_chunking();
}

static void test_hmac_tampering_is_refused(void **state)
{
    (void)state;
    gmac = false;
    tampering_is_refused();
}

static void test_gmac_tampering_is_refused(void **state)
{
    (void)state;
    gmac = true;
    tampering_is_refused();
}

struct big_sink {
    const char *want;
    size_t len;
    int records;
};

static int on_big_record(const char *data, size_t len, void *ud)
{
    struct big_sink *k = ud;
    assert_int_equal(len, k->len);
    assert_memory_equal(data, k->want, len);
    k->records++;
    return 0;
}

/* A record of many frames, small ones gathered into runs before they are
 * hashed and big ones hashed apart, carries the MAC of its bytes: the
 * opener, which hashes the record whole, agrees. */
static void test_a_record_of_many_frames_small_and_big(void **state)
{
    (void)state;
    secret_set("the cluster secret, 32 bytes...", 31);
    struct peer_handshake hs = hs_fixture();
    enum { SMALL = 300, SMALL_LEN = 50, BIG_LEN = 5000 };
    static char frames[SMALL * SMALL_LEN + BIG_LEN];
    for (size_t i = 0; i < sizeof(frames); i++)
        frames[i] = (char)('a' + i * 7 % 26);
    uv_buf_t bufs[SMALL + 1];
    size_t off = 0, n = 0;
    for (int i = 0; i < SMALL; i++) {
        size_t len = i == SMALL / 2 ? BIG_LEN : SMALL_LEN; /* the big one midway */
        bufs[n++] = uv_buf_init(frames + off, (unsigned)len);
        off += len;
    }
    bufs[n++] = uv_buf_init(frames + off, (unsigned)(sizeof(frames) - off));
    for (int g = 0; g < 2; g++) {
        gmac = g;
        peer_sealer s;
        peer_sealer_init(&s, &hs, PEER_DIALER, gmac);
        uint8_t head[OUTQ_SEAL_HEAD], tail[OUTQ_SEAL_TAIL];
        size_t hl = 0, tl = 0;
        peer_seal(&s, bufs, n, sizeof(frames), head, &hl, tail, &tl);
        peer_sealer_free(&s);
        static char wire[sizeof(frames) + 64];
        memcpy(wire, head, hl);
        memcpy(wire + hl, frames, sizeof(frames));
        memcpy(wire + hl + sizeof(frames), tail, tl);
        peer_opener o;
        peer_opener_init(&o, &hs, PEER_DIALER, gmac);
        struct big_sink k = { frames, sizeof(frames), 0 };
        char err[128];
        assert_int_equal(peer_opener_feed(&o, wire, hl + sizeof(frames) + tl, on_big_record, &k,
                                          err, sizeof(err)), 0);
        assert_int_equal(k.records, 1);
        peer_opener_free(&o);
    }
}

/* Two ends that disagree on the MAC (a hello's flag changed on the way)
 * refuse each other's first record: the link closes, nothing is taken. */
static void test_a_mac_mismatch_is_refused(void **state)
{
    (void)state;
    secret_set("the cluster secret, 32 bytes...", 31);
    struct peer_handshake hs = hs_fixture();
    for (int sealed_gmac = 0; sealed_gmac < 2; sealed_gmac++) {
        char wire[256];
        peer_sealer s;
        gmac = sealed_gmac;
        peer_sealer_init(&s, &hs, PEER_DIALER, gmac);
        /* two records: an opener expecting the longer tag has a whole
         * record of its own length to check (with one, it would wait) */
        const char *p1[] = { "a message of some length" };
        size_t len = seal_into(&s, p1, 1, wire);
        len += seal_into(&s, p1, 1, wire + len);
        peer_sealer_free(&s);
        struct sink k = { .len = 0 };
        char err[128];
        gmac = !sealed_gmac;
        assert_int_equal(open_all(&hs, PEER_DIALER, wire, len, &k, err, sizeof(err)), -1);
        assert_int_equal(k.records, 0);
        assert_non_null(strstr(err, "MAC"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proofs),
        cmocka_unit_test(test_hmac_records_round_trip_in_any_chunking),
        cmocka_unit_test(test_gmac_records_round_trip_in_any_chunking),
        cmocka_unit_test(test_hmac_tampering_is_refused),
        cmocka_unit_test(test_gmac_tampering_is_refused),
        cmocka_unit_test(test_a_mac_mismatch_is_refused),
        cmocka_unit_test(test_a_record_of_many_frames_small_and_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
