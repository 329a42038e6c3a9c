"""End-to-end tests of the paced, open-loop bench (bench --rate) and of the
latency curve (scripts/latency-curve.sh) against real clusters: every
delivery on every socket is verified and the one row's fields are there
and agree with each other (offered = the rate asked, deliveries = messages
x sockets) in every format; bad combinations of options are refused with a
clear message; the curve script finishes verified with tiny settings and
writes its CSV and PNG, and stops everything it started when a bench fails
or it is interrupted. Never how fast, nor how low the latency."""

import csv
import io
import json
import os
import signal
import subprocess

import pytest

from cluster import BIN_DIR, REPO, SANITIZER_MARKS, start_cluster, wait_until
from test_compare import left_running, nats_missing

HANG = 600  # seconds: only a guard against hangs
SCRIPT = os.path.join(REPO, "scripts", "latency-curve.sh")

PACED_FIELDS = [
    "offered_msgs_per_s", "offered_deliveries_per_s", "achieved_deliveries_per_s",
    "messages", "expected", "received", "total_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
    "max_ms", "lost", "duplicated", "reordered", "late_sends", "late_bound_ms", "late_max_ms",
    "latency_samples", "deliveries_sampled", "bench_cpu_pct",
]


def bench(*args):
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), *args], capture_output=True, text=True,
                       timeout=HANG)
    assert not any(m in p.stderr for m in SANITIZER_MARKS), p.stderr
    return p


