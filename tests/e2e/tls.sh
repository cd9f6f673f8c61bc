# NBD over TLS (STARTTLS). --tls require with X.509: nbdinfo, libnbd and
# qemu-io connect; structured replies and block status work over TLS; fio
# verifies over TLS; a plaintext client gets NBD_REP_ERR_TLS_REQD for its
# options (raw socket) and is disconnected for EXPORT_NAME; a client that
# trusts another CA, and with --tls-verify-peer one without a certificate,
# are refused with a log line. The same with a pre-shared key (and a wrong
# key refused). --tls on serves plaintext and TLS clients. A TLS client
# writes and reads a 16 MiB request, and 32 MiB reads leave the peak RSS
# at the request's buffer and little more; SIGTERM with a TLS client attached
# still exits 0. A hundred idle connections leave a real client working.
# engine-independent: TLS runs in the connection layer
. "$(dirname "$0")/lib.bash"

make_tls "$T/tls"
new_disk "$T/disk" 64M
C=$T/tls
X509URI="nbds+unix:///?socket=$SOCK&tls-certificates=$C/client"
refused() { # refused WHAT CMD...: CMD fails
    local what=$1; shift
    if "$@" >"$T/out" 2>&1; then cat "$T/out"; fail "$what was served"; fi
    echo "$what: refused: $(tail -n 1 "$T/out")"
}

log "--tls require, X.509"
start_server "$T/disk" --tls require --tls-certificates "$C/server"
[ "$(nbdinfo --size "$X509URI")" = "$DATA_SIZE" ] || fail "nbdinfo over TLS"
"$PY" - "$SOCK" "$C/client" <<'PY'
import nbd, os, sys
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_certificates(sys.argv[2])
h.add_meta_context("base:allocation")
h.connect_unix(sys.argv[1])
assert h.get_tls_negotiated(), "no TLS"
assert h.get_structured_replies_negotiated(), "no structured replies over TLS"
data = os.urandom(16 << 20)
h.pwrite(data, 1 << 20)
h.flush()
assert h.pread(16 << 20, 1 << 20) == data, "16 MiB over TLS read back differently"
seen = []
h.block_status(8 << 20, 0, lambda ctx, off, ents, err: seen.append(ctx))
assert seen == ["base:allocation"], seen
h.shutdown()
print("libnbd: TLS, structured replies, block status, 16 MiB round trip")
PY
qemu-io --object "tls-creds-x509,id=t0,endpoint=client,dir=$C/client" \
    --image-opts "driver=nbd,server.type=unix,server.path=$SOCK,tls-creds=t0,tls-hostname=localhost" \
    -c 'write -P 0x5c 32M 1M' -c 'read -P 0x5c 32M 1M' >"$T/qemu.out" || { cat "$T/qemu.out"; fail "qemu-io over TLS"; }
nbdinfo --map "$X509URI" >/dev/null || fail "nbdinfo --map over TLS"
# fio's nbd engine may not name files in its URI: it checks no certificate
fio --name=tls --ioengine=nbd --uri="nbds+unix:///?socket=$SOCK&tls-verify-peer=false" \
    --rw=randwrite --bs=4k --iodepth=16 --size=16M --verify=crc32c --output-format=terse >/dev/null ||
    fail "fio verify over TLS"
echo "nbdinfo, libnbd, qemu-io and fio verify over TLS"
"$PY" - "$SOCK" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b
assert recv(18)[:16] == b"NBDMAGICIHAVEOPT"
s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
for opt, data in ((7, struct.pack(">IH", 0, 0)), (3, b""), (8, b"")):  # GO, LIST, STRUCTURED
    s.sendall(struct.pack(">QII", 0x49484156454F5054, opt, len(data)) + data)
    magic, o, typ, ln = struct.unpack(">QIII", recv(20))
    recv(ln)
    assert typ == 0x80000005, (opt, hex(typ))  # NBD_REP_ERR_TLS_REQD
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 0))  # EXPORT_NAME before TLS
try:
    assert recv(1) == b"", "EXPORT_NAME before TLS was answered"
except (EOFError, ConnectionResetError):
    pass
print("plaintext: ERR_TLS_REQD for GO, LIST and STRUCTURED_REPLY; EXPORT_NAME closes")
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
recv(18); s.sendall(struct.pack(">I", 3))
s.sendall(struct.pack(">QII", 0x49484156454F5054, 5, 0))  # STARTTLS
assert struct.unpack(">QIII", recv(20))[2] == 1, "STARTTLS not acknowledged"
s.close()  # and never a ClientHello
PY
# libnbd checks no certificate on a Unix socket; qemu does, given a host name
refused "a client trusting another CA" qemu-io --object "tls-creds-x509,id=t0,endpoint=client,dir=$C/other" \
    --image-opts "driver=nbd,server.type=unix,server.path=$SOCK,tls-creds=t0,tls-hostname=localhost" -c 'read 0 4k'

