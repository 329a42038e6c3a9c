"""Real processes for end-to-end tests: a discovery daemon and chat nodes on
loopback, on free ports, with their logs in the test's tmp dir.

Every wait here polls a condition with a hang limit; nothing sleeps to
synchronize. Stopping a process checks its exit status and that the
sanitizers reported nothing."""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("DCHAT_BIN_DIR", os.path.join(REPO, "build", "test", "bin"))

# The cluster secret every test process proves (docs/PROTOCOL.md, 6).
TEST_SECRET = "e2e-test-cluster-secret-0123456789"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def wait_until(cond, timeout=10.0, what="condition"):
    """Polls cond() until it returns a truthy value; fails after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the condition may fail while things start
            last_exc = e
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def secret_args(logdir, secret=TEST_SECRET):
    """The options that give a daemon the cluster secret: a file in logdir.
    secret None: no secret at all (the daemon then needs --insecure)."""
    if secret is None:
        return []
    path = os.path.join(logdir, f"secret-{abs(hash(secret))}")
    with open(path, "w") as f:
        f.write(secret + "\n")
    return ["--cluster-secret-file", path]


_last_signed_ms = 0


def auth_header(method, path, body=b"", secret=TEST_SECRET, ts_ms=None):
    """The X-Dchat-Auth value that proves secret for one request
    (docs/DISCOVERY.md, 3.1): "<unix ms>.<hex HMAC-SHA256(secret,
    "dchat-discovery-v1\n" METHOD "\n" PATH "\n" <unix ms> "\n" BODY)>".
    Without ts_ms the timestamp is now, and never the same twice, so that
    two equal requests are not taken for a replay."""
    global _last_signed_ms
    if ts_ms is None:
        ts_ms = max(time.time_ns() // 1_000_000, _last_signed_ms + 1)
        _last_signed_ms = ts_ms
    if isinstance(body, str):
        body = body.encode()
    msg = b"dchat-discovery-v1\n%s\n%s\n%d\n" % (method.encode(), path.encode(), ts_ms) + body
    mac = hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
    return f"{ts_ms}.{mac}"


def http_json(url, method="GET", body=None, timeout=5, secret=TEST_SECRET, headers=None):
    """A JSON request; a POST is signed with secret (None: not signed)."""
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json"}
    if method == "POST" and secret is not None:
        hdrs["X-Dchat-Auth"] = auth_header(method, urllib.parse.urlsplit(url).path,
                                           data or b"", secret)
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    # https: the tests' certificates are self-signed; test_tls.py checks
    # verification where it matters.
    ctx = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Proc:
    """A started binary; its stdout and stderr go to files in logdir."""

    def __init__(self, name, args, logdir, ready_pattern, preexec=None):
        self.name = name
        self.preexec = preexec  # run in the child before exec (e.g. setrlimit)
        self.args = args
        self.logdir = logdir
        self.out_path = os.path.join(logdir, f"{name}.out")
        self.err_path = os.path.join(logdir, f"{name}.log")
        self.ready_pattern = ready_pattern
        self.p = None
        self.match = None
        self.start()

    def start(self):
        out = open(self.out_path, "w")
        err = open(self.err_path, "a")
        self.p = subprocess.Popen(self.args, stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL, preexec_fn=self.preexec)
        out.close()
        err.close()

        def ready():
            if self.p.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.p.returncode}; "
                                     f"log:\n{self.log()}")
            with open(self.out_path) as f:
                return re.search(self.ready_pattern, f.read())
        try:
            self.match = wait_until(ready, 15, f"{self.name} to print its ports")
        except BaseException:
            self.kill()  # not in any test's procs yet: nobody else would stop it
            raise

    def log(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def check_sanitizers(self):
        log = self.log()
        for mark in SANITIZER_MARKS:
            assert mark not in log, f"{self.name}: sanitizer report:\n{log}"

    def stop(self, expect=0):
        """SIGTERM, wait, and check the exit status and the log."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise AssertionError(f"{self.name} did not stop within 15s of SIGTERM")
            assert self.p.returncode == expect, \
                f"{self.name} exited with {self.p.returncode}; log:\n{self.log()}"
        self.check_sanitizers()

    def kill(self):
        if self.alive():
            self.p.kill()
            self.p.wait()


