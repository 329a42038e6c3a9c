"""End-to-end test of tools/netwire.c, the userspace switch that impairs
links as tc netem would (issue 15: this kernel has no sch_netem). netwire
makes two TAP devices, the test moves each into a network namespace of its
own, and real Python processes talk TCP across: a few MB arrive intact; a
delay holds every connect back by at least its two crossings; a cut stops
connects until it is healed; 100 % loss drops everything and the counters
printed at exit say so; a malformed settings file keeps what is in force.

TAP devices and namespaces need root, /dev/net/tun and `ip netns`; without
them those tests are skipped and say why. The argument checks run anywhere.
The namespaces are removed, and netwire (whose TAPs go with it) stopped,
however a test ends."""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from cluster import BIN_DIR, Proc, wait_until

NETWIRE = os.path.join(BIN_DIR, "netwire")
PY = "/usr/bin/python3"
HANG = 30            # seconds: only a guard against hangs
PORT = 7000          # the server's port, inside its own namespace
ADDR_A, ADDR_B = "10.199.1.1", "10.199.1.2"

# The two ends, run inside the namespaces with `ip netns exec`.
# serve ADDR PORT: answers each connection with "<bytes> <sha256>" of what
#   it read until the peer's end of stream; exits 0 on SIGTERM.
# send ADDR PORT BYTES CONNECT_TIMEOUT: connects, sends BYTES random bytes,
#   and prints one JSON line: connect time, or the error; what was sent and
#   what the server counted.
PEER = r"""
import hashlib, json, os, signal, socket, sys, time
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(8)
    print("listening", flush=True)
    while True:
        c, _ = s.accept()
        h, n = hashlib.sha256(), 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            h.update(b)
            n += len(b)
        c.sendall(f"{n} {h.hexdigest()}\n".encode())
        c.close()
size, limit = int(sys.argv[4]), float(sys.argv[5])
out = {}
t0 = time.monotonic()
try:
    c = socket.create_connection((addr, port), timeout=limit)
except OSError as e:
    out.update(connected=False, error=repr(e), seconds=time.monotonic() - t0)
else:
    out.update(connected=True, seconds=time.monotonic() - t0)
    c.settimeout(20)
    data = os.urandom(size)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    out.update(sent=f"{len(data)} {hashlib.sha256(data).hexdigest()}",
               got=c.makefile().readline().strip())
print(json.dumps(out))
"""

_serial = itertools.count()


def ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=HANG)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr.strip()}"


