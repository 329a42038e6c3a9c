/* Unit tests for bench/ledger.c, the load mode's exactly-once check: a
 * clean run counts nothing; losses in the middle and at the end are counted
 * and named; duplicates and reorders are told apart; a client that joins
 * late owes nothing sent before it joined, but may get messages that were
 * in flight, once and in order; rooms keep each client to its room's
 * senders (another room's message is a stray) and size the ledger; a
 * client that leaves and rejoins starts afresh; a sender that drops leaves
 * a window of messages the node may not have accepted: those no client got
 * are not owed, one that some client got and another did not is lost. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "bench/ledger.h"

/* 3 clients in one room; clients 0 and 2 send (senders 0 and 1). */
static const unsigned one_room[3] = { 0, 0, 0 };
static const unsigned senders_02[2] = { 0, 2 };

static ledger *three_clients(void)
{
    struct ledger_layout lay = { .clients = 3, .senders = 2, .rooms = 1,
                                 .client_room = one_room, .sender_client = senders_02 };
    assert_int_equal(ledger_pairs(&lay), 6);
    return ledger_new(&lay);
}

static void test_clean_run_counts_nothing(void **state)
{
    (void)state;
    ledger *l = three_clients();
    for (unsigned c = 0; c < 3; c++)
        ledger_join(l, c);
    for (uint32_t i = 1; i <= 100; i++)
        for (unsigned s = 0; s < 2; s++) {
            assert_int_equal(ledger_send(l, s), i);
            for (unsigned c = 0; c < 3; c++)
                assert_int_equal(ledger_receive(l, c, s, i), LEDGER_OK);
        }
    ledger_finish(l);
    struct ledger_counts k;
    ledger_counts(l, &k);
    assert_int_equal(k.accepted, 600);
    assert_int_equal(k.lost + k.dups + k.reordered + k.strays, 0);
    const struct ledger_miss *m;
    assert_int_equal(ledger_misses(l, &m), 0);
    ledger_free(l);
}

static void test_losses_duplicates_reorders(void **state)
{
    (void)state;
    ledger *l = three_clients();
    for (unsigned c = 0; c < 3; c++)
        ledger_join(l, c);
    for (int i = 0; i < 10; i++)
        ledger_send(l, 1);
    /* client 1: 1 2 2 (dup) 5 (3 and 4 lost) 4 (reordered) 6 7, then nothing */
    assert_int_equal(ledger_receive(l, 1, 1, 1), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 1, 1, 2), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 1, 1, 2), LEDGER_DUP);
    assert_int_equal(ledger_receive(l, 1, 1, 5), LEDGER_GAP);
    assert_int_equal(ledger_receive(l, 1, 1, 4), LEDGER_REORDERED);
    assert_int_equal(ledger_receive(l, 1, 1, 6), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 1, 1, 7), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 1, 1, 1), LEDGER_REORDERED);
    /* clients 0 and 2 get all ten */
    for (uint32_t i = 1; i <= 10; i++) {
        assert_int_equal(ledger_receive(l, 0, 1, i), LEDGER_OK);
        assert_int_equal(ledger_receive(l, 2, 1, i), LEDGER_OK);
    }
    struct ledger_counts k;
    ledger_counts(l, &k);
    assert_int_equal(k.lost, 2);       /* the gap so far */
    assert_int_equal(ledger_owed(l), 3 + 0 + 0); /* client 1 waits for 8, 9, 10 */
    ledger_finish(l);
    ledger_counts(l, &k);
    assert_int_equal(k.lost, 2 + 3);   /* and 8, 9, 10 */
    assert_int_equal(k.dups, 1);
    assert_int_equal(k.reordered, 2);
    assert_int_equal(k.strays, 0);
    const struct ledger_miss *m;
    assert_int_equal(ledger_misses(l, &m), 2);
    assert_int_equal(m[0].client, 1);
    assert_int_equal(m[0].sender, 1);
    assert_int_equal(m[0].seq, 3);
    assert_int_equal(m[1].seq, 8);
    ledger_free(l);
}

