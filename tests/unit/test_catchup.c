/* Tests node/catchup.c: the merge of a peer's MARKS with this node's
 * origins (disjoint, equal, the peer ahead or behind, either side empty,
 * 20,000 origins), the cursors it produces in ascending origin order, how
 * they are served and dropped, and what queued frames count for: never
 * sent again, but only once the peer will accept them; a refused-flagged
 * MARKS starts over; origins the peer gets directly are not sent; the
 * peer's own origin is sent back when it marks less of it than we hold;
 * a skip to our low-water mark leaves a backfill range, served once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "node/catchup.h"
#include "node/peer_proto.h"
#include "node/store.h"

/* --- helpers ---------------------------------------------------------------- */

struct mark {
    uint32_t origin;
    uint64_t seq;
};

/* A decoded MARKS frame over raw entries, as the decoder hands it out. */
struct marks_frame {
    struct peer_frame f;
    char *raw;
};

static void marks_frame_init(struct marks_frame *m, const struct mark *e, size_t n)
{
    memset(m, 0, sizeof(*m));
    m->raw = malloc(n * 12 + 1);
    assert_non_null(m->raw);
    for (size_t i = 0; i < n; i++) {
        char *p = m->raw + i * 12;
        for (int b = 0; b < 4; b++)
            p[b] = (char)(e[i].origin >> (24 - 8 * b));
        for (int b = 0; b < 8; b++)
            p[4 + b] = (char)(e[i].seq >> (56 - 8 * b));
    }
    m->f.type = PEER_MARKS;
    m->f.origin = 99;
    m->f.marks = m->raw;
    m->f.nmarks = (uint32_t)n;
    m->f.mark_size = 12;
}

static void marks_frame_free(struct marks_frame *m)
{
    free(m->raw);
}

/* Our origins, as store_origins() gives them. */
static struct store_origin *ours_of(const struct mark *e, size_t n)
{
    struct store_origin *o = calloc(n + 1, sizeof(*o));
    assert_non_null(o);
    for (size_t i = 0; i < n; i++) {
        o[i].origin = e[i].origin;
        o[i].highest = e[i].seq;
        o[i].count = e[i].seq;
    }
    return o;
}

