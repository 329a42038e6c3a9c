/* replay: the MACs of signed requests discovery has accepted recently, so
 * that a request caught on the wire cannot be sent again while its
 * timestamp is still inside the window (common/reqauth.h). Bounded: at
 * most cap MACs, forgotten once their timestamp is outside the window,
 * where the clock check refuses them anyway. When the cache is full of
 * MACs still in the window, the one with the oldest timestamp is dropped
 * and every request that old or older is refused from then on, so no
 * replay ever gets through; a node's next request carries a fresh
 * timestamp and passes. Owns its table. */
#ifndef DCHAT_REPLAY_H
#define DCHAT_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/secret.h"

typedef struct replay replay;

/* A cache of at most cap MACs (cap >= 1) for timestamps window_ms either
 * side of now. */
replay *replay_new(size_t cap, uint64_t window_ms);
void replay_free(replay *r);

/* Whether mac (signed at ts_ms) was seen before, or is too old to tell:
 * returns 1 and records nothing; else records it and returns 0. now_ms is
 * the wall clock (unix ms), the same the timestamps are read against. */
int replay_seen(replay *r, const uint8_t mac[SECRET_MAC_LEN], uint64_t ts_ms,
                uint64_t now_ms);

/* MACs held now (for tests). */
size_t replay_count(const replay *r);

#endif
