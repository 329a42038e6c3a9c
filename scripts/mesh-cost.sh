#!/bin/sh
# What the full mesh costs as it grows (docs/DEPLOYMENT.md, "The limit of
# the full mesh"): for each node count, a cluster in network namespaces
# (scripts/netns-cluster.sh), then per node its resident memory idle,
# its CPU while idle (only the links' periodic marks) and its CPU during a
# paced run of the bench (--rate R for D seconds: senders on one node, a
# receiver on every node). Prints one CSV line per count and run:
#   nodes,run,links,rss_kib_mean,idle_cpu_ms_per_s_total,load_cpu_us_per_msg_total,
#   load_cpu_us_per_msg_sender_node,load_cpu_us_per_msg_other_mean,bench_exit
# Needs root. Run it on a quiet machine (no build, no test, no helper).
#
#   scripts/mesh-cost.sh [COUNTS] [RUNS]     (default "2 4 6 8", 3)
# Environment: RATE (default 2000 msg/s), DURATION (default 10 s),
# IDLE (seconds of idle measure, default 5), DCHAT_BIN_DIR (build/bin),
# NODE_ARGS (passed on).
set -eu
counts=${1:-2 4 6 8}
runs=${2:-3}
rate=${RATE:-2000}
dur=${DURATION:-10}
idle=${IDLE:-5}
bin=${DCHAT_BIN_DIR:-build/bin}
export NETNS_TAG="${NETNS_TAG:-meshcost}" DCHAT_BIN_DIR="$bin"
state=${DCHAT_RUN_DIR:-run/netns-$NETNS_TAG}
export DCHAT_RUN_DIR="$state"
here=$(dirname "$0")

# cpu_ns PID: time on a CPU of all its threads, in ns (schedstat: finer
# than the clock ticks of /proc/PID/stat).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
sum_cpu() {
    s=0
    for pid in $pids; do s=$((s + $(cpu_ns "$pid"))); done
    echo $s
}

echo "nodes,run,links,rss_kib_mean,idle_cpu_ms_per_s_total,load_cpu_us_per_msg_total,load_cpu_us_per_msg_sender_node,load_cpu_us_per_msg_other_mean,bench_exit"
for n in $counts; do
    r=1
    while [ $r -le "$runs" ]; do
        sh "$here/netns-cluster.sh" up "$n" >/dev/null
        pids=""
        i=1
        while [ $i -le "$n" ]; do pids="$pids $(cat "$state/n$i.pid")"; i=$((i + 1)); done
        rss=0
        for pid in $pids; do rss=$((rss + $(rss_kib "$pid"))); done
        c0=$(sum_cpu)
        sleep "$idle" # the measure's length, not a wait for anything
        c1=$(sum_cpu)
        # The senders go to n1; remember its CPU apart.
        first=${pids# }
        first=${first%% *}
        f0=$(cpu_ns "$first")
        set +e
        sh "$here/netns-cluster.sh" exec load "$bin/bench" -d "http://${NETNS_SUBNET:-10.77.0}.1:8080" \
            -t "${NETNS_SUBNET:-10.77.0}.11:9000" --rate "$rate" --duration "$dur" --no-progress \
            >"$state.bench.$n.$r" 2>&1
        rc=$?
        set -e
        c2=$(sum_cpu)
        f1=$(cpu_ns "$first")
        sent=$((rate * dur))
        awk -v n="$n" -v r="$r" -v rss="$rss" -v c0="$c0" -v c1="$c1" -v c2="$c2" \
            -v f0="$f0" -v f1="$f1" -v idle="$idle" -v sent="$sent" -v rc="$rc" 'BEGIN {
            total = (c2 - c1) / 1e3 / sent
            first = (f1 - f0) / 1e3 / sent
            other = n > 1 ? (total - first) / (n - 1) : 0
            printf "%d,%d,%d,%.0f,%.1f,%.2f,%.2f,%.2f,%d\n", n, r, n * (n - 1) / 2, rss / n,
                (c1 - c0) / 1e6 / idle, total, first, other, rc
        }'
        sh "$here/netns-cluster.sh" down >/dev/null
        r=$((r + 1))
    done
done
