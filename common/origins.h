/* origins: a list of web origins allowed to open a WebSocket, and the check
 * of a handshake's Origin header against it (RFC 6454). Entries and headers
 * are compared in their ASCII serialization: scheme and host in lower case,
 * the scheme's default port (80 for http and ws, 443 for https and wss)
 * left out, so "HTTPS://Chat.Example:443" and "https://chat.example" are one
 * origin. The node's --allowed-origins is parsed here at start. */
#ifndef DCHAT_ORIGINS_H
#define DCHAT_ORIGINS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct origins origins;

/* Parses a comma-separated list of origins, each scheme://host[:port]
 * (host: a name, an IPv4 address or a bracketed IPv6 address; port
 * 1..65535; no user info, path, query or fragment), blanks around entries
 * ignored. Returns the list, owned by the caller (origins_free), or NULL
 * with what is wrong and how to write it in err (errlen bytes): an empty
 * list or entry, a malformed entry, or "null" (the opaque origin of
 * sandboxed pages and files, which any page can take on). */
origins *origins_parse(const char *list, char *err, size_t errlen);

/* Whether the value of an Origin header names an origin in o. A value that
 * is not one serialized origin ("null", a space-separated list, garbage) is
 * in no list. */
bool origins_allow(const origins *o, const char *header);

/* Whether the value of an Origin header is the origin of the request it
 * came with: scheme "https" when tls, else "http", and the host and port of
 * the Host header (host, NULL when absent). This is how a page that the
 * node served itself is told apart: a browser sends the page's origin, and
 * the Host of the address it opens, which for a page of this node is the
 * same. Default ports count as absent, as in origins_allow; an Origin
 * header that is not one origin, or a missing Host, is never the same. */
bool origins_same(const char *header, bool tls, const char *host);

/* The list as serialized, comma-separated (for logs); owned by o. */
const char *origins_describe(const origins *o);

void origins_free(origins *o);

#endif
