# NBD protocol features through libnbd and a raw socket (protocol.py).
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 128M
start_server "$T/disk"
"$PY" "$(dirname "$0")/protocol.py" "$SOCK" || { tail -20 "$T/server.log"; fail "protocol"; }
stop_server
