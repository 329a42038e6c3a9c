#!/usr/bin/env python3
"""Measures how long a node's event loop is blocked by a MARKS exchange of
many origins: two nodes whose histories hold N distinct origins (node A up
to seq 2, node B up to seq 1, so A catches B up on every origin) link up
while another thread polls each node's /healthz every few ms; the longest
answer time is the longest time that node's loop did not run.

  python3 scripts/marks-block.py --bin-dir build/h2opt/bin [--origins 20000]

Prints one line per node: samples, median and max /healthz answer time.
Starts its own discovery on a free port; everything lives in a temporary
directory that is removed at the end. A short measurement (a few seconds),
not a benchmark: run it once per figure, on an otherwise quiet machine."""

import argparse
import http.client
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# The first layout of the history (docs/PROTOCOL.md 3.1): simple to fill
# from here, and a node converts it when it opens the file, before it
# listens, so the conversion is not in what this measures.
SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
  origin  INTEGER NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL,
  chat_id INTEGER NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
  PRIMARY KEY (origin, seq)) WITHOUT ROWID"""

FIRST_ORIGIN = 1000  # far from the ids discovery gives the two nodes


def make_history(data_dir, origins, upto):
    os.makedirs(data_dir)
    db = sqlite3.connect(os.path.join(data_dir, "history.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    now = int(time.time() * 1000)
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, 11, 'gen', ?)",
                   ((FIRST_ORIGIN + o, s, now, f"m{o}.{s}")
                    for o in range(origins) for s in range(1, upto + 1)))
    db.commit()
    db.close()


def start(args, log, pattern):
    out = open(log + ".out", "w")
    p = subprocess.Popen(args, stdout=out, stderr=open(log + ".log", "w"),
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log + ".out") as f:
            m = re.search(pattern, f.read())
        if m:
            return p, m
        if p.poll() is not None:
            sys.exit(f"{args[0]} exited with {p.returncode}; see {log}.log")
        time.sleep(0.01)
    sys.exit(f"{args[0]} did not print its ports within 60 s")


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    return json.loads(r.read())


class Poller(threading.Thread):
    def __init__(self, port, period):
        super().__init__(daemon=True)
        self.port, self.period = port, period
        self.times = []
        self.stop = False

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop:
            t0 = time.perf_counter()
            get(conn, "/healthz")
            self.times.append(time.perf_counter() - t0)
            time.sleep(self.period)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--origins", type=int, default=20000)
    ap.add_argument("--period-ms", type=float, default=2.0)
    ap.add_argument("--hang", type=float, default=120.0, help="give up after this many s")
    a = ap.parse_args()
    # Every daemon here proves the same cluster secret (docs/PROTOCOL.md, 6).
    os.environ.setdefault("DCHAT_CLUSTER_SECRET", os.urandom(16).hex())

    with tempfile.TemporaryDirectory(prefix="marks-block-") as tmp:
        make_history(os.path.join(tmp, "a"), a.origins, 2)
        make_history(os.path.join(tmp, "b"), a.origins, 1)
        procs = []
        try:
            d, m = start([os.path.join(a.bin_dir, "discovery"), "--listen", "127.0.0.1:0",
                          "--data-dir", os.path.join(tmp, "disc")],
                         os.path.join(tmp, "discovery"), r"listening on [^ ]*:(\d+)")
            procs.append(d)
            url = f"http://127.0.0.1:{m.group(1)}"
            nodes = []
            for name in ("a", "b"):
                p, m = start([os.path.join(a.bin_dir, "node"), "--discovery", url,
                              "--listen", "127.0.0.1", "--data-dir", os.path.join(tmp, name)],
                             os.path.join(tmp, name), r"listening clients on [^ ]*:(\d+)")
                procs.append(p)
                port = int(m.group(1))
                poller = Poller(port, a.period_ms / 1000)
                poller.start()
                nodes.append((name, port, poller))
            # Until b has the last origin's seq 2 (catch-up goes in origin
            # order), then one more second. Not /api/status: its digest of
            # every origin would itself hold b's loop.
            conn = http.client.HTTPConnection("127.0.0.1", nodes[1][1], timeout=60)
            last = f"/api/history?origin={FIRST_ORIGIN + a.origins - 1}&after=1&limit=1"
            deadline = time.monotonic() + a.hang
            while True:
                if get(conn, last)["messages"]:
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"b did not catch up within {a.hang} s")
                time.sleep(0.05)
            time.sleep(1)
            for name, port, poller in nodes:
                poller.stop = True
                poller.join()
                t = poller.times
                print(f"node {name}: {len(t)} /healthz answers, median "
                      f"{statistics.median(t) * 1000:.1f} ms, max {max(t) * 1000:.1f} ms")
        finally:
            for p in procs:
                p.terminate()
                p.wait()


if __name__ == "__main__":
    main()
