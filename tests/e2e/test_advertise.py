"""--advertise HOST[:CLIENTPORT[:SYNCPORT]] end to end: what a node announces
is what discovery hands to clients (/api/clients) and to peers
(/api/nodes/active), the mesh forms through announced ports that lead to
the node (cluster.Relay standing in for docker's -p PUBLISHED:TARGET), a
node still knows its own entry when it announces other ports, bare and
bracketed IPv6 hosts are announced as bare addresses, and bad values stop
the node at start with exit 64 and a message that says what to write."""

import asyncio
import json
import os
import subprocess

import pytest
import websockets

from cluster import (BIN_DIR, Discovery, Node, Relay, http_json, new_message, wait_mesh,
                     wait_until)

HANG = 20  # seconds: only a guard against hangs


@pytest.fixture
def relays():
    started = []
    yield started
    for r in started:
        r.close()


def active_entry(disc, node_id):
    status, body = http_json(disc.url + "/api/nodes/active")
    assert status == 200
    return next((e for e in body["activeNodes"] if e["id"] == node_id), None)


def clients_list(disc):
    status, body = http_json(disc.url + "/api/clients")
    assert status == 200
    return body["activeNodes"]


def readyz(node):
    status, _ = http_json(node.url + "/readyz")
    return status


async def chat_through(entries, text):
    """What a DSatter client does with /api/clients: ws://address:clientport/
    for each entry; one sends, every one must receive the text."""
    conns = []
    for e in entries:
        host = f"[{e['address']}]" if ":" in e["address"] else e["address"]
        ws = await websockets.connect(f"ws://{host}:{e['clientport']}/")
        await ws.send("Client connected")
        conns.append(ws)
    await conns[0].send(new_message(text))
    for ws in conns:
        frame = json.loads(await asyncio.wait_for(ws.recv(), HANG))
        assert frame["type"] == "newMessagesForClient", frame
        assert [m["text"] for m in frame["payload"]] == [text]
    for ws in conns:
        await ws.close()


def test_nodes_behind_port_forwards_announce_the_published_ports_and_mesh_through_them(
        logdir, procs, relays):
    d = Discovery(logdir)
    procs.append(d)
    nodes, published = [], {}
    for _ in range(2):
        client_fw, sync_fw = Relay(), Relay()  # targets set once the node runs
        relays += [client_fw, sync_fw]
        nd = Node(d, logdir, extra=["--advertise",
                                    f"127.0.0.1:{client_fw.port}:{sync_fw.port}"])
        procs.append(nd)
        client_fw.set_target(nd.client_port)
        sync_fw.set_target(nd.sync_port)
        nodes.append(nd)
        published[nd.id] = (client_fw, sync_fw)

    # Discovery hands out the published ports, not the bound ones.
    for nd in nodes:
        client_fw, sync_fw = published[nd.id]
        entry = wait_until(lambda: active_entry(d, nd.id), HANG, f"{nd.name} on the list")
        assert entry == {"id": nd.id, "address": "127.0.0.1",
                         "clientport": client_fw.port, "syncport": sync_fw.port}
        assert (client_fw.port, sync_fw.port) != (nd.client_port, nd.sync_port)
    clients = clients_list(d)
    assert all(list(e) == ["address", "clientport"] for e in clients), clients
    assert sorted(e["clientport"] for e in clients) == \
        sorted(published[nd.id][0].port for nd in nodes)

    # The mesh forms, dialled through the published sync ports: the peers
    # learnt those ports, and the link came through a forward.
    wait_mesh(nodes, HANG)
    a, b = nodes
    # (a link accepted before the list named its peer shows no ports yet)
    peer = wait_until(lambda: next((p for p in a.status()["peers"]
                                    if p["id"] == b.id and p["listed"]), None), HANG,
                      "b listed at a")
    assert (peer["syncport"], peer["clientport"]) == \
        (published[b.id][1].port, published[b.id][0].port)
    dialled = b if peer["direction"] == "dialled" else a
    assert published[dialled.id][1].connections >= 1
    for nd in nodes:
        wait_until(lambda: readyz(nd) == 200, HANG, f"{nd.name} to be ready")

    # Clients that follow /api/clients reach both nodes through the
    # published client ports, and a message goes from one to the other.
    asyncio.run(asyncio.wait_for(chat_through(clients, "via the published ports"), 60))
    for nd in nodes:
        assert published[nd.id][0].connections >= 1, nd.name


