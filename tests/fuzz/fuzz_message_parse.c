/* Differential fuzz target for node/message.c: message_parse_request (a
 * scanner for the usual newMessageFromClient, jansson for the rest) against
 * a reference written here on jansson alone, from docs/PROTOCOL.md's rules.
 * Input: one byte that sets the client frame limit (message_set_frame_limit),
 * then a client's text frame. Both must give the same kind (ignore, error,
 * new message, sync request, subscribe, unsubscribe) and the same fields:
 * text, sender and chatId byte for byte; the sync marks as the same set;
 * the chat ids of a (un)subscribe in the same order. Error texts may differ.
 * The rule where they legitimately differ: the node parses only text
 * frames, which common/ws.c has checked to be UTF-8, and the scanner relies
 * on that (jansson checks it again). So an input that is not UTF-8 is still
 * parsed, for memory safety, but not compared. A new message is also
 * written back out (message_object_write, the escaper) and read back by
 * jansson: the same text and sender. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/msgbuf.h"
#include "common/ws.h"
#include "node/message.h"
#include "tests/fuzz/record.h"

struct reference {
    json_t *root;
    struct chat_message msg;
    struct sync_mark marks[MESSAGE_SYNC_MAX_MARKS];
    size_t nmarks;
    int64_t chats[MESSAGE_ROOMS_MAX];
    size_t nchats;
    bool all_chats;
};

/* subscribe / unsubscribe: {"chatIds": [1..1024 integers]}, or for
 * subscribe {"all": true} alone. */
static enum message_kind reference_rooms(bool sub, json_t *payload, struct reference *r)
{
    json_t *all = json_object_get(payload, "all");
    json_t *ids = json_object_get(payload, "chatIds");
    if (!json_is_object(payload))
        return MESSAGE_ERROR;
    if (sub && all != NULL) {
        if (!json_is_true(all) || ids != NULL)
            return MESSAGE_ERROR;
        r->all_chats = true;
        return MESSAGE_SUBSCRIBE;
    }
    if (!json_is_array(ids) || json_array_size(ids) == 0 ||
        json_array_size(ids) > MESSAGE_ROOMS_MAX)
        return MESSAGE_ERROR;
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v))
            return MESSAGE_ERROR;
        r->chats[r->nchats++] = json_integer_value(v);
    }
    return sub ? MESSAGE_SUBSCRIBE : MESSAGE_UNSUBSCRIBE;
}

/* A node id as a sync key: decimal digits, no sign, no leading zero, no
 * space, 1..2147483647. */
static bool origin_key(const char *k, uint32_t *out)
{
    size_t n = strlen(k);
    if (n == 0 || n > 10 || k[0] == '0')
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(k[i] - '0');
    }
    if (v > INT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static enum message_kind reference_parse(const char *data, size_t len, struct reference *r)
{
    if (len == 0 || data[0] != '{')
        return MESSAGE_IGNORE;
    r->root = json_loadb(data, len, 0, NULL);
    json_t *type = json_object_get(r->root, "type"); /* NULL when not an object */
    if (!json_is_string(type))
        return MESSAGE_ERROR;
    json_t *payload = json_object_get(r->root, "payload");
    if (strcmp(json_string_value(type), "newMessageFromClient") == 0) {
        json_t *text = json_object_get(payload, "text");
        json_t *sender = json_object_get(payload, "sender");
        json_t *chat = json_object_get(payload, "chatId");
        if (!json_is_string(text) || !json_is_string(sender) || !json_is_integer(chat) ||
            json_string_length(sender) > MESSAGE_SENDER_MAX)
            return MESSAGE_ERROR;
        r->msg.text = json_string_value(text);
        r->msg.text_len = (uint32_t)json_string_length(text);
        r->msg.sender = json_string_value(sender);
        r->msg.sender_len = (uint32_t)json_string_length(sender);
        r->msg.chat_id = json_integer_value(chat);
        return message_client_frame_max_len(&r->msg) <= message_frame_limit() ? MESSAGE_NEW
                                                                               : MESSAGE_ERROR;
    }
    if (strcmp(json_string_value(type), "subscribe") == 0 ||
        strcmp(json_string_value(type), "unsubscribe") == 0)
        return reference_rooms(json_string_value(type)[0] == 's', payload, r);
    if (strcmp(json_string_value(type), "clientSyncRequest") != 0)
        return MESSAGE_ERROR;
    if (payload == NULL || (json_is_array(payload) && json_array_size(payload) == 0))
        return MESSAGE_SYNC;
    if (!json_is_object(payload) || json_object_size(payload) > MESSAGE_SYNC_MAX_MARKS)
        return MESSAGE_ERROR;
    const char *key;
    json_t *v;
    json_object_foreach(payload, key, v) {
        uint32_t origin;
        if (!origin_key(key, &origin) || !json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) >= MESSAGE_SEQ_LIMIT)
            return MESSAGE_ERROR;
        r->marks[r->nmarks].origin = origin;
        r->marks[r->nmarks].seq = (uint64_t)json_integer_value(v);
        r->nmarks++;
    }
    return MESSAGE_SYNC;
}

