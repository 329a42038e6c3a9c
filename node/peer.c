/* peer: see peer.h. The handshake, in the order of docs/PROTOCOL.md 2.2:
 * the dialler sends its hello once TCP (and TLS) connects; the acceptor
 * answers with its hello and proof, then seals; the dialler checks that
 * proof, sends its own, seals, and is up; the acceptor is up once that
 * proof verified. Frames before the proofs are bare; the rest of the read
 * that carried the peer's AUTH is already records. */
#include "node/peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "common/outq.h"
#include "common/secret.h"
#include "common/tls.h"
#include "common/util.h"
#include "node/peer_auth.h"

#define PEER_READ_BUF (256 * 1024)

struct peer {
    node *n;
    const struct peer_events *ev;
    void *ud;
    uv_tcp_t *tcp;            /* heap: freed in peer_closed_cb */
    uv_connect_t connect_req;
    outq q;
    peer_decoder dec;
    uint32_t id;              /* expected (dialled) or announced (hello) */
    bool outbound;
    enum peer_state state;
    uint64_t since_ms;        /* when it was opened; then when it came up */
    char addr[80];
    struct flow_reader flow;  /* back-pressure: paused while our clients lag */
    struct peer_handshake hs; /* ids and nonces, for the proofs and keys */
    peer_sealer sealer;       /* ours, once our AUTH is queued */
    peer_opener opener;       /* theirs, once their AUTH verified */
    bool sealing, opening;
    bool switching;           /* their AUTH just verified: the rest of the
                                 read is records */
    uint64_t last_read_ms;    /* anything read: the link is alive */
    uint64_t read_ns;         /* util_now_ns() of the read being decoded */
    tls_conn *tls;            /* --peer-tls: the link's TLS session */
    bool sniffed;             /* accepted: its first bytes were looked at */
    uint16_t features;        /* PEER_HELLO_* both hellos carried */
};

/* One loop thread reads every link, one read at a time: one buffer serves
 * them all (the decoder copies any partial frame it must keep). */
static char peer_rbuf[PEER_READ_BUF];

/* --- accessors ---------------------------------------------------------- */

enum peer_state peer_state(const peer *p) { return p->state; }
bool peer_is_up(const peer *p) { return p->state == PEER_UP; }
uint32_t peer_id(const peer *p) { return p->id; }
bool peer_outbound(const peer *p) { return p->outbound; }
const char *peer_addr(const peer *p) { return p->addr; }
uint64_t peer_since_ms(const peer *p) { return p->since_ms; }
uint64_t peer_last_read_ms(const peer *p) { return p->last_read_ms; }
uint64_t peer_read_ns(const peer *p) { return p->read_ns; }
size_t peer_queued(const peer *p) { return outq_bytes(&p->q); }
bool peer_tls(const peer *p) { return p->tls != NULL; }
uint16_t peer_features(const peer *p) { return p->features; }

/* The features our hello announces. --test-before-retention: none, like a
 * node built before them. */
static uint16_t peer_our_features(const peer *p)
{
    return p->n->cfg.test_before_retention ? 0 : PEER_HELLO_FLOORS | PEER_HELLO_GMAC;
}
struct flow_reader *peer_flow(peer *p) { return &p->flow; }

int peer_remote_ip(const peer *p, char *buf, size_t len)
{
    return netaddr_peer(p->tcp, buf, len, NULL);
}

/* --- closing ------------------------------------------------------------ */

static void peer_closed_cb(uv_handle_t *h)
{
    peer *p = h->data;
    outq_discard(&p->q);
    peer_decoder_free(&p->dec);
    if (p->sealing)
        peer_sealer_free(&p->sealer);
    if (p->opening)
        peer_opener_free(&p->opener);
    tls_conn_free(p->tls);
    p->ev->freed(p, p->ud);
    free(p->tcp);
    free(p);
}

