"""End-to-end tests of the opening handshake on the node's client port
(docs/PROTOCOL.md 1.1): Host is required (RFC 9112 3.2, RFC 6455 4.1);
--allowed-origins limits which web origins may open a WebSocket, while a
handshake without Origin (DSatter's clients, other programs) is always
accepted; and a connection that sends nothing is closed after
--handshake-timeout-ms, counted from accept. Handshakes go over raw sockets,
so that a refusal is read whole; the websockets library is the independent
client that must go on working."""

import asyncio
import base64
import json
import os
import socket
import subprocess

import pytest
import websockets

from cluster import BIN_DIR, SANITIZER_MARKS, TEST_SECRET, Discovery, Node, new_message

HANG = 20  # seconds: only a guard against hangs, never a speed claim
ALLOWED = "https://chat.example.com, http://localhost:8080"


def handshake(host="x", origin=None, version="1.1"):
    """A WebSocket upgrade request; host or origin None leaves it out."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET / HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
              "Sec-WebSocket-Version: 13"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(s):
    """One answer from a raw socket: (status, headers, JSON body); the body
    of a 101 is None (the socket is a WebSocket from then on)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"closed before a whole answer: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    if status == 101:
        return status, headers, None
    n = int(headers["content-length"])
    while len(rest) < n:
        chunk = s.recv(4096)
        assert chunk, "closed inside the body"
        rest += chunk
    return status, headers, json.loads(rest[:n])


