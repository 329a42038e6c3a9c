"""loadgen: the client side of the fault tests (docs/DEPLOYMENT.md).

Puts --clients DSatter-style WebSocket clients on the nodes (client k on
node k mod n), --senders of them sending chat-11 messages at --rate per
second in all, and records every message every client receives. Each
client behaves as DSatter's web client does (docs/PROTOCOL.md, 1.9): on
connecting it sends a clientSyncRequest with its marks (per origin, the
highest id up to which it holds every message) and repeats it while the
reply is truncated; when its connection drops it reconnects, to its own
node first and then to the next ones in turn, backing off from 0.1 s to
2 s. A sender numbers its texts "c<client>-<k>" and never sends one twice;
a message is acknowledged when its sender gets it back from the cluster.

It sends until SIGUSR1 (or --duration seconds), then settles: every client
keeps (re)connecting until it holds every message any client holds, or
--settle seconds pass. It prints progress lines on stdout, which the tests
wait for ("loadgen: ready", "loadgen: acked N", "loadgen: settled" or
"loadgen: unsettled"), and writes the record the checker reads
(tests/faults/checker.py): OUT/client-K.jsonl, one JSON array per line:
  ["sent", conn, text]
  ["msg", conn, how, messageId, nodeId, id, text, sender, chatId]
    how: "live" (newMessagesForClient) or "sync" (clientSyncReply)
  ["conn", conn, "host:port"]        a connection made (handshake done)
  ["drop", conn, "why"]              that connection ended
  ["error", conn, "text"]            an error frame (a refused message)
Standard library only; runs with /usr/bin/python3 in the load host's
namespace (scripts/netns-cluster.sh exec load ...)."""

import argparse
import asyncio
import base64
import json
import os
import signal
import struct
import sys
import time

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
MAX_FRAME = 64 << 20


class Closed(Exception):
    pass


