#!/usr/bin/env bash
# engine-independent
# nbdmirror under a real two-node Corosync + Pacemaker cluster
# (tests/e2e/cluster.bash: each node its own network, mount and UTS
# namespace), as a promotable clone of the agent dist/ocf/nbdmirror
# (promoted-max=1, clone-max=2, notify, migration-threshold=1):
# 1. one node Promoted (nbdmirror primary, its export takes writes), the
#    other Unpromoted (secondary, read-only export) and both scored 10000;
#    the writes reach the other disk.
# 2. kill -9 of the promoted node's nbdmirror daemon: Pacemaker promotes the
#    other node, whose export takes writes; after a cleanup the old node
#    comes back Unpromoted and is resynced.
# 3. kill -9 of the now promoted node's whole stack (corosync, pacemaker,
#    nbdmirror): the other node is promoted and takes writes; the crashed
#    node boots, rejoins Unpromoted, is resynced.
# 4. with beta in standby, a fresh Inconsistent disk on alpha runs
#    Unpromoted, without a score, and is never promoted; beta comes back
#    and alpha is resynced from it.
# After each step every write is on both disks, which are equal.
. "$(dirname "$0")/lib.bash"
. "$(dirname "$0")/cluster.bash"

cluster_skip_unless_possible
[ -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] || skip "no ocf-shellfuncs (resource-agents)"

cluster_make alpha beta
cluster_agent nbdmirror "$ROOT/dist/ocf/nbdmirror"
cat >"$T/r0.res" <<EOF
[resource]
protocol = C
timeout = 5

[node alpha]
address = 10.78.0.1:7789
nbd = unix:$T/alpha.nbd
disk = $T/alpha.img
control = $T/alpha.ctl
log = $T/alpha.log

[node beta]
address = 10.78.0.2:7789
nbd = unix:$T/beta.nbd
disk = $T/beta.img
control = $T/beta.ctl
log = $T/beta.log
EOF
truncate -s 64M "$T/alpha.img" "$T/beta.img"
for n in alpha beta; do
    # two zeroed files are equal: no initial sync
    DATA_SIZE=$("$NBDM" create-md r0 --config "$T/r0.res" --node $n --skip-initial-sync |
        sed -n 's/.*exported size \([0-9]*\) bytes/\1/p')
done
[ -n "$DATA_SIZE" ] || fail "create-md did not say the exported size"

other() { if [ "$1" = alpha ]; then echo beta; else echo alpha; fi; }
nstatus() { "$NBDM" status r0 --config "$T/r0.res" --node "$1" --json; }
nfield() { nstatus "$1" | "$PY" -c "import json,sys; s = json.load(sys.stdin); print($2)"; }
score() { on_node "$1" crm_attribute --promotion=r0 -N "$2" -G -q 2>/dev/null; }

# write NODE SEED OFFSET: 1 MiB of SEED's bytes at OFFSET through NODE's
# export, flushed; the same bytes go to $T/expected
: >"$T/expected"
truncate -s "$DATA_SIZE" "$T/expected"
write() {
    "$PY" - "nbd+unix:///?socket=$T/$1.nbd" "$2" "$3" "$T/expected" <<'PY' || fail "$1's export did not take a write"
import nbd, random, sys
uri, seed, off, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = random.Random(seed).randbytes(1 << 20)
h = nbd.NBD(); h.connect_uri(uri)
assert not h.is_read_only(), "the promoted node's export is read-only"
h.pwrite(data, off); h.flush(); h.shutdown()
with open(expected, "r+b") as f:
    f.seek(off); f.write(data)
PY
}
read_only() {
    "$PY" - "nbd+unix:///?socket=$T/$1.nbd" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
sys.exit(0 if h.is_read_only() else 1)
PY
}

