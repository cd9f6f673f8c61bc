# SIGTERM: exits 0 promptly with an idle client attached; under load it
# finishes what is in flight, answers newer requests with ESHUTDOWN or
# closes, and every write it acknowledged is on disk afterwards.
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 64M

log "idle client attached"
start_server "$T/disk"
"$PY" -c '
import nbd, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1]); print("attached", flush=True); time.sleep(60)' "$URI" &
idle=$!
on_exit "kill $idle 2>/dev/null"
sleep 0.5
t0=$(date +%s%N)
stop_server
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "stopped in $ms ms with an idle client"
[ $ms -lt 3000 ] || fail "shutdown took $ms ms"
kill $idle 2>/dev/null || true

log "under load: acknowledged writes survive"
start_server "$T/disk"
"$PY" - "$URI" "$T/acked" <<'PY' &
import nbd, sys, os, struct
h = nbd.NBD(); h.connect_uri(sys.argv[1])
log = open(sys.argv[2], "w")
size = h.get_size()
pending = {}
i = 0
try:
    while True:
        # keep 16 writes in flight; log each one the server acknowledged
        while len(pending) < 16:
            off = (i * 4096) % size
            buf = nbd.Buffer.from_bytearray(bytearray(struct.pack("<Q", i + 1) * 512))
            cookie = h.aio_pwrite(buf, off)
            pending[cookie] = (i, off, buf)
            i += 1
        h.poll(-1)
        for c in list(pending):
            if h.aio_command_completed(c):
                n, off, _ = pending.pop(c)
                log.write(f"{n} {off}\n"); log.flush()
except nbd.Error as e:
    print("client stopped:", e, flush=True)
PY
client=$!
on_exit "kill $client 2>/dev/null"
sleep 2
stop_server
wait $client || true
n=$(wc -l <"$T/acked")
echo "$n writes acknowledged before shutdown"
[ "$n" -gt 100 ] || fail "too few writes to judge ($n)"
# the newest acknowledged write to each block must be what the disk holds
"$PY" - "$T/disk" "$T/acked" <<'PY'
import struct, sys
last = {}
for line in open(sys.argv[2]):
    n, off = map(int, line.split())
    if n > last.get(off, 0):
        last[off] = n
bad = 0
with open(sys.argv[1], "rb") as f:
    for off, n in last.items():
        f.seek(off)
        got = struct.unpack("<Q", f.read(8))[0]
        # a later write, sent but not yet acknowledged, may also have landed
        if got < n:
            bad += 1
print(f"{len(last)} blocks checked, {bad} lost")
sys.exit(1 if bad else 0)
PY
grep -q 'stopped cleanly' "$T/server.log" || fail "no clean stop in the log"
