"""Summarises the raw runs of scripts/compare-nats.sh: one row per round
with the median deliveries/s of dchat and of NATS over the runs (and their
min-max), the ratio dchat/NATS of the medians, each side's servers' CPU
seconds per million deliveries (median) and peak RSS (largest), printed as
a table; and a PNG plot of the same (matplotlib, Agg backend: no display).

usage: python3 scripts/compare-report.py RUNS_CSV OUT_PNG
"""

import csv
import statistics
import sys
from collections import defaultdict

SIDES = ("dchat", "nats")


def load(path):
    """{(side, messages): [row, ...]} and the sorted round sizes."""
    by = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by[(row["side"], int(row["messages"]))].append(row)
    rounds = sorted({m for (_, m) in by})
    return by, rounds


def column(rows, name):
    return [float(r[name]) for r in rows]


def summary(by, rounds):
    out = []
    for m in rounds:
        s = {"messages": m}
        for side in SIDES:
            rows = by.get((side, m), [])
            if not rows:
                s[side] = None
                continue
            rate = column(rows, "deliveries_per_s")
            s[side] = {
                "runs": len(rows),
                "rate": statistics.median(rate),
                "rate_min": min(rate),
                "rate_max": max(rate),
                "cpu_per_m": statistics.median(column(rows, "servers_cpu_s_per_million")),
                "rss": max(column(rows, "servers_peak_rss_mib")),
                "verified": all(int(r["lost"]) == 0 and int(r["duplicated"]) == 0 and
                                int(r["reordered"]) == 0 and r["received"] == r["expected"]
                                for r in rows),
            }
        out.append(s)
    return out


def whole_runs(path):
    """{side: median over the runs of the servers' CPU seconds per million
    deliveries over all rounds of a run}: the per-round figure of a short
    round is mostly the 10 ms granularity of /proc's clock ticks."""
    cpu = defaultdict(float)
    got = defaultdict(int)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["side"], row["run"])
            cpu[key] += float(row["servers_cpu_s"])
            got[key] += int(row["received"])
    out = {}
    for side in SIDES:
        per = [cpu[k] / (got[k] / 1e6) for k in cpu if k[0] == side and got[k] > 0]
        if per:
            out[side] = statistics.median(per)
    return out


def fmt_rate(v):
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"


def print_table(rows):
    print("Medians over the runs; deliveries/s as median (min-max); CPU: the servers' "
          "user+system seconds per million deliveries; RSS: the largest peak (VmHWM) of "
          "one server, MiB.")
    head = (f"{'messages':>9} {'dchat deliveries/s':>22} {'NATS deliveries/s':>22} "
            f"{'dchat/NATS':>10} {'dchat CPU':>9} {'NATS CPU':>9} {'dchat RSS':>9} "
            f"{'NATS RSS':>9}")
    print(head)
    for s in rows:
        d, n = s["dchat"], s["nats"]

        def rate(x):
            return (f"{fmt_rate(x['rate'])} ({fmt_rate(x['rate_min'])}-"
                    f"{fmt_rate(x['rate_max'])})") if x else "-"

        ratio = f"{d['rate'] / n['rate']:.2f}" if d and n and n["rate"] > 0 else "-"
        print(f"{s['messages']:>9} {rate(d):>22} {rate(n):>22} {ratio:>10} "
              f"{(d['cpu_per_m'] if d else float('nan')):>9.3f} "
              f"{(n['cpu_per_m'] if n else float('nan')):>9.3f} "
              f"{(d['rss'] if d else float('nan')):>9.1f} "
              f"{(n['rss'] if n else float('nan')):>9.1f}")


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for side, colour in zip(SIDES, ("tab:blue", "tab:orange")):
        pts = [(s["messages"], s[side]) for s in rows if s[side]]
        if not pts:
            continue
        xs = [m for m, _ in pts]
        med = [x["rate"] for _, x in pts]
        lo = [x["rate"] - x["rate_min"] for _, x in pts]
        hi = [x["rate_max"] - x["rate"] for _, x in pts]
        label = "dchat" if side == "dchat" else "NATS 2.9 over WebSocket"
        ax1.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, color=colour, label=label)
        ax2.plot(xs, [x["cpu_per_m"] for _, x in pts], marker="o", color=colour, label=label)
    ax1.set_xscale("log")
    ax1.set_ylabel("deliveries/s (median, min-max)")
    ax1.set_title("dchat vs NATS: 3 senders on one server, one receiver per server")
    ax1.legend()
    ax1.grid(True, which="both", alpha=0.3)
    ax2.set_xlabel("messages in the round")
    ax2.set_ylabel("servers' CPU s per million deliveries")
    ax2.legend()
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: compare-report.py RUNS_CSV OUT_PNG")
    by, rounds = load(sys.argv[1])
    if not rounds:
        sys.exit(f"compare-report: {sys.argv[1]} holds no rounds; did every bench fail?")
    rows = summary(by, rounds)
    print_table(rows)
    whole = whole_runs(sys.argv[1])
    print("Whole runs (all rounds), servers' CPU s per million deliveries, median: " +
          ", ".join(f"{'NATS' if s == 'nats' else s} {whole[s]:.3f}" for s in SIDES
                    if s in whole))
    bad = [f"{side} round {s['messages']}" for s in rows for side in SIDES
           if s[side] and not s[side]["verified"]]
    plot(rows, sys.argv[2])
    if bad:
        sys.exit("compare-report: not verified (lost, duplicated or reordered): " +
                 ", ".join(bad))


if __name__ == "__main__":
    main()
