/* http_server: see http_server.h. One struct per connection, llhttp
 * parsing in place from libuv's read buffer. Handlers answer synchronously,
 * so pipelined requests are answered in order simply by handling each as
 * llhttp completes it. Each connection has one timer: the request limit
 * from accept to the end of the first request and while a later one is
 * being received, the idle limit between requests.
 * Answers not yet written are bounded per connection: past the bound the
 * server stops reading from that client until its answers drain, and pauses
 * the parser so that requests already read wait, in order, in c->pending.
 * While paused (or whenever answers wait), the timer watches the writes: a
 * period without a byte written closes the connection. A connection that
 * ends after an answer ends with a lingering close (see conn_linger), so
 * that a client still sending gets to read the answer.
 * At most reads_per_turn reads are handled per loop turn over all
 * connections; the input of the others waits, in arrival order, for the
 * next turns (conn_defer, starter_cb), so that a herd of handshakes never
 * holds the loop (and the node's messages) for long. */
#include "common/http_server.h"

#include <llhttp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "common/tls.h"
#include "common/util.h"

#define HTTP_DEFAULT_MAX_HEADER (8 * 1024)
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTP_DEFAULT_REQUEST_MS 10000
#define HTTP_DEFAULT_IDLE_MS 60000
#define HTTP_DEFAULT_MAX_CONNS 10000
#define HTTP_DEFAULT_READS_PER_TURN 32
/* A read over the turn's budget waits (conn_defer) only when it is small,
 * as a handshake is, and while all that waits stays under a bound: past
 * either, it is handled at once, so that deferring never holds more than
 * HTTP_DEFER_BYTES for anyone. */
#define HTTP_DEFER_READ_MAX 4096
#define HTTP_DEFER_BYTES (4u << 20)
#define HTTP_DEFAULT_LINGER_MS 2000
#define HTTP_DEFAULT_LINGER_BYTES (8 * 1024 * 1024)
/* Refused connections (over the cap) that may linger at once; more are
 * closed right after their 503, so that a flood of them cannot hold
 * descriptors beyond the cap for long. */
#define HTTP_MAX_REFUSED_LINGERING 16
#define HTTP_MAX_UNSENT (1024 * 1024)
#define HTTP_MAX_HEADERS 64
#define HTTP_READ_BUF 65536
/* Connections the kernel completes before accept takes them. Linux caps
 * it at net.core.somaxconn (4096 by default since 5.4): ask for that, not
 * 511, so that thousands of clients reconnecting at once (a node restart)
 * wait in the queue for a moment instead of having their handshakes
 * dropped and retried after a second or more. */
#define HTTP_LISTEN_BACKLOG 65535

struct hdr {
    size_t name, name_len, value, value_len; /* offsets into conn->head */
};

struct hconn {
    http_server *s;
    uv_tcp_t *tcp;              /* heap: may be handed over on upgrade */
    uv_timer_t timer;
    llhttp_t parser;
    char *head;                 /* url, then header names and values */
    size_t head_len, head_cap;
    size_t url_len;
    struct hdr hdrs[HTTP_MAX_HEADERS];
    int nhdrs;
    enum { PIECE_URL, PIECE_NAME, PIECE_VALUE, PIECE_DONE } piece;
    char *body;
    size_t body_len, body_cap;
    bool in_request;
    bool begun;                 /* a request has begun on this connection */
    bool closing;
    bool close_after_write;     /* close once every answer is written */
    bool read_paused;
    bool answer_close;          /* answer with "Connection: close" */
    bool responded;             /* the current request has its answer */
    bool upgrade_ready;         /* a complete upgrade request is parsed */
    bool is_head;               /* the current request's method is HEAD */
    bool peer_eof;              /* the client closed its sending side */
    bool refused;               /* over the connection cap: 503 */
    bool lingering;             /* answered, write side shut: discarding */
    size_t linger_bytes;        /* discarded while lingering */
    uv_shutdown_t shutdown;
    char extra[HTTP_ANSWER_HEADERS_MAX + 1]; /* http_answer_add_header lines, NUL */
    size_t extra_len;
    int handles_open;           /* tcp and timer, until both are closed */
    unsigned writes_pending;
    size_t unsent;
    unsigned long long queued;  /* bytes ever handed to uv_write */
    unsigned long long written_mark; /* conn_written() when the timer started */
    char *pending;              /* read but not parsed yet (parser paused) */
    size_t pending_len;
    char peer_addr[64];
    int peer_port;
    struct http_probe *probe;   /* no socket: answers go to the probe */
    tls_conn *tls;              /* when the client spoke TLS */
    bool sniffed;               /* its first bytes were looked at */
    struct hconn *next, *prev;
    struct hconn *wait_next, *wait_prev; /* deferred (see conn_defer) */
    bool deferred;              /* its input waits in pending for a turn */
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct http_server_config cfg;
    struct hconn *conns;
    unsigned nconns;
    unsigned refused_lingering; /* lingering connections with refused set */
    /* Reads handled on this loop turn, and the connections whose input
     * waits for a later turn, oldest first (see conn_defer). */
    unsigned handled;
    size_t deferred_bytes;      /* in the pending input of those waiting */
    uint64_t deferred_total;    /* reads deferred since start */
    struct hconn *wait_head, *wait_tail;
    uv_idle_t starter;          /* active while some wait: handles them */
    uv_check_t turn;            /* resets handled after each poll */
    int turn_handles;           /* of starter and turn, not closed yet */
    int port;
    bool closing;
    bool listener_closed;
    void (*done)(void *);
    void *done_ud;
};

