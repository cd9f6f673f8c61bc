#!/usr/bin/env bash
# engine-independent
# The OCF agent dist/ocf/nbdmirror outside a cluster: its meta-data is valid
# (ra-api-1.dtd and resource-agents' metadata.rng, through xmllint), Debian's
# ocf-tester passes on a real two-node resource (node alpha run by the
# agent, its peer beta up in another namespace), and then, action by action,
# the exit codes Pacemaker relies on: 7 stopped, 0 unpromoted, 8 promoted
# (nbdmirror's own status agrees), promote refused for an Inconsistent disk,
# validate-all's 5 and 6 for what is missing or wrong.
. "$(dirname "$0")/lib.bash"

AGENT=$ROOT/dist/ocf/nbdmirror
command -v ocf-tester >/dev/null || skip "no ocf-tester (resource-agents; make check installs it)"
[ -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] || skip "no ocf-shellfuncs (resource-agents)"
command -v xmllint >/dev/null || skip "no xmllint (libxml2-utils; make check installs it)"

make_hosts 1 # p is alpha (10.77.1.1), s1 is beta (10.77.1.2)
cat >"$T/r0.res" <<EOF
# two nodes, everything in the test's directory
[resource]
protocol = C
timeout = 5

[node alpha]
address = 10.77.1.1:7789
nbd = unix:$T/alpha.nbd
disk = $T/alpha.img
control = $T/alpha.ctl
log = $T/alpha.log

[node beta]
address = 10.77.1.2:7789
nbd = unix:$T/beta.nbd
disk = $T/beta.img
control = $T/beta.ctl
log = $T/beta.log
EOF
truncate -s 64M "$T/alpha.img" "$T/beta.img"
"$NBDM" create-md r0 --config "$T/r0.res" --node alpha --skip-initial-sync >/dev/null
"$NBDM" create-md r0 --config "$T/r0.res" --node beta --skip-initial-sync >/dev/null