class Discovery(Proc):
    def __init__(self, logdir, ttl=3, extra=(), preexec=None, secret=TEST_SECRET):
        self.data_dir = os.path.join(logdir, "discovery-data")
        super().__init__("discovery",
                         [os.path.join(BIN_DIR, "discovery"), "--listen", "127.0.0.1:0",
                          "--data-dir", self.data_dir, "--ttl", str(ttl),
                          *secret_args(logdir, secret), *extra],
                         logdir, r"listening on [^ ]*:(\d+)", preexec)
        self.port = int(self.match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def active_ids(self):
        status, body = http_json(self.url + "/api/nodes/active")
        assert status == 200
        return sorted(n["id"] for n in body["activeNodes"])


class Node(Proc):
    count = 0

    def __init__(self, discovery, logdir, name=None, extra=(), data_dir=None, preexec=None,
                 secret=TEST_SECRET):
        Node.count += 1
        name = name or f"node{Node.count}"
        self.data_dir = data_dir or os.path.join(logdir, name + "-data")
        self.discovery = discovery
        super().__init__(name,
                         [os.path.join(BIN_DIR, "node"), "--discovery", discovery.url,
                          "--listen", "127.0.0.1", "--client-port", "0",
                          "--sync-port", "0", "--data-dir", self.data_dir,
                          "--heartbeat-ms", "200", *secret_args(logdir, secret), *extra],
                         logdir, r"listening clients on [^ ]*:(\d+) sync on [^ ]*:(\d+)",
                         preexec)
        try:
            self._learn_ports()
        except BaseException:
            self.kill()  # as in Proc.start: not in any test's procs yet
            raise

    def _learn_ports(self):
        self.client_port = int(self.match.group(1))
        self.sync_port = int(self.match.group(2))
        # A node with --tls-only answers plain HTTP with 400 only.
        scheme = "https" if "--tls-only" in self.args else "http"
        self.url = f"{scheme}://127.0.0.1:{self.client_port}"
        self.ws_url = f"ws://127.0.0.1:{self.client_port}/"
        self.id = wait_until(lambda: self.status()["id"], 10, f"{self.name} to get an id")

    def restart(self):
        self.start()
        self._learn_ports()

    def status(self):
        status, body = http_json(self.url + "/api/status")
        assert status == 200
        return body

    def numbering(self):
        """history.own.numbering of /api/status: open, waiting or behind."""
        return self.status()["history"]["own"]["numbering"]

    def peers_up(self):
        return sorted(p["id"] for p in self.status()["peers"] if p["state"] == "up")


def wait_mesh(nodes, timeout=15):
    """Waits until every node has a link up to every other one, and numbers
    its clients' messages (a restarted node waits for its peers' marks,
    and fetches back its own messages they hold: docs/PROTOCOL.md 3.2)."""
    for n in nodes:
        want = sorted(m.id for m in nodes if m is not n)
        wait_until(lambda: n.peers_up() == want, timeout,
                   f"{n.name} to link to {want}")
    for n in nodes:
        wait_until(lambda: n.numbering() == "open", timeout,
                   f"{n.name} to number its clients' messages")


def start_cluster(logdir, procs, n, ttl=3, node_extra=()):
    """Discovery plus n nodes, fully meshed; all appended to procs."""
    d = Discovery(logdir, ttl=ttl)
    procs.append(d)
    nodes = []
    for _ in range(n):
        nd = Node(d, logdir, extra=node_extra)
        procs.append(nd)
        nodes.append(nd)
    wait_mesh(nodes)
    return d, nodes


class Relay:
    """A TCP forwarder on loopback, as docker's -p PUBLISHED:TARGET or a
    party in the middle: listens on a port of its own (self.port) and joins
    each connection to 127.0.0.1:target_port, copying both ways. The target
    may be set later (set_target: a node's port is known once it runs); a
    connection that comes first waits for it, up to RELAY_WAIT seconds.
    With cert (certificate and key files) it terminates TLS on both sides:
    its own certificate towards the dialler, an unverified TLS client
    towards the target, as an attacker on the path with a certificate
    would. self.connections counts the connections joined."""

    RELAY_WAIT = 20

    def __init__(self, target_port=None, cert=None):
        self.cert = cert
        self.target_port = target_port
        self.target_set = threading.Event()
        if target_port is not None:
            self.target_set.set()
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.connections = 0
        self.lock = threading.Lock()
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def set_target(self, port):
        self.target_port = port
        self.target_set.set()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._join, args=(c,), daemon=True).start()

    def _join(self, c):
        try:
            if not self.target_set.wait(self.RELAY_WAIT):
                raise OSError("no target")
            t = socket.create_connection(("127.0.0.1", self.target_port),
                                         timeout=self.RELAY_WAIT)
            t.settimeout(None)
            if self.cert:
                sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                sctx.load_cert_chain(*self.cert)
                c = sctx.wrap_socket(c, server_side=True)
                cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                cctx.check_hostname = False
                cctx.verify_mode = ssl.CERT_NONE
                t = cctx.wrap_socket(t)
        except (OSError, ssl.SSLError):
            c.close()
            return
        with self.lock:
            self.connections += 1
            self.socks += [c, t]
        threading.Thread(target=self._pump, args=(t, c), daemon=True).start()
        self._pump(c, t)

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        Relay._end(src)
        Relay._end(dst)

    @staticmethod
    def _end(sock):
        # shutdown, not close alone: a close does not wake the other pump
        # blocked in recv() on the same socket, nor send the FIN while it is
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def close(self):
        Relay._end(self.lsock)  # wakes the accept() too
        with self.lock:
            for s in self.socks:
                Relay._end(s)


