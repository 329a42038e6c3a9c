#!/bin/sh
# The latency curve of issue 12: delivery latency of the seed topology
# (3 senders on one server, one receiver per server) under a paced,
# open-loop load at fractions of the peak rate. For each system measured
# it starts a fresh cluster, finds the peak with `bench --max MAX` (the
# largest round's deliveries/s), then RUNS times, for each fraction of that
# peak (10 25 50 75 %), starts a fresh cluster again and runs `bench --rate
# R --duration DURATION` at that fraction of the peak message rate. It
# prints one row per fraction (offered msgs/s and deliveries/s; p50, p99
# and p99.9 as min-max over the runs; late sends) and writes the raw rows
# as CSV and a PNG plot.
#
#   scripts/latency-curve.sh [BENCH_OPTIONS...]      options for every bench, e.g. --size 100
#
# Environment: PROTO (dchat, nats, or both: the same curve for a 3-server
# NATS cluster too, alternating; default dchat), RUNS (2), MAX (256000),
# PEAK_OPTIONS (options for the peak bench only, e.g. "--window 0" for
# flat out; default the window), DURATION (seconds per paced run, 10),
# FRACTIONS (percent of the peak, "10 25 50 75"), RESULTS
# (run/latency-<timestamp>), DCHAT_BIN_DIR (build/bin), NODE_ARGS (extra
# node options), BENCH_LIMIT (seconds one bench may take, 1800). Loopback
# only; stops all it started, also on failure or Ctrl-C. Use an optimised
# build (`make`) and an otherwise idle machine for figures worth keeping.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
proto=${PROTO:-dchat}
runs=${RUNS:-2}
max=${MAX:-256000}
duration=${DURATION:-10}
fractions=${FRACTIONS:-10 25 50 75}
peak_options=${PEAK_OPTIONS:-}
bin=${DCHAT_BIN_DIR:-build/bin}
limit=${BENCH_LIMIT:-1800}
results=${RESULTS:-run/latency-$(date +%Y%m%d-%H%M%S)}

die() { echo "latency: $*" >&2; exit 1; }

# number NAME VALUE MIN MAX: VALUE is a whole number in [MIN, MAX].
number() {
    case $2 in ''|*[!0-9]*) die "$1 must be a whole number from $3 to $4, got '$2'" ;; esac
    [ "$2" -ge "$3" ] && [ "$2" -le "$4" ] || die "$1 must be a whole number from $3 to $4, got '$2'"
}
number RUNS "$runs" 1 100
number MAX "$max" 1 100000000
number DURATION "$duration" 1 86400
number BENCH_LIMIT "$limit" 1 86400
[ -n "$fractions" ] || die "FRACTIONS is empty; give percentages of the peak, e.g. FRACTIONS=\"10 25 50 75\""
for f in $fractions; do number "each of FRACTIONS" "$f" 1 1000; done
case $proto in
    dchat) sides=dchat ;;
    nats) sides=nats ;;
    both) sides="dchat nats" ;;
    *) die "PROTO must be dchat, nats or both, got '$proto'" ;;
esac
# shellcheck source=scripts/bench-lib.sh
. "$here/bench-lib.sh"
LIB_WHO=latency
if [ "$proto" = dchat ]; then
    bench_tools "$here" "$bin" plot
else
    bench_tools "$here" "$bin" compare
fi
bin=$BENCH_BIN

mkdir -p "$results" || die "cannot create the results directory $results"
results=$(cd "$results" && pwd)
curve="$results/curve.csv"
peaks="$results/peaks.csv"
export DCHAT_BIN_DIR="$bin"
export DCHAT_RUN_DIR="$results/dchat"
NATS_DIR="$results/nats"

both_sides_setup "$here"

