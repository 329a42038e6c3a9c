/* mesh: see mesh.h. Links and peers:
 *  - a peer is a node we know of (from discovery, or from its hello);
 *  - a link is one TCP connection, dialled or accepted, that becomes "up"
 *    once both sides proved the cluster secret (hellos with nonces, then
 *    AUTH frames: peer_auth.h); after its AUTH each side sends only sealed
 *    records. A peer has at most one link.
 * Both sides may dial (a joining node dials everyone it learns of at
 * login, without waiting for their next heartbeat). Which link a peer
 * keeps (link_keeps_old, checked at the hello and again once the peer is
 * authenticated, so that an unauthenticated hello never closes anything):
 * when dials cross, the link dialled by the lower id; when a link is up,
 * that link, unless nothing came on it for MESH_LINK_IDLE (the peer lost
 * its side: the new link replaces it). So a second hello for an id whose
 * link is alive cannot take its place or make it flap.
 * Messages of other origins than the link's peer are accepted only as
 * answers to our marks (link_may_relay).
 *
 * Anti-entropy: when a link comes up, every --sync-interval after, and
 * soon after a message arrives past a gap, each side sends MARKS (its
 * highest seq per origin; "direct" for the nodes it has a link to, which
 * send it their own). The other side answers with MSG frames of what it
 * has beyond those marks and beyond what it already queued on the link
 * (catchup.h), read from its store in origin order, a few hundred at a
 * time while the link's queue is short (catch-up cursors). */
#include "node/mesh.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "common/outq.h"
#include "common/tls.h"
#include "common/util.h"
#include "node/catchup.h"
#include "node/flow.h"
#include "node/peer_auth.h"
#include "node/peer_proto.h"
#include "node/relay.h"
#include "node/store.h"

#define MESH_TICK_MS 100
#define MESH_HELLO_TIMEOUT_MS 5000
#define MESH_MAX_HELLO_PENDING 64      /* accepted links waiting for a hello */
#define MESH_REFUSED_LOG_MS 1000       /* refusals are logged at most this often */
#define MESH_BACKOFF_MIN_MS 100
#define MESH_BACKOFF_MAX_MS 5000
#define MESH_READ_BUF (256 * 1024)
#define MESH_CATCHUP_ROWS 256          /* messages per store read */
#define MESH_CATCHUP_QUEUE (1u << 20)  /* catch-up waits while more is queued */
#define MESH_CATCHUP_READS 64          /* store reads per pump, at most */
#define MESH_CATCHUP_MS 2              /* pump period while catching up */
#define MESH_GAP_MARKS_MS 200          /* marks after a gap, at most this often */
#define MESH_AUTH_LOG_MS 1000          /* failed proofs are logged at most this often */
/* A link up that has had nothing for this long (peers send marks every
 * --sync-interval) is taken for dead when its peer dials again. */
#define MESH_LINK_IDLE_MS(m) (2 * (uint64_t)(m)->n->cfg.sync_interval_ms + 1000)

/* LINK_HELLO: waiting for the peer's hello; LINK_AUTH: hellos exchanged,
 * waiting for the peer's proof. */
enum link_state { LINK_CONNECTING, LINK_HELLO, LINK_AUTH, LINK_UP, LINK_CLOSING };

struct peer;

struct link {
    struct mesh *mesh;
    uv_tcp_t *tcp;            /* heap: freed in link_closed_cb */
    uv_connect_t connect_req;
    outq q;
    peer_decoder dec;
    struct peer *peer;        /* set for dialled links, and once hello'd */
    uint32_t peer_id;         /* expected (dialled) or announced (hello) */
    bool outbound;
    bool hello_pending;       /* accepted, not up yet: counts against the cap */
    enum link_state state;
    uint64_t since_ms;        /* when it was opened; then when it came up */
    size_t up_index;          /* position in mesh->up while up */
    struct link *next_all, *prev_all;
    char addr[80];
    catchup *cu;              /* anti-entropy cursors, see catchup.h */
    uint64_t next_marks_ms;   /* the periodic marks are due */
    uint64_t marks_sent_ms;
    bool marks_wanted;        /* a gap was seen: send marks soon */
    struct flow_reader flow;  /* back-pressure: paused while our clients lag */
    bool refused;             /* we refused a frame of the peer's since our
                                 last marks: flag the next ones */
    struct peer_handshake hs; /* ids and nonces, for the proofs and keys */
    peer_sealer sealer;       /* ours, once our AUTH is queued */
    peer_opener opener;       /* theirs, once their AUTH verified */
    bool sealing, opening;
    bool switching;           /* their AUTH just verified: the rest of the
                                 read is records */
    uint64_t last_read_ms;    /* anything read: the link is alive */
    uint32_t *direct;         /* origins marked direct in our last marks */
    size_t ndirect;
    tls_conn *tls;            /* --peer-tls: the link's TLS session */
    bool sniffed;             /* accepted: its first bytes were looked at */
};

struct peer {
    struct peer_info info;
    struct link *link;
    bool listed;              /* in discovery's last list */
    unsigned backoff_ms;
    uint64_t next_dial_ms;
    uint64_t up_since_ms;
    uint64_t cut_until_ms;    /* tests: no link to it before this */
};

