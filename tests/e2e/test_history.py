"""End-to-end tests of the history: every node stores what it accepts and
learns, nodes repair each other's gaps (anti-entropy), and clients catch up
with clientSyncRequest. Real processes on loopback; every wait polls a
condition with a hang limit."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import urllib.request

import websockets

from cluster import (BIN_DIR, REPO, Discovery, Node, free_port, http_json, metrics, new_message,
                     start_cluster, wait_mesh, wait_until)

HANG = 30  # seconds: only a guard against hangs
FAST_SYNC = ("--sync-interval", "0.3")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def digest_of(h):
    return {o["origin"]: (o["count"], o["highest"]) for o in h["origins"]}


def digest(node):
    return digest_of(node.status()["history"])


def wait_converged(nodes, want=None):
    """Until every node has the same digest (and it is `want`, if given)
    and nothing left to commit: the digest counts messages still being
    stored, /api/history reads committed ones only."""
    def same():
        hs = [n.status()["history"] for n in nodes]
        ds = [digest_of(h) for h in hs]
        ok = all(d == ds[0] for d in ds) and (want is None or ds[0] == want) and \
            not any(h["pending"] for h in hs)
        return ds[0] if ok else None
    return wait_until(same, HANG, "the nodes' histories to converge and be committed")


def history(node, origin):
    out, after = [], 0
    while True:
        status, body = http_json(f"{node.url}/api/history?origin={origin}&after={after}&limit=1000")
        assert status == 200, body
        out += body["messages"]
        if not body["more"]:
            return out
        after = out[-1]["id"]


async def connect(node):
    ws = await websockets.connect(node.ws_url, max_size=2**24, max_queue=None)
    await ws.send("Client connected")
    return ws


async def frames_until(ws, count, sender=None):
    """The next `count` messages (of `sender` only, if given)."""
    got = []
    while len(got) < count:
        f = json.loads(await asyncio.wait_for(ws.recv(), HANG))
        assert f["type"] == "newMessagesForClient", f
        m = f["payload"][0]
        if sender is None or m["sender"] == sender:
            got.append(m)
    return got


async def send_accepted(node, texts, sender=None):
    """Sends texts from one client and returns once all came back to it
    (a node sends a message to its clients only once it has stored it)."""
    if sender is None:
        sender = f"sender-of-{texts[0]}"
    ws = await connect(node)
    for t in texts:
        await ws.send(new_message(t, sender=sender))
    got = await frames_until(ws, len(texts), sender)
    await ws.close()
    assert [m["text"] for m in got] == texts
    return got


async def sync_on(node, marks):
    """One clientSyncRequest on a fresh connection to node; its answer."""
    ws = await connect(node)
    r = await sync(ws, marks)
    await ws.close()
    return r


async def sync(ws, marks):
    await ws.send(json.dumps({"type": "clientSyncRequest", "payload": marks}))
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), HANG))
        if f["type"] in ("clientSyncReply", "error"):
            return f


def assert_origin_order(msgs):
    last = {}
    for m in msgs:
        assert m["id"] > last.get(m["nodeId"], 0), f"out of order: {m}"
        last[m["nodeId"]] = m["id"]


def test_a_stopped_node_gets_all_it_missed(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 3, node_extra=FAST_SYNC)
    a, b, c = nodes
    c.stop()
    ta = [f"a{i}" for i in range(250)]
    tb = [f"b{i}" for i in range(250)]

    async def send():
        await asyncio.gather(send_accepted(a, ta), send_accepted(b, tb))
    run(send())
    c.restart()
    wait_mesh(nodes)
    wait_converged(nodes, {a.id: (250, 250), b.id: (250, 250)})
    for node, texts in ((a, ta), (b, tb)):
        h = history(c, node.id)
        assert [m["id"] for m in h] == list(range(1, 251))
        assert [m["text"] for m in h] == texts

    async def catch_up():
        ws = await connect(c)
        r = await sync(ws, {})
        await ws.close()
        return r
    r = run(catch_up())
    assert r["type"] == "clientSyncReply" and r["source"] == c.id
    assert r["truncated"] is False
    msgs = r["payload"]
    assert sorted(m["text"] for m in msgs) == sorted(ta + tb)   # all 500, once
    assert_origin_order(msgs)
    assert [m["text"] for m in msgs if m["nodeId"] == a.id] == ta


def test_an_empty_text_and_sender_go_everywhere_as_empty_strings(logdir, procs):
    # Issue 11: {"text":"","sender":""} read back from SQLite as NULL strings
    # killed the sanitizer-built node at the next clientSyncRequest (and at
    # anti-entropy and /api/history). The message alone in its origin, so
    # that every read of the store sees nothing but empty strings.
    _, nodes = start_cluster(logdir, procs, 3, node_extra=FAST_SYNC)
    a, b, c = nodes
    c.stop()   # gets it only by anti-entropy (MARKS) once it is back

    async def live():
        watcher = await connect(b)   # a client of another node
        mine = await send_accepted(a, [""], sender="")   # back to the sender on a
        theirs = await frames_until(watcher, 1)
        await watcher.close()
        return mine[0], theirs[0]
    m, relayed = run(live())
    assert m["text"] == "" and m["sender"] == "" and m["chatId"] == 11
    assert (m["nodeId"], m["id"]) == (a.id, 1)
    assert relayed == m

    def check_replies(on):
        """clientSyncRequest on each node, without marks and from mark 0:
        the message, as it went out live."""
        async def go():
            return [await sync_on(n, marks) for n in on for marks in ({}, {str(a.id): 0})]
        rs = run(go())
        assert len(rs) == 2 * len(on)
        for r in rs:
            assert r["type"] == "clientSyncReply", r
            assert r["payload"] == [m] and r["truncated"] is False
    check_replies([a, b])

    def caught_up():
        return sum(n.status()["messages"]["caughtUpToPeers"] for n in (a, b))
    before = caught_up()
    c.restart()
    wait_mesh(nodes)
    wait_converged(nodes, {a.id: (1, 1)})
    assert caught_up() > before   # c got it by anti-entropy from a or b
    check_replies(nodes)          # c's from what it stored off a link
    for n in nodes:
        assert history(n, a.id) == [m], n.name


def test_a_node_back_after_many_messages_catches_up_on_every_one(logdir, procs):
    # More than a link's catch-up queue (1 MiB) and more than one pump's 64
    # store reads of 256 rows: catch-up has to go on as the link drains,
    # pump after pump, and lose or repeat nothing.
    d, nodes = start_cluster(logdir, procs, 3)
    a, b, c = nodes
    c.stop()
    wait_until(lambda: c.id not in d.active_ids(), HANG, "discovery to forget the stopped node")
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--discovery", d.url, "--senders", "2",
                        "--max", "16000", "--format", "csv"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    want = digest(a)
    total = sum(count for count, _ in want.values())
    assert total > 64 * 256, want   # more than one pump's worth
    assert all(count == highest for count, highest in want.values()), want   # no gaps
    before = sum(n.status()["messages"]["caughtUpToPeers"] for n in (a, b))
    c.restart()
    wait_mesh(nodes)
    wait_converged(nodes, want)
    sent = sum(n.status()["messages"]["caughtUpToPeers"] for n in (a, b)) - before
    # each of c's messages came by catch-up at least once; a few may have
    # gone out twice around a MARKS frame, and were refused as duplicates
    assert sent >= total, (sent, total)


def test_a_cut_link_is_repaired_and_histories_converge(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 3, node_extra=FAST_SYNC + ("--test-hooks",))
    a, b, c = nodes
    n = 200
    ta = [f"a{i}" for i in range(n)]
    tb = [f"b{i}" for i in range(n)]

    async def go():
        watcher = await connect(c)      # a client that stays through it all
        wb = await connect(b)
        sa = await connect(a)
        sb = await connect(b)
        for i in range(n):
            if i == n // 4:
                # a and b lose their link for a while, in the middle of it
                req = urllib.request.Request(
                    f"{a.url}/api/test/cut-link?peer={b.id}&ms=600", method="POST")
                assert urllib.request.urlopen(req, timeout=5).status == 200
            await sa.send(new_message(ta[i], sender="sa"))
            await sb.send(new_message(tb[i], sender="sb"))
            if i % 20 == 0:
                await asyncio.sleep(0.05)   # spread the traffic over the cut
        got_c, got_b = await asyncio.gather(frames_until(watcher, 2 * n),
                                            frames_until(wb, 2 * n))
        for ws in (watcher, wb, sa, sb):
            await ws.close()
        return got_c, got_b
    got_c, got_b = run(go())
    wait_converged(nodes, {a.id: (n, n), b.id: (n, n)})
    # Live clients got everything once, in origin order, repaired or not.
    for got in (got_c, got_b):
        assert sorted(m["text"] for m in got) == sorted(ta + tb)
        assert_origin_order(got)
    assert "cut by a test hook" in a.log()
    # what the cut kept from b came by catch-up, and /metrics says so
    m = {nd.name: metrics(nd.url) for nd in nodes}
    repaired = sum(m[nd.name][("dchat_gaps_repaired_total", None)] for nd in nodes)
    received = sum(m[nd.name][("dchat_catchup_messages_received_total", None)] for nd in nodes)
    sent = sum(m[nd.name][("dchat_catchup_messages_sent_total", None)] for nd in nodes)
    assert m[b.name][("dchat_gaps_repaired_total", None)] > 0
    assert 0 < repaired <= received <= sent, (repaired, received, sent)


def test_sigkill_mid_burst_loses_nothing_and_reuses_no_number(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 3, node_extra=FAST_SYNC)
    a, b, c = nodes

    async def burst():
        observer = await connect(b)
        sender = await connect(a)
        for i in range(3000):
            await sender.send(new_message(f"k{i}", sender="k"))
        seen = await frames_until(observer, 200)
        a.p.send_signal(signal.SIGKILL)   # mid-burst: most are still coming
        a.p.wait()
        # Whatever else b delivers before it notices
        try:
            while True:
                f = json.loads(await asyncio.wait_for(observer.recv(), 1.0))
                if f["type"] == "newMessagesForClient":
                    seen.append(f["payload"][0])
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
        await observer.close()
        return seen
    seen = run(burst())
    assert_origin_order(seen)
    highest_seen = max(m["id"] for m in seen)
    # Nothing b delivered is missing from b's history.
    stored_b = {m["id"]: m["text"] for m in history(b, a.id)}
    for m in seen:
        assert stored_b.get(m["id"]) == m["text"]

    a.restart()
    wait_mesh(nodes)
    # a stored every message before sending it, so it has at least what b saw ...
    assert digest(a)[a.id][1] >= highest_seen
    # ... and its next message takes the next number: none is used twice.
    nxt = run(send_accepted(a, ["after restart"]))[0]
    assert nxt["id"] == digest(a)[a.id][1] and nxt["id"] > highest_seen
    final = wait_converged(nodes)
    assert final[a.id][0] == final[a.id][1]   # ids 1..highest, no holes
    # every node holds a's messages as a accepted them: k0, k1 ... then the new one
    kept = final[a.id][1] - 1
    for n in nodes:
        assert [m["text"] for m in history(n, a.id)] == \
            [f"k{i}" for i in range(kept)] + ["after restart"]


def delete_history(node):
    """Removes the node's history.db (and its WAL) but keeps node.json, so
    that the node comes back with its id and an empty history. The node
    must be stopped (its data dir LOCK is the kernel's, gone with it)."""
    assert not node.alive()
    assert os.path.exists(os.path.join(node.data_dir, "node.json"))
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(node.data_dir, "history.db" + suffix)
        if os.path.exists(path):
            os.remove(path)


def repaired(node):
    return metrics(node.url)[("dchat_gaps_repaired_total", None)]


async def watch_until(ws, text):
    """The messages ws receives up to and including the one with text."""
    got = []
    while not got or got[-1]["text"] != text:
        got += await frames_until(ws, 1)
    return got


def send_and_watch(node, text, watched):
    """Sends text on node once clients of the watched nodes listen; returns
    the message as the sender got it back, and the ids each watcher got up
    to it."""
    async def go():
        watchers = [await connect(nd) for nd in watched]
        mine = await send_accepted(node, [text])
        seen = [await watch_until(w, text) for w in watchers]
        for w in watchers:
            await w.close()
        return mine[0], [[m["id"] for m in got] for got in seen]
    return run(go())


def cluster_with_a_lost_history(logdir, procs, n, ttl=3):
    """Three nodes; a's client sends n messages, all nodes store them, then
    a is stopped and loses its history.db (it keeps node.json, so its id).
    Returns the nodes and the texts, which b and c hold as a's 1..n."""
    _, nodes = start_cluster(logdir, procs, 3, ttl=ttl, node_extra=FAST_SYNC)
    a = nodes[0]
    texts = [f"own{i}" for i in range(n)]
    run(send_accepted(a, texts))
    wait_converged(nodes, {a.id: (n, n)})
    a.stop()
    delete_history(a)
    return nodes, texts


def test_a_node_whose_history_was_deleted_gets_its_own_messages_back(logdir, procs):
    # Issue 15: a node keeps its id (node.json) but loses history.db. Its
    # peers hold its messages 1..n: they send them back, and its numbering
    # goes on after them.
    n = 40
    nodes, texts = cluster_with_a_lost_history(logdir, procs, n)
    a, b, c = nodes
    a.restart()
    wait_mesh(nodes)
    wait_converged(nodes, {a.id: (n, n)})
    assert [m["text"] for m in history(a, a.id)] == texts
    assert repaired(a) == n   # each taken once, however many peers sent it

    mine, seen = send_and_watch(a, "after the repair", [b])
    assert mine["id"] == n + 1 and seen == [[n + 1]]
    wait_converged(nodes, {a.id: (n + 1, n + 1)})


def test_fsync_off_a_crash_before_the_commit_is_repaired_from_peers(logdir, procs):
    # With --fsync off a node's messages go out before their batch commits.
    # Another connection holds the write lock of a's history, so that the
    # batch cannot commit; a is killed meanwhile, and its history lacks
    # what its peers got. They send it back after the restart.
    d = Discovery(logdir)
    procs.append(d)
    a = Node(d, logdir, extra=("--fsync", "off", *FAST_SYNC))
    procs.append(a)
    others = [Node(d, logdir, extra=FAST_SYNC) for _ in range(2)]
    procs.extend(others)
    nodes = [a, *others]
    wait_mesh(nodes)
    stored = [f"stored{i}" for i in range(20)]
    lost = [f"lost{i}" for i in range(10)]
    run(send_accepted(a, stored))
    wait_converged(nodes, {a.id: (20, 20)})
    lock = sqlite3.connect(os.path.join(a.data_dir, "history.db"), isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")   # the write lock: a's commits wait
        run(send_accepted(a, lost))       # out at once, before their commit
        for nd in others:
            wait_until(lambda: digest(nd).get(a.id) == (30, 30) and
                       not nd.status()["history"]["pending"], HANG,
                       f"{nd.name} to store a's 30")
        assert a.status()["history"]["pending"] is True   # a has not stored them
        a.kill()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    a.restart()
    wait_mesh(nodes)
    wait_converged(nodes, {a.id: (30, 30)})
    assert [m["text"] for m in history(a, a.id)] == stored + lost
    assert repaired(a) == 10

    mine, seen = send_and_watch(a, "after the crash", others)
    assert mine["id"] == 31 and seen == [[31], [31]]   # not 21 again


async def send_one(node, text):
    """One message from a fresh client: the message as it came back, or
    the error frame that refused it."""
    ws = await connect(node)
    await ws.send(new_message(text, sender="one"))
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), HANG))
        if f["type"] == "error" or f["payload"][0]["sender"] == "one":
            await ws.close()
            return f


