#!/bin/sh
# `make run`: start discovery and 3 nodes on loopback, run the bench
# (3 senders, rounds up to 8000 messages), print its table, stop the cluster.
# usage: scripts/run.sh BIN_DIR
set -eu
bin=${1:-build/bin}
export DCHAT_BIN_DIR="$bin"
export DCHAT_RUN_DIR="${DCHAT_RUN_DIR:-run}"
port=${DISCOVERY_PORT:-8080}
export DISCOVERY_PORT="$port"
here=$(dirname "$0")

trap 'sh "$here/cluster.sh" stop >/dev/null' EXIT INT TERM
sh "$here/cluster.sh" start 3
"$bin/bench" --discovery "http://127.0.0.1:$port" --senders 3 --max "${BENCH_MAX:-8000}"
