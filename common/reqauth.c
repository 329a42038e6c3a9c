/* reqauth: see reqauth.h. The timestamp goes into the MAC as the same
 * decimal digits the header carries, so both sides hash the same bytes
 * without a canonical form to agree on. */
#include "common/reqauth.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* out = the MAC of the request; ts is the decimal timestamp as sent. */
static void request_mac(const char *method, const char *path, const char *ts, size_t tslen,
                        const char *body, size_t len, uint8_t out[SECRET_MAC_LEN])
{
    const void *parts[] = { REQAUTH_CONTEXT, method, "\n", path, "\n", ts, "\n",
                            len ? body : "" };
    const size_t lens[] = { strlen(REQAUTH_CONTEXT), strlen(method), 1, strlen(path), 1,
                            tslen, 1, len };
    secret_hmac(out, sizeof(parts) / sizeof(parts[0]), parts, lens);
}

void reqauth_sign(const char *method, const char *path, uint64_t wall_ms, const char *body,
                  size_t len, char out[REQAUTH_VALUE_MAX])
{
    char ts[24];
    int n = snprintf(ts, sizeof(ts), "%llu", (unsigned long long)wall_ms);
    uint8_t mac[SECRET_MAC_LEN];
    request_mac(method, path, ts, (size_t)n, body, len, mac);
    memcpy(out, ts, (size_t)n);
    out[n] = '.';
    secret_hex(mac, sizeof(mac), out + n + 1);
}

int reqauth_check(const char *value, const char *method, const char *path, const char *body,
                  size_t len, uint64_t now_ms, uint64_t *ts_ms, uint8_t mac[SECRET_MAC_LEN])
{
    if (value == NULL)
        return REQAUTH_MISSING;
    const char *dot = strchr(value, '.');
    size_t tslen = dot ? (size_t)(dot - value) : 0;
    /* 15 digits reach the year 33658: enough, and no overflow below. */
    if (tslen == 0 || tslen > 15 || (tslen > 1 && value[0] == '0'))
        return REQAUTH_MALFORMED;
    uint64_t ts = 0;
    for (size_t i = 0; i < tslen; i++) {
        if (value[i] < '0' || value[i] > '9')
            return REQAUTH_MALFORMED;
        ts = ts * 10 + (uint64_t)(value[i] - '0');
    }
    uint8_t got[SECRET_MAC_LEN], want[SECRET_MAC_LEN];
    if (secret_unhex(dot + 1, strlen(dot + 1), got, sizeof(got)) != 0)
        return REQAUTH_MALFORMED;
    request_mac(method, path, value, tslen, body, len, want);
    if (!secret_equal(got, want, sizeof(got)))
        return REQAUTH_BAD_MAC;
    *ts_ms = ts;
    if (mac != NULL)
        memcpy(mac, got, sizeof(got));
    bool early = ts > now_ms && ts - now_ms > REQAUTH_WINDOW_MS;
    bool late = now_ms > ts && now_ms - ts > REQAUTH_WINDOW_MS;
    return early || late ? REQAUTH_CLOCK : REQAUTH_OK;
}