struct mesh {
    node *n;
    uv_tcp_t listener;
    uv_timer_t tick;
    uv_timer_t catchup;       /* runs while any link has a cursor */
    struct peer **peers;
    size_t npeers, cappeers;
    struct link **up;         /* dense, for broadcast */
    size_t nup, capup;
    struct link *all;         /* every open link */
    unsigned pending_closes;  /* handles whose close callback is due */
    unsigned hello_pending;   /* accepted links not up yet */
    uint64_t refused;         /* inbound connections closed at once (cap) */
    unsigned refused_unlogged;
    uint64_t refused_logged_ms;
    char refused_last[80];    /* address of the latest one, for the log */
    uint64_t auth_failed;     /* links that did not prove the secret */
    unsigned auth_unlogged;
    uint64_t auth_logged_ms;
    char auth_last[160];      /* the latest one, for the log */
    uint64_t forged;          /* messages refused by link_may_relay */
    bool stopping;
    char rbuf[MESH_READ_BUF]; /* shared read buffer: the decoder copies any
                                 partial frame it must keep */
};

static void link_close(struct link *l, const char *why);

/* Drops one pending close; a stopping mesh is freed with the last one. */
static void mesh_release(struct mesh *m)
{
    if (--m->pending_closes > 0 || !m->stopping)
        return;
    free(m->peers);
    free(m->up);
    m->n->mesh = NULL;
    free(m);
}

/* --- peers -------------------------------------------------------------- */

static struct peer *peer_find(struct mesh *m, uint32_t id)
{
    for (size_t i = 0; i < m->npeers; i++)
        if (m->peers[i]->info.id == id)
            return m->peers[i];
    return NULL;
}

static struct peer *peer_add(struct mesh *m, uint32_t id)
{
    if (m->npeers == m->cappeers) {
        m->cappeers = m->cappeers ? 2 * m->cappeers : 8;
        m->peers = xrealloc(m->peers, m->cappeers * sizeof(*m->peers));
    }
    struct peer *p = xcalloc(1, sizeof(*p));
    p->info.id = id;
    p->backoff_ms = MESH_BACKOFF_MIN_MS;
    m->peers[m->npeers++] = p;
    return p;
}

static void peer_remove(struct mesh *m, struct peer *p)
{
    for (size_t i = 0; i < m->npeers; i++) {
        if (m->peers[i] == p) {
            m->peers[i] = m->peers[--m->npeers];
            break;
        }
    }
    free(p);
}

/* --- links up / down ---------------------------------------------------- */

static void link_send(struct link *l, msgbuf *b);
static void link_send_marks(struct link *l);

/* The link no longer waits for a hello (up, or closing). */
static void link_hello_done(struct link *l)
{
    if (l->hello_pending) {
        l->hello_pending = false;
        l->mesh->hello_pending--;
    }
}

static void link_set_up(struct link *l)
{
    struct mesh *m = l->mesh;
    link_hello_done(l);
    if (m->nup == m->capup) {
        m->capup = m->capup ? 2 * m->capup : 8;
        m->up = xrealloc(m->up, m->capup * sizeof(*m->up));
    }
    l->state = LINK_UP;
    l->since_ms = l->last_read_ms = util_now_ms();
    l->up_index = m->nup;
    m->up[m->nup++] = l;
    l->peer->backoff_ms = MESH_BACKOFF_MIN_MS;
    l->peer->up_since_ms = l->since_ms;
    char tls[96] = "plain";
    if (l->tls != NULL)
        tls_conn_describe(l->tls, tls, sizeof(tls));
    log_info("link to node %u up (%s, %s, %s)", l->peer_id,
             l->outbound ? "dialled" : "accepted", l->addr, tls);
    link_send_marks(l); /* what did we miss of each other? */
}

static void link_unset_up(struct link *l)
{
    struct mesh *m = l->mesh;
    if (l->state != LINK_UP)
        return;
    struct link *last = m->up[--m->nup];
    m->up[l->up_index] = last;
    last->up_index = l->up_index;
}

static void link_closed_cb(uv_handle_t *h)
{
    struct link *l = h->data;
    struct mesh *m = l->mesh;
    outq_discard(&l->q);
    peer_decoder_free(&l->dec);
    if (l->sealing)
        peer_sealer_free(&l->sealer);
    if (l->opening)
        peer_opener_free(&l->opener);
    free(l->direct);
    tls_conn_free(l->tls);
    catchup_free(l->cu);
    free(l->tcp);
    free(l);
    mesh_release(m);
}

static void link_close(struct link *l, const char *why)
{
    struct mesh *m = l->mesh;
    if (l->state == LINK_CLOSING)
        return;
    if (why != NULL) {
        if (l->state == LINK_UP)
            log_warn("link to node %u (%s) down: %s", l->peer_id, l->addr, why);
        else
            log_info("link %s %s dropped: %s", l->outbound ? "to" : "from",
                     l->addr, why);
    }
    link_unset_up(l);
    flow_forget(m->n, &l->flow);
    link_hello_done(l);
    l->state = LINK_CLOSING;
    if (l->peer != NULL && l->peer->link == l) {
        struct peer *p = l->peer;
        p->link = NULL;
        unsigned jitter = (unsigned)rand() % (p->backoff_ms / 2 + 1);
        p->next_dial_ms = util_now_ms() + p->backoff_ms + jitter;
        p->backoff_ms = UTIL_MIN(p->backoff_ms * 2, MESH_BACKOFF_MAX_MS);
        if (!p->listed && !m->stopping)
            peer_remove(m, p); /* known only from its hello */
    }
    if (l->next_all)
        l->next_all->prev_all = l->prev_all;
    if (l->prev_all)
        l->prev_all->next_all = l->next_all;
    else
        m->all = l->next_all;
    l->next_all = l->prev_all = NULL;
    m->pending_closes++;
    uv_close((uv_handle_t *)l->tcp, link_closed_cb);
}

