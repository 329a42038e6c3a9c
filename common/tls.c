/* tls: see tls.h. Each connection is an SSL object between two memory
 * BIOs: what the socket delivered goes into `in`, what OpenSSL wants sent
 * comes out of `out`. Plaintext read is collected into one buffer shared
 * by all connections (the programs run one loop thread), large enough for
 * everything one feed can complete, so the owner parses it in one go as it
 * would a plain read. Plaintext written is staged into records of 16 KiB,
 * so a batch of small frames costs a few records, not one each. */
#include "common/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define TLS_RECORD (16 * 1024)

struct tls_ctx {
    SSL_CTX *ssl;
    bool server;
};

struct tls_conn {
    SSL *ssl;
    BIO *in, *out;  /* owned by ssl */
    bool failed;
    char err[200];
};

static char *plain;     /* what one feed decrypted */
static size_t plain_cap;
static char stage[TLS_RECORD];

/* OpenSSL's latest error, as text, or fallback when its queue is empty. */
static void last_error(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        snprintf(buf, len, "%s", fallback);
    } else {
        char reason[160];
        ERR_error_string_n(e, reason, sizeof(reason));
        snprintf(buf, len, "%s", reason);
    }
    ERR_clear_error();
}

static SSL_CTX *ctx_base(const SSL_METHOD *method, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ssl = SSL_CTX_new(method);
    if (ssl == NULL) {
        last_error(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    /* Idle connections keep no record buffers: thousands of clients. */
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    return ssl;
}

tls_ctx *tls_ctx_server(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ssl = ctx_base(TLS_server_method(), err, errlen);
    if (ssl == NULL)
        return NULL;
    char why[200];
    if (SSL_CTX_use_certificate_chain_file(ssl, cert_file) != 1) {
        last_error(why, sizeof(why), "unreadable");
        snprintf(err, errlen, "cannot load the TLS certificate %s (%s): it must be a PEM "
                 "certificate chain, server certificate first", cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        last_error(why, sizeof(why), "unreadable");
        snprintf(err, errlen, "cannot load the TLS private key %s (%s): it must be the "
                 "unencrypted PEM key of the certificate %s", key_file, why, cert_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ssl) != 1) {
        last_error(why, sizeof(why), "mismatch");
        snprintf(err, errlen, "the TLS key %s does not belong to the certificate %s (%s)",
                 key_file, cert_file, why);
        goto fail;
    }
    /* No resumption tickets: every handshake is full, and no ticket key
     * lives in the process to be managed or rotated. */
    SSL_CTX_set_num_tickets(ssl, 0);
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    tls_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->ssl = ssl;
    ctx->server = true;
    return ctx;
fail:
    SSL_CTX_free(ssl);
    return NULL;
}

tls_ctx *tls_ctx_client(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ssl = ctx_base(TLS_client_method(), err, errlen);
    if (ssl == NULL)
        return NULL;
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ssl, ca_file, NULL) != 1) {
            char why[200];
            last_error(why, sizeof(why), "unreadable");
            snprintf(err, errlen, "cannot load the TLS CA file %s (%s): it must hold PEM "
                     "certificates", ca_file, why);
            SSL_CTX_free(ssl);
            return NULL;
        }
        SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    }
    tls_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->ssl = ssl;
    return ctx;
}

void tls_ctx_free(tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

static int conn_fail(tls_conn *t, int ssl_error, const char *what)
{
    char why[160];
    if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_SSL)
        last_error(why, sizeof(why), "protocol error");
    else
        snprintf(why, sizeof(why), "SSL error %d", ssl_error);
    long verify = SSL_get_verify_result(t->ssl);
    if (verify != X509_V_OK)
        snprintf(t->err, sizeof(t->err), "%s: certificate not accepted: %s", what,
                 X509_verify_cert_error_string(verify));
    else
        snprintf(t->err, sizeof(t->err), "%s: %s", what, why);
    t->failed = true;
    return TLS_FAILED;
}

tls_conn *tls_conn_new(tls_ctx *ctx, const char *server_name)
{
    tls_conn *t = xcalloc(1, sizeof(*t));
    t->ssl = SSL_new(ctx->ssl);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        fprintf(stderr, "fatal: out of memory creating a TLS connection\n");
        abort();
    }
    /* An empty input BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
        return t;
    }
    SSL_set_connect_state(t->ssl);
    if (server_name != NULL && server_name[0] != '\0') {
        SSL_set_tlsext_host_name(t->ssl, server_name);
        SSL_set1_host(t->ssl, server_name);
    }
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl); /* the ClientHello, into out */
    if (r <= 0) {
        int e = SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            conn_fail(t, e, "TLS handshake");
    }
    return t;
}

