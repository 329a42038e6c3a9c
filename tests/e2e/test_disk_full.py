"""End-to-end test of a full disk under a node's history (docs/PROTOCOL.md
3.1, "A full disk"): the node's data dir on a small tmpfs that the test
fills. While the history cannot commit, the node refuses client messages
with an error frame, sends out nothing it has not stored, and says so in
/api/status, /readyz and /metrics; once space returns it stores what it
held and goes on by itself. Every message a client saw delivered is in
both nodes' histories, none that was refused is anywhere, and a kill -9
and restart afterwards reuses no sequence number.

Mounting a tmpfs needs root (CI runs as root); elsewhere the test is
skipped and says why."""

import asyncio
import errno
import json
import os
import subprocess

import pytest
import websockets

from cluster import Discovery, Node, http_json, metrics, new_message, wait_mesh, wait_until
from test_history import history, wait_converged

HANG = 30  # seconds: only a guard against hangs


@pytest.fixture
def small_disk(tmp_path):
    mnt = str(tmp_path / "disk")
    os.mkdir(mnt)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the data dir needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", mnt], check=False)


def fill(path):
    """Writes a file at path until the filesystem has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


def test_full_disk_refuses_holds_and_recovers(logdir, procs, small_disk):
    d = Discovery(logdir)
    procs.append(d)
    a = Node(d, logdir, data_dir=os.path.join(small_disk, "a"))
    procs.append(a)
    b = Node(d, logdir)
    procs.append(b)
    wait_mesh([a, b])
    filler = os.path.join(small_disk, "filler")

    async def go():
        sender = await websockets.connect(a.ws_url, max_queue=None)
        observer = await websockets.connect(b.ws_url, max_queue=None)
        sent, refused, seen = [], 0, []

        async def drain(ws, into, timeout):
            """Frames until none comes for timeout s: message texts into
            `into`; returns the error frames' count."""
            errors = 0
            try:
                while True:
                    f = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                    if f["type"] == "error":
                        errors += 1
                        assert "cannot store messages now" in f["error"], f
                    else:
                        assert f["type"] == "newMessagesForClient", f
                        into.append(f["payload"][0]["text"])
            except asyncio.TimeoutError:
                return errors

        for i in range(5):
            sent.append(f"before-{i}")
            await sender.send(new_message(sent[-1]))
        fill(filler)
        # Flat out until the node refuses five (bounded: never more than
        # 3000 messages).
        for i in range(3000):
            sent.append(f"full-{i}")
            await sender.send(new_message(sent[-1]))
            refused += await drain(sender, seen, 0.002)
            if refused >= 5:
                break
        assert refused >= 5, "the disk never filled: no message was refused"

        # It says so, everywhere.
        h = a.status()["history"]
        assert h["writable"] is False and "full" in h["error"], h
        assert h["commitFailures"] >= 1
        st, body = http_json(a.url + "/readyz")
        assert st == 503 and "the history is not taking writes" in body["reasons"], body
        assert metrics(a.url)[("dchat_history_writable", None)] == 0
        # More sent now is refused too, and nothing of it goes anywhere.
        for i in range(3):
            sent.append(f"refused-{i}")
            await sender.send(new_message(sent[-1]))
        refused += await drain(sender, seen, 0.5)

        # Space again: the node stores what it held and goes on by itself.
        os.unlink(filler)
        wait_until(lambda: a.status()["history"]["writable"], HANG, "a to write again")
        for i in range(10):
            sent.append(f"after-{i}")
            await sender.send(new_message(sent[-1]))
        refused += await drain(sender, seen, 1.0)
        got_b = []
        await drain(observer, got_b, 1.0)
        for ws in (sender, observer):
            await ws.close()
        return sent, refused, seen, got_b

    sent, refused, seen, got_b = asyncio.run(asyncio.wait_for(go(), 120))
    # Every message has one outcome: delivered, or refused with an error.
    assert len(seen) == len(set(seen)), "a message delivered twice"
    assert len(seen) + refused == len(sent), (len(seen), refused, len(sent))
    assert [t for t in sent if t in set(seen)] == seen, "out of order"
    assert all(t in seen for t in sent if t.startswith("after-"))
    assert not any(t.startswith("refused-") for t in seen)
    # The other node's client saw exactly the same, and both histories hold
    # exactly what was delivered.
    assert got_b == seen
    wait_converged([a, b])
    for nd in (a, b):
        assert [m["text"] for m in history(nd, a.id)] == seen, nd.name
    ids = [m["id"] for m in history(b, a.id)]

    # kill -9 and restart: the numbering goes on, nothing is numbered twice.
    a.kill()
    a.restart()
    wait_mesh([a, b])

    async def more():
        ws = await websockets.connect(a.ws_url, max_queue=None)
        for i in range(5):
            await ws.send(new_message(f"restarted-{i}"))
        texts = []
        while len(texts) < 5:
            f = json.loads(await asyncio.wait_for(ws.recv(), HANG))
            texts.append(f["payload"][0]["text"])
        await ws.close()
    asyncio.run(more())
    wait_converged([a, b])
    later = history(b, a.id)
    assert [m["id"] for m in later[:len(ids)]] == ids
    assert len({m["id"] for m in later}) == len(later) == len(ids) + 5
    assert [m["text"] for m in later[len(ids):]] == [f"restarted-{i}" for i in range(5)]
