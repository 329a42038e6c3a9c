"""End-to-end tests of the chat node: discovery and real nodes on loopback,
clients from the `websockets` library (an independent implementation), raw
sockets for what a well-behaved library will not send."""

import asyncio
import json
import os
import re
import select
import socket
import struct
import subprocess
import time

import pytest
import websockets

from cluster import (BIN_DIR, Discovery, Node, Proc, free_port, http_json, masked_frame, new_message, raw_ws,
                     start_cluster, wait_mesh, wait_until)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HANG = 20  # seconds: only a guard against hangs, never a speed claim


async def recv_json(ws, timeout=HANG):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def collect(ws, count, timeout=HANG):
    """Receives count message frames (skipping nothing: every frame counts)."""
    frames = []
    while len(frames) < count:
        frames.append(await recv_json(ws, timeout))
    return frames


def check_delivery(frames, expected_texts, node_id):
    """Every expected text once, every frame well-formed, origin order kept."""
    texts = []
    last_seq = {}
    for f in frames:
        assert f["type"] == "newMessagesForClient", f
        assert f["source"] == node_id
        assert isinstance(f["payload"], list) and len(f["payload"]) == 1
        m = f["payload"][0]
        assert set(m) >= {"nodeId", "id", "messageId", "text", "sender", "chatId", "dateTime"}
        assert isinstance(m["messageId"], str) and m["messageId"].isdigit()
        assert int(m["messageId"]) == m["nodeId"] * 10**12 + m["id"]
        assert ISO.match(m["dateTime"]), m["dateTime"]
        assert m["id"] > last_seq.get(m["nodeId"], 0), "origin order broken"
        last_seq[m["nodeId"]] = m["id"]
        texts.append(m["text"])
    assert sorted(texts) == sorted(expected_texts)
    assert len(set(texts)) == len(texts), "a message arrived twice"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def exchange(nodes, clients_per_node=2, per_client=20):
    """Every client of every node sends per_client messages; returns after
    checking that every client received all of them exactly once."""
    conns = []
    for nd in nodes:
        for _ in range(clients_per_node):
            ws = await websockets.connect(nd.ws_url, max_size=2**20, max_queue=None)
            await ws.send("Client connected")  # what the DSatter client sends first
            conns.append((nd, ws))
    expected = []
    for i, (nd, ws) in enumerate(conns):
        for k in range(per_client):
            text = f"c{i}-m{k} \"quoted\" \u00e9\u4e2d\n"
            expected.append(text)
            await ws.send(new_message(text, sender=f"client{i}"))
    results = await asyncio.gather(*(collect(ws, len(expected)) for _, ws in conns))
    for (nd, ws), frames in zip(conns, results):
        check_delivery(frames, expected, nd.id)
    for _, ws in conns:
        await ws.close()


@pytest.mark.parametrize("n", [2, 3, 5])
def test_every_client_gets_every_message_once_in_origin_order(logdir, procs, n):
    _, nodes = start_cluster(logdir, procs, n)
    run(exchange(nodes, clients_per_node=2, per_client=15))
    s = nodes[0].status()
    assert s["messages"]["fromClients"] == 2 * 15
    assert s["messages"]["fromPeers"] == (n - 1) * 2 * 15
    assert s["clients"] == 0 or s["clients"] <= 2