struct http_probe {
    http_server *s;
    struct hconn *c;
    char *out;                  /* every answer, as it would be written */
    size_t out_len, out_cap;
    size_t last;                /* where the latest answer starts in out */
};

struct hwrite {
    uv_write_t req;
    struct hconn *c;
    size_t len;
    char data[];
};

static llhttp_settings_t http_settings;
static char read_buf[HTTP_READ_BUF]; /* one loop thread; parsed in place */

static void conn_close(struct hconn *c);
static void starter_cb(uv_idle_t *h);
static void conn_input(struct hconn *c, const char *data, size_t len);
static void conn_defer(struct hconn *c, const char *data, size_t len);
static void conn_linger(struct hconn *c);
static void conn_resume_reading(struct hconn *c);
static void start_timer(struct hconn *c, unsigned ms);

/* --- answers -------------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct hwrite *w = container_of(req, struct hwrite, req);
    struct hconn *c = w->c;
    c->writes_pending--;
    c->unsent -= w->len;
    free(w);
    if (status != 0 && !c->closing) {
        conn_close(c);
        return;
    }
    if (c->close_after_write && c->writes_pending == 0) {
        conn_linger(c);
        return;
    }
    if (c->read_paused && c->unsent < HTTP_MAX_UNSENT / 2)
        conn_resume_reading(c);
}

/* Bytes of answers that reached the kernel so far: what was queued less
 * what libuv still holds. Grows whenever the client reads. */
static unsigned long long conn_written(const struct hconn *c)
{
    return c->queued - uv_stream_get_write_queue_size((const uv_stream_t *)c->tcp);
}

/* Too many answers wait: stop reading until they drain (see write_cb). The
 * parser is paused by on_message_complete. The client is slow to read, not
 * idle nor slow to send: it gets the request timeout to drain something. */
static void conn_pause_reading(struct hconn *c)
{
    uv_read_stop((uv_stream_t *)c->tcp);
    c->read_paused = true;
    start_timer(c, c->s->cfg.request_timeout_ms);
}

/* Hands w (its data and len set) to uv_write. Returns 0, or -1 when the
 * connection is closing for it. */
static int conn_put(struct hconn *c, struct hwrite *w)
{
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)c->tcp, &buf, 1, write_cb) != 0) {
        free(w);
        conn_close(c);
        return -1;
    }
    c->writes_pending++;
    c->unsent += w->len;
    c->queued += w->len;
    return 0;
}

/* Writes the ciphertext TLS has waiting (records, its handshake, alerts). */
static int conn_tls_output(struct hconn *c)
{
    size_t n = tls_conn_output_len(c->tls);
    if (n == 0)
        return 0;
    struct hwrite *w = xmalloc(sizeof(*w) + n);
    w->c = c;
    w->len = tls_conn_read_output(c->tls, w->data, n);
    return conn_put(c, w);
}

/* Queues the answer w; over TLS its plaintext is encrypted first. Returns
 * 0, or -1 when the connection is closing for it. */
static int conn_queue(struct hconn *c, struct hwrite *w)
{
    if (c->tls == NULL)
        return conn_put(c, w);
    uv_buf_t p = uv_buf_init(w->data, (unsigned)w->len);
    int rc = tls_conn_writev(c->tls, &p, 1);
    free(w);
    if (rc != 0) {
        log_debug("http: TLS to %s failed: %s", c->peer_addr, tls_conn_error(c->tls));
        conn_close(c);
        return -1;
    }
    return conn_tls_output(c);
}

/* Queues one answer: the header section (with the extra lines from
 * http_answer_add_header), then the body unless it answers a HEAD request
 * (head_only): Content-Length states len either way. */
static void conn_write(struct hconn *c, int status, const char *ctype,
                       const char *body, size_t len, bool head_only, bool close)
{
    if (c->closing)
        return;
    static const char fmt[] =
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%.*s%s\r\n";
    const char *type = ctype ? ctype : "application/json";
    const char *conn_hdr = close ? "Connection: close\r\n" : "";
    int hl = snprintf(NULL, 0, fmt, status, status_text(status), type, len,
                      (int)c->extra_len, c->extra, conn_hdr);
    if (hl < 0) {
        conn_close(c);
        return;
    }
    size_t body_len = head_only ? 0 : len;
    struct hwrite *w = xmalloc(sizeof(*w) + (size_t)hl + 1 + body_len);
    snprintf(w->data, (size_t)hl + 1, fmt, status, status_text(status), type, len,
             (int)c->extra_len, c->extra, conn_hdr);
    if (body_len)
        memcpy(w->data + hl, body, body_len);
    w->len = (size_t)hl + body_len;
    w->c = c;
    if (c->probe != NULL) {
        /* No socket: the answer is written the moment it is queued. */
        struct http_probe *pr = c->probe;
        if (pr->out_len + w->len + 1 > pr->out_cap) {
            pr->out_cap = UTIL_MAX(pr->out_len + w->len + 1, pr->out_cap * 2);
            pr->out = xrealloc(pr->out, pr->out_cap);
        }
        pr->last = pr->out_len;
        memcpy(pr->out + pr->out_len, w->data, w->len);
        pr->out_len += w->len;
        pr->out[pr->out_len] = '\0';
        free(w);
        if (close)
            c->close_after_write = true;
        return;
    }
    if (conn_queue(c, w) != 0)
        return;
    if (close)
        c->close_after_write = true;
    else if (c->unsent > HTTP_MAX_UNSENT && !c->read_paused)
        conn_pause_reading(c);
}

