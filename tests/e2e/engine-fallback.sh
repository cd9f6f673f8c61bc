# io engine selection: the log names the engine; where io_uring is taken
# away (seccomp, as container runtimes do) the server falls back to libaio
# and says why; --engine uring then refuses to start with a clear error.
# engine-independent
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 64M
check_engine() { # check_engine WANT_IN_LOG CMD...
    local want=$1; shift
    rm -f "$SOCK"; : >"$T/server.log"
    "$@" "$T/disk" --nbd "unix:$SOCK" --control "$CTL" 2>"$T/server.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
    qemu-io -f raw -c 'write -P 9 0 64k' -c 'read -P 9 0 64k' "$URI" >/dev/null || fail "I/O"
    stop_server
    cat "$T/server.log"
    grep -q "io engine: $want" "$T/server.log" || fail "log should say: io engine: $want"
}
check_engine "io_uring" "$NBDM" serve
check_engine "libaio" "$NBDM" serve --engine aio
check_engine "libaio, buffered (fallback: io_uring unavailable" "${BUILD_DIR:-$ROOT/build}/tools/no-uring" "$NBDM" serve

if "${BUILD_DIR:-$ROOT/build}/tools/no-uring" "$NBDM" serve --engine uring "$T/disk" --nbd "unix:$SOCK" \
    --control "$CTL" 2>"$T/err"; then
    fail "forced io_uring without io_uring must fail"
fi
cat "$T/err"
grep -q "cannot start the uring io engine" "$T/err" || fail "message"
