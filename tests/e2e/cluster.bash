# Two-node Corosync + Pacemaker clusters on one machine, for the tests that
# source this after lib.bash.
#
# A node is a network namespace (the two are joined by one veth pair:
# 10.78.0.1 and 10.78.0.2) and, for each boot, a mount and UTS namespace of
# its own: its hostname is the node name (Pacemaker's idea of who it is), and
# /etc/corosync (its corosync.conf and authkey), /var/lib/corosync,
# /var/lib/pacemaker, /var/log/corosync and /var/log/pacemaker are
# bind-mounted from $T/NODE/, so they live across boots like a disk does,
# while /run and /dev/shm are fresh tmpfs per boot (libqb's IPC and
# pid files). A holder process (sleep) keeps the namespaces; the daemons run
# in them through nsenter, without systemd. Crashing a node kills -9 every
# process of its mount namespace, nbdmirror included.
#
#   cluster_make alpha beta      namespaces, configuration, directories
#   cluster_agent PROVIDER FILE  an OCF agent the nodes see as
#                                /usr/lib/ocf/resource.d/PROVIDER/NAME
#   cluster_boot NODE            corosync -f and pacemakerd in the node
#   cluster_crash NODE           kill -9 the whole node (its boot ends)
#   on_node NODE CMD...          run CMD inside the node
#   cluster_pids NODE            the processes of its current boot
#   cluster_wait_online          both nodes online, a DC elected
#   cluster_wait SECS WHAT CMD.. poll CMD until it succeeds, else fail
#   cluster_roles NODE CLONE     node:role of each instance, in NODE's view
#   cluster_has_roles, cluster_promoted, cluster_report (on failures)

CLUSTER_NODES=()
declare -A CL_ADDR CL_HOLDER CL_MNTNS

cl_ns() { echo "nbdm$$-$1"; }

# cluster_skip_unless_possible: the packages and kernel features it needs
cluster_skip_unless_possible() {
    local c
    for c in corosync pacemakerd crm_mon crm_attribute cibadmin nsenter unshare; do
        command -v "$c" >/dev/null || skip "$c is not installed (make check installs it)"
    done
    [ -x /usr/lib/ocf/resource.d/pacemaker/Stateful ] || skip "no ocf:pacemaker:Stateful"
    id hacluster >/dev/null 2>&1 || skip "no user hacluster (the pacemaker package makes it)"
    for c in /etc/corosync /var/lib/corosync /var/log/corosync /var/lib/pacemaker /var/log/pacemaker; do
        [ -d "$c" ] || skip "no $c to mount a node's own over (the packages make it)"
    done
    unshare --mount --uts --propagation private true 2>/dev/null ||
        skip "cannot make mount and UTS namespaces here"
}

