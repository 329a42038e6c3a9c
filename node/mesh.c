/* mesh: see mesh.h. The table:
 *  - a member is a node we know of (from discovery, or from its hello),
 *    with its address, its redial backoff and at most one link;
 *  - a link is one peer (peer.h), dialled or accepted, with the mesh's
 *    side of it: the member it serves, its anti-entropy (sync.h), and its
 *    place among the links up (dense, for broadcast).
 * Both sides may dial (a joining node dials everyone it learns of at
 * login, without waiting for their next heartbeat). Which link a member
 * keeps (peer_keeps_old, asked at the hello and again once the peer is
 * authenticated, so that an unauthenticated hello never closes anything):
 * when dials cross, the link dialled by the lower id; when a link is up,
 * that link, unless nothing came on it for MESH_LINK_IDLE (the peer lost
 * its side: the new link replaces it). So a second hello for an id whose
 * link is alive cannot take its place or make it flap.
 * Messages of other origins than the link's peer are accepted only as
 * answers to our marks (link_may_relay). */
#include "node/mesh.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "common/util.h"
#include "node/flow.h"
#include "node/peer.h"
#include "node/relay.h"
#include "node/store.h"
#include "node/sync.h"

#define MESH_TICK_MS 100
#define MESH_HELLO_TIMEOUT_MS 5000
#define MESH_MAX_HELLO_PENDING 64      /* accepted links waiting for a hello */
#define MESH_REFUSED_LOG_MS 1000       /* refusals are logged at most this often */
#define MESH_BACKOFF_MIN_MS 100
#define MESH_BACKOFF_MAX_MS 5000
#define MESH_AUTH_LOG_MS 1000          /* failed proofs are logged at most this often */
/* A link up that has had nothing for this long (peers send marks every
 * --sync-interval) is taken for dead when its peer dials again. */
#define MESH_LINK_IDLE_MS(m) (2 * (uint64_t)(m)->n->cfg.sync_interval_ms + 1000)
/* ... and closed by the tick once nothing has come for this long: a
 * partition that drops packets silently leaves TCP retransmitting for
 * many minutes, with our messages piling up on a link that carries
 * nothing. Three missed marks and two seconds. */
#define MESH_LINK_DEAD_MS(m) (3 * (uint64_t)(m)->n->cfg.sync_interval_ms + 2000)

struct member;

/* The mesh's side of one link. */
struct link {
    struct mesh *mesh;
    peer *p;
    struct member *member;    /* set for dialled links, and once adopted */
    sync_link *sync;          /* anti-entropy, see sync.h */
    bool hello_pending;       /* accepted, not up yet: counts against the cap */
    size_t up_index;          /* position in mesh->up while up */
    struct link *next_all, *prev_all;
};

struct member {
    struct peer_info info;
    struct link *link;
    bool listed;              /* in discovery's last list */
    unsigned backoff_ms;
    uint64_t next_dial_ms;
    uint64_t up_since_ms;
    uint64_t cut_until_ms;    /* tests: no link to it before this */
    bool marks_heard;         /* it sent us MARKS since start */
};

struct mesh {
    node *n;
    uv_tcp_t listener;
    uv_timer_t tick;
    struct sync *sync;
    struct member **members;
    size_t nmembers, capmembers;
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
    bool listed_once;         /* a list from discovery came since start */
    bool own_heard;           /* relay_own_heard was called */
    bool stopping;
};

/* Drops one pending close; a stopping mesh is freed with the last one. */
static void mesh_release(struct mesh *m)
{
    if (--m->pending_closes > 0 || !m->stopping)
        return;
    free(m->members);
    free(m->up);
    m->n->mesh = NULL;
    free(m);
}

static void mesh_release_cb(void *ud)
{
    mesh_release(ud);
}

/* --- members ------------------------------------------------------------ */

static struct member *member_find(struct mesh *m, uint32_t id)
{
    for (size_t i = 0; i < m->nmembers; i++)
        if (m->members[i]->info.id == id)
            return m->members[i];
    return NULL;
}

static struct member *member_add(struct mesh *m, uint32_t id)
{
    if (m->nmembers == m->capmembers) {
        m->capmembers = m->capmembers ? 2 * m->capmembers : 8;
        m->members = xrealloc(m->members, m->capmembers * sizeof(*m->members));
    }
    struct member *p = xcalloc(1, sizeof(*p));
    p->info.id = id;
    p->backoff_ms = MESH_BACKOFF_MIN_MS;
    m->members[m->nmembers++] = p;
    return p;
}

