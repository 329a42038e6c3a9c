#!/bin/sh
# A multi-host dchat cluster on one machine: one network namespace per host
# (discovery, N nodes, a load host), each with its own address on a private
# /24, joined by a switch in a namespace of its own. Used by the fault tests
# (tests/faults/) and by hand; needs root (ip netns).
#
#   scripts/netns-cluster.sh up [N]         discovery + N nodes (default 3),
#                                           waits until the mesh is complete
#   scripts/netns-cluster.sh down           stops everything, removes every
#                                           namespace, link and file it made
#   scripts/netns-cluster.sh exec HOST CMD  runs CMD in HOST's namespace
#   scripts/netns-cluster.sh status         hosts, addresses, processes
#   scripts/netns-cluster.sh stop HOST [SIG]    signals a host's program
#                                           (TERM by default; KILL = kill -9)
#                                           and waits until it is gone
#   scripts/netns-cluster.sh start HOST     starts it again, same data dir
#   scripts/netns-cluster.sh cut HOST       partitions HOST from every other
#   scripts/netns-cluster.sh heal [HOST]    undoes cut (every host if none)
#   scripts/netns-cluster.sh partition HOST cuts node HOST off from the other
#                                           nodes only (their packets are
#                                           dropped both ways), while its
#                                           clients and discovery still reach
#                                           it: both sides go on accepting
#   scripts/netns-cluster.sh join HOST      undoes partition
#   scripts/netns-cluster.sh impair [delay=MS] [jitter=MS] [loss=PCT]
#                                           latency and loss on every link;
#                                           `impair` alone removes them
#
# Hosts are named disc, n1 .. nN and load; addresses are SUBNET.1 (disc),
# SUBNET.11 .. (nodes) and SUBNET.100 (load). Every program listens on the
# same ports on its own address: discovery 8080, nodes 9000 (clients) and
# 7000 (peers). The hosts have no route but their /24, so nothing started
# here can send anywhere outside these namespaces; the root namespace is
# not touched (the switch lives in a namespace too).
#
# Two kinds of links (NETNS_LINK):
#   veth  (default) a veth pair per host to a bridge; cut takes the host's
#         bridge port down, impair uses tc netem (when the kernel has it)
#   wire  TAP devices switched by build/bin/netwire (make tools), which
#         delays, drops and cuts in user space: for kernels without
#         sch_netem, such as this project's CI machine
#
# Environment: NETNS_TAG (default dchat: names every namespace, so that two
# clusters can coexist), NETNS_SUBNET (default 10.77.0), NETNS_LINK,
# DCHAT_BIN_DIR (default build/bin), DCHAT_RUN_DIR (default run/netns-TAG:
# logs, pids, data, the cluster secret), NODE_ARGS (extra node options),
# DISCOVERY_ARGS, DCHAT_LOG_LEVEL.
set -eu

tag=${NETNS_TAG:-dchat}
subnet=${NETNS_SUBNET:-10.77.0}
link=${NETNS_LINK:-veth}
bin=${DCHAT_BIN_DIR:-build/bin}
state=${DCHAT_RUN_DIR:-run/netns-$tag}
sw=$tag-sw
DPORT=8080 CPORT=9000 SPORT=7000

PROC_NAME=netns-cluster PROC_DIR=$state
. "$(dirname "$0")/proc-lib.sh"

case "$tag" in
    *[!a-z0-9]* | "") die "NETNS_TAG must be lower-case letters and digits, got '$tag'" ;;
esac
[ ${#tag} -le 8 ] || die "NETNS_TAG must be at most 8 characters (interface names are short), got '$tag'"
case "$link" in veth | wire) ;; *) die "NETNS_LINK must be veth or wire, got '$link'" ;; esac

ns() { echo "$tag-$1"; }

addr_of() {
    case "$1" in
        disc) echo "$subnet.1" ;;
        load) echo "$subnet.100" ;;
        n[0-9]*) echo "$subnet.$((10 + ${1#n}))" ;;
        *) die "no host '$1': hosts are disc, n1 .. nN and load" ;;
    esac
}

hosts() { cat "$state/hosts" 2>/dev/null || true; }

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces); run it with sudo"
    command -v ip >/dev/null 2>&1 || die "ip not found; install iproute2 (apt-get install iproute2)"
}

