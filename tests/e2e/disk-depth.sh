# --disk-depth N: at most N requests at the disk at once, the rest wait in
# order inside nbdmirror.
# - The bound holds (io_uring): while fio writes at QD32, the ring's
#   submitted-but-unreaped count (SqTail - CqHead in /proc/PID/fdinfo, both
#   moved only by nbdmirror) never exceeds N. The same sampler must see more
#   than N without the option, so it can tell the difference.
# - Nothing is lost or reordered: fio verifies every block (with flushes
#   mixed in) at depth 1 and 3; a primary and a secondary both at depth 1
#   replicate writes and trims under protocol C, and the images are equal.
# - status (JSON and text) shows the limit, and that requests waited for it
#   (none without it).
# - Bad values are refused with a clear error.
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 128M

# ring_fd PID: the io_uring fd of PID (empty with libaio)
ring_fd() {
    local f
    for f in /proc/"$1"/fd/*; do
        [ "$(readlink "$f" 2>/dev/null)" = "anon_inode:[io_uring]" ] && { echo "${f##*/}"; return 0; }
    done
    return 0
}

# sample_depth PID FD FIO_PID: the largest SqTail - CqHead seen while FIO_PID runs
sample_depth() {
    local pid=$1 fd=$2 fio_pid=$3 max=0 sq cq k v d
    while kill -0 "$fio_pid" 2>/dev/null; do
        sq= cq=
        while read -r k v; do
            case $k in SqTail:) sq=$v ;; CqHead:) cq=$v ;; esac
        done <"/proc/$pid/fdinfo/$fd"
        [ -n "$sq" ] && [ -n "$cq" ] || continue
        # the two lines are not read at the same instant: completions reaped
        # in between can put CqHead past the SqTail read (wrapping below 0);
        # such a sample only ever undercounts
        d=$(( (sq - cq) & 0xffffffff ))
        [ "$d" -ge $((1 << 31)) ] && d=0
        [ "$d" -gt "$max" ] && max=$d
    done
    echo "$max"
}

# writes DEPTH: fio at QD32 against a server at --disk-depth DEPTH (0: no
# option), every block verified, an fsync every 16 writes; prints the
# deepest ring seen (io_uring only)
writes() {
    local depth=$1 opts=() fio_pid fd max=
    [ "$depth" = 0 ] || opts=(--disk-depth "$depth")
    start_server "$T/disk" --direct "${opts[@]}"
    fd=$(ring_fd "$SERVER_PID")
    fio --name=d --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=32 \
        --size=64M --io_size=48M --fsync=16 --verify=crc32c --verify_fatal=1 --randrepeat=0 \
        --output="$T/fio.out" &
    fio_pid=$!
    [ -n "$fd" ] && max=$(sample_depth "$SERVER_PID" "$fd" "$fio_pid")
    wait "$fio_pid" || { cat "$T/fio.out"; fail "fio verify with --disk-depth $depth"; }
    # status shows the limit and how many requests it held back; with fio
    # done the queue empties (asked until it has, 5 s at most)
    "$PY" - "$NBDM" "$CTL" "$depth" <<'PY' || fail "status after fio with --disk-depth $depth"
import json, subprocess, sys, time
nbdm, ctl, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(50):
    s = json.loads(subprocess.run([nbdm, "status", "--control", ctl, "--json"],
                                  check=True, capture_output=True, text=True).stdout)
    if s["disk_inflight"] == 0 and s["disk_waiting"] == 0:
        break
    time.sleep(0.1)
print("status: disk_depth %(disk_depth)d, disk_inflight %(disk_inflight)d, "
      "disk_waiting %(disk_waiting)d, disk_waited %(disk_waited)d" % s)
assert s["disk_depth"] == depth, s
assert s["disk_inflight"] == 0 and s["disk_waiting"] == 0, s
if depth:
    assert s["disk_waited"] > 0, "a QD32 client never waited for --disk-depth %d" % depth
else:
    assert s["disk_waited"] == 0, "requests waited with no limit, at QD32"
PY
    "$NBDM" status --control "$CTL" >"$T/status.txt"
    if [ "$depth" = 0 ]; then
        grep -q "^disk queue: 0 at the disk, 0 waiting, 0 waited since start (no --disk-depth)$" \
            "$T/status.txt" || { cat "$T/status.txt"; fail "status text: disk queue line"; }
    else
        grep -q "^disk queue: 0 at the disk, 0 waiting, [1-9][0-9]* waited since start (--disk-depth $depth)$" \
            "$T/status.txt" || { cat "$T/status.txt"; fail "status text: disk queue line"; }
    fi
    stop_server
    DEEPEST=$max
}

for depth in 1 3 0; do
    log "--disk-depth $depth: 4 KiB random writes at QD32 with fsyncs, verified"
    writes "$depth"
    [ -n "$DEEPEST" ] || { echo "no io_uring ring ($ENGINE_MODE): bound not sampled"; continue; }
    echo "deepest ring seen: $DEEPEST"
    if [ "$depth" = 0 ]; then
        [ "$DEEPEST" -gt 3 ] || fail "without --disk-depth the sampler never saw more than 3 at the disk ($DEEPEST)"
    else
        [ "$DEEPEST" -le "$depth" ] || fail "--disk-depth $depth: $DEEPEST requests were at the disk at once"
    fi
done

log "replication with --disk-depth 1 on both nodes: writes and trims under protocol C"
make_hosts 1
new_disk "$T/p.img" 64M --skip-initial-sync
new_disk "$T/s.img" 64M --skip-initial-sync
start_node s1 s1 "$T/s.img" --role secondary --listen 10.77.1.2:7789 --disk-depth 1
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C \
    --disk-depth 1
wait_peers p 1
fio --name=r --ioengine=nbd --uri="$URI" --rw=randtrim --bs=64k --iodepth=8 --size=16M \
    --output="$T/trim.out" || { cat "$T/trim.out"; fail "fio trims"; }
fio --name=r --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --bsrange=4k-64k --iodepth=32 \
    --size=32M --io_size=24M --verify=crc32c --verify_fatal=1 --randrepeat=0 \
    --output="$T/repl.out" || { cat "$T/repl.out"; fail "fio verify through the primary"; }
wait_synced p
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s.img" || fail "the secondary's image differs from the primary's"

log "out-of-range values are refused"
refuses_values --disk-depth "disk-depth takes 0 to 4096" 4097 -1 x
echo "ok"