static void member_remove(struct mesh *m, struct member *p)
{
    for (size_t i = 0; i < m->nmembers; i++) {
        if (m->members[i] == p) {
            m->members[i] = m->members[--m->nmembers];
            break;
        }
    }
    free(p);
}

/* --- what the links tell us (peer_events) -------------------------------- */

/* The link no longer waits for a hello (up, or closing). */
static void link_hello_done(struct link *l)
{
    if (l->hello_pending) {
        l->hello_pending = false;
        l->mesh->hello_pending--;
    }
}

static void link_up_cb(peer *p, void *ud)
{
    struct link *l = ud;
    struct mesh *m = l->mesh;
    link_hello_done(l);
    if (m->nup == m->capup) {
        m->capup = m->capup ? 2 * m->capup : 8;
        m->up = xrealloc(m->up, m->capup * sizeof(*m->up));
    }
    l->up_index = m->nup;
    m->up[m->nup++] = l;
    l->member->backoff_ms = MESH_BACKOFF_MIN_MS;
    l->member->up_since_ms = peer_since_ms(p);
    sync_link_up(l->sync);
}

static void link_down_cb(peer *p, void *ud)
{
    struct link *l = ud;
    struct mesh *m = l->mesh;
    if (peer_is_up(p)) {
        struct link *last = m->up[--m->nup];
        m->up[l->up_index] = last;
        last->up_index = l->up_index;
    }
    link_hello_done(l);
    if (l->member != NULL && l->member->link == l) {
        struct member *mb = l->member;
        mb->link = NULL;
        unsigned jitter = (unsigned)rand() % (mb->backoff_ms / 2 + 1);
        mb->next_dial_ms = util_now_ms() + mb->backoff_ms + jitter;
        mb->backoff_ms = UTIL_MIN(mb->backoff_ms * 2, MESH_BACKOFF_MAX_MS);
        if (!mb->listed && !m->stopping)
            member_remove(m, mb); /* known only from its hello */
    }
    if (l->next_all)
        l->next_all->prev_all = l->prev_all;
    if (l->prev_all)
        l->prev_all->next_all = l->next_all;
    else
        m->all = l->next_all;
    l->next_all = l->prev_all = NULL;
    m->pending_closes++;
}

static void link_freed_cb(peer *p, void *ud)
{
    struct link *l = ud;
    struct mesh *m = l->mesh;
    sync_link_free(l->sync);
    free(l);
    mesh_release(m);
}

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

static void link_refused_cb(peer *p, const char *why, void *ud)
{
    struct link *l = ud;
    struct mesh *m = l->mesh;
    m->auth_failed++;
    m->auth_unlogged++;
    snprintf(m->auth_last, sizeof(m->auth_last), "%s", why);
    auth_log(m, util_now_ms());
}

/* Whether the member's current link stays and the new inbound p, from id,
 * must go (then the kept one is probed and p closed). */
static bool link_keeps_old(struct mesh *m, struct member *mb, peer *p, uint32_t id)
{
    const char *why = NULL;
    if (mb == NULL || mb->link == NULL ||
        !peer_keeps_old(mb->link->p, p, m->n->id, id, MESH_LINK_IDLE_MS(m), &why))
        return false;
    sync_probe(mb->link->sync);
    peer_close(p, why);
    return true;
}

/* An accepted link's hello: refused while a test cut the member, or when
 * the member keeps its link. */
static int link_hello_cb(peer *p, uint32_t id, void *ud)
{
    struct link *l = ud;
    struct mesh *m = l->mesh;
    struct member *mb = member_find(m, id);
    if (mb != NULL && util_now_ms() < mb->cut_until_ms) {
        peer_close(p, "link cut by a test hook");
        return -1;
    }
    return link_keeps_old(m, mb, p, id) ? -1 : 0;
}

/* The acceptor side's peer proved the secret: l becomes its member's link. */
static int link_adopt_cb(peer *p, void *ud)
{
    struct link *l = ud;
    struct mesh *m = l->mesh;
    uint32_t id = peer_id(p);
    struct member *mb = member_find(m, id);
    if (link_keeps_old(m, mb, p, id))
        return -1;
    if (mb == NULL) {
        mb = member_add(m, id);
        /* Known only from its hello: the address is the one it came from. */
        peer_remote_ip(p, mb->info.address, sizeof(mb->info.address));
    }
    struct link *old = mb->link;
    if (old != NULL && old != l) {
        /* Detach first: closing must not retire the member we keep using. */
        old->member = NULL;
        mb->link = NULL;
        peer_close(old->p, peer_is_up(old->p)
                               ? "nothing came on it for a while and the peer dialled again; "
                                 "replacing it"
                               : "crossed dial; keeping the link the lower id dialled");
    }
    l->member = mb;
    mb->link = l;
    return 0;
}

