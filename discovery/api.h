/* api: the HTTP/JSON API of discovery (wire-compatible with the DSatter
 * discovery service; docs/DISCOVERY.md has every request and answer). */
#ifndef DCHAT_API_H
#define DCHAT_API_H

#include <stdint.h>

#include "common/http_server.h"
#include "discovery/registry.h"

struct api {
    registry *reg;
    uint64_t ttl_ms;
};

/* The http_handler_fn of discovery; ud is a struct api. */
void api_handle(http_request *req, void *ud);

#endif
