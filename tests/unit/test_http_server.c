/* Unit tests for common/http_server.c: an http_server on 127.0.0.1 (port 0)
 * runs its uv loop in a second thread while the test drives it with blocking
 * POSIX sockets (TCP_NODELAY, bounded by socket timeouts) and checks the raw
 * answers: whole, chunked and byte-wise requests, pipelining, keep-alive,
 * bodies, the 400/408/411/413/431/503 limits, the lingering close after
 * them (and its time and byte bounds), upgrades, error JSON, HEAD
 * answers without a body, headers added by handlers, and
 * backpressure and idleness while answers wait to be written. Some checks
 * run small functions in the loop thread (in_loop) to see the server's
 * state without racing it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "tests/unit/skip.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/http_server.h"

#define IO_TIMEOUT_S 5

/* --- the server side, in its own thread ------------------------------------ */

struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    uv_async_t call;          /* runs call_fn in the loop thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*call_fn)(struct fixture *); /* under mu; NULL once it has run */
    unsigned conns_seen;      /* written by loop_count_conns */
    int sndbufs_set;          /* written by loop_small_sndbuf */
    pthread_t thread;
    http_server *srv;
    struct http_server_config cfg;
    int port;
    bool running;
    bool done_called;
    /* Written by the loop thread, read only after the thread is joined. */
    int upgrades;
    char upgrade_rest[256];
    size_t upgrade_rest_len;
    char upgrade_path[64];
    int upgrade_mode;         /* 0: take the socket, 1: refuse with 403,
                                 2: refuse without an answer */
    int late_add_rc;          /* http_answer_add_header after the answer */
    bool held, release;       /* hold_start / hold_end, under mu */
    uint64_t deferred_seen;   /* written by loop_count_deferred */
};

static void server_done(void *ud)
{
    struct fixture *fx = ud;
    fx->done_called = true;
}

static void stop_cb(uv_async_t *a)
{
    struct fixture *fx = a->data;
    http_server_close(fx->srv, server_done, fx);
    uv_close((uv_handle_t *)&fx->stop, NULL);
    uv_close((uv_handle_t *)&fx->call, NULL);
}

static void call_cb(uv_async_t *a)
{
    struct fixture *fx = a->data;
    pthread_mutex_lock(&fx->mu);
    if (fx->call_fn != NULL) {
        fx->call_fn(fx);
        fx->call_fn = NULL;
        pthread_cond_broadcast(&fx->cv);
    }
    pthread_mutex_unlock(&fx->mu);
}

/* Runs fn(fx) in the loop thread and waits until it has run. */
static void in_loop(struct fixture *fx, void (*fn)(struct fixture *))
{
    pthread_mutex_lock(&fx->mu);
    fx->call_fn = fn;
    assert_int_equal(uv_async_send(&fx->call), 0);
    while (fx->call_fn != NULL)
        pthread_cond_wait(&fx->cv, &fx->mu);
    pthread_mutex_unlock(&fx->mu);
}

/* Runs in the loop thread, under mu: holds it, as one long turn would,
 * until hold_end. */
static void loop_hold(struct fixture *fx)
{
    fx->held = true;
    pthread_cond_broadcast(&fx->cv);
    while (!fx->release)
        pthread_cond_wait(&fx->cv, &fx->mu);
}

/* Stops the loop thread until hold_end: what clients send meanwhile is all
 * there for the loop's next poll. */
static void hold_start(struct fixture *fx)
{
    pthread_mutex_lock(&fx->mu);
    fx->held = fx->release = false;
    fx->call_fn = loop_hold;
    assert_int_equal(uv_async_send(&fx->call), 0);
    while (!fx->held)
        pthread_cond_wait(&fx->cv, &fx->mu);
    pthread_mutex_unlock(&fx->mu);
}

static void hold_end(struct fixture *fx)
{
    pthread_mutex_lock(&fx->mu);
    fx->release = true;
    pthread_cond_broadcast(&fx->cv);
    while (fx->call_fn != NULL)
        pthread_cond_wait(&fx->cv, &fx->mu);
    pthread_mutex_unlock(&fx->mu);
}

static void loop_count_deferred(struct fixture *fx)
{
    fx->deferred_seen = http_server_deferred(fx->srv);
}

static void loop_count_conns(struct fixture *fx)
{
    fx->conns_seen = http_server_connections(fx->srv);
}

/* Waits (polling every 10 ms, up to timeout_ms) until the server has want
 * connections open; false if it never does. */
