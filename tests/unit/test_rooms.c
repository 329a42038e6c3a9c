/* Unit tests for node/rooms.c: members start in every chat; joining puts
 * them in rooms only; leaving, leaving everything and going back to every
 * chat; the limit on chats per member; rooms freed when empty; and a long
 * random run of joins, leaves and removals checked after every step
 * against a plain model (who is in which chat), which also exercises the
 * table's growth and its deletion without tombstones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "node/rooms.h"

static bool listed(struct rooms_member *const *v, size_t n, const struct rooms_member *m)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == m)
            return true;
    return false;
}

static bool in_chat(const rooms *rs, int64_t chat, const struct rooms_member *m)
{
    size_t n;
    struct rooms_member *const *v = rooms_members(rs, chat, &n);
    return listed(v, n, m);
}

static void test_every_then_rooms(void **state)
{
    (void)state;
    rooms *rs = rooms_new();
    struct rooms_member a, b;
    rooms_add(rs, &a);
    rooms_add(rs, &b);
    size_t n;
    struct rooms_member *const *e = rooms_every_members(rs, &n);
    assert_int_equal(n, 2);
    assert_true(listed(e, n, &a) && listed(e, n, &b));
    assert_int_equal(rooms_count(rs), 0);

    const int64_t ab[] = { 12, 11, 12, -5 };
    assert_int_equal(rooms_join(rs, &a, ab, 4, 1024), 0);
    e = rooms_every_members(rs, &n);
    assert_int_equal(n, 1);
    assert_true(listed(e, n, &b) && !listed(e, n, &a));
    assert_true(in_chat(rs, 11, &a) && in_chat(rs, 12, &a) && in_chat(rs, -5, &a));
    assert_false(in_chat(rs, 13, &a));
    assert_int_equal(rooms_count(rs), 3);
    assert_int_equal(rooms_memberships(rs), 3);
    int64_t chats[4];
    assert_int_equal(rooms_chats(&a, chats), 3);
    assert_true(chats[0] == -5 && chats[1] == 11 && chats[2] == 12);

    /* leaving one, and one it is not in */
    const int64_t drop[] = { 11, 99 };
    rooms_leave(rs, &a, drop, 2);
    assert_false(in_chat(rs, 11, &a));
    assert_int_equal(rooms_count(rs), 2); /* 11's room was freed */
    rooms_members(rs, 11, &n);
    assert_int_equal(n, 0);

    /* leaving everything: in no chat, and still not in every chat */
    const int64_t rest[] = { 12, -5 };
    rooms_leave(rs, &a, rest, 2);
    assert_int_equal(rooms_chats(&a, chats), 0);
    assert_true(a.in_rooms);
    e = rooms_every_members(rs, &n);
    assert_false(listed(e, n, &a));
    assert_int_equal(rooms_count(rs), 0);

    /* every chat again */
    assert_int_equal(rooms_join(rs, &a, ab, 1, 1024), 0);
    rooms_every(rs, &a);
    e = rooms_every_members(rs, &n);
    assert_true(listed(e, n, &a));
    assert_int_equal(rooms_count(rs), 0);
    assert_int_equal(rooms_memberships(rs), 0);

    rooms_remove(rs, &a);
    rooms_remove(rs, &b);
    rooms_remove(rs, &b); /* twice is harmless */
    rooms_every_members(rs, &n);
    assert_int_equal(n, 0);
    rooms_free(rs);
}

