#!/bin/sh
# Installs the Debian packages one purpose needs, and only those that are
# missing: when everything is there it costs one dpkg-query.
#   scripts/deps.sh build   compile the programs (make, make install)
#   scripts/deps.sh run     build, plus what make run's scripts call
#   scripts/deps.sh test    run, plus the test tools (make test)
#   scripts/deps.sh plot    run, plus the plotting library
#                           (scripts/plot.py, scripts/latency-curve.sh)
#   scripts/deps.sh compare run, plus NATS and the plotting library
#                           (scripts/compare-nats.sh, PROTO=nats latency-curve.sh)
#   scripts/deps.sh fuzz    build, plus clang and its libFuzzer (make fuzz)
# Run as root (CI is); otherwise it uses sudo, or says what to install.
set -eu

BUILD_PKGS="gcc libc6-dev make pkg-config libuv1-dev libjansson-dev \
node-llhttp libssl-dev libsqlite3-dev"
RUN_PKGS="$BUILD_PKGS curl"
# nats-server and python3-matplotlib: the comparison with NATS
# (scripts/compare-nats.sh), which tests/e2e/test_compare.py runs.
COMPARE_PKGS="$RUN_PKGS nats-server python3 python3-matplotlib procps"
# python3-matplotlib: scripts/plot.py (the bench's CSV as PNGs) and the
# plot of scripts/latency-curve.sh.
PLOT_PKGS="$RUN_PKGS python3 python3-matplotlib procps"
# docker-compose: only its config check of compose.yaml (installed without
# its recommended Docker engine, which nothing here starts). chromium,
# chromium-driver and python3-selenium: tests/e2e/test_web.py drives the
# node's web page in a headless browser. python3-matplotlib: test_plot.py
# and test_compare.py. iproute2: the fault tests' network namespaces
# (scripts/netns-cluster.sh, tests/e2e/test_faults.py).
TEST_PKGS="$RUN_PKGS sqlite3 libcmocka-dev python3 python3-pytest python3-websockets \
python3-requests python3-yaml procps openssl nats-server python3-matplotlib docker-compose \
chromium chromium-driver python3-selenium iproute2"
# libclang-rt-dev holds libFuzzer and the sanitizer runtimes for clang.
FUZZ_PKGS="$BUILD_PKGS clang libclang-rt-dev"

case "${1:-build}" in
    build) PKGS=$BUILD_PKGS ;;
    run) PKGS=$RUN_PKGS ;;
    test) PKGS=$TEST_PKGS ;;
    compare) PKGS=$COMPARE_PKGS ;;
    plot) PKGS=$PLOT_PKGS ;;
    fuzz) PKGS=$FUZZ_PKGS ;;
    *) echo "usage: $0 build|run|test|plot|compare|fuzz" >&2; exit 64 ;;
esac

missing=""
for p in $PKGS; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

echo "deps: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
    command -v sudo >/dev/null 2>&1 || {
        echo "deps: not root and no sudo; install as root: apt-get install$missing" >&2
        exit 1
    }
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "deps: apt-get update failed; check the network or the apt sources" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "deps: apt-get install failed for:$missing; run it by hand to see why" >&2
    exit 1
}
