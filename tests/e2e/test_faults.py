"""Fault tests: a cluster of real processes in network namespaces
(scripts/netns-cluster.sh: discovery, three nodes and a load host, each
with its own address), clients on every node (tests/faults/loadgen.py),
one fault injected while they send, then the checker
(tests/faults/checker.py): every acknowledged message held by every
client exactly once, live messages in each origin's order, no sequence
number reused, the nodes' histories identical. Each test prints the
checker's line. docs/DEPLOYMENT.md has what survives what.

Faults: kill -9 of a node and its restart; one node partitioned from the
others for 10 s; latency and loss on every link during the seed bench;
discovery down for 10 s; a full disk under one node; a rolling restart of
every node.

Needs root (network namespaces); skipped otherwise, and where namespaces
cannot be made, with the reason. Every wait is for a condition (messages
acknowledged, links up); the fault's length (10 s) is the fault itself."""

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from cluster import wait_until

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO, "scripts", "netns-cluster.sh")
FAULTS = os.path.join(REPO, "tests", "faults")
PY = "/usr/bin/python3"
NODES = ["n1", "n2", "n3"]
HANG = 90  # seconds: only a guard against hangs


def bin_dir():
    return os.environ.get("DCHAT_BIN_DIR", os.path.join(REPO, "build", "bin"))


def netns_usable():
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if not shutil.which("ip"):
        return "ip (iproute2) is not installed"
    probe = f"dcprobe{os.getpid() % 100000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def netem_works():
    """Whether this kernel has tc's netem (else the links are netwire's)."""
    probe = f"dcnetem{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", probe], check=True)
    try:
        r = subprocess.run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo",
                            "root", "netem", "delay", "1ms"], capture_output=True)
        return r.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


