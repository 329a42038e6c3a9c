"""End-to-end tests of history retention (docs/PROTOCOL.md 3.3): nodes
started with small limits remove what is over them, keep what is not, and
keep the numbering of what they removed. Real processes on loopback; every
wait polls a condition with a hang limit."""

import asyncio
import datetime

import pytest

from cluster import http_json, metrics, new_message, start_cluster, wait_until
from test_history import (HANG, FAST_SYNC, connect, frames_until, history, run, sync_on,
                          wait_converged)


async def send_chats(node, msgs):
    """msgs: (text, chat) pairs, sent in order from one client; returns once
    all came back to it (a node sends a message to its clients only once it
    has stored it)."""
    ws = await connect(node)
    for text, chat in msgs:
        await ws.send(new_message(text, sender="ret", chat=chat))
    got = await frames_until(ws, len(msgs), "ret")
    await ws.close()
    return got


def h_first_time(node, origin):
    """The time in ms of the first message of origin node holds."""
    m = history(node, origin)[0]
    dt = datetime.datetime.strptime(m["dateTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(dt.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000 + 0.5)


def test_a_busy_chat_is_trimmed_and_a_quiet_chat_keeps_its_messages(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 2,
                             node_extra=FAST_SYNC + ("--history-max-messages", "20"))
    a, b = nodes
    quiet = [(f"q{i}", 500) for i in range(3)]
    busy = [(f"b{i}", 11) for i in range(100)]
    run(send_chats(a, quiet + busy))

    def kept(node):
        h = history(node, a.id)
        by_chat = {}
        for m in h:
            by_chat.setdefault(m["chatId"], []).append(m["text"])
        return by_chat if len(by_chat.get(11, [])) == 20 else None
    for node in (a, b):
        by_chat = wait_until(lambda: kept(node), HANG, f"{node.name} to trim chat 11 to 20")
        assert by_chat[500] == ["q0", "q1", "q2"]
        assert by_chat[11] == [f"b{i}" for i in range(80, 100)]
    # The digest counts what is held; the highest stays, so nothing removed
    # comes back and numbering goes on after it.
    wait_converged(nodes, {a.id: (23, 103)})
    for node in (a, b):
        h = node.status()["history"]
        assert h["origins"][0]["trimmed"] == 83  # b0..b79 are seqs 4..83
        r = h["retention"]
        assert (r["maxMessages"], r["rows"], r["trimmed"]) == (20, 23, 80)
        assert r["trimSteps"] >= 1 and r["bytes"] > 0
        mt = metrics(node.url)
        assert mt[("dchat_history_trimmed_total", None)] == 80
        assert mt[("dchat_history_messages", None)] == 23
        # the oldest held is the quiet chat's first message
        assert mt[("dchat_history_oldest_seconds", None)] * 1000 == \
            pytest.approx(r["oldestMs"], abs=1)
        assert r["oldestMs"] == h_first_time(node, a.id)
    got = run(send_chats(a, [("after", 11)]))
    assert got[0]["id"] == 104


def test_an_age_limit_removes_old_messages_and_keeps_the_numbering(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 1, node_extra=("--history-max-age", "2s"))
    (a,) = nodes
    run(send_chats(a, [(f"m{i}", 11) for i in range(5)]))
    # Nothing else is sent: the node's timer trims a quiet history too.
    wait_until(lambda: history(a, a.id) == [], HANG, "the messages to age out")
    o = a.status()["history"]["origins"][0]
    assert (o["count"], o["highest"], o["trimmed"]) == (0, 5, 5)
    mt = metrics(a.url)
    assert mt[("dchat_history_trimmed_total", None)] == 5
    assert mt[("dchat_history_oldest_seconds", None)] == 0
    a.stop()
    a.restart()
    got = run(send_chats(a, [("after", 11)]))
    assert got[0]["id"] == 6  # the restart kept the mark of what aged out


def caught_up(node):
    return node.status()["messages"]["caughtUpToPeers"]


def backfilled(node):
    m = node.status()["messages"]
    return m["backfilledToPeers"], m["backfilledFromPeers"]


def test_a_node_down_past_the_retention_catches_up_on_the_retained_range(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 3,
                             node_extra=FAST_SYNC + ("--history-max-messages", "20"))
    a, b, c = nodes
    run(send_chats(a, [(f"early{i}", 11) for i in range(5)]))
    wait_converged(nodes, {a.id: (5, 5)})
    c.stop()
    # A quiet chat's three (seqs 6..8) stay held below the busy chat's
    # low-water mark (88): c, which skips to that mark, gets them as
    # backfill, besides the retained range above the mark.
    run(send_chats(a, [(f"q{i}", 500) for i in range(3)] + [(f"m{i}", 11) for i in range(100)]))
    wait_converged([a, b], {a.id: (23, 108)})
    before = {n.name: caught_up(n) for n in (a, b)}
    c.restart()
    # Without the low-water marks in MARKS, c would stay at seq 5 for ever:
    # the peers hold nothing of chat 11 below 89, so 89 is a gap to it.
    # Its own retention then removes early0..4 (chat 11 has 25).
    def c_has_all():
        h = [m["text"] for m in history(c, a.id)]
        return h if len(h) == 23 else None
    got = wait_until(c_has_all, HANG, "c to catch up on the retained range")
    assert got == [f"q{i}" for i in range(3)] + [f"m{i}" for i in range(80, 100)]
    o = c.status()["history"]["origins"][0]
    assert (o["count"], o["highest"], o["trimmed"]) == (23, 108, 88)
    # Each peer sent at most the 20 rows above the mark and the quiet
    # chat's 3 below it, never what was removed nor anything c's own
    # retention would remove.
    for n in (a, b):
        assert caught_up(n) - before[n.name] <= 23, n.name
    # Sent as backfill; taken as such unless c had not skipped yet on the
    # link they came by (its marks call a direct there: it skips on a's),
    # when 6..8 simply came next after its 5.
    assert sum(backfilled(n)[0] for n in (a, b)) >= 3
    assert backfilled(c)[1] <= 3


def test_a_quiet_chat_held_below_the_mark_is_backfilled_to_a_node_coming_back(logdir, procs):
    """Issue 16: a busy chat raises the origin's low-water mark past a
    quiet chat's rows, which every node keeps; a node down since before
    them skips to the mark and still gets them, once, from a peer's
    backfill, and the three histories agree."""
    _, nodes = start_cluster(logdir, procs, 3,
                             node_extra=FAST_SYNC + ("--history-max-messages", "50"))
    a, b, c = nodes
    c.stop()
    run(send_chats(a, [(f"q{i}", 2) for i in range(5)] + [(f"b{i}", 1) for i in range(200)]))
    wait_converged([a, b], {a.id: (55, 205)})
    for n in (a, b):
        assert n.status()["history"]["origins"][0]["trimmed"] == 155
    want = [f"q{i}" for i in range(5)] + [f"b{i}" for i in range(150, 200)]
    assert [m["text"] for m in history(a, a.id)] == want
    c.restart()

    def c_has_all():
        h = history(c, a.id)
        return h if len(h) == 55 else None
    got = wait_until(c_has_all, HANG, "c to get the quiet chat's rows and the retained range")
    assert [m["text"] for m in got] == want
    assert [m["id"] for m in got] == list(range(1, 6)) + list(range(156, 206))
    wait_converged(nodes, {a.id: (55, 205)})
    o = c.status()["history"]["origins"][0]
    assert (o["count"], o["highest"], o["trimmed"]) == (55, 205, 155)
    # The three histories agree, row for row.
    assert history(a, a.id) == history(b, a.id) == got
    # Sent as backfill, at most once per peer; stored once (the count above)
    # however many peers sent them: as backfill, or as the next ones of
    # their origin when they came by a link on which c had not skipped yet
    # (its marks there call a direct: it skips on a's).
    sent = sum(backfilled(n)[0] for n in (a, b))
    assert 5 <= sent <= 10
    taken = backfilled(c)[1]
    assert taken <= 5
    assert metrics(c.url)[("dchat_backfill_messages_taken_total", None)] == taken
    # A client of c catching up from 0 gets the quiet chat's rows too, told
    # that older messages of the origin were removed.
    key = str(a.id)
    reply = run(sync_on(c, {key: 0}))
    assert reply["trimmed"] == {key: 155}
    assert [m["text"] for m in reply["payload"]] == want
    # Numbering goes on after the highest, on every node.
    got = run(send_chats(a, [("after", 2)]))
    assert got[0]["id"] == 206
    wait_converged(nodes, {a.id: (56, 206)})
    assert backfilled(c)[1] == taken
    assert sum(backfilled(n)[0] for n in (a, b)) == sent


def test_a_client_catching_up_across_the_trimmed_boundary_is_told(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 1, node_extra=("--history-max-messages", "20"))
    (a,) = nodes
    run(send_chats(a, [(f"q{i}", 500) for i in range(3)] + [(f"m{i}", 11) for i in range(100)]))
    o = wait_until(lambda: [o for o in a.status()["history"]["origins"]
                            if o["trimmed"] == 83 and o["count"] == 23],
                   HANG, "the node to trim chat 11 to 20")
    assert o
    key = str(a.id)

    async def syncs():
        across = await sync_on(a, {key: 0})
        latest = await sync_on(a, [])
        above = await sync_on(a, {key: 90})
        return across, latest, above
    across, latest, above = run(syncs())
    # Across the boundary: what is still held (the quiet chat's three and
    # the busy chat's newest 20), and the flag with the low-water mark.
    assert across["type"] == "clientSyncReply"
    assert across["trimmed"] == {key: 83}
    assert [m["text"] for m in across["payload"]] == \
        ["q0", "q1", "q2"] + [f"m{i}" for i in range(80, 100)]
    assert latest["trimmed"] == {key: 83} and len(latest["payload"]) == 23
    # Above it: no new key, the reply as before retention.
    assert "trimmed" not in above
    assert list(above) == ["type", "source", "payload", "truncated"]
    assert [m["id"] for m in above["payload"]] == list(range(91, 104))
    # /api/history says the same.
    _, body = http_json(f"{a.url}/api/history?origin={a.id}&after=0&limit=5")
    assert body["trimmed"] == 83 and [m["id"] for m in body["messages"]] == [1, 2, 3, 84, 85]
    _, body = http_json(f"{a.url}/api/history?origin={a.id}&after=83&limit=5")
    assert "trimmed" not in body


def test_a_limit_lowered_at_restart_trims_chats_that_stay_silent(logdir, procs):
    _, nodes = start_cluster(logdir, procs, 1, node_extra=("--history-max-messages", "20"))
    (a,) = nodes
    # seqs 1..15 in chat 11, 16..27 in chat 12, 28..30 in chat 500: all
    # under 20, nothing removed.
    run(send_chats(a, [(f"m{i}", 11) for i in range(15)] + [(f"n{i}", 12) for i in range(12)] +
                   [(f"q{i}", 500) for i in range(3)]))
    wait_converged(nodes, {a.id: (30, 30)})
    a.stop()
    i = a.args.index("--history-max-messages")
    a.args[i + 1] = "5"
    a.restart()
    # Nothing is sent: the sweep's pass at open trims the chats over the
    # new limit, and then stops.
    r = wait_until(lambda: (lambda r: r if r["sweepPasses"] >= 1 and not r["sweeping"]
                            else None)(a.status()["history"]["retention"]),
                   HANG, "the sweep to finish its pass")
    assert (r["maxMessages"], r["rows"], r["trimmed"]) == (5, 13, 17)
    assert metrics(a.url)[("dchat_history_trimmed_total", None)] == 17
    by_chat = {}
    for m in history(a, a.id):
        by_chat.setdefault(m["chatId"], []).append(m["text"])
    assert by_chat == {11: [f"m{i}" for i in range(10, 15)],
                       12: [f"n{i}" for i in range(7, 12)],
                       500: ["q0", "q1", "q2"]}
    o = a.status()["history"]["origins"][0]
    assert (o["count"], o["highest"], o["trimmed"]) == (13, 30, 22)
    got = run(send_chats(a, [("after", 12)]))
    assert got[0]["id"] == 31


BIG_TEXT = 32 * 1024
BIG_COUNT = 800  # 25 MiB of text, well over the 16M limit


async def send_big(node, count, chunk=50):
    """count messages of BIG_TEXT bytes, text "big<i>:" then padding, in
    chunks of `chunk` that each come back before the next is sent."""
    ws = await connect(node)
    for start in range(0, count, chunk):
        for i in range(start, min(start + chunk, count)):
            head = f"big{i}:"
            await ws.send(new_message(head + "x" * (BIG_TEXT - len(head)), sender="big"))
        await frames_until(ws, min(start + chunk, count) - start, "big")
    await ws.close()


def test_a_byte_limit_keeps_the_newest_and_the_file_within_it(logdir, procs):
    limit = 16 << 20
    _, nodes = start_cluster(logdir, procs, 1, node_extra=("--history-max-bytes", "16M"))
    (a,) = nodes
    run(send_big(a, BIG_COUNT))

    # Once the load stops the node's timer trims what is left over; the
    # file's pages in use end under the limit less the WAL's share (twice
    # the 4 MiB checkpoint threshold: past it a commit empties the WAL).
    wal_share = 8 << 20
    def settled():
        r = a.status()["history"]["retention"]
        return r if r["fileBytes"] <= limit - wal_share and r["rows"] > 0 else None
    r = wait_until(settled, HANG, "the history's pages in use to be within the limit")
    assert r["maxBytes"] == limit
    assert r["trimmed"] > 0 and r["rows"] + r["trimmed"] == BIG_COUNT
    # The file keeps room for two batches as big as the last (at most half
    # of its share): at least a quarter of the share holds rows, so the
    # limit is not reached by removing nearly everything.
    assert r["rows"] * BIG_TEXT > (limit - wal_share) // 4
    mt = metrics(a.url)
    assert mt[("dchat_history_trimmed_total", None)] == r["trimmed"]
    # dchat_history_bytes adds the WAL as of the last commit: under a load
    # this fast it can pass its share while a checkpoint runs beside the
    # commits (docs/PERFORMANCE.md, retention), so only its file part is
    # bounded here.
    assert mt[("dchat_history_bytes", None)] >= r["fileBytes"]
    # The oldest are gone, flagged; the newest are held, in order.
    _, body = http_json(f"{a.url}/api/history?origin={a.id}&after=0&limit=5")
    assert body["trimmed"] == r["trimmed"]
    assert body["messages"][0]["id"] == r["trimmed"] + 1
    held = history(a, a.id)
    assert [m["id"] for m in held] == list(range(r["trimmed"] + 1, BIG_COUNT + 1))
    assert held[-1]["text"].startswith(f"big{BIG_COUNT - 1}:")
    assert len(held[-1]["text"]) == BIG_TEXT
