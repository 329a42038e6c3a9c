#!/bin/sh
# Takes the screenshots of the web page that the docs show again:
# web-chat.png (the chat, GET /) and web-status.png (the status view,
# GET /status), into docs/img or the directory given. It runs the browser
# test that takes them (tests/e2e/test_web.py, test_status_view_and_screenshots:
# a two-node cluster, a few messages) with DCHAT_SCREENSHOT_DIR set, on the
# sanitizer build that make test uses, building it if needed.
#   scripts/web-screenshots.sh [DIR]
set -eu
cd "$(dirname "$0")/.."
dir=${1:-docs/img}
mkdir -p "$dir"
out=$(cd "$dir" && pwd)
sh scripts/deps.sh test
make --no-print-directory BUILD=build/test SANITIZE=address,undefined OPT="-O1 -g" \
    build/test/bin/node build/test/bin/discovery
bin=$(cd build/test/bin && pwd)
cd tests/e2e
DCHAT_BIN_DIR="$bin" DCHAT_SCREENSHOT_DIR="$out" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    test_web.py -k test_status_view_and_screenshots
echo "web-screenshots: wrote $out/web-chat.png and $out/web-status.png"