def test_status_and_health(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    st, body = http_json(nodes[0].url + "/healthz")
    assert st == 200 and body == {"status": "ok"}
    s = nodes[0].status()
    assert s["id"] == nodes[0].id
    assert s["clientport"] == nodes[0].client_port
    assert s["syncport"] == nodes[0].sync_port
    assert [p["id"] for p in s["peers"]] == [nodes[1].id]
    assert s["peers"][0]["state"] == "up"
    st, body = http_json(nodes[0].url + "/nope")
    assert st == 404 and "error" in body
    st, body = http_json(nodes[0].url + "/api/status", method="POST", body={})
    assert st == 405
    # Discovery lists the nodes with the ports they printed.
    st, body = http_json(d.url + "/api/clients")
    assert sorted(e["clientport"] for e in body["activeNodes"]) == \
        sorted(nd.client_port for nd in nodes)


def test_readyz_says_when_a_node_can_serve(logdir, procs):
    """GET /readyz is 200 only when the node is registered, logged in with
    discovery and linked to every node discovery lists; otherwise 503 with
    every reason (GET /healthz only says the process answers)."""
    d, nodes = start_cluster(logdir, procs, 2, node_extra=("--test-hooks",))
    a, b = nodes

    def ready(nd):
        return http_json(nd.url + "/readyz")

    def lists(nd, other):  # nd's last list from discovery names other
        return any(p["id"] == other.id and p["listed"] for p in nd.status()["peers"])
    # Ready is judged against discovery's last list: wait until each has
    # heard of the other (a heartbeat after both logged in).
    wait_until(lambda: lists(a, b) and lists(b, a), HANG, "each to list the other")
    wait_until(lambda: ready(a)[0] == 200 and ready(b)[0] == 200, HANG, "both ready")
    assert ready(a)[1] == {"ready": True, "reasons": []}
    assert http_json(a.url + "/readyz", method="POST", body={})[0] == 405

    # a's link to b cut for a while: a is not ready, and says why; once
    # the link is back, it is ready again.
    st, _ = http_json(f"{a.url}/api/test/cut-link?peer={b.id}&ms=4000", method="POST")
    assert st == 200
    answer = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(ready(a)), HANG,
                        "a to be not ready")
    assert answer[1] == {"ready": False, "reasons": [f"1 listed peer not linked: {b.id}"]}
    wait_until(lambda: ready(a)[0] == 200, HANG, "a to be ready again")

    # A node whose discovery does not answer never registers: 503, saying so.
    dead = f"http://127.0.0.1:{free_port()}"
    lone = Proc("lone", [os.path.join(BIN_DIR, "node"), "--discovery", dead, "--insecure",
                         "--listen", "127.0.0.1", "--client-port", "0", "--sync-port", "0",
                         "--data-dir", os.path.join(logdir, "lone-data")],
                logdir, r"listening clients on [^ ]*:(\d+) sync on")
    procs.append(lone)
    st, body = http_json(f"http://127.0.0.1:{lone.match.group(1)}/readyz")
    assert st == 503 and body["reasons"] == ["not registered with discovery yet"], body


def test_killed_node_leaves_and_the_rest_keep_exchanging(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3, ttl=1)
    victim = nodes[2]
    victim.kill()
    procs.remove(victim)
    wait_until(lambda: victim.id not in d.active_ids(), 10,
               "the killed node to leave discovery's list")
    wait_mesh(nodes[:2])
    run(exchange(nodes[:2], clients_per_node=1, per_client=10))


