#!/bin/sh
# dchat against NATS on the same work, side by side in one run (issue 12).
# RUNS times (default 3) it alternates: a fresh dchat cluster (discovery
# and 3 nodes, scripts/cluster.sh) measured by `bench --senders 3 --max
# MAX`, then a fresh 3-server NATS cluster (full-mesh routes, a WebSocket
# listener without TLS, otherwise nats-server's defaults) measured by
# `bench --proto nats` with the same options. Around every round it reads
# the servers' CPU time (user + system) and peak RSS (VmHWM) from /proc.
# It prints one row per round (medians over the runs: deliveries/s of each
# side, the ratio dchat/NATS, each side's CPU seconds per million
# deliveries, peak RSS) and writes the raw rows as CSV and a PNG plot.
#
#   scripts/compare-nats.sh [BENCH_OPTIONS...]        e.g. --window 0
#
# Environment: RUNS (3), MAX (256000), DCHAT_BIN_DIR (build/bin), RESULTS
# (run/compare-<timestamp>), DISCOVERY_PORT (a free port), NODE_ARGS (extra
# node options), BENCH_LIMIT (seconds one bench may take, 1800). Installs
# nats-server and python3-matplotlib from Debian when missing. Loopback
# only; stops all it started, also on failure or Ctrl-C. Use an optimised
# build (`make`) and an otherwise idle machine for figures worth keeping.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-3}
max=${MAX:-256000}
bin=${DCHAT_BIN_DIR:-build/bin}
limit=${BENCH_LIMIT:-1800}
results=${RESULTS:-run/compare-$(date +%Y%m%d-%H%M%S)}

die() { echo "compare: $*" >&2; exit 1; }

case $runs in ''|*[!0-9]*) die "RUNS must be a number from 1 to 100, got '$runs'" ;; esac
[ "$runs" -ge 1 ] && [ "$runs" -le 100 ] || die "RUNS must be a number from 1 to 100, got '$runs'"
case $max in ''|*[!0-9]*) die "MAX must be a positive number of messages, got '$max'" ;; esac
# shellcheck source=scripts/bench-lib.sh
. "$here/bench-lib.sh"
LIB_WHO=compare
bench_tools "$here" "$bin" compare
bin=$BENCH_BIN

mkdir -p "$results" || die "cannot create the results directory $results"
results=$(cd "$results" && pwd)
raw="$results/runs.csv"
natsdir="$results/nats"
export DCHAT_BIN_DIR="$bin"
export DCHAT_RUN_DIR="$results/dchat"
NATS_DIR=$natsdir

both_sides_setup "$here"

tck=$(getconf CLK_TCK)

# measure SIDE RUN PIDS BENCH_ARGS...: runs the bench and writes its CSV
# rows to $raw, each with the servers' CPU seconds for that round (read as
# the row arrives: the bench prints and flushes a row the moment a round
# ends, and its header once every socket is ready) and their peak RSS.
measure() {
    m_side=$1 m_run=$2 m_pids=$3
    shift 3
    m_rcfile="$results/.bench-rc"
    m_errfile="$results/$m_side-run$m_run.stderr"
    rm -f "$m_rcfile"
    # --foreground: timeout stays in our process group, so that Ctrl-C
    # reaches the bench too.
    { rc=0; timeout --foreground "$limit" "$bin/bench" --senders 3 --max "$max" --format csv "$@" \
          2>"$m_errfile" || rc=$?; echo "$rc" >"$m_rcfile"; } |
        {
            # shellcheck disable=SC2086
            prev=$(cpu_ticks $m_pids)
            while IFS= read -r line; do
                # shellcheck disable=SC2086
                now=$(cpu_ticks $m_pids)
                case $line in
                    messages,*) ;;
                    *)
                        # shellcheck disable=SC2086
                        rss=$(peak_rss_kib $m_pids)
                        echo "$m_side,$m_run,$line" | awk -F, -v OFS=, -v c="$((now - prev))" \
                            -v t="$tck" -v r="$rss" \
                            '{ cs = c / t; pm = $5 > 0 ? cs / ($5 / 1e6) : 0
                               printf "%s,%.2f,%.4f,%.1f\n", $0, cs, pm, r / 1024 }' >>"$raw"
                        ;;
                esac
                prev=$now
            done
        }
    m_rc=$(cat "$m_rcfile" 2>/dev/null || echo 1)
    rm -f "$m_rcfile"
    if [ "$m_rc" != 0 ]; then
        echo "compare: $m_side run $m_run: the bench failed (exit $m_rc); its errors" \
             "(also in $m_errfile):" >&2
        cat "$m_errfile" >&2
        exit 1
    fi
    [ -s "$m_errfile" ] || rm -f "$m_errfile"
    echo "$m_side run $m_run: every round verified (each socket got each message once, in order)"
}

echo "# dchat vs NATS: bench --senders 3 --max $max${*:+ $*}, $runs runs each, alternating;" \
     "commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)," \
     "$(nats-server --version 2>/dev/null | head -n 1)"
echo "side,run,messages,expected,received,total_s,send_s,deliveries_per_s,p50_ms,p99_ms,max_ms,lost,duplicated,reordered,bench_cpu_pct,servers_cpu_s,servers_cpu_s_per_million,servers_peak_rss_mib" >"$raw"

r=1
while [ "$r" -le "$runs" ]; do
    sh "$here/cluster.sh" start 3 >/dev/null
    measure dchat "$r" "$(dchat_pids)" --discovery "http://127.0.0.1:$DISCOVERY_PORT" "$@"
    sh "$here/cluster.sh" stop >/dev/null

    nats_start
    measure nats "$r" "$NATS_PIDS" --proto nats --nats "$NATS_URLS" "$@"
    nats_stop
    r=$((r + 1))
done

/usr/bin/python3 "$here/compare-report.py" "$raw" "$results/compare.png" ||
    die "cannot summarise $raw (see the error above)"
echo "raw runs: $raw; plot: $results/compare.png"
