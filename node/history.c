/* history: see history.h. Replies are assembled from per-origin range
 * reads (the primary key is (origin, seq)) merged by time: a node gives
 * its own messages non-decreasing times, so the merge keeps every origin's
 * order. Reads go a chunk at a time and stop once a reply could hold no
 * more, so neither a reply nor what is read for it grows with the range
 * asked for. */
#include "node/history.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "node/relay.h"
#include "node/store.h"

/* Rows per store read: the first, and at most. */
#define HISTORY_FIRST_CHUNK 16
#define HISTORY_MAX_CHUNK 256

int history_point_take(node *n, const struct sync_mark *req, size_t nreq,
                       struct history_point *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (n->store == NULL) {
        snprintf(err, errlen, "node is shutting down; ask another node");
        return -1;
    }
    for (size_t i = 0; i < nreq; i++) {
        if (store_highest(n->store, req[i].origin) == 0) {
            snprintf(err, errlen, "clientSyncRequest names origin %" PRIu32 ", of which this "
                     "node has no message", req[i].origin);
            return -1;
        }
    }
    size_t count;
    const struct store_origin *o = store_origins(n->store, &count);
    out->marks = xcalloc(count ? count : 1, sizeof(*out->marks));
    for (size_t i = 0; i < count; i++) {
        uint64_t upto = relay_delivered(n, o[i].origin);
        if (upto > 0)
            out->marks[out->n++] = (struct sync_mark){ o[i].origin, upto };
    }
    return 0;
}

void history_point_free(struct history_point *p)
{
    free(p->marks);
    memset(p, 0, sizeof(*p));
}

static int by_time(const void *a, const void *b)
{
    const struct chat_message *x = a, *y = b;
    if (x->time_ms != y->time_ms)
        return x->time_ms < y->time_ms ? -1 : 1;
    if (x->origin != y->origin)
        return x->origin < y->origin ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static uint64_t mark_of(const struct sync_mark *m, size_t n, uint32_t origin)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].origin == origin)
            return m[i].seq;
    return 0;
}

/* What m adds to a reply: its object as clients get it (its text withheld
 * when its live frame would be over the client frame limit, as
 * relay_remote does) and a comma. */
static size_t reply_bytes(const node *n, const struct chat_message *m)
{
    struct chat_message shown = *m;
    message_withhold_if_large(&shown, n->id, message_frame_limit());
    return message_object_len(&shown) + 1;
}

/* What a read looks at: every chat, or the chats of a client in rooms,
 * then with a budget of rows that the reads use up. */
struct read_filter {
    const int64_t *chats;    /* NULL: every message */
    size_t n;
    size_t scan;             /* rows still to look at */
};

/* Reads into rows the messages of origin with after < seq <= upto (those
 * of f's chats), at most limit + 1 of them, a chunk at a time, and stops as
 * soon as at least two are read and they weigh more than `bytes`
 * (reply_bytes). So rows holds every message of origin that a reply of at
 * most limit messages and `bytes` could take, and one more when there are
 * more, without reading a whole range of big messages into memory. Oldest
 * first, or from upto downwards with newest_first (rows then holds chunks
 * in descending order, each ascending: callers sort). *edge tells how far
 * it looked: oldest first, every message up to *edge; newest first, every
 * one above *edge. Returns 0, or -1 on a store error. */