void peer_close(peer *p, const char *why)
{
    if (p->state == PEER_CLOSING)
        return;
    if (why != NULL) {
        if (p->state == PEER_UP)
            log_warn("link to node %u (%s) down: %s", p->id, p->addr, why);
        else
            log_info("link %s %s dropped: %s", p->outbound ? "to" : "from", p->addr, why);
    }
    p->ev->down(p, p->ud);
    flow_forget(p->n, &p->flow);
    p->state = PEER_CLOSING;
    uv_close((uv_handle_t *)p->tcp, peer_closed_cb);
}

static void peer_write_error_cb(outq *q, int status, void *ud)
{
    peer *p = ud;
    if (status == UV_ETIMEDOUT)
        q->cls->slow_closes++;
    peer_close(p, status == UV_ETIMEDOUT ? "peer does not read (nothing written for the "
                                           "write deadline)" : uv_strerror(status));
}

static void peer_written_cb(outq *q, void *ud)
{
    peer *p = ud;
    (void)q;
    if (p->state == PEER_UP)
        p->ev->written(p, p->ud);
}

/* Refused before it was up: the owner counts and logs it. */
static void peer_refuse(peer *p, const char *why)
{
    char what[160];
    snprintf(what, sizeof(what), "%s %s (%s)", p->outbound ? "to" : "from", p->addr, why);
    p->ev->refused(p, what, p->ud);
    peer_close(p, NULL);
}

void peer_send(peer *p, msgbuf *b)
{
    int rc = outq_push(&p->q, b);
    if (rc == UV_ENOBUFS)
        p->q.cls->slow_closes++;
    if (rc != 0)
        peer_close(p, rc == UV_ENOBUFS ? "peer does not read fast enough (queue bound)"
                                       : uv_strerror(rc));
}

/* --- the handshake ------------------------------------------------------ */

bool peer_keeps_old(const peer *old, const peer *l, uint32_t self, uint32_t id,
                    uint64_t idle_ms, const char **why)
{
    if (old == NULL || old == l || old->state == PEER_CLOSING)
        return false;
    if (old->state != PEER_UP) {
        /* Crossed dials: the lower id keeps the link it dialled. */
        *why = "crossed dial; keeping the link we dialled";
        return old->outbound && self < id;
    }
    uint64_t idle = util_now_ms() - old->last_read_ms;
    *why = "the link up to that node is alive; keeping it";
    return idle <= idle_ms;
}

/* Everything we send from now on goes in sealed records. */
static void peer_start_sealing(peer *p, enum peer_role role)
{
    peer_sealer_init(&p->sealer, &p->hs, role, (p->features & PEER_HELLO_GMAC) != 0);
    p->sealing = true;
    outq_set_seal(&p->q, peer_seal, &p->sealer);
}

/* The dialer's hello came (acceptor side): answer with ours and our proof. */
static int peer_hello_in(peer *p, const struct peer_frame *f)
{
    uint32_t self = p->n->id, id = f->origin;
    if (id == self) {
        peer_close(p, "hello from a node with our own id");
        return -1;
    }
    if (self == 0) {
        peer_close(p, "not registered with discovery yet");
        return -1;
    }
    if (p->ev->hello(p, id, p->ud) != 0)
        return -1;
    p->id = id;
    p->hs.dialer_id = id;
    p->hs.acceptor_id = self;
    memcpy(p->hs.dialer_nonce, f->nonce, PEER_NONCE_LEN);
    p->features = f->flags & peer_our_features(p);
    secret_random(p->hs.acceptor_nonce, PEER_NONCE_LEN);
    uint8_t proof[PEER_AUTH_LEN];
    peer_auth_proof(&p->hs, PEER_ACCEPTOR, proof);
    msgbuf *hello = peer_proto_hello(self, peer_our_features(p), p->hs.acceptor_nonce);
    msgbuf *auth = peer_proto_auth(self, proof);
    peer_send(p, hello);
    peer_send(p, auth);
    msgbuf_unref(hello);
    msgbuf_unref(auth);
    if (p->state == PEER_CLOSING)
        return -1;
    /* Everything we send after our proof is sealed. */
    peer_start_sealing(p, PEER_ACCEPTOR);
    p->state = PEER_WAIT_AUTH;
    return 0;
}