/* An error answer outside any handler, and the connection closes after. */
static void conn_fail(struct hconn *c, int status, const char *msg)
{
    json_t *j = json_pack("{s:s}", "error", msg);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    c->extra_len = 0; /* not the handler's answer: none of its headers */
    conn_write(c, status, "application/json", text, strlen(text),
               c->in_request && c->is_head, true);
    free(text);
    if (!c->read_paused) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->read_paused = true;
    }
    c->in_request = false;
}

void http_respond(http_request *req, int status, const char *content_type,
                  const char *body, size_t len)
{
    struct hconn *c = req->priv;
    if (c->responded)
        return; /* a handler bug: one answer per request */
    c->responded = true;
    bool keep = llhttp_should_keep_alive(&c->parser) && !c->s->closing && !c->answer_close;
    conn_write(c, status, content_type, body, len, c->is_head, !keep);
}

/* RFC 9110 5.6.2: token = 1*tchar. */
static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return false;
    return true;
}

int http_answer_add_header(http_request *req, const char *name, const char *value)
{
    static const char *const own[] = { "Content-Type", "Content-Length", "Connection",
                                       "Transfer-Encoding" };
    struct hconn *c = req->priv;
    if (c->responded || !is_token(name))
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(own); i++)
        if (strcasecmp(name, own[i]) == 0)
            return -1;
    for (const unsigned char *v = (const unsigned char *)value; *v; v++)
        if ((*v < 0x20 && *v != '\t') || *v == 0x7f)
            return -1;
    size_t avail = sizeof(c->extra) - c->extra_len;
    int n = snprintf(c->extra + c->extra_len, avail, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= avail)
        return -1; /* the partial line is not counted, so it is dropped */
    c->extra_len += (size_t)n;
    return 0;
}

void http_respond_json(http_request *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (text == NULL) {
        http_respond(req, 500, "application/json",
                     "{\"error\":\"cannot encode the answer\"}", 35);
        return;
    }
    http_respond(req, status, "application/json", text, strlen(text));
    free(text);
}

void http_respond_error(http_request *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_respond_json(req, status, json_pack("{s:s}", "error", msg));
}

bool http_request_is_tls(const http_request *req)
{
    const struct hconn *c = req->priv;
    return c->tls != NULL;
}

tls_conn *http_request_take_tls(http_request *req)
{
    struct hconn *c = req->priv;
    tls_conn *t = c->tls;
    c->tls = NULL;
    return t;
}

const char *http_request_header(const http_request *req, const char *name)
{
    const struct hconn *c = req->priv;
    size_t n = strlen(name);
    for (int i = 0; i < c->nhdrs; i++) {
        const struct hdr *h = &c->hdrs[i];
        if (h->name_len == n && strncasecmp(c->head + h->name, name, n) == 0)
            return c->head + h->value;
    }
    return NULL;
}

/* --- parsing ------------------------------------------------------------- */

static int head_append(struct hconn *c, const char *at, size_t len)
{
    if (c->head_len + len + 1 > c->s->cfg.max_header_bytes) {
        conn_fail(c, 431, "request headers are too large");
        return -1;
    }
    if (c->head_len + len + 1 > c->head_cap) {
        c->head_cap = UTIL_MAX(UTIL_MAX(c->head_cap * 2, c->head_len + len + 1), (size_t)256);
        c->head = xrealloc(c->head, c->head_cap);
    }
    memcpy(c->head + c->head_len, at, len);
    c->head_len += len;
    return 0;
}

/* Ends the current piece (URL, header name or value) with a NUL. */
static int head_end_piece(struct hconn *c)
{
    if (head_append(c, "", 1) != 0)
        return -1;
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct hconn *c = p->data;
    c->in_request = true;
    c->responded = false;
    c->is_head = false;
    c->extra_len = 0;
    c->head_len = c->url_len = 0;
    c->nhdrs = 0;
    c->piece = PIECE_URL;
    c->body_len = 0;
    /* The first request's time has run since accept (accept_cb), so that a
     * connection that sends nothing is not kept for the idle timeout; a
     * later one's runs from its first byte. */
    if (c->begun)
        start_timer(c, c->s->cfg.request_timeout_ms);
    c->begun = true;
    return 0;
}