def check_row(r, rate, duration, sockets):
    """The paced row's fields agree: the rate asked for is what was offered,
    every message reached every socket once, in order, and every delivery
    gave a latency sample."""
    n = rate * duration
    assert float(r["offered_msgs_per_s"]) == rate
    assert float(r["offered_deliveries_per_s"]) == rate * sockets
    assert int(r["messages"]) == n
    assert int(r["expected"]) == n * sockets
    assert int(r["received"]) == int(r["expected"])
    assert (int(r["lost"]), int(r["duplicated"]), int(r["reordered"])) == (0, 0, 0)
    assert int(r["latency_samples"]) == int(r["deliveries_sampled"]) == n * sockets
    assert 0 < float(r["achieved_deliveries_per_s"]) <= rate * sockets * 1.0001
    assert float(r["total_s"]) > 0
    ps = [float(r[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
    assert ps == sorted(ps) and ps[0] >= 0, ps
    assert 0 <= int(r["late_sends"]) <= n
    assert float(r["late_bound_ms"]) == 2.0
    assert float(r["late_max_ms"]) >= 0
    assert float(r["bench_cpu_pct"]) >= 0


def test_rate_verifies_every_delivery_in_every_format(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    p = bench("--discovery", d.url, "--rate", "2000", "--duration", "1", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is True and doc["error"] is None
    assert (doc["proto"], doc["senders"], doc["nodes"]) == ("dchat", 3, 3)
    assert (doc["rate"], doc["duration_s"]) == (2000, 1)
    assert "rounds" not in doc                 # one paced run instead of the rounds
    assert sorted(doc["paced"]) == sorted(PACED_FIELDS)
    check_row(doc["paced"], 2000, 1, 3 + 3)    # 3 senders + one receiver per node

    # CSV: one header, one row, the same fields
    p = bench("--discovery", d.url, "--rate", "2000", "--duration", "1", "--format", "csv",
              "--senders", "2")
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert list(rows[0]) == PACED_FIELDS and len(rows) == 1
    check_row(rows[0], 2000, 1, 2 + 3)

    # table: the title says what was offered; a value under every column
    p = bench("--discovery", d.url, "--rate", "300", "--duration", "2")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# dchat, paced: 300 msgs/s for 2 s over 3 senders to ")
    assert "latency from each message's due time" in lines[0]
    head = lines[1].split()
    assert head[:3] == ["offered/s", "offered", "dl/s"]
    row = lines[2].split()
    assert len(row) == 17, lines
    assert (row[0], row[1], row[3], row[4], row[5]) == ("300", "1800", "600", "3600", "3600")
    assert row[11:14] == ["0", "0", "0"]        # lost, duplicated, reordered


def test_rate_below_one_message_per_tick(logdir, procs):
    # 7 msgs/s: most 1 ms ticks have nothing due; none is lost or doubled
    d, nodes = start_cluster(logdir, procs, 2)
    p = bench("--discovery", d.url, "--rate", "7", "--duration", "2", "--format", "csv")
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    check_row(rows[0], 7, 2, 3 + 2)


def test_rate_refuses_options_that_do_not_go_with_it():
    cases = [
        (["--rate", "100", "--max", "1000"], "--max is for the rounds"),
        (["--rate", "100", "--window", "0"], "--window is for the rounds"),
        (["--duration", "5"], "--duration is the length of a paced run; add --rate"),
        (["--rate", "100000000", "--duration", "2"], "lower --rate or --duration"),
    ]
    for args, why in cases:
        p = bench(*args)
        assert p.returncode == 64, (args, p.stderr)
        assert why in p.stderr, (args, p.stderr)
    p = bench("--rate", "0")
    assert p.returncode == 64 and "--rate" in p.stderr, p.stderr


def curve_env(results, **extra):
    env = dict(os.environ, RUNS="1", MAX="1000", DURATION="1", DCHAT_BIN_DIR=BIN_DIR,
               RESULTS=str(results))
    env.pop("DISCOVERY_PORT", None)
    env.update(extra)
    return env


def no_sanitizer_reports(results):
    for log in list(results.glob("dchat*/*.log")) + list(results.glob("*.stderr")):
        text = log.read_text(errors="replace")
        assert not any(m in text for m in SANITIZER_MARKS), f"{log}:\n{text[-3000:]}"


def check_curve(results, stdout, sides, fractions=(10, 25, 50, 75)):
    with open(results / "peaks.csv", newline="") as f:
        peaks = {r["side"]: r for r in csv.DictReader(f)}
    assert sorted(peaks) == sorted(sides)
    with open(results / "curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for side in sides:
        peak = float(peaks[side]["peak_msgs_per_s"])
        assert int(peaks[side]["messages"]) == 1000          # the largest round of MAX
        assert peak > 0
        assert f"{side} peak: " in stdout
        mine = [r for r in rows if r["side"] == side]
        assert [int(r["fraction_pct"]) for r in mine] == list(fractions)
        for r in mine:
            rate = max(1, int(peak * int(r["fraction_pct"]) / 100 + 0.5))
            assert r["run"] == "1"
            check_row(r, rate, 1, 3 + 3)
            assert f"{side} {r['fraction_pct']} % run 1: {rate} msgs/s verified" in stdout
    # the table: one row per side and fraction
    table = [line.split() for line in stdout.splitlines()
             if line.split() and line.split()[0] in sides and line.split()[1].endswith("%")]
    assert len(table) == len(fractions) * len(sides), stdout
    png = (results / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 1000


def test_curve_finishes_verified_and_writes_csv_and_png(tmp_path):
    results = tmp_path / "results"
    p = subprocess.run(["sh", SCRIPT], cwd=REPO, env=curve_env(results), capture_output=True,
                       text=True, timeout=HANG)
    assert p.returncode == 0, p.stdout + p.stderr
    check_curve(results, p.stdout, ["dchat"])
    assert left_running(results) == ""
    no_sanitizer_reports(results)


def test_curve_for_nats_too(tmp_path):
    why = nats_missing()
    if why:
        pytest.skip(why)
    results = tmp_path / "results"
    p = subprocess.run(["sh", SCRIPT], cwd=REPO,
                       env=curve_env(results, PROTO="both", FRACTIONS="10 50"),
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 0, p.stdout + p.stderr
    check_curve(results, p.stdout, ["dchat", "nats"], fractions=(10, 50))
    conf = (results / "nats" / "n1.conf").read_text()
    assert "no_tls: true" in conf and "nats-route://127.0.0.1:" in conf
    assert left_running(results) == ""
    no_sanitizer_reports(results)


def test_curve_stops_all_when_a_bench_fails(tmp_path):
    # Every 7th message dropped by every node: the peak bench cannot verify.
    results = tmp_path / "results"
    p = subprocess.run(["sh", SCRIPT, "--timeout", "2"], cwd=REPO,
                       env=curve_env(results, MAX="100", NODE_ARGS="--test-drop-every 7"),
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "latency: dchat peak: the bench failed (exit 1); its errors:" in p.stderr
    assert "missing" in p.stderr
    assert not (results / "curve.csv").exists()
    assert left_running(results) == ""


def test_curve_interrupted_stops_all_it_started(tmp_path):
    # Interrupted (the signal to its process group, as Ctrl-C does) while
    # a paced run of 60 s is under way.
    results = tmp_path / "results"
    p = subprocess.Popen(["sh", SCRIPT], cwd=REPO,
                         env=curve_env(results, MAX="100", DURATION="60"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        def paced_run_started():
            assert p.poll() is None, p.communicate()
            return (results / "dchat-10-run1.csv").exists()

        wait_until(paced_run_started, timeout=HANG, what="the first paced run to start")
        assert left_running(results) != ""     # the nodes run
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert p.returncode == 130, out + err
    assert left_running(results) == ""
    no_sanitizer_reports(results)


def test_curve_refuses_bad_settings(tmp_path):
    for env, why in ((dict(PROTO="kafka"), "PROTO must be dchat, nats or both"),
                     (dict(RUNS="0"), "RUNS must be a whole number from 1 to 100"),
                     (dict(FRACTIONS="10 x"), "each of FRACTIONS must be a whole number"),
                     (dict(DURATION="0"), "DURATION must be a whole number from 1")):
        p = subprocess.run(["sh", SCRIPT], cwd=REPO, env=curve_env(tmp_path / "r", **env),
                           capture_output=True, text=True, timeout=HANG)
        assert p.returncode == 1, (env, p.stderr)
        assert why in p.stderr, (env, p.stderr)