# --- links ------------------------------------------------------------------

# Adds host H (namespace, link, address) to the switch.
add_host() {
    h=$1 a=$(addr_of "$1")
    ip netns add "$(ns "$h")"
    echo "$h" >>"$state/hosts"
    if [ "$link" = veth ]; then
        ip link add "$tag-$h" netns "$(ns "$h")" type veth peer name "$h" netns "$sw"
        ip -n "$sw" link set "$h" master br0 up
    else
        # netwire made the TAP in the switch namespace: move it to the host.
        ip -n "$sw" link set "$tag-$h" netns "$(ns "$h")"
    fi
    ip -n "$(ns "$h")" link set "$tag-$h" name eth0
    [ "$link" = wire ] && ip -n "$(ns "$h")" link set eth0 mtu 65000
    ip -n "$(ns "$h")" addr add "$a/24" dev eth0
    ip -n "$(ns "$h")" link set eth0 up
    ip -n "$(ns "$h")" link set lo up
}

start_wire() {
    [ -x "$bin/netwire" ] || die "$bin/netwire not found; run: make tools (or NETNS_LINK=veth)"
    : >"$state/wire.conf"
    taps=""
    for h in "$@"; do taps="$taps $tag-$h"; done
    # shellcheck disable=SC2086
    ip netns exec "$sw" "$bin/netwire" --conf "$state/wire.conf" $taps \
        >"$state/netwire.out" 2>"$state/netwire.log" 3>&- &
    echo $! >"$state/netwire.pid"
    wait_for "netwire to make its devices" 10 grep -q 'netwire: ready' "$state/netwire.out"
}

# A neighbour lookup left unanswered during a cut can fail a connection
# made right after the heal ("no route to host") when its last probe was
# lost: after every change of the links, every host forgets them.
forget_neighbours() {
    for h in $(hosts); do ip -n "$(ns "$h")" neigh flush dev eth0 2>/dev/null || true; done
}

# The impairment and the cut hosts, as the links apply them.
apply_links() {
    delay=$(sed -n 's/^delay=//p' "$state/impair" 2>/dev/null || true)
    jitter=$(sed -n 's/^jitter=//p' "$state/impair" 2>/dev/null || true)
    loss=$(sed -n 's/^loss=//p' "$state/impair" 2>/dev/null || true)
    cut=$(tr '\n' ',' <"$state/cut" 2>/dev/null | sed 's/,$//' || true)
    if [ "$link" = wire ]; then
        {
            echo "# written by netns-cluster.sh"
            echo "delay=${delay:-0}"
            echo "jitter=${jitter:-0}"
            echo "loss=${loss:-0}"
            [ -n "$cut" ] && echo "cut=$(echo "$cut" | sed "s/\([^,]*\)/$tag-\1/g")"
        } >"$state/wire.conf.new"
        mv "$state/wire.conf.new" "$state/wire.conf"
        before=$(grep -c 'netwire: delay' "$state/netwire.log" || true)
        kill -HUP "$(cat "$state/netwire.pid")"
        wait_for "netwire to take the new settings" 5 \
            sh -c "[ \$(grep -c 'netwire: delay' '$state/netwire.log') -gt $before ]"
        forget_neighbours
        return
    fi
    for h in $(hosts); do
        if grep -qx "$h" "$state/cut" 2>/dev/null; then
            ip -n "$sw" link set "$h" down
        else
            ip -n "$sw" link set "$h" up
        fi
        ip -n "$(ns "$h")" link set eth0 up
        tc -n "$(ns "$h")" qdisc del dev eth0 root 2>/dev/null || true
        if [ -n "$delay$loss" ]; then
            tc -n "$(ns "$h")" qdisc add dev eth0 root netem \
                delay "${delay:-0}ms" "${jitter:-0}ms" loss "${loss:-0}%" ||
                die "tc netem failed: this kernel has no sch_netem; use NETNS_LINK=wire (make tools builds netwire)"
        fi
    done
    forget_neighbours
}

# --- programs ---------------------------------------------------------------

