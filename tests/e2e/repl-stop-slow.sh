# engine-independent
# SIGTERM on a protocol A primary whose peer sits behind a very slow link
# (tc tbf, 2 Mbit/s) with 24 MiB of acknowledged writes still queued for it:
# the primary exits 0 within 10 s (it does not wait minutes for the slow
# link to drain), marks what the peer did not confirm, and when it comes back
# the peer is resynced by bitmap to byte-identical data.
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
new_disk "$T/s1.img" 256M --skip-initial-sync
new_disk "$T/p.img" 256M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
tc -n "$(ns p)" qdisc add dev "$(veth p1)" root tbf rate 2mbit burst 32kb latency 400ms
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --protocol A
wait_peers p 1

log "24 MiB written under protocol A: acknowledged once queued"
fio --name=w --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size=24M \
    --output-format=terse --terse-version=3 >"$T/fio" || { cat "$T/fio"; fail "fio"; }
behind=$(jfield p 'p["lag_bytes"]')
echo "the peer has not acknowledged $behind bytes"
[ "$behind" -gt $((8 << 20)) ] || fail "the slow link kept up ($behind bytes behind): nothing to test"

log "SIGTERM: out within 10 s, status 0"
start=$(date +%s%N)
stop_node p
echo "stopped in $(( ($(date +%s%N) - start) / 1000000 )) ms"

log "back up: the peer is resynced by bitmap, the disks are equal"
tc -n "$(ns p)" qdisc del dev "$(veth p1)" root
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --protocol A
wait_synced p 1 120
grep -q "bitmap resync" "$T/p.log" || fail "no bitmap resync after the stop"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "the disks differ"
echo "equal"