refused "a plaintext client" nbdinfo --size "nbd+unix:///?socket=$SOCK"
log "32 MiB reads over TLS: the reply is not copied whole into GnuTLS"
stop_server # a fresh one: its peak RSS is this test's alone
start_server "$T/disk" --tls require --tls-certificates "$C/server"
"$PY" - "$SOCK" "$C/client" <<'PY' || fail "32 MiB reads over TLS"
import nbd, sys
h = nbd.NBD(); h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates(sys.argv[2])
h.connect_unix(sys.argv[1])
for _ in range(2):
    assert len(h.pread(32 << 20, 0)) == 32 << 20
h.shutdown()
PY
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
echo "peak RSS after two 32 MiB reads over TLS: $hwm KiB"
# the request's 32 MiB buffer and a few MiB besides (a whole copy of the
# reply for GnuTLS added another 32 MiB)
# (an AddressSanitizer build's RSS is not the daemon's own)
if ! ldd "$NBDM" | grep -q libasan; then
    [ "$hwm" -lt $((52 << 10)) ] || fail "peak RSS $hwm KiB: the reply was copied whole"
fi
# idle_then_client N SECONDS: N connections that say nothing, then a real
# TLS client must get its answer within SECONDS
idle_then_client() {
    rm -f "$SOCK.idle"
    "$PY" - "$SOCK" "$1" <<'PY' &
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
conns = []
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); conns.append(s)
open(sys.argv[1] + ".idle", "w").close()
time.sleep(15)
PY
    IDLE=$!
    on_exit "kill $IDLE 2>/dev/null"
    for _ in $(seq 200); do [ -e "$SOCK.idle" ] && break; sleep 0.05; done
    [ -e "$SOCK.idle" ] || fail "could not open $1 connections"
    timeout "$2" nbdinfo --size "$X509URI" >/dev/null || fail "a real client locked out by $1 idle connections"
    echo "a real client got through $1 idle connections"
    kill $IDLE 2>/dev/null || true
}
log "a hundred idle connections, then a real client"
idle_then_client 100 5
log "more idle connections than the server takes (1100; it holds 1024), then a real client"
idle_then_client 1100 10
grep -q "handshake not completed; its place is needed" "$T/server.log" ||
    fail "a full server did not make room by dropping the oldest handshake"
log "SIGTERM with a TLS client attached"
"$PY" - "$SOCK" "$C/client" "$T/attached" <<'PY' &
import nbd, sys, time
h = nbd.NBD(); h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates(sys.argv[2])
h.connect_unix(sys.argv[1]); open(sys.argv[3], "w").close()
time.sleep(30)
PY
CLIENT=$!
on_exit "kill $CLIENT 2>/dev/null"
for _ in $(seq 100); do [ -e "$T/attached" ] && break; sleep 0.05; done
stop_server
kill $CLIENT 2>/dev/null || true
grep -q "TLS (X.509)" "$T/server.log" || fail "the log does not say the clients used TLS"
grep -q "client .*: client left during the TLS handshake" "$T/server.log" ||
    { cat "$T/server.log"; fail "no log line for the client that left during the handshake"; }

log "--tls-verify-peer: a client certificate is required"
start_server "$T/disk" --tls require --tls-certificates "$C/server" --tls-verify-peer
nbdinfo --size "$X509URI" >/dev/null || fail "a client with a certificate of the CA"
refused "a client without a certificate" nbdinfo --size "nbds+unix:///?socket=$SOCK&tls-certificates=$C/nocert"
grep -q "Certificate is required" "$T/server.log" || fail "the refusal is not logged with its reason"
stop_server

log "--tls require, pre-shared key"
start_server "$T/disk" --tls require --tls-psk "$C/keys.psk"
PSKURI="nbds+unix://alice@/?socket=$SOCK&tls-psk-file=$C/keys.psk"
[ "$(nbdinfo --size "$PSKURI")" = "$DATA_SIZE" ] || fail "nbdinfo with a PSK"
"$PY" - "$SOCK" "$C/keys.psk" <<'PY'
import nbd, sys
h = nbd.NBD(); h.set_tls(nbd.TLS_REQUIRE); h.set_tls_psk_file(sys.argv[2]); h.set_tls_username("alice")
h.connect_unix(sys.argv[1])
h.pwrite(b"\x42" * 65536, 0); h.flush()
assert h.pread(65536, 0) == b"\x42" * 65536
print("libnbd with a PSK")
PY
qemu-io --object "tls-creds-psk,id=t0,endpoint=client,dir=$C,username=alice" \
    --image-opts "driver=nbd,server.type=unix,server.path=$SOCK,tls-creds=t0" \
    -c 'read -P 0x42 0 64k' >"$T/qemu.out" || { cat "$T/qemu.out"; fail "qemu-io with a PSK"; }
refused "a client with the wrong key" nbdinfo --size "nbds+unix://alice@/?socket=$SOCK&tls-psk-file=$C/wrong.psk"
stop_server

log "--tls on: both kinds of client"
start_server "$T/disk" --tls on --tls-certificates "$C/server"
[ "$(nbdinfo --size "nbd+unix:///?socket=$SOCK")" = "$DATA_SIZE" ] || fail "a plaintext client with --tls on"
[ "$(nbdinfo --size "$X509URI")" = "$DATA_SIZE" ] || fail "a TLS client with --tls on"
stop_server
echo "TLS: all cases as expected"