static void link_write_error_cb(outq *q, int status, void *ud)
{
    struct link *l = ud;
    link_close(l, status == UV_ETIMEDOUT ? "peer does not read (nothing written for the "
                                           "write deadline)" : uv_strerror(status));
}

/* --- reading ------------------------------------------------------------ */

static void link_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct link *l = h->data;
    buf->base = l->mesh->rbuf;
    buf->len = sizeof(l->mesh->rbuf);
}

static void link_send(struct link *l, msgbuf *b)
{
    int rc = outq_push(&l->q, b);
    if (rc != 0)
        link_close(l, rc == UV_ENOBUFS ? "peer does not read fast enough (queue bound)"
                                       : uv_strerror(rc));
}

/* --- anti-entropy ------------------------------------------------------- */

static int id_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Our marks for l's peer: our highest seq per origin, except for the nodes
 * we have a link up to (other than that peer): PEER_MARK_DIRECT, since
 * their messages come to us from them, live or by their own catch-up; a
 * third node sending them too would only make duplicates. Flagged when we
 * refused a frame of the peer's since our previous marks to it. */
static void link_send_marks(struct link *l)
{
    struct mesh *m = l->mesh;
    node *n = m->n;
    size_t count;
    const struct store_origin *o = store_origins(n->store, &count);
    uint32_t *direct = xmalloc((m->nup + 1) * sizeof(*direct));
    size_t ndirect = 0;
    for (size_t i = 0; i < m->nup; i++)
        if (m->up[i] != l && m->up[i]->peer_id != l->peer_id)
            direct[ndirect++] = m->up[i]->peer_id;
    qsort(direct, ndirect, sizeof(*direct), id_cmp);
    peer_marks_writer w;
    peer_proto_marks_begin(&w, n->id, l->refused ? PEER_MARKS_REFUSED : 0, count + ndirect);
    /* Both lists ascending: one merge. Past the frame bound, the highest
     * origins are left out (docs/PROTOCOL.md 2.4). */
    size_t i = 0, d = 0;
    int rc = 0;
    while (rc == 0 && (i < count || d < ndirect)) {
        if (d < ndirect && (i == count || direct[d] <= o[i].origin)) {
            if (i < count && o[i].origin == direct[d])
                i++;
            rc = peer_proto_marks_add(&w, direct[d++], PEER_MARK_DIRECT);
        } else {
            /* Only what is committed: a batch still being written may
             * fail, and the peer must not take its rows as ours. */
            rc = peer_proto_marks_add(&w, o[i].origin, o[i].committed);
            i++;
        }
    }
    free(l->direct); /* what the peer may send us of other origins: link_may_relay */
    l->direct = direct;
    l->ndirect = ndirect;
    msgbuf *b = peer_proto_marks_end(&w);
    link_send(l, b);
    msgbuf_unref(b);
    l->refused = false;
    uint64_t now = util_now_ms();
    l->marks_sent_ms = now;
    l->next_marks_ms = now + n->cfg.sync_interval_ms;
    l->marks_wanted = false;
}

/* Sends what the cursors say the peer lacks, while its queue is short. */
static void link_pump(struct link *l)
{
    node *n = l->mesh->n;
    uint32_t origin;
    uint64_t after;
    for (int reads = 0; reads < MESH_CATCHUP_READS && l->state == LINK_UP &&
                        outq_bytes(&l->q) < MESH_CATCHUP_QUEUE &&
                        catchup_next(l->cu, &origin, &after);
         reads++) {
        struct store_rows rows = { 0 };
        /* Up to what went out live: our own messages committed but still
         * held for the commit callback go out live, so not here too. */
        if (store_read(n->store, origin, after, relay_delivered(n, origin), MESH_CATCHUP_ROWS,
                       &rows) != 0) {
            catchup_clear(l->cu); /* logged; the next marks start over */
            store_rows_free(&rows);
            return;
        }
        bool done = rows.n < MESH_CATCHUP_ROWS;
        size_t i = 0;
        /* Checked per message: a few big ones could pass the link's bound
         * within one read, and the link would close and start over. */
        for (; i < rows.n && l->state == LINK_UP && outq_bytes(&l->q) < MESH_CATCHUP_QUEUE;
             i++) {
            msgbuf *b = peer_proto_msg(&rows.msgs[i]);
            link_send(l, b);
            msgbuf_unref(b);
            if (l->state != LINK_UP)
                break;
            catchup_queued(l->cu, origin, rows.msgs[i].seq);
            n->counters.caught_up++;
        }
        if (i < rows.n)
            done = false; /* the rest on the next pump */
        store_rows_free(&rows);
        if (l->state != LINK_UP)
            return;
        if (done) {
            log_debug("node %u caught up on origin %u", l->peer_id, origin);
            catchup_done(l->cu);
        }
    }
}

/* While any link has cursors, pump every few ms: a link's queue drains in
 * well under a tick, and the tick alone would cap catch-up at a few tens
 * of thousands of messages per second. */
static void catchup_cb(uv_timer_t *t)
{
    struct mesh *m = t->data;
    bool active = false;
    for (size_t i = m->nup; i-- > 0;) {
        struct link *l = m->up[i];
        if (catchup_pending(l->cu) > 0)
            link_pump(l);
        if (l->state == LINK_UP && catchup_pending(l->cu) > 0)
            active = true;
    }
    if (!active)
        uv_timer_stop(t);
}

