"""End-to-end tests of chat rooms (docs/PROTOCOL.md 1.4, subscribe and
unsubscribe): a client that subscribes gets only its chats' messages, from
every node; one that never subscribes (every DSatter client) gets every
chat as before; the answers say what a client is in; catch-up
(clientSyncRequest) holds only a client's chats and, when it had to stop,
says where to go on ("next"). Real processes on loopback; a message that
must NOT arrive is shown absent by the order of one connection: a later
frame that did arrive proves nothing was queued before it."""

import asyncio
import json

import websockets

import pytest

from cluster import masked_frame, new_message, raw_ws, start_cluster

HANG = 30  # seconds: only a guard against hangs


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def connect(node):
    ws = await websockets.connect(node.ws_url, max_size=2**24, max_queue=None)
    await ws.send("Client connected")  # as DSatter's client does: ignored
    return ws


async def next_frame(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), HANG))


async def request(ws, req, want_type):
    """Sends req and returns the next frame, which must be of want_type or
    an error frame (returned for the caller to check)."""
    await ws.send(json.dumps(req))
    f = await next_frame(ws)
    assert f["type"] in (want_type, "error"), f
    return f


async def subscribe(ws, chats):
    f = await request(ws, {"type": "subscribe", "payload": {"chatIds": chats}}, "subscribeReply")
    assert f["type"] == "subscribeReply", f
    return f["payload"]


async def unsubscribe(ws, chats):
    f = await request(ws, {"type": "unsubscribe", "payload": {"chatIds": chats}},
                      "unsubscribeReply")
    assert f["type"] == "unsubscribeReply", f
    return f["payload"]


async def messages_until(ws, last_texts):
    """Every message frame until all of last_texts have arrived."""
    got, waiting = [], set(last_texts)
    while waiting:
        f = await next_frame(ws)
        assert f["type"] == "newMessagesForClient", f
        m = f["payload"][0]
        got.append(m)
        waiting.discard(m["text"])
    return got


def test_subscribe_answers_and_errors(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2)

    async def go():
        ws = await connect(nodes[0])
        # unsubscribing before subscribing: it takes every chat
        f = await request(ws, {"type": "unsubscribe", "payload": {"chatIds": [11]}},
                          "unsubscribeReply")
        assert f["type"] == "error" and "takes every chat" in f["error"], f
        assert await subscribe(ws, [12, 11, 12, -3]) == {"all": False, "chatIds": [-3, 11, 12]}
        assert await subscribe(ws, [11, 20]) == {"all": False, "chatIds": [-3, 11, 12, 20]}
        assert await unsubscribe(ws, [11, 99]) == {"all": False, "chatIds": [-3, 12, 20]}
        assert await unsubscribe(ws, [-3, 12, 20]) == {"all": False, "chatIds": []}
        f = await request(ws, {"type": "subscribe", "payload": {"chatIds": "11"}},
                          "subscribeReply")
        assert f["type"] == "error" and "must be an array" in f["error"], f
        # 1024 chats at most: 1000, then 30 new ones is refused and changes nothing
        assert len((await subscribe(ws, list(range(1000))))["chatIds"]) == 1000
        f = await request(ws, {"type": "subscribe", "payload": {"chatIds": list(range(990, 1030))}},
                          "subscribeReply")
        assert f["type"] == "error" and "more than 1024 chats" in f["error"], f
        assert len((await subscribe(ws, list(range(1000, 1024))))["chatIds"]) == 1024
        f = await request(ws, {"type": "subscribe", "payload": {"all": True}}, "subscribeReply")
        assert f["payload"] == {"all": True, "chatIds": []}, f
        st = nodes[0].status()["rooms"]
        assert st == {"rooms": 0, "memberships": 0}, st
        await subscribe(ws, [5, 6])
        st = nodes[0].status()["rooms"]
        assert st == {"rooms": 2, "memberships": 2}, st
        await ws.close()
    run(go())