def test_announced_ports_are_reported_as_given_and_the_node_knows_its_own_entry(
        logdir, procs):
    """Ports nobody listens on (the bounds, 1 and 65535) are announced as
    given: the node cannot check what a port mapping leads to. It still
    takes the list entry with its id, whatever the ports, for itself."""
    d = Discovery(logdir)
    procs.append(d)
    nd = Node(d, logdir, extra=["--advertise", "127.0.0.1:1:65535"])
    procs.append(nd)
    entry = wait_until(lambda: active_entry(d, nd.id), HANG, "the node on the list")
    assert entry == {"id": nd.id, "address": "127.0.0.1", "clientport": 1, "syncport": 65535}
    assert clients_list(d) == [{"address": "127.0.0.1", "clientport": 1}]
    # Not a peer of itself: no link to dial, nothing missing for /readyz.
    wait_until(lambda: nd.status()["discovery"]["active"], HANG, "the node to log in")
    assert nd.status()["peers"] == []
    assert readyz(nd) == 200


@pytest.mark.parametrize("advertise, client, sync", [
    ("::1", None, None),            # a bare IPv6 address: the bound ports
    ("[::1]:4001", 4001, None),     # the sync port as bound
    ("[2001:db8::7]:4001:5001", 4001, 5001),
])
def test_ipv6_hosts_are_announced_bare(logdir, procs, advertise, client, sync):
    d = Discovery(logdir)
    procs.append(d)
    nd = Node(d, logdir, extra=["--advertise", advertise])
    procs.append(nd)
    entry = wait_until(lambda: active_entry(d, nd.id), HANG, "the node on the list")
    host = advertise.split("]")[0].lstrip("[")
    assert entry == {"id": nd.id, "address": host,
                     "clientport": client or nd.client_port, "syncport": sync or nd.sync_port}
    assert clients_list(d) == [{"address": host, "clientport": client or nd.client_port}]


@pytest.mark.parametrize("value, says", [
    ("", "HOST is empty"),
    (":9001:9101", "HOST is empty"),
    ("127.0.0.1:0", "CLIENTPORT 0 is out of range; give a port from 1 to 65535"),
    ("127.0.0.1:9001:65536", "SYNCPORT 65536 is out of range"),
    ("127.0.0.1:9001:x", "SYNCPORT 'x' is not a port number"),
    ("127.0.0.1:1:2:3", "in brackets: [2001:db8::1]:9001:9101"),
    ("2001:db8::1:9001:x", "in brackets"),
    ("[1.2.3.4]:9001", "brackets are for IPv6 only"),
    ("[::1]9001", "expected ':' and a port after ']'"),
    ("node1:9001:9101", "is a name; peers dial the announced address and do not resolve "
                        "names: give its IP address"),
    ("a" * 64, "HOST has 64 bytes"),
    ("http://127.0.0.1:9001", "is a URL"),
])
def test_bad_values_stop_the_node_with_64_saying_what_to_write(value, says):
    node = os.path.join(BIN_DIR, "node")
    p = subprocess.run([node, "--advertise", value], capture_output=True, text=True,
                       timeout=HANG)
    assert p.returncode == 64, p.stderr  # EX_USAGE
    assert "--advertise" in p.stderr and says in p.stderr, p.stderr
    if value:  # an empty variable is unset, like every NODE_* variable
        p = subprocess.run([node], capture_output=True, text=True, timeout=HANG,
                           env=dict(os.environ, NODE_ADVERTISE=value))
        assert p.returncode == 64, p.stderr
        assert says in p.stderr and "(from NODE_ADVERTISE)" in p.stderr, p.stderr
