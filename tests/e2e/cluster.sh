#!/usr/bin/env bash
# engine-independent
# The two-node cluster harness itself (tests/e2e/cluster.bash), with
# Pacemaker's own example promotable agent ocf:pacemaker:Stateful: both
# nodes online, one instance promoted; when the promoted node's whole stack
# is killed the other is promoted; the crashed node boots again and rejoins
# unpromoted. If this fails, the harness is broken, not nbdmirror's agent.
. "$(dirname "$0")/lib.bash"
. "$(dirname "$0")/cluster.bash"

cluster_skip_unless_possible
cluster_make alpha beta
cluster_boot alpha
cluster_boot beta
log "waiting for both nodes online"
start=$(date +%s)
cluster_wait_online
log "online after $(( $(date +%s) - start )) s"

[ "$(on_node beta crm_attribute -t crm_config -n stonith-enabled -G -q)" = false ] ||
    fail "the seeded CIB did not reach beta"
# each node has its own /run: Stateful keeps its state file there
on_node alpha cibadmin --create -o resources --xml-text '
<clone id="st-clone">
  <meta_attributes id="st-clone-meta">
    <nvpair id="st-clone-promotable" name="promotable" value="true"/>
    <nvpair id="st-clone-promoted-max" name="promoted-max" value="1"/>
    <nvpair id="st-clone-clone-max" name="clone-max" value="2"/>
  </meta_attributes>
  <primitive id="st" class="ocf" provider="pacemaker" type="Stateful">
    <operations>
      <op id="st-mon-p" name="monitor" interval="3s" role="Promoted"/>
      <op id="st-mon-u" name="monitor" interval="4s" role="Unpromoted"/>
    </operations>
  </primitive>
</clone>'

log "waiting for one Promoted and one Unpromoted instance"
two_roles() {
    local r
    r=$(cluster_roles alpha st-clone | sort | tr '\n' ' ')
    [ "$r" = "alpha:Promoted beta:Unpromoted " ] || [ "$r" = "alpha:Unpromoted beta:Promoted " ]
}
cluster_wait 120 "one Promoted and one Unpromoted st" two_roles
first=$(cluster_promoted alpha st-clone)
other=alpha
[ "$first" = alpha ] && other=beta
log "$first is promoted; both nodes agree"
[ "$(cluster_promoted "$other" st-clone)" = "$first" ] || fail "$other disagrees about the promoted node"
# the state files are per node: /run of each node holds only its own
[ "$(on_node "$first" cat /run/Stateful-st.state)" = Promoted ] || fail "no promoted state file on $first"
[ "$(on_node "$other" cat /run/Stateful-st.state)" = Unpromoted ] || fail "no unpromoted state file on $other"

log "crashing $first (kill -9 of its whole stack)"
start=$(date +%s)
cluster_crash "$first"
cluster_wait 120 "$other promoted after $first crashed" cluster_has_roles "$other" st-clone "$other:Promoted"
log "$other promoted $(( $(date +%s) - start )) s after the crash"

log "booting $first again"
start=$(date +%s)
cluster_boot "$first"
cluster_wait_online
cluster_wait 120 "$first back as Unpromoted" \
    cluster_has_roles "$other" st-clone "$other:Promoted $first:Unpromoted"
log "$first rejoined as Unpromoted after $(( $(date +%s) - start )) s"
score=$(on_node "$other" crm_attribute --promotion=st -N "$first" -G -q) || fail "no promotion score for $first"
[ "$score" = 5 ] || fail "promotion score of $first is $score, not Stateful's unpromoted 5"
log "ok"