@contextlib.contextmanager
def restarted_without_its_peers(logdir, procs, n):
    """cluster_with_a_lost_history, then b and c held still (SIGSTOP) while
    a restarts: a cannot learn from them what they hold of it. Discovery's
    long TTL keeps them listed. Yields the nodes and the texts; b and c go
    on at the end of the block."""
    nodes, texts = cluster_with_a_lost_history(logdir, procs, n, ttl=60)
    held = nodes[1:]
    for nd in held:
        nd.p.send_signal(signal.SIGSTOP)
    try:
        nodes[0].restart()
        yield nodes, texts
    finally:
        for nd in held:
            nd.p.send_signal(signal.SIGCONT)


def test_a_restarted_node_numbers_nothing_before_its_peers_said_what_they_hold(logdir, procs):
    # a lost its history; b and c, which hold a's messages 1..n, are held
    # still. a refuses client messages instead of numbering them 1..,
    # numbers the next one n + 1 once they are back, and their clients get it.
    n = 30
    with restarted_without_its_peers(logdir, procs, n) as (nodes, _):
        a, b, c = nodes
        f = run(send_one(a, "too early"))
        assert f["type"] == "error", f
        assert "cannot number messages yet" in f["error"], f
        assert "send it again" in f["error"], f
        assert a.numbering() == "waiting"
        assert metrics(a.url)[("dchat_history_own_numbering", None)] == 0
        status, body = http_json(a.url + "/readyz")
        assert status == 503 and \
            "waiting for the peers' marks before numbering messages" in body["reasons"], body
    wait_mesh(nodes)
    wait_converged(nodes, {a.id: (n, n)})

    mine, seen = send_and_watch(a, "after", [b, c])
    assert mine["id"] == n + 1 and seen == [[n + 1], [n + 1]]
    assert "too early" not in [m["text"] for m in history(b, a.id)]
    assert a.status()["history"]["own"]["conflicts"] == 0


