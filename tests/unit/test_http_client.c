/* Unit tests for common/http_client.c: URL parsing, and requests in one uv
 * loop against an http_server (GET/POST with JSON, error statuses, URL
 * prefixes, big answers), a refused port, a listener that accepts and never
 * answers (timeout, cancel), and scripted raw servers (garbled answers,
 * bodies delimited by the end of the connection). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/http_client.h"
#include "common/http_server.h"

/* --- test harness ------------------------------------------------------------ */

#define MAX_ACCEPTED 8

struct result {
    int calls;
    int status;
    char *body;          /* copy of the body (NULL when none was given) */
    size_t len;
    bool body_was_null;
};

struct env {
    uv_loop_t loop;
    http_server *srv;
    int port;
    int pending;          /* callbacks still to come */
    /* a raw listener: silent, or scripted with canned bytes */
    uv_tcp_t raw;
    bool raw_open;
    int raw_port;
    const char *script;   /* NULL: accept and stay silent */
    size_t script_len;
    uv_tcp_t *accepted[MAX_ACCEPTED];
    int naccepted;
    /* what the server handler saw */
    char seen_method[16];
    char seen_path[128];
    char seen_query[128];
    char seen_ctype[64];
    char seen_conn[64];
    char seen_body[256];
    char seen_auth[128];
    size_t big_len;       /* /big answers this many bytes */
    uv_timer_t cancel_timer;
    http_client_req *to_cancel;
};

static void server_handler(http_request *req, void *ud)
{
    struct env *e = ud;
    snprintf(e->seen_method, sizeof(e->seen_method), "%s", req->method);
    snprintf(e->seen_path, sizeof(e->seen_path), "%s", req->path);
    snprintf(e->seen_query, sizeof(e->seen_query), "%s", req->query);
    const char *ct = http_request_header(req, "content-type");
    snprintf(e->seen_ctype, sizeof(e->seen_ctype), "%s", ct ? ct : "(none)");
    const char *cn = http_request_header(req, "connection");
    snprintf(e->seen_conn, sizeof(e->seen_conn), "%s", cn ? cn : "(none)");
    snprintf(e->seen_body, sizeof(e->seen_body), "%s", req->body);
    const char *au = http_request_header(req, "x-dchat-auth");
    snprintf(e->seen_auth, sizeof(e->seen_auth), "%s", au ? au : "(none)");
    if (strcmp(req->path, "/missing") == 0) {
        http_respond_error(req, 404, "no such thing: %s", req->path);
        return;
    }
    if (strcmp(req->path, "/big") == 0) {
        char *b = malloc(e->big_len);
        memset(b, 'z', e->big_len);
        http_respond(req, 200, "text/plain", b, e->big_len);
        free(b);
        return;
    }
    if (strcmp(req->path, "/empty") == 0) {
        http_respond(req, 204, NULL, NULL, 0);
        return;
    }
    json_t *in = json_loadb(req->body, req->body_len, 0, NULL);
    json_t *out = json_pack("{s:s, s:s}", "method", req->method, "path", req->path);
    if (in != NULL)
        json_object_set_new(out, "got", in);
    http_respond_json(req, strcmp(req->method, "POST") == 0 ? 201 : 200, out);
}

static void raw_close_cb(uv_handle_t *h) { free(h); }

static void env_shutdown(struct env *e)
{
    if (e->srv != NULL) {
        http_server_close(e->srv, NULL, NULL);
        e->srv = NULL;
    }
    if (e->raw_open) {
        uv_close((uv_handle_t *)&e->raw, NULL);
        e->raw_open = false;
    }
    for (int i = 0; i < e->naccepted; i++)
        if (!uv_is_closing((uv_handle_t *)e->accepted[i]))
            uv_close((uv_handle_t *)e->accepted[i], raw_close_cb);
    e->naccepted = 0;
}

static void result_cb(int status, const char *body, size_t len, void *ud)
{
    struct result *r = ud;
    r->calls++;
    r->status = status;
    r->len = len;
    r->body_was_null = body == NULL;
    free(r->body);
    r->body = NULL;
    if (body != NULL) {
        r->body = malloc(len + 1);
        memcpy(r->body, body, len + 1); /* includes the promised NUL */
    }
}

