/* web: see web.h. The files are few and small: a linear search by name is
 * all the routing they need. */
#include "node/web.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

/* What the pages may do: load their own scripts, styles and images, talk
 * to this node (fetch for the status view, the WebSocket for the chat),
 * and nothing else; no inline script or style, no frames around them, no
 * forms posted anywhere. CSP 3 lets 'self' cover ws:// and wss:// on the
 * page's host and port; older browsers need them named, so the Host the
 * browser used is added when it is a plain name or address (see
 * csp_host). */
#define WEB_CSP_HEAD "default-src 'none'; script-src 'self'; style-src 'self'; " \
                     "img-src 'self'; connect-src 'self'"
#define WEB_CSP_TAIL "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
/* The longest Host named in the policy: the header lines a handler may add
 * are bounded (HTTP_ANSWER_HEADERS_MAX), and a longer one is served 'self'. */
#define WEB_CSP_HOST_MAX 100

const struct web_file *web_find(const char *path)
{
    const char *name;
    if (strcmp(path, "/") == 0)
        name = "index.html";
    else if (strcmp(path, "/status") == 0)
        name = "status.html";
    else if (path[0] == '/' && strchr(path + 1, '/') == NULL) {
        name = path + 1;
        size_t len = strlen(name);
        /* A page has one address; its file name is not another. */
        if (len >= 5 && strcmp(name + len - 5, ".html") == 0)
            return NULL;
    } else
        return NULL;
    for (size_t i = 0; i < web_files_count; i++)
        if (strcmp(web_files[i].name, name) == 0)
            return &web_files[i];
    return NULL;
}

const char *web_content_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".ico", "image/x-icon" },
        { ".txt", "text/plain; charset=utf-8" },
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Whether host (the Host header) may be written into the policy as is: a
 * name or IPv4 address and an optional port. The server lets through
 * characters a policy gives meaning to (';', ',', quotes), and IPv6
 * literals have no place in a CSP host-source; both are left to 'self'. */
static bool csp_host(const char *host)
{
    size_t len = host != NULL ? strlen(host) : 0;
    if (len == 0 || len > WEB_CSP_HOST_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

bool web_handle(http_request *req)
{
    const struct web_file *f = web_find(req->path);
    if (f == NULL)
        return false;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        http_answer_add_header(req, "Allow", "GET, HEAD");
        http_respond_error(req, 405, "use GET on %s", req->path);
        return true;
    }
    const char *host = http_request_header(req, "Host");
    char csp[sizeof(WEB_CSP_HEAD WEB_CSP_TAIL) + 2 * (WEB_CSP_HOST_MAX + 8)];
    if (csp_host(host))
        snprintf(csp, sizeof(csp), "%s ws://%s wss://%s%s", WEB_CSP_HEAD, host, host,
                 WEB_CSP_TAIL);
    else
        snprintf(csp, sizeof(csp), "%s%s", WEB_CSP_HEAD, WEB_CSP_TAIL);
    /* Revalidate every time: a node upgraded in place serves new files
     * under the same names. */
    if (http_answer_add_header(req, "Cache-Control", "no-cache") != 0 ||
        http_answer_add_header(req, "X-Content-Type-Options", "nosniff") != 0 ||
        http_answer_add_header(req, "Content-Security-Policy", csp) != 0) {
        /* Only a bug can get here (the lines are bounded above); never
         * serve the page without its policy. */
        log_error("web: the headers of %s do not fit HTTP_ANSWER_HEADERS_MAX; shorten "
                  "the policy in node/web.c", req->path);
        http_respond_error(req, 500, "cannot set the headers of %s; see the node's log",
                           req->path);
        return true;
    }
    http_respond(req, 200, web_content_type(f->name), (const char *)f->data, f->len);
    return true;
}
