"""The container files, checked without a Docker engine: in compose.yaml
every node announces DCHAT_PUBLIC_HOST with the published sides of its
client and sync ports, a value the node's own option parser takes, and
that Compose refuses to leave unset."""

import os
import re
import subprocess

import pytest
import yaml

from cluster import BIN_DIR, REPO, compose_command

COMPOSE = os.path.join(REPO, "compose.yaml")
NODES = ("node1", "node2", "node3")
ADVERTISE = re.compile(r"\$\{DCHAT_PUBLIC_HOST:\?[^}]+\}:(\d+):(\d+)")


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def published(service, target):
    """The port a service publishes for its container port target (short
    "PUBLISHED:TARGET" or long syntax), or None."""
    for p in service.get("ports", []):
        if isinstance(p, dict):
            pub, tgt = p.get("published"), p["target"]
        else:
            *_, pub, tgt = str(p).split(":")
        if int(str(tgt).split("/")[0]) == target:
            return int(pub) if pub is not None else None
    return None


def config(path, **env):
    """docker-compose config of path with env; (exit status, stdout, stderr)."""
    cmd = compose_command()
    p = subprocess.run([*cmd, "-f", path, "config"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, DCHAT_CLUSTER_SECRET="config-check",
                                             **env))
    return p.returncode, p.stdout, p.stderr


# --- what the nodes announce ------------------------------------------------

@pytest.mark.parametrize("path", [COMPOSE])
def test_every_node_announces_the_published_sides_of_its_ports(path):
    services = load(path)["services"]
    seen = set()
    for name in NODES:
        s = services[name]
        env = s["environment"]
        client, sync = int(env["NODE_CLIENT_PORT"]), int(env["NODE_SYNC_PORT"])
        pub = (published(s, client), published(s, sync))
        assert None not in pub, f"{name} publishes not both its client and its sync port"
        m = ADVERTISE.fullmatch(env["NODE_ADVERTISE"])
        assert m, f"{name}: NODE_ADVERTISE is not ${{DCHAT_PUBLIC_HOST:?...}}:CLIENT:SYNC"
        assert (int(m[1]), int(m[2])) == pub, (name, env["NODE_ADVERTISE"], pub)
        assert not seen & set(pub), f"{name} publishes a port another node publishes"
        seen |= set(pub)


@pytest.mark.parametrize("path", [COMPOSE])
@pytest.mark.parametrize("host", ["192.0.2.10", "[2001:db8::10]"])
def test_compose_requires_the_public_host_and_the_node_takes_what_it_makes(path, host):
    rc, _, err = config(path)
    assert rc != 0 and "set DCHAT_PUBLIC_HOST to an IP address" in err, err
    rc, out, err = config(path, DCHAT_PUBLIC_HOST=host)
    assert rc == 0, err
    services = yaml.safe_load(out)["services"]
    for name in NODES:
        value = services[name]["environment"]["NODE_ADVERTISE"]
        assert value.startswith(host + ":"), value
        # The node's own parser: the variable is read before --version exits.
        p = subprocess.run([os.path.join(BIN_DIR, "node"), "--version"], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, NODE_ADVERTISE=value))
        assert p.returncode == 0, f"{name}: NODE_ADVERTISE={value}: {p.stderr}"
