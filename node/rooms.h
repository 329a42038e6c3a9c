/* rooms: which clients of this node are in which chat, so that a message
 * of a chat goes to that chat's members and to the clients that take every
 * chat, at a cost in proportion to them and not to all clients. A member
 * starts in every chat (what DSatter clients expect: they never join one);
 * its first join puts it in rooms instead, until it asks for every chat
 * again. Each room is a dense array of members, each member an array of
 * seats (its rooms), and each side knows the other's index, so joining and
 * leaving are O(1) swaps; rooms are found by chatId in an open-addressing
 * table and freed when their last member leaves. Owned by clients.c. */
#ifndef DCHAT_ROOMS_H
#define DCHAT_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rooms rooms;

struct room_seat;

/* Embedded in the member (a client); zero it before the first call. */
struct rooms_member {
    struct room_seat *seats;  /* the rooms it is in, in no order */
    uint32_t nseats, capseats;
    uint32_t every_index;     /* its place among the every-chat members */
    bool in_rooms;            /* false: it takes every chat */
    bool listed;              /* added (rooms_add) and not yet removed */
};

rooms *rooms_new(void);
void rooms_free(rooms *rs);

/* A new member, taking every chat; rooms_remove before it is freed. */
void rooms_add(rooms *rs, struct rooms_member *m);
void rooms_remove(rooms *rs, struct rooms_member *m);

/* Puts m in the chats (n of them, in any order, repeats allowed); the
 * first join of a member that took every chat makes it take only its
 * rooms. Fails (-1, nothing changed) when m would be in more than max
 * chats. Returns 0. */
int rooms_join(rooms *rs, struct rooms_member *m, const int64_t *chats, size_t n, size_t max);

/* Takes m out of those of the chats it is in (the others are ignored). */
void rooms_leave(rooms *rs, struct rooms_member *m, const int64_t *chats, size_t n);

/* Takes m out of every room: it takes every chat again. */
void rooms_every(rooms *rs, struct rooms_member *m);

/* The chats m is in, sorted ascending, into out (room for m->nseats);
 * returns how many. */
size_t rooms_chats(const struct rooms_member *m, int64_t *out);

/* The members taking every chat, and those in chat's room (none: n 0).
 * Valid until the next change. */
struct rooms_member *const *rooms_every_members(const rooms *rs, size_t *n);
struct rooms_member *const *rooms_members(const rooms *rs, int64_t chat, size_t *n);

/* Rooms with at least one member, and memberships over all of them. */
size_t rooms_count(const rooms *rs);
size_t rooms_memberships(const rooms *rs);

#endif