static int read_capped(const node *n, uint32_t origin, uint64_t after, uint64_t upto,
                       size_t limit, size_t bytes, bool newest_first, struct read_filter *f,
                       struct store_rows *rows, uint64_t *edge)
{
    size_t got = 0, weight = 0, heaviest = 1, chunk = HISTORY_FIRST_CHUNK;
    uint64_t lo = after, hi = upto; /* left to read: lo < seq <= hi */
    while (lo < hi && got <= limit && (f->chats == NULL || f->scan > 0)) {
        size_t want = UTIL_MIN(chunk, limit + 1 - got);
        size_t first = rows->n;
        if (newest_first) {
            /* A window below hi, all of whose matches are taken. */
            size_t span = f->chats ? UTIL_MIN(f->scan, (size_t)HISTORY_MAX_CHUNK * 4) : want;
            uint64_t from = hi - lo > span ? hi - span : lo, seen;
            if (store_read_chats(n->store, origin, from, hi, span, f->chats, f->n, span, rows,
                                 &seen) != 0)
                return -1;
            f->scan -= f->chats ? UTIL_MIN(f->scan, (size_t)(hi - from)) : 0;
            hi = from;
        } else {
            uint64_t seen;
            if (store_read_chats(n->store, origin, lo, hi, want, f->chats, f->n, f->scan, rows,
                                 &seen) != 0)
                return -1;
            f->scan -= f->chats ? UTIL_MIN(f->scan, (size_t)(seen - lo)) : 0;
            lo = seen > lo ? seen : hi; /* a read that looked at nothing ends the range */
        }
        for (size_t i = 0; i < rows->n - first; i++) {
            size_t w = reply_bytes(n, &rows->msgs[newest_first ? rows->n - 1 - i : first + i]);
            weight += w;
            heaviest = UTIL_MAX(heaviest, w);
            if (++got >= 2 && weight > bytes)
                goto out;
        }
        /* as many as may still fit, judged by the heaviest so far */
        chunk = weight >= bytes ? 1 : (bytes - weight) / heaviest + 1;
        chunk = UTIL_MIN(chunk, (size_t)HISTORY_MAX_CHUNK);
    }
out:
    *edge = newest_first ? hi : lo;
    return 0;
}

/* How many of rows (oldest first, or with newest_first from the end) a
 * reply takes: at most limit, at most `bytes` by reply_bytes, at least one
 * when there is one. */
static size_t reply_count(const node *n, const struct store_rows *rows, size_t limit,
                          size_t bytes, bool newest_first)
{
    size_t count = 0, used = 0;
    while (count < rows->n && count < limit) {
        size_t w = reply_bytes(n, &rows->msgs[newest_first ? rows->n - 1 - count : count]);
        if (count > 0 && used + w > bytes)
            break;
        used += w;
        count++;
    }
    return count;
}

static void withhold_large(const node *n, struct chat_message *m, size_t count)
{
    size_t limit = message_frame_limit();
    for (size_t i = 0; i < count; i++)
        message_withhold_if_large(&m[i], n->id, limit);
}

/* The marks a client in rooms asks with next: per origin, where its
 * reply ends. For an origin some of whose rows read were left out, the
 * highest id of it in the reply (or its mark, when none is); otherwise the
 * edge of what was looked at, which is the point when all of it was. The
 * latest messages are the newest: the reply ends at the point. */
static struct sync_mark *next_marks(const struct history_point *point, const uint64_t *from,
                                    const uint64_t *edge, const struct store_rows *rows,
                                    size_t count, bool latest)
{
    struct sync_mark *next = xcalloc(point->n ? point->n : 1, sizeof(*next));
    for (size_t i = 0; i < point->n; i++) {
        uint32_t origin = point->marks[i].origin;
        uint64_t in_reply = from[i];
        bool left_out = false;
        for (size_t k = 0; k < rows->n; k++) {
            if (rows->msgs[k].origin != origin)
                continue;
            if (k < count)
                in_reply = UTIL_MAX(in_reply, rows->msgs[k].seq);
            else
                left_out = true;
        }
        next[i] = (struct sync_mark){ origin, left_out ? in_reply : edge[i] };
        if (latest)
            next[i].seq = point->marks[i].seq;
    }
    return next;
}

