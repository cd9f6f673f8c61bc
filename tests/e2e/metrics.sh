# engine-independent
# Prometheus metrics (serve --metrics). A primary and a secondary, each in
# its own network namespace, each with a metrics endpoint; everything that
# talks HTTP runs inside the primary's namespace, so no port can collide.
#  - after a known load (100 writes of 64 KiB, 20 reads, one flush) promtool
#    accepts the scrape (no lint warning either), and an independent parser
#    (python3-prometheus-client) reads exactly those counts in the request
#    counters and in the latency histograms' _count, the bytes, the roles,
#    and a peer that is Connected, Established, UpToDate, 0 out of sync, 0 lag;
#  - HTTP: 404 for another path, 405 for another method, 400 for garbage,
#    414 and 431 for over-long requests, HEAD without a body;
#  - a frozen secondary (SIGSTOP): while a write waits for it the lag
#    metrics are non-zero; after --timeout drops it the write completes (its
#    latency lands above 1 s in the histogram), the bytes it lacks are out of
#    sync and grow with new writes; thawed, it resyncs to 0;
#  - a real Prometheus server scrapes both nodes: targets up, queries give
#    the same values; 50 idle connections neither stop its scrapes nor a
#    curl, and the daemon closes them all within its timeout;
#  - bad --metrics values are refused at start; SIGTERM still exits 0;
#    unix:PATH serves the same (curl --unix-socket) and is removed at exit.
. "$(dirname "$0")/lib.bash"

command -v promtool >/dev/null && command -v prometheus >/dev/null ||
    skip "promtool and prometheus are needed (Debian: prometheus)"
"$PY" -c 'import prometheus_client.parser' 2>/dev/null ||
    skip "python3-prometheus-client is needed"

make_hosts 1
new_disk "$T/s1.img" 256M --skip-initial-sync
new_disk "$T/p.img" 256M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789 --nbd "unix:$T/s1.sock" \
    --metrics 10.77.1.2:9942
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C \
    --timeout 10 --metrics 127.0.0.1:9942
wait_peers p 1

IN_P=(ip netns exec "$(ns p)") # in the primary's namespace (ip execs: $! is the command)
inp() { "${IN_P[@]}" "$@"; }
P_URL=http://127.0.0.1:9942/metrics
S_URL=http://10.77.1.2:9942/metrics

# scrape URL FILE: a 200 in format 0.0.4 that promtool accepts without a word
scrape() {
    inp curl -sS --max-time 10 -D "$2.head" -o "$2" "$1" || fail "curl $1"
    grep -q '^HTTP/1.1 200 OK' "$2.head" || { cat "$2.head"; fail "$1: not 200"; }
    grep -qi '^Content-Type: text/plain; version=0.0.4' "$2.head" || { cat "$2.head"; fail "$1: content type"; }
    promtool check metrics <"$2" >"$2.lint" 2>&1 || { cat "$2.lint"; fail "promtool rejects $1"; }
    [ ! -s "$2.lint" ] || { cat "$2.lint"; fail "promtool has remarks on $1"; }
}

# mval FILE NAME [LABEL=VALUE...]: the one sample that matches, as parsed by
# prometheus_client (integers without ".0")
cat >"$T/mval.py" <<'EOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
path, name = sys.argv[1], sys.argv[2]
want = dict(a.split("=", 1) for a in sys.argv[3:])
hits = [s.value for f in text_string_to_metric_families(open(path, encoding="utf-8").read())
        for s in f.samples if s.name == name and all(s.labels.get(k) == v for k, v in want.items())]
if len(hits) != 1:
    sys.exit(f"{name} {want}: {len(hits)} samples")
print(int(hits[0]) if hits[0] == int(hits[0]) else hits[0])
EOF
mval() { "$PY" "$T/mval.py" "$@" || fail "no single sample $*"; }
# expect FILE NAME [LABELS...] OP VALUE: e.g. expect f x op=write == 100
expect() {
    local file=$1 name=$2 op=${*: -2:1} want=${*: -1} got
    got=$(mval "$file" "$name" "${@:3:$#-4}")
    "$PY" -c "import sys; sys.exit(0 if $got $op $want else 1)" ||
        fail "$name ${*:3:$#-4}: $got, expected $op $want"
}

