# An interrupted full sync goes on from where it stopped, whichever way it
# was interrupted: (1) the link dropped (`disconnect`, then `connect`);
# (2) the sync target SIGKILLed, and 8 MiB written on the primary while it
# is away; (3) the sync source SIGKILLed and restarted. The target says
# Inconsistent until the resumed sync ends, the resumed sync starts with
# what was left when it was cut (plus what was not yet confirmed durable),
# not with the whole device again, and the data areas end equal.
# engine-independent (what is tested is the resync's bookkeeping, above the
# io engine: one engine mode is enough)
. "$(dirname "$0")/lib.bash"

make_hosts 1

# cut_at LOW HIGH: wait until the sync has done LOW% of the device; CUT is
# what it had done then, which must not be over HIGH%
cut_at() {
    local pct=0
    for _ in $(seq 300); do
        pct=$(jfield p 'p["resync_percent"] if p.get("replication") == "SyncSource" else 0')
        [ "$pct" -ge "$1" ] && break
        sleep 0.05
    done
    [ "$pct" -ge "$1" ] && [ "$pct" -le "$2" ] ||
        { "$NBDM" status --control "$T/p.ctl"; fail "not mid-sync: $pct%"; }
    CUT=$pct
    echo "cut at $CUT%"
}

# resumed_mib: the size of the newest sync the primary's log says starts
resumed_mib() {
    grep -o "sync of [0-9]* MiB starts" "$T/p.log" | tail -1 | grep -o "[0-9]*"
}

# target_inconsistent WHEN: the secondary says its disk is Inconsistent
target_inconsistent() {
    [ "$(jfield s1 's["disk"]')" = Inconsistent ] || { status_json s1; fail "the target must be Inconsistent: $1"; }
}

# done_and_equal MAX_MIB: the resumed sync ends having started with at most
# MAX_MIB out of sync (the primary's log), and the data areas are equal
done_and_equal() {
    local mib
    wait_synced p 1 90
    mib=$(resumed_mib)
    echo "resumed sync: $mib MiB of $TOTAL_MIB, at most $1 allowed"
    [ "$mib" -le "$1" ] || { grep sync "$T/p.log"; fail "the sync started over ($mib MiB)"; }
    [ "$(jfield s1 's["disk"]')" = UpToDate ] || fail "the target is not UpToDate after the sync"
    stop_node p
    stop_node s1
    data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the resumed sync"
}

fresh() { # a primary disk of random data, a target disk of other data
    rm -f "$T/p.img" "$T/s1.img" "$T"/*.log
    head -c 192M /dev/urandom >"$T/p.img"
    new_disk "$T/p.img" 192M
    head -c 192M /dev/urandom >"$T/s1.img"
    new_disk "$T/s1.img" 192M
    TOTAL_MIB=$((DATA_SIZE >> 20))
}
PRIMARY=(--role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C)
SECONDARY=(--role secondary --listen 10.77.1.2:7789)

# What a cut may cost beyond what was still to do: resync data sent but not
# yet confirmed durable by a barrier (the primary asks every 32 MiB) and
# what was in flight.
SLACK_MIB=40
left_after() { echo $((TOTAL_MIB * (100 - CUT) / 100 + SLACK_MIB + ${1:-0})); }

log "1: the link drops mid-sync"
fresh
start_node p p "$T/p.img" "${PRIMARY[@]}" --resync-rate 40M --force
start_node s1 s1 "$T/s1.img" "${SECONDARY[@]}"
cut_at 50 85
"$NBDM" disconnect --control "$T/p.ctl" >/dev/null
target_inconsistent "link down mid-sync"
"$NBDM" connect --control "$T/p.ctl" >/dev/null
done_and_equal "$(left_after)"
echo "link cut: resumed and equal"

log "2: the target SIGKILLed mid-sync, 8 MiB written while it is away"
fresh
start_node p p "$T/p.img" "${PRIMARY[@]}" --resync-rate 40M --force
start_node s1 s1 "$T/s1.img" "${SECONDARY[@]}"
cut_at 50 85
kill -9 "${NODE_PID[s1]}"
wait "${NODE_PID[s1]}" 2>/dev/null || true
for _ in $(seq 100); do [ "$(jfield p 'p["replication"]')" = SyncSource ] || break; sleep 0.1; done
qemu-io -f raw -c 'write -P 0x5a 100M 8M' "$URI" >/dev/null || fail "write while the target is away"
start_node s1 s1 "$T/s1.img" "${SECONDARY[@]}"
target_inconsistent "restarted after a kill mid-sync"
done_and_equal "$(left_after 8)"
echo "target killed: resumed and equal"

log "3: the source SIGKILLed mid-sync, restarted"
fresh
start_node p p "$T/p.img" "${PRIMARY[@]}" --resync-rate 16M --force
start_node s1 s1 "$T/s1.img" "${SECONDARY[@]}"
# the primary writes its bitmap out every 5 s: once a quarter is sent (so
# some of it confirmed), one more write-out keeps that much
cut_at 25 60
sleep 6
cut_at 25 98
kill -9 "${NODE_PID[p]}"
wait "${NODE_PID[p]}" 2>/dev/null || true
target_inconsistent "its source was killed mid-sync"
start_node p p "$T/p.img" "${PRIMARY[@]}" --resync-rate 40M
done_and_equal $((TOTAL_MIB - 16))
echo "source killed: resumed and equal"