static int on_method_complete(llhttp_t *p)
{
    struct hconn *c = p->data;
    c->is_head = p->method == HTTP_HEAD;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct hconn *c = p->data;
    if (head_append(c, at, len) != 0)
        return -1;
    c->url_len += len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct hconn *c = p->data;
    if (c->piece != PIECE_NAME) {
        if (c->nhdrs == HTTP_MAX_HEADERS) {
            conn_fail(c, 431, "too many request headers");
            return -1;
        }
        if (head_end_piece(c) != 0)
            return -1;
        c->hdrs[c->nhdrs] = (struct hdr){ c->head_len, 0, 0, 0 };
        c->nhdrs++;
        c->piece = PIECE_NAME;
    }
    if (head_append(c, at, len) != 0)
        return -1;
    c->hdrs[c->nhdrs - 1].name_len += len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct hconn *c = p->data;
    struct hdr *h = &c->hdrs[c->nhdrs - 1];
    if (c->piece != PIECE_VALUE) {
        if (head_end_piece(c) != 0)
            return -1;
        h->value = c->head_len;
        c->piece = PIECE_VALUE;
    }
    if (head_append(c, at, len) != 0)
        return -1;
    h->value_len += len;
    return 0;
}

/* llhttp drops the OWS before a value but keeps the OWS after it (RFC 9110
 * 5.5: not part of the value). The value is the last piece in head, so
 * trimming is shortening head; it may have come in several pieces. */
static int on_header_value_complete(llhttp_t *p)
{
    struct hconn *c = p->data;
    if (c->piece != PIECE_VALUE)
        return on_header_value(p, "", 0); /* an empty value: make it "" */
    struct hdr *h = &c->hdrs[c->nhdrs - 1];
    while (h->value_len > 0 && (c->head[c->head_len - 1] == ' ' ||
                                c->head[c->head_len - 1] == '\t')) {
        h->value_len--;
        c->head_len--;
    }
    return 0;
}

/* RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host header with a
 * valid value (uri-host [":" port], possibly empty); HTTP/1.0 ones may omit
 * it. Returns NULL, or why the request must be answered 400. */
