/* api: see api.h. Every handler validates its body with json_util, so an
 * error names the field; credentials are checked before anything changes.
 * Lists are filtered for expiry when they are answered, so they are exact
 * whatever the sweep timer's phase. A known path asked with another method
 * gets 405 with an Allow header; HEAD is answered like GET, without the
 * body. */
#include "discovery/api.h"

#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "common/log.h"
#include "common/util.h"

#define API_PASSWORD_MAX 256

typedef void (*route_fn)(struct api *a, http_request *req, json_t *body);

static json_t *node_entry(const struct registry_node *n)
{
    return json_pack("{s:I, s:i, s:i, s:s}", "id", (json_int_t)n->id, "syncport",
                     n->syncport, "clientport", n->clientport, "address", n->address);
}

/* The active nodes other than self (0 = all), as DSatter's activeNodes. */
static json_t *active_list(struct api *a, int64_t self)
{
    size_t count;
    registry_expire(a->reg, util_now_ms(), a->ttl_ms);
    const struct registry_node *list = registry_active(a->reg, &count);
    json_t *arr = json_array();
    for (size_t i = 0; i < count; i++)
        if (list[i].id != self)
            json_array_append_new(arr, node_entry(&list[i]));
    return arr;
}

/* Reads and checks "id" and "password"; answers 400/401 itself. */
static int credentials(struct api *a, http_request *req, json_t *body, int64_t *id)
{
    char err[256];
    json_int_t jid;
    const char *pw;
    if (json_util_get_int(body, "id", 1, INT64_MAX, &jid, err, sizeof(err)) != 0 ||
        json_util_get_string(body, "password", API_PASSWORD_MAX, &pw, err, sizeof(err)) != 0) {
        http_respond_error(req, 400, "%s", err);
        return -1;
    }
    if (registry_check(a->reg, (int64_t)jid, pw) != 0) {
        http_respond_error(req, 401, "invalid credentials");
        return -1;
    }
    *id = (int64_t)jid;
    return 0;
}

static void route_register(struct api *a, http_request *req, json_t *body)
{
    char err[256];
    const char *pw;
    if (json_util_get_string(body, "password", API_PASSWORD_MAX, &pw, err, sizeof(err)) != 0) {
        http_respond_error(req, 400, "%s", err);
        return;
    }
    int64_t id = registry_register(a->reg, pw);
    if (id < 1) {
        http_respond_error(req, 500, "cannot store the node; see the discovery log");
        return;
    }
    log_info("registered node %lld from %s", (long long)id, req->peer_addr);
    http_respond_json(req, 200, json_pack("{s:I, s:s}", "id", (json_int_t)id, "password", pw));
}

static void route_login(struct api *a, http_request *req, json_t *body)
{
    char err[256];
    int64_t id;
    json_int_t sp, cp;
    const char *address = req->peer_addr;
    if (credentials(a, req, body, &id) != 0)
        return;
    if (json_util_get_int(body, "syncport", 1, 65535, &sp, err, sizeof(err)) != 0 ||
        json_util_get_int(body, "clientport", 1, 65535, &cp, err, sizeof(err)) != 0) {
        http_respond_error(req, 400, "%s", err);
        return;
    }
    if (json_object_get(body, "address") != NULL &&
        json_util_get_string(body, "address", 63, &address, err, sizeof(err)) != 0) {
        http_respond_error(req, 400, "%s", err);
        return;
    }
    registry_login(a->reg, id, (int)sp, (int)cp, address, util_now_ms());
    log_info("node %lld logged in: %s sync %d client %d", (long long)id, address,
             (int)sp, (int)cp);
    http_respond_json(req, 200,
                      json_pack("{s:I, s:i, s:i, s:s, s:o}", "id", (json_int_t)id,
                                "syncport", (int)sp, "clientport", (int)cp,
                                "address", address, "activeNodes", active_list(a, id)));
}

static void route_logout(struct api *a, http_request *req, json_t *body)
{
    int64_t id;
    if (credentials(a, req, body, &id) != 0)
        return;
    registry_logout(a->reg, id);
    log_info("node %lld logged out", (long long)id);
    http_respond_json(req, 200, json_pack("{s:o}", "activeNodes", active_list(a, id)));
}

static void route_heartbeat(struct api *a, http_request *req, json_t *body)
{
    int64_t id;
    if (credentials(a, req, body, &id) != 0)
        return;
    if (registry_heartbeat(a->reg, id, util_now_ms()) != 0) {
        http_respond_error(req, 404, "node %lld is not logged in; log in first",
                           (long long)id);
        return;
    }
    http_respond_json(req, 200, json_pack("{s:o}", "activeNodes", active_list(a, id)));
}

static void route_active(struct api *a, http_request *req, json_t *body)
{
    http_respond_json(req, 200, json_pack("{s:o}", "activeNodes", active_list(a, 0)));
}

/* DSatter clients take the first entry and build their URL from the values
 * in order: exactly "address" then "clientport", shuffled so that clients
 * spread over the nodes. */
static void route_clients(struct api *a, http_request *req, json_t *body)
{
    size_t count;
    registry_expire(a->reg, util_now_ms(), a->ttl_ms);
    const struct registry_node *list = registry_active(a->reg, &count);
    size_t *order = xmalloc((count ? count : 1) * sizeof(*order));
    for (size_t i = 0; i < count; i++)
        order[i] = i;
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)rand() % i;
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "address", json_string(list[order[i]].address));
        json_object_set_new(e, "clientport", json_integer(list[order[i]].clientport));
        json_array_append_new(arr, e);
    }
    free(order);
    http_respond_json(req, 200, json_pack("{s:o}", "activeNodes", arr));
}

static void route_health(struct api *a, http_request *req, json_t *body)
{
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static const struct route {
    const char *path;
    const char *method;
    bool has_body;
    route_fn fn;
} routes[] = {
    { "/api/nodes/register", "POST", true, route_register },
    { "/api/nodes/active/login", "POST", true, route_login },
    { "/api/nodes/active/logout", "POST", true, route_logout },
    { "/api/nodes/active/heartbeat", "POST", true, route_heartbeat },
    { "/api/nodes/active", "GET", false, route_active },
    { "/api/clients", "GET", false, route_clients },
    { "/healthz", "GET", false, route_health },
};

void api_handle(http_request *req, void *ud)
{
    struct api *a = ud;
    for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
        const struct route *r = &routes[i];
        if (strcmp(req->path, r->path) != 0)
            continue;
        /* HEAD on a GET route is answered as GET; the server sends only
         * the header section (RFC 9110 9.3.2). */
        bool get_route = strcmp(r->method, "GET") == 0;
        if (strcmp(req->method, r->method) != 0 &&
            !(get_route && strcmp(req->method, "HEAD") == 0)) {
            http_answer_add_header(req, "Allow", get_route ? "GET, HEAD" : r->method);
            http_respond_error(req, 405, "method %s not allowed on %s; use %s",
                               req->method, r->path, r->method);
            return;
        }
        json_t *body = NULL;
        if (r->has_body) {
            char err[256];
            body = json_util_parse_object(req->body, req->body_len, err, sizeof(err));
            if (body == NULL) {
                http_respond_error(req, 400, "%s", err);
                return;
            }
        }
        r->fn(a, req, body);
        json_decref(body);
        return;
    }
    http_respond_error(req, 404, "no such path: %s", req->path);
}
