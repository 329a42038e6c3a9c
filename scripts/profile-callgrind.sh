#!/bin/sh
# Where a node's instructions go per message, with valgrind's callgrind:
# discovery and 3 nodes on loopback, the senders' node (1) and a receiving
# node (2) run under callgrind, `bench --senders 3 --max MAX` puts its
# senders on node 1, then everything stops. Prints, for each profiled node,
# its instructions per message (all the messages the bench sent) and the
# functions with the most instructions, inclusive. Instruction counts do
# not depend on how loaded the machine is, so two builds can be compared
# with this on a busy machine; times cannot (use scripts/bench-seed.sh on
# an idle one). Installs valgrind when missing.
#
#   scripts/profile-callgrind.sh            MAX=8000, build/bin
# Environment: MAX (8000), DCHAT_BIN_DIR (build/bin), OUT (run/callgrind),
# PORT_BASE (19400: discovery on it, nodes' ports above it), TOP (25).
set -eu
bin=${DCHAT_BIN_DIR:-build/bin}
max=${MAX:-8000}
out=${OUT:-run/callgrind}
base=${PORT_BASE:-19400}
top=${TOP:-25}

command -v valgrind >/dev/null 2>&1 || {
    echo "profile: installing valgrind" >&2
    apt-get install -y -qq valgrind >/dev/null || {
        echo "profile: cannot install valgrind; run apt-get install valgrind" >&2
        exit 1
    }
}
[ -x "$bin/node" ] || { echo "profile: no $bin/node; build it with 'make'" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
DCHAT_CLUSTER_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export DCHAT_CLUSTER_SECRET
pids=""
cleanup() {
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $pids; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

"$bin/discovery" --listen "127.0.0.1:$base" --data-dir "$out/discovery" \
    >"$out/discovery.log" 2>&1 &
pids="$pids $!"
for i in 1 2 3; do
    wrap=""
    [ "$i" -le 2 ] && wrap="valgrind --tool=callgrind --callgrind-out-file=$out/node$i.cg"
    # shellcheck disable=SC2086
    $wrap "$bin/node" --discovery "http://127.0.0.1:$base" --listen 127.0.0.1 \
        --client-port $((base + i)) --sync-port $((base + 10 + i)) --data-dir "$out/node$i" \
        >"$out/node$i.log" 2>&1 &
    pids="$pids $!"
done
# Wait (bounded) until node 1 has both links up.
i=0
until curl -sf "http://127.0.0.1:$((base + 1))/api/status" 2>/dev/null |
        grep -o '"state":"up"' | wc -l | grep -q '^2$'; do
    i=$((i + 1))
    [ $i -gt 300 ] && { echo "profile: the mesh did not come up in 60 s; logs in $out" >&2; exit 1; }
    sleep 0.2
done
"$bin/bench" --discovery "http://127.0.0.1:$base" --target "127.0.0.1:$((base + 1))" \
    --max "$max" --timeout 300 --format csv >"$out/bench.csv"
sent=$(awk -F, 'NR > 1 { s += $1 } END { print s }' "$out/bench.csv")
cleanup
pids=""
for i in 1 2; do
    role=$([ "$i" = 1 ] && echo "senders' node" || echo "receiving node")
    total=$(callgrind_annotate "$out/node$i.cg" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    echo "== node $i ($role): $total instructions, $((total / sent)) per message ($sent messages)"
    callgrind_annotate --inclusive=yes "$out/node$i.cg" 2>/dev/null |
        grep -E '^ *[0-9,]+ \(' |
        grep -v -E 'PROGRAM TOTALS|ld-linux|below main|libc-start|libc_start|main\.c:main |uv_run|\?\?\?:0x[0-9a-f]+ \[/usr/lib/x86_64-linux-gnu/libuv' |
        head -n "$top"
done
