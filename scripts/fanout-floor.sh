#!/bin/bash
# One message to N clients against the floor of one send per socket, as
# docs/PERFORMANCE.md ("The fan-out written at once") measures it: PAIRS
# times (default 10), the floor (`send-floor -n N -r 5 -p`: sender on core
# 0, receiver on core 1), then a fresh node pinned to core 0 and
# `conn-scale -n N --runs 3 --phases one,burst` pinned to core 1; one line
# per pair with the floor's median µs per send, the median time to all,
# their ratio (time / (N x floor)) and the bursts' CPU per million
# deliveries. Needs `make && make tools`, 2 cores, and N + 64 descriptors
# (the hard limit here is 20,000: N at most 19,000). An idle machine only.
#
#   scripts/fanout-floor.sh            # N=19000 PAIRS=10
#
# Environment: N, PAIRS, DCHAT_BIN_DIR (build/bin), DISCOVERY_PORT (18080).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
n=${N:-19000}
pairs=${PAIRS:-10}
bin=${DCHAT_BIN_DIR:-build/bin}
export DCHAT_BIN_DIR="$bin"
export DCHAT_RUN_DIR="${DCHAT_RUN_DIR:-run/fanout-floor}"
export DISCOVERY_PORT="${DISCOVERY_PORT:-18080}"
export NODE_ARGS="--max-clients $((n + 100))"
ulimit -n 20000 || { echo "fanout-floor: cannot raise the descriptor limit to 20000" >&2; exit 1; }
for t in send-floor conn-scale node discovery; do
    [ -x "$bin/$t" ] || { echo "fanout-floor: $bin/$t is missing: run make && make tools" >&2; exit 1; }
done
trap 'sh "$here/cluster.sh" stop >/dev/null 2>&1' EXIT INT TERM
echo "# N=$n, commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# time floor_us_median one_s_median ratio burst_cpu_s_per_million_median"
i=1
while [ "$i" -le "$pairs" ]; do
    floor=$("$bin/send-floor" -n "$n" -r 5 -p | sed -n 's|us per send (min / median / max): [^/]*/ *\([0-9.]*\) */.*|\1|p')
    rm -rf "$DCHAT_RUN_DIR"
    sh "$here/cluster.sh" start 1 >/dev/null
    pid=$(cat "$DCHAT_RUN_DIR/node1.pid")
    port=$(sed -n 's/.*clients on [^ ]*:\([0-9]*\).*/\1/p' "$DCHAT_RUN_DIR/node1.out" | head -n 1)
    taskset -pc 0 "$pid" >/dev/null
    out=$(taskset -c 1 "$bin/conn-scale" --port "$port" --pid "$pid" -n "$n" --runs 3 --phases one,burst)
    sh "$here/cluster.sh" stop >/dev/null
    one=$(echo "$out" | sed -n 's|^one: seconds to all (min / median / max of [0-9]*): [^/]*/ *\([0-9.]*\) */.*|\1|p')
    cpu=$(echo "$out" | sed -n 's|^burst: node CPU s per million deliveries (min / median / max of [0-9]*): [^/]*/ *\([0-9.]*\) */.*|\1|p')
    awk -v t="$(date -u +%T)" -v f="$floor" -v o="$one" -v c="$cpu" -v n="$n" \
        'BEGIN { printf "%s %.2f %.4f %.2f %s\n", t, f, o, o / (f * n / 1e6), c }'
    i=$((i + 1))
done
