/* http_client: a small non-blocking HTTP/1.1 client on libuv and llhttp,
 * used by nodes and the bench to talk to discovery. One request per
 * connection ("Connection: close"), a JSON body, a whole-request timeout.
 * The callback runs exactly once, always from the loop (never from inside
 * http_client_request). */
#ifndef DCHAT_HTTP_CLIENT_H
#define DCHAT_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

typedef struct http_client_req http_client_req;

/* status: the HTTP status (100..599) on an answer, or a negative UV_E*
 * code: UV_ETIMEDOUT, UV_ECONNREFUSED, UV_ECANCELED, UV_EPROTO (garbled
 * answer), UV_E2BIG (answer over 4 MiB) ... body is NUL-terminated and
 * valid only during the callback (NULL with len 0 on error). */
typedef void (*http_client_cb)(int status, const char *body, size_t len,
                               void *ud);

/* Parses "http://HOST:PORT" (optionally with a trailing path prefix that is
 * prepended to every request path, e.g. "http://h:8080/base"). host may be
 * a name, an IPv4 literal or a bracketed IPv6 literal. Returns 0 or -1. */
int http_client_parse_url(const char *url, char *host, size_t hostlen,
                          int *port, char *prefix, size_t prefixlen);

/* Starts method path on url with body (may be NULL; sent with
 * Content-Type: application/json). timeout_ms covers resolve, connect,
 * send and the whole answer. Returns 0 and, if out is not NULL, a handle
 * for http_client_cancel() valid until cb runs; or a negative UV_E* code
 * (bad URL: UV_EINVAL) and cb is never called. */
int http_client_request(uv_loop_t *loop, const char *url, const char *method,
                        const char *path, const char *body,
                        unsigned timeout_ms, http_client_cb cb, void *ud,
                        http_client_req **out);

/* The same with extra header lines: headers is NULL or zero or more
 * "Name: value\r\n" lines, copied into the request (e.g. the X-Dchat-Auth
 * proof of the cluster secret). A CR or LF anywhere but at the end of a
 * line, or a missing final CRLF, is refused with UV_EINVAL. */
int http_client_request_headers(uv_loop_t *loop, const char *url, const char *method,
                                const char *path, const char *headers, const char *body,
                                unsigned timeout_ms, http_client_cb cb, void *ud,
                                http_client_req **out);

/* Cancels a request in flight: cb runs (from the loop) with UV_ECANCELED. */
void http_client_cancel(http_client_req *req);

#endif
