# engine-independent
# A control socket that closes a connection without answering (a daemon
# that is stopping, or anything else listening there): every command that
# talks to it reports an error and exits non-zero, and none is killed by
# SIGPIPE, silently. 'nbdmirror down' polls a stopping daemon exactly so,
# and died that way when the daemon closed between its connect and its write.
. "$(dirname "$0")/lib.bash"

FAKE=$T/fake.ctl
"$PY" - "$FAKE" >"$T/fake.out" 2>&1 <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()  # without reading the command or answering
EOF
on_exit "kill $! 2>/dev/null"
for _ in $(seq 100); do [ -S "$FAKE" ] && break; sleep 0.05; done
[ -S "$FAKE" ] || fail "the fake control socket did not come up: $(cat "$T/fake.out")"

# down and adjust find the control socket through a resource file
printf '[resource]\nprotocol = C\n\n[node alpha]\naddress = 127.0.0.1:7789\n' >"$T/r0.res"
printf 'nbd = unix:%s/nbd.sock\ndisk = %s/a.img\ncontrol = %s\n' "$T" "$T" "$FAKE" >>"$T/r0.res"

# try N CMD...: N runs; each must fail (not a signal) and say why, naming
# the socket (so it got as far as the socket, not stuck on its arguments)
try() {
    local n=$1 i rc
    shift
    for ((i = 0; i < n; i++)); do
        rc=0
        "$NBDM" "$@" >"$T/out" 2>&1 || rc=$?
        [ "$rc" -lt 128 ] || fail "'nbdmirror $*' was killed by signal $((rc - 128)) (run $i)"
        [ "$rc" -ne 0 ] || fail "'nbdmirror $*' succeeded against a socket that never answers: $(cat "$T/out")"
        grep -qF "$FAKE" "$T/out" || fail "'nbdmirror $*' failed (exit $rc) without naming the socket: $(cat "$T/out")"
    done
}

log "status, 300 times"
try 300 status --control "$FAKE"
log "the other commands that talk to a node, 30 times each"
for cmd in promote demote verify invalidate disconnect; do
    try 30 "$cmd" --control "$FAKE"
done
try 30 events --control "$FAKE"
try 30 down r0 --config "$T/r0.res" --node alpha
try 30 adjust r0 --config "$T/r0.res" --node alpha
echo "ok"
