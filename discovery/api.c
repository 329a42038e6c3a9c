/* api: see api.h. A POST is checked in this order: the route and method,
 * the X-Dchat-Auth proof (401), the body (400), the node's credentials
 * (401), the other fields (400), and for a registration the rate (429).
 * Every handler validates its body with json_util, so an error names the
 * field; credentials are checked before anything changes.
 * Lists are filtered for expiry when they are answered, so they are exact
 * whatever the sweep timer's phase. A known path asked with another method
 * gets 405 with an Allow header; HEAD is answered like GET, without the
 * body. */
#include "discovery/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/netaddr.h"
#include "common/reqauth.h"
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

/* Logs a refusal, one line a second at most whatever the number: someone
 * without the secret must not be able to fill the disk with our logs. */
static void refusal_log(const http_request *req, const char *text)
{
    static uint64_t logged_ms;
    static unsigned unlogged;
    uint64_t now = util_now_ms();
    if (logged_ms != 0 && now - logged_ms < 1000) {
        unlogged++;
        return;
    }
    if (unlogged > 0)
        log_warn("refused %s %s from %s: %s (and %u more refusals in the last second or so)",
                 req->method, req->path, req->peer_addr, text, unlogged);
    else
        log_warn("refused %s %s from %s: %s", req->method, req->path, req->peer_addr, text);
    logged_ms = now;
    unlogged = 0;
}

