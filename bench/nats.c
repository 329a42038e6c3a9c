/* nats: the bench's NATS side (see nats.h): the --nats list, the client
 * handshake, PUB out, MSG in, PING answered, -ERR reported. */
#include "bench/nats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench/nats_proto.h"
#include "common/util.h"

#define MAX_SERVERS 64
#define SID 1
/* Every socket's first frame: CONNECT, SUB and PING. */
#define HELLO_MAX 1024

struct nats_ctx {
    char subject[32];       /* bench.<token>: one per run */
    size_t payload_len;
    char *payload;          /* scratch: payload_len + 1 */
    char *op;               /* scratch: one PUB */
    size_t op_cap;
};

enum nats_state { NS_INFO, NS_PONG, NS_READY };

struct nats_sock {
    nats_parser *parser;
    enum nats_state st;
};

size_t nats_payload_len(const char *subject, size_t size)
{
    size_t want = size + NATS_DCHAT_FRAME_OVERHEAD;
    /* The MSG line holds the payload's length, so its own length depends on
     * the answer: two steps settle the number of digits. */
    size_t p = want - UTIL_MIN(want, nats_msg_overhead(subject, SID, want));
    p = want - UTIL_MIN(want, nats_msg_overhead(subject, SID, p));
    return UTIL_MAX(p, size);
}

/* Parses one ws://HOST:PORT[/PATH] (wss:// with --tls) of --nats. */
static int parse_url(const char *url, size_t len, bool tls, struct bench_server *out)
{
    const char *scheme = tls ? "wss://" : "ws://";
    size_t sl = strlen(scheme);
    char hostport[300];
    if (len <= sl || strncmp(url, scheme, sl) != 0)
        return -1;
    url += sl;
    len -= sl;
    const char *slash = memchr(url, '/', len);
    size_t hl = slash ? (size_t)(slash - url) : len;
    size_t pl = len - hl;
    if (hl == 0 || hl >= sizeof(hostport) || pl >= sizeof(out->path))
        return -1;
    memcpy(hostport, url, hl);
    hostport[hl] = '\0';
    if (strchr(hostport, ':') == NULL ||
        util_parse_hostport(hostport, "127.0.0.1", out->host, sizeof(out->host), &out->port) !=
            0 || out->port <= 0)
        return -1;
    if (pl > 0) {
        memcpy(out->path, slash, pl);
        out->path[pl] = '\0';
    } else {
        strcpy(out->path, "/");
    }
    return 0;
}

static void nats_find_servers(bench *b)
{
    const struct bench_config *cfg = bench_config(b);
    struct nats_ctx *x = bench_side_ctx(b);
    struct bench_server servers[MAX_SERVERS];
    unsigned n = 0;
    const char *p = cfg->nats;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        if (n == MAX_SERVERS) {
            bench_fail(b, BENCH_NO_CLUSTER, "--nats: more than %d servers", MAX_SERVERS);
            return;
        }
        memset(&servers[n], 0, sizeof(servers[n]));
        if (parse_url(p, len, cfg->tls, &servers[n]) != 0) {
            bench_fail(b, BENCH_NO_CLUSTER, "--nats: '%.*s' is not %s://HOST:PORT[/PATH] (the "
                       "WebSocket listener of a NATS server; wss:// goes with --tls)", (int)len,
                       p, cfg->tls ? "wss" : "ws");
            return;
        }
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        bench_fail(b, BENCH_NO_CLUSTER, "--proto nats needs --nats ws://HOST:PORT,... (the "
                   "NATS servers' WebSocket listeners)");
        return;
    }
    snprintf(x->subject, sizeof(x->subject), "bench.%08x", bench_token(b));
    x->payload_len = nats_payload_len(x->subject, cfg->size);
    x->payload = xmalloc(x->payload_len + 64);
    x->op_cap = x->payload_len + 128;
    x->op = xmalloc(x->op_cap);
    bench_servers_found(b, servers, n);
}

static void nats_open(bench_sock *s)
{
    struct nats_sock *ns = bench_sock_state(s);
    struct nats_ctx *x = bench_side_ctx(bench_sock_bench(s));
    ns->parser = nats_parser_new(0, UTIL_MAX(x->payload_len, (size_t)1 << 20));
    ns->st = NS_INFO; /* the server speaks first */
}

