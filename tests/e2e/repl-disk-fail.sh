# A secondary whose disk fails is never reported, nor recorded, UpToDate:
#  1. a full sync onto a disk that fills up (ENOSPC): neither side says
#     UpToDate, the primary retries the sync, and the secondary, restarted
#     alone, says Inconsistent;
#  2. a failed flush under protocol C: the client's FLUSH still succeeds,
#     the primary logs "its disk failed", drops the peer (peer_disk not
#     UpToDate, last_error set), the secondary says Failed/Inconsistent;
#     once the disk heals, a full sync makes both equal again;
#  3. the primary's clean stop after such a failure (its barrier's flush
#     succeeding) does not record UpToDate on the secondary;
#  4. a secondary that cannot write its (external) metadata goes Failed,
#     logs it, and the primary never sees it UpToDate; clients go on writing.
# Failing disks are FUSE files (nbdfuse) over an nbdkit sh plugin, because
# nbdkit 1.32's error filter cannot fail flushes.
. "$(dirname "$0")/lib.bash"

command -v nbdkit >/dev/null || fail "nbdkit not installed (make check installs it)"
[ -e /dev/fuse ] || skip "no /dev/fuse"

# SOFT=1 (for checking the test against an unfixed binary): report every
# failed check and go on, exit 1 at the end
SOFT=${SOFT:-}
soft_failed=
check_fail() {
    [ -n "$SOFT" ] || fail "$@"
    echo "FAIL (going on): $*" >&2
    soft_failed=1
}

make_hosts 1
ADDR=10.77.1.2:7789

# The sh plugin behind every failing disk: data in $FLAKY_DISK; a pwrite or
# flush fails with EIO while the file $FLAKY_TRIGGER.pwrite or .flush
# exists. Every flush is logged to $FLAKY_LOG, which shows that an fsync on
# the FUSE file really arrives here as a flush.
cat >"$T/flaky.sh" <<'EOF2'
#!/bin/bash
case $1 in
thread_model) echo parallel ;;
get_size) stat -L -c %s "$FLAKY_DISK" ;;
can_write | can_flush | can_trim | can_zero | can_multi_conn) exit 0 ;;
can_fua) echo emulate ;;
pread) exec dd if="$FLAKY_DISK" iflag=skip_bytes,count_bytes skip="$4" count="$3" bs=1M status=none ;;
pwrite)
    if [ -e "$FLAKY_TRIGGER.pwrite" ]; then
        cat >/dev/null
        echo "EIO pwrite fails while the trigger exists" >&2
        exit 1
    fi
    exec dd of="$FLAKY_DISK" oflag=seek_bytes conv=notrunc seek="$4" bs=1M iflag=fullblock status=none ;;
trim) exec fallocate -p -o "$4" -l "$3" "$FLAKY_DISK" ;;
zero) exec fallocate -z -o "$4" -l "$3" "$FLAKY_DISK" ;;
flush)
    if [ -e "$FLAKY_TRIGGER.flush" ]; then
        echo "flush EIO" >>"$FLAKY_LOG"
        echo "EIO flush fails while the trigger exists" >&2
        exit 1
    fi
    echo "flush ok" >>"$FLAKY_LOG"
    exec sync "$FLAKY_DISK" ;;
*) exit 2 ;;
esac
EOF2
chmod +x "$T/flaky.sh"