static bool wait_connections(struct fixture *fx, unsigned want, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        in_loop(fx, loop_count_conns);
        if (fx->conns_seen == want)
            return true;
        if (waited >= timeout_ms)
            return false;
        struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

static void small_sndbuf_walk_cb(uv_handle_t *h, void *arg)
{
    struct fixture *fx = arg;
    uv_os_fd_t fd;
    int small = 4096;
    if (h->type == UV_TCP && uv_fileno(h, &fd) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0)
        fx->sndbufs_set++;
}

/* Gives the server's TCP sockets (the listener: accepted connections
 * inherit it) a small, fixed send buffer, so that answers a client does not
 * read stay queued in the server instead of in the kernel. */
static void loop_small_sndbuf(struct fixture *fx)
{
    fx->sndbufs_set = 0;
    uv_walk(&fx->loop, small_sndbuf_walk_cb, fx);
}

static void *loop_thread(void *arg)
{
    struct fixture *fx = arg;
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* The handler echoes what it was given as JSON, except on a few paths. */
static void echo_handler(http_request *req, void *ud)
{
    struct fixture *fx = ud;
    if (strcmp(req->path, "/error") == 0) {
        http_respond_error(req, 422, "field \"%s\" is %d", "x", 7);
        return;
    }
    if (strcmp(req->path, "/noanswer") == 0)
        return; /* the server must answer 500 itself */
    if (strcmp(req->path, "/text") == 0) {
        http_respond(req, 200, "text/plain", "plain", 5);
        return;
    }
    if (strcmp(req->path, "/bigresp") == 0) {
        static char big[32768];
        memset(big, 'b', sizeof(big));
        http_respond(req, 200, "text/plain", big, sizeof(big));
        return;
    }
    if (strcmp(req->path, "/allow") == 0) {
        assert_int_equal(http_answer_add_header(req, "Allow", "GET, HEAD"), 0);
        assert_int_equal(http_answer_add_header(req, "X-Extra", "two"), 0);
        http_respond_error(req, 405, "use GET");
        return;
    }
    if (strcmp(req->path, "/addheaders") == 0) {
        /* Which additions are refused, reported in the answer; what is
         * refused must not reach it. */
        char big[HTTP_ANSWER_HEADERS_MAX];
        memset(big, 'v', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        int fills = 0;
        char name[32];
        json_t *j = json_pack(
            "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}",
            "ok", http_answer_add_header(req, "X-Ok", "fine"),
            "tab", http_answer_add_header(req, "X-Tab", "a\tb"),
            "empty_value", http_answer_add_header(req, "X-Empty", ""),
            "content_length", http_answer_add_header(req, "content-length", "1"),
            "content_type", http_answer_add_header(req, "Content-Type", "text/html"),
            "connection", http_answer_add_header(req, "Connection", "close"),
            "transfer_encoding", http_answer_add_header(req, "Transfer-Encoding", "chunked"),
            "space_in_name", http_answer_add_header(req, "X Bad", "1"),
            "empty_name", http_answer_add_header(req, "", "1"),
            "crlf_in_value", http_answer_add_header(req, "X-Evil", "1\r\nX-Injected: 1"),
            "too_big", http_answer_add_header(req, "X-Big", big));
        /* Fill up to the limit: each addition fits whole or not at all. */
        for (;;) {
            snprintf(name, sizeof(name), "X-Fill-%02d", fills);
            if (http_answer_add_header(req, name, "0123456789012345678901234567890123456789") != 0)
                break;
            fills++;
        }
        json_object_set_new(j, "fills", json_integer(fills));
        http_respond_json(req, 200, j);
        fx->late_add_rc = http_answer_add_header(req, "X-Late", "1");
        return;
    }
    if (strcmp(req->path, "/header-noanswer") == 0) {
        assert_int_equal(http_answer_add_header(req, "X-Lost", "1"), 0);
        return; /* the server's 500 must not carry X-Lost */
    }
    if (strcmp(req->path, "/twice") == 0) {
        http_respond(req, 200, "text/plain", "first", 5);
        http_respond(req, 500, "text/plain", "second", 6); /* ignored */
        return;
    }
    const char *xt = http_request_header(req, "x-test");
    const char *xt2 = http_request_header(req, "X-TEST");
    const char *after = http_request_header(req, "x-after");
    const char *empty = http_request_header(req, "x-empty");
    json_t *j = json_pack("{s:s, s:s, s:s, s:s%, s:I, s:s?, s:b, s:s?, s:s?, s:s?, s:s, s:I}",
                          "method", req->method, "path", req->path,
                          "query", req->query, "body", req->body, req->body_len,
                          "body_len", (json_int_t)req->body_len,
                          "x_test", xt,
                          "same", (xt == NULL && xt2 == NULL) ||
                                  (xt != NULL && xt2 != NULL && strcmp(xt, xt2) == 0),
                          "x_after", after, "x_empty", empty,
                          "missing", http_request_header(req, "x-missing"),
                          "peer", req->peer_addr,
                          "conns", (json_int_t)http_server_connections(fx->srv));
    http_respond_json(req, 200, j);
}

static void free_handle_cb(uv_handle_t *h) { free(h); }

static int upgrade_handler(http_request *req, uv_tcp_t *tcp, const char *rest,
                           size_t rest_len, void *ud)
{
    struct fixture *fx = ud;
    fx->upgrades++;
    snprintf(fx->upgrade_path, sizeof(fx->upgrade_path), "%s", req->path);
    if (fx->upgrade_mode == 1) {
        http_respond_error(req, 403, "no websockets for you");
        return 0;
    }
    if (fx->upgrade_mode == 2)
        return 0; /* refused, and the server must answer for us */
    fx->upgrade_rest_len = rest_len < sizeof(fx->upgrade_rest) ? rest_len : sizeof(fx->upgrade_rest);
    memcpy(fx->upgrade_rest, rest, fx->upgrade_rest_len);
    /* Ours now: close it and free it, as the contract says. */
    uv_close((uv_handle_t *)tcp, free_handle_cb);
    return 1;
}

static struct fixture *fixture_new(void)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    fx->cfg.handler = echo_handler;
    fx->cfg.ud = fx;
    return fx;
}

static void fixture_start(struct fixture *fx)
{
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(http_server_start(&fx->loop, "127.0.0.1", 0, &fx->cfg, &fx->srv), 0);
    fx->port = http_server_port(fx->srv);
    assert_true(fx->port > 0 && fx->port < 65536);
    assert_int_equal(uv_async_init(&fx->loop, &fx->stop, stop_cb), 0);
    fx->stop.data = fx;
    assert_int_equal(uv_async_init(&fx->loop, &fx->call, call_cb), 0);
    fx->call.data = fx;
    fx->running = true;
    assert_int_equal(pthread_create(&fx->thread, NULL, loop_thread, fx), 0);
}

/* Closes the server from its loop and joins the thread; idempotent. */
static void fixture_stop(struct fixture *fx)
{
    if (!fx->running)
        return;
    fx->running = false;
    uv_async_send(&fx->stop);
    pthread_join(fx->thread, NULL);
    assert_true(fx->done_called);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static int setup(void **state)
{
    *state = fixture_new();
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    fixture_stop(fx);
    pthread_mutex_destroy(&fx->mu);
    pthread_cond_destroy(&fx->cv);
    free(fx);
    return 0;
}

/* --- the client side: blocking sockets -------------------------------------- */

struct client {
    int fd;
    char buf[256 * 1024];
    size_t len;
};

struct response {
    int status;
    char head[4096];     /* status line and headers, NUL-terminated */
    char *body;          /* malloc'd, NUL-terminated */
    size_t body_len;
    json_t *json;        /* parsed body if it is JSON, else NULL */
};

static void response_free(struct response *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static struct client *client_connect(int port)
{
    struct client *c = calloc(1, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return c;
}

static void client_close(struct client *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c);
}

static void send_bytes(struct client *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void send_str(struct client *c, const char *s) { send_bytes(c, s, strlen(s)); }

/* Reads more into c->buf; returns bytes read, 0 on EOF, -1 on error/timeout. */
static ssize_t client_fill(struct client *c)
{
    if (c->len == sizeof(c->buf))
        return -1;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            c->len += (size_t)n;
        return n;
    }
}

/* Reads one whole response (Content-Length delimited); 0 or -1. */
static int read_response(struct client *c, struct response *r)
{
    memset(r, 0, sizeof(*r));
    char *end;
    for (;;) {
        end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end != NULL)
            break;
        if (client_fill(c) <= 0)
            return -1;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (hlen >= sizeof(r->head))
        return -1;
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
        return -1;
    const char *cl = strcasestr(r->head, "\r\nContent-Length:");
    if (cl == NULL)
        return -1;
    size_t blen = strtoul(cl + 17, NULL, 10);
    while (c->len < hlen + blen)
        if (client_fill(c) <= 0)
            return -1;
    r->body = malloc(blen + 1);
    memcpy(r->body, c->buf + hlen, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    r->json = json_loadb(r->body, blen, 0, NULL);
    return 0;
}

/* Reads only a header section (the answer to a HEAD request), leaving
 * whatever follows it in c->buf; r->body stays NULL. Returns the
 * Content-Length it states, or -1. */
static long read_head_only(struct client *c, struct response *r)
{
    memset(r, 0, sizeof(*r));
    char *end;
    while ((end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL) == NULL)
        if (client_fill(c) <= 0)
            return -1;
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (hlen >= sizeof(r->head))
        return -1;
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    memmove(c->buf, c->buf + hlen, c->len - hlen);
    c->len -= hlen;
    const char *cl = strcasestr(r->head, "\r\nContent-Length:");
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1 || cl == NULL)
        return -1;
    return strtol(cl + 17, NULL, 10);
}

/* True when the server closed the connection (EOF or reset) with nothing
 * more to read; false on a timeout or unexpected bytes. */
static bool wait_closed(struct client *c)
{
    for (;;) {
        if (c->len > 0)
            return false;
        ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
        if (n == 0)
            return true;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ECONNRESET;
        c->len = (size_t)n;
    }
}

static const char *jstr(const struct response *r, const char *key)
{
    json_t *v = json_object_get(r->json, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_int_t jint(const struct response *r, const char *key)
{
    return json_integer_value(json_object_get(r->json, key));
}

/* One request on a fresh connection; the raw response bytes until the end
 * of the one answer are returned (malloc'd) for byte-exact comparison. */
static char *exchange_raw(int port, const char *req, size_t len,
                          const size_t *cuts, size_t ncuts, size_t *outlen)
{
    struct client *c = client_connect(port);
    size_t pos = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        if (next > pos) {
            send_bytes(c, req + pos, next - pos);
            sched_yield();
        }
        pos = next;
    }
    struct response r;
    if (read_response(c, &r) != 0) {
        client_close(c);
        return NULL;
    }
    size_t hl = strlen(r.head);
    char *out = malloc(hl + r.body_len + 1);
    memcpy(out, r.head, hl);
    memcpy(out + hl, r.body, r.body_len);
    out[hl + r.body_len] = '\0';
    *outlen = hl + r.body_len;
    response_free(&r);
    client_close(c);
    return out;
}

/* --- tests ------------------------------------------------------------------- */

static const char POST_REQ[] =
    "POST /echo/some/path?x=1&y=two HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "X-Test: hello world\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 24\r\n"
    "\r\n"
    "{\"k\":\"value\",\"n\":[1,2]}\n";

static void test_whole_request(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, POST_REQ);
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strcasestr(r.head, "\r\nContent-Type: application/json\r\n"));
    assert_null(strcasestr(r.head, "Connection: close"));
    assert_non_null(r.json);
    assert_string_equal(jstr(&r, "method"), "POST");
    assert_string_equal(jstr(&r, "path"), "/echo/some/path");
    assert_string_equal(jstr(&r, "query"), "x=1&y=two");
    assert_string_equal(jstr(&r, "body"), "{\"k\":\"value\",\"n\":[1,2]}\n");
    assert_int_equal(jint(&r, "body_len"), 24);
    assert_string_equal(jstr(&r, "x_test"), "hello world");
    assert_true(json_is_true(json_object_get(r.json, "same")));
    assert_true(json_is_null(json_object_get(r.json, "missing")));
    assert_string_equal(jstr(&r, "peer"), "127.0.0.1");
    assert_int_equal(jint(&r, "conns"), 1);
    response_free(&r);
    client_close(c);
}

static void test_get_without_query_or_body(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "method"), "GET");
    assert_string_equal(jstr(&r, "path"), "/plain");
    assert_string_equal(jstr(&r, "query"), "");
    assert_string_equal(jstr(&r, "body"), "");
    assert_int_equal(jint(&r, "body_len"), 0);
    assert_true(json_is_null(json_object_get(r.json, "x_test")));
    response_free(&r);
    client_close(c);
}

static void test_random_chunkings_identical(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    size_t len = strlen(POST_REQ);
    size_t ref_len;
    char *ref = exchange_raw(fx->port, POST_REQ, len, NULL, 0, &ref_len);
    assert_non_null(ref);
    srand(12345);
    size_t cuts[16];
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 1 + (size_t)rand() % 15;
        for (size_t i = 0; i < n; i++)
            cuts[i] = 1 + (size_t)rand() % (len - 1);
        /* sort the cut points */
        for (size_t i = 1; i < n; i++)
            for (size_t k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
                size_t t = cuts[k];
                cuts[k] = cuts[k - 1];
                cuts[k - 1] = t;
            }
        size_t got_len;
        char *got = exchange_raw(fx->port, POST_REQ, len, cuts, n, &got_len);
        assert_non_null(got);
        assert_int_equal(got_len, ref_len);
        assert_memory_equal(got, ref, ref_len);
        free(got);
    }
    free(ref);
}

