"""The monitoring files: the Grafana dashboard (monitoring/grafana/dchat.json)
parses as a dashboard model whose panels all have a unique id and the
provisioned Prometheus datasource, and every metric its expressions read is
one a live node or discovery exports on GET /metrics; the provisioning
files, the Prometheus config and compose.yaml's monitoring profile agree
with each other; docker-compose and promtool accept them where installed.
Grafana itself is not packaged in Debian; test_prometheus.py runs every
expression in a real Prometheus."""

import os
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml

import dashboard
from cluster import BIN_DIR, REPO, compose_command, start_cluster, wait_until

MONITORING = os.path.join(REPO, "monitoring")
PROMETHEUS_YML = os.path.join(MONITORING, "prometheus", "prometheus.yml")
PROVISIONING = os.path.join(MONITORING, "grafana", "provisioning")
COMPOSE = os.path.join(REPO, "compose.yaml")

# What issue 13 asks the dashboard to show, by the metrics that show it.
REQUIRED = {
    "throughput": {"dchat_messages_from_clients_total", "dchat_deliveries_total"},
    "clients": {"dchat_clients", "dchat_client_connects_total",
                "dchat_client_disconnects_total"},
    "queue bytes": {"dchat_queued_bytes"},
    "slow consumers": {"dchat_slow_consumer_closes_total", "dchat_backpressure_pauses_total"},
    "peer links": {"dchat_peer_links"},
    "anti-entropy": {"dchat_catchup_messages_sent_total", "dchat_catchup_messages_received_total",
                     "dchat_gaps_repaired_total"},
    "commit latency": {"dchat_history_commit_seconds_bucket"},
    "time in the node": {"dchat_message_in_node_seconds_bucket"},
    "CPU and RSS": {"process_cpu_seconds_total", "process_resident_memory_bytes"},
}


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def datasource():
    """The one provisioned datasource."""
    files = sorted(os.listdir(os.path.join(PROVISIONING, "datasources")))
    sources = [s for f in files
               for s in load_yaml(os.path.join(PROVISIONING, "datasources", f))["datasources"]]
    assert len(sources) == 1, sources
    return sources[0]


def used_metrics(dash):
    """{metric name: [where it is used]}."""
    used = {}
    for where, expr in dashboard.expressions(dash):
        names = dashboard.metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        for name in names:
            used.setdefault(name, []).append(where)
    return used


@pytest.mark.parametrize("expr, names", [
    ('sum(rate(dchat_deliveries_total{job="dchat-node", instance=~"$instance"}'
     '[$__rate_interval]))', {"dchat_deliveries_total"}),
    ("histogram_quantile(0.99, sum by (le, source) (rate(dchat_message_in_node_seconds_bucket"
     "[5m])))", {"dchat_message_in_node_seconds_bucket"}),
    ("sum(rate(a_sum[1m])) by (instance) / on (instance) sum(rate(a_count[1m])) by (instance)",
     {"a_sum", "a_count"}),
    ("time() - max(process_start_time_seconds offset 5m) > 1e3", {"process_start_time_seconds"}),
    ('label_values(dchat_clients{job="dchat-node", x=~"a,b"}, instance)', {"dchat_clients"}),
    ('max_over_time(up{a="sum(b)"}[1h:1s]) and ignoring(le) x:recorded:rate5m',
     {"up", "x:recorded:rate5m"}),
])
def test_metric_names_are_read_from_promql(expr, names):
    assert dashboard.metric_names(expr) == names


