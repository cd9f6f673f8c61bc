# engine-independent: progress is drawn by the command line tools
# Progress on a terminal (a pty made by script(1)), silence elsewhere.
# verify on a terminal follows the verify on one redrawn line (percent,
# bytes, rate) until it says the disks are equal; not on a terminal it
# returns while the verify still runs. A verify that finds blocks that
# differ says so and follows their resync to its end (and the disks end
# equal). invalidate on a terminal follows the full sync from the peer until
# the disk is UpToDate. create-md on a terminal shows its progress when the
# metadata is large (256 GiB of sparse disk: 248 MiB of bitmaps), nothing
# extra for a small one or off a terminal.
. "$(dirname "$0")/lib.bash"

make_hosts 1
S=10.77.1.2:7789
new_disk "$T/p.img" 256M --skip-initial-sync
new_disk "$T/s1.img" 256M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen $S
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer $S --resync-rate 64M
wait_synced p
qemu-io -f raw -c 'write -P 0x5a 0 64M' -c flush "$URI" >/dev/null

# on_tty OUT CMD...: CMD on a pseudo-terminal, everything it shows in OUT
on_tty() {
    local out=$1
    shift
    script -qec "$*" /dev/null >"$out"
}
# redraws OUT LABEL: how many progress lines of LABEL (with a percent) OUT has
redraws() { tr '\r' '\n' <"$1" | grep -cE "^$2: +[0-9]+% " || true; }
shown() { tr '\r' '\n' <"$1" | sed 's/\x1b\[K//g; /^$/d'; }

log "verify on a terminal: progress until the disks are equal"
on_tty "$T/v.out" "$NBDM" verify --control "$T/p.ctl" || { shown "$T/v.out"; fail "verify on a terminal failed"; }
shown "$T/v.out" | tail -n 4
n=$(redraws "$T/v.out" "verify of $S")
[ "$n" -ge 1 ] || { shown "$T/v.out"; fail "verify showed no progress line"; }
shown "$T/v.out" | grep -qE "^verify of $S: done in [0-9.]+ s: the disks are equal" ||
    fail "verify on a terminal does not end with its result"
shown "$T/v.out" | grep -qE "^verify of $S: +[0-9]+% [0-9.]+ (KiB|MiB) of 255\.[0-9] MiB" ||
    fail "the progress line does not show bytes"
[ "$(jfield p 'p["last_resync_reason"]')" = verify ] || fail "no verify ran"

log "verify not on a terminal: returns at once"
"$NBDM" verify --control "$T/p.ctl" >"$T/v2.out" 2>&1 </dev/null || fail "verify failed"
state=$(jfield p 'p["replication"]')
cat "$T/v2.out"
[ "$state" = VerifyS ] || fail "verify off a terminal returned after the verify ($state)"
[ "$(wc -l <"$T/v2.out")" = 1 ] && ! grep -q $'\r' "$T/v2.out" || fail "progress off a terminal"
for _ in $(seq 300); do [ "$(jfield p 'p["replication"]')" = Established ] && break; sleep 0.1; done

log "verify finds blocks that differ: it says so and follows their resync"
head -c 3M /dev/urandom | dd of="$T/s1.img" bs=1M seek=32 conv=notrunc status=none
on_tty "$T/v3.out" "$NBDM" verify --control "$T/p.ctl" || { shown "$T/v3.out"; fail "verify failed"; }
shown "$T/v3.out" | tail -n 3
shown "$T/v3.out" | grep -qE "^verify of $S: done in [0-9.]+ s: 3\.0 MiB \(3145728 bytes\) differ, resyncing them" ||
    fail "verify does not report the 3 MiB that differ"
shown "$T/v3.out" | grep -qE "^resync to $S: done: 3\.0 MiB in [0-9.]+ s" ||
    fail "verify does not follow the resync of what differs"
wait_synced p

log "invalidate on a terminal: progress of the full sync until UpToDate"
on_tty "$T/i.out" "$NBDM" invalidate --control "$T/s1.ctl" || { shown "$T/i.out"; fail "invalidate failed"; }
shown "$T/i.out" | tail -n 2
n=$(redraws "$T/i.out" "resync from 10\.77\.1\.1:[0-9]+")
[ "$n" -ge 4 ] || { shown "$T/i.out"; fail "invalidate showed $n progress lines"; }
shown "$T/i.out" | grep -qE "^resync from 10\.77\.1\.1:[0-9]+: done: 255\.[0-9] MiB in [0-9.]+ s" ||
    fail "invalidate on a terminal does not end with the resync done"
shown "$T/i.out" | grep -qE "^resync from .*: +[0-9]+% .* MiB/s, ETA [0-9]+:[0-9]{2}" ||
    fail "the progress line shows no rate and ETA"
[ "$(status_json s1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["disk"])')" = UpToDate ] ||
    fail "invalidate returned before the disk was UpToDate"
wait_synced p
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "the disks differ after verify and invalidate"

log "create-md: progress on a terminal for large metadata only"
truncate -s 256G "$T/big.img"
on_tty "$T/c.out" "$NBDM" create-md "$T/big.img" || { shown "$T/c.out"; fail "create-md failed"; }
shown "$T/c.out" | tail -n 3
n=$(redraws "$T/c.out" "create-md: zeroing the metadata")
[ "$n" -ge 1 ] || fail "create-md on a terminal showed no progress"
shown "$T/c.out" | grep -qE "^create-md: zeroing the metadata: 2[0-9]{2} MiB written and flushed in [0-9.]+ s" ||
    fail "create-md does not say what it wrote"
rm "$T/big.img"
truncate -s 256G "$T/big.img"
"$NBDM" create-md "$T/big.img" >"$T/c2.out" 2>&1 </dev/null
grep -q -e zeroing -e $'\r' "$T/c2.out" && fail "create-md showed progress off a terminal"
rm "$T/big.img"
truncate -s 64M "$T/small.img"
on_tty "$T/c3.out" "$NBDM" create-md "$T/small.img"
grep -q 'zeroing' "$T/c3.out" && fail "create-md showed progress for 2 MiB of metadata"
echo "create-md: progress for 248 MiB of metadata on a terminal only"
