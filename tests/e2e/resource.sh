# engine-independent
# A resource file for two nodes in two network namespaces: the example in
# nbdmirror.conf(5) parses; a broken file is refused with its line; create-md,
# up, status, promote, adjust and down by resource NAME (node alpha finds
# itself by uname -n in its own UTS namespace, beta by --node); ext4 on the
# primary's export; the secondary's disk ends byte-identical.
. "$(dirname "$0")/lib.bash"

[ -e /dev/fuse ] || skip "no /dev/fuse: cannot mount an export with nbdfuse"
export NBDMIRROR_CONFDIR=$T
make_hosts 1
mkdir -p "$T/mnt"
LOOP= FUSE=$T/fuse
teardown() {
    mountpoint -q "$T/mnt" && { umount "$T/mnt" 2>/dev/null || umount -l "$T/mnt"; }
    [ -n "$LOOP" ] && detach_loop "$LOOP"
    LOOP=
    unmount_fuse "$FUSE"
    return 0
}
on_exit teardown

# on NODE CMD...: run CMD on host NODE (alpha: namespace p, with its own
# host name; beta: namespace s1, found by --node)
on() {
    local node=$1
    shift
    if [ "$node" = alpha ]; then
        ip netns exec "$(ns p)" unshare --uts sh -c 'hostname alpha && exec "$@"' sh "$@"
    else
        ip netns exec "$(ns s1)" "$@"
    fi
}
nbdm() { # nbdm NODE SUBCOMMAND [ARGS]: nbdmirror for resource r0 on NODE
    local node=$1 sub=$2
    shift 2
    if [ "$node" = alpha ]; then on alpha "$NBDM" "$sub" r0 "$@"; else on beta "$NBDM" "$sub" r0 --node beta "$@"; fi
}
up() { # up NODE: nbdmirror up r0; the daemon it detached dies with the test
    local out
    out=$(nbdm "$1" up) || { echo "$out"; fail "up r0 on $1"; }
    echo "$out"
    PIDS+=("$(sed -n 's/.*, pid \([0-9]*\),.*/\1/p' <<<"$out")")
    on_exit "kill -9 ${PIDS[-1]} 2>/dev/null"
}
PIDS=()

log "the example in nbdmirror.conf(5) parses"
mkdir -p "$T/man"
sed -n '/the e2e test "resource" parses/,/^\.EE/p' "$ROOT/man/nbdmirror.conf.5" |
    sed '1,2d;$d' | sed 's/\\-/-/g' >"$T/man/example.res"
grep -q '^\[node beta\]' "$T/man/example.res" || fail "no example found in the man page"
"$NBDM" dump --config "$T/man/example.res" --node beta >"$T/man/example.json" || fail "the man page's example does not parse"
"$PY" - "$T/man/example.json" <<'PY' || fail "dump of the example is wrong"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["this_node"] == "beta", d
assert [n["name"] for n in d["nodes"]] == ["alpha", "beta"], d
assert d["nodes"][1]["address"] == "192.168.10.2:7789" and d["nodes"][1]["disk"] == "/dev/vdb", d
assert d["options"]["protocol"] == "C" and d["options"]["resync-rate"] == "200M", d
PY

truncate -s 128M "$T/alpha.img" "$T/beta.img"
write_res() { # write_res [PROTOCOL [EXTRA [resource] LINE]]
    {
        printf '# resource r0 for this test\n[resource]\nprotocol = %s\n%s\n' "${1:-C}" "${2:-}"
        printf 'timeout = 5\nmeta = internal\n\n'
        for n in alpha beta; do
            case $n in alpha) a=10.77.1.1 ;; beta) a=10.77.1.2 ;; esac
            printf '[node %s]\naddress = %s:7789\nnbd = unix:%s/%s.sock\ndisk = %s/%s.img\n' \
                "$n" "$a" "$T" "$n" "$T" "$n"
            printf 'control = %s/%s.ctl\nlog = %s/%s.log\n' "$T" "$n" "$T" "$n"
            # a per-node option reaches that node's daemon only
            [ $n = beta ] && printf 'disk-depth = %s\n' "${BETA_DEPTH:-16}"
            printf '\n'
        done
    } >"$T/r0.res"
}