def test_delivery_only_to_members_across_nodes(logdir, procs):
    """Clients on both nodes in overlapping rooms, one DSatter-style client
    in every chat, one in no chat; a sender on each node writes to every
    chat. Each client gets exactly its chats' messages, once, in order."""
    _, nodes = start_cluster(logdir, procs, 2)
    a, b = nodes
    rooms = {"r1": (a, [1001]), "r12": (b, [1001, 1002]), "r2": (a, [1002]),
             "r3": (b, [1003])}
    chats = [11, 1001, 1002, 1003]

    async def go():
        clients = {}
        for name, (node, cs) in rooms.items():
            clients[name] = await connect(node)
            await subscribe(clients[name], cs)
        clients["every"] = await connect(b)  # never subscribes
        none = await connect(a)
        await subscribe(none, [1003])
        await unsubscribe(none, [1003])  # in no chat now
        senders = [await connect(a), await connect(b)]
        sent = []
        for i in range(40):
            for k, s in enumerate(senders):
                chat = chats[(i + k) % len(chats)]
                text = f"m{k}-{i}-{chat}"
                await s.send(new_message(text, sender=f"s{k}", chat=chat))
                sent.append((f"s{k}", text, chat))
        # the last message of each sender in each chat marks the end
        for k, s in enumerate(senders):
            for chat in chats:
                text = f"end{k}-{chat}"
                await s.send(new_message(text, sender=f"s{k}", chat=chat))
                sent.append((f"s{k}", text, chat))
        for name, ws in clients.items():
            mine = chats if name == "every" else rooms[name][1]
            ends = [f"end{k}-{c}" for k in range(2) for c in mine]
            got = await messages_until(ws, ends)
            want = [t for (_, t, c) in sent if c in mine]
            assert sorted(m["text"] for m in got) == sorted(want), name
            assert all(m["chatId"] in mine for m in got), name
            for k in range(2):  # each sender's messages in the order sent
                assert [m["text"] for m in got if m["sender"] == f"s{k}"] == \
                    [t for (s, t, c) in sent if s == f"s{k}" and c in mine], name
        # The client in no chat: joining 1003 now, the next message it
        # gets is one sent after that, so none of the earlier ones were queued.
        await subscribe(none, [1003])
        await senders[0].send(new_message("after", sender="s0", chat=1003))
        f = await next_frame(none)
        assert f["type"] == "newMessagesForClient" and f["payload"][0]["text"] == "after", f
        for ws in list(clients.values()) + senders + [none]:
            await ws.close()
    run(go())


@pytest.mark.parametrize("extra", [(), ("--max-queue", "4096")], ids=["default", "small-queue"])
def test_a_burst_of_mixed_chats_keeps_each_clients_order(logdir, procs, extra):
    """600 messages in one write, their chats interleaved, are held for one
    commit (or a few) and go out coalesced: several frames per buffer, runs
    of one chat to its room's members (clients.h). Each client still gets
    exactly its chats' messages, once each, in the order sent; with
    --max-queue 4096 the buffers hold at most 2,048 bytes, so each burst is
    cut into many."""
    _, nodes = start_cluster(logdir, procs, 1, node_extra=extra)
    node = nodes[0]
    pattern = [1, 1, 2, 1, 2, 2, 3, 2, 1, 3, 3, 1]
    sent = [(f"b{i}", pattern[i % len(pattern)]) for i in range(600)]
    sent += [("end1", 1), ("end2", 2), ("end3", 3)]
    members = {"every": None, "r12": [1, 2], "r2": [2], "r31": [3, 1]}

    async def go():
        clients = {}
        for name, chats in members.items():
            clients[name] = await connect(node)
            if chats is not None:
                await subscribe(clients[name], chats)
        # The sender takes chat 999 only (nobody writes there), asks that
        # first, and writes everything in one go.
        s = raw_ws(node.client_port)
        burst = masked_frame(1, json.dumps({"type": "subscribe",
                                            "payload": {"chatIds": [999]}}).encode())
        burst += b"".join(masked_frame(1, new_message(t, sender="s", chat=c).encode())
                          for (t, c) in sent)
        s.sendall(burst)
        for name, ws in clients.items():
            mine = members[name] or [1, 2, 3]
            got = await messages_until(ws, [f"end{c}" for c in mine])
            assert [m["text"] for m in got] == [t for (t, c) in sent if c in mine], name
            assert all(m["chatId"] in mine for m in got), name
            await ws.close()
        s.close()
    run(go())
    # Every frame counted once per client it went to.
    want = sum(len([1 for (_, c) in sent if c in (m or [1, 2, 3])]) for m in members.values())
    assert node.status()["messages"]["toClients"] == want


