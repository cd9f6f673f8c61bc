# Overlapping requests in flight together must land in the same order on the
# primary's disk and on the secondary's (protocol C, one secondary in its own
# namespace). A libnbd client (repl_overlap.py) runs rounds, each at a 1 MiB
# offset (a batch of 63 rounds covers the 64 MiB disk once), of requests
# submitted together and then awaited:
#   buffered  a 1 MiB write plus a 4 KiB write inside it
#   mixed     a 1 MiB write plus WRITE_ZEROES (with and without NO_HOLE) and
#             TRIM inside it
#   direct    primary with --direct: four 1 MiB writes of different patterns
#             at one offset
# Odd rounds are sent while the primary is SIGSTOPped (SIGCONT right after),
# so that it finds the whole round at once, as a busy primary does; even
# rounds arrive as they are sent.
# After each batch: FLUSH, and every region read through the primary's export
# equals the same region read through the secondary's read-only export (the
# client counts diverged rounds). After each phase (fresh disks each): the
# primary's export is copied with nbdcopy, both nodes stop cleanly, and the
# data areas of both images and the copy must be identical (cmp). On a
# difference, how many rounds, bytes, 4 KiB blocks and which 1 MiB regions
# differ is printed; every phase runs before the test fails. A request that
# does not complete within 30 s fails the test at once.
. "$(dirname "$0")/lib.bash"

ROUNDS=${ROUNDS:-180} # per phase
helper="$(dirname "$0")/repl_overlap.py"
make_hosts 1
failed=()

# phase NAME [primary serve options]
phase() {
    local name=$1
    shift
    log "$name: $ROUNDS rounds"
    rm -f "$T/p.img" "$T/s1.img" "$T/p.ctl" "$T/s1.ctl" "$T/p.copy"
    new_disk "$T/s1.img" 64M --skip-initial-sync
    new_disk "$T/p.img" 64M --skip-initial-sync
    start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789 --nbd "unix:$T/s1.sock"
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 \
        --protocol C "$@"
    wait_peers p 1
    local bad=0 rc=0
    [ "$(cat "/proc/${NODE_PID[p]}/comm")" = nbdmirror ] || fail "no pid of the primary to stop"
    "$PY" "$helper" "$name" "$SOCK" "nbd+unix:///?socket=$T/s1.sock" "$ROUNDS" "${NODE_PID[p]}" ||
        rc=$?
    if [ $rc = 2 ]; then # requests hang: say where, then give up
        status_json p
        status_json s1
        fail "$name: requests did not complete"
    fi
    [ $rc = 0 ] || [ $rc = 10 ] || fail "$name: client failed (status $rc)"
    [ $rc = 0 ] || bad=1 # it printed how many rounds diverged
    status_json p | "$PY" -c '
import json, sys; p = json.load(sys.stdin)["peers"][0]
assert p["replication"] == "Established" and p["out_of_sync_bytes"] == 0, p'
    # an independent reader of what the primary serves
    nbdcopy "$URI" "$T/p.copy"
    stop_node p
    stop_node s1
    if ! data_equal "$T/p.img" "$T/s1.img" >/dev/null; then
        echo "$name: primary and secondary images differ:" \
            "$({ cmp -l -n "$DATA_SIZE" "$T/p.img" "$T/s1.img" || true; } | wc -l) bytes"
        "$PY" "$helper" diff "$T/p.img" "$T/s1.img" "$DATA_SIZE"
        bad=1
    fi
    if ! cmp -n "$DATA_SIZE" "$T/p.copy" "$T/s1.img" >/dev/null; then
        echo "$name: the primary's export differs from the secondary's image:" \
            "$({ cmp -l -n "$DATA_SIZE" "$T/p.copy" "$T/s1.img" || true; } | wc -l) bytes"
        bad=1
    fi
    if [ $bad = 1 ]; then
        failed+=("$name")
    else
        echo "$name: primary and secondary identical ($DATA_SIZE bytes)"
    fi
}

PHASES=${PHASES:-"buffered mixed direct"} # a subset, when chasing one of them
for p in $PHASES; do
    case $p in
    direct) phase direct --direct ;;
    *) phase "$p" ;;
    esac
done

[ ${#failed[@]} -eq 0 ] || fail "disks differ after: ${failed[*]}"
echo "all phases: primary and secondary identical"