/* The acceptor's hello came (dialer side): its id must be the one we
 * dialled. */
static int peer_hello_back(peer *p, const struct peer_frame *f)
{
    if (f->origin != p->id) {
        peer_close(p, "peer answered with another node id");
        return -1;
    }
    memcpy(p->hs.acceptor_nonce, f->nonce, PEER_NONCE_LEN);
    p->features = f->flags & peer_our_features(p);
    p->state = PEER_WAIT_AUTH;
    return 0;
}

static void peer_set_up(peer *p)
{
    p->state = PEER_UP;
    p->since_ms = p->last_read_ms = util_now_ms();
    char tls[96] = "plain";
    if (p->tls != NULL)
        tls_conn_describe(p->tls, tls, sizeof(tls));
    log_info("link to node %u up (%s, %s, %s)", p->id, p->outbound ? "dialled" : "accepted",
             p->addr, tls);
    p->ev->up(p, p->ud);
}

/* The peer's proof came: check it, then switch to records both ways. */
static int peer_auth_in(peer *p, const struct peer_frame *f)
{
    enum peer_role them = p->outbound ? PEER_ACCEPTOR : PEER_DIALER;
    if (f->origin != p->id || !peer_auth_check(&p->hs, them, f->mac)) {
        peer_refuse(p, f->origin != p->id ? "its proof names another node id"
                                          : "wrong cluster secret");
        return -1;
    }
    if (p->outbound) {
        uint8_t proof[PEER_AUTH_LEN];
        peer_auth_proof(&p->hs, PEER_DIALER, proof);
        msgbuf *auth = peer_proto_auth(p->n->id, proof);
        peer_send(p, auth);
        msgbuf_unref(auth);
        if (p->state == PEER_CLOSING)
            return -1;
        peer_start_sealing(p, PEER_DIALER);
    } else if (p->ev->adopt(p, p->ud) != 0) {
        return -1;
    }
    peer_opener_init(&p->opener, &p->hs, them, (p->features & PEER_HELLO_GMAC) != 0);
    p->opening = true;
    p->switching = true;
    peer_set_up(p);
    return p->state == PEER_UP ? 1 : -1; /* 1: the rest of this read is records */
}

/* --- reading ------------------------------------------------------------ */

/* Called by the decoder per frame; non-zero stops it: -1 when the link
 * closed, 1 when the rest of the input is records. */
static int peer_frame_cb(const struct peer_frame *f, void *ud)
{
    peer *p = ud;
    if (p->state == PEER_WAIT_HELLO || p->state == PEER_WAIT_AUTH) {
        if (f->type == PEER_HELLO && p->state == PEER_WAIT_HELLO)
            return p->outbound ? peer_hello_back(p, f) : peer_hello_in(p, f);
        if (f->type == PEER_AUTH && p->state == PEER_WAIT_AUTH)
            return peer_auth_in(p, f);
        peer_refuse(p, f->type == PEER_HELLO || f->type == PEER_AUTH
                           ? "handshake frames out of order" : "frame before its proof");
        return -1;
    }
    if (p->state != PEER_UP)
        return -1;
    if (p->n->cfg.test_before_retention && f->type == PEER_MARKS &&
        (f->flags & PEER_MARKS_FLOORS)) {
        /* What a node before retention makes of 20-byte entries. */
        log_warn("peer %s sent a bad frame: marks frame with a bad origin or length; "
                 "disconnecting it", p->addr);
        peer_close(p, NULL);
        return -1;
    }
    if (f->type == PEER_MSG || f->type == PEER_MARKS) {
        p->ev->frame(p, f, p->ud);
    } else {
        peer_close(p, "handshake frame on a link that is up");
        return -1;
    }
    return p->state == PEER_CLOSING ? -1 : 0;
}