static void route_register(struct api *a, http_request *req, json_t *body)
{
    char err[256];
    const char *pw;
    if (json_util_get_string(body, "password", API_PASSWORD_MAX, &pw, err, sizeof(err)) != 0) {
        http_respond_error(req, 400, "%s", err);
        return;
    }
    uint64_t retry_ms;
    if (ratelimit_take(a->registrations, req->peer_addr, util_now_ms(), &retry_ms) != 0) {
        char secs[24];
        snprintf(secs, sizeof(secs), "%llu", (unsigned long long)((retry_ms + 999) / 1000));
        http_answer_add_header(req, "Retry-After", secs);
        a->counts.rate_limited++;
        refusal_log(req, "registrations over the rate");
        http_respond_error(req, 429, "too many registrations from %s (at most %u at once, "
                           "then %u a second); retry after %s s", req->peer_addr,
                           a->register_burst, a->register_per_second, secs);
        return;
    }
    int64_t id = registry_register(a->reg, pw);
    if (id < 1) {
        http_respond_error(req, 500, "cannot store the node; see the discovery log");
        return;
    }
    a->counts.registrations++;
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
    if (!netaddr_is_host(address)) {
        http_respond_error(req, 400, "field \"address\" must be an IP address or a host "
                           "name (letters, digits, hyphens and dots), without a port, path "
                           "or spaces");
        return;
    }
    registry_login(a->reg, id, (int)sp, (int)cp, address, util_now_ms());
    a->counts.logins++;
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
    a->counts.logouts++;
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
    a->counts.heartbeats++;
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

/* GET /metrics: docs/METRICS.md. */
static void route_metrics(struct api *a, http_request *req, json_t *body)
{
    struct metrics_out m;
    size_t count;
    registry_expire(a->reg, util_now_ms(), a->ttl_ms);
    registry_active(a->reg, &count);
    metrics_init(&m);
    metrics_gauge(&m, "dchat_discovery_active_nodes", "Nodes logged in and heartbeating now.",
                  (double)count);
    metrics_counter(&m, "dchat_discovery_registrations_total",
                    "Nodes registered (POST /api/nodes/register answered 200).",
                    a->counts.registrations);
    metrics_counter(&m, "dchat_discovery_logins_total", "Logins answered 200.",
                    a->counts.logins);
    metrics_counter(&m, "dchat_discovery_logouts_total", "Logouts answered 200.",
                    a->counts.logouts);
    metrics_counter(&m, "dchat_discovery_heartbeats_total", "Heartbeats answered 200.",
                    a->counts.heartbeats);
    metrics_counter(&m, "dchat_discovery_expiries_total",
                    "Nodes made inactive for want of a heartbeat within the TTL.",
                    registry_expired_total(a->reg));
    metrics_counter(&m, "dchat_discovery_refused_unsigned_total",
                    "Requests refused with 401 for a missing, wrong, replayed or skewed proof "
                    "of the cluster secret.", a->counts.refused_auth);
    metrics_counter(&m, "dchat_discovery_rate_limited_total",
                    "Registrations refused with 429 (over the per-address rate).",
                    a->counts.rate_limited);
    metrics_process(&m, a->started_wall_ms);
    http_respond(req, 200, METRICS_CONTENT_TYPE, m.buf, m.len);
    free(m.buf);
}

static void route_health(struct api *a, http_request *req, json_t *body)
{
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static const struct route {
    const char *path;
    const char *method;
    bool has_body;
    bool signed_only;   /* must carry a valid X-Dchat-Auth */
    route_fn fn;
} routes[] = {
    { "/api/nodes/register", "POST", true, true, route_register },
    { "/api/nodes/active/login", "POST", true, true, route_login },
    { "/api/nodes/active/logout", "POST", true, true, route_logout },
    { "/api/nodes/active/heartbeat", "POST", true, true, route_heartbeat },
    { "/api/nodes/active", "GET", false, false, route_active },
    { "/api/clients", "GET", false, false, route_clients },
    { "/healthz", "GET", false, false, route_health },
    { "/metrics", "GET", false, false, route_metrics },
};

/* Answers 401 {"error": text, "reason": reason} and logs who was refused. */
static void refuse_auth(http_request *req, const char *reason, const char *text)
{
    refusal_log(req, text);
    http_respond_json(req, 401, json_pack("{s:s, s:s}", "error", text, "reason", reason));
}

/* Checks the request's proof of the cluster secret; answers 401 itself.
 * Returns 0 when the request may go on. */
static int check_signed(struct api *a, http_request *req)
{
    if (a->insecure)
        return 0;
    uint64_t now = util_wall_ms(), ts = 0;
    uint8_t mac[SECRET_MAC_LEN];
    char text[300];
    int rc = reqauth_check(http_request_header(req, REQAUTH_HEADER), req->method, req->path,
                           req->body, req->body_len, now, &ts, mac);
    switch (rc) {
    case REQAUTH_OK:
        break;
    case REQAUTH_MISSING:
        refuse_auth(req, "secret", "the cluster secret is missing: the request has no "
                    REQAUTH_HEADER " header; give the node the cluster's secret "
                    "(--cluster-secret-file or DCHAT_CLUSTER_SECRET)");
        return -1;
    case REQAUTH_MALFORMED:
        refuse_auth(req, "secret", "the cluster secret is missing or wrong: "
                    REQAUTH_HEADER " must be <unix ms>.<64 hex digits of the HMAC>; see "
                    "docs/DISCOVERY.md");
        return -1;
    case REQAUTH_CLOCK:
        snprintf(text, sizeof(text), "the clocks differ: the request was signed at %llu, "
                 "%lld ms from discovery's clock (%llu), more than the %d ms allowed; "
                 "synchronise the clocks (NTP)", (unsigned long long)ts,
                 (long long)ts - (long long)now, (unsigned long long)now, REQAUTH_WINDOW_MS);
        refuse_auth(req, "clock", text);
        return -1;
    default:
        refuse_auth(req, "secret", "the cluster secret is wrong: " REQAUTH_HEADER " does not "
                    "match; give every node and discovery the same secret");
        return -1;
    }
    if (replay_seen(a->seen, mac, ts, now)) {
        refuse_auth(req, "replay", "replayed request: this " REQAUTH_HEADER " was already "
                    "used, or is older than discovery can still check; sign every request "
                    "afresh");
        return -1;
    }
    return 0;
}

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
        if (r->signed_only && check_signed(a, req) != 0) {
            a->counts.refused_auth++;
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