/* Merges, then serves every cursor: they must be exactly want[0..nwant). */
static void check_merge(const struct mark *ours, size_t nours, const struct mark *theirs,
                        size_t ntheirs, const struct mark *want, size_t nwant)
{
    struct marks_frame m;
    marks_frame_init(&m, theirs, ntheirs);
    struct store_origin *o = ours_of(ours, nours);
    catchup *c = catchup_new();
    assert_int_equal(catchup_marks(c, &m.f, o, nours), nwant);
    assert_int_equal(catchup_pending(c), nwant);
    for (size_t i = 0; i < nwant; i++) {
        uint32_t origin;
        uint64_t after;
        assert_true(catchup_next(c, &origin, &after));
        assert_int_equal(origin, want[i].origin);
        assert_int_equal(after, want[i].seq);
        catchup_done(c);
    }
    uint32_t origin;
    uint64_t after;
    assert_false(catchup_next(c, &origin, &after));
    assert_int_equal(catchup_pending(c), 0);
    catchup_free(c);
    free(o);
    marks_frame_free(&m);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* --- the merge -------------------------------------------------------------- */

static void test_disjoint_origins(void **state)
{
    (void)state;
    /* The peer lacks all of ours; ours lack all of its (nothing to send). */
    const struct mark ours[] = { { 2, 5 }, { 4, 1 }, { 9, 3 } };
    const struct mark theirs[] = { { 1, 7 }, { 3, 2 }, { 5, 8 }, { 10, 1 } };
    const struct mark want[] = { { 2, 0 }, { 4, 0 }, { 9, 0 } };
    check_merge(ours, N(ours), theirs, N(theirs), want, N(want));
}

static void test_equal_marks(void **state)
{
    (void)state;
    const struct mark both[] = { { 1, 5 }, { 2, 7 }, { 300, 1 }, { 2147483647u, 999999999999ull } };
    check_merge(both, N(both), both, N(both), NULL, 0);
}

static void test_peer_ahead(void **state)
{
    (void)state;
    /* It has more of everything, and origins we lack: nothing to send. */
    const struct mark ours[] = { { 1, 5 }, { 3, 7 } };
    const struct mark theirs[] = { { 1, 6 }, { 2, 1 }, { 3, 70 }, { 4, 4 } };
    check_merge(ours, N(ours), theirs, N(theirs), NULL, 0);
}

static void test_peer_behind(void **state)
{
    (void)state;
    /* Behind on some, even on others, missing one: cursors from its marks,
     * in ascending origin order. */
    const struct mark ours[] = { { 1, 5 }, { 2, 7 }, { 3, 9 }, { 8, 2 } };
    const struct mark theirs[] = { { 1, 4 }, { 2, 7 }, { 8, 1 } };
    const struct mark want[] = { { 1, 4 }, { 3, 0 }, { 8, 1 } };
    check_merge(ours, N(ours), theirs, N(theirs), want, N(want));
}

static void test_mixed_interleaving(void **state)
{
    (void)state;
    /* Their origins interleave with ours, below, between and above them. */
    const struct mark ours[] = { { 10, 3 }, { 20, 3 }, { 30, 3 } };
    const struct mark theirs[] = { { 5, 1 }, { 10, 3 }, { 15, 9 }, { 20, 1 }, { 25, 4 },
                                   { 35, 2 } };
    const struct mark want[] = { { 20, 1 }, { 30, 0 } };
    check_merge(ours, N(ours), theirs, N(theirs), want, N(want));
}

static void test_empty_either_side(void **state)
{
    (void)state;
    const struct mark some[] = { { 1, 5 }, { 7, 7 } };
    const struct mark from_zero[] = { { 1, 0 }, { 7, 0 } };
    check_merge(some, N(some), NULL, 0, from_zero, N(from_zero)); /* peer has nothing */
    check_merge(NULL, 0, some, N(some), NULL, 0);                 /* we have nothing */
    check_merge(NULL, 0, NULL, 0, NULL, 0);
}

static void test_peer_behind_on_its_own_origin_gets_a_cursor(void **state)
{
    (void)state;
    /* The frame comes from node 4 (its origin field is not what counts).
     * Node 4 marks less of its own origin than we hold (its history lost
     * the tail): it gets 5..9 back, like any other origin. */
    const struct mark ours[] = { { 1, 5 }, { 4, 9 }, { 6, 2 } };
    const struct mark behind[] = { { 1, 1 }, { 4, 4 } };
    const struct mark want_behind[] = { { 1, 1 }, { 4, 4 }, { 6, 0 } };
    check_merge(ours, N(ours), behind, N(behind), want_behind, N(want_behind));
    /* Nothing of it at all (its history.db deleted): from 0. */
    const struct mark nothing[] = { { 1, 5 }, { 6, 2 } };
    const struct mark want_nothing[] = { { 4, 0 } };
    check_merge(ours, N(ours), nothing, N(nothing), want_nothing, N(want_nothing));
    /* At or ahead of what we hold of it (the normal case: it sent us only
     * what it had stored): no cursor, no frame. */
    const struct mark at[] = { { 1, 5 }, { 4, 9 }, { 6, 2 } };
    check_merge(ours, N(ours), at, N(at), NULL, 0);
    const struct mark ahead[] = { { 1, 5 }, { 4, 12 }, { 6, 2 } };
    check_merge(ours, N(ours), ahead, N(ahead), NULL, 0);
}

static void test_twenty_thousand_origins(void **state)
{
    (void)state;
    /* 20,000 origins of ours, 1..20000 at seq 10. The peer's 20,000 marks:
     * the even origins of ours (2, 6, 10 ... at seq 10, the others at seq 3),
     * and the odd numbers above ours. It lacks the odd origins entirely. */
    enum { K = 20000 };
    struct mark *ours = malloc(K * sizeof(*ours));
    struct mark *theirs = malloc(K * sizeof(*theirs));
    struct mark *want = malloc(K * sizeof(*want));
    assert_non_null(ours);
    assert_non_null(theirs);
    assert_non_null(want);
    size_t nt = 0, nw = 0;
    for (uint32_t i = 0; i < K; i++)
        ours[i] = (struct mark){ i + 1, 10 };
    for (uint32_t o = 2; o <= K; o += 2)
        theirs[nt++] = (struct mark){ o, o % 4 == 2 ? 10 : 3 };
    for (uint32_t o = K + 1; nt < K; o += 2)
        theirs[nt++] = (struct mark){ o, 1 };
    for (uint32_t o = 1; o <= K; o++) {
        if (o % 2 == 1)
            want[nw++] = (struct mark){ o, 0 };
        else if (o % 4 == 0)
            want[nw++] = (struct mark){ o, 3 };
    }
    assert_int_equal(nw, K / 2 + K / 4);
    check_merge(ours, K, theirs, nt, want, nw);
    free(ours);
    free(theirs);
    free(want);
}

/* --- serving the cursors, and what was queued ---------------------------------- */

/* One merge of theirs into c over ours; returns the cursors as marks
 * (origin, after) in out, served and dropped. */
static size_t merge_and_serve(catchup *c, const struct mark *ours, size_t nours,
                              const struct mark *theirs, size_t ntheirs, uint16_t flags,
                              struct mark *out, size_t max)
{
    struct marks_frame m;
    marks_frame_init(&m, theirs, ntheirs);
    m.f.flags = flags;
    struct store_origin *o = ours_of(ours, nours);
    size_t n = catchup_marks(c, &m.f, o, nours);
    assert_true(n <= max);
    for (size_t i = 0; i < n; i++) {
        assert_true(catchup_next(c, &out[i].origin, &out[i].seq));
        catchup_done(c);
    }
    assert_int_equal(catchup_pending(c), 0);
    free(o);
    marks_frame_free(&m);
    return n;
}

static void queue_range(catchup *c, uint32_t origin, uint64_t from, uint64_t to)
{
    for (uint64_t q = from; q <= to; q++)
        catchup_queued(c, origin, q);
}

static void test_cursor_starts_after_what_was_queued(void **state)
{
    (void)state;
    const struct mark ours[] = { { 1, 100 }, { 2, 100 } };
    const struct mark first[] = { { 1, 10 }, { 2, 10 } };
    struct mark got[4];
    catchup *c = catchup_new();
    assert_int_equal(merge_and_serve(c, ours, 2, first, 2, 0, got, 4), 2);
    /* 11..50 of origin 1 and 11..100 of origin 2 go out (live or catch-up);
     * then a MARKS the peer sent before they arrived. */
    queue_range(c, 1, 11, 50);
    queue_range(c, 2, 11, 100);
    assert_int_equal(catchup_has(c, 1), 50);
    const struct mark later[] = { { 1, 20 }, { 2, 30 } };
    assert_int_equal(merge_and_serve(c, ours, 2, later, 2, 0, got, 4), 1);
    assert_int_equal(got[0].origin, 1);
    assert_int_equal(got[0].seq, 50);     /* not 20: 21..50 are on their way */
    /* Repeats and frames below the mark change nothing. */
    catchup_queued(c, 1, 50);
    catchup_queued(c, 1, 3);
    assert_int_equal(catchup_has(c, 1), 50);
    catchup_free(c);
}

static void test_queued_moves_the_next_cursor(void **state)
{
    (void)state;
    const struct mark ours[] = { { 1, 5 }, { 2, 5 } };
    struct marks_frame m;
    marks_frame_init(&m, NULL, 0);
    struct store_origin *o = ours_of(ours, N(ours));
    catchup *c = catchup_new();
    assert_int_equal(catchup_marks(c, &m.f, o, N(ours)), 2);
    uint32_t origin;
    uint64_t after;
    queue_range(c, 1, 1, 2);
    catchup_queued(c, 1, 4);   /* after a gap: not counted (yet) */
    catchup_queued(c, 2, 1);   /* the later cursor's origin: counted too */
    assert_true(catchup_next(c, &origin, &after));
    assert_int_equal(origin, 1);
    assert_int_equal(after, 2);
    catchup_done(c);
    assert_true(catchup_next(c, &origin, &after));
    assert_int_equal(origin, 2);
    assert_int_equal(after, 1);

    /* A new MARKS replaces the cursors: origin 1's run (4) connects to the
     * peer's 5; origin 2 goes on from its mark. catchup_clear drops them. */
    const struct mark theirs[] = { { 1, 5 }, { 2, 3 } };
    marks_frame_free(&m);
    marks_frame_init(&m, theirs, N(theirs));
    assert_int_equal(catchup_marks(c, &m.f, o, N(ours)), 1);
    assert_true(catchup_next(c, &origin, &after));
    assert_int_equal(origin, 2);
    assert_int_equal(after, 3);
    catchup_clear(c);
    assert_int_equal(catchup_pending(c), 0);
    assert_false(catchup_next(c, &origin, &after));
    catchup_done(c);            /* harmless with none left */
    assert_int_equal(catchup_pending(c), 0);
    catchup_free(c);
    catchup_free(NULL);
    free(o);
    marks_frame_free(&m);
}

static void test_live_run_counts_once_the_peer_reaches_it(void **state)
{
    (void)state;
    /* Our own origin 7: live messages 91..100 go out before the peer's
     * first MARKS arrives. They count only once a MARKS shows the peer at
     * 90 (it will accept 91 next), never because we sent 81..90 after them
     * (91..100 reached it first, after a gap, and were dropped). */
    const struct mark ours[] = { { 7, 100 } };
    struct mark got[2];
    catchup *c = catchup_new();
    queue_range(c, 7, 91, 100);
    assert_int_equal(catchup_has(c, 7), 0);
    const struct mark at80[] = { { 7, 80 } };
    assert_int_equal(merge_and_serve(c, ours, 1, at80, 1, 0, got, 2), 1);
    assert_int_equal(got[0].seq, 80);
    queue_range(c, 7, 81, 90);      /* the cursor's frames */
    assert_int_equal(catchup_has(c, 7), 90);
    queue_range(c, 7, 91, 95);      /* sent again by the cursor: counted now */
    assert_int_equal(catchup_has(c, 7), 95);
    catchup_free(c);

    /* The first MARKS at 90: the run connects, nothing to send. */
    c = catchup_new();
    queue_range(c, 7, 91, 100);
    const struct mark at90[] = { { 7, 90 } };
    assert_int_equal(merge_and_serve(c, ours, 1, at90, 1, 0, got, 2), 0);
    assert_int_equal(catchup_has(c, 7), 100);
    catchup_free(c);

    /* A run after another gap replaces the older run. */
    c = catchup_new();
    queue_range(c, 7, 91, 92);
    queue_range(c, 7, 95, 96);
    assert_int_equal(merge_and_serve(c, ours, 1, at90, 1, 0, got, 2), 1);
    assert_int_equal(got[0].seq, 90);
    catchup_free(c);
}

static void test_refused_flag_starts_over_from_the_marks(void **state)
{
    (void)state;
    const struct mark ours[] = { { 1, 100 }, { 2, 100 }, { 3, 100 } };
    const struct mark first[] = { { 1, 10 }, { 2, 10 }, { 3, 10 } };
    struct mark got[4];
    catchup *c = catchup_new();
    merge_and_serve(c, ours, 3, first, 3, 0, got, 4);
    queue_range(c, 1, 11, 100);
    queue_range(c, 2, 11, 100);
    queue_range(c, 3, 11, 100);
    /* The peer refused something (its disk was behind): what we queued no
     * longer counts, whatever origin it was. Origin 3 is missing from the
     * frame: from 0. */
    const struct mark theirs[] = { { 1, 40 }, { 2, 100 } };
    assert_int_equal(merge_and_serve(c, ours, 3, theirs, 2, PEER_MARKS_REFUSED, got, 4), 2);
    assert_int_equal(got[0].origin, 1);
    assert_int_equal(got[0].seq, 40);
    assert_int_equal(got[1].origin, 3);
    assert_int_equal(got[1].seq, 0);
    catchup_free(c);
}

static void test_direct_origins_are_not_sent(void **state)
{
    (void)state;
    /* The peer gets origin 2 from node 2 itself: nothing of it from us, and
     * what we knew of it stays until the peer gives a real mark again. */
    const struct mark ours[] = { { 1, 5 }, { 2, 5 }, { 3, 5 } };
    const struct mark theirs[] = { { 1, 1 }, { 2, PEER_MARK_DIRECT }, { 3, 2 } };
    const struct mark want[] = { { 1, 1 }, { 3, 2 } };
    check_merge(ours, N(ours), theirs, N(theirs), want, N(want));

    struct mark got[3];
    catchup *c = catchup_new();
    const struct mark two[] = { { 2, 2 } };
    merge_and_serve(c, ours, 3, two, 1, 0, got, 3);
    assert_int_equal(merge_and_serve(c, ours, 3, theirs, 3, 0, got, 3), 2);
    assert_int_equal(catchup_has(c, 2), 2);
    const struct mark direct_lost[] = { { 1, 5 }, { 2, 3 }, { 3, 5 } };
    assert_int_equal(merge_and_serve(c, ours, 3, direct_lost, 3, 0, got, 3), 1);
    assert_int_equal(got[0].origin, 2);
    assert_int_equal(got[0].seq, 3);
    catchup_free(c);
}

static void test_queued_origins_before_any_marks(void **state)
{
    (void)state;
    /* Our own origin gets an entry when its first message goes out, in
     * order among the others; the next MARKS keeps it. */
    catchup *c = catchup_new();
    catchup_queued(c, 50, 1);
    catchup_queued(c, 10, 1);
    catchup_queued(c, 30, 1);
    catchup_queued(c, 30, 2);
    assert_int_equal(catchup_has(c, 10), 1);
    assert_int_equal(catchup_has(c, 30), 2);
    assert_int_equal(catchup_has(c, 50), 1);
    assert_int_equal(catchup_has(c, 20), 0);
    const struct mark ours[] = { { 20, 1 }, { 30, 2 } };
    struct mark got[2];
    assert_int_equal(merge_and_serve(c, ours, 2, NULL, 0, 0, got, 2), 1);
    assert_int_equal(got[0].origin, 20);
    assert_int_equal(catchup_has(c, 50), 1);
    assert_int_equal(catchup_has(c, 30), 2);
    catchup_free(c);
}

static void test_twenty_thousand_origins_served_once(void **state)
{
    (void)state;
    /* A peer with nothing: every origin once, in order; what was queued is
     * not sent again by the next MARKS, sent before it all arrived. */
    enum { K = 20000 };
    struct mark *ours = malloc(K * sizeof(*ours));
    struct mark *got = malloc(K * sizeof(*got));
    assert_non_null(ours);
    assert_non_null(got);
    for (uint32_t i = 0; i < K; i++)
        ours[i] = (struct mark){ 2 * i + 1, 3 };
    catchup *c = catchup_new();
    struct marks_frame m;
    marks_frame_init(&m, NULL, 0);
    struct store_origin *o = ours_of(ours, K);
    assert_int_equal(catchup_marks(c, &m.f, o, K), K);
    for (uint32_t i = 0; i < K; i++) {
        uint32_t origin;
        uint64_t after;
        assert_true(catchup_next(c, &origin, &after));
        assert_int_equal(origin, 2 * i + 1);
        assert_int_equal(after, 0);
        queue_range(c, origin, 1, 3);
        catchup_done(c);
    }
    assert_int_equal(merge_and_serve(c, ours, K, NULL, 0, 0, got, K), 0);
    catchup_free(c);
    free(o);
    marks_frame_free(&m);
    free(ours);
    free(got);
}

/* A cursor below our low-water mark moves up to it (sync.c skips the
 * peer there), and queued frames above it then count as usual. */
static void test_skip_moves_the_cursor_to_the_low_water_mark(void **state)
{
    (void)state;
    const struct mark ours[] = { { 4, 100 } };
    const struct mark theirs[] = { { 4, 5 } };
    struct marks_frame m;
    marks_frame_init(&m, theirs, 1);
    struct store_origin *o = ours_of(ours, 1);
    catchup *c = catchup_new();
    assert_int_equal(catchup_marks(c, &m.f, o, 1), 1);
    uint32_t origin;
    uint64_t after;
    assert_true(catchup_next(c, &origin, &after));
    assert_int_equal(after, 5);
    catchup_skip(c, 4, 60);
    assert_true(catchup_next(c, &origin, &after));
    assert_int_equal(after, 60);
    catchup_queued(c, 4, 61);
    assert_int_equal(catchup_has(c, 4), 61);
    catchup_skip(c, 4, 30); /* never down */
    assert_int_equal(catchup_has(c, 4), 61);
    catchup_free(c);
    free(o);
    free(m.raw);
}

/* A skip leaves the range the peer lacked below our mark to backfill,
 * once: it keeps the origin's cursor through later MARKS (which show the
 * peer past the mark) until it is done; a second skip widens it; a
 * refused-flagged MARKS starts it over; once done, later MARKS at or
 * above the mark ask for none again. */
static void test_a_skip_leaves_a_backfill_range_served_once(void **state)
{
    (void)state;
    const struct mark ours[] = { { 4, 205 } };
    const struct mark behind[] = { { 4, 0 } };
    struct mark got[1];
    catchup *c = catchup_new();
    uint64_t after, upto;
    assert_false(catchup_backfill(c, 4, &after, &upto));
    assert_int_equal(merge_and_serve(c, ours, 1, behind, 1, 0, got, 1), 1);
    catchup_skip(c, 4, 155);
    assert_true(catchup_backfill(c, 4, &after, &upto));
    assert_int_equal(after, 0);
    assert_int_equal(upto, 155);
    catchup_backfilled(c, 4, 3);
    assert_true(catchup_backfill(c, 4, &after, &upto));
    assert_int_equal(after, 3);
    queue_range(c, 4, 156, 205);
    /* The peer has everything above the mark: the origin's cursor stays
     * for what is left below it. */
    const struct mark past[] = { { 4, 205 } };
    assert_int_equal(merge_and_serve(c, ours, 1, past, 1, 0, got, 1), 1);
    assert_int_equal(got[0].seq, 205);
    assert_true(catchup_backfill(c, 4, &after, &upto));
    assert_int_equal(after, 3);
    /* A refusal starts it over. */
    assert_int_equal(merge_and_serve(c, ours, 1, past, 1, PEER_MARKS_REFUSED, got, 1), 1);
    assert_true(catchup_backfill(c, 4, &after, &upto));
    assert_int_equal(after, 0);
    catchup_backfilled(c, 4, 100);
    /* Our mark rose while the peer was still below it: the range widens. */
    catchup_skip(c, 4, 300);
    assert_true(catchup_backfill(c, 4, &after, &upto));
    assert_int_equal(after, 100);
    assert_int_equal(upto, 300);
    catchup_backfilled(c, 4, 300);
    assert_false(catchup_backfill(c, 4, &after, &upto));
    const struct mark ours2[] = { { 4, 300 } };
    const struct mark done[] = { { 4, 300 } };
    assert_int_equal(merge_and_serve(c, ours2, 1, done, 1, 0, got, 1), 0);
    assert_int_equal(merge_and_serve(c, ours2, 1, done, 1, PEER_MARKS_REFUSED, got, 1), 0);
    /* A skip that moves nothing leaves nothing to backfill. */
    catchup_skip(c, 4, 250);
    assert_false(catchup_backfill(c, 4, &after, &upto));
    catchup_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skip_moves_the_cursor_to_the_low_water_mark),
        cmocka_unit_test(test_a_skip_leaves_a_backfill_range_served_once),
        cmocka_unit_test(test_disjoint_origins),
        cmocka_unit_test(test_equal_marks),
        cmocka_unit_test(test_peer_ahead),
        cmocka_unit_test(test_peer_behind),
        cmocka_unit_test(test_mixed_interleaving),
        cmocka_unit_test(test_empty_either_side),
        cmocka_unit_test(test_peer_behind_on_its_own_origin_gets_a_cursor),
        cmocka_unit_test(test_twenty_thousand_origins),
        cmocka_unit_test(test_cursor_starts_after_what_was_queued),
        cmocka_unit_test(test_queued_moves_the_next_cursor),
        cmocka_unit_test(test_live_run_counts_once_the_peer_reaches_it),
        cmocka_unit_test(test_refused_flag_starts_over_from_the_marks),
        cmocka_unit_test(test_direct_origins_are_not_sent),
        cmocka_unit_test(test_queued_origins_before_any_marks),
        cmocka_unit_test(test_twenty_thousand_origins_served_once),
    };
    return cmocka_run_group_tests_name("catchup", tests, NULL, NULL);
}
