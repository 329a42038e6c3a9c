"""End-to-end tests with a real Prometheus (Debian's /usr/bin/prometheus,
on 127.0.0.1 only, with a temporary database and a generated config that
scrapes discovery and three nodes every second): what Prometheus holds
after known traffic, read back through its HTTP query API, is exactly what
the test sent; and every expression of the Grafana dashboard runs there.

Every wait polls the query API for a condition (targets up, a scrape
newer than the traffic); nothing sleeps to synchronize, and no assertion
depends on how fast anything ran."""

import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets

import dashboard
from cluster import free_port, new_message, start_cluster, wait_until

PROMETHEUS = "/usr/bin/prometheus"
HANG = 60  # seconds: only a guard against hangs
# The job names of monitoring/prometheus/prometheus.yml, which the
# dashboard selects on (test_dashboard.py checks that they agree).
JOB_DISCOVERY, JOB_NODE = "dchat-discovery", "dchat-node"

pytestmark = pytest.mark.skipif(
    not os.access(PROMETHEUS, os.X_OK),
    reason="/usr/bin/prometheus is not installed (Debian package prometheus; not in make "
           "test's dependencies because installing it starts a Prometheus service)")


class Prometheus:
    """A Prometheus server for one test, listening on 127.0.0.1 only, its
    database and log in logdir. Put it in the test's procs so that it is
    stopped whatever happens; stop() checks that it exited cleanly."""

    def __init__(self, logdir, jobs):
        self.name = "prometheus"
        self.ntargets = sum(len(targets) for targets in jobs.values())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(logdir, "prometheus.yml")
        self.log_path = os.path.join(logdir, "prometheus.log")
        # JSON is YAML: the config needs no YAML writer.
        with open(self.config, "w") as f:
            json.dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                                  "evaluation_interval": "1s"},
                       "scrape_configs": [
                           {"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in jobs.items()]}, f, indent=2)
        with open(self.log_path, "w") as log:
            self.p = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config}",
                 f"--storage.tsdb.path={os.path.join(logdir, 'tsdb')}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(self.ready, 30, "Prometheus to be ready")
        except BaseException:
            self.kill()  # not in the test's procs yet: nobody else would stop it
            raise

    def ready(self):
        assert self.p.poll() is None, f"prometheus exited with {self.p.returncode}:\n{self.log()}"
        with urllib.request.urlopen(self.url + "/-/ready", timeout=5) as r:
            return r.status == 200

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def api(self, path, **params):
        """GET /api/v1/<path>; its "data" after checking the status."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"null")
        assert body and body.get("status") == "success", f"{url}: {body}"
        return body["data"]

    def query(self, expr, at=None):
        """An instant query: [(labels, value)], value a float."""
        params = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, expr, at=None):
        """The value of a query that must give exactly one series."""
        result = self.query(expr, at)
        assert len(result) == 1, f"{expr}: {result}"
        return result[0][1]

    def targets_up(self, n):
        active = self.api("targets", state="active")["activeTargets"]
        return len(active) == n and all(t["health"] == "up" for t in active)

    def scraped_after(self, metric, t):
        """True when every target has a sample of metric taken after t (a
        Unix time): timestamp() is the time of the scrape that took it.
        A metric every target exports, such as process_start_time_seconds,
        tells when every target was last scraped whole."""
        stamps = self.query(f"timestamp({metric})")
        return len(stamps) == self.ntargets and all(v > t for _, v in stamps)

    def listening(self):
        """[(address, port)] of the TCP sockets the process listens on, from
        /proc: its descriptors' socket inodes, looked up in the tables."""
        inodes = set()
        fd_dir = f"/proc/{self.p.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                link = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        found = []
        for table, ipv6 in (("tcp", False), ("tcp6", True)):
            with open(f"/proc/{self.p.pid}/net/{table}") as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] != "0A" or fields[9] not in inodes:   # 0A: LISTEN
                        continue
                    addr, port = fields[1].split(":")
                    # the kernel prints the address as 32-bit words in host order
                    words = [int(addr[i:i + 8], 16) for i in range(0, len(addr), 8)]
                    raw = struct.pack(f"={len(words)}I", *words)
                    found.append((socket.inet_ntop(socket.AF_INET6 if ipv6 else socket.AF_INET,
                                                   raw), int(port, 16)))
        return sorted(found)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("prometheus did not stop within 30s of SIGTERM")
        assert self.p.returncode == 0, \
            f"prometheus exited with {self.p.returncode}:\n{self.log()}"

    def kill(self):
        if self.alive():
            self.p.kill()
            self.p.wait()


