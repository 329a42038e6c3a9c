#!/bin/sh
# Installs the Debian packages the build and the tests need, and only those
# that are missing: when everything is there it costs one dpkg-query.
# Run as root (CI and the dev machines are); otherwise it says what to install.
set -eu

PKGS="gcc make pkg-config libuv1-dev libwslay-dev libjansson-dev node-llhttp \
libssl-dev libsqlite3-dev sqlite3 libcmocka-dev python3 python3-pytest \
python3-websockets python3-requests procps iproute2 curl"

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
$SUDO apt-get update -qq || { echo "deps: apt-get update failed; check the network or apt sources" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "deps: apt-get install failed for:$missing" >&2
    exit 1
}
