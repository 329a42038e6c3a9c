"""The container files, checked without a Docker engine: in compose.yaml and
in the Swarm stack deploy/stack.yaml every node announces DCHAT_PUBLIC_HOST
with the published sides of its client and sync ports (a value the node's
own option parser takes, and that Compose refuses to leave unset); the
stack runs one image, never built per service, on an overlay network, with
a named volume per node, nodes healthy on GET /readyz, rolling stop-first
updates, a stop grace period that covers the drain, and the cluster secret
as a Swarm secret; docker-compose accepts the stack in the v3 format that
docker stack deploy reads; and the Dockerfile takes nothing from outside
Debian 12."""

import os
import re
import subprocess

import pytest
import yaml

from cluster import BIN_DIR, REPO, compose_command

COMPOSE = os.path.join(REPO, "compose.yaml")
STACK = os.path.join(REPO, "deploy", "stack.yaml")
DOCKERFILE = os.path.join(REPO, "Dockerfile")
NODES = ("node1", "node2", "node3")
SECRET_PATH = "/run/secrets/dchat_cluster_secret"
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

@pytest.mark.parametrize("path", [COMPOSE, STACK])
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


@pytest.mark.parametrize("path", [COMPOSE, STACK])
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


# --- the Swarm stack ----------------------------------------------------------

def test_the_stack_is_one_image_on_an_overlay_network_with_a_volume_per_node():
    stack = load(STACK)
    assert str(stack["version"]).startswith("3."), "docker stack deploy reads the v3 format"
    services = stack["services"]
    assert set(services) == {"discovery", *NODES}
    # one image, built beforehand (docker build -t dchat .), never per service
    assert {s["image"] for s in services.values()} == {"${DCHAT_IMAGE:-dchat:latest}"}
    assert not any("build" in s for s in services.values())
    # one overlay network, every service on it
    (net_name, net), = stack["networks"].items()
    assert net["driver"] == "overlay"
    for name, s in services.items():
        assert s["networks"] == [net_name], name
    # a named volume of its own on /data for every service
    volumes = {}
    for name, s in services.items():
        (mount,) = s["volumes"]
        source, target = mount.split(":")
        assert target == "/data" and source in stack["volumes"], (name, mount)
        volumes[name] = source
    assert len(set(volumes.values())) == len(services), volumes


def test_stack_nodes_are_healthy_when_ready_and_update_one_at_a_time_stop_first():
    services = load(STACK)["services"]
    for name, s in services.items():
        deploy = s["deploy"]
        assert deploy["replicas"] == 1, name
        assert deploy["update_config"]["parallelism"] == 1, name
        assert deploy["update_config"]["order"] == "stop-first", name
        assert deploy["rollback_config"]["order"] == "stop-first", name
        assert deploy["restart_policy"]["condition"] == "any", name
    for name in NODES:
        s = services[name]
        port = s["environment"]["NODE_CLIENT_PORT"]
        test = s["healthcheck"]["test"]
        assert f"http://127.0.0.1:{port}/readyz" in test, (name, test)
        drain = int(s["environment"]["NODE_DRAIN_SECONDS"])
        grace = int(str(s["stop_grace_period"]).rstrip("s"))
        assert grace >= drain + 5, (name, drain, grace)  # the drain and the 5 s limit
    # the same drain as compose.yaml's nodes
    compose = load(COMPOSE)["services"]
    assert {compose[n]["environment"]["NODE_DRAIN_SECONDS"] for n in NODES} == \
        {services[n]["environment"]["NODE_DRAIN_SECONDS"] for n in NODES}


def test_stack_services_read_the_cluster_secret_from_a_swarm_secret():
    stack = load(STACK)
    secret = stack["secrets"]["dchat_cluster_secret"]
    assert secret == {"external": True}  # made with docker secret create, from no file
    for name, s in stack["services"].items():
        assert s["secrets"] == ["dchat_cluster_secret"], name
        env = s.get("environment", {})
        assert "DCHAT_CLUSTER_SECRET" not in env, f"{name} has the secret in its environment"
        given = env.get("NODE_CLUSTER_SECRET_FILE")
        command = s.get("command", [])
        if "--cluster-secret-file" in command:
            given = command[command.index("--cluster-secret-file") + 1]
        assert given == SECRET_PATH, (name, given)


