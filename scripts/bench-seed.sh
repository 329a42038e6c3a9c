#!/bin/sh
# The seed-topology benchmark of docs/PERFORMANCE.md, repeated: RUNS times
# (default 3) it starts discovery and 3 nodes (scripts/cluster.sh), runs
# `bench --senders 3 --max MAX` with the extra bench options given, and
# stops them, so each run starts from empty nodes. It prints each run's
# last round (the largest), the nodes' peak RSS (VmHWM) and the CPU time
# the three nodes used over the whole run per million deliveries (all
# rounds), then min/median/max of the deliveries per second, of the
# largest peak and of the CPU per million deliveries.
#
#   scripts/bench-seed.sh [BENCH_OPTIONS...]        e.g. --window 0
#
# Environment: RUNS (3), MAX (256000), DCHAT_BIN_DIR (build/bin),
# DISCOVERY_PORT (18080), NODE_ARGS (extra node options). Use an optimised
# build (`make`), and an otherwise idle machine.
set -eu
here=$(dirname "$0")
runs=${RUNS:-3}
max=${MAX:-256000}
bin=${DCHAT_BIN_DIR:-build/bin}
export DCHAT_BIN_DIR="$bin"
export DISCOVERY_PORT="${DISCOVERY_PORT:-18080}"
export DCHAT_RUN_DIR="${DCHAT_RUN_DIR:-run/bench-seed}"
out=$(mktemp -d)
trap 'sh "$here/cluster.sh" stop >/dev/null 2>&1; rm -rf "$out"' EXIT INT TERM

# peak_rss_mib: the largest VmHWM of the running nodes, in MiB.
peak_rss_mib() {
    p_max=0
    for f in "$DCHAT_RUN_DIR"/node*.pid; do
        kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$(cat "$f")/status")
        [ "$kb" -gt "$p_max" ] && p_max=$kb
    done
    echo $((p_max / 1024))
}

# nodes_cpu_s: user + system CPU seconds the running nodes used so far.
nodes_cpu_s() {
    tck=$(getconf CLK_TCK)
    for f in "$DCHAT_RUN_DIR"/node*.pid; do
        # fields 14 and 15 of /proc/PID/stat, counted after the ") " that
        # ends the command name
        sed 's/.*) //' "/proc/$(cat "$f")/stat" | awk '{ print $12 + $13 }'
    done | awk -v t="$tck" '{ s += $1 } END { printf "%.2f\n", s / t }'
}

# stats: min/median/max of the numbers on stdin, one a line.
stats() { sort -n | awk '{ v[NR] = $1 } END { printf "min %s / median %s / max %s\n", v[1], v[int((NR + 1) / 2)], v[NR] }'; }

echo "# bench --senders 3 --max $max $*, $runs runs, commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
i=1
while [ "$i" -le "$runs" ]; do
    sh "$here/cluster.sh" start 3 >/dev/null
    rc=0
    "$bin/bench" --discovery "http://127.0.0.1:$DISCOVERY_PORT" --senders 3 --max "$max" \
        --format csv "$@" >"$out/run$i.csv" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "run $i: the bench failed (exit $rc); its output:" >&2
        cat "$out/run$i.csv" >&2
        exit 1
    fi
    rss=$(peak_rss_mib)
    cpu=$(nodes_cpu_s)
    sh "$here/cluster.sh" stop >/dev/null
    last=$(tail -n 1 "$out/run$i.csv")
    deliveries=$(awk -F, 'NR > 1 { s += $3 } END { print s }' "$out/run$i.csv")
    per_m=$(awk -v c="$cpu" -v d="$deliveries" 'BEGIN { printf "%.3f", c / (d / 1e6) }')
    echo "run $i: $last; node peak RSS $rss MiB; nodes' CPU $cpu s for $deliveries deliveries ($per_m s per million)"
    echo "$per_m" >>"$out/cpu"
    echo "$last" | awk -F, -v h="$(head -n 1 "$out/run$i.csv")" 'BEGIN { n = split(h, k, ",") } { for (j = 1; j <= n; j++) if (k[j] ~ /deliveries/) print $j }' >>"$out/rate"
    echo "$rss" >>"$out/rss"
    i=$((i + 1))
done
echo "deliveries/s in the $max round: $(stats <"$out/rate")"
echo "node peak RSS, MiB: $(stats <"$out/rss")"
echo "nodes' CPU seconds per million deliveries: $(stats <"$out/cpu")"