static void peer_bad_input(peer *p, const char *err)
{
    if (p->state == PEER_CLOSING)
        return;
    if (p->state != PEER_UP) {
        peer_refuse(p, err);
        return;
    }
    log_warn("peer %s sent a bad frame: %s; disconnecting it", p->addr, err);
    peer_close(p, NULL);
}

/* A verified record's frames. */
static int peer_record_cb(const char *data, size_t len, void *ud)
{
    peer *p = ud;
    char err[160];
    int rc = peer_decoder_feed(&p->dec, data, len, peer_frame_cb, p, err, sizeof(err));
    if (rc < 0)
        peer_bad_input(p, err);
    return rc != 0 || p->state == PEER_CLOSING;
}

/* TLS on the link (--peer-tls): an accepted link must open with a TLS
 * handshake when we run TLS and must not when we do not, so that a node
 * started with the other setting is told why instead of failing on
 * garbage. *data and *len become the plaintext. Returns 0, or -1 when the
 * link is closing. */
static int peer_tls_in(peer *p, const char **data, size_t *len)
{
    node *n = p->n;
    if (!p->outbound && !p->sniffed) {
        p->sniffed = true;
        bool tls = tls_is_handshake(*data, *len);
        if (tls != n->cfg.peer_tls) {
            peer_refuse(p, tls ? "it speaks TLS and this node does not: start every node "
                                 "with --peer-tls, or none"
                               : "it speaks plain TCP and this node requires TLS on peer "
                                 "links: start every node with --peer-tls, or none");
            return -1;
        }
        if (tls) {
            p->tls = tls_conn_new(n->tls_server, NULL);
            outq_set_tls(&p->q, p->tls);
        }
    }
    if (p->tls == NULL)
        return 0;
    int rc = tls_conn_feed(p->tls, *data, *len, data, len);
    outq_poke(&p->q); /* its handshake answers, or what waited for it */
    if (rc != 0) {
        char why[240];
        snprintf(why, sizeof(why), "TLS: %s",
                 rc == TLS_CLOSED ? "closed by the peer" : tls_conn_error(p->tls));
        if (p->state == PEER_UP)
            peer_close(p, why);
        else
            peer_refuse(p, why);
        return -1;
    }
    if (p->hs.binding_len == 0 && tls_conn_ready(p->tls)) {
        if (tls_conn_export(p->tls, PEER_TLS_BINDING_LABEL, p->hs.binding,
                            PEER_TLS_BINDING_LEN) != 0) {
            peer_refuse(p, "cannot export keying material from its TLS session");
            return -1;
        }
        p->hs.binding_len = PEER_TLS_BINDING_LEN;
    }
    return 0;
}

static void peer_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = peer_rbuf;
    buf->len = sizeof(peer_rbuf);
}

/* One read's bytes, through TLS, the handshake's frames and the records. */
static void peer_read_in(peer *p, const char *data, size_t len)
{
    if (peer_tls_in(p, &data, &len) != 0 || len == 0)
        return;
    char err[160];
    if (!p->opening) {
        int rc = peer_decoder_feed(&p->dec, data, len, peer_frame_cb, p, err, sizeof(err));
        if (rc < 0) {
            peer_bad_input(p, err);
            return;
        }
        if (rc == 0 || !p->switching || p->state == PEER_CLOSING)
            return;
        p->switching = false;
        data += p->dec.used;
        len -= p->dec.used;
    }
    /* 1 (a record's frames stopped it) has been dealt with by their callback. */
    if (len > 0 &&
        peer_opener_feed(&p->opener, data, len, peer_record_cb, p, err, sizeof(err)) < 0)
        peer_bad_input(p, err);
}

static void peer_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    peer *p = s->data;
    if (nread == 0 || p->state == PEER_CLOSING)
        return;
    if (nread < 0) {
        peer_close(p, nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
        return;
    }
    p->read_ns = util_now_ns(); /* once per read: relay_remote's read time */
    p->last_read_ms = p->read_ns / 1000000u; /* util_now_ms's clock */
    peer_read_in(p, buf->base, (size_t)nread);
    if (p->ev->frames_done != NULL)
        p->ev->frames_done(p, p->ud);
}

