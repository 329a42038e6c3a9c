#!/bin/sh
# Runs the test suites against a sanitizer build and prints one summary line:
#   tests: N passed, N failed, N skipped
# A skipped test (it prints its reason) never fails the run.
# usage: scripts/run-tests.sh BUILD_DIR [unit|e2e]   (both when omitted)
# The unit tests are the cmocka binaries under BUILD_DIR/tests; the e2e tests
# are pytest files under tests/e2e, run with Debian's python3 (where apt put
# pytest, websockets and requests) against the binaries in BUILD_DIR/bin.
set -u
build=${1:?usage: run-tests.sh BUILD_DIR [unit|e2e]}
which=${2:-all}
passed=0
failed=0
skipped=0
failures=""

# ASan: fail loudly; UBSan: stop at the first report, with a stack.
export ASAN_OPTIONS="abort_on_error=0:detect_leaks=1:strict_string_checks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

if [ "$which" != e2e ]; then
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        out=$("$t" 2>&1)
        rc=$?
        printf '%s\n' "$out"
        run=$(printf '%s\n' "$out" | sed -n 's/^\[==========\] \([0-9]*\) test(s) run\..*/\1/p' | tail -n 1)
        ok=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' | tail -n 1)
        skip=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s), listed below:.*/\1/p' | tail -n 1)
        run=${run:-0}
        ok=${ok:-0}
        skip=${skip:-0}
        passed=$((passed + ok))
        skipped=$((skipped + skip))
        failed=$((failed + run - ok - skip))
        if [ "$rc" != 0 ] && [ "$run" = "$((ok + skip))" ]; then
            failed=$((failed + 1)) # crashed or a sanitizer report outside a test
        fi
        [ "$rc" != 0 ] && failures="$failures $(basename "$t")"
    done
fi

if [ "$which" != unit ]; then
    py=/usr/bin/python3
    xml="$build/e2e-junit.xml"
    rm -f "$xml"
    DCHAT_BIN_DIR="$(cd "$build/bin" && pwd)" "$py" -m pytest -q -rfEs \
        -p no:cacheprovider --junitxml="$xml" tests/e2e
    rc=$?
    if [ -f "$xml" ]; then
        counts=$("$py" - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skip, bad, skip)
PY
)
        set -- $counts
        passed=$((passed + $1))
        failed=$((failed + $2))
        skipped=$((skipped + $3))
    fi
    if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then
        failures="$failures e2e"
        [ -f "$xml" ] || failed=$((failed + 1))
    fi
fi

echo
[ -n "$failures" ] && echo "failing:$failures"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && [ -z "$failures" ]