def start_prometheus(logdir, procs, d, nodes):
    prom = Prometheus(logdir, {
        JOB_DISCOVERY: [f"127.0.0.1:{d.port}"],
        JOB_NODE: [f"127.0.0.1:{n.client_port}" for n in nodes]})
    procs.append(prom)
    # Prometheus listens where it was told, and there only.
    flags = prom.api("status/flags")
    assert flags["web.listen-address"] == f"127.0.0.1:{prom.port}"
    assert prom.listening() == [("127.0.0.1", prom.port)]
    wait_until(lambda: prom.targets_up(1 + len(nodes)), HANG,
               "Prometheus to scrape discovery and every node")
    return prom


async def chat(nodes, clients_per_node, per_client):
    """clients_per_node clients on every node each send per_client messages;
    returns once every client has received every message exactly once."""
    conns = []
    for nd in nodes:
        for _ in range(clients_per_node):
            ws = await websockets.connect(nd.ws_url, max_size=2**20, max_queue=None)
            conns.append(ws)
    texts = [f"c{i}-m{k}" for i in range(len(conns)) for k in range(per_client)]

    async def send(i, ws):
        for k in range(per_client):
            await ws.send(new_message(f"c{i}-m{k}", sender=f"client{i}"))

    async def receive(ws):
        got = []
        while len(got) < len(texts):
            frame = json.loads(await asyncio.wait_for(ws.recv(), HANG))
            assert frame["type"] == "newMessagesForClient", frame
            got += [m["text"] for m in frame["payload"]]
        return got

    results = await asyncio.gather(*(send(i, ws) for i, ws in enumerate(conns)),
                                   *(receive(ws) for ws in conns))
    for got in results[len(conns):]:
        assert sorted(got) == sorted(texts)
    for ws in conns:
        await ws.close()


