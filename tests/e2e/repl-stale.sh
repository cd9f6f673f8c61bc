# Four ways a node used to be taken as UpToDate, or used as a sync source,
# while it lacked writes (each ends with cmp of the data areas, 64 MiB):
#  1. a clean stop of both, the primary restarted alone and written to, the
#     secondary started later: it must be resynced (bitmap);
#  2. a secondary that dials its primary is dropped by --timeout (SIGSTOP),
#     misses writes, and comes back (SIGCONT): resynced by bitmap (what it
#     missed, not the whole disk);
#  3. protocol A, the secondary frozen, 32 MiB written, the primary
#     SIGKILLed and restarted, the secondary thawed: the extents of the
#     primary's activity log are resynced (not the whole disk);
#  4. the secondary is killed, the primary writes and stops; the stale node
#     is started as primary and written to; the other, with the newest
#     writes, starts as secondary: split brain, nothing moves, its writes
#     survive. And a node that knows it is Outdated (the primary disconnected
#     it and wrote on) is not started or promoted as primary without --force.
# PARTS="1 3" runs only those parts (to check one against an old binary).
. "$(dirname "$0")/lib.bash"

PARTS=${PARTS:-"1 2 3 4 4b"}
part() { [[ " $PARTS " == *" $1 "* ]]; }
make_hosts 1
S=10.77.1.2:7789
fresh() {
    rm -f "$T/p.img" "$T/s1.img" "$T/p.log" "$T/s1.log" "$T/p.ctl" "$T/s1.ctl"
    new_disk "$T/s1.img" 64M --skip-initial-sync
    new_disk "$T/p.img" 64M --skip-initial-sync
}
write() { # write PATTERN OFFSET LENGTH [NODE-SOCKET]
    qemu-io -f raw -c "write -P $1 $2 $3" -c flush "nbd+unix:///?socket=${4:-$SOCK}" >/dev/null
}
sum_of() { # sum_of IMAGE OFFSET LENGTH: checksum of a range of an image
    dd if="$1" bs=1M skip=$(($2 >> 20)) count=$(($3 >> 20)) status=none | sha256sum | cut -c1-16
}

if part 1; then
log "1: clean stop of both; the primary restarted alone writes; the secondary comes later"
fresh
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S
wait_peers p 1
write 0x11 0 8M
stop_node p
stop_node s1
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S
write 0x22 16M 4M
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
wait_synced p
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "1: the secondary was taken as UpToDate without a resync"
grep -h "resync" "$T/p.log" | tail -2
echo "1: equal"
fi

if part 2; then
log "2: a secondary that dials its primary, dropped by --timeout, misses writes"
fresh
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --listen 10.77.1.1:7788 --timeout 2
start_node s1 s1 "$T/s1.img" --role secondary --peer 10.77.1.1:7788 --timeout 2
wait_peers p 1
kill -STOP "${NODE_PID[s1]}"
on_exit "kill -CONT ${NODE_PID[s1]} 2>/dev/null"
write 0x33 0 6M   # waits about the timeout, then goes on without s1
write 0x34 20M 2M
kill -CONT "${NODE_PID[s1]}"
sleep 1
wait_synced p
sent=$(jfield p 'p["last_resync_bytes"]')
echo "2: resync moved $sent bytes (8 MiB were written while it was away)"
[ "$sent" -ge $((8 << 20)) ] && [ "$sent" -le $((12 << 20)) ] ||
    fail "2: expected a bitmap resync of about 8 MiB, not $sent bytes"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "2: a dropped secondary came back as UpToDate without a resync"
echo "2: equal"
fi

