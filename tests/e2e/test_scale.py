"""End-to-end test of many idle clients on one node (docs/PERFORMANCE.md,
"Connection scale"; docs/PROTOCOL.md 5.3): a thousand handshakes in flight
at once, as when every client reconnects after a restart, are all
answered 101 (HTTP and WebSocket connections share one descriptor cap),
and one message then reaches every one of the thousand.

The clients are raw sockets on one selector; speed is measured by
tools/conn-scale, never asserted here."""

import resource
import selectors
import time

from cluster import Discovery, Node, masked_frame, metrics, new_message, ws_request, wait_until

HANG = 60  # seconds: only a guard against hangs, never a speed claim
CLIENTS = 1000
FDS = 1600  # the node's limit: 512 kept, 1088 for connections


def read_heads(socks):
    """The handshake answer of every socket, read on one selector."""
    sel = selectors.DefaultSelector()
    heads = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    deadline = time.monotonic() + HANG
    while len(heads) < len(socks):
        assert time.monotonic() < deadline, f"{len(heads)} of {len(socks)} handshakes answered"
        for key, _ in sel.select(1):
            chunk = key.fileobj.recv(4096)
            key.data.extend(chunk)
            if b"\r\n\r\n" in key.data or not chunk:
                heads[key.fileobj] = bytes(key.data)
                sel.unregister(key.fileobj)
    sel.close()
    return heads


def test_a_thousand_handshakes_at_once_then_one_message_to_all(logdir, procs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CLIENTS + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS, FDS))

    d = Discovery(logdir)
    procs.append(d)
    # No pings: these raw clients do not answer them.
    nd = Node(d, logdir, extra=("--ping-interval-ms", "0"), preexec=limit)
    procs.append(nd)
    assert "at most 1071 WebSocket clients, and 1088 connections in all" in nd.log()

    # Every request is sent before any answer is read: a thousand
    # handshakes in flight at once, far more than a fixed HTTP share of
    # the descriptors (a sixteenth, 68) would have let in.
    socks = [ws_request(nd.client_port, timeout=HANG) for _ in range(CLIENTS)]
    heads = read_heads(socks)
    refused = [h[:40] for h in heads.values() if not h.startswith(b"HTTP/1.1 101")]
    assert not refused, f"{len(refused)} refused, e.g. {refused[0]!r}"
    wait_until(lambda: nd.status()["clients"] == CLIENTS, HANG, f"{CLIENTS} clients")

    # One message from the first reaches all of them, the sender included.
    socks[0].setblocking(True)
    socks[0].sendall(masked_frame(1, new_message("to-all-1000", sender="scale").encode()))
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ, bytearray())
    got = set()
    deadline = time.monotonic() + HANG
    while len(got) < CLIENTS:
        assert time.monotonic() < deadline, f"{len(got)} of {CLIENTS} clients got the message"
        for key, _ in sel.select(1):
            s = key.fileobj
            chunk = s.recv(65536)
            assert chunk, "the node closed a client"
            key.data.extend(chunk)
            if b'"text":"to-all-1000"' in key.data:
                got.add(s)
                sel.unregister(s)
    sel.close()
    m = metrics(nd.url)
    assert m[("dchat_clients", None)] == CLIENTS
    assert m[("dchat_deliveries_total", None)] == CLIENTS
    for s in socks:
        s.close()
    wait_until(lambda: nd.status()["clients"] == 0, HANG, "the clients to be gone")
