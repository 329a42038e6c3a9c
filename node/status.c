/* status: see status.h. Answers are built with jansson: they are rare and
 * small, unlike the message path. */
#include "node/status.h"

#include <string.h>

#include "common/util.h"
#include "node/clients.h"
#include "node/membership.h"
#include "node/mesh.h"
#include "node/node.h"

static json_t *status_json(const node *n)
{
    const struct node_counters *c = &n->counters;
    return json_pack(
        "{s:I, s:i, s:i, s:{s:s, s:b}, s:o, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:I}",
        "id", (json_int_t)n->id,
        "clientport", n->client_port,
        "syncport", n->sync_port,
        "discovery", "url", n->cfg.discovery_url, "active", membership_active(n),
        "peers", mesh_status(n->mesh),
        "clients", (json_int_t)clients_count(n->clients),
        "messages",
        "fromClients", (json_int_t)c->client_msgs_in,
        "fromPeers", (json_int_t)c->peer_msgs_in,
        "toPeers", (json_int_t)c->peer_msgs_out,
        "toClients", (json_int_t)c->client_frames_out,
        "clientErrors", (json_int_t)c->client_errors,
        "duplicatesDropped", (json_int_t)c->dropped_dup,
        "uptimeMs", (json_int_t)(util_now_ms() - n->started_ms));
}

void status_handle(http_request *req, void *ud)
{
    node *n = ud;
    bool is_get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

    if (strcmp(req->path, "/healthz") == 0) {
        if (!is_get)
            http_respond_error(req, 405, "use GET on /healthz");
        else
            http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
    } else if (strcmp(req->path, "/api/status") == 0) {
        if (!is_get)
            http_respond_error(req, 405, "use GET on /api/status");
        else
            http_respond_json(req, 200, status_json(n));
    } else {
        http_respond_error(req, 404, "no such path %s: this port serves WebSocket "
                           "clients, GET /healthz and GET /api/status", req->path);
    }
}
