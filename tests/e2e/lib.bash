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
    if [ -n "$SERVER_PID" ]; then kill -9 "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap _run_cleanups EXIT

# fio's verify state files would land in the current directory (the repository)
fio() { command fio --verify_state_save=0 "$@"; }

fail() {
    echo "FAIL: $*" >&2
    # the nodes' own logs say why; they go with the temporary directory
    local f
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        echo "--- last lines of $(basename "$f"):" >&2
        tail -n 40 "$f" >&2
    done
    exit 1
}
skip() { echo "$*"; exit 77; }
log() { echo "--- $*"; }

# The command prefix and flags that select this run's io engine.
engine_cmd() {
    case $ENGINE_MODE in
    uring) echo "$NBDM serve --engine uring" ;;
    aio) echo "$NBDM serve --engine aio" ;;
    fallback) echo "${BUILD_DIR:-$ROOT/build}/tools/no-uring $NBDM serve" ;;
    *) fail "unknown ENGINE_MODE $ENGINE_MODE" ;;
    esac
}

# refuses_values OPTION MESSAGE VALUE...: serve with OPTION VALUE must exit
# with an error whose text holds MESSAGE, for every VALUE
refuses_values() {
    local opt=$1 msg=$2 bad
    shift 2
    for bad in "$@"; do
        if $(engine_cmd) "$T/disk" --nbd "unix:$SOCK" --control "$CTL" "$opt" "$bad" 2>"$T/err"; then
            fail "$opt $bad accepted"
        fi
        grep -q -- "$msg" "$T/err" || { cat "$T/err"; fail "no clear error for $opt $bad"; }
    done
}

# new_disk PATH SIZE [create-md options]: a sparse file with fresh internal
# metadata; DATA_SIZE is then its exported size
new_disk() {
    local path=$1 size=$2
    shift 2
    truncate -s "$size" "$path"
    DATA_SIZE=$("$NBDM" create-md "$path" "$@" | sed -n 's/.*exported size \([0-9]*\) bytes/\1/p')
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

# detach_loop DEV: losetup -d, and wait until the kernel has let go of the
# backing file (the detach finishes asynchronously; unmounting what holds
# that file before then fails with EBUSY)
detach_loop() {
    losetup -d "$1" 2>/dev/null || true
    for _ in $(seq 200); do
        [ -n "$(losetup -n -O BACK-FILE "$1" 2>/dev/null)" ] || return 0
        sleep 0.05
    done
    return 0
}

# unmount_fuse DIR: fusermount3 -u, retried while busy, lazily at the end
unmount_fuse() {
    mountpoint -q "$1" || return 0
    for _ in $(seq 100); do
        fusermount3 -u "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fusermount3 -u -z "$1" || true
}

# ---- several hosts: network namespaces joined by veth pairs ----
# make_hosts N: namespace "p" (the primary) and "s1".."sN", host i joined to
# p by its own veth pair: p is 10.77.i.1, si is 10.77.i.2. These addresses
# exist only inside namespaces this test made.
NSP=nbdm$$
ns() { echo "$NSP-$1"; }
veth() { echo "v$$$1"; } # $1 like p3 or s3: at most 15 characters
make_hosts() {
    ip netns add "$(ns p)"
    on_exit "ip netns del $(ns p)"
    ip -n "$(ns p)" link set lo up
    for i in $(seq 1 "$1"); do
        ip netns add "$(ns s$i)"
        on_exit "ip netns del $(ns s$i)"
        ip -n "$(ns s$i)" link set lo up
        ip link add "$(veth p$i)" netns "$(ns p)" type veth peer name "$(veth s$i)" netns "$(ns s$i)"
        ip -n "$(ns p)" addr add "10.77.$i.1/24" dev "$(veth p$i)"
        ip -n "$(ns s$i)" addr add "10.77.$i.2/24" dev "$(veth s$i)"
        ip -n "$(ns p)" link set "$(veth p$i)" up
        ip -n "$(ns s$i)" link set "$(veth s$i)" up
    done
}

# start_node NAME HOST DISK [serve options]: nbdmirror serve in namespace
# HOST, control socket $T/NAME.ctl, log $T/NAME.log
declare -A NODE_PID
start_node() {
    local name=$1 host=$2 disk=$3
    shift 3
    rm -f "$T/$name.ctl" # one a killed node left behind would look ready
    # shellcheck disable=SC2046
    ip netns exec "$(ns "$host")" $(engine_cmd) "$disk" --control "$T/$name.ctl" "$@" \
        2>>"$T/$name.log" &
    NODE_PID[$name]=$!
    on_exit "kill -9 ${NODE_PID[$name]} 2>/dev/null"
    for _ in $(seq 100); do
        [ -S "$T/$name.ctl" ] && return 0
        kill -0 "${NODE_PID[$name]}" 2>/dev/null || { cat "$T/$name.log"; fail "$name exited at start"; }
        sleep 0.05
    done
    fail "$name did not start"
}

# stop_node NAME: SIGTERM must end it with status 0 within 10 seconds
stop_node() {
    local pid=${NODE_PID[$1]} rc=0
    kill -TERM "$pid"
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && { tail "$T/$1.log"; fail "$1 still running 10 s after SIGTERM"; }
    wait "$pid" || rc=$?
    [ $rc -eq 0 ] || { tail -20 "$T/$1.log"; fail "$1 exited with status $rc"; }
}

# status_json NAME [python expression over s]: prints it
status_json() {
    "$NBDM" status --control "$T/$1.ctl" --json
}

# status_has NAME PATTERN: NAME's JSON status contains PATTERN (no pipe into
# grep -q, whose early exit could kill the writer with SIGPIPE under pipefail)
status_has() {
    local out
    out=$(status_json "$1")
    grep -q -- "$2" <<<"$out"
}

# wait_peers NAME N: until N peers of NAME are Established (20 s at most)
wait_peers() {
    for _ in $(seq 200); do
        n=$(status_json "$1" | "$PY" -c 'import json,sys; print(sum(p["replication"] == "Established" for p in json.load(sys.stdin)["peers"]))')
        [ "$n" -ge "$2" ] && return 0
        sleep 0.1
    done
    status_json "$1"
    fail "$1: fewer than $2 peers established"
}

# wait_sock PATH: a Unix socket appears (5 s at most)
wait_sock() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
    fail "no socket $1"
}