# settled PROMOTED: Pacemaker (on PROMOTED's view) has PROMOTED Promoted and
# the other Unpromoted, and nbdmirror agrees: primary and secondary,
# connected, nothing out of sync, both disks UpToDate
settled() {
    local p=$1 o
    o=$(other "$1")
    cluster_has_roles "$p" r0-clone "$p:Promoted $o:Unpromoted" || return 1
    [ "$(nfield "$p" 's["role"]' 2>/dev/null)" = primary ] || return 1
    [ "$(nfield "$o" 's["role"], s["disk"]' 2>/dev/null)" = "secondary UpToDate" ] || return 1
    [ "$(nfield "$p" 'sum(x["connection"] == "Connected" and x["peer_disk"] == "UpToDate" and x["out_of_sync_bytes"] == 0 for x in s["peers"])' 2>/dev/null)" = 1 ]
}
# disks_equal: both data areas hold exactly what was written
disks_equal() {
    cmp -n "$DATA_SIZE" "$T/alpha.img" "$T/expected" || fail "alpha's disk is not what was written"
    cmp -n "$DATA_SIZE" "$T/beta.img" "$T/expected" || fail "beta's disk is not what was written"
}

log "booting alpha and beta"
start=$(date +%s)
cluster_boot alpha
cluster_boot beta
cluster_wait_online
log "online after $(($(date +%s) - start)) s"
# Pacemaker's own reading of the agent's meta-data (what nbdmirror(8) points to)
on_node alpha crm_resource --show-metadata ocf:nbdmirror:nbdmirror >"$T/meta.xml" ||
    fail "crm_resource --show-metadata ocf:nbdmirror:nbdmirror"
grep -q '<parameter name="resource"' "$T/meta.xml" || fail "no parameter resource in Pacemaker's meta-data"

on_node alpha cibadmin --create -o resources --xml-text "
<clone id=\"r0-clone\">
  <meta_attributes id=\"r0-clone-meta\">
    <nvpair id=\"r0-clone-promotable\" name=\"promotable\" value=\"true\"/>
    <nvpair id=\"r0-clone-promoted-max\" name=\"promoted-max\" value=\"1\"/>
    <nvpair id=\"r0-clone-promoted-node-max\" name=\"promoted-node-max\" value=\"1\"/>
    <nvpair id=\"r0-clone-clone-max\" name=\"clone-max\" value=\"2\"/>
    <nvpair id=\"r0-clone-clone-node-max\" name=\"clone-node-max\" value=\"1\"/>
    <nvpair id=\"r0-clone-notify\" name=\"notify\" value=\"true\"/>
  </meta_attributes>
  <primitive id=\"r0\" class=\"ocf\" provider=\"nbdmirror\" type=\"nbdmirror\">
    <instance_attributes id=\"r0-params\">
      <nvpair id=\"r0-resource\" name=\"resource\" value=\"r0\"/>
      <nvpair id=\"r0-config\" name=\"config\" value=\"$T/r0.res\"/>
      <nvpair id=\"r0-nbdmirror\" name=\"nbdmirror\" value=\"$NBDM\"/>
    </instance_attributes>
    <meta_attributes id=\"r0-meta\">
      <nvpair id=\"r0-migration-threshold\" name=\"migration-threshold\" value=\"1\"/>
    </meta_attributes>
    <operations>
      <op id=\"r0-start\" name=\"start\" interval=\"0\" timeout=\"60s\"/>
      <op id=\"r0-stop\" name=\"stop\" interval=\"0\" timeout=\"100s\"/>
      <op id=\"r0-promote\" name=\"promote\" interval=\"0\" timeout=\"90s\"/>
      <op id=\"r0-demote\" name=\"demote\" interval=\"0\" timeout=\"90s\"/>
      <op id=\"r0-mon-p\" name=\"monitor\" interval=\"3s\" timeout=\"20s\" role=\"Promoted\"/>
      <op id=\"r0-mon-u\" name=\"monitor\" interval=\"4s\" timeout=\"20s\" role=\"Unpromoted\"/>
    </operations>
  </primitive>
</clone>" || fail "cibadmin could not add the clone"

log "1. one Promoted, one Unpromoted"
start=$(date +%s)
cluster_wait 180 "one Promoted and one Unpromoted r0" eval 'settled alpha || settled beta'
P=$(cluster_promoted alpha r0-clone)
O=$(other "$P")
log "$P promoted after $(($(date +%s) - start)) s"
[ "$(cluster_promoted "$O" r0-clone)" = "$P" ] || fail "$O disagrees about the promoted node"
read_only "$O" || fail "the unpromoted node's export is writable"
write "$P" 1 0
cluster_wait 60 "scores 10000 on both nodes" eval '[ "$(score "$P" alpha)" = 10000 ] && [ "$(score "$P" beta)" = 10000 ]'
cluster_wait 60 "in sync after the write" settled "$P"
disks_equal

