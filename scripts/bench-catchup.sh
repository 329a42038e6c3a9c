#!/bin/sh
# How long a node that was away takes to catch up by anti-entropy, the
# figure of docs/PERFORMANCE.md: RUNS times (default 3) it starts discovery
# and 3 nodes (scripts/cluster.sh), stops node 3, runs `bench --senders 3
# --max MAX` on the other two, starts node 3 again on its old data and
# polls node 1's and node 3's /api/status until their history digests are
# equal with nothing left to commit. Prints per run the messages node 3
# lacked and the seconds from its start to equal digests (its own start-up
# included), then min/median/max.
#
#   scripts/bench-catchup.sh
#
# Environment: RUNS (3), MAX (64000), DCHAT_BIN_DIR (build/bin),
# DISCOVERY_PORT (18090), NODE_ARGS (extra node options). Use an optimised
# build (`make`), and an otherwise idle machine.
set -eu
here=$(dirname "$0")
runs=${RUNS:-3}
max=${MAX:-64000}
bin=${DCHAT_BIN_DIR:-build/bin}
export DCHAT_BIN_DIR="$bin"
export DISCOVERY_PORT="${DISCOVERY_PORT:-18090}"
export DCHAT_RUN_DIR="${DCHAT_RUN_DIR:-run/bench-catchup}"
rd=$DCHAT_RUN_DIR
durl="http://127.0.0.1:$DISCOVERY_PORT"
out=$(mktemp -d)
trap 'sh "$here/cluster.sh" stop >/dev/null 2>&1; rm -rf "$out"' EXIT INT TERM

die() { echo "bench-catchup: $*" >&2; exit 1; }

client_port() { sed -n 's/.*clients on [^ ]*:\([0-9]*\).*/\1/p' "$rd/$1.out" | head -n 1; }

# wait_converged PORT_A PORT_B: polls both nodes' /api/status until the
# history digests (count and highest per origin) are equal and nothing is
# pending; prints the seconds it took from the epoch-seconds START given
# in $3, and the messages node B has.
wait_converged() {
    /usr/bin/python3 - "$@" <<'PY'
import json, sys, time, urllib.request
a, b, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
def hist(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as r:
        h = json.load(r)["history"]
    return {o["origin"]: (o["count"], o["highest"]) for o in h["origins"]}, h["pending"]
deadline = time.time() + 120
while time.time() < deadline:
    try:
        (ha, pa), (hb, pb) = hist(a), hist(b)
    except OSError:
        ha, hb, pa, pb = None, {}, 1, 1
    if ha == hb and not pa and not pb:
        print(f"{time.time() - start:.3f} {sum(c for c, _ in hb.values())}")
        sys.exit(0)
    time.sleep(0.01)
sys.exit("the histories did not converge within 120 s")
PY
}

i=1
while [ "$i" -le "$runs" ]; do
    sh "$here/cluster.sh" start 3 >/dev/null || die "cannot start the cluster; see $rd/"
    kill -TERM "$(cat "$rd/node3.pid")"
    n=0
    while kill -0 "$(cat "$rd/node3.pid")" 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -gt 100 ] && die "node 3 did not stop within 10 s"
        sleep 0.1
    done
    "$bin/bench" --discovery "$durl" --senders 3 --max "$max" --format csv >"$out/bench.csv" ||
        die "the bench failed (run $i)"
    before=$(/usr/bin/python3 -c 'import json,sys,urllib.request;h=json.load(urllib.request.urlopen(sys.argv[1]))["history"];print(sum(o["count"] for o in h["origins"]))' \
        "http://127.0.0.1:$(client_port node1)/api/status")
    start=$(date +%s.%N)
    # node 3 again, as cluster.sh starts it, on its old data
    # shellcheck disable=SC2086
    "$bin/node" --discovery "$durl" --listen 127.0.0.1 --client-port 0 --sync-port 0 \
        --data-dir "$rd/node3" --cluster-secret-file "$rd/cluster.secret" ${NODE_ARGS:-} \
        >"$rd/node3.out" 2>>"$rd/node3.log" &
    echo $! >"$rd/node3.pid"
    n=0
    while [ -z "$(client_port node3)" ]; do
        n=$((n + 1))
        [ "$n" -gt 1000 ] && die "node 3 did not start within 10 s; see $rd/node3.log"
        sleep 0.01
    done
    set -- $(wait_converged "$(client_port node1)" "$(client_port node3)" "$start")
    echo "run $i: node 3 caught up on $before messages in $1 s"
    echo "$1" >>"$out/secs"
    sh "$here/cluster.sh" stop >/dev/null
    i=$((i + 1))
done
sort -n "$out/secs" | awk '{ v[NR] = $1 } END {
    printf "seconds to catch up: min %s / median %s / max %s (%d runs)\n", v[1], v[int((NR + 1) / 2)], v[NR], NR }'