if part 3; then
log "3: protocol A, the secondary frozen, 32 MiB written, the primary SIGKILLed"
fresh
start_node s1 s1 "$T/s1.img" --role secondary --listen $S --timeout 60
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --protocol A --timeout 60
wait_peers p 1
kill -STOP "${NODE_PID[s1]}"
# protocol A: each write is answered once it is on the primary's disk and
# queued for the peer, which reads none of it
qemu-io -f raw -c "write -P 0x55 0 32M" "$URI" >/dev/null
kill -9 "${NODE_PID[p]}"
wait "${NODE_PID[p]}" 2>/dev/null || true
# restarted before the secondary thaws: it dials a node that answers later
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --protocol A --timeout 60
sleep 1
kill -CONT "${NODE_PID[s1]}"
wait_synced p
sent=$(jfield p 'p["last_resync_bytes"]')
echo "3: resync moved $sent bytes (the log held 8 extents of 4 MiB)"
[ "$sent" -ge $((32 << 20)) ] && [ "$sent" -le $((36 << 20)) ] ||
    fail "3: expected the activity log's 32 MiB to be resynced, not $sent bytes"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "3: after the primary crashed, writes it had not replicated were left out"
grep -h "crashed while primary" "$T/p.log" || true
echo "3: equal"
fi

if part 4; then
log "4: a stale node started as primary, the node with the newest writes as secondary"
fresh
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S
wait_peers p 1
write 0x61 0 4M
kill -9 "${NODE_PID[s1]}"
wait "${NODE_PID[s1]}" 2>/dev/null || true
write 0x62 8M 4M # the newest writes, on p only
stop_node p
newest=$(sum_of "$T/p.img" $((8 << 20)) $((4 << 20)))
# the stale node as primary, written to, then the other as secondary
start_node s1 p "$T/s1.img" --role primary --nbd "unix:$T/s1.sock" --listen 10.77.1.1:7788
wait_sock "$T/s1.sock"
write 0x63 16M 4M "$T/s1.sock"
start_node p s1 "$T/p.img" --role secondary --peer 10.77.1.1:7788
sleep 4
stop_node s1
stop_node p
[ "$(sum_of "$T/p.img" $((8 << 20)) $((4 << 20)))" = "$newest" ] ||
    fail "4: the node with the newest writes was overwritten by a stale one"
grep -q "SPLIT BRAIN" "$T/p.log" || fail "4: no split brain reported on the node with the newest writes"
grep -q "SPLIT BRAIN" "$T/s1.log" || fail "4: no split brain reported on the stale node"
echo "4: the newest writes survived; split brain reported on both"
fi

if part 4b; then
log "4b: an Outdated disk needs --force to be primary"
fresh
start_node s1 s1 "$T/s1.img" --role secondary --listen $S --nbd "unix:$T/s1.sock"
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S
wait_peers p 1
"$NBDM" disconnect --control "$T/p.ctl"
write 0x71 0 4M # s1 lacks this, and knows it
for _ in $(seq 50); do [ "$(jfield s1 's["disk"]')" = Outdated ] && break; sleep 0.1; done
[ "$(jfield s1 's["disk"]')" = Outdated ] || fail "4b: a secondary disconnected by its primary is not Outdated"
if "$NBDM" promote --control "$T/s1.ctl" 2>"$T/err"; then fail "4b: an Outdated disk was promoted"; fi
cat "$T/err"
grep -q -- "--force" "$T/err" || fail "4b: the refusal does not say what --force does"
stop_node s1
stop_node p
if ip netns exec "$(ns s1)" "$NBDM" serve "$T/s1.img" --role primary --listen $S \
    --nbd "unix:$T/s1x.sock" --control "$T/s1x.ctl" 2>"$T/err"; then fail "4b: an Outdated disk was started as primary"; fi
cat "$T/err"
grep -q "Outdated.*--force" "$T/err" || fail "4b: the refusal does not name the state and --force"
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
"$NBDM" promote --force --control "$T/s1.ctl" || fail "4b: promote --force refused"
got=$(jfield s1 's["role"] + " " + s["disk"]')
[ "$got" = "primary UpToDate" ] || fail "4b: $got after promote --force"
stop_node s1
echo "4b: refused without --force, with a reason"
fi