/* Every request's ud is a struct result inside this wrapper. */
struct call {
    struct result res;
    struct env *e;
};

static void call_cb(int status, const char *body, size_t len, void *ud)
{
    struct call *c = ud;
    result_cb(status, body, len, &c->res);
    if (--c->e->pending == 0)
        env_shutdown(c->e);
}

static void env_init(struct env *e, bool with_server)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(uv_loop_init(&e->loop), 0);
    if (with_server) {
        struct http_server_config cfg = { .handler = server_handler, .ud = e };
        assert_int_equal(http_server_start(&e->loop, "127.0.0.1", 0, &cfg, &e->srv), 0);
        e->port = http_server_port(e->srv);
    }
}

static void env_run_and_close(struct env *e)
{
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(e->pending, 0);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void raw_write_cb(uv_write_t *w, int status)
{
    uv_close((uv_handle_t *)w->handle, raw_close_cb);
    free(w);
}

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    static char buf[4096];
    b->base = buf;
    b->len = sizeof(buf);
}

/* Scripted: on the first bytes of the request, write the script and close. */
static void raw_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct env *e = s->data;
    if (n == 0)
        return;
    uv_read_stop(s);
    if (n < 0) {
        uv_close((uv_handle_t *)s, raw_close_cb);
        return;
    }
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t out = uv_buf_init((char *)e->script, (unsigned)e->script_len);
    if (uv_write(w, s, &out, 1, raw_write_cb) != 0) {
        free(w);
        uv_close((uv_handle_t *)s, raw_close_cb);
    }
}

static void raw_accept_cb(uv_stream_t *server, int status)
{
    struct env *e = server->data;
    if (status != 0)
        return;
    uv_tcp_t *t = malloc(sizeof(*t));
    uv_tcp_init(server->loop, t);
    t->data = e;
    if (uv_accept(server, (uv_stream_t *)t) != 0 || e->naccepted == MAX_ACCEPTED) {
        uv_close((uv_handle_t *)t, raw_close_cb);
        return;
    }
    if (e->script != NULL) {
        uv_read_start((uv_stream_t *)t, raw_alloc, raw_read_cb);
        return; /* closes itself */
    }
    e->accepted[e->naccepted++] = t; /* silent: kept open until shutdown */
}

static void raw_listen(struct env *e, const char *script)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_init(&e->loop, &e->raw), 0);
    e->raw.data = e;
    assert_int_equal(uv_tcp_bind(&e->raw, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&e->raw, 16, raw_accept_cb), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(&e->raw, (struct sockaddr *)&ss, &len), 0);
    e->raw_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    e->raw_open = true;
    e->script = script;
    e->script_len = script ? strlen(script) : 0;
}

static void start(struct env *e, struct call *c, int port, const char *prefix,
                  const char *method, const char *path, const char *body,
                  unsigned timeout_ms, http_client_req **out)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, prefix);
    memset(c, 0, sizeof(*c));
    c->e = e;
    e->pending++;
    assert_int_equal(http_client_request(&e->loop, url, method, path, body, timeout_ms,
                                         call_cb, c, out), 0);
    assert_int_equal(c->res.calls, 0); /* never from inside the call */
}

static void call_free(struct call *c) { free(c->res.body); }

/* A port that nobody listens on (bound, read, closed). */
static int free_port(void)
{
    uv_loop_t loop;
    uv_tcp_t t;
    struct sockaddr_in sa;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &t);
    assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&sa, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len), 0);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return port;
}

/* --- tests --------------------------------------------------------------------- */

