"""End-to-end tests of scripts/plot.py on the CSV of real benches: two
runs of `bench --format csv` against 3 nodes become valid PNGs of the
deliveries/s and the latency per round (PNG signature, IHDR size, a
plausible file size), with the table it prints giving the median, min and
max of the two runs as the CSVs hold them; the same runs named as two
systems (dchat=, nats=) add the comparison, with the ratio of the
medians; a paced run (bench --rate) gives its own plot; and a missing
file, a CSV with other columns, a header without rows, a field that is
not a number, a cut row and no arguments each give a clear message, a
distinct non-zero status and no PNG. The comparison on real NATS runs is
in test_compare.py."""

import csv
import importlib.util
import os
import statistics
import struct
import subprocess
import sys

import pytest

from cluster import BIN_DIR, REPO, start_cluster

HANG = 120  # seconds: only a guard against hangs
PLOT = os.path.join(REPO, "scripts", "plot.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def plot(*args, cwd=None):
    return subprocess.run([sys.executable, PLOT, *map(str, args)], capture_output=True,
                          text=True, timeout=HANG, cwd=cwd)


def png_size(path):
    """(width, height) from a PNG's IHDR, after checking the signature."""
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == PNG_SIGNATURE, f"{path}: not a PNG: {head[:8]!r}"
    assert head[12:16] == b"IHDR", f"{path}: no IHDR first"
    return struct.unpack(">II", head[16:24])


def check_png(path, size):
    assert os.path.isfile(path), f"{path} was not written"
    assert png_size(path) == size
    # a drawn plot (axes, lines, text), not an empty canvas of that size
    assert os.path.getsize(path) > 15000, os.path.getsize(path)


def table_rows(stdout, first):
    """The rows of the printed table whose first column is first, split."""
    return [line.split() for line in stdout.splitlines() if line.split()[:1] == [first]]


def bench_csv(d, path, *args):
    p = subprocess.run([os.path.join(BIN_DIR, "bench"), "--discovery", d.url, "--senders", "3",
                        "--format", "csv", *args], capture_output=True, text=True,
                       timeout=HANG)
    assert p.returncode == 0, p.stderr
    path.write_text(p.stdout)
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def missing_matplotlib():
    """None when plot.py can draw (it runs on this Python), else why not."""
    if importlib.util.find_spec("matplotlib") is not None:
        return None
    return "python3-matplotlib is not installed (sh scripts/deps.sh plot installs it)"


def test_plots_of_real_benches(logdir, procs, tmp_path, missing_matplotlib):
    if missing_matplotlib:
        pytest.skip(missing_matplotlib)
    d, nodes = start_cluster(logdir, procs, 3)
    runs = [bench_csv(d, tmp_path / f"run{i}.csv", "--max", "1000") for i in (1, 2)]
    paced = bench_csv(d, tmp_path / "paced.csv", "--rate", "300", "--duration", "1")

    # two runs of one system
    out = tmp_path / "plots"
    p = plot(tmp_path / "run1.csv", tmp_path / "run2.csv", "-o", out)
    assert p.returncode == 0, p.stderr
    check_png(out / "deliveries-per-round.png", (800, 500))
    check_png(out / "latency-per-round.png", (800, 500))
    assert sorted(os.listdir(out)) == ["deliveries-per-round.png", "latency-per-round.png"]
    rows = table_rows(p.stdout, "dchat")
    assert [int(r[1]) for r in rows] == [10, 100, 1000]
    for r, a, b in zip(rows, *runs):
        rates = [float(a["deliveries_per_s"]), float(b["deliveries_per_s"])]
        assert int(r[2]) == 2                                       # runs
        assert [int(x) for x in r[3:6]] == [round(statistics.median(rates)), round(min(rates)),
                                            round(max(rates))]
        p50 = statistics.median([float(a["p50_ms"]), float(b["p50_ms"])])
        assert float(r[6]) == pytest.approx(p50, abs=0.006)

    # the same CSVs as two systems: the comparison too
    out = tmp_path / "vs"
    p = plot(f"dchat={tmp_path / 'run1.csv'}", f"nats={tmp_path / 'run2.csv'}", "-o", out,
             "--prefix", "x-")
    assert p.returncode == 0, p.stderr
    check_png(out / "x-dchat-vs-nats.png", (800, 800))
    check_png(out / "x-deliveries-per-round.png", (800, 500))
    ratios = [line.split() for line in p.stdout.splitlines()
              if line.split()[:1] in (["10"], ["100"], ["1000"]) and len(line.split()) == 6]
    assert [int(r[0]) for r in ratios] == [10, 100, 1000], p.stdout
    for r, a, b in zip(ratios, *runs):
        want = float(a["deliveries_per_s"]) / float(b["deliveries_per_s"])
        assert float(r[5]) == pytest.approx(want, abs=0.006)

    # a paced run
    out = tmp_path / "paced"
    p = plot(tmp_path / "paced.csv", "-o", out)
    assert p.returncode == 0, p.stderr
    check_png(out / "latency-paced.png", (800, 500))
    row = table_rows(p.stdout, "dchat")
    assert len(row) == 1 and int(row[0][1]) == int(float(paced[0]["offered_deliveries_per_s"]))

    # the default output directory is the first CSV's
    p = plot(tmp_path / "run1.csv")
    assert p.returncode == 0, p.stderr
    check_png(tmp_path / "deliveries-per-round.png", (800, 500))


def test_bad_input_is_refused_clearly(tmp_path):
    good_header = ("messages,expected,received,total_s,send_s,deliveries_per_s,p50_ms,p99_ms,"
                   "max_ms,lost,duplicated,reordered,bench_cpu_pct")
    files = {
        "other.csv": "when,what\n1,2\n",
        "header.csv": good_header + "\n",
        "empty.csv": "",
        "nan.csv": good_header + "\n10,60,60,0.01,0.0,fast,1,2,3,0,0,0,5\n",
        "cut.csv": good_header + "\n10,60,60,0.01,0.0,6000,1,2,3,0,0,0,5\n100,600,60\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cases = [
        ([tmp_path / "nowhere.csv"], 66,
         f"plot: cannot read {tmp_path / 'nowhere.csv'}: No such file or directory"),
        ([tmp_path / "other.csv"], 65,
         f"plot: {tmp_path / 'other.csv'}: not a bench CSV: its header (when,what) lacks "
         "messages, expected, received, deliveries_per_s; expected the header of "
         "`bench --format csv` (messages,expected,received,"),
        ([tmp_path / "header.csv"], 65,
         f"plot: {tmp_path / 'header.csv'} has a header but no rows"),
        ([tmp_path / "empty.csv"], 65, f"plot: {tmp_path / 'empty.csv'} is empty; expected"),
        ([tmp_path / "nan.csv"], 65,
         f"plot: {tmp_path / 'nan.csv'} line 2: column deliveries_per_s: 'fast' is not a "
         "number"),
        ([tmp_path / "cut.csv"], 65,
         f"plot: {tmp_path / 'cut.csv'} line 3: 3 fields where the header has 13"),
        ([], 64, "plot: the following arguments are required: [SIDE=]CSV; see plot.py --help"),
    ]
    for args, status, message in cases:
        p = plot(*args, "-o", tmp_path / "out")
        assert p.returncode == status, (args, p.returncode, p.stderr)
        assert message in p.stderr, (message, p.stderr)
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_help_says_what_it_reads_and_writes():
    p = plot("--help")
    assert p.returncode == 0
    for word in ("[SIDE=]CSV", "--out-dir", "deliveries-per-round.png",
                 "latency-per-round.png", "dchat-vs-nats.png", "latency-paced.png"):
        assert word in p.stdout, word
