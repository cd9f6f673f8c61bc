# The activity log: the primary of a 1 GiB device is SIGKILLed under fio
# verify load confined to 64 MiB (protocol A, so writes it had not sent yet
# were answered); restarted as primary, it resyncs the extents its log
# named: some of those 64 MiB (plus at most one extent on either side), far
# less than the device. The data areas are equal, and a fio verify pass
# through the primary over the range succeeds. A second round with a log of
# only 64 extents and writes over the whole device (extents go cold and hot
# all the time): after a crash the resync is still bounded by the log's
# size, and the disks end equal.
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
new_disk "$T/s1.img" 1G --skip-initial-sync
new_disk "$T/p.img" 1G --skip-initial-sync
OFF=$((384 << 20)) LEN=$((64 << 20))
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
startp() { start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --protocol A "$@"; }
load() { # load SECONDS SIZE OFFSET: random writes with verify headers
    fio --name=load --ioengine=nbd --uri="$URI" --rw=randwrite --bs=16k --iodepth=16 \
        --offset="$3" --size="$2" --time_based --runtime="$1" --verify=crc32c \
        --verify_backlog=256 --output-format=terse >"$T/fio.out" 2>&1 &
    LOAD=$!
}
crash() {
    kill -9 "${NODE_PID[p]}"
    wait "${NODE_PID[p]}" 2>/dev/null || true
    wait "$LOAD" 2>/dev/null || true # fio fails with the server gone: expected
}

log "SIGKILL the primary under load on 64 MiB of 1 GiB"
startp
wait_synced p
load 30 $LEN $OFF
sleep 2.5
crash
startp
grep "crashed while primary" "$T/p.log" || fail "the restart did not replay the activity log"
wait_synced p
sent=$(jfield p 'p["last_resync_bytes"]')
echo "the resync sent $sent bytes"
[ "$sent" -gt 0 ] && [ "$sent" -le $((LEN + (8 << 20))) ] ||
    fail "expected at most the 64 MiB the log could name, the resync sent $sent bytes"
fio --name=check --ioengine=nbd --uri="$URI" --rw=randwrite --bs=16k --iodepth=16 \
    --offset=$OFF --size=$LEN --verify=crc32c --do_verify=1 --output-format=terse >/dev/null ||
    fail "fio verify pass through the restarted primary"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the activity log's resync"
echo "equal"

log "a log of 64 extents, writes over the whole device, a crash"
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
startp --al-extents 64
wait_synced p
load 30 1000M 0
sleep 3
crash
startp --al-extents 64
wait_synced p
sent=$(jfield p 'p["last_resync_bytes"]')
echo "the resync sent $sent bytes (the log holds at most 64 x 4 MiB)"
[ "$sent" -gt 0 ] && [ "$sent" -le $((64 * 4 << 20)) ] || fail "the resync sent $sent bytes"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the small log's resync"
echo "equal"
