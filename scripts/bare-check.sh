#!/bin/sh
# Proves the README's two commands on a machine that has never seen the
# project: a bare Debian 12 root (debootstrap minbase with git, make and
# ca-certificates only), the current commit cloned into it, and inside it,
# as root, exactly `make run` (which must print the verified table) and then
# `make test` (which must pass).
#
#   scripts/bare-check.sh          (as root; installs debootstrap if missing)
#
# The pristine root is made once and kept in $BARE_CACHE (default
# /var/tmp/dchat-bare), so later runs cost seconds to set up; every run
# works on a throw-away overlay of it (a copy where overlayfs is missing),
# so each one starts bare. /proc, /sys and /dev are bind-mounted for the
# run and everything is unmounted and removed at exit, also on failure.
# Logs of the two commands: $BARE_CACHE/make-run.log, make-test.log.
# It checks the commit at HEAD, not uncommitted changes.
set -eu

cache=${BARE_CACHE:-/var/tmp/dchat-bare}
base=$cache/bookworm-minbase
work=$cache/work
root=$work/root
repo=$(cd "$(dirname "$0")/.." && pwd)

say() { echo "bare-check: $*"; }
die() { echo "bare-check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot); run it as root"
commit=$(git -C "$repo" rev-parse HEAD) || die "$repo is not a git checkout"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
    say "note: uncommitted changes are not checked; this checks $commit"
fi

# --- the pristine root, made once ----------------------------------------
if [ ! -x "$base/usr/bin/make" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null ||
            die "cannot install debootstrap; check the network or the apt sources"
    fi
    say "making a bare Debian 12 root in $base (once; kept for later runs)"
    rm -rf "$base.tmp"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include=git,make,ca-certificates bookworm \
        "$base.tmp" >"$cache/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $cache/debootstrap.log"
    mv "$base.tmp" "$base"
fi

# --- a throw-away root for this run ---------------------------------------
mounted=""
cleanup() {
    rc=$?
    set +e
    # Anything still running inside (a daemon a failed run left) would keep
    # the mounts busy.
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2>/dev/null
    done
    for m in $mounted; do
        umount -R "$m" 2>/dev/null || umount -R -l "$m"
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -d "$work" ]; then
    # A run killed before its cleanup: take its mounts down first.
    grep " $work/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
fi
mkdir -p "$work/upper" "$work/tmp" "$root"
if mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/tmp" "$root" 2>/dev/null; then
    mounted="$root"
else
    say "no overlayfs here; copying the root instead"
    cp -a "$base/." "$root/"
fi
mount -t proc proc "$root/proc" && mounted="$root/proc $mounted"
for d in sys dev; do
    mount --rbind "/$d" "$root/$d" && mount --make-rslave "$root/$d" && mounted="$root/$d $mounted"
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Every Debian machine resolves localhost: the installer writes these lines
# (a container gets them from its runtime). debootstrap writes no
# /etc/hosts, and chromedriver reaches the browser it starts at localhost.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

git clone --quiet --no-checkout "$repo" "$root/root/dchat"
git -C "$root/root/dchat" checkout --quiet --detach "$commit"

# --- the README's commands ------------------------------------------------
# in_root LOG COMMAND: runs COMMAND in the clone, as root, with a clean
# environment, output to LOG; prints what it ran, its time, its last lines.
in_root() {
    log=$1
    shift
    say "running in the bare root: cd ~/dchat && $*"
    t0=$(date +%s)
    set +e
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        sh -c "cd /root/dchat && $*" </dev/null >"$log" 2>&1
    rc=$?
    set -e
    say "'$*' exited $rc after $(( $(date +%s) - t0 )) s; its last lines:"
    tail -n 12 "$log" | sed 's/^/    /'
    return "$rc"
}

start=$(date +%s)
fail=""
if in_root "$cache/make-run.log" make run; then
    # The last round's row: as many received as expected, none lost,
    # duplicated or reordered.
    awk '$1 == 8000 && $2 == $3 && $10 == 0 && $11 == 0 && $12 == 0 { ok = 1 } END { exit !ok }' \
        "$cache/make-run.log" ||
        fail="$fail make-run(no verified 8000 row in the table)"
else
    fail="$fail make-run"
fi
if in_root "$cache/make-test.log" make test; then
    grep -q '^tests: [0-9]* passed, 0 failed' "$cache/make-test.log" ||
        fail="$fail make-test(no summary line)"
else
    fail="$fail make-test"
fi

say "checked $commit in $(( $(date +%s) - start )) s"
[ -z "$fail" ] || die "FAILED:$fail (logs in $cache)"
say "OK: make run and make test pass on a bare Debian 12"
