#!/bin/sh
# Runs the load mode's scenarios (issue 14) against a fresh local cluster:
# discovery and NODES nodes (scripts/cluster.sh), one `bench load` per
# scenario with its report as CSV, the plots of each (scripts/plot.py), all
# into a results directory; then stops all it started, also on failure or
# Ctrl-C.
#
#   scripts/load-scenarios.sh [chat|iot|peers|all] [--out DIR]
#
#   chat   2000 clients, each sending one 256-byte message a second, all
#          chats (every client gets every message)
#   iot    500 devices, each sending a 40-byte reading every 200 ms, all in
#          one dashboard room (--rooms 1)
#   peers  300 clients at 10 messages a second each, in 10 rooms, for 60 s
#
# Environment: DURATION (chat and iot, seconds, default 30), NODES (3),
# DCHAT_BIN_DIR (build/bin), DISCOVERY_PORT (a free port), NODE_ARGS (extra
# node options), BENCH_LIMIT (seconds one bench may take, 600). Writes
# DIR/<scenario>.csv, DIR/<scenario>.stderr when the bench said anything,
# and DIR/<scenario>-load-*.png; DIR defaults to run/load-<timestamp>.
# Exit status: 0 every scenario verified, 1 one failed (the others still
# run), 64 bad usage. Use an optimised build (`make`) and an otherwise idle
# machine for figures worth keeping.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
which=all
results=""
while [ $# -gt 0 ]; do
    case $1 in
        chat|iot|peers|all) which=$1 ;;
        --out) [ $# -ge 2 ] || { echo "load-scenarios: --out needs a directory" >&2; exit 64; }
               results=$2; shift ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "load-scenarios: unknown argument '$1'; usage: $0 [chat|iot|peers|all] [--out DIR]" >&2
           exit 64 ;;
    esac
    shift
done
duration=${DURATION:-30}
nodes=${NODES:-3}
bin=${DCHAT_BIN_DIR:-build/bin}
limit=${BENCH_LIMIT:-600}
results=${results:-run/load-$(date +%Y%m%d-%H%M%S)}

die() { echo "load-scenarios: $*" >&2; exit 1; }
case $duration in ''|*[!0-9]*) echo "load-scenarios: DURATION must be a number of seconds, got '$duration'" >&2; exit 64 ;; esac
[ "$duration" -ge 2 ] && [ "$duration" -le 3600 ] || { echo "load-scenarios: DURATION must be 2 to 3600 s, got $duration" >&2; exit 64; }
case $nodes in ''|*[!0-9]*) echo "load-scenarios: NODES must be a number, got '$nodes'" >&2; exit 64 ;; esac
[ "$nodes" -ge 1 ] && [ "$nodes" -le 16 ] || { echo "load-scenarios: NODES must be 1 to 16, got $nodes" >&2; exit 64; }

# shellcheck source=scripts/bench-lib.sh
. "$here/bench-lib.sh"
# shellcheck disable=SC2034 # read by bench-lib.sh
LIB_WHO=load
bench_tools "$here" "$bin" plot
bin=$BENCH_BIN

mkdir -p "$results" || die "cannot create the results directory $results"
results=$(cd "$results" && pwd)
export DCHAT_BIN_DIR="$bin"
export DCHAT_RUN_DIR="$results/cluster"
if [ -z "${DISCOVERY_PORT:-}" ]; then
    DISCOVERY_PORT=$(free_ports 1) || die "cannot find a free port on 127.0.0.1"
fi
export DISCOVERY_PORT

stop_all() { sh "$here/cluster.sh" stop >/dev/null 2>&1 || true; }
trap stop_all EXIT
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

failed=""

# scenario NAME BENCH_LOAD_OPTIONS...: one run on a fresh cluster.
scenario() {
    s_name=$1
    shift
    sh "$here/cluster.sh" start "$nodes" >/dev/null
    echo "load-scenarios: $s_name: bench load $*"
    s_rc=0
    timeout --foreground "$limit" "$bin/bench" load \
        --discovery "http://127.0.0.1:$DISCOVERY_PORT" --format csv \
        --out "$results/$s_name.csv" "$@" 2>"$results/$s_name.stderr" || s_rc=$?
    sh "$here/cluster.sh" stop >/dev/null
    if [ "$s_rc" != 0 ]; then
        echo "load-scenarios: $s_name failed (exit $s_rc):" >&2
        cat "$results/$s_name.stderr" >&2
        failed="$failed $s_name"
    fi
    [ -s "$results/$s_name.stderr" ] || rm -f "$results/$s_name.stderr"
    if [ -s "$results/$s_name.csv" ]; then
        /usr/bin/python3 "$here/plot.py" -o "$results" --prefix "$s_name-" \
            "$results/$s_name.csv" || failed="$failed $s_name-plot"
    fi
}

case $which in chat|all)
    scenario chat --clients 2000 --rate 1 --size 256 --duration "$duration" --ramp 2 ;;
esac
case $which in iot|all)
    scenario iot --clients 500 --rate 5 --size 40 --rooms 1 --duration "$duration" ;;
esac
case $which in peers|all)
    scenario peers --clients 300 --rate 10 --rooms 10 --duration 60 ;;
esac

echo "load-scenarios: reports and plots in $results"
[ -z "$failed" ] || die "failed:$failed"
