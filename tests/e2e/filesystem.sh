# A real filesystem on the export: nbdfuse exposes it as a file, a loop
# device makes that a block device, then mkfs, mount, copy a tree of files,
# umount, e2fsck -fn must be clean, and after a remount every file's
# checksum matches. ext4, then ext2.
. "$(dirname "$0")/lib.bash"

[ -e /dev/fuse ] || skip "no /dev/fuse: cannot mount the export with nbdfuse"
command -v nbdfuse >/dev/null || fail "nbdfuse not installed (make check installs it)"

new_disk "$T/disk" 256M
mkdir -p "$T/fuse" "$T/mnt" "$T/src"
# a tree with many small files, some large ones, nested directories
"$PY" - "$T/src" <<'PY'
import os, random, sys
root, rnd = sys.argv[1], random.Random(7)
for d in range(40):
    p = os.path.join(root, f"d{d}", f"sub{d % 5}")
    os.makedirs(p, exist_ok=True)
    for f in range(25):
        with open(os.path.join(p, f"f{f}"), "wb") as fh:
            fh.write(rnd.randbytes(rnd.choice([0, 100, 4096, 5000, 70000])))
with open(os.path.join(root, "big"), "wb") as fh:
    fh.write(rnd.randbytes(24 << 20))
PY
(cd "$T/src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sums"

LOOP=
teardown() {
    mountpoint -q "$T/mnt" && umount "$T/mnt"
    [ -n "$LOOP" ] && detach_loop "$LOOP"
    LOOP=
    unmount_fuse "$T/fuse"
    return 0
}
on_exit teardown

attach() {
    nbdfuse "$T/fuse/disk" "$URI" &
    for _ in $(seq 100); do [ -e "$T/fuse/disk" ] && break; sleep 0.05; done
    [ -e "$T/fuse/disk" ] || fail "nbdfuse did not come up"
    LOOP=$(losetup --find --show "$T/fuse/disk")
}

for fs in ext4 ext2; do
    log "$fs"
    start_server "$T/disk"
    attach
    "mkfs.$fs" -q -F "$LOOP"
    mount "$LOOP" "$T/mnt"
    cp -a "$T/src/." "$T/mnt/"
    umount "$T/mnt"
    e2fsck -fn "$LOOP" || fail "e2fsck found errors on $fs"
    mount "$LOOP" "$T/mnt"
    (cd "$T/mnt" && sha256sum --quiet -c "$T/sums") || fail "checksums differ on $fs"
    n=$(find "$T/mnt" -type f | wc -l)
    [ "$n" -ge 1000 ] || fail "only $n files"
    teardown
    stop_server
    echo "$fs: $n files verified"
done