def test_restarted_node_rejoins_with_its_id(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    nd = nodes[1]
    old_id = nd.id
    nd.stop()
    # A clean stop logs out: it leaves the list at once, not after the TTL.
    wait_until(lambda: old_id not in d.active_ids(), 5, "the logout")
    nd.restart()
    assert nd.id == old_id
    wait_mesh(nodes)
    run(exchange(nodes, clients_per_node=1, per_client=10))


def test_second_node_on_one_data_dir_exits_73(logdir, procs):
    """Two nodes on one --data-dir would both be the node it names and hand
    out the same sequence numbers: the second stops before touching it."""
    d, nodes = start_cluster(logdir, procs, 1)
    first = nodes[0]
    args = list(first.args)  # the same data dir, ports of its own (0)
    e = dict(os.environ)
    r = subprocess.run(args, capture_output=True, text=True, timeout=HANG, env=e,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 73, r  # EX_CANTCREAT
    msg = f"data dir {first.data_dir} is in use by another process (pid {first.p.pid}"
    assert msg in r.stderr, r.stderr
    assert "listening" not in r.stdout
    # The first goes on as before, and it has its id still.
    assert first.status()["id"] == first.id
    run(exchange(nodes, clients_per_node=2, per_client=5))
    # Once it has stopped, the same dir starts again (a kill -9 leaves no
    # stale lock either: the kernel lets go with the process).
    old_id = first.id
    first.kill()
    first.restart()
    assert first.id == old_id


def test_node_joining_a_running_cluster_gets_later_messages(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    run(exchange(nodes, clients_per_node=1, per_client=5))
    late = Node(d, logdir)
    procs.append(late)
    nodes.append(late)
    wait_mesh(nodes)
    run(exchange(nodes, clients_per_node=1, per_client=10))


def test_sigterm_closes_clients_with_1001_and_exits_0(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)

    async def go():
        ws = await websockets.connect(nodes[0].ws_url)
        nodes[0].p.send_signal(15)
        with pytest.raises(websockets.ConnectionClosed) as e:
            await asyncio.wait_for(ws.recv(), HANG)
        assert e.value.code == 1001
    run(go())
    nodes[0].p.wait(timeout=HANG)
    assert nodes[0].p.returncode == 0
    nodes[0].check_sanitizers()
    procs.remove(nodes[0])


def test_sigterm_with_a_drain_spreads_the_closes(logdir, procs):
    """--drain-seconds 3: on SIGTERM the node leaves discovery at once,
    refuses new clients (503) and is not ready, while its clients are
    closed with 1001 a few at a time over the drain (their reconnects then
    spread over the other nodes), those still there getting every message
    until their turn; then it exits 0."""
    d, nodes = start_cluster(logdir, procs, 2, node_extra=("--drain-seconds", "3"))
    a, b = nodes

    async def go():
        clients = [await websockets.connect(a.ws_url) for _ in range(20)]
        sender = await websockets.connect(b.ws_url)
        loop = asyncio.get_running_loop()

        async def watch(ws):
            texts = []
            try:
                while True:
                    texts.append(json.loads(await ws.recv())["payload"][0]["text"])
            except websockets.ConnectionClosed as e:
                return loop.time(), e.code, texts
        watchers = [asyncio.create_task(watch(ws)) for ws in clients]
        a.p.send_signal(15)
        # At once: out of discovery's list, not ready, new clients refused.
        while a.id in d.active_ids():
            await asyncio.sleep(0.02)
        st, body = http_json(a.url + "/readyz")
        assert st == 503 and "the node is shutting down" in body["reasons"], body
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(a.ws_url)
        assert e.value.status_code == 503
        # Meanwhile a sender on b goes on; a's clients get it until closed.
        sent = 0
        while not all(w.done() for w in watchers):
            await sender.send(new_message(f"during-{sent}"))
            sent += 1
            await asyncio.sleep(0.05)
            assert sent < 400, "the drain did not end"
        await sender.close()
        return [w.result() for w in watchers]
    results = run(go())
    assert all(code == 1001 for (_, code, _) in results), [c for (_, c, _) in results]
    times = sorted(t for (t, _, _) in results)
    assert times[-1] - times[0] >= 1.0, f"closed within {times[-1] - times[0]:.2f} s"
    # Each got the messages in order with nothing missing up to its close,
    # and the last ones got messages sent after the first ones were gone.
    for (_, _, texts) in results:
        n = [int(t.split("-")[1]) for t in texts]
        assert n == list(range(n[0], n[0] + len(n))) if n else True, n
    assert max(len(texts) for (_, _, texts) in results) > \
        min(len(texts) for (_, _, texts) in results)
    a.p.wait(timeout=HANG)
    assert a.p.returncode == 0
    a.check_sanitizers()
    procs.remove(a)


# --- bad input from clients ------------------------------------------------

@pytest.fixture
def one_node(logdir, procs):
    d = Discovery(logdir)
    procs.append(d)
    nd = Node(d, logdir, extra=("--max-queue", "262144", "--max-message", "4096"))
    procs.append(nd)
    return nd


@pytest.mark.parametrize("frame,needle", [
    ("{not json", "malformed JSON"),
    ('{"type":5,"payload":{}}', "type"),
    ('{"payload":{}}', "type"),
    ('{"type":"whatever","payload":{}}', "whatever"),
    ('{"type":"newMessageFromClient"}', "payload"),
    ('{"type":"newMessageFromClient","payload":{"sender":"a","chatId":1}}', "text"),
    ('{"type":"newMessageFromClient","payload":{"text":"a","chatId":1}}', "sender"),
    ('{"type":"newMessageFromClient","payload":{"text":"a","sender":"b"}}', "chatId"),
    ('{"type":"newMessageFromClient","payload":{"text":"a","sender":"b","chatId":"x"}}', "chatId"),
    ('{"type":"newMessageFromClient","payload":{"text":5,"sender":"b","chatId":1}}', "text"),
])
def test_bad_requests_get_an_error_frame_and_the_connection_stays(one_node, frame, needle):
    async def go():
        async with websockets.connect(one_node.ws_url) as ws:
            await ws.send(frame)
            err = await recv_json(ws)
            assert err["type"] == "error"
            assert needle in err["error"]
            # Still served: a good message comes back to its sender.
            await ws.send(new_message("after the error"))
            ok = await recv_json(ws)
            assert ok["type"] == "newMessagesForClient"
            assert ok["payload"][0]["text"] == "after the error"
    run(go())


def test_plain_text_frames_are_ignored(one_node):
    async def go():
        async with websockets.connect(one_node.ws_url) as ws:
            await ws.send("Client connected")
            await ws.send(new_message("hello"))
            first = await recv_json(ws)  # nothing came back for the plain text
            assert first["payload"][0]["text"] == "hello"
    run(go())


@pytest.mark.parametrize("kind,code", [("big", 1009), ("binary", 1003)])
def test_protocol_violations_close_with_their_code(one_node, kind, code):
    async def go():
        async with websockets.connect(one_node.ws_url, max_size=None) as ws:
            if kind == "big":
                await ws.send("{" + "x" * 5000)
            else:
                await ws.send(b"\x00\x01")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), HANG)
            assert e.value.rcvd.code == code
    run(go())


def read_close_code(s):
    """Reads frames until a close frame; returns its code (None on EOF)."""
    buf = bytearray()
    pos = 0

    def need(n):
        nonlocal buf, pos
        while len(buf) - pos < n:
            chunk = s.recv(1 << 20)
            if not chunk:
                return False
            if pos:
                del buf[:pos]
                pos = 0
            buf += chunk
        return True

    while True:
        if not need(2):
            return None
        op, ln = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
        hl = {126: 4, 127: 10}.get(ln, 2)
        if not need(hl):
            return None
        if ln == 126:
            ln = struct.unpack("!H", buf[pos + 2:pos + 4])[0]
        elif ln == 127:
            ln = struct.unpack("!Q", buf[pos + 2:pos + 10])[0]
        if not need(hl + ln):
            return None
        payload = bytes(buf[pos + hl:pos + hl + ln])
        pos += hl + ln
        if op == 8:
            return struct.unpack("!H", payload[:2])[0]


def test_invalid_utf8_closes_with_1007(one_node):
    s = raw_ws(one_node.client_port)
    s.sendall(masked_frame(1, b'{"text":"\xff\xfe"}'))
    assert read_close_code(s) == 1007
    s.close()


def test_huge_frame_header_gets_1009_without_any_payload(one_node):
    """A header announcing 2^62 bytes is refused when it arrives: the node
    does not wait for a payload that would never fit (--max-message 4096)."""
    s = raw_ws(one_node.client_port)
    s.settimeout(HANG)  # a hang guard: without the check no close ever comes
    s.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 62) + os.urandom(4))
    assert read_close_code(s) == 1009
    assert s.recv(10) == b""  # and the node closes the connection
    s.close()

    async def go():  # another client is still served
        async with websockets.connect(one_node.ws_url) as ws:
            await ws.send(new_message("after the huge header"))
            ok = await recv_json(ws)
            assert ok["type"] == "newMessagesForClient"
            assert ok["payload"][0]["text"] == "after the huge header"
    run(go())


