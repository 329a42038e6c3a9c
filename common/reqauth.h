/* reqauth: the X-Dchat-Auth header, by which a node proves to discovery
 * that it knows the cluster secret without sending it. The value is
 * "<unix ms>.<hex HMAC-SHA256(secret, REQAUTH_CONTEXT METHOD \n PATH \n
 * <unix ms> \n BODY)>" (docs/DISCOVERY.md, 3.1). Nodes sign each request
 * with reqauth_sign(); discovery checks with reqauth_check() and keeps the
 * replay cache itself (discovery/replay.c). Pure functions over the
 * process secret (common/secret.h); owns nothing. */
#ifndef DCHAT_REQAUTH_H
#define DCHAT_REQAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/secret.h"

#define REQAUTH_HEADER "X-Dchat-Auth"
/* What the MAC covers first, so that it can never be mistaken for a MAC of
 * another protocol keyed with the same secret. */
#define REQAUTH_CONTEXT "dchat-discovery-v1\n"
/* A signed request is accepted this far either side of discovery's clock. */
#define REQAUTH_WINDOW_MS 60000
/* Room for the header value: up to 15 digits, '.', 64 hex digits, NUL. */
#define REQAUTH_VALUE_MAX (15 + 1 + 2 * SECRET_MAC_LEN + 1)

enum reqauth_result {
    REQAUTH_OK = 0,
    REQAUTH_MISSING = -1,   /* no header */
    REQAUTH_MALFORMED = -2, /* not "<digits>.<64 hex>" */
    REQAUTH_BAD_MAC = -3,   /* well formed, but not made with our secret */
    REQAUTH_CLOCK = -4,     /* right MAC, timestamp outside the window */
};

/* Writes into out the header value for method path with body (len bytes,
 * body may be NULL when len is 0), signed at wall_ms (unix time in ms).
 * path is the API path ("/api/nodes/register"), without a query and
 * without a prefix a proxy would strip. */
void reqauth_sign(const char *method, const char *path, uint64_t wall_ms, const char *body,
                  size_t len, char out[REQAUTH_VALUE_MAX]);

/* Checks value (NULL: no header) for method path body against the secret,
 * then its timestamp against now_ms (unix ms) +- REQAUTH_WINDOW_MS. The
 * MAC is checked first, so a wrong secret is reported as such whatever the
 * clocks. On REQAUTH_OK, and on REQAUTH_CLOCK, *ts_ms and mac (may be
 * NULL) get what the header carried, for the replay cache and for the log.
 * Returns one of enum reqauth_result. */
int reqauth_check(const char *value, const char *method, const char *path, const char *body,
                  size_t len, uint64_t now_ms, uint64_t *ts_ms,
                  uint8_t mac[SECRET_MAC_LEN]);

#endif