def test_prometheus_holds_exactly_the_traffic_sent(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    prom = start_prometheus(logdir, procs, d, nodes)
    # The first scrape of every node, before any traffic: the counters are
    # 0, which is what lets increase() below start from the true zero.
    assert prom.query('sum(dchat_deliveries_total{job="dchat-node"})') == [({}, 0.0)]
    assert prom.scalar('sum(up{job="dchat-node"})') == 3
    assert prom.scalar('up{job="dchat-discovery"}') == 1

    per_node, per_client = 2, 150
    clients = per_node * len(nodes)
    asyncio.run(asyncio.wait_for(chat(nodes, per_node, per_client), 2 * HANG))
    sent = clients * per_client
    # Every node counts a message when it takes it and a delivery when it
    # queues it, so all is counted once every client has everything; the
    # sockets' closes are waited for so that the clients gauge is final too.
    for n in nodes:
        wait_until(lambda: n.status()["clients"] == 0, HANG, f"{n.name} to see its clients go")
    traffic_end = time.time()
    wait_until(lambda: prom.scraped_after("process_start_time_seconds", traffic_end), HANG,
               "a scrape of every target newer than the end of the traffic")

    # What the cluster counted, as Prometheus holds it: every message once
    # from a client, taken once from a peer on each other node (what a link
    # brought twice, or too early, is counted as received and dropped), and
    # delivered to every client of the cluster.
    assert prom.scalar('sum(dchat_messages_from_clients_total{job="dchat-node"})') == sent
    assert prom.scalar('sum(dchat_messages_from_peers_total{job="dchat-node"})'
                       ' - sum(dchat_duplicates_dropped_total{job="dchat-node"})'
                       ' - sum(dchat_gaps_dropped_total{job="dchat-node"})') == \
        sent * (len(nodes) - 1)
    assert prom.scalar('sum(dchat_deliveries_total{job="dchat-node"})') == sent * clients
    # each delivered message timed once on every node, by where it came from
    timed = prom.query('sum by (source) (dchat_message_in_node_seconds_count{job="dchat-node"})')
    assert {labels["source"]: v for labels, v in timed} == \
        {"client": sent, "peer": sent * (len(nodes) - 1)}
    # every client came and went, closing normally
    assert prom.scalar('sum(dchat_clients{job="dchat-node"})') == 0
    assert prom.scalar('sum(dchat_client_connects_total{job="dchat-node"})') == clients
    assert prom.scalar('sum(dchat_client_disconnects_total{job="dchat-node"})') == clients
    assert prom.scalar('sum(dchat_client_disconnects_total{job="dchat-node", code="1000"})') == \
        clients
    assert prom.scalar('sum(dchat_peer_links{job="dchat-node", state="up"})') == \
        len(nodes) * (len(nodes) - 1)
    assert prom.scalar('dchat_discovery_active_nodes') == len(nodes)
    for n in nodes:
        inst = f'{{instance="127.0.0.1:{n.client_port}"}}'
        assert prom.scalar(f"dchat_messages_from_clients_total{inst}") == per_node * per_client
        assert prom.scalar(f"dchat_deliveries_total{inst}") == per_node * sent
        # ... and as the node itself says now
        assert n.status()["messages"]["toClients"] == per_node * sent

    # The rate over the run. Each node's series is read at the time of its
    # own latest sample, over a range that reaches back to its first, which
    # was 0: Prometheus then extrapolates neither end, so increase() is the
    # exact count and rate() that count over the range.
    total_rate = 0.0
    for n in nodes:
        inst = f'{{instance="127.0.0.1:{n.client_port}"}}'
        at = prom.scalar(f"timestamp(dchat_deliveries_total{inst})")
        assert at > traffic_end
        assert prom.scalar(f"min_over_time(dchat_deliveries_total{inst}[1h])", at) == 0
        assert prom.scalar(f"increase(dchat_deliveries_total{inst}[1h])", at) == \
            per_node * sent
        assert prom.scalar(f"increase(dchat_messages_from_clients_total{inst}[1h])", at) == \
            per_node * per_client
        rate = prom.scalar(f"rate(dchat_deliveries_total{inst}[1h])", at)
        assert rate > 0
        assert rate * 3600 == pytest.approx(per_node * sent, rel=1e-9)
        total_rate += rate
    assert total_rate * 3600 == pytest.approx(sent * clients, rel=1e-9)


def test_every_dashboard_expression_runs_in_prometheus(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 3)
    prom = start_prometheus(logdir, procs, d, nodes)
    # Some traffic and closed sockets, so that histograms and the counters
    # with labels (close codes) have series; then two scrapes of every
    # target after it, so that every series, even one that appeared at the
    # end of the traffic, has the two samples a rate() over the run needs.
    asyncio.run(asyncio.wait_for(chat(nodes, 1, 5), HANG))
    for n in nodes:
        wait_until(lambda: n.status()["clients"] == 0, HANG, f"{n.name} to see its clients go")
    for _ in range(2):
        since = time.time()
        wait_until(lambda: prom.scraped_after("process_start_time_seconds", since), HANG,
                   "a scrape of every target newer than the end of the traffic")
    # what the live targets export with samples now, as Prometheus has them
    with_samples = {labels["__name__"] for labels, _ in
                    prom.query('{job=~"dchat-.*"}')}
    dash = dashboard.load()
    exprs = dashboard.expressions(dash)
    assert len(exprs) >= 20
    empty = []
    for where, expr in exprs:
        if expr.startswith("label_values("):
            # a Grafana function, not PromQL: the values it would offer
            selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\s*\)", expr).groups()
            values = prom.api(f"label/{label}/values", **{"match[]": selector})
            if label == "instance":
                assert sorted(values) == sorted(f"127.0.0.1:{n.client_port}" for n in nodes)
            continue
        q = dashboard.substitute(expr, {"__rate_interval": "1h"})
        # a parse error, an unknown function or a type error fails here
        result = prom.query(q)
        if not result:
            empty.append((where, expr))
    # A query may come back empty only when a metric it reads has no
    # series yet (a labelled counter nothing has counted); a typo in a
    # label value or a job name would leave a panel empty for ever.
    for where, expr in empty:
        assert dashboard.metric_names(expr) - with_samples, \
            f"{where} is empty although every metric it reads has samples: {expr}"
    assert len(empty) < len(exprs) // 2, empty