msgbuf *history_sync_reply(node *n, const struct sync_mark *req, size_t nreq,
                           const struct history_point *point, const struct history_chats *fc,
                           char *err, size_t errlen)
{
    size_t limit = n->cfg.sync_limit;
    size_t bytes = HISTORY_REPLY_BYTES - MESSAGE_REPLY_ENVELOPE;
    bool latest = nreq == 0;
    bool rooms = fc != NULL;
    bool older = false; /* latest: messages older than those read exist */
    bool unseen = false; /* rooms: a range was not looked at to its end */
    struct store_rows rows = { 0 };
    struct read_filter f = { rooms ? fc->chats : NULL, rooms ? fc->n : 0, 0 };
    uint64_t *from = xcalloc(point->n ? point->n : 1, sizeof(*from));
    uint64_t *edge = xcalloc(point->n ? point->n : 1, sizeof(*edge));
    static const int64_t no_chats[1];
    if (rooms) {
        bytes -= point->n * MESSAGE_NEXT_MARK_LEN + 16;
        if (f.chats == NULL)
            f.chats = no_chats; /* in no chat: still filtered, by nothing */
    }
    /* Origins whose asked range reaches below their low-water mark. */
    struct sync_mark *trimmed = xcalloc(point->n ? point->n : 1, sizeof(*trimmed));
    size_t ntrimmed = 0;
    for (size_t i = 0; i < point->n; i++) {
        uint32_t origin = point->marks[i].origin;
        uint64_t upto = point->marks[i].seq, low = store_trimmed(n->store, origin);
        uint64_t after = !latest ? mark_of(req, nreq, origin)
                         : rooms || upto <= limit ? 0 : upto - limit;
        if (after < low)
            trimmed[ntrimmed++] = (struct sync_mark){ origin, low };
    }
    if (ntrimmed > 0)
        bytes -= ntrimmed * MESSAGE_NEXT_MARK_LEN + 16;
    for (size_t i = 0; i < point->n; i++) {
        uint32_t origin = point->marks[i].origin;
        uint64_t upto = point->marks[i].seq;
        if (rooms && f.n == 0) {
            edge[i] = upto; /* a client in no chat has nothing to look for */
            continue;
        }
        /* A client in rooms wants the latest of its chats, wherever they are. */
        uint64_t after = !latest ? mark_of(req, nreq, origin)
                         : rooms || upto <= limit ? 0 : upto - limit;
        from[i] = edge[i] = after;
        if (after >= upto)
            continue;
        if (latest && after > 0)
            older = true;
        /* Each origin gets an equal share of what is left to look at. */
        f.scan = rooms ? UTIL_MAX((size_t)n->cfg.sync_scan / point->n, (size_t)64) : 0;
        if (read_capped(n, origin, after, upto, limit, bytes, latest, &f, &rows,
                        &edge[i]) != 0) {
            store_rows_free(&rows);
            free(from);
            free(edge);
            free(trimmed);
            snprintf(err, errlen, "cannot read the history now; retry");
            return NULL;
        }
        if (rooms && (latest ? edge[i] > after : edge[i] < upto))
            unseen = true;
    }
    if (rows.n > 1)
        qsort(rows.msgs, rows.n, sizeof(*rows.msgs), by_time);
    /* latest: the newest that fit; otherwise the oldest. Whatever was read
     * and left out, and only that, means the client did not get all. */
    size_t count = reply_count(n, &rows, limit, bytes, latest);
    size_t first = latest ? rows.n - count : 0;
    bool truncated = count < rows.n || older || unseen;
    withhold_large(n, rows.msgs + first, count);
    struct sync_mark *next = NULL;
    if (rooms)
        next = next_marks(point, from, edge, &rows, count, latest);
    msgbuf *b = message_sync_reply_frame_trimmed(n->id, count ? rows.msgs + first : NULL, count,
                                                 truncated, trimmed, ntrimmed, next,
                                                 next ? point->n : 0);
    free(trimmed);
    free(next);
    free(from);
    free(edge);
    store_rows_free(&rows);
    return b;
}

static int query_u64(const char *query, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    for (const char *p = query; p && *p;) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            char *end;
            const char *v = p + klen + 1;
            if (*v < '0' || *v > '9')
                return -1;
            unsigned long long x = strtoull(v, &end, 10);
            if (*end != '\0' && *end != '&')
                return -1;
            *out = x;
            return 1;
        }
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return 0;
}

