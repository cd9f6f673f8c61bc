# Malformed and hostile clients (see abuse.py); the daemon survives them all
# and still shuts down cleanly. Out of file descriptors (a hard limit of 48),
# 100 connections are accepted and closed rather than spun on (the daemon's
# CPU stays low, one warning says why), and a real client works once they go.
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 64M
start_server "$T/disk"
"$PY" "$(dirname "$0")/abuse.py" "$SOCK" "$SERVER_PID" || { tail -30 "$T/server.log"; fail "abuse cases"; }
server_alive || fail "server died"
grep -c 'closing the connection' "$T/server.log" || true
stop_server

log "out of file descriptors"
rm -f "$SOCK"
# shellcheck disable=SC2046
prlimit --nofile=48:48 $(engine_cmd) "$T/disk" --nbd "unix:$SOCK" --control "$CTL" 2>>"$T/server.log" &
SERVER_PID=$!
wait_sock "$SOCK"
"$PY" - "$SOCK" "$SERVER_PID" <<'PY' || fail "the daemon spun on connections it could not accept"
import os, socket, sys, time
def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
conns = [socket.socket(socket.AF_UNIX) for _ in range(100)]
for s in conns:
    s.connect(sys.argv[1])
time.sleep(0.5)
t0 = ticks(sys.argv[2])
time.sleep(2)
used = (ticks(sys.argv[2]) - t0) / os.sysconf("SC_CLK_TCK")
print(f"daemon CPU over 2 s with 100 connections and no fds: {used:.2f} s")
sys.exit(0 if used < 1.0 else 1)  # a busy loop would take about 2 s
PY
grep -q "refusing connections until some close" "$T/server.log" || fail "no warning about running out of fds"
server_alive || fail "server died out of fds"
nbdinfo --size "$URI" >/dev/null || fail "a real client after the connections closed"
stop_server
