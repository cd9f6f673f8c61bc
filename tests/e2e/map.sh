# nbdinfo --map (NBD_CMD_BLOCK_STATUS, base:allocation): never-written and
# trimmed ranges are holes that read as zero, written ranges are data.
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 64M
start_server "$T/disk"
nbdinfo --map=base:allocation "$URI" | tee "$T/map0"
[ "$(wc -l <"$T/map0")" = 1 ] && grep -q 'hole,zero' "$T/map0" || fail "fresh export must be one hole"

qemu-io -f raw -c 'write -P 0x77 1M 2M' -c 'write -P 0x66 8M 64k' "$URI" >/dev/null
qemu-io -f raw -c 'discard 2M 1M' "$URI" >/dev/null
nbdinfo --map=base:allocation --json "$URI" >"$T/map1.json"
cat "$T/map1.json"
"$PY" - "$T/map1.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
def state(off):
    for e in m:
        if e["offset"] <= off < e["offset"] + e["length"]:
            return e["type"]
    raise SystemExit(f"offset {off} not covered")
M = 1 << 20
assert state(0) == 3, "before the writes: hole"
assert state(1 * M) == 0 and state(2 * M - 1) == 0, "written: data"
assert state(2 * M) == 3, "trimmed: hole"
assert state(8 * M) == 0, "second write: data"
assert state(8 * M + 65536) == 3, "after it: hole"
total = sum(e["length"] for e in m)
print("map ok, covers", total)
PY
# The REQ_ONE form and a read of the trimmed range, through libnbd
"$PY" - "$URI" <<'PY'
import nbd, sys
h = nbd.NBD(); h.add_meta_context("base:allocation"); h.connect_uri(sys.argv[1])
seen = []
h.block_status(4 << 20, 0, lambda ctx, off, ents, err: seen.append(ents), nbd.CMD_FLAG_REQ_ONE)
assert len(seen) == 1 and len(seen[0]) == 2, seen   # one (length, flags) pair
assert seen[0] == [1 << 20, 3], seen
assert h.pread(1 << 20, 2 << 20) == bytes(1 << 20), "trimmed range must read as zeroes"
h.shutdown()
print("req_one ok")
PY
stop_server
