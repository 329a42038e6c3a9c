"""End-to-end tests of --log-format json (common/log.c): discovery and
nodes started with it (or with DCHAT_LOG_FORMAT=json) write nothing on
stderr but JSON objects, one per line, each with an ISO 8601 UTC time, a
level, the program, the node's id once it has one, and the message, from
start to SIGTERM; a message carrying a path with a quote, a backslash, a
tab and a byte that is not UTF-8 comes back intact (the byte as U+FFFD);
--log-level filters as in text; and a bad value, on the command line or
in the environment, is refused at start with exit 64 and what is
accepted."""

import json
import os
import re
import subprocess

import pytest

from cluster import BIN_DIR, Discovery, Node, wait_mesh

HANG = 30  # seconds: only a guard against hangs
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LEVELS = {"debug", "info", "warn", "error"}


def json_lines(proc, program):
    """Every line of proc's stderr, each parsed with json.loads (which fails
    the test on the first line that is not one JSON object), checked field by
    field; returns the objects."""
    with open(proc.err_path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # strict: the log must be valid UTF-8
    assert text.endswith("\n"), text[-200:]
    lines = text.split("\n")[:-1]
    assert lines, f"{proc.name} logged nothing"
    out = []
    for line in lines:
        try:
            o = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"{proc.name}: not a JSON line ({e}): {line!r}")
        assert isinstance(o, dict), line
        assert set(o) in ({"time", "level", "program", "msg"},
                          {"time", "level", "program", "node_id", "msg"}), line
        assert TIME_RE.match(o["time"]), line
        assert o["level"] in LEVELS, line
        assert o["program"] == program, line
        assert isinstance(o["msg"], str) and o["msg"], line
        out.append(o)
    return out


def test_json_logs_from_start_to_stop(logdir, procs, monkeypatch):
    d = Discovery(logdir, extra=("--log-format", "json"))
    procs.append(d)
    # A data dir whose path the node logs when it loads its identity: a
    # quote, a backslash, a tab and the byte 0xff (not UTF-8; Python passes
    # it through as a surrogate escape).
    weird = os.path.join(logdir, 'n"q\\b\tx\udcff')
    a = Node(d, logdir, name="a", data_dir=weird,
             extra=("--log-format", "json", "--log-level", "debug"))
    procs.append(a)
    monkeypatch.setenv("DCHAT_LOG_FORMAT", "json")  # b: from the environment
    b = Node(d, logdir, name="b")
    procs.append(b)
    monkeypatch.delenv("DCHAT_LOG_FORMAT")
    wait_mesh([a, b])
    a.stop()
    a.restart()  # now it loads its identity from the weird path
    wait_mesh([a, b])
    for p in (a, b, d):
        p.stop()

    for node, other in ((a, b), (b, a)):
        objs = json_lines(node, "node")
        # one run per start, each ending with "stopped" (a was started twice)
        runs, cur = [], []
        for o in objs:
            cur.append(o)
            if o["msg"] == "stopped":
                runs.append(cur)
                cur = []
        assert cur == [] and len(runs) == (2 if node is a else 1), objs
        for run_objs in runs:
            # no id until the node has one, then always its own
            ids = [o.get("node_id") for o in run_objs]
            first = next(i for i, v in enumerate(ids) if v is not None)
            assert ids[first:] == [node.id] * (len(ids) - first), ids
            assert any(o["msg"].startswith(f"link to node {other.id} up")
                       for o in run_objs), run_objs
    a_objs = json_lines(a, "node")
    assert any(o["level"] == "debug" for o in a_objs)        # --log-level debug
    assert not any(o["level"] == "debug" for o in json_lines(b, "node"))  # info
    want = f"loaded identity from {weird[:-1]}\ufffd/node.json: node id {a.id}"
    loaded = [o for o in a_objs if o["msg"].startswith("loaded identity from ")]
    assert [o["msg"] for o in loaded] == [want], loaded
    assert loaded[0]["node_id"] == a.id
    with open(a.err_path, "rb") as f:   # escaped on the wire, not only decoded
        assert b'n\\"q\\\\b\\tx\xef\xbf\xbd/node.json' in f.read()

    d_objs = json_lines(d, "discovery")
    assert all("node_id" not in o for o in d_objs)
    assert any(o["msg"].startswith("listening on ") for o in d_objs), d_objs


def run(binary, *args, env=None):
    e = dict(os.environ)
    e.pop("DCHAT_LOG_FORMAT", None)
    e.update(env or {})
    return subprocess.run([os.path.join(BIN_DIR, binary), *args], capture_output=True,
                          text=True, timeout=HANG, env=e)


@pytest.mark.parametrize("binary", ["node", "discovery", "bench"])
def test_a_bad_log_format_is_refused_at_start(binary, logdir):
    base = ["--data-dir", os.path.join(logdir, "d")] if binary != "bench" else []
    r = run(binary, *base, "--insecure" if binary != "bench" else "--max=10",
            "--log-format", "xml")
    assert r.returncode == 64, r
    assert r.stderr == (f"{binary}: --log-format xml: expected text or json; "
                        f"see {binary} --help\n"), r.stderr
    assert r.stdout == ""
    r = run(binary, *base, env={"DCHAT_LOG_FORMAT": "logfmt"})
    assert r.returncode == 64, r
    assert r.stderr == (f"{binary}: --log-format logfmt: expected text or json "
                        f"(from DCHAT_LOG_FORMAT); see {binary} --help\n"), r.stderr
    r = run(binary, "--help")
    assert r.returncode == 0
    assert "--log-format FORMAT" in r.stdout and "[env DCHAT_LOG_FORMAT]" in r.stdout
