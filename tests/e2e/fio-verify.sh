# fio's nbd engine: random writes at iodepth 32 over four connections, each
# block verified with crc32c; then a second pass reads everything back
# after a server restart. No verify errors allowed.
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 256M
start_server "$T/disk"
common=(--ioengine=nbd --uri="$URI" --bs=4k --iodepth=32 --numjobs=4 --size=48M
        --offset_increment=48M --verify=crc32c --verify_fatal=1 --group_reporting
        --output-format=terse --terse-version=3)
fio --name=w --rw=randwrite "${common[@]}" >"$T/fio1" || { cat "$T/fio1"; fail "fio write+verify"; }
"$NBDM" status --control "$CTL" --json | "$PY" -c '
import json, sys; s = json.load(sys.stdin)
assert s["writes"] >= 4 * 12288, s["writes"]
assert s["errors"] == 0, s'
stop_server
log "restart, then verify only"
start_server "$T/disk"
fio --name=w --rw=randwrite --verify_only "${common[@]}" >"$T/fio2" || { cat "$T/fio2"; fail "fio verify after restart"; }
stop_server
echo "fio verified"
