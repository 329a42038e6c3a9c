/* http_client: see http_client.h. One heap object per request owns the
 * socket, a timer for the whole exchange and the llhttp response parser.
 * The callback is always deferred to the loop: results found synchronously
 * (a bad address) go through a zero timer like everything else. */
#include "common/http_client.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/netaddr.h"
#include "common/util.h"

#define HTTP_CLIENT_MAX_BODY (4u << 20)

struct http_client_req {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uv_getaddrinfo_t resolve;
    llhttp_t parser;
    http_client_cb cb;
    void *ud;
    char *request;            /* the bytes to send */
    size_t request_len;
    char *body;
    size_t body_len, body_cap;
    int status;               /* result handed to cb */
    unsigned timeout_ms;
    bool resolving;
    bool tcp_open;
    bool done;                /* cb has run or is about to */
    int closes_pending;
    char host[256];
    int port;
};

static llhttp_settings_t client_settings;

int http_client_parse_url(const char *url, char *host, size_t hostlen,
                          int *port, char *prefix, size_t prefixlen)
{
    const char *p;
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    p = url + 7;
    const char *slash = strchr(p, '/');
    size_t hp_len = slash ? (size_t)(slash - p) : strlen(p);
    char hp[300];
    if (hp_len == 0 || hp_len >= sizeof(hp))
        return -1;
    memcpy(hp, p, hp_len);
    hp[hp_len] = '\0';
    const char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    if (colon == NULL) {
        /* No port: HTTP's default. */
        if (strlen(hp) >= hostlen || hp[0] == '[')
            return -1;
        strcpy(host, hp);
        *port = 80;
    } else if (util_parse_hostport(hp, "", host, hostlen, port) != 0 || host[0] == '\0') {
        return -1;
    }
    if (prefix != NULL) {
        const char *pre = slash ? slash : "";
        size_t n = strlen(pre);
        while (n > 0 && pre[n - 1] == '/')
            n--;
        if (n >= prefixlen)
            return -1;
        memcpy(prefix, pre, n);
        prefix[n] = '\0';
    }
    return 0;
}

static void closed_cb(uv_handle_t *h)
{
    http_client_req *r = h->data;
    if (--r->closes_pending > 0)
        return;
    free(r->request);
    free(r->body);
    free(r);
}

/* Calls the callback once and releases everything. */
static void finish(http_client_req *r, int status)
{
    if (r->done)
        return;
    r->done = true;
    if (r->body == NULL) {
        r->body = xmalloc(1);
        r->body_len = 0;
    }
    r->body[r->body_len] = '\0';
    r->cb(status, status >= 0 ? r->body : NULL, status >= 0 ? r->body_len : 0, r->ud);
    if (r->resolving)
        uv_cancel((uv_req_t *)&r->resolve); /* its callback still runs */
    r->closes_pending = 1 + (r->tcp_open ? 1 : 0) + (r->resolving ? 1 : 0);
    uv_close((uv_handle_t *)&r->timer, closed_cb);
    if (r->tcp_open)
        uv_close((uv_handle_t *)&r->tcp, closed_cb);
}

static void timer_cb(uv_timer_t *t)
{
    http_client_req *r = t->data;
    finish(r, r->status ? r->status : UV_ETIMEDOUT);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    http_client_req *r = p->data;
    /* The bound is on the body itself; the NUL added by finish() may take
     * the buffer one byte past it. */
    if (r->body_len + len > HTTP_CLIENT_MAX_BODY)
        return -1;
    if (r->body_len + len + 1 > r->body_cap) {
        r->body_cap = UTIL_MAX(r->body_len + len + 1, r->body_cap * 2);
        r->body = xrealloc(r->body, r->body_cap);
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    http_client_req *r = p->data;
    finish(r, p->status_code);
    return HPE_PAUSED;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char rbuf[65536];
    buf->base = rbuf;
    buf->len = sizeof(rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    http_client_req *r = s->data;
    if (r->done || nread == 0)
        return;
    if (nread == UV_EOF) {
        /* A body delimited by the end of the connection ends here. */
        if (llhttp_finish(&r->parser) == HPE_OK && !r->done)
            finish(r, r->parser.status_code ? (int)r->parser.status_code : UV_EPROTO);
        else if (!r->done)
            finish(r, UV_EPROTO);
        return;
    }
    if (nread < 0) {
        finish(r, (int)nread);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&r->parser, buf->base, (size_t)nread);
    if (r->done)
        return;
    if (e != HPE_OK)
        finish(r, e == HPE_USER ? UV_E2BIG : UV_EPROTO);
}

static void write_cb(uv_write_t *w, int status)
{
    http_client_req *r = w->data;
    if (status != 0 && !r->done)
        finish(r, status);
}

static void connect_cb(uv_connect_t *c, int status)
{
    http_client_req *r = c->data;
    if (r->done)
        return;
    if (status != 0) {
        finish(r, status);
        return;
    }
    uv_buf_t buf = uv_buf_init(r->request, (unsigned)r->request_len);
    r->write.data = r;
    int rc = uv_write(&r->write, (uv_stream_t *)&r->tcp, &buf, 1, write_cb);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->tcp, alloc_cb, read_cb);
    if (rc != 0)
        finish(r, rc);
}

static void start_connect(http_client_req *r, const struct sockaddr *sa)
{
    int rc = uv_tcp_init(r->loop, &r->tcp);
    if (rc != 0) {
        finish(r, rc);
        return;
    }
    r->tcp_open = true;
    r->tcp.data = r;
    r->connect.data = r;
    rc = uv_tcp_connect(&r->connect, &r->tcp, sa, connect_cb);
    if (rc != 0)
        finish(r, rc);
}

static void resolved_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    http_client_req *r = g->data;
    r->resolving = false;
    if (r->done) {
        /* finish() counted this callback among the pending closes. */
        uv_freeaddrinfo(res);
        closed_cb((uv_handle_t *)&r->timer);
        return;
    }
    if (status != 0) {
        finish(r, status);
    } else {
        start_connect(r, res->ai_addr);
    }
    uv_freeaddrinfo(res);
}