static void test_parse_url(void **state)
{
    (void)state;
    char host[64], prefix[64];
    int port;
    assert_int_equal(http_client_parse_url("http://127.0.0.1:8080", host, sizeof(host), &port,
                                           prefix, sizeof(prefix)), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_string_equal(prefix, "");
    assert_int_equal(http_client_parse_url("http://disco.example:9000/api/v1/", host, sizeof(host),
                                           &port, prefix, sizeof(prefix)), 0);
    assert_string_equal(host, "disco.example");
    assert_int_equal(port, 9000);
    assert_string_equal(prefix, "/api/v1");
    assert_int_equal(http_client_parse_url("http://[::1]:99/base", host, sizeof(host), &port,
                                           prefix, sizeof(prefix)), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 99);
    assert_string_equal(prefix, "/base");
    assert_int_equal(http_client_parse_url("http://example.org", host, sizeof(host), &port,
                                           NULL, 0), 0);
    assert_string_equal(host, "example.org");
    assert_int_equal(port, 80);
    assert_int_equal(http_client_parse_url("http://h:1/", host, sizeof(host), &port,
                                           prefix, sizeof(prefix)), 0);
    assert_string_equal(prefix, "");

    const char *bad[] = {
        "https://h:1", "h:1", "http://", "http:///x", "http://:80", "http://h:",
        "http://h:65536", "http://h:0x10", "http://[::1]", "http://[::1]80", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (http_client_parse_url(bad[i], host, sizeof(host), &port, prefix, sizeof(prefix)) != -1)
            fail_msg("accepted bad url \"%s\"", bad[i]);
    }
    /* Too small output buffers are refused, not overrun. */
    char tiny[4];
    assert_int_equal(http_client_parse_url("http://longhost:1", tiny, sizeof(tiny), &port,
                                           NULL, 0), -1);
    assert_int_equal(http_client_parse_url("http://longhost", tiny, sizeof(tiny), &port,
                                           NULL, 0), -1);
    assert_int_equal(http_client_parse_url("http://h:1/long/prefix", host, sizeof(host), &port,
                                           tiny, sizeof(tiny)), -1);
}

static void test_get_json(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, true);
    struct call c;
    start(&e, &c, e.port, "", "GET", "/things?x=1", NULL, 2000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, 200);
    assert_false(c.res.body_was_null);
    assert_int_equal(strlen(c.res.body), c.res.len);
    assert_string_equal(c.res.body, "{\"method\":\"GET\",\"path\":\"/things\"}");
    assert_string_equal(e.seen_method, "GET");
    assert_string_equal(e.seen_query, "x=1");
    assert_string_equal(e.seen_ctype, "(none)"); /* no body, no Content-Type */
    assert_string_equal(e.seen_conn, "close");
    call_free(&c);
}

static void test_post_json(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, true);
    struct call c;
    start(&e, &c, e.port, "", "POST", "/register", "{\"id\":7,\"name\":\"n\\u00e9\"}", 2000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, 201);
    assert_string_equal(e.seen_ctype, "application/json");
    assert_string_equal(e.seen_body, "{\"id\":7,\"name\":\"n\\u00e9\"}");
    json_t *j = json_loads(c.res.body, 0, NULL);
    assert_non_null(j);
    json_t *got = json_object_get(j, "got");
    assert_int_equal(json_integer_value(json_object_get(got, "id")), 7);
    assert_string_equal(json_string_value(json_object_get(got, "name")), "n\xc3\xa9");
    json_decref(j);
    call_free(&c);
}

static void test_error_status_and_prefix(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, true);
    struct call a, b, d;
    start(&e, &a, e.port, "", "GET", "/missing", NULL, 2000, NULL);
    start(&e, &b, e.port, "/base//", "DELETE", "/x", NULL, 2000, NULL);
    start(&e, &d, e.port, "", "GET", "/empty", NULL, 2000, NULL);
    env_run_and_close(&e);
    assert_int_equal(a.res.calls, 1);
    assert_int_equal(a.res.status, 404);
    assert_string_equal(a.res.body, "{\"error\":\"no such thing: /missing\"}");
    assert_int_equal(b.res.calls, 1);
    assert_int_equal(b.res.status, 200);
    assert_string_equal(b.res.body, "{\"method\":\"DELETE\",\"path\":\"/base/x\"}");
    assert_int_equal(d.res.calls, 1);
    assert_int_equal(d.res.status, 204);
    assert_false(d.res.body_was_null); /* an empty body is "", not NULL */
    assert_int_equal(d.res.len, 0);
    assert_string_equal(d.res.body, "");
    call_free(&a);
    call_free(&b);
    call_free(&d);
}

