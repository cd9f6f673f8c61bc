# One primary, three secondaries, each on its own link. Protocol A, then C:
# all four data areas end identical. Then one link is throttled to 16 Mbit/s
# with tc tbf: under protocol A the client and the two other secondaries go
# on at full speed, and the slow one is dropped and shown Outdated rather
# than holding anyone back (or, once it has redialled, SyncSource with its
# disk Inconsistent; UpToDate only after a logged full sync).
# engine-independent
. "$(dirname "$0")/lib.bash"

# wait_equal A B: the data areas become identical within 20 s (a secondary
# may still be applying the last frames it received)
wait_equal() {
    for _ in $(seq 100); do
        data_equal "$1" "$2" 2>/dev/null && return 0
        sleep 0.2
    done
    data_equal "$1" "$2"
}

make_hosts 3
for n in s1 s2 s3 p; do new_disk "$T/$n.img" 256M --skip-initial-sync; done
for i in 1 2 3; do
    start_node "s$i" "s$i" "$T/s$i.img" --role secondary --listen "10.77.$i.2:7789"
done
peers=(--peer 10.77.1.2:7789 --peer 10.77.2.2:7789 --peer 10.77.3.2:7789)

for proto in A C; do
    log "protocol $proto"
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" "${peers[@]}" --protocol $proto
    wait_peers p 3
    fio --name=m --ioengine=nbd --uri="$URI" --rw=randwrite --bs=16k --iodepth=16 --numjobs=2 \
        --size=32M --offset_increment=32M --offset=$([ $proto = A ] && echo 0 || echo 128)M \
        --verify=crc32c --group_reporting --output-format=terse --terse-version=3 >"$T/fio" ||
        { cat "$T/fio"; fail "fio"; }
    "$NBDM" status --control "$T/p.ctl"
    stop_node p # a clean stop hands every queued write to the peers first
    for i in 1 2 3; do
        wait_equal "$T/p.img" "$T/s$i.img" || fail "protocol $proto: s$i differs"
    done
    echo "protocol $proto: all four equal"
done

log "protocol A with a slow link to s3"
tc -n "$(ns p)" qdisc add dev "$(veth p3)" root tbf rate 16mbit burst 64kb latency 200ms
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" "${peers[@]}" --protocol A
wait_peers p 3
start=$(date +%s%N)
# 224 MiB: at 2 MB/s the slow link alone would need 110 s, and far more than
# the 64 MiB a peer may fall behind queues up
fio --name=slow --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size=224M \
    --output-format=terse --terse-version=3 >"$T/fio" || { cat "$T/fio"; fail "fio"; }
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "224 MiB written in $ms ms"
[ $ms -lt 30000 ] || fail "the client was held back by the slow peer ($ms ms)"
for _ in $(seq 100); do
    grep -q "10.77.3.2:7789: too far behind" "$T/p.log" && break
    sleep 0.2
done
grep -q "10.77.3.2:7789: too far behind" "$T/p.log" || fail "the drop must be logged"
"$NBDM" status --control "$T/p.ctl"
# The primary redials a dropped peer and resyncs what it missed (its
# bitmap), so by now the slow one may be away (out of sync bytes counted),
# or being resynced; it is UpToDate only if that resync has finished (the
# status is taken first).
st=$(status_json p)
synced=0
if grep -q "10.77.3.2:7789: resync done" "$T/p.log"; then synced=1; fi
"$PY" -c '
import json, sys; s = json.load(sys.stdin)
by = {p["address"]: p for p in s["peers"]}
slow = by["10.77.3.2:7789"]
if slow["connection"] != "Connected":
    assert slow["out_of_sync_bytes"] > 0, slow
elif slow["replication"] in ("SyncSource", "PausedSyncS"):
    assert slow["peer_disk"] in ("Inconsistent", "Outdated", "UpToDate"), slow
else:
    assert sys.argv[1] == "1" and slow["peer_disk"] == "UpToDate", slow
for a in ("10.77.1.2:7789", "10.77.2.2:7789"):
    assert by[a]["replication"] == "Established" and by[a]["peer_disk"] == "UpToDate", by[a]' "$synced" <<<"$st"
stop_node p
for i in 1 2; do wait_equal "$T/p.img" "$T/s$i.img" || fail "s$i differs"; done
for i in 1 2 3; do stop_node "s$i"; done