/* Whether a message of origin may come on l: the peer's own, ours (sent
 * back when our history lacks it, catchup.h), or another origin's as an
 * answer to our marks, i.e. one we did not mark direct (those come from
 * their own node) and one we know of (in our history or a node we know):
 * so no peer can speak for a node we link to, nor claim numbers of a node
 * that does not exist yet. */
static bool link_may_relay(struct link *l, uint32_t origin)
{
    if (origin == peer_id(l->p) || origin == l->mesh->n->id)
        return true;
    if (sync_marked_direct(l->sync, origin))
        return false;
    struct mesh *m = l->mesh;
    return store_highest(m->n->store, origin) > 0 || member_find(m, origin) != NULL;
}

/* Numbering our own messages waits after a start until every peer on
 * discovery's list has told us, in its marks, what it holds of our origin
 * (relay.h, relay_own), or until RELAY_OWN_WAIT_MS have passed: a listed
 * peer that stays unreachable must not keep the node from taking messages
 * for ever. Called when a list or marks arrive, and on the tick. */
static void own_check(struct mesh *m, uint64_t now)
{
    if (m->own_heard)
        return;
    size_t unheard = 0;
    char ids[160] = "";
    for (size_t i = 0; i < m->nmembers; i++) {
        const struct member *mb = m->members[i];
        if (!mb->listed || mb->marks_heard)
            continue;
        size_t len = strlen(ids);
        if (len + 12 < sizeof(ids))
            snprintf(ids + len, sizeof(ids) - len, " %u", mb->info.id);
        unheard++;
    }
    bool heard = m->listed_once && unheard == 0;
    if (!heard && now - m->n->started_ms < RELAY_OWN_WAIT_MS)
        return;
    struct relay_own own;
    relay_own(m->n, &own);
    if (!heard && own.state == RELAY_OWN_WAITING) {
        char why[200];
        if (m->listed_once)
            snprintf(why, sizeof(why), "listed peer(s)%s sent no marks", ids);
        else
            snprintf(why, sizeof(why), "no list of peers came from discovery");
        log_warn("numbering new messages after seq %" PRIu64 ", the highest of this node's "
                 "history, though %s within %d s of the start: should a peer hold later "
                 "messages of this node, those numbers are given twice (logged as an error "
                 "when it tells); check that this node reaches discovery and its peers",
                 own.highest, why, RELAY_OWN_WAIT_MS / 1000);
    }
    m->own_heard = true;
    relay_own_heard(m->n);
}

static void link_frame_cb(peer *p, const struct peer_frame *f, void *ud)
{
    struct link *l = ud;
    node *n = l->mesh->n;
    if (f->type == PEER_MARKS) {
        sync_on_marks(l->sync, f); /* first: the relay learns what it holds */
        if (l->member != NULL && !l->member->marks_heard) {
            l->member->marks_heard = true;
            own_check(l->mesh, util_now_ms());
        }
        return;
    }
    if (!link_may_relay(l, f->origin)) {
        l->mesh->forged++;
        log_debug("node %u sent a message of origin %u that we did not ask it for; "
                  "dropped", peer_id(p), f->origin);
        return;
    }
    flow_note(n, peer_flow(p));
    sync_after_msg(l->sync, relay_remote(n, &f->msg, f->flags, peer_read_ns(p)) == RELAY_GAP);
}

/* The read's messages go to our clients together (relay.h). */
static void link_frames_done_cb(peer *p, void *ud)
{
    struct link *l = ud;
    (void)p;
    relay_remote_flush(l->mesh->n);
}

static void link_written_cb(peer *p, void *ud)
{
    struct link *l = ud;
    (void)p;
    sync_link_written(l->sync);
}

static const struct peer_events link_events = {
    .hello = link_hello_cb,
    .adopt = link_adopt_cb,
    .up = link_up_cb,
    .frame = link_frame_cb,
    .frames_done = link_frames_done_cb,
    .written = link_written_cb,
    .refused = link_refused_cb,
    .down = link_down_cb,
    .freed = link_freed_cb,
};

/* The origins our marks to peer id except call direct: the nodes with a
 * link up, other than it. */
static uint32_t *mesh_direct(uint32_t except, size_t *n, void *ud)
{
    struct mesh *m = ud;
    uint32_t *direct = xmalloc((m->nup + 1) * sizeof(*direct));
    size_t nd = 0;
    for (size_t i = 0; i < m->nup; i++)
        if (peer_id(m->up[i]->p) != except)
            direct[nd++] = peer_id(m->up[i]->p);
    *n = nd;
    return direct;
}

