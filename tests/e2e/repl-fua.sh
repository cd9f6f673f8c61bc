# FUA on TRIM and WRITE_ZEROES is replicated as durable: under protocol C,
# when a FUA trim or zero write returns to the client, the secondary has
# flushed its disk after applying it. Witness: the secondary's disk is a
# FUSE file (nbdfuse) over nbdkit's memory plugin with the log filter, where
# the secondary's fallocate shows as Zero/Trim and its fdatasync as Flush.
# Right after each client call returns, the log must hold a Flush that
# started after that Zero/Trim completed, and completed itself.
. "$(dirname "$0")/lib.bash"

command -v nbdkit >/dev/null || fail "nbdkit not installed (make check installs it)"
command -v nbdfuse >/dev/null || fail "nbdfuse not installed"
[ -e /dev/fuse ] || skip "no /dev/fuse"
mkdir -p "$T/fz"

nbdkit -f -U "$T/kit.sock" --filter=log memory 64M logfile="$T/kit.log" &
kit=$!
on_exit "kill $kit 2>/dev/null"
for _ in $(seq 100); do [ -S "$T/kit.sock" ] && break; sleep 0.05; done
nbdfuse "$T/fz/disk" "nbd+unix:///?socket=$T/kit.sock" &
for _ in $(seq 100); do [ -e "$T/fz/disk" ] && break; sleep 0.05; done
on_exit 'mountpoint -q "$T/fz" && fusermount3 -u "$T/fz"'
[ -e "$T/fz/disk" ] || fail "nbdfuse did not come up"

make_hosts 1
"$NBDM" create-md "$T/fz/disk" --skip-initial-sync >/dev/null
new_disk "$T/p.img" 64M --skip-initial-sync
start_node s1 s1 "$T/fz/disk" --role secondary --listen 10.77.1.2:7789
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
wait_peers p 1

"$PY" - "$URI" "$T/kit.log" <<'PY'
import nbd, re, sys
uri, logfile = sys.argv[1], sys.argv[2]
MIB = 1 << 20

def parse():
    """The log as a list of (kind, conn, id, action, fields); kind is
    'start' or 'end' (the filter logs both ends of each request)."""
    out = []
    for line in open(logfile):
        m = re.search(r"connection=(\d+) (\.\.\.)?(\w+) id=(\d+)(.*)", line)
        if not m:
            continue
        fields = dict(re.findall(r"(\w+)=(\S+)", m.group(5)))
        out.append(("end" if m.group(2) else "start", m.group(1), m.group(4), m.group(3), fields))
    return out

def durable_after(what, off, length):
    """The last Zero/Trim covering [off, off+length) completed, and a Flush
    that started after that completed too."""
    log = parse()
    op = None
    for i, (kind, conn, rid, act, f) in enumerate(log):
        if kind == "start" and act in ("Zero", "Trim"):
            o, c = int(f["offset"], 16), int(f["count"], 16)
            if o <= off and off + length <= o + c:
                op = (i, conn, rid, act)
    assert op, f"{what}: no Zero/Trim for {off}+{length} reached the secondary's disk"
    i, conn, rid, act = op
    done = [j for j in range(i + 1, len(log))
            if log[j][0] == "end" and log[j][1:4] == (conn, rid, act)]
    assert done and log[done[0]][4].get("return") == "0", f"{what}: {act} did not complete"
    flushes = [(log[j][1], log[j][2]) for j in range(done[0] + 1, len(log))
               if log[j][0] == "start" and log[j][3] == "Flush"]
    ok = any(log[j][0] == "end" and log[j][3] == "Flush" and (log[j][1], log[j][2]) in flushes
             and log[j][4].get("return") == "0" for j in range(done[0] + 1, len(log)))
    assert ok, (f"{what}: returned to the client, but no flush followed the secondary's "
                f"{act} of {off}+{length}: not durable there")
    print(f"ok: {what}: the secondary's {act} was flushed before the reply")

h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(b"\xa5" * (4 * MIB), 8 * MIB)
h.flush()
# the witness works: the write and the flush show up on the secondary's disk
log = parse()
assert any(k == "start" and a == "Write" for k, _, _, a, _ in log), "no Write in the nbdkit log"
assert any(k == "end" and a == "Flush" for k, _, _, a, _ in log), "no Flush in the nbdkit log"

h.zero(MIB, 8 * MIB, nbd.CMD_FLAG_FUA)
durable_after("zero + FUA", 8 * MIB, MIB)
h.zero(MIB, 9 * MIB, nbd.CMD_FLAG_FUA | nbd.CMD_FLAG_NO_HOLE)
durable_after("zero + NO_HOLE + FUA", 9 * MIB, MIB)
h.trim(MIB, 10 * MIB, nbd.CMD_FLAG_FUA)
durable_after("trim + FUA", 10 * MIB, MIB)
assert h.pread(MIB, 11 * MIB) == b"\xa5" * MIB
h.shutdown()
PY

stop_node p
stop_node s1
