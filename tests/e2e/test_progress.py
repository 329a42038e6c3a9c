"""End-to-end tests of the bench's progress line (bench/progress.c), with
the bench's stderr, and sometimes its stdout, on a pseudo-terminal (pty):
on a terminal the line is drawn from the start ("finding the servers"),
then per round or for the paced run, never wider than the terminal, and
wiped when the run ends; what goes to a terminal that also shows the
report leaves only the report on the screen, each of its lines written
after the progress line was wiped; stdout stays the plain report (no '\\r',
nothing of the progress); and with stderr not a terminal, or with
--no-progress or BENCH_NO_PROGRESS, nothing of it is written at all."""

import csv
import fcntl
import io
import json
import os
import pty
import re
import selectors
import struct
import subprocess
import termios
import time

from cluster import BIN_DIR, start_cluster

HANG = 120  # seconds: only a guard against hangs

# Every line the display may draw (progress_format), whole.
LINE_RES = [re.compile(p) for p in (
    r"bench: finding the servers",
    r"bench: connecting, \d+ of \d+ sockets ready",
    r"bench: warming up, \d+ of \d+ sockets got a probe",
    r"round (\d+)/(\d+): (\d+) messages, (\d+) of (\d+) deliveries \((\d+) %\), \d+ deliveries/s",
    r"paced: \d+\.\d of (\d+) s, (\d+) of (\d+) messages sent, (\d+) deliveries \((\d+) %\), "
    r"\d+ deliveries/s",
    r"bench: last check, that nothing arrives twice",
)]


