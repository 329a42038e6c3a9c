/* status: see status.h. Answers are built with jansson: they are rare and
 * small, unlike the message path. */
#include "node/status.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "node/clients.h"
#include "node/flow.h"
#include "node/history.h"
#include "node/membership.h"
#include "node/mesh.h"
#include "node/node.h"
#include "node/relay.h"

static json_t *status_json(const node *n)
{
    /* Each module counts its own: the relay the messages, clients their
     * errors, the mesh (its sync) what catch-up sent. */
    const struct relay_counters *c = relay_counters(n);
    json_t *o = json_pack(
        "{s:I, s:i, s:i, s:{s:s, s:b}, s:o, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, "
        "s:o, s:{s:I, s:I, s:I, s:I}, s:I}",
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
        "clientErrors", (json_int_t)clients_errors(n->clients),
        "duplicatesDropped", (json_int_t)c->dropped_dup,
        "gapsDropped", (json_int_t)c->dropped_gap,
        "caughtUpToPeers", (json_int_t)(n->mesh ? mesh_caught_up(n->mesh) : 0),
        "history", history_digest((node *)n),
        "flow",
        "pausedClients", (json_int_t)flow_paused(n, FLOW_CLIENT),
        "pausedPeers", (json_int_t)flow_paused(n, FLOW_PEER),
        "congestedClients", (json_int_t)(n->flow ? flow_clients_class((node *)n)->ncongested : 0),
        "congestedLinks", (json_int_t)(n->flow ? flow_links_class((node *)n)->ncongested : 0),
        "uptimeMs", (json_int_t)(util_now_ms() - n->started_ms));
    json_object_set_new(o, "linksRefused",
                        json_integer((json_int_t)(n->mesh ? mesh_links_refused(n->mesh) : 0)));
    json_object_set_new(o, "linksUnauthenticated",
                        json_integer((json_int_t)(n->mesh ? mesh_links_unauthenticated(n->mesh)
                                                          : 0)));
    json_object_set_new(o, "forgedDropped",
                        json_integer((json_int_t)(n->mesh ? mesh_forged_dropped(n->mesh) : 0)));
    return o;
}

static void method_not_allowed(http_request *req, const char *allow, const char *msg)
{
    http_answer_add_header(req, "Allow", allow);
    http_respond_error(req, 405, "%s", msg);
}

void status_handle(http_request *req, void *ud)
{
    node *n = ud;
    bool is_get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

    if (strcmp(req->path, "/healthz") == 0) {
        if (!is_get)
            method_not_allowed(req, "GET, HEAD", "use GET on /healthz");
        else
            http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
    } else if (strcmp(req->path, "/api/status") == 0) {
        if (!is_get)
            method_not_allowed(req, "GET, HEAD", "use GET on /api/status");
        else
            http_respond_json(req, 200, status_json(n));
    } else if (n->cfg.test_hooks && strcmp(req->path, "/api/test/cut-link") == 0) {
        long peer = 0, ms = 0;
        if (strcmp(req->method, "POST") != 0)
            method_not_allowed(req, "POST", "use POST on /api/test/cut-link");
        else if (sscanf(req->query, "peer=%ld&ms=%ld", &peer, &ms) != 2 || peer <= 0 ||
                 ms < 0 || ms > 600000)
            http_respond_error(req, 400, "expected ?peer=N&ms=M");
        else if (mesh_test_cut(n->mesh, (uint32_t)peer, (unsigned)ms) != 0)
            http_respond_error(req, 404, "no peer %ld", peer);
        else
            http_respond_json(req, 200, json_pack("{s:b}", "cut", 1));
    } else if (strcmp(req->path, "/api/history") == 0) {
        if (!is_get)
            method_not_allowed(req, "GET, HEAD", "use GET on /api/history");
        else
            history_http(n, req);
    } else {
        http_respond_error(req, 404, "no such path %s: this port serves WebSocket "
                           "clients, GET /healthz, GET /api/status and GET /api/history",
                           req->path);
    }
}