log "a broken file is refused with its line, and nothing starts"
write_res C "protcol = A"
out=$(nbdm alpha up 2>&1) && fail "up with a broken file succeeded"
grep -q "r0.res:4: unknown key 'protcol' in \[resource\]" <<<"$out" || fail "no line-numbered error: $out"
[ ! -S "$T/alpha.ctl" ] || fail "a node started from a broken file"
out=$(nbdm alpha status 2>&1) && fail "status of a broken resource succeeded"
grep -q "r0.res:4:" <<<"$out" || fail "status: no line-numbered error: $out"
write_res
out=$("$NBDM" up r0 --node gamma 2>&1) && fail "up as an unknown node succeeded"
grep -q "no \[node gamma\].*alpha, beta" <<<"$out" || fail "unknown node: $out"

log "up before create-md fails with what the node's log says"
out=$(nbdm alpha up 2>&1) && fail "up without metadata succeeded"
grep -q "did not start" <<<"$out" && grep -q "create-md" <<<"$out" || fail "up without metadata: $out"

log "create-md, up, already up"
nbdm alpha create-md >/dev/null || fail "create-md r0 on alpha"
nbdm beta create-md >/dev/null || fail "create-md r0 on beta"
out=$(nbdm beta create-md 2>&1) && fail "create-md over existing metadata succeeded"
grep -q "already holds nbdmirror metadata" <<<"$out" || fail "create-md twice: $out"
up alpha
up beta
[ -S "$T/alpha.ctl" ] && [ -S "$T/beta.ctl" ] || fail "up returned before the control sockets exist"
out=$(nbdm beta up 2>&1) && fail "a second up succeeded"
grep -q "already up" <<<"$out" || fail "second up: $out"
# two new (Inconsistent) disks connect only once one of them is promoted
[ "$(jfield beta 's["role"]')" = secondary ] || fail "up did not start a secondary"
[ "$(jfield beta 's["disk_depth"]')" = 16 ] || fail "beta did not get disk-depth = 16"
[ "$(jfield alpha 's["disk_depth"]')" = 0 ] || fail "alpha got beta's disk-depth"

log "status r0 and status of every resource"
out=$(nbdm alpha status) || fail "status r0"
grep -q "role: secondary" <<<"$out" || fail "status r0: $out"
out=$(on alpha "$NBDM" status) || fail "status without a name"
grep -q "^r0 (node alpha):" <<<"$out" || fail "status of every resource: $out"
out=$(on alpha "$NBDM" status --json)
"$PY" -c 'import json,sys; d = json.loads(sys.argv[1]); assert d[0]["resource"] == "r0" and d[0]["status"]["role"] == "secondary", d' "$out" ||
    fail "status --json of every resource: $out"

log "promote --force r0 on alpha: beta is fully synced"
nbdm alpha promote --force || fail "promote r0"
wait_synced alpha 1 120

log "ext4 on alpha's export"
mkdir -p "$FUSE"
nbdfuse "$FUSE/disk" "nbd+unix:///?socket=$T/alpha.sock" &
for _ in $(seq 100); do [ -e "$FUSE/disk" ] && break; sleep 0.05; done
LOOP=$(losetup --find --show "$FUSE/disk")
mkfs.ext4 -q -F "$LOOP"
mount "$LOOP" "$T/mnt"
for i in $(seq 40); do head -c $((i * 37000)) /dev/urandom >"$T/mnt/f$i"; done
sync
(cd "$T/mnt" && sha256sum f*) >"$T/sums"
teardown
wait_synced alpha 1 120