log "a known load, then the counters"
"$PY" - "$URI" <<'EOF'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(100):
    h.pwrite(bytes([i]) * 65536, i * 65536)
for i in range(20):
    h.pread(4096, i * 65536)
h.flush()
h.shutdown()
EOF
PEER=peer=10.77.1.2:7789
# protocol C: every write is acknowledged before its reply; the counters
# are final once the client is gone
for _ in $(seq 100); do
    scrape "$P_URL" "$T/p.prom"
    [ "$(mval "$T/p.prom" nbdmirror_clients)" = 0 ] && break
    sleep 0.1
done
F=$T/p.prom
expect "$F" nbdmirror_requests_total op=write == 100
expect "$F" nbdmirror_requests_total op=read == 20
expect "$F" nbdmirror_requests_total op=flush == 1
expect "$F" nbdmirror_requests_total op=trim == 0
expect "$F" nbdmirror_written_bytes_total == 6553600
expect "$F" nbdmirror_read_bytes_total == 81920
expect "$F" nbdmirror_request_errors_total == 0
expect "$F" nbdmirror_client_connections_total == 1
expect "$F" nbdmirror_request_duration_seconds_count op=write == 100
expect "$F" nbdmirror_request_duration_seconds_bucket op=write le=+Inf == 100
expect "$F" nbdmirror_request_duration_seconds_count op=read == 20
expect "$F" nbdmirror_request_duration_seconds_count op=flush == 1
expect "$F" nbdmirror_request_duration_seconds_sum op=write '>' 0
expect "$F" nbdmirror_request_duration_seconds_sum op=write '<' 100
expect "$F" nbdmirror_role role=primary == 1
expect "$F" nbdmirror_role role=secondary == 0
expect "$F" nbdmirror_disk_state state=UpToDate == 1
expect "$F" nbdmirror_size_bytes == "$DATA_SIZE"
expect "$F" nbdmirror_peer_connection_state "$PEER" state=Connected == 1
expect "$F" nbdmirror_peer_replication_state "$PEER" state=Established == 1
expect "$F" nbdmirror_peer_disk_state "$PEER" state=UpToDate == 1
expect "$F" nbdmirror_peer_role "$PEER" role=Secondary == 1
expect "$F" nbdmirror_peer_out_of_sync_bytes "$PEER" == 0
expect "$F" nbdmirror_peer_lag_bytes "$PEER" == 0
expect "$F" nbdmirror_peer_lag_seconds "$PEER" == 0
expect "$F" nbdmirror_peer_inflight_requests "$PEER" == 0
expect "$F" nbdmirror_peer_resync_active "$PEER" == 0
expect "$F" nbdmirror_peer_sent_bytes_total "$PEER" == 6553600
expect "$F" nbdmirror_peer_acked_bytes_total "$PEER" == 6553600
expect "$F" nbdmirror_peer_acked_requests_total "$PEER" == 100
# the same record as `nbdmirror status`
[ "$(jfield p 's["writes"], s["write_bytes"], p["acked_bytes"]')" = "100 6553600 6553600" ] ||
    fail "status and metrics disagree: $(status_json p)"
# the secondary's view, fetched across the veth
scrape "$S_URL" "$T/s.prom"
expect "$T/s.prom" nbdmirror_role role=secondary == 1
expect "$T/s.prom" nbdmirror_read_only == 1
expect "$T/s.prom" nbdmirror_peer_role role=Primary == 1
expect "$T/s.prom" nbdmirror_peer_replication_state state=Established == 1
expect "$T/s.prom" nbdmirror_peer_received_bytes_total == 6553600
expect "$T/s.prom" nbdmirror_requests_total op=write == 0
# every family is documented
for name in $(sed -n 's/^# TYPE \([a-z_]*\) .*/\1/p' "$F"); do
    grep -q "^\.B $name\({\|$\)" "$ROOT/man/nbdmirror.8" || fail "$name is not in nbdmirror(8)"