def compose_command():
    """How to run Docker Compose here, for its config checks (no Docker
    engine is needed for them): docker-compose or docker compose. Skips the
    calling test, saying why, when there is neither."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("docker-compose is not installed (Debian package docker-compose, which "
                "make test installs; only its config check is used, no Docker engine)")


def free_port():
    """A loopback port free now, for a daemon that must keep its port over a
    restart (port 0 would pick another one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
METRICS_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def scrape(url):
    """The body of GET url/metrics as text, after checking the answer."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == METRICS_CONTENT_TYPE
        return r.read().decode()


def parse_metrics(text):
    """{(name, labels): value} of a Prometheus text exposition: labels is
    None without labels, the value of a single label, or the tuple of the
    values in order (a labelled histogram's bucket: (label value, le)).
    Every line is a comment or a sample, and every sample's family was
    announced by # TYPE first (a histogram's _bucket, _sum and _count by
    their family's)."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        m = METRICS_SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        values = []
        if m.group(3) is not None:
            rest = m.group(3)
            while rest:
                lm = METRICS_LABEL.match(rest)
                assert lm, f"bad labels in {line!r}"
                values.append(lm.group(2))
                rest = rest[lm.end():]
        family = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in typed or family in typed, f"{m.group(1)} has no # TYPE before it"
        labels = None if not values else values[0] if len(values) == 1 else tuple(values)
        key = (m.group(1), labels)
        assert key not in samples, f"{key} twice"
        samples[key] = float(m.group(4))
    return samples


def metrics(url):
    """The parsed /metrics of a node or of discovery."""
    return parse_metrics(scrape(url))


def new_message(text, sender="tester", chat=11):
    """A DSatter newMessageFromClient frame."""
    return json.dumps({"type": "newMessageFromClient",
                       "payload": {"text": text, "sender": sender, "chatId": chat}})


def ws_request(port, rcvbuf=None, timeout=20):
    """A plain socket to a node's client port with a WebSocket upgrade
    request sent; rcvbuf (set before connecting, so that the window it
    announces is small from the start) makes a reader the kernel cannot
    buffer much for."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return s


def raw_ws(port, rcvbuf=None, timeout=20):
    """A WebSocket client on a plain socket: handshake done, frames by hand
    (for what a well-behaved library will not send, or not so fast)."""
    s = ws_request(port, rcvbuf, timeout)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def masked_frame(opcode, payload, fin=True):
    """A client frame: masked, as RFC 6455 requires."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    m = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
    return head + mask + body