# flaky_disk NAME SIZE: $T/NAME.fz/disk, a FUSE file of SIZE whose data is
# in $T/NAME.raw; its writes fail while $T/NAME.pwrite exists, its flushes
# while $T/NAME.flush exists; flushes are logged in $T/NAME.flushes,
# nbdkit's messages in $T/NAME.kit
flaky_disk() {
    local name=$1 kit fuse
    truncate -s "$2" "$T/$name.raw"
    mkdir -p "$T/$name.fz"
    FLAKY_DISK=$T/$name.raw FLAKY_TRIGGER=$T/$name FLAKY_LOG=$T/$name.flushes \
        nbdkit -f -U "$T/$name.sock" sh "$T/flaky.sh" 2>>"$T/$name.kit" &
    kit=$!
    on_exit "kill $kit 2>/dev/null"
    for _ in $(seq 100); do [ -S "$T/$name.sock" ] && break; sleep 0.05; done
    [ -S "$T/$name.sock" ] || { cat "$T/$name.kit"; fail "nbdkit did not start"; }
    nbdfuse "$T/$name.fz/disk" "nbd+unix:///?socket=$T/$name.sock" 2>>"$T/$name.kit" &
    fuse=$!
    # unmounting ends nbdfuse
    on_exit "mountpoint -q $T/$name.fz && fusermount3 -u -z $T/$name.fz
        for _ in \$(seq 40); do kill -0 $fuse 2>/dev/null || break; sleep 0.05; done
        kill $fuse 2>/dev/null"
    for _ in $(seq 100); do [ -e "$T/$name.fz/disk" ] && break; sleep 0.05; done
    [ -e "$T/$name.fz/disk" ] || fail "nbdfuse did not start"
}

# jget NODE EXPR: EXPR over NODE's status s (p: its first peer, {} if none);
# "?" if the node does not answer
jget() {
    local j
    j=$("$NBDM" status --control "$T/$1.ctl" --json 2>/dev/null) || { echo "?"; return 0; }
    "$PY" -c '
import json, sys
s = json.loads(sys.argv[1]); p = (s["peers"] or [{}])[0]
print(eval(sys.argv[2]))' "$j" "$2"
}
# wait_for SECONDS 'CODE': until the shell code CODE (evaluated afresh
# each time) succeeds; status 1 if it never does
wait_for() {
    local end=$((SECONDS + $1))
    while [ $SECONDS -lt $end ]; do
        eval "$2" && return 0
        sleep 0.1
    done
    eval "$2"
}
# never_uptodate SECONDS: for that long, neither the secondary's disk nor
# the primary's view of it is UpToDate
never_uptodate() {
    local d pd
    local end=$((SECONDS + $1))
    while [ $SECONDS -lt $end ]; do
        d=$(jget s1 's.get("disk")')
        pd=$(jget p 'p.get("peer_disk")')
        if [ "$d" = UpToDate ] || [ "$pd" = UpToDate ]; then
            "$NBDM" status --control "$T/p.ctl" || true
            "$NBDM" status --control "$T/s1.ctl" || true
            check_fail "$2: the secondary's disk is $d, the primary says its peer_disk is $pd"
            return 0
        fi
        sleep 0.2
    done
    echo "for $1 s: the secondary said ${d}, the primary said peer_disk ${pd}"
}
# stop_any NAME: SIGTERM, and wait (10 s) for it to end; any exit status,
# since a node whose disk cannot flush may well report that
stop_any() {
    local pid=${NODE_PID[$1]} rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && { tail "$T/$1.log"; fail "$1 still running 10 s after SIGTERM"; }
    wait "$pid" || rc=$?
    echo "$1 exited with status $rc"
}
# alone_disk NAME DISK [options]: the secondary restarted with no primary
# to talk to; prints the disk state its status shows, and stops it
alone_disk() {
    local name=$1 disk=$2 d
    shift 2
    start_node "$name" s1 "$disk" --role secondary --listen "$ADDR" "$@"
    wait_for 10 '[ "$(jget "$name" "s[\"disk\"]")" != "?" ]' || true
    d=$(jget "$name" 's["disk"]')
    stop_any "$name" >/dev/null
    echo "$d"
}
established_uptodate() {
    [ "$(jget p 'p.get("replication"), p.get("peer_disk")')" = "('Established', 'UpToDate')" ]
}
# client PYTHON: runs it with h, a libnbd handle connected to the primary
client() {
    "$PY" -c "
import nbd, os
h = nbd.NBD(); h.connect_uri('$URI')
$1
h.shutdown()"
}