static void test_limit(void **state)
{
    (void)state;
    rooms *rs = rooms_new();
    struct rooms_member a;
    rooms_add(rs, &a);
    int64_t ids[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_int_equal(rooms_join(rs, &a, ids, 4, 5), 0);
    /* 3 new and one it has: 7 > 5, refused, nothing changes */
    int64_t more[4] = { 4, 5, 6, 7 };
    assert_int_equal(rooms_join(rs, &a, more, 4, 5), -1);
    int64_t chats[8];
    assert_int_equal(rooms_chats(&a, chats), 4);
    /* repeats count once */
    int64_t again[3] = { 5, 5, 1 };
    assert_int_equal(rooms_join(rs, &a, again, 3, 5), 0);
    assert_int_equal(rooms_chats(&a, chats), 5);
    rooms_remove(rs, &a);
    assert_int_equal(rooms_count(rs), 0);
    rooms_free(rs);
}

/* The model: member i is in chat c when in[i][c]; every[i] when it takes
 * every chat. Chats are 0 .. CHATS-1, with some spread far apart so that
 * probe runs wrap and cross. */
#define MEMBERS 40
#define CHATS 300

static int64_t chat_id(int c)
{
    return c % 3 == 0 ? (int64_t)c * 1000003 : c % 3 == 1 ? -c : c;
}

static void check_model(const rooms *rs, struct rooms_member *m, bool in[][CHATS],
                        const bool *every, const bool *present)
{
    size_t n, memberships = 0, nonempty = 0;
    struct rooms_member *const *e = rooms_every_members(rs, &n);
    size_t everyone = 0;
    for (int i = 0; i < MEMBERS; i++) {
        bool ev = present[i] && every[i];
        everyone += ev;
        assert_int_equal(listed(e, n, &m[i]), ev);
    }
    assert_int_equal(n, everyone);
    for (int c = 0; c < CHATS; c++) {
        size_t count = 0;
        struct rooms_member *const *v = rooms_members(rs, chat_id(c), &n);
        for (int i = 0; i < MEMBERS; i++) {
            bool want = present[i] && !every[i] && in[i][c];
            count += want;
            assert_int_equal(listed(v, n, &m[i]), want);
        }
        assert_int_equal(n, count);
        memberships += count;
        nonempty += count > 0;
    }
    assert_int_equal(rooms_memberships(rs), memberships);
    assert_int_equal(rooms_count(rs), nonempty);
}

static void test_random_against_model(void **state)
{
    (void)state;
    static bool in[MEMBERS][CHATS];
    bool every[MEMBERS], present[MEMBERS];
    struct rooms_member m[MEMBERS];
    memset(in, 0, sizeof(in));
    rooms *rs = rooms_new();
    for (int i = 0; i < MEMBERS; i++) {
        rooms_add(rs, &m[i]);
        every[i] = present[i] = true;
    }
    unsigned seed = 12345;
    for (int step = 0; step < 3000; step++) {
        int i = rand_r(&seed) % MEMBERS;
        int op = rand_r(&seed) % 10;
        if (!present[i]) {
            rooms_add(rs, &m[i]);
            present[i] = every[i] = true;
            memset(in[i], 0, sizeof(in[i]));
        } else if (op < 5) {
            int64_t ids[20];
            int k = 1 + rand_r(&seed) % 20;
            for (int j = 0; j < k; j++) {
                int c = rand_r(&seed) % CHATS;
                ids[j] = chat_id(c);
                in[i][c] = true;
            }
            assert_int_equal(rooms_join(rs, &m[i], ids, (size_t)k, CHATS), 0);
            every[i] = false;
        } else if (op < 8) {
            int64_t ids[20];
            int k = 1 + rand_r(&seed) % 20;
            for (int j = 0; j < k; j++) {
                int c = rand_r(&seed) % CHATS;
                ids[j] = chat_id(c);
                if (!every[i])
                    in[i][c] = false;
            }
            if (!every[i])
                rooms_leave(rs, &m[i], ids, (size_t)k);
        } else if (op < 9) {
            rooms_every(rs, &m[i]);
            every[i] = true;
            memset(in[i], 0, sizeof(in[i]));
        } else {
            rooms_remove(rs, &m[i]);
            present[i] = false;
        }
        check_model(rs, m, in, every, present);
    }
    for (int i = 0; i < MEMBERS; i++)
        rooms_remove(rs, &m[i]);
    assert_int_equal(rooms_count(rs), 0);
    rooms_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_then_rooms),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
