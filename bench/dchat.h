/* dchat: the bench's dchat side (side.h). It asks discovery for the active
 * nodes, sends each marker as a newMessageFromClient JSON text frame whose
 * text starts with the marker, and reads the marker and the node id back
 * out of the newMessagesForClient frames with scan.h. The side itself is
 * bench_dchat_side, declared in side.h. */
#ifndef DCHAT_BENCH_DCHAT_H
#define DCHAT_BENCH_DCHAT_H

#include "bench/side.h"

/* Reads discovery's answer to GET /api/clients ({"activeNodes": [{"address":
 * ..., "clientport": ...}, ...]}) into out (at most cap servers, path "/"),
 * skipping malformed entries. Returns how many, or -1 when the body has no
 * activeNodes list. Shared with the load mode (load.c). */
int dchat_parse_nodes(const char *body, size_t len, struct bench_server *out, unsigned cap);

#endif
