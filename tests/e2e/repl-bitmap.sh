# The dirty bitmap: a secondary of a 1 GiB device goes away (SIGKILL, then
# in a second round its veth link taken down), 5% of the device is written
# at random through the primary, and when it is back the resync moves
# between 1.00x and 1.05x of the bytes the primary's bitmap counted as out
# of sync (status out_of_sync_bytes, exact to the block), never the whole
# device; the data areas are equal (cmp). While it is away, status shows
# the out-of-sync bytes growing, and they go back to 0.
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
new_disk "$T/s1.img" 1G --skip-initial-sync
new_disk "$T/p.img" 1G --skip-initial-sync
NIOS=$(( (1 << 30) / 20 / 4096 )) # 5% of the device in 4 KiB blocks
start_s1() { start_node s1 s1 "$T/s1.img" --role secondary --listen $S --timeout 2; }
start_s1
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --protocol C --timeout 2
wait_synced p

# writes 5% of the device at random, each block once (fio's random map)
scatter() {
    fio --name=scatter --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 \
        --number_ios=$NIOS --size=1000M --randseed="$1" --output-format=terse >/dev/null ||
        fail "fio"
}
check_ratio() { # check_ratio WHAT DIRTY
    local sent
    sent=$(jfield p 'p["last_resync_bytes"]')
    echo "$1: $2 bytes out of sync, the resync sent $sent bytes"
    "$PY" -c "import sys; d, s = $2, $sent; r = s / d; print(f'ratio {r:.4f}'); sys.exit(0 if 1.0 <= r <= 1.05 else 1)" ||
        fail "$1: the resync sent $sent bytes for $2 out of sync (expected 1.00x to 1.05x)"
    [ "$(jfield p 'p["last_resync_reason"]')" = "bitmap resync" ] || fail "$1: not a bitmap resync"
}

log "SIGKILL the secondary, write 5%, restart it"
kill -9 "${NODE_PID[s1]}"
wait "${NODE_PID[s1]}" 2>/dev/null || true
scatter 1
dirty=$(jfield p 'p["out_of_sync_bytes"]')
written=$((NIOS * 4096))
[ "$dirty" -ge $((written * 95 / 100)) ] && [ "$dirty" -le $((written * 105 / 100)) ] ||
    fail "out_of_sync_bytes $dirty, but $written bytes were written while it was away"
start_s1
wait_synced p
check_ratio "killed" "$dirty"
[ "$(jfield p 'p["out_of_sync_bytes"]')" = 0 ] || fail "out of sync bytes left after the resync"

log "the veth link down, write 5%, link up"
ip -n "$(ns p)" link set "$(veth p1)" down
scatter 2 # waits about the timeout for the first write, then goes on without s1
for _ in $(seq 100); do [ "$(jfield p 'p["connection"]')" != Connected ] && break; sleep 0.1; done
dirty=$(jfield p 'p["out_of_sync_bytes"]')
echo "out of sync while the link is down: $dirty"
[ "$dirty" -ge $((written * 95 / 100)) ] || fail "out_of_sync_bytes $dirty while the link is down"
ip -n "$(ns p)" link set "$(veth p1)" up
wait_synced p 1 90
check_ratio "link down" "$dirty"

stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the bitmap resyncs"
echo "equal after both resyncs"
