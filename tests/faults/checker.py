"""checker: what the fault tests assert, in the spirit of Jepsen's checkers.

Reads the record loadgen.py wrote (what every client sent and received, and
over which connections) and, when given, the nodes' history databases, and
checks, across whatever faults were injected:

  identity     one messageId is one message: the same origin, id, text and
               sender wherever it appears (a reused sequence number shows
               up here), and one text was stored once (one messageId);
  acknowledged every message its sender got back is held by every client
               at the end (lost otherwise);
  unacked      a message whose sender never got it back (its connection
               dropped first) may be missing, but if any client holds it,
               every client does;
  complete     every client holds every message any client holds;
  live order   on each connection, the live messages of each origin come
               in order, without a gap and without a repeat (a node delivers
               an origin's messages in sequence); catch-up replies may
               overlap what came live and are counted as redelivered;
  histories    every database holds the same messages (an identical digest)
               and they are exactly the messages the clients hold.

Prints one line with the figures, prefixed by the fault's name, and exits 1
(with the first violations listed) when a check fails.

  checker.py --fault NAME RECORD_DIR [--db NAME=PATH ...]
"""

import argparse
import glob
import hashlib
import json
import os
import sqlite3
import sys


def load_client(path):
    sent, msgs, conns, drops = [], [], 0, 0
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r[0] == "sent":
                sent.append(r[2])
            elif r[0] == "msg":
                msgs.append(r[1:])
            elif r[0] == "conn":
                conns += 1
            elif r[0] == "drop":
                drops += 1
    return sent, msgs, conns, drops


def db_digest(path):
    """(sha256 of every chat-11 row in (origin, seq) order, {messageId: row})."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT origin, seq, time_ms, chat_id, sender, text FROM messages "
                           "ORDER BY origin, seq").fetchall()
    finally:
        con.close()
    h = hashlib.sha256()
    held = {}
    for o, s, t, c, sender, text in rows:
        h.update(f"{o}|{s}|{t}|{c}|{sender}|{text}\n".encode())
        held[str(o * 10**12 + s)] = (o, s, text, sender)
    return h.hexdigest(), held


def check(record, dbs):
    problems = []

    def bad(kind, what):
        problems.append((kind, what))

    files = sorted(glob.glob(os.path.join(record, "client-*.jsonl")),
                   key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    if not files:
        raise SystemExit(f"checker: no client-*.jsonl in {record}: did loadgen run there?")
    ident = {}          # messageId -> (origin, id, text, sender)
    by_text = {}        # text -> messageId
    views = []
    sent_by = {}
    delivered = redelivered = conns_total = drops_total = 0
    for path in files:
        cid = os.path.basename(path)
        sent, msgs, conns, drops = load_client(path)
        conns_total += conns
        drops_total += drops
        for t in sent:
            sent_by[t] = cid
        view = set()
        last = {}       # (conn, origin) -> last live id
        for conn, how, mid, origin, seq, text, sender, chat in msgs:
            delivered += 1
            me = (origin, seq, text, sender)
            if ident.setdefault(mid, me) != me:
                bad("identity", f"messageId {mid} is {ident[mid]} and also {me} (at {cid})")
            if sender == "fault" and by_text.setdefault(text, mid) != mid:
                bad("identity", f"text {text!r} stored twice: messageIds {by_text[text]} and {mid}")
            if str(origin * 10**12 + seq) != mid:
                bad("identity", f"messageId {mid} is not origin {origin} id {seq}")
            if mid in view:
                redelivered += 1
            view.add(mid)
            if how == "live":
                prev = last.get((conn, origin))
                if prev is not None and seq != prev + 1:
                    kind = "repeat" if seq <= prev else "gap"
                    bad("live order", f"{cid} connection {conn}: origin {origin} id {seq} "
                                      f"live after {prev} ({kind})")
                last[(conn, origin)] = seq
        views.append((cid, view))

    everything = set(ident)
    acked = {t for t in by_text if t in sent_by}
    # Acknowledged: the sender itself holds it.
    sender_views = dict(views)
    acked = {t for t in acked if by_text[t] in sender_views[sent_by[t]]}
    unacked = [t for t in sent_by if t not in acked]
    unacked_stored = sum(1 for t in unacked if t in by_text)
    lost = 0
    for cid, view in views:
        missing = everything - view
        lost += len(missing)
        for mid in sorted(missing)[:3]:
            text = ident[mid][2]
            kind = "acknowledged" if text in acked else "unacknowledged, held by others"
            bad("lost", f"{cid} lacks {mid} ({text!r}, {kind})")
    digests = {}
    for name, path in dbs:
        digest, held = db_digest(path)
        digests[name] = digest
        only_db = set(held) - everything
        not_db = everything - set(held)
        for mid in sorted(only_db)[:3]:
            bad("histories", f"{name} holds {mid} {held[mid]}, which no client got")
        for mid in sorted(not_db)[:3]:
            bad("histories", f"{name} lacks {mid} {ident[mid]}, which clients got")
        for mid in held.keys() & everything:
            if held[mid] != ident[mid]:
                bad("identity", f"{name} stores {mid} as {held[mid]}, clients got {ident[mid]}")
                break
    if len(set(digests.values())) > 1:
        bad("histories", "digests differ: " + ", ".join(f"{k} {v[:12]}" for k, v in digests.items()))
    figures = {
        "clients": len(files), "sent": len(sent_by), "acked": len(acked),
        "unacked": len(unacked), "unacked_stored": unacked_stored, "messages": len(everything),
        "delivered": delivered, "redelivered": redelivered, "connections": conns_total,
        "drops": drops_total, "lost": lost,
        "digest": (next(iter(digests.values()))[:12] if len(set(digests.values())) == 1
                   and digests else "-"),
        "dbs": len(digests),
    }
    return figures, problems


def line(fault, fig, problems):
    verdict = "ok" if not problems else "FAIL"
    return (f"{fault}: {verdict}  clients {fig['clients']}  sent {fig['sent']}  "
            f"acked {fig['acked']}  unacked {fig['unacked']} (stored {fig['unacked_stored']})  "
            f"lost {fig['lost']}  delivered {fig['delivered']}  redelivered {fig['redelivered']}  "
            f"reconnects {fig['connections'] - fig['clients']}  "
            f"histories {fig['dbs']} digest {fig['digest']}  violations {len(problems)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fault", required=True)
    p.add_argument("--db", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("record")
    a = p.parse_args()
    dbs = [tuple(d.split("=", 1)) for d in a.db]
    fig, problems = check(a.record, dbs)
    print(line(a.fault, fig, problems))
    for kind, what in problems[:20]:
        print(f"  {kind}: {what}")
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
