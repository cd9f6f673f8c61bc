# engine-independent
# nbdmirror status, both renderings of the one record the daemon sends:
# a primary and a secondary whose disk paths and export name hold a quote, a
# space, a backslash and '=' give valid JSON (Python's json module) with
# exactly the documented keys and value types, the paths and names intact,
# and the text layout (node lines, peer table, trimmed/zeroed line). A
# primary with 31 unreachable peers and a newline in its disk path still
# gives one valid JSON object with 31 peers, and a text report whose
# newline is shown escaped rather than starting a forged line.
. "$(dirname "$0")/lib.bash"

make_hosts 1
PDISK="$T/p \"disk\" a=b\\c.img"
SDISK="$T/s1 \"disk\".img"
NAME='exp "one" = \two'
new_disk "$SDISK" 64M --skip-initial-sync
new_disk "$PDISK" 64M --skip-initial-sync
start_node s1 s1 "$SDISK" --role secondary --listen 10.77.1.2:7789 --nbd "unix:$T/s1.sock"
start_node p p "$PDISK" --role primary --nbd "unix:$SOCK" --name "$NAME" \
    --peer 10.77.1.2:7789 --protocol C
wait_peers p 1
# a write, a zero write and a trim, so the peer has trimmed/zeroed bytes
# (the empty export name selects the export whatever its name)
qemu-io -f raw -c 'write -P 7 0 1M' -c 'write -z 4M 1M' -c 'discard 8M 1M' -c flush "$URI" >/dev/null

# check_json NAME ROLE DEVICE EXPORT NPEERS: keys, types and values
check_json() {
    "$NBDM" status --control "$T/$1.ctl" --json >"$T/$1.json"
    "$PY" - "$T/$1.json" "$2" "$3" "$4" "$5" <<'EOF' || { cat "$T/$1.json"; fail "$1: JSON status"; }
import json, sys
path, role, device, export, npeers = sys.argv[1:]
text = open(path, encoding="utf-8").read()
s = json.loads(text)  # raises on anything that is not valid JSON
assert text.count("\n") == 1 and text.endswith("}\n"), "one line"
node = {"role": str, "disk": str, "generation": str, "device": str, "export": str, "size": int,
        "read_only": bool, "engine": str, "direct": bool, "uptime_s": int,
        "clients": int, "connections_total": int, "reads": int, "writes": int,
        "flushes": int, "trims": int, "zero_writes": int, "block_status": int,
        "errors": int, "read_bytes": int, "write_bytes": int, "disk_depth": int,
        "disk_inflight": int, "disk_waiting": int, "disk_waited": int, "peers": list}
peer = {"address": str, "connection": str, "replication": str, "peer_disk": str,
        "protocol": str, "sent_bytes": int, "acked_bytes": int, "received_bytes": int,
        "sent_requests": int, "acked_requests": int, "inflight": int,
        "out_of_sync_bytes": int, "resync_sent_bytes": int,
        "resync_percent": (int, type(None)), "resync_eta_s": (int, type(None)),
        "resync_bytes_per_s": int, "trimmed_bytes": int, "zeroed_bytes": int,
        "last_error": str, "peer_role": str, "last_resync_reason": str,
        "last_resync_bytes": int, "last_resync_ms": int, "last_resync_skipped_bytes": int,
        "verify_mismatch_bytes": int, "send_queue_bytes": int, "lag_bytes": int, "lag_ms": int}
assert list(s) == list(node), list(s)  # today's keys, in today's order
for k, t in node.items():
    assert isinstance(s[k], t) and (t is bool or not isinstance(s[k], bool)), (k, s[k])
assert s["role"] == role and s["device"] == device and s["export"] == export, s
assert s["size"] > 0 and s["disk"] == "UpToDate", s
assert len(s["generation"]) == 16 and int(s["generation"], 16) > 0, s
assert len(s["peers"]) == int(npeers), len(s["peers"])
for p in s["peers"]:
    assert list(p) == list(peer), list(p)
    for k, t in peer.items():
        assert isinstance(p[k], t) and not isinstance(p[k], bool), (k, p[k])
    assert len(p["protocol"]) == 1, p
    # null exactly when no sync runs, and then both are
    assert (p["resync_percent"] is None) == (p["resync_eta_s"] is None), p
if role == "primary" and npeers == "1":
    p = s["peers"][0]
    assert p["replication"] == "Established" and p["protocol"] == "C", p
    assert p["peer_role"] == "Secondary" and p["out_of_sync_bytes"] == 0, p
    assert p["resync_percent"] is None and p["last_error"] == "", p
    assert p["acked_bytes"] >= 1 << 20 and p["zeroed_bytes"] >= 1 << 20, p
    assert s["writes"] >= 1 and s["zero_writes"] >= 1, s
if role == "secondary":
    assert s["read_only"] is True and s["peers"][0]["connection"] == "Connected", s
    assert s["peers"][0]["peer_role"] == "Primary", s
print(role, "JSON ok")
EOF
}
check_json p primary "$PDISK" "$NAME" 1
check_json s1 secondary "$SDISK" "" 1