static const char *host_problem(const struct hconn *c, const llhttp_t *p)
{
    const struct hdr *host = NULL;
    for (int i = 0; i < c->nhdrs; i++) {
        const struct hdr *h = &c->hdrs[i];
        if (h->name_len != 4 || strncasecmp(c->head + h->name, "Host", 4) != 0)
            continue;
        if (host != NULL)
            return "the request has more than one Host header; send exactly one "
                   "(RFC 9112 3.2)";
        host = h;
    }
    if (host == NULL)
        return p->http_major == 1 && p->http_minor == 0
                   ? NULL
                   : "the request has no Host header, which HTTP/1.1 requires "
                     "(RFC 9112 3.2); send Host: <host>[:<port>]";
    for (size_t i = 0; i < host->value_len; i++) {
        char ch = c->head[host->value + i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~%!$&'()*+,;=:[]", ch) != NULL) || ch == '\0')
            return "the Host header is not a host and port (RFC 9112 3.2); "
                   "send Host: <host>[:<port>]";
    }
    return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
    struct hconn *c = p->data;
    if (head_end_piece(c) != 0)
        return -1;
    c->piece = PIECE_DONE;
    const char *bad_host = host_problem(c, p);
    if (bad_host != NULL) {
        conn_fail(c, 400, bad_host);
        return -1;
    }
    if ((p->flags & F_CHUNKED) != 0) {
        conn_fail(c, 411, "chunked request bodies are not supported; send Content-Length");
        return -1;
    }
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->s->cfg.max_body_bytes) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body is larger than %zu bytes",
                 c->s->cfg.max_body_bytes);
        conn_fail(c, 413, msg);
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct hconn *c = p->data;
    if (c->body_len + len + 1 > c->body_cap) {
        c->body_cap = UTIL_MAX(c->body_len + len + 1, c->body_cap * 2);
        c->body = xrealloc(c->body, c->body_cap);
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static void fill_request(struct hconn *c, http_request *req)
{
    static char empty[1] = "";
    char *url = c->head; /* NUL-terminated by the first header or the end */
    char *q = strchr(url, '?');
    if (q != NULL)
        *q++ = '\0';
    if (c->body == NULL || c->body_len + 1 > c->body_cap) {
        c->body_cap = c->body_len + 1;
        c->body = xrealloc(c->body, c->body_cap);
    }
    c->body[c->body_len] = '\0';
    req->method = llhttp_method_name((llhttp_method_t)c->parser.method);
    req->path = url;
    req->query = q ? q : empty;
    req->body = c->body;
    req->body_len = c->body_len;
    req->peer_addr = c->peer_addr;
    req->peer_port = c->peer_port;
    req->priv = c;
}

static int on_message_complete(llhttp_t *p)
{
    struct hconn *c = p->data;
    http_server *s = c->s;
    c->in_request = false;
    start_timer(c, s->cfg.idle_timeout_ms);
    if (p->upgrade) {
        /* The handover needs the bytes after the request, which llhttp
         * reports when it pauses on the upgrade right after this. */
        c->upgrade_ready = true;
        return 0;
    }
    http_request req;
    fill_request(c, &req);
    s->cfg.handler(&req, s->cfg.ud);
    if (!c->responded) {
        c->extra_len = 0; /* no half of an answer from the handler */
        http_respond_error(&req, 500, "the server did not answer this request");
    }
    if (c->closing || c->close_after_write)
        return HPE_USER;
    /* Reading was paused for backpressure: stop parsing too; conn_feed
     * keeps the rest of the input for when the answers have drained. */
    return c->read_paused ? HPE_PAUSED : 0;
}

static void handle_upgrade(struct hconn *c, const char *rest, size_t rest_len)
{
    http_server *s = c->s;
    http_request req;
    fill_request(c, &req);
    c->upgrade_ready = false;
    /* Unless the socket is taken, the connection closes after the answer:
     * say so in it. */
    c->answer_close = true;
    if (s->cfg.on_upgrade == NULL) {
        http_respond_error(&req, 400, "this server does not upgrade connections");
        c->close_after_write = true;
        return;
    }
    /* The callee may take the socket: stop reading and detach first, so
     * nothing of ours touches it afterwards. */
    uv_read_stop((uv_stream_t *)c->tcp);
    uv_tcp_t *tcp = c->tcp;
    tcp->data = NULL;
    if (c->writes_pending == 0 && s->cfg.on_upgrade(&req, tcp, rest, rest_len, s->cfg.ud)) {
        if (c->probe != NULL) {
            fprintf(stderr, "fatal: an upgrade callback took the socket of an http_probe, "
                            "which has none; it must answer and return 0\n");
            abort();
        }
        c->tcp = NULL;
        c->handles_open--; /* the tcp handle is not ours to close any more */
        conn_close(c);
        return;
    }
    tcp->data = c;
    if (!c->responded)
        c->extra_len = 0; /* the answer is ours, not the callee's */
    if (c->writes_pending != 0 && !c->responded)
        http_respond_error(&req, 400, "upgrade after pipelined requests is not supported");
    if (!c->responded)
        http_respond_error(&req, 400, "upgrade refused");
    c->close_after_write = true;
    c->read_paused = true;
}

/* Hands over what c kept for later (the caller frees it). */
static char *take_pending(struct hconn *c, size_t *len)
{
    char *data = c->pending;
    *len = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    return data;
}

/* Keeps the len bytes at data (they may point into c->pending) for later. */
static void conn_keep_pending(struct hconn *c, const char *data, size_t len)
{
    char *copy = NULL;
    if (len > 0) {
        copy = xmalloc(len);
        memcpy(copy, data, len);
    }
    free(c->pending);
    c->pending = copy;
    c->pending_len = len;
}

/* Parses len bytes of input and acts on how the parser stopped. */
static void conn_feed(struct hconn *c, const char *data, size_t len)
{
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK || c->closing)
        return;
    if (err == HPE_PAUSED) {
        /* Backpressure (on_message_complete): keep what follows. */
        const char *pos = llhttp_get_error_pos(&c->parser);
        conn_keep_pending(c, pos, len - (size_t)(pos - data));
        llhttp_resume(&c->parser);
        return;
    }
    if (err == HPE_PAUSED_UPGRADE && c->upgrade_ready) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t used = (size_t)(pos - data);
        handle_upgrade(c, pos, len - used);
        return;
    }
    if (err == HPE_USER || c->close_after_write)
        return; /* answered already, closing after the write */
    char msg[256];
    snprintf(msg, sizeof(msg), "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
    conn_fail(c, 400, msg);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct hconn *c = stream->data;
    if (nread == 0 || c->closing)
        return;
    if (c->lingering) {
        /* Nothing is parsed any more; the client's EOF ends it. */
        c->linger_bytes += nread > 0 ? (size_t)nread : 0;
        if (nread < 0 || c->linger_bytes > c->s->cfg.linger_max_bytes)
            conn_close(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("http: read from %s failed: %s", c->peer_addr, uv_strerror((int)nread));
        if (c->writes_pending > 0 && nread == UV_EOF) {
            /* Half-closed: answer what was asked, then close. */
            uv_read_stop(stream);
            c->peer_eof = true;
            c->read_paused = true;
            c->close_after_write = true;
        } else {
            conn_close(c);
        }
        return;
    }
    http_server *s = c->s;
    /* Past the budget, or behind others still waiting (first come, first
     * served), a small read waits its turn. */
    if ((s->handled >= s->cfg.reads_per_turn || s->wait_head != NULL) &&
        (size_t)nread <= HTTP_DEFER_READ_MAX && c->pending == NULL &&
        s->deferred_bytes + (size_t)nread <= HTTP_DEFER_BYTES) {
        conn_defer(c, buf->base, (size_t)nread);
        return;
    }
    s->handled++;
    conn_input(c, buf->base, (size_t)nread);
}

/* Input read from c: through TLS when it speaks TLS, then to the parser. */
static void conn_input(struct hconn *c, const char *data, size_t len)
{
    uv_stream_t *stream = (uv_stream_t *)c->tcp;
    if (c->s->cfg.tls != NULL && !c->sniffed) {
        c->sniffed = true;
        if (tls_is_handshake(data, len)) {
            c->tls = tls_conn_new(c->s->cfg.tls, NULL);
        } else if (c->s->cfg.tls_only) {
            conn_fail(c, 400, "this port speaks TLS only: use https:// or wss://");
            return;
        }
    }
    if (c->tls != NULL) {
        int rc = tls_conn_feed(c->tls, data, len, &data, &len);
        if (conn_tls_output(c) != 0)
            return;
        if (rc == TLS_FAILED) {
            log_debug("http: TLS with %s failed: %s", c->peer_addr, tls_conn_error(c->tls));
            /* Its alert, if any, is queued: let it out, then close. */
            uv_read_stop(stream);
            c->read_paused = true;
            c->close_after_write = true;
            if (c->writes_pending == 0)
                conn_close(c);
            return;
        }
        if (rc == TLS_CLOSED) {
            conn_close(c);
            return;
        }
        if (len == 0)
            return;
    }
    conn_feed(c, data, len);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

/* Starts reading, or resumes after backpressure: first the requests that
 * were read before the pause, in order; they may pause it again. */
static void conn_resume_reading(struct hconn *c)
{
    if (c->closing || c->close_after_write || c->tcp == NULL || c->deferred)
        return;
    if (c->read_paused) {
        c->read_paused = false;
        start_timer(c, c->s->cfg.idle_timeout_ms); /* between requests */
        if (c->pending != NULL) {
            size_t len;
            char *data = take_pending(c, &len);
            conn_feed(c, data, len);
            free(data);
            if (c->closing || c->close_after_write || c->read_paused || c->tcp == NULL)
                return;
        }
    }
    if (uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb) != 0)
        conn_close(c);
}

/* --- timers and lifetime --------------------------------------------------- */

static void timer_cb(uv_timer_t *t)
{
    struct hconn *c = container_of(t, struct hconn, timer);
    if (c->closing)
        return;
    if (c->lingering) {
        conn_close(c); /* lingered long enough */
    } else if (c->in_request) {
        conn_fail(c, 408, "request not received in time");
    } else if (c->writes_pending == 0) {
        /* Idle keep-alive, or not a byte of a request since accept (the
         * request timeout): nothing to answer either way. */
        if (!c->begun)
            log_debug("http: closing %s: no request within %u ms of connecting",
                      c->peer_addr, c->s->cfg.request_timeout_ms);
        conn_close(c);
    } else if (conn_written(c) != c->written_mark) {
        /* Answers are still being written and the client reads them: not
         * idle. Look again one period later (reading paused: the request
         * timeout; else the idle timeout). */
        start_timer(c, c->read_paused ? c->s->cfg.request_timeout_ms
                                      : c->s->cfg.idle_timeout_ms);
    } else {
        /* Not a byte of the answers taken for a whole period: the client
         * does not read; do not keep its answers forever. */
        log_debug("http: closing %s: it read none of its answers in time", c->peer_addr);
        conn_close(c);
    }
}

static void start_timer(struct hconn *c, unsigned ms)
{
    if (c->tcp != NULL)
        c->written_mark = conn_written(c);
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

static void maybe_server_done(http_server *s)
{
    if (!s->closing || s->nconns > 0 || !s->listener_closed || s->turn_handles > 0)
        return;
    void (*done)(void *) = s->done;
    void *ud = s->done_ud;
    free(s);
    if (done)
        done(ud);
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct hconn *c = h->data;
    if (h != (uv_handle_t *)&c->timer)
        free(h); /* the heap tcp handle */
    if (--c->handles_open > 0)
        return;
    http_server *s = c->s;
    if (c->next)
        c->next->prev = c->prev;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    s->nconns--;
    free(c->head);
    free(c->body);
    free(c->pending);
    tls_conn_free(c->tls);
    free(c);
    maybe_server_done(s);
}

static void wait_unlink(struct hconn *c)
{
    http_server *s = c->s;
    if (!c->deferred)
        return;
    c->deferred = false;
    s->deferred_bytes -= c->pending_len;
    if (c->wait_prev)
        c->wait_prev->wait_next = c->wait_next;
    else
        s->wait_head = c->wait_next;
    if (c->wait_next)
        c->wait_next->wait_prev = c->wait_prev;
    else
        s->wait_tail = c->wait_prev;
    c->wait_next = c->wait_prev = NULL;
}

static void conn_close(struct hconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    wait_unlink(c);
    if (c->lingering && c->refused)
        c->s->refused_lingering--;
    uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
    if (c->tcp != NULL)
        uv_close((uv_handle_t *)c->tcp, handle_closed_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct hconn *c = req->data;
    /* UV_ECANCELED: the connection closed first; its memory is still ours
     * until the close callbacks, which run after this. */
    if (status != 0 && !c->closing)
        conn_close(c);
}

/* Every answer is written and the connection is to end. Closing now, with
 * bytes of the client's still unread, would make the kernel answer with a
 * reset, and a reset makes the client's kernel drop our answer before the
 * client has read it: a client still sending a large body would never see
 * its 413. So, as nginx's lingering close does: send our FIN (uv_shutdown,
 * queued after the answer), read and discard what the client still sends,
 * and close at its EOF, or after linger_timeout_ms, or past
 * linger_max_bytes. A lingering connection still counts against the cap. */
static void conn_linger(struct hconn *c)
{
    http_server *s = c->s;
    if (c->closing || c->lingering)
        return;
    if (c->peer_eof || s->closing ||
        (c->refused && s->refused_lingering >= HTTP_MAX_REFUSED_LINGERING)) {
        conn_close(c);
        return;
    }
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)c->tcp, shutdown_cb) != 0) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    if (c->refused)
        s->refused_lingering++;
    uv_timer_start(&c->timer, timer_cb, s->cfg.linger_timeout_ms, 0);
    c->read_paused = false;
    if (uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb) != 0)
        conn_close(c);
}