/* --- opening links ------------------------------------------------------ */

static struct link *link_new(struct mesh *m, bool outbound)
{
    struct link *l = xcalloc(1, sizeof(*l));
    l->mesh = m;
    l->p = peer_new(m->n, outbound, &link_events, l);
    l->sync = sync_link_new(m->sync, l->p);
    l->next_all = m->all;
    if (m->all)
        m->all->prev_all = l;
    m->all = l;
    return l;
}

static void member_dial(struct mesh *m, struct member *mb)
{
    struct sockaddr_storage sa;
    if (netaddr_parse(mb->info.address, mb->info.sync_port, &sa) != 0) {
        log_warn("node %u has an unusable address '%s'; not dialling it",
                 mb->info.id, mb->info.address);
        mb->next_dial_ms = util_now_ms() + MESH_BACKOFF_MAX_MS;
        return;
    }
    struct link *l = link_new(m, true);
    l->member = mb;
    mb->link = l;
    char addr[80];
    snprintf(addr, sizeof(addr), "%s:%d", mb->info.address, mb->info.sync_port);
    peer_connect(l->p, (struct sockaddr *)&sa, mb->info.id, addr);
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
    if (peer_accept(l->p, server) != 0)
        return; /* closing */
    l->hello_pending = true;
    m->hello_pending++;
    if (m->stopping) {
        peer_close(l->p, "node is stopping");
        return;
    }
    peer_start(l->p);
}

/* --- the tick: dials due, hellos overdue, marks and catch-up ------------ */

static void tick_cb(uv_timer_t *t)
{
    struct mesh *m = t->data;
    uint64_t now = util_now_ms();

    for (struct link *l = m->all, *next; l != NULL; l = next) {
        next = l->next_all;
        if (!peer_is_up(l->p) && now - peer_since_ms(l->p) > MESH_HELLO_TIMEOUT_MS)
            peer_close(l->p, "no hello and proof within 5 s");
    }
    refused_log(m, now);
    auth_log(m, now);
    if (m->n->id == 0)
        return;
    own_check(m, now);
    /* Backwards: a send that fails closes its link, which leaves m->up. */
    for (size_t i = m->nup; i-- > 0;) {
        if (i >= m->nup)
            continue;
        peer *p = m->up[i]->p;
        uint64_t quiet = now - peer_last_read_ms(p);
        if (quiet > MESH_LINK_DEAD_MS(m)) {
            char why[160];
            snprintf(why, sizeof(why), "nothing from the peer for %" PRIu64 " ms (its marks come "
                     "every %u ms): the link is taken for dead and dialled again", quiet,
                     m->n->cfg.sync_interval_ms);
            peer_close(p, why);
            continue;
        }
        sync_tick(m->up[i]->sync, now);
    }
    for (size_t i = 0; i < m->nmembers; i++) {
        struct member *mb = m->members[i];
        if (mb->listed && mb->link == NULL && now >= mb->next_dial_ms &&
            now >= mb->cut_until_ms)
            member_dial(m, mb);
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
    m->sync = sync_new(n, mesh_direct, m);
    return 0;
}

void mesh_update(struct mesh *m, const struct peer_info *list, size_t count,
                 uint64_t asked_ms)
{
    if (m->stopping)
        return;
    for (size_t i = 0; i < m->nmembers; i++)
        m->members[i]->listed = false;
    for (size_t i = 0; i < count; i++) {
        struct member *mb = member_find(m, list[i].id);
        if (mb == NULL) {
            mb = member_add(m, list[i].id);
            log_info("node %u at %s (sync port %d) is active", list[i].id,
                     list[i].address, list[i].sync_port);
        }
        mb->listed = true;
        if (strcmp(mb->info.address, list[i].address) != 0 ||
            mb->info.sync_port != list[i].sync_port) {
            /* Moved (restarted on other ports): the next dial goes there. */
            mb->next_dial_ms = 0;
            mb->backoff_ms = MESH_BACKOFF_MIN_MS;
        }
        mb->info = list[i];
    }
    uint64_t now = util_now_ms();
    for (size_t i = 0; i < m->nmembers;) {
        struct member *mb = m->members[i];
        if (mb->listed) {
            if (mb->link == NULL && now >= mb->next_dial_ms && now >= mb->cut_until_ms)
                member_dial(m, mb);
            i++;
            continue;
        }
        if (mb->link != NULL && peer_since_ms(mb->link->p) >= asked_ms) {
            i++; /* came up after the list was made: not its fault */
            continue;
        }
        log_info("node %u left the active list; dropping it", mb->info.id);
        if (mb->link != NULL) {
            mb->link->member = NULL; /* so closing does not touch mb */
            peer_close(mb->link->p, "node left the active list");
        }
        member_remove(m, mb); /* swaps the last member into slot i */
    }
    m->listed_once = true;
    own_check(m, now);
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
        peer_send(l->p, frame);
        if (peer_is_up(l->p))
            sync_queued(l->sync, origin, seq); /* catch-up will not send it again */
        sent++;
    }
    return sent;
}

