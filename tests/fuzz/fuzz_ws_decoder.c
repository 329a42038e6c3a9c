/* Fuzz target for common/ws.c's decoder. Input: one byte of settings (bit
 * 0: server role, so frames must be masked; bits 1-2: the message bound;
 * bits 3-7: stop after that many messages, 0 never), then the chunk sizes
 * (chunks.h), then the stream. It is decoded twice, in one call and in the
 * chunks: both must hand up the same messages and end with the same verdict.
 * Every message is checked against the decoder's contract: text is valid
 * UTF-8, data within the bound, control frames within 125 bytes, close
 * payloads empty or a valid code and a UTF-8 reason, and the only verdicts
 * are 0, -1 (stopped), 1002, 1007 and 1009 (1011 is a decoder bug). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ws.h"
#include "tests/fuzz/chunks.h"
#include "tests/fuzz/record.h"

struct run {
    record r;
    size_t max;
    unsigned n, stop_at;
};

static int message_cb(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    struct run *run = ud;
    FUZZ_CHECK(data != NULL);
    switch (opcode) {
    case WS_OP_TEXT:
        FUZZ_CHECK(ws_utf8_valid(data, len));
        /* fall through */
    case WS_OP_BINARY:
        FUZZ_CHECK(len <= run->max);
        break;
    case WS_OP_CLOSE:
        FUZZ_CHECK(len != 1 && len <= 125);
        if (len >= 2) {
            FUZZ_CHECK(ws_close_code_valid((unsigned)data[0] << 8 | data[1]));
            FUZZ_CHECK(ws_utf8_valid(data + 2, len - 2));
        }
        break;
    case WS_OP_PING:
    case WS_OP_PONG:
        FUZZ_CHECK(len <= 125);
        break;
    default:
        FUZZ_CHECK(!"an opcode the decoder must not hand up");
    }
    record_u64(&run->r, opcode);
    record_u64(&run->r, len);
    record_add(&run->r, data, len);
    return ++run->n == run->stop_at;
}

/* Decodes the stream in chunks (or whole when ch is NULL); returns the
 * verdict, recorded last. */
static int decode(struct run *run, bool masked, const uint8_t *data, size_t len, chunks *ch)
{
    ws_decoder *d = ws_decoder_new(masked, run->max);
    int rc = 0;
    size_t off = 0;
    do {
        size_t n = ch ? chunks_next(ch, len - off) : len;
        uint8_t *chunk = chunks_copy(data + off, n);
        rc = ws_decoder_feed(d, chunk, n, message_cb, run);
        free(chunk);
        off += n;
    } while (rc == 0 && off < len);
    FUZZ_CHECK(rc == 0 || rc == -1 || rc == WS_CLOSE_PROTOCOL ||
               rc == WS_CLOSE_INVALID_DATA || rc == WS_CLOSE_TOO_BIG);
    /* The verdict is final: more input changes nothing. */
    if (rc != 0) {
        static const uint8_t more[2] = { 0x81, 0x80 };
        FUZZ_CHECK(ws_decoder_feed(d, more, sizeof(more), message_cb, run) == rc);
    }
    ws_decoder_free(d);
    record_u64(&run->r, (uint64_t)(int64_t)rc);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const size_t bounds[4] = { 0, 1, 125, 70000 };
    uint8_t settings;
    chunks ch;
    if (chunks_start(&ch, &data, &len, &settings) != 0)
        return 0;
    bool masked = settings & 1;
    struct run whole = { .max = bounds[(settings >> 1) & 3], .stop_at = settings >> 3 };
    struct run split = whole;
    decode(&whole, masked, data, len, NULL);
    decode(&split, masked, data, len, &ch);
    FUZZ_CHECK(record_same(&whole.r, &split.r));
    record_free(&whole.r);
    record_free(&split.r);
    return 0;
}