static void test_one_byte_at_a_time(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    size_t len = strlen(POST_REQ);
    size_t ref_len;
    char *ref = exchange_raw(fx->port, POST_REQ, len, NULL, 0, &ref_len);
    assert_non_null(ref);
    size_t *cuts = malloc(len * sizeof(*cuts));
    for (size_t i = 0; i < len - 1; i++)
        cuts[i] = i + 1;
    for (int iter = 0; iter < 5; iter++) {
        size_t got_len;
        char *got = exchange_raw(fx->port, POST_REQ, len, cuts, len - 1, &got_len);
        assert_non_null(got);
        assert_int_equal(got_len, ref_len);
        assert_memory_equal(got, ref, ref_len);
        free(got);
    }
    free(cuts);
    free(ref);
}

static void test_pipelined(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c,
             "GET /first?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
             "DELETE /third HTTP/1.1\r\nHost: x\r\nX-Test: three\r\n\r\n"
             "GET /text HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "path"), "/first");
    assert_string_equal(jstr(&r, "query"), "a=1");
    response_free(&r);
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(jstr(&r, "method"), "POST");
    assert_string_equal(jstr(&r, "path"), "/second");
    assert_string_equal(jstr(&r, "body"), "hello");
    response_free(&r);
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(jstr(&r, "method"), "DELETE");
    assert_string_equal(jstr(&r, "path"), "/third");
    assert_string_equal(jstr(&r, "x_test"), "three");
    response_free(&r);
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "Content-Type: text/plain\r\n"));
    assert_string_equal(r.body, "plain");
    response_free(&r);
    client_close(c);
}

static void test_keep_alive(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    struct response r;
    for (int i = 0; i < 3; i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET /ka/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        send_str(c, req);
        assert_int_equal(read_response(c, &r), 0);
        assert_int_equal(r.status, 200);
        char path[32];
        snprintf(path, sizeof(path), "/ka/%d", i);
        assert_string_equal(jstr(&r, "path"), path);
        assert_int_equal(jint(&r, "conns"), 1); /* the same connection */
        assert_null(strcasestr(r.head, "Connection: close"));
        response_free(&r);
    }
    /* Connection: close is honoured: answer, then the server closes. */
    send_str(c, "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "\r\nConnection: close\r\n"));
    response_free(&r);
    assert_true(wait_closed(c));
    client_close(c);
}

static void test_half_close_still_answered(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /hc1 HTTP/1.1\r\nHost: x\r\n\r\nGET /bigresp HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "path"), "/hc1");
    response_free(&r);
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 32768);
    response_free(&r);
    assert_true(wait_closed(c));
    client_close(c);
}

static void test_http10_closes(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /old HTTP/1.0\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "path"), "/old");
    response_free(&r);
    assert_true(wait_closed(c));
    client_close(c);
}

static void test_post_large_body(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    size_t blen = 100000;
    char *req = malloc(blen + 256);
    int hl = snprintf(req, 256, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", blen);
    for (size_t i = 0; i < blen; i++)
        req[hl + (int)i] = (char)('a' + i % 26);
    struct client *c = client_connect(fx->port);
    send_bytes(c, req, (size_t)hl + blen);
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(&r, "body_len"), (json_int_t)blen);
    const char *body = jstr(&r, "body");
    assert_non_null(body);
    assert_int_equal(strlen(body), blen);
    assert_memory_equal(body, req + hl, blen);
    response_free(&r);
    client_close(c);
    free(req);
}

static void expect_error_and_close(struct client *c, int status, const char *needle)
{
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, status);
    assert_non_null(strcasestr(r.head, "\r\nConnection: close\r\n"));
    assert_non_null(strcasestr(r.head, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(r.json);
    assert_int_equal(json_object_size(r.json), 1);
    const char *msg = jstr(&r, "error");
    assert_non_null(msg);
    if (needle != NULL)
        assert_non_null(strstr(msg, needle));
    response_free(&r);
    assert_true(wait_closed(c));
}

static void test_malformed_request_line(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /x HTTP/9.9\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client *c = client_connect(fx->port);
        send_str(c, bad[i]);
        expect_error_and_close(c, 400, "malformed HTTP request");
        client_close(c);
    }
    /* A good request after a bad one on the same connection is not read. */
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nBAD LINE\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "path"), "/ok");
    response_free(&r);
    expect_error_and_close(c, 400, "malformed");
    client_close(c);
}

