/* store: see store.h. Two batches take turns: the loop appends to
 * `pending` while the worker commits `inflight`; when the worker is done the
 * loop swaps them and starts the next commit at once if anything waits.
 * A batch keeps its records packed in one growing arena, so appending costs
 * a copy, not a malloc. WAL checkpoints (which copy the WAL into the
 * database file and, but for --fsync off, fsync it) never run inside a
 * commit: SQLite's automatic checkpoint is off, and once a commit leaves
 * the WAL past STORE_CHECKPOINT_BYTES a checkpoint runs on a connection of
 * its own in another worker, while the next commits go on; only a WAL
 * those did not keep short (STORE_WAL_FORCE_FACTOR) is emptied by a
 * commit before its transaction. */
#include "node/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"

/* The page size of a new file. With 16 KiB rather than SQLite's 4 KiB a
 * commit writes fewer, fuller pages to the WAL and a checkpoint copies
 * fewer: 10-15 % less of the store's CPU per message, measured with
 * scripts/profile-steps.sh (docs/PERFORMANCE.md). A file keeps the size
 * it was made with. */
#define STORE_PAGE_SIZE 16384

/* WAL bytes after which a checkpoint starts: about SQLite's own automatic
 * threshold (1000 pages of 4 KiB), in pages of the file's size. */
#define STORE_CHECKPOINT_BYTES (4 * 1024 * 1024)

/* A checkpoint beside the commits copies what the WAL held when it began;
 * the WAL starts over at its beginning only when a commit finds all of it
 * copied, which commits in quick succession never do: under a heavy load
 * (big messages) it grew to 80 MiB against a 16 MiB --history-max-bytes.
 * Past this many times the threshold, the next commit first runs a
 * TRUNCATE checkpoint itself (copying the rest, emptying the file), which
 * that commit waits for. The WAL's share of the byte limit is this much. */
#define STORE_WAL_FORCE_FACTOR 2

/* A row's key is (slot << STORE_SEQ_BITS) | seq, the slot being the
 * origin's small number in the file (docs/PROTOCOL.md 3.1): one integer,
 * so an insert is a rowid B-tree search, not a record comparison. */
#define STORE_SEQ_BITS 40
#define STORE_SEQ_MASK ((1ull << STORE_SEQ_BITS) - 1)
#define STORE_MAX_SLOT ((1u << (63 - STORE_SEQ_BITS)) - 1)
_Static_assert(MESSAGE_SEQ_LIMIT <= (1ull << STORE_SEQ_BITS), "a seq must fit in its bits");

/* Rows per INSERT statement while a batch has that many left: one step
 * inserts them all through one cursor, which saves SQLite's per-statement
 * work (step, halt, reset) and a quarter of the insert's instructions. */
#define STORE_ROWS_PER_INSERT 32

struct rec {
    uint32_t origin;
    uint32_t sender_len;
    uint32_t text_len;
    uint32_t slot;
    uint64_t seq;
    uint64_t time_ms;
    int64_t chat_id;
    /* then sender and text bytes, the whole padded to 8 */
};

/* An origin's slot, written to the origins table by the batch that first
 * uses it (and again by every later one until one commits). */
struct slot_reg {
    uint32_t slot, origin;
};

/* An origin's low-water mark raised without rows (store_skip). */
struct skip {
    uint32_t slot;
    uint64_t upto;
};

struct batch {
    uint64_t gen;
    char *arena;
    size_t used, cap;
    size_t n;
    struct slot_reg *regs;     /* slots this batch registers */
    size_t nregs, capregs;
    struct skip *skips;        /* marks this batch writes */
    size_t nskips, capskips;
    uint64_t *below;           /* keys of its rows below their origin's mark
                                  (store_append_below_floor), for telling
                                  duplicates before the commit */
    size_t nbelow, capbelow;
};

static bool batch_empty(const struct batch *b)
{
    return b->n == 0 && b->nskips == 0;
}

/* origin -> slot, sorted by origin: every origin in the file, and those
 * given a slot since open. */
struct slot_of {
    uint32_t origin;
    uint32_t slot;
    uint64_t reg_gen;          /* the batch that registers it, if not stored */
    int stored;                /* in the origins table (a commit said so) */
};

struct waiter {
    uint64_t gen;
    void (*cb)(void *ud);
    void *ud;
    struct waiter *next;
};

struct store {
    uv_loop_t *loop;
    sqlite3 *wdb;              /* the worker's connection */
    sqlite3 *rdb;              /* the loop's connection, for reads */
    sqlite3 *cdb;              /* the checkpointer's connection */
    sqlite3_stmt *insert;      /* on wdb: one row */
    sqlite3_stmt *insert_many; /* on wdb: STORE_ROWS_PER_INSERT rows */
    sqlite3_stmt *reg;         /* on wdb: an origin's slot */
    sqlite3_stmt *select;      /* on rdb */
    enum store_fsync mode;
    store_commit_fn on_commit;
    void *ud;

    uv_check_t turn_end;       /* starts a commit at the end of a loop turn */
    uv_idle_t waker;           /* keeps poll from blocking while one is due */
    struct batch pending;      /* filled by the loop */
    struct batch inflight;     /* read by the worker while `working` */
    int working;
    uv_work_t work;
    int work_ok;
    char work_err[256];
    uint64_t committed_gen;
    /* A batch that failed to commit (disk full, I/O error) stays in
     * inflight and is tried again after retry_ms (doubling to
     * STORE_RETRY_MAX_MS) until it commits; meanwhile nothing more is
     * accepted (store_accepting) and nothing of it goes out. */
    uv_timer_t retry;
    int failing;
    unsigned retry_ms;
    uint64_t failing_since_ms;
    uint64_t failures;         /* failed commit attempts since open */
    uint64_t failures_before;  /* failures when the current failing began */
    char fail_err[256];

    struct waiter *waiters, **waiters_tail;

    struct store_origin *origins;
    size_t norigins, caporigins;
    struct slot_of *slots;     /* sorted by origin */
    size_t nslots, capslots;
    uint32_t max_slot;         /* the highest given */
    int slots_full_logged;

    int wal_pages;             /* in the WAL after the last commit (its worker) */
    int checkpoint_pages;      /* the threshold */
    int checkpointing;         /* a checkpoint is running in a worker */
    uv_work_t ckpt_work;
    int ckpt_rc;
    char ckpt_err[256];
    uint64_t checkpoints;      /* completed */
    uint64_t forced;           /* of which TRUNCATE ones run by a commit */
    int work_forced;           /* the commit in flight ran one */
    uint64_t commits;          /* batches committed */
    uint64_t commit_started_ns; /* uv_hrtime at start_commit */
    struct metrics_histogram commit_seconds;  /* start_commit to commit_done */
    struct metrics_histogram commit_sizes;    /* messages per committed batch */

    /* Retention (store.h). The worker fills trims, work_bytes, work_oldest
     * and work_more for the commit in flight; commit_done applies them. */
    struct store_retention ret;
    uv_timer_t trim_timer;     /* commits with no rows, for trimming */
    sqlite3_stmt *t_slots;     /* on wdb: every slot */
    sqlite3_stmt *t_head;      /* on wdb: a slot's first rows */
    sqlite3_stmt *t_del_range; /* on wdb: a key range */
    sqlite3_stmt *t_chat_edge; /* on wdb: a chat's newest row past its limit */
    sqlite3_stmt *t_chat_del;  /* on wdb: a chat's oldest rows up to that one */
    sqlite3_stmt *t_next_chat; /* on wdb: the least chat id at or above one */
    sqlite3_stmt *t_floor;     /* on wdb: raises origins.trimmed */
    sqlite3_stmt *t_pages, *t_free;
    uint64_t page_size;
    struct trim_res { uint32_t slot; uint64_t upto, rows; } *trims;
    size_t ntrims, captrims;
    uint32_t *wslots;          /* the worker's list of slots */
    size_t capwslots;
    int64_t *wchats;           /* the worker's list of a batch's chats */
    size_t capwchats;
    uint64_t work_bytes, work_wal, work_oldest;
    uint64_t work_trim_ns;     /* trim_work's time in the worker */
    struct metrics_histogram trim_seconds; /* of the commits that removed rows */
    struct metrics_histogram trim_loop_seconds; /* their apply_trims, on the loop */
    int work_more;
    int trim_more;             /* the last commit left rows over a limit */
    /* The sweep (per-chat limit, trim_sweep): a cursor over the distinct
     * chat ids that checks a few chats per commit, so that chats no batch
     * brings are brought under the limit too. The worker's: set by
     * store_set_retention before any commit, then only by commits; a
     * commit that fails gets back the state it started from (sweep_was),
     * since its deletes were rolled back. */
    struct sweep {
        int on;                /* a pass is under way */
        int again;             /* the per-batch path left chats unchecked during it */
        int64_t from;          /* the pass goes on at the least chat id >= this */
        uint64_t passes;       /* completed */
    } sweep, sweep_was;
    /* Copies for the loop, taken in commit_done. */
    int sweeping;
    uint64_t sweep_passes;
    uint64_t rows_trimmed, trim_steps, bytes, wal_bytes, oldest_ms, trim_epoch;

    int closing;
    int finished;              /* closing and nothing left: no more appends */
    int handles_open;
    void (*closed)(void *ud);
    void *closed_ud;
};

/* docs/PROTOCOL.md 3.1. `messages`, a view, shows the rows as (origin,
 * seq, ...) for people and scripts; the node itself reads `history`. */