# whatever a failure leaves behind: every process of both namespaces
kill_ns() { local p; for p in $(ip netns pids "$(ns "$1")" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; }
on_exit kill_ns p
on_exit kill_ns s1

log "meta-data"
"$AGENT" meta-data >"$T/meta.xml" || fail "meta-data failed"
# from stdin in the directory of ra-api-1.dtd, which the DOCTYPE names
(cd /usr/share/resource-agents && xmllint --noout --valid - <"$T/meta.xml") ||
    fail "meta-data does not conform to ra-api-1.dtd"
(cd /usr/share/resource-agents && xmllint --noout --relaxng metadata.rng - <"$T/meta.xml") ||
    fail "meta-data does not conform to metadata.rng"
for p in resource config node nbdmirror; do
    grep -q "<parameter name=\"$p\"" "$T/meta.xml" || fail "no parameter $p in the meta-data"
done
for a in start stop promote demote monitor notify meta-data validate-all; do
    grep -q "<action name=\"$a\"" "$T/meta.xml" || fail "no action $a in the meta-data"
done

log "beta up in its namespace"
ip netns exec "$(ns s1)" "$NBDM" up r0 --config "$T/r0.res" --node beta || fail "beta up"

log "ocf-tester on alpha"
ip netns exec "$(ns p)" ocf-tester -n test -o resource=r0 -o config="$T/r0.res" -o node=alpha \
    -o nbdmirror="$NBDM" -o wait_connect=10 "$AGENT" >"$T/ocf-tester.out" 2>&1 || {
    cat "$T/ocf-tester.out"
    fail "ocf-tester"
}
cat "$T/ocf-tester.out"
grep -q "passed all tests" "$T/ocf-tester.out" || fail "ocf-tester did not say it passed"

# ra ACTION [VAR=VALUE...]: the agent as Pacemaker runs it, on alpha
ra() {
    local action=$1
    shift
    ip netns exec "$(ns p)" env OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=r0 \
        OCF_RESKEY_resource=r0 OCF_RESKEY_config="$T/r0.res" OCF_RESKEY_node=alpha \
        OCF_RESKEY_nbdmirror="$NBDM" OCF_RESKEY_CRM_meta_timeout=30000 \
        OCF_RESKEY_CRM_meta_interval=10000 "$@" "$AGENT" "$action" 2>>"$T/agent.err"
}
# expect RC ACTION [VAR=VALUE...]
expect() {
    local want=$1 rc=0
    shift
    ra "$@" || rc=$?
    [ "$rc" = "$want" ] || { tail -n 5 "$T/agent.err"; fail "$*: exit $rc, not $want"; }
}
role() { "$NBDM" status r0 --config "$T/r0.res" --node alpha --json |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["role"])'; }

log "exit codes, action by action"
expect 7 monitor
expect 7 monitor OCF_RESKEY_CRM_meta_interval=0 # a probe
expect 0 stop                                   # stopping what is stopped
expect 0 start
expect 0 start # idempotent
expect 0 monitor
[ "$(role)" = secondary ] || fail "not secondary after start"
expect 0 demote # demoting what is unpromoted
expect 0 promote
expect 8 monitor
expect 8 monitor OCF_RESKEY_CRM_meta_interval=0
[ "$(role)" = primary ] || fail "not primary after promote"
"$PY" - "nbd+unix:///?socket=$T/alpha.nbd" <<'PY' || fail "the promoted export does not take a write"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert not h.is_read_only()
h.pwrite(b"\x5a" * 65536, 0); h.flush()
PY
expect 0 promote # idempotent
expect 0 notify OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=promote
expect 0 notify OCF_RESKEY_CRM_meta_notify_type=pre OCF_RESKEY_CRM_meta_notify_operation=demote
expect 0 demote
expect 0 monitor
[ "$(role)" = secondary ] || fail "not secondary after demote"
# stopping a promoted instance demotes it on the way
expect 0 promote
expect 0 stop
expect 7 monitor
expect 0 stop
ip netns exec "$(ns s1)" "$NBDM" down r0 --config "$T/r0.res" --node beta || fail "beta down"
"$PY" -c 'import sys; sys.exit(open(sys.argv[1], "rb").read(65536) != b"\x5a" * 65536)' "$T/beta.img" ||
    fail "beta did not get the write made through alpha"

log "an Inconsistent disk is never promoted"
"$NBDM" create-md r0 --config "$T/r0.res" --node alpha --force >/dev/null # beta is down: stays Inconsistent
expect 0 start OCF_RESKEY_wait_connect=0
expect 0 monitor
expect 1 promote
grep -q "not UpToDate" "$T/agent.err" || fail "promote of an Inconsistent disk did not say why it refused"
[ "$(role)" = secondary ] || fail "an Inconsistent disk was promoted"
expect 0 monitor
expect 0 stop

log "validate-all"
expect 0 validate-all
expect 5 validate-all OCF_RESKEY_config="$T/none.res"
expect 5 validate-all OCF_RESKEY_nbdmirror=/nonexistent/nbdmirror
expect 5 validate-all OCF_RESKEY_node=gamma # not in the file: this node's problem
grep -q "gamma) is not in" "$T/agent.err" || fail "validate-all did not say the node is not in the file"
expect 6 validate-all OCF_RESKEY_resource=
expect 6 validate-all OCF_RESKEY_resource=a/b
printf '[resource]\nprotocl = C\n' >"$T/bad.res"
expect 6 validate-all OCF_RESKEY_config="$T/bad.res"
grep -q "bad.res:2: unknown key 'protocl'" "$T/agent.err" || fail "validate-all did not pass on the parser's line number"
expect 6 validate-all OCF_RESKEY_CRM_meta_clone_max=2 OCF_RESKEY_CRM_meta_promoted_max=2
expect 7 monitor OCF_RESKEY_CRM_meta_interval=0 OCF_RESKEY_nbdmirror=/nonexistent/nbdmirror
log "ok"