start_prog() {
    h=$1
    alive "$h" && die "$h already runs (pid $(cat "$state/$h.pid"))"
    a=$(addr_of "$h")
    log=${DCHAT_LOG_LEVEL:-info}
    : >"$state/$h.out"
    case "$h" in
        disc)
            # shellcheck disable=SC2086
            ip netns exec "$(ns disc)" "$bin/discovery" --listen "$a:$DPORT" \
                --data-dir "$state/disc" --cluster-secret-file "$state/cluster.secret" \
                --log-level "$log" ${DISCOVERY_ARGS:-} \
                >>"$state/disc.out" 2>>"$state/disc.log" 3>&- &
            ;;
        n*)
            # shellcheck disable=SC2086
            ip netns exec "$(ns "$h")" "$bin/node" --discovery "http://$(addr_of disc):$DPORT" \
                --listen "$a" --client-port "$CPORT" --sync-port "$SPORT" \
                --data-dir "$state/$h" --cluster-secret-file "$state/cluster.secret" \
                --log-level "$log" ${NODE_ARGS:-} \
                >>"$state/$h.out" 2>>"$state/$h.log" 3>&- &
            ;;
        *) die "$h runs no program of the cluster" ;;
    esac
    echo $! >"$state/$h.pid"
    wait_for "$h to listen" 20 started "$h"
}

stop_prog() {
    h=$1 sig=${2:-TERM}
    alive "$h" || { rm -f "$state/$h.pid"; return 0; }
    pid=$(cat "$state/$h.pid")
    kill "-$sig" "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 600 ]; then
            echo "netns-cluster: $h (pid $pid) did not stop in 30 s after SIG$sig; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.05
    done
    rm -f "$state/$h.pid"
}

# Every node listed active by discovery and linked to all the others.
mesh_complete() {
    want=$(($1 - 1))
    for h in $(hosts); do
        case "$h" in n*) ;; *) continue ;; esac
        up=$(ip netns exec "$(ns "$h")" curl -fsS --max-time 2 "http://$(addr_of "$h"):$CPORT/api/status" |
            grep -o '"state": *"up"' | wc -l) || return 1
        [ "$up" -ge "$want" ] || return 1
    done
}

# --- commands ---------------------------------------------------------------

up() {
    n=${1:-3}
    if ! { [ "$n" -ge 1 ] && [ "$n" -le 80 ]; } 2>/dev/null; then
        die "N must be 1 .. 80, got '$n'"
    fi
    need_root
    for b in discovery node; do
        [ -x "$bin/$b" ] || die "$bin/$b not found; run make first (or set DCHAT_BIN_DIR)"
    done
    command -v curl >/dev/null 2>&1 || die "curl not found; install it (apt-get install curl)"
    ip netns list | grep -q "^$tag-" &&
        die "namespaces named $tag-* exist already; run: $0 down (or pick another NETNS_TAG)"
    rm -rf "$state"
    mkdir -p "$state"
    trap 'echo "netns-cluster: up failed; removing what it made" >&2; down >/dev/null 2>&1 || true' EXIT
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/cluster.secret")

    ip netns add "$sw"
    ip -n "$sw" link set lo up
    all="disc load"
    i=1
    while [ $i -le "$n" ]; do all="$all n$i"; i=$((i + 1)); done
    if [ "$link" = veth ]; then
        ip -n "$sw" link add br0 type bridge
        ip -n "$sw" link set br0 up
    else
        # shellcheck disable=SC2086
        start_wire $all
    fi
    : >"$state/hosts"
    for h in $all; do add_host "$h"; done
    : >"$state/cut"
    : >"$state/impair"
    : >"$state/partition"
    echo "$link" >"$state/link"

    start_prog disc
    i=1
    while [ $i -le "$n" ]; do start_prog "n$i"; i=$((i + 1)); done
    wait_for "all $n nodes to link to each other" 60 mesh_complete "$n"
    trap - EXIT
    echo "netns-cluster: $n nodes up and meshed; discovery on http://$(addr_of disc):$DPORT; state in $state"
}

