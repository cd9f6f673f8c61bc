# Failover: ext4 through the primary's export (nbdfuse + loop), files
# written and synced, the primary SIGKILLed with the filesystem mounted.
# `nbdmirror promote` on the secondary makes it primary at once; its own
# export (read-only until then) now mounts read-write: every file synced
# before the kill is there, more are written, and e2fsck is clean. The old
# primary, started again as a secondary, is resynced from the new primary by
# bitmap (its activity log's extents and what the new primary wrote, not
# the whole disk: the writes it had made but never replicated are
# overwritten), and the data areas end equal.
. "$(dirname "$0")/lib.bash"

[ -e /dev/fuse ] || skip "no /dev/fuse: cannot mount an export with nbdfuse"
make_hosts 1
S=10.77.1.2:7789
SSOCK=$T/s1.sock
mkdir -p "$T/mnt"
LOOP= FUSE= NFUSE=0
teardown() {
    mountpoint -q "$T/mnt" && { umount "$T/mnt" 2>/dev/null || umount -l "$T/mnt"; }
    [ -n "$LOOP" ] && detach_loop "$LOOP"
    LOOP=
    if [ -n "$FUSE" ]; then
        unmount_fuse "$FUSE"
        fusermount3 -u -z "$FUSE" 2>/dev/null || true # nbdfuse died with its server
    fi
    FUSE=
    return 0
}
on_exit teardown
attach() { # attach SOCKET: the export as a block device in $LOOP
    NFUSE=$((NFUSE + 1))
    FUSE=$T/fuse$NFUSE
    mkdir -p "$FUSE"
    nbdfuse "$FUSE/disk" "nbd+unix:///?socket=$1" &
    for _ in $(seq 100); do [ -e "$FUSE/disk" ] && break; sleep 0.05; done
    LOOP=$(losetup --find --show "$FUSE/disk")
}
files() { # files DIR N SEED: N files of random sizes
    "$PY" - "$1" "$2" "$3" <<'PY'
import os, random, sys
d, n, rnd = sys.argv[1], int(sys.argv[2]), random.Random(int(sys.argv[3]))
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(rnd.randbytes(rnd.choice([100, 5000, 70000, 1 << 20])))
PY
}

new_disk "$T/s1.img" 1G --skip-initial-sync
new_disk "$T/p.img" 1G --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen $S --nbd "unix:$SSOCK"
# a log of 64 extents (256 MiB): mkfs touches the whole device, the log
# keeps the last extents only
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --protocol C --al-extents 64
wait_synced p

log "ext4 on the primary, files synced, then more written, then SIGKILL"
attach "$SOCK"
mkfs.ext4 -q -F "$LOOP"
mount "$LOOP" "$T/mnt"
files "$T/mnt/before" 300 1
sync
(cd "$T/mnt" && find before -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sums"
files "$T/mnt/unsynced" 50 2 # in the page cache; some may be on the disks
kill -9 "${NODE_PID[p]}"
wait "${NODE_PID[p]}" 2>/dev/null || true
teardown

log "promote the secondary: its export takes writes"
"$PY" - "nbd+unix:///?socket=$SSOCK" <<'PY'
import errno, nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert h.is_read_only(), "a secondary's export must be read-only"
print("secondary's export: read-only")
PY
"$NBDM" promote --control "$T/s1.ctl" || fail "promote after the primary died"
[ "$(jfield s1 's["role"]')" = primary ] || fail "not primary after promote"
attach "$SSOCK"
mount "$LOOP" "$T/mnt" # replays the journal: read-write
(cd "$T/mnt" && sha256sum --quiet -c "$T/sums") || fail "files synced before the kill differ on the new primary"
echo "all $(wc -l <"$T/sums") files synced before the kill are there"
files "$T/mnt/after" 200 3
sync
umount "$T/mnt"
e2fsck -fn "$LOOP" || fail "e2fsck on the new primary"
teardown

log "the old primary comes back as a secondary: resynced by bitmap"
start_node p p "$T/p.img" --role secondary --peer $S --al-extents 64
wait_synced s1 1 120
grep -h "crashed while primary" "$T/p.log" || fail "the old primary did not replay its activity log"
reason=$(jfield s1 'p["last_resync_reason"]')
sent=$(jfield s1 'p["last_resync_bytes"]')
echo "$reason: $sent bytes"
[ "$reason" = "bitmap resync" ] || fail "the old primary was resynced by $reason, not by bitmap"
[ "$sent" -lt $((DATA_SIZE / 2)) ] || fail "the resync moved $sent bytes: more than the log and the new writes"
stop_node s1
stop_node p
data_equal "$T/s1.img" "$T/p.img" || fail "data areas differ after failover and resync"
echo "equal"
