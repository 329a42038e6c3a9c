"""End-to-end tests of flow control and bounded memory (docs/PROTOCOL.md,
"Limits and flow control"): senders going flat out are slowed by TCP, not
cut; a reader that stops reading is closed with 1008 after the write
deadline and gets the close frame; a ping flooder is closed without growing
the node; clients beyond --max-clients get 503.

The clients here are raw sockets driven from threads: a sender writes all
its frames in one sendall, as fast as the kernel takes them, which is what
a load generator does and what a polite library never does."""

import json
import re
import resource
import struct
import threading
import time

from cluster import (Discovery, Node, http_json, masked_frame, metrics, raw_ws,
                     start_cluster, wait_until, ws_request)

HANG = 60  # seconds: only a guard against hangs, never a speed claim
TEXT = re.compile(rb'"text":"(s\d+-\d+)')
# No pings from the nodes: the raw readers here do not answer them.
QUIET = ("--ping-interval-ms", "0")


def chat_frame(text):
    return masked_frame(1, json.dumps({"type": "newMessageFromClient",
                                 "payload": {"text": text, "sender": "flow",
                                             "chatId": 11}}).encode())


class Reader:
    """Reads one socket in a thread: the texts of the message frames in
    arrival order, and the close code if a close frame came."""

    def __init__(self, sock, name):
        self.s = sock
        self.name = name
        self.texts = []
        self.close_code = None
        self.eof = False
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        buf = bytearray()
        pos = 0
        try:
            while True:
                chunk = self.s.recv(1 << 20)
                if not chunk:
                    self.eof = True
                    return
                if pos:
                    del buf[:pos]
                    pos = 0
                buf += chunk
                while len(buf) - pos >= 2:
                    op, ln = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
                    hl = {126: 4, 127: 10}.get(ln, 2)
                    if len(buf) - pos < hl:
                        break
                    if ln == 126:
                        ln = struct.unpack_from("!H", buf, pos + 2)[0]
                    elif ln == 127:
                        ln = struct.unpack_from("!Q", buf, pos + 2)[0]
                    if len(buf) - pos < hl + ln:
                        break
                    payload = bytes(buf[pos + hl:pos + hl + ln])
                    pos += hl + ln
                    if op == 8:
                        self.close_code = struct.unpack("!H", payload[:2])[0]
                        return
                    if op == 1:
                        m = TEXT.search(payload)
                        if m:
                            self.texts.append(m.group(1).decode())
        except OSError as e:
            self.error = e

    def wait_for(self, count):
        wait_until(lambda: len(self.texts) >= count or self.close_code is not None
                   or self.eof or self.error is not None, HANG,
                   f"{self.name} to receive {count} messages")

    def join(self):
        self.t.join(HANG)
        assert not self.t.is_alive(), f"{self.name} still reading"


def check_all(reader, senders, per_sender):
    """Every message of every sender exactly once, each sender's in order."""
    assert reader.close_code is None, f"{reader.name} was closed with {reader.close_code}"
    seen = {}
    for t in reader.texts:
        who, i = t[1:].split("-")
        seen.setdefault(who, []).append(int(i))
    for k in range(senders):
        got = seen.get(str(k), [])
        assert got == list(range(per_sender)), \
            f"{reader.name}: sender {k}: {len(got)} of {per_sender}, in order: " \
            f"{got == sorted(got)}, unique: {len(set(got)) == len(got)}"
    assert len(reader.texts) == senders * per_sender


def lone_node(logdir, procs, *extra):
    """Discovery and one node with the quiet options plus extra."""
    d = Discovery(logdir)
    procs.append(d)
    nd = Node(d, logdir, extra=(*QUIET, *extra))
    procs.append(nd)
    return d, nd


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_flat_out_senders_get_every_message_and_no_reader_is_cut(logdir, procs):
    """The seed topology flat out: 3 senders on node 1 that also read, one
    reader on every node. No window: each sender writes all of its frames
    at once."""
    _, nodes = start_cluster(logdir, procs, 3, node_extra=QUIET)
    per_sender = 20000
    senders, readers = [], []
    for k in range(3):
        s = raw_ws(nodes[0].client_port, timeout=HANG)
        senders.append(s)
        readers.append(Reader(s, f"sender{k}"))
    for i, nd in enumerate(nodes):
        s = raw_ws(nd.client_port, timeout=HANG)
        readers.append(Reader(s, f"reader-on-node{i + 1}"))
    blobs = [b"".join(chat_frame(f"s{k}-{i}-" + "x" * 120) for i in range(per_sender))
             for k in range(3)]
    threads = [threading.Thread(target=s.sendall, args=(b,)) for s, b in zip(senders, blobs)]
    for t in threads:
        t.start()
    for r in readers:
        r.wait_for(3 * per_sender)
    for t in threads:
        t.join(HANG)
    for r in readers:
        check_all(r, 3, per_sender)
    for nd in nodes:
        assert "slow consumer" not in nd.log()
        assert nd.status()["clients"] == (4 if nd is nodes[0] else 1)
    for s in senders + [r.s for r in readers[3:]]:
        s.close()


