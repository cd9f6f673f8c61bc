# Checksum resync and online verify. A secondary whose disk differs from the
# primary's in 1% of its blocks (changed behind the daemons' backs) is
# invalidated (`nbdmirror invalidate`: every block out of sync); with
# --resync-csums the primary moves only the blocks whose hashes differ:
# about 1% of the data (plus the hashes), the rest is found equal. Then one
# block changed behind the secondary's back is found by `nbdmirror verify`
# (hashes only on the wire), reported in status and the log, and resynced.
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
new_disk "$T/s1.img" 256M --skip-initial-sync
new_disk "$T/p.img" 256M --skip-initial-sync
both() {
    start_node s1 s1 "$T/s1.img" --role secondary --listen $S
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --resync-csums
    wait_synced p
}
both
"$PY" - "$URI" <<'PY'
import nbd, random, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
rnd = random.Random(5)
for off in range(0, 192 << 20, 4 << 20):
    h.pwrite(rnd.randbytes(4 << 20), off)
h.flush()
PY
stop_node p
stop_node s1
NB=$((DATA_SIZE / 4096 / 100)) # 1% of the blocks
"$PY" - "$T/s1.img" "$DATA_SIZE" "$NB" <<'PY'
import os, random, sys
path, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(9)
blocks = rnd.sample(range(size // 4096), n)
fd = os.open(path, os.O_WRONLY)
for b in blocks:
    os.pwrite(fd, rnd.randbytes(4096), b * 4096)
os.fsync(fd)
print(f"{n} blocks changed on the secondary's disk")
PY
both
cmp -s -n "$DATA_SIZE" "$T/p.img" "$T/s1.img" && fail "the disks should differ before the resync"

log "invalidate the secondary: a checksum resync of every block"
"$NBDM" invalidate --control "$T/s1.ctl"
wait_synced p 1 120
reason=$(jfield p 'p["last_resync_reason"]')
sent=$(jfield p 'p["last_resync_bytes"]')
skipped=$(jfield p 'p["last_resync_skipped_bytes"]')
echo "$reason: $sent bytes sent, $skipped bytes equal by hash ($NB blocks differed)"
[ "$reason" = "checksum resync" ] || fail "not a checksum resync: $reason"
[ "$sent" -ge $((NB * 4096)) ] && [ "$sent" -le $((NB * 4096 * 3 / 2)) ] ||
    fail "sent $sent bytes for $NB blocks that differ"
[ "$skipped" -ge $((DATA_SIZE * 97 / 100)) ] || fail "only $skipped bytes found equal"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the checksum resync"
echo "checksum resync: equal"

log "online verify finds a block changed behind the secondary's back"
both
dd if=/dev/urandom of="$T/s1.img" bs=4096 seek=12345 count=1 conv=notrunc status=none
"$NBDM" verify --control "$T/p.ctl" || fail "verify refused"
for _ in $(seq 600); do # (kept once the verify is over)
    [ "$(jfield p 'p["verify_mismatch_bytes"]')" -gt 0 ] && break
    sleep 0.1
done
mismatch=$(jfield p 'p["verify_mismatch_bytes"]')
echo "verify: $mismatch bytes differ"
[ "$mismatch" = 4096 ] || fail "verify found $mismatch bytes, expected the one block"
grep -q "online verify done.*1 blocks" "$T/p.log" || fail "the log does not report the block"
wait_synced p
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after verify and resync"
echo "verify: found, resynced, equal"
