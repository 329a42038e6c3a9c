/* secret: see secret.h. HMAC through libcrypto's EVP_MAC ("HMAC" with
 * SHA-256), fetched once per process; GMAC through its AES-256-GCM. */
#include "common/secret.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/log.h"
#include "common/util.h"

struct secret_mac {
    EVP_MAC_CTX *ctx;
};

static uint8_t secret[SECRET_MAX];
static size_t secret_len;
static EVP_MAC *hmac_alg;

static EVP_MAC *alg(void)
{
    if (hmac_alg == NULL) {
        hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (hmac_alg == NULL) {
            log_error("libcrypto has no HMAC; reinstall libssl3");
            abort();
        }
    }
    return hmac_alg;
}

static void must(int ok, const char *what)
{
    if (!ok) {
        log_error("libcrypto failed: %s", what);
        abort();
    }
}

/* Trims surrounding whitespace of [p, p + *len) in place; returns the start. */
static const char *trim(const char *p, size_t *len)
{
    size_t n = *len;
    while (n > 0 && isspace((unsigned char)*p)) {
        p++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)p[n - 1]))
        n--;
    *len = n;
    return p;
}

static int take(const char *p, size_t len, const char *from, char *err, size_t errlen)
{
    p = trim(p, &len);
    if (len < SECRET_MIN || len > SECRET_MAX) {
        snprintf(err, errlen, "the cluster secret from %s has %zu bytes; it needs %d to %d "
                 "(make one with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')",
                 from, len, SECRET_MIN, SECRET_MAX);
        return -1;
    }
    secret_set(p, len);
    return 0;
}

int secret_load(const char *file, bool insecure, char *err, size_t errlen)
{
    if (file != NULL && file[0] != '\0') {
        FILE *f = fopen(file, "rb");
        if (f == NULL) {
            snprintf(err, errlen, "cannot open the cluster secret file %s: %s", file,
                     strerror(errno));
            return -1;
        }
        char buf[SECRET_MAX + 64];
        size_t n = fread(buf, 1, sizeof(buf), f);
        int bad = ferror(f);
        fclose(f);
        if (bad) {
            snprintf(err, errlen, "cannot read the cluster secret file %s", file);
            return -1;
        }
        int rc = take(buf, n, file, err, errlen);
        explicit_bzero(buf, sizeof(buf));
        return rc;
    }
    const char *env = getenv(SECRET_ENV);
    if (env != NULL && env[0] != '\0')
        return take(env, strlen(env), "$" SECRET_ENV, err, errlen);
    if (insecure) {
        secret_set(NULL, 0);
        return 0;
    }
    snprintf(err, errlen, "no cluster secret: pass --cluster-secret-file FILE or set "
             SECRET_ENV " (the same value on every node and on discovery), or --insecure "
             "to run a cluster anyone who reaches it can join");
    return -1;
}

bool secret_present(void) { return secret_len > 0; }

void secret_set(const void *data, size_t len)
{
    secret_len = UTIL_MIN(len, sizeof(secret));
    if (secret_len > 0)
        memcpy(secret, data, secret_len);
}

void secret_hmac_key(const uint8_t *key, size_t keylen, uint8_t out[SECRET_MAC_LEN],
                     size_t nparts, const void *const *parts, const size_t *lens)
{
    secret_mac *m = secret_mac_new(key, keylen);
    secret_mac_begin(m);
    for (size_t i = 0; i < nparts; i++)
        secret_mac_update(m, parts[i], lens[i]);
    secret_mac_end(m, out);
    secret_mac_free(m);
}

void secret_hmac(uint8_t out[SECRET_MAC_LEN], size_t nparts, const void *const *parts,
                 const size_t *lens)
{
    secret_hmac_key(secret, secret_len, out, nparts, parts, lens);
}

secret_mac *secret_mac_new(const uint8_t *key, size_t keylen)
{
    secret_mac *m = xcalloc(1, sizeof(*m));
    m->ctx = EVP_MAC_CTX_new(alg());
    must(m->ctx != NULL, "EVP_MAC_CTX_new");
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    /* EVP_MAC_init takes no empty key; HMAC pads keys with zero bytes, so
     * one zero byte is the same key as none (--insecure). */
    static const uint8_t none[1];
    must(EVP_MAC_init(m->ctx, keylen ? key : none, keylen ? keylen : 1, params),
         "EVP_MAC_init");
    return m;
}

void secret_mac_begin(secret_mac *m)
{
    must(EVP_MAC_init(m->ctx, NULL, 0, NULL), "EVP_MAC_init (again)");
}

void secret_mac_update(secret_mac *m, const void *data, size_t len)
{
    if (len > 0)
        must(EVP_MAC_update(m->ctx, data, len), "EVP_MAC_update");
}

void secret_mac_end(secret_mac *m, uint8_t out[SECRET_MAC_LEN])
{
    size_t n = 0;
    must(EVP_MAC_final(m->ctx, out, &n, SECRET_MAC_LEN) && n == SECRET_MAC_LEN,
         "EVP_MAC_final");
}

void secret_mac_free(secret_mac *m)
{
    if (m == NULL)
        return;
    EVP_MAC_CTX_free(m->ctx);
    free(m);
}

struct secret_gmac {
    EVP_CIPHER_CTX *ctx;
};

secret_gmac *secret_gmac_new(const uint8_t key[SECRET_GMAC_KEY_LEN])
{
    secret_gmac *g = xcalloc(1, sizeof(*g));
    g->ctx = EVP_CIPHER_CTX_new();
    must(g->ctx != NULL, "EVP_CIPHER_CTX_new");
    /* The key schedule once; each tag then sets only its nonce. */
    must(EVP_EncryptInit_ex(g->ctx, EVP_aes_256_gcm(), NULL, key, NULL), "EVP_EncryptInit_ex");
    return g;
}

void secret_gmac_begin(secret_gmac *g, uint64_t nonce)
{
    /* 96 bits: 4 zero bytes, then the nonce big-endian */
    uint8_t iv[12] = { 0 };
    util_put_be64(iv + 4, nonce);
    must(EVP_EncryptInit_ex(g->ctx, NULL, NULL, NULL, iv), "EVP_EncryptInit_ex (nonce)");
}

void secret_gmac_update(secret_gmac *g, const void *data, size_t len)
{
    int out = 0;
    /* No output buffer: the bytes are additional authenticated data. */
    if (len > 0)
        must(len <= INT_MAX && EVP_EncryptUpdate(g->ctx, NULL, &out, data, (int)len),
             "EVP_EncryptUpdate (AAD)");
}

void secret_gmac_end(secret_gmac *g, uint8_t out[SECRET_GMAC_LEN])
{
    uint8_t none[16];
    int n = 0;
    must(EVP_EncryptFinal_ex(g->ctx, none, &n) && n == 0, "EVP_EncryptFinal_ex");
    must(EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, SECRET_GMAC_LEN, out),
         "EVP_CTRL_GCM_GET_TAG");
}

void secret_gmac_free(secret_gmac *g)
{
    if (g == NULL)
        return;
    EVP_CIPHER_CTX_free(g->ctx);
    free(g);
}

bool secret_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void secret_random(void *out, size_t n)
{
    uint8_t *p = out;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            log_error("getrandom failed: %s; cannot make a nonce", strerror(errno));
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

char *secret_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int secret_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t n)
{
    if (hexlen != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
