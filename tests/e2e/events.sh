# engine-independent: the event stream is control-socket code
# nbdmirror events. Subscribers on a primary and a secondary in network
# namespaces (text, and JSON on the primary) see a whole cycle, in order:
# the state first (exists ... exists -), the connect, a full sync (resync
# start, progress at most about once a second, done), a disconnect by the
# admin and the connect after it, the secondary killed (its subscriber ends
# with status 0) and back, demote and promote on both sides, a split brain
# and its resolution. The JSON lines say what the text lines say (read
# back with Python's shlex and json, not our parser). --now prints the
# state and exits; 16 subscribers at most, the 17th is told why. A
# subscriber that never reads blocks nothing: while the primary is flooded
# with changes, writes and status go on, the daemon's memory stays flat,
# and the silent one is dropped with a last error line once it is 64 KiB
# behind, while a reading one misses nothing. SIGTERM with subscribers
# attached (one of them stuck) still exits 0, and they exit 0.
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
SSOCK=$T/s1.sock
new_disk "$T/p.img" 256M
new_disk "$T/s1.img" 256M

# wait_line FILE REGEX: a line of FILE matches (30 s at most)
wait_line() {
    for _ in $(seq 300); do
        grep -Eq -- "$2" "$1" && return 0
        sleep 0.1
    done
    echo "--- $1:"; cat "$1"
    fail "no line matching '$2' in $(basename "$1")"
}
# in_order FILE REGEX...: lines matching each REGEX, one after another
in_order() {
    "$PY" - "$@" <<'EOF' || fail "events out of order in $(basename "$1")"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
i = 0
for pat in sys.argv[2:]:
    while i < len(lines) and not re.search(pat, lines[i]):
        i += 1
    if i == len(lines):
        print(f"no line matching {pat!r} after the earlier ones; the events were:")
        print("\n".join(lines))
        sys.exit(1)
    i += 1
EOF
}
write() { # write PATTERN OFFSET LENGTH SOCKET
    qemu-io -f raw -c "write -P $1 $2 $3" -c flush "nbd+unix:///?socket=$4" >/dev/null
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

log "subscribers from the start: the primary alone, then its peer arrives"
start_node p p "$T/p.img" --role primary --force --nbd "unix:$SOCK" --peer $S --timeout 2 \
    --resync-rate 64M
"$NBDM" events --control "$T/p.ctl" >"$T/p.ev" 2>"$T/p.ev.err" &
EV_P=$!
"$NBDM" events --control "$T/p.ctl" --json >"$T/p.json" 2>"$T/p.json.err" &
EV_J=$!
on_exit "kill $EV_P $EV_J 2>/dev/null"
wait_line "$T/p.ev" '^exists -$'
wait_line "$T/p.json" '"object":"-"'
start_node s1 s1 "$T/s1.img" --role secondary --listen $S --nbd "unix:$SSOCK" --timeout 2
"$NBDM" events --control "$T/s1.ctl" >"$T/s1.ev" &
EV_S=$!
on_exit "kill $EV_S 2>/dev/null"
wait_synced p 1 120
wait_line "$T/p.ev" "^destroy resync peer=$S replication=SyncSource result=done"
wait_line "$T/s1.ev" "^destroy resync peer=10\.77\.1\.1:[0-9]+ replication=SyncTarget result=done"
"$PY" - "$T/p.ev" "$DATA_SIZE" <<'EOF' || fail "the full sync's events are wrong"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
size = int(sys.argv[2])
prog = [l for l in lines if l.startswith("change resync ")]
done = [l for l in lines if l.startswith("destroy resync ")][0]
kv = dict(w.split("=", 1) for w in done.split()[2:])
print(f"{len(prog)} progress lines; {done}")
assert int(kv["done"]) == size, f"a full sync moves {size} bytes"
secs = int(kv["time-ms"]) / 1000
assert 2 <= len(prog) <= secs + 2, f"{len(prog)} progress lines in {secs} s"
pcts = [int(re.search(r" percent=(\d+) ", l).group(1)) for l in prog]
assert pcts == sorted(pcts) and 0 < pcts[0] and pcts[-1] <= 100, pcts
for l in prog:
    v = dict(w.split("=", 1) for w in l.split()[2:])
    assert int(v["done"]) + int(v["remaining"]) == size, l
    assert int(v["rate"]) > 0, l
EOF

log "disconnect and connect by the admin"
"$NBDM" disconnect --control "$T/p.ctl" >/dev/null
wait_line "$T/p.ev" "^change peer name=$S connection=StandAlone .*error=\"disconnected by the admin\""
"$NBDM" connect --control "$T/p.ctl" >/dev/null
wait_synced p

log "the secondary killed: its subscriber ends with status 0; then it comes back"
kill -9 "${NODE_PID[s1]}"
wait "$EV_S" || fail "the secondary's subscriber exited with status $? when the daemon went"
in_order "$T/p.ev" "^change peer name=$S connection=StandAlone" "^change peer name=$S connection=Connecting"
start_node s1 s1 "$T/s1.img" --role secondary --listen $S --nbd "unix:$SSOCK" --timeout 2
"$NBDM" events --control "$T/s1.ctl" >"$T/s1b.ev" &
EV_S=$!
on_exit "kill $EV_S 2>/dev/null"
wait_synced p
wait_line "$T/s1b.ev" "^(exists|create|change) peer name=10\.77\.1\.1:[0-9]+ connection=Connected replication=Established"

log "demote the primary, promote the secondary, and back"
"$NBDM" demote --control "$T/p.ctl" >/dev/null
"$NBDM" promote --control "$T/s1.ctl" >/dev/null
wait_line "$T/s1b.ev" '^change node role=primary disk=UpToDate$'
wait_line "$T/p.ev" "^change peer name=$S .* peer-role=Primary"
"$NBDM" demote --control "$T/s1.ctl" >/dev/null
"$NBDM" promote --control "$T/p.ctl" >/dev/null
wait_line "$T/s1b.ev" "^change peer name=.* peer-role=Primary"
in_order "$T/s1b.ev" '^change node role=primary' '^change node role=secondary'
in_order "$T/p.ev" '^change node role=secondary' "peer-role=Primary" "peer-role=Secondary" \
    '^change node role=primary'

log "split brain: both primary, both written, connected; then resolved"
"$NBDM" disconnect --control "$T/s1.ctl" >/dev/null
"$NBDM" disconnect --control "$T/p.ctl" >/dev/null
"$NBDM" promote --control "$T/s1.ctl" >/dev/null
write 0x22 8M 4M "$SOCK"
wait_sock "$SSOCK"
write 0x33 16M 4M "$SSOCK"
"$NBDM" connect --control "$T/p.ctl" >/dev/null
"$NBDM" connect --control "$T/s1.ctl" >/dev/null
wait_line "$T/p.ev" "^create split-brain peer=$S error=\"split brain"
wait_line "$T/s1b.ev" '^create split-brain peer=.* error="split brain'
"$NBDM" demote --control "$T/s1.ctl" >/dev/null
"$NBDM" connect --discard-my-data --control "$T/s1.ctl" >/dev/null
"$NBDM" connect --control "$T/p.ctl" >/dev/null
wait_synced p
wait_line "$T/p.ev" "^destroy split-brain peer=$S$"

log "the whole cycle, in order, on the primary"
in_order "$T/p.ev" \
    '^exists node role=primary disk=UpToDate$' \
    "^exists peer name=$S connection=Connecting replication=Off peer-disk=Unknown peer-role=Unknown" \
    '^exists -$' \
    "^change peer name=$S connection=Connected replication=SyncSource peer-disk=Inconsistent peer-role=Secondary" \
    "^create resync peer=$S replication=SyncSource percent=0 done=0 remaining=[1-9]" \
    "^change resync peer=$S replication=SyncSource percent=" \
    "^destroy resync peer=$S replication=SyncSource result=done percent=100 " \
    "^change peer name=$S connection=Connected replication=Established peer-disk=UpToDate" \
    "^change peer name=$S connection=StandAlone replication=Off" \
    "^change peer name=$S connection=Connected replication=(SyncSource|Established)" \
    "^change peer name=$S connection=Connecting" \
    "^change peer name=$S connection=Connected" \
    '^change node role=secondary disk=UpToDate$' \
    '^change node role=primary disk=UpToDate$' \
    "^change peer name=$S connection=StandAlone .*split-brain|^change peer name=$S .*replication=split-brain" \
    "^create split-brain peer=$S " \
    "^destroy split-brain peer=$S$" \
    "^change peer name=$S connection=Connected replication=Established peer-disk=UpToDate"
# (the primary may have connected before this subscriber came: then the
# peer and the resync are among the exists lines)
in_order "$T/s1.ev" \
    '^exists node role=secondary disk=Inconsistent$' \
    '^(exists|create) peer name=10\.77\.1\.1:[0-9]+ connection=Connected replication=(PausedSyncT|SyncTarget)' \
    '^(exists|create) resync peer=10\.77\.1\.1:[0-9]+ replication=SyncTarget percent=' \
    '^change resync peer=.* replication=SyncTarget percent=' \
    '^change node role=secondary disk=UpToDate$'
grep -q '^destroy resync .*replication=SyncTarget result=done percent=100 ' "$T/s1.ev" ||
    fail "the secondary did not see its resync end"
echo "cycle seen in order: $(wc -l <"$T/p.ev") lines on the primary:"
cat "$T/p.ev"

log "JSON: the same lines, one object each"
"$PY" - "$T/p.ev" "$T/p.json" <<'EOF' || fail "the JSON stream differs from the text stream"
import json, shlex, sys
text = open(sys.argv[1]).read().splitlines()
objs = [json.loads(l) for l in open(sys.argv[2]).read().splitlines()]
# the two subscribers joined at slightly different times: compare from the
# first change on (the same broadcast reaches both)
def changes(seq):
    i = next(i for i, x in enumerate(seq) if x.get("event") not in ("exists",))
    return seq[i:]
def as_obj(line):
    w = shlex.split(line)
    o = {"event": w[0], "object": w[1]}
    for kv in w[2:]:
        k, v = kv.split("=", 1)
        o[k.replace("-", "_")] = int(v) if v.isdigit() else v
    return o
t = changes([as_obj(l) for l in text])
j = changes(objs)
n = min(len(t), len(j))
assert n > 20 and abs(len(t) - len(j)) <= 1, (len(t), len(j))
assert t[:n] == j[:n], next((a, b) for a, b in zip(t, j) if a != b)
assert all(isinstance(o.get("percent", 0), int) for o in j)
print(f"{n} change events equal in text and JSON")
EOF

log "--now: the current state, then exit"
"$NBDM" events --now --control "$T/p.ctl" >"$T/now.txt" || fail "events --now failed"
cat "$T/now.txt"
[ "$(tail -n 1 "$T/now.txt")" = "exists -" ] || fail "--now does not end with 'exists -'"
grep -q '^exists node role=primary disk=UpToDate$' "$T/now.txt" || fail "--now: node line"
grep -q "^exists peer name=$S connection=Connected replication=Established peer-disk=UpToDate peer-role=Secondary$" \
    "$T/now.txt" || fail "--now: peer line"
"$NBDM" events --now --json --control "$T/p.ctl" >"$T/now.json" || fail "events --now --json failed"
"$PY" -c 'import json,sys; o=[json.loads(l) for l in open(sys.argv[1])]; assert o[-1] == {"event":"exists","object":"-"} and o[0]["role"] == "primary", o' \
    "$T/now.json" || fail "--now --json"
# by resource NAME: this node's control socket from the file
{
    printf '[resource]\nprotocol = C\n\n'
    printf '[node p]\naddress = 10.77.1.1:7789\nnbd = unix:%s\ndisk = %s/p.img\ncontrol = %s/p.ctl\n\n' "$SOCK" "$T" "$T"
    printf '[node s1]\naddress = %s\nnbd = unix:%s\ndisk = %s/s1.img\ncontrol = %s/s1.ctl\n' "$S" "$SSOCK" "$T" "$T"
} >"$T/r0.res"
NBDMIRROR_CONFDIR=$T "$NBDM" events r0 --node p --now >"$T/now-name.txt" || fail "events r0 --now failed"
cmp "$T/now.txt" "$T/now-name.txt" || fail "events by resource NAME shows something else"
if "$NBDM" events --control "$T/nothing.ctl" 2>"$T/err"; then fail "events without a daemon succeeded"; fi
grep -q "cannot reach" "$T/err" || fail "events without a daemon does not say why"

log "at most 16 subscribers; the 17th is told why"
"$PY" - "$T/p.ctl" 14 "$T/hold.ready" "$T/hold.stop" <<'EOF' &
import os, socket, sys, time
path, n, ready, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.sendall(b"events\n")
    assert s.recv(64).startswith(b"nbdmirror-events 1\n")
    socks.append(s)
open(ready, "w").close()
while not os.path.exists(stop):
    time.sleep(0.05)
EOF
HOLD=$!
for _ in $(seq 200); do [ -e "$T/hold.ready" ] && break; sleep 0.05; done
[ -e "$T/hold.ready" ] || fail "14 subscribers could not join"
if "$NBDM" events --now --control "$T/p.ctl" >/dev/null 2>"$T/err"; then fail "a 17th subscriber was taken"; fi
cat "$T/err"
grep -q "too many event subscribers" "$T/err" || fail "the 17th subscriber is not told why"
"$NBDM" status --control "$T/p.ctl" >/dev/null || fail "status failed with 16 subscribers"
touch "$T/hold.stop"
wait "$HOLD"
for _ in $(seq 100); do "$NBDM" events --now --control "$T/p.ctl" >/dev/null 2>&1 && break; sleep 0.1; done
"$NBDM" events --now --control "$T/p.ctl" >/dev/null || fail "subscribers that left keep their places"

log "a subscriber that never reads, while the primary is flooded with changes"
stop_node s1 # the peer link now only goes StandAlone <-> Connecting
"$PY" - "$T/p.ctl" "$T/stuck.go" "$T/stuck.out" <<'EOF' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"events\n")
while not os.path.exists(sys.argv[2]):  # reads nothing until told
    time.sleep(0.05)
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
lines = data.decode().splitlines()
peer = sum(l.startswith("change peer ") for l in lines)
open(sys.argv[3], "w").write(f"{len(data)} {peer} {lines[-1]}\n")
EOF
STUCK=$!
on_exit "kill $STUCK 2>/dev/null"
sleep 0.5
rss0=$(rss_kib "${NODE_PID[p]}")
"$PY" - "$T/p.ctl" "$T/p.log" <<'EOF' &
import socket, sys, time
def cmd(c):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(c + b"\n")
    while s.recv(4096):
        pass
    s.close()
