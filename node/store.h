/* store: the node's history, in SQLite (DATA_DIR/history.db, WAL mode):
 * every message it accepted from a client or learned from a peer, keyed by
 * (origin, seq). Writes never block the loop: appended messages collect in
 * a batch that a worker thread commits in one transaction while the next
 * batch fills (group commit: the busier the node, the bigger the batches).
 * A commit callback tells the relay when a batch is durable, so that the
 * node's own messages go out only once stored and a restart never reuses a
 * sequence number. Reads (catch-up, history) run on the loop thread on a
 * second connection and see committed rows. Schema: docs/PROTOCOL.md. */
#ifndef DCHAT_STORE_H
#define DCHAT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <jansson.h>

#include "common/metrics.h"
#include "node/message.h"

enum store_fsync {
    STORE_FSYNC_ALWAYS, /* each batch is fsync'd before its messages go out */
    STORE_FSYNC_BATCH,  /* committed before they go out; fsync'd by SQLite at
                           WAL checkpoints: safe against a process crash */
    STORE_FSYNC_OFF,    /* stored after they go out, never fsync'd: fastest;
                           a crash may lose the last batch here (peers keep
                           their copies) and reuse its sequence numbers */
};

int store_parse_fsync(const char *s, enum store_fsync *out);

typedef struct store store;

/* Called on the loop thread after every batch up to generation gen is
 * committed (ok = 1). A batch that fails is retried until it commits;
 * only when the store closes with one still failing is this called with
 * ok = 0 (logged): those messages are not stored and must not go out. */
typedef void (*store_commit_fn)(uint64_t gen, int ok, void *ud);

/* Opens (creating) DIR/history.db. Returns NULL after writing the reason
 * into err. */
store *store_open(uv_loop_t *loop, const char *dir, enum store_fsync mode,
                  store_commit_fn on_commit, void *ud, char *err, size_t errlen);

enum store_fsync store_mode(const store *s);

/* Queues m (strings copied) for the next batch and returns the generation
 * of that batch. */
uint64_t store_append(store *s, const struct chat_message *m);

/* Whether something appended is not committed yet. */
int store_busy(const store *s);

/* Bytes of records appended and not yet committed (the disk's backlog). */
size_t store_backlog(const store *s);

/* Whether store_append may be called: not once the store has finished
 * closing, nor while a batch fails to commit (store_failing), nor while
 * more than STORE_MAX_PENDING bytes wait for a commit (the disk is behind;
 * the caller refuses or defers the message). */
#define STORE_MAX_PENDING (64u << 20)
int store_accepting(const store *s);

/* While a batch cannot be committed (a full disk, an I/O error): why, as
 * SQLite said, and since when (*since_ms, util_now_ms's clock; may be
 * NULL); NULL when the store is writing normally. The batch is retried
 * every STORE_RETRY_MIN_MS doubling to STORE_RETRY_MAX_MS until it
 * commits, and store_accepting is false meanwhile. */
#define STORE_RETRY_MIN_MS 100
#define STORE_RETRY_MAX_MS 2000
const char *store_failing(const store *s, uint64_t *since_ms);

/* Failed commit attempts since open. */
uint64_t store_failures(const store *s);

/* Runs cb(ud) on the loop thread once everything appended so far is
 * committed; at once (before returning) when nothing is pending. */
void store_when_committed(store *s, void (*cb)(void *ud), void *ud);

/* Per origin, in ascending origin order: how many messages and the
 * highest seq appended (stored or about to be: what the node has, for
 * telling duplicates and gaps), and the highest seq written by a batch that
 * committed (what the node may claim to hold, in its MARKS). A failed batch
 * raises `highest` but never `committed`. */