log "1: a full sync onto a secondary whose filesystem fills up"
mkdir "$T/small"
mount -t tmpfs -o size=40M nbdm-small "$T/small"
on_exit "mountpoint -q $T/small && umount $T/small"
new_disk "$T/p.img" 64M
truncate -s 64M "$T/small/s1.img"
"$NBDM" create-md "$T/small/s1.img" >/dev/null
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer "$ADDR" --protocol C --force
client '
for off in range(0, 60 << 20, 1 << 20):
    h.pwrite(os.urandom(1 << 20), off)
h.flush()'
start_node s1 s1 "$T/small/s1.img" --role secondary --listen "$ADDR"
wait_for 30 'grep -q "No space left on device" "$T/s1.log"' ||
    { cat "$T/s1.log"; fail "the secondary never ran out of space"; }
grep -m1 "No space left on device" "$T/s1.log"
never_uptodate 8 "after ENOSPC in a full sync"
# the primary redials (backoff up to 5 s) and tries the sync again
syncs() { grep -c "full sync of .* starts" "$T/p.log" || true; }
wait_for 10 '[ "$(syncs)" -ge 2 ]' || check_fail "the full sync was not retried ($(syncs) started)"
echo "full syncs started: $(syncs)"
stop_node p
stop_any s1
d=$(alone_disk s1 "$T/small/s1.img")
[ "$d" = Inconsistent ] || check_fail "restarted alone after ENOSPC in a sync, the secondary says $d"
echo "restarted alone: $d"
umount "$T/small"

log "2: a failed flush on the secondary under protocol C"
rm -f "$T/p.img" "$T/p.log" "$T/s1.log"
# external metadata in plain files: only the data area's flushes fail, so
# recording Inconsistent works
new_disk "$T/p.img" 64M --meta "$T/p.meta" --skip-initial-sync
flaky_disk f2 64M
"$NBDM" create-md "$T/f2.fz/disk" --meta "$T/s2.meta" --skip-initial-sync >/dev/null
S2=("$T/f2.fz/disk" --meta "$T/s2.meta")
P2=("$T/p.img" --meta "$T/p.meta" --role primary --nbd "unix:$SOCK" --peer "$ADDR" --protocol C)
start_node s1 s1 "${S2[@]}" --role secondary --listen "$ADDR"
start_node p p "${P2[@]}"
wait_for 20 established_uptodate || { "$NBDM" status --control "$T/p.ctl"; fail "no UpToDate link"; }
touch "$T/f2.flush"
# the client's flush must succeed: the primary's own disk has the data
client '
h.pwrite(os.urandom(1 << 20), 0)
h.flush()
h.pwrite(os.urandom(1 << 20), 4 << 20)
h.flush()
print("writes and flushes through the primary succeeded")' ||
    check_fail "the client's write or FLUSH failed while a secondary's flush failed"
grep -q "flush EIO" "$T/f2.flushes" || fail "no failed flush reached nbdkit: the test does not test"
wait_for 10 'grep -q "its disk failed" "$T/p.log"' ||
    { tail "$T/p.log"; check_fail "the primary's log does not say the peer's disk failed"; }
wait_for 10 '[ "$(jget p "p.get(\"peer_disk\")")" != UpToDate ]' ||
    check_fail "the primary still says its peer is UpToDate after its flush failed"
wait_for 10 '[ -n "$(jget p "p.get(\"last_error\") or \"\"")" ]' ||
    check_fail "the primary's status has no last_error for the peer"
echo "primary: peer_disk $(jget p 'p.get("peer_disk")'), last_error: $(jget p 'p.get("last_error")')"
d=$(jget s1 's["disk"]')
case $d in Failed | Inconsistent) ;; *) check_fail "the secondary says its disk is $d after a failed flush" ;; esac
never_uptodate 3 "while the flush keeps failing"