/* A zero timer so that even an immediate result reaches cb from the loop. */
static void start_cb(uv_timer_t *t)
{
    http_client_req *r = t->data;
    struct sockaddr_storage sa;
    uv_timer_start(&r->timer, timer_cb, r->timeout_ms, 0);
    if (netaddr_parse(r->host, r->port, &sa) == 0) {
        start_connect(r, (struct sockaddr *)&sa);
        return;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    char port[8];
    snprintf(port, sizeof(port), "%d", r->port);
    r->resolve.data = r;
    int rc = uv_getaddrinfo(r->loop, &r->resolve, resolved_cb, r->host, port, &hints);
    if (rc != 0)
        finish(r, rc);
    else
        r->resolving = true;
}

/* Whether headers is a run of non-empty "Name: value\r\n" lines as far as
 * CR and LF go: each only in a line's final CRLF (an empty line would end
 * the header section early). */
static bool header_lines_ok(const char *h)
{
    size_t n = strlen(h);
    if (n > 0 && (n < 2 || h[n - 2] != '\r' || h[n - 1] != '\n'))
        return false;
    for (size_t i = 0; i < n; i++) {
        bool line_start = i == 0 || h[i - 1] == '\n';
        if (h[i] == '\r' && (h[i + 1] != '\n' || line_start))
            return false;
        if (h[i] == '\n' && (i == 0 || h[i - 1] != '\r'))
            return false;
    }
    return true;
}

int http_client_request(uv_loop_t *loop, const char *url, const char *method,
                        const char *path, const char *body,
                        unsigned timeout_ms, http_client_cb cb, void *ud,
                        http_client_req **out)
{
    return http_client_request_headers(loop, url, method, path, NULL, body, timeout_ms, cb,
                                       ud, out);
}

int http_client_request_headers(uv_loop_t *loop, const char *url, const char *method,
                                const char *path, const char *headers, const char *body,
                                unsigned timeout_ms, http_client_cb cb, void *ud,
                                http_client_req **out)
{
    char host[256], prefix[256];
    int port;
    if (http_client_parse_url(url, host, sizeof(host), &port, prefix, sizeof(prefix)) != 0)
        return UV_EINVAL;
    if (headers == NULL)
        headers = "";
    if (!header_lines_ok(headers))
        return UV_EINVAL;

    if (client_settings.on_body == NULL) {
        llhttp_settings_init(&client_settings);
        client_settings.on_body = on_body;
        client_settings.on_message_complete = on_message_complete;
    }
    http_client_req *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->cb = cb;
    r->ud = ud;
    strcpy(r->host, host);
    r->port = port;
    size_t blen = body ? strlen(body) : 0;
    int hostport_v6 = strchr(host, ':') != NULL;
    size_t cap = strlen(method) + strlen(prefix) + strlen(path) + strlen(host) +
                 strlen(headers) + blen + 256;
    r->request = xmalloc(cap);
    int n = snprintf(r->request, cap,
                     "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%d\r\nConnection: close\r\n"
                     "Accept: application/json\r\n%s",
                     method, prefix, path, hostport_v6 ? "[" : "", host,
                     hostport_v6 ? "]" : "", port, headers);
    if (body != NULL)
        n += snprintf(r->request + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(r->request + n, cap - (size_t)n, "\r\n");
    if (body != NULL)
        memcpy(r->request + n, body, blen);
    r->request_len = (size_t)n + blen;

    llhttp_init(&r->parser, HTTP_RESPONSE, &client_settings);
    r->parser.data = r;
    r->timeout_ms = timeout_ms ? timeout_ms : 5000;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, start_cb, 0, 0);
    if (out != NULL)
        *out = r;
    return 0;
}

void http_client_cancel(http_client_req *req)
{
    if (req->done)
        return;
    /* Deliver from the loop, as promised: a zero timer with the status. */
    req->status = UV_ECANCELED;
    uv_timer_start(&req->timer, timer_cb, 0, 0);
}
