# Full sync. A secondary whose disk holds other data (fresh metadata) joins
# a primary under write load (started with --force: its fresh disk is the
# reference): it is Inconsistent, the primary copies everything (SyncSource
# -> SyncTarget) while clients write, and when it reports UpToDate the data
# areas are equal. After the secondary is SIGKILLed and restarted it is
# resynced by bitmap. Clean restarts need no sync; --resync-rate caps the
# copy.
. "$(dirname "$0")/lib.bash"

make_hosts 1
new_disk "$T/p.img" 192M
head -c 150M /dev/urandom | dd of="$T/s1.img" conv=notrunc status=none # other data
new_disk "$T/s1.img" 192M

peer_field() { # peer_field NODE FIELD
    status_json "$1" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['peers'][0]['$2'])"
}
wait_uptodate() {
    for _ in $(seq 300); do
        [ "$(peer_field p peer_disk)" = UpToDate ] && [ "$(peer_field p replication)" = Established ] && return 0
        sleep 0.1
    done
    "$NBDM" status --control "$T/p.ctl"
    fail "the secondary did not become UpToDate"
}
load() { # background writes with verify through the primary, for $1 seconds
    fio --name=l --ioengine=nbd --uri="$URI" --rw=randwrite --bs=8k --iodepth=8 --size=128M \
        --time_based --runtime="$1" --output-format=terse >/dev/null &
    LOAD=$!
}

start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C --force
qemu-io -f raw -c 'write -P 0x11 0 64M' "$URI" >/dev/null
load 6
sleep 1
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
wait_uptodate
grep -q "full sync of .* starts" "$T/p.log" || fail "no full sync logged"
[ "$(status_json s1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["disk"])')" = UpToDate ] ||
    fail "the secondary does not say UpToDate"
wait $LOAD
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the full sync"
echo "synced under load: equal"

log "SIGKILL the secondary under load, restart it"
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
wait_peers p 1
[ "$(grep -c "full sync of" "$T/p.log" || true)" = 1 ] || fail "a clean restart must not sync again"
load 6
sleep 1.5
kill -9 "${NODE_PID[s1]}"
sleep 1
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
for _ in $(seq 100); do grep -q "bitmap resync of .* starts" "$T/p.log" && break; sleep 0.1; done
grep -q "bitmap resync of .* starts" "$T/p.log" || { cat "$T/p.log"; fail "a killed secondary must be resynced by bitmap"; }
wait_uptodate
wait $LOAD
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after kill and resync"
echo "killed, restarted, resynced: equal"

log "--resync-rate 40M: a 192 MiB sync takes its time"
rm -f "$T/s1.img"
new_disk "$T/s1.img" 192M
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --resync-rate 40M
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789 --nbd "unix:$T/s1.sock"
sleep 1.5
"$NBDM" status --control "$T/p.ctl"
# mid-sync, the secondary's export refuses reads: its disk is a mix
"$PY" - "nbd+unix:///?socket=$T/s1.sock" <<'PY'
import errno, nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
try:
    h.pread(4096, 0)
    raise SystemExit("read from an Inconsistent secondary succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
    print("read refused while Inconsistent")
PY
status_json p | "$PY" -c '
import json, sys; p = json.load(sys.stdin)["peers"][0]
assert p["replication"] == "SyncSource" and p["peer_disk"] == "Inconsistent", p
assert 5 <= p["resync_percent"] <= 60 and p["resync_eta_s"] > 0, p
assert 20 << 20 <= p["resync_bytes_per_s"] <= 48 << 20, p  # the 40M cap, give or take
assert p["out_of_sync_bytes"] > 0, p'
status_json s1 | "$PY" -c '
import json, sys; s = json.load(sys.stdin)
assert s["disk"] == "Inconsistent" and s["peers"][0]["replication"] == "SyncTarget", s'
wait_uptodate
nbdcopy "nbd+unix:///?socket=$T/s1.sock" "$T/s1.copy" || fail "reads after the sync"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "differ after the rate-limited sync"
cmp -n "$DATA_SIZE" "$T/p.img" "$T/s1.copy" || fail "the secondary's export serves other data"
