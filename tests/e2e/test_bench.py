"""End-to-end tests of the bench against discovery and real nodes: the
report has the expected rows and counts in every format, with a window and
flat out (--window 0), a lossy node makes it fail and name the socket that
missed messages, and it refuses to run without a cluster; and the steps
profile (scripts/profile-steps.sh) gives each node a table."""

import csv
import io
import json
import os
import re
import shutil
import subprocess

import pytest

from cluster import BIN_DIR, REPO, Discovery, Node, free_port, start_cluster, wait_mesh

HANG = 120  # seconds: only a guard against hangs


def bench(discovery_url, *args):
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--discovery", discovery_url, *args],
                       capture_output=True, text=True, timeout=HANG)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


def test_table_has_one_row_per_round_with_every_delivery(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    p = bench(d.url, "--senders", "3", "--max", "1000")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# 3 senders to 127.0.0.1:")
    assert lines[1].split()[:3] == ["messages", "expected", "received"]
    assert lines[1].split()[-2:] == ["cpu", "%"]
    rows = [line.split() for line in lines[2:]]
    assert [int(r[0]) for r in rows] == [10, 100, 1000]
    for r in rows:
        n = int(r[0])
        assert int(r[1]) == n * (3 + 3)      # 3 senders + one receiver per node
        assert int(r[2]) == n * (3 + 3)
        assert r[9:12] == ["0", "0", "0"]    # lost, duplicated, reordered
        assert 0 <= float(r[12]) <= 200      # the bench's cpu %
        assert float(r[5]) > 0               # deliveries per second
        assert float(r[6]) <= float(r[7]) <= float(r[8])  # p50 <= p99 <= max


def test_window_0_sends_flat_out_and_verifies_every_round(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    p = bench(d.url, "--window", "0", "--senders", "3", "--max", "8000", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is True and doc["error"] is None
    assert doc["window"] == 0                   # taken as no window, not as a default
    assert [r["messages"] for r in doc["rounds"]] == [10, 100, 1000, 2000, 4000, 8000]
    for r in doc["rounds"]:
        assert r["expected"] == r["received"] == r["messages"] * (3 + 3)
        assert (r["lost"], r["duplicated"], r["reordered"]) == (0, 0, 0)
    p = bench(d.url, "--window", "0", "--max", "10")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].endswith("30-byte texts, no window (flat out)")
    p = bench(d.url, "--max", "10")              # the default is still a window
    assert p.returncode == 0, p.stderr
    assert re.search(r"30-byte texts, window \d+$", p.stdout.splitlines()[0])


def test_window_0_through_256000_cuts_no_reader_and_loses_nothing(logdir, procs):
    # The seed topology flat out at the size of the issue that asked for
    # it: with no window, the nodes' back-pressure (not the bench) is what
    # keeps every queue bounded, so a round this big used to end in 1008.
    d, nodes = start_cluster(logdir, procs, 3)
    p = bench(d.url, "--window", "0", "--senders", "3", "--max", "256000", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is True and doc["error"] is None
    assert doc["rounds"][-1]["messages"] == 256000
    for r in doc["rounds"]:
        assert r["expected"] == r["received"] == r["messages"] * (3 + 3)
        assert (r["lost"], r["duplicated"], r["reordered"]) == (0, 0, 0)
    for nd in nodes:
        assert "slow consumer" not in nd.log()


def test_window_0_generates_only_what_tcp_takes(logdir, procs):
    # The nodes could hold it all (64 MiB per client): only the bench's own
    # bound is tested. One sender, 100 texts of 60 KB flat out: 6 MB, more
    # than the bench's 4 MiB connection bound, would all be handed over on
    # one loop turn if the bench did not wait for its queue to drain.
    d, nodes = start_cluster(logdir, procs, 2, node_extra=("--max-queue", "67108864"))
    p = bench(d.url, "--window", "0", "--senders", "1", "--size", "60000", "--max", "100",
              "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [r["messages"] for r in doc["rounds"]] == [10, 100]
    assert all(r["received"] == r["expected"] == r["messages"] * 3 for r in doc["rounds"])


def test_json_and_csv_formats_parse(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    p = bench(d.url, "--senders", "2", "--max", "1500", "--format", "json", "--size", "100")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is True and doc["error"] is None
    assert (doc["senders"], doc["nodes"], doc["size"]) == (2, 2, 100)
    assert [r["messages"] for r in doc["rounds"]] == [10, 100, 1000, 1500]
    for r in doc["rounds"]:
        assert r["expected"] == r["received"] == r["messages"] * 4
        assert (r["lost"], r["duplicated"], r["reordered"]) == (0, 0, 0)

    p = bench(d.url, "--senders", "1", "--max", "100", "--format", "csv")
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert [int(r["messages"]) for r in rows] == [10, 100]
    assert all(int(r["received"]) == int(r["messages"]) * 3 for r in rows)


def test_a_lossy_node_fails_the_run_and_is_named(logdir, procs):
    d, good = start_cluster(logdir, procs, 2)
    lossy = Node(d, logdir, extra=("--test-drop-every", "7"))
    procs.append(lossy)
    wait_mesh(good + [lossy])
    target = f"127.0.0.1:{good[0].client_port}"
    p = bench(d.url, "--senders", "2", "--max", "100", "--timeout", "3", "--target", target)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert f"receiver on node {lossy.id} at 127.0.0.1:{lossy.client_port}" in p.stderr
    # 10 messages, every 7th dropped: one, whichever the target relayed 7th
    assert re.search(r"receiver on node \d+ at [^:]+:\d+: 1 missing: #\d \(sender [12]\)\n",
                     p.stderr), p.stderr
    # the good nodes' receivers are not blamed
    for g in good:
        assert f"receiver on node {g.id} " not in p.stderr


def test_fewer_than_two_nodes_exits_2(logdir, procs):
    d = Discovery(logdir)
    procs.append(d)
    p = bench(d.url, "--max", "10")
    assert p.returncode == 2
    assert "lists 0 active nodes" in p.stderr and "at least 2" in p.stderr
    procs.append(Node(d, logdir))
    p = bench(d.url, "--max", "10")
    assert p.returncode == 2
    assert "lists 1 active node;" in p.stderr


def test_no_discovery_exits_2(logdir, procs):
    d = Discovery(logdir)
    url = d.url
    d.stop()
    p = bench(url, "--max", "10", "--timeout", "5")
    assert p.returncode == 2
    assert "cannot ask discovery" in p.stderr


def test_bad_usage_exits_64():
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--senders", "zero"],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == 64
    assert "--senders" in p.stderr


def test_a_node_killed_mid_run_fails_the_run_and_is_named(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    target = nodes[0]
    victim = nodes[2]
    p = subprocess.Popen([os.path.join(BIN_DIR, "bench"), "--discovery", d.url,
                          "--target", f"127.0.0.1:{target.client_port}",
                          "--max", "50000000", "--timeout", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Once the first rows are out, rounds are running: kill a receiver's node.
        for _ in range(4):
            assert p.stdout.readline(), "the bench ended early"
        victim.p.kill()
        out, err = p.communicate(timeout=HANG)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    procs.remove(victim)
    assert p.returncode == 1, (out, err)
    assert f"receiver on node {victim.id} at 127.0.0.1:{victim.client_port}" in err, err


def test_the_steps_profile_gives_every_node_a_table_that_adds_up(tmp_path):
    # scripts/profile-steps.sh with a tiny bench: both profiled nodes get a
    # column, and the steps' shares add up to the whole (never how fast).
    if shutil.which("perf") is None:
        pytest.skip("perf is not installed (apt-get install linux-perf); the script would install it")
    out = tmp_path / "steps"
    env = dict(os.environ, RUNS="1", MAX="8000", DCHAT_BIN_DIR=BIN_DIR, OUT=str(out),
               DISCOVERY_PORT=str(free_port()))
    p = subprocess.run(["sh", os.path.join(REPO, "scripts", "profile-steps.sh")], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0 and "perf_event_paranoid" in p.stdout + p.stderr:
        pytest.skip("perf may not sample here (kernel.perf_event_paranoid)")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("15110 messages"), p.stdout   # rounds 10 to 8000
    # a step name in 52 columns, then a cell of 22 per node: "NS (SHARE%)"
    for col in (slice(52, 74), slice(74, 96)):
        cells = [line[col] for line in lines[2:-1]]
        shares = [float(m.group(1)) for m in (re.search(r"\(\s*([\d.]+)%\)", c) for c in cells)
                  if m]
        assert shares, p.stdout
        assert abs(sum(shares) - 100) < 1.5, p.stdout    # every sample in one step
    last = lines[-1]
    assert last.startswith("all (CPU time / messages)"), p.stdout
    left = subprocess.run(["pgrep", "-af", str(out)], capture_output=True, text=True)
    assert left.stdout.strip() == ""