log "2: the disk heals; the secondary restarts, is synced, and equal"
rm -f "$T/f2.flush"
stop_any s1
start_node s1 s1 "${S2[@]}" --role secondary --listen "$ADDR"
wait_for 40 established_uptodate || { "$NBDM" status --control "$T/p.ctl"; fail "no resync after the disk healed"; }
grep -q "full sync of .* starts" "$T/p.log" || check_fail "no full sync after the failure"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/f2.raw" || check_fail "data areas differ after the resync"
echo "resynced: equal"

log "3: a clean stop of the primary after the secondary's flush failed once"
# The flush fails once (the client's FLUSH), and the clean stop's own
# barrier flushes fine, but the failure still counts. The disk's writes
# fail from then on, so a resync cannot make it UpToDate meanwhile: the
# write trigger is made before the flush trigger goes, so at every moment
# one of them is armed.
start_node s1 s1 "${S2[@]}" --role secondary --listen "$ADDR"
start_node p p "${P2[@]}"
wait_for 20 established_uptodate || { "$NBDM" status --control "$T/p.ctl"; fail "no UpToDate link"; }
touch "$T/f2.flush"
client '
h.pwrite(os.urandom(1 << 20), 8 << 20)
h.flush()' || check_fail "the client's write or FLUSH failed"
touch "$T/f2.pwrite"
rm "$T/f2.flush"
sleep 1
stop_node p
stop_any s1
rm "$T/f2.pwrite" # what counts is what the stops recorded
d=$(alone_disk s1 "${S2[@]}")
[ "$d" = Inconsistent ] || { tail -n 12 "$T/s1.log"; check_fail "after a failed flush and clean stops the secondary says $d"; }
echo "restarted alone: $d"

log "4: the secondary cannot write its metadata"
rm -f "$T/p.img" "$T/p.meta" "$T/p.log" "$T/s1.log"
flaky_disk m4 1M
truncate -s 64M "$T/p.img" "$T/s4.img"
"$NBDM" create-md "$T/p.img" --meta "$T/p.meta" --skip-initial-sync >/dev/null
"$NBDM" create-md "$T/s4.img" --meta "$T/m4.fz/disk" --skip-initial-sync >/dev/null
start_node s1 s1 "$T/s4.img" --role secondary --listen "$ADDR" --meta "$T/m4.fz/disk"
touch "$T/m4.pwrite" "$T/m4.flush"
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer "$ADDR" --protocol C --meta "$T/p.meta"
client '
for i in range(8):
    h.pwrite(os.urandom(1 << 20), i << 20)
h.flush()
print("writes through the primary succeeded")' || check_fail "the client's writes failed"
# a line about the metadata other than the start-up line "(..., external metadata)"
meta_logged() { awk '/metadata/ && !/(internal|external) metadata\)/ { print; f = 1 } END { exit !f }' "$T/s1.log"; }
wait_for 10 meta_logged >/dev/null || check_fail "the secondary's log says nothing about its metadata"
meta_logged || true
wait_for 10 '[ "$(jget s1 "s[\"disk\"]")" = Failed ]' ||
    check_fail "the secondary that cannot write its metadata says its disk is $(jget s1 's["disk"]')"
end=$((SECONDS + 8))
while [ $SECONDS -lt $end ]; do
    if [ "$(jget p 'p.get("peer_disk")')" = UpToDate ]; then
        "$NBDM" status --control "$T/p.ctl" || true
        check_fail "the primary says a secondary that cannot write its metadata is UpToDate"
        break
    fi
    sleep 0.2
done
echo "primary: $(jget p 'p.get("replication"), p.get("peer_disk")')"
client '
h.pwrite(b"\x55" * 65536, 0)
h.flush()' || check_fail "the client's write failed"
stop_node p
stop_any s1
[ -z "$soft_failed" ] || exit 1