/* Over this turn's budget: c's input (data, just read) waits in pending,
 * and reading stops, until starter_cb hands it on in a later turn. */
static void conn_defer(struct hconn *c, const char *data, size_t len)
{
    http_server *s = c->s;
    c->pending = xmalloc(len);
    memcpy(c->pending, data, len);
    c->pending_len = len;
    s->deferred_bytes += len;
    uv_read_stop((uv_stream_t *)c->tcp);
    c->deferred = true;
    s->deferred_total++;
    c->wait_prev = s->wait_tail;
    if (s->wait_tail)
        s->wait_tail->wait_next = c;
    else
        s->wait_head = c;
    s->wait_tail = c;
    if (!uv_is_active((uv_handle_t *)&s->starter))
        uv_idle_start(&s->starter, starter_cb);
}

/* At the start of each loop turn while input waits (the idle handle also
 * keeps the poll from blocking meanwhile): the oldest deferred inputs, up
 * to the turn's budget, are handled as if just read, and their
 * connections read again. The timers are not touched: a deferred request
 * is still within the limit that ran from its start. */
static void starter_cb(uv_idle_t *h)
{
    http_server *s = h->data;
    while (s->wait_head != NULL && s->handled < s->cfg.reads_per_turn) {
        struct hconn *c = s->wait_head;
        wait_unlink(c);
        s->handled++;
        size_t len;
        char *data = take_pending(c, &len);
        conn_input(c, data, len);
        free(data);
        if (!c->read_paused) /* paused: its answers drain first (write_cb) */
            conn_resume_reading(c);
    }
    if (s->wait_head == NULL)
        uv_idle_stop(h);
}