# wait_synced NAME [N] [SECONDS]: N peers (default 1) of NAME are Connected,
# Established, UpToDate and nothing out of sync (60 s at most)
wait_synced() {
    local n=${2:-1} secs=${3:-60} got
    for _ in $(seq $((secs * 10))); do
        got=$(status_json "$1" | "$PY" -c 'import json,sys; print(sum(p["replication"] == "Established" and p["peer_disk"] == "UpToDate" and p["out_of_sync_bytes"] == 0 for p in json.load(sys.stdin)["peers"]))')
        [ "$got" -ge "$n" ] && return 0
        sleep 0.1
    done
    "$NBDM" status --control "$T/$1.ctl"
    fail "$1: fewer than $n peers in sync after $secs s"
}

# jfield NAME EXPR: a Python expression over the status s (p = its first peer)
jfield() {
    status_json "$1" | "$PY" -c "import json,sys; s = json.load(sys.stdin); p = (s['peers'] or [{}])[0]; print($2)"
}

# make_tls DIR: test credentials in DIR: server/ (ca-cert.pem, server-cert.pem
# and server-key.pem, for localhost and the test hosts' addresses, usable by
# a client too), client/ (ca-cert.pem, client-cert.pem, client-key.pem),
# nocert/ (the CA only), other/ (all of server/ from another CA), keys.psk
# and wrong.psk (psktool files for user alice)
make_tls() {
    local d=$1 ip
    mkdir -p "$d/server" "$d/client" "$d/nocert" "$d/other"
    printf 'cn = nbdmirror test CA\nca\ncert_signing_key\nexpiration_days = 7\n' >"$d/ca.info"
    {
        printf 'organization = nbdmirror tests\ncn = localhost\ndns_name = localhost\n'
        printf 'ip_address = 127.0.0.1\n'
        for ip in 1 2 3; do printf 'ip_address = 10.77.%d.1\nip_address = 10.77.%d.2\n' $ip $ip; done
        printf 'tls_www_server\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 7\n'
    } >"$d/node.info"
    sed 's/^cn = localhost/cn = client/' "$d/node.info" >"$d/client.info"
    certtool --generate-privkey --outfile "$d/ca-key.pem" 2>/dev/null
    certtool --generate-self-signed --load-privkey "$d/ca-key.pem" --template "$d/ca.info" \
        --outfile "$d/ca-cert.pem" 2>/dev/null
    local sub
    for sub in server client; do
        certtool --generate-privkey --outfile "$d/$sub/$sub-key.pem" 2>/dev/null
        certtool --generate-certificate --load-privkey "$d/$sub/$sub-key.pem" \
            --load-ca-certificate "$d/ca-cert.pem" --load-ca-privkey "$d/ca-key.pem" \
            --template "$d/$( [ $sub = server ] && echo node || echo client).info" \
            --outfile "$d/$sub/$sub-cert.pem" 2>/dev/null
        cp "$d/ca-cert.pem" "$d/$sub/"
    done
    cp "$d/ca-cert.pem" "$d/nocert/"
    certtool --generate-privkey --outfile "$d/other/ca-key.pem" 2>/dev/null
    certtool --generate-self-signed --load-privkey "$d/other/ca-key.pem" --template "$d/ca.info" \
        --outfile "$d/other/ca-cert.pem" 2>/dev/null
    certtool --generate-privkey --outfile "$d/other/server-key.pem" 2>/dev/null
    certtool --generate-certificate --load-privkey "$d/other/server-key.pem" \
        --load-ca-certificate "$d/other/ca-cert.pem" --load-ca-privkey "$d/other/ca-key.pem" \
        --template "$d/node.info" --outfile "$d/other/server-cert.pem" 2>/dev/null
    psktool -u alice -p "$d/keys.psk" >/dev/null
    psktool -u alice -p "$d/wrong.psk" >/dev/null
    [ -s "$d/server/server-cert.pem" ] && [ -s "$d/other/server-cert.pem" ] && [ -s "$d/keys.psk" ] ||
        fail "could not make the test credentials"
}

# data_equal A B: the data areas (DATA_SIZE bytes) of two disk images are identical
data_equal() { cmp -n "$DATA_SIZE" "$1" "$2"; }
