"""End-to-end tests of a cluster of mixed versions (docs/PROTOCOL.md 2.2,
2.4, 3.3): a node started with --test-before-retention sends no HELLO
features and takes MARKS with low-water marks for a bad frame, as nodes
built before retention do. Nodes that trim must keep their links to it and
send it plain marks. Real processes on loopback; every wait polls a
condition with a hang limit."""

import time

from cluster import Discovery, Node, wait_mesh, wait_until
from test_history import HANG, FAST_SYNC, history, run
from test_retention import caught_up, send_chats

SYNC_S = 0.3  # FAST_SYNC's --sync-interval
# Links must stay up this long after trimming: marks go every SYNC_S on
# each link, so a node that sent floors to the old one would have dropped
# its links a dozen times by then (~13 times a second before the fix).
STAY_UP_S = 12 * SYNC_S


def links(node):
    """{peer id: its entry in /api/status peers} for the links up."""
    return {p["id"]: p for p in node.status()["peers"] if p["state"] == "up"}


def up_since(node, ids):
    """The links of node to ids, all up: {peer id: when it came up, in
    time.monotonic() seconds, at most a few ms early}."""
    now = time.monotonic()
    ls = links(node)
    assert set(ids) <= set(ls), (node.name, sorted(ls))
    return {i: now - ls[i]["sinceMs"] / 1000 for i in ids}


def wait_links_stay_up(node, since, how_long):
    """Polls until each of node's links in since (from up_since) has been
    up for how_long more; fails at once when one went down or was replaced
    (it came up later than recorded)."""
    start = time.monotonic()
    while True:
        now = time.monotonic()
        ls = links(node)
        for i, t in since.items():
            assert i in ls, f"{node.name}'s link to {i} went down"
            assert now - ls[i]["sinceMs"] / 1000 <= t + 0.5, \
                f"{node.name}'s link to {i} was replaced"
        if now - start >= how_long:
            return
        time.sleep(0.02)


def mixed_cluster(logdir, procs):
    d = Discovery(logdir)
    procs.append(d)
    trim = FAST_SYNC + ("--history-max-messages", "5")
    a = Node(d, logdir, name="newA", extra=trim)
    procs.append(a)
    b = Node(d, logdir, name="newB", extra=trim)
    procs.append(b)
    o = Node(d, logdir, name="old", extra=FAST_SYNC + ("--test-before-retention",))
    procs.append(o)
    wait_mesh([a, b, o])
    return a, b, o


def texts(node, origin):
    return [m["text"] for m in history(node, origin)]


def test_a_node_before_retention_keeps_its_links_and_messages_flow_both_ways(logdir, procs):
    a, b, o = mixed_cluster(logdir, procs)
    # What the hellos agreed: floors between new nodes only.
    assert links(a)[b.id]["floors"] and links(b)[a.id]["floors"]
    assert not links(a)[o.id]["floors"] and not links(b)[o.id]["floors"]
    assert not any(p["floors"] for p in links(o).values())
    # The records' MAC likewise: GMAC between new nodes, HMAC to the old one.
    assert links(a)[b.id]["recordMac"] == "gmac" and links(b)[a.id]["recordMac"] == "gmac"
    assert links(a)[o.id]["recordMac"] == "hmac-sha256"
    assert all(p["recordMac"] == "hmac-sha256" for p in links(o).values())
    since = up_since(o, [a.id, b.id])

    run(send_chats(a, [(f"m{i}", 11) for i in range(20)]))
    # The new nodes trim to 5; the old one keeps all 20 (it has no limit).
    for n in (a, b):
        wait_until(lambda: n.status()["history"]["origins"][0]["trimmed"] == 15, HANG,
                   f"{n.name} to trim")
    wait_until(lambda: texts(o, a.id) == [f"m{i}" for i in range(20)], HANG,
               "the old node to get every message")
    wait_links_stay_up(o, since, STAY_UP_S)

    # Both ways after trimming: the old node's clients reach the new ones,
    # and the new ones' reach it.
    run(send_chats(o, [("from-old", 11)]))
    for n in (a, b):
        wait_until(lambda: texts(n, o.id) == ["from-old"], HANG, f"{n.name} to get from-old")
    run(send_chats(a, [("late-a", 11)]))
    run(send_chats(b, [("late-b", 11)]))
    wait_until(lambda: texts(o, a.id)[-1:] == ["late-a"] and texts(o, b.id) == ["late-b"],
               HANG, "the old node to get late-a and late-b")
    assert up_since(o, [a.id, b.id]).keys() == since.keys()
    wait_links_stay_up(o, since, 0)
    # No link of any node was dropped for a bad frame.
    for n in (a, b, o):
        with open(n.err_path) as f:
            assert "bad frame" not in f.read(), n.name


def test_a_node_before_retention_behind_a_low_water_mark_is_sent_nothing_of_it(logdir, procs):
    a, b, o = mixed_cluster(logdir, procs)
    run(send_chats(a, [(f"m{i}", 11) for i in range(3)]))
    wait_until(lambda: len(texts(o, a.id)) == 3, HANG, "the old node to get m0..m2")
    o.stop()
    # While it is away, a and b remove seqs 1..18 of a: the old node, at
    # 3, cannot skip to 18 and would refuse 19 on as a gap.
    run(send_chats(a, [(f"n{i}", 11) for i in range(20)]))
    for n in (a, b):
        wait_until(lambda: n.status()["history"]["origins"][0]["trimmed"] == 18, HANG,
                   f"{n.name} to trim")
    sent = {n.name: caught_up(n) for n in (a, b)}
    o.restart()
    wait_mesh([a, b, o])
    since = up_since(o, [a.id, b.id])
    gaps = o.status()["messages"]["gapsDropped"]
    # A live message of a after the gap: refused by the old node, which
    # then sends flagged marks; that must not start a resend cycle.
    run(send_chats(a, [("live", 11)]))
    wait_until(lambda: o.status()["messages"]["gapsDropped"] > gaps, HANG,
               "the old node to refuse the live message after its gap")
    wait_links_stay_up(o, since, STAY_UP_S)
    # Nothing of a was sent to it by catch-up (a cycle of refused frames
    # would count here), and it still has a up to 3 only.
    assert {n.name: caught_up(n) for n in (a, b)} == sent
    assert texts(o, a.id) == ["m0", "m1", "m2"]
    # Its own messages still reach the new nodes, and b's reach it (b's
    # origin has no gap).
    run(send_chats(o, [("from-old", 11)]))
    for n in (a, b):
        wait_until(lambda: texts(n, o.id) == ["from-old"], HANG, f"{n.name} to get from-old")
    run(send_chats(b, [("from-b", 11)]))
    wait_until(lambda: texts(o, b.id) == ["from-b"], HANG, "the old node to get from-b")
    # Upgraded (the option dropped), it skips to the low-water mark and
    # gets the retained range.
    o.stop()
    o.args.remove("--test-before-retention")
    o.restart()
    wait_until(lambda: texts(o, a.id)[-1:] == ["live"], HANG,
               "the upgraded node to catch up on a")
    assert texts(o, a.id)[:3] == ["m0", "m1", "m2"]