def test_unfinished_handshake_is_closed(logdir, procs):
    d = Discovery(logdir)
    procs.append(d)
    nd = Node(d, logdir, extra=("--handshake-timeout-ms", "300"))
    procs.append(nd)
    s = socket.create_connection(("127.0.0.1", nd.client_port), timeout=HANG)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    data = s.recv(4096)  # the answer, then EOF; or EOF at once
    while data:
        assert b"408" in data or data.startswith(b"HTTP/1.1 408")
        data = s.recv(4096)
    s.close()


def test_peer_garbage_is_refused_and_the_node_keeps_serving(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2)
    s = socket.create_connection(("127.0.0.1", nodes[0].sync_port), timeout=HANG)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n" + b"\xff" * 100)
    assert s.recv(100) == b""  # disconnected
    s.close()
    assert "bad frame" in nodes[0].log() or "refus" in nodes[0].log()
    run(exchange(nodes, clients_per_node=1, per_client=5))


def read_frame(s):
    """One server frame from a raw socket: (opcode, payload)."""
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            assert chunk, "connection closed"
            b += chunk
        return b
    h = exact(2)
    assert h[1] & 0x80 == 0, "server frames are not masked"
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    return h[0] & 0x0F, exact(n)


def test_fragments_ping_and_close_follow_the_rfc(one_node):
    s = raw_ws(one_node.client_port)
    body = new_message("in three pieces").encode()
    s.sendall(masked_frame(1, body[:10], fin=False))
    s.sendall(masked_frame(9, b"are you there"))          # a ping between fragments
    s.sendall(masked_frame(0, body[10:30], fin=False))
    s.sendall(masked_frame(0, body[30:]))
    op, payload = read_frame(s)
    assert (op, payload) == (10, b"are you there")         # pong, same payload
    op, payload = read_frame(s)
    assert op == 1
    f = json.loads(payload)
    assert f["type"] == "newMessagesForClient"
    assert f["payload"][0]["text"] == "in three pieces"
    s.sendall(masked_frame(8, struct.pack("!H", 1000) + b"bye"))
    op, payload = read_frame(s)
    assert op == 8 and struct.unpack("!H", payload[:2])[0] == 1000   # echoed
    assert s.recv(10) == b""                               # then the node closes
    s.close()


