/* Tests node/store.c: messages appended on the loop are committed by the
 * worker in batches, read back in origin order, survive a reopen (with the
 * per-origin counts, highest seq and latest time), empty senders and texts
 * are stored as '' and read back as empty strings, never NULL, waiters
 * run only once what was appended before them is committed, and the
 * highest committed seq per origin is told apart from the highest appended
 * (a pending or failing batch raises only the latter), and WAL checkpoints
 * run outside the commits, on the store's own schedule: none inside a
 * commit (SQLite's automatic one is off), one in a worker once the WAL
 * passes the threshold, and closing waits for it; a file of the first
 * layout is converted on open, a batch that fails is retried until it
 * commits (the store refusing more meanwhile) and given up only when the
 * store closes, an origin's slot is written again by the retry of a
 * failed batch, and the 32-row INSERT keeps a duplicate's first copy and
 * stores empty strings as ''. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/util.h"
#include "node/store.h"

struct fixture {
    uv_loop_t loop;
    char dir[64];
    uint64_t committed_gen;
    int commits;
    int failed;          /* batches that failed to commit */
    int expect_failure;  /* a test made the next commits fail */
    int closed;
};

static void on_commit(uint64_t gen, int ok, void *ud)
{
    struct fixture *f = ud;
    if (!ok) {
        assert_true(f->expect_failure);
        f->failed++;
    }
    assert_true(ok || f->expect_failure);
    assert_true(gen > f->committed_gen); /* generations only go up */
    f->committed_gen = gen;
    f->commits++;
}

