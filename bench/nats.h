/* nats: the bench's NATS side (side.h), for comparing dchat with NATS on
 * the same rounds. Each socket is a NATS client over the servers'
 * WebSocket listeners (--nats ws://HOST:PORT,...): INFO, then CONNECT, SUB
 * to the run's subject and PING; ready at the PONG. A marker goes out as
 * one PUB whose payload starts with it (scan.h), padded so that a delivered
 * MSG is as long as the frame a dchat node delivers for the same --size.
 * The codec is nats_proto.h; the side itself is bench_nats_side (side.h). */
#ifndef DCHAT_BENCH_NATS_H
#define DCHAT_BENCH_NATS_H

#include <stddef.h>

#include "bench/side.h"

/* Bytes a dchat node adds around a bench text in the frame it delivers
 * (newMessagesForClient JSON: type, source, nodeId, id, messageId, sender,
 * chatId, dateTime; and the 4-byte WebSocket header): 185 to 190 as the ids
 * grow from 1 to 6 digits, so a 30-byte text makes a 215- to 220-byte
 * frame. A NATS delivery is made as long as the middle of that: with the
 * default --size of 30, a 188-byte payload in a 216-byte MSG. */
#define NATS_DCHAT_FRAME_OVERHEAD 186

/* The NATS payload for a --size of size on subject (subscription id 1):
 * the length that makes "MSG <subject> 1 <len>\r\n<payload>\r\n" size +
 * NATS_DCHAT_FRAME_OVERHEAD bytes long, and never below size. */
size_t nats_payload_len(const char *subject, size_t size);

#endif