log "adjust: runtime options applied, a protocol change refused"
write_res A "resync-rate = 2M"
set +e
out=$(nbdm alpha adjust 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] || fail "adjust with a refused change exited $rc: $out"
grep -q "resync-rate '0' -> '2M'" <<<"$out" || fail "adjust did not apply resync-rate: $out"
grep -q "protocol 'C' -> 'A' needs a restart" <<<"$out" || fail "adjust did not refuse protocol: $out"
out=$(nbdm alpha adjust 2>&1) || true
grep -q "resync-rate" <<<"$out" && fail "adjust applied resync-rate twice: $out"
log "the new rate holds a resync back: beta invalidated, 128 MiB at 2 MB/s"
nbdm beta invalidate || fail "invalidate r0 on beta"
sleep 3
left=$(jfield alpha 'p["out_of_sync_bytes"]')
[ "$left" -gt $((64 << 20)) ] || fail "the resync ignored the adjusted rate: $left bytes left after 3 s"
write_res # back to protocol C, no cap
out=$(nbdm alpha adjust) || fail "adjust back: $out"
grep -q "resync-rate '2M' -> '0'" <<<"$out" || fail "adjust back: $out"
wait_synced alpha 1 120

log "adjust: beta's disk-depth changes while it runs (and the resync it serves goes on)"
BETA_DEPTH=4 write_res
out=$(nbdm beta adjust) || fail "adjust disk-depth: $out"
grep -q "disk-depth '16' -> '4'" <<<"$out" || fail "adjust did not apply disk-depth: $out"
[ "$(jfield beta 's["disk_depth"]')" = 4 ] || fail "beta's disk_depth is not 4 after adjust"
out=$(nbdm beta adjust) || fail "adjust again: $out"
grep -q "nothing changed" <<<"$out" || fail "adjust applied disk-depth twice: $out"
nbdm beta invalidate || fail "invalidate r0 on beta (depth 4)"
wait_synced alpha 1 120
write_res
out=$(nbdm beta adjust) || fail "adjust disk-depth back: $out"
[ "$(jfield beta 's["disk_depth"]')" = 16 ] || fail "beta's disk_depth is not 16 again"

log "the disks are equal; down stops both, twice is fine"
size=$(jfield alpha 's["size"]')
cmp -n "$size" "$T/alpha.img" "$T/beta.img" || fail "the disks differ"
nbdm alpha down || fail "down r0 on alpha"
nbdm beta down || fail "down r0 on beta"
[ ! -e "$T/alpha.ctl" ] && [ ! -e "$T/beta.ctl" ] || fail "control sockets left after down"
for pid in "${PIDS[@]}"; do # gone, or a zombie init has not reaped yet
    st=$(ps -o stat= -p "$pid" || true)
    [ -z "$st" ] || [[ $st == Z* ]] || fail "a node (pid $pid) still runs after down: $st"
done
out=$(nbdm beta down) || fail "down of a stopped resource failed"
grep -q "not up" <<<"$out" || fail "second down: $out"
grep -q "stopped cleanly" "$T/alpha.log" || fail "alpha did not stop cleanly"

log "e2fsck on beta's disk after it came up as primary"
up beta
nbdm beta promote || fail "promote beta (UpToDate, alone)"
mkdir -p "$FUSE"
nbdfuse "$FUSE/disk" "nbd+unix:///?socket=$T/beta.sock" &
for _ in $(seq 100); do [ -e "$FUSE/disk" ] && break; sleep 0.05; done
LOOP=$(losetup --find --show "$FUSE/disk")
e2fsck -f -n "$LOOP" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck on beta"; }
mount -o ro "$LOOP" "$T/mnt"
(cd "$T/mnt" && sha256sum --quiet -c "$T/sums") || fail "files differ on beta"
teardown
nbdm beta down || fail "down r0 on beta"
echo "resource: ok"