/* After the poll: the next turn's budget starts with its idle phase,
 * where the oldest waiting reads go first. */
static void turn_cb(uv_check_t *h)
{
    http_server *s = h->data;
    s->handled = 0;
}

static void accept_cb(uv_stream_t *server, int status)
{
    http_server *s = server->data;
    if (status != 0) {
        log_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    struct hconn *c = xcalloc(1, sizeof(*c));
    c->s = s;
    c->tcp = xmalloc(sizeof(*c->tcp));
    uv_tcp_init(s->loop, c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp->data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (netaddr_peer(c->tcp, c->peer_addr, sizeof(c->peer_addr), &c->peer_port) != 0)
        strcpy(c->peer_addr, "unknown");
    llhttp_init(&c->parser, HTTP_REQUEST, &http_settings);
    c->parser.data = c;
    size_t upgraded = s->cfg.upgraded_count ? s->cfg.upgraded_count(s->cfg.ud) : 0;
    if (s->closing || s->nconns + upgraded > s->cfg.max_connections) {
        log_warn("http: refusing %s: %u connections open and %zu upgraded (limit %u in all)",
                 c->peer_addr, s->nconns - 1, upgraded, s->cfg.max_connections);
        c->refused = true;
        conn_fail(c, 503, "too many connections; retry later");
        start_timer(c, 1000);
        return;
    }
    /* The first request must be in within the request timeout of now. */
    start_timer(c, s->cfg.request_timeout_ms);
    conn_resume_reading(c);
}

static void settings_init(void)
{
    if (http_settings.on_message_begin == NULL) {
        llhttp_settings_init(&http_settings);
        http_settings.on_message_begin = on_message_begin;
        http_settings.on_method_complete = on_method_complete;
        http_settings.on_url = on_url;
        http_settings.on_header_field = on_header_field;
        http_settings.on_header_value = on_header_value;
        http_settings.on_header_value_complete = on_header_value_complete;
        http_settings.on_headers_complete = on_headers_complete;
        http_settings.on_body = on_body;
        http_settings.on_message_complete = on_message_complete;
    }
}

/* A server with cfg's zeros replaced by the defaults; not listening. */
static http_server *server_new(uv_loop_t *loop, const struct http_server_config *cfg)
{
    settings_init();
    http_server *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = *cfg;
    if (!s->cfg.max_header_bytes) s->cfg.max_header_bytes = HTTP_DEFAULT_MAX_HEADER;
    if (!s->cfg.max_body_bytes) s->cfg.max_body_bytes = HTTP_DEFAULT_MAX_BODY;
    if (!s->cfg.request_timeout_ms) s->cfg.request_timeout_ms = HTTP_DEFAULT_REQUEST_MS;
    if (!s->cfg.idle_timeout_ms) s->cfg.idle_timeout_ms = HTTP_DEFAULT_IDLE_MS;
    if (!s->cfg.max_connections) s->cfg.max_connections = HTTP_DEFAULT_MAX_CONNS;
    if (!s->cfg.reads_per_turn) s->cfg.reads_per_turn = HTTP_DEFAULT_READS_PER_TURN;
    if (!s->cfg.linger_timeout_ms) s->cfg.linger_timeout_ms = HTTP_DEFAULT_LINGER_MS;
    if (!s->cfg.linger_max_bytes) s->cfg.linger_max_bytes = HTTP_DEFAULT_LINGER_BYTES;
    return s;
}

int http_server_start(uv_loop_t *loop, const char *host, int port,
                      const struct http_server_config *cfg, http_server **out)
{
    struct sockaddr_storage sa;
    int rc = netaddr_parse(host, port, &sa);
    if (rc != 0)
        return rc;

    http_server *s = server_new(loop, cfg);

    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    uv_idle_init(loop, &s->starter);
    uv_check_init(loop, &s->turn);
    s->starter.data = s->turn.data = s;
    s->turn_handles = 2;
    uv_check_start(&s->turn, turn_cb);
    uv_unref((uv_handle_t *)&s->turn);
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, HTTP_LISTEN_BACKLOG, accept_cb);
    if (rc == 0)
        rc = netaddr_sockname(&s->listener, NULL, 0, &s->port);
    if (rc != 0) {
        /* Unwind: the handle must be closed before s can be freed. */
        s->closing = true;
        http_server_close(s, NULL, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        return rc;
    }
    *out = s;
    return 0;
}

int http_server_port(const http_server *s) { return s->port; }

unsigned http_server_connections(const http_server *s) { return s->nconns; }

uint64_t http_server_deferred(const http_server *s) { return s->deferred_total; }

static void listener_closed_cb(uv_handle_t *h)
{
    http_server *s = h->data;
    s->listener_closed = true;
    maybe_server_done(s);
}

static void turn_handle_closed_cb(uv_handle_t *h)
{
    http_server *s = h->data;
    s->turn_handles--;
    maybe_server_done(s);
}

void http_server_close(http_server *s, void (*done)(void *ud), void *ud)
{
    s->closing = true;
    s->done = done;
    s->done_ud = ud;
    if (s->turn_handles > 0 && !uv_is_closing((uv_handle_t *)&s->turn)) {
        uv_close((uv_handle_t *)&s->starter, turn_handle_closed_cb);
        uv_close((uv_handle_t *)&s->turn, turn_handle_closed_cb);
    }
    uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
    for (struct hconn *c = s->conns; c != NULL; c = c->next)
        conn_close(c);
}

/* --- a connection without a socket ------------------------------------------ */

http_probe *http_probe_new(uv_loop_t *loop, const struct http_server_config *cfg)
{
    http_probe *pr = xcalloc(1, sizeof(*pr));
    http_server *s = server_new(loop, cfg);
    struct hconn *c = xcalloc(1, sizeof(*c));
    c->s = s;
    c->probe = pr;
    /* A handle that was never connected: reading stops and starts on it
     * are no-ops, and nothing is ever written to it. */
    c->tcp = xmalloc(sizeof(*c->tcp));
    uv_tcp_init(loop, c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp->data = c;
    c->timer.data = c;
    c->handles_open = 2;
    s->conns = c;
    s->nconns = 1;
    strcpy(c->peer_addr, "127.0.0.1");
    llhttp_init(&c->parser, HTTP_REQUEST, &http_settings);
    c->parser.data = c;
    start_timer(c, s->cfg.request_timeout_ms); /* as accept_cb does */
    pr->s = s;
    pr->c = c;
    return pr;
}

int http_probe_feed(http_probe *pr, const char *data, size_t len)
{
    struct hconn *c = pr->c;
    if (c->closing || c->close_after_write)
        return 1;
    conn_feed(c, data, len);
    /* Requests held back for backpressure: a probe's answers are written
     * at once, so they are parsed now. */
    while (c->pending != NULL && !c->closing && !c->close_after_write) {
        char *rest = c->pending;
        size_t rest_len = c->pending_len;
        c->pending = NULL;
        c->pending_len = 0;
        conn_feed(c, rest, rest_len);
        free(rest);
    }
    return c->closing || c->close_after_write ? 1 : 0;
}

const char *http_probe_output(const http_probe *pr, size_t *len, size_t *last)
{
    *len = pr->out_len;
    if (last != NULL)
        *last = pr->last;
    return pr->out ? pr->out : "";
}

void http_probe_free(http_probe *pr)
{
    if (pr == NULL)
        return;
    http_server *s = pr->s;
    uv_loop_t *loop = s->loop;
    conn_close(pr->c);
    /* handle_closed_cb frees the connection; s is not closing, so it stays
     * for us to free. */
    while (s->nconns > 0)
        uv_run(loop, UV_RUN_NOWAIT);
    free(s);
    free(pr->out);
    free(pr);
}
