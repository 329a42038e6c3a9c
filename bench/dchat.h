/* dchat: the bench's dchat side (side.h). It asks discovery for the active
 * nodes, sends each marker as a newMessageFromClient JSON text frame whose
 * text starts with the marker, and reads the marker and the node id back
 * out of the newMessagesForClient frames with scan.h. The side itself is
 * bench_dchat_side, declared in side.h. */
#ifndef DCHAT_BENCH_DCHAT_H
#define DCHAT_BENCH_DCHAT_H

#include "bench/side.h"

#endif
