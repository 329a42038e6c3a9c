"""Summarises the raw runs of scripts/latency-curve.sh: one row per system
and fraction of its peak with the offered message and delivery rates, the
achieved deliveries/s (the lowest run), p50 / p99 / p99.9 latency as
min-max over the runs, and the most messages any run sent late; printed
as a table, and a PNG plot of the same (matplotlib, Agg backend: no
display): latency against offered deliveries/s, one line per percentile
and system, the runs' spread as error bars.

usage: python3 scripts/latency-report.py CURVE_CSV OUT_PNG
"""

import csv
import sys
from collections import defaultdict

NAMES = {"dchat": "dchat", "nats": "NATS 2.9 over WebSocket"}
PCTS = (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))


def load(path):
    """{(side, fraction): [row, ...]}, in the order the sides first appear."""
    by = defaultdict(list)
    sides = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by[(row["side"], int(row["fraction_pct"]))].append(row)
            if row["side"] not in sides:
                sides.append(row["side"])
    return by, sides


def verified(r):
    return (int(r["lost"]) == 0 and int(r["duplicated"]) == 0 and int(r["reordered"]) == 0
            and r["received"] == r["expected"])


def summary(by):
    out = []
    for (side, frac), rows in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        s = {"side": side, "fraction": frac, "runs": len(rows),
             "offered_msgs": float(rows[0]["offered_msgs_per_s"]),
             "offered_deliveries": float(rows[0]["offered_deliveries_per_s"]),
             "achieved_min": min(float(r["achieved_deliveries_per_s"]) for r in rows),
             "late_max": max(int(r["late_sends"]) for r in rows),
             "late_ms_max": max(float(r["late_max_ms"]) for r in rows),
             "verified": all(verified(r) for r in rows)}
        for col, _ in PCTS:
            v = [float(r[col]) for r in rows]
            s[col] = (min(v), max(v))
        out.append(s)
    return out


def span(lo_hi):
    lo, hi = lo_hi
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def print_table(rows):
    print("Latency from each message's due time to its delivery, every socket (cross-node "
          "hops included), min-max over the runs; late: the most messages one run handed "
          "over more than 2 ms after their due time (0: the rate was offered as asked).")
    print(f"{'side':<6} {'of peak':>7} {'offered msgs/s':>14} {'deliveries/s':>12} "
          f"{'achieved':>10} {'p50 ms':>13} {'p99 ms':>13} {'p99.9 ms':>13} {'late':>6} "
          f"{'runs':>4}")
    for s in rows:
        print(f"{s['side']:<6} {s['fraction']:>6}% {s['offered_msgs']:>14.0f} "
              f"{s['offered_deliveries']:>12.0f} {s['achieved_min']:>10.0f} "
              f"{span(s['p50_ms']):>13} {span(s['p99_ms']):>13} {span(s['p999_ms']):>13} "
              f"{s['late_max']:>6} {s['runs']:>4}")


def plot(rows, sides, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {"p50_ms": "o-", "p99_ms": "s--", "p999_ms": "^:"}
    colours = dict(zip(sides, ("tab:blue", "tab:orange", "tab:green")))
    for side in sides:
        pts = sorted((s for s in rows if s["side"] == side), key=lambda s: s["fraction"])
        xs = [s["offered_deliveries"] for s in pts]
        for col, label in PCTS:
            lo = [s[col][0] for s in pts]
            hi = [s[col][1] for s in pts]
            mid = [(a + b) / 2 for a, b in zip(lo, hi)]
            ax.errorbar(xs, mid, yerr=[[m - a for m, a in zip(mid, lo)],
                                       [b - m for m, b in zip(mid, hi)]],
                        fmt=styles[col], capsize=3, color=colours[side],
                        label=f"{NAMES.get(side, side)} {label}")
    ax.axhline(2.0, color="grey", linewidth=0.8, linestyle="-.", label="2 ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries/s (paced, open loop)")
    ax.set_ylabel("delivery latency, ms (min-max over the runs)")
    ax.set_title("Delivery latency at fractions of the peak rate (bench --rate)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: latency-report.py CURVE_CSV OUT_PNG")
    by, sides = load(sys.argv[1])
    if not by:
        sys.exit(f"latency-report: {sys.argv[1]} holds no runs; did every bench fail?")
    rows = summary(by)
    print_table(rows)
    plot(rows, sides, sys.argv[2])
    bad = [f"{s['side']} {s['fraction']} %" for s in rows if not s["verified"]]
    if bad:
        sys.exit("latency-report: not verified (lost, duplicated or reordered): " +
                 ", ".join(bad))


if __name__ == "__main__":
    main()