/* The peer's marks: a cursor for every origin it lags behind on. */
static void link_on_marks(struct link *l, const struct peer_frame *f)
{
    size_t count;
    const struct store_origin *o = store_origins(l->mesh->n->store, &count);
    catchup_marks(l->cu, f, o, count, l->peer_id);
    link_pump(l);
    if (l->state == LINK_UP && catchup_pending(l->cu) > 0 &&
        !uv_is_active((uv_handle_t *)&l->mesh->catchup))
        uv_timer_start(&l->mesh->catchup, catchup_cb, MESH_CATCHUP_MS, MESH_CATCHUP_MS);
}

/* --- the handshake ------------------------------------------------------ */

/* One line per MESH_AUTH_LOG_MS at most: a flood of bad proofs must not
 * fill the disk with logs. */
static void auth_log(struct mesh *m, uint64_t now)
{
    if (m->auth_unlogged == 0 || now - m->auth_logged_ms < MESH_AUTH_LOG_MS)
        return;
    log_warn("refused %u peer link(s) that did not prove the cluster secret, the latest %s; "
             "if it is one of ours, give it the same --cluster-secret-file and --peer-tls setting "
             "as this node",
             m->auth_unlogged, m->auth_last);
    m->auth_unlogged = 0;
    m->auth_logged_ms = now;
}

static void auth_refuse(struct link *l, const char *why)
{
    struct mesh *m = l->mesh;
    m->auth_failed++;
    m->auth_unlogged++;
    snprintf(m->auth_last, sizeof(m->auth_last), "%s %s (%s)",
             l->outbound ? "to" : "from", l->addr, why);
    auth_log(m, util_now_ms());
    link_close(l, NULL);
}

/* Whether p's current link old stays and the new inbound l from id must
 * go: the rule of the file's head comment. */
static bool link_keeps_old(const struct link *old, const struct link *l, uint32_t self,
                           uint32_t id, const char **why)
{
    if (old == NULL || old == l || old->state == LINK_CLOSING)
        return false;
    if (old->state != LINK_UP) {
        /* Crossed dials: the lower id keeps the link it dialled. */
        *why = "crossed dial; keeping the link we dialled";
        return old->outbound && self < id;
    }
    uint64_t idle = util_now_ms() - old->last_read_ms;
    *why = "the link up to that node is alive; keeping it";
    return idle <= MESH_LINK_IDLE_MS(l->mesh);
}

/* The link we keep was challenged by a new one: if it is dead, a write
 * on it says so soon (marks, at most every MESH_GAP_MARKS_MS, so that a
 * flood of hellos cannot make us send a flood of marks). */
static void link_probe(struct link *l)
{
    if (l->state == LINK_UP && util_now_ms() - l->marks_sent_ms >= MESH_GAP_MARKS_MS)
        link_send_marks(l);
}

/* The dialer's hello came (acceptor side): answer with ours and our proof. */
static int link_hello_in(struct link *l, const struct peer_frame *f)
{
    struct mesh *m = l->mesh;
    uint32_t self = m->n->id, id = f->origin;
    if (id == self) {
        link_close(l, "hello from a node with our own id");
        return -1;
    }
    if (self == 0) {
        link_close(l, "not registered with discovery yet");
        return -1;
    }
    struct peer *p = peer_find(m, id);
    if (p != NULL && util_now_ms() < p->cut_until_ms) {
        link_close(l, "link cut by a test hook");
        return -1;
    }
    const char *why = NULL;
    if (p != NULL && link_keeps_old(p->link, l, self, id, &why)) {
        link_probe(p->link);
        link_close(l, why);
        return -1;
    }
    l->peer_id = id;
    l->hs.dialer_id = id;
    l->hs.acceptor_id = self;
    memcpy(l->hs.dialer_nonce, f->nonce, PEER_NONCE_LEN);
    secret_random(l->hs.acceptor_nonce, PEER_NONCE_LEN);
    uint8_t proof[PEER_AUTH_LEN];
    peer_auth_proof(&l->hs, PEER_ACCEPTOR, proof);
    msgbuf *hello = peer_proto_hello(self, l->hs.acceptor_nonce);
    msgbuf *auth = peer_proto_auth(self, proof);
    link_send(l, hello);
    link_send(l, auth);
    msgbuf_unref(hello);
    msgbuf_unref(auth);
    if (l->state == LINK_CLOSING)
        return -1;
    /* Everything we send after our proof is sealed. */
    peer_sealer_init(&l->sealer, &l->hs, PEER_ACCEPTOR);
    l->sealing = true;
    outq_set_seal(&l->q, peer_seal, &l->sealer);
    l->state = LINK_AUTH;
    return 0;
}

/* The acceptor's hello came (dialer side): its id must be the one we
 * dialled. */
static int link_hello_back(struct link *l, const struct peer_frame *f)
{
    if (f->origin != l->peer_id) {
        link_close(l, "peer answered with another node id");
        return -1;
    }
    memcpy(l->hs.acceptor_nonce, f->nonce, PEER_NONCE_LEN);
    l->state = LINK_AUTH;
    return 0;
}