# run_bench SIDE WHAT OUT BENCH_ARGS...: starts SIDE's cluster afresh, runs
# the bench on it with --format csv and the arguments, writes its output to
# OUT and stops the cluster. Exits with the bench's errors when it fails
# (something lost, duplicated, reordered or late); passes its warnings on
# (a generator that fell behind). WHAT names the run in messages.
run_bench() {
    b_side=$1 b_what=$2 b_out=$3
    shift 3
    b_err="$results/$b_side.stderr"
    if [ "$b_side" = dchat ]; then
        sh "$here/cluster.sh" start 3 >/dev/null
        set -- --discovery "http://127.0.0.1:$DISCOVERY_PORT" "$@"
    else
        nats_start
        set -- --proto nats --nats "$NATS_URLS" "$@"
    fi
    b_rc=0
    # --foreground: timeout stays in our process group, so that Ctrl-C
    # reaches the bench too.
    timeout --foreground "$limit" "$bin/bench" --format csv "$@" >"$b_out" 2>"$b_err" || b_rc=$?
    if [ "$b_side" = dchat ]; then sh "$here/cluster.sh" stop >/dev/null; else nats_stop; fi
    if [ "$b_rc" != 0 ]; then
        b_why="exit $b_rc"
        [ "$b_rc" = 124 ] && b_why="stopped after BENCH_LIMIT=$limit s"
        echo "latency: $b_side $b_what: the bench failed ($b_why); its errors:" >&2
        cat "$b_err" >&2
        exit 1
    fi
    if [ -s "$b_err" ]; then
        sed "s/^/latency: $b_side $b_what: /" "$b_err" >&2
    fi
    rm -f "$b_err"
}

commit=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "# latency curve: $sides; peak from bench --max $max${peak_options:+ $peak_options}${*:+ $*};" \
     "then bench --rate at $fractions % of it for $duration s, $runs runs each; commit $commit"

# The peak of each side: the largest round's deliveries/s, and the message
# rate that gives it (deliveries per message = expected / messages).
echo "side,messages,expected,deliveries_per_s,peak_msgs_per_s" >"$peaks"
for side in $sides; do
    # shellcheck disable=SC2086
    run_bench "$side" "peak" "$results/$side-peak.csv" --max "$max" $peak_options "$@"
    tail -n 1 "$results/$side-peak.csv" | awk -F, -v s="$side" -v OFS=, '
        $3 != $2 { exit 1 }
        { printf "%s,%s,%s,%s,%.0f\n", s, $1, $2, $6, $6 * $1 / $2 }' >>"$peaks" ||
        die "$side: the peak run's last round did not deliver everything; see $results/$side-peak.csv"
    echo "$side peak: $(awk -F, -v s="$side" '$1 == s { printf "%s deliveries/s in the round of %s messages = %s msgs/s", $4, $2, $5 }' "$peaks")" \
         "(every round verified)"
done

first=1
r=1
while [ "$r" -le "$runs" ]; do
    for f in $fractions; do
        for side in $sides; do
            peak=$(awk -F, -v s="$side" '$1 == s { print $5 }' "$peaks")
            rate=$(awk -v p="$peak" -v f="$f" 'BEGIN { r = int(p * f / 100 + 0.5); print r < 1 ? 1 : r }')
            out="$results/$side-$f-run$r.csv"
            run_bench "$side" "$f % run $r" "$out" --rate "$rate" --duration "$duration" "$@"
            if [ "$first" = 1 ]; then
                echo "side,fraction_pct,run,peak_msgs_per_s,$(head -n 1 "$out")" >"$curve"
                first=0
            fi
            tail -n +2 "$out" | sed "s/^/$side,$f,$r,$peak,/" >>"$curve"
            echo "$side $f % run $r: $rate msgs/s verified (each socket got each message once, in order);" \
                 "$(tail -n 1 "$out" | awk -F, '{ printf "p50 %s / p99 %s / p99.9 %s ms, %s sent late", $8, $10, $11, $16 }')"
        done
    done
    r=$((r + 1))
done

/usr/bin/python3 "$here/latency-report.py" "$curve" "$results/latency.png" ||
    die "cannot summarise $curve (see the error above)"
echo "raw runs: $curve; peaks: $peaks; plot: $results/latency.png"