size_t mesh_links_up(const struct mesh *m) { return m->nup; }

uint64_t mesh_links_refused(const struct mesh *m) { return m->refused; }

uint64_t mesh_links_unauthenticated(const struct mesh *m) { return m->auth_failed; }

uint64_t mesh_forged_dropped(const struct mesh *m) { return m->forged; }

uint64_t mesh_caught_up(const struct mesh *m) { return sync_caught_up(m->sync); }
uint64_t mesh_backfilled(const struct mesh *m) { return sync_backfilled(m->sync); }

int mesh_test_cut(struct mesh *m, uint32_t peer_id, unsigned ms)
{
    struct member *mb = member_find(m, peer_id);
    if (mb == NULL)
        return -1;
    mb->cut_until_ms = util_now_ms() + ms;
    if (mb->link != NULL)
        peer_close(mb->link->p, "cut by a test hook");
    return 0;
}

static enum mesh_link_state member_state(const struct member *mb)
{
    const peer *p = mb->link != NULL ? mb->link->p : NULL;
    return p == NULL                       ? MESH_LINK_DOWN
           : peer_state(p) == PEER_UP      ? MESH_LINK_UP
           : peer_state(p) == PEER_CLOSING ? MESH_LINK_CLOSING
                                           : MESH_LINK_CONNECTING;
}

const char *const mesh_link_state_names[MESH_LINK_STATES] = { "up", "connecting", "closing",
                                                              "down" };

void mesh_link_states(const struct mesh *m, unsigned count[MESH_LINK_STATES])
{
    memset(count, 0, MESH_LINK_STATES * sizeof(*count));
    for (size_t i = 0; i < m->nmembers; i++)
        count[member_state(m->members[i])]++;
}

size_t mesh_listed_not_up(const struct mesh *m, uint32_t *ids, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nmembers; i++) {
        const struct member *mb = m->members[i];
        if (!mb->listed || member_state(mb) == MESH_LINK_UP)
            continue;
        if (k < max)
            ids[k] = mb->info.id;
        k++;
    }
    return k;
}

json_t *mesh_status(const struct mesh *m)
{
    json_t *arr = json_array();
    uint64_t now = util_now_ms();
    for (size_t i = 0; i < m->nmembers; i++) {
        const struct member *mb = m->members[i];
        const peer *p = mb->link != NULL ? mb->link->p : NULL;
        const char *state = mesh_link_state_names[member_state(mb)];
        json_t *e = json_pack("{s:I, s:s, s:i, s:i, s:s, s:b}",
                              "id", (json_int_t)mb->info.id,
                              "address", mb->info.address,
                              "syncport", mb->info.sync_port,
                              "clientport", mb->info.client_port,
                              "state", state,
                              "listed", mb->listed);
        if (p != NULL) {
            json_object_set_new(e, "direction",
                                json_string(peer_outbound(p) ? "dialled" : "accepted"));
            json_object_set_new(e, "sinceMs",
                                json_integer((json_int_t)(now - peer_since_ms(p))));
            json_object_set_new(e, "queuedBytes", json_integer((json_int_t)peer_queued(p)));
            json_object_set_new(e, "tls", json_boolean(peer_tls(p)));
            /* Whether our marks may carry low-water marks on it: false for
             * a node before retention (or before its hello came). */
            json_object_set_new(e, "floors",
                                json_boolean(peer_features(p) & PEER_HELLO_FLOORS));
            /* The records' MAC on it (peer_auth.h): GMAC between nodes that
             * both speak it, else HMAC-SHA256. */
            json_object_set_new(e, "recordMac",
                                json_string(peer_features(p) & PEER_HELLO_GMAC ? "gmac"
                                                                               : "hmac-sha256"));
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
        peer_close(m->all->p, NULL);
    for (size_t i = 0; i < m->nmembers; i++)
        free(m->members[i]);
    m->nmembers = 0;
    m->pending_closes += 3;
    uv_close((uv_handle_t *)&m->listener, mesh_handle_closed_cb);
    uv_close((uv_handle_t *)&m->tick, mesh_handle_closed_cb);
    sync_close(m->sync, mesh_release_cb, m);
}
