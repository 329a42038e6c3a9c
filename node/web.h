/* web: the browser side of the client port. The files of web/ (the chat
 * page, the status view, their scripts and styles) are compiled into the
 * binary by scripts/embed-web.sh at build time and served from memory, with
 * headers that let a browser run them and nothing else: a strict
 * Content-Security-Policy, no sniffing, no caching without revalidation.
 * The chat page talks to the node over the WebSocket on the same port. */
#ifndef DCHAT_WEB_H
#define DCHAT_WEB_H

#include <stdbool.h>
#include <stddef.h>

#include "common/http_server.h"

/* One file of web/, as the generated table holds it: its base name and
 * its bytes (static, never freed). */
struct web_file {
    const char *name;
    const unsigned char *data;
    size_t len;
};

/* The table written by scripts/embed-web.sh (build/gen/web_files.c). */
extern const struct web_file web_files[];
extern const size_t web_files_count;

/* The file a request path names, or NULL. "/" is index.html (the chat) and
 * "/status" is status.html (the status view); any other file of web/ is
 * "/<name>", except the .html ones, which have only their page's path. */
const struct web_file *web_find(const char *path);

/* The Content-Type for a file name, from its extension (a charset for
 * text); "application/octet-stream" for one it does not know. Static. */
const char *web_content_type(const char *name);

/* Answers req and returns true when its path is one of web_find's; GET and
 * HEAD get the file, other methods 405 with Allow: GET, HEAD. Returns
 * false, with nothing answered, for any other path. */
bool web_handle(http_request *req);

#endif