/* The acceptor (inbound l) proved the secret: l becomes p's link. */
static int link_adopt(struct link *l)
{
    struct mesh *m = l->mesh;
    uint32_t self = m->n->id, id = l->peer_id;
    struct peer *p = peer_find(m, id);
    const char *why = NULL;
    if (p != NULL && link_keeps_old(p->link, l, self, id, &why)) {
        link_probe(p->link);
        link_close(l, why);
        return -1;
    }
    if (p == NULL) {
        p = peer_add(m, id);
        /* Known only from its hello: the address is the one it came from. */
        netaddr_peer(l->tcp, p->info.address, sizeof(p->info.address), NULL);
    }
    struct link *old = p->link;
    if (old != NULL && old != l) {
        /* Detach first: closing must not retire the peer we keep using. */
        old->peer = NULL;
        p->link = NULL;
        link_close(old, old->state == LINK_UP
                            ? "nothing came on it for a while and the peer dialled again; "
                              "replacing it"
                            : "crossed dial; keeping the link the lower id dialled");
    }
    l->peer = p;
    p->link = l;
    return 0;
}

/* The peer's proof came: check it, then switch to records both ways. */
static int link_auth(struct link *l, const struct peer_frame *f)
{
    enum peer_role them = l->outbound ? PEER_ACCEPTOR : PEER_DIALER;
    if (f->origin != l->peer_id || !peer_auth_check(&l->hs, them, f->mac)) {
        auth_refuse(l, f->origin != l->peer_id ? "its proof names another node id"
                                               : "wrong cluster secret");
        return -1;
    }
    if (l->outbound) {
        uint8_t proof[PEER_AUTH_LEN];
        peer_auth_proof(&l->hs, PEER_DIALER, proof);
        msgbuf *auth = peer_proto_auth(l->mesh->n->id, proof);
        link_send(l, auth);
        msgbuf_unref(auth);
        if (l->state == LINK_CLOSING)
            return -1;
        peer_sealer_init(&l->sealer, &l->hs, PEER_DIALER);
        l->sealing = true;
        outq_set_seal(&l->q, peer_seal, &l->sealer);
    } else if (link_adopt(l) != 0) {
        return -1;
    }
    peer_opener_init(&l->opener, &l->hs, them);
    l->opening = true;
    l->switching = true;
    link_set_up(l);
    return l->state == LINK_UP ? 1 : -1; /* 1: the rest of this read is records */
}

/* Whether a message of origin may come on l: the peer's own, or another
 * origin's as an answer to our marks, i.e. one we did not mark direct
 * (those come from their own node) and one we know of (in our history or
 * a node we know): so no peer can speak for a node we link to, nor claim
 * numbers of a node that does not exist yet. */
static bool link_may_relay(const struct link *l, uint32_t origin)
{
    if (origin == l->peer_id)
        return true;
    for (size_t lo = 0, hi = l->ndirect; lo < hi;) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->direct[mid] == origin)
            return false;
        if (l->direct[mid] < origin)
            lo = mid + 1;
        else
            hi = mid;
    }
    struct mesh *m = l->mesh;
    return store_highest(m->n->store, origin) > 0 || peer_find(m, origin) != NULL;
}

/* Called by the decoder per frame; non-zero stops it: -1 when the link
 * closed, 1 when the rest of the input is records. */
static int link_frame_cb(const struct peer_frame *f, void *ud)
{
    struct link *l = ud;
    if (l->state == LINK_HELLO || l->state == LINK_AUTH) {
        if (f->type == PEER_HELLO && l->state == LINK_HELLO)
            return l->outbound ? link_hello_back(l, f) : link_hello_in(l, f);
        if (f->type == PEER_AUTH && l->state == LINK_AUTH)
            return link_auth(l, f);
        auth_refuse(l, f->type == PEER_HELLO || f->type == PEER_AUTH
                           ? "handshake frames out of order" : "frame before its proof");
        return -1;
    }
    if (l->state != LINK_UP)
        return -1;
    if (f->type == PEER_MSG) {
        node *n = l->mesh->n;
        if (!link_may_relay(l, f->origin)) {
            l->mesh->forged++;
            log_debug("node %u sent a message of origin %u that we did not ask it for; "
                      "dropped", l->peer_id, f->origin);
            return 0;
        }
        flow_note(n, &l->flow);
        if (relay_remote(n, &f->msg) == RELAY_GAP)
            l->refused = true; /* the peer may count it as had: tell it */
        if (l->refused && !l->marks_wanted) {
            l->marks_wanted = true;
            if (util_now_ms() - l->marks_sent_ms >= MESH_GAP_MARKS_MS)
                link_send_marks(l);
        }
    } else if (f->type == PEER_MARKS) {
        link_on_marks(l, f);
    } else {
        link_close(l, "handshake frame on a link that is up");
        return -1;
    }
    return l->state == LINK_CLOSING ? -1 : 0;
}

static void bad_input(struct link *l, const char *err)
{
    if (l->state == LINK_CLOSING)
        return;
    if (l->state != LINK_UP) {
        auth_refuse(l, err);
        return;
    }
    log_warn("peer %s sent a bad frame: %s; disconnecting it", l->addr, err);
    link_close(l, NULL);
}

/* A verified record's frames. */
static int link_record_cb(const char *data, size_t len, void *ud)
{
    struct link *l = ud;
    char err[160];
    int rc = peer_decoder_feed(&l->dec, data, len, link_frame_cb, l, err, sizeof(err));
    if (rc < 0)
        bad_input(l, err);
    return rc != 0 || l->state == LINK_CLOSING;
}