class Wire:
    """netwire with two TAPs, each in a namespace of its own (A: ADDR_A, B:
    ADDR_B), and a server in B. Names carry this process's id and a serial,
    so that tests here and elsewhere never share one."""

    def __init__(self, logdir):
        tag = f"{os.getpid()}-{next(_serial)}"
        self.logdir = logdir
        self.ns_a, self.ns_b = f"dcwt-{tag}-a", f"dcwt-{tag}-b"
        self.tap_a, self.tap_b = f"nw{tag.replace('-', 'x')}a", f"nw{tag.replace('-', 'x')}b"
        self.conf = os.path.join(logdir, "netwire.conf")
        self.namespaces = []
        self.nw = self.server = None

    def start(self, conf=None):
        if conf is not None:
            self.write_conf(conf)
        for ns in (self.ns_a, self.ns_b):
            r = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
            self.namespaces.append(ns)
        self.nw = Proc("netwire", [NETWIRE, "--conf", self.conf, self.tap_a, self.tap_b],
                       self.logdir, r"netwire: ready")
        for ns, tap, addr in ((self.ns_a, self.tap_a, ADDR_A), (self.ns_b, self.tap_b, ADDR_B)):
            ip("link", "set", tap, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", tap)
            ip("-n", ns, "link", "set", tap, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        self.server = Proc("server", ["ip", "netns", "exec", self.ns_b, PY, "-c", PEER, "serve",
                                      ADDR_B, str(PORT)], self.logdir, r"listening")

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def reload(self, conf, expect):
        """Rewrites the settings, sends SIGHUP and waits for netwire to print
        expect (a regular expression) after it."""
        self.write_conf(conf)
        seen = len(self.nw.log())
        self.nw.p.send_signal(signal.SIGHUP)
        return wait_until(lambda: re.search(expect, self.nw.log()[seen:]), HANG,
                          f"netwire to print {expect!r} after SIGHUP")

    def connect(self, size=0, limit=5.0):
        """A connection from A to the server in B, with size bytes sent."""
        r = subprocess.run(["ip", "netns", "exec", self.ns_a, PY, "-c", PEER, "send", ADDR_B,
                            str(PORT), str(size), str(limit)],
                           capture_output=True, text=True, timeout=HANG)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def stop(self):
        """Stops netwire (SIGTERM: exit 0) and returns its counters."""
        self.nw.stop()
        m = re.search(r"netwire: counters: (.*)", self.nw.log())
        assert m, f"no counters at exit; log:\n{self.nw.log()}"
        return {k: int(v) for k, v in re.findall(r"([a-z-]+)=(\d+)", m.group(1))}

    def teardown(self):
        errors = []
        for p in (self.server, self.nw):
            if p is None:
                continue
            try:
                p.stop()
            except AssertionError as e:
                errors.append(str(e))
                p.kill()
        for ns in self.namespaces:
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if r.returncode != 0:
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        assert not errors, "\n".join(errors)


def why_no_netns():
    if os.geteuid() != 0:
        return "TAP devices and network namespaces need root"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun here (the tun driver)"
    if shutil.which("ip") is None:
        return "no ip command (Debian package iproute2)"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"ip netns does not work here: {r.stderr.strip()}"
    return None


@pytest.fixture
def wire(logdir):
    assert os.access(NETWIRE, os.X_OK), f"no {NETWIRE}: build it with make tools"
    why = why_no_netns()
    if why:
        pytest.skip(why)
    w = Wire(logdir)
    try:
        yield w
    finally:
        w.teardown()


def test_payload_crosses_intact(wire):
    wire.start()
    r = wire.connect(size=4 << 20)
    assert r["connected"], r
    assert r["got"] == r["sent"], r
    assert r["got"].startswith(f"{4 << 20} ")
    c = wire.stop()
    assert c["out"] > 0 and c["loss"] == c["cut"] == c["bound"] == 0, c


def test_delay_holds_every_connect_back(wire):
    wire.start()
    wire.reload("delay=50\n", r"netwire: delay=50ms jitter=0ms loss=0% cut=-\n")
    for _ in range(2):  # the first with an ARP exchange, the second without
        r = wire.connect(size=1000)
        assert r["connected"] and r["got"] == r["sent"], r
        # SYN and SYN-ACK each wait 50 ms on the wire: nothing beats that.
        assert r["seconds"] >= 0.100, r


def test_cut_stops_connects_until_healed(wire):
    wire.start()
    r = wire.connect(size=1000)
    assert r["connected"] and r["got"] == r["sent"], r
    wire.reload(f"# partition B\ncut={wire.tap_b}\n", rf"cut={wire.tap_b}\n")
    r = wire.connect(size=1000, limit=1.0)
    assert not r["connected"], r
    wire.reload("cut=-\n", r"netwire: delay=0ms jitter=0ms loss=0% cut=-\n")
    r = wire.connect(size=100000)
    assert r["connected"] and r["got"] == r["sent"], r
    c = wire.stop()
    assert c["cut"] >= 1 and c["bound"] == 0, c


def test_total_loss_drops_and_counts(wire):
    wire.start("loss=100  # everything\n")
    assert "netwire: delay=0ms jitter=0ms loss=100% cut=-" in wire.nw.log()
    r = wire.connect(limit=1.0)
    assert not r["connected"], r
    c = wire.stop()
    # Two ports: every frame read goes to the other one, and is lost.
    assert c["in"] >= 1 and c["loss"] == c["in"] and c["out"] == 0, c
    assert c["cut"] == c["bound"] == 0, c


def test_malformed_settings_keep_those_in_force(wire):
    wire.start("delay=50\n")
    assert "netwire: delay=50ms jitter=0ms loss=0% cut=-" in wire.nw.log()
    for conf, error in [
        ("delay=0\njitter=zero\n", r"line 2: jitter 'zero' is not milliseconds"),
        ("delay 0\n", r"line 1: 'delay 0' is not key=value"),
        ("# comment\nloss=101\n", r"line 2: loss '101' is not a percentage from 0 to 100"),
        ("delay=0x10\n", r"line 1: delay '0x10' is not milliseconds"),
        ("delay=0\nwobble=1\n", r"line 2: unknown key 'wobble'"),
        ("delay=0\ndelay=1\n", r"line 2: delay is given twice \(first on line 1\)"),
        ("cut=nosuchtap\n", r"line 1: cut names 'nosuchtap', which is none of the TAPs"),
    ]:
        before = wire.nw.log().count("netwire: delay=")
        wire.reload(conf, re.escape(wire.conf) + " " + error + r".*\n"
                    r"netwire: keeping the settings in force")
        assert wire.nw.log().count("netwire: delay=") == before, wire.nw.log()
    # Still 50 ms each way, although the last files said delay=0.
    r = wire.connect(size=1000)
    assert r["connected"] and r["seconds"] >= 0.100, r
    # Units as netwire prints them are taken too.
    wire.reload("delay=0ms\nloss=0.5%\n", r"netwire: delay=0ms jitter=0ms loss=0.5% cut=-\n")


@pytest.mark.parametrize("args, message", [
    (["abcdefghijklmnop", "b"], "the TAP name 'abcdefghijklmnop' has 16 characters"),
    (["tap0", "tap0"], "the TAP name 'tap0' is given twice"),
    (["tap%d", "b"], "the TAP name 'tap%d' is not allowed"),
    (["only"], "give 2 to 256 TAP names"),
    (["--max-bytes", "12", "a", "b"], "--max-bytes '12' is not a size"),
])
def test_bad_arguments_are_refused(args, message):
    r = subprocess.run([NETWIRE, *args], capture_output=True, text=True, timeout=HANG)
    assert r.returncode == 64 and message in r.stderr, (r.returncode, r.stderr)


def test_help_and_malformed_file_at_start(tmp_path):
    r = subprocess.run([NETWIRE, "--help"], capture_output=True, text=True, timeout=HANG)
    assert r.returncode == 0 and r.stdout.startswith("usage: netwire"), r
    conf = tmp_path / "bad.conf"
    conf.write_text("delay=20\njitter=-5\n")
    r = subprocess.run([NETWIRE, "--conf", str(conf), "nwbad0", "nwbad1"],
                       capture_output=True, text=True, timeout=HANG)
    assert r.returncode == 1 and "line 2: jitter '-5'" in r.stderr, r
    assert f"fix {conf} and start again" in r.stderr


def test_not_root_is_told_to_be(tmp_path):
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        pytest.skip("needs root (to drop it) and /dev/net/tun")
    try:
        r = subprocess.run([NETWIRE, "nwnobody0", "nwnobody1"], capture_output=True,
                           text=True, timeout=HANG, preexec_fn=lambda: os.setuid(65534))
    except PermissionError:
        pytest.skip(f"user nobody may not run {NETWIRE}")
    assert r.returncode == 77 and "needs root" in r.stderr, r
