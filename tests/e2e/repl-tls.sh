# Authenticated, encrypted replication links (--peer-psk, --peer-certificates).
# Protocol C over a pre-shared-key link and over an X.509 link: fio verifies
# through the primary and the secondary's image is byte-identical; a relay
# between the nodes sees no plaintext (and does see it on an unprotected
# link, so the check can fail). Refused, with the address and the reason in
# the log and nothing written to the secondary's disk: a primary with the
# wrong key, one with no key, one whose certificate is from another CA, and
# a forged plaintext primary that knows the ids and sends a write. A node
# without keys warns at startup that its port accepts anyone. 100 silent
# connections to a protected port leave the real primary able to connect.
# engine-independent: TLS runs in the connection layer
. "$(dirname "$0")/lib.bash"

HELPER=$(dirname "$0")/repl_tls.py
IDLE=$(dirname "$0")/repl_idle.py
C=$T/tls
make_hosts 1
make_tls "$C"
new_disk "$T/s1.img" 64M --skip-initial-sync
new_disk "$T/p.img" 64M --skip-initial-sync

# relay: 10.77.1.1:7790 (in p) -> 10.77.1.2:7789, every byte into $T/wire
relay() {
    rm -f "$T/wire"
    ip netns exec "$(ns p)" "$PY" "$HELPER" relay 10.77.1.1 7790 10.77.1.2 7789 "$T/wire" &
    RELAY=$!
    on_exit "kill $RELAY 2>/dev/null"
    sleep 0.5
}
# plaintext_on_wire: 256 bytes of the 0x5a pattern written below in a row
plaintext_on_wire() { "$PY" -c 'import sys; sys.exit(b"\x5a" * 256 not in open(sys.argv[1], "rb").read())' "$T/wire"; }
load() {
    fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --size=16M \
        --verify=crc32c --do_verify=1 >"$T/fio.out" 2>&1 || { cat "$T/fio.out"; fail "$1: fio verify"; }
    qemu-io -f raw -c "write -P 0x5a 32M 4M" -c flush "$URI" >/dev/null
}
both_stop_equal() {
    wait_synced p 1 20
    stop_node p
    stop_node s1
    data_equal "$T/p.img" "$T/s1.img" || fail "$1: data areas differ"
    echo "$1: equal"
}
# (truncated, not removed: a running node appends to its log)
fresh_logs() { : >"$T/p.log"; : >"$T/s1.log"; }

# mirrored NAME AUTH...: protocol C between nodes given AUTH, through the
# relay; fio verifies, the images are equal, the wire carried no plaintext
mirrored() {
    local name=$1
    shift
    fresh_logs
    relay
    start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789 "$@"
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.1:7790 \
        --protocol C "$@"
    wait_peers p 1
    load "$name"
    both_stop_equal "$name"
    kill "$RELAY"
    [ "$(stat -c %s "$T/wire")" -gt $((20 << 20)) ] || fail "$name: the link did not go through the relay"
    plaintext_on_wire && fail "$name: written data crossed the link in plaintext"
    grep -q "accepts unauthenticated" "$T/s1.log" && fail "$name: a warning about a port that does authenticate"
    return 0
}

log "pre-shared key, protocol C, through a relay that records the wire"
mirrored psk --peer-psk "$C/keys.psk"
log "X.509, each node with a certificate of the same CA, the same way"
mirrored x509 --peer-certificates "$C/server"

# a secondary that takes only the right key; what is on its disk now must
# stay there whoever else knocks
cp "$T/s1.img" "$T/s1.before"
unchanged() { data_equal "$T/s1.before" "$T/s1.img" || fail "$1: the secondary's disk was written"; }
# refused_by_s1 WHAT: the secondary logs a refusal naming the primary's
# address, the primary never gets Established
refused_by_s1() {
    for _ in $(seq 100); do
        grep -q "peer 10.77.1.1:[0-9]*: refused" "$T/s1.log" && break
        sleep 0.1
    done
    grep "peer 10.77.1.1:[0-9]*: refused" "$T/s1.log" | head -n 1 ||
        fail "$1: no refusal with the address in the secondary's log"
    status_has p '"replication":"Established"' && fail "$1: the link came up"
    qemu-io -f raw -c "write -P 0x77 0 1M" -c flush "$URI" >/dev/null
    sleep 1
    stop_node p
    unchanged "$1"
}

