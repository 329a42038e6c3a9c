/* status: see status.h. Answers are built with jansson: they are rare and
 * small, unlike the message path. GET /metrics writes the same counters in
 * the Prometheus text format (docs/METRICS.md). */
#include "node/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/metrics.h"
#include "common/util.h"
#include "node/clients.h"
#include "node/flow.h"
#include "node/history.h"
#include "node/membership.h"
#include "node/mesh.h"
#include "node/node.h"
#include "node/relay.h"
#include "node/store.h"
#include "node/web.h"

static const char *const own_states[] = { "open", "waiting", "behind" };

/* history.own: whether the node numbers its clients' messages now, and
 * what holds it back (relay.h, relay_own). */
static json_t *own_json(const node *n)
{
    struct relay_own own;
    relay_own(n, &own);
    return json_pack("{s:s, s:I, s:I, s:I, s:I}", "numbering", own_states[own.state],
                     "highest", (json_int_t)own.highest, "peersHighest",
                     (json_int_t)own.peers_highest, "behind", (json_int_t)own.behind,
                     "conflicts", (json_int_t)own.conflicts);
}

static json_t *status_json(const node *n)
{
    /* Each module counts its own: the relay the messages, clients their
     * errors, the mesh (its sync) what catch-up sent. */
    const struct relay_counters *c = relay_counters(n);
    json_t *o = json_pack(
        "{s:I, s:i, s:i, s:{s:s, s:b}, s:o, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I}, "
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
        "backfilledToPeers", (json_int_t)(n->mesh ? mesh_backfilled(n->mesh) : 0),
        "backfilledFromPeers", (json_int_t)c->backfilled,
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
    json_t *history = json_object_get(o, "history");
    if (json_is_object(history))
        json_object_set_new(history, "own", own_json(n));
    size_t memberships, rooms = clients_rooms(n->clients, &memberships);
    json_object_set_new(o, "rooms", json_pack("{s:I, s:I}", "rooms", (json_int_t)rooms,
                                              "memberships", (json_int_t)memberships));
    return o;
}

/* Bytes of DATA_DIR/history.db and its WAL; what stat cannot read counts 0. */
static uint64_t history_file_bytes(const node *n)
{
    static const char *const suffix[] = { "", "-wal" };
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char path[600];
        struct stat st;
        snprintf(path, sizeof(path), "%s/history.db%s", n->cfg.data_dir, suffix[i]);
        if (stat(path, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    return total;
}

/* A family with one sample per connection class: clients, peers. */
static void per_class(struct metrics_out *m, const char *name, const char *type,
                      const char *help, uint64_t clients, uint64_t peers)
{
    metrics_family(m, name, type, help);
    metrics_u64(m, name, "class", "clients", clients);
    metrics_u64(m, name, "class", "peers", peers);
}

static void status_metrics(const node *n, struct metrics_out *m)
{
    const struct relay_counters *c = relay_counters(n);
    metrics_counter(m, "dchat_messages_from_clients_total",
                    "Messages accepted from this node's clients (newMessageFromClient).",
                    c->client_msgs_in);
    metrics_counter(m, "dchat_messages_from_peers_total",
                    "Messages received on peer links, live or by catch-up, duplicates and "
                    "refusals included (forged ones not).", c->peer_msgs_in);
    metrics_counter(m, "dchat_messages_to_peers_total",
                    "Messages relayed live to peers, one per peer link.", c->peer_msgs_out);
    metrics_counter(m, "dchat_deliveries_total",
                    "Message frames queued to this node's clients, one per client.",
                    c->client_frames_out);
    metrics_counter(m, "dchat_duplicates_dropped_total",
                    "Messages from peers already held, dropped.", c->dropped_dup);
    metrics_counter(m, "dchat_gaps_dropped_total",
                    "Messages from peers refused because an earlier one of their origin was "
                    "missing (anti-entropy repairs it).", c->dropped_gap);
    metrics_counter(m, "dchat_catchup_messages_sent_total",
                    "Messages sent to peers by anti-entropy catch-up.",
                    n->mesh ? mesh_caught_up(n->mesh) : 0);
    metrics_counter(m, "dchat_backfill_messages_sent_total",
                    "Of the catch-up messages sent, rows held below this node's low-water mark "
                    "of their origin, to peers that had skipped past them.",
                    n->mesh ? mesh_backfilled(n->mesh) : 0);
    metrics_counter(m, "dchat_backfill_messages_taken_total",
                    "Rows below this node's low-water mark of their origin that it lacked and "
                    "took from a peer's backfill.", c->backfilled);
    metrics_counter(m, "dchat_catchup_messages_received_total",
                    "Messages peers sent this node by anti-entropy catch-up.", c->repair_in);
    metrics_counter(m, "dchat_gaps_repaired_total",
                    "Messages this node lacked and took from a peer's catch-up.", c->repaired);
    static const char *const sources[] = { "client", "peer" };
    metrics_family(m, "dchat_message_in_node_seconds", "histogram",
                   "Per message delivered to local clients, by where it came from: the time "
                   "from its read to the end of the loop turn that wrote it to the clients' "
                   "sockets (a client's message includes its commit).");
    for (int s = RELAY_FROM_CLIENT; s <= RELAY_FROM_PEER; s++)
        metrics_histogram_samples(m, "dchat_message_in_node_seconds", "source", sources[s],
                                  relay_in_node_seconds(n, (enum relay_source)s));
    metrics_counter(m, "dchat_client_errors_total",
                    "Error frames sent to clients for requests that could not be taken.",
                    clients_errors(n->clients));
    metrics_gauge(m, "dchat_clients", "WebSocket clients connected now.",
                  (double)clients_count(n->clients));
    size_t memberships, rooms = clients_rooms(n->clients, &memberships);
    metrics_gauge(m, "dchat_chat_rooms", "Chat rooms with at least one client of this node.",
                  (double)rooms);
    metrics_gauge(m, "dchat_chat_room_memberships",
                  "Clients' memberships in chat rooms, over all rooms (clients that never "
                  "subscribed take every chat and are in none).", (double)memberships);
    metrics_counter(m, "dchat_http_reads_deferred_total",
                    "Reads of the client port's HTTP connections (requests, WebSocket "
                    "handshakes) left for a later loop turn, past the 32 handled per turn: "
                    "a reconnect storm being spread out.",
                    n->http != NULL ? http_server_deferred(n->http) : 0);
    metrics_counter(m, "dchat_client_connects_total", "WebSocket clients accepted.",
                    clients_connects(n->clients));
    metrics_family(m, "dchat_client_disconnects_total", "counter",
                   "WebSocket clients gone, by close code (the node's, or the client's when "
                   "it closed first; 1006: no close frame).");
    for (size_t k = 0; k <= CLIENTS_CLOSE_CODES; k++) {
        char code[16];
        if (k < CLIENTS_CLOSE_CODES)
            snprintf(code, sizeof(code), "%d", clients_close_codes[k]);
        else
            snprintf(code, sizeof(code), "other");
        metrics_u64(m, "dchat_client_disconnects_total", "code", code,
                    clients_disconnects(n->clients, k));
    }

    unsigned by_state[MESH_LINK_STATES] = { 0 };
    if (n->mesh != NULL)
        mesh_link_states(n->mesh, by_state);
    metrics_family(m, "dchat_peer_links", "gauge",
                   "Links to the other active nodes, by state (down: no link at all).");
    for (size_t k = 0; k < MESH_LINK_STATES; k++)
        metrics_u64(m, "dchat_peer_links", "state", mesh_link_state_names[k], by_state[k]);
    metrics_counter(m, "dchat_peer_links_refused_total",
                    "Peer links refused (a hello for a node already linked, and the like).",
                    n->mesh ? mesh_links_refused(n->mesh) : 0);
    metrics_counter(m, "dchat_peer_links_unauthenticated_total",
                    "Peer links that did not prove the cluster secret.",
                    n->mesh ? mesh_links_unauthenticated(n->mesh) : 0);
    metrics_counter(m, "dchat_forged_dropped_total",
                    "Messages a peer sent for an origin it may not speak for, dropped.",
                    n->mesh ? mesh_forged_dropped(n->mesh) : 0);

    /* The queue classes' figures: none before flow exists (at start). */
    static const struct outq_class none;
    const struct outq_class *cq = n->flow ? flow_clients_class((node *)n) : &none;
    const struct outq_class *lq = n->flow ? flow_links_class((node *)n) : &none;
    per_class(m, "dchat_paused_connections", "gauge",
              "Connections whose reading is paused by back-pressure now, by class.",
              flow_paused(n, FLOW_CLIENT), flow_paused(n, FLOW_PEER));
    per_class(m, "dchat_congested_connections", "gauge",
              "Connections whose send queue is above its high mark now, by class.",
              cq->ncongested, lq->ncongested);
    per_class(m, "dchat_backpressure_pauses_total", "counter",
              "Times a connection's reading was paused by back-pressure, by class.",
              flow_pauses(n, FLOW_CLIENT), flow_pauses(n, FLOW_PEER));
    per_class(m, "dchat_slow_consumer_closes_total", "counter",
              "Connections closed for not reading their queue fast enough, by class.",
              cq->slow_closes, lq->slow_closes);
    per_class(m, "dchat_queued_bytes", "gauge",
              "Bytes waiting in or being written from the send queues, by class "
              "(accounted as the queue bounds count them).",
              cq->mem, lq->mem);

    if (n->store != NULL) {
        size_t count;
        store_origins(n->store, &count);
        struct store_stats st;
        store_stats_get(n->store, &st);
        metrics_gauge(m, "dchat_history_messages",
                      "Messages in this node's history, stored or being stored.",
                      (double)st.rows);
        metrics_gauge(m, "dchat_history_bytes",
                      "The history's database pages in use plus its WAL, in bytes, at the "
                      "last commit: what --history-max-bytes bounds.", (double)st.bytes);
        metrics_gauge(m, "dchat_history_oldest_seconds",
                      "Unix time of the oldest message the history holds, at the last commit; "
                      "0 when it holds none.", (double)st.oldest_ms / 1000.0);
        metrics_counter(m, "dchat_history_trimmed_total",
                        "Messages removed from the history by its retention limits.",
                        st.trimmed);
        metrics_counter(m, "dchat_history_trim_steps_total",
                        "Commits that removed messages by retention (at most 1000 more than "
                        "each inserted).",
                        st.trim_steps);
        metrics_histogram_write(m, "dchat_history_trim_seconds",
                                "Per commit that removed messages, the time its worker spent "
                                "in the retention step, inside the commit (never on the loop).",
                                store_trim_seconds(n->store));
        metrics_histogram_write(m, "dchat_history_trim_loop_seconds",
                                "Per commit that removed messages, the time the event loop "
                                "spent applying the removal (counts and low-water marks).",
                                store_trim_loop_seconds(n->store));
        metrics_gauge(m, "dchat_history_origins", "Origins (nodes) the history has messages of.",
                      (double)count);
        metrics_counter(m, "dchat_history_commits_total",
                        "Batches of messages committed to the history, one transaction each.",
                        store_commits(n->store));
        metrics_histogram_write(m, "dchat_history_commit_seconds",
                                "Time from handing a batch to the store's worker to its "
                                "commit callback on the loop: what a held message waits.",
                                store_commit_seconds(n->store));
        metrics_histogram_write(m, "dchat_history_commit_messages",
                                "Messages per committed batch.", store_commit_sizes(n->store));
        metrics_gauge(m, "dchat_history_writable",
                      "1 while the history commits; 0 while a batch fails to (a full disk): "
                      "the node then refuses client messages and retries.",
                      store_failing(n->store, NULL) == NULL ? 1 : 0);
        struct relay_own own;
        relay_own(n, &own);
        metrics_gauge(m, "dchat_history_own_numbering",
                      "1 while the node numbers its clients' messages; 0 while it waits for "
                      "its peers' marks after a start, or fetches back its own messages that "
                      "peers hold and its history lacks (it refuses client messages then).",
                      own.state == RELAY_OWN_OPEN ? 1 : 0);
        metrics_gauge(m, "dchat_history_own_behind",
                      "Messages of this node's own origin that a peer holds and its history "
                      "lacks (being fetched back).", (double)own.behind);
        metrics_counter(m, "dchat_history_own_conflicts_total",
                        "Numbers this node gave its messages that a peer held for other "
                        "messages of it (logged as an error).", own.conflicts);
        metrics_counter(m, "dchat_history_commit_failures_total",
                        "Attempts to commit a batch that failed (each is retried).",
                        store_failures(n->store));
        metrics_counter(m, "dchat_history_checkpoints_total",
                        "WAL checkpoints completed.", store_checkpoints(n->store));
        metrics_counter(m, "dchat_history_checkpoints_forced_total",
                        "Of those, the ones a commit ran first, emptying the WAL, because it "
                        "had grown past twice its threshold.",
                        store_checkpoints_forced(n->store));
        metrics_gauge(m, "dchat_history_pending_bytes",
                      "Bytes of messages appended and not committed yet.",
                      (double)store_backlog(n->store));
        metrics_gauge(m, "dchat_history_file_bytes",
                      "Size of history.db and its WAL, in bytes.",
                      (double)history_file_bytes(n));
    }
    metrics_process(m, util_wall_ms() - (util_now_ms() - n->started_ms));
}

static void method_not_allowed(http_request *req, const char *allow, const char *msg)
{
    http_answer_add_header(req, "Allow", allow);
    http_respond_error(req, 405, "%s", msg);
}

/* GET /readyz: 200 when the node can serve a client fully (registered,
 * logged in with discovery, linked to every node discovery lists, its
 * history taking writes, not stopping); else 503 with every reason. For
 * load balancers and healthchecks; /healthz only says the process
 * answers. */
static void readyz(node *n, http_request *req)
{
    json_t *why = json_array();
    if (n->stopping)
        json_array_append_new(why, json_string("the node is shutting down"));
    if (n->id == 0)
        json_array_append_new(why, json_string("not registered with discovery yet"));
    else if (!membership_active(n))
        json_array_append_new(why, json_string("not logged in with discovery"));
    if (n->store == NULL || !store_accepting(n->store))
        json_array_append_new(why, json_string("the history is not taking writes"));
    struct relay_own own;
    relay_own(n, &own);
    if (n->id != 0 && own.state == RELAY_OWN_WAITING)
        json_array_append_new(why, json_string("waiting for the peers' marks before numbering "
                                               "messages"));
    else if (own.state == RELAY_OWN_BEHIND)
        json_array_append_new(why, json_sprintf("fetching back %" PRIu64 " of its own messages "
                                                "that peers hold before numbering new ones",
                                                own.behind));
    enum { NAMED = 8 }; /* peers named in the reason at most */
    uint32_t ids[NAMED];
    size_t down = n->mesh != NULL ? mesh_listed_not_up(n->mesh, ids, NAMED) : 0;
    if (down > 0) {
        char msg[200];
        int len = snprintf(msg, sizeof(msg), "%zu listed peer%s not linked:", down,
                           down == 1 ? "" : "s");
        for (size_t i = 0; i < down && i < NAMED && len > 0 && (size_t)len < sizeof(msg); i++)
            len += snprintf(msg + len, sizeof(msg) - (size_t)len, " %u", ids[i]);
        if (down > NAMED && len > 0 && (size_t)len < sizeof(msg))
            snprintf(msg + len, sizeof(msg) - (size_t)len, " ...");
        json_array_append_new(why, json_string(msg));
    }
    bool ready = json_array_size(why) == 0;
    http_respond_json(req, ready ? 200 : 503,
                      json_pack("{s:b, s:o}", "ready", ready, "reasons", why));
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
    } else if (strcmp(req->path, "/readyz") == 0) {
        if (!is_get)
            method_not_allowed(req, "GET, HEAD", "use GET on /readyz");
        else
            readyz(n, req);
    } else if (strcmp(req->path, "/metrics") == 0) {
        if (!is_get) {
            method_not_allowed(req, "GET, HEAD", "use GET on /metrics");
        } else {
            struct metrics_out m;
            metrics_init(&m);
            status_metrics(n, &m);
            http_respond(req, 200, METRICS_CONTENT_TYPE, m.buf, m.len);
            free(m.buf);
        }
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
    } else if (!web_handle(req)) {
        http_respond_error(req, 404, "no such path %s: this port serves WebSocket "
                           "clients, the chat page at GET /, the status view at GET /status, "
                           "GET /healthz, GET /readyz, GET /metrics, GET /api/status and GET "
                           "/api/history",
                           req->path);
    }
}