def test_numbers_given_without_the_peers_marks_are_reported_as_conflicts(logdir, procs):
    # As above, but a gives up waiting for b and c (RELAY_OWN_WAIT_MS, 10 s)
    # and numbers a message 1, which b and c hold for another one. When they
    # are back a says so (an error in its log, history.own.conflicts, the
    # metric), takes 2..n back from them and numbers the next n + 1.
    n = 30
    with restarted_without_its_peers(logdir, procs, n) as (nodes, texts):
        a, b, c = nodes
        wait_until(lambda: a.numbering() == "open", HANG, "a to stop waiting for b and c")
        assert "sent no marks within 10 s of the start" in a.log()
        blind = run(send_one(a, "numbered blind"))
        assert blind["type"] == "newMessagesForClient", blind
        assert blind["payload"][0]["id"] == 1
    wait_until(lambda: a.status()["history"]["own"]["conflicts"] == 1, HANG,
               "a to notice that b or c holds another message 1")
    assert "this node numbered messages 1..1 since its start, but node" in a.log()
    assert metrics(a.url)[("dchat_history_own_conflicts_total", None)] == 1
    wait_mesh(nodes)
    wait_converged(nodes, {a.id: (n, n)})
    assert [m["text"] for m in history(a, a.id)] == ["numbered blind"] + texts[1:]
    assert [m["text"] for m in history(b, a.id)] == texts   # what it cannot undo
    nxt = run(send_accepted(a, ["next"]))[0]
    assert nxt["id"] == n + 1