done
echo "counters: 100 writes, 20 reads, 1 flush; peer in sync"

log "HTTP: wrong path, method, garbage, over-long, HEAD"
cat >"$T/httpcases.py" <<'EOF'
import socket, sys
def ask(data, chunks=1):
    s = socket.create_connection(("127.0.0.1", 9942), timeout=20)
    s.sendall(data)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out
def status(out):
    return out.split(b"\r\n", 1)[0].decode()
cases = [
    (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found"),
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 405 Method Not Allowed"),
    (b"hello there\r\n", "HTTP/1.1 400 Bad Request"),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)) + b"\n", "HTTP/1.1 400 Bad Request"),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", "HTTP/1.1 414 URI Too Long"),
    (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
     "HTTP/1.1 431 Request Header Fields Too Large"),
]
for req, want in cases:
    out = ask(req)
    assert status(out) == want, (req[:40], out[:200])
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and body, out[:300]
    if want.startswith("HTTP/1.1 405"):
        assert b"\r\nAllow: GET, HEAD\r\n" in head, head
out = ask(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
head, _, body = out.partition(b"\r\n\r\n")
assert status(out) == "HTTP/1.1 200 OK" and b"Content-Length: " in head and body == b"", out[:300]
out = ask(b"GET /metrics?x=1 HTTP/1.0\n\n")  # HTTP/1.0, bare newlines, a query
assert status(out) == "HTTP/1.1 200 OK" and b"\nnbdmirror_requests_total{op=\"write\"} " in out, out[:300]
print("HTTP errors ok")
EOF
inp "$PY" "$T/httpcases.py" || fail "HTTP error cases"
inp curl -sS -o /dev/null -w '%{http_code}\n' http://127.0.0.1:9942/ >"$T/code"
[ "$(cat "$T/code")" = 404 ] || fail "curl /: $(cat "$T/code")"

log "a frozen secondary: lag while a write waits, then out of sync"
kill -STOP "${NODE_PID[s1]}"
on_exit "kill -CONT ${NODE_PID[s1]} 2>/dev/null"
"$PY" - "$URI" >"$T/frozen.out" 2>&1 <<'EOF' &
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\x77" * (1 << 20), 32 << 20)  # waits for the frozen peer (protocol C)
h.shutdown()
print("written")
EOF
WRITER=$!
on_exit "kill $WRITER 2>/dev/null"
seen=
for _ in $(seq 60); do # the peer is dropped after about 9-10 s: look in the first 6
    scrape "$P_URL" "$T/lag.prom"
    if [ "$(mval "$T/lag.prom" nbdmirror_peer_lag_bytes "$PEER")" -ge $((1 << 20)) ] &&
        "$PY" -c "import sys; sys.exit(0 if $(mval "$T/lag.prom" nbdmirror_peer_lag_seconds "$PEER") > 0 else 1)"; then
        seen=1
        break
    fi
    sleep 0.1
done
[ -n "$seen" ] || { grep nbdmirror_peer_ "$T/lag.prom"; fail "no lag seen while a write waited"; }
grep -E '^nbdmirror_peer_(lag|inflight|send_queue)' "$T/lag.prom"
expect "$T/lag.prom" nbdmirror_peer_replication_state "$PEER" state=Established == 1
timeout 30 tail --pid="$WRITER" -f /dev/null || fail "the write did not complete after the drop"
wait "$WRITER" || { cat "$T/frozen.out"; fail "the write failed"; }
scrape "$P_URL" "$T/drop.prom"
expect "$T/drop.prom" nbdmirror_peer_connection_state "$PEER" state=Connected == 0
expect "$T/drop.prom" nbdmirror_peer_lag_bytes "$PEER" == 0
expect "$T/drop.prom" nbdmirror_peer_lag_seconds "$PEER" == 0
expect "$T/drop.prom" nbdmirror_peer_out_of_sync_bytes "$PEER" '>=' $((1 << 20))
# the waiting write took seconds: above the 1 s bucket
expect "$T/drop.prom" nbdmirror_request_duration_seconds_count op=write == 101
expect "$T/drop.prom" nbdmirror_request_duration_seconds_bucket op=write le=1 == 100
oos=$(mval "$T/drop.prom" nbdmirror_peer_out_of_sync_bytes "$PEER")
qemu-io -f raw -c 'write -P 0x78 64M 2M' "$URI" >/dev/null
scrape "$P_URL" "$T/drop2.prom"
expect "$T/drop2.prom" nbdmirror_peer_out_of_sync_bytes "$PEER" '>=' $((oos + (2 << 20)))
echo "out of sync: $oos bytes, then $(mval "$T/drop2.prom" nbdmirror_peer_out_of_sync_bytes "$PEER")"
kill -CONT "${NODE_PID[s1]}"
synced=
for _ in $(seq 600); do
    scrape "$P_URL" "$T/sync.prom"
    if [ "$(mval "$T/sync.prom" nbdmirror_peer_out_of_sync_bytes "$PEER")" = 0 ] &&
        [ "$(mval "$T/sync.prom" nbdmirror_peer_replication_state "$PEER" state=Established)" = 1 ] &&
        [ "$(mval "$T/sync.prom" nbdmirror_peer_disk_state "$PEER" state=UpToDate)" = 1 ]; then
        synced=1
        break
    fi
    sleep 0.1
done
[ -n "$synced" ] || { grep nbdmirror_peer_ "$T/sync.prom"; fail "the thawed secondary did not resync"; }
expect "$T/sync.prom" nbdmirror_peer_last_resync_bytes "$PEER" '>=' $((oos + (2 << 20)))
expect "$T/sync.prom" nbdmirror_peer_resync_active "$PEER" == 0
echo "resynced: $(mval "$T/sync.prom" nbdmirror_peer_last_resync_bytes "$PEER") bytes"

log "a real Prometheus scrapes both nodes"
cat >"$T/prom.yml" <<'EOF'
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: nbdmirror
    static_configs:
      - targets: ['127.0.0.1:9942', '10.77.1.2:9942']
EOF
"${IN_P[@]}" prometheus --config.file="$T/prom.yml" --storage.tsdb.path="$T/tsdb" \
    --web.listen-address=127.0.0.1:9090 >"$T/prometheus.out" 2>&1 &
PROM=$!
on_exit "kill $PROM 2>/dev/null; wait $PROM 2>/dev/null"
# api PATH: Prometheus's JSON answer
api() { inp curl -sS --max-time 5 -G "http://127.0.0.1:9090/api/v1/$1" "${@:2}"; }
# targets_up [SINCE]: both targets up, their last scrape after SINCE (unix s)
targets_up() {
    api targets 2>/dev/null | "$PY" -c '
import datetime, json, sys
since = float(sys.argv[1])
t = json.load(sys.stdin)["data"]["activeTargets"]
ok = [x for x in t if x["health"] == "up" and x["lastError"] == "" and
      datetime.datetime.fromisoformat(x["lastScrape"]).timestamp() > since]
sys.exit(0 if len(t) == 2 and len(ok) == 2 else 1)' "${1:-0}" 2>/dev/null
}
# query EXPR: the value of the query's one series
query() {
    api query --data-urlencode "query=$1" | "$PY" -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if len(r) == 1 else "series: %d" % len(r))'
}
up=
for _ in $(seq 120); do targets_up && { up=1; break; }; sleep 0.5; done
[ -n "$up" ] || { api targets; tail "$T/prometheus.out"; fail "Prometheus: targets not up in 60 s"; }
scrape "$P_URL" "$T/now.prom"
writes=$(mval "$T/now.prom" nbdmirror_requests_total op=write)
[ "$writes" -ge 102 ] || fail "writes: $writes"
# query_is EXPR VALUE: Prometheus returns VALUE for EXPR within 60 s
query_is() {
    local got
    for _ in $(seq 120); do
        got=$(query "$1" 2>/dev/null) && [ "$got" = "$2" ] && return 0
        sleep 0.5
    done
    fail "Prometheus: $1 = $got, expected $2"
}
query_is 'nbdmirror_requests_total{instance="127.0.0.1:9942",op="write"}' "$writes"
query_is 'nbdmirror_request_duration_seconds_count{instance="127.0.0.1:9942",op="write"}' "$writes"
query_is 'nbdmirror_role{instance="10.77.1.2:9942",role="secondary"}' 1
query_is 'nbdmirror_role{instance="127.0.0.1:9942",role="primary"}' 1
query_is 'sum(nbdmirror_peer_replication_state{state="Established"})' 2
query_is 'nbdmirror_peer_out_of_sync_bytes{instance="127.0.0.1:9942"}' 0
query_is 'sum(up{job="nbdmirror"})' 2
echo "Prometheus: both targets up, $writes writes"

