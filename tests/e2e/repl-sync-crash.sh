# Both nodes crash in the middle of a full sync, the target losing what it
# had not flushed (a power cut: its disk's volatile cache is gone). The
# source, restarted, resumes by the bitmap it had written out, and that
# bitmap must still mark the resync data the target had acknowledged but
# not yet confirmed durable, or the resumed sync would skip blocks the
# target lost and call it UpToDate with old data in them.
# Witness: the target's disk is a FUSE file (nbdfuse) over nbdkit's file
# plugin behind the cache filter in writeback mode, which passes writes on
# only when the target flushes; killing nbdkit loses the rest. At the end the
# data areas must be equal (cmp).
# engine-independent (what is tested is the resync's bookkeeping, above the
# io engine: one engine mode is enough)
. "$(dirname "$0")/lib.bash"

command -v nbdkit >/dev/null || fail "nbdkit not installed (make check installs it)"
command -v nbdfuse >/dev/null || fail "nbdfuse not installed"
[ -e /dev/fuse ] || skip "no /dev/fuse"
mkdir -p "$T/fz"

# target_disk_up: $T/fz/disk is s1.img behind a writeback cache
target_disk_up() {
    rm -f "$T/kit.sock"
    TMPDIR=$T nbdkit -f -U "$T/kit.sock" --filter=cache file "$T/s1.img" cache=writeback &
    KIT=$!
    on_exit "kill -9 $KIT 2>/dev/null"
    for _ in $(seq 100); do [ -S "$T/kit.sock" ] && break; sleep 0.05; done
    nbdfuse "$T/fz/disk" "nbd+unix:///?socket=$T/kit.sock" &
    on_exit 'mountpoint -q "$T/fz" && fusermount3 -u -z "$T/fz"'
    for _ in $(seq 100); do [ -e "$T/fz/disk" ] && break; sleep 0.05; done
    [ -e "$T/fz/disk" ] || fail "nbdfuse did not come up"
}
# target_disk_down: what nbdkit holds unflushed is lost with it
target_disk_down() {
    kill -9 "$KIT"
    wait "$KIT" 2>/dev/null || true
    fusermount3 -u -z "$T/fz"
    for _ in $(seq 100); do mountpoint -q "$T/fz" || break; sleep 0.05; done
}

make_hosts 1
head -c 192M /dev/urandom >"$T/p.img"
new_disk "$T/p.img" 192M
head -c 192M /dev/urandom >"$T/s1.img"
new_disk "$T/s1.img" 192M
total_mib=$((DATA_SIZE >> 20))

target_disk_up
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C \
    --resync-rate 4M --force
start_node s1 s1 "$T/fz/disk" --role secondary --listen 10.77.1.2:7789
# At 4 MiB/s the source asks the target to confirm every 8 s (32 MiB) and
# writes its bitmap out every 5 s: crashing at 12 s falls between the
# write-out at 10 s, when 8 MiB were acknowledged but not yet confirmed, and
# the confirm at 16 s, so the target loses those 8 MiB and more.
sleep 12
pct=$(jfield p 'p["resync_percent"] if p.get("replication") == "SyncSource" else -1')
[ "$pct" -ge 5 ] && [ "$pct" -le 60 ] || { "$NBDM" status --control "$T/p.ctl"; fail "not mid-sync: $pct%"; }
echo "both nodes crash at $pct% of the sync"
kill -9 "${NODE_PID[p]}" "${NODE_PID[s1]}"
target_disk_down
wait "${NODE_PID[p]}" "${NODE_PID[s1]}" 2>/dev/null || true

log "both restarted: the sync resumes"
target_disk_up
start_node s1 s1 "$T/fz/disk" --role secondary --listen 10.77.1.2:7789
[ "$(jfield s1 's["disk"]')" = Inconsistent ] || { status_json s1; fail "the target must be Inconsistent"; }
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C \
    --resync-rate 40M
wait_synced p 1 90
mib=$(grep -o "sync of [0-9]* MiB starts" "$T/p.log" | tail -1 | grep -o "[0-9]*")
echo "resumed sync: $mib MiB of $total_mib"
[ "$mib" -lt "$total_mib" ] || fail "the sync started over: its progress was not kept"
stop_node p
stop_node s1 # its last flush reaches s1.img through the cache
target_disk_down
data_equal "$T/p.img" "$T/s1.img" ||
    fail "the target lost resync data it had not made durable, and the resumed sync skipped it"
echo "equal after the crash of both and the resumed sync"
