/* history: see history.h. Replies are assembled from per-origin range
 * reads (the primary key is (origin, seq)) merged by time: a node gives
 * its own messages non-decreasing times, so the merge keeps every origin's
 * order. */
#include "node/history.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "node/relay.h"
#include "node/store.h"

/* A reply frame stays well under a client's default queue bound. */
#define HISTORY_REPLY_BYTES (1u << 20)
#define HISTORY_PER_MESSAGE 160 /* JSON around one message, roughly */

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

msgbuf *history_sync_reply(node *n, const struct sync_mark *req, size_t nreq,
                           const struct history_point *point, char *err, size_t errlen)
{
    size_t limit = n->cfg.sync_limit;
    bool latest = nreq == 0;
    bool truncated = false;
    struct store_rows rows = { 0 };
    for (size_t i = 0; i < point->n; i++) {
        uint32_t origin = point->marks[i].origin;
        uint64_t upto = point->marks[i].seq;
        uint64_t after = latest ? (upto > limit ? upto - limit : 0) : mark_of(req, nreq, origin);
        if (after >= upto)
            continue;
        size_t before = rows.n;
        if (store_read(n->store, origin, after, upto, limit + 1, &rows) != 0) {
            store_rows_free(&rows);
            snprintf(err, errlen, "cannot read the history now; retry");
            return NULL;
        }
        if (rows.n - before > limit) {
            truncated = !latest;
            rows.n--; /* the extra one only told us there is more */
        }
        if (latest && after > 0)
            truncated = true; /* older messages exist */
    }
    if (rows.n > 1)
        qsort(rows.msgs, rows.n, sizeof(*rows.msgs), by_time);
    /* latest: the newest `limit`; otherwise the oldest `limit` */
    size_t first = 0, count = rows.n;
    if (count > limit) {
        truncated = true;
        if (latest)
            first = count - limit;
        count = limit;
    }
    /* and no more than fits a frame a client takes without trouble */
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
        const struct chat_message *m = &rows.msgs[first + i];
        bytes += HISTORY_PER_MESSAGE + m->text_len + m->sender_len;
        if (bytes > HISTORY_REPLY_BYTES && i > 0) {
            if (latest)
                first += count - i;
            count = i;
            truncated = true;
            break;
        }
    }
    msgbuf *b = message_sync_reply_frame(n->id, count ? rows.msgs + first : NULL, count,
                                         truncated);
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
    if (store_read(n->store, (uint32_t)origin, after, UINT64_MAX, (size_t)limit + 1, &rows) != 0) {
        store_rows_free(&rows);
        http_respond_error(req, 500, "cannot read the history; see the node's log");
        return;
    }
    bool more = rows.n > limit;
    if (more)
        rows.n--;
    json_t *list = json_array();
    for (size_t i = 0; i < rows.n; i++) {
        const struct chat_message *m = &rows.msgs[i];
        char id[MESSAGE_ID_MAX], when[UTIL_ISO8601_LEN + 1];
        message_id_format(m->origin, m->seq, id);
        util_format_iso8601(m->time_ms, when);
        json_array_append_new(
            list, json_pack("{s:I, s:I, s:s, s:s%, s:s%, s:I, s:s}", "nodeId",
                            (json_int_t)m->origin, "id", (json_int_t)m->seq, "messageId", id,
                            "text", m->text, (size_t)m->text_len, "sender", m->sender,
                            (size_t)m->sender_len, "chatId", (json_int_t)m->chat_id,
                            "dateTime", when));
    }
    store_rows_free(&rows);
    http_respond_json(req, 200, json_pack("{s:I, s:o, s:b}", "origin", (json_int_t)origin,
                                          "messages", list, "more", more));
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
        json_array_append_new(list, json_pack("{s:I, s:I, s:I}", "origin",
                                               (json_int_t)o[i].origin, "count",
                                               (json_int_t)o[i].count, "highest",
                                               (json_int_t)o[i].highest));
    return json_pack("{s:s, s:b, s:o}", "fsync", modes[store_mode(n->store)], "pending",
                     store_busy(n->store), "origins", list);
}