class NetnsCluster:
    def __init__(self, tmp, tag, link="veth", node_args=""):
        self.state = os.path.join(tmp, "cluster")
        self.env = dict(os.environ, NETNS_TAG=tag, NETNS_LINK=link, DCHAT_BIN_DIR=bin_dir(),
                        DCHAT_RUN_DIR=self.state, NODE_ARGS=node_args,
                        NETNS_SUBNET=f"10.{78 + os.getpid() % 100}.0")
        self.subnet = self.env["NETNS_SUBNET"]

    def run(self, *args, timeout=HANG):
        r = subprocess.run(["sh", SCRIPT, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        assert r.returncode == 0, f"netns-cluster.sh {' '.join(args)}: {r.stderr}{r.stdout}"
        return r.stdout

    def addr(self, host):
        return f"{self.subnet}.{10 + int(host[1:])}"

    def curl(self, host, url, *opts):
        """curl (2 s at most) run in host's namespace: the finished process."""
        return subprocess.run(["sh", SCRIPT, "exec", host, "curl", "--max-time", "2", *opts, url],
                              env=self.env, capture_output=True, text=True)

    def get_json(self, host, url):
        """The JSON answer of a GET from host, None when it fails."""
        out = self.curl(host, url, "-fsS")
        return json.loads(out.stdout) if out.returncode == 0 else None

    def status(self, host):
        return self.get_json(host, f"http://{self.addr(host)}:9000/api/status")

    def links_up(self, host):
        s = self.status(host)
        return 0 if s is None else sum(p.get("state") == "up" for p in s.get("peers", []))

    def wait_mesh(self):
        wait_until(lambda: all(self.links_up(h) == len(NODES) - 1 for h in NODES), HANG,
                   "every node linked to every other")

    def db(self, host):
        return os.path.join(self.state, host, "history.db")

    def check_logs(self):
        """No sanitizer report in any program's log."""
        for name in os.listdir(self.state):
            if name.endswith(".log"):
                with open(os.path.join(self.state, name), errors="replace") as f:
                    text = f.read()
                assert "ERROR: AddressSanitizer" not in text and "runtime error:" not in text, \
                    f"a sanitizer report in {name}:\n{text[-3000:]}"


class Load:
    """loadgen.py in the load host, its progress read as it comes."""

    def __init__(self, cluster, out, rate=150, clients=12, senders=6):
        nodes = ",".join(f"{cluster.addr(h)}:9000" for h in NODES)
        self.out = out
        self.p = subprocess.Popen(
            ["sh", SCRIPT, "exec", "load", PY, os.path.join(FAULTS, "loadgen.py"),
             "--nodes", nodes, "--clients", str(clients), "--senders", str(senders),
             "--rate", str(rate), "--duration", "240", "--settle", "60", "--out", out],
            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.acked = 0
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_until(lambda: any(l.startswith("loadgen: ready") for l in self.lines) or
                   self.p.poll() is not None, 60, "the load's clients to connect")
        assert self.p.poll() is None, "loadgen exited:\n" + "\n".join(self.lines[-20:])

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("loadgen: acked "):
                self.acked = int(line.split()[2])

    def more(self, n, what="messages acknowledged"):
        """Waits until n more messages than now are acknowledged."""
        want = self.acked + n
        wait_until(lambda: self.acked >= want or self.p.poll() is not None, HANG,
                   f"{n} more {what}")
        assert self.p.poll() is None, "loadgen exited:\n" + "\n".join(self.lines[-20:])

    def finish(self):
        # SIGUSR1: stop sending, then settle. (sh and ip netns exec both
        # exec, so the pid is loadgen's own.)
        self.p.send_signal(10)
        self.p.wait(timeout=HANG)
        self.reader.join(5)
        last = self.lines[-1] if self.lines else ""
        assert last.startswith("loadgen: settled"), \
            "the clients did not converge:\n" + "\n".join(self.lines[-10:])


def check(cluster, fault, record):
    for h in NODES:
        cluster.run("stop", h)
    r = subprocess.run([PY, os.path.join(FAULTS, "checker.py"), "--fault", fault, record] +
                       [a for h in NODES for a in ("--db", f"{h}={cluster.db(h)}")],
                       capture_output=True, text=True)
    print(r.stdout, end="")
    assert r.returncode == 0, r.stdout + r.stderr
    cluster.check_logs()
    return r.stdout.splitlines()[0]


_why = None


@pytest.fixture
def netns(tmp_path, request):
    global _why
    if _why is None:
        _why = netns_usable() or ""
    if _why:
        pytest.skip(_why)
    made = []

    def make(link="veth", node_args=""):
        tag = f"f{os.getpid() % 10000}{len(made)}"
        c = NetnsCluster(str(tmp_path), tag, link, node_args)
        made.append(c)
        c.run("up", "3")
        return c

    yield make
    for c in made:
        subprocess.run(["pkill", "-f", f"--out {tmp_path}"], capture_output=True)
        subprocess.run(["sh", SCRIPT, "down"], env=c.env, capture_output=True, timeout=HANG)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert c.env["NETNS_TAG"] + "-" not in left, f"namespaces left behind: {left}"


def under_load(c, tmp_path, fault, inject):
    """Clients on every node; once 200 messages are acknowledged,
    inject(load) makes the fault and ends it; once 200 more are, the load
    stops and settles, and the checker runs."""
    record = str(tmp_path / "record")
    load = Load(c, record)
    load.more(200)
    inject(load)
    load.more(200, f"messages acknowledged after the {fault}")
    load.finish()
    check(c, fault, record)


def test_kill9_during_load(netns, tmp_path):
    c = netns()

    def inject(load):
        c.run("stop", "n2", "KILL")
        load.more(100, "messages acknowledged with n2 dead")
        c.run("start", "n2")
        c.wait_mesh()

    under_load(c, tmp_path, "kill -9", inject)


def test_partition_of_one_node(netns, tmp_path):
    # Marks every second: a link that carries nothing is taken for dead
    # after 5 s (docs/PROTOCOL.md 2.6), well within the partition.
    c = netns(node_args="--sync-interval 1")

    def inject(load):
        c.run("partition", "n1")
        wait_until(lambda: c.links_up("n2") == 1 and c.links_up("n1") == 0, HANG,
                   "the links to n1 to go down")
        until = time.monotonic() + 10  # the partition lasts 10 s, whatever flows meanwhile
        load.more(100, "messages acknowledged during the partition")
        while time.monotonic() < until:
            time.sleep(0.2)
        c.run("join", "n1")
        c.wait_mesh()

    under_load(c, tmp_path, "partition", inject)


def test_latency_and_loss_during_seed_bench(netns, tmp_path):
    link = "veth" if netem_works() else "wire"
    if link == "wire" and not os.access(os.path.join(bin_dir(), "netwire"), os.X_OK):
        pytest.skip(f"no tc netem in this kernel and no {bin_dir()}/netwire: run make tools")
    c = netns(link)
    c.run("impair", "delay=20", "jitter=5", "loss=1")
    r = subprocess.run(["sh", SCRIPT, "exec", "load", os.path.join(bin_dir(), "bench"),
                        "-d", f"http://{c.subnet}.1:8080", "--senders", "3", "--max", "8000",
                        "--timeout", "120", "--no-progress"],
                       env=c.env, capture_output=True, text=True, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [l.split() for l in r.stdout.splitlines() if l.strip() and l.split()[0].isdigit()]
    assert [int(x[0]) for x in rows] == [10, 100, 1000, 2000, 4000, 8000], r.stdout
    for x in rows:
        assert x[1] == x[2] and x[9:12] == ["0", "0", "0"], f"not every message verified: {x}"
    print(f"latency and loss ({link}, 20 ms +- 5 ms, 1 % loss): ok  rounds 6  "
          f"messages {sum(int(x[0]) for x in rows)}  deliveries {sum(int(x[2]) for x in rows)}")
    for h in NODES:
        c.run("stop", h)
    c.check_logs()


def test_discovery_down_for_10s(netns, tmp_path):
    c = netns()

    def logged_in():
        listed = c.get_json("load", f"http://{c.subnet}.1:8080/api/clients")
        return listed is not None and len(listed["activeNodes"]) == len(NODES)

    def inject(load):
        c.run("stop", "disc", "KILL")
        until = time.monotonic() + 10
        load.more(300, "messages acknowledged with discovery down")
        assert all(c.links_up(h) == 2 for h in NODES), "a peer link went down with discovery"
        while time.monotonic() < until:
            time.sleep(0.2)
        c.run("start", "disc")
        wait_until(logged_in, HANG, "every node to log in to discovery again")

    under_load(c, tmp_path, "discovery down", inject)


def test_full_disk_under_one_node(netns, tmp_path):
    c = netns()
    # n1's data dir moves to a 4 MiB tmpfs (its identity and history with it).
    data = os.path.join(c.state, "n1")
    c.run("stop", "n1")
    keep = str(tmp_path / "n1-keep")
    shutil.copytree(data, keep)
    shutil.rmtree(data)
    os.mkdir(data)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", data],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        for name in os.listdir(keep):
            shutil.copy2(os.path.join(keep, name), data)
        c.run("start", "n1")
        c.wait_mesh()
        filler = os.path.join(data, "filler")

        def inject(load):
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 65536)  # until ENOSPC
            except OSError:
                pass
            finally:
                os.close(fd)
            wait_until(lambda: (c.status("n1") or {}).get("history", {}).get("writable") is False,
                       HANG, "n1 to say its history cannot be written")
            load.more(100, "messages acknowledged while n1's disk is full (by n2 and n3)")
            os.unlink(filler)
            wait_until(lambda: (c.status("n1") or {}).get("history", {}).get("writable") is True,
                       HANG, "n1 to write its history again")

        under_load(c, tmp_path, "disk full", inject)
    finally:
        c.run("stop", "n1")
        subprocess.run(["umount", "-l", data], capture_output=True)


def test_rolling_restart(netns, tmp_path):
    c = netns(node_args="--drain-seconds 1")

    def inject(load):
        for h in NODES:
            c.run("stop", h)
            load.more(50, f"messages acknowledged with {h} stopped")
            c.run("start", h)
            c.wait_mesh()
            if h != NODES[-1]:
                load.more(100, f"messages acknowledged after {h} came back")

    under_load(c, tmp_path, "rolling restart", inject)


@pytest.mark.parametrize("link", ["veth", "wire"])
def test_cut_and_heal(netns, link):
    """scripts/netns-cluster.sh's cut and heal, on both kinds of links: a
    cut host answers no one while the others still answer, and a healed
    one answers again at once (heal also makes the hosts forget lookups
    left unanswered by the cut, which by hand once failed a connection
    made right after it: that race is not reproduced here)."""
    if link == "wire" and not os.access(os.path.join(bin_dir(), "netwire"), os.X_OK):
        pytest.skip(f"no {bin_dir()}/netwire: run make tools")
    c = netns(link)

    def healthz(host):
        return c.curl("load", f"http://{c.addr(host)}:9000/healthz", "-s", "-o", "/dev/null",
                      "-w", "%{http_code}").stdout

    assert healthz("n2") == "200"
    c.run("cut", "n2")
    assert healthz("n2") == "000", "a cut host answered"
    assert healthz("n1") == "200", "cutting n2 cut n1 too"

    c.run("heal")
    assert healthz("n2") == "200", "the healed host did not answer at once"
    c.wait_mesh()
