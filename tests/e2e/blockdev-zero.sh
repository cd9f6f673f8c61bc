# Unaligned WRITE_ZEROES and trims on block devices (loop devices here).
# A device only zeroes or punches whole logical blocks (512 bytes), so the
# server must zero partial blocks itself and must never loop on EINVAL.
# (a) Standalone: over a device filled with a pattern, a client with strict
#     mode off sends unaligned zeroes (with and without NO_HOLE and
#     FAST_ZERO, one at the very end of the export) and unaligned trims.
#     Every call completes within 60 s; the export then equals a reference
#     the client built itself (trimmed ranges: see the checks in the client),
#     SIGTERM stops the server with status 0, and the device read directly
#     (not through the server) equals the same reference.
# (b) Replicated: primary on one loop device, secondary on another, each in
#     its own namespace (protocol C); the same zeroes through the primary;
#     after both stop, the two data areas are identical and equal the
#     reference.
. "$(dirname "$0")/lib.bash"

truncate -s 64M "$T/b1" "$T/b2"
LOOP1=$(losetup --find --show "$T/b1") || skip "no loop device available"
on_exit "losetup -d $LOOP1"
LOOP2=$(losetup --find --show "$T/b2") || skip "no second loop device available"
on_exit "losetup -d $LOOP2"
# before the loop devices go: a server still running would keep them busy
on_exit '[ -n "$SERVER_PID" ] && { kill -9 $SERVER_PID; wait $SERVER_PID; }'
DATA_SIZE=$("$NBDM" create-md "$LOOP1" --skip-initial-sync |
    sed -n 's/.*exported size \([0-9]*\) bytes/\1/p')
"$NBDM" create-md "$LOOP2" --skip-initial-sync >/dev/null
[ -n "$DATA_SIZE" ] || fail "create-md did not say the exported size"

# The client: fills two pattern regions, applies the operations to the export
# and to a reference in memory, checks the export against it, writes the
# reference to a file. Arguments: URI, "trims" or "zeroes", reference path.
cat >"$T/client.py" <<'PY'
import errno, random, sys
import nbd

uri, what, ref_path = sys.argv[1:4]
NO_HOLE, FAST = nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_FAST_ZERO
BS = 512  # the loop devices' logical block size

h = nbd.NBD()
h.set_strict_mode(0)  # let unaligned requests reach the server
h.connect_uri(uri)
size = h.get_size()
ref = bytearray(size)  # fresh loop devices over sparse files read zeroes
MiB = 1 << 20
regions = [(0, 4 * MiB), (size - MiB, MiB)]
rnd = random.Random(7)
for off, n in regions:
    data = rnd.randbytes(n)
    h.pwrite(data, off)
    ref[off:off + n] = data

def zero(count, off, flags=0):
    try:
        h.zero(count, off, flags)
    except nbd.Error as e:
        # a fast zero may be refused; refused, it must have changed nothing
        # (it is not replicated then, so a change would split the peers)
        if flags & FAST and e.errnum == errno.ENOTSUP:
            print(f"fast zero {count}@{off} flags {flags}: ENOTSUP")
            return
        raise
    ref[off:off + count] = bytes(count)

# (count, offset, flags), as libnbd's zero() takes them
zero(100, 1, NO_HOLE)         # inside one block: the hang of old
zero(1000, 10000)
zero(4095, 2, NO_HOLE)
zero(511, 1048577)
zero(4096, 8192, NO_HOLE)     # aligned, for comparison
zero(700001, 1300001, NO_HOLE)
zero(70000, 2100003)          # may punch: the whole blocks inside
zero(5000, 1500001, FAST)
zero(300, 1600007, FAST | NO_HOLE)
zero(3, size - 3, NO_HOLE)    # the last bytes of the export
zero(100, size - 1000)
h.flush()

# Trims, in ranges no zero touched. NBD leaves a trimmed range's content
# unspecified; nbdmirror promises more, so that peers that all trim hold the
# same bytes: a device punches only whole logical blocks inside the range
# (reading zeroes afterwards) or nothing. So in a trimmed range every whole
# block reads all old data or all zeroes, the partial blocks at its ends
# keep their old data, and nothing outside it changes (the full comparison).
trims = [(100, 2500001), (10000, 2600003), (65536, 2752512), (500001, 3000001),
         (777, size - 700000)] if what == "trims" else []
for count, off in trims:
    h.trim(count, off)
h.flush()

got = bytearray()
for off in range(0, size, 4 * MiB):
    got += h.pread(min(4 * MiB, size - off), off)
zeroed = 0
for count, off in trims:
    end = off + count
    first = (off + BS - 1) // BS * BS
    last = end // BS * BS
    assert got[off:first] == ref[off:first], f"trim {count}@{off}: head block changed"
    assert got[last:end] == ref[last:end], f"trim {count}@{off}: tail block changed"
    for b in range(first, last, BS):
        blk = got[b:b + BS]
        if blk == bytes(BS):
            zeroed += 1
        else:
            assert blk == ref[b:b + BS], f"trim {count}@{off}: block {b} neither old nor zero"
    ref[off:end] = got[off:end]  # now known to be acceptable
print(f"{zeroed} trimmed blocks read zeroes")
for off in range(0, size, MiB):
    if got[off:off + MiB] != ref[off:off + MiB]:
        bad = next(i for i in range(off, off + MiB) if got[i] != ref[i])
        sys.exit(f"export differs from the reference at byte {bad}")
with open(ref_path, "wb") as f:
    f.write(ref)
h.shutdown()
PY

# run_client URI WHAT REF: a zero or trim that never completes is the bug
run_client() {
    local rc=0
    timeout 60 "$PY" "$T/client.py" "$@" || rc=$?
    [ $rc -eq 124 ] && fail "client did not finish within 60 s: a zero or trim hangs"
    [ $rc -eq 0 ] || fail "client failed (exit $rc)"
}

log "(a) standalone on $LOOP1"
start_server "$LOOP1"
run_client "$URI" trims "$T/ref-a"
stop_server
blockdev --flushbufs "$LOOP1"
cmp -n "$DATA_SIZE" "$LOOP1" "$T/ref-a" || fail "(a) the device differs from the reference"

log "(b) primary on $LOOP1, secondary on $LOOP2"
make_hosts 1
start_node s1 s1 "$LOOP2" --role secondary --listen 10.77.1.2:7789
start_node p p "$LOOP1" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
wait_peers p 1
# the pattern regions are rewritten through the primary, so both devices
# start (b) equal whatever (a) left; everything else is zeroes on both
run_client "$URI" zeroes "$T/ref-b"
status_json p | "$PY" -c '
import json, sys; p = json.load(sys.stdin)["peers"][0]
assert p["replication"] == "Established" and p["out_of_sync_bytes"] == 0, p'
stop_node p
stop_node s1
blockdev --flushbufs "$LOOP1"
blockdev --flushbufs "$LOOP2"
cmp -n "$DATA_SIZE" "$LOOP1" "$LOOP2" || fail "(b) primary and secondary data areas differ"
cmp -n "$DATA_SIZE" "$LOOP1" "$T/ref-b" || fail "(b) the primary differs from the reference"
echo "unaligned zeroes and trims complete; peers identical ($DATA_SIZE bytes)"
