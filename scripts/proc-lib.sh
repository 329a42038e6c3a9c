# proc-lib.sh: the shell functions cluster.sh and netns-cluster.sh share
# (sourced, not run). The caller sets PROC_NAME (the prefix of its
# messages) and PROC_DIR (where each program NAME has NAME.out, its
# stdout, NAME.log, its stderr, and NAME.pid).

# fd 3 stays the script's stderr: wait_for silences its command's own.
# Programs started in the background must not inherit it (3>&-): a caller
# reading the script's stderr to its end would wait for them.
exec 3>&2

die() { echo "$PROC_NAME: $*" >&2; exit 1; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds.
# (Shell functions share variables with their caller: the ones here carry
# a w_ prefix so that they cannot clobber the caller's loop counter.)
wait_for() {
    w_what=$1 w_limit=$2
    shift 2
    w_tries=0
    while ! "$@" >/dev/null 2>&1; do
        w_tries=$((w_tries + 1))
        [ "$w_tries" -gt $((w_limit * 20)) ] && die "timed out after ${w_limit}s waiting for $w_what; see the logs in $PROC_DIR"
        sleep 0.05
    done
}

# alive NAME: its pid file names a running process.
alive() { [ -s "$PROC_DIR/$1.pid" ] && kill -0 "$(cat "$PROC_DIR/$1.pid")" 2>/dev/null; }

# started NAME: true once NAME printed its "listening" line; exits with
# NAME's own error (the last lines of its log) when it died before that.
started() {
    grep -q 'listening' "$PROC_DIR/$1.out" && return 0
    alive "$1" && return 1
    echo "$PROC_NAME: $1 exited before it listened; the end of $PROC_DIR/$1.log:" >&3
    tail -n 5 "$PROC_DIR/$1.log" >&3
    exit 1
}