def test_a_client_reconnecting_elsewhere_gets_exactly_what_it_missed(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 3, node_extra=FAST_SYNC)
    a, b, c = nodes
    texts = [f"m{i}" for i in range(300)]

    async def go():
        x = await connect(a)
        sender = await connect(c)
        for t in texts[:100]:
            await sender.send(new_message(t))
        first = await frames_until(x, 50)       # x reads 50, then drops
        await x.close()
        for t in texts[100:]:
            await sender.send(new_message(t))
        await frames_until(sender, 300, "tester")  # all accepted
        wait_until(lambda: digest(b).get(c.id, (0, 0))[1] == 300, HANG,
                   "b to have all 300")
        marks = {str(c.id): max(m["id"] for m in first)}
        x2 = await connect(b)
        r = await sync(x2, marks)
        # then the live stream, without a gap or a duplicate
        await sender.send(new_message("live"))
        live = await frames_until(x2, 1)
        await x2.close()
        await sender.close()
        return first, r, live
    first, r, live = run(go())
    assert r["type"] == "clientSyncReply" and r["truncated"] is False
    got = [m["text"] for m in first] + [m["text"] for m in r["payload"]]
    assert got == texts                          # exactly the missed ones, in order
    assert [m["text"] for m in live] == ["live"]
    assert live[0]["id"] == 301