/* TLS on the link (--peer-tls): an accepted link must open with a TLS
 * handshake when we run TLS and must not when we do not, so that a node
 * started with the other setting is told why instead of failing on
 * garbage. *data and *len become the plaintext. Returns 0, or -1 when the
 * link is closing. */
static int link_tls_in(struct link *l, const char **data, size_t *len)
{
    node *n = l->mesh->n;
    if (!l->outbound && !l->sniffed) {
        l->sniffed = true;
        bool tls = tls_is_handshake(*data, *len);
        if (tls != n->cfg.peer_tls) {
            auth_refuse(l, tls ? "it speaks TLS and this node does not: start every node "
                                 "with --peer-tls, or none"
                               : "it speaks plain TCP and this node requires TLS on peer "
                                 "links: start every node with --peer-tls, or none");
            return -1;
        }
        if (tls) {
            l->tls = tls_conn_new(n->tls_server, NULL);
            outq_set_tls(&l->q, l->tls);
        }
    }
    if (l->tls == NULL)
        return 0;
    int rc = tls_conn_feed(l->tls, *data, *len, data, len);
    outq_poke(&l->q); /* its handshake answers, or what waited for it */
    if (rc != 0) {
        char why[240];
        snprintf(why, sizeof(why), "TLS: %s",
                 rc == TLS_CLOSED ? "closed by the peer" : tls_conn_error(l->tls));
        if (l->state == LINK_UP)
            link_close(l, why);
        else
            auth_refuse(l, why);
        return -1;
    }
    if (l->hs.binding_len == 0 && tls_conn_ready(l->tls)) {
        if (tls_conn_export(l->tls, PEER_TLS_BINDING_LABEL, l->hs.binding,
                            PEER_TLS_BINDING_LEN) != 0) {
            auth_refuse(l, "cannot export keying material from its TLS session");
            return -1;
        }
        l->hs.binding_len = PEER_TLS_BINDING_LEN;
    }
    return 0;
}

static void link_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct link *l = s->data;
    if (nread == 0 || l->state == LINK_CLOSING)
        return;
    if (nread < 0) {
        link_close(l, nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
        return;
    }
    l->last_read_ms = util_now_ms();
    const char *data = buf->base;
    size_t len = (size_t)nread;
    if (link_tls_in(l, &data, &len) != 0 || len == 0)
        return;
    char err[160];
    if (!l->opening) {
        int rc = peer_decoder_feed(&l->dec, data, len, link_frame_cb, l, err, sizeof(err));
        if (rc < 0) {
            bad_input(l, err);
            return;
        }
        if (rc == 0 || !l->switching || l->state == LINK_CLOSING)
            return;
        l->switching = false;
        data += l->dec.used;
        len -= l->dec.used;
    }
    /* 1 (a record's frames stopped it) has been dealt with by their callback. */
    if (len > 0 &&
        peer_opener_feed(&l->opener, data, len, link_record_cb, l, err, sizeof(err)) < 0)
        bad_input(l, err);
}

/* --- opening links ------------------------------------------------------ */

static void link_set_paused(struct flow_reader *r, bool paused)
{
    struct link *l = container_of(r, struct link, flow);
    if (l->state == LINK_CLOSING)
        return;
    int rc = paused ? uv_read_stop((uv_stream_t *)l->tcp)
                    : uv_read_start((uv_stream_t *)l->tcp, link_alloc_cb, link_read_cb);
    if (rc != 0)
        link_close(l, uv_strerror(rc));
}

static struct link *link_new(struct mesh *m, bool outbound)
{
    struct link *l = xcalloc(1, sizeof(*l));
    l->mesh = m;
    l->outbound = outbound;
    l->since_ms = util_now_ms();
    l->tcp = xmalloc(sizeof(*l->tcp));
    uv_tcp_init(m->n->loop, l->tcp);
    l->tcp->data = l;
    /* The links' limits (flow.c) leave room for live traffic, and always
     * for a catch-up batch plus a frame of the largest size. */
    outq_init(&l->q, (uv_stream_t *)l->tcp, flow_links_class(m->n), link_write_error_cb, l);
    peer_decoder_init(&l->dec, PEER_PROTO_MAX_FRAME);
    l->cu = catchup_new();
    l->flow.kind = FLOW_PEER;
    l->flow.set_paused = link_set_paused;
    l->next_all = m->all;
    if (m->all)
        m->all->prev_all = l;
    m->all = l;
    return l;
}

static void link_start_reading(struct link *l)
{
    uv_tcp_nodelay(l->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)l->tcp, link_alloc_cb, link_read_cb);
    if (rc != 0)
        link_close(l, uv_strerror(rc));
}

static void link_connected_cb(uv_connect_t *req, int status)
{
    struct link *l = container_of(req, struct link, connect_req);
    if (l->state == LINK_CLOSING)
        return;
    if (status != 0) {
        link_close(l, uv_strerror(status));
        return;
    }
    l->state = LINK_HELLO;
    if (l->mesh->n->cfg.peer_tls) {
        /* The hello waits in the queue until the TLS handshake is done. */
        l->tls = tls_conn_new(l->mesh->n->tls_peer_client, NULL);
        outq_set_tls(&l->q, l->tls);
    }
    l->hs.dialer_id = l->mesh->n->id;
    l->hs.acceptor_id = l->peer_id;
    secret_random(l->hs.dialer_nonce, PEER_NONCE_LEN);
    msgbuf *hello = peer_proto_hello(l->mesh->n->id, l->hs.dialer_nonce);
    link_send(l, hello);
    msgbuf_unref(hello);
    if (l->state != LINK_CLOSING)
        link_start_reading(l);
}