static void test_late_joiner(void **state)
{
    (void)state;
    ledger *l = three_clients();
    ledger_join(l, 0);
    for (int i = 0; i < 5; i++)
        ledger_send(l, 0);
    /* a message to a client that has not joined is ignored */
    assert_int_equal(ledger_receive(l, 1, 0, 1), LEDGER_NOT_JOINED);
    ledger_join(l, 1);         /* k = 5 for sender 0, 0 for sender 1 */
    ledger_join(l, 2);
    assert_int_equal(ledger_owed(l), 5);  /* client 0's; the others owe nothing yet */
    for (int i = 0; i < 3; i++)
        ledger_send(l, 0);     /* 6, 7, 8 */
    /* client 1 gets 4 and 5 (in flight), then 6 7 8: fine */
    assert_int_equal(ledger_receive(l, 1, 0, 4), LEDGER_IN_FLIGHT);
    assert_int_equal(ledger_receive(l, 1, 0, 5), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 1, 0, 5), LEDGER_DUP);
    for (uint32_t i = 6; i <= 8; i++)
        assert_int_equal(ledger_receive(l, 1, 0, i), LEDGER_OK);
    /* client 2 gets only 6 and 8: 7 is owed, 1..5 are not */
    assert_int_equal(ledger_receive(l, 2, 0, 6), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 2, 0, 8), LEDGER_GAP);
    /* client 0 (joined first) gets 1..8 */
    for (uint32_t i = 1; i <= 8; i++)
        assert_int_equal(ledger_receive(l, 0, 0, i), LEDGER_OK);
    ledger_finish(l);
    struct ledger_counts k;
    ledger_counts(l, &k);
    assert_int_equal(k.lost, 1);
    assert_int_equal(k.dups, 1);
    assert_int_equal(k.reordered, 0);
    const struct ledger_miss *m;
    assert_int_equal(ledger_misses(l, &m), 1);
    assert_int_equal(m[0].client, 2);
    assert_int_equal(m[0].sender, 0);
    assert_int_equal(m[0].seq, 7);
    ledger_free(l);
}

/* A late joiner that receives nothing of a sender owes all it sent after
 * the join, and nothing before. */
static void test_late_joiner_silent_owes_the_tail(void **state)
{
    (void)state;
    ledger *l = three_clients();
    for (int i = 0; i < 4; i++)
        ledger_send(l, 1);
    ledger_join(l, 0);
    ledger_send(l, 1);         /* 5 */
    ledger_send(l, 1);         /* 6 */
    ledger_finish(l);
    struct ledger_counts k;
    ledger_counts(l, &k);
    assert_int_equal(k.lost, 2);
    const struct ledger_miss *m;
    assert_int_equal(ledger_misses(l, &m), 1);
    assert_int_equal(m[0].seq, 5);
    ledger_free(l);
}

static void test_rooms(void **state)
{
    (void)state;
    /* 6 clients in rooms i % 3; senders are clients 0, 1 and 3 (rooms 0, 1, 0) */
    const unsigned room[6] = { 0, 1, 2, 0, 1, 2 };
    const unsigned snd[3] = { 0, 1, 3 };
    struct ledger_layout lay = { .clients = 6, .senders = 3, .rooms = 3,
                                 .client_room = room, .sender_client = snd };
    /* room 0: 2 members x 2 senders, room 1: 2 x 1, room 2: 2 x 0 */
    assert_int_equal(ledger_pairs(&lay), 6);
    ledger *l = ledger_new(&lay);
    for (unsigned c = 0; c < 6; c++)
        ledger_join(l, c);
    for (unsigned s = 0; s < 3; s++)
        ledger_send(l, s);
    assert_int_equal(ledger_receive(l, 0, 0, 1), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 0, 2, 1), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 3, 2, 1), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 3, 0, 1), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 1, 1, 1), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 4, 1, 1), LEDGER_OK);
    /* another room's message, an unknown sender, a number never sent */
    assert_int_equal(ledger_receive(l, 2, 0, 1), LEDGER_STRAY);
    assert_int_equal(ledger_receive(l, 0, 1, 1), LEDGER_STRAY);
    assert_int_equal(ledger_receive(l, 0, 7, 1), LEDGER_STRAY);
    assert_int_equal(ledger_receive(l, 0, 0, 2), LEDGER_STRAY);
    ledger_finish(l);
    struct ledger_counts k;
    ledger_counts(l, &k);
    assert_int_equal(k.accepted, 6);
    assert_int_equal(k.lost, 0);
    assert_int_equal(k.strays, 4);
    ledger_free(l);
}