def test_sync_limit_truncates_and_asking_again_continues(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2, node_extra=("--sync-limit", "40"))
    a, b = nodes
    texts = [f"t{i}" for i in range(100)]
    run(send_accepted(a, texts))
    wait_converged(nodes, {a.id: (100, 100)})

    async def go():
        ws = await connect(b)
        got, mark = [], 0
        while True:
            r = await sync(ws, {str(a.id): mark})
            got += [m["text"] for m in r["payload"]]
            mark = r["payload"][-1]["id"] if r["payload"] else mark
            if not r["truncated"]:
                break
        latest = await sync(ws, [])
        await ws.close()
        return got, latest
    got, latest = run(go())
    assert got == texts
    assert [m["text"] for m in latest["payload"]] == texts[-40:]
    assert latest["truncated"] is True


def test_bad_sync_requests_get_an_error_and_change_nothing(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2)
    a, b = nodes
    run(send_accepted(a, ["one", "two"]))
    wait_converged(nodes, {a.id: (2, 2)})
    before = [digest(n) for n in nodes]
    bad = [
        ("x", "payload"),
        (5, "payload"),
        ({"abc": 1}, "origin"),
        ({str(a.id): "x"}, "mark"),
        ({str(a.id): -1}, "mark"),
        ({str(a.id): 10**13}, "mark"),
        ({"99": 1}, "99"),
    ]

    async def go():
        ws = await connect(b)
        for payload, needle in bad:
            r = await sync(ws, payload)
            assert r["type"] == "error", (payload, r)
            assert needle in r["error"], (payload, r)
        r = await sync(ws, {str(a.id): 0})     # the connection still works
        await ws.close()
        return r
    r = run(go())
    assert [m["text"] for m in r["payload"]] == ["one", "two"]
    assert [digest(n) for n in nodes] == before