static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS origins ("
    "  slot    INTEGER PRIMARY KEY,"      /* 1, 2, 3 ... in the order first stored */
    "  origin  INTEGER NOT NULL UNIQUE,"  /* node that accepted it from a client */
    "  trimmed INTEGER NOT NULL DEFAULT 0" /* seqs up to it may be gone (retention) */
    ");"
    "CREATE TABLE IF NOT EXISTS history ("
    "  key     INTEGER PRIMARY KEY,"      /* slot << 40 | seq */
    "  time_ms INTEGER NOT NULL,"         /* Unix ms when the origin accepted it */
    "  chat_id INTEGER NOT NULL,"
    "  sender  TEXT NOT NULL,"
    "  text    TEXT NOT NULL"
    ");";

static const char VIEW[] =
    "CREATE VIEW IF NOT EXISTS messages AS"
    "  SELECT o.origin AS origin, h.key & 1099511627775 AS seq, h.time_ms AS time_ms,"
    "         h.chat_id AS chat_id, h.sender AS sender, h.text AS text"
    "  FROM history h JOIN origins o ON o.slot = h.key >> 40;";

/* The layout before the origins table (one WITHOUT ROWID table keyed by
 * (origin, seq)) is converted once, in one transaction, when opened. */
static const char CONVERT[] =
    "BEGIN;"
    "INSERT INTO origins (origin) SELECT DISTINCT origin FROM messages ORDER BY origin;"
    "INSERT INTO history (key, time_ms, chat_id, sender, text)"
    "  SELECT (o.slot << 40) | m.seq, m.time_ms, m.chat_id, m.sender, m.text"
    "  FROM messages m JOIN origins o ON o.origin = m.origin;"
    "DROP TABLE messages;"
    "COMMIT;";

int store_parse_fsync(const char *s, enum store_fsync *out)
{
    if (strcmp(s, "always") == 0) *out = STORE_FSYNC_ALWAYS;
    else if (strcmp(s, "batch") == 0) *out = STORE_FSYNC_BATCH;
    else if (strcmp(s, "off") == 0) *out = STORE_FSYNC_OFF;
    else return -1;
    return 0;
}

enum store_fsync store_mode(const store *s) { return s->mode; }

/* ---- per-origin summary ------------------------------------------------- */

/* The origin summaries and the slots are both arrays sorted by origin, of
 * structs that begin with their uint32_t origin: one search and one
 * insertion serve both. */

_Static_assert(offsetof(struct store_origin, origin) == 0, "origin_pos reads it first");
_Static_assert(offsetof(struct slot_of, origin) == 0, "origin_pos reads it first");

/* Where origin is, or would go, among the n structs of size bytes at base;
 * *found says whether it is there. */
static size_t origin_pos(const void *base, size_t n, size_t size, uint32_t origin, int *found)
{
    const char *a = base;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (*(const uint32_t *)(a + mid * size) < origin)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < n && *(const uint32_t *)(a + lo * size) == origin;
    return lo;
}

/* Makes room at pos in the array *base of *n structs of size bytes (room
 * for *cap), growing it, and returns the zeroed gap. */
static void *origin_insert(void **base, size_t *n, size_t *cap, size_t size, size_t pos)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *base = xrealloc(*base, *cap * size);
    }
    char *a = *base;
    memmove(a + (pos + 1) * size, a + pos * size, (*n - pos) * size);
    (*n)++;
    return memset(a + pos * size, 0, size);
}

static struct store_origin *find_origin(const store *s, uint32_t origin)
{
    int found;
    size_t pos = origin_pos(s->origins, s->norigins, sizeof(*s->origins), origin, &found);
    return found ? &s->origins[pos] : NULL;
}

static struct store_origin *get_origin(store *s, uint32_t origin)
{
    int found;
    size_t pos = origin_pos(s->origins, s->norigins, sizeof(*s->origins), origin, &found);
    if (found)
        return &s->origins[pos];
    struct store_origin *o = origin_insert((void **)&s->origins, &s->norigins, &s->caporigins,
                                           sizeof(*o), pos);
    o->origin = origin;
    return o;
}

static struct slot_of *find_slot(const store *s, uint32_t origin)
{
    int found;
    size_t pos = origin_pos(s->slots, s->nslots, sizeof(*s->slots), origin, &found);
    return found ? &s->slots[pos] : NULL;
}

/* origin's slot, a new one when it has none; NULL when every slot is
 * taken (8 million origins). */
static struct slot_of *get_slot(store *s, uint32_t origin)
{
    int found;
    size_t pos = origin_pos(s->slots, s->nslots, sizeof(*s->slots), origin, &found);
    if (found)
        return &s->slots[pos];
    if (s->max_slot == STORE_MAX_SLOT)
        return NULL;
    struct slot_of *sl = origin_insert((void **)&s->slots, &s->nslots, &s->capslots,
                                       sizeof(*sl), pos);
    sl->origin = origin;
    sl->slot = ++s->max_slot;
    return sl;
}

const struct store_origin *store_origins(const store *s, size_t *n)
{
    *n = s->norigins;
    return s->origins;
}

uint64_t store_highest(const store *s, uint32_t origin)
{
    const struct store_origin *o = find_origin(s, origin);
    return o ? o->highest : 0;
}

uint64_t store_committed(const store *s, uint32_t origin)
{
    const struct store_origin *o = find_origin(s, origin);
    return o ? o->committed : 0;
}

uint64_t store_last_time(const store *s, uint32_t origin)
{
    const struct store_origin *o = find_origin(s, origin);
    return o ? o->last_time_ms : 0;
}

/* ---- opening ------------------------------------------------------------ */

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* The slots of the origins table, then per slot with rows: how many, the
 * highest seq, the latest time. */
