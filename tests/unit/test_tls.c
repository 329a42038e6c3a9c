/* Unit tests for common/tls.c: a server and a client tls_conn wired to
 * each other through memory (no socket): the handshake, data both ways in
 * every chunking down to one byte, exported keying material equal on both
 * ends and different across sessions, certificate checks against a CA and
 * a host name, bad certificate and key files, garbage input, and
 * close_notify. The certificates are made here with libcrypto. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/tls.h"
#include "tests/unit/certs.h"

static char dir[] = "/tmp/dchat-tls-XXXXXX";
static char cert_path[64], key_path[64], other_cert_path[64];

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
    snprintf(other_cert_path, sizeof(other_cert_path), "%s/other.pem", dir);
    make_cert("localhost", cert_path, key_path);
    make_cert("localhost", other_cert_path, NULL); /* another key: not our CA */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(cert_path);
    unlink(key_path);
    unlink(other_cert_path);
    rmdir(dir);
    return 0;
}

/* What one side received as plaintext. */
struct sink {
    char *data;
    size_t len;
};

static void sink_add(struct sink *s, const char *p, size_t n)
{
    s->data = realloc(s->data, s->len + n + 1);
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

/* Moves what from has to send into to, in pieces of at most chunk bytes
 * (0: all at once). Returns to's last feed result. */
static int pass(tls_conn *from, tls_conn *to, size_t chunk, struct sink *got)
{
    size_t n;
    char *bytes = tls_conn_take_output(from, &n);
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        size_t k = chunk == 0 ? n - off : (chunk < n - off ? chunk : n - off);
        const char *out;
        size_t out_len;
        rc = tls_conn_feed(to, bytes + off, k, &out, &out_len);
        if (out_len > 0)
            sink_add(got, out, out_len);
        off += k;
    }
    free(bytes);
    return rc;
}

/* Runs the handshake between c and s to the end (or a failure). */
static int handshake(tls_conn *c, tls_conn *s, size_t chunk, struct sink *cs, struct sink *ss)
{
    for (int round = 0; round < 10; round++) {
        int rc = pass(c, s, chunk, ss);
        if (rc != 0)
            return rc;
        rc = pass(s, c, chunk, cs);
        if (rc != 0)
            return rc;
        if (tls_conn_ready(c) && tls_conn_ready(s) && tls_conn_output_len(c) == 0 &&
            tls_conn_output_len(s) == 0)
            return 0;
    }
    return TLS_FAILED;
}

static void test_handshake_and_data_in_every_chunking(void **state)
{
    (void)state;
    char err[600];
    tls_ctx *sctx = tls_ctx_server(cert_path, key_path, err, sizeof(err));
    assert_non_null(sctx);
    tls_ctx *cctx = tls_ctx_client(cert_path, err, sizeof(err)); /* self-signed: its own CA */
    assert_non_null(cctx);
    /* A message larger than a record, and small ones behind it. */
    static char big[70000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    size_t chunks[] = { 0, 1, 7, 100, 4096 };
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        tls_conn *c = tls_conn_new(cctx, "localhost");
        tls_conn *s = tls_conn_new(sctx, NULL);
        struct sink cs = { 0 }, ss = { 0 };
        assert_false(tls_conn_ready(c));
        assert_true(tls_conn_output_len(c) > 0); /* the ClientHello */
        assert_int_equal(handshake(c, s, chunks[k], &cs, &ss), 0);
        assert_int_equal(cs.len + ss.len, 0);

        uv_buf_t bufs[] = { uv_buf_init(big, sizeof(big)), uv_buf_init("hello", 5),
                            uv_buf_init("", 0), uv_buf_init(" world", 6) };
        assert_int_equal(tls_conn_writev(c, bufs, 4), 0);
        assert_int_equal(pass(c, s, chunks[k], &ss), 0);
        assert_int_equal(ss.len, sizeof(big) + 11);
        assert_memory_equal(ss.data, big, sizeof(big));
        assert_memory_equal(ss.data + sizeof(big), "hello world", 11);

        assert_int_equal(tls_conn_writev(s, bufs + 1, 1), 0);
        assert_int_equal(pass(s, c, chunks[k], &cs), 0);
        assert_int_equal(cs.len, 5);
        assert_memory_equal(cs.data, "hello", 5);

        /* Both ends export the same keying material. */
        uint8_t a[32], b[32];
        assert_int_equal(tls_conn_export(c, "EXPORTER-test", a, sizeof(a)), 0);
        assert_int_equal(tls_conn_export(s, "EXPORTER-test", b, sizeof(b)), 0);
        assert_memory_equal(a, b, sizeof(a));
        char desc[128];
        tls_conn_describe(c, desc, sizeof(desc));
        assert_non_null(strstr(desc, "TLSv1.3"));
        free(cs.data);
        free(ss.data);
        tls_conn_free(c);
        tls_conn_free(s);
    }
    tls_ctx_free(cctx);
    tls_ctx_free(sctx);
}

