# Split brain. Both nodes disconnected, both primary, both written, then
# connected: nothing moves, both report split-brain for the other (status,
# text and JSON, and the log says how to resolve it), and the link stays
# down. `demote` + `connect --discard-my-data` on one and `connect` on the
# other: the victim's changes are overwritten by a bitmap resync of both
# sides' changes (not a full sync), and the data areas end equal.
# Then each --after-sb-0pri policy on the case it resolves (no node primary
# when they meet): discard-zero-changes (only one side wrote), and
# discard-younger-primary (both wrote; the one promoted last loses).
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
SSOCK=$T/s1.sock
write() { # write PATTERN OFFSET LENGTH SOCKET
    qemu-io -f raw -c "write -P $1 $2 $3" -c flush "nbd+unix:///?socket=$4" >/dev/null
}
sum_of() { # sum_of IMAGE OFFSET LENGTH
    dd if="$1" bs=1M skip=$(($2 >> 20)) count=$(($3 >> 20)) status=none | sha256sum | cut -c1-16
}
pair() { # pair [serve options for both]: fresh disks, p primary, s1 secondary, in sync
    stop_all
    rm -f "$T/p.img" "$T/s1.img" "$T/p.log" "$T/s1.log"
    new_disk "$T/s1.img" 64M --skip-initial-sync
    new_disk "$T/p.img" 64M --skip-initial-sync
    start_node s1 s1 "$T/s1.img" --role secondary --listen $S --nbd "unix:$SSOCK" --timeout 2 "$@"
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --timeout 2 "$@"
    wait_synced p
    write 0x11 0 4M "$SOCK"
}
RUNNING=
stop_all() {
    for n in $RUNNING; do stop_node "$n"; done
    RUNNING=
}
apart() { # disconnect both (the secondary first: it is not told it is Outdated)
    "$NBDM" disconnect --control "$T/s1.ctl" >/dev/null
    "$NBDM" disconnect --control "$T/p.ctl" >/dev/null
}
meet() { # connect both; wait until each has decided
    "$NBDM" connect --control "$T/p.ctl" "$@" >/dev/null
    "$NBDM" connect --control "$T/s1.ctl" "$@" >/dev/null
}
repl_of() { jfield "$1" 'p["replication"]'; }

log "split brain: both primary, both written, connected"
pair
RUNNING="p s1"
apart
"$NBDM" promote --control "$T/s1.ctl"
write 0x22 8M 4M "$SOCK"
wait_sock "$SSOCK"
write 0x33 16M 4M "$SSOCK"
p_sum=$(sum_of "$T/p.img" $((8 << 20)) $((4 << 20)))
s_sum=$(sum_of "$T/s1.img" $((16 << 20)) $((4 << 20)))
meet
for _ in $(seq 100); do
    [ "$(repl_of p)" = split-brain ] && [ "$(repl_of s1)" = split-brain ] && break
    sleep 0.1
done
[ "$(repl_of p)" = split-brain ] || { "$NBDM" status --control "$T/p.ctl"; fail "p does not report split brain"; }
[ "$(repl_of s1)" = split-brain ] || { "$NBDM" status --control "$T/s1.ctl"; fail "s1 does not report split brain"; }
"$NBDM" status --control "$T/p.ctl" | tee "$T/p.txt"
grep -q 'split-brain' "$T/p.txt" || fail "the text status does not say split-brain"
grep -q "SPLIT BRAIN.*connect --discard-my-data" "$T/p.log" || fail "the log does not say how to resolve it"
sleep 3 # no data moves, and the link stays down
[ "$(jfield p 'p["connection"]')" != Connected ] || fail "the link came up in split brain"
[ "$(sum_of "$T/p.img" $((8 << 20)) $((4 << 20)))" = "$p_sum" ] || fail "p's changes were touched"
[ "$(sum_of "$T/s1.img" $((16 << 20)) $((4 << 20)))" = "$s_sum" ] || fail "s1's changes were touched"
echo "split brain on both sides, nothing moved"

log "resolved: s1 demoted and told to discard its data"
"$NBDM" demote --control "$T/s1.ctl"
if "$NBDM" connect --discard-my-data --control "$T/p.ctl" 2>/dev/null; then
    fail "a primary accepted --discard-my-data"
fi
"$NBDM" connect --discard-my-data --control "$T/s1.ctl"
"$NBDM" connect --control "$T/p.ctl"
wait_synced p
reason=$(jfield p 'p["last_resync_reason"]')
sent=$(jfield p 'p["last_resync_bytes"]')
echo "$reason: $sent bytes"
[ "$reason" = "bitmap resync" ] && [ "$sent" -ge $((8 << 20)) ] && [ "$sent" -le $((10 << 20)) ] ||
    fail "expected a bitmap resync of both sides' 4 MiB of changes, got $reason of $sent bytes"
stop_all
data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the split brain was resolved"
[ "$(sum_of "$T/s1.img" $((8 << 20)) $((4 << 20)))" = "$p_sum" ] || fail "s1 lacks p's changes"
echo "resolved: equal, p's changes kept"

log "--after-sb-0pri discard-zero-changes: s1 promoted apart, only p writes"
pair --after-sb-0pri discard-zero-changes
RUNNING="p s1"
apart
"$NBDM" promote --control "$T/s1.ctl" # a new generation, no write
"$NBDM" demote --control "$T/s1.ctl"
write 0x44 24M 4M "$SOCK"
"$NBDM" demote --control "$T/p.ctl"
meet
wait_synced p
grep -q "discard-zero-changes" "$T/s1.log" || fail "the policy did not decide"
stop_all
data_equal "$T/p.img" "$T/s1.img" || fail "discard-zero-changes: data areas differ"
echo "discard-zero-changes: s1 (no changes) took p's"

log "--after-sb-0pri discard-younger-primary: both write, s1 was promoted last"
pair --after-sb-0pri discard-younger-primary
RUNNING="p s1"
apart
sleep 0.1
"$NBDM" promote --control "$T/s1.ctl"
write 0x55 32M 4M "$SOCK"
wait_sock "$SSOCK"
write 0x66 40M 4M "$SSOCK"
p_sum=$(sum_of "$T/p.img" $((32 << 20)) $((4 << 20)))
"$NBDM" demote --control "$T/s1.ctl"
"$NBDM" demote --control "$T/p.ctl"
meet
wait_synced p
grep -q "discard-younger-primary" "$T/s1.log" || fail "the policy did not decide"
stop_all
data_equal "$T/p.img" "$T/s1.img" || fail "discard-younger-primary: data areas differ"
[ "$(sum_of "$T/s1.img" $((32 << 20)) $((4 << 20)))" = "$p_sum" ] || fail "the older primary's writes lost"
echo "discard-younger-primary: the younger primary (s1) took the older one's data"
