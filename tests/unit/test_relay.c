/* Tests node/relay.c's numbering of the node's own messages over a real
 * store (in a temporary dir), with sinks that record what goes out: a node
 * started with the id of an earlier run numbers nothing until the mesh
 * heard its peers (a new node at once); a peer's marks above the history
 * hold numbering back until its own messages, sent back by peers, fill the
 * history up to them, and numbering then goes on after them; numbers given
 * before such marks came are counted as conflicts, once each; and a peer's
 * message of our own origin is taken like any other: the next one only;
 * a row backfilled below our low-water mark is stored, not delivered. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "node/node.h"
#include "node/peer_proto.h"
#include "node/relay.h"
#include "node/store.h"

struct fixture {
    uv_loop_t loop;
    char dir[64];
    node n;
    size_t to_peers;         /* frames handed to the peer sink */
    uint64_t last_peer_seq;  /* the seq of the latest */
    size_t to_clients;       /* frames handed to the client sink */
    size_t to_clients_now;   /* of them, as a whole burst (to write at once) */
    size_t client_calls;     /* calls of the client sink */
    int closed;
};

static void sink_clients(msgbuf *const *frames, const int64_t *chats, size_t k, bool now,
                         size_t *to, void *ud)
{
    struct fixture *f = ud;
    for (size_t i = 0; i < k; i++)
        to[i] = 1;
    f->to_clients += k;
    f->to_clients_now += now ? k : 0;
    f->client_calls++;
}

static size_t sink_peers(msgbuf *frame, uint32_t origin, uint64_t seq, void *ud)
{
    struct fixture *f = ud;
    assert_int_equal(origin, f->n.id); /* live, only our own */
    assert_true(seq > f->last_peer_seq);
    f->last_peer_seq = seq;
    f->to_peers++;
    return 1;
}

/* A relay on an empty history, for a node whose id is `loaded` at start
 * (from node.json; 0: a new node, registered later). */
static struct fixture *start(uint32_t loaded)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    uv_loop_init(&f->loop);
    strcpy(f->dir, "/tmp/dchat-test-relay-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    node *n = &f->n;
    n->loop = &f->loop;
    n->id = loaded;
    n->cfg.max_message = 64 * 1024;
    n->cfg.max_queue = 4 * 1024 * 1024;
    char err[256];
    n->store = store_open(&f->loop, f->dir, STORE_FSYNC_BATCH, relay_on_commit, n, err,
                          sizeof(err));
    if (n->store == NULL)
        fail_msg("store_open: %s", err);
    struct relay_sinks sinks = { .to_clients = sink_clients, .to_peers = sink_peers, .ud = f };
    relay_init(n, &sinks);
    return f;
}

static void on_closed(void *ud)
{
    ((struct fixture *)ud)->closed = 1;
}