log "50 idle connections do not stop scrapes; the daemon closes them"
cat >"$T/idle.py" <<'EOF'
import select, socket, time
conns = []
for i in range(50):
    s = socket.create_connection(("127.0.0.1", 9942), timeout=10)
    if i % 2:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
    conns.append(s)
print("open", flush=True)
start = time.monotonic()
left = set(conns)
while left and time.monotonic() - start < 30:  # the daemon's limit is 10 s
    for s in select.select(list(left), [], [], 1)[0]:
        try:
            s.recv(1)  # b"" once the daemon closed it
        except ConnectionResetError:
            pass
        left.discard(s)
print(f"closed {50 - len(left)} of 50 within {time.monotonic() - start:.1f} s", flush=True)
EOF
"${IN_P[@]}" "$PY" "$T/idle.py" >"$T/idle.out" 2>&1 &
IDLE=$!
on_exit "kill $IDLE 2>/dev/null"
for _ in $(seq 100); do grep -q open "$T/idle.out" && break; sleep 0.1; done
grep -q open "$T/idle.out" || { cat "$T/idle.out"; fail "idle connections not opened"; }
flood=$(date +%s.%N)
scrape "$P_URL" "$T/busy.prom" # curl gets through
up=
for _ in $(seq 120); do targets_up "$flood" && { up=1; break; }; sleep 0.5; done
[ -n "$up" ] || { api targets; fail "Prometheus stopped scraping during the idle connections"; }
wait "$IDLE" || { cat "$T/idle.out"; fail "idle client"; }
cat "$T/idle.out"
grep -q "closed 50 of 50" "$T/idle.out" || fail "the daemon left idle connections open"
echo "scrapes went on"

