#!/bin/sh
# Where the CPU time of one message goes on a node, in nanoseconds per step
# (the table of docs/PERFORMANCE.md): discovery and 3 nodes on loopback,
# `perf record` (DWARF call graphs) on the senders' node (1) and a receiving
# node (2) while `bench --senders 3 --max MAX` runs RUNS times, and the two
# nodes' CPU time from /proc over the same span. Each sample is given to
# the step nearest its leaf on its call chain (profile-steps.py); a step's
# nanoseconds per message are its share of the node's samples times the
# node's CPU time, over the messages the benches sent. Times, unlike
# scripts/profile-callgrind.sh's instruction counts, depend on the machine
# and its load: run it on an otherwise idle machine, on an optimised build
# (`make`). Installs perf (linux-perf) when missing.
#
#   scripts/profile-steps.sh
#
# Environment: RUNS (3), MAX (128000), DCHAT_BIN_DIR (build/bin),
# DISCOVERY_PORT (18100), OUT (run/profile-steps), FREQ (999 Hz).
set -eu
here=$(dirname "$0")
runs=${RUNS:-3}
max=${MAX:-128000}
freq=${FREQ:-999}
bin=${DCHAT_BIN_DIR:-build/bin}
out=${OUT:-run/profile-steps}
export DCHAT_BIN_DIR="$bin"
export DISCOVERY_PORT="${DISCOVERY_PORT:-18100}"
export DCHAT_RUN_DIR="$out/cluster"

die() { echo "profile-steps: $*" >&2; exit 1; }

command -v perf >/dev/null 2>&1 || {
    echo "profile-steps: installing perf" >&2
    apt-get install -y -qq linux-perf >/dev/null || die "cannot install perf; run apt-get install linux-perf"
}
[ -x "$bin/node" ] || die "no $bin/node; build it with 'make'"
rm -rf "$out"
mkdir -p "$out"
perf_pid=""
trap '[ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null; sh "$here/cluster.sh" stop >/dev/null 2>&1' EXIT INT TERM

# cpu_ticks PID: user + system clock ticks of the process, all its threads.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

sh "$here/cluster.sh" start 3 >/dev/null || die "cannot start the cluster; see $DCHAT_RUN_DIR/"
p1=$(cat "$DCHAT_RUN_DIR/node1.pid")
port1=$(sed -n 's/.*clients on [^ ]*:\([0-9]*\).*/\1/p' "$DCHAT_RUN_DIR/node1.out" | head -n 1)
[ -n "$port1" ] || die "node 1 did not print its client port; see $DCHAT_RUN_DIR/node1.out"
p2=$(cat "$DCHAT_RUN_DIR/node2.pid")
perf record -q -F "$freq" --call-graph dwarf,8192 -p "$p1,$p2" -o "$out/perf.data" \
    >"$out/perf.log" 2>&1 &
perf_pid=$!
# perf is attached once it has written its header
n=0
while [ ! -s "$out/perf.data" ]; do
    n=$((n + 1))
    [ "$n" -gt 100 ] && die "perf did not start; see $out/perf.log"
    sleep 0.1
done
t1=$(cpu_ticks "$p1")
t2=$(cpu_ticks "$p2")
i=1
while [ "$i" -le "$runs" ]; do
    "$bin/bench" --discovery "http://127.0.0.1:$DISCOVERY_PORT" --target "127.0.0.1:$port1" \
        --senders 3 --max "$max" --format csv >"$out/bench$i.csv" || die "the bench failed (run $i)"
    i=$((i + 1))
done
t1=$(($(cpu_ticks "$p1") - t1))
t2=$(($(cpu_ticks "$p2") - t2))
kill -INT "$perf_pid"
wait "$perf_pid" || true
perf_pid=""
sh "$here/cluster.sh" stop >/dev/null
# messages: the first column of every round's row (the header is skipped)
msgs=$(cat "$out"/bench*.csv | awk -F, '$1 ~ /^[0-9]+$/ { s += $1 } END { print s }')
perf script -i "$out/perf.data" -F pid,tid,ip,sym 2>/dev/null >"$out/perf.txt" ||
    die "perf script failed on $out/perf.data"
/usr/bin/python3 "$here/profile-steps.py" "$out/perf.txt" "$msgs" "$(getconf CLK_TCK)" \
    "$p1" "$t1" "$p2" "$t2"
