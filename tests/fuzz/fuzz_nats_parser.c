/* Fuzz target for bench/nats_proto.c's parser (INFO, MSG, PING, PONG, +OK,
 * -ERR from a NATS server). Input: one byte of settings (bits 0-1: the
 * payload and control-line limits; bits 2-7: stop after that many
 * operations, 0 never), the chunk sizes (chunks.h), then the server's byte
 * stream. It is parsed twice, in one call and in the chunks: the same
 * operations, the same verdict and the same error. Every operation handed
 * up keeps the parser's contract (limits respected, a MSG's subject and
 * reply one word each, INFO with an argument), and a refused parser
 * refuses everything after. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bench/nats_proto.h"
#include "tests/fuzz/chunks.h"
#include "tests/fuzz/record.h"

struct run {
    record r;
    unsigned n, stop_at;
    size_t max_payload, max_control;
};

static bool one_word(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')
            return false;
    return true;
}

static int event_cb(void *ud, const struct nats_event *ev)
{
    struct run *run = ud;
    record_u64(&run->r, ev->op);
    switch (ev->op) {
    case NATS_OP_MSG:
        FUZZ_CHECK(one_word(ev->subject, ev->subject_len));
        FUZZ_CHECK(ev->reply == NULL || one_word(ev->reply, ev->reply_len));
        FUZZ_CHECK(ev->payload_len <= run->max_payload);
        FUZZ_CHECK(ev->subject_len < run->max_control);
        record_u64(&run->r, ev->sid);
        record_u64(&run->r, ev->subject_len);
        record_add(&run->r, ev->subject, ev->subject_len);
        record_u64(&run->r, ev->reply ? ev->reply_len + 1 : 0);
        if (ev->reply)
            record_add(&run->r, ev->reply, ev->reply_len);
        record_u64(&run->r, ev->payload_len);
        record_add(&run->r, ev->payload, ev->payload_len);
        break;
    case NATS_OP_INFO:
        FUZZ_CHECK(ev->arg_len > 0 && ev->arg_len <= run->max_control);
        /* fallthrough */
    case NATS_OP_ERR:
        record_u64(&run->r, ev->arg_len);
        record_add(&run->r, ev->arg, ev->arg_len);
        break;
    case NATS_OP_PING:
    case NATS_OP_PONG:
    case NATS_OP_OK:
        break;
    default:
        FUZZ_CHECK(!"an operation the parser must not hand up");
    }
    return ++run->n == run->stop_at;
}

static void parse(struct run *run, const uint8_t *data, size_t len, chunks *ch)
{
    nats_parser *p = nats_parser_new(run->max_control, run->max_payload);
    int rc = 0;
    size_t off = 0;
    do {
        size_t n = ch ? chunks_next(ch, len - off) : len;
        uint8_t *chunk = chunks_copy(data + off, n);
        unsigned before = run->n;
        rc = nats_parser_feed(p, chunk, n, event_cb, run);
        free(chunk);
        off += n;
        if (run->stop_at && run->n == run->stop_at && run->n > before)
            break; /* the callback stopped the feed */
    } while (rc == 0 && off < len);
    FUZZ_CHECK(rc == 0 || (rc == -1 && nats_parser_error(p)[0] != '\0'));
    if (rc == -1) {
        FUZZ_CHECK(nats_parser_feed(p, (const uint8_t *)"PING\r\n", 6, event_cb, run) == -1);
        record_add(&run->r, nats_parser_error(p), strlen(nats_parser_error(p)));
    }
    record_u64(&run->r, (uint64_t)(int64_t)rc);
    nats_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const size_t payloads[4] = { 0, 16, 1000, 1 << 20 };
    static const size_t controls[4] = { 8, 64, 4096, 0 };
    uint8_t settings;
    chunks ch;
    if (chunks_start(&ch, &data, &len, &settings) != 0)
        return 0;
    struct run whole = { .stop_at = settings >> 2, .max_payload = payloads[settings & 3],
                         .max_control = controls[settings & 3] ? controls[settings & 3]
                                                               : NATS_MAX_CONTROL };
    struct run split = whole;
    parse(&whole, data, len, NULL);
    parse(&split, data, len, &ch);
    FUZZ_CHECK(record_same(&whole.r, &split.r));
    record_free(&whole.r);
    record_free(&split.r);
    return 0;
}