static void test_oversized_headers(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_header_bytes = 1024;
    fixture_start(fx);
    char req[4096];
    char big[2001];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    struct client *c = client_connect(fx->port);
    send_str(c, req);
    expect_error_and_close(c, 431, "too large");
    client_close(c);

    /* A long URL counts too. */
    char url[1500];
    memset(url, 'u', sizeof(url) - 1);
    url[0] = '/';
    url[sizeof(url) - 1] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", url);
    c = client_connect(fx->port);
    send_str(c, req);
    expect_error_and_close(c, 431, NULL);
    client_close(c);

    /* Just under the limit is fine. */
    memset(big, 'v', 900);
    big[900] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    c = client_connect(fx->port);
    send_str(c, req);
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(c);
}

static void test_too_many_headers(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    char req[8192];
    size_t n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 70; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "H%d: v\r\n", i);
    snprintf(req + n, sizeof(req) - n, "\r\n");
    struct client *c = client_connect(fx->port);
    send_str(c, req);
    expect_error_and_close(c, 431, "too many");
    client_close(c);
}

static void test_body_too_large(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_body_bytes = 10;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890");
    expect_error_and_close(c, 413, "larger than 10 bytes");
    client_close(c);
    /* Exactly the limit passes. */
    c = client_connect(fx->port);
    send_str(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "body"), "0123456789");
    response_free(&r);
    client_close(c);
}

static void test_chunked_body_refused(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n0\r\n\r\n");
    expect_error_and_close(c, 411, "Content-Length");
    client_close(c);
}

static void test_request_timeout(void **state)
{
    struct fixture *fx = *state;
    /* Counted from accept: long enough that the bytes sent right after
     * connecting are read before it runs out, however busy the machine. */
    fx->cfg.request_timeout_ms = 500;
    fixture_start(fx);
    /* Headers never finished. */
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /slow HTTP/1.1\r\nHost: x\r\n");
    expect_error_and_close(c, 408, "not received in time");
    client_close(c);
    /* Body never finished. */
    c = client_connect(fx->port);
    send_str(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    expect_error_and_close(c, 408, NULL);
    client_close(c);
}

/* A connection that sends nothing is closed after the request timeout,
 * counted from accept, without an answer: not kept for the idle timeout
 * (60 s here, beyond the client's IO_TIMEOUT_S, so wait_closed would fail
 * if that were what closed it). */
static void test_silent_connection_closes_after_request_timeout(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.request_timeout_ms = 200;
    fx->cfg.idle_timeout_ms = 60000;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    assert_true(wait_closed(c)); /* false on a timeout or on any byte */
    client_close(c);
    /* The server goes on serving. */
    c = client_connect(fx->port);
    send_str(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(c);
}

/* Between requests, the idle timeout applies: after a complete exchange an
 * idle connection is closed without an answer. */
static void test_idle_timeout_closes(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.idle_timeout_ms = 100;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    assert_true(wait_closed(c));
    client_close(c);
}

/* RFC 9112 3.2: an HTTP/1.1 request without Host, with two, or with one
 * that is not a host and port is answered 400, and the connection closes;
 * HTTP/1.0 may go without. */
static void test_host_required(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    static const struct {
        const char *req;
        const char *needle;
    } bad[] = {
        { "GET /x HTTP/1.1\r\n\r\n", "no Host header" },
        { "GET /x HTTP/1.1\r\nX-Host: x\r\n\r\n", "no Host header" },
        { "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nok", "no Host header" },
        { "GET /x HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "more than one Host" },
        { "GET /x HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", "more than one Host" },
        { "GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n", "not a host and port" },
        { "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", "not a host and port" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client *c = client_connect(fx->port);
        send_str(c, bad[i].req);
        expect_error_and_close(c, 400, bad[i].needle);
        client_close(c);
    }
    /* A HEAD request gets the answer's header section only. */
    struct client *c = client_connect(fx->port);
    send_str(c, "HEAD /x HTTP/1.1\r\n\r\n");
    struct response r;
    assert_true(read_head_only(c, &r) > 0);
    assert_int_equal(r.status, 400);
    assert_true(wait_closed(c));
    client_close(c);
    /* Accepted: HTTP/1.0 without Host, an empty Host (RFC 9112 3.2 allows
     * it for a target without authority), names, addresses and ports. */
    static const char *const good[] = {
        "GET /ok HTTP/1.0\r\n\r\n",
        "GET /ok HTTP/1.1\r\nHost:\r\n\r\n",
        "GET /ok HTTP/1.1\r\nhost: chat.example.com\r\n\r\n",
        "GET /ok HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        "GET /ok HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        c = client_connect(fx->port);
        send_str(c, good[i]);
        assert_int_equal(read_response(c, &r), 0);
        if (r.status != 200)
            fail_msg("\"%s\" got %d: %s", good[i], r.status, r.body);
        assert_string_equal(jstr(&r, "path"), "/ok");
        response_free(&r);
        client_close(c);
    }
    /* A refused request ends the connection: a good one behind it in the
     * same write is not answered. */
    c = client_connect(fx->port);
    send_str(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
                "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "path"), "/a");
    response_free(&r);
    expect_error_and_close(c, 400, "Host");
    client_close(c);
}

/* An upgrade request without Host is refused before the upgrade callback
 * sees it. */
static void test_host_required_for_upgrades(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.on_upgrade = upgrade_handler;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    expect_error_and_close(c, 400, "no Host header");
    client_close(c);
    fixture_stop(fx);
    assert_int_equal(fx->upgrades, 0);
}

static const char UPGRADE_REQ[] =
    "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

static void test_upgrade_without_callback(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, UPGRADE_REQ);
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(jstr(&r, "error"), "this server does not upgrade connections");
    /* The server closes after the refusal, and says so. */
    assert_non_null(strcasestr(r.head, "\r\nConnection: close\r\n"));
    response_free(&r);
    assert_true(wait_closed(c));
    client_close(c);
}

static void test_upgrade_taken(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.on_upgrade = upgrade_handler;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    char req[512];
    snprintf(req, sizeof(req), "%sEXTRA-BYTES", UPGRADE_REQ);
    send_str(c, req);
    /* The callee closed the socket right away. */
    assert_true(wait_closed(c));
    client_close(c);
    fixture_stop(fx);
    assert_int_equal(fx->upgrades, 1);
    assert_string_equal(fx->upgrade_path, "/ws");
    /* The bytes after the request may or may not have come in the same
     * read; when they did they must be handed over exactly. */
    if (fx->upgrade_rest_len > 0)
        assert_memory_equal(fx->upgrade_rest, "EXTRA-BYTES", fx->upgrade_rest_len);
}

static void test_upgrade_refused(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.on_upgrade = upgrade_handler;
    fx->upgrade_mode = 1;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, UPGRADE_REQ);
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(jstr(&r, "error"), "no websockets for you");
    assert_non_null(strcasestr(r.head, "\r\nConnection: close\r\n"));
    response_free(&r);
    assert_true(wait_closed(c));
    client_close(c);
    fixture_stop(fx);
    assert_int_equal(fx->upgrades, 1);
}

static void test_upgrade_refused_unanswered(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.on_upgrade = upgrade_handler;
    fx->upgrade_mode = 2;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, UPGRADE_REQ);
    expect_error_and_close(c, 400, "upgrade refused");
    client_close(c);
    fixture_stop(fx);
    assert_int_equal(fx->upgrades, 1);
}

static void test_header_lookup(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /h HTTP/1.1\r\nhost: x\r\nx-TeSt: MiXeD Case\r\nX-After: after-value\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(jstr(&r, "x_test"), "MiXeD Case");
    assert_true(json_is_true(json_object_get(r.json, "same")));
    assert_string_equal(jstr(&r, "x_after"), "after-value");
    assert_true(json_is_null(json_object_get(r.json, "missing")));
    response_free(&r);
    /* Leading/trailing blanks (OWS, RFC 9110 5.5) are not part of the value;
     * inner ones are. */
    send_str(c, "GET /h HTTP/1.1\r\nHost: x\r\nX-Test:    padded \t value \t \r\n"
                "X-After: a\t\r\n\r\n");
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(jstr(&r, "x_test"), "padded \t value");
    assert_string_equal(jstr(&r, "x_after"), "a");
    response_free(&r);
    /* Trailing blanks that arrive in separate reads are trimmed too, and a
     * value of blanks only is empty. */
    send_str(c, "GET /h HTTP/1.1\r\nHost: x\r\nX-Test: split  ");
    sched_yield();
    send_str(c, "  \r\nX-Empty: \t \r\n\r\n");
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(jstr(&r, "x_test"), "split");
    assert_string_equal(jstr(&r, "x_empty"), "");
    response_free(&r);
    client_close(c);
}

static void test_header_empty_value(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /h HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-After: v\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "x_after"), "v");
    assert_string_equal(jstr(&r, "x_empty"), "");
    response_free(&r);
    client_close(c);
}

