/* peer: one link to another node, dialled or accepted: its TCP connection
 * (and TLS session with --peer-tls), its write queue, its frame decoder,
 * and the HELLO/AUTH handshake that makes it "up" once both sides proved
 * the cluster secret (peer_auth.h); after its AUTH each side sends only
 * sealed records. The link owns none of the mesh's state: it tells its
 * owner (the mesh) what happens through the peer_events it was given. */
#ifndef DCHAT_PEER_H
#define DCHAT_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/msgbuf.h"
#include "node/flow.h"
#include "node/node.h"
#include "node/peer_proto.h"

typedef struct peer peer;

/* PEER_WAIT_HELLO: waiting for the other side's hello; PEER_WAIT_AUTH:
 * hellos exchanged, waiting for its proof. */
enum peer_state { PEER_CONNECTING, PEER_WAIT_HELLO, PEER_WAIT_AUTH, PEER_UP, PEER_CLOSING };

/* What a link tells its owner; ud is the one given to peer_new. Each call
 * happens on the loop thread, from inside the link's own callbacks. */
struct peer_events {
    /* An accepted link's hello announced id (not our own, and we have an
     * id): 0 goes on with the handshake; the owner that refuses the link
     * closes it (peer_close) and returns -1. */
    int (*hello)(peer *p, uint32_t id, void *ud);
    /* An accepted link's peer proved the secret: 0 takes the link, or -1
     * after closing it, as for hello. */
    int (*adopt)(peer *p, void *ud);
    /* Both proofs verified: the link is up. */
    void (*up)(peer *p, void *ud);
    /* A MSG or MARKS frame on a link up (f valid for the call only). */
    void (*frame)(peer *p, const struct peer_frame *f, void *ud);
    /* A read has been decoded, every frame of it handed to frame (also
     * when the link began closing during it): what its frames left for
     * the read's end can be done now, once. */
    void (*frames_done)(peer *p, void *ud);
    /* The link did not prove the secret or broke the handshake (why says
     * how, with its address); it is closed right after. */
    void (*refused)(peer *p, const char *why, void *ud);
    /* A write on a link up completed: what is still queued (peer_queued)
     * has shrunk, so a producer that waits for room may go on. */
    void (*written)(peer *p, void *ud);
    /* The link starts closing (once; peer_state still says what it was). */
    void (*down)(peer *p, void *ud);
    /* Its handle is closed: p is freed when this returns. */
    void (*freed)(peer *p, void *ud);
};

/* A link, not connected yet: start it with peer_connect or peer_accept.
 * events (kept by pointer) and ud stay the owner's. */
peer *peer_new(node *n, bool outbound, const struct peer_events *events, void *ud);

/* Dials sa for node id (addr, "HOST:PORT", for the logs); the hello goes
 * out once TCP connects. On failure the link closes (events down, freed). */
void peer_connect(peer *p, const struct sockaddr *sa, uint32_t id, const char *addr);

/* Accepts the pending connection of server. Returns 0, or -1 when the
 * accept failed (the link is closing). Then peer_start reads its hello. */
int peer_accept(peer *p, uv_stream_t *server);
void peer_start(peer *p);

/* Queues b on the link (a reference is taken); a link over its queue bound
 * closes. */
void peer_send(peer *p, msgbuf *b);

/* Closes the link (why, when given, is logged); frames still queued are
 * dropped. Freed in its handle's close callback. Idempotent. */
void peer_close(peer *p, const char *why);

/* Whether the link old (a node's current one, or NULL) stays and a new
 * inbound link l, announcing id, must go: crossed dials (old not up yet)
 * keep the link dialled by the lower id; a link up is kept unless nothing
 * was read on it for idle_ms (its peer lost its side). *why gets the reason
 * for the log. */
bool peer_keeps_old(const peer *old, const peer *l, uint32_t self, uint32_t id,
                    uint64_t idle_ms, const char **why);

enum peer_state peer_state(const peer *p);
bool peer_is_up(const peer *p);
/* The node id: the one dialled, or the one its hello announced; 0 before. */
uint32_t peer_id(const peer *p);
bool peer_outbound(const peer *p);
/* "HOST:PORT" of the other side. */
const char *peer_addr(const peer *p);
/* The other side's IP address into buf. Returns 0 or a UV_E* code. */
int peer_remote_ip(const peer *p, char *buf, size_t len);
/* When it was opened; once up, when it came up. */
uint64_t peer_since_ms(const peer *p);
/* When anything was last read on it. */
uint64_t peer_last_read_ms(const peer *p);
/* When the bytes being decoded now were read (util_now_ns(), taken once
 * per read): the read time of the frames it hands over. */
uint64_t peer_read_ns(const peer *p);
/* Bytes in its write queue. */
size_t peer_queued(const peer *p);
bool peer_tls(const peer *p);
/* The PEER_HELLO_* features both ends announced in their hellos (ours
 * and'ed with the peer's): 0 with a node before retention. Set once the
 * peer's hello came. */
uint16_t peer_features(const peer *p);
/* Its back-pressure reader (flow.h): paused while our clients lag. */
struct flow_reader *peer_flow(peer *p);

#endif