def test_a_burst_of_big_messages_reaches_readers_on_other_nodes(logdir, procs):
    """2000 messages of 3 KB in one write (6 MB, more than --max-queue):
    readers on the other nodes get all of them."""
    _, nodes = start_cluster(logdir, procs, 3, node_extra=QUIET)
    count = 2000
    s = raw_ws(nodes[0].client_port, timeout=HANG)
    readers = [Reader(s, "sender")]
    for i, nd in enumerate(nodes[1:]):
        r = raw_ws(nd.client_port, timeout=HANG)
        readers.append(Reader(r, f"reader-on-node{i + 2}"))
    s.sendall(b"".join(chat_frame(f"s0-{i}-" + "y" * 3000) for i in range(count)))
    for r in readers:
        r.wait_for(count)
        check_all(r, 1, count)
    for nd in nodes:
        assert "slow consumer" not in nd.log()
    for r in readers:
        r.s.close()


def stalled_and_fast(logdir, procs, deadline):
    """A lone node with a 256 KiB --max-queue and --write-deadline deadline;
    a client that reads nothing (a 4 KiB receive buffer), and a fast one
    that sends 3000 messages of 3 KB (9 MB) and has read them all back.
    Returns the node, the two sockets, the fast one's reader and the count."""
    d, nd = lone_node(logdir, procs, "--max-queue", "262144", "--write-deadline", deadline)
    stalled = raw_ws(nd.client_port, rcvbuf=4096, timeout=HANG)
    fast = raw_ws(nd.client_port, timeout=HANG)
    fast_reader = Reader(fast, "fast")
    count = 3000
    fast.sendall(b"".join(chat_frame(f"s0-{i}-" + "z" * 3000) for i in range(count)))
    fast_reader.wait_for(count)
    check_all(fast_reader, 1, count)
    return nd, stalled, fast, fast_reader, count


def test_a_reader_that_stops_is_closed_with_1008_after_the_deadline(logdir, procs):
    nd, stalled, fast, fast_reader, count = stalled_and_fast(logdir, procs, "0.5")
    # 9 MB went out, the stalled reader's queue is past its soft bound and
    # has made no progress for longer than the deadline: it is closed...
    wait_until(lambda: "slow consumer" in nd.log(), HANG, "the node to close the stalled reader")
    # ... and, reading now, finds the close frame after what it was sent.
    r = Reader(stalled, "stalled")
    r.join()
    assert r.close_code == 1008, (r.close_code, r.eof, r.error)
    assert r.texts == [f"s0-{i}" for i in range(len(r.texts))]  # whole frames, in order
    assert len(r.texts) < count
    wait_until(lambda: nd.status()["clients"] == 1, HANG, "the stalled client to be gone")
    m = metrics(nd.url)
    assert m[("dchat_slow_consumer_closes_total", "clients")] == 1
    assert m[("dchat_client_disconnects_total", "1008")] == 1
    assert m[("dchat_slow_consumer_closes_total", "peers")] == 0
    fast.close()


def test_queued_bytes_and_close_codes_are_counted(logdir, procs):
    """A reader that stops holds megabytes in its queue (the deadline is
    far away), shown in /metrics by class; a client that vanishes is
    counted under 1006, one that closes politely under its own code."""
    nd, stalled, fast, fast_reader, _ = stalled_and_fast(logdir, procs, "120")
    # 9 MB went to the stalled reader, whose kernel buffers take a few
    wait_until(lambda: metrics(nd.url)[("dchat_queued_bytes", "clients")] > 1e6, HANG,
               "the stalled reader's queue to show in dchat_queued_bytes")
    m = metrics(nd.url)
    assert m[("dchat_congested_connections", "clients")] == 1
    assert m[("dchat_client_connects_total", None)] == 2
    # gone without a close frame (the unread data makes the kernel reset it)
    stalled.close()
    wait_until(lambda: metrics(nd.url)[("dchat_client_disconnects_total", "1006")] == 1, HANG,
               "the vanished reader to be counted under 1006")
    wait_until(lambda: metrics(nd.url)[("dchat_queued_bytes", "clients")] == 0, HANG,
               "its queue to be freed")
    # a polite close with a code of the client's choosing
    fast.sendall(masked_frame(8, struct.pack("!H", 1001) + b"bye"))
    fast_reader.join()
    assert fast_reader.close_code == 1001
    wait_until(lambda: metrics(nd.url)[("dchat_client_disconnects_total", "1001")] == 1, HANG,
               "the polite close to be counted under 1001")
    m = metrics(nd.url)
    gone = {lab: v for (name, lab), v in m.items()
            if name == "dchat_client_disconnects_total" and v}
    assert gone == {"1006": 1, "1001": 1}, gone
    assert m[("dchat_slow_consumer_closes_total", "clients")] == 0
    assert m[("dchat_clients", None)] == 0
    fast.close()