static void test_sessions_export_different_material(void **state)
{
    (void)state;
    char err[600];
    tls_ctx *sctx = tls_ctx_server(cert_path, key_path, err, sizeof(err));
    tls_ctx *cctx = tls_ctx_client(NULL, err, sizeof(err));
    uint8_t first[32], second[32];
    for (int i = 0; i < 2; i++) {
        tls_conn *c = tls_conn_new(cctx, NULL);
        tls_conn *s = tls_conn_new(sctx, NULL);
        struct sink cs = { 0 }, ss = { 0 };
        assert_int_equal(tls_conn_export(c, "EXPORTER-test", first, 32), -1); /* not yet */
        assert_int_equal(handshake(c, s, 0, &cs, &ss), 0);
        assert_int_equal(tls_conn_export(s, "EXPORTER-test", i ? second : first, 32), 0);
        tls_conn_free(c);
        tls_conn_free(s);
    }
    assert_memory_not_equal(first, second, 32);
    tls_ctx_free(cctx);
    tls_ctx_free(sctx);
}

static void test_certificate_checks(void **state)
{
    (void)state;
    char err[600];
    tls_ctx *sctx = tls_ctx_server(cert_path, key_path, err, sizeof(err));
    struct { const char *ca, *host; bool ok; } cases[] = {
        { cert_path, "localhost", true },
        { cert_path, "example.org", false },   /* the wrong name */
        { other_cert_path, "localhost", false }, /* not signed by that CA */
        { NULL, "example.org", true },         /* no CA: nothing checked */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tls_ctx *cctx = tls_ctx_client(cases[i].ca, err, sizeof(err));
        assert_non_null(cctx);
        tls_conn *c = tls_conn_new(cctx, cases[i].host);
        tls_conn *s = tls_conn_new(sctx, NULL);
        struct sink cs = { 0 }, ss = { 0 };
        int rc = handshake(c, s, 0, &cs, &ss);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, TLS_FAILED);
            assert_false(tls_conn_ready(c));
            assert_non_null(strstr(tls_conn_error(c), "certificate"));
        }
        tls_conn_free(c);
        tls_conn_free(s);
        tls_ctx_free(cctx);
    }
    tls_ctx_free(sctx);
}

