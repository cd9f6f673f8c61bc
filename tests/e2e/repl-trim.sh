# A replicated trim reads back the same on both nodes, also when one of the
# disks cannot punch holes: the trim goes to the peer only once the
# primary's disk performed it, and the peer makes the range read zeroes even
# if its filesystem refuses FALLOC_FL_PUNCH_HOLE. The disk that cannot punch
# lives on ramfs (no fallocate at all; vfat, which would do too, is not in
# every kernel): (a) secondary on ramfs, (b) primary on ramfs. Both disks
# start all zero (--skip-initial-sync); 8 MiB of a pattern, flush, trim 4 MiB
# of it, flush; after a clean stop the data areas are identical.
. "$(dirname "$0")/lib.bash"

mkdir -p "$T/nopunch"
mount -t ramfs ramfs "$T/nopunch" || skip "cannot mount ramfs"
on_exit 'umount "$T/nopunch"'
truncate -s 1M "$T/nopunch/probe"
if fallocate -p -o 0 -l 64K "$T/nopunch/probe" 2>/dev/null; then
    skip "ramfs punched a hole here: no filesystem that refuses to"
fi
rm "$T/nopunch/probe"
echo "ramfs refuses to punch holes"

make_hosts 1

# run WHAT PRIMARY-DISK SECONDARY-DISK PATTERN
run() {
    local what=$1 pd=$2 sd=$3
    rm -f "$pd" "$sd" "$T/p.log" "$T/s1.log" "$T/p.ctl" "$T/s1.ctl"
    new_disk "$sd" 64M --skip-initial-sync
    new_disk "$pd" 64M --skip-initial-sync
    start_node s1 s1 "$sd" --role secondary --listen 10.77.1.2:7789
    start_node p p "$pd" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
    wait_peers p 1
    "$PY" - "$URI" "$4" <<'PY'
import errno, nbd, sys
MIB = 1 << 20
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(bytes([int(sys.argv[2])]) * (8 * MIB), 16 * MIB)
h.flush()
try:
    h.trim(4 * MIB, 18 * MIB)
    print("trim done")
except nbd.Error as e:  # a disk that cannot trim may say so
    assert e.errnum in (errno.ENOTSUP, errno.EINVAL), e
    print("trim refused:", e)
h.flush()
h.shutdown()
PY
    stop_node p
    stop_node s1
    data_equal "$pd" "$sd" || fail "$what: the nodes hold different bytes after the trim"
    echo "$what: equal"
}

log "(a) the secondary's disk cannot punch holes"
run "(a)" "$T/p.img" "$T/nopunch/s1.img" 165
rm -f "$T/nopunch/s1.img"
log "(b) the primary's disk cannot punch holes"
run "(b)" "$T/nopunch/p.img" "$T/s1.img" 90
