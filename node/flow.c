/* flow: see flow.h. Two intrusive lists: readers noted since the last
 * check, and readers paused. A reader is paused the moment it delivers a
 * message while its work is piling up: one loop turn can read megabytes
 * from each socket (libuv reads up to 32 buffers a callback), so waiting
 * for the turn's end would let a fast sender fill every queue first. A
 * check handle (after every poll) resumes paused readers once the pressure
 * is gone; while any reader is paused a short timer keeps the loop
 * turning, so that a congested queue whose reader stalled stops counting
 * (outq_class_pressing) even when nothing else happens. Pressure has
 * hysteresis: it starts above a high mark and ends below a low one, so
 * readers are not flipped on and off every turn. */
#include "node/flow.h"

#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "node/peer_proto.h"
#include "node/relay.h"
#include "node/store.h"

/* The node's own messages waiting for their commit, as accounted in a
 * queue: each goes to every client at once when the commit lands. */
#define FLOW_HELD_HIGH (1u << 20)
#define FLOW_HELD_LOW (256u << 10)
/* Records waiting for the disk. */
#define FLOW_STORE_HIGH (8u << 20)
#define FLOW_STORE_LOW (2u << 20)
/* A congested queue whose last write completed longer ago than this is a
 * stalled reader, not a slow one: senders stop waiting for it. */
#define FLOW_STALL_MS 200
#define FLOW_TICK_MS 5
/* Peer links: room for a catch-up batch plus two frames of the largest
 * size (see sync.c), and congested at a few MiB. */
#define FLOW_LINK_SOFT_MIN ((size_t)(1u << 20) + 2 * PEER_PROTO_MAX_FRAME)
#define FLOW_LINK_HIGH (4u << 20)
#define FLOW_LINK_LOW (1u << 20)

enum { LIST_NONE, LIST_NOTED, LIST_PAUSED };

struct flow {
    node *n;
    struct outq_class clients, links;
    struct flow_reader *noted, *paused;
    size_t npaused[2];
    uint64_t pauses[2];         /* readers paused, ever */
    bool held_high, store_high; /* hysteresis states */
    bool queues[2];             /* the congested-queue part, as of queues_ms */
    uint64_t queues_ms;
    uv_check_t check;
    uv_timer_t tick;
};

static void list_add(struct flow_reader **head, struct flow_reader *r)
{
    r->prev = NULL;
    r->next = *head;
    if (*head)
        (*head)->prev = r;
    *head = r;
}

static void list_del(struct flow *f, struct flow_reader *r)
{
    struct flow_reader **head = r->list == LIST_NOTED ? &f->noted : &f->paused;
    if (r->next)
        r->next->prev = r->prev;
    if (r->prev)
        r->prev->next = r->next;
    else
        *head = r->next;
    r->next = r->prev = NULL;
    if (r->list == LIST_PAUSED)
        f->npaused[r->kind]--;
    r->list = LIST_NONE;
}

/* above(state, value, high, low): hysteresis. */
static bool above(bool *state, size_t v, size_t high, size_t low)
{
    if (*state ? v < low : v > high)
        *state = !*state;
    return *state;
}

static void tick_cb(uv_timer_t *t);

/* The congested-queue part of the pressure: walking the congested lists
 * is done at most once a millisecond of the loop's time (uv_now: updated
 * once per loop turn, so no clock read per message), since flow_note asks
 * per message. */
static void queue_pressure(struct flow *f, bool out[2], bool fresh)
{
    uint64_t now = uv_now(f->n->loop);
    if (fresh || now != f->queues_ms) {
        f->queues_ms = now;
        f->queues[FLOW_PEER] = outq_class_pressing(&f->clients, FLOW_STALL_MS);
        f->queues[FLOW_CLIENT] =
            f->queues[FLOW_PEER] || outq_class_pressing(&f->links, FLOW_STALL_MS);
    }
    out[FLOW_PEER] = f->queues[FLOW_PEER];
    out[FLOW_CLIENT] = f->queues[FLOW_CLIENT];
}

