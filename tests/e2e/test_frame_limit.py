"""End-to-end tests of the client frame limit: no frame for one message may
be larger than every client of the node takes (the smaller of --max-message
+ 2048 and half of --max-queue). A client's message over it is refused
where it enters, with an error frame; a peer's is stored as it came but
shown to clients with its text withheld, so that no client is cut and the
origin's numbering goes on. Real processes on loopback; the peer is a raw
socket speaking the peer protocol (tests/e2e/peer.py)."""

import asyncio
import json
import os
import re
import socket
import sqlite3
import time

import pytest
import websockets

from cluster import (TEST_SECRET, Discovery, Node, http_json, new_message, start_cluster,
                     wait_until)
from peer import FakeLink, msg_frame

HANG = 30  # seconds: only a guard against hangs
WITHHELD = "[message withheld: too large for the clients of this node]"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), HANG))


def digest(node):
    return {o["origin"]: (o["count"], o["highest"])
            for o in node.status()["history"]["origins"]}


@pytest.mark.parametrize("extra,text,limit", [
    # 150000 control characters: 900 KB in the request already (within
    # --max-message), as much out, more than half of the 512 KiB queue
    (("--max-message", "1047552", "--max-queue", "524288"), "\x01" * 150000, 262144),
    # raw U+2028, 3 bytes in and 6 out: within --max-message in, over it
    # (plus 2048) out
    ((), "\u2028" * 21000, 65536 + 2048),
], ids=["control-characters", "line-separators"])
def test_a_client_message_too_large_once_encoded_is_refused(logdir, procs, extra, text, limit):
    _, nodes = start_cluster(logdir, procs, 2, node_extra=extra)
    a, b = nodes
    frame = json.dumps({"type": "newMessageFromClient",
                        "payload": {"text": text, "sender": "big", "chatId": 11}},
                       ensure_ascii=False)
    max_message = int(extra[1]) if extra else 65536
    assert len(frame.encode()) <= max_message    # the WebSocket layer takes it

    async def go():
        sender = await websockets.connect(a.ws_url, max_size=None)
        others = [await websockets.connect(n.ws_url, max_size=None) for n in (a, a, b)]
        await sender.send(frame)
        err = await recv_json(sender)
        assert err["type"] == "error" and err["source"] == a.id and "payload" not in err
        m = re.fullmatch(r"message too large once encoded: (\d+) bytes, at most (\d+)",
                         err["error"])
        assert m, err
        assert int(m.group(2)) == limit and int(m.group(1)) > limit
        # Nobody was cut, and the refused message took no number: the next
        # one is the first everyone gets.
        await sender.send(new_message("small", sender="big"))
        for ws in [sender] + others:
            f = await recv_json(ws)
            assert f["type"] == "newMessagesForClient", f
            assert (f["payload"][0]["text"], f["payload"][0]["id"]) == ("small", 1)
        for ws in [sender] + others:
            await ws.close()
    run(go())
    wait_until(lambda: digest(b) == {a.id: (1, 1)}, HANG, "b to have the small message only")
    assert digest(a) == {a.id: (1, 1)}
    assert a.status()["messages"]["clientErrors"] == 1


# --- a raw peer --------------------------------------------------------------

def peer_msg(origin, seq, text, sender=b"peer", chat=11):
    return msg_frame(origin, seq, text, sender, chat, int(time.time() * 1000))


def test_a_peer_message_too_large_once_encoded_is_stored_and_withheld(logdir, procs):
    # The fake peer logs in once and must stay listed: a long --ttl.
    d = Discovery(logdir, ttl=120)
    procs.append(d)
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(HANG)
    port = lsock.getsockname()[1]
    status, reg = http_json(d.url + "/api/nodes/register", "POST", {"password": "fake"})
    assert status == 200
    fake = reg["id"]
    status, _ = http_json(d.url + "/api/nodes/active/login", "POST",
                          {"id": fake, "password": "fake", "syncport": port,
                           "clientport": port})
    assert status == 200
    nd = Node(d, logdir)               # dials every listed peer: us
    procs.append(nd)
    conn, _ = lsock.accept()
    conn.settimeout(HANG)
    link = FakeLink(conn, fake, TEST_SECRET.encode())
    try:
        assert link.accept_handshake() == nd.id
        wait_until(lambda: fake in nd.peers_up(), HANG, "the link to the fake peer")

        # 992000 bytes of control characters: one peer frame, but about
        # 6 MB once escaped for clients, above every client's queue bound
        huge = bytes(range(1, 32)) * 32000

        async def go():
            # websockets' default max_size (1 MiB), like DSatter's client
            ws = await websockets.connect(nd.ws_url)
            link.send(peer_msg(fake, 1, huge), peer_msg(fake, 2, b"after"))
            f1, f2 = await recv_json(ws), await recv_json(ws)
            await ws.close()
            return f1, f2
        f1, f2 = run(go())
        for f in (f1, f2):
            assert f["type"] == "newMessagesForClient" and f["source"] == nd.id
        m1, m2 = f1["payload"][0], f2["payload"][0]
        assert (m1["nodeId"], m1["id"], m1["text"]) == (fake, 1, WITHHELD)
        assert (m1["sender"], m1["chatId"]) == ("peer", 11)
        assert m1["messageId"] == f"{fake}{1:012d}"
        assert (m2["nodeId"], m2["id"], m2["text"]) == (fake, 2, "after")
        assert fake in nd.peers_up()   # the link was not cut either
    finally:
        conn.close()
        lsock.close()

    # Stored as it came (the numbering goes on; peers would get it whole) ...
    assert digest(nd) == {fake: (2, 2)}
    db = os.path.join(nd.data_dir, "history.db")

    def stored():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT seq, length(CAST(text AS BLOB)) FROM messages "
                             "WHERE origin = ? ORDER BY seq", (fake,)).fetchall()
    wait_until(lambda: stored() == [(1, len(huge)), (2, 5)], HANG, "both to be committed")
    # ... and withheld in what clients and operators read
    status, body = http_json(f"{nd.url}/api/history?origin={fake}&after=0&limit=10")
    assert status == 200 and body["more"] is False
    assert [(m["id"], m["text"]) for m in body["messages"]] == [(1, WITHHELD), (2, "after")]

    async def catch_up():
        ws = await websockets.connect(nd.ws_url)
        await ws.send(json.dumps({"type": "clientSyncRequest", "payload": {str(fake): 0}}))
        r = await recv_json(ws)
        await ws.close()
        return r
    r = run(catch_up())
    assert r["type"] == "clientSyncReply" and r["truncated"] is False
    assert [(m["id"], m["text"]) for m in r["payload"]] == [(1, WITHHELD), (2, "after")]
    assert re.search(rf"message {fake}/1 from a peer would make a \d+-byte client frame, "
                     rf"over the limit of 67584", nd.log())