def test_catch_up_holds_only_the_clients_chats(logdir, procs):
    """--sync-limit 7 and --sync-scan 100 make replies stop early, by count
    and by what they may look through; asking again with "next" until a
    reply is not truncated gets every message of the client's chats once."""
    _, nodes = start_cluster(logdir, procs, 2,
                             node_extra=("--sync-limit", "7", "--sync-scan", "100"))
    a, b = nodes

    async def go():
        senders = [await connect(a), await connect(b)]
        sent = []
        for i in range(300):
            k = i % 2
            chat = 2001 if i % 37 == 0 else 2002 if i % 5 == 0 else 11
            text = f"h{i}"
            await senders[k].send(new_message(text, sender=f"s{k}", chat=chat))
            sent.append((f"s{k}", text, chat))
        # Stored and delivered on b: once b has sent each origin's last
        # message to a client, it has every earlier one of that origin.
        every = await connect(b)
        await senders[0].send(new_message("last0", sender="s0", chat=11))
        await senders[1].send(new_message("last1", sender="s1", chat=11))
        sent += [("s0", "last0", 11), ("s1", "last1", 11)]
        await messages_until(every, ["last0", "last1"])

        ws = await connect(b)
        await subscribe(ws, [2001, 2002])
        want = sorted(t for (_, t, c) in sent if c in (2001, 2002))
        # without marks: the latest of its chats, at most 7
        r = await request(ws, {"type": "clientSyncRequest", "payload": {}}, "clientSyncReply")
        assert r["truncated"] is True and len(r["payload"]) == 7, r
        assert r["next"] == {str(a.id): 151, str(b.id): 151}, r
        assert all(m["chatId"] in (2001, 2002) for m in r["payload"])
        assert {m["text"] for m in r["payload"]} <= set(want)
        # with marks, from the start, following "next"
        marks = {str(a.id): 0, str(b.id): 0}
        got, rounds = [], 0
        while True:
            r = await request(ws, {"type": "clientSyncRequest", "payload": marks},
                              "clientSyncReply")
            assert r["type"] == "clientSyncReply", r
            assert all(m["chatId"] in (2001, 2002) for m in r["payload"])
            got += [m["text"] for m in r["payload"]]
            rounds += 1
            assert rounds < 100
            if not r["truncated"]:
                # the point the reply covers: each origin's highest
                assert r["next"] == {str(a.id): 151, str(b.id): 151}, r
                break
            assert set(r["next"]) == set(marks), r
            assert any(r["next"][o] > marks[o] for o in marks), "no progress"
            marks = r["next"]
        assert sorted(got) == want and len(got) == len(set(got))
        assert rounds > 3  # both limits were met on the way

        # a client in every chat still gets all chats (and no "next")
        r = await request(every, {"type": "clientSyncRequest",
                                  "payload": {str(a.id): 140, str(b.id): 140}},
                          "clientSyncReply")
        assert r["truncated"] is True and "next" not in r
        assert {m["chatId"] for m in r["payload"]} >= {11}
        # a client in no chat gets nothing, and is told nothing is missing
        await unsubscribe(ws, [2001, 2002])
        r = await request(ws, {"type": "clientSyncRequest", "payload": {}}, "clientSyncReply")
        assert r["payload"] == [] and r["truncated"] is False
        assert r["next"] == {str(a.id): 151, str(b.id): 151}, r
        for s in senders + [every, ws]:
            await s.close()
    run(go())