log "2. kill -9 of nbdmirror on $P"
start=$(date +%s)
pid=
for p in $(cluster_pids "$P"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = nbdmirror ] && pid=$p
done
[ -n "$pid" ] || fail "no nbdmirror daemon on $P"
kill -9 "$pid"
cluster_wait 180 "$O promoted after $P's daemon died" \
    eval '[ "$(cluster_promoted "$O" r0-clone)" = "$O" ] && [ "$(nfield "$O" "s[\"role\"]" 2>/dev/null)" = primary ]'
log "$O promoted $(($(date +%s) - start)) s after the kill"
write "$O" 2 $((1 << 20))
log "cleanup of $P's failure: it comes back Unpromoted and is resynced"
start=$(date +%s)
on_node "$O" crm_resource --cleanup -r r0 -N "$P" >/dev/null
cluster_wait 180 "$P back as Unpromoted, in sync" settled "$O"
log "$P back and in sync after $(($(date +%s) - start)) s"
disks_equal
P=$O O=$(other "$O")

log "3. kill -9 of $P's whole stack (corosync, pacemaker, nbdmirror)"
start=$(date +%s)
cluster_crash "$P"
cluster_wait 180 "$O promoted after $P crashed" \
    eval '[ "$(cluster_promoted "$O" r0-clone)" = "$O" ] && [ "$(nfield "$O" "s[\"role\"]" 2>/dev/null)" = primary ]'
log "$O promoted $(($(date +%s) - start)) s after the crash"
[ "$(score "$O" "$O")" = 1000 ] || fail "$O alone should score 1000, not $(score "$O" "$O")"
write "$O" 3 $((2 << 20))
log "booting $P again"
start=$(date +%s)
cluster_boot "$P"
cluster_wait_online
cluster_wait 180 "$P back as Unpromoted, in sync" settled "$O"
log "$P back and in sync after $(($(date +%s) - start)) s"
cluster_wait 60 "scores 10000 on both nodes again" eval '[ "$(score "$O" alpha)" = 10000 ] && [ "$(score "$O" beta)" = 10000 ]'
disks_equal

log "stopping the clone"
on_node "$O" crm_resource -r r0-clone --meta -p target-role -v Stopped >/dev/null
cluster_wait 120 "r0 stopped on both nodes" eval '[ -z "$(cluster_roles "$O" r0-clone)" ]'
for n in alpha beta; do nstatus $n >/dev/null 2>&1 && fail "nbdmirror still runs on $n after the clone stopped"; done
disks_equal

log "4. an Inconsistent disk alone is never promoted"
on_node alpha crm_attribute -N beta -n standby -v on
"$NBDM" create-md r0 --config "$T/r0.res" --node alpha --force >/dev/null # Inconsistent
on_node alpha crm_resource -r r0-clone --meta -d target-role >/dev/null
cluster_wait 120 "alpha Unpromoted" cluster_has_roles alpha r0-clone alpha:Unpromoted
[ "$(nfield alpha 's["disk"]')" = Inconsistent ] || fail "alpha's disk is not Inconsistent"
sleep 12 # three monitors of the Unpromoted instance
cluster_has_roles alpha r0-clone alpha:Unpromoted || { cluster_report; fail "an Inconsistent disk was promoted"; }
[ -z "$(score alpha alpha)" ] || fail "an Inconsistent disk has the promotion score $(score alpha alpha)"
[ "$(nfield alpha 's["role"]')" = secondary ] || fail "alpha's nbdmirror is not secondary"
log "beta back: alpha is resynced from it, then either may be promoted"
start=$(date +%s)
on_node alpha crm_attribute -N beta -n standby -v off
cluster_wait 180 "one Promoted and one Unpromoted r0, in sync" eval 'settled alpha || settled beta'
log "$(cluster_promoted alpha r0-clone) promoted, both in sync after $(($(date +%s) - start)) s"
disks_equal
log "ok"