static void peer_dial(struct mesh *m, struct peer *p)
{
    struct sockaddr_storage sa;
    if (netaddr_parse(p->info.address, p->info.sync_port, &sa) != 0) {
        log_warn("node %u has an unusable address '%s'; not dialling it",
                 p->info.id, p->info.address);
        p->next_dial_ms = util_now_ms() + MESH_BACKOFF_MAX_MS;
        return;
    }
    struct link *l = link_new(m, true);
    l->peer = p;
    l->peer_id = p->info.id;
    l->state = LINK_CONNECTING;
    snprintf(l->addr, sizeof(l->addr), "%s:%d", p->info.address, p->info.sync_port);
    p->link = l;
    log_debug("dialling node %u at %s", p->info.id, l->addr);
    int rc = uv_tcp_connect(&l->connect_req, l->tcp, (struct sockaddr *)&sa,
                            link_connected_cb);
    if (rc != 0)
        link_close(l, uv_strerror(rc));
}

/* One line per MESH_REFUSED_LOG_MS at most, however many are refused: a
 * flood of connections must not fill the disk with logs. */
static void refused_log(struct mesh *m, uint64_t now)
{
    if (m->refused_unlogged == 0 || now - m->refused_logged_ms < MESH_REFUSED_LOG_MS)
        return;
    log_info("closed %u inbound peer connection(s) at once, the latest from %s: %d accepted "
             "connections already wait for a hello (each gets its place back when it sends "
             "one, or after %d s); if these are not dchat nodes, find who floods the sync port",
             m->refused_unlogged, m->refused_last, MESH_MAX_HELLO_PENDING,
             MESH_HELLO_TIMEOUT_MS / 1000);
    m->refused_unlogged = 0;
    m->refused_logged_ms = now;
}

static void refused_closed_cb(uv_handle_t *h)
{
    struct mesh *m = h->data;
    free(h);
    mesh_release(m);
}

/* Beyond the cap: accepted (to take it off the backlog) and closed at
 * once, with no link and no buffers. A real node dials again later. */
static void accept_refuse(struct mesh *m)
{
    uv_tcp_t *tcp = xmalloc(sizeof(*tcp));
    uv_tcp_init(m->n->loop, tcp);
    tcp->data = m;
    if (uv_accept((uv_stream_t *)&m->listener, (uv_stream_t *)tcp) == 0) {
        char ip[48];
        int port = 0;
        if (netaddr_peer(tcp, ip, sizeof(ip), &port) == 0)
            snprintf(m->refused_last, sizeof(m->refused_last), "%s:%d", ip, port);
        else
            strcpy(m->refused_last, "?");
        m->refused++;
        m->refused_unlogged++;
        refused_log(m, util_now_ms());
    }
    m->pending_closes++;
    uv_close((uv_handle_t *)tcp, refused_closed_cb);
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct mesh *m = server->data;
    if (status != 0) {
        log_warn("accepting a peer link failed: %s", uv_strerror(status));
        return;
    }
    if (m->hello_pending >= MESH_MAX_HELLO_PENDING) {
        accept_refuse(m);
        return;
    }
    struct link *l = link_new(m, false);
    if (uv_accept(server, (uv_stream_t *)l->tcp) != 0) {
        link_close(l, NULL);
        return;
    }
    char ip[48];
    int port = 0;
    if (netaddr_peer(l->tcp, ip, sizeof(ip), &port) == 0)
        snprintf(l->addr, sizeof(l->addr), "%s:%d", ip, port);
    else
        strcpy(l->addr, "?");
    l->state = LINK_HELLO;
    l->hello_pending = true;
    m->hello_pending++;
    if (m->stopping) {
        link_close(l, "node is stopping");
        return;
    }
    link_start_reading(l);
}

/* --- the tick: dials due, hellos overdue -------------------------------- */

static void tick_cb(uv_timer_t *t)
{
    struct mesh *m = t->data;
    uint64_t now = util_now_ms();

    for (struct link *l = m->all, *next; l != NULL; l = next) {
        next = l->next_all;
        if (l->state != LINK_UP && now - l->since_ms > MESH_HELLO_TIMEOUT_MS)
            link_close(l, "no hello and proof within 5 s");
    }
    refused_log(m, now);
    auth_log(m, now);
    if (m->n->id == 0)
        return;
    /* Backwards: a send that fails closes its link, which leaves m->up. */
    for (size_t i = m->nup; i-- > 0;) {
        struct link *l = m->up[i];
        if (now >= l->next_marks_ms ||
            (l->marks_wanted && now - l->marks_sent_ms >= MESH_GAP_MARKS_MS))
            link_send_marks(l);
        if (l->state == LINK_UP)
            link_pump(l);
    }
    for (size_t i = 0; i < m->npeers; i++) {
        struct peer *p = m->peers[i];
        if (p->listed && p->link == NULL && now >= p->next_dial_ms && now >= p->cut_until_ms)
            peer_dial(m, p);
    }
}

/* --- public ------------------------------------------------------------- */