log "text"
"$NBDM" status --control "$T/p.ctl" >"$T/p.txt"
cat "$T/p.txt"
grep -q '^role: primary   disk: UpToDate   read-write   generation: [0-9a-f]\{16\}$' "$T/p.txt" ||
    fail "text: role line"
grep -qF "device: $PDISK   export: \"$NAME\"   size: " "$T/p.txt" || fail "text: device line"
grep -q '^engine: .*   uptime: [0-9]*s$' "$T/p.txt" || fail "text: engine line"
grep -q '^clients: [0-9]* now, [0-9]* since start$' "$T/p.txt" || fail "text: clients line"
grep -q '^requests: [0-9]* reads' "$T/p.txt" || fail "text: requests line"
grep -q '^disk queue: [0-9]* at the disk, [0-9]* waiting, [0-9]* waited since start (no --disk-depth)$' \
    "$T/p.txt" || fail "text: disk queue line"
grep -q '^peer  *connection  *replication  *peer disk  *p  *sent MiB  *acked MiB  *in flight$' \
    "$T/p.txt" || fail "text: peer table header"
grep -q '^10\.77\.1\.2:7789  *Connected  *Established UpToDate  *C ' "$T/p.txt" || fail "text: peer line"
grep -q '^    trimmed [0-9.]* MiB, zeroed [0-9.]* MiB$' "$T/p.txt" || fail "text: trimmed/zeroed line"
"$NBDM" status --control "$T/s1.ctl" >"$T/s1.txt"
grep -q '^role: secondary   disk: UpToDate   read-only   generation: ' "$T/s1.txt" ||
    { cat "$T/s1.txt"; fail "secondary text"; }

log "31 peers, a newline in the disk path"
MDISK="$T/many
role: forged=1.img"
new_disk "$MDISK" 64M --skip-initial-sync
peers=()
for i in $(seq 1 31); do peers+=(--peer "10.77.1.2:$((7800 + i))"); done # nobody listens there
start_node m p "$MDISK" --role primary --nbd "unix:$T/m.sock" "${peers[@]}"
check_json m primary "$MDISK" "" 31
"$NBDM" status --control "$T/m.ctl" >"$T/m.txt"
out=$(grep -c '^role:' "$T/m.txt" || true)
[ "$out" = 1 ] || { cat "$T/m.txt"; fail "a newline in the device forged a line of the text report"; }
grep -qF 'many\nrole: forged=1.img' "$T/m.txt" || { cat "$T/m.txt"; fail "the newline is not shown escaped"; }
out=$(grep -c '^10\.77\.1\.2:78' "$T/m.txt" || true)
[ "$out" = 31 ] || { cat "$T/m.txt"; fail "text: $out peer lines, not 31"; }

stop_node m
stop_node p
stop_node s1
echo "status renders valid JSON and text for hostile names and 31 peers"
