# Shared helpers for the end-to-end tests. Each test gets its own directory
# and removes everything it made (processes, mounts, loop devices) on exit.
set -euo pipefail

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
NBDM=${NBDM:-$ROOT/build/nbdmirror}
PY=/usr/bin/python3 # Debian's, which has the libnbd module
ENGINE_MODE=${ENGINE_MODE:-uring}
T=$(mktemp -d /tmp/nbdm-test.XXXXXX)
SOCK=$T/nbd.sock
CTL=$T/ctl.sock
URI="nbd+unix:///?socket=$SOCK"
SERVER_PID=
_cleanups=()

on_exit() { _cleanups+=("$*"); }
_run_cleanups() {
    local i
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
    rm -rf "$T"
}
trap _run_cleanups EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "$*"; exit 77; }
log() { echo "--- $*"; }

# The command prefix and flags that select this run's io engine.
engine_cmd() {
    case $ENGINE_MODE in
    uring) echo "$NBDM serve --engine uring" ;;
    aio) echo "$NBDM serve --engine aio" ;;
    fallback) echo "$ROOT/build/tools/no-uring $NBDM serve" ;;
    *) fail "unknown ENGINE_MODE $ENGINE_MODE" ;;
    esac
}

# new_disk PATH SIZE: a sparse file with fresh internal metadata
new_disk() {
    truncate -s "$2" "$1"
    "$NBDM" create-md "$1" >/dev/null
}

# start_server DISK [serve options]: serves on $SOCK, control on $CTL
start_server() {
    local disk=$1
    shift
    rm -f "$SOCK"
    # shellcheck disable=SC2046
    $(engine_cmd) "$disk" --nbd "unix:$SOCK" --control "$CTL" "$@" 2>>"$T/server.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        [ -S "$SOCK" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$T/server.log"; fail "server exited at start"; }
        sleep 0.05
    done
    cat "$T/server.log"
    fail "server did not start listening"
}

# stop_server: SIGTERM must end it with status 0 within 10 seconds
stop_server() {
    local pid=$SERVER_PID rc=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid"
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        cat "$T/server.log"
        fail "server still running 10 s after SIGTERM"
    fi
    wait "$pid" || rc=$?
    SERVER_PID=
    [ $rc -eq 0 ] || { cat "$T/server.log"; fail "server exited with status $rc after SIGTERM"; }
}

server_alive() { kill -0 "$SERVER_PID" 2>/dev/null; }

# Drop a file's page cache, so every run starts from the same state.
drop_cache() {
    sync "$1"
    "$PY" -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$1"
}

export_size() { nbdinfo --size "$URI"; }
