#!/bin/sh
# Runs a local cluster on loopback: one discovery daemon and N chat nodes,
# with logs, pids and data under a run directory.
#
#   scripts/cluster.sh start N    start discovery + N nodes, wait until the
#                                 mesh is complete (every node linked to all);
#                                 the previous run dir is kept as RUN_DIR.prev
#   scripts/cluster.sh stop       stop everything started from the run dir
#   scripts/cluster.sh status     what runs, and discovery's active list
#
# Environment: DCHAT_BIN_DIR (default build/bin), DCHAT_RUN_DIR (default
# run), DISCOVERY_PORT (default 8080), NODE_ARGS (extra node options),
# DCHAT_LOG_LEVEL, DCHAT_LOG_FORMAT (json: one JSON object per log line).
set -eu

bin=${DCHAT_BIN_DIR:-build/bin}
rundir=${DCHAT_RUN_DIR:-run}
dport=${DISCOVERY_PORT:-8080}
durl="http://127.0.0.1:$dport"

PROC_NAME=cluster PROC_DIR=$rundir
. "$(dirname "$0")/proc-lib.sh"

mesh_complete() {
    m_want=$1
    for m_file in "$rundir"/node*.out; do
        m_port=$(sed -n 's/.*clients on [^ ]*:\([0-9]*\).*/\1/p' "$m_file" | head -n 1)
        [ -n "$m_port" ] || return 1
        m_up=$(curl -fsS "http://127.0.0.1:$m_port/api/status" | grep -o '"state": *"up"' | wc -l) || return 1
        [ "$m_up" -ge "$m_want" ] || return 1
    done
}

start() {
    n=${1:?usage: cluster.sh start N}
    [ "$n" -ge 1 ] 2>/dev/null || die "N must be a positive number, got '$n'"
    for b in discovery node; do
        [ -x "$bin/$b" ] || die "$bin/$b not found; run make first"
    done
    alive discovery && die "a cluster already runs from $rundir; run: $0 stop"
    # Fail early and plainly when the discovery port is taken: the daemon
    # would say so too, but only in its log.
    if curl -s -o /dev/null --max-time 2 "$durl/" 2>/dev/null; then
        die "port $dport on 127.0.0.1 is already in use (something answers on $durl); stop it, or pick another port: DISCOVERY_PORT=8081 make run"
    fi
    if [ -d "$rundir" ]; then
        rm -rf "$rundir.prev"
        mv "$rundir" "$rundir.prev"
        echo "cluster: the previous run's logs and data are now in $rundir.prev/"
    fi
    mkdir -p "$rundir"
    # One secret for the whole cluster, made afresh for each run unless
    # DCHAT_CLUSTER_SECRET_FILE names one (docs/PROTOCOL.md, 6).
    secret=${DCHAT_CLUSTER_SECRET_FILE:-$rundir/cluster.secret}
    if [ ! -s "$secret" ]; then
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret") ||
            die "cannot write the cluster secret to $secret"
    fi

    "$bin/discovery" --listen "127.0.0.1:$dport" --data-dir "$rundir/discovery" \
        --cluster-secret-file "$secret" >"$rundir/discovery.out" 2>"$rundir/discovery.log" 3>&- &
    echo $! >"$rundir/discovery.pid"
    wait_for "discovery on port $dport" 10 started discovery

    i=1
    while [ "$i" -le "$n" ]; do
        # shellcheck disable=SC2086
        "$bin/node" --discovery "$durl" --listen 127.0.0.1 --client-port 0 \
            --sync-port 0 --data-dir "$rundir/node$i" --cluster-secret-file "$secret" \
            ${NODE_ARGS:-} \
            >"$rundir/node$i.out" 2>"$rundir/node$i.log" 3>&- &
        echo $! >"$rundir/node$i.pid"
        wait_for "node $i to listen" 10 started "node$i"
        i=$((i + 1))
    done
    wait_for "all $n nodes to link to each other" 20 mesh_complete $((n - 1))
    echo "cluster: discovery on $durl, $n nodes up and fully meshed (logs in $rundir/)"
}

stop() {
    [ -d "$rundir" ] || { echo "cluster: nothing runs from $rundir"; return 0; }
    for f in "$rundir"/node*.pid "$rundir"/discovery.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            i=0
            while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
            kill -0 "$pid" 2>/dev/null && { echo "cluster: $f did not stop in 5s, killing" >&2; kill -KILL "$pid" 2>/dev/null || true; }
        fi
        rm -f "$f"
    done
    echo "cluster: stopped"
}

status() {
    for f in "$rundir"/discovery.pid "$rundir"/node*.pid; do
        [ -f "$f" ] || continue
        if alive "$(basename "$f" .pid)"; then s=running; else s=dead; fi
        echo "$(basename "$f" .pid): pid $(cat "$f") $s"
    done
    curl -fsS "$durl/api/nodes/active" 2>/dev/null && echo || echo "discovery does not answer on $durl"
}

case "${1:-}" in
    start) start "${2:-3}" ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start N | stop | status" >&2; exit 64 ;;
esac