def test_history_survives_a_restart(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2)
    a, b = nodes
    run(send_accepted(a, [f"r{i}" for i in range(20)]))
    wait_converged(nodes, {a.id: (20, 20)})
    for n in nodes:
        n.stop()
        n.restart()
    wait_mesh(nodes)
    assert digest(a) == digest(b) == {a.id: (20, 20)}
    nxt = run(send_accepted(a, ["next"]))[0]
    assert nxt["id"] == 21
    status, body = http_json(f"{a.url}/api/history?origin=x")
    assert status == 400 and "origin" in body["error"]
    # ranges that hold nothing: an origin the node has never stored, and
    # one read from past its end, answer at once (http_json's timeout is
    # 5 s) and empty, and the node goes on serving
    for q in ("origin=999", f"origin={a.id}&after=999999999999", f"origin={a.id}&after=21"):
        status, body = http_json(f"{a.url}/api/history?{q}")
        assert status == 200 and body["messages"] == [] and body["more"] is False, (q, body)
    assert a.status()["history"]["origins"]


def test_a_node_registered_anew_numbers_its_new_origin_from_1(logdir, procs):
    # discovery loses its database: the nodes get 401 at their next login
    # and register again, with new ids
    port = free_port()
    d = Discovery(logdir, extra=("--listen", f"127.0.0.1:{port}"))
    procs.append(d)
    a, b = Node(d, logdir), Node(d, logdir)
    procs.extend([a, b])
    wait_mesh([a, b])
    run(send_accepted(a, ["old0", "old1", "old2"]))
    old_id = a.id
    # The nodes are held still while discovery comes back and the test
    # takes the old ids, so that the ids they get are new: otherwise their
    # next heartbeat may race the test and get 1 and 2 again.
    for nd in (a, b):
        nd.p.send_signal(signal.SIGSTOP)
    try:
        d.kill()
        shutil.rmtree(d.data_dir)
        d.start()
        for i in range(5):
            status, _ = http_json(d.url + "/api/nodes/register", "POST", {"password": f"x{i}"})
            assert status == 200, status
    finally:
        for nd in (a, b):
            nd.p.send_signal(signal.SIGCONT)
    wait_until(lambda: a.status()["id"] > 5 and b.status()["id"] > 5, HANG, "new ids")
    a.id, b.id = a.status()["id"], b.status()["id"]
    wait_mesh([a, b])
    got = run(send_accepted(a, ["new0", "new1", "new2"]))
    assert [m["id"] for m in got] == [1, 2, 3]
    assert [m["nodeId"] for m in got] == [a.id] * 3
    wait_converged([a, b], {old_id: (3, 3), a.id: (3, 3)})


