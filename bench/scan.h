/* scan: reads what the bench needs out of a newMessagesForClient frame
 * without building a JSON tree: the sending node's id ("source") and the
 * bench's own marker at the start of the message text. The node writes its
 * frames by hand in a fixed key order, but the scan does not rely on it: it
 * looks for the keys anywhere in the frame. Frames that are not the bench's
 * (other clients' traffic, error frames) are told apart and skipped. The
 * NATS side of the bench puts the same marker at the start of its payloads
 * and reads it with scan_marker_parse. */
#ifndef DCHAT_BENCH_SCAN_H
#define DCHAT_BENCH_SCAN_H

#include <stddef.h>
#include <stdint.h>

/* The text of every bench message starts with this marker:
 * "b<token as 8 hex digits>.<round>.<index>." then padding. */
struct scan_marker {
    uint32_t token;  /* identifies one bench run */
    uint32_t round;  /* the round's message count */
    uint32_t index;  /* 0 .. round-1 */
};

/* Writes the text of message index of round (at least size bytes, padded
 * with 'x'; longer only when size is below the marker's own length) into
 * out (cap bytes, NUL-terminated). Returns its length, or -1 if cap is too
 * small. */
int scan_format_text(const struct scan_marker *m, size_t size, char *out, size_t cap);

/* Reads the marker at the start of a message text (len bytes, not
 * necessarily NUL-terminated; what follows the marker does not matter).
 * Returns 0 with *m set, or -1 when text does not start with one. */
int scan_marker_parse(const char *text, size_t len, struct scan_marker *m);

enum scan_result {
    SCAN_OK,         /* a bench message: *m and *source are set */
    SCAN_FOREIGN,    /* a message frame, but not one of ours */
    SCAN_NOT_MESSAGE /* not a newMessagesForClient frame (error, sync ...) */
};

/* Scans one text frame. For a message frame *source is set to its
 * "source" value (-1 when it has none); for any other frame it is -1. */
enum scan_result scan_frame(const char *data, size_t len, struct scan_marker *m,
                            long *source);

/* The first step of scan_frame, for markers of other shapes: finds the
 * message text of a newMessagesForClient frame. Returns SCAN_OK with *text
 * at its first character (inside data; *text_len bytes up to the end of
 * data, not just the text) and *source as scan_frame sets it; SCAN_FOREIGN
 * for a message frame without a text; SCAN_NOT_MESSAGE. */
enum scan_result scan_frame_text(const char *data, size_t len, const char **text,
                                 size_t *text_len, long *source);

/* The load mode's marker (bench load, issue 14), at the start of each of
 * its message texts: "L<token as 8 hex digits>.<sender>.<seq>.<sent ns>."
 * then padding: the run, the sending client's number among the senders,
 * its per-sender sequence number (1, 2 ...) and the time the message was
 * due, on the bench's monotonic clock (uv_hrtime), for its latency. */
struct scan_load_marker {
    uint32_t token;
    uint32_t sender;
    uint32_t seq;
    uint64_t sent_ns;
};

/* As scan_format_text, for a load marker. */
int scan_format_load_text(const struct scan_load_marker *m, size_t size, char *out, size_t cap);

/* Reads a load marker at the start of text (len bytes). Returns 0 with *m
 * set, or -1 when text does not start with one. */
int scan_load_marker_parse(const char *text, size_t len, struct scan_load_marker *m);

#endif
