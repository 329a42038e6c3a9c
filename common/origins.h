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

/* The list as serialized, comma-separated (for logs); owned by o. */
const char *origins_describe(const origins *o);

void origins_free(origins *o);

#endif
