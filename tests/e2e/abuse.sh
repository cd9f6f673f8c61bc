# Malformed and hostile clients (see abuse.py); the daemon survives them all
# and still shuts down cleanly.
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 64M
start_server "$T/disk"
"$PY" "$(dirname "$0")/abuse.py" "$SOCK" "$SERVER_PID" || { tail -30 "$T/server.log"; fail "abuse cases"; }
server_alive || fail "server died"
grep -c 'closing the connection' "$T/server.log" || true
stop_server