# cluster_make NODE1 NODE2
cluster_make() {
    local i=0 n d
    CLUSTER_NODES=("$@")
    on_exit cluster_destroy
    ip link add "v$$c1" type veth peer name "v$$c2"
    for n in "$@"; do
        i=$((i + 1))
        CL_ADDR[$n]=10.78.0.$i
        ip netns add "$(cl_ns "$n")"
        ip -n "$(cl_ns "$n")" link set lo up
        ip link set "v$$c$i" netns "$(cl_ns "$n")"
        ip -n "$(cl_ns "$n")" addr add "10.78.0.$i/24" dev "v$$c$i"
        ip -n "$(cl_ns "$n")" link set "v$$c$i" up
        d=$T/$n
        mkdir -p "$d/etc-corosync" "$d/lib-corosync" "$d/log-corosync" "$d/ocf-orig" \
            "$d/lib-pacemaker"/{cib,pengine,blackbox,cores} "$d/log-pacemaker"
        chown -R hacluster:haclient "$d/lib-pacemaker" "$d/log-pacemaker"
        chmod 750 "$d/lib-pacemaker"/*
        chmod 755 "$d/lib-pacemaker"
        chmod 770 "$d/log-pacemaker"
    done
    cluster_corosync_conf >"$T/corosync.conf"
    dd if=/dev/urandom of="$T/authkey" bs=256 count=1 status=none
    # A first CIB with what every test needs: no fencing devices exist here,
    # and a short dc-deadtime (20 s by default: the first boot would wait
    # that long for a DC before electing one).
    cibadmin --empty >"$T/cib.xml"
    CIB_file=$T/cib.xml crm_attribute -t crm_config -n stonith-enabled -v false
    CIB_file=$T/cib.xml crm_attribute -t crm_config -n dc-deadtime -v 5s
    for n in "$@"; do
        install -m 644 "$T/corosync.conf" "$T/$n/etc-corosync/corosync.conf"
        install -m 400 "$T/authkey" "$T/$n/etc-corosync/authkey"
        install -m 600 -o hacluster -g haclient "$T/cib.xml" "$T/$n/lib-pacemaker/cib/cib.xml"
    done
}

# cluster_agent PROVIDER FILE: the nodes booted after this see FILE as the
# OCF agent PROVIDER:$(basename FILE)
cluster_agent() {
    mkdir -p "$T/ocf-agents/$1"
    install -m 755 "$2" "$T/ocf-agents/$1/"
}

# Two nodes over knet with the shared key; two_node keeps the survivor
# quorate when its peer dies (and implies wait_for_all at the first start).
cluster_corosync_conf() {
    local n i=0
    cat <<EOF
totem {
    version: 2
    cluster_name: nbdm$$
    transport: knet
    crypto_cipher: aes256
    crypto_hash: sha256
    token: 2000
}
nodelist {
EOF
    for n in "${CLUSTER_NODES[@]}"; do
        i=$((i + 1))
        printf '    node {\n        ring0_addr: %s\n        name: %s\n        nodeid: %d\n    }\n' \
            "${CL_ADDR[$n]}" "$n" "$i"
    done
    cat <<EOF
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: on
}
EOF
}

# on_node NODE CMD...: CMD in NODE's namespaces (network, mount, UTS)
on_node() {
    local n=$1
    shift
    nsenter -t "${CL_HOLDER[$n]}" -n -m -u -- "$@"
}

# cluster_boot NODE: a fresh mount and UTS namespace, then corosync and
# pacemakerd; returns once corosync answers (Pacemaker joins later)
cluster_boot() {
    local n=$1 d=$T/$1 pid
    [ -z "${CL_HOLDER[$n]:-}" ] || fail "$n is already up"
    # shellcheck disable=SC2016
    ip netns exec "$(cl_ns "$n")" unshare --mount --uts --propagation private -- sh -c '
        set -e
        d=$1
        mount --bind "$d/etc-corosync" /etc/corosync
        mount --bind "$d/lib-corosync" /var/lib/corosync
        mount --bind "$d/log-corosync" /var/log/corosync
        mount --bind "$d/lib-pacemaker" /var/lib/pacemaker
        mount --bind "$d/log-pacemaker" /var/log/pacemaker
        mount -t tmpfs -o mode=755 tmpfs /run
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm
        hostname "$2"
        # the agents of this test beside the installed ones: the originals
        # bound again under a tmpfs that also holds the test'"'"'s providers
        if [ -d "$3" ]; then
            r=/usr/lib/ocf/resource.d
            mount --bind "$r" "$d/ocf-orig"
            mount -t tmpfs -o mode=755 tmpfs "$r"
            for p in "$d/ocf-orig"/* "$3"/*; do
                mkdir -p "$r/${p##*/}"
                mount --bind "$p" "$r/${p##*/}"
            done
        fi
        touch "$d/booted"
        exec sleep infinity' sh "$d" "$n" "$T/ocf-agents" 2>>"$T/$n-boot.log" &
    pid=$!
    disown # killed on purpose, no "Killed" notice from bash
    for _ in $(seq 100); do
        [ -e "$d/booted" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$T/$n-boot.log"; fail "$n: could not make its namespaces"; }
        sleep 0.05
    done
    [ -e "$d/booted" ] || fail "$n: namespaces not ready"
    rm -f "$d/booted"
    CL_HOLDER[$n]=$pid
    CL_MNTNS[$n]=$(stat -L -c %i "/proc/$pid/ns/mnt")
    [ "$(on_node "$n" hostname)" = "$n" ] || fail "$n: hostname not set in its namespace"

    on_node "$n" corosync -f >>"$T/$n-corosync.out" 2>&1 &
    disown
    for _ in $(seq 200); do
        on_node "$n" corosync-cfgtool -s >/dev/null 2>&1 && break
        sleep 0.1
    done
    on_node "$n" corosync-cfgtool -s >/dev/null 2>&1 || {
        tail -n 30 "$T/$n-corosync.out" "$d/log-corosync/corosync.log" 2>/dev/null
        fail "$n: corosync did not start"
    }
    # no syslog here; the log file is private to the node
    on_node "$n" env PCMK_logfacility=none PCMK_logfile=/var/log/pacemaker/pacemaker.log \
        pacemakerd >>"$T/$n-pacemakerd.out" 2>&1 &
    disown
}