void tls_conn_free(tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and both BIOs */
    free(t);
}

int tls_conn_feed(tls_conn *t, const char *in, size_t len, const char **out, size_t *out_len)
{
    *out = plain;
    *out_len = 0;
    if (t->failed)
        return TLS_FAILED;
    ERR_clear_error();
    if (len > 0 && BIO_write(t->in, in, (int)len) != (int)len)
        return conn_fail(t, SSL_ERROR_SSL, "TLS input");
    if (!SSL_is_init_finished(t->ssl)) {
        int r = SSL_do_handshake(t->ssl);
        if (r <= 0) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            return conn_fail(t, e, "TLS handshake");
        }
    }
    size_t used = 0;
    for (;;) {
        if (plain_cap - used < TLS_RECORD) {
            plain_cap = UTIL_MAX(2 * plain_cap, used + 16 * TLS_RECORD);
            plain = xrealloc(plain, plain_cap);
        }
        size_t got = 0;
        int r = SSL_read_ex(t->ssl, plain + used, plain_cap - used, &got);
        if (r > 0) {
            used += got;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            if (used == 0)
                return TLS_CLOSED;
            break; /* deliver what came before close_notify; EOF follows */
        }
        return conn_fail(t, e, "TLS record");
    }
    *out = plain;
    *out_len = used;
    return 0;
}

bool tls_conn_ready(const tls_conn *t)
{
    return !t->failed && SSL_is_init_finished(t->ssl);
}

static int write_all(tls_conn *t, const void *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        size_t w = 0;
        int r = SSL_write_ex(t->ssl, (const char *)p + done, n - done, &w);
        if (r <= 0)
            return conn_fail(t, SSL_get_error(t->ssl, r), "TLS write");
        done += w;
    }
    return 0;
}

int tls_conn_writev(tls_conn *t, const uv_buf_t *bufs, size_t n)
{
    if (t->failed || !SSL_is_init_finished(t->ssl))
        return TLS_FAILED;
    ERR_clear_error();
    size_t staged = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = bufs[i].base;
        size_t left = bufs[i].len;
        while (left > 0) {
            if (staged == 0 && left >= TLS_RECORD) {
                /* Whole records straight from the buffer. */
                size_t whole = left - left % TLS_RECORD;
                if (write_all(t, p, whole) != 0)
                    return TLS_FAILED;
                p += whole;
                left -= whole;
                continue;
            }
            size_t take = UTIL_MIN(left, sizeof(stage) - staged);
            memcpy(stage + staged, p, take);
            staged += take;
            p += take;
            left -= take;
            if (staged == sizeof(stage)) {
                if (write_all(t, stage, staged) != 0)
                    return TLS_FAILED;
                staged = 0;
            }
        }
    }
    if (staged > 0 && write_all(t, stage, staged) != 0)
        return TLS_FAILED;
    return 0;
}

size_t tls_conn_output_len(const tls_conn *t)
{
    return BIO_ctrl_pending(t->out);
}

size_t tls_conn_read_output(tls_conn *t, char *buf, size_t cap)
{
    int got = cap > 0 ? BIO_read(t->out, buf, (int)UTIL_MIN(cap, (size_t)INT32_MAX)) : 0;
    return got > 0 ? (size_t)got : 0;
}

char *tls_conn_take_output(tls_conn *t, size_t *len)
{
    size_t n = BIO_ctrl_pending(t->out);
    char *buf = n > 0 ? xmalloc(n) : NULL;
    *len = n > 0 ? tls_conn_read_output(t, buf, n) : 0;
    if (*len == 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

void tls_conn_shutdown(tls_conn *t)
{
    if (t->failed || !SSL_is_init_finished(t->ssl))
        return;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* 0: sent, not yet answered; we do not wait */
    ERR_clear_error();
}

const char *tls_conn_error(const tls_conn *t)
{
    return t->failed ? t->err : "no error";
}

int tls_conn_export(tls_conn *t, const char *label, uint8_t *out, size_t len)
{
    if (!tls_conn_ready(t))
        return -1;
    return SSL_export_keying_material(t->ssl, out, len, label, strlen(label), NULL, 0, 0) == 1
               ? 0
               : -1;
}

void tls_conn_describe(const tls_conn *t, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}