def ask(port, request):
    """Sends request on a new connection; returns (status, body). A refusal
    must close the connection after its answer; we close the others."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
        s.sendall(request)
        status, headers, body = read_answer(s)
        if status >= 400:
            assert headers.get("connection") == "close", headers
            assert s.recv(1) == b"", "more after a refusal"
        return status, body


def refused(port, request, status):
    """The error message of a refusal with the given status."""
    got, body = ask(port, request)
    assert got == status, body
    assert set(body) == {"error"}, body
    return body["error"]


async def chat_round_trip(url, origin=None):
    """What a DSatter client does: connect, say "Client connected" (ignored
    by the node), send a message, get it back."""
    async with websockets.connect(url, origin=origin) as ws:
        await ws.send("Client connected")
        await ws.send(new_message(f"via {origin}"))
        frame = json.loads(await asyncio.wait_for(ws.recv(), HANG))
        assert frame["type"] == "newMessagesForClient", frame
        assert frame["payload"][0]["text"] == f"via {origin}"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def disc(logdir, procs):
    d = Discovery(logdir)
    procs.append(d)
    return d


# --- Host ---------------------------------------------------------------------

def test_missing_host_is_400_and_the_node_goes_on(disc, logdir, procs):
    nd = Node(disc, logdir)
    procs.append(nd)
    port = nd.client_port
    err = refused(port, b"GET /healthz HTTP/1.1\r\n\r\n", 400)
    assert "no Host header" in err and "send Host:" in err, err
    err = refused(port, handshake(host=None), 400)
    assert "no Host header" in err, err
    err = refused(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
    assert "more than one Host" in err, err
    # HTTP/1.0 may leave Host out; a WebSocket handshake may not (RFC 6455).
    assert ask(port, b"GET /healthz HTTP/1.0\r\n\r\n") == (200, {"status": "ok"})
    err = refused(port, handshake(host=None, version="1.0"), 400)
    assert err.startswith("WebSocket handshake refused: Host is missing"), err
    assert ask(port, handshake())[0] == 101
    run(chat_round_trip(nd.ws_url))


# --- --allowed-origins ----------------------------------------------------------

def test_allowed_origins(disc, logdir, procs):
    nd = Node(disc, logdir, extra=("--allowed-origins", ALLOWED))
    procs.append(nd)
    port = nd.client_port
    assert "must come from https://chat.example.com,http://localhost:8080" in nd.log()
    for origin in ("https://chat.example.com", "HTTPS://Chat.Example.COM:443",
                   "http://localhost:8080"):
        assert ask(port, handshake(origin=origin))[0] == 101, origin
    # No Origin at all, as DSatter's clients send: always accepted.
    assert ask(port, handshake())[0] == 101
    for origin in ("https://evil.example", "http://chat.example.com", "http://localhost",
                   "https://chat.example.com.evil.example", "null"):
        err = refused(port, handshake(origin=origin), 403)
        assert err == (f"WebSocket handshake refused: origin {origin} is not in this node's "
                       "--allowed-origins; open the chat from an allowed page, or ask the "
                       "operator to add it"), err
    # Plain HTTP is not about origins.
    assert ask(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example"
                     b"\r\n\r\n") == (200, {"status": "ok"})
    # An independent client, from an allowed page and without Origin.
    run(chat_round_trip(nd.ws_url, origin="http://localhost:8080"))
    run(chat_round_trip(nd.ws_url))


def test_allowed_origins_from_the_environment(disc, logdir, procs, monkeypatch):
    monkeypatch.setenv("NODE_ALLOWED_ORIGINS", "https://a.example")
    nd = Node(disc, logdir)
    procs.append(nd)
    assert ask(nd.client_port, handshake(origin="https://a.example"))[0] == 101
    refused(nd.client_port, handshake(origin="https://b.example"), 403)
    # The command line wins over the environment.
    nd2 = Node(disc, logdir, extra=("--allowed-origins", "https://b.example"))
    procs.append(nd2)
    assert ask(nd2.client_port, handshake(origin="https://b.example"))[0] == 101
    refused(nd2.client_port, handshake(origin="https://a.example"), 403)


def test_without_allowed_origins_any_origin_is_accepted(disc, logdir, procs):
    nd = Node(disc, logdir)
    procs.append(nd)
    for origin in ("https://evil.example", "null"):
        assert ask(nd.client_port, handshake(origin=origin))[0] == 101, origin


@pytest.mark.parametrize("value,needle", [
    ("chat.example.com", "is not an origin: expected scheme://host[:port]"),
    ("https://chat.example.com/", "an origin has no path"),
    ("https://a.example:99999", "the port must be a number from 1 to 65535"),
    ("https://a.example,,https://b.example", "origin 2 of the list is empty"),
    ("null", "\"null\" cannot be allowed"),
    ("*", "leave the option out to allow any origin"),
    ("", "no origin given"),
])
def test_bad_allowed_origins_refuse_to_start(logdir, value, needle):
    for args, env in ((["--allowed-origins", value], {}),
                      ([], {"NODE_ALLOWED_ORIGINS": value})):
        if not args and value == "":
            continue  # an empty environment variable counts as unset
        p = subprocess.run([os.path.join(BIN_DIR, "node"), "--discovery", "http://127.0.0.1:1",
                            "--data-dir", os.path.join(logdir, "never"), *args],
                           capture_output=True, text=True, timeout=HANG,
                           env={**os.environ, "DCHAT_CLUSTER_SECRET": TEST_SECRET, **env},
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 64, p.stderr  # EX_USAGE
        assert "--allowed-origins" in p.stderr and needle in p.stderr, p.stderr
        if env:
            assert "(from NODE_ALLOWED_ORIGINS)" in p.stderr, p.stderr
        for mark in SANITIZER_MARKS:
            assert mark not in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(logdir, "never"))


# --- the handshake timeout counts from accept ---------------------------------

def test_a_silent_connection_is_closed_after_the_handshake_timeout(disc, logdir, procs):
    """Before, nothing applied to it but the HTTP idle timeout, 60 s; HANG
    (20 s) stops the wait long before that."""
    nd = Node(disc, logdir, extra=("--handshake-timeout-ms", "300"))
    procs.append(nd)
    with socket.create_connection(("127.0.0.1", nd.client_port), timeout=HANG) as s:
        try:
            data = s.recv(1)
        except socket.timeout:
            raise AssertionError(f"a silent connection was still open after {HANG} s; "
                                 "it must be closed after --handshake-timeout-ms")
        assert data == b"", f"the node answered a connection that asked nothing: {data!r}"
    # Clients that do send their handshake are served.
    run(chat_round_trip(nd.ws_url))
