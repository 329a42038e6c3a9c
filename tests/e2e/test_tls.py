"""End-to-end tests of TLS (docs/PROTOCOL.md 6.3), with real processes and a
certificate made by the openssl command: the seed bench over wss:// with
every message verified, on a cluster whose peer links run on TLS; wss://
and plain DSatter-style clients on one node; --tls-only; the options
checked at start; a cluster whose nodes disagree on --peer-tls says why
and links nothing; and a party in the middle that terminates TLS on both
sides cannot relay the cluster-secret proofs (they are bound to the TLS
session), while a plain TCP forwarder in the same place can."""

import asyncio
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
import websockets

from cluster import (BIN_DIR, Discovery, Node, Relay, http_json, new_message, wait_mesh,
                     wait_until)

HANG = 60  # seconds: only a guard against hangs


@pytest.fixture
def cert(logdir):
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    c, k = os.path.join(logdir, "cert.pem"), os.path.join(logdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", k, "-out", c,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=HANG)
    return c, k


def tls_opts(cert, *more):
    return ("--tls-cert", cert[0], "--tls-key", cert[1], *more)


def client_ctx(cert):
    ctx = ssl.create_default_context(cafile=cert[0])
    return ctx


def tls_cluster(logdir, procs, cert, n, *more):
    d = Discovery(logdir)
    procs.append(d)
    nodes = []
    for _ in range(n):
        nd = Node(d, logdir, extra=tls_opts(cert, *more))
        procs.append(nd)
        nodes.append(nd)
    return d, nodes


def test_the_seed_bench_runs_over_wss_with_tls_peer_links(logdir, procs, cert):
    d, nodes = tls_cluster(logdir, procs, cert, 3, "--peer-tls")
    wait_mesh(nodes)
    for nd in nodes:
        assert all(p["tls"] for p in nd.status()["peers"])
        assert "TLSv1.3" in nd.log()          # "link to node N up (..., TLSv1.3 ...)"
    for args in (("--window", "4000"), ("--window", "0")):
        p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--discovery", d.url,
                            "--tls-ca", cert[0], "--senders", "3", "--max", "8000",
                            "--format", "json", *args],
                           capture_output=True, text=True, timeout=HANG * 2)
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert doc["ok"] is True
        assert [r["messages"] for r in doc["rounds"]] == [10, 100, 1000, 2000, 4000, 8000]
        for r in doc["rounds"]:
            assert r["expected"] == r["received"] == r["messages"] * (3 + 3)
            assert (r["lost"], r["duplicated"], r["reordered"]) == (0, 0, 0)
    # Every message went through the nodes (besides the bench's few probes).
    sent = 2 * (10 + 100 + 1000 + 2000 + 4000 + 8000)
    assert sum(nd.status()["messages"]["fromClients"] for nd in nodes) >= sent
    # A bench that does not trust the certificate is refused at the handshake.
    other = os.path.join(logdir, "other.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                    os.path.join(logdir, "other.key"), "-out", other, "-days", "2",
                    "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=HANG)
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--discovery", d.url,
                        "--tls-ca", other, "--max", "10", "--timeout", "5"],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode != 0
    assert "certificate" in p.stderr, p.stderr


def test_wss_and_plain_dsatter_clients_share_a_cluster(logdir, procs, cert):
    """A wss:// client verifying the certificate and a DSatter-style plain
    client (no Origin, no secret, 'Client connected' first) on two nodes
    of a secured cluster (cluster secret, TLS peer links, an origin list)
    see each other's messages."""
    d, (a, b) = tls_cluster(logdir, procs, cert, 2, "--peer-tls",
                            "--allowed-origins", "https://chat.example.com")
    wait_mesh([a, b])

    async def go():
        sec = await websockets.connect(f"wss://127.0.0.1:{a.client_port}/",
                                       ssl=client_ctx(cert), server_hostname="localhost")
        plain = await websockets.connect(b.ws_url)
        await plain.send("Client connected")
        await sec.send(new_message("over TLS", sender="sec"))
        await plain.send(new_message("in the clear", sender="plain"))
        seen = {"sec": set(), "plain": set()}

        async def collect(ws, name):
            while len(seen[name]) < 2:
                m = json.loads(await asyncio.wait_for(ws.recv(), HANG))
                if m["type"] == "newMessagesForClient":
                    for msg in m["payload"]:
                        int(msg["messageId"])      # what DSatter's client does
                        seen[name].add(msg["text"])
        await asyncio.gather(collect(sec, "sec"), collect(plain, "plain"))
        await sec.close()
        await plain.close()
        return seen
    seen = asyncio.run(go())
    assert seen == {"sec": {"over TLS", "in the clear"}, "plain": {"over TLS", "in the clear"}}
    # Status over https too.
    with urllib.request.urlopen(f"https://127.0.0.1:{a.client_port}/healthz",
                                context=client_ctx(cert), timeout=HANG) as r:
        assert json.loads(r.read()) == {"status": "ok"}