end = time.time() + 120
n = 0
while time.time() < end and b"dropped" not in open(sys.argv[2], "rb").read():
    for _ in range(200):
        cmd(b"disconnect"); cmd(b"connect"); n += 2
print(f"{n} commands sent")
EOF
FLOOD=$!
# meanwhile the daemon serves: writes and status, each well within its time
for i in 1 2 3; do
    timeout 10 qemu-io -f raw -c "write -P $i 0 1M" -c flush "$URI" >/dev/null ||
        fail "a write did not complete while a subscriber sat there"
    timeout 5 "$NBDM" status --control "$T/p.ctl" >/dev/null || fail "status did not answer"
done
wait "$FLOOD" || fail "the flood failed"
grep -q "events: subscriber .* dropped" "$T/p.log" || fail "the silent subscriber was never dropped"
rss1=$(rss_kib "${NODE_PID[p]}")
echo "primary RSS: ${rss0} KiB before the flood, ${rss1} KiB after"
# (AddressSanitizer holds freed memory in quarantine: no measure there)
if ! ldd "$NBDM" | grep -q libasan; then
    [ $((rss1 - rss0)) -lt 8192 ] || fail "the daemon grew by $((rss1 - rss0)) KiB with a silent subscriber"
fi
touch "$T/stuck.go"
wait "$STUCK" || fail "the silent subscriber's reader failed"
read -r got peer_lines last <"$T/stuck.out"
echo "the silent subscriber, reading at last: $got bytes, $peer_lines peer changes, ending '$last'"
[ "$last" = "error: this subscriber fell too far behind and is dropped" ] ||
    fail "the dropped subscriber's last line is not the error"
[ "$got" -lt $((1 << 20)) ] || fail "a dropped subscriber got $got bytes: its queue was not bounded"
"$NBDM" events --now --control "$T/p.ctl" >/dev/null || fail "events after the flood"
n=$(grep -c "^change peer name=$S connection=" "$T/p.ev")
echo "the reading subscriber saw $n peer changes in all"
[ "$peer_lines" -gt 100 ] && [ "$n" -gt "$peer_lines" ] || fail "the reading subscriber missed the flood"
grep -q '^error' "$T/p.ev.err" && fail "the reading subscriber was dropped"

log "SIGTERM with subscribers attached, one of them stuck"
"$PY" - "$T/p.ctl" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"events\n")
time.sleep(60)
EOF
STUCK2=$!
on_exit "kill $STUCK2 2>/dev/null"
sleep 0.5
stop_node p
wait "$EV_P" || fail "the text subscriber exited with status $? when serve stopped"
wait "$EV_J" || fail "the JSON subscriber exited with status $? when serve stopped"
kill "$STUCK2" 2>/dev/null || true
echo "serve stopped cleanly; its subscribers ended with status 0"