def test_nodes_keep_serving_without_discovery_and_log_in_again(logdir, procs):
    port = free_port()
    d = Discovery(logdir, extra=("--listen", f"127.0.0.1:{port}"))
    procs.append(d)
    nodes = [Node(d, logdir), Node(d, logdir)]
    procs.extend(nodes)
    wait_mesh(nodes)
    d.stop()
    run(exchange(nodes, clients_per_node=1, per_client=5))   # the mesh they have
    wait_until(lambda: all(not n.status()["discovery"]["active"] for n in nodes), HANG,
               "the nodes to notice that discovery is gone")
    run(exchange(nodes, clients_per_node=1, per_client=5))
    d.start()                                                # same port, same data
    wait_until(lambda: d.active_ids() == sorted(n.id for n in nodes), HANG,
               "the nodes to log in again")
    wait_mesh(nodes)
    run(exchange(nodes, clients_per_node=1, per_client=5))


PENDING_CAP = 64  # MESH_MAX_HELLO_PENDING in node/mesh.c


def test_connections_without_hello_beyond_the_cap_are_closed_at_once(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 3)
    a = nodes[0]
    t0 = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", a.sync_port), timeout=HANG)
             for _ in range(PENDING_CAP + 20)]
    try:
        # The node closes the 20 beyond the cap itself (each of the others
        # may wait for its hello 5 s, a margin far above the time all of
        # them take to be accepted).
        closed = set()
        deadline = time.monotonic() + HANG
        while len(closed) < 20:
            assert time.monotonic() < deadline, f"only {len(closed)} closed by the node"
            open_ = [s for s in socks if s not in closed]
            readable, _, _ = select.select(open_, [], [], 0.1)
            for s in readable:
                try:
                    assert s.recv(1) == b"", "the node sent something before any hello"
                except ConnectionResetError:
                    pass
                closed.add(s)
        assert a.status()["linksRefused"] == 20
        # The mesh with the real peers stays up, and messages cross it.
        assert a.peers_up() == sorted(n.id for n in nodes[1:])
        run(exchange(nodes, clients_per_node=1, per_client=5))
        # Logged, but not once per connection: one line a second at most.
        lines = [ln for ln in a.log().splitlines() if "inbound peer connection(s) at once" in ln]
        assert 1 <= len(lines) <= 1 + int(time.monotonic() - t0)
    finally:
        for s in socks:
            s.close()


def test_empty_fragments_and_the_new_close_codes_reach_a_live_node(one_node):
    """Issue 11's crash: a text frame with FIN=0 and no payload killed the
    node (memcpy from NULL). Empty first, middle and last fragments now
    make the message they belong to; and a close with 1012-1014 (valid in
    RFC 6455's registry) is echoed, not answered with 1002."""
    s = raw_ws(one_node.client_port)
    body = new_message("after an empty fragment").encode()
    s.sendall(masked_frame(1, b"", fin=False))
    s.sendall(masked_frame(0, body, fin=False))
    s.sendall(masked_frame(0, b"", fin=False))
    s.sendall(masked_frame(0, b""))
    op, payload = read_frame(s)
    assert op == 1
    assert json.loads(payload)["payload"][0]["text"] == "after an empty fragment"
    s.close()
    for code in (1012, 1013, 1014):
        s = raw_ws(one_node.client_port)
        s.sendall(masked_frame(8, struct.pack("!H", code)))
        assert read_close_code(s) == code
        s.close()
    assert one_node.alive()