def test_the_dashboard_is_a_grafana_model_on_the_provisioned_datasource():
    dash = dashboard.load()
    assert dash["uid"] and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 39
    uid = datasource()["uid"]
    all_panels = dashboard.panels(dash)
    ids = [p.get("id") for p in all_panels]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(ids) == len(set(ids)), f"panel ids not unique: {sorted(ids)}"
    units = set()
    for p in all_panels:
        where = f"panel {p['id']} {p.get('title')!r}"
        assert p.get("title") and p.get("type") and set(p.get("gridPos", {})) >= \
            {"x", "y", "w", "h"}, where
        if p["type"] == "row":
            assert not p.get("targets"), where
            continue
        assert p.get("datasource") == {"type": "prometheus", "uid": uid}, where
        assert p["targets"], f"{where} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t.get("datasource") == p["datasource"], where
            assert t.get("expr"), where
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit") or \
            p.get("options", {}).get("yAxis", {}).get("unit")
        assert unit, f"{where} has no unit"
        units.add(unit)
    assert {"ops", "bytes", "s"} <= units
    # the commit latency as a heatmap of its buckets
    heat = [p for p in all_panels if p["type"] == "heatmap" and
            any("dchat_history_commit_seconds_bucket" in t["expr"] and t.get("format") == "heatmap"
                for t in p["targets"])]
    assert heat, "no heatmap of dchat_history_commit_seconds_bucket"
    # the templating variables have the datasource, and every one is used
    exprs = [e for _, e in dashboard.expressions(dash)]
    for v in dash["templating"]["list"]:
        assert v.get("datasource") == {"type": "prometheus", "uid": uid}, v["name"]
        assert any(f"${v['name']}" in e for e in exprs), f"variable {v['name']} unused"
    # what the issue asks for is there
    used = used_metrics(dash)
    for what, names in REQUIRED.items():
        assert names <= set(used), f"{what}: {sorted(names - set(used))} not in the dashboard"


def test_the_dashboard_selects_the_jobs_prometheus_yml_scrapes():
    jobs = {c["job_name"] for c in load_yaml(PROMETHEUS_YML)["scrape_configs"]}
    selected = set()
    for where, expr in dashboard.expressions(dashboard.load()):
        found = re.findall(r'\bjob\s*=\s*"([^"]*)"', expr)
        assert found, f"{where} selects no job: {expr}"
        selected |= set(found)
        assert set(found) <= jobs, f"{where}: job {found} is not in prometheus.yml ({jobs})"
    assert selected == jobs


def test_every_metric_in_the_dashboard_is_exported_by_a_live_process(logdir, procs):
    d, nodes = start_cluster(logdir, procs, 2)
    # traffic, so that families with labels or histograms have samples too
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--discovery", d.url, "--senders", "2",
                        "--max", "10", "--format", "csv"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    wait_until(lambda: nodes[0].status()["clients"] == 0, 10, "the bench's sockets to close")
    exported = set()
    for url in (d.url, nodes[0].url):
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            exported |= dashboard.exported_names(r.read().decode())
    assert "dchat_deliveries_total" in exported and "dchat_discovery_active_nodes" in exported
    used = used_metrics(dashboard.load())
    missing = {name: where for name, where in used.items() if name not in exported}
    assert not missing, "the dashboard reads metrics that neither a node nor discovery " \
        "exports:\n" + "\n".join(f"  {n}: {', '.join(w)}" for n, w in sorted(missing.items()))


def mounts(service):
    """{container path: (host path, read only)} of a compose service's bind
    mounts (short syntax, relative to the repository); named volumes left out."""
    out = {}
    for v in service.get("volumes", []):
        src, dst, *mode = v.split(":")
        if src.startswith("."):
            out[dst] = (os.path.normpath(os.path.join(REPO, src)), mode == ["ro"])
    return out