/* --- opening ------------------------------------------------------------ */

static void peer_set_paused(struct flow_reader *r, bool paused)
{
    peer *p = container_of(r, peer, flow);
    if (p->state == PEER_CLOSING)
        return;
    int rc = paused ? uv_read_stop((uv_stream_t *)p->tcp)
                    : uv_read_start((uv_stream_t *)p->tcp, peer_alloc_cb, peer_read_cb);
    if (rc != 0)
        peer_close(p, uv_strerror(rc));
}

peer *peer_new(node *n, bool outbound, const struct peer_events *events, void *ud)
{
    peer *p = xcalloc(1, sizeof(*p));
    p->n = n;
    p->ev = events;
    p->ud = ud;
    p->outbound = outbound;
    p->since_ms = util_now_ms();
    p->tcp = xmalloc(sizeof(*p->tcp));
    uv_tcp_init(n->loop, p->tcp);
    p->tcp->data = p;
    /* The links' limits (flow.c) leave room for live traffic, and always
     * for a catch-up batch plus a frame of the largest size. */
    outq_init(&p->q, (uv_stream_t *)p->tcp, flow_links_class(n), peer_write_error_cb, p);
    outq_set_on_written(&p->q, peer_written_cb);
    peer_decoder_init(&p->dec, PEER_PROTO_MAX_FRAME);
    p->flow.kind = FLOW_PEER;
    p->flow.set_paused = peer_set_paused;
    return p;
}

static void peer_start_reading(peer *p)
{
    uv_tcp_nodelay(p->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)p->tcp, peer_alloc_cb, peer_read_cb);
    if (rc != 0)
        peer_close(p, uv_strerror(rc));
}

static void peer_connected_cb(uv_connect_t *req, int status)
{
    peer *p = container_of(req, peer, connect_req);
    if (p->state == PEER_CLOSING)
        return;
    if (status != 0) {
        peer_close(p, uv_strerror(status));
        return;
    }
    p->state = PEER_WAIT_HELLO;
    if (p->n->cfg.peer_tls) {
        /* The hello waits in the queue until the TLS handshake is done. */
        p->tls = tls_conn_new(p->n->tls_peer_client, NULL);
        outq_set_tls(&p->q, p->tls);
    }
    p->hs.dialer_id = p->n->id;
    p->hs.acceptor_id = p->id;
    secret_random(p->hs.dialer_nonce, PEER_NONCE_LEN);
    msgbuf *hello = peer_proto_hello(p->n->id, peer_our_features(p), p->hs.dialer_nonce);
    peer_send(p, hello);
    msgbuf_unref(hello);
    if (p->state != PEER_CLOSING)
        peer_start_reading(p);
}

void peer_connect(peer *p, const struct sockaddr *sa, uint32_t id, const char *addr)
{
    p->id = id;
    p->state = PEER_CONNECTING;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    log_debug("dialling node %u at %s", id, p->addr);
    int rc = uv_tcp_connect(&p->connect_req, p->tcp, sa, peer_connected_cb);
    if (rc != 0)
        peer_close(p, uv_strerror(rc));
}

int peer_accept(peer *p, uv_stream_t *server)
{
    if (uv_accept(server, (uv_stream_t *)p->tcp) != 0) {
        peer_close(p, NULL);
        return -1;
    }
    char ip[48];
    int port = 0;
    if (netaddr_peer(p->tcp, ip, sizeof(ip), &port) == 0)
        snprintf(p->addr, sizeof(p->addr), "%s:%d", ip, port);
    else
        strcpy(p->addr, "?");
    p->state = PEER_WAIT_HELLO;
    return 0;
}

void peer_start(peer *p)
{
    peer_start_reading(p);
}