static void on_closed(void *ud)
{
    ((struct fixture *)ud)->closed = 1;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    strcpy(f->dir, "/tmp/dchat-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static store *open_store(struct fixture *f)
{
    char err[256];
    store *s = store_open(&f->loop, f->dir, STORE_FSYNC_BATCH, on_commit, f, err, sizeof(err));
    if (s == NULL)
        fail_msg("store_open: %s", err);
    return s;
}

static void close_store(struct fixture *f, store *s)
{
    f->closed = 0;
    store_close(s, on_closed, f);
    while (!f->closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static struct chat_message msg(uint32_t origin, uint64_t seq, const char *text)
{
    struct chat_message m = {
        .origin = origin, .seq = seq, .time_ms = 1700000000000ull + seq, .chat_id = -7,
        .sender = "s\xc3\xa9nder", .sender_len = 7, .text = text,
        .text_len = (uint32_t)strlen(text),
    };
    return m;
}

static void wait_idle(struct fixture *f, store *s)
{
    while (store_busy(s))
        uv_run(&f->loop, UV_RUN_ONCE);
}

/* Runs the loop until the store has failed at least n commit attempts
 * (each retry is a timer of STORE_RETRY_MIN_MS doubling: a few turns). */
static void wait_failures(struct fixture *f, store *s, uint64_t n)
{
    while (store_failures(s) < n)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void test_append_commit_read(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    char text[32];
    uint64_t last_gen = 0;
    for (uint64_t i = 1; i <= 1000; i++) {
        snprintf(text, sizeof(text), "m%llu", (unsigned long long)i);
        struct chat_message m = msg(i % 2 ? 1 : 2, (i + 1) / 2, text);
        uint64_t gen = store_append(s, &m);
        assert_true(gen >= last_gen);
        last_gen = gen;
        if (i % 100 == 0)
            uv_run(&f->loop, UV_RUN_NOWAIT); /* let batches go meanwhile */
    }
    assert_int_equal(store_highest(s, 1), 500);
    assert_int_equal(store_highest(s, 2), 500);
    assert_int_equal(store_highest(s, 3), 0);
    wait_idle(f, s);
    assert_true(f->commits >= 1);
    assert_int_equal(f->committed_gen, last_gen);

    struct store_rows rows = { 0 };
    assert_int_equal(store_read(s, 2, 10, 20, 100, &rows), 0);
    assert_int_equal(rows.n, 10);
    for (size_t i = 0; i < rows.n; i++) {
        assert_int_equal(rows.msgs[i].seq, 11 + i);
        assert_int_equal(rows.msgs[i].origin, 2);
        assert_true(rows.msgs[i].chat_id == -7);
        snprintf(text, sizeof(text), "m%llu", (unsigned long long)(2 * (11 + i)));
        assert_int_equal(rows.msgs[i].text_len, strlen(text));
        assert_memory_equal(rows.msgs[i].text, text, strlen(text));
        assert_memory_equal(rows.msgs[i].sender, "s\xc3\xa9nder", 7);
    }
    /* appending to the same set keeps earlier rows valid (arena grows) */
    assert_int_equal(store_read(s, 1, 0, UINT64_MAX, 3, &rows), 0);
    assert_int_equal(rows.n, 13);
    assert_memory_equal(rows.msgs[0].text, "m22", 3);
    assert_memory_equal(rows.msgs[10].text, "m1", 2);
    store_rows_free(&rows);
    close_store(f, s);
}

static int waited;
static size_t want_rows;

static void waiter_cb(void *ud)
{
    store *s = ud;
    /* everything appended before the wait is in by now */
    struct store_rows rows = { 0 };
    assert_int_equal(store_read(s, 5, 0, UINT64_MAX, 100, &rows), 0);
    assert_int_equal(rows.n, want_rows);
    store_rows_free(&rows);
    waited++;
}

static void test_when_committed(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    waited = 0;
    want_rows = 0;
    store_when_committed(s, waiter_cb, s); /* nothing pending: at once */
    assert_int_equal(waited, 1);
    waited = 0;
    want_rows = 50;
    for (uint64_t i = 1; i <= 50; i++) {
        struct chat_message m = msg(5, i, "w");
        store_append(s, &m);
    }
    store_when_committed(s, waiter_cb, s);
    assert_int_equal(waited, 0); /* not before the commit */
    wait_idle(f, s);
    while (waited == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(waited, 1);
    close_store(f, s);
}

static void test_reopen_keeps_history(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    for (uint64_t i = 1; i <= 30; i++) {
        struct chat_message m = msg(9, i, "persist");
        store_append(s, &m);
    }
    /* the same key twice, in the same many-row INSERT (the 31st of 41
     * rows): the first one stays */
    struct chat_message dup = msg(9, 7, "again");
    store_append(s, &dup);
    for (uint64_t i = 31; i <= 40; i++) {
        struct chat_message m = msg(9, i, "persist");
        store_append(s, &m);
    }
    close_store(f, s);     /* commits what is pending */

    s = open_store(f);
    size_t n;
    const struct store_origin *o = store_origins(s, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].origin, 9);
    assert_int_equal(o[0].count, 40);
    assert_int_equal(o[0].highest, 40);
    assert_int_equal(o[0].last_time_ms, 1700000000040ull);
    assert_int_equal(store_last_time(s, 9), 1700000000040ull);
    struct store_rows rows = { 0 };
    assert_int_equal(store_read(s, 9, 6, 7, 10, &rows), 0);
    assert_int_equal(rows.n, 1);
    assert_memory_equal(rows.msgs[0].text, "persist", 7);
    store_rows_free(&rows);
    close_store(f, s);
}

/* The integer the query sql answers on f's history.db, asked on a
 * read-only connection of our own: what SQLite holds, whatever the store
 * makes of it. */
static int query_int(struct fixture *f, const char *sql)
{
    char path[128];
    sqlite3 *db;
    sqlite3_stmt *st;
    snprintf(path, sizeof(path), "%s/history.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Rows in f's history.db matching where (store_read not involved). */
static int count_rows(struct fixture *f, const char *where)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM messages WHERE %s", where);
    return query_int(f, sql);
}

/* A message's strings may be empty (issue 11: {"text":"","sender":""}).
 * SQLite returns a NULL pointer for a zero-length value; what the store
 * hands out must still be a string of length 0 that callers may pass to
 * memcpy, also when every row of a read is empty. */
static void check_empty(const struct chat_message *m, uint64_t seq)
{
    assert_int_equal(m->seq, seq);
    assert_non_null(m->sender);
    assert_int_equal(m->sender_len, 0);
    assert_non_null(m->text);
    assert_int_equal(m->text_len, 0);
}

static void test_empty_strings_read_back_empty(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    struct chat_message m = msg(4, 1, "");
    m.sender = "";
    m.sender_len = 0;
    store_append(s, &m);
    struct chat_message only_sender = msg(4, 2, "");
    store_append(s, &only_sender);
    struct chat_message only_text = msg(4, 3, "t");
    only_text.sender = "";
    only_text.sender_len = 0;
    store_append(s, &only_text);
    wait_idle(f, s);

    /* stored as empty TEXT, not as NULL (which NOT NULL and INSERT OR
     * IGNORE would have dropped without a word) */
    assert_int_equal(count_rows(f, "origin = 4"), 3);
    assert_int_equal(count_rows(f, "sender IS NULL OR text IS NULL"), 0);
    assert_int_equal(count_rows(f, "sender = '' AND text = '' AND typeof(sender) = 'text' "
                                   "AND typeof(text) = 'text'"), 1);

    for (int reopen = 0; reopen < 2; reopen++) {
        /* a read of nothing but empty strings: the rows' arena has no bytes */
        struct store_rows rows = { 0 };
        assert_int_equal(store_read(s, 4, 0, 1, 10, &rows), 0);
        assert_int_equal(rows.n, 1);
        check_empty(&rows.msgs[0], 1);
        assert_true(rows.msgs[0].chat_id == -7);
        assert_int_equal(rows.msgs[0].time_ms, 1700000000001ull);
        /* the same set, grown by rows with bytes: the empty ones stay valid */
        assert_int_equal(store_read(s, 4, 0, 3, 10, &rows), 0);
        assert_int_equal(rows.n, 4);
        check_empty(&rows.msgs[0], 1);
        check_empty(&rows.msgs[1], 1);
        assert_int_equal(rows.msgs[2].seq, 2);
        assert_int_equal(rows.msgs[2].sender_len, 7);
        assert_memory_equal(rows.msgs[2].sender, "s\xc3\xa9nder", 7);
        assert_non_null(rows.msgs[2].text);
        assert_int_equal(rows.msgs[2].text_len, 0);
        assert_int_equal(rows.msgs[3].seq, 3);
        assert_non_null(rows.msgs[3].sender);
        assert_int_equal(rows.msgs[3].sender_len, 0);
        assert_int_equal(rows.msgs[3].text_len, 1);
        assert_memory_equal(rows.msgs[3].text, "t", 1);
        store_rows_free(&rows);
        close_store(f, s);
        s = open_store(f);
        assert_int_equal(store_highest(s, 4), 3);
    }
    close_store(f, s);
}

/* The same through the many-row INSERT (a batch of 40: 32 rows in one
 * statement, then 8 one at a time). */
static void test_empty_strings_in_a_many_row_insert(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    for (uint64_t i = 1; i <= 40; i++) {
        struct chat_message m = msg(4, i, "");
        m.sender = "";
        m.sender_len = 0;
        store_append(s, &m);
    }
    wait_idle(f, s);
    assert_int_equal(count_rows(f, "sender = '' AND text = '' AND typeof(sender) = 'text' "
                                   "AND typeof(text) = 'text'"), 40);
    close_store(f, s);
}

static void test_parse_fsync_and_bad_dir(void **state)
{
    struct fixture *f = *state;
    enum store_fsync m;
    assert_int_equal(store_parse_fsync("always", &m), 0);
    assert_int_equal(m, STORE_FSYNC_ALWAYS);
    assert_int_equal(store_parse_fsync("batch", &m), 0);
    assert_int_equal(m, STORE_FSYNC_BATCH);
    assert_int_equal(store_parse_fsync("off", &m), 0);
    assert_int_equal(m, STORE_FSYNC_OFF);
    assert_int_equal(store_parse_fsync("sometimes", &m), -1);
    char err[256];
    assert_null(store_open(&f->loop, "/nonexistent/dir", STORE_FSYNC_BATCH, NULL, NULL, err,
                           sizeof(err)));
    assert_non_null(strstr(err, "history.db"));
}

/* Runs sql on a connection of our own to f's history.db. */
static void exec_sql(struct fixture *f, const char *sql)
{
    char path[128];
    sqlite3 *db;
    snprintf(path, sizeof(path), "%s/history.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_committed_apart_from_appended(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    for (uint64_t i = 1; i <= 5; i++) {
        struct chat_message m = msg(3, i, "kept");
        store_append(s, &m);
    }
    /* Appended, not committed yet: had (for duplicates), not claimed. */
    assert_int_equal(store_highest(s, 3), 5);
    assert_int_equal(store_committed(s, 3), 0);
    assert_int_equal(store_commits(s), 0);
    size_t n;
    const struct store_origin *o = store_origins(s, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].highest, 5);
    assert_int_equal(o[0].committed, 0);
    wait_idle(f, s);
    assert_int_equal(store_committed(s, 3), 5);
    uint64_t commits = store_commits(s);
    assert_true(commits >= 1 && commits <= 5);

    /* A batch that fails (a trigger refuses its rows) is not dropped: it
     * stays, uncommitted, and is tried again until it commits; meanwhile
     * the store takes nothing more and says why, and the committed mark
     * stays where the history is. */
    exec_sql(f, "CREATE TRIGGER refuse BEFORE INSERT ON history WHEN NEW.key >> 40 = "
                "(SELECT slot FROM origins WHERE origin = 3) "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;");
    for (uint64_t i = 6; i <= 8; i++) {
        struct chat_message m = msg(3, i, "held");
        store_append(s, &m);
    }
    wait_failures(f, s, 2); /* the first attempt and one retry */
    assert_int_equal(f->failed, 0); /* never reported as given up */
    assert_false(store_accepting(s));
    assert_true(store_busy(s));
    uint64_t since = 0;
    const char *why = store_failing(s, &since);
    assert_non_null(why);
    assert_non_null(strstr(why, "refused by the test"));
    assert_true(since > 0);
    assert_int_equal(count_rows(f, "origin = 3"), 5);
    assert_int_equal(store_highest(s, 3), 8);
    assert_int_equal(store_committed(s, 3), 5);
    assert_int_equal(store_commits(s), commits); /* a failed attempt is not one */
    o = store_origins(s, &n);
    assert_int_equal(o[0].highest, 8);
    assert_int_equal(o[0].committed, 5);

    /* The cause gone, the next retry commits it, by itself. */
    exec_sql(f, "DROP TRIGGER refuse;");
    wait_idle(f, s);
    assert_null(store_failing(s, NULL));
    assert_true(store_accepting(s));
    assert_int_equal(count_rows(f, "origin = 3"), 8);
    assert_int_equal(store_committed(s, 3), 8);
    assert_int_equal(store_commits(s), commits + 1);

    /* Closed while a batch still fails: one last try, then it is given up
     * (on_commit ok = 0), and the history holds what it held. */
    exec_sql(f, "CREATE TRIGGER refuse BEFORE INSERT ON history "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;");
    struct chat_message m9 = msg(3, 9, "given up");
    store_append(s, &m9);
    uint64_t failures = store_failures(s);
    wait_failures(f, s, failures + 1);
    f->expect_failure = 1;
    close_store(f, s);
    assert_int_equal(f->failed, 1);
    exec_sql(f, "DROP TRIGGER refuse;");

    /* Reopened: both marks are what the history holds. */
    f->expect_failure = 0;
    s = open_store(f);
    assert_int_equal(store_highest(s, 3), 8);
    assert_int_equal(store_committed(s, 3), 8);
    close_store(f, s);
}

static off_t wal_size(struct fixture *f)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "%s/history.db-wal", f->dir);
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Appends n messages of about 1 KiB for origin 5 from seq first, one
 * commit per 100, and waits for each commit. */
static void append_kib(struct fixture *f, store *s, uint64_t first, int n)
{
    static char text[1025];
    memset(text, 'k', 1024);
    for (int i = 0; i < n; i++) {
        struct chat_message m = msg(5, first + (uint64_t)i, text);
        store_append(s, &m);
        if (i % 100 == 99)
            wait_idle(f, s);
    }
    wait_idle(f, s);
}

static void test_checkpoints_run_outside_the_commits(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    /* A threshold never reached: no checkpoint at all, and the WAL grows
     * past SQLite's own automatic threshold (1000 pages, 4 MiB), which
     * would have reset it from within a commit. */
    store_set_checkpoint_bytes(s, (uint64_t)1 << 40);
    append_kib(f, s, 1, 6000);
    assert_int_equal(store_checkpoints(s), 0);
    assert_true(wal_size(f) > 5 * 1024 * 1024);

    /* A small threshold: the next commit starts one, in a worker; the
     * commits go on meanwhile; every row is there. */
    store_set_checkpoint_bytes(s, 200 * 1024);
    append_kib(f, s, 6001, 1000);
    while (store_checkpoints(s) == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(count_rows(f, "origin = 5"), 7000);
    assert_int_equal(store_committed(s, 5), 7000);

    /* Closing while one may be running waits for it; the history is whole
     * on reopen. */
    append_kib(f, s, 7001, 200);
    close_store(f, s);
    s = open_store(f);
    assert_int_equal(store_highest(s, 5), 7200);
    close_store(f, s);
    assert_int_equal(count_rows(f, "origin = 5"), 7200);
}

/* A retry after a failed commit first empties the WAL (a TRUNCATE
 * checkpoint, counted as forced): on a full disk that gives back the
 * space the WAL holds. Nothing is lost; once the cause is gone the batch
 * commits. */
static void test_a_retry_empties_the_wal(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    append_kib(f, s, 1, 300); /* well under the threshold: no checkpoint */
    assert_true(wal_size(f) > 256 * 1024);
    assert_int_equal(store_checkpoints_forced(s), 0);
    exec_sql(f, "CREATE TRIGGER refuse BEFORE INSERT ON history "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;");
    struct chat_message m = msg(5, 301, "refused, then stored");
    store_append(s, &m);
    wait_failures(f, s, 2); /* the first try, then a retry */
    assert_int_equal(store_checkpoints_forced(s), 1);
    assert_int_equal(wal_size(f), 0);
    exec_sql(f, "DROP TRIGGER refuse;");
    wait_idle(f, s);
    assert_null(store_failing(s, NULL));
    close_store(f, s);
    assert_int_equal(count_rows(f, "origin = 5"), 301);
}

/* A new file is made with 16 KiB pages; a file made with SQLite's 4 KiB
 * (by an earlier version) keeps them, and takes rows and checkpoints as
 * before, its threshold counted in its own pages. */
static void test_page_size_of_new_and_old_files(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    append_kib(f, s, 1, 10);
    close_store(f, s);
    assert_int_equal(query_int(f, "PRAGMA page_size"), 16384);

    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -f %s/history.db*", f->dir);
    assert_int_equal(system(cmd), 0);
    char path[128];
    sqlite3 *db;
    snprintf(path, sizeof(path), "%s/history.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL;"
                                      "CREATE TABLE t (x);", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->committed_gen = 0; /* a new store numbers its batches from 1 */
    s = open_store(f);
    append_kib(f, s, 1, 2000); /* 2 MiB: a checkpoint at 4 MB of 4 KiB pages is near */
    store_set_checkpoint_bytes(s, 200 * 1024);
    append_kib(f, s, 2001, 100);
    while (store_checkpoints(s) == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    close_store(f, s);
    assert_int_equal(query_int(f, "PRAGMA page_size"), 4096);
    assert_int_equal(count_rows(f, "origin = 5"), 2100);
}

/* A WAL past twice the threshold (the checkpoints beside the commits did
 * not keep up): the next commit first empties it with a TRUNCATE
 * checkpoint of its own, counted as forced, and nothing is lost. */
static void test_a_commit_empties_a_runaway_wal(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    store_set_checkpoint_bytes(s, (uint64_t)1 << 40);
    append_kib(f, s, 1, 3000);
    off_t before = wal_size(f);
    assert_true(before > 3 * 1024 * 1024);
    assert_int_equal(store_checkpoints_forced(s), 0);
    store_set_checkpoint_bytes(s, 200 * 1024); /* the WAL holds far more than twice that */
    append_kib(f, s, 3001, 100);       /* one commit */
    assert_int_equal(store_checkpoints_forced(s), 1);
    assert_true(store_checkpoints(s) >= 1);
    assert_true(wal_size(f) < before / 4); /* emptied, then that commit's pages */
    assert_int_equal(count_rows(f, "origin = 5"), 3100);
    close_store(f, s);
}

/* The first layout: one WITHOUT ROWID table keyed by (origin, seq). A
 * file of it, as an older node left it, is converted on open: every row
 * is there, read back the same, and `messages` is a view of the new
 * tables that still answers the documented queries. */
static void test_the_first_layout_is_converted(void **state)
{
    struct fixture *f = *state;
    char path[128];
    sqlite3 *db;
    snprintf(path, sizeof(path), "%s/history.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE messages (origin INTEGER NOT NULL, seq INTEGER NOT NULL,"
        "  time_ms INTEGER NOT NULL, chat_id INTEGER NOT NULL, sender TEXT NOT NULL,"
        "  text TEXT NOT NULL, PRIMARY KEY (origin, seq)) WITHOUT ROWID;"
        "INSERT INTO messages VALUES (2147483647, 1, 1700000000001, 11, 'a', 'big origin');"
        "INSERT INTO messages VALUES (4, 1, 1700000000002, 11, 'b', 'four one');"
        "INSERT INTO messages VALUES (4, 2, 1700000000003, -5, '', '');"
        "INSERT INTO messages VALUES (4, 999999999999, 1700000000004, 11, 'b', 'last seq');",
        NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    store *s = open_store(f);
    size_t n;
    const struct store_origin *o = store_origins(s, &n);
    assert_int_equal(n, 2);
    assert_int_equal(o[0].origin, 4);
    assert_int_equal(o[0].count, 3);
    assert_int_equal(o[0].highest, 999999999999ull);
    assert_int_equal(o[0].committed, 999999999999ull);
    assert_int_equal(o[0].last_time_ms, 1700000000004ull);
    assert_int_equal(o[1].origin, 2147483647);
    assert_int_equal(o[1].count, 1);
    struct store_rows rows = { 0 };
    assert_int_equal(store_read(s, 4, 0, UINT64_MAX, 10, &rows), 0);
    assert_int_equal(rows.n, 3);
    assert_int_equal(rows.msgs[1].seq, 2);
    assert_int_equal(rows.msgs[1].chat_id, -5);
    assert_int_equal(rows.msgs[1].text_len, 0);
    assert_int_equal(rows.msgs[2].seq, 999999999999ull);
    assert_memory_equal(rows.msgs[2].text, "last seq", 8);
    store_rows_free(&rows);
    assert_int_equal(store_read(s, 2147483647, 0, 1, 10, &rows), 0);
    assert_int_equal(rows.n, 1);
    assert_memory_equal(rows.msgs[0].text, "big origin", 10);
    store_rows_free(&rows);
    /* and it goes on in the new layout */
    struct chat_message m = msg(4, 1000000, "after");
    store_append(s, &m);
    close_store(f, s);
    assert_int_equal(count_rows(f, "origin = 4"), 4);
    assert_int_equal(count_rows(f, "origin = 4 AND seq = 999999999999 AND text = 'last seq'"), 1);
    assert_int_equal(count_rows(f, "origin = 2147483647 AND seq = 1"), 1);
    s = open_store(f); /* converted once: opens as it is; 1000000 is below the highest */
    assert_int_equal(store_highest(s, 4), 999999999999ull);
    close_store(f, s);
}

/* An origin's slot is written by the batch that first stores it; when that
 * batch fails, its retry writes it again, so no row is ever without its
 * origin. Reads of an origin the file does not have find nothing. */
static void test_a_new_origin_survives_a_failed_first_batch(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    struct chat_message m = msg(8, 1, "first");
    store_append(s, &m);
    m = msg(6, 1, "first");
    store_append(s, &m);
    wait_idle(f, s);
    exec_sql(f, "CREATE TRIGGER refuse BEFORE INSERT ON origins WHEN NEW.origin = 7 "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;");
    m = msg(7, 1, "held");
    store_append(s, &m);
    m = msg(8, 2, "held too");   /* in the same, failing, batch */
    store_append(s, &m);
    wait_failures(f, s, 1);
    struct store_rows rows = { 0 };
    assert_int_equal(store_read(s, 7, 0, 10, 10, &rows), 0); /* not stored yet */
    assert_int_equal(rows.n, 0);
    store_rows_free(&rows);
    exec_sql(f, "DROP TRIGGER refuse;");
    wait_idle(f, s); /* the retry registers origin 7 and stores both */
    assert_int_equal(f->failed, 0);
    m = msg(7, 2, "next");
    store_append(s, &m);
    wait_idle(f, s);
    assert_int_equal(store_read(s, 7, 0, 10, 10, &rows), 0);
    assert_int_equal(rows.n, 2);
    assert_int_equal(rows.msgs[0].seq, 1);
    assert_int_equal(rows.msgs[1].seq, 2);
    store_rows_free(&rows);
    assert_int_equal(store_read(s, 5, 0, 10, 10, &rows), 0); /* never seen */
    assert_int_equal(rows.n, 0);
    store_rows_free(&rows);
    close_store(f, s);
    assert_int_equal(count_rows(f, "origin = 7"), 2);
    assert_int_equal(count_rows(f, "1"), 5);
    s = open_store(f);
    assert_int_equal(store_committed(s, 7), 2);
    assert_int_equal(store_committed(s, 8), 2);
    assert_int_equal(store_committed(s, 6), 1);
    close_store(f, s);
}

/* ---- retention ---------------------------------------------------------- */

/* Runs the loop once, kept alive meanwhile: the store's retention timer is
 * unreferenced (it must not keep a stopping node's loop going). */
static void keep_cb(uv_timer_t *t)
{
    (void)t;
}

static void run_alive(struct fixture *f)
{
    uv_timer_t keep;
    uv_timer_init(&f->loop, &keep);
    uv_timer_start(&keep, keep_cb, 10, 0);
    uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void test_parse_duration_and_size(void **state)
{
    (void)state;
    uint64_t v = 1;
    assert_int_equal(store_parse_duration("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(store_parse_duration("30d", &v), 0);
    assert_int_equal(v, 30ull * 86400000);
    assert_int_equal(store_parse_duration("12h", &v), 0);
    assert_int_equal(v, 12ull * 3600000);
    assert_int_equal(store_parse_duration("90m", &v), 0);
    assert_int_equal(v, 90ull * 60000);
    assert_int_equal(store_parse_duration("45s", &v), 0);
    assert_int_equal(v, 45000);
    assert_int_equal(store_parse_duration("45", &v), 0);
    assert_int_equal(v, 45000);
    assert_int_equal(store_parse_duration("500ms", &v), 0);
    assert_int_equal(v, 500);
    const char *bad_durations[] = { "", "d", "-1s", "1.5h", "10x", "3w", "1 d", "4000d",
                                    "99999999999999999999999s" };
    for (size_t i = 0; i < sizeof(bad_durations) / sizeof(*bad_durations); i++)
        assert_int_equal(store_parse_duration(bad_durations[i], &v), -1);
    assert_int_equal(store_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(store_parse_size("512M", &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(store_parse_size("2G", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(store_parse_size("64K", &v), 0);
    assert_int_equal(v, 64ull << 10);
    assert_int_equal(store_parse_size("1000", &v), 0);
    assert_int_equal(v, 1000);
    const char *bad_sizes[] = { "", "M", "-1M", "1.5G", "2g", "2GB", "5000T" };
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(*bad_sizes); i++)
        assert_int_equal(store_parse_size(bad_sizes[i], &v), -1);
}

static struct chat_message chat_msg(uint32_t origin, uint64_t seq, int64_t chat,
                                    uint64_t time_ms, const char *text)
{
    struct chat_message m = msg(origin, seq, text);
    m.chat_id = chat;
    m.time_ms = time_ms;
    return m;
}

static void set_retention(store *s, uint64_t age_ms, uint64_t per_chat, uint64_t bytes)
{
    char err[256];
    struct store_retention r = { age_ms, per_chat, bytes };
    if (store_set_retention(s, &r, err, sizeof(err)) != 0)
        fail_msg("store_set_retention: %s", err);
}

/* Closes s and opens the same file again with a per-chat limit (written
 * without one, or under a higher one). */
static store *reopen_with_chat_limit(struct fixture *f, store *s, uint64_t per_chat)
{
    close_store(f, s);
    s = open_store(f);
    f->committed_gen = 0; /* a new store numbers its batches from 1 */
    set_retention(s, 0, per_chat, 0);
    return s;
}

/* A busy chat and a quiet one of the same origin under a per-chat limit:
 * the busy one keeps its newest rows, the quiet one all of its own, the
 * origin's low-water mark is the highest seq removed, and a reopen keeps
 * the mark, the counts and the highest seq. */
static void test_trims_a_busy_chat_and_keeps_a_quiet_one(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    set_retention(s, 0, 10, 0);
    uint64_t now = util_wall_ms();
    for (uint64_t seq = 1; seq <= 60; seq++) {
        /* every tenth message is of the quiet chat 2: six in all */
        struct chat_message m = chat_msg(1, seq, seq % 10 == 0 ? 2 : 1, now + seq, "x");
        store_append(s, &m);
    }
    wait_idle(f, s);
    struct store_stats st;
    store_stats_get(s, &st);
    assert_int_equal(st.rows, 16);   /* 10 of chat 1, 6 of chat 2 */
    assert_int_equal(st.trimmed, 44);
    assert_int_equal(count_rows(f, "chat_id = 1"), 10);
    assert_int_equal(count_rows(f, "chat_id = 2"), 6);
    /* chat 1's newest 10 are seqs 49, 51..59; the 44 removed end at 48 */
    assert_int_equal(store_trimmed(s, 1), 48);
    assert_int_equal(store_highest(s, 1), 60);
    size_t n;
    const struct store_origin *o = store_origins(s, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].count, 16);
    /* What is left reads back: the quiet chat's old rows among them. */
    struct store_rows rows = { 0 };
    assert_int_equal(store_read(s, 1, 0, UINT64_MAX, 100, &rows), 0);
    assert_int_equal(rows.n, 16);
    assert_int_equal(rows.msgs[0].seq, 10);
    assert_int_equal(rows.msgs[0].chat_id, 2);
    store_rows_free(&rows);
    close_store(f, s);

    s = open_store(f);
    assert_int_equal(store_trimmed(s, 1), 48);
    assert_int_equal(store_highest(s, 1), 60);
    o = store_origins(s, &n);
    assert_int_equal(o[0].count, 16);
    close_store(f, s);
}

/* Rows older than the age limit go, whole origins too; the origin's
 * highest survives a reopen though none of its rows is left, so a peer
 * sending them again finds them had (store_highest), not a gap. */
static void test_trims_by_age_and_keeps_the_mark(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    uint64_t now = util_wall_ms();
    for (uint64_t seq = 1; seq <= 30; seq++) {
        struct chat_message m = chat_msg(3, seq, 5, now - 7200000 + seq, "old");
        store_append(s, &m);
    }
    for (uint64_t seq = 1; seq <= 5; seq++) {
        struct chat_message m = chat_msg(4, seq, 5, seq <= 2 ? now - 7200000 : now, "mixed");
        store_append(s, &m);
    }
    wait_idle(f, s);
    assert_int_equal(count_rows(f, "1"), 35); /* no limit yet */
    set_retention(s, 3600000, 0, 0);
    /* The timer queues a commit with no rows (a quiet node trims too). */
    struct store_stats st = { 0 };
    while (st.trimmed < 32) {
        run_alive(f);
        store_stats_get(s, &st);
    }
    wait_idle(f, s);
    store_stats_get(s, &st);
    assert_int_equal(st.trimmed, 32);
    assert_int_equal(st.rows, 3);
    assert_true(st.oldest_ms == now);
    assert_int_equal(store_trimmed(s, 3), 30);
    assert_int_equal(store_trimmed(s, 4), 2);
    assert_int_equal(store_commits(s), 1); /* trimming alone is no batch of messages */
    close_store(f, s);

    s = open_store(f);
    assert_int_equal(count_rows(f, "origin = 3"), 0);
    assert_int_equal(store_highest(s, 3), 30);
    assert_int_equal(store_committed(s, 3), 30);
    assert_int_equal(store_trimmed(s, 3), 30);
    assert_int_equal(store_highest(s, 4), 5);
    close_store(f, s);
}

/* Under a byte limit the oldest rows of all origins go first, a step at a
 * time, and the store ends at or under the limit. */
static void test_trims_to_a_byte_limit(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    store_set_checkpoint_bytes(s, 64 * 1024);
    const uint64_t limit = 1u << 20;
    set_retention(s, 0, 0, limit);
    char text[1001];
    memset(text, 'b', 1000);
    text[1000] = '\0';
    uint64_t now = util_wall_ms();
    for (uint64_t seq = 1; seq <= 3000; seq++) {
        struct chat_message m = chat_msg(seq % 2 ? 1 : 2, (seq + 1) / 2, 9, now + seq, text);
        store_append(s, &m);
        if (seq % 100 == 0)
            wait_idle(f, s);
    }
    wait_idle(f, s);
    struct store_stats st = { 0 };
    store_stats_get(s, &st);
    const uint64_t file_limit = limit - 64 * 1024; /* the WAL's share, as in the store */
    while (st.file_bytes > file_limit) { /* the timer goes on while rows are over */
        run_alive(f);
        store_stats_get(s, &st);
    }
    assert_true(st.trimmed > 1000);
    assert_int_equal(st.rows + st.trimmed, 3000);
    assert_true(st.file_bytes > file_limit / 2);
    assert_true(st.rows > 100);
    /* Oldest first over both origins: their marks are close together. */
    uint64_t t1 = store_trimmed(s, 1), t2 = store_trimmed(s, 2);
    assert_true(t1 > 500 && t2 > 500);
    assert_true(t1 >= t2 && t1 - t2 <= 64);
    assert_int_equal(count_rows(f, "origin = 1 AND seq <= (SELECT trimmed FROM origins "
                                   "WHERE origin = 1)"), 0);
    close_store(f, s);
}

/* Runs the loop until the sweep has no pass under way, at most a minute
 * (a hang); each pass step is a commit the retention timer queues every
 * STORE_TRIM_PERIOD_MS. */
static void wait_sweep_done(struct fixture *f, store *s, struct store_stats *st)
{
    for (int i = 0; i < 6000; i++) {
        store_stats_get(s, st);
        if (!st->sweeping && !store_busy(s))
            return;
        run_alive(f);
    }
    fail_msg("the sweep did not finish its pass in a minute");
}

/* A chat left over its limit by a commit whose budget ran out, and that
 * gets no more messages, is brought under it by the sweep's commits with
 * no rows (the per-batch path alone checks only the chats of a batch). */
static void test_the_sweep_trims_a_chat_no_batch_brings(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    uint64_t now = util_wall_ms();
    /* Written with no limit: chat 1 holds 1100 rows. */
    for (uint64_t seq = 1; seq <= 1100; seq++) {
        struct chat_message m = chat_msg(1, seq, 1, now + seq, "x");
        store_append(s, &m);
    }
    wait_idle(f, s);
    s = reopen_with_chat_limit(f, s, 10);
    /* One batch: a row of chat 1, then 50 of chat 2. Its commit may remove
     * STORE_TRIM_STEP rows more than it brings (51), all spent on chat 1,
     * which is 1091 over. */
    for (uint64_t seq = 1101; seq <= 1151; seq++) {
        struct chat_message m = chat_msg(1, seq, seq == 1101 ? 1 : 2, now + seq, "x");
        store_append(s, &m);
    }
    wait_idle(f, s);
    struct store_stats st;
    store_stats_get(s, &st);
    assert_int_equal(st.trimmed, STORE_TRIM_STEP + 51);
    assert_int_equal(count_rows(f, "chat_id = 2"), 50);
    assert_true(st.sweeping);
    wait_sweep_done(f, s, &st);
    assert_int_equal(count_rows(f, "chat_id = 1"), 10);
    assert_int_equal(count_rows(f, "chat_id = 2"), 10);
    assert_int_equal(count_rows(f, "chat_id = 1 AND seq <= 1091"), 0);
    assert_int_equal(count_rows(f, "chat_id = 2 AND seq <= 1141"), 0);
    assert_int_equal(st.rows, 20);
    assert_int_equal(st.trimmed, 1131);
    /* The pass the batch left work to was followed by another. */
    assert_true(st.sweep_passes >= 2);
    assert_int_equal(store_commits(s), 1); /* the sweep's commits carry no rows */
    close_store(f, s);
}

/* A file written without a limit (or under a higher one) and reopened
 * with a lower one: the pass at open trims every chat, a bounded number
 * of chats per commit, with no message coming in. */
static void test_a_limit_lowered_at_reopen_trims_every_chat(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    uint64_t now = util_wall_ms();
    const uint64_t chats = STORE_SWEEP_CHATS + 44; /* two steps of the sweep at least */
    for (uint64_t seq = 1; seq <= 8 * chats; seq++) {
        struct chat_message m = chat_msg(2, seq, (int64_t)(seq % chats) - 100, now + seq, "y");
        store_append(s, &m);
    }
    wait_idle(f, s);
    s = reopen_with_chat_limit(f, s, 5);
    struct store_stats st;
    wait_sweep_done(f, s, &st);
    /* Each chat keeps its newest 5: every row above seq 3 * chats. */
    assert_int_equal(count_rows(f, "1"), 5 * chats);
    assert_int_equal(count_rows(f, "chat_id IN (SELECT chat_id FROM messages GROUP BY "
                                   "chat_id HAVING COUNT(*) <> 5)"), 0);
    char where[64];
    snprintf(where, sizeof(where), "seq <= %" PRIu64, 3 * chats);
    assert_int_equal(count_rows(f, where), 0);
    assert_int_equal(st.trimmed, 3 * chats);
    assert_true(st.trim_steps >= 2);
    assert_int_equal(st.sweep_passes, 1); /* nothing followed it: the sweep stopped */
    assert_int_equal(store_trimmed(s, 2), 3 * chats);
    assert_int_equal(store_commits(s), 0);
    close_store(f, s);
}

/* A skip past what the peers removed raises the origin's highest and mark
 * at once, is written with the next batch, and survives a reopen; a skip
 * not above the highest changes nothing. */
static void test_a_skip_is_kept(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    struct chat_message m = chat_msg(6, 1, 1, util_wall_ms(), "one");
    store_append(s, &m);
    wait_idle(f, s);
    uint64_t epoch = store_trim_epoch(s);
    store_skip(s, 9, 50);   /* an origin it has nothing of */
    store_skip(s, 6, 1);    /* not above its highest */
    assert_int_equal(store_highest(s, 9), 50);
    assert_int_equal(store_trimmed(s, 9), 50);
    assert_int_equal(store_committed(s, 9), 0); /* not written yet */
    assert_int_equal(store_trimmed(s, 6), 0);
    assert_true(store_trim_epoch(s) > epoch);
    assert_true(store_busy(s));
    wait_idle(f, s);
    assert_int_equal(store_committed(s, 9), 50);
    m = chat_msg(9, 51, 1, util_wall_ms(), "next");
    store_append(s, &m);
    wait_idle(f, s);
    close_store(f, s);

    s = open_store(f);
    assert_int_equal(store_highest(s, 9), 51);
    assert_int_equal(store_trimmed(s, 9), 50);
    assert_int_equal(store_highest(s, 6), 1);
    assert_int_equal(count_rows(f, "origin = 9"), 1);
    close_store(f, s);
}

/* A row below an origin's mark that the node lacks (a quiet chat's row a
 * peer still held when this node skipped past it) is stored and counted,
 * once however often it comes, before and after its commit; the origin's
 * highest, committed and mark stay; one above the mark is not taken here,
 * nor one of an origin it has no mark of. Per-chat retention then applies
 * to it like any row. */
static void test_rows_below_the_mark_are_backfilled_once(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    set_retention(s, 0, 3, 0);
    uint64_t now = util_wall_ms();
    store_skip(s, 1, 50);
    struct chat_message m = chat_msg(1, 51, 1, now + 51, "after");
    store_append(s, &m);
    wait_idle(f, s);
    uint64_t gen;
    /* Out of order (two peers' backfills interleave): each found after. */
    struct chat_message q9 = chat_msg(1, 9, 2, now + 9, "quiet9");
    assert_int_equal(store_append_below_floor(s, &q9, &gen), 1);
    assert_true(store_busy(s));
    assert_int_equal(store_append_below_floor(s, &q9, &gen), 0); /* in the pending batch */
    struct chat_message q = chat_msg(1, 7, 2, now + 7, "quiet7");
    assert_int_equal(store_append_below_floor(s, &q, &gen), 1);
    assert_int_equal(store_append_below_floor(s, &q, &gen), 0);
    assert_int_equal(store_append_below_floor(s, &q9, &gen), 0);
    size_t n;
    const struct store_origin *o = store_origins(s, &n);
    assert_int_equal(o[0].count, 3);
    assert_int_equal(o[0].highest, 51);
    wait_idle(f, s);
    assert_int_equal(store_append_below_floor(s, &q, &gen), 0); /* in the file */
    struct chat_message above = chat_msg(1, 52, 2, now + 52, "above");
    assert_int_equal(store_append_below_floor(s, &above, &gen), 0);
    struct chat_message other = chat_msg(5, 1, 2, now, "unknown origin");
    assert_int_equal(store_append_below_floor(s, &other, &gen), 0);
    o = store_origins(s, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].count, 3);
    assert_int_equal(o[0].highest, 51);
    assert_int_equal(o[0].committed, 51);
    assert_int_equal(o[0].trimmed, 50);
    assert_int_equal(count_rows(f, "chat_id = 2"), 2);
    struct store_rows rows = { 0 };
    assert_int_equal(store_read(s, 1, 0, 50, 10, &rows), 0);
    assert_int_equal(rows.n, 2);
    assert_int_equal(rows.msgs[0].seq, 7);
    assert_int_equal(rows.msgs[1].seq, 9);
    assert_memory_equal(rows.msgs[1].text, "quiet9", 6);
    store_rows_free(&rows);
    /* Chat 2 over its limit of 3: its oldest backfilled row goes. */
    for (uint64_t seq = 3; seq <= 4; seq++) {
        q = chat_msg(1, seq * 10, 2, now + seq * 10, "quiet");
        assert_int_equal(store_append_below_floor(s, &q, &gen), 1);
    }
    wait_idle(f, s);
    assert_int_equal(count_rows(f, "chat_id = 2"), 3);
    assert_int_equal(count_rows(f, "chat_id = 2 AND seq = 7"), 0);
    o = store_origins(s, &n);
    assert_int_equal(o[0].count, 4);
    assert_int_equal(o[0].trimmed, 50);
    close_store(f, s);

    s = open_store(f);
    o = store_origins(s, &n);
    assert_int_equal(o[0].count, 4);
    assert_int_equal(o[0].highest, 51);
    close_store(f, s);
}

/* Rows appended as the next of their origin and not committed yet when a
 * skip raises the mark past them (a peer's catch-up came first, its marks
 * then): a backfill of one of them finds it held, in either batch, and the
 * count stays right. */
static void test_a_skip_past_uncommitted_rows_keeps_them_held(void **state)
{
    struct fixture *f = *state;
    store *s = open_store(f);
    uint64_t now = util_wall_ms(), gen;
    struct chat_message m = chat_msg(1, 1, 2, now, "one");
    store_append(s, &m);
    m = chat_msg(1, 2, 2, now, "two");
    store_append(s, &m);
    store_skip(s, 1, 50);
    assert_int_equal(store_append_below_floor(s, &m, &gen), 0);
    m = chat_msg(1, 1, 2, now, "one");
    assert_int_equal(store_append_below_floor(s, &m, &gen), 0);
    m = chat_msg(1, 3, 2, now, "three");
    assert_int_equal(store_append_below_floor(s, &m, &gen), 1);
    wait_idle(f, s);
    size_t n;
    const struct store_origin *o = store_origins(s, &n);
    assert_int_equal(o[0].count, 3);
    assert_int_equal(count_rows(f, "origin = 1"), 3);
    close_store(f, s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_commit_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_when_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_size_of_new_and_old_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_retry_empties_the_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_strings_read_back_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_strings_in_a_many_row_insert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_fsync_and_bad_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_committed_apart_from_appended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_run_outside_the_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_commit_empties_a_runaway_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_first_layout_is_converted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_new_origin_survives_a_failed_first_batch, setup,
                                        teardown),
        cmocka_unit_test(test_parse_duration_and_size),
        cmocka_unit_test_setup_teardown(test_trims_a_busy_chat_and_keeps_a_quiet_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trims_by_age_and_keeps_the_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trims_to_a_byte_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_skip_is_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_sweep_trims_a_chat_no_batch_brings, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_limit_lowered_at_reopen_trims_every_chat, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rows_below_the_mark_are_backfilled_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_skip_past_uncommitted_rows_keeps_them_held, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
