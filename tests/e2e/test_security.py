"""End-to-end tests of the authenticated mesh (docs/PROTOCOL.md 2.1 and 6):
a node needs the cluster secret to start (or --insecure); a peer that
cannot prove the secret is refused and never gets or gives a message; an
authenticated peer cannot speak for a node we link to, nor for a node that
does not exist; a hello for a linked node's id cannot take the link's
place or make it flap. The attacker is tests/e2e/peer.py, written from the
protocol document."""

import asyncio
import json
import os
import subprocess

import pytest
import websockets

from cluster import (BIN_DIR, TEST_SECRET, Discovery, Node, new_message, start_cluster,
                     wait_until)
import peer
from peer import connect, msg_frame

HANG = 30
SECRET = TEST_SECRET.encode()


def test_a_node_without_a_secret_does_not_start_unless_insecure(logdir, procs):
    d = Discovery(logdir, secret=None, extra=("--insecure",))
    procs.append(d)
    env = {k: v for k, v in os.environ.items() if k != "DCHAT_CLUSTER_SECRET"}
    p = subprocess.run([os.path.join(BIN_DIR, "node"), "--discovery", d.url,
                        "--listen", "127.0.0.1", "--data-dir", os.path.join(logdir, "x")],
                       capture_output=True, text=True, timeout=HANG, env=env)
    assert p.returncode == 64, p.stderr              # EX_USAGE
    assert "no cluster secret" in p.stderr and "--insecure" in p.stderr
    short = os.path.join(logdir, "short.secret")
    with open(short, "w") as f:
        f.write("tooshort\n")
    p = subprocess.run([os.path.join(BIN_DIR, "node"), "--cluster-secret-file", short],
                       capture_output=True, text=True, timeout=HANG, env=env)
    assert p.returncode == 64 and "has 8 bytes" in p.stderr, p.stderr
    nd = Node(d, logdir, secret=None, extra=("--insecure",))
    procs.append(nd)
    assert "running --insecure" in nd.log()


def wrong_secret_dial(nd, claim):
    """Dials nd's sync port as node `claim` with a wrong secret; returns
    whether nd's own proof verified for us (it must not: other secret)."""
    link = connect(nd.sync_port, claim, b"not the cluster secret at all")
    try:
        link.dial_handshake()
        ok = link.node_proof_ok
        # Whatever we send now is refused: the link closes, nothing comes.
        link.send(msg_frame(claim, 1, "FORGED"))
        with pytest.raises((EOFError, ConnectionError)):
            link.recv()
        return ok
    finally:
        link.s.close()


def test_a_peer_without_the_secret_is_refused_and_gets_nothing(logdir, procs):
    d, (a, b) = start_cluster(logdir, procs, 2)

    # A wrong secret, claiming a fresh id and then the id of a live peer.
    assert wrong_secret_dial(b, 900) is False
    # A bare message before any proof.
    link = connect(b.sync_port, 901, SECRET)
    link.s.sendall(peer.frame(peer.HELLO, 901, 0, peer.MAGIC + os.urandom(32)))
    ftype, *_ = peer.read_frame(link.s)
    assert ftype == peer.HELLO
    ftype, *_ = peer.read_frame(link.s)
    assert ftype == peer.AUTH
    link.s.sendall(msg_frame(901, 1, "FORGED before the proof"))
    assert link.s.recv(65536) == b""
    link.s.close()

    wait_until(lambda: b.status()["linksUnauthenticated"] == 2, HANG, "b to count both")
    assert "did not prove the cluster secret" in b.log()
    st = b.status()
    assert st["messages"]["fromPeers"] == 0
    assert sorted(p["id"] for p in st["peers"]) == [a.id]   # no 900, no 901
    assert a.id in b.peers_up()
    # (A whole node with another secret does not even get an id from
    # discovery: test_discovery.py.)


def test_an_authenticated_peer_cannot_forge_other_origins(logdir, procs):
    """An insider (it has the secret) links to b as node 999 and sends
    messages as a (linked to b), as 77 (no such node) and as itself: only
    its own are taken."""
    d, (a, b) = start_cluster(logdir, procs, 2)
    link = connect(b.sync_port, 999, SECRET)
    try:
        assert link.dial_handshake() == b.id and link.node_proof_ok
        wait_until(lambda: 999 in b.peers_up(), HANG, "b to take the insider's link")
        # b's marks come first: a is direct (b gets a's messages from a).
        ftype, _, origin, _, payload = link.recv()
        assert (ftype, origin) == (peer.MARKS, b.id)
        link.send(msg_frame(a.id, 1, "FORGED: transfer the money", b"ceo"),
                  msg_frame(77, 1, "pre-poisoned"),
                  msg_frame(999, 1, "mine"))
        wait_until(lambda: b.status()["forgedDropped"] == 2, HANG, "b to drop both forgeries")
        wait_until(lambda: {o["origin"] for o in b.status()["history"]["origins"]} == {999},
                   HANG, "b to store the insider's own message only")
    finally:
        link.s.close()
    # a's own first message is still number 1 everywhere.
    async def go():
        ws = await websockets.connect(a.ws_url)
        await ws.send(new_message("real"))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), HANG))
            if m["type"] == "newMessagesForClient":
                return m["payload"][0]
    m = asyncio.run(go())
    assert (m["nodeId"], m["id"], m["text"]) == (a.id, 1, "real")
    wait_until(lambda: {o["origin"]: o["highest"] for o in b.status()["history"]["origins"]}
               .get(a.id) == 1, HANG, "b to get a's real message 1")


def peer_entry(nd, pid):
    return next(p for p in nd.status()["peers"] if p["id"] == pid)


def test_a_hello_for_a_linked_id_cannot_take_the_link_or_make_it_flap(logdir, procs):
    d, (a, b) = start_cluster(logdir, procs, 2)
    before = peer_entry(b, a.id)
    assert before["state"] == "up"
    for i in range(10):
        # Without the secret, and with it (an insider): both claim a's id.
        for secret in (b"wrong secret, wrong secret", SECRET):
            link = connect(b.sync_port, a.id, secret)
            try:
                with pytest.raises((EOFError, ConnectionError)):
                    link.dial_handshake()   # closed at our hello: no answer at all
            finally:
                link.s.close()
    after = peer_entry(b, a.id)
    assert after["state"] == "up" and after["direction"] == before["direction"]
    assert after["sinceMs"] >= before["sinceMs"]     # the same link, never replaced
    assert b.log().count(f"link to node {a.id} up") == 1
    assert a.log().count(f"link to node {b.id} up") == 1