log "bad --metrics values are refused at start"
bad_start() { # bad_start SPEC WORDS: serve refuses with a message containing WORDS
    local rc=0
    # shellcheck disable=SC2046
    "${IN_P[@]}" $(engine_cmd) "$T/x.img" --nbd "unix:$T/x.sock" --control "$T/x.ctl" --metrics "$1" \
        2>"$T/x.err" &
    local pid=$!
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null && fail "serve --metrics $1 kept running"
    wait "$pid" || rc=$?
    [ "$rc" = 1 ] && grep -q -- "$2" "$T/x.err" || { cat "$T/x.err"; fail "--metrics $1: exit $rc"; }
    [ ! -e "$T/x.ctl" ] || fail "--metrics $1 left its control socket"
}
new_disk "$T/x.img" 16M
bad_start 127.0.0.1:9942 "Address already in use"
bad_start nonsense "not HOST:PORT"
bad_start 127.0.0.1:99999 "not HOST:PORT"

kill "$PROM"
wait "$PROM" 2>/dev/null || true
stop_node p
stop_node s1

log "a Unix socket works too (for a local proxy)"
start_server "$T/x.img" --metrics "unix:$T/m.sock"
wait_sock "$T/m.sock"
curl -sS --max-time 10 --unix-socket "$T/m.sock" -o "$T/x.prom" http://localhost/metrics ||
    fail "curl over the Unix socket"
promtool check metrics <"$T/x.prom" || fail "promtool: the Unix socket's answer"
expect "$T/x.prom" nbdmirror_role role=standalone == 1
stop_server
[ ! -e "$T/m.sock" ] || fail "the metrics socket is left behind"
echo "metrics: all good"