static void sock_fail(bench_sock *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sock_fail(bench_sock *s, const char *fmt, ...)
{
    char name[400], why[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    bench_sock_name(s, name, sizeof(name));
    bench_fail(bench_sock_bench(s), BENCH_FAILED, "%s: %s", name, why);
}

/* The server's INFO: check that our payload fits, then introduce us. */
static int on_info(bench_sock *s, const struct nats_event *ev)
{
    struct nats_sock *ns = bench_sock_state(s);
    struct nats_ctx *x = bench_side_ctx(bench_sock_bench(s));
    json_error_t jerr;
    json_t *info = json_loadb(ev->arg, ev->arg_len, 0, &jerr);
    json_int_t max_payload = json_integer_value(json_object_get(info, "max_payload"));
    json_decref(info);
    if (info == NULL) {
        sock_fail(s, "the NATS server's INFO is not JSON (%s); is this a NATS server?",
                  jerr.text);
        return 1;
    }
    if (max_payload > 0 && (size_t)max_payload < x->payload_len) {
        sock_fail(s, "the NATS server takes payloads of at most %lld bytes, the bench's are "
                  "%zu; lower --size or raise max_payload in the server's configuration",
                  (long long)max_payload, x->payload_len);
        return 1;
    }
    char hello[HELLO_MAX], name[64];
    unsigned sender = bench_sock_sender(s);
    if (sender)
        snprintf(name, sizeof(name), "bench-sender-%u", sender);
    else
        snprintf(name, sizeof(name), "bench-receiver");
    int a = nats_build_connect(hello, sizeof(hello), name);
    int b = a < 0 ? -1 : nats_build_sub(hello + a, sizeof(hello) - (size_t)a, x->subject, SID);
    if (b < 0 || (size_t)(a + b) + sizeof(NATS_PING) - 1 > sizeof(hello)) {
        sock_fail(s, "cannot build CONNECT and SUB (a bug: the buffer is too small)");
        return 1;
    }
    memcpy(hello + a + b, NATS_PING, sizeof(NATS_PING) - 1);
    int rc = ws_conn_send_binary(bench_sock_conn(s), hello,
                                 (size_t)(a + b) + sizeof(NATS_PING) - 1);
    if (rc != 0) {
        sock_fail(s, "cannot send CONNECT: %s", uv_strerror(rc));
        return 1;
    }
    ns->st = NS_PONG;
    return 0;
}

static int on_event(void *ud, const struct nats_event *ev)
{
    bench_sock *s = ud;
    struct nats_sock *ns = bench_sock_state(s);
    switch (ev->op) {
    case NATS_OP_MSG: {
        struct scan_marker m;
        if (scan_marker_parse((const char *)ev->payload, ev->payload_len, &m) == 0)
            bench_sock_deliver(s, &m);
        return 0;
    }
    case NATS_OP_INFO:
        /* Later INFOs tell of cluster changes; they change nothing here. */
        return ns->st == NS_INFO ? on_info(s, ev) : 0;
    case NATS_OP_PING: {
        int rc = ws_conn_send_binary(bench_sock_conn(s), NATS_PONG, sizeof(NATS_PONG) - 1);
        if (rc != 0)
            sock_fail(s, "cannot answer the NATS server's PING: %s", uv_strerror(rc));
        return rc != 0;
    }
    case NATS_OP_PONG:
        if (ns->st == NS_PONG) {
            /* The server has handled CONNECT and SUB: our subscription is
             * in place on this server (the warm-up waits for the others). */
            ns->st = NS_READY;
            bench_sock_ready(s);
        }
        return 0;
    case NATS_OP_OK:
        return 0;
    case NATS_OP_ERR:
        sock_fail(s, "the NATS server answered -ERR '%.*s'", (int)UTIL_MIN(ev->arg_len, 300),
                  ev->arg);
        return 1;
    }
    return 0;
}

static int nats_send(bench_sock *s, const struct scan_marker *m)
{
    struct nats_ctx *x = bench_side_ctx(bench_sock_bench(s));
    int tl = scan_format_text(m, x->payload_len, x->payload, x->payload_len + 64);
    int ol = tl < 0 ? -1 : nats_build_pub(x->op, x->op_cap, x->subject, NULL, x->payload,
                                          (size_t)tl);
    if (ol < 0) {
        sock_fail(s, "cannot build PUB of message %u (a bug: the buffer is too small)",
                  m->index);
        return UV_EINVAL;
    }
    return ws_conn_send_binary(bench_sock_conn(s), x->op, (size_t)ol);
}

static void nats_receive(bench_sock *s, const uint8_t *data, size_t len, bool binary)
{
    struct nats_sock *ns = bench_sock_state(s);
    (void)binary; /* nats-server sends binary; text would carry the same bytes */
    if (ns->parser == NULL)
        return;
    if (nats_parser_feed(ns->parser, data, len, on_event, s) != 0)
        sock_fail(s, "cannot read what the server sent: %s; is this the WebSocket listener "
                  "of a NATS server?", nats_parser_error(ns->parser));
}

static void nats_close(bench_sock *s)
{
    struct nats_sock *ns = bench_sock_state(s);
    nats_parser_free(ns->parser);
    ns->parser = NULL;
}

static void nats_finish(bench *b)
{
    struct nats_ctx *x = bench_side_ctx(b);
    free(x->payload);
    free(x->op);
}

const struct bench_side bench_nats_side = {
    .name = "nats",
    .ctx_size = sizeof(struct nats_ctx),
    .sock_size = sizeof(struct nats_sock),
    .warm_up = true,
    /* nats-server writes everything pending for a client as one frame */
    .max_message = 64u << 20,
    .find_servers = nats_find_servers,
    .open = nats_open,
    .send = nats_send,
    .receive = nats_receive,
    .close = nats_close,
    .finish = nats_finish,
};