def test_a_ping_flooder_that_never_reads_is_closed_and_costs_little(logdir, procs):
    d, nd = lone_node(logdir, procs, "--write-deadline", "0.5")
    s = raw_ws(nd.client_port, rcvbuf=4096, timeout=HANG)
    before = rss_kb(nd.p.pid)
    # 200,000 pings of 125 bytes: 25 MB of pongs if each were answered, far
    # more than the kernel buffers between us. We read none of it. The node
    # owes at most one pong at a time, and closes a flood.
    ping = masked_frame(9, b"p" * 125)
    try:
        for _ in range(200):
            s.sendall(ping * 1000)
    except OSError:
        pass  # the node closed us mid-flood: what we are here to see
    wait_until(lambda: "ping flood" in nd.log(), HANG, "the node to close the flooder")
    wait_until(lambda: nd.status()["clients"] == 0, HANG, "the flooder to be gone")
    grown = rss_kb(nd.p.pid) - before
    assert grown < 8 * 1024, f"node RSS grew by {grown} KiB during a ping flood"
    s.close()


def test_clients_beyond_max_clients_get_503_and_the_node_stays_listed(logdir, procs):
    d, nd = lone_node(logdir, procs, "--max-clients", "3")
    held = [raw_ws(nd.client_port, timeout=HANG) for _ in range(3)]
    for h in held:
        h.settimeout(HANG)
    wait_until(lambda: nd.status()["clients"] == 3, HANG, "3 clients")
    s, head = handshake_refused(nd.client_port)
    assert head.startswith(b"HTTP/1.1 503"), head
    body = json.loads(head.split(b"\r\n\r\n", 1)[1])
    assert "--max-clients" in body["error"]
    assert nd.id in d.active_ids()
    status, body = http_json(nd.url + "/api/status")
    assert status == 200 and body["clients"] == 3
    held.pop().close()
    wait_until(lambda: nd.status()["clients"] == 2, HANG, "a client to leave")
    again = raw_ws(nd.client_port, timeout=HANG)
    for h in held + [again]:
        h.close()


def handshake_refused(port):
    """Sends a handshake and reads the whole answer (head and body) until
    the node closes the connection or the body is complete."""
    s = ws_request(port, timeout=HANG)
    data = b""
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"Content-Length: (\d+)", head, re.I)
        if m and len(body) >= int(m.group(1)):
            break
    return s, data


def test_a_low_descriptor_limit_caps_clients_and_keeps_the_node_in_the_cluster(logdir, procs):
    """With 600 descriptors (soft and hard), the node keeps 512 for peers
    and the store; of the 88 left, 16 stay for HTTP: 72 clients, then 503;
    its heartbeat and its status port keep working."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (600, 600))
    d = Discovery(logdir, ttl=2)
    procs.append(d)
    nd = Node(d, logdir, extra=QUIET, preexec=limit)
    procs.append(nd)
    assert "at most 72 WebSocket clients, and 88 connections in all" in nd.log()
    held = [raw_ws(nd.client_port, timeout=HANG) for _ in range(72)]
    wait_until(lambda: nd.status()["clients"] == 72, HANG, "72 clients")
    for _ in range(5):
        s, head = handshake_refused(nd.client_port)
        assert head.startswith(b"HTTP/1.1 503"), head
        s.close()
    # Still listed once more than a discovery TTL (2 s) of heartbeats has
    # passed with every client slot taken.
    since = nd.status()["uptimeMs"]
    wait_until(lambda: nd.status()["uptimeMs"] > since + 2500, HANG, "a TTL to pass")
    assert d.active_ids() == [nd.id]
    assert nd.status()["discovery"]["active"]
    assert "too many open files" not in nd.log().lower()
    # no heartbeat trouble logged since the start
    assert "heartbeat" not in nd.log().split("connections: at most", 1)[1]
    for h in held:
        h.close()