def run_on_pty(args, cols=200, stdout_on_pty=False, env=None):
    """Runs the bench with its stderr (and, if asked, its stdout) on a new
    pty of cols columns. Returns (exit code, what the terminal received,
    stdout when it was a pipe)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    p = subprocess.Popen([os.path.join(BIN_DIR, "bench"), *args], stdin=subprocess.DEVNULL,
                         stdout=slave if stdout_on_pty else subprocess.PIPE, stderr=slave,
                         env=env)
    os.close(slave)
    tty, out = b"", b""
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    if not stdout_on_pty:
        sel.register(p.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + HANG
    try:
        while sel.get_map():
            assert time.monotonic() < deadline, "the bench hangs"
            for key, _ in sel.select(timeout=1):
                try:
                    chunk = os.read(key.fd, 65536)
                except OSError:  # EIO: every writer of the pty is gone
                    chunk = b""
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fd == master:
                    tty += chunk
                else:
                    out += chunk
        rc = p.wait(timeout=HANG)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        if p.stdout:
            p.stdout.close()
    tty = tty.decode()
    assert "Sanitizer" not in tty and "runtime error" not in tty, tty
    return rc, tty, out.decode()


def drawn(tty):
    """The progress lines in what a pty got from stderr alone: the text
    between carriage returns, without the spaces that wipe a longer line."""
    return [s.rstrip(" ") for s in tty.split("\r") if s.strip(" ")]


def test_progress_on_a_terminal_and_stdout_untouched(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    # --window 1: each message waits for the last delivery of the one
    # before, so the round of 2000 lasts long enough for the display.
    args = ["--discovery", d.url, "--senders", "2", "--max", "2000", "--window", "1",
            "--format", "csv"]
    rc, tty, out = run_on_pty(args)
    assert rc == 0, tty + out

    # stdout: the plain CSV report, nothing else
    assert "\r" not in out and "deliveries (" not in out
    assert out.splitlines()[0] == ("messages,expected,received,total_s,send_s,"
                                   "deliveries_per_s,p50_ms,p99_ms,max_ms,lost,duplicated,"
                                   "reordered,bench_cpu_pct")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["messages"]) for r in rows] == [10, 100, 1000, 2000]
    assert all(int(r["received"]) == int(r["expected"]) == int(r["messages"]) * 4
               for r in rows)

    # the terminal: the line from the start, then per round
    lines = drawn(tty)
    assert lines, repr(tty)
    assert lines[0] == "bench: finding the servers", lines
    for s in lines:
        assert any(r.fullmatch(s) for r in LINE_RES), f"unknown line {s!r}"
    seen = set()
    for s in lines:
        m = LINE_RES[3].fullmatch(s)
        if m:
            k, total, n, got, want, pct = map(int, m.groups())
            assert total == 4 and n == [10, 100, 1000, 2000][k - 1], s
            assert want == n * 4 and got <= want and pct == got * 100 // want, s
            seen.add(k)
    # a round that lasted 0.3 s had the 100 ms timer fire during it
    for k, r in enumerate(rows, 1):
        if float(r["total_s"]) >= 0.3:
            assert k in seen, (k, r, lines)
    # wiped at the end: the last write is '\r', spaces over the last line, '\r'
    m = re.search(r"\r( +)\r$", tty)
    assert m and len(m.group(1)) >= len(lines[-1]), repr(tty[-300:])
    assert tty.count("\n") == 0, repr(tty)  # the line never ends


def screen(tty):
    """What a terminal shows after receiving tty: '\\r' goes back to column 0,
    '\\n' down a row, other characters overwrite. Trailing spaces dropped."""
    rows, row, col = [[]], 0, 0
    for ch in tty:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(rows):
                rows.append([])
        else:
            line = rows[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = ch
            col += 1
    out = ["".join(r).rstrip(" ") for r in rows]
    while out and out[-1] == "":
        out.pop()
    return out


def test_paced_progress_shares_a_terminal_with_the_report(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    rc, tty, _ = run_on_pty(["--discovery", d.url, "--senders", "2", "--rate", "300",
                             "--duration", "1", "--format", "csv"], stdout_on_pty=True)
    assert rc == 0, tty
    # the paced run lasts a second: the 100 ms timer draws it several times
    paced = [m for m in map(LINE_RES[4].fullmatch, drawn(tty)) if m]
    assert len(paced) >= 3, repr(tty)
    for m in paced:
        dur, sent, msgs, got, pct = map(int, m.groups())
        assert (dur, msgs) == (1, 300) and sent <= msgs and got <= msgs * 4, m.group(0)
    # the screen holds the report and nothing else, but for the warning a
    # loaded machine may cause (the generator fell behind)
    shown = [s for s in screen(tty)
             if not re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z bench warn: the generator fell behind",
                             s)]
    assert len(shown) == 2, shown
    assert shown[0].startswith("offered_msgs_per_s,offered_deliveries_per_s,"), shown
    row = next(csv.DictReader(io.StringIO("\n".join(shown))))
    assert int(row["received"]) == int(row["expected"]) == 300 * 4, row
    # each report line was written on a wiped line: right after '\r', spaces, '\r'
    for text in shown:
        at = tty.index(text)
        before = tty[:at]
        assert re.search(r"\r +\r$", before), repr(before[-200:])


def test_the_line_never_wraps_a_narrow_terminal(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    rc, tty, out = run_on_pty(["--discovery", d.url, "--senders", "2", "--max", "2000",
                               "--window", "1", "--format", "json"], cols=30)
    assert rc == 0, tty + out
    lines = drawn(tty)
    assert lines and lines[0] == "bench: finding the servers", lines  # 26: fits
    # a longer line is cut to the width less one column, and the spaces that
    # wipe the one before stop there too: nothing reaches the last column
    raw = tty.split("\r")
    assert all(len(seg) <= 29 for seg in raw), raw
    if any(r["total_s"] >= 0.3 for r in json.loads(out)["rounds"]):  # the timer fired
        assert any(len(seg.rstrip(" ")) >= 28 and seg.startswith("round ") for seg in raw), raw
    for s in lines:
        assert any(r.fullmatch(s) for r in LINE_RES) or s.startswith(("bench: ", "round ")), s
    assert "\n" not in tty


def test_nothing_of_it_without_a_terminal_or_when_turned_off(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    args = ["--discovery", d.url, "--senders", "2", "--max", "1000", "--window", "1",
            "--format", "csv"]
    # stderr a pipe: nothing on it (a verified run has nothing else to say)
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), *args], capture_output=True,
                       text=True, timeout=HANG)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert [int(r["messages"]) for r in csv.DictReader(io.StringIO(p.stdout))] == \
        [10, 100, 1000]
    # a terminal, but --no-progress, or BENCH_NO_PROGRESS
    rc, tty, out = run_on_pty([*args, "--no-progress"])
    assert rc == 0 and tty == "", repr(tty)
    assert out.startswith("messages,expected,")
    rc, tty, out = run_on_pty(args, env=dict(os.environ, BENCH_NO_PROGRESS="1"))
    assert rc == 0 and tty == "", repr(tty)
    # BENCH_NO_PROGRESS=0 is no flag at all: the line is back
    rc, tty, out = run_on_pty(args, env=dict(os.environ, BENCH_NO_PROGRESS="0"))
    assert rc == 0 and drawn(tty)[0] == "bench: finding the servers", repr(tty)
