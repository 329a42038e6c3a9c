/* ledger: the load mode's exactly-once check (issue 14). Every sender
 * numbers its messages 1, 2, 3 ...; each client must receive, once and in
 * that order, every message of every sender of its room sent after it
 * joined (connected, and subscribed when rooms are used). When client c
 * joins, the ledger notes k = how many messages each sender of c's room has
 * sent so far. A message <= k was in flight and may arrive, but the first
 * one that does fixes where c's stream of that sender begins: the node
 * delivers each origin's messages in order to the clients it has, so every
 * later message must follow, once each, without a gap.
 *
 * Memory: one uint32 per (client, sender of the client's room) pair, the
 * next sequence number the client expects of that sender (its top bit: no
 * message of it received since the join), so clients x senders x 4 bytes
 * without rooms (2000 x 2000: 16 MB), and the sum over rooms of members x
 * senders x 4 with them; ledger_pairs() gives the count before anything is
 * allocated, so the caller can refuse what would not fit. Nothing is kept
 * per message.
 *
 * A sender whose connection drops leaves a window of messages it sent and
 * never saw come back: the node may have read some of them (a prefix: it
 * reads in order) and not the rest, which it never accepted and owes no
 * one. Those of the window that no client received are counted as
 * unaccepted, not lost; those that some client received, and another did
 * not, are lost. */
#ifndef DCHAT_BENCH_LEDGER_H
#define DCHAT_BENCH_LEDGER_H

#include <stdint.h>

/* Sequence numbers stay below this (the top bit is the "fresh" flag). */
#define LEDGER_SEQ_MAX 0x7fffffffu
/* How many missed messages are kept by name for the error message. */
#define LEDGER_MISSES_KEPT 5

typedef struct ledger ledger;

/* Who is where: clients 0..clients-1 each in a room 0..rooms-1 (one room
 * for "all chats"), and senders 0..senders-1, each one of the clients. The
 * arrays are copied. */
struct ledger_layout {
    unsigned clients, senders, rooms;
    const unsigned *client_room;    /* [clients] */
    const unsigned *sender_client;  /* [senders] */
};

enum ledger_verdict {
    LEDGER_OK,         /* the next one expected */
    LEDGER_IN_FLIGHT,  /* the first since the join, sent before it: accepted */
    LEDGER_GAP,        /* accepted, but messages before it (sent after the
                          client's stream of that sender began) never came */
    LEDGER_DUP,        /* the one just received, again */
    LEDGER_REORDERED,  /* older than one already received */
    LEDGER_STRAY,      /* not for this client: another room's, an unknown
                          sender, or a number never sent */
    LEDGER_NOT_JOINED, /* the client has not joined (yet, or since a drop): ignored */
};

struct ledger_counts {
    uint64_t accepted;   /* OK, IN_FLIGHT and GAP verdicts */
    uint64_t lost;       /* messages that never came (the gaps; the tails too
                            after ledger_finish) */
    uint64_t dups, reordered, strays;
    uint64_t unaccepted; /* deliveries not owed: their message went out on a
                            sender's connection that dropped, and no client
                            got it (after ledger_finish) */
};

/* A missed message, by name. */
struct ledger_miss {
    unsigned client, sender;
    uint32_t seq;
};

/* The (client, sender) pairs the layout needs: the ledger's size is about
 * 4 bytes each. */
uint64_t ledger_pairs(const struct ledger_layout *lay);

/* A ledger for lay (checked by the caller: rooms >= 1, every index in
 * range). Owned by the caller; ledger_free. */
ledger *ledger_new(const struct ledger_layout *lay);
void ledger_free(ledger *l);

/* Sender s sends its next message: returns its sequence number (1, 2 ...),
 * or 0 when s has sent LEDGER_SEQ_MAX already. */
uint32_t ledger_send(ledger *l, unsigned s);
/* How many messages s has sent. */
uint32_t ledger_sent(const ledger *l, unsigned s);

/* Client c joined: its stream of each sender of its room starts after what
 * that sender has sent so far. Also after a reconnect. */
void ledger_join(ledger *l, unsigned c);
/* Client c's connection is gone: what it receives is ignored until it
 * joins again, and what it missed meanwhile is not held against it. When
 * c is a sender, what it sent since the last of its own messages it
 * received becomes a window that the node may not have accepted. */
void ledger_leave(ledger *l, unsigned c);
int ledger_joined(const ledger *l, unsigned c);

/* Client c received message seq of sender s. */
enum ledger_verdict ledger_receive(ledger *l, unsigned c, unsigned s, uint32_t seq);

/* How many messages the joined clients are still owed now (sent, and not
 * yet received or skipped by a gap): 0 once every delivery has drained.
 * Walks every pair: call it now and then, not per message. */
uint64_t ledger_owed(const ledger *l);

/* The end of the run, once deliveries have drained: every message a joined
 * client still expects and that was sent counts as lost. Call once. */
void ledger_finish(ledger *l);

void ledger_counts(const ledger *l, struct ledger_counts *out);

/* The first missed messages (at most LEDGER_MISSES_KEPT), in the order they
 * were found; returns how many. */
unsigned ledger_misses(const ledger *l, const struct ledger_miss **out);

#endif
