/* dchat: the bench's dchat side (see dchat.h): discovery's active list,
 * newMessageFromClient out, newMessagesForClient in. */
#include "bench/dchat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/http_client.h"
#include "common/util.h"

#define TEXT_MAX 70000
#define FRAME_MAX (TEXT_MAX + 256)

struct dchat_ctx {
    char frame[FRAME_MAX]; /* a message being sent: its text is formatted in place */
};

int dchat_parse_nodes(const char *body, size_t len, struct bench_server *out, unsigned cap)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    json_t *list = json_object_get(doc, "activeNodes");
    if (!json_is_array(list)) {
        json_decref(doc);
        return -1;
    }
    unsigned n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        const char *addr = json_string_value(json_object_get(e, "address"));
        json_int_t port = json_integer_value(json_object_get(e, "clientport"));
        if (n == cap || addr == NULL || port <= 0 || port > 65535 ||
            strlen(addr) >= sizeof(out->host))
            continue;
        strcpy(out[n].host, addr);
        out[n].port = (int)port;
        strcpy(out[n].path, "/");
        n++;
    }
    json_decref(doc);
    return (int)n;
}

static void clients_cb(int status, const char *body, size_t len, void *ud)
{
    bench *b = ud;
    const struct bench_config *cfg = bench_config(b);
    if (status < 0) {
        bench_fail(b, BENCH_NO_CLUSTER, "cannot ask discovery at %s: %s; start it, or pass "
                   "--discovery", cfg->discovery, uv_strerror(status));
        return;
    }
    unsigned cap = (unsigned)(len / 16 + 1); /* an entry takes more than 16 bytes */
    struct bench_server *nodes = xcalloc(cap, sizeof(*nodes));
    int n = status == 200 ? dchat_parse_nodes(body, len, nodes, cap) : -1;
    if (n < 0)
        bench_fail(b, BENCH_NO_CLUSTER, "discovery at %s answered GET /api/clients with %d and "
                   "no activeNodes list", cfg->discovery, status);
    else if (n < 2)
        bench_fail(b, BENCH_NO_CLUSTER, "discovery at %s lists %d active node%s; the bench "
                   "needs at least 2 (start more nodes)", cfg->discovery, n, n == 1 ? "" : "s");
    else
        bench_servers_found(b, nodes, (unsigned)n);
    free(nodes);
}

static void dchat_find_servers(bench *b)
{
    const struct bench_config *cfg = bench_config(b);
    if (http_client_request(bench_loop(b), cfg->discovery, "GET", "/api/clients", NULL,
                            cfg->timeout_s * 1000, clients_cb, b, NULL) != 0)
        bench_fail(b, BENCH_NO_CLUSTER, "--discovery %s: expected http://HOST:PORT",
                   cfg->discovery);
}

static void dchat_open(bench_sock *s)
{
    bench_sock_ready(s); /* a node takes messages as soon as the socket is open */
}

/* The text goes straight into the frame, and the rest is copied around
 * it: no snprintf on the path of every message (the text needs no
 * escaping: a marker, then 'x'). */
#define SEND_HEAD "{\"type\":\"newMessageFromClient\",\"payload\":{\"text\":\""
static int dchat_send(bench_sock *s, const struct scan_marker *m)
{
    bench *b = bench_sock_bench(s);
    const struct bench_config *cfg = bench_config(b);
    struct dchat_ctx *x = bench_side_ctx(b);
    const size_t head = sizeof(SEND_HEAD) - 1;
    memcpy(x->frame, SEND_HEAD, head);
    int tl = scan_format_text(m, cfg->size, x->frame + head, TEXT_MAX);
    int fl = -1;
    if (tl >= 0) {
        static const char sender[] = "\",\"sender\":\"bench-", chat[] = "\",\"chatId\":";
        char *o = x->frame + head + (size_t)tl; /* room: FRAME_MAX is TEXT_MAX + 256 */
        memcpy(o, sender, sizeof(sender) - 1);
        o = util_put_dec(o + sizeof(sender) - 1, bench_sock_sender(s));
        memcpy(o, chat, sizeof(chat) - 1);
        o = util_put_dec(o + sizeof(chat) - 1, cfg->chat_id);
        memcpy(o, "}}", 2);
        fl = (int)(o + 2 - x->frame);
    }
    if (fl < 0 || (size_t)fl >= sizeof(x->frame)) {
        bench_fail(b, BENCH_FAILED, "cannot build message %u: --size %u is too large (at most "
                   "%d)", m->index, cfg->size, TEXT_MAX - 1);
        return UV_EINVAL;
    }
    return ws_conn_send_text(bench_sock_conn(s), x->frame, (size_t)fl);
}

static void dchat_receive(bench_sock *s, const uint8_t *data, size_t len, bool binary)
{
    bench *b = bench_sock_bench(s);
    char name[400];
    if (binary) {
        bench_sock_name(s, name, sizeof(name));
        bench_fail(b, BENCH_FAILED, "%s sent a binary message; a dchat node sends text "
                   "(is this a dchat node? for NATS use --proto nats)", name);
        return;
    }
    const char *text = (const char *)data;
    struct scan_marker m;
    long source;
    enum scan_result r = scan_frame(text, len, &m, &source);
    if (source >= 0)
        bench_sock_set_server_id(s, source);
    if (r == SCAN_NOT_MESSAGE) {
        if (memmem(text, UTIL_MIN(len, 200), "\"type\":\"error\"", 14) != NULL) {
            bench_sock_name(s, name, sizeof(name));
            bench_fail(b, BENCH_FAILED, "%s answered with an error: %.*s", name,
                       (int)UTIL_MIN(len, 200), text);
        }
        return;
    }
    if (r == SCAN_OK)
        bench_sock_deliver(s, &m);
}

const struct bench_side bench_dchat_side = {
    .name = "dchat",
    .ctx_size = sizeof(struct dchat_ctx),
    .max_message = 1 << 20,
    .find_servers = dchat_find_servers,
    .open = dchat_open,
    .send = dchat_send,
    .receive = dchat_receive,
};
