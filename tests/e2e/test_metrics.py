"""End-to-end tests of GET /metrics on the nodes and on discovery: the
Prometheus text format (checked by Debian's promtool where it is
installed), values that agree with /api/status and with what the test did
(bench traffic, an unsigned POST), the process metrics, and 405 for other
methods. Never how fast."""

import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from cluster import BIN_DIR, parse_metrics as parse, scrape, start_cluster, wait_until

def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


def run_bench(d):
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--discovery", d.url, "--senders", "2",
                        "--max", "100", "--format", "csv"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_node_metrics_agree_with_status_and_traffic(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    run_bench(d)
    for n in nodes:
        # what was delivered is committed before the bench ends; wait for
        # nothing else: the counters below are read from one status each
        st = n.status()
        m = parse(scrape(n.url))
        msgs = st["messages"]
        assert m[("dchat_messages_from_clients_total", None)] == msgs["fromClients"]
        assert m[("dchat_messages_from_peers_total", None)] == msgs["fromPeers"]
        assert m[("dchat_messages_to_peers_total", None)] == msgs["toPeers"]
        assert m[("dchat_deliveries_total", None)] == msgs["toClients"]
        assert m[("dchat_peer_links", "up")] == 2
        assert m[("dchat_peer_links", "down")] == 0
        assert m[("dchat_history_origins", None)] == len(st["history"]["origins"])
        assert m[("dchat_history_messages", None)] == \
            sum(o["count"] for o in st["history"]["origins"])
        assert m[("dchat_history_commits_total", None)] >= 1
        # the commit histograms: one observation per committed batch, the
        # sizes adding up to the messages stored, buckets cumulative
        wait_until(lambda: not n.status()["history"]["pending"], 10, "the commits to end")
        m = parse(scrape(n.url))
        for h in ("dchat_history_commit_seconds", "dchat_history_commit_messages"):
            assert m[(h + "_count", None)] == m[("dchat_history_commits_total", None)]
            buckets = sorted((float(le), v) for (name, le), v in m.items()
                             if name == h + "_bucket")
            assert buckets[-1] == (float("inf"), m[(h + "_count", None)])
            assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        assert m[("dchat_history_commit_messages_sum", None)] == \
            m[("dchat_history_messages", None)]
        assert m[("dchat_history_file_bytes", None)] > 0
        assert m[("process_resident_memory_bytes", None)] > 1e6
        assert m[("process_open_fds", None)] > 3
        assert m[("process_cpu_seconds_total", None)] > 0
        assert m[("process_start_time_seconds", None)] > 1.7e9
    # every message of the bench came from one node's clients and reached
    # every other node's history; the bench's sockets close
    total = sum(parse(scrape(n.url))[("dchat_messages_from_clients_total", None)] for n in nodes)
    assert total > 100
    for n in nodes:
        wait_until(lambda: parse(scrape(n.url))[("dchat_history_messages", None)] == total, 10,
                   f"{n.name}'s history to hold all {total} messages")
        wait_until(lambda: parse(scrape(n.url))[("dchat_clients", None)] == 0, 10,
                   f"{n.name} to see the bench's sockets closed")
        m = parse(scrape(n.url))
        # every socket the bench opened here was accepted and is gone, with
        # a close code counted once
        gone = sum(v for (name, _), v in m.items() if name == "dchat_client_disconnects_total")
        assert m[("dchat_client_connects_total", None)] == gone > 0
        # the bench has a reader on every node: each message reached a local
        # client once, and was timed once, by where it came from
        own = m[("dchat_messages_from_clients_total", None)]
        h = "dchat_message_in_node_seconds"
        assert m[(h + "_count", "client")] == own
        assert m[(h + "_count", "peer")] == total - own
        for src in ("client", "peer"):
            buckets = sorted((float(lab[1]), v) for (name, lab), v in m.items()
                             if name == h + "_bucket" and lab[0] == src)
            assert len(buckets) > 10 and buckets[-1] == (float("inf"), m[(h + "_count", src)])
            assert [v for _, v in buckets] == sorted(v for _, v in buckets)
            assert m[(h + "_sum", src)] > 0 or m[(h + "_count", src)] == 0
        # nothing was repaired: no link went down
        assert m[("dchat_gaps_repaired_total", None)] == 0
        assert m[("dchat_queued_bytes", "clients")] == 0


def test_discovery_metrics_count_what_happened(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    m = parse(scrape(d.url))
    assert m[("dchat_discovery_active_nodes", None)] == 3
    assert m[("dchat_discovery_registrations_total", None)] == 3   # fresh data dirs
    assert m[("dchat_discovery_logins_total", None)] >= 3
    assert m[("dchat_discovery_refused_unsigned_total", None)] == 0
    beats = m[("dchat_discovery_heartbeats_total", None)]
    # an unsigned login is refused and counted
    req = urllib.request.Request(d.url + "/api/nodes/active/login", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    m = parse(scrape(d.url))
    assert m[("dchat_discovery_refused_unsigned_total", None)] == 1
    assert m[("dchat_discovery_heartbeats_total", None)] >= beats
    # a node that stops logs out
    nodes[2].stop()
    wait_until(lambda: parse(scrape(d.url))[("dchat_discovery_logouts_total", None)] == 1, 10,
               "discovery to count the stopped node's logout")
    m = parse(scrape(d.url))
    assert m[("dchat_discovery_active_nodes", None)] == 2
    assert m[("process_start_time_seconds", None)] > 1.7e9


def test_promtool_finds_both_endpoints_clean(logdir, procs):
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus; not in make "
                    "test's dependencies because installing it starts a Prometheus service)")
    d, nodes = start_cluster(logdir, procs, 2)
    run_bench(d)
    promtool_check(scrape(nodes[0].url))
    promtool_check(scrape(nodes[1].url))
    promtool_check(scrape(d.url))


def test_metrics_take_only_get(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    for url in (nodes[0].url, d.url):
        req = urllib.request.Request(url + "/metrics", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 405
        assert "GET" in e.value.headers["Allow"]
        req = urllib.request.Request(url + "/metrics", method="HEAD")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and r.read() == b""
