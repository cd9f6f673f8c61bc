# A block device as DISK (a loop device here): O_DIRECT is automatic,
# trims become zeroing discards (fallocate punch on the device), and the same qemu-io sequence as on a file leaves
# it equal to a reference.
. "$(dirname "$0")/lib.bash"

truncate -s 128M "$T/backing"
LOOP=$(losetup --find --show "$T/backing") || skip "no loop device available"
on_exit "losetup -d $LOOP"
"$NBDM" create-md "$LOOP" >/dev/null
start_server "$LOOP"
grep -q "O_DIRECT" "$T/server.log" || fail "block devices must use O_DIRECT"
size=$(export_size)
truncate -s "$size" "$T/ref"
nbdinfo --json "$URI" | "$PY" -c '
import json, sys; e = json.load(sys.stdin)["exports"][0]
assert e["block_size_minimum"] == 512, e["block_size_minimum"]'
cmds=(-c 'write -P 1 0 1M' -c 'write -P 2 4096 8192' -c 'discard 0 64k' -c 'write -z 2M 1M'
      -c 'write -P 3 3M 512' -c 'write -z -u 3M 4096' -c 'write -P 4 5M 100' -c 'write -P 5 6M 4M')
qemu-io -f raw "${cmds[@]}" "$URI" >"$T/q" 2>&1 || { cat "$T/q"; fail "qemu-io"; }
qemu-io -f raw "${cmds[@]}" "$T/ref" >/dev/null
qemu-img compare -f raw -F raw "$URI" "$T/ref" || fail "device differs from reference"
# unaligned I/O goes through the buffered path and still reads back
"$PY" - "$URI" <<'PY'
import nbd, sys
h = nbd.NBD(); h.set_strict_mode(0)  # let unaligned requests reach the server
h.connect_uri(sys.argv[1])
h.pwrite(b"unaligned!", 12345)
assert h.pread(10, 12345) == b"unaligned!"
assert h.pread(4096, 8192) == h.pread(4096, 8192)  # aligned read sees the same cache state
blk = h.pread(4096, 12288)
assert blk[57:67] == b"unaligned!", "direct read must see the buffered write"
h.flush(); h.shutdown()
PY
stop_server