def test_tls_only_refuses_plain_clients_with_a_reason(logdir, procs, cert):
    d, (a,) = tls_cluster(logdir, procs, cert, 1, "--tls-only")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{a.client_port}/healthz", timeout=HANG)
    assert e.value.code == 400
    assert "TLS only" in json.loads(e.value.read())["error"]

    async def go():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(f"ws://127.0.0.1:{a.client_port}/")
        assert e.value.status_code == 400
        async with websockets.connect(f"wss://127.0.0.1:{a.client_port}/",
                                      ssl=client_ctx(cert), server_hostname="localhost") as ws:
            await ws.send(new_message("only over TLS"))
            m = json.loads(await asyncio.wait_for(ws.recv(), HANG))
            assert m["payload"][0]["text"] == "only over TLS"
    asyncio.run(go())
    with urllib.request.urlopen(f"https://127.0.0.1:{a.client_port}/api/status",
                                context=client_ctx(cert), timeout=HANG) as r:
        assert json.loads(r.read())["id"] == a.id


@pytest.mark.parametrize("args,code,says", [
    (("--tls-cert", "CERT"), 64, "--tls-cert and --tls-key go together"),
    (("--tls-only",), 64, "--tls-only needs a certificate"),
    (("--peer-tls",), 64, "--peer-tls needs a certificate"),
    (("--tls-cert", "/nonexistent.pem", "--tls-key", "KEY"), 78,
     "cannot load the TLS certificate /nonexistent.pem"),
    (("--tls-cert", "KEY", "--tls-key", "KEY"), 78, "cannot load the TLS certificate"),
])
def test_tls_options_are_checked_at_start(logdir, procs, cert, args, code, says):
    d = Discovery(logdir)
    procs.append(d)
    args = [a.replace("CERT", cert[0]).replace("KEY", cert[1]) for a in args]
    secret = os.path.join(logdir, "s")
    with open(secret, "w") as f:
        f.write("x" * 32)
    p = subprocess.run([os.path.join(BIN_DIR, "node"), "--discovery", d.url, "--listen",
                        "127.0.0.1", "--data-dir", os.path.join(logdir, "n"),
                        "--cluster-secret-file", secret, *args],
                       capture_output=True, text=True, timeout=HANG)
    assert p.returncode == code, p.stderr
    assert says in p.stderr


def test_nodes_that_disagree_on_peer_tls_link_nothing_and_say_why(logdir, procs, cert):
    d = Discovery(logdir)
    procs.append(d)
    a = Node(d, logdir, extra=tls_opts(cert, "--peer-tls"))
    procs.append(a)
    b = Node(d, logdir, extra=tls_opts(cert))
    procs.append(b)
    wait_until(lambda: "it speaks plain TCP and this node requires TLS" in a.log(), HANG,
               "a to refuse b's plain dial")
    wait_until(lambda: "it speaks TLS and this node does not" in b.log(), HANG,
               "b to refuse a's TLS dial")
    assert "--peer-tls" in a.log() and "--peer-tls" in b.log()
    assert a.peers_up() == [] and b.peers_up() == []
    assert a.status()["linksUnauthenticated"] > 0 and b.status()["linksUnauthenticated"] > 0


def point_discovery_at(d, nd, port):
    """Logs in to discovery as nd (its id and password, from its data dir)
    with port as its sync port: who dials nd now dials port."""
    with open(os.path.join(nd.data_dir, "node.json")) as f:
        ident = json.load(f)
    status, body = http_json(d.url + "/api/nodes/active/login", "POST",
                             {"id": ident["id"], "password": ident["password"],
                              "syncport": port, "clientport": nd.client_port})
    assert status == 200, body


@pytest.mark.parametrize("tls", [False, True])
def test_a_relay_in_the_middle_gets_a_link_only_without_tls(logdir, procs, cert, tls):
    """b (the lower id) dials a through a relay. A plain TCP forwarder is
    transparent: the proofs go through and the link comes up, which shows
    the relay is on the path. A relay that terminates TLS on both sides
    sees two TLS sessions; the proofs are bound to each, so b refuses a's
    proof and no link goes through it."""
    extra = tls_opts(cert, "--peer-tls") if tls else ()
    d = Discovery(logdir)
    procs.append(d)
    b = Node(d, logdir, extra=extra)
    procs.append(b)
    a = Node(d, logdir, extra=extra)
    procs.append(a)
    assert b.id < a.id   # at a, b's dial wins a crossing: it reaches the proofs
    wait_mesh([a, b])
    b.stop()
    wait_until(lambda: a.peers_up() == [], HANG, "a to see b gone")
    relay = Relay(a.sync_port, cert if tls else None)
    try:
        point_discovery_at(d, a, relay.port)
        b.restart()
        # b's own dial through the relay, not a's direct dial to b (which b
        # may take once it has refused the relayed link).
        through = f"link to node {a.id} up (dialled, 127.0.0.1:{relay.port},"
        if not tls:
            wait_until(lambda: through in b.log(), HANG,
                       "b's link to a through the forwarder to come up")
            return
        want = f"to 127.0.0.1:{relay.port} (wrong cluster secret)"
        wait_until(lambda: want in b.log(), HANG, "b to refuse a's proof through the relay")
        assert relay.connections >= 1
        assert through not in b.log()
    finally:
        relay.close()