# cluster_pids NODE: every process of NODE's current boot (one stat for all
# of /proc: a readlink per process is slow on a busy machine)
cluster_pids() {
    local mnt=${CL_MNTNS[$1]:-}
    [ -n "$mnt" ] || return 0
    { stat -L -c '%i %n' /proc/[0-9]*/ns/mnt 2>/dev/null || true; } |
        awk -v ino="$mnt" '$1 == ino { split($2, p, "/"); print p[3] }'
}

# cluster_crash NODE: kill -9 all of the node (its boot's namespaces go)
cluster_crash() { cluster_kill "$1" || fail "$1: processes survive kill -9"; }
cluster_kill() {
    local n=$1 pids
    for _ in $(seq 100); do
        pids=$(cluster_pids "$n")
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        sleep 0.1
    done
    [ -z "$(cluster_pids "$n")" ] || return 1
    CL_HOLDER[$n]='' CL_MNTNS[$n]=''
}

cluster_destroy() {
    local n
    for n in "${CLUSTER_NODES[@]}"; do cluster_kill "$n" || echo "$n: processes survive kill -9" >&2; done
    for n in "${CLUSTER_NODES[@]}"; do ip netns del "$(cl_ns "$n")" 2>/dev/null || true; done
    ip link del "v$$c1" 2>/dev/null || true
}

# cluster_wait SECONDS DESCRIPTION CMD...: poll CMD (every half second) until
# it succeeds; fail with the cluster's view after SECONDS of wall time
cluster_wait() {
    local secs=$1 what=$2 end=$(($(date +%s) + $1))
    shift 2
    until "$@"; do
        if [ "$(date +%s)" -ge "$end" ]; then
            cluster_report
            fail "after $secs s: $what"
        fi
        sleep 0.5
    done
}

# cluster_report: what the nodes think, and the end of their logs
cluster_report() {
    local n
    for n in "${CLUSTER_NODES[@]}"; do
        echo "=== $n"
        if [ -n "${CL_HOLDER[$n]:-}" ]; then
            on_node "$n" crm_mon -1 -r -A 2>&1 | head -n 40 || true
        else
            echo "(down)"
        fi
        tail -n 15 "$T/$n/log-corosync/corosync.log" 2>/dev/null || true
        grep -E 'error|warning|crit' "$T/$n/log-pacemaker/pacemaker.log" 2>/dev/null | tail -n 25 || true
    done
}

# cluster_online NODE: NODE sees both nodes online and a DC
cluster_online() {
    local out
    out=$(on_node "$1" crm_mon -1 --output-as=xml 2>/dev/null) || return 1
    "$PY" -c '
import sys, xml.etree.ElementTree as E
r = E.fromstring(sys.stdin.read())
nodes = r.findall("./nodes/node")
dc = r.find("./summary/current_dc")
sys.exit(not (len(nodes) == int(sys.argv[1]) and all(n.get("online") == "true" for n in nodes)
              and dc is not None and dc.get("present") == "true"))' "${#CLUSTER_NODES[@]}" <<<"$out"
}

cluster_wait_online() {
    local n
    for n in "${CLUSTER_NODES[@]}"; do
        cluster_wait 120 "$n does not see all nodes online with a DC" cluster_online "$n"
    done
}

# cluster_roles NODE RESOURCE: "node:role" for each active instance of the
# clone RESOURCE, as NODE's crm_mon sees it (role Promoted/Unpromoted/...)
cluster_roles() {
    local out
    out=$(on_node "$1" crm_mon -1 -r --output-as=xml 2>/dev/null) || return 1
    "$PY" -c '
import sys, xml.etree.ElementTree as E
r = E.fromstring(sys.stdin.read())
for c in r.iter("clone"):
    if c.get("id") != sys.argv[1]:
        continue
    for res in c.iter("resource"):
        for n in res.iter("node"):
            print("%s:%s%s" % (n.get("name"), res.get("role"), "" if res.get("failed") == "false" else ":failed"))' "$2" <<<"$out"
}

# cluster_has_roles NODE RESOURCE EXPECTED: the sorted roles equal EXPECTED
# (words like alpha:Promoted)
cluster_has_roles() {
    local got want
    got=$(cluster_roles "$1" "$2" | sort | tr '\n' ' ') || return 1
    want=$(tr ' ' '\n' <<<"$3" | sort | tr '\n' ' ')
    [ "$got" = "$want" ]
}

# cluster_promoted NODE RESOURCE: prints the node where RESOURCE is Promoted
cluster_promoted() {
    cluster_roles "$1" "$2" | sed -n 's/^\([^:]*\):Promoted$/\1/p'
}
