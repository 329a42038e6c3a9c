/* secret: the cluster secret, shared by every node and discovery, and the
 * few primitives built on it: HMAC-SHA256 and GMAC (libcrypto),
 * constant-time comparison, random nonces, hex. The secret comes from a file
 * (--cluster-secret-file) or the environment (DCHAT_CLUSTER_SECRET); a
 * program started without one refuses to run unless it was given
 * --insecure, and then uses the empty secret (so the protocols are the
 * same, but anyone can speak them). Owns nothing but a process-wide copy
 * of the secret's bytes. */
#ifndef DCHAT_SECRET_H
#define DCHAT_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRET_ENV "DCHAT_CLUSTER_SECRET"
#define SECRET_MIN 16   /* bytes: shorter ones are refused */
#define SECRET_MAX 1024
#define SECRET_MAC_LEN 32

/* Loads the secret: from file when not NULL, else from the environment.
 * Surrounding whitespace (a trailing newline) is not part of it. With
 * neither: 0 when insecure (the empty secret), else -1. Returns 0 or -1
 * with err saying what failed and what to do. */
int secret_load(const char *file, bool insecure, char *err, size_t errlen);

/* Whether a secret is in force (false: --insecure). */
bool secret_present(void);

/* Sets the secret directly (tests). len 0: none. */
void secret_set(const void *data, size_t len);

/* An HMAC-SHA256 being computed, keyed with the secret or a derived key. */
typedef struct secret_mac secret_mac;

/* out = HMAC-SHA256(the secret, the parts in order); nparts pairs of
 * (pointer, length). */
void secret_hmac(uint8_t out[SECRET_MAC_LEN], size_t nparts, const void *const *parts,
                 const size_t *lens);

/* The same with an explicit key. */
void secret_hmac_key(const uint8_t *key, size_t keylen, uint8_t out[SECRET_MAC_LEN],
                     size_t nparts, const void *const *parts, const size_t *lens);

/* Incremental HMAC with a fixed key (for the per-link record MACs): new
 * keys it once; begin starts a MAC, update adds bytes, end finishes it. */
secret_mac *secret_mac_new(const uint8_t *key, size_t keylen);
void secret_mac_begin(secret_mac *m);
void secret_mac_update(secret_mac *m, const void *data, size_t len);
void secret_mac_end(secret_mac *m, uint8_t out[SECRET_MAC_LEN]);
void secret_mac_free(secret_mac *m);

/* GMAC: AES-256-GCM's tag over data that is authenticated, not encrypted
 * (NIST SP 800-38D), for the per-link record MACs when both nodes speak
 * it. About five times faster per byte than HMAC-SHA256 on a CPU with AES
 * and carry-less multiply instructions. A nonce must never repeat under
 * one key: the links use a fresh key per link and direction and count
 * records from 0. new keys it once; begin starts a tag with that nonce,
 * update adds bytes, end finishes it. */
#define SECRET_GMAC_KEY_LEN 32
#define SECRET_GMAC_LEN 16
typedef struct secret_gmac secret_gmac;
secret_gmac *secret_gmac_new(const uint8_t key[SECRET_GMAC_KEY_LEN]);
void secret_gmac_begin(secret_gmac *g, uint64_t nonce);
void secret_gmac_update(secret_gmac *g, const void *data, size_t len);
void secret_gmac_end(secret_gmac *g, uint8_t out[SECRET_GMAC_LEN]);
void secret_gmac_free(secret_gmac *g);

/* Constant-time equality of n bytes. */
bool secret_equal(const void *a, const void *b, size_t n);

/* n random bytes from the kernel (getrandom). Aborts if it cannot: no
 * nonce is better than a guessable one. */
void secret_random(void *out, size_t n);

/* Lower-case hex of n bytes into out (2n + 1 bytes). Returns out. */
char *secret_hex(const uint8_t *in, size_t n, char *out);

/* Parses exactly 2n hex digits. Returns 0 or -1. */
int secret_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t n);

#endif
