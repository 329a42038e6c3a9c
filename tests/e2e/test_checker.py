"""The fault tests' checker (tests/faults/checker.py) on records made by
hand: a clean record passes, and each kind of violation it exists to catch
(a lost acknowledged message, a reused sequence number, a gap or a repeat
in a live stream, a message held by some clients only, histories that
differ or lack what clients got) fails it, named. Needs no root."""

import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "faults"))
import checker  # noqa: E402


def mid(origin, seq):
    return str(origin * 10**12 + seq)


def msg(conn, origin, seq, text, how="live"):
    return ["msg", conn, how, mid(origin, seq), origin, seq, text, "fault", 11]


def write(record, clients):
    os.makedirs(record, exist_ok=True)
    for k, lines in enumerate(clients):
        with open(os.path.join(record, f"client-{k}.jsonl"), "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")


def db(path, rows):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE messages (origin, seq, time_ms, chat_id, sender, text)")
    con.executemany("INSERT INTO messages VALUES (?, ?, 1, 11, 'fault', ?)", rows)
    con.commit()
    con.close()
    return path


def clean():
    """Client 0 on node 1 sent a1, a2; client 1 on node 2 sent b1; both
    got all three live."""
    c0 = [["conn", 1, "n1"], ["sent", 1, "c0-1"], ["sent", 1, "c0-2"],
          msg(1, 1, 1, "c0-1"), msg(1, 1, 2, "c0-2"), msg(1, 2, 1, "c1-1")]
    c1 = [["conn", 1, "n2"], ["sent", 1, "c1-1"],
          msg(1, 1, 1, "c0-1"), msg(1, 2, 1, "c1-1"), msg(1, 1, 2, "c0-2")]
    return [c0, c1]


ROWS = [(1, 1, "c0-1"), (1, 2, "c0-2"), (2, 1, "c1-1")]


def kinds(problems):
    return {k for k, _ in problems}


def test_clean_record_passes(tmp_path):
    write(str(tmp_path / "r"), clean())
    dbs = [("n1", db(str(tmp_path / "1.db"), ROWS)), ("n2", db(str(tmp_path / "2.db"), ROWS))]
    fig, problems = checker.check(str(tmp_path / "r"), dbs)
    assert problems == []
    assert (fig["sent"], fig["acked"], fig["lost"], fig["messages"]) == (3, 3, 0, 3)
    assert fig["dbs"] == 2 and fig["digest"] != "-"
    assert "ok" in checker.line("x", fig, problems)


def test_lost_acknowledged_message_fails(tmp_path):
    c = clean()
    c[1] = [l for l in c[1] if l[-3:-1] != ["c0-2", "fault"]]
    write(str(tmp_path / "r"), c)
    fig, problems = checker.check(str(tmp_path / "r"), [])
    assert kinds(problems) == {"lost"} and fig["lost"] == 1
    assert "acknowledged" in problems[0][1]


def test_reused_sequence_number_fails(tmp_path):
    c = clean()
    c[1].append(msg(2, 1, 2, "c9-9"))  # another text as origin 1 seq 2
    write(str(tmp_path / "r"), c)
    _, problems = checker.check(str(tmp_path / "r"), [])
    assert "identity" in kinds(problems)


def test_text_stored_twice_fails(tmp_path):
    c = clean()
    for lines in c:
        lines.append(msg(1, 2, 2, "c0-1"))  # c0-1 again, under a new number
    write(str(tmp_path / "r"), c)
    _, problems = checker.check(str(tmp_path / "r"), [])
    assert any("stored twice" in w for _, w in problems)


def test_live_gap_and_repeat_fail(tmp_path):
    c = clean()
    c[0] = [l for l in c[0] if l[-3:-1] != ["c0-1", "fault"]] + [msg(1, 1, 1, "c0-1", "sync")]
    c[1].append(msg(1, 2, 1, "c1-1"))  # the same message live twice
    write(str(tmp_path / "r"), c)
    _, problems = checker.check(str(tmp_path / "r"), [])
    text = " ".join(w for _, w in problems)
    assert kinds(problems) == {"live order"}
    assert "(repeat)" in text


def test_live_gap_fails(tmp_path):
    c = clean()
    # origin 1: id 1 live, then 3 live: 2 came by a sync reply, which does
    # not excuse the live stream's gap.
    c[1] = [["conn", 1, "n2"], ["sent", 1, "c1-1"], msg(1, 1, 1, "c0-1"),
            msg(1, 1, 2, "c0-2", "sync"), msg(1, 2, 1, "c1-1"), msg(1, 1, 3, "c0-3")]
    c[0] += [msg(1, 1, 3, "c0-3")]
    write(str(tmp_path / "r"), c)
    _, problems = checker.check(str(tmp_path / "r"), [])
    assert any("(gap)" in w for _, w in problems), problems


def test_catch_up_after_reconnect_is_fine(tmp_path):
    c = clean()
    # client 1's connection dropped before c0-2; it came back on n3 and
    # got it by catch-up, and once more live: no violation, one redelivery.
    c[1] = [["conn", 1, "n2"], ["sent", 1, "c1-1"], msg(1, 1, 1, "c0-1"), msg(1, 2, 1, "c1-1"),
            ["drop", 1, "EOF"], ["conn", 2, "n3"], msg(2, 1, 2, "c0-2", "sync"),
            msg(2, 1, 2, "c0-2")]
    write(str(tmp_path / "r"), c)
    fig, problems = checker.check(str(tmp_path / "r"), [])
    assert problems == [] and fig["redelivered"] == 1 and fig["connections"] == 3


def test_unacknowledged_message_held_by_some_fails(tmp_path):
    c = clean()
    c[0].append(["sent", 1, "c0-3"])  # never came back to its sender ...
    c[1].append(msg(1, 1, 3, "c0-3"))  # ... but client 1 has it
    write(str(tmp_path / "r"), c)
    fig, problems = checker.check(str(tmp_path / "r"), [])
    assert kinds(problems) == {"lost"} and fig["unacked"] == 1 and fig["unacked_stored"] == 1
    assert "unacknowledged, held by others" in problems[0][1]


def test_histories_that_differ_fail(tmp_path):
    write(str(tmp_path / "r"), clean())
    dbs = [("n1", db(str(tmp_path / "1.db"), ROWS)),
           ("n2", db(str(tmp_path / "2.db"), ROWS[:2])),
           ("n3", db(str(tmp_path / "3.db"), ROWS + [(3, 1, "ghost")]))]
    _, problems = checker.check(str(tmp_path / "r"), dbs)
    text = " ".join(w for _, w in problems)
    assert "digests differ" in text
    assert "n2 lacks" in text and "n3 holds" in text
