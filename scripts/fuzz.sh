#!/bin/sh
# Runs the libFuzzer targets one after another, each for a bounded time, and
# fails when one finds a crash, a leak or a broken invariant.
# usage: scripts/fuzz.sh BIN_DIR SECONDS [TARGET...]   (all when none named)
# TARGET is a name under tests/fuzz/corpus/ (ws_decoder, ...): the binary is
# BIN_DIR/fuzz_TARGET. Each run starts from a scratch copy of the target's
# seed corpus, so that what libFuzzer adds never lands in the repository; a
# crashing input is kept under BIN_DIR/crashes/TARGET/, and its log next to
# it. One process at a time: the targets share the machine with the rest.
set -u
bindir=${1:?usage: fuzz.sh BIN_DIR SECONDS [TARGET...]}
seconds=${2:?usage: fuzz.sh BIN_DIR SECONDS [TARGET...]}
shift 2
corpora=tests/fuzz/corpus
if [ $# -eq 0 ]; then
    set --
    for f in "$bindir"/fuzz_*; do
        [ -x "$f" ] && set -- "$@" "${f##*/fuzz_}"
    done
fi
[ $# -gt 0 ] || { echo "fuzz: no targets in $bindir; build them with 'make fuzz'" >&2; exit 1; }

# ASan: leaks count as crashes; UBSan stops at the first report (the build
# has -fno-sanitize-recover) and prints a stack.
export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

failed=""
for t in "$@"; do
    bin="$bindir/fuzz_$t"
    [ -x "$bin" ] || { echo "fuzz: no target $bin; build it with 'make fuzz'" >&2; failed="$failed $t"; continue; }
    [ -d "$corpora/$t" ] || { echo "fuzz: no seed corpus $corpora/$t for $t; add a few inputs there" >&2; failed="$failed $t"; continue; }
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/dchat-fuzz-$t.XXXXXX")
    cp "$corpora/$t"/* "$scratch"/ 2>/dev/null
    crashes="$bindir/crashes/$t"
    mkdir -p "$crashes"
    log="$crashes/last-run.log"
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$crashes/" "$scratch" >"$log" 2>&1
    rc=$?
    rm -rf "$scratch"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$rc" != 0 ]; then
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "fuzz: $t FAILED (exit $rc): crashing input in ${input:-(none written)}, log in $log;" \
             "reproduce with: $bin ${input:-FILE}" >&2
        grep -m 3 -E 'ERROR: |runtime error|invariant broken' "$log" >&2
        failed="$failed $t"
    else
        echo "fuzz: $t: ${runs:-?} executions in ${seconds}s, no crash"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed (inputs under $bindir/crashes/)" >&2
    exit 1
fi