static void test_bad_files_say_which(void **state)
{
    (void)state;
    char err[600];
    assert_null(tls_ctx_server("/nonexistent/cert.pem", key_path, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    assert_null(tls_ctx_server(cert_path, "/nonexistent/key.pem", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/key.pem"));
    /* A key that is not the certificate's. */
    char other_key[80];
    snprintf(other_key, sizeof(other_key), "%s/otherkey.pem", dir);
    char other_cert[80];
    snprintf(other_cert, sizeof(other_cert), "%s/othercert.pem", dir);
    make_cert("x", other_cert, other_key);
    assert_null(tls_ctx_server(cert_path, other_key, err, sizeof(err)));
    assert_non_null(strstr(err, other_key));
    assert_non_null(strstr(err, "mismatch"));
    unlink(other_key);
    unlink(other_cert);
    assert_null(tls_ctx_client("/nonexistent/ca.pem", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

static void test_garbage_and_close(void **state)
{
    (void)state;
    char err[600];
    tls_ctx *sctx = tls_ctx_server(cert_path, key_path, err, sizeof(err));
    tls_ctx *cctx = tls_ctx_client(NULL, err, sizeof(err));

    /* An HTTP request where a ClientHello should be. */
    tls_conn *s = tls_conn_new(sctx, NULL);
    const char *out;
    size_t out_len;
    const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(tls_conn_feed(s, req, sizeof(req) - 1, &out, &out_len), TLS_FAILED);
    assert_int_equal(out_len, 0);
    assert_int_equal(tls_conn_feed(s, "", 0, &out, &out_len), TLS_FAILED); /* stays failed */
    uv_buf_t b = uv_buf_init("x", 1);
    assert_int_equal(tls_conn_writev(s, &b, 1), TLS_FAILED);
    tls_conn_free(s);

    /* A record changed on the path fails; close_notify reads as closed. */
    tls_conn *c = tls_conn_new(cctx, NULL);
    s = tls_conn_new(sctx, NULL);
    struct sink cs = { 0 }, ss = { 0 };
    assert_int_equal(handshake(c, s, 0, &cs, &ss), 0);
    assert_int_equal(tls_conn_writev(c, &b, 1), 0);
    size_t n;
    char *rec = tls_conn_take_output(c, &n);
    rec[n - 1] ^= 1;
    assert_int_equal(tls_conn_feed(s, rec, n, &out, &out_len), TLS_FAILED);
    free(rec);
    tls_conn_free(c);
    tls_conn_free(s);

    c = tls_conn_new(cctx, NULL);
    s = tls_conn_new(sctx, NULL);
    assert_int_equal(handshake(c, s, 0, &cs, &ss), 0);
    /* Data and then a close_notify in one read: the data is delivered,
     * the next feed says closed; after it nothing is written. */
    assert_int_equal(tls_conn_writev(c, &b, 1), 0);
    tls_conn_shutdown(c);
    assert_int_equal(pass(c, s, 0, &ss), 0);
    assert_int_equal(ss.len, 1);
    assert_int_equal(tls_conn_feed(s, "", 0, &out, &out_len), TLS_CLOSED);
    assert_int_equal(tls_conn_writev(c, &b, 1), TLS_FAILED);
    free(ss.data);
    tls_conn_free(c);
    tls_conn_free(s);
    tls_ctx_free(cctx);
    tls_ctx_free(sctx);
}

static void test_write_before_handshake_is_refused(void **state)
{
    (void)state;
    char err[600];
    tls_ctx *cctx = tls_ctx_client(NULL, err, sizeof(err));
    tls_conn *c = tls_conn_new(cctx, NULL);
    uv_buf_t b = uv_buf_init("x", 1);
    assert_int_equal(tls_conn_writev(c, &b, 1), TLS_FAILED);
    tls_conn_free(c);
    tls_ctx_free(cctx);
}

static void test_sniffing(void **state)
{
    (void)state;
    assert_true(tls_is_handshake("\x16\x03\x01", 3));
    assert_false(tls_is_handshake("GET / HTTP/1.1", 14));
    assert_false(tls_is_handshake("\x00\x00\x00\x40", 4)); /* a peer frame's length */
    assert_false(tls_is_handshake("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data_in_every_chunking),
        cmocka_unit_test(test_sessions_export_different_material),
        cmocka_unit_test(test_certificate_checks),
        cmocka_unit_test(test_bad_files_say_which),
        cmocka_unit_test(test_garbage_and_close),
        cmocka_unit_test(test_write_before_handshake_is_refused),
        cmocka_unit_test(test_sniffing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
