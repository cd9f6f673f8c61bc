# One primary, one secondary, each in its own network namespace, protocol C:
# fio writes with crc32c verify through the primary over four connections,
# with FLUSH and FUA along the way; both stop cleanly and their data areas
# are identical. The secondary's read-only export serves the same data.
. "$(dirname "$0")/lib.bash"

make_hosts 1
new_disk "$T/s1.img" 256M --skip-initial-sync
new_disk "$T/p.img" 256M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789 --nbd "unix:$T/s1.sock"
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
wait_peers p 1
status_json s1 | "$PY" -c '
import json, sys; s = json.load(sys.stdin)
assert s["role"] == "secondary" and s["read_only"] is True, s
assert s["peers"][0]["connection"] == "Connected" and s["peers"][0]["protocol"] == "C", s'
nbdinfo --json "nbd+unix:///?socket=$T/s1.sock" | "$PY" -c '
import json, sys; e = json.load(sys.stdin)["exports"][0]
assert e["is_read_only"] and "secondary" in e.get("description", ""), e'

fio --name=r --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=32 --numjobs=4 \
    --size=48M --offset_increment=48M --verify=crc32c --verify_fatal=1 --fsync=64 \
    --group_reporting --output-format=terse --terse-version=3 >"$T/fio" || { cat "$T/fio"; fail "fio"; }
qemu-io -f raw -c 'write -P 0x3c -f 200M 1M' -c 'write -z 201M 1M' -c 'discard 202M 1M' \
    -c 'write -P 9 203M 8M' -c flush "$URI" >/dev/null

"$NBDM" status --control "$T/p.ctl"
status_json p | "$PY" -c '
import json, sys; s = json.load(sys.stdin); p = s["peers"][0]
assert p["replication"] == "Established" and p["peer_disk"] == "UpToDate", p
assert p["sent_bytes"] > 192 << 20 and p["acked_bytes"] >= 192 << 20, p
assert p["out_of_sync_bytes"] == 0, p'
# what the secondary serves is what the primary holds, while both run
nbdcopy "nbd+unix:///?socket=$T/s1.sock" "$T/s1.copy"
nbdcopy "$URI" "$T/p.copy"
cmp "$T/p.copy" "$T/s1.copy" || fail "secondary's export differs from the primary's"

stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ"
echo "primary and secondary are identical ($DATA_SIZE bytes)"
