# A burst of 200 clients connecting at once to the NBD Unix socket: none is
# refused with EAGAIN (the listen backlog is the system's maximum, not 128),
# and each gets the NBD greeting and completes a handshake. The burst comes
# while the daemon is stopped (SIGSTOP), as when its loop is busy for a
# moment, so that no client is accepted before the backlog has to hold all
# of them; then again with the daemon running.
# engine-independent
. "$(dirname "$0")/lib.bash"

somaxconn=$(cat /proc/sys/net/core/somaxconn)
[ "$somaxconn" -ge 200 ] || skip "net.core.somaxconn is $somaxconn: the system allows no backlog of 200"

new_disk "$T/disk" 64M
start_server "$T/disk"
on_exit "kill -CONT $SERVER_PID 2>/dev/null"
for stopped in 1 0; do
    log "200 connects at once, daemon $([ $stopped = 1 ] && echo stopped || echo running)"
    "$PY" - "$SOCK" "$SERVER_PID" "$stopped" <<'EOF' || { tail -20 "$T/server.log"; fail "burst"; }
import os, selectors, signal, socket, struct, sys, time
SOCK, PID, STOPPED = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
N = 200
NBDMAGIC, IHAVEOPT, REPMAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
OPT_ABORT, REP_ACK = 2, 1

if STOPPED:
    os.kill(PID, signal.SIGSTOP)
socks, refused = [], 0
try:
    for _ in range(N):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            s.connect(SOCK)
        except BlockingIOError:
            refused += 1
            s.close()
            continue
        socks.append(s)
finally:
    if STOPPED:
        os.kill(PID, signal.SIGCONT)
print(f"{len(socks)} connected, {refused} refused with EAGAIN", flush=True)
if refused:
    sys.exit(1)

# every one is accepted and greeted: read the 18-byte greeting from all
# of them together (60 s at most), then say flags and NBD_OPT_ABORT
sel = selectors.DefaultSelector()
got = {}
for s in socks:
    sel.register(s, selectors.EVENT_READ)
    got[s] = b""
deadline = 60
end = time.monotonic() + deadline
while sel.get_map() and time.monotonic() < end:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        chunk = s.recv(18 - len(got[s]))
        if not chunk:
            print("a connection was closed before its greeting")
            sys.exit(1)
        got[s] += chunk
        if len(got[s]) == 18:
            sel.unregister(s)
if sel.get_map():
    print(f"{len(sel.get_map())} connections got no greeting in {deadline} s")
    sys.exit(1)
for s in socks:
    magic, opt, _ = struct.unpack(">QQH", got[s])
    assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
ok = 0
for s in socks:
    s.setblocking(True)
    s.settimeout(30)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, OPT_ABORT, 0))
    magic, o, typ, ln = struct.unpack(">QIII", s.recv(20, socket.MSG_WAITALL))
    ok += magic == REPMAGIC and o == OPT_ABORT and typ == REP_ACK and ln == 0
    s.close()
print(f"{ok} of {N} greeted and answered NBD_OPT_ABORT")
sys.exit(0 if ok == N else 1)
EOF
done
server_alive || fail "the daemon died"
stop_server