def test_a_sync_right_after_a_message_does_not_repeat_it(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2)
    a = nodes[0]

    async def go():
        ws = await connect(a)
        await ws.send(new_message("first"))
        await ws.send(json.dumps({"type": "clientSyncRequest", "payload": {}}))
        live, reply = [], None
        while reply is None or not live:
            f = json.loads(await asyncio.wait_for(ws.recv(), HANG))
            if f["type"] == "clientSyncReply":
                reply = f
            elif f["type"] == "newMessagesForClient":
                live += f["payload"]
        await ws.close()
        return live, reply
    live, reply = run(go())
    texts = [m["text"] for m in live] + [m["text"] for m in reply["payload"]]
    assert texts.count("first") == 1


# --- every reply bounded ----------------------------------------------------

REPLY_CAP = 1 << 20   # HISTORY_REPLY_BYTES: bytes of JSON in one reply at most
BIG = 60000           # text bytes: a few hundred of them are many MiB


def big_texts(count):
    """Distinct 60 KB texts that need escaping here and there."""
    return [f"big{i:04d} \"q\" \\ \n\u00e9 " + "x" * (BIG - 20) for i in range(count)]


async def send_paced(node, texts, sender, batch=8):
    """send_accepted a few at a time, so that what comes back to the sender
    never nears its queue bound (--max-queue, 4 MiB)."""
    ws = await connect(node)
    got = []
    for i in range(0, len(texts), batch):
        for t in texts[i:i + batch]:
            await ws.send(new_message(t, sender=sender))
        got += await frames_until(ws, len(texts[i:i + batch]), sender)
    await ws.close()
    assert [m["text"] for m in got] == texts


def raw_history(node, origin, after, limit):
    with urllib.request.urlopen(f"{node.url}/api/history?origin={origin}&after={after}"
                                f"&limit={limit}", timeout=HANG) as r:
        assert r.status == 200
        body = r.read()
    return len(body), json.loads(body)


def test_history_answers_are_capped_and_paging_returns_each_once(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2)
    a, b = nodes
    texts = big_texts(300)   # about 18 MB in all
    run(send_paced(a, texts, "big"))
    wait_converged(nodes, {a.id: (300, 300)})
    for node in nodes:
        size, body = raw_history(node, a.id, 0, 10000)
        assert size <= REPLY_CAP
        # stopped at a message boundary because the next would not fit, not sooner
        assert size > REPLY_CAP - 2 * (BIG + 300)
        assert body["more"] is True
        assert [m["id"] for m in body["messages"]] == list(range(1, len(body["messages"]) + 1))
        got, after, pages = [], 0, 0
        while True:
            size, body = raw_history(node, a.id, after, 10000)
            assert size <= REPLY_CAP
            assert body["messages"], "a page with more=true must not be empty"
            got += body["messages"]
            pages += 1
            after = got[-1]["id"]
            if not body["more"]:
                break
        assert [m["id"] for m in got] == list(range(1, 301))   # each once, in order
        assert [m["text"] for m in got] == texts
        assert pages >= 300 * BIG // REPLY_CAP
    # a limit below the cap still rules; more is right at the very end
    size, body = raw_history(b, a.id, 295, 3)
    assert [m["id"] for m in body["messages"]] == [296, 297, 298] and body["more"] is True
    size, body = raw_history(b, a.id, 297, 3)
    assert [m["id"] for m in body["messages"]] == [298, 299, 300] and body["more"] is False


