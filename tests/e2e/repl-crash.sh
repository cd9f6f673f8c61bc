# Crashes. (1) Order: a client writes epochs of concurrent writes, each
# closed by FLUSH; the secondary is SIGKILLed at a random moment; its disk
# holds every block of every epoch before the newest epoch it holds any
# block of. (2) Protocol C: the primary is SIGKILLed under load; every write
# the client saw acknowledged is on the secondary's disk.
. "$(dirname "$0")/lib.bash"

make_hosts 1
crash="$(dirname "$0")/repl_crash.py"

for round in 1 2 3; do
    log "order, round $round"
    rm -f "$T/p.img" "$T/s1.img" "$T/p.ctl" "$T/s1.ctl" "$T/epochs"
    new_disk "$T/s1.img" 64M --skip-initial-sync
    new_disk "$T/p.img" 64M --skip-initial-sync
    start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol A
    wait_peers p 1
    "$PY" "$crash" epochs "$URI" "$T/epochs" &
    client=$!
    for _ in $(seq 100); do [ "$(cat "$T/epochs" 2>/dev/null | wc -l)" -ge 5 ] && break; sleep 0.05; done
    sleep "0.$((RANDOM % 5))$((RANDOM % 10))" # then a random moment
    kill -9 "${NODE_PID[s1]}"
    sleep 0.3
    kill "$client" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    n=$(wc -l <"$T/epochs")
    echo "$n epochs finished on the primary"
    [ "$n" -gt 5 ] || fail "too few epochs to judge"
    "$PY" "$crash" check-epochs "$T/s1.img" "$n" || fail "the secondary's disk breaks epoch order"
    stop_node p
done

log "protocol C: SIGKILL the primary under load"
# a slow link keeps writes queued and in flight at the moment of the kill
tc -n "$(ns p)" qdisc add dev "$(veth p1)" root tbf rate 40mbit burst 32kb latency 100ms
rm -f "$T/p.img" "$T/s1.img" "$T/p.ctl" "$T/s1.ctl"
new_disk "$T/s1.img" 64M --skip-initial-sync
new_disk "$T/p.img" 64M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
wait_peers p 1
"$PY" "$crash" acked "$URI" "$T/acked" &
client=$!
sleep 1.5
kill -9 "${NODE_PID[p]}"
wait "$client" || true
stop_node s1 # cleanly: what it received is flushed
"$PY" "$crash" check-acked "$T/s1.img" "$T/acked" || fail "an acknowledged write is missing"