static void stop(struct fixture *f)
{
    store_close(f->n.store, on_closed, f);
    while (!f->closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    f->n.store = NULL;
    relay_free(&f->n);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

static struct chat_message message(uint32_t origin, uint64_t seq)
{
    static const char text[] = "hello";
    return (struct chat_message){ .origin = origin, .seq = seq, .time_ms = 1700000000000ull,
                                  .chat_id = 11, .sender = "s", .sender_len = 1,
                                  .text = text, .text_len = sizeof(text) - 1 };
}

/* A client's message: its number, or 0 when refused. Once taken, it goes
 * out to the peers when its batch commits. */
static uint64_t client_sends(struct fixture *f)
{
    struct chat_message m = message(0, 0);
    size_t before = f->to_peers;
    if (relay_local(&f->n, &m, util_now_ns()) != 0)
        return 0;
    while (f->to_peers == before)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->last_peer_seq, m.seq);
    return m.seq;
}

static enum relay_own_state own_state(struct fixture *f, uint64_t *behind)
{
    struct relay_own own;
    relay_own(&f->n, &own);
    if (behind != NULL)
        *behind = own.behind;
    return own.state;
}

static void test_a_restarted_node_waits_for_its_peers(void **state)
{
    (void)state;
    struct fixture *f = start(7);
    assert_int_equal(own_state(f, NULL), RELAY_OWN_WAITING);
    assert_int_equal(client_sends(f), 0);
    assert_int_equal(f->to_peers, 0);
    /* Marks at or below our history's highest (here: none) change nothing. */
    relay_own_marked(&f->n, 2, 0);
    relay_own_heard(&f->n);
    assert_int_equal(own_state(f, NULL), RELAY_OWN_OPEN);
    assert_int_equal(client_sends(f), 1);
    assert_int_equal(client_sends(f), 2);
    relay_own_marked(&f->n, 2, 2);      /* a peer has what we sent: normal */
    assert_int_equal(own_state(f, NULL), RELAY_OWN_OPEN);
    stop(f);

    /* A new node (no node.json) gets a new id in this run: nobody can hold
     * numbers of it, so it does not wait. */
    f = start(0);
    f->n.id = 9;
    assert_int_equal(own_state(f, NULL), RELAY_OWN_OPEN);
    assert_int_equal(client_sends(f), 1);
    stop(f);
}

/* A client's message is stamped with the wall clock of the read that
 * brought it: those of one read alike, never going backwards. */
static void test_messages_of_one_read_share_its_time(void **state)
{
    (void)state;
    struct fixture *f = start(0);
    f->n.id = 9;
    uint64_t w0 = util_wall_ms();
    uint64_t read_ns = util_now_ns();
    struct chat_message a = message(0, 0), b = message(0, 0), c = message(0, 0);
    assert_int_equal(relay_local(&f->n, &a, read_ns), 0);
    assert_int_equal(relay_local(&f->n, &b, read_ns), 0);
    assert_true(a.time_ms >= w0 && a.time_ms <= util_wall_ms());
    assert_true(b.time_ms == a.time_ms);
    assert_int_equal(b.seq, a.seq + 1);
    assert_int_equal(relay_local(&f->n, &c, util_now_ns()), 0);
    assert_true(c.time_ms >= a.time_ms && c.time_ms <= util_wall_ms());
    while (f->last_peer_seq != c.seq)
        uv_run(&f->loop, UV_RUN_ONCE);
    stop(f);
}

static void test_behind_until_the_peers_sent_ours_back(void **state)
{
    (void)state;
    struct fixture *f = start(7);
    relay_own_heard(&f->n);
    uint64_t behind;
    relay_own_marked(&f->n, 2, 3);      /* a peer holds 1..3 of ours */
    assert_int_equal(own_state(f, &behind), RELAY_OWN_BEHIND);
    assert_int_equal(behind, 3);
    assert_int_equal(client_sends(f), 0);

    /* Ours, back from a peer: the next one only, delivered to our clients. */
    struct chat_message m2 = message(7, 2), m1 = message(7, 1), m3 = message(7, 3);
    assert_int_equal(relay_remote(&f->n, &m2, PEER_MSG_REPAIR, util_now_ns()), RELAY_GAP);
    assert_int_equal(relay_remote(&f->n, &m1, PEER_MSG_REPAIR, util_now_ns()), RELAY_NEW);
    assert_int_equal(relay_remote(&f->n, &m1, PEER_MSG_REPAIR, util_now_ns()), RELAY_DUP);
    relay_remote_flush(&f->n); /* the end of the read */
    assert_int_equal(f->to_clients, 1);
    assert_int_equal(own_state(f, &behind), RELAY_OWN_BEHIND);
    assert_int_equal(behind, 2);
    assert_int_equal(relay_remote(&f->n, &m2, PEER_MSG_REPAIR, util_now_ns()), RELAY_NEW);
    assert_int_equal(relay_remote(&f->n, &m3, PEER_MSG_REPAIR, util_now_ns()), RELAY_NEW);
    relay_remote_flush(&f->n);
    assert_int_equal(own_state(f, &behind), RELAY_OWN_OPEN);
    assert_int_equal(behind, 0);
    assert_int_equal(f->to_clients, 3);
    /* A peer's messages come one by one: queued to go out together at
     * the end of the turn, never written one by one. */
    assert_int_equal(f->to_clients_now, 0);
    assert_int_equal(client_sends(f), 4);   /* after them, not 1 */
    /* Ours are released as a committed burst: written at once. */
    assert_int_equal(f->to_clients, 4);
    assert_int_equal(f->to_clients_now, 1);

    /* Numbering started: one more back from a peer goes on after it. */
    struct chat_message m5 = message(7, 5);
    assert_int_equal(relay_remote(&f->n, &m5, PEER_MSG_REPAIR, util_now_ns()), RELAY_NEW);
    assert_int_equal(client_sends(f), 6);
    struct relay_own own;
    relay_own(&f->n, &own);
    assert_int_equal(own.conflicts, 0);
    assert_int_equal(own.highest, 6);
    stop(f);
}

/* A peer's messages of one read go to the clients together, in order, when
 * the read ends (one frame per socket to queue, not one per message); a
 * message of another read sends those of the last first. */
static void test_a_reads_messages_go_to_clients_together(void **state)
{
    (void)state;
    struct fixture *f = start(7);
    uint64_t read1 = util_now_ns(), read2 = read1 + 1;
    for (uint64_t q = 1; q <= 3; q++) {
        struct chat_message m = message(3, q);
        assert_int_equal(relay_remote(&f->n, &m, 0, read1), RELAY_NEW);
    }
    assert_int_equal(f->to_clients, 0);
    relay_remote_flush(&f->n);
    assert_int_equal(f->to_clients, 3);
    assert_int_equal(f->client_calls, 1);
    assert_int_equal(f->to_clients_now, 0); /* more may come on the turn */
    relay_remote_flush(&f->n);              /* nothing left: no call */
    assert_int_equal(f->client_calls, 1);

    struct chat_message m4 = message(3, 4), m5 = message(3, 5), m6 = message(4, 1);
    assert_int_equal(relay_remote(&f->n, &m4, 0, read1), RELAY_NEW);
    assert_int_equal(relay_remote(&f->n, &m5, 0, read2), RELAY_NEW);
    assert_int_equal(f->to_clients, 4); /* m4 went when m5's read began */
    assert_int_equal(relay_remote(&f->n, &m6, 0, read2), RELAY_NEW);
    relay_remote_flush(&f->n);
    assert_int_equal(f->to_clients, 6);
    assert_int_equal(f->client_calls, 3);
    assert_int_equal(relay_counters(&f->n)->client_frames_out, 6);
    stop(f);
}

/* A peer's backfill of a row below our low-water mark (we skipped past
 * it): stored once, counted, delivered to no client, no mark moved; the
 * flag on a row above our mark changes nothing (the gap test holds); a
 * repair without the flag below the mark is a duplicate, as before. */
static void test_backfill_below_the_mark_is_stored_not_delivered(void **state)
{
    (void)state;
    struct fixture *f = start(7);
    store_skip(f->n.store, 3, 100);
    struct chat_message q = message(3, 4), above = message(3, 102), plain = message(3, 5);
    const uint16_t back = PEER_MSG_REPAIR | PEER_MSG_BACKFILL;
    assert_int_equal(relay_remote(&f->n, &plain, PEER_MSG_REPAIR, util_now_ns()), RELAY_DUP);
    assert_int_equal(relay_remote(&f->n, &q, back, util_now_ns()), RELAY_NEW);
    assert_int_equal(relay_remote(&f->n, &q, back, util_now_ns()), RELAY_DUP);
    assert_int_equal(relay_remote(&f->n, &above, back, util_now_ns()), RELAY_GAP);
    assert_int_equal(f->to_clients, 0);
    assert_int_equal(store_highest(f->n.store, 3), 100);
    assert_int_equal(store_trimmed(f->n.store, 3), 100);
    const struct relay_counters *c = relay_counters(&f->n);
    assert_int_equal(c->backfilled, 1);
    assert_int_equal(c->repaired, 1);
    assert_int_equal(c->dropped_dup, 2);
    assert_int_equal(c->dropped_gap, 1);
    while (store_busy(f->n.store))
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(relay_remote(&f->n, &q, back, util_now_ns()), RELAY_DUP); /* committed */
    struct store_rows rows = { 0 };
    assert_int_equal(store_read(f->n.store, 3, 0, 100, 10, &rows), 0);
    assert_int_equal(rows.n, 1);
    assert_int_equal(rows.msgs[0].seq, 4);
    store_rows_free(&rows);
    stop(f);
}

static void test_numbers_given_before_the_marks_came_are_conflicts(void **state)
{
    (void)state;
    /* The node gave up waiting (an unreachable peer) and numbered 1 and 2;
     * then a peer says it holds 1..5 of ours: 1 and 2 name other messages
     * there. */
    struct fixture *f = start(7);
    relay_own_heard(&f->n);
    assert_int_equal(client_sends(f), 1);
    assert_int_equal(client_sends(f), 2);
    relay_own_marked(&f->n, 3, 5);
    struct relay_own own;
    relay_own(&f->n, &own);
    assert_int_equal(own.conflicts, 2);
    assert_int_equal(own.state, RELAY_OWN_BEHIND);
    assert_int_equal(own.peers_highest, 5);
    assert_int_equal(own.behind, 3);
    relay_own_marked(&f->n, 3, 5);      /* again, or from another peer: once */
    relay_own_marked(&f->n, 4, 4);
    relay_own(&f->n, &own);
    assert_int_equal(own.conflicts, 2);

    /* Ours that we numbered are never taken from a peer; the rest is. */
    struct chat_message m2 = message(7, 2);
    assert_int_equal(relay_remote(&f->n, &m2, PEER_MSG_REPAIR, util_now_ns()), RELAY_DUP);
    for (uint64_t q = 3; q <= 5; q++) {
        struct chat_message m = message(7, q);
        assert_int_equal(relay_remote(&f->n, &m, PEER_MSG_REPAIR, util_now_ns()), RELAY_NEW);
    }
    assert_int_equal(own_state(f, NULL), RELAY_OWN_OPEN);
    assert_int_equal(client_sends(f), 6);
    stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_restarted_node_waits_for_its_peers),
        cmocka_unit_test(test_behind_until_the_peers_sent_ours_back),
        cmocka_unit_test(test_messages_of_one_read_share_its_time),
        cmocka_unit_test(test_a_reads_messages_go_to_clients_together),
        cmocka_unit_test(test_numbers_given_before_the_marks_came_are_conflicts),
        cmocka_unit_test(test_backfill_below_the_mark_is_stored_not_delivered),
    };
    return cmocka_run_group_tests_name("relay", tests, NULL, NULL);
}