struct store_origin {
    uint32_t origin;        /* first: store.c searches the array on it */
    uint64_t count;
    uint64_t highest;       /* appended */
    uint64_t committed;     /* in a committed batch (or in the history at open) */
    uint64_t last_time_ms;  /* the latest time_ms among them */
    uint64_t trimmed;       /* the low-water mark, less one: every seq up to it
                               may be gone (removed by retention, or skipped
                               because the peers had removed it: store_skip);
                               every seq above it up to `highest` is held.
                               0: nothing removed */
};
const struct store_origin *store_origins(const store *s, size_t *n);
/* The highest seq appended for origin, 0 when none. */
uint64_t store_highest(const store *s, uint32_t origin);
/* The highest seq of origin in a batch that committed, 0 when none. */
uint64_t store_committed(const store *s, uint32_t origin);
/* The latest time_ms appended for origin, 0 when none. */
uint64_t store_last_time(const store *s, uint32_t origin);

/* Rows read back: msgs[i] strings point into the set's own memory, empty
 * ones too (never NULL). */
struct store_rows {
    struct chat_message *msgs;
    size_t n, cap;
    char *arena;             /* the strings */
    size_t used, arena_cap;
    size_t *offs;            /* per message: sender and text offsets */
};
void store_rows_free(struct store_rows *r);

/* Appends to out the committed messages of origin with after < seq <=
 * upto, ascending, at most limit. Returns 0, or -1 (logged). */
int store_read(store *s, uint32_t origin, uint64_t after, uint64_t upto, size_t limit,
               struct store_rows *out);

/* The same for a client in chat rooms: appends only the messages whose
 * chatId is one of chats (nchats, sorted ascending), at most limit, having
 * looked at no more than scan rows of the range (chats NULL: every
 * message counts, scan is not used); *seen is set so that every message of
 * origin with after < seq <= *seen was looked at: upto when the whole
 * range was, after when nothing was. Returns 0, or -1. */
int store_read_chats(store *s, uint32_t origin, uint64_t after, uint64_t upto, size_t limit,
                     const int64_t *chats, size_t nchats, size_t scan,
                     struct store_rows *out, uint64_t *seen);

/* ---- retention (docs/PROTOCOL.md 3.3) ----------------------------------
 * Limits every node of a cluster applies alike. Rows over a limit are
 * deleted, oldest first, inside the commit's transaction in its worker,
 * after the batch's inserts, at most STORE_TRIM_STEP rows per commit more
 * than the batch inserted (so a store over a limit never grows); a
 * timer queues a commit with no rows every STORE_TRIM_PERIOD_MS (less for a
 * short age limit) while an age limit is set, rows over a limit are left
 * or the sweep is under way, so a quiet node trims too. Nothing of it runs
 * on the loop.
 * A per-chat limit is checked on the chats of each batch, and by the
 * sweep: a pass over every chat id, at most STORE_SWEEP_CHATS chats per
 * commit (fewer for a large limit), which runs once from open (a limit
 * lowered since the file was written) and again whenever a commit could
 * not bring all its batch's chats under the limit; it stops after a pass
 * that nothing followed. */
struct store_retention {
    uint64_t max_age_ms;    /* rows older than this go; 0: no age limit */
    uint64_t max_messages;  /* per chat, the newest kept; 0: no limit */
    uint64_t max_bytes;     /* the whole store (file pages in use + WAL); 0: none */
};
#define STORE_TRIM_STEP 1000
#define STORE_TRIM_PERIOD_MS 1000
#define STORE_SWEEP_CHATS 256
#define STORE_DEFAULT_MAX_BYTES (1ull << 30)
/* The WAL takes up to twice the checkpoint threshold (2000 pages of 4 KiB,
 * store.c) whatever the rows, so the file's pages in use are kept under the
 * byte limit less that (and less room for two batches); below this much a
 * limit would leave them little. */
#define STORE_MIN_MAX_BYTES (16ull << 20)

/* "30d", "12h", "90m", "45s", "500ms", or plain seconds; "0" is 0. Returns
 * 0, or -1 when s is not such a duration (or above ten years). */
int store_parse_duration(const char *s, uint64_t *ms);
/* "512M", "2G", "64K", "1T" (powers of 1024), or plain bytes; "0" is 0.
 * Returns 0, or -1. */
int store_parse_size(const char *s, uint64_t *bytes);