static int load_origins(store *s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    uint32_t *origin_of = NULL; /* by slot */
    int rc;
    if (sqlite3_prepare_v2(s->rdb, "SELECT slot, origin, trimmed FROM origins ORDER BY slot",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 slot = sqlite3_column_int64(st, 0);
        sqlite3_int64 origin = sqlite3_column_int64(st, 1);
        if (slot < 1 || slot > STORE_MAX_SLOT || origin < 1 || origin > UINT32_MAX ||
            find_slot(s, (uint32_t)origin) != NULL) {
            sqlite3_finalize(st);
            snprintf(err, errlen, "the origins table has a bad row (slot %lld, origin %lld); "
                     "the file was changed by hand or is damaged",
                     (long long)slot, (long long)origin);
            return -1;
        }
        s->max_slot = (uint32_t)slot - 1; /* ascending: get_slot gives this one */
        struct slot_of *sl = get_slot(s, (uint32_t)origin);
        sl->stored = 1;
        sqlite3_int64 trimmed = sqlite3_column_int64(st, 2);
        if (trimmed > 0) {
            /* Everything of it may be gone: its highest is still that. */
            struct store_origin *o = get_origin(s, (uint32_t)origin);
            o->trimmed = o->highest = o->committed = (uint64_t)trimmed;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        goto fail;
    origin_of = xcalloc((size_t)s->max_slot + 1, sizeof(*origin_of));
    for (size_t i = 0; i < s->nslots; i++)
        origin_of[s->slots[i].slot] = s->slots[i].origin;
    if (sqlite3_prepare_v2(s->rdb,
                           "SELECT key >> 40, COUNT(*), MAX(key & 1099511627775), MAX(time_ms) "
                           "FROM history GROUP BY key >> 40",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 slot = sqlite3_column_int64(st, 0);
        if (slot < 1 || slot > s->max_slot || origin_of[slot] == 0) {
            sqlite3_finalize(st);
            free(origin_of);
            snprintf(err, errlen, "history rows of slot %lld, which the origins table does "
                     "not have; the file was changed by hand or is damaged", (long long)slot);
            return -1;
        }
        struct store_origin *o = get_origin(s, origin_of[slot]);
        o->count = (uint64_t)sqlite3_column_int64(st, 1);
        uint64_t highest = (uint64_t)sqlite3_column_int64(st, 2);
        o->highest = o->committed = UTIL_MAX(highest, o->trimmed);
        o->last_time_ms = (uint64_t)sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    free(origin_of);
    if (rc != SQLITE_DONE)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(s->rdb));
    return -1;
}

/* INSERT OR IGNORE of rows rows, 5 parameters each, into *st. */
static int prepare_insert(sqlite3 *db, int rows, sqlite3_stmt **st)
{
    static const char head[] = "INSERT OR IGNORE INTO history (key, time_ms, chat_id, sender, "
                               "text) VALUES ";
    static const char row[] = "(?, ?, ?, ?, ?),";
    char sql[sizeof(head) + STORE_ROWS_PER_INSERT * (sizeof(row) - 1)];
    char *o = sql;
    memcpy(o, head, sizeof(head) - 1);
    o += sizeof(head) - 1;
    for (int i = 0; i < rows; i++) {
        memcpy(o, row, sizeof(row) - 1);
        o += sizeof(row) - 1;
    }
    o[-1] = '\0'; /* the last comma */
    return sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

/* Creates the tables, converting the first layout if the file has it. */
static int open_schema(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    /* Before WAL mode and the first table: it sets a new file's page size
     * and is ignored for an existing one. */
    char page_size[48];
    snprintf(page_size, sizeof(page_size), "PRAGMA page_size=%d;", STORE_PAGE_SIZE);
    if (exec(db, page_size, err, errlen) != 0 ||
        exec(db, "PRAGMA journal_mode=WAL;", err, errlen) != 0 ||
        exec(db, SCHEMA, err, errlen) != 0)
        return -1;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'messages'", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    int rc = sqlite3_step(st);
    int old = rc == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    if (old) {
        log_info("history: converting the file to the layout with an origins table (once; "
                 "it takes a while for a big history)");
        if (exec(db, CONVERT, err, errlen) != 0) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        log_info("history: converted");
    }
    /* A file from before retention gets the origins' low-water marks;
     * older nodes still write it (they name the columns they insert). */
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM pragma_table_info('origins') WHERE "
                               "name = 'trimmed'", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    rc = sqlite3_step(st);
    int has_trimmed = rc == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    if (!has_trimmed &&
        exec(db, "ALTER TABLE origins ADD COLUMN trimmed INTEGER NOT NULL DEFAULT 0;", err,
             errlen) != 0)
        return -1;
    return exec(db, VIEW, err, errlen);
}

static void turn_end_cb(uv_check_t *h);

static void free_all(store *s)
{
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->insert_many);
    sqlite3_finalize(s->reg);
    sqlite3_finalize(s->select);
    sqlite3_finalize(s->t_slots);
    sqlite3_finalize(s->t_head);
    sqlite3_finalize(s->t_del_range);
    sqlite3_finalize(s->t_chat_edge);
    sqlite3_finalize(s->t_chat_del);
    sqlite3_finalize(s->t_next_chat);
    sqlite3_finalize(s->t_floor);
    sqlite3_finalize(s->t_pages);
    sqlite3_finalize(s->t_free);
    sqlite3_close(s->rdb);
    sqlite3_close(s->cdb);
    sqlite3_close(s->wdb); /* last: it runs the final checkpoint */
    free(s->pending.arena);
    free(s->inflight.arena);
    free(s->pending.regs);
    free(s->inflight.regs);
    free(s->pending.skips);
    free(s->inflight.skips);
    free(s->pending.below);
    free(s->inflight.below);
    free(s->origins);
    free(s->slots);
    free(s->trims);
    free(s->wslots);
    free(s->wchats);
    free(s);
}

/* After each commit on wdb, in the commit's worker: how big the WAL is.
 * Read by the loop in commit_done, which runs after the worker is done. */
static int wal_hook(void *ud, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    ((store *)ud)->wal_pages = pages;
    return SQLITE_OK;
}

/* Once per process, before SQLite initialises: no memory statistics. With
 * them on (the default) every allocation SQLite makes takes a global mutex,
 * about 2 % of a node's instructions while it stores messages; nothing here
 * reads them (sqlite3_memory_used). */
static uv_once_t sqlite_setup_once = UV_ONCE_INIT;
static int sqlite_setup_rc = SQLITE_OK;

static void sqlite_setup(void)
{
    sqlite_setup_rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

store *store_open(uv_loop_t *loop, const char *dir, enum store_fsync mode,
                  store_commit_fn on_commit, void *ud, char *err, size_t errlen)
{
    char path[1100];
    char why[300];
    store *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->mode = mode;
    s->on_commit = on_commit;
    s->ud = ud;
    s->waiters_tail = &s->waiters;
    s->pending.gen = 1;
    static const double seconds[] = { 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                      0.05,   0.1,   0.25,  0.5,   1,    2.5 };
    static const double sizes[] = { 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536 };
    metrics_histogram_init(&s->commit_seconds, seconds, sizeof(seconds) / sizeof(seconds[0]));
    metrics_histogram_init(&s->commit_sizes, sizes, sizeof(sizes) / sizeof(sizes[0]));
    metrics_histogram_init(&s->trim_seconds, seconds, sizeof(seconds) / sizeof(seconds[0]));
    static const double loop_seconds[] = { 0.000001, 0.000005, 0.00001, 0.00005, 0.0001,
                                           0.0005,   0.001,    0.005,   0.01 };
    metrics_histogram_init(&s->trim_loop_seconds, loop_seconds,
                           sizeof(loop_seconds) / sizeof(loop_seconds[0]));

    uv_once(&sqlite_setup_once, sqlite_setup);
    if (sqlite_setup_rc != SQLITE_OK)
        log_warn("store: cannot turn SQLite's memory statistics off (%s); storing works, "
                 "a little slower", sqlite3_errstr(sqlite_setup_rc));
    snprintf(path, sizeof(path), "%s/history.db", dir);
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    const char *sync = mode == STORE_FSYNC_ALWAYS ? "PRAGMA synchronous=FULL;"
                       : mode == STORE_FSYNC_BATCH ? "PRAGMA synchronous=NORMAL;"
                                                   : "PRAGMA synchronous=OFF;";
    if (sqlite3_open_v2(path, &s->wdb, flags, NULL) != SQLITE_OK) {
        snprintf(why, sizeof(why), "%s", s->wdb ? sqlite3_errmsg(s->wdb) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->wdb, 5000);
    if (open_schema(s->wdb, why, sizeof(why)) != 0 || exec(s->wdb, sync, why, sizeof(why)) != 0)
        goto fail;
    /* Checkpoints are ours to run (wal_hook, maybe_checkpoint); their
     * threshold is set below, once the page size is known. */
    if (exec(s->wdb, "PRAGMA wal_autocheckpoint=0;", why, sizeof(why)) != 0)
        goto fail;
    sqlite3_wal_hook(s->wdb, wal_hook, s);
    if (sqlite3_open_v2(path, &s->cdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(why, sizeof(why), "%s", s->cdb ? sqlite3_errmsg(s->cdb) : "out of memory");
        goto fail;
    }
    if (exec(s->cdb, sync, why, sizeof(why)) != 0)
        goto fail;
    if (prepare_insert(s->wdb, 1, &s->insert) != SQLITE_OK ||
        prepare_insert(s->wdb, STORE_ROWS_PER_INSERT, &s->insert_many) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "INSERT OR IGNORE INTO origins (slot, origin) VALUES (?1, ?2)",
                           -1, &s->reg, NULL) != SQLITE_OK) {
        snprintf(why, sizeof(why), "%s", sqlite3_errmsg(s->wdb));
        goto fail;
    }
    if (sqlite3_prepare_v2(s->wdb, "SELECT slot FROM origins ORDER BY slot", -1, &s->t_slots,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "SELECT key, time_ms FROM history WHERE key > ?1 AND key < ?2 "
                           "ORDER BY key LIMIT ?3", -1, &s->t_head, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "DELETE FROM history WHERE key >= ?1 AND key <= ?2", -1,
                           &s->t_del_range, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "SELECT time_ms, key FROM history WHERE chat_id = ?1 "
                           "ORDER BY time_ms DESC, key DESC LIMIT 1 OFFSET ?2", -1,
                           &s->t_chat_edge, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "DELETE FROM history WHERE key IN (SELECT key FROM history "
                           "WHERE chat_id = ?1 AND (time_ms < ?2 OR (time_ms = ?2 AND key <= ?3)) "
                           "ORDER BY time_ms, key LIMIT ?4) RETURNING key", -1, &s->t_chat_del,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "SELECT MIN(chat_id) FROM history WHERE chat_id >= ?1", -1,
                           &s->t_next_chat, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "UPDATE origins SET trimmed = ?2 WHERE slot = ?1 AND "
                           "trimmed < ?2", -1, &s->t_floor, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "PRAGMA page_count", -1, &s->t_pages, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->wdb, "PRAGMA freelist_count", -1, &s->t_free, NULL) != SQLITE_OK) {
        snprintf(why, sizeof(why), "%s", sqlite3_errmsg(s->wdb));
        goto fail;
    }
    {
        sqlite3_stmt *ps;
        if (sqlite3_prepare_v2(s->wdb, "PRAGMA page_size", -1, &ps, NULL) != SQLITE_OK) {
            snprintf(why, sizeof(why), "%s", sqlite3_errmsg(s->wdb));
            goto fail;
        }
        sqlite3_int64 size = sqlite3_step(ps) == SQLITE_ROW ? sqlite3_column_int64(ps, 0) : 0;
        sqlite3_finalize(ps);
        s->page_size = size > 0 ? (uint64_t)size : 4096; /* divides below */
        store_set_checkpoint_bytes(s, STORE_CHECKPOINT_BYTES);
    }
    if (sqlite3_open_v2(path, &s->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(why, sizeof(why), "%s", s->rdb ? sqlite3_errmsg(s->rdb) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->rdb, 5000);
    if (sqlite3_prepare_v2(s->rdb,
                           "SELECT key & 1099511627775, time_ms, chat_id, sender, text "
                           "FROM history WHERE key > ?1 AND key <= ?2 ORDER BY key LIMIT ?3",
                           -1, &s->select, NULL) != SQLITE_OK) {
        snprintf(why, sizeof(why), "%s", sqlite3_errmsg(s->rdb));
        goto fail;
    }
    if (load_origins(s, why, sizeof(why)) != 0)
        goto fail;
    uv_check_init(loop, &s->turn_end);
    s->turn_end.data = s;
    uv_check_start(&s->turn_end, turn_end_cb);
    uv_unref((uv_handle_t *)&s->turn_end);
    uv_idle_init(loop, &s->waker);
    s->waker.data = s; /* referenced: a batch to commit keeps the loop alive */
    uv_timer_init(loop, &s->retry);
    s->retry.data = s;
    uv_timer_init(loop, &s->trim_timer);
    s->trim_timer.data = s;
    return s;
fail:
    snprintf(err, errlen, "cannot open the history %s: %s", path, why);
    free_all(s);
    return NULL;
}

/* ---- writing ------------------------------------------------------------ */

#define REC_ALIGN(x) (((x) + 7) & ~(size_t)7)


static void start_commit(store *s);

static void waker_cb(uv_idle_t *h)
{
    (void)h; /* being active keeps the loop's poll from blocking */
}

/* End of a loop turn: everything appended during it goes in one batch,
 * unless a commit is still running (then it waits for the next turn). */
static void turn_end_cb(uv_check_t *h)
{
    store *s = h->data;
    /* Either way poll may block now: commit_done wakes the loop itself and
     * restarts the waker if anything waits for the next commit. */
    uv_idle_stop(&s->waker);
    if (batch_empty(&s->pending) || s->working)
        return;
    start_commit(s);
}

/* origin's slot, registered with the pending batch if the file does not
 * have it yet (written with that batch; again with the next until one
 * commits); NULL when every slot is taken (logged once). */
static struct slot_of *pending_slot(store *s, uint32_t origin)
{
    struct batch *b = &s->pending;
    struct slot_of *sl = get_slot(s, origin);
    if (sl == NULL) {
        if (!s->slots_full_logged)
            log_error("history: %u origins already, no room for origin %" PRIu32 "; its "
                      "messages are delivered but not stored (start this node on an empty "
                      "--data-dir)", STORE_MAX_SLOT, origin);
        s->slots_full_logged = 1;
        return NULL;
    }
    if (!sl->stored && sl->reg_gen != b->gen) {
        if (b->nregs == b->capregs) {
            b->capregs = b->capregs ? 2 * b->capregs : 8;
            b->regs = xrealloc(b->regs, b->capregs * sizeof(*b->regs));
        }
        b->regs[b->nregs++] = (struct slot_reg){ .slot = sl->slot, .origin = origin };
        sl->reg_gen = b->gen;
    }
    return sl;
}

/* Where key is or would go in b->below, which is kept sorted: a big
 * backfill brings thousands of rows between two commits, each looked up
 * first (batch_has_below). */
static size_t below_pos(const struct batch *b, uint64_t key)
{
    size_t lo = 0, hi = b->nbelow;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->below[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void batch_add_below(struct batch *b, uint64_t key)
{
    size_t i = below_pos(b, key); /* a peer's rows come ascending: the end */
    if (i < b->nbelow && b->below[i] == key)
        return;
    if (b->nbelow == b->capbelow) {
        b->capbelow = b->capbelow ? 2 * b->capbelow : 16;
        b->below = xrealloc(b->below, b->capbelow * sizeof(*b->below));
    }
    memmove(b->below + i + 1, b->below + i, (b->nbelow - i) * sizeof(*b->below));
    b->below[i] = key;
    b->nbelow++;
}

/* The mark of the origin of slot rose to mark: the rows of it that batch b
 * appended before as the next of their origin are now below the mark too.
 * Noted with the batch's rows below marks, so that a peer's backfill of
 * one of them finds it held before it commits (store_append_below_floor).
 * A scan of the batch: marks rise by a skip (rare) or a commit's trim. */
static void batch_note_below(struct batch *b, uint32_t slot, uint64_t mark)
{
    for (size_t off = 0, i = 0; i < b->n; i++) {
        const struct rec *r = (const struct rec *)(b->arena + off);
        if (r->slot == slot && r->seq <= mark)
            batch_add_below(b, ((uint64_t)slot << STORE_SEQ_BITS) | r->seq);
        off += REC_ALIGN(sizeof(*r) + r->sender_len + r->text_len);
    }
}

void store_skip(store *s, uint32_t origin, uint64_t upto)
{
    if (upto <= store_highest(s, origin))
        return;
    struct slot_of *sl = pending_slot(s, origin);
    if (sl == NULL)
        return;
    struct batch *b = &s->pending;
    if (b->nskips == b->capskips) {
        b->capskips = b->capskips ? 2 * b->capskips : 8;
        b->skips = xrealloc(b->skips, b->capskips * sizeof(*b->skips));
    }
    b->skips[b->nskips++] = (struct skip){ sl->slot, upto };
    struct store_origin *o = get_origin(s, origin);
    if (o->committed < o->highest) { /* rows of it not committed yet */
        batch_note_below(b, sl->slot, upto);
        if (s->working)
            batch_note_below(&s->inflight, sl->slot, upto);
    }
    o->highest = upto;
    o->trimmed = UTIL_MAX(o->trimmed, upto);
    s->trim_epoch++;
    uv_idle_start(&s->waker, waker_cb); /* the check must come soon */
}

uint64_t store_append(store *s, const struct chat_message *m)
{
    struct batch *b = &s->pending;
    struct slot_of *sl = pending_slot(s, m->origin);
    if (sl == NULL)
        return b->gen;
    size_t need = REC_ALIGN(sizeof(struct rec) + m->sender_len + m->text_len);
    if (b->used + need > b->cap) {
        b->cap = UTIL_MAX(b->cap * 2, b->used + need + 64 * 1024);
        b->arena = xrealloc(b->arena, b->cap);
    }
    struct rec *r = (struct rec *)(b->arena + b->used);
    *r = (struct rec){ .origin = m->origin, .sender_len = m->sender_len,
                       .text_len = m->text_len, .slot = sl->slot, .seq = m->seq,
                       .time_ms = m->time_ms, .chat_id = m->chat_id };
    char *p = (char *)(r + 1);
    memcpy(p, m->sender, m->sender_len);
    memcpy(p + m->sender_len, m->text, m->text_len);
    b->used += need;
    b->n++;

    struct store_origin *o = get_origin(s, m->origin);
    o->count++;
    if (m->seq > o->highest)
        o->highest = m->seq;
    if (m->time_ms > o->last_time_ms)
        o->last_time_ms = m->time_ms;

    if (b->n == 1)
        uv_idle_start(&s->waker, waker_cb); /* the check must come soon */
    return b->gen;
}

/* Whether batch b holds the row of key (its rows below their marks only). */
static bool batch_has_below(const struct batch *b, uint64_t key)
{
    size_t i = below_pos(b, key);
    return i < b->nbelow && b->below[i] == key;
}

/* Whether the history file holds the row of key (committed): 1, 0, or -1
 * on a read error (logged). */
static int file_holds(store *s, uint64_t key)
{
    sqlite3_stmt *st = s->select;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(key - 1));
    sqlite3_bind_int64(st, 2, (sqlite3_int64)key);
    sqlite3_bind_int64(st, 3, 1);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        log_error("history: cannot look up a message: %s", sqlite3_errmsg(s->rdb));
        return -1;
    }
    return rc == SQLITE_ROW;
}

int store_append_below_floor(store *s, const struct chat_message *m, uint64_t *gen)
{
    struct store_origin *o = find_origin(s, m->origin);
    *gen = s->pending.gen;
    if (o == NULL || m->seq == 0 || m->seq > o->trimmed)
        return 0;
    struct slot_of *sl = find_slot(s, m->origin);
    if (sl == NULL)
        return 0; /* never: a mark above 0 comes with a slot */
    /* The rows between the mark and the highest are all held, but below
     * the mark any may be missing: ask the file, and the batches not
     * committed yet (their rows below a mark are few: a list). */
    uint64_t key = ((uint64_t)sl->slot << STORE_SEQ_BITS) | m->seq;
    if (batch_has_below(&s->pending, key) || (s->working && batch_has_below(&s->inflight, key)))
        return 0;
    int held = file_holds(s, key);
    if (held != 0)
        return held < 0 ? -1 : 0;
    batch_add_below(&s->pending, key);
    /* store_append counts it and leaves highest as it is (seq is below);
     * committed and the mark do not move either. */
    *gen = store_append(s, m);
    return 1;
}

int store_busy(const store *s)
{
    return s->working || !batch_empty(&s->pending);
}

size_t store_backlog(const store *s)
{
    return s->pending.used + s->inflight.used;
}

int store_accepting(const store *s)
{
    return !s->finished && !s->failing &&
           s->pending.used + s->inflight.used < STORE_MAX_PENDING;
}

const char *store_failing(const store *s, uint64_t *since_ms)
{
    if (!s->failing)
        return NULL;
    if (since_ms != NULL)
        *since_ms = s->failing_since_ms;
    return s->fail_err;
}

uint64_t store_failures(const store *s)
{
    return s->failures;
}

/* ---- trimming (in the commit's worker) ---------------------------------- */

/* Rows removed of slot up to seq upto: noted for commit_done. */
static void trim_note(store *s, uint32_t slot, uint64_t upto, uint64_t rows)
{
    for (size_t i = 0; i < s->ntrims; i++) {
        if (s->trims[i].slot == slot) {
            s->trims[i].upto = UTIL_MAX(s->trims[i].upto, upto);
            s->trims[i].rows += rows;
            return;
        }
    }
    if (s->ntrims == s->captrims) {
        s->captrims = s->captrims ? 2 * s->captrims : 16;
        s->trims = xrealloc(s->trims, s->captrims * sizeof(*s->trims));
    }
    s->trims[s->ntrims++] = (struct trim_res){ slot, upto, rows };
}

/* Steps st, which has no result rows; SQLITE_DONE or an error code. */
static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

/* The first row of slot: its seq and time (found 0 when it has none). */
static int slot_head(store *s, uint32_t slot, uint64_t *seq, uint64_t *time_ms, int *found)
{
    sqlite3_int64 base = (sqlite3_int64)((uint64_t)slot << STORE_SEQ_BITS);
    sqlite3_bind_int64(s->t_head, 1, base);
    sqlite3_bind_int64(s->t_head, 2, base + (sqlite3_int64)(1ull << STORE_SEQ_BITS));
    sqlite3_bind_int64(s->t_head, 3, 1);
    int rc = sqlite3_step(s->t_head);
    *found = rc == SQLITE_ROW;
    if (*found) {
        *seq = (uint64_t)sqlite3_column_int64(s->t_head, 0) & STORE_SEQ_MASK;
        *time_ms = (uint64_t)sqlite3_column_int64(s->t_head, 1);
    }
    sqlite3_reset(s->t_head);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Deletes the first rows of slot, at most max, those older than cut only
 * (an origin's times never go down, so they are a prefix: one range
 * delete). *removed says how many. */
static int trim_slot_head(store *s, uint32_t slot, uint64_t cut, uint64_t max, uint64_t *removed)
{
    sqlite3_int64 base = (sqlite3_int64)((uint64_t)slot << STORE_SEQ_BITS);
    sqlite3_bind_int64(s->t_head, 1, base);
    sqlite3_bind_int64(s->t_head, 2, base + (sqlite3_int64)(1ull << STORE_SEQ_BITS));
    sqlite3_bind_int64(s->t_head, 3, (sqlite3_int64)max);
    sqlite3_int64 first = 0, last = 0;
    uint64_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s->t_head)) == SQLITE_ROW &&
           (uint64_t)sqlite3_column_int64(s->t_head, 1) < cut) {
        last = sqlite3_column_int64(s->t_head, 0);
        if (n++ == 0)
            first = last;
    }
    sqlite3_reset(s->t_head);
    *removed = 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rc;
    if (n == 0)
        return SQLITE_OK;
    sqlite3_bind_int64(s->t_del_range, 1, first);
    sqlite3_bind_int64(s->t_del_range, 2, last);
    if ((rc = step_reset(s->t_del_range)) != SQLITE_DONE)
        return rc;
    *removed = n;
    trim_note(s, slot, (uint64_t)last & STORE_SEQ_MASK, n);
    return SQLITE_OK;
}

/* The database file's pages in use, in bytes (freed pages are reused by
 * later inserts, so this, not the file's size, is what grows). */
static int store_bytes(store *s, uint64_t *bytes)
{
    int rc = sqlite3_step(s->t_pages);
    uint64_t pages = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s->t_pages, 0) : 0;
    sqlite3_reset(s->t_pages);
    if (rc != SQLITE_ROW)
        return rc;
    rc = sqlite3_step(s->t_free);
    uint64_t free_pages = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s->t_free, 0) : 0;
    sqlite3_reset(s->t_free);
    if (rc != SQLITE_ROW)
        return rc;
    *bytes = (pages - UTIL_MIN(free_pages, pages)) * s->page_size;
    return SQLITE_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Brings chat under the per-chat limit: its oldest rows past its newest
 * max_messages go, at most *budget of them. *done says whether it is under
 * the limit now (not when the budget ran out first). */
static int trim_chat(store *s, int64_t chat, uint64_t *budget, int *done)
{
    *done = 0;
    sqlite3_bind_int64(s->t_chat_edge, 1, chat);
    sqlite3_bind_int64(s->t_chat_edge, 2, (sqlite3_int64)s->ret.max_messages);
    int rc = sqlite3_step(s->t_chat_edge);
    sqlite3_int64 edge_time = 0, edge_key = 0;
    if (rc == SQLITE_ROW) {
        edge_time = sqlite3_column_int64(s->t_chat_edge, 0);
        edge_key = sqlite3_column_int64(s->t_chat_edge, 1);
    }
    sqlite3_reset(s->t_chat_edge);
    if (rc == SQLITE_DONE) {
        *done = 1; /* within its limit */
        return SQLITE_OK;
    }
    if (rc != SQLITE_ROW)
        return rc;
    if (*budget == 0)
        return SQLITE_OK;
    uint64_t asked = *budget;
    sqlite3_bind_int64(s->t_chat_del, 1, chat);
    sqlite3_bind_int64(s->t_chat_del, 2, edge_time);
    sqlite3_bind_int64(s->t_chat_del, 3, edge_key);
    sqlite3_bind_int64(s->t_chat_del, 4, (sqlite3_int64)asked);
    uint64_t removed = 0;
    while ((rc = sqlite3_step(s->t_chat_del)) == SQLITE_ROW) {
        uint64_t key = (uint64_t)sqlite3_column_int64(s->t_chat_del, 0);
        trim_note(s, (uint32_t)(key >> STORE_SEQ_BITS), key & STORE_SEQ_MASK, 1);
        removed++;
    }
    sqlite3_reset(s->t_chat_del);
    if (rc != SQLITE_DONE)
        return rc;
    *budget -= removed;
    /* Fewer than asked: the delete reached the edge row. */
    *done = removed < asked;
    return SQLITE_OK;
}

/* The chats over the per-chat limit among those of batch b: their oldest
 * rows, up to *budget in all. *left says whether some of b's chats may
 * still be over the limit (the budget ran out first): the sweep takes
 * them then. */
static int trim_chats(store *s, const struct batch *b, uint64_t *budget, int *left)
{
    size_t n = 0;
    *left = 0;
    if (b->n > s->capwchats) {
        s->capwchats = b->n;
        s->wchats = xrealloc(s->wchats, s->capwchats * sizeof(*s->wchats));
    }
    for (size_t off = 0, i = 0; i < b->n; i++) {
        const struct rec *r = (const struct rec *)(b->arena + off);
        s->wchats[n++] = r->chat_id;
        off += REC_ALIGN(sizeof(*r) + r->sender_len + r->text_len);
    }
    if (n == 0)
        return SQLITE_OK; /* a commit with no rows: its chats were checked */
    qsort(s->wchats, n, sizeof(*s->wchats), cmp_i64);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && s->wchats[i] == s->wchats[i - 1])
            continue;
        if (*budget == 0) {
            *left = 1;
            break;
        }
        int done, rc = trim_chat(s, s->wchats[i], budget, &done);
        if (rc != SQLITE_OK)
            return rc;
        if (!done)
            *left = 1;
    }
    if (*left)
        s->work_more = 1;
    return SQLITE_OK;
}

/* Chats per commit the sweep checks: each check reads up to max_messages
 * + 1 index entries, so STORE_SWEEP_SCAN entries in all, at least one chat
 * and at most STORE_SWEEP_CHATS. */
#define STORE_SWEEP_SCAN 16384
static uint64_t sweep_step_chats(const store *s)
{
    uint64_t per = STORE_SWEEP_SCAN / (s->ret.max_messages + 1);
    return UTIL_MAX(UTIL_MIN(per, (uint64_t)STORE_SWEEP_CHATS), (uint64_t)1);
}

/* Starts a pass over every chat at the least chat id, or, while one is
 * under way, says that it must be followed by another. */
static void sweep_arm(store *s)
{
    if (s->sweep.on) {
        s->sweep.again = 1;
        return;
    }
    s->sweep.on = 1;
    s->sweep.again = 0;
    s->sweep.from = INT64_MIN;
}

/* A pass completed: the sweep ends, or another pass follows. */
static void sweep_end(store *s)
{
    s->sweep.passes++;
    s->sweep.on = 0;
    if (s->sweep.again)
        sweep_arm(s); /* it starts with the next step */
}

/* The sweep's step: the next few chats of the pass, in chat id order,
 * each brought under the per-chat limit out of *budget. The cursor never
 * passes a chat still over the limit (the budget ran out in it: the next
 * commit goes on with it), so a completed pass leaves every chat it
 * checked within the limit; rows that come meanwhile are the per-batch
 * path's (trim_chats), and what that path leaves makes another pass
 * follow. A pass that completes with none to follow ends the sweep until
 * sweep_arm. */
static int trim_sweep(store *s, uint64_t *budget)
{
    uint64_t chats = sweep_step_chats(s);
    while (s->sweep.on && chats > 0 && *budget > 0) {
        sqlite3_bind_int64(s->t_next_chat, 1, s->sweep.from);
        int rc = sqlite3_step(s->t_next_chat);
        int end = rc != SQLITE_ROW || sqlite3_column_type(s->t_next_chat, 0) == SQLITE_NULL;
        int64_t chat = end ? 0 : sqlite3_column_int64(s->t_next_chat, 0);
        sqlite3_reset(s->t_next_chat);
        if (rc != SQLITE_ROW)
            return rc;
        if (end) {
            sweep_end(s);
            break;
        }
        int done;
        if ((rc = trim_chat(s, chat, budget, &done)) != SQLITE_OK)
            return rc;
        chats--;
        if (!done)
            break; /* the budget ran out in it: it comes first next time */
        if (chat == INT64_MAX) { /* no id above it */
            sweep_end(s);
            break;
        }
        s->sweep.from = chat + 1;
    }
    if (s->sweep.on && *budget == 0)
        s->work_more = 1;
    return SQLITE_OK;
}

/* After the batch's inserts, in its transaction: removes what is over the
 * limits, oldest first, at most STORE_TRIM_STEP rows more than the batch
 * inserted, and writes the
 * origins' new low-water marks; then measures the store for the metrics.
 * Returns SQLITE_OK or an error code (the transaction is then rolled
 * back: the batch is retried like any that fails). */
static int trim_work(store *s, const struct batch *b)
{
    const struct store_retention *ret = &s->ret;
    /* As many as the batch brings, and more: a store over a limit never
     * grows, whatever the batches' size (a flat-out bench commits several
     * thousand rows at a time). */
    uint64_t budget = STORE_TRIM_STEP + b->n;
    int rc;
    size_t nslots = 0;
    s->ntrims = 0;
    s->work_more = 0;
    while ((rc = sqlite3_step(s->t_slots)) == SQLITE_ROW) {
        if (nslots == s->capwslots) {
            s->capwslots = s->capwslots ? 2 * s->capwslots : 16;
            s->wslots = xrealloc(s->wslots, s->capwslots * sizeof(*s->wslots));
        }
        s->wslots[nslots++] = (uint32_t)sqlite3_column_int64(s->t_slots, 0);
    }
    sqlite3_reset(s->t_slots);
    if (rc != SQLITE_DONE)
        return rc;
    if (ret->max_age_ms > 0) {
        uint64_t now = util_wall_ms(); /* time_ms is wall-clock */
        uint64_t cut = now > ret->max_age_ms ? now - ret->max_age_ms : 0;
        for (size_t i = 0; i < nslots && budget > 0; i++) {
            uint64_t removed;
            if ((rc = trim_slot_head(s, s->wslots[i], cut, budget, &removed)) != SQLITE_OK)
                return rc;
            budget -= removed;
        }
        if (budget == 0)
            s->work_more = 1;
    }
    if (ret->max_messages > 0) {
        int left = 0;
        if ((rc = trim_chats(s, b, &budget, &left)) != SQLITE_OK)
            return rc;
        if (left)
            sweep_arm(s);
        if ((rc = trim_sweep(s, &budget)) != SQLITE_OK)
            return rc;
    }
    uint64_t bytes = 0;
    if ((rc = store_bytes(s, &bytes)) != SQLITE_OK)
        return rc;
    /* The WAL takes up to STORE_WAL_FORCE_FACTOR times the checkpoint
     * threshold, whatever the rows, plus the commit that passes it; the
     * file, between two trims, one batch more than it keeps (its rows are
     * inserted before the trim that makes room): the file's pages get
     * the rest of the byte limit, with room for two batches like this
     * one (at most half of what is left). */
    uint64_t wal_cap = (uint64_t)STORE_WAL_FORCE_FACTOR * s->checkpoint_pages * s->page_size;
    uint64_t file_limit = ret->max_bytes > wal_cap ? ret->max_bytes - wal_cap : 1;
    file_limit -= UTIL_MIN(2 * (uint64_t)b->used, file_limit / 2);
    /* Over the byte limit: the oldest head among the origins, a chunk at a
     * time, until under it or out of budget. */
    while (ret->max_bytes > 0 && bytes > file_limit && budget > 0) {
        uint32_t oldest_slot = 0;
        uint64_t oldest = UINT64_MAX;
        for (size_t i = 0; i < nslots; i++) {
            uint64_t seq, t;
            int found;
            if ((rc = slot_head(s, s->wslots[i], &seq, &t, &found)) != SQLITE_OK)
                return rc;
            if (found && t < oldest) {
                oldest = t;
                oldest_slot = s->wslots[i];
            }
        }
        if (oldest_slot == 0)
            break; /* nothing left to remove */
        uint64_t removed;
        if ((rc = trim_slot_head(s, oldest_slot, UINT64_MAX, UTIL_MIN(budget, (uint64_t)64),
                                 &removed)) != SQLITE_OK)
            return rc;
        budget -= removed;
        if ((rc = store_bytes(s, &bytes)) != SQLITE_OK)
            return rc;
        if (budget == 0 && bytes > file_limit)
            s->work_more = 1;
    }
    for (size_t i = 0; i < s->ntrims; i++) {
        sqlite3_bind_int64(s->t_floor, 1, s->trims[i].slot);
        sqlite3_bind_int64(s->t_floor, 2, (sqlite3_int64)s->trims[i].upto);
        if ((rc = step_reset(s->t_floor)) != SQLITE_DONE)
            return rc;
    }
    s->work_bytes = bytes;
    s->work_wal = (uint64_t)s->wal_pages * s->page_size;
    s->work_oldest = 0;
    for (size_t i = 0; i < nslots; i++) {
        uint64_t seq, t;
        int found;
        if ((rc = slot_head(s, s->wslots[i], &seq, &t, &found)) != SQLITE_OK)
            return rc;
        if (found && (s->work_oldest == 0 || t < s->work_oldest))
            s->work_oldest = t;
    }
    return SQLITE_OK;
}

/* Worker thread: one transaction for the whole batch. */
static void commit_work(uv_work_t *w)
{
    store *s = w->data;
    struct batch *b = &s->inflight;
    sqlite3 *db = s->wdb;
    s->work_ok = 0;
    s->sweep_was = s->sweep;
    s->work_forced = 0;
    /* A retry after a failed commit empties the WAL too: on a full disk the
     * WAL holds the space (up to the threshold, 4 MiB, before a checkpoint
     * would start; several versions of the same pages), and emptying it
     * into the database gives most of it back. Seen on a 4 MiB file
     * system, where the WAL alone filled what a freed disk had left. */
    if (s->wal_pages >= STORE_WAL_FORCE_FACTOR * s->checkpoint_pages ||
        (s->failing && s->wal_pages > 0)) {
        /* BUSY while the checkpoint beside us runs: the next commit tries
         * again (maybe_checkpoint starts no other meanwhile). */
        if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) ==
            SQLITE_OK) {
            s->work_forced = 1;
            s->wal_pages = 0;
        }
    }
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    for (size_t i = 0; i < b->nregs; i++) {
        sqlite3_bind_int64(s->reg, 1, b->regs[i].slot);
        sqlite3_bind_int64(s->reg, 2, b->regs[i].origin);
        int rc = sqlite3_step(s->reg);
        if (rc != SQLITE_DONE)
            snprintf(s->work_err, sizeof(s->work_err), "%s", sqlite3_errmsg(db));
        sqlite3_reset(s->reg);
        if (rc != SQLITE_DONE) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return;
        }
    }
    for (size_t i = 0; i < b->nskips; i++) {
        sqlite3_bind_int64(s->t_floor, 1, b->skips[i].slot);
        sqlite3_bind_int64(s->t_floor, 2, (sqlite3_int64)b->skips[i].upto);
        if (step_reset(s->t_floor) != SQLITE_DONE) {
            snprintf(s->work_err, sizeof(s->work_err), "%s", sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return;
        }
    }
    for (size_t off = 0, i = 0; i < b->n;) {
        /* STORE_ROWS_PER_INSERT rows at a time while there are, then one */
        size_t rows = b->n - i >= STORE_ROWS_PER_INSERT ? STORE_ROWS_PER_INSERT : 1;
        sqlite3_stmt *st = rows > 1 ? s->insert_many : s->insert;
        for (int k = 0; k < (int)rows; k++, i++) {
            const struct rec *r = (const struct rec *)(b->arena + off);
            const char *p = (const char *)(r + 1);
            sqlite3_bind_int64(st, 5 * k + 1,
                               (sqlite3_int64)(((uint64_t)r->slot << STORE_SEQ_BITS) | r->seq));
            sqlite3_bind_int64(st, 5 * k + 2, (sqlite3_int64)r->time_ms);
            sqlite3_bind_int64(st, 5 * k + 3, r->chat_id);
            /* p is never NULL (it follows the record's header), so an empty
             * sender or text binds as '': a NULL pointer would bind SQL
             * NULL, which NOT NULL and INSERT OR IGNORE would drop without a
             * word. */
            sqlite3_bind_text(st, 5 * k + 4, p, (int)r->sender_len, SQLITE_STATIC);
            sqlite3_bind_text(st, 5 * k + 5, p + r->sender_len, (int)r->text_len, SQLITE_STATIC);
            off += REC_ALIGN(sizeof(*r) + r->sender_len + r->text_len);
        }
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
            snprintf(s->work_err, sizeof(s->work_err), "%s", sqlite3_errmsg(db));
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return; /* work_ok stays 0; work_err says why */
        }
    }
    uint64_t trim_start = uv_hrtime();
    int trim_rc = trim_work(s, b);
    s->work_trim_ns = uv_hrtime() - trim_start;
    if (trim_rc != SQLITE_OK) {
        snprintf(s->work_err, sizeof(s->work_err), "%s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(s->work_err, sizeof(s->work_err), "%s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    s->work_ok = 1;
    return;
fail:
    snprintf(s->work_err, sizeof(s->work_err), "%s", sqlite3_errmsg(db));
}

static void finish_close(store *s);
static void commit_done(uv_work_t *w, int status);
static void start_commit(store *s);
static void trim_timer_cb(uv_timer_t *t);

/* ---- checkpoints -------------------------------------------------------- */

/* A worker: a PASSIVE checkpoint copies what the WAL holds into the
 * database file as far as readers allow, without waiting for anyone and
 * without stopping the commits that go on meanwhile on wdb. */
static void checkpoint_work(uv_work_t *w)
{
    store *s = w->data;
    int log_frames = 0, done_frames = 0;
    s->ckpt_rc = sqlite3_wal_checkpoint_v2(s->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                           &log_frames, &done_frames);
    if (s->ckpt_rc != SQLITE_OK)
        snprintf(s->ckpt_err, sizeof(s->ckpt_err), "%s", sqlite3_errmsg(s->cdb));
}

static void checkpoint_done(uv_work_t *w, int status)
{
    store *s = w->data;
    s->checkpointing = 0;
    if (status == 0 && s->ckpt_rc == SQLITE_OK)
        s->checkpoints++;
    else if (status != 0 || s->ckpt_rc != SQLITE_BUSY)
        log_warn("history: a checkpoint of the WAL failed: %s; the WAL grows until one "
                 "succeeds (check the disk under the data dir)",
                 status != 0 ? uv_strerror(status) : s->ckpt_err);
    if (s->closing && !store_busy(s))
        finish_close(s);
}

/* On the loop, after a commit: starts a checkpoint if the WAL has grown
 * past the threshold and none is running. */
static void maybe_checkpoint(store *s)
{
    if (s->checkpointing || s->closing || s->wal_pages < s->checkpoint_pages)
        return;
    if (s->wal_pages >= STORE_WAL_FORCE_FACTOR * s->checkpoint_pages &&
        (s->working || !batch_empty(&s->pending)))
        return; /* the next commit truncates it */
    s->ckpt_work.data = s;
    if (uv_queue_work(s->loop, &s->ckpt_work, checkpoint_work, checkpoint_done) == 0)
        s->checkpointing = 1;
}

void store_set_checkpoint_bytes(store *s, uint64_t bytes)
{
    s->checkpoint_pages = (int)UTIL_MIN(UTIL_MAX(bytes / s->page_size, 1), INT32_MAX);
}

uint64_t store_commits(const store *s)
{
    return s->commits;
}

/* ---- retention ---------------------------------------------------------- */

/* Digits then a unit from units (each with its factor); none: factor 1. */
static int parse_scaled(const char *s, const char *const *units, const uint64_t *factors,
                        size_t nunits, uint64_t max, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    uint64_t factor = 0;
    if (*end == '\0')
        factor = factors[0];
    for (size_t i = 0; i < nunits && factor == 0; i++)
        if (strcmp(end, units[i]) == 0)
            factor = factors[i];
    if (factor == 0 || v > max / factor)
        return -1;
    *out = v * factor;
    return 0;
}

int store_parse_duration(const char *s, uint64_t *ms)
{
    static const char *const units[] = { "s", "ms", "m", "h", "d" };
    static const uint64_t factors[] = { 1000, 1, 60000, 3600000, 86400000 };
    return parse_scaled(s, units, factors, 5, 3650ull * 86400000, ms);
}

int store_parse_size(const char *s, uint64_t *bytes)
{
    static const char *const units[] = { "B", "K", "M", "G", "T" };
    static const uint64_t factors[] = { 1, 1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40 };
    return parse_scaled(s, units, factors, 5, 1ull << 50, bytes);
}

int store_set_retention(store *s, const struct store_retention *r, char *err, size_t errlen)
{
    s->ret = *r;
    /* No commit has run yet: the worker's sweep fields are the loop's. A
     * pass at open brings every chat under the limit, which may be lower
     * than the one the file was written under. */
    s->sweep.on = s->sweeping = r->max_messages > 0;
    s->sweep.again = 0;
    s->sweep.from = INT64_MIN;
    if (r->max_messages > 0) {
        log_info("history: indexing the history by chat for --history-max-messages (once; "
                 "a while for a big file)");
        if (exec(s->wdb, "CREATE INDEX IF NOT EXISTS history_chat ON history (chat_id, time_ms);",
                 err, errlen) != 0)
            return -1;
    } else if (exec(s->wdb, "DROP INDEX IF EXISTS history_chat;", err, errlen) != 0) {
        return -1;
    }
    uint64_t period = STORE_TRIM_PERIOD_MS;
    if (r->max_age_ms > 0)
        period = UTIL_MAX(UTIL_MIN(period, r->max_age_ms / 4), (uint64_t)50);
    if (r->max_age_ms > 0 || r->max_messages > 0 || r->max_bytes > 0) {
        uv_timer_start(&s->trim_timer, trim_timer_cb, period, period);
        uv_unref((uv_handle_t *)&s->trim_timer);
    }
    return 0;
}

void store_stats_get(const store *s, struct store_stats *out)
{
    uint64_t rows = 0;
    for (size_t i = 0; i < s->norigins; i++)
        rows += s->origins[i].count;
    *out = (struct store_stats){ .rows = rows, .bytes = s->bytes + s->wal_bytes,
                                 .file_bytes = s->bytes, .oldest_ms = s->oldest_ms,
                                 .trimmed = s->rows_trimmed, .trim_steps = s->trim_steps,
                                 .sweeping = s->sweeping, .sweep_passes = s->sweep_passes };
}

uint64_t store_trimmed(const store *s, uint32_t origin)
{
    const struct store_origin *o = find_origin(s, origin);
    return o ? o->trimmed : 0;
}

const struct metrics_histogram *store_trim_seconds(const store *s)
{
    return &s->trim_seconds;
}

const struct metrics_histogram *store_trim_loop_seconds(const store *s)
{
    return &s->trim_loop_seconds;
}

uint64_t store_trim_epoch(const store *s)
{
    return s->trim_epoch;
}

const struct metrics_histogram *store_commit_seconds(const store *s)
{
    return &s->commit_seconds;
}

const struct metrics_histogram *store_commit_sizes(const store *s)
{
    return &s->commit_sizes;
}

uint64_t store_checkpoints(const store *s)
{
    return s->checkpoints;
}

uint64_t store_checkpoints_forced(const store *s)
{
    return s->forced;
}

/* The batch b committed: its rows are in the history, so its origins'
 * committed marks rise. (Every origin of b has its entry: appending made it.) */
static void raise_committed(store *s, const struct batch *b)
{
    struct store_origin *o = NULL;
    for (size_t off = 0, i = 0; i < b->n; i++) {
        const struct rec *r = (const struct rec *)(b->arena + off);
        if (o == NULL || o->origin != r->origin)
            o = find_origin(s, r->origin);
        if (o != NULL && r->seq > o->committed)
            o->committed = r->seq;
        off += REC_ALIGN(sizeof(*r) + r->sender_len + r->text_len);
    }
}

/* The summary of the origin with that slot (a linear search: the slots
 * are sorted by origin, and there are as many as nodes). */
static struct store_origin *origin_of_slot(store *s, uint32_t slot)
{
    for (size_t k = 0; k < s->nslots; k++)
        if (s->slots[k].slot == slot)
            return find_origin(s, s->slots[k].origin);
    return NULL;
}

/* On the loop, after a commit: what its worker removed lowers the origins'
 * counts and raises their low-water marks. */
static void apply_trims(store *s)
{
    uint64_t start = uv_hrtime(), rows = 0;
    for (size_t i = 0; i < s->ntrims; i++) {
        const struct trim_res *t = &s->trims[i];
        struct store_origin *o = origin_of_slot(s, t->slot);
        rows += t->rows;
        if (o == NULL)
            continue;
        o->count -= UTIL_MIN(o->count, t->rows);
        if (t->upto > o->trimmed) {
            o->trimmed = t->upto;
            s->trim_epoch++;
            batch_note_below(&s->pending, t->slot, t->upto); /* the next batch's */
        }
    }
    s->ntrims = 0;
    s->rows_trimmed += rows;
    s->trim_steps += rows > 0;
    if (rows > 0) {
        metrics_histogram_observe(&s->trim_seconds, (double)s->work_trim_ns / 1e9);
        metrics_histogram_observe(&s->trim_loop_seconds, (double)(uv_hrtime() - start) / 1e9);
    }
    s->trim_more = s->work_more;
    s->sweeping = s->sweep.on;
    s->sweep_passes = s->sweep.passes;
    s->bytes = s->work_bytes;
    s->wal_bytes = s->work_wal;
    s->oldest_ms = s->work_oldest;
}

/* The retention timer: a commit with no rows when nothing else commits
 * and an age limit is set (rows age without any write), the last commit
 * left rows over a limit, or the sweep is under way. */
static void trim_timer_cb(uv_timer_t *t)
{
    store *s = t->data;
    if (s->closing || s->working || s->failing || s->pending.n > 0)
        return;
    if (s->ret.max_age_ms > 0 || s->trim_more || s->sweeping)
        start_commit(s);
}

/* Hands the batch in inflight to a worker (a first try, or a retry).
 * uv_queue_work only fails on bad arguments. */
static int queue_inflight(store *s)
{
    s->commit_started_ns = uv_hrtime();
    s->work.data = s;
    return uv_queue_work(s->loop, &s->work, commit_work, commit_done);
}

static void retry_cb(uv_timer_t *t)
{
    store *s = t->data;
    if (queue_inflight(s) != 0) /* try again later rather than hang */
        uv_timer_start(&s->retry, retry_cb, s->retry_ms, 0);
}

/* The batch in inflight failed: it stays there and is tried again later,
 * unless the store is closing, when it is given up (returns 1). */
static int commit_failed(store *s, const char *why)
{
    struct batch *b = &s->inflight;
    s->failures++;
    snprintf(s->fail_err, sizeof(s->fail_err), "%s", why);
    if (s->closing) {
        log_error("history: cannot store a batch of %zu messages (%s) and the node is "
                  "stopping: they are not in this node's history; none of this node's own "
                  "among them was sent to anyone, and peers will send theirs again",
                  b->n, why);
        return 1;
    }
    if (!s->failing) {
        s->failing = 1;
        s->failing_since_ms = util_now_ms();
        s->failures_before = s->failures - 1;
        s->retry_ms = STORE_RETRY_MIN_MS;
        log_error("history: cannot store a batch of %zu messages: %s; retrying, and "
                  "refusing new messages until it is stored (free space under the data "
                  "dir); nothing unstored goes out", b->n, why);
    } else if ((s->failures - s->failures_before) % 64 == 0) {
        log_error("history: still cannot store a batch of %zu messages after %" PRIu64
                  " s: %s", b->n, (util_now_ms() - s->failing_since_ms) / 1000, why);
    }
    uv_timer_start(&s->retry, retry_cb, s->retry_ms, 0);
    s->retry_ms = UTIL_MIN(2 * s->retry_ms, STORE_RETRY_MAX_MS);
    return 0;
}

static void commit_done(uv_work_t *w, int status)
{
    store *s = w->data;
    struct batch *b = &s->inflight;
    int ok = status == 0 && s->work_ok;
    if (status == 0 && s->work_forced) {
        s->checkpoints++;
        s->forced++;
        s->work_forced = 0;
    }
    if (!ok)
        s->sweep = s->sweep_was; /* its deletes were rolled back */
    if (!ok && !commit_failed(s, status != 0 ? uv_strerror(status) : s->work_err))
        return; /* still working on it: retry_cb */
    if (ok) {
        raise_committed(s, b);
        if (s->failing)
            log_info("history: storing again after %" PRIu64 " s and %" PRIu64
                     " failed attempts; taking messages again",
                     (util_now_ms() - s->failing_since_ms) / 1000,
                     s->failures - s->failures_before);
        s->failing = 0;
    }
    if (ok)
        apply_trims(s);
    if (ok && b->n > 0) { /* a commit with no rows only trimmed */
        s->commits++;
        metrics_histogram_observe(&s->commit_seconds,
                                  (double)(uv_hrtime() - s->commit_started_ns) / 1e9);
        metrics_histogram_observe(&s->commit_sizes, (double)b->n);
    }
    for (size_t i = 0; ok && i < b->nregs; i++)
        find_slot(s, b->regs[i].origin)->stored = 1;
    for (size_t i = 0; ok && i < b->nskips; i++) {
        struct store_origin *o = origin_of_slot(s, b->skips[i].slot);
        if (o != NULL)
            o->committed = UTIL_MAX(o->committed, b->skips[i].upto);
    }
    s->working = 0;
    s->committed_gen = b->gen;
    b->n = 0;
    b->used = 0;
    b->nregs = 0;
    b->nskips = 0;
    b->nbelow = 0;
    if (!batch_empty(&s->pending)) {
        if (s->closing)
            start_commit(s); /* the loop may have nothing else to run for */
        else
            uv_idle_start(&s->waker, waker_cb); /* this turn's check commits it */
    }
    if (s->on_commit)
        s->on_commit(s->committed_gen, ok, s->ud);
    while (s->waiters != NULL && s->waiters->gen <= s->committed_gen) {
        struct waiter *wt = s->waiters;
        s->waiters = wt->next;
        if (s->waiters == NULL)
            s->waiters_tail = &s->waiters;
        wt->cb(wt->ud);
        free(wt);
    }
    maybe_checkpoint(s);
    if (s->closing && !store_busy(s) && !s->checkpointing)
        finish_close(s);
}

static void start_commit(store *s)
{
    /* Swap: the full pending batch goes to the worker, the empty one
     * (memory kept) takes the next generation. */
    struct batch spare = s->inflight;
    s->inflight = s->pending;
    s->pending = spare;
    s->pending.gen = s->inflight.gen + 1;
    s->pending.n = 0;
    s->pending.used = 0;
    s->pending.nregs = 0;
    s->pending.nskips = 0;
    s->pending.nbelow = 0;
    s->working = 1;
    int rc = queue_inflight(s);
    if (rc != 0) {
        /* Only fails on bad arguments; say so loudly rather than hang. */
        log_error("history: cannot start a commit: %s", uv_strerror(rc));
        s->working = 0;
    }
}

void store_when_committed(store *s, void (*cb)(void *ud), void *ud)
{
    if (!store_busy(s)) {
        cb(ud);
        return;
    }
    struct waiter *w = xmalloc(sizeof(*w));
    w->gen = !batch_empty(&s->pending) ? s->pending.gen : s->inflight.gen;
    w->cb = cb;
    w->ud = ud;
    w->next = NULL;
    *s->waiters_tail = w;
    s->waiters_tail = &w->next;
}

/* ---- reading ------------------------------------------------------------ */

void store_rows_free(struct store_rows *r)
{
    free(r->msgs);
    free(r->arena);
    free(r->offs);
    memset(r, 0, sizeof(*r));
}

/* Copies len bytes of a column into the set's arena; returns their offset.
 * The arena is allocated at the first copy even when it copies nothing:
 * SQLite returns a NULL pointer for a zero-length value (sender and text
 * may be ""), and a message's strings must point somewhere all the same
 * (message.h), never be NULL + 0. */
static size_t rows_copy(struct store_rows *r, const void *data, size_t len)
{
    if (r->arena == NULL || r->used + len > r->arena_cap) {
        r->arena_cap = UTIL_MAX(r->arena_cap * 2, r->used + len + 4096);
        r->arena = xrealloc(r->arena, r->arena_cap);
    }
    size_t off = r->used;
    if (len)
        memcpy(r->arena + off, data, len);
    r->used += len;
    return off;
}

static bool chat_in(int64_t chat, const int64_t *chats, size_t n)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (chats[mid] == chat)
            return true;
        if (chats[mid] < chat)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

int store_read_chats(store *s, uint32_t origin, uint64_t after, uint64_t upto, size_t limit,
                     const int64_t *chats, size_t nchats, size_t scan,
                     struct store_rows *out, uint64_t *seen)
{
    sqlite3_stmt *st = s->select;
    const struct slot_of *sl = find_slot(s, origin);
    *seen = upto;
    if (sl == NULL || after >= STORE_SEQ_MASK)
        return 0; /* nothing of it in the file: the whole range looked at */
    *seen = after;
    uint64_t base = (uint64_t)sl->slot << STORE_SEQ_BITS;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(base | after));
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(base | UTIL_MIN(upto, STORE_SEQ_MASK)));
    sqlite3_bind_int64(st, 3, (sqlite3_int64)UTIL_MIN(chats ? scan : limit, (size_t)INT64_MAX));
    size_t kept = 0, looked = 0;
    int rc = SQLITE_DONE;
    while (kept < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        int64_t chat = sqlite3_column_int64(st, 2);
        looked++;
        *seen = seq;
        if (chats != NULL && !chat_in(chat, chats, nchats))
            continue;
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 64;
            out->msgs = xrealloc(out->msgs, out->cap * sizeof(*out->msgs));
            out->offs = xrealloc(out->offs, 2 * out->cap * sizeof(*out->offs));
        }
        struct chat_message *m = &out->msgs[out->n];
        m->origin = origin;
        m->seq = seq;
        m->time_ms = (uint64_t)sqlite3_column_int64(st, 1);
        m->chat_id = chat;
        const void *sender = sqlite3_column_blob(st, 3);
        m->sender_len = (uint32_t)sqlite3_column_bytes(st, 3);
        out->offs[2 * out->n] = rows_copy(out, sender, m->sender_len);
        const void *text = sqlite3_column_blob(st, 4);
        m->text_len = (uint32_t)sqlite3_column_bytes(st, 4);
        out->offs[2 * out->n + 1] = rows_copy(out, text, m->text_len);
        m->plain = false; /* not looked at */
        out->n++;
        kept++;
    }
    if (rc == SQLITE_DONE && looked < (chats ? scan : limit))
        *seen = upto; /* the whole range was looked at */
    if (kept == limit)
        rc = SQLITE_DONE; /* stopped by the limit, not by an error */
    sqlite3_reset(st);
    for (size_t i = 0; i < out->n; i++) {
        out->msgs[i].sender = out->arena + out->offs[2 * i];
        out->msgs[i].text = out->arena + out->offs[2 * i + 1];
    }
    if (rc != SQLITE_DONE) {
        log_error("history: cannot read messages of origin %" PRIu32 ": %s", origin,
                  sqlite3_errmsg(s->rdb));
        return -1;
    }
    return 0;
}