def test_docker_compose_accepts_the_stack_and_its_image_variable():
    rc, out, err = config(STACK, DCHAT_PUBLIC_HOST="192.0.2.10")
    assert rc == 0, err
    stack = yaml.safe_load(out)
    assert {s["image"] for s in stack["services"].values()} == {"dchat:latest"}
    assert stack["networks"]["dchat"]["driver"] == "overlay"
    for name in NODES:
        assert stack["services"][name]["healthcheck"]["retries"] >= 1
    rc, out, err = config(STACK, DCHAT_PUBLIC_HOST="192.0.2.10",
                          DCHAT_IMAGE="registry.example/dchat:7")
    assert rc == 0, err
    assert {s["image"] for s in yaml.safe_load(out)["services"].values()} == \
        {"registry.example/dchat:7"}


# --- the Dockerfile -----------------------------------------------------------

# Commands that fetch or install from outside Debian's archive.
FETCHERS = {"curl", "wget", "pip", "pip3", "pipx", "npm", "npx", "yarn", "gem", "cargo", "go",
            "git", "add-apt-repository", "dpkg", "snap", "rustup"}


def instructions(text):
    """(INSTRUCTION, arguments) of a Dockerfile in order: continuation
    lines joined, comments and blank lines dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not cur and not line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        word, _, rest = (cur + line).strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def outside_debian(text):
    """What a Dockerfile takes from outside Debian 12's archive, one line
    each: a base image that is not debian:12, ADD (it fetches URLs), COPY
    --from an image rather than a stage, and RUN commands that download
    (curl, wget, pip, npm, git ...), install a .deb or change apt's sources."""
    problems, stages = [], set()
    for ins, args in instructions(text):
        if ins == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            if words[0] not in stages and \
                    not re.fullmatch(r"debian:12(-slim)?(@sha256:[0-9a-f]{64})?", words[0]):
                problems.append(f"FROM {words[0]}: not Debian 12")
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif ins == "ADD":
            problems.append(f"ADD {args}: ADD fetches URLs; COPY local files")
        elif ins == "COPY":
            m = re.search(r"--from=(\S+)", args)
            if m and m.group(1) not in stages:
                problems.append(f"COPY --from={m.group(1)}: not a stage of this file")
        elif ins == "RUN":
            if "/etc/apt" in args or "sources.list" in args:
                problems.append(f"RUN {args}: changes where apt installs from")
            for cmd in re.split(r"&&|\|\||[;|]", args):
                words = cmd.split()
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
                    words.pop(0)  # VAR=value before the command
                if not words:
                    continue
                prog = os.path.basename(words[0])
                if prog in FETCHERS or re.search(r"-m\s+pip\b", cmd):
                    problems.append(f"RUN {cmd.strip()}: fetches from outside Debian")
                elif prog in ("apt-get", "apt") and "install" in words and \
                        any("/" in w or w.endswith(".deb") for w in words):
                    problems.append(f"RUN {cmd.strip()}: installs a file, not a Debian package")
    return problems


@pytest.mark.parametrize("text", [
    "FROM alpine:3.19\n",
    "FROM debian:13\n",
    "FROM ubuntu:22.04 AS build\nFROM debian:12-slim\n",
    "FROM debian:12-slim\nADD https://example.com/x.tar.gz /x\n",
    "FROM debian:12-slim\nCOPY --from=golang:1.22 /usr/local/go /go\n",
    "FROM debian:12-slim\nRUN apt-get update && \\\n    curl -fsSL https://x.example/i.sh | sh\n",
    "FROM debian:12-slim\nRUN wget -qO- https://x.example/a\n",
    "FROM debian:12-slim\nRUN pip install requests\n",
    "FROM debian:12-slim\nRUN python3 -m pip install requests\n",
    "FROM debian:12-slim\nRUN cd /x; npm install\n",
    "FROM debian:12-slim\nRUN GIT_TERMINAL_PROMPT=0 git clone https://x.example/r\n",
    "FROM debian:12-slim\nRUN echo 'deb http://x.example/ s main' > /etc/apt/sources.list.d/x.list\n",
    "FROM debian:12-slim\nRUN apt-get install -y ./thing.deb\n",
])
def test_the_dockerfile_check_catches_what_comes_from_outside_debian(text):
    assert outside_debian(text), text


def test_the_dockerfile_takes_nothing_from_outside_debian():
    with open(DOCKERFILE) as f:
        text = f.read()
    assert outside_debian(text) == []
    # it did read the file: two Debian stages, packages from apt
    found = instructions(text)
    assert [a for i, a in found if i == "FROM"] == ["debian:12-slim AS build", "debian:12-slim"]
    assert sum("apt-get install" in a for i, a in found if i == "RUN") == 2