def test_the_monitoring_profile_loads_the_files_read_only_on_loopback():
    services = load_yaml(COMPOSE)["services"]
    for name in ("prometheus", "grafana"):
        s = services[name]
        assert s.get("profiles") == ["monitoring"], name
        for port in s["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for dst, (src, ro) in mounts(s).items():
            assert os.path.exists(src), f"{name} mounts {src}, which is missing"
            assert ro, f"{name} mounts {src} writable"
    # the cluster itself is in no profile: plain "up" still starts it
    for name in ("discovery", "node1", "node2", "node3"):
        assert "profiles" not in services[name], name

    # Prometheus reads the config it is given
    prom = services["prometheus"]
    config = [a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file=")]
    assert mounts(prom)[config[0]][0] == PROMETHEUS_YML

    # Grafana: provisioning where Grafana looks, the dashboard where the
    # provider reads, the datasource at the prometheus service
    graf = mounts(services["grafana"])
    assert graf["/etc/grafana/provisioning"][0] == PROVISIONING
    providers = [p for f in sorted(os.listdir(os.path.join(PROVISIONING, "dashboards")))
                 for p in load_yaml(os.path.join(PROVISIONING, "dashboards", f))["providers"]]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    path = providers[0]["options"]["path"]
    assert graf[path.rstrip("/") + "/dchat.json"][0] == dashboard.DASHBOARD
    ds = datasource()
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    # the scrape targets are the compose services on their ports
    targets = {t for c in load_yaml(PROMETHEUS_YML)["scrape_configs"]
               for sc in c["static_configs"] for t in sc["targets"]}
    assert targets == {"discovery:8080", "node1:9000", "node2:9000", "node3:9000"}
    assert "0.0.0.0:8080" in services["discovery"]["command"]
    assert services["node1"]["environment"]["NODE_CLIENT_PORT"] == "9000"


def test_the_image_is_built_once_and_runs_ready_nodes():
    """compose.yaml and the Dockerfile, without a Docker engine: one service
    builds the image and the others use it (four `build: .` built it four
    times), the build context leaves out local builds, run dirs, databases
    and .git, the image runs as a user with a default command, and a node
    is healthy when ready (/readyz), with time to drain when stopped."""
    services = load_yaml(COMPOSE)["services"]
    ours = {n: s for n, s in services.items() if s.get("image") == "dchat:latest"}
    assert set(ours) == {"discovery", "node1", "node2", "node3", "bench"}
    builders = [n for n, s in ours.items() if "build" in s]
    assert builders == ["discovery"], builders
    for n, s in ours.items():
        if n not in builders:
            assert s.get("pull_policy") == "never", n  # never fetched from a registry
    for n in ("node1", "node2", "node3"):
        s = services[n]
        assert "/readyz" in " ".join(s["healthcheck"]["test"]), n
        drain = int(s["environment"]["NODE_DRAIN_SECONDS"])
        grace = int(str(s["stop_grace_period"]).rstrip("s"))
        assert grace >= drain + 5, (n, drain, grace)  # the drain and the 5 s limit
    with open(os.path.join(REPO, ".dockerignore")) as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".git", "build", "run", "data", "cluster.secret"} <= ignored, ignored
    with open(os.path.join(REPO, "Dockerfile")) as f:
        docker = f.read()
    final = docker[docker.rindex("\nFROM "):]  # the image that runs
    assert re.search(r"^USER dchat$", final, re.M), "the image runs as root"
    assert re.search(r'^CMD \["dchat-node"', final, re.M), "no default command"


def test_docker_compose_accepts_the_file_with_and_without_the_profile():
    cmd = compose_command()
    env = dict(os.environ, DCHAT_CLUSTER_SECRET="compose-config-check",
               DCHAT_PUBLIC_HOST="192.0.2.10")
    for profile in ([], ["--profile", "monitoring"]):
        p = subprocess.run([*cmd, "-f", COMPOSE, *profile, "config", "-q"], cwd=REPO,
                           capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, f"{profile}: {p.stdout}{p.stderr}"
    # the normalised file: the monitoring services are in their profile
    p = subprocess.run([*cmd, "-f", COMPOSE, "--profile", "monitoring", "config"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    services = yaml.safe_load(p.stdout)["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]


def test_promtool_accepts_the_prometheus_config():
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus; not in make "
                    "test's dependencies because installing it starts a Prometheus service)")
    p = subprocess.run(["promtool", "check", "config", PROMETHEUS_YML], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout
