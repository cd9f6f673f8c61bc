# Connections that never complete the replication handshake cannot lock
# out the real peer: (a) 12 idle TCP connections to a secondary's --listen
# port, then the primary starts: it is Established within 15 s and the idle
# connections are closed; (b) the same with 40 towards a primary's --listen
# port, which the secondary then dials; (c) connections that send part of a
# HELLO header, or a header and part of its payload, then stall, are closed
# on both nodes, and the established link stays up throughout.
# engine-independent: the handshake is network code; the io engine plays no part
. "$(dirname "$0")/lib.bash"

IDLE=$(dirname "$0")/repl_idle.py
make_hosts 1
new_disk "$T/s1.img" 64M --skip-initial-sync
new_disk "$T/p.img" 64M --skip-initial-sync

# idle HOST ADDR PORT N MODE NAME: repl_idle.py from namespace HOST in the
# background, its pid in IDLE_PID; returns once it holds its connections
idle() {
    rm -f "$T/$6.ready"
    ip netns exec "$(ns "$1")" "$PY" "$IDLE" "$2" "$3" "$4" "$5" "$T/$6.ready" 15 >"$T/$6.out" 2>&1 &
    IDLE_PID=$!
    on_exit "kill $IDLE_PID 2>/dev/null"
    for _ in $(seq 300); do
        [ -e "$T/$6.ready" ] && return 0
        kill -0 "$IDLE_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$T/$6.out"
    fail "$6: could not set up its connections"
}

# idle_closed NAME: the idle client found all its connections closed in time
idle_closed() {
    local rc=0
    wait "$IDLE_PID" || rc=$?
    cat "$T/$1.out"
    [ $rc -eq 0 ] || fail "$1: connections that never finish the handshake stay open"
}

# established NODE: within 15 s
established() {
    for _ in $(seq 150); do
        status_has "$1" '"replication":"Established"' && return 0
        sleep 0.1
    done
    "$NBDM" status --control "$T/$1.ctl"
    fail "$1 is not Established within 15 s: idle connections lock the real peer out"
}

log "(a) 12 idle connections to the secondary, then the primary starts"
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
idle p 10.77.1.2 7789 12 idle a
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
established p
idle_closed a

log "(c) stalled partial handshakes towards the established secondary"
idle p 10.77.1.2 7789 2 header c1
c1=$IDLE_PID
idle p 10.77.1.2 7789 2 payload c2
IDLE_PID=$c1 idle_closed c1
idle_closed c2
qemu-io -f raw -c 'write -P 0x61 0 4M' -c flush "$URI" >/dev/null
status_has p '"replication":"Established"' || fail "the real link went down"
# a link that was up and went down is a warning "peer ADDRESS: why"
grep "warning: peer " "$T/p.log" && fail "the real link was dropped"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "(a): data areas differ"

log "(b) 40 idle connections to the primary, then the secondary dials it"
rm -f "$T/p.log" "$T/s1.log" "$T/p.ctl" "$T/s1.ctl"
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --listen 10.77.1.1:7788 --protocol C
idle s1 10.77.1.1 7788 40 idle b
start_node s1 s1 "$T/s1.img" --role secondary --peer 10.77.1.1:7788
established p
idle_closed b

log "(c) stalled partial handshakes towards the primary"
idle s1 10.77.1.1 7788 2 header c3
c3=$IDLE_PID
idle s1 10.77.1.1 7788 2 payload c4
IDLE_PID=$c3 idle_closed c3
idle_closed c4
qemu-io -f raw -c 'write -P 0x62 8M 4M' -c flush "$URI" >/dev/null
grep "warning: peer " "$T/p.log" && fail "the real link was dropped"
stop_node p
stop_node s1
data_equal "$T/p.img" "$T/s1.img" || fail "(b): data areas differ"
echo "idle and stalled connections closed; the real peer got through"