int mesh_start(node *n)
{
    struct mesh *m = xcalloc(1, sizeof(*m));
    struct sockaddr_storage sa;
    int rc;

    m->n = n;
    n->mesh = m;
    rc = netaddr_parse(n->cfg.listen_host, n->cfg.sync_port, &sa);
    if (rc != 0)
        return UV_EINVAL;
    uv_tcp_init(n->loop, &m->listener);
    m->listener.data = m;
    rc = uv_tcp_bind(&m->listener, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->listener, 128, accept_cb);
    if (rc != 0)
        return rc;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&m->listener, (struct sockaddr *)&bound, &len);
    netaddr_to_string((struct sockaddr *)&bound, NULL, 0, &n->sync_port);
    uv_timer_init(n->loop, &m->tick);
    m->tick.data = m;
    uv_timer_start(&m->tick, tick_cb, MESH_TICK_MS, MESH_TICK_MS);
    uv_timer_init(n->loop, &m->catchup);
    m->catchup.data = m;
    return 0;
}

void mesh_update(struct mesh *m, const struct peer_info *list, size_t count,
                 uint64_t asked_ms)
{
    if (m->stopping)
        return;
    for (size_t i = 0; i < m->npeers; i++)
        m->peers[i]->listed = false;
    for (size_t i = 0; i < count; i++) {
        struct peer *p = peer_find(m, list[i].id);
        if (p == NULL) {
            p = peer_add(m, list[i].id);
            log_info("node %u at %s (sync port %d) is active", list[i].id,
                     list[i].address, list[i].sync_port);
        }
        p->listed = true;
        if (strcmp(p->info.address, list[i].address) != 0 ||
            p->info.sync_port != list[i].sync_port) {
            /* Moved (restarted on other ports): the next dial goes there. */
            p->next_dial_ms = 0;
            p->backoff_ms = MESH_BACKOFF_MIN_MS;
        }
        p->info = list[i];
    }
    uint64_t now = util_now_ms();
    for (size_t i = 0; i < m->npeers;) {
        struct peer *p = m->peers[i];
        if (p->listed) {
            if (p->link == NULL && now >= p->next_dial_ms && now >= p->cut_until_ms)
                peer_dial(m, p);
            i++;
            continue;
        }
        if (p->link != NULL && p->link->since_ms >= asked_ms) {
            i++; /* came up after the list was made: not its fault */
            continue;
        }
        log_info("node %u left the active list; dropping it", p->info.id);
        if (p->link != NULL) {
            p->link->peer = NULL; /* so link_close does not touch p */
            link_close(p->link, "node left the active list");
        }
        peer_remove(m, p); /* swaps the last peer into slot i */
    }
}

size_t mesh_broadcast(struct mesh *m, msgbuf *frame, uint32_t origin, uint64_t seq)
{
    size_t sent = 0;
    /* Walk backwards: a link that closes on a full queue swaps the last
     * one into its slot, which has already been served. */
    for (size_t i = m->nup; i-- > 0;) {
        if (i >= m->nup)
            continue;
        struct link *l = m->up[i];
        link_send(l, frame);
        if (l->state == LINK_UP)
            catchup_queued(l->cu, origin, seq); /* catch-up will not send it again */
        sent++;
    }
    return sent;
}

size_t mesh_links_up(const struct mesh *m) { return m->nup; }

uint64_t mesh_links_refused(const struct mesh *m) { return m->refused; }

uint64_t mesh_links_unauthenticated(const struct mesh *m) { return m->auth_failed; }

uint64_t mesh_forged_dropped(const struct mesh *m) { return m->forged; }

int mesh_test_cut(struct mesh *m, uint32_t peer_id, unsigned ms)
{
    struct peer *p = peer_find(m, peer_id);
    if (p == NULL)
        return -1;
    p->cut_until_ms = util_now_ms() + ms;
    if (p->link != NULL)
        link_close(p->link, "cut by a test hook");
    return 0;
}

json_t *mesh_status(const struct mesh *m)
{
    json_t *arr = json_array();
    uint64_t now = util_now_ms();
    for (size_t i = 0; i < m->npeers; i++) {
        const struct peer *p = m->peers[i];
        const struct link *l = p->link;
        const char *state = l == NULL ? "down"
                            : l->state == LINK_UP ? "up"
                            : l->state == LINK_CLOSING ? "closing" : "connecting";
        json_t *e = json_pack("{s:I, s:s, s:i, s:i, s:s, s:b}",
                              "id", (json_int_t)p->info.id,
                              "address", p->info.address,
                              "syncport", p->info.sync_port,
                              "clientport", p->info.client_port,
                              "state", state,
                              "listed", p->listed);
        if (l != NULL) {
            json_object_set_new(e, "direction", json_string(l->outbound ? "dialled" : "accepted"));
            json_object_set_new(e, "sinceMs", json_integer((json_int_t)(now - l->since_ms)));
            json_object_set_new(e, "queuedBytes", json_integer((json_int_t)outq_bytes(&l->q)));
            json_object_set_new(e, "tls", json_boolean(l->tls != NULL));
        }
        json_array_append_new(arr, e);
    }
    return arr;
}

static void mesh_handle_closed_cb(uv_handle_t *h)
{
    mesh_release(h->data);
}

void mesh_stop(struct mesh *m)
{
    if (m->stopping)
        return;
    m->stopping = true;
    while (m->all != NULL)
        link_close(m->all, NULL);
    for (size_t i = 0; i < m->npeers; i++)
        free(m->peers[i]);
    m->npeers = 0;
    m->pending_closes += 3;
    uv_close((uv_handle_t *)&m->listener, mesh_handle_closed_cb);
    uv_close((uv_handle_t *)&m->tick, mesh_handle_closed_cb);
    uv_close((uv_handle_t *)&m->catchup, mesh_handle_closed_cb);
}
