"""Draws the bench's CSV as PNG plots (matplotlib, Agg backend: no display
needed), and prints the figures it drew as a table.

usage: python3 scripts/plot.py [-o DIR] [--prefix TEXT] [SIDE=]CSV [[SIDE=]CSV ...]

Each CSV is one of:
  - the rounds of `bench --format csv` (one run per file): the system is
    SIDE= when given (e.g. nats=nats.csv), else dchat;
  - scripts/compare-nats.sh's runs.csv (side and run columns, then the
    bench's): several runs of both systems;
  - a paced run, `bench --rate R --format csv`, or scripts/latency-curve.sh's
    curve.csv (several, with side, fraction_pct and run columns);
  - a load run, `bench load --format csv` (a row per interval, then the
    summary row whose interval is "total"): a time series; several files
    are drawn side by side, each named after its file.
Files of the same system are runs of it: the plots show the median over
the runs and their min-max range.

Writes, into DIR (default: the first CSV's directory):
  deliveries-per-round.png   deliveries/s per round, per system (800x500)
  latency-per-round.png      p50, p99 and max latency per round, per system,
                             when the CSV has them (800x500)
  dchat-vs-nats.png          when both dchat and NATS are in the input: each
                             per round with its min-max band, the ratio
                             dchat/NATS of the medians, and the servers' CPU
                             per million deliveries when runs.csv has it
                             (800x800)
  latency-paced.png          for paced runs: p50, p90, p99, p99.9 latency
                             against the offered deliveries/s (800x500)
  load-throughput.png        for load runs: messages sent and deliveries per
                             second over time (800x500)
  load-latency.png           for load runs: p50, p90, p99, p99.9 delivery
                             latency per interval over time (800x500)
  load-connected.png         for load runs: connected clients over time
                             (800x500)

Exit status: 0 done; 1 drawn, but some rows did not verify (lost,
duplicated or reordered deliveries: the figures of such a run are not
worth keeping); 64 bad usage; 65 a CSV that is not one of the above (the
message says which columns were expected); 66 a CSV that cannot be read;
69 matplotlib missing (sh scripts/deps.sh plot); 73 an output that cannot
be written.
"""

import argparse
import csv
import os
import re
import statistics
import sys
from collections import defaultdict

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE, EX_CANTCREAT = 64, 65, 66, 69, 73

ROUNDS_NEED = ("messages", "expected", "received", "deliveries_per_s")
ROUNDS_LATENCY = ("p50_ms", "p99_ms", "max_ms")
PACED_NEED = ("offered_deliveries_per_s", "expected", "received", "p50_ms", "p99_ms")
PACED_LATENCY = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
LOAD_NEED = ("interval", "elapsed_s", "connected", "sent_per_s", "deliveries_per_s",
             "p50_ms", "p90_ms", "p99_ms", "p999_ms")
CHECKS = ("lost", "duplicated", "reordered")
CPU = "servers_cpu_s_per_million"

EXPECTED = (
    "expected the header of `bench --format csv` (messages,expected,received,total_s,"
    "send_s,deliveries_per_s,p50_ms,p99_ms,max_ms,lost,duplicated,reordered,"
    "bench_cpu_pct), scripts/compare-nats.sh's runs.csv (side,run, then the same), or "
    "a paced run's (`bench --rate R --format csv`: offered_msgs_per_s,"
    "offered_deliveries_per_s,achieved_deliveries_per_s,messages,expected,received,"
    "total_s,p50_ms,p90_ms,p99_ms,p999_ms,...; or latency-curve.sh's curve.csv), or a "
    "load run's (`bench load --format csv`: interval,elapsed_s,connected,sent,deliveries,"
    "sent_per_s,deliveries_per_s,p50_ms,p90_ms,p99_ms,p999_ms,...)")

NAMES = {"dchat": "dchat", "nats": "NATS"}
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


