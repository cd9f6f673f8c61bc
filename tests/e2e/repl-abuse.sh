# Bad input on the replication port (repl_abuse.py): refused with a log
# line, memory bounded, the daemon keeps running, and a real primary
# connects and replicates afterwards.
. "$(dirname "$0")/lib.bash"

make_hosts 1
new_disk "$T/s1.img" 128M --skip-initial-sync
new_disk "$T/p.img" 128M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
ip netns exec "$(ns p)" "$PY" "$(dirname "$0")/repl_abuse.py" 10.77.1.2 7789 "${NODE_PID[s1]}" \
    "$DATA_SIZE" || { tail -20 "$T/s1.log"; fail "abuse cases"; }
grep -m 20 -E 'closing it' "$T/s1.log" || true
for why in "bad magic" "checksum" "version" "length not valid" "larger than ours" \
           "no HELLO within" "unrelated data" "before the handshake is over" "outside the disk" \
           "answer to nothing we sent" "bitmap nobody asked for"; do
    grep -q "$why" "$T/s1.log" || fail "no log line saying '$why'"
done

log "a real primary after all that"
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789
wait_peers p 1
qemu-io -f raw -c 'write -P 0x61 0 4M' -c flush "$URI" >/dev/null
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "not replicated after the abuse"

log "a secondary whose disk is smaller is refused by the primary"
new_disk "$T/small.img" 64M --skip-initial-sync
start_node s1b s1 "$T/small.img" --role secondary --listen 10.77.1.2:7790
start_node p2 p "$T/p.img" --role primary --nbd "unix:$T/p2.sock" --peer 10.77.1.2:7790
sleep 1
grep -q "smaller than ours" "$T/p2.log" || { cat "$T/p2.log"; fail "smaller secondary not refused"; }
stop_node p2
stop_node s1b
