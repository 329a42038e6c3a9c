/* api: the HTTP/JSON API of discovery (wire-compatible with the DSatter
 * discovery service; docs/DISCOVERY.md has every request and answer). The
 * POST routes, which change what discovery tells clients and nodes, take
 * only requests signed with the cluster secret (common/reqauth.h), each
 * once (discovery/replay.h); registrations are rate-limited per source
 * address (discovery/ratelimit.h). The lists and GET /metrics stay open to
 * anyone. */
#ifndef DCHAT_API_H
#define DCHAT_API_H

#include <stdbool.h>
#include <stdint.h>

#include "common/http_server.h"
#include "discovery/ratelimit.h"
#include "discovery/registry.h"
#include "discovery/replay.h"

/* Everything is owned by main, which opens and frees it. */
struct api {
    registry *reg;
    uint64_t ttl_ms;
    bool insecure;          /* no cluster secret: POSTs are not checked */
    replay *seen;           /* MACs already accepted */
    ratelimit *registrations;
    unsigned register_burst, register_per_second; /* for the 429 text */
    uint64_t started_wall_ms;  /* for process_start_time_seconds */
    struct {                   /* answered requests, for GET /metrics */
        uint64_t registrations, logins, logouts, heartbeats;
        uint64_t refused_auth, rate_limited;
    } counts;
};

/* The http_handler_fn of discovery; ud is a struct api. */
void api_handle(http_request *req, void *ud);

#endif
