# Roles at run time. A secondary started with --nbd serves its export
# read-only (its description says so); `promote` is refused while another
# connected node is primary; `demote` on the primary under a writing client:
# requests in flight complete, new writes fail with ESHUTDOWN, the client's
# connection is closed cleanly, the node becomes secondary (its export
# read-only for new clients). Then `promote` on the other node: its export
# takes writes, they replicate to the old primary, and the disks end equal.
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
SSOCK=$T/s1.sock
new_disk "$T/s1.img" 64M --skip-initial-sync
new_disk "$T/p.img" 64M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen $S --nbd "unix:$SSOCK"
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S
wait_synced p
wait_sock "$SSOCK"

log "the secondary's export: read-only, and says why"
nbdinfo --json "nbd+unix:///?socket=$SSOCK" >"$T/info"
"$PY" - "$T/info" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["is_read_only"] is True, e
assert "read-only replication target" in e.get("description", ""), e
print("read-only:", e["description"])
PY

log "promote refused while the primary is connected"
if "$NBDM" promote --control "$T/s1.ctl" 2>"$T/err"; then fail "a second primary was allowed"; fi
cat "$T/err"
grep -q "is primary and connected" "$T/err" || fail "the refusal does not say why"

log "demote under a writing client"
"$PY" - "$URI" "$T/client.out" <<'PY' &
import errno, nbd, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1])
ok = shut = 0
buf = b"\x5a" * 65536
try:
    for i in range(100000):
        try:
            h.pwrite(buf, (i % 512) * 65536)
            ok += 1
        except nbd.Error as e:
            if e.errnum != errno.ESHUTDOWN:
                raise
            shut += 1
            break
        time.sleep(0.002)
    # the server closes the connection once the writes in flight are answered
    try:
        h.pwrite(buf, 0)
        raise SystemExit("a write after ESHUTDOWN succeeded")
    except nbd.Error as e:
        pass
except nbd.Error as e:
    # closed while a write was on its way: libnbd says the connection is gone
    shut = -1
open(sys.argv[2], "w").write(f"{ok} {shut}\n")
PY
client=$!
sleep 1
"$NBDM" demote --control "$T/p.ctl" || fail "demote failed"
wait "$client" || fail "the client saw something other than ESHUTDOWN or a clean close"
read -r ok shut <"$T/client.out"
echo "client: $ok writes before the demote, then $( [ "$shut" = 1 ] && echo ESHUTDOWN || echo 'the connection closed')"
[ "$ok" -gt 10 ] || fail "the client hardly wrote before the demote"
[ "$(jfield p 's["role"]')" = secondary ] || fail "p is not secondary after demote"
"$PY" - "$URI" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert h.is_read_only(), "a demoted node's export must be read-only"
print("after demote: read-only")
PY

log "promote the other node: writes replicate to the old primary"
wait_synced p
gen=$(jfield s1 's["generation"]')
"$NBDM" promote --control "$T/s1.ctl" || fail "promote refused"
# its one peer is connected and in sync: no new generation id (that is for
# a primary without every peer), so nothing is marked for a later resync
[ "$(jfield s1 's["generation"]')" = "$gen" ] || fail "promote with the peer in sync made a new generation id"
grep -q "primary without every peer" "$T/s1.log" && fail "s1 thinks its connected peer is away"
"$PY" - "nbd+unix:///?socket=$SSOCK" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert not h.is_read_only(), "a promoted node's export must take writes"
for i in range(16):
    h.pwrite(bytes([i]) * (1 << 20), i << 20)
h.flush()
print("16 MiB written through the new primary")
PY
wait_synced s1
[ "$(jfield p 'p["peer_role"]')" = Primary ] || fail "the old primary does not see the new one"
stop_node s1
stop_node p
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the role switch"
echo "equal"