void history_http(node *n, http_request *req)
{
    uint64_t origin = 0, after = 0, limit = 100;
    int has_origin = query_u64(req->query, "origin", &origin);
    if (has_origin <= 0 || origin == 0 || origin > INT32_MAX) {
        http_respond_error(req, 400, "give origin=N (a node id) in the query, e.g. "
                           "/api/history?origin=1&after=0&limit=100");
        return;
    }
    if (query_u64(req->query, "after", &after) < 0 || after >= MESSAGE_SEQ_LIMIT) {
        http_respond_error(req, 400, "after must be a sequence number from 0 to 999999999999");
        return;
    }
    if (query_u64(req->query, "limit", &limit) < 0 || limit < 1 || limit > 10000) {
        http_respond_error(req, 400, "limit must be from 1 to 10000");
        return;
    }
    if (n->store == NULL) {
        http_respond_error(req, 503, "node is shutting down");
        return;
    }
    struct store_rows rows = { 0 };
    size_t bytes = HISTORY_REPLY_BYTES - MESSAGE_REPLY_ENVELOPE;
    struct read_filter all = { NULL, 0, 0 };
    uint64_t edge;
    if (read_capped(n, (uint32_t)origin, after, UINT64_MAX, (size_t)limit, bytes, false, &all,
                    &rows, &edge) != 0) {
        store_rows_free(&rows);
        http_respond_error(req, 500, "cannot read the history; see the node's log");
        return;
    }
    size_t count = reply_count(n, &rows, (size_t)limit, bytes, false);
    bool more = count < rows.n;
    withhold_large(n, rows.msgs, count);
    size_t cap = MESSAGE_REPLY_ENVELOPE + 40;
    for (size_t i = 0; i < count; i++)
        cap += message_object_len(&rows.msgs[i]) + 1;
    char *body = xmalloc(cap);
    size_t len = (size_t)sprintf(body, "{\"origin\":%" PRIu64 ",\"messages\":[", origin);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            body[len++] = ',';
        len += message_object_write(body + len, &rows.msgs[i]);
    }
    len += (size_t)sprintf(body + len, "],\"more\":%s", more ? "true" : "false");
    /* Retention removed messages of the range asked for (3.3). */
    uint64_t low = store_trimmed(n->store, (uint32_t)origin);
    if (after < low)
        len += (size_t)sprintf(body + len, ",\"trimmed\":%" PRIu64, low);
    body[len++] = '}';
    store_rows_free(&rows);
    http_respond(req, 200, "application/json", body, len);
    free(body);
}

json_t *history_digest(node *n)
{
    if (n->store == NULL)
        return json_null();
    static const char *const modes[] = { "always", "batch", "off" };
    size_t count;
    const struct store_origin *o = store_origins(n->store, &count);
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(list, json_pack("{s:I, s:I, s:I, s:I}", "origin",
                                               (json_int_t)o[i].origin, "count",
                                               (json_int_t)o[i].count, "highest",
                                               (json_int_t)o[i].highest, "trimmed",
                                               (json_int_t)o[i].trimmed));
    uint64_t since = 0;
    const char *failing = store_failing(n->store, &since);
    json_t *d = json_pack("{s:s, s:b, s:I, s:I, s:b, s:I, s:o}", "fsync",
                          modes[store_mode(n->store)], "pending", store_busy(n->store),
                          "commits", (json_int_t)store_commits(n->store), "checkpoints",
                          (json_int_t)store_checkpoints(n->store), "writable", failing == NULL,
                          "commitFailures", (json_int_t)store_failures(n->store), "origins",
                          list);
    struct store_stats st;
    store_stats_get(n->store, &st);
    const struct store_retention *r = &n->cfg.retention;
    json_object_set_new(d, "retention",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I}",
                                  "maxAgeMs",
                                  (json_int_t)r->max_age_ms, "maxMessages",
                                  (json_int_t)r->max_messages, "maxBytes",
                                  (json_int_t)r->max_bytes, "rows", (json_int_t)st.rows,
                                  "bytes", (json_int_t)st.bytes, "fileBytes",
                                  (json_int_t)st.file_bytes, "oldestMs",
                                  (json_int_t)st.oldest_ms, "trimmed", (json_int_t)st.trimmed,
                                  "trimSteps", (json_int_t)st.trim_steps, "sweeping",
                                  st.sweeping, "sweepPasses", (json_int_t)st.sweep_passes));
    if (failing != NULL) {
        json_object_set_new(d, "error", json_string(failing));
        json_object_set_new(d, "failingForMs", json_integer((json_int_t)(util_now_ms() - since)));
    }
    return d;
}