async def ws_connect(host, port, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise Closed("handshake refused: " + head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return reader, writer


def ws_frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + body


async def ws_read(reader):
    """The next frame: (opcode, FIN bit, payload); the caller answers
    pings and takes only whole text frames (the node sends no fragments)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    if n > MAX_FRAME:
        raise Closed(f"frame of {n} bytes")
    payload = await reader.readexactly(n)
    return b0 & 0x0F, b0 & 0x80, payload


class Client:
    def __init__(self, gen, cid, home, sender):
        self.gen, self.cid, self.home, self.sender = gen, cid, home, sender
        self.out = open(os.path.join(gen.out, f"client-{cid}.jsonl"), "w", buffering=1 << 16)
        self.conn = 0
        self.have = {}           # messageId -> True
        self.marks = {}          # origin -> contiguous highest id held
        self.above = {}          # origin -> ids held above the mark
        self.next_text = 1
        self.unacked = {}        # text -> the connection it was sent on
        self.refused = {}        # connection -> messages the node refused on it
        self.writer = None
        self.synced = False

    def rec(self, *fields):
        self.out.write(json.dumps(fields, separators=(",", ":")) + "\n")

    def hold(self, m, how):
        mid, origin, seq = m["messageId"], m["nodeId"], m["id"]
        self.rec("msg", self.conn, how, mid, origin, seq, m["text"], m["sender"], m["chatId"])
        if mid in self.have:
            return
        self.have[mid] = True
        self.gen.seen.add(mid)
        if m["sender"] == "fault" and m["text"] in self.unacked:
            del self.unacked[m["text"]]
            self.gen.acked += 1
        mark = self.marks.get(origin, 0)
        above = self.above.setdefault(origin, set())
        if seq > mark:
            above.add(seq)
            while mark + 1 in above:
                mark += 1
                above.discard(mark)
            self.marks[origin] = mark

    async def send(self, obj):
        self.writer.write(ws_frame(TEXT, json.dumps(obj).encode()))
        await self.writer.drain()

    async def sync(self, skip=()):
        marks = {str(o): m for o, m in self.marks.items() if m > 0 and o not in skip}
        await self.send({"type": "clientSyncRequest", "payload": marks})

    async def session(self, host, port):
        reader, self.writer = await ws_connect(host, port, 5)
        self.conn += 1
        self.rec("conn", self.conn, f"{host}:{port}")
        self.synced = False
        await self.sync()
        skip = set()
        while True:
            op, fin, payload = await ws_read(reader)
            if op == PING:
                self.writer.write(ws_frame(PONG, payload))
                continue
            if op == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise Closed(f"close {code} {payload[2:].decode(errors='replace')}")
            if op != TEXT or not fin:
                continue
            f = json.loads(payload)
            t = f.get("type")
            if t == "newMessagesForClient":
                for m in f["payload"]:
                    self.hold(m, "live")
            elif t == "clientSyncReply":
                for m in f["payload"]:
                    self.hold(m, "sync")
                if f.get("truncated"):
                    await self.sync(skip)
                else:
                    self.synced = True
            elif t == "error":
                err = f.get("error", "")
                if "of which this node has no message" in err:
                    # That node's history began after ours: ask without it
                    # (its messages then come from the start, deduplicated).
                    skip.add(int(err.split("names origin ")[1].split(",")[0]))
                    await self.sync(skip)
                else:
                    if "cannot store messages" in err or "cannot number messages" in err:
                        # One sent message was refused (which one, the
                        # error does not say): it will never come back.
                        self.refused[self.conn] = self.refused.get(self.conn, 0) + 1
                    self.rec("error", self.conn, err)

    async def run(self):
        nodes = self.gen.nodes
        i, backoff = self.home, 0.1
        while not self.gen.finished:
            host, port = nodes[i % len(nodes)]
            made = self.conn
            why = "ended"
            try:
                await self.session(host, port)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, Closed,
                    ValueError) as e:
                why = type(e).__name__ + (f": {e}" if str(e) else "")
            self.synced = False
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            if self.conn > made:
                self.rec("drop", self.conn, why)
                backoff = 0.1  # it had a connection: start over
            if self.gen.finished:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            i += 1  # the next node in turn

    def in_flight(self):
        """Sent on this connection, neither back yet nor refused."""
        return (sum(conn == self.conn for conn in self.unacked.values()) -
                self.refused.get(self.conn, 0))

    async def send_one(self):
        if self.writer is None or not self.synced or self.in_flight() >= 200:
            return False
        text = f"c{self.cid}-{self.next_text}"
        self.next_text += 1
        self.unacked[text] = self.conn
        self.rec("sent", self.conn, text)
        self.gen.sent += 1
        try:
            await self.send({"type": "newMessageFromClient",
                             "payload": {"text": text, "sender": "fault", "chatId": 11}})
        except (OSError, ConnectionError):
            pass  # the reader sees the drop and reconnects
        return True


class Gen:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.nodes = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in args.nodes.split(","))]
        self.seen = set()
        self.sent = self.acked = 0
        self.stop_sending = asyncio.Event()
        self.finished = False
        self.clients = [Client(self, k, k % len(self.nodes), k < args.senders)
                        for k in range(args.clients)]

    async def pace(self):
        senders = [c for c in self.clients if c.sender]
        period = len(senders) / self.args.rate
        start = time.monotonic()
        k = 0
        while not self.stop_sending.is_set():
            due = start + k * period / len(senders)
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop_sending.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
            await senders[k % len(senders)].send_one()
            k += 1

    async def progress(self):
        while not self.finished:
            print(f"loadgen: acked {self.acked} sent {self.sent} seen {len(self.seen)} "
                  f"connected {sum(c.synced for c in self.clients)}", flush=True)
            await asyncio.sleep(0.2)

    async def main(self):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.stop_sending.set)
        loop.add_signal_handler(signal.SIGTERM, self.stop_sending.set)
        tasks = [asyncio.create_task(c.run()) for c in self.clients]
        prog = asyncio.create_task(self.progress())
        limit = time.monotonic() + 30
        while not all(c.synced for c in self.clients):
            if time.monotonic() > limit:
                print("loadgen: not every client could connect and sync in 30 s", flush=True)
                return 2
            await asyncio.sleep(0.05)
        print(f"loadgen: ready, {len(self.clients)} clients on {len(self.nodes)} nodes", flush=True)
        pacer = asyncio.create_task(self.pace())
        try:
            await asyncio.wait_for(self.stop_sending.wait(), self.args.duration)
        except asyncio.TimeoutError:
            self.stop_sending.set()
        await pacer
        print(f"loadgen: stopped sending, sent {self.sent}", flush=True)
        limit = time.monotonic() + self.args.settle
        settled = False
        while time.monotonic() < limit:
            # Every client holds everything any client holds, and nothing
            # sent is still on its way (what was sent on a connection that
            # has since dropped may never come: it is unacknowledged).
            if all(c.synced and len(c.have) == len(self.seen) and c.in_flight() <= 0
                   for c in self.clients):
                settled = True
                break
            await asyncio.sleep(0.1)
        self.finished = True
        for c in self.clients:
            if c.writer is not None:
                c.writer.close()
        for t in tasks + [prog]:
            t.cancel()
        await asyncio.gather(*tasks, prog, return_exceptions=True)
        for c in self.clients:
            c.out.close()
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump({"clients": len(self.clients), "senders": self.args.senders,
                       "sent": self.sent, "acked": self.acked, "seen": len(self.seen),
                       "settled": settled}, f)
        print(f"loadgen: {'settled' if settled else 'unsettled'} acked {self.acked} "
              f"sent {self.sent} seen {len(self.seen)}", flush=True)
        return 0 if settled else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", required=True, help="HOST:PORT,... of the nodes' client ports")
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--senders", type=int, default=6)
    p.add_argument("--rate", type=float, default=200, help="messages per second, all senders")
    p.add_argument("--duration", type=float, default=120, help="seconds of sending at most")
    p.add_argument("--settle", type=float, default=60)
    p.add_argument("--out", required=True, help="directory for the record")
    a = p.parse_args()
    if not 1 <= a.senders <= a.clients:
        p.error("--senders must be 1 .. --clients")
    os.makedirs(a.out, exist_ok=True)
    sys.exit(asyncio.run(Gen(a).main()))


if __name__ == "__main__":
    main()