down() {
    need_root
    for h in $(hosts); do
        case "$h" in disc | n*) stop_prog "$h" TERM || true ;; esac
    done
    # Anything else started in a host namespace (exec) goes with it.
    for h in $(hosts) sw; do
        for pid in $(ip netns pids "$(ns "$h")" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    if [ -s "$state/netwire.pid" ]; then
        kill -TERM "$(cat "$state/netwire.pid")" 2>/dev/null || true
    fi
    for name in $(ip netns list | sed -n "s/^\($tag-[a-z0-9]*\).*/\1/p"); do
        ip netns del "$name" || echo "netns-cluster: could not remove namespace $name" >&2
    done
    rm -f "$state"/*.pid "$state/hosts"
    echo "netns-cluster: down (logs and data kept in $state)"
}

status() {
    [ -s "$state/hosts" ] || { echo "netns-cluster: no cluster (tag $tag)"; return 0; }
    echo "links: $(cat "$state/link"); impair: $(tr '\n' ' ' <"$state/impair")cut: $(tr '\n' ' ' <"$state/cut")partitioned: $(tr '\n' ' ' <"$state/partition")"
    for h in $(hosts); do
        s=-
        [ -f "$state/$h.pid" ] && { if alive "$h"; then s="running (pid $(cat "$state/$h.pid"))"; else s=dead; fi; }
        printf '%-5s %-15s %s\n' "$h" "$(addr_of "$h")" "$s"
    done
}

# partition_routes add|del H: blackhole routes between node H and the
# other nodes, in both directions (packets vanish, as in a real partition).
partition_routes() {
    op=$1 h=$2
    hosts | grep -qx "$h" || die "no host '$h' in the cluster"
    case "$h" in n*) ;; *) die "partition takes a node (n1 .. nN), got '$h'" ;; esac
    for o in $(hosts); do
        case "$o" in n*) ;; *) continue ;; esac
        [ "$o" = "$h" ] && continue
        ip -n "$(ns "$h")" route "$op" blackhole "$(addr_of "$o")/32"
        ip -n "$(ns "$o")" route "$op" blackhole "$(addr_of "$h")/32"
    done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    up) up "$@" ;;
    down) down ;;
    status) status ;;
    exec)
        [ $# -ge 2 ] || die "usage: $0 exec HOST CMD..."
        h=$1
        shift
        hosts | grep -qx "$h" || die "no host '$h' in the cluster (tag $tag): $(hosts | tr '\n' ' ')"
        exec ip netns exec "$(ns "$h")" "$@"
        ;;
    stop) need_root; stop_prog "${1:?usage: $0 stop HOST [SIGNAL]}" "${2:-TERM}" ;;
    start) need_root; start_prog "${1:?usage: $0 start HOST}" ;;
    cut)
        need_root
        h=${1:?usage: $0 cut HOST}
        hosts | grep -qx "$h" || die "no host '$h' in the cluster"
        grep -qx "$h" "$state/cut" || echo "$h" >>"$state/cut"
        link=$(cat "$state/link")
        apply_links
        ;;
    heal)
        need_root
        if [ $# -ge 1 ]; then
            grep -vx "$1" "$state/cut" >"$state/cut.new" || true
            mv "$state/cut.new" "$state/cut"
        else
            : >"$state/cut"
        fi
        link=$(cat "$state/link")
        apply_links
        ;;
    partition)
        need_root
        h=${1:?usage: $0 partition HOST}
        grep -qx "$h" "$state/partition" 2>/dev/null && die "$h is partitioned already"
        partition_routes add "$h"
        echo "$h" >>"$state/partition"
        ;;
    join)
        need_root
        h=${1:?usage: $0 join HOST}
        grep -qx "$h" "$state/partition" 2>/dev/null || die "$h is not partitioned"
        partition_routes del "$h"
        grep -vx "$h" "$state/partition" >"$state/partition.new" || true
        mv "$state/partition.new" "$state/partition"
        ;;
    impair)
        need_root
        : >"$state/impair.new"
        for kv in "$@"; do
            case "$kv" in
                delay=[0-9]* | jitter=[0-9]* | loss=[0-9]*) echo "$kv" >>"$state/impair.new" ;;
                *) die "impair takes delay=MS jitter=MS loss=PCT, got '$kv'" ;;
            esac
        done
        mv "$state/impair.new" "$state/impair"
        link=$(cat "$state/link")
        apply_links
        ;;
    *)
        echo "usage: $0 up [N] | down | status | exec HOST CMD... | stop HOST [SIG] | start HOST |" >&2
        echo "       cut HOST | heal [HOST] | partition HOST | join HOST |" >&2
        echo "       impair [delay=MS] [jitter=MS] [loss=PCT]" >&2
        exit 64
        ;;
esac
