# nbdinfo (libnbd) sees the export, its size and flags; export names; the
# read-only export refuses writes with EPERM; status reports over the
# control socket.
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 64M
want=$("$NBDM" create-md "$T/disk" --force | sed -n 's/.*exported size \([0-9]*\) bytes/\1/p')
[ -n "$want" ] || fail "create-md did not print the exported size"

start_server "$T/disk"
nbdinfo --json "$URI" >"$T/info.json"
cat "$T/info.json"
"$PY" - "$T/info.json" "$want" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
e = info["exports"][0]
want = int(sys.argv[2])
assert info["protocol"] == "newstyle-fixed", info["protocol"]
assert e["export-size"] == want, (e["export-size"], want)
assert e["export-size"] < 64 << 20, "internal metadata must shrink the export"
for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_multi_conn", "can_df"):
    assert e[flag] is True, flag
assert e["is_read_only"] is False
assert "base:allocation" in e["contexts"], e["contexts"]
assert e["block_size_minimum"] == 1 and e["block_size_preferred"] == 4096
assert e["block_size_maximum"] == 64 << 20
print("flags ok")
PY
[ "$(nbdinfo --size "$URI")" = "$want" ] || fail "size"
grep -q 'export=""' <<<"$(nbdinfo --list "$URI")" || fail "LIST does not show the default export"

# status over the control socket, both forms
"$NBDM" status --control "$CTL" | tee "$T/status"
grep -q 'role: standalone' "$T/status" || fail "status text"
"$NBDM" status --control "$CTL" --json | "$PY" -c '
import json, sys; s = json.load(sys.stdin)
assert s["role"] == "standalone" and s["disk"] == "UpToDate" and s["peers"] == []
assert s["connections_total"] >= 3, s'
stop_server

log "named export: the name and the empty name work, another name does not"
start_server "$T/disk" --name web
nbdinfo --size "nbd+unix:///web?socket=$SOCK" >/dev/null || fail "named export"
nbdinfo --size "$URI" >/dev/null || fail "empty name must select the default export"
if nbdinfo --size "nbd+unix:///other?socket=$SOCK" 2>"$T/err"; then fail "unknown export accepted"; fi
cat "$T/err"
stop_server

log "read-only"
start_server "$T/disk" --read-only
nbdinfo --json "$URI" | "$PY" -c '
import json, sys; e = json.load(sys.stdin)["exports"][0]
assert e["is_read_only"] is True and e["can_trim"] is False and e["can_zero"] is False'
"$PY" - "$URI" <<'PY'
import nbd, sys, errno
h = nbd.NBD(); h.set_strict_mode(0)  # let the write reach the server
h.connect_uri(sys.argv[1])
try:
    h.pwrite(b"x" * 512, 0)
    raise SystemExit("write on a read-only export succeeded")
except nbd.Error as e:
    # "command failed": the server said no, not libnbd on its behalf
    assert e.errnum == errno.EPERM and "command failed" in str(e), e
    print("write refused with EPERM")
h.pread(512, 0)
h.shutdown()
PY
stop_server