def test_sync_replies_are_capped_and_say_truncated(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2)
    a, b = nodes
    texts = big_texts(300)
    run(send_paced(a, texts, "big"))
    wait_converged(nodes, {a.id: (300, 300)})

    async def raw_sync(ws, marks):
        await ws.send(json.dumps({"type": "clientSyncRequest", "payload": marks}))
        while True:
            raw = await asyncio.wait_for(ws.recv(), HANG)
            f = json.loads(raw)
            if f["type"] in ("clientSyncReply", "error"):
                return len(raw.encode()), f

    async def go():
        ws = await connect(b)
        pages, got, mark = [], [], 0
        while True:
            size, r = await raw_sync(ws, {str(a.id): mark})
            assert r["type"] == "clientSyncReply", r
            pages.append((size, r["truncated"], len(r["payload"])))
            got += r["payload"]
            mark = got[-1]["id"]
            if not r["truncated"]:
                break
        latest_size, latest = await raw_sync(ws, {})
        await ws.close()
        return pages, got, latest_size, latest
    pages, got, latest_size, latest = run(go())
    # --sync-limit (1000) is not what cut them: the byte cap was
    for size, truncated, count in pages:
        assert size <= REPLY_CAP and count >= 1
    assert all(t for _, t, _ in pages[:-1]) and len(pages) >= 300 * BIG // REPLY_CAP
    assert pages[0][0] > REPLY_CAP - 2 * (BIG + 300)
    assert [m["id"] for m in got] == list(range(1, 301))
    assert [m["text"] for m in got] == texts
    # without marks: the newest that fit, and truncated because older exist
    assert latest_size <= REPLY_CAP and latest["truncated"] is True
    ids = [m["id"] for m in latest["payload"]]
    assert ids and ids == list(range(301 - len(ids), 301))
    assert latest_size > REPLY_CAP - 2 * (BIG + 300)


def test_a_burst_is_not_sent_again_by_anti_entropy(logdir, procs):
    # Marks every 50 ms: many MARKS frames cross the links while the burst's
    # live messages are still queued or in flight to the peers. Anti-entropy
    # must not send again what a link already carries (its own origin's live
    # frames), nor what a peer gets directly from the origin (b and c each
    # have a link to a), so each peer receives each message exactly once.
    _, nodes = start_cluster(logdir, procs, 3, node_extra=("--sync-interval", "0.05"))
    a, b, c = nodes
    n = 5000
    texts = [f"burst{i}" for i in range(n)]
    run(send_accepted(a, texts, sender="burst"))
    wait_converged(nodes, {a.id: (n, n)})
    for node in (b, c):
        assert [m["text"] for m in history(node, a.id)] == texts
    for node in nodes:
        m = node.status()["messages"]
        assert m["duplicatesDropped"] == 0, f"{node.name}: {m}"
        assert m["gapsDropped"] == 0, f"{node.name}: {m}"
    for node in (b, c):
        assert node.status()["messages"]["fromPeers"] == n   # once each, from a


def test_the_catchup_script_reports_a_full_catchup_and_stops_everything(tmp_path):
    # scripts/bench-catchup.sh, with a tiny bench: node 3 catches up on what
    # node 1 has (the script waits for equal digests), never how fast.
    run_dir = tmp_path / "catchup"
    env = dict(os.environ, RUNS="1", MAX="100", DCHAT_BIN_DIR=BIN_DIR,
               DCHAT_RUN_DIR=str(run_dir), DISCOVERY_PORT=str(free_port()))
    p = subprocess.run(["sh", os.path.join(REPO, "scripts", "bench-catchup.sh")], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith("run 1:")]
    assert len(lines) == 1, p.stdout
    words = lines[0].split()
    assert int(words[words.index("on") + 1]) >= 100   # at least the last round's messages
    assert "seconds to catch up: min" in p.stdout
    left = subprocess.run(["pgrep", "-af", str(run_dir)], capture_output=True, text=True)
    assert left.stdout.strip() == ""
