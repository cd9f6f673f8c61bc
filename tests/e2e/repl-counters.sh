# The primary's per-peer counters in `status --json` count the same things
# when sent and when acknowledged: sent_bytes and acked_bytes are bytes of
# client write data (no frame headers, no full-sync data), trimmed_bytes and
# zeroed_bytes the trim and zero ranges the peer confirmed, sent_requests and
# acked_requests the replicated client requests (writes, trims, zeroes; not
# flushes), inflight the requests sent and not yet confirmed. After a known
# mix of requests under protocol C they are exact. A frozen peer dropped after
# --timeout leaves inflight at 0.
. "$(dirname "$0")/lib.bash"

make_hosts 1
# plain files on the test directory's filesystem: it punches holes and zeroes
# ranges, so every trim and zero is performed here and streamed
new_disk "$T/s1.img" 64M --skip-initial-sync
new_disk "$T/p.img" 64M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 \
    --protocol C --timeout 2
wait_peers p 1
grep -q "full sync" "$T/p.log" && fail "no full sync was expected (both --skip-initial-sync)"

"$PY" - "$URI" "$T/p.ctl" "$NBDM" <<'PY'
import json, nbd, subprocess, sys, time
uri, ctl, nbdm = sys.argv[1:4]
KIB, MIB = 1 << 10, 1 << 20

def peer():
    out = subprocess.run([nbdm, "status", "--control", ctl, "--json"], check=True,
                         capture_output=True, text=True).stdout
    peers = json.loads(out)["peers"]
    assert len(peers) == 1, peers
    return peers[0]

h = nbd.NBD()
h.connect_uri(uri)
written = trimmed = zeroed = reqs = 0
# writes of several sizes, one with FUA (which adds a barrier: not a request)
for off, size, flags in ((0, 512, 0), (4 * KIB, 4 * KIB, 0), (64 * KIB, 64 * KIB, 0),
                         (1 * MIB, 1 * MIB, nbd.CMD_FLAG_FUA), (4 * MIB, 4 * MIB + 4 * KIB, 0),
                         (12 * MIB, 12 * KIB, 0), (16 * MIB, 8 * MIB, 0)):
    h.pwrite(bytes([0x5a]) * size, off, flags)
    written += size
    reqs += 1
h.flush()
for off, size in ((16 * MIB, 1 * MIB), (20 * MIB, 2 * MIB + 64 * KIB)):
    h.trim(size, off)
    trimmed += size
    reqs += 1
for off, size, flags in ((4 * MIB, 256 * KIB, 0), (6 * MIB, 1 * MIB, nbd.CMD_FLAG_NO_HOLE),
                         (30 * MIB, 3 * MIB, 0), (40 * MIB, 64 * KIB, nbd.CMD_FLAG_NO_HOLE)):
    h.zero(size, off, flags)
    zeroed += size
    reqs += 1
h.flush()
h.shutdown()

for _ in range(100):  # protocol C: all is acked already; allow some slack anyway
    p = peer()
    if p.get("inflight") == 0 and p.get("acked_requests") == reqs:
        break
    time.sleep(0.1)
print("status:", json.dumps(p))
want = {"sent_bytes": written, "acked_bytes": written, "trimmed_bytes": trimmed,
        "zeroed_bytes": zeroed, "sent_requests": reqs, "acked_requests": reqs, "inflight": 0}
bad = [f"{k} = {p.get(k)}, expected {v}" for k, v in want.items() if p.get(k) != v]
assert p["replication"] == "Established", p
assert not bad, "counters wrong: " + "; ".join(bad)
print(f"ok: {written} bytes written, {trimmed} trimmed, {zeroed} zeroed, {reqs} requests")
PY

log "a frozen secondary is dropped after --timeout: nothing stays in flight"
kill -STOP "${NODE_PID[s1]}"
on_exit "kill -CONT ${NODE_PID[s1]} 2>/dev/null"
timeout 30 qemu-io -f raw -c 'write -P 0x44 0 1M' -c 'write -P 0x45 8M 64k' "$URI" >/dev/null ||
    fail "writes with a frozen peer did not complete"
ok=
for _ in $(seq 100); do
    if status_json p | "$PY" -c '
import json, sys; p = json.load(sys.stdin)["peers"][0]
sys.exit(0 if p["replication"] != "Established" and p["inflight"] == 0 else 1)'; then
        ok=1
        break
    fi
    sleep 0.1
done
status_json p
echo
[ -n "$ok" ] || fail "the dropped peer still shows requests in flight (or is still Established)"
grep -q "no answer within the timeout" "$T/p.log" || fail "the drop must be logged"
echo "dropped peer: inflight 0"
