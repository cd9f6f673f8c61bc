# Who connects, and peers that stop answering. Protocol B; a secondary that
# dials its primary; both nodes given --listen and --peer (started in either
# order: one link); a frozen secondary (SIGSTOP) under protocol C is dropped
# after --timeout, the client's writes go on, status counts what it lacks,
# and once thawed it comes back and is resynced by bitmap.
. "$(dirname "$0")/lib.bash"

make_hosts 1
fresh() {
    rm -f "$T/p.img" "$T/s1.img" "$T/p.log" "$T/s1.log"
    new_disk "$T/s1.img" 64M --skip-initial-sync
    new_disk "$T/p.img" 64M --skip-initial-sync
}
writes() { qemu-io -f raw -c "write -P $1 0 8M" -c "write -P $(($1 + 1)) 30M 1M" -c flush "$URI" >/dev/null; }
finish() {
    stop_node p
    stop_node s1
    data_equal "$T/p.img" "$T/s1.img" || fail "$1: data areas differ"
    echo "$1: equal"
}

log "protocol B"
fresh
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol B
wait_peers p 1
writes 10
finish "protocol B"

log "the secondary dials the primary"
fresh
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --listen 10.77.1.1:7788
start_node s1 s1 "$T/s1.img" --role secondary --peer 10.77.1.1:7788
wait_peers p 1
writes 20
finish "secondary dials"

for order in "s1 p" "p s1"; do
    log "both nodes with --listen and --peer, started: $order"
    fresh
    for n in $order; do
        if [ "$n" = p ]; then
            start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" \
                --listen 10.77.1.1:7788 --peer 10.77.1.2:7789
        else
            start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789 \
                --peer 10.77.1.1:7788
        fi
        sleep 0.3
    done
    wait_peers p 1
    sleep 1 # let any second link try its luck
    n=$(status_json p | "$PY" -c 'import json,sys; print(sum(p["connection"] == "Connected" for p in json.load(sys.stdin)["peers"]))')
    [ "$n" = 1 ] || { "$NBDM" status --control "$T/p.ctl"; fail "expected one link, found $n"; }
    sleep 6 # longer than the redial backoff: no duplicate link is tried again and again
    # grep -c exits 1 when it counts nothing (the good case): not an error here
    dups=$(cat "$T/p.log" "$T/s1.log" | { grep -c -E "already (connected to this node|replicating)" || true; })
    [ "$dups" -le 2 ] || fail "duplicate links keep being tried ($dups times)"
    writes 30
    finish "both ways ($order)"
done

log "a frozen secondary under protocol C, --timeout 2"
fresh
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C --timeout 2
wait_peers p 1
kill -STOP "${NODE_PID[s1]}"
on_exit "kill -CONT ${NODE_PID[s1]} 2>/dev/null"
start=$(date +%s%N)
timeout 20 qemu-io -f raw -c 'write -P 0x44 0 4M' -c flush "$URI" >/dev/null || fail "write did not complete"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "write with a frozen peer completed after $ms ms"
[ $ms -ge 1000 ] && [ $ms -lt 8000 ] || fail "expected the write to wait about the timeout (2 s, less the last ping), took $ms ms"
status_json p | "$PY" -c '
import json, sys; p = json.load(sys.stdin)["peers"][0]
assert p["connection"] != "Connected" and p["out_of_sync_bytes"] >= 4 << 20, p'
grep -q "no answer within the timeout" "$T/p.log" || fail "the drop must be logged"
kill -CONT "${NODE_PID[s1]}"
# Established, UpToDate and nothing out of sync: a peer just reconnected
# says UpToDate of itself until its resync starts
wait_synced p 1 20
grep -q "bitmap resync done" "$T/p.log" || fail "a dropped peer must be resynced by bitmap"
writes 40
finish "frozen, dropped, thawed, synced"

log "a fast zero the primary's disk refuses does not happen on the secondary"
# tmpfs has no FALLOC_FL_ZERO_RANGE: NO_HOLE + FAST_ZERO fails there with
# ENOTSUP, while the ext4 secondary could zero; it must not
mkdir -p "$T/tmpfs"
mount -t tmpfs -o size=96M tmpfs "$T/tmpfs"
on_exit 'umount "$T/tmpfs"'
rm -f "$T/s1.img" "$T/p.log" "$T/s1.log"
new_disk "$T/s1.img" 64M --skip-initial-sync
new_disk "$T/tmpfs/p.img" 64M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
start_node p p "$T/tmpfs/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
wait_peers p 1
"$PY" - "$URI" <<'PY'
import errno, nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"\x55" * 65536, 1 << 20)
try:
    h.zero(65536, 1 << 20, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO)
    raise SystemExit("fast zero on tmpfs was expected to fail")
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
    print("fast zero refused with ENOTSUP, as it should be here")
assert h.pread(65536, 1 << 20) == b"\x55" * 65536
h.zero(65536, 2 << 20, nbd.CMD_FLAG_FAST_ZERO)  # punching works on tmpfs: streamed
h.flush()
h.shutdown()
PY
stop_node p
stop_node s1
data_equal "$T/tmpfs/p.img" "$T/s1.img" || fail "the secondary applied a zero the primary refused"
echo "fast zero: equal"
