/* Fuzz target for common/http_server.c's request path: llhttp, the header
 * and body limits, pipelining, answers and upgrade requests, driven through
 * an http_probe (a connection without a socket). Input: one byte of
 * settings (bits 0-1: the header limit, bits 2-3: the body limit), the
 * chunk sizes (chunks.h), then what a client sends. The same bytes are fed
 * whole and in the chunks: the answers must be byte for byte the same, and
 * every answer an HTTP/1.1 status line. One legitimate difference: a
 * request both too large and malformed is refused for whichever llhttp
 * reports first, and llhttp hands a header over (where its size is
 * counted) at the end of the header or of the chunk, so when the last
 * answer ends the connection with 400 or 431, the other run's may be
 * either. The handler checks what a request
 * looks like (method, path, query, body NUL-terminated at body_len) and
 * echoes it; upgrade requests go through ws_check_upgrade and are refused,
 * since a probe has no socket to hand over. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/http_server.h"
#include "common/ws.h"
#include "tests/fuzz/chunks.h"
#include "tests/fuzz/record.h"

static uv_loop_t *loop;

static void handler(http_request *req, void *ud)
{
    FUZZ_CHECK(req->method != NULL && req->path != NULL && req->query != NULL);
    FUZZ_CHECK(req->body != NULL && req->body[req->body_len] == '\0');
    const char *host = http_request_header(req, "Host");
    const char *ctype = http_request_header(req, "content-type");
    /* A header value of the client's, passed on: the server must refuse
     * what would break the answer (control characters, long lines). */
    if (ctype != NULL)
        http_answer_add_header(req, "X-Echo", ctype);
    if (req->body_len > 0 && req->body[0] == 'E') {
        http_respond_error(req, 422, "body starts with E: %s", req->path);
        return;
    }
    char out[256];
    int n = snprintf(out, sizeof(out), "%s %s ?%s host=%s body=%zu", req->method, req->path,
                     req->query, host ? host : "-", req->body_len);
    http_respond(req, 200, "text/plain", out, (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1);
}

static int on_upgrade(http_request *req, uv_tcp_t *tcp, const char *rest, size_t rest_len,
                      void *ud)
{
    const char *key;
    int status;
    char err[256];
    if (ws_check_upgrade(req, &key, &status, err, sizeof(err)) != 0)
        http_respond_error(req, status, "%s", err);
    else /* rest_len depends on the chunking: what came in the same read */
        http_respond_error(req, 503, "no socket to upgrade for key %s", key);
    return 0;
}

/* The status of the answer at o. */
static int status_of(const char *o)
{
    return (o[9] - '0') * 100 + (o[10] - '0') * 10 + (o[11] - '0');
}

struct served {
    record out;        /* every answer but the last, then the connection's end */
    record last;       /* the last answer */
    int last_status;
    int rc;
};

/* Feeds the stream in chunks (whole when ch is NULL). */
static void serve(const struct http_server_config *cfg, const uint8_t *data, size_t len,
                  chunks *ch, struct served *sv)
{
    http_probe *p = http_probe_new(loop, cfg);
    size_t off = 0;
    int rc = 0;
    do {
        size_t n = ch ? chunks_next(ch, len - off) : len;
        char *chunk = chunks_copy(data + off, n);
        rc = http_probe_feed(p, chunk, n);
        free(chunk);
        off += n;
    } while (rc == 0 && off < len);
    size_t olen, last;
    const char *o = http_probe_output(p, &olen, &last);
    FUZZ_CHECK(o[olen] == '\0');
    /* A connection that ends always ends with an answer that says why. */
    if (rc == 1)
        FUZZ_CHECK(olen > 0);
    if (olen > 0) {
        FUZZ_CHECK(olen >= 12 && memcmp(o, "HTTP/1.1 ", 9) == 0);
        FUZZ_CHECK(olen - last >= 12 && memcmp(o + last, "HTTP/1.1 ", 9) == 0);
        sv->last_status = status_of(o + last);
    }
    record_add(&sv->out, o, last);
    record_add(&sv->last, o + last, olen - last);
    sv->rc = rc;
    http_probe_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const size_t header_limits[4] = { 0, 64, 300, 2048 };
    static const size_t body_limits[4] = { 0, 1, 100, 5000 };
    if (loop == NULL) {
        loop = malloc(sizeof(*loop));
        FUZZ_CHECK(loop != NULL && uv_loop_init(loop) == 0);
    }
    uint8_t settings;
    chunks ch;
    if (chunks_start(&ch, &data, &len, &settings) != 0)
        return 0;
    struct http_server_config cfg = {
        .handler = handler,
        .on_upgrade = on_upgrade,
        .max_header_bytes = header_limits[settings & 3],
        .max_body_bytes = body_limits[(settings >> 2) & 3],
    };
    struct served whole = { 0 }, split = { 0 };
    serve(&cfg, data, len, NULL, &whole);
    serve(&cfg, data, len, &ch, &split);
    bool too_large_or_malformed = whole.rc == 1 && split.rc == 1 &&
                                  (whole.last_status == 400 || whole.last_status == 431) &&
                                  (split.last_status == 400 || split.last_status == 431);
    bool same = record_same(&whole.out, &split.out) && whole.rc == split.rc &&
                (record_same(&whole.last, &split.last) || too_large_or_malformed);
    if (!same)
        fprintf(stderr, "fuzz: answers differ by chunking:\n--- whole\n%.*s%.*s\n--- split\n%.*s%.*s\n",
                (int)whole.out.len, (const char *)whole.out.p, (int)whole.last.len,
                (const char *)whole.last.p, (int)split.out.len, (const char *)split.out.p,
                (int)split.last.len, (const char *)split.last.p);
    FUZZ_CHECK(same);
    record_free(&whole.out);
    record_free(&whole.last);
    record_free(&split.out);
    record_free(&split.last);
    return 0;
}