class Fail(Exception):
    """An error for the user: the message, and the exit status."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def display(side):
    return NAMES.get(side.lower(), side)


def parse_input(arg):
    """(side or None, path) from "[SIDE=]CSV"; a file that exists under the
    whole name is taken as it is."""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)=(.+)", arg)
    if m and not os.path.exists(arg):
        return m.group(1), m.group(2)
    return None, arg


def number(path, line, col, text):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise Fail(f"{path} line {line}: column {col}: {text!r} is not a number; is the "
                   "file whole (a bench that was stopped may leave half a row)?", EX_DATAERR)


def records(path, header, table):
    """(line number, {column: text}) for each row of a CSV after its header."""
    for i, fields in enumerate(table[1:], start=2):
        if len(fields) != len(header):
            raise Fail(f"{path} line {i}: {len(fields)} fields where the header has "
                       f"{len(header)}; is the file whole?", EX_DATAERR)
        yield i, dict(zip(header, fields))


def load(side_arg, path):
    """The rows of one CSV: (kind, [row dict with side, run and numbers])."""
    try:
        with open(path, newline="") as f:
            text = f.read()
    except OSError as e:
        raise Fail(f"cannot read {path}: {e.strerror or e}", EX_NOINPUT)
    table = [r for r in csv.reader(text.splitlines()) if r]
    header = table[0] if table else None
    if not header:
        raise Fail(f"{path} is empty; {EXPECTED}", EX_DATAERR)
    cols = set(header)
    if all(c in cols for c in LOAD_NEED):
        return "load", load_series(path, header, table)
    if all(c in cols for c in ROUNDS_NEED):
        kind, need = "rounds", ROUNDS_NEED
    elif all(c in cols for c in PACED_NEED):
        kind, need = "paced", PACED_NEED
    else:
        best = min((ROUNDS_NEED, PACED_NEED), key=lambda n: sum(c not in cols for c in n))
        missing = ", ".join(c for c in best if c not in cols)
        raise Fail(f"{path}: not a bench CSV: its header ({','.join(header)[:200]}) lacks "
                   f"{missing}; {EXPECTED}", EX_DATAERR)
    if side_arg is not None and "side" in cols:
        raise Fail(f"{side_arg}={path}: the file has its own side column; drop "
                   f"'{side_arg}='", EX_USAGE)
    numeric = [c for c in (*need, *ROUNDS_LATENCY, *(c for c, _ in PACED_LATENCY), *CHECKS,
                           CPU, "fraction_pct") if c in cols]
    rows = []
    for i, r in records(path, header, table):
        out = {"side": r.get("side") or side_arg or "dchat",
               "run": f"{path} run {r['run']}" if r.get("run") else path}
        for c in numeric:
            out[c] = number(path, i, c, r[c])
        rows.append(out)
    if not rows:
        raise Fail(f"{path} has a header but no rows; did the bench fail before its first "
                   "round?", EX_DATAERR)
    return kind, rows


def load_series(path, header, table):
    """The intervals of one load run, then its summary (interval "total")."""
    numeric = [c for c in header if c != "interval"]
    rows = []
    for i, r in records(path, header, table):
        out = {"side": os.path.splitext(os.path.basename(path))[0], "run": path,
               "interval": r["interval"]}
        for c in numeric:
            # a node whose /metrics did not answer has empty cells
            out[c] = float("nan") if r[c] == "" else number(path, i, c, r[c])
        rows.append(out)
    if not rows or rows[-1]["interval"] != "total":
        raise Fail(f"{path} does not end with the summary row (interval \"total\"); did the "
                   "bench load run end?", EX_DATAERR)
    if len(rows) < 2:
        raise Fail(f"{path} has a summary but no interval rows", EX_DATAERR)
    return rows


def verified(r):
    return all(r.get(c, 0) == 0 for c in CHECKS) and r["received"] == r["expected"]


def spread(values):
    return statistics.median(values), min(values), max(values)


def group(rows, key):
    """{side: {key value: [row, ...]}}, sides in the order they first come."""
    by = {}
    for r in rows:
        by.setdefault(r["side"], defaultdict(list))[r[key]].append(r)
    return by


# ---- the figures --------------------------------------------------------


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise Fail(f"matplotlib is not installed for {sys.executable}: run `sh scripts/deps.sh "
                   "plot` (Debian's python3-matplotlib), and run this with /usr/bin/python3 if "
                   "another python3 comes first on the PATH", EX_UNAVAILABLE)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path, plt):
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as e:
        raise Fail(f"cannot write {path}: {e.strerror or e}", EX_CANTCREAT)
    finally:
        plt.close(fig)
    print(f"wrote {path}")


def finish_axes(fig, ax, path, plt, title, xlabel, ylabel, log_y=False):
    """Titles, grid and legend of a one-panel figure, then saves it."""
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    save(fig, path, plt)


def errorbar(ax, xs, stats, **kw):
    med = [s[0] for s in stats]
    ax.errorbar(xs, med, yerr=[[m - s[1] for m, s in zip(med, stats)],
                               [s[2] - m for m, s in zip(med, stats)]], capsize=3, **kw)


def rounds_table(by):
    print("Per round, over the runs: deliveries/s as median (min-max); latency in ms, "
          "medians.")
    print(f"{'side':<8} {'messages':>9} {'runs':>4} {'deliveries/s':>13} {'min':>11} "
          f"{'max':>11} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for side, rounds in by.items():
        for m in sorted(rounds):
            rs = rounds[m]
            med, lo, hi = spread([r["deliveries_per_s"] for r in rs])
            lat = [f"{statistics.median(r[c] for r in rs):>8.2f}" if c in rs[0] else
                   f"{'-':>8}" for c in ROUNDS_LATENCY]
            print(f"{side:<8} {m:>9.0f} {len(rs):>4} {med:>13.0f} {lo:>11.0f} {hi:>11.0f} "
                  f"{' '.join(lat)}")


def plot_deliveries(by, path, plt):
    fig, ax = plt.subplots(figsize=(8, 5))
    for (side, rounds), colour in zip(by.items(), COLOURS):
        xs = sorted(rounds)
        stats = [spread([r["deliveries_per_s"] for r in rounds[m]]) for m in xs]
        runs = max(len(rounds[m]) for m in xs)
        errorbar(ax, xs, stats, marker="o", color=colour,
                 label=f"{display(side)} ({runs} run{'s' if runs > 1 else ''})")
    ax.set_xscale("log")
    ax.set_xlabel("messages in the round")
    ax.set_ylabel("deliveries/s (median, min-max over the runs)")
    ax.set_title("Deliveries per second, per round")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(fig, path, plt)


def plot_latency(by, path, plt):
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"p50_ms": ("o-", "p50"), "p99_ms": ("s--", "p99"), "max_ms": ("^:", "max")}
    for (side, rounds), colour in zip(by.items(), COLOURS):
        xs = sorted(rounds)
        for col in ROUNDS_LATENCY:
            stats = [spread([r[col] for r in rounds[m]]) for m in xs]
            fmt, label = styles[col]
            errorbar(ax, xs, stats, fmt=fmt, color=colour, label=f"{display(side)} {label}")
    ax.set_xscale("log")
    finish_axes(fig, ax, path, plt, "Delivery latency per round (from the hand-over to the "
                "socket)", "messages in the round", "latency, ms (median, min-max over the runs)",
                log_y=True)


def compare_table(d, n, cpu):
    print("dchat against NATS, per round: deliveries/s median (min-max) over the runs, "
          "ratio of the medians" + (", servers' CPU s per million deliveries (median)"
                                     if cpu else ""))
    print(f"{'messages':>9} {'dchat':>24} {'NATS':>24} {'dchat/NATS':>10}" +
          (f" {'dchat CPU':>9} {'NATS CPU':>9}" if cpu else ""))
    for m in sorted(set(d) & set(n)):
        ds, ns = (spread([r["deliveries_per_s"] for r in x[m]]) for x in (d, n))
        line = (f"{m:>9.0f} {f'{ds[0]:.0f} ({ds[1]:.0f}-{ds[2]:.0f})':>24} "
                f"{f'{ns[0]:.0f} ({ns[1]:.0f}-{ns[2]:.0f})':>24} "
                f"{(ds[0] / ns[0] if ns[0] > 0 else float('nan')):>10.2f}")
        if cpu:
            line += "".join(f" {statistics.median(r[CPU] for r in x[m]):>9.3f}" for x in (d, n))
        print(line)


def plot_compare(d, n, cpu, path, plt):
    panels = 3 if cpu else 2
    fig, axes = plt.subplots(panels, 1, figsize=(8, 8), sharex=True)
    common = sorted(set(d) & set(n))
    for rounds, side, colour in ((d, "dchat", COLOURS[0]), (n, "nats", COLOURS[1])):
        xs = sorted(rounds)
        stats = [spread([r["deliveries_per_s"] for r in rounds[m]]) for m in xs]
        axes[0].plot(xs, [s[0] for s in stats], marker="o", color=colour,
                     label=f"{display(side)}, median")
        axes[0].fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], color=colour,
                             alpha=0.2, label=f"{display(side)}, min-max")
        if cpu:
            axes[2].plot(xs, [statistics.median(r[CPU] for r in rounds[m]) for m in xs],
                         marker="o", color=colour, label=display(side))
    ratio = [statistics.median(r["deliveries_per_s"] for r in d[m]) /
             statistics.median(r["deliveries_per_s"] for r in n[m]) for m in common]
    axes[1].plot(common, ratio, marker="o", color="tab:green")
    axes[1].axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes[0].set_ylabel("deliveries/s")
    axes[0].set_title("dchat vs NATS, per round (median and min-max over the runs)")
    axes[1].set_ylabel("dchat / NATS (medians)")
    if cpu:
        axes[2].set_ylabel("servers' CPU s\nper million deliveries")
        # the small rounds cost hundreds of times the big ones': log scale
        axes[2].set_yscale("log")
    axes[-1].set_xlabel("messages in the round")
    axes[0].set_xscale("log")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    if cpu:
        axes[2].legend(fontsize="small")
    fig.tight_layout()
    save(fig, path, plt)


def paced_table(by):
    print("Paced runs, per offered load: latency in ms as median (min-max) over the runs.")
    print(f"{'side':<8} {'offered dl/s':>12} {'runs':>4} " +
          " ".join(f"{label:>22}" for _, label in PACED_LATENCY))
    for side, loads in by.items():
        for x in sorted(loads):
            rs = loads[x]
            cells = []
            for col, _ in PACED_LATENCY:
                if col in rs[0]:
                    med, lo, hi = spread([r[col] for r in rs])
                    cells.append(f"{f'{med:.2f} ({lo:.2f}-{hi:.2f})':>22}")
                else:
                    cells.append(f"{'-':>22}")
            print(f"{side:<8} {x:>12.0f} {len(rs):>4} " + " ".join(cells))


def plot_paced(by, path, plt):
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = ("o-", "D-.", "s--", "^:")
    for (side, loads), colour in zip(by.items(), COLOURS):
        xs = sorted(loads)
        for (col, label), fmt in zip(PACED_LATENCY, styles):
            if col not in loads[xs[0]][0]:
                continue
            stats = [spread([r[col] for r in loads[x]]) for x in xs]
            errorbar(ax, xs, stats, fmt=fmt, color=colour, label=f"{display(side)} {label}")
    finish_axes(fig, ax, path, plt, "Delivery latency at a paced load",
                "offered deliveries/s (bench --rate, open loop)",
                "latency from the due time, ms\n(median, min-max over the runs)", log_y=True)


def full_intervals(rows):
    """The rows less a last one much shorter than the others (the bench
    writes the moments between its last row and the end of the drain as a
    short row, so that the rows add up to the summary; its rates are noise)."""
    if len(rows) < 3:
        return rows
    spans = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:])]
    if spans[-1] < 0.5 * statistics.median(spans):
        return rows[:-1]
    return rows


def load_runs(rows):
    """{run: (full interval rows, summary row)} in the order of the input."""
    runs = {}
    for r in rows:
        runs.setdefault(r["run"], []).append(r)
    return {run: (full_intervals(rs[:-1]), rs[-1]) for run, rs in runs.items()}


def load_table(runs):
    print("Load runs: the summary row of each.")
    print(f"{'run':<24} {'elapsed s':>9} {'sent':>9} {'deliveries':>11} {'dl/s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>6} {'lost':>6}")
    for run, (_, t) in runs.items():
        name = os.path.basename(run)[:24]
        print(f"{name:<24} {t['elapsed_s']:>9.1f} {t['sent']:>9.0f} {t['deliveries']:>11.0f} "
              f"{t['deliveries_per_s']:>10.0f} {t['p50_ms']:>8.2f} {t['p99_ms']:>8.2f} "
              f"{t['p999_ms']:>9.2f} {t.get('errors', 0):>6.0f} {t.get('lost', 0):>6.0f}")


def plot_load_throughput(runs, path, plt):
    fig, ax = plt.subplots(figsize=(8, 5))
    right = ax.twinx()
    for (run, (rows, _)), colour in zip(runs.items(), COLOURS):
        xs = [r["elapsed_s"] for r in rows]
        label = rows[0]["side"]
        ax.plot(xs, [r["sent_per_s"] for r in rows], "o--", color=colour, markersize=3,
                label=f"{label} sent/s")
        right.plot(xs, [r["deliveries_per_s"] for r in rows], "-", color=colour,
                   label=f"{label} deliveries/s")
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel("messages sent per second (dashed)")
    right.set_ylabel("deliveries per second (solid)")
    ax.set_title("Load: throughput per interval")
    ax.grid(True, alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="lower right")
    fig.tight_layout()
    save(fig, path, plt)


def plot_load_latency(runs, path, plt):
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = ("o-", "D-.", "s--", "^:")
    for (run, (rows, _)), colour in zip(runs.items(), COLOURS):
        have = [r for r in rows if r.get("deliveries", 1) > 0]
        xs = [r["elapsed_s"] for r in have]
        for (col, label), fmt in zip(PACED_LATENCY, styles):
            ax.plot(xs, [r[col] for r in have], fmt, color=colour, markersize=3,
                    label=f"{rows[0]['side']} {label}")
    finish_axes(fig, ax, path, plt, "Load: latency quantiles per interval",
                "seconds since the start", "delivery latency, ms (from the send time)",
                log_y=True)


def plot_load_connected(runs, path, plt):
    fig, ax = plt.subplots(figsize=(8, 5))
    for (run, (rows, _)), colour in zip(runs.items(), COLOURS):
        ax.step([0] + [r["elapsed_s"] for r in rows], [0] + [r["connected"] for r in rows],
                where="post", color=colour, label=rows[0]["side"])
    ax.set_ylim(bottom=0)
    finish_axes(fig, ax, path, plt, "Load: connected clients", "seconds since the start",
                "connected clients (at the end of each interval)")


# ---- main ---------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"plot: {message}; see plot.py --help\n")
        sys.exit(EX_USAGE)


def run(argv):
    # --help: this file's docstring, less its usage line (argparse writes one)
    doc = "\n\n".join(p for p in __doc__.split("\n\n") if not p.startswith("usage:"))
    ap = Parser(prog="plot.py", description=doc, epilog="How to read the plots: "
                "docs/PERFORMANCE.md.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+", metavar="[SIDE=]CSV",
                    help="bench CSV; SIDE= names the system of a file without a side "
                         "column (default dchat)")
    ap.add_argument("-o", "--out-dir", metavar="DIR",
                    help="where the PNGs go (default: the first CSV's directory)")
    ap.add_argument("--prefix", default="", metavar="TEXT",
                    help="put before each PNG's name, e.g. run1-")
    args = ap.parse_args(argv)

    kinds, rows = set(), []
    for arg in args.csv:
        side, path = parse_input(arg)
        kind, got = load(side, path)
        kinds.add(kind)
        rows.extend(got)
    if len(kinds) > 1:
        raise Fail("the CSVs mix " + " and ".join(sorted(kinds)) + " runs (rounds: bench "
                   "--max, paced: bench --rate, load: bench load); plot them separately",
                   EX_USAGE)
    kind = kinds.pop()

    out = args.out_dir or os.path.dirname(parse_input(args.csv[0])[1]) or "."
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise Fail(f"cannot create the output directory {out}: {e.strerror or e}",
                   EX_CANTCREAT)
    plt = pyplot()

    def name(base):
        return os.path.join(out, args.prefix + base)

    if kind == "load":
        runs = load_runs(rows)
        load_table(runs)
        plot_load_throughput(runs, name("load-throughput.png"), plt)
        plot_load_latency(runs, name("load-latency.png"), plt)
        plot_load_connected(runs, name("load-connected.png"), plt)
        bad = [os.path.basename(run) for run, (_, t) in runs.items()
               if any(t.get(c, 0) != 0 for c in CHECKS)]
        if bad:
            raise Fail("drawn, but not verified (lost, duplicated or reordered deliveries): " +
                       "; ".join(bad), 1)
        return
    if kind == "rounds":
        by = group(rows, "messages")
        rounds_table(by)
        plot_deliveries(by, name("deliveries-per-round.png"), plt)
        if all(c in rows[0] for c in ROUNDS_LATENCY):
            plot_latency(by, name("latency-per-round.png"), plt)
        else:
            print("no latency columns (p50_ms, p99_ms, max_ms): latency-per-round.png not "
                  "drawn")
        sides = {s.lower(): s for s in by}
        if "dchat" in sides and "nats" in sides:
            d, n = by[sides["dchat"]], by[sides["nats"]]
            cpu = all(CPU in r for r in rows)
            compare_table(d, n, cpu)
            plot_compare(d, n, cpu, name("dchat-vs-nats.png"), plt)
    else:
        by = group(rows, "offered_deliveries_per_s")
        paced_table(by)
        plot_paced(by, name("latency-paced.png"), plt)

    bad = sorted({f"{r['side']} {r['run']} " +
                  (f"round {r['messages']:.0f}" if kind == "rounds"
                   else f"at {r['offered_deliveries_per_s']:.0f} deliveries/s")
                  for r in rows if not verified(r)})
    if bad:
        raise Fail("drawn, but not verified (lost, duplicated or reordered deliveries): " +
                   "; ".join(bad), 1)


def main():
    try:
        run(sys.argv[1:])
    except Fail as e:
        print(f"plot: {e}", file=sys.stderr)
        sys.exit(e.status)


if __name__ == "__main__":
    main()
