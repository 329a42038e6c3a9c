#!/bin/sh
# The retention benchmark of docs/PERFORMANCE.md: RUNS times (default 3)
# it starts discovery and 3 nodes with --history-max-bytes LIMIT
# (scripts/cluster.sh), runs `bench --senders 3 --max MAX`, and samples
# node1's history every 0.5 s meanwhile: dchat_history_bytes (pages in use
# plus WAL, what the limit bounds) and the size of history.db plus its WAL
# on disk. It prints, per run, the largest round's deliveries/s, the peaks
# of both sizes, the messages removed, and the retention step's time in
# the worker (dchat_history_trim_seconds: count, mean, and the bucket the
# slowest fell in) and on the loop (dchat_history_trim_loop_seconds); then
# min/median/max over the runs.
#
#   scripts/bench-retention.sh
#   RATE=3000 DURATION=120 SIZE=1000 scripts/bench-retention.sh   # long
#
# With RATE set, each run is one paced `bench --rate RATE --duration
# DURATION --size SIZE` instead of the rounds (the long run: at 3000
# messages/s of 1000 bytes a node takes ~3.7 MB/s, 25 times the 16M limit
# in two minutes), and the rate printed is the achieved deliveries/s.
#
# Environment: RUNS (3), MAX (256000), LIMIT (16M), RATE, DURATION (60),
# SIZE (30), DCHAT_BIN_DIR (build/bin), DISCOVERY_PORT (18080). Use an
# optimised build (`make`) on an otherwise idle machine.
set -eu
here=$(dirname "$0")
runs=${RUNS:-3}
max=${MAX:-256000}
limit=${LIMIT:-16M}
rate_arg=${RATE:-}
duration=${DURATION:-60}
size=${SIZE:-30}
if [ -n "$rate_arg" ]; then
    load="--rate $rate_arg --duration $duration --size $size"
    what="the paced run"
else
    load="--max $max --size $size"
    what="the $max round"
fi
bin=${DCHAT_BIN_DIR:-build/bin}
export DCHAT_BIN_DIR="$bin"
export DISCOVERY_PORT="${DISCOVERY_PORT:-18080}"
export DCHAT_RUN_DIR="${DCHAT_RUN_DIR:-run/bench-retention}"
export NODE_ARGS="--history-max-bytes $limit"
out=$(mktemp -d)
trap 'sh "$here/cluster.sh" stop >/dev/null 2>&1; rm -rf "$out"' EXIT INT TERM

stats() { sort -n | awk '{ v[NR] = $1 } END { printf "min %s / median %s / max %s\n", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
metric() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

echo "# bench --senders 3 $load, nodes with --history-max-bytes $limit, $runs runs, commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
i=1
while [ "$i" -le "$runs" ]; do
    sh "$here/cluster.sh" start 3 >/dev/null
    port=$(sed -n 's/.*clients on [^ ]*:\([0-9]*\).*/\1/p' "$DCHAT_RUN_DIR/node1.out" | head -n 1)
    db="$DCHAT_RUN_DIR/node1/history.db"
    "$bin/bench" --discovery "http://127.0.0.1:$DISCOVERY_PORT" --senders 3 $load \
        --format csv >"$out/run$i.csv" &
    bpid=$!
    : >"$out/samples"
    while kill -0 "$bpid" 2>/dev/null; do
        curl -fsS "http://127.0.0.1:$port/metrics" >"$out/m" 2>/dev/null || true
        disk=$(( $(stat -c %s "$db" 2>/dev/null || echo 0) + $(stat -c %s "$db-wal" 2>/dev/null || echo 0) ))
        echo "$(metric dchat_history_bytes "$out/m") $disk" >>"$out/samples"
        sleep 0.5
    done
    wait "$bpid"
    sleep 2 # the last commits and trims
    curl -fsS "http://127.0.0.1:$port/metrics" >"$out/m"
    sh "$here/cluster.sh" stop >/dev/null
    rate=$(tail -n 1 "$out/run$i.csv" | awk -F, -v h="$(head -n 1 "$out/run$i.csv")" 'BEGIN { n = split(h, k, ",") } { for (j = 1; j <= n; j++) if (k[j] == "deliveries_per_s" || k[j] == "achieved_deliveries_per_s") print $j }')
    peak=$(awk '$1 > m { m = $1 } END { printf "%.1f", m / 1048576 }' "$out/samples")
    peakdisk=$(awk '$2 > m { m = $2 } END { printf "%.1f", m / 1048576 }' "$out/samples")
    trimmed=$(metric dchat_history_trimmed_total "$out/m")
    count=$(metric dchat_history_trim_seconds_count "$out/m")
    sum=$(metric dchat_history_trim_seconds_sum "$out/m")
    mean=$(awk -v s="$sum" -v c="$count" 'BEGIN { printf "%.2f", (c > 0 ? s / c * 1000 : 0) }')
    slowest=$(awk -v c="$count" '/^dchat_history_trim_seconds_bucket/ && $2 == c { print; exit }' "$out/m" | sed 's/.*le="\([^"]*\)".*/\1/')
    loopsum=$(metric dchat_history_trim_loop_seconds_sum "$out/m")
    loopmean=$(awk -v s="$loopsum" -v c="$count" 'BEGIN { printf "%.1f", (c > 0 ? s / c * 1e6 : 0) }')
    loopmax=$(awk -v c="$count" '/^dchat_history_trim_loop_seconds_bucket/ && $2 == c { print; exit }' "$out/m" | sed 's/.*le="\([^"]*\)".*/\1/')
    echo "run $i: $rate deliveries/s in $what; history bytes peak $peak MiB, on disk peak $peakdisk MiB; $trimmed removed in $count steps, mean $mean ms, all within le=$slowest s; on the loop mean $loopmean us, all within le=$loopmax s"
    echo "$rate" >>"$out/rate"; echo "$peak" >>"$out/peak"; echo "$peakdisk" >>"$out/disk"; echo "$mean" >>"$out/mean"; echo "$loopmean" >>"$out/loop"
    i=$((i + 1))
done
echo "deliveries/s in $what: $(stats <"$out/rate")"
echo "history bytes peak, MiB: $(stats <"$out/peak")"
echo "history.db + WAL on disk peak, MiB: $(stats <"$out/disk")"
echo "retention step in the worker, mean ms: $(stats <"$out/mean")"
echo "retention on the loop (apply_trims), mean us: $(stats <"$out/loop")"