# mismatched WHAT OPTION S1_VALUE P_VALUE: s1 started with OPTION S1_VALUE,
# the primary with OPTION P_VALUE; both refuse, and say why
mismatched() {
    fresh_logs
    start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789 "$2" "$3"
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 \
        --protocol C "$2" "$4"
    refused_by_s1 "$1"
    grep "peer 10.77.1.2:7789: refused" "$T/p.log" | head -n 1 || fail "$1: the primary does not say why"
}

log "a primary with the wrong key"
mismatched "wrong key" --peer-psk "$C/keys.psk" "$C/wrong.psk"

log "a primary with no key"
fresh_logs
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
grep -q "accepts unauthenticated" "$T/p.log" && fail "a warning from a node without --listen"
refused_by_s1 "no key"

log "a forged plaintext primary with the right ids and a write"
fresh_logs
gen() { status_json s1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
ip netns exec "$(ns p)" "$PY" "$HELPER" forge 10.77.1.2 7789 "$DATA_SIZE" "$(gen)" ||
    fail "a plaintext primary was taken"
unchanged "forged primary"

log "100 silent connections to the protected port, then the real primary"
fresh_logs
rm -f "$T/idle.ready"
ip netns exec "$(ns p)" "$PY" "$IDLE" 10.77.1.2 7789 100 silent "$T/idle.ready" 15 >"$T/idle.out" 2>&1 &
IDLE_PID=$!
on_exit "kill $IDLE_PID 2>/dev/null"
for _ in $(seq 300); do [ -e "$T/idle.ready" ] && break; sleep 0.1; done
[ -e "$T/idle.ready" ] || { cat "$T/idle.out"; fail "could not open 100 connections"; }
t0=$(date +%s%N)
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C \
    --peer-psk "$C/keys.psk"
wait_peers p 1
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "the real primary was Established after $ms ms"
# within the handshake timeout (5 s), which is when the strangers would go
# anyway: they must not be what let it in
[ $ms -lt 5000 ] || fail "the real primary waited for the silent connections to time out"
rc=0
wait "$IDLE_PID" || rc=$?
cat "$T/idle.out"
[ $rc -eq 0 ] || fail "silent connections stay open"
# the real primary's earlier writes (0x77, while refused) go over now
both_stop_equal "after 100 silent connections"
stop_node s1 2>/dev/null || true

log "X.509: a node whose certificate is from another CA"
cp "$T/s1.img" "$T/s1.before"
mismatched "another CA" --peer-certificates "$C/server" "$C/other"
stop_node s1
"$NBDM" serve "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 \
    --peer-certificates "$C/nocert" \
    >"$T/out" 2>&1 && fail "started without a certificate of its own"
grep -q "server-cert.pem and server-key.pem are needed" "$T/out" || { cat "$T/out"; fail "no clear error"; }

log "control: an unprotected port warns, and a forged primary writes to it"
fresh_logs
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
grep "accepts unauthenticated peers" "$T/s1.log" || fail "no warning for an unprotected port"
relay
ip netns exec "$(ns p)" "$PY" "$HELPER" forge 10.77.1.1 7790 "$DATA_SIZE" "$(gen)" >/dev/null &&
    fail "an unprotected secondary refused a plaintext primary (the check above proves nothing)"
data_equal "$T/s1.before" "$T/s1.img" && fail "the forged write did not land (the check above proves nothing)"
plaintext_on_wire || fail "the relay sees no plaintext even unprotected (its check proves nothing)"
echo "control: the forged write landed on an unprotected secondary"
stop_node s1