/* Sets the limits; call before the first append. With a per-chat limit the
 * history gets an index on (chat_id, time_ms) (built now: a while for a big
 * file), without one that index is dropped (it costs every insert).
 * Returns 0, or -1 with err filled. */
int store_set_retention(store *s, const struct store_retention *r, char *err, size_t errlen);

/* What the history holds and what retention removed, as of the last
 * commit. */
struct store_stats {
    uint64_t rows;          /* held (committed or appended) */
    uint64_t bytes;         /* file pages in use + WAL, at the last commit */
    uint64_t file_bytes;    /* of which the file's pages in use */
    uint64_t oldest_ms;     /* time_ms of the oldest row held; 0 when none */
    uint64_t trimmed;       /* rows removed by retention since open */
    uint64_t trim_steps;    /* commits that removed rows since open */
    int sweeping;           /* a pass of the per-chat sweep is under way */
    uint64_t sweep_passes;  /* passes of the sweep completed since open */
};
void store_stats_get(const store *s, struct store_stats *out);

/* Of the commits that removed rows: the seconds the worker spent in the
 * retention step (finding, deleting and measuring), inside the commit's
 * transaction; the loop spends none of it. */
const struct metrics_histogram *store_trim_seconds(const store *s);
/* Of the same commits: the time the loop spent applying what the worker
 * removed (apply_trims: the origins' counts and low-water marks). */
const struct metrics_histogram *store_trim_loop_seconds(const store *s);

/* origin's low-water mark less one (store_origin.trimmed), 0 when none. */
uint64_t store_trimmed(const store *s, uint32_t origin);

/* The peers removed every message of origin up to upto and this node has
 * less (it was away longer than the retention): its highest and low-water
 * mark jump to upto, so that the next message it takes is upto + 1, and
 * the jump is written with the next batch (a restart keeps it). Nothing
 * when upto is not above its highest. */
void store_skip(store *s, uint32_t origin, uint64_t upto);

/* A message of origin at or below its low-water mark (m->seq <=
 * store_trimmed): one a peer still held below its own mark and sent as
 * backfill (docs/PROTOCOL.md 2.4). When this node does not hold that row
 * (neither in the file nor in a batch not committed yet), it is queued
 * like store_append (strings copied) and counted in the origin's count;
 * the origin's highest, committed and low-water mark do not move, and
 * retention then applies to it as to any row. Returns 1 when queued (*gen
 * its batch), 0 when held already or not below the mark, -1 when the
 * file could not be read (logged). */
int store_append_below_floor(store *s, const struct chat_message *m, uint64_t *gen);

/* Goes up every time some origin's `trimmed` rises: a sender of marks
 * compares it with the value it last told a peer. */
uint64_t store_trim_epoch(const store *s);

/* Flushes what is pending, waits for the worker, and closes; done(ud)
 * runs on the loop when everything is released. */
void store_close(store *s, void (*done)(void *ud), void *ud);

/* Checkpoints run outside the commits (store.c's head comment): how many
 * completed, and the WAL size in 4 KiB pages that starts one (tests use a
 * small one; the default is 1000). */
uint64_t store_checkpoints(const store *s);
/* Of those, the TRUNCATE checkpoints a commit ran first because the WAL had
 * grown past twice the threshold (the ones beside the commits were not
 * keeping up), or because it retried a batch that had failed (a full disk:
 * emptying the WAL gives its space back). */
uint64_t store_checkpoints_forced(const store *s);
/* For tests: the WAL bytes after which a checkpoint starts (rounded down
 * to whole pages, at least one). */
void store_set_checkpoint_bytes(store *s, uint64_t bytes);

/* Batches (transactions) committed since open: the messages stored over
 * this is the mean batch size. */
uint64_t store_commits(const store *s);

/* Of the committed batches: the seconds from handing each to the worker to
 * its callback on the loop (what a held message waits for), and the
 * messages in each. */
const struct metrics_histogram *store_commit_seconds(const store *s);
const struct metrics_histogram *store_commit_sizes(const store *s);

#endif
