#!/usr/bin/env python3
"""The table of scripts/profile-steps.sh: nanoseconds per message by step,
for the senders' node and a receiving node, from `perf script` output
(pid/tid, then one frame per line, leaf first) and each node's CPU time.

Each sample goes to the step whose marker is nearest the leaf on its call
chain: a SHA-256 block under write_batch is "write", a B-tree search under
commit_work is "store insert". A sample with no marker is "loop and rest"
(epoll, timers, libuv's own bookkeeping, the allocator outside a step).

    profile-steps.py PERF_TXT MESSAGES CLK_TCK PID1 TICKS1 PID2 TICKS2
"""

import re
import sys

# (step, marker symbols), in the order of the table. A symbol names the
# step of everything it calls, unless a step nearer the leaf claims it.
STEPS = [
    ("read: socket read and frame decode", ["read_cb", "ws_decoder_feed", "peer_read_cb",
                                            "ksys_read", "__GI___libc_read"]),
    ("open a peer record: length and HMAC check", ["peer_opener_feed", "open_record"]),
    ("parse: newMessageFromClient / peer MSG frame", ["message_parse_request",
                                                      "peer_decoder_feed", "decode"]),
    ("relay: checks, sequence numbers, fan-out loop", ["on_text", "relay_remote", "relay_local",
                                                       "relay_on_commit", "link_frame_cb",
                                                       "peer_frame_cb"]),
    ("store: append to the batch (loop thread)", ["store_append"]),
    ("serialize: client frame, peer frame", ["message_client_frame", "peer_proto_msg"]),
    ("queue: a reference per recipient", ["outq_push"]),
    ("write: vectored write, record HMAC, completion", ["write_batch", "write_cb", "outq_flush",
                                                        "outq_push_now", "uv_write2",
                                                        "uv_try_write"]),
    ("store insert: SQLite transaction (worker thread)", ["commit_work"]),
    ("store checkpoint (worker thread)", ["checkpoint_work"]),
]
REST = "loop and rest: epoll, timers, libuv, allocator"

HEADER = re.compile(r"^\s*\d+/\d+\s*$")  # a sample starts: "PID/TID"

MARKER = {}
for step, syms in STEPS:
    for s in syms:
        MARKER[s] = step


def samples_by_pid(path):
    """{pid: {step: samples}} from perf script's text."""
    out = {}
    pid = None
    step = None

    def done():
        if pid is not None:
            d = out.setdefault(pid, {})
            d[step or REST] = d.get(step or REST, 0) + 1

    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            if HEADER.match(line):
                done()
                pid = line.split()[0].split("/")[0]
                step = None
                continue
            parts = line.split()
            if step is None and len(parts) >= 2:
                # the function's name without the compiler's suffix for a
                # specialised copy (.isra.0, .part.0, .constprop.0, and
                # .lto_priv.0 from link-time optimisation)
                sym = parts[1].split("+")[0].split(".")[0]
                step = MARKER.get(sym)
    done()
    return out


def main():
    path, msgs, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    nodes = [("senders' node (1)", sys.argv[4], int(sys.argv[5])),
             ("receiving node (2)", sys.argv[6], int(sys.argv[7]))]
    by_pid = samples_by_pid(path)
    print(f"{msgs} messages; ns per message by step (share of the node's samples x its CPU "
          f"time / messages)")
    header = f"{'step':<52}" + "".join(f"{name:>22}" for name, _, _ in nodes)
    print(header)
    cols = []
    for name, pid, ticks in nodes:
        d = by_pid.get(pid, {})
        total = sum(d.values())
        if total == 0:
            sys.exit(f"profile-steps: no samples for {name} (pid {pid})")
        ns = ticks / tck * 1e9 / msgs
        cols.append((d, total, ns))
    for step in [s for s, _ in STEPS] + [REST]:
        cells = []
        for d, total, ns in cols:
            share = d.get(step, 0) / total
            cells.append(f"{share * ns:>14.0f} ({share * 100:4.1f}%)" if share else f"{'':>22}")
        print(f"{step:<52}" + "".join(cells))
    print(f"{'all (CPU time / messages)':<52}" +
          "".join(f"{ns:>14.0f} ({total:5d} s.)" for d, total, ns in cols))


if __name__ == "__main__":
    main()