/* Whether readers of each kind must wait. */
static void pressure(struct flow *f, bool out[2], bool fresh)
{
    node *n = f->n;
    bool disk = n->store != NULL &&
                 above(&f->store_high, store_backlog(n->store), FLOW_STORE_HIGH, FLOW_STORE_LOW);
    bool held = above(&f->held_high, relay_held(n), FLOW_HELD_HIGH, FLOW_HELD_LOW);
    queue_pressure(f, out, fresh);
    out[FLOW_PEER] = out[FLOW_PEER] || disk;
    out[FLOW_CLIENT] = out[FLOW_CLIENT] || disk || held;
}

static void pause_reader(struct flow *f, struct flow_reader *r)
{
    if (r->list != LIST_NONE)
        list_del(f, r);
    list_add(&f->paused, r);
    r->list = LIST_PAUSED;
    f->npaused[r->kind]++;
    f->pauses[r->kind]++;
    r->set_paused(r, true);
    if (!uv_is_active((uv_handle_t *)&f->tick))
        uv_timer_start(&f->tick, tick_cb, FLOW_TICK_MS, FLOW_TICK_MS);
}

static void tick_cb(uv_timer_t *t)
{
    (void)t; /* waking the loop is its job: the check does the rest */
}

static void check_cb(uv_check_t *h)
{
    struct flow *f = h->data;
    if (f->noted == NULL && f->paused == NULL)
        return;
    bool p[2];
    pressure(f, p, true);
    while (f->noted != NULL) {
        struct flow_reader *r = f->noted;
        if (p[r->kind])
            pause_reader(f, r);
        else
            list_del(f, r);
    }
    for (struct flow_reader *r = f->paused, *next; r != NULL; r = next) {
        next = r->next;
        if (!p[r->kind]) {
            list_del(f, r);
            r->set_paused(r, false);
        }
    }
    if (f->paused == NULL)
        uv_timer_stop(&f->tick);
}

void flow_init(node *n)
{
    struct flow *f = xcalloc(1, sizeof(*f));
    const struct node_config *c = &n->cfg;
    f->n = n;
    size_t chigh = UTIL_MIN(c->max_queue / 2, (size_t)2 << 20);
    outq_class_init(&f->clients, n->loop, (struct outq_limits){
        .hard = c->max_queue_hard, .soft = c->max_queue,
        .deadline_ms = c->write_deadline_ms, .high = chigh, .low = chigh / 4,
    });
    size_t lsoft = UTIL_MAX(c->max_queue * 4, FLOW_LINK_SOFT_MIN);
    outq_class_init(&f->links, n->loop, (struct outq_limits){
        .hard = UTIL_MAX(c->max_queue_hard, 2 * lsoft), .soft = lsoft,
        .deadline_ms = c->write_deadline_ms, .high = FLOW_LINK_HIGH, .low = FLOW_LINK_LOW,
    });
    uv_check_init(n->loop, &f->check);
    uv_check_start(&f->check, check_cb);
    uv_unref((uv_handle_t *)&f->check);
    uv_timer_init(n->loop, &f->tick);
    uv_unref((uv_handle_t *)&f->tick);
    f->check.data = f->tick.data = f;
    n->flow = f;
}

struct outq_class *flow_clients_class(node *n) { return &n->flow->clients; }
struct outq_class *flow_links_class(node *n) { return &n->flow->links; }

void flow_note(node *n, struct flow_reader *r)
{
    struct flow *f = n->flow;
    if (r->list == LIST_PAUSED)
        return; /* paused, with the rest of a read still being decoded */
    bool p[2];
    pressure(f, p, false);
    if (p[r->kind]) {
        pause_reader(f, r);
    } else if (r->list == LIST_NONE) {
        list_add(&f->noted, r);
        r->list = LIST_NOTED;
    }
}

void flow_forget(node *n, struct flow_reader *r)
{
    if (n->flow != NULL && r->list != LIST_NONE)
        list_del(n->flow, r);
}

size_t flow_paused(const node *n, enum flow_kind kind)
{
    return n->flow ? n->flow->npaused[kind] : 0;
}

uint64_t flow_pauses(const node *n, enum flow_kind kind)
{
    return n->flow ? n->flow->pauses[kind] : 0;
}

void flow_free(node *n)
{
    free(n->flow);
    n->flow = NULL;
}
