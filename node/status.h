/* status: the plain-HTTP side of the client port: GET /healthz,
 * GET /api/status (id, ports, peers and their link state, client count,
 * message counters), GET /metrics, GET /api/history, and the web pages
 * (node/web.h). WebSocket upgrades on the same port go to clients. */
#ifndef DCHAT_STATUS_H
#define DCHAT_STATUS_H

#include "common/http_server.h"

/* The http_handler_fn of the client port (ud is the node). */
void status_handle(http_request *req, void *ud);

#endif