static void test_respond_error_json(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /error HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 422);
    assert_non_null(strcasestr(r.head, "\r\nContent-Type: application/json\r\n"));
    assert_string_equal(r.body, "{\"error\":\"field \\\"x\\\" is 7\"}");
    assert_string_equal(jstr(&r, "error"), "field \"x\" is 7");
    response_free(&r);
    /* The connection stays usable after an error answered by a handler. */
    send_str(c, "GET /noanswer HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 500);
    assert_non_null(jstr(&r, "error"));
    response_free(&r);
    /* A second answer to one request is dropped. */
    send_str(c, "GET /twice HTTP/1.1\r\nHost: x\r\n\r\nGET /text HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "first");
    response_free(&r);
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(r.body, "plain");
    response_free(&r);
    client_close(c);
}

static void test_max_connections(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_connections = 1;
    fixture_start(fx);
    struct client *a = client_connect(fx->port);
    send_str(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(a, &r), 0); /* a is accepted and counted */
    assert_int_equal(r.status, 200);
    response_free(&r);
    struct client *b = client_connect(fx->port);
    expect_error_and_close(b, 503, "too many connections");
    client_close(b);
    /* a still works. */
    send_str(a, "GET /a2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(a, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(a);
}

/* Upgraded connections still open count against the same cap. */
static size_t fake_upgraded;
static size_t count_upgraded(void *ud)
{
    (void)ud;
    return fake_upgraded;
}

static void test_max_connections_counts_upgraded(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_connections = 3;
    fx->cfg.upgraded_count = count_upgraded;
    fake_upgraded = 2;
    fixture_start(fx);
    struct client *a = client_connect(fx->port);
    send_str(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(a, &r), 0); /* 1 + 2 upgraded: at the cap */
    assert_int_equal(r.status, 200);
    response_free(&r);
    struct client *b = client_connect(fx->port);
    expect_error_and_close(b, 503, "too many connections");
    client_close(b);
    /* The upgraded ones went: room again, even while b's refusal may
     * still linger (a, b and c make 3). */
    fake_upgraded = 0;
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(c);
    client_close(a);
}

/* --- the reads handled per loop turn ---------------------------------------- */

#define HERD 40

/* With the loop held: HERD clients connect and send GET path (client 7
 * then a second request, /c7b, in the same write when pipelined), so that
 * every request is there for the loop's next poll. */
static void herd_connect(struct fixture *fx, struct client **c, bool own_paths)
{
    hold_start(fx);
    for (int i = 0; i < HERD; i++) {
        c[i] = client_connect(fx->port);
        char req[128];
        if (own_paths)
            snprintf(req, sizeof(req), "GET /c%d HTTP/1.1\r\nHost: x\r\n\r\n%s", i,
                     i == 7 ? "GET /c7b HTTP/1.1\r\nHost: x\r\n\r\n" : "");
        else
            snprintf(req, sizeof(req), "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
        send_str(c[i], req);
    }
}

/* HERD clients connect and send their requests while the loop is held, so
 * that all of them are read in one poll (as after a node restart): with
 * reads_per_turn 1, all but one wait for later turns (39 deferred), and
 * every request is still answered, each on its own connection, in order. */
static void test_reads_past_the_turn_budget_wait(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.reads_per_turn = 1;
    fixture_start(fx);
    struct client *c[HERD];
    herd_connect(fx, c, true);
    hold_end(fx);
    for (int i = HERD - 1; i >= 0; i--) {
        struct response r;
        char want[16];
        assert_int_equal(read_response(c[i], &r), 0);
        assert_int_equal(r.status, 200);
        snprintf(want, sizeof(want), "/c%d", i);
        assert_string_equal(jstr(&r, "path"), want);
        response_free(&r);
        if (i == 7) { /* the pipelined second request, after the first */
            assert_int_equal(read_response(c[i], &r), 0);
            assert_string_equal(jstr(&r, "path"), "/c7b");
            response_free(&r);
        }
    }
    in_loop(fx, loop_count_deferred);
    assert_true(fx->deferred_seen >= HERD / 2);
    /* Connections go on as usual afterwards. */
    send_str(c[3], "GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c[3], &r), 0);
    assert_string_equal(jstr(&r, "path"), "/again");
    response_free(&r);
    for (int i = 0; i < HERD; i++)
        client_close(c[i]);
}

/* A client gone while its request waited: the answer finds it closed, the
 * others are answered. */
static void test_deferred_client_that_left(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.reads_per_turn = 1;
    fixture_start(fx);
    struct client *c[HERD];
    herd_connect(fx, c, false);
    for (int i = 1; i < HERD; i += 2) {
        client_close(c[i]);
        c[i] = NULL;
    }
    hold_end(fx);
    for (int i = 0; i < HERD; i += 2) {
        struct response r;
        assert_int_equal(read_response(c[i], &r), 0);
        assert_int_equal(r.status, 200);
        response_free(&r);
    }
    assert_true(wait_connections(fx, HERD / 2, 5000)); /* the others are gone */
    for (int i = 0; i < HERD; i += 2)
        client_close(c[i]);
}

/* The server closed while requests wait: every connection closes, the
 * waiting input is freed (the sanitizers' leak check), done is called. */
static void test_close_with_deferred_reads(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.reads_per_turn = 1;
    fixture_start(fx);
    struct client *c[HERD];
    herd_connect(fx, c, false);
    hold_end(fx);
    struct response r;
    assert_int_equal(read_response(c[0], &r), 0); /* the first is answered */
    response_free(&r);
    fixture_stop(fx);
    for (int i = 0; i < HERD; i++) {
        /* answered or not, each connection ends */
        char buf[4096];
        ssize_t n;
        while ((n = recv(c[i]->fd, buf, sizeof(buf), 0)) > 0 || (n < 0 && errno == EINTR))
            ;
        assert_true(n == 0 || errno == ECONNRESET);
        client_close(c[i]);
    }
}

/* --- lingering close ------------------------------------------------------ */

/* A client that goes on sending a body the server has refused still gets to
 * read the 413: the server answers, sends its FIN and drops what follows
 * instead of closing (a close with unread bytes would reset the connection
 * and the client's kernel would drop the answer). Every send below must
 * succeed; without the lingering close the sends fail with EPIPE or
 * ECONNRESET once the server has closed. */
static void test_413_reaches_a_client_still_sending(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_body_bytes = 10;
    fx->cfg.linger_timeout_ms = 60000; /* only the client's EOF ends it here */
    fixture_start(fx);
    enum { BODY = 4 << 20 };
    char *body = malloc(BODY);
    assert_non_null(body);
    memset(body, 'x', BODY);
    for (int round = 0; round < 3; round++) {
        struct client *c = client_connect(fx->port);
        char head[128];
        snprintf(head, sizeof(head), "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
                 BODY);
        send_str(c, head);
        send_bytes(c, body, BODY);
        expect_error_and_close(c, 413, "larger than 10 bytes"); /* and our FIN */
        /* Still open on the server's side (lingering) until our EOF. */
        in_loop(fx, loop_count_conns);
        assert_int_equal(fx->conns_seen, 1);
        assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        assert_true(wait_connections(fx, 0, IO_TIMEOUT_S * 1000));
        client_close(c);
    }
    free(body);
    /* The server serves the next request as usual. */
    struct client *c = client_connect(fx->port);
    send_str(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(c);
}

/* A lingering connection whose client neither sends nor closes is closed
 * after linger_timeout_ms. */
static void test_linger_ends_after_its_time(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_body_bytes = 10;
    fx->cfg.linger_timeout_ms = 50;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc");
    expect_error_and_close(c, 413, NULL);
    assert_true(wait_connections(fx, 0, IO_TIMEOUT_S * 1000));
    client_close(c);
}

/* A client that sends without end is cut off past linger_max_bytes: its
 * sends start failing (the server closed) long before it has sent 256 MiB. */
static void test_linger_ends_after_its_bytes(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_body_bytes = 10;
    fx->cfg.linger_timeout_ms = 60000;
    fx->cfg.linger_max_bytes = 64 * 1024;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n");
    static char chunk[65536];
    memset(chunk, 'y', sizeof(chunk));
    size_t sent = 0;
    int err = 0;
    while (sent < ((size_t)256 << 20)) {
        ssize_t n = send(c->fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        sent += (size_t)n;
    }
    /* EAGAIN would be the send timeout: a server that stopped reading. */
    assert_true(err == EPIPE || err == ECONNRESET);
    assert_true(wait_connections(fx, 0, IO_TIMEOUT_S * 1000));
    client_close(c);
}

/* Refused connections (503) linger too, but at most 16 at once, so that a
 * flood over the cap cannot hold descriptors beyond it: of 20 refused
 * clients that keep their sockets open, 16 linger and 4 are closed. */
static void test_refused_lingering_is_bounded(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_connections = 1;
    fx->cfg.linger_timeout_ms = 60000;
    fixture_start(fx);
    struct client *a = client_connect(fx->port);
    send_str(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(a, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    enum { REFUSED = 20 };
    struct client *refused[REFUSED];
    for (int i = 0; i < REFUSED; i++) {
        refused[i] = client_connect(fx->port);
        expect_error_and_close(refused[i], 503, "too many connections");
    }
    assert_true(wait_connections(fx, 1 + 16, IO_TIMEOUT_S * 1000));
    for (int i = 0; i < REFUSED; i++)
        client_close(refused[i]);
    assert_true(wait_connections(fx, 1, IO_TIMEOUT_S * 1000));
    /* a still works. */
    send_str(a, "GET /a2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(a, &r), 0);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(a);
}

/* nreq pipelined "POST /bigresp" requests with a body of body bytes each
 * (every answer is 32 KiB); *reqlen is the length of one. */
static char *bigresp_requests(size_t nreq, int body, size_t *reqlen)
{
    char head[128];
    int hl = snprintf(head, sizeof(head),
                      "POST /bigresp HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", body);
    *reqlen = (size_t)hl + (size_t)body;
    char *all = malloc(*reqlen * nreq);
    for (size_t i = 0; i < nreq; i++) {
        memcpy(all + i * *reqlen, head, (size_t)hl);
        memset(all + i * *reqlen + hl, 'q', (size_t)body);
    }
    return all;
}

/* A connected socket with small buffers (so that the server's behaviour
 * decides) and send_timeout_s as its send timeout. */
static int small_client(int port, int bufsize, int send_timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
    struct timeval tv = { .tv_sec = send_timeout_s };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct timeval rtv = { .tv_sec = IO_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof(rtv));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Reads until EOF or a reset; the bytes read, or -1 on a timeout. */
static ssize_t read_to_end(int fd)
{
    static char buf[65536];
    ssize_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return total;
        if (n < 0)
            return -1;
        total += n;
    }
}

/* A client that pipelines without reading must not make the server queue
 * answers without bound: past HTTP_MAX_UNSENT (1 MiB) the server is to stop
 * reading, so the client's sends eventually block. Afterwards every answer
 * still arrives, in full. */
static void test_backpressure(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    enum { NREQ = 2048, BODY = 8192, RESP_BODY = 32768 };
    char head[128];
    int hl = snprintf(head, sizeof(head), "POST /bigresp HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", BODY);
    size_t reqlen = (size_t)hl + BODY;
    size_t total = reqlen * NREQ;
    char *all = malloc(total);
    for (int i = 0; i < NREQ; i++) {
        memcpy(all + (size_t)i * reqlen, head, (size_t)hl);
        memset(all + (size_t)i * reqlen + hl, 'q', BODY);
    }
    /* Small client buffers so that the server's behaviour decides. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int small = 65536;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct timeval tv = { .tv_sec = 1 };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

    size_t sent = 0;
    while (sent < total) {
        ssize_t n = send(fd, all + sent, total - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EAGAIN after the send timeout: the server stopped reading */
        sent += (size_t)n;
    }
    /* The server stopped reading: not all 16 MiB of requests went out. */
    assert_true(sent < total);

    /* Finish the request cut in the middle, read every answer. */
    size_t nreq = (sent + reqlen - 1) / reqlen;
    size_t want_sent = nreq * reqlen;
    char rhead[128];
    int rhl = snprintf(rhead, sizeof(rhead),
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", RESP_BODY);
    size_t resp_len = (size_t)rhl + RESP_BODY;
    size_t want_recv = nreq * resp_len, got = 0;
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    char *rbuf = malloc(resp_len);
    size_t in_resp = 0; /* offset inside the current answer */
    bool ok = true;
    while (got < want_recv) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN | (sent < want_sent ? POLLOUT : 0) };
        int pr = poll(&pfd, 1, IO_TIMEOUT_S * 1000);
        assert_true(pr > 0);
        if ((pfd.revents & POLLOUT) && sent < want_sent) {
            ssize_t n = send(fd, all + sent, want_sent - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, rbuf + in_resp, resp_len - in_resp, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            assert_true(n > 0);
            in_resp += (size_t)n;
            got += (size_t)n;
            if (in_resp == resp_len) {
                if (memcmp(rbuf, rhead, (size_t)rhl) != 0 || rbuf[resp_len - 1] != 'b')
                    ok = false;
                in_resp = 0;
            }
        }
    }
    assert_true(ok);
    assert_int_equal(got, want_recv);
    close(fd);
    free(rbuf);
    free(all);
}

/* Paused for backpressure, a client that reads nothing is not kept for
 * ever: nothing drained for the request timeout closes it (the idle timeout,
 * 60 s, plays no part). */
static void test_backpressure_stalled_closes(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.request_timeout_ms = 300;
    fixture_start(fx);
    enum { NREQ = 2048, BODY = 8192 };
    size_t reqlen;
    char *all = bigresp_requests(NREQ, BODY, &reqlen);
    size_t total = reqlen * NREQ;
    int fd = small_client(fx->port, 65536, 1);
    size_t sent = 0;
    while (sent < total) {
        ssize_t n = send(fd, all + sent, total - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* blocked (the server stopped reading) or already closed */
        sent += (size_t)n;
    }
    assert_true(sent < total);
    assert_true(wait_connections(fx, 0, IO_TIMEOUT_S * 1000));
    /* What the client gets is cut short: far from every answer. */
    ssize_t got = read_to_end(fd);
    assert_true(got >= 0);
    assert_true((size_t)got < (sent / reqlen) * 32768);
    close(fd);
    free(all);
}

/* The idle timer firing while answers still wait to be written (under the
 * backpressure bound, so reading is not paused) must not be lost: a client
 * that reads none of them is closed after the idle timeout. */
static void test_idle_timeout_with_unread_answers(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.idle_timeout_ms = 300;
    fixture_start(fx);
    in_loop(fx, loop_small_sndbuf);
    assert_true(fx->sndbufs_set >= 1);
    enum { NREQ = 20 }; /* 640 KiB of answers: under HTTP_MAX_UNSENT */
    size_t reqlen;
    char *all = bigresp_requests(NREQ, 10, &reqlen);
    int fd = small_client(fx->port, 4096, IO_TIMEOUT_S);
    size_t sent = 0;
    while (sent < reqlen * NREQ) {
        ssize_t n = send(fd, all + sent, reqlen * NREQ - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        sent += (size_t)n;
    }
    /* Nothing read: once it has accepted the connection, the server must
     * give up on it. */
    assert_true(wait_connections(fx, 1, IO_TIMEOUT_S * 1000));
    assert_true(wait_connections(fx, 0, IO_TIMEOUT_S * 1000));
    /* Answers were under way (this was not a plain idle close), but not
     * all of them could be delivered. */
    ssize_t got = read_to_end(fd);
    assert_true(got > 0);
    assert_true((size_t)got < NREQ * 32768);
    close(fd);
    free(all);
}

static void test_close_with_open_connections(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *a = client_connect(fx->port);
    struct client *b = client_connect(fx->port);
    send_str(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(a, &r), 0);
    response_free(&r);
    send_str(b, "GET /b HTTP/1.1\r\nHost: x\r\n"); /* half a request */
    fixture_stop(fx); /* closes both; done callback runs, loop empties */
    assert_true(wait_closed(a));
    assert_true(wait_closed(b));
    client_close(a);
    client_close(b);
}

static void test_start_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_server_config cfg = { .handler = echo_handler };
    http_server *s = NULL;
    assert_int_equal(http_server_start(&loop, "not-an-ip", 0, &cfg, &s), UV_EINVAL);
    assert_null(s);
    assert_int_equal(http_server_start(&loop, "127.0.0.1", 70000, &cfg, &s), UV_EINVAL);
    /* A port in use: the second bind fails and nothing is left behind. */
    http_server *first = NULL;
    assert_int_equal(http_server_start(&loop, "127.0.0.1", 0, &cfg, &first), 0);
    int rc = http_server_start(&loop, "127.0.0.1", http_server_port(first), &cfg, &s);
    assert_int_equal(rc, UV_EADDRINUSE);
    assert_null(s);
    http_server_close(first, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_ipv6_listener(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_server_config cfg = { .handler = echo_handler };
    http_server *s = NULL;
    int rc = http_server_start(&loop, "::1", 0, &cfg, &s);
    if (rc != 0) {
        assert_int_equal(uv_loop_close(&loop), 0);
        skip_because("no IPv6 loopback (::1) on this machine");
    }
    assert_true(http_server_port(s) > 0);
    assert_int_equal(http_server_connections(s), 0);
    http_server_close(s, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* HEAD answers are header sections only (RFC 9112 6.3): on a keep-alive
 * connection the answer after each must start right after its blank line,
 * which read_head_only/read_response check byte for byte. */
static void test_head_has_no_body(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c,
             "HEAD /text HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /text HTTP/1.1\r\nHost: x\r\n\r\n"
             "HEAD /bigresp HTTP/1.1\r\nHost: x\r\n\r\n"
             "HEAD /error HTTP/1.1\r\nHost: x\r\n\r\n"
             "HEAD /noanswer HTTP/1.1\r\nHost: x\r\n\r\n"
             "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    /* Content-Length states the length the body would have had. */
    assert_int_equal(read_head_only(c, &r), 5);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "\r\nContent-Type: text/plain\r\n"));
    assert_null(strcasestr(r.head, "Connection: close"));
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "plain");
    response_free(&r);
    assert_int_equal(read_head_only(c, &r), 32768);
    assert_int_equal(r.status, 200);
    /* Error answers, from the handler and from the server, too. */
    assert_true(read_head_only(c, &r) > 0);
    assert_int_equal(r.status, 422);
    assert_true(read_head_only(c, &r) > 0);
    assert_int_equal(r.status, 500);
    long echo_len = read_head_only(c, &r);
    assert_true(echo_len > 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(&r, "method"), "GET");
    assert_string_equal(jstr(&r, "path"), "/echo");
    /* The handler saw HEAD: "HEAD" is one byte longer than "GET". */
    assert_int_equal(echo_len, (long)r.body_len + 1);
    response_free(&r);
    /* Nothing was left over. */
    assert_int_equal(c->len, 0);
    client_close(c);
}

/* An error the server answers itself, before any handler, to a HEAD request
 * that is too large: header section, then the close, no body bytes. */
static void test_head_refused_by_server_has_no_body(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.max_body_bytes = 10;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "HEAD /x HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890");
    struct response r;
    assert_true(read_head_only(c, &r) > 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strcasestr(r.head, "\r\nConnection: close\r\n"));
    assert_true(wait_closed(c)); /* false if any byte followed the head */
    client_close(c);
}

static void test_answer_add_header(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c,
             "DELETE /allow HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /text HTTP/1.1\r\nHost: x\r\n\r\n"
             "HEAD /allow HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /header-noanswer HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /text HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.head, "\r\nAllow: GET, HEAD\r\n"));
    assert_non_null(strstr(r.head, "\r\nX-Extra: two\r\n"));
    assert_string_equal(jstr(&r, "error"), "use GET");
    response_free(&r);
    /* Added for one request only. */
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(r.body, "plain");
    assert_null(strcasestr(r.head, "Allow:"));
    assert_null(strcasestr(r.head, "X-Extra:"));
    response_free(&r);
    /* A HEAD answer carries them too. */
    assert_true(read_head_only(c, &r) > 0);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.head, "\r\nAllow: GET, HEAD\r\n"));
    /* The server's own 500 does not carry what the handler added. */
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 500);
    assert_null(strcasestr(r.head, "X-Lost"));
    response_free(&r);
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(r.body, "plain");
    assert_null(strcasestr(r.head, "X-Lost"));
    response_free(&r);
    client_close(c);
}

static void test_answer_add_header_refusals(void **state)
{
    struct fixture *fx = *state;
    fixture_start(fx);
    struct client *c = client_connect(fx->port);
    send_str(c, "GET /addheaders HTTP/1.1\r\nHost: x\r\n\r\nGET /text HTTP/1.1\r\nHost: x\r\n\r\n");
    struct response r;
    assert_int_equal(read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(&r, "ok"), 0);
    assert_int_equal(jint(&r, "tab"), 0);
    assert_int_equal(jint(&r, "empty_value"), 0);
    static const char *const refused[] = { "content_length", "content_type", "connection",
                                           "transfer_encoding", "space_in_name", "empty_name",
                                           "crlf_in_value", "too_big" };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (jint(&r, refused[i]) != -1)
            fail_msg("http_answer_add_header accepted the \"%s\" case", refused[i]);
    }
    assert_non_null(strstr(r.head, "\r\nX-Ok: fine\r\n"));
    assert_non_null(strstr(r.head, "\r\nX-Tab: a\tb\r\n"));
    assert_non_null(strstr(r.head, "\r\nX-Empty: \r\n"));
    assert_non_null(strcasestr(r.head, "\r\nContent-Type: application/json\r\n"));
    assert_null(strcasestr(r.head, "text/html"));
    assert_null(strcasestr(r.head, "Connection:"));
    assert_null(strcasestr(r.head, "chunked"));
    assert_null(strstr(r.head, "X-Injected"));
    assert_null(strstr(r.head, "X-Big"));
    assert_null(strstr(r.head, "X Bad"));
    /* Filled to the limit: every accepted line is there, whole, and the
     * added lines stay within HTTP_ANSWER_HEADERS_MAX. */
    json_int_t fills = jint(&r, "fills");
    assert_true(fills > 0);
    int lines = 0;
    for (const char *p = r.head; (p = strstr(p, "\r\nX-Fill-")) != NULL; p++) {
        assert_memory_equal(p + 11, ": 0123456789012345678901234567890123456789\r\n", 44);
        lines++;
    }
    assert_int_equal(lines, fills);
    size_t added = strlen("X-Ok: fine\r\nX-Tab: a\tb\r\nX-Empty: \r\n") +
                   (size_t)fills * strlen("X-Fill-00: 0123456789012345678901234567890123456789\r\n");
    assert_true(added <= HTTP_ANSWER_HEADERS_MAX);
    assert_true(added + strlen("X-Fill-00: 0123456789012345678901234567890123456789\r\n") >
                HTTP_ANSWER_HEADERS_MAX);
    response_free(&r);
    /* The connection is fine after it, with none of those headers. */
    assert_int_equal(read_response(c, &r), 0);
    assert_string_equal(r.body, "plain");
    assert_null(strstr(r.head, "X-Fill"));
    assert_null(strstr(r.head, "X-Ok"));
    response_free(&r);
    client_close(c);
    fixture_stop(fx);
    /* After the answer, adding is refused. */
    assert_int_equal(fx->late_add_rc, -1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* --- the probe (a connection without a socket, for the fuzz target) -------- */

static void probe_handler(http_request *req, void *ud)
{
    char out[128];
    int n = snprintf(out, sizeof(out), "%s %s %zu", req->method, req->path, req->body_len);
    http_respond(req, 200, "text/plain", out, (size_t)n);
}

/* Pipelined requests fed whole and byte by byte give the same answers, in
 * order; a malformed request ends the probe with a 400 and later input is
 * ignored. */
static void test_probe(void **state)
{
    (void)state;
    static const char in[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                             "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
                             "BAD\x01 / HTTP/1.1\r\n\r\n";
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_server_config cfg = { .handler = probe_handler };
    char *whole = NULL;
    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        http_probe *p = http_probe_new(&loop, &cfg);
        int rc = 0;
        if (bytewise)
            for (size_t i = 0; i < sizeof(in) - 1 && rc == 0; i++)
                rc = http_probe_feed(p, in + i, 1);
        else
            rc = http_probe_feed(p, in, sizeof(in) - 1);
        assert_int_equal(rc, 1);
        assert_int_equal(http_probe_feed(p, "GET / HTTP/1.1\r\n\r\n", 18), 1);
        size_t len, last;
        const char *out = http_probe_output(p, &len, &last);
        assert_non_null(strstr(out, "GET /a 0"));
        assert_non_null(strstr(out, "POST /b 3"));
        assert_true(strstr(out, "GET /a 0") < strstr(out, "POST /b 3"));
        assert_memory_equal(out + last, "HTTP/1.1 400 ", 13);
        if (whole == NULL)
            whole = strdup(out);
        else
            assert_string_equal(out, whole);
        http_probe_free(p);
    }
    free(whole);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The Host rule holds in every chunking: each input cut in two at every
 * point, and fed byte by byte, gives the answers it gives whole. */
static void test_probe_host_in_every_chunking(void **state)
{
    (void)state;
    static const char in[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                             "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                             "POST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                             "GET /never HTTP/1.1\r\nHost: h\r\n\r\n";
    const size_t len = sizeof(in) - 1;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_server_config cfg = { .handler = probe_handler };
    char *whole = NULL;
    for (size_t cut = 0; cut <= len + 1; cut++) {
        http_probe *p = http_probe_new(&loop, &cfg);
        int rc = 0;
        if (cut == len + 1) { /* byte by byte */
            for (size_t i = 0; i < len && rc == 0; i++)
                rc = http_probe_feed(p, in + i, 1);
        } else {
            rc = http_probe_feed(p, in, cut);
            if (rc == 0)
                rc = http_probe_feed(p, in + cut, len - cut);
        }
        assert_int_equal(rc, 1);
        size_t olen, last;
        const char *out = http_probe_output(p, &olen, &last);
        if (whole == NULL) {
            assert_non_null(strstr(out, "GET /a 0"));
            assert_non_null(strstr(out, "GET /b 0"));
            assert_null(strstr(out, "POST /c"));
            assert_null(strstr(out, "/never"));
            assert_memory_equal(out + last, "HTTP/1.1 400 ", 13);
            assert_non_null(strstr(out + last, "no Host header"));
            whole = strdup(out);
        } else {
            assert_string_equal(out, whole);
        }
        http_probe_free(p);
    }
    free(whole);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_whole_request),
        T(test_get_without_query_or_body),
        T(test_random_chunkings_identical),
        T(test_one_byte_at_a_time),
        T(test_pipelined),
        T(test_keep_alive),
        T(test_half_close_still_answered),
        T(test_http10_closes),
        T(test_post_large_body),
        T(test_malformed_request_line),
        T(test_oversized_headers),
        T(test_too_many_headers),
        T(test_body_too_large),
        T(test_chunked_body_refused),
        T(test_request_timeout),
        T(test_silent_connection_closes_after_request_timeout),
        T(test_idle_timeout_closes),
        T(test_host_required),
        T(test_host_required_for_upgrades),
        T(test_upgrade_without_callback),
        T(test_upgrade_taken),
        T(test_upgrade_refused),
        T(test_upgrade_refused_unanswered),
        T(test_header_lookup),
        T(test_header_empty_value),
        T(test_respond_error_json),
        T(test_head_has_no_body),
        T(test_head_refused_by_server_has_no_body),
        T(test_answer_add_header),
        T(test_answer_add_header_refusals),
        T(test_max_connections),
        T(test_max_connections_counts_upgraded),
        T(test_reads_past_the_turn_budget_wait),
        T(test_deferred_client_that_left),
        T(test_close_with_deferred_reads),
        T(test_413_reaches_a_client_still_sending),
        T(test_linger_ends_after_its_time),
        T(test_linger_ends_after_its_bytes),
        T(test_refused_lingering_is_bounded),
        T(test_backpressure),
        T(test_backpressure_stalled_closes),
        T(test_idle_timeout_with_unread_answers),
        T(test_close_with_open_connections),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_ipv6_listener),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_probe_host_in_every_chunking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