static void test_localhost_name(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, true);
    struct call c;
    char url[64];
    snprintf(url, sizeof(url), "http://localhost:%d", e.port);
    memset(&c, 0, sizeof(c));
    c.e = &e;
    e.pending = 1;
    assert_int_equal(http_client_request(&e.loop, url, "GET", "/l", NULL, 2000, call_cb, &c, NULL), 0);
    env_run_and_close(&e);
    assert_int_equal(c.res.status, 200);
    call_free(&c);
}

/* A host that is not an address literal to netaddr_parse() (inet_pton
 * rejects "127.1") goes through uv_getaddrinfo; libc reads it as 127.0.0.1
 * without asking any resolver, so the test holds on a machine with no
 * /etc/hosts and no DNS. */
static void test_resolved_name(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, true);
    struct call c;
    char url[64];
    snprintf(url, sizeof(url), "http://127.1:%d", e.port);
    memset(&c, 0, sizeof(c));
    c.e = &e;
    e.pending = 1;
    assert_int_equal(http_client_request(&e.loop, url, "GET", "/r", NULL, 3000, call_cb, &c, NULL), 0);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, 200);
    call_free(&c);
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, false);
    struct call c;
    start(&e, &c, free_port(), "", "GET", "/", NULL, 2000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, UV_ECONNREFUSED);
    assert_true(c.res.body_was_null);
    assert_int_equal(c.res.len, 0);
    call_free(&c);
}

/* Extra header lines reach the server as they were given; lines with a
 * stray CR or LF (header injection) are refused before anything is sent. */
static void test_extra_headers(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, true);
    struct call c;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", e.port);
    memset(&c, 0, sizeof(c));
    c.e = &e;
    e.pending++;
    assert_int_equal(http_client_request_headers(&e.loop, url, "POST", "/p",
                                                 "X-Dchat-Auth: 12.ab\r\nX-Other: 1\r\n",
                                                 "{}", 2000, call_cb, &c, NULL), 0);
    static const char *const bad[] = { "X-A: 1", "X-A: 1\n", "X-A: 1\r\n\r\n",
                                       "X-A: 1\rX-B: 2\r\n", "X-A: 1\nX-B: 2\r\n", "\r\n" };
    http_client_req *h = NULL;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(http_client_request_headers(&e.loop, url, "GET", "/", bad[i], NULL,
                                                     100, call_cb, &c, &h), UV_EINVAL);
    assert_null(h);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, 201);
    assert_string_equal(e.seen_auth, "12.ab");
    assert_string_equal(e.seen_body, "{}");
    call_free(&c);
}

static void test_bad_url_no_callback(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, false);
    struct call c;
    memset(&c, 0, sizeof(c));
    c.e = &e;
    http_client_req *h = NULL;
    assert_int_equal(http_client_request(&e.loop, "ftp://x:1", "GET", "/", NULL, 100,
                                         call_cb, &c, &h), UV_EINVAL);
    assert_int_equal(http_client_request(&e.loop, "http://[::1]", "GET", "/", NULL, 100,
                                         call_cb, &c, &h), UV_EINVAL);
    assert_null(h);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 0);
}

static void test_timeout_silent_server(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, false);
    raw_listen(&e, NULL);
    struct call c;
    uint64_t t0 = uv_hrtime();
    start(&e, &c, e.raw_port, "", "POST", "/slow", "{}", 200, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, UV_ETIMEDOUT);
    assert_true(c.res.body_was_null);
    /* It did wait for the timeout (a lower bound only). */
    assert_true(uv_hrtime() - t0 >= 150 * 1000000ull);
    call_free(&c);
}

static void cancel_timer_cb(uv_timer_t *t)
{
    struct env *e = t->data;
    http_client_cancel(e->to_cancel);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, false);
    raw_listen(&e, NULL);
    /* Cancelled right away, before anything started. */
    struct call a;
    http_client_req *ha = NULL;
    start(&e, &a, e.raw_port, "", "GET", "/", NULL, 5000, &ha);
    assert_non_null(ha);
    http_client_cancel(ha);
    assert_int_equal(a.res.calls, 0); /* delivered from the loop */
    /* Cancelled while connected and waiting for the answer. */
    struct call b;
    start(&e, &b, e.raw_port, "", "GET", "/", NULL, 5000, &e.to_cancel);
    uv_timer_init(&e.loop, &e.cancel_timer);
    e.cancel_timer.data = &e;
    uv_timer_start(&e.cancel_timer, cancel_timer_cb, 50, 0);
    env_run_and_close(&e);
    assert_int_equal(a.res.calls, 1);
    assert_int_equal(a.res.status, UV_ECANCELED);
    assert_true(a.res.body_was_null);
    assert_int_equal(b.res.calls, 1);
    assert_int_equal(b.res.status, UV_ECANCELED);
    call_free(&a);
    call_free(&b);
}