int store_read(store *s, uint32_t origin, uint64_t after, uint64_t upto, size_t limit,
               struct store_rows *out)
{
    uint64_t seen;
    return store_read_chats(s, origin, after, upto, limit, NULL, 0, 0, out, &seen);
}

/* ---- closing ------------------------------------------------------------ */

static void handle_closed_cb(uv_handle_t *h)
{
    store *s = h->data;
    if (--s->handles_open > 0)
        return;
    void (*done)(void *) = s->closed;
    void *ud = s->closed_ud;
    free_all(s);
    if (done)
        done(ud);
}

static void finish_close(store *s)
{
    s->finished = 1;
    while (s->waiters != NULL) { /* nothing is pending, so none can be left */
        struct waiter *w = s->waiters;
        s->waiters = w->next;
        w->cb(w->ud);
        free(w);
    }
    s->handles_open = 4;
    uv_close((uv_handle_t *)&s->trim_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&s->turn_end, handle_closed_cb);
    uv_close((uv_handle_t *)&s->waker, handle_closed_cb);
    uv_close((uv_handle_t *)&s->retry, handle_closed_cb);
}

void store_close(store *s, void (*done)(void *ud), void *ud)
{
    s->closing = 1;
    s->closed = done;
    s->closed_ud = ud;
    if (s->failing && uv_is_active((uv_handle_t *)&s->retry)) {
        /* One last try now; if it fails too, commit_failed gives it up. */
        uv_timer_stop(&s->retry);
        retry_cb(&s->retry);
    }
    if (s->working)
        return; /* commit_done goes on once the last batch is in */
    if (!batch_empty(&s->pending))
        start_commit(s);
    else if (!s->checkpointing) /* else checkpoint_done finishes */
        finish_close(s);
}