static void test_leave_and_rejoin(void **state)
{
    (void)state;
    ledger *l = three_clients();
    ledger_join(l, 1);
    ledger_send(l, 0);
    assert_int_equal(ledger_receive(l, 1, 0, 1), LEDGER_OK);
    ledger_send(l, 0);         /* 2: missed while the connection was down */
    ledger_leave(l, 1);
    assert_false(ledger_joined(l, 1));
    ledger_send(l, 0);         /* 3 */
    assert_int_equal(ledger_receive(l, 1, 0, 3), LEDGER_NOT_JOINED);
    ledger_join(l, 1);
    ledger_send(l, 0);         /* 4: owed */
    assert_int_equal(ledger_receive(l, 1, 0, 4), LEDGER_OK);
    ledger_send(l, 0);         /* 5: owed, never comes */
    ledger_finish(l);
    struct ledger_counts k;
    ledger_counts(l, &k);
    assert_int_equal(k.lost, 1);
    const struct ledger_miss *m;
    assert_int_equal(ledger_misses(l, &m), 1);
    assert_int_equal(m[0].seq, 5);
    ledger_free(l);
}

/* Sender 0 is client 0; it sends 1..6, sees its own 1..2 come back, then
 * its connection drops: 3..6 are a window. Client 1 gets 1..4 (so the node
 * accepted 3 and 4), client 2 gets 1..3 and misses 4. 5 and 6 reached no
 * one: the node never read them. Sender 0 rejoins and sends 7, which all
 * get: client 1 and 2 jump over the window without a loss of their own
 * there, but client 2's missing 4 is a loss. */
static void test_dropped_sender_window(void **state)
{
    (void)state;
    ledger *l = three_clients();
    for (unsigned c = 0; c < 3; c++)
        ledger_join(l, c);
    for (uint32_t i = 1; i <= 6; i++)
        ledger_send(l, 0);
    for (uint32_t i = 1; i <= 2; i++)
        assert_int_equal(ledger_receive(l, 0, 0, i), LEDGER_OK);
    ledger_leave(l, 0); /* the window: 3..6 */
    for (uint32_t i = 1; i <= 4; i++)
        assert_int_equal(ledger_receive(l, 1, 0, i), LEDGER_OK);
    for (uint32_t i = 1; i <= 3; i++)
        assert_int_equal(ledger_receive(l, 2, 0, i), LEDGER_OK);
    /* while it is away, 5 and 6 are not owed (no one got them), 4 is, to 2 */
    assert_int_equal(ledger_owed(l), 1);
    ledger_join(l, 0);
    assert_int_equal(ledger_send(l, 0), 7);
    assert_int_equal(ledger_receive(l, 0, 0, 7), LEDGER_OK);
    assert_int_equal(ledger_receive(l, 1, 0, 7), LEDGER_GAP);
    assert_int_equal(ledger_receive(l, 2, 0, 7), LEDGER_GAP);
    ledger_finish(l);
    struct ledger_counts k;
    ledger_counts(l, &k);
    assert_int_equal(k.lost, 1);        /* client 2's 4 */
    assert_int_equal(k.unaccepted, 4);  /* 5 and 6, for clients 1 and 2 */
    const struct ledger_miss *m;
    assert_int_equal(ledger_misses(l, &m), 1);
    assert_true(m[0].client == 2 && m[0].sender == 0 && m[0].seq == 4);
    ledger_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_run_counts_nothing),
        cmocka_unit_test(test_losses_duplicates_reorders),
        cmocka_unit_test(test_late_joiner),
        cmocka_unit_test(test_late_joiner_silent_owes_the_tail),
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_leave_and_rejoin),
        cmocka_unit_test(test_dropped_sender_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
