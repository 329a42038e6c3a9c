"""End-to-end tests of the comparison with NATS: scripts/compare-nats.sh
with a tiny --max runs both benches against real clusters (3 dchat nodes,
3 routed nats-server processes) and must show that both sides verified
every round (never how fast), write the raw CSV and the PNG, and leave
nothing running, also when interrupted; scripts/plot.py draws that CSV,
dchat against NATS included; `bench --proto nats` refuses what
is not a NATS server, and bad options, with a clear message. Skipped, with
the reason, only when nats-server cannot be installed."""

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from cluster import BIN_DIR, REPO, SANITIZER_MARKS, start_cluster, wait_until

HANG = 600  # seconds: only a guard against hangs
SCRIPT = os.path.join(REPO, "scripts", "compare-nats.sh")


def nats_missing():
    """None when nats-server is there (installing it if need be), else why not."""
    if shutil.which("nats-server"):
        return None
    p = subprocess.run(["sh", os.path.join(REPO, "scripts", "deps.sh"), "compare"],
                       capture_output=True, text=True, timeout=HANG)
    if shutil.which("nats-server"):
        return None
    return ("nats-server is not installed and 'scripts/deps.sh compare' could not install "
            f"it (exit {p.returncode}): {p.stderr.strip()[-300:]}")


def compare_env(results, **extra):
    env = dict(os.environ, RUNS="1", MAX="100", DCHAT_BIN_DIR=BIN_DIR, RESULTS=str(results))
    env.pop("DISCOVERY_PORT", None)
    env.update(extra)
    return env


def left_running(results):
    """Processes whose command line names the results dir: the nodes (their
    --data-dir) and the NATS servers (their -c config)."""
    p = subprocess.run(["pgrep", "-af", str(results)], capture_output=True, text=True)
    return p.stdout.strip()


def no_sanitizer_reports(results):
    for log in results.glob("dchat*/*.log"):
        text = log.read_text(errors="replace")
        assert not any(m in text for m in SANITIZER_MARKS), f"{log}:\n{text[-3000:]}"


def test_compare_verifies_both_sides_and_writes_csv_and_png(tmp_path):
    why = nats_missing()
    if why:
        pytest.skip(why)
    results = tmp_path / "results"
    p = subprocess.run(["sh", SCRIPT], cwd=REPO, env=compare_env(results),
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dchat run 1: every round verified" in p.stdout, p.stdout
    assert "nats run 1: every round verified" in p.stdout, p.stdout

    with open(results / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for side in ("dchat", "nats"):
        mine = [r for r in rows if r["side"] == side]
        assert [int(r["messages"]) for r in mine] == [10, 100], rows
        for r in mine:
            assert r["run"] == "1"
            n = int(r["messages"])
            assert int(r["expected"]) == n * (3 + 3)   # 3 senders + one receiver per server
            assert int(r["received"]) == int(r["expected"])
            assert (r["lost"], r["duplicated"], r["reordered"]) == ("0", "0", "0")
            assert float(r["servers_cpu_s"]) >= 0
            assert float(r["servers_peak_rss_mib"]) > 0  # read from the servers' /proc

    # the table: one row per round, both sides' rates and their ratio
    table = {line.split()[0]: line.split() for line in p.stdout.splitlines()
             if line.split() and line.split()[0] in ("10", "100")}
    assert sorted(table) == ["10", "100"], p.stdout
    assert "dchat/NATS" in p.stdout

    png = (results / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 1000

    # scripts/plot.py draws the same runs: per round, and dchat against NATS
    plots = tmp_path / "plots"
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "plot.py"),
                        str(results / "runs.csv"), "-o", str(plots)], capture_output=True,
                       text=True, timeout=HANG)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in ("deliveries-per-round.png", "latency-per-round.png", "dchat-vs-nats.png"):
        png = (plots / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 15000, name
    assert "servers' CPU s per million deliveries" in p.stdout  # runs.csv has them
    sides = {line.split()[0] for line in p.stdout.splitlines()
             if line.split()[:1] in (["dchat"], ["nats"])}
    assert sides == {"dchat", "nats"}, p.stdout

    # the NATS servers ran from the generated configuration, in a cluster
    conf = (results / "nats" / "n1.conf").read_text()
    assert "no_tls: true" in conf and "nats-route://127.0.0.1:" in conf
    assert left_running(results) == ""
    no_sanitizer_reports(results)


def test_compare_interrupted_stops_all_it_started(tmp_path):
    # The senders' node is a listener that accepts and never answers, so the
    # first bench hangs in its WebSocket handshake: the script is
    # interrupted there, as Ctrl-C would (the signal to its process group).
    why = nats_missing()
    if why:
        pytest.skip(why)
    results = tmp_path / "results"
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    port = hole.getsockname()[1]
    p = subprocess.Popen(["sh", SCRIPT, "--target", f"127.0.0.1:{port}", "--timeout", "300"],
                         cwd=REPO, env=compare_env(results), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    accepted = []
    try:
        hole.settimeout(0.2)

        def senders_connected():
            try:
                accepted.append(hole.accept()[0])
            except socket.timeout:
                pass
            assert p.poll() is None, p.communicate()
            return len(accepted) >= 3

        wait_until(senders_connected, timeout=HANG, what="the 3 senders to connect")
        assert left_running(results) != ""  # the nodes run
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        for c in accepted:
            c.close()
        hole.close()
    assert p.returncode == 130, out + err
    assert left_running(results) == ""
    no_sanitizer_reports(results)


def test_nats_side_refuses_what_is_not_nats(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    bench = os.path.join(BIN_DIR, "bench")
    # a dchat node never sends INFO: the NATS handshake cannot finish
    p = subprocess.run([bench, "--proto", "nats", "--nats",
                        f"ws://127.0.0.1:{nodes[0].client_port}", "--timeout", "2"],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 2, p.stderr
    assert "connections were ready within 2 s" in p.stderr
    assert "are these nats servers?" in p.stderr
    # options that do not go together, or a URL that is not one
    p = subprocess.run([bench, "--proto", "nats"], capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 64 and "--proto nats needs --nats" in p.stderr, p.stderr
    p = subprocess.run([bench, "--nats", "ws://127.0.0.1:1"], capture_output=True, text=True,
                       timeout=HANG)
    assert p.returncode == 64 and "add --proto nats" in p.stderr, p.stderr
    p = subprocess.run([bench, "--proto", "nats", "--nats", "http://127.0.0.1:4222"],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 2, p.stderr
    assert "'http://127.0.0.1:4222' is not ws://HOST:PORT[/PATH]" in p.stderr
    for text in (p.stderr,):
        assert not any(m in text for m in SANITIZER_MARKS)