static void test_garbled_answer(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, false);
    raw_listen(&e, "THIS IS NOT HTTP\r\n\r\n");
    struct call c;
    start(&e, &c, e.raw_port, "", "GET", "/", NULL, 2000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, UV_EPROTO);
    call_free(&c);
}

static void test_truncated_answer(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, false);
    raw_listen(&e, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    struct call c;
    start(&e, &c, e.raw_port, "", "GET", "/", NULL, 2000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, UV_EPROTO);
    call_free(&c);
}

static void test_answer_delimited_by_close(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, false);
    raw_listen(&e, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nhello, world");
    struct call c;
    start(&e, &c, e.raw_port, "", "GET", "/", NULL, 2000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, 503);
    assert_int_equal(c.res.len, 12);
    assert_string_equal(c.res.body, "hello, world");
    call_free(&c);
}

static void test_big_answers(void **state)
{
    (void)state;
    /* 1 MiB comes through in full. */
    struct env e;
    env_init(&e, true);
    e.big_len = 1u << 20;
    struct call c;
    start(&e, &c, e.port, "", "GET", "/big", NULL, 5000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.status, 200);
    assert_int_equal(c.res.len, 1u << 20);
    assert_int_equal(c.res.body[0], 'z');
    assert_int_equal(c.res.body[(1u << 20) - 1], 'z');
    assert_int_equal(c.res.body[1u << 20], '\0');
    call_free(&c);

    /* Over 4 MiB: UV_E2BIG. */
    env_init(&e, true);
    e.big_len = (4u << 20) + 1;
    start(&e, &c, e.port, "", "GET", "/big", NULL, 5000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, UV_E2BIG);
    assert_true(c.res.body_was_null);
    call_free(&c);

    /* Exactly 4 MiB is not "over 4 MiB". */
    env_init(&e, true);
    e.big_len = 4u << 20;
    start(&e, &c, e.port, "", "GET", "/big", NULL, 5000, NULL);
    env_run_and_close(&e);
    assert_int_equal(c.res.calls, 1);
    assert_int_equal(c.res.status, 200);
    assert_int_equal(c.res.len, 4u << 20);
    assert_int_equal(c.res.body[0], 'z');
    assert_int_equal(c.res.body[(4u << 20) - 1], 'z');
    assert_int_equal(c.res.body[4u << 20], '\0');
    call_free(&c);
}

static void test_many_parallel(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, true);
    enum { N = 20 };
    struct call *c = calloc(N, sizeof(*c));
    for (int i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/p/%d", i);
        start(&e, &c[i], e.port, "", "GET", path, NULL, 5000, NULL);
    }
    env_run_and_close(&e);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof(want), "{\"method\":\"GET\",\"path\":\"/p/%d\"}", i);
        assert_int_equal(c[i].res.calls, 1);
        assert_int_equal(c[i].res.status, 200);
        assert_string_equal(c[i].res.body, want);
        call_free(&c[i]);
    }
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_get_json),
        cmocka_unit_test(test_post_json),
        cmocka_unit_test(test_error_status_and_prefix),
        cmocka_unit_test(test_localhost_name),
        cmocka_unit_test(test_resolved_name),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_bad_url_no_callback),
        cmocka_unit_test(test_extra_headers),
        cmocka_unit_test(test_timeout_silent_server),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_garbled_answer),
        cmocka_unit_test(test_truncated_answer),
        cmocka_unit_test(test_answer_delimited_by_close),
        cmocka_unit_test(test_big_answers),
        cmocka_unit_test(test_many_parallel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
