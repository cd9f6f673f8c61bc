# Filesystems through a primary, checked on its secondary: mkfs.ext4 (then
# mkfs.ext2) through nbdfuse + loop on the primary, a tree of more than 6000
# directories and files (file-event mirroring built on FAM broke near 5000
# directories), sync, umount, clean stop; then e2fsck -fn on the secondary's
# image is clean and every file read from it, mounted read-only, has the
# primary's checksum. Then a ReiserFS, checked with reiserfsck on the
# secondary (this kernel cannot mount ReiserFS, so only mkfs and fsck).
. "$(dirname "$0")/lib.bash"

[ -e /dev/fuse ] || skip "no /dev/fuse: cannot mount the export with nbdfuse"
make_hosts 1
mkdir -p "$T/fuse" "$T/mnt" "$T/src" "$T/smnt"
"$PY" - "$T/src" <<'PY'
import os, random, sys
root, rnd = sys.argv[1], random.Random(11)
for d in range(6200):
    p = os.path.join(root, f"a{d % 50}", f"b{d}")
    os.makedirs(p)
    with open(os.path.join(p, "f"), "wb") as fh:
        fh.write(rnd.randbytes(rnd.choice([0, 10, 3000, 9000])))
with open(os.path.join(root, "big"), "wb") as fh:
    fh.write(rnd.randbytes(16 << 20))
PY
(cd "$T/src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sums"
ndirs=$(find "$T/src" -type d | wc -l)
echo "tree: $ndirs directories, $(wc -l <"$T/sums") files"

LOOP= SLOOP=
teardown() {
    mountpoint -q "$T/mnt" && umount "$T/mnt"
    [ -n "$LOOP" ] && detach_loop "$LOOP"
    LOOP=
    unmount_fuse "$T/fuse"
    mountpoint -q "$T/smnt" && umount "$T/smnt"
    [ -n "$SLOOP" ] && detach_loop "$SLOOP"
    SLOOP=
    return 0
}
on_exit teardown
attach() {
    nbdfuse "$T/fuse/disk" "$URI" &
    for _ in $(seq 100); do [ -e "$T/fuse/disk" ] && break; sleep 0.05; done
    LOOP=$(losetup --find --show "$T/fuse/disk")
}
pair() { # fresh disks, both nodes up and connected
    rm -f "$T/p.img" "$T/s1.img"
    new_disk "$T/s1.img" 320M --skip-initial-sync
    new_disk "$T/p.img" 320M --skip-initial-sync
    start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
    wait_peers p 1
}

for fs in ext4 ext2; do
    log "$fs"
    pair
    attach
    "mkfs.$fs" -q -F "$LOOP"
    mount "$LOOP" "$T/mnt"
    cp -a "$T/src/." "$T/mnt/"
    sync
    umount "$T/mnt"
    teardown
    stop_node p
    stop_node s1
    # the secondary's own image, without any nbdmirror in between
    SLOOP=$(losetup --find --show --read-only --sizelimit "$DATA_SIZE" "$T/s1.img")
    e2fsck -fn "$SLOOP" || fail "e2fsck on the secondary's $fs"
    mount -o ro "$SLOOP" "$T/smnt"
    (cd "$T/smnt" && sha256sum --quiet -c "$T/sums") || fail "checksums differ on the secondary"
    [ "$(find "$T/smnt" -type d | wc -l)" -ge "$ndirs" ] || fail "directories missing"
    teardown
    echo "$fs: secondary clean, $(wc -l <"$T/sums") files match"
done

if ! command -v mkfs.reiserfs >/dev/null; then
    echo "mkfs.reiserfs not installed: ReiserFS part skipped"
    exit 0
fi
log "ReiserFS (mkfs on the primary, reiserfsck on the secondary; not mountable here)"
pair
attach
mkfs.reiserfs -q -f "$LOOP" >/dev/null 2>&1
reiserfsck --check --yes "$LOOP" >/dev/null 2>&1 || fail "reiserfsck on the primary"
teardown
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "ReiserFS images differ"
# reiserfsck --check records its run in the superblock: give it a writable loop
SLOOP=$(losetup --find --show --sizelimit "$DATA_SIZE" "$T/s1.img")
reiserfsck --check --yes "$SLOOP" >"$T/rfsck" 2>&1 || { cat "$T/rfsck"; fail "reiserfsck on the secondary"; }
grep -i "no corruptions found" "$T/rfsck" || { cat "$T/rfsck"; fail "reiserfsck did not report a clean fs"; }