static int mark_cmp(const void *a, const void *b)
{
    const struct sync_mark *x = a, *y = b;
    if (x->origin != y->origin)
        return x->origin < y->origin ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool same_bytes(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The message as it goes back out (the object of every payload, with the
 * escaper and its exact length): as long as message_object_len says, and
 * read back by jansson as the same text and sender byte for byte. */
static void check_round_trip(const struct chat_message *parsed)
{
    struct chat_message m = *parsed;
    m.origin = 7;
    m.seq = 42;
    m.time_ms = 1700000000000ull;
    size_t len = message_object_len(&m);
    char *obj = malloc(len + 1);
    FUZZ_CHECK(obj != NULL);
    FUZZ_CHECK(message_object_write(obj, &m) == len);
    json_t *o = json_loadb(obj, len, JSON_ALLOW_NUL, NULL);
    FUZZ_CHECK(o != NULL);
    json_t *text = json_object_get(o, "text"), *sender = json_object_get(o, "sender");
    FUZZ_CHECK(json_is_string(text) && json_is_string(sender));
    FUZZ_CHECK(same_bytes(json_string_value(text), (uint32_t)json_string_length(text), m.text,
                          m.text_len));
    FUZZ_CHECK(same_bytes(json_string_value(sender), (uint32_t)json_string_length(sender),
                          m.sender, m.sender_len));
    json_decref(o);
    free(obj);
    /* The client frame built with the scanner's plain flag is the one
     * built without it (the flag only skips the look for escapes), and a
     * plain message is plain. */
    FUZZ_CHECK(!m.plain || (message_plain(m.text, m.text_len) &&
                            message_plain(m.sender, m.sender_len)));
    struct chat_message slow = m;
    slow.plain = false;
    msgbuf *fast_frame = message_client_frame(3, &m), *slow_frame = message_client_frame(3, &slow);
    FUZZ_CHECK(fast_frame->len == slow_frame->len &&
               memcmp(fast_frame->data, slow_frame->data, fast_frame->len) == 0);
    msgbuf_unref(fast_frame);
    msgbuf_unref(slow_frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static struct reference ref;
    if (len < 1)
        return 0;
    /* From the smallest limit a message can meet (an empty one's frame) up
     * to the default options' limit, which no input here reaches. */
    message_set_frame_limit(data[0] == 0xff ? message_frame_limit_of(65536, 4194304)
                                            : 200 + (size_t)data[0] * 8);
    const char *text = (const char *)data + 1;
    len--;
    /* A heap copy of exactly the frame, so ASan sees any read past it. */
    char *frame = malloc(len ? len : 1);
    FUZZ_CHECK(frame != NULL);
    if (len > 0)
        memcpy(frame, text, len);

    struct client_request req;
    char err[256] = "";
    enum message_kind got = message_parse_request(frame, len, &req, err, sizeof(err));
    if (got == MESSAGE_ERROR)
        FUZZ_CHECK(err[0] != '\0');
    if (ws_utf8_valid((const uint8_t *)frame, len)) {
        memset(&ref, 0, sizeof(ref));
        enum message_kind want = reference_parse(frame, len, &ref);
        if (got != want)
            fprintf(stderr, "fuzz: message_parse_request says %d (%s), jansson %d\n", got,
                    err, want);
        FUZZ_CHECK(got == want);
        if (got == MESSAGE_NEW) {
            FUZZ_CHECK(same_bytes(req.msg.text, req.msg.text_len, ref.msg.text, ref.msg.text_len));
            FUZZ_CHECK(same_bytes(req.msg.sender, req.msg.sender_len, ref.msg.sender,
                                  ref.msg.sender_len));
            FUZZ_CHECK(req.msg.chat_id == ref.msg.chat_id);
            check_round_trip(&req.msg);
        } else if (got == MESSAGE_SYNC) {
            FUZZ_CHECK(req.nmarks == ref.nmarks);
            if (ref.nmarks > 0) {
                qsort(req.marks, req.nmarks, sizeof(req.marks[0]), mark_cmp);
                qsort(ref.marks, ref.nmarks, sizeof(ref.marks[0]), mark_cmp);
            }
            for (size_t i = 0; i < ref.nmarks; i++)
                FUZZ_CHECK(req.marks[i].origin == ref.marks[i].origin &&
                           req.marks[i].seq == ref.marks[i].seq);
        } else if (got == MESSAGE_SUBSCRIBE || got == MESSAGE_UNSUBSCRIBE) {
            FUZZ_CHECK(req.all_chats == ref.all_chats && req.nchats == ref.nchats);
            for (size_t i = 0; i < ref.nchats; i++)
                FUZZ_CHECK(req.chats[i] == ref.chats[i]);
        }
        json_decref(ref.root);
    }
    message_request_free(&req);
    free(frame);
    return 0;
}
